/*
 * lua_view.c -- the View type (a regular page seen from Lua) and the
 * per-pager registry of viewed pages.
 *
 * Owns: pager:page(id), every View method, and the registry that makes a
 * view of a freed page die even when the id is allocated again (see "View
 * validity" in lua_binding.h).
 *
 * Page data is read and written in place in the mapping (mp_page_ptr); the
 * only copies are the strings read() and unpack() return.
 *
 * Hot path.  view:unpack(0, "<i8") must stay within 2x of string.unpack:
 *  - the type check compares the metatable with upvalue 1 instead of
 *    looking the name up in the registry (luaL_checkudata);
 *  - liveness is "pager open and view checked in the current epoch"; the
 *    full check (registry lookup + mp_check_page) runs once per epoch;
 *  - nothing is allocated but the results.
 *
 * Finalizers.  Pushing a string (or converting a number argument to one)
 * may run a GC step, hence any finalizer, and a user's finalizer may close
 * the pager (unmapping the page) or free the page.  So every method checks
 * the view again after its last argument conversion, right before touching
 * the page, and touches it no more after a Lua allocation; the pack engine
 * (lua_pack.c) keeps the same rule inside pack/unpack.
 */
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "mappedpages.h"
#include "lua_binding.h"
#include "lua_pack.h"

/* ---- registry --------------------------------------------------------- */

#define REG_MIN 16

static size_t reg_hash(mp_pgno id, size_t mask)
{
    return (size_t)((id * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & mask;
}

static mpl_entry *reg_find(const mpl_pager *pg, mp_pgno id)
{
    size_t mask, i;
    if (pg->regcap == 0)
        return NULL;
    mask = pg->regcap - 1;
    for (i = reg_hash(id, mask); pg->reg[i].refs != 0; i = (i + 1) & mask)
        if (pg->reg[i].id == id)
            return &pg->reg[i];
    return NULL;
}

/* Insert into a table known to have room (no duplicates). */
static mpl_entry *reg_insert(mpl_entry *tab, size_t cap, mp_pgno id)
{
    size_t mask = cap - 1, i = reg_hash(id, mask);
    while (tab[i].refs != 0)
        i = (i + 1) & mask;
    tab[i].id = id;
    return &tab[i];
}

/* Grow to keep the load at most 1/2.  0 on success, -1 out of memory. */
static int reg_reserve(mpl_pager *pg)
{
    size_t cap, i;
    mpl_entry *tab;
    if ((pg->regcount + 1) * 2 <= pg->regcap)
        return 0;
    cap = pg->regcap ? pg->regcap * 2 : REG_MIN;
    if (cap > SIZE_MAX / sizeof *tab)
        return -1;
    tab = (mpl_entry *)calloc(cap, sizeof *tab);
    if (tab == NULL)
        return -1;
    for (i = 0; i < pg->regcap; i++)
        if (pg->reg[i].refs != 0)
            *reg_insert(tab, cap, pg->reg[i].id) = pg->reg[i];
    free(pg->reg);
    pg->reg = tab;
    pg->regcap = cap;
    return 0;
}

/* Take a reference on page id for a new view: *gen is its generation.
 * 0 on success, -1 out of memory. */
static int reg_acquire(mpl_pager *pg, mp_pgno id, uint64_t *gen)
{
    mpl_entry *e = reg_find(pg, id);
    if (e == NULL) {
        if (reg_reserve(pg) != 0)
            return -1;
        e = reg_insert(pg->reg, pg->regcap, id);
        e->gen = ++pg->gencount;
        e->refs = 0;
        pg->regcount++;
    }
    e->refs++;
    *gen = e->gen;
    return 0;
}

/* Drop a view's reference; the last one removes the entry (backward-shift
 * deletion keeps linear probing correct without tombstones). */
static void reg_release(mpl_pager *pg, mp_pgno id)
{
    mpl_entry *e = reg_find(pg, id);
    size_t mask, i, j;
    if (e == NULL || --e->refs > 0)
        return;
    pg->regcount--;
    mask = pg->regcap - 1;
    i = (size_t)(e - pg->reg);
    j = i;
    for (;;) {
        size_t k;
        pg->reg[i].refs = 0;
        for (;;) {
            j = (j + 1) & mask;
            if (pg->reg[j].refs == 0)
                return;
            k = reg_hash(pg->reg[j].id, mask);
            /* Entry j may move to i unless its home k lies in (i, j]. */
            if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
                continue;
            break;
        }
        pg->reg[i] = pg->reg[j];
        i = j;
    }
}

void mpl_reg_bump(mpl_pager *pg, mp_pgno id)
{
    mpl_entry *e = reg_find(pg, id);
    if (e != NULL)
        e->gen = ++pg->gencount;
}

void mpl_reg_sweep(mpl_pager *pg)
{
    size_t i;
    pg->epoch++;
    if (pg->p == NULL)
        return;
    for (i = 0; i < pg->regcap; i++)
        if (pg->reg[i].refs != 0
            && mp_check_page(pg->p, pg->reg[i].id) != MP_OK)
            pg->reg[i].gen = ++pg->gencount;
}

void mpl_reg_free(mpl_pager *pg)
{
    free(pg->reg);
    pg->reg = NULL;
    pg->regcap = 0;
    pg->regcount = 0;
}

/* ---- accessors -------------------------------------------------------- */

/* Type-only accessor: self must be a View (compared with the metatable in
 * upvalue 1: every View function is registered with it). */
static mpl_view *toview(lua_State *L)
{
    mpl_view *v = (mpl_view *)lua_touserdata(L, 1);
    if (v != NULL && lua_getmetatable(L, 1)) {
        int same = lua_rawequal(L, -1, lua_upvalueindex(1));
        lua_pop(L, 1);
        if (same)
            return v;
    }
    mpl_typeerror(L, 1, MPL_VIEW_MT);
    return NULL;
}

/* Kill a view for good, dropping its registry reference. */
static void view_kill(mpl_view *v, int state)
{
    if (v->state == MPL_VIEW_ALIVE && v->pg != NULL && v->pg->p != NULL)
        reg_release(v->pg, v->id);
    v->state = state;
}

/* Full validity check (see lua_binding.h); kills a stale view. */
static inline int view_valid(mpl_view *v)
{
    mpl_pager *pg = v->pg;
    const mpl_entry *e;
    if (v->state != MPL_VIEW_ALIVE || pg == NULL || pg->p == NULL)
        return 0;
    if (v->epoch == pg->epoch)
        return 1;
    e = reg_find(pg, v->id);
    if (e == NULL || e->gen != v->gen || mp_check_page(pg->p, v->id) != MP_OK) {
        view_kill(v, MPL_VIEW_STALE);
        return 0;
    }
    v->epoch = pg->epoch;
    return 1;
}

static int view_dead(lua_State *L, const mpl_view *v)
{
    const char *why;
    if (v->pg == NULL || v->state == MPL_VIEW_UNINIT)
        why = "attempt to use a dead view";
    else if (v->pg->p == NULL)
        why = "attempt to use a dead view (its pager is closed)";
    else if (v->state == MPL_VIEW_CLOSED)
        why = "attempt to use a dead view (it was closed)";
    else
        why = lua_pushfstring(L, "attempt to use a dead view (page %I was "
                              "freed or rolled back since the view was made)",
                              (lua_Integer)v->id);
    return mpl_argerror(L, 1, why);
}

/* Checked accessor, the hot path: a live view or raise. */
static mpl_view *checkview(lua_State *L)
{
    mpl_view *v = toview(L);
    if (v->state == MPL_VIEW_ALIVE && v->pg->p != NULL
        && (v->epoch == v->pg->epoch || view_valid(v)))
        return v;
    view_dead(L, v);
    return NULL;
}

/* Check liveness again (after a call that may have run finalizers; cheap
 * when nothing happened). */
static void recheck(lua_State *L, mpl_view *v)
{
    if (!view_valid(v))
        view_dead(L, v);
}

static void checkwritable(lua_State *L, const mpl_view *v)
{
    if (v->pg->readonly)
        mpl_argerror(L, 1, "pager is read-only");
}

/* A 0-based offset into the page: 0 <= off <= size. */
static size_t checkoff(lua_State *L, int arg, const mpl_view *v,
                       lua_Integer off)
{
    if (off < 0 || (lua_Unsigned)off > (lua_Unsigned)v->size)
        mpl_argerror(L, arg, lua_pushfstring(L,
            "offset %I is out of range (page size %I)",
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
            "of the page)", len, (lua_Integer)(v->size - off),
            (lua_Integer)off));
    return (size_t)len;
}

/* ---- pager:page ------------------------------------------------------- */

/* pager:page(id) -> view of an allocated regular page (raises for a free,
 * reserved or out-of-range id) | nil, msg, "nomem". */
int mpl_pager_page(lua_State *L)
{
    mpl_pager *pg = mpl_checkpager(L, 1);
    mp_pgno id = mpl_checkpgno(L, 2, pg);
    mp_err e = mp_check_page(pg->p, id);
    mpl_view *v;
    uint64_t gen;
    if (e != MP_OK)
        return mpl_pgno_error(L, 2, pg, id, e);
    /* Dead object first, resource second. */
    v = (mpl_view *)lua_newuserdatauv(L, sizeof *v, 1);
    memset(v, 0, sizeof *v);
    v->state = MPL_VIEW_UNINIT;
    luaL_setmetatable(L, MPL_VIEW_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    /* The allocation may have run finalizers: check again. */
    pg = mpl_checkpager(L, 1);
    e = mp_check_page(pg->p, id);
    if (e != MP_OK)
        return mpl_pgno_error(L, 2, pg, id, e);
    if (reg_acquire(pg, id, &gen) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, mp_strerror(MP_ENOMEM));
        lua_pushstring(L, mp_errname(MP_ENOMEM));
        return 3;
    }
    v->pg = pg;
    v->data = (unsigned char *)mp_page_ptr(pg->p, id);
    v->id = id;
    v->gen = gen;
    v->epoch = pg->epoch;
    v->size = pg->page_size;
    v->state = MPL_VIEW_ALIVE;
    return 1;
}

/* ---- View methods ----------------------------------------------------- */

/* #view -> page size in bytes */
static int view_len(lua_State *L)
{
    mpl_view *v = checkview(L);
    lua_pushinteger(L, (lua_Integer)v->size);
    return 1;
}

/* view:id() -> page id */
static int view_id(lua_State *L)
{
    mpl_view *v = checkview(L);
    lua_pushinteger(L, (lua_Integer)v->id);
    return 1;
}

/* view:read([off [, len]]) -> string of len bytes from off (defaults: 0,
 * to the end of the page). */
static int view_read(lua_State *L)
{
    mpl_view *v = checkview(L);
    size_t off = checkoff(L, 2, v, mpl_optinteger(L, 2, 0));
    size_t len = lua_isnoneornil(L, 3)
        ? v->size - off : checklen(L, 3, v, off, mpl_checkinteger(L, 3));
    recheck(L, v);
    lua_pushlstring(L, (const char *)v->data + off, len);  /* copies first */
    return 1;
}

/* view:write(off, s) -> view.  Writes the bytes of s at off; the whole of
 * s must fit in the page. */
static int view_write(lua_State *L)
{
    mpl_view *v = checkview(L);
    size_t off = checkoff(L, 2, v, mpl_checkinteger(L, 2));
    size_t len;
    const char *s = mpl_checklstring(L, 3, &len);
    if (len > v->size - off)
        mpl_argerror(L, 3, lua_pushfstring(L,
            "%I bytes do not fit at offset %I of a %I-byte page",
            (lua_Integer)len, (lua_Integer)off, (lua_Integer)v->size));
    recheck(L, v);
    checkwritable(L, v);
    memcpy(v->data + off, s, len);
    lua_settop(L, 1);
    return 1;
}

/* view:fill(byte [, off [, len]]) -> view.  Sets len bytes from off
 * (defaults: 0, to the end of the page) to byte (0..255). */
static int view_fill(lua_State *L)
{
    mpl_view *v = checkview(L);
    lua_Integer byte = mpl_checkinteger(L, 2);
    size_t off = checkoff(L, 3, v, mpl_optinteger(L, 3, 0));
    size_t len = lua_isnoneornil(L, 4)
        ? v->size - off : checklen(L, 4, v, off, mpl_checkinteger(L, 4));
    mpl_argcheck(L, byte >= 0 && byte <= 255, 2,
                  "byte must be an integer from 0 to 255");
    recheck(L, v);
    checkwritable(L, v);
    memset(v->data + off, (int)byte, len);
    lua_settop(L, 1);
    return 1;
}

/* view:pack(off, fmt, ...) -> next offset.  string.pack in place: packs
 * the values per fmt at the 0-based off; nothing is written unless all of
 * it fits and every value is valid. */
static int view_pack(lua_State *L)
{
    mpl_view *v = checkview(L);
    lua_Integer off = mpl_checkinteger(L, 2);
    const char *fmt = mpl_checklstring(L, 3, NULL);
    lua_Integer next;
    recheck(L, v);               /* lua_tolstring may have converted a number */
    checkwritable(L, v);
    next = mp_lua_pack(L, v->data, v->size, off, fmt, 4);
    lua_pushinteger(L, next);
    return 1;
}

/* view:unpack(off, fmt) -> values..., next offset (string.unpack at the
 * 0-based off, reading the page in place). */
static int view_unpack(lua_State *L)
{
    mpl_view *v = checkview(L);
    lua_Integer off = mpl_checkinteger(L, 2);
    const char *fmt = mpl_checklstring(L, 3, NULL);
    recheck(L, v);               /* lua_tolstring may have converted a number */
    return mp_lua_unpack(L, v->data, v->size, off, fmt);
}

/* __close: kill the view early (local v <close> = pager:page(id)). */
static int view_close(lua_State *L)
{
    mpl_view *v = toview(L);
    if (v->state == MPL_VIEW_ALIVE)
        view_kill(v, MPL_VIEW_CLOSED);
    return 0;
}

/* __gc: drop the registry reference (gone already if the pager closed). */
static int view_gc(lua_State *L)
{
    mpl_view *v = toview(L);
    view_kill(v, MPL_VIEW_UNINIT);
    return 0;
}

/* tostring(view) -> "mappedpages.View: page 5 (4096 bytes)" or
 * "mappedpages.View (dead)" */
static int view_tostring(lua_State *L)
{
    mpl_view *v = toview(L);
    if (view_valid(v))
        lua_pushfstring(L, "mappedpages.View: page %I (%I bytes)",
                        (lua_Integer)v->id, (lua_Integer)v->size);
    else
        lua_pushliteral(L, "mappedpages.View (dead)");
    return 1;
}

static const luaL_Reg view_methods[] = {
    {"id", view_id},
    {"read", view_read},
    {"write", view_write},
    {"fill", view_fill},
    {"pack", view_pack},
    {"unpack", view_unpack},
    {NULL, NULL}
};

static const luaL_Reg view_meta[] = {
    {"__len", view_len},
    {"__close", view_close},
    {"__gc", view_gc},
    {"__tostring", view_tostring},
    {NULL, NULL}
};

void mpl_open_view(lua_State *L, int modidx)
{
    mpl_newclass(L, modidx, MPL_VIEW_MT, view_methods, view_meta, 1,
                 "_View_methods");
}
