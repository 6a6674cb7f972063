/*
 * lua_util.h -- the binding's argument checks and classes, on top of Lua
 * alone (the way lauxlib sits under the standard libraries).
 *
 * The bottom of the binding: it knows the Lua API and the names of the
 * binding's types and module, nothing of the C core.  lua_pack.c (the
 * view:pack / view:unpack engine) depends on this file only; every other
 * csrc/lua_*.c uses it too.  Order of the binding's files, each using only
 * those before it (lua_binding.h has the details):
 *   lua_util  <  lua_pack  <  lua_testhook  <  lua_binding
 *             <  lua_view, lua_txn, lua_span  <  lua_pager
 */
#ifndef MAPPEDPAGES_LUA_UTIL_H
#define MAPPEDPAGES_LUA_UTIL_H

#include "lua.h"
#include "lauxlib.h"

/* The binding's module and type (metatable) names: mpl_argerror looks a
 * function's name up in them. */
#define MPL_MODULE_NAME "mappedpages.core"
#define MPL_PAGER_MT "mappedpages.Pager"
#define MPL_VIEW_MT "mappedpages.View"
#define MPL_TXN_MT "mappedpages.Transaction"
#define MPL_WRITER_MT "mappedpages.Writer"

/* Argument errors that always name the function.  luaL_argerror names a
 * function from the calling instruction, so pcall(pager.free, pager, 0)
 * gives "bad argument #2 to '?'"; these look the running function up in
 * our method tables and metatables (and the module table) first, so the
 * message says 'free' however the method was called.  A method called
 * with ':' gets luaL_argerror's numbering (self not counted, "calling
 * 'alloc' on bad self (...)").  Only the error path pays for the lookup. */
int mpl_argerror(lua_State *L, int arg, const char *extramsg);
/* The running function's name as mpl_argerror finds it, or NULL; *method
 * (when not NULL) says whether it was called with ':'.  It leaves what it
 * looked at on the stack (the name among it): call it before pushing
 * results. */
const char *mpl_funcname(lua_State *L, int *method);
int mpl_typeerror(lua_State *L, int arg, const char *tname);
void *mpl_checkudata(lua_State *L, int arg, const char *tname);

#define mpl_argcheck(L, cond, arg, extramsg) \
    ((void)((cond) || mpl_argerror(L, (arg), (extramsg))))

static inline lua_Integer mpl_checkinteger(lua_State *L, int arg)
{
    int isnum;
    lua_Integer d = lua_tointegerx(L, arg, &isnum);
    if (!isnum) {
        if (lua_isnumber(L, arg))
            mpl_argerror(L, arg, "number has no integer representation");
        else
            mpl_typeerror(L, arg, "integer");
    }
    return d;
}

static inline lua_Number mpl_checknumber(lua_State *L, int arg)
{
    int isnum;
    lua_Number d = lua_tonumberx(L, arg, &isnum);
    if (!isnum)
        mpl_typeerror(L, arg, "number");
    return d;
}

static inline lua_Integer mpl_optinteger(lua_State *L, int arg,
                                         lua_Integer def)
{
    return lua_isnoneornil(L, arg) ? def : mpl_checkinteger(L, arg);
}

static inline const char *mpl_checklstring(lua_State *L, int arg,
                                           size_t *len)
{
    const char *s = lua_tolstring(L, arg, len);
    if (s == NULL)
        mpl_typeerror(L, arg, "string");
    return s;
}

static inline void mpl_checktype(lua_State *L, int arg, int t)
{
    if (lua_type(L, arg) != t)
        mpl_typeerror(L, arg, lua_typename(L, t));
}

/* Register a methods table and a metatable (safe to call twice per state),
 * store the methods table as module[export_name] when not NULL, and leave
 * the stack as it was.  with_mt_upvalue gives every function the metatable
 * as upvalue 1 (a cheap exact type check, see lua_view.c). */
void mpl_newclass(lua_State *L, int modidx, const char *name,
                  const luaL_Reg *methods, const luaL_Reg *meta,
                  int with_mt_upvalue, const char *export_name);

#endif /* MAPPEDPAGES_LUA_UTIL_H */
