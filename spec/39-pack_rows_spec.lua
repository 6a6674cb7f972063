-- 39-pack_rows: view:pack_rows(off, fmt, n, ...) packs n rows of columns
-- (a table argument gives row i its i-th element, any other argument is
-- the same in every row), checked against string.pack of each row
-- concatenated: the formats a B-tree's cells use (its own fast path) and
-- others (padding, alignment, floats, zero-terminated strings: the general
-- path); every error leaves the page as it was (all or nothing), on
-- regular pages and transaction writers; misuse names the function.

local H = require "helpers"

local spack = string.pack

-- string.pack of every row at once after off bytes (alignment counts
-- from the page's start), without those bytes
local function expected(fmt, n, cols, off)
  local args = {("\7"):rep(off)}
  for i = 1, n do
    for _, c in ipairs(cols) do
      if type(c) == "table" then args[#args + 1] = c[i] else args[#args + 1] = c end
    end
  end
  return spack("c" .. off .. fmt:rep(n), table.unpack(args)):sub(off + 1)
end

local function random_bytes(rng, max)
  local t = {}
  for i = 1, rng(0, max) do t[i] = string.char(rng(0, 255)) end
  return table.concat(t)
end

describe("view:pack_rows", function()
  after_each(function() H.cleanup() end)

  it("packs like string.pack row by row, for simple and general formats", function()
    local p = H.create({page_size = 4096})
    local v = p:page(p:alloc())
    local rng = math.random
    math.randomseed(36)
    local formats = {
      {"<B s2 s2", function(i) return i % 2 end, "s", "s"},
      {"<I4 s2", function(i) return i * 1000 end, "s"},
      {">i2 s1 J", function(i) return -i end, "s", function(i) return i * 7 end},
      {"<B x s2 d", function(i) return i end, "s", function(i) return i / 3 end},
      {"<!4 B i4 z", function(i) return i end, function(i) return -i end, "s"},
    }
    for _, f in ipairs(formats) do
      for _ = 1, 30 do
        local n = rng(0, 20)
        local cols = {}
        for j = 2, #f do
          local gen = f[j]
          if rng(1, 4) == 1 and n > 0 then
            -- a constant column
            cols[j - 1] = gen == "s" and random_bytes(rng, 5) or gen(3)
          else
            local c = {}
            for i = 1, n do c[i] = gen == "s" and random_bytes(rng, 8):gsub("%z", "a") or gen(i) end
            cols[j - 1] = c
          end
        end
        local off = rng(0, 100)
        local want = expected(f[1], n, cols, off)
        v:pack(0, "c4096", ("\7"):rep(4096))
        local pos = v:pack_rows(off, f[1], n, table.unpack(cols, 1, #f - 1))
        assert.equal(off + #want, pos)
        assert.equal(want, v:read(off, #want))
        assert.equal(("\7"):rep(off), v:read(0, off))
        assert.equal("\7", v:read(pos, 1))
      end
    end
  end)

  it("writes nothing when a row fails: a bad value, or the page runs out", function()
    local p = H.create({page_size = 1024})
    local v = p:page(p:alloc())
    v:pack(0, "c1024", ("\9"):rep(1024))
    local keys = {"a", "b", 5, {}}
    local big = {("x"):rep(600), ("y"):rep(600)}
    local function rows(...)
      local args = table.pack(...)
      return function() return v:pack_rows(table.unpack(args, 1, args.n)) end
    end
    H.raises_with({"pack_rows", "string expected"}, rows(0, "<B s2", 4, 0, keys))
    H.raises_with({"pack_rows", "integer"}, rows(0, "<B s2", 2, {1, "x"}, keys))
    H.raises_with({"pack_rows", "unsigned overflow"}, rows(0, "<B s2", 2, {1, 256}, keys))
    H.raises_with({"pack_rows", "does not fit"}, rows(0, "<s2", 2, big))
    H.raises_with({"pack_rows", "does not fit"}, rows(0, "<x s2 d", 2, big, 1.5))
    H.raises_with({"pack_rows", "string expected"}, rows(0, "<x s2 d", 4, keys, 1.5))
    H.raises_with({"pack_rows", "length does not fit"}, rows(0, "<s1", 1, ("z"):rep(300)))
    assert.equal(("\9"):rep(1024), v:read(0, 1024))
  end)

  it("works on a transaction's writer, and raises for misuse naming itself", function()
    local p = H.create({page_size = 1024})
    local pid = p:alloc_protected()
    assert(p:transaction(function()
      local w = p:write_protected(pid)
      assert.equal(10 + 6 + 7, w:pack_rows(10, "<B s2", 2, 1, {"abc", "defg"}))
      return true
    end))
    assert.equal(spack("<B s2 B s2", 1, "abc", 1, "defg"), p:protected(pid):read(10, 13))
    local v = p:page(p:alloc())
    local pv = p:protected(pid)
    H.raises_with({"pack_rows", "row count must be >= 0"}, function() v:pack_rows(0, "<B", -1) end)
    H.raises_with({"pack_rows", "offset out of range"}, function() v:pack_rows(1025, "<B", 0) end)
    H.raises_with({"pack_rows", "offset out of range"}, function() v:pack_rows(-1, "<B", 0) end)
    H.raises_with({"pack_rows", "read-only"}, function() pv:pack_rows(0, "<B", 1, 1) end)
    assert.equal(0, v:pack_rows(0, "<B", 0))
  end)
end)
