/*
 * lua_sorted.c -- sorted arrays of byte strings, for Lua hot paths:
 * core._search (binary search), core._sort (sort, a second array
 * permuted alongside), core._index (where each element is), and packed
 * copies: core._strings(t, n), core._strings_insert (a copy with one
 * more) and core._search_strings (a binary search
 * that reads no Lua value, for arrays searched far more often than they
 * change: a B-tree's internal nodes).
 *
 * Owns: the byte order of strings (memcmp, then the shorter first: what
 * Lua's < gives in the C locale, whatever the current locale) and the two
 * entry points.  Uses the Lua API and lua_util.h only; mappedpages.btree
 * calls them on its nodes' keys, where a search in Lua costs a compare
 * (lua_lessthan -> strcoll) and a dozen VM instructions per step, and
 * table.sort a Lua compare per step.
 *
 * Both read the arrays raw (no metamethods) and raise when an element they
 * look at is not a string.  Neither touches anything but its arguments.
 */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "lua_binding.h"
#include "lua_util.h"

/* a < b (-1), a == b (0), a > b (1), as bytes. */
static int bytes_cmp(const char *a, size_t la, const char *b, size_t lb)
{
    int c = memcmp(a, b, la < lb ? la : lb);
    if (c != 0)
        return c < 0 ? -1 : 1;
    return la < lb ? -1 : (la > lb ? 1 : 0);
}

/* t[i] (raw) as a string, raising naming argument arg when it is not one.
 * Leaves the element on the stack (it anchors the bytes returned). */
static const char *element(lua_State *L, int t, lua_Integer i, size_t *len, int arg)
{
    if (lua_rawgeti(L, t, i) != LUA_TSTRING) {
        lua_pushfstring(L, "element %I is not a string", (LUAI_UACINT)i);
        mpl_argerror(L, arg, lua_tostring(L, -1));
    }
    return lua_tolstring(L, -1, len);
}

/* The array length argument at arg: an integer >= 0. */
static lua_Integer check_count(lua_State *L, int arg)
{
    lua_Integer n = mpl_checkinteger(L, arg);
    mpl_argcheck(L, n >= 0, arg, "count must be >= 0");
    return n;
}

/* core._search(t, n, key [, after]) -> i: in an array t[1..n] of strings
 * in ascending byte order, the first i with t[i] >= key (with after: with
 * t[i] > key), n + 1 when there is none; and, second, whether t[i] == key
 * (false with after).  log2(n) raw reads. */
int mpl_l_search(lua_State *L)
{
    size_t klen;
    const char *key;
    lua_Integer lo = 1, hi, n;
    int after, top;
    luaL_checktype(L, 1, LUA_TTABLE);
    n = check_count(L, 2);
    key = luaL_checklstring(L, 3, &klen);
    after = lua_toboolean(L, 4);
    top = lua_gettop(L);
    hi = n;
    /* invariant: t[lo - 1] < key (<= with after), t[hi + 1] >= key (>) */
    while (lo <= hi) {
        lua_Integer mid = lo + (hi - lo) / 2;
        size_t len;
        const char *s = element(L, 1, mid, &len, 1);
        int c = bytes_cmp(s, len, key, klen);
        lua_settop(L, top);
        if (c < 0 || (after && c == 0))
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    lua_pushinteger(L, lo);
    if (!after && lo <= n) {
        size_t len;
        const char *s = element(L, 1, lo, &len, 1);
        int eq = len == klen && memcmp(s, key, len) == 0;
        lua_pop(L, 1);
        lua_pushboolean(L, eq);
    } else {
        lua_pushboolean(L, 0);
    }
    return 2;
}

/* One element being sorted: its first 8 bytes as a big-endian number
 * (zeros past the end: most compares end there), its bytes (anchored on
 * the stack) and where it was (1-based), which also breaks ties: the sort
 * is stable. */
typedef struct sort_item {
    uint64_t head;
    const char *s;
    size_t len;
    lua_Integer from;
} sort_item;

static uint64_t head_of(const char *s, size_t len)
{
    uint64_t h = 0;
    size_t i;
    for (i = 0; i < 8; i++)
        h = (h << 8) | (i < len ? (unsigned char)s[i] : 0u);
    return h;
}

static int item_less(const sort_item *a, const sort_item *b)
{
    int c;
    if (a->head != b->head)
        return a->head < b->head;
    c = bytes_cmp(a->s, a->len, b->s, b->len);
    return c < 0 || (c == 0 && a->from < b->from);
}

/* Sort items[0..n) into tmp-backed merge order: a bottom-up merge sort,
 * which a run already in order (a node's sorted part) costs one compare
 * per element of. */
static void merge_sort(sort_item *items, sort_item *tmp, lua_Integer n)
{
    lua_Integer width;
    sort_item *src = items, *dst = tmp;
    for (width = 1; width < n; width *= 2) {
        lua_Integer i;
        for (i = 0; i < n; i += 2 * width) {
            lua_Integer mid = i + width < n ? i + width : n;
            lua_Integer end = i + 2 * width < n ? i + 2 * width : n;
            lua_Integer a = i, b = mid, k = i;
            if (mid < end && !item_less(&src[mid], &src[mid - 1])) {
                /* already in order: copy the two runs as they are */
                memcpy(&dst[i], &src[i], (size_t)(end - i) * sizeof *src);
                continue;
            }
            while (a < mid && b < end)
                dst[k++] = item_less(&src[b], &src[a]) ? src[b++] : src[a++];
            while (a < mid)
                dst[k++] = src[a++];
            while (b < end)
                dst[k++] = src[b++];
        }
        {
            sort_item *t = src;
            src = dst;
            dst = t;
        }
    }
    if (src != items)
        memcpy(items, src, (size_t)n * sizeof *items);
}

/* Sort items[0..n): the run in order at the start (an array sorted once
 * and appended to since) is kept, the rest sorted, then the two merged. */
static void sort_items(sort_item *items, sort_item *tmp, lua_Integer n)
{
    lua_Integer s = 1, a, b, k;
    while (s < n && !item_less(&items[s], &items[s - 1]))
        s++;
    if (s == n)
        return;
    merge_sort(items + s, tmp, n - s);
    if (!item_less(&items[s], &items[s - 1]))
        return;
    for (a = 0, b = s, k = 0; a < s && b < n; )
        tmp[k++] = item_less(&items[b], &items[a]) ? items[b++] : items[a++];
    while (a < s)
        tmp[k++] = items[a++];
    /* the rest of the tail is in place already */
    memcpy(items, tmp, (size_t)k * sizeof *items);
}

/* Up to this many elements are sorted in a buffer on the C stack (16 KiB:
 * most B-tree nodes hold fewer keys), more in a userdata. */
#define SORT_LOCAL 256

/* core._sort(keys, n [, vals]): sort keys[1..n], strings, in ascending
 * byte order (stable), and permute vals[1..n] (any values) the same way
 * when given.  Raises when a key is not a string, when n is too large for
 * the stack; memory errors as Lua's. */
int mpl_l_sort(lua_State *L)
{
    lua_Integer n, i;
    int has_vals, keys_base, vals_base;
    sort_item *items, *tmp;
    sort_item local_items[2 * SORT_LOCAL];
    luaL_checktype(L, 1, LUA_TTABLE);
    n = check_count(L, 2);
    has_vals = !lua_isnoneornil(L, 3);
    if (has_vals)
        luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    if (n < 2)
        return 0;
    mpl_argcheck(L, n <= (lua_Integer)(LUAI_MAXSTACK / 4), 2, "count too large");
    if (n <= SORT_LOCAL) {
        items = local_items;        /* a node's worth: no allocation */
        lua_pushnil(L);             /* 4, as the userdata would be */
    } else {
        items = lua_newuserdatauv(L, (size_t)n * 2 * sizeof *items, 0);   /* 4 */
    }
    tmp = items + n;
    /* every key and value on the stack: they stay anchored while the
     * arrays are rewritten */
    luaL_checkstack(L, (int)(2 * n + 8), "too many elements to sort");
    keys_base = lua_gettop(L);
    for (i = 1; i <= n; i++) {
        sort_item *it = &items[i - 1];
        it->s = element(L, 1, i, &it->len, 1);
        it->head = head_of(it->s, it->len);
        it->from = i;
    }
    vals_base = lua_gettop(L);
    if (has_vals)
        for (i = 1; i <= n; i++)
            lua_rawgeti(L, 3, i);
    sort_items(items, tmp, n);
    for (i = 1; i <= n; i++) {
        lua_Integer from = items[i - 1].from;
        if (from == i)
            continue;
        lua_pushvalue(L, keys_base + (int)from);
        lua_rawseti(L, 1, i);
        if (has_vals) {
            lua_pushvalue(L, vals_base + (int)from);
            lua_rawseti(L, 3, i);
        }
    }
    return 0;
}

/* core._index(t, n [, size]) -> {[t[1]] = 1, ..., [t[n]] = n}: where each
 * of the first n elements of t is (raw reads; a later duplicate wins),
 * made with room for size keys (at least n) so that growing it to size
 * rehashes nothing.  Elements may be any values but nil or NaN. */
int mpl_l_index(lua_State *L)
{
    lua_Integer n, size, i;
    luaL_checktype(L, 1, LUA_TTABLE);
    n = check_count(L, 2);
    size = luaL_optinteger(L, 3, n);
    if (size < n)
        size = n;
    mpl_argcheck(L, size <= INT_MAX, 3, "size too large");
    lua_settop(L, 1);
    lua_createtable(L, 0, (int)size);
    for (i = 1; i <= n; i++) {
        if (lua_rawgeti(L, 1, i) == LUA_TNIL) {
            lua_pushfstring(L, "element %I is nil", (LUAI_UACINT)i);
            mpl_argerror(L, 1, lua_tostring(L, -1));
        }
        lua_pushinteger(L, i);
        lua_rawset(L, 2);
    }
    return 1;
}

/* ---- packed copies ------------------------------------------------------ */

/* A packed copy of n strings: their ends, then their bytes, one block.
 * Only made by core._strings (its metatable is the functions' upvalue,
 * so no other userdata is ever read as one). */
typedef struct packed_strings {
    lua_Integer n;
    size_t ends[];      /* n ends (offsets into the bytes after them) */
} packed_strings;

static const char *packed_bytes(const packed_strings *p)
{
    return (const char *)(p->ends + p->n);
}

/* core._strings(t, n) -> a packed copy of the strings t[1..n] (raw), for
 * core._search_strings; it does not follow t's later changes. */
int mpl_l_strings(lua_State *L)
{
    lua_Integer n, i;
    size_t total = 0, at = 0;
    packed_strings *p;
    char *bytes;
    luaL_checktype(L, 1, LUA_TTABLE);
    n = check_count(L, 2);
    lua_settop(L, 2);
    mpl_argcheck(L, n <= (lua_Integer)(LUAI_MAXSTACK / 4), 2, "count too large");
    /* every string on the stack (anchored whatever a finalizer run by the
     * allocation below does to t), their sizes added up */
    luaL_checkstack(L, (int)n + 8, "too many strings");
    for (i = 1; i <= n; i++) {
        size_t len;
        (void)element(L, 1, i, &len, 1);
        mpl_argcheck(L, len <= SIZE_MAX / 2 - total, 1, "strings too large");
        total += len;
    }
    p = (packed_strings *)lua_newuserdatauv(L, sizeof *p + (size_t)n * sizeof(size_t)
                                               + (total > 0 ? total : 1), 0);
    p->n = n;
    bytes = (char *)(p->ends + n);
    for (i = 1; i <= n; i++) {
        size_t len;
        const char *str = lua_tolstring(L, 2 + (int)i, &len);
        memcpy(bytes + at, str, len);
        at += len;
        p->ends[i - 1] = at;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_setmetatable(L, -2);
    return 1;
}

/* The packed copy at arg (a core._strings one), else raise. */
static const packed_strings *check_packed(lua_State *L, int arg)
{
    const packed_strings *p = lua_touserdata(L, arg);
    if (p == NULL || !lua_getmetatable(L, arg)
        || !lua_rawequal(L, -1, lua_upvalueindex(1)))
        mpl_typeerror(L, arg, "packed strings");
    lua_pop(L, 1);
    return p;
}

/* core._search_strings(packed, key [, after]) -> i: core._search on the
 * packed copy of a sorted array (first i with s[i] >= key, or > key with
 * after; n + 1 if none), and whether s[i] == key (false with after). */
int mpl_l_search_strings(lua_State *L)
{
    const packed_strings *p = check_packed(L, 1);
    size_t klen;
    const char *key = luaL_checklstring(L, 2, &klen);
    int after = lua_toboolean(L, 3);
    const char *bytes;
    lua_Integer lo = 1, hi;
    int eq = 0;
    bytes = packed_bytes(p);
    hi = p->n;
    while (lo <= hi) {
        lua_Integer mid = lo + (hi - lo) / 2;
        size_t start = mid > 1 ? p->ends[mid - 2] : 0;
        int c = bytes_cmp(bytes + start, p->ends[mid - 1] - start, key, klen);
        if (c < 0 || (after && c == 0)) {
            lo = mid + 1;
        } else {
            hi = mid - 1;
            eq = c == 0;
        }
    }
    lua_pushinteger(L, lo);
    lua_pushboolean(L, !after && eq && lo <= p->n);
    return 2;
}

/* core._strings_insert(packed, i, s) -> a new packed copy: packed's
 * strings with s inserted before the i-th (1 <= i <= n + 1), as
 * core._strings would make it of the array after table.insert(t, i, s),
 * at the cost of a copy of its bytes (packed itself is left as it was). */
int mpl_l_strings_insert(lua_State *L)
{
    const packed_strings *p = check_packed(L, 1);
    lua_Integer i = mpl_checkinteger(L, 2), n = p->n, k;
    size_t len, total, before;
    const char *str = luaL_checklstring(L, 3, &len);
    packed_strings *q;
    const char *from;
    char *to;
    mpl_argcheck(L, 1 <= i && i <= n + 1, 2, "position out of range");
    total = n > 0 ? p->ends[n - 1] : 0;
    mpl_argcheck(L, n < (lua_Integer)(LUAI_MAXSTACK / 4)
                     && len <= SIZE_MAX / 2 - total, 3, "strings too large");
    before = i > 1 ? p->ends[i - 2] : 0;
    q = (packed_strings *)lua_newuserdatauv(L, sizeof *q + (size_t)(n + 1) * sizeof(size_t)
                                               + (total + len > 0 ? total + len : 1), 0);
    /* p is the argument (anchored); the allocation moved nothing */
    q->n = n + 1;
    for (k = 0; k < i - 1; k++)
        q->ends[k] = p->ends[k];
    q->ends[i - 1] = before + len;
    for (k = i - 1; k < n; k++)
        q->ends[k + 1] = p->ends[k] + len;
    from = packed_bytes(p);
    to = (char *)(q->ends + n + 1);
    memcpy(to, from, before);
    memcpy(to + before, str, len);
    memcpy(to + before + len, from + before, total - before);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_setmetatable(L, -2);
    return 1;
}

void mpl_open_sorted(lua_State *L, int modidx)
{
    modidx = lua_absindex(L, modidx);
    lua_newtable(L);                    /* the packed copies' metatable */
    lua_pushliteral(L, "mappedpages.PackedStrings");
    lua_setfield(L, -2, "__name");
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, mpl_l_strings, 1);
    lua_setfield(L, modidx, "_strings");
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, mpl_l_search_strings, 1);
    lua_setfield(L, modidx, "_search_strings");
    lua_pushcclosure(L, mpl_l_strings_insert, 1);
    lua_setfield(L, modidx, "_strings_insert");
}
