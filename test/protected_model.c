/*
 * protected_model.c -- protected pages against a model, at every page-table
 * height.
 *
 * Built with -DMP_TEST_FANOUT=8: page-table leaves hold 8 entries and nodes
 * 8 children, so a few thousand pids make a table of height 3.  A seeded
 * random sequence of alloc_protected, free_protected, whole-page writes and
 * in-place transaction writes, regular allocs and frees, set_root,
 * transactions committed or rolled back, and reopens is checked against a
 * model of the committed and the working state: every pid's content, the
 * lowest-free-pid reuse rule (a pid freed in a transaction is reusable from
 * the next), one barrier per commit, the audit (mp_check), and physical
 * pages per protected page; after each reopen, a copy of the file
 * (mp_copy) is checked against the committed model the same way.  Run by
 * spec/06-tree_spec.lua; prints "ok".
 *
 * Usage: protected_model DIR [SEED [OPS]]
 */
#include "mappedpages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef MP_TEST_FANOUT
#error "build with -DMP_TEST_FANOUT=8"
#endif

#define PS 1024u
#define MAXPID 6000

static char path[4096];
static mp_pager *P;
static unsigned long long seed;
static uint64_t rng;

/* model: content byte of each pid (the page is filled with it and the pid
 * in its first 8 bytes), -1 = free; a pid freed in the open transaction
 * is -2 until it commits */
static int committed[MAXPID], working[MAXPID];
static uint64_t c_limit, w_limit;
static uint64_t c_root, w_root;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "protected_model (seed %llu):%d: ", seed, __LINE__);  \
            fprintf(stderr, __VA_ARGS__);                                         \
            fprintf(stderr, " [%s]\n", P ? mp_errmsg(P) : "");                    \
            exit(1);                                                              \
        }                                                                         \
    } while (0)

static void ok(mp_err rc, const char *what)
{
    CHECK(rc == MP_OK, "%s: %s", what, mp_errname(rc));
}

static void fill(unsigned char *page, uint64_t pid, int v)
{
    memset(page, v, PS);
    memcpy(page, &pid, 8);
}

static void verify(const char *when)
{
    mp_info in;
    mp_get_info(P, &in);
    CHECK(in.pid_limit == w_limit, "%s: pid limit %llu, model %llu", when,
          (unsigned long long)in.pid_limit, (unsigned long long)w_limit);
    uint64_t count = 0, written = 0;
    for (uint64_t pid = 0; pid < w_limit; pid++) {
        const unsigned char *c = mp_protected_ptr(P, pid);
        int v = working[pid];
        if (v < 0) {
            CHECK(c == NULL && mp_check_protected(P, pid) == MP_ENOTALLOC, "%s: pid %llu should be free",
                  when, (unsigned long long)pid);
            continue;
        }
        count++;
        CHECK(c != NULL, "%s: pid %llu missing", when, (unsigned long long)pid);
        uint64_t tag;
        memcpy(&tag, c, 8);
        if (v == 0) {
            CHECK(tag == 0 && c[100] == 0 && c[PS - 1] == 0, "%s: pid %llu should read zeros", when,
                  (unsigned long long)pid);
        } else {
            written++;
            CHECK(tag == pid && c[100] == v && c[PS - 1] == v, "%s: pid %llu content %d, model %d", when,
                  (unsigned long long)pid, c[100], v);
        }
    }
    CHECK(in.protected_count == count, "%s: %llu protected, model %llu", when,
          (unsigned long long)in.protected_count, (unsigned long long)count);
    CHECK(in.protected_pages <= written, "%s: %llu pages hold protected content for %llu written pids",
          when, (unsigned long long)in.protected_pages, (unsigned long long)written);
    CHECK(mp_root(P) == w_root, "%s: root", when);
    mp_pgno next = 0, seen = 0;
    while (mp_next_protected(P, next, &next)) {
        CHECK(working[next] >= 0, "%s: iteration gave free pid %llu", when, (unsigned long long)next);
        seen++;
        next++;
    }
    CHECK(seen == count, "%s: iteration saw %llu of %llu", when, (unsigned long long)seen,
          (unsigned long long)count);
    ok(mp_check(P), when);
}

/* A copy of the file (mp_copy) holds the committed model: every pid's
 * content, the pid limit, the root, the same transaction; the audit
 * passes on it.  Outside a transaction (working == committed). */
static void copy_verify(const char *when)
{
    char cpath[4200];
    snprintf(cpath, sizeof cpath, "%s.copy", path);
    unlink(cpath);
    mp_error e;
    mp_info a, b;
    mp_get_info(P, &a);
    CHECK(mp_copy(P, cpath, &e) == MP_OK, "%s: copy: %s", when, e.msg);
    mp_pager *orig = P;
    CHECK(mp_open(cpath, NULL, &P, &e) == MP_OK, "%s: open the copy: %s", when, e.msg);
    mp_get_info(P, &b);
    CHECK(b.txn == a.txn && b.page_count == a.page_count && b.protected_pages == a.protected_pages,
          "%s: the copy is at txn %llu (source %llu)", when, (unsigned long long)b.txn,
          (unsigned long long)a.txn);
    verify(when);
    mp_close(P);
    P = orig;
    unlink(cpath);
}

/* the pid the model expects alloc_protected to return */
static uint64_t model_next_pid(void)
{
    for (uint64_t pid = 0; pid < w_limit; pid++)
        if (committed[pid] == -1 && working[pid] == -1)
            return pid;
    return w_limit;
}

static void do_commit(int in_txn)
{
    mp_info a, b;
    mp_get_info(P, &a);
    if (in_txn)
        ok(mp_commit(P), "commit");
    mp_get_info(P, &b);
    if (in_txn)
        CHECK(b.barriers - a.barriers == 1, "commit took %llu barriers",
              (unsigned long long)(b.barriers - a.barriers));
    for (uint64_t pid = 0; pid < w_limit; pid++) {
        if (working[pid] == -2)
            working[pid] = -1;
        committed[pid] = working[pid];
    }
    c_limit = w_limit;
    c_root = w_root;
}

static void do_rollback(void)
{
    ok(mp_rollback(P), "rollback");
    memcpy(working, committed, sizeof working);
    w_limit = c_limit;
    w_root = c_root;
}

static void one_op(int in_txn)
{
    unsigned char page[PS];
    uint64_t r = rnd() % 100;
    if (r < 30 && w_limit < MAXPID) {                       /* alloc_protected */
        uint64_t want = model_next_pid(), pid;
        ok(mp_alloc_protected(P, &pid), "alloc_protected");
        CHECK(pid == want, "alloc_protected gave %llu, model %llu", (unsigned long long)pid,
              (unsigned long long)want);
        if (pid == w_limit)
            w_limit++;
        working[pid] = 0;
    } else if (r < 45 && w_limit) {                         /* free_protected */
        uint64_t pid = rnd() % w_limit;
        mp_err rc = mp_free_protected(P, pid);
        if (working[pid] >= 0) {
            ok(rc, "free_protected");
            working[pid] = -2;
        } else {
            CHECK(rc == MP_ENOTALLOC, "free of a free pid gave %s", mp_errname(rc));
        }
    } else if (r < 75 && w_limit) {                         /* write */
        uint64_t pid = rnd() % w_limit;
        int v = 1 + (int)(rnd() % 255);
        if (working[pid] < 0)
            return;
        if (in_txn && (rnd() & 1)) {
            void *w;
            ok(mp_protected_write_ptr(P, pid, &w), "write_ptr");
            fill(w, pid, v);
        } else {
            fill(page, pid, v);
            ok(mp_write_protected(P, pid, page), "write_protected");
        }
        working[pid] = v;
    } else if (r < 85) {                                    /* regular traffic */
        mp_pgno id;
        ok(mp_alloc(P, &id), "alloc");
        if (rnd() & 1)
            ok(mp_free(P, id), "free");
    } else {
        w_root = rnd();
        ok(mp_set_root(P, w_root), "set_root");
    }
    if (!in_txn)
        do_commit(0);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2, "usage: protected_model DIR [SEED [OPS]]");
    seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
    long ops = argc > 3 ? atol(argv[3]) : 20000;
    rng = seed * 0x9E3779B97F4A7C15ull + 1;
    snprintf(path, sizeof path, "%s/protected_model.mp", argv[1]);
    unlink(path);
    for (int i = 0; i < MAXPID; i++)
        committed[i] = working[i] = -1;
    mp_error e;
    mp_options o = { .page_size = PS };
    CHECK(mp_create(path, &o, &P, &e) == MP_OK, "create: %s", e.msg);
    uint32_t max_height = 0;
    for (long k = 0; k < ops;) {
        uint64_t r = rnd() % 100;
        if (r < 60) {                 /* a transaction of 1..60 operations */
            ok(mp_begin(P), "begin");
            long n = 1 + (long)(rnd() % 60);
            for (long j = 0; j < n; j++, k++)
                one_op(1);
            verify("inside a transaction");
            if (rnd() % 4 == 0)
                do_rollback();
            else
                do_commit(1);
        } else if (r < 98) {
            one_op(0);
            k++;
        } else {
            mp_close(P);
            P = NULL;
            CHECK(mp_open(path, NULL, &P, &e) == MP_OK, "reopen: %s", e.msg);
            copy_verify("a copy");
        }
        if (k % 500 < 60)
            verify("after a step");
    }
    verify("at the end");
    mp_close(P);
    P = NULL;
    CHECK(mp_open(path, NULL, &P, &e) == MP_OK, "reopen: %s", e.msg);
    verify("after the last reopen");
    copy_verify("the last copy");
    /* page-table height reached (root bytes 52..55) */
    FILE *f = fopen(path, "rb");
    unsigned char root[128];
    mp_info in;
    mp_get_info(P, &in);
    CHECK(f && fseek(f, (long)in.root_slot * PS, SEEK_SET) == 0 && fread(root, 1, 128, f) == 128, "read root");
    fclose(f);
    memcpy(&max_height, root + 52, 4);
    printf("seed %llu: %ld ops, %llu pids, %llu protected, %llu pages hold content, table height %u\n",
           seed, ops, (unsigned long long)in.pid_limit, (unsigned long long)in.protected_count,
           (unsigned long long)in.protected_pages, max_height);
    mp_close(P);
    unlink(path);
    printf("ok\n");
    return 0;
}
