/*
 * fuzz_pack.c -- libFuzzer target: view:pack / view:unpack formats
 * (csrc/lua_pack.c), against Lua's own string.pack / string.unpack.
 *
 * The engine needs nothing of the binding but lua_util.c, so it is linked
 * alone, with a Lua state of its own (liblua5.4, the standard libraries
 * open for the reference).  Input (missing bytes read as zero):
 *   byte 0      flags: bit 0 the buffer is a window (only the messages
 *               change), bit 1 a negative offset, bit 2 a second buffer
 *               length range (256 more), bit 3 hand pack no values at all
 *   byte 1      buffer length (0..255, +256 with bit 2)
 *   byte 2      offset: byte % (length + 2), so length + 1 is out of range;
 *               negated with bit 1
 *   byte 3      format length (% 64), then that many format bytes
 *   byte        value count (% 16), then the values, each a tag byte and
 *               its operand: integer (8 bytes), small integer (1 byte,
 *               signed), float (8 bytes), integral float (1 byte), string
 *               (length byte % 48, then bytes), numeric string (1 byte),
 *               boolean, nil
 *   the rest    the buffer's initial content (repeated; zeros if none)
 *
 * Each input runs, every call under lua_pcall:
 *  1. mp_lua_unpack(buffer, off, fmt) twice (the second through the now
 *     filled format cache): both fail, or both give the same values; and
 *     the same verdict and values as string.unpack(fmt, buffer, off + 1)
 *     (the offset one less), for off in [0, length];
 *  2. mp_lua_pack(buffer, off, fmt, values...): on failure the buffer is
 *     untouched; for off in [0, length] it succeeds exactly when
 *     string.pack("c<off> " .. fmt, zeros, values...) does and fits in the
 *     buffer, and then writes exactly those bytes (string.pack measures
 *     alignment from its string's start, which "c<off>" puts at the
 *     buffer's start) and nothing outside them; packing again through the
 *     cache writes the same;
 *  3. after a successful pack, mp_lua_unpack of the same format at the same
 *     offset succeeds and ends where the pack ended;
 *  4. mp_lua_pack_rows of two rows of the values (every other one in a
 *     table column) succeeds exactly when two mp_lua_pack calls, the
 *     second from where the first ended, do, and then writes their bytes.
 * An oracle failure aborts ("FUZZ ORACLE FAILED"), which libFuzzer reports
 * as a crash, like a sanitizer finding.  See fuzz/README.md.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "lua_pack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXBUF 512
#define MAXFMT 63
#define MAXVALS 15
#define MAXRES 64          /* results kept for comparison */

#define ORACLE(c, ...) do { if (!(c)) { \
    fprintf(stderr, "FUZZ ORACLE FAILED %s:%d: ", __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); abort(); } } while (0)

/* The call being made (read by the C functions run under lua_pcall). */
static struct {
    unsigned char *buf;
    size_t len;
    lua_Integer off;
    int window;
    mp_fmtcache cache;
} C;

/* Input reader: missing bytes read as zero. */
typedef struct rd { const uint8_t *p; size_t n; } rd;

static unsigned byte(rd *r)
{
    if (r->n == 0)
        return 0;
    r->n--;
    return *r->p++;
}

static uint64_t u64(rd *r)
{
    uint64_t v = 0;
    int i;
    for (i = 0; i < 8; i++)
        v |= (uint64_t)byte(r) << (8 * i);
    return v;
}

/* Stack: [nil, off, fmt]; pushes what mp_lua_unpack pushed. */
static int call_unpack(lua_State *L)
{
    size_t fl;
    const char *fmt = lua_tolstring(L, MP_UNPACK_FMTARG, &fl);
    return mp_lua_unpack(L, &C.cache, C.buf, C.len, C.off, fmt, fl, C.window);
}

/* Stack: [nil, off, fmt, v1, ...]; pushes the next offset. */
static int call_pack(lua_State *L)
{
    size_t fl;
    const char *fmt = lua_tolstring(L, 3, &fl);
    lua_Integer next = mp_lua_pack(L, &C.cache, C.buf, C.len, C.off, fmt, fl,
                                   4, C.window);
    lua_pushinteger(L, next);
    return 1;
}

/* Stack: [nil, off, fmt, v1, ...]; mp_lua_pack_rows of two rows, column j
 * a table {vj, vj} for odd j and vj itself for even j (both kinds of
 * column); pushes the next offset. */
static int call_pack_rows(lua_State *L)
{
    size_t fl;
    const char *fmt = lua_tolstring(L, 3, &fl);
    int nv = lua_gettop(L) - 3, j;
    lua_Integer next;
    for (j = 0; j < nv; j++) {
        if (j % 2 == 1) {
            lua_createtable(L, 2, 0);
            lua_pushvalue(L, 4 + j);
            lua_rawseti(L, -2, 1);
            lua_pushvalue(L, 4 + j);
            lua_rawseti(L, -2, 2);
            lua_replace(L, 4 + j);
        }
    }
    next = mp_lua_pack_rows(L, &C.cache, C.buf, C.len, C.off, fmt, fl, 2, 4,
                            nv, 2, C.window);
    lua_pushinteger(L, next);
    return 1;
}

/* Are the values at a .. a+n-1 and b .. b+n-1 the same (floats by bits,
 * so NaNs compare)? */
static int same_values(lua_State *L, int a, int b, int n)
{
    int i;
    for (i = 0; i < n; i++) {
        int x = a + i, y = b + i;
        if (lua_type(L, x) != lua_type(L, y))
            return 0;
        if (lua_type(L, x) == LUA_TNUMBER) {
            if (lua_isinteger(L, x) != lua_isinteger(L, y))
                return 0;
            if (lua_isinteger(L, x)) {
                if (lua_tointeger(L, x) != lua_tointeger(L, y))
                    return 0;
            } else {
                lua_Number u = lua_tonumber(L, x), v = lua_tonumber(L, y);
                if (memcmp(&u, &v, sizeof u) != 0)
                    return 0;
            }
        } else if (!lua_rawequal(L, x, y)) {
            return 0;
        }
    }
    return 1;
}

/* Run f under pcall with [nil, off, fmt, values at vals .. vals+nv-1];
 * leaves its results (or the error) from the returned base on; *ok says
 * whether it succeeded, *nres how many results it left. */
static int pcall_engine(lua_State *L, lua_CFunction f, int fmt, int vals,
                        int nv, int *nres)
{
    int base = lua_gettop(L) + 1, i, ok;
    lua_pushcfunction(L, f);
    lua_pushnil(L);
    lua_pushinteger(L, C.off);
    lua_pushvalue(L, fmt);
    for (i = 0; i < nv; i++)
        lua_pushvalue(L, vals + i);
    ok = lua_pcall(L, 3 + nv, LUA_MULTRET, 0) == LUA_OK;
    *nres = lua_gettop(L) - base + 1;
    if (!ok)
        ORACLE(lua_type(L, -1) == LUA_TSTRING, "engine raised a non-string");
    return ok;
}

/* Push the library function string.<name>. */
static void push_string_fn(lua_State *L, const char *name)
{
    lua_getglobal(L, "string");
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
}

static void check_unpack(lua_State *L, int fmt)
{
    int base = lua_gettop(L), n1, n2, ok1, ok2;
    ok1 = pcall_engine(L, call_unpack, fmt, 0, 0, &n1);
    ok2 = pcall_engine(L, call_unpack, fmt, 0, 0, &n2);
    ORACLE(ok1 == ok2, "unpack: cached format changed the verdict");
    if (ok1) {
        ORACLE(n1 == n2 && same_values(L, base + 1, base + 1 + n1, n1),
               "unpack: cached format changed the results");
    } else {
        ORACLE(lua_rawequal(L, base + 1, base + 2),
               "unpack: cached format changed the error");
    }
    if (C.off >= 0 && (size_t)C.off <= C.len && n1 <= MAXRES) {
        int top = lua_gettop(L), ok3, n3;
        luaL_checkstack(L, MAXRES + 8, NULL);
        push_string_fn(L, "unpack");
        lua_pushvalue(L, fmt);
        lua_pushlstring(L, (const char *)C.buf, C.len);
        lua_pushinteger(L, C.off + 1);
        ok3 = lua_pcall(L, 3, LUA_MULTRET, 0) == LUA_OK;
        n3 = lua_gettop(L) - top;
        ORACLE(ok1 == ok3, "unpack: verdict %d, string.unpack's %d (%s)",
               ok1, ok3, ok1 ? lua_tostring(L, -1) : lua_tostring(L, base + 1));
        if (ok1) {
            ORACLE(n1 == n3, "unpack: %d results, string.unpack %d", n1, n3);
            ORACLE(same_values(L, base + 1, top + 1, n1 - 1),
                   "unpack: values differ from string.unpack's");
            ORACLE(lua_tointeger(L, base + n1) + 1 == lua_tointeger(L, -1),
                   "unpack: next offset differs from string.unpack's");
        }
    }
    lua_settop(L, base);
}

/* Does the format at fmt have no numeral above 4096 (sizes, alignments)? */
static int modest(lua_State *L, int fmt)
{
    size_t n, i;
    const char *s = lua_tolstring(L, fmt, &n);
    unsigned long v = 0;
    for (i = 0; i < n; i++) {
        if (s[i] >= '0' && s[i] <= '9') {
            v = v * 10 + (unsigned long)(s[i] - '0');
            if (v > 4096)
                return 0;
        } else {
            v = 0;
        }
    }
    return 1;
}

static void check_pack(lua_State *L, int fmt, int vals, int nv)
{
    static unsigned char before[MAXBUF], after[MAXBUF];
    static const unsigned char zeros[MAXBUF + 2];
    int base = lua_gettop(L), n, ok, okref = 0, n2;
    lua_Integer next = 0;
    size_t reflen = 0;
    const char *ref = NULL;
    memcpy(before, C.buf, C.len);
    ok = pcall_engine(L, call_pack, fmt, vals, nv, &n);
    if (!ok) {
        ORACLE(memcmp(before, C.buf, C.len) == 0,
               "pack failed (%s) but changed the buffer", lua_tostring(L, -1));
    } else {
        next = lua_tointeger(L, -1);
        ORACLE(n == 1 && next >= C.off && (size_t)next <= C.len,
               "pack: next offset out of [off, len]");
        ORACLE(memcmp(before, C.buf, (size_t)C.off) == 0
               && memcmp(before + next, C.buf + next, C.len - (size_t)next) == 0,
               "pack wrote outside [off, next)");
    }
    /* string.pack builds its whole result: when ours failed, only formats
     * of modest sizes go to it. */
    if (C.off >= 0 && (size_t)C.off <= C.len && (ok || modest(L, fmt))) {
        int i;
        push_string_fn(L, "pack");
        lua_pushfstring(L, "c%d ", (int)C.off);
        lua_pushvalue(L, fmt);
        lua_concat(L, 2);
        lua_pushlstring(L, (const char *)zeros, (size_t)C.off);
        for (i = 0; i < nv; i++)
            lua_pushvalue(L, vals + i);
        okref = lua_pcall(L, 2 + nv, 1, 0) == LUA_OK;
        if (okref) {
            ref = lua_tolstring(L, -1, &reflen);
            okref = reflen <= C.len;
        }
        ORACLE(ok == okref, "pack: verdict %d, string.pack's %d (%s)", ok,
               okref, ok ? (ref ? "too long" : lua_tostring(L, -1))
                         : lua_tostring(L, base + 1));
        if (ok) {
            ORACLE((size_t)next == reflen, "pack: ends at %lld, string.pack at %zu",
                   (long long)next, reflen);
            ORACLE(memcmp(C.buf + C.off, ref + C.off, reflen - (size_t)C.off) == 0,
                   "pack: bytes differ from string.pack's");
        }
    }
    lua_settop(L, base);
    if (!ok)
        return;
    /* Again, through the cache: the same bytes. */
    memcpy(after, C.buf, C.len);
    memcpy(C.buf, before, C.len);
    ok = pcall_engine(L, call_pack, fmt, vals, nv, &n);
    ORACLE(ok && lua_tointeger(L, -1) == next
           && memcmp(after, C.buf, C.len) == 0,
           "pack: cached format packed differently");
    lua_settop(L, base);
    /* What was packed unpacks, up to the same offset. */
    ok = pcall_engine(L, call_unpack, fmt, 0, 0, &n2);
    ORACLE(ok, "unpack of what pack wrote failed: %s", lua_tostring(L, -1));
    ORACLE(lua_tointeger(L, -1) == next, "unpack ends at %lld, pack at %lld",
           (long long)lua_tointeger(L, -1), (long long)next);
    lua_settop(L, base);
}

/* mp_lua_pack_rows of two rows of the same values succeeds exactly when
 * packing them twice, the second from where the first ended, does, and
 * then writes the same bytes up to the same offset (on failure it may
 * have written rows into its buffer: a scratch copy, by contract). */
static void check_pack_rows(lua_State *L, int fmt, int vals, int nv)
{
    static unsigned char before[MAXBUF], rows[MAXBUF];
    int base = lua_gettop(L), n, okr, ok1, ok2 = 0;
    lua_Integer off = C.off, nextr = 0, next2 = 0;
    memcpy(before, C.buf, C.len);
    okr = pcall_engine(L, call_pack_rows, fmt, vals, nv, &n);
    if (okr)
        nextr = lua_tointeger(L, -1);
    memcpy(rows, C.buf, C.len);
    lua_settop(L, base);
    memcpy(C.buf, before, C.len);
    ok1 = pcall_engine(L, call_pack, fmt, vals, nv, &n);
    if (ok1) {
        C.off = lua_tointeger(L, -1);
        lua_settop(L, base);
        ok2 = pcall_engine(L, call_pack, fmt, vals, nv, &n);
        if (ok2)
            next2 = lua_tointeger(L, -1);
        C.off = off;
    }
    lua_settop(L, base);
    ORACLE(okr == (ok1 && ok2), "pack_rows: verdict %d, two packs' %d", okr,
           ok1 && ok2);
    if (okr) {
        ORACLE(nextr == next2, "pack_rows: ends at %lld, two packs at %lld",
               (long long)nextr, (long long)next2);
        ORACLE(memcmp(rows + off, C.buf + off, (size_t)(next2 - off)) == 0,
               "pack_rows: bytes differ from two packs'");
    }
    memcpy(C.buf, before, C.len);
}

/* Push one value read from r. */
static void push_value(lua_State *L, rd *r)
{
    char tmp[8];
    switch (byte(r) % 8) {
    case 0: lua_pushinteger(L, (lua_Integer)u64(r)); break;
    case 1: lua_pushinteger(L, (lua_Integer)(int8_t)byte(r)); break;
    case 2: {
        uint64_t bits = u64(r);
        double d;
        memcpy(&d, &bits, sizeof d);
        lua_pushnumber(L, (lua_Number)d);
        break;
    }
    case 3: lua_pushnumber(L, (lua_Number)(int8_t)byte(r)); break;
    case 4: {
        size_t n = byte(r) % 48, i;
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (i = 0; i < n; i++)
            luaL_addchar(&b, (char)byte(r));
        luaL_pushresult(&b);
        break;
    }
    case 5:
        snprintf(tmp, sizeof tmp, "%d", (int)(int8_t)byte(r));
        lua_pushstring(L, tmp);
        break;
    case 6: lua_pushboolean(L, byte(r) & 1); break;
    default: lua_pushnil(L); break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static lua_State *L;
    static unsigned char buf[MAXBUF];
    rd r = { data, size };
    unsigned flags, fl, nv, i;
    char fmtbytes[MAXFMT];
    int fmt, vals;
    if (L == NULL) {
        L = luaL_newstate();
        ORACLE(L != NULL, "luaL_newstate");
        luaL_openlibs(L);
    }
    lua_settop(L, 0);
    flags = byte(&r);
    C.window = flags & 1;
    C.len = byte(&r) + ((flags & 4) ? 256u : 0u);
    C.off = (lua_Integer)(byte(&r) % (C.len + 2));
    if (flags & 2)
        C.off = -C.off - 1;
    fl = byte(&r) % (MAXFMT + 1);
    for (i = 0; i < fl; i++)
        fmtbytes[i] = (char)byte(&r);
    lua_pushlstring(L, fmtbytes, fl);
    fmt = lua_gettop(L);
    nv = byte(&r) % (MAXVALS + 1);
    if (flags & 8)
        nv = 0;
    vals = fmt + 1;
    for (i = 0; i < nv; i++)
        push_value(L, &r);
    for (i = 0; i < C.len; i++)
        buf[i] = r.n ? r.p[i % r.n] : 0;
    C.buf = buf;
    memset(&C.cache, 0, sizeof C.cache);
    check_unpack(L, fmt);
    check_pack(L, fmt, vals, (int)nv);
    check_pack_rows(L, fmt, vals, (int)nv);
    lua_settop(L, 0);
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
