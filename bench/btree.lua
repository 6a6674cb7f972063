-- btree.lua -- mappedpages.btree against SQLite (LuaDBI) and LMDB (C), same run.
--
-- The keys: N = 100,000 random 16-byte keys (two outputs of a 64-bit LCG,
-- seed 42, big-endian, as bench/btree_lmdb.c makes them), the value of key
-- i the 8 bytes of i. SQLite through Debian's lua-dbi-sqlite3 (prepared
-- statements, journal_mode=WAL, synchronous=FULL): `CREATE TABLE t (k BLOB
-- PRIMARY KEY, v BLOB)`, an indexed table (a rowid table and its key's
-- index). LMDB from C: build/bench/btree_lmdb with the same keys (skipped
-- with a message when it or liblmdb is missing). Files on the disk of
-- $TMPDIR (a tmpfs there is refused for the current directory's).
--
-- 1. put: N puts in one transaction, commit included, on a new file each
--    round (SQLite: INSERT between BEGIN and COMMIT); target >= SQLite's.
-- 2. get: G random keys of the tree of N keys, each get its own call
--    outside any transaction (SQLite: SELECT v FROM t WHERE k = ?,
--    autocommit); target >= SQLite's.
-- 3. scan: every key in order with its value (`for k, v in t:range()`;
--    SQLite: SELECT k, v FROM t ORDER BY k); target >= SQLite's. Also a
--    reverse scan and a range of 100 keys from a random key.
--
-- ROUNDS interleaved rounds (ours, then SQLite's), CPU time (os.clock),
-- medians of the rates and of per-round ratios.
--
-- Run from the repository root (or `make bench`):
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' lua5.4 bench/btree.lua [N [G [ROUNDS]]]

package.path = (arg and arg[0] or ""):gsub("[^/]*$", "") .. "lib/?.lua;" .. package.path
local kit = require "benchkit"
local mp = require "mappedpages"
local btree = require "mappedpages.btree"
local median, rng = kit.median, kit.rng

local N = tonumber(arg and arg[1]) or 100000
local G = tonumber(arg and arg[2]) or 200000
local ROUNDS = tonumber(arg and arg[3]) or 5
local SHORT = 100                      -- keys per short range

local fmt, spack = string.format, string.pack
local clock = os.clock

local okdbi, DBI = pcall(require, "DBI")
if not okdbi then print("btree.lua: no LuaDBI (apt-get install lua-dbi-sqlite3): SQLite skipped") end

local sh = kit.sh
local dir, newpath, cleanup, open_pagers, open_dbs = kit.scratch("btree")

-- the keys, the values, the gets
local keys, vals = {}, {}
do
  local x = 42
  for i = 1, N do
    x = x * 6364136223846793005 + 1442695040888963407
    local hi = x
    x = x * 6364136223846793005 + 1442695040888963407
    keys[i] = spack(">i8 >i8", hi, x)
    vals[i] = spack("<i8", i)
  end
end
local picks = {}
do
  local r = rng(7)
  for i = 1, G do picks[i] = r(N) end
end
local sorted = {}
for i = 1, N do sorted[i] = keys[i] end
table.sort(sorted)

---------------------------------------------------------------------------
-- ours

local function ours_new()
  local p = assert(mp.create(newpath("mp"), {page_size = 4096}))
  open_pagers[p] = true
  return p, assert(btree.open(p, "t"))
end

local function ours_close(p)
  p:close()
  open_pagers[p] = nil
end

local function ours_put()
  local p, t = ours_new()
  local t0 = clock()
  assert(p:transaction(function()
    for i = 1, N do t:put(keys[i], vals[i]) end
    return true
  end))
  local dt = clock() - t0
  assert(t:count() == N)
  return N / dt, p, t
end

local function ours_get(t)
  local t0 = clock()
  local n = 0
  for i = 1, G do
    if t:get(keys[picks[i]]) then n = n + 1 end
  end
  local dt = clock() - t0
  assert(n == G)
  return G / dt
end

local function ours_scan(t, reverse)
  local t0 = clock()
  local n = 0
  local opts = reverse and {reverse = true} or nil
  for _, v in t:range(nil, nil, opts) do if v then n = n + 1 end end
  local dt = clock() - t0
  assert(n == N)
  return N / dt
end

local function ours_short(t)
  local t0 = clock()
  local n = 0
  for i = 1, 2000 do
    local c = 0
    for _ in t:range(keys[picks[i]]) do
      c = c + 1
      if c == SHORT then break end
    end
    n = n + c
  end
  return n / (clock() - t0)
end

---------------------------------------------------------------------------
-- SQLite


local function sqlite_new()
  local db = kit.sqlite_open(DBI, newpath("sqlite"), "CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB)")
  open_dbs[db] = true
  return db
end

local function sqlite_put()
  local db = sqlite_new()
  local st = assert(db:prepare("INSERT INTO t (k, v) VALUES (?, ?)"))
  local t0 = clock()
  db:autocommit(false)
  for i = 1, N do st:execute(keys[i], vals[i]) end
  assert(db:commit())
  local dt = clock() - t0
  db:autocommit(true)
  st:close()
  return N / dt, db
end

local function sqlite_get(db)
  local st = assert(db:prepare("SELECT v FROM t WHERE k = ?"))
  local t0 = clock()
  local n = 0
  for i = 1, G do
    st:execute(keys[picks[i]])
    if st:fetch(false) then n = n + 1 end
  end
  local dt = clock() - t0
  st:close()
  assert(n == G)
  return G / dt
end

local function sqlite_scan(db, reverse)
  local st = assert(db:prepare("SELECT k, v FROM t ORDER BY k" .. (reverse and " DESC" or "")))
  local t0 = clock()
  local n = 0
  st:execute()
  for row in st:rows(false) do if row[2] then n = n + 1 end end
  local dt = clock() - t0
  st:close()
  assert(n == N)
  return N / dt
end

local function sqlite_short(db)
  local st = assert(db:prepare("SELECT k, v FROM t WHERE k >= ? ORDER BY k LIMIT " .. SHORT))
  local t0 = clock()
  local n = 0
  for i = 1, 2000 do
    st:execute(keys[picks[i]])
    for _ in st:rows(false) do n = n + 1 end
  end
  local dt = clock() - t0
  st:close()
  return n / dt
end

---------------------------------------------------------------------------
-- LMDB

local function lmdb()
  local build = os.getenv("BUILD") or "build"
  local exe = build .. "/bench/btree_lmdb"
  local f = io.open(exe)
  if not f then return nil, "LMDB skipped: " .. exe .. " is not built (make " .. exe .. ")" end
  f:close()
  local out = sh(fmt("TMPDIR='%s' %s --keys %d --gets %d --rounds %d", dir, exe, N, G, ROUNDS))
  local r = {}
  for what, rate in out:gmatch("lmdb (%a+) (%d+)") do r[what] = tonumber(rate) end
  if not r.put then return nil, "LMDB skipped: " .. out end
  return r, out:match("^[^\n]*")
end

---------------------------------------------------------------------------
-- run

local function main()
  print(fmt("btree.lua: N = %d keys of 16 bytes (8-byte values), G = %d gets, %d rounds; files in %s",
            N, G, ROUNDS, dir))
  local figures = {"put", "get", "scan", "reverse", "short"}
  local res = {}
  for _, k in ipairs(figures) do res[k] = {o = {}, s = {}, r = {}} end
  local function note(k, o, s)
    local e = res[k]
    e.o[#e.o + 1] = o
    if s then e.s[#e.s + 1], e.r[#e.r + 1] = s, o / s end
  end
  local height, pages
  for _ = 1, ROUNDS do
    local o, p, t = ours_put()
    local s, db
    if okdbi then s, db = sqlite_put() end
    note("put", o, s)
    collectgarbage()
    note("get", ours_get(t), db and sqlite_get(db))
    note("scan", ours_scan(t), db and sqlite_scan(db))
    note("reverse", ours_scan(t, true), db and sqlite_scan(db, true))
    note("short", ours_short(t), db and sqlite_short(db))
    height, pages = t:stats().height, t:stats().pages
    assert(t:check())
    ours_close(p)
    if db then db:close() open_dbs[db] = nil end
    collectgarbage()
  end
  local lm, lmsg = lmdb()
  print(lm and lmsg or lmsg)
  print()
  print("| figure | mappedpages ops/s | SQLite ops/s | ratio (median of rounds) "
        .. "| LMDB (C) ops/s | ours / LMDB | target |")
  print("|---|---:|---:|---:|---:|---:|---|")
  local rows = {
    {"put", fmt("%d puts in one transaction", N), "put", ">= 1 (SQLite)"},
    {"get", "get of a random key (own call, no transaction)", "get", ">= 1 (SQLite)"},
    {"scan", "scan of every key in order", "scan", ">= 1 (SQLite)"},
    {"reverse", "scan in reverse order", nil, "-"},
    {"short", fmt("ranges of %d keys from a random key (keys/s)", SHORT), nil, "-"},
  }
  for _, row in ipairs(rows) do
    local e = res[row[1]]
    local o = median(e.o)
    local l = lm and row[3] and lm[row[3]]
    print(fmt("| %s | %.0f | %s | %s | %s | %s | %s |", row[2], o,
              #e.s > 0 and fmt("%.0f", median(e.s)) or "-",
              #e.r > 0 and fmt("%.2f", median(e.r)) or "-",
              l and fmt("%.0f", l) or "-", l and fmt("%.3f", o / l) or "-", row[4]))
  end
  print()
  print(fmt("the tree: height %d, %d pages of 4 KiB", height, pages))
end

local ok, err = xpcall(main, debug.traceback)
cleanup()
if not ok then error(err, 0) end
