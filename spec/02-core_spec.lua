-- spec/02-core_spec.lua -- creating and opening pagers, regular pages,
-- views, bulk operations and growth.

local H = require "helpers"
local mp = H.mp

local function check_invariant(p)
  local i = p:info()
  assert.are.equal(i.page_count,
    i.free_count + i.regular_count + i.protected_count + i.system_count,
    "page_count == free + regular + protected + system")
end

-- Call fn (a closure making one method call, so that the error can name
-- the method) and check that it raised and that p's state (and the
-- barrier count) did not change: nothing lost, nothing committed.
local function refused(p, words, fn)
  local before = H.state(p)
  local barriers = H.barriers(p)
  local msg = H.raises_with(words, fn)
  assert.are.same(before, H.state(p))
  assert.are.equal(barriers, H.barriers(p))
  return msg
end

describe("creating and opening a pager", function()
  after_each(H.cleanup)

  it("creates a file with 4 KiB pages by default", function()
    local p = H.create()
    assert.are.equal(4096, p:page_size())
    local q = H.create({})
    assert.are.equal(4096, q:page_size())
  end)

  for _, size in ipairs(H.PAGE_SIZES) do
    it(("works with %d-byte pages and keeps their bytes across reopen"):format(size), function()
      local p, path = H.create({ page_size = size })
      assert.are.equal(size, p:page_size())
      local id = p:alloc()
      local v = p:page(id)
      assert.are.equal(size, #v)
      v:write(0, "first")
      v:write(size - 4, "last")
      p:set_root(size)
      check_invariant(p)
      p = H.reopen(p, path)
      assert.are.equal(size, p:page_size())
      assert.are.equal(size, p:info().page_size)
      assert.are.equal(size, p:root())
      assert.are.same({ id }, H.page_list(p))
      v = p:page(id)
      assert.are.equal("first", v:read(0, 5))
      assert.are.equal("last", v:read(size - 4, 4))
    end)
  end

  it("refuses page sizes that are not powers of two from 1 KiB to 64 KiB, and creates no file", function()
    for _, bad in ipairs({ 0, 1000, 3000, 512, 131072, -4096, 4096.5, "4096",
                           1023, 1025, 65535, 1 << 20, 1 << 32, true }) do
      local path = H.path()
      H.raises_with("create", function() mp.create(path, { page_size = bad }) end)
      assert.is_false(H.exists(path), "file left behind for " .. tostring(bad))
    end
  end)

  it("raises on unknown option keys and leaves the file alone", function()
    local path = H.path()
    H.raises(function() mp.create(path, { pagesize = 4096 }) end)
    assert.is_false(H.exists(path))
    local p = H.create({ page_size = 1024 }, path)
    local id = p:alloc()
    p:close()
    local before = H.read_file(path)
    H.raises(function() mp.open(path, { read_only = true }) end)
    H.raises(function() mp.open(path, { bogus = 1 }) end)
    assert.are.equal(before, H.read_file(path))
    p = H.open(path)
    assert.are.same({ id }, H.page_list(p))
  end)

  it("raises on arguments of the wrong type", function()
    local path = H.path()
    H.raises_with("create", function() mp.create() end)
    H.raises_with("create", function() mp.create({}) end)
    H.raises_with("create", function() mp.create(path, 4096) end)
    H.raises_with("create", function() mp.create(path, "big") end)
    assert.is_false(H.exists(path))
    H.create(nil, path):close()
    H.raises_with("open", function() mp.open() end)
    H.raises_with("open", function() mp.open({}) end)
    H.raises_with("open", function() mp.open(path, true) end)
    H.raises_with("open", function() mp.open(path, "r") end)
    assert.is_truthy(H.open(path))
  end)

  it("reopens a file with its allocations, page bytes and root", function()
    local p, path = H.create({ page_size = 2048 })
    local ids = p:alloc_bulk(5)
    for _, id in ipairs(ids) do H.stamp(p, id) end
    p:free(ids[4])
    p:set_root(31337)
    local st = H.state(p)
    p = H.reopen(p, path)
    assert.are.same(st, H.state(p))
    for _, i in ipairs({ 1, 2, 3, 5 }) do assert.is_true(H.stamp_ok(p, ids[i])) end
  end)

  it("keeps allocations, page bytes and the root across many reopens", function()
    local p, path = H.create({ page_size = 1024 })
    local rng = H.rng(7)
    local model = {}                 -- id -> tag
    for round = 1, 25 do
      for _ = 1, rng(6) do
        local id = p:alloc()
        assert.is_nil(model[id], "page handed out twice: " .. id)
        model[id] = "r" .. round
        H.stamp(p, id, model[id])
      end
      local live = H.sorted_keys(model)
      if #live > 3 and rng(2) == 1 then
        local victim = live[rng(#live)]
        p:free(victim)
        model[victim] = nil
      end
      p:set_root(round * 1000 + #live)
      local st = H.state(p)
      p = H.reopen(p, path)
      assert.are.same(st, H.state(p))
      assert.are.same(H.sorted_keys(model), H.page_list(p))
      for id, tag in pairs(model) do
        assert.is_true(H.stamp_ok(p, id, tag), "bytes of page " .. id)
      end
      check_invariant(p)
    end
  end)

  it("continues allocating correctly after reopen", function()
    local p, path = H.create({ page_size = 1024 })
    local ids = p:alloc_bulk(10)
    for _, id in ipairs(ids) do H.stamp(p, id) end
    p:free_bulk({ ids[2], ids[5], ids[9] })
    local live = H.page_set(p)
    p = H.reopen(p, path)
    local new = {}
    for _ = 1, 20 do
      local id = p:alloc()
      assert.is_nil(live[id], "live page handed out again: " .. id)
      assert.is_nil(new[id], "page handed out twice: " .. id)
      new[id] = true
    end
    for id in pairs(live) do assert.is_true(H.stamp_ok(p, id)) end
    local want = {}
    for id in pairs(live) do want[#want + 1] = id end
    for id in pairs(new) do want[#want + 1] = id end
    table.sort(want)
    assert.are.same(want, H.page_list(p))
  end)

  it("reports the documented fields in info()", function()
    local p, path = H.create({ page_size = 1024 })
    local ids = p:alloc_bulk(3)
    p:set_root(12)
    local i = p:info()
    assert.are.equal(path, i.path)
    assert.are.equal(1024, i.page_size)
    assert.are.equal(p:page_count(), i.page_count)
    assert.are.equal(p:free_count(), i.free_count)
    assert.are.equal(#ids, i.regular_count)
    assert.are.equal(0, i.protected_count)
    assert.is_true(i.system_count >= H.group0_reserved(1024))
    for _, k in ipairs({ "page_count", "free_count", "regular_count",
                         "protected_count", "system_count", "txn", "file_size",
                         "reserved_bytes", "root_slot", "fsm_height",
                         "barriers", "commits", "root" }) do
      assert.are.equal("integer", math.type(i[k]), k .. " is an integer")
    end
    for _, k in ipairs({ "in_txn", "readonly", "poisoned", "recovered" }) do
      assert.are.equal("boolean", type(i[k]), k .. " is a boolean")
    end
    assert.is_false(i.in_txn)
    assert.is_false(i.readonly)
    assert.is_false(i.poisoned)
    assert.is_false(i.recovered)
    assert.are.equal(12, i.root)
    assert.are.equal(3, i.txn)
    assert.is_true(i.root_slot == 0 or i.root_slot == 1)
    assert.are.equal(0, i.fsm_height)
    assert.is_true(i.file_size >= i.page_count * 1024)
    assert.is_true(i.reserved_bytes >= i.file_size)
  end)

  it("prints a pager as one readable line naming its file", function()
    local p, path = H.create({ page_size = 1024 })
    local s = tostring(p)
    assert.are.equal("string", type(s))
    assert.is_nil(s:find("\n"))
    assert.is_truthy(s:find(path, 1, true), s)
  end)

  it("keeps page_count equal to free + regular + protected + system pages", function()
    local p = H.create({ page_size = 1024 })
    check_invariant(p)
    local ids = p:alloc_bulk(100)
    check_invariant(p)
    p:free_bulk({ ids[1], ids[50], ids[99] })
    check_invariant(p)
    for _ = 1, 10 do p:alloc() end
    p:free(ids[2])
    check_invariant(p)
  end)
end)

describe("regular pages", function()
  after_each(H.cleanup)

  it("hands out distinct pages that lie inside the file and after the reserved pages", function()
    local p = H.create({ page_size = 1024 })
    local seen = {}
    for _ = 1, 50 do
      local id = p:alloc()
      assert.are.equal("integer", math.type(id))
      assert.is_nil(seen[id])
      seen[id] = true
      assert.is_true(id >= H.group0_reserved(1024), "reserved page handed out: " .. id)
      assert.is_true(id < p:page_count())
    end
  end)

  it("reads a page that was never used as zeros", function()
    local p = H.create({ page_size = 1024 })
    local zeros = string.rep("\0", 1024)
    for _, id in ipairs(p:alloc_bulk(40)) do
      assert.are.equal(zeros, p:page(id):read())
    end
  end)

  it("counts an alloc and a free in free_count at once outside transactions", function()
    local p = H.create({ page_size = 1024 })
    local a = p:alloc()
    local n0, f0 = p:page_count(), p:free_count()
    local b = p:alloc()
    if p:page_count() == n0 then            -- no growth: one page fewer free
      assert.are.equal(f0 - 1, p:free_count())
    end
    local f1 = p:free_count()
    p:free(a)
    assert.are.equal(f1 + 1, p:free_count())
    p:free(b)
    assert.are.equal(f1 + 2, p:free_count())
  end)

  it("refuses to free or view the pages the file uses for itself", function()
    for _, size in ipairs({ 1024, 8192 }) do
      local p = H.create({ page_size = size })
      local id = p:alloc()
      H.stamp(p, id)
      for r = 0, H.group0_reserved(size) - 1 do
        refused(p, "free", function() p:free(r) end)
        refused(p, "page", function() p:page(r) end)
      end
      assert.is_true(H.stamp_ok(p, id))
    end
  end)

  it("raises for page ids outside the file and loses nothing", function()
    local p = H.create({ page_size = 1024 })
    local id = p:alloc()
    H.stamp(p, id)
    local n = p:page_count()
    for _, bad in ipairs({ n, n + 1, n + 1000, (1 << 32) - 1, 1 << 32, 1 << 40,
                           math.maxinteger, -1, math.mininteger }) do
      refused(p, "free", function() p:free(bad) end)
      refused(p, "page", function() p:page(bad) end)
    end
    assert.is_true(H.stamp_ok(p, id))
  end)

  it("raises for page ids that are not integers", function()
    local p = H.create({ page_size = 1024 })
    local id = p:alloc()
    for _, bad in ipairs({ id + 0.5, "x", {}, true }) do
      refused(p, "free", function() p:free(bad) end)
      refused(p, "page", function() p:page(bad) end)
    end
    refused(p, "free", function() p:free() end)
    refused(p, "page", function() p:page() end)
  end)

  it("raises on a double free and loses nothing", function()
    local p = H.create({ page_size = 1024 })
    local a, b = p:alloc(), p:alloc()
    H.stamp(p, b)
    p:free(a)
    refused(p, "free", function() p:free(a) end)
    assert.is_true(H.stamp_ok(p, b))
    assert.are.same({ b }, H.page_list(p))
  end)

  it("raises when viewing a page that is free", function()
    local p = H.create({ page_size = 1024 })
    local a = p:alloc()
    p:alloc()
    p:free(a)
    refused(p, "page", function() p:page(a) end)
  end)

  it("allocates n distinct pages with alloc_bulk in one commit", function()
    local p = H.create({ page_size = 1024 })
    local b0, t0 = H.barriers(p), p:info().txn
    local ids = p:alloc_bulk(25)
    assert.are.equal(25, #ids)
    assert.are.equal(b0 + 1, H.barriers(p))
    assert.are.equal(t0 + 1, p:info().txn)
    local set = {}
    for _, id in ipairs(ids) do
      assert.is_nil(set[id])
      set[id] = true
      assert.is_true(id >= H.group0_reserved(1024))
    end
    assert.are.same(set, H.page_set(p))
  end)

  it("raises on bad counts for alloc_bulk and allocates nothing", function()
    local p = H.create({ page_size = 1024 })
    p:alloc()
    for _, bad in ipairs({ -1, 1.5, "x", {}, math.mininteger }) do
      refused(p, "alloc_bulk", function() p:alloc_bulk(bad) end)
    end
    refused(p, "alloc_bulk", function() p:alloc_bulk() end)
  end)

  it("frees every listed page with free_bulk in one commit", function()
    local p = H.create({ page_size = 1024 })
    local ids = p:alloc_bulk(10)
    local free, b0 = p:free_count(), H.barriers(p)
    p:free_bulk({ ids[1], ids[3], ids[5], ids[7] })
    assert.are.equal(free + 4, p:free_count())
    assert.are.equal(b0 + 1, H.barriers(p))
    assert.are.same({ ids[2], ids[4], ids[6], ids[8], ids[9], ids[10] }, H.page_list(p))
  end)

  local bulk_cases = {
    { "an id past the end of the file", function(p) return p:page_count() + 5 end },
    { "a negative id", function() return -3 end },
    { "a reserved page", function() return 0 end },
    { "a reserved bitmap page", function() return 2 end },
    { "a page that is already free", function(_, extra) return extra end },
    { "the same id twice", function(_, _, ids) return ids[2] end },
    { "a value that is not an integer", function() return "seven" end },
    { "a fractional id", function(_, _, ids) return ids[1] + 0.5 end },
  }

  for _, case in ipairs(bulk_cases) do
    it("frees nothing when free_bulk gets " .. case[1], function()
      local p = H.create({ page_size = 1024 })
      local ids = p:alloc_bulk(6)
      for _, id in ipairs(ids) do H.stamp(p, id) end
      local extra = p:alloc()
      p:free(extra)
      local list = { ids[1], ids[2], ids[3], case[2](p, extra, ids), ids[4] }
      refused(p, "free_bulk", function() p:free_bulk(list) end)
      assert.are.same(ids, H.page_list(p))
      for _, id in ipairs(ids) do assert.is_true(H.stamp_ok(p, id)) end
    end)
  end

  it("raises when free_bulk is not given a table", function()
    local p = H.create({ page_size = 1024 })
    local id = p:alloc()
    refused(p, "free_bulk", function() p:free_bulk(id) end)
    refused(p, "free_bulk", function() p:free_bulk("1,2") end)
    refused(p, "free_bulk", function() p:free_bulk() end)
  end)

  it("lists exactly the allocated pages with pages() after random allocs and frees", function()
    local p = H.create({ page_size = 1024 })
    local rng = H.rng(99)
    local model = {}
    local function check()
      local seen = {}
      for id in p:pages() do
        assert.is_nil(seen[id], "pages() repeated " .. tostring(id))
        seen[id] = true
      end
      assert.are.same(model, seen)
    end
    check()
    for step = 1, 300 do
      local live = H.sorted_keys(model)
      local r = rng(10)
      if r <= 5 or #live == 0 then
        model[p:alloc()] = true
      elseif r <= 8 then
        local id = live[rng(#live)]
        p:free(id)
        model[id] = nil
      elseif r == 9 then
        for _, id in ipairs(p:alloc_bulk(rng(8))) do model[id] = true end
      else
        local victims, used = {}, {}
        for _ = 1, math.min(#live, rng(5)) do
          local id = live[rng(#live)]
          if not used[id] then used[id] = true victims[#victims + 1] = id end
        end
        p:free_bulk(victims)
        for _, id in ipairs(victims) do model[id] = nil end
      end
      if step % 25 == 0 then check() end
    end
    check()
  end)

  it("lets a for loop break out of pages() early", function()
    local p = H.create({ page_size = 1024 })
    p:alloc_bulk(20)
    local n = 0
    for _ in p:pages() do
      n = n + 1
      if n == 3 then break end
    end
    assert.are.equal(3, n)
    assert.are.equal(20, #H.page_list(p))
  end)
end)

describe("views", function()
  after_each(H.cleanup)

  local function setup(size)
    local p, path = H.create({ page_size = size or 1024 })
    local id = p:alloc()
    return p, p:page(id), id, path
  end

  it("have the page size as length and the page id as id()", function()
    local p, v, id = setup(2048)
    assert.are.equal(2048, #v)
    assert.are.equal(id, v:id())
    assert.are.equal(id, p:page(id):id())
  end)

  it("read back what was written, at 0-based offsets", function()
    local _, v = setup()
    v:write(0, "abcdef")
    assert.are.equal("abcdef", v:read(0, 6))
    assert.are.equal("bcd", v:read(1, 3))
    assert.are.equal("a", v:read(0, 1))
    v:write(1020, "wxyz")
    assert.are.equal("wxyz", v:read(1020, 4))
  end)

  it("read the whole page without arguments and the rest of the page from an offset", function()
    local _, v = setup()
    v:write(0, "head")
    v:write(1021, "end")
    local all = v:read()
    assert.are.equal(1024, #all)
    assert.are.equal("head", all:sub(1, 4))
    assert.are.equal("end", all:sub(-3))
    assert.are.equal("end", v:read(1021))
  end)

  it("share bytes between two views of the same page", function()
    local p, v, id = setup()
    local w = p:page(id)
    v:write(100, "shared")
    assert.are.equal("shared", w:read(100, 6))
    w:fill(0x41, 100, 2)
    assert.are.equal("AAared", v:read(100, 6))
  end)

  it("pack values in place and return the next offset", function()
    local _, v = setup()
    assert.are.equal(12, v:pack(0, "<i4 i8", -7, 1 << 40))
    assert.are.equal(108, v:pack(100, "<I8", 0xDEADBEEF))
    assert.are.equal(string.pack("<i4 i8", -7, 1 << 40), v:read(0, 12))
    assert.are.equal(string.pack("<I8", 0xDEADBEEF), v:read(100, 8))
  end)

  it("unpack values and then the next offset", function()
    local _, v = setup()
    v:write(10, string.pack("<i4 d s1", 123, 2.5, "hello"))
    local a, b, c, nxt = v:unpack(10, "<i4 d s1")
    assert.are.equal(123, a)
    assert.are.equal(2.5, b)
    assert.are.equal("hello", c)
    assert.are.equal(10 + 4 + 8 + 1 + 5, nxt)
  end)

  it("round-trip pack and unpack with big-endian formats", function()
    local _, v = setup()
    local nxt = v:pack(3, ">I2 i8", 0x1234, -2)
    assert.are.equal(13, nxt)
    assert.are.equal("\x12\x34", v:read(3, 2))
    local x, y, n = v:unpack(3, ">I2 i8")
    assert.are.same({ 0x1234, -2, 13 }, { x, y, n })
  end)

  it("fill the whole page or a range with a byte", function()
    local _, v = setup()
    v:fill(0xAB)
    assert.are.equal(string.rep("\xAB", 1024), v:read())
    v:fill(0, 10, 5)
    assert.are.equal(string.rep("\xAB", 10) .. string.rep("\0", 5) .. string.rep("\xAB", 1009), v:read())
    v:fill(0x11, 1000)
    assert.are.equal(string.rep("\x11", 24), v:read(1000))
  end)

  it("raise on accesses outside the page and change no byte", function()
    local _, v = setup()
    v:fill(0x5A)
    local before = v:read()
    local bad = H.raises_with
    bad("write", function() v:write(1023, "ab") end)
    bad("write", function() v:write(1024, "a") end)
    bad("write", function() v:write(-1, "a") end)
    bad("write", function() v:write(0, string.rep("x", 1025)) end)
    bad("read", function() v:read(1023, 2) end)
    bad("read", function() v:read(-1, 1) end)
    bad("read", function() v:read(1025) end)
    bad("read", function() v:read(0, 1025) end)
    bad("pack", function() v:pack(1020, "<i8", 1) end)
    bad("pack", function() v:pack(-4, "<i4", 1) end)
    bad("pack", function() v:pack(1020, "<s4", "abc") end)
    bad("unpack", function() v:unpack(1020, "<i8") end)
    bad("unpack", function() v:unpack(-1, "<i1") end)
    bad("fill", function() v:fill(0, 1000, 25) end)
    bad("fill", function() v:fill(0, -1, 2) end)
    bad("fill", function() v:fill(256) end)
    bad("fill", function() v:fill(-1) end)
    assert.are.equal(before, v:read())
  end)

  it("raise on arguments of the wrong type", function()
    local _, v = setup()
    H.raises_with("write", function() v:write("0", {}) end)
    H.raises_with("write", function() v:write(0) end)
    H.raises_with("read", function() v:read({}) end)
    H.raises_with("pack", function() v:pack(0, "<i4", "not a number") end)
    H.raises(function() v:pack(0, "<q") end)
    H.raises_with("unpack", function() v:unpack(0) end)
  end)

  it("keep their writes across reopen", function()
    local p, v, id, path = setup()
    v:pack(0, "<I4", 0xCAFEBABE)
    v:write(1000, "tail")
    p = H.reopen(p, path)
    v = p:page(id)
    assert.are.equal(0xCAFEBABE, (v:unpack(0, "<I4")))
    assert.are.equal("tail", v:read(1000, 4))
  end)
end)

describe("growth", function()
  after_each(H.cleanup)

  it("grows the file several times and keeps the data and views from before", function()
    local p, path = H.create({ page_size = 1024 })
    local first = p:alloc()
    local v = p:page(first)
    v:write(0, "written before growth")
    local counts, last_count = {}, p:page_count()
    local ids = { first }
    p:transaction(function()
      while #counts < 4 and #ids < 40000 do
        local id = p:alloc()
        ids[#ids + 1] = id
        H.stamp(p, id)
        if p:page_count() ~= last_count then
          last_count = p:page_count()
          counts[#counts + 1] = last_count
        end
      end
    end)
    assert.are.equal(4, #counts, "the file grew 4 times")
    assert.are.equal("written before growth", v:read(0, 21))
    v:write(0, "written after growth!")
    assert.are.equal("written after growth!", p:page(first):read(0, 21))
    for i = 2, #ids do assert.is_true(H.stamp_ok(p, ids[i])) end
    check_invariant(p)
    p = H.reopen(p, path)
    assert.are.equal("written after growth!", p:page(first):read(0, 21))
    for i = 2, #ids do assert.is_true(H.stamp_ok(p, ids[i])) end
  end)

  it("grows the file when an auto-commit alloc finds no free page", function()
    local p, path = H.create({ page_size = 1024 })
    local ids = p:alloc_bulk(20)
    if p:free_count() > 0 then
      for _, id in ipairs(p:alloc_bulk(p:free_count())) do ids[#ids + 1] = id end
    end
    assert.are.equal(0, p:free_count())
    for _, id in ipairs(ids) do H.stamp(p, id) end
    local count, b0 = p:page_count(), H.barriers(p)
    local id = p:alloc()
    H.stamp(p, id)
    ids[#ids + 1] = id
    assert.is_true(p:page_count() > count)
    assert.are.equal(b0 + 1, H.barriers(p))
    check_invariant(p)
    p = H.reopen(p, path)
    for _, i in ipairs(ids) do assert.is_true(H.stamp_ok(p, i)) end
  end)

  describe("across group boundaries with 1 KiB pages (3968 pages a group)", function()
    local G = H.geometry(1024).G

    it("never hands out the reserved pages at the start of each group", function()
      local p = H.create({ page_size = 1024 })
      local ids = p:alloc_bulk(2 * G + 200)
      assert.is_true(p:page_count() > 2 * G + 2)
      local reserved = {}
      for r = 0, H.group0_reserved(1024) - 1 do reserved[r] = true end
      for g = 1, 2 do
        for _, r in ipairs(H.group_reserved(1024, g)) do reserved[r] = true end
      end
      local seen = {}
      for _, id in ipairs(ids) do
        assert.is_nil(reserved[id], "reserved page handed out: " .. id)
        assert.is_nil(seen[id])
        seen[id] = true
      end
      for r in pairs(reserved) do
        refused(p, "page", function() p:page(r) end)
        refused(p, "free", function() p:free(r) end)
      end
    end)

    it("counts the reserved pages of every group as system pages", function()
      local p = H.create({ page_size = 1024 })
      p:alloc_bulk(2 * G + 200)
      local want = H.group0_reserved(1024) + #H.group_reserved(1024, 1) + #H.group_reserved(1024, 2)
      assert.are.equal(want, p:info().system_count)
      check_invariant(p)
    end)

    it("keeps pages of every group with their bytes across reopen, and allocates on afterwards", function()
      local p, path = H.create({ page_size = 1024 })
      local ids = p:alloc_bulk(2 * G + 100)
      for _, id in ipairs(ids) do H.stamp(p, id) end
      p:free_bulk({ ids[10], ids[G + 10], ids[2 * G + 10] })
      local live = H.page_set(p)
      local st = H.state(p)
      p = H.reopen(p, path)
      assert.are.same(st, H.state(p))
      for id in pairs(live) do assert.is_true(H.stamp_ok(p, id), "page " .. id) end
      local more = p:alloc_bulk(G)
      for _, id in ipairs(more) do
        assert.is_nil(live[id], "live page handed out again: " .. id)
        live[id] = true
      end
      check_invariant(p)
    end)
  end)

  it("allocates more than 16,381 pages of 4 KiB and keeps allocating after reopen", function()
    local p, path = H.create({ page_size = 4096 })
    local ids = {}
    p:transaction(function()
      for i = 1, 16500 do
        local id = p:alloc()
        ids[i] = id
        p:page(id):pack(0, "<I8", id)
      end
    end)
    assert.are.equal(16500, p:info().regular_count)
    p = H.reopen(p, path)
    assert.are.equal(16500, p:info().regular_count)
    for _, id in ipairs(ids) do
      assert.are.equal(id, (p:page(id):unpack(0, "<I8")))
    end
    local seen = {}
    for _, id in ipairs(ids) do seen[id] = true end
    for _ = 1, 20 do
      local id = p:alloc()
      assert.is_nil(seen[id])
      seen[id] = true
    end
    p:alloc_bulk(500)
    assert.are.equal(17020, p:info().regular_count)
    p = H.reopen(p, path)
    assert.are.equal(17020, p:info().regular_count)
    check_invariant(p)
  end)
end)
