--- benchkit: what the Lua benchmarks share (medians, wall time, a
-- deterministic generator). It sits in bench/lib/ because `make bench`
-- runs every bench/*.lua as a benchmark. A benchmark loads it with
--
--     package.path = (arg and arg[0] or ""):gsub("[^/]*$", "") .. "lib/?.lua;" .. package.path
--     local kit = require "benchkit"

local sort = table.sort
local format = string.format
local huge, min, max = math.huge, math.min, math.max

local M = {}

--- The median of a list of numbers (nil for an empty list); the list is
-- not changed.
function M.median(t)
  local s = {}
  for i = 1, #t do s[i] = t[i] end
  sort(s)
  local n = #s
  if n == 0 then return nil end
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return (s[n // 2] + s[n // 2 + 1]) / 2
end

--- The smallest and largest number of a list.
function M.range(t)
  local lo, hi = huge, -huge
  for i = 1, #t do lo, hi = min(lo, t[i]), max(hi, t[i]) end
  return lo, hi
end

--- Wall-clock seconds (from /proc/uptime, which has hundredths; whole
-- seconds from os.time where it is missing).
function M.wall()
  local f = io.open("/proc/uptime")
  local t = f and f:read("n")
  if f then f:close() end
  return t or os.time()
end

--- A deterministic generator, independent of math.random: the function
-- it returns gives r(n) in 1..n.
function M.rng(seed)
  local x = seed
  return function(n)
    x = x * 6364136223846793005 + 1442695040888963407
    return ((x >> 33) % n) + 1
  end
end

--- The output of a shell command, trailing white space removed.
function M.sh(cmd)
  local f = io.popen(cmd)
  local out = f:read("a")
  f:close()
  return (out:gsub("%s+$", ""))
end

--- A scratch directory on a real disk ($TMPDIR, or the current directory
-- when that is a tmpfs: a benchmark of durable commits must hit a disk).
-- Returns the directory, newpath(ext) (a fresh file name in it), cleanup()
-- (closes what is registered in the two tables, removes the directory:
-- call it on every exit path), and the tables to register open pagers and
-- database handles in (as keys).
function M.scratch(name)
  local base = os.getenv("TMPDIR") or "/tmp"
  if M.sh("stat -f -c %T " .. base .. " 2>/dev/null") == "tmpfs" then base = "." end
  local dir = M.sh("mktemp -d " .. base .. "/mpbench-" .. name .. "-XXXXXX")
  assert(dir ~= "", "cannot make a scratch directory")
  local open_pagers, open_dbs = {}, {}
  local function cleanup()
    for p in pairs(open_pagers) do pcall(p.close, p) end
    for db in pairs(open_dbs) do pcall(db.close, db) end
    os.execute("rm -rf '" .. dir .. "'")
  end
  local counter = 0
  local function newpath(ext)
    counter = counter + 1
    return format("%s/f%d.%s", dir, counter, ext)
  end
  return dir, newpath, cleanup, open_pagers, open_dbs
end

--- Run one SQL statement through a LuaDBI connection (prepared, executed,
-- closed), raising on failure.
function M.db_exec(db, sql)
  local st = assert(db:prepare(sql))
  assert(st:execute())
  st:close()
end

--- A new SQLite database at path through LuaDBI (`DBI`, the module), set
-- up as the peers are measured: autocommit, WAL, synchronous=FULL; then
-- `create` (an SQL statement) is run.
function M.sqlite_open(DBI, path, create)
  local db = assert(DBI.Connect("SQLite3", path))
  db:autocommit(true)
  local st = assert(db:prepare("PRAGMA journal_mode=WAL"))   -- it returns a row
  assert(st:execute())
  st:fetch()
  st:close()
  M.db_exec(db, "PRAGMA synchronous=FULL")
  M.db_exec(db, create)
  return db
end

return M
