#!/bin/sh
# pack_instr.sh -- instructions per view:unpack / view:pack call and per
# slab alloc+free, counted by callgrind: deterministic where wall time on a
# shared VM is not.
#
# Each workload runs twice, with N calls and with none (or one slab
# alloc+free), and the difference is divided by N, so start-up cancels out.
#   vu    a transaction writer's unpack(0, "<i8")
#   vu4   unpack(0, "<i8 i8 i8 i8")
#   vp    pack(0, "<i8", i)
#   su, su4   string.unpack of the same formats, for reference
#   slab  mappedpages.slab alloc(100) + free inside one transaction (per op:
#         an alloc or a free)
#   records insert  mappedpages.records insert of bench/records.lua's 64-byte
#         row inside one transaction, commit included (4 KiB pages; the rows
#         are made in both runs)
#   records set  t:set(id, "a", v) outside a transaction: one durable commit
#
# Usage (from the repository root):  sh bench/pack_instr.sh [N]
# Needs valgrind; builds the module with make if it is missing.
set -eu

N=${1:-100000}
BUILD=${BUILD:-build}
LUA=${LUA:-lua5.4}

if ! command -v valgrind >/dev/null 2>&1; then
    echo "pack_instr: valgrind is not installed (apt-get install valgrind); skipped"
    exit 0
fi
if [ ! -f "$BUILD/mappedpages/core.so" ]; then
    make -s >&2
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/mpbench-instr.XXXXXX")
trap 'rm -rf "$dir"' EXIT INT TERM HUP
export LUA_PATH_5_4="lua/?.lua;lua/?/init.lua;;" LUA_CPATH_5_4="$BUILD/?.so;;"

cat > "$dir/calls.lua" <<'LUA'
local mp = require "mappedpages"
local path = arg[3] .. "/calls.mp"
os.remove(path)
local p = assert(mp.create(path))
local pid = p:alloc_protected()
local tx = p:begin()
local w = p:write_protected(pid)
local N = tonumber(arg[2])
local mode = arg[1]
local str = ("x"):rep(64)
local su = string.unpack
if mode == "vu" then for _ = 1, N do local _ = w:unpack(0, "<i8") end
elseif mode == "vu4" then for _ = 1, N do local _, _, _, _ = w:unpack(0, "<i8 i8 i8 i8") end
elseif mode == "vp" then for i = 1, N do w:pack(0, "<i8", i) end
elseif mode == "su" then for _ = 1, N do local _ = su("<i8", str) end
elseif mode == "su4" then for _ = 1, N do local _, _, _, _ = su("<i8 i8 i8 i8", str) end
end
tx:rollback()
p:close()
os.remove(path)
LUA

cat > "$dir/slab.lua" <<'LUA'
local mp = require "mappedpages"
local path = arg[2] .. "/slab.mp"
os.remove(path)
local p = assert(mp.create(path))
local s = assert(mp.slab.open(p, "o"))
local N = tonumber(arg[1])
local tx = p:begin()
local refs = {}
for i = 1, N do refs[i] = s:alloc(100) end
for i = 1, N do s:free(refs[i]) end
tx:commit()
p:close()
os.remove(path)
LUA

cat > "$dir/records.lua" <<'LUA'
local mp = require "mappedpages"
local mode, N, dir, M = arg[1], tonumber(arg[2]), arg[3], tonumber(arg[4])
local path = dir .. "/records.mp"
os.remove(path)
local p = assert(mp.create(path, {page_size = 4096}))
local t = assert(mp.records.open(p, "rows", [[
  record row { a: i64  b: i64  c: i64  d: i64  e: f64  f: f64  g: f64  h: f64 }
]]))
local rows = {}
for i = 1, M do
  rows[i] = {a = i, b = i * 3, c = -i, d = i * 7, e = i * 0.5, f = i * 0.25, g = -i * 1.5, h = i / 3}
end
if mode == "insert" then
  assert(p:transaction(function()
    for i = 1, N do t:insert(rows[i]) end
    return true
  end))
else
  assert(p:transaction(function() for i = 1, 10 do t:insert(rows[i]) end return true end))
  for i = 1, N do assert(t:set(1 + i % 10, "a", i)) end
end
p:close()
os.remove(path)
LUA

# instructions of one run: instr SCRIPT ARGS...
instr() {
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$LUA" "$@" 2>&1 |
        sed -n 's/.*Collected : //p'
}

echo "| workload | instructions per call |"
echo "|---|---|"
for m in vu vu4 vp su su4; do
    a=$(instr "$dir/calls.lua" "$m" "$N" "$dir")
    b=$(instr "$dir/calls.lua" "$m" 0 "$dir")
    echo "| $m | $(( (a - b) / N )) |"
done
half=$(( N / 2 ))
a=$(instr "$dir/slab.lua" "$half" "$dir")
b=$(instr "$dir/slab.lua" 1 "$dir")
echo "| slab alloc/free (per op) | $(( (a - b) / (2 * half - 2) )) |"
a=$(instr "$dir/records.lua" insert "$N" "$dir" "$N")
b=$(instr "$dir/records.lua" insert 0 "$dir" "$N")
echo "| records insert in a transaction (per insert) | $(( (a - b) / N )) |"
S=$(( N / 50 ))
a=$(instr "$dir/records.lua" set "$S" "$dir" 10)
b=$(instr "$dir/records.lua" set 0 "$dir" 10)
echo "| records durable set (per set) | $(( (a - b) / S )) |"
