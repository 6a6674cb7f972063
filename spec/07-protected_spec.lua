-- spec/07-protected_spec.lua -- protected pages: their own dense id space
-- (pids), zeros at first, views that always show the committed content,
-- writers that are private copies until they commit, one physical page per
-- protected page at rest, and open falling back to the previous commit when
-- the pages a commit wrote are damaged on disk.  Transactions that mix
-- protected and regular changes, and barrier counts: spec/08.

local H = require "helpers"
local mp = H.mp

local P = 1024                  -- small pages keep loops and file scans quick
local ZEROS = string.rep("\0", P)

local function content(tag) return H.pcontent(P, tag) end

local function setup() return H.protected_history(P) end
local function setup_ok(p, pids, ids) H.protected_history_ok(p, pids, ids) end

-- fn (a closure making one call) must raise naming words, and change
-- nothing: same state, same protected bytes, no barrier.
local function refused(p, words, fn)
  local before, barriers = H.pstate(p), H.barriers(p)
  local msg = H.raises_with(words, fn)
  assert.are.same(before, H.pstate(p))
  assert.are.equal(barriers, H.barriers(p))
  return msg
end

-- Pages in use (not free) at rest.
local function used(p) return p:page_count() - p:free_count() end

describe("protected page ids", function()
  after_each(H.cleanup)

  it("numbers the protected pages of a new file 0, 1, 2, ...", function()
    local p = H.create({ page_size = P })
    for want = 0, 9 do
      local pid = p:alloc_protected()
      assert.are.equal("integer", math.type(pid))
      assert.are.equal(want, pid)
    end
    assert.are.equal(10, p:info().protected_count)
    assert.are.equal(10, p:info().pid_limit)
  end)

  it("counts protected_count and pid_limit as pids come and go, across reopen", function()
    local p, path = H.create({ page_size = P })
    assert.are.equal(0, p:info().protected_count)
    assert.are.equal(0, p:info().pid_limit)
    for _ = 1, 5 do p:alloc_protected() end
    p:free_protected(1)
    p:free_protected(3)
    assert.are.equal(3, p:info().protected_count)
    assert.are.equal(5, p:info().pid_limit)
    p = H.reopen(p, path)
    assert.are.equal(3, p:info().protected_count)
    assert.are.equal(5, p:info().pid_limit)
    assert.are.same({ 0, 2, 4 }, H.pid_list(p))
  end)

  it("lists exactly the allocated pids with protected_pages() after random allocs and frees", function()
    local p = H.create({ page_size = P })
    local rng = H.rng(17)
    local model = {}
    local function check()
      local seen = {}
      for pid in p:protected_pages() do
        assert.are.equal("integer", math.type(pid))
        assert.is_nil(seen[pid], "protected_pages() repeated " .. tostring(pid))
        seen[pid] = true
      end
      assert.are.same(model, seen)
      assert.are.equal(#H.sorted_keys(model), p:info().protected_count)
    end
    check()
    for step = 1, 300 do
      local live = H.sorted_keys(model)
      if rng(10) <= 6 or #live == 0 then
        model[p:alloc_protected()] = true
      else
        local pid = live[rng(#live)]
        p:free_protected(pid)
        model[pid] = nil
      end
      if step % 20 == 0 then check() end
    end
    check()
  end)

  it("lets a for loop break out of protected_pages() early", function()
    local p = H.create({ page_size = P })
    for _ = 1, 20 do p:alloc_protected() end
    local n = 0
    for _ in p:protected_pages() do
      n = n + 1
      if n == 3 then break end
    end
    assert.are.equal(3, n)
    assert.are.equal(20, #H.pid_list(p))
  end)

  it("commits an auto-commit alloc_protected durably", function()
    local p, path = H.create({ page_size = P })
    local t0 = p:info().txn
    local pid = p:alloc_protected()
    assert.are.equal(t0 + 1, p:info().txn)
    p = H.reopen(p, path)
    assert.are.same({ pid }, H.pid_list(p))
    assert.are.equal(ZEROS, p:protected(pid):read())
  end)

  it("commits an auto-commit free_protected durably", function()
    local p, path, pids = setup()
    local t0 = p:info().txn
    p:free_protected(pids[2])
    assert.are.equal(t0 + 1, p:info().txn)
    p = H.reopen(p, path)
    assert.are.same({ pids[1], pids[3], pids[4] }, H.pid_list(p))
    H.raises(function() p:protected(pids[2]):read() end)
  end)
end)

describe("a new protected page", function()
  after_each(H.cleanup)

  for _, size in ipairs({ 1024, 4096, 65536 }) do
    it(("reads as zeros through views and writers (%d-byte pages)"):format(size), function()
      local p = H.create({ page_size = size })
      local pid = p:alloc_protected()
      local v = p:protected(pid)
      assert.are.equal(size, #v)
      assert.are.equal(string.rep("\0", size), v:read())
      local w = p:write_protected(pid)
      assert.are.equal(size, #w)
      assert.are.equal(string.rep("\0", size), w:read())
      w:discard()
    end)
  end

  it("still reads as zeros after reopen", function()
    local p, path = H.create({ page_size = P })
    local pids = {}
    for i = 1, 5 do pids[i] = p:alloc_protected() end
    H.pset(p, pids[2], content("written"))
    p = H.reopen(p, path)
    for i, pid in ipairs(pids) do
      if i ~= 2 then assert.are.equal(ZEROS, p:protected(pid):read(), "pid " .. pid) end
    end
    assert.are.equal(content("written"), p:protected(pids[2]):read())
  end)

  it("occupies no physical page until it is first written", function()
    local p = H.create({ page_size = P })
    local pids = {}
    for i = 1, 50 do pids[i] = p:alloc_protected() end
    assert.are.equal(50, p:info().protected_count)
    assert.are.equal(0, p:info().protected_pages)
    H.pset(p, pids[7], "first write")
    assert.are.equal(1, p:info().protected_pages)
  end)
end)

describe("reuse of freed pids", function()
  after_each(H.cleanup)

  it("hands out the lowest free pid again after an auto-commit free", function()
    local p = H.create({ page_size = P })
    for _ = 1, 6 do p:alloc_protected() end
    p:free_protected(4)
    p:free_protected(1)
    assert.are.equal(1, p:alloc_protected())
    assert.are.equal(4, p:alloc_protected())
    assert.are.equal(6, p:alloc_protected())
    assert.are.equal(7, p:info().pid_limit)
  end)

  it("never hands out a pid in the transaction that freed it, and does from the next one on", function()
    local p = H.create({ page_size = P })
    for _ = 1, 4 do p:alloc_protected() end
    local tx = p:begin()
    p:free_protected(2)
    assert.are.equal(4, p:alloc_protected())
    assert.are.equal(5, p:alloc_protected())
    tx:commit()
    assert.are.equal(2, p:alloc_protected())
    assert.are.equal(6, p:alloc_protected())
  end)

  it("reads a reused pid as zeros, not the content it had before the free", function()
    local p, path = H.create({ page_size = P })
    local a = p:alloc_protected()
    p:alloc_protected()
    H.pset(p, a, content("old owner"))
    p:free_protected(a)
    assert.are.equal(a, p:alloc_protected())
    assert.are.equal(ZEROS, p:protected(a):read())
    local w = p:write_protected(a)
    assert.are.equal(ZEROS, w:read())
    w:discard()
    p = H.reopen(p, path)
    assert.are.equal(ZEROS, p:protected(a):read())
  end)

  it("keeps the pid a free made durable free across reopen, and reuses it afterwards", function()
    local p, path = H.create({ page_size = P })
    for _ = 1, 5 do p:alloc_protected() end
    p:free_protected(2)
    p = H.reopen(p, path)
    assert.are.same({ 0, 1, 3, 4 }, H.pid_list(p))
    assert.are.equal(2, p:alloc_protected())
    assert.are.equal(5, p:alloc_protected())
  end)
end)

describe("misuse of protected ids", function()
  after_each(H.cleanup)

  it("raises on a double free and loses nothing", function()
    local p, _, pids, ids = setup()
    p:free_protected(pids[2])
    refused(p, "free_protected", function() p:free_protected(pids[2]) end)
    assert.are.same({ pids[1], pids[3], pids[4] }, H.pid_list(p))
    assert.are.equal(content("setup1"), p:protected(pids[1]):read())
    assert.are.equal(content("setup3"), p:protected(pids[3]):read())
    for _, id in ipairs(ids) do assert.is_true(H.stamp_ok(p, id)) end
  end)

  it("raises on freeing a pid twice in one transaction, keeping the transaction", function()
    local p, path, pids = setup()
    local tx = p:begin()
    p:free_protected(pids[1])
    H.raises_with("free_protected", function() p:free_protected(pids[1]) end)
    assert.is_true(p:info().in_txn)
    tx:commit()
    p = H.reopen(p, path)
    assert.are.same({ pids[2], pids[3], pids[4] }, H.pid_list(p))
  end)

  it("raises on freeing a pid that was never allocated", function()
    local p, _, pids, ids = setup()
    local limit = p:info().pid_limit
    for _, bad in ipairs({ limit, limit + 1, limit + 1000, (1 << 32) - 1, 1 << 32,
                           1 << 40, math.maxinteger }) do
      refused(p, "free_protected", function() p:free_protected(bad) end)
    end
    setup_ok(p, pids, ids)
  end)

  it("raises for negative and non-integer pids in every protected call", function()
    local p, _, pids, ids = setup()
    for _, bad in ipairs({ -1, -2, math.mininteger, 0.5, pids[2] + 0.5, "x", {}, true }) do
      refused(p, "free_protected", function() p:free_protected(bad) end)
      refused(p, "protected", function() p:protected(bad) end)
      refused(p, "write_protected", function() p:write_protected(bad) end)
    end
    refused(p, "free_protected", function() p:free_protected() end)
    refused(p, "protected", function() p:protected() end)
    refused(p, "write_protected", function() p:write_protected() end)
    setup_ok(p, pids, ids)
  end)

  it("raises when viewing or writing a pid that is free or was never allocated", function()
    local p, _, pids = setup()
    p:free_protected(pids[3])
    local limit = p:info().pid_limit
    for _, bad in ipairs({ pids[3], limit, limit + 7, 1 << 32 }) do
      refused(p, "protected", function() p:protected(bad) end)
      refused(p, "write_protected", function() p:write_protected(bad) end)
    end
  end)

  it("raises for every pid of a file that has no protected page yet", function()
    local p = H.create({ page_size = P })
    local id = p:alloc()
    for _, bad in ipairs({ 0, 1, id, math.maxinteger }) do
      refused(p, "protected", function() p:protected(bad) end)
      refused(p, "write_protected", function() p:write_protected(bad) end)
      refused(p, "free_protected", function() p:free_protected(bad) end)
    end
    assert.are.same({}, H.pid_list(p))
  end)

  it("treats regular page ids and pids as separate spaces", function()
    local p = H.create({ page_size = P })
    local first = p:alloc()                       -- a regular page id, say 8
    local pids = {}
    for i = 1, first + 3 do pids[i] = p:alloc_protected() end
    assert.is_true(H.pid_set(p)[first], "pid " .. first .. " exists too")
    H.stamp(p, first, "regular")
    H.pset(p, first, "protected bytes")
    assert.is_true(H.stamp_ok(p, first, "regular"))
    assert.are.equal("protected bytes", p:protected(first):read(0, 15))
    assert.are.same({ first }, H.page_list(p))
    p:free(first)
    assert.are.equal("protected bytes", p:protected(first):read(0, 15))
    p:free_protected(first)
    H.raises(function() p:protected(first):read() end)
    assert.are.equal(#pids - 1, #H.pid_list(p))
  end)
end)

describe("protected views", function()
  after_each(H.cleanup)

  it("show the committed content, with the page size as length and the pid as id()", function()
    local p, _, pids = setup()
    local v = p:protected(pids[2])
    assert.are.equal(P, #v)
    assert.are.equal(pids[2], v:id())
    assert.are.equal(content("setup2"), v:read())
    assert.are.equal(content("setup2"):sub(5, 12), v:read(4, 8))
  end)

  it("unpack values a writer packed", function()
    local p, _, pids = setup()
    local w = p:write_protected(pids[4])
    assert.are.equal(16, w:pack(4, "<i4 i8", -7, 1 << 40))
    w:commit()
    local a, b, nxt = p:protected(pids[4]):unpack(4, "<i4 i8")
    assert.are.same({ -7, 1 << 40, 16 }, { a, b, nxt })
  end)

  it("refuse write, pack and fill, and change no byte", function()
    local p, path, pids = setup()
    local v = p:protected(pids[1])
    local before, barriers = H.read_file(path), H.barriers(p)
    H.raises_with("write", function() v:write(0, "x") end)
    H.raises_with("pack", function() v:pack(0, "<i4", 1) end)
    H.raises_with("fill", function() v:fill(0) end)
    H.raises_with("fill", function() v:fill(0x41, 10, 5) end)
    assert.are.equal(content("setup1"), v:read())
    assert.are.equal(content("setup1"), p:protected(pids[1]):read())
    assert.are.equal(barriers, H.barriers(p))
    assert.are.equal(before, H.read_file(path))
  end)

  it("raise on reads outside the page", function()
    local p, _, pids = setup()
    local v = p:protected(pids[1])
    H.raises_with("read", function() v:read(P - 1, 2) end)
    H.raises_with("read", function() v:read(-1, 1) end)
    H.raises_with("unpack", function() v:unpack(P - 4, "<i8") end)
  end)

  it("read the new content after a commit when taken before it", function()
    local p, _, pids = setup()
    local v = p:protected(pids[1])
    assert.are.equal(content("setup1"), v:read())
    H.pset(p, pids[1], content("second"))
    assert.are.equal(content("second"), v:read())
    local w = p:write_protected(pids[1])
    w:write(0, "third")
    assert.are.equal(content("second"), v:read(), "an uncommitted writer is private")
    w:commit()
    assert.are.equal("third", v:read(0, 5))
  end)

  it("show their own pid's content while the file recycles physical pages", function()
    local p, _, pids = setup()
    local views = {}
    for i, pid in ipairs(pids) do views[i] = p:protected(pid) end
    for round = 1, 60 do
      if round % 2 == 0 then
        p:transaction(function()
          for _, pid in ipairs(pids) do
            H.vstamp(p:write_protected(pid), pid, "round" .. round)
          end
        end)
      else
        for _, pid in ipairs(pids) do
          local w = p:write_protected(pid)
          H.vstamp(w, pid, "round" .. round)
          w:commit()
        end
      end
      for i, pid in ipairs(pids) do
        assert.is_true(H.vstamp_ok(views[i], pid, "round" .. round),
          ("view of pid %d in round %d"):format(pid, round))
      end
    end
  end)

  it("raise once their pid is freed", function()
    local p, _, pids = setup()
    local v = p:protected(pids[2])
    p:free_protected(pids[2])
    H.raises(function() v:read() end)
    H.raises(function() v:read(0, 4) end)
    H.raises(function() v:unpack(0, "<i4") end)
  end)

  it("raise once their pid is freed inside the open transaction", function()
    local p, _, pids = setup()
    local v = p:protected(pids[2])
    local tx = p:begin()
    p:free_protected(pids[2])
    H.raises(function() v:read() end)
    tx:rollback()
    local ok, got = pcall(v.read, v)       -- dead for good, or showing the pid again
    if ok then assert.are.equal(content("setup2"), got) end
    assert.are.equal(content("setup2"), p:protected(pids[2]):read())
  end)

  it("never show the old content of a pid that was freed and handed out again", function()
    local p, _, pids = setup()
    local v = p:protected(pids[2])
    p:free_protected(pids[2])
    assert.are.equal(pids[2], p:alloc_protected())
    local ok, got = pcall(v.read, v)
    if ok then assert.are.equal(ZEROS, got) end
    H.pset(p, pids[2], content("new owner"))
    ok, got = pcall(v.read, v)
    if ok then assert.are.equal(content("new owner"), got) end
  end)
end)

describe("writers outside a transaction", function()
  after_each(H.cleanup)

  it("start as a copy of the committed content, with the page size as length and the pid as id()", function()
    local p, _, pids = setup()
    local w = p:write_protected(pids[3])
    assert.are.equal(P, #w)
    assert.are.equal(pids[3], w:id())
    assert.are.equal(content("setup3"), w:read())
    w:discard()
  end)

  it("keep every other byte of the page when only part of it is written", function()
    local p, path, pids = setup()
    local w = p:write_protected(pids[1])
    w:write(100, "patch")
    w:pack(600, "<i8", -1)
    w:commit()
    local want = content("setup1")
    want = want:sub(1, 100) .. "patch" .. want:sub(106)
    want = want:sub(1, 600) .. string.pack("<i8", -1) .. want:sub(609)
    assert.are.equal(want, p:protected(pids[1]):read())
    p = H.reopen(p, path)
    assert.are.equal(want, p:protected(pids[1]):read())
  end)

  it("read back their own writes before commit", function()
    local p, _, pids = setup()
    local w = p:write_protected(pids[1])
    w:write(10, "mine")
    w:fill(0x41, 20, 3)
    assert.are.equal("mine", w:read(10, 4))
    assert.are.equal("AAA", w:read(20, 3))
    w:discard()
  end)

  it("are invisible until writer:commit(): views, counters and the file show the old content", function()
    local p, path, pids, ids = setup()
    local st, b0 = H.pstate(p), H.barriers(p)
    local w = p:write_protected(pids[1])
    w:write(0, content("uncommitted"))
    assert.are.equal(content("setup1"), p:protected(pids[1]):read())
    assert.are.same(st, H.pstate(p))
    assert.are.equal(b0, H.barriers(p))
    p:close()                                   -- the writer never committed
    p = H.open(path)
    assert.are.same(st.pids, H.pstate(p).pids)
    setup_ok(p, pids, ids)
  end)

  it("make their content durable and visible with writer:commit(), which returns true", function()
    local p, path, pids = setup()
    local t0 = p:info().txn
    local w = p:write_protected(pids[2])
    w:write(0, content("committed"))
    assert.is_true(w:commit())
    assert.are.equal(t0 + 1, p:info().txn)
    assert.are.equal(content("committed"), p:protected(pids[2]):read())
    p = H.reopen(p, path)
    assert.are.equal(content("committed"), p:protected(pids[2]):read())
  end)

  it("alternate writes: every commit replaces the previous content, across reopens", function()
    local p, path, pids = setup()
    local pid = pids[1]
    local prev = content("setup1")
    for round = 1, 24 do
      local want = content(((round % 2 == 1) and "A" or "B") .. round)
      local w = p:write_protected(pid)
      assert.are.equal(prev, w:read(), "writer of round " .. round .. " starts from the last commit")
      w:write(0, want)
      w:commit()
      prev = want
      assert.are.equal(want, p:protected(pid):read())
      if round % 6 == 0 then
        p = H.reopen(p, path)
        assert.are.equal(want, p:protected(pid):read())
      end
    end
    assert.are.equal(content("setup2"), p:protected(pids[2]):read())
  end)

  it("drop their changes on discard", function()
    local p, path, pids, ids = setup()
    local st = H.pstate(p)
    local w = p:write_protected(pids[1])
    w:write(0, content("discarded"))
    w:discard()
    assert.are.same(st, H.pstate(p))
    p = H.reopen(p, path)
    setup_ok(p, pids, ids)
  end)

  it("drop their changes at the end of a <close> scope without commit", function()
    local p, path, pids, ids = setup()
    local st = H.pstate(p)
    local keep
    do
      local w <close> = p:write_protected(pids[1])
      w:write(0, content("scoped"))
      keep = w
    end
    H.raises(function() keep:read() end)
    assert.are.same(st, H.pstate(p))
    p = H.reopen(p, path)
    setup_ok(p, pids, ids)
  end)

  it("keep a commit made inside a <close> scope", function()
    local p, path, pids = setup()
    do
      local w <close> = p:write_protected(pids[1])
      w:write(0, content("scoped"))
      w:commit()
    end
    assert.are.equal(content("scoped"), p:protected(pids[1]):read())
    p = H.reopen(p, path)
    assert.are.equal(content("scoped"), p:protected(pids[1]):read())
  end)

  it("drop their changes when an error unwinds through a <close> scope", function()
    local p, _, pids = setup()
    local ok = pcall(function()
      local w <close> = p:write_protected(pids[1])
      w:write(0, content("unwound"))
      error("boom")
    end)
    assert.is_false(ok)
    assert.are.equal(content("setup1"), p:protected(pids[1]):read())
  end)

  it("drop their changes when garbage-collected without commit, leaving no page behind", function()
    local p, path, pids = setup()
    local st = H.pstate(p)
    for i = 1, 20 do
      local w = p:write_protected(pids[1 + i % 4])
      w:write(0, content("abandoned" .. i))
    end
    collectgarbage()
    collectgarbage()
    assert.are.same(st, H.pstate(p))
    p = H.reopen(p, path)
    st.txn = nil
    local now = H.pstate(p)
    now.txn = nil
    assert.are.same(st, now)
  end)

  local writer_calls = {
    { "read", function(w) return w:read() end },
    { "write", function(w) w:write(0, "x") end },
    { "pack", function(w) w:pack(0, "<i4", 1) end },
    { "unpack", function(w) return w:unpack(0, "<i4") end },
    { "fill", function(w) w:fill(0) end },
    { "id", function(w) return w:id() end },
    { "#", function(w) return #w end },
    { "commit", function(w) return w:commit() end },
    { "discard", function(w) return w:discard() end },
  }

  for _, ending in ipairs({ "commit", "discard" }) do
    it("are dead after " .. ending .. ": every method raises and nothing changes", function()
      local p, path, pids = setup()
      local w = p:write_protected(pids[1])
      w:write(0, content("ended"))
      w[ending](w)
      local st, b0 = H.pstate(p), H.barriers(p)
      local file = H.read_file(path)
      for _, c in ipairs(writer_calls) do
        local ok = pcall(c[2], w)
        assert.is_false(ok, c[1] .. " of a writer after " .. ending .. " did not raise")
      end
      assert.are.same(st, H.pstate(p))
      assert.are.equal(b0, H.barriers(p))
      assert.are.equal(file, H.read_file(path))
    end)
  end

  it("raise after the pager is closed, and the file keeps the committed content", function()
    local p, path, pids, ids = setup()
    local w = p:write_protected(pids[1])
    w:write(0, content("after close"))
    local v = p:protected(pids[2])
    p:close()
    H.raises_with("closed", function() w:read() end)
    H.raises_with("closed", function() w:write(0, "x") end)
    H.raises(function() w:commit() end)
    H.raises_with("closed", function() v:read() end)
    H.raises(function() p:alloc_protected() end)
    H.raises(function() p:protected(pids[1]) end)
    H.raises(function() p:write_protected(pids[1]) end)
    H.raises(function() p:free_protected(pids[1]) end)
    H.raises(function() for _ in p:protected_pages() do end end)
    p = H.open(path)
    setup_ok(p, pids, ids)
  end)

  it("still print when dead or closed", function()
    local p, _, pids = setup()
    local w = p:write_protected(pids[1])
    local v = p:protected(pids[1])
    assert.are.equal("string", type(tostring(w)))
    assert.are.equal("string", type(tostring(v)))
    w:discard()
    assert.are.equal("string", type(tostring(w)))
    p:close()
    assert.are.equal("string", type(tostring(w)))
    assert.are.equal("string", type(tostring(v)))
  end)

  it("keep their pager alive while reachable", function()
    local path = H.path()
    local w
    do
      local p = assert(mp.create(path, { page_size = P }))
      local pid = p:alloc_protected()
      w = p:write_protected(pid)
    end
    collectgarbage()
    collectgarbage()
    w:write(0, "kept alive")
    assert.is_true(w:commit())
    w = nil  -- luacheck: ignore 311
    collectgarbage()
    collectgarbage()
    local q = H.open(path)                 -- the lock went with the pager
    assert.are.equal("kept alive", q:protected(0):read(0, 10))
  end)

  it("join a transaction begun after they were made: no barrier, visible inside, kept by tx:commit", function()
    local p, path, pids = setup()
    local w = p:write_protected(pids[1])
    w:write(0, content("joined"))
    local tx = p:begin()
    local b0, t0 = H.barriers(p), p:info().txn
    w:commit()
    assert.are.equal(b0, H.barriers(p))
    assert.are.equal(t0, p:info().txn)
    assert.are.equal(content("joined"), p:protected(pids[1]):read())
    H.raises(function() w:read() end)
    tx:commit()
    assert.are.equal(b0 + 1, H.barriers(p))
    p = H.reopen(p, path)
    assert.are.equal(content("joined"), p:protected(pids[1]):read())
  end)

  it("join a transaction begun after they were made: tx:rollback drops the content", function()
    local p, path, pids, ids = setup()
    local w = p:write_protected(pids[1])
    w:write(0, content("joined"))
    local tx = p:begin()
    w:commit()
    tx:rollback()
    assert.are.equal(content("setup1"), p:protected(pids[1]):read())
    p = H.reopen(p, path)
    setup_ok(p, pids, ids)
  end)

  it("stay private through a transaction that does not commit them, and can commit after it", function()
    local p, path, pids = setup()
    local w = p:write_protected(pids[1])
    w:write(0, content("patient"))
    local tx = p:begin()
    assert.are.equal(content("setup1"), p:protected(pids[1]):read())
    p:set_root(6)
    tx:commit()
    assert.are.equal(content("setup1"), p:protected(pids[1]):read())
    assert.are.equal(content("patient"), w:read())
    assert.is_true(w:commit())
    assert.are.equal(content("patient"), p:protected(pids[1]):read())
    p = H.reopen(p, path)
    assert.are.equal(content("patient"), p:protected(pids[1]):read())
    assert.are.equal(6, p:root())
  end)

  it("drop their changes when discarded inside a later transaction", function()
    local p, _, pids = setup()
    local w = p:write_protected(pids[1])
    w:write(0, content("dropped"))
    local tx = p:begin()
    w:discard()
    assert.are.equal(content("setup1"), p:protected(pids[1]):read())
    tx:commit()
    assert.are.equal(content("setup1"), p:protected(pids[1]):read())
  end)
end)

describe("physical pages at rest", function()
  after_each(H.cleanup)

  it("number one per written protected page and none per unwritten one", function()
    local p, path = H.create({ page_size = P })
    local pids = {}
    for i = 1, 40 do pids[i] = p:alloc_protected() end
    for i = 1, 40, 2 do H.pset(p, pids[i], content("odd" .. i)) end
    assert.are.equal(20, p:info().protected_pages)
    for i = 1, 40, 4 do H.pset(p, pids[i], content("again" .. i)) end
    assert.are.equal(20, p:info().protected_pages)
    p:free_protected(pids[1])
    p:free_protected(pids[2])
    assert.are.equal(19, p:info().protected_pages)
    p = H.reopen(p, path)
    assert.are.equal(19, p:info().protected_pages)
    assert.are.equal(38, p:info().protected_count)
  end)

  it("stay at most 1.1 per protected page after many rewrites", function()
    local p, path = H.create({ page_size = P })
    local pids = {}
    for i = 1, 100 do pids[i] = p:alloc_protected() end
    local rng = H.rng(5)
    for round = 1, 10 do
      p:transaction(function()
        for _, pid in ipairs(pids) do H.vstamp(p:write_protected(pid), pid, "t" .. round) end
      end)
      for _ = 1, 30 do
        local pid = pids[rng(#pids)]
        local w = p:write_protected(pid)
        H.vstamp(w, pid, "s" .. round)
        w:commit()
      end
      local i = p:info()
      assert.is_true(i.protected_pages <= 1.1 * i.protected_count,
        ("%d physical pages for %d protected pages"):format(i.protected_pages, i.protected_count))
    end
    p = H.reopen(p, path)
    local i = p:info()
    assert.is_true(i.protected_pages <= 1.1 * i.protected_count,
      ("%d physical pages for %d protected pages after reopen"):format(i.protected_pages, i.protected_count))
  end)

  it("leak nothing over 1,000 rewrites of the same protected pages", function()
    local p, path = H.create({ page_size = P })
    local pids = {}
    for i = 1, 40 do pids[i] = p:alloc_protected() end
    for _, pid in ipairs(pids) do H.pset(p, pid, content("first" .. pid)) end
    local used0, count0 = used(p), p:page_count()
    local n = 0
    for round = 1, 500 do                           -- 500 single-page commits
      local pid = pids[1 + round % #pids]
      H.pset(p, pid, "rewrite " .. round)
      n = n + 1
      if round % 50 == 0 then
        assert.are.equal(used0, used(p), "pages in use after " .. n .. " rewrites")
      end
    end
    for round = 1, 50 do                            -- 50 transactions of 10 rewrites
      p:transaction(function()
        for k = 1, 10 do
          local pid = pids[1 + (round * 10 + k) % #pids]
          p:write_protected(pid):write(0, "tx rewrite " .. round)
          n = n + 1
        end
      end)
      assert.are.equal(used0, used(p), "pages in use after " .. n .. " rewrites")
    end
    assert.are.equal(1000, n)
    assert.are.equal(count0, p:page_count(), "the file did not grow")
    p = H.reopen(p, path)
    assert.are.equal(used0, used(p))
  end)

  it("are given back by free_protected: free_count returns to what it was", function()
    local p = H.create({ page_size = P })
    local pids = {}
    for i = 1, 10 do pids[i] = p:alloc_protected() end
    local n, f0 = p:page_count(), p:free_count()
    for _, pid in ipairs(pids) do H.pset(p, pid, content("x" .. pid)) end
    assert.are.equal(n, p:page_count(), "no growth")
    local fw = p:free_count()
    assert.is_true(fw <= f0 - 10, ("free_count %d before the writes, %d after"):format(f0, fw))
    for _, pid in ipairs(pids) do p:free_protected(pid) end
    assert.is_true(p:free_count() >= fw + 10,
      ("free_count %d after the writes, %d after the frees"):format(fw, p:free_count()))
    assert.are.equal(0, p:info().protected_pages)
  end)

  it("add up: page_count = free + regular + protected_pages + system", function()
    local p, path = setup()
    local function check()
      local i = p:info()
      assert.are.equal(i.page_count,
        i.free_count + i.regular_count + i.protected_pages + i.system_count,
        ("page_count %d, free %d, regular %d, protected_pages %d, system %d"):format(
          i.page_count, i.free_count, i.regular_count, i.protected_pages, i.system_count))
    end
    check()
    for i = 1, 30 do H.pset(p, p:alloc_protected(), content("more" .. i)) end
    check()
    p:alloc_bulk(20)
    p:free_protected(2)
    check()
    p = H.reopen(p, path)
    check()
  end)
end)

describe("protected and regular pages together", function()
  after_each(H.cleanup)

  it("leave regular page bytes untouched by protected traffic", function()
    local p, path = H.create({ page_size = P })
    local ids = p:alloc_bulk(30)
    for _, id in ipairs(ids) do H.stamp(p, id, "reg") end
    local pids = {}
    for i = 1, 30 do pids[i] = p:alloc_protected() end
    for round = 1, 5 do
      for _, pid in ipairs(pids) do H.pset(p, pid, content(round .. "/" .. pid)) end
      p:free_protected(pids[round])
      pids[round] = p:alloc_protected()
    end
    for _, id in ipairs(ids) do assert.is_true(H.stamp_ok(p, id, "reg"), "page " .. id) end
    assert.are.same(ids, H.page_list(p))
    p = H.reopen(p, path)
    for _, id in ipairs(ids) do assert.is_true(H.stamp_ok(p, id, "reg"), "page " .. id) end
  end)

  it("never hand out a page holding protected content as a regular page", function()
    local p, path = H.create({ page_size = P })
    local pids = {}
    for i = 1, 20 do
      pids[i] = p:alloc_protected()
      H.pset(p, pids[i], content("keep" .. i))
    end
    for i = 1, 20, 3 do H.pset(p, pids[i], content("keep" .. i)) end   -- old copies freed
    local ids = p:alloc_bulk(p:free_count() + 200)
    for _, id in ipairs(ids) do p:page(id):fill(0xEE) end
    for i, pid in ipairs(pids) do
      assert.are.equal(content("keep" .. i), p:protected(pid):read(), "pid " .. pid)
    end
    p = H.reopen(p, path)
    for i, pid in ipairs(pids) do
      assert.are.equal(content("keep" .. i), p:protected(pid):read(), "pid " .. pid)
    end
  end)

  it("refuse to view or free the physical page of a protected page as a regular page", function()
    local p, path = H.create({ page_size = P })
    local pid = p:alloc_protected()
    H.pset(p, pid, content("find me"))
    local where = H.find_pages(path, P, content("find me"):sub(1, 16))
    assert.are.equal(1, #where, "the protected page is in the file once")
    refused(p, "page", function() p:page(where[1]) end)
    refused(p, "free", function() p:free(where[1]) end)
    refused(p, "free_bulk", function() p:free_bulk({ where[1] }) end)
    assert.are.equal(content("find me"), p:protected(pid):read())
  end)

  it("keep pages() and protected_pages() apart", function()
    local p = H.create({ page_size = P })
    local ids = p:alloc_bulk(5)
    for i = 1, 7 do H.pset(p, p:alloc_protected(), "x" .. i) end
    assert.are.same(ids, H.page_list(p))
    assert.are.same({ 0, 1, 2, 3, 4, 5, 6 }, H.pid_list(p))
    assert.are.equal(5, p:info().regular_count)
    assert.are.equal(7, p:info().protected_count)
  end)
end)

describe("protected pages across reopen", function()
  after_each(H.cleanup)

  it("keep allocs, writes and frees through many reopens, reusing the lowest free pid (a model)", function()
    local p, path = H.create({ page_size = P })
    local rng = H.rng(2024)
    local live, limit = {}, 0          -- live: pid -> tag, or false for zeros

    local function lowest(excluded)
      for pid = 0, limit - 1 do
        if live[pid] == nil and not excluded[pid] then return pid end
      end
      return limit
    end
    local function alloc(excluded)
      local want = lowest(excluded)
      local pid = p:alloc_protected()
      assert.are.equal(want, pid, "alloc_protected hands out the lowest free pid")
      live[pid] = false
      if pid >= limit then limit = pid + 1 end
    end
    local function pick()
      local ks = H.sorted_keys(live)
      return ks[rng(#ks)]
    end
    local function write(pid, tag, in_tx)
      local w = p:write_protected(pid)
      H.vstamp(w, pid, tag)
      if not in_tx or rng(2) == 1 then w:commit() end
      live[pid] = tag
    end
    local function copy(t) local c = {} for k, v in pairs(t) do c[k] = v end return c end

    for round = 1, 30 do
      for step = 1, 4 + rng(6) do
        local r = rng(10)
        local tag = ("r%ds%d"):format(round, step)
        if r <= 3 or next(live) == nil then alloc({})
        elseif r <= 5 then
          local pid = pick(); p:free_protected(pid); live[pid] = nil
        elseif r <= 8 then write(pick(), tag)
        else                                        -- a transaction of several ops
          local saved, saved_limit, freed = copy(live), limit, {}
          local tx = p:begin()
          for k = 1, 2 + rng(5) do
            local q = rng(3)
            if q == 1 or next(live) == nil then alloc(freed)
            elseif q == 2 then
              local pid = pick(); p:free_protected(pid); live[pid] = nil; freed[pid] = true
            else write(pick(), tag .. "t" .. k, true) end
          end
          if rng(4) == 1 then
            tx:rollback()
            live, limit = saved, saved_limit
          else
            tx:commit()
          end
        end
      end
      p = H.reopen(p, path)
      assert.are.same(H.sorted_keys(live), H.pid_list(p), "pids after round " .. round)
      assert.are.equal(#H.sorted_keys(live), p:info().protected_count)
      for pid, tag in pairs(live) do
        local v = p:protected(pid)
        if tag then
          assert.is_true(H.vstamp_ok(v, pid, tag), ("pid %d holds %s"):format(pid, tag))
        else
          assert.are.equal(ZEROS, v:read(), ("pid %d reads zeros"):format(pid))
        end
      end
      assert.is_true(p:check())
    end
    assert.is_true(limit > 5)
  end)
end)

describe("a read-only pager", function()
  after_each(H.cleanup)

  local function ro_setup()
    local p, path, pids, ids = setup()
    p:close()
    return H.open(path, { readonly = true }), path, pids, ids
  end

  it("reads and lists protected pages", function()
    local r, _, pids, ids = ro_setup()
    setup_ok(r, pids, ids)
    assert.are.same(pids, H.pid_list(r))
    assert.are.equal(4, r:info().protected_count)
    assert.are.equal(3, r:info().protected_pages)
  end)

  local mutations = {
    { "alloc_protected", function(r) r:alloc_protected() end },
    { "free_protected", function(r, pids) r:free_protected(pids[1]) end },
    { "write_protected", function(r, pids) r:write_protected(pids[1]) end },
  }

  for _, m in ipairs(mutations) do
    it("refuses " .. m[1] .. " and leaves the file unchanged", function()
      local r, path, pids, ids = ro_setup()
      local st = H.pstate(r)
      local before = H.read_file(path)
      H.raises_with({ m[1], "read" }, m[2], r, pids)
      assert.are.same(st, H.pstate(r))
      assert.are.equal(before, H.read_file(path))
      setup_ok(r, pids, ids)
    end)
  end
end)

describe("100,000 protected pages", function()
  after_each(H.cleanup)

  it("fit in one file, allocated in one transaction, and survive reopen", function()
    local N = 100000
    local p, path = H.create({ page_size = P })
    local last = p:transaction(function()
      local pid
      for _ = 1, N do pid = p:alloc_protected() end
      return pid
    end)
    assert.are.equal(N - 1, last)
    local written = { 0, 1, 777, 4095, 50000, 65535, 65536, N - 1 }
    p:transaction(function()
      for _, pid in ipairs(written) do H.vstamp(p:write_protected(pid), pid, "big") end
    end)
    p = H.reopen(p, path)
    local i = p:info()
    assert.are.equal(N, i.protected_count)
    assert.are.equal(N, i.pid_limit)
    assert.are.equal(#written, i.protected_pages)
    assert.is_true(i.page_count < N // 4,
      i.page_count .. " pages: unwritten protected pages take no physical page")
    local is_written = {}
    for _, pid in ipairs(written) do
      is_written[pid] = true
      assert.is_true(H.vstamp_ok(p:protected(pid), pid, "big"), "pid " .. pid)
    end
    local rng = H.rng(3)
    for _ = 1, 500 do
      local pid = rng(N) - 1
      if not is_written[pid] then
        assert.are.equal(ZEROS, p:protected(pid):read(), "pid " .. pid)
      end
    end
    local n = 0
    for _ in p:protected_pages() do n = n + 1 end
    assert.are.equal(N, n)
    p:free_protected(54321)
    assert.are.equal(54321, p:alloc_protected())
    assert.are.equal(N, p:alloc_protected())
    assert.is_true(p:check())
  end)
end)

describe("damage on disk to the pages a protected commit wrote", function()
  after_each(H.cleanup)

  -- Commit content("before") into a protected page, then content("after"),
  -- and close.  Returns path, pid, the state before the last commit.
  local function history()
    local p, path = H.create({ page_size = P })
    local ids = p:alloc_bulk(3)
    for _, id in ipairs(ids) do H.stamp(p, id) end
    local pid = p:alloc_protected()
    local other = p:alloc_protected()
    H.pset(p, other, content("bystander"))
    H.pset(p, pid, content("before"))
    p:set_root(11)
    local S1 = H.pstate(p)
    H.pset(p, pid, content("after"))
    local S2 = H.pstate(p)
    assert(S2.txn == S1.txn + 1)
    p:close()
    return path, pid, S1, S2, other
  end

  -- Overwrite bytes [from, from+len) of every page of the file that starts
  -- with the marker of content(tag); returns the original bytes.
  local function damage(path, tag, from, len)
    local where = H.find_pages(path, P, content(tag):sub(1, 16))
    assert.is_true(#where >= 1, "the page written for " .. tag .. " is in the file")
    local saved = {}
    for k, pg in ipairs(where) do
      local old = H.read_at(path, pg * P + from, len)
      saved[k] = { pg * P + from, old }
      local g = H.garbage(len, 99 + k)          -- xor with odd bytes: every byte changes
      H.write_at(path, pg * P + from, (old:gsub("()(.)", function(i, c)
        return string.char(c:byte() ~ (g:byte(i) | 1))
      end)))
    end
    return saved
  end

  local function restore(path, saved)
    for _, s in ipairs(saved) do H.write_at(path, s[1], s[2]) end
  end

  for _, mode in ipairs({ "read-only", "writable" }) do
    it("makes open fall back to the previous commit (" .. mode .. ")", function()
      local path, pid, S1, _, other = history()
      damage(path, "after", 100, 200)
      local p = H.open(path, mode == "read-only" and { readonly = true } or nil)
      assert.is_true(p:info().recovered)
      assert.are.same(S1, H.pstate(p))
      assert.are.equal(content("before"), p:protected(pid):read())
      assert.are.equal(content("bystander"), p:protected(other):read())
    end)
  end

  it("makes open fall back whatever part of the page is damaged", function()
    local path, pid, S1 = history()
    local clean = H.read_file(path)
    for _, range in ipairs({ { 0, 1 }, { 16, 8 }, { 500, 1 }, { P - 1, 1 }, { 0, P } }) do
      damage(path, "after", range[1], range[2])
      local p = H.open(path, { readonly = true })
      assert.are.same(S1, H.pstate(p), "damage at " .. range[1])
      assert.are.equal(content("before"), p:protected(pid):read())
      p:close()
      H.write_file(path, clean)
    end
  end)

  it("does not matter when only the copy the latest commit replaced is damaged", function()
    local path, pid, _, S2 = history()
    damage(path, "before", 0, P)
    local p = H.open(path, { readonly = true })
    assert.are.same(S2, H.pstate(p))
    assert.are.equal(content("after"), p:protected(pid):read())
  end)

  it("stays at the previous commit after a writer fell back, even once the page is repaired", function()
    local path, pid, S1 = history()
    local saved = damage(path, "after", 100, 200)
    local p = H.open(path)
    assert.is_true(p:info().recovered)
    p:close()
    restore(path, saved)
    p = H.open(path)
    local st = H.pstate(p)
    assert.are.equal(S1.txn, st.txn)
    assert.are.same(S1.pids, st.pids)
    assert.are.equal(content("before"), p:protected(pid):read())
  end)

  it("lets a writer that fell back commit again, and the new commits win on reopen", function()
    local path, pid, S1, _, other = history()
    damage(path, "after", 0, 64)
    local p = H.open(path)
    assert.are.equal(S1.txn, p:info().txn)
    H.pset(p, pid, content("continued"))
    p:set_root(12)
    local q = p:alloc_protected()
    local before_last = H.pstate(p)
    H.pset(p, q, content("new page"))
    local st = H.pstate(p)
    p = H.reopen(p, path)
    assert.is_false(p:info().recovered)
    assert.are.same(st, H.pstate(p))
    assert.are.equal(content("continued"), p:protected(pid):read())
    assert.are.equal(content("bystander"), p:protected(other):read())
    -- a second loss of the same kind falls back to the continued state
    p:close()
    damage(path, "new page", 300, 10)
    p = H.open(path)
    assert.is_true(p:info().recovered)
    assert.are.same(before_last, H.pstate(p))
    assert.are.equal(content("continued"), p:protected(pid):read())
    assert.are.equal(ZEROS, p:protected(q):read())
    assert.are.equal(12, p:root())
  end)
end)

describe("damage on disk to the page table", function()
  after_each(H.cleanup)

  -- Root fields of the page table (docs/FORMAT.md, "Root slots").
  local PT_PAGE, PT_CRC = 72, 76

  -- A file whose last two commits are protected writes, each changing more
  -- page-table entries than a root carries (64, docs/FORMAT.md), so each
  -- writes a page-table tree of its own and each root names its own top
  -- page.  Returns path, S1 (previous), S2 (latest), the root slot of each
  -- and the pids.
  local function history()
    local p, path = H.create({ page_size = P })
    local pids, N = {}, 80
    p:transaction(function()
      for i = 1, N do pids[i] = p:alloc_protected() end
    end)
    local function rewrite_all(second)
      p:transaction(function()
        for i = 1, N do
          local w = p:write_protected(pids[i])
          w:write(0, i == 2 and content(second) or content("t-first"))
        end
      end)
    end
    rewrite_all("t-second")
    local S1, slot1 = H.pstate(p), p:info().root_slot
    rewrite_all("t-third")
    local S2, slot2 = H.pstate(p), p:info().root_slot
    p:close()
    assert(slot1 ~= slot2)
    return path, S1, S2, slot1, slot2, pids
  end

  local function table_page(path, slot)
    local pg = H.u32(path, slot * P + PT_PAGE)
    assert.is_true(pg > 1, "root slot " .. slot .. " names a page-table page")
    return pg
  end

  it("names a distinct top page-table page in each root after protected commits", function()
    local path, _, _, slot1, slot2 = history()
    assert.are_not.equal(table_page(path, slot1), table_page(path, slot2))
  end)

  it("makes open fall back when the newest page-table page is damaged", function()
    local path, S1, _, _, slot2, pids = history()
    H.flip(path, table_page(path, slot2) * P + 40)
    for _, opts in ipairs({ { readonly = true }, {} }) do
      local p = H.open(path, opts)
      assert.is_true(p:info().recovered)
      assert.are.same(S1, H.pstate(p))
      assert.are.equal(content("t-second"), p:protected(pids[2]):read())
      p:close()
    end
  end)

  it("makes open fall back when the newest root records a wrong page-table checksum", function()
    local path, S1, _, _, slot2 = history()
    local crc = H.u32(path, slot2 * P + PT_CRC)
    H.forge_root(path, P, slot2, PT_CRC, string.pack("<I4", crc ~ 1))
    local p = H.open(path, { readonly = true })
    assert.is_true(p:info().recovered)
    assert.are.same(S1, H.pstate(p))
  end)

  it("does not matter when only the older root's page-table page is damaged", function()
    local path, _, S2, slot1 = history()
    H.flip(path, table_page(path, slot1) * P + 40)
    local p = H.open(path, { readonly = true })
    assert.are.same(S2, H.pstate(p))
  end)

  it("makes open fail with 'corrupt' when the page tables of both roots are damaged", function()
    local path, _, _, slot1, slot2 = history()
    local a, b = table_page(path, slot1), table_page(path, slot2)
    H.flip(path, a * P + 40)
    H.flip(path, b * P + 40)
    H.fails_with("corrupt", mp.open(path, { readonly = true }))
    H.fails_with("corrupt", mp.open(path))
    H.assert_open_survives(path)
  end)
end)

describe("page-table entries carried in the root", function()
  after_each(H.cleanup)

  local PT_TREE, PT_NDELTA = 80, 88   -- root fields (docs/FORMAT.md)

  it("lets a small protected commit write no page-table page", function()
    local p, path = H.create({ page_size = P })
    local pid = p:alloc_protected()
    H.pset(p, pid, content("carried"))
    local slot = p:info().root_slot
    p:close()
    assert.are.equal(0, H.u64(path, slot * P + PT_TREE))        -- no tree yet
    assert.are.equal(1, H.u32(path, slot * P + PT_NDELTA))      -- the entry rides in the root
    local q = H.open(path)
    assert.are.equal(content("carried"), q:protected(pid):read())
  end)

  it("falls back to the previous commit when a carried entry is damaged", function()
    local p, path = H.create({ page_size = P })
    local pid = p:alloc_protected()
    H.pset(p, pid, content("first"))
    local before = H.pstate(p)
    H.pset(p, pid, content("second"))
    local slot = p:info().root_slot
    p:close()
    H.flip(path, slot * P + P - 24 + 9)   -- inside the last carried entry's page number
    local q = H.open(path, { readonly = true })
    assert.is_true(q:info().recovered)
    assert.are.same(before, H.pstate(q))
    assert.are.equal(content("first"), q:protected(pid):read())
  end)

  it("moves the entries into the tree when more change than a root carries", function()
    local p, path = H.create({ page_size = P })
    p:transaction(function()
      for _ = 1, 100 do p:alloc_protected() end
    end)
    local slot = p:info().root_slot
    p:close()
    assert.are.equal(100, H.u64(path, slot * P + PT_TREE))
    assert.are.equal(0, H.u32(path, slot * P + PT_NDELTA))
    local q = H.open(path)
    assert.are.equal(100, q:info().protected_count)
    assert.is_true(q:check())
  end)
end)
