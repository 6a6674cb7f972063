-- bench/lib/collect_durable.lua -- runs the durable-commit benchmarks
-- (commit_rate, peer_sqlite, peer_lmdb: each interleaves its variants
-- with the raw pwrite 4 KiB + fdatasync limit, medians of rounds), keeps
-- their rows and writes them to bench/lib/durable_run.lua, which
-- bench/lib/write_results.lua turns into bench/RESULTS.md's first table
-- and bench/durable.svg. The peers' barriers per commit are counted by the
-- kernel (bench/count_barriers.sh, strace). `make bench` runs it; it
-- changes nothing on the machine but its own scratch files.
--
--   lua5.4 bench/lib/collect_durable.lua BUILD_DIR [SECONDS [ROUNDS]]

local build = arg and arg[1] or "build"
local seconds = arg and arg[2] or "0.5"
local rounds = arg and arg[3] or "6"
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local format = string.format

-- rows of the first markdown table a program prints: {cells...}
local function table_rows(text)
  local rows = {}
  for line in text:gmatch("[^\n]+") do
    if line:match("^|") then
      if not line:match("^|%-") then       -- not the header's underline
        local cells = {}
        for cell in line:sub(2, -2):gmatch("[^|]+") do cells[#cells + 1] = cell:match("^%s*(.-)%s*$") end
        rows[#rows + 1] = cells
      end
    elseif #rows > 0 then
      break
    end
  end
  table.remove(rows, 1)          -- the header
  return rows
end

local function run(name)
  local exe = build .. "/bench/" .. name
  local f = io.open(exe)
  if not f then return nil, exe .. " is not built" end
  f:close()
  local p = assert(io.popen(format("%s --seconds %s --rounds %s 2>&1", exe, seconds, rounds)))
  local out = p:read("a")
  local ok = p:close()
  if not ok then return nil, out end
  if out:match("skipped") then return nil, out:match("[^\n]*skipped[^\n]*") end
  return out
end

local data = {seconds = tonumber(seconds), rounds = tonumber(rounds), rows = {}, notes = {}}
local function add(system, variant, rate, barriers, ratio, source)
  data.rows[#data.rows + 1] = {system = system, variant = variant, rate = tonumber(rate),
                               barriers = barriers, ratio = tonumber(ratio), source = source}
end

local out, why = run("commit_rate")
if out then
  for _, c in ipairs(table_rows(out)) do
    -- variant, ops/s, min..max, barriers/op, KiB/op, vs raw
    local system = c[1]:match("^raw") and "raw" or "mappedpages"
    add(system, c[1], c[2], c[4], c[6], "commit_rate")
  end
else
  data.notes[#data.notes + 1] = "commit_rate: " .. tostring(why)
end
-- a peer's barriers per commit, counted by the kernel (bench/count_barriers.sh
-- under strace): "-" when strace is missing
local function peer_barriers(name)
  local p = io.popen(format("BUILD=%s sh %s/../count_barriers.sh 1000 %s 2>/dev/null", build, here, name))
  local text = p and p:read("a") or ""
  if p then p:close() end
  local n = tonumber(text:match("barriers per commit: ([%d.]+)"))
  return n and format("%.2f", n) or "-"
end

for _, peer in ipairs({{"peer_sqlite", "SQLite"}, {"peer_lmdb", "LMDB"}}) do
  out, why = run(peer[1])
  if out then
    local barriers = peer_barriers(peer[1])
    for _, c in ipairs(table_rows(out)) do
      -- variant, commits/s, vs raw
      local system = c[1]:match("^raw") and "raw" or c[1]:match("^mappedpages") and "mappedpages"
                     or peer[2]
      add(system, c[1], c[2], system == "mappedpages" and "1.00" or system == "raw" and "-" or barriers,
          c[3], peer[1])
    end
  else
    data.notes[#data.notes + 1] = peer[1] .. ": " .. tostring(why)
  end
end

-- the machine, for the table
local function first_line(cmd)
  local p = io.popen(cmd .. " 2>/dev/null")
  local s = p and p:read("l")
  if p then p:close() end
  return s
end
data.machine = format("%s CPUs, %s, kernel %s", first_line("nproc") or "?",
                      (first_line("df -T . | tail -1 | awk '{print $2}'") or "?") .. " file system",
                      first_line("uname -r") or "?")

local function serialize(v, indent)
  indent = indent or ""
  if type(v) == "table" then
    local parts = {}
    for _, x in ipairs(v) do parts[#parts + 1] = indent .. "  " .. serialize(x, indent .. "  ") end
    local keyed = {}
    for k, x in pairs(v) do
      if type(k) == "string" then
        keyed[#keyed + 1] = format("%s  %s = %s", indent, k, serialize(x, indent .. "  "))
      end
    end
    table.sort(keyed)                       -- a stable file from run to run
    for _, line in ipairs(keyed) do parts[#parts + 1] = line end
    if #parts == 0 then return "{}" end
    return "{\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "}"
  end
  if type(v) == "string" then return format("%q", v) end
  return tostring(v)
end

local path = here .. "/durable_run.lua"
local f = assert(io.open(path, "w"))
f:write("-- written by bench/lib/collect_durable.lua (make bench): the last run's durable commits\n")
f:write("return ", serialize(data), "\n")
f:close()
print("wrote " .. path)
for _, n in ipairs(data.notes) do print("  " .. n) end
