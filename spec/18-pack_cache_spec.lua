-- spec/18-pack_cache_spec.lua -- view:pack / view:unpack keep parsed
-- formats in a small per-pager cache (csrc/lua_pack.h, "Compiled
-- formats").  These tests prove the cache never changes a result: every
-- option of the format language, formats built at run time whose string
-- is collected and another one made at the same address, more distinct
-- formats than the cache holds, and error messages, each compared with the
-- uncached path (a format longer than the cache takes is parsed at every
-- call: the same format behind 48 leading spaces, which mean nothing) and,
-- where they agree, with string.pack / string.unpack.

local H = require "helpers"

local P = 1024
local PAD = (" "):rep(48)       -- longer than any cached format (40 bytes)

-- Two writable regular pages of one pager: a for the format, b for the
-- uncached twin.
local function setup()
  local p = H.create({ page_size = P })
  local a, b = p:page(p:alloc()), p:page(p:alloc())
  return p, a, b
end

local function packed(...)
  return { n = select("#", ...), ... }
end

local function same_list(x, y)
  if x.n ~= y.n then return false end
  for i = 1, x.n do
    local u, v = x[i], y[i]
    if math.type(u) ~= math.type(v) or type(u) ~= type(v) then return false end
    if u ~= v and not (u ~= u and v ~= v) then return false end
  end
  return true
end

-- The message of the error fn raises (nil when it does not raise).
local function err_of(fn, ...)
  local ok, msg = pcall(fn, ...)
  if ok then return nil end
  return tostring(msg)
end

-- Formats covering every option, with values for them.
local CASES = {
  { "b B", -128, 255 },
  { "h H", -32768, 65535 },
  { "l L", -5, 7 },
  { "j J", math.mininteger, -1 },
  { "T", 123456 },
  { "i I", -2, 3 },
  { "<i1 i2 i3 i5 i7 i8", -1, -300, 70000, -(1 << 33), 1 << 50, math.maxinteger },
  { ">I1 I2 I3 I5 I7 I8", 1, 300, 70000, 1 << 33, 1 << 50, -1 },
  { "=i4 I4", -7, 7 },
  { "<i9 i16 I9 I16", -3, math.mininteger, 5, math.maxinteger },
  { ">i9 i16 I12", -3, 42, 77 },
  { "<f d n", 1.5, -2.25, math.pi },
  -- integers and floats together (one path of their own)
  { "<B i8 d f i2 n", 1, -2, 2.5, 0.25, -3, 1 / 3 }, { "!8 b d b f I3", 1, 2.5, 3, 1.5, 9 },
  { ">d i4 f J", -0.0, 5, 3, -1 }, { "<f d i16", 1e300, -math.huge, -7 },
  { ">f d n", 0.5, 1 / 3, -0.0 },
  { "<s", "hello" }, { "<s1", "abc" }, { ">s2", ("y"):rep(300) },
  { "<s4 s8", "", "xyz" }, { "z", "zero-terminated" }, { "z z", "", "a" },
  { "c0", "" }, { "c5", "ab" }, { "c3 i2", "xyz", -9 },
  { "x", }, { "i1 x x i1", 1, 2 },
  { "!i1 i8", 1, 2 }, { "!4 i1 i8", 1, 2 }, { "!8 i1 d", 1, 2.5 },
  { "!2 b i8 b j", 1, 2, 3, 4 }, { "!16 b i16", 1, -1 },
  { "!4 b Xi4 i2", 1, 2 }, { "!8 b Xd b", 1, 2 }, { "b Xi8 b", 1, 2 },
  { "!4 b XI2 h", 1, 2 }, { "!8 b Xs4 s4", 1, "q" },
  { " < > = ! i4", 5 }, { "<!4 z i4", "odd", 7 },
  { "i4\0garbage", 9 },          -- parsing stops at a zero byte
  { "", },
  { "<i4 i4 i4 i4 i4 i4 i4 i4 i4 i4 i4 i4 i4 i4", 1, 2, 3, 4, 5, 6, 7, 8,
    9, 10, 11, 12, 13, 14 },      -- more items than an entry holds
  { "s1 c2 z i1 !2 h Xi8 B", "s", "cc", "zz", -1, 2, 3 },
}

-- Pack and unpack case c at offset off with fmt on a and with the uncached
-- twin on b; both must agree (bytes, next offset, values), and at offset 0
-- with string.pack / string.unpack.
local function check_case(a, b, c, off)
  local fmt = c[1]
  local vals = packed(table.unpack(c, 2))
  a:fill(0xAB); b:fill(0xAB)
  local ra = packed(pcall(a.pack, a, off, fmt, table.unpack(vals, 1, vals.n)))
  local rb = packed(pcall(b.pack, b, off, PAD .. fmt, table.unpack(vals, 1, vals.n)))
  assert.same(rb, ra)
  assert.equal(b:read(), a:read())
  local ua = packed(pcall(a.unpack, a, off, fmt))
  local ub = packed(pcall(b.unpack, b, off, PAD .. fmt))
  assert.is_true(same_list(ua, ub), fmt)
  if off == 0 and ra[1] then
    local s = string.pack(fmt, table.unpack(vals, 1, vals.n))
    assert.equal(s, a:read(0, #s))
    assert.equal(#s, ra[2])
    local su = packed(string.unpack(fmt, a:read()))
    su[su.n] = su[su.n] - 1          -- string.unpack's position is 1-based
    local got = packed(table.unpack(ua, 2, ua.n))
    assert.is_true(same_list(su, got), fmt)
  end
end

describe("the pack format cache", function()
  after_each(H.cleanup)

  it("gives the uncached result for every option, at every alignment", function()
    local _, a, b = setup()
    for _, c in ipairs(CASES) do
      for off = 0, 9 do check_case(a, b, c, off) end
      check_case(a, b, c, P - 3)
    end
    -- again, now that every format is cached (and some were evicted)
    for round = 1, 3 do
      for i = #CASES, 1, -1 do check_case(a, b, CASES[i], round) end
    end
  end)

  it("raises the uncached path's errors, in the same order", function()
    local _, a, b = setup()
    local BAD = {
      { "i17", 1 }, { "i0", 1 }, { "I99", 1 }, { "s17", "x" }, { "!17 i4", 1 },
      { "!0", 1 }, { "c", "x" }, { "Q", 1 }, { "i4 Q", 1 }, { "i4 q", "no" },
      { "X", 1 }, { "Xc1 b", 1 }, { "Xz b", 1 }, { "X i4", 1 }, { "X!4 i4", 1 },
      { "Xi17", 1 }, { "!3 i4", 1 }, { "!3 i2", 1 }, { "!3 b Xi4", 1 },
      { "i1", 128 }, { "I1", -1 }, { "i2", 1.5 }, { "i4", "12" }, { "i4", "x" },
      { "i4", {} }, { "d", "x" }, { "i4 i4", 1 }, { "i4", nil },
      { "c2", "abc" }, { "s1", ("x"):rep(256) }, { "z", "a\0b" }, { "z", {} },
      { "c8000", "" }, { "i8", 1, "i17" }, { "i2 i17", 70000 },
      { "c1000 i17", "" }, { "c1000 i4", "", "x" }, { "c99999999999", "" },
      { "i4 c", 1 }, { "!4 b X", 1 },
      { "d i4", "x" }, { "i4 d", 1, {} }, { "d i1", 1.5, 200 }, { "d d", 1.5 },
      { "f I2", 1, -1 }, { "i8 d", 2.5, 1 }, { "d c1000", 1, "" },
    }
    for _, c in ipairs(BAD) do
      local fmt = c[1]
      for _, off in ipairs({ 0, 1, 3, P - 2, P, P + 1, -1 }) do
        a:fill(0x5A); b:fill(0x5A)
        local ma = err_of(a.pack, a, off, fmt, table.unpack(c, 2, 3))
        local mb = err_of(b.pack, b, off, PAD .. fmt, table.unpack(c, 2, 3))
        assert.equal(mb, ma)
        assert.equal(b:read(), a:read())
        if ma then                              -- a failing pack writes nothing
          assert.equal(("\x5A"):rep(P), a:read())
        end
        ma = err_of(a.unpack, a, off, fmt)
        mb = err_of(b.unpack, b, off, PAD .. fmt)
        assert.equal(mb, ma)
      end
    end
    -- errors of unpack: data that does not fit, strings too long
    a:fill(0xFF); b:fill(0xFF)
    for _, fmt in ipairs({ "i9", "I16", "s1", "s2", "z", "i4 s4", "c2000",
                           "<i16", ">I9", "i8 s8" }) do
      for _, off in ipairs({ 0, 4, P - 8, P - 1, P }) do
        assert.equal(err_of(b.unpack, b, off, PAD .. fmt),
                     err_of(a.unpack, a, off, fmt))
      end
    end
    -- the cached error is raised again, identically
    for _ = 1, 3 do
      assert.equal(err_of(b.pack, b, 0, PAD .. "i4 i17", 1),
                   err_of(a.pack, a, 0, "i4 i17", 1))
      assert.equal(err_of(b.pack, b, 0, PAD .. "i4 i17", "x"),
                   err_of(a.pack, a, 0, "i4 i17", "x"))
    end
  end)

  it("holds up with more distinct formats than it has slots", function()
    local _, a = setup()
    local fmts = {}
    for k = 1, 300 do
      local parts = { k % 2 == 0 and "<" or ">" }
      for j = 1, 1 + k % 5 do
        parts[#parts + 1] = (j + k) % 3 == 0 and "i" .. (1 + (k + j) % 8)
                            or "I" .. (1 + (k * j) % 8)
      end
      fmts[k] = table.concat(parts, " ")
    end
    for round = 1, 4 do
      for k = 1, #fmts do
        local i = (k * 37 + round * 11) % #fmts + 1
        local fmt = fmts[i]
        local n = select("#", string.unpack(fmt, ("\0"):rep(64))) - 1
        local vals = {}
        for j = 1, n do vals[j] = (i * 31 + j * 7) % 100 end
        local off = (i + round) % 50
        local next = a:pack(off, fmt, table.unpack(vals))
        local s = string.pack(fmt, table.unpack(vals))
        assert.equal(off + #s, next)
        assert.equal(s, a:read(off, #s))
        local got = { a:unpack(off, fmt) }
        assert.equal(off + #s, table.remove(got))
        assert.same(vals, got)
      end
    end
  end)

  it("never gives a collected format's parse to a new string at its address", function()
    local _, a = setup()
    -- Formats of one length that mean different things.
    -- Formats of one length that mean different things, written in halves:
    -- a literal is a constant, alive as long as this function, so only a
    -- format made from halves at run time is a new string whose address
    -- the collector may give to another.
    local HALF = { { "<i4", " i2" }, { ">i4", " i2" }, { "<I4", " I2" },
                   { "<i2", " i4" }, { "<c4", " i2" }, { "<i4", " c2" },
                   { ">c1", " I5" }, { "!4b", "Xi4" }, { "<i6", "   " },
                   { "<z ", " i2" }, { "<s1", " i3" }, { "<f ", " i2" } }
    local VALS = { { 1, -2 }, { 1, -2 }, { 3, 4 }, { -5, 6 }, { "abcd", 7 },
                   { 8, "ef" }, { "g", 9 }, { 1 }, { -10 }, { "hi", 11 },
                   { "j", 12 }, { 0.5, 13 } }
    local reused, seen = 0, {}
    for n = 1, 3000 do
      local k = (n * n * 7 + n // 3) % #HALF + 1
      local fmt = HALF[k][1] .. HALF[k][2]
      local addr = string.format("%p", fmt)
      if seen[addr] and seen[addr] ~= k then reused = reused + 1 end
      seen[addr] = k
      a:fill(0)
      local next = a:pack(1 + n % 5, fmt, table.unpack(VALS[k]))
      a:fill(0)
      assert.equal(next, a:pack(1 + n % 5, PAD .. fmt, table.unpack(VALS[k])))
      local got = { a:unpack(1 + n % 5, fmt) }
      local want = { a:unpack(1 + n % 5, PAD .. fmt) }
      assert.same(want, got)
      if n % 3 == 0 or n % 7 == 0 then collectgarbage() collectgarbage() end
    end
    -- The test means something only if addresses did get reused; under
    -- AddressSanitizer (make test-asan) freed memory sits in quarantine,
    -- so they are not, and the test only checks the results.
    if not (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true) then
      assert.is_true(reused > 100, "format addresses were reused " .. reused .. " times")
    end
  end)

  it("survives finalizers that churn the cache while unpack copies strings", function()
    -- A string result allocates, and a finalizer run then may unpack
    -- through the same cache, overwriting the slot unpack is walking (it
    -- walks a copy).  In a fresh process (a small heap) generational
    -- collections are frequent enough that some run inside a:unpack.
    local out = H.run_lua(([[
local mp = require "mappedpages"
local p = assert(mp.create(%q, { page_size = 1024 }))
local a, b = p:page(p:alloc()), p:page(p:alloc())
local END = a:pack(0, "<c3 i4 z i2 s1 I3", "abc", -77, "zed", 1234, "ss", 99)
local churn, inside = 0, false  -- finalizers run inside a:unpack
local THRASH = {}               -- 88 formats of 3..13 bytes: every slot
for k = 1, 88 do THRASH[k] = "<" .. ("B"):rep(1 + k %% 11) .. "I" .. (1 + k // 11) end
local MT = { __gc = function()
  for k = 1, #THRASH do b:unpack(0, THRASH[k]) end
  if inside then churn = churn + 1 end
end }
-- (how often a collection falls inside a:unpack depends on the heap:
-- vary the rhythm until some did)
for try = 1, 12 do
  collectgarbage("generational", 1 + try %% 3, 100)
  for it = 1, 20000 do
    local junk = {}
    for j = 1, it %% (5 + try) do junk[j] = {} end
    setmetatable({}, { __gc = MT.__gc })
    inside = true
    local x, y, z, w, s, u, nxt = a:unpack(0, "<c3 i4 z i2 s1 I3")
    inside = false
    assert(x == "abc" and y == -77 and z == "zed" and w == 1234
           and s == "ss" and u == 99 and nxt == END, "wrong values")
  end
  if churn > 0 then break end
end
collectgarbage("incremental")
p:close()
io.write("ok ", churn)
]]):format(H.path()))
    local churn = out:match("^ok (%d+)$")
    assert(churn, out)
    assert.is_true(tonumber(churn) > 0, "no finalizer ran inside unpack")
  end)
end)

-- A transaction's writer remembers the page mp_protected_write_ptr gave it
-- (csrc/lua_view.c, txn_page) until the epoch changes or the transaction
-- ends.  Everything that could change that page or make the call fail must
-- still be seen.
describe("a transaction writer's remembered page", function()
  local core = require "mappedpages.core"
  after_each(function()
    core._inject_fault(nil)
    H.cleanup()
  end)

  local function raises(pattern, f, ...)
    local ok, msg = pcall(f, ...)
    assert.is_false(ok)
    assert.is_truthy(tostring(msg):find(pattern, 1, true), tostring(msg))
  end

  it("is shared by writers of the pid and sees a private writer's commit", function()
    local p = H.create({ page_size = P })
    local pid = p:alloc_protected()
    local pw = p:write_protected(pid)
    pw:pack(16, "<i8", 77)
    local tx = p:begin()
    local w1, w2 = p:write_protected(pid), p:write_protected(pid)
    w1:pack(0, "<i8", 5)
    assert.equal(5, (w2:unpack(0, "<i8")))
    w2:pack(8, "<i8", 6)
    assert.equal(6, (w1:unpack(8, "<i8")))
    assert.is_true(pw:commit())            -- joins the transaction
    assert.equal(77, (w1:unpack(16, "<i8")))
    assert.equal(5, (w1:unpack(0, "<i8")))
    w1:pack(24, "<i4", 9)
    assert.equal(9, (w2:unpack(24, "<i4")))
    assert.is_true(tx:commit())
    assert.equal(9, (p:protected(pid):unpack(24, "<i4")))
  end)

  it("is forgotten when the pid is freed, and with its transaction", function()
    local p = H.create({ page_size = P })
    local pid = p:alloc_protected()
    local tx = p:begin()
    local w = p:write_protected(pid)
    w:pack(0, "<i8", 1)
    p:free_protected(pid)
    raises("which the open transaction freed", w.pack, w, 0, "<i8", 2)
    raises("which the open transaction freed", w.unpack, w, 0, "<i8")
    tx:rollback()
    raises("its transaction ended", w.unpack, w, 0, "<i8")
    tx = p:begin()
    w = p:write_protected(pid)
    w:pack(0, "<i8", 42)
    assert.is_true(tx:commit())
    raises("its transaction ended", w.unpack, w, 0, "<i8")
    tx = p:begin()
    w = p:write_protected(pid)
    assert.equal(42, (w:unpack(0, "<i8")))
    w:pack(0, "<i8", 43)
    tx:rollback()
    raises("its transaction ended", w.pack, w, 0, "<i8", 1)
    assert.equal(42, (p:protected(pid):unpack(0, "<i8")))
  end)

  it("is not used once a failed write poisoned the pager", function()
    local p = H.create({ page_size = P })
    local pid, pid2 = p:alloc_protected(), p:alloc_protected()
    local pw = p:write_protected(pid2)
    pw:write(0, "x")
    local tx = p:begin()
    local w = p:write_protected(pid)
    local win = w:sub(8, 32)
    w:pack(0, "<i8", 1)
    win:pack(0, "<i8", 2)
    core._inject_fault("write", "eio")
    local ok, _, code = pw:commit()
    core._inject_fault(nil)
    assert.is_nil(ok)
    assert.equal("io", code)
    local poisoned = "an earlier write failed; the pager refuses changes"
    raises(poisoned, w.pack, w, 0, "<i8", 2)
    raises(poisoned, w.unpack, w, 0, "<i8")
    raises(poisoned, win.pack, win, 0, "<i8", 3)
    raises(poisoned, win.unpack, win, 0, "<i8")
    assert.is_nil((tx:commit()))
    raises("its transaction ended", w.unpack, w, 0, "<i8")
  end)
end)
