/*
 * lua_span.c -- byte spans over lists of regular pages: pager:gather and
 * pager:scatter.
 *
 * Owns: the two Pager methods that read and write a run of bytes laid over
 * several regular pages, so that a value spanning pages (the heap's large
 * values, a user's own blobs) moves between the mapping and one Lua string
 * without Lua building pieces and concatenating them.
 *
 *   pager:gather(ids, off, len) -> string
 *   pager:scatter(ids, off, s)  -> off + #s
 *
 * `ids` is a sequence of regular page ids (raw access: no metamethods); the
 * pages are taken as one byte string of #ids * page_size bytes, in list
 * order, and [off, off + len) is a span of it (0-based).  Only the pages
 * the span touches are looked at; each must be an allocated regular page
 * (in the open transaction's view: a page it freed is not).  Offsets,
 * lengths and elements are checked before a byte moves: misuse raises,
 * naming the function and the element.
 *
 * Copies.  scatter copies each byte of s once, straight into the mapping.
 * gather copies each byte once when the span's pages lie one after the
 * other in the mapping (consecutive ids: lua_pushlstring straight from the
 * mapping); otherwise it copies the pieces into a luaL_Buffer sized for
 * the whole span, which Lua 5.4 then copies into the string (Lua 5.4 has
 * no public way to fill a new string in place), so twice.
 *
 * Finalizers.  The only Lua allocation after the checks is gather's
 * buffer (and the string itself, made after the bytes are copied); a
 * finalizer run by it may close the pager, free a page or change the
 * list, so gather checks the pager and every element again as it copies.
 */
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "mappedpages.h"
#include "lua_binding.h"

/* Element i (1-based) of the list at index 2: an allocated regular page of
 * pg, or raise naming the element. */
static mp_pgno span_id(lua_State *L, mpl_pager *pg, lua_Integer i)
{
    int isint;
    lua_Integer v;
    mp_err e;
    lua_rawgeti(L, 2, i);
    v = lua_tointegerx(L, -1, &isint);
    if (!isint || lua_type(L, -1) != LUA_TNUMBER)
        mpl_argerror(L, 2, lua_pushfstring(L,
            "element %I is not an integer page id (a %s)", i,
            luaL_typename(L, -1)));
    lua_pop(L, 1);
    if (v < 0)
        mpl_argerror(L, 2, lua_pushfstring(L,
            "page %I (element %I) is out of range", v, i));
    e = mp_check_page(pg->p, (mp_pgno)v);
    if (e != MP_OK)
        mpl_pgno_error(L, 2, pg, (mp_pgno)v, e);
    return (mp_pgno)v;
}

/* Check the list (index 2), the offset (index 3) and the span's length:
 * sets *first and *last, the list positions (1-based) of the span's first
 * and last page (*last < *first for an empty span). */
static size_t span_check(lua_State *L, const mpl_pager *pg, size_t len,
                         int lenarg, lua_Integer *first, lua_Integer *last)
{
    lua_Integer off;
    uint64_t total, P = pg->page_size;
    size_t n;
    mpl_checktype(L, 2, LUA_TTABLE);
    off = mpl_checkinteger(L, 3);
    n = (size_t)lua_rawlen(L, 2);
    mpl_argcheck(L, n <= MP_MAX_PAGES, 2, "too many ids");
    total = (uint64_t)n * P;
    if (off < 0 || (uint64_t)off > total)
        mpl_argerror(L, 3, lua_pushfstring(L,
            "offset %I is out of range (%I pages of %I bytes)", off,
            (lua_Integer)n, (lua_Integer)P));
    if ((uint64_t)len > total - (uint64_t)off)
        mpl_argerror(L, lenarg, lua_pushfstring(L,
            "%I bytes do not fit at offset %I of %I pages of %I bytes",
            (lua_Integer)len, off, (lua_Integer)n, (lua_Integer)P));
    *first = (lua_Integer)((uint64_t)off / P) + 1;
    *last = len == 0 ? *first - 1
                     : (lua_Integer)(((uint64_t)off + len - 1) / P) + 1;
    return (size_t)off;
}

/* pager:gather(ids, off, len) -> the len bytes at off of the pages ids */
int mpl_pager_gather(lua_State *L)
{
    mpl_pager *pg = mpl_checkpager(L, 1);
    lua_Integer ilen = mpl_checkinteger(L, 4);
    lua_Integer first, last, i;
    size_t off, len, P = pg->page_size, pos, left;
    const unsigned char *base = NULL;
    int contiguous = 1;
    luaL_Buffer b;
    char *dst;
    if (ilen < 0)
        mpl_argerror(L, 4, lua_pushfstring(L,
            "length %I is out of range (it must be >= 0)", ilen));
    if ((uint64_t)ilen > MP_MAX_PAGES * (uint64_t)MP_MAX_PAGE_SIZE)
        mpl_argerror(L, 4, "length is too large");
    len = (size_t)ilen;
    off = span_check(L, pg, len, 4, &first, &last);
    if (len == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    for (i = first; i <= last; i++) {
        const unsigned char *d =
            (const unsigned char *)mp_page_ptr(pg->p, span_id(L, pg, i));
        if (i == first)
            base = d;
        else if (d != base + (size_t)(i - first) * P)
            contiguous = 0;
    }
    if (contiguous) {
        /* One copy, straight from the mapping (lua_pushlstring copies
         * before it can run a collection step). */
        lua_pushlstring(L, (const char *)base + off % P, len);
        return 1;
    }
    dst = luaL_buffinitsize(L, &b, len);
    pg = mpl_checkpager(L, 1);      /* finalizers may have run: again */
    pos = off % P;
    left = len;
    for (i = first; i <= last; i++) {
        const unsigned char *d =
            (const unsigned char *)mp_page_ptr(pg->p, span_id(L, pg, i));
        size_t chunk = P - pos < left ? P - pos : left;
        memcpy(dst, d + pos, chunk);
        dst += chunk;
        left -= chunk;
        pos = 0;
    }
    luaL_pushresultsize(&b, len);
    return 1;
}

/* pager:scatter(ids, off, s) -> off + #s: writes the bytes of s at off of
 * the pages ids. */
int mpl_pager_scatter(lua_State *L)
{
    mpl_pager *pg = mpl_checkpager(L, 1);
    size_t len, total, off, P = pg->page_size, pos;
    const char *s;
    lua_Integer first, last, i;
    if (pg->readonly)
        mpl_argerror(L, 1, "pager is read-only");
    s = mpl_checklstring(L, 4, &len);
    off = span_check(L, pg, len, 4, &first, &last);
    total = len;
    /* Every page first, so a bad element writes nothing. */
    for (i = first; i <= last; i++)
        (void)span_id(L, pg, i);
    pos = off % P;
    for (i = first; i <= last; i++) {
        unsigned char *d = (unsigned char *)mp_page_ptr(pg->p, span_id(L, pg, i));
        size_t chunk = P - pos < len ? P - pos : len;
        memcpy(d + pos, s, chunk);
        s += chunk;
        len -= chunk;
        pos = 0;
    }
    lua_pushinteger(L, (lua_Integer)(off + total));
    return 1;
}
