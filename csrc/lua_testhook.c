/*
 * lua_testhook.c -- test-only: core._barrier_hook(fn | nil),
 * core._barrier_hook_error() and core._inject_fault(op, code [, after]).
 *
 * Owns the binding's io hook (mp_set_io_hook): installed while a fault is
 * armed or a barrier hook is set, else the real operations run.  Uses
 * lua_util.h and the core only; declared in lua_testhook.h.
 *
 * Not part of the API (the leading underscore says so): these exist for the
 * crash harness of the Lua layer (spec/crash_harness.lua, spec/16), which
 * needs the file's content at every durability barrier, as
 * test/crash_sim.c gets it in C through mp_set_io_hook.
 *
 * core._barrier_hook(fn) -- while set, every durability barrier of every
 *   pager in this process (commits, and open's invalidation of a rejected
 *   root) first calls fn(image), where image is the whole file's current
 *   content as a string (read with pread: writes through the mapping and
 *   through pwrite are all in the page cache), then runs the real barrier
 *   (or the fault core._inject_fault armed: the two compose).  fn's
 *   return values are ignored.  core._barrier_hook(nil) removes it.
 *   Process-wide, like mp_set_io_hook: set it from one Lua state at a time
 *   (a state that closes while its hook is set removes it).
 *
 * How fn runs.  The barrier happens deep inside the C core (in the middle
 * of a commit), so fn must neither raise through it nor reenter it:
 *  - fn runs under lua_pcall on a thread of its own (made when the hook is
 *    set), whatever thread issued the barrier;
 *  - an error in fn makes the barrier fail with EIO without running it: the
 *    call that committed returns nil, msg, "io" and the pager is poisoned,
 *    exactly like any failed barrier (README, "When the disk fails").  The
 *    error's message is kept: core._barrier_hook_error() returns it (and
 *    forgets it), or nil when there was none;
 *  - while fn runs, every use of a pager raises "inside a barrier hook":
 *    pager methods, views, writers, transactions, mp.create / mp.open, and
 *    core._barrier_hook itself (mpl_in_barrier_hook, checked by the
 *    binding's accessors; closing a pager by garbage collection is allowed,
 *    it cannot be the pager that is committing, which is reachable);
 *  - the garbage collector is stopped while fn runs (restarted after, if it
 *    was running), so no finalizer runs behind fn's back;
 *  - a barrier issued while fn runs (none can be, given the above) would
 *    not call fn again.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"

#include "mappedpages.h"
#include "lua_testhook.h"

int mpl_in_barrier_hook;

static void update_io_hook(void);

static struct {
    lua_State *T;      /* the thread fn runs on; NULL: no hook */
    lua_State *owner;  /* main thread of the state that set the hook */
    int fnref, thref;  /* registry references to fn and T */
} bh = { NULL, NULL, LUA_NOREF, LUA_NOREF };

static const char ERRKEY[] = "mappedpages.core._barrier_hook_error";
static const char SENTINEL[] = "mappedpages.core._barrier_hook_sentinel";

static int barrier_hook_active(void)
{
    return bh.T != NULL;
}

/* Run under lua_pcall on bh.T with the fd at index 1: read the file, call
 * fn(image) under a pcall of its own, keep its error message.  Returns
 * (pushes) true when fn raised. */
static int hook_run(lua_State *T)
{
    int fd = (int)lua_tointeger(T, 1);
    struct stat sb;
    size_t len, got = 0;
    luaL_Buffer b;
    char *buf;
    if (fstat(fd, &sb) != 0)
        return luaL_error(T, "barrier hook: fstat: %s", strerror(errno));
    len = (size_t)sb.st_size;
    lua_rawgeti(T, LUA_REGISTRYINDEX, bh.fnref);
    buf = luaL_buffinitsize(T, &b, len);
    while (got < len) {
        ssize_t r = pread(fd, buf + got, len - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return luaL_error(T, "barrier hook: pread: %s", strerror(errno));
        if (r == 0)
            break;                  /* shorter than fstat said */
        got += (size_t)r;
    }
    luaL_pushresultsize(&b, got);
    if (lua_pcall(T, 1, 0, 0) != LUA_OK) {
        if (lua_type(T, -1) != LUA_TSTRING) {
            lua_pushfstring(T, "(error object is a %s value)",
                            luaL_typename(T, -1));
            lua_remove(T, -2);
        }
        lua_setfield(T, LUA_REGISTRYINDEX, ERRKEY);
        lua_pushboolean(T, 1);
        return 1;
    }
    lua_pushboolean(T, 0);
    return 1;
}

/* Called by the io hook (fault_hook, below) before every barrier:
 * 0 to go on with the barrier, or the errno it must fail with. */
static int barrier_callback(int fd)
{
    lua_State *T = bh.T;
    int stopped, status, failed;
    if (T == NULL || mpl_in_barrier_hook)
        return 0;
    stopped = lua_gc(T, LUA_GCISRUNNING) == 1;
    if (stopped)
        lua_gc(T, LUA_GCSTOP);
    mpl_in_barrier_hook = 1;
    lua_settop(T, 0);
    lua_pushcfunction(T, hook_run);   /* T is fresh: stack room for both */
    lua_pushinteger(T, (lua_Integer)fd);
    status = lua_pcall(T, 1, 1, 0);
    failed = status != LUA_OK || lua_toboolean(T, -1);
    lua_settop(T, 0);
    mpl_in_barrier_hook = 0;
    if (stopped)
        lua_gc(T, LUA_GCRESTART);
    return failed ? EIO : 0;
}

/* Raise if called from inside the hook's callback. */
void mpl_check_not_in_hook(lua_State *L)
{
    if (mpl_in_barrier_hook)
        luaL_error(L, "attempt to use a pager inside a barrier hook "
                   "(core._barrier_hook callbacks must not reenter the "
                   "pager)");
}

static void hook_clear(lua_State *L)
{
    if (bh.T != NULL && L != NULL) {
        luaL_unref(L, LUA_REGISTRYINDEX, bh.fnref);
        luaL_unref(L, LUA_REGISTRYINDEX, bh.thref);
    }
    bh.T = NULL;
    bh.owner = NULL;
    bh.fnref = bh.thref = LUA_NOREF;
    update_io_hook();
}

static lua_State *main_thread(lua_State *L)
{
    lua_State *m;
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    m = lua_tothread(L, -1);
    lua_pop(L, 1);
    return m;
}

/* __gc of a registry sentinel: the state is closing. */
static int sentinel_gc(lua_State *L)
{
    if (bh.T != NULL && bh.owner == main_thread(L))
        hook_clear(NULL);   /* the registry is going away with the state */
    return 0;
}

/* core._barrier_hook(fn | nil) */
int mpl_l_barrier_hook(lua_State *L)
{
    lua_State *T;
    int fnref, thref;
    mpl_check_not_in_hook(L);
    if (lua_isnoneornil(L, 1)) {
        if (bh.T != NULL && bh.owner == main_thread(L))
            hook_clear(L);
        else if (bh.T != NULL)
            hook_clear(NULL);   /* another state's: drop it, leave its refs */
        return 0;
    }
    luaL_checktype(L, 1, LUA_TFUNCTION);
    /* everything that may raise first */
    if (lua_getfield(L, LUA_REGISTRYINDEX, SENTINEL) == LUA_TNIL) {
        lua_newuserdatauv(L, 1, 0);
        lua_createtable(L, 0, 1);
        lua_pushcfunction(L, sentinel_gc);
        lua_setfield(L, -2, "__gc");
        lua_setmetatable(L, -2);
        lua_setfield(L, LUA_REGISTRYINDEX, SENTINEL);
    }
    lua_pop(L, 1);
    lua_pushboolean(L, 0);          /* the slot exists before any error */
    lua_setfield(L, LUA_REGISTRYINDEX, ERRKEY);
    T = lua_newthread(L);
    lua_pushvalue(L, 1);
    fnref = luaL_ref(L, LUA_REGISTRYINDEX);    /* pops fn */
    thref = luaL_ref(L, LUA_REGISTRYINDEX);    /* pops T */
    if (bh.T != NULL)                          /* replace the old hook */
        hook_clear(bh.owner == main_thread(L) ? L : NULL);
    bh.fnref = fnref;
    bh.thref = thref;
    bh.T = T;
    bh.owner = main_thread(L);
    update_io_hook();
    return 0;
}

/* core._barrier_hook_error() -> the message of the last error fn raised
 * (then forgotten), or nil. */
int mpl_l_barrier_hook_error(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, ERRKEY) != LUA_TSTRING) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushboolean(L, 0);
    lua_setfield(L, LUA_REGISTRYINDEX, ERRKEY);
    return 1;
}

/* ---- fault injection (core._inject_fault) ---------------------------- */

/* Test support: inject I/O faults through mp_set_io_hook.
 * core._inject_fault(op, code [, after]) with op "barrier", "grow" or
 * "write" and code "eio" or "enospc" lets `after` (default 0) operations
 * of that kind succeed, then fails every later one with that errno (until
 * cleared); faults of different kinds can be armed at once.  With code nil
 * every fault is cleared and the real operations are restored.
 * Process-wide, like the hook.  The same io hook calls the barrier hook
 * (core._barrier_hook, above) before each barrier, fault or not. */
static struct { int err; lua_Integer after; } io_fault[3];

static int fault_hook(mp_io_op op, int fd, void *ctx)
{
    (void)ctx;
    if (op == MP_IO_BARRIER) {
        int e = barrier_callback(fd);
        if (e != 0)
            return e;
    }
    if ((unsigned)op < 3 && io_fault[op].err) {
        if (io_fault[op].after > 0)
            io_fault[op].after--;
        else
            return io_fault[op].err;
    }
    if (op != MP_IO_BARRIER)
        return 0;                     /* the real operation runs */
    while (fdatasync(fd) != 0)
        if (errno != EINTR)
            return errno;
    return 0;
}

static void update_io_hook(void)
{
    int armed = io_fault[0].err || io_fault[1].err || io_fault[2].err;
    mp_set_io_hook(armed || barrier_hook_active() ? fault_hook : NULL,
                   NULL);
}

int mpl_l_inject_fault(lua_State *L)
{
    static const char *const ops[] = { "barrier", "grow", "write", NULL };
    static const char *const codes[] = { "eio", "enospc", NULL };
    static const mp_io_op opv[] = { MP_IO_BARRIER, MP_IO_GROW, MP_IO_WRITE };
    if (lua_isnoneornil(L, 2)) {
        if (!lua_isnoneornil(L, 1))
            (void)luaL_checkoption(L, 1, NULL, ops);
        memset(io_fault, 0, sizeof io_fault);
        update_io_hook();
        return 0;
    }
    mp_io_op op = opv[luaL_checkoption(L, 1, NULL, ops)];
    int err = luaL_checkoption(L, 2, NULL, codes) == 0 ? EIO : ENOSPC;
    lua_Integer after = mpl_optinteger(L, 3, 0);
    mpl_argcheck(L, after >= 0, 3, "must be non-negative");
    io_fault[op].err = err;
    io_fault[op].after = after;
    update_io_hook();
    return 0;
}
