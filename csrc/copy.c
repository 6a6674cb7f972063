/*
 * copy.c -- mp_copy: a consistent copy of the pager's committed state into
 * a new file.
 *
 * Owns: writing a file that holds exactly the state a pager shows (a
 * reader's snapshot, a writer's last durable state), while a writer may go
 * on committing to the source.
 *
 *   Y1  Only pages no later commit can change are read from the source,
 *       and only through the mapping: regular pages, page-table pages and
 *       protected contents the snapshot reaches (a writer never reuses a
 *       page a live reader's snapshot reaches, readers.c R1; regular pages
 *       are not versioned, so their bytes are whatever they hold now).
 *   Y2  The fixed-slot metadata (group bitmaps, index nodes, the root) is
 *       never read from the source: a writer rewrites those slots two
 *       commits after the snapshot.  The copy's are generated from the
 *       pager's in-memory state, which is the snapshot's (fsm.c, ptable.c
 *       load it at open; a writer's equals its durable state outside a
 *       transaction), and written to slot 0, sealed with the snapshot's
 *       transaction id.  Slot 1 of each stays zero, as after a creating
 *       commit.
 *   Y3  The copy is a committed state of its own: pages held for readers
 *       (11) become free, the root carries no free-map entries (its bitmaps
 *       are exact), and it carries the same page-table entries as the
 *       snapshot's root, so the page table's pages and every entry's
 *       transaction id are the snapshot's.
 *   Y4  The root is written last, after a barrier that makes every other
 *       page of the copy durable (the root's checksums do not cover
 *       regular pages): a crash during a copy leaves a file with no valid
 *       root, which no open takes for a copy, never one that opens with
 *       pages missing.  The copy is complete when mp_copy returns MP_OK
 *       (a second fdatasync, then one of its directory); a failure
 *       removes it.
 */
#include "mp_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

/* Pages of a run copied by one pwrite (runs of consecutive used pages). */
#define COPY_RUN_BYTES ((uint64_t)1 << 20)

typedef struct copier {
    const mp_pager *p;
    int fd;
    const char *path;
    mp_error *err;
    uint64_t run_first, run_end;   /* pages [run_first, run_end) not yet written */
    uint64_t copied;               /* pages copied from the mapping */
    unsigned char *page;           /* one page of scratch */
} copier;

static mp_err io_error(copier *c, int e, const char *what)
{
    return mp_set_error(c->err, mp_err_from_errno(e), e, c->path, "%s", what);
}

static mp_err flush_run(copier *c)
{
    uint64_t P = c->p->geom.P, n = c->run_end - c->run_first;
    if (n == 0)
        return MP_OK;
    int e = mp_os_write_at(c->fd, c->run_first * P, mp_page(c->p, c->run_first), (size_t)(n * P));
    if (e)
        return io_error(c, e, "write");
    c->copied += n;
    c->run_first = c->run_end = 0;
    return MP_OK;
}

/* Page pgno of the source is in use: copy it (Y1), batched with its
 * neighbours. */
static mp_err copy_page(copier *c, uint64_t pgno)
{
    if (c->run_end != c->run_first &&
        (pgno != c->run_end || (c->run_end - c->run_first + 1) * c->p->geom.P > COPY_RUN_BYTES)) {
        mp_err rc = flush_run(c);
        if (rc != MP_OK)
            return rc;
    }
    if (c->run_end == c->run_first)
        c->run_first = pgno;
    c->run_end = pgno + 1;
    return MP_OK;
}

/* Group g: its pages in use copied, its bitmap (holds freed, Y3) written
 * to slot 0; *crc is the bitmap page's CRC. */
static mp_err copy_group(copier *c, uint64_t g, uint32_t *crc)
{
    const mp_pager *p = c->p;
    const mp_geom *ge = &p->geom;
    const uint64_t *bm = mp_working_bitmap(p, g);
    uint64_t first = g * ge->G, skip = mp_group_run_end(ge, g) - first;
    unsigned char *page = c->page;
    mp_meta_init(page, ge->P, MP_TYPE_BITMAP, p->d_txn, 0, g);
    for (uint64_t w = 0; w < ge->words; w++) {
        uint64_t v = bm[w];
        uint64_t held = v & (v >> 1) & 0x5555555555555555ull;   /* 11: low bit of each pair */
        v &= ~(held | held << 1);
        mp_st64(page + MP_HDR_SIZE + 8 * w, v);
        uint64_t used = (v | v >> 1) & 0x5555555555555555ull;
        while (used) {
            uint64_t i = w * 32 + (unsigned)__builtin_ctzll(used) / 2;
            used &= used - 1;
            if (i < skip)
                continue;   /* the reserved run: generated, not copied (Y2) */
            mp_err rc = copy_page(c, first + i);
            if (rc != MP_OK)
                return rc;
        }
    }
    *crc = mp_meta_seal(page, ge->P);
    int e = mp_os_write_at(c->fd, mp_bitmap_page(ge, g, 0) * ge->P, page, ge->P);
    return e ? io_error(c, e, "write") : MP_OK;
}

/* Node n of level l over the children whose CRCs are below[first, end),
 * written to slot 0; its CRC. */
static mp_err write_node(copier *c, unsigned l, uint64_t n, const uint32_t *below, uint64_t nbelow,
                         uint32_t *crc)
{
    const mp_geom *ge = &c->p->geom;
    unsigned char *page = c->page;
    mp_meta_init(page, ge->P, MP_TYPE_INDEX, c->p->d_txn, l, n);
    uint64_t first = n * ge->E, end = first + ge->E < nbelow ? first + ge->E : nbelow;
    for (uint64_t k = first; k < end; k++)
        mp_put_entry(page + MP_HDR_SIZE + MP_ENTRY_SIZE * (k - first), below[k], 0);
    *crc = mp_meta_seal(page, ge->P);
    int e = mp_os_write_at(c->fd, mp_node_page(ge, l, n, 0) * ge->P, page, ge->P);
    return e ? io_error(c, e, "write") : MP_OK;
}

/* The page-table fields and carried entries of the snapshot's root (Y3),
 * from the in-memory table: the durable one outside a transaction. */
static void put_page_table(const mp_pager *p, unsigned char *root, mp_rootfields *f)
{
    if (p->d_pid_limit == 0)
        return;   /* no table: the fields stay zero */
    if (p->d_tree_pids) {
        const mp_ptnode *top = &p->ptn[p->pt_height][0];
        f->pt_height = p->pt_height;
        f->pt_top = top->pgno;
        f->pt_top_crc = top->crc;
    }
    f->pt_pids = p->d_pid_limit;
    f->pt_count = p->d_prot_count;
    f->pt_tree_pids = p->d_tree_pids;
    f->pt_ndelta = (uint32_t)p->ndeltas;
    for (uint64_t i = 0; i < p->ndeltas; i++) {
        unsigned char *at = root + mp_delta_off(p->geom.P, i);
        mp_st64(at, p->deltas[i]);
        mp_put_ptent(at + 8, &p->pt[p->deltas[i]]);
    }
}

/* Pages, bitmaps, index nodes, a barrier, then the root (Y4). */
static mp_err write_copy(copier *c)
{
    const mp_pager *p = c->p;
    const mp_geom *ge = &p->geom;
    uint64_t counts[MP_LMAX_LIMIT + 1];
    uint32_t h = mp_tree_shape(ge, p->ngroups, counts);
    if (h > ge->lmax)
        return mp_set_error(c->err, MP_ECORRUPT, 0, p->path, "index tree too high");
    /* CRCs of the current level's nodes (groups first), then the next's */
    uint32_t *crcs = malloc((size_t)p->ngroups * sizeof *crcs);
    uint32_t *up = malloc((size_t)(h >= 1 ? counts[1] : 1) * sizeof *up);
    mp_err rc = MP_OK;
    if (!crcs || !up)
        rc = mp_set_error(c->err, MP_ENOMEM, 0, c->path, "out of memory");
    for (uint64_t g = 0; rc == MP_OK && g < p->ngroups; g++)
        rc = copy_group(c, g, &crcs[g]);
    if (rc == MP_OK)
        rc = flush_run(c);
    for (unsigned l = 1; rc == MP_OK && l <= h; l++) {
        for (uint64_t n = 0; rc == MP_OK && n < counts[l]; n++)
            rc = write_node(c, l, n, crcs, counts[l - 1], &up[n]);
        uint32_t *t = crcs; crcs = up; up = t;   /* up had room for counts[1] >= counts[l] */
    }
    if (rc == MP_OK) {
        unsigned char *root = c->page;
        mp_rootfields f = { .txn = p->d_txn, .page_count = p->page_count, .user_root = p->d_user_root,
                            .height = h };
        mp_root_init(root, ge->P);
        for (uint64_t k = 0; k < counts[h]; k++)
            mp_put_entry(root + MP_ROOT_HDR_SIZE + MP_ENTRY_SIZE * k, crcs[k], 0);
        put_page_table(p, root, &f);
        mp_root_put(root, &f);
        mp_root_seal(root, ge->P);
        int e = mp_os_sync_fd(c->fd);
        if (e)
            rc = io_error(c, e, "fdatasync");
        else if ((e = mp_os_write_at(c->fd, 0, root, ge->P)) != 0)
            rc = io_error(c, e, "write");
    }
    free(crcs);
    free(up);
    return rc;
}

static mp_err copy_to(mp_pager *p, const char *path, mp_error *err)
{
    if (p->in_txn)
        return mp_set_error(err, MP_ETXN, 0, p->path, "cannot copy inside a transaction (commit or roll back first)");
    if (p->poisoned)
        return mp_set_error(err, MP_EPOISONED, 0, p->path,
                            "an earlier write failed; reopen the file to copy its last durable state");
    const mp_geom *ge = &p->geom;
    uint64_t bytes = p->page_count * ge->P;
    copier c = { .p = p, .fd = -1, .path = path, .err = err };
    c.page = malloc(ge->P);
    if (!c.page)
        return mp_set_error(err, MP_ENOMEM, 0, path, "out of memory");
    c.fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (c.fd < 0) {
        int e = errno;
        free(c.page);
        return mp_set_error(err, mp_err_from_errno(e), e, path, "create");
    }
    /* every block reserved, as growth does: a writer of the copy then
     * writes free pages through its mapping without meeting a full disk */
    int e = mp_os_allocate_fd(c.fd, 0, bytes);
    mp_err rc = e ? io_error(&c, e, "cannot reserve the copy's disk space") : write_copy(&c);
    if (rc == MP_OK && (e = mp_os_sync_fd(c.fd)) != 0)
        rc = io_error(&c, e, "fdatasync");
    if (close(c.fd) != 0 && rc == MP_OK) {
        e = errno;
        rc = io_error(&c, e, "close");
    }
    if (rc == MP_OK && (e = mp_os_sync_dir(path)) != 0)
        rc = io_error(&c, e, "fsync of the directory");
    if (rc != MP_OK)
        unlink(path);   /* Y4: no partial copy is left behind */
    free(c.page);
    return rc;
}

mp_err mp_copy(mp_pager *p, const char *path, mp_error *err)
{
    mp_error local;
    if (!err)
        err = &local;
    memset(err, 0, sizeof *err);
    mp_err rc = copy_to(p, path, err);
    if (rc != MP_OK)
        mp_fail(p, rc, "%s", err->msg);
    return rc;
}
