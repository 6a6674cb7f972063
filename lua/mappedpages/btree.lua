--- mappedpages.btree: an ordered map from byte-string keys to values.
--
--     local t = assert(mp.btree.open(pager, "index"))    -- opens or creates
--     t:put("apple", "red")        t:get("apple")        --> "red"
--     t:delete("apple")            --> true (false: no such key)
--     t:count()   t:first()  t:last()                    -- k, v (nil: empty)
--     for k, v in t:range("a", "b") do ... end           -- "a" <= k < "b"
--     for k, v in t:range(nil, "b", {reverse = true}) do ... end
--     t:put(mp.btree.key("ada", 1815), "...")            -- tuple keys
--     mp.btree.drop(pager, "index")
--
-- Keys are strings of 1 to t:max_key() bytes (313 for 1 KiB pages, 1,337
-- for 4 KiB), ordered as bytes; values are any string. A B+tree: every
-- node is a protected page, the leaves hold the keys and values, the
-- internal nodes separators and children, all leaves at the same depth,
-- so a lookup reads height pages (log n). A put that overfills a node
-- splits it; a delete that leaves a node under a quarter full merges it
-- with a neighbour, or shares the neighbour's entries when both do not fit
-- one page; a root with one child gives way to it. Values up to a bound
-- (a leaf cell holds at most a third of a page, so a leaf holds at least
-- three) live in the leaf; larger ones in the tree's own heap (an
-- embedded mappedpages.heap, made with the first large value).
--
-- Trees owned by another object (a record table's indexes): `btree.create
-- (pager)` makes a tree with no name, anchored at a new protected page
-- whose pid the owner keeps in its own pages; `btree.at(pager, pid)` opens
-- it, `t:page_ids()` lists every page it owns (for the owner's check) and
-- `t:destroy()` frees them all. The tree's pages name their anchor as
-- owner, as a named tree's do.
--
-- Layout. The anchor (the tree's protected page):
--
--     0   8 bytes  magic "mpbtree1"
--     8   u32      page size
--     12  u32      max key
--     16  u32      root: pid + 1 of the root node (0: the tree is empty)
--     20  u32      height: levels of nodes (0: empty; 1: the root is a leaf)
--     24  i8       count: keys
--     32  i8       changes: + 1 at every put and delete (for iterators)
--     40  u32      node pages
--     44  u32      zero
--     48  i8       bytes: the sum of the keys' and values' sizes
--     56  u32      pid + 1 of the heap's anchor (0: no large value yet)
--
-- A node (a protected page), 32 bytes of header, then its cells packed in
-- key order from offset 32 to `used` (zeros after):
--
--     0   4 bytes  magic "mpbn"        4   u32  owner: the anchor's pid
--     8   i8       stamp: the number of the transaction that last wrote it
--     16  u8       level: 0 for a leaf, the leaves' parents 1, ...
--     18  u16      n: cells            20  u32  used: the end of the cells
--     24  u32      internal: pid + 1 of the leftmost child; leaf: 0
--     28  u32      zero
--
-- A leaf cell is `string.pack("<B s2 s2", flag, key, value)`: flag 0 and
-- the value itself, or flag 1 and `<i8 I4` (heap ref, size) of a large
-- value. An internal cell is `<I4 s2`: the pid of the child that
-- holds the keys >= the cell's separator (and below the next one's); the
-- leftmost child, for keys below the first separator, is in the header.
-- Separators are the shortest prefix of a right node's first key that is
-- above the left node's last key.
--
-- Caches, and why a rollback needs no hook (see mappedpages.access). A
-- handle decodes the nodes it reads into Lua tables (keys, values,
-- children) and keeps them in two caches (and the state of its last put):
--   * the transaction's mirror (in access.cache, so it dies with the
--     transaction, and shared by every handle of the tree): every node the
--     open transaction changed, and the anchor's counters as it has them;
--     the only place such a node is looked up;
--   * on the handle, the transaction of its last put (self.txn: the
--     mirror, the anchor's writer and counters, see txn_state), so the
--     next put of that transaction looks none of them up; it is used only
--     while the transaction is the same and the mirror still the cache's;
--   * the committed cache, per pager and tree: nodes as the last commits
--     left them, each with the stamp read from its page. A node's stamp is
--     the number of the transaction that wrote it; a committed state never
--     holds two contents of a page with one stamp, and a content read
--     outside the mirror is committed (the open transaction's own are all
--     in the mirror), so a cached node is used only while its page's stamp
--     is the one it was decoded with: one `view:unpack` per node visited.
--     After a commit it takes the mirror's nodes (access.after_commit).
-- A lookup thus costs a few binding calls per level, one of them the binary
-- search of the node's keys (core._search, in C: bytes compared with
-- memcmp), whatever the page size. Leaves are sorted with core._sort.
--
-- Writes. Every page a transaction changes is written once per
-- transaction: a change is made to the mirror's Lua tables, and the commit
-- writes each changed node whole and the anchor's counters
-- (access.before_commit; check, stats, page_ids, drop and destroy write them
-- out first, as they read the pages). What can fail is done when the
-- change is made: the first change of a page takes its writer (one per
-- page and transaction: access.writer), so the commit's writing out only
-- writes. A put into a leaf appends the key (its idx, key -> position,
-- finds it again; the leaf is sorted when something needs the order: a
-- split, an iterator, the commit). A put or delete that keeps its leaf
-- between a quarter and all of its page changes the leaf in place, and
-- so does a put that splits a leaf the transaction changed already into a
-- parent it changed too that has room for the separator (the new page
-- and its writer are taken first, the split undone if the heap call
-- fails). Any other plans the whole change on copies of the nodes first (splits,
-- merges, shares, height), takes every new page and every writer it
-- needs, and only then makes the planned nodes the mirror's: a failure (a
-- full disk) returns nil, msg, code and changes nothing, inside the
-- caller's transaction too.
--
-- Iterating while the tree changes: allowed. A range iterator goes on
-- after the last key it returned in the tree as it is at each step (it
-- seeks again when the tree changed), so deleting the key just visited
-- works, and a key put ahead of the iteration is visited.
-- @module mappedpages.btree

local access = require "mappedpages.access"
local object = require "mappedpages.object"
local core = require "mappedpages.core"
local codec = require "mappedpages.btree_key"
local heaps = require "mappedpages.heap"

local ipairs, pairs, pcall, select, setmetatable, tostring, type =
      ipairs, pairs, pcall, select, setmetatable, tostring, type
local format, spack, sunpack, sub, byte =
      string.format, string.pack, string.unpack, string.sub, string.byte
local concat, insert, remove, move =
      table.concat, table.insert, table.remove, table.move

local raise, atomic, writer, view, txn_number, cache_of =
      access.raise, access.atomic, access.writer, access.view, access.txn_number, access.cache
local check_handle = object.check_handle
local txn_seq, C_search, C_sort, C_index = core._txn_seq, core._search, core._sort, core._index
local C_strings, C_search_strings, C_strings_insert =
      core._strings, core._search_strings, core._strings_insert
local V_unpack, V_read, V_alive =
      core._View_methods.unpack, core._View_methods.read, core._View_methods.alive
local W_pack, W_pack_rows, W_fill =
      core._Writer_methods.pack, core._Writer_methods.pack_rows, core._Writer_methods.fill

local M = {}

local KIND = "btree"
M.key, M.unkey = codec.key, codec.unkey

-- Anchor.
local ANCHOR_MAGIC = "mpbtree1"
local A_ROOT, A_COUNT, A_CHANGES, A_NODES, A_BYTES = 16, 24, 32, 40, 48
local HOT_FMT = "<I4 I4 i8 i8"           -- root, height, count, changes (at 16)
local ALL_FMT = "<I4 I4 i8 i8 I4 I4 i8"  -- the same, nodes, zero, bytes

-- Nodes.
local NODE_MAGIC = "mpbn"
local HDR = 32
local NODE_HDR_FMT = "<c4 I4 i8 B x I2 I4 I4 I4"
local N_STAMP, N_INFO = 8, 16
local INFO_FMT = "<B x I2 I4 I4"         -- level, n, used, leftmost + 1
local LEAF_CELL, INNER_CELL, LARGE_REF = "<B s2 s2", "<I4 s2", "<i8 I4"
local LEAF_FIXED, INNER_FIXED, REF_SIZE = 5, 6, 12

local CACHE_LIMIT = 16384                -- decoded nodes kept per tree

--- The geometry of a page size: usable bytes U, the largest cell C (a
-- third of U: a node always holds three), the underflow bound (U / 4) and
-- the largest key (a large-value cell of it is C).
local function geometry(page_size)
  local U = page_size - HDR
  local C = U // 3
  return U, C, U // 4, C - LEAF_FIXED - REF_SIZE
end

M.max_key_for = function(page_size) return (select(4, geometry(page_size))) end

local Tree = {}
Tree.__index = Tree
Tree.__name = "mappedpages.BTree"

-- Committed caches: pager -> {[anchor pid] = {[pid] = node, n = count}}.
local committed_of = setmetatable({}, {__mode = "k"})

local function committed(pager, apid)
  local per = committed_of[pager]
  if not per then
    per = {}
    committed_of[pager] = per
  end
  local c = per[apid]
  if not c then
    c = {n = 0}
    per[apid] = c
  end
  return c
end

---------------------------------------------------------------------------
-- handles

local function init_anchor(pager, pid)
  local w, msg, code = writer(pager, pid)
  if not w then return nil, msg, code end
  local size = pager:page_size()
  w:pack(0, "<c8 I4 I4", ANCHOR_MAGIC, size, (select(4, geometry(size))))
  return true
end

local function make_handle(pager, name, pid, fname)
  local self = object.handle(Tree, pager, name, pid)
  local a = self.anchor
  local magic, psize, maxkey = a:unpack(0, "<c8 I4 I4")
  if magic ~= ANCHOR_MAGIC or psize ~= #a then
    raise(fname, 2, "page %d is not the anchor of a B-tree", pid)
  end
  local U, C, LOW = geometry(psize)
  self.psize, self.cap, self.cmax, self.low, self.maxkey = psize, U, C, LOW, maxkey
  self.mkey = "btree mirror " .. pid
  self.writable = not access.readonly(pager)
  self.cc = committed(pager, pid)
  return self
end

--- Open the tree `name`, creating it when the name is free.
-- @return a handle, or `nil, msg, code` ("kind", "not_found", environment)
function M.open(pager, name)
  local pid, msg, code = object.open(pager, name, KIND, "btree.open", function(pid)
    return init_anchor(pager, pid)
  end)
  if not pid then return nil, msg, code end
  return make_handle(pager, name, pid, "btree.open")
end

--- Make a tree with no name, owned by the caller (see the header).
-- @return its anchor's pid, or `nil, msg, code`
function M.create(pager)
  object.check_pager("btree.create", pager)
  access.check_writable(pager, "btree.create")
  return atomic(pager, function()
    local w, msg, code = access.new_page(pager)
    if not w then return nil, msg, code end
    local size = pager:page_size()
    w:pack(0, "<c8 I4 I4", ANCHOR_MAGIC, size, (select(4, geometry(size))))
    return w:id()
  end)
end

--- A handle of the tree anchored at pid (made by create). Raises when pid
-- is not a B-tree's anchor. `label` names it in messages.
function M.at(pager, pid, label)
  object.check_pager("btree.at", pager)
  object.check_integer("btree.at", "pid", pid, 0)
  if not pcall(view, pager, pid) then
    raise("btree.at", 1, "page %d is not an allocated protected page", pid)
  end
  return make_handle(pager, label or format("btree@%d", pid), pid, "btree.at")
end

function Tree:max_key()
  check_handle(self, "btree:max_key")
  return self.maxkey
end

function Tree:count()
  check_handle(self, "btree:count")
  local seq = txn_seq(self.pager)
  local m = seq and cache_of(self.pager, seq)[self.mkey]
  if m and m.a then return m.a.count end
  return (V_unpack(self.anchor, A_COUNT, "<i8"))
end

---------------------------------------------------------------------------
-- nodes: decoding, the caches, searching

-- A decoded node: {pid =, stamp =, level =, n =, used =, keys = {},
-- vals = {} (leaf: a string, or {ref =, size =} for a large value),
-- kids = {} (internal: n + 1 pids)}. A leaf the open transaction changed
-- (in the mirror) may also have idx = {[key] = i} and, while its last keys
-- were appended out of order, unsorted = true (see put_op).
local function decode(self, v, pid, stamp)
  local level, n, used, left = V_unpack(v, N_INFO, INFO_FMT)
  if used < HDR or used > self.psize then
    raise("btree", 3, "tree %q: node %d is damaged (used %d)", self.object_name, pid, used)
  end
  local raw = V_read(v, HDR, used - HDR)
  local keys, pos = {}, 1
  local d = {pid = pid, stamp = stamp, level = level, n = n, used = used, keys = keys}
  if level == 0 then
    local vals = {}
    for i = 1, n do
      local flag, k, vb
      flag, k, vb, pos = sunpack(LEAF_CELL, raw, pos)
      keys[i] = k
      if flag == 0 then
        vals[i] = vb
      else
        local ref, size = sunpack(LARGE_REF, vb)
        vals[i] = {ref = ref, size = size}
      end
    end
    if pos + HDR - 1 ~= used then
      raise("btree", 3, "tree %q: node %d is damaged (cells end at %d, used %d)",
            self.object_name, pid, pos + HDR - 1, used)
    end
    d.vals = vals
  else
    local kids = {left - 1}
    for i = 1, n do
      kids[i + 1], keys[i], pos = sunpack(INNER_CELL, raw, pos)
    end
    d.kids = kids
  end
  return d
end

--- The node at pid: the mirror's (m: the open transaction's, or nil), or
-- the committed cache's when its stamp still matches, or decoded now.
local function node(self, pid, m)
  local d = m and m[pid]
  if d then return d end
  local v = view(self.pager, pid)
  local stamp = V_unpack(v, N_STAMP, "<i8")
  local cc = self.cc
  d = cc[pid]
  if d and d.stamp == stamp then return d end
  d = decode(self, v, pid, stamp)
  if cc.n >= CACHE_LIMIT then
    for k in pairs(cc) do cc[k] = nil end
    cc.n = 0
  end
  if cc[pid] == nil then cc.n = cc.n + 1 end
  cc[pid] = d
  return d
end

--- The open transaction's mirror of this tree (created), or nil outside
-- a transaction; and the transaction's writer cache.
local function mirror(self, seq)
  if not seq then return nil end
  local cache = cache_of(self.pager, seq)
  local m = cache[self.mkey]
  if not m then
    m = {cache = cache}
    cache[self.mkey] = m
  end
  return m, cache
end

--- In internal node d: the index into kids of the child for key (the
-- largest i with keys[i - 1] <= key, i.e. the first with keys[i] > key).
-- Searched in d.dir, a packed copy of its keys (core._strings) made at the
-- first search: an internal node changes far less often than it is
-- searched; whatever changes its keys in place changes d.dir the same way
-- (put_split, core._strings_insert).
local function dir_of(d)
  local dir = C_strings(d.keys, d.n)
  d.dir = dir
  return dir
end

local function child_index(d, key)
  return (C_search_strings(d.dir or dir_of(d), key, true))
end

--- In a leaf: the first i with keys[i] >= key (n + 1 if none), and
-- whether keys[i] is key.
local function lower_bound(keys, n, key) return C_search(keys, n, key) end

--- Put a leaf whose last keys were appended out of order (unsorted, see
-- put_op) back in key order; its idx is dropped (index_of makes it again).
local function sort_leaf(d)
  C_sort(d.keys, d.n, d.vals)
  d.idx, d.unsorted = nil, nil       -- made again when a put needs it (index_of)
  return d
end

--- The node at pid, in key order.
local function snode(self, pid, m)
  local d = node(self, pid, m)
  if d.unsorted then sort_leaf(d) end
  return d
end

--- Descend to key's leaf: the leaf, and the path (nodes and child indexes
-- from the root) when `path` and `idx` are given (the leaf then in key
-- order; without, it may be unsorted: look key up in its idx).
local function descend(self, m, root, height, key, path, idx)
  local pid = root - 1
  for lvl = 1, height - 1 do
    local d = node(self, pid, m)
    local c = child_index(d, key)
    if path then path[lvl], idx[lvl] = d, c end
    pid = d.kids[c]
  end
  local leaf = node(self, pid, m)
  if path then
    if leaf.unsorted then sort_leaf(leaf) end
    path[height] = leaf
  end
  return leaf
end

---------------------------------------------------------------------------
-- large values: a leaf cell holds at most C bytes; a value that would make
-- it larger lives in the tree's heap (mappedpages.heap, embedded: its
-- anchor's pid + 1 at anchor offset 56, 0 until the first large value),
-- and the cell holds its ref and size. The tree reaches the heap through
-- these functions only:
--   heap_of(self) -> the heap's handle, or nil (none yet)
--   store(self, aw, old, value, large) -> the cell's value (the string, or
--       {ref =, size =}) after the one heap call it needs (put, replace or
--       free), or nil, msg, code having changed nothing: called once the
--       operation holds every other page and writer, so that it is the
--       last step that can fail
--   large_get(self, v) -> the bytes

local A_HEAP = 56

local function heap_of(self)
  local hp = V_unpack(self.anchor, A_HEAP, "<I4") - 1
  if hp < 0 then return nil end
  local h = self.heap
  if h and h.pid == hp and h.anchor:alive() then return h end
  h = assert(heaps.attach(self.pager, hp, self.object_name .. " (heap)"))
  self.heap = h
  return h
end

local function store(self, aw, old, value, large)
  local oldref = type(old) == "table" and old.ref or nil
  if not large then
    if oldref then
      local ok, msg, code = heap_of(self):free(oldref)
      if not ok then return nil, msg, code end
    end
    return value
  end
  local h, made = heap_of(self), nil
  if not h then
    local hp, msg, code = heaps.embed(self.pager)
    if not hp then return nil, msg, code end
    W_pack(aw, A_HEAP, "<I4", hp + 1)
    h, made = heap_of(self), hp
  end
  local ref, msg, code
  if oldref then ref, msg, code = h:replace(oldref, value) else ref, msg, code = h:put(value) end
  if not ref then
    if made then
      heaps.destroy(self.pager, made)
      W_pack(aw, A_HEAP, "<I4", 0)
    end
    return nil, msg, code
  end
  return {ref = ref, size = #value}
end

local function large_get(self, v) return heap_of(self):get(v.ref) end

---------------------------------------------------------------------------
-- planning structural changes on copies of nodes

-- A cell's value is a string or, for a large value, {ref =, size =},
-- whose length (#) is 0: so `#v` with type() asked only for an empty one
-- (a call less per cell).
local function leaf_cell_size(k, v)
  local vl = #v
  if vl == 0 and type(v) == "table" then vl = REF_SIZE end
  return LEAF_FIXED + #k + vl
end

local function copy(t) return move(t, 1, #t, 1, {}) end

--- A copy of node d to plan on; size: its cells' bytes, kept up to date
-- by the planning (nil: count them again, size_of).
local function draft(d)
  if d.unsorted then sort_leaf(d) end
  local c = {pid = d.pid, level = d.level, keys = copy(d.keys), size = d.used - HDR}
  if d.level == 0 then c.vals = copy(d.vals) else c.kids = copy(d.kids) end
  return c
end

local function cell_size(t, i)
  if t.level == 0 then return leaf_cell_size(t.keys[i], t.vals[i]) end
  return INNER_FIXED + #t.keys[i]
end

local function count_size(t)
  local s = 0
  for i = 1, #t.keys do s = s + cell_size(t, i) end
  return s
end

local function size_of(t)
  local s = t.size
  if s then return s end
  s = count_size(t)
  t.size = s
  return s
end

--- The shortest prefix of b that is above a (a < b).
local function separator(a, b)
  local i, n = 1, #a
  while i <= n and byte(a, i) == byte(b, i) do i = i + 1 end
  return sub(b, 1, i)
end

--- Divide node t's cells in two halves by bytes: t keeps the left, the
-- right's keys and vals or kids go to `r` (its pid set by the caller);
-- returns the separator for the parent.
local function divide(t, r)
  local keys, n = t.keys, #t.keys
  local total = size_of(t)
  local half, acc, j = total / 2, 0, n + 1
  if t.level == 0 then
    local vals = t.vals
    for i = 1, n do
      local v = vals[i]
      local vl = #v
      if vl == 0 and type(v) == "table" then vl = REF_SIZE end
      local s = LEAF_FIXED + #keys[i] + vl
      if acc + s > half then j = i break end
      acc = acc + s
    end
  else
    for i = 1, n do
      local s = INNER_FIXED + #keys[i]
      if acc + s > half then j = i break end
      acc = acc + s
    end
  end
  -- both halves keep a cell (an internal node's right half a key); acc:
  -- the bytes of cells 1 to j - 1
  local top = t.level == 0 and n or n - 1
  if j > top or j < 2 then
    if j > top then j = top end
    if j < 2 then j = 2 end
    acc = 0
    for i = 1, j - 1 do acc = acc + cell_size(t, i) end
  end
  r.level = t.level
  t.size = acc
  if t.level == 0 then
    r.size = total - acc
    r.keys = move(keys, j, n, 1, {})
    r.vals = move(t.vals, j, n, 1, {})
    for i = n, j, -1 do keys[i], t.vals[i] = nil, nil end
    return separator(keys[j - 1], r.keys[1])
  end
  local sep = keys[j]
  r.size = total - acc - INNER_FIXED - #sep
  r.keys = move(keys, j + 1, n, 1, {})
  r.kids = move(t.kids, j + 1, n + 1, 1, {})
  for i = n + 1, j + 1, -1 do t.kids[i] = nil end
  for i = n, j, -1 do keys[i] = nil end
  return sep
end

--- Plan a structural change: `path` the nodes from the root to the leaf,
-- `idx` the child indexes, `leaf` a draft of the changed leaf. New pages
-- are allocated (listed in `made`, to be given back on failure).
-- @return the drafts to write (a list, none freed), the pids to free, the
-- new root's pid (nil: empty) and height; or `nil, msg, code`
local function plan(self, m, path, idx, leaf, made)
  local pager, cap, low = self.pager, self.cap, self.low
  local drafts, list, frees = {}, {}, {}
  local function want(t) if not t.want then t.want = true list[#list + 1] = t end end
  local function new_draft()
    local pid, msg, code = pager:alloc_protected()
    if not pid then return nil, msg, code end
    made[#made + 1] = pid
    local t = {pid = pid}
    want(t)
    return t
  end
  local h = #path
  drafts[h] = leaf
  local root, height = path[1].pid, h
  for lvl = h, 1, -1 do
    local t = drafts[lvl]
    want(t)
    local size = size_of(t)
    if lvl == 1 then
      if size > cap then
        local r, msg, code = new_draft()
        if not r then return nil, msg, code end
        local sep = divide(t, r)
        local top
        top, msg, code = new_draft()
        if not top then return nil, msg, code end
        top.level, top.keys, top.kids = t.level + 1, {sep}, {t.pid, r.pid}
        top.size = INNER_FIXED + #sep
        root, height = top.pid, h + 1
      elseif #t.keys == 0 then
        t.freed = true
        frees[#frees + 1] = t.pid
        if t.level == 0 then root, height = nil, 0 else root, height = t.kids[1], h - 1 end
      end
      break
    end
    local parent = drafts[lvl - 1] or draft(path[lvl - 1])
    drafts[lvl - 1] = parent
    local ci = idx[lvl - 1]
    if size > cap then
      local r, msg, code = new_draft()
      if not r then return nil, msg, code end
      local sep = divide(t, r)
      local psize = size_of(parent)
      insert(parent.keys, ci, sep)
      insert(parent.kids, ci + 1, r.pid)
      parent.size = psize + INNER_FIXED + #sep
    elseif size < low then
      local li = ci > 1 and ci - 1 or ci         -- merge children li and li + 1
      local left, right
      if li == ci then
        left, right = t, draft(node(self, parent.kids[ci + 1], m))
      else
        left, right = draft(node(self, parent.kids[li], m)), t
      end
      want(left)
      want(right)
      local lk, rk = left.keys, right.keys
      local nl = #lk
      left.size, parent.size = nil, nil
      if left.level == 0 then
        move(rk, 1, #rk, nl + 1, lk)
        move(right.vals, 1, #rk, nl + 1, left.vals)
      else
        lk[nl + 1] = parent.keys[li]
        move(rk, 1, #rk, nl + 2, lk)
        move(right.kids, 1, #right.kids, #left.kids + 1, left.kids)
      end
      if size_of(left) <= cap then
        remove(parent.keys, li)
        remove(parent.kids, li + 1)
        right.freed = true
        frees[#frees + 1] = right.pid
      else
        parent.keys[li] = divide(left, right)
      end
    else
      break
    end
  end
  local out = {}
  for _, t in ipairs(list) do if not t.freed then out[#out + 1] = t end end
  return out, frees, root, height
end

-- serialize's formats by cell count for an internal node (the header's,
-- then n cells), and its argument list (reused: one W_pack per node).
local inner_fmts, args = {}, {}
local tunpack = table.unpack

--- Write node t whole into writer w (a leaf in key order): the header and
-- every cell, then zeros after the cells.
local function serialize(self, w, t)
  local keys, n = t.keys, t.n
  local pos
  if t.level == 0 then
    local vals = t.vals
    pos = W_pack(w, 0, NODE_HDR_FMT, NODE_MAGIC, self.pid, t.stamp, 0, n, t.used, 0, 0)
    local large = false
    for i = 1, n do
      local v = vals[i]
      if #v == 0 and type(v) == "table" then large = true break end
    end
    if large then
      -- the cells' flags and value bytes in columns of their own
      local flags, bytes = {}, {}
      for i = 1, n do
        local v = vals[i]
        if type(v) == "table" then
          flags[i], bytes[i] = 1, spack(LARGE_REF, v.ref, v.size)
        else
          flags[i], bytes[i] = 0, v
        end
      end
      pos = W_pack_rows(w, pos, LEAF_CELL, n, flags, keys, bytes)
    else
      pos = W_pack_rows(w, pos, LEAF_CELL, n, 0, keys, vals)
    end
  else
    local fmt = inner_fmts[n]
    if not fmt then
      fmt = NODE_HDR_FMT .. ("I4s2"):rep(n)
      inner_fmts[n] = fmt
    end
    local kids = t.kids
    local j = 9
    for i = 1, n do
      args[j], args[j + 1] = kids[i + 1], keys[i]
      j = j + 2
    end
    args[1], args[2], args[3], args[4], args[5], args[6], args[7], args[8] =
      NODE_MAGIC, self.pid, t.stamp, t.level, n, t.used, kids[1] + 1, 0
    pos = W_pack(w, 0, fmt, tunpack(args, 1, j - 1))
  end
  if pos ~= t.used then W_pack(w, N_INFO + 4, "<I4", pos) end
  if pos < self.psize then W_fill(w, 0, pos, self.psize - pos) end
end

local function give_back(pager, made, msg, code)
  for _, pid in ipairs(made) do access.free_page(pager, pid) end
  return nil, msg, code
end

--- The writer of pid for this transaction (cache: access.cache's table).
local function writer_of(pager, cache, pid, seq)
  local w = cache[pid]
  if w then return w end
  return writer(pager, pid, seq)
end

--- Write out the open transaction's changes to this tree (mirror m):
-- every node it changed, once, and the anchor's counters. Every writer
-- was taken when its node changed, so this only writes.
local function flush(self, m)
  local a = m.a
  if not (a and a.dirty) then return true end
  local pager, cache = self.pager, m.cache
  for pid in pairs(m.dirty) do
    local d = m[pid]
    if d then
      local w, msg, code = writer_of(pager, cache, pid)
      if not w then return nil, msg, code end
      if d.unsorted then sort_leaf(d) end
      serialize(self, w, d)
    end
  end
  m.dirty = {}
  local aw, msg, code = writer_of(pager, cache, self.pid)
  if not aw then return nil, msg, code end
  W_pack(aw, A_ROOT, ALL_FMT, a.root, a.height, a.count, a.changes, a.nodes, 0, a.bytes)
  a.dirty = false
  return true
end

--- After a commit: the nodes the transaction wrote are committed as they
-- are in the mirror (stamped with its number), so the committed cache
-- takes them.
local function promote(self, m)
  local cc = self.cc
  for pid, d in pairs(m) do
    if type(pid) == "number" then
      if cc.n >= CACHE_LIMIT then
        for k in pairs(cc) do cc[k] = nil end
        cc.n = 0
      end
      if cc[pid] == nil then cc.n = cc.n + 1 end
      if d.unsorted then sort_leaf(d) end
      d.idx = nil
      cc[pid] = d
    end
  end
end

--- The open transaction's anchor state for a change (m: the mirror):
-- {root =, height =, count =, changes =, nodes =, bytes =, dirty =}, read
-- from the anchor at the transaction's first change, which also has the
-- commit write the changes out (flush) and the committed cache take them.
local function changing(self, m, seq)
  local a = m.a
  if a then return a end
  local root, height, count, changes, nodes, _, bytes = V_unpack(self.anchor, A_ROOT, ALL_FMT)
  a = {root = root, height = height, count = count, changes = changes, nodes = nodes,
       bytes = bytes, dirty = false}
  m.a, m.dirty, m.T = a, {}, txn_number(self.pager, seq)
  local cache, mkey = m.cache, self.mkey
  access.before_commit(self.pager, mkey, function()
    if cache[mkey] ~= m then return true end
    return flush(self, m)
  end, seq)
  access.after_commit(self.pager, mkey, function()
    if cache[mkey] == m then promote(self, m) end
  end, seq)
  return a
end

--- root, height, count and changes as the open transaction has them.
local function hot(self, m)
  local a = m and m.a
  if a then return a.root, a.height, a.count, a.changes end
  return V_unpack(self.anchor, A_ROOT, HOT_FMT)
end

--- Write out this tree's pending changes now (before reading its pages).
local function sync(self)
  local seq = txn_seq(self.pager)
  local m = seq and cache_of(self.pager, seq)[self.mkey]
  if m and m.a then
    local ok, msg, code = flush(self, m)
    if not ok then error(format("btree: writing out failed: %s (%s)", msg, code), 0) end
  end
end

--- Carry out a plan: the writers of every draft (new pages too); then
-- `last(...)` (the heap call, the last step that can fail: on failure the
-- new pages are given back); then the drafts become the mirror's nodes
-- (written out at commit), the frees, the anchor's state.
local function apply(self, seq, m, cache, a, drafts, frees, made, root, height, dcount, dbytes,
                     last, ...)
  local pager = self.pager
  for _, t in ipairs(drafts) do
    local w, msg, code = writer_of(pager, cache, t.pid, seq)
    if not w then return give_back(pager, made, msg, code) end
  end
  if last then
    local ok, msg, code = last(...)
    if ok == nil then return give_back(pager, made, msg, code) end
  end
  local T, dirty = m.T, m.dirty
  for _, t in ipairs(drafts) do
    t.n, t.used, t.stamp, t.want, t.size = #t.keys, HDR + size_of(t), T, nil, nil
    m[t.pid] = t
    dirty[t.pid] = true
  end
  for _, pid in ipairs(frees) do
    m[pid], dirty[pid] = nil, nil
    local ok, msg, code = access.free_page(pager, pid)
    if not ok then return nil, msg, code end
  end
  a.root, a.height, a.count, a.changes = root and root + 1 or 0, height, a.count + dcount,
                                         a.changes + 1
  a.nodes, a.bytes, a.dirty = a.nodes + #made - #frees, a.bytes + dbytes, true
  return true
end

--- Copy a committed node into the mirror before changing it in place
-- (its writer taken already).
local function own(m, d)
  if m[d.pid] == d then return d end
  local c = draft(d)
  c.n, c.used, c.stamp = d.n, d.used, m.T
  c.idx, d.idx = d.idx, nil
  m[d.pid] = c
  return c
end

--- A leaf's index: key -> position (made with core._index, with room for
-- as many keys again: the puts that fill the leaf rehash nothing).
local function index_of(d)
  local idx = d.idx
  if idx then return idx end
  -- room to double: puts into it rehash nothing until it splits
  idx = C_index(d.keys, d.n, 2 * d.n)
  d.idx = idx
  return idx
end

local function value_size(v)
  local vl = #v
  if vl == 0 and type(v) == "table" then return v.size end
  return vl
end

---------------------------------------------------------------------------
-- put, get, delete

local function check_key(self, fname, key)
  if type(key) ~= "string" then
    raise(fname, 2, "key must be a string (got %s)", type(key))
  end
  local n = #key
  if n < 1 or n > self.maxkey then
    raise(fname, 2, "key must be 1 to %d bytes (got %d)", self.maxkey, n)
  end
end

-- The heap call of a put whose leaf cell gets `slot` (a table for a large
-- value, filled in here), as apply's `last`.
local function put_value(self, aw, old, value, slot)
  local v, msg, code = store(self, aw, old, value, slot ~= nil)
  if v == nil then return nil, msg, code end
  if slot then slot.ref = v.ref end
  return true
end

-- The common split, made in place: a put overfills a leaf of the mirror
-- whose parent, of the mirror too, has room for the separator. The new
-- page and its writer first, then the leaf is split (undone when the
-- parent turns out to have no room, or the heap call fails), then the
-- parent takes the separator. Returns false (nothing changed) when the
-- general plan is needed.
local function put_split(self, seq, m, cache, a, aw, leaf, parent, ci, i, old, key, value, slot,
                         stored, size, dcount, dbytes)
  local pager = self.pager
  local pid, msg, code = pager:alloc_protected()
  if not pid then return nil, msg, code end
  local w
  w, msg, code = writer_of(pager, cache, pid, seq)
  if not w then return give_back(pager, {pid}, msg, code) end
  local keys, vals = leaf.keys, leaf.vals
  if old ~= nil then vals[i] = stored else insert(keys, i, key) insert(vals, i, stored) end
  leaf.size = size
  local r = {pid = pid}
  local sep = divide(leaf, r)
  local ok = parent.used - HDR + INNER_FIXED + #sep <= self.cap
  if ok and (slot or type(old) == "table") then
    ok, msg, code = put_value(self, aw, old, value, slot)
  end
  if not ok then
    local nl = #keys
    move(r.keys, 1, #r.keys, nl + 1, keys)
    move(r.vals, 1, #r.vals, nl + 1, vals)
    if old ~= nil then vals[i] = old else remove(keys, i) remove(vals, i) end
    leaf.size = nil
    give_back(pager, {pid})
    if msg then return nil, msg, code end
    return false
  end
  insert(parent.keys, ci, sep)
  insert(parent.kids, ci + 1, pid)
  parent.n, parent.used = parent.n + 1, parent.used + INNER_FIXED + #sep
  if parent.dir then parent.dir = C_strings_insert(parent.dir, ci, sep) end
  leaf.n, leaf.used, leaf.size, leaf.idx = #keys, HDR + leaf.size, nil, nil
  r.n, r.used, r.stamp, r.size = #r.keys, HDR + r.size, m.T, nil
  m[pid] = r
  local dirty = m.dirty
  dirty[pid], dirty[leaf.pid], dirty[parent.pid] = true, true, true
  a.count, a.changes, a.nodes = a.count + dcount, a.changes + 1, a.nodes + 1
  a.bytes, a.dirty = a.bytes + dbytes, true
  return true
end

-- A put that changes the tree's shape (a split, or a merge after a smaller
-- value): planned on drafts, then applied.
local function put_plan(self, seq, m, cache, a, aw, key, value, slot, stored)
  local path, idx = {}, {}
  local leaf = descend(self, m, a.root, a.height, key, path, idx)
  local keys, n = leaf.keys, leaf.n
  local i = lower_bound(keys, n, key)
  local found = i <= n and keys[i] == key
  local old = found and leaf.vals[i] or nil
  local dcount = found and 0 or 1
  local dbytes = #value - (found and value_size(old) or -#key)
  local size = leaf.used - HDR - (found and leaf_cell_size(key, old) or 0)
               + leaf_cell_size(key, stored)
  local depth = #path
  local parent = path[depth - 1]
  if parent and size > self.cap and m[leaf.pid] == leaf and m[parent.pid] == parent then
    local ok, msg, code = put_split(self, seq, m, cache, a, aw, leaf, parent, idx[depth - 1],
                                    i, old, key, value, slot, stored, size, dcount, dbytes)
    if ok ~= false then return ok, msg, code end
  end
  local t = draft(leaf)
  t.size = size
  if found then t.vals[i] = stored else insert(t.keys, i, key) insert(t.vals, i, stored) end
  local made = {}
  local drafts, frees, r, h = plan(self, m, path, idx, t, made)
  if not drafts then return give_back(self.pager, made, frees, r) end
  return apply(self, seq, m, cache, a, drafts, frees, made, r, h, dcount, dbytes,
               put_value, self, aw, old, value, slot)
end

--- The open transaction's state for puts, kept on the handle (self.txn)
-- so that a put in the same transaction skips the lookups: {seq =, m =
-- (the mirror), cache = (access.cache's), aw = (the anchor's writer), a =
-- (changing's)}. It holds while the transaction is the one it was made in
-- and the mirror is still the cache's (drop and destroy take it away):
-- then the tree exists and the anchor's writer is taken. Or nil, msg, code.
local function txn_state(self, seq)
  local m, cache = mirror(self, seq)
  local aw, msg, code = writer_of(self.pager, cache, self.pid, seq)
  if not aw then return nil, msg, code end
  local a = m.a or changing(self, m, seq)
  local st = {seq = seq, m = m, cache = cache, aw = aw, a = a}
  self.txn = st
  return st
end

local function put_op(self, key, value, st)
  local m, a = st.m, st.a
  local msg, code
  local slot = LEAF_FIXED + #key + #value > self.cmax and {size = #value} or nil
  local stored = slot or value
  local root, height = a.root, a.height
  if root == 0 then
    local seq, cache, aw, pager = st.seq, st.cache, st.aw, self.pager
    local pid
    pid, msg, code = pager:alloc_protected()
    if not pid then return nil, msg, code end
    local t = {pid = pid, level = 0, keys = {key}, vals = {stored}}
    return apply(self, seq, m, cache, a, {t}, {}, {pid}, pid, 1, 1, #key + #value,
                 put_value, self, aw, nil, value, slot)
  end
  -- descend (the mirror's nodes first: in a transaction that writes much,
  -- most of the path)
  local pid = root - 1
  for _ = 2, height do
    local d = m[pid] or node(self, pid, m)
    pid = d.kids[C_search_strings(d.dir or dir_of(d), key, true)]
  end
  local leaf = m[pid] or node(self, pid, m)
  local i = (leaf.idx or index_of(leaf))[key]
  local old = i and leaf.vals[i]
  local oldsize = i and leaf_cell_size(key, old) or 0
  local newsize = LEAF_FIXED + #key + (slot and REF_SIZE or #value)
  local used = leaf.used - oldsize + newsize
  if used - HDR > self.cap or (used - HDR < self.low and height > 1 and newsize < oldsize) then
    return put_plan(self, st.seq, m, st.cache, a, st.aw, key, value, slot, stored)
  end
  -- in place: the leaf's writer, the heap call, then the change (in Lua:
  -- the commit writes the leaf out)
  local mine = m[pid] == leaf
  if not mine then
    local w
    w, msg, code = writer_of(self.pager, st.cache, pid, st.seq)
    if not w then return nil, msg, code end
  end
  if slot or (i and type(old) == "table") then
    local ok
    ok, msg, code = put_value(self, st.aw, old, value, slot)
    if not ok then return nil, msg, code end
  end
  if not mine then leaf = own(m, leaf) end
  if i then
    leaf.vals[i] = stored
    a.bytes = a.bytes + #value - value_size(old)
  else
    -- appended; put in order when something needs the order (sort_leaf)
    local keys, n = leaf.keys, leaf.n + 1
    if not leaf.unsorted and n > 1 and keys[n - 1] > key then leaf.unsorted = true end
    keys[n], leaf.vals[n] = key, stored
    leaf.idx[key] = n
    leaf.n = n
    a.count, a.bytes = a.count + 1, a.bytes + #key + #value
  end
  leaf.used = used
  m.dirty[pid] = true
  a.changes, a.dirty = a.changes + 1, true
  return true
end

local function put_in(self, key, value, seq)
  local st = self.txn
  if not (st and st.seq == seq and st.cache[self.mkey] == st.m) then
    local msg, code
    st, msg, code = txn_state(self, seq)
    if not st then return nil, msg, code end
  end
  return put_op(self, key, value, st)
end

--- Put value under key (replacing the value it had).
-- @return true, or `nil, msg, code`
function Tree:put(key, value)
  local st = type(self) == "table" and self.txn
  local seq = st and txn_seq(self.pager)
  if not (seq and st.seq == seq and st.cache[self.mkey] == st.m) then
    -- not the transaction of the last put: check everything
    local a = type(self) == "table" and self.writable and self.anchor
    if not (a and V_alive(a)) then check_handle(self, "btree:put", true) end
    check_key(self, "btree:put", key)
    if type(value) ~= "string" then
      raise("btree:put", 1, "value must be a string (got %s)", type(value))
    end
    seq = txn_seq(self.pager)
    if seq then return put_in(self, key, value, seq) end
    return atomic(self.pager, function() return put_in(self, key, value, txn_seq(self.pager)) end)
  end
  -- the tree exists and is writable (st holds): the arguments only
  if type(key) ~= "string" or type(value) ~= "string" then
    check_key(self, "btree:put", key)
    raise("btree:put", 1, "value must be a string (got %s)", type(value))
  end
  local n = #key
  if n < 1 or n > self.maxkey then check_key(self, "btree:put", key) end
  return put_op(self, key, value, st)
end

--- The value under key, or nil.
function Tree:get(key)
  local a = type(self) == "table" and self.anchor
  if not (a and V_alive(a)) then check_handle(self, "btree:get") end
  check_key(self, "btree:get", key)
  local seq = txn_seq(self.pager)
  local m = seq and mirror(self, seq)
  local root, height = hot(self, m)
  if root == 0 then return nil end
  local leaf = descend(self, m, root, height, key)
  local i
  local ix = leaf.idx
  if ix then
    i = ix[key]
  else
    local keys, n = leaf.keys, leaf.n
    i = lower_bound(keys, n, key)
    if not (i <= n and keys[i] == key) then i = nil end
  end
  if i then
    local v = leaf.vals[i]
    if type(v) == "table" then return large_get(self, v) end
    return v
  end
  return nil
end

local function delete_op(self, key)
  local pager = self.pager
  local seq = txn_seq(pager)
  local m, cache = mirror(self, seq)
  local root, height = hot(self, m)
  if root == 0 then return false end
  local path, idx = {}, {}
  local leaf = descend(self, m, root, height, key, path, idx)
  local keys, n = leaf.keys, leaf.n
  local i = lower_bound(keys, n, key)
  if not (i <= n and keys[i] == key) then return false end
  local aw, msg, code = writer_of(pager, cache, self.pid, seq)
  if not aw then return nil, msg, code end
  local a = changing(self, m, seq)
  local old = leaf.vals[i]
  local size = leaf_cell_size(key, old)
  local dbytes = -(#key + value_size(old))
  local large = type(old) == "table"
  local bytes = leaf.used - HDR - size
  if (bytes < self.low and height > 1) or n == 1 then
    local t = draft(leaf)
    t.size = t.size - size
    remove(t.keys, i)
    remove(t.vals, i)
    local made = {}
    local drafts, frees, r, h = plan(self, m, path, idx, t, made)
    if not drafts then return give_back(pager, made, frees, r) end
    local ok
    ok, msg, code = apply(self, seq, m, cache, a, drafts, frees, made, r, h, -1, dbytes,
                          large and store, self, aw, old, "", false)
    if not ok then return nil, msg, code end
    return true
  end
  if m[leaf.pid] ~= leaf then
    local w
    w, msg, code = writer_of(pager, cache, leaf.pid, seq)
    if not w then return nil, msg, code end
  end
  if large then
    local ok
    ok, msg, code = store(self, aw, old, "", false)
    if ok == nil then return nil, msg, code end
  end
  leaf = own(m, leaf)
  local lk, lv = leaf.keys, leaf.vals
  move(lk, i + 1, n, i)
  move(lv, i + 1, n, i)
  lk[n], lv[n] = nil, nil
  leaf.n, leaf.used, leaf.idx = n - 1, leaf.used - size, nil
  m.dirty[leaf.pid] = true
  a.count, a.changes, a.bytes, a.dirty = a.count - 1, a.changes + 1, a.bytes + dbytes, true
  return true
end

--- Delete key. @return true (it was there), false, or `nil, msg, code`
function Tree:delete(key)
  local a = type(self) == "table" and self.writable and self.anchor
  if not (a and V_alive(a)) then check_handle(self, "btree:delete", true) end
  check_key(self, "btree:delete", key)
  if txn_seq(self.pager) then return delete_op(self, key) end
  return atomic(self.pager, delete_op, self, key)
end

---------------------------------------------------------------------------
-- first, last, range

local function edge(self, fname, last)
  check_handle(self, fname)
  local seq = txn_seq(self.pager)
  local m = seq and mirror(self, seq)
  local root, height = hot(self, m)
  if root == 0 then return nil end
  local pid = root - 1
  for _ = 1, height - 1 do
    local d = node(self, pid, m)
    pid = d.kids[last and d.n + 1 or 1]
  end
  local leaf = snode(self, pid, m)
  local i = last and leaf.n or 1
  local v = leaf.vals[i]
  if type(v) == "table" then v = large_get(self, v) end
  return leaf.keys[i], v
end

--- The smallest key and its value (nil: empty).
function Tree:first() return edge(self, "btree:first", false) end
--- The largest key and its value (nil: empty).
function Tree:last() return edge(self, "btree:last", true) end

-- An iterator's state: the nodes from the root to a leaf (nodes[lvl]) and
-- the position in each (pos[lvl]: a child index, or in the leaf a cell).

--- Position `it` at the first key >= x (> x when strict), or for a
-- reverse iterator the last key < x (x nil: the last key). Returns false
-- when there is none.
local function seek(self, it, x, strict)
  local m = it.seq and mirror(self, it.seq)
  it.m = m
  local root, height = hot(self, m)
  local nodes, pos = {}, {}
  it.nodes, it.pos, it.h = nodes, pos, height
  if root == 0 then return false end
  local pid = root - 1
  for lvl = 1, height - 1 do
    local d = node(self, pid, m)
    local c
    if x == nil then c = d.n + 1 else c = child_index(d, x) end
    nodes[lvl], pos[lvl] = d, c
    pid = d.kids[c]
  end
  local leaf = snode(self, pid, m)
  nodes[height] = leaf
  if it.reverse then
    pos[height] = x == nil and leaf.n or lower_bound(leaf.keys, leaf.n, x) - 1
  else
    local i = lower_bound(leaf.keys, leaf.n, x)
    if strict and i <= leaf.n and leaf.keys[i] == x then i = i + 1 end
    pos[height] = i
  end
  return true
end

--- Move to the next cell (the previous one when reverse); false at the end.
local function step(self, it, dir)
  local nodes, pos, h = it.nodes, it.pos, it.h
  local i = pos[h] + dir
  local leaf = nodes[h]
  if i >= 1 and i <= leaf.n then
    pos[h] = i
    return true
  end
  local lvl = h - 1
  while lvl >= 1 do
    local c = pos[lvl] + dir
    if c >= 1 and c <= nodes[lvl].n + 1 then break end
    lvl = lvl - 1
  end
  if lvl < 1 then return false end
  pos[lvl] = pos[lvl] + dir
  local m = it.m
  for l = lvl + 1, h do
    local d = snode(self, nodes[l - 1].kids[pos[l - 1]], m)
    nodes[l] = d
    if l < h then pos[l] = dir > 0 and 1 or d.n + 1 else pos[l] = dir > 0 and 1 or d.n end
  end
  return true
end

--- Is the position valid (inside its leaf)? Else step.
local function settle(self, it, dir)
  local h = it.h
  local i, leaf = it.pos[h], it.nodes[h]
  if i >= 1 and i <= leaf.n then return true end
  return step(self, it, dir)
end

local function range_next(it)
  if it.done then return nil end
  local self = it.tree
  check_handle(self, "btree:range")
  local seq = txn_seq(self.pager)
  local m = seq and cache_of(self.pager, seq)[self.mkey]
  local changes = m and m.a and m.a.changes or V_unpack(self.anchor, A_CHANGES, "<i8")
  local dir = it.reverse and -1 or 1
  local ok
  if it.nodes == nil or changes ~= it.changes or seq ~= it.seq then
    it.changes, it.seq = changes, seq
    if it.last == nil then
      if it.reverse then ok = seek(self, it, it.hi) else ok = seek(self, it, it.lo or "") end
    else
      ok = seek(self, it, it.last, true)
    end
    ok = ok and settle(self, it, dir)
  else
    ok = step(self, it, dir)
  end
  if ok then
    local leaf, i = it.nodes[it.h], it.pos[it.h]
    local k = leaf.keys[i]
    if it.reverse then
      if it.lo and k < it.lo then ok = false end
    elseif it.hi and k >= it.hi then
      ok = false
    end
    if ok then
      it.last = k
      local v = leaf.vals[i]
      if type(v) == "table" then v = large_get(self, v) end
      return k, v
    end
  end
  it.done, it.nodes = true, nil
  return nil
end

--- Iterate `k, v` with lo <= k < hi (either bound nil: open), ascending,
-- or descending with opts.reverse. Bounds are any strings.
function Tree:range(lo, hi, opts)
  check_handle(self, "btree:range")
  if lo ~= nil and type(lo) ~= "string" then
    raise("btree:range", 1, "lo must be a string or nil (got %s)", type(lo))
  end
  if hi ~= nil and type(hi) ~= "string" then
    raise("btree:range", 1, "hi must be a string or nil (got %s)", type(hi))
  end
  if opts ~= nil and type(opts) ~= "table" then
    raise("btree:range", 1, "opts must be a table or nil (got %s)", type(opts))
  end
  local it = {tree = self, lo = lo, hi = hi, reverse = opts and opts.reverse and true or false}
  return range_next, it
end

---------------------------------------------------------------------------
-- the tree's pages: drop, destroy, check, stats

--- Walk the tree: calls visit(d, lvl, lo, hi) for every node (lo, hi: the
-- bounds its keys must keep), and returns the pids of the nodes, the large
-- values' cells ({ref =, size =}), and the problems met (damage ends a
-- branch).
local function walk(self, visit)
  sync(self)
  local problems, nodes, larges = {}, {}, {}
  local root = V_unpack(self.anchor, A_ROOT, "<I4")
  if root == 0 then return nodes, larges, problems end
  local seen = {}
  local function go(pid, lvl, lo, hi)
    if seen[pid] then
      problems[#problems + 1] = format("node %d is reached twice", pid)
      return
    end
    seen[pid] = true
    local okv, v = pcall(view, self.pager, pid)
    if not okv then
      problems[#problems + 1] = format("node %d is not an allocated protected page", pid)
      return
    end
    local magic, owner = V_unpack(v, 0, "<c4 I4")
    if magic ~= NODE_MAGIC or owner ~= self.pid then
      problems[#problems + 1] = format("page %d has a bad magic or owner for a node", pid)
      return
    end
    nodes[#nodes + 1] = pid
    local ok, d = pcall(decode, self, v, pid, 0)
    if not ok then
      problems[#problems + 1] = format("node %d cannot be decoded: %s", pid, tostring(d))
      return
    end
    if visit then visit(d, lvl, lo, hi, v) end
    if d.level == 0 then
      for i = 1, d.n do
        local val = d.vals[i]
        if type(val) == "table" then larges[#larges + 1] = val end
      end
    else
      for c = 1, d.n + 1 do
        go(d.kids[c], lvl + 1, c > 1 and d.keys[c - 1] or lo, c <= d.n and d.keys[c] or hi)
      end
    end
  end
  go(root - 1, 1, nil, nil)
  return nodes, larges, problems
end

--- Every page the tree owns: its anchor, its nodes and its heap's
-- protected pages; and, second, its heap's regular pages (large values'
-- bytes).
function Tree:page_ids()
  check_handle(self, "btree:page_ids")
  local nodes = walk(self)
  local ids, regular = {self.pid}, {}
  for _, p in ipairs(nodes) do ids[#ids + 1] = p end
  local h = heap_of(self)
  if h then
    local owned = h:owned()
    for _, p in ipairs(owned.protected) do ids[#ids + 1] = p end
    for _, p in ipairs(owned.regular) do regular[#regular + 1] = p end
  end
  return ids, regular
end

-- Free the heap (if any) and return the nodes' pids (for drop, destroy).
local function free_contents(self)
  local nodes = walk(self)
  local hp = V_unpack(self.anchor, A_HEAP, "<I4") - 1
  if hp >= 0 then
    local ok, msg, code = heaps.destroy(self.pager, hp)
    if not ok then return nil, msg, code end
  end
  for _, pid in ipairs(nodes) do self.cc[pid] = nil end
  return nodes
end

--- Drop the tree `name`: every page it owns and its name.
function M.drop(pager, name)
  return object.drop(pager, name, KIND, "btree.drop", function(pid)
    local self = make_handle(pager, name, pid, "btree.drop")
    cache_of(pager, txn_seq(pager))[self.mkey] = nil
    return free_contents(self)
  end)
end

--- Free every page of a tree made by create, its anchor last.
function Tree:destroy()
  check_handle(self, "btree:destroy", true)
  return atomic(self.pager, function()
    local pids, msg, code = free_contents(self)
    if not pids then return nil, msg, code end
    pids[#pids + 1] = self.pid
    cache_of(self.pager, txn_seq(self.pager))[self.mkey] = nil
    return access.free_pages(self.pager, pids)
  end)
end

--- Check the tree: every node's header and cells, keys strictly ascending
-- and inside their parent's separators, every leaf at the same depth, no
-- empty node, every large value a value of its size in the heap (and the
-- heap's own check), the anchor's count, bytes and node count, every page
-- reached once, and no node page (its magic and owner) the tree does not
-- reach.
-- @return true, or false and a list of problems
function Tree:check()
  check_handle(self, "btree:check")
  sync(self)
  local bad, verdict = object.problems()
  local a = self.anchor
  local root, height, count = V_unpack(a, A_ROOT, HOT_FMT)
  local nodes_n = V_unpack(a, A_NODES, "<I4")
  local bytes_a = V_unpack(a, A_BYTES, "<i8")
  local keys_n, bytes = 0, 0
  local nodes, larges, problems = walk(self, function(d, lvl, lo, hi, v)
    if d.level ~= height - lvl then
      bad("node %d: level %d at depth %d of %d", d.pid, d.level, lvl, height)
    end
    if d.n == 0 then bad("node %d is empty", d.pid) end
    if d.used - HDR > self.cap then bad("node %d: %d bytes overfill it", d.pid, d.used) end
    local s = HDR + count_size(d)
    if s ~= d.used then bad("node %d: its cells end at %d, used says %d", d.pid, s, d.used) end
    if d.used < self.psize and V_read(v, d.used, self.psize - d.used) ~= ("\0"):rep(self.psize - d.used) then
      bad("node %d: bytes after its cells are not zero", d.pid)
    end
    local prev = lo
    for i = 1, d.n do
      local k = d.keys[i]
      if #k < 1 or (d.level == 0 and #k > self.maxkey) then bad("node %d: key %d has %d bytes", d.pid, i, #k) end
      if prev and (k < prev or (k == prev and (i > 1 or d.level > 0))) then
        bad("node %d: key %d is out of order", d.pid, i)
      end
      if hi and k >= hi then bad("node %d: key %d is not below its parent's bound", d.pid, i) end
      prev = k
      if d.level == 0 then
        keys_n = keys_n + 1
        local val = d.vals[i]
        bytes = bytes + #k + value_size(val)
        if type(val) == "table" and LEAF_FIXED + #k + val.size <= self.cmax then
          bad("node %d: key %d's value of %d bytes should be in its cell", d.pid, i, val.size)
        elseif type(val) == "string" and LEAF_FIXED + #k + #val > self.cmax then
          bad("node %d: key %d's cell is too large", d.pid, i)
        end
      end
    end
  end)
  for _, p in ipairs(problems) do bad("%s", p) end
  if (root == 0) ~= (height == 0) then bad("root %d with height %d", root, height) end
  if keys_n ~= count then bad("the anchor counts %d keys, the leaves hold %d", count, keys_n) end
  if bytes ~= bytes_a then bad("the anchor counts %d bytes, the tree holds %d", bytes_a, bytes) end
  if #nodes ~= nodes_n then bad("the anchor counts %d nodes, the tree has %d", nodes_n, #nodes) end
  local reached = {[self.pid] = true}
  for _, p in ipairs(nodes) do reached[p] = true end
  local hp = V_unpack(a, A_HEAP, "<I4") - 1
  if hp >= 0 then
    local okh, h = pcall(heap_of, self)
    if not okh then
      bad("the heap at %d cannot be opened: %s", hp, tostring(h))
    else
      local good, why = h:check()
      if not good then bad("the heap: %s", concat(why or {}, "; ")) end
      for _, val in ipairs(larges) do
        local oks, size = pcall(h.size, h, val.ref)
        if not oks or size ~= val.size then
          bad("a large value's ref %d is not a value of %d bytes in the heap", val.ref, val.size)
        end
      end
      local st = h:stats()
      if st.values ~= #larges then
        bad("the heap holds %d values, the leaves name %d", st.values, #larges)
      end
      local okp, owned = pcall(h.owned, h)
      if okp then
        for _, p in ipairs(owned.protected) do
          if reached[p] then bad("page %d is owned twice", p) end
          reached[p] = true
        end
      end
    end
  elseif #larges > 0 then
    bad("%d large values and no heap", #larges)
  end
  for pid in self.pager:protected_pages() do
    if not reached[pid] then
      local v = view(self.pager, pid)
      local magic, owner = V_unpack(v, 0, "<c4 I4")
      if magic == NODE_MAGIC and owner == self.pid then
        bad("page %d is the tree's (magic %q) but the tree does not reach it", pid, magic)
      end
    end
  end
  return verdict()
end

--- objects (keys), bytes (keys' and values' sizes), pages (the anchor,
-- nodes, the heap's pages), page_bytes, efficiency; height, nodes,
-- heap_pages, large_values, max_key.
function Tree:stats()
  check_handle(self, "btree:stats")
  sync(self)
  local a = self.anchor
  local _, height, count = V_unpack(a, A_ROOT, HOT_FMT)
  local nodes = V_unpack(a, A_NODES, "<I4")
  local h = heap_of(self)
  local hs = h and h:stats()
  local hpages, large = hs and hs.pages or 0, hs and hs.values or 0
  return object.stats(count, V_unpack(a, A_BYTES, "<i8"), 1 + nodes + hpages, self.psize,
                      {height = height, nodes = nodes, heap_pages = hpages, large_values = large,
                       max_key = self.maxkey})
end

Tree.__tostring = object.describe("mappedpages.btree", "keys")

return M
