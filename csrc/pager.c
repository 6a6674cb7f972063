/*
 * pager.c -- the public C API (mappedpages.h): create/open/close, errors,
 * info, regular pages, protected pages, transactions and the user root.
 *
 * Every mutation runs in the working state (fsm.c, ptable.c); outside an
 * explicit transaction it is committed at once ("auto-commit", finish())
 * or, if it failed, rolled back, so a failed call changes nothing.
 *
 * The pager's states (mp_pager fields that tell them apart):
 *
 *   state      in_txn  changed  poisoned   what holds
 *   CLEAN        0        0        0       working state == durable state:
 *                                          no dirty group, undo and pending
 *                                          lists empty (fsm.c F5, ptable.c T3)
 *   CHANGED      0        1        0       inside one mutating call outside
 *                                          a transaction (auto-commit)
 *   TXN          1       0|1       0       an explicit transaction is open;
 *                                          changed once it changed anything
 *   POISONED    0|1      0|1       1       a write or barrier of a commit
 *                                          failed (C4, commit.c): memory was
 *                                          rolled back to the durable state
 *                                          (index nodes may keep the failed
 *                                          commit's CRCs, never used again);
 *                                          reads, rollback and close only
 *   A read-only pager is CLEAN for good: writable() refuses every mutation.
 *   The order_writes request (mp_order_writes) is not a state: it stays
 *   until the next barrier covers it.
 *
 * Transitions, and the function behind each:
 *
 *   (none)   -> CLEAN     mp_create: mp_write_initial (commit.c), the
 *                         creating commit; mp_open: mp_recover (recover.c),
 *                         root selection, verification, clearing (C5)
 *   CLEAN    -> CHANGED   any mutation outside a transaction (mp_alloc,
 *                         mp_free, mp_alloc_bulk, mp_free_bulk, mp_set_root,
 *                         mp_alloc_protected, mp_free_protected,
 *                         mp_write_protected), after writable()
 *   CHANGED  -> CLEAN     finish(): mp_txn_commit (commit.c) when the call
 *                         succeeded, mp_txn_rollback when it or the commit
 *                         failed
 *   CLEAN    -> TXN       mp_begin
 *   TXN      -> TXN       mutations (finish() leaves the transaction open;
 *                         a failing call alone has no effect)
 *   TXN      -> CLEAN     mp_commit: mp_txn_commit, and mp_txn_rollback if
 *                         it failed; mp_rollback: mp_txn_rollback
 *   CHANGED  -> POISONED  mp_txn_commit when a write or the barrier fails
 *   TXN      -> POISONED  (then finish() or mp_commit rolls memory back);
 *                         mp_write_protected when its pwrite fails inside
 *                         a transaction
 *   POISONED -> POISONED  mutations and commits fail with MP_EPOISONED
 *                         (writable(), mp_txn_commit); mp_rollback ends
 *                         the transaction
 *   any      -> (none)    mp_close (mp_txn_rollback first when changed)
 */
#include "mp_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* ---- lifecycle --------------------------------------------------------- */


static mp_pager *pager_new(const char *path, mp_error *err)
{
    mp_pager *p = calloc(1, sizeof *p);
    if (p)
        p->path = strdup(path);
    if (!p || !p->path) {
        free(p);
        mp_set_error(err, MP_ENOMEM, 0, path, "out of memory");
        return NULL;
    }
    p->fd = -1;
    return p;
}

static void pager_free(mp_pager *p)
{
    mp_os_unmap(p);
    if (p->fd >= 0)
        close(p->fd);   /* releases the flock */
    mp_fsm_free_all(p);
    mp_pt_free_all(p);
    free(p->scratch);
    free(p->snap_root);
    free(p->path);
    free(p);
}

/* The writer's lock: one writer per file.  Readers take none (they hold
 * their snapshot with readers.c's byte-range locks instead). */
static int take_lock(int fd)
{
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EINTR)
            return errno;
    }
    return 0;
}

static mp_err lock_error(mp_error *err, int e, const char *path)
{
    if (e == EWOULDBLOCK)
        return mp_set_error(err, MP_ELOCKED, 0, path, "%s", "file is locked: another writer has it open");
    return mp_set_error(err, mp_err_from_errno(e), e, path, "flock");
}

mp_err mp_create(const char *path, const mp_options *opts, mp_pager **out, mp_error *err)
{
    *out = NULL;
    if (err)
        memset(err, 0, sizeof *err);
    uint32_t P = opts && opts->page_size ? opts->page_size : MP_DEFAULT_PAGE_SIZE;
    if (!mp_page_size_valid(P))
        return mp_set_error(err, MP_EINVAL, 0, path,
                            "page size must be a power of two from 1024 to 65536 (got %u)", P);
    mp_pager *p = pager_new(path, err);
    if (!p)
        return MP_ENOMEM;
    p->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (p->fd < 0) {
        int e = errno;
        pager_free(p);
        return mp_set_error(err, mp_err_from_errno(e), e, path, "create");
    }
    mp_err rc;
    int e = take_lock(p->fd);
    if (e) {
        rc = lock_error(err, e, path);
        goto fail;
    }
    mp_geom_init(&p->geom, P);
    p->opt_max_bytes = opts ? opts->max_bytes : 0;
    p->want_reserve = mp_os_default_reserve(P, p->opt_max_bytes);
    p->page_count = mp_min_page_count(&p->geom);
    rc = mp_os_reserve(p, p->want_reserve, p->page_count * P, err);
    if (rc != MP_OK)
        goto fail;
    rc = mp_os_grow_file(p, 0, p->page_count * P);
    if (rc == MP_OK)
        rc = mp_write_initial(p);
    if (rc != MP_OK) {
        mp_set_error(err, rc, 0, path, "%s", p->errmsg[0] ? p->errmsg : mp_strerror(rc));
        goto fail;
    }
    e = mp_os_sync_dir(path);
    if (e) {
        rc = mp_set_error(err, mp_err_from_errno(e), e, path, "fsync of the directory");
        goto fail;
    }
    *out = p;
    return MP_OK;
fail:
    unlink(path);
    pager_free(p);
    return rc;
}

mp_err mp_open(const char *path, const mp_options *opts, mp_pager **out, mp_error *err)
{
    *out = NULL;
    if (err)
        memset(err, 0, sizeof *err);
    int readonly = opts && opts->readonly;
    mp_pager *p = pager_new(path, err);
    if (!p)
        return MP_ENOMEM;
    p->readonly = readonly;
    mp_err rc;
    /* O_NONBLOCK: opening a FIFO read-only would otherwise block until a
     * writer appears; it is refused below as not a regular file, and the
     * flag means nothing for one. */
    p->fd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK);
    if (p->fd < 0) {
        int e = errno;
        rc = mp_set_error(err, mp_err_from_errno(e), e, path, "open");
        goto fail;
    }
    struct stat st;
    if (fstat(p->fd, &st) != 0) {
        int e = errno;
        rc = mp_set_error(err, mp_err_from_errno(e), e, path, "fstat");
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = mp_set_error(err, MP_EISDIR, 0, path, "is a directory, not a mappedpages file");
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = mp_set_error(err, MP_ENOTMP, 0, path, "not a regular file");
        goto fail;
    }
    int e = readonly ? 0 : take_lock(p->fd);
    if (e) {
        rc = lock_error(err, e, path);
        goto fail;
    }
    p->file_bytes = (uint64_t)st.st_size;
    if (p->file_bytes == 0) {
        rc = mp_set_error(err, MP_ENOTMP, 0, path, "empty file, not a mappedpages file");
        goto fail;
    }
    if (p->file_bytes < 2 * MP_MIN_PAGE_SIZE) {
        rc = mp_set_error(err, MP_ENOTMP, 0, path, "file too short to hold the root slots, not a mappedpages file");
        goto fail;
    }
    p->opt_max_bytes = opts ? opts->max_bytes : 0;
    rc = mp_recover(p, err);
    if (rc != MP_OK)
        goto fail;
    *out = p;
    return MP_OK;
fail:
    pager_free(p);
    return rc;
}

mp_err mp_refresh(mp_pager *p)
{
    if (!p->readonly)
        return MP_OK;   /* a writer always shows its newest commit */
    mp_error err;
    mp_err rc = mp_reader_refresh(p, &err);
    if (rc != MP_OK)
        mp_fail(p, rc, "%s", err.msg);
    return rc;
}

void mp_close(mp_pager *p)
{
    if (!p)
        return;
    if (p->changed)
        mp_txn_rollback(p);
    pager_free(p);
}

/* ---- queries ----------------------------------------------------------- */

uint32_t mp_page_size(const mp_pager *p) { return p->geom.P; }
uint64_t mp_page_count(const mp_pager *p) { return p->page_count; }
uint64_t mp_free_count(const mp_pager *p) { return p->free_total; }
int mp_readonly(const mp_pager *p) { return p->readonly; }
int mp_in_txn(const mp_pager *p) { return p->in_txn; }
uint64_t mp_root(const mp_pager *p) { return p->user_root; }

void mp_get_info(const mp_pager *p, mp_info *o)
{
    memset(o, 0, sizeof *o);
    o->path = p->path;
    o->page_size = p->geom.P;
    o->page_count = p->page_count;
    o->free_count = p->free_total;
    o->regular_count = p->regular_total;
    o->protected_count = p->prot_count;
    o->protected_pages = p->prot_pages;
    o->pid_limit = p->pid_limit;
    o->system_count = p->system_total - p->prot_pages;
    o->pending_count = p->pending_len;
    o->txn = p->d_txn;
    o->in_txn = p->in_txn;
    o->readonly = p->readonly;
    o->poisoned = p->poisoned;
    o->file_size = p->file_bytes;
    o->reserved_bytes = p->reserve_bytes;
    o->root_slot = p->cur_slot;
    o->recovered = p->recovered;
    o->fsm_height = p->d_height;
    o->barriers = p->barriers;
    o->commits = p->commits;
    o->user_root = p->user_root;
    o->held_count = p->held_len;
}

mp_err mp_readers(mp_pager *p, uint64_t *snaps, size_t cap, uint64_t *count)
{
    int e = mp_rd_list(p->fd, p->snap_held, snaps, cap, count);
    if (e)
        return mp_fail(p, mp_err_from_errno(e), "%s: the readers' lock: %s", p->path, strerror(e));
    return MP_OK;
}

mp_err mp_check_page(const mp_pager *p, mp_pgno id)
{
    unsigned st;
    if (mp_fsm_state(p, id, &st) != MP_OK)
        return MP_ERANGE;
    switch (st) {
    case ST_REGULAR: return MP_OK;
    case ST_SYSTEM: return MP_ERESERVED;
    default: return MP_ENOTALLOC;
    }
}

void *mp_page_ptr(const mp_pager *p, mp_pgno id)
{
    return id < p->page_count ? mp_page(p, id) : NULL;
}

int mp_next_page(const mp_pager *p, mp_pgno from, mp_pgno *out)
{
    uint64_t v;
    if (from >= p->page_count || !mp_fsm_next_regular(p, from, &v))
        return 0;
    *out = v;
    return 1;
}

/* ---- mutation ---------------------------------------------------------- */

/* A mutation may start (not read-only, not poisoned). */
static mp_err writable(mp_pager *p)
{
    if (p->readonly)
        return mp_fail(p, MP_EREADONLY, "pager is read-only");
    if (p->poisoned)
        return mp_fail(p, MP_EPOISONED,
                       "%s: an earlier write failed; the pager refuses changes until reopened", p->path);
    return MP_OK;
}

/* Auto-commit, the one place: the end of every mutating call.  Outside an
 * explicit transaction, commit it or, if it failed, drop it. */
static mp_err finish(mp_pager *p, mp_err rc)
{
    if (p->in_txn)
        return rc;
    if (rc == MP_OK)
        rc = mp_txn_commit(p);
    /* Also after a failed barrier: memory then shows the last durable state
     * (rolling back memory writes nothing to the disk). */
    if (rc != MP_OK)
        mp_txn_rollback(p);
    return rc;
}

static mp_err page_error(mp_pager *p, mp_pgno id, mp_err rc)
{
    switch (rc) {
    case MP_ERANGE:
        return mp_fail(p, rc, "page %llu is out of range (the file has %llu pages)",
                       (unsigned long long)id, (unsigned long long)p->page_count);
    case MP_ERESERVED:
        return mp_fail(p, rc, "page %llu is used by the file itself", (unsigned long long)id);
    default: {
        unsigned st = ST_FREE;
        mp_fsm_state(p, id, &st);
        /* 11 is also a page held for readers, freed by an earlier commit */
        int this_txn = st == ST_PENDING && mp_u32_in(p->pending, p->pending_len, (uint32_t)id);
        return mp_fail(p, rc, "page %llu is not allocated%s", (unsigned long long)id,
                       this_txn ? " (already freed in this transaction)" : " (double free?)");
    }
    }
}

mp_err mp_alloc(mp_pager *p, mp_pgno *out)
{
    mp_err rc = writable(p);
    if (rc != MP_OK)
        return rc;
    return finish(p, mp_fsm_alloc(p, out));
}

mp_err mp_free(mp_pager *p, mp_pgno id)
{
    mp_err rc = writable(p);
    if (rc != MP_OK)
        return rc;
    rc = mp_check_page(p, id);
    if (rc != MP_OK)
        return page_error(p, id, rc);
    return finish(p, mp_fsm_mark_free(p, id));
}

/* Pages growth may add: within MP_MAX_PAGES and the address reservation
 * (*limit), and the file system's free space (*disk). */
static void growth_room(const mp_pager *p, uint64_t *limit, uint64_t *disk)
{
    uint64_t max_pages = p->reserve_bytes / p->geom.P;
    if (max_pages > MP_MAX_PAGES)
        max_pages = MP_MAX_PAGES;
    *limit = max_pages > p->page_count ? max_pages - p->page_count : 0;
    *disk = UINT64_MAX;
    struct statvfs vfs;
    if (fstatvfs(p->fd, &vfs) == 0)
        *disk = (uint64_t)vfs.f_bavail * vfs.f_frsize / p->geom.P;
}

uint64_t mp_alloc_room(const mp_pager *p)
{
    uint64_t limit, disk;
    growth_room(p, &limit, &disk);
    return p->free_total + (disk < limit ? disk : limit);
}

mp_err mp_alloc_check(mp_pager *p, uint64_t n)
{
    mp_err rc = writable(p);
    if (rc != MP_OK)
        return rc;
    uint64_t limit, disk;
    growth_room(p, &limit, &disk);
    if (n <= p->free_total || n - p->free_total <= (disk < limit ? disk : limit))
        return MP_OK;
    /* what stops it: the file's own limit (full, like mp_alloc), or the disk */
    if (n - p->free_total > limit)
        return mp_fail(p, MP_EFULL,
                       "%s: %llu pages do not fit (%llu free, the file can grow by %llu more%s)",
                       p->path, (unsigned long long)n, (unsigned long long)p->free_total,
                       (unsigned long long)limit,
                       p->reserve_bytes / p->geom.P < MP_MAX_PAGES ? ": address space reservation, see max_bytes"
                                                                  : ": the 2^32-page limit");
    return mp_fail(p, MP_ENOSPC, "%s: %llu pages do not fit (%llu free, the disk has room for %llu more)",
                   p->path, (unsigned long long)n, (unsigned long long)p->free_total,
                   (unsigned long long)disk);
}

mp_err mp_alloc_bulk(mp_pager *p, size_t n, mp_pgno *out)
{
    mp_err rc = mp_alloc_check(p, (uint64_t)n);
    if (rc != MP_OK || n == 0)
        return rc;
    if ((uint64_t)n > p->free_total)   /* grow once, not step by step */
        rc = mp_fsm_grow(p, (uint64_t)n - p->free_total);
    size_t done = 0;
    while (rc == MP_OK && done < n) {
        rc = mp_fsm_alloc(p, &out[done]);
        if (rc == MP_OK)
            done++;
    }
    /* the failing alloc changed nothing; undo the others (all-or-nothing) */
    if (rc != MP_OK)
        while (done > 0)
            mp_fsm_unalloc(p, out[--done]);
    return finish(p, rc);
}

mp_err mp_free_bulk(mp_pager *p, size_t n, const mp_pgno *ids)
{
    mp_err rc = writable(p);
    if (rc != MP_OK || n == 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        rc = mp_check_page(p, ids[i]);
        if (rc != MP_OK)
            return page_error(p, ids[i], rc);
    }
    size_t done = 0;
    for (; done < n; done++) {
        unsigned st = ST_FREE;
        mp_fsm_state(p, ids[done], &st);
        if (st != ST_REGULAR) {
            rc = mp_fail(p, MP_EDUP, "page %llu appears twice", (unsigned long long)ids[done]);
            break;
        }
        rc = mp_fsm_mark_free(p, ids[done]);
        if (rc != MP_OK)
            break;
    }
    if (rc != MP_OK)
        while (done > 0)
            mp_fsm_unmark_free(p, ids[--done]);
    return finish(p, rc);
}

mp_err mp_set_root(mp_pager *p, uint64_t value)
{
    mp_err rc = writable(p);
    if (rc != MP_OK)
        return rc;
    p->user_root = value;
    p->changed = 1;
    return finish(p, MP_OK);
}

/* ---- protected pages (the mechanism: ptable.c) -------------------------- */

static mp_err pid_error(mp_pager *p, mp_pgno pid, mp_err rc)
{
    if (rc == MP_ERANGE)
        return mp_fail(p, rc, "protected page %llu does not exist (pids are below %llu)",
                       (unsigned long long)pid, (unsigned long long)p->pid_limit);
    return mp_fail(p, rc, "protected page %llu is not allocated%s", (unsigned long long)pid,
                   pid < p->pid_limit && p->pt[pid].txn == p->d_txn + 1
                       ? " (freed in this transaction)" : " (double free?)");
}

mp_err mp_check_protected(const mp_pager *p, mp_pgno pid)
{
    if (pid >= p->pid_limit)
        return MP_ERANGE;
    return p->pt[pid].pgno == MP_PT_FREE ? MP_ENOTALLOC : MP_OK;
}

const void *mp_protected_ptr(const mp_pager *p, mp_pgno pid)
{
    if (pid >= p->pid_limit)
        return NULL;
    uint32_t pg = p->pt[pid].pgno;
    if (pg == MP_PT_FREE)
        return NULL;
    if (pg == MP_PT_ZERO)
        return p->zeros;
    return mp_page(p, pg);
}

int mp_next_protected(const mp_pager *p, mp_pgno from, mp_pgno *out)
{
    for (uint64_t pid = from; pid < p->pid_limit; pid++)
        if (p->pt[pid].pgno != MP_PT_FREE) {
            *out = pid;
            return 1;
        }
    return 0;
}

mp_err mp_alloc_protected(mp_pager *p, mp_pgno *out)
{
    mp_err rc = writable(p);
    if (rc != MP_OK)
        return rc;
    return finish(p, mp_pt_alloc(p, out));
}

mp_err mp_free_protected(mp_pager *p, mp_pgno pid)
{
    mp_err rc = writable(p);
    if (rc != MP_OK)
        return rc;
    rc = mp_check_protected(p, pid);
    if (rc != MP_OK)
        return pid_error(p, pid, rc);
    return finish(p, mp_pt_free(p, pid));
}

mp_err mp_protected_write_ptr(mp_pager *p, mp_pgno pid, void **out)
{
    mp_err rc = writable(p);
    if (rc != MP_OK)
        return rc;
    if (!p->in_txn)
        return mp_fail(p, MP_ETXN, "in-place writes need an open transaction");
    rc = mp_check_protected(p, pid);
    if (rc != MP_OK)
        return pid_error(p, pid, rc);
    unsigned char *page;
    mp_pgno pg;
    rc = mp_pt_cow(p, pid, 0, &page, &pg);
    if (rc == MP_OK)
        *out = page;
    return rc;
}

mp_err mp_write_protected(mp_pager *p, mp_pgno pid, const void *buf)
{
    mp_err rc = writable(p);
    if (rc != MP_OK)
        return rc;
    rc = mp_check_protected(p, pid);
    if (rc != MP_OK)
        return pid_error(p, pid, rc);
    /* The whole page is replaced: nothing to copy, and pwrite spares the
     * mapping a write fault now and write-protection at the barrier. */
    unsigned char *page;
    mp_pgno pg;
    rc = mp_pt_cow(p, pid, 1, &page, &pg);
    if (rc == MP_OK) {
        int e = mp_os_write_page(p, pg, buf);
        if (e && p->in_txn)   /* the transaction's copy of pid is unknown now: it must not commit */
            p->poisoned = 1;
        if (e)
            rc = mp_fail(p, mp_err_from_errno(e), "%s: writing protected page %llu: %s%s", p->path,
                         (unsigned long long)pid, strerror(e),
                         p->in_txn ? "; the transaction can only roll back, reopen the file" : "");
    }
    return finish(p, rc);
}

/* ---- transactions ------------------------------------------------------ */

mp_err mp_begin(mp_pager *p)
{
    mp_err rc = writable(p);
    if (rc != MP_OK)
        return rc;
    if (p->in_txn)
        return mp_fail(p, MP_ETXN, "a transaction is already open (transactions do not nest)");
    p->in_txn = 1;
    return MP_OK;
}

mp_err mp_commit(mp_pager *p)
{
    if (!p->in_txn)
        return mp_fail(p, MP_ETXN, "no transaction is open");
    mp_err rc = mp_txn_commit(p);
    if (rc != MP_OK)
        mp_txn_rollback(p);
    p->in_txn = 0;
    return rc;
}

void mp_order_writes(mp_pager *p)
{
    if (!p->readonly)
        p->order_writes = 1;
}

mp_err mp_rollback(mp_pager *p)
{
    if (!p->in_txn)
        return mp_fail(p, MP_ETXN, "no transaction is open");
    mp_txn_rollback(p);
    p->in_txn = 0;
    return MP_OK;
}
