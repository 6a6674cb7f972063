/*
 * alloc_scale.c -- is allocation O(1) whatever the file size?
 *
 * Two files of 1 KiB pages: one with N = 1,000 allocated pages, one with
 * N = 10,000,000 (about 10 GB on disk; set up with one mp_alloc_bulk, i.e.
 * one transaction).  On each, inside explicit transactions:
 *
 *   pair   M = 1,000,000 x (mp_alloc + mp_free of a random allocated page;
 *          the new page takes the freed one's place in the live set, so N
 *          stays constant), then mp_commit (timed separately)
 *   alloc  M x mp_alloc alone
 *   free   M x mp_free of random live pages (after "alloc", so both files
 *          have N + M live pages to pick from), then rollback
 *
 * Pages freed in a transaction are reusable only after it commits, so
 * every alloc inside one consumes a fresh page and the file grows: that
 * growth (posix_fallocate, mapping, new group bitmaps) is part of the
 * amortized cost measured here.  The pair transaction is run 3 times: the
 * first one grows the file, the later ones reuse the pages the earlier
 * ones freed; the table shows the median and the first.
 *
 * Target (DESIGN.md "Performance"): per-op cost at 10M within 1.5x of 1,000.
 *
 * Usage: alloc_scale [--big N] [--ops M]   (defaults 10000000, 1000000)
 */
#include "benchutil.h"
#include "mappedpages.h"

#define PAGE 1024u
#define PAIR_REPS 3

static mp_pager *P;

static void check(mp_err rc, const char *what)
{
    if (rc != MP_OK)
        bench_die("%s: %s (%s)", what, mp_strerror(rc), P ? mp_errmsg(P) : "");
}

typedef struct result {
    uint64_t n;
    double setup_s;              /* create + alloc_bulk(N) + its commit */
    double pair_ns[PAIR_REPS];   /* per alloc+free pair */
    double commit_ms[PAIR_REPS]; /* commit of each pair transaction */
    double alloc_ns, free_ns;
    uint64_t pages_after, file_bytes, groups_dirty_hint;
    uint64_t barriers_pair_commit;
} result;

static void *xmalloc(size_t n)
{
    void *v = malloc(n);
    if (!v)
        bench_die("out of memory (%zu bytes)", n);
    return v;
}

static result run(const char *path, uint64_t n, uint64_t m, uint64_t seed)
{
    result r;
    memset(&r, 0, sizeof r);
    r.n = n;
    mp_options o = { .page_size = PAGE };
    mp_error err;
    uint64_t rng = seed;

    /* live set: n ids, later n + m */
    mp_pgno *live = xmalloc((size_t)(n + m) * sizeof *live);
    double t0 = bench_now();
    if (mp_create(path, &o, &P, &err) != MP_OK)
        bench_die("%s", err.msg);
    check(mp_alloc_bulk(P, (size_t)n, live), "alloc_bulk");   /* one transaction */
    r.setup_s = bench_now() - t0;

    /* pair: alloc + free of a random live page, M times per transaction */
    for (int rep = 0; rep < PAIR_REPS; rep++) {
        check(mp_begin(P), "begin");
        t0 = bench_now();
        for (uint64_t k = 0; k < m; k++) {
            mp_pgno id;
            check(mp_alloc(P, &id), "alloc");
            uint64_t j = bench_rand(&rng) % n;
            check(mp_free(P, live[j]), "free");
            live[j] = id;
        }
        double t1 = bench_now();
        mp_info a, b;
        mp_get_info(P, &a);
        check(mp_commit(P), "commit");
        double t2 = bench_now();
        mp_get_info(P, &b);
        r.pair_ns[rep] = (t1 - t0) * 1e9 / (double)m;
        r.commit_ms[rep] = (t2 - t1) * 1e3;
        r.barriers_pair_commit = b.barriers - a.barriers;
    }

    /* pure alloc, then pure free of random live pages, in one transaction */
    check(mp_begin(P), "begin");
    t0 = bench_now();
    for (uint64_t k = 0; k < m; k++)
        check(mp_alloc(P, &live[n + k]), "alloc");
    double t1 = bench_now();
    r.alloc_ns = (t1 - t0) * 1e9 / (double)m;
    /* pick m distinct random pages out of n + m: a partial Fisher-Yates
     * shuffle done before timing, so only mp_free is timed */
    uint64_t total = n + m;
    for (uint64_t k = 0; k < m; k++) {
        uint64_t j = k + bench_rand(&rng) % (total - k);
        mp_pgno t = live[k];
        live[k] = live[j];
        live[j] = t;
    }
    t0 = bench_now();
    for (uint64_t k = 0; k < m; k++)
        check(mp_free(P, live[k]), "free");
    t1 = bench_now();
    r.free_ns = (t1 - t0) * 1e9 / (double)m;
    check(mp_rollback(P), "rollback");

    mp_info in;
    mp_get_info(P, &in);
    r.pages_after = in.page_count;
    r.file_bytes = in.file_size;
    mp_close(P);
    P = NULL;
    bench_remove(path);
    free(live);
    return r;
}

int main(int argc, char **argv)
{
    double big = 10000000, ops = 1000000, small = 1000;
    for (int i = 1; i < argc; i++) {
        if (bench_opt_double(argc, argv, &i, "--big", &big) ||
            bench_opt_double(argc, argv, &i, "--small", &small) ||
            bench_opt_double(argc, argv, &i, "--ops", &ops))
            continue;
        fprintf(stderr, "usage: %s [--small N] [--big N] [--ops M]\n", argv[0]);
        return 2;
    }
    bench_dir("alloc_scale");
    uint64_t m = (uint64_t)ops;
    if (m < 1)
        m = 1;
    printf("alloc_scale: %u-byte pages, M = %llu ops per measurement, inside transactions; dir %s\n",
           PAGE, (unsigned long long)m, bench_dir("alloc_scale"));
    fflush(stdout);

    result r[2];
    r[0] = run(bench_file("small.mp"), (uint64_t)small, m, 42);
    r[1] = run(bench_file("big.mp"), (uint64_t)big, m, 42);

    printf("\n| allocated pages | setup (alloc_bulk + commit) | alloc+free pair, ns (median of %d txns) "
           "| pair, 1st txn (grows the file) | commit of a pair txn, ms (median) | alloc alone, ns | free alone, ns "
           "| file at the end |\n", PAIR_REPS);
    printf("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    double pair[2], commit[2];
    for (int s = 0; s < 2; s++) {
        pair[s] = bench_median(r[s].pair_ns, PAIR_REPS);
        commit[s] = bench_median(r[s].commit_ms, PAIR_REPS);
        printf("| %llu | %.2f s | %.0f | %.0f | %.1f | %.0f | %.0f | %llu pages, %.2f GB |\n",
               (unsigned long long)r[s].n, r[s].setup_s, pair[s], r[s].pair_ns[0], commit[s],
               r[s].alloc_ns, r[s].free_ns, (unsigned long long)r[s].pages_after,
               (double)r[s].file_bytes / 1e9);
    }
    printf("\nratios big/small (same run; target <= 1.5):\n");
    printf("  alloc+free pair   %.2f   (1st txn: %.2f)\n", pair[1] / pair[0],
           r[1].pair_ns[0] / r[0].pair_ns[0]);
    printf("  alloc alone       %.2f\n", r[1].alloc_ns / r[0].alloc_ns);
    printf("  free alone        %.2f\n", r[1].free_ns / r[0].free_ns);
    printf("  commit of a pair txn %.2f   (%.1f ms vs %.1f ms; %llu barrier(s) per commit)\n",
           commit[1] / commit[0], commit[1], commit[0],
           (unsigned long long)r[1].barriers_pair_commit);
    printf("  per-txn pair ns: small");
    for (int k = 0; k < PAIR_REPS; k++)
        printf(" %.0f", r[0].pair_ns[k]);
    printf(", big");
    for (int k = 0; k < PAIR_REPS; k++)
        printf(" %.0f", r[1].pair_ns[k]);
    printf("; commit ms: small");
    for (int k = 0; k < PAIR_REPS; k++)
        printf(" %.1f", r[0].commit_ms[k]);
    printf(", big");
    for (int k = 0; k < PAIR_REPS; k++)
        printf(" %.1f", r[1].commit_ms[k]);
    printf("\n");
    return 0;
}
