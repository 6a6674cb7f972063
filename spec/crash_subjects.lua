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
-- Subjects for the Lua modules (catalog, slab, examples) are added below
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

---------------------------------------------------------------------------
-- which subjects can run here

local order = { "core", "catalog" }

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
