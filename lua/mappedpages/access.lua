--- mappedpages.access: how Lua modules read and change protected pages.
--
-- Every module that keeps state in the file (the catalog, the slab, your
-- own allocator) changes it only inside a transaction, the caller's open
-- one or one of its own, and reads it through views. This module is that
-- discipline as functions:
--
--     local access = require "mappedpages.access"
--     access.atomic(pager, fn, ...)   -- join the open transaction or make one
--     access.writer(pager, pid)       -- this transaction's writer of pid
--     access.view(pager, pid)         -- a read-only view of pid (cached)
--     access.txn_number(pager)        -- the number the open transaction commits as
--     access.cache(pager)             -- this transaction's writers, for hot paths
--     access.free_page(pager, pid)    -- free pid, forgetting its caches
--     access.stage(pager)             -- changes to several pages, all or none
--     access.txn_number(pager)        -- the open transaction's number
--     access.raise("mod:fn", level, fmt, ...)   -- a misuse error
--
-- Rollback coherence. Modules cache nothing the pager cannot restore: a
-- handle holds its pager, its name and its anchor pid, and reads every
-- other fact from the file at each call, so rollbacks and failed commits
-- need no hook, and two handles of one name see each other's changes at
-- once. The two caches kept here are tied to what the binding invalidates
-- by itself: a writer belongs to one transaction (keyed by
-- `pager:in_transaction()`, unique per transaction), and a view dies with
-- its page (`view:alive()`), so neither can show a rolled-back state.
--
-- Errors. Failures of the environment return `nil, msg, code`; misuse
-- raises, naming the function. An operation that can fail for the
-- environment allocates everything it needs first (pages, and the writers
-- of the pages it will change: a transaction's first writer of a page
-- copies it, which can fail with "no_space" or "full") and writes
-- afterwards, so a failure inside the caller's transaction leaves nothing
-- half done (a failed allocation changes nothing; a failed commit of a
-- private writer poisons the pager, whose transaction can then only roll
-- back).
-- @module mappedpages.access

local error, ipairs, pairs, pcall, select, setmetatable =
      error, ipairs, pairs, pcall, select, setmetatable
local format = string.format

local M = {}

--- Raise a misuse error naming the function: `fname` like "slab:alloc".
-- `level` counts from the caller of raise (default 1: whoever called the
-- function that calls raise, i.e. the user's code for a public method).
function M.raise(fname, level, fmt, ...)
  error(fname .. ": " .. format(fmt, ...), (level or 1) + 2)
end
local raise = M.raise

-- Per-pager facts and caches, weak so a pager can be collected.
local readonly_of = setmetatable({}, {__mode = "k"})
local writers_of = setmetatable({}, {__mode = "k"})   -- pager -> {seq=, [pid]=w}
local views_of = setmetatable({}, {__mode = "k"})     -- pager -> {[pid]=view} (weak)

--- Is the pager read-only? (Cached: it never changes for a pager.)
function M.readonly(pager)
  local ro = readonly_of[pager]
  if ro == nil then
    ro = pager:info().readonly
    readonly_of[pager] = ro
  end
  return ro
end

--- Raise unless the pager is writable.
function M.check_writable(pager, fname)
  if M.readonly(pager) then raise(fname, 2, "pager is read-only") end
end

--- Finish a transaction begun by `atomic`: commit after results, roll back
-- after `nil, msg, code` (returned as is) or an error (raised again).
local function finish(tx, ok, ...)
  if not ok then
    if tx:active() then tx:rollback() end
    error((...), 0)
  end
  if (...) == nil and select("#", ...) > 1 then
    if tx:active() then tx:rollback() end
    return ...
  end
  local done, msg, code = tx:commit()
  if not done then return nil, msg, code end
  return ...
end

--- Run `fn(...)` inside a transaction: the pager's open one, or a new one
-- committed when fn returns (one barrier). When fn returns `nil, msg,
-- code` or raises, a transaction of our own is rolled back; inside the
-- caller's transaction fn must then have changed nothing (see above).
-- @return fn's results, or `nil, msg, code` (also from a failed commit)
function M.atomic(pager, fn, ...)
  if pager:in_transaction() then return fn(...) end
  local tx, msg, code = pager:begin()
  if not tx then return nil, msg, code end
  return finish(tx, pcall(fn, ...))
end

--- The open transaction's cache: a table whose `[pid]` is the writer
-- `writer` made of pid in this transaction (nil if none), so a hot path
-- can look a writer up without a call. Read it, never store into it; a
-- writer found there is alive unless someone ended it (`writer` checks
-- that, a hot path may know nobody can). Hot paths that have
-- `pager:in_transaction()` at hand pass it as `seq` here and to `writer`
-- and `txn_number` (one C call less); it must be the current value.
function M.cache(pager, seq)
  seq = seq or pager:in_transaction()
  local cache = writers_of[pager]
  if cache == nil or cache.seq ~= seq then
    cache = {seq = seq}
    writers_of[pager] = cache
  end
  return cache
end

--- The open transaction's writer of protected page pid (one per page and
-- transaction, reused; made again if someone ended it with
-- `writer:commit()`, `discard()` or `<close>`). Call inside `atomic` only.
-- The first writer of a page in a transaction copies the page (the
-- copy-on-write step), so this is where a write can fail for the
-- environment (`"no_space"`, `"full"`): get every writer an operation
-- needs before its first write, and a failure leaves nothing half done.
-- `seq` as for `cache`.
-- @return a Writer, or `nil, msg, code`
function M.writer(pager, pid, seq)
  local cache = M.cache(pager, seq)
  local w = cache[pid]
  if w == nil or not w:alive() then
    local msg, code
    w, msg, code = pager:write_protected(pid)
    if not w then return nil, msg, code end
    cache[pid] = w
  end
  return w
end

--- The number the open transaction commits as (the last durable
-- transaction's id + 1): a stamp that orders transactions across reopens,
-- e.g. to keep a ref freed in transaction N from being handed out again
-- before N + 1. Call inside `atomic` only. (Read once per transaction and
-- kept in its cache; `seq` as for `cache`.)
function M.txn_number(pager, seq)
  local cache = M.cache(pager, seq)
  local n = cache.number
  if n == nil then
    n = pager:info().txn + 1
    cache.number = n
  end
  return n
end

--- A read-only view of protected page pid: its committed content, or the
-- open transaction's. Cached while the view is alive. Raises (from
-- `pager:protected`) when pid is not allocated.
function M.view(pager, pid)
  local cache = views_of[pager]
  if cache == nil then
    cache = setmetatable({}, {__mode = "v"})
    views_of[pager] = cache
  end
  local v = cache[pid]
  if v == nil or not v:alive() then
    v = pager:protected(pid)
    cache[pid] = v
  end
  return v
end

--- Staged changes to protected pages, for an operation that changes
-- fields on several pages (a free list whose links live in other pages,
-- counters in the anchor): every write is staged first, then `apply`
-- gets the writer of every page it touches before writing any, so a
-- failure to get one ("no_space", "full") leaves every page as it was.
--
--     local st = access.stage(pager)             -- inside atomic
--     st:set(pid, 16, "<i8", st:get(pid, 16, "<i8") + 1)
--     st:add(anchor, 8, "<I4", -1)               -- the same, shorter
--     local ws, msg, code = st:apply()           -- ws[pid]: its writer
--
-- `get` sees staged values. A field is one offset read and written with
-- one format (`string.pack` formats); fields must not overlap. `forget`
-- drops a page's staged fields (a page about to be freed).
local Stage = {}
Stage.__index = Stage

function M.stage(pager)
  return setmetatable({pager = pager, vals = {}, order = {}}, Stage)
end

function Stage:get(pid, off, fmt)
  local page = self.vals[pid]
  local e = page and page[off]
  if e then return e[2] end
  return (M.view(self.pager, pid):unpack(off, fmt))
end

function Stage:set(pid, off, fmt, value)
  local page = self.vals[pid]
  if not page then
    page = {}
    self.vals[pid] = page
    self.order[#self.order + 1] = pid
  end
  page[off] = {fmt, value}
end

function Stage:add(pid, off, fmt, delta)
  self:set(pid, off, fmt, self:get(pid, off, fmt) + delta)
end

function Stage:forget(pid) self.vals[pid] = nil end

--- Get every writer, then write every staged field.
-- @return a table pid -> writer of each page written, or `nil, msg, code`
-- with nothing written
function Stage:apply()
  local ws = {}
  for _, pid in ipairs(self.order) do
    if self.vals[pid] and not ws[pid] then
      local w, msg, code = M.writer(self.pager, pid)
      if not w then return nil, msg, code end
      ws[pid] = w
    end
  end
  for pid, w in pairs(ws) do
    for off, e in pairs(self.vals[pid]) do w:pack(off, e[1], e[2]) end
  end
  return ws
end

--- Free protected page pid and forget what is cached of it.
function M.free_page(pager, pid)
  local cache = writers_of[pager]
  if cache then cache[pid] = nil end
  local views = views_of[pager]
  if views then views[pid] = nil end
  return pager:free_protected(pid)
end

return M
