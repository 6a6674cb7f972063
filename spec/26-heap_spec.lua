-- 26-heap: values of any size (mappedpages.heap).
--
-- Every function and error path: values at every size boundary (0, 1, the
-- largest small value and one more, page size - 1, page size, page size
-- + 1, many pages, the largest value whose page list fits its descriptor
-- and one page more, which needs index pages), byte ranges, replace (in
-- place and with a new ref), free, refs reused no earlier than the next
-- transaction, values(), stats() and check() (and the damage check()
-- finds), read-only, closed and dropped heaps, a full disk (an injected
-- failure to grow), rollbacks, heaps inside other objects (embed, attach,
-- destroy), the pages a put writes, and a seeded random model test with
-- transactions, rollbacks and reopens.

local H = require "helpers"
local mp = H.mp
local core = require "mappedpages.core"
local heap = require "mappedpages.heap"
local slab = require "mappedpages.slab"
local catalog = require "mappedpages.catalog"

-- h:check() and pager:check() pass; with `alone` (the heap is the file's
-- only object), every page the file has in use is the heap's or the
-- catalog's: nothing leaked.
local function assert_check(h, alone)
  local ok, problems = h:check()
  assert(ok, "h:check() failed:\n  " .. table.concat(problems or {}, "\n  "))
  local pok, pprob = h.pager:check()
  assert(pok, "pager:check() failed:\n  " .. table.concat(pprob or {}, "\n  "))
  if alone then
    local own, info = h:owned(), h.pager:info()
    assert.equal(info.regular_count, #own.regular, "regular pages not owned by the heap")
    assert.equal(info.protected_count, #own.protected + #assert(catalog.open(h.pager)):page_ids(),
                 "protected pages not owned by the heap or the catalog")
  end
end

-- n bytes that differ by position (so a page out of order shows) and by
-- tag (so another value's page shows): a window, starting at a tag's own
-- offset, of a string of numbered 16-byte chunks.
local BASE
local function bytes_of(n, tag)
  local shift = (tag * 7919 % 4096) * 16
  if not BASE or #BASE < n + shift then
    local parts = {}
    for i = 0, (n + 65536) // 16 + 1 do parts[#parts + 1] = ("%015x|"):format(i) end
    BASE = table.concat(parts)
  end
  return BASE:sub(shift + 1, shift + n)
end

local function new_heap(opts, name)
  local p, path = H.create(opts or {page_size = 1024})
  local h = assert(heap.open(p, name or "blobs"))
  return h, p, path
end

local function values(h)
  local out = {}
  for ref, size in h:values() do out[#out + 1] = {ref, size} end
  return out
end

describe("heap.open", function()
  after_each(function() H.cleanup() end)

  it("creates an empty heap in one durable commit, with the file's catalog", function()
    local p = H.create()
    local b = H.barriers(p)
    local h = assert(heap.open(p, "blobs"))
    assert.equal(1, H.barriers(p) - b)
    assert.equal("blobs", h:name())
    assert.same({}, values(h))
    local st = h:stats()
    assert.equal(0, st.values)
    assert.equal(0, st.bytes)
    assert.equal(2, st.pages)          -- the anchor and the slab's anchor
    assert_check(h)
    assert.equal("heap", assert(catalog.open(p)):get("blobs").kind)
  end)

  it("opens an existing heap and sees its values after a reopen", function()
    local h, p, path = new_heap()
    local a, b = assert(h:put("small")), assert(h:put(bytes_of(5000, 1)))
    p = H.reopen(p, path)
    local h2 = assert(heap.open(p, "blobs"))
    assert.equal("small", h2:get(a))
    assert.equal(bytes_of(5000, 1), h2:get(b))
    assert_check(h2)
  end)

  it("refuses a name that holds another kind, and a missing name on a read-only pager", function()
    local p, path = H.create()
    assert(slab.open(p, "objects"))
    H.fails_with("kind", heap.open(p, "objects"))
    p:close()
    local q = H.open(path, {readonly = true})
    H.fails_with("not_found", heap.open(q, "blobs"))
  end)

  it("raises for a bad pager or name", function()
    local p = H.create()
    H.raises_with("pager expected", heap.open, 42, "x")
    H.raises_with("name must be", heap.open, p, "")
    H.raises_with("name must be", heap.open, p, ("n"):rep(256))
    H.raises_with("name must be a string", heap.open, p, 7)
    p:close()
    H.raises_with("closed", heap.open, p, "x")
  end)

  it("is one informative line in the REPL", function()
    local h = new_heap()
    h:put("abc")
    h:put(bytes_of(3000, 2))
    assert.matches('^mappedpages.Heap "blobs": 2 values %(1 small, 1 large%), 3003 bytes in %d+ pages %(efficiency 0%.%d+%)$',
                   tostring(h))
    heap.drop(h.pager, "blobs")
    assert.matches("unusable", tostring(h))
  end)
end)

describe("values at every size boundary", function()
  after_each(function() H.cleanup() end)

  for _, P in ipairs({1024, 4096}) do
    it(("round-trips each size with %d-byte pages, whole and in ranges, across a reopen"):format(P), function()
      local h, p, path = new_heap({page_size = P})
      local L = heap.limits(P)
      assert.equal(L.small_max, h:small_max())
      assert.equal(L.max_size, h:max_size())
      local sizes = {0, 1, 2, L.small_max - 1, L.small_max, L.small_max + 1, P - 1, P, P + 1,
                     2 * P - 1, 2 * P, 2 * P + 1, 10 * P + 7}
      if P == 1024 then
        -- the largest page list inline in the descriptor, and one page more
        for _, n in ipairs({L.inline * P, L.inline * P + 1, (L.inline + 1) * P,
                            L.per_index * P, L.per_index * P + 1, (L.per_index + 1) * P + 3}) do
          sizes[#sizes + 1] = n
        end
      end
      local refs = {}
      for i, n in ipairs(sizes) do
        local ref = assert(h:put(bytes_of(n, i)))
        assert.equal(n > L.small_max and 1 or 0, ref & 1, "ref kind of size " .. n)
        refs[i] = ref
      end
      local function verify(hh)
        for i, n in ipairs(sizes) do
          local want = bytes_of(n, i)
          assert.equal(n, hh:size(refs[i]))
          assert.equal(want, hh:get(refs[i]), "size " .. n)
          for _, span in ipairs({{0, 0}, {0, 1}, {n - 1, 1}, {P - 1, 2}, {P, P}, {1, n - 2},
                                 {n, 0}, {n // 2}}) do
            local off, len = span[1], span[2]
            if off >= 0 and off <= n and (len == nil or (len >= 0 and off + len <= n)) then
              local got = hh:get(refs[i], off, len)
              assert.equal(want:sub(off + 1, len and off + len or n), got,
                           ("size %d, off %d, len %s"):format(n, off, tostring(len)))
            end
          end
        end
      end
      verify(h)
      assert_check(h)
      p = H.reopen(p, path)
      local h2 = assert(heap.open(p, "blobs"))
      verify(h2)
      assert_check(h2)
    end)
  end

  it("raises for a range past the value's end, naming the function", function()
    local h = new_heap()
    local s, l = h:put("hello"), h:put(bytes_of(3000, 1))
    for _, ref in ipairs({s, l}) do
      local n = h:size(ref)
      H.raises_with({"heap:get", "offset"}, h.get, h, ref, n + 1)
      H.raises_with({"heap:get", "offset"}, h.get, h, ref, -1)
      H.raises_with({"heap:get", "length"}, h.get, h, ref, 0, n + 1)
      H.raises_with({"heap:get", "length"}, h.get, h, ref, 1, n)
      H.raises_with({"heap:get", "length"}, h.get, h, ref, 0, -1)
      H.raises_with({"heap:get", "offset"}, h.get, h, ref, 0.5)
    end
  end)

  it("refuses a value larger than max_size before touching anything", function()
    local h = new_heap()
    local fake = setmetatable({}, {__index = h})
    fake.geo = setmetatable({max_size = 10}, {__index = h.geo})
    local before = h.pager:info().page_count
    H.raises_with({"heap:put", "larger"}, h.put, fake, ("x"):rep(11))
    assert.equal(before, h.pager:info().page_count)
  end)
end)

describe("heap:put, get, size, free", function()
  after_each(function() H.cleanup() end)

  it("raises for a value that is not a string", function()
    local h = new_heap()
    for _, v in ipairs({42, {}, true}) do
      H.raises_with({"heap:put", "value must be a string"}, h.put, h, v)
    end
    H.raises_with({"heap:put", "value must be a string"}, h.put, h)
  end)

  it("raises for refs that are not live values: freed, never put, of another heap, not integers", function()
    local h, p = new_heap()
    local other = assert(heap.open(p, "other"))
    local s, l = h:put("x"), h:put(bytes_of(2000, 1))
    local o = other:put("y")
    for _, fn in ipairs({"get", "size", "free"}) do
      for _, ref in ipairs({0, -1, 1, 2, 3, s + 1, l - 1, s + 2 ^ 20 * 2, math.maxinteger}) do
        H.raises_with("heap:" .. fn, h[fn], h, ref)
      end
      H.raises_with({"heap:" .. fn, "positive integer"}, h[fn], h, "1")
      H.raises_with({"heap:" .. fn, "positive integer"}, h[fn], h, 2.5)
      H.raises_with("heap:" .. fn, h[fn], h, o)
    end
    H.raises_with({"heap:replace", "not a live value"}, h.replace, h, 2, "z")
    assert(h:free(s))
    assert(h:free(l))
    H.raises_with({"heap:free", "not a live value"}, h.free, h, s)
    H.raises_with({"heap:free", "not a live value"}, h.free, h, l)
    H.raises_with({"heap:get", "not a live value"}, h.get, h, l)
    assert_check(h)
  end)

  it("accepts an integral float as a ref", function()
    local h = new_heap()
    local r = h:put("abc")
    assert.equal("abc", h:get(r + 0.0))
  end)

  it("does each put, replace and free of its own in one durable commit", function()
    local h, p = new_heap()
    for _, v in ipairs({"small", bytes_of(50000, 3)}) do
      local b = H.barriers(p)
      local r = assert(h:put(v))
      assert.equal(1, H.barriers(p) - b)
      r = assert(h:replace(r, v .. "!"))
      assert.equal(2, H.barriers(p) - b)
      assert(h:free(r))
      assert.equal(3, H.barriers(p) - b)
    end
  end)

  it("gives back every page when values are freed", function()
    local h, p = new_heap()
    local i0 = p:info()
    local refs = {}
    for i = 1, 20 do refs[i] = assert(h:put(bytes_of(i * 700, i))) end
    for _, r in ipairs(refs) do assert(h:free(r)) end
    local i1 = p:info()
    assert.equal(i0.regular_count, i1.regular_count)
    assert.equal(i0.protected_count, i1.protected_count)
    local st = h:stats()
    assert.equal(0, st.values)
    assert.equal(0, st.large.data_pages)
    assert_check(h)
  end)

  it("writes a value of n bytes into ceil(n / page size) new pages plus a few protected pages", function()
    local h, p = new_heap({page_size = 4096})
    h:put(bytes_of(100, 1))
    local n = 3 * 1024 * 1024 + 5
    local i0 = p:info()
    local r = assert(h:put(bytes_of(n, 2)))
    local i1 = p:info()
    assert.equal((n + 4095) // 4096, i1.regular_count - i0.regular_count)
    local used = (i1.page_count - i1.free_count) - (i0.page_count - i0.free_count)
    assert.is_true(used <= (n + 4095) // 4096 + 8, ("%d more pages in use"):format(used))
    assert.is_true(i1.protected_pages - i0.protected_pages <= 3)
    assert.equal(bytes_of(n, 2), h:get(r))
  end)

  it("hands a freed ref out again no earlier than the next transaction", function()
    local h, p = new_heap()
    for _, n in ipairs({10, 3000}) do
      local r = h:put(bytes_of(n, 1))
      local tx = p:begin()
      assert(h:free(r))
      for i = 1, 200 do assert.not_equal(r, h:put(bytes_of(n, i))) end
      assert(tx:commit())
      local seen = false
      for i = 1, 400 do if h:put(bytes_of(n, i)) == r then seen = true break end end
      assert.is_true(seen, "the freed ref came back in a later transaction")
    end
  end)

  it("never hands out, in the same transaction, a page a freed value had", function()
    local h, p = new_heap()
    local r = h:put(bytes_of(40000, 1))
    local old = {}
    for _, id in ipairs(h:owned().regular) do old[id] = true end
    local tx = p:begin()
    assert(h:free(r))
    for i = 1, 10 do h:put(bytes_of(40000, i + 1)) end
    for _, id in ipairs(h:owned().regular) do assert.is_nil(old[id], "page " .. id .. " reused") end
    -- and a rollback brings the freed value back, bytes intact
    tx:rollback()
    assert.equal(bytes_of(40000, 1), h:get(r))
    assert_check(h)
  end)
end)

describe("heap:replace", function()
  after_each(function() H.cleanup() end)

  it("keeps the ref for a small value of the same size and a large one of the same page count", function()
    local h = new_heap()
    local s = h:put("hello")
    assert.equal(s, h:replace(s, "world"))
    assert.equal("world", h:get(s))
    local l = h:put(bytes_of(5000, 1))
    local pages = h:owned().regular
    assert.equal(l, h:replace(l, bytes_of(4900, 2)))
    assert.equal(bytes_of(4900, 2), h:get(l))
    assert.equal(4900, h:size(l))
    -- on new pages: the old ones were freed
    local now = {}
    for _, id in ipairs(h:owned().regular) do now[id] = true end
    for _, id in ipairs(pages) do assert.is_nil(now[id]) end
    -- with index pages too
    local L = heap.limits(1024)
    local big = h:put(bytes_of((L.inline + 3) * 1024, 3))
    assert.equal(big, h:replace(big, bytes_of((L.inline + 3) * 1024 - 9, 4)))
    assert.equal(bytes_of((L.inline + 3) * 1024 - 9, 4), h:get(big))
    assert_check(h)
  end)

  it("returns a new ref otherwise, and the old one is freed", function()
    local h = new_heap()
    local cases = {{"abc", "abcd"}, {"abc", bytes_of(5000, 1)}, {bytes_of(5000, 1), "abc"},
                   {bytes_of(5000, 1), bytes_of(9000, 2)}, {"", "x"}, {bytes_of(3000, 5), ""}}
    for _, c in ipairs(cases) do
      local r = h:put(c[1])
      local r2 = assert(h:replace(r, c[2]))
      assert.not_equal(r, r2)
      assert.equal(c[2], h:get(r2))
      H.raises_with("not a live value", h.get, h, r)
    end
    assert.equal(#cases, h:stats().values)
    assert_check(h)
  end)

  it("raises for a value that is not a string, changing nothing", function()
    local h = new_heap()
    local r = h:put("abc")
    H.raises_with({"heap:replace", "value must be a string"}, h.replace, h, r, 5)
    assert.equal("abc", h:get(r))
  end)
end)

describe("heap:values and heap:stats", function()
  after_each(function() H.cleanup() end)

  it("iterates over every live value in ascending ref order with its size", function()
    local h = new_heap()
    local want = {}
    for i = 1, 30 do
      local n = (i * 811) % 6000
      local r = h:put(bytes_of(n, i))
      want[r] = n
    end
    local last = 0
    local n = 0
    for ref, size in h:values() do
      assert.is_true(ref > last)
      last = ref
      assert.equal(want[ref], size)
      n = n + 1
    end
    assert.equal(30, n)
  end)

  it("counts bytes, pages, page_bytes and efficiency as the contract says", function()
    local h, p = new_heap()
    local i0 = p:info()
    local total = 0
    for i = 1, 40 do
      local n = (i * 1237) % 9000
      h:put(bytes_of(n, i))
      total = total + n
    end
    local st = h:stats()
    local i1 = p:info()
    assert.equal(40, st.values)
    assert.equal(total, st.bytes)
    assert.equal(st.small.bytes + st.large.bytes, st.bytes)
    assert.equal(st.pages * 1024, st.page_bytes)
    assert.equal(st.bytes / st.page_bytes, st.efficiency)
    -- every page the heap owns, protected and regular, counted once
    local own = h:owned()
    assert.equal(#own.protected + #own.regular, st.pages)
    assert.equal(i1.regular_count - i0.regular_count, #own.regular)
    assert.equal(i1.protected_count - i0.protected_count + 2, #own.protected)
  end)
end)

describe("heap:check", function()
  after_each(function() H.cleanup() end)

  local function damaged(mutate, words)
    local h, p = new_heap()
    h:put("small")
    local l = h:put(bytes_of(5000, 1))
    local L = heap.limits(1024)
    local big = h:put(bytes_of((L.inline + 2) * 1024, 2))
    assert_check(h)
    mutate(h, p, l, big)
    local ok, problems = h:check()
    assert.is_false(ok)
    local all = table.concat(problems, "\n")
    assert.matches(words, all, 1, true)
  end

  it("finds a data page listed twice", function()
    damaged(function(h, _, l)
      local sref = l >> 1
      local a = string.unpack("<I4", h.slab:read(sref, 17, 4))
      h.slab:write(sref, 21, string.pack("<I4", a))
    end, "is also a page of value")
  end)

  it("finds a data page that is not allocated", function()
    damaged(function(h, p, l)
      local sref = l >> 1
      local a = string.unpack("<I4", h.slab:read(sref, 17, 4))
      p:free(a)
    end, "is not an allocated regular page")
  end)

  it("finds a size that does not match the page count", function()
    damaged(function(h, _, l)
      h.slab:write(l >> 1, 1, string.pack("<i8", 50000))
    end, "bytes in 5 pages")
  end)

  it("finds an index page with a bad count, and counters that do not add up", function()
    damaged(function(h, p, _, big)
      local ipid = string.unpack("<I4", h.slab:read(big >> 1, 17, 4))
      local w = p:write_protected(ipid)
      w:pack(8, "<I4", 3)
      assert(w:commit())
    end, "bad magic, owner or count")
    damaged(function(h, p)
      local w = p:write_protected(h.pid)
      w:pack(16, "<i8", 7)
      assert(w:commit())
    end, "anchor: counts 7 large values")
  end)

  it("finds a slab object of an unknown kind and passes on the slab's own problems", function()
    damaged(function(h)
      local r = h:put("zz")
      h.slab:write(r >> 1, 0, "\7")
    end, "kind 7")
    damaged(function(h, p)
      local spid = h.slab:owned()[2]
      local w = p:write_protected(spid)
      w:pack(12, "<I2", 999)
      assert(w:commit())
    end, "slab: ")
  end)
end)

describe("heap on read-only, closed and dropped", function()
  after_each(function() H.cleanup() end)

  it("opens on a read-only pager, reads, and refuses every mutation", function()
    local h, p, path = new_heap()
    local s, l = h:put("abc"), h:put(bytes_of(7000, 1))
    p:close()
    local q = H.open(path, {readonly = true})
    local r = assert(heap.open(q, "blobs"))
    assert.equal("abc", r:get(s))
    assert.equal(bytes_of(7000, 1), r:get(l))
    assert.equal(bytes_of(7000, 1):sub(1001, 3000), r:get(l, 1000, 2000))
    assert.equal(2, r:stats().values)
    assert_check(r)
    H.raises_with({"heap:put", "read-only"}, r.put, r, "x")
    H.raises_with({"heap:replace", "read-only"}, r.replace, r, s, "x")
    H.raises_with({"heap:free", "read-only"}, r.free, r, s)
    H.raises_with("read-only", heap.drop, q, "blobs")
    H.raises_with("read-only", heap.embed, q)
  end)

  it("raises after its pager closed and after a drop", function()
    local h, p = new_heap()
    local r = h:put("abc")
    local h2 = assert(heap.open(p, "blobs"))
    assert(heap.drop(p, "blobs"))
    for _, fn in ipairs({"get", "size", "free"}) do
      H.raises_with({"heap:" .. fn, "no longer exists"}, h[fn], h, r)
    end
    H.raises_with({"heap:put", "no longer exists"}, h2.put, h2, "x")
    H.raises_with("no longer exists", h.stats, h)
    local h3 = assert(heap.open(p, "again"))
    p:close()
    H.raises_with({"heap:put", "closed"}, h3.put, h3, "x")
    H.raises_with({"heap:values", "closed"}, h3.values, h3)
  end)

  it("raises when a method is called with a dot", function()
    local h = new_heap()
    H.raises_with({"heap:put", "obj:method"}, h.put, "x")
    H.raises_with({"heap:get", "obj:method"}, h.get, 5)
  end)

  it("drop frees every page the heap owns and its name, in one commit", function()
    local h, p = new_heap()
    local i0 = p:info()
    local L = heap.limits(1024)
    for i = 1, 10 do h:put(bytes_of(i * 1500, i)) end
    h:put(bytes_of((L.inline + 5) * 1024, 99))
    local b = H.barriers(p)
    assert(heap.drop(p, "blobs"))
    assert.equal(1, H.barriers(p) - b)
    local i1 = p:info()
    assert.equal(i0.regular_count, i1.regular_count)
    assert.equal(i0.protected_count - 2, i1.protected_count)
    assert.is_nil(assert(catalog.open(p)):get("blobs"))
    H.fails_with("not_found", heap.drop(p, "blobs"))
    assert(slab.open(p, "s"))
    H.fails_with("kind", heap.drop(p, "s"))
    assert.is_true(p:check())
  end)
end)

describe("heap and transactions", function()
  after_each(function() H.cleanup() end)

  it("rolls back puts, replaces and frees, in every handle", function()
    local h, p = new_heap()
    local h2 = assert(heap.open(p, "blobs"))
    local keep = h:put(bytes_of(6000, 1))
    local small = h:put("small")
    local free0 = p:info().regular_count
    local tx = p:begin()
    local a = h:put(bytes_of(20000, 2))
    local keep2 = h2:replace(keep, bytes_of(9000, 3))
    h2:free(small)
    assert.equal(bytes_of(20000, 2), h2:get(a))
    assert.equal(bytes_of(9000, 3), h:get(keep2))
    tx:rollback()
    for _, hh in ipairs({h, h2}) do
      assert.equal(bytes_of(6000, 1), hh:get(keep))
      assert.equal("small", hh:get(small))
      H.raises_with("not a live value", hh.get, hh, a)
      assert.equal(2, hh:stats().values)
    end
    assert.equal(free0, p:info().regular_count)
    assert_check(h)
  end)

  it("makes changes to two heaps atomic with pager:transaction", function()
    local p = H.create({page_size = 1024})
    local a, b = assert(heap.open(p, "a")), assert(heap.open(p, "b"))
    local ok, err = pcall(p.transaction, p, function()
      a:put(bytes_of(3000, 1))
      b:put("x")
      error("boom")
    end)
    assert.is_false(ok)
    assert.matches("boom", err)
    assert.equal(0, a:stats().values + b:stats().values)
    local ra, rb = p:transaction(function() return a:put("1"), b:put(bytes_of(4000, 2)) end)
    assert.equal("1", a:get(ra))
    assert.equal(bytes_of(4000, 2), b:get(rb))
  end)

  it("shows the rolled-back state after a failed commit, and the file holds one of the two states", function()
    local h, p, path = new_heap()
    local keep = h:put(bytes_of(3000, 1))
    local tx = p:begin()
    local gone = h:put(bytes_of(8000, 2))
    h:free(keep)
    core._inject_fault("barrier", "eio")
    local ok, _, code = tx:commit()
    core._inject_fault(nil)
    assert.is_nil(ok)
    assert.equal("io", code)
    assert.equal(bytes_of(3000, 1), h:get(keep))
    H.raises_with("not a live value", h.get, h, gone)
    H.fails_with("poisoned", h:put("x"))
    p:close()
    local q = H.open(path)
    local h2 = assert(heap.open(q, "blobs"))
    local got = values(h2)
    assert.equal(1, #got)
    if got[1][1] == keep then assert.equal(bytes_of(3000, 1), h2:get(keep))
    else assert.equal(bytes_of(8000, 2), h2:get(gone)) end
    assert_check(h2)
  end)
end)

describe("heap on a full disk", function()
  after_each(function() H.cleanup() end)

  it("changes nothing when a put, replace or free fails for want of room, inside a transaction or not", function()
    -- The file has `room` free pages left and cannot grow: the call fails
    -- at the point it needs one more page, with nil, msg, "no_space".
    local function attempt(room, op, in_tx)
      local h, p = new_heap()
      local s = h:put("small value")
      local l = h:put(bytes_of(9000, 1))
      local tx = in_tx and p:begin()
      if in_tx then h:put(bytes_of(1500, 9)) end
      local keep = {}
      while p:free_count() > room do keep[#keep + 1] = p:alloc() end
      local before, st = values(h), h:stats()
      core._inject_fault("grow", "enospc")
      local ok, _, code
      if op == "put_small" then ok, _, code = h:put(("s"):rep(700))
      elseif op == "put_large" then ok, _, code = h:put(bytes_of(12000, 2))
      elseif op == "replace" then ok, _, code = h:replace(l, bytes_of(11000, 3))
      elseif op == "replace_same" then ok, _, code = h:replace(l, bytes_of(8500, 4))
      else ok, _, code = h:free(l) end
      core._inject_fault(nil)
      if not ok then
        assert.equal("no_space", code, ("%s, room %d, %s"):format(op, room, tostring(in_tx)))
        assert.same(before, values(h))
        assert.same(st, h:stats())
        assert.equal("small value", h:get(s))
        assert.equal(bytes_of(9000, 1), h:get(l))
      end
      assert_check(h)
      if tx then assert(tx:commit()) assert_check(h) end
      p:close()        -- each pager reserves address space: do not keep hundreds
      return ok
    end
    for _, op in ipairs({"put_small", "put_large", "replace", "replace_same", "free"}) do
      for _, in_tx in ipairs({false, true}) do
        local failed, room = 0, 0
        repeat
          local ok = attempt(room, op, in_tx)
          if not ok then failed = failed + 1 end
          room = room + 1
        until ok or room > 60
        assert.is_truthy(attempt(room + 50, op, in_tx), op .. " never succeeds")
        if op ~= "free" then assert.is_true(failed > 0, op .. " never failed") end
      end
    end
  end)
end)

describe("heaps inside other objects", function()
  after_each(function() H.cleanup() end)

  it("embed, attach and destroy a heap that has no name", function()
    local p, path = H.create({page_size = 1024})
    local i0 = p:info()
    local pid = assert(heap.embed(p))
    local h = assert(heap.attach(p, pid, "my index's values"))
    assert.equal("my index's values", h:name())
    local r = h:put(bytes_of(12345, 1))
    local s = h:put("tiny")
    assert_check(h)
    p = H.reopen(p, path)
    local h2 = assert(heap.attach(p, pid))
    assert.equal(bytes_of(12345, 1), h2:get(r))
    assert.equal("tiny", h2:get(s))
    local owned = h2:owned()
    assert.equal(pid, owned.protected[1])
    assert.equal(13, #owned.regular)
    assert(heap.destroy(p, pid))
    local i1 = p:info()
    assert.equal(i0.regular_count, i1.regular_count)
    assert.equal(i0.protected_count, i1.protected_count)
    H.raises_with("no longer exists", h2.get, h2, r)
    assert.is_true(p:check())
  end)

  it("embeds inside the caller's transaction, which a rollback undoes", function()
    local p = H.create({page_size = 1024})
    local n0 = p:info().protected_count
    local tx = p:begin()
    local pid = assert(heap.embed(p))
    assert(heap.attach(p, pid)):put(bytes_of(5000, 1))
    tx:rollback()
    assert.equal(n0, p:info().protected_count)
    H.fails_with("corrupt", heap.attach(p, pid))
  end)

  it("refuses to attach to a page that is not a heap's anchor", function()
    local p = H.create({page_size = 1024})
    local pid = p:alloc_protected()
    H.fails_with("corrupt", heap.attach(p, pid))
    H.fails_with("corrupt", heap.attach(p, 999))
    H.raises_with("pid must be", heap.attach, p, -1)
    H.raises_with("pager expected", heap.attach, nil, 1)
  end)
end)

describe("a seeded random model of a heap", function()
  after_each(function() H.cleanup() end)

  it("matches a Lua table model through puts, replaces, frees, rollbacks and reopens", function()
    local p, path = H.create({page_size = 1024})
    local h = assert(heap.open(p, "m"))
    local seed = tonumber(os.getenv("MP_HEAP_SEED") or "") or 26
    local r = H.rng(seed)
    local L = heap.limits(1024)
    local model, serial, freed_in = {}, 0, {}
    local tag = 0
    local function random_size()
      local k = r(100)
      if k <= 45 then return r(200) - 1 end
      if k <= 75 then return r(L.small_max + 40) - 1 end
      if k <= 95 then return r(6 * 1024) end
      if k <= 99 then return r(40 * 1024) end
      return (L.inline - 1) * 1024 + r(4 * 1024)
    end
    local ids, live = {}, 0         -- refs ever put (some dead: skipped); live values
    local seen = {reopens = 0, rollbacks = 0, large = 0, indexed = 0, checks = 0}
    local function pick(m)
      while #ids > 0 do
        local i = r(#ids)
        local ref = ids[i]
        if m[ref] then return ref end
        ids[i] = ids[#ids]
        ids[#ids] = nil
      end
    end
    local function op(m, freed)
      local k = r(100)
      local ref = k > 40 and pick(m)
      if live > 300 and k > 60 and k <= 80 then k = 70 elseif live > 300 and r(2) == 1 then k = 70 end
      if not ref then
        tag = tag + 1
        local v = bytes_of(random_size(), tag)
        ref = assert(h:put(v))
        if ref & 1 == 1 then seen.large = seen.large + 1 end
        if #v > L.inline * 1024 then seen.indexed = seen.indexed + 1 end
        assert.is_nil(m[ref], "a live ref handed out again")
        assert.is_true(freed_in[ref] == nil or freed_in[ref] < serial,
                       "ref " .. ref .. " handed out in the transaction that freed it")
        m[ref] = v
        ids[#ids + 1] = ref
        live = live + 1
      else
        if k <= 60 then
          tag = tag + 1
          local v = r(3) == 1 and bytes_of(#m[ref], tag) or bytes_of(random_size(), tag)
          local nref = assert(h:replace(ref, v))
          if nref ~= ref then
            assert.is_nil(m[nref])
            m[ref] = nil
            freed[ref] = true
            ids[#ids + 1] = nref
          end
          m[nref] = v
        elseif k <= 80 then
          assert(h:free(ref))
          m[ref] = nil
          freed[ref] = true
          live = live - 1
        else
          local v = m[ref]
          assert.equal(#v, h:size(ref))
          local off = r(#v + 1) - 1
          local len = r(#v - off + 1) - 1
          assert.equal(v:sub(off + 1, off + len), h:get(ref, off, len))
          if r(4) == 1 then assert.equal(v, h:get(ref)) end
        end
      end
    end
    local function copy(m) local c = {} for k, v in pairs(m) do c[k] = v end return c end
    local steps = tonumber(os.getenv("MP_HEAP_STEPS") or "") or 20000
    local done = 0
    while done < steps do
      serial = serial + 1
      live = 0
      for _ in pairs(model) do live = live + 1 end
      local k = r(100)
      if k <= 10 then
        local freed = {}
        op(model, freed)
        for ref in pairs(freed) do freed_in[ref] = serial end
        done = done + 1
      elseif k <= 90 then
        local saved = copy(model)
        local work = copy(model)
        local fail = r(5) == 1
        local n = r(40)
        local freed = {}
        local ok, err = pcall(p.transaction, p, function()
          for _ = 1, n do op(work, freed) end
          if fail then error("planned rollback") end
        end)
        done = done + n
        if fail then
          assert.is_false(ok)
          assert.matches("planned rollback", err)
          model = saved
          seen.rollbacks = seen.rollbacks + 1
        else
          assert(ok, err)
          model = work
          for ref in pairs(freed) do freed_in[ref] = serial end
        end
      elseif k <= 93 then
        p = H.reopen(p, path)
        h = assert(heap.open(p, "m"))
        seen.reopens = seen.reopens + 1
      elseif k <= 98 then
        local n, bytes = 0, 0
        for ref, size in h:values() do
          assert.equal(#model[ref], size, "values(): ref " .. ref)
          n, bytes = n + 1, bytes + size
        end
        local want, wb = 0, 0
        for _, v in pairs(model) do want, wb = want + 1, wb + #v end
        assert.equal(want, n)
        local st = h:stats()
        assert.equal(want, st.values)
        assert.equal(wb, st.bytes)
      else
        assert_check(h, true)
        seen.checks = seen.checks + 1
      end
    end
    -- what the run went through
    assert.is_true(seen.reopens >= 10 and seen.rollbacks >= 10 and seen.checks >= 10, "too few reopens, rollbacks or checks")
    assert.is_true(seen.large >= 500 and seen.indexed >= 10, "too few large values")
    for ref, v in pairs(model) do assert.equal(v, h:get(ref)) end
    assert_check(h, true)
  end)
end)
