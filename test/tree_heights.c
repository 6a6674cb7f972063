/*
 * tree_heights.c -- drive the free-space map through index heights 0..3.
 *
 * Built with -DMP_TEST_FANOUT=8 (index nodes of 8 entries, roots of 4), so
 * a file of 1 KiB pages needs an index level past 4 groups (~16K pages),
 * two past 32 (~127K) and three past 256 (~1M pages, 1 GiB).  Real
 * geometries reach height 2 only past ~55M pages, which no test can
 * afford, yet the same code paths (new levels, nodes hosted in the reserved
 * runs of groups >= 1, nodes no durable root knows) run there.
 *
 * Against a model of the allocated pages it checks, at every height: the
 * audit (mp_check), every page's state, iteration, reopen, rollback of a
 * growth that adds a level, and fallback to the older root when a node of
 * the newest tree is damaged, and copies (mp_copy) of a writer and of a
 * reader's snapshot.  Run by spec/06-tree_spec.lua; prints "ok".
 *
 * Usage: tree_heights DIR
 */
#include "mappedpages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef MP_TEST_FANOUT
#error "build with -DMP_TEST_FANOUT=8"
#endif

static char path[4096];
static mp_pager *P;
static unsigned char *model;     /* 1 = allocated regular page */
static uint64_t model_cap;
static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "tree_heights:%d: ", __LINE__);                \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, " [%s]\n", P ? mp_errmsg(P) : "");             \
            exit(1);                                                       \
        }                                                                  \
    } while (0)

static void ok(mp_err rc, const char *what)
{
    CHECK(rc == MP_OK, "%s: %s", what, mp_errname(rc));
}

static void model_set(mp_pgno id, unsigned char v)
{
    if (id >= model_cap) {
        uint64_t cap = model_cap ? model_cap : 1024;
        while (cap <= id)
            cap *= 2;
        model = realloc(model, cap);
        CHECK(model != NULL, "out of memory");
        memset(model + model_cap, 0, cap - model_cap);
        model_cap = cap;
    }
    model[id] = v;
}

/* The pager and the model agree on every page; the audit passes. */
static void verify(const char *when)
{
    mp_info in;
    mp_get_info(P, &in);
    ok(mp_check(P), when);
    uint64_t n = 0;
    for (mp_pgno id = 0; id < in.page_count; id++) {
        int alloc = id < model_cap && model[id];
        n += (uint64_t)alloc;
        CHECK((mp_check_page(P, id) == MP_OK) == alloc, "%s: page %llu state", when,
              (unsigned long long)id);
    }
    CHECK(n == in.regular_count, "%s: %llu regular, model %llu", when,
          (unsigned long long)in.regular_count, (unsigned long long)n);
    CHECK(in.page_count == in.free_count + in.regular_count + in.system_count + in.pending_count,
          "%s: page totals", when);
    uint64_t seen = 0;
    mp_pgno id = 0;
    while (mp_next_page(P, id, &id)) {
        CHECK(id < model_cap && model[id], "%s: iteration gave %llu", when, (unsigned long long)id);
        seen++;
        id++;
    }
    CHECK(seen == n, "%s: iteration saw %llu of %llu", when, (unsigned long long)seen,
          (unsigned long long)n);
}

static void reopen(const char *when)
{
    mp_error e;
    mp_close(P);
    P = NULL;
    CHECK(mp_open(path, NULL, &P, &e) == MP_OK, "%s: reopen: %s", when, e.msg);
    verify(when);
}

/* The copy of src at cpath opens, passes the audit, and shows src's
 * committed state: same transaction, counts (held pages free) and height,
 * the same regular pages. */
static void copy_same(mp_pager *src, const char *cpath, const char *when)
{
    mp_info a, b;
    mp_error e;
    mp_pager *c = NULL;
    mp_options ro = { .readonly = 1 };
    mp_get_info(src, &a);
    unlink(cpath);
    CHECK(mp_copy(src, cpath, &e) == MP_OK, "%s: copy: %s", when, e.msg);
    CHECK(mp_open(cpath, &ro, &c, &e) == MP_OK, "%s: open the copy: %s", when, e.msg);
    CHECK(mp_check(c) == MP_OK, "%s: the copy's audit: %s", when, mp_errmsg(c));
    mp_get_info(c, &b);
    CHECK(b.txn == a.txn && b.page_count == a.page_count && b.regular_count == a.regular_count &&
              b.free_count == a.free_count + a.held_count && b.held_count == 0 &&
              b.fsm_height == a.fsm_height && b.root_slot == 0,
          "%s: the copy differs: txn %llu/%llu, free %llu/%llu+%llu, height %u/%u", when,
          (unsigned long long)b.txn, (unsigned long long)a.txn, (unsigned long long)b.free_count,
          (unsigned long long)a.free_count, (unsigned long long)a.held_count, b.fsm_height,
          a.fsm_height);
    mp_pgno x = 0, y = 0;
    int hx, hy;
    do {
        hx = mp_next_page(src, x, &x);
        hy = mp_next_page(c, y, &y);
        CHECK(hx == hy && (!hx || x == y), "%s: the copy's regular pages differ at %llu", when,
              (unsigned long long)x);
        x++;
        y++;
    } while (hx);
    mp_close(c);
    unlink(cpath);
}

/* A writer's copy, and a reader's copy of its snapshot after the writer
 * has freed pages the snapshot reaches (held) and committed again. */
static void copies_match(const char *when)
{
    char cpath[4200];
    snprintf(cpath, sizeof cpath, "%s.copy", path);
    copy_same(P, cpath, when);
    mp_error e;
    mp_pager *r = NULL;
    mp_options ro = { .readonly = 1 };
    CHECK(mp_open(path, &ro, &r, &e) == MP_OK, "%s: reader: %s", when, e.msg);
    mp_info in;
    mp_get_info(P, &in);
    ok(mp_begin(P), "begin");
    for (uint64_t k = 0; k < in.regular_count / 20; k++) {
        mp_pgno id = rnd() % in.page_count;
        if (id < model_cap && model[id]) {
            ok(mp_free(P, id), "free");
            model_set(id, 0);
        }
    }
    ok(mp_commit(P), "commit");
    mp_pgno id;
    ok(mp_alloc(P, &id), "alloc");
    model_set(id, 1);
    copy_same(r, cpath, when);      /* the snapshot, not the writer's state */
    mp_get_info(P, &in);
    CHECK(in.held_count > 0, "%s: no page held for the reader", when);
    copy_same(P, cpath, when);      /* the pages held for r: free in the copy */
    mp_close(r);
    ok(mp_free(P, id), "free");     /* the first commit with no reader frees them */
    model_set(id, 0);
}

/* Allocate until the tree has height h (one transaction), free a random
 * tenth of the model, commit. */
static void grow_to_height(uint32_t h)
{
    mp_info in;
    ok(mp_begin(P), "begin");
    for (;;) {
        mp_get_info(P, &in);
        uint64_t want = in.free_count + 1024;
        mp_pgno *ids = malloc(want * sizeof *ids);
        CHECK(ids != NULL, "out of memory");
        ok(mp_alloc_bulk(P, want, ids), "alloc_bulk");
        for (uint64_t i = 0; i < want; i++)
            model_set(ids[i], 1);
        free(ids);
        ok(mp_commit(P), "commit");
        mp_get_info(P, &in);
        if (in.fsm_height >= h)
            break;
        ok(mp_begin(P), "begin");
    }
    CHECK(in.fsm_height == h, "height %u, wanted %u", in.fsm_height, h);
    ok(mp_begin(P), "begin");
    for (uint64_t k = 0; k < in.regular_count / 10; k++) {
        mp_pgno id = rnd() % in.page_count;
        if (id < model_cap && model[id]) {
            ok(mp_free(P, id), "free");
            model_set(id, 0);
        }
    }
    ok(mp_commit(P), "commit");
}

/* A transaction that grows the file by a new index level, rolled back. */
static void rollback_level_growth(void)
{
    mp_info before, in;
    mp_get_info(P, &before);
    ok(mp_begin(P), "begin");
    do {
        mp_pgno id;
        ok(mp_alloc(P, &id), "alloc");
        mp_get_info(P, &in);
    } while (in.free_count > 0 || in.page_count == before.page_count);
    /* one more growth step at least, then roll all of it back */
    mp_pgno id;
    ok(mp_alloc(P, &id), "alloc");
    ok(mp_rollback(P), "rollback");
    mp_get_info(P, &in);
    CHECK(in.page_count == before.page_count && in.free_count == before.free_count &&
              in.txn == before.txn,
          "rollback of growth left page_count %llu (was %llu)", (unsigned long long)in.page_count,
          (unsigned long long)before.page_count);
    verify("after rollback of growth");
}

/* Damage the newest tree's level-1 node 0 (both slots are tried: only the
 * one the newest root names matters) and expect open to fall back to the
 * older root; then restore the bytes. */
static void damage_node_falls_back(uint32_t P_size)
{
    /* group 0's reserved run: roots 0-1, bitmap 2-3, level-1 node 0 at 4-5 */
    mp_info in;
    mp_get_info(P, &in);
    uint64_t txn = in.txn;
    mp_close(P);
    P = NULL;
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL, "fopen");
    unsigned char orig[2];
    for (int s = 0; s < 2; s++) {
        long off = (long)((4 + s) * (uint64_t)P_size + 100);
        CHECK(fseek(f, off, SEEK_SET) == 0 && fread(&orig[s], 1, 1, f) == 1, "read");
        unsigned char x = (unsigned char)(orig[s] ^ 0xff);
        CHECK(fseek(f, off, SEEK_SET) == 0 && fwrite(&x, 1, 1, f) == 1, "write");
    }
    fclose(f);
    mp_error e;
    mp_options ro = { .readonly = 1 };
    mp_err rc = mp_open(path, &ro, &P, &e);
    if (rc == MP_OK) {
        mp_get_info(P, &in);
        CHECK(in.recovered && in.txn < txn, "damaged node not detected (txn %llu)",
              (unsigned long long)in.txn);
        mp_close(P);
        P = NULL;
    } else {
        CHECK(rc == MP_ECORRUPT, "open: %s", e.msg);
    }
    f = fopen(path, "r+b");
    CHECK(f != NULL, "fopen");
    for (int s = 0; s < 2; s++) {
        long off = (long)((4 + s) * (uint64_t)P_size + 100);
        CHECK(fseek(f, off, SEEK_SET) == 0 && fwrite(&orig[s], 1, 1, f) == 1, "write");
    }
    fclose(f);
    CHECK(mp_open(path, NULL, &P, &e) == MP_OK, "reopen: %s", e.msg);
    mp_get_info(P, &in);
    CHECK(in.txn == txn, "restored file opens at txn %llu, not %llu", (unsigned long long)in.txn,
          (unsigned long long)txn);
}

int main(int argc, char **argv)
{
    CHECK(argc == 2, "usage: tree_heights DIR");
    static const uint32_t sizes[] = { 1024, 2048 };
    for (size_t s = 0; s < 2; s++) {
        uint32_t ps = sizes[s];
        snprintf(path, sizeof path, "%s/tree_%u.mp", argv[1], ps);
        unlink(path);
        if (model)
            memset(model, 0, model_cap);
        mp_error e;
        mp_options o = { .page_size = ps };
        CHECK(mp_create(path, &o, &P, &e) == MP_OK, "create: %s", e.msg);
        uint32_t top = ps == 1024 ? 3 : 2;   /* 2 KiB: height 3 would need 4 GiB */
        for (uint32_t h = 1; h <= top; h++) {
            grow_to_height(h);
            verify("after growth");
            reopen("after reopen");
            rollback_level_growth();
            reopen("after rollback and reopen");
            damage_node_falls_back(ps);
            verify("after damage and repair");
            if (h <= 2) {   /* levels 1 and 2 at a fraction of height 3's gigabyte */
                copies_match("copies");
                verify("after the copies");
            }
            mp_info in;
            mp_get_info(P, &in);
            printf("page size %u: height %u at %llu pages (%llu regular)\n", ps, in.fsm_height,
                   (unsigned long long)in.page_count, (unsigned long long)in.regular_count);
        }
        mp_close(P);
        P = NULL;
        unlink(path);
    }
    free(model);
    printf("ok\n");
    return 0;
}
