-- spec/15-windows_spec.lua -- windows (view:sub(off, len)) of page views,
-- protected views, writers and windows; view:alive(); pager:in_transaction();
-- and private writers that commit only the bytes they changed over the
-- page's current content (two users of one protected page lose nothing of
-- each other).  The misuse fuzzer (spec/13) makes windows too.

local H = require "helpers"
local mp = H.mp
local core = require "mappedpages.core"

-- What tostring shows of bytes: hex pairs, and text with dots for the rest.
local function hex(s) return (s:gsub(".", function(c) return (" %02x"):format(c:byte()) end):sub(2)) end
local function text(s) return (s:gsub("[^\32-\126]", ".")) end

local P = 1024                  -- small pages keep loops and file scans quick
local OFF, LEN = 16, 40         -- the window most tests make

-- A page's worth of bytes that differ from position to position.
local function pattern(tag)
  local t = {}
  for i = 1, P do t[i] = string.char((i * 7 + #tag * 13) % 251 + 1) end
  return table.concat(t)
end

-- A pager with one regular page and one protected page of known content.
local function setup()
  local p, path = H.create({ page_size = P })
  local id = p:alloc()
  p:page(id):write(0, pattern("regular"))
  local pid = p:alloc_protected()
  local w = p:write_protected(pid)
  w:write(0, pattern("protected"))
  assert(w:commit())
  return p, path, id, pid
end

-- The kinds of object a window can be made from: { name, writable,
-- make(p, id, pid) -> the object (the window's parent) }; a "window of ..."
-- kind is a window (at 100, 600 bytes long) of the kind before it.
local held = {}                 -- transactions the tests keep open
local BASE_KINDS = {
  { "a page view", true, function(p, id) return p:page(id) end },
  { "a protected view", false, function(p, _, pid) return p:protected(pid) end },
  { "a private writer", true, function(p, _, pid) return p:write_protected(pid) end },
  { "a writer made in a transaction", true, function(p, _, pid)
      held[#held + 1] = p:begin()
      return p:write_protected(pid)
    end },
}
local KINDS = {}
for _, k in ipairs(BASE_KINDS) do
  KINDS[#KINDS + 1] = k
  KINDS[#KINDS + 1] = { "a window of " .. k[1], k[2], function(...)
    return k[3](...):sub(100, 600)
  end }
end

describe("a window", function()
  after_each(function()
    held = {}
    H.cleanup()
  end)

  for _, k in ipairs(KINDS) do
    local kind, writable, make = k[1], k[2], k[3]

    it("of " .. kind .. " shows bytes [off, off + len) of it with every method, offsets relative to it", function()
      local p, _, id, pid = setup()
      local parent = make(p, id, pid)
      local before = parent:read()
      local w = parent:sub(OFF, LEN)
      assert.are.equal(getmetatable(parent), getmetatable(w))
      assert.are.equal(LEN, #w)
      assert.are.equal(parent:id(), w:id())
      assert.is_true(w:alive())
      -- read, unpack
      assert.are.equal(before:sub(OFF + 1, OFF + LEN), w:read())
      assert.are.equal(before:sub(OFF + 4, OFF + LEN), w:read(3))
      assert.are.equal(before:sub(OFF + 4, OFF + 8), w:read(3, 5))
      assert.are.equal("", w:read(LEN))
      local a, b, nxt = w:unpack(4, "<i4 c3")
      local wa, wb = string.unpack("<i4 c3", before, OFF + 5)
      assert.are.same({ wa, wb, 11 }, { a, b, nxt })
      -- sub of the window: relative to it
      local ww = w:sub(4, 8)
      assert.are.equal(8, #ww)
      assert.are.equal(before:sub(OFF + 5, OFF + 12), ww:read())
      if not writable then
        H.raises_with({ "'write'", "read-only" }, function() w:write(0, "x") end)
        H.raises_with({ "'fill'", "read-only" }, function() w:fill(0) end)
        H.raises_with({ "'pack'", "read-only" }, function() w:pack(0, "i4", 1) end)
        H.raises_with({ "'write'", "read-only" }, function() ww:write(0, "x") end)
        assert.are.equal(before, parent:read())
        return
      end
      -- write, fill, pack land in the parent at off + the window's offset
      assert.are.equal(w, w:write(2, "abc"))
      assert.are.equal("abc", parent:read(OFF + 2, 3))
      assert.are.equal(w, w:fill(0x41, 10, 4))
      assert.are.equal("AAAA", parent:read(OFF + 10, 4))
      assert.are.equal(27, w:pack(20, "<i4 z", -7, "hi"))
      local n, s, after = parent:unpack(OFF + 20, "<i4 z")
      assert.are.same({ -7, "hi", OFF + 27 }, { n, s, after })
      assert.are.same({ -7, "hi", 27 }, { w:unpack(20, "<i4 z") })
      ww:write(0, "XY")                      -- at 4 of w
      assert.are.equal("XY", w:read(4, 2))
      w:fill(0x5a, 36)                       -- to the end of the window, and no further
      -- nothing outside the window changed
      local now = parent:read()
      assert.are.equal(before:sub(1, OFF), now:sub(1, OFF))
      assert.are.equal(before:sub(OFF + LEN + 1), now:sub(OFF + LEN + 1))
      assert.are.equal(string.rep("Z", 4), w:read(36))
      w:fill(0)
      assert.are.equal(string.rep("\0", LEN), parent:read(OFF, LEN))
    end)

    it("of " .. kind .. " raises outside itself, for every method, with messages about the window", function()
      local p, _, id, pid = setup()
      local parent = make(p, id, pid)
      local w = parent:sub(OFF, LEN)
      local before = parent:read()
      local OUT = "offset 41 is out of range (window of 40 bytes)"
      H.raises_with({ "'read'", OUT }, w.read, w, 41)
      H.raises_with({ "'read'", "offset -1 is out of range" }, w.read, w, -1)
      H.raises_with({ "'read'", "length 41 is out of range (40 bytes from offset 0 to the end of the window)" },
        w.read, w, 0, 41)
      H.raises_with({ "'read'", "length 11 is out of range (10 bytes from offset 30" }, w.read, w, 30, 11)
      H.raises_with({ "'unpack'", OUT }, w.unpack, w, 41, "b")
      H.raises_with({ "'unpack'", "window too short (8 bytes at offset 36, window of 40 bytes)" },
        w.unpack, w, 36, "<i8")
      H.raises_with({ "'sub'", OUT }, w.sub, w, 41, 0)
      H.raises_with({ "'sub'", "length 41 is out of range" }, w.sub, w, 0, 41)
      H.raises_with({ "'sub'", "length 1 is out of range" }, w.sub, w, 40, 1)
      H.raises_with({ "'sub'", "offset -1" }, w.sub, w, -1, 1)
      H.raises_with("'sub'", w.sub, w, 2.5, 1)
      H.raises_with("'sub'", w.sub, w, "x", 1)
      H.raises_with("'sub'", w.sub, w)
      H.raises_with("'sub'", w.sub, w, 0, -1)
      -- a parent's bounds are the parent's: the window's sub sees only the window
      H.raises_with("'sub'", w.sub, w, LEN + 1)
      -- the window stops z strings and length prefixes at its end
      if writable then
        parent:write(OFF + LEN, "\0")        -- a zero just past the window
        w:fill(0x61)                         -- and none in it
        H.raises_with({ "'unpack'", "unfinished string" }, w.unpack, w, 0, "z")
        w:pack(30, "B", 200)                 -- a length prefix past the window
        H.raises_with({ "'unpack'", "window too short" }, w.unpack, w, 30, "s1")
        before = parent:read()
        H.raises_with({ "'write'", OUT }, w.write, w, 41, "")
        H.raises_with({ "'write'", "3 bytes do not fit at offset 38 of a 40-byte window" }, w.write, w, 38, "abc")
        H.raises_with({ "'fill'", OUT }, w.fill, w, 0, 41)
        H.raises_with({ "'fill'", "length 11 is out of range" }, w.fill, w, 0, 30, 11)
        H.raises_with({ "'fill'", "byte" }, w.fill, w, 256)
        H.raises_with({ "'pack'", OUT }, w.pack, w, 41, "b", 1)
        H.raises_with({ "'pack'", "data does not fit in window (8 bytes at offset 36, window of 40 bytes)" },
          w.pack, w, 36, "<i8", 1)
        -- nothing of a pack is written unless all of it fits
        H.raises_with({ "'pack'", "does not fit in window" }, w.pack, w, 30, "<i4 i8", 1, 2)
        H.raises_with({ "'pack'", "does not fit in window" }, w.pack, w, 30, "z", "0123456789")
        assert.are.equal(before, parent:read())
      end
      -- at the very end: len 0 is allowed everywhere
      assert.are.equal("", w:read(40))
      assert.are.equal("", w:read(40, 0))
      local empty = w:sub(40, 0)
      assert.are.equal(0, #empty)
      assert.are.equal("", empty:read())
      assert.are.equal(0, #w:sub(40))
      assert.are.equal(0, #w:sub(0, 0))
      assert.are.equal(LEN, #w:sub(0))
      H.raises_with("out of range (window of 0 bytes)", empty.read, empty, 1)
      H.raises_with("'unpack'", empty.unpack, empty, 0, "b")
      if writable then
        assert.are.equal(w, w:write(40, ""))
        assert.are.equal(w, w:fill(0, 40))
        assert.are.equal(40, w:pack(40, ""))
        assert.are.equal(empty, empty:write(0, ""))
        H.raises_with("'write'", empty.write, empty, 0, "x")
        assert.are.equal(before, parent:read())
      end
    end)
  end

  it("can be as large as its parent, and a window of a window of a window adds the offsets", function()
    local p, _, id = setup()
    local v = p:page(id)
    local whole = v:sub(0, P)
    assert.are.equal(P, #whole)
    assert.are.equal(v:read(), whole:read())
    local a = v:sub(100, 500)
    local b = a:sub(50, 200)
    local c = b:sub(10, 20)
    assert.are.equal(v:read(160, 20), c:read())
    c:write(0, "deep")
    assert.are.equal("deep", v:read(160, 4))
    assert.are.equal("deep", a:read(60, 4))
    assert.are.equal("deep", b:read(10, 4))
    assert.are.equal("mappedpages.View: page " .. id .. " [160, 180) (20 bytes) | 64 65 65 70 "
                     .. hex(v:read(164, 4)) .. " ... |deep" .. text(v:read(164, 4)) .. "|", tostring(c))
    H.raises_with("'sub'", v.sub, v, 0, P + 1)
    H.raises_with("'sub'", v.sub, v, P + 1)
    assert.are.equal(0, #v:sub(P, 0))
  end)

  it("aligns pack and unpack ('!' and 'X') from its own first byte", function()
    local p, _, id = setup()
    local v = p:page(id)
    v:fill(0)
    local w = v:sub(3, 40)
    assert.are.equal(8, w:pack(1, "!4 b i4", 1, 2))     -- 1 byte, 2 padding, then 4 at 4
    assert.are.same({ 1, 2, 8 }, { w:unpack(1, "!4 b i4") })
    assert.are.same({ 1, 2, 9 }, { string.unpack("!4 b i4", w:read(), 2) })
    assert.are.equal(2, (string.unpack("<i4", v:read(), 3 + 4 + 1)))
  end)

  it("of a read-only pager's page view refuses writes like the view, and reads", function()
    local p, path, id = setup()
    p:close()
    local r = H.open(path, { readonly = true })
    local v = r:page(id)
    local w = v:sub(OFF, LEN)
    assert.are.equal(pattern("regular"):sub(OFF + 1, OFF + LEN), w:read())
    H.raises_with({ "'write'", "pager is read-only" }, w.write, w, 0, "x")
    H.raises_with({ "'fill'", "pager is read-only" }, w.fill, w, 0)
    H.raises_with({ "'pack'", "pager is read-only" }, w.pack, w, 0, "b", 1)
    H.raises_with("pager is read-only", w:sub(1, 2).write, w:sub(1, 2), 0, "x")
    assert.are.equal(pattern("regular"), v:read())
  end)

  it("of a protected view refuses writes with the view's message", function()
    local p, _, _, pid = setup()
    local pv = p:protected(pid)
    local w = pv:sub(0, 8)
    local function msg(f) return select(2, pcall(f)):match("%((.*)%)$") end
    assert.are.equal(msg(function() pv:write(0, "x") end), msg(function() w:write(0, "x") end))
    H.raises_with("protected view is read-only: use pager:write_protected", w.fill, w, 0)
  end)

  it("of a protected view shows the current content at each access", function()
    local p, _, _, pid = setup()
    local w = p:protected(pid):sub(8, 8)
    local wr = p:write_protected(pid)
    wr:write(8, "newbytes")
    assert.are.equal(pattern("protected"):sub(9, 16), w:read())
    wr:commit()
    assert.are.equal("newbytes", w:read())
    local tx = p:begin()
    p:write_protected(pid):write(8, "in a txn")
    assert.are.equal("in a txn", w:read())
    tx:rollback()
    assert.are.equal("newbytes", w:read())
  end)
end)

describe("a window of a writer", function()
  after_each(H.cleanup)

  it("is a mappedpages.Writer whose commit commits its writer", function()
    local p, path, _, pid = setup()
    local wr = p:write_protected(pid)
    local a, b = wr:sub(0, 24), wr:sub(24, 8)
    assert.are.equal("mappedpages.Writer", getmetatable(a).__name)
    a:write(0, "first")
    b:write(0, "second")
    assert.is_true(b:commit())
    for _, x in ipairs({ wr, a, b }) do
      assert.is_false(x:alive())
      H.raises_with({ "dead writer", "committed" }, x.read, x)
      H.raises_with("dead writer", x.commit, x)
    end
    local pv = p:protected(pid)
    assert.are.equal("first", pv:read(0, 5))
    assert.are.equal("second", pv:read(24, 6))
    p = H.reopen(p, path)
    assert.are.equal("second", p:protected(pid):read(24, 6))
  end)

  it("discards its writer with discard", function()
    local p, _, _, pid = setup()
    local wr = p:write_protected(pid)
    local a = wr:sub(8, 8)
    a:write(0, "dropped!")
    assert.is_true(a:discard())
    for _, x in ipairs({ wr, a }) do
      assert.is_false(x:alive())
      H.raises_with({ "dead writer", "discarded" }, x.read, x)
    end
    assert.are.equal(pattern("protected"), p:protected(pid):read())
  end)

  it("made in a transaction writes the transaction's copy, and its commit only ends the writer", function()
    local p, path, _, pid = setup()
    local tx = p:begin()
    local wr = p:write_protected(pid)
    local a = wr:sub(100, 10)
    a:write(0, "txn bytes!")
    assert.are.equal("txn bytes!", p:protected(pid):read(100, 10))
    assert.are.equal("mappedpages.Writer: protected page " .. pid .. " [100, 110) (in transaction)"
                     .. " | 74 78 6e 20 62 79 74 65 ... |txn byte|", tostring(a))
    assert.is_true(a:commit())
    assert.is_false(wr:alive())
    assert.is_true(tx:commit())
    p = H.reopen(p, path)
    assert.are.equal("txn bytes!", p:protected(pid):read(100, 10))
  end)
end)

describe("a window dies with its parent", function()
  after_each(H.cleanup)

  -- every window must be dead, say so when used, and print "(dead)"
  local function all_dead(ws, words)
    for _, w in ipairs(ws) do
      assert.is_false(w:alive())
      H.raises_with(words or "dead", w.read, w)
      H.raises_with(words or "dead", w.sub, w, 0, 0)
      assert.is_truthy(tostring(w):find("(dead)", 1, true), tostring(w))
    end
  end

  it("when its page is freed", function()
    local p, _, id = setup()
    local v = p:page(id)
    local w = v:sub(OFF, LEN)
    local ww = w:sub(1, 2)
    p:free(id)
    all_dead({ v, w, ww }, { "dead view", "page " .. id .. " was freed" })
    p:alloc()                                -- the id again: still dead (ABA)
    all_dead({ w, ww })
  end)

  it("when its protected page is freed, and a private writer's window can no longer commit", function()
    local p, _, _, pid = setup()
    local pw = p:protected(pid):sub(0, 8)
    local wr = p:write_protected(pid)
    local a = wr:sub(0, 8)
    p:free_protected(pid)
    all_dead({ pw }, "protected page " .. pid)
    assert.is_true(a:alive())                -- a private buffer: alive, but
    a:write(0, "x")
    H.raises_with({ "'commit'", "freed since the writer was made" }, a.commit, a)
    assert.is_true(a:discard())
  end)

  it("when the allocation of its page is rolled back", function()
    local p = setup()
    local tx = p:begin()
    local id = p:alloc()
    local w = p:page(id):sub(0, 8)
    w:write(0, "rolled")
    tx:rollback()
    all_dead({ w })
  end)

  it("raises while the open transaction has freed its page, and works again after rollback", function()
    local p, _, id = setup()
    local w = p:page(id):sub(OFF, LEN)
    local tx = p:begin()
    p:free(id)
    assert.is_false(w:alive())
    H.raises_with("the open transaction freed", w.read, w)
    tx:rollback()
    assert.is_true(w:alive())
    assert.are.equal(pattern("regular"):sub(OFF + 1, OFF + LEN), w:read())
  end)

  it("when its pager is closed, and alive() still answers", function()
    local p, _, id, pid = setup()
    local ws = { p:page(id):sub(0, 8), p:protected(pid):sub(0, 8), p:write_protected(pid):sub(0, 8) }
    ws[4] = ws[1]:sub(1, 2)
    p:close()
    all_dead(ws, "pager is closed")
    for _, w in ipairs(ws) do assert.is_false(w:alive()) end
  end)

  it("when its writer's transaction ends, by commit or by rollback", function()
    local p, _, _, pid = setup()
    for _, ending in ipairs({ "commit", "rollback" }) do
      local tx = p:begin()
      local wr = p:write_protected(pid)
      local a = wr:sub(0, 8)
      local b = a:sub(2, 2)
      tx[ending](tx)
      all_dead({ wr, a, b }, "its transaction ended")
    end
  end)

  it("when its writer is committed or discarded", function()
    local p, _, _, pid = setup()
    for _, ending in ipairs({ "commit", "discard" }) do
      local wr = p:write_protected(pid)
      local a = wr:sub(0, 8)
      wr[ending](wr)
      all_dead({ a }, ending == "commit" and "committed" or "discarded")
    end
  end)
end)

describe("closing or collecting a window", function()
  after_each(H.cleanup)

  it("ends only the window: its view, writer and sibling windows keep working", function()
    local p, _, id, pid = setup()
    local v = p:page(id)
    local sibling = v:sub(0, 4)
    local keep
    do
      local w <close> = v:sub(OFF, LEN)
      keep = w
    end
    assert.is_false(keep:alive())
    H.raises_with("dead window (it was closed)", keep.read, keep)
    assert.are.equal("mappedpages.View: page " .. id .. " [16, 56) (dead)", tostring(keep))
    assert.is_true(v:alive())
    assert.are.equal(pattern("regular"):sub(1, 4), sibling:read())
    -- a writer's window: <close> does not discard the writer
    local wr = p:write_protected(pid)
    do
      local a <close> = wr:sub(0, 8)
      a:write(0, "kept!")
    end
    assert.is_true(wr:alive())
    assert.is_true(wr:commit())
    assert.are.equal("kept!", p:protected(pid):read(0, 5))
  end)

  it("of a window leaves the windows made from it alive (they hang on the root)", function()
    local p, _, id = setup()
    local v = p:page(id)
    local a = v:sub(100, 100)
    local b = a:sub(10, 10)
    do local _ <close> = a end
    assert.is_false(a:alive())
    assert.is_true(b:alive())
    assert.are.equal(v:read(110, 10), b:read())
  end)

  it("collected, ends nothing else, and the parent still dies when its page is freed", function()
    local p, _, id, pid = setup()
    local v = p:page(id)
    local wr = p:write_protected(pid)
    for _ = 1, 100 do
      v:sub(1, 2):write(0, "ab")
      wr:sub(1, 2):write(0, "cd")
    end
    collectgarbage()
    collectgarbage()
    assert.are.equal("ab", v:read(1, 2))
    assert.is_true(wr:alive())
    assert.is_true(wr:commit())
    assert.are.equal("cd", p:protected(pid):read(1, 2))
    p:free(id)
    assert.is_false(v:alive())
  end)

  it("keeps a parent nobody else holds alive, view and writer alike", function()
    local p, _, id, pid = setup()
    local w = p:page(id):sub(OFF, LEN)       -- the view is garbage at once
    local a = p:write_protected(pid):sub(8, 8)
    local pw = p:protected(pid):sub(8, 4)
    collectgarbage()
    collectgarbage()
    assert.is_true(w:alive())
    w:write(0, "still here")
    assert.are.equal("still here", p:page(id):read(OFF, 10))
    a:write(0, "orphaned")
    assert.is_true(a:commit())
    assert.are.equal("orphaned", p:protected(pid):read(8, 8))
    assert.are.equal("orph", pw:read())
    p:free(id)                               -- and the page still kills it
    assert.is_false(w:alive())
  end)

  it("keeps the pager alive through its view, until the window is collected too", function()
    local path = H.path()
    local w = (function()
      local q = assert(mp.create(path, { page_size = P }))   -- not tracked: only w holds it
      local id = q:alloc()
      q:page(id):write(0, "held")
      return q:page(id):sub(0, 4)
    end)()
    collectgarbage()
    collectgarbage()
    assert.is_true(w:alive())
    assert.are.equal("held", w:read())
    H.fails_with("locked", H.try_open(path))   -- still open
    w = nil                                  -- luacheck: ignore 311
    collectgarbage()
    collectgarbage()
    local q = H.open(path)                   -- the collector closed it
    assert.are.equal("held", q:page(q:pages()(q)):read(0, 4))
  end)
end)

describe("a private writer's commit", function()
  after_each(H.cleanup)

  it("keeps another private writer's changes to other bytes of the page (no lost update), across reopen", function()
    local p, path, _, pid = setup()
    local a = p:write_protected(pid)
    local b = p:write_protected(pid)
    a:write(0, "AAAA")
    b:write(500, "BBBB")
    assert.is_true(a:commit())
    assert.is_true(b:commit())
    local want = "AAAA" .. pattern("protected"):sub(5, 500) .. "BBBB" .. pattern("protected"):sub(505)
    assert.are.equal(want, p:protected(pid):read())
    p = H.reopen(p, path)
    assert.are.equal(want, p:protected(pid):read())
  end)

  it("of windows writes only the span written: two objects of a slab sharing a page", function()
    local p, path, _, pid = setup()
    local one = p:write_protected(pid):sub(0, 64)
    local two = p:write_protected(pid):sub(64, 64)
    one:pack(0, "<i8 z", 1, "object one")
    two:pack(0, "<i8 z", 2, "object two")
    two:fill(0x7e, 40, 24)
    assert.is_true(two:commit())              -- in either order
    assert.is_true(one:commit())
    local pv = p:protected(pid)
    assert.are.same({ 1, "object one", 19 }, { pv:unpack(0, "<i8 z") })
    assert.are.same({ 2, "object two", 83 }, { pv:unpack(64, "<i8 z") })
    assert.are.equal(string.rep("~", 24), pv:read(104, 24))
    assert.are.equal(pattern("protected"):sub(129), pv:read(128))
    p = H.reopen(p, path)
    pv = p:protected(pid)
    assert.are.same({ 1, "object one", 19 }, { pv:unpack(0, "<i8 z") })
    assert.are.same({ 2, "object two", 83 }, { pv:unpack(64, "<i8 z") })
  end)

  it("with nothing written still commits (one durable transaction) and keeps the current content", function()
    local p, _, _, pid = setup()
    local idle = p:write_protected(pid)
    local other = p:write_protected(pid)
    other:write(0, "other's bytes")
    other:commit()
    local txn, barriers = p:info().txn, H.barriers(p)
    assert.is_true(idle:commit())
    assert.are.equal(txn + 1, p:info().txn)
    assert.are.equal(barriers + 1, H.barriers(p))
    assert.are.equal("other's bytes", p:protected(pid):read(0, 13))
  end)

  it("gives bytes both writers changed to the last commit", function()
    local p, _, _, pid = setup()
    local a = p:write_protected(pid)
    local b = p:write_protected(pid)
    a:write(10, "aaaaaaaaaa")
    b:write(15, "bbbbbbbbbb")
    b:commit()
    a:commit()
    assert.are.equal("aaaaaaaaaabbbbb", p:protected(pid):read(10, 15))
  end)

  it("takes the whole span from its lowest to its highest written byte from its own copy", function()
    local p, _, _, pid = setup()
    local a = p:write_protected(pid)
    local b = p:write_protected(pid)
    a:write(0, "<")
    a:write(200, ">")
    b:write(100, "between")
    b:commit()
    a:commit()
    assert.are.equal(pattern("protected"):sub(101, 107), p:protected(pid):read(100, 7))
    assert.are.equal("<", p:protected(pid):read(0, 1))
  end)

  it("does not count a pack that raised as a change", function()
    local p, _, _, pid = setup()
    local a = p:write_protected(pid)
    local b = p:write_protected(pid)
    H.raises(a.pack, a, P - 4, "<i8", 1)
    b:write(P - 4, "last")
    b:commit()
    a:write(0, "first")
    a:commit()
    assert.are.equal("last", p:protected(pid):read(P - 4, 4))
    assert.are.equal("first", p:protected(pid):read(0, 5))
  end)

  it("joins a transaction begun since the writer was made, over that transaction's content", function()
    local p, path, _, pid = setup()
    local a = p:write_protected(pid)
    a:write(0, "private")
    local tx = p:begin()
    p:write_protected(pid):write(700, "txn")
    assert.is_true(a:commit())
    assert.are.equal("private", p:protected(pid):read(0, 7))
    assert.are.equal("txn", p:protected(pid):read(700, 3))
    assert.is_true(tx:commit())
    p = H.reopen(p, path)
    assert.are.equal("private", p:protected(pid):read(0, 7))
    assert.are.equal("txn", p:protected(pid):read(700, 3))
  end)

  it("that fails leaves the writer alive and its bytes as they were", function()
    local p, _, _, pid = setup()
    local a = p:write_protected(pid)
    local b = p:write_protected(pid)
    b:write(300, "committed by b")
    b:commit()
    a:write(0, "mine")
    local mine = a:read()
    core._inject_fault("barrier", "eio")
    local ok, r = pcall(function() return table.pack(a:commit()) end)
    core._inject_fault(nil)
    assert(ok, r)
    H.fails_with("io", r[1], r[2], r[3])
    assert.is_true(a:alive())
    assert.are.equal(mine, a:read())
    assert.is_true(a:discard())
  end)
end)

describe("view:alive()", function()
  after_each(H.cleanup)

  it("is true while a view, writer or window can be used and false once it cannot, without raising", function()
    local p, _, id, pid = setup()
    local v, pv, wr = p:page(id), p:protected(pid), p:write_protected(pid)
    local objs = { v, pv, wr, v:sub(0, 1), pv:sub(0, 1), wr:sub(0, 1) }
    for _, x in ipairs(objs) do assert.is_true(x:alive()) end
    wr:discard()
    assert.is_false(wr:alive())
    assert.is_false(objs[6]:alive())
    p:free(id)
    assert.is_false(v:alive())
    assert.is_false(objs[4]:alive())
    assert.is_true(pv:alive())
    p:close()
    for _, x in ipairs(objs) do assert.is_false(x:alive()) end
  end)

  it("raises only for something that is not a view", function()
    local p, _, id = setup()
    local v = p:page(id)
    H.raises_with({ "'alive'", "mappedpages.View expected" }, v.alive, p)
    H.raises_with("'alive'", v.alive, 5)
    local wr = p:write_protected(p:alloc_protected())
    H.raises_with({ "'alive'", "mappedpages.Writer expected" }, wr.alive, v)
  end)
end)

describe("pager:in_transaction()", function()
  after_each(H.cleanup)

  it("is false outside a transaction and a number of its own inside each", function()
    local p = setup()
    assert.is_false(p:in_transaction())
    local seen = {}
    for _ = 1, 3 do
      local tx = p:begin()
      local n = p:in_transaction()
      assert.are.equal("integer", math.type(n))
      assert.is_nil(seen[n])
      seen[n] = true
      assert.are.equal(n, p:in_transaction())  -- the same while it lasts
      p:alloc()
      assert.are.equal(n, p:in_transaction())
      tx:commit()
      assert.is_false(p:in_transaction())
    end
    local inner = p:transaction(function() return p:in_transaction() end)
    assert.are.equal("integer", math.type(inner))
    assert.is_nil(seen[inner])
    assert.is_false(p:in_transaction())
    do
      local _ <close> = p:begin()
      assert.is_truthy(p:in_transaction())
    end
    assert.is_false(p:in_transaction())
    local tx = p:begin()
    tx:rollback()
    assert.is_false(p:in_transaction())
  end)

  it("has a twin for hot paths, core._txn_seq, that gives nil on a closed pager instead of raising", function()
    local p = setup()
    assert.is_false(core._txn_seq(p))
    local tx = p:begin()
    assert.are.equal(p:in_transaction(), core._txn_seq(p))
    tx:rollback()
    assert.is_false(core._txn_seq(p))
    p:close()
    assert.is_nil(core._txn_seq(p))
    H.raises_with("_txn_seq", core._txn_seq, 5)
  end)

  it("is false after a failed commit, and on a read-only pager", function()
    local p, path = setup()
    local tx = p:begin()
    p:set_root(5)
    core._inject_fault("barrier", "eio")
    local ok, err = pcall(tx.commit, tx)
    core._inject_fault(nil)
    assert(ok, err)
    assert.is_false(p:in_transaction())
    p:close()
    local r = H.open(path, { readonly = true })
    assert.is_false(r:in_transaction())
  end)

  it("lets a module join the open transaction or make its own, caching a writer per transaction", function()
    local p, _, _, pid = setup()
    local cache = {}
    local function writer()
      local t = p:in_transaction()
      if not t then return p:write_protected(pid), true end      -- private: commit it
      if not cache[t] then cache[t] = p:write_protected(pid) end
      return cache[t], false
    end
    local w, own = writer()
    assert.is_true(own)
    w:write(0, "alone")
    w:commit()
    p:transaction(function()
      local a = writer()
      local b = writer()
      assert.are.equal(a, b)
      a:write(0, "joined")
    end)
    assert.are.equal("joined", p:protected(pid):read(0, 6))
  end)

  it("raises on a closed pager, like other pager methods", function()
    local p = setup()
    p:close()
    H.raises_with({ "'in_transaction'", "closed" }, p.in_transaction, p)
  end)
end)

describe("tostring of a window", function()
  after_each(H.cleanup)

  it("previews a live view's first bytes in hex and as text, and a short one whole", function()
    local p, _, id = setup()
    local v = p:page(id)
    v:write(0, "hi\0\127\255 there")
    assert.are.equal(("mappedpages.View: page %d (%d bytes) | 68 69 00 7f ff 20 74 68 ... |hi... th|")
                     :format(id, P), tostring(v))
    assert.are.equal(("mappedpages.View: page %d [0, 2) (2 bytes) | 68 69 |hi|"):format(id),
                     tostring(v:sub(0, 2)))
    assert.are.equal(("mappedpages.View: page %d [3, 3) (0 bytes)"):format(id), tostring(v:sub(3, 0)))
  end)

  it("is one line naming its type, page, span of the page and state", function()
    local p, _, id, pid = setup()
    local w = p:page(id):sub(OFF, LEN)
    local function head(view) return " | " .. hex(view:read(0, 8)) .. " ... |" .. text(view:read(0, 8)) .. "|" end
    assert.are.equal(("mappedpages.View: page %d [16, 56) (40 bytes)"):format(id) .. head(w), tostring(w))
    assert.are.equal(("mappedpages.View: page %d [20, 30) (10 bytes)"):format(id) .. head(w:sub(4, 10)),
                     tostring(w:sub(4, 10)))
    local pv = p:protected(pid):sub(0, 8)
    assert.are.equal(("mappedpages.View: protected page %d [0, 8) (8 bytes) | %s |%s|")
                     :format(pid, hex(pv:read()), text(pv:read())), tostring(pv))
    local wr = p:write_protected(pid)
    local a = wr:sub(0, 24)
    assert.are.equal(("mappedpages.Writer: protected page %d [0, 24) (private)"):format(pid) .. head(a),
                     tostring(a))
    wr:discard()
    assert.are.equal(("mappedpages.Writer: protected page %d [0, 24) (dead)"):format(pid), tostring(a))
    p:free(id)
    assert.are.equal(("mappedpages.View: page %d [16, 56) (dead)"):format(id), tostring(w))
    for _, s in ipairs({ tostring(w), tostring(a) }) do
      assert.is_nil(s:find("\n", 1, true))
    end
  end)
end)
