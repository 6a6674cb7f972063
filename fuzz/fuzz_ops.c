/*
 * fuzz_ops.c -- libFuzzer target: the input bytes drive a sequence of API
 * calls against a model.
 *
 * Byte 0 configures the file (page size 1, 2 or 4 KiB; address
 * reservation from 64 KiB, so growth fails early, to the default).  Then
 * each op is an opcode byte and its operand bytes (missing bytes read as
 * zero): alloc, free (of allocated, pending, system and out-of-range ids),
 * alloc_bulk (including counts no file can hold), free_bulk (with
 * duplicates and bad ids), begin / commit / rollback (also misused),
 * set_root, protected alloc / free / write / write_ptr (also of free and
 * out-of-range pids, and write_ptr outside a transaction), rewriting a
 * regular page, reopen read-write or read-only (also after appending
 * garbage to the file, as another tool might), and a failing durability
 * barrier (EIO or ENOSPC through mp_set_io_hook).
 *
 * After every op: the return code is the one the model expects (misuse is
 * an error code, never a crash), mp_check passes, and mp_next_page,
 * mp_next_protected, mp_protected_ptr contents, page stamps, the pid
 * reuse rule and info() agree with the model.  See fuzz/README.md.
 */
#include "fuzz_common.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXPG 4096          /* pages: the largest reservation / smallest page */
#define MAXPID 1024         /* pids the model tracks (allocations stop there) */
#define MAXOPS 400

/* regular page states in the model */
enum { R_FREE = 0, R_ALLOC = 1, R_PENDING = 2 };

typedef struct model {
    uint8_t reg[MAXPG];       /* working */
    uint8_t creg[MAXPG];      /* committed (R_FREE / R_ALLOC) */
    int prot[MAXPID];         /* working: -1 free, -2 freed in this txn, else content byte (0 = zeros) */
    int cprot[MAXPID];        /* committed */
    uint64_t limit, climit;   /* pid limits */
    uint64_t root, croot;
} model;

static model M;
static model A, B;            /* after a failed barrier: the durable state, the failed commit's */
static uint32_t stampv[MAXPG];
static void *wptr[MAXPID];    /* write_ptr pages of the open transaction */
static mp_pager *P;
static const char *path;
static uint32_t PS;
static uint64_t max_bytes;
static int in_txn, poisoned, readonly;
static uint64_t txn_before_poison;
static int fail_next_barrier;  /* errno to inject, 0 = none */
static unsigned char pagebuf[4096], expectbuf[4096];
static uint64_t hw;            /* every page id the model holds is below it */

typedef struct reader {
    const uint8_t *d;
    size_t n, i;
} reader;
static reader R;
static unsigned byte(void) { return R.i < R.n ? R.d[R.i++] : 0; }
static uint64_t lit(int n)
{
    uint64_t v = 0;
    for (int k = 0; k < n; k++)
        v |= (uint64_t)byte() << (8 * k);
    return v;
}

#define CHECK(cond, ...) FZ_CHECK(cond, __VA_ARGS__)
#define EXPECT(rc, want, what)                                                          \
    CHECK((rc) == (want), "%s: got %s, model expects %s (%s)", what, mp_errname(rc),    \
          mp_errname(want), P ? mp_errmsg(P) : "")

static int hook(mp_io_op op, int fd, void *ctx)
{
    (void)ctx;
    if (op != MP_IO_BARRIER)
        return 0;   /* growth and page writes run as usual */
    if (fail_next_barrier) {
        int e = fail_next_barrier;
        fail_next_barrier = 0;
        mp_set_io_hook(NULL, NULL);
        return e;
    }
    return fdatasync(fd) == 0 ? 0 : errno;
}

/* ---- model transitions ----------------------------------------------------- */

static void model_commit(void)
{
    for (uint64_t i = 0; i < hw; i++) {
        if (M.reg[i] == R_PENDING)
            M.reg[i] = R_FREE;
        M.creg[i] = M.reg[i];
    }
    for (uint64_t i = 0; i < M.limit; i++) {
        if (M.prot[i] == -2)
            M.prot[i] = -1;
        M.cprot[i] = M.prot[i];
    }
    M.climit = M.limit;
    M.croot = M.root;
    memset(wptr, 0, sizeof wptr);
}

static void model_rollback(void)
{
    memcpy(M.reg, M.creg, (size_t)hw);
    for (uint64_t i = 0; i < M.limit; i++)
        M.prot[i] = i < M.climit ? M.cprot[i] : -1;
    M.limit = M.climit;
    M.root = M.croot;
    memset(wptr, 0, sizeof wptr);
}

/* after an auto-committed mutation: its result, applied to the model */
static void settle(mp_err rc)
{
    if (in_txn)
        return;
    if (rc == MP_OK)
        model_commit();
    else
        model_rollback();
}

static uint64_t model_next_pid(void)
{
    for (uint64_t pid = 0; pid < M.climit; pid++)
        if (M.cprot[pid] == -1 && M.prot[pid] == -1)
            return pid;
    return M.limit;
}

/* error class for a page id the model says is not allocated */
static int bad_page_rc(uint64_t id, mp_err rc)
{
    if (id >= mp_page_count(P))
        return rc == MP_ERANGE;
    if (id < MAXPG && M.reg[id] == R_PENDING)
        return rc == MP_ENOTALLOC;
    return rc == MP_ERESERVED || rc == MP_ENOTALLOC;
}

static void fill_prot(unsigned char *buf, uint64_t pid, int v)
{
    memset(buf, v, PS);
    memcpy(buf, &pid, 8);
}

static void stamp(uint64_t id)
{
    unsigned char *pg = mp_page_ptr(P, id);
    CHECK(pg != NULL, "no pointer for allocated page %llu", (unsigned long long)id);
    uint64_t v = ((uint64_t)stampv[id] << 32) | id;
    memcpy(pg, &v, 8);
    memcpy(pg + PS - 8, &v, 8);
}

/* ---- verification ------------------------------------------------------------ */

static void verify(const char *when)
{
    mp_err rc = mp_check(P);
    CHECK(rc == MP_OK, "%s: mp_check: %s", when, mp_errmsg(P));
    mp_info in;
    mp_get_info(P, &in);
    uint64_t pc = mp_page_count(P);
    CHECK(pc <= MAXPG, "%s: page count %llu beyond the reservation", when, (unsigned long long)pc);
    CHECK(in.in_txn == in_txn && in.readonly == readonly && in.poisoned == poisoned,
          "%s: info flags (txn %d/%d, readonly %d/%d, poisoned %d/%d)", when, in.in_txn, in_txn,
          in.readonly, readonly, in.poisoned, poisoned);
    CHECK(mp_root(P) == M.root && in.user_root == M.root, "%s: root %llu, model %llu", when,
          (unsigned long long)mp_root(P), (unsigned long long)M.root);
    /* regular pages */
    uint64_t n = 0, want = 0;
    mp_pgno from = 0, id;
    if (pc > hw)
        hw = pc;
    for (uint64_t i = 0; i < hw; i++) {
        if (M.reg[i] == R_ALLOC)
            want++;
        if (i >= pc)
            CHECK(M.reg[i] == R_FREE, "%s: model has page %llu past the end", when, (unsigned long long)i);
    }
    while (mp_next_page(P, from, &id)) {
        CHECK(id >= from && id < pc, "%s: next_page(%llu) = %llu", when, (unsigned long long)from,
              (unsigned long long)id);
        CHECK(M.reg[id] == R_ALLOC, "%s: next_page gave %llu, model state %d", when, (unsigned long long)id,
              M.reg[id]);
        uint64_t v, w = ((uint64_t)stampv[id] << 32) | id, v2;
        const unsigned char *pg = mp_page_ptr(P, id);
        memcpy(&v, pg, 8);
        memcpy(&v2, pg + PS - 8, 8);
        CHECK(v == w && v2 == w, "%s: page %llu lost its content", when, (unsigned long long)id);
        n++;
        from = id + 1;
    }
    CHECK(n == want && in.regular_count == want, "%s: %llu regular pages iterated, info %llu, model %llu",
          when, (unsigned long long)n, (unsigned long long)in.regular_count, (unsigned long long)want);
    /* protected pages */
    CHECK(in.pid_limit == M.limit, "%s: pid limit %llu, model %llu", when, (unsigned long long)in.pid_limit,
          (unsigned long long)M.limit);
    uint64_t count = 0;
    for (uint64_t pid = 0; pid < M.limit + 2; pid++) {
        int v = pid < M.limit ? M.prot[pid] : -1;
        const unsigned char *c = mp_protected_ptr(P, pid);
        mp_err cr = mp_check_protected(P, pid);
        if (v < 0) {
            CHECK(c == NULL && cr == (pid < M.limit ? MP_ENOTALLOC : MP_ERANGE),
                  "%s: pid %llu should be free (%s)", when, (unsigned long long)pid, mp_errname(cr));
            continue;
        }
        count++;
        CHECK(c != NULL && cr == MP_OK, "%s: pid %llu missing", when, (unsigned long long)pid);
        if (wptr[pid])
            CHECK(c == wptr[pid], "%s: pid %llu: protected_ptr is not the write_ptr page", when,
                  (unsigned long long)pid);
        if (v == 0)
            memset(expectbuf, 0, PS);
        else
            fill_prot(expectbuf, pid, v);
        if (memcmp(c, expectbuf, PS) != 0) {
            uint64_t tag;
            memcpy(&tag, c, 8);
            CHECK(0, "%s: pid %llu content differs from the model (model %d, tag %llu, byte 8 is %d)", when,
                  (unsigned long long)pid, v, (unsigned long long)tag, c[8]);
        }
    }
    CHECK(in.protected_count == count, "%s: %llu protected, model %llu", when,
          (unsigned long long)in.protected_count, (unsigned long long)count);
    uint64_t seen = 0;
    from = 0;
    while (mp_next_protected(P, from, &id)) {
        CHECK(id >= from && id < M.limit && M.prot[id] >= 0, "%s: next_protected gave %llu", when,
              (unsigned long long)id);
        seen++;
        from = id + 1;
    }
    CHECK(seen == count, "%s: iteration saw %llu of %llu protected", when, (unsigned long long)seen,
          (unsigned long long)count);
}

/* ---- lifecycle ------------------------------------------------------------------ */

static void open_pager(int ro)
{
    mp_options o = { .readonly = ro, .max_bytes = max_bytes };
    mp_error err;
    mp_err rc = mp_open(path, &o, &P, &err);
    CHECK(rc == MP_OK, "reopen%s: %s", ro ? " read-only" : "", err.msg);
    readonly = ro;
    poisoned = 0;
    in_txn = 0;
}

/* Append n pseudo-random bytes to the closed file: "another tool" grew
 * it.  Open must ignore the excess, and growth reuse it. */
static void append_garbage(size_t n, unsigned seed)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    CHECK(fd >= 0, "append: open %s: %s", path, strerror(errno));
    unsigned char buf[512];
    uint32_t x = seed * 2654435761u + 1;
    while (n > 0) {
        size_t k = n < sizeof buf ? n : sizeof buf;
        for (size_t i = 0; i < k; i++) {
            x = x * 1103515245u + 12345u;
            buf[i] = (unsigned char)(x >> 16);
        }
        CHECK(write(fd, buf, k) == (ssize_t)k, "append: write: %s", strerror(errno));
        n -= k;
    }
    close(fd);
}

static void reopen_after(int ro, size_t append, unsigned seed)
{
    mp_info in;
    mp_get_info(P, &in);
    int was_poisoned = poisoned;
    mp_close(P);
    P = NULL;
    if (in_txn)
        model_rollback();
    in_txn = 0;
    mp_set_io_hook(NULL, NULL);
    fail_next_barrier = 0;
    if (append)
        append_garbage(append, seed);
    open_pager(ro);
    mp_info now;
    mp_get_info(P, &now);
    if (was_poisoned) {
        /* the failed commit may or may not have reached the file: the txn
         * id says which; either way nothing earlier is lost */
        CHECK(now.txn == txn_before_poison || now.txn == txn_before_poison + 1,
              "after a failed barrier: txn %llu, last durable %llu", (unsigned long long)now.txn,
              (unsigned long long)txn_before_poison);
        M = now.txn == txn_before_poison ? A : B;
    } else {
        CHECK(now.txn == in.txn, "reopen: txn %llu, before %llu", (unsigned long long)now.txn,
              (unsigned long long)in.txn);
    }
    memset(wptr, 0, sizeof wptr);
}

static void reopen(int ro)
{
    reopen_after(ro, 0, 0);
}

/* ---- ops -------------------------------------------------------------------------- */

/* Pick a page id from the operand: mostly an allocated one, else anything. */
static uint64_t pick_page(void)
{
    unsigned b = byte();
    uint64_t pc = mp_page_count(P);
    switch (b & 7) {
    case 0: return lit(1);                      /* small: system pages among them */
    case 1: return pc + lit(1) % 4;             /* past the end */
    case 2: return lit(8);                      /* anything */
    default: {
        uint64_t k = lit(2), n = 0;
        for (uint64_t i = 0; i < hw; i++)
            n += M.reg[i] == R_ALLOC;
        if (n == 0)
            return (uint64_t)k % (pc ? pc : 1);
        k %= n;
        for (uint64_t i = 0; i < hw; i++)
            if (M.reg[i] == R_ALLOC && k-- == 0)
                return i;
        return 0;
    }
    }
}

static uint64_t pick_pid(void)
{
    unsigned b = byte();
    switch (b & 7) {
    case 0: return lit(1);
    case 1: return M.limit + lit(1) % 3;
    case 2: return lit(8);
    default: {
        uint64_t k = lit(1), n = 0;
        for (uint64_t i = 0; i < M.limit; i++)
            n += M.prot[i] >= 0;
        if (n == 0)
            return k % (M.limit + 1);
        k %= n;
        for (uint64_t i = 0; i < M.limit; i++)
            if (M.prot[i] >= 0 && k-- == 0)
                return i;
        return 0;
    }
    }
}

/* Errors a mutation may legitimately return on a read-only or poisoned
 * pager: the call must be refused before anything else. */
static int refused(mp_err *want)
{
    if (readonly) {
        *want = MP_EREADONLY;
        return 1;
    }
    if (poisoned) {
        *want = MP_EPOISONED;
        return 1;
    }
    return 0;
}

static int fullish(mp_err rc) { return rc == MP_EFULL || rc == MP_ENOSPC; }

static void op_alloc(void)
{
    mp_err want;
    mp_pgno id = UINT64_MAX;
    if (refused(&want)) {
        EXPECT(mp_alloc(P, &id), want, "alloc");
        return;
    }
    mp_err rc = mp_alloc(P, &id);
    if (rc == MP_OK) {
        CHECK(id < mp_page_count(P) && id < MAXPG, "alloc gave %llu (page count %llu)", (unsigned long long)id,
              (unsigned long long)mp_page_count(P));
        CHECK(M.reg[id] == R_FREE, "alloc gave page %llu in model state %d (pending: freed by this transaction)",
              (unsigned long long)id, M.reg[id]);
        CHECK(mp_check_page(P, id) == MP_OK, "alloc gave %llu, not allocated", (unsigned long long)id);
        M.reg[id] = R_ALLOC;
        if (id >= hw)
            hw = id + 1;
        stampv[id]++;
        stamp(id);
    } else {
        CHECK(fullish(rc) || rc == MP_ENOMEM, "alloc: %s: %s", mp_errname(rc), mp_errmsg(P));
    }
    settle(rc);
}

static void op_free(void)
{
    uint64_t id = pick_page();
    mp_err want;
    if (refused(&want)) {
        EXPECT(mp_free(P, id), want, "free");
        return;
    }
    int valid = id < MAXPG && id < mp_page_count(P) && M.reg[id] == R_ALLOC;
    mp_err rc = mp_free(P, id);
    if (valid) {
        EXPECT(rc, MP_OK, "free");
        M.reg[id] = R_PENDING;
        settle(rc);
    } else {
        CHECK(bad_page_rc(id, rc), "free(%llu) of a page the model says is not allocated: %s",
              (unsigned long long)id, mp_errname(rc));
    }
}

static void op_alloc_bulk(void)
{
    unsigned b = byte();
    size_t n = b < 200 ? b % 40 : b < 250 ? (size_t)lit(2) % 600 : ((size_t)1 << 33) + b;
    mp_err want;
    static mp_pgno ids[600];
    if (refused(&want)) {
        EXPECT(mp_alloc_bulk(P, n > 600 ? 600 : n, ids), want, "alloc_bulk");
        return;
    }
    mp_pgno canary = 0x5eed5eed5eedull;
    ids[0] = canary;
    uint64_t pc0 = mp_page_count(P);
    mp_err rc = mp_alloc_bulk(P, n, ids);   /* n > 600 must fail before writing ids */
    if (n > 600) {
        CHECK(fullish(rc), "alloc_bulk(%zu): %s", n, mp_errname(rc));
        CHECK(ids[0] == canary && mp_page_count(P) == pc0, "alloc_bulk(%zu) failed but wrote ids or grew", n);
        settle(rc);
        return;
    }
    if (rc == MP_OK) {
        for (size_t i = 0; i < n; i++) {
            CHECK(ids[i] < mp_page_count(P) && ids[i] < MAXPG && M.reg[ids[i]] == R_FREE,
                  "alloc_bulk gave %llu (state %d)", (unsigned long long)ids[i],
                  ids[i] < MAXPG ? M.reg[ids[i]] : -1);
            M.reg[ids[i]] = R_ALLOC;
            if (ids[i] >= hw)
                hw = ids[i] + 1;
            stampv[ids[i]]++;
            stamp(ids[i]);
        }
    } else {
        CHECK(fullish(rc) || rc == MP_ENOMEM, "alloc_bulk(%zu): %s: %s", n, mp_errname(rc), mp_errmsg(P));
    }
    settle(rc);
}

static void op_free_bulk(void)
{
    unsigned n = byte() % 12;
    mp_pgno ids[12];
    for (unsigned i = 0; i < n; i++) {
        unsigned b = byte();
        if ((b & 3) == 0 && i > 0)
            ids[i] = ids[b % i];   /* a duplicate */
        else
            ids[i] = pick_page();
    }
    mp_err want;
    if (refused(&want)) {
        EXPECT(mp_free_bulk(P, n, ids), want, "free_bulk");
        return;
    }
    /* the model's verdict: the first invalid id, else a duplicate, else OK */
    int bad = -1, dup = 0;
    for (unsigned i = 0; i < n && bad < 0; i++)
        if (!(ids[i] < MAXPG && ids[i] < mp_page_count(P) && M.reg[ids[i]] == R_ALLOC))
            bad = (int)i;
    for (unsigned i = 0; i < n; i++)
        for (unsigned j = 0; j < i; j++)
            dup |= ids[i] == ids[j];
    mp_err rc = mp_free_bulk(P, n, ids);
    if (bad >= 0) {
        CHECK(bad_page_rc(ids[bad], rc), "free_bulk with bad id %llu: %s", (unsigned long long)ids[bad],
              mp_errname(rc));
        return;
    }
    if (dup) {
        EXPECT(rc, MP_EDUP, "free_bulk with a duplicate");
        return;
    }
    EXPECT(rc, MP_OK, "free_bulk");
    for (unsigned i = 0; i < n; i++)
        M.reg[ids[i]] = R_PENDING;
    if (n)
        settle(rc);
}

static void op_begin(void)
{
    mp_err want = MP_OK;
    if (!refused(&want) && in_txn)
        want = MP_ETXN;
    EXPECT(mp_begin(P), want, "begin");
    if (want == MP_OK)
        in_txn = 1;
}

static void op_commit(void)
{
    if (!in_txn) {
        EXPECT(mp_commit(P), MP_ETXN, "commit without a transaction");
        return;
    }
    mp_info in, after;
    mp_get_info(P, &in);
    mp_err rc = mp_commit(P);
    in_txn = 0;
    mp_get_info(P, &after);
    if (rc == MP_OK) {
        model_commit();
        CHECK(after.barriers == in.barriers + 1, "commit took %llu barriers",
              (unsigned long long)(after.barriers - in.barriers));
        return;
    }
    CHECK(fullish(rc) || rc == MP_ENOMEM, "commit: %s: %s", mp_errname(rc), mp_errmsg(P));
    model_rollback();
}

static void op_rollback(void)
{
    if (!in_txn) {
        EXPECT(mp_rollback(P), MP_ETXN, "rollback without a transaction");
        return;
    }
    EXPECT(mp_rollback(P), MP_OK, "rollback");
    in_txn = 0;
    model_rollback();
}

static void op_set_root(void)
{
    uint64_t v = lit(8);
    mp_err want;
    if (refused(&want)) {
        EXPECT(mp_set_root(P, v), want, "set_root");
        return;
    }
    EXPECT(mp_set_root(P, v), MP_OK, "set_root");
    M.root = v;
    settle(MP_OK);
}

static void op_alloc_protected(void)
{
    mp_err want;
    mp_pgno pid = UINT64_MAX;
    if (refused(&want)) {
        EXPECT(mp_alloc_protected(P, &pid), want, "alloc_protected");
        return;
    }
    if (M.limit >= MAXPID - 1)
        return;
    uint64_t expect = model_next_pid();
    mp_err rc = mp_alloc_protected(P, &pid);
    if (rc == MP_OK) {
        CHECK(pid == expect, "alloc_protected gave %llu, model %llu", (unsigned long long)pid,
              (unsigned long long)expect);
        if (pid == M.limit)
            M.limit++;
        M.prot[pid] = 0;
    } else {
        CHECK(fullish(rc) || rc == MP_ENOMEM, "alloc_protected: %s: %s", mp_errname(rc), mp_errmsg(P));
    }
    settle(rc);
}

static void op_free_protected(void)
{
    uint64_t pid = pick_pid();
    mp_err want;
    if (refused(&want)) {
        EXPECT(mp_free_protected(P, pid), want, "free_protected");
        return;
    }
    int valid = pid < M.limit && M.prot[pid] >= 0;
    mp_err rc = mp_free_protected(P, pid);
    if (!valid) {
        EXPECT(rc, pid < M.limit ? MP_ENOTALLOC : MP_ERANGE, "free_protected of a free pid");
        return;
    }
    if (rc == MP_OK) {
        M.prot[pid] = -2;
        wptr[pid] = NULL;
    } else {
        CHECK(fullish(rc) || rc == MP_ENOMEM, "free_protected: %s: %s", mp_errname(rc), mp_errmsg(P));
    }
    settle(rc);
}

static void op_write_protected(void)
{
    uint64_t pid = pick_pid();
    int v = 1 + (int)(byte() % 255);
    mp_err want;
    fill_prot(pagebuf, pid, v);
    if (refused(&want)) {
        EXPECT(mp_write_protected(P, pid, pagebuf), want, "write_protected");
        return;
    }
    int valid = pid < M.limit && M.prot[pid] >= 0;
    mp_err rc = mp_write_protected(P, pid, pagebuf);
    if (!valid) {
        EXPECT(rc, pid < M.limit ? MP_ENOTALLOC : MP_ERANGE, "write_protected of a free pid");
        return;
    }
    if (rc == MP_OK)
        M.prot[pid] = v;
    else
        CHECK(fullish(rc) || rc == MP_ENOMEM, "write_protected: %s: %s", mp_errname(rc), mp_errmsg(P));
    settle(rc);
}

static void op_write_ptr(void)
{
    uint64_t pid = pick_pid();
    int v = 1 + (int)(byte() % 255);
    unsigned part = byte();
    void *w = NULL;
    mp_err want;
    if (refused(&want)) {
        EXPECT(mp_protected_write_ptr(P, pid, &w), want, "write_ptr");
        return;
    }
    mp_err rc = mp_protected_write_ptr(P, pid, &w);
    if (!in_txn) {
        EXPECT(rc, MP_ETXN, "write_ptr outside a transaction");
        return;
    }
    int valid = pid < M.limit && M.prot[pid] >= 0;
    if (!valid) {
        EXPECT(rc, pid < M.limit ? MP_ENOTALLOC : MP_ERANGE, "write_ptr of a free pid");
        return;
    }
    if (rc != MP_OK) {
        CHECK(fullish(rc) || rc == MP_ENOMEM, "write_ptr: %s: %s", mp_errname(rc), mp_errmsg(P));
        return;
    }
    CHECK(w != NULL, "write_ptr: NULL page");
    if (wptr[pid])
        CHECK(w == wptr[pid], "write_ptr: another page for pid %llu in the same transaction",
              (unsigned long long)pid);
    wptr[pid] = w;
    /* the copy-on-write page holds the current content */
    const unsigned char *c = w;
    int cur = M.prot[pid];
    uint64_t tag;
    memcpy(&tag, c, 8);
    CHECK(cur == 0 ? tag == 0 && c[PS - 1] == 0 : tag == pid && c[PS - 1] == cur,
          "write_ptr: pid %llu's page does not hold its content", (unsigned long long)pid);
    if (part & 1) {   /* write it all */
        fill_prot(w, pid, v);
        M.prot[pid] = v;
    }
}

static void op_rewrite_page(void)
{
    uint64_t id = pick_page();
    if (readonly || id >= MAXPG || id >= mp_page_count(P) || M.reg[id] != R_ALLOC)
        return;
    stampv[id]++;
    stamp(id);
}

/* Fail the next durability barrier (EIO or ENOSPC) and run a call that
 * commits: the commit of the open transaction, else one auto-committed
 * mutation whose effect the model knows without its output.  The call
 * must fail with that error and poison the pager; memory shows the last
 * durable state (A); the file holds A or the failed commit's state (B),
 * which reopen() tells apart by the transaction id. */
static void op_fail_barrier(void)
{
    if (readonly || poisoned)
        return;
    int e = (byte() & 1) ? EIO : ENOSPC;
    unsigned what = byte();
    mp_info in;
    mp_get_info(P, &in);
    model saved = M;
    model_rollback();
    A = M;          /* the durable state */
    M = saved;
    txn_before_poison = in.txn;
    fail_next_barrier = e;
    mp_set_io_hook(hook, NULL);
    mp_err rc;
    const char *call = "commit";
    if (in_txn) {
        rc = mp_commit(P);
        in_txn = 0;
    } else {
        uint64_t pick = pick_pid(), page = pick_page();
        int valid_pid = pick < M.limit && M.prot[pick] >= 0;
        int valid_page = page < MAXPG && page < mp_page_count(P) && M.reg[page] == R_ALLOC;
        switch (what % 5) {
        case 1:
            if (valid_page) {
                call = "free";
                rc = mp_free(P, page);
                M.reg[page] = R_PENDING;
                break;
            }
            /* fall through */
        case 2:
            if (valid_pid) {
                call = "write_protected";
                int v = 1 + (int)(what % 251);
                fill_prot(pagebuf, pick, v);
                rc = mp_write_protected(P, pick, pagebuf);
                M.prot[pick] = v;
                break;
            }
            /* fall through */
        case 3:
            if (valid_pid) {
                call = "free_protected";
                rc = mp_free_protected(P, pick);
                M.prot[pick] = -2;
                break;
            }
            /* fall through */
        case 4:
            if (M.limit < MAXPID - 1) {
                call = "alloc_protected";
                mp_pgno pid = model_next_pid();
                if (pid == M.limit)
                    M.limit++;
                M.prot[pid] = 0;
                mp_pgno got;
                rc = mp_alloc_protected(P, &got);
                break;
            }
            /* fall through */
        default:
            call = "set_root";
            M.root = lit(8);
            rc = mp_set_root(P, M.root);
            break;
        }
    }
    mp_set_io_hook(NULL, NULL);
    if (fail_next_barrier) {
        /* no barrier reached: the call failed before its commit, which is
         * legitimate only when the file could not grow */
        fail_next_barrier = 0;
        CHECK(fullish(rc) || rc == MP_ENOMEM, "%s issued no barrier: %s", call, mp_errname(rc));
        M = A;
        return;
    }
    mp_err want = e == EIO ? MP_EIO : MP_ENOSPC;
    EXPECT(rc, want, call);
    mp_get_info(P, &in);
    CHECK(in.poisoned, "%s: a failed barrier did not poison the pager", call);
    poisoned = 1;
    model_commit();
    B = M;          /* what the failed commit wrote */
    M = A;
}

static void op_readonly_misuse(void)
{
    /* reads that must never crash, whatever the id */
    uint64_t id = lit(8);
    (void)mp_check_page(P, id);
    (void)mp_page_ptr(P, id);
    (void)mp_check_protected(P, id);
    (void)mp_protected_ptr(P, id);
    mp_pgno out;
    (void)mp_next_page(P, id, &out);
    (void)mp_next_protected(P, id, &out);
    CHECK(mp_page_ptr(P, mp_page_count(P)) == NULL, "page_ptr past the end");
    (void)mp_alloc_room(P);
    (void)mp_free_count(P);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    R = (reader){ data, size, 0 };
    unsigned cfg = byte();
    static const uint32_t sizes[] = { 1024, 1024, 2048, 4096 };
    static const uint64_t reserves[] = { 64u << 10, 128u << 10, 256u << 10, 1u << 20 };
    PS = sizes[cfg & 3];
    max_bytes = reserves[(cfg >> 2) & 3];
    if (max_bytes / PS > MAXPG)
        max_bytes = (uint64_t)MAXPG * PS;
    path = fz_tmp_path(1, "ops.mp");
    unlink(path);
    memset(&M, 0, sizeof M);
    for (int i = 0; i < MAXPID; i++)
        M.prot[i] = M.cprot[i] = -1;
    memset(stampv, 0, sizeof stampv);
    hw = 0;
    memset(wptr, 0, sizeof wptr);
    in_txn = poisoned = readonly = 0;
    fail_next_barrier = 0;
    mp_set_io_hook(NULL, NULL);
    mp_options o = { .page_size = PS, .max_bytes = max_bytes };
    mp_error err;
    mp_err rc = mp_create(path, &o, &P, &err);
    CHECK(rc == MP_OK, "create: %s", err.msg);
    verify("create");
    for (int ops = 0; R.i < R.n && ops < MAXOPS; ops++) {
        unsigned op = byte() % 21;
        switch (op) {
        case 0: case 1: op_alloc(); break;
        case 2: case 3: op_free(); break;
        case 4: op_alloc_bulk(); break;
        case 5: op_free_bulk(); break;
        case 6: op_begin(); break;
        case 7: op_commit(); break;
        case 8: op_rollback(); break;
        case 9: op_set_root(); break;
        case 10: case 11: op_alloc_protected(); break;
        case 12: op_free_protected(); break;
        case 13: op_write_protected(); break;
        case 14: op_write_ptr(); break;
        case 15: op_rewrite_page(); break;
        case 16: reopen(byte() % 4 == 0); break;
        case 17: if (readonly || poisoned) reopen(0); else op_fail_barrier(); break;
        case 18: op_readonly_misuse(); break;
        case 19: if (poisoned) reopen(0); else op_alloc(); break;
        default: {   /* another tool appends to the file */
            size_t n = (size_t)lit(2);
            reopen_after(byte() % 4 == 0, n, (unsigned)n);
            break;
        }
        }
        verify("after op");
    }
    mp_close(P);
    P = NULL;
    mp_set_io_hook(NULL, NULL);
    fail_next_barrier = 0;
    unlink(path);
    return 0;
}
