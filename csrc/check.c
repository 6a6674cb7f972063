/*
 * check.c -- the audit: mp_check and mp_check_each.
 *
 * Owns: checking a pager's file and memory against each other and against
 * the invariants of fsm.c (F2-F5) and ptable.c (T1, T3, T4), reporting
 * every problem it finds.
 *
 * Open stops at the first fault and falls back to the other root; the
 * audit keeps going instead.  The pager's memory (verified at open, kept by
 * every commit since) says where each durable page is and what its CRC
 * must be, so each page is checked on its own, whatever another page
 * holds, and each fault is its own problem.  Pages are read with pread, so
 * a byte changed on disk under an open pager is seen.  What it checks, in
 * order:
 *   1. the durable root: its CRC, then that it names what memory holds;
 *   2. every index node, bitmap and page-table page the root reaches:
 *      header and CRC, then its entries against memory;
 *   3. every protected page's content against the CRC in its entry;
 *   4. every page accounted for exactly once: each page the page table
 *      uses (its own pages, contents) is a system page outside the
 *      reserved runs, used once; no other system page;
 *   5. the in-memory invariants.
 * Inside a transaction, the entries it changed and the bitmaps' contents
 * are checked at its commit, not here (their durable versions are not in
 * memory); everything else is.
 */
#include "mp_internal.h"
#include "crc32c.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct audit {
    mp_pager *p;
    mp_problem_fn fn;
    void *ud;
    uint64_t n;                 /* problems found */
    unsigned char *buf;         /* one page */
    char first[256];
    int moved_on;               /* a reader whose writer committed since its snapshot */
} audit;

static void problem(audit *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(audit *a, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (a->n++ == 0)
        memcpy(a->first, msg, sizeof msg);
    if (a->fn)
        a->fn(a->ud, msg);
}

static const char *state_name(unsigned st)
{
    static const char *const names[4] = { "free", "regular", "system", "pending" };
    return names[st & 3];
}

/* Read page pgno into a->buf; a read error is a problem. */
static int read_page(audit *a, uint64_t pgno, const char *what)
{
    int e = mp_os_read_page(a->p, pgno, a->buf);
    if (e)
        problem(a, "page %llu (%s): read error: %s", (unsigned long long)pgno, what, strerror(e));
    return e == 0;
}

/* Read and verify a metadata page; 1 when it passes. */
static int meta_page(audit *a, uint64_t pgno, uint32_t type, uint32_t level, uint64_t index,
                     uint32_t crc, const char *what)
{
    if (!read_page(a, pgno, what))
        return 0;
    /* A reader's bitmaps and index nodes sit in fixed slots that the
     * writer rewrites two commits after the snapshot (the reader read them
     * into memory when it took the snapshot): once the writer has moved
     * on, a slot holding a newer version, or one being written (its CRC
     * does not match yet), is not a fault.  Page-table pages and contents
     * are copy-on-write and kept for the reader, so they are checked in
     * full. */
    if (a->moved_on && (type == MP_TYPE_BITMAP || type == MP_TYPE_INDEX) &&
        (mp_ld64(a->buf + MP_H_TXN) > a->p->d_txn || mp_meta_problem(a->buf, a->p->geom.P, type, level, index,
                                                                     crc, UINT64_MAX)))
        return 0;
    const char *why = mp_meta_problem(a->buf, a->p->geom.P, type, level, index, crc, a->p->d_txn);
    if (why)
        problem(a, "page %llu (%s): %s", (unsigned long long)pgno, what, why);
    return why == NULL;
}

/* Whether the open transaction changed pid's entry (T3). */
static int pid_changed(const mp_pager *p, uint64_t pid)
{
    return pid < p->pid_limit && p->pt[pid].txn == p->d_txn + 1;
}

static int entry_equal(const unsigned char *at, const mp_ptent *e)
{
    mp_ptent d = mp_get_ptent(at);
    return d.pgno == e->pgno && d.crc == e->crc && d.txn == e->txn;
}

static void root_differs(audit *a, int slot, const char *what)
{
    problem(a, "page %d (root slot %d, the durable root): %s disagrees with memory", slot, slot, what);
}

/* 1. The durable root. */
static void check_root(audit *a, const uint64_t counts[MP_LMAX_LIMIT + 1])
{
    mp_pager *p = a->p;
    const mp_geom *ge = &p->geom;
    int slot = p->cur_slot;
    if (p->snap_root)   /* a reader: its root slot may have been rewritten since */
        memcpy(a->buf, p->snap_root, ge->P);
    else if (!read_page(a, (uint64_t)slot, slot ? "root slot 1" : "root slot 0"))
        return;
    const unsigned char *r = a->buf;
    if (!mp_root_sealed(r, ge->P)) {
        problem(a, "page %d (root slot %d, the durable root): checksum mismatch", slot, slot);
        return;
    }
    mp_rootfields f;
    mp_root_get(r, &f);
    if (f.txn != p->d_txn || f.page_count != p->d_page_count || f.user_root != p->d_user_root ||
        f.height != p->d_height)
        root_differs(a, slot, "the header");
    uint32_t h = p->d_height;
    for (uint64_t i = 0; i < counts[h]; i++) {
        const unsigned char *at = r + MP_ROOT_HDR_SIZE + i * MP_ENTRY_SIZE;
        uint32_t want_crc = h ? p->nodes[h][i].crc : p->groups[i].crc;
        unsigned want_slot = h ? p->nodes[h][i].dslot : p->groups[i].dslot;
        if (mp_entry_crc(at) != want_crc || mp_entry_slot(at) != want_slot) {
            root_differs(a, slot, "a top entry");
            break;
        }
    }
    uint64_t nd = f.pt_ndelta;
    int pt_ok = f.pt_pids == p->d_pid_limit && f.pt_count == p->d_prot_count &&
                f.pt_tree_pids == p->d_tree_pids && nd == p->ndeltas;
    if (pt_ok && p->d_tree_pids)
        pt_ok = f.pt_height == p->pt_height && f.pt_top == p->ptn[p->pt_height][0].pgno &&
                f.pt_top_crc == p->ptn[p->pt_height][0].crc;
    for (uint64_t i = 0; pt_ok && i < nd; i++) {
        const unsigned char *at = r + mp_delta_off(ge->P, i);
        uint64_t pid = mp_ld64(at);
        pt_ok = pid == p->deltas[i] && pid < p->pid_limit &&
                (pid_changed(p, pid) || entry_equal(at + 8, &p->pt[pid]));
    }
    if (!pt_ok)
        root_differs(a, slot, "the page table's fields");
    uint64_t nc = f.fm_ncarry;
    int fm_ok = 1;
    if (!p->changed) {
        /* (nd and nc come from the file: the entries must fit the page) */
        fm_ok = nc == p->n_fm_carry && nd <= MP_PT_DELTA_MAX &&
                MP_ROOT_HDR_SIZE + nd * MP_PT_DELTA_SIZE + nc * MP_FM_CARRY_SIZE <= ge->P;
        for (uint64_t i = 0; fm_ok && i < nc; i++) {
            const unsigned char *at = r + mp_carry_off(ge->P, nd, i);
            uint64_t pgno = mp_carry_pgno(at);
            fm_ok = pgno == p->fm_carry[i] && pgno < p->page_count;
            if (fm_ok) {
                uint64_t g = pgno / ge->G;
                fm_ok = mp_carry_state(at) == mp_st_get(mp_working_bitmap(p, g), pgno - g * ge->G);
            }
        }
    }
    if (!fm_ok)
        root_differs(a, slot, "the carried free-map entries");
}

/* 2a. Index nodes and bitmaps. */
static void check_fsm_pages(audit *a, const uint64_t counts[MP_LMAX_LIMIT + 1])
{
    mp_pager *p = a->p;
    const mp_geom *ge = &p->geom;
    char what[96];
    for (uint32_t l = p->d_height; l >= 1; l--) {
        for (uint64_t n = 0; n < counts[l]; n++) {
            const mp_node *nd = &p->nodes[l][n];
            uint64_t pg = mp_node_page(ge, l, n, nd->dslot);
            mp_msg(what, sizeof what, "index node %llu, level %u", (unsigned long long)n, l);
            if (!meta_page(a, pg, MP_TYPE_INDEX, l, n, nd->crc, what))
                continue;
            uint64_t first = n * ge->E, end = first + ge->E < counts[l - 1] ? first + ge->E : counts[l - 1];
            for (uint64_t c = first; c < end; c++) {
                const unsigned char *at = a->buf + MP_HDR_SIZE + (c - first) * MP_ENTRY_SIZE;
                uint32_t crc = l > 1 ? p->nodes[l - 1][c].crc : p->groups[c].crc;
                unsigned slot = l > 1 ? p->nodes[l - 1][c].dslot : p->groups[c].dslot;
                if (mp_entry_crc(at) != crc || mp_entry_slot(at) != slot) {
                    problem(a, "page %llu (%s): its entry for child %llu disagrees with memory",
                            (unsigned long long)pg, what, (unsigned long long)c);
                    break;
                }
            }
        }
    }
    uint64_t *body = malloc((size_t)ge->words * sizeof *body);
    for (uint64_t g = 0; g < p->d_ngroups; g++) {
        const mp_group *gr = &p->groups[g];
        uint64_t pg = mp_bitmap_page(ge, g, gr->dslot);
        mp_msg(what, sizeof what, "bitmap of group %llu, slot %u", (unsigned long long)g, gr->dslot);
        if (!meta_page(a, pg, MP_TYPE_BITMAP, 0, g, gr->crc, what) || p->changed || !body)
            continue;
        /* outside a transaction the working bitmap is the durable one with
         * the carried entries applied (C6) */
        memcpy(body, a->buf + MP_HDR_SIZE, (size_t)ge->words * 8);
        const uint64_t *bm = mp_working_bitmap(p, g);
        for (uint64_t i = 0; i < p->n_fm_carry; i++)
            if (p->fm_carry[i] / ge->G == g)
                mp_st_set(body, p->fm_carry[i] - g * ge->G, mp_st_get(bm, p->fm_carry[i] - g * ge->G));
        if (memcmp(body, bm, (size_t)ge->words * 8) != 0)
            problem(a, "page %llu (%s): page states disagree with memory", (unsigned long long)pg, what);
    }
    free(body);
    if (!body)
        problem(a, "bitmaps not compared with memory: out of memory");
}

static void pt_name(char *what, size_t wl, unsigned l, uint64_t n)
{
    if (l)
        mp_msg(what, wl, "page-table node %llu, level %u", (unsigned long long)n, l);
    else
        mp_msg(what, wl, "page-table leaf %llu", (unsigned long long)n);
}

/* 2b. Page-table pages. */
static void check_pt_pages(audit *a)
{
    mp_pager *p = a->p;
    const mp_geom *ge = &p->geom;
    char what[96];
    if (!p->d_tree_pids)
        return;
    for (unsigned l = 0; l <= p->pt_height; l++) {
        for (uint64_t n = 0; n < p->ptn_count[l]; n++) {
            const mp_ptnode *nd = &p->ptn[l][n];
            pt_name(what, sizeof what, l, n);
            if (nd->pgno < 2 || nd->pgno >= p->d_page_count) {
                problem(a, "%s: page %u is outside the file", what, nd->pgno);
                continue;
            }
            if (!meta_page(a, nd->pgno, l ? MP_TYPE_PTNODE : MP_TYPE_PTLEAF, l, n, nd->crc, what))
                continue;
            const unsigned char *at = a->buf + MP_HDR_SIZE;
            if (l) {
                uint64_t first = n * ge->E, end = first + ge->E;
                if (end > p->ptn_count[l - 1])
                    end = p->ptn_count[l - 1];
                for (uint64_t c = first; c < end; c++, at += 8)
                    if (mp_ptref_pgno(at) != p->ptn[l - 1][c].pgno || mp_ptref_crc(at) != p->ptn[l - 1][c].crc) {
                        problem(a, "page %u (%s): its entry for child %llu disagrees with memory",
                                nd->pgno, what, (unsigned long long)c);
                        break;
                    }
                continue;
            }
            uint64_t first = n * mp_pt_leaf_cap(ge), end = first + mp_pt_leaf_cap(ge);
            if (end > p->d_tree_pids)
                end = p->d_tree_pids;
            for (uint64_t pid = first; pid < end; pid++, at += MP_PT_ENTRY_SIZE) {
                if (pid >= p->pid_limit || pid_changed(p, pid) || mp_u64_in(p->deltas, p->ndeltas, pid))
                    continue;   /* its durable entry is elsewhere */
                if (!entry_equal(at, &p->pt[pid])) {
                    problem(a, "page %u (%s): the entry of protected page %llu disagrees with memory",
                            nd->pgno, what, (unsigned long long)pid);
                    break;
                }
            }
        }
    }
}

/* 3. Protected contents. */
static void check_contents(audit *a)
{
    mp_pager *p = a->p;
    char what[64];
    uint64_t lim = p->d_pid_limit < p->pid_limit ? p->d_pid_limit : p->pid_limit;
    for (uint64_t pid = 0; pid < lim; pid++) {
        const mp_ptent *e = &p->pt[pid];
        if (e->pgno <= MP_PT_ZERO || pid_changed(p, pid))
            continue;
        mp_msg(what, sizeof what, "protected page %llu", (unsigned long long)pid);
        if (e->pgno >= p->d_page_count) {
            problem(a, "%s: page %u is outside the file", what, e->pgno);
            continue;
        }
        if (read_page(a, e->pgno, what) && mp_crc32c(0, a->buf, p->geom.P) != e->crc)
            problem(a, "page %u (%s): content does not match its checksum", e->pgno, what);
    }
}

/* 4. Owners.  Every page the page table uses, named, through visit. */
typedef struct owners {
    audit *a;
    unsigned char *seen;        /* one bit a page */
    uint64_t dups[16], ndups;   /* pages owned twice (the first few) */
    uint64_t find;              /* naming pass: the page whose owners to list */
    char names[160];
    unsigned nnames;
} owners;

static void owned(owners *o, uint64_t pgno, const char *who);

static void each_owner(owners *o)
{
    const mp_pager *p = o->a->p;
    char who[64];
    for (unsigned l = 0; p->d_tree_pids && l <= p->pt_height; l++)
        for (uint64_t n = 0; n < p->ptn_count[l]; n++) {
            pt_name(who, sizeof who, l, n);
            owned(o, p->ptn[l][n].pgno, who);
        }
    for (uint64_t pid = 0; pid < p->pid_limit; pid++)
        if (p->pt[pid].pgno > MP_PT_ZERO) {
            mp_msg(who, sizeof who, "protected page %llu", (unsigned long long)pid);
            owned(o, p->pt[pid].pgno, who);
        }
}

static int reserved(const mp_geom *ge, uint64_t pgno)
{
    uint64_t g = pgno / ge->G;
    return pgno < mp_group_run_end(ge, g);
}

static void owned(owners *o, uint64_t pgno, const char *who)
{
    const mp_pager *p = o->a->p;
    const mp_geom *ge = &p->geom;
    if (o->find != UINT64_MAX) {            /* naming pass */
        if (pgno == o->find && o->nnames++ < 3) {
            size_t len = strlen(o->names);
            mp_msg(o->names + len, sizeof o->names - len, "%s%s", len ? " and by " : "", who);
        }
        return;
    }
    if (pgno >= p->page_count || reserved(ge, pgno)) {
        problem(o->a, "%s: page %llu is %s", who, (unsigned long long)pgno,
                pgno >= p->page_count ? "outside the file" : "in a reserved run");
        return;
    }
    uint64_t g = pgno / ge->G;
    unsigned st = mp_st_get(mp_working_bitmap(p, g), pgno - g * ge->G);
    if (st != ST_SYSTEM)
        problem(o->a, "page %llu (%s): the free-space map marks it %s (T1)", (unsigned long long)pgno, who,
                state_name(st));
    if (o->seen[pgno >> 3] & (1u << (pgno & 7))) {
        int known = 0;
        for (uint64_t i = 0; i < o->ndups && i < 16; i++)
            known |= o->dups[i] == pgno;
        if (!known) {
            if (o->ndups < 16)
                o->dups[o->ndups] = pgno;
            o->ndups++;
        }
    }
    o->seen[pgno >> 3] |= (unsigned char)(1u << (pgno & 7));
}

static void check_owners(audit *a)
{
    mp_pager *p = a->p;
    const mp_geom *ge = &p->geom;
    owners o = { .a = a, .find = UINT64_MAX };
    o.seen = calloc((size_t)(p->page_count / 8 + 1), 1);
    if (!o.seen) {
        problem(a, "pages not accounted for: out of memory");
        return;
    }
    each_owner(&o);
    for (uint64_t i = 0; i < o.ndups && i < 16; i++) {
        o.find = o.dups[i];
        o.names[0] = 0;
        o.nnames = 0;
        each_owner(&o);
        problem(a, "page %llu is owned %u times: by %s", (unsigned long long)o.find, o.nnames, o.names);
    }
    if (o.ndups > 16)
        problem(a, "%llu more pages are owned more than once", (unsigned long long)(o.ndups - 16));
    for (uint64_t g = 0; g < p->ngroups; g++) {
        const uint64_t *bm = mp_working_bitmap(p, g);
        uint64_t first = g * ge->G, run = mp_group_run_end(ge, g) - first, n = mp_group_pages(p, g);
        for (uint64_t i = run; i < n; i++)
            if (mp_st_get(bm, i) == ST_SYSTEM && !(o.seen[(first + i) >> 3] & (1u << ((first + i) & 7))))
                problem(a, "page %llu: the free-space map marks it system, but nothing owns it",
                        (unsigned long long)(first + i));
    }
    free(o.seen);
}

/* 5. The in-memory invariants (fsm.c F2-F5, ptable.c T3-T4). */
static void check_memory(audit *a)
{
    mp_pager *p = a->p;
    uint64_t fr = 0, reg = 0, sys = 0, pen = 0, dirty = 0;
    for (uint64_t g = 0; g < p->ngroups; g++) {
        const mp_group *gr = &p->groups[g];
        mp_counts c, below;
        const uint64_t *bm = mp_working_bitmap(p, g);
        uint32_t n = mp_group_pages(p, g);
        mp_count_states(bm, 0, n, &c);
        if (c.n[ST_FREE] != gr->free || c.n[ST_REGULAR] != gr->regular)
            problem(a, "group %llu: counts disagree with its bitmap (F2)", (unsigned long long)g);
        if (!!(p->has_free.lv[0][g >> 6] & ((uint64_t)1 << (g & 63))) != (gr->free > 0))
            problem(a, "group %llu: free bit wrong (F3)", (unsigned long long)g);
        mp_count_states(bm, 0, gr->hint < n ? gr->hint : n, &below);
        if (below.n[ST_FREE])
            problem(a, "group %llu: free page below the hint (F4)", (unsigned long long)g);
        fr += c.n[ST_FREE];
        reg += c.n[ST_REGULAR];
        sys += c.n[ST_SYSTEM];
        pen += c.n[ST_PENDING];
        dirty += gr->dirty;
    }
    if (fr != p->free_total || reg != p->regular_total || sys != p->system_total ||
        pen != p->pending_len + p->held_len || fr + reg + sys + pen != p->page_count)
        problem(a, "page totals disagree with the bitmaps (F2)");
    if (dirty != p->undo_len)
        problem(a, "dirty groups and the undo list disagree (F5)");
    uint64_t count = 0, pages = 0, cur = p->d_txn + 1;
    for (uint64_t pid = 0; pid < p->pid_limit; pid++) {
        const mp_ptent *e = &p->pt[pid];
        int is_free_bit = !!(p->pid_free.lv[0][pid >> 6] & ((uint64_t)1 << (pid & 63)));
        if (e->pgno == MP_PT_FREE) {
            int pending = e->txn == cur;   /* freed by the open transaction */
            if (is_free_bit == pending && pid < p->d_pid_limit)
                problem(a, "protected page %llu: free set wrong (T4)", (unsigned long long)pid);
            continue;
        }
        if (is_free_bit)
            problem(a, "protected page %llu: allocated but in the free set (T4)", (unsigned long long)pid);
        count++;
        pages += e->pgno > MP_PT_ZERO;
    }
    if (count != p->prot_count || pages != p->prot_pages)
        problem(a, "page table counts disagree with its entries");
    for (uint64_t k = 0; k < p->ptundo_len; k++)
        if (p->pt[p->ptundo[k].pid].txn != cur) {
            problem(a, "undo list names an unchanged protected page (T3)");
            break;
        }
}

/* The newest transaction a root slot on disk holds (0: none valid). */
static uint64_t newest_on_disk(audit *a)
{
    uint64_t newest = 0;
    for (uint64_t slot = 0; slot < 2; slot++) {
        mp_rootfields f;
        if (mp_os_read_page(a->p, slot, a->buf) != 0 || !mp_root_sealed(a->buf, a->p->geom.P))
            continue;
        mp_root_get(a->buf, &f);
        if (f.txn > newest)
            newest = f.txn;
    }
    return newest;
}

mp_err mp_check_each(mp_pager *p, mp_problem_fn fn, void *ud)
{
    audit a = { .p = p, .fn = fn, .ud = ud };
    a.buf = malloc(p->geom.P);
    if (!a.buf)
        return mp_fail(p, MP_ENOMEM, "out of memory");
    a.moved_on = p->readonly && newest_on_disk(&a) > p->d_txn;
    uint64_t counts[MP_LMAX_LIMIT + 1];
    mp_tree_shape(&p->geom, p->d_ngroups, counts);
    check_root(&a, counts);
    check_fsm_pages(&a, counts);
    check_pt_pages(&a);
    check_contents(&a);
    check_owners(&a);
    check_memory(&a);
    free(a.buf);
    if (a.n == 0)
        return MP_OK;
    if (a.n == 1)
        return mp_fail(p, MP_ECORRUPT, "%s: %s", p->path, a.first);
    return mp_fail(p, MP_ECORRUPT, "%s: %s (and %llu more problems)", p->path, a.first,
                   (unsigned long long)(a.n - 1));
}

mp_err mp_check(mp_pager *p)
{
    return mp_check_each(p, NULL, NULL);
}
