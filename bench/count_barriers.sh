#!/bin/sh
# count_barriers.sh -- durability barriers per commit, counted by the kernel
# rather than by the library's own mp_info.barriers, for mappedpages and
# for its peers.
#
# Runs `PROGRAM --count N` under `strace -f` twice, with N = 0 and N, and
# prints the difference per commit, so set-up's own barriers (creating the
# file, the directory fsync, a peer's schema) cancel out.  PROGRAM is one of
#   commit_rate   N auto-commit mp_alloc calls on a 4 KiB-page file
#   peer_sqlite   N one-row INSERT commits (WAL, synchronous=FULL)
#   peer_lmdb     N one-put transactions (default durability)
# A barrier is a call that waits for the disk: fdatasync, fsync, msync, or
# a write to a descriptor opened with O_DSYNC or O_SYNC (LMDB writes its
# meta page that way).  mappedpages' contract (docs/FORMAT.md, "Commit
# protocol": one barrier per commit) is exactly 1: one fdatasync.
#
# Usage (from the repository root):  sh bench/count_barriers.sh [N [PROGRAM]]
# Needs strace; builds build/bench/PROGRAM with make if it is missing.
set -eu

N=${1:-1000}
PROG=${2:-commit_rate}
BUILD=${BUILD:-build}
BIN=$BUILD/bench/$PROG

case $PROG in
    commit_rate | peer_sqlite | peer_lmdb) ;;
    *) echo "count_barriers: unknown program '$PROG' (commit_rate, peer_sqlite or peer_lmdb)" >&2; exit 2 ;;
esac
if ! command -v strace >/dev/null 2>&1; then
    echo "count_barriers: strace is not installed (apt-get install strace); skipped"
    exit 0
fi
if [ ! -x "$BIN" ]; then
    make -s "$BIN" >&2
fi

out=$(mktemp "${TMPDIR:-/tmp}/mpbench-strace.XXXXXX")
trap 'rm -f "$out"' EXIT INT TERM HUP

# count N: print "fdatasync fsync msync sync_writes pwrite64" counts of one run
count() {
    run_out=$("$BIN" --count "$1" 2>&1 >/dev/null) || true
    if printf '%s' "$run_out" | grep -q skipped; then
        echo skipped
        return
    fi
    strace -f -qq -o "$out" -e trace=open,openat,close,fdatasync,fsync,msync,write,pwrite64,pwritev,pwritev2 \
        "$BIN" --count "$1" >/dev/null 2>&1
    # strace -f lines: [pid] name(args) = result.  Remember which fds were
    # opened with O_DSYNC/O_SYNC; a write to one of them is a barrier.
    awk '
        { sub(/^[0-9]+ +/, "") }
        /^open(at)?\(/ && /O_(D)?SYNC/ { fd = $NF; if (fd ~ /^[0-9]+$/) sync[fd] = 1; next }
        /^close\(/ { fd = $0; sub(/^close\(/, "", fd); sub(/\).*/, "", fd); delete sync[fd]; next }
        /^fdatasync\(/ { fds++ }
        /^fsync\(/ { fs++ }
        /^msync\(/ { ms++ }
        /^(write|pwrite64|pwritev|pwritev2)\(/ {
            fd = $0; sub(/^[a-z0-9]+\(/, "", fd); sub(/,.*/, "", fd)
            if (fd in sync) sw++
            if ($0 ~ /^pwrite64\(/) pw++
        }
        END { printf "%d %d %d %d %d\n", fds, fs, ms, sw, pw }' "$out"
}

base=$(count 0)
if [ "$base" = skipped ]; then
    "$BIN" --count 0 2>&1 | grep skipped || true
    exit 0
fi
read -r b_fds b_fs b_ms b_sw b_pw <<EOF
$base
EOF
read -r n_fds n_fs n_ms n_sw n_pw <<EOF
$(count "$N")
EOF

d_fds=$((n_fds - b_fds)); d_fs=$((n_fs - b_fs)); d_ms=$((n_ms - b_ms)); d_sw=$((n_sw - b_sw)); d_pw=$((n_pw - b_pw))
echo "count_barriers: $PROG, $N commits (strace -f, minus a run with 0 commits)"
echo "| syscall | calls for $N commits | per commit |"
echo "|---|---:|---:|"
row() {
    awk -v s="$1" -v c="$2" -v n="$N" 'BEGIN { printf "| %s | %d | %.3f |\n", s, c, c / n }'
}
row fdatasync "$d_fds"
row fsync "$d_fs"
row msync "$d_ms"
row "write to an O_DSYNC/O_SYNC fd" "$d_sw"
row pwrite64 "$d_pw"
awk -v a="$d_fds" -v b="$d_fs" -v c="$d_ms" -v d="$d_sw" -v n="$N" -v p="$PROG" \
    'BEGIN { printf "barriers per commit: %.3f (%s; fdatasync+fsync+msync+synchronous writes)\n", (a + b + c + d) / n, p }'
