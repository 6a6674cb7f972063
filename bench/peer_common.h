/*
 * peer_common.h -- what the peer benchmarks (peer_lmdb.c, peer_sqlite.c)
 * share: their command line, the mappedpages variant (mp_alloc outside a
 * transaction: one durable commit per call, 4 KiB pages), the timing of a
 * peer's one-commit function, the interleaved comparison of a peer with
 * mappedpages and with the raw pwrite+fdatasync limit (medians, and
 * medians of per-round ratios), and `--count N`: N peer commits and
 * nothing else, for bench/count_barriers.sh to count under strace.
 */
#ifndef PEER_COMMON_H
#define PEER_COMMON_H

#include "benchutil.h"
#include "mappedpages.h"

#define PEER_MAX_ROUNDS 64

static mp_pager *peer_mp;
static mp_pgno *peer_ids;
static size_t peer_nids, peer_capids;

/* Auto-commit allocs for `seconds`: commits per second.  The ids are kept
 * so the round can free them (untimed) and the file stays bounded. */
static inline double peer_mp_rate(double seconds)
{
    uint64_t n = 0;
    double t0 = bench_now(), t;
    do {
        if (peer_nids == peer_capids) {
            peer_capids = peer_capids ? peer_capids * 2 : 65536;
            peer_ids = realloc(peer_ids, peer_capids * sizeof *peer_ids);
            if (!peer_ids)
                bench_die("out of memory");
        }
        if (mp_alloc(peer_mp, &peer_ids[peer_nids]) != MP_OK)
            bench_die("mp_alloc: %s", mp_errmsg(peer_mp));
        peer_nids++;
        n++;
        t = bench_now();
    } while (t - t0 < seconds);
    return (double)n / (t - t0);
}

/* One durable commit of the peer (it dies on failure). */
typedef void peer_commit_fn(void);

/* The peer's commits for `seconds`: commits per second. */
static inline double peer_rate(peer_commit_fn *commit, double seconds)
{
    uint64_t n = 0;
    double t0 = bench_now(), t;
    do {
        commit();
        n++;
        t = bench_now();
    } while (t - t0 < seconds);
    return (double)n / (t - t0);
}

/* --count N: N of the peer's commits and nothing else, so that a run
 * under strace minus a run with N = 0 counts the syscalls of N commits. */
static inline void peer_count(peer_commit_fn *commit, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        commit();
}

/* [--seconds S] [--rounds R] [--count N]: 1, or 0 after printing the
 * usage.  *count stays negative without --count. */
static inline int peer_args(int argc, char **argv, double *seconds, int *rounds, double *count)
{
    double rounds_d = *rounds;
    for (int i = 1; i < argc; i++) {
        if (bench_opt_double(argc, argv, &i, "--seconds", seconds) ||
            bench_opt_double(argc, argv, &i, "--rounds", &rounds_d) ||
            bench_opt_double(argc, argv, &i, "--count", count))
            continue;
        fprintf(stderr, "usage: %s [--seconds S] [--rounds R] [--count N]\n", argv[0]);
        return 0;
    }
    *rounds = rounds_d < 1 ? 1 : rounds_d > PEER_MAX_ROUNDS ? PEER_MAX_ROUNDS : (int)rounds_d;
    return 1;
}

/* Run raw, the peer (one `commit` at a time) and mappedpages
 * interleaved, `rounds` slices of `seconds` each after a warm-up, in the
 * directory bench_dir() made, and print the table.  peer_row names the
 * peer's row, peer_name the peer in the final ratio. */
static inline void peer_compare(peer_commit_fn *commit, const char *peer_row, const char *peer_name,
                                int rounds, double seconds)
{
    int rawfd = bench_raw_open();
    mp_options o = { .page_size = 4096 };
    mp_error err;
    if (mp_create(bench_file("peer.mp"), &o, &peer_mp, &err) != MP_OK)
        bench_die("%s", err.msg);
    peer_rate(commit, 0.2);   /* warm-up */
    peer_mp_rate(0.2);
    bench_raw_rate(rawfd, 0.2);

    double raw[PEER_MAX_ROUNDS], peer[PEER_MAX_ROUNDS], mpr[PEER_MAX_ROUNDS];
    double r_peer[PEER_MAX_ROUNDS], r_mp[PEER_MAX_ROUNDS], r_mp_peer[PEER_MAX_ROUNDS];
    for (int k = 0; k < rounds; k++) {
        raw[k] = bench_raw_rate(rawfd, seconds);
        peer[k] = peer_rate(commit, seconds);
        mpr[k] = peer_mp_rate(seconds);
        if (peer_nids) {   /* keep the file bounded: free this round's pages (untimed) */
            if (mp_free_bulk(peer_mp, peer_nids, peer_ids) != MP_OK)
                bench_die("mp_free_bulk: %s", mp_errmsg(peer_mp));
            peer_nids = 0;
        }
        r_peer[k] = peer[k] / raw[k];
        r_mp[k] = mpr[k] / raw[k];
        r_mp_peer[k] = mpr[k] / peer[k];
    }
    printf("\n| variant | commits/s (median) | vs raw (median of per-round ratios) |\n|---|---:|---:|\n");
    printf("| raw pwrite 4 KiB + fdatasync | %.0f | 1.00 |\n", bench_median(raw, rounds));
    printf("| %s | %.0f | %.2f |\n", peer_row, bench_median(peer, rounds), bench_median(r_peer, rounds));
    printf("| mappedpages auto-commit alloc | %.0f | %.2f |\n", bench_median(mpr, rounds),
           bench_median(r_mp, rounds));
    printf("\nmappedpages / %s = %.2f (median of per-round ratios)\n", peer_name,
           bench_median(r_mp_peer, rounds));

    mp_close(peer_mp);
    close(rawfd);
    free(peer_ids);
}

#endif /* PEER_COMMON_H */
