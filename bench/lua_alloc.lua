-- lua_alloc.lua -- allocation from Lua: O(1) scaling and durable rate.
--
-- 1. Scaling, as bench/alloc_scale.c but through the Lua binding: files of
--    1 KiB pages with N = 1,000 and N = 10,000,000 allocated pages (set up
--    with one pager:alloc_bulk(N), i.e. one transaction); then, inside
--    transactions, M = 1,000,000 x (pager:alloc() + pager:free() of a
--    random live page), committed; then M allocs
--    alone and M frees alone of random live pages, rolled back.  The pair
--    transaction runs twice: the first grows the file (pages freed in a
--    transaction are reusable only after it commits), the second reuses
--    what the first freed.  Per-call costs are CPU time (os.clock).  (Commit
--    times are in alloc_scale.c: Lua has no fine wall clock, and the
--    commit is the same C code either way.)
--    Target (README, "Benchmarks"): at 10M within 1.5x of the cost at 1,000.
--
-- 2. Durable rate: auto-commit pager:alloc() (each call one durable
--    transaction) per second, 4 KiB pages, interleaved with the raw
--    pwrite 4 KiB + fdatasync rate measured by `commit_rate --raw-only`
--    (Lua cannot fdatasync by itself), 6 rounds of 0.5 s each, medians;
--    the ratio is the median of per-round ratios.  Wall time comes from
--    /proc/uptime (10 ms resolution, fine for 0.5 s slices).  Without the
--    C helper (build it with `make build/bench/commit_rate`) only the Lua
--    rate is printed.
--
-- Run from the repository root (or `make bench`):
--   LUA_PATH_5_4='lua/?.lua;lua/?/init.lua;;' LUA_CPATH_5_4='build/?.so;;' lua5.4 bench/lua_alloc.lua [BIG_N [M]]

package.path = (arg and arg[0] or ""):gsub("[^/]*$", "") .. "lib/?.lua;" .. package.path
local kit = require "benchkit"
local mp = require "mappedpages"
local median, wall = kit.median, kit.wall

local BIG = tonumber(arg and arg[1]) or 10000000
local M = tonumber(arg and arg[2]) or 1000000
local SMALL = 1000
local DURABLE_ROUNDS, SLICE = 6, 0.5

local clock, remove, tmpname, getenv = os.clock, os.remove, os.tmpname, os.getenv
local random, randomseed = math.random, math.randomseed
local fmt = string.format

local tmp = tmpname()   -- a unique name; our files sit next to it
local open_pagers, made = {}, {}

local function newfile(suffix)
  local path = tmp .. suffix
  made[#made + 1] = path
  return path
end

local function cleanup()
  for p in pairs(open_pagers) do p:close() end
  for _, path in ipairs(made) do remove(path) end
  remove(tmp)
end

-- ---- 1. scaling ------------------------------------------------------------

local function scale(n, suffix)
  local path = newfile(suffix)
  local r = {n = n}
  randomseed(42)
  local t0 = wall()
  local p = assert(mp.create(path, {page_size = 1024}))
  open_pagers[p] = true
  local live = p:alloc_bulk(n)            -- one durable transaction
  r.setup = wall() - t0

  r.pair = {}
  for rep = 1, 2 do
    local tx = p:begin()
    local c0 = clock()
    for _ = 1, M do
      local id = p:alloc()
      local j = random(n)
      p:free(live[j])
      live[j] = id
    end
    r.pair[rep] = (clock() - c0) / M * 1e9
    assert(tx:commit())
  end

  -- the loop's own work without the library: random pick, live[] update
  -- (at 10M, live is a 160 MB table: a cache miss per pick)
  local c0 = clock()
  for _ = 1, M do
    local j = random(n)
    live[j] = live[j] + 0
  end
  r.harness = (clock() - c0) / M * 1e9

  -- allocs alone, into a fresh table (appending to the 10M-entry one
  -- would time Lua's rehash of it)
  local tx = p:begin()
  local extra = {}
  c0 = clock()
  for k = 1, M do extra[k] = p:alloc() end
  r.alloc = (clock() - c0) / M * 1e9
  -- M distinct random pages of the N + M live ones, picked before timing
  -- (partial Fisher-Yates over live .. extra)
  local total = n + M
  local function get(i) if i <= n then return live[i] end return extra[i - n] end
  local function set(i, v) if i <= n then live[i] = v else extra[i - n] = v end end
  local picks = {}
  for k = 1, M do
    local j = random(k, total)
    local a, b = get(k), get(j)
    set(k, b)
    set(j, a)
    picks[k] = b
  end
  c0 = clock()
  for k = 1, M do p:free(picks[k]) end
  r.free = (clock() - c0) / M * 1e9
  tx:rollback()

  r.pages = p:page_count()
  p:close()
  open_pagers[p] = nil
  remove(path)
  return r
end

-- ---- 2. durable rate -------------------------------------------------------

local function raw_helper()
  local build = getenv("MP_BUILD") or "build"
  local bin = build .. "/bench/commit_rate"
  local f = io.open(bin)
  if not f then return nil end
  f:close()
  return function()
    local h = io.popen(fmt("%s --raw-only --seconds %g --rounds 1", bin, SLICE))
    local out = h:read("a")
    h:close()
    return tonumber(out:match("raw_ops_per_s%s+([%d.]+)"))
  end
end

local function durable()
  local path = newfile("-durable.mp")
  local p = assert(mp.create(path, {page_size = 4096}))
  open_pagers[p] = true
  local raw = raw_helper()
  local luar, rawr, ratio = {}, {}, {}
  for k = 1, DURABLE_ROUNDS do
    if raw then rawr[k] = raw() end
    local ids, n = {}, 0
    local t0 = wall()
    local t
    repeat
      for _ = 1, 8 do
        n = n + 1
        ids[n] = p:alloc()
      end
      t = wall()
    until t - t0 >= SLICE
    luar[k] = n / (t - t0)
    p:free_bulk(ids)                     -- keep the file bounded (untimed)
    if rawr[k] then ratio[k] = luar[k] / rawr[k] end
  end
  local info = p:info()
  p:close()
  open_pagers[p] = nil
  remove(path)
  return {lua = median(luar), raw = raw and median(rawr), ratio = raw and median(ratio),
          barriers = info.barriers, commits = info.commits}
end

local function main()
  print(fmt("lua_alloc: %s; scaling with 1 KiB pages, M = %d calls per measurement", _VERSION, M))
  io.stdout:flush()
  local res = {}
  for i, n in ipairs({SMALL, BIG}) do
    res[i] = scale(n, "-" .. n .. ".mp")
    print(fmt("  N = %d done (setup %.1f s)", n, res[i].setup))
    io.stdout:flush()
  end
  print()
  print("| allocated pages N | alloc+free pair, ns (2nd txn) | loop alone, ns | pair - loop, ns "
        .. "| pair, 1st txn (file grows), ns | alloc alone, ns | free alone, ns | setup: alloc_bulk(N), s |")
  print("|---:|---:|---:|---:|---:|---:|---:|---:|")
  for _, r in ipairs(res) do
    print(fmt("| %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.1f |", r.n, r.pair[2], r.harness,
              r.pair[2] - r.harness, r.pair[1], r.alloc, r.free, r.setup))
  end
  local a, b = res[1], res[2]
  print()
  print(fmt("ratios N=%d / N=%d (same run; target <= 1.5):", b.n, a.n))
  print(fmt("  alloc+free pair  %.2f   (net of the loop: %.2f; 1st txn: %.2f)", b.pair[2] / a.pair[2],
            (b.pair[2] - b.harness) / (a.pair[2] - a.harness), b.pair[1] / a.pair[1]))
  print(fmt("  alloc alone      %.2f", b.alloc / a.alloc))
  print(fmt("  free alone       %.2f", b.free / a.free))

  local d = durable()
  print()
  print(fmt("durable auto-commit alloc from Lua, 4 KiB pages, %d rounds x %.1f s interleaved with raw:",
            DURABLE_ROUNDS, SLICE))
  print("| variant | ops/s (median) | vs raw |")
  print("|---|---:|---:|")
  if d.raw then
    print(fmt("| raw pwrite 4 KiB + fdatasync (commit_rate --raw-only) | %.0f | 1.00 |", d.raw))
    print(fmt("| Lua pager:alloc() auto-commit | %.0f | %.2f |", d.lua, d.ratio))
  else
    print(fmt("| Lua pager:alloc() auto-commit | %.0f | n/a (build/bench/commit_rate missing) |", d.lua))
  end
  print(fmt("barriers per commit: %.2f (%d barriers, %d commits, free_bulk and create included)",
            d.barriers / d.commits, d.barriers, d.commits))
end

local ok, err = xpcall(main, debug.traceback)
cleanup()
if not ok then error(err, 0) end
