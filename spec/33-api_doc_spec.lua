-- spec/33-api_doc: every function a user can reach from
-- `require "mappedpages"` (the module, the methods of its pagers, views,
-- writers and transactions, and every Lua module with its handles'
-- methods) is named in docs/API.md, as `.name(` or `:name(`.

local H = require "helpers"
local mp = require "mappedpages"

local function read(path)
  local f = assert(io.open(path))
  local s = f:read("a")
  f:close()
  return s
end

local doc = read("docs/API.md")

-- names of t's functions that docs/API.md does not mention after sep
local function missing(prefix, t, sep, out)
  for k, v in pairs(t) do
    if type(v) == "function" and type(k) == "string" and not k:match("^_")
       and not k:match("^__") and not doc:find(sep .. k .. "(", 1, true) then
      out[#out + 1] = prefix .. sep .. k
    end
  end
end

describe("docs/API.md", function()
  after_each(function() H.cleanup() end)

  it("names every function reachable from require 'mappedpages'", function()
    local out = {}
    missing("mp", mp, ".", out)
    missing("pager", mp._Pager_methods, ":", out)
    missing("view", mp._View_methods, ":", out)
    missing("writer", mp._Writer_methods, ":", out)
    local p = H.create()
    local tx = p:begin()
    missing("tx", getmetatable(tx).__index, ":", out)
    tx:rollback()
    local handles = {
      slab = function() return mp.slab.open(p, "s") end,
      records = function() return mp.records.open(p, "r", "record r { a: u8 }") end,
      catalog = function() return mp.catalog.open(p) end,
      heap = function() return mp.heap.open(p, "h") end,
      btree = function() return mp.btree.open(p, "t") end,
    }
    for _, name in ipairs({"catalog", "slab", "schema", "records", "heap", "btree", "object", "access",
                           "inspect"}) do
      local mod = require("mappedpages." .. name)
      if name ~= "object" and name ~= "access" then     -- for allocator writers: ALLOCATORS.md
        missing(name, mod, ".", out)
      end
      if handles[name] then
        local h = assert(handles[name]())
        missing(name .. " handle", getmetatable(h).__index, ":", out)
      end
    end
    table.sort(out)
    assert.same({}, out)
  end)

  it("and the guide for allocator writers names what object and access export", function()
    local guide = read("docs/ALLOCATORS.md")
    local out = {}
    for _, name in ipairs({"object", "access"}) do
      for k, v in pairs(require("mappedpages." .. name)) do
        if type(v) == "function" and not guide:find(name .. "." .. k .. "(", 1, true)
           and not doc:find(name .. "." .. k .. "(", 1, true) then
          out[#out + 1] = name .. "." .. k
        end
      end
    end
    table.sort(out)
    assert.same({}, out)
  end)
end)
