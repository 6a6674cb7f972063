/*
 * fsm.c -- the free-space map.
 *
 * The file's pages are cut into groups of G pages; each group has a bitmap
 * page (2 bits a page, docs/FORMAT.md) in two fixed slots.  This file keeps,
 * in memory, per group: its free and regular counts, a search hint and which
 * slot is durable; and over the groups a three-level bitset of "has a free
 * page".  So:
 *
 *   alloc  = first group with a free page (O(1) through the bitset), then a
 *            word scan from the group's hint (bounded by the page size, not
 *            the file size);
 *   free   = O(1): mark the page "pending" (11) in the working bitmap;
 *            pending pages become free only when the transaction commits,
 *            so a page freed by transaction N is reused no earlier than N+1.
 *
 * Invariants (checked by mp_check, check.c):
 *   F1  the working bitmaps are in memory; a group's first change in a
 *       transaction saves its words to the undo list (mp_fsm_touch), so a
 *       rollback needs no I/O.  The commit writes a changed bitmap to slot
 *       dslot ^ 1; the durable slot is never written while durable.
 *   F2  groups[g].free / .regular count the 00 / 01 states of the working
 *       bitmap below the page count; free_total etc. are their sums.
 *   F3  has_free bit g is set exactly when groups[g].free > 0.
 *   F4  no page below groups[g].hint is free.
 *   F5  every group on the undo list is dirty, and every dirty group is on
 *       it exactly once (the list is the commit's set of changed bitmaps).
 */
#include "mp_internal.h"

#include <stdlib.h>

#define LO_BITS 0x5555555555555555ull
#define NONE UINT64_MAX

/* ---- hierarchical bitset ---------------------------------------------- */

mp_err mp_hbits_init(mp_hbits *h, uint64_t nbits)
{
    uint64_t n0 = (nbits + 63) / 64, n1 = (n0 + 63) / 64, n2 = (n1 + 63) / 64;
    h->lv[0] = calloc(n0 ? n0 : 1, 8);
    h->lv[1] = calloc(n1 ? n1 : 1, 8);
    h->lv[2] = calloc(n2 ? n2 : 1, 8);
    h->nbits = nbits;
    if (!h->lv[0] || !h->lv[1] || !h->lv[2])
        return MP_ENOMEM;
    return MP_OK;
}

/* Grow to at least nbits (new bits clear). */
mp_err mp_hbits_grow(mp_hbits *h, uint64_t nbits)
{
    if (nbits <= h->nbits && h->lv[0])
        return MP_OK;
    uint64_t cap = h->nbits ? h->nbits : 1024;
    while (cap < nbits)
        cap *= 2;
    uint64_t old[3], n[3];
    old[0] = (h->nbits + 63) / 64; old[1] = (old[0] + 63) / 64; old[2] = (old[1] + 63) / 64;
    n[0] = (cap + 63) / 64; n[1] = (n[0] + 63) / 64; n[2] = (n[1] + 63) / 64;
    for (int i = 0; i < 3; i++) {
        if (!h->lv[i])
            old[i] = 0;
        uint64_t *v = realloc(h->lv[i], (size_t)n[i] * 8);
        if (!v)
            return MP_ENOMEM;
        memset(v + old[i], 0, (size_t)(n[i] - old[i]) * 8);
        h->lv[i] = v;
    }
    h->nbits = cap;
    return MP_OK;
}

void mp_hbits_free(mp_hbits *h)
{
    for (int i = 0; i < 3; i++) {
        free(h->lv[i]);
        h->lv[i] = NULL;
    }
    h->nbits = 0;
}

void mp_hbits_set(mp_hbits *h, uint64_t i, int on)
{
    uint64_t w0 = i >> 6, w1 = w0 >> 6, w2 = w1 >> 6;
    if (on) {
        h->lv[0][w0] |= (uint64_t)1 << (i & 63);
        h->lv[1][w1] |= (uint64_t)1 << (w0 & 63);
        h->lv[2][w2] |= (uint64_t)1 << (w1 & 63);
    } else {
        h->lv[0][w0] &= ~((uint64_t)1 << (i & 63));
        if (h->lv[0][w0] == 0) {
            h->lv[1][w1] &= ~((uint64_t)1 << (w0 & 63));
            if (h->lv[1][w1] == 0)
                h->lv[2][w2] &= ~((uint64_t)1 << (w1 & 63));
        }
    }
}

uint64_t mp_hbits_first(const mp_hbits *h)
{
    uint64_t n2 = (((h->nbits + 63) / 64 + 63) / 64 + 63) / 64;
    for (uint64_t w2 = 0; w2 < n2; w2++) {
        if (!h->lv[2][w2])
            continue;
        uint64_t w1 = w2 * 64 + (uint64_t)__builtin_ctzll(h->lv[2][w2]);
        uint64_t w0 = w1 * 64 + (uint64_t)__builtin_ctzll(h->lv[1][w1]);
        return w0 * 64 + (uint64_t)__builtin_ctzll(h->lv[0][w0]);
    }
    return NONE;
}

/* ---- setup ------------------------------------------------------------- */

static mp_err reserve_held(mp_pager *p, uint64_t extra);

/* The pages a loaded state holds for readers (state 11 on disk): which
 * commit freed each is not recorded, so each is stamped with the newest
 * (d_txn), the latest it can have been: held until no reader is older. */
static mp_err collect_held(mp_pager *p)
{
    p->held_len = p->d_held_len = p->held_release = 0;
    for (uint64_t g = 0; g < p->ngroups; g++) {
        const uint64_t *bm = mp_working_bitmap(p, g);
        for (uint64_t w = 0; w < p->geom.words; w++) {
            uint64_t x = bm[w] & (bm[w] >> 1) & LO_BITS;   /* pages in state 11 */
            while (x) {
                unsigned bit = (unsigned)__builtin_ctzll(x);
                x &= x - 1;
                if (reserve_held(p, 1) != MP_OK)
                    return MP_ENOMEM;
                p->held[p->held_len] = (uint32_t)(g * p->geom.G + w * 32 + bit / 2);
                p->held_txn[p->held_len++] = p->d_txn;
            }
        }
    }
    p->d_held_len = p->held_len;
    return MP_OK;
}

mp_err mp_fsm_init(mp_pager *p)
{
    mp_hbits_free(&p->has_free);   /* a reader's refresh loads a new map */
    uint64_t max_pages = p->reserve_bytes / p->geom.P;
    if (max_pages > MP_MAX_PAGES)
        max_pages = MP_MAX_PAGES;
    p->max_groups = mp_groups_for(&p->geom, max_pages);
    if (p->max_groups < p->ngroups)
        p->max_groups = p->ngroups;
    if (mp_hbits_init(&p->has_free, p->max_groups) != MP_OK)
        return mp_fail(p, MP_ENOMEM, "out of memory");
    p->free_total = p->regular_total = p->system_total = 0;
    for (uint64_t g = 0; g < p->ngroups; g++) {
        mp_counts c;
        mp_count_states(mp_working_bitmap(p, g), 0, mp_group_pages(p, g), &c);
        p->groups[g].free = (uint32_t)c.n[ST_FREE];
        p->groups[g].regular = (uint32_t)c.n[ST_REGULAR];
        p->groups[g].hint = 0;
        p->free_total += c.n[ST_FREE];
        p->regular_total += c.n[ST_REGULAR];
        p->system_total += c.n[ST_SYSTEM];
        if (c.n[ST_FREE])
            mp_hbits_set(&p->has_free, g, 1);
    }
    p->d_free_total = p->free_total;
    p->d_regular_total = p->regular_total;
    p->d_system_total = p->system_total;
    return collect_held(p);
}

void mp_fsm_free_all(mp_pager *p)
{
    mp_hbits_free(&p->has_free);
    free(p->groups);
    p->groups = NULL;
    free(p->bm);
    p->bm = NULL;
    free(p->undo_bm);
    p->undo_bm = NULL;
    free(p->iobuf);
    p->iobuf = NULL;
    for (int l = 0; l <= MP_LMAX_LIMIT; l++) {
        free(p->nodes[l]);
        p->nodes[l] = NULL;
    }
    free(p->undo);
    p->undo = NULL;
    free(p->pending);
    p->pending = NULL;
    free(p->held);
    p->held = NULL;
    free(p->held_txn);
    p->held_txn = NULL;
    p->held_len = p->held_cap = p->d_held_len = 0;
}

mp_err mp_fsm_ensure_groups(mp_pager *p, uint64_t n)
{
    if (n <= p->groups_cap)
        return MP_OK;
    uint64_t cap = p->groups_cap ? p->groups_cap : 16;
    while (cap < n)
        cap *= 2;
    mp_group *g = realloc(p->groups, (size_t)cap * sizeof *g);
    if (!g)
        return mp_fail(p, MP_ENOMEM, "out of memory");
    p->groups = g;
    uint64_t *bm = realloc(p->bm, (size_t)(cap * p->geom.words) * sizeof *bm);
    if (!bm)
        return mp_fail(p, MP_ENOMEM, "out of memory");
    p->bm = bm;
    p->groups_cap = cap;
    return MP_OK;
}

/* Room for `extra` more undo entries (and their saved bitmaps). */
mp_err mp_fsm_reserve_undo(mp_pager *p, uint64_t extra)
{
    if (p->undo_len + extra <= p->undo_cap)
        return MP_OK;
    uint64_t cap = p->undo_cap ? p->undo_cap : 16;
    while (cap < p->undo_len + extra)
        cap *= 2;
    mp_undo *u = realloc(p->undo, (size_t)cap * sizeof *u);
    if (!u)
        return mp_fail(p, MP_ENOMEM, "out of memory");
    p->undo = u;
    uint64_t *b = realloc(p->undo_bm, (size_t)(cap * p->geom.words) * sizeof *b);
    if (!b)
        return mp_fail(p, MP_ENOMEM, "out of memory");
    p->undo_bm = b;
    p->undo_cap = cap;
    return MP_OK;
}

static mp_err reserve_undo(mp_pager *p)
{
    return mp_fsm_reserve_undo(p, 1);
}

static mp_err reserve_pending(mp_pager *p, uint64_t extra);

mp_err mp_fsm_reserve(mp_pager *p, uint64_t undo_n, uint64_t pending_n)
{
    mp_err rc = mp_fsm_reserve_undo(p, undo_n);
    return rc != MP_OK ? rc : reserve_pending(p, pending_n);
}

static mp_err reserve_pending(mp_pager *p, uint64_t extra)
{
    if (p->pending_len + extra <= p->pending_cap)
        return MP_OK;
    uint64_t cap = p->pending_cap ? p->pending_cap : 64;
    while (cap < p->pending_len + extra)
        cap *= 2;
    uint32_t *v = realloc(p->pending, (size_t)cap * sizeof *v);
    if (!v)
        return mp_fail(p, MP_ENOMEM, "out of memory");
    p->pending = v;
    p->pending_cap = cap;
    return MP_OK;
}

/* Note group g's first change in this transaction (F1, F5): save its
 * words for rollback.  The caller reserved an undo entry first, so this
 * cannot fail half-way. */
void mp_fsm_touch(mp_pager *p, uint64_t g)
{
    mp_group *gr = &p->groups[g];
    p->changed = 1;
    if (gr->dirty)
        return;
    uint64_t w = p->geom.words;
    memcpy(p->undo_bm + p->undo_len * w, mp_working_bitmap(p, g), (size_t)w * 8);
    gr->dirty = 1;
    p->undo[p->undo_len++] = (mp_undo){ (uint32_t)g, gr->free, gr->regular, gr->hint, gr->crc };
}

/* A fresh bitmap for a group that did not exist: everything free except the
 * group's reserved run (and, for group 0, the root slots). */
void mp_fsm_init_bitmap(mp_pager *p, uint64_t g)
{
    uint64_t *bm = mp_working_bitmap(p, g);
    memset(bm, 0, (size_t)p->geom.words * 8);
    uint64_t run = mp_group_run_end(&p->geom, g) - g * p->geom.G;
    for (uint64_t i = 0; i < run; i++)
        mp_st_set(bm, i, ST_SYSTEM);
}

/* ---- queries ----------------------------------------------------------- */

mp_err mp_fsm_state(const mp_pager *p, mp_pgno id, unsigned *st)
{
    if (id >= p->page_count)
        return MP_ERANGE;
    uint64_t g = id / p->geom.G;
    *st = mp_st_get(mp_working_bitmap(p, g), id - g * p->geom.G);
    return MP_OK;
}

int mp_fsm_next_regular(const mp_pager *p, uint64_t from, uint64_t *out)
{
    for (uint64_t g = from / p->geom.G; g < p->ngroups; g++) {
        if (p->groups[g].regular == 0)
            continue;
        const uint64_t *bm = mp_working_bitmap(p, g);
        uint64_t first = g * p->geom.G;
        uint64_t i = from > first ? from - first : 0;
        uint64_t n = mp_group_pages(p, g);
        while (i < n) {
            uint64_t w = bm[i >> 5];
            uint64_t reg = w & ~(w >> 1) & LO_BITS;
            reg &= ~0ull << (2 * (i & 31));
            if (reg) {
                uint64_t idx = (i & ~(uint64_t)31) + (uint64_t)__builtin_ctzll(reg) / 2;
                if (idx >= n)
                    break;
                *out = first + idx;
                return 1;
            }
            i = (i | 31) + 1;
        }
    }
    return 0;
}

/* ---- allocation -------------------------------------------------------- */

static uint64_t find_free(const uint64_t *bm, uint64_t from, uint64_t n)
{
    uint64_t i = from;
    while (i < n) {
        uint64_t w = bm[i >> 5];
        uint64_t fr = ~w & ~(w >> 1) & LO_BITS;
        fr &= ~0ull << (2 * (i & 31));
        if (fr) {
            uint64_t idx = (i & ~(uint64_t)31) + (uint64_t)__builtin_ctzll(fr) / 2;
            return idx < n ? idx : NONE;
        }
        i = (i | 31) + 1;
    }
    return NONE;
}

mp_err mp_fsm_alloc(mp_pager *p, mp_pgno *out)
{
    for (;;) {
        uint64_t g = mp_hbits_first(&p->has_free);
        if (g == NONE || g >= p->ngroups) {
            mp_err rc = mp_fsm_grow(p, 1);
            if (rc != MP_OK)
                return rc;
            continue;
        }
        if (reserve_undo(p) != MP_OK)
            return MP_ENOMEM;
        mp_fsm_touch(p, g);
        mp_group *gr = &p->groups[g];
        uint64_t *bm = mp_working_bitmap(p, g);
        uint64_t i = find_free(bm, gr->hint, mp_group_pages(p, g));
        if (i == NONE)   /* contradicts F2/F4: the map is damaged in memory */
            return mp_fail(p, MP_ECORRUPT, "free-space map of group %llu is inconsistent",
                           (unsigned long long)g);
        mp_st_set(bm, i, ST_REGULAR);
        gr->free--;
        gr->regular++;
        gr->hint = (uint32_t)(i + 1);
        p->free_total--;
        p->regular_total++;
        if (gr->free == 0)
            mp_hbits_set(&p->has_free, g, 0);
        *out = g * p->geom.G + i;
        return MP_OK;
    }
}

/* Undo an allocation made in the open transaction (bulk all-or-nothing). */
mp_err mp_fsm_unalloc(mp_pager *p, mp_pgno id)
{
    uint64_t g = id / p->geom.G, i = id - g * p->geom.G;
    mp_group *gr = &p->groups[g];
    mp_st_set(mp_working_bitmap(p, g), i, ST_FREE);
    gr->free++;
    gr->regular--;
    if (i < gr->hint)
        gr->hint = (uint32_t)i;
    p->free_total++;
    p->regular_total--;
    mp_hbits_set(&p->has_free, g, 1);
    return MP_OK;
}

/* Mark an allocated regular page freed by this transaction. */
mp_err mp_fsm_mark_free(mp_pager *p, mp_pgno id)
{
    if (reserve_pending(p, 1) != MP_OK || reserve_undo(p) != MP_OK)
        return MP_ENOMEM;
    uint64_t g = id / p->geom.G;
    mp_fsm_touch(p, g);
    mp_st_set(mp_working_bitmap(p, g), id - g * p->geom.G, ST_PENDING);
    p->groups[g].regular--;
    p->regular_total--;
    p->pending[p->pending_len++] = (uint32_t)id;
    return MP_OK;
}

/* Reverse the latest mp_fsm_mark_free of id (bulk all-or-nothing). */
void mp_fsm_unmark_free(mp_pager *p, mp_pgno id)
{
    uint64_t g = id / p->geom.G;
    mp_st_set(mp_working_bitmap(p, g), id - g * p->geom.G, ST_REGULAR);
    p->groups[g].regular++;
    p->regular_total++;
    p->pending_len--;
}

/* A page in state 11 (pending or held) becomes free. */
static void make_free(mp_pager *p, uint64_t id)
{
    uint64_t g = id / p->geom.G, i = id - g * p->geom.G;
    mp_group *gr = &p->groups[g];
    mp_st_set(mp_working_bitmap(p, g), i, ST_FREE);
    gr->free++;
    if (i < gr->hint)
        gr->hint = (uint32_t)i;
    p->free_total++;
    mp_hbits_set(&p->has_free, g, 1);
}

static mp_err reserve_held(mp_pager *p, uint64_t extra)
{
    if (p->held_len + extra <= p->held_cap)
        return MP_OK;
    uint64_t cap = p->held_cap ? p->held_cap : 64;
    while (cap < p->held_len + extra)
        cap *= 2;
    uint32_t *v = realloc(p->held, (size_t)cap * sizeof *v);
    if (!v)
        return mp_fail(p, MP_ENOMEM, "out of memory");
    p->held = v;
    uint64_t *t = realloc(p->held_txn, (size_t)cap * sizeof *t);
    if (!t)
        return mp_fail(p, MP_ENOMEM, "out of memory");
    p->held_txn = t;
    p->held_cap = cap;
    return MP_OK;
}

/* At commit txn (after the page table's part, before the bitmaps are
 * planned): the pages this transaction freed become free for the next
 * one, or, when `hold` (a live reader's snapshot may reach them, readers.c
 * R1), stay 11 and join the held list, stamped txn; then the `release`
 * oldest held pages, which no snapshot reaches any more, become free.
 * Fails (out of memory) before changing anything.  The held list itself
 * changes only when the commit is durable (mp_fsm_settled); a rollback
 * drops what this commit appended (mp_fsm_held_rollback). */
mp_err mp_fsm_settle(mp_pager *p, uint64_t txn, int hold, uint64_t release)
{
    uint64_t touches = release < p->ngroups ? release : p->ngroups;
    if ((hold && reserve_held(p, p->pending_len) != MP_OK) || mp_fsm_reserve_undo(p, touches) != MP_OK)
        return MP_ENOMEM;
    for (uint64_t k = 0; k < p->pending_len; k++) {
        if (hold) {
            p->held[p->held_len] = p->pending[k];
            p->held_txn[p->held_len++] = txn;
        } else {
            make_free(p, p->pending[k]);
        }
    }
    p->pending_len = 0;
    for (uint64_t k = 0; k < release; k++) {
        mp_fsm_touch(p, p->held[k] / p->geom.G);
        make_free(p, p->held[k]);
    }
    p->held_release = release;
    return MP_OK;
}

/* The commit is durable: the pages it released leave the held list. */
void mp_fsm_settled(mp_pager *p)
{
    uint64_t r = p->held_release;
    if (r > 0) {   /* (a pager that never held a page has no list: memmove of NULL is UB) */
        memmove(p->held, p->held + r, (size_t)(p->held_len - r) * sizeof *p->held);
        memmove(p->held_txn, p->held_txn + r, (size_t)(p->held_len - r) * sizeof *p->held_txn);
    }
    p->held_len -= r;
    p->d_held_len = p->held_len;
    p->held_release = 0;
}

/* A rollback (or failed commit): the held list as the durable state has it
 * (the bitmaps' undo restores the pages' states). */
void mp_fsm_held_rollback(mp_pager *p)
{
    p->held_len = p->d_held_len;
    p->held_release = 0;
}

/* ---- growth ------------------------------------------------------------ */

/* Grow the file so that at least need_free more pages are free.  Growth is
 * geometric (a quarter of the file, at least one grow unit, at most
 * MP_GROW_MAX_STEP bytes per step unless the request itself is larger). */
mp_err mp_fsm_grow(mp_pager *p, uint64_t need_free)
{
    const mp_geom *ge = &p->geom;
    uint64_t old = p->page_count;
    uint64_t max_pages = p->reserve_bytes / ge->P;
    if (max_pages > MP_MAX_PAGES)
        max_pages = MP_MAX_PAGES;
    uint64_t unit = MP_GROW_UNIT / ge->P ? MP_GROW_UNIT / ge->P : 1;
    uint64_t step = old / 4, cap = MP_GROW_MAX_STEP / ge->P;
    if (step > cap)
        step = cap;
    if (step < unit)
        step = unit;
    /* each new group costs its reserved run: over-ask a little */
    uint64_t want = need_free + (need_free / ge->G + 2) * (2 + 2 * ge->lmax);
    if (step < want)
        step = want;
    uint64_t target = old + step;
    target = (target + unit - 1) / unit * unit;
    if (target > max_pages)
        target = max_pages;
    /* never cut the reserved run of the last group */
    if (!mp_page_count_valid(ge, target)) {
        uint64_t last = (target - 1) / ge->G;
        uint64_t end = mp_group_run_end(ge, last);
        end = (end + unit - 1) / unit * unit;
        target = end <= max_pages ? end : last * ge->G;
    }
    if (target <= old || !mp_page_count_valid(ge, target))
        return mp_fail(p, MP_EFULL, "%s: the file cannot grow past %llu pages%s", p->path,
                       (unsigned long long)old,
                       max_pages < MP_MAX_PAGES ? " (address space reservation; see max_bytes)" : "");
    uint64_t new_groups = mp_groups_for(ge, target);
    mp_err rc = mp_fsm_ensure_groups(p, new_groups);
    if (rc != MP_OK)
        return rc;
    rc = mp_fsm_reserve_undo(p, (new_groups - p->ngroups) + 2);
    if (rc != MP_OK)
        return rc;
    rc = mp_os_grow_file(p, old * ge->P, target * ge->P);
    if (rc != MP_OK)
        return rc;

    /* the last group may gain pages: its bitmap already reads 00 there */
    uint64_t lastg = p->ngroups - 1;
    uint32_t before = mp_group_pages(p, lastg);
    mp_fsm_touch(p, lastg);
    p->page_count = target;
    uint32_t gained = mp_group_pages(p, lastg) - before;
    p->groups[lastg].free += gained;
    p->free_total += gained;
    if (p->groups[lastg].free)
        mp_hbits_set(&p->has_free, lastg, 1);

    for (uint64_t g = p->ngroups; g < new_groups; g++) {
        /* a group no durable root knows: the commit writes it to slot 0,
         * as if slot 1 were durable, like any changed group */
        mp_fsm_init_bitmap(p, g);
        uint32_t run = (uint32_t)(mp_group_run_end(ge, g) - g * ge->G);
        mp_group *gr = &p->groups[g];
        p->ngroups = g + 1;
        gr->dslot = 1;
        gr->dirty = 1;
        gr->crc = 0;
        gr->regular = 0;
        gr->free = mp_group_pages(p, g) - run;
        gr->hint = run;
        p->undo[p->undo_len++] = (mp_undo){ (uint32_t)g, 0, 0, 0, 0 };
        p->free_total += gr->free;
        p->system_total += run;
        if (gr->free)
            mp_hbits_set(&p->has_free, g, 1);
    }
    p->ngroups = new_groups;
    p->changed = 1;
    return MP_OK;
}

/* ---- pages for the file's own use -------------------------------------- */

/* Allocate a page in state "system": page-table nodes and protected
 * contents.  Same policy as mp_fsm_alloc (and it may grow the file). */
mp_err mp_fsm_alloc_system(mp_pager *p, mp_pgno *out)
{
    mp_err rc = mp_fsm_alloc(p, out);
    if (rc != MP_OK)
        return rc;
    uint64_t g = *out / p->geom.G;
    mp_st_set(mp_working_bitmap(p, g), *out - g * p->geom.G, ST_SYSTEM);
    p->groups[g].regular--;
    p->regular_total--;
    p->system_total++;
    return MP_OK;
}

/* Release a system page in this transaction: pending, free from the next
 * one (C3 holds for page-table nodes and protected contents too). */
mp_err mp_fsm_release_system(mp_pager *p, mp_pgno id)
{
    if (reserve_pending(p, 1) != MP_OK || reserve_undo(p) != MP_OK)
        return MP_ENOMEM;
    uint64_t g = id / p->geom.G;
    mp_fsm_touch(p, g);
    mp_st_set(mp_working_bitmap(p, g), id - g * p->geom.G, ST_PENDING);
    p->system_total--;
    p->pending[p->pending_len++] = (uint32_t)id;
    return MP_OK;
}

/* ---- open: loading the map a root names ---------------------------------- */

void mp_fsmload_free(mp_fsmload *ld)
{
    free(ld->groups);
    free(ld->bm);
    for (int l = 0; l <= MP_LMAX_LIMIT; l++)
        free(ld->nodes[l]);
    memset(ld, 0, sizeof *ld);
}

static int check_entries_tail(const unsigned char *at, uint64_t used, uint64_t cap)
{
    return mp_all_zero(at + used * MP_ENTRY_SIZE, (size_t)((cap - used) * MP_ENTRY_SIZE));
}

/* Read and check the metadata page a parent entry {crc, slot} names. */
static int load_meta(mp_pager *p, uint64_t pgno, uint32_t type, uint32_t level, uint64_t index,
                     uint32_t crc, uint64_t root_txn, char *why, size_t wl)
{
    int e = mp_os_read_page(p, pgno, p->iobuf);
    if (e) {
        mp_msg(why, wl, "read error: %s", strerror(e));
        return 0;
    }
    const char *bad = mp_meta_problem(p->iobuf, p->geom.P, type, level, index, crc, root_txn);
    if (bad)
        mp_msg(why, wl, "%s %llu (level %u): %s", type == MP_TYPE_BITMAP ? "bitmap of group" : "index node",
               (unsigned long long)index, level, bad);
    return bad == NULL;
}

/* Verify the free-space map a root names (its top entries, the index nodes
 * top down, every group's bitmap, then the entries the root carries) and
 * load it into ld.  Reads with pread into p->iobuf. */
int mp_fsm_load(mp_pager *p, const unsigned char *root, const mp_rootfields *f, mp_fsmload *ld,
                char *why, size_t wl)
{
    const mp_geom *ge = &p->geom;
    int held_ok = f->version >= 2;   /* pages held for readers (C7): state 11 */
    memset(ld, 0, sizeof *ld);
    ld->page_count = f->page_count;
    ld->height = f->height;
    if (!mp_page_count_valid(ge, ld->page_count) || ld->page_count * ge->P > p->file_bytes) {
        mp_msg(why, wl, "page count %llu does not fit the file (%llu bytes)",
               (unsigned long long)ld->page_count, (unsigned long long)p->file_bytes);
        return 0;
    }
    ld->ngroups = mp_groups_for(ge, ld->page_count);
    uint64_t counts[MP_LMAX_LIMIT + 1];
    uint32_t h = mp_tree_shape(ge, ld->ngroups, counts);
    if (h != ld->height || h > ge->lmax) {
        mp_msg(why, wl, "index height %u does not match the page count", ld->height);
        return 0;
    }
    ld->groups = calloc((size_t)ld->ngroups, sizeof *ld->groups);
    ld->bm = malloc((size_t)(ld->ngroups * ge->words) * sizeof *ld->bm);
    if (!ld->groups || !ld->bm)
        goto nomem;
    for (uint32_t l = 1; l <= h; l++) {
        ld->nodes[l] = calloc((size_t)counts[l], sizeof *ld->nodes[l]);
        if (!ld->nodes[l])
            goto nomem;
        ld->ncount[l] = counts[l];
    }
    /* top entries, from the root; they end before the entries the root
     * carries: page-table entries at the page's end, free-map entries
     * before them */
    const unsigned char *ent = root + MP_ROOT_HDR_SIZE;
    uint64_t pt_tail = mp_root_pt_tail(f, ge->P);
    ld->ncarry = f->fm_ncarry;
    uint64_t carried_tail = pt_tail + ld->ncarry * MP_FM_CARRY_SIZE;
    uint64_t kmax = ge->P - MP_ROOT_HDR_SIZE > carried_tail ? (ge->P - MP_ROOT_HDR_SIZE - carried_tail) / MP_ENTRY_SIZE : 0;
    if (kmax > ge->K)
        kmax = ge->K;
    if (carried_tail > ge->P - MP_ROOT_HDR_SIZE || counts[h] > kmax || !check_entries_tail(ent, counts[h], kmax) ||
        !mp_all_zero(ent + kmax * MP_ENTRY_SIZE,
                     (size_t)(ge->P - MP_ROOT_HDR_SIZE - kmax * MP_ENTRY_SIZE - carried_tail))) {
        mp_msg(why, wl, "unused root entries are not zero");
        goto fail;
    }
    for (uint64_t i = 0; i < counts[h]; i++) {
        const unsigned char *at = ent + i * MP_ENTRY_SIZE;
        uint32_t crc = mp_entry_crc(at), slot = mp_entry_slot(at);
        if (slot > 1) {
            mp_msg(why, wl, "root entry %llu: bad slot", (unsigned long long)i);
            goto fail;
        }
        if (h == 0)
            ld->groups[i] = (mp_group){ .crc = crc, .dslot = (uint8_t)slot };
        else
            ld->nodes[h][i] = (mp_node){ crc, (uint8_t)slot, 0 };
    }
    /* index nodes, top down: each verified node hands its entries down */
    for (uint32_t l = h; l >= 1; l--) {
        for (uint64_t n = 0; n < counts[l]; n++) {
            const mp_node *nd = &ld->nodes[l][n];
            if (!load_meta(p, mp_node_page(ge, l, n, nd->dslot), MP_TYPE_INDEX, l, n, nd->crc, f->txn, why, wl))
                goto fail;
            uint64_t first = n * ge->E, end = first + ge->E;
            if (end > counts[l - 1])
                end = counts[l - 1];
            const unsigned char *ent_at = p->iobuf + MP_HDR_SIZE;
            if (!check_entries_tail(ent_at, end - first, ge->E)) {
                mp_msg(why, wl, "index node %llu (level %u): unused entries are not zero",
                       (unsigned long long)n, l);
                goto fail;
            }
            for (uint64_t c = first; c < end; c++, ent_at += MP_ENTRY_SIZE) {
                uint32_t crc = mp_entry_crc(ent_at), slot = mp_entry_slot(ent_at);
                if (slot > 1) {
                    mp_msg(why, wl, "index node %llu (level %u): bad slot", (unsigned long long)n, l);
                    goto fail;
                }
                if (l == 1)
                    ld->groups[c] = (mp_group){ .crc = crc, .dslot = (uint8_t)slot };
                else
                    ld->nodes[l - 1][c] = (mp_node){ crc, (uint8_t)slot, 0 };
            }
        }
    }
    /* group bitmaps: checksums, then what they say */
    for (uint64_t g = 0; g < ld->ngroups; g++) {
        const mp_group *gr = &ld->groups[g];
        if (!load_meta(p, mp_bitmap_page(ge, g, gr->dslot), MP_TYPE_BITMAP, 0, g, gr->crc, f->txn, why, wl))
            goto fail;
        uint64_t *bm = ld->bm + g * ge->words;
        memcpy(bm, p->iobuf + MP_HDR_SIZE, (size_t)ge->words * 8);
        uint64_t run = mp_group_run_end(ge, g) - g * ge->G;
        uint64_t first = g * ge->G, n = ld->page_count - first;
        if (n > ge->G)
            n = ge->G;
        mp_counts c, tail;
        mp_count_states(bm, 0, run, &c);
        if (c.n[ST_SYSTEM] != run) {
            mp_msg(why, wl, "bitmap of group %llu: reserved pages not marked", (unsigned long long)g);
            goto fail;
        }
        mp_count_states(bm, 0, n, &c);
        mp_count_states(bm, n, ge->G, &tail);
        if ((c.n[ST_PENDING] != 0 && !held_ok) || tail.n[ST_FREE] != ge->G - n) {
            mp_msg(why, wl, "bitmap of group %llu: invalid page states", (unsigned long long)g);
            goto fail;
        }
        ld->extra_system += c.n[ST_SYSTEM] - run;
    }
    /* carried entries (C6, commit.c) override their pages' states in those
     * bitmaps */
    for (uint64_t i = 0; i < ld->ncarry; i++) {
        const unsigned char *at = root + mp_carry_off(ge->P, f->pt_ndelta, i);
        uint64_t pgno = mp_carry_pgno(at), g = pgno / ge->G, idx = pgno - g * ge->G;
        unsigned st = mp_carry_state(at);
        if (pgno >= ld->page_count || idx < mp_group_run_end(ge, g) - g * ge->G || (st == ST_PENDING && !held_ok) ||
            mp_u64_in(ld->carry, i, pgno)) {
            mp_msg(why, wl, "root: bad free-map entry %llu", (unsigned long long)i);
            goto fail;
        }
        ld->carry[i] = pgno;
        uint64_t *bm = ld->bm + g * ge->words;
        ld->extra_system -= mp_st_get(bm, idx) == ST_SYSTEM;
        ld->extra_system += st == ST_SYSTEM;
        mp_st_set(bm, idx, st);
    }
    return 1;
nomem:
    mp_msg(why, wl, "out of memory");
fail:
    mp_fsmload_free(ld);
    return 0;
}

/* A verified map becomes the pager's durable and working one (ld is
 * emptied). */
void mp_fsm_install(mp_pager *p, mp_fsmload *ld)
{
    free(p->groups);
    free(p->bm);
    p->groups = ld->groups;
    p->bm = ld->bm;
    p->groups_cap = ld->ngroups;
    for (int l = 0; l <= MP_LMAX_LIMIT; l++) {
        free(p->nodes[l]);
        p->nodes[l] = ld->nodes[l];
        p->ncount[l] = p->ncap[l] = ld->ncount[l];
    }
    p->page_count = p->d_page_count = ld->page_count;
    p->ngroups = p->d_ngroups = ld->ngroups;
    p->height = p->d_height = ld->height;
    memcpy(p->fm_carry, ld->carry, (size_t)ld->ncarry * sizeof *p->fm_carry);
    p->n_fm_carry = ld->ncarry;
    memset(ld, 0, sizeof *ld);
}
