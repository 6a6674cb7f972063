/*
 * lua_binding.h -- shared declarations of the Lua binding (mappedpages.core).
 *
 * The binding is split by object type, like liolib.c keeps one accessor pair
 * per type, over two layers of helpers.  Each file uses only those listed
 * before it (no file calls into one listed after it):
 *   lua_util.c      argument checks and errors that name the function,
 *                   classes (lua_util.h; the Lua API only)
 *   lua_pack.c      the view:pack / view:unpack engine (lua_pack.h; uses
 *                   lua_util.h only)
 *   lua_testhook.c  test-only hooks: core._barrier_hook, _inject_fault,
 *                   the io hook (lua_testhook.h)
 *   lua_binding.c   error conventions (mpl_fail), Pager accessors, page-id
 *                   and pid checking, the per-pager registry of viewed
 *                   pages (this header)
 *   lua_view.c      View and Writer objects (regular pages, protected pages)
 *   lua_txn.c       Transaction objects
 *   lua_span.c      pager:gather and pager:scatter (byte spans over pages)
 *   lua_sorted.c    core._search and core._sort: sorted arrays of byte
 *                   strings (the Lua API and lua_util.h only)
 *   lua_pager.c     the module table, option parsing, the Pager type; it
 *                   calls the entry points of view, txn and span below
 *
 * Object lifetimes
 *  - A Pager userdata (mpl_pager) owns the mp_pager and the view registry.
 *    Closing it (close, __close, __gc: one function) rolls back an open
 *    transaction, frees the registry and sets `p` to NULL.  A closed pager
 *    stays closed.
 *  - Views and transactions hold their pager through user value 1, so the
 *    mpl_pager memory outlives them (also while they are being finalized in
 *    the same cycle as the pager).  Each of their methods checks that it AND
 *    its pager are alive before touching anything.
 *  - Every object is created in the closed/dead state before a resource is
 *    acquired for it, so an error half-way leaves something __gc can handle.
 *
 * Lua allocations may run finalizers, and a user's finalizer may do anything,
 * including closing this pager.  Rule followed everywhere: convert arguments
 * and allocate Lua objects first, then check liveness, then call the core;
 * never touch pager memory or page memory after a Lua allocation without
 * checking again.
 *
 * View validity
 *  A view is valid while its pager is open, its page is an allocated regular
 *  page (mp_check_page) and no committed free has taken the page since the
 *  view was made (even if it was allocated again: the ABA case).  The last
 *  point needs memory: the pager keeps a small open-addressing hash (the
 *  "registry") from viewed page id to {generation, live view count}.  A view
 *  remembers the generation of its page; a view whose generation is
 *  outdated is dead for good.  An auto-commit free/free_bulk gives the freed
 *  ids a new generation at once.  A free inside an explicit transaction
 *  does not: the page stays unallocated (views of it raise) until the
 *  transaction ends, and the core never hands it out again before then; its
 *  commit gives a new generation to every registered page that is not
 *  allocated (txfreed says whether a sweep is needed), and its rollback
 *  restores the page, so its views work again.  A rollback (explicit, or
 *  inside a failed auto-commit) gives a new generation to every registered
 *  page that stopped being allocated.
 *  To keep a page access cheap, the pager also counts "epochs": the epoch
 *  changes whenever any page may have stopped being allocated (free,
 *  free_bulk, free_protected, rollback, a failed mutation, close).  A view
 *  that was fully checked in the current epoch is still valid, so the full
 *  check (hash lookup + mp_check_page) runs at most once per view per epoch.
 *
 * Protected pages
 *  Protected ids (pids) are a separate id space; they share the registry
 *  under keys with the top bit set (MPL_PKEY), and free_protected follows
 *  the generation rules of free above (rollback included).  Four kinds of view share one
 *  struct and one set of methods (mpl_view.kind):
 *   - REGULAR: a regular page, read and written in place (data is stable);
 *   - PROTECTED: read-only; every access re-resolves the content with
 *     mp_protected_ptr (the committed content, or the open transaction's);
 *   - WRITER_PRIVATE (write_protected outside a transaction): a copy of the
 *     content in a boxed buffer (user value 2).  It records the span
 *     [lo, hi) of the buffer that its writes (write, fill, pack, through
 *     the writer or any window of it) changed; writer:commit() hands
 *     mp_write_protected the page's current content with that span taken
 *     from the buffer ("my changed bytes over the current content"), so
 *     private writers of disjoint ranges of one page lose nothing of each
 *     other (one span: from its lowest to its highest written byte).  With
 *     nothing written, a commit commits the current content.  It does not
 *     follow the pid: only commit checks that the pid is allocated and no
 *     committed free took it since the writer was made (registry
 *     generation);
 *   - WRITER_TXN (write_protected inside a transaction): every access calls
 *     mp_protected_write_ptr; alive while that transaction (txseq) is open.
 *  Views are type mappedpages.View (REGULAR, PROTECTED); writers are type
 *  mappedpages.Writer (the same methods plus commit and discard).
 *
 * Windows (view:sub(off, len))
 *  A window is an mpl_view showing bytes [base, base + size) of its root's
 *  page, where the root is the page view or writer it was made from, or
 *  that window's root (windows of windows are flattened: one root, base
 *  offsets added).  It has the type (metatable) and kind of its root, its
 *  own state (ALIVE, CLOSED by <close>, UNINIT before construction and
 *  after __gc) and no registry reference: it is alive while it and its
 *  root are (view_valid), so it dies with its root and never kills it.
 *  User value 1 of a window is its root object (which holds the pager), so
 *  the root's memory outlives the window.  A root has root == itself and
 *  base 0, so every method handles both with the same code, and the hot
 *  path costs one more pointer load.
 */
#ifndef MAPPEDPAGES_LUA_BINDING_H
#define MAPPEDPAGES_LUA_BINDING_H

#include <stddef.h>
#include <stdint.h>

#include "lua.h"
#include "lauxlib.h"

#include "mappedpages.h"
#include "lua_util.h"       /* MPL_*_MT, mpl_argerror, mpl_check*, mpl_newclass */
#include "lua_pack.h"       /* mp_fmtcache */
#include "lua_testhook.h"   /* mpl_check_not_in_hook, mpl_in_barrier_hook */

/* Registry key of protected page pid (page ids and pids are below 2^32). */
#define MPL_PKEY(pid) ((mp_pgno)(pid) | ((mp_pgno)1 << 63))
#define MPL_IS_PKEY(key) (((key) >> 63) != 0)

#if defined(__GNUC__)
#define MPL_EXPORT __attribute__((visibility("default")))
#else
#define MPL_EXPORT
#endif

/* One registry entry: a page that has (or had) live views.  refs == 0 marks
 * an empty slot. */
typedef struct mpl_entry {
    mp_pgno id;
    uint64_t gen;      /* changes when the page is freed or rolled back */
    size_t refs;       /* live views that hold this entry */
} mpl_entry;

/* The Pager userdata. */
typedef struct mpl_pager {
    mp_pager *p;           /* NULL while closed (before open and after close) */
    uint64_t epoch;        /* see "View validity" above */
    uint64_t gencount;     /* last generation handed out */
    uint64_t txseq;        /* sequence number of the last begin() */
    int txopen;            /* the transaction txseq is still open */
    int txfreed;           /* the open transaction freed something: its
                            * commit sweeps the registry */
    uint64_t hookseq;      /* txseq of the transaction whose commit runs the
                            * commit hook (core._want_commit_hook), or 0 */
    int inhook;            /* the commit hook is running: tx:commit() and
                            * tx:rollback() raise */
    int readonly;
    uint32_t page_size;
    mpl_entry *reg;        /* registry: cap slots (0 or a power of two) */
    size_t regcap;
    size_t regcount;
    mp_fmtcache fmtcache;  /* view:pack / view:unpack formats (lua_pack.h);
                            * in the userdata, so it lives as long as any
                            * view of the pager */
} mpl_pager;

/* Reasons a view is dead (besides its pager being closed). */
enum { MPL_VIEW_ALIVE = 0, MPL_VIEW_UNINIT, MPL_VIEW_STALE, MPL_VIEW_CLOSED,
       MPL_VIEW_COMMITTED,   /* writer: writer:commit() */
       MPL_VIEW_DISCARDED,   /* writer: discard, <close> */
       MPL_VIEW_TXNDONE };   /* writer: its transaction ended */

/* Kinds of view (see "Protected pages" above). */
enum { MPL_KIND_REGULAR = 0, MPL_KIND_PROTECTED, MPL_KIND_WRITER_PRIVATE,
       MPL_KIND_WRITER_TXN };

/* The View and Writer userdata (user value 1: its Pager, or for a window
 * its root; a Writer's user value 2: its private buffer while it has
 * one). */
typedef struct mpl_view mpl_view;
struct mpl_view {
    mpl_pager *pg;         /* NULL until constructed */
    unsigned char *data;   /* REGULAR: page address in the mapping (stable);
                            * WRITER_PRIVATE: the boxed buffer; else NULL
                            * (windows: unused, see root) */
    mpl_view *root;        /* itself, or a window's root view or writer */
    mp_pgno id;            /* page id or pid */
    uint64_t gen;          /* registry generation when the view was made */
    uint64_t epoch;        /* pager epoch of the last full check */
    uint64_t txseq;        /* WRITER_TXN: pg->txseq of its transaction */
    size_t size;           /* bytes shown: page size, or window length */
    size_t base;           /* window: page offset of its byte 0; else 0 */
    size_t lo, hi;         /* WRITER_PRIVATE: the changed span [lo, hi) of
                            * the buffer, empty while lo >= hi */
    unsigned char *txdata; /* WRITER_TXN root: the transaction's copy of
                            * the page as mp_protected_write_ptr last gave
                            * it, good while txdata_epoch == pg->epoch and
                            * its transaction is open (see txn_page) */
    uint64_t txdata_epoch;
    int state;             /* MPL_VIEW_*; a root holds a registry ref iff
                            * ALIVE (a window holds none) */
    int kind;              /* MPL_KIND_* (a window: its root's) */
};

/* Transaction states. */
enum { MPL_TX_UNINIT = 0, MPL_TX_ACTIVE, MPL_TX_COMMITTED, MPL_TX_ROLLEDBACK,
       MPL_TX_FAILED };

/* The Transaction userdata (user value 1: its Pager). */
typedef struct mpl_txn {
    mpl_pager *pg;
    uint64_t seq;          /* pg->txseq when begun */
    int state;
} mpl_txn;

/* ---- lua_binding.c -------------------------------------------------- */

/* A uint64 as the Lua integer with the same two's complement bits. */
static inline lua_Integer mpl_u64_to_integer(uint64_t v)
{
    if (v <= (uint64_t)LUA_MAXINTEGER)
        return (lua_Integer)v;
    return -(lua_Integer)(~v) - 1;
}

/* Is e a misuse code (raised, naming the function) rather than an
 * environment failure (nil, msg, code)? */
int mpl_is_misuse(mp_err e);
/* Pager accessors: type only (may be closed) / open pager, else raises
 * "attempt to use a closed pager". */
mpl_pager *mpl_topager(lua_State *L, int idx);
mpl_pager *mpl_checkpager(lua_State *L, int idx);
/* Raise for an id outside [0, page count) or a non-integer id. */
mp_pgno mpl_checkpgno(lua_State *L, int arg, const mpl_pager *pg);
/* Handle a failed core call on an open pager: misuse codes raise (naming
 * the function); environment failures push nil, message, code and return
 * 3.  `arg` is the argument blamed for misuse. */
int mpl_fail(lua_State *L, mpl_pager *pg, mp_err e, int arg);
/* After a successful free of registry key `key` (page id or MPL_PKEY):
 * bump its generation now (auto-commit) or at the commit of the open
 * transaction (see "View validity"). */
void mpl_freed(mpl_pager *pg, mp_pgno key);
/* Raise the misuse error for page id and code e (MP_ERANGE, MP_ERESERVED,
 * MP_ENOTALLOC): "page 5 is not allocated"... */
int mpl_pgno_error(lua_State *L, int arg, const mpl_pager *pg, mp_pgno id,
                   mp_err e);
/* A pid argument: raises for a non-integer or negative one. */
mp_pgno mpl_checkpid(lua_State *L, int arg);
/* Raise the misuse error for pid and code e (MP_ERANGE, MP_ENOTALLOC):
 * "protected page 3 is not allocated"... */
int mpl_pid_error(lua_State *L, int arg, const mpl_pager *pg, mp_pgno pid,
                  mp_err e);
/* Push nil, mp_strerror(e), mp_errname(e) and return 3. */
int mpl_pushfail(lua_State *L, mp_err e);

/* The registry (see "View validity"), keys being page ids or MPL_PKEY(pid).
 * find: the entry of key, or NULL.  acquire: take a reference for a new
 * view, *gen being the key's generation; 0, or -1 out of memory.
 * release: drop a view's reference.  allocated: is the page or pid behind
 * key allocated?  bump: key was freed.  sweep: after a rollback.  free: at
 * close. */
mpl_entry *mpl_reg_find(const mpl_pager *pg, mp_pgno key);
int mpl_reg_acquire(mpl_pager *pg, mp_pgno key, uint64_t *gen);
void mpl_reg_release(mpl_pager *pg, mp_pgno key);
int mpl_reg_allocated(const mpl_pager *pg, mp_pgno key);
void mpl_reg_bump(mpl_pager *pg, mp_pgno key);
void mpl_reg_sweep(mpl_pager *pg);
void mpl_reg_free(mpl_pager *pg);

/* ---- entry points of the object files, for lua_pager.c --------------- */

MPL_EXPORT int luaopen_mappedpages_core(lua_State *L);   /* lua_pager.c */

/* ---- lua_view.c ----------------------------------------------------- */

void mpl_open_view(lua_State *L, int modidx);
/* pager:page(id), pager:protected(pid), pager:write_protected(pid) */
int mpl_pager_page(lua_State *L);
int mpl_pager_protected(lua_State *L);
int mpl_pager_write_protected(lua_State *L);

/* ---- lua_span.c ---------------------------------------------------- */

/* pager:gather(ids, off, len), pager:scatter(ids, off, s) */
int mpl_pager_gather(lua_State *L);
int mpl_pager_scatter(lua_State *L);

/* ---- lua_txn.c ------------------------------------------------------ */

void mpl_open_txn(lua_State *L, int modidx);
/* pager:begin(), pager:in_transaction() */
int mpl_pager_begin(lua_State *L);
int mpl_pager_in_transaction(lua_State *L);
int mpl_l_txn_seq(lua_State *L);                /* core._txn_seq */
int mpl_l_commit_hook(lua_State *L);            /* core._commit_hook */
int mpl_l_want_commit_hook(lua_State *L);       /* core._want_commit_hook */

/* ---- lua_sorted.c --------------------------------------------------- */

int mpl_l_search(lua_State *L);                 /* core._search */
int mpl_l_sort(lua_State *L);                   /* core._sort */
int mpl_l_index(lua_State *L);                  /* core._index */
/* core._strings, _strings_insert and _search_strings (closures sharing
 * the packed copies' metatable), set in the module table at modidx */
void mpl_open_sorted(lua_State *L, int modidx);
int mpl_l_strings(lua_State *L);
int mpl_l_search_strings(lua_State *L);
int mpl_l_strings_insert(lua_State *L);

#endif /* MAPPEDPAGES_LUA_BINDING_H */
