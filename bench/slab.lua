-- slab.lua -- mappedpages.slab from Lua: call rate, space, durable commits.
--
-- 1. Call rate inside transactions (CPU time, os.clock), 4 KiB pages, a
--    slab holding N = 100,000 live objects of uniform random sizes 16..512
--    (made in one transaction). ROUNDS rounds, each running in turn:
--      random pairs  one transaction of M = 100,000 x (s:alloc(random size)
--                    + s:free(a random live object)), committed (untimed);
--      FIFO pairs    the same, freeing the oldest live object (a queue);
--      alloc only    M x s:alloc(random size), rolled back;
--      free only     M x s:free() of distinct random live objects, rolled back.
--    An alloc and a free are two ops; figures are medians over rounds.
--    Target: >= 500,000 ops/s. The same run also times view:unpack(0,
--    "<i8") on a protected view (the binding's per-call cost, to compare
--    machines), and one extra, untimed pass of each loop counts the C calls
--    per op (method tables wrapped) and the pages a transaction touches for
--    the first time (pager:write_protected: a copy of the page each).
-- 2. Space: stats().efficiency (live bytes / bytes of every page the slab
--    owns, anchor included) with N live objects of uniform random sizes
--    16..512 made by s:alloc in one transaction, for 1 KiB, 4 KiB and 64 KiB
--    pages; for 4 KiB after N more random pairs in transactions of 1,000,
--    and after the random pairs of part 1 (transactions of M pairs: a ref
--    freed in a transaction is reused only from the next, so those need room
--    for M objects more than the live ones). Target: >= 0.80.
-- 3. Durable single commits: auto-commit s:alloc(100) (each call one
--    durable transaction), auto-commit s:free and, for reference, the
--    core's single-page protected commit (write_protected + commit(): the
--    same writes, a content page and the root), per second, interleaved
--    with the raw pwrite 4 KiB + fdatasync rate of `commit_rate --raw-only`
--    (Lua cannot fdatasync), DURABLE_ROUNDS rounds of SLICE s, medians;
--    ratios are medians of per-round ratios. Barriers per op from
--    pager:info().barriers. Wall time from /proc/uptime.
--
-- Nothing but files under os.tmpname()'s directory is touched; they are
-- removed on every exit path.
--
-- Run from the repository root (or `make bench`):
--   LUA_PATH_5_4='lua/?.lua;lua/?/init.lua;;' LUA_CPATH_5_4='build/?.so;;' lua5.4 bench/slab.lua [N [M [ROUNDS]]]

package.path = (arg and arg[0] or ""):gsub("[^/]*$", "") .. "lib/?.lua;" .. package.path
local kit = require "benchkit"
local mp = require "mappedpages"
local median, range, wall, rng = kit.median, kit.range, kit.wall, kit.rng
local slab = require "mappedpages.slab"

local N = tonumber(arg and arg[1]) or 100000
local M = tonumber(arg and arg[2]) or 100000
local ROUNDS = tonumber(arg and arg[3]) or 5
local DURABLE_ROUNDS, SLICE = 6, 0.5
local MIN, MAX = 16, 512

local clock, remove, tmpname, getenv = os.clock, os.remove, os.tmpname, os.getenv
local fmt = string.format

local tmp = tmpname()   -- a unique name; our files sit next to it
local open_pagers, made = {}, {}

local function newfile(suffix)
  local path = tmp .. suffix
  made[#made + 1] = path
  return path
end

local function cleanup()
  for p in pairs(open_pagers) do p:close() end
  for _, path in ipairs(made) do remove(path) end
  remove(tmp)
end

-- A deterministic generator (independent of math.random): r(n) in 1..n.
local function open_slab(suffix, page_size)
  local path = newfile(suffix)
  local p = assert(mp.create(path, {page_size = page_size}))
  open_pagers[p] = true
  return assert(slab.open(p, "bench")), p, path
end

local function close(p, path)
  p:close()
  open_pagers[p] = nil
  remove(path)
end

-- N live objects in one transaction; returns the list of refs.
local function populate(s, p, n, r)
  local live = {}
  p:transaction(function()
    for i = 1, n do live[i] = assert(s:alloc(MIN - 1 + r(MAX - MIN + 1))) end
  end)
  return live
end

-- ---- C call counting --------------------------------------------------------

-- A call hook counts the calls of C functions: those of the binding (pager,
-- view and writer methods) and the others (math.type, string.byte,
-- pcall...), while a loop runs; the loop's own random numbers are Lua.
local binding = {}
for _, t in ipairs({mp._View_methods, mp._Writer_methods, mp._Pager_methods}) do
  for _, f in pairs(t) do if type(f) == "function" then binding[f] = true end end
end

local write_protected = mp._Pager_methods.write_protected

-- Returns binding calls, other C calls, pager:write_protected calls (a
-- transaction's first writer of a page copies it: its copy-on-write step).
local function count_calls(fn)
  local n_binding, n_other, n_writers = 0, 0, 0
  local getinfo = debug.getinfo
  debug.sethook(function()
    local info = getinfo(2, "Sf")
    if info.what == "C" then
      local f = info.func
      if binding[f] then
        n_binding = n_binding + 1
        if f == write_protected then n_writers = n_writers + 1 end
      else
        n_other = n_other + 1
      end
    end
  end, "c")
  local ok, err = pcall(fn)
  debug.sethook()
  if not ok then error(err, 0) end
  return n_binding, n_other - 1, n_writers      -- (the pcall above is not the loop's)
end

-- ---- 1. call rate -------------------------------------------------------------

local function pairs_loop(s, live, r, fifo, head)
  local n = #live
  for _ = 1, M do
    local ref = s:alloc(MIN - 1 + r(MAX - MIN + 1))
    local j
    if fifo then j = head; head = head % n + 1 else j = r(n) end
    s:free(live[j])
    live[j] = ref
  end
  return head
end

local function rate()
  local s, p, path = open_slab("-rate.mp", 4096)
  local r = rng(42)
  local live = populate(s, p, N, r)
  local res = {random = {}, fifo = {}, alloc = {}, free = {}, unpack = {}, commit = {}}
  local head = 1
  -- the binding's per-call cost, for comparing machines
  local pv = p:protected(s.pid)
  local function time_unpack()
    local k = 1000000
    local c0 = clock()
    for _ = 1, k do pv:unpack(0, "<i8") end
    return (clock() - c0) / k * 1e9
  end
  local function round(k, counting)
    local tx = p:begin()
    local c0 = clock()
    pairs_loop(s, live, r, false)
    local t = clock() - c0
    local w0 = wall()
    assert(tx:commit())
    if not counting then
      res.random[k] = 2 * M / t
      res.commit[k] = wall() - w0
    end
    tx = p:begin()
    c0 = clock()
    head = pairs_loop(s, live, r, true, head)
    t = clock() - c0
    assert(tx:commit())
    if not counting then res.fifo[k] = 2 * M / t end
    tx = p:begin()
    c0 = clock()
    for _ = 1, M do s:alloc(MIN - 1 + r(MAX - MIN + 1)) end
    t = clock() - c0
    tx:rollback()
    if not counting then res.alloc[k] = M / t end
    -- M distinct live objects, picked before timing
    local picks, taken = {}, {}
    while #picks < math.min(M, #live) do
      local j = r(#live)
      if not taken[j] then taken[j] = true picks[#picks + 1] = live[j] end
    end
    tx = p:begin()
    c0 = clock()
    for i = 1, #picks do s:free(picks[i]) end
    t = clock() - c0
    tx:rollback()
    if not counting then
      res.free[k] = #picks / t
      res.unpack[k] = time_unpack()
    end
  end
  for k = 1, ROUNDS do
    round(k)
    io.write(".")
    io.stdout:flush()
  end
  print()
  res.after = s:stats()
  assert(s:check())
  -- counted pass: C calls per op of each loop (not timed)
  local calls = {}
  local function counted_loop(fn, ops, keep)
    local tx = p:begin()
    local nb, no, nw = count_calls(fn)
    if keep then assert(tx:commit()) else tx:rollback() end
    calls[#calls + 1] = {binding = nb / ops, other = no / ops, first = nw / ops}
  end
  counted_loop(function() pairs_loop(s, live, r, false) end, 2 * M, true)
  counted_loop(function() head = pairs_loop(s, live, r, true, head) end, 2 * M, true)
  counted_loop(function() for _ = 1, M do s:alloc(MIN - 1 + r(MAX - MIN + 1)) end end, M)
  local n = math.min(M, #live)
  counted_loop(function()
    local taken, k = {}, 0
    while k < n do
      local j = r(#live)
      if not taken[j] then taken[j] = true k = k + 1 s:free(live[j]) end
    end
  end, n)
  res.calls = calls
  close(p, path)
  return res
end

-- ---- 2. space -------------------------------------------------------------

-- Efficiency after populate, and (churn) after N random pairs more in
-- transactions of 1,000 pairs each.
local function space(page_size, churn)
  local s, p, path = open_slab("-space-" .. page_size .. ".mp", page_size)
  local r = rng(7)
  local live = populate(s, p, N, r)
  if churn then
    for _ = 1, N // 1000 do
      p:transaction(function()
        for _ = 1, 1000 do
          local ref = s:alloc(MIN - 1 + r(MAX - MIN + 1))
          local j = r(#live)
          s:free(live[j])
          live[j] = ref
        end
      end)
    end
  end
  local st = s:stats()
  assert(s:check())
  close(p, path)
  return st
end

-- ---- 3. durable commits -----------------------------------------------------

local function raw_helper()
  local build = getenv("MP_BUILD") or "build"
  local bin = build .. "/bench/commit_rate"
  local f = io.open(bin)
  if not f then return nil end
  f:close()
  return function()
    local h = io.popen(fmt("%s --raw-only --seconds %g --rounds 1", bin, SLICE))
    local out = h:read("a")
    h:close()
    return tonumber(out:match("raw_ops_per_s%s+([%d.]+)"))
  end
end

-- Bytes this process has caused to be written (page-cache pages dirtied,
-- through write or the mapping): /proc/self/io write_bytes, or nil.
local function written()
  local f = io.open("/proc/self/io")
  if not f then return nil end
  local t = f:read("a")
  f:close()
  return tonumber(t:match("write_bytes:%s*(%d+)"))
end

local function durable()
  local s, p, path = open_slab("-durable.mp", 4096)
  local raw = raw_helper()
  local res = {alloc = {}, free = {}, prot = {}, raw = {}, ra = {}, rf = {}, rp = {}}
  local pid = p:alloc_protected()
  local barriers, ops = {alloc = 0, free = 0, prot = 0}, {alloc = 0, free = 0, prot = 0}
  local bytes = {alloc = 0, free = 0, prot = 0}
  for k = 1, DURABLE_ROUNDS do
    if raw then res.raw[k] = raw() end
    local refs, n = {}, 0
    local b0, w0 = p:info().barriers, written()
    local t0 = wall()
    local t
    repeat
      for _ = 1, 8 do
        n = n + 1
        refs[n] = assert(s:alloc(100))
      end
      t = wall()
    until t - t0 >= SLICE
    res.alloc[k] = n / (t - t0)
    barriers.alloc, ops.alloc = barriers.alloc + p:info().barriers - b0, ops.alloc + n
    if w0 then bytes.alloc = bytes.alloc + written() - w0 end
    -- free what was made, one durable commit each (as long as it lasts)
    b0, w0 = p:info().barriers, written()
    t0 = wall()
    local i = 0
    repeat
      for _ = 1, 8 do
        if i < n then i = i + 1 assert(s:free(refs[i])) end
      end
      t = wall()
    until t - t0 >= SLICE or i >= n
    res.free[k] = i / (t - t0)
    barriers.free, ops.free = barriers.free + p:info().barriers - b0, ops.free + i
    if w0 then bytes.free = bytes.free + written() - w0 end
    if i < n then
      local rest = {}
      for j = i + 1, n do rest[#rest + 1] = refs[j] end
      assert(s:free_bulk(rest))           -- keep the slab bounded (untimed)
    end
    -- the core's own single-page protected commit, for reference
    b0, w0 = p:info().barriers, written()
    t0 = wall()
    i = 0
    repeat
      for _ = 1, 8 do
        i = i + 1
        local w = p:write_protected(pid)
        w:pack(0, "<i8", i)
        assert(w:commit())
      end
      t = wall()
    until t - t0 >= SLICE
    res.prot[k] = i / (t - t0)
    barriers.prot, ops.prot = barriers.prot + p:info().barriers - b0, ops.prot + i
    if w0 then bytes.prot = bytes.prot + written() - w0 end
    if res.raw[k] then
      res.ra[k] = res.alloc[k] / res.raw[k]
      res.rf[k] = res.free[k] / res.raw[k]
      res.rp[k] = res.prot[k] / res.raw[k]
    end
  end
  close(p, path)
  res.bpo_alloc = barriers.alloc / ops.alloc
  res.bpo_free = barriers.free / ops.free
  res.kib_alloc = bytes.alloc / ops.alloc / 1024
  res.kib_free = bytes.free / ops.free / 1024
  res.bpo_prot = barriers.prot / ops.prot
  res.kib_prot = bytes.prot / ops.prot / 1024
  return res
end

local function main()
  print(fmt("slab: %s; N = %d live objects of %d..%d bytes, M = %d per loop, %d rounds",
            _VERSION, N, MIN, MAX, M, ROUNDS))
  io.stdout:flush()
  local a = rate()
  print()
  print(fmt("1. calls inside transactions, 4 KiB pages, %d live objects (CPU time, median of %d rounds):",
            N, ROUNDS))
  print("| loop | ops/s (median) | min..max | binding calls per op | other C calls per op "
        .. "| pages first written per op |")
  print("|---|---:|---|---:|---:|---:|")
  local rows = {{"random pairs (alloc + free of a random live object)", a.random, 1},
                {"FIFO pairs (alloc + free of the oldest)", a.fifo, 2},
                {"alloc only", a.alloc, 3}, {"free only (random live objects)", a.free, 4}}
  for _, row in ipairs(rows) do
    local lo, hi = range(row[2])
    local c = a.calls[row[3]]
    print(fmt("| %s | %.0f | %.0f..%.0f | %.2f | %.2f | %.3f |", row[1], median(row[2]), lo, hi,
              c.binding, c.other, c.first))
  end
  print(fmt("target: >= 500,000 ops/s. One binding call, a protected view:unpack(0, \"<i8\"), "
            .. "costs %.0f ns in this run", median(a.unpack)))
  print(fmt("commit of a random-pairs transaction: %.3f s (wall, median)", median(a.commit)))
  print()
  print(fmt("2. space: %d live objects of uniform random sizes %d..%d (target >= 0.80):", N, MIN, MAX))
  print("| page size | objects | live bytes | pages (anchor included) | efficiency |")
  print("|---:|---:|---:|---:|---:|")
  for _, ps in ipairs({1024, 4096, 65536}) do
    local st = space(ps)
    print(fmt("| %d | %d | %d | %d | %.3f |", ps, st.objects, st.bytes, st.pages, st.efficiency))
    io.stdout:flush()
  end
  local st = space(4096, true)
  print(fmt("| 4096, then %d random pairs in transactions of 1,000 | %d | %d | %d | %.3f |", N,
            st.objects, st.bytes, st.pages, st.efficiency))
  st = a.after
  print(fmt("| 4096, after part 1 (transactions of %d pairs) | %d | %d | %d | %.3f |", M,
            st.objects, st.bytes, st.pages, st.efficiency))
  print("(a ref freed in a transaction is not handed out again before the next one, so a")
  print("transaction of M pairs needs room for M objects more than live ones)")
  print()
  local d = durable()
  print(fmt("3. durable auto-commit calls, 4 KiB pages, %d rounds x %.1f s interleaved with raw:",
            DURABLE_ROUNDS, SLICE))
  print("| variant | ops/s (median) | vs raw | barriers per op | KiB dirtied per op |")
  print("|---|---:|---:|---:|---:|")
  if d.raw[1] then
    print(fmt("| raw pwrite 4 KiB + fdatasync (commit_rate --raw-only) | %.0f | 1.00 | 1 | 4.0 |",
              median(d.raw)))
    print(fmt("| s:alloc(100) auto-commit | %.0f | %.2f | %.2f | %.1f |", median(d.alloc), median(d.ra),
              d.bpo_alloc, d.kib_alloc))
    print(fmt("| s:free(ref) auto-commit | %.0f | %.2f | %.2f | %.1f |", median(d.free), median(d.rf),
              d.bpo_free, d.kib_free))
    print(fmt("| reference: one protected page, write_protected + commit() | %.0f | %.2f | %.2f | %.1f |",
              median(d.prot), median(d.rp), d.bpo_prot, d.kib_prot))
  else
    print(fmt("| s:alloc(100) auto-commit | %.0f | n/a (build/bench/commit_rate missing) | %.2f | %.1f |",
              median(d.alloc), d.bpo_alloc, d.kib_alloc))
    print(fmt("| s:free(ref) auto-commit | %.0f | n/a | %.2f | %.1f |", median(d.free), d.bpo_free, d.kib_free))
  end
end

local ok, err = xpcall(main, debug.traceback)
cleanup()
if not ok then error(err, 0) end
