/*
 * mappedpages.h -- public C API of mappedpages.
 *
 * A crash-consistent, memory-mapped, single-file page provider.  A file is an
 * array of fixed-size pages (a power of two from 1 KiB to 64 KiB).  Callers
 * allocate and free pages, and read and write them in place through stable
 * pointers.  Every change of allocation state and of the user root happens
 * in a transaction; a commit issues one durability barrier and, when it
 * returns, the transaction and every regular-page write made before it are
 * durable.  See docs/FORMAT.md for the on-disk format and the commit
 * protocol, and README.md for a tour.
 *
 * Conventions
 *  - Every function that can fail returns an mp_err (MP_OK == 0).  The
 *    pager keeps a human-readable message for its last failure
 *    (mp_errmsg); mp_create/mp_open fill an optional mp_error.
 *  - Page ids are physical page numbers (mp_pgno, 64-bit so that any caller
 *    value can be checked; valid ids are below 2^32).  Pages the file uses
 *    for itself (page 0 among them) are never handed out.
 *  - Mutations outside mp_begin/mp_commit are each their own transaction
 *    ("auto-commit"): durable when the call returns MP_OK.
 *  - After a failed durability barrier (or a failed write during a commit)
 *    the pager is "poisoned": memory shows the last durable state, and every
 *    later mutation and commit fails with MP_EPOISONED.  Reopen to recover
 *    the last durable state.  (Retrying fsync after a failure is unsound:
 *    the kernel may have dropped the dirty pages and report success.)  A
 *    full disk when the file must grow (MP_ENOSPC) does not poison: the
 *    call changes nothing, and freeing pages makes room.  Details: "fault
 *    injection" below and docs/FORMAT.md.
 *  - A pager is not thread-safe: use it from one thread at a time.
 */
#ifndef MAPPEDPAGES_H
#define MAPPEDPAGES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MP_VERSION_STRING "0.1.0"
/* The format version this build writes; it opens files of versions
 * MP_FORMAT_OLDEST to MP_FORMAT_VERSION (version 1 had no held pages). */
#define MP_FORMAT_VERSION 2u
#define MP_FORMAT_OLDEST 1u

#define MP_MIN_PAGE_SIZE 1024u
#define MP_MAX_PAGE_SIZE 65536u
#define MP_DEFAULT_PAGE_SIZE 4096u
/* Largest number of pages in one file: page ids fit in 32 bits. */
#define MP_MAX_PAGES ((uint64_t)1 << 32)

typedef uint64_t mp_pgno;
typedef struct mp_pager mp_pager;

typedef enum mp_err {
    MP_OK = 0,
    MP_EINVAL,     /* invalid argument: bad page size, bad option, bad count */
    MP_EEXIST,     /* create: the file already exists */
    MP_ENOENT,     /* open: no such file */
    MP_EACCES,     /* permission denied */
    MP_EISDIR,     /* the path is a directory */
    MP_ENOTMP,     /* not a mappedpages file (empty, too short, no magic) */
    MP_EVERSION,   /* a mappedpages file of an unsupported format version */
    MP_ECORRUPT,   /* checksums or structure fail in every root */
    MP_ELOCKED,    /* another pager (process or descriptor) holds the lock */
    MP_EIO,        /* an I/O error (see mp_error.sys_errno) */
    MP_ENOSPC,     /* the disk is full */
    MP_ENOMEM,     /* out of memory or of address space */
    MP_EFULL,      /* the file reached MP_MAX_PAGES or its address reservation */
    MP_EREADONLY,  /* mutation of a read-only pager */
    MP_ERANGE,     /* page id beyond the end of the file */
    MP_ERESERVED,  /* page id belongs to the file's own structures */
    MP_ENOTALLOC,  /* page is not an allocated regular page (double free...) */
    MP_EDUP,       /* the same id twice in one bulk free */
    MP_ETXN,       /* transaction misuse: nested begin, commit without begin */
    MP_EPOISONED,  /* a durability barrier failed earlier; reopen */
    MP_ERR_COUNT
} mp_err;

/* Short constant description of an error code ("file is locked", ...). */
const char *mp_strerror(mp_err err);
/* Stable lower-case identifier of an error code ("locked", "corrupt", ...),
 * used as the third return value of the Lua API. */
const char *mp_errname(mp_err err);

/* Details of a failed mp_create/mp_open. */
typedef struct mp_error {
    mp_err code;
    int sys_errno;      /* errno of the failing system call, or 0 */
    char msg[512];      /* full message, e.g. "open /x: root slot 0: bad checksum; ..." */
} mp_error;

typedef struct mp_options {
    uint32_t page_size;     /* mp_create only; 0 means MP_DEFAULT_PAGE_SIZE */
    int readonly;           /* mp_open only: map read-only, refuse mutation */
    uint64_t max_bytes;     /* address space to reserve for growth; 0 = default
                             * (enough for MP_MAX_PAGES pages, capped at 16 TiB,
                             * halved while the kernel refuses, never below the
                             * file size).  Growth past it fails with MP_EFULL. */
} mp_options;

/* Create a new file (fails with MP_EEXIST if it exists) and open it for
 * writing.  The creating commit is durable when this returns. */
mp_err mp_create(const char *path, const mp_options *opts, mp_pager **out,
                 mp_error *err);
/* Open an existing file.  A writer takes an exclusive lock (flock): a
 * second writer fails with MP_ELOCKED.  A reader (opts->readonly) takes no
 * such lock: it opens beside a writer, in this process or another, and
 * shows one committed transaction (its snapshot) until mp_refresh, however
 * the writer commits meanwhile; the writer never reuses a page a live
 * reader's snapshot reaches (those pages are "held", see mp_info).
 * Open validates the newest root and everything reachable from it, and falls
 * back to the previous root when any check fails; a writer then durably
 * invalidates the rejected root before returning. */
mp_err mp_open(const char *path, const mp_options *opts, mp_pager **out,
               mp_error *err);
/* A reader moves its snapshot to the newest commit (a no-op when it is
 * there already, and for a writer).  On failure (MP_ECORRUPT, MP_ENOMEM,
 * MP_EIO) it keeps its snapshot. */
mp_err mp_refresh(mp_pager *p);
/* The distinct snapshots (transaction ids) live readers of the file hold,
 * ascending: the first cap into snaps, their number into *count.  Readers
 * on one snapshot count once. */
mp_err mp_readers(mp_pager *p, uint64_t *snaps, size_t cap, uint64_t *count);
/* Write a copy of the pager's committed state to a new file at path: a
 * reader's snapshot, a writer's last durable state, however a writer of
 * the file commits meanwhile.  The copy has the same page size, page
 * count, transaction id, user root, regular pages (their bytes as they are
 * now: regular pages are not versioned) and protected pages; pages held
 * for readers are free in it.  It is durable when this returns MP_OK (one
 * fdatasync of the file, then of its directory); on failure nothing is
 * left at path.  Errors: MP_EEXIST (path exists: untouched), MP_ENOENT,
 * MP_EACCES, MP_ENOSPC, MP_EIO..., MP_ETXN inside a transaction,
 * MP_EPOISONED.  err (optional) and mp_errmsg get the message. */
mp_err mp_copy(mp_pager *p, const char *path, mp_error *err);
/* Roll back any open transaction, unmap, unlock and free.  NULL is a no-op. */
void mp_close(mp_pager *p);

/* Message of this pager's last failure ("" if none). */
const char *mp_errmsg(const mp_pager *p);

uint32_t mp_page_size(const mp_pager *p);
uint64_t mp_page_count(const mp_pager *p);
/* Pages not in use by regular pages, protected pages or the file's own
 * structures.  Pages freed by the open transaction are not counted until it
 * commits (they become reusable in the next transaction), nor pages held
 * for a live reader's snapshot. */
uint64_t mp_free_count(const mp_pager *p);
int mp_readonly(const mp_pager *p);

typedef struct mp_info {
    const char *path;
    uint32_t page_size;
    uint64_t page_count;
    uint64_t free_count;
    uint64_t regular_count;    /* allocated regular pages */
    uint64_t protected_count;  /* allocated protected pages */
    uint64_t protected_pages;  /* physical pages holding protected contents */
    uint64_t pid_limit;        /* pids ever allocated: all pids are below it */
    uint64_t system_count;     /* pages used by the file's own structures */
    uint64_t pending_count;    /* freed by the open transaction: free after commit */
    uint64_t txn;              /* id of the last durable transaction */
    int in_txn;                /* an explicit transaction is open */
    int readonly;
    int poisoned;
    uint64_t file_size;        /* bytes on disk */
    uint64_t reserved_bytes;   /* address space reserved for the mapping */
    int root_slot;             /* root slot (0 or 1) of the last durable root */
    int recovered;             /* open fell back to the previous root */
    uint32_t fsm_height;       /* index levels above the group bitmaps */
    uint64_t barriers;         /* durability barriers issued since open */
    uint64_t commits;          /* commits since open */
    uint64_t user_root;
    uint64_t held_count;       /* pages freed but held for readers' snapshots
                                * (a reader: those its snapshot shows held) */
} mp_info;
void mp_get_info(const mp_pager *p, mp_info *out);

/* ---- regular pages ---------------------------------------------------- */

/* Allocate one page; its content is unspecified (zeros if never used). */
mp_err mp_alloc(mp_pager *p, mp_pgno *out);
/* Free an allocated regular page.  MP_ERANGE, MP_ERESERVED or MP_ENOTALLOC
 * (double free, or freed earlier in the same transaction) otherwise. */
mp_err mp_free(mp_pager *p, mp_pgno id);
/* Upper bound on the pages mp_alloc_bulk could hand out now: the free pages
 * plus what growth can add within MP_MAX_PAGES, the address reservation
 * and the file system's free space.  (A bound, not a promise.) */
uint64_t mp_alloc_room(const mp_pager *p);
/* Whether mp_alloc_bulk(p, n) can succeed as far as room goes: MP_OK, or
 * the error it would return (MP_EFULL when the file cannot grow that far:
 * the 2^32-page limit or the address reservation; MP_ENOSPC when the file
 * system lacks the space; MP_EPOISONED, MP_EREADONLY) with its message. */
mp_err mp_alloc_check(mp_pager *p, uint64_t n);
/* All-or-nothing: on failure nothing was allocated / freed. */
mp_err mp_alloc_bulk(mp_pager *p, size_t n, mp_pgno *out);
mp_err mp_free_bulk(mp_pager *p, size_t n, const mp_pgno *ids);

/* MP_OK when id is an allocated regular page; else MP_ERANGE, MP_ERESERVED
 * or MP_ENOTALLOC.  Does not set the pager's message. */
mp_err mp_check_page(const mp_pager *p, mp_pgno id);
/* Address of page id (id < page count).  The address never changes while
 * the pager is open, whatever the file grows to.  Writing through it is
 * allowed only for allocated regular pages of a writable pager. */
void *mp_page_ptr(const mp_pager *p, mp_pgno id);
/* First allocated regular page >= from: returns 1 and sets *out, or 0. */
int mp_next_page(const mp_pager *p, mp_pgno from, mp_pgno *out);
/* Order regular-page writes before the next commit's root.  A commit's one
 * barrier makes everything durable at once, in no particular order, so a
 * crash during it can leave the new root with regular pages still holding
 * old bytes.  After this call the next commit (the open transaction's, or
 * the next auto-commit) first issues a barrier of its own, before it writes
 * anything, so that every regular-page write made before it is durable
 * before a root that may reference those pages: bytes written into fresh
 * pages and linked in by that commit are never seen torn under it (such a
 * commit issues two barriers).  A commit that changes nothing needs no
 * ordering (it writes no root): its one barrier covers the writes.  The
 * request stays until a barrier covers it (a rollback does not drop it). */
void mp_order_writes(mp_pager *p);

/* ---- protected pages -------------------------------------------------- */

/* Protected pages have their own id space ("pids": 0, 1, 2, ... dense and
 * stable across reopen; the lowest free pid is reused, from the transaction
 * after the one that freed it).  Their content changes only atomically:
 * a write goes to a fresh physical page (copy-on-write) and the commit that
 * makes it durable frees the old one, reusable from the next transaction.
 * At rest a protected page occupies one physical page (none until first
 * written: it reads as zeros). */

/* Allocate a protected page; it reads as zeros. */
mp_err mp_alloc_protected(mp_pager *p, mp_pgno *pid);
/* Free a protected page: MP_ERANGE for a pid never allocated (>= the pid
 * high-water mark), MP_ENOTALLOC for a free one (double free). */
mp_err mp_free_protected(mp_pager *p, mp_pgno pid);
/* MP_OK when pid is an allocated protected page (in the open transaction's
 * view), else MP_ERANGE or MP_ENOTALLOC.  Does not set the message. */
mp_err mp_check_protected(const mp_pager *p, mp_pgno pid);
/* pid's current content (P bytes): the open transaction's own, else the
 * committed.  NULL unless pid is allocated.  Valid until the next mutation
 * or commit; re-resolve at each access. */
const void *mp_protected_ptr(const mp_pager *p, mp_pgno pid);
/* Inside an explicit transaction only (else MP_ETXN): make pid writable for
 * the rest of the transaction (copy-on-write on the first call in it) and
 * return its page.  Later calls in the same transaction return the same
 * page, so every writer of pid in a transaction sees the same bytes.
 * Rollback drops the writes. */
mp_err mp_protected_write_ptr(mp_pager *p, mp_pgno pid, void **out);
/* Replace pid's whole content with buf (P bytes).  Outside a transaction
 * this is one durable transaction (one barrier); inside, it joins it. */
mp_err mp_write_protected(mp_pager *p, mp_pgno pid, const void *buf);
/* First allocated pid >= from: returns 1 and sets *out, or 0. */
int mp_next_protected(const mp_pager *p, mp_pgno from, mp_pgno *out);

/* ---- transactions and the user root ----------------------------------- */

mp_err mp_begin(mp_pager *p);     /* MP_ETXN if one is open */
mp_err mp_commit(mp_pager *p);    /* one durability barrier */
mp_err mp_rollback(mp_pager *p);  /* MP_ETXN if none is open */
int mp_in_txn(const mp_pager *p);
mp_err mp_set_root(mp_pager *p, uint64_t value);
uint64_t mp_root(const mp_pager *p);

/* ---- diagnostics ------------------------------------------------------ */

/* Audit the file and the pager's memory: the durable root, every index
 * node, bitmap and page-table page it reaches (header and CRC, entries
 * against memory), every protected page's content against the CRC in its
 * page-table entry, every page accounted for exactly once (each page the
 * page table uses is a system page outside the reserved runs, used once;
 * no other system page), and the in-memory invariants.  It does not stop
 * at a problem: each page is checked on its own, so every bad checksum and
 * every page owned twice or not at all is its own problem.  Pages are read
 * from the file (pread), so damage under an open pager is seen.  Inside a
 * transaction the entries it changed are checked at its commit instead.
 *
 * mp_check_each calls fn(ud, problem) for each problem found, problem a
 * line naming the page and what is wrong with it, e.g. "page 9
 * (page-table leaf 0): checksum mismatch" or "page 12 (protected page 3):
 * content does not match its checksum" (the string lives only during the
 * call; fn may be NULL).  Returns MP_OK when there is none, MP_ECORRUPT
 * when there is at least one (mp_errmsg: the first, and how many more), or
 * MP_ENOMEM when it could not start.  mp_check(p) is
 * mp_check_each(p, NULL, NULL). */
typedef void (*mp_problem_fn)(void *ud, const char *problem);
mp_err mp_check_each(mp_pager *p, mp_problem_fn fn, void *ud);
mp_err mp_check(mp_pager *p);

/* ---- fault injection (tests only) ------------------------------------ */

/* Every I/O operation whose failure the pager must survive goes through one
 * process-wide hook, so tests can make it fail:
 *   MP_IO_BARRIER  called instead of fdatasync(fd) (every durability
 *                  barrier: commits, open's invalidation of a rejected
 *                  root); it returns 0 (the data is durable) or an errno.
 *   MP_IO_GROW     called before each posix_fallocate that reserves disk
 *                  blocks for growth (mp_create's first extent included).
 *   MP_IO_WRITE    called before each whole-page pwrite: metadata pages and
 *                  the root at commit, protected contents written by
 *                  mp_write_protected, open's clearing of a root slot;
 *                  and mp_copy's writes, block reservation (GROW) and
 *                  fdatasync (BARRIER) of the new file.
 *                  For GROW and WRITE, 0 lets the real operation run and an
 *                  errno makes it fail with that errno without running.
 * Writes through the mapping (regular pages, mp_protected_write_ptr) are
 * not hooked.  NULL restores the real operations.
 *
 * What each failure does (docs/FORMAT.md, "Failed barriers, failed writes
 * and a full disk", has the reasons):
 *  - a failed barrier or a failed pwrite inside a commit: the call returns
 *    MP_EIO / MP_ENOSPC, the transaction is rolled back in memory (memory
 *    shows the last durable state) and the pager is poisoned (MP_EPOISONED
 *    for every later mutation).  Reopening finds the last durable state,
 *    or the failed commit's if all of it had reached the disk.
 *  - a failed growth (MP_IO_GROW): MP_ENOSPC / MP_EIO; nothing was written
 *    and nothing changes (an auto-commit call is rolled back; inside a
 *    transaction the failing call alone has no effect and the transaction
 *    stays open), and the pager is not poisoned: freeing pages, or a
 *    smaller request, can succeed.  A growth the commit itself needs (for
 *    page-table pages) fails the commit the same way: the transaction is
 *    rolled back, not poisoned.
 *  - a failed pwrite of protected content in mp_write_protected: outside a
 *    transaction, like a failed growth (the page written was a fresh one no
 *    durable state references); inside one, the transaction's copy of the
 *    page is unknown, so the pager is poisoned and the transaction can only
 *    end in a rollback.
 *  - a failed open-time clearing (write or barrier): mp_open fails; the
 *    next open tries again. */
typedef enum mp_io_op { MP_IO_BARRIER, MP_IO_GROW, MP_IO_WRITE } mp_io_op;
typedef int (*mp_io_hook)(mp_io_op op, int fd, void *ctx);
void mp_set_io_hook(mp_io_hook hook, void *ctx);

#ifdef __cplusplus
}
#endif
#endif /* MAPPEDPAGES_H */
