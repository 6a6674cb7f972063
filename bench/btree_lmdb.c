/*
 * btree_lmdb.c -- LMDB's side of bench/btree.lua: the same keys, from C.
 *
 * bench-libs: none.  LMDB is loaded at run time with dlopen
 * ("liblmdb.so.0", from Debian's liblmdb-dev / liblmdb0), as peer_lmdb.c
 * does, so this builds with the Makefile's plain bench rule and prints
 * "skipped" where the library is missing.
 *
 * The keys are bench/btree.lua's: N keys of 16 bytes, key i the two next
 * outputs of the 64-bit LCG x = x * 6364136223846793005 + 1442695040888963407
 * (seed 42), big-endian; the value of key i is i as 8 little-endian bytes.
 * Gets: G keys picked by benchkit's rng(7) (((x >> 33) % N) + 1 of the same
 * LCG). Each round, on a new file:
 *
 *   put    N mdb_put in one write transaction, its commit included (LMDB's
 *          default durability)
 *   get    G mdb_get in one read transaction
 *   scan   every key in order through a cursor (MDB_FIRST, MDB_NEXT)
 *
 * CPU time (bench_cpu_now), medians over the rounds, printed as
 * "lmdb <put|get|scan> <ops/s>" lines that bench/btree.lua reads.
 *
 * Usage: btree_lmdb [--keys N] [--gets G] [--rounds R]
 */
#include "benchutil.h"

#include <dlfcn.h>
#include <stddef.h>

typedef struct MDB_env MDB_env;
typedef struct MDB_txn MDB_txn;
typedef struct MDB_cursor MDB_cursor;
typedef unsigned int MDB_dbi;
typedef struct MDB_val { size_t mv_size; void *mv_data; } MDB_val;
#define MDB_NOSUBDIR 0x4000
#define MDB_RDONLY 0x20000
#define MDB_FIRST 0
#define MDB_NEXT 8

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
    int (*get)(MDB_txn *, MDB_dbi, MDB_val *, MDB_val *);
    int (*cursor_open)(MDB_txn *, MDB_dbi, MDB_cursor **);
    int (*cursor_get)(MDB_cursor *, MDB_val *, MDB_val *, int);
    void (*cursor_close)(MDB_cursor *);
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
        { "mdb_get", offsetof(__typeof__(L), get) },
        { "mdb_cursor_open", offsetof(__typeof__(L), cursor_open) },
        { "mdb_cursor_get", offsetof(__typeof__(L), cursor_get) },
        { "mdb_cursor_close", offsetof(__typeof__(L), cursor_close) },
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

static void lcheck(int rc, const char *what)
{
    if (rc != 0)
        bench_die("lmdb %s: %s", what, L.strerror(rc));
}

static uint64_t lcg(uint64_t *x)
{
    *x = *x * 6364136223846793005ULL + 1442695040888963407ULL;
    return *x;
}

static void put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)v;
        v >>= 8;
    }
}

int main(int argc, char **argv)
{
    double n_d = 100000, g_d = 200000, rounds_d = 5;
    for (int i = 1; i < argc; i++) {
        if (bench_opt_double(argc, argv, &i, "--keys", &n_d) ||
            bench_opt_double(argc, argv, &i, "--gets", &g_d) ||
            bench_opt_double(argc, argv, &i, "--rounds", &rounds_d))
            continue;
        fprintf(stderr, "usage: %s [--keys N] [--gets G] [--rounds R]\n", argv[0]);
        return 2;
    }
    size_t n = (size_t)n_d, g = (size_t)g_d;
    int rounds = rounds_d < 1 ? 1 : rounds_d > 64 ? 64 : (int)rounds_d;
    if (!load_lmdb()) {
        printf("btree_lmdb: liblmdb.so.0 not found (apt-get install liblmdb-dev); skipped\n");
        return 0;
    }
    unsigned char *keys = malloc(n * 16);
    uint64_t *vals = malloc(n * sizeof *vals);
    size_t *picks = malloc(g * sizeof *picks);
    if (!keys || !vals || !picks)
        bench_die("out of memory");
    uint64_t x = 42;
    for (size_t i = 0; i < n; i++) {
        uint64_t hi = lcg(&x), lo = lcg(&x);
        put_be64(keys + 16 * i, hi);
        put_be64(keys + 16 * i + 8, lo);
        vals[i] = i + 1;            /* little-endian on the machines we run on */
    }
    x = 7;
    for (size_t i = 0; i < g; i++)
        picks[i] = (size_t)((lcg(&x) >> 33) % n);

    bench_dir("btree_lmdb");
    printf("btree_lmdb: %s; %zu keys of 16 bytes, %zu gets, %d rounds (CPU time, medians)\n",
           L.version(NULL, NULL, NULL), n, g, rounds);
    double put[64], get[64], scan[64];
    for (int r = 0; r < rounds; r++) {
        char name[32];
        snprintf(name, sizeof name, "b%d.lmdb", r);
        const char *path = bench_file(name);
        snprintf(name, sizeof name, "b%d.lmdb-lock", r);
        bench_file(name);
        MDB_env *env;
        MDB_dbi dbi;
        MDB_txn *txn;
        lcheck(L.env_create(&env), "env_create");
        lcheck(L.env_set_mapsize(env, (size_t)1 << 30), "env_set_mapsize");
        lcheck(L.env_open(env, path, MDB_NOSUBDIR, 0644), "env_open");
        double t0 = bench_cpu_now();
        lcheck(L.txn_begin(env, NULL, 0, &txn), "txn_begin");
        lcheck(L.dbi_open(txn, NULL, 0, &dbi), "dbi_open");
        for (size_t i = 0; i < n; i++) {
            MDB_val k = { 16, keys + 16 * i }, v = { 8, &vals[i] };
            lcheck(L.put(txn, dbi, &k, &v, 0), "put");
        }
        lcheck(L.txn_commit(txn), "txn_commit");
        put[r] = (double)n / (bench_cpu_now() - t0);

        uint64_t sum = 0;
        t0 = bench_cpu_now();
        lcheck(L.txn_begin(env, NULL, MDB_RDONLY, &txn), "txn_begin");
        for (size_t i = 0; i < g; i++) {
            MDB_val k = { 16, keys + 16 * picks[i] }, v;
            lcheck(L.get(txn, dbi, &k, &v), "get");
            uint64_t val;
            memcpy(&val, v.mv_data, sizeof val);
            sum += val;
        }
        L.txn_abort(txn);
        get[r] = (double)g / (bench_cpu_now() - t0);

        size_t seen = 0;
        t0 = bench_cpu_now();
        lcheck(L.txn_begin(env, NULL, MDB_RDONLY, &txn), "txn_begin");
        MDB_cursor *cur;
        lcheck(L.cursor_open(txn, dbi, &cur), "cursor_open");
        MDB_val k, v;
        int rc = L.cursor_get(cur, &k, &v, MDB_FIRST);
        while (rc == 0) {
            seen++;
            sum += ((const unsigned char *)v.mv_data)[0];
            rc = L.cursor_get(cur, &k, &v, MDB_NEXT);
        }
        L.cursor_close(cur);
        L.txn_abort(txn);
        scan[r] = (double)seen / (bench_cpu_now() - t0);
        if (seen != n)
            bench_die("lmdb scan: %zu keys, expected %zu", seen, n);
        L.env_close(env);
        bench_remove(path);
        if (sum == 0)
            printf("(checksum 0)\n");
    }
    printf("lmdb put %.0f\n", bench_median(put, rounds));
    printf("lmdb get %.0f\n", bench_median(get, rounds));
    printf("lmdb scan %.0f\n", bench_median(scan, rounds));
    free(keys);
    free(vals);
    free(picks);
    return 0;
}
