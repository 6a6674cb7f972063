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
 * Usage: peer_lmdb [--seconds S] [--rounds R] [--count N]
 *   --count N: N commits and nothing else (bench/count_barriers.sh)
 */
#include "peer_common.h"

#include <dlfcn.h>

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

static void lmdb_commit(void)
{
    static char val[100] = "a value of 100 bytes";
    MDB_txn *txn;
    uint64_t key = next_key++;
    MDB_val k = { sizeof key, &key }, v = { sizeof val, val };
    lcheck(L.txn_begin(env, NULL, 0, &txn), "txn_begin");
    lcheck(L.put(txn, dbi, &k, &v, 0), "put");
    lcheck(L.txn_commit(txn), "txn_commit");
}

int main(int argc, char **argv)
{
    double seconds = 0.5;
    double count = -1;
    int rounds = 8;
    if (!peer_args(argc, argv, &seconds, &rounds, &count))
        return 2;
    if (!load_lmdb()) {
        printf("peer_lmdb: liblmdb.so.0 not found (apt-get install liblmdb0); skipped\n");
        return 0;
    }
    bench_dir("peer_lmdb");
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

    if (count >= 0) {
        peer_count(lmdb_commit, (uint64_t)count);
        L.env_close(env);
        return 0;
    }
    printf("peer_lmdb: %s (default durable commits, one mdb_put per transaction) vs mappedpages "
           "auto-commit alloc vs raw pwrite+fdatasync; %d rounds x %.2f s, interleaved\n",
           L.version(NULL, NULL, NULL), rounds, seconds);
    peer_compare(lmdb_commit, "LMDB, 1 put per txn, default sync", "LMDB", rounds, seconds);

    L.env_close(env);
    return 0;
}
