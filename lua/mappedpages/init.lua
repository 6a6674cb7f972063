--- mappedpages: a crash-consistent, memory-mapped, single-file page store.
--
-- This module is the public face of the C module `mappedpages.core`: it
-- re-exports its functions and constants and adds the methods that are
-- easier written in Lua (`pager:transaction`).
--
--     local mp = require "mappedpages"
--     local pager = assert(mp.create("/tmp/demo.mp", {page_size = 4096}))
--     local id = pager:alloc()
--     pager:page(id):pack(0, "<i8", 42)
--     pager:close()
--
-- Errors: failures of the environment (missing or bad file, lock held, I/O,
-- disk full) return `nil, message, code` like `io.open`; misuse raises.
-- @module mappedpages

local core = require "mappedpages.core"

local error, getmetatable, pcall, type = error, getmetatable, pcall, type

local M = {}

--- Create a new file and open it for writing.
-- Fails (`nil, msg, "exists"`) if the file exists.
-- @function create
-- @tparam string path
-- @tparam[opt] table opts `page_size` (a power of two from 1024 to 65536,
-- default 4096), `max_bytes` (address space reserved for growth)
-- @return a Pager, or `nil, message, code`
M.create = core.create

--- Open an existing file.
-- @function open
-- @tparam string path
-- @tparam[opt] table opts `readonly` (boolean), `max_bytes`
-- @return a Pager, or `nil, message, code`
M.open = core.open

--- CRC32C (Castagnoli) of a string, continuing from `crc` (default 0).
-- @function crc32c
-- @tparam string s
-- @tparam[opt] integer crc
-- @treturn integer
M.crc32c = core.crc32c

--- Version of the library (a string like "0.1.0").
M.VERSION = core.VERSION
--- Version of the on-disk format this library reads and writes.
M.FORMAT_VERSION = core.FORMAT_VERSION
--- Smallest page size (1024).
M.MIN_PAGE_SIZE = core.MIN_PAGE_SIZE
--- Largest page size (65536).
M.MAX_PAGE_SIZE = core.MAX_PAGE_SIZE
--- Page size of `create` without a `page_size` option (4096).
M.DEFAULT_PAGE_SIZE = core.DEFAULT_PAGE_SIZE
--- Most pages a file can hold (2^32).
M.MAX_PAGES = core.MAX_PAGES

local Pager = core._Pager_methods

--- Is `fn` something `pcall` can call?
local function callable(fn)
  if type(fn) == "function" then return true end
  local mt = getmetatable(fn)
  return type(mt) == "table" and mt.__call ~= nil
end

--- Finish `pager:transaction`: commit after success, roll back and rethrow
-- after an error.
local function finish(tx, ok, ...)
  if ok then
    local done, msg, code = tx:commit()
    if not done then return nil, msg, code end
    return ...
  end
  if tx:active() then tx:rollback() end
  error((...), 0)   -- level 0: the original message, unchanged
end

--- Run `fn(...)` in a transaction.
-- Commits and returns fn's results when fn returns; rolls back and
-- rethrows fn's error when it raises. When the commit itself fails (I/O,
-- disk full) returns `nil, message, code`, and the pager refuses later
-- commits. Raises like `begin` if a transaction is already open.
-- @param fn the function to call
-- @param ... its arguments
-- @return fn's results, or `nil, message, code`
function Pager:transaction(fn, ...)
  if not callable(fn) then
    error("bad argument #1 to 'transaction' (function expected, got "
          .. type(fn) .. ")", 2)
  end
  local tx, msg, code = self:begin()
  if not tx then return nil, msg, code end
  return finish(tx, pcall(fn, ...))
end

--- Method tables of the C types, for modules that add methods.
M._Pager_methods = Pager
M._View_methods = core._View_methods
M._Transaction_methods = core._Transaction_methods

return M
