--- mappedpages.heap: values of any size, from 0 bytes to hundreds of MiB.
--
--     local h = assert(mp.heap.open(pager, "blobs"))   -- opens or creates
--     local ref = h:put(s)               -- ref: a positive integer
--     h:get(ref)  h:get(ref, off, len)   -- the whole value, or bytes [off, off + len)
--     h:size(ref)
--     ref = h:replace(ref, s)            -- may be a new ref; the old one is then freed
--     h:free(ref)
--     for ref, size in h:values() do ... end   -- ascending refs
--     h:stats()   h:check()
--     mp.heap.drop(pager, "blobs")
--
-- Every mutating call joins the pager's open transaction or is a durable
-- transaction of its own (one barrier); a rollback restores every value.
-- A handle caches only what never changes for a heap (its page size and
-- the handle of its slab, whose size classes are fixed): every call reads
-- the file, so after a rollback every handle shows the rolled-back heap,
-- and two handles of one name see each other's changes at once.
--
-- Small and large values. A value of at most `small_max` bytes (the
-- slab's largest object less one byte: 4,041 with 4 KiB pages) is small:
-- it lives in a slab object of its size + 1 (a kind byte 0, then the
-- bytes), sharing protected pages with other small values. A larger value
-- is large: its bytes fill ceil(size / page_size) regular pages, written
-- in place, and a slab object, its descriptor, lists them. A ref is the
-- slab ref of its object times 2, plus 1 for a large value, so the ref
-- says which kind it is (and the kind byte confirms it); the slab hands a
-- ref freed in transaction N out again no earlier than N + 1, and so does
-- the heap.
--
-- Layout. The anchor (the heap's protected page: from the catalog, or
-- made by heap.embed):
--
--     0   8 bytes  magic "mpheap1\0"
--     8   u32      page size
--     12  u32      the slab's anchor pid (an embedded slab: mappedpages.slab)
--     16  i8       large values
--     24  i8       their bytes
--     32  i8       their data pages (regular pages)
--     40  i8       their index pages (protected pages)
--     48  i8       their descriptors' bytes
--     56  zero to the end
--
-- A descriptor (a slab object): u8 kind 1, i8 size, u32 data pages n,
-- u32 index pages k, then n u32 page ids (k = 0: the ids fit the slab
-- object, 17 + 4n bytes at most the slab's largest object) or k u32 pids
-- of index pages. An index page (a protected page): u32 magic "mphx", u32
-- owner (the anchor's pid), u32 count, u32 zero, then count u32 page ids,
-- at most (page_size - 16) / 4; every index page but the last is full.
-- The value's byte i is byte i % page_size of its (i // page_size)-th
-- data page.
--
-- Crash consistency. Small values, descriptors, index pages and the
-- anchor are protected pages, changed only inside transactions. A large
-- value's bytes go into regular pages the transaction allocated, before
-- the commit that makes them reachable; no durable state reaches those
-- pages, so a crash (or a rollback) before the commit leaves them free
-- and unreferenced. A replace or free never writes a page the last
-- durable state reaches: it allocates new pages and frees the old ones,
-- which the pager hands out again no earlier than the next transaction
-- (docs/ALLOCATORS.md, "Regular pages written before the commit").
--
-- Failures. put and replace allocate everything first (the descriptor,
-- the data pages, index pages, the writers of the anchor and of the pages
-- they will change) and write afterwards; a failure (a full disk:
-- "no_space") gives back what was taken and changes nothing else.
-- @module mappedpages.heap

local access = require "mappedpages.access"
local object = require "mappedpages.object"
local slab = require "mappedpages.slab"

local error, ipairs, pcall, tostring, type = error, ipairs, pcall, tostring, type
local mtype = math.type
local format, spack, sunpack, srep = string.format, string.pack, string.unpack, string.rep
local concat, sort, tunpack = table.concat, table.sort, table.unpack

local atomic, writer, view = access.atomic, access.writer, access.view

local M = {}

local KIND = "heap"
M.KIND = KIND

local ANCHOR_MAGIC = "mpheap1\0"
local A_COUNTS = 16
local COUNTS_FMT = "<i8 i8 i8 i8 i8"   -- values, bytes, data pages, index pages, descriptor bytes
local DESC_FMT = "<B i8 I4 I4"
local DESC_HDR = 17
local INDEX_MAGIC = sunpack("<I4", "mphx")
local INDEX_HDR = 16
local SMALL, LARGE = 0, 1

-- Misuse errors name the function and point at the caller's line: the
-- first frame outside this file (the public methods reach the checks
-- through tail calls, so no fixed level would do).
local raise, check_handle, user_level = object.misuse(debug.getinfo(1, "S").source)

local function what(v)
  if type(v) == "number" then return tostring(v) end
  return type(v)
end

-- "<I4I4...": n u32s (cached).
local u32s_cache = {}
local function u32s(n)
  local f = u32s_cache[n]
  if not f then
    f = "<" .. srep("I4", n)
    if n <= 4096 then u32s_cache[n] = f end
  end
  return f
end

--- n u32s of string s from position pos (1-based) as a list.
local function unpack_ids(s, pos, n, into, at)
  into, at = into or {}, at or 0
  local done = 0
  while done < n do
    local k = n - done
    if k > 1024 then k = 1024 end    -- keep within the C stack
    local t = {sunpack(u32s(k), s, pos + 4 * done)}
    for i = 1, k do into[at + done + i] = t[i] end
    done = done + k
  end
  return into
end

--- The packed u32s of list[i .. j].
local function pack_ids(list, i, j)
  local parts = {}
  while i <= j do
    local k = j - i + 1
    if k > 1024 then k = 1024 end
    parts[#parts + 1] = spack(u32s(k), tunpack(list, i, i + k - 1))
    i = i + k
  end
  return concat(parts)
end

---------------------------------------------------------------------------
-- geometry

local Heap = {}
Heap.__index = Heap
Heap.__name = "mappedpages.Heap"

--- The geometry of a heap with page size P whose slab's largest object is
-- smax: {small_max =, inline =, per_index =, max_index =, max_size =}.
local function geometry(P, smax)
  local per_index = (P - INDEX_HDR) // 4
  local inline = (smax - DESC_HDR) // 4
  local max_index = inline
  return {small_max = smax - 1, inline = inline, per_index = per_index,
          max_index = max_index, max_size = max_index * per_index * P}
end

--- The limits of a heap of page size P (for docs and tests).
function M.limits(page_size)
  local smax = slab.classes(page_size)
  return geometry(page_size, smax[#smax].slot)
end

---------------------------------------------------------------------------
-- finding a value

local function not_live(fname, ref)
  raise(fname, "ref %d is not a live value of this heap (freed, or never put)", ref)
end

--- Find the value ref: its kind, its slab ref and its size; raises for
-- anything but a live value of this heap. For a large value also the
-- descriptor (a string).
local function locate(self, ref, fname)
  if mtype(ref) ~= "integer" then
    local i = type(ref) == "number" and math.tointeger(ref)
    if not i then raise(fname, "ref must be a positive integer (got %s)", what(ref)) end
    ref = i
  end
  if ref <= 1 then
    if ref <= 0 then raise(fname, "ref must be a positive integer (got %s)", what(ref)) end
    not_live(fname, ref)
  end
  local sref, kind = ref >> 1, ref & 1
  local s = self.slab
  local ok, osize = pcall(s.size, s, sref)
  if not ok then not_live(fname, ref) end
  if kind == SMALL then
    if s:read(sref, 0, 1) ~= "\0" then not_live(fname, ref) end
    return SMALL, sref, osize - 1
  end
  if osize < DESC_HDR then not_live(fname, ref) end
  local desc = s:read(sref)
  local k, size = sunpack("<B i8", desc)
  if k ~= LARGE then not_live(fname, ref) end
  return LARGE, sref, size, desc
end

--- The data page ids [first, last] (1-based) of a large value, read from
-- its descriptor (and index pages); raises when they are damaged.
local function data_ids(self, desc, first, last)
  local _, _, n, k = sunpack(DESC_FMT, desc)
  last = last or n
  if first > last then return {} end
  if k == 0 then return unpack_ids(desc, DESC_HDR + 1 + 4 * (first - 1), last - first + 1) end
  local E = self.geo.per_index
  local ids, at = {}, 0
  local i = first
  while i <= last do
    local x = (i - 1) // E                       -- index page (0-based)
    local ipid = sunpack("<I4", desc, DESC_HDR + 1 + 4 * x)
    local ok, v = pcall(view, self.pager, ipid)
    if not ok then
      error(format("heap %q: index page %d is not an allocated protected page", self.object_name, ipid), 0)
    end
    local from = (i - 1) % E                      -- 0-based position in it
    local upto = last - x * E                     -- 1-based end within it
    if upto > E then upto = E end
    local cnt = upto - from
    unpack_ids(v:read(INDEX_HDR + 4 * from, 4 * cnt), 1, cnt, ids, at)
    at = at + cnt
    i = i + cnt
  end
  return ids
end

---------------------------------------------------------------------------
-- changing the heap (inside a transaction)

local function anchor_writer(self)
  return writer(self.pager, self.pid)
end

local function add_counts(aw, dv, db, dp, di, dd)
  local v, b, p, i, d = aw:unpack(A_COUNTS, COUNTS_FMT)
  aw:pack(A_COUNTS, COUNTS_FMT, v + dv, b + db, p + dp, i + di, d + dd)
end

--- Put a small value: its ref, or nil, msg, code.
local function put_small(self, s)
  local sl = self.slab
  local sref, msg, code = sl:alloc(#s + 1)
  if not sref then return nil, msg, code end
  if #s > 0 then sl:write(sref, 1, s) end     -- alloc took the page's writer: cannot fail
  return sref << 1
end

--- n new regular pages for a large value, ascending. The pager hands out
-- its lowest free pages; after a commit those are a few holes (the pages
-- the commit's copies left) before a run at the end. A value whose pages
-- are consecutive is gathered with one copy instead of two, so when the
-- pages come as a short head and a run, the run is extended by as many
-- pages as the head has and the head is freed again (a page freed here is
-- only pending: the pager hands it out from the next transaction on).
-- Best effort: when the extension is not consecutive, or there is no
-- room for it, the pages stay as they came.
local function alloc_pages(pager, n)
  local ids, msg, code = pager:alloc_bulk(n)
  if not ids then return nil, msg, code end
  sort(ids)
  local b = n
  while b > 1 and ids[b - 1] + 1 == ids[b] do b = b - 1 end
  if b == 1 or b - 1 > n // 8 then return ids end
  local extra = pager:alloc_bulk(b - 1)
  if not extra then return ids end
  sort(extra)
  local last = ids[n]
  for i = 1, b - 1 do
    if extra[i] ~= last + i then
      pager:free_bulk(extra)
      return ids
    end
  end
  local head, run = {}, {}
  for i = 1, b - 1 do head[i] = ids[i] end
  for i = b, n do run[#run + 1] = ids[i] end
  for i = 1, b - 1 do run[#run + 1] = extra[i] end
  pager:free_bulk(head)
  return run
end

--- Allocate a large value of n bytes' pages and write s into them: the
-- descriptor string, the ids, the index writers, or nil, msg, code with
-- nothing left allocated.
local function new_large(self, s)
  local pager, geo, P = self.pager, self.geo, self.page_size
  local size = #s
  local n = (size + P - 1) // P
  local ids, msg, code = alloc_pages(pager, n)
  if not ids then return nil, msg, code end
  local k = n > geo.inline and (n + geo.per_index - 1) // geo.per_index or 0
  local iws = {}
  for x = 1, k do
    local w
    w, msg, code = access.new_page(pager)
    if not w then
      for _, iw in ipairs(iws) do access.free_page(pager, iw:id()) end
      pager:free_bulk(ids)
      return nil, msg, code
    end
    iws[x] = w
  end
  local desc
  if k == 0 then
    desc = spack(DESC_FMT, LARGE, size, n, 0) .. pack_ids(ids, 1, n)
  else
    local pids = {}
    for x, w in ipairs(iws) do pids[x] = w:id() end
    desc = spack(DESC_FMT, LARGE, size, n, k) .. pack_ids(pids, 1, k)
  end
  -- every allocation done: write
  local E = geo.per_index
  for x, w in ipairs(iws) do
    local i = (x - 1) * E + 1
    local j = i + E - 1
    if j > n then j = n end
    w:pack(0, "<I4 I4 I4 I4", INDEX_MAGIC, self.pid, j - i + 1, 0)
    w:write(INDEX_HDR, pack_ids(ids, i, j))
  end
  pager:scatter(ids, 0, s)
  return desc, ids, k
end

--- Free the pages of a large value (inside a transaction, its other
-- writers taken): data pages, then index pages.
local function free_large_pages(self, desc)
  local pager = self.pager
  local ids = data_ids(self, desc, 1)
  local ok, msg, code = pager:free_bulk(ids)
  if not ok then return nil, msg, code end
  local _, _, n, k = sunpack(DESC_FMT, desc)
  for x = 1, k do
    local ipid = sunpack("<I4", desc, DESC_HDR + 1 + 4 * (x - 1))
    ok, msg, code = access.free_page(pager, ipid)
    if not ok then return nil, msg, code end
  end
  return n, k
end

--- Give back the pages of a large value that was not stored.
local function pager_free_pages(self, desc, ids, k)
  self.pager:free_bulk(ids)
  for x = 1, k do
    access.free_page(self.pager, (sunpack("<I4", desc, DESC_HDR + 1 + 4 * (x - 1))))
  end
end

local function put_large(self, s)
  local sl = self.slab
  -- The anchor's writer first: its copy takes one of the pages the last
  -- commit freed, before the data pages are allocated. Then the data and
  -- index pages, then the descriptor: when that fails, the pages go back
  -- (freeing needs no room) and nothing has changed.
  local aw, msg, code = anchor_writer(self)
  if not aw then return nil, msg, code end
  local desc, ids, k = new_large(self, s)
  if not desc then return nil, ids, k end
  local sref
  sref, msg, code = sl:alloc(#desc)
  if not sref then
    local _, _, _, kk = sunpack(DESC_FMT, desc)
    pager_free_pages(self, desc, ids, kk)
    return nil, msg, code
  end
  sl:write(sref, 0, desc)       -- alloc took the page's writer: cannot fail
  add_counts(aw, 1, #s, #ids, k, #desc)
  return (sref << 1) | 1
end

local function put_work(self, s)
  if #s <= self.geo.small_max then return put_small(self, s) end
  return put_large(self, s)
end

--- Free value ref (located: kind, sref, size, desc), inside a transaction.
local function free_work(self, kind, sref, size, desc)
  local sl = self.slab
  if kind == SMALL then return sl:free(sref) end
  local aw, msg, code = anchor_writer(self)
  if not aw then return nil, msg, code end
  local ok
  ok, msg, code = sl:free(sref)
  if not ok then return nil, msg, code end
  local n, k = free_large_pages(self, desc)
  if not n then return nil, k, code end
  add_counts(aw, -1, -size, -n, -k, -#desc)
  return true
end

--- Replace value ref (located) with s; the ref it has now.
local function replace_work(self, ref, kind, sref, size, desc, s)
  local sl, pager = self.slab, self.pager
  local small = #s <= self.geo.small_max
  if kind == SMALL and small and #s == size then
    if #s > 0 then
      local ok, msg, code = sl:write(sref, 1, s)
      if not ok then return nil, msg, code end
    end
    return ref
  end
  if kind == LARGE and not small then
    local P = self.page_size
    local _, _, n, k = sunpack(DESC_FMT, desc)
    local n2 = (#s + P - 1) // P
    if n2 == n then
      -- Same page count, so the same descriptor size: new pages, the
      -- descriptor rewritten in place, the old pages freed.
      local aw, msg, code = anchor_writer(self)
      if not aw then return nil, msg, code end
      local w
      w, msg, code = writer(pager, sref >> 16)        -- the descriptor's slab page
      if not w then return nil, msg, code end
      local iws = {}
      for x = 1, k do
        local ipid = sunpack("<I4", desc, DESC_HDR + 1 + 4 * (x - 1))
        iws[x], msg, code = writer(pager, ipid)
        if not iws[x] then return nil, msg, code end
      end
      local old = data_ids(self, desc, 1)
      local ids
      ids, msg, code = alloc_pages(pager, n)
      if not ids then return nil, msg, code end
      local E = self.geo.per_index
      for x, iw in ipairs(iws) do
        local i = (x - 1) * E + 1
        local j = i + E - 1
        if j > n then j = n end
        iw:write(INDEX_HDR, pack_ids(ids, i, j))
      end
      pager:scatter(ids, 0, s)
      local head = spack(DESC_FMT, LARGE, #s, n, k)
      if k == 0 then sl:write(sref, 0, head .. pack_ids(ids, 1, n))
      else sl:write(sref, 0, head) end
      local ok
      ok, msg, code = pager:free_bulk(old)
      if not ok then return nil, msg, code end
      add_counts(aw, 0, #s - size, 0, 0, 0)
      return ref
    end
  end
  -- Otherwise a new value, then the old one freed: the writers the free
  -- needs first, so that it cannot fail for room after the put (and if it
  -- does all the same, the new value is freed again).
  local ok, msg, code = sl:prepare_free(sref)
  if not ok then return nil, msg, code end
  if kind == LARGE then
    ok, msg, code = anchor_writer(self)
    if not ok then return nil, msg, code end
  end
  local new
  new, msg, code = put_work(self, s)
  if not new then return nil, msg, code end
  ok, msg, code = free_work(self, kind, sref, size, desc)
  if not ok then
    free_work(self, locate(self, new, "heap:replace"))
    return nil, msg, code
  end
  return new
end

---------------------------------------------------------------------------
-- public methods

local function check_value(fname, s)
  if type(s) ~= "string" then raise(fname, "value must be a string (got %s)", type(s)) end
end

local function check_fits(self, fname, s)
  if #s > self.geo.max_size then
    raise(fname, "a value of %d bytes is larger than this heap's largest (%d bytes)",
          #s, self.geo.max_size)
  end
end

--- Store the string s: its ref, or nil, msg, code.
function Heap:put(s)
  check_handle(self, "heap:put", true)
  check_value("heap:put", s)
  check_fits(self, "heap:put", s)
  return atomic(self.pager, put_work, self, s)
end

--- The value ref, or its bytes [off, off + len) (len: to the end).
function Heap:get(ref, off, len)
  check_handle(self, "heap:get")
  local kind, sref, size, desc = locate(self, ref, "heap:get")
  if off == nil and len == nil then off, len = 0, size
  else
    off = off or 0
    local ok, l = pcall(object.check_span, "heap:get", size, off, len)
    if not ok then error((l:gsub("^[^\n]-:%d+: ", "")), user_level()) end
    len = l
  end
  if kind == SMALL then return self.slab:read(sref, 1 + off, len) end
  if len == 0 then return "" end
  local P = self.page_size
  local first, last = off // P + 1, (off + len - 1) // P + 1
  local ids = data_ids(self, desc, first, last)
  return self.pager:gather(ids, off - (first - 1) * P, len)
end

--- The size of value ref, in bytes.
function Heap:size(ref)
  check_handle(self, "heap:size")
  local _, _, size = locate(self, ref, "heap:size")
  return size
end

--- Replace value ref with the string s: the value's ref from now on
-- (the same, or a new one: the old one is then freed), or nil, msg, code.
function Heap:replace(ref, s)
  check_handle(self, "heap:replace", true)
  local kind, sref, size, desc = locate(self, ref, "heap:replace")
  check_value("heap:replace", s)
  check_fits(self, "heap:replace", s)
  return atomic(self.pager, replace_work, self, ref, kind, sref, size, desc, s)
end

--- Free value ref: true, or nil, msg, code.
function Heap:free(ref)
  check_handle(self, "heap:free", true)
  local kind, sref, size, desc = locate(self, ref, "heap:free")
  return atomic(self.pager, free_work, self, kind, sref, size, desc)
end

--- Iterate over the values in ascending ref order: `for ref, size in
-- h:values() do`.
function Heap:values()
  check_handle(self, "heap:values")
  local sl = self.slab
  local it, st, ctl = sl:objects()
  return function()
    local sref, osize = it(st, ctl)
    ctl = sref
    if sref == nil then return nil end
    local k = sunpack("B", sl:read(sref, 0, 1))
    if k == LARGE then return (sref << 1) | 1, sunpack("<i8", sl:read(sref, 1, 8)) end
    return sref << 1, osize - 1
  end
end

local function counts(self)
  return view(self.pager, self.pid):unpack(A_COUNTS, COUNTS_FMT)
end

--- {values =, bytes =, pages =, page_bytes =, efficiency =, small = {values
-- =, bytes =}, large = {values =, bytes =, data_pages =, index_pages =},
-- slab_pages =, page_size =}. pages counts every page the heap owns: its
-- anchor, its slab's pages, index pages and data pages.
function Heap:stats()
  check_handle(self, "heap:stats")
  local lv, lb, dp, ip, db = counts(self)
  local ss = self.slab:stats()
  local sv = ss.objects - lv
  local sb = ss.bytes - db - sv
  local pages = 1 + ss.pages + ip + dp
  local P = self.page_size
  return {values = sv + lv, bytes = sb + lb, pages = pages, page_bytes = pages * P,
          efficiency = (sb + lb) / (pages * P), page_size = P, slab_pages = ss.pages,
          small = {values = sv, bytes = sb},
          large = {values = lv, bytes = lb, data_pages = dp, index_pages = ip}}
end

--- The largest value this heap holds, in bytes.
function Heap:max_size()
  check_handle(self, "heap:max_size")
  return self.geo.max_size
end

--- The largest small value (stored in the slab), in bytes.
function Heap:small_max()
  check_handle(self, "heap:small_max")
  return self.geo.small_max
end

--- The heap's name (in the catalog, or the label given to attach).
function Heap:name()
  check_handle(self, "heap:name")
  return self.object_name
end

--- Every page the heap owns: a table {protected = {pids}, regular =
-- {ids}} (the anchor first). Raises when the heap is damaged.
function Heap:owned()
  check_handle(self, "heap:owned")
  local prot, reg = {self.pid}, {}
  for _, pid in ipairs(self.slab:page_ids()) do prot[#prot + 1] = pid end
  for ref in self:values() do
    if ref & 1 == 1 then
      local desc = self.slab:read(ref >> 1)
      local _, _, n, k = sunpack(DESC_FMT, desc)
      for x = 1, k do prot[#prot + 1] = sunpack("<I4", desc, DESC_HDR + 1 + 4 * (x - 1)) end
      for _, id in ipairs(data_ids(self, desc, 1, n)) do reg[#reg + 1] = id end
    end
  end
  return {protected = prot, regular = reg}
end

--- The protected pages the heap owns, its anchor first (owned().protected:
-- for tools that account for every protected page, as `mappedpages check`).
function Heap:page_ids()
  check_handle(self, "heap:page_ids")
  return self:owned().protected
end

function Heap:__tostring()
  local ok, st = pcall(Heap.stats, self)
  if not ok then
    return format("mappedpages.Heap %q (unusable: %s)", self.object_name,
                  (tostring(st):gsub("^[^\n]-:%d+: ", "")))
  end
  return format("mappedpages.Heap %q: %d value%s (%d small, %d large), %d bytes in %d page%s "
                .. "(efficiency %.3f)", self.object_name, st.values, st.values == 1 and "" or "s",
                st.small.values, st.large.values, st.bytes, st.pages, st.pages == 1 and "" or "s",
                st.efficiency)
end

---------------------------------------------------------------------------
-- check

--- Check the heap: its anchor, its slab (slab:check), every value's kind,
-- every descriptor (size against its pages, its index pages' magic, owner
-- and counts), every data page an allocated regular page, every page
-- owned once, and the anchor's counters.
-- @return true, or false and a list of problems (strings)
function Heap:check()
  check_handle(self, "heap:check")
  local bad, verdict = object.problems()
  local pager, anchor, P, geo = self.pager, self.anchor, self.page_size, self.geo
  local magic, psize, spid = anchor:unpack(0, "<c8 I4 I4")
  if magic ~= ANCHOR_MAGIC then bad("anchor: bad magic") return verdict() end
  if psize ~= P then bad("anchor: page size %d, the file's is %d", psize, P) end
  if spid ~= self.slab.pid then bad("anchor: slab %d, the handle's is %d", spid, self.slab.pid) end
  if anchor:read(56) ~= srep("\0", #anchor - 56) then bad("anchor: reserved bytes are not zero") end
  local ok, why = self.slab:check()
  if not ok then
    for _, p in ipairs(why) do bad("slab: %s", p) end
    return verdict()
  end
  local owned = {[self.pid] = "the anchor"}
  for _, pid in ipairs(self.slab:page_ids()) do owned[pid] = "the slab" end
  local regular = {}
  local lv, lb, dp, ip, db = 0, 0, 0, 0, 0
  for sref, osize in self.slab:objects() do
    local ref = sref << 1
    local k = sunpack("B", self.slab:read(sref, 0, 1))
    if k == LARGE then
      ref = ref | 1
      local desc = self.slab:read(sref)
      if osize < DESC_HDR then bad("value %d: a descriptor of %d bytes", ref, osize) goto continue end
      local _, size, n, x = sunpack(DESC_FMT, desc)
      lv, lb, dp, ip, db = lv + 1, lb + size, dp + n, ip + x, db + osize
      if size <= geo.small_max then bad("value %d: %d bytes should be small", ref, size) end
      if n ~= (size + P - 1) // P then bad("value %d: %d bytes in %d pages", ref, size, n) end
      local want = x == 0 and n or x
      if osize ~= DESC_HDR + 4 * want then
        bad("value %d: a descriptor of %d bytes for %d pages and %d index pages", ref, osize, n, x)
        goto continue
      end
      if (x == 0) ~= (n <= geo.inline) or (x > 0 and x ~= (n + geo.per_index - 1) // geo.per_index) then
        bad("value %d: %d index pages for %d pages", ref, x, n)
        goto continue
      end
      for i = 1, x do
        local ipid = sunpack("<I4", desc, DESC_HDR + 1 + 4 * (i - 1))
        local okv, v = pcall(view, pager, ipid)
        if not okv then bad("value %d: index page %d is not an allocated protected page", ref, ipid)
          goto continue end
        if owned[ipid] then bad("value %d: index page %d is also %s", ref, ipid, owned[ipid]) end
        owned[ipid] = "an index page of value " .. ref
        local m, o, c = v:unpack(0, "<I4 I4 I4")
        local full = i < x and geo.per_index or n - (x - 1) * geo.per_index
        if m ~= INDEX_MAGIC or o ~= self.pid or c ~= full then
          bad("value %d: index page %d has a bad magic, owner or count", ref, ipid)
          goto continue
        end
      end
      local okd, ids = pcall(data_ids, self, desc, 1, n)
      if not okd then bad("value %d: %s", ref, tostring(ids)) goto continue end
      for _, id in ipairs(ids) do
        if regular[id] then bad("value %d: page %d is also a page of value %d", ref, id, regular[id])
        elseif not pcall(pager.page, pager, id) then
          bad("value %d: page %d is not an allocated regular page", ref, id)
        end
        regular[id] = ref
      end
    elseif k ~= SMALL then
      bad("slab object %d: kind %d is neither small nor large", sref, k)
    end
    ::continue::
  end
  local cv, cb, cp, ci, cd = counts(self)
  if cv ~= lv or cb ~= lb or cp ~= dp or ci ~= ip or cd ~= db then
    bad("anchor: counts %d large values, %d bytes, %d data pages, %d index pages, %d descriptor "
        .. "bytes; the heap holds %d, %d, %d, %d, %d", cv, cb, cp, ci, cd, lv, lb, dp, ip, db)
  end
  return verdict()
end

---------------------------------------------------------------------------
-- open, drop, and heaps inside other objects

--- Write a new heap's anchor at pid (a zeroed protected page) and make its
-- slab, inside a transaction.
local function init_anchor(pager, pid)
  local w, msg, code = writer(pager, pid)
  if not w then return nil, msg, code end
  local spid
  spid, msg, code = slab.embed(pager)
  if not spid then return nil, msg, code end
  w:pack(0, "<c8 I4 I4", ANCHOR_MAGIC, pager:page_size(), spid)
  return true
end

local function make_handle(pager, name, pid)
  local self = object.handle(Heap, pager, name, pid)
  local magic, psize, spid = self.anchor:unpack(0, "<c8 I4 I4")
  if magic ~= ANCHOR_MAGIC or psize ~= pager:page_size() then
    return nil, format("%q: the anchor is not a heap's", name), "corrupt"
  end
  local s, msg, code = slab.attach(pager, spid, name)
  if not s then return nil, format("%q: its slab: %s", name, msg), code end
  self.slab, self.page_size = s, psize
  self.geo = geometry(psize, s:max_size())
  return self
end

--- Open the heap `name` of pager, creating it when the name is free (in
-- the open transaction, or as a durable transaction of its own).
-- @return a Heap, or nil, msg, code: "kind", "not_found" (read-only pager,
-- no such name), "corrupt", "not_catalog", or the environment's codes
function M.open(pager, name)
  if type(pager) ~= "userdata" then raise("heap.open", "pager expected (got %s)", type(pager)) end
  local pid, msg, code = object.open(pager, name, KIND, "heap.open", function(apid)
    return init_anchor(pager, apid)
  end)
  if not pid then return nil, msg, code end
  local self
  self, msg, code = make_handle(pager, name, pid)
  if not self then return nil, "heap.open: " .. msg, code end
  return self
end

--- Free every page of the heap anchored at apid but the anchor (inside a
-- transaction).
local function free_contents(pager, name, apid)
  local h, msg, code = make_handle(pager, name, apid)
  if not h then return nil, msg, code end
  local ok, own = pcall(h.owned, h)
  if not ok then return nil, tostring(own), "corrupt" end
  ok, msg, code = pager:free_bulk(own.regular)
  if not ok then return nil, msg, code end
  -- the slab's pages go with slab.destroy; the index pages one by one
  local sl = {}
  for _, pid in ipairs(h.slab:page_ids()) do sl[pid] = true end
  for i = 2, #own.protected do
    local pid = own.protected[i]
    if not sl[pid] then
      ok, msg, code = access.free_page(pager, pid)
      if not ok then return nil, msg, code end
    end
  end
  return slab.destroy(pager, h.slab.pid)
end

--- Drop the heap `name`: free every page it owns and its name, in one
-- transaction. Handles of it raise afterwards.
-- @return true, or nil, msg, code ("not_found", "kind", environment)
function M.drop(pager, name)
  if type(pager) ~= "userdata" then raise("heap.drop", "pager expected (got %s)", type(pager)) end
  return object.drop(pager, name, KIND, "heap.drop", function(apid)
    return free_contents(pager, name, apid)
  end)
end

--- A heap inside another object (a B-tree keeps its large values in one):
-- a new empty heap whose anchor is a new protected page; store its pid in
-- your object's pages. Joins the open transaction or is one of its own.
-- @return the anchor's pid, or nil, msg, code
function M.embed(pager)
  object.check_pager("heap.embed", pager)
  access.check_writable(pager, "heap.embed")
  return atomic(pager, function()
    local w, msg, code = access.new_page(pager)
    if not w then return nil, msg, code end
    local ok
    ok, msg, code = init_anchor(pager, w:id())
    if not ok then
      access.free_page(pager, w:id())
      return nil, msg, code
    end
    return w:id()
  end)
end

--- A handle of the heap anchored at pid (made by embed); `label` names it
-- in messages (default "heap at <pid>").
-- @return a Heap, or nil, msg, "corrupt"
function M.attach(pager, pid, label)
  object.check_pager("heap.attach", pager)
  object.check_integer("heap.attach", "pid", pid, 0)
  label = label or format("heap at %d", pid)
  if not pcall(view, pager, pid) then
    return nil, format("heap.attach: %s: page %d is not an allocated protected page", label, pid),
           "corrupt"
  end
  local self, msg, code = make_handle(pager, label, pid)
  if not self then return nil, "heap.attach: " .. msg, code end
  return self
end

--- Free every page of the heap anchored at pid, the anchor too. Handles
-- of it raise afterwards. Joins the open transaction or is one of its own.
-- @return true, or nil, msg, code
function M.destroy(pager, pid)
  object.check_pager("heap.destroy", pager)
  access.check_writable(pager, "heap.destroy")
  object.check_integer("heap.destroy", "pid", pid, 0)
  return atomic(pager, function()
    local ok, msg, code = free_contents(pager, format("heap at %d", pid), pid)
    if not ok then return nil, msg, code end
    return access.free_page(pager, pid)
  end)
end

return M
