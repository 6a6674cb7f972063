/*
 * lua_txn.c -- the Transaction type.
 *
 * Owns: pager:begin(), pager:in_transaction() and the Transaction methods.  A transaction is
 * active while it is the pager's open transaction: the pager numbers its
 * begin() calls (txseq) and remembers whether that one is still open
 * (txopen), so a transaction object can tell that it ended even when its
 * pager was closed (close rolls back) or collected.
 *
 * States: UNINIT (constructed, begin not done yet) -> ACTIVE -> one of
 * COMMITTED, ROLLEDBACK (explicit, __close, __gc, or pager closed) and
 * FAILED (commit failed: the transaction was rolled back in memory; after
 * a failed write or barrier the pager is also poisoned and refuses later
 * commits, after a failed growth it is not).
 */
#include <stdio.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "mappedpages.h"
#include "lua_binding.h"

/* Type-only accessor. */
static mpl_txn *totxn(lua_State *L)
{
    return (mpl_txn *)mpl_checkudata(L, 1, MPL_TXN_MT);
}

/* Is this the open transaction of an open pager? */
static int txn_live(const mpl_txn *t)
{
    const mpl_pager *pg = t->pg;
    return t->state == MPL_TX_ACTIVE && pg != NULL && pg->p != NULL
        && pg->txopen && pg->txseq == t->seq;
}

/* Checked accessor: the active transaction or raise. */
static mpl_txn *checktxn(lua_State *L)
{
    mpl_txn *t = totxn(L);
    const char *why;
    mpl_check_not_in_hook(L);
    if (txn_live(t))
        return t;
    switch (t->state) {
    case MPL_TX_COMMITTED:
        why = "attempt to use a finished transaction (it was committed)";
        break;
    case MPL_TX_ROLLEDBACK:
        why = "attempt to use a finished transaction (it was rolled back)";
        break;
    case MPL_TX_FAILED:
        why = "attempt to use a finished transaction (its commit failed)";
        break;
    case MPL_TX_ACTIVE:
        why = "attempt to use a finished transaction (its pager was closed)";
        break;
    default:
        why = "attempt to use a finished transaction";
        break;
    }
    mpl_argerror(L, 1, why);
    return NULL;
}

/* End the pager's record of the open transaction after a rollback. */
static void txn_ended(mpl_pager *pg)
{
    pg->txopen = 0;
    pg->txfreed = 0;
    mpl_reg_sweep(pg);
}

/* pager:begin() -> transaction | nil, msg, code.  Raises if a transaction
 * is open already (no nesting). */
int mpl_pager_begin(lua_State *L)
{
    mpl_pager *pg = mpl_checkpager(L, 1);
    mpl_txn *t;
    mp_err e;
    if (pg->txopen)
        return mpl_argerror(L, 1, "a transaction is already open");
    t = (mpl_txn *)lua_newuserdatauv(L, sizeof *t, 1);
    memset(t, 0, sizeof *t);
    t->state = MPL_TX_UNINIT;
    luaL_setmetatable(L, MPL_TXN_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    pg = mpl_checkpager(L, 1);   /* finalizers may have run */
    if (pg->txopen)
        return mpl_argerror(L, 1, "a transaction is already open");
    e = mp_begin(pg->p);
    if (e != MP_OK)
        return mpl_fail(L, pg, e, 1);
    pg->txseq++;
    pg->txopen = 1;
    pg->txfreed = 0;
    t->pg = pg;
    t->seq = pg->txseq;
    t->state = MPL_TX_ACTIVE;
    return 1;
}

/* pager:in_transaction() -> false | integer.  false when no explicit
 * transaction (begin, pager:transaction) is open; while one is, the
 * pager's number of it (txseq: 1 for the first begin() of this Pager
 * object, 2 for the next...), which no other transaction of this Pager
 * object ever has.  Raises on a closed pager. */
int mpl_pager_in_transaction(lua_State *L)
{
    mpl_pager *pg = mpl_checkpager(L, 1);
    if (pg->txopen)
        lua_pushinteger(L, (lua_Integer)pg->txseq);
    else
        lua_pushboolean(L, 0);
    return 1;
}

/* core._txn_seq(pager) -> integer | false | nil: pager:in_transaction()
 * for the Lua layer's hot paths, which must not raise on a closed pager:
 * nil there, so the caller can check its handle and raise naming itself
 * (one call where in_transaction() and view:alive() were two). */
int mpl_l_txn_seq(lua_State *L)
{
    const mpl_pager *pg = mpl_topager(L, 1);
    if (pg->p == NULL)
        lua_pushnil(L);
    else if (pg->txopen)
        lua_pushinteger(L, (lua_Integer)pg->txseq);
    else
        lua_pushboolean(L, 0);
    return 1;
}

/* ---- the commit hook ----------------------------------------------------
 *
 * core._commit_hook(fn) registers one Lua function for this Lua state (the
 * Lua layer's: mappedpages.access); core._want_commit_hook(pager) asks
 * that the open transaction's tx:commit() call fn(pager, true) first,
 * before the core's commit, so that what fn writes (through the
 * transaction's writers) is part of the same atomic commit.  A module that
 * keeps some writes of a transaction in Lua until its end (the slab's
 * header words, the B-tree's changed nodes) writes them there.  fn returns
 * true, or nil, msg, code: then, and when it raises, the transaction is
 * rolled back and commit returns nil, msg, code (raises again).  Nothing
 * to undo after a rollback: fn's pending writes die with the transaction,
 * like the writes it would have made.  While fn runs, tx:commit() and
 * tx:rollback() raise.  After the core's commit succeeded, fn(pager,
 * false) runs once more, outside any transaction (a module moves what it
 * wrote into its cache of committed state); the commit stands whatever it
 * does, so its errors are dropped: it must not be able to fail. */
static const char HOOK_KEY[] = "mappedpages.commit_hook";

int mpl_l_commit_hook(lua_State *L)
{
    if (!lua_isnil(L, 1))
        luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, HOOK_KEY);
    return 0;
}

int mpl_l_want_commit_hook(lua_State *L)
{
    mpl_pager *pg = mpl_checkpager(L, 1);
    if (!pg->txopen)
        return mpl_argerror(L, 1, "no transaction is open");
    pg->hookseq = pg->txseq;
    return 0;
}

/* The transaction failed before the core's commit: roll it back. */
static void txn_failed(mpl_txn *t)
{
    mpl_pager *pg = t->pg;
    if (pg->p != NULL && mp_in_txn(pg->p))
        mp_rollback(pg->p);
    t->state = MPL_TX_FAILED;
    txn_ended(pg);
}

/* Run the hook for t (index 1) if its transaction asked for it: 0 to go
 * on with the commit, else the number of results to return.  *ran is set
 * when it ran (and so runs again after the commit). */
static int run_hook(lua_State *L, mpl_txn *t, int *ran)
{
    mpl_pager *pg = t->pg;
    int status;
    *ran = 0;
    if (pg->hookseq != pg->txseq)
        return 0;
    pg->hookseq = 0;
    if (lua_getfield(L, LUA_REGISTRYINDEX, HOOK_KEY) != LUA_TFUNCTION) {
        lua_pop(L, 1);
        return 0;
    }
    *ran = 1;
    lua_getiuservalue(L, 1, 1);               /* the pager */
    lua_pushboolean(L, 1);                    /* before the commit */
    pg->inhook = 1;
    status = lua_pcall(L, 2, 3, 0);
    pg->inhook = 0;
    if (status != LUA_OK) {
        if (txn_live(t))
            txn_failed(t);
        return lua_error(L);
    }
    if (!txn_live(t)) {
        lua_pushnil(L);
        lua_pushliteral(L, "the transaction ended in its commit hook");
        lua_pushliteral(L, "transaction");
        return 3;
    }
    if (lua_toboolean(L, -3)) {
        lua_pop(L, 3);
        return 0;
    }
    txn_failed(t);
    if (lua_isnil(L, -2)) {
        lua_pushliteral(L, "the commit hook failed");
        lua_replace(L, -3);
    }
    lua_pushnil(L);
    lua_replace(L, -4);
    return 3;
}

/* After a commit that succeeded: fn(pager, false), its errors dropped
 * (the commit is durable; nothing it does can change that). */
static void run_hook_after(lua_State *L)
{
    int top = lua_gettop(L);
    if (lua_getfield(L, LUA_REGISTRYINDEX, HOOK_KEY) == LUA_TFUNCTION) {
        lua_getiuservalue(L, 1, 1);
        lua_pushboolean(L, 0);
        (void)lua_pcall(L, 2, 0, 0);
    }
    lua_settop(L, top);
}

/* Raise if the commit hook of t's pager is running. */
static void check_not_in_commit_hook(lua_State *L, const mpl_txn *t)
{
    if (t->pg->inhook)
        mpl_argerror(L, 1, "attempt to end a transaction inside its commit hook");
}

/* tx:commit() -> true | nil, msg, code.  On failure the transaction is
 * over (rolled back in memory) and the pager refuses later commits. */
static int txn_commit(lua_State *L)
{
    mpl_txn *t = checktxn(L);
    mpl_pager *pg = t->pg;
    mp_err e;
    const char *msg;
    char buf[512];
    int n, hooked;
    check_not_in_commit_hook(L, t);
    n = run_hook(L, t, &hooked);
    if (n > 0)
        return n;
    e = mp_commit(pg->p);
    if (e == MP_OK) {
        pg->txopen = 0;
        if (pg->txfreed) {
            /* The frees are final: views of what they took die for good,
             * before the ids can be handed out again (next transaction). */
            pg->txfreed = 0;
            mpl_reg_sweep(pg);
        }
        t->state = MPL_TX_COMMITTED;
        if (hooked)
            run_hook_after(L);
        lua_pushboolean(L, 1);
        return 1;
    }
    if (e == MP_ETXN || e == MP_EINVAL || e == MP_EREADONLY) {
        /* The core has no transaction open: ours is gone. */
        if (!mp_in_txn(pg->p)) {
            t->state = MPL_TX_FAILED;
            txn_ended(pg);
        }
        return mpl_fail(L, pg, e, 1);
    }
    msg = mp_errmsg(pg->p);
    if (msg == NULL || *msg == '\0')
        msg = mp_strerror(e);
    snprintf(buf, sizeof buf, "%s", msg);   /* rollback may reset it */
    /* Roll back before any Lua allocation (which could run finalizers). */
    if (mp_in_txn(pg->p))
        mp_rollback(pg->p);
    t->state = MPL_TX_FAILED;
    txn_ended(pg);
    lua_pushnil(L);
    lua_pushstring(L, buf);
    lua_pushstring(L, mp_errname(e));
    return 3;
}

/* tx:rollback() -> true.  Restores allocation state and the root. */
static int txn_rollback(lua_State *L)
{
    mpl_txn *t = checktxn(L);
    mpl_pager *pg = t->pg;
    mp_err e;
    check_not_in_commit_hook(L, t);
    e = mp_rollback(pg->p);
    t->state = MPL_TX_ROLLEDBACK;
    txn_ended(pg);
    if (e != MP_OK)
        return mpl_fail(L, pg, e, 1);
    lua_pushboolean(L, 1);
    return 1;
}

/* tx:active() -> true while the transaction can still commit or roll
 * back. */
static int txn_active(lua_State *L)
{
    lua_pushboolean(L, txn_live(totxn(L)));
    return 1;
}

/* __gc: roll back if still active; no-op otherwise. */
static int txn_gc(lua_State *L)
{
    mpl_txn *t = totxn(L);
    if (txn_live(t)) {
        mp_rollback(t->pg->p);
        txn_ended(t->pg);
    }
    if (t->state == MPL_TX_ACTIVE)
        t->state = MPL_TX_ROLLEDBACK;
    return 0;
}

/* __close: the same, refused inside a barrier hook (where __gc is not: a
 * transaction being collected is not the one committing). */
static int txn_close(lua_State *L)
{
    if (txn_live(totxn(L)))
        mpl_check_not_in_hook(L);
    return txn_gc(L);
}

/* tostring(tx) -> "mappedpages.Transaction (active)" and so on. */
static int txn_tostring(lua_State *L)
{
    mpl_txn *t = totxn(L);
    const char *s;
    if (txn_live(t))
        s = "active";
    else
        switch (t->state) {
        case MPL_TX_COMMITTED: s = "committed"; break;
        case MPL_TX_ROLLEDBACK: s = "rolled back"; break;
        case MPL_TX_FAILED: s = "failed"; break;
        case MPL_TX_ACTIVE: s = "rolled back: pager closed"; break;
        default: s = "not begun"; break;
        }
    lua_pushfstring(L, "mappedpages.Transaction (%s)", s);
    return 1;
}

static const luaL_Reg txn_methods[] = {
    {"commit", txn_commit},
    {"rollback", txn_rollback},
    {"active", txn_active},
    {NULL, NULL}
};

static const luaL_Reg txn_meta[] = {
    {"__close", txn_close},
    {"__gc", txn_gc},
    {"__tostring", txn_tostring},
    {NULL, NULL}
};

void mpl_open_txn(lua_State *L, int modidx)
{
    mpl_newclass(L, modidx, MPL_TXN_MT, txn_methods, txn_meta, 0,
                 "_Transaction_methods");
}
