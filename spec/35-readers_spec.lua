-- spec/35-readers: readers beside a writer (docs/API.md, "Readers beside a
-- writer"), and files of format version 1.
--
-- A reader (mp.open(path, {readonly = true})) shows one committed
-- transaction, whatever the writer commits meanwhile, until refresh();
-- the writer never hands out a page a live reader's snapshot reaches (it
-- keeps it "held" until no reader is that old); a reader that dies, even
-- by SIGKILL, releases its hold with nothing to clean up; a writer that
-- dies leaves readers working, and the next writer still keeps their
-- pages.  Multi-process stress with random kills: spec/37.

local H = require "helpers"
local mp = H.mp

local SCHEMA = "record account { name: char[12]; balance: i64 }"

-- A file with a records table, a B-tree, a heap value, a protected page
-- and a few regular pages, all holding generation g of their contents.
local function build(path)
  local w = H.create({ page_size = 1024 }, path)
  local t = assert(mp.records.open(w, "accounts", SCHEMA))
  local bt = assert(mp.btree.open(w, "index"))
  local heap = assert(mp.heap.open(w, "blobs"))
  local objs = {}
  w:transaction(function()
    for i = 1, 20 do t:insert{ name = "acct" .. i, balance = 100 } end
    for i = 1, 40 do bt:put(("k%03d"):format(i), "v1-" .. i) end
    objs.ref = heap:put(("a"):rep(3000))
    objs.pid = assert(w:alloc_protected())
    w:write_protected(objs.pid):pack(0, "<i8", 1)
    objs.ids = assert(w:alloc_bulk(3))
    for _, id in ipairs(objs.ids) do w:page(id):write(0, "regular") end
  end)
  return w, t, bt, heap, objs
end

-- Generation g of the writer's changes: every object changes, pages are
-- freed and allocated.
local function change(w, t, bt, heap, objs, g)
  w:transaction(function()
    for i = 1, 20 do t:update(i, { balance = 100 + g }) end
    for i = 1, 40, 2 do bt:delete(("k%03d"):format(i)) end
    for i = 1, 40, 2 do bt:put(("k%03d"):format(i), ("v%d-%d"):format(g, i)) end
    objs.ref = heap:replace(objs.ref, (string.char(96 + g)):rep(3000))
    w:write_protected(objs.pid):pack(0, "<i8", g)
    w:free(table.remove(objs.ids, 1))
    local id = assert(w:alloc())
    objs.ids[#objs.ids + 1] = id
  end)
end

-- What a pager shows of generation g (g = 1: as built).
local function shows(p, objs_of_g, g)
  local t = assert(mp.records.open(p, "accounts", SCHEMA))
  local bt = assert(mp.btree.open(p, "index"))
  local heap = assert(mp.heap.open(p, "blobs"))
  for i = 1, 20 do
    assert.are.equal(g == 1 and 100 or 100 + g, t:field(i, "balance"))
  end
  assert.are.equal(("v%d-1"):format(g), bt:get("k001"))
  assert.are.equal("v1-2", bt:get("k002"))
  assert.are.equal(40, bt:count())
  assert.are.equal((g == 1 and "a" or string.char(96 + g)):rep(3000), heap:get(objs_of_g.ref))
  assert.are.equal(g, (p:protected(objs_of_g.pid):unpack(0, "<i8")))
  assert.are.same(objs_of_g.pages, H.page_list(p))
  assert.is_true(p:check())
end

-- What a reader of the writer's state now must see of objs.
local function snapshot_of(w, objs)
  return { ref = objs.ref, pid = objs.pid, pages = H.page_list(w) }
end

describe("a reader beside a writer", function()
  after_each(H.cleanup)

  it("shows one committed state while the writer commits, and the newest after refresh", function()
    local path = H.path()
    local w, t, bt, heap, objs = build(path)
    local s1 = snapshot_of(w, objs)
    local r = H.open(path, { readonly = true })
    local txn1 = r:info().txn
    local rt = assert(mp.records.open(r, "accounts", SCHEMA))   -- a handle kept across refreshes
    for g = 2, 6 do
      change(w, t, bt, heap, objs, g)
      shows(r, s1, 1)                       -- still the snapshot, every object
      assert.are.equal(txn1, r:info().txn)
      assert.are.equal(100, rt:field(3, "balance"))
    end
    assert.is_true(r:refresh())
    assert.are.equal(w:info().txn, r:info().txn)
    shows(r, snapshot_of(w, objs), 6)
    assert.are.equal(106, rt:field(3, "balance"))
    assert.are.equal(0, r:info().barriers)   -- a reader issues no barrier
    r:close()
    w:close()
  end)

  it("never lets the writer reuse a page the snapshot reaches, and frees it once the reader moves on", function()
    local path = H.path()
    local w, _, _, _, objs = build(path)
    local r = H.open(path, { readonly = true })
    local free_before = w:free_count()
    -- every rewrite of the protected page frees its previous copy
    for g = 2, 30 do
      local wr = w:write_protected(objs.pid)
      wr:pack(0, "<i8", g)
      assert(wr:commit())
      assert.are.equal(1, (r:protected(objs.pid):unpack(0, "<i8")))
    end
    assert.are.equal(29, w:info().held_count)
    assert.is_true(w:free_count() <= free_before)
    assert.is_true(w:check())
    assert.is_true(r:check())
    -- held pages are neither free nor in use: the counts still add up
    local i = w:info()
    assert.are.equal(i.page_count, i.free_count + i.regular_count + i.system_count
      + i.protected_pages + i.held_count + i.pending_count)
    assert(r:refresh())
    assert.are.equal(30, (r:protected(objs.pid):unpack(0, "<i8")))
    w:set_root(w:root())                    -- the next commit frees them
    assert.are.equal(0, w:info().held_count)
    assert.are.equal(free_before + 0, w:free_count() - 0)
    r:close()
    w:close()
  end)

  it("counts the readers and their oldest snapshot in info() and lists them in readers()", function()
    local path = H.path()
    local w = build(path)
    assert.are.equal(0, w:info().readers)
    assert.is_nil(w:info().oldest_reader)
    local r1 = H.open(path, { readonly = true })
    local t1 = r1:info().txn
    w:set_root(1)
    local r2 = H.open(path, { readonly = true })
    local r3 = H.open(path, { readonly = true })   -- the same snapshot as r2
    local t2 = r2:info().txn
    assert.is_true(t2 > t1)
    assert.are.equal(2, w:info().readers)
    assert.are.equal(t1, w:info().oldest_reader)
    assert.are.same({ t1, t2 }, w:readers())
    assert.are.same({ t1, t2 }, r1:readers())   -- a reader lists itself too
    assert.are.equal(2, r3:info().readers)
    r1:close()
    assert.are.same({ t2 }, w:readers())
    assert.are.equal(t2, w:info().oldest_reader)
    r2:close()
    assert.are.same({ t2 }, w:readers())        -- r3 holds it still
    r3:close()
    assert.are.same({}, w:readers())
    w:close()
  end)

  it("refreshes to nothing new without change, kills views of pages gone, and is a no-op on a writer", function()
    local path = H.path()
    local w, _, _, _, objs = build(path)
    local r = H.open(path, { readonly = true })
    local txn = r:info().txn
    local v = r:page(objs.ids[1])
    assert.is_true(r:refresh())               -- nothing committed since
    assert.are.equal(txn, r:info().txn)
    assert.are.equal("regular", v:read(0, 7))
    w:free(objs.ids[1])
    assert.are.equal("regular", v:read(0, 7)) -- the snapshot still has it
    assert.are.equal(1, w:info().held_count)
    H.raises_with({ "not allocated" }, w.free, w, objs.ids[1])   -- held: a double free
    assert.is_true(w:check())
    assert.is_true(r:refresh())
    assert.is_false(v:alive())
    H.raises(function() v:read(0, 1) end)
    H.raises(function() r:page(objs.ids[1]) end)
    assert.is_true(w:refresh())               -- a writer: nothing to do
    r:close()
    H.raises(function() r:refresh() end)
    w:close()
  end)

  it("keeps its snapshot when the writer is killed, and the next writer keeps the reader's pages", function()
    local path = H.path()
    local w, _, _, _, objs = build(path)
    local pid = objs.pid
    w:close()
    local r = H.open(path, { readonly = true })
    local out = H.path("writer.txt")
    local child = H.spawn_bg(([[
local mp = require "mappedpages"
io.stdout:setvbuf("no")
local w = assert(mp.open(%q))
local deadline = os.time() + 60   -- never outlives a spec that failed before killing it
for g = 2, math.maxinteger do
  if os.time() > deadline then break end
  local wr = w:write_protected(%d)
  wr:pack(0, "<i8", g)
  assert(wr:commit())
  if g == 40 then print("committed 40") end
end]]):format(path, pid), out)
    finally(function() H.kill9(child) end)
    H.wait_output(out, "committed 40")
    H.kill9(child)
    H.wait_gone(child)
    assert.are.equal(1, (r:protected(pid):unpack(0, "<i8")))
    -- a new writer finds the held pages on disk and keeps them
    local w2 = H.open(path)
    assert.is_true(w2:info().held_count >= 39)
    assert.is_true(w2:check())
    for g = 1, 50 do
      local wr = w2:write_protected(pid)
      wr:pack(0, "<i8", -g)
      assert(wr:commit())
    end
    assert.are.equal(1, (r:protected(pid):unpack(0, "<i8")))
    assert.is_true(r:check())
    assert(r:refresh())
    assert.are.equal(-50, (r:protected(pid):unpack(0, "<i8")))
    w2:set_root(5)
    assert.are.equal(0, w2:info().held_count)
    r:close()
    w2:close()
  end)

  it("releases its snapshot when killed with SIGKILL, with nothing to clean up", function()
    local path = H.path()
    local w, _, _, _, objs = build(path)
    local out = H.path("reader.txt")
    local child = H.spawn_bg(([[
local mp = require "mappedpages"
io.stdout:setvbuf("no")
local r = assert(mp.open(%q, { readonly = true }))
print("holding " .. r:info().txn)
for _ = 1, 60 do os.execute("sleep 1") end]]):format(path), out)
    finally(function() H.kill9(child) end)
    H.wait_output(out, "holding")
    assert.are.equal(1, w:info().readers)
    for g = 2, 10 do
      local wr = w:write_protected(objs.pid)
      wr:pack(0, "<i8", g)
      assert(wr:commit())
    end
    assert.are.equal(9, w:info().held_count)
    H.kill9(child)
    H.wait_gone(child)
    assert.are.equal(0, w:info().readers)
    w:set_root(3)
    assert.are.equal(0, w:info().held_count)
    assert.is_true(w:check())
    w:close()
  end)
end)

describe("a file of format version 1", function()
  after_each(H.cleanup)

  -- spec/fixtures/v1.mp was written by the version-1 code (see
  -- spec/fixtures/make_v1.lua for what it holds)
  local function fixture()
    local path = H.path("v1.mp")
    H.copy("spec/fixtures/v1.mp", path)
    return path
  end

  local function holds_v1_content(p, keys)
    for i, id in ipairs({ 8, 9, 10 }) do
      assert.are.equal(string.char(64 + i):rep(100), p:page(id):read(0, 100))
    end
    local t = assert(mp.records.open(p, "players", "record player { name: char[16]; score: i32 = 7 }"))
    assert.are.same({ name = "ada", score = 3 }, t:get(1))
    assert.are.same({ name = "bob", score = 7 }, t:get(2))
    local bt = assert(mp.btree.open(p, "index"))
    assert.are.equal(keys or 50, bt:count())
    assert.are.equal("value17", bt:get("key017"))
    local heap = assert(mp.heap.open(p, "blobs"))
    assert.are.equal(("x"):rep(3000), heap:get(1310723))
    assert.is_true(p:check())
  end

  it("opens read-only and for writing, and becomes version 2 at its first commit", function()
    local path = fixture()
    assert.are.equal(1, H.u32(path, H.ROOT.version))
    local r = H.open(path, { readonly = true })
    assert.are.equal(60, r:info().txn)
    holds_v1_content(r)
    r:close()
    local w = H.open(path)
    holds_v1_content(w)
    local bt = assert(mp.btree.open(w, "index"))
    assert(bt:put("key051", "value51"))
    local slot = w:info().root_slot
    w:close()
    assert.are.equal(2, H.u32(path, slot * 1024 + H.ROOT.version))
    local again = H.open(path)
    holds_v1_content(again, 51)
    assert.are.equal("value51", assert(mp.btree.open(again, "index")):get("key051"))
    again:close()
  end)
end)
