/*
 * lua_view.c -- the View type (a regular or protected page seen from Lua)
 * and the Writer type (a protected page being written).
 *
 * Owns: pager:page(id), pager:protected(pid), pager:write_protected(pid),
 * every View and Writer method (windows, view:sub, included).  The
 * registry that makes a view of a freed page die even when the id is
 * allocated again is lua_binding.c's (see "View validity", "Protected
 * pages" and "Windows" in lua_binding.h).
 *
 * Regular page data is read and written in place in the mapping
 * (mp_page_ptr); the only copies are the strings read() and unpack()
 * return.  Protected data is resolved again at every access
 * (mp_protected_ptr / mp_protected_write_ptr, both O(1)): the core moves a
 * protected page to a fresh physical page when it is written
 * (copy-on-write), so no pointer to it is kept across calls.
 *
 * Writers
 *  - Made outside a transaction, a writer is private: write_protected
 *    copies the current content into a buffer boxed in a userdata (user
 *    value 2, so nothing is malloc'd across a raising call), reads and
 *    writes go to the buffer, and every write, fill and pack (through the
 *    writer or a window of it) widens the span [lo, hi) of the buffer the
 *    writer changed.  writer:commit() commits "my changed bytes over the
 *    current content": the page's content as it is at the commit, with
 *    [lo, hi) taken from the buffer, composed in a scratch userdata and
 *    handed to mp_write_protected (the buffer itself when the span is the
 *    whole page; the current content unchanged when nothing was written).
 *    So two private writers that write disjoint byte ranges of one page
 *    (two objects sharing a page) both keep their changes, whatever the
 *    order of their commits.  It is one span, from the lowest to the
 *    highest byte written: bytes inside it that the writer did not write
 *    are committed as its buffer has them (its snapshot).  The
 *    commit is one durable transaction, or, if a transaction was begun
 *    since the writer was made, part of that transaction (whose own copy
 *    is then the current content).  A failed commit (nil, msg, code)
 *    leaves the writer private, alive and unchanged: commit again or
 *    discard.  discard(), <close> and __gc without commit drop the
 *    buffer.  The private buffer does not follow the pid: freeing the pid
 *    does not kill the writer, but its commit raises (the pid was freed
 *    since the writer was made, even if it was allocated again since:
 *    registry generation).
 *  - Made inside a transaction, a writer writes the transaction's own copy
 *    of the page (mp_protected_write_ptr at every access; the first call
 *    in the transaction copies the page).  Its changes belong to the
 *    transaction: tx:commit() keeps them, tx:rollback() drops them.
 *    writer:commit() and writer:discard() only end the writer (true): the
 *    transaction decides.  It dies with its transaction, and like a view
 *    when its pid is freed.
 *  - After commit, discard, <close> or the end of its transaction, any use
 *    of a writer raises ("attempt to use a dead writer (committed)").
 *
 * Windows.  view:sub(off, len) makes a window: an object of the view's own
 * type (View or Writer, so it has every method, commit and discard
 * included, which act on its writer) showing bytes [off, off + len) of it.
 * Internally it is the root view + a base offset (a window of a window
 * adds the offsets), so an access is the root's access at base + off,
 * bounds-checked against the window's length; messages speak of the
 * window ("offset 41 is out of range (window of 40 bytes)").  A window
 * dies with its root; its own <close> and __gc end only itself.
 *
 * Hot path.  view:unpack(0, "<i8") must stay within 2x of string.unpack:
 *  - the type check compares the metatable with upvalue 1 instead of
 *    looking the name up in the registry (luaL_checkudata);
 *  - liveness is "view and root alive, pager open and root checked in the
 *    current epoch" (view_fast); the full check (registry lookup +
 *    mp_check_page) runs once per epoch;
 *  - nothing is allocated but the results.
 *
 * Finalizers.  Pushing a string (or converting a number argument to one)
 * may run a GC step, hence any finalizer, and a user's finalizer may close
 * the pager (unmapping the page) or free the page.  So every method checks
 * the view again after its last argument conversion, right before touching
 * the page, and touches it no more after a Lua allocation; the pack engine
 * (lua_pack.c) keeps the same rule inside pack/unpack.
 */
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "mappedpages.h"
#include "lua_binding.h"
#include "lua_pack.h"

/* ---- accessors -------------------------------------------------------- */

static int view_is_writer(const mpl_view *v)
{
    return v->kind == MPL_KIND_WRITER_PRIVATE || v->kind == MPL_KIND_WRITER_TXN;
}

/* A window (view:sub) rather than a page view or writer itself. */
static int is_window(const mpl_view *v)
{
    return v->root != v;
}

/* The registry key of a view. */
static mp_pgno view_key(const mpl_view *v)
{
    return v->kind == MPL_KIND_REGULAR ? v->id : MPL_PKEY(v->id);
}

/* Type-only accessor: self must be a View (a Writer for the Writer's
 * functions), compared with the metatable in upvalue 1: every View and
 * Writer function is registered with its type's metatable. */
static mpl_view *toview(lua_State *L)
{
    mpl_view *v = (mpl_view *)lua_touserdata(L, 1);
    const char *tname = MPL_VIEW_MT;
    if (v != NULL && lua_getmetatable(L, 1)) {
        int same = lua_rawequal(L, -1, lua_upvalueindex(1));
        lua_pop(L, 1);
        if (same)
            return v;
    }
    if (lua_getfield(L, lua_upvalueindex(1), "__name") == LUA_TSTRING)
        tname = lua_tostring(L, -1);
    mpl_typeerror(L, 1, tname);
    return NULL;
}

/* Kill a view for good: a root drops its registry reference (a writer's
 * buffer is dropped by the callers that have the Lua state: drop_box); a
 * window only ends itself, never its root. */
static void view_kill(mpl_view *v, int state)
{
    if (is_window(v)) {
        v->state = state;
        return;
    }
    if (v->state == MPL_VIEW_ALIVE && v->pg != NULL && v->pg->p != NULL)
        mpl_reg_release(v->pg, view_key(v));
    v->state = state;
    if (view_is_writer(v))
        v->data = NULL;
}

/* Let the collector have a dead writer's buffer; v (at index 1) is the
 * writer or a window of it.  Allocates nothing. */
static void drop_box(lua_State *L, const mpl_view *v)
{
    if (!is_window(v)) {
        lua_pushnil(L);
        lua_setiuservalue(L, 1, 2);
        return;
    }
    lua_getiuservalue(L, 1, 1);     /* the root writer */
    lua_pushnil(L);
    lua_setiuservalue(L, -2, 2);
    lua_pop(L, 1);
}

/* Full validity check of a root view or writer (see lua_binding.h); kills
 * a stale view and a writer whose transaction ended. */
static int root_valid(mpl_view *v)
{
    mpl_pager *pg = v->pg;
    const mpl_entry *e;
    int ok;
    if (v->state != MPL_VIEW_ALIVE || pg == NULL || pg->p == NULL)
        return 0;
    if (v->kind == MPL_KIND_WRITER_PRIVATE)
        return 1;                   /* its own buffer; commit checks the pid */
    if (v->kind == MPL_KIND_WRITER_TXN
        && (!pg->txopen || pg->txseq != v->txseq)) {
        view_kill(v, MPL_VIEW_TXNDONE);
        return 0;
    }
    if (v->epoch == pg->epoch)
        return 1;
    e = mpl_reg_find(pg, view_key(v));
    ok = e != NULL && e->gen == v->gen;
    if (!ok) {
        view_kill(v, MPL_VIEW_STALE);
        return 0;
    }
    /* Not allocated under the same generation: freed by the open
     * transaction, whose rollback would bring the page back.  Raise, but
     * stay registered. */
    if (!mpl_reg_allocated(pg, view_key(v)))
        return 0;
    v->epoch = pg->epoch;
    return 1;
}

/* A view, writer or window is valid while it and its root are (a window's
 * root is kept alive by its user value 1, so the pointer is good). */
static inline int view_valid(mpl_view *v)
{
    return v->state == MPL_VIEW_ALIVE && root_valid(v->root);
}

static int view_dead(lua_State *L, const mpl_view *v)
{
    const char *why;
    int writer;
    if (is_window(v)) {
        if (v->state == MPL_VIEW_CLOSED)
            return mpl_argerror(L, 1, "attempt to use a dead window (it was "
                                "closed)");
        if (v->state != MPL_VIEW_ALIVE)
            return mpl_argerror(L, 1, "attempt to use a dead window");
        v = v->root;                /* dead with its root, for its reason */
    }
    writer = view_is_writer(v);
    if (v->pg == NULL || v->state == MPL_VIEW_UNINIT)
        why = writer ? "attempt to use a dead writer"
                     : "attempt to use a dead view";
    else if (v->state == MPL_VIEW_COMMITTED)
        why = "attempt to use a dead writer (committed)";
    else if (v->state == MPL_VIEW_DISCARDED)
        why = "attempt to use a dead writer (discarded)";
    else if (v->pg->p == NULL)
        why = writer ? "attempt to use a dead writer (its pager is closed)"
                     : "attempt to use a dead view (its pager is closed)";
    else if (v->state == MPL_VIEW_CLOSED)
        why = "attempt to use a dead view (it was closed)";
    else if (v->state == MPL_VIEW_TXNDONE)
        why = "attempt to use a dead writer (its transaction ended)";
    else if (v->state == MPL_VIEW_ALIVE)     /* see root_valid */
        why = lua_pushfstring(L, "attempt to use a %s of %spage %I, which "
                              "the open transaction freed",
                              writer ? "writer" : "view",
                              v->kind == MPL_KIND_REGULAR ? "" : "protected ",
                              (lua_Integer)v->id);
    else if (v->kind == MPL_KIND_REGULAR)
        why = lua_pushfstring(L, "attempt to use a dead view (page %I was "
                              "freed or rolled back since the view was made)",
                              (lua_Integer)v->id);
    else
        why = lua_pushfstring(L, "attempt to use a dead %s (protected page "
                              "%I was freed or rolled back since the %s was "
                              "made)", writer ? "writer" : "view",
                              (lua_Integer)v->id, writer ? "writer" : "view");
    return mpl_argerror(L, 1, why);
}

/* The hot path's test: v is alive and so is its root, a page view,
 * protected view or transaction's writer checked in the current epoch
 * (the writer's transaction still open: what root_valid asks first), or
 * a private writer (root_valid needs only its pager open).  For
 * a page view root == v (one more load than testing v alone); a window of
 * one costs the same. */
static inline int view_fast(const mpl_view *v)
{
    const mpl_view *r = v->root;
    const mpl_pager *pg = r->pg;
    return v->state == MPL_VIEW_ALIVE && r->state == MPL_VIEW_ALIVE
        && pg->p != NULL
        && (r->kind == MPL_KIND_WRITER_PRIVATE     /* its own buffer */
            || (r->epoch == pg->epoch
                && (r->kind <= MPL_KIND_PROTECTED
                    || (r->kind == MPL_KIND_WRITER_TXN && pg->txopen
                        && pg->txseq == r->txseq))));
}

/* Checked accessor: a live view or raise. */
static mpl_view *checkview(lua_State *L)
{
    mpl_view *v = toview(L);
    if (view_fast(v) && !mpl_in_barrier_hook)
        return v;
    mpl_check_not_in_hook(L);
    if (!view_fast(v) && !view_valid(v))
        view_dead(L, v);
    return v;
}

/* Check liveness again (after a call that may have run finalizers; cheap
 * when nothing happened). */
static void recheck(lua_State *L, mpl_view *v)
{
    mpl_check_not_in_hook(L);
    if (!view_fast(v) && !view_valid(v))
        view_dead(L, v);
}

/* Mutating methods of a protected view raise at once. */
static void checkmutable(lua_State *L, const mpl_view *v)
{
    if (v->kind == MPL_KIND_PROTECTED)
        mpl_argerror(L, 1, "protected view is read-only: use "
                     "pager:write_protected");
}

static void checkwritable(lua_State *L, const mpl_view *v)
{
    if (v->pg->readonly)
        mpl_argerror(L, 1, "pager is read-only");
}

/* The transaction's own copy of a WRITER_TXN's page.  mp_protected_write_ptr
 * returns the same page for the rest of the transaction (lua_binding.h,
 * mappedpages.h) and the mapping never moves (the address space is
 * reserved at open), so the pointer is remembered in the root until
 * something that could change the answer happens; each of those ends the
 * transaction (commit, rollback, a commit that failed) or changes the
 * epoch: freeing the pid (free_protected), a failed mutation (mpl_fail:
 * every failure that poisons the pager is an I/O error, not a misuse) and
 * close.  While none has happened, the call would return this same page:
 * the pid is still allocated, the pager neither poisoned nor read-only. */
static unsigned char *txn_page(lua_State *L, mpl_view *v)
{
    mpl_view *r = v->root;
    mpl_pager *pg = r->pg;
    void *d = NULL;
    mp_err e;
    if (r->txdata != NULL && r->txdata_epoch == pg->epoch && pg->txopen
        && pg->txseq == r->txseq)
        return r->txdata;
    r->txdata = NULL;
    e = mp_protected_write_ptr(pg->p, r->id, &d);
    if (e != MP_OK || d == NULL) {
        const char *msg = mp_errmsg(pg->p);
        mpl_argerror(L, 1, lua_pushfstring(L,
            "cannot write protected page %I: %s", (lua_Integer)r->id,
            msg != NULL && *msg != '\0' ? msg : mp_strerror(e)));
    }
    r->txdata = (unsigned char *)d;
    r->txdata_epoch = pg->epoch;
    return (unsigned char *)d;
}

/* The bytes a view reads (its byte 0: a window's is base bytes into the
 * page), resolved now: call after the method's last argument conversion,
 * use before its next Lua allocation.  Raises if the view died
 * meanwhile. */
static const unsigned char *view_rdata(lua_State *L, mpl_view *v)
{
    const unsigned char *d;
    recheck(L, v);
    switch (v->kind) {
    case MPL_KIND_PROTECTED:
        d = (const unsigned char *)mp_protected_ptr(v->pg->p, v->id);
        if (d == NULL) {             /* cannot happen after recheck */
            view_kill(v->root, MPL_VIEW_STALE);
            view_dead(L, v);
            return NULL;
        }
        return d + v->base;
    case MPL_KIND_WRITER_TXN:
        return txn_page(L, v) + v->base;
    default:
        return v->root->data + v->base;
    }
}

/* The bytes a view writes, resolved now (same rules as view_rdata); raises
 * for a protected view and a regular view of a read-only pager. */
static unsigned char *view_wdata(lua_State *L, mpl_view *v)
{
    recheck(L, v);
    switch (v->kind) {
    case MPL_KIND_REGULAR:
        checkwritable(L, v);
        return v->root->data + v->base;
    case MPL_KIND_WRITER_PRIVATE:
        return v->root->data + v->base;
    case MPL_KIND_WRITER_TXN:
        return txn_page(L, v) + v->base;
    default:
        checkmutable(L, v);
        return NULL;
    }
}

/* After a write of bytes [off, end) of view v: a private writer widens
 * its changed span (what its commit takes from the buffer). */
static void view_changed(mpl_view *v, size_t off, size_t end)
{
    mpl_view *r = v->root;
    if (r->kind != MPL_KIND_WRITER_PRIVATE || off >= end)
        return;
    off += v->base;
    end += v->base;
    if (off < r->lo)
        r->lo = off;
    if (end > r->hi)
        r->hi = end;
}

/* A 0-based offset into the view: 0 <= off <= size. */
static size_t checkoff(lua_State *L, int arg, const mpl_view *v,
                       lua_Integer off)
{
    if (off < 0 || (lua_Unsigned)off > (lua_Unsigned)v->size)
        mpl_argerror(L, arg, lua_pushfstring(L, is_window(v)
            ? "offset %I is out of range (window of %I bytes)"
            : "offset %I is out of range (page size %I)",
            off, (lua_Integer)v->size));
    return (size_t)off;
}

/* A length fitting in [off, size). */
static size_t checklen(lua_State *L, int arg, const mpl_view *v, size_t off,
                       lua_Integer len)
{
    if (len < 0 || (lua_Unsigned)len > (lua_Unsigned)(v->size - off))
        mpl_argerror(L, arg, lua_pushfstring(L,
            "length %I is out of range (%I bytes from offset %I to the end "
            "of the %s)", len, (lua_Integer)(v->size - off),
            (lua_Integer)off, is_window(v) ? "window" : "page"));
    return (size_t)len;
}

/* ---- constructors ----------------------------------------------------- */

/* Push a dead View or Writer of pager (at index 1) with nuv user values;
 * the pager is user value 1. */
static mpl_view *newview(lua_State *L, const char *tname, int kind, int nuv)
{
    mpl_view *v = (mpl_view *)lua_newuserdatauv(L, sizeof *v, nuv);
    memset(v, 0, sizeof *v);
    v->root = v;
    v->state = MPL_VIEW_UNINIT;
    v->kind = kind;
    luaL_setmetatable(L, tname);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    return v;
}

/* Make dead view v alive on key (registry reference); 0, or pushes
 * nil, msg, "nomem" and returns 3. */
static int view_start(lua_State *L, mpl_pager *pg, mpl_view *v, mp_pgno id)
{
    uint64_t gen;
    if (mpl_reg_acquire(pg, v->kind == MPL_KIND_REGULAR ? id : MPL_PKEY(id),
                    &gen) != 0)
        return mpl_pushfail(L, MP_ENOMEM);
    v->pg = pg;
    v->id = id;
    v->gen = gen;
    v->epoch = pg->epoch;
    v->size = pg->page_size;
    v->lo = pg->page_size;          /* nothing changed yet */
    v->hi = 0;
    v->state = MPL_VIEW_ALIVE;
    return 0;
}

/* pager:page(id) -> view of an allocated regular page (raises for a free,
 * reserved or out-of-range id) | nil, msg, "nomem". */
int mpl_pager_page(lua_State *L)
{
    mpl_pager *pg = mpl_checkpager(L, 1);
    mp_pgno id = mpl_checkpgno(L, 2, pg);
    mp_err e = mp_check_page(pg->p, id);
    mpl_view *v;
    if (e != MP_OK)
        return mpl_pgno_error(L, 2, pg, id, e);
    /* Dead object first, resource second. */
    v = newview(L, MPL_VIEW_MT, MPL_KIND_REGULAR, 1);
    /* The allocation may have run finalizers: check again. */
    pg = mpl_checkpager(L, 1);
    e = mp_check_page(pg->p, id);
    if (e != MP_OK)
        return mpl_pgno_error(L, 2, pg, id, e);
    if (view_start(L, pg, v, id) != 0)
        return 3;
    v->data = (unsigned char *)mp_page_ptr(pg->p, id);
    return 1;
}

/* pager:protected(pid) -> read-only view of an allocated protected page,
 * showing at each access its committed content (inside a transaction:
 * the transaction's own) | nil, msg, "nomem".  Raises for a pid that is
 * not allocated. */
int mpl_pager_protected(lua_State *L)
{
    mpl_pager *pg = mpl_checkpager(L, 1);
    mp_pgno pid = mpl_checkpid(L, 2);
    mp_err e = mp_check_protected(pg->p, pid);
    mpl_view *v;
    if (e != MP_OK)
        return mpl_pid_error(L, 2, pg, pid, e);
    v = newview(L, MPL_VIEW_MT, MPL_KIND_PROTECTED, 1);
    pg = mpl_checkpager(L, 1);
    e = mp_check_protected(pg->p, pid);
    if (e != MP_OK)
        return mpl_pid_error(L, 2, pg, pid, e);
    return view_start(L, pg, v, pid) != 0 ? 3 : 1;
}

/* pager:write_protected(pid) -> writer starting as a copy of pid's current
 * content | nil, msg, code.  Outside a transaction the writer is private
 * (its own buffer; writer:commit() makes the bytes it changed durable over
 * the page's content then); inside one it writes the transaction's copy of
 * the page.  Raises for a pid that is not
 * allocated and on a read-only pager. */
int mpl_pager_write_protected(lua_State *L)
{
    mpl_pager *pg = mpl_checkpager(L, 1);
    mp_pgno pid = mpl_checkpid(L, 2);
    unsigned char *box = NULL;
    mpl_view *v;
    mp_err e;
    if (pg->readonly)
        return mpl_argerror(L, 1, "pager is read-only");
    e = mp_check_protected(pg->p, pid);
    if (e != MP_OK)
        return mpl_pid_error(L, 2, pg, pid, e);
    v = newview(L, MPL_WRITER_MT, MPL_KIND_WRITER_PRIVATE, 2);
    /* Allocate what a private writer needs, then check everything again
     * with no Lua allocation after the last check (a finalizer may close
     * the pager, free the pid, or begin or end a transaction). */
    for (;;) {
        pg = mpl_checkpager(L, 1);
        e = mp_check_protected(pg->p, pid);
        if (e != MP_OK)
            return mpl_pid_error(L, 2, pg, pid, e);
        if (pg->txopen || box != NULL)
            break;
        box = (unsigned char *)lua_newuserdatauv(L, pg->page_size, 0);
        lua_setiuservalue(L, -2, 2);
    }
    if (pg->txopen) {
        void *d = NULL;
        e = mp_protected_write_ptr(pg->p, pid, &d);   /* copy-on-write */
        if (e != MP_OK)
            return mpl_fail(L, pg, e, 2);
        if (box != NULL) {
            lua_pushnil(L);                           /* not needed */
            lua_setiuservalue(L, -2, 2);
        }
        v->kind = MPL_KIND_WRITER_TXN;
        v->txseq = pg->txseq;
    } else {
        const void *src = mp_protected_ptr(pg->p, pid);
        if (src == NULL)                              /* checked above */
            return mpl_pid_error(L, 2, pg, pid, MP_ENOTALLOC);
        memcpy(box, src, pg->page_size);
        v->data = box;
    }
    return view_start(L, pg, v, pid) != 0 ? 3 : 1;
}

/* ---- View and Writer methods ----------------------------------------- */

/* #view -> bytes it shows: the page size, or a window's length */
static int view_len(lua_State *L)
{
    mpl_view *v = checkview(L);
    lua_pushinteger(L, (lua_Integer)v->size);
    return 1;
}

/* view:id() -> page id (the pid for protected views and writers) */
static int view_id(lua_State *L)
{
    mpl_view *v = checkview(L);
    lua_pushinteger(L, (lua_Integer)v->id);
    return 1;
}

/* view:read([off [, len]]) -> string of len bytes from off (defaults: 0,
 * to the end of the view). */
static int view_read(lua_State *L)
{
    mpl_view *v = checkview(L);
    size_t off = checkoff(L, 2, v, mpl_optinteger(L, 2, 0));
    size_t len = lua_isnoneornil(L, 3)
        ? v->size - off : checklen(L, 3, v, off, mpl_checkinteger(L, 3));
    const unsigned char *d = view_rdata(L, v);
    lua_pushlstring(L, (const char *)d + off, len);  /* copies first */
    return 1;
}

/* view:write(off, s) -> view.  Writes the bytes of s at off; the whole of
 * s must fit in the view. */
static int view_write(lua_State *L)
{
    mpl_view *v = checkview(L);
    size_t off, len;
    const char *s;
    checkmutable(L, v);
    off = checkoff(L, 2, v, mpl_checkinteger(L, 2));
    s = mpl_checklstring(L, 3, &len);
    if (len > v->size - off)
        mpl_argerror(L, 3, lua_pushfstring(L,
            "%I bytes do not fit at offset %I of a %I-byte %s",
            (lua_Integer)len, (lua_Integer)off, (lua_Integer)v->size,
            is_window(v) ? "window" : "page"));
    memcpy(view_wdata(L, v) + off, s, len);
    view_changed(v, off, off + len);
    lua_settop(L, 1);
    return 1;
}

/* view:fill(byte [, off [, len]]) -> view.  Sets len bytes from off
 * (defaults: 0, to the end of the view) to byte (0..255). */
static int view_fill(lua_State *L)
{
    mpl_view *v = checkview(L);
    lua_Integer byte;
    size_t off, len;
    checkmutable(L, v);
    byte = mpl_checkinteger(L, 2);
    off = checkoff(L, 3, v, mpl_optinteger(L, 3, 0));
    len = lua_isnoneornil(L, 4)
        ? v->size - off : checklen(L, 4, v, off, mpl_checkinteger(L, 4));
    mpl_argcheck(L, byte >= 0 && byte <= 255, 2,
                  "byte must be an integer from 0 to 255");
    memset(view_wdata(L, v) + off, (int)byte, len);
    view_changed(v, off, off + len);
    lua_settop(L, 1);
    return 1;
}

/* view:pack(off, fmt, ...) -> next offset.  string.pack in place: packs
 * the values per fmt at the 0-based off; nothing is written unless all of
 * it fits in the view and every value is valid. */
static int view_pack(lua_State *L)
{
    mpl_view *v = checkview(L);
    lua_Integer off, next;
    const char *fmt;
    size_t fmtlen;
    unsigned char *d;
    checkmutable(L, v);
    off = mpl_checkinteger(L, 2);
    fmt = mpl_checklstring(L, 3, &fmtlen);
    d = view_wdata(L, v);      /* lua_tolstring may have converted a number */
    next = mp_lua_pack(L, &v->pg->fmtcache, d, v->size, off, fmt, fmtlen, 4,
                       is_window(v));
    view_changed(v, (size_t)off, (size_t)next);   /* mp_lua_pack checked off */
    lua_pushinteger(L, next);
    return 1;
}

/* view:pack_rows(off, fmt, n, ...) -> next offset: n rows packed one after
 * another from the 0-based off, row i by fmt with, for each further
 * argument, its i-th element (raw) when it is a table, else the argument
 * itself: one call for a run of records whose fields are in columns (a
 * B-tree node's cells).  Like pack, all or nothing: the rows are packed
 * into a scratch copy of the view (allocated first, as the only Lua
 * allocation), and the page takes the bytes only when every row packed;
 * an error names the failing value by its place on the stack (argument
 * numbers past the call's own). */
static int view_pack_rows(lua_State *L)
{
    mpl_view *v = checkview(L);
    lua_Integer off, n, pos;
    const char *fmt;
    size_t fmtlen, size;
    int ncols;
    unsigned char *scratch, *d;
    checkmutable(L, v);
    off = mpl_checkinteger(L, 2);
    fmt = mpl_checklstring(L, 3, &fmtlen);
    n = mpl_checkinteger(L, 4);
    mpl_argcheck(L, n >= 0, 4, "row count must be >= 0");
    size = v->size;
    mpl_argcheck(L, off >= 0 && (lua_Unsigned)off <= (lua_Unsigned)size, 2,
                 "offset out of range");
    ncols = lua_gettop(L) - 4;
    scratch = (unsigned char *)lua_newuserdatauv(L, size > 0 ? size : 1, 0);
    lua_insert(L, 5);           /* below the columns, which stay on top */
    pos = mp_lua_pack_rows(L, &v->pg->fmtcache, scratch, size, off, fmt,
                           fmtlen, n, 6, ncols, 2, is_window(v));
    /* every row packed (the page untouched so far): copy them in */
    d = view_wdata(L, v);
    if (pos > off)
        memcpy(d + off, scratch + off, (size_t)(pos - off));
    view_changed(v, (size_t)off, (size_t)pos);
    lua_pushinteger(L, pos);
    return 1;
}

/* view:unpack(off, fmt) -> values..., next offset (string.unpack at the
 * 0-based off, reading the page in place). */
static int view_unpack(lua_State *L)
{
    mpl_view *v = checkview(L);
    lua_Integer off = mpl_checkinteger(L, 2);
    size_t fmtlen;
    const char *fmt = mpl_checklstring(L, 3, &fmtlen);
    const unsigned char *d = view_rdata(L, v);   /* after the conversions */
    return mp_lua_unpack(L, &v->pg->fmtcache, d, v->size, off, fmt, fmtlen,
                         is_window(v));
}

/* view:sub(off [, len]) -> window showing bytes [off, off + len) of the
 * view (len defaults to the rest of it), of the view's type.  A window of
 * a window is made from their common root, at the sum of the offsets. */
static int view_sub(lua_State *L)
{
    mpl_view *v = checkview(L);
    size_t off = checkoff(L, 2, v, mpl_checkinteger(L, 2));
    size_t len = lua_isnoneornil(L, 3)
        ? v->size - off : checklen(L, 3, v, off, mpl_checkinteger(L, 3));
    mpl_view *w, *r;
    /* Dead object first (a root of nothing, which __gc ignores), holding
     * the root object as user value 1. */
    w = (mpl_view *)lua_newuserdatauv(L, sizeof *w, 1);
    memset(w, 0, sizeof *w);
    w->root = w;
    w->state = MPL_VIEW_UNINIT;
    w->kind = v->kind;
    lua_pushvalue(L, lua_upvalueindex(1));      /* self's metatable */
    lua_setmetatable(L, -2);
    if (is_window(v))
        lua_getiuservalue(L, 1, 1);
    else
        lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    /* The allocation may have run finalizers: check again. */
    recheck(L, v);
    r = v->root;
    w->pg = r->pg;
    w->id = r->id;
    w->kind = r->kind;
    w->size = len;
    w->base = v->base + off;
    w->root = r;
    w->state = MPL_VIEW_ALIVE;
    return 1;
}

/* view:alive() -> true while the view, writer or window can be used,
 * false once it is dead.  Never raises (closed pager included). */
static int view_alive(lua_State *L)
{
    mpl_view *v = toview(L);
    lua_pushboolean(L, view_valid(v));
    return 1;
}

/* __close: kill the view early (local v <close> = pager:page(id)); a
 * window's kills only the window. */
static int view_close(lua_State *L)
{
    mpl_view *v = toview(L);
    if (v->state == MPL_VIEW_ALIVE)
        view_kill(v, MPL_VIEW_CLOSED);
    return 0;
}

/* __gc: drop the registry reference (gone already if the pager closed).
 * A writer that was not committed is discarded.  A window only ends. */
static int view_gc(lua_State *L)
{
    mpl_view *v = toview(L);
    view_kill(v, MPL_VIEW_UNINIT);
    return 0;
}

/* tostring(view) -> "mappedpages.View: page 5 (4096 bytes)",
 * "mappedpages.View: protected page 3 (4096 bytes)" or
 * "mappedpages.View (dead)"; a window shows its span of the page:
 * "mappedpages.View: page 5 [16, 56) (40 bytes)", "... [16, 56) (dead)". */
/* Bytes a tostring shows of a live view: enough to recognise a page's
 * header or a record at a glance, short enough for one REPL line. */
#define PREVIEW_BYTES 8

/* Append " | 68 65 6c 6c 6f 00 00 00 ... |hello...|" for the live view v
 * (at index 1) to the string on top of the stack: its first bytes in hex,
 * then as text (dots for what does not print).  Reads the page after every
 * allocation but the buffer's own, which is sized first. */
static void push_preview(lua_State *L, mpl_view *v)
{
    size_t n = v->size < PREVIEW_BYTES ? (size_t)v->size : PREVIEW_BYTES;
    static const char hex[] = "0123456789abcdef";
    luaL_Buffer b;
    /* " |", n x " xx", " ...", " |", n characters, "|" */
    char *out = luaL_buffinitsize(L, &b, 2 + 3 * n + 4 + 2 + n + 1);
    size_t k = 0;
    const unsigned char *d = view_rdata(L, v);
    out[k++] = ' ';
    out[k++] = '|';
    for (size_t i = 0; i < n; i++) {
        out[k++] = ' ';
        out[k++] = hex[d[i] >> 4];
        out[k++] = hex[d[i] & 15];
    }
    if ((size_t)v->size > n) {
        memcpy(out + k, " ...", 4);
        k += 4;
    }
    out[k++] = ' ';
    out[k++] = '|';
    for (size_t i = 0; i < n; i++)
        out[k++] = (d[i] >= 0x20 && d[i] < 0x7f) ? (char)d[i] : '.';
    out[k++] = '|';
    luaL_pushresultsize(&b, k);
    lua_concat(L, 2);
}

static int view_tostring(lua_State *L)
{
    mpl_view *v = toview(L);
    int ok = view_valid(v);
    const char *prot = v->kind == MPL_KIND_PROTECTED ? "protected " : "";
    if (is_window(v)) {
        lua_Integer lo = (lua_Integer)v->base;
        lua_Integer hi = (lua_Integer)(v->base + v->size);
        if (ok)
            lua_pushfstring(L, "mappedpages.View: %spage %I [%I, %I) "
                            "(%I bytes)", prot, (lua_Integer)v->id, lo, hi,
                            (lua_Integer)v->size);
        else
            lua_pushfstring(L, "mappedpages.View: %spage %I [%I, %I) (dead)",
                            prot, (lua_Integer)v->id, lo, hi);
    } else if (ok) {
        lua_pushfstring(L, "mappedpages.View: %spage %I (%I bytes)", prot,
                        (lua_Integer)v->id, (lua_Integer)v->size);
    } else {
        lua_pushliteral(L, "mappedpages.View (dead)");
    }
    if (ok && v->size > 0)
        push_preview(L, v);
    return 1;
}

/* writer:commit() -> true | nil, msg, code.  Private writer: commit the
 * page's current content with the span the writer changed taken from its
 * buffer (mp_write_protected: one durable transaction, or part of the
 * transaction begun since the writer was made), so that another writer's
 * commit of other bytes of the page since this one was made is kept; with
 * nothing changed that is the current content.  Raises if the pid was
 * freed since the writer was made; after a failure the writer stays alive
 * and unchanged.  Writer made in a transaction: ends the writer; its
 * changes are the transaction's already.  Called on a window, it commits
 * the window's writer. */
static int writer_commit(lua_State *L)
{
    mpl_view *v = checkview(L);
    mpl_view *r = v->root;
    if (v->kind == MPL_KIND_WRITER_PRIVATE) {
        const unsigned char *buf = r->data;
        unsigned char *mix = NULL;
        const mpl_entry *ent;
        mpl_pager *pg;
        mp_err e;
        if (r->lo != 0 || r->hi < r->size) {
            /* Some bytes come from the page: compose them in a scratch
             * buffer, so a failed commit leaves the writer as it was. */
            mix = (unsigned char *)lua_newuserdatauv(L, r->size, 0);
            recheck(L, v);          /* finalizers may have run */
        }
        pg = r->pg;
        ent = mpl_reg_find(pg, MPL_PKEY(r->id));
        if (ent == NULL || ent->gen != r->gen)
            return mpl_argerror(L, 1, lua_pushfstring(L,
                "protected page %I was freed since the writer was made",
                (lua_Integer)r->id));
        if (mp_check_protected(pg->p, r->id) != MP_OK)
            return mpl_argerror(L, 1, lua_pushfstring(L,
                "protected page %I is not allocated (the open transaction "
                "freed it)", (lua_Integer)r->id));
        if (mix != NULL) {
            const unsigned char *cur =
                (const unsigned char *)mp_protected_ptr(pg->p, r->id);
            if (cur == NULL)                          /* checked above */
                return mpl_pid_error(L, 1, pg, r->id, MP_ENOTALLOC);
            memcpy(mix, cur, r->size);
            if (r->lo < r->hi)
                memcpy(mix + r->lo, r->data + r->lo, r->hi - r->lo);
            buf = mix;
        }
        e = mp_write_protected(pg->p, r->id, buf);
        if (e != MP_OK)
            return mpl_fail(L, pg, e, 1);
    }
    view_kill(r, MPL_VIEW_COMMITTED);
    drop_box(L, v);
    lua_pushboolean(L, 1);
    return 1;
}

/* writer:discard() -> true.  Drops a private writer's changes; ends a
 * writer made in a transaction (its changes stay the transaction's).
 * Called on a window, it discards the window's writer. */
static int writer_discard(lua_State *L)
{
    mpl_view *v = checkview(L);
    view_kill(v->root, MPL_VIEW_DISCARDED);
    drop_box(L, v);
    lua_pushboolean(L, 1);
    return 1;
}

/* __close: discard unless committed already; never raises.  A window's
 * ends only the window. */
static int writer_close(lua_State *L)
{
    mpl_view *v = toview(L);
    if (v->state != MPL_VIEW_ALIVE)
        return 0;
    if (is_window(v)) {
        view_kill(v, MPL_VIEW_CLOSED);
    } else {
        view_kill(v, MPL_VIEW_DISCARDED);
        drop_box(L, v);
    }
    return 0;
}

/* tostring(writer) -> "mappedpages.Writer: protected page 3 (private)",
 * "... (in transaction)", "... (dead)"; a window shows its span of the
 * page: "mappedpages.Writer: protected page 3 [0, 24) (private)". */
static int writer_tostring(lua_State *L)
{
    mpl_view *v = toview(L);
    const char *st;
    if (v->pg == NULL) {
        lua_pushliteral(L, "mappedpages.Writer (dead)");
        return 1;
    }
    st = !view_valid(v) ? "dead"
         : v->kind == MPL_KIND_WRITER_TXN ? "in transaction" : "private";
    if (is_window(v))
        lua_pushfstring(L, "mappedpages.Writer: protected page %I [%I, %I) "
                        "(%s)", (lua_Integer)v->id, (lua_Integer)v->base,
                        (lua_Integer)(v->base + v->size), st);
    else
        lua_pushfstring(L, "mappedpages.Writer: protected page %I (%s)",
                        (lua_Integer)v->id, st);
    if (view_valid(v) && v->size > 0)
        push_preview(L, v);
    return 1;
}

static const luaL_Reg view_methods[] = {
    {"id", view_id},
    {"read", view_read},
    {"write", view_write},
    {"fill", view_fill},
    {"pack", view_pack},
    {"pack_rows", view_pack_rows},
    {"unpack", view_unpack},
    {"sub", view_sub},
    {"alive", view_alive},
    {NULL, NULL}
};

static const luaL_Reg view_meta[] = {
    {"__len", view_len},
    {"__close", view_close},
    {"__gc", view_gc},
    {"__tostring", view_tostring},
    {NULL, NULL}
};

static const luaL_Reg writer_methods[] = {
    {"id", view_id},
    {"read", view_read},
    {"write", view_write},
    {"fill", view_fill},
    {"pack", view_pack},
    {"pack_rows", view_pack_rows},
    {"unpack", view_unpack},
    {"sub", view_sub},
    {"alive", view_alive},
    {"commit", writer_commit},
    {"discard", writer_discard},
    {NULL, NULL}
};

static const luaL_Reg writer_meta[] = {
    {"__len", view_len},
    {"__close", writer_close},
    {"__gc", view_gc},
    {"__tostring", writer_tostring},
    {NULL, NULL}
};

void mpl_open_view(lua_State *L, int modidx)
{
    mpl_newclass(L, modidx, MPL_VIEW_MT, view_methods, view_meta, 1,
                 "_View_methods");
    mpl_newclass(L, modidx, MPL_WRITER_MT, writer_methods, writer_meta, 1,
                 "_Writer_methods");
}
