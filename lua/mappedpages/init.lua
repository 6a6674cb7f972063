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

local error, getmetatable, pcall, require, setmetatable, type =
      error, getmetatable, pcall, require, setmetatable, type

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
-- disk full) returns `nil, message, code`, with the transaction rolled
-- back; after a failed write or barrier the pager also refuses later
-- commits ("poisoned": reopen), after a failed growth it does not.
-- Raises like `begin` if a transaction is already open.
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

--- `pager:map([opts]) -> string`: a picture of the file, a cell per page
-- (or per run of pages) showing what each is and which named object owns
-- it, with a legend; `opts` as mappedpages.inspect.map's (width, colour,
-- svg). In the REPL: `print(pager:map())`.
function Pager:map(opts)
  local mt = getmetatable(self)
  if type(self) ~= "userdata" or type(mt) ~= "table" or mt.__name ~= "mappedpages.Pager" then
    error("bad argument #1 to 'map' (mappedpages.Pager expected, got " .. type(self) .. ")", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'map' (table expected, got " .. type(opts) .. ")", 2)
  end
  if not pcall(self.page_size, self) then
    error("bad argument #1 to 'map' (attempt to use a closed pager)", 2)
  end
  -- loaded on first use: inspect needs this module loaded first
  return require("mappedpages.inspect").map(self, opts)
end

--- Protected pages (methods of the C types, documented here).
--
-- Protected pages have their own ids ("pids": 0, 1, 2, ..., stable across
-- reopen; a freed pid is reused from the next transaction on). Their
-- content changes only atomically: a durable commit or nothing.
--
--     local pid = pager:alloc_protected()   -- reads as zeros
--     local w = pager:write_protected(pid)  -- a private copy
--     w:pack(0, "<i8 i8", 1, 2)
--     assert(w:commit())                    -- one durable transaction
--     print(pager:protected(pid):unpack(0, "<i8"))  --> 1  8
--
-- `pager:alloc_protected() -> pid | nil, msg, code`. Auto-commits outside
-- a transaction.
--
-- `pager:free_protected(pid) -> true | nil, msg, code`. Raises for a pid
-- out of range or not allocated (double free), and on a read-only pager.
-- Views of pid die, even if pid is allocated again later. (Inside a
-- transaction they raise from the free on, and work again if the
-- transaction rolls back; the same holds for `free` and regular views.)
--
-- `pager:protected_pages()` iterates over the allocated pids, ascending;
-- freeing pids while iterating is allowed.
--
-- `pager:protected(pid) -> view`: a read-only View (`read`, `unpack`,
-- `sub`, `alive`, `id`, `#`; `write`, `fill` and `pack` raise "protected
-- view is read-only: use pager:write_protected"). Every access shows the content as it is
-- then: the committed content, or inside a transaction the transaction's
-- own. The view dies when pid is freed (or its allocation rolled back).
--
-- `pager:write_protected(pid) -> writer | nil, msg, code`: a
-- `mappedpages.Writer`, with every View method (they all work) plus
-- `commit` and `discard`. It starts as a copy of the current content.
--
-- * Made outside a transaction, the writer is private: nothing else sees
--   its bytes until `writer:commit()`, which commits the bytes the writer
--   changed over the page's content as it is at the commit, in one durable
--   transaction, and returns `true` (or `nil, msg, code` on an I/O failure
--   or a full disk; the writer then stays alive and unchanged: commit
--   again or discard). "Changed" is one span, from the lowest to the
--   highest byte written through the writer or its windows (`write`,
--   `fill`, `pack`); the rest of the page is taken as it is then, so two
--   private writers of different byte ranges of one page (two objects
--   sharing a page) both keep their changes, in either order; bytes both
--   wrote are the last commit's. A writer that wrote nothing commits the
--   current content. If a transaction was begun after the writer was
--   made, `commit` joins it instead (over the transaction's content): the
--   transaction's commit makes it durable and its rollback drops it (if
--   writing its bytes fails there, the transaction's copy is unknown: the
--   pager is poisoned, the transaction can only roll back). `commit`
--   raises if pid was freed since the writer was made. `writer:discard()`,
--   `<close>` and garbage collection without a commit drop the changes.
-- * Made inside a transaction, the writer writes the transaction's own copy
--   of the page: `pager:protected(pid)` and every other writer of pid in
--   the transaction see its bytes at once, `tx:commit()` keeps them and
--   `tx:rollback()` drops them. `writer:commit()` and `writer:discard()`
--   only end the writer (they return `true`, and undo nothing): the
--   transaction decides.
-- * After its commit, its discard, `<close>` or the end of its transaction
--   a writer is dead: any use raises ("attempt to use a dead writer
--   (committed)"). Closing the pager kills every view and writer.
--
-- `pager:info()` counts them: `protected_count` (allocated pids),
-- `protected_pages` (physical pages holding protected contents) and
-- `pid_limit` (every pid is below it).
-- @section protected

--- Windows, liveness and the open transaction (methods of the C types,
-- documented here; the reference is docs/API.md, "Views and windows").
--
--     local w = pager:write_protected(pid):sub(64, 64)  -- an object's 64 bytes
--     w:pack(0, "<i8", 7)                               -- at byte 64 of the page
--     assert(w:commit())                                -- commits the writer
--
-- `view:sub(off [, len]) -> window`: on a View, a Writer or a window, an
-- object of the same type showing bytes [off, off + len) of it (len
-- defaults to the rest). Every method works with offsets relative to the
-- window and raises outside it ("offset 41 is out of range (window of 40
-- bytes)"); `#w` is len, `w:id()` the page's id, alignment in `pack` and
-- `unpack` counts from the window's first byte. A window of a protected
-- view is read-only, one of a read-only pager's page refuses writes. A
-- writer's window has `commit` and `discard`, which commit or discard the
-- writer (it and all its windows die). A window dies with what it was made
-- from (page freed, pager closed, writer ended); its own `<close>` and
-- collection end only the window, and it keeps its view alive.
--
-- `view:alive() -> boolean`: true while a view, writer or window can be
-- used, false once it is dead; never raises.
--
-- `pager:in_transaction() -> false | integer`: false when no transaction
-- (`begin`, `transaction`) is open, else a number of that transaction,
-- unique for this Pager object: join it or make your own, cache per
-- transaction. Raises on a closed pager.
-- @section windows

--- Method tables of the C types, for modules that add methods.
M._Pager_methods = Pager
M._View_methods = core._View_methods
M._Writer_methods = core._Writer_methods
M._Transaction_methods = core._Transaction_methods

--- The Lua modules, loaded on first use: `mp.catalog` is
-- `require "mappedpages.catalog"`, and so on, so the REPL needs one
-- require. (Each is also a module of its own.)
local lazy = {catalog = true, slab = true, schema = true, records = true,
              heap = true, btree = true, object = true, access = true}
setmetatable(M, {__index = function(t, name)
  if lazy[name] then
    local mod = require("mappedpages." .. name)
    t[name] = mod
    return mod
  end
end})

return M
