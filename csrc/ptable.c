/*
 * ptable.c -- protected pages and their page table.
 *
 * A protected page has an id of its own (a pid, dense from 0) and its
 * content lives in some physical page that the page table names.  In
 * memory the table is one entry per pid (mp_ptent: page, CRC of the page,
 * transaction that wrote it).  On disk it is a radix tree of page-table
 * pages: leaves of (P-32)/16 entries, nodes of (P-32)/8 {pgno, crc}
 * children, the top named by the root (docs/FORMAT.md, "Protected pages").
 *
 * The public functions (mp_alloc_protected...) are in pager.c, with the
 * other API calls' checks and auto-commit; this file is the mechanism
 * under them: the table in memory, copy-on-write, commit, rollback, load.
 *
 * Invariants:
 *   T1  The content of a pid is never written in place once durable: the
 *       first write of a transaction copies it to a fresh page (state
 *       system) and releases the old one, which becomes free only when the
 *       transaction commits (C3), so the last durable state stays intact.
 *       At rest a protected page holds exactly one physical page (none
 *       before its first write: MP_PT_ZERO reads as zeros).
 *   T2  Page-table pages are copy-on-write the same way: a commit writes
 *       every changed leaf, and every node above one, to a fresh page,
 *       releases the old, and names the new by page and CRC in its parent
 *       (the root for the top), so open verifies the table like the
 *       free-space map.  The commit also records the CRC of every content
 *       page it wrote, and open checks those (entries whose txn is the
 *       root's): one barrier still covers everything.
 *   T3  An entry the open transaction changed has txn == d_txn + 1; its
 *       previous value is on the undo list exactly once.
 *   T4  pid_free holds exactly the pids below d_pid_limit that are free in
 *       the durable state and not taken by the open transaction; pids
 *       freed by the transaction wait in pid_pending until it commits.
 *   T5  The durable table is the tree (covering d_tree_pids pids) with the
 *       entries the durable root carries (deltas) on top.  A commit carries
 *       its changed entries in the root while they fit and writes no
 *       page-table page; otherwise it rewrites every leaf holding a carried
 *       or changed entry and the root carries none (plan_deltas).
 */
#include "mp_internal.h"
#include "crc32c.h"

#include <stdio.h>
#include <stdlib.h>

#define NONE UINT64_MAX

uint64_t mp_pt_leaf_cap(const mp_geom *g)
{
    uint64_t n = (g->P - MP_HDR_SIZE) / MP_PT_ENTRY_SIZE;
#ifdef MP_TEST_FANOUT
    if (n > MP_TEST_FANOUT)
        n = MP_TEST_FANOUT;
#endif
    return n;
}

/* counts[0] leaves for pid_limit pids, counts[l+1] = ceil(counts[l] / E);
 * the height is the first level with one node. */
static uint32_t pt_shape(const mp_geom *g, uint64_t pid_limit, uint64_t counts[MP_PT_LEVELS + 1])
{
    memset(counts, 0, (MP_PT_LEVELS + 1) * sizeof *counts);
    if (pid_limit == 0)
        return 0;
    uint32_t h = 0;
    counts[0] = (pid_limit + mp_pt_leaf_cap(g) - 1) / mp_pt_leaf_cap(g);
    while (counts[h] > 1 && h < MP_PT_LEVELS) {
        counts[h + 1] = (counts[h] + g->E - 1) / g->E;
        h++;
    }
    return h;
}

static uint64_t cur_txn(const mp_pager *p) { return p->d_txn + 1; }

/* ---- memory ------------------------------------------------------------ */

static mp_err ensure_pt(mp_pager *p, uint64_t n)
{
    if (n > p->pt_cap) {
        uint64_t cap = p->pt_cap ? p->pt_cap : 64;
        while (cap < n)
            cap *= 2;
        mp_ptent *v = realloc(p->pt, (size_t)cap * sizeof *v);
        if (!v)
            return mp_fail(p, MP_ENOMEM, "out of memory");
        memset(v + p->pt_cap, 0, (size_t)(cap - p->pt_cap) * sizeof *v);
        p->pt = v;
        p->pt_cap = cap;
    }
    if (mp_hbits_grow(&p->pid_free, n) != MP_OK)
        return mp_fail(p, MP_ENOMEM, "out of memory");
    return MP_OK;
}

static mp_err reserve_ptundo(mp_pager *p, uint64_t extra)
{
    if (p->ptundo_len + extra <= p->ptundo_cap)
        return MP_OK;
    uint64_t cap = p->ptundo_cap ? p->ptundo_cap * 2 : 64;
    while (cap < p->ptundo_len + extra)
        cap *= 2;
    mp_ptundo *u = realloc(p->ptundo, (size_t)cap * sizeof *u);
    if (!u)
        return mp_fail(p, MP_ENOMEM, "out of memory");
    p->ptundo = u;
    p->ptundo_cap = cap;
    return MP_OK;
}

static mp_err reserve_pid_pending(mp_pager *p)
{
    if (p->pid_pending_len < p->pid_pending_cap)
        return MP_OK;
    uint64_t cap = p->pid_pending_cap ? p->pid_pending_cap * 2 : 64;
    uint64_t *v = realloc(p->pid_pending, (size_t)cap * sizeof *v);
    if (!v)
        return mp_fail(p, MP_ENOMEM, "out of memory");
    p->pid_pending = v;
    p->pid_pending_cap = cap;
    return MP_OK;
}

static mp_err ensure_nodes(mp_pager *p, unsigned l, uint64_t n)
{
    if (n <= p->ptn_cap[l])
        return MP_OK;
    uint64_t cap = p->ptn_cap[l] ? p->ptn_cap[l] : 8;
    while (cap < n)
        cap *= 2;
    mp_ptnode *v = realloc(p->ptn[l], (size_t)cap * sizeof *v);
    if (!v)
        return mp_fail(p, MP_ENOMEM, "out of memory");
    memset(v + p->ptn_cap[l], 0, (size_t)(cap - p->ptn_cap[l]) * sizeof *v);
    p->ptn[l] = v;
    p->ptn_cap[l] = cap;
    return MP_OK;
}

/* T3: remember pid's entry before the transaction's first change.  The
 * caller reserved room. */
static void touch(mp_pager *p, uint64_t pid)
{
    if (p->pt[pid].txn != cur_txn(p))
        p->ptundo[p->ptundo_len++] = (mp_ptundo){ pid, p->pt[pid] };
    p->changed = 1;
}

void mp_pt_free_all(mp_pager *p)
{
    free(p->pt);
    p->pt = NULL;
    mp_hbits_free(&p->pid_free);
    free(p->pid_pending);
    p->pid_pending = NULL;
    free(p->ptundo);
    p->ptundo = NULL;
    for (int l = 0; l <= MP_PT_LEVELS; l++) {
        free(p->ptn[l]);
        p->ptn[l] = NULL;
    }
    free(p->zeros);
    p->zeros = NULL;
}

/* ---- the mechanism under the API (pager.c) ------------------------------ */

mp_err mp_pt_alloc(mp_pager *p, mp_pgno *out)
{
    if (reserve_ptundo(p, 1) != MP_OK)
        return MP_ENOMEM;
    uint64_t pid = mp_hbits_first(&p->pid_free);
    if (pid == NONE || pid >= p->pid_limit) {
        if (p->pid_limit >= MP_MAX_PAGES)
            return mp_fail(p, MP_EFULL, "all %llu protected ids are in use",
                           (unsigned long long)MP_MAX_PAGES);
        if (ensure_pt(p, p->pid_limit + 1) != MP_OK)
            return MP_ENOMEM;
        pid = p->pid_limit++;
    } else {
        mp_hbits_set(&p->pid_free, pid, 0);
    }
    touch(p, pid);
    p->pt[pid] = (mp_ptent){ MP_PT_ZERO, 0, cur_txn(p) };
    p->prot_count++;
    *out = pid;
    return MP_OK;
}

mp_err mp_pt_free(mp_pager *p, mp_pgno pid)
{
    if (reserve_ptundo(p, 1) != MP_OK || reserve_pid_pending(p) != MP_OK ||
        mp_fsm_reserve(p, 2, 1) != MP_OK)
        return MP_ENOMEM;
    mp_ptent *e = &p->pt[pid];
    if (e->pgno != MP_PT_ZERO) {
        mp_fsm_release_system(p, e->pgno);   /* cannot fail: room reserved */
        p->prot_pages--;
    }
    touch(p, pid);
    *e = (mp_ptent){ MP_PT_FREE, 0, cur_txn(p) };
    p->prot_count--;
    p->pid_pending[p->pid_pending_len++] = pid;
    return MP_OK;
}

/* T1: the page holding pid's content for this transaction, copied on the
 * transaction's first write (unless `whole`: the caller replaces all of it,
 * so nothing is copied and *out is NULL: write the page yourself). */
mp_err mp_pt_cow(mp_pager *p, mp_pgno pid, int whole, unsigned char **out, mp_pgno *pgno)
{
    mp_ptent *e = &p->pt[pid];
    if (e->txn == cur_txn(p) && e->pgno > MP_PT_ZERO) {
        *pgno = e->pgno;
        *out = whole ? NULL : mp_page(p, e->pgno);
        return MP_OK;
    }
    if (reserve_ptundo(p, 1) != MP_OK || mp_fsm_reserve(p, 3, 1) != MP_OK)
        return MP_ENOMEM;
    mp_pgno np;
    mp_err rc = mp_fsm_alloc_system(p, &np);
    if (rc != MP_OK)
        return rc;
    e = &p->pt[pid];
    unsigned char *dst = whole ? NULL : mp_page(p, np);
    if (e->pgno > MP_PT_ZERO) {
        if (dst)
            memcpy(dst, mp_page(p, e->pgno), p->geom.P);
        mp_fsm_release_system(p, e->pgno);   /* cannot fail: room reserved */
    } else {
        if (dst)
            memset(dst, 0, p->geom.P);
        p->prot_pages++;
    }
    touch(p, pid);
    *e = (mp_ptent){ (uint32_t)np, 0, cur_txn(p) };
    *out = dst;
    *pgno = np;
    return MP_OK;
}

/* ---- commit ------------------------------------------------------------ */

int mp_pt_changed(const mp_pager *p)
{
    return p->ptundo_len > 0 || p->pid_limit != p->d_pid_limit;
}

/* The reference to n its parent (or the root) gets at this commit. */
static void put_node_ref(unsigned char *at, const mp_ptnode *n)
{
    mp_put_ptref(at, n->dirty ? n->npgno : n->pgno, n->dirty ? n->ncrc : n->crc);
}

/* Serialize page-table page (l, n) into buf, sealed; returns its CRC. */
static uint32_t build_page(const mp_pager *p, unsigned char *buf, unsigned l, uint64_t n,
                       const uint64_t counts[MP_PT_LEVELS + 1], uint64_t txn)
{
    const mp_geom *ge = &p->geom;
    mp_meta_init(buf, ge->P, l == 0 ? MP_TYPE_PTLEAF : MP_TYPE_PTNODE, txn, l, n);
    unsigned char *at = buf + MP_HDR_SIZE;
    if (l == 0) {
        uint64_t first = n * mp_pt_leaf_cap(ge), end = first + mp_pt_leaf_cap(ge);
        if (end > p->pid_limit)
            end = p->pid_limit;
        for (uint64_t pid = first; pid < end; pid++, at += MP_PT_ENTRY_SIZE)
            mp_put_ptent(at, &p->pt[pid]);
    } else {
        uint64_t first = n * ge->E, end = first + ge->E;
        if (end > counts[l - 1])
            end = counts[l - 1];
        for (uint64_t c = first; c < end; c++, at += 8)
            put_node_ref(at, &p->ptn[l - 1][c]);
    }
    return mp_meta_seal(buf, ge->P);
}

/* First step of a commit (before the bitmaps are finished, since it
 * allocates and releases pages): CRCs of the content pages the transaction
 * wrote, then every changed page-table page written to a fresh page (T2).
 * A failure before any write leaves the transaction to be rolled back; a
 * failed write poisons. */
/* How many entries the root can carry this commit: what the free-space
 * map's top entries leave of the page, at most MP_PT_DELTA_MAX. */
static uint64_t delta_cap(const mp_pager *p)
{
    uint64_t counts[MP_LMAX_LIMIT + 1];
    uint32_t h = mp_tree_shape(&p->geom, p->ngroups, counts);
    uint64_t used = MP_ROOT_HDR_SIZE + MP_ENTRY_SIZE * counts[h];
#ifdef MP_TEST_FANOUT
    uint64_t cap = 4;   /* test builds: flush often */
#else
    uint64_t cap = MP_PT_DELTA_MAX;
#endif
    return mp_root_room(p->geom.P, used, MP_PT_DELTA_SIZE, cap);
}

/* T5: the entries that changed since the tree was last written ride in the
 * root while they fit, so a small commit writes no page-table page; else
 * the commit flushes them all into the tree.  Decides which, in
 * next_flush / next_deltas. */
static int plan_deltas(mp_pager *p)
{
    uint64_t cap = delta_cap(p), n = p->ndeltas;
    if (p->ptundo_len > cap || n > cap)
        return 1;
    memcpy(p->next_deltas, p->deltas, (size_t)n * sizeof *p->deltas);
    for (uint64_t k = 0; k < p->ptundo_len; k++) {
        uint64_t pid = p->ptundo[k].pid, j = 0;
        while (j < n && p->next_deltas[j] != pid)
            j++;
        if (j == n) {
            if (n == cap)
                return 1;
            p->next_deltas[n++] = pid;
        }
    }
    p->n_next_deltas = n;
    return 0;
}

mp_err mp_pt_commit_prepare(mp_pager *p, uint64_t txn)
{
    p->next_flush = 0;
    memcpy(p->next_deltas, p->deltas, (size_t)p->ndeltas * sizeof *p->deltas);
    p->n_next_deltas = p->ndeltas;
    /* (the carried entries must be flushed also when the table did not
     * change but the file's growth left the root no room for them) */
    if (!mp_pt_changed(p) && p->ndeltas <= delta_cap(p))
        return MP_OK;
    const mp_geom *ge = &p->geom;
    for (uint64_t k = 0; k < p->ptundo_len; k++) {
        mp_ptent *e = &p->pt[p->ptundo[k].pid];
        if (e->pgno > MP_PT_ZERO && e->txn == txn)
            e->crc = mp_crc32c(0, mp_page(p, e->pgno), ge->P);
    }
    if (!plan_deltas(p))
        return MP_OK;
    p->next_flush = 1;
    p->n_next_deltas = 0;
    uint64_t counts[MP_PT_LEVELS + 1], known[MP_PT_LEVELS + 2];
    uint32_t h = pt_shape(ge, p->pid_limit, counts);
    for (unsigned l = 0; l <= h; l++) {
        if (ensure_nodes(p, l, counts[l]) != MP_OK)
            return MP_ENOMEM;
        known[l] = p->d_tree_pids && l <= p->pt_height ? p->ptn_count[l] : 0;
        for (uint64_t n = known[l]; n < counts[l]; n++)
            p->ptn[l][n] = (mp_ptnode){ 0, 0, 0, 0, 0 };
    }
    known[h + 1] = 0;
    /* lists of dirty pages per level, each page once (its dirty flag) */
    uint64_t total = 0;
    for (unsigned l = 0; l <= h; l++)
        total += counts[l];
    uint64_t *lists = malloc((size_t)(total ? total : 1) * sizeof *lists);
    if (!lists)
        return mp_fail(p, MP_ENOMEM, "out of memory");
    uint64_t *start[MP_PT_LEVELS + 1], len[MP_PT_LEVELS + 1];
    uint64_t off = 0;
    for (unsigned l = 0; l <= h; l++) {
        start[l] = lists + off;
        len[l] = 0;
        off += counts[l];
        for (uint64_t n = known[l]; n < counts[l]; n++) {   /* pages no durable root knows */
            p->ptn[l][n].dirty = 1;
            start[l][len[l]++] = n;
        }
    }
    /* leaves holding an entry changed since the tree was written: this
     * transaction's, and those the durable root carries */
    for (uint64_t k = 0; k < p->ptundo_len + p->ndeltas; k++) {
        uint64_t pid = k < p->ptundo_len ? p->ptundo[k].pid : p->deltas[k - p->ptundo_len];
        uint64_t leaf = pid / mp_pt_leaf_cap(ge);
        if (leaf < counts[0] && !p->ptn[0][leaf].dirty) {
            p->ptn[0][leaf].dirty = 1;
            start[0][len[0]++] = leaf;
        }
    }
    mp_err rc = MP_OK;
    for (unsigned l = 0; l <= h && rc == MP_OK; l++) {
        for (uint64_t j = 0; j < len[l]; j++) {
            uint64_t n = start[l][j];
            mp_ptnode *nd = &p->ptn[l][n];
            mp_pgno np;
            if ((rc = mp_fsm_reserve(p, 3, 1)) != MP_OK || (rc = mp_fsm_alloc_system(p, &np)) != MP_OK)
                break;
            if (nd->pgno)
                mp_fsm_release_system(p, nd->pgno);   /* cannot fail: room reserved */
            nd->ncrc = build_page(p, p->iobuf, l, n, counts, txn);
            nd->npgno = (uint32_t)np;
            int e = mp_os_write_page(p, np, p->iobuf);
            if (e) {
                p->poisoned = 1;   /* C4 */
                rc = mp_fail(p, mp_err_from_errno(e), "%s: commit failed writing the page table: %s",
                             p->path, strerror(e));
                break;
            }
            if (l < h && !p->ptn[l + 1][n / ge->E].dirty) {
                p->ptn[l + 1][n / ge->E].dirty = 1;
                start[l + 1][len[l + 1]++] = n / ge->E;
            }
        }
    }
    free(lists);
    return rc;
}

void mp_pt_put_root(const mp_pager *p, unsigned char *root, mp_rootfields *f)
{
    if (p->pid_limit == 0)
        return;   /* no table: the fields stay zero */
    uint64_t tree = p->next_flush ? p->pid_limit : p->d_tree_pids;
    if (tree) {
        uint64_t counts[MP_PT_LEVELS + 1];
        uint32_t h = pt_shape(&p->geom, tree, counts);
        const mp_ptnode *top = &p->ptn[h][0];
        f->pt_height = h;
        f->pt_top = top->dirty ? top->npgno : top->pgno;
        f->pt_top_crc = top->dirty ? top->ncrc : top->crc;
    }
    f->pt_pids = p->pid_limit;
    f->pt_count = p->prot_count;
    f->pt_tree_pids = tree;
    f->pt_ndelta = (uint32_t)p->n_next_deltas;
    for (uint64_t i = 0; i < p->n_next_deltas; i++) {
        unsigned char *at = root + mp_delta_off(p->geom.P, i);
        mp_st64(at, p->next_deltas[i]);
        mp_put_ptent(at + 8, &p->pt[p->next_deltas[i]]);
    }
}

/* After the barrier: the written pages become the durable table. */
void mp_pt_committed(mp_pager *p)
{
    if (p->next_flush) {
        uint64_t counts[MP_PT_LEVELS + 1];
        uint32_t h = pt_shape(&p->geom, p->pid_limit, counts);
        for (unsigned l = 0; l <= h && p->pid_limit; l++) {
            for (uint64_t n = 0; n < counts[l]; n++) {
                mp_ptnode *nd = &p->ptn[l][n];
                if (nd->dirty) {
                    nd->pgno = nd->npgno;
                    nd->crc = nd->ncrc;
                    nd->dirty = 0;
                }
            }
            p->ptn_count[l] = counts[l];
        }
        p->pt_height = h;
        p->tree_pids = p->d_tree_pids = p->pid_limit;
    }
    memcpy(p->deltas, p->next_deltas, (size_t)p->n_next_deltas * sizeof *p->deltas);
    p->ndeltas = p->n_next_deltas;
    p->next_flush = 0;
    for (uint64_t k = 0; k < p->ptundo_len; k++) {
        mp_ptent *e = &p->pt[p->ptundo[k].pid];
        if (e->pgno == MP_PT_FREE)
            e->txn = 0;
    }
    for (uint64_t k = 0; k < p->pid_pending_len; k++)
        mp_hbits_set(&p->pid_free, p->pid_pending[k], 1);   /* T4: free from now on */
    p->pid_pending_len = 0;
    p->ptundo_len = 0;
    p->d_pid_limit = p->pid_limit;
    p->d_prot_count = p->prot_count;
    p->d_prot_pages = p->prot_pages;
}

void mp_pt_rollback(mp_pager *p)
{
    for (uint64_t k = p->ptundo_len; k-- > 0;) {
        const mp_ptundo *u = &p->ptundo[k];
        p->pt[u->pid] = u->old;
        if (u->old.pgno == MP_PT_FREE && u->pid < p->d_pid_limit)
            mp_hbits_set(&p->pid_free, u->pid, 1);   /* T4: it was free before */
    }
    for (uint64_t pid = p->d_pid_limit; pid < p->pid_limit; pid++)
        p->pt[pid] = (mp_ptent){ 0, 0, 0 };
    /* a commit that failed after preparing may have left dirty flags */
    for (unsigned l = 0; l <= MP_PT_LEVELS; l++)
        for (uint64_t n = 0; n < p->ptn_cap[l]; n++)
            p->ptn[l][n].dirty = 0;
    p->ptundo_len = 0;
    p->pid_pending_len = 0;
    p->next_flush = 0;
    p->pid_limit = p->d_pid_limit;
    p->prot_count = p->d_prot_count;
    p->prot_pages = p->d_prot_pages;
}

/* ---- open -------------------------------------------------------------- */

void mp_ptload_free(mp_ptload *ld)
{
    free(ld->pt);
    for (int l = 0; l <= MP_PT_LEVELS; l++)
        free(ld->ptn[l]);
    memset(ld, 0, sizeof *ld);
}

static int ref_add(uint64_t *refs, uint64_t *nrefs, uint64_t cap, uint64_t pg)
{
    if (*nrefs >= cap)
        return 0;
    refs[(*nrefs)++] = pg;
    return 1;
}

/* One entry's own rules (leaf or root delta). */
static int entry_ok(const mp_ptent *en, uint64_t root_txn, uint64_t page_count)
{
    if (en->pgno == MP_PT_FREE)
        return en->crc == 0 && en->txn == 0;
    if (en->pgno == MP_PT_ZERO)
        return en->crc == 0 && en->txn != 0 && en->txn <= root_txn;
    return en->pgno < page_count && en->txn != 0 && en->txn <= root_txn;
}

/* Verify the page table a root names (tree, then the entries the root
 * carries) and load it into ld; refs (caller frees) lists every page it
 * references.  Reads with pread. */
int mp_pt_load(mp_pager *p, const unsigned char *root, const mp_rootfields *f,
               mp_ptload *ld, uint64_t **refs_out, uint64_t *nrefs, char *why, size_t wl)
{
    const mp_geom *ge = &p->geom;
    memset(ld, 0, sizeof *ld);
    *refs_out = NULL;
    *nrefs = 0;
    uint64_t root_txn = f->txn, page_count = f->page_count;
    uint32_t h = f->pt_height;
    uint64_t pids = f->pt_pids, count = f->pt_count, tree = f->pt_tree_pids, nd = f->pt_ndelta;
    uint32_t top = f->pt_top, top_crc = f->pt_top_crc;
    if (pids == 0) {
        if (h || count || top || top_crc || tree || nd) {
            mp_msg(why, wl, "page table: fields set without pids");
            return 0;
        }
        return 1;
    }
    uint64_t counts[MP_PT_LEVELS + 1];
    int shape_ok = tree == 0 ? h == 0 && top == 0 && top_crc == 0
                             : h == pt_shape(ge, tree, counts) && counts[0] <= page_count &&
                                   top >= 2 && top < page_count;
    if (tree == 0)
        memset(counts, 0, sizeof counts);
    /* pids past the tree exist only as carried entries (T5), which also
     * bounds what a hostile root can make open allocate by the file size */
    if (pids > MP_MAX_PAGES || count > pids || tree > pids || nd > MP_PT_DELTA_MAX ||
        pids - tree > nd || !shape_ok) {
        mp_msg(why, wl, "page table: impossible shape (%llu pids, %llu in the tree, height %u)",
               (unsigned long long)pids, (unsigned long long)tree, h);
        return 0;
    }
    uint64_t nodes = 0;
    for (unsigned l = 0; tree && l <= h; l++)
        nodes += counts[l];
    uint64_t cap = nodes + count;
    uint64_t *refs = malloc((size_t)(cap ? cap : 1) * sizeof *refs);
    unsigned char *data = malloc(ge->P);
    ld->pt = calloc((size_t)pids, sizeof *ld->pt);
    int ok = refs && data && ld->pt;
    for (unsigned l = 0; ok && tree && l <= h; l++) {
        ld->ptn[l] = calloc((size_t)counts[l], sizeof *ld->ptn[l]);
        ok = ld->ptn[l] != NULL;
    }
    if (!ok) {
        mp_msg(why, wl, "out of memory");
        goto fail;
    }
    if (tree)
        ld->ptn[h][0] = (mp_ptnode){ .pgno = top, .crc = top_crc };
    for (uint32_t l = h + 1; tree && l-- > 0;) {
        for (uint64_t n = 0; n < counts[l]; n++) {
            const mp_ptnode *nd_ = &ld->ptn[l][n];
            int e = mp_os_read_page(p, nd_->pgno, p->iobuf);
            const char *bad = e ? strerror(e)
                                : mp_meta_problem(p->iobuf, ge->P, l ? MP_TYPE_PTNODE : MP_TYPE_PTLEAF, l, n,
                                                  nd_->crc, root_txn);
            if (bad) {
                mp_msg(why, wl, "page table %s %llu (level %u, page %u): %s", l ? "node" : "leaf",
                       (unsigned long long)n, l, nd_->pgno, bad);
                goto fail;
            }
            ref_add(refs, nrefs, cap, nd_->pgno);
            const unsigned char *at = p->iobuf + MP_HDR_SIZE;
            if (l > 0) {
                uint64_t first = n * ge->E, end = first + ge->E;
                if (end > counts[l - 1])
                    end = counts[l - 1];
                for (uint64_t c = first; c < end; c++, at += 8) {
                    uint32_t pg = mp_ptref_pgno(at);
                    if (pg < 2 || pg >= page_count) {
                        mp_msg(why, wl, "page table node %llu: child page %u out of range",
                               (unsigned long long)n, pg);
                        goto fail;
                    }
                    ld->ptn[l - 1][c] = (mp_ptnode){ .pgno = pg, .crc = mp_ptref_crc(at) };
                }
                if (!mp_all_zero(at, (size_t)(p->iobuf + MP_HDR_SIZE + ge->E * 8 - at))) {
                    mp_msg(why, wl, "page table node %llu: unused entries not zero", (unsigned long long)n);
                    goto fail;
                }
                continue;
            }
            uint64_t first = n * mp_pt_leaf_cap(ge), end = first + mp_pt_leaf_cap(ge);
            if (end > tree)
                end = tree;
            for (uint64_t pid = first; pid < end; pid++, at += MP_PT_ENTRY_SIZE) {
                mp_ptent en = mp_get_ptent(at);
                if (!entry_ok(&en, root_txn, page_count)) {
                    mp_msg(why, wl, "protected page %llu: bad entry", (unsigned long long)pid);
                    goto fail;
                }
                ld->pt[pid] = en;
            }
            if (!mp_all_zero(at, (size_t)(p->iobuf + MP_HDR_SIZE + mp_pt_leaf_cap(ge) * MP_PT_ENTRY_SIZE - at))) {
                mp_msg(why, wl, "page table leaf %llu: entries past the tree's pids", (unsigned long long)n);
                goto fail;
            }
        }
    }
    /* T5: the entries the root carries override the tree's */
    for (uint64_t i = 0; i < nd; i++) {
        const unsigned char *at = root + mp_delta_off(ge->P, i);
        uint64_t pid = mp_ld64(at);
        mp_ptent en = mp_get_ptent(at + 8);
        int dup = 0;
        for (uint64_t j = 0; j < i; j++)
            dup |= ld->deltas[j] == pid;
        if (pid >= pids || dup || !entry_ok(&en, root_txn, page_count)) {
            mp_msg(why, wl, "root: bad page-table entry %llu", (unsigned long long)i);
            goto fail;
        }
        ld->pt[pid] = en;
        ld->deltas[i] = pid;
    }
    ld->ndeltas = nd;
    /* the merged table: counts, pages it uses, contents the newest commit
     * wrote (T2) */
    for (uint64_t pid = 0; pid < pids; pid++) {
        const mp_ptent *en = &ld->pt[pid];
        if (en->pgno == MP_PT_FREE)
            continue;
        ld->count++;
        if (en->pgno == MP_PT_ZERO)
            continue;
        ld->pages++;
        if (!ref_add(refs, nrefs, cap, en->pgno)) {
            mp_msg(why, wl, "page table: more pages than protected pages");
            goto fail;
        }
        if (en->txn == root_txn) {
            int e2 = mp_os_read_page(p, en->pgno, data);
            if (e2 || mp_crc32c(0, data, ge->P) != en->crc) {
                mp_msg(why, wl, "protected page %llu: content does not match its checksum",
                       (unsigned long long)pid);
                goto fail;
            }
        }
    }
    if (ld->count != count) {
        mp_msg(why, wl, "page table: %llu protected pages, the root says %llu",
               (unsigned long long)ld->count, (unsigned long long)count);
        goto fail;
    }
    ld->pid_limit = pids;
    ld->tree_pids = tree;
    ld->height = h;
    for (unsigned l = 0; tree && l <= h; l++)
        ld->ptn_count[l] = counts[l];
    free(data);
    *refs_out = refs;
    return 1;
fail:
    free(refs);
    free(data);
    mp_ptload_free(ld);
    *nrefs = 0;
    return 0;
}

void mp_pt_install(mp_pager *p, mp_ptload *ld)
{
    free(p->pt);
    p->pt = ld->pt;
    p->pt_cap = ld->pid_limit;
    for (int l = 0; l <= MP_PT_LEVELS; l++) {
        free(p->ptn[l]);
        p->ptn[l] = ld->ptn[l];
        p->ptn_count[l] = p->ptn_cap[l] = ld->ptn_count[l];
    }
    p->pid_limit = p->d_pid_limit = ld->pid_limit;
    p->tree_pids = p->d_tree_pids = ld->tree_pids;
    memcpy(p->deltas, ld->deltas, sizeof p->deltas);
    p->ndeltas = ld->ndeltas;
    p->prot_count = p->d_prot_count = ld->count;
    p->prot_pages = p->d_prot_pages = ld->pages;
    p->pt_height = ld->height;
    memset(ld, 0, sizeof *ld);
}

/* After open or create: the free-pid set and the page of zeros. */
mp_err mp_pt_init_free(mp_pager *p)
{
    free(p->zeros);                /* a reader's refresh loads a new table */
    mp_hbits_free(&p->pid_free);
    p->zeros = calloc(1, p->geom.P);
    if (!p->zeros || mp_hbits_grow(&p->pid_free, p->pid_limit ? p->pid_limit : 1) != MP_OK)
        return MP_ENOMEM;
    for (uint64_t pid = 0; pid < p->pid_limit; pid++)
        if (p->pt[pid].pgno == MP_PT_FREE)
            mp_hbits_set(&p->pid_free, pid, 1);
    return MP_OK;
}

