-- 09-crash: a power loss at every durability barrier.
--
-- test/crash_sim.c hooks the barrier (mp_set_io_hook), records which
-- pages each barrier makes durable, and opens crash images built from them
-- (every changed page old, new or torn at 512-byte sectors; the file length
-- old or new): each must open, pass the audit, and show exactly the state of
-- the last returned commit or of the one in flight, never anything else.  It
-- also crashes, reopens an image as the live file and continues (crash,
-- reopen, continue, crash), and checks that a state an open rejected never
-- comes back.  The workload is random and seeded: regular and protected
-- pages, transactions of 1 to 500 pages, rollbacks, the root, and growth of
-- the file.  Two readers beside the writer open, refresh and close (between
-- steps and inside commits); after every commit each must still show its
-- snapshot exactly, so the writer never reused a page a live snapshot
-- reaches, and images of commits that hold pages for them (state 11) and
-- release them recover like any other.  `make test` builds it into
-- $MP_BUILD/test/; `make test-crash` runs the long form (at least 20,000
-- images).

local H = require "helpers"

local function prog()
  local build = os.getenv("MP_BUILD") or "build"
  local path = build .. "/test/crash_sim"
  local f = io.open(path, "rb")
  assert(f, path .. " is missing: run `make tests` (make test builds it)")
  f:close()
  return path
end

-- Run crash_sim with args (a string, already quoted); returns ok, output.
local function run(args)
  local out = H.tmpdir() .. "/out.txt"
  local ok = os.execute(H.shell_quote(prog()) .. " " .. args .. " > " .. H.shell_quote(out) .. " 2>&1")
  return ok == true, H.read_file(out)
end

-- The totals line: images, violations, barriers, reopen-continue cycles.
local function summary(text)
  local images, violations, barriers, reopens = text:match(
    "crash_sim: images checked (%d+), violations (%d+), barriers (%d+), reopen%-continue cycles (%d+)")
  assert(images, "no summary line in:\n" .. text)
  return tonumber(images), tonumber(violations), tonumber(barriers), tonumber(reopens)
end

-- Sum of a per-seed counter ("N <label>") over the seed lines.
local function sum(text, label)
  local n = 0
  for v in text:gmatch("(%d+) " .. label) do n = n + tonumber(v) end
  return n
end

describe("crash images", function()
  after_each(function() H.cleanup() end)

  it("recover the last returned commit or the one in flight, at every barrier (seeds 1-3)", function()
    local ok, text = run("-n 3 -g 12000 " .. H.shell_quote(H.dir()) .. " 1 60 16")
    assert.is_true(ok, text)
    local images, violations, barriers, reopens = summary(text)
    assert.equal(0, violations, text)
    assert.is_true(images >= 2000, "only " .. images .. " images checked:\n" .. text)
    assert.is_true(barriers >= 100, text)
    -- the interesting cases happened: fallbacks, whole new roots rejected
    -- because a page below them was old or torn, crash-reopen-continue
    -- cycles that fell back, and lost transactions replayed byte for byte
    assert.is_true(reopens > 0, text)
    assert.is_true(sum(text, "fell back to S%(k%-1%)") > 0, text)
    assert.is_true(sum(text, "with a whole rejected root") > 0, text)
    assert.is_true(sum(text, "lost txns replayed") > 0, text)
    -- readers held pages: images of commits holding and releasing them,
    -- images recovered with held pages, readers opened on a crash image
    -- before the writer, readers refused a snapshot inside a commit
    assert.is_true(sum(text, "images with held pages") > 0, text)
    assert.is_true(sum(text, "recovered holding pages") > 0, text)
    assert.is_true(sum(text, "of releasing commits") > 0, text)
    assert.is_true(sum(text, "images opened by a reader first") > 0, text)
    assert.is_true(sum(text, "opened on a crash image") > 0, text)
    assert.is_true(sum(text, "refused") > 0, text)
    assert.is_true(sum(text, "snapshot checks") > 0, text)
  end)

  it("without readers, no page is ever held (seed 1, -R 0)", function()
    local ok, text = run("-R 0 -g 12000 " .. H.shell_quote(H.dir()) .. " 1 30 4")
    assert.is_true(ok, text)
    local _, violations = summary(text)
    assert.equal(0, violations, text)
    assert.equal(0, sum(text, "images with held pages"), text)
    assert.equal(0, sum(text, "snapshot checks"), text)
  end)

  it("stay consistent while the file grows an index level (seed 4)", function()
    local ok, text = run("-g 18000 " .. H.shell_quote(H.dir()) .. " 4 40 8")
    assert.is_true(ok, text)
    local _, violations = summary(text)
    assert.equal(0, violations, text)
    assert.matches("FSM height 1", text)
  end)

  it("can be replayed one by one from the seed, barrier and image number", function()
    local ok, text = run("-r 5:3 " .. H.shell_quote(H.dir()) .. " 1 60 16")
    assert.is_true(ok, text)
    assert.matches("replay seed 1 barrier 5 image 3", text)
    assert.matches("replay done %(S%(k", text)
    assert.is_true(H.exists(H.dir() .. "/replay-1-5-3.mp"), text)
  end)
end)
