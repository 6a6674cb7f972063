-- 05-faults: a failing durability barrier (EIO, ENOSPC) is final, not silent.
--
-- The binding's test hook core._inject_fault("barrier", code [, after]) makes every
-- fdatasync after the first `after` ones fail with that errno.  Contract
-- (guarantee 8): the call returns nil, msg, code; the pager refuses every
-- later commit; memory shows the last durable state; reopening recovers it
-- with nothing lost that a commit reported as done.

local H = require "helpers"
local mp = H.mp
local core = require "mappedpages.core"

describe("a failing barrier", function()
  after_each(function()
    core._inject_fault(nil)
    H.cleanup()
  end)

  local function setup()
    local path = H.path()
    local p = H.track(assert(mp.create(path)))
    local a = assert(p:alloc())
    p:page(a):write(0, "kept")
    assert(p:set_root(7))
    return path, p, a
  end

  for _, code in ipairs { "eio", "enospc" } do
    it("makes an auto-commit alloc return nil, msg, code (" .. code .. ")", function()
      local _, p = setup()
      core._inject_fault("barrier", code)
      local id, msg, c = p:alloc()
      assert.is_nil(id)
      assert.is_string(msg)
      assert.are.equal(code == "eio" and "io" or "no_space", c)
    end)
  end

  it("poisons the pager: every later mutation is refused with 'poisoned'", function()
    local _, p, a = setup()
    core._inject_fault("barrier", "eio")
    assert.is_nil((p:alloc()))
    core._inject_fault(nil)               -- the disk is fine again, the pager is not
    assert.is_true(p:info().poisoned)
    local r, msg, c = p:alloc()
    assert.is_nil(r); assert.are.equal("poisoned", c); assert.matches("reopen", msg)
    r, _, c = p:free(a)
    assert.is_nil(r); assert.are.equal("poisoned", c)
    r, _, c = p:set_root(1)
    assert.is_nil(r); assert.are.equal("poisoned", c)
  end)

  it("keeps everything a commit reported as done across reopen", function()
    local path, p, a = setup()
    local model = {}
    for _ = 1, 5 do model[#model + 1] = assert(p:alloc()) end
    core._inject_fault("barrier", "eio")
    assert.is_nil((p:alloc()))
    assert.is_nil((p:set_root(1234)))
    core._inject_fault(nil)
    p:close()
    local q = H.track(assert(mp.open(path)))
    assert.are.equal(7, q:root())
    assert.are.equal("kept", q:page(a):read(0, 4))
    for _, id in ipairs(model) do assert.has_no.errors(function() q:page(id) end) end
    -- the failed alloc was the commit being made: the file may hold it or not
    -- (the hook fails the barrier after the writes reached the page cache)
    local n = q:info().regular_count
    assert.is_true(n == 6 or n == 7, "regular_count " .. n)
    assert.is_true(q:check())
  end)

  it("makes tx:commit() return nil, msg, code and ends the transaction", function()
    local path, p = setup()
    local tx = p:begin()
    local b = p:alloc()
    p:set_root(99)
    core._inject_fault("barrier", "enospc")
    local ok, msg, c = tx:commit()
    assert.is_nil(ok); assert.is_string(msg); assert.are.equal("no_space", c)
    assert.is_false(p:info().in_txn)
    -- memory shows the last durable state: the root and the allocation are gone
    assert.are.equal(7, p:root())
    assert.has_error(function() p:page(b) end)
    core._inject_fault(nil)
    p:close()
    -- on disk: the last durable state or the one being committed, whole
    local q = H.track(assert(mp.open(path)))
    if q:root() == 99 then
      assert.are.equal(2, q:info().regular_count)
      assert.has_no.errors(function() q:page(b) end)
    else
      assert.are.equal(7, q:root())
      assert.are.equal(1, q:info().regular_count)
    end
  end)

  it("poisons after an empty commit's barrier fails (the regular-page writes it covers are not durable)", function()
    local _, p, a = setup()
    p:page(a):write(0, "unsure")
    local tx = p:begin()
    core._inject_fault("barrier", "eio")
    local ok, msg, c = tx:commit()
    assert.is_nil(ok); assert.is_string(msg); assert.are.equal("io", c)
    assert.is_true(p:info().poisoned)
    assert.are.equal(7, p:root())
  end)

  it("lets a later barrier fail after some succeed (after = n)", function()
    local _, p = setup()
    core._inject_fault("barrier", "eio", 2)
    assert.is_number((p:alloc()))
    assert.is_number((p:alloc()))
    assert.is_nil((p:alloc()))
    assert.is_true(p:info().poisoned)
  end)

  it("fails open cleanly when the rejected root cannot be invalidated", function()
    local path, p = setup()
    p:close()
    -- damage the newest root so open must fall back and invalidate it
    local f = assert(io.open(path, "r+b"))
    local ps = 4096
    local q0 = assert(mp.open(path, { readonly = true }))
    local slot = q0:info().root_slot
    q0:close()
    f:seek("set", slot * ps + 200); f:write("\255"); f:close()
    core._inject_fault("barrier", "eio")
    local r, msg, c = mp.open(path)
    assert.is_nil(r); assert.is_string(msg); assert.are.equal("io", c)
    core._inject_fault(nil)
    -- the next open falls back again (txn 2: the page allocated, root 0)
    -- and this time invalidates the damaged root durably
    local q = H.track(assert(mp.open(path)))
    assert.are.equal(0, q:root())
    assert.are.equal(1, q:info().regular_count)
    assert.are.equal(1, q:info().barriers)
  end)
end)

describe("a request the disk cannot hold", function()
  after_each(function() H.cleanup() end)

  it("makes alloc_bulk return nil, msg, 'no_space' and allocate nothing", function()
    local p = H.track(assert(mp.create(H.path())))
    local before = p:info()
    local ids, msg, code = p:alloc_bulk(2^31 - 1)   -- ~8 TiB of 4 KiB pages
    assert.is_nil(ids)
    assert.matches("do not fit", msg)
    assert.are.equal("no_space", code)
    local after = p:info()
    assert.are.equal(before.page_count, after.page_count)
    assert.are.equal(before.free_count, after.free_count)
    assert.are.equal(before.txn, after.txn)
    assert.is_number((p:alloc()))                    -- and the pager still works
  end)
end)

---------------------------------------------------------------------------
-- Faults injected through core._inject_fault(op, code [, after]): "grow"
-- fails the posix_fallocate that reserves a growth's disk blocks, "write"
-- a whole-page pwrite (metadata, the root, protected contents written by
-- writer:commit(), open's clearing of a root slot), "barrier" the fdatasync.
--
-- What is checked each time: the call's nil, msg, code; whether the pager
-- is poisoned; that memory shows the state it must (the last durable one,
-- or the open transaction's); and, after close and reopen (read-only and
-- read-write), that the file holds exactly a state a commit reported as
-- done (or, after a failed barrier, the failed commit's whole state): the
-- set of regular pages and their bytes, every pid and its bytes, the root.

local P = 1024
local CODES = { eio = "io", enospc = "no_space" }

local function content(tag) return H.pcontent(P, tag) end

-- A comparable snapshot of everything a file holds: H.pstate (regular
-- pages, pids with a CRC of their bytes, root, counters, txn) plus a CRC of
-- every regular page's bytes.
local function snap(p)
  local st = H.pstate(p)
  local sums = {}
  for _, id in ipairs(H.page_list(p)) do
    sums[#sums + 1] = ("%d=%08x"):format(id, mp.crc32c(p:page(id):read()))
  end
  st.contents = table.concat(sums, ",")
  return st
end

local function key(st)
  local parts = {}
  for _, k in ipairs(H.sorted_keys(st)) do parts[#parts + 1] = k .. "=" .. tostring(st[k]) end
  return table.concat(parts, ";")
end

-- Close p, then open path read-only and read-write: each must show one of
-- the states given (exactly), and pass check().  Returns the state found.
local function reopens_as(p, path, ...)
  local wanted = { ... }
  p:close()
  core._inject_fault(nil)
  local found
  for _, opts in ipairs { { readonly = true }, {} } do
    local q = H.open(path, opts)
    local got = snap(q)
    local match
    for _, w in ipairs(wanted) do if key(w) == key(got) then match = w end end
    if not match then assert.are.same(wanted[1], got, "reopened state") end
    assert.is_true(q:check())
    found = found or match
    assert.are.equal(found, match, "read-only and read-write opens agree")
    q:close()
  end
  return found
end

-- A file with committed history and no free page left (unless spare): 3
-- pids holding content("base1".."base3"), every other page a stamped
-- regular page, root 41.
local function full_file(spare, path)
  path = path or H.path()
  local p = H.track(assert(mp.create(path, { page_size = P })))
  local pids = {}
  for i = 1, 3 do
    pids[i] = assert(p:alloc_protected())
    assert(H.pset(p, pids[i], content("base" .. i)))
  end
  local ids = assert(p:alloc_bulk(p:free_count() - (spare or 0)))
  for _, id in ipairs(ids) do H.stamp(p, id, "base") end
  assert(p:set_root(41))   -- also makes the stamps durable
  assert.are.equal(spare or 0, p:free_count())
  return p, path, pids, ids
end

local function not_poisoned(p)
  assert.is_false(p:info().poisoned)
end

local function poisoned(p)
  assert.is_true(p:info().poisoned)
  H.fails_with("poisoned", p:alloc())
  H.fails_with("poisoned", p:set_root(1))
  H.fails_with("poisoned", p:alloc_protected())
end

describe("a full disk during growth", function()
  after_each(function()
    core._inject_fault(nil)
    H.cleanup()
  end)

  for fault, code in pairs(CODES) do
    it("fails an auto-commit alloc with nil, msg, '" .. code .. "', changes nothing, does not poison", function()
      local p, path, _, ids = full_file()
      local s0, size = snap(p), p:info().file_size
      core._inject_fault("grow", fault)
      local msg = H.fails_with(code, p:alloc())
      assert.matches("cannot grow", msg)
      not_poisoned(p)
      assert.are.same(s0, snap(p))
      assert.are.equal(size, p:info().file_size)
      assert.is_true(p:check())
      -- a full disk is recoverable by freeing pages (the fault stays armed)
      assert(p:free(ids[1]))
      local again = assert(p:alloc())
      assert.are.equal(ids[1], again)
      H.stamp(p, again, "after")
      assert(p:set_root(42))
      local s1 = snap(p)
      reopens_as(p, path, s1)
    end)
  end

  it("fails alloc_bulk all-or-nothing when the growth fails, and a request that fits still succeeds", function()
    local p, path = full_file(3)
    local s0 = snap(p)
    core._inject_fault("grow", "enospc")
    H.fails_with("no_space", p:alloc_bulk(5))
    not_poisoned(p)
    assert.are.same(s0, snap(p))
    assert.are.equal(3, p:free_count())
    local got = assert(p:alloc_bulk(3))
    for _, id in ipairs(got) do H.stamp(p, id, "bulk") end
    assert(p:set_root(43))
    reopens_as(p, path, snap(p))
  end)

  it("fails a protected write that needs a fresh page; the writer lives on and commits once there is room", function()
    local p, path, pids, ids = full_file()
    local s0 = snap(p)
    core._inject_fault("grow", "eio")
    local w = p:write_protected(pids[1])
    w:write(0, content("new1"))
    H.fails_with("io", w:commit())
    not_poisoned(p)
    assert.are.same(s0, snap(p))
    assert.are.equal(content("base1"), p:protected(pids[1]):read())
    -- inside a transaction the copy-on-write fails at write_protected
    local tx = p:begin()
    H.fails_with("io", p:write_protected(pids[2]))
    assert.is_true(p:info().in_txn)
    tx:rollback()
    assert.are.same(s0, snap(p))
    -- free a regular page (reusable from the next transaction): the same
    -- writer commits without growth
    assert(p:free(ids[#ids]))
    assert.is_true(w:commit())
    assert.are.equal(content("new1"), p:protected(pids[1]):read())
    reopens_as(p, path, snap(p))
  end)

  it("inside a transaction fails only the call that needed growth: the transaction can commit what it did", function()
    local p, path, pids, ids = full_file(2)
    local s0 = snap(p)
    local tx = p:begin()
    local w = p:write_protected(pids[1])      -- takes one spare page
    w:write(0, content("tx1"))
    assert(p:set_root(77))
    assert(p:free(ids[1]))
    local a = assert(p:alloc())               -- takes the other
    H.stamp(p, a, "tx")
    core._inject_fault("grow", "enospc")
    H.fails_with("no_space", p:alloc())
    H.fails_with("no_space", p:alloc_bulk(2))
    H.fails_with("no_space", p:write_protected(pids[2]))
    not_poisoned(p)
    assert.is_true(p:info().in_txn)
    -- the transaction's work is intact
    local mid = snap(p)
    assert.are.equal(77, p:root())
    assert.are.equal(content("tx1"), p:protected(pids[1]):read())
    assert.are.equal(content("base2"), p:protected(pids[2]):read())
    assert.is_true(H.stamp_ok(p, a, "tx"))
    assert.has_error(function() p:page(ids[1]) end)
    assert.is_true(tx:commit())
    mid.txn = mid.txn + 1
    mid.free_count = mid.free_count + 2   -- ids[1] and base1's old page are free after commit
    local s1 = snap(p)
    assert.are.same(mid, s1)
    assert.are_not.same(s0, s1)
    reopens_as(p, path, s1)
  end)

  it("inside a transaction: rollback after a failed growth restores everything", function()
    local p, path, pids, ids = full_file(2)
    local s0 = snap(p)
    local tx = p:begin()
    p:write_protected(pids[3]):write(0, content("gone"))
    assert(p:free(ids[2]))
    assert(p:set_root(5))
    assert(p:alloc_protected())
    core._inject_fault("grow", "eio")
    assert(p:alloc())
    H.fails_with("io", p:alloc())
    tx:rollback()
    not_poisoned(p)
    assert.are.same(s0, snap(p))
    reopens_as(p, path, s0)
  end)

  it("fails a commit whose page-table flush needs growth: rolled back, not poisoned, retried with room", function()
    -- one spare page: the flush writes its first page-table page there,
    -- then needs growth for the next
    local p, path, _, ids = full_file(1)
    local s0 = snap(p)
    core._inject_fault("grow", "enospc")
    -- more new pids than the root can carry: the commit writes page-table pages
    local tx = p:begin()
    for _ = 1, 64 do assert(p:alloc_protected()) end
    H.fails_with("no_space", tx:commit())
    assert.is_false(p:info().in_txn)
    not_poisoned(p)
    assert.are.same(s0, snap(p))
    assert.are.equal(1, p:free_count())
    assert.is_true(p:check())
    -- the same through auto-commits: the first whose flush needs growth fails
    local n = 0
    while true do
      local pid, msg, c = p:alloc_protected()
      if not pid then H.fails_with("no_space", pid, msg, c) break end
      n = n + 1
      assert.is_true(n < 200, "a flush needed growth")
    end
    not_poisoned(p)
    local s_auto = snap(p)
    assert.are.equal(s0.protected_count + n, s_auto.protected_count)
    -- room for the flush: a few freed pages
    for i = 1, 6 do assert(p:free(ids[i])) end
    tx = p:begin()
    for _ = 1, 64 do assert(p:alloc_protected()) end
    assert.is_true(tx:commit())
    assert.are.equal(s0.protected_count + n + 64, p:info().protected_count)
    reopens_as(p, path, snap(p))
  end)

  it("makes create fail cleanly and leaves open alone (open never grows the file)", function()
    local path = H.path()
    core._inject_fault("grow", "enospc")
    H.fails_with("no_space", mp.create(path))
    assert.is_false(H.exists(path))
    core._inject_fault(nil)
    local p = H.track(assert(mp.create(path, { page_size = P })))
    assert(p:set_root(3))
    p:close()
    core._inject_fault("grow", "eio")
    local q = H.track(assert(mp.open(path)))
    assert.are.equal(3, q:root())
    q:close()
  end)
end)

describe("a failing write during commit", function()
  after_each(function()
    core._inject_fault(nil)
    H.cleanup()
  end)

  for fault, code in pairs(CODES) do
    it("fails an auto-commit alloc at each of its page writes (" .. code .. "): poisoned, durable state kept",
       function()
      local failures = 0
      for k = 0, 10 do
        local p, path = full_file(5)
        local s0 = snap(p)
        core._inject_fault("write", fault, k)
        local id, msg, c = p:alloc()
        if id then break end
        failures = failures + 1
        H.fails_with(code, id, msg, c)
        assert.matches("commit failed", msg)
        poisoned(p)
        assert.are.same(s0, snap(p))
        -- the root was never written: the failed commit cannot come back
        reopens_as(p, path, s0)
      end
      -- an alloc writes only its root (its bitmap change rides in it)
      assert.are.equal(1, failures, "the root was written")
    end)
  end

  it("fails a large transaction at each of its writes: poisoned, nothing of it on disk", function()
    -- page-table pages, the bitmaps of two groups (one new), the root
    local failures = 0
    for k = 0, 40 do
      local p, path, pids, ids = full_file()
      local s0 = snap(p)
      local tx = p:begin()
      for i = 1, 3 do p:write_protected(pids[i]):write(0, content("big" .. i)) end
      for _ = 1, 64 do assert(p:alloc_protected()) end
      for i = 1, 4 do assert(p:free(ids[i])) end
      local got = assert(p:alloc_bulk(3 * 3968 // 2))   -- grows the file by groups
      H.stamp(p, got[1], "big")
      assert(p:set_root(99))
      core._inject_fault("write", "eio", k)
      local ok, msg, c = tx:commit()
      if ok then break end
      failures = failures + 1
      H.fails_with("io", ok, msg, c)
      assert.is_false(p:info().in_txn)
      poisoned(p)
      assert.are.same(s0, snap(p))
      assert.is_true(p:check())
      reopens_as(p, path, s0)
    end
    assert.is_true(failures >= 5, failures .. " writes failed before one commit succeeded")
  end)

  it("fails writer:commit(): the content write itself does not poison, a commit write does", function()
    for k = 0, 1 do
      local p, path, pids = full_file(4)
      local s0 = snap(p)
      local w = p:write_protected(pids[2])
      w:write(0, content("w2"))
      core._inject_fault("write", "enospc", k)
      H.fails_with("no_space", w:commit())
      assert.are.same(s0, snap(p))
      if k == 0 then
        -- the content goes to a fresh page first, before the commit: nothing
        -- durable was touched, the call is rolled back and can be retried
        not_poisoned(p)
        core._inject_fault(nil)
        assert.is_true(w:commit())
        assert.are.equal(content("w2"), p:protected(pids[2]):read())
        reopens_as(p, path, snap(p))
      else
        poisoned(p)
        reopens_as(p, path, s0)
      end
    end
  end)

  it("poisons when a private writer's content write fails inside a transaction (its copy is unknown)", function()
    local p, path, pids, ids = full_file(4)
    local s0 = snap(p)
    local w = p:write_protected(pids[1])     -- private: made outside the transaction
    w:write(0, content("private"))
    local tx = p:begin()
    assert(p:free(ids[1]))
    core._inject_fault("write", "eio")
    local msg = H.fails_with("io", w:commit())
    assert.matches("roll back", msg)
    assert.is_true(p:info().poisoned)
    core._inject_fault(nil)
    H.fails_with("poisoned", tx:commit())
    assert.is_false(p:info().in_txn)
    assert.are.same(s0, snap(p))
    reopens_as(p, path, s0)
  end)

  it("makes open fail when it cannot clear a rejected root, and the next open succeeds", function()
    local p, path = full_file(4)
    assert(p:set_root(50))
    local s_prev = snap(p)
    local slot = p:info().root_slot
    p:close()
    H.flip(path, slot * P + 200)             -- damage the newest root: open falls back
    core._inject_fault("write", "eio")
    H.fails_with("io", mp.open(path))
    core._inject_fault(nil)
    local q = H.open(path)
    assert.is_true(q:info().recovered)
    assert.are.equal(41, q:root())
    s_prev.root, s_prev.txn = 41, s_prev.txn - 1
    assert.are.same(s_prev, snap(q))
  end)
end)

describe("a failing barrier after growth", function()
  after_each(function()
    core._inject_fault(nil)
    H.cleanup()
  end)

  -- Run step(p, ...) on two copies of the same history: without a fault
  -- (giving the state the commit would make) and with `fault` armed.
  local function twin(spare, step)
    local pa, patha, pids, ids = full_file(spare)
    assert(step(pa, pids, ids))
    local s1 = snap(pa)
    reopens_as(pa, patha, s1)
    local p, path = full_file(spare)
    return p, path, pids, ids, s1
  end

  for fault, code in pairs(CODES) do
    it("fails an auto-commit alloc that grew the file (" .. code .. "): poisoned, memory at the old size", function()
      local function step(p) return p:alloc() end
      local p, path, pids, ids, s1 = twin(0, step)
      local s0 = snap(p)
      core._inject_fault("barrier", fault)
      H.fails_with(code, step(p, pids, ids))
      poisoned(p)
      assert.are.same(s0, snap(p))
      assert.are.equal(s0.page_count, p:page_count())
      assert.is_true(s1.page_count > s0.page_count)
      -- on disk: the old state or the failed commit's, whole
      reopens_as(p, path, s0, s1)
    end)
  end

  it("fails a transaction that grew the file, flushed the page table and wrote protected pages", function()
    local function step(p, pids, ids)
      local tx = p:begin()
      for i = 1, 3 do p:write_protected(pids[i]):write(0, content("grown" .. i)) end
      for _ = 1, 64 do assert(p:alloc_protected()) end
      assert(p:free(ids[3]))
      local got = assert(p:alloc_bulk(5000))
      H.stamp(p, got[#got], "grown")
      assert(p:set_root(1000))
      return tx:commit()
    end
    local p, path, pids, ids, s1 = twin(0, step)
    local s0 = snap(p)
    core._inject_fault("barrier", "enospc")
    H.fails_with("no_space", step(p, pids, ids))
    assert.is_false(p:info().in_txn)
    poisoned(p)
    assert.are.same(s0, snap(p))
    assert.is_true(p:check())
    for i = 1, 3 do assert.are.equal(content("base" .. i), p:protected(pids[i]):read()) end
    reopens_as(p, path, s0, s1)
  end)

  it("after a failed growth (not poisoned), a failing barrier on the next commit poisons", function()
    local function step(p, _, ids) return p:free(ids[1]) end
    local p, path, pids, ids, s1 = twin(0, step)
    local s0 = snap(p)
    core._inject_fault("grow", "enospc")
    core._inject_fault("barrier", "eio")     -- both armed at once
    H.fails_with("no_space", p:alloc())
    not_poisoned(p)
    H.fails_with("io", step(p, pids, ids))
    poisoned(p)
    assert.are.same(s0, snap(p))
    reopens_as(p, path, s0, s1)
  end)
end)
