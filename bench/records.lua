-- records.lua -- mappedpages.records against SQLite (LuaDBI), same run.
--
-- The record: 8 fields, 64 bytes (a b c d: i64, e f g h: f64); SQLite's
-- table has the same 8 columns (INTEGER, REAL) and an INTEGER PRIMARY KEY
-- (the rowid). SQLite through Debian's lua-dbi-sqlite3 (LuaDBI, `require
-- "DBI"`): prepared statements, journal_mode=WAL, synchronous=FULL. Both
-- files sit in one fresh directory on the disk of $TMPDIR (default /tmp;
-- a tmpfs there is refused for the current directory's file system).
--
-- 1. insert: N = 100,000 inserts of a 64-byte record in one transaction,
--    commit included, on a new file (table) each round; target: ours >= 2x
--    SQLite's (a prepared INSERT between BEGIN and COMMIT).
-- 2. get: G random ids of a table of N records (made once); ours `t:get(id)`,
--    SQLite `SELECT ... WHERE id = ?` and `fetch(true)`: the whole row as a
--    Lua table in both; target >= 3x.
-- 3. durable update: one record changed (`t:set(id, "a", v)` outside a
--    transaction: one durable commit; SQLite `UPDATE t SET a = ? WHERE id = ?`
--    in autocommit mode: one commit each) for SLICE seconds per round;
--    barriers per op from pager:info().barriers; target >= 1.1x with one
--    barrier.
--
-- Every figure is timed in ROUNDS interleaved rounds (ours, then SQLite's,
-- in each round), medians of the rates and of per-round ratios. CPU time
-- (os.clock) for 1 and 2, wall time for 3 (it waits for the disk).
--
-- Run from the repository root (or `make bench`):
--   LUA_PATH_5_4='lua/?.lua;lua/?/init.lua;;' LUA_CPATH_5_4='build/?.so;;' lua5.4 bench/records.lua [N [G [ROUNDS]]]

package.path = (arg and arg[0] or ""):gsub("[^/]*$", "") .. "lib/?.lua;" .. package.path
local kit = require "benchkit"
local mp = require "mappedpages"
local median, wall, rng = kit.median, kit.wall, kit.rng
local records = require "mappedpages.records"

local N = tonumber(arg and arg[1]) or 100000
local G = tonumber(arg and arg[2]) or 200000
local ROUNDS = tonumber(arg and arg[3]) or 5
local SLICE, UPDATE_ROUNDS = 0.5, 2 * ROUNDS

local fmt = string.format
local clock = os.clock

local okdbi, DBI = pcall(require, "DBI")
if not okdbi then
  print("records.lua: skipped (no LuaDBI: apt-get install lua-dbi-sqlite3)")
  return
end

local SCHEMA = [[
  record row { a: i64  b: i64  c: i64  d: i64  e: f64  f: f64  g: f64  h: f64 }
]]

---------------------------------------------------------------------------
-- scratch directory (a real disk), cleanup on every exit path

local dir, newpath, cleanup, open_pagers, open_dbs = kit.scratch("records")

local function row_of(i)
  return {a = i, b = i * 3, c = -i, d = i * 7, e = i * 0.5, f = i * 0.25, g = -i * 1.5, h = i / 3}
end

---------------------------------------------------------------------------
-- the two stores

local function ours_open()
  local path = newpath("mp")
  local p = assert(mp.create(path, {page_size = 4096}))
  open_pagers[p] = true
  return p, assert(records.open(p, "rows", SCHEMA))
end

local function ours_close(p)
  p:close()
  open_pagers[p] = nil
end


local function sqlite_open()
  local db = kit.sqlite_open(DBI, newpath("sqlite"),
                             "CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER, b INTEGER, "
                             .. "c INTEGER, d INTEGER, e REAL, f REAL, g REAL, h REAL)")
  open_dbs[db] = true
  return db
end

local function sqlite_close(db)
  db:close()
  open_dbs[db] = nil
end

---------------------------------------------------------------------------
-- 1. inserts in one transaction

-- Copies of protected pages a transaction makes: its first
-- pager:write_protected of each page (the per-transaction writer cache
-- should make every later write of that page reuse it).
local Pager = mp._Pager_methods
local function counting(fn)
  local real = Pager.write_protected
  local calls, pages = 0, {}
  Pager.write_protected = function(self, pid)
    calls = calls + 1
    pages[pid] = true
    return real(self, pid)
  end
  local ok, a, b = pcall(fn)
  Pager.write_protected = real
  if not ok then error(a, 0) end
  local distinct = 0
  for _ in pairs(pages) do distinct = distinct + 1 end
  return a, b, calls, distinct
end

local function ours_insert(n)
  local p, t = ours_open()
  local rows = {}
  for i = 1, n do rows[i] = row_of(i) end
  local dt, _, calls, distinct = counting(function()
    local t0 = clock()
    assert(p:transaction(function()
      for i = 1, n do t:insert(rows[i]) end
      return true
    end))
    return clock() - t0
  end)
  assert(t:count() == n)
  local pages = t:stats().pages
  ours_close(p)
  return n / dt, {calls = calls, distinct = distinct, pages = pages}
end

local function sqlite_insert(n)
  local db = sqlite_open()
  local rows = {}
  for i = 1, n do rows[i] = row_of(i) end
  local st = assert(db:prepare("INSERT INTO t (a, b, c, d, e, f, g, h) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"))
  local t0 = clock()
  db:autocommit(false)
  for i = 1, n do
    local r = rows[i]
    st:execute(r.a, r.b, r.c, r.d, r.e, r.f, r.g, r.h)
  end
  assert(db:commit())
  local dt = clock() - t0
  db:autocommit(true)
  st:close()
  sqlite_close(db)
  return n / dt
end

---------------------------------------------------------------------------
-- 2. gets by random id

local function populate_ours(n)
  local p, t = ours_open()
  assert(p:transaction(function()
    for i = 1, n do t:insert(row_of(i)) end
    return true
  end))
  return p, t
end

local function populate_sqlite(n)
  local db = sqlite_open()
  local st = assert(db:prepare("INSERT INTO t (a, b, c, d, e, f, g, h) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"))
  db:autocommit(false)
  for i = 1, n do
    local r = row_of(i)
    st:execute(r.a, r.b, r.c, r.d, r.e, r.f, r.g, r.h)
  end
  assert(db:commit())
  db:autocommit(true)
  st:close()
  return db
end

local function ours_get(t, ids)
  local t0 = clock()
  local sum = 0
  for i = 1, #ids do sum = sum + t:get(ids[i]).a end
  local dt = clock() - t0
  return #ids / dt, sum
end

local function sqlite_get(db, ids)
  local st = assert(db:prepare("SELECT id, a, b, c, d, e, f, g, h FROM t WHERE id = ?"))
  local t0 = clock()
  local sum = 0
  for i = 1, #ids do
    st:execute(ids[i])
    sum = sum + st:fetch(true).a
  end
  local dt = clock() - t0
  st:close()
  return #ids / dt, sum
end

---------------------------------------------------------------------------
-- 3. durable single-record updates

local function ours_update(p, t, r)
  local b0 = p:info().barriers
  local n = 0
  local t0 = wall()
  local stop = t0 + SLICE
  repeat
    for _ = 1, 10 do
      n = n + 1
      assert(t:set(r(N), "a", n))
    end
  until wall() >= stop
  local dt = wall() - t0
  return n / dt, (p:info().barriers - b0) / n
end

local function sqlite_update(db, r)
  local st = assert(db:prepare("UPDATE t SET a = ? WHERE id = ?"))
  local n = 0
  local t0 = wall()
  local stop = t0 + SLICE
  repeat
    for _ = 1, 10 do
      n = n + 1
      assert(st:execute(n, r(N)))
    end
  until wall() >= stop
  local dt = wall() - t0
  st:close()
  return n / dt
end

---------------------------------------------------------------------------
-- run

local function main()
  print(fmt("records.lua: N = %d records of 64 bytes, G = %d gets, %d rounds; files in %s",
            N, G, ROUNDS, dir))
  local res = {insert = {o = {}, s = {}, r = {}}, get = {o = {}, s = {}, r = {}},
               update = {o = {}, s = {}, r = {}}}
  local function note(k, o, s)
    local e = res[k]
    e.o[#e.o + 1], e.s[#e.s + 1], e.r[#e.r + 1] = o, s, o / s
  end
  local writes
  for _ = 1, ROUNDS do
    local o
    o, writes = ours_insert(N)
    note("insert", o, sqlite_insert(N))
    collectgarbage()
  end
  local p, t = populate_ours(N)
  local db = populate_sqlite(N)
  local r = rng(42)
  local ids = {}
  for i = 1, G do ids[i] = r(N) end
  local barriers = {}
  for _ = 1, ROUNDS do
    local o, s1 = ours_get(t, ids)
    local s, s2 = sqlite_get(db, ids)
    assert(s1 == s2, "the two stores disagree")
    note("get", o, s)
    collectgarbage()
  end
  for k = 1, UPDATE_ROUNDS do
    -- alternate which goes first, so neither always follows the other's checkpoint
    local o, b, s
    if k % 2 == 1 then
      o, b = ours_update(p, t, r)
      s = sqlite_update(db, r)
    else
      s = sqlite_update(db, r)
      o, b = ours_update(p, t, r)
    end
    barriers[#barriers + 1] = b
    note("update", o, s)
  end
  -- where an insert's and a get's time goes, in the same run
  local rec = t:record()
  local sample = row_of(7)
  local M2 = 200000
  local t0 = clock()
  for _ = 1, M2 do rec.flatten(sample) end
  local flatten_ns = (clock() - t0) / M2 * 1e9
  local vals = {rec.flatten(sample)}
  t0 = clock()
  for _ = 1, M2 do rec.build(table.unpack(vals, 1, 8)) end
  local build_ns = (clock() - t0) / M2 * 1e9
  t0 = clock()
  for _ = 1, M2 do table.unpack(vals, 1, 8) end
  build_ns = build_ns - (clock() - t0) / M2 * 1e9
  local v = p:protected(t.pids[0])
  t0 = clock()
  for _ = 1, M2 do v:unpack(16, "<i8") end
  local call_ns = (clock() - t0) / M2 * 1e9
  assert(t:check())
  ours_close(p)
  sqlite_close(db)
  print()
  print("| figure | mappedpages ops/s | SQLite ops/s | ratio (median of rounds) | target | met |")
  print("|---|---:|---:|---:|---:|---|")
  local rows = {
    {"insert", fmt("%d inserts of a 64-byte record in one transaction", N), 2},
    {"get", "get by random id (whole row as a Lua table)", 3},
    {"update", "durable single-record update (own transaction)", 1.1},
  }
  for _, row in ipairs(rows) do
    local e = res[row[1]]
    local ratio = median(e.r)
    print(fmt("| %s | %.0f | %.0f | %.2f | >= %.1f | %s |", row[2], median(e.o), median(e.s), ratio,
              row[3], ratio >= row[3] and "yes" or "no"))
  end
  print()
  print(fmt("durable update: %.3f barriers per op (pager:info().barriers)", median(barriers)))
  print(fmt("insert: %.0f ns per insert, of which the schema's rec.flatten (checking the Lua table) %.0f ns; "
            .. "get: %.0f ns per get, of which rec.build (making the table) %.0f ns; "
            .. "one binding call (protected view:unpack(16, \"<i8\")) %.0f ns",
            1e9 / median(res.insert.o), flatten_ns, 1e9 / median(res.get.o), build_ns, call_ns))
  print(fmt("insert: %d records in one transaction made %d writers of %d distinct pages "
            .. "(the table has %d pages): each page copied once", N, writes.calls, writes.distinct,
            writes.pages))
end

local ok, err = xpcall(main, debug.traceback)
cleanup()
if not ok then error(err, 0) end
