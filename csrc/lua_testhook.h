/*
 * lua_testhook.h -- the binding's test-only hooks (lua_testhook.c):
 * core._barrier_hook, core._barrier_hook_error, core._inject_fault.
 * Below lua_binding.c, which asks mpl_check_not_in_hook at every access.
 */
#ifndef MAPPEDPAGES_LUA_TESTHOOK_H
#define MAPPEDPAGES_LUA_TESTHOOK_H

#include "lua.h"

#include "lua_util.h"

/* Nonzero while a core._barrier_hook callback runs: the binding's
 * accessors then raise (mpl_check_not_in_hook) instead of reentering the
 * pager that is in the middle of its barrier. */
extern int mpl_in_barrier_hook;
void mpl_check_not_in_hook(lua_State *L);
/* core._barrier_hook(fn | nil), core._barrier_hook_error() */
int mpl_l_barrier_hook(lua_State *L);
int mpl_l_barrier_hook_error(lua_State *L);
/* core._inject_fault(op, code [, after]) */
int mpl_l_inject_fault(lua_State *L);

#endif /* MAPPEDPAGES_LUA_TESTHOOK_H */
