/*
 * lua_binding.c -- what the binding's object files share about a Pager
 * userdata (lua_binding.h).
 *
 * Owns: the error conventions (mpl_fail, mpl_pushfail and the misuse
 * messages for page ids and pids), the Pager accessors used by every
 * object type, and the per-pager registry of viewed pages ("View
 * validity" in lua_binding.h).  Uses lua_util.h, lua_testhook.h and the
 * core; lua_view.c, lua_txn.c, lua_span.c and lua_pager.c use it.
 *
 * Error conventions (docs/API.md, introduction):
 *  - environment failures (file missing or bad, lock held, I/O, disk full,
 *    poisoned pager...) return nil, message, code; code is mp_errname();
 *  - misuse raises through mpl_argerror (luaL_argerror that always finds
 *    the function name), so the message names the function:
 *    "bad argument #1 to 'free' (page 5 is not allocated)", or for the
 *    object itself "calling 'alloc' on bad self (pager is read-only)".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "lua.h"
#include "lauxlib.h"

#include "mappedpages.h"
#include "lua_binding.h"

/* ---- errors and accessors --------------------------------------------- */

int mpl_is_misuse(mp_err e)
{
    switch (e) {
    case MP_EINVAL: case MP_EREADONLY: case MP_ERANGE: case MP_ERESERVED:
    case MP_ENOTALLOC: case MP_EDUP: case MP_ETXN:
        return 1;
    default:
        return 0;
    }
}

int mpl_fail(lua_State *L, mpl_pager *pg, mp_err e, int arg)
{
    /* The core's messages never name the function (csrc/error.c): the
     * binding does, like luaL_argerror, for misuse and failures alike. */
    char buf[512];
    const char *msg = (pg->p != NULL) ? mp_errmsg(pg->p) : NULL;
    const char *name;
    if (msg == NULL || *msg == '\0')
        msg = mp_strerror(e);
    if (mpl_is_misuse(e))
        return mpl_argerror(L, arg, msg);
    snprintf(buf, sizeof buf, "%s", msg);   /* before any Lua call */
    /* The failed call may have rolled back (an auto-commit that failed, or
     * the open transaction): views of pages that vanished must die, and
     * writers of a transaction the core no longer has.  No Lua call before
     * this. */
    if (pg->p != NULL) {
        if (pg->txopen && !mp_in_txn(pg->p))
            pg->txopen = 0;
        if (pg->txopen) {
            pg->txfreed = 1;        /* sweep at commit, see mpl_freed */
            pg->epoch++;
        } else {
            mpl_reg_sweep(pg);
        }
    }
    name = mpl_funcname(L, NULL);
    lua_pushnil(L);
    if (name != NULL)
        lua_pushfstring(L, "%s: %s", name, buf);
    else
        lua_pushstring(L, buf);
    lua_pushstring(L, mp_errname(e));
    return 3;
}

void mpl_freed(mpl_pager *pg, mp_pgno key)
{
    if (pg->txopen)
        pg->txfreed = 1;
    else
        mpl_reg_bump(pg, key);
    pg->epoch++;
}

mpl_pager *mpl_topager(lua_State *L, int idx)
{
    return (mpl_pager *)mpl_checkudata(L, idx, MPL_PAGER_MT);
}

mpl_pager *mpl_checkpager(lua_State *L, int idx)
{
    mpl_pager *pg = mpl_topager(L, idx);
    mpl_check_not_in_hook(L);
    if (pg->p == NULL)
        mpl_argerror(L, idx, "attempt to use a closed pager");
    return pg;
}

mp_pgno mpl_checkpgno(lua_State *L, int arg, const mpl_pager *pg)
{
    lua_Integer id = mpl_checkinteger(L, arg);
    uint64_t count = mp_page_count(pg->p);
    if (id < 0 || (uint64_t)id >= count)
        mpl_argerror(L, arg, lua_pushfstring(L,
            "page %I is out of range (the file has %I pages)",
            id, mpl_u64_to_integer(count)));
    return (mp_pgno)id;
}

int mpl_pushfail(lua_State *L, mp_err e)
{
    lua_pushnil(L);
    lua_pushstring(L, mp_strerror(e));
    lua_pushstring(L, mp_errname(e));
    return 3;
}

mp_pgno mpl_checkpid(lua_State *L, int arg)
{
    lua_Integer pid = mpl_checkinteger(L, arg);
    if (pid < 0)
        mpl_argerror(L, arg, lua_pushfstring(L,
            "protected page %I is out of range (pids are non-negative)",
            pid));
    return (mp_pgno)pid;
}

int mpl_pid_error(lua_State *L, int arg, const mpl_pager *pg, mp_pgno pid,
                  mp_err e)
{
    lua_Integer n = mpl_u64_to_integer(pid);
    if (e == MP_ERANGE) {
        mp_info i;
        mp_get_info(pg->p, &i);
        if (i.pid_limit == 0)
            return mpl_argerror(L, arg, lua_pushfstring(L,
                "protected page %I is out of range (no protected page was "
                "ever allocated)", n));
        return mpl_argerror(L, arg, lua_pushfstring(L,
            "protected page %I is out of range (pids are below %I)",
            n, mpl_u64_to_integer(i.pid_limit)));
    }
    return mpl_argerror(L, arg, lua_pushfstring(L,
        "protected page %I is not allocated", n));
}

int mpl_pgno_error(lua_State *L, int arg, const mpl_pager *pg, mp_pgno id,
                   mp_err e)
{
    lua_Integer n = mpl_u64_to_integer(id);
    switch (e) {
    case MP_ERANGE:
        return mpl_argerror(L, arg, lua_pushfstring(L,
            "page %I is out of range (the file has %I pages)",
            n, mpl_u64_to_integer(mp_page_count(pg->p))));
    case MP_ERESERVED:
        return mpl_argerror(L, arg, lua_pushfstring(L,
            "page %I is reserved for the file's own structures", n));
    default:
        return mpl_argerror(L, arg, lua_pushfstring(L,
            "page %I is not allocated", n));
    }
}

/* ---- registry --------------------------------------------------------- */

#define REG_MIN 16

static size_t reg_hash(mp_pgno id, size_t mask)
{
    return (size_t)((id * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & mask;
}

mpl_entry *mpl_reg_find(const mpl_pager *pg, mp_pgno id)
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
int mpl_reg_acquire(mpl_pager *pg, mp_pgno id, uint64_t *gen)
{
    mpl_entry *e = mpl_reg_find(pg, id);
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
void mpl_reg_release(mpl_pager *pg, mp_pgno id)
{
    mpl_entry *e = mpl_reg_find(pg, id);
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

void mpl_reg_bump(mpl_pager *pg, mp_pgno key)
{
    mpl_entry *e = mpl_reg_find(pg, key);
    if (e != NULL)
        e->gen = ++pg->gencount;
}

/* Is the page or pid behind registry key `key` allocated? */
int mpl_reg_allocated(const mpl_pager *pg, mp_pgno key)
{
    if (MPL_IS_PKEY(key))
        return mp_check_protected(pg->p, key & ~MPL_PKEY(0)) == MP_OK;
    return mp_check_page(pg->p, key) == MP_OK;
}

void mpl_reg_sweep(mpl_pager *pg)
{
    size_t i;
    pg->epoch++;
    if (pg->p == NULL)
        return;
    for (i = 0; i < pg->regcap; i++)
        if (pg->reg[i].refs != 0 && !mpl_reg_allocated(pg, pg->reg[i].id))
            pg->reg[i].gen = ++pg->gencount;
}

void mpl_reg_free(mpl_pager *pg)
{
    free(pg->reg);
    pg->reg = NULL;
    pg->regcap = 0;
    pg->regcount = 0;
}
