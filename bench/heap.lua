-- heap.lua -- mappedpages.heap against SQLite (LuaDBI), same run.
--
-- Values of V = 1 MiB (the same bytes for both stores, no zero byte:
-- LuaDBI binds a Lua string as TEXT and reads it back up to its first
-- zero byte). SQLite through Debian's lua-dbi-sqlite3 (LuaDBI, `require
-- "DBI"`): a table (id INTEGER PRIMARY KEY, v BLOB), prepared statements,
-- journal_mode=WAL, synchronous=FULL. Both files sit in one fresh
-- directory on the disk of $TMPDIR (default /tmp; a tmpfs there is
-- refused for the current directory's file system).
--
-- 1. put: K values of 1 MiB in one transaction, commit included, on a new
--    file each round (`h:put(s)` inside pager:transaction; SQLite a
--    prepared INSERT between BEGIN and COMMIT); wall time (the commit
--    writes K MiB to the disk); target: ours >= 2x SQLite's.
-- 2. durable put: one value of 1 MiB in a durable transaction of its own
--    (ours `h:put(s)` outside a transaction; SQLite the INSERT in
--    autocommit mode), D of them per round into the file of 1's last
--    round; wall time; barriers per put from pager:info().barriers.
-- 3. get: G random values of the K, whole (`h:get(ref)`; SQLite `SELECT v
--    FROM t WHERE id = ?` and fetch); CPU time (no disk: both files are in
--    the page cache); target >= 2x.
--
-- Every figure is timed in ROUNDS interleaved rounds (ours, then SQLite's,
-- in each round; the order alternates for the durable puts), medians of
-- the rates and of per-round ratios.
--
-- Run from the repository root (or `make bench`):
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' lua5.4 bench/heap.lua [K [G [ROUNDS]]]

package.path = (arg and arg[0] or ""):gsub("[^/]*$", "") .. "lib/?.lua;" .. package.path
local kit = require "benchkit"
local mp = require "mappedpages"
local median, wall, rng = kit.median, kit.wall, kit.rng
local heap = require "mappedpages.heap"

local K = tonumber(arg and arg[1]) or 64
local G = tonumber(arg and arg[2]) or 400
local ROUNDS = tonumber(arg and arg[3]) or 5
local D = 16
local V = 1024 * 1024
local MiB = 1024 * 1024

local fmt = string.format
local clock = os.clock

local okdbi, DBI = pcall(require, "DBI")
if not okdbi then
  print("heap.lua: skipped (no LuaDBI: apt-get install lua-dbi-sqlite3)")
  return
end

---------------------------------------------------------------------------
-- scratch directory (a real disk), cleanup on every exit path

local dir, newpath, cleanup, open_pagers, open_dbs = kit.scratch("heap")

-- K distinct values of V bytes, no zero byte.
local values = {}
do
  local r = rng(7)
  local chunk = {}
  for i = 1, 4096 do chunk[i] = string.char(32 + r(95)) end
  local base4k = table.concat(chunk)
  local body = base4k:rep(V // 4096 + 1)
  for i = 1, K do values[i] = fmt("%016d", i) .. body:sub(17 + i, V + i) end
end

---------------------------------------------------------------------------
-- the two stores

local function ours_open()
  local path = newpath("mp")
  local p = assert(mp.create(path, {page_size = 4096}))
  open_pagers[p] = true
  return p, assert(heap.open(p, "blobs"))
end


local function sqlite_open()
  local db = kit.sqlite_open(DBI, newpath("sqlite"), "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
  open_dbs[db] = true
  return db
end

local function close_all()
  for p in pairs(open_pagers) do p:close() open_pagers[p] = nil end
  for db in pairs(open_dbs) do db:close() open_dbs[db] = nil end
end

---------------------------------------------------------------------------
-- 1. puts in one transaction

local function ours_put()
  local p, h = ours_open()
  local refs = {}
  local t0 = wall()
  assert(p:transaction(function()
    for i = 1, K do refs[i] = assert(h:put(values[i])) end
    return true
  end))
  local dt = wall() - t0
  return K * V / MiB / dt, p, h, refs
end

local function sqlite_put()
  local db = sqlite_open()
  local st = assert(db:prepare("INSERT INTO t (v) VALUES (?)"))
  local t0 = wall()
  db:autocommit(false)
  for i = 1, K do assert(st:execute(values[i])) end
  assert(db:commit())
  local dt = wall() - t0
  db:autocommit(true)
  st:close()
  return K * V / MiB / dt, db
end

---------------------------------------------------------------------------
-- 2. durable puts, one transaction each

local function ours_durable(p, h)
  local b0 = p:info().barriers
  local t0 = wall()
  for i = 1, D do assert(h:put(values[i])) end
  local dt = wall() - t0
  return D * V / MiB / dt, (p:info().barriers - b0) / D
end

local function sqlite_durable(db)
  local st = assert(db:prepare("INSERT INTO t (v) VALUES (?)"))
  local t0 = wall()
  for i = 1, D do assert(st:execute(values[i])) end
  local dt = wall() - t0
  st:close()
  return D * V / MiB / dt
end

---------------------------------------------------------------------------
-- 3. gets

local function ours_get(h, refs, picks)
  local t0 = clock()
  local n = 0
  for i = 1, #picks do n = n + #h:get(refs[picks[i]]) end
  local dt = clock() - t0
  return n / MiB / dt, n
end

local function sqlite_get(db, picks)
  local st = assert(db:prepare("SELECT v FROM t WHERE id = ?"))
  local t0 = clock()
  local n = 0
  for i = 1, #picks do
    st:execute(picks[i])
    n = n + #st:fetch(false)[1]
  end
  local dt = clock() - t0
  st:close()
  return n / MiB / dt, n
end

---------------------------------------------------------------------------
-- run

local function main()
  print(fmt("heap.lua: values of 1 MiB; K = %d puts in one transaction, D = %d durable puts, "
            .. "G = %d gets, %d rounds; files in %s", K, D, G, ROUNDS, dir))
  local res = {put = {o = {}, s = {}, r = {}}, durable = {o = {}, s = {}, r = {}},
               get = {o = {}, s = {}, r = {}}}
  local function note(k, o, s)
    local e = res[k]
    e.o[#e.o + 1], e.s[#e.s + 1], e.r[#e.r + 1] = o, s, o / s
  end
  local p, h, refs, db
  for k = 1, ROUNDS do
    if k > 1 then close_all() end
    local o, s
    o, p, h, refs = ours_put()
    s, db = sqlite_put()
    note("put", o, s)
    collectgarbage()
  end
  -- the file holds K values; check them once (and the runs of their pages)
  assert(h:check())
  local runs = 0
  local own = h:owned().regular
  local prev
  for _, id in ipairs(own) do
    if id ~= (prev or -2) + 1 then runs = runs + 1 end
    prev = id
  end
  local r = rng(42)
  local picks = {}
  for i = 1, G do picks[i] = r(K) end
  for _ = 1, ROUNDS do
    local o, n1 = ours_get(h, refs, picks)
    local s, n2 = sqlite_get(db, picks)
    assert(n1 == n2 and n1 == G * V, ("the two stores disagree: %d and %d bytes, want %d"):format(n1, n2, G * V))
    note("get", o, s)
    collectgarbage()
  end
  for _ = 1, 8 do
    local i = r(K)
    assert(h:get(refs[i]) == values[i], "a value read back differs")
  end
  local barriers = {}
  for k = 1, ROUNDS do
    local o, b, s
    if k % 2 == 1 then
      o, b = ours_durable(p, h)
      s = sqlite_durable(db)
    else
      s = sqlite_durable(db)
      o, b = ours_durable(p, h)
    end
    barriers[#barriers + 1] = b
    note("durable", o, s)
    collectgarbage()
  end
  -- where a put's and a get's time goes, in the same run
  local one = values[1]
  local ids = assert(p:alloc_bulk(V // 4096))
  table.sort(ids)
  local M2 = 200
  -- median of 5 batches, each after a full collection (the strings made
  -- are 1 MiB of garbage each)
  local function us(fn)
    local batches = {}
    fn()
    for b = 1, 5 do
      collectgarbage()
      local t0 = clock()
      for _ = 1, M2 // 5 do fn() end
      batches[b] = (clock() - t0) / (M2 // 5) * 1e6
    end
    return median(batches)
  end
  local scatter_us = us(function() p:scatter(ids, 0, one) end)
  local gather_us = us(function() return p:gather(ids, 0, V) end)
  local split = {}
  for i = 1, #ids do split[i] = ids[i] end
  split[1], split[2] = split[2], split[1]
  local gather2_us = us(function() return p:gather(split, 0, V) end)
  local copy_us = us(function() return one:sub(2) end)
  local st = h:stats()
  close_all()
  print()
  print("| figure | mappedpages MB/s | SQLite MB/s | ratio (median of rounds) | target | met |")
  print("|---|---:|---:|---:|---:|---|")
  local rows = {
    {"put", fmt("put of %d values of 1 MiB in one transaction (commit included, wall time)", K), 2},
    {"get", "get of a whole 1 MiB value (CPU time)", 2},
    {"durable", "durable put of one 1 MiB value (own transaction, wall time)", nil},
  }
  for _, row in ipairs(rows) do
    local e = res[row[1]]
    local ratio = median(e.r)
    print(fmt("| %s | %.0f | %.0f | %.2f | %s | %s |", row[2], median(e.o), median(e.s), ratio,
              row[3] and fmt(">= %.1f", row[3]) or "-", row[3] and (ratio >= row[3] and "yes" or "no") or "-"))
  end
  print()
  print(fmt("durable put: %.2f barriers per put (pager:info().barriers: the pages' bytes are made "
            .. "durable before the root that links them in)", median(barriers)))
  print(fmt("layout: %d values in %d data pages, %d runs of consecutive pages; efficiency %.4f",
            K, #own, runs, st.efficiency))
  print(fmt("1 MiB: pager:scatter %.0f us, pager:gather %.0f us over consecutive pages (one copy), "
            .. "%.0f us over a split list (two copies); a 1 MiB string copy (s:sub(2)) %.0f us "
            .. "(each making a new 1 MiB string includes what malloc and the collector cost for it)",
            scatter_us, gather_us, gather2_us, copy_us))
end

local ok, err = xpcall(main, debug.traceback)
cleanup()
if not ok then error(err, 0) end
