-- bench/lib/write_results.lua -- writes bench/RESULTS.md (one table of
-- every figure with its target) and bench/results.svg (a bar per target:
-- how far the measured figure is from it, 1 = just met) from
-- bench/lib/results.lua. Run by `make results`; it measures nothing.
--
--   lua5.4 bench/lib/write_results.lua [DIR]   (DIR: where to write, default bench)

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local data = dofile(here .. "/results.lua")
local dir = arg and arg[1] or "bench"
local format, concat = string.format, table.concat

local function score(r)
  if not r.goal then return nil end
  if r.lower then return r.goal / r.measured end
  return r.measured / r.goal
end

local function xml(s)
  return (s:gsub("[&<>\"]", {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;"}))
end

-- the plot: a horizontal bar per row with a target, on a log scale
local function svg()
  local rows = {}
  for _, r in ipairs(data.rows) do if score(r) then rows[#rows + 1] = r end end
  local LABEL, BAR, ROW, TOP = 430, 300, 22, 50
  local W, H = LABEL + BAR + 90, TOP + #rows * ROW + 50
  local lo, hi = math.log(0.25), math.log(4)
  local function x(v) return LABEL + (math.log(math.max(0.25, math.min(4, v))) - lo) / (hi - lo) * BAR end
  local out = {format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
                      .. 'font-family="sans-serif" font-size="12">', W, H),
               format('<rect width="%d" height="%d" fill="white"/>', W, H),
               '<text x="10" y="20" font-weight="bold">mappedpages: each figure against its '
               .. 'target (1 = just met; log scale)</text>',
               format('<text x="10" y="36" fill="#666">%s</text>', xml(data.machine))}
  for _, t in ipairs({0.25, 0.5, 1, 2, 4}) do
    out[#out + 1] = format('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>', x(t), TOP - 6,
                           x(t), TOP + #rows * ROW, t == 1 and "#000" or "#ddd")
    out[#out + 1] = format('<text x="%.1f" y="%d" text-anchor="middle" fill="#666">%sx</text>',
                           x(t), TOP + #rows * ROW + 16, tostring(t))
  end
  for i, r in ipairs(rows) do
    local y = TOP + (i - 1) * ROW
    local s = score(r)
    local colour = s >= 1 and "#2ca02c" or "#d62728"
    local x0, x1 = math.min(x(1), x(s)), math.max(x(1), x(s))
    out[#out + 1] = format('<text x="%d" y="%d" text-anchor="end">%s: %s</text>', LABEL - 8,
                           y + 14, xml(r.area), xml(r.what))
    out[#out + 1] = format('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s">'
                           .. '<title>%s (target %s)</title></rect>', x0, y + 3, math.max(1, x1 - x0),
                           ROW - 6, colour, xml(r.figure), xml(r.target))
    out[#out + 1] = format('<text x="%d" y="%d">%s</text>', LABEL + BAR + 8, y + 14, xml(r.figure))
  end
  out[#out + 1] = "</svg>"
  return concat(out, "\n") .. "\n"
end

local function markdown()
  local out = {
    "# Benchmark results",
    "",
    "Written by `make results` from `bench/lib/results.lua` (which holds the",
    "figures of the last full runs; `bench/README.md` says how each is measured",
    "and reads it). Machine: " .. data.machine .. ".",
    "",
    "![each figure against its target](results.svg)",
    "",
    "| area | what | benchmark | figure | target | met |",
    "|---|---|---|---:|---|---|",
  }
  for _, r in ipairs(data.rows) do
    local s = score(r)
    local met = s == nil and (r.target == "-" and "-" or "yes") or (s >= 1 and "yes" or "no")
    out[#out + 1] = format("| %s | %s | `%s` | %s | %s | %s |", r.area, r.what, r.bench, r.figure,
                           r.target, met)
  end
  return concat(out, "\n") .. "\n"
end

local function write(name, text)
  local f = assert(io.open(dir .. "/" .. name, "w"))
  assert(f:write(text))
  assert(f:close())
  print("wrote " .. dir .. "/" .. name)
end

write("RESULTS.md", markdown())
write("results.svg", svg())
