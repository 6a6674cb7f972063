--- mappedpages.records_index: the indexes of a record table.
--
--     local players = assert(mp.records.open(pager, "players", src,
--                                            {unique = {"name"}, index = {"score"}}))
--     players:find("name", "ada")                 --> id, or nil
--     for id, row in players:range("score", 1, 2) do ... end   -- 1 <= score < 2
--
-- mappedpages.records calls this module from its open, drop, check,
-- page_ids and stats, and from insert, update, set and delete of a handle
-- whose table has indexes (one `if self.indexes` on those paths: a table
-- without indexes takes none of this). It gives the handles find and range.
--
-- What can be indexed: a field of a scalar type (u8 ... u64, i8 ... i64,
-- f32, f64, bool, char[N], enum); an array or an embedded record raises,
-- as do an unknown field name, a field named twice or in both lists, and
-- an option that is not a list of names. A key must fit a B-tree key, so
-- a char[N] field on a page too small for 2N + 2 bytes (2N + 19 for a
-- plain index) returns nil, msg, "schema". Index order is the field's
-- order: numbers by value (u64 as unsigned, NaN after every number and
-- equal to itself), false before true, strings as bytes, enums in
-- declaration order.
--
-- Layout. Each index is a mappedpages.btree made by btree.create and owned
-- by the table: a unique index maps key(value) to the id (an i8), a plain
-- one key(value) .. key(id) to the id, so equal values sort by id (key is
-- btree.key; NaN's key is the single byte 0x22, after every number's).
-- The anchor's u32 at offset 88 is the pid + 1 of the index list page (0:
-- no index):
--
--     0   u32      magic "mprx"          4  u32  owner: the anchor's pid
--     8   u32      count                 12 u32  zero
--     16  count entries of 8 bytes: u16 field number (1-based, in the
--         record's fields: migrations only append, so it stays), u8
--         unique (0 or 1), u8 zero, u32 the pid of the tree's anchor
--
-- The list changes only in records.open, which builds the indexes asked
-- for and not in the list (from the rows, checking a unique index for
-- duplicates before writing anything), drops those in the list and not
-- asked for (freeing their pages), rewrites the list and adds 2^32 to the
-- anchor's generation (the high 32 bits count index changes; data pages
-- keep the low 32 bits, the migrations): a handle whose generation differs
-- raises on insert, delete and a page's first read, and records.open
-- marks the other handles of the table in this process, so that their
-- update and set check it too. Opening with the stored schema (records.open
-- without src) and no opts keeps the stored indexes.
--
-- Changes. An insert, update or delete changes the trees first and the
-- row last, inside one transaction (the caller's, or one of its own), so
-- a rollback restores rows and indexes together. A duplicate returns nil,
-- msg, "duplicate" before anything is written. A failure of the
-- environment in a tree or in the row undoes the tree changes made so far
-- (deleting a key just put; putting back a key just deleted) and returns
-- nil, msg, code; inside the caller's transaction, should that undo fail
-- too (the disk full), the message says so and the transaction must be
-- rolled back.
-- @module mappedpages.records_index

local access = require "mappedpages.access"
local object = require "mappedpages.object"
local core = require "mappedpages.core"
local codec = require "mappedpages.btree_key"

local ipairs, pairs, pcall, setmetatable, tostring, type =
      ipairs, pairs, pcall, setmetatable, tostring, type
local mtype, SIGN = math.type, math.mininteger
local format, spack, sunpack = string.format, string.pack, string.unpack
local concat, tpack, tunpack, sort = table.concat, table.pack, table.unpack, table.sort

local atomic, writer, view = access.atomic, access.writer, access.view
local V_unpack = core._View_methods.unpack
local W_unpack, W_pack = core._Writer_methods.unpack, core._Writer_methods.pack
local P_in_txn = core._Pager_methods.in_transaction
local key = codec.key

local M = {}

--- This file's source (mappedpages.records skips its frames in errors).
M.SOURCE = debug.getinfo(1, "S").source

local LIST_MAGIC = sunpack("<I4", "mprx")
local ENTRY_FMT, ENTRY = "<I2 B B I4", 8
local HDR = 16
local NAN_KEY = "\x22"           -- after every number's key (0x1F, 0x20, 0x21)
local GEN_STEP = 1 << 32
local INDEXABLE = {u8 = true, u16 = true, u32 = true, u64 = true, i8 = true, i16 = true,
                   i32 = true, i64 = true, f32 = true, f64 = true, bool = true, char = true,
                   enum = true}

local R                          -- mappedpages.records' internals (M.bind)
local raise, check_handle
local btree_mod
local function btree()
  if not btree_mod then btree_mod = require "mappedpages.btree" end
  return btree_mod
end

local function what(v)
  if type(v) == "number" or type(v) == "string" then return format("%q", v) end
  return tostring(v)
end

---------------------------------------------------------------------------
-- keys

--- The key of a field's value as the table stores it (what get gives).
local function kv_of(f)
  local kind = f.kind
  if kind == "u64" then return function(v) return key(v ~ SIGN) end end
  if kind == "f32" or kind == "f64" then
    return function(v)
      if v ~= v then return NAN_KEY end
      return key(v)
    end
  end
  if kind == "enum" then
    local pos = {}
    for i, m in ipairs(f.members) do pos[m] = i - 1 end
    return function(v) return key(pos[v] or v) end
  end
  return key
end

--- The key of a range bound (any value of the field's order, checked).
local function bound_of(f, kv)
  local kind = f.kind
  local function bad(which, v, expected)
    raise("records:range", "%s for field %s (%s) must be %s (got %s)", which, f.name, f.type,
          expected, what(v))
  end
  if kind == "u64" then
    return function(v, which)
      if mtype(v) ~= "integer" then bad(which, v, "an integer (a u64 bit pattern)") end
      return kv(v)
    end
  elseif kind == "bool" then
    return function(v, which)
      if type(v) ~= "boolean" then bad(which, v, "a boolean") end
      return kv(v)
    end
  elseif kind == "char" then
    return function(v, which)
      if type(v) ~= "string" then bad(which, v, "a string") end
      return kv(v)
    end
  elseif kind == "enum" then
    local members = {}
    for _, m in ipairs(f.members) do members[m] = true end
    return function(v, which)
      if not (members[v] or mtype(v) == "integer") then bad(which, v, "a member name or an integer") end
      return kv(v)
    end
  end
  return function(v, which)
    if type(v) ~= "number" or v ~= v then bad(which, v, "a number (not NaN)") end
    return kv(v)
  end
end

--- A value as the field stores it: checked (raising naming fname) and
-- rounded as the table would (f32, u64 floats, char[N]'s trailing zeros).
local function stored_value(f, v, fname)
  local ok, x = pcall(f.flatten, v)
  if not ok then R.flatten_error(fname, x) end
  return f.build((sunpack(f.format, spack(f.format, x))))
end

local function entry_key(ix, kv, id)
  if ix.unique then return kv end
  return kv .. key(id)
end

local function id_value(id) return spack("<i8", id) end

---------------------------------------------------------------------------
-- the list in the file

--- The table's index list: a list of {fieldno =, unique =, pid =}, the
-- list page's pid (nil: none) and nil, or nil, nil, a problem. Never raises.
local function read_list(pager, apid)
  local p = V_unpack(view(pager, apid), R.A_INDEX, "<I4")
  if p == 0 then return {}, nil end
  local ok, v = pcall(view, pager, p - 1)
  if not ok then return nil, nil, format("the index list page %d is not allocated", p - 1) end
  local magic, owner, n, zero = V_unpack(v, 0, "<I4 I4 I4 I4")
  if magic ~= LIST_MAGIC or owner ~= apid or zero ~= 0 then
    return nil, nil, format("page %d is not this table's index list", p - 1)
  end
  if n < 1 or HDR + n * ENTRY > #v then
    return nil, nil, format("the index list page %d counts %d indexes", p - 1, n)
  end
  local list = {}
  for i = 1, n do
    local fieldno, unique, z, pid = V_unpack(v, HDR + (i - 1) * ENTRY, ENTRY_FMT)
    if unique > 1 or z ~= 0 then return nil, nil, format("index list entry %d is damaged", i) end
    list[i] = {fieldno = fieldno, unique = unique == 1, pid = pid}
  end
  return list, p - 1
end

local function label(name, f, unique)
  return format("%s.%s (%s index)", name, f.name, unique and "unique" or "plain")
end

--- Give a handle its indexes from the file: self.indexes (a list, nil
-- when none) and self.index_of[field name]. @return true, or nil, problem
function M.attach(self)
  self.index_of = {}
  local list, _, problem = read_list(self.pager, self.pid)
  if not list then return nil, problem end
  if #list == 0 then return true end
  local ixs = {}
  for i, e in ipairs(list) do
    local f = self.rec.fields[e.fieldno]
    if not (f and INDEXABLE[f.kind]) then
      return nil, format("index list entry %d names field %d, which cannot be indexed", i, e.fieldno)
    end
    local ok, t = pcall(btree().at, self.pager, e.pid, label(self.object_name, f, e.unique))
    if not ok then return nil, format("index of %s: %s", f.name, tostring(t)) end
    local kv = kv_of(f)
    local ix = {field = f, name = f.name, unique = e.unique, fieldno = e.fieldno, pid = e.pid,
                tree = t, kv = kv, bound = bound_of(f, kv)}
    ixs[i] = ix
    self.index_of[f.name] = ix
  end
  self.indexes = ixs
  return true
end

---------------------------------------------------------------------------
-- open: which indexes, build and drop

local function names_of(fname, rec, opts, which, seen, out, unique)
  local list = opts[which]
  if list == nil then return end
  if type(list) ~= "table" then
    raise(fname, "opts.%s must be a list of field names (got %s)", which, type(list))
  end
  for i = 1, #list do
    local name = list[i]
    if type(name) ~= "string" then
      raise(fname, "opts.%s[%d] must be a field name (got %s)", which, i, what(name))
    end
    local f = rec.by_name[name]
    if not f then raise(fname, "opts.%s: record %s has no field %q", which, rec.name, name) end
    if not INDEXABLE[f.kind] then
      raise(fname, "opts.%s: field %s is a %s, which cannot be indexed: only scalar fields "
            .. "(numbers, bool, char[N], enum) can, not arrays or embedded records", which, name,
            f.type)
    end
    if seen[name] then
      raise(fname, "opts.%s: field %s is named twice (in opts.%s too)", which, name, seen[name])
    end
    seen[name] = which
    local fieldno
    for k, g in ipairs(rec.fields) do if g == f then fieldno = k end end
    out[#out + 1] = {fieldno = fieldno, unique = unique, field = f}
  end
  for k in pairs(list) do
    if mtype(k) ~= "integer" or k < 1 or k > #list then
      raise(fname, "opts.%s must be a list of field names (it has the key %s)", which, what(k))
    end
  end
end

--- The indexes opts asks for on rec: a list of {fieldno =, unique =,
-- field =} (empty for no opts), or nil, msg, "schema" for a key too long
-- for the page size. Raises for misuse.
function M.spec(fname, rec, opts, page_size, name)
  local out, seen = {}, {}
  if opts == nil then return out end
  names_of(fname, rec, opts, "unique", seen, out, true)
  names_of(fname, rec, opts, "index", seen, out, false)
  local max = btree().max_key_for(page_size)
  if HDR + #out * ENTRY > page_size then
    raise(fname, "%d indexes do not fit a list page of %d bytes", #out, page_size)
  end
  for _, s in ipairs(out) do
    local f = s.field
    local len = f.kind == "char" and 2 * f.size + 2 or 17
    if not s.unique then len = len + 17 end
    if len > max then
      return nil, format("%s: %q: field %s (%s) cannot be indexed on %d-byte pages: its keys "
                         .. "take up to %d bytes, a B-tree key at most %d", fname, name, f.name,
                         f.type, page_size, len, max), "schema"
    end
  end
  return out
end

--- Compare what spec asks for with the table's list: a plan {changed =,
-- spec =, keep = {[i] = pid}, drops = {entries}, list = current, lpid =,
-- what = a description}, or nil, problem (a damaged list).
function M.plan(pager, apid, spec)
  local list, lpid, problem = read_list(pager, apid)
  if not list then return nil, problem end
  local keep, used, words = {}, {}, {}
  for i, s in ipairs(spec) do
    for j, e in ipairs(list) do
      if not used[j] and e.fieldno == s.fieldno and e.unique == s.unique then
        keep[i], used[j] = e.pid, true
      end
    end
    if not keep[i] then words[#words + 1] = "build " .. s.field.name end
  end
  local drops = {}
  for j, e in ipairs(list) do
    if not used[j] then
      drops[#drops + 1] = e
      words[#words + 1] = "drop index " .. j
    end
  end
  return {changed = #words > 0, spec = spec, keep = keep, drops = drops, lpid = lpid,
          what = concat(words, ", ")}
end

local function destroy_all(trees)
  for i = #trees, 1, -1 do trees[i]:destroy() end
end

--- Inside a transaction: build the plan's new trees from the rows (read
-- with record `stored`; fields it lacks, appended by a migration in the same
-- transaction, take their defaults),
-- checking unique ones for duplicates first, and get the pages the list
-- needs. Nothing is visible yet (commit writes the list). @return a state
-- for commit or abandon, or nil, msg, code having changed nothing
function M.prepare(pager, name, apid, stored, plan)
  local builds = {}
  for i, s in ipairs(plan.spec) do
    if not plan.keep[i] then
      local f = s.field
      local kv = kv_of(f)
      builds[#builds + 1] = {i = i, spec = s, kv = kv, def = stored.by_name[f.name] == nil
                             and kv(stored_value(f, f.default, "records.open")) or nil,
                             seen = s.unique and {} or nil, keys = {}}
    end
  end
  if #builds > 0 then
    local h = R.make_handle(pager, name, apid, stored)
    for id, row in h:scan() do
      for _, b in ipairs(builds) do
        local v = row[b.spec.field.name]
        local kv = b.def or b.kv(v)
        if b.seen then
          local other = b.seen[kv]
          if other then
            return nil, format("records.open: %q: ids %d and %d have the same %s (%s): a unique "
                               .. "index cannot be built", name, other, id, b.spec.field.name,
                               what(v == nil and b.spec.field.default or v)), "duplicate"
          end
          b.seen[kv] = id
        end
        local keys = b.keys
        keys[#keys + 1] = {b.spec.unique and kv or kv .. key(id), id}
      end
    end
  end
  local aw, msg, code = writer(pager, apid)
  if not aw then return nil, msg, code end
  local lw, lnew
  if #plan.spec > 0 then
    if plan.lpid then
      lw, msg, code = writer(pager, plan.lpid)
    else
      lw, msg, code = access.new_page(pager)
      lnew = lw
    end
    if not lw then return nil, msg, code end
  end
  local trees = {}
  local st = {pager = pager, apid = apid, aw = aw, lw = lw, lnew = lnew, plan = plan,
              trees = trees, pids = {}}
  for _, b in ipairs(builds) do
    local pid
    pid, msg, code = btree().create(pager)
    local t = pid and btree().at(pager, pid, label(name, b.spec.field, b.spec.unique))
    if not t then M.abandon(st) return nil, msg, code end
    trees[#trees + 1] = t
    st.pids[b.i] = pid
    sort(b.keys, function(x, y) return x[1] < y[1] end)
    for _, e in ipairs(b.keys) do
      local ok
      ok, msg, code = t:put(e[1], id_value(e[2]))
      if not ok then M.abandon(st) return nil, msg, code end
    end
  end
  return st
end

--- Undo prepare (after a later step failed).
function M.abandon(st)
  destroy_all(st.trees)
  if st.lnew then access.free_page(st.pager, st.lnew:id()) end
end

--- Write the list prepared in st, drop the trees no longer asked for and
-- step the generation. @return true, or nil, msg, code
function M.commit(st)
  local pager, aw, lw, plan = st.pager, st.aw, st.lw, st.plan
  local spec = plan.spec
  if lw then
    W_pack(lw, 0, "<I4 I4 I4 I4", LIST_MAGIC, st.apid, #spec, 0)
    for i, s in ipairs(spec) do
      W_pack(lw, HDR + (i - 1) * ENTRY, ENTRY_FMT, s.fieldno, s.unique and 1 or 0, 0,
             plan.keep[i] or st.pids[i])
    end
    local used = HDR + #spec * ENTRY
    lw:fill(0, used, pager:page_size() - used)
    W_pack(aw, R.A_INDEX, "<I4", lw:id() + 1)
  else
    W_pack(aw, R.A_INDEX, "<I4", 0)
  end
  W_pack(aw, R.A_GEN, "<i8", W_unpack(aw, R.A_GEN, "<i8") + GEN_STEP)
  for _, e in ipairs(plan.drops) do
    local ok, msg, code = btree().at(pager, e.pid):destroy()
    if not ok then return nil, msg, code end
  end
  if not lw and plan.lpid then return access.free_page(pager, plan.lpid) end
  return true
end

-- Every handle made, so that an open that changes a table's indexes can
-- mark the others of that table (weak: handles go when unused).
local handles = setmetatable({}, {__mode = "k"})
local CHECKED = {}               -- the indexes of a marked handle without any

function M.register(self) handles[self] = true end

--- The indexes of the table behind self changed (in records.open):
-- every other handle of it takes the checked path (see the header); so
-- does self when `also` (the change is part of the caller's transaction,
-- which may still roll it back).
function M.changed(self, also)
  for h in pairs(handles) do
    if h.pager == self.pager and h.pid == self.pid and (h ~= self or also) then
      h.indexes = h.indexes or CHECKED
    end
  end
end

--- For records.drop: destroy the table's trees. @return the other pages
-- to free (the list page), or nil, msg, code
function M.drop(pager, apid)
  local list, lpid, problem = read_list(pager, apid)
  if not list then return nil, "records.drop: " .. problem, "corrupt" end
  for _, e in ipairs(list) do
    local ok, t = pcall(btree().at, pager, e.pid)
    if ok then
      local done, msg, code = t:destroy()
      if not done then return nil, msg, code end
    end
  end
  return {lpid}
end

--- The pages the indexes own (the list page, each tree's pages).
function M.page_ids(self, out)
  local list, lpid = read_list(self.pager, self.pid)
  if not list then return out end
  if lpid then out[#out + 1] = lpid end
  for _, e in ipairs(list) do
    local ok, t = pcall(btree().at, self.pager, e.pid)
    if ok then
      for _, p in ipairs((t:page_ids())) do out[#out + 1] = p end
    end
  end
  return out
end

--- The number of pages the indexes own.
function M.page_count(self)
  local ixs = self.indexes
  if not ixs or #ixs == 0 then return 0 end
  local n = 1
  for _, ix in ipairs(ixs) do n = n + ix.tree:stats().pages end
  return n
end

--- For Records:check: the list and every tree (its own check, its pages
-- owned once, an entry for every live id and no other). states[id] is
-- "live" for the live ids; bad and own are check's.
function M.check(self, bad, own, states, live)
  local pager = self.pager
  local list, lpid, problem = read_list(pager, self.pid)
  if not list then bad("indexes: %s", problem) return end
  if lpid then own(lpid, "the index list") end
  local mine = self.indexes
  local n_mine = mine and #mine or 0
  if n_mine ~= #list then
    bad("indexes: the file lists %d, this handle has %d (open it again)", #list, n_mine)
  end
  for i, e in ipairs(list) do
    local f = self.rec.fields[e.fieldno]
    local ix = mine and mine[i]
    if not (f and INDEXABLE[f.kind]) then
      bad("index %d: field %d cannot be indexed", i, e.fieldno)
    elseif ix and (ix.pid ~= e.pid or ix.unique ~= e.unique or ix.fieldno ~= e.fieldno) then
      bad("index %d: the file's entry differs from this handle's", i)
    else
      local ok, t = pcall(btree().at, pager, e.pid, label(self.object_name, f, e.unique))
      if not ok then
        bad("index of %s: %s", f.name, tostring(t))
      else
        for _, p in ipairs((t:page_ids())) do own(p, "a page of the index of " .. f.name) end
        local good, why = t:check()
        if not good then bad("index of %s: %s", f.name, concat(why or {}, "; ")) end
        local kv, fname = kv_of(f), f.name
        local unique = e.unique
        for id, st in pairs(states) do
          if st == "live" then
            local row = self:get(id)
            local k = kv(row[fname])
            if not unique then k = k .. key(id) end
            local got = t:get(k)
            if got ~= id_value(id) then
              bad("index of %s: id %d (%s %s) is %s", fname, id, fname, what(row[fname]),
                  got and format("under id %d", sunpack("<i8", got)) or "missing")
            end
          end
        end
        if t:count() ~= live then
          bad("index of %s holds %d entries for %d records", fname, t:count(), live)
        end
      end
    end
  end
end

---------------------------------------------------------------------------
-- insert, update, delete

local function check_gen(self, fname)
  if V_unpack(self.anchor, R.A_GEN, "<i8") ~= self.gen then R.stale(self, fname) end
end

local function duplicate(self, fname, ix, v, other)
  return nil, format("%s: %q: %s %s is taken (id %d): the %s index is unique", fname,
                     self.object_name, ix.name, what(v), other, ix.name), "duplicate"
end

-- Undo the tree changes in `done` ({tree, key, value}: value nil for a
-- put, to delete; else the value of a deleted key, to put back), newest
-- first; then return nil, msg, code (msg noting a failed undo).
local function undo(done, msg, code)
  for i = #done, 1, -1 do
    local d = done[i]
    local ok, m
    if d[3] == nil then ok, m = d[1]:delete(d[2]) else ok, m = d[1]:put(d[2], d[3]) end
    if ok == nil then
      msg = format("%s; and undoing the indexes' changes failed too (%s): roll the "
                   .. "transaction back", msg, tostring(m))
      break
    end
  end
  return nil, msg, code
end

local function insert_op(self, vals)
  local pager, rec = self.pager, self.rec
  local seq = P_in_txn(pager)
  local row = rec.decode(spack(rec.format, tunpack(vals, 2, vals.n)))
  local ixs = self.indexes
  local kvs = {}
  for i, ix in ipairs(ixs) do
    local kv = ix.kv(row[ix.name])
    kvs[i] = kv
    if ix.unique then
      local other = ix.tree:get(kv)
      if other then return duplicate(self, "records:insert", ix, row[ix.name], sunpack("<i8", other)) end
    end
  end
  local id = R.next_id(self, seq)
  local done, idv = {}, id_value(id)
  for i, ix in ipairs(ixs) do
    local k = entry_key(ix, kvs[i], id)
    local ok, msg, code = ix.tree:put(k, idv)
    if not ok then return undo(done, msg, code) end
    done[#done + 1] = {ix.tree, k}
  end
  local got, msg, code = R.insert_work(self, seq, nil, tunpack(vals, 1, vals.n))
  if not got then return undo(done, msg, code) end
  if got ~= id then error(format("records %q: insert took id %d, not %d", self.object_name, got, id)) end
  return got
end

--- Records:insert of a table with indexes (the handle and t checked).
function M.insert(self, t)
  local vals = tpack(pcall(self.flatten, t))
  if not vals[1] then R.flatten_error("records:insert", vals[2]) end
  check_gen(self, "records:insert")
  return atomic(self.pager, insert_op, self, vals)
end

local function update_op(self, id, pid, off, fields, vals, news, fname)
  local pager = self.pager
  local seq = P_in_txn(pager)
  local old = self:get(id)
  local moves = {}
  for _, ix in ipairs(self.indexes) do
    local nv = news[ix.name]
    if nv ~= nil then
      local okv, nkv = ix.kv(old[ix.name]), ix.kv(nv)
      if okv ~= nkv then
        if ix.unique then
          local other = ix.tree:get(nkv)
          if other then return duplicate(self, fname, ix, nv, sunpack("<i8", other)) end
        end
        moves[#moves + 1] = {ix.tree, entry_key(ix, okv, id), entry_key(ix, nkv, id)}
      end
    end
  end
  local w, msg, code = writer(pager, pid, seq)      -- the row's write cannot fail after this
  if not w then return nil, msg, code end
  local done, idv = {}, id_value(id)
  for _, m in ipairs(moves) do
    local ok
    ok, msg, code = m[1]:put(m[3], idv)
    if not ok then return undo(done, msg, code) end
    done[#done + 1] = {m[1], m[3]}
  end
  for _, m in ipairs(moves) do
    local ok
    ok, msg, code = m[1]:delete(m[2])
    if ok == nil then return undo(done, msg, code) end
    done[#done + 1] = {m[1], m[2], idv}
  end
  return R.write_fields(self, seq, pid, off + 1, fields, vals)
end

local function changes(self, id, fname, fields, values)
  local _, pid, off = R.live_slot(self, id, fname)
  local vals, news, index_of = {}, {}, self.index_of
  for i, f in ipairs(fields) do
    local vs = tpack(pcall(f.flatten, values[i]))
    if not vs[1] then R.flatten_error(fname, vs[2]) end
    vals[i] = tpack(tunpack(vs, 2, vs.n))
    if index_of[f.name] then news[f.name] = f.build((sunpack(f.format, spack(f.format, vs[2])))) end
  end
  if #fields == 0 then return true end
  check_gen(self, fname)
  return atomic(self.pager, update_op, self, id, pid, off, fields, vals, news, fname)
end

--- Records:update of a table with indexes (the handle checked, t a table).
function M.update(self, id, t)
  R.live_slot(self, id, "records:update")
  local fields, values, byname = {}, {}, self.fields
  for name, value in pairs(t) do
    local f = byname[name]
    if not f then raise("records:update", "record %s has no field %s", self.rec.name, what(name)) end
    fields[#fields + 1], values[#values + 1] = f, value
  end
  return changes(self, id, "records:update", fields, values)
end

--- Records:set of a table with indexes (the handle and field f checked).
function M.set(self, id, f, value)
  return changes(self, id, "records:set", {f}, {value})
end

local function delete_op(self, id, pid, off)
  local seq = P_in_txn(self.pager)
  local row = self:get(id)
  local done, idv = {}, id_value(id)
  for _, ix in ipairs(self.indexes) do
    local k = entry_key(ix, ix.kv(row[ix.name]), id)
    local ok, msg, code = ix.tree:delete(k)
    if ok == nil then return undo(done, msg, code) end
    if ok then done[#done + 1] = {ix.tree, k, idv} end
  end
  local ok, msg, code = R.delete_work(self, seq, id, pid, off)
  if not ok then return undo(done, msg, code) end
  return true
end

--- Records:delete of a table with indexes (the handle checked).
function M.delete(self, id)
  local _, pid, off = R.live_slot(self, id, "records:delete")
  check_gen(self, "records:delete")
  return atomic(self.pager, delete_op, self, id, pid, off)
end

---------------------------------------------------------------------------
-- find and range

local function index_for(self, fname, field, unique)
  local ix = self.index_of and self.index_of[field]
  if ix and (ix.unique or not unique) then return ix end
  if not self.fields[field] then
    raise(fname, "record %s has no field %s", self.rec.name, what(field))
  end
  if ix then
    raise(fname, "field %s has a plain index, not a unique one (t:range(%q, lo, hi) finds "
          .. "its values)", field, field)
  end
  raise(fname, "field %s has no %sindex (records.open(pager, name, src, {%s = {%q}}) makes one)",
        field, unique and "unique " or "", unique and "unique" or "index", field)
end

local function install(Records)
  --- The id of the record whose unique field `field` holds `value`, or nil.
  function Records:find(field, value)
    check_handle(self, "records:find")
    local ix = index_for(self, "records:find", field, true)
    check_gen(self, "records:find")
    local got = ix.tree:get(ix.kv(stored_value(ix.field, value, "records:find")))
    if got == nil then return nil end
    return (sunpack("<i8", got))
  end

  --- Iterate `for id, row in t:range(field, lo, hi)`: the records whose
  -- indexed field is >= lo and < hi (either nil: open), in field order
  -- (equal values of a plain index by id). Each step reads the file as it
  -- is then (the tree's range). No closing value.
  function Records:range(field, lo, hi)
    check_handle(self, "records:range")
    local ix = index_for(self, "records:range", field, false)
    check_gen(self, "records:range")
    local klo = lo ~= nil and ix.bound(lo, "lo") or nil
    local khi = hi ~= nil and ix.bound(hi, "hi") or nil
    local nxt, it = ix.tree:range(klo, khi)
    local function step()
      local k, v = nxt(it)
      if k == nil then return nil end
      local id = sunpack("<i8", v)
      return id, self:get(id)
    end
    return step, nil, nil, nil
  end

end

--- Called once by mappedpages.records with its internals: A_INDEX,
-- A_GEN, source, class, make_handle, live_slot, next_id, insert_work,
-- delete_work, write_fields, stale, flatten_error.
function M.bind(internals)
  R = internals
  raise, check_handle = object.misuse(M.SOURCE, internals.source)
  install(internals.class)
end

return M
