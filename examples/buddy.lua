-- examples/buddy.lua -- a persistent, crash-consistent buddy allocator built in docs/ALLOCATORS.md (with
-- its page layout): blocks of 32 bytes to half a page in regions of one protected page, free lists per
-- order in the file. Demo: `lua5.4 examples/buddy.lua` from the repository root after `make`. Module:
-- package.path = "examples/?.lua;" .. package.path; local buddy = require "buddy"
local is_main = arg and arg[0] and debug.getinfo(1, "S").source == "@" .. arg[0]
if is_main then   -- from the repository root: the in-tree modules and build
  package.path, package.cpath = "lua/?.lua;lua/?/init.lua;" .. package.path, "build/?.so;" .. package.cpath
end
local access, object = require "mappedpages.access", require "mappedpages.object"
local format, pcall = string.format, pcall
local raise, atomic, view, check_handle = access.raise, access.atomic, access.view, object.check_handle
local KIND, AMAGIC, RMAGIC = "example.buddy/1", "mpbuddy1", "mpbuddyr"
local MIN, LISTS, FREE, USED = 32, 32, 0x40, 0x80   -- a map byte: FREE or USED | order
local M, Buddy = {KIND = KIND}, {}; Buddy.__index = Buddy

local function order(size) local k = 0 while MIN << k < size do k = k + 1 end return k end
local function geometry(P)   -- H: bytes of header and map; top: the largest order; blocks: see below
  local g, off = {P = P, H = 32 + P // MIN, top = order(P // 2), blocks = {}}, 32 + P // MIN
  while off < P do   -- a new region's free blocks: the largest aligned ones in [H, P)
    g.blocks[#g.blocks + 1], off = {off, order(math.min(off & -off, P // 2))}, off + math.min(off & -off, P // 2)
  end
  return g
end

-- A ref is pid << 16 | offset. A free block holds i8 next (at 0), i8 prev (8) and i8 the number
-- of the transaction that freed it (16; 0: long ago).
local function lget(st, ref, f) return st:get(ref >> 16, (ref & 0xFFFF) + f, "<i8") end
local function lset(st, ref, f, v) st:set(ref >> 16, (ref & 0xFFFF) + f, "<i8", v) end
local function setmap(st, ref, m) st:set(ref >> 16, 32 + (ref & 0xFFFF) // MIN, "B", m) end

local function push(st, A, ref, k, stamp, at_tail)   -- onto free list k; blocks freed now at its tail
  local L, d = LISTS + 16 * k, at_tail and 8 or 0    -- the anchor has its head at L, tail at L + 8
  local old = st:get(A, L + d, "<i8")
  setmap(st, ref, FREE | k)
  lset(st, ref, 16, stamp); lset(st, ref, d, old); lset(st, ref, 8 - d, 0)
  if old ~= 0 then lset(st, old, 8 - d, ref) else st:set(A, L + 8 - d, "<i8", ref) end
  st:set(A, L + d, "<i8", ref)
end

local function unlink(st, A, ref, k)
  local L, nxt, prv = LISTS + 16 * k, lget(st, ref, 0), lget(st, ref, 8)
  if prv ~= 0 then lset(st, prv, 0, nxt) else st:set(A, L, "<i8", nxt) end
  if nxt ~= 0 then lset(st, nxt, 8, prv) else st:set(A, L + 8, "<i8", prv) end
end

local function find(st, A, g, k, N)   -- the smallest order >= k whose first block was freed before N
  for j = k, g.top do
    local h = st:get(A, LISTS + 16 * j, "<i8")
    if h ~= 0 and lget(st, h, 16) < N then return h, j end
  end
end

function M.open(pager, name)
  local pid, msg, code = object.open(pager, name, KIND, "buddy.open", AMAGIC)   -- a new anchor: the magic
  if not pid then return nil, msg, code end
  return object.handle(Buddy, pager, name, pid)
end

function M.drop(pager, name)   -- the regions: u32 first + 1 in the anchor, next + 1 in each
  return object.drop(pager, name, KIND, "buddy.drop", function(A)
    local pids, pid = {}, view(pager, A):unpack(8, "<I4") - 1
    while pid >= 0 do pids[#pids + 1], pid = pid, view(pager, pid):unpack(16, "<I4") - 1 end
    for _, r in ipairs(pids) do local ok, m, c = access.free_page(pager, r) if not ok then return nil, m, c end end
    return true
  end)
end

local function locate(self, ref, fname)   -- ref's region view, offset, block size
  object.check_integer(fname, "ref", ref, 1, nil, 2)
  local off, ok, v = ref & 0xFFFF, pcall(view, self.pager, ref >> 16)
  if ok and v:read(0, 8) == RMAGIC and off % MIN == 0 and off >= geometry(#v).H then
    if v:unpack(8, "<I4") ~= self.pid then raise(fname, 2, "ref %d belongs to another object", ref) end
    local m = v:unpack(32 + off // MIN, "B")
    if m & USED ~= 0 then return v, off, MIN << (m & 0x3F) end
  end
  raise(fname, 2, "ref %d is not an allocated block of %q (freed, or never allocated)", ref, self.name)
end
object.contents(Buddy, "buddy", locate)   -- b:read, b:write, b:size

function Buddy:alloc(size)
  check_handle(self, "buddy:alloc", true)
  local pager, A, g = self.pager, self.pid, geometry(#self.anchor)
  object.check_integer("buddy:alloc", "size", size, 1, MIN << g.top)
  return atomic(pager, function()
    local st, k, N = access.stage(pager), order(size), access.txn_number(pager)
    local ref, j = find(st, A, g, k, N)
    local np, ws, msg, code
    if not ref then   -- a new region, first in the region list, its blocks on the lists
      np, msg, code = pager:alloc_protected()
      if not np then return nil, msg, code end
      st:set(np, 0, "c8", RMAGIC); st:set(np, 8, "<I4", A); st:set(np, 16, "<I4", st:get(A, 8, "<I4"))
      st:set(A, 8, "<I4", np + 1); st:add(A, 12, "<I4", 1)
      for _, b in ipairs(g.blocks) do push(st, A, np << 16 | b[1], b[2], 0, false) end
      ref, j = find(st, A, g, k, N)
    end
    unlink(st, A, ref, j)
    for i = j - 1, k, -1 do push(st, A, ref + (MIN << i), i, 0, false) end   -- split
    setmap(st, ref, USED | k)
    st:add(ref >> 16, 12, "<I4", MIN << k); st:add(A, 16, "<i8", 1); st:add(A, 24, "<i8", MIN << k)
    ws, msg, code = st:apply()   -- every writer first: on failure nothing changed
    if not ws then if np then access.free_page(pager, np) end return nil, msg, code end
    ws[ref >> 16]:fill(0, ref & 0xFFFF, MIN << k)
    return ref
  end)
end

function Buddy:free(ref)
  check_handle(self, "buddy:free", true)
  local _, off, size = locate(self, ref, "buddy:free")
  local pager, A, g, pid = self.pager, self.pid, geometry(#self.anchor), ref >> 16
  return atomic(pager, function()
    local st, k = access.stage(pager), order(size)
    setmap(st, ref, 0)
    st:add(pid, 12, "<I4", -size); st:add(A, 16, "<i8", -1); st:add(A, 24, "<i8", -size)
    while k < g.top and st:get(pid, 32 + (off ~ (MIN << k)) // MIN, "B") == FREE | k do   -- merge
      local b = off ~ (MIN << k)
      unlink(st, A, pid << 16 | b, k); setmap(st, pid << 16 | b, 0)
      off, k = math.min(off, b), k + 1
    end
    local empty = st:get(pid, 12, "<I4") == 0
    if not empty then push(st, A, pid << 16 | off, k, access.txn_number(pager), true)
    else   -- empty: its blocks leave their lists, it leaves the region list, its page goes back
      for _, b in ipairs(g.blocks) do if b[1] ~= off then unlink(st, A, pid << 16 | b[1], b[2]) end end
      local prev, cur = 0, st:get(A, 8, "<I4")   -- the region before it, + 1 (0: the anchor)
      while cur ~= pid + 1 do prev, cur = cur, st:get(cur - 1, 16, "<I4") end
      st:set(prev > 0 and prev - 1 or A, prev > 0 and 16 or 8, "<I4", st:get(pid, 16, "<I4"))
      st:add(A, 12, "<I4", -1); st:forget(pid)
    end
    local ws, msg, code = st:apply()
    if not ws then return nil, msg, code end
    return not empty or access.free_page(pager, pid)
  end)
end

function Buddy:stats()
  check_handle(self, "buddy:stats")
  local P, regions, objects, bytes = #self.anchor, self.anchor:unpack(12, "<I4 i8 i8")
  return {objects = objects, bytes = bytes, pages = regions + 1, page_bytes = (regions + 1) * P,
          efficiency = bytes / ((regions + 1) * P), regions = regions, max_size = P // 2}
end

function Buddy:check()
  check_handle(self, "buddy:check")
  local g, A, problems, free = geometry(#self.anchor), self.pid, {}, {}   -- free: ref -> order
  local function bad(...) problems[#problems + 1] = format(...) end
  local magic, first, regions, objects, bytes = self.anchor:unpack(0, "<c8 I4 I4 i8 i8")
  local pid, n, nobj, nbytes, zeros = first - 1, 0, 0, 0, ("\0"):rep(g.P // MIN)
  if magic ~= AMAGIC then bad("the anchor has a bad magic") end
  while pid >= 0 and #problems == 0 and n <= regions do   -- each region: its blocks tile [H, P)
    local ok, v = pcall(view, self.pager, pid)
    if not ok or v:read(0, 12) ~= RMAGIC .. ("<I4"):pack(A) then bad("region %d: bad page or owner", pid) break end
    local bmap, u, used, nxt = v:read(32, g.P // MIN), g.H // MIN, v:unpack(12, "<I4 I4")   -- u: a unit
    if used == 0 or bmap:sub(1, u) ~= zeros:sub(1, u) then bad("region %d: empty, or blocks in the header", pid) end
    while u < #bmap and #problems == 0 do
      local m = bmap:byte(u + 1)
      local units, kind = 1 << (m & 0x3F), m & 0xC0
      if (kind ~= FREE and kind ~= USED) or m & 0x3F > g.top or u % units ~= 0 or bmap:sub(u + 2, u + units)
          ~= zeros:sub(2, units) or kind == FREE and bmap:byte((u ~ units) + 1) == m then
        bad("region %d: a bad block, or free buddies, at %d", pid, u * MIN)
      elseif kind == USED then used, nobj, nbytes = used - units * MIN, nobj + 1, nbytes + units * MIN
      else free[pid << 16 | u * MIN] = m & 0x3F end
      u = u + units
    end
    if used ~= 0 then bad("region %d: its header's count of bytes in use is wrong", pid) end
    n, pid = n + 1, nxt - 1
  end
  if n ~= regions or nobj ~= objects or nbytes ~= bytes then bad("anchor: %d regions, %d blocks, %d bytes; "
    .. "found %d, %d, %d", regions, objects, bytes, n, nobj, nbytes) end
  for k = 0, g.top do   -- each free list: every free block once, linked both ways
    local last, ref, tail = 0, self.anchor:unpack(LISTS + 16 * k, "<i8 i8")
    while ref ~= 0 and #problems == 0 do
      local nxt, prv = view(self.pager, ref >> 16):unpack(ref & 0xFFFF, "<i8 i8")
      if free[ref] ~= k or prv ~= last then bad("free list %d: %d is not free, or twice, or links wrong", k, ref) end
      free[ref], last, ref = nil, ref, nxt
    end
    if #problems == 0 and last ~= tail then bad("free list %d ends at %d, the anchor says %d", k, last, tail) end
  end
  if #problems == 0 and next(free) then bad("free block %d is on no list", next(free)) end
  if #problems > 0 then return false, problems else return true end
end

function Buddy:__tostring()
  local ok, s = pcall(self.stats, self)
  return not ok and format("buddy %q (unusable: %s)", self.name, s) or format("buddy %q: %d blocks, %d bytes in "
    .. "%d page%s (efficiency %.3f)", self.name, s.objects, s.bytes, s.pages, s.pages == 1 and "" or "s", s.efficiency)
end

if is_main then   -- the demo: a short session against a temp file
  local mp, path = require "mappedpages", os.tmpname()
  os.remove(path)   -- mp.create wants a path that does not exist
  local pager = assert(mp.create(path))
  local b = assert(M.open(pager, "heap"))
  local r1, r2 = b:alloc(5), b:alloc(2000)
  print(b, format("refs 0x%x 0x%x, block sizes", r1, r2), b:size(r1), b:size(r2), b:write(r1, 0, "hi"))
  pager:close(); pager = assert(mp.open(path)); b = assert(M.open(pager, "heap"))
  print("reopened:", tostring(b), b:read(r1, 0, 2), "freed:", b:free(r1), b:free(r2), b, b:check())
  pager:close(); os.remove(path)
end
return M
