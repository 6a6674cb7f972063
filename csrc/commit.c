/*
 * commit.c -- transactions: commit, rollback and the creating commit.
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
 *   C6  A commit whose bitmap changes are few writes no bitmap: the root
 *       carries each changed page's new state (fm_carry), relative to the
 *       bitmap pages it names, until they no longer fit; then the commit
 *       writes every bitmap with carried or changed pages and carries none.
 *   C7  While a live reader's snapshot may reach the pages a commit frees,
 *       they stay 11 ("held", durably: a writer that dies and reopens
 *       still knows them) and are freed by the first commit that finds no
 *       reader that old (readers.c R1, R2).  So with readers, C3 becomes
 *       "no earlier than N+1 and no earlier than the last reader of a
 *       state before N moved on".
 *
 * The pager's states and which call moves it from one to another: the
 * table at the top of pager.c.
 */
#include "mp_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- writing pages ----------------------------------------------------- */

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
            mp_put_entry(at, p->groups[c].crc, group_slot_after(&p->groups[c]));
        else
            mp_put_entry(at, p->nodes[child_level][c].crc, node_slot_after(&p->nodes[child_level][c]));
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
                if (!mp_u64_in(p->fm_next, n, pgno)) {
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

static void put_carried(const mp_pager *p, unsigned char *root, mp_rootfields *f)
{
    const mp_geom *ge = &p->geom;
    f->fm_ncarry = (uint32_t)p->n_fm_next;
    for (uint64_t i = 0; i < p->n_fm_next; i++) {
        uint64_t pgno = p->fm_next[i], g = pgno / ge->G;
        unsigned st = mp_st_get(mp_working_bitmap(p, g), pgno - g * ge->G);
        mp_put_carry(root + mp_carry_off(ge->P, p->n_next_deltas, i), pgno, st);
    }
}

/* ---- pages freed, pages held for readers (C7) --------------------------- */

static void drop_commit_lock(mp_pager *p)
{
    if (p->commit_locked)
        mp_rd_commit_lock(p->fd, 0);   /* cannot fail: an unlock of our own lock */
    p->commit_locked = 0;
}

/* Decide what the pages this transaction freed, and those held for
 * readers, become (fsm.c mp_fsm_settle), asking readers.c which snapshots
 * live readers hold, under the commit lock (readers.c R2; it stays taken
 * until the new root is written).  A page freed by commit S is reachable
 * from snapshots below S only, so it is released once the oldest snapshot
 * held is S or newer (or none is held). */
static mp_err settle_frees(mp_pager *p, uint64_t txn)
{
    if (p->pending_len == 0 && p->held_len == 0)
        return MP_OK;
    int e = mp_rd_commit_lock(p->fd, 1);
    uint64_t oldest = 0;
    if (e == 0) {
        p->commit_locked = 1;
        e = mp_rd_oldest(p->fd, txn, &oldest);
    }
    if (e) {
        drop_commit_lock(p);
        return mp_fail(p, mp_err_from_errno(e), "%s: commit failed: the readers' lock: %s", p->path,
                       strerror(e));
    }
    uint64_t release = 0;
    while (release < p->held_len && (oldest == 0 || p->held_txn[release] <= oldest))
        release++;
    mp_err rc = mp_fsm_settle(p, txn, oldest != 0, release);
    if (rc != MP_OK)
        drop_commit_lock(p);
    return rc;
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
    /* C7: the pages this transaction freed, and those held for readers */
    mp_err src = settle_frees(p, txn);
    if (src != MP_OK)
        return src;
    /* C6: small changes to existing bitmaps ride in the root */
    if (plan_bitmaps(p, counts[h]) != MP_OK) {
        drop_commit_lock(p);
        return MP_ENOMEM;
    }

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
        mp_meta_init(page, ge->P, MP_TYPE_BITMAP, txn, 0, g);
        memcpy(page + MP_HDR_SIZE, mp_working_bitmap(p, g), (size_t)ge->words * 8);
        gr->crc = mp_meta_seal(page, ge->P);
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
            mp_meta_init(page, ge->P, MP_TYPE_INDEX, txn, l, n);
            uint64_t first = n * ge->E, end = first + ge->E;
            if (end > counts[l - 1])
                end = counts[l - 1];
            put_children(p, page + MP_HDR_SIZE, l - 1, first, end);
            nd->crc = mp_meta_seal(page, ge->P);
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
    mp_rootfields f = { .txn = txn, .page_count = p->page_count, .user_root = p->user_root, .height = h };
    mp_root_init(root, ge->P);
    put_children(p, root + MP_ROOT_HDR_SIZE, h, 0, counts[h]);
    mp_pt_put_root(p, root, &f);
    put_carried(p, root, &f);
    mp_root_put(root, &f);
    mp_root_seal(root, ge->P);
    e = mp_os_write_page(p, (uint64_t)(p->cur_slot ^ 1), root);
    drop_commit_lock(p);   /* readers.c R2: the new root is there to see */
    if (e)
        goto failed;

    /* 4. one barrier */
    e = mp_os_barrier(p);
    if (e) {
failed:
        drop_commit_lock(p);
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
    mp_fsm_settled(p);
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
    mp_fsm_held_rollback(p);
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
