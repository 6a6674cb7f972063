-- examples/arena.lua -- a persistent, crash-consistent arena allocator, built step by step in
-- docs/ALLOCATORS.md: bump allocation in a chain of protected pages, reset() frees them all in one
-- transaction, contents transactional. Demo: `lua5.4 examples/arena.lua` from the repository root
-- after `make`. Module: package.path = "examples/?.lua;" .. package.path; local arena = require "arena"
--
-- The anchor: c8 magic, u32 head + 1 (the page being filled; 0: none), u32 pages, i8 objects, i8 bytes,
-- i8 serial (pages ever added). A page: c8 magic, u32 owner (the anchor's pid), u32 next + 1, u32
-- count, u32 top, u32 tag, u32 0, the objects from offset 32 up, and at page_size - 4 * (i + 1) object
-- i's u16 offset and u16 size. A ref is tag << 48 | pid << 16 | i; tags are 1..32767, by serial.
local is_main = arg and arg[0] and debug.getinfo(1, "S").source == "@" .. arg[0]
if is_main then   -- from the repository root: the in-tree modules and build
  package.path, package.cpath = "lua/?.lua;lua/?/init.lua;" .. package.path, "build/?.so;" .. package.cpath
end
local access, object = require "mappedpages.access", require "mappedpages.object"

local format, pcall = string.format, pcall
local raise, atomic, writer, view = access.raise, access.atomic, access.writer, access.view
local check_handle, check_integer = object.check_handle, object.check_integer

local KIND, AMAGIC, PMAGIC, HEADER = "example.arena/1", "mparena1", "mparenp1", 32
local M = {KIND = KIND}
local Arena = {}; Arena.__index = Arena

-- Run fn(w, ...) in the open transaction or one of its own, w being the
-- transaction's writer of pid (the first one copies the page: it can fail).
local function with_writer(pager, pid, fn, ...)
  return atomic(pager, function(...)
    local w, msg, code = writer(pager, pid)
    if not w then return nil, msg, code end
    return fn(w, ...)
  end, ...)
end

local function free_pages(pager, anchor)   -- every data page
  local pid, ok, msg, code = anchor:unpack(8, "<I4") - 1, true
  while ok and pid >= 0 do
    local nxt = view(pager, pid):unpack(12, "<I4") - 1
    ok, msg, code = access.free_page(pager, pid)
    pid = nxt
  end
  return ok, msg, code
end

function M.open(pager, name)
  local pid, msg, code = object.open(pager, name, KIND, "arena.open", AMAGIC)   -- a new anchor: the magic
  if not pid then return nil, msg, code end
  return object.handle(Arena, pager, name, pid)
end

function M.drop(pager, name)
  return object.drop(pager, name, KIND, "arena.drop", function(pid) return free_pages(pager, view(pager, pid)) end)
end

local function locate(self, ref, fname)   -- ref's page view, offset, size
  check_integer(fname, "ref", ref, 1, nil, 2)
  local tag, pid, slot = ref >> 48, (ref >> 16) & 0xFFFFFFFF, ref & 0xFFFF
  local ok, v = pcall(view, self.pager, pid)
  if ok and v:read(0, 8) == PMAGIC then
    local owner, _, count, _, ptag = v:unpack(8, "<I4 I4 I4 I4 I4")
    if owner ~= self.pid then raise(fname, 2, "ref %d belongs to another object, not to arena %q", ref, self.name) end
    if ptag == tag and slot < count then return v, v:unpack(#v - 4 * (slot + 1), "<I2 I2") end
  end
  raise(fname, 2, "ref %d is not an object of arena %q (freed by reset, or never allocated)", ref, self.name)
end
object.contents(Arena, "arena", locate)   -- a:read(ref [, off [, len]]), a:write(ref, off, s), a:size(ref)

function Arena:alloc(size)
  check_handle(self, "arena:alloc", true)
  local pager, P = self.pager, #self.anchor
  check_integer("arena:alloc", "size", size, 1, P - HEADER - 4)
  return with_writer(pager, self.pid, function(aw)
    -- Allocate first (the anchor's writer; a new head page when the object
    -- does not fit; the head's writer), write second.
    local head, pages, objects, bytes, serial = self.anchor:unpack(8, "<I4 I4 i8 i8 i8")
    local pid, count, top, tag, msg, code = head - 1, 0, P, 0
    if pid >= 0 then count, top, tag = view(pager, pid):unpack(16, "<I4 I4 I4") end
    local fits, w = top + size <= P - 4 * (count + 1), nil
    if not fits then pid, msg, code = pager:alloc_protected() end
    if pid then w, msg, code = writer(pager, pid) end
    if not w then
      if pid and not fits then access.free_page(pager, pid) end
      return nil, msg, code
    end
    if not fits then
      serial, count, top = serial + 1, 0, HEADER
      tag = serial % 0x7FFF + 1
      w:pack(0, "<c8 I4 I4 I4 I4 I4", PMAGIC, self.pid, head, 0, HEADER, tag)
      head, pages = pid + 1, pages + 1
    end
    w:pack(P - 4 * (count + 1), "<I2 I2", top, size)
    w:pack(16, "<I4 I4", count + 1, top + size)
    aw:pack(8, "<I4 I4 i8 i8 i8", head, pages, objects + 1, bytes + size, serial)
    return tag << 48 | pid << 16 | count
  end)
end

function Arena:reset()
  check_handle(self, "arena:reset", true)
  return with_writer(self.pager, self.pid, function(aw)
    local ok, msg, code = free_pages(self.pager, self.anchor)
    if not ok then return nil, msg, code end
    return aw:pack(8, "<I4 I4 i8 i8", 0, 0, 0, 0) and true   -- the serial stays
  end)
end

function Arena:stats()
  check_handle(self, "arena:stats")
  local P, pages, objects, bytes = #self.anchor, self.anchor:unpack(12, "<I4 i8 i8")
  return {objects = objects, bytes = bytes, pages = pages + 1, page_bytes = (pages + 1) * P,
          efficiency = bytes / ((pages + 1) * P), max_size = P - HEADER - 4}
end

function Arena:check()
  check_handle(self, "arena:check")
  local problems, P = {}, #self.anchor
  local function bad(...) problems[#problems + 1] = format(...) end
  local magic, head, pages, objects, bytes = self.anchor:unpack(0, "<c8 I4 I4 i8 i8")
  if magic ~= AMAGIC then bad("the anchor has a bad magic") end
  local pid, seen, n, nobj, nbytes = head - 1, {}, 0, 0, 0
  while pid >= 0 and #problems == 0 do
    local ok, v = pcall(view, self.pager, pid)
    if not ok or seen[pid] then bad("page %d: not an allocated protected page, or a cycle", pid) break end
    local expect, pmagic, owner, nxt, count, top = HEADER, v:unpack(0, "<c8 I4 I4 I4 I4")
    if pmagic ~= PMAGIC or owner ~= self.pid then bad("page %d: bad magic or owner", pid) end
    for i = 0, count - 1 do
      local off, size = v:unpack(P - 4 * (i + 1), "<I2 I2")
      if off ~= expect or size < 1 then bad("page %d: object %d at %d, expected at %d", pid, i, off, expect) end
      expect, nobj, nbytes = off + size, nobj + 1, nbytes + size
    end
    if top ~= expect or top > P - 4 * count then bad("page %d: top %d, objects end at %d", pid, top, expect) end
    seen[pid], n, pid = true, n + 1, nxt - 1
  end
  if n ~= pages or nobj ~= objects or nbytes ~= bytes then
    bad("anchor: %d pages, %d objects, %d bytes; chain: %d, %d, %d", pages, objects, bytes, n, nobj, nbytes)
  end
  if #problems > 0 then return false, problems else return true end
end

function Arena:__tostring()
  local ok, s = pcall(self.stats, self)
  if not ok then return format("arena %q (unusable: %s)", self.name, s) end
  return format("arena %q: %d objects, %d bytes in %d page%s (efficiency %.3f)",
                self.name, s.objects, s.bytes, s.pages, s.pages == 1 and "" or "s", s.efficiency)
end

if is_main then   -- the demo: a short session against a temp file
  local mp, path = require "mappedpages", os.tmpname()
  os.remove(path)   -- mp.create wants a path that does not exist
  local pager = assert(mp.create(path))
  local a = assert(M.open(pager, "scratch"))
  local r1, r2 = a:alloc(5), a:alloc(100)
  a:write(r1, 0, "hello")
  print(a, format("refs 0x%x 0x%x:", r1, r2), a:read(r1), a:size(r2))
  print("rolled back:", pcall(pager.transaction, pager, function() a:alloc(3000) error("no") end))
  pager:close()
  pager = assert(mp.open(path))
  a = assert(M.open(pager, "scratch"))
  print("reopened:", a, a:read(r1))
  print("reset:", a:reset(), a, pcall(a.read, a, r1))
  print("check:", a:check())
  pager:close(); os.remove(path)
end
return M
