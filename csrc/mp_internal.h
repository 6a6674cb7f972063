/*
 * mp_internal.h -- structures shared by the core's files (not installed).
 *
 * Who owns what, bottom to top (each file calls only files above it in
 * this list, never one below: no circle):
 *   error.c   errors: names and descriptions of the codes, the pager's
 *             message (mp_fail), filling an mp_error, errno -> mp_err
 *   crc32c.c  CRC32C (SSE4.2 or a table)
 *   layout.c  geometry derived from the page size: reserved runs, where each
 *             bitmap and index node lives, the index tree's shape, counting
 *             bitmap states (pure arithmetic)
 *   format.c  the on-disk encoding: metadata page headers, seals and checks,
 *             the root's fields, seal and header rules; the entries' inline
 *             accessors are in this header (pure byte work)
 *   osfile.c  the file: address reservation, mapping, growth, the one
 *             durability barrier, whole-page pread/pwrite, the test I/O hook
 *   readers.c which snapshots live readers hold: byte-range locks on the
 *             data file (a reader's hold, the writer's commit lock, queries)
 *   fsm.c     the free-space map over the group bitmaps, in memory: alloc,
 *             free, pending frees, growth, iteration; loading it at open
 *   ptable.c  the page table: protected-page entries, copy-on-write, its part
 *             of a commit and of a rollback, loading it at open
 *   commit.c  transactions: commit, rollback, the creating commit
 *   recover.c open-time recovery: root selection, verify_root (root header,
 *             free-space map and page table loads, their cross-check),
 *             clearing a rejected root
 *   check.c   the audit (mp_check, mp_check_each)
 *   copy.c    mp_copy: the pager's committed state into a new file, its
 *             metadata generated from memory, its pages from the mapping
 *   pager.c   the public C API but the audit and the copy: create/open/
 *             close, info, regular and protected pages, transactions and
 *             the user root; the pager's states, argument checks,
 *             auto-commit
 *
 * Dependency order (calls between the files; every file includes only this
 * header, crc32c.h and system headers):
 *   error.c, crc32c.c, layout.c, readers.c   call no other core file
 *   format.c   crc32c.c
 *   osfile.c   error.c
 *   fsm.c      error.c, layout.c, format.c, osfile.c
 *   ptable.c   error.c, crc32c.c, layout.c, format.c, osfile.c, fsm.c
 *   commit.c   error.c, layout.c, format.c, osfile.c, readers.c, fsm.c, ptable.c
 *   recover.c  error.c, layout.c, format.c, osfile.c, readers.c, fsm.c, ptable.c
 *   check.c    error.c, crc32c.c, layout.c, format.c, osfile.c, ptable.c
 *   copy.c     error.c, layout.c, format.c, osfile.c
 *   pager.c    error.c, layout.c, osfile.c, readers.c, fsm.c, ptable.c, commit.c,
 *              recover.c
 * The Lua binding (csrc/lua_*.c) sits above and uses mappedpages.h only.
 *
 * See docs/FORMAT.md for the on-disk format these files implement.
 */
#ifndef MP_INTERNAL_H
#define MP_INTERNAL_H

/* flock, fdatasync, posix_fallocate, MAP_NORESERVE, O_CLOEXEC: every core
 * file includes this header first, so the feature macro comes before any
 * system header whatever the build flags. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "mappedpages.h"

#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "mappedpages v1 supports little-endian hosts only (bitmaps are accessed as native words)"
#endif

/* ---- format constants (docs/FORMAT.md) -------------------------------- */

#define MP_HDR_SIZE 32u             /* metadata page header */
#define MP_ROOT_HDR_SIZE 128u       /* root header before the top entries */
#define MP_ENTRY_SIZE 8u            /* {crc u32, slot u32} */
#define MP_LMAX_LIMIT 8             /* LMAX is at most 2 for real geometries; test builds
                                     * with tiny nodes (MP_TEST_FANOUT) need up to 7 */
#define MP_MAGIC "mappedpg"
#define MP_TYPE_BITMAP 0x4d424d50u  /* "PMBM" */
#define MP_TYPE_INDEX 0x58494d50u   /* "PMIX" */
#define MP_TYPE_PTLEAF 0x54504d50u  /* "PMPT": page-table leaf */
#define MP_TYPE_PTNODE 0x4e504d50u  /* "PMPN": page-table node */
#define MP_PT_ENTRY_SIZE 16u        /* leaf entry {pgno u32, crc u32, txn u64} */
#define MP_PT_LEVELS 8              /* 2^32 pids: 4 levels at 1 KiB pages; room to spare */
/* leaf entry pgno values below 2 are not pages (pages 0-1 are the roots) */
#define MP_PT_FREE 0u               /* the pid is free */
#define MP_PT_ZERO 1u               /* allocated, never written: reads as zeros */

/* root field offsets */
#define MP_R_MAGIC 0
#define MP_R_VERSION 8
#define MP_R_PAGESIZE 12
#define MP_R_CRC 16
#define MP_R_FLAGS 20
#define MP_R_TXN 24
/* Largest transaction id a root may carry (see verify_root). */
#define MP_TXN_MAX (UINT64_MAX / 2)
/* Open clears a root slot that holds no valid older root with this byte
 * (why not zero: see mp_recover in commit.c). */
#define MP_CLEARED_BYTE 0xFF
#define MP_R_PAGECOUNT 32
#define MP_R_USERROOT 40
#define MP_R_HEIGHT 48
#define MP_R_PT_HEIGHT 52           /* page-table levels above the leaves */
#define MP_R_PT_PIDS 56             /* pid limit: every pid is below it */
#define MP_R_PT_COUNT 64            /* allocated protected pages */
#define MP_R_PT_TOP 72              /* {pgno u32, crc u32} of the top page-table page */
#define MP_R_PT_TREEPIDS 80         /* pids the page-table tree covers */
#define MP_R_PT_NDELTA 88           /* page-table entries carried in the root */
#define MP_R_FM_NCARRY 92           /* free-map entries carried in the root */
#define MP_R_RESERVED 96            /* bytes [96, 128) are reserved, zero */
#define MP_PT_DELTA_SIZE 24u        /* {pid u64, pgno u32, crc u32, txn u64}, from the page's end */
#define MP_PT_DELTA_MAX 64u         /* most entries a root carries */
#define MP_FM_CARRY_SIZE 8u         /* u64 page << 2 | state, before the page-table entries */
#define MP_FM_CARRY_MAX 128u        /* most free-map entries a root carries */

/* How many entries of `size` bytes fit in a root page after its first
 * `used` bytes, at most cap (the carried entries, page-table and free-map). */
static inline uint64_t mp_root_room(uint32_t P, uint64_t used, uint32_t size, uint64_t cap)
{
    uint64_t room = P > used ? (P - used) / size : 0;
    return room < cap ? room : cap;
}

/* metadata header field offsets */
#define MP_H_TYPE 0
#define MP_H_CRC 4
#define MP_H_TXN 8
#define MP_H_LEVEL 16
#define MP_H_INDEX 20
#define MP_H_RESERVED 24            /* bytes [24, 32) are reserved, zero */

/* bitmap states, 2 bits per page */
enum { ST_FREE = 0, ST_REGULAR = 1, ST_SYSTEM = 2, ST_PENDING = 3 };

/* Files grow in multiples of this many bytes (the largest page size, and a
 * multiple of every OS page size we run on), so mappings stay aligned. */
#define MP_GROW_UNIT ((uint64_t)65536)
/* Largest growth step in bytes: growth is geometric (a quarter of the file)
 * but bounded so one step never reserves absurd amounts of disk. */
#define MP_GROW_MAX_STEP ((uint64_t)1 << 30)

/* ---- little-endian field access --------------------------------------- */

static inline uint32_t mp_ld32(const unsigned char *p) {
    uint32_t v; memcpy(&v, p, 4); return v;
}
static inline uint64_t mp_ld64(const unsigned char *p) {
    uint64_t v; memcpy(&v, p, 8); return v;
}
static inline void mp_st32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void mp_st64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }

/* Whether v is among the n values of list (short lists, error paths). */
static inline int mp_u32_in(const uint32_t *list, uint64_t n, uint32_t v) {
    for (uint64_t i = 0; i < n; i++)
        if (list[i] == v)
            return 1;
    return 0;
}

/* Whether v is among the n values of list (short lists: carried entries). */
static inline int mp_u64_in(const uint64_t *list, uint64_t n, uint64_t v) {
    for (uint64_t i = 0; i < n; i++)
        if (list[i] == v)
            return 1;
    return 0;
}

/* ---- error.c: errors (the bottom: every other file uses it) ------------
 * Messages name what failed and why, never the API function (the caller,
 * or the Lua binding, adds that). */

/* Set the pager's message (mp_errmsg) and return code. */
mp_err mp_fail(mp_pager *p, mp_err code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The one way to fill an mp_error (NULL: nothing): code, sys_errno and the
 * message "path: what" (": strerror(sys_errno)" added when nonzero). */
mp_err mp_set_error(mp_error *err, mp_err code, int sys_errno, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
mp_err mp_err_from_errno(int e);
/* snprintf for messages: truncation is acceptable, never an overflow */
void mp_msg(char *dst, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- format.c: encoding of metadata pages and roots --------------------
 * Every byte of a metadata page or root is written and read through these
 * (and the field offsets above); docs/FORMAT.md is the reference. */

int mp_all_zero(const unsigned char *b, size_t n);

/* A metadata page: zeros, then the header {type, txn, level, index};
 * sealed (its CRC put in the header, returned) once its body is written. */
void mp_meta_init(unsigned char *page, uint32_t P, uint32_t type, uint64_t txn, uint32_t level,
                  uint64_t index);
uint32_t mp_meta_seal(unsigned char *page, uint32_t P);
/* NULL when a metadata page passes its checks (header, CRC, not newer than
 * root_txn, the CRC its parent records), else why not (open, audit). */
const char *mp_meta_problem(const unsigned char *page, uint32_t P, uint32_t type, uint32_t level,
                            uint64_t index, uint32_t want_crc, uint64_t root_txn);

/* The root's header fields. */
typedef struct mp_rootfields {
    int magic;                         /* got only: the magic is there */
    uint32_t version, page_size;       /* got only (mp_root_init puts them) */
    uint32_t flags;                    /* zero in version 1 */
    uint64_t txn, page_count, user_root;
    uint32_t height;                   /* index levels above the bitmaps */
    uint32_t pt_height;                /* page-table levels above the leaves */
    uint64_t pt_pids, pt_count, pt_tree_pids;
    uint32_t pt_top, pt_top_crc;       /* the top page-table page */
    uint32_t pt_ndelta;                /* page-table entries carried */
    uint32_t fm_ncarry;                /* free-map entries carried */
} mp_rootfields;
/* A root page: zeros, then magic, version and page size. */
void mp_root_init(unsigned char *root, uint32_t P);
void mp_root_put(unsigned char *root, const mp_rootfields *f);
void mp_root_get(const unsigned char *root, mp_rootfields *f);
uint32_t mp_root_seal(unsigned char *root, uint32_t P);
int mp_root_sealed(const unsigned char *root, uint32_t P);   /* its CRC is right */
/* NULL when the header rules that need only the root hold, else why not. */
const char *mp_root_problem(const unsigned char *root, const mp_rootfields *f);
/* Bytes at the end of the root that the page-table entries take (the
 * free-map entries come before them, the top entries end before both). */
uint64_t mp_root_pt_tail(const mp_rootfields *f, uint32_t P);

/* Entries.  {crc, slot}: index-node and root top entries, naming a child
 * bitmap or node slot. */
static inline void mp_put_entry(unsigned char *at, uint32_t crc, unsigned slot) {
    mp_st32(at, crc); mp_st32(at + 4, slot);
}
static inline uint32_t mp_entry_crc(const unsigned char *at) { return mp_ld32(at); }
static inline uint32_t mp_entry_slot(const unsigned char *at) { return mp_ld32(at + 4); }
/* {pgno, crc}: page-table node children and the root's top page-table page. */
static inline void mp_put_ptref(unsigned char *at, uint32_t pgno, uint32_t crc) {
    mp_st32(at, pgno); mp_st32(at + 4, crc);
}
static inline uint32_t mp_ptref_pgno(const unsigned char *at) { return mp_ld32(at); }
static inline uint32_t mp_ptref_crc(const unsigned char *at) { return mp_ld32(at + 4); }
/* Offset of the i-th page-table entry a root carries ({pid u64, entry},
 * from the page's end), and of its i-th free-map entry (u64 page << 2 |
 * state, before the ndelta page-table entries). */
static inline uint64_t mp_delta_off(uint32_t P, uint64_t i) { return P - MP_PT_DELTA_SIZE * (i + 1); }
static inline uint64_t mp_carry_off(uint32_t P, uint64_t ndelta, uint64_t i) {
    return P - MP_PT_DELTA_SIZE * ndelta - MP_FM_CARRY_SIZE * (i + 1);
}
static inline void mp_put_carry(unsigned char *at, uint64_t pgno, unsigned st) { mp_st64(at, pgno << 2 | st); }
static inline uint64_t mp_carry_pgno(const unsigned char *at) { return mp_ld64(at) >> 2; }
static inline unsigned mp_carry_state(const unsigned char *at) { return (unsigned)(mp_ld64(at) & 3); }

/* ---- geometry ---------------------------------------------------------- */

typedef struct mp_geom {
    uint32_t P;       /* page size */
    uint32_t G;       /* pages per group */
    uint32_t E;       /* entries per index node */
    uint32_t K;       /* entries in the root */
    uint32_t lmax;    /* most index levels */
    uint64_t epow[MP_LMAX_LIMIT + 1];  /* E^l */
    uint32_t words;   /* 64-bit words in a bitmap body */
} mp_geom;

int mp_page_size_valid(uint64_t P);
void mp_geom_init(mp_geom *g, uint32_t P);
uint32_t mp_hosted_levels(const mp_geom *g, uint64_t group);
uint64_t mp_group_base(const mp_geom *g, uint64_t group);     /* first page of the reserved run */
uint64_t mp_group_run_end(const mp_geom *g, uint64_t group);  /* one past the reserved run */
uint64_t mp_bitmap_page(const mp_geom *g, uint64_t group, unsigned slot);
uint64_t mp_node_page(const mp_geom *g, unsigned level, uint64_t node, unsigned slot);
uint64_t mp_groups_for(const mp_geom *g, uint64_t page_count);
/* Nodes of each level for ngroups groups: counts[0] = ngroups ... and the
 * height (smallest h with counts[h] <= K). */
uint32_t mp_tree_shape(const mp_geom *g, uint64_t ngroups, uint64_t counts[MP_LMAX_LIMIT + 1]);
/* Smallest page count covering group 0's reserved run, rounded to MP_GROW_UNIT. */
uint64_t mp_min_page_count(const mp_geom *g);
/* Whether a page count is one a file can have (run of the last group covered). */
int mp_page_count_valid(const mp_geom *g, uint64_t page_count);

/* bitmap state helpers (body = the words after the header) */
static inline unsigned mp_st_get(const uint64_t *bm, uint64_t i) {
    return (unsigned)(bm[i >> 5] >> ((i & 31) * 2)) & 3u;
}
static inline void mp_st_set(uint64_t *bm, uint64_t i, unsigned s) {
    unsigned sh = (unsigned)(i & 31) * 2;
    bm[i >> 5] = (bm[i >> 5] & ~((uint64_t)3 << sh)) | ((uint64_t)s << sh);
}
typedef struct mp_counts { uint64_t n[4]; } mp_counts;   /* per state */
/* Count states of pages [from, to) of a bitmap body. */
void mp_count_states(const uint64_t *bm, uint64_t from, uint64_t to, mp_counts *out);

/* ---- in-memory state --------------------------------------------------- */

typedef struct mp_group {
    uint32_t free;     /* 00 pages below the page count, in the working bitmap */
    uint32_t regular;  /* 01 pages */
    uint32_t crc;      /* CRC of the durable (or last written) version */
    uint32_t hint;     /* no free page below this index */
    uint8_t dslot;     /* slot the durable root references */
    uint8_t dirty;     /* changed in this transaction (on the undo list) */
    uint8_t write;     /* only during commit: this commit writes slot dslot ^ 1
                        * (else its changes ride in the root as carried entries) */
} mp_group;

typedef struct mp_node {
    uint32_t crc;
    uint8_t dslot;
    uint8_t dirty;     /* only during commit */
} mp_node;

/* Page table (ptable.c).  In memory: one entry per pid. */
typedef struct mp_ptent {
    uint32_t pgno;     /* MP_PT_FREE, MP_PT_ZERO, or the page holding the content */
    uint32_t crc;      /* CRC32C of that page (set at commit) */
    uint64_t txn;      /* transaction that last changed the entry; d_txn + 1
                        * while the open transaction has changed it */
} mp_ptent;
/* (format.c) A page-table entry on disk, in a leaf or after the pid of an
 * entry the root carries; a free pid is all zeros, whatever its txn. */
static inline void mp_put_ptent(unsigned char *at, const mp_ptent *e) {
    int used = e->pgno != MP_PT_FREE;
    mp_st32(at, e->pgno);
    mp_st32(at + 4, used ? e->crc : 0);
    mp_st64(at + 8, used ? e->txn : 0);
}
static inline mp_ptent mp_get_ptent(const unsigned char *at) {
    return (mp_ptent){ mp_ld32(at), mp_ld32(at + 4), mp_ld64(at + 8) };
}

typedef struct mp_ptnode {    /* a page-table page (leaf or node) */
    uint32_t pgno, crc;       /* durable */
    uint32_t npgno, ncrc;     /* written by the commit in progress */
    uint8_t dirty;            /* only during commit */
} mp_ptnode;

typedef struct mp_ptundo {
    uint64_t pid;
    mp_ptent old;
} mp_ptundo;

typedef struct mp_undo {   /* a group's counters before its first change in a transaction */
    uint32_t group, free, regular, hint, crc;
} mp_undo;

/* Hierarchical bitset over groups: bit g set when group g has a free page.
 * Three levels of 64-bit words give O(1) "first set bit" for 2^18 words. */
typedef struct mp_hbits {
    uint64_t *lv[3];
    uint64_t nbits;
} mp_hbits;

struct mp_pager {
    /* file */
    int fd;
    int readonly;
    char *path;
    mp_geom geom;
    unsigned char *map;        /* base of the reservation; page n at map + n*P */
    uint64_t reserve_bytes;
    uint64_t mapped_bytes;     /* mapped prefix of the reservation */
    uint64_t file_bytes;       /* size on disk (blocks reserved) */
    uint64_t opt_max_bytes;    /* mp_options.max_bytes */
    uint64_t want_reserve;

    /* last durable state */
    uint64_t d_txn;
    uint64_t d_page_count;
    uint64_t d_user_root;
    uint64_t d_ngroups;
    uint32_t d_height;
    int cur_slot;              /* root slot holding the durable root */

    /* working state (equal to durable outside a transaction) */
    uint64_t page_count;
    uint64_t user_root;
    uint64_t ngroups;
    mp_group *groups;
    uint64_t groups_cap;
    uint64_t *bm;              /* working bitmaps, groups_cap * geom.words words */
    unsigned char *iobuf;      /* one page of scratch for metadata I/O */
    uint32_t height;           /* of the durable tree; recomputed at commit */
    mp_node *nodes[MP_LMAX_LIMIT + 1];  /* levels 1..height */
    uint64_t ncount[MP_LMAX_LIMIT + 1];
    uint64_t ncap[MP_LMAX_LIMIT + 1];
    mp_hbits has_free;
    uint64_t max_groups;

    mp_undo *undo; uint64_t undo_len, undo_cap;       /* dirty groups */
    uint64_t *undo_bm;         /* their bitmaps before the transaction, undo_cap * words */
    uint32_t *pending; uint64_t pending_len, pending_cap;  /* freed in txn */
    /* Pages freed by committed transactions that a live reader's snapshot
     * may reach (state 11 in memory and on disk; readers.c R1), in commit
     * order, each stamped with the transaction that freed it. */
    uint32_t *held; uint64_t *held_txn; uint64_t held_len, held_cap;
    uint64_t d_held_len;       /* held_len outside the commit in progress */
    uint64_t held_release;     /* during a commit: it frees held[0, n) */
    int commit_locked;         /* the commit in progress holds the commit lock */
    uint64_t snap_held;        /* a reader: the snapshot its lock holds (0: none) */
    uint32_t snap_crc;         /* the CRC of the root installed (refresh compares it) */
    unsigned char *snap_root;  /* a reader: a copy of that root (its slot may be rewritten) */
    uint64_t seen_txn[2];      /* a reader: each root slot's txn and CRC fields at */
    uint32_t seen_crc[2];      /* its last look */
    int seen_valid;            /* (refresh compares them before anything else) */

    uint64_t free_total, regular_total, system_total;
    uint64_t d_free_total, d_regular_total, d_system_total;

    /* protected pages (ptable.c) */
    mp_ptent *pt; uint64_t pt_cap;         /* entries for pids < pid_limit */
    uint64_t pid_limit, d_pid_limit;
    uint64_t prot_count, d_prot_count;     /* allocated pids */
    uint64_t prot_pages, d_prot_pages;     /* pids holding a page */
    mp_hbits pid_free;                     /* committed free pids below pid_limit */
    uint64_t *pid_pending; uint64_t pid_pending_len, pid_pending_cap;  /* freed in txn */
    mp_ptundo *ptundo; uint64_t ptundo_len, ptundo_cap;
    mp_ptnode *ptn[MP_PT_LEVELS + 1];      /* level 0 = leaves */
    uint64_t ptn_count[MP_PT_LEVELS + 1], ptn_cap[MP_PT_LEVELS + 1];
    uint32_t pt_height;                    /* durable */
    uint64_t tree_pids, d_tree_pids;       /* pids the tree covers (rest: deltas) */
    uint64_t deltas[MP_PT_DELTA_MAX]; uint64_t ndeltas;  /* pids whose entries the durable root carries */
    uint64_t next_deltas[MP_PT_DELTA_MAX]; uint64_t n_next_deltas;  /* set by a commit */
    int next_flush;                        /* the commit in progress rewrites the tree */
    /* free-map entries carried in the root (commit.c): pages whose state
     * differs from the bitmap page the durable root names for their group */
    uint64_t fm_carry[MP_FM_CARRY_MAX]; uint64_t n_fm_carry;
    uint64_t fm_next[MP_FM_CARRY_MAX]; uint64_t n_fm_next;   /* set by a commit */
    unsigned char *zeros;                  /* one page of zeros (never-written pages) */
    uint64_t *scratch; uint64_t scratch_cap;           /* commit's dirty-node lists */
    int in_txn;                /* explicit transaction open */
    int changed;               /* the working state differs from durable */
    int poisoned;
    int recovered;
    int order_writes;          /* mp_order_writes: the next commit issues a
                                * barrier before it writes anything */
    uint64_t barriers, commits;
    char errmsg[512];
};


/* osfile.c */
mp_err mp_os_reserve(mp_pager *p, uint64_t want, uint64_t at_least, mp_error *err);
mp_err mp_os_map_to(mp_pager *p, uint64_t bytes);
mp_err mp_os_grow_file(mp_pager *p, uint64_t from, uint64_t to);
int mp_os_barrier(mp_pager *p);   /* 0 or errno */
void mp_os_unmap(mp_pager *p);
/* Whole-page metadata I/O: 0 or an errno value. */
int mp_os_read_page(const mp_pager *p, uint64_t pgno, unsigned char *buf);
int mp_os_write_page(mp_pager *p, uint64_t pgno, const unsigned char *buf);
/* The same on any descriptor (mp_copy's new file), each after the test
 * hook: n bytes at off; disk blocks for [from, to); fdatasync.  0 or an
 * errno value. */
int mp_os_write_at(int fd, uint64_t off, const void *buf, size_t n);
int mp_os_allocate_fd(int fd, uint64_t from, uint64_t to);
int mp_os_sync_fd(int fd);
/* fsync of the directory holding path (a new file's name durable). */
int mp_os_sync_dir(const char *path);
uint64_t mp_os_default_reserve(uint32_t P, uint64_t max_bytes);

/* readers.c: every call is one or a few non-blocking fcntl calls on the
 * pager's descriptor; 0 or an errno value. */
int mp_rd_hold(int fd, uint64_t txn);          /* a reader holds snapshot txn */
int mp_rd_drop(int fd, uint64_t txn);          /* ... no longer */
int mp_rd_commit_busy(int fd, int *busy);      /* a writer holds the commit lock */
int mp_rd_commit_lock(int fd, int on);         /* the writer takes / drops it */
/* The oldest snapshot held below `below` by another descriptor (0: none). */
int mp_rd_oldest(int fd, uint64_t below, uint64_t *oldest);
/* The distinct snapshots held, ascending (own: this descriptor's, 0 for
 * none): the first cap in out, all counted. */
int mp_rd_list(int fd, uint64_t own, uint64_t *out, size_t cap, uint64_t *n);

/* fsm.c */
static inline unsigned char *mp_page(const mp_pager *p, uint64_t pgno) {
    return p->map + pgno * p->geom.P;
}
/* The working bitmaps live in memory, one contiguous block of `words`
 * 64-bit words per group (not in the mapping: faulting scattered metadata
 * pages through the mapping pulled in the kernel's read-around of up to
 * megabytes each, and scattered words cost TLB misses).  Disk slots are
 * read with pread at open and written with pwrite at commit. */
static inline uint64_t *mp_working_bitmap(const mp_pager *p, uint64_t g) {
    return p->bm + g * p->geom.words;
}
static inline uint32_t mp_group_pages(const mp_pager *p, uint64_t g) {
    uint64_t first = g * p->geom.G, n = p->page_count - first;
    return (uint32_t)(n < p->geom.G ? n : p->geom.G);
}
mp_err mp_fsm_init(mp_pager *p);                  /* after groups are loaded */
void mp_fsm_free_all(mp_pager *p);
mp_err mp_fsm_ensure_groups(mp_pager *p, uint64_t n);
mp_err mp_fsm_alloc(mp_pager *p, mp_pgno *out);
mp_err mp_fsm_unalloc(mp_pager *p, mp_pgno id);   /* undo an alloc of this txn */
mp_err mp_fsm_state(const mp_pager *p, mp_pgno id, unsigned *st);
mp_err mp_fsm_mark_free(mp_pager *p, mp_pgno id);
void mp_fsm_unmark_free(mp_pager *p, mp_pgno id);
mp_err mp_fsm_settle(mp_pager *p, uint64_t txn, int hold, uint64_t release);
void mp_fsm_settled(mp_pager *p);
void mp_fsm_held_rollback(mp_pager *p);
mp_err mp_fsm_grow(mp_pager *p, uint64_t need_free);
void mp_fsm_touch(mp_pager *p, uint64_t g);
int mp_fsm_next_regular(const mp_pager *p, uint64_t from, uint64_t *out);
void mp_hbits_set(mp_hbits *h, uint64_t i, int on);
void mp_fsm_init_bitmap(mp_pager *p, uint64_t g);
mp_err mp_fsm_reserve_undo(mp_pager *p, uint64_t extra);

mp_err mp_fsm_alloc_system(mp_pager *p, mp_pgno *out);
/* Room for undo_n group touches and pending_n releases, so that the calls
 * that follow cannot fail half-way. */
mp_err mp_fsm_reserve(mp_pager *p, uint64_t undo_n, uint64_t pending_n);
mp_err mp_fsm_release_system(mp_pager *p, mp_pgno id);
/* open: verify the free-space map a root names (top entries, index nodes,
 * bitmaps, carried entries) into ld; install makes it the pager's. */
typedef struct mp_fsmload {     /* a verified map, before it becomes the pager's */
    uint64_t page_count, ngroups;
    uint32_t height;
    mp_group *groups;
    uint64_t *bm;               /* the bitmaps with the carried entries applied */
    mp_node *nodes[MP_LMAX_LIMIT + 1];
    uint64_t ncount[MP_LMAX_LIMIT + 1];
    uint64_t carry[MP_FM_CARRY_MAX], ncarry;   /* pages of the carried entries */
    uint64_t extra_system;      /* system pages outside the reserved runs */
} mp_fsmload;
int mp_fsm_load(mp_pager *p, const unsigned char *root, const mp_rootfields *f, mp_fsmload *ld,
                char *why, size_t wl);
void mp_fsm_install(mp_pager *p, mp_fsmload *ld);
void mp_fsmload_free(mp_fsmload *ld);
mp_err mp_hbits_init(mp_hbits *h, uint64_t nbits);
mp_err mp_hbits_grow(mp_hbits *h, uint64_t nbits);
void mp_hbits_free(mp_hbits *h);
uint64_t mp_hbits_first(const mp_hbits *h);

/* ptable.c */
typedef struct mp_ptload {      /* a verified table, before it becomes the pager's */
    mp_ptent *pt;
    uint64_t pid_limit, count, pages, tree_pids;
    uint64_t deltas[MP_PT_DELTA_MAX], ndeltas;
    uint32_t height;
    mp_ptnode *ptn[MP_PT_LEVELS + 1];
    uint64_t ptn_count[MP_PT_LEVELS + 1];
} mp_ptload;
/* The working table's changes under mp_alloc_protected, mp_free_protected
 * and the writes (pager.c checks the arguments and auto-commits): take the
 * lowest free pid (it reads as zeros); free an allocated pid; give pid a
 * page of its own in this transaction (T1), copying its content unless
 * `whole` (then *out is NULL: the caller writes all of page *pgno). */
mp_err mp_pt_alloc(mp_pager *p, mp_pgno *out);
mp_err mp_pt_free(mp_pager *p, mp_pgno pid);
mp_err mp_pt_cow(mp_pager *p, mp_pgno pid, int whole, unsigned char **out, mp_pgno *pgno);
/* Entries a page-table leaf holds (fewer in MP_TEST_FANOUT builds). */
uint64_t mp_pt_leaf_cap(const mp_geom *g);
void mp_pt_free_all(mp_pager *p);
mp_err mp_pt_commit_prepare(mp_pager *p, uint64_t txn);   /* before the bitmaps */
/* The page-table fields of the root this commit writes into f, and the
 * entries it carries at the end of root. */
void mp_pt_put_root(const mp_pager *p, unsigned char *root, mp_rootfields *f);
void mp_pt_committed(mp_pager *p);
void mp_pt_rollback(mp_pager *p);
/* open: verify the page table a root names; on success the pager's
 * in-memory table is replaced.  refs collects every page it references
 * (node pages and contents) for the bitmap cross-check. */
int mp_pt_load(mp_pager *p, const unsigned char *root, const mp_rootfields *f,
               mp_ptload *ld, uint64_t **refs, uint64_t *nrefs, char *why, size_t wl);
void mp_pt_install(mp_pager *p, mp_ptload *ld);
void mp_ptload_free(mp_ptload *ld);
mp_err mp_pt_init_free(mp_pager *p);
int mp_pt_changed(const mp_pager *p);

/* commit.c */
mp_err mp_txn_commit(mp_pager *p);
void mp_txn_rollback(mp_pager *p);
mp_err mp_write_initial(mp_pager *p);

/* recover.c */
mp_err mp_recover(mp_pager *p, mp_error *err);
mp_err mp_reader_refresh(mp_pager *p, mp_error *err);

#endif /* MP_INTERNAL_H */
