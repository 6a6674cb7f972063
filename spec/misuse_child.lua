-- spec/misuse_child.lua -- the child process of spec/13-misuse_spec.lua: a
-- seeded random sequence of API calls, valid and invalid, checked against a
-- model after every step.
--
--   lua5.4 spec/misuse_child.lua SEED STEPS DIR [MAX_BYTES [PAGE_SIZE [MODE]]]
--
-- with the module paths of the build to test, e.g. from the repository
-- root: LUA_PATH_5_4='lua/?.lua;lua/?/init.lua;;' LUA_CPATH_5_4='build/?.so;;'
-- (build-asan/ under ASan, with the sanitizer runtimes in LD_PRELOAD as the
-- Makefile's test-asan does).  DIR must be an empty, writable directory.
-- MAX_BYTES (default 256 KiB) is the pagers' max_bytes: at 64 pages or less
-- the file is full all the time.  MODE is "model" (default) or "chaos"
-- (see chaos() below).  Prints "ok seed=... <counters>" and exits 0, or
-- prints "FAIL seed=S step=N op=NAME: what" and exits 1.
--
-- What model mode checks (docs/API.md, the rule for errors):
--  * every call returns or raises a Lua error (it runs under pcall; the
--    process must not crash: the spec runs this in a child process);
--  * misuse raises, and the message names the function: wrong types,
--    negative, huge and fractional numbers, NaN, ids out of range, reserved
--    or not allocated, double frees, bad bulk lists, dead views / writers /
--    transactions, closed pagers, mutations of a read-only pager, nested
--    transactions, metamethods called on the wrong objects;
--  * failures of the environment return nil, message, code: a file that
--    cannot grow past its max_bytes reservation ("full", "no_space"; only
--    where the file is that small), missing / existing / empty files, a
--    directory, a held lock, a failing durability barrier
--    (core._inject_fault) and the poisoned pager after it;
--  * a model of the state -- allocated regular pages and their bytes,
--    protected pids and their bytes (committed and inside the open
--    transaction), the root -- matches the pager after every step and after
--    close + reopen (read-write and read-only): nothing lost, nothing extra;
--    ids freed by the open transaction are not handed out again in it;
--  * a model of every view's, writer's and transaction's lifetime: each
--    object raises exactly when the model says it is dead (freed, freed and
--    reused, rolled back, its transaction ended, committed, discarded,
--    <close>d, collected, its pager closed or collected), and view:alive()
--    says so; pager:in_transaction() is false or the number of the open
--    transaction;
--  * windows (view:sub(off, len) with random offsets and lengths, valid or
--    not) of views, writers and windows: every method through them, with
--    offsets relative to the window, raising exactly where the model says
--    (outside the window, dead window or dead root) and reading and writing
--    the bytes the model predicts; a private writer's commit (through it or
--    a window) writes the page's current content with the span its writes
--    changed taken from its copy;
--  * pager:transaction(fn) returns fn's results, or rethrows fn's error
--    object unchanged (strings, tables, nil) after rolling back; fn that
--    begins, nests, closes the pager or yields (coroutines) included.
--
-- Nothing here depends on pairs() order (string hashes are seeded per run):
-- every random choice is made from a sorted list, so a seed replays the
-- same sequence of calls.

local mp = require "mappedpages"
local core = require "mappedpages.core"

local SEED = assert(math.tointeger(tonumber(arg[1])), "usage: SEED STEPS DIR [MAX_BYTES [PAGE_SIZE [MODE]]]")
local STEPS = assert(math.tointeger(tonumber(arg[2])), "STEPS")
local DIR = assert(arg[3], "DIR")
local MAX_BYTES = math.tointeger(tonumber(arg[4] or "")) or 256 * 1024
local P = math.tointeger(tonumber(arg[5] or "")) or 1024
local MODE = arg[6] or "model"

local Pager = mp._Pager_methods
local View = mp._View_methods
local Writer = mp._Writer_methods
local Txn = mp._Transaction_methods

local pack, unpack = table.pack, table.unpack
local ZERO = string.rep("\0", P)
local INT_MAX = 2147483647
local MAX_VIEWS = 40
-- Codes of a file that cannot grow: alloc_bulk(2^31 - 1) gets one of them
-- anyway; other calls only in a file of at most 64 pages (MAX_BYTES), which
-- the model fills all the time.  A larger file never gets near full here.
local TOO_BIG = { full = true, no_space = true }
local ENV_FULL = MAX_BYTES <= 64 * P and TOO_BIG or {}

---------------------------------------------------------------------------
-- randomness (a 64-bit LCG, as spec/helpers.lua's H.rng)

local rx = SEED
local function rnd(n)
  rx = rx * 6364136223846793005 + 1442695040888963407
  return ((rx >> 33) % n) + 1
end
local function pick(list) return list[rnd(#list)] end

-- nil cannot live in a list: NIL stands for it in value pools.
local NIL = setmetatable({}, { __name = "NIL", __tostring = function() return "nil" end })
local function v(x) if x == NIL then return nil end return x end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

---------------------------------------------------------------------------
-- state and failure reports

local S = {
  step = 0, op = "setup",
  path = DIR .. "/fuzz.mp",
  p = nil, inst = 0, closed = false, ro = false,
  m = nil,           -- the model: { reg = {id = true}, prot = {pid = bytes}, root = n }
  saved = nil,       -- the committed model while a transaction is open
  tx = nil,          -- { obj = Transaction or nil (inside transaction(fn)), seq = n }
  txseq = 0,         -- begin() calls of this pager that succeeded
  txfreed_r = {}, txfreed_p = {},   -- freed by the open transaction
  G = {}, gencount = 0,             -- view generations, as the binding's registry
  RC = {},           -- bytes of regular pages (not transactional)
  views = {},        -- records of views and writers (see new_rec)
  chk = {},          -- views check() reads through, by key
  deadtx = {},       -- ended transactions
  oldpagers = {},    -- closed pagers
  freed_r = {}, freed_p = {},       -- recently freed ids, to try again
  inner = false,     -- inside pager:transaction(fn)
  envcodes = {},     -- environment failures seen, by code
  page_count = 0,
  stats = { calls = 0, raised = 0, envfail = 0, ok = 0, commits = 0, rollbacks = 0,
            reopens = 0, faults = 0, reused = 0, windows = 0, window_calls = 0, merged = 0 },
}

local function show(x)
  if type(x) == "string" then
    if #x > 40 then return ("%q.."):format(x:sub(1, 40)) end
    return ("%q"):format(x)
  end
  if math.type(x) == "float" then return ("%.17g"):format(x) end
  return tostring(x)
end

local function showr(r)
  local t = {}
  for i = 1, r.n do t[i] = show(r[i]) end
  return "(" .. table.concat(t, ", ") .. ")"
end

local function fail(msg)
  error({ harness = true,
          msg = ("seed=%d step=%d op=%s: %s"):format(SEED, S.step, S.op, msg) }, 0)
end

local function eq(got, want, what)
  if got ~= want and not (got ~= got and want ~= want) then
    fail(("%s: got %s, want %s"):format(what, show(got), show(want)))
  end
end

-- Lua's own integer conversion (lua_tointegerx): integers, floats with an
-- integer value, and strings that convert to one.
local function toint(x)
  if math.type(x) == "integer" then return x end
  if math.type(x) == "float" then return math.tointeger(x) end
  if type(x) == "string" then
    local n = tonumber(x)
    if n then return toint(n) end
  end
  return nil
end

---------------------------------------------------------------------------
-- calls and expected outcomes

local function try(f, ...)
  S.stats.calls = S.stats.calls + 1
  return pack(pcall(f, ...))
end

-- A harness failure inside a callback (transaction(fn)) comes back as the
-- error of the call: pass it on.
local function passthrough(r)
  if not r[1] and type(r[2]) == "table" and r[2].harness then error(r[2], 0) end
end

-- The call must have raised a string naming function `name` (names may be a
-- list of acceptable names, or false for no name check).
local function raised(name, r, why)
  passthrough(r)
  if r[1] then
    fail(("%s should raise (%s) but returned %s"):format(tostring(name), why or "?", showr(r)))
  end
  if type(r[2]) ~= "string" then
    fail(("%s raised a %s, not a message (%s)"):format(tostring(name), type(r[2]), why or "?"))
  end
  if name then
    local names = type(name) == "table" and name or { name }
    local found = false
    for _, n in ipairs(names) do
      if r[2]:find("'" .. n .. "'", 1, true) then found = true end
    end
    if not found then
      fail(("%s raised (%s) without naming the function: %q"):format(names[1], why or "?", r[2]))
    end
  end
  S.stats.raised = S.stats.raised + 1
  return r[2]
end

local function returned(name, r)
  passthrough(r)
  if not r[1] then fail(("%s raised unexpectedly: %s"):format(name, tostring(r[2]))) end
end

-- nil, message, code with code in `codes` (a set) or any code if codes is nil.
local function is_envfail(r)
  return r[1] and r[2] == nil and r.n == 4 and type(r[3]) == "string" and #r[3] > 0
    and type(r[4]) == "string" and #r[4] > 0
end

local function envfailed(name, r, codes)
  returned(name, r)
  if not is_envfail(r) then
    fail(("%s should return nil, msg, code but returned %s"):format(name, showr(r)))
  end
  if codes and not codes[r[4]] then
    fail(("%s failed with unexpected code %s (%s)"):format(name, r[4], r[3]))
  end
  S.stats.envfail = S.stats.envfail + 1
  local k = name .. ":" .. r[4]
  S.envcodes[k] = (S.envcodes[k] or 0) + 1
end

-- A call that must succeed or fail like the environment may (code in codes):
-- returns true for success.
local function ok_or_env(name, r, codes)
  returned(name, r)
  if r[2] == nil then
    envfailed(name, r, codes)
    return false
  end
  S.stats.ok = S.stats.ok + 1
  return true
end

---------------------------------------------------------------------------
-- the model

local function copy_model(m)
  local c = { reg = {}, prot = {}, root = m.root }
  for k, x in pairs(m.reg) do c.reg[k] = x end
  for k, x in pairs(m.prot) do c.prot[k] = x end
  return c
end

local function key_r(id) return "r" .. id end
local function key_p(pid) return "p" .. pid end

local function allocated(key)
  local kind, n = key:sub(1, 1), tonumber(key:sub(2))
  if kind == "r" then return S.m.reg[n] ~= nil end
  return S.m.prot[n] ~= nil
end

-- Generation of a key for a new view (the binding's registry entry).
local function getgen(key)
  if not S.G[key] then
    S.gencount = S.gencount + 1
    S.G[key] = S.gencount
  end
  return S.G[key]
end

-- Every view of a page or pid that stopped being allocated dies for good
-- (after an auto-commit, a commit, a rollback).
local function sweep()
  for _, key in ipairs(sorted_keys(S.G)) do
    if not allocated(key) then
      S.gencount = S.gencount + 1
      S.G[key] = S.gencount
    end
  end
end

-- After a mutation that succeeded or failed: outside a transaction it was
-- its own transaction.
local function after_mut()
  if not S.tx then sweep() end
end

local function remember(list, id)
  list[#list + 1] = id
  if #list > 16 then table.remove(list, 1) end
end

local function end_tx(committed)
  if committed then
    S.stats.commits = S.stats.commits + 1
  else
    S.m = S.saved
    S.stats.rollbacks = S.stats.rollbacks + 1
  end
  S.saved = nil
  if S.tx.obj then S.deadtx[#S.deadtx + 1] = { obj = S.tx.obj, inst = S.inst } end
  if #S.deadtx > 8 then table.remove(S.deadtx, 1) end
  S.tx = nil
  S.txfreed_r, S.txfreed_p = {}, {}
  sweep()
end

local function start_tx(obj)
  S.txseq = S.txseq + 1
  S.tx = { obj = obj, seq = S.txseq }
  S.saved = copy_model(S.m)
  S.txfreed_r, S.txfreed_p = {}, {}
end

local function mark_closed()
  if S.tx then
    S.m = S.saved
    S.saved = nil
    if S.tx.obj then S.deadtx[#S.deadtx + 1] = { obj = S.tx.obj, inst = S.inst } end
    S.tx = nil
    S.stats.rollbacks = S.stats.rollbacks + 1
  end
  S.txfreed_r, S.txfreed_p = {}, {}
  S.closed = true
  S.chk = {}
end

---------------------------------------------------------------------------
-- view records: { obj, kind = "reg" | "prot" | "wpriv" | "wtxn", id, key,
-- gen, inst, len (bytes shown), txseq (wtxn), buf, lo, hi (wpriv: its copy
-- and the span [lo, hi) its writes changed), ended }; a window's record
-- has the kind, id, key and inst of its root, root (the root's record),
-- base (page offset of its byte 0) and len.

local function new_rec(obj, kind, id)
  local key = kind == "reg" and key_r(id) or key_p(id)
  local r = { obj = obj, kind = kind, id = id, key = key, gen = getgen(key), inst = S.inst, len = P }
  if kind == "wtxn" then r.txseq = S.tx.seq end
  if kind == "wpriv" then r.buf, r.lo, r.hi = S.m.prot[id], P, 0 end
  return r
end

local function new_window(parent, obj, off, len)
  local root = parent.root or parent
  return { obj = obj, kind = root.kind, id = root.id, key = root.key, inst = root.inst,
           root = root, base = (parent.base or 0) + off, len = len }
end

local function add_rec(r)
  if #S.views >= MAX_VIEWS then table.remove(S.views, rnd(#S.views)) end
  S.views[#S.views + 1] = r
end

local function alive(r)
  if r.root then return not r.ended and alive(r.root) end
  if r.inst ~= S.inst or S.closed or r.ended then return false end
  if r.kind == "wpriv" then return true end
  if r.kind == "wtxn" and not (S.tx and S.tx.seq == r.txseq) then return false end
  if S.G[r.key] ~= r.gen then return false end
  if r.kind == "reg" then return S.m.reg[r.id] ~= nil end       -- allocated(r.key), quicker
  return S.m.prot[r.id] ~= nil
end

-- The bytes of the page a root record (or a window's root) sees.
local function page_content(r)
  r = r.root or r
  if r.kind == "reg" then return S.RC[r.id] end
  if r.kind == "wpriv" then return r.buf end
  return S.m.prot[r.id]
end

-- The bytes record r shows (a window: its span of the page).
local function content(r)
  local c = page_content(r)
  if r.root then return c:sub(r.base + 1, r.base + r.len) end
  return c
end

local function set_content(r, bytes)
  assert(#bytes == P)
  if r.kind == "reg" then S.RC[r.id] = bytes
  elseif r.kind == "wpriv" then r.buf = bytes
  else S.m.prot[r.id] = bytes end
end

local function is_writer(r) return r.kind == "wpriv" or r.kind == "wtxn" end

local function splice(s, off, bytes)
  return s:sub(1, off) .. bytes .. s:sub(off + #bytes + 1)
end

-- A write of bytes at off of record r (relative to r): into its root's
-- page, widening a private writer's changed span.
local function put(r, off, bytes)
  local root, at = r.root or r, (r.base or 0) + off
  set_content(root, splice(page_content(root), at, bytes))
  if root.kind == "wpriv" and #bytes > 0 then
    root.lo = math.min(root.lo, at)
    root.hi = math.max(root.hi, at + #bytes)
  end
end

-- What a private writer's commit makes pid's content: the current content
-- with the span the writer changed taken from its copy.
local function committed(root)
  local cur = S.m.prot[root.id]
  if root.lo >= root.hi then return cur end
  return cur:sub(1, root.lo) .. root.buf:sub(root.lo + 1, root.hi) .. cur:sub(root.hi + 1)
end

---------------------------------------------------------------------------
-- value pools

local WEIRD = { -1, 0, math.maxinteger, math.mininteger, 2^53, 1e300, 0/0, 2.5, -2.5,
                math.huge, -math.huge, -0.0, 1 << 32, (1 << 32) - 1, 1 << 31, 2^63, -2^63,
                "x", "3", "0x10", " 7 ", "", "2.5", "1e300", {}, true, false, NIL, print,
                io.stdout }

local function objects()
  local objs = { S.p }
  for i = 1, math.min(3, #S.views) do objs[#objs + 1] = S.views[i].obj end
  if S.tx and S.tx.obj then objs[#objs + 1] = S.tx.obj end
  if #S.deadtx > 0 then objs[#objs + 1] = S.deadtx[1].obj end
  return objs
end

local function weird()
  if rnd(8) == 1 then return pick(objects()) end
  return pick(WEIRD)
end

local function pick_id()
  local r = rnd(20)
  local live = sorted_keys(S.m.reg)
  if r <= 9 and #live > 0 then return pick(live) end
  if r <= 11 and #S.freed_r > 0 then return pick(S.freed_r) end
  if r <= 12 then return rnd(10) - 1 end                 -- the file's own pages
  if r <= 14 then return rnd(S.page_count + 4) - 1 end
  if r == 15 and #live > 0 then return pick(live) + 0.0 end
  if r == 16 and #live > 0 then return tostring(pick(live)) end
  return weird()
end

local function pick_pid()
  local r = rnd(20)
  local live = sorted_keys(S.m.prot)
  if r <= 10 and #live > 0 then return pick(live) end
  if r <= 12 and #S.freed_p > 0 then return pick(S.freed_p) end
  if r <= 14 then return rnd(40) - 1 end
  if r == 15 and #live > 0 then return pick(live) + 0.0 end
  if r == 16 and #live > 0 then return tostring(pick(live)) end
  return weird()
end

-- Offsets and lengths for an object showing n bytes (default: a page);
-- the strings "n", "n+1", ... stand for sizes relative to n.
local REL = { n = 0, ["n+1"] = 1, ["n-1"] = -1, ["n-8"] = -8, ["n-16"] = -16 }
local function sized(x, n)
  if REL[x] then return n + REL[x] end
  if x == "-n" then return -n end
  return x
end

local OFFS = { 0, 1, 7, 8, 16, "n-16", "n-8", "n-1", "n", "n+1", -1, "-n", 2.5, "16", "x", 2^53,
               1e300, 0/0, math.maxinteger, math.mininteger, NIL, {}, true }
local function pick_off(n)
  n = n or P
  if rnd(2) == 1 then return rnd(n + 1) - 1 end
  return sized(pick(OFFS), n)
end

local LENS = { 0, 1, 8, 16, 100, "n", "n+1", -1, 2.5, NIL, math.maxinteger, math.mininteger,
               "4", "y", 0/0 }
local function pick_len(n)
  n = n or P
  local c = rnd(6)
  if c == 1 then return rnd(64) - 1 end
  if c == 2 then return rnd(n + 1) - 1 end
  return sized(pick(LENS), n)
end

local function random_bytes(n)
  local t = {}
  for i = 1, n do t[i] = string.char(rnd(256) - 1) end
  return table.concat(t)
end

local function pick_data()
  local r = rnd(12)
  if r <= 6 then return random_bytes(pick({ 0, 1, 5, 16, 33, 100 })) end
  if r == 7 then return random_bytes(P) end
  if r == 8 then return random_bytes(P + 1) end
  if r == 9 then return pick({ 42, -7, 2.5, 1e300, math.mininteger, 0/0 }) end
  return weird()
end

local FORMATS = { "<i8", ">I4", "<i2 i2", "d", "<n", "z", "s1", "<s2", "c5", "b B", "!4 i4",
                  "!8 <i3 d", "<j", "i16", "I3", ">Xi4 b", "<I8", "f", "c0", "", " ", "=h",
                  "<i8 s1", "x i4", "i17", "q", "!3 i4", "c", "i0", 5, {}, NIL, "s8", "<s4",
                  "J T", "l L", "H i1", "I16", "i9", ">!2 h Xi8", "<d n j", "c1000", "c2000",
                  "zz", "!16 Xj", "X", "Xz" }
local VALUES = { 0, 1, -1, 255, 256, 65535, 1 << 40, math.maxinteger, math.mininteger, 2.5, 0/0,
                 1e300, -0.0, 2^53, "abc", "a\0b", "", "7", NIL, {}, true }
local function pick_value()
  if rnd(10) == 1 then return string.rep("z", rnd(300)) end
  return pick(VALUES)
end

---------------------------------------------------------------------------
-- checking the pager against the model

-- A live view of key for check(): the cached one while the model says it
-- is alive (a dead one must raise), else a new one.
local function chkview(kind, id)
  local key = kind == "reg" and key_r(id) or key_p(id)
  local r = S.chk[key]
  if r and alive(r) then return r end
  if r then raised(false, try(View.id, r.obj), "dead checker view of " .. key) end
  local res = try(kind == "reg" and Pager.page or Pager.protected, S.p, id)
  returned(kind == "reg" and "page" or "protected", res)
  if not res[2] then fail("cannot view allocated " .. key .. ": " .. showr(res)) end
  r = new_rec(res[2], kind, id)
  S.chk[key] = r
  return r
end

local function same_set(got, want, what)
  for k in pairs(want) do if not got[k] then fail(("%s: lost %s"):format(what, show(k))) end end
  for k in pairs(got) do if not want[k] then fail(("%s: extra %s"):format(what, show(k))) end end
end

local function check(where, allow_poisoned)
  local p = S.p
  if S.closed then
    local msg = raised("page_count", try(Pager.page_count, p), "closed pager")
    if not msg:find("closed", 1, true) then fail("closed pager: message does not say so: " .. msg) end
    return
  end
  local m = S.m
  eq(p:root(), m.root, where .. ": root")
  local seen = {}
  for id in p:pages() do
    if seen[id] then fail(where .. ": pages() lists " .. id .. " twice") end
    seen[id] = true
  end
  same_set(seen, m.reg, where .. ": regular pages")
  seen = {}
  local last = -1
  for pid in p:protected_pages() do
    if pid <= last then fail(where .. ": protected_pages() not ascending") end
    last = pid
    seen[pid] = true
  end
  same_set(seen, m.prot, where .. ": protected pages")
  local i = p:info()
  eq(i.in_txn, S.tx ~= nil, where .. ": info().in_txn")
  eq(p:in_transaction(), S.tx and S.tx.seq or false, where .. ": in_transaction()")
  eq(i.readonly, S.ro, where .. ": info().readonly")
  if not allow_poisoned then eq(i.poisoned, false, where .. ": info().poisoned") end
  eq(i.regular_count, count(m.reg), where .. ": info().regular_count")
  eq(i.protected_count, count(m.prot), where .. ": info().protected_count")
  eq(i.root, m.root, where .. ": info().root")
  eq(i.page_size, P, where .. ": info().page_size")
  if last >= i.pid_limit then fail(where .. ": pid " .. last .. " >= pid_limit " .. i.pid_limit) end
  if not S.tx then
    eq(i.page_count, i.free_count + i.regular_count + i.system_count + i.protected_pages,
       where .. ": page_count = free + regular + system + protected_pages")
  end
  S.page_count = i.page_count
  for _, pid in ipairs(sorted_keys(m.prot)) do
    local r = chkview("prot", pid)
    local res = try(View.read, r.obj)
    returned("read", res)
    if res[2] ~= m.prot[pid] then fail(where .. ": content of protected page " .. pid) end
  end
  for _, id in ipairs(sorted_keys(m.reg)) do
    local r = chkview("reg", id)
    local res = try(View.read, r.obj)
    returned("read", res)
    if S.RC[id] == nil then S.RC[id] = res[2] end   -- content unspecified until now
    if res[2] ~= S.RC[id] then fail(where .. ": content of regular page " .. id) end
  end
  -- every view, writer, window and transaction is alive exactly when the
  -- model says, and alive() says so
  for n, r in ipairs(S.views) do
    local M = is_writer(r) and Writer or View
    local res = try(M.id, r.obj)
    local live = alive(r)
    if M.alive(r.obj) ~= live then
      fail(("%s: alive() of %s%s %d is not %s"):format(where, r.kind, r.root and " window" or "", r.id, live))
    end
    if live then
      returned("id", res)
      eq(res[2], r.id, where .. ": id() of live " .. r.kind .. " " .. r.id)
    else
      raised(false, res, ("dead %s%s of %s (record %d)"):format(r.kind, r.root and " window" or "", r.key, n))
    end
  end
  if S.tx and S.tx.obj then eq(S.tx.obj:active(), true, where .. ": open transaction active()") end
  for _, d in ipairs(S.deadtx) do eq(d.obj:active(), false, where .. ": ended transaction active()") end
end

-- Does the pager show model m? (for the two possible outcomes of a failed
-- barrier)
local function shows(m)
  local p = S.p
  if p:root() ~= m.root then return false end
  local n = 0
  for id in p:pages() do
    if not m.reg[id] then return false end
    n = n + 1
  end
  if n ~= count(m.reg) then return false end
  n = 0
  for pid in p:protected_pages() do
    if not m.prot[pid] then return false end
    if p:protected(pid):read() ~= m.prot[pid] then return false end
    n = n + 1
  end
  return n == count(m.prot)
end

---------------------------------------------------------------------------
-- operations

local OP = {}

local function snapshot(id)
  local r = try(Pager.page, S.p, id)
  returned("page", r)
  S.RC[id] = r[2]:read()
end

function OP.alloc()
  local r = try(Pager.alloc, S.p)
  if S.closed or S.ro then return raised("alloc", r, "closed or read-only") end
  if ok_or_env("alloc", r, ENV_FULL) then
    local id = r[2]
    if math.type(id) ~= "integer" then fail("alloc returned " .. show(id)) end
    if S.m.reg[id] then fail("alloc returned the allocated page " .. id) end
    if S.txfreed_r[id] then fail("alloc reused page " .. id .. " freed by the open transaction") end
    S.m.reg[id] = true
    if S.G[key_r(id)] then S.stats.reused = S.stats.reused + 1 end
    snapshot(id)
  end
  after_mut()
end

function OP.free()
  local x = pick_id()
  local r = try(Pager.free, S.p, v(x))
  if S.closed or S.ro then return raised("free", r, "closed or read-only") end
  local id = toint(x)
  if not id or not S.m.reg[id] then return raised("free", r, "not an allocated page: " .. show(x)) end
  if ok_or_env("free", r, ENV_FULL) then
    eq(r[2], true, "free result")
    S.m.reg[id] = nil
    if S.tx then S.txfreed_r[id] = true end
    remember(S.freed_r, id)
  end
  after_mut()
end

local COUNTS = { 0, 1, 2, 3, 5, 10, 20, -1, 2.5, "4", INT_MAX, INT_MAX + 1, 1 << 32, (1 << 32) + 1,
                 math.maxinteger, math.mininteger, 1e300, 0/0, 2^53, {}, NIL, "x" }

function OP.alloc_bulk()
  local x = pick(COUNTS)
  local r = try(Pager.alloc_bulk, S.p, v(x))
  if S.closed or S.ro then return raised("alloc_bulk", r, "closed or read-only") end
  local n = toint(x)
  if not n or n < 0 or n > INT_MAX then return raised("alloc_bulk", r, "bad count " .. show(x)) end
  if n >= INT_MAX then
    envfailed("alloc_bulk", r, TOO_BIG)
  elseif ok_or_env("alloc_bulk", r, ENV_FULL) then
    local ids = r[2]
    if type(ids) ~= "table" or #ids ~= n then fail("alloc_bulk(" .. n .. ") returned " .. showr(r)) end
    local mine = {}
    for _, id in ipairs(ids) do
      if math.type(id) ~= "integer" or S.m.reg[id] or mine[id] or S.txfreed_r[id] then
        fail("alloc_bulk returned a bad id " .. show(id))
      end
      mine[id] = true
    end
    for _, id in ipairs(ids) do S.m.reg[id] = true; snapshot(id) end
  end
  after_mut()
end

-- A list for free_bulk and what it means: { list, expect = "ok" | "raise" }.
local function bulk_list()
  local live = sorted_keys(S.m.reg)
  local list = {}
  local k = rnd(4) - 1
  for _ = 1, math.min(k, #live) do
    local id = table.remove(live, rnd(#live))
    list[#list + 1] = id
  end
  local r = rnd(12)
  if r == 1 and #list > 0 then list[#list + 1] = list[1]                    -- listed twice
  elseif r == 2 then list[#list + 1] = pick_id()
  elseif r == 3 then list[#list + 1] = weird()
  elseif r == 4 then list = v(weird())                                     -- not a list
  elseif r == 5 and #list > 1 then list[1] = nil                           -- a hole
  elseif r == 6 and #list > 0 then list[#list] = list[#list] + 0.0         -- float id
  elseif r == 7 and #list > 0 then list[#list] = tostring(list[#list])     -- string id
  elseif r == 8 then                                                       -- a lying metatable
    local t = list
    list = setmetatable({}, { __len = function() return #t end,
                              __index = function(_, i) return t[i] end })
  elseif r == 9 and #S.freed_r > 0 then list[#list + 1] = pick(S.freed_r)
  elseif r == 10 and #list > 0 then                                      -- 1000 times the same
    for i = 2, 1000 do list[i] = list[1] end
  end
  return list
end

function OP.free_bulk()
  local list = bulk_list()
  local r = try(Pager.free_bulk, S.p, v(list))
  if S.closed or S.ro then return raised("free_bulk", r, "closed or read-only") end
  if type(list) ~= "table" then return raised("free_bulk", r, "not a table") end
  local n = rawlen(list)
  local ids, seen = {}, {}
  for i = 1, n do
    local x = rawget(list, i)
    local id = type(x) == "number" and math.tointeger(x) or nil
    if not id or not S.m.reg[id] or seen[id] then
      return raised("free_bulk", r, ("element %d: %s"):format(i, show(x)))
    end
    seen[id] = true
    ids[i] = id
  end
  if ok_or_env("free_bulk", r, ENV_FULL) then
    eq(r[2], true, "free_bulk result")
    for _, id in ipairs(ids) do
      S.m.reg[id] = nil
      if S.tx then S.txfreed_r[id] = true end
      remember(S.freed_r, id)
    end
  end
  after_mut()
end

-- A page list for gather and scatter: live pages (repeats allowed), now
-- and then a bad element, a hole, or no list at all.
local function span_list()
  local live = sorted_keys(S.m.reg)
  local r = rnd(12)
  if r == 1 then return v(weird()) end
  local list = {}
  for i = 1, rnd(5) - 1 do list[i] = #live > 0 and pick(live) or pick_id() end
  if r == 2 then list[#list + 1] = pick_id()
  elseif r == 3 and #list > 1 then list[rnd(#list)] = weird()
  elseif r == 4 and #list > 0 then list[rnd(#list)] = list[1] + 0.0
  elseif r == 5 and #list > 0 then list[rnd(#list)] = tostring(list[1])
  elseif r == 6 and #S.freed_r > 0 then list[#list + 1] = pick(S.freed_r) end
  return list
end

-- What gather/scatter of [off, off + len) over list must do: nil (raise,
-- with why) or the list positions first..last of the span's pages.
local function span_expect(list, off, len)
  if type(list) ~= "table" then return nil, "not a table" end
  local n = rawlen(list)
  local o, l = toint(off), toint(len)
  if not l or l < 0 then return nil, "length " .. show(len) end
  if not o or o < 0 or o > n * P then return nil, "offset " .. show(off) end
  if l > n * P - o then return nil, "length " .. show(len) .. " at " .. o end
  local first, last = o // P + 1, l == 0 and o // P or (o + l - 1) // P + 1
  for i = first, last do
    local x = rawget(list, i)
    local id = math.type(x) and math.tointeger(x)
    if not id or not S.m.reg[id] then return nil, ("element %d: %s"):format(i, show(x)) end
  end
  return first, last, o, l
end

function OP.gather()
  local list = span_list()
  local total = type(list) == "table" and rawlen(list) * P or P
  local off, len = pick_off(total), pick_len(total)
  local r = try(Pager.gather, S.p, list, v(off), v(len))
  if S.closed then return raised("gather", r, "closed") end
  local first, last, o, l = span_expect(list, off, len)
  if not first then return raised("gather", r, last) end
  returned("gather", r)
  local parts = {}
  for i = first, last do
    local c = S.RC[math.tointeger(list[i])]
    if c == nil then return end            -- content unspecified
    parts[#parts + 1] = c
  end
  local base = (first - 1) * P
  eq(r[2], table.concat(parts):sub(o - base + 1, o - base + l), "gather")
end

function OP.scatter()
  local list = span_list()
  local total = type(list) == "table" and rawlen(list) * P or P
  local data = pick_data()
  local s = (type(data) == "string" or type(data) == "number") and tostring(data) or nil
  local off = pick_off(total)
  if rnd(3) == 1 and s then off = math.max(0, total - #s) end
  local r = try(Pager.scatter, S.p, list, v(off), v(data))
  if S.closed then return raised("scatter", r, "closed") end
  if S.ro then return raised("scatter", r, "read-only") end
  if not s then return raised("scatter", r, "data " .. show(data)) end
  local first, last, o = span_expect(list, off, #s)
  if not first then return raised("scatter", r, last) end
  returned("scatter", r)
  eq(r[2], o + #s, "scatter result")
  local at, pos = o - (first - 1) * P, 1
  for i = first, last do
    local id = math.tointeger(list[i])
    local chunk = math.min(P - at, #s - pos + 1)
    local c = S.RC[id] or ("\0"):rep(P)
    S.RC[id] = splice(c, at, s:sub(pos, pos + chunk - 1))
    pos, at = pos + chunk, 0
  end
end

function OP.page()
  local x = pick_id()
  local r = try(Pager.page, S.p, v(x))
  if S.closed then return raised("page", r, "closed") end
  local id = toint(x)
  if not id or not S.m.reg[id] then return raised("page", r, "not an allocated page: " .. show(x)) end
  returned("page", r)
  add_rec(new_rec(r[2], "reg", id))
end

function OP.protected()
  local x = pick_pid()
  local r = try(Pager.protected, S.p, v(x))
  if S.closed then return raised("protected", r, "closed") end
  local pid = toint(x)
  if not pid or not S.m.prot[pid] then return raised("protected", r, "not a pid: " .. show(x)) end
  returned("protected", r)
  add_rec(new_rec(r[2], "prot", pid))
end

function OP.write_protected()
  local x = pick_pid()
  local r = try(Pager.write_protected, S.p, v(x))
  if S.closed or S.ro then return raised("write_protected", r, "closed or read-only") end
  local pid = toint(x)
  if not pid or not S.m.prot[pid] then return raised("write_protected", r, "not a pid: " .. show(x)) end
  if S.tx then
    if ok_or_env("write_protected", r, ENV_FULL) then add_rec(new_rec(r[2], "wtxn", pid)) end
    after_mut()
  else
    returned("write_protected", r)
    add_rec(new_rec(r[2], "wpriv", pid))
  end
end

function OP.alloc_protected()
  local r = try(Pager.alloc_protected, S.p)
  if S.closed or S.ro then return raised("alloc_protected", r, "closed or read-only") end
  if ok_or_env("alloc_protected", r, ENV_FULL) then
    local pid = r[2]
    if math.type(pid) ~= "integer" or pid < 0 then fail("alloc_protected returned " .. show(pid)) end
    if S.m.prot[pid] then fail("alloc_protected returned the allocated pid " .. pid) end
    if S.txfreed_p[pid] then fail("alloc_protected reused pid " .. pid .. " freed by the open transaction") end
    S.m.prot[pid] = ZERO
    if S.G[key_p(pid)] then S.stats.reused = S.stats.reused + 1 end
  end
  after_mut()
end

function OP.free_protected()
  local x = pick_pid()
  local r = try(Pager.free_protected, S.p, v(x))
  if S.closed or S.ro then return raised("free_protected", r, "closed or read-only") end
  local pid = toint(x)
  if not pid or not S.m.prot[pid] then return raised("free_protected", r, "not a pid: " .. show(x)) end
  if ok_or_env("free_protected", r, ENV_FULL) then
    eq(r[2], true, "free_protected result")
    S.m.prot[pid] = nil
    if S.tx then S.txfreed_p[pid] = true end
    remember(S.freed_p, pid)
  end
  after_mut()
end

function OP.set_root()
  local x = rnd(3) == 1 and rnd(1000) or weird()
  local r = try(Pager.set_root, S.p, v(x))
  if S.closed or S.ro then return raised("set_root", r, "closed or read-only") end
  local n = toint(x)
  if not n then return raised("set_root", r, "not an integer: " .. show(x)) end
  if ok_or_env("set_root", r, ENV_FULL) then
    eq(r[2], true, "set_root result")
    S.m.root = n
  end
  after_mut()
end

-- pages() and protected_pages() iterators called with odd control values.
function OP.iterate()
  local name = rnd(2) == 1 and "pages" or "protected_pages"
  local set = name == "pages" and S.m.reg or S.m.prot
  local r = try(Pager[name], S.p)
  if S.closed then return raised(name, r, "closed") end
  returned(name, r)
  local f, s = r[2], r[3]
  if not rawequal(s, S.p) or r[4] ~= nil then fail(name .. " returned odd iterator state") end
  local x
  local c = rnd(4)
  if c == 1 then x = NIL
  elseif c == 2 and next(set) then x = pick(sorted_keys(set))
  elseif c == 3 then x = rnd(S.page_count + 2) - 2
  else x = weird() end
  local res = try(f, s, v(x))
  local from
  if x == NIL then from = 0
  else
    local k = toint(x)
    if not k then return raised(false, res, "iterator control " .. show(x)) end
    from = k < 0 and 0 or k == math.maxinteger and math.huge or k + 1
  end
  returned(name .. " iterator", res)
  local want
  for _, id in ipairs(sorted_keys(set)) do
    if id >= from then want = id; break end
  end
  eq(res[2], want, name .. " iterator after " .. show(x))
  raised(false, try(f, pick({ 5, "x", {} }), nil), "iterator with a bad state")
end

function OP.misc()
  local p = S.p
  local names = { "page_size", "page_count", "free_count", "info", "root", "check", "in_transaction" }
  local name = pick(names)
  local r = try(Pager[name], p)
  local t = try(tostring, p)
  returned("tostring", t)
  if S.closed then
    if not t[2]:find("closed", 1, true) then fail("tostring of a closed pager: " .. t[2]) end
    raised(name, r, "closed")
    local c = try(Pager.close, p)          -- idempotent
    returned("close", c)
    eq(c[2], true, "close of a closed pager")
    return
  end
  returned(name, r)
  if name == "page_size" then eq(r[2], P, "page_size")
  elseif name == "check" then eq(r[2], true, "check() " .. tostring(r[3]))
  elseif name == "info" then eq(type(r[2]), "table", "info")
  elseif name == "in_transaction" then eq(r[2], S.tx and S.tx.seq or false, "in_transaction()")
  else eq(math.type(r[2]), "integer", name) end
end

function OP.begin()
  local r = try(Pager.begin, S.p)
  if S.closed or S.ro then return raised("begin", r, "closed or read-only") end
  if S.tx then
    raised("begin", r, "nested")
    return
  end
  if ok_or_env("begin", r) then start_tx(r[2]) end
end

local function dead_tx_calls()
  if #S.deadtx == 0 then return end
  local d = pick(S.deadtx)
  raised("commit", try(Txn.commit, d.obj), "dead transaction")
  raised("rollback", try(Txn.rollback, d.obj), "dead transaction")
  local a = try(Txn.active, d.obj)
  returned("active", a)
  eq(a[2], false, "active() of an ended transaction")
  returned("tostring", try(tostring, d.obj))
  do local _ <close> = d.obj end               -- a no-op
end

function OP.commit()
  if not (S.tx and S.tx.obj) or rnd(5) == 1 then return dead_tx_calls() end
  local r = try(Txn.commit, S.tx.obj)
  if ok_or_env("commit", r, ENV_FULL) then
    eq(r[2], true, "commit result")
    end_tx(true)
  else
    end_tx(false)
  end
end

function OP.rollback()
  if not (S.tx and S.tx.obj) or rnd(5) == 1 then return dead_tx_calls() end
  local r = try(Txn.rollback, S.tx.obj)
  returned("rollback", r)
  eq(r[2], true, "rollback result")
  end_tx(false)
end

-- End the open transaction by <close> or by dropping it.
function OP.abandon_tx()
  if not (S.tx and S.tx.obj) then return dead_tx_calls() end
  if rnd(2) == 1 then
    local obj = S.tx.obj
    do local _ <close> = obj end
    end_tx(false)
  else
    S.tx.obj = nil                     -- the only reference
    end_tx(false)
    collectgarbage()
    collectgarbage()
    eq(S.p:info().in_txn, false, "a dropped transaction is rolled back by the collector")
  end
end

local run, run_inner

-- pager:transaction(fn) in a coroutine whose fn yields: the transaction
-- stays open while the caller runs other calls; then the coroutine is
-- resumed (commit), dropped (the collector rolls back), or its pager is
-- closed under it (the commit raises).
local function transaction_yield()
  local p = S.p
  local ran = false
  local co = coroutine.create(function()
    return pack(pcall(Pager.transaction, p, function(a)
      ran = true
      start_tx(nil)
      local b = coroutine.yield("in")
      return a, b
    end, "A"))
  end)
  local ok, y = coroutine.resume(co)
  if not ok then fail("coroutine failed: " .. tostring(y)) end
  if not ran then return envfailed("transaction", y) end
  if y ~= "in" then fail("transaction in a coroutine: fn did not yield: " .. show(y)) end
  S.inner = true
  for _ = 1, rnd(4) - 1 do run_inner() end
  S.inner = false
  local c = rnd(3)
  if c == 1 then
    local r
    ok, r = coroutine.resume(co, "B")
    if not ok then fail("coroutine failed: " .. tostring(r)) end
    passthrough(r)
    if ok_or_env("transaction", r, ENV_FULL) then
      if r.n ~= 3 or r[2] ~= "A" or r[3] ~= "B" then fail("transaction after a yield returned " .. showr(r)) end
      end_tx(true)
    else
      end_tx(false)
    end
  elseif c == 2 then
    co = nil                        -- luacheck: ignore 311 (the only reference)
    collectgarbage()
    collectgarbage()
    eq(p:info().in_txn, false, "the collector rolls back the transaction of a dropped coroutine")
    end_tx(false)
  else
    returned("close", try(Pager.close, p))
    mark_closed()
    local r
    ok, r = coroutine.resume(co, "B")
    if not ok then fail("coroutine failed: " .. tostring(r)) end
    raised(false, r, "its pager was closed while fn was suspended")
  end
end

-- A transaction held by a <close> variable of a suspended coroutine:
-- closing the coroutine (coroutine.close) or letting it finish rolls it
-- back.
function OP.coclose()
  if S.closed or S.ro or S.tx then return OP.begin() end
  local p = S.p
  local co = coroutine.create(function()
    local tx <close> = p:begin()
    if tx then start_tx(nil) end
    coroutine.yield(tx ~= nil)
  end)
  local ok, begun = coroutine.resume(co)
  if not ok then fail("coroutine failed: " .. tostring(begun)) end
  if not begun then return end
  S.inner = true
  for _ = 1, rnd(4) - 1 do run_inner() end
  S.inner = false
  local err
  if rnd(2) == 1 then
    ok, err = coroutine.close(co)
  else
    ok, err = coroutine.resume(co)
  end
  if not ok then fail("coroutine failed: " .. tostring(err)) end
  eq(p:info().in_txn, false, "<close> of a transaction in a finished coroutine")
  end_tx(false)
end

function OP.transaction()
  local p = S.p
  local mode = rnd(10)
  if mode == 10 and not (S.closed or S.ro or S.tx) then return transaction_yield() end
  if mode == 1 then                                -- fn is not callable
    local fn = pick({ 5, "f", {}, NIL, true, setmetatable({}, {}) })
    return raised("transaction", try(Pager.transaction, p, v(fn)), "not callable: " .. show(fn))
  end
  if S.closed or S.ro or S.tx then
    local ran = false
    local r = try(Pager.transaction, p, function() ran = true end)
    raised({ "transaction", "begin" }, r, "closed, read-only or nested")
    if ran then fail("transaction ran fn although it raised") end
    return
  end
  local A, B = rnd(100), { "arg" }
  local ERR = mode == 3 and { "error object" } or "fn failed on purpose"
  local ran = false
  local function body(a, b)
    ran = true
    if a ~= A or b ~= B then fail("transaction passed other arguments") end
    start_tx(nil)
    if not p:info().in_txn then fail("fn runs outside a transaction") end
    S.inner = true
    for _ = 1, rnd(6) - 1 do run_inner() end
    S.inner = false
    if mode == 2 or mode == 3 then error(ERR, 0) end
    if mode == 4 then p:begin() end               -- nested: raises
    if mode == 5 then p:transaction(function() end) end
    if mode == 6 then p:close() end               -- the commit then raises
    if mode == 7 then error(nil) end
    return 1, nil, "three"
  end
  local fn = body
  if mode == 8 then fn = setmetatable({}, { __call = function(_, ...) return body(...) end }) end
  local r = try(Pager.transaction, p, fn, A, B)
  S.inner = false
  passthrough(r)
  if not ran then                                  -- begin failed like the environment
    envfailed("transaction", r)
    return
  end
  if mode == 2 or mode == 3 then
    if r[1] or not rawequal(r[2], ERR) then fail("transaction did not rethrow fn's error: " .. showr(r)) end
    end_tx(false)
  elseif mode == 7 then
    if r[1] or r[2] ~= nil then fail("transaction did not rethrow error(nil): " .. showr(r)) end
    end_tx(false)
  elseif mode == 4 or mode == 5 then
    raised("begin", r, "nested transaction inside fn")
    end_tx(false)
  elseif mode == 6 then
    raised(false, r, "fn closed the pager")
    mark_closed()
  elseif ok_or_env("transaction", r, ENV_FULL) then
    if r.n ~= 4 or r[2] ~= 1 or r[3] ~= nil or r[4] ~= "three" then
      fail("transaction did not return fn's results: " .. showr(r))
    end
    end_tx(true)
  else
    end_tx(false)
  end
end

-- A method of a view, writer or window, with random arguments (offsets
-- around its own size n: a window's are relative to it).
function OP.view()
  if #S.views == 0 then return OP.page() end
  local r = S.views[rnd(#S.views)]
  local obj = r.obj
  local M = is_writer(r) and Writer or View
  local live = alive(r)
  local n = r.len
  local what = ("%s%s of %s"):format(r.kind, r.root and (" window [%d, %d)"):format(r.base, r.base + n) or "",
                                     r.key)
  local c = rnd(13)
  if r.root then S.stats.window_calls = S.stats.window_calls + 1 end
  if c <= 2 then                                          -- read
    local off, len = pick_off(n), pick_len(n)
    local res = try(M.read, obj, v(off), v(len))
    if not live then return raised("read", res, "dead " .. what) end
    local o = off == NIL and 0 or toint(off)
    if not o or o < 0 or o > n then return raised("read", res, "offset " .. show(off)) end
    local l = len == NIL and n - o or toint(len)
    if not l or l < 0 or l > n - o then return raised("read", res, "length " .. show(len)) end
    returned("read", res)
    eq(res[2], content(r):sub(o + 1, o + l), "read of " .. what)
  elseif c <= 4 then                                      -- write
    local off, data = pick_off(n), pick_data()
    local res = try(M.write, obj, v(off), v(data))
    if not live then return raised("write", res, "dead " .. what) end
    if r.kind == "prot" then return raised("write", res, "protected view") end
    local o = toint(off)
    if not o or o < 0 or o > n then return raised("write", res, "offset " .. show(off)) end
    local s = (type(data) == "string" or type(data) == "number") and tostring(data) or nil
    if not s or #s > n - o then return raised("write", res, "data " .. show(data)) end
    if S.ro then return raised("write", res, "read-only") end
    returned("write", res)
    if not rawequal(res[2], obj) then fail("write did not return the view") end
    put(r, o, s)
  elseif c == 5 then                                      -- fill
    local byte = pick({ 0, 255, 256, -1, 65, "7", 2.5, NIL, 1e300, rnd(256) - 1 })
    local off, len = pick_off(n), pick_len(n)
    local res = try(M.fill, obj, v(byte), v(off), v(len))
    if not live then return raised("fill", res, "dead " .. what) end
    if r.kind == "prot" then return raised("fill", res, "protected view") end
    local b = toint(byte)
    local o = off == NIL and 0 or toint(off)
    local l = o and (len == NIL and n - o or toint(len))
    if not b or b < 0 or b > 255 or not o or o < 0 or o > n or not l or l < 0 or l > n - o then
      return raised("fill", res, ("fill(%s, %s, %s)"):format(show(byte), show(off), show(len)))
    end
    if S.ro then return raised("fill", res, "read-only") end
    returned("fill", res)
    put(r, o, string.rep(string.char(b), l))
  elseif c <= 7 then                                      -- pack
    local off, fmt = pick_off(n), pick(FORMATS)
    local vals = { n = rnd(4) - 1 }
    for i = 1, vals.n do vals[i] = v(pick_value()) end
    local res = try(M.pack, obj, v(off), v(fmt), unpack(vals, 1, vals.n))
    if not live then return raised("pack", res, "dead " .. what) end
    if r.kind == "prot" then return raised("pack", res, "protected view") end
    local o = toint(off)
    if not o or o < 0 or o > n then return raised("pack", res, "offset " .. show(off)) end
    if type(fmt) ~= "string" and type(fmt) ~= "number" then return raised("pack", res, "format") end
    local want = pack(pcall(string.pack, string.rep("x", o) .. fmt, unpack(vals, 1, vals.n)))
    if not want[1] then return raised(false, res, "string.pack refuses: " .. tostring(want[2])) end
    local bytes = want[2]:sub(o + 1)
    if o + #bytes > n then return raised("pack", res, "does not fit") end
    if S.ro then return raised("pack", res, "read-only") end
    returned("pack", res)
    eq(res[2], o + #bytes, "pack's next offset")
    put(r, o, bytes)
  elseif c <= 9 then                                      -- unpack
    local off, fmt = pick_off(n), pick(FORMATS)
    local res = try(M.unpack, obj, v(off), v(fmt))
    if not live then return raised("unpack", res, "dead " .. what) end
    local o = toint(off)
    if not o or o < 0 or o > n then return raised("unpack", res, "offset " .. show(off)) end
    if type(fmt) ~= "string" and type(fmt) ~= "number" then return raised("unpack", res, "format") end
    local want = pack(pcall(string.unpack, fmt, content(r), o + 1))
    if not want[1] then return raised(false, res, "string.unpack refuses: " .. tostring(want[2])) end
    returned("unpack", res)
    want[want.n] = want[want.n] - 1
    if res.n ~= want.n then fail(("unpack %s gave %d values, want %d"):format(show(fmt), res.n - 1, want.n - 1)) end
    for i = 2, want.n do
      local a, b = res[i], want[i]
      local same = math.type(a) == math.type(b) and (a == b or (a ~= a and b ~= b))
      if math.type(a) == "float" and same then same = string.pack("d", a) == string.pack("d", b) or a ~= a end
      if not same then fail(("unpack %s value %d: got %s, want %s"):format(show(fmt), i - 1, show(a), show(b))) end
    end
  elseif c == 10 then                                     -- id, #, tostring, alive
    local res = try(M.id, obj)
    local len = try(function(x) return #x end, obj)
    local t = try(tostring, obj)
    returned("tostring", t)
    local al = try(M.alive, obj)
    returned("alive", al)
    eq(al[2], live, "alive() of " .. what)
    local dead = t[2]:find("(dead)", 1, true) ~= nil
    if dead == live then fail(("tostring of %s %s: %s"):format(live and "live" or "dead", what, t[2])) end
    if r.root and live then
      local span = ("[%d, %d)"):format(r.base, r.base + n)
      if not t[2]:find(span, 1, true) then fail(("tostring of %s: %s"):format(what, t[2])) end
    end
    if not live then
      raised("id", res, "dead " .. what)
      raised(false, len, "dead " .. what)
      return
    end
    returned("id", res)
    eq(res[2], r.id, "id")
    returned("#", len)
    eq(len[2], n, "#view")
  elseif c == 11 then                                     -- <close>
    do local _ <close> = obj end
    r.ended = true
  elseif c == 12 then                                     -- a window of it
    OP.sub(r)
  else                                                    -- the other type's methods
    local other = is_writer(r) and View or Writer
    local name = pick(sorted_keys(other))
    raised(name, try(other[name], obj, 0, 0), "a " .. (is_writer(r) and "writer" or "view")
           .. " passed to the other type's " .. name)
  end
end

-- view:sub(off, len) of a view, writer or window (r, or a random one),
-- offsets and lengths valid or not: the window shows bytes [off, off + len)
-- of it and is of its type.
function OP.sub(r)
  if not r then
    if #S.views == 0 then return OP.page() end
    r = S.views[rnd(#S.views)]
    if not alive(r) and rnd(4) > 1 then                   -- mostly of live ones
      local live = {}
      for _, x in ipairs(S.views) do if alive(x) then live[#live + 1] = x end end
      if #live > 0 then r = pick(live) end
    end
  end
  local M = is_writer(r) and Writer or View
  local n = r.len
  local off, len = pick_off(n), pick_len(n)
  if rnd(2) == 1 then                                     -- half of them valid
    off = rnd(n + 1) - 1
    len = rnd(4) == 1 and NIL or rnd(n - off + 1) - 1
  end
  local res = try(M.sub, r.obj, v(off), v(len))
  if not alive(r) then return raised("sub", res, "dead " .. r.kind .. " of " .. r.key) end
  local o = toint(off)
  if not o or o < 0 or o > n then return raised("sub", res, "offset " .. show(off)) end
  local l = len == NIL and n - o or toint(len)
  if not l or l < 0 or l > n - o then return raised("sub", res, "length " .. show(len)) end
  returned("sub", res)
  local w = res[2]
  if getmetatable(w) ~= getmetatable(r.obj) then fail("sub returned an object of another type") end
  local rec = new_window(r, w, o, l)
  eq(w:read(), content(rec), "bytes of a new window")
  add_rec(rec)
  S.stats.windows = S.stats.windows + 1
end

-- A random valid write, fill or pack through writer (or window) r, which
-- is alive.
local SCRIBBLE_FORMATS = { "<i8", ">I4", "b", "z", "<d" }
local function scribble(r)
  local c = rnd(3)
  if c == 1 then
    local data = random_bytes(rnd(math.min(32, r.len) + 1) - 1)
    local off = rnd(r.len - #data + 1) - 1
    returned("write", try(Writer.write, r.obj, off, data))
    put(r, off, data)
  elseif c == 2 then
    local off = rnd(r.len + 1) - 1
    local len = rnd(math.min(32, r.len - off) + 1) - 1
    local byte = rnd(256) - 1
    returned("fill", try(Writer.fill, r.obj, byte, off, len))
    put(r, off, string.rep(string.char(byte), len))
  else
    local fmt = pick(SCRIBBLE_FORMATS)
    local x = fmt == "z" and random_bytes(rnd(8)):gsub("%z", "x") or fmt == "<d" and rnd(1000) / 8
              or rnd(100) - 1
    local bytes = string.pack(fmt, x)
    if #bytes > r.len then return end
    local off = rnd(r.len - #bytes + 1) - 1
    local res = try(Writer.pack, r.obj, off, fmt, x)
    returned("pack", res)
    eq(res[2], off + #bytes, "pack's next offset")
    put(r, off, bytes)
  end
end

-- Commit (or, one time in three, discard) writer or window r.
local function finish_writer(r)
  local root = r.root or r                                -- what commit and discard end
  local live = alive(r)
  if rnd(3) == 1 then
    local res = try(Writer.discard, r.obj)
    if not live then return raised("discard", res, "dead writer") end
    returned("discard", res)
    eq(res[2], true, "discard result")
    root.ended = true
    return
  end
  local res = try(Writer.commit, r.obj)
  if not live then return raised("commit", res, "dead writer") end
  if r.kind == "wtxn" then
    returned("commit", res)
    eq(res[2], true, "commit of a transaction's writer")
    root.ended = true
    return
  end
  if S.G[root.key] ~= root.gen or not S.m.prot[root.id] then
    return raised("commit", res, "pid freed since the writer was made")
  end
  if ok_or_env("commit", res, ENV_FULL) then
    eq(res[2], true, "writer commit result")
    root.ended = true
    local new = committed(root)
    if new ~= root.buf then S.stats.merged = S.stats.merged + 1 end   -- not just its copy
    S.m.prot[root.id] = new
  end
  after_mut()
end

-- writer:commit() / writer:discard() (through the writer or a window).
function OP.writer()
  local ws = {}
  for _, r in ipairs(S.views) do if is_writer(r) then ws[#ws + 1] = r end end
  if #ws == 0 then return OP.write_protected() end
  local r = pick(ws)                                      -- the writer or a window of it
  if alive(r) and rnd(2) == 1 then scribble(r) end       -- something to commit
  finish_writer(r)
end

-- Users of one protected page: a few writers of pid, each written through
-- a window of its own range (two objects of a slab sharing a page), or
-- sometimes anywhere; then committed or discarded in a random order, some
-- left for later operations.
function OP.share()
  local pids = sorted_keys(S.m.prot)
  if S.closed or S.ro or #pids == 0 then return OP.write_protected() end
  local pid = pick(pids)
  local recs = {}
  for i = 1, 1 + rnd(3) do
    local res = try(Pager.write_protected, S.p, pid)
    if S.tx then
      if not ok_or_env("write_protected", res, ENV_FULL) then return after_mut() end
    else
      returned("write_protected", res)
    end
    local w = new_rec(res[2], S.tx and "wtxn" or "wpriv", pid)
    local slot = P // 4
    local off = rnd(3) == 1 and rnd(P) - 1 or (i - 1) * slot + rnd(slot // 2) - 1
    local len = rnd(math.min(P - off, slot) + 1) - 1
    local sub = try(Writer.sub, w.obj, off, len)
    returned("sub", sub)
    local win = new_window(w, sub[2], off, len)
    S.stats.windows = S.stats.windows + 1
    for _ = 1, rnd(3) do scribble(rnd(4) == 1 and w or win) end
    if rnd(3) == 1 then                                   -- done with the window: the writer goes on
      do local _ <close> = win.obj end
      win.ended = true
      scribble(w)
    end
    add_rec(w)
    add_rec(win)
    recs[#recs + 1] = (win.ended or rnd(2) == 1) and w or win
  end
  while #recs > 0 do
    local r = table.remove(recs, rnd(#recs))
    if rnd(5) > 1 then finish_writer(r) end
  end
end

-- Methods of every type called on objects of another type.
function OP.wrong_self()
  local types = { { "Pager", Pager }, { "View", View }, { "Writer", Writer }, { "Transaction", Txn } }
  local t = pick(types)
  local name = pick(sorted_keys(t[2]))
  local selves = { 0, "x", {}, true, NIL, io.stdout }
  if t[1] ~= "Pager" then selves[#selves + 1] = S.p end
  if t[1] ~= "Transaction" and #S.deadtx > 0 then selves[#selves + 1] = S.deadtx[1].obj end
  for _, r in ipairs(S.views) do
    local tn = is_writer(r) and "Writer" or "View"
    if tn ~= t[1] then selves[#selves + 1] = r.obj; break end
  end
  local self = pick(selves)
  raised(name, try(t[2][name], v(self), 9, 9, 9), t[1] .. "." .. name .. " on " .. show(self))
end

-- Closed pagers from earlier opens, and ended transactions.
function OP.dead_objects()
  if #S.oldpagers > 0 and rnd(2) == 1 then
    local old = pick(S.oldpagers)
    local name = pick({ "alloc", "free", "page", "protected", "write_protected", "alloc_protected",
                        "free_protected", "set_root", "root", "begin", "info", "pages",
                        "protected_pages", "alloc_bulk", "free_bulk", "transaction", "in_transaction",
                        "gather", "scatter" })
    local arg1 = name == "transaction" and function() end or 1
    local msg = raised({ name, "begin" }, try(Pager[name], old, arg1, 1), "closed pager")
    if not msg:find("closed", 1, true) then fail("closed pager: message does not say so: " .. msg) end
    returned("close", try(Pager.close, old))
    return
  end
  dead_tx_calls()
end

-- Metamethods called by hand (getmetatable is not locked), on objects of
-- their own type and of others.
function OP.meta()
  local cands = {}
  if rnd(3) == 1 then cands[1] = { "Pager", S.p } end
  for _, r in ipairs(S.views) do
    cands[#cands + 1] = { is_writer(r) and "Writer" or "View", r.obj, r }
    if #cands > 6 then break end
  end
  if S.tx and S.tx.obj then cands[#cands + 1] = { "Transaction", S.tx.obj, "current" } end
  if #S.deadtx > 0 then cands[#cands + 1] = { "Transaction", S.deadtx[1].obj } end
  if #cands == 0 then return end
  local src = pick(cands)
  local mt = getmetatable(src[2])
  local name = pick(sorted_keys(mt))
  local f = mt[name]
  if type(f) ~= "function" then return end                -- __index, __name
  local target = pick(cands)
  if rnd(4) == 1 then
    local x = v(weird())
    local kinds = { ["mappedpages.Pager"] = "Pager", ["mappedpages.View"] = "View",
                    ["mappedpages.Writer"] = "Writer", ["mappedpages.Transaction"] = "Transaction" }
    local xm = type(x) == "userdata" and getmetatable(x)
    target = { xm and kinds[xm.__name] or type(x), x }
    if target[1] == src[1] then return end     -- the model knows not which one
  end
  local res = try(f, target[2])
  -- __gc and __close (and Pager.close) share a function, named either way
  if target[1] ~= src[1] then
    return raised({ name, "close", "__gc", "__close" }, res,
                  "a " .. target[1] .. " as self of " .. src[1] .. "." .. name)
  end
  local rec = type(target[3]) == "table" and target[3] or nil
  if name == "__tostring" then
    returned(name, res)
    eq(type(res[2]), "string", name)
  elseif name == "__len" then
    if rec and not alive(rec) then return raised(false, res, "# of a dead view") end
    returned(name, res)
    eq(res[2], rec and rec.len or P, "__len")
  elseif name == "__gc" or name == "__close" then
    returned(name, res)
    if src[1] == "Pager" then
      if rawequal(target[2], S.p) and not S.closed then mark_closed() end
    elseif rec then
      rec.ended = true
    elseif target[3] == "current" then
      end_tx(false)
    end
  else
    returned(name, res)
  end
end

-- Many views at once, dropped in random order: the registry of viewed
-- pages grows, shrinks and rehashes; the survivors must keep working, and
-- die exactly when their page is freed.
function OP.burst()
  if S.closed then return OP.reopen() end
  local keys = {}
  for _, id in ipairs(sorted_keys(S.m.reg)) do keys[#keys + 1] = { "reg", id } end
  for _, pid in ipairs(sorted_keys(S.m.prot)) do keys[#keys + 1] = { "prot", pid } end
  if #keys == 0 then return end
  local list = {}
  for i = 1, 20 + rnd(80) do
    local k = pick(keys)
    local res = try(k[1] == "reg" and Pager.page or Pager.protected, S.p, k[2])
    returned("page", res)
    list[i] = new_rec(res[2], k[1], k[2])
  end
  for round = 1, 3 do
    local keep = {}
    for _, r in ipairs(list) do if rnd(2) == 1 then keep[#keep + 1] = r end end
    list = keep
    collectgarbage()
    if round == 2 then run(pick({ "free", "free_protected", "free_bulk" })) end
    for _, r in ipairs(list) do
      local res = try(View.read, r.obj, 0, 8)
      if alive(r) then
        returned("read", res)
        eq(res[2], content(r):sub(1, 8), "read of a burst view of " .. r.key)
      else
        raised("read", res, "burst view of a freed " .. r.key)
      end
    end
  end
end

function OP.close()
  local r = try(Pager.close, S.p)
  returned("close", r)
  eq(r[2], true, "close result")
  if not S.closed then mark_closed() end
end

local function open_main(readonly)
  local q, msg, code = mp.open(S.path, { readonly = readonly or nil, max_bytes = MAX_BYTES })
  if not q then
    fail(("reopen%s failed: %s (%s)"):format(readonly and " read-only" or "", tostring(msg), tostring(code)))
  end
  S.oldpagers[#S.oldpagers + 1] = S.p
  if #S.oldpagers > 4 then table.remove(S.oldpagers, 1) end
  S.p = q
  S.inst = S.inst + 1
  S.closed, S.ro = false, readonly and true or false
  S.G, S.txseq, S.chk = {}, 0, {}
  S.stats.reopens = S.stats.reopens + 1
end

function OP.reopen(readonly)
  if not S.closed then OP.close() end
  open_main(readonly)
  check("after reopen" .. (readonly and " read-only" or ""))
end

function OP.reopen_ro() OP.reopen(true) end

function OP.locks()
  -- one writer at a time; readers beside it, and beside each other
  local ro = try(mp.open, S.path, { readonly = true })
  returned("open", ro)
  if not ro[2] then fail("read-only open failed: " .. showr(ro)) end
  local rw = try(mp.open, S.path)
  if S.closed or S.ro then
    returned("open", rw)
    if not rw[2] then fail("writer open beside no writer failed: " .. showr(rw)) end
    rw[2]:close()
  else
    envfailed("open", rw, { locked = true })          -- the main pager writes
  end
  ro[2]:close()
end

local newfiles = 0
function OP.env_open()
  local c = rnd(12)
  if c == 1 then envfailed("open", try(mp.open, DIR .. "/missing.mp"), { not_found = true })
  elseif c == 2 then envfailed("create", try(mp.create, S.path), { exists = true })
  elseif c == 3 then envfailed("open", try(mp.open, DIR .. "/empty.mp"))
  elseif c == 4 then envfailed("open", try(mp.open, DIR))
  elseif c == 5 then
    local ps = pick({ 1000, 2.5, "4096", 0, 1 << 20, -4096, 0/0, 512, 131072, {}, true })
    raised("create", try(mp.create, DIR .. "/bad.mp", { page_size = ps }), "page_size " .. show(ps))
  elseif c == 6 then
    local opts = pick({ { readonly = "yes" }, { readonly = 1 }, { bogus = true }, { true },
                        { max_bytes = -1 }, { max_bytes = 2.5 }, "opts", 5, { page_size = 4096 } })
    raised("open", try(mp.open, S.path, opts), "bad options")
  elseif c == 7 then
    raised("open", try(mp.open, v(pick({ {}, NIL, true, "a\0b" }))), "bad path")
  elseif c == 8 then
    raised("crc32c", try(mp.crc32c, v(pick({ {}, NIL, true }))), "crc32c of a non-string")
  elseif c == 9 then
    raised("crc32c", try(mp.crc32c, "abc", pick({ -1, 1 << 32, 2.5, "x" })), "crc32c start value")
  elseif c == 10 then
    returned("crc32c", try(mp.crc32c, pick({ "", "abc", 5 }), v(pick({ 0, 0xFFFFFFFF, NIL }))))
  else                                                    -- a new file, to and fro
    newfiles = newfiles + 1
    local path = DIR .. "/new" .. newfiles .. ".mp"
    local r = try(mp.create, path, { page_size = pick({ 1024, 2048, 65536 }),
                                     max_bytes = pick({ 1 << 20, math.maxinteger, 1, 0 }) })
    returned("create", r)
    if not r[2] then fail("create of a new file failed: " .. showr(r)) end
    r[2]:close()
    local q = try(mp.open, path, { readonly = true })
    returned("open", q)
    if not q[2] then fail("open of a new file failed: " .. showr(q)) end
    q[2]:close()
    os.remove(path)
  end
end

function OP.gc()
  local keep = {}
  for _, r in ipairs(S.views) do if rnd(2) == 1 then keep[#keep + 1] = r end end
  S.views = keep
  if rnd(2) == 1 then S.chk = {} end
  collectgarbage()
end

-- Drop every reference to the pager: the collector closes it, rolls back
-- its transaction and releases its lock.
function OP.abandon_pager()
  if S.closed then return OP.reopen() end
  local keep = {}
  for _, r in ipairs(S.views) do if r.inst ~= S.inst then keep[#keep + 1] = r end end
  S.views = keep
  local dk = {}
  for _, d in ipairs(S.deadtx) do if d.inst ~= S.inst then dk[#dk + 1] = d end end
  S.deadtx = dk
  if S.tx then S.tx.obj = nil end
  mark_closed()
  S.p = nil
  collectgarbage()
  collectgarbage()
  local q, msg, code = mp.open(S.path, { max_bytes = MAX_BYTES })
  if not q then fail(("open after dropping the pager failed: %s (%s)"):format(tostring(msg), tostring(code))) end
  q:close()
  S.p = q                  -- closed: open_main keeps it among the old pagers
  open_main(false)
  check("after the collector closed the pager")
end

-- A failing durability barrier: the call returns nil, msg, code, the pager
-- shows the last durable state and refuses changes ("poisoned"); reopen
-- finds the state before or after the failed commit, whole.
function OP.fault()
  if S.closed or S.ro then return OP.reopen() end
  if S.tx and not S.tx.obj then return end          -- not inside transaction(fn)
  S.stats.faults = S.stats.faults + 1
  local code = rnd(2) == 1 and "eio" or "enospc"
  local want = { [code == "eio" and "io" or "no_space"] = true }
  -- Call f(...) with failing barriers: true if the call reached the barrier
  -- (nil, msg, want), false if it failed before it (a full file).
  local function faulted(name, f, ...)
    core._inject_fault("barrier", code)
    local res = try(f, ...)
    core._inject_fault(nil)
    if is_envfail(res) and not S.p:info().poisoned then
      envfailed(name, res, ENV_FULL)
      return false
    end
    envfailed(name, res, want)
    return true
  end
  local old = copy_model(S.saved or S.m)
  local new, writer
  if S.tx then
    new = copy_model(S.m)
    local hit = faulted("commit", Txn.commit, S.tx.obj)
    end_tx(false)
    if not hit then return end
  else
    new = copy_model(S.m)
    local pids = sorted_keys(S.m.prot)
    local ids = sorted_keys(S.m.reg)
    local c = rnd(3)
    local hit
    if c == 1 and #pids > 0 then
      local pid = pick(pids)
      writer = Pager.write_protected(S.p, pid)
      writer:write(0, random_bytes(16))
      new.prot[pid] = writer:read()
      hit = faulted("commit", Writer.commit, writer)
      returned("read", try(Writer.read, writer))   -- a failed commit leaves it alive
      if not hit then writer:discard() end
    elseif c == 2 and #ids > 0 then
      local id = pick(ids)
      new.reg[id] = nil
      hit = faulted("free", Pager.free, S.p, id)
    else
      new.root = rnd(1 << 30)
      hit = faulted("set_root", Pager.set_root, S.p, new.root)
    end
    S.m = copy_model(old)
    sweep()
    if not hit then return end
  end
  check("after a failed barrier", true)
  eq(S.p:info().poisoned, true, "info().poisoned after a failed barrier")
  local poisoned = { poisoned = true }
  envfailed("alloc", try(Pager.alloc, S.p), poisoned)
  envfailed("set_root", try(Pager.set_root, S.p, 1), poisoned)
  envfailed("alloc_protected", try(Pager.alloc_protected, S.p), poisoned)
  envfailed("begin", try(Pager.begin, S.p), poisoned)
  raised("page", try(Pager.page, S.p, -1), "misuse still raises")
  raised("set_root", try(Pager.set_root, S.p, 2.5), "misuse still raises")
  if writer then
    envfailed("commit", try(Writer.commit, writer), poisoned)
    returned("discard", try(Writer.discard, writer))
  end
  check("after refusals", true)
  OP.close()
  open_main(false)
  if shows(old) then S.m = old
  elseif shows(new) then S.m = new
  else fail("after a failed barrier, reopen shows neither the old nor the new state") end
  check("after reopen following a failed barrier")
end

---------------------------------------------------------------------------
-- choosing operations

-- Files of at most 64 pages run full all the time; larger ones stay small.
local CAP = MAX_BYTES <= 64 * P and 1000 or 50

local function weights()
  local nreg, nprot = count(S.m.reg), count(S.m.prot)
  local grow = nreg < CAP and 8 or 2
  return {
    { "alloc", grow }, { "free", 7 }, { "alloc_bulk", nreg < CAP and 3 or 1 }, { "free_bulk", 3 },
    { "page", 6 }, { "gather", 3 }, { "scatter", 3 },
    { "alloc_protected", nprot < 16 and 5 or 1 }, { "free_protected", 4 },
    { "protected", 4 }, { "write_protected", 6 }, { "set_root", 4 }, { "iterate", 2 },
    { "misc", 2 }, { "begin", S.tx and 2 or 5 }, { "commit", S.tx and 5 or 1 },
    { "rollback", S.tx and 3 or 1 }, { "abandon_tx", S.tx and 1 or 0 },
    { "transaction", 4 }, { "coclose", 1 }, { "view", 24 }, { "sub", 5 }, { "share", 2 }, { "writer", 6 },
    { "wrong_self", 2 },
    { "dead_objects", 2 }, { "close", 1 }, { "reopen", 1 }, { "reopen_ro", 1 },
    { "locks", 1 }, { "env_open", 1 }, { "gc", 1 }, { "meta", 2 }, { "burst", 1 },
  }
end

local INNER_OK = {
  alloc = true, free = true, alloc_bulk = true, free_bulk = true, page = true,
  gather = true, scatter = true,
  alloc_protected = true, free_protected = true, protected = true, write_protected = true,
  set_root = true, iterate = true, misc = true, begin = true, commit = true, rollback = true,
  transaction = true, view = true, sub = true, share = true, writer = true, wrong_self = true,
  dead_objects = true,
  locks = true, env_open = true,
}

-- The rare ones: views live for a while between reopens.
local RARE = { close = true, reopen = true, reopen_ro = true, locks = true, env_open = true, gc = true }

local function choose(inner)
  local ws = weights()
  for _, w in ipairs(ws) do
    if not RARE[w[1]] then w[2] = 2 * w[2] end
  end
  local total = 0
  for _, w in ipairs(ws) do
    if not inner or INNER_OK[w[1]] then total = total + w[2] end
  end
  local x = rnd(total)
  for _, w in ipairs(ws) do
    if not inner or INNER_OK[w[1]] then
      x = x - w[2]
      if x <= 0 then return w[1] end
    end
  end
end

local opcount = {}
function run(name)
  opcount[name] = (opcount[name] or 0) + 1
  local outer = S.op
  S.op = S.inner and (outer .. ">" .. name) or name
  OP[name]()
  S.op = outer
end

function run_inner() run(choose(true)) end


---------------------------------------------------------------------------
-- chaos mode: finalizers that call the API in the middle of API calls
--
-- The binding allocates Lua objects inside its calls (views, strings,
-- error messages, number-to-string conversions), and any allocation may
-- run a garbage collection step and with it a finalizer.  Here the
-- collector runs all the time and many garbage "bombs" have finalizers
-- that close the pager, free pages, end or begin transactions, write
-- through views and commit writers.  No model can follow that; what is
-- checked is that every call returns or raises a string, that nothing
-- crashes (and, under ASan/valgrind, that nothing touches freed or
-- unmapped memory), and that the file is whole at the end.

local C = { p = nil, views = {}, txs = {}, fired = 0, reopens = 0,
            windows = setmetatable({}, { __mode = "k" }) }   -- the views that are windows

local function c_ids(protected)
  local ok, ids = pcall(function()
    local t = {}
    for id in (protected and Pager.protected_pages or Pager.pages)(C.p) do t[#t + 1] = id end
    return t
  end)
  return ok and ids or {}
end

local function c_id(protected)
  local ids = c_ids(protected)
  if #ids > 0 and rnd(5) > 1 then return ids[rnd(#ids)] end
  return v(weird())
end

local function c_view()
  if #C.views == 0 then return nil end
  return C.views[rnd(#C.views)]
end

local function c_keep(obj)
  if #C.views >= MAX_VIEWS then table.remove(C.views, rnd(#C.views)) end
  C.views[#C.views + 1] = obj
end

local ACTIONS = {
  function() C.p:close() end,
  function() C.p:free(c_id()) end,
  function() C.p:free_protected(c_id(true)) end,
  function() C.p:free_bulk(c_ids()) end,
  function() C.txs[#C.txs]:rollback() end,
  function() C.txs[#C.txs]:commit() end,
  function() C.txs[#C.txs + 1] = C.p:begin() end,
  function() c_view():write(rnd(P) - 1, "bomb") end,
  function() c_view():fill(rnd(256) - 1) end,
  function() c_view():commit() end,
  function() c_view():discard() end,
  function() C.p:alloc_bulk(rnd(4)) end,
  function() C.p:scatter(c_ids(), 0, "bomb") end,
  function() C.p:alloc_protected() end,
  function() C.p:set_root(rnd(100)) end,
  function() C.views = {} end,
  function() C.txs = {} end,
  function() C.p:write_protected(c_id(true)):write(0, "bomb") end,
  function() c_view():sub(rnd(16) - 1, rnd(16) - 1):write(0, "b") end,
  function() c_view():sub(rnd(8) - 1):commit() end,
  function() c_keep(c_view():sub(rnd(P) - 1)) end,
  function() error("a failing finalizer") end,
}

local function bomb()
  setmetatable({}, { __gc = function()
    C.fired = C.fired + 1
    pcall(ACTIONS[rnd(#ACTIONS)])
  end })
end

-- A call from the fuzzer: it may return anything; an error must be a string.
local function c_call(f, ...)
  S.stats.calls = S.stats.calls + 1
  local r = pack(pcall(f, ...))
  if not r[1] and type(r[2]) ~= "string" then
    if type(r[2]) == "table" and r[2].harness then error(r[2], 0) end
    fail("an API call raised a " .. type(r[2]) .. ": " .. tostring(r[2]))
  end
  return r
end

local CHAOS = {
  function() return c_call(Pager.alloc, C.p) end,
  function() return c_call(Pager.free, C.p, c_id()) end,
  function() return c_call(Pager.alloc_bulk, C.p, v(pick(COUNTS))) end,
  function() return c_call(Pager.free_bulk, C.p, bulk_list()) end,
  function() return c_call(Pager.gather, C.p, c_ids(), rnd(3 * P) - 1, rnd(3 * P) - 1) end,
  function() return c_call(Pager.scatter, C.p, c_ids(), rnd(2 * P) - 1, ("s"):rep(rnd(2 * P))) end,
  function()
    local r = c_call(Pager.page, C.p, c_id())
    if r[1] and r[2] then c_keep(r[2]) end
  end,
  function() return c_call(Pager.alloc_protected, C.p) end,
  function() return c_call(Pager.free_protected, C.p, c_id(true)) end,
  function()
    local r = c_call(rnd(2) == 1 and Pager.protected or Pager.write_protected, C.p, c_id(true))
    if r[1] and r[2] then c_keep(r[2]) end
  end,
  function() return c_call(Pager.set_root, C.p, v(weird())) end,
  function()
    local r = c_call(Pager.begin, C.p)
    if r[1] and r[2] then C.txs[#C.txs + 1] = r[2] end
  end,
  function()
    local t = C.txs[#C.txs]
    if t then c_call(rnd(2) == 1 and Txn.commit or Txn.rollback, t) end
  end,
  function()
    local w = c_view()
    if w then c_call(rnd(2) == 1 and Writer.commit or Writer.discard, w) end
  end,
  function()
    local w = c_view()
    if not w then return end
    local M = getmetatable(w).__name == "mappedpages.Writer" and Writer or View
    local n = C.windows[w] or P
    local c = rnd(9)
    local r
    if c == 1 then r = c_call(M.read, w, v(pick_off(n)), v(pick_len(n)))
    elseif c == 2 then r = c_call(M.write, w, v(pick_off(n)), v(pick_data()))
    elseif c == 3 then r = c_call(M.fill, w, rnd(256) - 1, v(pick_off(n)), v(pick_len(n)))
    elseif c == 4 then r = c_call(M.pack, w, v(pick_off(n)), v(pick(FORMATS)), v(pick_value()), v(pick_value()))
    elseif c == 5 then r = c_call(M.unpack, w, v(pick_off(n)), v(pick(FORMATS)))
    elseif c == 6 then r = c_call(function(x) return #x, x:id(), tostring(x) end, w)
    elseif c == 7 then r = c_call(M.read, w)
    elseif c == 8 then
      r = c_call(M.alive, w)
      if type(r[2]) ~= "boolean" then fail("alive() returned " .. show(r[2])) end
    else                                                  -- a window of it
      r = c_call(M.sub, w, v(pick_off(n)), v(pick_len(n)))
      if r[1] and r[2] then
        local ok, len = pcall(function() return #r[2] end)
        if ok then C.windows[r[2]] = len end
        c_keep(r[2])
      end
    end
    if c == 7 and r[1] then
      -- A window can be kept without its length in C.windows (made by a
      -- finalizer's bomb, or # raised right after sub() because a finalizer
      -- had freed its page in the open transaction, which a rollback
      -- undoes): then ask the object (no allocation before the call).
      local want = C.windows[w]
      if want == nil then
        local ok, len = pcall(getmetatable(w).__len, w)
        want = ok and len or nil
      end
      if want and #r[2] ~= want then
        fail("read() returned " .. #r[2] .. " bytes, not " .. want)
      end
    end
  end,
  function()
    return c_call(Pager.transaction, C.p, function(x)
      for _ = 1, rnd(4) do bomb() end
      c_call(Pager.alloc, C.p)
      c_call(Pager.set_root, C.p, x)
      if rnd(3) == 1 then error("fn fails") end
      return x
    end, rnd(1000))
  end,
  function()
    local f, st = Pager.pages, C.p
    if rnd(2) == 1 then f = Pager.protected_pages end
    local r = c_call(function() local n = 0 for _ in f(st) do n = n + 1 end return n end)
    return r
  end,
  function() return c_call(Pager.info, C.p) end,
  function()
    local r = c_call(Pager.in_transaction, C.p)
    if r[1] and r[2] ~= false and math.type(r[2]) ~= "integer" then
      fail("in_transaction() returned " .. show(r[2]))
    end
  end,
  function() return c_call(tostring, C.p) end,
  function() if rnd(20) == 1 then return c_call(Pager.close, C.p) end end,
}

local function c_open(readonly)
  local q, msg, code = mp.open(S.path, { readonly = readonly or nil, max_bytes = MAX_BYTES })
  if not q then fail(("chaos: open failed: %s (%s)"):format(tostring(msg), tostring(code))) end
  return q
end

local function c_check_file(readonly)
  local q = c_open(readonly)
  local ok, problems = q:check()
  if not ok then
    fail("chaos: check() of the file failed: " .. tostring(ok == nil and problems or table.concat(problems, "; ")))
  end
  for id in q:pages() do q:page(id):read() end
  for pid in q:protected_pages() do
    if #q:protected(pid):read() ~= P then fail("chaos: short protected page") end
  end
  q:close()
end

local function chaos()
  local f = assert(io.open(DIR .. "/empty.mp", "wb"))
  f:close()
  local msg
  C.p, msg = mp.create(S.path, { page_size = P, max_bytes = MAX_BYTES })
  if not C.p then fail("create failed: " .. tostring(msg)) end
  S.m = { reg = {}, prot = {}, root = 0 }   -- pick_id() and bulk_list() look here
  for step = 1, STEPS do
    S.step, S.op = step, "chaos"
    if step % 500 == 1 then                           -- collect all the time, in turns
      local mode = (step // 500) % 3
      if mode == 0 then collectgarbage("incremental", 1, 1000, 4)
      elseif mode == 1 then collectgarbage("generational", 1, 100)
      else collectgarbage("incremental", 1, 400, 8) end
    end
    if not pcall(Pager.page_size, C.p) then          -- a finalizer closed it
      C.views, C.txs = {}, {}
      collectgarbage()
      C.p = c_open()
      C.reopens = C.reopens + 1
    end
    S.page_count = select(2, pcall(Pager.page_count, C.p)) or 0
    S.p = C.p
    CHAOS[rnd(#CHAOS)]()
    for _ = 1, rnd(4) - 1 do bomb() end
  end
  S.op = "final"
  collectgarbage("incremental", 200, 100, 13)
  C.views, C.txs = {}, {}
  collectgarbage()
  collectgarbage()
  C.p:close()
  S.p = nil
  c_check_file(false)
  c_check_file(true)
  io.write(("ok chaos seed=%d steps=%d calls=%d finalizers=%d reopens=%d\n")
    :format(SEED, STEPS, S.stats.calls, C.fired, C.reopens))
end

---------------------------------------------------------------------------
-- main

local function main()
  local f = assert(io.open(DIR .. "/empty.mp", "wb"))
  f:close()
  local msg
  S.p, msg = mp.create(S.path, { page_size = P, max_bytes = MAX_BYTES })
  if not S.p then fail("create failed: " .. tostring(msg)) end
  S.inst = 1
  S.m = { reg = {}, prot = {}, root = 0 }
  check("after create")
  for step = 1, STEPS do
    S.step = step
    local name
    if S.closed and rnd(2) == 1 then name = "reopen"
    elseif S.ro and rnd(6) == 1 then name = "reopen"
    elseif rnd(400) == 1 then name = "fault"
    elseif rnd(500) == 1 then name = "abandon_pager"
    else name = choose(false) end
    S.op = name
    opcount[name] = (opcount[name] or 0) + 1
    OP[name]()
    check("after " .. name)
  end
  S.step, S.op = STEPS + 1, "final"
  if S.tx and S.tx.obj then
    S.tx.obj:rollback()
    end_tx(false)
  end
  OP.reopen()                        -- read-write: nothing lost, nothing extra
  eq(S.p:check(), true, "check() after the final reopen")
  OP.reopen(true)                    -- and read-only
  OP.close()
  io.write(("ok seed=%d steps=%d calls=%d raised=%d envfail=%d ok=%d commits=%d rollbacks=%d"
            .. " reopens=%d faults=%d reused=%d windows=%d window_calls=%d merged=%d pages=%d pids=%d\n")
    :format(SEED, STEPS, S.stats.calls, S.stats.raised, S.stats.envfail, S.stats.ok,
            S.stats.commits, S.stats.rollbacks, S.stats.reopens, S.stats.faults, S.stats.reused,
            S.stats.windows, S.stats.window_calls, S.stats.merged, count(S.m.reg), count(S.m.prot)))
  local t = {}
  for _, name in ipairs(sorted_keys(opcount)) do t[#t + 1] = name .. "=" .. opcount[name] end
  io.write("ops: ", table.concat(t, " "), "\n")
  t = {}
  for _, code in ipairs(sorted_keys(S.envcodes)) do t[#t + 1] = code .. "=" .. S.envcodes[code] end
  io.write("environment failures: ", table.concat(t, " "), "\n")
end

local ok, err = xpcall(MODE == "chaos" and chaos or main, function(e)
  if type(e) == "table" and e.harness then return e.msg end
  return ("seed=%d step=%d op=%s: harness error: %s"):format(SEED, S.step, S.op,
                                                            debug.traceback(tostring(e), 2))
end)
core._inject_fault(nil)
if not ok then
  io.write("FAIL ", err, "\n")
  os.exit(1)
end
