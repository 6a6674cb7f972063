-- bench/lib/write_results.lua -- writes bench/RESULTS.md: the last `make
-- bench`'s durable commits per second for mappedpages and its peers side
-- by side (bench/lib/durable_run.lua, written by collect_durable.lua) with
-- a plot (bench/durable.svg), and every figure against its target
-- (bench/lib/results.lua) with a plot (bench/results.svg). Run by `make
-- results` and at the end of `make bench`; it measures nothing.
--
--   lua5.4 bench/lib/write_results.lua [DIR]   (DIR: where to write, default bench)

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local data = dofile(here .. "/results.lua")
-- the last `make bench`'s durable commits (bench/lib/collect_durable.lua)
local okrun, run = pcall(dofile, here .. "/durable_run.lua")
if not okrun then run = nil end
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

-- durable commits per second by system and variant: one bar each
local function durable_svg()
  local rows = run.rows
  local LABEL, BAR, ROW, TOP = 330, 330, 22, 50
  local W, H = LABEL + BAR + 100, TOP + #rows * ROW + 30
  local top = 0
  for _, r in ipairs(rows) do top = math.max(top, r.rate) end
  local colours = {raw = "#555555", mappedpages = "#1f77b4", SQLite = "#ff7f0e", LMDB = "#2ca02c"}
  local out = {format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
                      .. 'font-family="sans-serif" font-size="12">', W, H),
               format('<rect width="%d" height="%d" fill="white"/>', W, H),
               '<text x="10" y="20" font-weight="bold">Durable commits per second, one '
               .. 'commit at a time (medians of rounds)</text>',
               format('<text x="10" y="36" fill="#666">%s; %d rounds x %.1f s per variant, '
                      .. 'interleaved with the raw limit</text>', xml(run.machine), run.rounds, run.seconds)}
  for i, r in ipairs(rows) do
    local y = TOP + (i - 1) * ROW
    out[#out + 1] = format('<text x="%d" y="%d" text-anchor="end">%s</text>', LABEL - 8, y + 14,
                           xml(r.variant))
    out[#out + 1] = format('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s">'
                           .. '<title>%s: %d/s (%s)</title></rect>', LABEL, y + 3,
                           math.max(1, r.rate / top * BAR), ROW - 6, colours[r.system] or "#999",
                           xml(r.system), r.rate, xml(r.source))
    out[#out + 1] = format('<text x="%.1f" y="%d">%d/s</text>', LABEL + r.rate / top * BAR + 6,
                           y + 14, r.rate)
  end
  out[#out + 1] = "</svg>"
  return concat(out, "\n") .. "\n"
end

local function markdown()
  local out = {
    "# Benchmark results",
    "",
    "Written by `make bench` (and `make results`, which measures nothing) from",
    "the last run's durable commits (`bench/lib/durable_run.lua`) and the",
    "figures of the last full runs of every benchmark (`bench/lib/results.lua`);",
    "`bench/README.md` says how each is measured and how to read it.",
    "Development machine: " .. data.machine .. ".",
    "",
  }
  if run then
    out[#out + 1] = "## Durable commits, the last `make bench`"
    out[#out + 1] = ""
    out[#out + 1] = format("%s; %d rounds of %.1f s per variant, each benchmark interleaving its "
                           .. "variants with the raw pwrite 4 KiB + fdatasync limit; medians of "
                           .. "rounds, ratios are medians of per-round ratios to that run's raw "
                           .. "slices.", run.machine, run.rounds, run.seconds)
    out[#out + 1] = ""
    out[#out + 1] = "![durable commits per second by system](durable.svg)"
    out[#out + 1] = ""
    out[#out + 1] = "| system | variant | commits/s | barriers per commit | vs raw | benchmark |"
    out[#out + 1] = "|---|---|---:|---:|---:|---|"
    for _, r in ipairs(run.rows) do
      out[#out + 1] = format("| %s | %s | %d | %s | %.2f | `%s` |", r.system, r.variant, r.rate,
                             r.barriers, r.ratio, r.source)
    end
    for _, n in ipairs(run.notes) do out[#out + 1] = "" out[#out + 1] = "Skipped: " .. n end
    out[#out + 1] = ""
  end
  for _, line in ipairs({
    "## Every figure against its target",
    "",
    "![each figure against its target](results.svg)",
    "",
    "| area | what | benchmark | figure | target | met |",
    "|---|---|---|---:|---|---|",
  }) do out[#out + 1] = line end
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
if run then write("durable.svg", durable_svg()) end
