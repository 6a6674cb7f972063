-- lua_access.lua -- Lua page access against Lua's own string functions.
--
-- Reads and writes one 8-byte integer of a 4 KiB page through a view, and
-- does the same with string.pack/string.unpack on a Lua string, in one
-- run.  Each figure is the median of 5 rounds of N calls, timed with
-- os.clock (CPU time: other processes on the machine do not count).
--
--   view:unpack(0, "<i8")      vs  string.unpack("<i8", s)
--   view:pack(0, "<i8", x)     vs  string.pack("<i8", x)
--   view:read(0, 8)            vs  s:sub(1, 8)
--   window:unpack(0, "<i8")    vs  view:unpack(0, "<i8")   (view:sub(16, 64))
--
-- The ratio is view time / string time; the contract's target
-- (README, "Benchmarks") is view:unpack within 2x of string.unpack.
-- Method calls are looked up on every call in both columns (s:sub, v:unpack)
-- except string.unpack/string.pack, which are called as locals, the way
-- hot Lua code calls them; "loop only" is the cost of the empty loop.
--
-- Run from the repository root (or `make bench`):
--   LUA_PATH_5_4='lua/?.lua;lua/?/init.lua;;' LUA_CPATH_5_4='build/?.so;;' lua5.4 bench/lua_access.lua [N]

package.path = (arg and arg[0] or ""):gsub("[^/]*$", "") .. "lib/?.lua;" .. package.path
local kit = require "benchkit"
local mp = require "mappedpages"
local median = kit.median

local N = tonumber(arg and arg[1]) or 2000000
local ROUNDS = 5

local clock, remove, tmpname = os.clock, os.remove, os.tmpname
local spack, sunpack = string.pack, string.unpack
local fmt = string.format

-- median seconds per call of fn(n) (which makes n calls)
local function measure(fn)
  fn(N // 10)   -- warm-up
  local t = {}
  for r = 1, ROUNDS do
    local t0 = clock()
    fn(N)
    t[r] = (clock() - t0) / N
  end
  return median(t)
end

local tmp = tmpname()            -- a unique name; the pager file sits next to it
local path = tmp .. ".mp"
local pager

local function cleanup()
  if pager then pager:close() end
  remove(path)
  remove(tmp)
end

local function main()
  pager = assert(mp.create(path, {page_size = 4096}))
  local view = pager:page(pager:alloc())
  view:pack(0, "<i8", 42)
  local pid = pager:alloc_protected()
  do
    local w <close> = pager:write_protected(pid)
    w:pack(0, "<i8", 42)
    w:commit()
  end
  local pview = pager:protected(pid)
  local window = view:sub(16, 64)
  window:pack(0, "<i8", 42)
  local s = spack("<i8", 42) .. string.rep("\0", 4088)   -- same bytes as the page

  local sink = 0
  local rows = {
    {"loop only", function(n)
      for i = 1, n do sink = i end
    end},
    {"string.unpack(\"<i8\", s)", function(n)
      for _ = 1, n do sink = sunpack("<i8", s) end
    end},
    {"view:unpack(0, \"<i8\")", function(n)
      local v = view
      for _ = 1, n do sink = v:unpack(0, "<i8") end
    end},
    {"string.pack(\"<i8\", x)", function(n)
      for i = 1, n do sink = spack("<i8", i) end
    end},
    {"view:pack(0, \"<i8\", x)", function(n)
      local v = view
      for i = 1, n do sink = v:pack(0, "<i8", i) end
    end},
    {"s:sub(1, 8)", function(n)
      for _ = 1, n do sink = s:sub(1, 8) end
    end},
    {"view:read(0, 8)", function(n)
      local v = view
      for _ = 1, n do sink = v:read(0, 8) end
    end},
    {"protected(pid):unpack(0, \"<i8\")", function(n)
      local v = pview
      for _ = 1, n do sink = v:unpack(0, "<i8") end
    end},
    {"window:unpack(0, \"<i8\")", function(n)
      local v = window
      for _ = 1, n do sink = v:unpack(0, "<i8") end
    end},
  }
  local ns = {}
  for i, row in ipairs(rows) do
    ns[i] = measure(row[2]) * 1e9
  end
  assert(sink ~= nil)

  print(fmt("lua_access: %s, N = %d calls per round, median of %d rounds (CPU time)",
            _VERSION, N, ROUNDS))
  print()
  print("| operation | ns/call | Mops/s |")
  print("|---|---:|---:|")
  for i, row in ipairs(rows) do
    print(fmt("| %s | %.1f | %.2f |", row[1], ns[i], 1e3 / ns[i]))
  end
  print()
  print("ratios view / string (same run; target for unpack: <= 2.0):")
  print(fmt("  view:unpack / string.unpack  = %.2f   (net of the loop: %.2f)",
            ns[3] / ns[2], (ns[3] - ns[1]) / (ns[2] - ns[1])))
  print(fmt("  view:pack   / string.pack    = %.2f   (net of the loop: %.2f)",
            ns[5] / ns[4], (ns[5] - ns[1]) / (ns[4] - ns[1])))
  print(fmt("  view:read   / s:sub          = %.2f   (net of the loop: %.2f)",
            ns[7] / ns[6], (ns[7] - ns[1]) / (ns[6] - ns[1])))
  print(fmt("  protected view:unpack / string.unpack = %.2f   (net of the loop: %.2f)",
            ns[8] / ns[2], (ns[8] - ns[1]) / (ns[2] - ns[1])))
  print(fmt("  window:unpack / view:unpack  = %.2f   (net of the loop: %.2f)",
            ns[9] / ns[3], (ns[9] - ns[1]) / (ns[3] - ns[1])))
end

local ok, err = xpcall(main, debug.traceback)
cleanup()
if not ok then error(err, 0) end
