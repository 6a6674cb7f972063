--- mappedpages.catalog: the file's named objects.
--
-- A file holds any number of named objects (a slab, a record table, your
-- own allocator). The catalog maps each name to its kind and its anchor: a
-- protected page the object owns, from which it reaches everything else.
--
--     local cat = mp.catalog.open(pager)      -- created on first use
--     local pid = cat:create("scores", "mykind")
--     cat:get("scores")      --> {name = "scores", kind = "mykind", pid = 3}
--     for name, kind, pid in cat:entries() do print(name, kind, pid) end
--     cat:remove("scores")   -- frees the anchor page and the name
--
-- The catalog owns the user root: the root holds a tag and the pid of the
-- catalog's first page, so a file whose root was set to anything else is
-- refused (`nil, msg, "not_catalog"`) and left alone.
--
-- Layout (every page of the catalog, a chain of protected pages):
--
--     0   8 bytes  magic: "mpcatlg\0" (first page) or "mpcatov\0" (the rest)
--     8   u32      used: bytes of entries from offset 24
--     12  u32      count: entries in this page
--     16  u32      next: pid + 1 of the next page, 0 at the end
--     20  u32      total: entries in all pages (first page; 0 in the rest)
--     24  entries  u8 name length, u8 kind length, u32 pid, name, kind
--
-- all little-endian. A lookup reads every page of the chain: opening an
-- object costs O(names / names per page) page reads, once per open.
--
-- Handles cache nothing: every call reads the root and the pages (see
-- mappedpages.access), so after a rollback a handle shows the rolled-back
-- catalog, and two handles of one file agree at once.
-- @module mappedpages.catalog

local access = require "mappedpages.access"

local format, spack, sunpack = string.format, string.pack, string.unpack
local ipairs, pcall, setmetatable, type, tostring = ipairs, pcall, setmetatable, type, tostring
local sort = table.sort

local raise, atomic, writer, view = access.raise, access.atomic, access.writer, access.view

local M = {}

local ROOT_TAG = 0x4D504341          -- "MPCA": the root's high 32 bits
local MAGIC_FIRST = "mpcatlg\0"
local MAGIC_NEXT = "mpcatov\0"
local HEADER = 24
local HEADER_FMT = "<c8 I4 I4 I4 I4"
local ENTRY_FMT = "<I1 I1 I4"        -- followed by the name and the kind
local ENTRY_FIXED = 6
local MAX_NAME, MAX_KIND = 255, 32

M.MAX_NAME, M.MAX_KIND = MAX_NAME, MAX_KIND

local Catalog = {}
Catalog.__index = Catalog
Catalog.__name = "mappedpages.Catalog"

--- The pid of the catalog's first page, or nil when the file has no
-- catalog yet (root 0). `bad` is set when the root is something else.
local function root_pid(pager)
  local root = pager:root()
  if root == 0 then return nil end
  if root >> 32 ~= ROOT_TAG then return nil, true end
  return root & 0xFFFFFFFF
end

--- Read one page's header and entries: returns a page record
-- {pid =, next =, used =, count =, total =, entries = {{name, kind, pid,
-- off, len}...}} or nil, problem.
local function read_page(pager, pid, first)
  local ok, v = pcall(view, pager, pid)
  if not ok then return nil, format("catalog page %d is not an allocated protected page", pid) end
  local size = #v
  local magic, used, count, next1, total = v:unpack(0, HEADER_FMT)
  if magic ~= (first and MAGIC_FIRST or MAGIC_NEXT) then
    return nil, format("catalog page %d has a bad magic", pid)
  end
  if used > size - HEADER then
    return nil, format("catalog page %d: used %d bytes exceeds the page", pid, used)
  end
  local data = v:read(HEADER, used)
  local entries, pos = {}, 1
  while pos <= used do
    if pos + ENTRY_FIXED - 1 > used then
      return nil, format("catalog page %d: entry at offset %d is truncated", pid, HEADER + pos - 1)
    end
    local nlen, klen, opid = sunpack(ENTRY_FMT, data, pos)
    local len = ENTRY_FIXED + nlen + klen
    if nlen == 0 or klen == 0 or klen > MAX_KIND or pos + len - 1 > used then
      return nil, format("catalog page %d: entry at offset %d is malformed", pid, HEADER + pos - 1)
    end
    local name = data:sub(pos + ENTRY_FIXED, pos + ENTRY_FIXED + nlen - 1)
    local kind = data:sub(pos + ENTRY_FIXED + nlen, pos + len - 1)
    entries[#entries + 1] = {name = name, kind = kind, pid = opid,
                             off = HEADER + pos - 1, len = len}
    pos = pos + len
  end
  if #entries ~= count then
    return nil, format("catalog page %d: %d entries, header says %d", pid, #entries, count)
  end
  return {pid = pid, next = next1 - 1, used = used, count = count,
          total = total, entries = entries, size = size}
end

--- Every page of the chain, in order; raises `fname: ...` when the
-- catalog is damaged (check() reports the same problems without raising).
local function pages(self, fname)
  local pager = self.pager
  local first, bad = root_pid(pager)
  if bad then
    raise(fname, 2, "the file's root (%d) no longer holds the catalog", pager:root())
  end
  local list = {}
  if not first then return list end
  local limit = pager:info().pid_limit
  local pid = first
  while pid >= 0 do
    if #list > limit then raise(fname, 2, "the catalog's page chain has a cycle") end
    local page, problem = read_page(pager, pid, pid == first)
    if not page then raise(fname, 2, "%s", problem) end
    list[#list + 1] = page
    pid = page.next
  end
  return list
end

--- Find name: returns the entry and its page, or nil.
local function find(list, name)
  for _, page in ipairs(list) do
    for _, e in ipairs(page.entries) do
      if e.name == name then return e, page end
    end
  end
end

local function new_page_header(magic, total)
  return spack(HEADER_FMT, magic, 0, 0, 0, total)
end

--- Make the catalog's first page and point the root at it (inside a
-- transaction). Returns its pid or nil, msg, code.
local function create_first(pager)
  local pid, msg, code = pager:alloc_protected()
  if not pid then return nil, msg, code end
  local w
  w, msg, code = writer(pager, pid)
  if not w then
    access.free_page(pager, pid)
    return nil, msg, code
  end
  w:write(0, new_page_header(MAGIC_FIRST, 0))
  pager:set_root((ROOT_TAG << 32) | pid)
  return pid
end

--- Open the file's catalog, creating it (one transaction, or as part of
-- the open one) when the root is 0. On a read-only pager without a
-- catalog, the catalog is empty and refuses changes.
-- @return a Catalog, or `nil, msg, code`: "not_catalog" when the root
-- was set to something else (nothing is changed), or the environment's
function M.open(pager)
  if type(pager) ~= "userdata" then
    raise("catalog.open", 1, "pager expected (got %s)", type(pager))
  end
  local first, bad = root_pid(pager)
  if bad then
    return nil, format("catalog.open: the file's root is %d, not a catalog "
                       .. "(it was set by something else)", pager:root()), "not_catalog"
  end
  if first then
    local page, problem = read_page(pager, first, true)
    if not page then
      return nil, "catalog.open: the root does not point to a catalog: " .. problem, "not_catalog"
    end
  elseif not access.readonly(pager) then
    local pid, msg, code = atomic(pager, function()
      if root_pid(pager) then return root_pid(pager) end
      return create_first(pager)
    end)
    if not pid then return nil, msg, code end
  end
  return setmetatable({pager = pager}, Catalog)
end

--- The entry of name: {name =, kind =, pid =}, or nil.
function Catalog:get(name)
  if type(name) ~= "string" then
    raise("catalog:get", 1, "name must be a string (got %s)", type(name))
  end
  local e = find(pages(self, "catalog:get"), name)
  if e then return {name = e.name, kind = e.kind, pid = e.pid} end
  return nil
end

local function check_string(fname, what, s, max)
  if type(s) ~= "string" then
    raise(fname, 2, "%s must be a string (got %s)", what, type(s))
  end
  if #s < 1 or #s > max then
    raise(fname, 2, "%s must be 1 to %d bytes (got %d)", what, max, #s)
  end
end

--- Add name with kind: a new zeroed protected page becomes its anchor.
-- Raises if the name exists, or for a bad name or kind.
-- @return the anchor pid, or `nil, msg, code`
function Catalog:create(name, kind)
  check_string("catalog:create", "name", name, MAX_NAME)
  check_string("catalog:create", "kind", kind, MAX_KIND)
  local pager = self.pager
  access.check_writable(pager, "catalog:create")
  local list = pages(self, "catalog:create")
  if find(list, name) then
    raise("catalog:create", 1, "an object named %q exists already", name)
  end
  return atomic(pager, function()
    local len = ENTRY_FIXED + #name + #kind
    -- Allocate everything first (the first page, a new page, the anchor),
    -- then write: a failed allocation leaves the transaction as it was.
    local made = {}
    local function undo(msg, code)
      for i = #made, 1, -1 do access.free_page(pager, made[i]) end
      return nil, msg, code
    end
    if #list == 0 then
      local pid, msg, code = pager:alloc_protected()
      if not pid then return nil, msg, code end
      made[#made + 1] = pid
      list[1] = {pid = pid, next = -1, used = 0, count = 0, total = 0,
                 entries = {}, size = pager:page_size(), new = MAGIC_FIRST}
    end
    local target
    for _, page in ipairs(list) do
      if page.size - HEADER - page.used >= len then target = page break end
    end
    if not target then
      local pid, msg, code = pager:alloc_protected()
      if not pid then return undo(msg, code) end
      made[#made + 1] = pid
      target = {pid = pid, next = -1, used = 0, count = 0, total = 0,
                entries = {}, size = pager:page_size(), new = MAGIC_NEXT}
      local last = list[#list]
      last.link = pid
      list[#list + 1] = target
    end
    local anchor, msg, code = pager:alloc_protected()
    if not anchor then return undo(msg, code) end
    made[#made + 1] = anchor
    -- The writers of every page we change (a transaction's first writer
    -- of a page copies it, which can fail too), then the writes.
    local ws = {}
    for _, page in ipairs(list) do
      if page.new or page.link or page == target or page == list[1] then
        local w, m, c = writer(pager, page.pid)
        if not w then return undo(m, c) end
        ws[page] = w
      end
    end
    for _, page in ipairs(list) do
      if page.new then
        ws[page]:write(0, new_page_header(page.new, 0))
        if page.new == MAGIC_FIRST then pager:set_root((ROOT_TAG << 32) | page.pid) end
      end
      if page.link then ws[page]:pack(16, "<I4", page.link + 1) end
    end
    local w = ws[target]
    w:write(HEADER + target.used, spack(ENTRY_FMT, #name, #kind, anchor) .. name .. kind)
    w:pack(8, "<I4 I4", target.used + len, target.count + 1)
    local fw = ws[list[1]]
    fw:pack(20, "<I4", fw:unpack(20, "<I4") + 1)
    return anchor
  end)
end

--- Remove name: frees its anchor page and the name. Raises if the name is
-- missing.
-- @return true, or `nil, msg, code`
function Catalog:remove(name)
  if type(name) ~= "string" then
    raise("catalog:remove", 1, "name must be a string (got %s)", type(name))
  end
  local pager = self.pager
  access.check_writable(pager, "catalog:remove")
  local list = pages(self, "catalog:remove")
  local e, page = find(list, name)
  if not e then raise("catalog:remove", 1, "no object named %q", name) end
  return atomic(pager, function()
    -- An empty page past the first leaves the chain: its predecessor is
    -- relinked. The writers first (they can fail), then the changes.
    local prev
    if page.count == 1 and page ~= list[1] then
      for i = 2, #list do if list[i] == page then prev = list[i - 1] end end
    end
    local w, msg, code = writer(pager, page.pid)
    if not w then return nil, msg, code end
    local fw, pw
    fw, msg, code = writer(pager, list[1].pid)
    if not fw then return nil, msg, code end
    if prev then
      pw, msg, code = writer(pager, prev.pid)
      if not pw then return nil, msg, code end
    end
    local ok
    ok, msg, code = access.free_page(pager, e.pid)
    if not ok then return nil, msg, code end
    local tail = HEADER + page.used - (e.off + e.len)
    if tail > 0 then w:write(e.off, w:read(e.off + e.len, tail)) end
    w:fill(0, HEADER + page.used - e.len, e.len)
    w:pack(8, "<I4 I4", page.used - e.len, page.count - 1)
    fw:pack(20, "<I4", fw:unpack(20, "<I4") - 1)
    if prev then
      pw:pack(16, "<I4", page.next + 1)
      ok, msg, code = access.free_page(pager, page.pid)
      if not ok then return nil, msg, code end
    end
    return true
  end)
end

--- Iterate over the entries in name order: `for name, kind, pid in
-- cat:entries() do`. The entries are read when the loop starts.
function Catalog:entries()
  local all = {}
  for _, page in ipairs(pages(self, "catalog:entries")) do
    for _, e in ipairs(page.entries) do all[#all + 1] = e end
  end
  sort(all, function(a, b) return a.name < b.name end)
  local i = 0
  return function()
    i = i + 1
    local e = all[i]
    if e then return e.name, e.kind, e.pid end
  end
end

--- Number of names and of pages the catalog uses.
function Catalog:stats()
  local list = pages(self, "catalog:stats")
  local n = 0
  for _, page in ipairs(list) do n = n + page.count end
  return {objects = n, pages = #list, page_size = self.pager:page_size()}
end

--- The catalog's pages (pids, in chain order).
function Catalog:page_ids()
  local ids = {}
  for i, page in ipairs(pages(self, "catalog:page_ids")) do ids[i] = page.pid end
  return ids
end

--- Check the catalog's structure: every page's header and entries, the
-- chain (no cycle), the total, no name twice, every anchor an allocated
-- protected page owned once.
-- @return true, or false and a list of problems (strings)
function Catalog:check()
  local pager = self.pager
  local problems = {}
  local first, bad = root_pid(pager)
  if bad then return false, {format("the file's root (%d) does not hold the catalog", pager:root())} end
  if not first then return true end
  local limit = pager:info().pid_limit
  local seen_page, seen_name, seen_anchor = {}, {}, {}
  local pid, n, total = first, 0, nil
  while pid >= 0 do
    if seen_page[pid] then
      problems[#problems + 1] = format("the page chain returns to page %d (a cycle)", pid)
      break
    end
    seen_page[pid] = true
    local page, problem = read_page(pager, pid, pid == first)
    if not page then problems[#problems + 1] = problem break end
    if pid == first then total = page.total end
    for _, e in ipairs(page.entries) do
      n = n + 1
      if seen_name[e.name] then
        problems[#problems + 1] = format("name %q appears twice", e.name)
      end
      seen_name[e.name] = true
      if e.pid >= limit or not pcall(view, pager, e.pid) then
        problems[#problems + 1] = format("object %q: anchor %d is not an allocated protected page", e.name, e.pid)
      elseif seen_anchor[e.pid] or seen_page[e.pid] then
        problems[#problems + 1] = format("object %q: anchor %d is owned twice", e.name, e.pid)
      end
      seen_anchor[e.pid] = true
    end
    pid = page.next
  end
  if total and total ~= n then
    problems[#problems + 1] = format("the first page counts %d entries, the pages hold %d", total, n)
  end
  if #problems > 0 then return false, problems end
  return true
end

function Catalog:__tostring()
  local ok, s = pcall(Catalog.stats, self)
  if not ok then return "mappedpages.Catalog (unreadable: " .. tostring(s) .. ")" end
  return format("mappedpages.Catalog: %d object%s in %d page%s", s.objects,
                s.objects == 1 and "" or "s", s.pages, s.pages == 1 and "" or "s")
end

return M
