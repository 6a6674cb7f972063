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
--     access.before_commit(pager, key, fn)   -- fn() inside this transaction's commit
--     access.after_commit(pager, key, fn)    -- fn() once that commit succeeded
--     access.new_page(pager)          -- a new protected page and its writer
--     access.free_page(pager, pid)    -- free pid, forgetting its caches
--     access.free_pages(pager, pids)  -- free each of a list of pids
--     access.stage(pager)             -- changes to several pages, all or none
--     access.list(pager, list)        -- the nodes of a list in the file
--     access.check_lists(pager, lists, expected, bad)   -- for a check()
--                                        (lists and free lists: see Stage)
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
local core = require "mappedpages.core"
local txn_id = core._txn_id

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

-- Add fn under key to the transaction cache's list `list` (made on first
-- use): once per key, in the order given.
local function add_hook(cache, list, key, fn)
  local hooks = cache[list]
  if hooks == nil then
    hooks = {}
    cache[list] = hooks
  end
  if hooks[key] == nil then
    hooks[key] = fn
    hooks[#hooks + 1] = fn
  end
end

--- Have `fn()` run when the open transaction commits, inside
-- `tx:commit()` (and so `pager:transaction` and `atomic`) before the
-- core commits: what fn writes through the transaction's writers is part
-- of the same atomic commit. For a hot path that keeps some of its writes
-- in the transaction's cache (as a mirror, see docs/ALLOCATORS.md) and
-- writes them to the file only at the end; the pages' writers should be
-- taken when the change is made, so that fn only writes and cannot fail.
-- fn returns true, or `nil, msg, code`: then (and when it raises) the
-- transaction is rolled back and the commit returns `nil, msg, code`
-- (raises again). One fn per `key` and transaction (a second call with
-- the key is ignored); they run in the order they were given. A rollback
-- or a failed commit runs none: the cache and its pending writes die with
-- the transaction. Inside fn, ending the transaction raises. `seq` as for
-- `cache`.
function M.before_commit(pager, key, fn, seq)
  local cache = M.cache(pager, seq)
  if cache.before_commit == nil then core._want_commit_hook(pager) end
  add_hook(cache, "before_commit", key, fn)
end

--- Have `fn()` run once the open transaction's commit has succeeded
-- (outside any transaction), e.g. to move what `before_commit` wrote into
-- a cache of committed state. The commit stands whatever fn does: its
-- results and errors are dropped, so it must not be able to fail. Only
-- for a transaction that also has a `before_commit` function (which is
-- what asks tx:commit() to call back); one fn per `key`, in order. A
-- rollback or failed commit runs none. `seq` as for `cache`.
function M.after_commit(pager, key, fn, seq)
  add_hook(M.cache(pager, seq), "after_commit", key, fn)
end

-- tx:commit() calls this when the transaction asked for it
-- (core._want_commit_hook): with before = true first, the functions given
-- to before_commit; with before = false after the commit succeeded (no
-- transaction open then: the cache is still the one that committed), those
-- given to after_commit.
core._commit_hook(function(pager, before)
  local cache = writers_of[pager]
  if cache == nil then return true end
  if not before then
    local hooks = cache.after_commit
    cache.after_commit, cache.before_commit = nil, nil
    for i = 1, hooks and #hooks or 0 do pcall(hooks[i]) end   -- each on its own: the commit stands
    return true
  end
  local hooks = cache.before_commit
  if hooks == nil or cache.seq ~= pager:in_transaction() then return true end
  local i = 1
  while hooks[i] do
    local ok, msg, code = hooks[i]()
    if not ok then return nil, msg, code end
    i = i + 1
  end
  return true
end)

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
    n = txn_id(pager) + 1
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
--     local new = st:new_page()                  -- allocated now (can fail)
--     st:free(old)                               -- freed by apply
--     local ws, msg, code = st:apply()           -- ws[pid]: its writer
--
-- `get` sees staged values. A field is one offset read and written with
-- one format (`string.pack` formats); fields must not overlap. `forget`
-- drops a page's staged fields. `new_page` allocates a page at once
-- (returning its pid, or `nil, msg, code`) and a failed `apply` frees it
-- again; `free(pid)` drops pid's staged fields and has `apply` free it
-- after getting every writer and before the first write, so a failure to
-- free it (only when memory runs out) also leaves every page as it was.
-- Stage nothing on a page once it is to be freed. (With several pages to
-- free, a failure can leave the first ones freed.)
local Stage = {}
Stage.__index = Stage

function M.stage(pager)
  return setmetatable({pager = pager, vals = {}, order = {}, new = {}, freed = {},
                       freeing = {}}, Stage)
end

function Stage:get(pid, off, fmt)
  local page = self.vals[pid]
  local e = page and page[off]
  if e then return e[2] end
  return (M.view(self.pager, pid):unpack(off, fmt))
end

function Stage:set(pid, off, fmt, value)
  if self.freeing[pid] then raise("stage:set", 1, "page %d is to be freed", pid) end
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

function Stage:new_page()
  local pid, msg, code = self.pager:alloc_protected()
  if not pid then return nil, msg, code end
  self.new[#self.new + 1] = pid
  return pid
end

function Stage:free(pid)
  self.vals[pid] = nil
  if not self.freeing[pid] then
    self.freeing[pid] = true
    self.freed[#self.freed + 1] = pid
  end
end

-- A failed operation gives back the pages it allocated, then returns its
-- failure; if a free fails too (memory ran out), that failure, the page
-- staying allocated until the rollback the error calls for.
local function give_back(pager, pids, msg, code)
  for _, pid in ipairs(pids) do
    local ok, m, c = M.free_page(pager, pid)
    if not ok then
      return nil, format("%s; freeing page %d failed too: %s", msg, pid, m), c
    end
  end
  return nil, msg, code
end

--- Get every writer, free the pages to free, then write every staged
-- field. On failure nothing is written, nothing freed (but see above)
-- and the pages of `new_page` are freed again.
-- @return a table pid -> writer of each page written, or `nil, msg, code`
function Stage:apply()
  local ws = {}
  for _, pid in ipairs(self.order) do
    if self.vals[pid] and not ws[pid] then
      local w, msg, code = M.writer(self.pager, pid)
      if not w then return give_back(self.pager, self.new, msg, code) end
      ws[pid] = w
    end
  end
  for _, pid in ipairs(self.freed) do
    local ok, msg, code = M.free_page(self.pager, pid)
    if not ok then return give_back(self.pager, self.new, msg, code) end
  end
  for pid, w in pairs(ws) do
    for off, e in pairs(self.vals[pid]) do w:pack(off, e[1], e[2]) end
  end
  return ws
end

--- Lists in the file, changed through a stage. A *node* is 16 bytes of a
-- protected page: i8 next and i8 prev, each the *address* of a node
-- (`pid << 16 | offset`: a page has at most 64 KiB), 0 for none. A *list*
-- is 16 bytes too, i8 first and i8 last (zeros: empty), kept by its owner
-- (in its anchor, say) and named by its address; a zeroed page holds
-- empty lists. A node is on one list at a time.
--
--     st:push_front(list, node)   st:push_back(list, node)
--     st:remove(list, node)       st:first(list) -> address or 0
--     access.list(pager, list) -> {address, ...}, problem   (read-only)
--
-- A list's first and last sit where a node has its next and prev, so the
-- list itself stands in for the missing neighbour at either end.
local NEXT, PREV = 0, 8

local function link(st, node, field)
  return st:get(node >> 16, (node & 0xFFFF) + field, "<i8")
end

local function set_link(st, node, field, value)
  st:set(node >> 16, (node & 0xFFFF) + field, "<i8", value)
end

function Stage:first(list) return link(self, list, NEXT) end

function Stage:push_front(list, node)
  local first = link(self, list, NEXT)
  set_link(self, node, NEXT, first)
  set_link(self, node, PREV, 0)
  set_link(self, first ~= 0 and first or list, PREV, node)
  set_link(self, list, NEXT, node)
end

function Stage:push_back(list, node)
  local last = link(self, list, PREV)
  set_link(self, node, PREV, last)
  set_link(self, node, NEXT, 0)
  set_link(self, last ~= 0 and last or list, NEXT, node)
  set_link(self, list, PREV, node)
end

function Stage:remove(list, node)
  local after, before = link(self, node, NEXT), link(self, node, PREV)
  set_link(self, before ~= 0 and before or list, NEXT, after)
  set_link(self, after ~= 0 and after or list, PREV, before)
end

--- Free lists: lists of free things (blocks, slots) whose nodes carry an
-- i8 `freed_in` after the node (bytes 16 to 23): the number of the
-- transaction that freed the thing, or 0. They keep the rule that a thing
-- freed in transaction N is handed out no earlier than N + 1, in O(1):
--
--     st:push_free(list, node, just_freed)   -- just_freed: by this transaction
--     st:first_usable(list) -> the first node, if it may be handed out now
--
-- A node the open transaction freed goes to the tail, stamped with its
-- number (txn_number); any other (usable at once: half of a split, new
-- space) goes to the head, stamped 0. Each list is thus oldest first, and
-- when its first node may not be handed out yet, no node of it may.
local FREED_IN = 16

function Stage:push_free(list, node, just_freed)
  if just_freed then
    set_link(self, node, FREED_IN, M.txn_number(self.pager))
    self:push_back(list, node)
  else
    set_link(self, node, FREED_IN, 0)
    self:push_front(list, node)
  end
end

function Stage:first_usable(list)
  local node = link(self, list, NEXT)
  if node ~= 0 and link(self, node, FREED_IN) < M.txn_number(self.pager) then return node end
  return nil
end

local function read_link(pager, node, field)
  return M.view(pager, node >> 16):unpack((node & 0xFFFF) + field, "<i8")
end

--- The nodes of the list at address `list`, first to last, read through
-- views (committed state, or the open transaction's). Never raises for
-- damage: a link to a page that is not allocated or out of its page, a
-- back link that does not match, a loop, or a wrong last node ends the
-- walk and is reported.
-- @return a table of node addresses, and nil or a problem (a string)
function M.list(pager, list)
  local nodes, seen = {}, {}
  local prev, node = 0, read_link(pager, list, NEXT)
  while node ~= 0 do
    local ok, back = pcall(read_link, pager, node, PREV)
    if not ok or back ~= prev or seen[node] then
      return nodes, format("a bad link to %d after %d", node, prev)
    end
    seen[node] = true
    nodes[#nodes + 1] = node
    prev, node = node, read_link(pager, node, NEXT)
  end
  local last = read_link(pager, list, PREV)
  if last ~= prev then return nodes, format("it ends at %d, not at %d", prev, last) end
  return nodes
end

--- Check that the lists at the addresses in `lists` hold exactly the nodes
-- of `expected` (node address -> the address of its list), each once, for
-- a `check()`: damage, a node on a list it should not be on, and a node on
-- no list are reported through `bad(fmt, ...)` (see object.problems), an
-- address as pid:offset.
function M.check_lists(pager, lists, expected, bad)
  local function at(address) return format("%d:%d", address >> 16, address & 0xFFFF) end
  local left = {}
  for node, list in pairs(expected) do left[node] = list end
  for _, list in ipairs(lists) do
    local nodes, problem = M.list(pager, list)
    if problem then bad("list %s: %s", at(list), problem) end
    for _, node in ipairs(nodes) do
      if left[node] ~= list then bad("list %s: %s should not be on it", at(list), at(node)) end
      left[node] = nil
    end
  end
  local node = next(left)
  if node then bad("%s is on no list (should be on %s)", at(node), at(left[node])) end
end

--- Free protected page pid and forget what is cached of it.
function M.free_page(pager, pid)
  local cache = writers_of[pager]
  if cache then cache[pid] = nil end
  local views = views_of[pager]
  if views then views[pid] = nil end
  return pager:free_protected(pid)
end

--- Free each pid of the list `pids`, in order, stopping at a failure.
-- @return true, or `nil, msg, code`
function M.free_pages(pager, pids)
  for _, pid in ipairs(pids) do
    local ok, msg, code = M.free_page(pager, pid)
    if not ok then return nil, msg, code end
  end
  return true
end

--- A new protected page and the open transaction's writer of it. The
-- writer is what can fail for want of room (a new page reads as zeros
-- but has no physical page yet): then the page is freed again, and the
-- failure returned. Call inside `atomic` only.
-- @return a Writer (`w:id()` is the pid), or `nil, msg, code`
function M.new_page(pager)
  local pid, msg, code = pager:alloc_protected()
  if not pid then return nil, msg, code end
  local w
  w, msg, code = M.writer(pager, pid)
  if w then return w end
  return give_back(pager, {pid}, msg, code)
end

return M
