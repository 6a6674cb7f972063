--- mappedpages.inspect: what a file holds, for the `mappedpages` command
-- and for anyone who wants the same from Lua.
--
--     local inspect = require "mappedpages.inspect"
--     local pager = assert(mp.open(path, {readonly = true}))
--     local summary = inspect.summary(pager)   -- counts, txn, root, objects
--     local ok, problems = inspect.check(pager)   -- true | false, {msg, ...}
--     print(inspect.hexdump(pager:page(8):read()))
--
-- Named objects are found through the catalog (when the file's root holds
-- one). Each is opened with the module of its kind when the kind is known
-- (`inspect.modules`: kind -> module name), so summary() gives its stats()
-- and check() runs its check(); an object of an unknown kind (your own
-- allocator's, say) is still listed with its kind and anchor page.
-- Nothing here writes: open the pager read-only.
-- @module mappedpages.inspect

local mp = require "mappedpages"

local ipairs, pcall, require, tostring, type = ipairs, pcall, require, tostring, type
local format, concat = string.format, table.concat
local min = math.min

local M = {}

--- Kinds this library knows, and the module that opens each.
M.modules = {
  slab = "mappedpages.slab",
  records = "mappedpages.records",
}

-- The catalog's magic in the root's high 32 bits (see docs/FORMAT.md).
local CATALOG_TAG = 0x4D504341

--- The file's catalog, or nil and why there is none ("empty": a root of
-- 0; anything else: the root holds something else).
local function catalog_of(pager)
  local root = pager:root()
  if root == 0 then return nil, "empty" end
  if root >> 32 ~= CATALOG_TAG then
    return nil, format("the root (0x%016x) is not a catalog's: this file's objects are its own", root)
  end
  local cat, msg = mp.catalog.open(pager)
  if not cat then return nil, msg end
  return cat
end

--- The named objects: a list of {name =, kind =, pid =, handle = (when
-- the kind is known and it opens), error = (why it did not open)}.
function M.objects(pager)
  local cat, why = catalog_of(pager)
  if not cat then return {}, why end
  local list = {}
  for name, kind, pid in cat:entries() do
    local o = {name = name, kind = kind, pid = pid}
    local modname = M.modules[kind]
    if modname then
      local ok, mod = pcall(require, modname)
      if ok then
        local h, msg = mod.open(pager, name)
        if h then o.handle = h else o.error = msg end
      else
        o.error = tostring(mod)
      end
    end
    list[#list + 1] = o
  end
  return list, nil, cat
end

--- A summary of the file: its info() table plus `objects` (as objects()
-- gives them, with `stats` for each that opened) and `catalog` (nil, or
-- why there is none).
function M.summary(pager)
  local s = pager:info()
  local objects, why = M.objects(pager)
  for _, o in ipairs(objects) do
    if o.handle and o.handle.stats then
      local ok, st = pcall(o.handle.stats, o.handle)
      if ok then o.stats = st else o.error = tostring(st) end
    end
  end
  s.objects, s.catalog = objects, why
  return s
end

--- Check everything: the core's audit (checksums, every page accounted
-- for), the catalog and each known object's own check().
-- @return true, or false and a list of problems (strings)
function M.check(pager)
  local problems = {}
  local ok, msg = pager:check()
  if not ok then problems[#problems + 1] = "file: " .. tostring(msg) end
  local objects, why, cat = M.objects(pager)
  if cat then
    local cok, list = cat:check()
    if not cok then
      for _, p in ipairs(list) do problems[#problems + 1] = "catalog: " .. p end
    end
  elseif why ~= "empty" and not why:find("its own", 1, true) then
    problems[#problems + 1] = "catalog: " .. why
  end
  for _, o in ipairs(objects) do
    if o.error then
      problems[#problems + 1] = format("%s %q: does not open: %s", o.kind, o.name, o.error)
    elseif o.handle and o.handle.check then
      local done, res, list = pcall(o.handle.check, o.handle)
      if not done then
        problems[#problems + 1] = format("%s %q: check failed: %s", o.kind, o.name, tostring(res))
      elseif not res then
        for _, p in ipairs(type(list) == "table" and list or {tostring(list)}) do
          problems[#problems + 1] = format("%s %q: %s", o.kind, o.name, p)
        end
      end
    end
  end
  if #problems > 0 then return false, problems end
  return true
end

--- Bytes as lines of 16: offset, the bytes in hex separated by spaces,
-- then the printable ones (dots for the rest). `base` is the offset the
-- first byte has (0 by default).
function M.hexdump(s, base)
  base = base or 0
  local lines = {}
  for i = 1, #s, 16 do
    local chunk = s:sub(i, min(i + 15, #s))
    local hex = chunk:gsub(".", function(c) return format("%02x ", c:byte()) end)
    hex = hex:sub(1, -2)
    local text = chunk:gsub("[^\32-\126]", ".")
    lines[#lines + 1] = format("%08x  %-47s  |%s|", base + i - 1, hex, text)
  end
  return concat(lines, "\n")
end

return M
