-- 16-lua_crash: crash consistency of the Lua layer, image by image.
--
-- spec/crash_harness.lua is the Lua counterpart of test/crash_sim.c (spec/09):
-- the test-only core._barrier_hook hands it the whole file at every
-- durability barrier; it builds the images a power loss could leave (every
-- page written since the previous barrier old, new or torn at 512-byte
-- sectors; the length old or new), and each must open, pass pager:check()
-- and the subject's own check(), and show exactly the state of the last
-- returned commit or of the one in flight.  It also crashes, reopens an
-- image as the live file and continues, and checks that a state an open
-- rejected never comes back.  Subjects (spec/crash_subjects.lua): the core
-- itself, the Lua modules present in the tree, readers beside the writer
-- (subject readers: snapshots that must not change while the writer
-- commits and holds pages for them), and planted bugs the harness must
-- report (so that it cannot pass vacuously).
--
-- This is the short form: three seeds per subject, about 15,000 images in
-- about 20 s (50 s under `make test-asan`).  MP_CRASH_LUA_SCALE (default 1)
-- scales the steps per seed, e.g. 0.3 for a quick run or 5 for a longer
-- one; `make test-crash-lua` (mk/crash.mk) is the long form.  A failure
-- prints the subject, seed, barrier and image and the command that
-- replays it.

local H = require "helpers"
local CH = require "crash_harness"
local subjects = require "crash_subjects"
local core = require "mappedpages.core"
local mp = H.mp

local SCALE = tonumber(os.getenv("MP_CRASH_LUA_SCALE") or "") or 1

-- A scratch directory on a tmpfs when there is one: the run makes
-- thousands of files and barriers, and the disk is not the point here.
local function scratch_dir() return H.scratch("mp-crash-lua", { keep = true }) end

-- Run seeds of one subject; returns the totals and the log.  The scratch
-- directory goes away unless there were violations (expect_violations:
-- always).
local function run(subject, seed, nseeds, steps, images, extra, expect_violations)
  local dir, remove = scratch_dir()
  local out = {}
  local total = CH.new_stats()
  for s = seed, seed + nseeds - 1 do
    local o = { subject = subject, seed = s, steps = steps, images = images, dir = dir,
                log = function(line) out[#out + 1] = line end }
    for k, v in pairs(extra or {}) do o[k] = v end
    local st = CH.run(o)
    out[#out + 1] = CH.summary_line(subject.name, s, st)
    CH.add(total, st)
  end
  local text = table.concat(out, "\n")
  if total.violations == 0 or expect_violations then remove() else text = text .. "\n(images kept in " .. dir .. ")" end
  return total, text
end

describe("core._barrier_hook", function()
  after_each(function()
    core._barrier_hook(nil)
    core._inject_fault(nil)
    H.cleanup()
  end)

  it("calls fn with the whole file before every barrier, then runs the barrier", function()
    local path = H.path()
    local images = {}
    core._barrier_hook(function(img) images[#images + 1] = img end)
    local p = H.track(assert(mp.create(path, { page_size = 1024 })))
    assert.equal(1, #images)                  -- create's barrier
    local id = assert(p:alloc())
    p:page(id):write(0, "through the mapping")
    local pid = assert(p:alloc_protected())
    assert(H.pset(p, pid, H.pcontent(1024, "hooked")))
    -- create, alloc, alloc_protected, the writer's commit
    assert.equal(4, #images)
    assert.equal(4, p:info().barriers)
    -- the last image is the file as the barrier made it durable
    assert.equal(H.read_file(path), images[4])
    assert.truthy(images[4]:find("through the mapping", 1, true))
    assert.truthy(images[4]:find(H.pcontent(1024, "hooked"), 1, true))
    assert.falsy(images[3]:find(H.pcontent(1024, "hooked"), 1, true))
    core._barrier_hook(nil)
    assert(p:set_root(3))
    assert.equal(4, #images)
  end)

  it("fails the barrier when fn raises: nil, msg, 'io', poisoned; the message is kept", function()
    local path = H.path()
    local p = H.track(assert(mp.create(path, { page_size = 1024 })))
    assert(p:set_root(1))
    core._barrier_hook(function() error("hook says no") end)
    H.fails_with("io", p:set_root(2))
    assert.is_true(p:info().poisoned)
    assert.matches("hook says no", core._barrier_hook_error())
    assert.is_nil(core._barrier_hook_error())   -- forgotten once read
    core._barrier_hook(function() error({}) end)
    -- the failed commit's writes are in the page cache: reopening shows it
    -- (the README: "or the failed commit's, if all of it reached the disk")
    p:close()
    p = H.open(path)
    assert.equal(2, p:root())
    H.fails_with("io", p:set_root(3))
    assert.matches("table value", core._barrier_hook_error())
  end)

  it("refuses every use of a pager from inside fn (no reentry into a commit)", function()
    local p, path = H.create({ page_size = 1024 })
    local id = assert(p:alloc())
    local view = p:page(id)
    local pid = assert(p:alloc_protected())
    local attempts = {
      function() return p:alloc() end,
      function() return p:root() end,
      function() return p:close() end,
      function() return view:read(0, 4) end,
      function() return p:protected(pid) end,
      function() return mp.open(path, { readonly = true }) end,
      function() return mp.create(path .. ".other") end,
      function() return core._barrier_hook(nil) end,
    }
    local results = {}
    core._barrier_hook(function()
      for i, f in ipairs(attempts) do
        local ok, err = pcall(f)
        results[i] = ok and "returned" or err
      end
    end)
    assert(p:set_root(5))                 -- fn's errors are its own: the barrier runs
    core._barrier_hook(nil)
    for i = 1, #attempts do
      assert.matches("inside a barrier hook", results[i], nil, false)
    end
    assert.equal(5, p:root())
    assert.is_true(p:check())
    assert.equal("data", (view:write(0, "data"):read(0, 4)))
    assert.is_false(H.exists(path .. ".other"))
  end)

  it("refuses tx:commit() and <close> of the committing transaction from inside fn", function()
    local p = H.create({ page_size = 1024 })
    local tx = assert(p:begin())
    assert(p:alloc())
    local got = {}
    core._barrier_hook(function()
      got[1] = select(2, pcall(tx.commit, tx))
      got[2] = select(2, pcall(function()
        local t <close> = tx
        return t
      end))
    end)
    assert(tx:commit())
    core._barrier_hook(nil)
    assert.matches("inside a barrier hook", got[1])
    assert.matches("inside a barrier hook", got[2])
    assert.is_true(p:check())
  end)

  it("composes with _inject_fault: fn sees the image, then the fault fails the barrier", function()
    local p, path = H.create({ page_size = 1024 })
    local n = 0
    core._barrier_hook(function() n = n + 1 end)
    core._inject_fault("barrier", "eio", 1)
    assert(p:set_root(1))
    H.fails_with("io", p:set_root(2))
    assert.equal(2, n)
    assert.is_nil(core._barrier_hook_error())   -- the fault, not fn, failed it
    core._inject_fault(nil)                -- clears the fault, keeps the hook
    p:close()
    p = H.open(path)
    assert.equal(2, p:root())             -- in the page cache, as above
    assert(p:set_root(3))
    assert.equal(3, n)
  end)

  it("goes away with the Lua state that set it (lua_close with the hook set)", function()
    local path = H.path()
    local out, status = H.run_lua(([[
local mp = require "mappedpages"
local core = require "mappedpages.core"
local n = 0
core._barrier_hook(function(img) n = n + #img end)
local p = assert(mp.create(%q, {page_size = 1024}))
assert(p:begin())
assert(p:alloc())
io.write("barriers seen ", tostring(n > 0), "\n")
-- exit with the hook set and a transaction open: lua_close finalizes the
-- pager (a rollback, no barrier) and the hook's sentinel
]]):format(path))
    assert.equal(0, status, out)
    assert.matches("barriers seen true", out)
  end)

  it("runs fn on its own thread and with the collector stopped", function()
    local p = H.create({ page_size = 1024 })
    local seen = {}
    core._barrier_hook(function()
      seen.running = collectgarbage("isrunning")
      seen.yield = select(2, pcall(coroutine.yield))
    end)
    local co = coroutine.wrap(function() return p:set_root(9) end)
    assert.is_true(co())
    core._barrier_hook(nil)
    assert.is_false(seen.running)
    assert.matches("yield", seen.yield)
    assert.is_true(collectgarbage("isrunning"))
  end)
end)

describe("the Lua crash harness", function()
  after_each(function()
    core._barrier_hook(nil)
    H.cleanup()
  end)

  -- Planted bugs: each must be reported, with a seed and a replay line.
  for _, case in ipairs {
    { "planted_pair", "made 2 commits", "two protected pages written by two commits in one step" },
    { "planted_inplace", "counter", "a counter written in place in a regular page before its commit" },
    { "planted_state", "neither S%(k%-1%) nor S%(k%)", "a state() that reports whether open fell back" },
    { "planted_twostep", "has no initialized anchor", "a named object made in two commits (catalog)" },
  } do
    local name, pattern, what = case[1], case[2], case[3]
    local avail = not subjects[name].available or subjects[name].available()
    ;(avail and it or pending)("reports a planted bug: " .. what, function()
      local total, text = run(subjects[name], 1, 1, 20, 8, nil, true)
      assert.is_true(total.violations > 0, "no violation found:\n" .. text)
      assert.matches(pattern, text)
      assert.matches("seed 1", text)
      assert.matches("replay: MP_BUILD=", text)
    end)
  end

  it("replays one image from the seed, barrier and image number", function()
    local dir, remove = scratch_dir()
    local out = {}
    local st = CH.run { subject = subjects.core, seed = 1, steps = 30, images = 8, dir = dir, replay = "5:3",
                        log = function(line) out[#out + 1] = line end }
    local text = table.concat(out, "\n")
    assert.equal(0, st.violations, text)
    assert.matches("replay subject core seed 1 barrier 5 image 3", text)
    assert.matches("replay done %(S%(k", text)
    assert.is_true(H.exists(dir .. "/replay-core-1-5-3.mp"), text)
    remove()
  end)

  -- Every subject whose module is present: zero violations, and the
  -- interesting cases happened.
  local plan = {
    core = { seeds = 3, steps = 90, images = 16, min_images = 3000 },
    records = { seeds = 2, steps = 60, images = 10, min_images = 1000 },
    heap = { seeds = 2, steps = 30, images = 8, min_images = 500 },
    -- about 2 s: readers' snapshots checked at every step, held pages in
    -- most images
    readers = { seeds = 2, steps = 30, images = 8, min_images = 400 },
  }
  for _, name in ipairs(subjects.available()) do
    local pl = plan[name] or { seeds = 3, steps = 60, images = 12, min_images = 1500 }
    it(("finds every image consistent: subject %s (seeds 1-%d)"):format(name, pl.seeds), function()
      local steps = math.max(10, math.floor(pl.steps * SCALE))
      local total, text = run(subjects[name], 1, pl.seeds, steps, pl.images)
      assert.equal(0, total.violations, text)
      local want = math.floor(pl.min_images * math.min(1, SCALE))
      assert.is_true(total.images >= want, ("only %d images checked (want %d):\n%s"):format(total.images, want, text))
      assert.is_true(total.commits > 0 and total.rollbacks > 0, text)
      assert.is_true(total.fallbacks > 0, "no image fell back to S(k-1):\n" .. text)
      assert.is_true(total.rejected_roots > 0, "no whole new root was rejected:\n" .. text)
      assert.is_true(total.reopens > 0, "no crash-reopen-continue cycle:\n" .. text)
      assert.is_true(total.reopen_fallbacks > 0, "no reopen fell back:\n" .. text)
      assert.is_true(total.replays > 0, "no lost step replayed:\n" .. text)
      if name == "readers" then
        -- readers took and kept snapshots, the writer held pages for them,
        -- and a reader opened a crash image before the writer did
        assert.is_true(total.subject_reader_refreshes > 0 and total.subject_reader_checks > 0, text)
        assert.is_true(total.subject_held_steps > 0, "no page was ever held:\n" .. text)
        assert.is_true(total.subject_crash_readers > 0, "no reader opened a crash image first:\n" .. text)
      end
    end)
  end
end)
