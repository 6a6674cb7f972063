-- spec/crash_lua.lua -- command line of the Lua crash harness
-- (spec/crash_harness.lua): crash images of the Lua layer, checked image by
-- image.  spec/16-lua_crash_spec.lua runs a short form, `make test-crash-lua`
-- (mk/crash.mk) the long one.
--
-- Usage, from the repository root after `make`:
--   MP_BUILD=build lua5.4 spec/crash_lua.lua [options] DIR SEED [STEPS [IMAGES]]
--   STEPS    workload steps per seed (default 60)
--   IMAGES   random crash images per barrier, besides the all-old and the
--            all-new one (default 16)
--   -s LIST  subjects, comma-separated (default: every available one;
--            see spec/crash_subjects.lua)
--   -n N     seeds SEED .. SEED+N-1 for each subject
--   -c N     mean commits between crash-reopen-continue cycles (12)
--   -r B:I   replay: check image I of barrier B only (same seed, STEPS and
--            IMAGES; one subject), print every detail, keep it as
--            DIR/replay-SUBJECT-SEED-B-I.mp, and stop
--   -v       one line per step
-- Prints one line per subject and seed, then
--   crash_lua: images checked N, violations V, barriers B, reopen-continue cycles R (...)
-- and exits 0 when no violation was found.  MP_BUILD (default "build")
-- names the build whose mappedpages/core.so is loaded.

local script_dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local root = script_dir .. "/.."
local build = os.getenv("MP_BUILD")
if build == nil or build == "" then build = "build" end
if not build:match("^/") then build = root .. "/" .. build end
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. script_dir .. "/?.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath

local CH = require "crash_harness"
local subjects = require "crash_subjects"

local function usage(msg)
  io.stderr:write("crash_lua: ", msg or "bad arguments", "\n",
    "usage: crash_lua.lua [-s SUBJECTS] [-n SEEDS] [-c REOPEN_EVERY] [-r BARRIER:IMAGE] [-v]\n",
    "                     DIR SEED [STEPS [IMAGES]]\n")
  os.exit(2)
end

local opts = { n = 1, c = 12 }
local pos = {}
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "-s" or a == "-n" or a == "-c" or a == "-r" then
    i = i + 1
    if not arg[i] then usage("missing value for " .. a) end
    opts[a:sub(2)] = arg[i]
  elseif a == "-v" then
    opts.v = true
  elseif a:sub(1, 1) == "-" then
    usage("unknown option " .. a)
  else
    pos[#pos + 1] = a
  end
  i = i + 1
end
if #pos < 2 then usage() end
local dir, seed0 = pos[1], tonumber(pos[2])
local steps, images = tonumber(pos[3] or 60), tonumber(pos[4] or 16)
local nseeds, reopen_every = tonumber(opts.n), tonumber(opts.c)
if not (seed0 and steps and images and nseeds and reopen_every) then usage() end

local names = {}
if opts.s then
  for name in opts.s:gmatch("[^,]+") do
    if not subjects[name] or type(subjects[name]) ~= "table" or not subjects[name].new then
      usage("no subject " .. name)
    end
    names[#names + 1] = name
  end
else
  names = subjects.available()
end
if opts.r and (#names ~= 1 or nseeds ~= 1) then usage("-r replays one subject and one seed") end

local total = CH.new_stats()
local t0 = os.clock()
local wall0 = os.time()
for _, name in ipairs(names) do
  for s = seed0, seed0 + nseeds - 1 do
    local st = CH.run { subject = subjects[name], seed = s, steps = steps, images = images, dir = dir,
                        reopen_every = reopen_every, replay = opts.r, verbose = opts.v }
    print(CH.summary_line(name, s, st))
    io.stdout:flush()
    CH.add(total, st)
  end
end
print(string.format("crash_lua: images checked %d, violations %d, barriers %d, reopen-continue cycles %d "
  .. "(%d fell back to S(k-1), %d with a whole rejected root, %d reopens fell back, %d lost steps replayed; "
  .. "subjects %s, %d seeds from %d, %d steps, %d images per barrier, %.1f s cpu, %d s)",
  total.images, total.violations, total.barriers, total.reopens, total.fallbacks, total.rejected_roots,
  total.reopen_fallbacks, total.replays, table.concat(names, ","), nseeds, seed0, steps, images,
  os.clock() - t0, os.time() - wall0))
os.exit(total.violations == 0 and 0 or 1)
