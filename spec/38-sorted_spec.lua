-- 38-sorted: the binding's helpers for sorted arrays of byte strings
-- (csrc/lua_sorted.c), core._search, core._sort, core._index and the
-- packed copies (core._strings, core._search_strings), against a plain Lua
-- model: random arrays of random byte strings (embedded zeros, bytes above
-- 127, prefixes of one another, duplicates), every position searched, the
-- order being bytes whatever the locale says; and their misuse errors.

local H = require "helpers"
local core = require "mappedpages.core"
local search, sort, index = core._search, core._sort, core._index
local strings, search_strings, strings_insert = core._strings, core._search_strings, core._strings_insert

-- bytewise a < b, written out (what the helpers must agree with)
local function less(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = a:byte(i), b:byte(i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local function random_string(rng)
  local len = rng(0, 6)
  local t = {}
  for i = 1, len do t[i] = string.char(({0, 1, 97, 98, 127, 128, 255})[rng(1, 7)]) end
  return table.concat(t)
end

describe("core._search", function()
  it("finds the first element >= key, or > key with after, in byte order", function()
    local rng = math.random
    math.randomseed(35)
    for _ = 1, 300 do
      local n = rng(0, 40)
      local t = {}
      for i = 1, n do t[i] = random_string(rng) end
      table.sort(t, less)
      local packed = strings(t, n)
      for _ = 1, 20 do
        local k = rng(1, 3) == 1 and n > 0 and t[rng(1, n)] or random_string(rng)
        local lo, hi = n + 1, n + 1
        for i = n, 1, -1 do
          if not less(t[i], k) then lo = i end
          if less(k, t[i]) then hi = i end
        end
        local i, eq = search(t, n, k)
        assert.equal(lo, i)
        assert.equal(lo <= n and t[lo] == k, eq)
        local j, eq2 = search(t, n, k, true)
        assert.equal(hi, j)
        assert.is_false(eq2)
        -- the packed copy answers the same
        assert.same({i, eq}, {search_strings(packed, k)})
        assert.same({j, false}, {search_strings(packed, k, true)})
      end
    end
  end)

  it("searches only the first n elements", function()
    local t = {"a", "c", "e", 5}
    assert.same({3, false}, {search(t, 2, "d")})
    assert.same({2, true}, {search(t, 3, "c")})
    assert.same({1, false}, {search(t, 0, "c")})
  end)

  it("raises naming itself for a bad table, count, key or element", function()
    H.raises_with({"_search", "table expected"}, search, nil, 1, "a")
    H.raises_with({"_search", "count must be >= 0"}, search, {}, -1, "a")
    H.raises_with({"_search", "integer"}, search, {}, "x", "a")
    H.raises_with({"_search", "string expected"}, search, {"a"}, 1, {})
    H.raises_with({"_search", "element 2 is not a string"}, search, {"a", 7, "c"}, 3, "b")
  end)
end)

describe("core._sort", function()
  it("sorts keys in byte order and permutes vals alongside, stably", function()
    local rng = math.random
    math.randomseed(53)
    for _ = 1, 300 do
      local n = rng(0, 60)
      local keys, vals, model = {}, {}, {}
      for i = 1, n do
        -- a sorted run first sometimes (a node's sorted part), then random
        keys[i] = random_string(rng)
        vals[i] = i % 3 == 0 and {i} or i
        model[i] = {keys[i], vals[i], i}
      end
      if rng(1, 2) == 1 then
        local m = rng(0, n)
        local head = {}
        for i = 1, m do head[i] = keys[i] end
        table.sort(head, less)
        for i = 1, m do keys[i] = head[i] model[i][1] = head[i] end
      end
      table.sort(model, function(a, b)
        if a[1] ~= b[1] then return less(a[1], b[1]) end
        return a[3] < b[3]
      end)
      keys[n + 1], vals[n + 1] = "beyond", "beyond"
      sort(keys, n, vals)
      for i = 1, n do
        assert.equal(model[i][1], keys[i])
        assert.equal(model[i][2], vals[i])
      end
      assert.equal("beyond", keys[n + 1])
      assert.equal("beyond", vals[n + 1])
    end
  end)

  it("sorts more elements than fit its stack buffer (256)", function()
    math.randomseed(600)
    local keys, vals = {}, {}
    for i = 1, 600 do keys[i] = string.pack(">I4", math.random(0, 1 << 30)) vals[i] = keys[i] .. "v" end
    sort(keys, 600, vals)
    for i = 1, 600 do
      if i > 1 then assert.is_true(keys[i - 1] <= keys[i]) end
      assert.equal(keys[i] .. "v", vals[i])
    end
  end)

  it("sorts keys alone without vals", function()
    local keys = {"b", "a\0", "a", "\255", "ab"}
    sort(keys, #keys)
    assert.same({"a", "a\0", "ab", "b", "\255"}, keys)
  end)

  it("raises naming itself for a bad table, count or element, leaving the arrays", function()
    H.raises_with({"_sort", "table expected"}, sort, "x", 1)
    H.raises_with({"_sort", "count must be >= 0"}, sort, {}, -2)
    H.raises_with({"_sort", "table expected"}, sort, {"a", "b"}, 2, 5)
    local keys = {"b", true, "a"}
    H.raises_with({"_sort", "element 2 is not a string"}, sort, keys, 3)
    assert.same({"b", true, "a"}, keys)
    H.raises_with({"_sort", "count too large"}, sort, {}, math.maxinteger)
  end)
end)

describe("core._index", function()
  it("maps each of the first n elements to its position, a later duplicate winning", function()
    local t = {"a", "b", 3, "a", "z"}
    assert.same({a = 4, b = 2, [3] = 3}, index(t, 4))
    assert.same({}, index(t, 0))
    local big = index(t, 2, 1000)
    assert.same({a = 1, b = 2}, big)
    for i = 1, 500 do big["k" .. i] = i end       -- room made: still a plain table
    assert.equal(500, big.k500)
  end)

  it("raises naming itself for a bad table, count, size or a nil element", function()
    H.raises_with({"_index", "table expected"}, index, nil, 0)
    H.raises_with({"_index", "count must be >= 0"}, index, {}, -1)
    H.raises_with({"_index", "element 2 is nil"}, index, {"a"}, 2)
    H.raises_with({"_index", "size too large"}, index, {}, 0, math.maxinteger)
  end)
end)

describe("core._strings", function()
  it("_strings_insert gives the copy of the array after table.insert", function()
    local rng = math.random
    math.randomseed(77)
    for _ = 1, 200 do
      local n = rng(0, 30)
      local t = {}
      for i = 1, n do t[i] = random_string(rng) end
      table.sort(t, less)
      local s = random_string(rng)
      local i = search(t, n, s)
      local before = strings(t, n)
      local after = strings_insert(before, i, s)
      local t2 = {table.unpack(t, 1, n)}
      table.insert(t2, i, s)
      for _ = 1, 20 do
        local k = rng(1, 2) == 1 and t2[rng(1, n + 1)] or random_string(rng)
        assert.same({search(t2, n + 1, k)}, {search_strings(after, k)})
        assert.same({search(t2, n + 1, k, true)}, {search_strings(after, k, true)})
        assert.same({search(t, n, k)}, {search_strings(before, k)})   -- unchanged
      end
    end
    H.raises_with({"_strings_insert", "position out of range"}, strings_insert, strings({"a"}, 1), 3, "b")
    H.raises_with({"_strings_insert", "position out of range"}, strings_insert, strings({"a"}, 1), 0, "b")
    H.raises_with({"_strings_insert", "packed strings expected"}, strings_insert, {}, 1, "b")
  end)

  it("is a copy: later changes to the table do not show", function()
    local t = {"a", "c", "e"}
    local packed = strings(t, 3)
    t[2] = "zzz"
    assert.same({2, true}, {search_strings(packed, "c")})
    assert.same({1, false}, {search_strings(strings({}, 0), "c")})
    assert.equal("mappedpages.PackedStrings", getmetatable(packed).__name)
  end)

  it("raises naming itself for bad arguments; search_strings takes only its copies", function()
    H.raises_with({"_strings", "table expected"}, strings, 1, 0)
    H.raises_with({"_strings", "count must be >= 0"}, strings, {}, -1)
    H.raises_with({"_strings", "element 2 is not a string"}, strings, {"a", 2}, 2)
    H.raises_with({"_strings", "count too large"}, strings, {}, math.maxinteger)
    H.raises_with({"_search_strings", "packed strings expected"}, search_strings, {}, "a")
    H.raises_with({"_search_strings", "packed strings expected"}, search_strings, io.stdout, "a")
    H.raises_with({"_search_strings", "string expected"}, search_strings, strings({}, 0), {})
  end)
end)
