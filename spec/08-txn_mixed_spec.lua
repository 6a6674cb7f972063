-- spec/08-txn_mixed_spec.lua -- transactions over everything: writers
-- inside a transaction, regular and protected changes and the root
-- committed or rolled back together, reads of the transaction's own
-- writes, deferred reuse of pages a transaction freed, one barrier per
-- commit, damage to one page of a multi-page commit, a failing barrier
-- during a protected commit, and a random mix of protected calls.

local H = require "helpers"
local core = require "mappedpages.core"

local P = 1024
local ZEROS = string.rep("\0", P)

local function content(tag) return H.pcontent(P, tag) end

local function setup() return H.protected_history(P) end
local function setup_ok(p, pids, ids) H.protected_history_ok(p, pids, ids) end

describe("writers inside a transaction", function()
  after_each(H.cleanup)

  it("write to the transaction's copy, which protected(pid) shows before commit", function()
    local p, _, pids = setup()
    local v = p:protected(pids[1])
    local tx = p:begin()
    local w = p:write_protected(pids[1])
    w:write(0, content("in tx"))
    assert.are.equal(content("in tx"), p:protected(pids[1]):read())
    assert.are.equal(content("in tx"), v:read())
    tx:rollback()
  end)

  it("start from the committed content and keep every byte they do not write", function()
    local p, path, pids = setup()
    local tx = p:begin()
    local w = p:write_protected(pids[2])
    assert.are.equal(content("setup2"), w:read())
    w:write(200, "patched")
    tx:commit()
    local want = content("setup2")
    want = want:sub(1, 200) .. "patched" .. want:sub(208)
    assert.are.equal(want, p:protected(pids[2]):read())
    p = H.reopen(p, path)
    assert.are.equal(want, p:protected(pids[2]):read())
  end)

  it("share their bytes with every other writer of the same pid", function()
    local p, _, pids = setup()
    local tx = p:begin()
    local w1 = p:write_protected(pids[1])
    w1:write(0, "one")
    local w2 = p:write_protected(pids[1])
    assert.are.equal("one", w2:read(0, 3))
    w2:write(3, "two")
    assert.are.equal("onetwo", w1:read(0, 6))
    w1:fill(0x21, 6, 2)
    assert.are.equal("onetwo!!", w2:read(0, 8))
    assert.are.equal("onetwo!!", p:protected(pids[1]):read(0, 8))
    tx:commit()
    assert.are.equal("onetwo!!", p:protected(pids[1]):read(0, 8))
  end)

  it("keep their writes when the transaction commits, durably, with one barrier", function()
    local p, path, pids = setup()
    local b0 = H.barriers(p)
    local tx = p:begin()
    for i = 1, 4 do p:write_protected(pids[i]):write(0, content("tx" .. i)) end
    assert.are.equal(b0, H.barriers(p))
    tx:commit()
    assert.are.equal(b0 + 1, H.barriers(p))
    p = H.reopen(p, path)
    for i = 1, 4 do assert.are.equal(content("tx" .. i), p:protected(pids[i]):read()) end
  end)

  it("lose their writes when the transaction rolls back", function()
    local p, path, pids, ids = setup()
    local st = H.pstate(p)
    local tx = p:begin()
    for i = 1, 4 do p:write_protected(pids[i]):write(0, content("tx" .. i)) end
    tx:rollback()
    assert.are.same(st, H.pstate(p))
    setup_ok(p, pids, ids)
    p = H.reopen(p, path)
    setup_ok(p, pids, ids)
  end)

  for _, ending in ipairs({ "commit", "discard" }) do
    it("end only the writer on writer:" .. ending .. "(): its writes stay in the transaction", function()
      local p, path, pids = setup()
      local b0, t0 = H.barriers(p), p:info().txn
      local tx = p:begin()
      local w = p:write_protected(pids[1])
      w:write(0, content("stays"))
      w[ending](w)
      H.raises(function() w:read() end)
      H.raises(function() w:write(0, "x") end)
      assert.are.equal(b0, H.barriers(p))
      assert.are.equal(t0, p:info().txn)
      assert.is_true(p:info().in_txn)
      assert.are.equal(content("stays"), p:protected(pids[1]):read())
      local again = p:write_protected(pids[1])
      assert.are.equal(content("stays"), again:read())
      tx:commit()
      p = H.reopen(p, path)
      assert.are.equal(content("stays"), p:protected(pids[1]):read())
    end)
  end

  it("end only the writer when garbage-collected: its writes stay in the transaction", function()
    local p, _, pids = setup()
    local tx = p:begin()
    do
      local w = p:write_protected(pids[1])
      w:write(0, content("collected"))
    end
    collectgarbage()
    collectgarbage()
    assert.are.equal(content("collected"), p:protected(pids[1]):read())
    tx:commit()
    assert.are.equal(content("collected"), p:protected(pids[1]):read())
  end)

  for _, ending in ipairs({ "commit", "rollback" }) do
    it("are dead after the transaction ends with " .. ending, function()
      local p, path, pids = setup()
      local tx = p:begin()
      local w = p:write_protected(pids[1])
      w:write(0, content("ending"))
      tx[ending](tx)
      local st, file = H.pstate(p), H.read_file(path)
      H.raises(function() w:read() end)
      H.raises(function() w:write(0, "late") end)
      H.raises(function() w:pack(0, "<i4", 1) end)
      H.raises(function() w:fill(0) end)
      H.raises(function() w:commit() end)
      assert.are.same(st, H.pstate(p))
      assert.are.equal(file, H.read_file(path))
      local want = ending == "commit" and content("ending") or content("setup1")
      assert.are.equal(want, p:protected(pids[1]):read())
    end)
  end

  it("cannot write into a later transaction once their own has ended", function()
    local p, _, pids = setup()
    local tx = p:begin()
    local w = p:write_protected(pids[1])
    tx:commit()
    local tx2 = p:begin()
    H.raises(function() w:write(0, "sneaky") end)
    tx2:commit()
    assert.are.equal(content("setup1"), p:protected(pids[1]):read())
  end)

  it("write a pid allocated in the same transaction, which starts as zeros", function()
    local p, path = setup()
    local tx = p:begin()
    local pid = p:alloc_protected()
    local w = p:write_protected(pid)
    assert.are.equal(ZEROS, w:read())
    w:write(0, content("brand new"))
    tx:commit()
    p = H.reopen(p, path)
    assert.are.equal(content("brand new"), p:protected(pid):read())
  end)

  it("refuse a pid freed earlier in the same transaction", function()
    local p, _, pids = setup()
    local tx = p:begin()
    p:free_protected(pids[2])
    H.raises_with("write_protected", function() p:write_protected(pids[2]) end)
    H.raises_with("protected", function() p:protected(pids[2]) end)
    assert.is_true(p:info().in_txn)
    tx:rollback()
    assert.are.equal(content("setup2"), p:protected(pids[2]):read())
  end)
end)

describe("transactions mixing regular and protected changes", function()
  after_each(H.cleanup)

  it("commit regular and protected allocs, frees and writes and the root together", function()
    local p, path, pids, ids = setup()
    local tx = p:begin()
    local a = p:alloc()
    H.stamp(p, a, "new regular")
    p:free(ids[1])
    local q = p:alloc_protected()
    p:write_protected(q):write(0, content("new pid"))
    p:write_protected(pids[1]):write(0, content("rewritten"))
    p:free_protected(pids[3])
    p:set_root(-42)
    tx:commit()
    local st = H.pstate(p)
    p = H.reopen(p, path)
    assert.are.same(st, H.pstate(p))
    assert.are.equal(-42, p:root())
    local want = { a, ids[2], ids[3] }
    table.sort(want)
    assert.are.same(want, H.page_list(p))
    assert.is_true(H.stamp_ok(p, a, "new regular"))
    local wantp = { pids[1], pids[2], pids[4], q }
    table.sort(wantp)
    assert.are.same(wantp, H.pid_list(p))
    assert.are.equal(content("new pid"), p:protected(q):read())
    assert.are.equal(content("rewritten"), p:protected(pids[1]):read())
    assert.are.equal(content("setup2"), p:protected(pids[2]):read())
  end)

  local rollbacks = {
    { "a protected alloc", function(p) p:alloc_protected() end },
    { "a protected free", function(p, pids) p:free_protected(pids[2]) end },
    { "a protected write", function(p, pids)
        p:write_protected(pids[1]):write(0, content("rolled back"))
      end },
    { "a committed writer inside the transaction", function(p, pids)
        local w = p:write_protected(pids[1]); w:write(10, "x"); w:commit()
      end },
    { "the first write of a never-written pid", function(p, pids)
        p:write_protected(pids[4]):fill(0x77)
      end },
    { "an alloc and a write of a new pid", function(p)
        local q = p:alloc_protected(); p:write_protected(q):write(0, "fresh")
      end },
    { "a write and then a free of the same pid", function(p, pids)
        p:write_protected(pids[3]):write(0, "doomed"); p:free_protected(pids[3])
      end },
    { "writes to many protected pages", function(p)
        for _ = 1, 150 do p:write_protected(p:alloc_protected()):fill(0x55) end
      end },
    { "growth of the file by protected writes", function(p)
        local n = p:page_count()
        while p:page_count() == n do p:write_protected(p:alloc_protected()):fill(0x66) end
      end },
    { "a mix of everything", function(p, pids, ids)
        p:alloc_bulk(5); p:free(ids[2]); p:set_root(-1)
        local q = p:alloc_protected(); p:write_protected(q):write(0, "q")
        p:free_protected(q)
        p:write_protected(pids[1]):fill(0)
        p:free_protected(pids[2])
        p:write_protected(pids[3]):write(P - 3, "end")
        local r = p:alloc_protected(); p:free_protected(pids[4])
        p:write_protected(r):write(0, "r")
      end },
  }

  for _, case in ipairs(rollbacks) do
    it("undoes " .. case[1] .. " on rollback", function()
      local p, path, pids, ids = setup()
      local st = H.pstate(p)
      local tx = p:begin()
      case[2](p, pids, ids)
      assert.are_not.same(st, H.pstate(p))
      tx:rollback()
      assert.is_false(p:info().in_txn)
      assert.are.same(st, H.pstate(p))
      setup_ok(p, pids, ids)
      p = H.reopen(p, path)
      assert.are.same(st, H.pstate(p))
      setup_ok(p, pids, ids)
      assert.are.equal(4, p:alloc_protected(), "the next pid is the one after the setup's")
    end)
  end

  it("undoes protected changes when a <close> transaction goes out of scope uncommitted", function()
    local p, path, pids, ids = setup()
    local st = H.pstate(p)
    do
      local tx <close> = p:begin()  -- luacheck: ignore 211
      p:write_protected(pids[1]):write(0, "scoped")
      p:free_protected(pids[2])
      p:alloc_protected()
    end
    assert.are.same(st, H.pstate(p))
    p = H.reopen(p, path)
    setup_ok(p, pids, ids)
  end)

  it("undoes protected changes when the pager is closed with a transaction open", function()
    local p, path, pids, ids = setup()
    local st = H.pstate(p)
    p:begin()
    p:write_protected(pids[1]):write(0, "open at close")
    p:free_protected(pids[2])
    p:alloc_protected()
    p:close()
    p = H.open(path)
    assert.are.same(st, H.pstate(p))
    setup_ok(p, pids, ids)
  end)

  it("show the transaction's own protected allocs and frees to protected_pages() and info()", function()
    local p, _, pids = setup()
    local tx = p:begin()
    local q = p:alloc_protected()
    p:free_protected(pids[1])
    local want = { pids[2], pids[3], pids[4], q }
    table.sort(want)
    assert.are.same(want, H.pid_list(p))
    assert.are.equal(4, p:info().protected_count)
    assert.are.equal(ZEROS, p:protected(q):read())
    H.raises(function() p:protected(pids[1]) end)
    tx:rollback()
    assert.are.same(pids, H.pid_list(p))
  end)

  it("keep the transaction open and intact when a protected call inside it raises", function()
    local p, path, pids = setup()
    local tx = p:begin()
    p:write_protected(pids[1]):write(0, content("survivor"))
    local q = p:alloc_protected()
    p:free_protected(pids[2])
    H.raises(function() p:free_protected(pids[2]) end)
    H.raises(function() p:free_protected(p:info().pid_limit + 5) end)
    H.raises(function() p:write_protected(-1) end)
    H.raises(function() p:protected(1 << 40) end)
    assert.is_true(p:info().in_txn)
    tx:commit()
    p = H.reopen(p, path)
    assert.are.equal(content("survivor"), p:protected(pids[1]):read())
    assert.is_true(H.pid_set(p)[q])
    assert.is_nil(H.pid_set(p)[pids[2]])
  end)

  it("never hand to the same transaction a page freed by one of its protected rewrites", function()
    local p, path, pids, ids = setup()
    local tx = p:begin()
    for i = 1, 3 do p:write_protected(pids[i]):write(0, content("replacement" .. i)) end
    local grab = p:alloc_bulk(p:free_count() + 100)
    for _, id in ipairs(grab) do p:page(id):fill(0xEE) end
    tx:rollback()
    setup_ok(p, pids, ids)                      -- the old copies were never overwritten
    p = H.reopen(p, path)
    setup_ok(p, pids, ids)
  end)

  it("make pages freed by a transaction's rewrites free from the next transaction on", function()
    local p = setup()
    local used0 = p:page_count() - p:free_count()
    for round = 1, 20 do
      p:transaction(function()
        for i = 1, 3 do
          p:write_protected(i - 1):write(0, "round " .. round)
        end
      end)
      assert.are.equal(used0, p:page_count() - p:free_count(), "pages in use after round " .. round)
    end
  end)

  it("counts the page a protected rewrite replaced as free only once the transaction commits", function()
    local p, _, pids = setup()
    local f0 = p:free_count()
    local tx = p:begin()
    p:write_protected(pids[1]):write(0, "pending")
    assert.is_true(p:free_count() <= f0, "the old copy is not free before the commit")
    tx:commit()
    assert.are.equal(f0, p:free_count())
  end)
end)

describe("pager:transaction(fn) with protected pages", function()
  after_each(H.cleanup)

  it("commits fn's protected allocs, frees and writes and returns fn's results", function()
    local p, path, pids = setup()
    local b0 = H.barriers(p)
    local q, tag = p:transaction(function()
      local pid = p:alloc_protected()
      p:write_protected(pid):write(0, content("from fn"))
      p:write_protected(pids[1]):write(0, content("also fn"))
      p:free_protected(pids[2])
      return pid, "done"
    end)
    assert.are.equal("done", tag)
    assert.are.equal(b0 + 1, H.barriers(p))
    p = H.reopen(p, path)
    assert.are.equal(content("from fn"), p:protected(q):read())
    assert.are.equal(content("also fn"), p:protected(pids[1]):read())
    assert.is_nil(H.pid_set(p)[pids[2]])
  end)

  it("rolls back fn's protected changes and rethrows when fn raises, its writers dead", function()
    local p, path, pids, ids = setup()
    local st = H.pstate(p)
    local w
    local ok, err = pcall(p.transaction, p, function()
      w = p:write_protected(pids[1])
      w:write(0, content("lost"))
      p:alloc_protected()
      p:free_protected(pids[3])
      error("fn failed")
    end)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("fn failed", 1, true))
    assert.are.same(st, H.pstate(p))
    H.raises(function() w:read() end)
    p = H.reopen(p, path)
    setup_ok(p, pids, ids)
  end)

  it("rolls back when fn double-frees a pid, and rethrows that error", function()
    local p, _, pids = setup()
    local st = H.pstate(p)
    local ok, err = pcall(p.transaction, p, function()
      p:write_protected(pids[1]):write(0, "x")
      p:free_protected(pids[2])
      p:free_protected(pids[2])
    end)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("free_protected", 1, true), tostring(err))
    assert.are.same(st, H.pstate(p))
  end)
end)

describe("durability barriers with protected pages", function()
  after_each(H.cleanup)

  local function one_commit(p, fn)
    local i0 = p:info()
    fn()
    local i1 = p:info()
    return i1.barriers - i0.barriers, i1.commits - i0.commits, i1.txn - i0.txn
  end

  it("issues exactly one barrier for a single-page protected commit", function()
    local p, _, pids = setup()
    for round = 1, 5 do
      local b, c, t = one_commit(p, function()
        local w = p:write_protected(pids[1 + round % 4])
        w:write(0, content("single" .. round))
        assert.is_true(w:commit())
      end)
      assert.are.same({ 1, 1, 1 }, { b, c, t }, "barriers, commits, txn of round " .. round)
    end
  end)

  it("issues exactly one barrier for a protected alloc", function()
    local p = setup()
    for round = 1, 5 do
      local b, c, t = one_commit(p, function() p:alloc_protected() end)
      assert.are.same({ 1, 1, 1 }, { b, c, t }, "barriers, commits, txn of alloc " .. round)
    end
  end)

  it("issues exactly one barrier for a protected free", function()
    local p, _, pids = setup()
    for _, pid in ipairs(pids) do
      local b, c, t = one_commit(p, function() p:free_protected(pid) end)
      assert.are.same({ 1, 1, 1 }, { b, c, t }, "barriers, commits, txn of the free of " .. pid)
    end
  end)

  it("issues exactly one barrier for a transaction writing 100 protected pages", function()
    local p = setup()
    local pids = {}
    for i = 1, 100 do pids[i] = p:alloc_protected() end
    for round = 1, 3 do
      local b, c, t = one_commit(p, function()
        p:transaction(function()
          for _, pid in ipairs(pids) do
            p:write_protected(pid):write(0, content(round .. ":" .. pid))
          end
        end)
      end)
      assert.are.same({ 1, 1, 1 }, { b, c, t }, "barriers, commits, txn of round " .. round)
    end
    for _, pid in ipairs(pids) do assert.are.equal(content("3:" .. pid), p:protected(pid):read()) end
  end)

  it("issues exactly one barrier for a transaction allocating and writing 100 new protected pages", function()
    local p = setup()
    local b = one_commit(p, function()
      p:transaction(function()
        for i = 1, 100 do p:write_protected(p:alloc_protected()):write(0, "n" .. i) end
        p:alloc_bulk(20)
        p:set_root(100)
      end)
    end)
    assert.are.equal(1, b)
  end)

  it("issues at most two barriers for a transaction of 2,000 protected writes", function()
    local p, path = setup()
    local b = one_commit(p, function()
      p:transaction(function()
        for i = 1, 2000 do
          local pid = p:alloc_protected()
          H.vstamp(p:write_protected(pid), pid, "bulk" .. i)
        end
      end)
    end)
    assert.is_true(b >= 1 and b <= 2, b .. " barriers")
    p = H.reopen(p, path)
    assert.are.equal(2004, p:info().protected_count)
    assert.is_true(H.vstamp_ok(p:protected(1999), 1999, "bulk1996"))
  end)

  it("issues no barrier for protected reads, discarded writers or a rollback", function()
    local p, _, pids = setup()
    local b0 = H.barriers(p)
    for _, pid in ipairs(pids) do p:protected(pid):read() end
    H.pid_list(p)
    p:info()
    local w = p:write_protected(pids[1])
    w:write(0, "never")
    w:discard()
    local tx = p:begin()
    p:write_protected(pids[2]):write(0, "never")
    p:alloc_protected()
    p:free_protected(pids[3])
    tx:rollback()
    assert.are.equal(b0, H.barriers(p))
  end)
end)

describe("damage on disk to one page of a multi-page transaction", function()
  after_each(H.cleanup)

  it("makes open fall back past the whole transaction", function()
    local p, path, pids, ids = setup()
    local S1 = H.pstate(p)
    p:transaction(function()
      for i = 1, 4 do p:write_protected(pids[i]):write(0, content("multi" .. i)) end
      local q = p:alloc_protected()
      p:write_protected(q):write(0, content("multi new"))
      p:free(ids[1])
      p:alloc_bulk(3)
      p:set_root(6)
    end)
    p:close()
    local where = H.find_pages(path, P, content("multi3"):sub(1, 16))
    assert.is_true(#where >= 1, "the page written for pid " .. pids[3] .. " is in the file")
    for _, pg in ipairs(where) do H.flip(path, pg * P + 700) end
    for _, opts in ipairs({ { readonly = true }, {} }) do
      p = H.open(path, opts)
      assert.is_true(p:info().recovered)
      assert.are.same(S1, H.pstate(p))
      setup_ok(p, pids, ids)
      assert.are.equal(5, p:root())
      p:close()
    end
  end)
end)

describe("a failing barrier during a protected commit", function()
  after_each(function()
    core._inject_fault(nil)
    H.cleanup()
  end)

  it("makes writer:commit() return nil, msg, code and leaves the old or the new content, never a mix", function()
    local p, path, pids = setup()
    local w = p:write_protected(pids[1])
    w:write(0, content("maybe"))
    core._inject_fault("barrier", "eio")
    local ok, msg, code = w:commit()
    assert.is_nil(ok)
    assert.is_string(msg)
    assert.are.equal("io", code)
    assert.is_true(p:info().poisoned)
    assert.are.equal(content("setup1"), p:protected(pids[1]):read(), "memory shows the durable state")
    core._inject_fault(nil)
    p:close()
    p = H.open(path)
    local got = p:protected(pids[1]):read()
    assert.is_true(got == content("setup1") or got == content("maybe"), "old or new, whole")
    assert.is_true(p:check())
  end)

  it("makes a protected alloc and a transaction of protected writes return nil, msg, code", function()
    local p, path, pids, ids = setup()
    core._inject_fault("barrier", "enospc")
    local pid, _, code = p:alloc_protected()
    assert.is_nil(pid)
    assert.are.equal("no_space", code)
    core._inject_fault(nil)
    p:close()
    p = H.open(path)
    local tx = p:begin()
    for i = 1, 3 do p:write_protected(pids[i]):write(0, content("lost" .. i)) end
    core._inject_fault("barrier", "eio")
    local ok, _, c = tx:commit()
    assert.is_nil(ok)
    assert.are.equal("io", c)
    core._inject_fault(nil)
    p:close()
    p = H.open(path)
    local first = p:protected(pids[1]):read()
    local new = first == content("lost1")
    for i = 1, 3 do
      assert.are.equal(new and content("lost" .. i) or content("setup" .. i),
        p:protected(pids[i]):read(), "all of the transaction or none of it")
    end
    for _, id in ipairs(ids) do assert.is_true(H.stamp_ok(p, id)) end
  end)
end)

describe("a random mix of protected calls, valid and invalid", function()
  after_each(H.cleanup)

  it("never crashes or loses a pid, whatever the order", function()
    local path = H.path()
    local out, status = H.run_lua(([[
local mp = require "mappedpages"
local path = %q
local p = assert(mp.create(path, { page_size = 1024 }))
local x = 4242
local function rnd(n) x = (x * 1103515245 + 12345) & 0x7fffffff; return (x >> 8) %% n end
local model, saved, tx = {}, nil, nil
local objs = {}
local function pick()
  local l = {}
  for pid in pairs(model) do l[#l + 1] = pid end
  table.sort(l)
  local r = rnd(10)
  if r < 6 and #l > 0 then return l[rnd(#l) + 1] end
  if r < 8 then return rnd(p:info().pid_limit + 3) end
  return ({ -1, 1 << 40, 2.5, "x", math.maxinteger })[rnd(5) + 1]
end
local function copy(t) local c = {} for k, v in pairs(t) do c[k] = v end return c end
local function check(where)
  local seen = {}
  for pid in p:protected_pages() do seen[pid] = true end
  for pid in pairs(model) do if not seen[pid] then error(where .. ": lost pid " .. pid) end end
  for pid in pairs(seen) do if not model[pid] then error(where .. ": extra pid " .. pid) end end
  local n = 0 for _ in pairs(model) do n = n + 1 end
  if p:info().protected_count ~= n then error(where .. ": protected_count") end
end
for step = 1, 3000 do
  local op = rnd(16)
  if op <= 2 then
    local ok, pid = pcall(p.alloc_protected, p); if ok and pid then model[pid] = true end
  elseif op == 3 or op == 15 then
    local pid = pick(); if pcall(p.free_protected, p, pid) then model[pid] = nil end
  elseif op == 4 then
    local ok, w = pcall(p.write_protected, p, pick()); if ok then objs[#objs + 1] = w end
  elseif op == 5 then
    local ok, v = pcall(p.protected, p, pick()); if ok then objs[#objs + 1] = v end
  elseif op == 6 and #objs > 0 then
    local o = objs[rnd(#objs) + 1]
    pcall(o.write, o, rnd(1100) - 30, string.rep("z", rnd(60)))
    pcall(o.read, o, rnd(1100) - 30, rnd(60))
    pcall(o.pack, o, rnd(1100) - 30, "<i8", 7)
    pcall(o.fill, o, rnd(300) - 20)
  elseif op == 7 and #objs > 0 then
    local o = objs[rnd(#objs) + 1]
    if o.commit then pcall(o.commit, o) end
  elseif op == 8 and #objs > 0 then
    local o = objs[rnd(#objs) + 1]
    if o.discard then pcall(o.discard, o) end
  elseif op == 9 then
    local ok, t = pcall(p.begin, p); if ok then tx = t; saved = copy(model) end
  elseif op == 10 and tx then
    if pcall(tx.commit, tx) then tx = nil end
  elseif op == 11 and tx then
    if pcall(tx.rollback, tx) then tx = nil; model = saved end
  elseif op == 12 then
    pcall(p.alloc, p)
  elseif op == 13 and rnd(30) == 0 then
    p:close()
    if tx then model = saved; tx = nil end
    p = assert(mp.open(path))
    check("after reopen " .. step)
  elseif op == 14 and #objs > 40 then
    objs = {}
    collectgarbage()
  end
  if step %% 100 == 0 then check("step " .. step) end
end
if tx then tx:rollback(); model = saved end
check("end")
assert(p:check())
p:close()
p = assert(mp.open(path))
check("final reopen")
assert(p:check())
local n = 0 for _ in pairs(model) do n = n + 1 end
p:close()
io.write("survived ", n)
]]):format(path))
    assert.are.equal(0, status, "the child crashed or failed: " .. out)
    local n = out:match("^survived (%d+)$")
    assert.is_truthy(n, out)
    assert.is_true(tonumber(n) > 10, out)
  end)
end)
