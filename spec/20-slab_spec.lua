-- 20-slab: many small objects in one named object (mappedpages.slab).
--
-- Every function and error path; size classes and the waste rule at every
-- page size; refs stable across reopen and never handed out again in the
-- transaction that freed them; empty pages back to the pager; stats
-- arithmetic; read-only pagers, closed pagers, dropped slabs; a full disk
-- (a small tmpfs, root only); rollbacks and failed commits across the slab,
-- the catalog and raw protected pages; two handles; and a seeded random
-- model test with transactions, rollbacks and reopens, checking s:check()
-- and the model throughout.

local H = require "helpers"
local mp = H.mp
local core = require "mappedpages.core"
local slab = require "mappedpages.slab"
local catalog = require "mappedpages.catalog"

local sq = H.shell_quote

-- Every live object of s as {[ref] = size}.
local function objects(s)
  local t = {}
  for ref, size in s:objects() do t[ref] = size end
  return t
end

local function assert_check(s)
  local ok, problems = s:check()
  assert(ok, "s:check() failed:\n  " .. table.concat(problems or {}, "\n  "))
end

local function bytes_of(n, seed)
  return H.garbage(n, seed)
end

local function new_slab(opts, name)
  local p, path = H.create(opts)
  local s = assert(slab.open(p, name or "objects"))
  return s, p, path
end

describe("slab.open", function()
  after_each(function() H.cleanup() end)

  it("creates an empty slab in one durable commit", function()
    local p = H.create()
    assert(catalog.open(p))
    local b = H.barriers(p)
    local s = assert(slab.open(p, "objects"))
    assert.equal(1, H.barriers(p) - b)
    assert.equal("objects", s:name())
    assert.equal(2, p:info().protected_count, "the catalog's page and the anchor")
    assert.same({}, objects(s))
    assert_check(s)
  end)

  it("makes the file's catalog and the slab in one durable commit", function()
    local p = H.create()
    local b = H.barriers(p)
    local s = assert(slab.open(p, "objects"))
    assert.equal(1, H.barriers(p) - b)
    assert.equal(2, p:info().protected_count)
    assert_check(s)
  end)

  it("opens an existing slab without changing anything", function()
    local p = H.create()
    local s = assert(slab.open(p, "objects"))
    local ref = s:alloc(10)
    local txn = p:info().txn
    local s2 = assert(slab.open(p, "objects"))
    assert.equal(txn, p:info().txn)
    assert.equal(10, s2:size(ref))
  end)

  it("creates inside the open transaction, and a rollback undoes the creation", function()
    local p = H.create()
    assert(catalog.open(p))
    local tx = p:begin()
    local s = assert(slab.open(p, "objects"))
    local ref = s:alloc(5)
    assert.equal(5, s:size(ref))
    tx:rollback()
    assert.is_nil(catalog.open(p):get("objects"))
    H.raises_with({"slab:alloc", "no longer exists"}, s.alloc, s, 5)
    assert.equal(1, p:info().protected_count)
  end)

  it("returns nil, msg, 'kind' for a name holding another kind", function()
    local p = H.create()
    assert(catalog.open(p):create("other", "notaslab"))
    local msg = H.fails_with("kind", slab.open(p, "other"))
    assert.matches("notaslab", msg)
    H.fails_with("kind", slab.drop(p, "other"))
  end)

  it("returns nil, msg, 'not_found' for a missing name on a read-only pager", function()
    local p, path = H.create()
    assert(slab.open(p, "objects"))
    p:close()
    local q = H.open(path, {readonly = true})
    H.fails_with("not_found", slab.open(q, "missing"))
    assert(slab.open(q, "objects"))
  end)

  it("returns nil, msg, 'corrupt' when the anchor is not a slab's", function()
    local p = H.create()
    assert(catalog.open(p):create("bad", "slab"))      -- a zeroed anchor
    local msg = H.fails_with("corrupt", slab.open(p, "bad"))
    assert.matches("magic", msg)
  end)

  it("returns nil, msg, 'not_catalog' when the root holds something else", function()
    local p = H.create()
    p:set_root(12345)
    H.fails_with("not_catalog", slab.open(p, "objects"))
  end)

  it("raises for a bad pager or name", function()
    local p = H.create()
    H.raises_with({"slab.open", "pager expected"}, slab.open, nil, "x")
    H.raises_with({"slab.open", "name must be a string"}, slab.open, p, 5)
    H.raises_with({"slab.open", "1 to 255 bytes"}, slab.open, p, "")
    H.raises_with({"slab.open", "1 to 255 bytes"}, slab.open, p, ("x"):rep(256))
  end)

  it("is reachable as mp.slab", function()
    assert.equal(slab, mp.slab)
  end)
end)

describe("size classes", function()
  after_each(function() H.cleanup() end)

  it("waste at most a quarter of the slot for every size 1..max_size, at every page size", function()
    for _, P in ipairs(H.PAGE_SIZES) do
      local classes = slab.classes(P)
      local prev = 0
      for i, k in ipairs(classes) do
        assert(k.slot > prev, ("page size %d: class %d does not grow"):format(P, i))
        -- the smallest size of the class wastes the most
        assert(4 * (prev + 1) >= 3 * k.slot,
               ("page size %d: size %d wastes more than 1/4 of slot %d"):format(P, prev + 1, k.slot))
        assert(slab.PAGE_HEADER + k.per_page * (k.slot + 2) <= P)
        assert.equal((P - slab.PAGE_HEADER) // (k.slot + 2), k.per_page)
        prev = k.slot
      end
      assert.equal(1, classes[#classes].per_page)
      -- and size by size, through a real slab's class table
      local s = new_slab({page_size = P})
      local st = s:stats().classes
      assert.equal(#classes, #st)
      local c = 1
      for size = 1, s:max_size() do
        while st[c].slot < size do c = c + 1 end
        assert(size >= st[c].min and 4 * size >= 3 * st[c].slot,
               ("page size %d: size %d in slot %d"):format(P, size, st[c].slot))
      end
      for i, k in ipairs(classes) do
        assert.equal(k.slot, st[i].slot)
        assert.equal(k.per_page, st[i].per_page)
      end
    end
  end)

  it("make max_size() the one-slot-per-page class, at least a quarter page", function()
    for _, P in ipairs(H.PAGE_SIZES) do
      local s = new_slab({page_size = P})
      local max = s:max_size()
      assert.is_true(max >= P // 4)
      assert.equal(P - slab.PAGE_HEADER - 2, max)
      local ref = assert(s:alloc(max))
      assert.equal(max, s:size(ref))
      assert.equal(max, #s:read(ref))
      H.raises_with({"slab:alloc", "size must be an integer from 1 to " .. max}, s.alloc, s, max + 1)
    end
  end)

  it("pack 16..512-byte objects at 0.80 or better on 4 KiB pages", function()
    local s = new_slab({page_size = 4096})
    local rnd = H.rng(7)
    local p = s.pager
    p:transaction(function()
      for _ = 1, 20000 do assert(s:alloc(15 + rnd(497))) end
    end)
    local st = s:stats()
    assert.is_true(st.efficiency >= 0.80, "efficiency " .. st.efficiency)
  end)
end)

describe("a slab", function()
  after_each(function()
    core._inject_fault(nil)
    H.cleanup()
  end)

  it("allocates zeroed objects of the size asked for", function()
    local s = new_slab()
    for _, size in ipairs({1, 2, 3, 7, 100, 1000, s:max_size()}) do
      local ref = assert(s:alloc(size))
      assert.equal("integer", math.type(ref))
      assert.is_true(ref > 0)
      assert.equal(size, s:size(ref))
      assert.equal(("\0"):rep(size), s:read(ref))
    end
    assert_check(s)
  end)

  it("hands out zeros again where a freed object held data", function()
    local s, p = new_slab()
    local refs = assert(s:alloc_bulk(50, 40))
    for i, ref in ipairs(refs) do s:write(ref, 0, bytes_of(40, i)) end
    s:free_bulk(refs)
    p:transaction(function()
      for _ = 1, 200 do
        local ref = s:alloc(40)
        assert.equal(("\0"):rep(40), s:read(ref))
      end
    end)
    assert_check(s)
  end)

  it("reads and writes at 0-based offsets", function()
    local s = new_slab()
    local ref = s:alloc(10)
    assert.is_true(s:write(ref, 0, "0123456789"))
    assert.equal("0123456789", s:read(ref))
    assert.equal("3456789", s:read(ref, 3))
    assert.equal("34", s:read(ref, 3, 2))
    assert.equal("", s:read(ref, 10))
    assert.equal("", s:read(ref, 4, 0))
    assert.is_true(s:write(ref, 8, "ab"))
    assert.is_true(s:write(ref, 10, ""))
    assert.equal("01234567ab", s:read(ref))
  end)

  it("raises for reads and writes past an object's end", function()
    local s = new_slab()
    local ref = s:alloc(10)
    H.raises_with({"slab:read", "offset must be an integer from 0 to 10 (got 11)"}, s.read, s, ref, 11)
    H.raises_with({"slab:read", "offset must be an integer from 0 to 10 (got -1)"}, s.read, s, ref, -1)
    H.raises_with({"slab:read", "length must be an integer from 0 to 5 at offset 5 (got 6)"},
                  s.read, s, ref, 5, 6)
    H.raises_with({"slab:read", "length must be an integer"}, s.read, s, ref, 0, -1)
    H.raises_with({"slab:read", "offset must be an integer"}, s.read, s, ref, "x")
    H.raises_with({"slab:read", "length must be an integer"}, s.read, s, ref, 0, 1.5)
    H.raises_with({"slab:write", "3 bytes do not fit at offset 8 of a 10-byte object"},
                  s.write, s, ref, 8, "abc")
    H.raises_with({"slab:write", "offset must be an integer from 0 to 10 (got 11)"},
                  s.write, s, ref, 11, "")
    H.raises_with({"slab:write", "data must be a string"}, s.write, s, ref, 0, 5)
    H.raises_with({"slab:write", "offset must be an integer"}, s.write, s, ref, nil, "x")
    assert.equal(("\0"):rep(10), s:read(ref))
  end)

  it("gives a read-only window of an object's current content with view()", function()
    local s, p = new_slab()
    local left, ref, right = s:alloc(20), s:alloc(20), s:alloc(20)
    s:write(left, 0, ("L"):rep(20))
    s:write(right, 0, ("R"):rep(20))
    local v = s:view(ref)
    assert.equal(s:size(ref), #v)
    assert.equal(("\0"):rep(20), v:read())
    s:write(ref, 0, "hello")
    assert.equal("hello", v:read(0, 5))
    H.raises_with("read-only", v.write, v, 0, "x")
    H.raises_with("out of range", v.read, v, 21)
    H.raises_with("out of range", v.read, v, 15, 6)
    local tx = p:begin()
    s:write(ref, 0, "in txn")
    assert.equal("in txn", v:read(0, 6), "the transaction's content")
    tx:rollback()
    assert.equal("hello", v:read(0, 5))
    assert.equal(("L"):rep(20), s:read(left))
    assert.equal(("R"):rep(20), s:read(right))
  end)

  it("makes the window of a freed object's page die with the page", function()
    local s = new_slab()
    local ref = s:alloc(30)
    local v = s:view(ref)
    assert.is_true(v:alive())
    s:free(ref)                            -- the page's last object: the page goes back
    assert.is_false(v:alive())
    H.raises_with("dead", v.read, v)
  end)

  it("gives a private writer window outside a transaction, committing only the object's bytes", function()
    local s, p = new_slab()
    local a, b = s:alloc(40), s:alloc(40)
    local wa, wb = s:writer(a), s:writer(b)
    assert.equal(40, #wa)
    wa:write(0, "first")
    wb:pack(0, "<i8", 77)
    assert.equal(("\0"):rep(40), s:read(a), "private until commit")
    H.raises_with("do not fit", wa.write, wa, 38, "abc")
    local barriers = H.barriers(p)
    assert.is_true(wb:commit())
    assert.is_true(wa:commit())
    assert.equal(2, H.barriers(p) - barriers, "each commit one durable transaction")
    assert.equal("first", s:read(a, 0, 5))
    assert.equal(77, (string.unpack("<i8", s:read(b, 0, 8))), "neither commit undid the other")
    assert.is_false(wa:alive())
    local wc <close> = s:writer(a)
    wc:write(0, "discarded")
    wc:discard()
    assert.equal("first", s:read(a, 0, 5))
    assert_check(s)
  end)

  it("gives a writer window of the transaction's copy inside a transaction", function()
    local s, p = new_slab()
    local ref = s:alloc(16)
    local tx = p:begin()
    local w = s:writer(ref)
    w:write(0, "txn bytes")
    assert.equal("txn bytes", s:read(ref, 0, 9), "seen at once")
    assert.is_true(w:commit())             -- only ends the window's writer
    local r2 = s:alloc(16)                 -- the slab's own writers go on
    s:write(r2, 0, "x")
    tx:rollback()
    assert.equal(("\0"):rep(16), s:read(ref))
    H.raises_with("not a live object", s.size, s, r2)
    assert_check(s)
  end)

  it("raises for a method called with a dot", function()
    local s = new_slab()
    H.raises_with({"slab:alloc", "expected a handle as self"}, s.alloc, 10)
    H.raises_with({"slab:free", "expected a handle as self"}, s.free, 65537)
    H.raises_with({"slab:stats", "expected a handle as self"}, s.stats)
  end)

  it("raises for sizes 0 and max_size() + 1 and for sizes of the wrong type", function()
    local s = new_slab()
    local max = s:max_size()
    for _, bad in ipairs({0, -1, max + 1, 1.5, 0 / 0, math.huge, "10", true, {}}) do
      H.raises_with({"slab:alloc", "size must be an integer from 1 to " .. max}, s.alloc, s, bad)
      H.raises_with({"slab:alloc_bulk", "size must be an integer"}, s.alloc_bulk, s, 2, bad)
    end
    H.raises_with("slab:alloc", s.alloc, s)
    assert.equal(7, s:size(s:alloc(7.0)), "an integral float is an integer")
    assert.equal("integer", math.type(s:size(s:alloc(9.0))))
  end)

  it("raises for refs of the wrong type", function()
    local s = new_slab()
    for _, bad in ipairs({0, -5, 1.5, "1", true, {}}) do
      for _, fn in ipairs({"free", "size", "read", "view", "writer"}) do
        H.raises_with({"slab:" .. fn, "ref must be a positive integer"}, s[fn], s, bad)
      end
      H.raises_with({"slab:write", "ref must be a positive integer"}, s.write, s, bad, 0, "")
      H.raises_with({"slab:free_bulk", "ref must be a positive integer"}, s.free_bulk, s, {bad})
    end
    H.raises_with({"slab:free", "ref must be a positive integer (got nil)"}, s.free, s)
  end)

  it("raises for a double free and for any use of a freed ref", function()
    local s = new_slab()
    local keep = s:alloc(10)            -- keeps the page alive
    local ref = s:alloc(10)
    assert.is_true(s:free(ref))
    for _, fn in ipairs({"free", "size", "read", "view", "writer"}) do
      H.raises_with({"slab:" .. fn, "ref " .. ref .. " is not a live object"}, s[fn], s, ref)
    end
    H.raises_with({"slab:write", "not a live object"}, s.write, s, ref, 0, "x")
    H.raises_with({"slab:free_bulk", "not a live object"}, s.free_bulk, s, {keep, ref})
    assert.equal(10, s:size(keep), "free_bulk raised before freeing anything")
  end)

  it("refuses, in the same transaction and through every handle, a ref whose page went back", function()
    local s, p = new_slab()
    local s2 = assert(slab.open(p, "objects"))
    p:transaction(function()
      local lone = s:alloc(3000)          -- a class of one slot per page: its own page
      local other = s2:alloc(3000)
      assert.is_true(s2:free(lone))       -- its page goes back to the pager
      for _, h in ipairs({s, s2}) do
        H.raises_with({"slab:free", "not a live object"}, h.free, h, lone)
        H.raises_with({"slab:size", "not a live object"}, h.size, h, lone)
      end
      assert.is_true(s:free(other))
      H.raises_with({"slab:free", "not a live object"}, s2.free, s2, other)
    end)
    assert.equal(0, s:stats().objects)
    assert.equal(1, s:stats().pages, "only the anchor is left")
    assert(s:check())
  end)

  it("raises for refs that were never handed out", function()
    local s, p = new_slab()
    local ref = s:alloc(10)
    local pid = ref >> 16
    for _, bad in ipairs({ref + 1, (pid << 16) + 65535, ((pid + 100) << 16) + 1, 1, 1 << 40,
                          (s.pid << 16) + 1, (p:alloc_protected() << 16) + 1}) do
      H.raises_with({"slab:free", "not a live object of this slab"}, s.free, s, bad)
      H.raises_with({"slab:read", "not a live object of this slab"}, s.read, s, bad)
    end
    assert_check(s)
  end)

  it("raises for a ref of another slab", function()
    local p = H.create()
    local a = assert(slab.open(p, "a"))
    local b = assert(slab.open(p, "b"))
    local ra, rb = a:alloc(10), b:alloc(10)
    for _, fn in ipairs({"free", "size", "read", "view", "writer"}) do
      H.raises_with({"slab:" .. fn, "ref " .. rb .. " belongs to another slab"}, a[fn], a, rb)
    end
    H.raises_with({"slab:free_bulk", "another slab"}, a.free_bulk, a, {ra, rb})
    assert.equal(10, a:size(ra))
    assert.equal(10, b:size(rb))
  end)

  it("frees and allocates in bulk, all or none", function()
    local s, p = new_slab()
    local b = H.barriers(p)
    local refs = assert(s:alloc_bulk(500, 24))
    assert.equal(1, H.barriers(p) - b, "one durable commit")
    assert.equal(500, #refs)
    local seen = {}
    for _, ref in ipairs(refs) do
      assert.is_nil(seen[ref])
      seen[ref] = true
      assert.equal(24, s:size(ref))
    end
    assert.same({}, s:alloc_bulk(0, 24))
    H.raises_with({"slab:alloc_bulk", "n must be a non-negative integer (got -1)"}, s.alloc_bulk, s, -1, 24)
    H.raises_with({"slab:alloc_bulk", "n must be a non-negative integer (got string)"},
                  s.alloc_bulk, s, "3", 24)
    H.raises_with({"slab:alloc_bulk", "(got 1.5)"}, s.alloc_bulk, s, 1.5, 24)
    H.raises_with({"slab:free_bulk", "ref " .. refs[2] .. " appears twice"},
                  s.free_bulk, s, {refs[1], refs[2], refs[2]})
    H.raises_with({"slab:free_bulk", "refs must be a table"}, s.free_bulk, s, refs[1])
    assert.equal(500, s:stats().objects, "nothing was freed")
    b = H.barriers(p)
    assert.is_true(s:free_bulk(refs))
    assert.equal(1, H.barriers(p) - b)
    assert.is_true(s:free_bulk({}))
    assert.equal(0, s:stats().objects)
    assert_check(s)
  end)

  it("fills partly used pages before it makes new ones in alloc_bulk", function()
    local s, p = new_slab({page_size = 1024})
    local per = s:stats().classes[10].per_page
    local size = s:stats().classes[10].slot
    local first = assert(s:alloc_bulk(per * 3, size))
    -- free every other object: three pages with holes (reusable next transaction)
    local holes = {}
    for i = 1, #first, 2 do holes[#holes + 1] = first[i] end
    assert(s:free_bulk(holes))
    local pages = p:info().protected_count
    local more = assert(s:alloc_bulk(#holes, size))
    assert.equal(#holes, #more)
    assert.equal(pages, p:info().protected_count, "no new page")
    assert(s:alloc_bulk(per + 1, size))
    assert.equal(pages + 2, p:info().protected_count)
    assert_check(s)
  end)

  it("lists its objects in ascending ref order with their sizes", function()
    local s, p = new_slab({page_size = 1024})
    assert.same({}, objects(s))
    local model = {}
    p:transaction(function()
      for i = 1, 300 do
        local size = 1 + (i * 37) % s:max_size()
        model[s:alloc(size)] = size
      end
    end)
    for ref in pairs(model) do
      if ref % 3 == 0 then s:free(ref) model[ref] = nil end
    end
    local last = 0
    local got = {}
    for ref, size in s:objects() do
      assert.is_true(ref > last)
      last = ref
      got[ref] = size
    end
    assert.same(model, got)
  end)

  it("counts objects, bytes and pages in stats", function()
    local s, p = new_slab()
    local st = s:stats()
    assert.same({0, 0, 1, 4096, 0}, {st.objects, st.bytes, st.pages, st.page_bytes, st.efficiency})
    local sizes, total = {3, 100, 100, 2000, 4000, 17}, 0
    for _, size in ipairs(sizes) do s:alloc(size) total = total + size end
    st = s:stats()
    assert.equal(#sizes, st.objects)
    assert.equal(total, st.bytes)
    -- every page the slab owns: all protected pages but the catalog's
    assert.equal(p:info().protected_count - 1, st.pages)
    assert.equal(st.pages * 4096, st.page_bytes)
    assert.equal(total / st.page_bytes, st.efficiency)
    local objs, bytes, pages = 0, 0, 0
    for _, k in ipairs(st.classes) do
      objs, bytes, pages = objs + k.objects, bytes + k.bytes, pages + k.pages
      assert.is_true(k.objects <= k.pages * k.per_page)
    end
    assert.same({#sizes, total, st.pages - 1}, {objs, bytes, pages})
    assert.equal(4096, st.page_size)
    assert.equal(s:max_size(), st.max_size)
  end)

  it("gives every freed page back to the pager in the same transaction", function()
    local s, p = new_slab({page_size = 1024})
    local base = p:info().protected_count
    local refs = assert(s:alloc_bulk(100, 100))
    local more = assert(s:alloc_bulk(10, 900))
    assert.is_true(p:info().protected_count > base + 10)
    p:transaction(function()
      s:free_bulk(more)
      for _, ref in ipairs(refs) do s:free(ref) end
      assert.equal(base, p:info().protected_count, "inside the transaction")
      assert_check(s)
    end)
    assert.equal(base, p:info().protected_count)
    assert.equal(1, s:stats().pages)
    assert_check(s)
  end)

  it("never hands a freed ref out again in the transaction that freed it, but does from the next", function()
    local s, p = new_slab({page_size = 1024})
    local k = s:stats().classes[12]
    local page = assert(s:alloc_bulk(k.per_page, k.slot))     -- one full page
    local victim = page[5]
    p:transaction(function()
      s:free(victim)
      for _ = 1, 3 * k.per_page do
        assert.are_not.equal(victim, s:alloc(k.slot))
      end
      s:free(page[6])
      for _ = 1, 3 * k.per_page do
        local ref = s:alloc(k.slot)
        assert.are_not.equal(victim, ref)
        assert.are_not.equal(page[6], ref)
      end
    end)
    local found = false
    p:transaction(function()
      for _ = 1, 4 * k.per_page do
        if s:alloc(k.slot) == victim then found = true break end
      end
    end)
    assert.is_true(found)
    assert_check(s)
  end)

  it("keeps refs and contents across reopen", function()
    local s, p, path = new_slab()
    local model = {}
    for i = 1, 50 do
      local ref = s:alloc(i * 7)
      local data = bytes_of(i * 7, i)
      s:write(ref, 0, data)
      model[ref] = data
    end
    p:close()
    local q = H.open(path)
    local s2 = assert(slab.open(q, "objects"))
    for ref, data in pairs(model) do assert.equal(data, s2:read(ref)) end
    local got = objects(s2)
    for ref, data in pairs(model) do assert.equal(#data, got[ref]) end
    assert_check(s2)
  end)

  it("makes each mutation its own durable commit outside a transaction and joins an open one", function()
    local s, p = new_slab()
    local b = H.barriers(p)
    local ref = s:alloc(10)
    s:write(ref, 0, "x")
    s:free(ref)
    assert.equal(3, H.barriers(p) - b)
    b = H.barriers(p)
    local tx = p:begin()
    ref = s:alloc(10)
    s:write(ref, 0, "y")
    s:alloc_bulk(5, 5)
    s:free(ref)
    assert.equal(0, H.barriers(p) - b)
    tx:commit()
    assert.equal(1, H.barriers(p) - b)
  end)

  it("shows one handle's changes in another at once", function()
    local p = H.create()
    local a = assert(slab.open(p, "objects"))
    local b = assert(slab.open(p, "objects"))
    local ref = a:alloc(10)
    assert.equal(10, b:size(ref))
    b:write(ref, 0, "shared")
    assert.equal("shared", a:read(ref, 0, 6))
    p:transaction(function()
      local r2 = b:alloc(20)
      assert.equal(20, a:size(r2))
      a:free(ref)
      H.raises_with("not a live object", b.read, b, ref)
    end)
    assert.equal(1, a:stats().objects)
    assert.same(objects(a), objects(b))
  end)

  it("rolls back a multi-object transaction: slab, catalog and raw protected pages", function()
    local p = H.create({page_size = 1024})
    local s = assert(slab.open(p, "objects"))
    local cat = assert(catalog.open(p))
    local pid = p:alloc_protected()
    H.pset(p, pid, H.pcontent(1024, "raw"))
    local model = {}
    for i = 1, 200 do
      local ref = s:alloc(1 + (i * 13) % 700)
      s:write(ref, 0, bytes_of(s:size(ref), i))
      model[ref] = s:read(ref)
    end
    local before = H.pstate(p)
    local stats = s:stats()
    local tx = p:begin()
    local n = 0
    for ref in pairs(model) do
      n = n + 1
      if n % 2 == 0 then s:free(ref) else s:write(ref, 0, ("changed"):sub(1, s:size(ref))) end
    end
    for i = 1, 300 do s:alloc(1 + (i * 31) % 900) end
    s:alloc_bulk(40, 300)
    assert(cat:create("another", "thing"))
    local s2 = assert(slab.open(p, "second"))
    s2:alloc(5)
    local w = p:write_protected(pid)
    w:write(0, "scribbled")
    p:alloc_protected()
    tx:rollback()
    assert.same(before, H.pstate(p))
    for ref, data in pairs(model) do assert.equal(data, s:read(ref)) end
    local got = objects(s)
    local want = {}
    for ref, data in pairs(model) do want[ref] = #data end
    assert.same(want, got)
    assert.same(stats, s:stats())
    assert.is_nil(cat:get("another"))
    H.raises_with("no longer exists", s2.alloc, s2, 1)
    assert_check(s)
  end)

  it("shows the rolled-back state in every handle after a failed commit", function()
    local p, path = H.create()
    local a = assert(slab.open(p, "objects"))
    local b = assert(slab.open(p, "objects"))
    local keep = a:alloc(10)
    a:write(keep, 0, "kept")
    local tx = p:begin()
    local gone = a:alloc(10)
    b:free(keep)
    core._inject_fault("barrier", "eio")
    local ok, _, code = tx:commit()
    core._inject_fault(nil)
    assert.is_nil(ok)
    assert.equal("io", code)
    for _, h in ipairs({a, b}) do
      assert.equal("kept", h:read(keep, 0, 4))
      H.raises_with("not a live object", h.size, h, gone)
      assert.same({[keep] = 10}, objects(h))
    end
    H.fails_with("poisoned", a:alloc(1))
    p:close()
    -- the file holds the last durable state, or the failed commit's if all
    -- of it reached the disk anyway (docs/FORMAT.md), never a mix
    local q = H.open(path)
    local c = assert(slab.open(q, "objects"))
    local got = objects(c)
    if got[keep] then
      assert.same({[keep] = 10}, got)
      assert.equal("kept", c:read(keep, 0, 4))
    else
      assert.same({[gone] = 10}, got)
    end
    assert_check(c)
  end)

  it("changes nothing inside the caller's transaction when a call fails for want of room", function()
    -- The file has `room` free pages left and cannot grow: every call that
    -- needs more (new slab pages, or the first change of a page in the
    -- transaction, which copies it) fails at that point with nil, msg,
    -- "no_space", and the open transaction holds exactly what it held
    -- before. room = 0, 1, 2, ... puts the failure at every point.
    local function attempt(room, op)
      local s, p = new_slab({page_size = 1024})
      local refs = assert(s:alloc_bulk(60, 100))
      local big = assert(s:alloc_bulk(5, 900))
      local tx = p:begin()
      s:free(refs[1])
      s:alloc(30)
      while p:free_count() > room do p:alloc() end
      local before, st = objects(s), s:stats()
      core._inject_fault("grow", "enospc")
      local ok, _, code
      if op == "alloc_bulk" then
        ok, _, code = s:alloc_bulk(40, 300)
      elseif op == "free_bulk" then
        local list = {big[1], big[3]}
        for i = 2, 60, 2 do list[#list + 1] = refs[i] end
        ok, _, code = s:free_bulk(list)
      elseif op == "free" then
        ok, _, code = s:free(big[2])
      else
        ok, _, code = s:alloc(700)
      end
      core._inject_fault(nil)
      if not ok then
        assert.equal("no_space", code)
        assert.same(before, objects(s))
        assert.same(st, s:stats())
      end
      assert_check(s)
      assert(tx:commit())
      assert_check(s)
      return ok
    end
    for _, op in ipairs({"alloc", "free", "alloc_bulk", "free_bulk"}) do
      local failed = 0
      for room = 0, 60 do
        if attempt(room, op) then break end
        failed = failed + 1
      end
      assert.is_true(failed > 0, op .. " never needed room")
      assert.is_true(failed < 61, op .. " never succeeded")
    end
  end)

  it("raises for every method after its pager was closed", function()
    local s, p = new_slab()
    local ref = s:alloc(10)
    p:close()
    for _, call in ipairs({
      {"alloc", 1}, {"free", ref}, {"size", ref}, {"read", ref}, {"write", ref, 0, "x"},
      {"alloc_bulk", 2, 2}, {"free_bulk", {ref}}, {"view", ref}, {"writer", ref},
      {"objects"}, {"stats"}, {"check"}, {"max_size"}, {"name"},
    }) do
      H.raises_with({"slab:" .. call[1], "after its pager was closed"},
                    s[call[1]], s, table.unpack(call, 2))
    end
    assert.matches("pager is closed", tostring(s))
  end)

  it("raises for every method after the slab was dropped", function()
    local s, p = new_slab()
    local ref = s:alloc(10)
    assert(s:alloc_bulk(100, 300))
    local base = 1                                 -- the catalog's page
    assert.is_true(slab.drop(p, "objects"))
    assert.equal(base, p:info().protected_count, "every page went back")
    for _, call in ipairs({
      {"alloc", 1}, {"free", ref}, {"size", ref}, {"read", ref}, {"write", ref, 0, "x"},
      {"alloc_bulk", 2, 2}, {"free_bulk", {ref}}, {"view", ref}, {"writer", ref},
      {"objects"}, {"stats"}, {"check"}, {"max_size"}, {"name"},
    }) do
      H.raises_with({"slab:" .. call[1], "no longer exists"}, s[call[1]], s, table.unpack(call, 2))
    end
    assert.matches("dropped", tostring(s))
    H.fails_with("not_found", slab.drop(p, "objects"))
    local again = assert(slab.open(p, "objects"))
    assert.same({}, objects(again))
  end)

  it("drops in the open transaction, and a rollback brings it all back", function()
    local s, p = new_slab()
    local refs = s:alloc_bulk(300, 50)
    s:write(refs[7], 0, "seven")
    local tx = p:begin()
    assert.is_true(slab.drop(p, "objects"))
    tx:rollback()
    assert.equal("seven", s:read(refs[7], 0, 5))
    assert.equal(300, s:stats().objects)
    assert_check(s)
  end)

  it("raises for alloc and free after a drop in the transaction of their earlier calls", function()
    local s, p = new_slab()
    local kept = s:alloc(40)
    local tx = p:begin()
    local refs = {}
    for i = 1, 20 do refs[i] = s:alloc(40) end     -- the calls' in-place paths warmed
    assert.is_true(s:free(refs[1]))
    assert.is_true(slab.drop(p, "objects"))
    H.raises_with({"slab:alloc", "no longer exists"}, s.alloc, s, 40)
    H.raises_with({"slab:free", "no longer exists"}, s.free, s, refs[2])
    tx:rollback()
    assert.same({[kept] = 40}, objects(s))          -- the handle is good again
    local ref = s:alloc(40)
    assert.is_true(s:free(ref))
    assert_check(s)
  end)

  it("opens and reads on a read-only pager, where every mutation raises", function()
    local s, p, path = new_slab()
    local ref = s:alloc(10)
    s:write(ref, 0, "ro")
    p:close()
    local q = H.open(path, {readonly = true})
    local r = assert(slab.open(q, "objects"))
    assert.equal("ro", r:read(ref, 0, 2))
    assert.equal(10, r:size(ref))
    assert.same({[ref] = 10}, objects(r))
    assert_check(r)
    assert.equal(1, r:stats().objects)
    assert.equal(10, #r:view(ref))
    for _, call in ipairs({
      {"alloc", 1}, {"free", ref}, {"write", ref, 0, "x"}, {"alloc_bulk", 2, 2},
      {"free_bulk", {ref}}, {"writer", ref},
    }) do
      H.raises_with({"slab:" .. call[1], "read-only"}, r[call[1]], r, table.unpack(call, 2))
    end
    H.raises_with({"slab.drop", "read-only"}, slab.drop, q, "objects")
  end)

  it("describes itself in one line", function()
    local s = new_slab()
    s:alloc(100)
    local line = tostring(s)
    assert.matches('^mappedpages.Slab "objects": 1 object, 100 bytes in 2 pages', line)
    assert.is_nil(line:find("\n"))
  end)

  it("finds damage with check()", function()
    local s, p = new_slab()
    local refs = s:alloc_bulk(20, 100)
    assert_check(s)
    local pid = refs[1] >> 16
    local good = p:protected(pid):read()
    -- a wrong used counter
    local w = p:write_protected(pid)
    w:pack(12, "<I2", 99)
    w:commit()
    local ok, problems = s:check()
    assert.is_false(ok)
    assert.matches("page " .. pid, table.concat(problems, "\n"))
    -- a fresh slot that is not zero
    H.pset(p, pid, good)
    assert_check(s)
    local k = s:stats().classes[1]
    for _, c in ipairs(s:stats().classes) do if c.objects > 0 then k = c end end
    w = p:write_protected(pid)
    w:write(slab.PAGE_HEADER + 2 * k.per_page + 25 * k.slot, "x")
    w:commit()
    ok, problems = s:check()
    assert.is_false(ok)
    assert.matches("not zeroed", table.concat(problems, "\n"))
    -- the anchor's page count
    H.pset(p, pid, good)
    w = p:write_protected(s.pid)
    w:pack(16, "<I4", 7)
    w:commit()
    ok, problems = s:check()
    assert.is_false(ok)
    assert.matches("counts 7 pages", table.concat(problems, "\n"))
  end)

  it("allocates no Lua memory per alloc and free on the hot path", function()
    local s, p = new_slab()
    local tx = p:begin()
    local refs = {}
    -- warm: 600 objects, on pages whose writers and mirror records the
    -- transaction has made (per page, not per call)
    local per_page = s:stats().classes[1].per_page
    for i = 1, per_page + per_page // 2 do refs[i] = s:alloc(1) end
    collectgarbage()
    collectgarbage("stop")
    local before = collectgarbage("count")
    -- every other object of the first page and a half (no page empties),
    -- then allocs from the fresh slots left (no new page)
    for i = 1, per_page + per_page // 2, 2 do s:free(refs[i]) end
    for _ = 1, per_page // 4 do s:alloc(1) end
    local grew = collectgarbage("count") - before
    collectgarbage("restart")
    tx:rollback()
    assert.is_true(grew < 1, ("%.1f KiB allocated by %d calls"):format(grew, per_page))
  end)
end)

describe("a slab on a full disk", function()
  local dir, pagers
  before_each(function()
    dir = H.tmpdir()
    if not os.execute("mount -t tmpfs -o size=256k tmpfs " .. sq(dir) .. " 2>/dev/null") then dir = nil end
    pagers = {}
  end)
  after_each(function()
    for _, p in ipairs(pagers) do p:close() end
    if dir then os.execute("umount " .. sq(dir)) end
    H.cleanup()
  end)
  local function track(p) pagers[#pagers + 1] = p return p end

  it("fails with nil, msg, 'no_space' and loses nothing", function()
    if not dir then return pending("needs root to mount a small tmpfs") end
    local path = dir .. "/f.mp"
    local p = track(assert(mp.create(path, {page_size = 4096})))
    local s = assert(slab.open(p, "objects"))
    local model, i = {}, 0
    local msg, code
    while true do
      i = i + 1
      assert(i < 10000, "the disk never filled")
      local size = 200 + (i * 97) % 1500
      local ref
      ref, msg, code = s:alloc(size)
      if not ref then break end
      local data = bytes_of(size, i)
      local ok, m2, c2 = s:write(ref, 0, data)
      if not ok then
        msg, code = m2, c2
        model[ref] = ("\0"):rep(size)
        break
      end
      model[ref] = data
    end
    assert.equal("no_space", code)
    assert.is_string(msg)
    assert.is_false(p:info().poisoned)
    -- nothing half done: every object is there, the structure is sound
    for ref, data in pairs(model) do assert.equal(data, s:read(ref)) end
    assert_check(s)
    assert.is_true(p:check())
    local count = s:stats().objects
    -- bulk calls are all or nothing
    local r, _, c = s:alloc_bulk(500, 1000)
    assert.is_nil(r)
    assert.equal("no_space", c)
    assert.equal(count, s:stats().objects)
    -- inside a transaction only the failing call fails
    local tx = p:begin()
    local done = 0
    for _ = 1, 1000 do
      local ref, _, c3 = s:alloc(1500)
      if not ref then assert.equal("no_space", c3) break end
      done = done + 1
    end
    assert.equal(count + done, s:stats().objects)
    assert_check(s)
    tx:rollback()
    assert.equal(count, s:stats().objects)
    -- a free either works or fails with no_space and changes nothing
    local freed = 0
    for ref in pairs(model) do
      local ok, _, c4 = s:free(ref)
      if ok then model[ref] = nil freed = freed + 1 else assert.equal("no_space", c4) end
      if freed >= 5 then break end
    end
    for ref, data in pairs(model) do assert.equal(data, s:read(ref)) end
    assert_check(s)
    p:close()
    local q = track(assert(mp.open(path)))
    local s2 = assert(slab.open(q, "objects"))
    for ref, data in pairs(model) do assert.equal(data, s2:read(ref)) end
    assert_check(s2)
  end)
end)

describe("a slab under a random workload", function()
  after_each(function() H.cleanup() end)

  -- One seeded run against a model: {[ref] = content}. Two handles take
  -- turns; transactions commit or roll back; the file is reopened now and
  -- then; s:check(), objects() and stats() are compared throughout.
  local function run(seed, page_size, steps)
    local rnd = H.rng(seed)
    local p, path = H.create({page_size = page_size})
    local handles = {assert(slab.open(p, "objects")), assert(slab.open(p, "objects"))}
    local max = handles[1]:max_size()
    local model, live = {}, {}          -- ref -> content; list of refs (unordered)
    local pos = {}                      -- ref -> index in live
    local saved                         -- model while a transaction is open
    local tx
    local freed_now = {}                -- refs freed in the open transaction
    local function add(ref, content)
      assert(model[ref] == nil, "ref handed out twice: " .. ref)
      assert(not freed_now[ref], "ref " .. ref .. " handed out again in the transaction that freed it")
      model[ref] = content
      live[#live + 1] = ref
      pos[ref] = #live
    end
    local function remove(ref)
      model[ref] = nil
      local i = pos[ref]
      live[i] = live[#live]
      pos[live[i]] = i
      live[#live] = nil
      pos[ref] = nil
      if tx then freed_now[ref] = true end
    end
    local function restore(m)
      model, live, pos = {}, {}, {}
      for ref, content in pairs(m) do
        model[ref] = content
        live[#live + 1] = ref
      end
      table.sort(live)
      for i, ref in ipairs(live) do pos[ref] = i end
    end
    local function copy(m)
      local c = {}
      for k, v in pairs(m) do c[k] = v end
      return c
    end
    local function size()
      local r = rnd(100)
      if r <= 60 then return rnd(64) end
      if r <= 95 then return rnd(max // 4) end
      return rnd(max)
    end
    local function verify(s)
      assert_check(s)
      local got = objects(s)
      local n, bytes = 0, 0
      for ref, content in pairs(model) do
        assert(got[ref] == #content, "objects() disagrees about " .. ref)
        n, bytes = n + 1, bytes + #content
      end
      for ref in pairs(got) do assert(model[ref], "objects() lists " .. ref) end
      local st = s:stats()
      assert.equal(n, st.objects)
      assert.equal(bytes, st.bytes)
      assert.equal(st.pages, p:info().protected_count - 1)
    end
    for step = 1, steps do
      local s = handles[rnd(2)]
      local op = rnd(100)
      if op <= 30 then
        local n = size()
        local ref = assert(s:alloc(n))
        add(ref, ("\0"):rep(n))
      elseif op <= 50 and #live > 0 then
        local ref = live[rnd(#live)]
        assert.is_true(s:free(ref))
        remove(ref)
      elseif op <= 55 then
        local n, sz = rnd(40), size()
        local refs = assert(s:alloc_bulk(n, sz))
        assert.equal(n, #refs)
        for _, ref in ipairs(refs) do add(ref, ("\0"):rep(sz)) end
      elseif op <= 60 and #live > 0 then
        local refs, seen = {}, {}
        for _ = 1, rnd(30) do
          local ref = live[rnd(#live)]
          if not seen[ref] then seen[ref] = true refs[#refs + 1] = ref end
        end
        assert.is_true(s:free_bulk(refs))
        for _, ref in ipairs(refs) do remove(ref) end
      elseif op <= 75 and #live > 0 then
        local ref = live[rnd(#live)]
        local content = model[ref]
        local off = rnd(#content + 1) - 1
        local data = bytes_of(rnd(#content - off + 1) - 1, step)
        assert.is_true(s:write(ref, off, data))
        model[ref] = content:sub(1, off) .. data .. content:sub(off + #data + 1)
      elseif op <= 85 and #live > 0 then
        local ref = live[rnd(#live)]
        local content = model[ref]
        local off = rnd(#content + 1) - 1
        local len = rnd(#content - off + 1) - 1
        assert.equal(content:sub(off + 1, off + len), s:read(ref, off, len))
        assert.equal(#content, s:size(ref))
      elseif op <= 92 then
        if not tx then
          tx = p:begin()
          saved = copy(model)
          freed_now = {}
        elseif rnd(3) == 1 then
          tx:rollback()
          tx = nil
          restore(saved)
          freed_now = {}
        else
          assert(tx:commit())
          tx = nil
          freed_now = {}
        end
      elseif op <= 94 and not tx then
        p:close()
        p = H.open(path)
        handles = {assert(slab.open(p, "objects")), assert(slab.open(p, "objects"))}
      end
      if step % 200 == 0 or (op > 94 and step % 7 == 0) then verify(handles[rnd(2)]) end
    end
    if tx then assert(tx:commit()) end
    verify(handles[1])
    for ref, content in pairs(model) do assert.equal(content, handles[2]:read(ref)) end
    p:close()
    p = H.open(path)
    local s = assert(slab.open(p, "objects"))
    verify(s)
    for ref, content in pairs(model) do assert.equal(content, s:read(ref)) end
  end

  it("agrees with a model on 1 KiB pages (seed 1)", function() run(1, 1024, 4000) end)
  it("agrees with a model on 4 KiB pages (seed 2)", function() run(2, 4096, 3000) end)
  it("agrees with a model on 64 KiB pages (seed 3)", function() run(3, 65536, 1500) end)
end)

describe("a slab's header words kept until the commit", function()
  after_each(function() H.cleanup() end)

  it("are in the file after the commit, and seen at once by stats, check, objects and a second handle", function()
    local s, p, path = new_slab()
    local s2 = assert(slab.open(p, "objects"))
    local tx = p:begin()
    local refs = {}
    for i = 1, 50 do refs[i] = assert(s:alloc(10 + i)) end
    for i = 1, 50, 2 do assert(s2:free(refs[i])) end
    assert.are.equal(25, s2:stats().objects)
    assert.is_true(s:check())
    local n = 0
    for ref, size in s2:objects() do
      n = n + 1
      assert.are.equal(s:size(ref), size)
      assert(s:free(ref))             -- the loop frees as it goes
    end
    assert.are.equal(25, n)
    assert.are.equal(0, s:stats().objects)
    refs = {}
    for i = 1, 30 do refs[i] = assert(s2:alloc(100)) end
    assert(tx:commit())
    p:close()
    p = H.open(path)
    s = assert(slab.open(p, "objects"))
    assert.is_true(s:check())
    assert.are.equal(30, s:stats().objects)
    for i = 1, 30 do assert.are.equal(100, s:size(refs[i])) end
  end)

  it("are dropped by a rollback and by a failed commit", function()
    local s, p = new_slab()
    local keep = assert(s:alloc(40))
    local access = require "mappedpages.access"
    for _, failing in ipairs({false, true}) do
      local tx = p:begin()
      local refs = {}
      for i = 1, 20 do refs[i] = assert(s:alloc(40)) end
      assert(s:free(keep))
      if failing then
        access.before_commit(p, "a failure after the slab's", function() return nil, "injected", "io" end)
        assert.is_nil(tx:commit())
      else
        tx:rollback()
      end
      assert.are.equal(1, s:stats().objects)
      assert.are.equal(40, s:size(keep))
      for i = 1, 20 do
        if refs[i] ~= keep then assert.has_error(function() s:size(refs[i]) end) end
      end
      assert.is_true(s:check())
    end
  end)
end)
