-- spec/crash_harness.lua -- crash images of the Lua layer, checked one by one.
--
-- The Lua counterpart of test/crash_sim.c, driven from Lua and pluggable:
-- a seeded random workload of a "subject" (the core itself, or Lua modules
-- built on the binding) runs on one live pager while the test-only
-- core._barrier_hook hands the harness the whole file at every durability
-- barrier.
--
-- How it works
--
--   The hook records each barrier's image ("new") next to the file's
--   content at the previous barrier ("old"); the pages that differ, and the
--   length (old or new), are what a power loss during that barrier could
--   leave in any combination.  After each step of the workload the harness
--   knows whether it committed (pager:info().commits) and what the live
--   pager shows: S(k), the state after commit k, is
--     the core's fingerprint -- txn id, root, page count, pid limit, the
--     number of pages held for readers' snapshots, the allocated regular
--     pages, every allocated pid with a CRC32C of its content
--     (regular-page contents are not transactional: not included)
--     -- and the subject's own state(pager), a canonical string of what a
--     user of the subject can observe.
--   The subject keeps a model of its state; after every step the live
--   pager's state(pager) must equal the model's (expect()), the live pager
--   must pass pager:check() and the subject's check(), and one step may
--   make at most one commit (a step is what the subject claims is atomic:
--   one call, or one transaction).
--
--   For every barrier of commit k: the all-old image, the all-new image and
--   K random ones, built as crash_sim builds them: every differing page
--   old, new, or torn (a random non-trivial subset of its 512-byte sectors
--   new), the length old or new (new only when the file grew; pages past
--   the old length read as zeros when "old"); strategies: independent coin
--   flips with p = 0.1 / 0.5 / 0.9 / random, all new but one, all new but
--   a few, all old but one.  Each image is written whole to a scratch file,
--   opened for writing with mp.open (which may fall back to the previous
--   root and invalidate the rejected one: the next image is written whole
--   again, so nothing it changed survives), and must open, pass
--   pager:check(), have every page of its page count backed by the file,
--   pass the subject's check(), and show exactly S(k-1) or S(k) -- the
--   all-old image of the commit's first barrier exactly S(k-1), the
--   all-new image of its last barrier exactly S(k) (a commit of two
--   barriers, such as one that orders regular-page writes before its root,
--   may show S(k-1) after its first) -- and
--   state() and check() must not commit.  One image in four is opened
--   read-only as well (after the writable open) and must show the same.
--
--   Creation: the creating commit's images may be no file yet
--   ("not_mappedpages", "corrupt"); nothing was promised.  One that opens
--   shows the initial state; the all-new one must open.
--
--   Crash, reopen, continue, crash again: after a commit's images, now and
--   then (1 in reopen_every commits) one image becomes the live file: the
--   pager is closed, the image written over the working file and opened,
--   and the workload continues from what it recovered (the subject's
--   attach() rebuilds its model from the pager).  Images whose new root
--   slot reached the disk whole but whose state was rejected (a page below
--   it old or torn) are preferred: open falls back and invalidates that
--   root with a barrier of its own, which is recorded and checked like any
--   other: every image of it must show the state the open recovered, never
--   the one it is rejecting (a crash there may crash-reopen again).  Once
--   the open returned, the rejected S(k) joins a set of states no later
--   image or open may show (unless a later commit makes exactly that state
--   again), and the lost step is usually replayed (same random stream,
--   with `variant` set so the subject may make it differ a little).
--   Clean reopens happen too (1 step in 50).
--
-- Subjects.  A subject is a table of functions; run() calls
--   subject.new(opts) -> instance, and then the instance's
--   inst:setup(pager)        first step on the fresh file (may commit once)
--   inst:attach(pager)       after every open: reopen handles, rebuild the
--                            model from what the pager shows; no commit
--   inst:step(pager, rng, variant) -> description [, "rollback"]
--                            one random step: at most one commit (or a
--                            rollback: say so); raise on any unexpected
--                            result
--   inst:expect() -> string  the model's state (optional)
--   inst:crash()             the power loss is about to happen: end what
--                            lives beside the pager, readers (optional)
--   inst:before_reopen(path, rng)  the crash image is the working file and
--                            the writer not open yet: a subject may open a
--                            reader on it (optional; attach() follows)
--   inst:finish()            the seed is over (optional)
--   subject.state(pager) -> string     canonical observable state
--   subject.check(pager) -> true | false, problems (a string or a list)
--   subject.name, subject.page_size (default 1024)
-- state and check take any pager: the live one or one opened on an image
-- (which may be at a state before the subject's objects exist).
--
-- run{subject =, seed =, steps =, images =, dir =, reopen_every =,
--     replay = "B:I", verbose =, log = fn} -> stats.  stats.problems lists
-- every violation (with the seed, barrier, image and how to replay it);
-- stats.violations counts them.  spec/crash_lua.lua is the command line.

local mp = require "mappedpages"
local core = require "mappedpages.core"

local CH = {}

local concat, sort, fmt = table.concat, table.sort, string.format
local SECTOR = 512

---------------------------------------------------------------------------
-- random numbers: splitmix64, in Lua's wrapping 64-bit integers

local function splitmix(s)
  s = s + 0x9E3779B97F4A7C15
  local z = s
  z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
  z = (z ~ (z >> 27)) * 0x94D049BB133111EB
  return s, z ~ (z >> 31)
end

local Rng = {}
Rng.__index = Rng

--- A random stream from an integer seed.
-- pager:check()'s second result as one line: the problems joined, or
-- the message of a check that could not run.
function CH.problems(list)
  if type(list) == "table" then return table.concat(list, "; ") end
  return tostring(list)
end

function CH.rng(seed)
  return setmetatable({ s = seed }, Rng)
end

function Rng:next()
  local s, z = splitmix(self.s)
  self.s = s
  return z
end

--- An integer in 0 .. n-1 (0 when n <= 0).
function Rng:below(n)
  if n <= 0 then return 0 end
  return (self:next() >> 1) % n
end

--- An integer in a .. b.
function Rng:int(a, b) return a + self:below(b - a + 1) end

--- True with probability num/den.
function Rng:chance(num, den) return self:below(den) < num end

function Rng:pick(t) return t[1 + self:below(#t)] end

--- n pseudo-random bytes.
function Rng:bytes(n)
  local t = {}
  for i = 1, n // 8 do t[i] = string.pack("<i8", self:next()) end
  local s = concat(t)
  if #s < n then s = s .. string.pack("<i8", self:next()):sub(1, n - #s) end
  return s
end

function Rng:state() return self.s end
function Rng:restore(s) self.s = s end

--- An independent stream for (seed, a, b, c): image choices do not depend
-- on how many images were drawn before.
function CH.derived(seed, a, b, c)
  local s = seed * 0xD1B54A32D192ED03 ~ a * 0x9E3779B97F4A7C15
            ~ b * 0xC2B2AE3D27D4EB4F ~ c * 0x165667B19E3779F9
  s = splitmix(s)
  return CH.rng(s)
end

---------------------------------------------------------------------------
-- files

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  assert(f:write(s))
  assert(f:close())
end

CH.read_file, CH.write_file = read_file, write_file

---------------------------------------------------------------------------
-- states

--- The core's fingerprint of a pager's committed state (plus a list of
-- complaints when its counters disagree with what iteration shows).
function CH.core_state(p)
  local i = p:info()
  local regs = {}
  for id in p:pages() do regs[#regs + 1] = id end
  sort(regs)
  local pids = {}
  for pid in p:protected_pages() do pids[#pids + 1] = pid end
  sort(pids)
  local problems = {}
  if i.regular_count ~= #regs or i.protected_count ~= #pids then
    problems[#problems + 1] = fmt("info says %d regular / %d protected pages, iteration finds %d / %d",
      i.regular_count, i.protected_count, #regs, #pids)
  end
  for k, pid in ipairs(pids) do
    pids[k] = fmt("%d:%08x", pid, mp.crc32c(p:protected(pid):read()))
  end
  -- runs of consecutive regular ids as a-b
  local runs, k = {}, 1
  while k <= #regs do
    local j = k
    while j < #regs and regs[j + 1] == regs[j] + 1 do j = j + 1 end
    runs[#runs + 1] = j == k and tostring(regs[k]) or (regs[k] .. "-" .. regs[j])
    k = j + 1
  end
  return fmt("txn %d root %d page_count %d pid_limit %d held %d\nregular %s\nprotected %s",
    i.txn, i.root, i.page_count, i.pid_limit, i.held_count, concat(runs, ","), concat(pids, ",")), i.txn, problems
end

local function as_text(x)
  if type(x) == "table" then
    local t = {}
    for k, v in ipairs(x) do t[k] = tostring(v) end
    return concat(t, "; ")
  end
  return tostring(x)
end

--- Everything the harness compares about an open pager: {full =, core =,
-- subj =, txn =, problems = {...}}.  Nothing here may commit.
local function observe(p, subject, live)
  local problems = {}
  local info = p:info()
  if info.file_size < info.page_count * info.page_size then
    -- reading the last pages would SIGBUS: stop here
    problems[1] = fmt("the file (%d bytes) is shorter than the page count (%d pages of %d)",
      info.file_size, info.page_count, info.page_size)
    return { full = "?", core = "?", subj = "?", txn = info.txn, problems = problems }
  end
  local commits = info.commits
  local ok, list = p:check()
  if ok == nil then problems[#problems + 1] = "pager:check() could not run: " .. tostring(list) end
  for _, m in ipairs(ok == false and list or {}) do problems[#problems + 1] = "pager:check(): " .. m end
  local cs, txn, cprob = CH.core_state(p)
  for _, m in ipairs(cprob) do problems[#problems + 1] = m end
  local oks, s = pcall(subject.state, p)
  if not oks then
    problems[#problems + 1] = "state() raised: " .. tostring(s)
    s = "?"
  end
  local okc, good, why = pcall(subject.check, p)
  if not okc then
    problems[#problems + 1] = "check() raised: " .. tostring(good)
  elseif not good then
    problems[#problems + 1] = "check(): " .. as_text(why)
  end
  if not live and p:info().commits ~= commits then
    problems[#problems + 1] = "state() or check() committed"
  end
  return { full = cs .. "\n" .. s, core = cs, subj = s, txn = txn, problems = problems }
end

-- First line where two states differ, for the report.
local function first_difference(a, b)
  local la, lb = {}, {}
  for l in (a .. "\n"):gmatch("(.-)\n") do la[#la + 1] = l end
  for l in (b .. "\n"):gmatch("(.-)\n") do lb[#lb + 1] = l end
  for i = 1, math.max(#la, #lb) do
    if la[i] ~= lb[i] then
      local x, y = la[i] or "(none)", lb[i] or "(none)"
      local j = 1
      while j <= #x and x:byte(j) == y:byte(j) do j = j + 1 end
      local from = math.max(1, j - 40)
      return fmt("line %d, from byte %d:\n        got  %s\n        want %s", i, j,
        x:sub(from, from + 160), y:sub(from, from + 160))
    end
  end
  return "(equal)"
end

---------------------------------------------------------------------------
-- crash images

local PG_OLD, PG_NEW, PG_TORN = 0, 1, 2
local STRATEGY = { [0] = "all old", "all new", "coin p=0.1", "coin p=0.5", "coin p=0.9",
                   "coin p=random", "all new but one", "all new but a few", "all old but one" }

local ZEROS = {}
local function zeros(n)
  local z = ZEROS[n]
  if not z then z = string.rep("\0", n); ZEROS[n] = z end
  return z
end

-- Page pg (0-based) of image s, zeros past its end.
local function page_of(s, pg, P)
  local off = pg * P
  if off + P <= #s then return s:sub(off + 1, off + P) end
  if off >= #s then return zeros(P) end
  return s:sub(off + 1) .. zeros(off + P - #s)
end

-- Fill in a record's differing pages (r.pg, ascending), old and new bytes.
local function diff_record(r, P)
  if r.pg then return end
  local old, new = r.old, r.new
  r.lo, r.ln = #old, #new
  local n = math.max(r.lo, r.ln) // P
  local pg, oldp, newp = {}, {}, {}
  local common = math.min(r.lo, r.ln)
  -- compare big chunks first: most of a file does not change
  local CH_PAGES = 32
  local chunk = CH_PAGES * P
  local base = 0
  while base < n * P do
    local same = base + chunk <= common and old:sub(base + 1, base + chunk) == new:sub(base + 1, base + chunk)
    if not same then
      for q = base // P, math.min(n, (base + chunk) // P) - 1 do
        local o, w = page_of(old, q, P), page_of(new, q, P)
        if o ~= w then
          pg[#pg + 1], oldp[#oldp + 1], newp[#newp + 1] = q, o, w
        end
      end
    end
    base = base + chunk
  end
  r.pg, r.oldp, r.newp = pg, oldp, newp
end

local function torn_mask(rng, nsect)
  local full = (1 << nsect) - 1
  return 1 + rng:below(full - 1)   -- neither none nor all
end

-- The choice for image img of record r: {mode = {...}, mask = {...},
-- len_new =, strategy =}.
local function make_choice(seed, r, img, nsect)
  local nd = #r.pg
  local mode, mask = {}, {}
  local grew = r.ln > r.lo
  local ch = { mode = mode, mask = mask }
  if img == 0 or img == 1 then
    for i = 1, nd do mode[i] = img == 0 and PG_OLD or PG_NEW end
    ch.len_new = img == 1 and grew
    ch.strategy = img
    return ch
  end
  local s = CH.derived(seed, r.barrier, img, 1)
  local strat = 2 + s:below(7)
  ch.strategy = strat
  ch.len_new = grew and s:below(4) ~= 0
  if strat <= 5 then
    local p = strat == 2 and 10 or strat == 3 and 50 or strat == 4 and 90 or s:below(101)
    for i = 1, nd do
      mode[i] = s:below(100) < p and PG_NEW or PG_OLD
      if mode[i] == PG_NEW and s:below(4) == 0 then mode[i] = PG_TORN end
    end
  elseif strat == 6 or strat == 7 then
    for i = 1, nd do
      mode[i] = PG_NEW
      if strat == 7 and s:below(20) == 0 then mode[i] = s:below(2) == 1 and PG_OLD or PG_TORN end
    end
    if nd > 0 then mode[1 + s:below(nd)] = s:below(2) == 1 and PG_OLD or PG_TORN end
  else
    for i = 1, nd do mode[i] = PG_OLD end
    if nd > 0 then mode[1 + s:below(nd)] = s:below(2) == 1 and PG_NEW or PG_TORN end
  end
  for i = 1, nd do
    if mode[i] == PG_TORN then mask[i] = torn_mask(s, nsect) end
  end
  return ch
end

local function image_len(r, ch) return ch.len_new and r.ln or r.lo end

-- Did a root slot (page 0 or 1) this barrier changed reach the disk whole
-- and new?
local function root_whole(r, ch, P)
  for i = 1, #r.pg do
    if r.pg[i] >= 2 then break end
    if ch.mode[i] == PG_NEW and (r.pg[i] + 1) * P <= image_len(r, ch) then return true end
  end
  return false
end

local function page_version(r, ch, i, P)
  local m = ch.mode[i]
  if m == PG_OLD then return r.oldp[i] end
  if m == PG_NEW then return r.newp[i] end
  local o, n, t = r.oldp[i], r.newp[i], {}
  for sct = 0, P // SECTOR - 1 do
    local src = (ch.mask[i] >> sct) & 1 == 1 and n or o
    t[#t + 1] = src:sub(sct * SECTOR + 1, (sct + 1) * SECTOR)
  end
  return concat(t)
end

-- The bytes of an image.
local function build_image(r, ch, P)
  local len = image_len(r, ch)
  local old = r.old
  local parts, pos = {}, 0       -- bytes of the old image (zero-padded) emitted
  local function base_upto(upto)
    if upto <= pos then return end
    if pos < #old then parts[#parts + 1] = old:sub(pos + 1, math.min(upto, #old)) end
    if upto > #old then parts[#parts + 1] = zeros(upto - math.max(pos, #old)) end
    pos = upto
  end
  for i = 1, #r.pg do
    local off = r.pg[i] * P
    if off + P <= len and ch.mode[i] ~= PG_OLD then
      base_upto(off)
      parts[#parts + 1] = page_version(r, ch, i, P)
      pos = off + P
    end
  end
  base_upto(len)
  local s = concat(parts)
  assert(#s == len, "image length")
  return s
end

local function describe_choice(r, ch)
  local lines = { fmt("    image: %s; length %s (%d bytes; old %d, new %d); %d differing pages",
    STRATEGY[ch.strategy], ch.len_new and "new" or "old", image_len(r, ch), r.lo, r.ln, #r.pg) }
  for _, m in ipairs { PG_NEW, PG_TORN, PG_OLD } do
    local t = {}
    for i = 1, #r.pg do
      if ch.mode[i] == m and #t < 64 then
        t[#t + 1] = m == PG_TORN and fmt("%d(%x)", r.pg[i], ch.mask[i]) or tostring(r.pg[i])
      end
    end
    if #t > 0 then
      lines[#lines + 1] = fmt("    %s: %s", m == PG_NEW and "new" or m == PG_TORN and "torn (sectors new)" or "old",
        concat(t, " "))
    end
  end
  return concat(lines, "\n")
end

---------------------------------------------------------------------------
-- one seed

local KIND = { create = "creating commit", commit = "commit", open = "open invalidating a root slot" }
local OUT_VIOLATION, OUT_NOFILE, OUT_PREV, OUT_CUR = 0, 1, 2, 3

local Stop = {}   -- raised to end a seed early (replay done, fatal error)
local sorted_subject_keys

local function new_stats()
  return { images = 0, violations = 0, barriers = 0, reopens = 0, commits = 0, rollbacks = 0,
           steps = 0, readonly_images = 0, fallbacks = 0, rejected_roots = 0, create_fail_ok = 0,
           reopen_fallbacks = 0, replays = 0, clean_reopens = 0, max_pages = 0, max_diff = 0,
           problems = {} }
end

--- Run one seed; returns its stats.
function CH.run(opts)
  local subject = assert(opts.subject, "run: no subject")
  local seed = assert(opts.seed, "run: no seed")
  local nsteps = opts.steps or 60
  local kimg = opts.images or 16
  local dir = assert(opts.dir, "run: no dir")
  local reopen_every = opts.reopen_every or 12
  local P = subject.page_size or 1024
  local nsect = P // SECTOR
  local log = opts.log or function(line) io.stderr:write(line, "\n") end
  local verbose = opts.verbose
  local replay_b, replay_i
  if opts.replay then
    replay_b, replay_i = opts.replay:match("^(%d+):(%d+)$")
    replay_b, replay_i = tonumber(replay_b), tonumber(replay_i)
    assert(replay_b, "replay wants BARRIER:IMAGE")
  end
  local st = new_stats()
  local work = fmt("%s/crash_lua-%s-%d.mp", dir, subject.name, seed)
  local scratch = fmt("%s/crash_lua-%s-%d.img", dir, subject.name, seed)
  os.remove(work)
  os.remove(scratch)
  local rng = CH.rng(seed * 0x2545F4914F6CDD1D + 17)
  local inst = subject.new(opts)

  local replay_cmd = fmt("MP_BUILD=%s lua5.4 spec/crash_lua.lua -s %s -c %d%s DIR %d %d %d",
    os.getenv("MP_BUILD") or "build", subject.name, reopen_every, "%s", seed, nsteps, kimg)
  local function how_to_replay(b, i)
    return fmt(replay_cmd, b and fmt(" -r %d:%d", b, i) or "")
  end

  -- barrier recording
  local mode = "record"
  local recs = {}
  local old_img = ""
  local barrier_no = 0
  local step_no = 0
  local step_desc = "create"
  local saved = 0
  core._barrier_hook(function(img)
    if mode ~= "record" then return end
    barrier_no = barrier_no + 1
    recs[#recs + 1] = { barrier = barrier_no, old = old_img, new = img }
    old_img = img
    st.barriers = st.barriers + 1
  end)

  local live
  local S_prev, S_cur
  local rejected = {}

  local function fatal(msg)
    st.violations = st.violations + 1
    local text = fmt("crash_lua: FATAL subject %s seed %d step %d barrier %d: %s\n  replay: %s",
      subject.name, seed, step_no, barrier_no, msg, how_to_replay())
    st.problems[#st.problems + 1] = text
    log(text)
    error(Stop)
  end

  local function violation(r, img, ch, kind, msg, extra)
    st.violations = st.violations + 1
    local text = fmt("crash_lua: VIOLATION subject %s seed %d step %d (%s) barrier %d image %d (%s): %s\n"
      .. "%s%s\n    replay: %s",
      subject.name, seed, step_no, step_desc, r.barrier, img, KIND[kind], msg,
      describe_choice(r, ch), extra and ("\n" .. extra) or "", how_to_replay(r.barrier, img))
    st.problems[#st.problems + 1] = text
    log(text)
  end

  local function save_copy(tag, r, img, bytes)
    local path = fmt("%s/%s-%s-%d-%d-%d.mp", dir, tag, subject.name, seed, r.barrier, img)
    write_file(path, bytes)
    log("    saved as " .. path)
  end

  -- Check image img of record r; returns OUT_*.
  local function check_image(r, img, ch, prev, cur, kind, first, last)
    local replaying = r.barrier == replay_b and img == replay_i
    local bytes = build_image(r, ch, P)
    write_file(scratch, bytes)
    st.images = st.images + 1
    if replaying then
      log(fmt("crash_lua: replay subject %s seed %d barrier %d image %d (%s)", subject.name, seed,
        r.barrier, img, KIND[kind]))
      log(describe_choice(r, ch))
      if prev then log((kind == "open" and "    being rejected:\n" or "    S(k-1):\n") .. prev.full) end
      log((kind == "open" and "    recovered:\n" or "    S(k):\n") .. cur.full)
      save_copy("replay", r, img, bytes)
    end
    local out = OUT_VIOLATION
    mode = "pass"
    local p, msg, code = mp.open(scratch)
    if not p then
      if replaying then log(fmt("    open: %s (%s)", tostring(code), tostring(msg))) end
      if kind == "create" and img ~= 1 and (code == "not_mappedpages" or code == "corrupt") then
        out = OUT_NOFILE
        st.create_fail_ok = st.create_fail_ok + 1
      else
        violation(r, img, ch, kind, fmt("open failed: %s: %s", tostring(code), tostring(msg)))
      end
    else
      local ok, got = pcall(observe, p, subject, false)
      if not ok then got = { full = "?", txn = -1, problems = { "observing raised: " .. tostring(got) } } end
      if replaying then log("    opened:\n" .. got.full) end
      if #got.problems > 0 then
        violation(r, img, ch, kind, concat(got.problems, "; "))
      elseif rejected[got.full] then
        violation(r, img, ch, kind, fmt("a state rejected by an earlier open came back (txn %d)", got.txn))
      elseif got.full == cur.full then
        out = OUT_CUR
        if img == 0 and kind == "commit" and cur.full ~= prev.full and first then
          out = OUT_VIOLATION
          violation(r, img, ch, kind, "the all-old image shows the new state")
        end
      elseif prev and got.full == prev.full then
        out = OUT_PREV
        if img == 1 and last then
          out = OUT_VIOLATION
          violation(r, img, ch, kind, "the all-new image shows the previous state")
        elseif kind == "open" then
          out = OUT_VIOLATION
          violation(r, img, ch, kind, "a crash during the open's clearing shows the state it rejected")
        end
      else
        local extra = "    got:\n      " .. got.full:gsub("\n", "\n      ")
        if prev then extra = extra .. "\n    vs S(k-1): " .. first_difference(got.full, prev.full) end
        extra = extra .. "\n    vs S(k):   " .. first_difference(got.full, cur.full)
        violation(r, img, ch, kind, "recovered a state that is neither S(k-1) nor S(k)", extra)
      end
      if out == OUT_PREV and prev.full ~= cur.full then
        st.fallbacks = st.fallbacks + 1
        if root_whole(r, ch, P) then st.rejected_roots = st.rejected_roots + 1 end
      end
      p:close()
      -- now and then the same image read-only (after the writable open,
      -- which may have invalidated a rejected root): the same state
      if out ~= OUT_VIOLATION and CH.derived(seed, r.barrier, img, 3):below(4) == 0 then
        st.readonly_images = st.readonly_images + 1
        local q, qmsg, qcode = mp.open(scratch, { readonly = true })
        if not q then
          out = OUT_VIOLATION
          violation(r, img, ch, kind, fmt("read-only open failed: %s: %s", tostring(qcode), tostring(qmsg)))
        else
          local okq, rgot = pcall(observe, q, subject, false)
          q:close()
          if not okq then rgot = { full = "?", problems = { "observing raised: " .. tostring(rgot) } } end
          if #rgot.problems > 0 or rgot.full ~= got.full then
            out = OUT_VIOLATION
            violation(r, img, ch, kind, "opened read-only, the image shows another state"
              .. (#rgot.problems > 0 and (": " .. concat(rgot.problems, "; ")) or ""),
              "    vs the writable open: " .. first_difference(rgot.full, got.full))
          end
        end
      end
    end
    mode = "record"
    if out == OUT_VIOLATION and saved < 5 then
      saved = saved + 1
      save_copy("violation", r, img, bytes)
    end
    if replaying then
      log(fmt("crash_lua: replay done (%s)",
        out == OUT_CUR and (kind == "open" and "S(k): the recovered state" or "S(k)")
        or out == OUT_PREV and (kind == "open" and "S(k-1): the state being rejected" or "S(k-1)")
        or out == OUT_NOFILE and "no file" or "violation"))
      st.replay_outcome = out
      error(Stop)
    end
    return out
  end

  local check_records
  local replay_pending, lost_rng

  -- The live pager's state after a step or an open.
  local function live_state(when)
    local got = observe(live, subject, true)
    if #got.problems > 0 then fatal(when .. ": live pager: " .. concat(got.problems, "; ")) end
    local info = live:info()
    if info.page_count > st.max_pages then st.max_pages = info.page_count end
    return got
  end

  -- Crash: image img of r becomes the working file; reopen it and go on
  -- from what it recovered.  prev and cur are the states it may show.
  local function crash_reopen(r, ch, img, kind, prev, cur, depth)
    local bytes = build_image(r, ch, P)
    live:close()
    live = nil
    if inst.crash then inst:crash() end
    write_file(work, bytes)
    old_img = bytes
    st.reopens = st.reopens + 1
    mode = "record"
    if inst.before_reopen then inst:before_reopen(work, CH.derived(seed, r.barrier, img, 4)) end
    local p, msg, code = mp.open(work)
    if not p then
      violation(r, img, ch, kind, fmt("crash-reopen: open failed: %s: %s", tostring(code), tostring(msg)))
      fatal("cannot continue")
    end
    live = p
    local target = live_state("after a crash-reopen")
    if rejected[target.full] or (target.full ~= cur.full and not (prev and target.full == prev.full)) then
      local extra = "    got:\n      " .. target.full:gsub("\n", "\n      ")
      if prev then extra = extra .. "\n    vs S(k-1): " .. first_difference(target.full, prev.full) end
      extra = extra .. "\n    vs S(k):   " .. first_difference(target.full, cur.full)
      violation(r, img, ch, kind, "crash-reopen recovered a wrong state", extra)
      fatal("cannot continue")
    end
    local alt
    if prev and prev.full ~= cur.full then alt = target.full == cur.full and prev or cur end
    local fell_back = alt and alt.txn > target.txn
    if fell_back then
      st.reopen_fallbacks = st.reopen_fallbacks + 1
      if lost_rng and rng:below(4) ~= 0 then replay_pending = lost_rng end
    end
    if verbose then
      log(fmt("step %d: crash at barrier %d image %d, reopened at txn %d (%s)", step_no, r.barrier, img,
        target.txn, fell_back and "fell back, rejecting the newer state" or "the newer state"))
    end
    local nb = #recs
    inst:attach(live)
    if #recs ~= nb then fatal("attach() committed") end
    if inst.expect and inst:expect() ~= target.subj then
      fatal("after attach() the model disagrees with the pager: " .. first_difference(inst:expect(), target.subj))
    end
    S_prev, S_cur = target, target
    check_records(fell_back and alt or target, target, "open", depth < 2 and rng:below(4) == 0, depth + 1)
    if fell_back and S_cur.full == target.full then rejected[alt.full] = true end
  end

  function check_records(prev, cur, kind, allow_reopen, depth)
    local mine = recs
    recs = {}
    for j, r in ipairs(mine) do
      diff_record(r, P)
      if r.lo % P ~= 0 or r.ln % P ~= 0 then
        fatal(fmt("file length %d (old %d) is not a whole number of pages", r.ln, r.lo))
      end
      if #r.pg > st.max_diff then st.max_diff = #r.pg end
      local nimg = (#r.pg == 0 and r.ln == r.lo) and 1 or kimg + 2
      local outs = {}
      for img = 0, nimg - 1 do
        local which = nimg == 1 and 1 or img
        outs[img] = check_image(r, which, make_choice(seed, r, which, nsect), prev, cur, kind,
                                j == 1, j == #mine)
      end
      local s = CH.derived(seed, r.barrier, 0, 2)
      if j == #mine and allow_reopen and reopen_every > 0 and s:below(reopen_every) == 0 then
        -- prefer an image whose whole new root was rejected
        local pick, cands = nil, 0
        for img = 0, nimg - 1 do
          if outs[img] == OUT_PREV and root_whole(r, make_choice(seed, r, img, nsect), P) then
            cands = cands + 1
            if s:below(cands) == 0 then pick = img end
          end
        end
        if not pick or s:below(3) == 0 then
          pick, cands = nil, 0
          for img = 0, nimg - 1 do
            if outs[img] == OUT_PREV or outs[img] == OUT_CUR then
              cands = cands + 1
              if s:below(cands) == 0 then pick = img end
            end
          end
        end
        if pick then
          local which = nimg == 1 and 1 or pick
          crash_reopen(r, make_choice(seed, r, which, nsect), which, kind, kind ~= "create" and prev or nil,
            cur, depth)
          return
        end
      end
    end
  end

  -- One step of the workload (fn does it); checks what it committed.
  local function run_step(desc_fn)
    local before = live:info()
    local nb = #recs
    local ok, desc, tag = pcall(desc_fn)
    if not ok then
      if desc == Stop then error(Stop) end
      fatal("the step raised: " .. tostring(desc))
    end
    desc = tostring(desc or "?")
    step_desc = desc
    if tag == "rollback" then st.rollbacks = st.rollbacks + 1 end
    local after = live:info()
    local commits = after.commits - before.commits
    local now = live_state("after step " .. step_no .. " (" .. desc .. ")")
    if inst.expect then
      local want = inst:expect()
      if want ~= now.subj then
        fatal(fmt("after step %d (%s) the live pager disagrees with the model: %s", step_no, desc,
          first_difference(now.subj, want)))
      end
    end
    if verbose then
      log(fmt("step %d: %s: %d commit(s), %d barrier(s), txn %d", step_no, desc, commits, #recs - nb, now.txn))
    end
    if commits == 0 then
      if #recs > nb then fatal(fmt("step %d (%s): a barrier without a commit", step_no, desc)) end
      if now.full ~= S_cur.full then
        fatal(fmt("step %d (%s) changed the state without a commit: %s", step_no, desc,
          first_difference(now.full, S_cur.full)))
      end
      return
    end
    st.commits = st.commits + 1
    if #recs == 0 then fatal(fmt("step %d (%s): a commit returned without a durability barrier", step_no, desc)) end
    if commits > 1 then
      -- what the subject claims is one atomic step is not: images of the
      -- barriers in between show states that are neither (reported below)
      st.violations = st.violations + 1
      local text = fmt("crash_lua: VIOLATION subject %s seed %d step %d: one step (%s) made %d commits\n    replay: %s",
        subject.name, seed, step_no, desc, commits, how_to_replay())
      st.problems[#st.problems + 1] = text
      log(text)
    elseif #recs > 2 then
      st.violations = st.violations + 1
      local text = fmt("crash_lua: VIOLATION subject %s seed %d step %d: one commit (%s) issued %d barriers",
        subject.name, seed, step_no, desc, #recs)
      st.problems[#st.problems + 1] = text
      log(text)
    end
    if now.txn ~= S_cur.txn and now.txn ~= S_cur.txn + 1 and commits == 1 then
      fatal(fmt("a commit moved the txn id from %d to %d", S_cur.txn, now.txn))
    end
    rejected[now.full] = nil   -- made again by a commit: acknowledged
    S_prev, S_cur = S_cur, now
    check_records(S_prev, S_cur, "commit", true, 0)
    if st.commits % 16 == 0 then
      local good, list = live:check()
      if not good then fatal("audit of the live pager: " .. CH.problems(list)) end
    end
  end

  local function clean_reopen()
    live:close()
    mode = "record"
    local p, msg, code = mp.open(work)
    if not p then fatal(fmt("clean reopen: %s: %s", tostring(code), tostring(msg))) end
    live = p
    st.clean_reopens = st.clean_reopens + 1
    local got = live_state("after a clean reopen")
    if got.full ~= S_cur.full then
      fatal("a clean reopen shows another state: " .. first_difference(got.full, S_cur.full))
    end
    inst:attach(live)
    check_records(S_cur, S_cur, "open", false, 1)
  end

  local ok, err = pcall(function()
    local p, msg = mp.create(work, { page_size = P })
    if not p then fatal("create: " .. tostring(msg)) end
    live = p
    if #recs ~= 1 then fatal(fmt("create issued %d barriers", #recs)) end
    S_prev = nil
    S_cur = live_state("after create")
    check_records(nil, S_cur, "create", false, 0)
    inst:attach(live)
    run_step(function() return inst:setup(live) or "setup" end)
    for i = 1, nsteps do
      step_no = i
      st.steps = st.steps + 1
      if replay_pending then
        local saved_rng = replay_pending
        replay_pending = nil
        st.replays = st.replays + 1
        lost_rng = nil
        local r = CH.rng(saved_rng)
        run_step(function()
          local desc, tag = inst:step(live, r, true)
          return "replay: " .. tostring(desc), tag
        end)
      elseif rng:below(50) == 0 then
        lost_rng = nil
        clean_reopen()
      else
        lost_rng = rng:next()
        local r = CH.rng(lost_rng)
        run_step(function() return inst:step(live, r, false) end)
      end
    end
    local good, list = live:check()
    if not good then fatal("final audit: " .. CH.problems(list)) end
    -- a final clean reopen without the hook shows the last state
    live:close()
    core._barrier_hook(nil)
    live = assert(mp.open(work))
    local got = live_state("after the final reopen")
    if got.full ~= S_cur.full then
      fatal("the final reopen shows another state: " .. first_difference(got.full, S_cur.full))
    end
  end)
  core._barrier_hook(nil)
  if inst.finish then pcall(inst.finish, inst) end
  if live then live:close() end
  if not ok and err ~= Stop then
    st.violations = st.violations + 1
    local text = fmt("crash_lua: ERROR subject %s seed %d step %d barrier %d: %s\n  replay: %s",
      subject.name, seed, step_no, barrier_no, tostring(err), how_to_replay())
    st.problems[#st.problems + 1] = text
    log(text)
  end
  if st.violations == 0 then
    os.remove(work)
    os.remove(scratch)
  end
  st.rejected_states = 0
  for _ in pairs(rejected) do st.rejected_states = st.rejected_states + 1 end
  -- the subject's own counters (inst.counters: name -> number; names
  -- starting with max_ are maxima)
  for k, v in pairs(inst.counters or {}) do st["subject_" .. k] = v end
  return st
end

function sorted_subject_keys(st)
  local ks = {}
  for k in pairs(st) do if k:match("^subject_") then ks[#ks + 1] = k end end
  sort(ks)
  return ks
end

--- One line for a seed's stats.
function CH.summary_line(name, seed, st)
  local extra = {}
  for _, k in ipairs(sorted_subject_keys(st)) do extra[#extra + 1] = fmt("%s %d", k:sub(9), st[k]) end
  return fmt("subject %s seed %d: %d images (%d also read-only, %d fell back to S(k-1), "
    .. "%d with a whole rejected root, %d creation images not a file yet), %d barriers, %d steps, "
    .. "%d commits, %d rollbacks, %d reopen-continue (%d fell back, %d lost steps replayed), %d clean reopens, "
    .. "max %d pages, %d pages differ at most, %d violations",
    name, seed, st.images, st.readonly_images, st.fallbacks, st.rejected_roots, st.create_fail_ok, st.barriers,
    st.steps, st.commits, st.rollbacks, st.reopens, st.reopen_fallbacks, st.replays, st.clean_reopens,
    st.max_pages, st.max_diff, st.violations) .. (#extra > 0 and ("; " .. concat(extra, ", ")) or "")
end

--- Sum of stats tables (counters add, maxima take the max).
function CH.add(total, st)
  for k, v in pairs(st) do
    if type(v) == "number" then
      if k:match("^max_") or k:match("^subject_max_") then total[k] = math.max(total[k] or 0, v)
      else total[k] = (total[k] or 0) + v end
    end
  end
  total.problems = total.problems or {}
  for _, p in ipairs(st.problems or {}) do total.problems[#total.problems + 1] = p end
  return total
end

CH.new_stats = new_stats

return CH
