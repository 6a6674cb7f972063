-- examples/buddy.lua -- a persistent, crash-consistent buddy allocator, built in
-- docs/ALLOCATORS.md: blocks of 32 << k bytes up to half a page, split and merged
-- in one-page regions. Demo: `lua5.4 examples/buddy.lua` after `make`.
--   page        offset size  field (little-endian; a "pid + 1" holds 0 for none)
--   anchor           0    8  magic "mpbuddy1"
--                    8    4  pid + 1 of the first region
--          32 + 16 * k   16  the free list of order k (see mappedpages.access)
--   region           0    8  magic "mpbuddyr"
--                    8    4  pid + 1 of the next region
--                   12    4  owner: the anchor's pid
--               32 + u    1  1 + k if a block in use of order k starts at 32 * u,
--                            else 0; the header (to the map's end) is one of them
--   free block       0   24  its node in the free list of its order
--   a ref                    pid << 16 | offset

local is_main = arg and arg[0] and debug.getinfo(1, "S").source == "@" .. arg[0]
if is_main then   -- run from the repository root: the in-tree modules and build
  package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
  package.cpath = "build/?.so;" .. package.cpath
end

local access = require "mappedpages.access"
local object = require "mappedpages.object"
local ANCHOR_MAGIC, REGION_MAGIC = "mpbuddy1", "mpbuddyr"
local LISTS, MAP = 32, 32   -- field offsets, in the anchor and in a region
local MIN = 32              -- the smallest block, and a map unit
local M = {KIND = "example.buddy/2"}
local Buddy = {}
Buddy.__index = Buddy

local function order(size)   -- the smallest k with MIN << k >= size
  local k = 0
  while MIN << k < size do k = k + 1 end
  return k
end

local function free_list(anchor, k) return anchor << 16 | (LISTS + 16 * k) end

-- Does no block in use start within the block of order k at offset? Free
-- space is always merged whole, so then that block is free, on free list k.
local function unused(map, offset, k)
  return map:sub(offset // MIN + 1, offset // MIN + (1 << k)) == ("\0"):rep(1 << k)
end

function M.open(pager, name)   -- a new anchor is a zeroed page: it needs its magic only
  local pid, msg, code = object.open(pager, name, M.KIND, "buddy.open", ANCHOR_MAGIC)
  if not pid then return nil, msg, code end
  local self = object.handle(Buddy, pager, name, pid)
  self.units = #self.anchor // MIN        -- constants of the page size: the map's units,
  self.top = order(#self.anchor // 2)     -- the largest order (half a page) and the
  self.header = order(MAP + self.units)   -- header's
  return self
end

-- The regions are the object's pages (see mappedpages.object): drop frees them.
function M.drop(pager, name) return object.drop(pager, name, M.KIND, "buddy.drop") end

-- The view of ref's region, the block's offset and size; raises for anything else.
local function locate(self, ref, fname)
  object.check_integer(fname, "ref", ref, 1, nil, 2)
  local offset = ref & 0xFFFF
  local region = object.own_page(self, ref >> 16, REGION_MAGIC, fname, ref)
  if region and offset > 0 and offset % MIN == 0 then   -- (the header is at 0)
    local byte = region:unpack(MAP + offset // MIN, "B")
    if byte > 0 then return region, offset, MIN << (byte - 1) end
  end
  access.raise(fname, 2, "ref %d is not an allocated block of %q (freed, or never "
               .. "allocated)", ref, self.name)
end
object.contents(Buddy, "buddy", locate)   -- b:read(ref [, off [, len]]), b:write, b:size

function Buddy:alloc(size)
  object.check_handle(self, "buddy:alloc", true)
  object.check_integer("buddy:alloc", "size", size, 1, MIN << self.top)
  local k = order(size)
  return access.atomic(self.pager, function()
    local stage = access.stage(self.pager)
    local j = k - 1   -- the order looked at
    local ref
    repeat   -- the first block that may be handed out, of order k or more
      j = j + 1
      ref = stage:first_usable(free_list(self.pid, j))
    until ref or j == self.top
    if not ref then   -- none: a new region, the whole page split down to its header
      local region, msg, code = object.add_page(stage, self.pid, REGION_MAGIC)
      if not region then return nil, msg, code end
      stage:set(region, MAP, "B", 1 + self.header)   -- the header: a block in use
      for i = self.header, self.top do   -- one free block of each order from the header's
        stage:push_free(free_list(self.pid, i), region << 16 | (MIN << i), false)
      end
      j = math.max(k, self.header)
      ref = region << 16 | (MIN << j)
    end
    stage:remove(free_list(self.pid, j), ref)
    for i = j - 1, k, -1 do   -- split down to order k: each upper half is free
      stage:push_free(free_list(self.pid, i), ref + (MIN << i), false)
    end
    stage:set(ref >> 16, MAP + (ref & 0xFFFF) // MIN, "B", 1 + k)
    -- Every writer before the first write: a failure leaves nothing half done.
    local writers, msg, code = stage:apply()
    if not writers then return nil, msg, code end
    writers[ref >> 16]:fill(0, ref & 0xFFFF, MIN << k)   -- a new block reads as zeros
    return ref
  end)
end

function Buddy:free(ref)
  object.check_handle(self, "buddy:free", true)
  local region_view, offset, size = locate(self, ref, "buddy:free")
  local region = ref >> 16
  local map = region_view:read(MAP, self.units)
  return access.atomic(self.pager, function()
    local stage = access.stage(self.pager)
    local k = order(size)
    stage:set(region, MAP + offset // MIN, "B", 0)
    while k < self.top and unused(map, offset ~ (MIN << k), k) do   -- the buddy is free:
      stage:remove(free_list(self.pid, k), region << 16 | (offset ~ (MIN << k)))
      offset = offset & ~(MIN << k)   -- merged, the pair starts at the lower one
      k = k + 1
    end
    -- Freed by this transaction, the block waits at the tail of its list until the
    -- next one: a ref freed in transaction N is not handed out again before N + 1.
    stage:push_free(free_list(self.pid, k), region << 16 | offset, true)
    local _, in_use = map:gsub("[^\0]", "")   -- blocks in use: the header, ref, others?
    if in_use == 2 then   -- none: the region is empty, its free blocks a new region's
      for i = self.header, self.top do
        stage:remove(free_list(self.pid, i), region << 16 | (MIN << i))
      end
      object.remove_page(stage, self.pid, region)   -- apply frees it after every writer
    end
    local ok, msg, code = stage:apply()
    if not ok then return nil, msg, code end
    return true
  end)
end

function Buddy:stats()   -- counted from the maps: the anchor keeps no totals
  object.check_handle(self, "buddy:stats")
  local regions = object.pages(self.pager, self.pid)
  local objects, bytes = 0, 0
  for _, pid in ipairs(regions) do
    local map = access.view(self.pager, pid):read(MAP, self.units)
    for byte in map:gmatch("[^\0]", 2) do   -- past the header
      objects = objects + 1
      bytes = bytes + (MIN << (byte:byte() - 1))
    end
  end
  return object.stats(objects, bytes, #regions + 1, #self.anchor,   -- + 1: the anchor
                      {regions = #regions, max_size = MIN << self.top})
end
Buddy.__tostring = object.describe("buddy", "blocks")

-- Note in `free` (ref -> its list) the free blocks a map implies in the block
-- of order k at offset: in use (nothing else starting in it), free (nothing in
-- use starting in it) or split in two. False if no buddy system has this map.
local function tile(self, map, pid, offset, k, free)
  local unit = offset // MIN
  local byte = map:byte(unit + 1)
  if byte == 1 + k then
    return map:sub(unit + 2, unit + (1 << k)) == ("\0"):rep((1 << k) - 1)
  elseif unused(map, offset, k) then
    free[pid << 16 | offset] = free_list(self.pid, k)
    return true
  end
  return k > 0 and byte <= k and tile(self, map, pid, offset, k - 1, free)
         and tile(self, map, pid, offset + (MIN << (k - 1)), k - 1, free)
end

function Buddy:check()
  object.check_handle(self, "buddy:check")
  local bad, verdict = object.problems()
  local free, lists = {}, {}   -- the free blocks that the maps imply; the free lists
  if self.anchor:read(0, 8) ~= ANCHOR_MAGIC then bad("the anchor has a bad magic") end
  local regions, broken = object.pages(self.pager, self.pid, REGION_MAGIC)
  if broken then bad("the regions: %s", broken) end
  for _, pid in ipairs(regions) do
    local map = access.view(self.pager, pid):read(MAP, self.units)
    if map:byte(1) ~= 1 + self.header or not map:find("[^\0]", 2)   -- (nothing in use?)
        or not tile(self, map, pid, 0, self.top + 1, free) then
      bad("region %d: a bad map, or no block in use", pid)
    end
  end
  for k = 0, self.top do lists[k + 1] = free_list(self.pid, k) end
  access.check_lists(self.pager, lists, free, bad)   -- each free block on its list, once
  return verdict()
end

if is_main then   -- the demo: a short session in a temporary file
  local path = os.tmpname()
  os.remove(path)   -- mp.create wants a path that does not exist
  local b = assert(M.open(assert(require("mappedpages").create(path)), "heap"))
  local small, big = b:alloc(5), b:alloc(2000)
  print("allocated:", b, "block sizes", b:size(small), b:size(big))
  print("freed:", b:free(small), b:free(big), b, "check:", b:check())
  b.pager:close()
  os.remove(path)
end

return M
