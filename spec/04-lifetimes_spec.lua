-- spec/04-lifetimes_spec.lua -- closing, garbage collection, use after
-- close or free, file locks (in this process and another one) and
-- read-only pagers.

local H = require "helpers"
local mp = H.mp

local function setup()
  local p, path = H.create({ page_size = 1024 })
  local ids = p:alloc_bulk(4)
  for _, id in ipairs(ids) do H.stamp(p, id) end
  p:set_root(21)
  return p, path, ids
end

describe("a closed pager", function()
  after_each(H.cleanup)

  local function pager_calls(id)
    return {
      { "alloc" }, { "free", id }, { "alloc_bulk", 2 }, { "free_bulk", { id } },
      { "page", id }, { "page_size" }, { "page_count" }, { "free_count" },
      { "info" }, { "begin" }, { "transaction", function() end },
      { "set_root", 1 }, { "root" },
    }
  end

  it("raises on every method, saying that it is closed", function()
    local p, path, ids = setup()
    local st = H.state(p)
    p:close()
    for _, c in ipairs(pager_calls(ids[1])) do
      local name = c[1]
      H.raises_with("closed", p[name], p, H.unpack(c, 2))
    end
    H.raises_with("closed", function() for _ in p:pages() do end end)
    p = H.open(path)
    assert.are.same(st, H.state(p))
  end)

  it("can be closed again without error", function()
    local p = setup()
    p:close()
    p:close()
    p:close()
  end)

  it("still prints, saying it is closed", function()
    local p = setup()
    p:close()
    local s = tostring(p)
    assert.is_truthy(s:lower():find("closed", 1, true), s)
  end)

  it("releases its lock, so the file opens again", function()
    local p, path = setup()
    p:close()
    local q = H.open(path)
    assert.are.equal(21, q:root())
  end)

  it("closes at the end of a <close> scope", function()
    local path = H.path()
    local keep
    do
      local p <close> = assert(mp.create(path, { page_size = 1024 }))
      p:set_root(3)
      keep = p
    end
    H.raises_with("closed", function() keep:alloc() end)
    local q = H.open(path)
    assert.are.equal(3, q:root())
  end)

  it("can be closed while its pages() iterator is running, which then raises", function()
    local p = setup()
    local ok = pcall(function()
      for _ in p:pages() do p:close() end
    end)
    assert.is_false(ok)
  end)
end)

describe("views and transactions of a closed pager", function()
  after_each(H.cleanup)

  it("raise on every view method", function()
    local p, _, ids = setup()
    local v = p:page(ids[1])
    p:close()
    H.raises_with("closed", function() v:read() end)
    H.raises_with("closed", function() v:read(0, 4) end)
    H.raises_with("closed", function() v:write(0, "x") end)
    H.raises_with("closed", function() v:pack(0, "<i4", 1) end)
    H.raises_with("closed", function() v:unpack(0, "<i4") end)
    H.raises_with("closed", function() v:fill(0) end)
    H.raises_with("closed", function() v:id() end)
    H.raises_with("closed", function() return #v end)
  end)

  it("still print without raising", function()
    local p, _, ids = setup()
    local v = p:page(ids[1])
    local tx = p:begin()
    p:close()
    assert.are.equal("string", type(tostring(v)))
    assert.are.equal("string", type(tostring(tx)))
  end)

  it("make a transaction raise on commit and rollback, its changes rolled back", function()
    local p, path = setup()
    local st = H.state(p)
    local tx = p:begin()
    p:alloc_bulk(3)
    p:close()
    H.raises(function() tx:commit() end)
    H.raises(function() tx:rollback() end)
    p = H.open(path)
    assert.are.same(st, H.state(p))
  end)

  it("leave the file untouched when a dead view is written", function()
    local p, path, ids = setup()
    local v = p:page(ids[1])
    p:close()
    local before = H.read_file(path)
    H.raises(function() v:write(0, "overwrite") end)
    H.raises(function() v:fill(0xFF) end)
    assert.are.equal(before, H.read_file(path))
  end)
end)

describe("views of freed pages", function()
  after_each(H.cleanup)

  it("raise when the page has been freed", function()
    local p, _, ids = setup()
    local v = p:page(ids[2])
    p:free(ids[2])
    H.raises(function() v:read() end)
    H.raises(function() v:write(0, "x") end)
    H.raises(function() v:unpack(0, "<i4") end)
  end)

  it("raise when the page was freed inside the open transaction", function()
    local p, _, ids = setup()
    local v = p:page(ids[2])
    local tx = p:begin()
    p:free(ids[2])
    H.raises(function() v:read() end)
    H.raises(function() v:write(0, "x") end)
    tx:commit()
  end)

  it("keep raising after the same id is allocated again, without touching the new page", function()
    local p, _, ids = setup()
    if p:free_count() > 0 then p:alloc_bulk(p:free_count()) end
    local old = p:page(ids[3])
    p:free(ids[3])
    assert.are.equal(ids[3], p:alloc())   -- the only free page
    local new = p:page(ids[3])
    new:write(0, "new owner")
    H.raises(function() old:read() end)
    H.raises(function() old:write(0, "stale") end)
    H.raises(function() old:fill(0) end)
    assert.are.equal("new owner", new:read(0, 9))
  end)

  it("raise when the page's allocation was rolled back", function()
    local p = setup()
    local tx = p:begin()
    local a = p:alloc()
    local v = p:page(a)
    tx:rollback()
    H.raises(function() v:write(0, "x") end)
  end)
end)

describe("garbage collection", function()
  after_each(H.cleanup)

  it("keeps a pager alive while one of its views is reachable", function()
    local path = H.path()
    local v
    do
      local p = assert(mp.create(path, { page_size = 1024 }))
      v = p:page(p:alloc())
    end
    collectgarbage()
    collectgarbage()
    v:write(0, "still here")
    assert.are.equal("still here", v:read(0, 10))
    v = nil  -- luacheck: ignore 311
    collectgarbage()
    collectgarbage()
    H.open(path)                           -- the lock went with the pager
  end)

  it("keeps a pager alive while its transaction is reachable", function()
    local path = H.path()
    local tx
    do
      local p = assert(mp.create(path, { page_size = 1024 }))
      tx = p:begin()
      p:set_root(66)
    end
    collectgarbage()
    collectgarbage()
    tx:commit()
    tx = nil  -- luacheck: ignore 311
    collectgarbage()
    collectgarbage()
    local q = H.open(path)
    assert.are.equal(66, q:root())
  end)

  it("closes an abandoned pager, releasing its lock and rolling back its open transaction", function()
    local path = H.path()
    do
      local p = assert(mp.create(path, { page_size = 1024 }))
      p:set_root(1)
      p:begin()
      p:set_root(2)
    end
    collectgarbage()
    collectgarbage()
    local q = H.open(path)
    assert.are.equal(1, q:root())
  end)

  -- luacheck: push ignore 311 241 211 231
  it("never crashes, whatever order abandoned pagers, views and transactions are collected in", function()
    local paths = {}
    for round = 1, 40 do
      local path = H.path()
      paths[#paths + 1] = path
      local p = assert(mp.create(path, { page_size = 1024 }))
      local ids = p:alloc_bulk(3)
      local views = { p:page(ids[1]), p:page(ids[2]), p:page(ids[1]) }
      local iter = p:pages()
      local tx = p:begin()
      p:alloc()
      local kind = round % 5
      if kind == 0 then p:close()
      elseif kind == 1 then tx:commit()
      elseif kind == 2 then tx:rollback(); p:close()
      elseif kind == 3 then p:free(ids[2])      -- a view of a freed page
      end
      if round % 2 == 0 then views[2] = nil end
      p, views, tx, iter = nil, nil, nil, nil
      if round % 3 == 0 then collectgarbage() end
    end
    collectgarbage()
    collectgarbage()
    for _, path in ipairs(paths) do H.open(path):close() end
  end)
  -- luacheck: pop
end)

describe("the writer lock within one process", function()
  after_each(H.cleanup)

  it("refuses a second writer with 'locked' and leaves the first working", function()
    local p, path = setup()
    local msg = H.fails_with("locked", mp.open(path))
    assert.is_true(#msg > 0)
    local id = p:alloc()
    H.stamp(p, id)
    assert.is_true(H.stamp_ok(p, id))
    p:close()
    H.open(path)
  end)

  it("admits a reader while a writer is open, and the writer keeps working", function()
    local p, path, ids = setup()
    local r = H.open(path, { readonly = true })
    assert.are.equal(21, r:root())
    assert.is_true(H.stamp_ok(r, ids[1]))
    local id = p:alloc()
    H.stamp(p, id)
    assert.is_true(H.stamp_ok(p, id))
    r:close()
    p:close()
  end)

  it("admits a writer while a reader is open, and refuses a second writer", function()
    local p, path = setup()
    p:close()
    local r = H.open(path, { readonly = true })
    local w = H.open(path)
    H.fails_with("locked", mp.open(path))
    assert.is_true(w:set_root(22))
    assert.are.equal(21, r:root())          -- the reader keeps its snapshot
    r:close()
    w:close()
  end)

  it("lets two read-only pagers share the file", function()
    local p, path, ids = setup()
    p:close()
    local r1 = H.open(path, { readonly = true })
    local r2 = H.open(path, { readonly = true })
    assert.are.equal(21, r1:root())
    assert.are.equal(21, r2:root())
    assert.is_true(H.stamp_ok(r2, ids[1]))
    r1:close()
    assert.is_true(H.stamp_ok(r2, ids[2]))
  end)
end)

describe("the writer lock across processes", function()
  after_each(H.cleanup)

  it("refuses a writer in another process while this one writes, admits readers, and the writer after close", function()
    local p, path = setup()
    assert.are.equal("locked", H.child_open(path))
    assert.are.equal("ok", H.child_open(path, true))
    p:close()
    assert.are.equal("ok", H.child_open(path))
  end)

  it("admits a writer and readers in another process while this one reads", function()
    local p, path = setup()
    p:close()
    local r = H.open(path, { readonly = true })
    assert.are.equal("ok", H.child_open(path))
    assert.are.equal("ok", H.child_open(path, true))
    r:close()
  end)

  it("keeps the lock when another descriptor of the same file is closed", function()
    local p, path = setup()
    local f = assert(io.open(path, "rb"))
    f:read(10)
    f:close()
    assert.are.equal("locked", H.child_open(path))
    p:close()
  end)

  it("keeps the lock after a second open in this process was refused", function()
    local p, path = setup()
    H.fails_with("locked", mp.open(path))
    H.open(path, { readonly = true }):close()
    assert.are.equal("locked", H.child_open(path))
    p:close()
  end)
end)

describe("a read-only pager", function()
  after_each(H.cleanup)

  local function ro_setup()
    local p, path, ids = setup()
    p:close()
    local r = H.open(path, { readonly = true })
    return r, path, ids
  end

  it("says it is read-only", function()
    local r = ro_setup()
    assert.is_true(r:info().readonly)
  end)

  it("reads pages, the root and the page list", function()
    local r, _, ids = ro_setup()
    assert.are.equal(21, r:root())
    assert.are.same(ids, H.page_list(r))
    for _, id in ipairs(ids) do assert.is_true(H.stamp_ok(r, id)) end
    local v = r:page(ids[1])
    assert.are.equal(1024, #v)
    assert.are.equal(ids[1], (v:unpack(0, "<I8")))
  end)

  local mutations = {
    { "alloc", function(r) r:alloc() end },
    { "free", function(r, ids) r:free(ids[1]) end },
    { "alloc_bulk", function(r) r:alloc_bulk(3) end },
    { "free_bulk", function(r, ids) r:free_bulk({ ids[1], ids[2] }) end },
    { "set_root", function(r) r:set_root(99) end },
    { "write", function(r, ids) local v = r:page(ids[1]); v:write(0, "x") end },
    { "pack", function(r, ids) local v = r:page(ids[1]); v:pack(0, "<i4", 7) end },
    { "fill", function(r, ids) local v = r:page(ids[1]); v:fill(0) end },
  }

  for _, m in ipairs(mutations) do
    it("refuses " .. m[1] .. " and leaves the file unchanged", function()
      local r, path, ids = ro_setup()
      local st = H.state(r)
      local before = H.read_file(path)
      H.raises_with({ m[1], "read" }, m[2], r, ids)
      assert.are.same(st, H.state(r))
      assert.are.equal(before, H.read_file(path))
      for _, id in ipairs(ids) do assert.is_true(H.stamp_ok(r, id)) end
    end)
  end

  it("refuses mutations inside a transaction too", function()
    local r, path, ids = ro_setup()
    local before = H.read_file(path)
    local ok, tx = pcall(r.begin, r)
    if ok then
      H.raises(function() r:alloc() end)
      H.raises(function() r:free(ids[1]) end)
      H.raises(function() r:set_root(5) end)
      tx:rollback()
    end
    H.raises(function() r:transaction(function() r:alloc() end) end)
    assert.are.equal(before, H.read_file(path))
    assert.are.equal(21, r:root())
  end)
end)

describe("misuse from Lua", function()
  after_each(H.cleanup)

  -- These run in a child process, so that a crash fails one test instead
  -- of ending the whole run.

  it("raises, and never crashes, when a method is called on the wrong kind of object", function()
    local out, status = H.run_lua(([[
local mp = require "mappedpages"
local p = assert(mp.create(%q, { page_size = 1024 }))
local id = p:alloc()
local v = p:page(id)
local tx = p:begin(); tx:rollback()
local objs = { pager = p, view = v, tx = tx }
local wrong = { 0, "x", {}, true, io.stdout, function() end }
local tested, silent = 0, {}
for kind, o in pairs(objs) do
  local idx = getmetatable(o).__index
  assert(type(idx) == "table", kind .. ": __index is not a table")
  for name, f in pairs(idx) do
    if type(f) == "function" then
      local selves = {}
      for _, w in ipairs(wrong) do selves[#selves + 1] = w end
      for other, u in pairs(objs) do if other ~= kind then selves[#selves + 1] = u end end
      for i = 0, #selves do              -- 0: no self at all (nil)
        tested = tested + 1
        if pcall(f, selves[i], 9, 9, 9) then
          silent[#silent + 1] = kind .. "." .. name .. "(" .. tostring(selves[i]) .. ")"
        end
      end
    end
  end
end
p:close()
io.write(tested, " calls; did not raise: ", table.concat(silent, ", "), ";")
]]):format(H.path()))
    assert.are.equal(0, status, "the child crashed: " .. out)
    local n, silent = out:match("^(%d+) calls; did not raise: (.-);$")
    assert.is_truthy(n, out)
    assert.is_true(tonumber(n) > 100, out)
    assert.are.equal("", silent)
  end)

  it("survives a long random mix of valid and invalid calls without losing anything", function()
    local path = H.path()
    local out, status = H.run_lua(([[
local mp = require "mappedpages"
local path = %q
local p = assert(mp.create(path, { page_size = 1024 }))
local x = 12345
local function rnd(n) x = (x * 1103515245 + 12345) & 0x7fffffff; return x %% n end
local model, saved, tx = {}, nil, nil       -- model: the allocated pages
local views = {}
local succeeded = 0
local function live() local t = {} for id in pairs(model) do t[#t + 1] = id end table.sort(t) return t end
local function pick()
  local l = live()
  local r = rnd(10)
  if r < 6 and #l > 0 then return l[rnd(#l) + 1] end
  if r < 8 then return rnd(p:page_count() + 5) end
  return ({ -1, 0, 1, 2, 1 << 40, 2.5, "x" })[rnd(7) + 1]
end
local function check(where)
  local seen = {}
  for id in p:pages() do seen[id] = true end
  for id in pairs(model) do if not seen[id] then error(where .. ": lost page " .. id) end end
  for id in pairs(seen) do if not model[id] then error(where .. ": extra page " .. id) end end
  local i = p:info()
  if i.page_count ~= i.free_count + i.regular_count + i.protected_count + i.system_count
     and not i.in_txn then error(where .. ": page counts do not add up") end
end
local function copy(t) local c = {} for k, v in pairs(t) do c[k] = v end return c end
for step = 1, 3000 do
  local op = rnd(14)
  if op == 0 then
    local ok, id = pcall(p.alloc, p); if ok then model[id] = true; succeeded = succeeded + 1 end
  elseif op == 1 then
    local id = pick(); if pcall(p.free, p, id) then model[id] = nil end
  elseif op == 2 then
    local ok, ids = pcall(p.alloc_bulk, p, rnd(20) - 2)
    if ok then for _, id in ipairs(ids) do model[id] = true end end
  elseif op == 3 then
    local list = {}
    for _ = 1, rnd(5) do list[#list + 1] = pick() end
    if pcall(p.free_bulk, p, list) then for _, id in ipairs(list) do model[id] = nil end end
  elseif op == 4 then
    local ok, v = pcall(p.page, p, pick()); if ok then views[#views + 1] = v end
  elseif op == 5 and #views > 0 then
    local v = views[rnd(#views) + 1]
    pcall(v.write, v, rnd(1100) - 30, string.rep("z", rnd(60)))
    pcall(v.read, v, rnd(1100) - 30, rnd(60))
    pcall(v.pack, v, rnd(1100) - 30, "<i8 s1", 7, "abc")
    pcall(v.unpack, v, rnd(1100) - 30, "<i8")
    pcall(v.fill, v, rnd(300) - 20, rnd(1100) - 30, rnd(60))
  elseif op == 6 then
    local ok, t = pcall(p.begin, p)
    if ok then tx = t; saved = copy(model) end
  elseif op == 7 and tx then
    if pcall(tx.commit, tx) then tx = nil; succeeded = succeeded + 1 end
  elseif op == 8 and tx then
    if pcall(tx.rollback, tx) then tx = nil; model = saved end
  elseif op == 9 then
    pcall(p.set_root, p, pick())
  elseif op == 10 and rnd(20) == 0 then
    p:close()
    if tx then model = saved; tx = nil end
    p = assert(mp.open(path))
    check("after reopen " .. step)
  elseif op == 11 then
    if #views > 50 then views = {} collectgarbage() end
  end
  if step %% 100 == 0 then check("step " .. step) end
end
if tx then tx:rollback(); model = saved end
check("end")
p:close()
p = assert(mp.open(path))
check("final reopen")
p:close()
io.write("survived ", p and #live() or 0, " ", succeeded)
]]):format(path))
    assert.are.equal(0, status, "the child crashed or failed: " .. out)
    local n, c = out:match("^survived (%d+) (%d+)$")
    assert.is_truthy(n, out)
    assert.is_true(tonumber(n) > 20 and tonumber(c) > 20, out)
  end)
end)
