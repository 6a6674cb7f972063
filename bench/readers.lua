-- readers.lua -- readers beside a writer: what they cost the writer's
-- durable commits, and what a reader's refresh and lookups cost.
--
-- The file: 4 KiB pages, one protected page P holding a counter, in a
-- fresh directory on the disk of $TMPDIR (a tmpfs there is refused for
-- the current directory's file system).
--
-- 1. Durable commit rate of the writer, one commit = one protected page
--    rewrite (`w:write_protected(P)`, pack the counter, `commit()`): the
--    page's old copy is freed by every commit, so every commit takes the
--    commit lock and asks which snapshots readers hold (csrc/commit.c
--    settle_frees, csrc/readers.c). Three kinds of rounds, interleaved
--    (0, R, burn, 0, R, burn, ...), SECONDS of commits each, wall time:
--      0     no reader;
--      R     R reader processes (bench/lib/reader_loop.lua, lua5.4 with
--            this run's package paths), each `refresh()` then a read of P
--            in a tight loop, started before the round and stopped after;
--      burn  R processes spinning in a Lua loop without any file: the same
--            demand for CPU (2 cores here), no locks, no refreshes.
--    Ratios R / 0 and burn / 0 are medians of per-round ratios (each round
--    against the 0-round before it). Also: barriers per commit, median
--    and max commit latency (lua-system's monotonic clock, which busted
--    brings), the writer's CPU time per commit (less at the disk's mercy
--    than the rate: it shows what the readers add to the commit path),
--    readers' lookups/s and how many saw a new commit, held pages
--    and file growth after the run. Target: R / 0 >= 0.9.
-- 2. A reader's refresh and lookups, writer and reader in this process:
--    refresh when nothing changed; refresh after one commit of the writer
--    (only the refresh timed); a read of P and a B-tree get of a random
--    key (10,000 keys) on the reader against the same on the writer; CPU
--    time, medians of ROUNDS interleaved rounds. The reader's barriers
--    (must stay 0). Then a reader that does not refresh while the writer
--    commits: the pages it holds and what the file grows by.
--
-- Run from the repository root (or `make bench`):
--   LUA_PATH_5_4='lua/?.lua;lua/?/init.lua;;' LUA_CPATH_5_4='build/?.so;;' \
--     lua5.4 bench/readers.lua [SECONDS [ROUNDS [R]]]
-- READERS_QUICK=1 makes the defaults 0.3 s and 3 rounds (about 10 s);
-- READERS_NICE=N starts the children with nice -n N.

package.path = (arg and arg[0] or ""):gsub("[^/]*$", "") .. "lib/?.lua;" .. package.path
local kit = require "benchkit"
local mp = require "mappedpages"
local btree = require "mappedpages.btree"
local median, range, rng = kit.median, kit.range, kit.rng

local quick = os.getenv("READERS_QUICK") == "1"
-- READERS_NICE=19 runs the children (readers and burners alike) at that
-- nice level: on a machine with fewer cores than processes, it tells the
-- CPU the children take from what the readers' refreshes and locks cost
-- the writer
local nice_level = tonumber(os.getenv("READERS_NICE") or "")
local NICE = nice_level and ("nice -n " .. nice_level .. " ") or ""
local SECONDS = tonumber(arg and arg[1]) or (quick and 0.3 or 1.5)
local ROUNDS = tonumber(arg and arg[2]) or (quick and 3 or 6)
local R = tonumber(arg and arg[3]) or 4
local KEYS = 10000                    -- part 2's B-tree
local LOOKUPS = quick and 20000 or 100000
local REFRESHES = quick and 300 or 1500   -- refreshes after a commit (each after a durable commit)
local STALE = 200                     -- commits beside a reader that does not refresh

local fmt, spack = string.format, string.pack
local clock, remove = os.clock, os.remove
local max = math.max

local oksys, system = pcall(require, "system")
local mono = oksys and system.monotime or nil
if not mono then
  -- whole hundredths of a second: rates stay right, latencies are not shown
  mono = kit.wall
end

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local lua = arg and arg[-1] or "lua5.4"
local dir, newpath, cleanup, open_pagers = kit.scratch("readers")

local function shq(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

---------------------------------------------------------------------------
-- the writer and its commit

local function open_writer()
  local path = newpath("mp")
  local w = assert(mp.create(path, {page_size = 4096}))
  open_pagers[w] = true
  local pid = assert(w:alloc_protected())
  return w, pid, path
end

local counter = 0
local function commit_one(w, pid)
  counter = counter + 1
  local wr = assert(w:write_protected(pid))
  wr:pack(0, "<i8", counter)
  assert(wr:commit())
end

-- commits for `seconds` of wall time: rate, median and max latency (s),
-- the writer's CPU time per commit (s)
local function commit_round(w, pid, seconds)
  local lat = {}
  local n, worst = 0, 0
  local c0 = clock()
  local start = mono()
  local stop = start + seconds
  local t = start
  repeat
    commit_one(w, pid)
    local t1 = mono()
    n = n + 1
    local d = t1 - t
    lat[n] = d
    if d > worst then worst = d end
    t = t1
  until t >= stop
  return n / (t - start), median(lat), worst, (clock() - c0) / n
end

---------------------------------------------------------------------------
-- the child processes

-- starts k children of `mode`; returns stop() -> {loops, moves, barriers}
-- summed over them
local function start_children(mode, k, path, pid)
  local runfile = newpath("run")
  assert(io.open(runfile, "w")):close()
  local env = fmt("LUA_PATH_5_4=%s LUA_CPATH_5_4=%s", shq(package.path), shq(package.cpath))
  local cmd = fmt("%s exec %s%s %s %s %s %d %s %.1f", env, NICE, shq(lua), shq(here .. "/lib/reader_loop.lua"),
                  mode, shq(path), pid, shq(runfile), SECONDS * 4 + 30)
  local kids = {}
  for i = 1, k do kids[i] = assert(io.popen(cmd, "r")) end
  for i = 1, k do
    local line = kids[i]:read("l")
    if line ~= "ready" then
      remove(runfile)
      error(fmt("readers.lua: a %s child did not start (%s)", mode, tostring(line)))
    end
  end
  return function()
    remove(runfile)
    local sum = {0, 0, 0}
    for i = 1, k do
      local line = kids[i]:read("l") or ""
      local ok, how, code = kids[i]:close()
      local a, b, c = line:match("^(%d+) (%d+) (%d+)$")
      if not (ok and a) then
        error(fmt("readers.lua: a %s child failed (%s %s, said %q)", mode, tostring(how), tostring(code), line))
      end
      sum[1], sum[2], sum[3] = sum[1] + a, sum[2] + b, sum[3] + c
    end
    return sum
  end
end

---------------------------------------------------------------------------
-- 1. the writer's commits with and without readers

local function part1()
  local w, pid, path = open_writer()
  commit_round(w, pid, SECONDS / 2)            -- warm the file and the disk
  local pages0 = w:page_count()
  local kinds = {"0", "R", "burn"}
  local res = {}
  for _, k in ipairs(kinds) do
    res[k] = {rate = {}, med = {}, worst = {}, ratio = {}, lookups = {}, moves = {}, vs_burn = {}, cpu = {}}
  end
  local b0, c0 = w:info().barriers, counter
  local held_max, readers_seen, reader_barriers = 0, 0, 0
  for _ = 1, ROUNDS do
    for _, k in ipairs(kinds) do
      local stop
      if k == "R" then stop = start_children("reader", R, path, pid) end
      if k == "burn" then stop = start_children("burn", R, path, pid) end
      local t0 = mono()
      local rate, med, worst, cpu = commit_round(w, pid, SECONDS)
      local dt = mono() - t0
      local e = res[k]
      if k == "R" then
        local info = w:info()
        held_max = max(held_max, info.held_count)
        readers_seen = max(readers_seen, info.readers)
      end
      if stop then
        local sum = stop()
        e.lookups[#e.lookups + 1] = sum[1] / dt
        e.moves[#e.moves + 1] = sum[2] / dt
        if k == "R" then reader_barriers = reader_barriers + sum[3] end
      end
      e.rate[#e.rate + 1], e.med[#e.med + 1], e.worst[#e.worst + 1] = rate, med, worst
      e.cpu[#e.cpu + 1] = cpu
      e.ratio[#e.ratio + 1] = rate / res["0"].rate[#res["0"].rate]
    end
    local rr = res.R.rate
    res.R.vs_burn[#rr] = rr[#rr] / res.burn.rate[#res.burn.rate]
  end
  local barriers = (w:info().barriers - b0) / (counter - c0)
  commit_one(w, pid)             -- no reader left: what is held goes back
  local info = w:info()
  local out = {res = res, barriers = barriers, held_max = held_max, readers_seen = readers_seen,
               reader_barriers = reader_barriers, held_after = info.held_count,
               pages0 = pages0, pages1 = w:page_count(), commits = counter - c0}
  w:close()
  open_pagers[w] = nil
  return out
end

---------------------------------------------------------------------------
-- 2. a reader's refresh and lookups, in this process

-- CPU microseconds per call of fn over n calls
local function us_per(n, fn)
  local t0 = clock()
  for _ = 1, n do fn() end
  return (clock() - t0) / n * 1e6
end

local function part2()
  local w, pid, path = open_writer()
  commit_one(w, pid)
  local t = assert(btree.open(w, "t"))
  local keys = {}
  local r1 = rng(42)
  assert(w:transaction(function()
    for i = 1, KEYS do
      keys[i] = spack(">i8 >i8", r1(1 << 40), i)
      t:put(keys[i], spack("<i8", i))
    end
    return true
  end))
  local r = assert(mp.open(path, {readonly = true}))
  open_pagers[r] = true
  local rt = assert(btree.open(r, "t"))
  local picks = {}
  for i = 1, LOOKUPS do picks[i] = keys[r1(KEYS)] end
  local rb0 = r:info().barriers

  local m = {idle = {}, after = {}, rread = {}, wread = {}, rget = {}, wget = {}, rread_r = {}, rget_r = {}}
  local function add(key, v) m[key][#m[key] + 1] = v end
  for _ = 1, ROUNDS do
    add("idle", us_per(LOOKUPS // 4, function() assert(r:refresh()) end))
    -- refresh after one commit: only the refresh is timed
    local sum = 0
    for _ = 1, REFRESHES // ROUNDS do
      commit_one(w, pid)
      local t0 = clock()
      assert(r:refresh())
      sum = sum + (clock() - t0)
    end
    add("after", sum / (REFRESHES // ROUNDS) * 1e6)
    assert(r:protected(pid):unpack(0, "<i8") == counter, "the reader does not see the last commit")
    local rv, wv = r:protected(pid), w:protected(pid)
    local rr = us_per(LOOKUPS, function() return rv:unpack(0, "<i8") end)
    local wr = us_per(LOOKUPS, function() return wv:unpack(0, "<i8") end)
    add("rread", rr)
    add("wread", wr)
    add("rread_r", rr / wr)
    local i = 0
    local function rget() i = i + 1; return assert(rt:get(picks[i])) end
    local function wget() i = i + 1; return assert(t:get(picks[i])) end
    local rg = us_per(LOOKUPS, rget)
    i = 0
    local wg = us_per(LOOKUPS, wget)
    add("rget", rg)
    add("wget", wg)
    add("rget_r", rg / wg)
  end
  local reader_barriers = r:info().barriers - rb0

  -- a reader that stays on its snapshot while the writer commits
  assert(r:refresh())
  local pages0, held0 = w:page_count(), w:info().held_count
  for _ = 1, STALE do commit_one(w, pid) end
  local stale = {held = w:info().held_count - held0, grew = w:page_count() - pages0,
                 reader_held = r:info().held_count}
  assert(r:refresh())
  commit_one(w, pid)
  stale.held_after = w:info().held_count
  r:close()
  open_pagers[r] = nil
  commit_one(w, pid)
  stale.held_closed = w:info().held_count
  w:close()
  open_pagers[w] = nil
  return m, reader_barriers, stale
end

---------------------------------------------------------------------------
-- run

local function spread(t, f)
  local lo, hi = range(t)
  return fmt(f .. ".." .. f, lo, hi)
end

local function main()
  print(fmt("readers.lua: 4 KiB pages, one protected page rewritten per durable commit; %d readers; "
            .. "%d rounds of %.1f s per kind (0 / %d readers / %d CPU burners, interleaved); files in %s",
            R, ROUNDS, SECONDS, R, R, dir))
  if not oksys then print("(no lua-system: latencies in hundredths of a second only)") end
  local p1 = part1()
  local res = p1.res
  print()
  print("| round kind | commits/s (median) | min..max | vs 0 readers (median of rounds) | min..max | "
        .. "commit latency median, us | max, us | writer CPU per commit, us | "
        .. "lookups/s of the children | of them saw a new commit, /s |")
  print("|---|---:|---|---:|---|---:|---:|---:|---:|---:|")
  local names = {["0"] = "no reader", R = R .. " reader processes (refresh + read, tight loop)",
                 burn = R .. " CPU burners (no file)"}
  for _, k in ipairs({"0", "R", "burn"}) do
    local e = res[k]
    print(fmt("| %s | %.0f | %s | %.3f | %s | %.0f | %.0f | %.1f | %s | %s |", names[k], median(e.rate),
              spread(e.rate, "%.0f"), median(e.ratio), spread(e.ratio, "%.3f"),
              median(e.med) * 1e6, select(2, range(e.worst)) * 1e6, median(e.cpu) * 1e6,
              #e.lookups > 0 and fmt("%.0f", median(e.lookups)) or "-",
              (k == "R") and fmt("%.0f", median(e.moves)) or "-"))
  end
  print()
  local ratio = median(res.R.ratio)
  print(fmt("target: %d readers / no reader >= 0.90: %.3f, %s; burners / no reader %.3f (CPU alone)",
            R, ratio, ratio >= 0.9 and "met" or "not met", median(res.burn.ratio)))
  local function list(t)
    local s = {}
    for i, v in ipairs(t) do s[i] = fmt("%.3f", v) end
    return table.concat(s, " ")
  end
  print(fmt("per round: readers / no reader %s; burners / no reader %s", list(res.R.ratio), list(res.burn.ratio)))
  print(fmt("readers / burners (the same demand for CPU): %.3f (%s per round: %s)", median(res.R.vs_burn),
            spread(res.R.vs_burn, "%.3f"), list(res.R.vs_burn)))
  print(fmt("barriers per commit %.3f over %d commits; readers' barriers %d; distinct snapshots held "
            .. "(info().readers) up to %d; held pages up to %d during reader rounds, %d after the run",
            p1.barriers, p1.commits, p1.reader_barriers, p1.readers_seen, p1.held_max, p1.held_after))
  print(fmt("file: %d pages after warm-up, %d after the run (+%d)", p1.pages0, p1.pages1, p1.pages1 - p1.pages0))

  local m, rbar, stale = part2()
  print()
  print("| reader operation (CPU time) | us (median) | min..max | on the writer, us | reader / writer |")
  print("|---|---:|---|---:|---:|")
  print(fmt("| refresh, nothing committed | %.2f | %s | - | - |", median(m.idle), spread(m.idle, "%.2f")))
  print(fmt("| refresh after one commit | %.2f | %s | - | - |", median(m.after), spread(m.after, "%.2f")))
  print(fmt("| read of a protected page (`view:unpack(0, \"<i8\")`) | %.3f | %s | %.3f | %.2f |",
            median(m.rread), spread(m.rread, "%.3f"), median(m.wread), median(m.rread_r)))
  print(fmt("| B-tree get of a random key (%d keys) | %.2f | %s | %.2f | %.2f |", KEYS, median(m.rget),
            spread(m.rget, "%.2f"), median(m.wget), median(m.rget_r)))
  print()
  print(fmt("reader's barriers over part 2: %d", rbar))
  print(fmt("a reader kept its snapshot over %d commits: %d pages held (the reader counts %d), "
            .. "file +%d pages; after it refreshed, the next commit left %d held (what that commit "
            .. "freed, which the reader's snapshot reaches); after it closed, the next %d",
            STALE, stale.held, stale.reader_held, stale.grew, stale.held_after, stale.held_closed))
end

local ok, err = xpcall(main, debug.traceback)
cleanup()
if not ok then error(err, 0) end
