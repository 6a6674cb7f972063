#!/bin/sh
# count_barriers.sh -- durability syscalls per auto-commit alloc, counted by
# the kernel rather than by the library's own mp_info.barriers.
#
# Runs `commit_rate --count N` (create a 4 KiB-page file, N auto-commit
# mp_alloc calls, close) under `strace -f -c` twice, with N = 0 and N = 1000,
# and prints the difference per alloc, so create's own barriers (the
# creating commit and the directory fsync) cancel out.  The contract
# (docs/FORMAT.md, "Commit protocol": one barrier per commit) is exactly 1: one fdatasync, no fsync, no msync.
#
# Usage (from the repository root):  sh bench/count_barriers.sh [N]
# Needs strace; builds build/bench/commit_rate with make if it is missing.
set -eu

N=${1:-1000}
BUILD=${BUILD:-build}
BIN=$BUILD/bench/commit_rate

if ! command -v strace >/dev/null 2>&1; then
    echo "count_barriers: strace is not installed (apt-get install strace); skipped"
    exit 0
fi
if [ ! -x "$BIN" ]; then
    make -s "$BIN" >&2
fi

out=$(mktemp "${TMPDIR:-/tmp}/mpbench-strace.XXXXXX")
trap 'rm -f "$out"' EXIT INT TERM HUP

# count N: print "fdatasync fsync msync pwrite64" call counts of one run
count() {
    strace -f -c -o "$out" -e trace=fdatasync,fsync,msync,pwrite64 "$BIN" --count "$1" >/dev/null 2>&1
    for sc in fdatasync fsync msync pwrite64; do
        # strace -c rows: % time, seconds, usecs/call, calls, [errors,] syscall
        awk -v sc="$sc" '$NF == sc { print $4; found = 1 } END { if (!found) print 0 }' "$out"
    done | tr '\n' ' '
}

read -r b_fds b_fs b_ms b_pw <<EOF
$(count 0)
EOF
read -r n_fds n_fs n_ms n_pw <<EOF
$(count "$N")
EOF

d_fds=$((n_fds - b_fds)); d_fs=$((n_fs - b_fs)); d_ms=$((n_ms - b_ms)); d_pw=$((n_pw - b_pw))
echo "count_barriers: $N auto-commit allocs, 4096-byte pages (strace -f -c, minus a run with 0 allocs)"
echo "| syscall | calls for $N allocs | per alloc |"
echo "|---|---:|---:|"
row() {
    awk -v s="$1" -v c="$2" -v n="$N" 'BEGIN { printf "| %s | %d | %.3f |\n", s, c, c / n }'
}
row fdatasync "$d_fds"
row fsync "$d_fs"
row msync "$d_ms"
row pwrite64 "$d_pw"
awk -v a="$d_fds" -v b="$d_fs" -v c="$d_ms" -v n="$N" \
    'BEGIN { printf "syscalls per alloc: %.3f (barriers: fdatasync+fsync+msync; contract: 1)\n", (a + b + c) / n }'
