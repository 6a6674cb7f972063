/*
 * commit.c -- transactions and recovery.
 *
 * Invariants (docs/FORMAT.md, "Commit protocol"):
 *   C1  Nothing the last durable root reaches is ever written: not its root
 *       slot, not the slot of any bitmap or index node it names.  A commit
 *       writes only the other slots.
 *   C2  A root is written after every page below it, in the same barrier
 *       window, and names each of them by slot and CRC; so open can verify a
 *       root and everything it reaches, and a commit needs one barrier.
 *   C3  A page freed by transaction N becomes free in the bitmaps N writes,
 *       so it is reused no earlier than N+1 (fsm.c marks it pending until).
 *   C4  After a failed barrier nothing is known about what reached the disk:
 *       the pager is poisoned and refuses every later mutation.
 *   C5  A root rejected at open is cleared (0xFF), with a barrier, before a
 *       writer commits anything, so it can never validate again later.
 *   C6  A commit whose bitmap changes are few writes no bitmap: the root
 *       carries each changed page's new state (fm_carry), relative to the
 *       bitmap pages it names, until they no longer fit; then the commit
 *       writes every bitmap with carried or changed pages and carries none.
 *
 * States of a pager (fields valid in each):
 *   CLEAN     changed == 0: working state == durable state; no group dirty,
 *             undo and pending lists empty.
 *   CHANGED   changed == 1: some groups dirty (undo list), pending frees,
 *             page_count/user_root may differ from the d_* fields.
 *             -> CLEAN by mp_txn_commit (success) or mp_txn_rollback.
 *   POISONED  poisoned == 1: a commit's write or barrier failed; the caller
 *             (mp_finish) rolled the working state back to the durable one,
 *             though index nodes may keep the failed commit's CRCs (never
 *             used again: only reads and close are allowed).
 */
#include "mp_internal.h"
#include "crc32c.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- writing pages ----------------------------------------------------- */

static uint32_t seal_page(unsigned char *page, uint32_t P)
{
    mp_st32(page + MP_H_CRC, 0);
    uint32_t crc = mp_crc32c(0, page, P);
    mp_st32(page + MP_H_CRC, crc);
    return crc;
}

static void write_header(unsigned char *page, uint32_t type, uint64_t txn,
                         uint32_t level, uint64_t index)
{
    memset(page, 0, MP_HDR_SIZE);
    mp_st32(page + MP_H_TYPE, type);
    mp_st64(page + MP_H_TXN, txn);
    mp_st32(page + MP_H_LEVEL, level);
    mp_st32(page + MP_H_INDEX, (uint32_t)index);
}

static void put_entry(unsigned char *at, uint32_t crc, unsigned slot)
{
    mp_st32(at, crc);
    mp_st32(at + 4, slot);
}

static unsigned group_slot_after(const mp_group *g) { return g->write ? g->dslot ^ 1u : g->dslot; }
static unsigned node_slot_after(const mp_node *n) { return n->dirty ? n->dslot ^ 1u : n->dslot; }

static mp_err ensure_nodes(mp_pager *p, unsigned l, uint64_t n)
{
    if (n <= p->ncap[l])
        return MP_OK;
    uint64_t cap = p->ncap[l] ? p->ncap[l] : 8;
    while (cap < n)
        cap *= 2;
    mp_node *v = realloc(p->nodes[l], (size_t)cap * sizeof *v);
    if (!v)
        return mp_fail(p, MP_ENOMEM, "out of memory");
    p->nodes[l] = v;
    p->ncap[l] = cap;
    return MP_OK;
}

/* Fill the entries of a node page / root from the in-memory state of the
 * children [first, end) of level child_level. */
static void put_children(const mp_pager *p, unsigned char *at, unsigned child_level,
                         uint64_t first, uint64_t end)
{
    for (uint64_t c = first; c < end; c++, at += MP_ENTRY_SIZE) {
        if (child_level == 0)
            put_entry(at, p->groups[c].crc, group_slot_after(&p->groups[c]));
        else
            put_entry(at, p->nodes[child_level][c].crc, node_slot_after(&p->nodes[child_level][c]));
    }
}

/* ---- carried free-map entries (C6) -------------------------------------- */

/* How many free-map entries the root can carry this commit: what the top
 * entries and the page-table entries leave of the page. */
static uint64_t carry_cap(const mp_pager *p, uint64_t top_entries)
{
    uint64_t used = MP_ROOT_HDR_SIZE + MP_ENTRY_SIZE * top_entries + MP_PT_DELTA_SIZE * p->n_next_deltas;
#ifdef MP_TEST_FANOUT
    uint64_t cap = 6;   /* test builds: flush often */
#else
    uint64_t cap = MP_FM_CARRY_MAX;
#endif
    return mp_root_room(p->geom.P, used, MP_FM_CARRY_SIZE, cap);
}

static int carry_has(const uint64_t *list, uint64_t n, uint64_t pgno)
{
    for (uint64_t i = 0; i < n; i++)
        if (list[i] == pgno)
            return 1;
    return 0;
}

/* The pages of existing groups whose state this transaction changed, added
 * to the entries the durable root carries, into fm_next.  0 when they do
 * not fit in cap (the commit then writes the bitmaps instead). */
static int plan_carry(mp_pager *p, uint64_t cap)
{
    const mp_geom *ge = &p->geom;
    uint64_t n = p->n_fm_carry;
    if (n > cap)
        return 0;
    memcpy(p->fm_next, p->fm_carry, (size_t)n * sizeof *p->fm_next);
    for (uint64_t k = 0; k < p->undo_len; k++) {
        uint64_t g = p->undo[k].group;
        if (g >= p->d_ngroups)
            continue;   /* a new group: no bitmap on disk to carry against */
        const uint64_t *now = mp_working_bitmap(p, g), *before = p->undo_bm + k * ge->words;
        for (uint64_t w = 0; w < ge->words; w++) {
            uint64_t x = now[w] ^ before[w];
            while (x) {
                unsigned bit = (unsigned)__builtin_ctzll(x) & ~1u;   /* a page's two bits */
                x &= ~((uint64_t)3 << bit);
                uint64_t pgno = g * ge->G + w * 32 + bit / 2;
                if (!carry_has(p->fm_next, n, pgno)) {
                    if (n == cap)
                        return 0;
                    p->fm_next[n++] = pgno;
                }
            }
        }
    }
    p->n_fm_next = n;
    return 1;
}

/* Which bitmaps this commit writes (mp_group.write): the new groups', and
 * when the changes do not fit in the root, every group that has carried or
 * changed pages, so that the new root carries none. */
static mp_err plan_bitmaps(mp_pager *p, uint64_t top_entries)
{
    if (plan_carry(p, carry_cap(p, top_entries))) {
        for (uint64_t k = 0; k < p->undo_len; k++)
            if (p->undo[k].group >= p->d_ngroups)
                p->groups[p->undo[k].group].write = 1;
        return MP_OK;
    }
    /* flush: groups with carried entries join the undo list (so a failed
     * commit rolls their CRCs back too) */
    if (mp_fsm_reserve_undo(p, p->n_fm_carry) != MP_OK)
        return mp_fail(p, MP_ENOMEM, "out of memory");
    for (uint64_t i = 0; i < p->n_fm_carry; i++)
        mp_fsm_touch(p, p->fm_carry[i] / p->geom.G);
    for (uint64_t k = 0; k < p->undo_len; k++)
        p->groups[p->undo[k].group].write = 1;
    p->n_fm_next = 0;
    return MP_OK;
}

static void put_carried(const mp_pager *p, unsigned char *root)
{
    const mp_geom *ge = &p->geom;
    unsigned char *end = root + ge->P - MP_PT_DELTA_SIZE * p->n_next_deltas;
    mp_st32(root + MP_R_FM_NCARRY, (uint32_t)p->n_fm_next);
    for (uint64_t i = 0; i < p->n_fm_next; i++) {
        uint64_t pgno = p->fm_next[i], g = pgno / ge->G;
        unsigned st = mp_st_get(mp_working_bitmap(p, g), pgno - g * ge->G);
        mp_st64(end - MP_FM_CARRY_SIZE * (i + 1), pgno << 2 | st);
    }
}

mp_err mp_txn_commit(mp_pager *p)
{
    if (p->poisoned)
        return mp_fail(p, MP_EPOISONED,
                       "%s: an earlier write failed; the pager refuses commits until reopened", p->path);
    if (!p->changed) {
        /* Nothing in the allocation state changed, but regular-page writes
         * made before this commit must still be durable when it returns. */
        if (p->readonly)
            return MP_OK;
        int e = mp_os_barrier(p);
        if (e) {
            p->poisoned = 1;
            return mp_fail(p, mp_err_from_errno(e), "%s: fdatasync failed: %s", p->path, strerror(e));
        }
        p->order_writes = 0;
        p->commits++;
        return MP_OK;
    }
    if (p->order_writes) {
        /* mp_order_writes: regular-page writes durable before anything of
         * this commit (its root above all) is written. */
        int e = mp_os_barrier(p);
        if (e) {
            p->poisoned = 1;
            return mp_fail(p, mp_err_from_errno(e),
                           "%s: commit failed: fdatasync before the commit failed: %s; the pager "
                           "refuses further commits, reopen to recover the last durable state",
                           p->path, strerror(e));
        }
        p->order_writes = 0;
    }
    if (p->d_txn >= MP_TXN_MAX)   /* after 2^63 commits: unreachable in practice */
        return mp_fail(p, MP_EFULL, "%s: transaction ids exhausted", p->path);
    const mp_geom *ge = &p->geom;
    /* 0. the page table first: it allocates and releases pages (and may
     * grow the file), so the bitmaps are finished after it */
    mp_err prc = mp_pt_commit_prepare(p, p->d_txn + 1);
    if (prc != MP_OK)
        return prc;
    uint64_t counts[MP_LMAX_LIMIT + 1];
    uint32_t h = mp_tree_shape(ge, p->ngroups, counts);
    if (h > ge->lmax)
        return mp_fail(p, MP_ECORRUPT, "index tree too high");

    /* Everything that can fail without touching the disk comes first. */
    uint64_t known[MP_LMAX_LIMIT + 2];   /* nodes per level the durable root knows */
    for (unsigned l = 1; l <= h; l++) {
        if (ensure_nodes(p, l, counts[l]) != MP_OK)
            return MP_ENOMEM;
        known[l] = l <= p->d_height ? p->ncount[l] : 0;
    }
    known[h + 1] = 0;
    uint64_t half = (h >= 1 ? counts[1] : 0) + 1;   /* no level has more nodes */
    if (2 * half > p->scratch_cap) {
        uint64_t *s = realloc(p->scratch, (size_t)(2 * half) * sizeof *s);
        if (!s)
            return mp_fail(p, MP_ENOMEM, "out of memory");
        p->scratch = s;
        p->scratch_cap = 2 * half;
    }
    /* Nodes no durable root knows (a new level, or new nodes at the end of
     * one) are written even if none of their children changed. */
    for (unsigned l = 1; l <= h; l++) {
        for (uint64_t n = known[l]; n < counts[l]; n++)
            p->nodes[l][n] = (mp_node){ 0, 1, 1 };
        p->ncount[l] = counts[l];
    }

    uint64_t txn = p->d_txn + 1;
    int e = 0;
    mp_fsm_apply_pending(p);
    /* C6: small changes to existing bitmaps ride in the root */
    if (plan_bitmaps(p, counts[h]) != MP_OK)
        return MP_ENOMEM;

    /* 1. changed bitmaps; cur collects the level-1 nodes to write (each
     * once: a node's dirty flag is set when it joins a list) */
    uint64_t *cur = p->scratch, *nxt = p->scratch + half, ncur = 0;
    if (h >= 1)
        for (uint64_t n = known[1]; n < counts[1]; n++)
            cur[ncur++] = n;
    for (uint64_t k = 0; k < p->undo_len; k++) {
        uint64_t g = p->undo[k].group;
        mp_group *gr = &p->groups[g];
        if (!gr->write)
            continue;
        unsigned char *page = p->iobuf;
        write_header(page, MP_TYPE_BITMAP, txn, 0, g);
        memcpy(page + MP_HDR_SIZE, mp_working_bitmap(p, g), (size_t)ge->words * 8);
        gr->crc = seal_page(page, ge->P);
        if ((e = mp_os_write_page(p, mp_bitmap_page(ge, g, gr->dslot ^ 1u), page)) != 0)
            goto failed;
        if (h >= 1 && !p->nodes[1][g / ge->E].dirty) {
            p->nodes[1][g / ge->E].dirty = 1;
            cur[ncur++] = g / ge->E;
        }
    }
    /* 2. index nodes, level by level, each after all of its children */
    for (unsigned l = 1; l <= h; l++) {
        uint64_t nnext = 0;
        if (l < h)
            for (uint64_t n = known[l + 1]; n < counts[l + 1]; n++)
                nxt[nnext++] = n;
        for (uint64_t j = 0; j < ncur; j++) {
            uint64_t n = cur[j];
            mp_node *nd = &p->nodes[l][n];
            unsigned char *page = p->iobuf;
            write_header(page, MP_TYPE_INDEX, txn, l, n);
            memset(page + MP_HDR_SIZE, 0, ge->P - MP_HDR_SIZE);
            uint64_t first = n * ge->E, end = first + ge->E;
            if (end > counts[l - 1])
                end = counts[l - 1];
            put_children(p, page + MP_HDR_SIZE, l - 1, first, end);
            nd->crc = seal_page(page, ge->P);
            if ((e = mp_os_write_page(p, mp_node_page(ge, l, n, nd->dslot ^ 1u), page)) != 0)
                goto failed;
            if (l < h && !p->nodes[l + 1][n / ge->E].dirty) {
                p->nodes[l + 1][n / ge->E].dirty = 1;
                nxt[nnext++] = n / ge->E;
            }
        }
        uint64_t *t = cur; cur = nxt; nxt = t;
        ncur = nnext;
    }
    /* 3. the root, into the slot the durable root is not in */
    unsigned char *root = p->iobuf;
    memset(root, 0, ge->P);
    memcpy(root + MP_R_MAGIC, MP_MAGIC, 8);
    mp_st32(root + MP_R_VERSION, MP_FORMAT_VERSION);
    mp_st32(root + MP_R_PAGESIZE, ge->P);
    mp_st64(root + MP_R_TXN, txn);
    mp_st64(root + MP_R_PAGECOUNT, p->page_count);
    mp_st64(root + MP_R_USERROOT, p->user_root);
    mp_st32(root + MP_R_HEIGHT, h);
    put_children(p, root + MP_ROOT_HDR_SIZE, h, 0, counts[h]);
    mp_pt_put_root(p, root);
    put_carried(p, root);
    mp_st32(root + MP_R_CRC, 0);
    mp_st32(root + MP_R_CRC, mp_crc32c(0, root, ge->P));
    if ((e = mp_os_write_page(p, (uint64_t)(p->cur_slot ^ 1), root)) != 0)
        goto failed;

    /* 4. one barrier */
    e = mp_os_barrier(p);
    if (e) {
failed:
        /* C4: after a failed write or barrier nothing is known about the
         * disk; the caller rolls memory back to the durable state. */
        p->poisoned = 1;
        return mp_fail(p, mp_err_from_errno(e),
                       "%s: commit failed: %s; the pager refuses further commits, reopen to recover the last durable state",
                       p->path, strerror(e));
    }

    /* durable: the written slots become the durable ones */
    for (uint64_t k = 0; k < p->undo_len; k++) {
        mp_group *gr = &p->groups[p->undo[k].group];
        if (gr->write)
            gr->dslot ^= 1u;
        gr->write = 0;
        gr->dirty = 0;
    }
    memcpy(p->fm_carry, p->fm_next, (size_t)p->n_fm_next * sizeof *p->fm_carry);
    p->n_fm_carry = p->n_fm_next;
    for (unsigned l = 1; l <= h; l++)
        for (uint64_t n = 0; n < counts[l]; n++)
            if (p->nodes[l][n].dirty) {
                p->nodes[l][n].dslot ^= 1u;
                p->nodes[l][n].dirty = 0;
            }
    mp_pt_committed(p);
    p->undo_len = 0;
    p->cur_slot ^= 1;
    p->d_txn = txn;
    p->d_page_count = p->page_count;
    p->d_user_root = p->user_root;
    p->d_ngroups = p->ngroups;
    p->d_height = p->height = h;
    p->d_free_total = p->free_total;
    p->d_regular_total = p->regular_total;
    p->d_system_total = p->system_total;
    p->changed = 0;
    p->commits++;
    return MP_OK;
}

void mp_txn_rollback(mp_pager *p)
{
    mp_pt_rollback(p);
    for (uint64_t k = p->undo_len; k-- > 0;) {
        const mp_undo *u = &p->undo[k];
        if (u->group < p->d_ngroups) {
            mp_group *gr = &p->groups[u->group];
            memcpy(mp_working_bitmap(p, u->group), p->undo_bm + k * p->geom.words,
                   (size_t)p->geom.words * 8);
            gr->free = u->free;
            gr->regular = u->regular;
            gr->hint = u->hint;
            gr->crc = u->crc;   /* a failed commit may have sealed a new one */
            gr->dirty = 0;
            gr->write = 0;
            mp_hbits_set(&p->has_free, u->group, gr->free > 0);
        } else {
            p->groups[u->group].write = 0;
            mp_hbits_set(&p->has_free, u->group, 0);
        }
    }
    p->undo_len = 0;
    p->pending_len = 0;
    p->ngroups = p->d_ngroups;
    p->page_count = p->d_page_count;
    p->user_root = p->d_user_root;
    p->free_total = p->d_free_total;
    p->regular_total = p->d_regular_total;
    p->system_total = p->d_system_total;
    p->changed = 0;
}

/* ---- verification ------------------------------------------------------ */

/* What a verified root describes, before it becomes the pager's state. */
typedef struct loaded {
    uint64_t txn, page_count, user_root, ngroups;
    uint32_t height;
    mp_group *groups;
    uint64_t *bm;          /* the bitmaps' bodies, geom.words words a group */
    mp_ptload pt;          /* the page table */
    uint64_t carry[MP_FM_CARRY_MAX], ncarry;   /* pages of the carried free-map entries */
    mp_node *nodes[MP_LMAX_LIMIT + 1];
    uint64_t ncount[MP_LMAX_LIMIT + 1];
} loaded;

static void loaded_free(loaded *ld)
{
    free(ld->groups);
    free(ld->bm);
    mp_ptload_free(&ld->pt);
    for (int l = 0; l <= MP_LMAX_LIMIT; l++)
        free(ld->nodes[l]);
    memset(ld, 0, sizeof *ld);
}

static int all_zero(const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

/* A root slot cleared by open (see mp_recover). */
static int all_cleared(const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != MP_CLEARED_BYTE)
            return 0;
    return 1;
}

/* A metadata page named by an entry {want_crc, slot} of its parent. */
static int check_meta_page(const unsigned char *page, uint32_t P, uint32_t type, uint32_t level,
                           uint64_t index, uint32_t want_crc, uint64_t root_txn,
                           char *why, size_t wl)
{
    const char *what = type == MP_TYPE_BITMAP ? "bitmap of group" : "index node";
    if (mp_ld32(page + MP_H_TYPE) != type || mp_ld32(page + MP_H_LEVEL) != level ||
        mp_ld32(page + MP_H_INDEX) != (uint32_t)index || !all_zero(page + 24, 8)) {
        mp_msg(why, wl, "%s %llu (level %u): bad header", what, (unsigned long long)index, level);
        return 0;
    }
    uint32_t stored = mp_ld32(page + MP_H_CRC);
    uint32_t crc = mp_crc32c(0, page, MP_H_CRC);
    static const unsigned char zero4[4];
    crc = mp_crc32c(crc, zero4, 4);
    crc = mp_crc32c(crc, page + MP_H_CRC + 4, P - MP_H_CRC - 4);
    if (crc != stored || crc != want_crc) {
        mp_msg(why, wl, "%s %llu (level %u): checksum mismatch", what, (unsigned long long)index, level);
        return 0;
    }
    if (mp_ld64(page + MP_H_TXN) > root_txn) {
        mp_msg(why, wl, "%s %llu (level %u): written by a newer transaction", what,
                 (unsigned long long)index, level);
        return 0;
    }
    return 1;
}

static int check_entries_tail(const unsigned char *at, uint64_t used, uint64_t cap)
{
    return all_zero(at + used * MP_ENTRY_SIZE, (size_t)((cap - used) * MP_ENTRY_SIZE));
}

/* Verify the root in `root` (one page) and everything below it, reading
 * metadata pages with pread into p->iobuf; fill ld on success. */
static int verify_root(mp_pager *p, const unsigned char *root, loaded *ld, char *why, size_t wl)
{
    int e;
    const mp_geom *ge = &p->geom;
    memset(ld, 0, sizeof *ld);
    ld->txn = mp_ld64(root + MP_R_TXN);
    ld->page_count = mp_ld64(root + MP_R_PAGECOUNT);
    ld->user_root = mp_ld64(root + MP_R_USERROOT);
    ld->height = mp_ld32(root + MP_R_HEIGHT);
    /* A transaction id past 2^63 cannot come from counting commits (one a
     * nanosecond would take 292 years); accepting it would let d_txn + 1
     * wrap to 0, an id no open accepts, and lose the next commit. */
    if (mp_ld32(root + MP_R_FLAGS) != 0 || ld->txn == 0 || ld->txn > MP_TXN_MAX ||
        !all_zero(root + MP_R_RESERVED, MP_ROOT_HDR_SIZE - MP_R_RESERVED) ||
        mp_ld32(root + MP_R_FM_NCARRY) > MP_FM_CARRY_MAX) {
        mp_msg(why, wl, "bad root header");
        return 0;
    }
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
    /* top entries, from the root */
    const unsigned char *ent = root + MP_ROOT_HDR_SIZE;
    /* the top entries end before the entries the root carries: page-table
     * entries at the page's end, free-map entries before them */
    uint64_t pt_tail = mp_pt_root_tail(root, ge->P);
    ld->ncarry = mp_ld32(root + MP_R_FM_NCARRY);
    uint64_t carried_tail = pt_tail + ld->ncarry * MP_FM_CARRY_SIZE;
    uint64_t kmax = ge->P - MP_ROOT_HDR_SIZE > carried_tail ? (ge->P - MP_ROOT_HDR_SIZE - carried_tail) / MP_ENTRY_SIZE : 0;
    if (kmax > ge->K)
        kmax = ge->K;
    if (carried_tail > ge->P - MP_ROOT_HDR_SIZE || counts[h] > kmax || !check_entries_tail(ent, counts[h], kmax) ||
        !all_zero(ent + kmax * MP_ENTRY_SIZE,
                  (size_t)(ge->P - MP_ROOT_HDR_SIZE - kmax * MP_ENTRY_SIZE - carried_tail))) {
        mp_msg(why, wl, "unused root entries are not zero");
        goto fail;
    }
    for (uint64_t i = 0; i < counts[h]; i++) {
        uint32_t crc = mp_ld32(ent + i * 8), slot = mp_ld32(ent + i * 8 + 4);
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
            const unsigned char *page = p->iobuf;
            if ((e = mp_os_read_page(p, mp_node_page(ge, l, n, nd->dslot), p->iobuf)) != 0)
                goto ioerr;
            if (!check_meta_page(page, ge->P, MP_TYPE_INDEX, l, n, nd->crc, ld->txn, why, wl))
                goto fail;
            uint64_t first = n * ge->E, end = first + ge->E;
            if (end > counts[l - 1])
                end = counts[l - 1];
            const unsigned char *ent_at = page + MP_HDR_SIZE;
            if (!check_entries_tail(ent_at, end - first, ge->E)) {
                mp_msg(why, wl, "index node %llu (level %u): unused entries are not zero",
                         (unsigned long long)n, l);
                goto fail;
            }
            for (uint64_t c = first; c < end; c++, ent_at += MP_ENTRY_SIZE) {
                uint32_t crc = mp_ld32(ent_at), slot = mp_ld32(ent_at + 4);
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
    uint64_t extra_system = 0;
    for (uint64_t g = 0; g < ld->ngroups; g++) {
        const mp_group *gr = &ld->groups[g];
        const unsigned char *page = p->iobuf;
        if ((e = mp_os_read_page(p, mp_bitmap_page(ge, g, gr->dslot), p->iobuf)) != 0)
            goto ioerr;
        if (!check_meta_page(page, ge->P, MP_TYPE_BITMAP, 0, g, gr->crc, ld->txn, why, wl))
            goto fail;
        uint64_t *bm = ld->bm + g * ge->words;
        memcpy(bm, page + MP_HDR_SIZE, (size_t)ge->words * 8);
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
        if (c.n[ST_PENDING] != 0 || tail.n[ST_FREE] != ge->G - n) {
            mp_msg(why, wl, "bitmap of group %llu: invalid page states", (unsigned long long)g);
            goto fail;
        }
        extra_system += c.n[ST_SYSTEM] - run;
    }
    /* carried entries (C6) override their pages' states in those bitmaps */
    const unsigned char *carried = root + ge->P - pt_tail;
    for (uint64_t i = 0; i < ld->ncarry; i++) {
        uint64_t v = mp_ld64(carried - MP_FM_CARRY_SIZE * (i + 1));
        uint64_t pgno = v >> 2, g = pgno / ge->G, idx = pgno - g * ge->G;
        unsigned st = (unsigned)(v & 3);
        if (pgno >= ld->page_count || idx < mp_group_run_end(ge, g) - g * ge->G || st == ST_PENDING ||
            carry_has(ld->carry, i, pgno)) {
            mp_msg(why, wl, "root: bad free-map entry %llu", (unsigned long long)i);
            goto fail;
        }
        ld->carry[i] = pgno;
        uint64_t *bm = ld->bm + g * ge->words;
        extra_system -= mp_st_get(bm, idx) == ST_SYSTEM;
        extra_system += st == ST_SYSTEM;
        mp_st_set(bm, idx, st);
    }
    /* the page table, then: every system page outside the reserved runs is
     * exactly one page-table page or protected content, and vice versa */
    uint64_t *refs, nrefs;
    if (!mp_pt_load(p, root, ld->txn, ld->page_count, &ld->pt, &refs, &nrefs, why, wl))
        goto fail;
    int refs_ok = nrefs == extra_system;
    uint64_t k = 0;
    for (; refs_ok && k < nrefs; k++) {
        uint64_t g = refs[k] / ge->G, i = refs[k] - g * ge->G;
        uint64_t *bm = ld->bm + g * ge->words;
        refs_ok = i >= mp_group_run_end(ge, g) - g * ge->G && mp_st_get(bm, i) == ST_SYSTEM;
        if (refs_ok)
            mp_st_set(bm, i, ST_PENDING);   /* marks it seen: a second reference fails */
    }
    while (k-- > 0) {
        uint64_t g = refs[k] / ge->G;
        if (mp_st_get(ld->bm + g * ge->words, refs[k] - g * ge->G) == ST_PENDING)
            mp_st_set(ld->bm + g * ge->words, refs[k] - g * ge->G, ST_SYSTEM);
    }
    free(refs);
    if (!refs_ok) {
        mp_msg(why, wl, "page table and bitmaps disagree about the pages it uses");
        goto fail;
    }
    return 1;
ioerr:
    mp_msg(why, wl, "read error: %s", strerror(e));
    goto fail;
nomem:
    mp_msg(why, wl, "out of memory");
fail:
    loaded_free(ld);
    return 0;
}

static void install(mp_pager *p, loaded *ld, int slot)
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
    p->cur_slot = slot;
    p->d_txn = ld->txn;
    p->page_count = p->d_page_count = ld->page_count;
    p->user_root = p->d_user_root = ld->user_root;
    p->ngroups = p->d_ngroups = ld->ngroups;
    p->height = p->d_height = ld->height;
    memcpy(p->fm_carry, ld->carry, (size_t)ld->ncarry * sizeof *p->fm_carry);
    p->n_fm_carry = ld->ncarry;
    mp_pt_install(p, &ld->pt);
    memset(ld, 0, sizeof *ld);
}

/* ---- open -------------------------------------------------------------- */

typedef struct cand {
    int slot;
    uint32_t P;
    uint64_t txn, page_count;
} cand;

static const char *slot_name(int s) { return s ? "root slot 1" : "root slot 0"; }

/* Append "slot: why; " to msg. */
static void append(char *msg, size_t ml, const char *slot, const char *why)
{
    size_t n = strlen(msg);
    if (n + 1 < ml)
        mp_msg(msg + n, ml - n, "%s: %s; ", slot, why);
}

/* Read root slot `slot` assuming page size P: 1 when its magic, version and
 * checksum are right. */
static int read_slot(int fd, uint64_t file_bytes, int slot, uint32_t P, unsigned char *buf,
                     int *saw_magic, int64_t *bad_version)
{
    uint64_t off = (uint64_t)slot * P;
    if (off + P > file_bytes)
        return 0;
    if (pread(fd, buf, P, (off_t)off) != (ssize_t)P)
        return 0;
    if (memcmp(buf, MP_MAGIC, 8) != 0)
        return 0;
    *saw_magic = 1;
    if (mp_ld32(buf + MP_R_VERSION) != MP_FORMAT_VERSION) {
        *bad_version = mp_ld32(buf + MP_R_VERSION);   /* any u32, 0 included */
        return 0;
    }
    if (mp_ld32(buf + MP_R_PAGESIZE) != P)
        return 0;
    uint32_t stored = mp_ld32(buf + MP_R_CRC);
    mp_st32(buf + MP_R_CRC, 0);
    return mp_crc32c(0, buf, P) == stored;
}

static mp_err open_fail(mp_error *err, mp_err code, const char *path, const char *detail)
{
    if (err) {
        err->code = code;
        mp_msg(err->msg, sizeof err->msg, "%s: %s", path, detail);
    }
    return code;
}

mp_err mp_recover(mp_pager *p, mp_error *err)
{
    unsigned char *buf = malloc(MP_MAX_PAGE_SIZE);
    if (!buf)
        return open_fail(err, MP_ENOMEM, p->path, "out of memory");
    cand c[16];
    int nc = 0, saw_magic = 0;
    int64_t bad_version = -1;   /* a version field seen that this build does not read */
    for (uint32_t P = MP_MIN_PAGE_SIZE; P <= MP_MAX_PAGE_SIZE; P *= 2) {
        /* slot 0 is at offset 0 whatever the page size; its page size
         * field says how long it is */
        if (read_slot(p->fd, p->file_bytes, 0, P, buf, &saw_magic, &bad_version))
            c[nc++] = (cand){ 0, P, mp_ld64(buf + MP_R_TXN), mp_ld64(buf + MP_R_PAGECOUNT) };
        if (read_slot(p->fd, p->file_bytes, 1, P, buf, &saw_magic, &bad_version))
            c[nc++] = (cand){ 1, P, mp_ld64(buf + MP_R_TXN), mp_ld64(buf + MP_R_PAGECOUNT) };
    }
    free(buf);
    if (nc == 0) {
        if (bad_version >= 0) {
            char d[128];
            snprintf(d, sizeof d, "format version %lld is not supported (this build reads version %u)",
                     (long long)bad_version, MP_FORMAT_VERSION);
            return open_fail(err, MP_EVERSION, p->path, d);
        }
        if (saw_magic)
            return open_fail(err, MP_ECORRUPT, p->path, "corrupt: both root slots fail their checksum");
        return open_fail(err, MP_ENOTMP, p->path, "not a mappedpages file (no valid root slot)");
    }
    /* newest first; ties keep slot order */
    for (int i = 1; i < nc; i++)
        for (int j = i; j > 0 && c[j].txn > c[j - 1].txn; j--) {
            cand t = c[j]; c[j] = c[j - 1]; c[j - 1] = t;
        }

    char msg[sizeof err->msg] = "";
    int chosen = -1;
    for (int i = 0; i < nc && chosen < 0; i++) {
        char why[200];
        if (!p->iobuf || p->geom.P != c[i].P) {
            mp_geom_init(&p->geom, c[i].P);
            free(p->iobuf);
            p->iobuf = malloc(c[i].P);
            if (!p->iobuf)
                return open_fail(err, MP_ENOMEM, p->path, "out of memory");
        }
        loaded ld;
        unsigned char *root = malloc(c[i].P);
        if (!root)
            return open_fail(err, MP_ENOMEM, p->path, "out of memory");
        int e = mp_os_read_page(p, (uint64_t)c[i].slot, root);
        int ok = e == 0 && verify_root(p, root, &ld, why, sizeof why);
        free(root);
        if (e)
            mp_msg(why, sizeof why, "read error: %s", strerror(e));
        if (ok) {
            install(p, &ld, c[i].slot);
            chosen = i;
        } else {
            append(msg, sizeof msg, slot_name(c[i].slot), why);
        }
    }
    if (chosen < 0) {
        size_t n = strlen(msg);
        if (n >= 2)
            msg[n - 2] = 0;
        char d[sizeof msg + 16];
        mp_msg(d, sizeof d, "corrupt: %s", msg);
        return open_fail(err, MP_ECORRUPT, p->path, d);
    }
    /* Map the pages (only users' pages are read through the mapping). */
    p->want_reserve = mp_os_default_reserve(p->geom.P, p->opt_max_bytes);
    if (mp_os_reserve(p, p->want_reserve, p->page_count * p->geom.P, err) != MP_OK)
        return MP_ENOMEM;
    if (mp_os_map_to(p, p->page_count * p->geom.P) != MP_OK)
        return open_fail(err, MP_ENOMEM, p->path, p->errmsg);

    /* The other slot: a valid older root, or anything else (C5). */
    int o = p->cur_slot ^ 1;
    int valid_older = 0;
    for (int i = 0; i < nc; i++)
        if (c[i].slot == o && c[i].P == p->geom.P && c[i].txn < p->d_txn)
            valid_older = 1;
    /* A cleared slot is not proof either: an earlier open may have cleared
     * it with a barrier that failed, leaving the pattern only in the page
     * cache.  So a writer clears any slot that is not a valid older root,
     * durably (one extra barrier, only for files that are new or were
     * recovered).  It writes 0xFF bytes, not zeros: a torn root is often
     * its new first sector over stale later ones that should have been
     * zero, so a torn clearing with zeros could complete it.  No valid root
     * holds a sector of 0xFF bytes (docs/FORMAT.md), so any mix of the two
     * that includes a cleared sector is invalid. */
    if (!valid_older) {
        int e = mp_os_read_page(p, (uint64_t)o, p->iobuf);
        if (e || !(all_zero(p->iobuf, p->geom.P) || all_cleared(p->iobuf, p->geom.P)))
            p->recovered = 1;
        if (!p->readonly) {
            memset(p->iobuf, MP_CLEARED_BYTE, p->geom.P);
            e = mp_os_write_page(p, (uint64_t)o, p->iobuf);
            if (!e)
                e = mp_os_barrier(p);
            if (e) {
                if (err) {
                    err->code = mp_err_from_errno(e);
                    err->sys_errno = e;
                    mp_msg(err->msg, sizeof err->msg, "%s: cannot invalidate the rejected root: %s",
                           p->path, strerror(e));
                }
                return mp_err_from_errno(e);
            }
        }
    }
    if (mp_fsm_init(p) != MP_OK || mp_pt_init_free(p) != MP_OK)
        return open_fail(err, MP_ENOMEM, p->path, "out of memory");
    return MP_OK;
}

/* The creating commit: one group (or a few), nothing allocated, txn 1. */
mp_err mp_write_initial(mp_pager *p)
{
    uint64_t ng = mp_groups_for(&p->geom, p->page_count);
    if (mp_fsm_ensure_groups(p, ng) != MP_OK)
        return MP_ENOMEM;
    p->iobuf = malloc(p->geom.P);
    if (!p->iobuf || mp_fsm_reserve_undo(p, ng + 1) != MP_OK)
        return mp_fail(p, MP_ENOMEM, "out of memory");
    p->ngroups = ng;
    for (uint64_t g = 0; g < ng; g++) {
        mp_fsm_init_bitmap(p, g);
        p->groups[g] = (mp_group){ .dslot = 1, .dirty = 1 };
        p->undo[p->undo_len++] = (mp_undo){ (uint32_t)g, 0, 0, 0, 0 };
    }
    p->cur_slot = 1;      /* as if the durable root were in slot 1: write slot 0 */
    p->d_txn = 0;
    p->d_height = 0;
    mp_err rc = mp_fsm_init(p);
    if (rc == MP_OK && mp_pt_init_free(p) != MP_OK)
        rc = mp_fail(p, MP_ENOMEM, "out of memory");
    if (rc != MP_OK)
        return rc;
    p->changed = 1;
    return mp_txn_commit(p);
}
