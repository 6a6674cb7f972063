-- 27-btree: the ordered map (mappedpages.btree) and its tuple keys.
--
-- Every function and error path: keys of the wrong type or length and
-- values of the wrong type raise naming the function; read-only pagers,
-- closed pagers and dropped trees; a full disk (an injected failure to
-- grow) returns nil, msg, "no_space" and changes nothing; values at every
-- size boundary (0, 1, the largest inline value and one more, page size
-- +- 1, many pages); ranges ascending and descending with either bound
-- open; changing the tree while iterating; rollbacks seen by every
-- handle; trees owned by another object (create, at, page_ids, destroy);
-- check() finding damage; a seeded random model test driving the tree
-- through several levels on 1 KiB pages with transactions, rollbacks and
-- reopens; property tests of btree.key (order and unkey).

local H = require "helpers"
local mp = H.mp
local core = require "mappedpages.core"
local btree = require "mappedpages.btree"
local key, unkey = btree.key, btree.unkey

local function assert_check(t)
  local ok, problems = t:check()
  assert(ok, "t:check() failed:\n  " .. table.concat(problems or {}, "\n  "))
end

local function new_tree(opts, name)
  local p, path = H.create(opts or {page_size = 1024})
  local t = assert(btree.open(p, name or "t"))
  return t, p, path
end

local function all(t, lo, hi, opts)
  local ks, vs = {}, {}
  for k, v in t:range(lo, hi, opts) do ks[#ks + 1], vs[#vs + 1] = k, v end
  return ks, vs
end

local function k4(i) return string.format("k%04d", i) end

describe("btree basics", function()
  after_each(H.cleanup)

  it("puts, gets, replaces and deletes keys, and counts them", function()
    local t = new_tree()
    assert.equal(0, t:count())
    assert.is_nil(t:get("a"))
    assert.is_true(t:put("a", "1"))
    assert.is_true(t:put("b", "2"))
    assert.equal("1", t:get("a"))
    assert.is_true(t:put("a", "one"))
    assert.equal("one", t:get("a"))
    assert.equal(2, t:count())
    assert.is_true(t:delete("a"))
    assert.is_false(t:delete("a"))
    assert.is_nil(t:get("a"))
    assert.equal(1, t:count())
    assert.is_true(t:delete("b"))
    assert.equal(0, t:count())
    assert.equal(0, t:stats().nodes)
    assert_check(t)
  end)

  it("gives first and last, and nil for an empty tree", function()
    local t, p = new_tree()
    assert.is_nil(t:first())
    assert.is_nil(t:last())
    p:transaction(function() for i = 1, 500 do t:put(k4(i), "v" .. i) end end)
    assert.same({"k0001", "v1"}, {t:first()})
    assert.same({"k0500", "v500"}, {t:last()})
  end)

  it("keeps every key through splits and merges, on several levels", function()
    local t, p = new_tree()
    assert(p:transaction(function()
      for i = 1, 3000 do t:put(k4(i), ("x"):rep(i % 50)) end
      return true
    end))
    assert.is_true(t:stats().height >= 3, "height " .. t:stats().height)
    assert_check(t)
    assert(p:transaction(function()
      for i = 1, 3000, 2 do assert.is_true(t:delete(k4(i))) end
      return true
    end))
    assert_check(t)
    for i = 2, 3000, 2 do assert.equal(("x"):rep(i % 50), t:get(k4(i))) end
    assert(p:transaction(function()
      for i = 2, 3000, 2 do t:delete(k4(i)) end
      return true
    end))
    assert.equal(0, t:count())
    assert.equal(0, t:stats().height)
    assert_check(t)
  end)

  it("orders keys as bytes, embedded zeros and high bytes included", function()
    local t = new_tree()
    local keys = {"\0", "\0\0", "\1", "a", "a\0", "ab", "\255", "\255\255"}
    for i = #keys, 1, -1 do t:put(keys[i], tostring(i)) end
    assert.same(keys, (all(t)))
  end)

  it("persists across reopen", function()
    local t, p, path = new_tree()
    p:transaction(function() for i = 1, 400 do t:put(k4(i), ("v"):rep(i)) end end)
    p = H.reopen(p, path)
    t = assert(btree.open(p, "t"))
    assert.equal(400, t:count())
    for i = 1, 400 do assert.equal(("v"):rep(i), t:get(k4(i))) end
    assert_check(t)
  end)

  it("reports stats and a one-line tostring", function()
    local t = new_tree()
    t:put("abc", "12345")
    local s = t:stats()
    assert.equal(1, s.objects)
    assert.equal(8, s.bytes)
    assert.equal(2, s.pages)
    assert.equal(2048, s.page_bytes)
    assert.equal(8 / 2048, s.efficiency)
    assert.equal(1, s.height)
    assert.matches('^mappedpages.btree "t": 1 keys, 8 bytes in 2 pages', tostring(t))
  end)

  it("has a max_key of at least 255 bytes for every page size", function()
    for _, size in ipairs {1024, 4096, 65536} do
      local t = new_tree({page_size = size})
      local m = t:max_key()
      assert.is_true(m >= 255)
      local k = ("k"):rep(m)
      assert.is_true(t:put(k, ("v"):rep(size)))
      assert.equal(("v"):rep(size), t:get(k))
      H.raises_with({"btree:put", "key must be 1 to " .. m}, t.put, t, k .. "x", "v")
      assert_check(t)
      H.cleanup()
    end
  end)
end)

describe("btree values", function()
  after_each(H.cleanup)

  it("stores values at every size boundary and gives them back", function()
    for _, size in ipairs {1024, 4096} do
      local t, p, path = new_tree({page_size = size})
      local k = "key"
      local inline = (size - 32) // 3 - 5 - #k            -- the largest value in a leaf cell
      local lens = {0, 1, inline - 1, inline, inline + 1, size - 17, size - 16, size - 15,
                    size - 1, size, size + 1, 2 * (size - 16), 2 * (size - 16) + 1, 10 * size + 3}
      local vals = {}
      for i, n in ipairs(lens) do
        local v = {}
        for j = 1, n do v[j] = string.char((i * 7 + j) % 256) end
        vals[i] = table.concat(v)
        assert.is_true(t:put(k .. i, vals[i]))
      end
      assert_check(t)
      for i in ipairs(lens) do assert.equal(vals[i], t:get(k .. i), "length " .. lens[i]) end
      p = H.reopen(p, path)
      t = assert(btree.open(p, "t"))
      for i in ipairs(lens) do assert.equal(vals[i], t:get(k .. i), "length " .. lens[i]) end
      -- replace large by small and back, and delete: the overflow pages go
      local pages = p:info().protected_count + p:page_count() - p:free_count()
      assert.is_true(t:stats().large_values >= 8)
      for i in ipairs(lens) do assert(t:put(k .. i, "s")) end
      assert.equal(0, t:stats().large_values)
      assert.is_true(p:info().protected_count + p:page_count() - p:free_count() < pages)
      assert_check(t)
      for i in ipairs(lens) do assert(t:put(k .. i, vals[i])) end
      for i in ipairs(lens) do assert.equal(vals[i], t:get(k .. i), "length " .. lens[i]) end
      for i in ipairs(lens) do assert.is_true(t:delete(k .. i)) end
      assert.equal(0, t:stats().large_values)
      assert_check(t)
      H.cleanup()
    end
  end)

  it("gives large values through first, last and range", function()
    local t = new_tree()
    local big = ("B"):rep(5000)
    t:put("a", big) t:put("m", "small") t:put("z", big .. "!")
    assert.equal(big, select(2, t:first()))
    assert.equal(big .. "!", select(2, t:last()))
    local _, vs = all(t)
    assert.same({big, "small", big .. "!"}, vs)
  end)
end)

describe("btree ranges", function()
  after_each(H.cleanup)

  local function tree_of(n)
    local t, p = new_tree()
    assert(p:transaction(function()
      for i = 1, n do t:put(k4(i), tostring(i)) end
      return true
    end))
    return t, p
  end

  local function expect(from, to, step)
    local r = {}
    for i = from, to, step or 1 do r[#r + 1] = k4(i) end
    return r
  end

  it("visits lo <= k < hi ascending, either bound open", function()
    local t = tree_of(1500)
    assert.same(expect(1, 1500), (all(t)))
    assert.same(expect(100, 1500), (all(t, k4(100))))
    assert.same(expect(1, 99), (all(t, nil, k4(100))))
    assert.same(expect(100, 199), (all(t, k4(100), k4(200))))
    assert.same(expect(100, 199), (all(t, "k0099z", "k0199z")))
    assert.same({}, (all(t, k4(200), k4(100))))
    assert.same({}, (all(t, k4(100), k4(100))))
    assert.same({}, (all(t, "l")))
    assert.same(expect(1, 1500), (all(t, "")))
  end)

  it("visits the same keys descending with reverse = true", function()
    local t = tree_of(1500)
    local rev = {reverse = true}
    assert.same(expect(1500, 1, -1), (all(t, nil, nil, rev)))
    assert.same(expect(1500, 100, -1), (all(t, k4(100), nil, rev)))
    assert.same(expect(99, 1, -1), (all(t, nil, k4(100), rev)))
    assert.same(expect(199, 100, -1), (all(t, k4(100), k4(200), rev)))
    assert.same(expect(199, 100, -1), (all(t, "k0099z", "k0199z", rev)))
    assert.same({}, (all(t, k4(100), k4(100), rev)))
    assert.same({}, (all(t, nil, "a", rev)))
  end)

  it("works on an empty tree and a one-key tree", function()
    local t = new_tree()
    assert.same({}, (all(t)))
    assert.same({}, (all(t, nil, nil, {reverse = true})))
    t:put("x", "1")
    assert.same({"x"}, (all(t)))
    assert.same({"x"}, (all(t, nil, nil, {reverse = true})))
  end)

  it("goes on after the last key it returned when the tree changes", function()
    local t = tree_of(600)
    -- deleting each key as it is visited
    local n = 0
    for k in t:range() do
      n = n + 1
      assert.is_true(t:delete(k))
    end
    assert.equal(600, n)
    assert.equal(0, t:count())
    -- keys put ahead are visited, keys put behind are not
    for i = 1, 300 do t:put(k4(2 * i), "e") end
    local seen = {}
    for k in t:range() do
      seen[#seen + 1] = k
      if k == k4(100) then t:put(k4(101), "ahead") t:put(k4(3), "behind") end
    end
    local set = {}
    for _, k in ipairs(seen) do set[k] = true end
    assert.is_true(set[k4(101)])
    assert.is_nil(set[k4(3)])
    assert.equal(301, #seen)
    -- and descending
    seen = {}
    for k in t:range(nil, nil, {reverse = true}) do
      seen[#seen + 1] = k
      t:delete(k)
    end
    assert.equal(302, #seen)
    assert.equal(0, t:count())
  end)

  it("seeks again after a rollback under it", function()
    local t, p = tree_of(300)
    local it, st = t:range()
    assert.equal(k4(1), it(st))
    local tx = p:begin()
    for i = 2, 50 do t:delete(k4(i)) end
    assert.equal(k4(51), it(st))
    tx:rollback()
    assert.equal(k4(52), it(st))
    tx = p:begin()
    t:put(k4(52) .. "a", "new")
    assert.equal(k4(52) .. "a", it(st))
    tx:rollback()
    assert.equal(k4(53), it(st))
  end)

  it("raises for bad bounds and options", function()
    local t = tree_of(3)
    H.raises_with({"btree:range", "lo must be a string"}, t.range, t, 1)
    H.raises_with({"btree:range", "hi must be a string"}, t.range, t, nil, {})
    H.raises_with({"btree:range", "opts must be a table"}, t.range, t, nil, nil, true)
  end)
end)

describe("btree misuse", function()
  after_each(H.cleanup)

  it("raises for keys of the wrong type or length, naming the function", function()
    local t = new_tree()
    for _, fn in ipairs {"put", "get", "delete"} do
      H.raises_with({"btree:" .. fn, "key must be a string"}, t[fn], t, 1, "v")
      H.raises_with({"btree:" .. fn, "key must be 1 to"}, t[fn], t, "", "v")
      H.raises_with({"btree:" .. fn, "(got 314)"}, t[fn], t, ("k"):rep(314), "v")
    end
    H.raises_with({"btree:put", "value must be a string"}, t.put, t, "k", 5)
    H.raises_with({"btree:put", "value must be a string"}, t.put, t, "k")
    assert.equal(0, t:count())
  end)

  it("raises when a method is called with a dot", function()
    local t = new_tree()
    H.raises_with({"btree:get", "call it as obj:method"}, t.get, "k")
    H.raises_with({"btree:count"}, t.count)
  end)

  it("refuses changes on a read-only pager, and reads there", function()
    local t, p, path = new_tree()
    t:put("a", "1")
    p = H.reopen(p, path, {readonly = true})
    t = assert(btree.open(p, "t"))
    assert.equal("1", t:get("a"))
    H.raises_with({"btree:put", "read-only"}, t.put, t, "b", "2")
    H.raises_with({"btree:delete", "read-only"}, t.delete, t, "a")
    H.fails_with("not_found", btree.open(p, "missing"))
  end)

  it("refuses a name of another kind", function()
    local _, p = new_tree()
    assert(mp.slab.open(p, "s"))
    H.fails_with("kind", btree.open(p, "s"))
    H.fails_with("kind", btree.drop(p, "s"))
    H.fails_with("not_found", btree.drop(p, "nope"))
  end)

  it("raises after the pager closed and after a drop", function()
    local t, p = new_tree()
    t:put("a", "1")
    local t2 = assert(btree.open(p, "t"))
    assert(btree.drop(p, "t"))
    H.raises_with({"btree:get", "no longer exists"}, t2.get, t2, "a")
    local t3 = assert(btree.open(p, "t"))
    assert.equal(0, t3:count())
    p:close()
    H.raises_with({"btree:put", "closed"}, t3.put, t3, "a", "1")
    H.raises_with({"btree:count", "closed"}, t3.count, t3)
  end)

  it("drop frees every page the tree owns", function()
    local t, p = new_tree()
    local before = p:info().protected_count
    p:transaction(function()
      for i = 1, 800 do t:put(k4(i), ("v"):rep(i % 3 == 0 and 2000 or 10)) end
    end)
    assert.is_true(p:info().protected_count > before + 10)
    assert(btree.drop(p, "t"))
    assert.equal(before - 1, p:info().protected_count)
    assert(p:check())
  end)
end)

describe("btree transactions", function()
  after_each(H.cleanup)

  it("shows every handle the rolled-back state, and each other's changes at once", function()
    local t, p = new_tree()
    local t2 = assert(btree.open(p, "t"))
    p:transaction(function() for i = 1, 500 do t:put(k4(i), "a") end end)
    local tx = p:begin()
    for i = 1, 500 do t:put(k4(i), "b") end
    for i = 501, 900 do t2:put(k4(i), "c") end
    assert.equal("c", t:get(k4(700)))
    assert.equal("b", t2:get(k4(7)))
    tx:rollback()
    assert.equal(500, t2:count())
    assert.equal("a", t:get(k4(7)))
    assert.equal("a", t2:get(k4(7)))
    assert.is_nil(t:get(k4(700)))
    assert_check(t)
    local ok, err = pcall(p.transaction, p, function()
      t:put("zz", "1")
      error("boom", 0)
    end)
    assert.is_false(ok)
    assert.equal("boom", err)
    assert.is_nil(t2:get("zz"))
  end)

  it("is one durable commit per put outside a transaction", function()
    local t, p = new_tree()
    local b = p:info().barriers
    t:put("a", "1")
    t:delete("a")
    assert.equal(b + 2, p:info().barriers)
  end)

  it("writes each page once per transaction", function()
    local t, p = new_tree()
    local Pager = mp._Pager_methods
    local real = Pager.write_protected
    local calls, pages = 0, {}
    Pager.write_protected = function(self, pid)
      calls = calls + 1
      pages[pid] = true
      return real(self, pid)
    end
    local ok, err = pcall(p.transaction, p, function()
      for i = 1, 2000 do t:put(k4((i * 7919) % 2000), "v") end
      for i = 1, 2000, 3 do t:delete(k4(i)) end
      return true
    end)
    Pager.write_protected = real
    assert(ok, err)
    local distinct = 0
    for _ in pairs(pages) do distinct = distinct + 1 end
    assert.equal(distinct, calls)
    assert_check(t)
  end)

  it("writes its changes out at commit; a failed commit leaves the committed state", function()
    local access = require "mappedpages.access"
    local t, p, path = new_tree()
    p:transaction(function() for i = 1, 300 do t:put(k4(i), "a") end end)
    local tx = p:begin()
    for i = 600, 301, -1 do t:put(k4(i), "b") end   -- appended out of order
    local it, st = t:range(k4(300))
    assert.equal(k4(300), (it(st)))
    assert.equal(k4(301), (it(st)))
    assert_check(t)                                  -- written out mid-transaction
    for i = 601, 700 do t:put(k4(i), "c") end
    assert.is_true(t:delete(k4(1)))
    assert.equal(699, t:count())
    assert.equal(k4(2), (t:first()))
    assert.equal(k4(700), (t:last()))
    access.before_commit(p, "spec: refuse", function() return nil, "refused", "spec" end)
    local ok, msg, code = tx:commit()
    assert.is_nil(ok)
    assert.equal("refused", msg)
    assert.equal("spec", code)
    assert.equal(300, t:count())
    assert.equal("a", t:get(k4(1)))
    assert.is_nil(t:get(k4(301)))
    assert_check(t)
    assert(p:transaction(function() for i = 301, 400 do t:put(k4(i), "d") end return true end))
    p:close()
    local p2 = assert(mp.open(path))
    local t2 = assert(btree.open(p2, "t"))
    assert.equal(400, t2:count())
    assert.equal("d", t2:get(k4(350)))
    assert.is_nil(t2:get(k4(401)))
    assert_check(t2)
    p2:close()
  end)

  it("fails the commit when a commit hook raises, rolling the tree back", function()
    local access = require "mappedpages.access"
    local t, p = new_tree()
    t:put("a", "1")
    local tx = p:begin()
    t:put("b", "2")
    access.before_commit(p, "spec: raise", function() error("kaput", 0) end)
    assert.has_error(function() tx:commit() end, "kaput")   -- a bug in a commit step raises again
    assert.is_false(tx:active())
    assert.equal(1, t:count())
    assert.is_nil(t:get("b"))
    assert(t:put("b", "3"))
    assert.equal("3", t:get("b"))
    assert_check(t)
  end)

  it("keeps keys put out of order in order for ranges, first, last and deletes", function()
    local t, p = new_tree()
    local tx = p:begin()
    local want = {}
    for i = 1, 400 do
      local k = k4((i * 7919) % 1000)
      t:put(k, "v" .. i)
      want[#want + 1] = k
      if i % 50 == 0 then
        table.sort(want)
        assert.same(want, (all(t)))
      end
    end
    table.sort(want)
    assert.same(want, (all(t)))
    assert.equal(want[1], (t:first()))
    assert.equal(want[#want], (t:last()))
    for i = 1, #want, 2 do assert.is_true(t:delete(want[i])) end
    assert(tx:commit())
    local left = {}
    for i = 2, #want, 2 do left[#left + 1] = want[i] end
    assert.same(left, (all(t)))
    assert_check(t)
  end)

  it("creates the tree inside the open transaction, gone after a rollback", function()
    local _, p = new_tree()
    local tx = p:begin()
    local t = assert(btree.open(p, "u"))
    t:put("a", "1")
    tx:rollback()
    H.raises_with({"btree:get", "no longer exists"}, t.get, t, "a")
    assert.is_nil(mp.catalog.open(p):get("u"))
  end)
end)

describe("btree on a full disk", function()
  after_each(function()
    core._inject_fault(nil)
    H.cleanup()
  end)

  local function snapshot(t)
    local ks, vs = all(t)
    return {ks, vs, t:count(), t:stats().pages}
  end

  it("returns nil, msg, 'no_space' and changes nothing when a put or delete needs a page", function()
    local failed = 0
    for room = 0, 6 do
      for _, inside in ipairs {false, true} do
        for _, what in ipairs {"put", "big", "delete"} do
          local t, p = new_tree()
          assert(p:transaction(function()
            for i = 1, 400 do t:put(k4(i), ("v"):rep(20)) end
            return true
          end))
          local tx = inside and p:begin()
          if inside then t:put("zz", "1") end
          while p:free_count() > room do p:alloc() end
          local before = snapshot(t)
          core._inject_fault("grow", "enospc")
          local ok, msg, code
          for i = 1, 60 do
            if what == "put" then
              ok, msg, code = t:put(k4(i) .. "x", ("w"):rep(30))
            elseif what == "big" then
              ok, msg, code = t:put(k4(i) .. "x", ("w"):rep(3000))
            else
              ok, msg, code = t:delete(k4(i * 5))
            end
            if not ok then break end
            before = snapshot(t)
          end
          core._inject_fault(nil)
          if not ok then
            failed = failed + 1
            assert.equal("no_space", code, msg)
            assert.same(before, snapshot(t))
          end
          assert_check(t)
          if tx then assert(tx:commit()) end
          assert_check(t)
          assert(t:put("after", "1"))
          assert_check(t)
          H.cleanup()
        end
      end
    end
    assert.is_true(failed >= 10, "only " .. failed .. " operations failed")
  end)
end)

describe("btree splits inside a transaction on a full disk", function()
  after_each(function()
    core._inject_fault(nil)
    H.cleanup()
  end)

  -- Every leaf and its parent already changed in the open transaction, so
  -- an overfull leaf splits in place: the new node's page first, then the
  -- large value's heap pages; a failure at either step must undo the split.
  -- The same tree is built twice: the first time finds the put that
  -- splits, the second runs it with room for the node's page and not for
  -- the value (room 1, 2) or for neither (room 0).
  local function build(path)
    local p = H.create({page_size = 1024}, path)
    local t = assert(btree.open(p, "t"))
    assert(p:transaction(function()
      for i = 1, 300 do t:put(k4(i * 3), ("v"):rep(20)) end
      return true
    end))
    local tx = p:begin()
    for i = 1, 300 do assert(t:put(k4(i * 3), ("u"):rep(24))) end       -- every leaf changed
    for i = 1, 300, 10 do assert(t:put(k4(i * 3 + 2), ("s"):rep(60))) end   -- splits: parents too
    return t, p, tx
  end

  local function big(i) return ("w"):rep(3000 + i) end   -- three pages of the tree's heap

  it("undoes an in-place split whose large value finds no room, and one whose page finds none", function()
    local t, p, tx = build()
    local j
    for i = 1, 300 do
      local nodes = t:stats().nodes
      assert(t:put(k4(i * 3 + 1), big(i)))
      if t:stats().nodes > nodes and i > 1 then j = i break end
    end
    assert(j, "no put split a leaf")
    tx:rollback()
    p:close()
    H.cleanup()
    for room = 0, 2 do
      local path
      t, p, tx = build()
      path = p:info().path
      for i = 1, j - 1 do assert(t:put(k4(i * 3 + 1), big(i))) end
      while p:free_count() > room do p:alloc() end
      local before = {all(t)}
      local nodes = t:stats().nodes
      core._inject_fault("grow", "enospc")
      local ok, msg, code = t:put(k4(j * 3 + 1), big(j))
      core._inject_fault(nil)
      assert.is_nil(ok, "the splitting put did not fail with room " .. room)
      assert.equal("no_space", code, msg)
      assert.same(before, {all(t)})
      assert.equal(nodes, t:stats().nodes)
      assert_check(t)
      assert(tx:commit())
      p:close()
      p = H.open(path)
      t = assert(btree.open(p, "t"))
      assert.same(before, {all(t)})
      assert_check(t)
      p:close()
      H.cleanup()
    end
  end)
end)

describe("btree trees owned by another object", function()
  after_each(H.cleanup)

  it("makes a tree without a name, opens it by pid, lists and frees its pages", function()
    local p = H.create({page_size = 1024})
    local before = p:info().protected_count
    local pid = assert(btree.create(p))
    local t = btree.at(p, pid, "index")
    p:transaction(function()
      for i = 1, 500 do t:put(k4(i), ("v"):rep(i % 7 == 0 and 1500 or 5)) end
    end)
    local ids, regular = t:page_ids()
    assert.equal(t:stats().pages, #ids + #regular)
    assert.equal(before + #ids, p:info().protected_count)
    local used = p:page_count() - p:free_count()
    assert_check(t)
    local again = btree.at(p, pid)
    assert.equal(500, again:count())
    assert(t:destroy())
    assert.equal(before, p:info().protected_count)
    assert.is_true(p:page_count() - p:free_count() <= used - #regular)
    H.raises_with({"btree:get", "no longer exists"}, again.get, again, "a")
    H.raises_with({"btree.at", "not an allocated"}, btree.at, p, pid)
    local other = p:alloc_protected()
    H.raises_with({"btree.at", "not the anchor of a B-tree"}, btree.at, p, other)
  end)
end)

describe("btree check", function()
  after_each(H.cleanup)

  it("finds a node out of order, a wrong count and a leaked page", function()
    local t, p = new_tree()
    p:transaction(function() for i = 1, 300 do t:put(k4(i), "v") end end)
    assert_check(t)
    -- swap two keys of a leaf (same length: the layout stays readable)
    local pid = t:page_ids()[2]
    local w = p:write_protected(pid)
    local level = w:unpack(16, "B")
    if level == 0 then
      local a = w:unpack(32 + 1, "<s2")
      local b_off = 32 + 5 + #a + #w:unpack(32 + 3 + #a, "<s2") + 0
      local b = w:unpack(b_off + 1, "<s2")
      w:write(32 + 3, b)
      w:write(b_off + 3, a)
    else
      w:pack(18, "<I2", w:unpack(18, "<I2") - 1)
    end
    assert(w:commit())
    local ok, problems = t:check()
    assert.is_false(ok)
    assert.is_true(#problems > 0)
    -- a wrong count in the anchor
    local t2 = select(1, new_tree(nil, "u"))
    t2:put("a", "1")
    local aw = t2.pager:write_protected(t2.pid)
    aw:pack(24, "<i8", 5)
    assert(aw:commit())
    ok, problems = t2:check()
    assert.is_false(ok)
    assert.matches("counts 5 keys", table.concat(problems, "\n"))
    -- a page that names the tree as its owner but is not reached
    local t3, p3 = new_tree(nil, "v")
    t3:put("a", "1")
    local stray = p3:alloc_protected()
    local sw = p3:write_protected(stray)
    sw:pack(0, "<c4 I4", "mpbn", t3.pid)
    assert(sw:commit())
    ok, problems = t3:check()
    assert.is_false(ok)
    assert.matches("does not reach it", table.concat(problems, "\n"))
  end)
end)

---------------------------------------------------------------------------
-- the model test

describe("btree random model", function()
  after_each(H.cleanup)

  local function rng(seed)
    local x = seed
    return function(n)
      x = x * 6364136223846793005 + 1442695040888963407
      return ((x >> 33) % n) + 1
    end
  end

  local function copy(m)
    local c = {}
    for k, v in pairs(m) do c[k] = v end
    return c
  end

  local function compare(t, model, r)
    local keys = {}
    for k in pairs(model) do keys[#keys + 1] = k end
    table.sort(keys)
    assert.equal(#keys, t:count())
    local i = 0
    for k, v in t:range() do
      i = i + 1
      assert(k == keys[i], "range: key " .. i)
      assert(v == model[k], "range: value of " .. k)
    end
    assert.equal(#keys, i)
    if #keys > 0 then
      local lo, hi = keys[r(#keys)], keys[r(#keys)]
      if hi < lo then lo, hi = hi, lo end
      local want = {}
      for j = #keys, 1, -1 do
        if keys[j] >= lo and keys[j] < hi then want[#want + 1] = keys[j] end
      end
      assert.same(want, (all(t, lo, hi, {reverse = true})))
      assert.equal(keys[1], (t:first()))
      assert.equal(keys[#keys], (t:last()))
    end
    assert_check(t)
  end

  it("agrees with a model through 30,000 random steps with transactions, rollbacks and reopens", function()
    local r = rng(20261203)
    local t, p, path = new_tree({page_size = 1024})
    local model, committed = {}, {}
    local maxh = 0
    local function value()
      local c = r(100)
      if c <= 70 then return ("v"):rep(r(24) - 1) end
      if c <= 95 then return ("w"):rep(r(400)) end
      return ("x"):rep(r(5000))
    end
    local function keyof()
      local c = r(10)
      if c <= 6 then return string.format("%05d", r(4000)) end
      if c <= 9 then return key(r(50), "name" .. r(40)) end
      return ("L"):rep(r(t:max_key()))
    end
    local tx
    local steps = 30000
    for step = 1, steps do
      -- most steps inside transactions (committed or rolled back now and
      -- then), some on their own; a reopen now and then between them
      local c = r(200)
      if c <= 2 then
        if tx then
          if c == 1 then
            tx:rollback()
            model = copy(committed)
          else
            assert(tx:commit())
            committed = copy(model)
          end
          tx = nil
        else
          tx = p:begin()
        end
      elseif c == 3 and not tx then
        p = H.reopen(p, path)
        t = assert(btree.open(p, "t"))
      elseif not tx and c <= 70 then
        tx = p:begin()
      end
      local phase = (step // 4000) % 2           -- grow, then shrink, and again
      local k = keyof()
      if r(100) <= (phase == 0 and 65 or 30) then
        local v = value()
        assert.is_true(t:put(k, v))
        model[k] = v
      else
        assert.equal(model[k] ~= nil, t:delete(k))
        model[k] = nil
      end
      if not tx then committed = copy(model) end
      assert(t:get(k) == model[k], "get after the step")
      local h = t:stats().height
      if h > maxh then maxh = h end
      if step % 3000 == 0 then compare(t, model, r) end
    end
    if tx then assert(tx:commit()) committed = copy(model) end
    compare(t, committed, r)
    assert.is_true(maxh >= 3, "the tree reached height " .. maxh)
  end)
end)

---------------------------------------------------------------------------
-- btree.key

describe("btree.key", function()
  local function rng(seed)
    local x = seed
    return function(n)
      x = x * 6364136223846793005 + 1442695040888963407
      return ((x >> 33) % n) + 1
    end
  end

  local SPECIAL = {0, -0.0, 1, -1, 0.5, -0.5, 1.5, 2, math.maxinteger, math.mininteger,
                   math.maxinteger - 1, math.mininteger + 1, 2^53, 2^53 + 2, -2^53, 2^63, -2^63,
                   2^64, -2^64, 1e300, -1e300, 5e-324, -5e-324, math.huge, -math.huge,
                   math.pi, -math.pi, 0.1, 1 - 2^-53}

  local function element(r)
    local c = r(6)
    if c == 1 then return r(2) == 1 end
    if c == 2 then return SPECIAL[r(#SPECIAL)] end
    if c == 3 then return r(2001) - 1001 end
    if c == 4 then return (r(2001) - 1001) / (r(16)) end
    local n, s = r(5) - 1, {}
    for i = 1, n do s[i] = string.char(({0, 0, 1, 97, 98, 255})[r(6)]) end
    return table.concat(s)
  end

  local function rank(v)
    local t = type(v)
    if t == "boolean" then return v and 1 or 0 end
    if t == "number" then return 2 end
    return 3
  end

  -- Tuple order: element by element (booleans, then numbers by value, then
  -- strings by bytes); a prefix first.
  local function less(a, b)
    for i = 1, math.max(#a, #b) do
      local x, y = a[i], b[i]
      if x == nil then return y ~= nil end
      if y == nil then return false end
      local rx, ry = rank(x), rank(y)
      if rx ~= ry then return rx < ry end
      if rx >= 2 and x ~= y then return x < y end
    end
    return false
  end

  it("sorts random tuples' encodings as the tuples sort", function()
    local r = rng(7)
    local tuples = {}
    for i = 1, 3000 do
      local t = {}
      for j = 1, r(4) - 1 do t[j] = element(r) end
      tuples[i] = t
    end
    for _ = 1, 30000 do
      local a, b = tuples[r(#tuples)], tuples[r(#tuples)]
      local ka, kb = key(table.unpack(a)), key(table.unpack(b))
      assert(less(a, b) == (ka < kb), "order")
      assert((not less(a, b) and not less(b, a)) == (ka == kb), "equality")
    end
  end)

  it("is inverted by unkey (integral floats come back as integers)", function()
    local r = rng(11)
    for _ = 1, 20000 do
      local t = {}
      for j = 1, r(4) - 1 do t[j] = element(r) end
      local back = table.pack(unkey(key(table.unpack(t))))
      assert.equal(#t, back.n)
      for j = 1, #t do
        local v = t[j]
        assert(back[j] == v, "element " .. j)
        if type(v) == "number" then
          local want = math.tointeger(v) and "integer" or "float"
          assert.equal(want, math.type(back[j]))
        end
      end
    end
  end)

  it("interleaves integers and floats and sorts prefixes first", function()
    assert.is_true(key(1) < key(1.5))
    assert.is_true(key(1.5) < key(2))
    assert.is_true(key(-2) < key(-1.5))
    assert.is_true(key(-math.huge) < key(math.mininteger))
    assert.is_true(key(math.maxinteger) < key(2^63))
    assert.is_true(key(2^63) < key(math.huge))
    assert.equal(key(0), key(-0.0))
    assert.equal(key(3), key(3.0))
    assert.is_true(key("a") < key("a", 1))
    assert.is_true(key("a", 1) < key("a\0"))
    assert.is_true(key("a\0") < key("ab"))
    assert.is_true(key(false) < key(true))
    assert.is_true(key(true) < key(-math.huge))
    assert.is_true(key(math.huge) < key(""))
    assert.equal("", key())
    assert.same({true, -3, "x\0y"}, {unkey(key(true, -3, "x\0y"))})
  end)

  it("raises for NaN, nil and other types, and for bytes no key makes", function()
    H.raises_with({"btree.key", "argument #1", "NaN"}, key, 0 / 0)
    H.raises_with({"btree.key", "argument #2", "got nil"}, key, 1, nil)
    H.raises_with({"btree.key", "argument #1", "got table"}, key, {})
    H.raises_with({"btree.unkey", "must be a string"}, unkey, 5)
    H.raises_with({"btree.unkey", "unknown type byte"}, unkey, "\1")
    H.raises_with({"btree.unkey", "unterminated"}, unkey, "\x30ab")
    H.raises_with({"btree.unkey", "truncated"}, unkey, "\x20\0")
  end)
end)
