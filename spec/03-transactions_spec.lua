-- spec/03-transactions_spec.lua -- begin/commit/rollback, transaction(fn),
-- the user root, free_count and page reuse across transactions, and the
-- one-barrier-per-commit guarantee.

local H = require "helpers"

-- A pager with some committed history: 6 stamped pages, root 5.
local function setup()
  local p, path = H.create({ page_size = 1024 })
  local ids = p:alloc_bulk(6)
  for _, id in ipairs(ids) do H.stamp(p, id) end
  p:set_root(5)
  return p, path, ids
end

local function stamps_ok(p, ids)
  for _, id in ipairs(ids) do
    assert.is_true(H.stamp_ok(p, id), "bytes of page " .. id)
  end
end

describe("explicit transactions", function()
  after_each(H.cleanup)

  it("marks the pager as in a transaction between begin and commit", function()
    local p = setup()
    assert.is_false(p:info().in_txn)
    local tx = p:begin()
    assert.is_true(p:info().in_txn)
    tx:commit()
    assert.is_false(p:info().in_txn)
  end)

  it("makes every change durable at commit", function()
    local p, path, ids = setup()
    local tx = p:begin()
    local a = p:alloc()
    local bulk = p:alloc_bulk(3)
    p:free(ids[1])
    p:free_bulk({ ids[2], ids[3] })
    p:set_root(-9)
    tx:commit()
    local st = H.state(p)
    p = H.reopen(p, path)
    assert.are.same(st, H.state(p))
    assert.are.equal(-9, p:root())
    local want = { a, bulk[1], bulk[2], bulk[3], ids[4], ids[5], ids[6] }
    table.sort(want)
    assert.are.same(want, H.page_list(p))
  end)

  it("joins every mutation to the transaction: nothing commits before commit", function()
    local p = setup()
    local t0, b0 = p:info().txn, H.barriers(p)
    local tx = p:begin()
    p:alloc()
    p:alloc_bulk(4)
    p:set_root(1)
    assert.are.equal(t0, p:info().txn)
    assert.are.equal(b0, H.barriers(p))
    tx:commit()
    assert.are.equal(t0 + 1, p:info().txn)
  end)

  local rollbacks = {
    { "an alloc", function(p) p:alloc() end },
    { "a free", function(p, ids) p:free(ids[2]) end },
    { "an alloc_bulk", function(p) p:alloc_bulk(10) end },
    { "a free_bulk", function(p, ids) p:free_bulk({ ids[1], ids[4], ids[6] }) end },
    { "a set_root", function(p) p:set_root(123456) end },
    { "growth of the file", function(p)
        local n = p:page_count()
        while p:page_count() == n do p:alloc() end
      end },
    { "a mix of everything", function(p, ids)
        p:free(ids[1]); p:alloc_bulk(7); p:set_root(-1)
        local a = p:alloc(); p:free(a); p:free_bulk({ ids[5] })
      end },
  }

  for _, case in ipairs(rollbacks) do
    it("undoes " .. case[1] .. " on rollback", function()
      local p, path, ids = setup()
      local st = H.state(p)
      local tx = p:begin()
      case[2](p, ids)
      assert.are_not.same(st, H.state(p))
      tx:rollback()
      assert.is_false(p:info().in_txn)
      assert.are.same(st, H.state(p))
      stamps_ok(p, ids)
      p = H.reopen(p, path)
      assert.are.same(st, H.state(p))
      stamps_ok(p, ids)
    end)
  end

  it("issues no barrier on rollback", function()
    local p = setup()
    local b0 = H.barriers(p)
    local tx = p:begin()
    p:alloc_bulk(5)
    p:set_root(77)
    tx:rollback()
    assert.are.equal(b0, H.barriers(p))
  end)

  it("makes a page allocated in a rolled-back transaction unviewable", function()
    local p = setup()
    local tx = p:begin()
    local a = p:alloc()
    p:page(a):write(0, "x")
    tx:rollback()
    H.raises_with("page", function() p:page(a) end)
  end)

  it("rolls back when a transaction in a <close> variable goes out of scope uncommitted", function()
    local p, path, ids = setup()
    local st = H.state(p)
    do
      local tx <close> = p:begin()  -- luacheck: ignore 211
      p:alloc_bulk(3)
      p:free(ids[1])
      p:set_root(8)
    end
    assert.is_false(p:info().in_txn)
    assert.are.same(st, H.state(p))
    p = H.reopen(p, path)
    assert.are.same(st, H.state(p))
  end)

  it("keeps a commit made before a <close> variable goes out of scope", function()
    local p, path = setup()
    do
      local tx <close> = p:begin()
      p:set_root(8)
      tx:commit()
    end
    assert.are.equal(8, p:root())
    p = H.reopen(p, path)
    assert.are.equal(8, p:root())
  end)

  it("rolls back when an error unwinds through a <close> transaction", function()
    local p = setup()
    local st = H.state(p)
    local ok = pcall(function()
      local tx <close> = p:begin()  -- luacheck: ignore 211
      p:alloc()
      error("boom")
    end)
    assert.is_false(ok)
    assert.is_false(p:info().in_txn)
    assert.are.same(st, H.state(p))
  end)

  it("rolls back an open transaction when the pager is closed", function()
    local p, path = setup()
    local st = H.state(p)
    p:begin()
    p:alloc_bulk(4)
    p:set_root(1000)
    p:close()
    p = H.open(path)
    assert.are.same(st, H.state(p))
  end)

  it("raises on begin inside a transaction and keeps the open one usable", function()
    local p, path = setup()
    local tx = p:begin()
    local a = p:alloc()
    H.raises_with("begin", function() p:begin() end)
    assert.is_true(p:info().in_txn)
    p:set_root(42)
    tx:commit()
    p = H.reopen(p, path)
    assert.are.equal(42, p:root())
    assert.is_true(H.page_set(p)[a])
  end)

  it("raises on transaction(fn) inside begin", function()
    local p = setup()
    local tx = p:begin()
    local called = false
    H.raises(function() p:transaction(function() called = true end) end)
    assert.is_false(called)
    assert.is_true(p:info().in_txn)
    tx:rollback()
  end)

  it("raises on commit or rollback of a committed transaction", function()
    local p = setup()
    local tx = p:begin()
    p:alloc()
    tx:commit()
    local st, b = H.state(p), H.barriers(p)
    H.raises_with("commit", function() tx:commit() end)
    H.raises_with("rollback", function() tx:rollback() end)
    assert.are.same(st, H.state(p))
    assert.are.equal(b, H.barriers(p))
  end)

  it("raises on commit or rollback of a rolled-back transaction", function()
    local p = setup()
    local st = H.state(p)
    local tx = p:begin()
    p:alloc()
    tx:rollback()
    H.raises_with("commit", function() tx:commit() end)
    H.raises_with("rollback", function() tx:rollback() end)
    assert.are.same(st, H.state(p))
  end)

  it("does not let an ended transaction object commit a later one", function()
    local p = setup()
    local old = p:begin()
    old:commit()
    local st = H.state(p)
    local tx = p:begin()
    p:alloc()
    H.raises(function() old:commit() end)
    assert.is_true(p:info().in_txn)
    tx:rollback()
    assert.are.same(st, H.state(p))
  end)

  it("keeps the transaction open and intact when a call inside it raises", function()
    local p, path, ids = setup()
    local tx = p:begin()
    local a = p:alloc()
    H.raises(function() p:free(0) end)
    H.raises(function() p:free_bulk({ ids[1], ids[1] }) end)
    H.raises(function() p:page(p:page_count() + 10) end)
    assert.is_true(p:info().in_txn)
    tx:commit()
    p = H.reopen(p, path)
    local set = H.page_set(p)
    assert.is_true(set[a])
    for _, id in ipairs(ids) do assert.is_true(set[id]) end
  end)

  it("goes back to auto-commit after a transaction ends", function()
    local p = setup()
    p:begin():commit()
    local b0, t0 = H.barriers(p), p:info().txn
    p:alloc()
    assert.are.equal(b0 + 1, H.barriers(p))
    assert.are.equal(t0 + 1, p:info().txn)
  end)
end)

describe("pager:transaction(fn, ...)", function()
  after_each(H.cleanup)

  it("passes its arguments to fn and returns all of fn's results", function()
    local p = setup()
    local a, b, c = p:transaction(function(x, y) return x + y, "two", nil end, 2, 3)
    assert.are.equal(5, a)
    assert.are.equal("two", b)
    assert.is_nil(c)
    assert.are.equal(3, select("#", p:transaction(function() return 1, nil, nil end)))
  end)

  it("commits fn's changes durably with one barrier", function()
    local p, path = setup()
    local b0 = H.barriers(p)
    local ids = p:transaction(function()
      local got = p:alloc_bulk(3)
      p:set_root(99)
      return got
    end)
    assert.are.equal(b0 + 1, H.barriers(p))
    assert.is_false(p:info().in_txn)
    p = H.reopen(p, path)
    assert.are.equal(99, p:root())
    local set = H.page_set(p)
    for _, id in ipairs(ids) do assert.is_true(set[id]) end
  end)

  it("runs fn inside a transaction", function()
    local p = setup()
    local inside = p:transaction(function() return p:info().in_txn end)
    assert.is_true(inside)
  end)

  it("rolls back and rethrows the error when fn fails", function()
    local p, path, ids = setup()
    local st = H.state(p)
    local ok, err = pcall(p.transaction, p, function()
      p:alloc_bulk(5)
      p:free(ids[1])
      p:set_root(-5)
      error("something went wrong")
    end)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("something went wrong", 1, true))
    assert.is_false(p:info().in_txn)
    assert.are.same(st, H.state(p))
    p = H.reopen(p, path)
    assert.are.same(st, H.state(p))
  end)

  it("rethrows a non-string error value unchanged", function()
    local p = setup()
    local token = { reason = "custom" }
    local ok, err = pcall(p.transaction, p, function()
      p:alloc()
      error(token)
    end)
    assert.is_false(ok)
    assert.are.equal(token, err)
  end)

  it("rolls back when fn misuses the pager and rethrows that error", function()
    local p = setup()
    local st = H.state(p)
    local ok, err = pcall(p.transaction, p, function()
      p:alloc()
      p:free(0)
    end)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("free", 1, true), tostring(err))
    assert.are.same(st, H.state(p))
  end)

  it("rolls back when fn begins a nested transaction", function()
    local p = setup()
    local st = H.state(p)
    local ok = pcall(p.transaction, p, function()
      p:alloc()
      p:begin()
    end)
    assert.is_false(ok)
    assert.is_false(p:info().in_txn)
    assert.are.same(st, H.state(p))
  end)

  it("raises when fn is not callable", function()
    local p = setup()
    local st = H.state(p)
    H.raises_with("transaction", function() p:transaction(42) end)
    H.raises_with("transaction", function() p:transaction() end)
    assert.is_false(p:info().in_txn)
    assert.are.same(st, H.state(p))
  end)
end)

describe("reads inside a transaction", function()
  after_each(H.cleanup)

  it("see the transaction's own allocations, frees and root", function()
    local p, _, ids = setup()
    local tx = p:begin()
    local a = p:alloc()
    p:free(ids[1])
    p:set_root(77)
    local set = H.page_set(p)
    assert.is_true(set[a])
    assert.is_nil(set[ids[1]])
    assert.are.equal(77, p:root())
    assert.are.equal(77, p:info().root)
    p:page(a):write(0, "new")
    assert.are.equal("new", p:page(a):read(0, 3))
    H.raises_with("page", function() p:page(ids[1]) end)
    tx:rollback()
  end)

  it("see the page count of a file grown by the transaction", function()
    local p = setup()
    local tx = p:begin()
    local n = p:page_count()
    local last
    while p:page_count() == n do last = p:alloc() end
    assert.is_true(last < p:page_count())
    p:page(last):write(0, "grown")
    assert.are.equal("grown", p:page(last):read(0, 5))
    tx:commit()
  end)
end)

describe("free_count and the reuse of freed pages", function()
  after_each(H.cleanup)

  it("does not count pages freed by the open transaction until it commits", function()
    local p, _, ids = setup()
    local free = p:free_count()
    local tx = p:begin()
    p:free(ids[1])
    p:free_bulk({ ids[2], ids[3] })
    assert.are.equal(free, p:free_count())
    tx:commit()
    assert.are.equal(free + 3, p:free_count())
  end)

  it("counts a page allocated by the open transaction as in use at once", function()
    local p = setup()
    local ids = p:alloc_bulk(3)
    p:free_bulk(ids)
    local free = p:free_count()
    assert.is_true(free >= 3)
    local tx = p:begin()
    p:alloc()
    assert.are.equal(free - 1, p:free_count())
    tx:rollback()
    assert.are.equal(free, p:free_count())
  end)

  it("never reuses a page inside the transaction that freed it", function()
    local p, _, ids = setup()
    local x = ids[3]
    local tx = p:begin()
    p:free(x)
    local n = p:free_count() + 50              -- forces growth too
    for _ = 1, n do assert.are_not.equal(x, p:alloc()) end
    tx:commit()
  end)

  it("never reuses a page freed by free_bulk inside the same transaction", function()
    local p, _, ids = setup()
    local tx = p:begin()
    p:free_bulk({ ids[1], ids[2] })
    for _, id in ipairs(p:alloc_bulk(p:free_count() + 20)) do
      assert.are_not.equal(ids[1], id)
      assert.are_not.equal(ids[2], id)
    end
    tx:commit()
  end)

  it("makes a page freed by a transaction available from the next one on", function()
    local p, _, ids = setup()
    local x = ids[4]
    p:transaction(function() p:free(x) end)
    local n, free = p:page_count(), p:free_count()
    assert.is_true(free >= 1)
    local got = p:alloc_bulk(free)
    local found = false
    for _, id in ipairs(got) do if id == x then found = true end end
    assert.is_true(found, "freed page was not handed out again")
    assert.are.equal(n, p:page_count())
    assert.are.equal(0, p:free_count())
  end)

  it("makes a page freed by an auto-commit free available to the next alloc", function()
    local p, _, ids = setup()
    if p:free_count() > 0 then p:alloc_bulk(p:free_count()) end
    assert.are.equal(0, p:free_count())
    local n = p:page_count()
    p:free(ids[2])
    assert.are.equal(1, p:free_count())
    assert.are.equal(ids[2], p:alloc())
    assert.are.equal(n, p:page_count())
  end)

  it("raises on freeing a page twice in one transaction", function()
    local p, _, ids = setup()
    local tx = p:begin()
    p:free(ids[1])
    H.raises_with("free", function() p:free(ids[1]) end)
    H.raises_with("free_bulk", function() p:free_bulk({ ids[2], ids[1] }) end)
    assert.is_true(H.page_set(p)[ids[2]])
    tx:rollback()
  end)
end)

describe("the user root", function()
  after_each(H.cleanup)

  it("starts at 0", function()
    local p = H.create({ page_size = 1024 })
    assert.are.equal(0, p:root())
    assert.are.equal(0, p:info().root)
  end)

  it("round-trips 64-bit values, negative ones included, across reopen", function()
    local p, path = H.create({ page_size = 1024 })
    for _, v in ipairs({ 1, -1, math.maxinteger, math.mininteger, 1 << 40, 0 }) do
      p:set_root(v)
      assert.are.equal(v, p:root())
      p = H.reopen(p, path)
      assert.are.equal(v, p:root())
      assert.are.equal("integer", math.type(p:root()))
    end
  end)

  it("raises for values that are not integers and keeps the old value", function()
    local p = H.create({ page_size = 1024 })
    p:set_root(3)
    local b0 = H.barriers(p)
    for _, bad in ipairs({ 1.5, "x", {}, true }) do
      H.raises_with("set_root", function() p:set_root(bad) end)
    end
    H.raises_with("set_root", function() p:set_root() end)
    assert.are.equal(3, p:root())
    assert.are.equal(b0, H.barriers(p))
  end)
end)

describe("durability barriers and commit counters", function()
  after_each(H.cleanup)

  it("issues exactly one barrier, and one commit, per auto-commit mutation", function()
    local p = setup()
    local ids = p:alloc_bulk(4)
    local ops = {
      function() p:alloc() end,
      function() p:free(ids[1]) end,
      function() p:alloc_bulk(5) end,
      function() p:free_bulk({ ids[2], ids[3] }) end,
      function() p:set_root(11) end,
    }
    for i, op in ipairs(ops) do
      local i0 = p:info()
      op()
      local i1 = p:info()
      assert.are.equal(i0.barriers + 1, i1.barriers, "barriers of op " .. i)
      assert.are.equal(i0.commits + 1, i1.commits, "commits of op " .. i)
      assert.are.equal(i0.txn + 1, i1.txn, "txn of op " .. i)
    end
  end)

  it("issues exactly one barrier when an auto-commit alloc grows the file", function()
    local p = setup()
    if p:free_count() > 0 then p:alloc_bulk(p:free_count()) end
    local n, b0 = p:page_count(), H.barriers(p)
    p:alloc()
    assert.is_true(p:page_count() > n)
    assert.are.equal(b0 + 1, H.barriers(p))
  end)

  it("issues exactly one barrier for a transaction of many small changes", function()
    local p, _, ids = setup()
    local b0, c0, t0 = H.barriers(p), p:info().commits, p:info().txn
    local tx = p:begin()
    for _ = 1, 50 do p:alloc() end
    p:alloc_bulk(30)
    p:free_bulk({ ids[1], ids[2] })
    p:free(ids[3])
    p:set_root(1)
    p:set_root(2)
    assert.are.equal(b0, H.barriers(p))
    tx:commit()
    assert.are.equal(b0 + 1, H.barriers(p))
    assert.are.equal(c0 + 1, p:info().commits)
    assert.are.equal(t0 + 1, p:info().txn)
  end)

  it("issues no barrier for reads", function()
    local p, _, ids = setup()
    local b0 = H.barriers(p)
    for _ = 1, 3 do
      p:info(); p:page_count(); p:free_count(); p:root()
      H.page_list(p)
      p:page(ids[1]):read()
    end
    assert.are.equal(b0, H.barriers(p))
  end)

  it("does not advance the transaction id on rollback", function()
    local p = setup()
    local t0, c0 = p:info().txn, p:info().commits
    local tx = p:begin()
    p:alloc()
    tx:rollback()
    assert.are.equal(t0, p:info().txn)
    assert.are.equal(c0, p:info().commits)
  end)
end)

describe("access.before_commit", function()
  local access = require "mappedpages.access"
  after_each(H.cleanup)

  it("runs its function inside the commit, whose writes commit with the transaction", function()
    local p, path = H.create({ page_size = 1024 })
    local pid = p:alloc_protected()
    local tx = p:begin()
    local runs = 0
    access.before_commit(p, "k", function()
      runs = runs + 1
      assert.is_true(p:in_transaction() ~= false)
      assert(access.writer(p, pid)):pack(0, "<i8", 77)
      return true
    end)
    access.before_commit(p, "k", function() runs = runs + 100 return true end)   -- same key: ignored
    assert.are.equal(0, runs)
    assert.is_true(tx:commit())
    assert.are.equal(1, runs)
    p:close()
    p = H.open(path)
    assert.are.equal(77, p:protected(pid):unpack(0, "<i8"))
  end)

  it("runs after_commit functions once the commit succeeded, outside the transaction, in order", function()
    local p = H.create({ page_size = 1024 })
    local seen = {}
    local tx = p:begin()
    p:set_root(5)
    access.before_commit(p, "k", function() seen[#seen + 1] = "before" return true end)
    access.after_commit(p, "k", function()
      seen[#seen + 1] = "after " .. tostring(p:in_transaction()) .. " " .. p:root()
    end)
    access.after_commit(p, "k", function() seen[#seen + 1] = "ignored: same key" end)
    access.after_commit(p, "k2", function() error("dropped: the commit stands") end)
    access.after_commit(p, "k3", function() seen[#seen + 1] = "third" end)
    assert.are.same({}, seen)
    assert.is_true(tx:commit())
    assert.are.same({"before", "after false 5", "third"}, seen)
    assert.are.equal(5, p:root())
    assert.is_true(p:transaction(function() p:set_root(6) return true end))   -- nothing runs again
    assert.are.equal(3, #seen)
  end)

  it("runs no after_commit function on rollback or when the commit fails", function()
    local p = H.create({ page_size = 1024 })
    local runs = 0
    local tx = p:begin()
    access.before_commit(p, "k", function() return true end)
    access.after_commit(p, "k", function() runs = runs + 1 end)
    tx:rollback()
    tx = p:begin()
    access.before_commit(p, "k", function() return nil, "refused", "spec" end)
    access.after_commit(p, "k", function() runs = runs + 1 end)
    local ok, msg, code = tx:commit()
    assert.is_nil(ok)
    assert.are.equal("refused", msg)
    assert.are.equal("spec", code)
    assert.is_true(p:transaction(function() p:set_root(1) return true end))
    assert.are.equal(0, runs)
  end)

  it("runs nothing on rollback, nor in the next transaction", function()
    local p = H.create({ page_size = 1024 })
    local runs = 0
    local tx = p:begin()
    access.before_commit(p, "k", function() runs = runs + 1 return true end)
    tx:rollback()
    assert.is_true(p:transaction(function() p:set_root(3) return true end))
    assert.are.equal(3, p:root())
    assert.are.equal(0, runs)
  end)

  it("rolls the transaction back when its function fails or raises", function()
    local p = H.create({ page_size = 1024 })
    local pid = p:alloc_protected()
    local tx = p:begin()
    assert(access.writer(p, pid)):pack(0, "<i8", 5)
    access.before_commit(p, "k", function() return nil, "no room", "no_space" end)
    local ok, msg, code = tx:commit()
    assert.is_nil(ok)
    assert.are.equal("no room", msg)
    assert.are.equal("no_space", code)
    assert.is_false(tx:active())
    assert.is_false(p:in_transaction())
    assert.are.equal(0, p:protected(pid):unpack(0, "<i8"))
    tx = p:begin()
    p:set_root(9)
    access.before_commit(p, "k", function() error("boom", 0) end)
    assert.has_error(function() tx:commit() end, "boom")
    assert.is_false(tx:active())
    assert.are.equal(0, p:root())
    assert.is_true(p:transaction(function() p:set_root(4) return true end))   -- the pager goes on
    assert.are.equal(4, p:root())
  end)

  it("refuses to end the transaction from inside its function", function()
    local p = H.create({ page_size = 1024 })
    local tx = p:begin()
    local err
    access.before_commit(p, "k", function()
      local ok, e = pcall(tx.rollback, tx)
      assert.is_false(ok)
      err = e
      return true
    end)
    assert.is_true(tx:commit())
    assert.matches("inside its commit hook", err)
  end)
end)
