/*
 * lua_pack.c -- string.pack / string.unpack formats, in place in a page.
 *
 * Owns: the format parser shared by pack and unpack, the byte encodings
 * (integers of 1..16 bytes, floats, length-prefixed, fixed and
 * zero-terminated strings), and the range checks against the page.  The
 * Lua binding (view:pack, view:unpack) calls the two entry points; the
 * semantics and the differences from string.pack are in lua_pack.h.
 *
 * Invariants
 *  1. pack writes nothing until the whole format and every value have been
 *     checked and everything is known to fit: pass 1 validates and sizes,
 *     pass 2 writes and cannot fail.  Errors come in string.pack's order
 *     (the first bad option or value); running out of page is reported
 *     only when the format and values are otherwise good.
 *  2. The page is never touched after a point where the garbage collector
 *     may have run (any Lua allocation), because a finalizer could close
 *     the pager and unmap the page:
 *      - pack's pass 1 allocates nothing: a number given for a string
 *        option is converted into a local buffer, exactly as tostring
 *        would (not in place on the stack as luaL_checklstring does);
 *        pass 2 allocates nothing either.
 *      - unpack pushes integers and floats, which allocates nothing.  A
 *        string result (options c, s, z) is a Lua allocation; when one is
 *        followed by more items, unpack first walks the format without
 *        pushing, to validate it and find where the data ends, copies that
 *        span into one Lua string, and reads the rest from the copy.
 *  3. Every read and write is bounds-checked against the page before it
 *     happens; sizes come from the format (at most INT_MAX per option) and
 *     string lengths, and the checks are written so that they cannot
 *     overflow.
 */
#include "lua_pack.h"
#include "lua_util.h"     /* mpl_argerror: errors name the function however it was called */

#include <lauxlib.h>

#include <limits.h>
#include <locale.h>     /* localeconv, used by lua_getlocaledecpoint */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>      /* snprintf, used by lua_number2str */
#include <string.h>

/* Largest integer option, 'i16' (as in lstrlib). */
#define MP_MAXINTSIZE 16
/* Bytes in a lua_Integer. */
#define MP_SZINT ((int)sizeof(lua_Integer))
/* A numeral in a format stops growing above this, so that it fits in an
 * int (lstrlib's limit: a 'c' size is at most about INT_MAX). */
#define MP_NUMLIMIT ((INT_MAX - 9) / 10)
/* Room for the text of any number (tostring), with some margin. */
#define MP_NUMBUF 64

typedef enum kopt {
    K_INT,       /* signed integer: b h l j i[n] */
    K_UINT,      /* unsigned integer: B H L J T I[n] */
    K_FLOAT,     /* C float: f */
    K_NUMBER,    /* lua_Number: n */
    K_DOUBLE,    /* C double: d */
    K_CHAR,      /* fixed-size string: cn */
    K_STRING,    /* length-prefixed string: s[n] */
    K_ZSTR,      /* zero-terminated string: z */
    K_PAD,       /* one byte of padding: x */
    K_PADALIGN,  /* alignment only: Xop */
    K_NOP,       /* ' ', endianness, maximum alignment */
    K_ERR        /* a bad option (compiled: raised when reached) */
} kopt;

/* Parser state: what the configuration options set so far. */
typedef struct fmtstate {
    int little;     /* current byte order is little-endian */
    int maxalign;   /* alignment cap set by '!' (1: no alignment) */
} fmtstate;

/* Native alignment of the most demanding type, the default of '!'. */
struct mp_maxalign_probe {
    char c;
    union { LUAI_MAXALIGN; } u;
};

static int native_little(void)
{
    const unsigned int one = 1;
    unsigned char first;
    memcpy(&first, &one, 1);
    return first == 1;
}

static void fmt_init(fmtstate *h)
{
    h->little = native_little();
    h->maxalign = 1;
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/* A numeral at *fmt, or dflt when there is none. */
static int read_num(const char **fmt, int dflt)
{
    const char *f = *fmt;
    int a = 0;
    if (!is_digit(*f))
        return dflt;
    do {
        a = a * 10 + (*f++ - '0');
    } while (is_digit(*f) && a <= MP_NUMLIMIT);
    *fmt = f;
    return a;
}

/* Errors the parser can meet, raised when the item carrying them is
 * reached (so they come in string.pack's order among the value errors). */
enum { E_INTSIZE = 1, E_CSIZE, E_OPTION, E_XNEXT, E_ALIGN };

/* Read one option at *fmt; set *size to the bytes it occupies (0 for
 * strings of variable length and for options that take no room).  A bad
 * option gives K_ERR with *err and *errarg set instead of raising. */
static kopt read_option(fmtstate *h, const char **fmt, int *size, int *err,
                        int *errarg)
{
    int opt = (unsigned char)*(*fmt)++;
    *size = 0;
    switch (opt) {
    case 'b': *size = (int)sizeof(char); return K_INT;
    case 'B': *size = (int)sizeof(char); return K_UINT;
    case 'h': *size = (int)sizeof(short); return K_INT;
    case 'H': *size = (int)sizeof(short); return K_UINT;
    case 'l': *size = (int)sizeof(long); return K_INT;
    case 'L': *size = (int)sizeof(long); return K_UINT;
    case 'j': *size = (int)sizeof(lua_Integer); return K_INT;
    case 'J': *size = (int)sizeof(lua_Integer); return K_UINT;
    case 'T': *size = (int)sizeof(size_t); return K_UINT;
    case 'f': *size = (int)sizeof(float); return K_FLOAT;
    case 'n': *size = (int)sizeof(lua_Number); return K_NUMBER;
    case 'd': *size = (int)sizeof(double); return K_DOUBLE;
    case 'i': case 'I': case 's': case '!': {
        int sz = read_num(fmt, opt == 's' ? (int)sizeof(size_t)
                          : opt == '!'
                              ? (int)offsetof(struct mp_maxalign_probe, u)
                              : (int)sizeof(int));
        if (sz > MP_MAXINTSIZE || sz <= 0) {
            *err = E_INTSIZE;
            *errarg = sz;
            return K_ERR;
        }
        if (opt == '!') {
            h->maxalign = sz;
            return K_NOP;
        }
        *size = sz;
        return opt == 'i' ? K_INT : opt == 'I' ? K_UINT : K_STRING;
    }
    case 'c':
        *size = read_num(fmt, -1);
        if (*size == -1) {
            *err = E_CSIZE;
            return K_ERR;
        }
        return K_CHAR;
    case 'z': return K_ZSTR;
    case 'x': *size = 1; return K_PAD;
    case 'X': return K_PADALIGN;
    case ' ': return K_NOP;
    case '<': h->little = 1; return K_NOP;
    case '>': h->little = 0; return K_NOP;
    case '=': h->little = native_little(); return K_NOP;
    default:
        *err = E_OPTION;
        *errarg = opt;
        return K_ERR;
    }
}

/* Parse the next option at *fmt into *it: its kind, size, byte order and
 * alignment mask (the padding before it at offset pos is (-pos) & amask).
 * Returns 0 for an option that is nothing but configuration (' ', '<',
 * '>', '=', '!'), which needs no item; a bad option gives a K_ERR item. */
static int compile_one(fmtstate *h, const char **fmt, mp_item *it)
{
    int size, align, err = 0, errarg = 0;
    kopt k = read_option(h, fmt, &size, &err, &errarg);
    if (k == K_NOP)
        return 0;
    align = size;                 /* an item is aligned on its size... */
    if (k == K_PADALIGN) {        /* ...but 'X' on the next option's */
        if (**fmt == '\0') {
            k = K_ERR;
            err = E_XNEXT;
        } else {
            kopt next = read_option(h, fmt, &align, &err, &errarg);
            if (next == K_ERR)
                k = K_ERR;
            else if (next == K_CHAR || align == 0)
                k = K_ERR, err = E_XNEXT;
        }
    }
    it->kind = (unsigned char)k;
    it->little = (unsigned char)h->little;
    it->amask = 0;
    it->size = size;
    if (k == K_ERR) {
        it->size = errarg;
        it->amask = (unsigned char)err;
        return 1;
    }
    if (align > 1 && k != K_CHAR) {
        if (align > h->maxalign)
            align = h->maxalign;
        if ((align & (align - 1)) != 0) {
            it->kind = K_ERR;
            it->amask = E_ALIGN;
            return 1;
        }
        it->amask = (unsigned char)(align - 1);
    }
    return 1;
}

/* Raise the error a K_ERR item carries, as the uncompiled parser would
 * have when reaching it. */
static void raise_item(lua_State *L, int fmtarg, const mp_item *it)
{
    switch (it->amask) {
    case E_INTSIZE:
        luaL_error(L, "integral size (%d) out of limits [1,%d]", it->size,
                   MP_MAXINTSIZE);
        break;
    case E_CSIZE:
        luaL_error(L, "missing size for format option 'c'");
        break;
    case E_OPTION:
        luaL_error(L, "invalid format option '%c'", it->size);
        break;
    case E_XNEXT:
        mpl_argerror(L, fmtarg, "invalid next option for option 'X'");
        break;
    default:
        mpl_argerror(L, fmtarg, "format asks for alignment not power of 2");
        break;
    }
}

/* ---- compiled formats -------------------------------------------------- */

/* Compile fmt (len bytes) into entry e: 1 when it fits (at most
 * MP_FMT_MAXLEN bytes and MP_FMT_MAXITEMS items), else 0.  Parsing stops
 * at the first '\0' (as the parser always has) or after an error item. */
static int fmt_compile(mp_fmtentry *e, const char *fmt, size_t len)
{
    fmtstate h;
    const char *f = fmt;
    int n = 0, hasstr = 0, ints = 1, nums = 1;
    if (len > MP_FMT_MAXLEN)
        return 0;
    fmt_init(&h);
    while (*f != '\0') {
        mp_item it;
        if (!compile_one(&h, &f, &it))
            continue;
        if (n == MP_FMT_MAXITEMS)
            return 0;
        e->items[n++] = it;
        if (it.kind == K_CHAR || it.kind == K_STRING || it.kind == K_ZSTR)
            hasstr = 1;
        if (it.kind != K_INT && it.kind != K_UINT)
            ints = 0;
        if (it.kind != K_INT && it.kind != K_UINT && it.kind != K_FLOAT
            && it.kind != K_NUMBER && it.kind != K_DOUBLE)
            nums = 0;
        if (it.kind == K_ERR)
            break;
    }
    memcpy(e->fmt, fmt, len);
    e->len = (unsigned char)len;
    e->n = (unsigned char)n;
    e->hasstr = (unsigned char)hasstr;
    e->ints = (unsigned char)ints;
    e->nums = (unsigned char)nums;
    e->valid = 1;
    return 1;
}

/* The compiled form of fmt from cache c, or NULL when it does not fit in
 * an entry.  The slot is chosen by the string's address and length, and
 * an entry is used only when its stored bytes equal fmt's: a string
 * collected and another made at the same address can never be given the
 * old one's parse. */
static const mp_fmtentry *fmt_lookup(mp_fmtcache *c, const char *fmt,
                                     size_t len)
{
    uintptr_t a = (uintptr_t)fmt;
    mp_fmtentry *e = &c->slot[((a >> 4) ^ (a >> 11) ^ len)
                              & (MP_FMT_SLOTS - 1)];
    if (e->valid && e->len == len && memcmp(e->fmt, fmt, len) == 0)
        return e;
    e->valid = 0;
    return fmt_compile(e, fmt, len) ? e : NULL;
}

/* The items of a format, in order: from a compiled entry, or parsed one
 * at a time from the string (a format too long for the cache). */
typedef struct cursor {
    const mp_item *it, *end;   /* compiled: next item, end; else NULL */
    const char *f;             /* not compiled: the rest of the format */
    fmtstate h;
    mp_item tmp;
} cursor;

static void cursor_init(cursor *c, const mp_fmtentry *e, const char *fmt)
{
    if (e != NULL) {
        c->it = e->items;
        c->end = e->items + e->n;
    } else {
        c->it = NULL;
        c->end = NULL;
        c->f = fmt;
        fmt_init(&c->h);
    }
}

static inline const mp_item *cursor_next(cursor *c)
{
    if (c->it != NULL)
        return c->it < c->end ? c->it++ : NULL;
    while (*c->f != '\0')
        if (compile_one(&c->h, &c->f, &c->tmp))
            return &c->tmp;
    return NULL;
}

/* Raise for an offset outside [0, len] (kept out of check_offset, which
 * is on the hot path). */
static void offset_error(lua_State *L, lua_Integer off, size_t len, int arg,
                         int window)
{
    if (window)
        mpl_argerror(L, arg, lua_pushfstring(L,
            "offset %I is out of range (window of %I bytes)", off,
            (lua_Integer)len));
    mpl_argerror(L, arg, "offset out of range");
}

static void check_offset(lua_State *L, lua_Integer off, size_t len, int arg,
                         int window)
{
    if (off < 0 || (lua_Unsigned)off > (lua_Unsigned)len)
        offset_error(L, off, len, arg, window);
}

/* Raise "<what> (N bytes at offset P, page size S)" against argument arg,
 * or for a window "<what> (N bytes at offset P, window of S bytes)"; what
 * is "data does not fit in" or "too short", said of the page or window.
 * need may be absurd (a corrupt length prefix): it is shown clamped. */
static void raise_short(lua_State *L, int arg, int fits, size_t pos,
                        lua_Unsigned need, size_t len, int window)
{
    lua_Integer shown = need > (lua_Unsigned)LUA_MAXINTEGER
                            ? LUA_MAXINTEGER : (lua_Integer)need;
    const char *unit = window ? "window" : "page";
    mpl_argerror(L, arg,
                  lua_pushfstring(L, fits ? "data does not fit in %s (%I bytes "
                                  "at offset %I, %s %I%s)"
                                  : "%s too short (%I bytes at offset %I, %s "
                                  "%I%s)", unit, shown, (lua_Integer)pos,
                                  window ? "window of" : "page size",
                                  (lua_Integer)len, window ? " bytes" : ""));
}

/* Copy n bytes, reversing them when the wanted byte order is not the
 * machine's (floats). */
static void copy_order(unsigned char *dst, const unsigned char *src, size_t n,
                       int little)
{
    if (little == native_little()) {
        memcpy(dst, src, n);
    } else {
        size_t i;
        for (i = 0; i < n; i++)
            dst[i] = src[n - 1 - i];
    }
}

/* ---- pack ------------------------------------------------------------- */

/* The text tostring gives a number (lobject.c's rules: integers in
 * LUA_INTEGER_FMT, floats in LUA_NUMBER_FMT plus ".0" when they would
 * read as an integer), in b; returns its length. */
static size_t number_text(lua_State *L, int arg, char *b)
{
    int n;
    if (lua_isinteger(L, arg)) {
        n = lua_integer2str(b, MP_NUMBUF, lua_tointegerx(L, arg, NULL));
    } else {
        n = lua_number2str(b, MP_NUMBUF, lua_tonumberx(L, arg, NULL));
        if (n > 0 && n < MP_NUMBUF - 2 && b[strspn(b, "-0123456789")] == '\0') {
            b[n++] = lua_getlocaledecpoint();
            b[n++] = '0';
            b[n] = '\0';
        }
    }
    return n > 0 ? (size_t)n : 0;
}

/* luaL_checklstring without its side effect: a number is converted into
 * b instead of into a new Lua string (which would allocate). */
static const char *value_string(lua_State *L, int arg, size_t *l, char *b)
{
    switch (lua_type(L, arg)) {
    case LUA_TSTRING:
        return lua_tolstring(L, arg, l);
    case LUA_TNUMBER:
        *l = number_text(L, arg, b);
        return b;
    default:
        luaL_typeerror(L, arg, lua_typename(L, LUA_TSTRING));
        return NULL;
    }
}

/* Write the low size bytes of n (two's complement, sign-extended past the
 * width of lua_Integer when neg) in the given byte order. */
static void put_int(unsigned char *p, lua_Unsigned n, int little, int size,
                    int neg)
{
    int i;
    if (little && native_little() && size <= MP_SZINT) {
        switch (size) {          /* the low bytes come first: copy them */
        case 1: *p = (unsigned char)n; return;
        case 2: { uint16_t v = (uint16_t)n; memcpy(p, &v, 2); return; }
        case 4: { uint32_t v = (uint32_t)n; memcpy(p, &v, 4); return; }
        case 8: { uint64_t v = (uint64_t)n; memcpy(p, &v, 8); return; }
        default: break;
        }
    }
    for (i = 0; i < size; i++) {
        unsigned char byte = (unsigned char)(n & 0xff);
        if (i >= MP_SZINT)
            byte = neg ? 0xff : 0;
        p[little ? i : size - 1 - i] = byte;
        if (i < MP_SZINT - 1)
            n >>= 8;
    }
}

/* mp_lua_pack for a compiled format of numbers only, integers and floats
 * (the common case): the same checks in the same order, the values kept
 * from pass 1 for pass 2 (nothing runs in between that could change
 * them). */
static lua_Integer pack_nums(lua_State *L, const mp_fmtentry *e,
                             unsigned char *buf, size_t len, size_t off,
                             int first, int window)
{
    union { lua_Integer i; lua_Number n; } vals[MP_FMT_MAXITEMS];
    size_t pos = off;
    int overflow = 0;
    size_t bad_pos = 0, bad_need = 0;
    int i;
    for (i = 0; i < e->n; i++) {
        const mp_item *it = &e->items[i];
        int size = it->size;
        size_t need = ((size_t)(-pos) & it->amask) + (size_t)size;
        if (it->kind == K_INT || it->kind == K_UINT) {
            lua_Integer n = mpl_checkinteger(L, first + i);
            if (size < MP_SZINT) {
                if (it->kind == K_INT) {
                    lua_Integer lim = (lua_Integer)1 << (size * 8 - 1);
                    mpl_argcheck(L, -lim <= n && n < lim, first + i,
                                 "integer overflow");
                } else {
                    mpl_argcheck(L, (lua_Unsigned)n <
                                        ((lua_Unsigned)1 << (size * 8)),
                                 first + i, "unsigned overflow");
                }
            }
            vals[i].i = n;
        } else {
            vals[i].n = mpl_checknumber(L, first + i);
        }
        if (!overflow && need > len - pos) {
            overflow = 1;
            bad_pos = pos;
            bad_need = need;
        }
        pos = need > SIZE_MAX - pos ? SIZE_MAX : pos + need;
    }
    if (overflow)
        raise_short(L, first - 2, 1, bad_pos, (lua_Unsigned)bad_need, len,
                    window);
    pos = off;
    for (i = 0; i < e->n; i++) {
        const mp_item *it = &e->items[i];
        size_t pad = (size_t)(-pos) & it->amask;
        unsigned char *p;
        if (pad > 0)
            memset(buf + pos, 0, pad);
        pos += pad;
        p = buf + pos;
        switch ((kopt)it->kind) {
        case K_FLOAT: {
            float v = (float)vals[i].n;
            copy_order(p, (const unsigned char *)&v, sizeof v, it->little);
            break;
        }
        case K_NUMBER: {
            lua_Number v = vals[i].n;
            copy_order(p, (const unsigned char *)&v, sizeof v, it->little);
            break;
        }
        case K_DOUBLE: {
            double v = (double)vals[i].n;
            copy_order(p, (const unsigned char *)&v, sizeof v, it->little);
            break;
        }
        default:
            put_int(p, (lua_Unsigned)vals[i].i, it->little, it->size,
                    it->kind == K_INT && vals[i].i < 0);
            break;
        }
        pos += (size_t)it->size;
    }
    return (lua_Integer)pos;
}

lua_Integer mp_lua_pack(lua_State *L, mp_fmtcache *cache, unsigned char *buf,
                        size_t len, lua_Integer off, const char *fmt,
                        size_t fmtlen, int first, int window)
{
    const int offarg = first - 2;
    const mp_fmtentry *e;
    const mp_item *it;
    cursor c;
    size_t pos, need;
    int overflow = 0;          /* some item does not fit in the page */
    size_t bad_pos = 0, bad_need = 0;
    int arg;
    char nb[MP_NUMBUF];

    check_offset(L, off, len, offarg, window);
    e = cache != NULL ? fmt_lookup(cache, fmt, fmtlen) : NULL;
    if (e != NULL && e->nums)
        return pack_nums(L, e, buf, len, (size_t)off, first, window);

    /* Pass 1: check every item and value, size everything. */
    cursor_init(&c, e, fmt);
    pos = (size_t)off;
    arg = first;
    while ((it = cursor_next(&c)) != NULL) {
        int size = it->size;
        size_t pad = (size_t)(-pos) & it->amask;
        size_t extra = 0;   /* variable part: string bytes */
        size_t l;
        const char *s;
        switch ((kopt)it->kind) {
        case K_INT: {
            lua_Integer n = mpl_checkinteger(L, arg);
            if (size < MP_SZINT) {
                lua_Integer lim = (lua_Integer)1 << (size * 8 - 1);
                mpl_argcheck(L, -lim <= n && n < lim, arg, "integer overflow");
            }
            arg++;
            break;
        }
        case K_UINT: {
            lua_Integer n = mpl_checkinteger(L, arg);
            if (size < MP_SZINT)
                mpl_argcheck(L, (lua_Unsigned)n <
                                     ((lua_Unsigned)1 << (size * 8)),
                              arg, "unsigned overflow");
            arg++;
            break;
        }
        case K_FLOAT: case K_NUMBER: case K_DOUBLE:
            (void)mpl_checknumber(L, arg);
            arg++;
            break;
        case K_CHAR:
            (void)value_string(L, arg, &l, nb);
            mpl_argcheck(L, l <= (size_t)size, arg,
                          "string longer than given size");
            arg++;
            break;
        case K_STRING:
            (void)value_string(L, arg, &l, nb);
            mpl_argcheck(L, size >= (int)sizeof(size_t) ||
                                 l < ((size_t)1 << (size * 8)),
                          arg, "string length does not fit in given size");
            extra = l;
            arg++;
            break;
        case K_ZSTR:
            s = value_string(L, arg, &l, nb);
            mpl_argcheck(L, memchr(s, '\0', l) == NULL, arg,
                          "string contains zeros");
            extra = l + 1;   /* l < SIZE_MAX: it is the length of an object */
            arg++;
            break;
        case K_ERR:
            raise_item(L, first - 1, it);
            break;
        case K_PAD: case K_PADALIGN: case K_NOP:
            break;
        }
        /* Does the item fit?  Noted, not raised yet: string.pack would
         * report a bad value or option further on first, so we do too. */
        need = pad + (size_t)size;
        need = extra > SIZE_MAX - need ? SIZE_MAX : need + extra;
        if (!overflow && need > len - pos) {
            overflow = 1;
            bad_pos = pos;
            bad_need = need;
        }
        /* (saturates only past the end of the page, once overflow is set) */
        pos = need > SIZE_MAX - pos ? SIZE_MAX : pos + need;
    }
    if (overflow)
        raise_short(L, offarg, 1, bad_pos, (lua_Unsigned)bad_need, len,
                    window);

    /* Pass 2: write.  Same items, values known good: nothing can fail. */
    cursor_init(&c, e, fmt);
    pos = (size_t)off;
    arg = first;
    while ((it = cursor_next(&c)) != NULL) {
        int size = it->size;
        size_t pad = (size_t)(-pos) & it->amask;
        size_t l;
        const char *s;
        unsigned char *p;
        if (pad > 0)
            memset(buf + pos, 0, pad);
        pos += pad;
        p = buf + pos;
        switch ((kopt)it->kind) {
        case K_INT: case K_UINT: {
            lua_Integer n = lua_tointegerx(L, arg++, NULL);
            put_int(p, (lua_Unsigned)n, it->little, size,
                    it->kind == K_INT && n < 0);
            break;
        }
        case K_FLOAT: {
            float v = (float)lua_tonumberx(L, arg++, NULL);
            copy_order(p, (const unsigned char *)&v, sizeof v, it->little);
            break;
        }
        case K_NUMBER: {
            lua_Number v = lua_tonumberx(L, arg++, NULL);
            copy_order(p, (const unsigned char *)&v, sizeof v, it->little);
            break;
        }
        case K_DOUBLE: {
            double v = (double)lua_tonumberx(L, arg++, NULL);
            copy_order(p, (const unsigned char *)&v, sizeof v, it->little);
            break;
        }
        case K_CHAR:
            s = value_string(L, arg++, &l, nb);
            if (l > 0)
                memcpy(p, s, l);
            if ((size_t)size > l)
                memset(p + l, 0, (size_t)size - l);
            break;
        case K_STRING:
            s = value_string(L, arg++, &l, nb);
            put_int(p, (lua_Unsigned)l, it->little, size, 0);
            if (l > 0)
                memcpy(p + size, s, l);
            pos += l;
            break;
        case K_ZSTR:
            s = value_string(L, arg++, &l, nb);
            if (l > 0)
                memcpy(p, s, l);
            p[l] = '\0';
            pos += l + 1;
            break;
        case K_PAD:
            *p = 0;
            break;
        case K_PADALIGN: case K_NOP: case K_ERR:
            break;
        }
        pos += (size_t)size;
    }
    return (lua_Integer)pos;
}

/* ---- rows ------------------------------------------------------------- */

/* Can rows of compiled format e be packed by pack_rows_simple?  Integers
 * of at most a lua_Integer's size and length-prefixed strings whose prefix
 * is at most that size, nothing aligned (what records of cells use). */
static int rows_simple(const mp_fmtentry *e)
{
    int i;
    for (i = 0; i < e->n; i++) {
        const mp_item *it = &e->items[i];
        if ((it->kind != K_INT && it->kind != K_UINT && it->kind != K_STRING)
            || it->amask != 0 || it->size > MP_SZINT)
            return 0;
    }
    return 1;
}

/* Push row i's value of column j (stack index col): col's i-th element
 * (raw) when it is a table, else col itself. */
static void push_cell(lua_State *L, int col, lua_Integer i)
{
    if (lua_type(L, col) == LUA_TTABLE)
        lua_rawgeti(L, col, i);
    else
        lua_pushvalue(L, col);
}

/* Rows of a format rows_simple accepts: one pass per row, each value
 * checked as mp_lua_pack checks it and written at once (buf is a scratch
 * copy: a failure half-way leaves nothing the caller keeps). */
static lua_Integer pack_rows_simple(lua_State *L, const mp_fmtentry *e,
                                    unsigned char *buf, size_t len,
                                    size_t off, lua_Integer n, int cols,
                                    int offarg, int window)
{
    size_t pos = off;
    lua_Integer i;
    int top = lua_gettop(L);
    int istable[MP_FMT_MAXITEMS];
    int k;
    for (k = 0; k < e->n; k++)
        istable[k] = lua_type(L, cols + k) == LUA_TTABLE;
    for (i = 1; i <= n; i++) {
        for (k = 0; k < e->n; k++) {
            const mp_item *it = &e->items[k];
            size_t size = (size_t)it->size;
            int arg = cols + k;     /* a constant column is its own value */
            if (istable[k]) {
                lua_rawgeti(L, cols + k, i);
                arg = lua_gettop(L);
            }
            if (it->kind == K_STRING) {
                size_t l;
                char nb[MP_NUMBUF];
                const char *str = value_string(L, arg, &l, nb);
                mpl_argcheck(L, size >= sizeof(size_t)
                                    || l < ((size_t)1 << (size * 8)),
                             arg, "string length does not fit in given size");
                if (l > len - pos || size > len - pos - l)
                    raise_short(L, offarg, 1, pos,
                                (lua_Unsigned)size + (lua_Unsigned)l, len,
                                window);
                put_int(buf + pos, (lua_Unsigned)l, it->little, it->size, 0);
                if (l > 0)
                    memcpy(buf + pos + size, str, l);
                pos += size + l;
            } else {
                lua_Integer v = mpl_checkinteger(L, arg);
                if (it->size < MP_SZINT) {
                    if (it->kind == K_INT) {
                        lua_Integer lim = (lua_Integer)1 << (it->size * 8 - 1);
                        mpl_argcheck(L, -lim <= v && v < lim, arg,
                                     "integer overflow");
                    } else {
                        mpl_argcheck(L, (lua_Unsigned)v <
                                            ((lua_Unsigned)1 << (it->size * 8)),
                                     arg, "unsigned overflow");
                    }
                }
                if (size > len - pos)
                    raise_short(L, offarg, 1, pos, (lua_Unsigned)size, len,
                                window);
                put_int(buf + pos, (lua_Unsigned)v, it->little, it->size,
                        it->kind == K_INT && v < 0);
                pos += size;
            }
        }
        lua_settop(L, top);         /* the row's elements */
    }
    return (lua_Integer)pos;
}

lua_Integer mp_lua_pack_rows(lua_State *L, mp_fmtcache *cache,
                             unsigned char *buf, size_t len, lua_Integer off,
                             const char *fmt, size_t fmtlen, lua_Integer n,
                             int cols, int ncols, int offarg, int window)
{
    const mp_fmtentry *e;
    lua_Integer i, pos = off;
    int top, j;
    check_offset(L, off, len, offarg, window);
    luaL_checkstack(L, ncols + 8, "too many columns");
    e = cache != NULL ? fmt_lookup(cache, fmt, fmtlen) : NULL;
    if (e != NULL && e->n == ncols && rows_simple(e))
        return pack_rows_simple(L, e, buf, len, (size_t)off, n, cols, offarg,
                                window);
    top = lua_gettop(L);
    for (i = 1; i <= n; i++) {
        for (j = cols; j < cols + ncols; j++)
            push_cell(L, j, i);
        pos = mp_lua_pack(L, cache, buf, len, pos, fmt, fmtlen, top + 1, window);
        lua_settop(L, top);
    }
    return pos;
}

/* ---- unpack ----------------------------------------------------------- */

/* lua_Unsigned to lua_Integer, two's complement, without relying on the
 * implementation-defined conversion (compiles to nothing). */
static lua_Integer u2s(lua_Unsigned u)
{
    if (u <= (lua_Unsigned)LUA_MAXINTEGER)
        return (lua_Integer)u;
    return (lua_Integer)(u - (lua_Unsigned)LUA_MININTEGER) + LUA_MININTEGER;
}

/* Read a size-byte integer.  Below the width of lua_Integer, sign-extend
 * when issigned; above it, the extra bytes must be a sign extension (or
 * zeros when unsigned), else the value does not fit. */
static lua_Unsigned get_int(lua_State *L, const unsigned char *p, int little,
                            int size, int issigned)
{
    lua_Unsigned r = 0;
    int i;
    int n = size <= MP_SZINT ? size : MP_SZINT;
    if (little && native_little() && size < MP_SZINT) {
        switch (size) {          /* the low bytes come first: copy them */
        case 1:
            r = *p;
            goto extend;
        case 2: { uint16_t v; memcpy(&v, p, 2); r = v; goto extend; }
        case 4: { uint32_t v; memcpy(&v, p, 4); r = v; goto extend; }
        default: break;
        }
    }
    if (n == MP_SZINT && little == native_little()) {
        memcpy(&r, little ? p : p + size - MP_SZINT, sizeof r);
    } else {
        for (i = n - 1; i >= 0; i--)
            r = (r << 8) | p[little ? i : size - 1 - i];
    }
extend:
    if (size < MP_SZINT) {
        if (issigned) {
            lua_Unsigned mask = (lua_Unsigned)1 << (size * 8 - 1);
            r = (r ^ mask) - mask;
        }
    } else if (size > MP_SZINT) {
        int negative = issigned && (r >> (MP_SZINT * 8 - 1)) != 0;
        unsigned char ext = negative ? 0xff : 0;
        for (i = MP_SZINT; i < size; i++) {
            if (p[little ? i : size - 1 - i] != ext)
                luaL_error(L, "%d-byte integer does not fit into Lua Integer",
                           size);
        }
    }
    return r;
}

/*
 * Walk the format (compiled entry e, or the string fmt) over the page from
 * pos.  src holds the page bytes from offset base to lim (the whole page:
 * base 0, lim len; or a copy of a span).  With push, push every value and
 * the next offset and return how many; without, only validate, setting
 * *end to the offset past the data and *needcopy when a string result is
 * followed by another item (reading after the allocation of that string
 * would break invariant 2).
 */
static int unpack_walk(lua_State *L, const unsigned char *src, size_t base,
                       size_t lim, size_t len, int window, size_t pos,
                       const mp_fmtentry *e, const char *fmt, int push,
                       size_t *end, int *needcopy)
{
    cursor c;
    const mp_item *it;
    int n = 0;
    int allocated = 0;   /* a string result came before this item */
    /* Room for every result of a compiled format at once spares a check
     * per value; when there is not (or the format is not compiled), each
     * value checks, raising where it always has. */
    int roomy = push && e != NULL && lua_checkstack(L, e->n + 1);
    cursor_init(&c, e, fmt);
    while ((it = cursor_next(&c)) != NULL) {
        int size = it->size;
        size_t pad = (size_t)(-pos) & it->amask;
        kopt k = (kopt)it->kind;
        const unsigned char *p;
        if (k == K_ERR)
            raise_item(L, MP_UNPACK_FMTARG, it);
        if (pad + (size_t)size > lim - pos)
            raise_short(L, MP_UNPACK_OFFARG, 0, pos,
                        (lua_Unsigned)pad + (lua_Unsigned)size, len, window);
        pos += pad;
        p = src + (pos - base);
        if (k == K_PAD || k == K_PADALIGN) {
            pos += (size_t)size;
            continue;
        }
        if (push) {
            if (!roomy)
                luaL_checkstack(L, 2, "too many results");
        } else if (allocated) {
            *needcopy = 1;
        }
        n++;
        switch (k) {
        case K_INT: case K_UINT: {
            lua_Unsigned v = get_int(L, p, it->little, size, k == K_INT);
            if (push)
                lua_pushinteger(L, u2s(v));
            break;
        }
        case K_FLOAT: {
            float v;
            if (push) {
                copy_order((unsigned char *)&v, p, sizeof v, it->little);
                lua_pushnumber(L, (lua_Number)v);
            }
            break;
        }
        case K_NUMBER: {
            lua_Number v;
            if (push) {
                copy_order((unsigned char *)&v, p, sizeof v, it->little);
                lua_pushnumber(L, v);
            }
            break;
        }
        case K_DOUBLE: {
            double v;
            if (push) {
                copy_order((unsigned char *)&v, p, sizeof v, it->little);
                lua_pushnumber(L, (lua_Number)v);
            }
            break;
        }
        case K_CHAR:
            if (push)
                lua_pushlstring(L, (const char *)p, (size_t)size);
            allocated = 1;
            break;
        case K_STRING: {
            lua_Unsigned l = get_int(L, p, it->little, size, 0);
            size_t room = lim - pos - (size_t)size;
            if (l > (lua_Unsigned)room) {
                lua_Unsigned need = (lua_Unsigned)pad + (lua_Unsigned)size;
                need = l > (lua_Unsigned)-1 - need ? (lua_Unsigned)-1 : need + l;
                raise_short(L, MP_UNPACK_OFFARG, 0, pos - pad, need,
                            len, window);
            }
            if (push)
                lua_pushlstring(L, (const char *)p + size, (size_t)l);
            pos += (size_t)l;
            allocated = 1;
            break;
        }
        case K_ZSTR: {
            const unsigned char *z =
                pos < lim ? (const unsigned char *)memchr(p, '\0', lim - pos)
                          : NULL;
            if (z == NULL)
                mpl_argerror(L, MP_UNPACK_OFFARG,
                              "unfinished string for format 'z'");
            if (push)
                lua_pushlstring(L, (const char *)p, (size_t)(z - p));
            pos += (size_t)(z - p) + 1;
            allocated = 1;
            break;
        }
        case K_PAD: case K_PADALIGN: case K_NOP: case K_ERR:
            break;
        }
        pos += (size_t)size;
    }
    if (push) {
        lua_pushinteger(L, (lua_Integer)pos);
        return n + 1;
    }
    *end = pos;
    return n;
}

/* unpack_walk for a compiled format of integers only (the common case),
 * once the stack has room for every result: the same checks in the same
 * order. */
static int unpack_ints(lua_State *L, const mp_fmtentry *e,
                       const unsigned char *buf, size_t len, size_t pos,
                       int window)
{
    int i;
    for (i = 0; i < e->n; i++) {
        const mp_item *it = &e->items[i];
        size_t pad = (size_t)(-pos) & it->amask;
        if (pad + (size_t)it->size > len - pos)
            raise_short(L, MP_UNPACK_OFFARG, 0, pos,
                        (lua_Unsigned)pad + (lua_Unsigned)it->size, len,
                        window);
        pos += pad;
        lua_pushinteger(L, u2s(get_int(L, buf + pos, it->little, it->size,
                                       it->kind == K_INT)));
        pos += (size_t)it->size;
    }
    lua_pushinteger(L, (lua_Integer)pos);
    return e->n + 1;
}

int mp_lua_unpack(lua_State *L, mp_fmtcache *cache, const unsigned char *buf,
                  size_t len, lua_Integer off, const char *fmt,
                  size_t fmtlen, int window)
{
    size_t end;
    int needcopy = 0;
    int copyidx, n;
    const unsigned char *copy;
    const mp_fmtentry *e;

    mp_fmtentry own;

    check_offset(L, off, len, MP_UNPACK_OFFARG, window);
    e = cache != NULL ? fmt_lookup(cache, fmt, fmtlen) : NULL;
    if (e != NULL && e->ints && lua_checkstack(L, e->n + 1))
        return unpack_ints(L, e, buf, len, (size_t)off, window);
    /* A string result allocates, and a finalizer run then may unpack
     * through the same cache and overwrite e's slot: walk a copy. */
    if (e != NULL && e->hasstr) {
        own = *e;
        e = &own;
    }
    /* Numbers only (the common case): read the page directly. */
    if (e != NULL ? !e->hasstr : strpbrk(fmt, "csz") == NULL)
        return unpack_walk(L, buf, 0, len, len, window, (size_t)off, e, fmt,
                           1, NULL, NULL);
    /* Strings: validate first; copy the data when a string is followed by
     * other items (invariant 2). */
    unpack_walk(L, buf, 0, len, len, window, (size_t)off, e, fmt, 0, &end,
                &needcopy);
    if (!needcopy)
        return unpack_walk(L, buf, 0, len, len, window, (size_t)off, e, fmt,
                           1, NULL, NULL);
    luaL_checkstack(L, 1, "too many results");
    lua_pushlstring(L, (const char *)buf + off, end - (size_t)off);
    copyidx = lua_gettop(L);
    copy = (const unsigned char *)lua_tostring(L, copyidx);
    n = unpack_walk(L, copy, (size_t)off, end, len, window, (size_t)off, e,
                    fmt, 1, NULL, NULL);
    lua_remove(L, copyidx);
    return n;
}
