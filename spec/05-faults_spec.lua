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
