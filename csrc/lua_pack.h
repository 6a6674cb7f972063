/*
 * lua_pack.h -- the engine of view:pack(off, fmt, ...) and view:unpack(off, fmt).
 *
 * Owns the string.pack format language applied in place to a fixed-size
 * byte buffer (a page).  The options and their semantics are exactly those
 * of Lua 5.4's string.pack / string.unpack (manual section 6.4.2):
 *   < > = ![n]  b B h H l L j J T  i[n] I[n]  f d n  s[n] z cn  x Xop  ' '
 * with the same checks and error messages ("integer overflow", "unsigned
 * overflow", "string contains zeros", "N-byte integer does not fit into Lua
 * Integer", "unfinished string for format 'z'", ...).  Two differences,
 * both due to working inside a page instead of on a Lua string:
 *
 *  - Offsets are 0-based byte offsets into the page; off may be 0 .. len
 *    inclusive (anything else raises "offset out of range"), and the
 *    returned next offset is 0-based too (string.unpack's position is
 *    1-based: it returns pos + 1 where we return pos).
 *  - Alignment ('!' and 'X') is relative to the start of the buffer (offset
 *    0: the page, or for a window (view:sub) the window's first byte), not
 *    to the start of the packed data: packing "!4 i4" at offset 2 writes 2
 *    padding bytes first, so that the integer lands at offset 4, where
 *    view:unpack(2, "!4 i4") finds it (string.unpack measures alignment
 *    from the start of its string too, so unpacking a page's bytes with
 *    string.unpack(fmt, view:read(), off + 1) gives the same values).
 *
 * Errors are raised as Lua errors.  Data that would run past the end of the
 * page raises "data does not fit in page (...)" (pack) or "page too short
 * (...)" (unpack; string.unpack says "data string too short"), naming the
 * offset argument; with `window` set the messages say "window" instead
 * ("data does not fit in window (8 bytes at offset 36, window of 40
 * bytes)"), and an offset outside the buffer reads "offset 41 is out of
 * range (window of 40 bytes)" instead of "offset out of range".  A missing
 * value reads "number expected, got no value" (string.pack says "got nil",
 * an artifact of its implementation).
 *
 * Stack layout.  Error messages name arguments by stack index, as
 * luaL_argerror does, assuming the layout of a method call: for
 * view:pack(off, fmt, v1, ...) the stack is [view, off, fmt, v1, ...],
 * values start at `first` (4; it must be at least 3), the offset is at
 * first - 2 and the format at first - 1; for view:unpack(off, fmt) the offset is at index 2 and the
 * format at 3 (MP_UNPACK_OFFARG, MP_UNPACK_FMTARG).  luaL_argerror then
 * prints them as arguments #1, #2, #3 ... of 'pack' / 'unpack'.
 *
 * Memory safety.  The caller must pass the buffer pointer after every check
 * of its own that may allocate (luaL_checkstring of a number converts it):
 * an allocation may run the garbage collector, and a finalizer may close
 * the pager and unmap the page.  These functions allocate nothing before
 * they have finished with buf, or copy what they still need first, so they
 * never touch buf after a point where the collector may have run.
 */
#ifndef MP_LUA_PACK_H
#define MP_LUA_PACK_H

#include <stddef.h>
#include <lua.h>

/* Compiled formats.  Parsing a format costs more than packing a few
 * integers, and the same few formats come back at every call, so each
 * pager keeps a small direct-mapped cache of parsed formats: one item per
 * option that takes room or reads a value (configuration options ' ', '<',
 * '>', '=', '!' are folded into the items' byte order and alignment), or a
 * final error item where the format goes wrong, raised when reached so
 * errors keep their order.  Alignment padding is computed from the offset
 * at every call.  An entry stores the format's bytes and is used only when
 * they equal the format's (the slot is picked by the string's address and
 * length), so it can never give a stale parse.  Formats longer than
 * MP_FMT_MAXLEN bytes or of more than MP_FMT_MAXITEMS items are parsed at
 * every call, by the same parser. */
#define MP_FMT_SLOTS 64          /* a power of two */
#define MP_FMT_MAXLEN 40
#define MP_FMT_MAXITEMS 12

typedef struct mp_item {
    int size;                    /* bytes; K_ERR: the error's argument */
    unsigned char kind;          /* kopt (lua_pack.c) */
    unsigned char little;        /* byte order */
    unsigned char amask;         /* alignment - 1; K_ERR: the error */
    unsigned char spare;
} mp_item;

typedef struct mp_fmtentry {
    mp_item items[MP_FMT_MAXITEMS];
    unsigned char valid, len, n;
    unsigned char hasstr;        /* some item is c, s or z */
    unsigned char ints;          /* every item is an integer */
    unsigned char nums;          /* every item is an integer or a float */
    char fmt[MP_FMT_MAXLEN];
} mp_fmtentry;

typedef struct mp_fmtcache {
    mp_fmtentry slot[MP_FMT_SLOTS];   /* all zeros: empty */
} mp_fmtcache;

#define MP_UNPACK_OFFARG 2
#define MP_UNPACK_FMTARG 3

/* Pack the Lua values at stack indices first, first+1, ... according to the
 * string.pack format fmt into buf[off ...], buf being len bytes long.
 * Validates the whole format, every value, and that everything fits in
 * [off, len) BEFORE writing any byte (so a failing call leaves the page
 * untouched); raises a Lua error otherwise.  Returns the offset just past
 * the packed bytes.  Padding bytes are written as zeros.  window: buf is a
 * window of a page (only the error messages differ). */
lua_Integer mp_lua_pack(lua_State *L, mp_fmtcache *cache, unsigned char *buf,
                        size_t len, lua_Integer off, const char *fmt,
                        size_t fmtlen, int first, int window);

/* Pack n rows one after another into buf[off ...]: row i packs fmt (as
 * mp_lua_pack) with, for each of the ncols values at stack indices cols,
 * cols+1, ..., its i-th element (raw) when it is a table, else the value
 * itself.  Raises on the first bad value or row that does not fit, having
 * written the rows before it: buf must be a scratch copy the caller
 * copies from only on success.  Errors name the failing value by its
 * stack index, an offset out of [0, len] and running out of room
 * argument offarg.  Returns the offset just past the last row. */
lua_Integer mp_lua_pack_rows(lua_State *L, mp_fmtcache *cache,
                             unsigned char *buf, size_t len, lua_Integer off,
                             const char *fmt, size_t fmtlen, lua_Integer n,
                             int cols, int ncols, int offarg, int window);

/* Unpack from buf[off ...] (buf being len bytes long) according to fmt;
 * pushes the values, then the offset just past them (0-based); returns the
 * number of values pushed (including that offset).  window: as for
 * mp_lua_pack. */
int mp_lua_unpack(lua_State *L, mp_fmtcache *cache, const unsigned char *buf,
                  size_t len, lua_Integer off, const char *fmt,
                  size_t fmtlen, int window);

#endif /* MP_LUA_PACK_H */
