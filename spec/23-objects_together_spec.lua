-- 23-objects_together: every kind of named object in one file, changed
-- together in transactions.
--
-- A slab, an arena, a buddy allocator, the catalog and raw protected pages
-- share one pager. Random transactions change several of them; some roll
-- back half way (explicitly, or by an error inside pager:transaction), and
-- then every object must show exactly the state before the transaction,
-- object by object, against a model; committed ones must show every
-- change, also after a reopen. Each object's check() runs throughout.

local H = require "helpers"
local mp = H.mp

package.path = "examples/?.lua;" .. package.path
local arena = require "arena"
local buddy = require "buddy"

local P = 4096

-- The model: contents by ref for each allocator, names in the catalog,
-- raw protected pages' first bytes.
local function new_model()
  return {slab = {}, arena = {}, buddy = {}, names = {}, raw = {}}
end

local function copy(t)
  local out = {}
  for k, v in pairs(t) do out[k] = type(v) == "table" and copy(v) or v end
  return out
end

local function open_all(p)
  return {
    slab = assert(mp.slab.open(p, "slab")),
    arena = assert(arena.open(p, "arena")),
    buddy = assert(buddy.open(p, "buddy")),
    cat = assert(mp.catalog.open(p)),
  }
end

local function assert_checks(objs)
  for _, k in ipairs({"slab", "arena", "buddy", "cat"}) do
    local ok, problems = objs[k]:check()
    assert(ok, k .. ": " .. table.concat(problems or {}, "; "))
  end
end

-- Every object against the model.
local function assert_model(p, objs, m)
  for _, k in ipairs({"slab", "arena", "buddy"}) do
    local o = objs[k]
    for ref, s in pairs(m[k]) do
      assert.equal(s, o:read(ref, 0, #s), k .. " ref " .. ref)
    end
  end
  local n = 0
  for ref in objs.slab:objects() do
    n = n + 1
    assert.is_truthy(m.slab[ref], "slab holds an object the model does not: " .. ref)
  end
  local want = 0
  for _ in pairs(m.slab) do want = want + 1 end
  assert.equal(want, n, "slab objects")
  local buddy_n = 0
  for _ in pairs(m.buddy) do buddy_n = buddy_n + 1 end
  assert.equal(buddy_n, objs.buddy:stats().objects, "buddy blocks")
  local arena_n = 0
  for _ in pairs(m.arena) do arena_n = arena_n + 1 end
  assert.equal(arena_n, objs.arena:stats().objects, "arena objects")
  local names = {}
  for name, kind in objs.cat:entries() do
    if kind == "user" then names[name] = true end
  end
  assert.same(m.names, names)
  for pid, s in pairs(m.raw) do
    assert.equal(s, p:protected(pid):read(0, #s), "raw pid " .. pid)
  end
  assert_checks(objs)
end

-- One random change to one object, applied to the model too.
local function step(p, objs, m, r, tag)
  local what = r(6)
  local text = ("%s-%d"):format(tag, r(1000000))
  if what == 1 then
    local ref = assert(objs.slab:alloc(#text + r(40)))
    objs.slab:write(ref, 0, text)
    m.slab[ref] = text
  elseif what == 2 then
    local ref = next(m.slab)
    if ref then objs.slab:free(ref) m.slab[ref] = nil end
  elseif what == 3 then
    if r(10) == 1 then
      objs.arena:reset()
      m.arena = {}
    else
      local ref = assert(objs.arena:alloc(#text + r(20)))
      objs.arena:write(ref, 0, text)
      m.arena[ref] = text
    end
  elseif what == 4 then
    local ref = next(m.buddy)
    if ref and r(2) == 1 then
      objs.buddy:free(ref)
      m.buddy[ref] = nil
    else
      ref = assert(objs.buddy:alloc(#text + r(200)))
      objs.buddy:write(ref, 0, text)
      m.buddy[ref] = text
    end
  elseif what == 5 then
    local name = "user " .. r(30)
    if m.names[name] then
      objs.cat:remove(name)
      m.names[name] = nil
    else
      objs.cat:create(name, "user")
      m.names[name] = true
    end
  else
    local pid = next(m.raw)
    if pid and r(3) == 1 then
      p:free_protected(pid)
      m.raw[pid] = nil
    else
      pid = pid or p:alloc_protected()
      local w = p:write_protected(pid)
      w:write(0, text)
      w:commit()
      m.raw[pid] = text
    end
  end
end

describe("objects of every kind in one file", function()
  after_each(function() H.cleanup() end)

  it("roll back together in the middle of a transaction, object by object", function()
    local p = H.create({page_size = P})
    local objs = open_all(p)
    local m = new_model()
    local r = H.rng(23)
    for i = 1, 60 do step(p, objs, m, r, "setup" .. i) end
    assert_model(p, objs, m)
    for round = 1, 40 do
      local before = copy(m)
      local tx = p:begin()
      for i = 1, r(12) do step(p, objs, m, r, ("r%d.%d"):format(round, i)) end
      assert_model(p, objs, m)            -- inside: the transaction's own state
      tx:rollback()
      m = before
      assert_model(p, objs, m)            -- after: exactly the state before
    end
  end)

  it("roll back together when pager:transaction's function raises", function()
    local p = H.create({page_size = P})
    local objs = open_all(p)
    local m = new_model()
    local r = H.rng(5)
    for i = 1, 30 do step(p, objs, m, r, "setup" .. i) end
    for round = 1, 20 do
      local before = copy(m)
      local ok, err = pcall(p.transaction, p, function()
        for i = 1, r(10) do step(p, objs, m, r, ("e%d.%d"):format(round, i)) end
        error("stop here")
      end)
      assert.is_false(ok)
      assert.matches("stop here", err)
      m = before
      assert_model(p, objs, m)
    end
  end)

  it("commit together and survive a reopen", function()
    local p, path = H.create({page_size = P})
    local objs = open_all(p)
    local m = new_model()
    local r = H.rng(77)
    for round = 1, 30 do
      local before = copy(m)
      local tx = p:begin()
      for i = 1, r(10) do step(p, objs, m, r, ("c%d.%d"):format(round, i)) end
      if r(3) == 1 then
        tx:rollback()
        m = before
      else
        assert(tx:commit())
      end
      if r(5) == 1 then
        p = H.reopen(p, path)
        objs = open_all(p)
      end
      assert_model(p, objs, m)
    end
    p = H.reopen(p, path)
    assert_model(p, open_all(p), m)
  end)

  it("keep every handle coherent after a failed commit", function()
    local p = H.create({page_size = P})
    local objs = open_all(p)
    local m = new_model()
    local r = H.rng(9)
    for i = 1, 20 do step(p, objs, m, r, "setup" .. i) end
    local before = copy(m)
    local tx = p:begin()
    for i = 1, 8 do step(p, objs, m, r, "lost" .. i) end
    local core = require "mappedpages.core"
    core._inject_fault("barrier", "eio")
    local ok, msg, code = tx:commit()
    core._inject_fault(nil)
    H.fails_with("io", ok, msg, code)
    m = before
    -- the pager is poisoned, but every object reads the state it rolled
    -- back to, and refuses nothing it can still answer
    assert_model(p, objs, m)
  end)
end)
