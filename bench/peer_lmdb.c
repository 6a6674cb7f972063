/*
 * peer_lmdb.c -- LMDB's durable commit rate next to ours, same run.
 *
 * bench-libs: none.  LMDB is loaded at run time with dlopen
 * ("liblmdb.so.0", Debian package liblmdb0), so this builds with the
 * Makefile's plain bench rule and, where the library is missing, prints
 * "skipped" instead of failing `make bench`.  Only a handful of functions
 * of LMDB's stable 0.9 C ABI are used; their prototypes are written out
 * below.
 *
 * Interleaved in short slices (8 rounds x 0.5 s per variant by default;
 * medians, and medians of per-round ratios to raw):
 *
 *   raw          pwrite 4 KiB + fdatasync at a fixed offset (benchutil.h)
 *   lmdb         mdb_txn_begin, one mdb_put (8-byte key, 100-byte value),
 *                mdb_txn_commit, with LMDB's default durability (no
 *                MDB_NOSYNC / MDB_NOMETASYNC): fdatasync of the data
 *                pages, then the meta page written through an O_DSYNC
 *                descriptor, i.e. two barriers per commit
 *   mappedpages  mp_alloc outside a transaction (auto-commit), 4 KiB pages
 *
 * Usage: peer_lmdb [--seconds S] [--rounds R]
 */
#include "benchutil.h"
#include "mappedpages.h"

#include <dlfcn.h>

#define MAX_ROUNDS 64

/* ---- the part of LMDB's ABI we use --------------------------------------- */

typedef struct MDB_env MDB_env;
typedef struct MDB_txn MDB_txn;
typedef unsigned int MDB_dbi;
typedef struct MDB_val { size_t mv_size; void *mv_data; } MDB_val;
#define MDB_NOSUBDIR 0x4000

static struct {
    char *(*version)(int *, int *, int *);
    int (*env_create)(MDB_env **);
    int (*env_set_mapsize)(MDB_env *, size_t);
    int (*env_open)(MDB_env *, const char *, unsigned int, mode_t);
    void (*env_close)(MDB_env *);
    int (*txn_begin)(MDB_env *, MDB_txn *, unsigned int, MDB_txn **);
    int (*txn_commit)(MDB_txn *);
    void (*txn_abort)(MDB_txn *);
    int (*dbi_open)(MDB_txn *, const char *, unsigned int, MDB_dbi *);
    int (*put)(MDB_txn *, MDB_dbi, MDB_val *, MDB_val *, unsigned int);
    char *(*strerror)(int);
} L;

static int load_lmdb(void)
{
    void *h = dlopen("liblmdb.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return 0;
    static const struct { const char *name; size_t off; } syms[] = {
        { "mdb_version", offsetof(__typeof__(L), version) },
        { "mdb_env_create", offsetof(__typeof__(L), env_create) },
        { "mdb_env_set_mapsize", offsetof(__typeof__(L), env_set_mapsize) },
        { "mdb_env_open", offsetof(__typeof__(L), env_open) },
        { "mdb_env_close", offsetof(__typeof__(L), env_close) },
        { "mdb_txn_begin", offsetof(__typeof__(L), txn_begin) },
        { "mdb_txn_commit", offsetof(__typeof__(L), txn_commit) },
        { "mdb_txn_abort", offsetof(__typeof__(L), txn_abort) },
        { "mdb_dbi_open", offsetof(__typeof__(L), dbi_open) },
        { "mdb_put", offsetof(__typeof__(L), put) },
        { "mdb_strerror", offsetof(__typeof__(L), strerror) },
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        void *f = dlsym(h, syms[i].name);
        if (!f)
            return 0;
        memcpy((char *)&L + syms[i].off, &f, sizeof f);   /* object to function pointer */
    }
    return 1;
}

/* ---- variants ------------------------------------------------------------ */

static MDB_env *env;
static MDB_dbi dbi;
static uint64_t next_key;

static void lcheck(int rc, const char *what)
{
    if (rc != 0)
        bench_die("lmdb %s: %s", what, L.strerror(rc));
}

static double lmdb_rate(double seconds)
{
    static char val[100] = "a value of 100 bytes";
    uint64_t n = 0;
    double t0 = bench_now(), t;
    do {
        MDB_txn *txn;
        uint64_t key = next_key++;
        MDB_val k = { sizeof key, &key }, v = { sizeof val, val };
        lcheck(L.txn_begin(env, NULL, 0, &txn), "txn_begin");
        lcheck(L.put(txn, dbi, &k, &v, 0), "put");
        lcheck(L.txn_commit(txn), "txn_commit");
        n++;
        t = bench_now();
    } while (t - t0 < seconds);
    return (double)n / (t - t0);
}

static mp_pager *P;
static mp_pgno *ids;
static size_t nids, capids;

static double mp_rate(double seconds)
{
    uint64_t n = 0;
    double t0 = bench_now(), t;
    do {
        if (nids == capids) {
            capids = capids ? capids * 2 : 65536;
            ids = realloc(ids, capids * sizeof *ids);
            if (!ids)
                bench_die("out of memory");
        }
        mp_err rc = mp_alloc(P, &ids[nids]);
        if (rc != MP_OK)
            bench_die("mp_alloc: %s", mp_errmsg(P));
        nids++;
        n++;
        t = bench_now();
    } while (t - t0 < seconds);
    return (double)n / (t - t0);
}

int main(int argc, char **argv)
{
    double seconds = 0.5, rounds_d = 8;
    for (int i = 1; i < argc; i++) {
        if (bench_opt_double(argc, argv, &i, "--seconds", &seconds) ||
            bench_opt_double(argc, argv, &i, "--rounds", &rounds_d))
            continue;
        fprintf(stderr, "usage: %s [--seconds S] [--rounds R]\n", argv[0]);
        return 2;
    }
    int rounds = rounds_d < 1 ? 1 : rounds_d > MAX_ROUNDS ? MAX_ROUNDS : (int)rounds_d;
    if (!load_lmdb()) {
        printf("peer_lmdb: liblmdb.so.0 not found (apt-get install liblmdb0); skipped\n");
        return 0;
    }
    bench_dir("peer_lmdb");
    int rawfd = bench_raw_open();
    const char *dbpath = bench_file("peer.lmdb");
    bench_file("peer.lmdb-lock");
    lcheck(L.env_create(&env), "env_create");
    lcheck(L.env_set_mapsize(env, (size_t)1 << 30), "env_set_mapsize");
    lcheck(L.env_open(env, dbpath, MDB_NOSUBDIR, 0644), "env_open");
    {
        MDB_txn *txn;
        lcheck(L.txn_begin(env, NULL, 0, &txn), "txn_begin");
        lcheck(L.dbi_open(txn, NULL, 0, &dbi), "dbi_open");
        lcheck(L.txn_commit(txn), "txn_commit");
    }

    const char *mppath = bench_file("peer.mp");
    mp_options o = { .page_size = 4096 };
    mp_error err;
    if (mp_create(mppath, &o, &P, &err) != MP_OK)
        bench_die("%s", err.msg);

    printf("peer_lmdb: %s (default durable commits, one mdb_put per transaction) vs mappedpages "
           "auto-commit alloc vs raw pwrite+fdatasync; %d rounds x %.2f s, interleaved\n",
           L.version(NULL, NULL, NULL), rounds, seconds);
    lmdb_rate(0.2);   /* warm-up */
    mp_rate(0.2);
    bench_raw_rate(rawfd, 0.2);

    double raw[MAX_ROUNDS], peer[MAX_ROUNDS], mpr[MAX_ROUNDS];
    double r_peer[MAX_ROUNDS], r_mp[MAX_ROUNDS], r_mp_peer[MAX_ROUNDS];
    for (int k = 0; k < rounds; k++) {
        raw[k] = bench_raw_rate(rawfd, seconds);
        peer[k] = lmdb_rate(seconds);
        mpr[k] = mp_rate(seconds);
        if (nids) {   /* keep the file bounded: free this round's pages (untimed) */
            if (mp_free_bulk(P, nids, ids) != MP_OK)
                bench_die("mp_free_bulk: %s", mp_errmsg(P));
            nids = 0;
        }
        r_peer[k] = peer[k] / raw[k];
        r_mp[k] = mpr[k] / raw[k];
        r_mp_peer[k] = mpr[k] / peer[k];
    }
    printf("\n| variant | commits/s (median) | vs raw (median of per-round ratios) |\n|---|---:|---:|\n");
    printf("| raw pwrite 4 KiB + fdatasync | %.0f | 1.00 |\n", bench_median(raw, rounds));
    printf("| LMDB, 1 put per txn, default sync | %.0f | %.2f |\n", bench_median(peer, rounds),
           bench_median(r_peer, rounds));
    printf("| mappedpages auto-commit alloc | %.0f | %.2f |\n", bench_median(mpr, rounds),
           bench_median(r_mp, rounds));
    printf("\nmappedpages / LMDB = %.2f (median of per-round ratios)\n", bench_median(r_mp_peer, rounds));

    L.env_close(env);
    mp_close(P);
    close(rawfd);
    free(ids);
    return 0;
}
