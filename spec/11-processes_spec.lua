-- 11-processes: real process crashes and locks across processes.
--
-- A writer runs in a child lua5.4 process and is killed with SIGKILL at
-- random moments; after each kill the file must open at the last state the
-- child reported committed, or at the one it was committing, whole (the
-- root names the commit and the protected page carries the same number; a
-- regular page, not transactional, the same or the next), and the next
-- child continues from there.  Locks: a second
-- writer process is refused while the first holds the file, and gets it
-- once the first exits, also when it was killed.
-- A reader refreshes beside a writer process that keeps growing the file.

local H = require "helpers"
local mp = H.mp

local spawn, kill9, wait_gone = H.spawn_bg, H.kill9, H.wait_gone

local function sleep_ms(ms) os.execute(("sleep %.3f"):format(ms / 1000)) end

-- The child: opens the file (creating it the first time), then commits
-- forever.  Commit k sets the root to k, writes k into protected page 0
-- and into the regular page the file's first commit allocated, allocates
-- and frees a few pages, sometimes in one explicit transaction; after each
-- commit returns it prints "done k" (unbuffered).
local CHILD = [[
local mp = require "mappedpages"
local path = %q
io.stdout:setvbuf("no")
local p = mp.open(path) or assert(mp.create(path, {page_size = 1024}))
local k = p:root()
if k == 0 then
  p:transaction(function()
    p:alloc_protected()
    local id = p:alloc()
    p:page(id):pack(0, "<i8", 0)
    p:set_root(0)
  end)
end
local data
for id in p:pages() do data = id; break end  -- the first regular page
assert(data)
local junk = {}
local deadline = os.time() + 60   -- never outlives a spec that failed before killing it
while os.time() <= deadline do
  k = k + 1
  p:transaction(function()
    local w = p:write_protected(0)
    w:pack(0, "<i8", k)
    p:page(data):pack(0, "<i8", k)
    for _ = 1, k %% 7 do junk[#junk + 1] = p:alloc() end
    if #junk > 40 then p:free_bulk(junk); junk = {} end
    p:set_root(k)
  end)
  io.write("done ", k, "\n")
end
]]

local function last_done(out_path)
  local f = io.open(out_path, "rb")
  if not f then return nil end
  local last
  for line in f:lines() do
    local k = line:match("^done (%d+)$")
    if k then last = tonumber(k) end
  end
  f:close()
  return last
end

describe("a writer killed with SIGKILL", function()
  after_each(H.cleanup)

  it("leaves the last reported commit or the next one, whole, across 15 kills", function()
    local path = H.path()
    local rnd = H.rng(7)
    local reported = -1
    for round = 1, 15 do
      local out = H.path("out" .. round .. ".txt")
      local pid = spawn(CHILD:format(path), out)
      sleep_ms(30 + rnd(120))
      kill9(pid)
      wait_gone(pid)
      local done = last_done(out)
      if done then reported = done end
      local p = assert(mp.open(path, { readonly = true }))
      local k = p:root()
      if reported >= 0 then
        assert.is_true(k == reported or k == reported + 1,
                       ("round %d: root %d, child reported %d"):format(round, k, reported))
      end
      assert.are.equal(k, (p:protected(0):unpack(0, "<i8")))
      -- regular-page contents are not transactional: the child may have
      -- written k + 1 there before dying in commit k + 1
      local iter, state, init = p:pages()
      local r = p:page(iter(state, init)):unpack(0, "<i8")
      assert.is_true(r == k or r == k + 1, ("regular page %d, root %d"):format(r, k))
      assert.is_true(p:check())
      reported = k          -- the next child continues from here
      p:close()
    end
    assert.is_true(reported > 0, "the children never committed")
  end)
end)

describe("the writer lock across processes", function()
  after_each(H.cleanup)

  local HOLD = [[
local mp = require "mappedpages"
io.stdout:setvbuf("no")
local p = assert(mp.open(%q))
io.write("holding\n")
local deadline = os.time() + 60   -- never outlives a spec that failed before killing it
while os.time() <= deadline do os.execute("sleep 0.2") end
]]

  local wait_for = H.wait_output

  local function made()
    local path = H.path()
    assert(mp.create(path)):close()
    return path
  end

  it("refuses a second writer process while the first runs, and admits a reader", function()
    local path = made()
    local out = H.path("hold.txt")
    local pid = spawn(HOLD:format(path), out)
    finally(function() kill9(pid) end)
    wait_for(out, "holding")
    assert.are.equal("locked", H.child_open(path))
    assert.are.equal("ok", H.child_open(path, true))
    kill9(pid)
    wait_gone(pid)
  end)

  it("hands the lock over once the first writer was killed", function()
    local path = made()
    local out = H.path("hold.txt")
    local pid = spawn(HOLD:format(path), out)
    finally(function() kill9(pid) end)
    wait_for(out, "holding")
    kill9(pid)
    wait_gone(pid)
    assert.are.equal("ok", H.child_open(path))
    local p = assert(mp.open(path))
    assert.is_true(p:check())
    p:close()
  end)

  it("hands the lock over once the first writer exited normally", function()
    local path = made()
    local out, status = H.run_lua(([[
local mp = require "mappedpages"
local p = assert(mp.open(%q))
p:alloc()
p:close()
io.write("closed")
]]):format(path))
    assert.are.equal("closed", out, tostring(status))
    assert.are.equal("ok", H.child_open(path))
  end)
end)

describe("a reader beside a writer process", function()
  after_each(H.cleanup)

  -- The writer allocates page after page, each its own commit, so the file
  -- grows again and again while the reader refreshes.
  local GROW = [[
local mp = require "mappedpages"
io.stdout:setvbuf("no")
local p = assert(mp.open(%q))
io.write("writing\n")
while io.open(%q) do p:alloc() end
p:close()
]]

  it("refreshes across the writer's growth of the file, never failing, never going back", function()
    local path = H.path()
    assert(mp.create(path, {page_size = 1024})):close()
    local run = H.path("run")
    H.write_file(run, "")
    local out = H.path("grow.txt")
    local pid = spawn(GROW:format(path, run), out)
    local r = assert(mp.open(path, {readonly = true}))
    local first, last, failures, msg = r:page_count(), r:page_count(), 0, nil
    for _ = 1, 200000 do
      local ok, err = r:refresh()
      if not ok then failures, msg = failures + 1, err end
      local n = r:page_count()
      assert.is_true(n >= last, "the reader's page count went back")
      last = n
      if last - first >= 2000 then break end
    end
    os.remove(run)
    wait_gone(pid)
    assert.are.equal(0, failures, msg)
    assert.is_true(last - first >= 100, "the writer did not grow the file while the reader refreshed")
    assert.is_true(r:check())
    r:close()
  end)
end)
