-- spec/crash_subjects.lua -- subjects for the Lua crash harness
-- (spec/crash_harness.lua describes the interface).
--
--   core     the core itself through the binding: regular pages (alloc,
--            free, bulk, noise written in place), protected pages written by
--            private writers and inside transactions (self-checking
--            content: a header with the pid and a CRC32C of the body), the
--            root; transactions by begin/commit, begin/rollback, <close>
--            without commit, pager:transaction with and without an error,
--            empty commits.
--   planted_pair, planted_inplace, planted_state
--            deliberately broken subjects: the harness must report each
--            (spec/16), so that its passing is not vacuous:
--              planted_pair     two protected pages that must always match,
--                               written by two commits in one step that
--                               claims to be one transaction;
--              planted_inplace  a counter kept in a regular page, written
--                               in place before the commit that claims it;
--              planted_state    a state() that reports something no commit
--                               defines (whether open fell back).
--   readers  readers beside the writer: reader pagers whose snapshots must
--            not change while the writer commits (and holds pages for them)
--            over a records table with an invariant (see below).
-- Subjects for the Lua modules (catalog, slab, examples, records, heap) are added below
-- as the modules are; M.available() lists the subjects whose modules load.

local mp = require "mappedpages"

local M = {}

local concat, sort, fmt = table.concat, table.sort, string.format

---------------------------------------------------------------------------
-- a set with O(1) add, delete and a deterministic random pick

local Set = {}
Set.__index = Set

local function new_set() return setmetatable({ list = {}, pos = {} }, Set) end
M.new_set = new_set

function Set:has(x) return self.pos[x] ~= nil end
function Set:size() return #self.list end

function Set:add(x)
  assert(not self.pos[x], "set: already there")
  local n = #self.list + 1
  self.list[n] = x
  self.pos[x] = n
end

function Set:del(x)
  local i = assert(self.pos[x], "set: not there")
  local n = #self.list
  local last = self.list[n]
  self.list[i] = last
  self.pos[last] = i
  self.list[n] = nil
  self.pos[x] = nil
end

function Set:pick(rng) return self.list[1 + rng:below(#self.list)] end

function Set:copy()
  local c = new_set()
  for i, x in ipairs(self.list) do c.list[i] = x; c.pos[x] = i end
  return c
end

function Set:sorted()
  local t = {}
  for i, x in ipairs(self.list) do t[i] = x end
  sort(t)
  return t
end

local function copy_map(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end
M.copy_map = copy_map

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  sort(ks)
  return ks
end
M.sorted_keys = sorted_keys

-- "a-b" runs of a sorted list of integers.
local function runs(ids)
  local out, k = {}, 1
  while k <= #ids do
    local j = k
    while j < #ids and ids[j + 1] == ids[j] + 1 do j = j + 1 end
    out[#out + 1] = j == k and tostring(ids[k]) or (ids[k] .. "-" .. ids[j])
    k = j + 1
  end
  return concat(out, ",")
end
M.runs = runs

---------------------------------------------------------------------------
-- core

local MAGIC = "mpcrash!"
local HDR = 16                  -- magic, pid, CRC32C of the body

local function with_header(pid, body)
  return string.pack("<c8 I4 I4", MAGIC, pid, mp.crc32c(body)) .. body
end

-- Is protected content c of pid whole (zeros, or a header that matches)?
local function content_ok(pid, c)
  if c == string.rep("\0", #c) then return true end
  local magic, hp, crc = string.unpack("<c8 I4 I4", c)
  if magic ~= MAGIC then return false, fmt("protected page %d: no header", pid) end
  if hp ~= pid then return false, fmt("protected page %d: header says pid %d", pid, hp) end
  if crc ~= mp.crc32c(c:sub(HDR + 1)) then
    return false, fmt("protected page %d: the body does not match its header's CRC (torn?)", pid)
  end
  return true
end

local function core_state_of(regs, pids, contents, root)
  local t = {}
  for i, pid in ipairs(pids) do t[i] = fmt("%d:%08x", pid, mp.crc32c(contents[pid])) end
  return fmt("regular %s\nprotected %s\nroot %d", runs(regs), concat(t, ","), root)
end

local Core = {}
Core.__index = Core

local core_subject = { name = "core", page_size = 1024 }
M.core = core_subject

function core_subject.new(opts)
  return setmetatable({ grow = opts.grow or 300, maxpids = opts.maxpids or 48 }, Core)
end

function core_subject.state(p)
  local regs = {}
  for id in p:pages() do regs[#regs + 1] = id end
  sort(regs)
  local pids, contents = {}, {}
  for pid in p:protected_pages() do
    pids[#pids + 1] = pid
    contents[pid] = p:protected(pid):read()
  end
  sort(pids)
  return core_state_of(regs, pids, contents, p:root())
end

function core_subject.check(p)
  local problems = {}
  for pid in p:protected_pages() do
    local ok, why = content_ok(pid, p:protected(pid):read())
    if not ok then problems[#problems + 1] = why end
  end
  return #problems == 0, problems
end

function Core:attach(p)
  self.P = p:page_size()
  self.reg_c = new_set()
  for id in p:pages() do self.reg_c:add(id) end
  self.pid_c = {}
  for pid in p:protected_pages() do self.pid_c[pid] = p:protected(pid):read() end
  self.root_c = p:root()
  self:rollback()
end

function Core:commit()
  self.reg_c = self.reg_w:copy()
  self.pid_c = copy_map(self.pid_w)
  self.root_c = self.root_w
end

function Core:rollback()
  self.reg_w = self.reg_c:copy()
  self.pid_w = copy_map(self.pid_c)
  self.root_w = self.root_c
  self.pids_w = new_set()
  for _, pid in ipairs(sorted_keys(self.pid_w)) do self.pids_w:add(pid) end
end

function Core:expect()
  return core_state_of(self.reg_c:sorted(), sorted_keys(self.pid_c), self.pid_c, self.root_c)
end

function Core:setup(p)
  -- a few pages of each kind in one transaction
  assert(p:transaction(function()
    for _ = 1, 8 do self:op_alloc(p) end
    for _ = 1, 4 do self:op_palloc(p) end
    return true
  end))
  self:commit()
  return "setup: 8 regular, 4 protected pages"
end

function Core:op_alloc(p)
  local id = assert(p:alloc())
  assert(not self.reg_w:has(id) and not self.reg_c:has(id),
    "alloc gave page " .. id .. ", which is allocated or freed by this transaction")
  self.reg_w:add(id)
  return id
end

function Core:op_palloc(p)
  local pid = assert(p:alloc_protected())
  assert(self.pid_w[pid] == nil and self.pid_c[pid] == nil,
    "alloc_protected gave pid " .. pid .. ", which is allocated or freed by this transaction")
  self.pid_w[pid] = string.rep("\0", self.P)
  self.pids_w:add(pid)
  return pid
end

-- New content for pid: a random piece of its body, then its header.
function Core:new_content(pid, rng)
  local old = self.pid_w[pid]
  local body = old:sub(HDR + 1)
  local off = rng:below(#body)
  local len = 1 + rng:below(#body - off)
  local piece = rng:bytes(len)
  body = body:sub(1, off) .. piece .. body:sub(off + len + 1)
  return with_header(pid, body), HDR + off, piece
end

-- Write pid through writer w as two writes (the piece, then the header);
-- updates the working model.
function Core:write_pid(w, pid, rng)
  local content, off, piece = self:new_content(pid, rng)
  w:write(off, piece)
  w:write(0, content:sub(1, HDR))
  assert(w:read() == content, "a writer does not show what was written")
  self.pid_w[pid] = content
end

-- One operation; in_txn says whether a transaction is open.  Returns its
-- name.
function Core:op(p, rng, in_txn)
  local nreg, npid = self.reg_w:size(), self.pids_w:size()
  local growing = nreg < self.grow
  local r = rng:below(100)
  if r < 14 then
    local n = 1 + rng:below(growing and 24 or 6)
    local ids = assert(p:alloc_bulk(n))
    for _, id in ipairs(ids) do
      assert(not self.reg_w:has(id) and not self.reg_c:has(id),
        "alloc_bulk gave page " .. id .. ", which is allocated or freed by this transaction")
      self.reg_w:add(id)
    end
    return "alloc_bulk(" .. n .. ")"
  elseif r < 22 then
    self:op_alloc(p)
    return "alloc"
  elseif r < 30 and nreg > 0 then
    local id = self.reg_w:pick(rng)
    assert(p:free(id))
    self.reg_w:del(id)
    return "free(" .. id .. ")"
  elseif r < 38 and nreg > 0 then
    local n = 1 + rng:below(math.min(nreg, growing and 4 or 24))
    local ids = {}
    for i = 1, n do ids[i] = self.reg_w:pick(rng); self.reg_w:del(ids[i]) end
    assert(p:free_bulk(ids))
    return "free_bulk(" .. n .. ")"
  elseif r < 48 and nreg > 0 then
    -- noise in a regular page, written in place (not transactional)
    local id = self.reg_w:pick(rng)
    local v = p:page(id)
    local off = rng:below(self.P)
    v:write(off, rng:bytes(1 + rng:below(math.min(64, self.P - off))))
    return "write page " .. id, "nocommit"
  elseif r < 56 and npid < self.maxpids then
    return "alloc_protected -> " .. self:op_palloc(p)
  elseif r < 62 and npid > 0 then
    local pid = self.pids_w:pick(rng)
    assert(p:free_protected(pid))
    self.pid_w[pid] = nil
    self.pids_w:del(pid)
    return "free_protected(" .. pid .. ")"
  elseif r < 90 and npid > 0 then
    local pid = self.pids_w:pick(rng)
    local w = p:write_protected(pid)
    self:write_pid(w, pid, rng)
    if in_txn and rng:below(2) == 0 then
      assert(w:commit())   -- only ends the writer
    elseif not in_txn then
      assert(w:commit())
    end
    return "write_protected(" .. pid .. ")"
  else
    self.root_w = rng:next()
    assert(p:set_root(self.root_w))
    return "set_root"
  end
end

function Core:step(p, rng, variant)
  local r = rng:below(100)
  if r < 22 or (variant and r < 60) then                 -- begin ... commit / rollback
    local n = 1 << rng:below(6)
    local tx = assert(p:begin())
    local names = {}
    for i = 1, n do names[i] = (self:op(p, rng, true)) end
    local how = rng:below(6)
    if how == 0 and not variant then
      assert(tx:rollback())
      self:rollback()
      return "begin, " .. n .. " ops, rollback", "rollback"
    end
    if variant then
      self.root_w = self.root_w ~ 0x5a5a5a5a
      assert(p:set_root(self.root_w))
    end
    assert(tx:commit())
    self:commit()
    return "begin, " .. n .. " ops (" .. concat(names, " ", 1, math.min(#names, 4)) .. "...), commit"
  elseif r < 30 then                                     -- <close> without commit
    local n = 1 + rng:below(8)
    do
      local tx <close> = assert(p:begin())
      for _ = 1, n do self:op(p, rng, true) end
      assert(tx:active())
    end
    self:rollback()
    return "begin, " .. n .. " ops, <close> without commit", "rollback"
  elseif r < 42 then                                     -- pager:transaction
    local n = 1 + rng:below(12)
    local fail = rng:below(4) == 0
    local ok, err = pcall(p.transaction, p, function()
      for _ = 1, n do self:op(p, rng, true) end
      if fail then error("planned failure", 0) end
      return "done"
    end)
    if fail then
      assert(not ok and err == "planned failure", "transaction did not rethrow: " .. tostring(err))
      self:rollback()
      return "transaction(" .. n .. " ops) raising", "rollback"
    end
    assert(ok and err == "done", "transaction: " .. tostring(err))
    self:commit()
    return "transaction(" .. n .. " ops)"
  elseif r < 47 then                                     -- a big transaction
    -- more page-state changes than a root carries: the commit writes
    -- group bitmaps too
    local tx = assert(p:begin())
    local nreg = self.reg_w:size()
    local what
    if nreg < self.grow * 2 and rng:below(2) == 0 then
      local n = 130 + rng:below(130)
      local ids = assert(p:alloc_bulk(n))
      for _, id in ipairs(ids) do
        assert(not self.reg_w:has(id) and not self.reg_c:has(id), "alloc_bulk gave page " .. id .. " twice")
        self.reg_w:add(id)
      end
      what = "alloc_bulk(" .. n .. ")"
    else
      local n = math.min(nreg, 130 + rng:below(130))
      local ids = {}
      for i = 1, n do ids[i] = self.reg_w:pick(rng); self.reg_w:del(ids[i]) end
      assert(p:free_bulk(ids))
      what = "free_bulk(" .. n .. ")"
    end
    for _ = 1, rng:below(6) do self:op(p, rng, true) end
    if variant then
      self.root_w = self.root_w ~ 0x5a5a5a5a
      assert(p:set_root(self.root_w))
    end
    assert(tx:commit())
    self:commit()
    return "big transaction: " .. what
  elseif r < 49 then                                     -- empty commit
    local tx = assert(p:begin())
    assert(tx:commit())
    return "empty commit"
  else                                                   -- one auto-commit op
    local name, tag = self:op(p, rng, false)
    if tag ~= "nocommit" then self:commit() end
    return name
  end
end

---------------------------------------------------------------------------
-- planted bugs (spec/16): each must make the harness report a violation

local Planted = {}
Planted.__index = Planted

local function planted(name, fields)
  local s = { name = name, page_size = 1024 }
  function s.new() return setmetatable({}, Planted) end
  for k, v in pairs(fields) do s[k] = v end
  return s
end

function Planted.attach() end

-- Two protected pages (pids 0 and 1) that must always hold the same bytes.
M.planted_pair = planted("planted_pair", {
  state = function(p)
    local t = {}
    for pid in p:protected_pages() do t[#t + 1] = fmt("%d:%08x", pid, mp.crc32c(p:protected(pid):read())) end
    sort(t)
    return concat(t, ",")
  end,
  check = function(p)
    local ok0, ok1 = pcall(p.protected, p, 0), pcall(p.protected, p, 1)
    if not (ok0 and ok1) then return true end     -- before setup
    local a, b = p:protected(0):read(), p:protected(1):read()
    if a ~= b then return false, "protected pages 0 and 1 differ" end
    return true
  end,
})
M.planted_pair.new = function()
  return setmetatable({
    setup = function(_, p)
      assert(p:transaction(function()
        assert(p:alloc_protected() == 0)
        assert(p:alloc_protected() == 1)
        return true
      end))
      return "setup"
    end,
    step = function(_, p, rng)
      local s = rng:bytes(64)
      -- the bug: two commits for what should be one transaction
      for pid = 0, 1 do
        local w = p:write_protected(pid)
        w:write(0, s)
        assert(w:commit())
      end
      return "write the pair (two commits)"
    end,
  }, Planted)
end

-- A counter kept in a regular page, updated in place, then "committed"
-- by setting the root to it: the page is not protected by the commit.
M.planted_inplace = planted("planted_inplace", {
  state = function(p)
    local ids = {}
    for id in p:pages() do ids[#ids + 1] = id end
    if #ids == 0 then return "no counter" end
    sort(ids)
    return fmt("counter %d root %d", p:page(ids[1]):unpack(0, "<i8"), p:root())
  end,
  check = function(p)
    local ids = {}
    for id in p:pages() do ids[#ids + 1] = id end
    if #ids == 0 then return true end
    sort(ids)
    local c = p:page(ids[1]):unpack(0, "<i8")
    if c ~= p:root() then return false, fmt("counter %d but root %d", c, p:root()) end
    return true
  end,
})
M.planted_inplace.new = function()
  return setmetatable({
    setup = function(_, p)
      assert(p:transaction(function()
        local id = assert(p:alloc())
        p:page(id):pack(0, "<i8", 0)
        p:set_root(0)
        return true
      end))
      return "setup"
    end,
    step = function(_, p, rng)
      local ids = {}
      for id in p:pages() do ids[#ids + 1] = id end
      sort(ids)
      local v = p:page(ids[1])
      local c = v:unpack(0, "<i8") + 1 + rng:below(3)
      v:pack(0, "<i8", c)            -- the bug: in place, before the commit
      assert(p:set_root(c))
      return "counter " .. c
    end,
  }, Planted)
end

-- A state() that reports whether open fell back: no commit defines that.
M.planted_state = planted("planted_state", {
  state = function(p)
    return fmt("root %d recovered %s", p:root(), tostring(p:info().recovered))
  end,
  check = function() return true end,
})
M.planted_state.new = function()
  return setmetatable({
    setup = function(_, p) assert(p:set_root(1)); return "setup" end,
    step = function(_, p, rng)
      assert(p:transaction(function()
        p:set_root(rng:next())
        for _ = 1, rng:below(3) do p:alloc() end
        return true
      end))
      return "set_root"
    end,
  }, Planted)
end

---------------------------------------------------------------------------
-- catalog: named objects, each with an anchor page the subject writes
-- (self-checking content), created and removed alone and several at a
-- time in one transaction with anchor writes, rolled back, through one or
-- two handles; names long enough that the catalog's chain grows and
-- shrinks.

local function try_require(name)
  local ok, m = pcall(require, name)
  if ok then return m end
  return nil
end

local catalog = try_require("mappedpages.catalog")

local ANCHOR_MAGIC = "anchor!!"

-- Anchor content: zeros (never written) or a header naming the object
-- (CRC32C of the name) and a CRC32C of the body.
local function anchor_content(name, body)
  return string.pack("<c8 I4 I4", ANCHOR_MAGIC, mp.crc32c(name), mp.crc32c(body)) .. body
end

local function anchor_ok(name, c)
  if c == string.rep("\0", #c) then return true end
  local magic, ncrc, bcrc = string.unpack("<c8 I4 I4", c)
  if magic ~= ANCHOR_MAGIC then return false, fmt("anchor of %q: no header", name) end
  if ncrc ~= mp.crc32c(name) then return false, fmt("anchor of %q: written for another name", name) end
  if bcrc ~= mp.crc32c(c:sub(HDR + 1)) then
    return false, fmt("anchor of %q: the body does not match its header (torn?)", name)
  end
  return true
end

local function catalog_state_of(list)
  local t = {}
  for i, e in ipairs(list) do t[i] = fmt("%q %s @%d %08x", e.name, e.kind, e.pid, mp.crc32c(e.content)) end
  return #t .. " objects\n" .. concat(t, "\n")
end

local catalog_subject = { name = "catalog", page_size = 1024 }

function catalog_subject.available() return catalog ~= nil end

function catalog_subject.state(p)
  if p:root() == 0 then return "no catalog" end
  local cat, msg, code = catalog.open(p)
  if not cat then return "catalog.open: " .. tostring(code) .. ": " .. tostring(msg) end
  local list = {}
  for name, kind, pid in cat:entries() do
    list[#list + 1] = { name = name, kind = kind, pid = pid, content = p:protected(pid):read() }
  end
  return catalog_state_of(list)
end

function catalog_subject.check(p)
  if p:root() == 0 then return true end
  local cat, msg = catalog.open(p)
  if not cat then return false, msg end
  local ok, problems = cat:check()
  if not ok then return false, problems end
  problems = {}
  local n = 0
  for name, _, pid in cat:entries() do
    n = n + 1
    local good, why = anchor_ok(name, p:protected(pid):read())
    if not good then problems[#problems + 1] = why end
    local e = cat:get(name)
    if not e or e.pid ~= pid then problems[#problems + 1] = fmt("get(%q) disagrees with entries()", name) end
  end
  if cat:stats().objects ~= n then problems[#problems + 1] = "stats() disagrees with entries()" end
  return #problems == 0, problems
end

local Cat = {}
Cat.__index = Cat

function catalog_subject.new(opts)
  return setmetatable({ max = opts.max_objects or 40,
                        counters = { max_objects = 0, max_catalog_pages = 0, creates = 0, removes = 0 } }, Cat)
end

-- After a commit: how big the catalog got.
function Cat:note()
  local c = self.counters
  local n = 0
  for _ in pairs(self.objs_c) do n = n + 1 end
  if n > c.max_objects then c.max_objects = n end
  local pages = self.cat:stats().pages
  if pages > c.max_catalog_pages then c.max_catalog_pages = pages end
end

local KINDS = { "slab", "table", "blob", "k", string.rep("K", 32) }

function Cat:attach(p)
  self.P = p:page_size()
  self.objs_c = {}
  self.cat = nil
  if p:root() ~= 0 then
    self.cat = assert(catalog.open(p))
    for name, kind, pid in self.cat:entries() do
      self.objs_c[name] = { kind = kind, pid = pid, content = p:protected(pid):read() }
    end
  end
  self:rollback()
end

function Cat:commit()
  self.objs_c = copy_map(self.objs_w)
  self:note()
end

function Cat:rollback()
  self.objs_w = copy_map(self.objs_c)
  self.names_w = new_set()
  for _, name in ipairs(sorted_keys(self.objs_w)) do self.names_w:add(name) end
end

function Cat:expect()
  if not self.cat then return "no catalog" end
  local list = {}
  for _, name in ipairs(sorted_keys(self.objs_c)) do
    local o = self.objs_c[name]
    list[#list + 1] = { name = name, kind = o.kind, pid = o.pid, content = o.content }
  end
  return catalog_state_of(list)
end

function Cat:setup(p)
  self.cat = assert(catalog.open(p))
  return "catalog.open creates the catalog"
end

-- A fresh name: short, long (up to 255 bytes, so pages fill up) or binary.
function Cat:new_name(rng)
  for _ = 1, 100 do
    local r = rng:below(10)
    local name
    if r < 5 then
      name = "obj" .. rng:below(1000)
    elseif r < 8 then
      name = ("n%d-"):format(rng:below(1000)) .. string.rep(string.char(97 + rng:below(26)), rng:int(20, 250))
    else
      name = rng:bytes(rng:int(1, 12))
    end
    if not self.objs_w[name] then return name end
  end
  error("no fresh name")
end

-- The handle to use: the subject's, or now and then a second one (they
-- must agree: handles cache nothing).
function Cat:handle(p, rng)
  if rng:below(5) == 0 then return assert(catalog.open(p)) end
  return self.cat
end

function Cat:op_create(p, rng, cat)
  local name, kind = self:new_name(rng), rng:pick(KINDS)
  local pid = assert(cat:create(name, kind))
  assert(p:protected(pid):read() == string.rep("\0", self.P), "a new anchor is not zeroed")
  self.objs_w[name] = { kind = kind, pid = pid, content = string.rep("\0", self.P) }
  self.names_w:add(name)
  self.counters.creates = self.counters.creates + 1
  return "create " .. #name .. "-byte name"
end

function Cat:op_remove(_, rng, cat)
  local name = self.names_w:pick(rng)
  assert(cat:remove(name))
  self.objs_w[name] = nil
  self.names_w:del(name)
  assert(cat:get(name) == nil, "a removed name is still found")
  self.counters.removes = self.counters.removes + 1
  return "remove"
end

function Cat:op_write(p, rng)
  local name = self.names_w:pick(rng)
  local o = self.objs_w[name]
  local body = rng:bytes(self.P - HDR)
  local content = anchor_content(name, body)
  local w = p:write_protected(o.pid)
  w:write(HDR, body)
  w:write(0, content:sub(1, HDR))
  assert(w:commit())
  self.objs_w[name] = { kind = o.kind, pid = o.pid, content = content }
  return "write anchor"
end

-- Misuse that must change nothing: an existing name, a missing one.
function Cat:op_misuse(_, rng, cat)
  if self.names_w:size() > 0 and rng:below(2) == 0 then
    local name = self.names_w:pick(rng)
    local ok, err = pcall(cat.create, cat, name, "k")
    assert(not ok and err:find("exists", 1, true), "create of an existing name: " .. tostring(err))
  else
    local ok, err = pcall(cat.remove, cat, self:new_name(rng))
    assert(not ok and err:find("no object", 1, true), "remove of a missing name: " .. tostring(err))
  end
  return "misuse"
end

function Cat:op(p, rng, in_txn)
  local n = self.names_w:size()
  local cat = self:handle(p, rng)
  local r = rng:below(100)
  if n > 0 and r < 12 then return self:op_misuse(p, rng, cat) end
  if (n < self.max and r < 55) or n == 0 then return self:op_create(p, rng, cat) end
  if r < 80 then return self:op_remove(p, rng, cat) end
  if in_txn or r < 95 then return self:op_write(p, rng) end
  -- get / entries agree with the model
  for name, kind, pid in cat:entries() do
    local o = self.objs_w[name]
    assert(o and o.kind == kind and o.pid == pid, "entries() disagrees with the model")
  end
  return "entries", "nocommit"
end

function Cat:step(p, rng, variant)
  -- a crash-reopen may have gone back to before setup's commit
  if not self.cat then return self:setup(p) end
  local r = rng:below(100)
  if r < 35 or variant then                      -- several objects, one transaction
    local n = 1 + rng:below(8)
    local tx = assert(p:begin())
    local names = {}
    for i = 1, n do names[i] = (self:op(p, rng, true)) end
    if variant then self:op_create(p, rng, self.cat) end
    if rng:below(5) == 0 and not variant then
      assert(tx:rollback())
      self:rollback()
      return "transaction of " .. n .. " ops, rolled back", "rollback"
    end
    assert(tx:commit())
    self:commit()
    return "transaction: " .. concat(names, ", ")
  elseif r < 45 then                             -- pager:transaction raising
    local n = 1 + rng:below(5)
    local ok, err = pcall(p.transaction, p, function()
      for _ = 1, n do self:op(p, rng, true) end
      error("planned failure", 0)
    end)
    assert(not ok and err == "planned failure", tostring(err))
    self:rollback()
    return "transaction(" .. n .. " ops) raising", "rollback"
  else                                           -- one call, its own transaction
    local name, tag = self:op(p, rng, false)
    if name ~= "misuse" and tag ~= "nocommit" then self:commit() end
    return name, tag
  end
end

M.catalog = catalog_subject

-- Planted (spec/16): a named object made in two commits -- the name, then
-- its anchor's initialization -- while check() (rightly) wants every
-- anchor initialized: a crash between the two leaves a name without an
-- object.  (mappedpages.object.open does both in one transaction.)
M.planted_twostep = {
  name = "planted_twostep", page_size = 1024,
  available = catalog_subject.available,
  state = catalog_subject.state,
  check = function(p)
    if p:root() == 0 then return true end
    local cat = assert(catalog.open(p))
    for name, _, pid in cat:entries() do
      if p:protected(pid):read(0, 8) ~= ANCHOR_MAGIC then
        return false, fmt("object %q has no initialized anchor", name)
      end
    end
    return true
  end,
  new = function()
    return setmetatable({
      setup = function(_, p) assert(catalog.open(p)); return "catalog" end,
      step = function(_, p, rng)
        local cat = assert(catalog.open(p))
        local name = "obj" .. rng:next()
        local pid = assert(cat:create(name, "k"))
        local w = p:write_protected(pid)                 -- the bug: a second commit
        w:write(0, anchor_content(name, rng:bytes(p:page_size() - HDR)))
        assert(w:commit())
        return "create and initialize (two commits)"
      end,
    }, Planted)
  end,
}

---------------------------------------------------------------------------
-- allocators: mappedpages.slab and the examples (examples/buddy.lua,
-- examples/arena.lua), several named instances in one file, changed alone
-- and together in one transaction, with rollbacks, drops and reopens.
--
-- What a user observes of an instance: its live objects (ref, size,
-- bytes) and its stats() counts (objects, bytes).  The slab lists its
-- objects (objects()); buddy and arena do not, so, as an application
-- would, the subject keeps each instance's refs in a "directory": a
-- protected page of its own (catalog name "dir:NAME", kind "crash.dir":
-- magic, count, sorted i8 refs), changed in the same transaction as every
-- alloc, free and reset.  state() reads the instances through the
-- catalog, check() runs every instance's check() and matches its counts
-- (and the directory) against what it lists.

local examples_dir = ((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec") .. "/../examples"
if not package.path:find(examples_dir, 1, true) then
  package.path = examples_dir .. "/?.lua;" .. package.path
end

local DIR_KIND, DIR_MAGIC = "crash.dir", "crashdir"

local function text_of(x)
  if type(x) == "table" then
    local t = {}
    for i, v in ipairs(x) do t[i] = tostring(v) end
    return concat(t, "; ")
  end
  return tostring(x)
end

-- Allocator kinds: how to drive each module.
local ALLOCATORS = {
  { id = "slab", module = "mappedpages.slab", free = true, bulk = true, objects = true, windows = true,
    exact = true },
  { id = "buddy", module = "buddy", free = true, exact = false },
  { id = "arena", module = "arena", reset = true, exact = true },
}
for _, a in ipairs(ALLOCATORS) do
  a.mod = try_require(a.module)
  a.kind = a.mod and (a.mod.KIND or (a.id == "slab" and "slab")) or nil
end
M.ALLOCATORS = ALLOCATORS

local function allocator(id)
  for _, a in ipairs(ALLOCATORS) do if a.id == id then return a end end
end

local function by_kind(kind)
  for _, a in ipairs(ALLOCATORS) do if a.mod and a.kind == kind then return a end end
end

local function zeros_of(n) return string.rep("\0", n) end

-- Directory pages: magic, count, then count sorted refs.
local function dir_refs(p, pid)
  local v = p:protected(pid)
  local magic, n = v:unpack(0, "<c8 I4")
  if magic == zeros_of(8) and n == 0 then return {} end
  if magic ~= DIR_MAGIC then return nil, "bad magic" end
  if 12 + 8 * n > #v then return nil, "count " .. n .. " past the page" end
  local refs = {}
  for i = 1, n do refs[i] = v:unpack(12 + 8 * (i - 1), "<i8") end
  return refs
end

local function dir_bytes(refs)
  local t = { string.pack("<c8 I4", DIR_MAGIC, #refs) }
  for i, r in ipairs(refs) do t[i + 1] = string.pack("<i8", r) end
  return concat(t)
end

-- An instance's objects as {ref =, content =} sorted by ref, from the file.
local function live_objects(p, a, h, cat, name)
  local list = {}
  if a.objects then
    for ref in h:objects() do list[#list + 1] = { ref = ref, content = h:read(ref) } end
  else
    local e = cat:get("dir:" .. name)
    if not e then return nil, "no directory" end
    local refs, why = dir_refs(p, e.pid)
    if not refs then return nil, "directory: " .. why end
    for i, ref in ipairs(refs) do list[i] = { ref = ref, content = h:read(ref) } end
  end
  return list
end

local function instance_state(name, a, st, list)
  local t = { fmt("instance %s (%s): %d objects, %d bytes", name, a.id, st.objects, st.bytes) }
  for _, o in ipairs(list) do t[#t + 1] = fmt("  %d: %d bytes %08x", o.ref, #o.content, mp.crc32c(o.content)) end
  return concat(t, "\n")
end

local function alloc_state(p)
  if p:root() == 0 then return "no catalog" end
  local cat, msg, code = catalog.open(p)
  if not cat then return "catalog.open: " .. tostring(code) .. ": " .. tostring(msg) end
  local t = {}
  for name, kind in cat:entries() do
    local a = by_kind(kind)
    if a then
      local h, m, c = a.mod.open(p, name)
      if not h then
        t[#t + 1] = fmt("instance %s: open: %s: %s", name, tostring(c), tostring(m))
      else
        local list, why = live_objects(p, a, h, cat, name)
        if not list then
          t[#t + 1] = fmt("instance %s: %s", name, why)
        else
          t[#t + 1] = instance_state(name, a, h:stats(), list)
        end
      end
    elseif kind ~= DIR_KIND then
      t[#t + 1] = "unknown kind " .. kind
    end
  end
  return concat(t, "\n")
end

local function alloc_check(p)
  if p:root() == 0 then return true end
  local cat, msg = catalog.open(p)
  if not cat then return false, msg end
  local ok, problems = cat:check()
  if not ok then return false, problems end
  problems = {}
  for name, kind in cat:entries() do
    local a = by_kind(kind)
    if a then
      local h, m = a.mod.open(p, name)
      if not h then
        problems[#problems + 1] = name .. ": " .. tostring(m)
      else
        local good, why = h:check()
        if not good then problems[#problems + 1] = name .. ": check(): " .. text_of(why) end
        local list, err = live_objects(p, a, h, cat, name)
        if not list then
          problems[#problems + 1] = name .. ": " .. err
        else
          local st = h:stats()
          local bytes = 0
          for _, o in ipairs(list) do bytes = bytes + (a.exact and #o.content or h:size(o.ref)) end
          if st.objects ~= #list or st.bytes ~= bytes then
            problems[#problems + 1] = fmt("%s: stats() says %d objects of %d bytes, %s %d of %d", name,
              st.objects, st.bytes, a.objects and "objects() lists" or "the directory holds", #list, bytes)
          end
        end
      end
    elseif kind == DIR_KIND then
      local owner = name:sub(5)
      local e = cat:get(owner)
      if not e or not by_kind(e.kind) then problems[#problems + 1] = name .. ": its instance is missing" end
    end
  end
  return #problems == 0, problems
end
local Alloc = {}
Alloc.__index = Alloc

-- A deep enough copy of the instances: {name = {id =, dir =, objs = {ref = content}}}.
local function copy_instances(t)
  local c = {}
  for name, inst in pairs(t) do c[name] = { id = inst.id, dir = inst.dir, objs = copy_map(inst.objs) } end
  return c
end

--- A subject of the allocators ids (a list of ALLOCATORS ids), `per`
-- instances of each.
local function alloc_subject(name, ids, per, page_size)
  local s = { name = name, page_size = page_size or 1024, state = alloc_state, check = alloc_check }
  function s.available()
    if not catalog then return false end
    for _, id in ipairs(ids) do if not allocator(id).mod then return false end end
    return true
  end
  function s.new()
    return setmetatable({ ids = ids, per = per or 2,
      counters = { max_objects = 0, allocs = 0, frees = 0, writes = 0, drops = 0, resets = 0, bulk = 0,
                   windows = 0, misuse = 0 } }, Alloc)
  end
  return s
end

function Alloc:attach(p)
  self.P = p:page_size()
  self.inst_c = {}
  self.cat = nil
  if p:root() ~= 0 then
    self.cat = assert(catalog.open(p))
    for name, kind, pid in self.cat:entries() do
      local a = by_kind(kind)
      if a then
        local h = assert(a.mod.open(p, name))
        local list = assert(live_objects(p, a, h, self.cat, name))
        local objs = {}
        for _, o in ipairs(list) do objs[o.ref] = o.content end
        self.inst_c[name] = { id = a.id, objs = objs }
      elseif kind == DIR_KIND then
        local owner = name:sub(5)
        self.pending_dir = self.pending_dir or {}
        self.pending_dir[owner] = pid
      end
    end
    for owner, pid in pairs(self.pending_dir or {}) do
      if self.inst_c[owner] then self.inst_c[owner].dir = pid end
    end
    self.pending_dir = nil
  end
  self:rollback(p)
end

-- Handles of the working instances (open makes no commit: they exist).
-- After a rollback the handles still usable are kept: they cache nothing,
-- so they must show the rolled-back instance (op_read checks that); the
-- others (their creation was rolled back) are opened again.
function Alloc:handles(p, keep)
  local old = self.h or {}
  self.h = {}
  for name, inst in pairs(self.inst_w) do
    local h = old[name]
    if not (keep and h and pcall(h.stats, h)) then h = assert(allocator(inst.id).mod.open(p, name)) end
    self.h[name] = h
  end
end

function Alloc:commit()
  self.inst_c = copy_instances(self.inst_w)
  local c = self.counters
  for _, inst in pairs(self.inst_c) do
    local n = 0
    for _ in pairs(inst.objs) do n = n + 1 end
    if n > c.max_objects then c.max_objects = n end
  end
end

function Alloc:rollback(p, keep)
  self.inst_w = copy_instances(self.inst_c)
  if p then self:handles(p, keep) end
end

function Alloc:expect()
  if not self.cat then return "no catalog" end
  local t = {}
  for _, name in ipairs(sorted_keys(self.inst_c)) do
    local inst = self.inst_c[name]
    local list, bytes = {}, 0
    for _, ref in ipairs(sorted_keys(inst.objs)) do
      list[#list + 1] = { ref = ref, content = inst.objs[ref] }
      bytes = bytes + #inst.objs[ref]
    end
    t[#t + 1] = instance_state(name, allocator(inst.id), { objects = #list, bytes = bytes }, list)
  end
  return concat(t, "\n")
end

-- Rewrite the directory of instance name (inside a transaction).
function Alloc:write_dir(p, name)
  local inst = self.inst_w[name]
  if not inst.dir then return end
  local refs = sorted_keys(inst.objs)
  local w = p:write_protected(inst.dir)
  w:write(0, dir_bytes(refs))
  assert(w:commit())
end

-- Run fn inside the open transaction, or a transaction of its own.
local function in_txn(p, inside, fn)
  if inside then return fn() end
  local ok, err = p:transaction(function() fn() return true end)
  assert(ok, err)
end

-- Make instance name of allocator a (inside a transaction).
function Alloc:make(p, a, name)
  local h = assert(a.mod.open(p, name))
  local inst = { id = a.id, objs = {} }
  if not a.objects then
    inst.dir = assert(self.cat:create("dir:" .. name, DIR_KIND))
  end
  self.inst_w[name] = inst
  self.h[name] = h
  self:write_dir(p, name)
end

function Alloc:setup(p)
  self.inst_w, self.h = {}, {}
  assert(p:transaction(function()
    self.cat = assert(catalog.open(p))   -- creates the catalog in this transaction
    for _, id in ipairs(self.ids) do
      for k = 1, self.per do self:make(p, allocator(id), id .. "." .. k) end
    end
    return true
  end))
  self:commit()
  return "setup: " .. #self.ids * self.per .. " instances"
end

function Alloc:max_size(name)
  return self.h[name]:stats().max_size
end

local function refs_of(inst) return sorted_keys(inst.objs) end

-- A size: mostly small, sometimes up to the largest.
local function pick_size(rng, max)
  local r = rng:below(10)
  if r < 5 then return rng:int(1, math.min(48, max)) end
  if r < 8 then return rng:int(1, math.min(200, max)) end
  return rng:int(1, max)
end

function Alloc:cap(name)
  local inst = self.inst_w[name]
  if inst.dir then return (self.P - 12) // 8 - 4 end
  return 160
end

function Alloc:count(name)
  local n = 0
  for _ in pairs(self.inst_w[name].objs) do n = n + 1 end
  return n
end

function Alloc:op_alloc(p, rng, name, inside)
  local h, inst, a = self.h[name], self.inst_w[name], allocator(self.inst_w[name].id)
  local size = pick_size(rng, self:max_size(name))
  local ref
  in_txn(p, inside, function()
    ref = assert(h:alloc(size))
    assert(not inst.objs[ref] and not (self.inst_c[name] and self.inst_c[name].objs[ref]),
      fmt("%s: alloc gave ref %d, live or freed in this transaction", name, ref))
    local n = a.exact and size or h:size(ref)
    assert(n >= size, "a block smaller than asked")
    inst.objs[ref] = zeros_of(n)
    assert(h:read(ref) == inst.objs[ref], "a new object does not read as zeros")
    self:write_dir(p, name)
  end)
  self.counters.allocs = self.counters.allocs + 1
  return "alloc " .. size
end

function Alloc:op_free(p, rng, name, inside)
  local h, inst = self.h[name], self.inst_w[name]
  local refs = refs_of(inst)
  local ref = refs[1 + rng:below(#refs)]
  in_txn(p, inside, function()
    assert(h:free(ref))
    inst.objs[ref] = nil
    self:write_dir(p, name)
  end)
  self.counters.frees = self.counters.frees + 1
  return "free"
end

function Alloc:op_write(_, rng, name)
  local h, inst, a = self.h[name], self.inst_w[name], allocator(self.inst_w[name].id)
  local refs = refs_of(inst)
  local ref = refs[1 + rng:below(#refs)]
  local old = inst.objs[ref]
  local off = rng:below(#old)
  local piece = rng:bytes(1 + rng:below(#old - off))
  if a.windows and rng:below(3) == 0 then
    -- through a writer window: a private copy outside a transaction
    local w = assert(h:writer(ref))
    w:write(off, piece)
    assert(w:commit())
    self.counters.windows = self.counters.windows + 1
  else
    assert(h:write(ref, off, piece))
  end
  inst.objs[ref] = old:sub(1, off) .. piece .. old:sub(off + #piece + 1)
  self.counters.writes = self.counters.writes + 1
  return "write " .. #piece
end

function Alloc:op_bulk(_, rng, name, inside)
  local h, inst = self.h[name], self.inst_w[name]
  local room = self:cap(name) - self:count(name)
  if rng:below(2) == 0 and room > 0 then
    local n, size = 1 + rng:below(math.min(room, 24)), pick_size(rng, self:max_size(name))
    local refs = assert(h:alloc_bulk(n, size))
    assert(#refs == n, "alloc_bulk gave another number of refs")
    for _, ref in ipairs(refs) do
      assert(not inst.objs[ref], "alloc_bulk gave a live ref")
      inst.objs[ref] = zeros_of(size)
    end
    self.counters.bulk = self.counters.bulk + 1
    return "alloc_bulk(" .. n .. ", " .. size .. ")"
  end
  local all = refs_of(inst)
  if #all == 0 then return "nothing to free", "nocommit" end
  local n = 1 + rng:below(math.min(#all, 24))
  local refs = {}
  for i = 1, n do
    local k = i + rng:below(#all - i + 1)
    all[i], all[k] = all[k], all[i]
    refs[i] = all[i]
  end
  assert(h:free_bulk(refs))
  for _, ref in ipairs(refs) do inst.objs[ref] = nil end
  self.counters.bulk = self.counters.bulk + 1
  local _ = inside
  return "free_bulk(" .. n .. ")"
end

function Alloc:op_reset(p, _, name, inside)
  local h, inst = self.h[name], self.inst_w[name]
  in_txn(p, inside, function()
    assert(h:reset())
    inst.objs = {}
    self:write_dir(p, name)
  end)
  self.counters.resets = self.counters.resets + 1
  return "reset"
end

function Alloc:op_drop(p, _, name, inside)
  local inst = self.inst_w[name]
  local a = allocator(inst.id)
  in_txn(p, inside, function()
    assert(a.mod.drop(p, name))
    if inst.dir then assert(self.cat:remove("dir:" .. name)) end
    self.inst_w[name] = nil
    self.h[name] = nil
  end)
  self.counters.drops = self.counters.drops + 1
  return "drop " .. name
end

function Alloc:op_make(p, _, name, inside, a)
  in_txn(p, inside, function() self:make(p, a, name) end)
  return "make " .. name
end

-- Reads that must agree with the model (no commit).
function Alloc:op_read(_, rng, name)
  local h, inst, a = self.h[name], self.inst_w[name], allocator(self.inst_w[name].id)
  local refs = refs_of(inst)
  if #refs > 0 then
    local ref = refs[1 + rng:below(#refs)]
    local c = inst.objs[ref]
    local off = rng:below(#c)
    local len = rng:below(#c - off + 1)
    assert(h:read(ref, off, len) == c:sub(off + 1, off + len), name .. ": read disagrees with the model")
    if a.windows then assert(h:view(ref):read() == c, name .. ": view disagrees with the model") end
  end
  if a.objects then
    local n = 0
    for ref, size in h:objects() do
      n = n + 1
      assert(inst.objs[ref] and #inst.objs[ref] == size, name .. ": objects() disagrees with the model")
    end
    assert(n == #refs, name .. ": objects() lists " .. n .. " objects, the model " .. #refs)
  end
  local st = h:stats()
  assert(st.objects == #refs, name .. ": stats() disagrees with the model")
  return "read", "nocommit"
end

-- Misuse that must change nothing: a dead ref.
function Alloc:op_misuse(_, rng, name)
  local h, inst, a = self.h[name], self.inst_w[name], allocator(self.inst_w[name].id)
  local ref
  for _ = 1, 20 do
    local r = (rng:below(1 << 20) << 16) + rng:below(64)
    if r > 0 and not inst.objs[r] then ref = r break end
  end
  if not ref then return "misuse skipped", "nocommit" end
  assert(not pcall(h.read, h, ref), name .. ": read of a dead ref did not raise")
  if a.free then assert(not pcall(h.free, h, ref), name .. ": free of a dead ref did not raise") end
  assert(not pcall(h.write, h, ref, 0, "x"), name .. ": write to a dead ref did not raise")
  self.counters.misuse = self.counters.misuse + 1
  return "misuse", "nocommit"
end

-- One operation on a random instance; returns its name and "nocommit"
-- when it made no change.
function Alloc:op(p, rng, inside)
  local names = sorted_keys(self.inst_w)
  local r = rng:below(100)
  if #names == 0 or (r < 3 and #names < #self.ids * self.per) then
    -- bring back a dropped instance
    for _, id in ipairs(self.ids) do
      for k = 1, self.per do
        local name = id .. "." .. k
        if not self.inst_w[name] then return self:op_make(p, rng, name, inside, allocator(id)) end
      end
    end
  end
  local name = names[1 + rng:below(#names)]
  local a = allocator(self.inst_w[name].id)
  local n = self:count(name)
  if rng:below(8) == 0 then
    -- a second handle of the same instance: handles cache nothing, so it
    -- sees every change at once (and the first one sees its changes)
    self.h[name] = assert(a.mod.open(p, name))
  end
  if r < 2 then return self:op_drop(p, rng, name, inside) end
  if r < 10 then return self:op_read(p, rng, name) end
  if r < 14 then return self:op_misuse(p, rng, name) end
  if a.reset and r < 17 then return self:op_reset(p, rng, name, inside) end
  if a.bulk and r < 25 then return self:op_bulk(p, rng, name, inside) end
  if n > 0 and r < 50 then return self:op_write(p, rng, name, inside) end
  local free_below = n < self:cap(name) // 2 and 62 or 75   -- grow, then churn
  if n > 0 and a.free and (r < free_below or n >= self:cap(name)) then return self:op_free(p, rng, name, inside) end
  if n >= self:cap(name) then return self:op_read(p, rng, name) end
  return self:op_alloc(p, rng, name, inside)
end

function Alloc:step(p, rng, variant)
  -- a crash-reopen may have gone back to before setup's commit
  if not self.cat then return self:setup(p) end
  local r = rng:below(100)
  if r < 35 or variant then                      -- several instances, one transaction
    local n = 1 + rng:below(10)
    local tx = assert(p:begin())
    local names = {}
    for i = 1, n do names[i] = (self:op(p, rng, true)) end
    if variant then self:op(p, rng, true) end
    if rng:below(5) == 0 and not variant then
      assert(tx:rollback())
      self:rollback(p, true)
      return "transaction of " .. n .. " ops, rolled back", "rollback"
    end
    assert(tx:commit())
    self:commit()
    return "transaction: " .. concat(names, ", ")
  elseif r < 45 then                             -- pager:transaction raising
    local n = 1 + rng:below(6)
    local ok, err = pcall(p.transaction, p, function()
      for _ = 1, n do self:op(p, rng, true) end
      error("planned failure", 0)
    end)
    assert(not ok and err == "planned failure", tostring(err))
    self:rollback(p, true)
    return "transaction(" .. n .. " ops) raising", "rollback"
  else                                           -- one call (with its directory)
    local name, tag = self:op(p, rng, false)
    if tag ~= "nocommit" then self:commit() end
    return name, tag
  end
end

M.slab = alloc_subject("slab", { "slab" }, 3)
M.buddy = alloc_subject("buddy", { "buddy" }, 2)
M.arena = alloc_subject("arena", { "arena" }, 2)
M.allocators = alloc_subject("allocators", { "slab", "buddy", "arena" }, 1, 4096)

---------------------------------------------------------------------------
-- records: mappedpages.records, two tables in one file, rows inserted,
-- updated (whole fields and one field), deleted, alone and many in one
-- transaction (committed, rolled back, raising inside pager:transaction),
-- now and then a schema migration (a field appended: every row gets its
-- default, in one transaction) and a drop. What a user observes: each
-- table's record (its fields) and its rows by id; state() opens each table
-- with the schema stored in the file (records.open without a schema),
-- check() runs the catalog's and each table's check() and compares count()
-- with scan().

local records = try_require("mappedpages.records")

-- Schema version v of the subject's tables: three fields, then v appended.
local function rec_src(v)
  local t = { "record row { a: i32  b: char[5]  c: f64" }
  for k = 1, v do t[#t + 1] = fmt("  x%d: u16 = %d", k, 10 * k) end
  t[#t + 1] = " }"
  return concat(t, "\n")
end
local REC_MAX_VERSION = 3
local rec_cache = {}
local function rec_of(v)
  if not rec_cache[v] then rec_cache[v] = assert(mp.schema.parse(rec_src(v))):record("row") end
  return rec_cache[v]
end

local function table_state(name, rec, list)
  local t = { fmt("table %s: %d fields, %d rows", name, #rec.fields, #list) }
  for _, e in ipairs(list) do
    t[#t + 1] = fmt("  %d: %08x", e.id, mp.crc32c(rec.encode(e.row)))
  end
  return concat(t, "\n")
end

-- records_indexed: the same with indexes (records.open's opts): a unique
-- one on a (an insert, update or set of a taken value must return
-- "duplicate") and a plain one on c; state() adds each table's ids in
-- index order (range), and check() the tables' checks of their indexes.
local IX_OPTS = { unique = { "a" }, index = { "c" } }

local function index_state(rows)
  local ids = sorted_keys(rows)
  local by_a, by_c = {}, {}
  for i, id in ipairs(ids) do by_a[i], by_c[i] = id, id end
  sort(by_a, function(x, y) return rows[x].a < rows[y].a end)
  sort(by_c, function(x, y)
    if rows[x].c ~= rows[y].c then return rows[x].c < rows[y].c end
    return x < y
  end)
  return fmt("  by a: %s\n  by c: %s", concat(by_a, " "), concat(by_c, " "))
end

local function records_state(p, indexed)
  if p:root() == 0 then return "no catalog" end
  local cat, msg, code = catalog.open(p)
  if not cat then return "catalog.open: " .. tostring(code) .. ": " .. tostring(msg) end
  local out = {}
  for name, kind in cat:entries() do
    if kind == "records" then
      local h, m, c = records.open(p, name)
      if not h then
        out[#out + 1] = fmt("table %s: open: %s: %s", name, tostring(c), tostring(m))
      else
        local list = {}
        for id, row in h:scan() do list[#list + 1] = { id = id, row = row } end
        out[#out + 1] = table_state(name, h:record(), list)
        if indexed then
          local by_a, by_c = {}, {}
          local ok, err = pcall(function()
            for id in h:range("a") do by_a[#by_a + 1] = id end
            for id in h:range("c") do by_c[#by_c + 1] = id end
          end)
          if ok then
            out[#out + 1] = fmt("  by a: %s\n  by c: %s", concat(by_a, " "), concat(by_c, " "))
          else
            out[#out + 1] = "  indexes: " .. tostring(err)
          end
        end
      end
    else
      out[#out + 1] = "unknown kind " .. kind
    end
  end
  return concat(out, "\n")
end

local function records_check(p)
  if p:root() == 0 then return true end
  local cat, msg = catalog.open(p)
  if not cat then return false, msg end
  local ok, problems = cat:check()
  if not ok then return false, problems end
  problems = {}
  for name, kind in cat:entries() do
    if kind == "records" then
      local h, m = records.open(p, name)
      if not h then
        problems[#problems + 1] = name .. ": " .. tostring(m)
      else
        local good, why = h:check()
        if not good then problems[#problems + 1] = name .. ": check(): " .. text_of(why) end
        local n = 0
        for _ in h:scan() do n = n + 1 end
        if n ~= h:count() then problems[#problems + 1] = fmt("%s: count() %d, scan() %d", name, h:count(), n) end
      end
    end
  end
  return #problems == 0, problems
end

local records_subject = { name = "records", page_size = 1024, state = records_state, check = records_check }

function records_subject.available()
  return catalog ~= nil and records ~= nil and try_require("mappedpages.schema") ~= nil
end

local Rec = {}
Rec.__index = Rec

local REC_TABLES = { "players", "scores" }

function records_subject.new()
  return setmetatable({ counters = { inserts = 0, updates = 0, sets = 0, deletes = 0, migrations = 0,
                                     drops = 0, max_rows = 0 } }, Rec)
end

-- {name = {v =, rows = {id = row}}}
local function copy_tables(t)
  local c = {}
  for name, tb in pairs(t) do
    local rows = {}
    for id, row in pairs(tb.rows) do rows[id] = copy_map(row) end
    c[name] = { v = tb.v, rows = rows }
  end
  return c
end

function Rec:attach(p)
  self.tab_c = {}
  self.cat = nil
  if p:root() ~= 0 then
    self.cat = assert(catalog.open(p))
    for name, kind in self.cat:entries() do
      if kind == "records" then
        local h = assert(records.open(p, name))
        local rows = {}
        for id, row in h:scan() do rows[id] = row end
        self.tab_c[name] = { v = #h:record().fields - 3, rows = rows }
      end
    end
  end
  self:rollback(p)
end

function Rec:handles(p)
  self.h = {}
  for name, tb in pairs(self.tab_w) do self.h[name] = assert(records.open(p, name, rec_src(tb.v), self.opts)) end
end

function Rec:commit()
  self.tab_c = copy_tables(self.tab_w)
  for _, tb in pairs(self.tab_c) do
    local n = 0
    for _ in pairs(tb.rows) do n = n + 1 end
    if n > self.counters.max_rows then self.counters.max_rows = n end
  end
end

function Rec:rollback(p)
  self.tab_w = copy_tables(self.tab_c)
  -- handles of a rolled-back migration raise ("open it again"): reopen all
  if p then self:handles(p) end
end

function Rec:expect()
  if not self.cat then return "no catalog" end
  local out = {}
  for _, name in ipairs(sorted_keys(self.tab_c)) do
    local tb = self.tab_c[name]
    local list = {}
    for _, id in ipairs(sorted_keys(tb.rows)) do list[#list + 1] = { id = id, row = tb.rows[id] } end
    out[#out + 1] = table_state(name, rec_of(tb.v), list)
    if self.opts then out[#out + 1] = index_state(tb.rows) end
  end
  return concat(out, "\n")
end

function Rec:setup(p)
  self.tab_w, self.h = {}, {}
  assert(p:transaction(function()
    self.cat = assert(catalog.open(p))
    for _, name in ipairs(REC_TABLES) do
      self.h[name] = assert(records.open(p, name, rec_src(0), self.opts))
      self.tab_w[name] = { v = 0, rows = {} }
    end
    return true
  end))
  self:commit()
  return "setup: " .. #REC_TABLES .. " tables"
end

local function random_row(rng, v, partial)
  local row = {}
  if not partial or rng:below(2) == 0 then row.a = rng:int(-100000, 100000) end
  if not partial or rng:below(2) == 0 then row.b = string.rep(string.char(97 + rng:below(26)), rng:below(6)) end
  if not partial or rng:below(2) == 0 then row.c = rng:int(-1000, 1000) / 4 end
  for k = 1, v do
    if rng:below(3) == 0 then row["x" .. k] = rng:below(65536) end
  end
  return row
end

-- A row as the table gives it back: defaults filled in.
local function full_row(v, row)
  local rec = rec_of(v)
  return rec.decode(rec.encode(row))
end

local function pick_id(tb, rng)
  local ids = sorted_keys(tb.rows)
  if #ids == 0 then return nil end
  return ids[1 + rng:below(#ids)]
end

function Rec:op(p, rng, inside)
  local names = sorted_keys(self.tab_w)
  if #names == 0 then
    local name = REC_TABLES[1 + rng:below(#REC_TABLES)]
    self.h[name] = assert(records.open(p, name, rec_src(0), self.opts))
    self.tab_w[name] = { v = 0, rows = {} }
    return "create " .. name
  end
  local name = names[1 + rng:below(#names)]
  local tb, h = self.tab_w[name], self.h[name]
  local r = rng:below(100)
  local id = pick_id(tb, rng)
  if r < 2 and not inside then
    assert(records.drop(p, name))
    self.tab_w[name], self.h[name] = nil, nil
    self.counters.drops = self.counters.drops + 1
    return "drop " .. name
  end
  if r < 5 and tb.v < REC_MAX_VERSION then
    local v = tb.v + 1
    self.h[name] = assert(records.open(p, name, rec_src(v), self.opts))
    for rid, row in pairs(tb.rows) do tb.rows[rid] = full_row(v, row) end
    tb.v = v
    self.counters.migrations = self.counters.migrations + 1
    return "migrate " .. name .. " to v" .. v
  end
  -- with a unique index on a: the id holding value a, if any
  local function taken(a)
    if not self.opts or a == nil then return nil end
    for rid, row in pairs(tb.rows) do if row.a == a then return rid end end
  end
  if id == nil or r < 45 then
    local row = random_row(rng, tb.v)
    if self.opts and taken(full_row(tb.v, row).a) then
      local got, _, code = h:insert(row)
      assert(got == nil and code == "duplicate", "a duplicate insert did not return 'duplicate'")
      return "insert (duplicate)"
    end
    local new = assert(h:insert(row))
    assert(tb.rows[new] == nil, "insert gave a live id")
    assert(self.tab_c[name] == nil or self.tab_c[name].rows[new] == nil,
      "insert gave an id deleted in this transaction")
    tb.rows[new] = full_row(tb.v, row)
    self.counters.inserts = self.counters.inserts + 1
    return "insert"
  end
  if r < 65 then
    local fields = random_row(rng, tb.v, true)
    local o = taken(fields.a)
    if o and o ~= id then
      local ok, _, code = h:update(id, fields)
      assert(ok == nil and code == "duplicate", "a duplicate update did not return 'duplicate'")
      return "update (duplicate)"
    end
    assert(h:update(id, fields))
    for k, v in pairs(fields) do tb.rows[id][k] = v end
    tb.rows[id] = full_row(tb.v, tb.rows[id])
    self.counters.updates = self.counters.updates + 1
    return "update"
  end
  if r < 75 then
    local a = rng:int(-5, 5)
    local o = taken(a)
    if o and o ~= id then
      local ok, _, code = h:set(id, "a", a)
      assert(ok == nil and code == "duplicate", "a duplicate set did not return 'duplicate'")
      return "set (duplicate)"
    end
    assert(h:set(id, "a", a))
    tb.rows[id].a = a
    assert(h:field(id, "a") == a, "field disagrees with set")
    self.counters.sets = self.counters.sets + 1
    return "set"
  end
  if r < 92 then
    assert(h:delete(id))
    tb.rows[id] = nil
    assert(h:get(id) == nil, "a deleted id still reads")
    self.counters.deletes = self.counters.deletes + 1
    return "delete"
  end
  -- reads agree with the model; misuse changes nothing
  local got = h:get(id)
  for k, v in pairs(tb.rows[id]) do assert(got[k] == v, "get disagrees with the model") end
  assert(not pcall(h.update, h, id, { nope = 1 }), "an unknown field did not raise")
  return "read", "nocommit"
end

function Rec:step(p, rng, variant)
  if not self.cat then return self:setup(p) end
  local r = rng:below(100)
  if r < 35 or variant then
    local n = 1 + rng:below(12)
    local tx = assert(p:begin())
    local what_ = {}
    for i = 1, n do what_[i] = (self:op(p, rng, true)) end
    if variant then self:op(p, rng, true) end
    if rng:below(5) == 0 and not variant then
      assert(tx:rollback())
      self:rollback(p)
      return "transaction of " .. n .. " ops, rolled back", "rollback"
    end
    assert(tx:commit())
    self:commit()
    return "transaction: " .. concat(what_, ", ")
  elseif r < 45 then
    local n = 1 + rng:below(6)
    local ok, err = pcall(p.transaction, p, function()
      for _ = 1, n do self:op(p, rng, true) end
      error("planned failure", 0)
    end)
    assert(not ok and err == "planned failure", tostring(err))
    self:rollback(p)
    return "transaction(" .. n .. " ops) raising", "rollback"
  else
    local desc, tag = self:op(p, rng, false)
    if tag ~= "nocommit" then self:commit() end
    return desc, tag
  end
end

M.records = records_subject

local records_indexed = { name = "records_indexed", page_size = 1024, check = records_check,
                          available = records_subject.available }
function records_indexed.state(p) return records_state(p, true) end
function records_indexed.new()
  local self = records_subject.new()
  self.opts = IX_OPTS
  return self
end
M.records_indexed = records_indexed

---------------------------------------------------------------------------
-- readers: readers beside the writer. The writer keeps a records table of
-- accounts whose balances always sum to BANK_TOTAL: transfers between
-- accounts, splits into a new account (now and then many at once, so the
-- table spans several pages), merges that delete one account into another,
-- each one transaction (committed, rolled back, raising inside
-- pager:transaction); touches of one row auto-committed. Every update
-- copies protected pages, so every commit frees pages a reader's snapshot
-- may still reach. Up to two reader pagers on the same file (in this
-- process: each its own descriptor and snapshot lock) open, refresh and
-- close at random steps; at every step each must show exactly the state
-- the writer had committed when it took its snapshot, however many commits
-- came after (a held page reused and rewritten would change it), with its
-- accounts summing to BANK_TOTAL, and pager:readers() must list their
-- snapshots. A power loss ends the readers (crash()); half the time a new
-- reader opens the crash image before the writer recovers it
-- (before_reopen()), must show what the writer recovers (attach()), and
-- lives on.

local BANK = "accounts"
local BANK_SRC = "record acct { bal: i64  touch: u32 }"
local BANK_TOTAL = 1000000
local BANK_MAX_ROWS = 160
local bank_rec_cache
local function bank_rec()
  if not bank_rec_cache then bank_rec_cache = assert(mp.schema.parse(BANK_SRC)):record("acct") end
  return bank_rec_cache
end

local readers_subject = { name = "readers", page_size = 1024, state = records_state }

function readers_subject.available() return records_subject.available() end

-- The accounts' sum: nil, why when the table cannot be read.
local function bank_sum(p)
  local h, msg = records.open(p, BANK)
  if not h then return nil, "records.open: " .. tostring(msg) end
  local s, n = 0, 0
  for _, row in h:scan() do s, n = s + row.bal, n + 1 end
  return s, n
end

function readers_subject.check(p)
  local ok, problems = records_check(p)
  if not ok or p:root() == 0 then return ok, problems end
  local s, n = bank_sum(p)
  if s ~= BANK_TOTAL then
    return false, fmt("the %s accounts sum to %s, not %d", tostring(n), tostring(s), BANK_TOTAL)
  end
  return true
end

local Rd = {}
Rd.__index = Rd

function readers_subject.new()
  return setmetatable({ rd = {}, counters = { transfers = 0, splits = 0, merges = 0, touches = 0, max_rows = 0,
    reader_opens = 0, reader_refreshes = 0, reader_closes = 0, reader_checks = 0, crash_readers = 0,
    held_steps = 0, max_held = 0 } }, Rd)
end

local function copy_rows(t)
  local c = {}
  for id, row in pairs(t) do c[id] = { bal = row.bal, touch = row.touch } end
  return c
end

function Rd:commit()
  self.rows_c = copy_rows(self.rows_w)
  local n = 0
  for _ in pairs(self.rows_c) do n = n + 1 end
  if n > self.counters.max_rows then self.counters.max_rows = n end
end

function Rd:rollback(p)
  self.rows_w = copy_rows(self.rows_c)
  if self.h then self.h = assert(records.open(p, BANK, BANK_SRC)) end
end

function Rd:expect()
  if not self.h then return "no catalog" end
  local list = {}
  for _, id in ipairs(sorted_keys(self.rows_c)) do list[#list + 1] = { id = id, row = self.rows_c[id] } end
  return table_state(BANK, bank_rec(), list)
end

-- Reader k shows the snapshot it took; raises otherwise.
function Rd:verify_reader(k, when)
  local r = self.rd[k]
  self.counters.reader_checks = self.counters.reader_checks + 1
  local now = records_state(r.p)
  if now ~= r.snap then
    error(fmt("%s: reader %d (snapshot txn %d) no longer shows its snapshot:\n%s\nwant:\n%s", when, k, r.txn,
      now, r.snap))
  end
  if r.p:info().txn ~= r.txn then error(fmt("%s: reader %d moved from txn %d", when, k, r.txn)) end
  if r.p:root() ~= 0 then
    local s = bank_sum(r.p)
    if s ~= BANK_TOTAL then error(fmt("%s: reader %d sees accounts summing to %s", when, k, tostring(s))) end
  end
end

-- Reader k took a snapshot: it must be the writer's last commit.
function Rd:took(p, k, when)
  local r = self.rd[k]
  r.txn, r.snap = r.p:info().txn, records_state(p)
  if r.txn ~= p:info().txn then
    error(fmt("%s: reader %d at txn %d, the writer at %d", when, k, r.txn, p:info().txn))
  end
  self:verify_reader(k, when)
end

function Rd:verify_all(p, when)
  local want, seen = {}, {}
  for k = 1, 2 do
    if self.rd[k] then
      self:verify_reader(k, when)
      if not seen[self.rd[k].txn] then want[#want + 1], seen[self.rd[k].txn] = self.rd[k].txn, true end
    end
  end
  sort(want)
  local got = assert(p:readers())
  if concat(got, " ") ~= concat(want, " ") then
    error(fmt("%s: pager:readers() lists {%s}, the readers hold {%s}", when, concat(got, " "), concat(want, " ")))
  end
  local held = p:info().held_count
  if held > 0 then self.counters.held_steps = self.counters.held_steps + 1 end
  if held > self.counters.max_held then self.counters.max_held = held end
end

function Rd:readers_step(p, rng)
  self:verify_all(p, "before the step")
  for k = 1, 2 do
    local r = self.rd[k]
    if not r then
      if rng:below(100) < 15 then
        self.rd[k] = { p = assert(mp.open(self.path, { readonly = true })) }
        self.counters.reader_opens = self.counters.reader_opens + 1
        self:took(p, k, "a reader opened")
      end
    else
      local x = rng:below(100)
      if x < 15 then
        assert(r.p:refresh())
        self.counters.reader_refreshes = self.counters.reader_refreshes + 1
        self:took(p, k, "a reader refreshed")
      elseif x < 19 then
        r.p:close()
        self.rd[k] = nil
        self.counters.reader_closes = self.counters.reader_closes + 1
      end
    end
  end
end

function Rd:attach(p)
  self.path = p:info().path
  self.rows_c, self.h = {}, nil
  if p:root() ~= 0 then
    self.h = assert(records.open(p, BANK, BANK_SRC))
    for id, row in self.h:scan() do self.rows_c[id] = { bal = row.bal, touch = row.touch } end
  end
  self:rollback(p)
  for k = 1, 2 do
    if self.rd[k] and self.rd[k].pending then
      -- opened on the crash image before this writer: the state it recovered
      self.rd[k].pending = nil
      self:took(p, k, "a reader opened before the writer recovered")
    end
  end
  self:verify_all(p, "after an open")
end

-- The power loss: the readers end with the writer.
function Rd:crash()
  for k = 1, 2 do
    if self.rd[k] then self.rd[k].p:close() end
    self.rd[k] = nil
  end
end
Rd.finish = Rd.crash

function Rd:before_reopen(path, rng)
  if rng:below(2) == 0 then
    self.rd[1] = { p = assert(mp.open(path, { readonly = true })), pending = true }
    self.counters.crash_readers = self.counters.crash_readers + 1
  end
end

function Rd:setup(p)
  self.rows_w = {}
  assert(p:transaction(function()
    assert(catalog.open(p))
    self.h = assert(records.open(p, BANK, BANK_SRC))
    local id = assert(self.h:insert { bal = BANK_TOTAL, touch = 0 })
    self.rows_w[id] = { bal = BANK_TOTAL, touch = 0 }
    return true
  end))
  self:commit()
  return "setup: one account"
end

-- One change that keeps the sum, inside a transaction.
function Rd:op(rng)
  local ids = sorted_keys(self.rows_w)
  local h, rows = self.h, self.rows_w
  local r = rng:below(100)
  if (r < 25 or #ids < 2) and #ids < BANK_MAX_ROWS then
    local from = ids[1 + rng:below(#ids)]
    local n = rng:below(8) == 0 and rng:int(10, 40) or 1
    for _ = 1, math.min(n, BANK_MAX_ROWS - #ids) do
      local amt = rng:below(rows[from].bal // 2 + 1)
      local new = assert(h:insert { bal = amt, touch = 0 })
      assert(rows[new] == nil and self.rows_c[new] == nil, "insert gave a live or just deleted id")
      rows[new] = { bal = amt, touch = 0 }
      rows[from].bal = rows[from].bal - amt
      assert(h:set(from, "bal", rows[from].bal))
    end
    self.counters.splits = self.counters.splits + 1
    return "split"
  end
  local a = ids[1 + rng:below(#ids)]
  local b = ids[1 + rng:below(#ids)]
  if a == b then return "transfer to itself (none)" end
  if r < 40 then
    rows[b].bal = rows[b].bal + rows[a].bal
    assert(h:update(b, { bal = rows[b].bal }))
    assert(h:delete(a))
    rows[a] = nil
    self.counters.merges = self.counters.merges + 1
    return "merge"
  end
  local amt = rng:below(rows[a].bal + 1)
  rows[a].bal, rows[b].bal = rows[a].bal - amt, rows[b].bal + amt
  assert(h:set(a, "bal", rows[a].bal))
  assert(h:update(b, { bal = rows[b].bal, touch = rows[b].touch }))
  self.counters.transfers = self.counters.transfers + 1
  return "transfer"
end

function Rd:step(p, rng, variant)
  self:readers_step(p, rng)
  if not self.h then return self:setup(p) end
  local r = rng:below(100)
  if r < 60 or variant then
    local n = 1 + rng:below(4)
    local tx = assert(p:begin())
    local what_ = {}
    for i = 1, n do what_[i] = self:op(rng) end
    if variant then self:op(rng) end
    if rng:below(6) == 0 and not variant then
      assert(tx:rollback())
      self:rollback(p)
      return "transaction of " .. n .. " changes, rolled back", "rollback"
    end
    assert(tx:commit())
    self:commit()
    return "transaction: " .. concat(what_, ", ")
  elseif r < 70 then
    local ok, err = pcall(p.transaction, p, function()
      self:op(rng)
      error("planned failure", 0)
    end)
    assert(not ok and err == "planned failure", tostring(err))
    self:rollback(p)
    return "transaction raising", "rollback"
  end
  local ids = sorted_keys(self.rows_w)
  local id = ids[1 + rng:below(#ids)]
  local v = rng:below(1 << 32)
  assert(self.h:set(id, "touch", v))
  self.rows_w[id].touch = v
  self:commit()
  self.counters.touches = self.counters.touches + 1
  return "touch"
end

M.readers = readers_subject

---------------------------------------------------------------------------
-- heap: mappedpages.heap, two heaps in one file, values of every kind
-- (empty, small in the slab, large in regular pages, now and then one
-- large enough for index pages) put, replaced (in place and with a new
-- ref) and freed, alone and many in one transaction (committed, rolled
-- back, raising inside pager:transaction), now and then a drop. What a
-- user observes: each heap's refs with each value's size and CRC32C, read
-- back whole, so a large value's regular pages written before the commit
-- that links them in are checked in every image; check() runs the
-- catalog's check() and each heap's check().

local heap = try_require("mappedpages.heap")

local function heap_state_of(name, list)
  local t = { fmt("heap %s: %d values", name, #list) }
  for _, e in ipairs(list) do t[#t + 1] = fmt("  %d: %d %08x", e[1], e[2], e[3]) end
  return concat(t, "\n")
end

local function heap_state(p)
  if p:root() == 0 then return "no catalog" end
  local cat, msg, code = catalog.open(p)
  if not cat then return "catalog.open: " .. tostring(code) .. ": " .. tostring(msg) end
  local out = {}
  for name, kind in cat:entries() do
    if kind == "heap" then
      local h, m, c = heap.open(p, name)
      if not h then
        out[#out + 1] = fmt("heap %s: open: %s: %s", name, tostring(c), tostring(m))
      else
        local list = {}
        for ref, size in h:values() do list[#list + 1] = { ref, size, mp.crc32c(h:get(ref)) } end
        out[#out + 1] = heap_state_of(name, list)
      end
    else
      out[#out + 1] = "unknown kind " .. kind
    end
  end
  return concat(out, "\n")
end

local function heap_check(p)
  if p:root() == 0 then return true end
  local cat, msg = catalog.open(p)
  if not cat then return false, msg end
  local ok, problems = cat:check()
  if not ok then return false, problems end
  problems = {}
  for name, kind in cat:entries() do
    if kind == "heap" then
      local h, m = heap.open(p, name)
      if not h then
        problems[#problems + 1] = name .. ": " .. tostring(m)
      else
        local good, why = h:check()
        if not good then problems[#problems + 1] = name .. ": check(): " .. text_of(why) end
      end
    end
  end
  return #problems == 0, problems
end

local heap_subject = { name = "heap", page_size = 1024, state = heap_state, check = heap_check }

function heap_subject.available() return catalog ~= nil and heap ~= nil end

local Hp = {}
Hp.__index = Hp

local HEAP_NAMES = { "blobs", "docs" }

function heap_subject.new()
  return setmetatable({ counters = { puts = 0, large = 0, indexed = 0, replaces = 0, frees = 0,
                                     drops = 0, max_values = 0 } }, Hp)
end

-- {name = {ref = {size, crc}}}
local function copy_heaps(t)
  local c = {}
  for name, vals in pairs(t) do c[name] = copy_map(vals) end
  return c
end

function Hp:attach(p)
  self.heaps_c = {}
  self.cat = nil
  if p:root() ~= 0 then
    self.cat = assert(catalog.open(p))
    for name, kind in self.cat:entries() do
      if kind == "heap" then
        local h = assert(heap.open(p, name))
        local vals = {}
        for ref, size in h:values() do vals[ref] = { size, mp.crc32c(h:get(ref)) } end
        self.heaps_c[name] = vals
      end
    end
  end
  self:rollback(p)
end

function Hp:handles(p)
  self.h = {}
  for name in pairs(self.heaps_w) do self.h[name] = assert(heap.open(p, name)) end
end

function Hp:commit()
  self.heaps_c = copy_heaps(self.heaps_w)
  for _, vals in pairs(self.heaps_c) do
    local n = 0
    for _ in pairs(vals) do n = n + 1 end
    if n > self.counters.max_values then self.counters.max_values = n end
  end
end

function Hp:rollback(p)
  self.heaps_w = copy_heaps(self.heaps_c)
  if p then self:handles(p) end
end

function Hp:expect()
  if not self.cat then return "no catalog" end
  local out = {}
  for _, name in ipairs(sorted_keys(self.heaps_c)) do
    local vals = self.heaps_c[name]
    local list = {}
    for _, ref in ipairs(sorted_keys(vals)) do list[#list + 1] = { ref, vals[ref][1], vals[ref][2] } end
    out[#out + 1] = heap_state_of(name, list)
  end
  return concat(out, "\n")
end

function Hp:setup(p)
  self.heaps_w, self.h = {}, {}
  assert(p:transaction(function()
    self.cat = assert(catalog.open(p))
    for _, name in ipairs(HEAP_NAMES) do
      self.h[name] = assert(heap.open(p, name))
      self.heaps_w[name] = {}
    end
    return true
  end))
  self:commit()
  return "setup: " .. #HEAP_NAMES .. " heaps"
end

-- A value: empty, small, a few pages, or (rarely) enough for index pages.
local function heap_value(rng)
  local r = rng:below(100)
  local n
  if r < 5 then n = 0
  elseif r < 45 then n = rng:int(1, 900)
  elseif r < 95 then n = rng:int(1000, 12000)
  else n = rng:int(240 * 1024, 260 * 1024) end
  local seed = rng:next()
  local unit = string.pack("<i8", seed) .. "0123456789abcdef"
  local s = string.rep(unit, n // #unit + 1):sub(1, n)
  if n > 0 then s = string.pack("<i8", rng:next()):sub(1, math.min(8, n)) .. s:sub(9) end
  return s
end

function Hp:op(p, rng, inside)
  local names = sorted_keys(self.heaps_w)
  if #names == 0 then
    local name = HEAP_NAMES[1 + rng:below(#HEAP_NAMES)]
    self.h[name] = assert(heap.open(p, name))
    self.heaps_w[name] = {}
    return "create " .. name
  end
  local name = names[1 + rng:below(#names)]
  local vals, h = self.heaps_w[name], self.h[name]
  local refs = sorted_keys(vals)
  local ref = #refs > 0 and refs[1 + rng:below(#refs)] or nil
  local r = rng:below(100)
  if r < 2 and not inside then
    assert(heap.drop(p, name))
    self.heaps_w[name], self.h[name] = nil, nil
    self.counters.drops = self.counters.drops + 1
    return "drop " .. name
  end
  if ref == nil or r < 45 or (#refs > 40 and r >= 80) then
    if #refs > 40 and ref then
      assert(h:free(ref))
      vals[ref] = nil
      self.counters.frees = self.counters.frees + 1
      return "free"
    end
    local v = heap_value(rng)
    local new = assert(h:put(v))
    assert(vals[new] == nil, "put gave a live ref")
    assert(self.heaps_c[name] == nil or self.heaps_c[name][new] == nil,
      "put gave a ref freed in this transaction")
    vals[new] = { #v, mp.crc32c(v) }
    self.counters.puts = self.counters.puts + 1
    if new & 1 == 1 then self.counters.large = self.counters.large + 1 end
    if #v > 200 * 1024 then self.counters.indexed = self.counters.indexed + 1 end
    return "put " .. #v
  end
  if r < 65 then
    local v = rng:below(3) == 0 and heap_value(rng):sub(1, vals[ref][1]) or heap_value(rng)
    if #v < vals[ref][1] and rng:below(2) == 0 then v = v .. string.rep("p", vals[ref][1] - #v) end
    local new = assert(h:replace(ref, v))
    vals[ref] = nil
    vals[new] = { #v, mp.crc32c(v) }
    self.counters.replaces = self.counters.replaces + 1
    return "replace " .. #v
  end
  if r < 85 then
    assert(h:free(ref))
    vals[ref] = nil
    assert(not pcall(h.get, h, ref), "a freed ref still reads")
    self.counters.frees = self.counters.frees + 1
    return "free"
  end
  -- reads agree with the model; misuse changes nothing
  local got = h:get(ref)
  assert(#got == vals[ref][1] and mp.crc32c(got) == vals[ref][2], "get disagrees with the model")
  if #got > 2 then assert(h:get(ref, 1, #got - 2) == got:sub(2, -2), "a range disagrees") end
  assert(not pcall(h.put, h, 42), "a number value did not raise")
  return "get", "nocommit"
end

function Hp:step(p, rng, variant)
  if not self.cat then return self:setup(p) end
  local r = rng:below(100)
  if r < 35 or variant then
    local n = 1 + rng:below(8)
    local tx = assert(p:begin())
    local what_ = {}
    for i = 1, n do what_[i] = (self:op(p, rng, true)) end
    if variant then self:op(p, rng, true) end
    if rng:below(5) == 0 and not variant then
      assert(tx:rollback())
      self:rollback(p)
      return "transaction of " .. n .. " ops, rolled back", "rollback"
    end
    assert(tx:commit())
    self:commit()
    return "transaction: " .. concat(what_, ", ")
  elseif r < 45 then
    local n = 1 + rng:below(5)
    local ok, err = pcall(p.transaction, p, function()
      for _ = 1, n do self:op(p, rng, true) end
      error("planned failure", 0)
    end)
    assert(not ok and err == "planned failure", tostring(err))
    self:rollback(p)
    return "transaction(" .. n .. " ops) raising", "rollback"
  else
    local desc, tag = self:op(p, rng, false)
    if tag ~= "nocommit" then self:commit() end
    return desc, tag
  end
end

M.heap = heap_subject

-- btree: mappedpages.btree on 1 KiB pages, keys with a long common prefix
-- (long separators: the tree reaches three levels within a few hundred
-- keys), values mostly small, some large (the tree's heap), put, replace
-- and delete alone and many in one transaction (committed, rolled back,
-- raising inside pager:transaction), now and then a drop. What a user
-- observes: every key with a CRC32C of its value, in key order; check()
-- runs the catalog's and the tree's check() and compares count() with a
-- scan both ways.

local btree = try_require("mappedpages.btree")
local BT_NAME = "tree"
local BT_PREFIX = string.rep("k", 30)

local function bt_state_of(list)
  local t = { fmt("tree: %d keys", #list) }
  for _, e in ipairs(list) do t[#t + 1] = fmt("  %s %08x %d", e.k:sub(#BT_PREFIX + 1), mp.crc32c(e.v), #e.v) end
  return concat(t, "\n")
end

local function btree_state(p)
  if p:root() == 0 then return "no catalog" end
  local cat, msg, code = catalog.open(p)
  if not cat then return "catalog.open: " .. tostring(code) .. ": " .. tostring(msg) end
  local entry = cat:get(BT_NAME)
  if not entry then return "no tree" end
  local t, m, c = btree.open(p, BT_NAME)
  if not t then return "btree.open: " .. tostring(c) .. ": " .. tostring(m) end
  local list = {}
  for k, v in t:range() do list[#list + 1] = { k = k, v = v } end
  return bt_state_of(list)
end

local function btree_check(p)
  if p:root() == 0 then return true end
  local cat, msg = catalog.open(p)
  if not cat then return false, msg end
  local ok, problems = cat:check()
  if not ok then return false, problems end
  if not cat:get(BT_NAME) then return true end
  local t, m = btree.open(p, BT_NAME)
  if not t then return false, m end
  local good, why = t:check()
  if not good then return false, "check(): " .. text_of(why) end
  local n, r = 0, 0
  for _ in t:range() do n = n + 1 end
  for _ in t:range(nil, nil, { reverse = true }) do r = r + 1 end
  if n ~= t:count() or r ~= n then return false, fmt("count() %d, range %d, reverse %d", t:count(), n, r) end
  return true
end

local btree_subject = { name = "btree", page_size = 1024, state = btree_state, check = btree_check }

function btree_subject.available() return catalog ~= nil and btree ~= nil end

local BT = {}
BT.__index = BT

function btree_subject.new()
  return setmetatable({ counters = { puts = 0, deletes = 0, large = 0, drops = 0, max_keys = 0,
                                     max_height = 0 } }, BT)
end

function BT:attach(p)
  self.kv_c, self.exists_c = {}, false
  self.cat = nil
  if p:root() ~= 0 then
    self.cat = assert(catalog.open(p))
    if self.cat:get(BT_NAME) then
      local t = assert(btree.open(p, BT_NAME))
      for k, v in t:range() do self.kv_c[k] = v end
      self.exists_c = true
    end
  end
  self:rollback(p)
end

function BT:commit()
  self.kv_c, self.exists_c = copy_map(self.kv_w), self.exists_w
  local n = 0
  for _ in pairs(self.kv_c) do n = n + 1 end
  if n > self.counters.max_keys then self.counters.max_keys = n end
  if self.t and self.exists_w then
    local h = self.t:stats().height
    if h > self.counters.max_height then self.counters.max_height = h end
  end
end

function BT:rollback(p)
  self.kv_w, self.exists_w = copy_map(self.kv_c), self.exists_c
  self.t = nil
  if p and self.exists_w then self.t = assert(btree.open(p, BT_NAME)) end
end

function BT:expect()
  if not self.cat then return "no catalog" end
  if not self.exists_c then return "no tree" end
  local list = {}
  for _, k in ipairs(sorted_keys(self.kv_c)) do list[#list + 1] = { k = k, v = self.kv_c[k] } end
  return bt_state_of(list)
end

function BT:setup(p)
  assert(p:transaction(function()
    self.cat = assert(catalog.open(p))
    self.t = assert(btree.open(p, BT_NAME))
    return true
  end))
  self.kv_w, self.exists_w = {}, true
  self:commit()
  return "setup: a tree"
end

-- Values: small ones in the leaves, larger ones in the tree's heap (up to
-- 800 bytes: the heap's slab, protected pages). The subject btree_large
-- also puts values of up to 2,900 bytes, which the heap keeps in regular
-- pages written before the commit: run it by name (CRASH_LUA_SUBJECTS=
-- btree_large); it is not in the default list while it finds images whose
-- new root reached the disk and a large value's page did not.
local function bt_value(rng, large)
  local c = rng:below(100)
  if c < 75 then return string.rep(string.char(97 + rng:below(26)), rng:below(20)) end
  if c < 93 then return string.rep("m", 20 + rng:below(300)) end
  return string.rep("L", 400 + rng:below(large and 2500 or 400))
end

function BT:op(p, rng, inside)
  if not self.exists_w then
    self.t = assert(btree.open(p, BT_NAME))
    self.exists_w, self.kv_w = true, {}
    return "create"
  end
  local t, kv = self.t, self.kv_w
  local r = rng:below(100)
  if r < 1 and not inside then
    assert(btree.drop(p, BT_NAME))
    self.exists_w, self.kv_w, self.t = false, {}, nil
    self.counters.drops = self.counters.drops + 1
    return "drop"
  end
  local phase = (self.counters.puts // 400) % 3       -- grow, grow, shrink
  local k = BT_PREFIX .. fmt("%05d", rng:below(1500))
  if r < (phase < 2 and 70 or 35) then
    local v = bt_value(rng, self.large)
    assert(t:put(k, v))
    kv[k] = v
    self.counters.puts = self.counters.puts + 1
    if #v > 300 then self.counters.large = self.counters.large + 1 end
    assert(t:get(k) == v, "get disagrees with put")
    return "put"
  end
  if r < 97 then
    assert(t:delete(k) == (kv[k] ~= nil), "delete disagrees with the model")
    kv[k] = nil
    self.counters.deletes = self.counters.deletes + 1
    return "delete"
  end
  -- reads agree with the model; misuse changes nothing
  assert(t:get(k) == kv[k], "get disagrees with the model")
  assert(not pcall(t.put, t, "", "x"), "an empty key did not raise")
  return "read", "nocommit"
end

function BT:step(p, rng, variant)
  if not self.cat then return self:setup(p) end
  local r = rng:below(100)
  if r < 45 or variant then
    local n = 1 + rng:below(16)
    local tx = assert(p:begin())
    local what_ = {}
    for i = 1, n do what_[i] = (self:op(p, rng, true)) end
    if variant then self:op(p, rng, true) end
    if rng:below(5) == 0 and not variant then
      assert(tx:rollback())
      self:rollback(p)
      return "transaction of " .. n .. " ops, rolled back", "rollback"
    end
    assert(tx:commit())
    self:commit()
    return "transaction: " .. concat(what_, ", ")
  elseif r < 55 then
    local n = 1 + rng:below(8)
    local ok, err = pcall(p.transaction, p, function()
      for _ = 1, n do self:op(p, rng, true) end
      error("planned failure", 0)
    end)
    assert(not ok and err == "planned failure", tostring(err))
    self:rollback(p)
    return "transaction(" .. n .. " ops) raising", "rollback"
  else
    local desc, tag = self:op(p, rng, false)
    if tag ~= "nocommit" then self:commit() end
    return desc, tag
  end
end

M.btree = btree_subject

local btree_large = setmetatable({ name = "btree_large" }, { __index = btree_subject })
function btree_large.new()
  local inst = btree_subject.new()
  inst.large = true
  return inst
end
M.btree_large = btree_large

---------------------------------------------------------------------------
-- which subjects can run here
---------------------------------------------------------------------------
-- which subjects can run here

local order = { "core", "catalog", "slab", "buddy", "arena", "allocators", "records", "records_indexed",
                "readers", "heap", "btree" }

--- Names of the subjects whose modules load (besides the planted ones).
function M.available()
  local t = {}
  for _, name in ipairs(order) do
    if M[name] and (not M[name].available or M[name].available()) then t[#t + 1] = name end
  end
  return t
end

--- Register a subject (used by the module subjects below).
function M.register(s)
  M[s.name] = s
  order[#order + 1] = s.name
end

return M
