/*
 * lua_pager.c -- the mappedpages.core module and the Pager type.
 *
 * Owns: luaopen_mappedpages_core, create/open and their options, crc32c,
 * and every Pager method except page(), protected() and write_protected()
 * (lua_view.c), begin() and in_transaction() (lua_txn.c) and gather() and
 * scatter() (lua_span.c).  The top of the binding: the error conventions
 * and accessors it shares with those files are in lua_binding.c.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "mappedpages.h"
#include "crc32c.h"
#include "lua_binding.h"

/* ---- helpers ---------------------------------------------------------- */

static mpl_pager *checkwritable(lua_State *L, int idx)
{
    mpl_pager *pg = mpl_checkpager(L, idx);
    if (pg->readonly)
        mpl_argerror(L, idx, "pager is read-only");
    return pg;
}

/* ---- options ---------------------------------------------------------- */

/* The option value on the stack top as an integer; *ok = 0 if it is not
 * a number with an integer value. */
static lua_Integer opt_integer(lua_State *L, int *ok)
{
    *ok = 0;
    if (lua_type(L, -1) != LUA_TNUMBER)
        return 0;
    return lua_tointegerx(L, -1, ok);
}

static int opt_error(lua_State *L, int arg, const char *what)
{
    const char *got;
    if (lua_type(L, -1) == LUA_TNUMBER || lua_type(L, -1) == LUA_TBOOLEAN)
        got = luaL_tolstring(L, -1, NULL);
    else
        got = luaL_typename(L, -1);
    return mpl_argerror(L, arg, lua_pushfstring(L, "%s, got %s", what, got));
}

#define PAGE_SIZE_RULE "page_size must be a power of two from 1024 to 65536"

static void get_options(lua_State *L, int arg, mp_options *o, int create)
{
    memset(o, 0, sizeof *o);
    if (lua_isnoneornil(L, arg))
        return;
    mpl_checktype(L, arg, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, arg) != 0) {
        const char *k;
        int ok;
        lua_Integer v;
        if (lua_type(L, -2) != LUA_TSTRING)
            mpl_argerror(L, arg, lua_pushfstring(L,
                "option names are strings, got a %s key",
                luaL_typename(L, -2)));
        k = lua_tostring(L, -2);
        if (create && strcmp(k, "page_size") == 0) {
            v = opt_integer(L, &ok);
            if (!ok || v < (lua_Integer)MP_MIN_PAGE_SIZE
                || v > (lua_Integer)MP_MAX_PAGE_SIZE || (v & (v - 1)) != 0)
                opt_error(L, arg, PAGE_SIZE_RULE);
            o->page_size = (uint32_t)v;
        } else if (strcmp(k, "max_bytes") == 0) {
            v = opt_integer(L, &ok);
            if (!ok || v < 0)
                opt_error(L, arg, "max_bytes must be a non-negative integer");
            o->max_bytes = (uint64_t)v;
        } else if (!create && strcmp(k, "readonly") == 0) {
            if (lua_type(L, -1) != LUA_TBOOLEAN)
                opt_error(L, arg, "readonly must be a boolean");
            o->readonly = lua_toboolean(L, -1);
        } else {
            mpl_argerror(L, arg, lua_pushfstring(L,
                "unknown option '%s' (%s accepts %s)", k,
                create ? "create" : "open",
                create ? "page_size, max_bytes" : "readonly, max_bytes"));
        }
        lua_pop(L, 1);
    }
}

/* ---- module functions ------------------------------------------------- */

static int create_or_open(lua_State *L, int create)
{
    size_t len;
    const char *path = mpl_checklstring(L, 1, &len);
    mp_options o;
    mp_error err;
    mp_pager *p = NULL;
    mpl_pager *pg;
    mp_err e;
    mpl_argcheck(L, strlen(path) == len, 1, "path contains a zero byte");
    get_options(L, 2, &o, create);
    mpl_check_not_in_hook(L);
    /* The object exists, closed, before the resource does. */
    pg = (mpl_pager *)lua_newuserdatauv(L, sizeof *pg, 0);
    memset(pg, 0, sizeof *pg);
    luaL_setmetatable(L, MPL_PAGER_MT);
    memset(&err, 0, sizeof err);
    e = create ? mp_create(path, &o, &p, &err) : mp_open(path, &o, &p, &err);
    if (e != MP_OK) {
        const char *msg = err.msg[0] != '\0' ? err.msg : mp_strerror(e);
        if (p != NULL)
            mp_close(p);   /* defensive: the API promises *out untouched */
        if (mpl_is_misuse(e))
            return mpl_argerror(L, 2, msg);
        lua_pushnil(L);
        lua_pushstring(L, msg);
        lua_pushstring(L, mp_errname(e));
        return 3;
    }
    pg->p = p;
    pg->readonly = mp_readonly(p) != 0;
    pg->page_size = mp_page_size(p);
    return 1;
}

/* core.create(path [, {page_size =, max_bytes =}]) -> pager | nil, msg, code */
static int l_create(lua_State *L)
{
    return create_or_open(L, 1);
}

/* core.open(path [, {readonly =, max_bytes =}]) -> pager | nil, msg, code */
static int l_open(lua_State *L)
{
    return create_or_open(L, 0);
}

/* core.crc32c(s [, crc]) -> CRC32C of s, continuing from crc (default 0). */
static int l_crc32c(lua_State *L)
{
    size_t len;
    const char *s = mpl_checklstring(L, 1, &len);
    lua_Integer crc = mpl_optinteger(L, 2, 0);
    mpl_argcheck(L, crc >= 0 && crc <= (lua_Integer)UINT32_MAX, 2,
                  "crc must be an integer from 0 to 0xFFFFFFFF");
    lua_pushinteger(L, (lua_Integer)mp_crc32c((uint32_t)crc, s, len));
    return 1;
}

/* ---- Pager methods ---------------------------------------------------- */

/* pager:close() -> true.  Idempotent; also __close and __gc.  Rolls back an
 * open transaction and kills every view and transaction of this pager. */
static int pager_close_impl(lua_State *L, int gc)
{
    mpl_pager *pg = mpl_topager(L, 1);
    mp_pager *p = pg->p;
    if (p != NULL && !gc)
        mpl_check_not_in_hook(L);
    if (p != NULL) {
        pg->p = NULL;
        pg->txopen = 0;
        pg->txfreed = 0;
        pg->epoch++;
        mpl_reg_free(pg);
        mp_close(p);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int pager_close(lua_State *L)
{
    return pager_close_impl(L, 0);
}

/* __gc: the same, allowed inside a barrier hook (an unreachable pager is
 * never the one whose barrier is running). */
static int pager_gc(lua_State *L)
{
    return pager_close_impl(L, 1);
}

/* pager:page_size() -> bytes per page */
static int pager_page_size(lua_State *L)
{
    mpl_pager *pg = mpl_checkpager(L, 1);
    lua_pushinteger(L, (lua_Integer)pg->page_size);
    return 1;
}

/* pager:page_count() -> pages in the file */
static int pager_page_count(lua_State *L)
{
    mpl_pager *pg = mpl_checkpager(L, 1);
    lua_pushinteger(L, mpl_u64_to_integer(mp_page_count(pg->p)));
    return 1;
}

/* pager:free_count() -> pages not in use */
static int pager_free_count(lua_State *L)
{
    mpl_pager *pg = mpl_checkpager(L, 1);
    lua_pushinteger(L, mpl_u64_to_integer(mp_free_count(pg->p)));
    return 1;
}

#define SETINT(name, v) \
    (lua_pushinteger(L, mpl_u64_to_integer(v)), lua_setfield(L, -2, name))
#define SETBOOL(name, v) \
    (lua_pushboolean(L, (v) != 0), lua_setfield(L, -2, name))

/* pager:info() -> table of counters and state (the fields are those of
 * mp_info in mappedpages.h) */
static int pager_info(lua_State *L)
{
    mpl_pager *pg;
    mp_info i;
    lua_createtable(L, 0, 24);
    pg = mpl_checkpager(L, 1);   /* after the allocation */
    mp_get_info(pg->p, &i);
    lua_pushstring(L, i.path != NULL ? i.path : "");  /* i.path first */
    lua_setfield(L, -2, "path");
    SETINT("page_size", i.page_size);
    SETINT("page_count", i.page_count);
    SETINT("free_count", i.free_count);
    SETINT("regular_count", i.regular_count);
    SETINT("protected_count", i.protected_count);
    SETINT("protected_pages", i.protected_pages);
    SETINT("pid_limit", i.pid_limit);
    SETINT("system_count", i.system_count);
    SETINT("pending_count", i.pending_count);
    SETINT("txn", i.txn);
    SETBOOL("in_txn", i.in_txn);
    SETBOOL("readonly", i.readonly);
    SETBOOL("poisoned", i.poisoned);
    SETINT("file_size", i.file_size);
    SETINT("reserved_bytes", i.reserved_bytes);
    SETINT("root_slot", (uint64_t)i.root_slot);
    SETBOOL("recovered", i.recovered);
    SETINT("fsm_height", i.fsm_height);
    SETINT("barriers", i.barriers);
    SETINT("commits", i.commits);
    SETINT("root", i.user_root);
    SETINT("held_count", i.held_count);
    {
        /* (a file system without byte-range locks: no reader fields) */
        uint64_t oldest = 0, n = 0;
        if (mp_readers(pg->p, &oldest, 1, &n) == MP_OK) {
            SETINT("readers", n);
            if (n > 0)
                SETINT("oldest_reader", oldest);
        }
    }
    return 1;
}

/* pager:readers() -> {txn, ...}: the snapshots live readers hold,
 * ascending (readers of one snapshot count once). */
static int pager_readers(lua_State *L)
{
    mpl_pager *pg = mpl_checkpager(L, 1);
    uint64_t n = 0, got = 0, *snaps = NULL;
    size_t cap = 16;
    mp_err e;
    for (;;) {
        /* userdata scratch: freed by the GC even if a push below raises */
        snaps = (uint64_t *)lua_newuserdatauv(L, cap * sizeof *snaps, 0);
        pg = mpl_checkpager(L, 1);   /* after the allocation */
        e = mp_readers(pg->p, snaps, cap, &n);
        if (e != MP_OK)
            return mpl_fail(L, pg, e, 1);
        if (n <= cap)
            break;
        lua_pop(L, 1);
        cap = (size_t)n * 2;
    }
    got = n;
    lua_createtable(L, (int)got, 0);
    for (uint64_t k = 0; k < got; k++) {
        lua_pushinteger(L, mpl_u64_to_integer(snaps[k]));
        lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
    return 1;
}

/* pager:refresh() -> true | nil, msg, code: a reader moves to the newest
 * commit; views then show it, and views of pages it no longer has die. */
static int pager_refresh(lua_State *L)
{
    mpl_pager *pg = mpl_checkpager(L, 1);
    mp_err e = mp_refresh(pg->p);
    if (e != MP_OK)
        return mpl_fail(L, pg, e, 1);
    mpl_reg_sweep(pg);
    lua_pushboolean(L, 1);
    return 1;
}

/* pager:copy(path) -> true | nil, msg, code: the pager's committed state
 * (a reader's snapshot, a writer's last durable state) into a new file;
 * raises inside a transaction. */
static int pager_copy(lua_State *L)
{
    mpl_pager *pg = mpl_checkpager(L, 1);
    size_t len;
    const char *path = mpl_checklstring(L, 2, &len);
    mpl_argcheck(L, strlen(path) == len, 2, "path contains a zero byte");
    mp_err e = mp_copy(pg->p, path, NULL);
    if (e != MP_OK)
        return mpl_fail(L, pg, e, 1);
    lua_pushboolean(L, 1);
    return 1;
}

/* tostring(pager) -> one line for the REPL */
static int pager_tostring(lua_State *L)
{
    mpl_pager *pg = mpl_topager(L, 1);
    mp_info i;
    if (pg->p == NULL) {
        lua_pushliteral(L, "mappedpages.Pager (closed)");
        return 1;
    }
    mp_get_info(pg->p, &i);
    lua_pushfstring(L, "mappedpages.Pager: %s (%d-byte pages, %I pages, "
                    "%I free, txn %I%s%s%s)",
                    i.path != NULL ? i.path : "?", (int)i.page_size,
                    mpl_u64_to_integer(i.page_count), mpl_u64_to_integer(i.free_count),
                    mpl_u64_to_integer(i.txn),
                    i.readonly ? ", read-only" : "",
                    i.in_txn ? ", in transaction" : "",
                    i.poisoned ? ", poisoned" : "");
    return 1;
}

/* pager:alloc() -> id | nil, msg, code */
static int pager_alloc(lua_State *L)
{
    mpl_pager *pg = checkwritable(L, 1);
    mp_pgno id = 0;
    mp_err e = mp_alloc(pg->p, &id);
    if (e != MP_OK)
        return mpl_fail(L, pg, e, 1);
    lua_pushinteger(L, mpl_u64_to_integer(id));
    return 1;
}

/* pager:free(id) -> true | nil, msg, code.  Views of id die. */
static int pager_free(lua_State *L)
{
    mpl_pager *pg = checkwritable(L, 1);
    mp_pgno id = mpl_checkpgno(L, 2, pg);
    mp_err e = mp_free(pg->p, id);
    if (e == MP_ERANGE || e == MP_ERESERVED || e == MP_ENOTALLOC)
        return mpl_pgno_error(L, 2, pg, id, e);
    if (e != MP_OK)
        return mpl_fail(L, pg, e, 2);
    mpl_freed(pg, id);
    lua_pushboolean(L, 1);
    return 1;
}

/* pager:alloc_bulk(n) -> {ids} | nil, msg, code.  All or nothing. */
static int pager_alloc_bulk(lua_State *L)
{
    mpl_pager *pg = checkwritable(L, 1);
    lua_Integer n = mpl_checkinteger(L, 2);
    mp_pgno *ids = NULL;
    mp_err e;
    lua_Integer i;
    mpl_argcheck(L, n >= 0, 2, "count must be non-negative");
    mpl_argcheck(L, n <= INT_MAX && (uint64_t)n <= MP_MAX_PAGES, 2,
                  "count is too large");
    if (n > 0) {
        /* Refuse what cannot fit before sizing a buffer for it. */
        e = mp_alloc_check(pg->p, (uint64_t)n);
        if (e != MP_OK)
            return mpl_fail(L, pg, e, 2);
        ids = (mp_pgno *)lua_newuserdatauv(L, (size_t)n * sizeof *ids, 0);
    }
    lua_createtable(L, (int)n, 0);
    pg = checkwritable(L, 1);    /* the allocations may have run finalizers */
    if (n == 0)
        return 1;
    e = mp_alloc_bulk(pg->p, (size_t)n, ids);
    if (e != MP_OK)
        return mpl_fail(L, pg, e, 2);
    for (i = 0; i < n; i++) {
        lua_pushinteger(L, mpl_u64_to_integer(ids[i]));
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int cmp_pgno(const void *a, const void *b)
{
    mp_pgno x = *(const mp_pgno *)a, y = *(const mp_pgno *)b;
    return (x > y) - (x < y);
}

/* pager:free_bulk({ids}) -> true | nil, msg, code.  All or nothing: an id
 * out of range, reserved, not allocated or listed twice frees nothing and
 * raises. */
static int pager_free_bulk(lua_State *L)
{
    mpl_pager *pg = checkwritable(L, 1);
    size_t n, i;
    mp_pgno *ids;
    uint64_t count;
    mp_err e;
    mpl_checktype(L, 2, LUA_TTABLE);
    n = (size_t)lua_rawlen(L, 2);
    mpl_argcheck(L, n <= MP_MAX_PAGES, 2, "too many ids");
    ids = (mp_pgno *)lua_newuserdatauv(L, (n > 0 ? n : 1) * sizeof *ids, 0);
    for (i = 0; i < n; i++) {
        int isint;
        lua_Integer v;
        lua_rawgeti(L, 2, (lua_Integer)i + 1);
        v = lua_tointegerx(L, -1, &isint);
        if (!isint || lua_type(L, -1) != LUA_TNUMBER)
            mpl_argerror(L, 2, lua_pushfstring(L,
                "element %I is not an integer page id (a %s)",
                (lua_Integer)i + 1, luaL_typename(L, -1)));
        if (v < 0)
            mpl_argerror(L, 2, lua_pushfstring(L,
                "page %I (element %I) is out of range", v, (lua_Integer)i + 1));
        ids[i] = (mp_pgno)v;
        lua_pop(L, 1);
    }
    pg = checkwritable(L, 1);    /* the allocation may have run finalizers */
    count = mp_page_count(pg->p);
    for (i = 0; i < n; i++)
        if (ids[i] >= count)
            mpl_argerror(L, 2, lua_pushfstring(L,
                "page %I (element %I) is out of range (the file has %I pages)",
                mpl_u64_to_integer(ids[i]), (lua_Integer)i + 1,
                mpl_u64_to_integer(count)));
    if (n == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    e = mp_free_bulk(pg->p, n, ids);
    if (e == MP_ERANGE || e == MP_ERESERVED || e == MP_ENOTALLOC) {
        for (i = 0; i < n; i++) {
            mp_err ce = mp_check_page(pg->p, ids[i]);
            if (ce != MP_OK)
                return mpl_pgno_error(L, 2, pg, ids[i], ce);
        }
        return mpl_fail(L, pg, e, 2);
    }
    if (e == MP_EDUP) {
        qsort(ids, n, sizeof *ids, cmp_pgno);   /* our scratch copy */
        for (i = 1; i < n; i++)
            if (ids[i] == ids[i - 1])
                return mpl_argerror(L, 2, lua_pushfstring(L,
                    "page %I is listed twice", mpl_u64_to_integer(ids[i])));
        return mpl_fail(L, pg, e, 2);
    }
    if (e != MP_OK)
        return mpl_fail(L, pg, e, 2);
    if (pg->regcount > 0)
        for (i = 0; i < n; i++)
            mpl_freed(pg, ids[i]);
    if (pg->txopen)
        pg->txfreed = 1;
    pg->epoch++;
    lua_pushboolean(L, 1);
    return 1;
}

/* One step of an id iterator: (pager, last id or nil) -> the next id that
 * next_id finds, or nil. */
static int iter_step(lua_State *L, int (*next_id)(const mp_pager *, mp_pgno, mp_pgno *))
{
    mpl_pager *pg = mpl_checkpager(L, 1);
    mp_pgno from = 0, next;
    if (!lua_isnoneornil(L, 2)) {
        lua_Integer last = mpl_checkinteger(L, 2);
        from = last < 0 ? 0 : (mp_pgno)last + 1;
    }
    if (next_id(pg->p, from, &next))
        lua_pushinteger(L, mpl_u64_to_integer(next));
    else
        lua_pushnil(L);
    return 1;
}

/* Iterator of pager:pages(): (pager, last id or nil) -> next id or nil. */
static int pages_iter(lua_State *L) { return iter_step(L, mp_next_page); }

/* pager:pages() -> iterator over allocated regular page ids, ascending.
 * Freeing pages while iterating is allowed. */
static int pager_pages(lua_State *L)
{
    mpl_checkpager(L, 1);
    lua_pushcfunction(L, pages_iter);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* pager:alloc_protected() -> pid | nil, msg, code.  The new protected
 * page reads as zeros. */
static int pager_alloc_protected(lua_State *L)
{
    mpl_pager *pg = checkwritable(L, 1);
    mp_pgno pid = 0;
    mp_err e = mp_alloc_protected(pg->p, &pid);
    if (e != MP_OK)
        return mpl_fail(L, pg, e, 1);
    lua_pushinteger(L, mpl_u64_to_integer(pid));
    return 1;
}

/* pager:free_protected(pid) -> true | nil, msg, code.  Raises for a pid
 * out of range or not allocated (double free).  Views of pid and writers
 * made in this transaction die; a private writer of pid can no longer
 * commit. */
static int pager_free_protected(lua_State *L)
{
    mpl_pager *pg = checkwritable(L, 1);
    mp_pgno pid = mpl_checkpid(L, 2);
    mp_err e = mp_check_protected(pg->p, pid);
    if (e == MP_OK)
        e = mp_free_protected(pg->p, pid);
    if (e == MP_ERANGE || e == MP_ENOTALLOC)
        return mpl_pid_error(L, 2, pg, pid, e);
    if (e != MP_OK)
        return mpl_fail(L, pg, e, 2);
    mpl_freed(pg, MPL_PKEY(pid));
    lua_pushboolean(L, 1);
    return 1;
}

/* Iterator of pager:protected_pages(): (pager, last pid or nil) -> next
 * pid or nil. */
static int protected_iter(lua_State *L) { return iter_step(L, mp_next_protected); }

/* pager:protected_pages() -> iterator over allocated pids, ascending.
 * Freeing protected pages while iterating is allowed. */
static int pager_protected_pages(lua_State *L)
{
    mpl_checkpager(L, 1);
    lua_pushcfunction(L, protected_iter);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* pager:page_kinds() -> kinds, holders.  kinds: a string with one byte
 * per physical page of the file: 'F' free, 'R' an allocated regular page,
 * 'P' the current content of a protected page, 'S' the file's own
 * structures (headers, roots, free-space map, page table; inside a
 * transaction also the copies protected pages had before it).  holders:
 * {[page] = pid} for every 'P' page.  For pictures of the file
 * (mappedpages.inspect.map); O(pages + protected pages). */
static int pager_page_kinds(lua_State *L)
{
    mpl_pager *pg = mpl_checkpager(L, 1);
    uint64_t n = mp_page_count(pg->p);
    size_t ps;
    const unsigned char *base;
    char *k;
    luaL_Buffer b;
    mp_pgno pid, from = 0;
    int holders;
    if (n > (uint64_t)PTRDIFF_MAX)
        return luaL_error(L, "page_kinds: %I pages do not fit a string", (lua_Integer)n);
    lua_settop(L, 1);
    lua_newtable(L);
    holders = lua_gettop(L);          /* the buffer may push its box above */
    k = luaL_buffinitsize(L, &b, (size_t)n);
    for (uint64_t id = 0; id < n; id++) {
        mp_err e = mp_check_page(pg->p, id);
        k[id] = e == MP_OK ? 'R' : e == MP_ERESERVED ? 'S' : 'F';
    }
    ps = (size_t)mp_page_size(pg->p);
    base = (const unsigned char *)mp_page_ptr(pg->p, 0);
    while (mp_next_protected(pg->p, from, &pid)) {
        /* A pid never written reads from a shared page of zeros outside
         * the file: it holds no page. */
        const unsigned char *d = (const unsigned char *)mp_protected_ptr(pg->p, pid);
        if (d != NULL && d >= base && (uint64_t)(d - base) / ps < n) {
            uint64_t at = (uint64_t)(d - base) / ps;
            if (k[at] == 'S') {
                k[at] = 'P';
                lua_pushinteger(L, mpl_u64_to_integer(pid));
                lua_rawseti(L, holders, mpl_u64_to_integer(at));
            }
        }
        from = pid + 1;
    }
    luaL_pushresultsize(&b, (size_t)n);
    lua_insert(L, -2);
    return 2;
}

/* pager:set_root(n) -> true | nil, msg, code.  n: any integer (stored as
 * 64-bit two's complement). */
static int pager_set_root(lua_State *L)
{
    mpl_pager *pg = checkwritable(L, 1);
    lua_Integer v = mpl_checkinteger(L, 2);
    mp_err e = mp_set_root(pg->p, (uint64_t)v);
    if (e != MP_OK)
        return mpl_fail(L, pg, e, 2);
    lua_pushboolean(L, 1);
    return 1;
}

/* pager:root() -> the user root (0 in a new file) */
static int pager_root(lua_State *L)
{
    mpl_pager *pg = mpl_checkpager(L, 1);
    lua_pushinteger(L, mpl_u64_to_integer(mp_root(pg->p)));
    return 1;
}

/* pager:check() -> true | false, {problem, ...}.  The audit (mp_check_each)
 * keeps going after a problem; each problem is copied into a box (a
 * userdata, so a memory error raised while the list is built leaks
 * nothing) and listed, the first CHECK_LISTED of them one by one. */
#define CHECK_LISTED 256

typedef struct check_box {
    lua_Integer n;                     /* problems found */
    char msg[CHECK_LISTED][256];
} check_box;

static void check_collect(void *ud, const char *problem)
{
    check_box *b = (check_box *)ud;
    if (b->n < CHECK_LISTED)
        snprintf(b->msg[b->n], sizeof b->msg[0], "%s", problem);
    b->n++;
}

static int pager_check(lua_State *L)
{
    mpl_pager *pg = mpl_checkpager(L, 1);
    check_box *b = (check_box *)lua_newuserdatauv(L, sizeof *b, 0);
    b->n = 0;
    mp_err e = mp_check_each(pg->p, check_collect, b);
    if (e == MP_OK) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (e != MP_ECORRUPT)
        return mpl_fail(L, pg, e, 1);
    lua_pushboolean(L, 0);
    lua_Integer listed = b->n < CHECK_LISTED ? b->n : CHECK_LISTED;
    lua_createtable(L, (int)listed + 1, 0);
    for (lua_Integer i = 0; i < listed; i++) {
        lua_pushstring(L, b->msg[i]);
        lua_rawseti(L, -2, i + 1);
    }
    if (b->n > listed) {
        lua_pushfstring(L, "and %I more problems", (LUAI_UACINT)(b->n - listed));
        lua_rawseti(L, -2, listed + 1);
    }
    return 2;
}

/* ---- registration ----------------------------------------------------- */

static const luaL_Reg pager_methods[] = {
    {"close", pager_close},
    {"page_size", pager_page_size},
    {"page_count", pager_page_count},
    {"free_count", pager_free_count},
    {"info", pager_info},
    {"readers", pager_readers},
    {"refresh", pager_refresh},
    {"copy", pager_copy},
    {"alloc", pager_alloc},
    {"free", pager_free},
    {"alloc_bulk", pager_alloc_bulk},
    {"free_bulk", pager_free_bulk},
    {"pages", pager_pages},
    {"page", mpl_pager_page},
    {"gather", mpl_pager_gather},                   /* lua_span.c */
    {"scatter", mpl_pager_scatter},
    {"alloc_protected", pager_alloc_protected},
    {"free_protected", pager_free_protected},
    {"protected_pages", pager_protected_pages},
    {"page_kinds", pager_page_kinds},
    {"protected", mpl_pager_protected},
    {"write_protected", mpl_pager_write_protected},
    {"begin", mpl_pager_begin},
    {"in_transaction", mpl_pager_in_transaction},
    {"set_root", pager_set_root},
    {"root", pager_root},
    {"check", pager_check},
    {NULL, NULL}
};

static const luaL_Reg pager_meta[] = {
    {"__gc", pager_gc},
    {"__close", pager_close},
    {"__tostring", pager_tostring},
    {NULL, NULL}
};

/* core._key_count(x) -> the number of keys of x (raw, as next walks them)
 * when x is a table without a metatable, else nil; never raises: one call
 * instead of a Lua loop over next, for mappedpages.schema_codegen's quick
 * checks (with no metatable, reads are raw: as many non-nil fields read as
 * keys means every key is a field).  Allocates nothing. */
static int l_key_count(lua_State *L)
{
    lua_Integer n = 0;
    if (lua_type(L, 1) != LUA_TTABLE || lua_getmetatable(L, 1)) {
        lua_pushnil(L);
        return 1;
    }
    lua_settop(L, 1);
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        lua_pop(L, 1);                  /* the value */
        n++;
    }
    lua_pushinteger(L, n);
    return 1;
}

/* core._txn_id(pager) -> the id of the pager's last durable transaction
 * (info().txn without the rest: info() asks the kernel about readers, a
 * system call the Lua modules need not pay once per transaction). */
static int l_txn_id(lua_State *L)
{
    mpl_pager *pg = mpl_checkpager(L, 1);
    mp_info i;
    mp_get_info(pg->p, &i);
    lua_pushinteger(L, mpl_u64_to_integer(i.txn));
    return 1;
}

static const luaL_Reg module_funcs[] = {
    {"create", l_create},
    {"open", l_open},
    {"crc32c", l_crc32c},
    {"_inject_fault", mpl_l_inject_fault},          /* lua_testhook.c */
    {"_txn_seq", mpl_l_txn_seq},                    /* lua_txn.c */
    {"_commit_hook", mpl_l_commit_hook},            /* lua_txn.c */
    {"_want_commit_hook", mpl_l_want_commit_hook},  /* lua_txn.c */
    {"_barrier_hook", mpl_l_barrier_hook},          /* lua_testhook.c */
    {"_barrier_hook_error", mpl_l_barrier_hook_error},
    {"_key_count", l_key_count},
    {"_txn_id", l_txn_id},
    {"_search", mpl_l_search},                      /* lua_sorted.c */
    {"_sort", mpl_l_sort},                          /* lua_sorted.c */
    {"_index", mpl_l_index},                        /* lua_sorted.c */
    {NULL, NULL}
};

int luaopen_mappedpages_core(lua_State *L)
{
    luaL_checkversion(L);
    luaL_newlib(L, module_funcs);
    lua_pushliteral(L, MP_VERSION_STRING);
    lua_setfield(L, -2, "VERSION");
    lua_pushinteger(L, (lua_Integer)MP_FORMAT_VERSION);
    lua_setfield(L, -2, "FORMAT_VERSION");
    lua_pushinteger(L, (lua_Integer)MP_MIN_PAGE_SIZE);
    lua_setfield(L, -2, "MIN_PAGE_SIZE");
    lua_pushinteger(L, (lua_Integer)MP_MAX_PAGE_SIZE);
    lua_setfield(L, -2, "MAX_PAGE_SIZE");
    lua_pushinteger(L, (lua_Integer)MP_DEFAULT_PAGE_SIZE);
    lua_setfield(L, -2, "DEFAULT_PAGE_SIZE");
    lua_pushinteger(L, (lua_Integer)MP_MAX_PAGES);
    lua_setfield(L, -2, "MAX_PAGES");
    mpl_newclass(L, -1, MPL_PAGER_MT, pager_methods, pager_meta, 0,
                 "_Pager_methods");
    mpl_open_view(L, -1);
    mpl_open_txn(L, -1);
    mpl_open_sorted(L, -1);
    return 1;
}
