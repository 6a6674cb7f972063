--- mappedpages.slab: many small objects in one named object of the file.
--
--     local s = assert(mp.slab.open(pager, "objects"))  -- opens or creates
--     local ref = s:alloc(100)        -- 100 zero bytes; ref: a positive integer
--     s:write(ref, 0, "hello")        -- offsets are 0-based
--     print(s:read(ref, 0, 5), s:size(ref))   --> hello  100
--     local refs = s:alloc_bulk(10, 24)       -- all-or-nothing
--     s:free_bulk(refs)
--     for r, size in s:objects() do print(r, size) end   -- ascending refs
--     s:free(ref)
--     mp.slab.drop(pager, "objects")
--
-- Objects are transactional like protected pages: every mutating call joins
-- the open transaction or is a durable transaction of its own, and a
-- rollback restores them. A handle caches nothing mutable (only the size
-- classes, fixed when the slab is made, and which table is the open
-- transaction's cache, checked against its number at each call): every
-- call reads the file, or the open transaction's mirror of it (see "the
-- transaction's mirror" below; it holds the writes of the page headers
-- until the commit), which dies with the transaction; so after a rollback every handle shows
-- the rolled-back slab, and two handles of one name see each other's
-- changes at once.
--
-- Size classes. From the page size P, with a page header of H = 52 bytes
-- and a 2-byte entry per slot, a page of class slot size s holds
-- n(s) = floor((P - H) / (s + 2)) slots. The classes are a chain: after
-- class c (0 before the first), the next slot size is the largest s with
-- 4 * (c + 1) >= 3 * s (so no size wastes more than a quarter of its
-- slot); stretched to floor((P - H) / n) - 2 (the slot that fills the page
-- at the same n) when the rule allows; otherwise, when s fills less than
-- 90% of the page and the slot that fits one more per page still covers
-- c + 1, that one. The last class has one slot per page: max_size() =
-- P - H - 2. (22 classes for 1 KiB pages, 27 for 4 KiB, 37 for 64 KiB.)
--
-- Layout. The anchor (the object's protected page from the catalog):
--
--     0   8 bytes  magic "mpslab1\0"
--     8   u32      page size
--     12  u16      classes
--     14  u16      page header size (52)
--     16  u32      pages: slab pages, the anchor not counted
--     20  u32      page list head: pid + 1 of the newest page (0: none)
--     24  8 bytes  zero
--     32  class records, 32 bytes each:
--         0  u32  slot size         4  u16  slots per page   6  u16  zero
--         8  u32  partial list head (pid + 1)
--         12 u32  deferred list head (pid + 1)
--         16 i8   deferred stamp: the transaction that last deferred a page
--         24 u32  deferred list tail (pid + 1)
--         28 u32  pages of the class
--
-- A slab page (a protected page); the fields a call reads or writes
-- together share a 64-bit word, so that it reads and writes them at once:
--
--     0   u32  magic "mpsb"           4   u32  owner: the anchor's pid
--     8   u8   class (0-based)        9   u8   zero
--     10  u16  slots
--     12  u16  used: live objects     14  u16  fresh: slots [fresh, slots) never used
--     16  u16  free list head (slot + 1; 0: empty)
--     18  u16  bytes: the sum of the live objects' sizes
--     20  u16  pending list head      22  u16  pending list tail
--     24  u16  pending count          26  u16  zero
--     28  i8   pending stamp: the transaction that freed the pending slots
--     36  u32  class list prev        40  u32  class list next   (pid + 1)
--     44  u32  page list prev         48  u32  page list next    (pid + 1)
--     52  u16 entries, one per slot, then the slots, from 52 + 2 * slots
--
-- An entry is 0x8000 | (slot size - object size) for a live object (the
-- slack is below a quarter of the slot, so below 0x4000), and for a free
-- slot the next slot + 1 of its list (0 at the end). Fresh slots' entries
-- are 0. A ref is pid * 65536 + slot + 1 (pid < 2^32 - 1). Every byte of a
-- slot outside its live object is zero.
--
-- Freed slots are zeroed and go to the page's pending list, stamped with
-- the number of the transaction that freed them (access.txn_number); a
-- later transaction moves the pending list to the free list as a whole, so
-- a ref freed in transaction N is handed out again no earlier than N + 1.
-- An alloc takes the head page of its class's partial list; a page that
-- has no usable slot left in this transaction leaves that list: when it is
-- full, to no list, otherwise (its free slots are pending) to the class's
-- deferred list, which the next transaction that allocates from the class
-- or defers a page of it puts back in front of the partial list at once
-- (O(1): both lists are doubly linked and the deferred list has a tail).
-- So an alloc and a free are O(1), and usually change one page: the
-- page's own header and entry (objects and bytes are counted per page,
-- not in the anchor; stats() adds them up). A page whose last object is freed leaves
-- every list and goes back to the pager in the same transaction (the core
-- hands its pid out again from the next one). The page list links all
-- pages, for objects(), stats(), check() and drop().
--
-- s:view(ref) and s:writer(ref) are windows (view:sub) of the object's
-- bytes in its page; they die with the page, and are valid until the
-- object is freed (a window does not know when that happens).
--
-- Failures. An operation that can fail for the environment (a full disk:
-- a new page, or the first write of a page in a transaction, which copies
-- it) first allocates every page and takes every writer it will need, and
-- writes afterwards, so a failure changes nothing. alloc_bulk and
-- free_bulk do the same for all their objects at once.
-- @module mappedpages.slab

local access = require "mappedpages.access"
local object = require "mappedpages.object"
local core = require "mappedpages.core"

local error, ipairs, pairs, pcall, setmetatable, tostring, type =
      error, ipairs, pairs, pcall, setmetatable, tostring, type
local mtype, tointeger = math.type, math.tointeger
local format, sunpack, srep =
      string.format, string.unpack, string.rep
local concat, sort, tinsert, unpack = table.concat, table.sort, table.insert, table.unpack
local traceback = debug.traceback

local raise, atomic, writer, view, txn_number, cache_of, before_commit =
      access.raise, access.atomic, access.writer, access.view, access.txn_number, access.cache,
      access.before_commit
local check_handle, check_span = object.check_handle, object.check_span
-- The hot paths call the binding's methods directly (no lookup through
-- the userdata's metatable): views' for the anchor, writers' for pages.
local V_unpack = core._View_methods.unpack
local txn_seq = core._txn_seq
local W_pack, W_fill = core._Writer_methods.pack, core._Writer_methods.fill

local M = {}

local KIND = "slab"

-- Anchor.
local ANCHOR_MAGIC = "mpslab1\0"
local A_PAGES, A_HEAD, A_CLASSES, REC = 16, 20, 32, 32
local ANCHOR_FMT = "<c8 I4 I2 I2 I4 I4"
-- Offsets in a class record: partial head and deferred head (one word),
-- deferred stamp, deferred tail, pages.
local R_HEADS, R_TAIL, R_PAGES = 8, 24, 28
local LISTS_FMT = "<I4 I4 i8 I4 I4"       -- phead, dhead, dstamp, dtail, pages

-- Slab pages.
local PAGE_MAGIC = sunpack("<I4", "mpsb")
local HDR = 52
local P_HOT, P_LINKS = 12, 36
-- magic|owner, class|slots, hot, pending, stamp, class list links
local FULL_FMT = "<i8 I4 i8 i8 i8 i8"
local LIVE = 0x8000
local FILL = 0.9
local MAX_PID = 0xFFFFFFFF                -- pids must stay below it

M.PAGE_HEADER = HDR

-- The two header words (see the layout above).
local function split_hot(A)
  return A & 0xFFFF, (A >> 16) & 0xFFFF, (A >> 32) & 0xFFFF, (A >> 48) & 0xFFFF
end
local function split_pend(B)
  return B & 0xFFFF, (B >> 16) & 0xFFFF, (B >> 32) & 0xFFFF, B >> 48
end

---------------------------------------------------------------------------
-- size classes

--- The size classes of a page size: a list of {slot =, per_page =}.
function M.classes(page_size)
  local U = page_size - HDR
  local maxs = U - 2
  local list, prev = {}, 0
  while prev < maxs do
    local s = (4 * (prev + 1)) // 3
    if s > maxs then s = maxs end
    local n = U // (s + 2)
    local stretch = U // n - 2
    if stretch > maxs then stretch = maxs end
    if 4 * (prev + 1) >= 3 * stretch then
      s = stretch
    elseif n * (s + 2) < FILL * U then
      local smaller = U // (n + 1) - 2
      if smaller >= prev + 1 then s = smaller end
    end
    list[#list + 1] = {slot = s, per_page = U // (s + 2)}
    prev = s
  end
  return list
end

-- Class tables, shared by handles whose anchors hold the same classes
-- (they never change for a slab): {n =, slot = {}, nslots = {}, min = {},
-- data = {} (offset of slot 0), rec = {} (record offset), class_of = {}
-- (class_of[k]: the class of size k, 1 <= k <= max), max =, page_size =}.
local class_cache = setmetatable({}, {__mode = "v"})

--- Read and validate the anchor's class table: a class table, or nil and
-- a problem.
local function load_classes(anchor)
  local size = #anchor
  local magic, psize, n, hdr = anchor:unpack(0, ANCHOR_FMT)
  if magic ~= ANCHOR_MAGIC then return nil, "the anchor has a bad magic" end
  if psize ~= size then
    return nil, format("the anchor says page size %d, the file's is %d", psize, size)
  end
  if hdr ~= HDR then return nil, format("page header size %d, expected %d", hdr, HDR) end
  if n < 1 or n > 255 or A_CLASSES + n * REC > size then
    return nil, format("%d size classes do not fit", n)
  end
  local parts = {anchor:read(0, 16)}
  for c = 1, n do parts[c + 1] = anchor:read(A_CLASSES + (c - 1) * REC, 6) end
  local key = concat(parts)
  local cls = class_cache[key]
  if cls then return cls end
  cls = {n = n, slot = {}, nslots = {}, min = {}, data = {}, rec = {}, page_size = size}
  local prev, class_of = 0, {}
  for c = 1, n do
    local rec = A_CLASSES + (c - 1) * REC
    local slot, nslots = anchor:unpack(rec, "<I4 I2")
    if slot <= prev then return nil, format("class %d: slot size %d does not grow", c, slot) end
    if nslots < 1 or HDR + nslots * (slot + 2) > size then
      return nil, format("class %d: %d slots of %d bytes do not fit a page", c, nslots, slot)
    end
    if 4 * (prev + 1) < 3 * slot then
      return nil, format("class %d: size %d would waste more than a quarter of its %d-byte slot",
                         c, prev + 1, slot)
    end
    cls.slot[c], cls.nslots[c], cls.min[c] = slot, nslots, prev + 1
    cls.data[c], cls.rec[c] = HDR + 2 * nslots, rec
    for k = prev + 1, slot do class_of[k] = c end
    prev = slot
  end
  cls.max = prev
  cls.class_of = class_of
  class_cache[key] = cls
  return cls
end

--- Write a new slab's anchor (page pid, zeroed) inside a transaction.
local function init_anchor(pager, pid)
  local w, msg, code = writer(pager, pid)
  if not w then return nil, msg, code end
  local size = pager:page_size()
  local list = M.classes(size)
  w:pack(0, ANCHOR_FMT, ANCHOR_MAGIC, size, #list, HDR, 0, 0)
  for c, k in ipairs(list) do
    w:pack(A_CLASSES + (c - 1) * REC, "<I4 I2", k.slot, k.per_page)
  end
  return true
end

---------------------------------------------------------------------------
-- argument checks (raise naming the function, at the method's caller)

local Slab = {}
Slab.__index = Slab
Slab.__name = "mappedpages.Slab"

local function what(v)
  if type(v) == "number" then return tostring(v) end
  return type(v)
end

local function bad_size(self, fname, size)
  local max = self.cls.max
  local i = type(size) == "number" and tointeger(size)
  if i and i >= 1 and i <= max then return i end
  raise(fname, 3, "size must be an integer from 1 to %d (got %s)", max, what(size))
end

local function bad_ref(fname, ref)
  local i = type(ref) == "number" and tointeger(ref)
  if i and i > 0 then return i end
  raise(fname, 4, "ref must be a positive integer (got %s)", what(ref))
end

local function not_live(fname, ref)
  raise(fname, 3, "ref %d is not a live object of this slab (freed, or never allocated)", ref)
end

local function check_writable(self, fname)
  if self.readonly then raise(fname, 2, "pager is read-only") end
end

---------------------------------------------------------------------------
-- the transaction's mirror of the header words
--
-- alloc and free read and change a page's header words and entries and
-- their class's list heads on every call; each read or write of the file
-- costs a call into the binding. So each transaction keeps a copy, the
-- mirror, in the transaction's writer cache (access.cache: made anew for
-- every transaction, so a rollback or a failed commit leaves no mirror
-- behind, and every handle of the slab shares it). Mirrored are, for
-- class c, the anchor's heads word (partial head | deferred head << 32)
-- and deferred stamp, and for a page, P = {hot, pending, pending stamp,
-- class links, class|slots, entries, dirty, slots, slot size, data offset
-- - slot size, pid * 65536} (the words at 12, 20, 28, 36 and 8, the
-- page's entries: entries[slot + 1], nil past fresh on a page made in the
-- transaction; dirty: the page's writer, or nil; the rest are constants
-- of the page, so that the hot paths find them in one lookup). A page in
-- the mirror is known to be this slab's page in this transaction (its
-- tag, class and slot count were checked when it was read); a page freed
-- in the transaction leaves the mirror. cur[c] is class c's page that
-- Slab:alloc may take in place: the head of its partial list, dirty, with
-- the deferred list not due (see alloc_work); every change of the class's
-- heads and every flush forget it.
--
-- The links and the anchor's words are written to the file at once, and
-- to the mirror in the same step. A page's hot, pending and stamp words
-- and its entries are written to the mirror only (the page is then
-- dirty; its writer is taken first, so that writing it cannot fail), and
-- to the file before anything reads them there: by the transaction's
-- commit (access.before_commit: inside tx:commit(), before the core
-- commits, so they are part of the same atomic commit), and by every
-- method that reads the file's header words (`sync`). A rollback or a
-- failed commit drops them with the rest of the transaction: nothing to
-- undo.

local function mirror_key(apid) return "slab mirror " .. apid end

local efmts = {}
--- The format of a page's n entries.
local function efmt(n)
  local f = efmts[n]
  if not f then
    f = "<" .. srep("I2", n)
    efmts[n] = f
  end
  return f
end

--- Write the mirror st's dirty pages to the file: true, or nil, msg, code.
local function flush(pager, st)
  local pages, dirty = st.pages, st.dirty
  for i = 1, st.ndirty do
    local pid = dirty[i]
    local P = pages[pid]
    if P and P[7] then
      local w, msg, code = writer(pager, pid)
      if not w then return nil, msg, code end
      local A = P[1]
      local fresh = (A >> 16) & 0xFFFF      -- the entries from fresh on stay 0
      W_pack(w, P_HOT, "<i8 i8 i8", A, P[2], P[3])
      if fresh > 0 then W_pack(w, HDR, efmt(fresh), unpack(P[6], 1, fresh)) end
      P[7] = nil
    end
    dirty[i] = nil
  end
  st.ndirty = 0
  local cur = st.cur                        -- their pages are no longer dirty
  for c in pairs(cur) do cur[c] = nil end
  return true
end

local function mirror_of(self, cache)
  local st = cache[self.mkey]
  if not st then
    local pager, seq = self.pager, cache.seq
    st = {heads = {}, stamps = {}, pages = {}, dirty = {}, ndirty = 0, cur = {},
          pager = pager, seq = seq, cache = cache, T = txn_number(pager, seq),
          class_of = self.cls.class_of}
    cache[self.mkey] = st
    before_commit(pager, self.mkey, function() return flush(pager, st) end, seq)
  end
  return st
end

--- Page pid becomes dirty (see above): w is its writer.
local function dirty(st, pid, P, w)
  P[7] = w
  local n = st.ndirty + 1
  st.ndirty = n
  st.dirty[n] = pid
end

--- Write the open transaction's mirror of this slab to the file, for a
-- method that reads header words or entries there. Raises if that fails
-- (only when memory runs out).
local function sync(self)
  local pager = self.pager
  local seq = txn_seq(pager)
  if not seq then return end
  local st = cache_of(pager, seq)[self.mkey]
  if st and st.ndirty > 0 then
    local ok, msg = flush(pager, st)
    if not ok then error(format("slab %q: %s", self.object_name, msg), 0) end
  end
end

--- Page pid's mirror record P, read through v (a view or a writer); kept
-- in the mirror st (with its entries) when given; nil when pid is not
-- this slab's page, or (given st) its class or slot count is wrong.
local function mirror_page(self, st, v, pid)
  local id, cs, A, B, ps, L = v:unpack(0, FULL_FMT)
  if id ~= self.tag then return nil, id end
  if not st then return {A, B, ps, L, cs} end
  local c, n = (cs & 0xFF) + 1, cs >> 16
  local cls = self.cls
  if c > cls.n or n ~= cls.nslots[c] then return nil, id end
  local slot = cls.slot[c]
  local P = {A, B, ps, L, cs, {v:unpack(HDR, efmt(n))}, nil, n, slot, cls.data[c] - slot,
             pid * 65536}
  st.pages[pid] = P
  return P
end

--- Set page p's (pid + 1) class list prev or next, in the file and the
-- mirror.
local function set_prev(cache, st, p, value)
  cache[p - 1]:pack(P_LINKS, "<I4", value)
  local P = st.pages[p - 1]
  if P then P[4] = (P[4] & ~0xFFFFFFFF) | value end
end

local function set_next(cache, st, p, value)
  cache[p - 1]:pack(P_LINKS + 4, "<I4", value)
  local P = st.pages[p - 1]
  if P then P[4] = (P[4] & 0xFFFFFFFF) | (value << 32) end
end

--- Find a live object. Returns pid, slot, class, size, the page (a writer
-- of this transaction from `cache` if there is one, else a view) and its
-- mirror record P (see above; stored in the mirror st when given). Without
-- a cache, the open transaction's (and its mirror, if it has one) is used.
-- Raises (at the method's caller) for anything but a live object of this
-- slab.
local function locate(self, ref, fname, cache, st)
  if mtype(ref) ~= "integer" or ref <= 0 then ref = bad_ref(fname, ref) end
  local pid, slot = ref >> 16, (ref & 0xFFFF) - 1
  if not cache then
    local seq = txn_seq(self.pager)
    if seq then
      cache = cache_of(self.pager, seq)
      st = cache[self.mkey]
    end
  end
  local v = cache and cache[pid]
  if not v then
    local ok
    ok, v = pcall(view, self.pager, pid)
    if not ok then not_live(fname, ref) end
  end
  local P = st and st.pages[pid]
  if not P then
    local id
    P, id = mirror_page(self, st, v, pid)
    if not P then
      if id == self.tag or id & 0xFFFFFFFF ~= PAGE_MAGIC then not_live(fname, ref) end
      raise(fname, 2, "ref %d belongs to another slab", ref)
    end
  end
  local cs = P[5]
  if slot < 0 or slot >= cs >> 16 then not_live(fname, ref) end
  local E = P[6]
  local e = E and E[slot + 1] or v:unpack(HDR + 2 * slot, "<I2")
  local c = (cs & 0xFF) + 1
  local cls = self.cls
  if e < LIVE or c > cls.n then not_live(fname, ref) end
  return pid, slot, c, cls.slot[c] - (e & 0x7FFF), v, P
end

local function damaged(self, pid, problem)
  error(format("slab %q: page %d is damaged (%s); s:check() lists the problems",
               self.object_name, pid, problem), 0)
end

---------------------------------------------------------------------------
-- writers

-- While a bulk operation runs, the set of pages whose writers it took
-- beforehand: taking any other would break its all-or-nothing promise.
local prepared

local function wr(pager, pid, seq)
  if prepared and not prepared[pid] then
    error(format("slab: internal error: page %d was not prepared for this bulk operation\n%s",
                 pid, traceback()), 0)
  end
  return writer(pager, pid, seq)
end

--- Make sure this transaction has writers of the pages given as pid + 1
-- (0 is skipped): true, or nil, msg, code.
local function need(pager, seq, cache, a, b, c, d, e)
  local w, msg, code
  if a ~= 0 and not cache[a - 1] then
    w, msg, code = wr(pager, a - 1, seq) if not w then return nil, msg, code end
  end
  if b ~= 0 and not cache[b - 1] then
    w, msg, code = wr(pager, b - 1, seq) if not w then return nil, msg, code end
  end
  if c ~= 0 and not cache[c - 1] then
    w, msg, code = wr(pager, c - 1, seq) if not w then return nil, msg, code end
  end
  if d and d ~= 0 and not cache[d - 1] then
    w, msg, code = wr(pager, d - 1, seq) if not w then return nil, msg, code end
  end
  if e and e ~= 0 and not cache[e - 1] then
    w, msg, code = wr(pager, e - 1, seq) if not w then return nil, msg, code end
  end
  return true
end

---------------------------------------------------------------------------
-- the work, inside a transaction (seq = pager:in_transaction(), cache =
-- access.cache(pager, seq))

--- Put class c's deferred list in front of its partial list. Takes every
-- writer the alloc that follows may need (the new head and its next).
local function fold(self, seq, cache, st, c, rec, phead, dhead)
  local pager, anchor = self.pager, self.anchor
  local dtail = anchor:unpack(rec + R_TAIL, "<I4")
  local after = phead
  if dhead ~= dtail then after = view(pager, dhead - 1):unpack(P_LINKS + 4, "<I4") end
  local ok, msg, code = need(pager, seq, cache, self.pid + 1, dtail, phead, dhead, after)
  if not ok then return nil, msg, code end
  set_next(cache, st, dtail, phead)
  if phead ~= 0 then set_prev(cache, st, phead, dtail) end
  local aw = cache[self.pid]
  aw:pack(rec + R_HEADS, "<I4 I4", dhead, 0)
  aw:pack(rec + R_TAIL, "<I4", 0)
  st.heads[c], st.cur[c] = dhead, nil
  return true
end

--- A new page for class c, alone on its (empty) partial list and at the
-- head of the page list: its pid, or nil, msg, code. Takes it from pool
-- (alloc_bulk's pages) when given.
local function new_page(self, seq, cache, st, c, pool)
  local pager, apid, cls = self.pager, self.pid, self.cls
  local pid, msg, code
  if pool then
    pid = pool[#pool]
    if not pid then error("slab: internal error: alloc_bulk's pages ran out", 0) end
    pool[#pool] = nil
  else
    pid, msg, code = pager:alloc_protected()
    if not pid then return nil, msg, code end
    if pid >= MAX_PID then
      access.free_page(pager, pid)
      return nil, format("slab:alloc: protected page %d is past the slab's limit", pid), "full"
    end
  end
  local pages, head = self.anchor:unpack(A_PAGES, "<I4 I4")
  local ok
  ok, msg, code = need(pager, seq, cache, pid + 1, apid + 1, head)
  if not ok then
    if not pool then access.free_page(pager, pid) end
    return nil, msg, code
  end
  local w = cache[pid]
  w:pack(0, "<I4 I4 B B I2", PAGE_MAGIC, apid, c - 1, 0, cls.nslots[c])
  w:pack(P_LINKS, "<I4 I4 I4 I4", 0, 0, 0, head)
  if head ~= 0 then cache[head - 1]:pack(P_LINKS + 8, "<I4", pid + 1) end
  local aw = cache[apid]
  aw:pack(A_PAGES, "<I4 I4", pages + 1, pid + 1)
  local rec = cls.rec[c]
  aw:pack(rec + R_HEADS, "<I4", pid + 1)
  aw:pack(rec + R_PAGES, "<I4", aw:unpack(rec + R_PAGES, "<I4") + 1)
  st.heads[c], st.cur[c] = nil, nil
  -- its mirror record, as mirror_page would read it: the new page is zeros
  -- past the words written above (its entries: none read yet)
  local n, slot = cls.nslots[c], cls.slot[c]
  st.pages[pid] = {0, 0, 0, 0, (c - 1) | (n << 16), {}, nil, n, slot, cls.data[c] - slot,
                   pid * 65536}
  return pid
end

--- Allocate one object of class c and size: its ref, or nil, msg, code.
local function alloc_work(self, seq, c, size, pool, cache, st)
  local pager, cls = self.pager, self.cls
  cache = cache or cache_of(pager, seq)
  st = st or mirror_of(self, cache)
  local rec = cls.rec[c]
  local heads, dstamp = st.heads[c], st.stamps[c]
  if not heads then
    heads, dstamp = V_unpack(self.anchor, rec + R_HEADS, "<i8 i8")
    st.heads[c], st.stamps[c] = heads, dstamp
  end
  local phead, dhead = heads & 0xFFFFFFFF, heads >> 32
  local T = cache.number or txn_number(pager, seq)
  if dhead ~= 0 and dstamp < T then             -- due: back in front of the partial list
    local ok, msg, code = fold(self, seq, cache, st, c, rec, phead, dhead)
    if not ok then return nil, msg, code end
    phead, dhead = dhead, 0
  end
  if phead == 0 then
    local pid, msg, code = new_page(self, seq, cache, st, c, pool)
    if not pid then return nil, msg, code end
    phead = pid + 1
    st.heads[c] = phead | (dhead << 32)     -- (the deferred list is as it was)
  end
  local pid = phead - 1
  local w = cache[pid]
  if not w then
    local msg, code
    w, msg, code = wr(pager, pid, seq)
    if not w then return nil, msg, code end
  end
  local P = st.pages[pid] or mirror_page(self, st, w, pid)
  if not P then damaged(self, pid, "a page of the partial list is not this slab's") end
  if not P[7] then dirty(st, pid, P, w) end
  local A, B, ps, links, E = P[1], P[2], P[3], P[4], P[6]
  local used, fresh, fhead = A & 0xFFFF, (A >> 16) & 0xFFFF, (A >> 32) & 0xFFFF
  local nslots = cls.nslots[c]
  local pc = (B >> 32) & 0xFFFF
  local merged
  if fhead == 0 and fresh >= nslots then
    -- Only pending slots left: those of an earlier transaction become free.
    if pc == 0 or ps >= T then damaged(self, pid, "a page of the partial list has no usable slot") end
    fhead, B, pc, merged = B & 0xFFFF, 0, 0, true
  end
  local slot, nfree
  if fhead ~= 0 then
    slot = fhead - 1
    if slot >= fresh then damaged(self, pid, "free list") end
    nfree = E[fhead]
    if nfree > fresh then damaged(self, pid, "free list") end
  else
    slot, nfree = fresh, 0
    fresh = fresh + 1
  end
  used = used + 1
  if nfree == 0 and fresh >= nslots and not (pc > 0 and ps < T) then
    -- No usable slot left in this transaction: the page leaves the
    -- partial list (its head), for the deferred list unless it is full.
    local cnext = links >> 32
    if links & 0xFFFFFFFF ~= 0 then damaged(self, pid, "class list") end
    local defer = used < nslots
    local ok, msg, code = need(pager, seq, cache, self.pid + 1, cnext, defer and dhead or 0)
    if not ok then return nil, msg, code end
    if cnext ~= 0 then set_prev(cache, st, cnext, 0) end
    local aw = cache[self.pid]
    if defer then
      w:pack(P_LINKS, "<I4 I4", 0, dhead)
      P[4] = dhead << 32
      if dhead ~= 0 then
        set_prev(cache, st, dhead, phead)
      else
        aw:pack(rec + R_TAIL, "<I4", phead)
      end
      aw:pack(rec + R_HEADS, "<I4 I4 i8", cnext, phead, T)
      st.heads[c], st.stamps[c] = cnext | (phead << 32), T
    else
      w:pack(P_LINKS, "<I4 I4", 0, 0)
      P[4] = 0
      aw:pack(rec + R_HEADS, "<I4", cnext)
      st.heads[c] = cnext | (dhead << 32)
    end
    st.cur[c] = nil
  else
    -- the page stays the head of the partial list, and the deferred list
    -- is not due (folded above): Slab:alloc's next call takes it in place
    st.cur[c] = P
  end
  E[slot + 1] = LIVE | (cls.slot[c] - size)
  -- the hot word: used, fresh, free head, bytes + size
  P[1] = used | (fresh << 16) | (nfree << 32) | (((A >> 48) + size) << 48)
  if merged then P[2] = B end
  return pid * 65536 + slot + 1
end

local function alloc_auto(self, c, size)
  return alloc_work(self, self.pager:in_transaction(), c, size)
end

--- Page pid of class c lost its last object: unlink it and free it.
local function release_page(self, seq, cache, st, pid, c)
  local pager, apid = self.pager, self.pid
  local rec = self.cls.rec[c]
  local cprev, cnext, aprev, anext = view(pager, pid):unpack(P_LINKS, "<I4 I4 I4 I4")
  local ok, msg, code = need(pager, seq, cache, apid + 1, cprev, cnext, aprev, anext)
  if not ok then return nil, msg, code end
  ok, msg, code = access.free_page(pager, pid)
  if not ok then return nil, msg, code end
  local aw = cache[apid]
  local p0, d0, ds, t0, pages = aw:unpack(rec + R_HEADS, LISTS_FMT)
  local me = pid + 1
  if cprev ~= 0 then set_next(cache, st, cprev, cnext)
  elseif p0 == me then p0 = cnext
  elseif d0 == me then d0 = cnext end
  if cnext ~= 0 then set_prev(cache, st, cnext, cprev)
  elseif t0 == me then t0 = cprev end
  aw:pack(rec + R_HEADS, LISTS_FMT, p0, d0, ds, t0, pages - 1)
  local total, head = aw:unpack(A_PAGES, "<I4 I4")
  if aprev ~= 0 then cache[aprev - 1]:pack(P_LINKS + 12, "<I4", anext) else head = anext end
  if anext ~= 0 then cache[anext - 1]:pack(P_LINKS + 8, "<I4", aprev) end
  aw:pack(A_PAGES, "<I4 I4", total - 1, head)
  st.pages[pid] = nil
  st.heads[c], st.cur[c] = nil, nil
  return true
end

--- Free the live object at slot of page pid (class c, size); P is the
-- page's mirror record (locate's results, as they come: `_` is locate's
-- page).
local function free_work(self, seq, cache, st, pid, slot, c, size, _, P)
  local pager, cls = self.pager, self.cls
  local A, B, ps = P[1], P[2], P[3]
  local used, fhead = A & 0xFFFF, (A >> 32) & 0xFFFF
  if used == 1 then return release_page(self, seq, cache, st, pid, c) end
  local T = cache.number or txn_number(pager, seq)
  local was_full = used == cls.nslots[c]
  local rec, p0, d0, ds, t0, folding
  if was_full then
    -- It joins the deferred list (folded first when that is due).
    rec = cls.rec[c]
    local heads = st.heads[c]
    if heads and (heads >> 32 == 0 or st.stamps[c] >= T) then   -- mirrored, no fold due
      p0, d0, folding = heads & 0xFFFFFFFF, heads >> 32, false
    else
      p0, d0, ds, t0 = self.anchor:unpack(rec + R_HEADS, "<I4 I4 i8 I4")
      folding = d0 ~= 0 and ds < T
    end
    local ok, msg, code
    if folding then
      ok, msg, code = need(pager, seq, cache, self.pid + 1, t0, p0)
    else
      ok, msg, code = need(pager, seq, cache, self.pid + 1, d0, 0)
    end
    if not ok then return nil, msg, code end
  end
  local w = cache[pid]
  if not w then
    local msg, code
    w, msg, code = wr(pager, pid, seq)
    if not w then return nil, msg, code end
  end
  if not P[7] then dirty(st, pid, P, w) end
  local E = P[6]
  local ph, pt, pc = B & 0xFFFF, (B >> 16) & 0xFFFF, (B >> 32) & 0xFFFF
  W_fill(w, 0, cls.data[c] + slot * cls.slot[c], size)
  if pc > 0 and ps < T then                       -- older pending slots become free
    E[pt] = fhead
    fhead, ph, pt, pc = ph, 0, 0, 0
  end
  E[slot + 1] = ph
  if pc == 0 then pt = slot + 1 end
  -- used - 1, fresh as it was, the free head, bytes - size; the pending
  -- list with slot at its head
  P[1] = (used - 1) | (A & 0xFFFF0000) | (fhead << 32) | (((A >> 48) - size) << 48)
  P[2] = (slot + 1) | (pt << 16) | ((pc + 1) << 32)
  P[3] = T
  if was_full then
    local me = pid + 1
    local aw = cache[self.pid]
    if folding then
      set_next(cache, st, t0, p0)
      if p0 ~= 0 then set_prev(cache, st, p0, t0) end
      p0, d0 = d0, 0
    end
    w:pack(P_LINKS, "<I4 I4", 0, d0)
    P[4] = d0 << 32
    if d0 ~= 0 then
      set_prev(cache, st, d0, me)
    else
      aw:pack(rec + R_TAIL, "<I4", me)
    end
    aw:pack(rec + R_HEADS, "<I4 I4 i8", p0, me, T)
    st.heads[c], st.stamps[c] = p0 | (me << 32), T
    -- the partial list changed only by a fold; the deferred list (stamp T)
    -- is not due in this transaction
    if folding then st.cur[c] = nil end
  end
  return true
end

local function free_auto(self, pid, slot, c, size, v)
  local pager = self.pager
  local seq = pager:in_transaction()
  local cache = cache_of(pager, seq)
  local st = mirror_of(self, cache)
  -- locate read the page just before the transaction: again, with its entries
  local P = mirror_page(self, st, cache[pid] or v, pid)
  return free_work(self, seq, cache, st, pid, slot, c, size, v, P)
end

local function write_work(self, seq, pid, pos, str)
  local w, msg, code = writer(self.pager, pid, seq)
  if not w then return nil, msg, code end
  w:write(pos, str)
  return true
end

local function write_auto(self, ...)
  return write_work(self, self.pager:in_transaction(), ...)
end

---------------------------------------------------------------------------
-- public methods

-- alloc and free: `hot[handle]` is the mirror of the transaction that the
-- handle's last checked alloc or free ran in (its handle and pager
-- checked, the pager writable). While that transaction is still open
-- (core._txn_seq(pager) is still mirror.seq) and the mirror still the
-- slab's (drop sets its seq to -1, which no transaction has), the handle
-- is known to be good: so the hot paths check nothing more about it, and
-- a value that is not a handle finds no mirror (weak keys: a handle's
-- entry goes with it).
local hot = setmetatable({}, {__mode = "kv"})

local function alloc_checked(self, size)
  local anchor = type(self) == "table" and self.anchor
  if not (anchor and anchor:alive()) then check_handle(self, "slab:alloc") end
  local cls = self.cls
  -- class_of has exactly the sizes 1..max as keys (an integral float
  -- finds its integer: the | 0 makes it one)
  local c = cls.class_of[size]
  if c then size = size | 0 else
    size = bad_size(self, "slab:alloc", size)
    c = cls.class_of[size]
  end
  if self.readonly then raise("slab:alloc", 1, "pager is read-only") end
  local pager = self.pager
  local seq = pager:in_transaction()
  if not seq then return atomic(pager, alloc_auto, self, c, size) end
  local cache = cache_of(pager, seq)
  local st = mirror_of(self, cache)
  hot[self] = st
  return alloc_work(self, seq, c, size, nil, cache, st)
end

--- Allocate an object of size bytes (1 to max_size()), reading as zeros.
-- @return its ref, or nil, msg, code
function Slab:alloc(size)
  local st = hot[self]
  if st and txn_seq(st.pager) == st.seq then
    local c = st.class_of[size]
    if c then
      -- The common case, in place: the head page of the class's partial
      -- list is mirrored and dirty, its deferred list is not due (st.cur,
      -- see alloc_work), and the page keeps a usable slot after this alloc.
      local P = st.cur[c]
      if P then
        local A = P[1]
        local fhead, fresh = (A >> 32) & 0xFFFF, (A >> 16) & 0xFFFF
        if fhead ~= 0 then
          local E = P[6]
          local nfree = E[fhead]
          if fhead <= fresh and nfree <= fresh and (nfree ~= 0 or fresh < P[8]) then
            E[fhead] = LIVE | (P[9] - size)
            P[1] = ((A & ~0xFFFF00000000) | (nfree << 32)) + 1 + (size << 48)
            return P[11] + fhead
          end
        elseif fresh + 1 < P[8] then
          P[6][fresh + 1] = LIVE | (P[9] - size)
          P[1] = A + 0x10001 + (size << 48)
          return P[11] + fresh + 1
        end
      end
      return alloc_work(self, st.seq, c, size | 0, nil, st.cache, st)
    end
  end
  return alloc_checked(self, size)
end

local function free_checked(self, ref)
  local anchor = type(self) == "table" and self.anchor
  if not (anchor and anchor:alive()) then check_handle(self, "slab:free") end
  if self.readonly then raise("slab:free", 1, "pager is read-only") end
  local pager = self.pager
  local seq = pager:in_transaction()
  if not seq then return atomic(pager, free_auto, self, locate(self, ref, "slab:free")) end
  local cache = cache_of(pager, seq)
  local st = mirror_of(self, cache)
  hot[self] = st
  return free_work(self, seq, cache, st, locate(self, ref, "slab:free", cache, st))
end

--- Free the object ref.
-- @return true, or nil, msg, code
function Slab:free(ref)
  local st = hot[self]
  if st and txn_seq(st.pager) == st.seq and mtype(ref) == "integer" then
    -- a page this transaction has mirrored and written (P[7]: its writer);
    -- a ref that is not positive finds no page or no entry
    local P = st.pages[ref >> 16]
    local w = P and P[7]
    if w then
      local i = ref & 0xFFFF                      -- the slot + 1
      local E = P[6]
      local e = E[i]
      local A = P[1]
      local used = A & 0xFFFF
      -- The common case, in place: a live object of a page that keeps
      -- objects and was not full, whose pending slots (if any) are this
      -- transaction's; the slot goes to the head of the pending list.
      if e and e >= LIVE and used > 1 and used < P[8] then
        local B, pend = P[2], nil
        if B >> 32 == 0 then                      -- none pending yet
          pend = i * 0x10001 | 0x100000000
          P[3] = st.T
        elseif P[3] == st.T then
          pend = ((B & ~0xFFFF) + 0x100000000) | i
        end
        if pend then
          local slot_size = P[9]
          local size = slot_size - (e & 0x7FFF)
          W_fill(w, 0, P[10] + i * slot_size, size)
          E[i] = B & 0xFFFF
          P[1] = A - 1 - (size << 48)
          P[2] = pend
          return true
        end
      end
    end
    return free_work(self, st.seq, st.cache, st, locate(self, ref, "slab:free", st.cache, st))
  end
  return free_checked(self, ref)
end

--- The size of object ref, as asked for.
function Slab:size(ref)
  local anchor = type(self) == "table" and self.anchor
  if not (anchor and anchor:alive()) then check_handle(self, "slab:size") end
  local _, _, _, size = locate(self, ref, "slab:size")
  return size
end

--- Read len bytes of object ref from off (defaults: 0, to its end).
function Slab:read(ref, off, len)
  local anchor = type(self) == "table" and self.anchor
  if not (anchor and anchor:alive()) then check_handle(self, "slab:read") end
  local _, slot, c, size, v = locate(self, ref, "slab:read")
  if off == nil and len == nil then
    off, len = 0, size
  else
    off = off or 0
    len = check_span("slab:read", size, off, len)
  end
  local cls = self.cls
  return v:read(cls.data[c] + slot * cls.slot[c] + off, len)
end

--- Write the bytes of str into object ref at off; all of str must fit.
-- @return true, or nil, msg, code
function Slab:write(ref, off, str)
  local anchor = type(self) == "table" and self.anchor
  if not (anchor and anchor:alive()) then check_handle(self, "slab:write") end
  if self.readonly then raise("slab:write", 1, "pager is read-only") end
  local pid, slot, c, size = locate(self, ref, "slab:write")
  check_span("slab:write", size, off, 0)
  if type(str) ~= "string" then
    raise("slab:write", 1, "data must be a string (got %s)", type(str))
  end
  if #str > size - off then
    raise("slab:write", 1, "%d bytes do not fit at offset %d of a %d-byte object", #str, off, size)
  end
  local cls = self.cls
  local pos = cls.data[c] + slot * cls.slot[c] + off
  local pager = self.pager
  local seq = pager:in_transaction()
  if seq then return write_work(self, seq, pid, pos, str) end
  if #str == 0 then return true end
  return atomic(pager, write_auto, self, pid, pos, str)
end

--- A read-only window of object ref's bytes: a view of its page's
-- current content (pager:protected(pid):sub(...)), size bytes.
function Slab:view(ref)
  local anchor = type(self) == "table" and self.anchor
  if not (anchor and anchor:alive()) then check_handle(self, "slab:view") end
  local _, slot, c, size = locate(self, ref, "slab:view")
  local cls = self.cls
  return view(self.pager, ref >> 16):sub(cls.data[c] + slot * cls.slot[c], size)
end

--- A writer window of object ref (pager:write_protected(pid):sub(...)):
-- outside a transaction a private copy that commit() makes durable (it
-- writes only the object's bytes), inside one the transaction's copy.
function Slab:writer(ref)
  local anchor = type(self) == "table" and self.anchor
  if not (anchor and anchor:alive()) then check_handle(self, "slab:writer") end
  check_writable(self, "slab:writer")
  local pid, slot, c, size = locate(self, ref, "slab:writer")
  local cls = self.cls
  local w, msg, code = self.pager:write_protected(pid)
  if not w then return nil, msg, code end
  return w:sub(cls.data[c] + slot * cls.slot[c], size)
end

--- Inside a transaction: take the writer of every page a free of ref
-- would change (its page, the slab's anchor, the page's neighbours on its
-- lists, the heads of its class's lists), so that a free of ref later in
-- this transaction does not fail for want of room, even after other
-- allocs and frees of this slab (they write every page they relink). For
-- an operation that must allocate first and free last, all or nothing (a
-- heap's replace).
-- @return true, or nil, msg, code
function Slab:prepare_free(ref)
  local anchor = type(self) == "table" and self.anchor
  if not (anchor and anchor:alive()) then check_handle(self, "slab:prepare_free") end
  check_writable(self, "slab:prepare_free")
  local pager = self.pager
  local seq = pager:in_transaction()
  if not seq then raise("slab:prepare_free", 1, "call it inside a transaction") end
  local pid, _, c = locate(self, ref, "slab:prepare_free")
  local cache = cache_of(pager, seq)
  local cprev, cnext, aprev, anext = view(pager, pid):unpack(P_LINKS, "<I4 I4 I4 I4")
  local p0, d0, _, t0 = anchor:unpack(self.cls.rec[c] + R_HEADS, "<I4 I4 i8 I4")
  local ok, msg, code = need(pager, seq, cache, pid + 1, self.pid + 1, cprev, cnext, aprev)
  if ok then ok, msg, code = need(pager, seq, cache, anext, p0, d0, t0) end
  return ok, msg, code
end

---------------------------------------------------------------------------
-- bulk operations

--- Usable slots of a page in transaction T, from its header.
local function usable(nslots, used, fresh, pc, ps, T)
  local n = fresh - used - pc + nslots - fresh
  if pc > 0 and ps < T then n = n + pc end
  return n
end

--- Run fn(...) with `prepared` set (a bulk operation's own pages).
local function run_prepared(set, fn, ...)
  prepared = set
  local ok, a, b, c = pcall(fn, ...)
  prepared = nil
  if not ok then error(a, 0) end
  return a, b, c
end

local function fill_bulk(self, seq, n, c, size, pool)
  local refs = {}
  for i = 1, n do
    local ref, msg = alloc_work(self, seq, c, size, pool)
    if not ref then error("slab: internal error: alloc_bulk failed after preparing: " .. msg, 0) end
    refs[i] = ref
  end
  if #pool > 0 then error("slab: internal error: alloc_bulk prepared too many pages", 0) end
  return refs
end

--- alloc_bulk inside a transaction: walk the pages the allocs will use
-- (the deferred list first when it is due, then the partial list), count
-- the new pages, allocate them, take every writer, then fill.
local function alloc_bulk_work(self, seq, n, c, size)
  local pager, cls, anchor, apid = self.pager, self.cls, self.anchor, self.pid
  sync(self)                                   -- the walk reads the header words
  local T = txn_number(pager, seq)
  local rec, nslots = cls.rec[c], cls.nslots[c]
  local p0, d0, ds, t0 = anchor:unpack(rec + R_HEADS, LISTS_FMT)
  local set = {[apid] = true}
  local avail, steps, limit = 0, 0, pager:info().pid_limit
  local function walk(p)
    while p ~= 0 and avail < n do
      steps = steps + 1
      if steps > limit then damaged(self, p - 1, "a class list has a cycle") end
      set[p - 1] = true
      local v = view(pager, p - 1)
      local A, B, ps = v:unpack(P_HOT, "<i8 i8 i8")
      local used, fresh = split_hot(A)
      local _, _, pc = split_pend(B)
      avail = avail + usable(nslots, used, fresh, pc, ps, T)
      p = v:unpack(P_LINKS + 4, "<I4")
    end
    return p
  end
  local after
  if d0 ~= 0 and ds < T then                   -- the first alloc folds
    set[t0 - 1] = true
    if p0 ~= 0 then set[p0 - 1] = true end
    after = walk(d0)
    if after == 0 then after = walk(p0) end
  else
    if d0 ~= 0 then set[d0 - 1] = true end
    after = walk(p0)
  end
  if after ~= 0 then set[after - 1] = true end
  local pool = {}
  local function undo(msg, code)
    for i = #pool, 1, -1 do access.free_page(pager, pool[i]) end
    return nil, msg, code
  end
  if avail < n then
    local head = anchor:unpack(A_HEAD, "<I4")
    if head ~= 0 then set[head - 1] = true end
    for _ = 1, (n - avail + nslots - 1) // nslots do
      local pid, msg, code = pager:alloc_protected()
      if not pid then return undo(msg, code) end
      pool[#pool + 1] = pid
      if pid >= MAX_PID then
        return undo(format("slab:alloc_bulk: protected page %d is past the slab's limit", pid), "full")
      end
      set[pid] = true
    end
  end
  for pid in pairs(set) do
    local w, msg, code = writer(pager, pid, seq)
    if not w then return undo(msg, code) end
  end
  return run_prepared(set, fill_bulk, self, seq, n, c, size, pool)
end

local function alloc_bulk_auto(self, ...)
  return alloc_bulk_work(self, self.pager:in_transaction(), ...)
end

--- Allocate n objects of size bytes, all or none.
-- @return a list of n refs, or nil, msg, code (and nothing allocated)
function Slab:alloc_bulk(n, size)
  local anchor = type(self) == "table" and self.anchor
  if not (anchor and anchor:alive()) then check_handle(self, "slab:alloc_bulk") end
  local count = type(n) == "number" and tointeger(n)
  if not count or count < 0 then
    raise("slab:alloc_bulk", 1, "n must be a non-negative integer (got %s)", what(n))
  end
  n = count
  local cls = self.cls
  if mtype(size) ~= "integer" or size < 1 or size > cls.max then
    size = bad_size(self, "slab:alloc_bulk", size)
  end
  local pager = self.pager
  check_writable(self, "slab:alloc_bulk")
  if n == 0 then return {} end
  local c = cls.class_of[size]
  local seq = pager:in_transaction()
  if seq then return alloc_bulk_work(self, seq, n, c, size) end
  return atomic(pager, alloc_bulk_auto, self, n, c, size)
end

local function free_each(self, seq, pids, slots, classes, sizes)
  local pager = self.pager
  local cache = cache_of(pager, seq)
  local st = mirror_of(self, cache)
  for i = 1, #pids do
    local pid = pids[i]
    local w = writer(pager, pid, seq)
    local P = st.pages[pid] or mirror_page(self, st, w, pid)
    local ok, msg, code = free_work(self, seq, cache, st, pid, slots[i], classes[i], sizes[i], w, P)
    if not ok then return nil, msg, code end
  end
  return true
end

--- free_bulk inside a transaction: every page the frees may write is a
-- page of the objects, one of their list neighbours or a list end of
-- their classes; take all their writers, then free.
local function free_bulk_work(self, seq, pids, slots, classes, sizes)
  local pager, cls, anchor, apid = self.pager, self.cls, self.anchor, self.pid
  local set, seen_page, seen_class = {[apid] = true}, {}, {}
  local function add(p) if p ~= 0 then set[p - 1] = true end end
  for i = 1, #pids do
    local pid = pids[i]
    if not seen_page[pid] then
      seen_page[pid] = true
      set[pid] = true
      local a, b, c, d = view(pager, pid):unpack(P_LINKS, "<I4 I4 I4 I4")
      add(a) add(b) add(c) add(d)
    end
    local c = classes[i]
    if not seen_class[c] then
      seen_class[c] = true
      local p0, d0, _, t0 = anchor:unpack(cls.rec[c] + R_HEADS, LISTS_FMT)
      add(p0) add(d0) add(t0)
    end
  end
  for pid in pairs(set) do
    local w, msg, code = writer(pager, pid, seq)
    if not w then return nil, msg, code end
  end
  return run_prepared(set, free_each, self, seq, pids, slots, classes, sizes)
end

local function free_bulk_auto(self, ...)
  return free_bulk_work(self, self.pager:in_transaction(), ...)
end

--- Free every ref of the list, all or none (any bad ref raises first).
-- @return true, or nil, msg, code
function Slab:free_bulk(refs)
  local anchor = type(self) == "table" and self.anchor
  if not (anchor and anchor:alive()) then check_handle(self, "slab:free_bulk") end
  check_writable(self, "slab:free_bulk")
  if type(refs) ~= "table" then
    raise("slab:free_bulk", 1, "refs must be a table of refs (got %s)", type(refs))
  end
  local pids, slots, classes, sizes, seen = {}, {}, {}, {}, {}
  for i = 1, #refs do
    local pid, slot, c, size = locate(self, refs[i], "slab:free_bulk")
    local ref = pid * 65536 + slot + 1
    if seen[ref] then raise("slab:free_bulk", 1, "ref %d appears twice", ref) end
    seen[ref] = true
    pids[i], slots[i], classes[i], sizes[i] = pid, slot, c, size
  end
  if #pids == 0 then return true end
  local pager = self.pager
  local seq = pager:in_transaction()
  if seq then return free_bulk_work(self, seq, pids, slots, classes, sizes) end
  return atomic(pager, free_bulk_auto, self, pids, slots, classes, sizes)
end

---------------------------------------------------------------------------
-- walking the pages

--- The slab's pages in page-list order; raises (fname) when the list is
-- damaged.
local function page_list(self, fname)
  local pager, tag = self.pager, self.tag
  local limit = pager:info().pid_limit
  local list, seen = {}, {}
  local p = self.anchor:unpack(A_HEAD, "<I4")
  while p ~= 0 do
    local pid = p - 1
    if seen[pid] or #list >= limit then raise(fname, 3, "the slab's page list has a cycle") end
    seen[pid] = true
    local ok, v = pcall(view, pager, pid)
    if not ok then raise(fname, 3, "the slab's page list reaches page %d, not a slab page", pid) end
    if v:unpack(0, "<i8") ~= tag then
      raise(fname, 3, "the slab's page list reaches page %d, not one of its pages", pid)
    end
    list[#list + 1] = pid
    p = v:unpack(P_LINKS + 12, "<I4")
  end
  return list
end

--- Iterate over the live objects in ascending ref order: `for ref, size in
-- s:objects() do`. The pages are listed when the loop starts, each page's
-- objects read when the loop reaches it.
function Slab:objects()
  local anchor = type(self) == "table" and self.anchor
  if not (anchor and anchor:alive()) then check_handle(self, "slab:objects") end
  local pids = page_list(self, "slab:objects")
  sort(pids)
  local me = self
  local pager, tag, cls = self.pager, self.tag, self.cls
  local i, slot, fresh, ents, base, slots = 0, 0, 0, nil, 0, nil
  return function()
    while true do
      if ents then
        while slot < fresh do
          local e = sunpack("<I2", ents, 2 * slot + 1)
          slot = slot + 1
          if e >= LIVE then return base + slot, slots - (e & 0x7FFF) end
        end
        ents = nil
      end
      i = i + 1
      local pid = pids[i]
      if not pid then return nil end
      sync(me)                      -- the loop's body may alloc and free
      local ok, v = pcall(view, pager, pid)
      if ok then
        local id, cs, A = v:unpack(0, "<i8 I4 i8")
        local c = (cs & 0xFF) + 1
        if id == tag and c <= cls.n then
          local _, fr = split_hot(A)
          ents, fresh, slot, base, slots = v:read(HDR, 2 * fr), fr, 0, pid * 65536, cls.slot[c]
        end
      end
    end
  end
end

--- Counts: {objects =, bytes =, pages = (the anchor included), page_bytes
-- =, efficiency = bytes / page_bytes, page_size =, max_size =, classes =
-- {{slot =, min =, per_page =, pages =, objects =, bytes =}, ...}}.
--- Every protected page the slab owns: its anchor first, then its slab
-- pages in page-list order (for tools that account for every page, such
-- as `mappedpages check` and `map`). Raises when the list is damaged.
function Slab:page_ids()
  local anchor = type(self) == "table" and self.anchor
  if not (anchor and anchor:alive()) then check_handle(self, "slab:page_ids") end
  local list = page_list(self, "slab:page_ids")
  tinsert(list, 1, self.pid)
  return list
end

function Slab:stats()
  local anchor = type(self) == "table" and self.anchor
  if not (anchor and anchor:alive()) then check_handle(self, "slab:stats") end
  local pager, cls = self.pager, self.cls
  local classes = {}
  for c = 1, cls.n do
    classes[c] = {slot = cls.slot[c], min = cls.min[c], per_page = cls.nslots[c],
                  pages = 0, objects = 0, bytes = 0}
  end
  local objects, bytes = 0, 0
  sync(self)
  local list = page_list(self, "slab:stats")
  for _, pid in ipairs(list) do
    local cs, A = view(pager, pid):unpack(8, "<I4 i8")
    local c = (cs & 0xFF) + 1
    local used, _, _, b = split_hot(A)
    local k = classes[c]
    if k then
      k.pages, k.objects, k.bytes = k.pages + 1, k.objects + used, k.bytes + b
    end
    objects, bytes = objects + used, bytes + b
  end
  local pages = #list + 1
  local page_bytes = pages * cls.page_size
  return {objects = objects, bytes = bytes, pages = pages, page_bytes = page_bytes,
          efficiency = bytes / page_bytes, page_size = cls.page_size, max_size = cls.max,
          classes = classes}
end

---------------------------------------------------------------------------
-- check

local zeros = setmetatable({}, {__mode = "v"})
local function zero(n)
  local z = zeros[n]
  if not z then z = srep("\0", n) zeros[n] = z end
  return z
end

--- Check one page's insides; returns its record.
local function check_page(self, cls, pid, v, T, bad)
  local id, cs, A, B, ps = v:unpack(0, FULL_FMT)
  local magic, owner = id & 0xFFFFFFFF, id >> 32
  local c, pad, nslots = cs & 0xFF, (cs >> 8) & 0xFF, cs >> 16
  local used, fresh, fhead, bytes = split_hot(A)
  local ph, pt, pc, pad2 = split_pend(B)
  local cprev, cnext, aprev, anext = v:unpack(P_LINKS, "<I4 I4 I4 I4")
  local r = {pid = pid, c = c + 1, nslots = nslots, used = used, fresh = fresh, fhead = fhead,
             pc = pc, ps = ps, cprev = cprev, cnext = cnext, aprev = aprev, anext = anext}
  if magic ~= PAGE_MAGIC then bad("page %d: bad magic", pid) r.broken = true return r end
  if owner ~= self.pid then
    bad("page %d belongs to the slab anchored at %d", pid, owner) r.broken = true return r
  end
  c = c + 1
  if c > cls.n then bad("page %d: class %d does not exist", pid, c) r.broken = true return r end
  if pad ~= 0 or pad2 ~= 0 then bad("page %d: reserved bytes are not zero", pid) end
  if nslots ~= cls.nslots[c] then
    bad("page %d: %d slots, class %d has %d", pid, nslots, c, cls.nslots[c]) r.broken = true return r
  end
  if not (used <= fresh and fresh <= nslots) then
    bad("page %d: used %d, fresh %d, slots %d", pid, used, fresh, nslots) r.broken = true return r
  end
  if ps > T then bad("page %d: pending stamp %d is in the future (next transaction %d)", pid, ps, T) end
  local slot_size, min = cls.slot[c], cls.min[c]
  local ents = v:read(HDR, 2 * nslots)
  local data = v:read(cls.data[c], nslots * slot_size)
  local state = {}
  local live, sum = 0, 0
  for s = 0, nslots - 1 do
    local e = sunpack("<I2", ents, 2 * s + 1)
    local a = s * slot_size + 1
    if s >= fresh then
      if e ~= 0 then bad("page %d: fresh slot %d has entry %d", pid, s, e) end
    elseif e >= LIVE then
      local size = slot_size - (e & 0x7FFF)
      if size < min or size > slot_size then
        bad("page %d: slot %d holds size %d, outside its class (%d to %d)", pid, s, size, min, slot_size)
      else
        live, sum = live + 1, sum + size
        state[s] = "live"
        if size < slot_size and data:sub(a + size, a + slot_size - 1) ~= zero(slot_size - size) then
          bad("page %d: slot %d has bytes past its object's end", pid, s)
        end
      end
    elseif data:sub(a, a + slot_size - 1) ~= zero(slot_size) then
      bad("page %d: free slot %d is not zeroed", pid, s)
    end
  end
  if fresh < nslots and data:sub(fresh * slot_size + 1) ~= zero((nslots - fresh) * slot_size) then
    bad("page %d: a fresh slot is not zeroed", pid)
  end
  local tail = cls.data[c] + nslots * slot_size
  if tail < #v and v:read(tail) ~= zero(#v - tail) then
    bad("page %d: the bytes past its last slot are not zeroed", pid)
  end
  local function walk(head, name, mark)
    local n, last, p = 0, 0, head
    while p ~= 0 do
      local s = p - 1
      if s >= fresh then bad("page %d: the %s list reaches slot %d (fresh %d)", pid, name, s, fresh) break end
      if state[s] then
        bad("page %d: the %s list reaches slot %d, which is %s", pid, name, s, state[s]) break
      end
      state[s] = mark
      n, last = n + 1, p
      p = sunpack("<I2", ents, 2 * s + 1)
    end
    return n, last
  end
  local nfree = walk(fhead, "free", "on the free list")
  local npend, last = walk(ph, "pending", "on the pending list")
  if npend ~= pc then bad("page %d: %d pending slots, the header says %d", pid, npend, pc) end
  if last ~= pt then bad("page %d: pending tail %d, the list ends at %d", pid, pt - 1, last - 1) end
  if live ~= used then bad("page %d: %d live objects, the header says %d", pid, live, used) end
  if sum ~= bytes then bad("page %d: %d live bytes, the header says %d", pid, sum, bytes) end
  if live + nfree + npend ~= fresh then
    bad("page %d: %d live + %d free + %d pending slots, %d used so far", pid, live, nfree, npend, fresh)
  end
  if used == 0 then bad("page %d holds no object (it should have gone back to the pager)", pid) end
  r.usable = usable(nslots, used, fresh, pc, ps, T)
  return r
end

--- Check the whole slab: the anchor and its class table, the page list,
-- every page's header, entries, free and pending lists, counters and
-- zeroed free bytes, every class's partial and deferred lists, every page
-- owned once and every non-full page on exactly one list of its class.
-- @return true, or false and a list of problems (strings)
function Slab:check()
  local anchor = type(self) == "table" and self.anchor
  if not (anchor and anchor:alive()) then check_handle(self, "slab:check") end
  local pager = self.pager
  local problems = {}
  local function bad(fmt, ...) problems[#problems + 1] = format(fmt, ...) end
  local cls, why = load_classes(anchor)
  if not cls then return false, {"anchor: " .. why} end
  sync(self)
  if cls.max ~= self.cls.max or cls.n ~= self.cls.n then
    bad("the anchor's size classes changed since the slab was opened")
  end
  local info = pager:info()
  local limit = info.pid_limit
  local T = pager:in_transaction() and txn_number(pager) or info.txn + 1
  local total, head = anchor:unpack(A_PAGES, "<I4 I4")
  if anchor:read(24, 8) ~= zero(8) then bad("anchor: reserved bytes 24..31 are not zero") end
  local pages, order, prev, p = {}, {}, 0, head
  while p ~= 0 do
    local pid = p - 1
    if pages[pid] or #order >= limit then bad("the page list returns to page %d (a cycle)", pid) break end
    local ok, v = pcall(view, pager, pid)
    if not ok then bad("the page list reaches page %d, not an allocated protected page", pid) break end
    local r = check_page(self, cls, pid, v, T, bad)
    pages[pid] = r
    order[#order + 1] = pid
    if r.aprev ~= prev then
      bad("page %d: page list prev is %d, expected %d", pid, r.aprev - 1, prev - 1)
    end
    if r.broken then break end
    prev, p = p, r.anext
  end
  if #order ~= total then bad("the anchor counts %d pages, the page list holds %d", total, #order) end
  local member = {}
  for c = 1, cls.n do
    local rec = cls.rec[c]
    local p0, d0, ds, t0, cpages = anchor:unpack(rec + R_HEADS, LISTS_FMT)
    if anchor:unpack(rec + 6, "<I2") ~= 0 then bad("class %d: reserved bytes are not zero", c) end
    local n = 0
    for _, pid in ipairs(order) do if pages[pid].c == c then n = n + 1 end end
    if n ~= cpages then bad("class %d: the anchor counts %d pages, %d are of the class", c, cpages, n) end
    if ds > T then bad("class %d: deferred stamp %d is in the future (next transaction %d)", c, ds, T) end
    local function walk(start, name)
      local before, q, last = 0, start, 0
      while q ~= 0 do
        local pid = q - 1
        local r = pages[pid]
        if not r then bad("class %d: the %s list reaches page %d, not on the page list", c, name, pid) break end
        if member[pid] then
          bad("class %d: the %s list reaches page %d, which is on the %s list", c, name, pid, member[pid]) break
        end
        member[pid] = name
        if r.c ~= c then bad("class %d: the %s list holds page %d of class %d", c, name, pid, r.c) end
        if r.cprev ~= before then
          bad("page %d: class list prev is %d, expected %d", pid, r.cprev - 1, before - 1)
        end
        if r.used == r.nslots then bad("page %d is full but on the %s list", pid, name) end
        if name == "partial" and r.usable == 0 then
          bad("page %d is on the partial list but has no usable slot", pid)
        end
        if name == "deferred" and r.fresh ~= r.nslots then
          bad("page %d is on the deferred list but has fresh slots", pid)
        end
        before, last, q = q, q, r.cnext
      end
      return last
    end
    walk(p0, "partial")
    local last = walk(d0, "deferred")
    if last ~= t0 then bad("class %d: deferred tail is %d, the list ends at %d", c, t0 - 1, last - 1) end
  end
  for _, pid in ipairs(order) do
    local r = pages[pid]
    if not r.broken then
      if r.used == r.nslots then
        if r.cprev ~= 0 or r.cnext ~= 0 then bad("page %d is full but has class list links", pid) end
      elseif not member[pid] then
        bad("page %d has free slots but is on no list of its class", pid)
      end
    end
  end
  if #problems > 0 then return false, problems end
  return true
end

function Slab:__tostring()
  if not self.anchor:alive() then
    if not pcall(self.pager.page_size, self.pager) then
      return format("mappedpages.Slab %q (its pager is closed)", self.object_name)
    end
    return format("mappedpages.Slab %q (dropped)", self.object_name)
  end
  local ok, st = pcall(Slab.stats, self)
  if not ok then return format("mappedpages.Slab %q (unreadable: %s)", self.object_name, tostring(st)) end
  return format("mappedpages.Slab %q: %d object%s, %d bytes in %d page%s of %d bytes "
                .. "(efficiency %.2f), sizes 1 to %d", self.object_name, st.objects,
                st.objects == 1 and "" or "s", st.bytes, st.pages, st.pages == 1 and "" or "s",
                st.page_size, st.efficiency, st.max_size)
end

--- The largest object size.
function Slab:max_size()
  local anchor = type(self) == "table" and self.anchor
  if not (anchor and anchor:alive()) then check_handle(self, "slab:max_size") end
  return self.cls.max
end

--- The slab's name in the catalog.
function Slab:name()
  local anchor = type(self) == "table" and self.anchor
  if not (anchor and anchor:alive()) then check_handle(self, "slab:name") end
  return self.object_name
end

---------------------------------------------------------------------------
-- open and drop

local function make_handle(pager, name, pid)
  local self = object.handle(Slab, pager, name, pid)
  local cls, why = load_classes(self.anchor)
  if not cls then return nil, format("slab %q: %s", name, why), "corrupt" end
  self.cls = cls
  self.tag = PAGE_MAGIC | (pid << 32)      -- magic and owner of its pages
  self.mkey = mirror_key(pid)              -- its mirror's key in a writer cache
  self.readonly = access.readonly(pager)
  return self
end

--- Open the slab `name` of pager, creating it when the name is free (in
-- the open transaction, or as a durable transaction of its own).
-- @return a Slab, or nil, msg, code: "kind" (the name holds another kind),
-- "not_found" (read-only pager, no such name), "corrupt" (the anchor is
-- not a slab's), "not_catalog", or the environment's codes
function M.open(pager, name)
  if type(pager) ~= "userdata" then
    raise("slab.open", 1, "pager expected (got %s)", type(pager))
  end
  local pid, msg, code = object.open(pager, name, KIND, "slab.open", function(apid)
    return init_anchor(pager, apid)
  end)
  if not pid then return nil, msg, code end
  local self
  self, msg, code = make_handle(pager, name, pid)
  if not self then return nil, "slab.open: " .. msg, code end
  return self
end

--- Free every page of the slab anchored at apid but the anchor (inside a
-- transaction).
local function free_pages(pager, name, apid, fname)
  local h = object.handle(Slab, pager, name, apid)
  h.tag = PAGE_MAGIC | (apid << 32)
  -- its pages leave the transaction's mirror, their pending writes with them
  local cache = cache_of(pager)
  local st = cache[mirror_key(apid)]
  if st then st.ndirty, st.seq = 0, -1 end     -- and no handle's hot path finds it
  cache[mirror_key(apid)] = nil
  local ok, list = pcall(page_list, h, fname)
  if not ok then return nil, list, "corrupt" end
  for _, pid in ipairs(list) do
    local done, msg, code = access.free_page(pager, pid)
    if not done then return nil, msg, code end
  end
  return true
end

--- Drop the slab `name`: free every page it owns and its name, in one
-- transaction. Handles of it raise afterwards.
-- @return true, or nil, msg, code ("not_found", "kind", environment)
function M.drop(pager, name)
  if type(pager) ~= "userdata" then
    raise("slab.drop", 1, "pager expected (got %s)", type(pager))
  end
  return object.drop(pager, name, KIND, "slab.drop", function(apid)
    return free_pages(pager, name, apid, "slab.drop")
  end)
end

---------------------------------------------------------------------------
-- slabs inside other objects
--
-- An object of your own (a heap keeps one for its small values) can hold
-- a slab that has no name in the catalog: its anchor is a protected page
-- the object owns and names in its own pages.
--
--     local pid = slab.embed(pager)              -- a new slab's anchor
--     local s = slab.attach(pager, pid, label)   -- a handle (label: for messages)
--     slab.destroy(pager, pid)                   -- every page, the anchor too
--     s:page_ids()                               -- its pids, the anchor first
--
-- embed and destroy join the open transaction or are one of their own.
-- Everything else is as for a named slab.

--- A new empty slab anchored at a new protected page.
-- @return its anchor's pid, or nil, msg, code
function M.embed(pager)
  object.check_pager("slab.embed", pager)
  access.check_writable(pager, "slab.embed")
  return atomic(pager, function()
    local w, msg, code = access.new_page(pager)
    if not w then return nil, msg, code end
    local pid = w:id()
    local ok
    ok, msg, code = init_anchor(pager, pid)
    if not ok then
      access.free_page(pager, pid)
      return nil, msg, code
    end
    return pid
  end)
end

--- A handle of the slab anchored at pid (made by embed); `label` names it
-- in messages (default "slab at <pid>").
-- @return a Slab, or nil, msg, "corrupt" when pid is not a slab's anchor
function M.attach(pager, pid, label)
  object.check_pager("slab.attach", pager)
  object.check_integer("slab.attach", "pid", pid, 0)
  label = label or format("slab at %d", pid)
  local ok, v = pcall(view, pager, pid)
  if not ok then
    return nil, format("slab.attach: %s: page %d is not an allocated protected page", label, pid),
           "corrupt"
  end
  local self, msg, code = make_handle(pager, label, v:id())
  if not self then return nil, "slab.attach: " .. msg, code end
  return self
end

--- Free every page of the slab anchored at pid, the anchor too. Handles of
-- it raise afterwards.
-- @return true, or nil, msg, code
function M.destroy(pager, pid)
  object.check_pager("slab.destroy", pager)
  access.check_writable(pager, "slab.destroy")
  object.check_integer("slab.destroy", "pid", pid, 0)
  return atomic(pager, function()
    local ok, msg, code = free_pages(pager, format("slab at %d", pid), pid, "slab.destroy")
    if not ok then return nil, msg, code end
    return access.free_page(pager, pid)
  end)
end

return M
