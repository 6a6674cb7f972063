/*
 * lua_util.c -- argument errors that name the function, and classes
 * (lua_util.h).
 *
 * Owns: mpl_argerror / mpl_typeerror / mpl_checkudata, and mpl_newclass.
 * Uses nothing but the Lua API.
 */
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "lua_util.h"

/* Search table t for a string key whose value is rawequal to the value at
 * fn; pushes that key and returns it, or pushes nothing and returns NULL. */
static const char *key_of(lua_State *L, int t, int fn)
{
    if (lua_type(L, t) != LUA_TTABLE)
        return NULL;
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_rawequal(L, -1, fn)) {
            lua_pop(L, 1);          /* the key stays on the stack */
            return lua_tostring(L, -1);
        }
        lua_pop(L, 1);
    }
    return NULL;
}

/* The name under which the function at fn is registered by this module:
 * pushes it and returns it, or returns NULL (pushing garbage the caller
 * does not care about: an error is raised right after). */
static const char *binding_name(lua_State *L, int fn)
{
    static const char *const types[] = { MPL_PAGER_MT, MPL_VIEW_MT,
                                         MPL_WRITER_MT, MPL_TXN_MT, NULL };
    const char *name;
    int i;
    for (i = 0; types[i] != NULL; i++) {
        int mt;
        luaL_getmetatable(L, types[i]);
        mt = lua_gettop(L);
        lua_getfield(L, mt, "__index");
        if ((name = key_of(L, mt + 1, fn)) != NULL
            || (name = key_of(L, mt, fn)) != NULL)
            return name;
        lua_settop(L, mt - 1);
    }
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, MPL_MODULE_NAME);
    return key_of(L, lua_gettop(L), fn);
}

const char *mpl_funcname(lua_State *L, int *method)
{
    lua_Debug ar;
    const char *name = NULL;
    if (method != NULL)
        *method = 0;
    luaL_checkstack(L, 8, NULL);
    if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "nf", &ar)) {
        if (method != NULL)
            *method = ar.namewhat != NULL && strcmp(ar.namewhat, "method") == 0;
        name = binding_name(L, lua_gettop(L));
        if (name == NULL)
            name = ar.name;
    }
    return name;
}

int mpl_argerror(lua_State *L, int arg, const char *extramsg)
{
    int method;
    const char *name = mpl_funcname(L, &method);
    if (name == NULL)
        name = "?";
    if (method) {
        arg--;                    /* do not count self */
        if (arg == 0)
            return luaL_error(L, "calling '%s' on bad self (%s)", name,
                              extramsg);
    }
    return luaL_error(L, "bad argument #%d to '%s' (%s)", arg, name, extramsg);
}

int mpl_typeerror(lua_State *L, int arg, const char *tname)
{
    const char *got;
    if (luaL_getmetafield(L, arg, "__name") == LUA_TSTRING)
        got = lua_tostring(L, -1);
    else if (lua_type(L, arg) == LUA_TLIGHTUSERDATA)
        got = "light userdata";
    else
        got = luaL_typename(L, arg);
    return mpl_argerror(L, arg, lua_pushfstring(L, "%s expected, got %s",
                                                tname, got));
}

void *mpl_checkudata(lua_State *L, int arg, const char *tname)
{
    void *p = luaL_testudata(L, arg, tname);
    if (p == NULL)
        mpl_typeerror(L, arg, tname);
    return p;
}

void mpl_newclass(lua_State *L, int modidx, const char *name,
                  const luaL_Reg *methods, const luaL_Reg *meta,
                  int with_mt_upvalue, const char *export_name)
{
    int nup = with_mt_upvalue ? 1 : 0;
    modidx = lua_absindex(L, modidx);
    luaL_newmetatable(L, name);   /* 0 on a second luaopen: reuse it */
    /* The methods table: reuse the existing one, so that methods added in
     * Lua (pager:transaction) survive a reload of the C module. */
    if (lua_getfield(L, -1, "__index") != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "__index");
    }
    if (nup)
        lua_pushvalue(L, -2);
    luaL_setfuncs(L, methods, nup);
    if (export_name != NULL) {
        lua_pushvalue(L, -1);
        lua_setfield(L, modidx, export_name);
    }
    lua_pop(L, 1);                /* methods */
    if (nup)
        lua_pushvalue(L, -1);
    luaL_setfuncs(L, meta, nup);  /* into the metatable */
    lua_pop(L, 1);                /* metatable */
}
