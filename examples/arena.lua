-- examples/arena.lua -- a persistent, crash-consistent arena allocator, built
-- step by step in docs/ALLOCATORS.md: objects bump-allocated in a chain of
-- protected pages, all freed at once by reset(), their contents transactional.
-- Demo: `lua5.4 examples/arena.lua` from the repository root after `make`.
-- Module: package.path = "examples/?.lua;" .. package.path; require "arena"
--
--   page         offset size  field (little-endian; a "pid + 1" holds 0 for none)
--   anchor            0    8  magic "mparena1"
--                     8    4  head: pid + 1 of the newest data page
--   data page         0    8  magic "mparenp1"
--                     8    4  next: pid + 1 of the next older data page
--                    12    4  owner: the anchor's pid
--                    16    4  tag: (number of the transaction that added it) % 32767 + 1
--                    20    4  count: objects in the page
--                    24    4  top: the first free byte
--                    32       the objects, packed upwards
--          P - 4(i + 1)    4  object i's entry: u16 offset, u16 size (P: the page size)
--   a ref                     tag << 48 | pid << 16 | i
-- The data pages are the object's pages of mappedpages.object (magic, next, owner).

local is_main = arg and arg[0] and debug.getinfo(1, "S").source == "@" .. arg[0]
if is_main then   -- run from the repository root: the in-tree modules and build
  package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
  package.cpath = "build/?.so;" .. package.cpath
end

local access = require "mappedpages.access"
local object = require "mappedpages.object"
local atomic, writer, view = access.atomic, access.writer, access.view
local check_handle, check_integer = object.check_handle, object.check_integer

local ANCHOR_MAGIC, PAGE_MAGIC = "mparena1", "mparenp1"
local NEXT, TAG, COUNT = 8, 16, 20   -- field offsets (see above); top follows count
local HEADER, ENTRY = 32, 4          -- bytes: a page's header, an object's entry

local M = {KIND = "example.arena/2"}
local Arena = {}
Arena.__index = Arena

-- Where object i's entry sits in a page of page_size bytes.
local function entry_offset(page_size, i) return page_size - ENTRY * (i + 1) end

function M.open(pager, name)   -- a new anchor is a zeroed page: it needs its magic only
  local pid, msg, code = object.open(pager, name, M.KIND, "arena.open", ANCHOR_MAGIC)
  if not pid then return nil, msg, code end
  return object.handle(Arena, pager, name, pid)
end

function M.drop(pager, name)   -- the data pages are the object's pages: drop frees them
  return object.drop(pager, name, M.KIND, "arena.drop")
end

-- The view of the page holding ref's object, its offset and its size. Raises
-- (naming fname, blaming whoever called the method) for anything else.
local function locate(self, ref, fname)
  check_integer(fname, "ref", ref, 1, nil, 2)
  local tag, pid, i = ref >> 48, (ref >> 16) & 0xFFFFFFFF, ref & 0xFFFF
  local page = object.own_page(self, pid, PAGE_MAGIC, fname, ref)
  if page then
    local page_tag, count = page:unpack(TAG, "<I4 I4")
    -- A pid a reset freed comes back only in a later transaction: another tag.
    if page_tag == tag and i < count then
      return page, page:unpack(entry_offset(#page, i), "<I2 I2")
    end
  end
  access.raise(fname, 2, "ref %d is not an object of arena %q (freed by reset, or "
               .. "never allocated)", ref, self.name)
end
object.contents(Arena, "arena", locate)   -- a:read(ref [, off [, len]]), a:write, a:size

-- The writer of the page for a new object of `size` bytes: the head page if
-- the object fits between its top and its directory (which the object's
-- entry extends), else a new page put at the head of the chain.
local function page_for(self, size)
  local head = self.anchor:unpack(NEXT, "<I4") - 1
  if head >= 0 then
    local count, top = view(self.pager, head):unpack(COUNT, "<I4 I4")
    local fits = top + size <= entry_offset(#self.anchor, count)
    if fits then return writer(self.pager, head) end
  end
  -- Everything that can fail comes before the first write: the anchor's
  -- writer, then the page and its writer (new_page frees the page again if
  -- its writer cannot be had). So a failure leaves nothing half done.
  local anchor_writer, msg, code = writer(self.pager, self.pid)
  if not anchor_writer then return nil, msg, code end
  local w
  w, msg, code = access.new_page(self.pager)
  if not w then return nil, msg, code end
  local tag = access.txn_number(self.pager) % 0x7FFF + 1
  w:pack(0, "<c8 I4 I4 I4 I4 I4", PAGE_MAGIC, head + 1, self.pid, tag, 0, HEADER)
  anchor_writer:pack(NEXT, "<I4", w:id() + 1)
  return w
end

function Arena:alloc(size)
  check_handle(self, "arena:alloc", true)
  local page_size = #self.anchor
  check_integer("arena:alloc", "size", size, 1, page_size - HEADER - ENTRY)
  return atomic(self.pager, function()
    local w, msg, code = page_for(self, size)
    if not w then return nil, msg, code end
    -- Nothing can fail from here on. The object's bytes have never been
    -- written (a page starts zeroed, and its top only grows): they read as zeros.
    local tag, count, top = w:unpack(TAG, "<I4 I4 I4")
    w:pack(entry_offset(page_size, count), "<I2 I2", top, size)
    w:pack(COUNT, "<I4 I4", count + 1, top + size)
    return tag << 48 | w:id() << 16 | count
  end)
end

function Arena:reset()
  check_handle(self, "arena:reset", true)
  return atomic(self.pager, function()
    -- Unlink the pages, then free them: a free can fail too (when memory
    -- runs out), and then the anchor names no freed page.
    local pages = object.pages(self.pager, self.pid)
    local w, msg, code = writer(self.pager, self.pid)
    if not w then return nil, msg, code end
    w:pack(NEXT, "<I4", 0)
    return access.free_pages(self.pager, pages)
  end)
end

function Arena:stats()   -- counted from the pages: the anchor keeps no totals
  check_handle(self, "arena:stats")
  local page_size = #self.anchor
  local pages = object.pages(self.pager, self.pid)
  local objects, bytes = 0, 0
  for _, pid in ipairs(pages) do
    local count, top = view(self.pager, pid):unpack(COUNT, "<I4 I4")
    objects = objects + count
    bytes = bytes + top - HEADER
  end
  return object.stats(objects, bytes, #pages + 1, page_size,   -- the anchor counts too
                      {max_size = page_size - HEADER - ENTRY})
end
Arena.__tostring = object.describe("arena", "objects")

function Arena:check()
  check_handle(self, "arena:check")
  local bad, verdict = object.problems()
  if self.anchor:read(0, 8) ~= ANCHOR_MAGIC then bad("the anchor has a bad magic") end
  local pages, broken = object.pages(self.pager, self.pid, PAGE_MAGIC)
  if broken then bad("the data pages: %s", broken) end
  for _, pid in ipairs(pages) do
    local page = view(self.pager, pid)
    local count, top = page:unpack(COUNT, "<I4 I4")
    local expected = HEADER   -- each object starts where the one before it ends
    for i = 0, math.min(count, (#page - HEADER) // ENTRY) - 1 do   -- (a bad count too)
      local offset, size = page:unpack(entry_offset(#page, i), "<I2 I2")
      if offset ~= expected or size == 0 then
        bad("page %d: object %d at %d, expected at %d", pid, i, offset, expected)
      end
      expected = offset + size
    end
    if top ~= expected or top > entry_offset(#page, count - 1) then
      bad("page %d: top %d, objects end at %d", pid, top, expected)
    end
  end
  return verdict()
end

if is_main then   -- the demo: a short session against a temporary file
  local mp = require "mappedpages"
  local path = os.tmpname()
  os.remove(path)   -- mp.create wants a path that does not exist
  local pager = assert(mp.create(path))
  local a = assert(M.open(pager, "scratch"))
  local greeting = a:alloc(5)
  a:write(greeting, 0, "hello")
  print("allocated:", a, a:read(greeting))
  print("a reset, rolled back:", pcall(pager.transaction, pager, function()
    a:reset()
    error("changed my mind", 0)
  end))
  pager:close()
  pager = assert(mp.open(path))
  a = assert(M.open(pager, "scratch"))
  print("reopened:", a, a:read(greeting))
  print("reset:", a:reset(), a)
  print("old ref:", pcall(a.read, a, greeting))
  print("check:", a:check())
  pager:close()
  os.remove(path)
end

return M
