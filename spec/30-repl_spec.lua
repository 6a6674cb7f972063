-- spec/30-repl: the lines `make repl` suggests (examples/repl.lua) work,
-- on a fresh file and again on the file a first session left.

local H = require "helpers"

local function banner()
  -- what examples/repl.lua prints, as a newcomer sees it
  local cmd = ("LUA_PATH_5_4=%s LUA_CPATH_5_4=%s lua5.4 examples/repl.lua 2>&1")
    :format(H.shell_quote(package.path), H.shell_quote(package.cpath))
  local f = assert(io.popen(cmd))
  local out = f:read("a")
  local _, _, status = f:close()
  assert.equal(0, status, out)
  return out
end

describe("make repl's banner", function()
  after_each(function() H.cleanup() end)

  it("suggests lines that work on every run", function()
    local out = banner()
    assert.matches('mp = require "mappedpages" is loaded', out, 1, true)
    local lines = {}
    for line in out:gmatch("\n  ([^\n]+)") do lines[#lines + 1] = line end
    assert.is_true(#lines >= 3, out)
    local path = H.path("try.mp")
    -- run every suggested line but the last (which removes the file), in
    -- one environment like the REPL's, twice: the second run finds the
    -- file the first one left
    for run = 1, 2 do
      local env = setmetatable({mp = require "mappedpages"}, {__index = _G})
      local printed = {}
      env.print = function(...)
        local t = table.pack(...)
        for i = 1, t.n do t[i] = tostring(t[i]) end
        printed[#printed + 1] = table.concat(t, "\t")
      end
      for i = 1, #lines - 1 do
        local src = lines[i]:gsub("/tmp/try%.mp", path)
        local chunk = assert(load(src, "=repl line " .. i, "t", env))
        chunk()
      end
      assert.matches("mappedpages.Pager", printed[1], 1, true)
      assert.matches(('mappedpages.Slab "notes": %d object'):format(run), printed[2], 1, true)
      assert.matches("hello", printed[2], 1, true)
      env.p:close()
    end
  end)
end)

describe("docs/REPL.md", function()
  after_each(function() H.cleanup() end)

  it("shows what its session really prints", function()
    local f = assert(io.open("docs/REPL.md"))
    local doc = f:read("a")
    f:close()
    local path = H.path("try.mp")
    local steps = {}              -- {input =, output = {lines}}
    for block in doc:gmatch("\n```\n(.-)\n```") do
      for line in (block .. "\n"):gmatch("([^\n]*)\n") do
        if line:sub(1, 2) == "> " then
          steps[#steps + 1] = {input = line:sub(3), output = {}}
        elseif steps[#steps] then
          local out = steps[#steps].output
          out[#out + 1] = line
        end
      end
    end
    assert.is_true(#steps >= 10)
    local printed
    local env = setmetatable({mp = require "mappedpages"}, {__index = _G})
    env.print = function(...)
      local t = table.pack(...)
      for i = 1, t.n do t[i] = tostring(t[i]) end
      for line in (table.concat(t, "\t") .. "\n"):gmatch("([^\n]*)\n") do printed[#printed + 1] = line end
    end
    for i, step in ipairs(steps) do
      printed = {}
      local src = step.input:gsub("/tmp/try%.mp", path)
      assert(load(src, "=REPL.md step " .. i, "t", env))()
      local want = {}
      for j, line in ipairs(step.output) do
        want[j] = line:gsub("/tmp/try%.mp", path)
      end
      assert.same(want, printed, step.input)
    end
  end)
end)
