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
--     local len = object.check_span("mod:read", size, off, len)
--     object.drop(pager, name, "mykind", "mod.drop", free_all)
--
-- How objects read and change their pages is mappedpages.access.
-- @module mappedpages.object

local access = require "mappedpages.access"
local catalog = require "mappedpages.catalog"

local pcall, setmetatable, tostring, type = pcall, setmetatable, tostring, type
local format = string.format

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

--- Open the object `name` of `kind`, creating it when the name is free:
-- `init(pid)` then initializes its anchor page (a zeroed protected page)
-- in the same transaction and returns true or `nil, msg, code`; after a
-- failure it must have changed nothing (get the writers it needs before
-- writing), and the name is taken out again, even inside the caller's
-- transaction.
-- @return anchor pid and whether it was created, or `nil, msg, code`:
-- "kind" (the name holds another kind), "not_found" (a read-only pager
-- and no such name), "not_catalog", or the environment's codes
function M.open(pager, name, kind, fname, init)
  M.check_name(fname, name, 2)
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
    local ok, m2, c2 = init(pid)
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
-- {pager =, object_name =, pid =, anchor = a view of the anchor page} with
-- metatable `mt`. (The name is `object_name`, not `name`, so that a field
-- does not hide a `name()` method of mt.) The anchor view dies when the
-- object is dropped or its creation is rolled back, which `check_handle`
-- reports.
function M.handle(mt, pager, name, pid)
  return setmetatable({pager = pager, object_name = name, pid = pid,
                       anchor = pager:protected(pid)}, mt)
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

--- Drop the object `name` of `kind`: `free_all(pid)` frees every page it
-- owns but its anchor, then the catalog frees the anchor and the name.
-- All in one transaction.
-- @return true, or `nil, msg, code` ("not_found", "kind", environment)
function M.drop(pager, name, kind, fname, free_all)
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
    local ok, m, c = free_all(entry.pid)
    if not ok then return nil, m, c end
    cat:remove(name)
    return true
  end)
end

return M
