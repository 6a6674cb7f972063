/*
 * peer_sqlite.c -- SQLite's durable commit rate next to ours, same run.
 *
 * bench-libs: none.  SQLite is loaded at run time with dlopen
 * ("libsqlite3.so.0", Debian package libsqlite3-0), so this builds with
 * the Makefile's plain bench rule and, where the library is missing,
 * prints "skipped" instead of failing `make bench`.  Only a handful of
 * functions of SQLite's stable C ABI are used; their prototypes are
 * written out below.
 *
 * Interleaved in short slices (8 rounds x 0.5 s per variant by default;
 * medians, and medians of per-round ratios to raw):
 *
 *   raw          pwrite 4 KiB + fdatasync at a fixed offset (benchutil.h)
 *   sqlite       one-row INSERT per transaction (auto-commit), WAL mode,
 *                synchronous=FULL (durable at commit), default page size,
 *                default automatic checkpoints
 *   mappedpages  mp_alloc outside a transaction (auto-commit), 4 KiB pages
 *
 * Usage: peer_sqlite [--seconds S] [--rounds R] [--count N]
 *   --count N: N commits and nothing else (bench/count_barriers.sh)
 */
#include "peer_common.h"

#include <dlfcn.h>

/* ---- the part of SQLite's ABI we use ------------------------------------- */

typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;
#define SQLITE_OK 0
#define SQLITE_DONE 101
#define SQLITE_OPEN_READWRITE 0x00000002
#define SQLITE_OPEN_CREATE 0x00000004

static struct {
    const char *(*libversion)(void);
    int (*open_v2)(const char *, sqlite3 **, int, const char *);
    int (*exec)(sqlite3 *, const char *, int (*)(void *, int, char **, char **), void *, char **);
    int (*prepare_v2)(sqlite3 *, const char *, int, sqlite3_stmt **, const char **);
    int (*bind_int64)(sqlite3_stmt *, int, long long);
    int (*bind_blob)(sqlite3_stmt *, int, const void *, int, void (*)(void *));
    int (*step)(sqlite3_stmt *);
    int (*reset)(sqlite3_stmt *);
    int (*finalize)(sqlite3_stmt *);
    int (*close)(sqlite3 *);
    const char *(*errmsg)(sqlite3 *);
} S;

static int load_sqlite(void)
{
    void *h = dlopen("libsqlite3.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return 0;
    static const struct { const char *name; size_t off; } syms[] = {
        { "sqlite3_libversion", offsetof(__typeof__(S), libversion) },
        { "sqlite3_open_v2", offsetof(__typeof__(S), open_v2) },
        { "sqlite3_exec", offsetof(__typeof__(S), exec) },
        { "sqlite3_prepare_v2", offsetof(__typeof__(S), prepare_v2) },
        { "sqlite3_bind_int64", offsetof(__typeof__(S), bind_int64) },
        { "sqlite3_bind_blob", offsetof(__typeof__(S), bind_blob) },
        { "sqlite3_step", offsetof(__typeof__(S), step) },
        { "sqlite3_reset", offsetof(__typeof__(S), reset) },
        { "sqlite3_finalize", offsetof(__typeof__(S), finalize) },
        { "sqlite3_close", offsetof(__typeof__(S), close) },
        { "sqlite3_errmsg", offsetof(__typeof__(S), errmsg) },
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        void *f = dlsym(h, syms[i].name);
        if (!f)
            return 0;
        memcpy((char *)&S + syms[i].off, &f, sizeof f);   /* object to function pointer */
    }
    return 1;
}

/* ---- variants ------------------------------------------------------------ */

static sqlite3 *db;
static sqlite3_stmt *ins;
static long long next_key;

static void sql(const char *q)
{
    char *msg = NULL;
    if (S.exec(db, q, NULL, NULL, &msg) != SQLITE_OK)
        bench_die("sqlite: %s: %s", q, msg ? msg : "?");
}

static void sqlite_commit(void)
{
    static const char val[100] = "a value of 100 bytes";
    S.bind_int64(ins, 1, next_key++);
    S.bind_blob(ins, 2, val, (int)sizeof val, NULL);
    if (S.step(ins) != SQLITE_DONE)
        bench_die("sqlite insert: %s", S.errmsg(db));
    S.reset(ins);
}

int main(int argc, char **argv)
{
    double seconds = 0.5;
    double count = -1;
    int rounds = 8;
    if (!peer_args(argc, argv, &seconds, &rounds, &count))
        return 2;
    if (!load_sqlite()) {
        printf("peer_sqlite: libsqlite3.so.0 not found (apt-get install libsqlite3-0); skipped\n");
        return 0;
    }
    bench_dir("peer_sqlite");
    const char *dbpath = bench_file("peer.sqlite");
    bench_file("peer.sqlite-wal");
    bench_file("peer.sqlite-shm");
    bench_file("peer.sqlite-journal");
    if (S.open_v2(dbpath, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
        bench_die("sqlite open %s: %s", dbpath, db ? S.errmsg(db) : "?");
    sql("PRAGMA journal_mode=WAL");
    sql("PRAGMA synchronous=FULL");
    sql("CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB)");
    if (S.prepare_v2(db, "INSERT INTO t(k, v) VALUES (?1, ?2)", -1, &ins, NULL) != SQLITE_OK)
        bench_die("sqlite prepare: %s", S.errmsg(db));

    if (count >= 0) {
        peer_count(sqlite_commit, (uint64_t)count);
        S.finalize(ins);
        S.close(db);
        return 0;
    }
    printf("peer_sqlite: SQLite %s (WAL, synchronous=FULL, one-row INSERT per commit) vs mappedpages "
           "auto-commit alloc vs raw pwrite+fdatasync; %d rounds x %.2f s, interleaved\n",
           S.libversion(), rounds, seconds);
    peer_compare(sqlite_commit, "SQLite WAL, synchronous=FULL, 1-row INSERT", "SQLite", rounds, seconds);

    S.finalize(ins);
    S.close(db);
    return 0;
}
