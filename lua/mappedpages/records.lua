--- mappedpages.records: tables of typed fixed-size records.
--
--     local players = assert(mp.records.open(pager, "players", [[
--       record player { name: char[24]  score: f64 = 0.5  level: u16 = 1 }
--     ]]))
--     local id = players:insert{name = "ada"}        -- missing fields: defaults
--     players:get(id)          --> {name = "ada", score = 0.5, level = 1}
--     players:update(id, {score = 4})                -- only score changes
--     players:set(id, "level", 2)   players:field(id, "level")   --> 2
--     for id, row in players:scan() do print(id, row.name) end  -- ascending ids
--     players:delete(id)       players:count()
--     mp.records.open(pager, "players")   -- an existing table, with its stored schema
--     mp.records.drop(pager, "players")
--
-- Indexes: open's last argument, opts = {unique = {fields}, index =
-- {fields}}, keeps B-tree indexes of those fields in the table's
-- transactions: t:find(field, value) -> id for a unique field, t:range(field,
-- lo, hi) for any. mappedpages.records_index does that work and tells
-- what can be indexed; this file calls it where a table with indexes needs
-- it (one `if self.indexes` on insert, update, set and delete).
--
-- Every mutating call joins the pager's open transaction or is a durable
-- transaction of its own; a rollback restores every row. A handle caches
-- the record's layout (fixed until a migration, which bumps a generation
-- number in the anchor that every cache miss and every insert compares)
-- and views of the data pages it has read, each checked with
-- `view:alive()` before use: a view dies when its page is freed or its
-- allocation rolled back, and a table's page index maps to another pid
-- only after such a free. So a handle cannot show a rolled-back state, and
-- two handles of one table see each other's changes at once.
--
-- Layout. The anchor (the table's protected page from the catalog):
--
--     0   8 bytes  magic "mprecs1\0"
--     8   u32      pid + 1 of the first source page (the object-pages chain)
--     12  u32      page size
--     16  u32      record size R (bytes of the record's string.pack format)
--     20  u32      slot size S = max(R + 1, 17)
--     24  u32      slots per data page n = (page size - 16) // S
--     28  u32      zero
--     32  i8       count: live records
--     40  i8       fresh: the next id never handed out (ids 1 .. fresh - 1 were)
--     48  i8       free queue head: the oldest deleted id (0: empty)
--     56  i8       the head's stamp: the transaction that deleted it
--     64  i8       free queue tail: the newest deleted id
--     72  i8       generation: 0 at creation, + 1 at each migration, + 2^32
--                  at each change of the indexes (data pages hold the low 32 bits)
--     80  u32      data pages
--     84  u32      source bytes
--     88  u32      pid + 1 of the index list page (0: no index; see records_index)
--     92  36 bytes zero
--     128 u32 [M]  top of the directory, M = (page size - 128) // 4: pid + 1 of
--                  level-2 directory pages (0: none)
--
-- A directory page (level 2 or 1): u32 magic "mpri", u32 owner (the
-- anchor's pid), u32 level, u32 zero, then E = (page size - 16) // 4 u32
-- entries, each the pid + 1 of a level-1 page (level 2) or of a data page
-- (level 1). A data page: u32 magic "mprd", u32 owner, u32 page index, u32
-- generation, then n slots of S bytes from offset 16.
--
-- Id id lives in data page i = (id - 1) // n, slot (id - 1) % n, at byte
-- 16 + slot * S; page i is entry i % E of the level-1 page that is entry
-- (i // E) % E of the level-2 page that is the anchor's top entry
-- i // E^2. So a lookup is computed, three levels and no search, and a
-- handle keeps the views it found. Data pages are added at the end as ids
-- need them and go away only with the table (or a migration).
--
-- A slot's first byte is its state: 0 fresh (never used: all zeros), 1 a
-- live record (the record's bytes follow), 2 deleted: i8 next id of the
-- free queue (0: the last) and i8 stamp (the deleting transaction's number,
-- access.txn_number) follow, the rest of the slot is zero. Deleted ids form
-- a FIFO queue, oldest first; an insert takes its head only when the
-- head's stamp (kept in the anchor too) is older than the inserting
-- transaction, else a fresh id: an id deleted in transaction N comes back
-- no earlier than N + 1.
--
-- The source pages (object pages of mappedpages.object: magic
-- "mprecsrc", next, owner, then the bytes from offset 16) hold the
-- record's name as a string.pack "<s2" followed by its normalized schema
-- source (`rec.source`), as long as it is. Opening compares it with the
-- schema given (mappedpages.schema's diff); a schema that only appends
-- fields migrates the table: one transaction writes every record into new
-- data pages of the new slot size (ids keep their values), new directory
-- and source pages, frees the old ones and bumps the generation.
--
-- Failures. Each operation that can fail for the environment (a new page,
-- or the first write of a page in a transaction, which copies it) takes
-- every page and writer it needs before its first write, so a failure
-- returns nil, msg, code and changes nothing. Values are checked (by the
-- schema's flatten) before anything else happens.
-- @module mappedpages.records

local access = require "mappedpages.access"
local object = require "mappedpages.object"
local core = require "mappedpages.core"
local rindex = require "mappedpages.records_index"

local error, ipairs, load, pairs, pcall, select, tostring, type =
      error, ipairs, load, pairs, pcall, select, tostring, type
local mtype = math.type
local format, spack, sunpack, srep = string.format, string.pack, string.unpack, string.rep
local concat, tpack, tunpack = table.concat, table.pack, table.unpack

local atomic, writer, view, txn_number, cache_of, before_commit =
      access.atomic, access.writer, access.view, access.txn_number, access.cache,
      access.before_commit
local V_unpack, V_alive = core._View_methods.unpack, core._View_methods.alive
local txn_seq = core._txn_seq
local P_in_txn = core._Pager_methods.in_transaction
local P_begin, P_write_protected = core._Pager_methods.begin, core._Pager_methods.write_protected
local T_commit = core._Transaction_methods.commit
local W_unpack, W_pack, W_fill =
      core._Writer_methods.unpack, core._Writer_methods.pack, core._Writer_methods.fill

local M = {}

-- Misuse errors name the function and point at the caller's line: the
-- first frame outside this file (the public methods reach the checks
-- through tail calls, so no fixed level would do).
local SOURCE = debug.getinfo(1, "S").source
local raise, check_handle = object.misuse(SOURCE, rindex.SOURCE)

local KIND = "records"
M.KIND = KIND

-- anchor
local ANCHOR_MAGIC = "mprecs1\0"
local A_SRC, A_HOT, A_SRCLEN, A_INDEX, A_TOP = 8, 32, 84, 88, 128
local GEOM_FMT = "<c8 I4 I4 I4 I4 I4"       -- magic, source head, page size, R, S, n
local HOT_FMT = "<i8 i8 i8 i8 i8 i8 I4"     -- count, fresh, head, hstamp, tail, gen, pages
-- directory and data pages
local DIR_MAGIC = sunpack("<I4", "mpri")
local DATA_MAGIC = sunpack("<I4", "mprd")
local SRC_MAGIC = "mprecsrc"
local HDR = 16
local LIVE, FREED = 1, 2
local NODE = 16                              -- a deleted slot's i8 next and i8 stamp

M.HEADER = HDR

--- The slot size and slots per data page of a record of `size` bytes on
-- pages of `page_size` bytes (n = 0: it does not fit).
function M.geometry(size, page_size)
  local S = size + 1
  if S < NODE + 1 then S = NODE + 1 end
  return S, (page_size - HDR) // S
end

--- The largest record size for a page size.
function M.max_record_size(page_size) return page_size - HDR - 1 end

---------------------------------------------------------------------------
-- small helpers

local Records = {}
Records.__index = Records
Records.__name = "mappedpages.Records"

local function what(v)
  if type(v) == "number" or type(v) == "string" then return format("%q", v) end
  return type(v)
end

local function damaged(self, problem, ...)
  error(format("records %q: %s; t:check() lists the problems", self.object_name,
               format(problem, ...)), 0)
end

local function stale(self, fname)
  raise(fname, "the layout of %q changed since this handle was opened (a migration by "
        .. "another handle, or the rollback of this handle's migration): open it again",
        self.object_name)
end

local function bad_id(fname, id)
  raise(fname, "id must be a positive integer (got %s)", what(id))
end

local function not_live(fname, id)
  raise(fname, "id %d holds no record (deleted, or never inserted)", id)
end

-- row(flag, v1, ..., vk, next_offset): the record as a table (build),
-- or nil unless flag says live. Generated for the record's number of
-- values, so that the trailing offset from unpack is dropped for free.
local function make_row(build, nv)
  if nv <= 120 then
    local names = {}
    for i = 1, nv do names[i] = "a" .. i end
    local a = concat(names, ", ")
    local src = format("local build = ...\nreturn function(flag%s%s)\n"
                       .. "  if flag ~= 1 then return nil end\n  return build(%s)\nend",
                       nv > 0 and ", " or "", a, a)
    return load(src, "=records.row", "t", {})(build)
  end
  return function(flag, ...)
    if flag ~= LIVE then return nil end
    local t = tpack(...)
    return build(tunpack(t, 1, nv))
  end
end

---------------------------------------------------------------------------
-- schemas

local schema_mod
local function schema()
  if not schema_mod then schema_mod = require "mappedpages.schema" end
  return schema_mod
end

--- The record description from `src` (schema text, a parsed schema or a
-- record) and `recname`: rec, or nil, msg (a bad schema). Raises for
-- misuse (no name when there are several records, an unknown name).
local function resolve(fname, src, recname)
  local s = src
  if type(src) == "string" then
    local msg
    s, msg = schema().parse(src)
    if not s then return nil, format("%s: the schema does not parse: %s", fname, msg) end
  elseif type(src) ~= "table" then
    raise(fname, "schema source or record expected (got %s)", type(src))
  end
  if s.records == nil and s.format and s.fields then      -- a record description
    if recname ~= nil and recname ~= s.name then
      raise(fname, "the record given is %q, not %q", tostring(s.name), tostring(recname))
    end
    return s
  end
  if type(s.records) ~= "table" then
    raise(fname, "schema source or record expected (got a table that is neither)")
  end
  if recname == nil then
    if #s.records ~= 1 then
      local names = {}
      for i, r in ipairs(s.records) do names[i] = r.name end
      raise(fname, "the schema declares %d records (%s): say which one", #s.records, concat(names, ", "))
    end
    return s.records[1]
  end
  if type(recname) ~= "string" then
    raise(fname, "record name must be a string (got %s)", type(recname))
  end
  for _, r in ipairs(s.records) do
    if r.name == recname then return r end
  end
  raise(fname, "the schema declares no record %q", recname)
end

--- The bytes a table's source pages hold.
local function source_blob(rec)
  return spack("<s2", rec.name) .. rec.source
end

--- The stored blob of the table anchored at apid: string, or nil, problem.
local function read_blob(pager, apid)
  local pids, problem = object.pages(pager, apid, SRC_MAGIC)
  if problem then return nil, problem, pids end
  local a = view(pager, apid)
  local len = a:unpack(A_SRCLEN, "<I4")
  local per = a:unpack(12, "<I4") - HDR
  if (len + per - 1) // per ~= #pids then
    return nil, format("%d source bytes, %d source pages", len, #pids), pids
  end
  local parts = {}
  for i, pid in ipairs(pids) do
    local take = len - (i - 1) * per
    if take > per then take = per end
    parts[i] = view(pager, pid):read(HDR, take)
  end
  return concat(parts), nil, pids
end

--- The stored record of the table: rec, or nil, problem.
local function stored_record(pager, apid)
  local blob, problem = read_blob(pager, apid)
  if not blob then return nil, problem end
  local ok, name, pos = pcall(sunpack, "<s2", blob)
  if not ok then return nil, "the stored source is damaged" end
  local s, msg = schema().parse(blob:sub(pos))
  if not s then return nil, "the stored source does not parse: " .. tostring(msg) end
  for _, r in ipairs(s.records) do
    if r.name == name then return r end
  end
  return nil, format("the stored source declares no record %q", name)
end

--- Allocate the source pages for `blob` (each with its writer): a list
-- of writers, or nil, msg, code (and none allocated).
local function new_source_pages(pager, blob, page_size)
  local per = page_size - HDR
  local ws = {}
  for i = 1, (#blob + per - 1) // per do
    local w, msg, code = access.new_page(pager)
    if not w then
      for j = #ws, 1, -1 do access.free_page(pager, ws[j]:id()) end
      return nil, msg, code
    end
    ws[i] = w
  end
  return ws
end

--- Write blob into the source pages ws (new, zeroed) and name the first
-- in the anchor writer aw.
local function write_source(aw, apid, ws, blob, page_size)
  local per = page_size - HDR
  for i, w in ipairs(ws) do
    local nxt = ws[i + 1] and ws[i + 1]:id() + 1 or 0
    w:pack(0, "<c8 I4 I4", SRC_MAGIC, nxt, apid)
    w:write(HDR, blob:sub((i - 1) * per + 1, i * per))
  end
  aw:pack(A_SRC, "<I4", ws[1] and ws[1]:id() + 1 or 0)
  aw:pack(A_SRCLEN, "<I4", #blob)
end

---------------------------------------------------------------------------
-- the directory

--- Entries per directory page, top entries in the anchor.
local function dir_sizes(page_size) return (page_size - HDR) // 4, (page_size - A_TOP) // 4 end

--- The pid of data page idx as the directory says (views: the current
-- content), or nil; raises (damaged) for a broken directory.
local function dir_lookup(self, idx)
  local E, pager = self.E, self.pager
  local e2, q = idx % E, idx // E
  local e1, e0 = q % E, q // E
  if e0 >= self.M then return nil end
  local p = V_unpack(self.anchor, A_TOP + 4 * e0, "<I4")
  for level = 2, 1, -1 do
    if p == 0 then return nil end
    local ok, v = pcall(view, pager, p - 1)
    if not ok then damaged(self, "directory page %d is not allocated", p - 1) end
    local magic, owner, lv = V_unpack(v, 0, "<I4 I4 I4")
    if magic ~= DIR_MAGIC or owner ~= self.pid or lv ~= level then
      damaged(self, "page %d is not a level-%d directory page of this table", p - 1, level)
    end
    p = V_unpack(v, HDR + 4 * (level == 2 and e1 or e2), "<I4")
  end
  if p == 0 then return nil end
  return p - 1
end

--- The view and pid of data page idx, found through the directory and
-- kept: nil when the table has no such page. Raises naming fname when the
-- handle is dead or stale.
local function load_page(self, idx, fname)
  check_handle(self, fname)
  local gen, npages = V_unpack(self.anchor, A_HOT + 40, "<i8 I4")
  if gen ~= self.gen then stale(self, fname) end
  if idx >= npages then return nil end
  local pid = dir_lookup(self, idx)
  if not pid then damaged(self, "the directory has no data page %d of %d", idx, npages) end
  local v = self.pager:protected(pid)
  local magic, owner, i, g = V_unpack(v, 0, "<I4 I4 I4 I4")
  if magic ~= DATA_MAGIC or owner ~= self.pid or i ~= idx or g ~= gen & 0xFFFFFFFF then
    damaged(self, "page %d is not data page %d of this table", pid, idx)
  end
  self.pages[idx], self.pids[idx] = v, pid
  return v, pid
end

--- The page view, pid and slot offset of id (any state), or nil when its
-- page does not exist.
local function slot_of(self, id, fname)
  local k = id - 1
  local n = self.n
  local idx = k // n
  local v = self.pages[idx]
  if not (v and V_alive(v)) then
    v = load_page(self, idx, fname)
    if not v then return nil end
  end
  return v, self.pids[idx], HDR + (k - idx * n) * self.S
end

--- Like slot_of, for an id that must hold a record (raises otherwise).
local function live_slot(self, id, fname)
  if mtype(id) ~= "integer" or id < 1 then bad_id(fname, id) end
  local v, pid, off = slot_of(self, id, fname)
  if not v or V_unpack(v, off, "<B") ~= LIVE then not_live(fname, id) end
  return v, pid, off
end

--- A new data page for index idx (= the anchor's page count), linked into
-- the directory (new directory pages as needed), inside a transaction:
-- its pid and writer, or nil, msg, code with nothing changed. aw: the
-- anchor's writer.
local function add_data_page(self, seq, cache, aw, idx)
  local pager, E, apid = self.pager, self.E, self.pid
  local e2, q = idx % E, idx // E
  local e1, e0 = q % E, q // E
  if e0 >= self.M then
    return nil, format("records %q: the table has reached its most data pages (%d)",
                       self.object_name, self.M * E * E), "full"
  end
  local made = {}
  local function fail(msg, code)
    for i = #made, 1, -1 do access.free_page(pager, made[i]:id()) end
    return nil, msg, code
  end
  local function fresh_page()
    local w, msg, code = access.new_page(pager)
    if w then made[#made + 1] = w end
    return w, msg, code
  end
  local msg, code
  local l2 = W_unpack(aw, A_TOP + 4 * e0, "<I4")
  local l2w, l1w, l2new, l1new
  if l2 == 0 then
    l2w, msg, code = fresh_page()
    if not l2w then return fail(msg, code) end
    l2new = true
  end
  local l1 = 0
  if not l2new then l1 = view(pager, l2 - 1):unpack(HDR + 4 * e1, "<I4") end
  if l1 == 0 then
    if not l2new then
      l2w, msg, code = writer(pager, l2 - 1, seq)
      if not l2w then return fail(msg, code) end
    end
    l1w, msg, code = fresh_page()
    if not l1w then return fail(msg, code) end
    l1new = true
  else
    l1w, msg, code = writer(pager, l1 - 1, seq)
    if not l1w then return fail(msg, code) end
  end
  local dw
  dw, msg, code = fresh_page()
  if not dw then return fail(msg, code) end
  -- every page and writer is there: write
  local gen = self.gen & 0xFFFFFFFF
  if l2new then
    W_pack(l2w, 0, "<I4 I4 I4", DIR_MAGIC, apid, 2)
    W_pack(aw, A_TOP + 4 * e0, "<I4", l2w:id() + 1)
  end
  if l1new then
    W_pack(l1w, 0, "<I4 I4 I4", DIR_MAGIC, apid, 1)
    W_pack(l2w, HDR + 4 * e1, "<I4", l1w:id() + 1)
  end
  local pid = dw:id()
  W_pack(l1w, HDR + 4 * e2, "<I4", pid + 1)
  W_pack(dw, 0, "<I4 I4 I4 I4", DATA_MAGIC, apid, idx, gen)
  local _ = cache
  return pid, dw
end

---------------------------------------------------------------------------
-- the transaction's mirror of the count and the fresh id
--
-- An insert inside a transaction writes the record's slot and the
-- anchor's count and fresh id: two binding calls, and the second one is
-- the same two words every time. So a run of inserts of fresh ids keeps
-- those words in a mirror, st, in the transaction's writer cache
-- (access.cache: made anew for every transaction, so a rollback or a
-- failed commit leaves none behind; shared by every handle of the table)
-- and writes them to the anchor once, when the transaction commits
-- (access.before_commit: inside tx:commit(), before the core commits: the
-- same atomic commit), or before anything else reads or writes the
-- anchor's words (settle). While st is live the anchor's count and fresh
-- id may be behind; its other words (the free queue, the generation, the
-- page count) are not mirrored and stay right.
--
--     st = {live, fresh, count0, fresh0, lim, w, off, S, put, put_some, aw}
--
-- fresh: the next fresh id (count = count0 + fresh - fresh0); lim: the
-- first id past the data page that fresh is on; w, off: that page's
-- writer and fresh's slot offset there; put(t, w, off): the record's
-- quick check and the pack of t (schema_codegen's quick_into_all; raises
-- when unsure of t, or when the writer is dead: its transaction ended);
-- put_some: the same for a t that may lack fields (quick_into: a little
-- slower, tried second); aw: the anchor's writer. A mirror is made by an
-- insert (the checked path), after its work, when the next id is fresh
-- (no deleted id is due) and on a data page that exists; it covers that
-- one page. The checked path kills it first (its words go to the anchor)
-- and revives the same object for the next page; settling removes it
-- from the cache, and a removed mirror never lives again. A handle
-- remembers the last mirror it made (`memos`): the next insert through it
-- takes the fast path, Records:insert's first lines, with no other check at all --
-- a live mirror means this table, this layout, this transaction, a
-- writable pager and no indexes, for as long as it lives:
--  - anything that ends the transaction ends the page writer, and put
--    raises (the commit hook also kills the mirror);
--  - every other operation that reads or writes the anchor's words, drops
--    the table, migrates it or changes its indexes settles it first: the
--    words are written and the mirror dies (its lim becomes -1);
--  - put runs no user code that can write: a table with a metatable is
--    refused, and a value of the wrong type fails before the pack.
-- A fast insert that fails (a full page, a value put is unsure of, a dead
-- writer) takes the checked path, which kills the mirror and does it all
-- again.

local memos = setmetatable({}, {__mode = "k"})   -- handle -> the last mirror it made

local function mirror_key(apid) return "records mirror " .. apid end

--- Write st's words to the anchor and kill it.
local function kill(st)
  if st.live then
    st.live, st.lim = false, -1
    local aw = st.aw
    if core._Writer_methods.alive(aw) then
      W_pack(aw, A_HOT, "<i8 i8", st.count0 + st.fresh - st.fresh0, st.fresh)
    end
  end
end

--- The live mirror of self's table in the open transaction (seq), or nil.
local function mirror(self, seq)
  local st = cache_of(self.pager, seq)[self.mkey]
  if st and st.live then return st end
  return nil
end

--- Settle the mirror of the table anchored at apid, if the open
-- transaction has one (see above): its words go to the anchor.
local function settle_pid(pager, apid, seq)
  seq = seq or txn_seq(pager)
  if not seq then return end
  local cache = cache_of(pager, seq)
  local key = mirror_key(apid)
  local st = cache[key]
  if st then
    cache[key] = nil
    kill(st)
  end
end

local function settle(self, seq)
  seq = seq or txn_seq(self.pager)
  if not seq then return end
  local cache = cache_of(self.pager, seq)
  local st = cache[self.mkey]
  if st then
    cache[self.mkey] = nil
    kill(st)
  end
end

--- The commit hook of one table's mirrors in one transaction.
local function commit_hook(cache, key)
  return function()
    local st = cache[key]
    if st then kill(st) end
    return true
  end
end

--- After an insert inside transaction seq (the checked path): a mirror
-- for the next inserts, when they can take the fast path.
local function make_mirror(self, seq)
  local pager = self.pager
  local cache = cache_of(pager, seq)
  local aw = cache[self.pid]
  if not aw then return end
  local count, fresh, head, hstamp, _, _, npages = W_unpack(aw, A_HOT, HOT_FMT)
  if head ~= 0 and hstamp < (cache.number or txn_number(pager, seq)) then return end
  local n, S = self.n, self.S
  local idx = (fresh - 1) // n
  if idx >= npages then return end
  local pid = self.pids[idx]
  local v = self.pages[idx]
  if not (pid and v and V_alive(v)) then return end
  local w = cache[pid] or writer(pager, pid, seq)
  if not w then return end
  local key = self.mkey
  local st = cache[key]
  if st == nil then
    before_commit(pager, key, commit_hook(cache, key), seq)   -- once per transaction
    st = {S = S, aw = aw, put = self.quick_into_all(W_pack, self.fmt, LIVE),
          put_some = self.quick_into(W_pack, self.fmt, LIVE)}
    cache[key] = st
  end
  st.fresh, st.count0, st.fresh0, st.w = fresh, count, fresh, w
  st.off, st.lim, st.live = HDR + (fresh - 1 - idx * n) * S, (idx + 1) * n + 1, true
  memos[self] = st
end

---------------------------------------------------------------------------
-- the work, inside a transaction

local function anchor_writer(self, seq, cache)
  local aw = cache[self.pid]
  if aw then return aw end
  return writer(self.pager, self.pid, seq)
end

local flatten_error

-- insert_work(self, seq, t, ok, v1, ..., vN): ok and the values are what
-- pcall(quick, t) returned (the record's quick flatten: when it fails,
-- flatten says why, or accepts what quick was not sure of; t is nil when
-- flatten already ran).
local function insert_work(self, seq, t, ok, ...)
  if not ok then
    if t ~= nil then return insert_work(self, seq, nil, pcall(self.flatten, t)) end
    flatten_error("records:insert", ...)
  end
  local pager = self.pager
  local cache = cache_of(pager, seq)
  local st = cache[self.mkey]
  if st then kill(st) end       -- its words go to the anchor; make_mirror may revive it
  local aw, msg, code = cache[self.pid]
  if not aw then
    aw, msg, code = writer(pager, self.pid, seq)
    if not aw then return nil, msg, code end
  end
  local count, fresh, head, hstamp, tail, gen, npages = W_unpack(aw, A_HOT, HOT_FMT)
  if gen ~= self.gen then stale(self, "records:insert") end
  local n, S = self.n, self.S
  local id, w, off
  if head ~= 0 and hstamp < (cache.number or txn_number(pager, seq)) then
    -- the oldest deleted id, deleted before this transaction
    id = head
    local v, pid
    v, pid, off = slot_of(self, id, "records:insert")
    if not v then damaged(self, "the free queue reaches id %d, past the last page", id) end
    w = cache[pid]
    if not w then
      w, msg, code = writer(pager, pid, seq)
      if not w then return nil, msg, code end
    end
    local flag, nxt = W_unpack(w, off, "<B i8")
    if flag ~= FREED then damaged(self, "the free queue reaches id %d, which is not deleted", id) end
    local nstamp = 0
    if nxt ~= 0 then
      local nv, _, noff = slot_of(self, nxt, "records:insert")
      if not nv then damaged(self, "the free queue reaches id %d, past the last page", nxt) end
      nstamp = V_unpack(nv, noff + 9, "<i8")
    else
      tail = 0
    end
    if self.pad then W_fill(w, 0, off + 1, S - 1) end
    W_pack(w, off, self.fmt, LIVE, ...)
    W_pack(aw, A_HOT, "<i8 i8 i8 i8 i8", count + 1, fresh, nxt, nstamp, tail)
    return id
  end
  id = fresh
  local k = id - 1
  local idx = k // n
  off = HDR + (k - idx * n) * S
  if idx >= npages then
    local pid
    pid, w, code = add_data_page(self, seq, cache, aw, idx)
    if not pid then return nil, w, code end
    self.pages[idx], self.pids[idx] = pager:protected(pid), pid
    W_pack(w, off, self.fmt, LIVE, ...)
    W_pack(aw, A_HOT, "<i8 i8", count + 1, fresh + 1)
    W_pack(aw, A_HOT + 48, "<I4", npages + 1)
    return id
  end
  local v = self.pages[idx]
  if not (v and V_alive(v)) then load_page(self, idx, "records:insert") end
  local pid = self.pids[idx]
  w = cache[pid]
  if not w then
    w, msg, code = writer(pager, pid, seq)
    if not w then return nil, msg, code end
  end
  W_pack(w, off, self.fmt, LIVE, ...)
  W_pack(aw, A_HOT, "<i8 i8", count + 1, fresh + 1)
  return id
end

local function insert_auto(self, ...)
  return insert_work(self, P_in_txn(self.pager), nil, true, ...)
end

--- The id insert_work would take now (for the indexes, which need it first).
local function next_id(self, seq)
  settle(self, seq)
  local _, fresh, head, hstamp = V_unpack(self.anchor, A_HOT, "<i8 i8 i8 i8")
  if head ~= 0 and hstamp < txn_number(self.pager, seq) then return head end
  return fresh
end

local function delete_work(self, seq, id, pid, off)
  local pager = self.pager
  local cache = cache_of(pager, seq)
  if cache[self.mkey] then settle(self, seq) end
  local aw, msg, code = anchor_writer(self, seq, cache)
  if not aw then return nil, msg, code end
  local count, fresh, head, hstamp, tail, gen = W_unpack(aw, A_HOT, HOT_FMT)
  if gen ~= self.gen then stale(self, "records:delete") end
  local w = cache[pid]
  if not w then
    w, msg, code = writer(pager, pid, seq)
    if not w then return nil, msg, code end
  end
  local tw, toff
  if tail ~= 0 then
    local tv, tpid
    tv, tpid, toff = slot_of(self, tail, "records:delete")
    if not tv then damaged(self, "the free queue's tail %d is past the last page", tail) end
    tw = cache[tpid]
    if not tw then
      tw, msg, code = writer(pager, tpid, seq)
      if not tw then return nil, msg, code end
    end
  end
  local T = cache.number or txn_number(pager, seq)
  W_fill(w, 0, off + 1, self.S - 1)
  W_pack(w, off, "<B i8 i8", FREED, 0, T)
  if tw then
    W_pack(tw, toff + 1, "<i8", id)
  else
    head, hstamp = id, T
  end
  W_pack(aw, A_HOT, "<i8 i8 i8 i8 i8", count - 1, fresh, head, hstamp, id)
  return true
end

local function delete_auto(self, ...)
  return delete_work(self, self.pager:in_transaction(), ...)
end

-- Write the packed fields: list = {off1, fmt1, n1, v..., off2, ...}
-- flattened into `vals` with `spans` (see update).
local function write_fields(self, seq, pid, base, fields, vals)
  local w, msg, code = writer(self.pager, pid, seq)
  if not w then return nil, msg, code end
  for i, f in ipairs(fields) do
    local vs = vals[i]
    W_pack(w, base + f.offset, f.format, tunpack(vs, 1, vs.n))
  end
  return true
end

local function write_fields_auto(self, ...)
  return write_fields(self, self.pager:in_transaction(), ...)
end

local function write_one(self, seq, pid, pos, fmt, ...)
  local cache = cache_of(self.pager, seq)
  local w = cache[pid]
  if not w then
    local msg, code
    w, msg, code = writer(self.pager, pid, seq)
    if not w then return nil, msg, code end
  end
  W_pack(w, pos, fmt, ...)
  return true
end

--- write_one as a durable transaction of its own (no transaction is
-- open): the shortest way there, one barrier. A failure to begin, to
-- copy the page or to commit returns nil, msg, code and leaves the file
-- as it was (the transaction is closed, rolling back, on every way out).
local function write_one_durable(pager, pid, pos, fmt, ...)
  local tx <close>, msg, code = P_begin(pager)
  if not tx then return nil, msg, code end
  local w
  w, msg, code = P_write_protected(pager, pid)
  if not w then return nil, msg, code end
  W_pack(w, pos, fmt, ...)
  return T_commit(tx)
end

---------------------------------------------------------------------------
-- public methods

function flatten_error(fname, err)
  if type(err) == "string" then err = err:gsub("^[^\n]-:%d+: ", "") end
  raise(fname, "%s", tostring(err))
end

local function flattened(fname, ok, ...)
  if not ok then flatten_error(fname, ...) end
  return ...
end

local function insert_outside(self, ok, ...)
  if not ok then flatten_error("records:insert", ...) end
  return atomic(self.pager, insert_auto, self, ...)
end

--- The checked path of insert (see "the transaction's mirror").
local function insert_checked(self, t)
  local anchor = type(self) == "table" and self.anchor
  if not (anchor and V_alive(anchor)) then check_handle(self, "records:insert") end
  if self.readonly then raise("records:insert", "pager is read-only") end
  if type(t) ~= "table" then raise("records:insert", "record must be a table (got %s)", type(t)) end
  if self.indexes then return rindex.insert(self, t) end
  local seq = P_in_txn(self.pager)
  if not seq then return insert_outside(self, pcall(self.flatten, t)) end
  local id, msg, code = insert_work(self, seq, t, pcall(self.quick, t))
  if id and self.quick_into_all then make_mirror(self, seq) end
  return id, msg, code
end

--- Insert a record (a table of field values; missing fields get their
-- defaults). @return its id, or nil, msg, code
function Records:insert(t)
  local st = memos[self]
  if st then
    local id = st.fresh
    if id < st.lim then
      local off = st.off
      local w = st.w
      if pcall(st.put, t, w, off) or pcall(st.put_some, t, w, off) then
        st.fresh, st.off = id + 1, off + st.S
        return id
      end
    end
  end
  return insert_checked(self, t)
end

--- The record id as a table, or nil when id holds none.
function Records:get(id)
  local pages = type(self) == "table" and self.pages
  if not pages then check_handle(self, "records:get") end
  if mtype(id) ~= "integer" or id < 1 then bad_id("records:get", id) end
  local k = id - 1
  local n = self.n
  local idx = k // n
  local v = pages[idx]
  if not (v and V_alive(v)) then
    v = load_page(self, idx, "records:get")
    if not v then return nil end
  end
  return self.row(V_unpack(v, HDR + (k - idx * n) * self.S, self.fmt))
end

--- Change the fields named in `t` of record id; the others keep their
-- values. @return true, or nil, msg, code
function Records:update(id, t)
  local anchor = type(self) == "table" and self.anchor
  if not (anchor and V_alive(anchor)) then check_handle(self, "records:update") end
  if self.readonly then raise("records:update", "pager is read-only") end
  if self.indexes and type(t) == "table" then return rindex.update(self, id, t) end
  local _, pid, off = live_slot(self, id, "records:update")
  if type(t) ~= "table" then raise("records:update", "fields must be a table (got %s)", type(t)) end
  local fields, vals, byname = {}, {}, self.fields
  for name, value in pairs(t) do
    local f = byname[name]
    if not f then
      raise("records:update", "record %s has no field %s", self.rec.name, what(name))
    end
    fields[#fields + 1] = f
    vals[#vals + 1] = tpack(flattened("records:update", pcall(f.flatten, value)))
  end
  if #fields == 0 then return true end
  local seq = self.pager:in_transaction()
  if seq then return write_fields(self, seq, pid, off + 1, fields, vals) end
  return atomic(self.pager, write_fields_auto, self, pid, off + 1, fields, vals)
end

--- Delete record id. @return true, or nil, msg, code
function Records:delete(id)
  local anchor = type(self) == "table" and self.anchor
  if not (anchor and V_alive(anchor)) then check_handle(self, "records:delete") end
  if self.readonly then raise("records:delete", "pager is read-only") end
  if self.indexes then return rindex.delete(self, id) end
  local _, pid, off = live_slot(self, id, "records:delete")
  local seq = self.pager:in_transaction()
  if seq then return delete_work(self, seq, id, pid, off) end
  return atomic(self.pager, delete_auto, self, id, pid, off)
end

local function field_of(self, fname, name)
  local f = self.fields[name]
  if not f then raise(fname, "record %s has no field %s", self.rec.name, what(name)) end
  return f
end

--- One field of record id (reads only that field's bytes).
function Records:field(id, name)
  local anchor = type(self) == "table" and self.anchor
  if not (anchor and V_alive(anchor)) then check_handle(self, "records:field") end
  local f = field_of(self, "records:field", name)
  local v, _, off = live_slot(self, id, "records:field")
  return f.build(V_unpack(v, off + 1 + f.offset, f.format))
end

local function set_values(self, pid, pos, fmt, ok, ...)
  if not ok then flatten_error("records:set", ...) end
  local pager = self.pager
  local seq = P_in_txn(pager)
  if seq then return write_one(self, seq, pid, pos, fmt, ...) end
  return write_one_durable(pager, pid, pos, fmt, ...)
end

--- Set one field of record id (writes only that field's bytes).
-- @return true, or nil, msg, code
function Records:set(id, name, value)
  local anchor = type(self) == "table" and self.anchor
  if not (anchor and V_alive(anchor)) then check_handle(self, "records:set") end
  if self.readonly then raise("records:set", "pager is read-only") end
  local f = field_of(self, "records:set", name)
  if self.indexes then return rindex.set(self, id, f, value) end
  local _, pid, off = live_slot(self, id, "records:set")
  return set_values(self, pid, off + 1 + f.offset, f.format, pcall(f.flatten, value))
end

--- The number of records.
function Records:count()
  local anchor = type(self) == "table" and self.anchor
  if not (anchor and V_alive(anchor)) then check_handle(self, "records:count") end
  local seq = txn_seq(self.pager)
  local st = seq and mirror(self, seq)
  if st then return st.count0 + st.fresh - st.fresh0 end
  return (V_unpack(anchor, A_HOT, "<i8"))
end

--- Iterate `for id, row in t:scan([from])`: the records with ids >= from
-- (default 1), ascending. Each step reads the file as it is then, so
-- records inserted or deleted ahead of the loop are seen or skipped.
-- (The iterator holds nothing to release: no closing value.)
function Records:scan(from)
  check_handle(self, "records:scan")
  if from == nil then from = 1 end
  if mtype(from) ~= "integer" or from < 1 then
    raise("records:scan", "from must be a positive integer (got %s)", what(from))
  end
  local id = from - 1
  local n, S, fmt, row, pages = self.n, self.S, self.fmt, self.row, self.pages
  local function step()
    while true do
      id = id + 1
      local k = id - 1
      local idx = k // n
      local v = pages[idx]
      if not (v and V_alive(v)) then
        v = load_page(self, idx, "records:scan")
        if not v then return nil end
      end
      local slot = k - idx * n
      if V_unpack(v, HDR + slot * S, "<B") == LIVE then
        return id, row(V_unpack(v, HDR + slot * S, fmt))
      end
    end
  end
  return step, nil, nil, nil
end

--- The record description (mappedpages.schema's).
function Records:record()
  check_handle(self, "records:record")
  return self.rec
end

--- The table's name in the catalog.
function Records:name()
  check_handle(self, "records:name")
  return self.object_name
end

--- Every page of the table: source pages, directory pages (level 2,
-- then 1) and data pages (by index), from what the views show. Raises
-- (damaged) when the directory is broken.
local function all_pages(pager, apid)
  local a = view(pager, apid)
  local psize = a:unpack(12, "<I4")
  local npages = a:unpack(A_HOT + 48, "<I4")
  local E, Mtop = dir_sizes(psize)
  local src = object.pages(pager, apid, SRC_MAGIC)
  local l2s, l1s, data = {}, {}, {}
  for e0 = 0, Mtop - 1 do
    local p2 = a:unpack(A_TOP + 4 * e0, "<I4")
    if p2 ~= 0 then
      l2s[#l2s + 1] = p2 - 1
      local v2 = view(pager, p2 - 1)
      for e1 = 0, E - 1 do
        local p1 = v2:unpack(HDR + 4 * e1, "<I4")
        if p1 ~= 0 then
          l1s[#l1s + 1] = p1 - 1
          local v1 = view(pager, p1 - 1)
          for e2 = 0, E - 1 do
            local pd = v1:unpack(HDR + 4 * e2, "<I4")
            if pd ~= 0 then data[(e0 * E + e1) * E + e2] = pd - 1 end
          end
        end
      end
    end
  end
  return {source = src, l2 = l2s, l1 = l1s, data = data, npages = npages}
end

--- Every protected page the table owns: the anchor first, then its
-- source, directory (level 2, then 1) and data pages (for tools that
-- account for every page, such as `mappedpages check` and `map`).
function Records:page_ids()
  check_handle(self, "records:page_ids")
  local all = all_pages(self.pager, self.pid)
  local list = {self.pid}
  for _, part in ipairs({all.source, all.l2, all.l1}) do
    for _, pid in ipairs(part) do list[#list + 1] = pid end
  end
  for idx = 0, all.npages - 1 do
    if all.data[idx] then list[#list + 1] = all.data[idx] end
  end
  return rindex.page_ids(self, list)
end

--- Counts: {objects = records, bytes = records * record size, pages =
-- every page of the table (anchor, source, directory, data), page_bytes,
-- efficiency, page_size, record_size, slot_size, per_page, data_pages,
-- directory_pages, source_pages, generation}.
function Records:stats()
  check_handle(self, "records:stats")
  settle(self)
  local pager = self.pager
  local count, _, _, _, _, gen, npages = V_unpack(self.anchor, A_HOT, HOT_FMT)
  local src = object.pages(pager, self.pid, SRC_MAGIC)
  local E = self.E
  -- directory pages: one level-1 page per E data pages, one level-2 per E^2
  local l1 = (npages + E - 1) // E
  local l2 = (npages + E * E - 1) // (E * E)
  local ipages = rindex.page_count(self)
  local pages = 1 + #src + l1 + l2 + npages + ipages
  local psize = self.page_size
  return {objects = count, bytes = count * self.size, pages = pages, page_bytes = pages * psize,
          efficiency = count * self.size / (pages * psize), page_size = psize,
          record_size = self.size, slot_size = self.S, per_page = self.n, data_pages = npages,
          directory_pages = l1 + l2, source_pages = #src, index_pages = ipages,
          generation = gen}
end

function Records:__tostring()
  local anchor = self.anchor
  if not V_alive(anchor) then
    if not pcall(self.pager.page_size, self.pager) then
      return format("mappedpages.Records %q (its pager is closed)", self.object_name)
    end
    return format("mappedpages.Records %q (dropped)", self.object_name)
  end
  local ok, st = pcall(Records.stats, self)
  if not ok then return format("mappedpages.Records %q (unusable: %s)", self.object_name, tostring(st)) end
  return format("mappedpages.Records %q: %d record%s of %s (%d bytes, %d per page), "
                .. "%d page%s of %d bytes (efficiency %.2f)", self.object_name, st.objects,
                st.objects == 1 and "" or "s", self.rec.name, st.record_size, st.per_page,
                st.pages, st.pages == 1 and "" or "s", st.page_size, st.efficiency)
end

---------------------------------------------------------------------------
-- check

--- Check the whole table: the anchor, the stored schema (it must parse,
-- and match the handle's layout), the source chain, the directory (every
-- page of the right kind, owner and level, entries present exactly for
-- the data pages), every data page's header, every slot's state (fresh
-- slots past the last id and zeroed, deleted slots zeroed past their
-- node), the free queue (each deleted id once, stamps in order and not in
-- the future, head stamp and tail as the anchor says) and the count.
-- @return true, or false and a list of problems (strings)
function Records:check()
  check_handle(self, "records:check")
  settle(self)
  local pager, apid = self.pager, self.pid
  local bad, verdict = object.problems()
  local a = self.anchor
  local magic, _, psize, R, S, n = V_unpack(a, 0, GEOM_FMT)
  if magic ~= ANCHOR_MAGIC then bad("anchor: bad magic") return verdict() end
  if psize ~= #a then bad("anchor: page size %d, the file's is %d", psize, #a) return verdict() end
  local gS, gn = M.geometry(R, psize)
  if S ~= gS or n ~= gn or gn < 1 then
    bad("anchor: slot size %d and %d per page for %d-byte records", S, n, R)
    return verdict()
  end
  if R ~= self.size or S ~= self.S or n ~= self.n then bad("anchor: the layout differs from this handle's") end
  local count, fresh, head, hstamp, tail, gen, npages = V_unpack(a, A_HOT, HOT_FMT)
  if gen ~= self.gen then bad("anchor: generation %d, this handle's is %d", gen, self.gen) end
  if V_unpack(a, 28, "<I4") ~= 0 or a:read(92, 36) ~= srep("\0", 36) then bad("anchor: reserved bytes are not zero") end
  if fresh < 1 or fresh - 1 > npages * n or (npages > 0 and fresh - 1 <= (npages - 1) * n) then
    bad("anchor: %d ids handed out do not need %d data pages of %d", fresh - 1, npages, n)
  end
  local rec, why = stored_record(pager, apid)
  if not rec then
    bad("stored schema: %s", why)
  else
    local d = schema().diff(rec, self.rec)
    if d ~= nil then bad("stored schema differs from this handle's: %s", d) end
    if rec.size ~= R then bad("stored schema: %d-byte records, the anchor says %d", rec.size, R) end
  end
  local info = pager:info()
  -- stamps: at most this transaction's number inside one, else below the next
  local T = pager:in_transaction() and txn_number(pager) or info.txn

  local ok, pg = pcall(all_pages, pager, apid)
  if not ok then bad("the directory cannot be read: %s", tostring(pg)) return verdict() end
  local owned = {[apid] = "the anchor"}
  local function own(pid, what_)
    if owned[pid] then bad("page %d is %s and %s", pid, owned[pid], what_) end
    owned[pid] = what_
  end
  for _, pid in ipairs(pg.source) do own(pid, "a source page") end
  for _, pid in ipairs(pg.l2) do
    own(pid, "a level-2 directory page")
    local m, o, l = view(pager, pid):unpack(0, "<I4 I4 I4")
    if m ~= DIR_MAGIC or o ~= apid or l ~= 2 then bad("page %d: not a level-2 directory page of this table", pid) end
  end
  for _, pid in ipairs(pg.l1) do
    own(pid, "a level-1 directory page")
    local m, o, l = view(pager, pid):unpack(0, "<I4 I4 I4")
    if m ~= DIR_MAGIC or o ~= apid or l ~= 1 then bad("page %d: not a level-1 directory page of this table", pid) end
  end
  local states, live = {}, 0
  for idx, pid in pairs(pg.data) do
    if idx >= npages then bad("the directory names data page %d, past the %d pages", idx, npages) end
    own(pid, "data page " .. idx)
  end
  local zero = srep("\0", S)
  for idx = 0, npages - 1 do
    local pid = pg.data[idx]
    if not pid then
      bad("the directory has no data page %d", idx)
    else
      local v = view(pager, pid)
      local m, o, i, g = v:unpack(0, "<I4 I4 I4 I4")
      if m ~= DATA_MAGIC or o ~= apid or i ~= idx or g ~= gen & 0xFFFFFFFF then
        bad("page %d: not data page %d of this table (generation %d)", pid, idx, gen)
      else
        local bytes = v:read(HDR, n * S)
        for s = 0, n - 1 do
          local id = idx * n + s + 1
          local slot = bytes:sub(s * S + 1, (s + 1) * S)
          local flag = slot:byte(1)
          if id >= fresh then
            if slot ~= zero then bad("id %d: past the last id handed out, but not zero", id) end
          elseif flag == LIVE then
            live = live + 1
            states[id] = "live"
            if S > R + 1 and slot:sub(R + 2) ~= zero:sub(R + 2) then
              bad("id %d: bytes past the record are not zero", id)
            end
          elseif flag == FREED then
            states[id] = {sunpack("<i8 i8", slot, 2)}
            if slot:sub(NODE + 2) ~= zero:sub(NODE + 2) then bad("id %d: deleted, but not zeroed", id) end
          else
            bad("id %d: state %d (below the fresh id %d)", id, flag, fresh)
          end
        end
      end
    end
  end
  if pg.npages ~= npages then bad("page count changed while checking") end
  if live ~= count then bad("anchor counts %d records, the pages hold %d", count, live) end
  -- the free queue
  local seen, steps, prev, last, stamp0 = {}, 0, 0, 0, nil
  local id = head
  while id ~= 0 do
    local st = states[id]
    if type(st) ~= "table" then bad("the free queue reaches id %d, which is %s", id, st or "not handed out") break end
    if seen[id] then bad("the free queue returns to id %d", id) break end
    seen[id] = true
    steps = steps + 1
    local nxt, stamp = st[1], st[2]
    if stamp0 == nil then stamp0 = stamp end
    if stamp < prev then bad("the free queue's stamps go back at id %d (%d after %d)", id, stamp, prev) end
    if stamp > T then bad("id %d: deletion stamp %d is in the future (transaction %d)", id, stamp, T) end
    prev, last, id = stamp, id, nxt
  end
  if last ~= tail then bad("the free queue ends at %d, the anchor says %d", last, tail) end
  if stamp0 and stamp0 ~= hstamp then bad("the anchor's head stamp %d, the head's is %d", hstamp, stamp0) end
  if head == 0 and hstamp ~= 0 then bad("the free queue is empty, its head stamp %d", hstamp) end
  for k, st in pairs(states) do
    if type(st) == "table" and not seen[k] then bad("id %d is deleted but not on the free queue", k) end
  end
  local okx, err = pcall(rindex.check, self, bad, own, states, live)
  if not okx then bad("indexes: %s", tostring(err)) end
  return verdict()
end

---------------------------------------------------------------------------
-- open, migrate, drop

local function check_fits(fname, rec, page_size, name)
  local _, n = M.geometry(rec.size, page_size)
  if n < 1 then
    return nil, format("%s: %q: a %d-byte record %s does not fit a page of %d bytes "
                       .. "(at most %d bytes)", fname, name, rec.size, rec.name, page_size,
                       M.max_record_size(page_size)), "schema"
  end
  return true
end

--- Write a new table's anchor (page apid, zeroed) and source pages.
local function init_table(pager, apid, rec)
  local w, msg, code = writer(pager, apid)
  if not w then return nil, msg, code end
  local psize = pager:page_size()
  local blob = source_blob(rec)
  local ws
  ws, msg, code = new_source_pages(pager, blob, psize)
  if not ws then return nil, msg, code end
  local S, n = M.geometry(rec.size, psize)
  w:pack(0, GEOM_FMT, ANCHOR_MAGIC, 0, psize, rec.size, S, n)
  w:pack(A_HOT, HOT_FMT, 0, 1, 0, 0, 0, 0, 0)
  write_source(w, apid, ws, blob, psize)
  return true
end

--- Migrate the table anchored at apid from record old to record new (new
-- only appends fields), inside a transaction: every page is new, the old
-- ones are freed. @return true, or nil, msg, code with nothing changed
local function migrate(pager, apid, old, new)
  settle_pid(pager, apid)
  local psize = pager:page_size()
  local a = view(pager, apid)
  local _, _, _, _, S0, n0 = a:unpack(0, GEOM_FMT)
  local count, fresh, head, hstamp, tail, gen = a:unpack(A_HOT, HOT_FMT)
  local old_pages = all_pages(pager, apid)
  local S, n = M.geometry(new.size, psize)
  local E, Mtop = dir_sizes(psize)
  local ids = fresh - 1
  local npages = (ids + n - 1) // n
  if npages > Mtop * E * E then
    return nil, format("records.open: the migrated table would need %d data pages (at most %d)",
                       npages, Mtop * E * E), "full"
  end
  local nl1, nl2 = (npages + E - 1) // E, (npages + E * E - 1) // (E * E)
  -- every page and writer first
  local aw, msg, code = writer(pager, apid)
  if not aw then return nil, msg, code end
  local blob = source_blob(new)
  local made = {}
  local function fail(m, c)
    for i = #made, 1, -1 do access.free_page(pager, made[i]:id()) end
    return nil, m, c
  end
  local function take(k)
    local list = {}
    for i = 1, k do
      local w, m, c = access.new_page(pager)
      if not w then return nil, m, c end
      made[#made + 1] = w
      list[i] = w
    end
    return list
  end
  local src, data, l1s, l2s
  src, msg, code = new_source_pages(pager, blob, psize)
  if not src then return fail(msg, code) end
  for _, w in ipairs(src) do made[#made + 1] = w end
  data, msg, code = take(npages)
  if not data then return fail(msg, code) end
  l1s, msg, code = take(nl1)
  if not l1s then return fail(msg, code) end
  l2s, msg, code = take(nl2)
  if not l2s then return fail(msg, code) end
  -- write: records into the new data pages
  local nfmt, ofmt = "<B" .. new.format, "<B" .. old.format
  local obuild, nflatten = old.build, new.flatten
  local oviews = {}
  for idx, pid in pairs(old_pages.data) do oviews[idx] = view(pager, pid) end
  local g = (gen + 1) & 0xFFFFFFFF
  for idx, w in ipairs(data) do
    W_pack(w, 0, "<I4 I4 I4 I4", DATA_MAGIC, apid, idx - 1, g)
  end
  for id = 1, ids do
    local k = id - 1
    local ov = oviews[k // n0]
    local ooff = HDR + (k % n0) * S0
    local w = data[k // n + 1]
    local off = HDR + (k % n) * S
    local flag = V_unpack(ov, ooff, "<B")
    if flag == LIVE then
      local t = tpack(V_unpack(ov, ooff, ofmt))
      W_pack(w, off, nfmt, LIVE, nflatten(obuild(tunpack(t, 2, t.n - 1))))
    elseif flag == FREED then
      W_pack(w, off, "<B i8 i8", FREED, V_unpack(ov, ooff + 1, "<i8 i8"))
    end
  end
  -- the directory
  for i, w in ipairs(l2s) do W_pack(w, 0, "<I4 I4 I4", DIR_MAGIC, apid, 2) local _ = i end
  for i, w in ipairs(l1s) do
    W_pack(w, 0, "<I4 I4 I4", DIR_MAGIC, apid, 1)
    local e = i - 1
    W_pack(l2s[e // E + 1], HDR + 4 * (e % E), "<I4", w:id() + 1)
  end
  for idx, w in ipairs(data) do
    local e = idx - 1
    W_pack(l1s[e // E + 1], HDR + 4 * (e % E), "<I4", w:id() + 1)
  end
  W_fill(aw, 0, A_TOP, psize - A_TOP)
  for i, w in ipairs(l2s) do W_pack(aw, A_TOP + 4 * (i - 1), "<I4", w:id() + 1) end
  -- the anchor
  W_pack(aw, 0, GEOM_FMT, ANCHOR_MAGIC, 0, psize, new.size, S, n)
  W_pack(aw, A_HOT, HOT_FMT, count, fresh, head, hstamp, tail, gen + 1, npages)
  write_source(aw, apid, src, blob, psize)
  -- the old pages go
  for _, list in ipairs {old_pages.source, old_pages.l2, old_pages.l1} do
    local ok, m, c = access.free_pages(pager, list)
    if not ok then return nil, m, c end
  end
  for _, pid in pairs(old_pages.data) do
    local ok, m, c = access.free_page(pager, pid)
    if not ok then return nil, m, c end
  end
  return true
end

local function make_handle(pager, name, pid, rec)
  local self = object.handle(Records, pager, name, pid)
  local a = self.anchor
  local magic, _, psize, R, S, n = V_unpack(a, 0, GEOM_FMT)
  self.rec, self.size, self.S, self.n, self.page_size = rec, R, S, n, psize
  self.gen = V_unpack(a, A_HOT + 40, "<i8")
  self.E, self.M = dir_sizes(psize)
  self.fmt = "<B" .. rec.format
  self.flatten, self.build, self.quick = rec.flatten, rec.build, rec.quick or rec.flatten
  self.quick_into_all, self.quick_into = rec.quick_into_all, rec.quick_into
  self.mkey = mirror_key(pid)       -- its mirror's key in a writer cache
  self.pad = S > R + 1
  local fields = {}
  for _, f in ipairs(rec.fields) do fields[f.name] = f end
  self.fields = fields
  local nv = select("#", rec.flatten({}))
  self.row = make_row(rec.build, nv)
  self.pages, self.pids = {}, {}
  self.readonly = access.readonly(pager)
  self.indexes = false              -- rindex.attach sets the list, if any
  rindex.register(self)
  local _ = magic
  return self
end

--- make_handle and the table's indexes: the handle, or nil, msg, "corrupt".
-- `changed`: open changed the indexes (mark the other handles).
local function handle_of(pager, name, pid, rec, changed, in_txn)
  local self = make_handle(pager, name, pid, rec)
  local ok, why = rindex.attach(self)
  if not ok then return nil, format("records.open: %q: %s", name, why), "corrupt" end
  if changed then rindex.changed(self, in_txn) end
  return self
end

--- Open the table at pid (record `stored` in the file) as record `rec`
-- with the indexes of spec: migrate when rec appends fields (d =
-- "appends"), build and drop indexes, in one transaction.
local function open_existing(pager, name, pid, stored, rec, spec, d)
  local plan, why = rindex.plan(pager, pid, spec)
  if not plan then return nil, format("records.open: %q: %s", name, why), "corrupt" end
  if d == nil and not plan.changed then return handle_of(pager, name, pid, rec) end
  if access.readonly(pager) then
    if d ~= nil then
      return nil, format("records.open: %q: the schema appends fields, which needs a migration, "
                         .. "and the pager is read-only", name), "schema"
    end
    return nil, format("records.open: %q: the indexes asked for differ from the table's (%s), "
                       .. "and the pager is read-only", name, plan.what), "readonly"
  end
  local in_txn = P_in_txn(pager) ~= nil
  local done, msg, code = atomic(pager, function()
    settle_pid(pager, pid)
    local st, m, c
    if plan.changed then
      st, m, c = rindex.prepare(pager, name, pid, stored, plan)
      if not st then return nil, m, c end
    end
    if d ~= nil then
      local ok
      ok, m, c = migrate(pager, pid, stored, rec)
      if not ok then
        if st then rindex.abandon(st) end
        return nil, m, c
      end
    end
    if st then return rindex.commit(st) end
    return true
  end)
  if not done then return nil, msg, code end
  return handle_of(pager, name, pid, rec, plan.changed, in_txn)
end

--- Open an existing table with the record stored in it (records.open
-- without a schema).
local function open_stored(pager, name, opts)
  if pager:root() == 0 then
    return nil, format("records.open: no object named %q (and no schema to create it)", name), "not_found"
  end
  local cat, msg, code = require("mappedpages.catalog").open(pager)
  if not cat then return nil, msg, code end
  local e = cat:get(name)
  if not e then
    return nil, format("records.open: no object named %q (and no schema to create it)", name), "not_found"
  end
  if e.kind ~= KIND then
    return nil, format("records.open: %q is a %s, not a %s", name, e.kind, KIND), "kind"
  end
  local magic, _, ps = view(pager, e.pid):unpack(0, GEOM_FMT)
  if magic ~= ANCHOR_MAGIC or ps ~= pager:page_size() then
    return nil, format("records.open: %q: the anchor is not a record table's", name), "corrupt"
  end
  local rec, why = stored_record(pager, e.pid)
  if not rec then return nil, format("records.open: %q: %s", name, why), "corrupt" end
  if opts == nil then return handle_of(pager, name, e.pid, rec) end
  local spec, msg2, code2 = rindex.spec("records.open", rec, opts, pager:page_size(), name)
  if not spec then return nil, msg2, code2 end
  return open_existing(pager, name, e.pid, rec, rec, spec, nil)
end

local OPTS = {unique = true, index = true}

--- Open the record table `name` of pager with the record of `src`
-- (schema text, a parsed schema or a record description; `recname` names
-- the record when the schema declares several; without src, an existing
-- table with the record stored in it: "not_found" if none), creating the table when
-- the name is free (in the open transaction, or as a durable transaction
-- of its own). A schema that appends fields to the stored one migrates
-- the table (one transaction).
-- @return a Records handle, or nil, msg, code: "schema" (a bad schema, a
-- record too large for a page, a schema that differs from the stored one
-- other than by appended fields), "kind", "not_found", "corrupt",
-- "not_catalog", or the environment's codes
function M.open(pager, name, src, recname, opts)
  if type(pager) ~= "userdata" then
    raise("records.open", "pager expected (got %s)", type(pager))
  end
  object.check_pager("records.open", pager, 1)
  object.check_name("records.open", name, 1)
  if type(recname) == "table" and opts == nil then recname, opts = nil, recname end
  if opts ~= nil then
    if type(opts) ~= "table" then raise("records.open", "opts must be a table (got %s)", type(opts)) end
    for k in pairs(opts) do
      if not OPTS[k] then raise("records.open", "unknown option %s", what(k)) end
    end
  end
  if src == nil then return open_stored(pager, name, opts) end
  local rec, msg = resolve("records.open", src, recname)
  if not rec then return nil, msg, "schema" end
  local psize = pager:page_size()
  local ok, m2, c2 = check_fits("records.open", rec, psize, name)
  if not ok then return nil, m2, c2 end
  local spec
  spec, m2, c2 = rindex.spec("records.open", rec, opts, psize, name)
  if not spec then return nil, m2, c2 end
  local pid, created
  pid, created, c2 = object.open(pager, name, KIND, "records.open", function(apid)
    local done, m, c = init_table(pager, apid, rec)
    if not done or #spec == 0 then return done, m, c end
    local st
    st, m, c = rindex.prepare(pager, name, apid, rec, assert(rindex.plan(pager, apid, spec)))
    if not st then return nil, m, c end
    return rindex.commit(st)
  end)
  if not pid then return nil, created, c2 end
  if created then return handle_of(pager, name, pid, rec) end
  local a = view(pager, pid)
  local magic, _, ps = a:unpack(0, GEOM_FMT)
  if magic ~= ANCHOR_MAGIC or ps ~= psize then
    return nil, format("records.open: %q: the anchor is not a record table's", name), "corrupt"
  end
  local stored, why = stored_record(pager, pid)
  if not stored then return nil, format("records.open: %q: %s", name, why), "corrupt" end
  local d = schema().diff(stored, rec)
  if d ~= nil and d ~= "appends" then
    return nil, format("records.open: %q: the schema differs from the table's: %s", name, d), "schema"
  end
  return open_existing(pager, name, pid, stored, rec, spec, d)
end

--- Drop the record table `name`: free every page it owns and its name,
-- in one transaction. Handles of it raise afterwards.
-- @return true, or nil, msg, code ("not_found", "kind", environment)
function M.drop(pager, name)
  if type(pager) ~= "userdata" then
    raise("records.drop", "pager expected (got %s)", type(pager))
  end
  return object.drop(pager, name, KIND, "records.drop", function(apid)
    settle_pid(pager, apid)
    local ok, pg = pcall(all_pages, pager, apid)
    if not ok then return nil, "records.drop: " .. tostring(pg), "corrupt" end
    local list, msg, code = rindex.drop(pager, apid)
    if not list then return nil, msg, code end
    for _, l in ipairs {pg.source, pg.l2, pg.l1} do
      for _, pid in ipairs(l) do list[#list + 1] = pid end
    end
    for _, pid in pairs(pg.data) do list[#list + 1] = pid end
    return list
  end)
end

rindex.bind {A_INDEX = A_INDEX, A_GEN = A_HOT + 40, source = SOURCE, class = Records,
             make_handle = make_handle, live_slot = live_slot, next_id = next_id,
             insert_work = insert_work, delete_work = delete_work, write_fields = write_fields,
             stale = stale, flatten_error = flatten_error}

return M
