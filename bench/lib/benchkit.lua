--- benchkit: what the Lua benchmarks share (medians, wall time, a
-- deterministic generator). It sits in bench/lib/ because `make bench`
-- runs every bench/*.lua as a benchmark. A benchmark loads it with
--
--     package.path = (arg and arg[0] or ""):gsub("[^/]*$", "") .. "lib/?.lua;" .. package.path
--     local kit = require "benchkit"

local sort = table.sort
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

return M
