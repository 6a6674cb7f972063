--- mappedpages.object: the rules every named object follows, in one place.
--
-- A named object (a slab, a record table, your own allocator) is found
-- through the file's catalog, keeps its state in protected pages, and is
-- changed only inside a transaction: the caller's open transaction, or one
-- of its own. This module gives the modules built on the pager those rules
-- as functions, so each of them states them once:
--
--     local object = require "mappedpages.object"
--     local pid, created = object.open(pager, name, "mykind", "mod.open", init)
--     local self = object.handle(MyKind, pager, name, pid)
--     object.check_handle(self, "mod:alloc", true)   -- first in every method
--     object.check_integer("mod:alloc", "size", size, 1, max)
--     local len = object.check_span("mod:read", size, off, len)
--     object.contents(MyKind, "mod", locate)   -- read, write, size by ref
--     object.chain(pager, pid, off)              -- the pids of a chain of pages
--     object.pages(pager, pid, magic)            -- an object's pages (see below)
--     object.own_page(self, pid, magic, fname, ref)   -- for a ref's lookup
--     object.add_page(stage, pid, magic)         -- stage a new page, first
--     object.remove_page(stage, pid, page)       -- stage a page's removal
--     return object.stats(objects, bytes, pages, page_size, extra)   -- stats()
--     MyKind.__tostring = object.describe("mod", "objects")
--     local bad, verdict = object.problems()     -- check(): bad(fmt, ...), verdict()
--     local raise, check, level = object.misuse(debug.getinfo(1, "S").source)
--     object.drop(pager, name, "mykind", "mod.drop" [, owned])
--
-- How objects read and change their pages is mappedpages.access.
-- @module mappedpages.object

local access = require "mappedpages.access"
local catalog = require "mappedpages.catalog"

local error, pcall, select, setmetatable, tostring, type =
      error, pcall, select, setmetatable, tostring, type
local format = string.format
local getinfo = debug.getinfo

local raise, atomic, readonly = access.raise, access.atomic, access.readonly

local M = {}

--- Check an object name: a string of 1 to 255 bytes.
function M.check_name(fname, name, level)
  if type(name) ~= "string" then
    raise(fname, (level or 1) + 1, "name must be a string (got %s)", type(name))
  end
  if #name < 1 or #name > 255 then
    raise(fname, (level or 1) + 1, "name must be 1 to 255 bytes (got %d)", #name)
  end
end

--- Raise (naming `fname`) unless `pager` is an open pager.
function M.check_pager(fname, pager, level)
  local ok = type(pager) == "userdata" and pcall(function() return pager.in_transaction end)
  if not ok or type(pager.in_transaction) ~= "function" then
    raise(fname, (level or 1) + 1, "pager expected (got %s)", type(pager))
  end
  if not pcall(pager.in_transaction, pager) then
    raise(fname, (level or 1) + 1, "the pager is closed")
  end
end

--- Open the object `name` of `kind`, creating it when the name is free:
-- `init(pid)` then initializes its anchor page (a zeroed protected page)
-- in the same transaction and returns true or `nil, msg, code`; after a
-- failure it must have changed nothing (get the writers it needs before
-- writing), and the name is taken out again, even inside the caller's
-- transaction. `init` may also be a string: the anchor's first bytes
-- (a magic, say), written for you.
-- @return anchor pid and whether it was created, or `nil, msg, code`:
-- "kind" (the name holds another kind), "not_found" (a read-only pager
-- and no such name), "not_catalog", or the environment's codes
function M.open(pager, name, kind, fname, init)
  M.check_pager(fname, pager, 2)
  M.check_name(fname, name, 2)
  if pager:root() == 0 and not readonly(pager) and not pager:in_transaction() then
    -- The file's first object: the catalog and the object are made in one
    -- transaction, so a crash or a failed init leaves neither.
    return atomic(pager, M.open, pager, name, kind, fname, init)
  end
  local cat, msg, code = catalog.open(pager)
  if not cat then return nil, msg, code end
  local entry = cat:get(name)
  if entry then
    if entry.kind ~= kind then
      return nil, format("%s: %q is a %s, not a %s", fname, name, entry.kind, kind), "kind"
    end
    return entry.pid, false
  end
  if readonly(pager) then
    return nil, format("%s: no object named %q (read-only pager)", fname, name), "not_found"
  end
  return atomic(pager, function()
    local pid, m, c = cat:create(name, kind)
    if not pid then return nil, m, c end
    local ok, m2, c2
    if type(init) == "string" then
      local w
      w, m2, c2 = access.writer(pager, pid)
      ok = w and w:write(0, init) and true
    else
      ok, m2, c2 = init(pid)
    end
    if not ok then
      -- Inside the caller's transaction nothing rolls the name back for
      -- us: take it out again (its pages' writers exist already, so this
      -- cannot fail for want of room).
      cat:remove(name)
      return nil, m2, c2
    end
    return pid, true
  end)
end

--- Make a handle of the object `name` anchored at `pid`: a table
-- {pager =, name =, object_name =, pid =, anchor = a view of the anchor
-- page} with metatable `mt`. `object_name` is the name, always; `name` is
-- too, unless mt's methods (mt.__index) have a `name` (a field would hide
-- a `name()` method: slab:name()). The anchor view dies when the object is
-- dropped or its creation is rolled back, which `check_handle` reports.
function M.handle(mt, pager, name, pid)
  local h = {pager = pager, object_name = name, pid = pid, anchor = pager:protected(pid)}
  local methods = type(mt) == "table" and mt.__index
  if not (type(methods) == "table" and methods.name ~= nil) then h.name = name end
  return setmetatable(h, mt)
end

--- Raise (naming `fname`) unless `self` is a handle (a method called
-- with `.` instead of `:` gets something else), its object still exists
-- and its pager is open, and, when `mutating` is true, the pager is
-- writable.
function M.check_handle(self, fname, mutating)
  if type(self) ~= "table" or type(self.anchor) ~= "userdata" then
    raise(fname, 2, "expected a handle as self (got %s): call it as obj:method(...)", type(self))
  end
  if self.anchor:alive() then
    if mutating and readonly(self.pager) then raise(fname, 2, "pager is read-only") end
    return
  end
  local pager = self.pager
  if not pcall(pager.page_size, pager) then
    raise(fname, 2, "attempt to use %q after its pager was closed", self.object_name)
  end
  raise(fname, 2, "%q no longer exists (it was dropped, or its creation was rolled back)",
        self.object_name)
end

-- This file's source, which misuse() skips like the module's own.
local OBJECT = getinfo(1, "S").source

--- Misuse errors for a module whose public methods reach their checks
-- through tail calls and helpers, where no fixed error level would point
-- at the user's line. `source` is the module file's own
-- (`debug.getinfo(1, "S").source` there). Returns
-- `raise(fname, fmt, ...)` (raises "fname: message"), `check(self, fname
-- [, mutating])` (check_handle) and `level()` (the level to pass to
-- `error` from a function of the module), all reporting at the first frame
-- outside the module and this file. More sources after the first (a
-- module split over files) are skipped too.
function M.misuse(source, ...)
  local skip = {[source] = true, [OBJECT] = true}
  for i = 1, select("#", ...) do skip[(select(i, ...))] = true end
  local function level()
    local k = 3              -- 1: this function, 2: its caller (raises)
    while true do
      local info = getinfo(k, "S")
      if not info then return 0 end
      if not skip[info.source] then return k - 1 end
      k = k + 1
    end
  end
  local function raise_at(fname, fmt, ...)
    error(fname .. ": " .. format(fmt, ...), level())
  end
  local function check(self, fname, mutating)
    local ok, err = pcall(M.check_handle, self, fname, mutating)
    if not ok then
      if type(err) == "string" then err = err:gsub("^[^\n]-:%d+: ", "") end
      error(err, level())
    end
  end
  return raise_at, check, level
end

--- Raise (naming `fname`) unless `v` is an integer from `min` to `max`
-- (no upper bound when max is nil); `what` names it in the message.
-- `level` as in check_name (1, the default: blame the caller's caller).
function M.check_integer(fname, what, v, min, max, level)
  if math.type(v) ~= "integer" or v < min or (max and v > max) then
    level = (level or 1) + 1
    if max then
      raise(fname, level, "%s must be an integer from %d to %d (got %s)", what, min, max, tostring(v))
    end
    raise(fname, level, "%s must be an integer >= %d (got %s)", what, min, tostring(v))
  end
end

--- Check a byte range of an object of `size` bytes: `off` an integer
-- from 0 to size, `len` (default: the rest) an integer with off + len <=
-- size. Raises naming `fname` otherwise.
-- @return len
function M.check_span(fname, size, off, len)
  if math.type(off) ~= "integer" or off < 0 or off > size then
    raise(fname, 2, "offset must be an integer from 0 to %d (got %s)", size, tostring(off))
  end
  if len == nil then len = size - off end
  if math.type(len) ~= "integer" or len < 0 or len > size - off then
    raise(fname, 2, "length must be an integer from 0 to %d at offset %d (got %s)",
          size - off, off, tostring(len))
  end
  return len
end

--- Give `class` (a handle metatable's method table) the methods of an
-- object that holds byte strings by ref, named `prefix:read`,
-- `prefix:write` and `prefix:size`:
--
--     obj:read(ref [, off [, len]]) -> string    (default: to the end)
--     obj:write(ref, off, s) -> true | nil, msg, code
--     obj:size(ref) -> bytes
--
-- from one function: `locate(self, ref, fname)` returns the view of the
-- protected page holding ref's bytes, their offset in it and their
-- number, or raises naming `fname` (at level 2: it is called by these
-- methods) for a ref that is not a live object of `self`. A write joins
-- the open transaction or is one of its own.
function M.contents(class, prefix, locate)
  local rname, wname, sname = prefix .. ":read", prefix .. ":write", prefix .. ":size"
  function class:read(ref, off, len)
    M.check_handle(self, rname)
    local v, base, size = locate(self, ref, rname)
    off = off or 0
    return v:read(base + off, M.check_span(rname, size, off, len))
  end
  function class:write(ref, off, s)
    M.check_handle(self, wname, true)
    local v, base, size = locate(self, ref, wname)
    if type(s) ~= "string" then raise(wname, 1, "data must be a string (got %s)", type(s)) end
    M.check_span(wname, size, off, #s)
    return atomic(self.pager, function()
      local w, msg, code = access.writer(self.pager, v:id())
      if not w then return nil, msg, code end
      w:write(base + off, s)
      return true
    end)
  end
  function class:size(ref)
    M.check_handle(self, sname)
    return (select(3, locate(self, ref, sname)))
  end
end

--- The pids of a chain of protected pages, each naming the next as its
-- pid + 1 (0: none) in a u32 at offset `off`; page `pid` (an anchor,
-- say) names the first at the same offset. Never raises for damage: a
-- link to a page that is not allocated, or to one already seen, ends the
-- walk and is reported.
-- @return a table of pids, and nil or a problem (a string)
function M.chain(pager, pid, off)
  local pids, seen = {}, {[pid] = true}
  local nxt = access.view(pager, pid):unpack(off, "<I4") - 1
  while nxt >= 0 do
    local ok, v = pcall(access.view, pager, nxt)
    if not ok or seen[nxt] then
      return pids, format("page %d is not an allocated protected page, or a second time", nxt)
    end
    seen[nxt] = true
    pids[#pids + 1] = nxt
    nxt = v:unpack(off, "<I4") - 1
  end
  return pids
end

--- An object's pages. The pages an object owns besides its anchor follow
-- one convention, so that drop, check and a ref's lookup can find them:
--
--     offset size  field
--          0    8  a magic of the object's choice
--          8    4  pid + 1 of the next of the object's pages (0: none); at
--                  the same offset the anchor names the first
--         12    4  owner: the anchor's pid
--
-- The rest of the page is the object's. Adding a page at the front changes
-- only the new page and the anchor; removing one walks the chain.
local NEXT, OWNER = 8, 12

--- The pids of the pages of the object anchored at `anchor`, first to
-- last. Never raises for damage: a broken chain ends the walk and is
-- reported, as is (when `magic` is given) a page with another magic or
-- owner, which is listed all the same.
-- @return a table of pids, and nil or a problem (a string)
function M.pages(pager, anchor, magic)
  local pids, problem = M.chain(pager, anchor, NEXT)
  if magic and not problem then
    for _, pid in ipairs(pids) do
      local v = access.view(pager, pid)
      if v:read(0, #magic) ~= magic or v:unpack(OWNER, "<I4") ~= anchor then
        return pids, format("page %d has a bad magic or owner", pid)
      end
    end
  end
  return pids, problem
end

--- The view of protected page `pid` when it is one of the object's pages
-- with `magic`. For a `locate` function (see contents): nil for a pid that
-- is not allocated or holds something else; raises naming `fname`,
-- blaming the caller of the method, for a page of another object of the
-- same kind ("ref R belongs to another object, not to "name"").
function M.own_page(self, pid, magic, fname, ref)
  local ok, v = pcall(access.view, self.pager, pid)
  if not ok or v:read(0, #magic) ~= magic then return nil end
  if v:unpack(OWNER, "<I4") ~= self.pid then
    raise(fname, 3, "ref %d belongs to another object, not to %q", ref, self.object_name)
  end
  return v
end

--- Stage a new page at the front of the object's pages, with `magic`.
-- @return its pid, or `nil, msg, code` (from `stage:new_page`)
function M.add_page(stage, anchor, magic)
  local pid, msg, code = stage:new_page()
  if not pid then return nil, msg, code end
  stage:set(pid, 0, "c" .. #magic, magic)
  stage:set(pid, NEXT, "<I4", stage:get(anchor, NEXT, "<I4"))
  stage:set(pid, OWNER, "<I4", anchor)
  stage:set(anchor, NEXT, "<I4", pid + 1)
  return pid
end

--- Stage the removal of page `pid` from the object's pages: the page
-- before it (or the anchor) names the one after it, and `stage:free`
-- frees it when applied. (It finds the page before in the chain as the
-- views show it, so stage no other change to the chain in the same stage.)
function M.remove_page(stage, anchor, pid)
  local before = anchor
  local pids = M.chain(stage.pager, anchor, NEXT)
  for i = 2, #pids do
    if pids[i] == pid then before = pids[i - 1] end
  end
  stage:set(before, NEXT, "<I4", stage:get(pid, NEXT, "<I4"))
  stage:free(pid)
end

--- The table every `stats()` returns: `objects`, `bytes` (the sum of the
-- live objects' sizes), `pages`, `page_bytes` (pages * page_size) and
-- `efficiency` (bytes / page_bytes), added to the table `extra` if given.
function M.stats(objects, bytes, pages, page_size, extra)
  local t = extra or {}
  t.objects, t.bytes, t.pages = objects, bytes, pages
  t.page_bytes = pages * page_size
  t.efficiency = bytes / t.page_bytes
  return t
end

--- For a `check()`: `bad(fmt, ...)` notes a problem, `verdict()` returns
-- true, or false and the problems noted (a list of strings).
function M.problems()
  local problems = {}
  local function bad(...) problems[#problems + 1] = format(...) end
  local function verdict()
    if #problems > 0 then return false, problems end
    return true
  end
  return bad, verdict
end

--- A `__tostring` for handles whose `stats()` gives objects, bytes, pages
-- and efficiency: `what "name": 2 <noun>, 105 bytes in 2 pages
-- (efficiency 0.013)`, or `what "name" (unusable: why)` when stats
-- raises (the pager was closed, the object dropped).
function M.describe(what, noun)
  return function(self)
    local ok, s = pcall(self.stats, self)
    local name = self.object_name
    if not ok then return format("%s %q (unusable: %s)", what, name, s) end
    return format("%s %q: %d %s, %d bytes in %d page%s (efficiency %.3f)", what, name,
                  s.objects, noun, s.bytes, s.pages, s.pages == 1 and "" or "s", s.efficiency)
  end
end

--- Drop the object `name` of `kind`, all in one transaction. `owned(pid)`
-- is called with the anchor's pid and returns the pids of every other
-- page the object owns, as a table (by default: its pages, see above):
-- the catalog frees the anchor and the name first, and the pages are
-- freed after, so that no state, even after a failure, names a freed page
-- (freeing fails only when memory runs out; see mappedpages.access).
-- `owned` may also free the pages itself and return true, or return
-- `nil, msg, code`.
-- @return true, or `nil, msg, code` ("not_found", "kind", environment)
function M.drop(pager, name, kind, fname, owned)
  M.check_pager(fname, pager, 2)
  M.check_name(fname, name, 2)
  access.check_writable(pager, fname)
  local cat, msg, code = catalog.open(pager)
  if not cat then return nil, msg, code end
  local entry = cat:get(name)
  if not entry then
    return nil, format("%s: no object named %q", fname, name), "not_found"
  end
  if entry.kind ~= kind then
    return nil, format("%s: %q is a %s, not a %s", fname, name, entry.kind, kind), "kind"
  end
  return atomic(pager, function()
    local pages, m, c
    if owned then pages, m, c = owned(entry.pid) else pages = M.pages(pager, entry.pid) end
    if not pages then return nil, m, c end
    local ok
    ok, m, c = cat:remove(name)
    if not ok then return nil, m, c end
    if type(pages) == "table" then return access.free_pages(pager, pages) end
    return true
  end)
end

return M
