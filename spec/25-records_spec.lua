-- 25-records: typed fixed-size record tables (mappedpages.records).
--
-- Every function and error path: values checked against their types
-- (integers out of range for each integer type, NaN and infinities,
-- strings one byte too long, unknown fields, wrong types), deleted and
-- never-used ids, read-only pagers, closed pagers and dropped tables, a
-- full disk (an injected failure to grow), persistence across reopen,
-- schema evolution (appended fields migrate with their defaults, any other
-- change is refused and changes nothing), a record too large for a page,
-- ids reused no earlier than the next transaction, rollbacks seen by every
-- handle, the write pattern of a large transaction, and a seeded random
-- model test with transactions, rollbacks and reopens.

local H = require "helpers"
local mp = H.mp
local core = require "mappedpages.core"
local records = require "mappedpages.records"

local PLAYER = [[
  -- a game's players
  record player {
    name: char[8]
    score: f64 = 0.5
    level: u16 = 1
    alive: bool = true
    gold: i64
  }
]]

local function assert_check(t)
  local ok, problems = t:check()
  assert(ok, "t:check() failed:\n  " .. table.concat(problems or {}, "\n  "))
end

local function new_table(opts, src, name)
  local p, path = H.create(opts or {page_size = 1024})
  local t = assert(records.open(p, name or "players", src or PLAYER))
  return t, p, path
end

local function rows(t)
  local out = {}
  for id, row in t:scan() do out[id] = row end
  return out
end

describe("records.open", function()
  after_each(function() H.cleanup() end)

  it("creates an empty table in one durable commit, with the file's catalog", function()
    local p = H.create()
    local b = H.barriers(p)
    local t = assert(records.open(p, "players", PLAYER))
    assert.equal(1, H.barriers(p) - b)
    assert.equal(0, t:count())
    assert.equal("players", t:name())
    assert.equal("player", t:record().name)
    assert.same({}, rows(t))
    assert_check(t)
  end)

  it("takes schema text, a parsed schema or a record description", function()
    local p = H.create()
    local s = assert(mp.schema.parse(PLAYER))
    local a = assert(records.open(p, "a", PLAYER))
    local b = assert(records.open(p, "b", s))
    local c = assert(records.open(p, "c", s:record("player")))
    for _, t in ipairs {a, b, c} do
      local id = assert(t:insert{name = "ada"})
      assert.equal("ada", t:get(id).name)
    end
  end)

  it("needs the record's name when the schema declares several", function()
    local p = H.create()
    local src = "record a { x: u8 }\nrecord b { y: i32 }"
    H.raises_with({"records.open", "2 records", "a, b"}, records.open, p, "t", src)
    H.raises_with({"records.open", "no record", "c"}, records.open, p, "t", src, "c")
    local t = assert(records.open(p, "t", src, "b"))
    assert.equal("b", t:record().name)
    assert.equal(7, t:get(assert(t:insert{y = 7})).y)
    assert.is_nil(mp.catalog.open(p):get("u"))
  end)

  it("returns nil, msg, 'schema' for a schema that does not parse, creating nothing", function()
    local p = H.create()
    assert(mp.catalog.open(p))
    local n = p:info().protected_count
    H.fails_with("schema", records.open(p, "t", "record a { x: strnig }"))
    assert.equal(n, p:info().protected_count)
    assert.is_nil(mp.catalog.open(p):get("t"))
  end)

  it("refuses a record larger than fits a page with 'schema', creating nothing", function()
    local p = H.create({page_size = 1024})
    assert(mp.catalog.open(p))
    local n = p:info().protected_count
    local max = records.max_record_size(1024)
    local msg = H.fails_with("schema", records.open(p, "big", ("record big { s: char[%d] }"):format(max + 1)))
    assert.matches("does not fit", msg)
    assert.equal(n, p:info().protected_count)
    assert.is_nil(mp.catalog.open(p):get("big"))
    local t = assert(records.open(p, "big", ("record big { s: char[%d] }"):format(max)))
    local s = ("x"):rep(max)
    assert.equal(s, t:get(assert(t:insert{s = s})).s)
    assert.equal(1, t:stats().per_page)
  end)

  it("refuses unknown options (indexes: spec/28)", function()
    local p = H.create()
    H.raises_with({"records.open", "unknown option"}, records.open, p, "t", PLAYER, {colour = 1})
    H.raises_with({"records.open", "unknown option"}, records.open, p, "t", PLAYER, "player", {colour = 1})
    assert.equal(0, p:root())
  end)

  it("raises for a bad pager, name or source", function()
    local p = H.create()
    H.raises_with({"records.open", "pager expected"}, records.open, nil, "t", PLAYER)
    H.raises_with({"records.open", "name"}, records.open, p, "", PLAYER)
    H.raises_with({"records.open", "name"}, records.open, p, 5, PLAYER)
    H.raises_with({"records.open", "schema source or record expected"}, records.open, p, "t", 42)
  end)

  it("returns 'kind' for a name holding another kind of object", function()
    local p = H.create()
    assert(mp.slab.open(p, "objects"))
    H.fails_with("kind", records.open(p, "objects", PLAYER))
    assert(records.open(p, "players", PLAYER))
    H.fails_with("kind", mp.slab.open(p, "players"))
  end)

  it("creates inside the open transaction, and a rollback undoes the creation", function()
    local p = H.create()
    assert(mp.catalog.open(p))
    local n = p:info().protected_count
    local tx = p:begin()
    local t = assert(records.open(p, "players", PLAYER))
    assert(t:insert{name = "ada"})
    tx:rollback()
    assert.equal(n, p:info().protected_count)
    assert.is_nil(mp.catalog.open(p):get("players"))
    H.raises_with({"records:get", "no longer exists"}, t.get, t, 1)
  end)
end)

describe("a record table", function()
  after_each(function()
    core._inject_fault(nil)
    H.cleanup()
  end)

  it("inserts, gets, updates, sets and deletes records", function()
    local t = new_table()
    local id = assert(t:insert{name = "ada", gold = 10})
    assert.equal(1, id)
    assert.same({name = "ada", score = 0.5, level = 1, alive = true, gold = 10}, t:get(id))
    assert(t:update(id, {score = 4, alive = false}))
    assert.same({name = "ada", score = 4.0, level = 1, alive = false, gold = 10}, t:get(id))
    assert(t:set(id, "level", 7))
    assert.equal(7, t:field(id, "level"))
    assert.equal("ada", t:field(id, "name"))
    assert.equal(1, t:count())
    assert(t:delete(id))
    assert.is_nil(t:get(id))
    assert.equal(0, t:count())
    assert_check(t)
  end)

  it("holds enums, arrays and embedded records; a field given in part takes its defaults for the rest", function()
    local src = [[
      record vec3 { x: f32  y: f32  z: f32 = 1 }
      record unit { pos: vec3  tags: u8[3]  class: enum { warrior, mage, rogue } = mage }
    ]]
    local p = H.create()
    H.raises_with({"records.open", "2 records"}, records.open, p, "units", src)
    local t = assert(records.open(p, "units", src, "unit"))
    local id = assert(t:insert{pos = {x = 2}, tags = {7}})
    assert.same({pos = {x = 2.0, y = 0.0, z = 1.0}, tags = {7, 0, 0}, class = "mage"}, t:get(id))
    assert(t:set(id, "class", "rogue"))
    assert.equal("rogue", t:field(id, "class"))
    assert(t:update(id, {tags = {1, 2, 3}, pos = {y = 5}}))
    assert.same({pos = {x = 0.0, y = 5.0, z = 1.0}, tags = {1, 2, 3}, class = "rogue"}, t:get(id))
    assert.same({1, 2, 3}, t:field(id, "tags"))
    H.raises_with({"records:set", "class"}, t.set, t, id, "class", "bard")
    H.raises_with({"records:update", "tags"}, t.update, t, id, {tags = {1, 2, 3, 4}})
    H.raises_with({"records:insert", "tags"}, t.insert, t, {tags = {300}})
    assert.equal(1, t:count())
    assert_check(t)
  end)

  it("fills missing fields with defaults, else zero", function()
    local t = new_table()
    assert.same({name = "", score = 0.5, level = 1, alive = true, gold = 0}, t:get(assert(t:insert{})))
  end)

  it("gives char[N] values back without trailing zero bytes and keeps inner ones", function()
    local t = new_table()
    local id = assert(t:insert{name = "a\0b"})
    assert.equal("a\0b", t:get(id).name)
    assert(t:set(id, "name", "12345678"))
    assert.equal("12345678", t:field(id, "name"))
  end)

  it("returns nil from get for ids never inserted and for deleted ids", function()
    local t = new_table()
    assert.is_nil(t:get(1))
    assert.is_nil(t:get(1000000))
    local id = assert(t:insert{})
    assert.is_nil(t:get(id + 1))
    assert(t:delete(id))
    assert.is_nil(t:get(id))
  end)

  it("raises naming the function for ids that hold no record", function()
    local t = new_table()
    local id = assert(t:insert{})
    assert(t:delete(id))
    for _, bad in ipairs {id, 2, 99999} do
      H.raises_with({"records:update", "holds no record"}, t.update, t, bad, {gold = 1})
      H.raises_with({"records:delete", "holds no record"}, t.delete, t, bad)
      H.raises_with({"records:set", "holds no record"}, t.set, t, bad, "gold", 1)
      H.raises_with({"records:field", "holds no record"}, t.field, t, bad, "gold")
    end
    for _, bad in ipairs {0, -1, 1.5, "1", {}} do
      H.raises_with({"records:get", "positive integer"}, t.get, t, bad)
      H.raises_with({"records:delete", "positive integer"}, t.delete, t, bad)
    end
    assert_check(t)
  end)

  it("checks integers against each type's range (and booleans), naming the field", function()
    local cases = {
      u8 = {ok = {0, 255}, bad = {-1, 256}},
      u16 = {ok = {0, 65535}, bad = {-1, 65536}},
      u32 = {ok = {0, 4294967295}, bad = {-1, 4294967296}},
      -- u64 holds 64-bit patterns as Lua integers do: -1 is 2^64 - 1
      u64 = {ok = {0, math.maxinteger, -1, math.mininteger}, bad = {1.5, "1", 2^64}},
      i8 = {ok = {-128, 127}, bad = {-129, 128}},
      i16 = {ok = {-32768, 32767}, bad = {-32769, 32768}},
      i32 = {ok = {-2147483648, 2147483647}, bad = {-2147483649, 2147483648}},
      i64 = {ok = {math.mininteger, math.maxinteger}, bad = {1.5, 2^63, "1", true}},
      bool = {ok = {true, false}, bad = {0, "true"}},
    }
    local p = H.create()
    for ty, c in pairs(cases) do
      local t = assert(records.open(p, ty, ("record r { pad: u8  v_%s: %s }"):format(ty, ty)))
      local field = "v_" .. ty
      for _, v in ipairs(c.ok) do
        local id = assert(t:insert{[field] = v})
        assert.equal(v, t:field(id, field))
        assert(t:set(id, field, v))
      end
      local id = assert(t:insert{})
      for _, v in ipairs(c.bad) do
        H.raises_with({"records:insert", field}, t.insert, t, {[field] = v})
        H.raises_with({"records:update", field}, t.update, t, id, {[field] = v})
        H.raises_with({"records:set", field}, t.set, t, id, field, v)
      end
      assert.equal(#c.ok + 1, t:count())
      assert.equal(t:record().fields[2].default, t:field(id, field))
      assert_check(t)
    end
  end)

  it("stores NaN and infinities in floats, refuses non-numbers and finite values past f32", function()
    local t = new_table(nil, "record r { x: f64  y: f32 }")
    local id = assert(t:insert{x = 1.25, y = 2})
    for _, f in ipairs {"x", "y"} do
      for _, v in ipairs {math.huge, -math.huge} do
        assert(t:set(id, f, v))
        assert.equal(v, t:field(id, f))
        local other = assert(t:insert{[f] = v})
        assert.equal(v, t:get(other)[f])
        assert(t:delete(other))
      end
      assert(t:update(id, {[f] = 0 / 0}))
      local nan = t:field(id, f)
      assert.is_true(nan ~= nan, "NaN comes back as NaN")
      for _, v in ipairs {"1", true, {}} do
        H.raises_with({"records:insert", f}, t.insert, t, {[f] = v})
        H.raises_with({"records:set", f}, t.set, t, id, f, v)
        H.raises_with({"records:update", f}, t.update, t, id, {[f] = v})
      end
    end
    H.raises_with({"records:set", "y", "f32"}, t.set, t, id, "y", 1e39)
    H.raises_with({"records:insert", "y"}, t.insert, t, {y = -1e39})
    assert(t:update(id, {x = 1.25, y = 2}))
    assert.same({x = 1.25, y = 2.0}, t:get(id))
    assert.equal(1, t:count())
  end)

  it("refuses strings one byte too long and values of the wrong type", function()
    local t = new_table()
    local id = assert(t:insert{name = "12345678"})
    H.raises_with({"records:insert", "name"}, t.insert, t, {name = "123456789"})
    H.raises_with({"records:set", "name"}, t.set, t, id, "name", "123456789")
    H.raises_with({"records:update", "name"}, t.update, t, id, {name = "123456789"})
    H.raises_with({"records:insert", "name"}, t.insert, t, {name = 5})
    H.raises_with({"records:insert", "alive"}, t.insert, t, {alive = 1})
    H.raises_with({"records:insert", "table"}, t.insert, t, "ada")
    H.raises_with({"records:update", "table"}, t.update, t, id, "ada")
    assert.equal("12345678", t:field(id, "name"))
    assert.equal(1, t:count())
  end)

  it("refuses unknown fields, naming them", function()
    local t = new_table()
    local id = assert(t:insert{})
    H.raises_with({"records:insert", "colour"}, t.insert, t, {colour = 1})
    H.raises_with({"records:update", "colour"}, t.update, t, id, {colour = 1})
    H.raises_with({"records:set", "colour"}, t.set, t, id, "colour", 1)
    H.raises_with({"records:field", "colour"}, t.field, t, id, "colour")
    assert.equal(1, t:count())
  end)

  it("inserts inside a transaction what only the full check accepts, and refuses what it refuses", function()
    -- the quick check (rec.quick) leaves these to flatten
    local t, p = new_table(nil, [[
      record r { i: i64  u: u64  d: f64  f: f32  s: char[4]  b: bool  e: enum { x, y } = y  w: u8 }
    ]])
    local big = 2.0 ^ 63
    local id
    assert(p:transaction(function()
      id = assert(t:insert{i = 3.0, u = big, d = 0 / 0, f = math.huge, s = "ab", b = false, w = 255.0})
      H.raises_with({"records:insert", "r.w", "256"}, t.insert, t, {w = 256})
      H.raises_with({"records:insert", "r.i", "1.5"}, t.insert, t, {i = 1.5})
      H.raises_with({"records:insert", "r.i", "\"3\""}, t.insert, t, {i = "3"})
      H.raises_with({"records:insert", "r.d", "not a number"}, t.insert, t, {d = "1.5"})
      H.raises_with({"records:insert", "r.e"}, t.insert, t, {e = "z"})
      H.raises_with({"records:insert", "r.b"}, t.insert, t, {b = 0})
      H.raises_with({"records:insert", "r.s"}, t.insert, t, {s = "abcde"})
      H.raises_with({"records:insert", "colour"}, t.insert, t, {i = 1, colour = 1})
      -- a field read through __index does not hide an unknown raw key
      local odd = setmetatable({colour = 1}, {__index = {i = 1}})
      H.raises_with({"records:insert", "colour"}, t.insert, t, odd)
      return true
    end))
    local row = t:get(id)
    assert.equal(3, row.i)
    assert.equal("integer", math.type(row.i))
    assert.equal(math.mininteger, row.u)
    assert.is_true(row.d ~= row.d)
    assert.equal(math.huge, row.f)
    assert.same({"ab", false, "y", 255}, {row.s, row.b, row.e, row.w})
    assert.equal(1, t:count())
    assert_check(t)
  end)

  it("checks every value of an update before changing any", function()
    local t = new_table()
    local id = assert(t:insert{gold = 5})
    H.raises(t.update, t, id, {gold = 6, level = -1})
    assert.equal(5, t:field(id, "gold"))
    assert(t:update(id, {}))
    assert.equal(5, t:field(id, "gold"))
  end)

  it("scans records in ascending id order, from an id", function()
    local t, p = new_table()
    p:transaction(function()
      for i = 1, 100 do assert.equal(i, t:insert{gold = i}) end
      for i = 2, 100, 3 do t:delete(i) end
    end)
    local ids = {}
    for id, row in t:scan() do
      ids[#ids + 1] = id
      assert.equal(id, row.gold)
    end
    assert.equal(t:count(), #ids)
    for i = 2, #ids do assert.is_true(ids[i] > ids[i - 1]) end
    local from = {}
    for id in t:scan(50) do from[#from + 1] = id end
    assert.equal(51, from[1], "50 was deleted: the first live id from 50")
    assert.equal(100, from[#from])
    for id in t:scan(1000) do error("past the end: " .. id) end
    H.raises_with({"records:scan", "positive integer"}, t.scan, t, 0)
  end)

  it("hands out a deleted id again only from the next transaction", function()
    local t, p = new_table()
    local a, b = assert(t:insert{}), assert(t:insert{})
    p:transaction(function()
      assert(t:delete(a))
      local c = assert(t:insert{})
      assert.is_true(c ~= a and c ~= b)
    end)
    local d = assert(t:insert{})
    assert.equal(a, d, "the oldest deleted id comes back first")
    -- deleted in one transaction, several come back in deletion order
    p:transaction(function() t:delete(b) t:delete(d) end)
    assert.equal(b, t:insert{})
    assert.equal(d, t:insert{})
    assert_check(t)
  end)

  it("keeps ids and rows across reopen", function()
    local t, p, path = new_table()
    p:transaction(function()
      for i = 1, 300 do t:insert{gold = i, name = "p" .. i} end
      for i = 1, 300, 7 do t:delete(i) end
    end)
    local before = rows(t)
    p = H.reopen(p, path)
    t = assert(records.open(p, "players", PLAYER))
    assert.same(before, rows(t))
    assert_check(t)
    local ro = H.reopen(p, path, {readonly = true})
    local t2 = assert(records.open(ro, "players", PLAYER))
    assert.same(before, rows(t2))
    assert_check(t2)
  end)

  it("makes many changes atomic in a transaction, and a rollback restores every row in every handle", function()
    local t, p = new_table()
    for i = 1, 20 do assert(t:insert{gold = i}) end
    local other = assert(records.open(p, "players", PLAYER))
    local before = rows(t)
    local ok, err = pcall(p.transaction, p, function()
      for i = 1, 500 do t:insert{gold = -i} end
      t:update(3, {gold = 333})
      t:delete(4)
      t:set(5, "name", "x")
      assert.equal(333, other:field(3, "gold"), "a second handle sees the change at once")
      error("planned")
    end)
    assert.is_false(ok)
    assert.matches("planned", err)
    assert.same(before, rows(t))
    assert.same(before, rows(other))
    assert.equal(20, other:count())
    assert_check(t)
    -- and the table grows again from where it was
    assert.equal(21, t:insert{})
    assert_check(other)
  end)

  it("restores every row after a failed commit", function()
    local t, p = new_table()
    for i = 1, 10 do assert(t:insert{gold = i}) end
    local before = rows(t)
    local tx = p:begin()
    for i = 1, 200 do t:insert{gold = i} end
    t:delete(2)
    core._inject_fault("barrier", "eio")
    local ok, _, code = tx:commit()
    core._inject_fault(nil)
    assert.is_nil(ok)
    assert.equal("io", code)
    assert.same(before, rows(t))
  end)

  it("writes each page once per transaction when inserting many records", function()
    local t, p = new_table({page_size = 4096})
    local calls = {}
    local real = mp._Pager_methods.write_protected
    mp._Pager_methods.write_protected = function(self, pid)
      calls[pid] = (calls[pid] or 0) + 1
      return real(self, pid)
    end
    local ok, err = pcall(p.transaction, p, function()
      for i = 1, 5000 do t:insert{gold = i} end
    end)
    mp._Pager_methods.write_protected = real
    assert(ok, err)
    local st = t:stats()
    local n = 0
    for pid, k in pairs(calls) do
      n = n + 1
      assert.equal(1, k, "page " .. pid .. " was copied " .. k .. " times")
    end
    assert.equal(st.pages - st.source_pages, n, "every page but the source: one writer each")
  end)

  it("reads and writes one field through its bytes only", function()
    local t, p = new_table()
    local id = assert(t:insert{name = "ada", gold = 1})
    local pid = t.pids[(id - 1) // t:stats().per_page]
    local before = p:protected(pid):read()
    assert(t:set(id, "gold", 2))
    local after = p:protected(pid):read()
    local diff = {}
    for i = 1, #before do if before:byte(i) ~= after:byte(i) then diff[#diff + 1] = i end end
    assert.is_true(#diff >= 1 and #diff <= 8, #diff .. " bytes changed")
    local f = t:record().fields[5]
    assert.equal("gold", f.name)
    for _, i in ipairs(diff) do
      local off = i - 1 - records.HEADER - 1 - f.offset
      assert.is_true(off % t:stats().slot_size < f.size)
    end
  end)

  it("computes stats and prints one informative line", function()
    local t, p = new_table()
    p:transaction(function() for i = 1, 100 do t:insert{gold = i} end end)
    local st = t:stats()
    assert.equal(100, st.objects)
    assert.equal(100 * t:record().size, st.bytes)
    assert.equal(st.pages * 1024, st.page_bytes)
    assert.equal(st.bytes / st.page_bytes, st.efficiency)
    assert.equal(math.ceil(100 / st.per_page), st.data_pages)
    local line = tostring(t)
    assert.matches('mappedpages.Records "players": 100 records of player', line, 1, true)
    assert.is_nil(line:find("\n"))
    mp.records.drop(p, "players")
    assert.matches("dropped", tostring(t))
    p:close()
    assert.matches("closed", tostring(t))
  end)

  it("grows past one directory page and keeps get computed", function()
    local t, p = new_table({page_size = 1024}, "record r { x: i64 }")
    local E = (1024 - 16) // 4
    local per = t:stats().per_page
    local n = per * (E + 3)
    p:transaction(function() for i = 1, n do t:insert{x = i} end end)
    assert.equal(n, t:count())
    for _, id in ipairs {1, per, per * E, per * E + 1, n} do assert.equal(id, t:field(id, "x")) end
    assert.equal(2, t:stats().directory_pages - 1)
    assert_check(t)
  end)

  it("refuses every mutation on a read-only pager", function()
    local t, p, path = new_table()
    local id = assert(t:insert{gold = 1})
    p = H.reopen(p, path, {readonly = true})
    t = assert(records.open(p, "players", PLAYER))
    assert.equal(1, t:field(id, "gold"))
    H.raises_with({"records:insert", "read-only"}, t.insert, t, {})
    H.raises_with({"records:update", "read-only"}, t.update, t, id, {gold = 2})
    H.raises_with({"records:delete", "read-only"}, t.delete, t, id)
    H.raises_with({"records:set", "read-only"}, t.set, t, id, "gold", 2)
    H.raises_with({"records.drop", "read-only"}, records.drop, p, "players")
    H.fails_with("not_found", records.open(p, "missing", PLAYER))
    H.fails_with("schema", records.open(p, "players", (PLAYER:gsub("gold: i64", "gold: i64  more: u8"))))
    assert.equal(1, t:field(id, "gold"))
  end)

  it("raises after its pager closed and after a drop", function()
    local t, p = new_table()
    local id = assert(t:insert{})
    assert(records.drop(p, "players"))
    for _, fn in ipairs {function() return t:get(id) end, function() return t:insert{} end,
                         function() return t:count() end, function() return t:scan() end} do
      H.raises_with("no longer exists", fn)
    end
    local t2 = assert(records.open(p, "players", PLAYER))
    assert.is_nil(t2:get(id))
    p:close()
    H.raises_with("closed", t2.get, t2, 1)
    H.raises_with("closed", t2.insert, t2, {})
  end)

  it("drops every page it owns", function()
    local p = H.create()
    assert(mp.catalog.open(p))
    local n = p:info().protected_count
    local t = assert(records.open(p, "players", PLAYER))
    p:transaction(function() for i = 1, 2000 do t:insert{gold = i} end end)
    assert(records.drop(p, "players"))
    assert.equal(n, p:info().protected_count)
    H.fails_with("not_found", records.drop(p, "players"))
    assert(mp.slab.open(p, "s"))
    H.fails_with("kind", records.drop(p, "s"))
  end)

  it("raises for a method called with a dot", function()
    local t = new_table()
    H.raises_with("call it as obj:method", t.insert, {})
    H.raises_with("call it as obj:method", t.count, 5)
    H.raises_with("call it as obj:method", t.get, 5, 1)
  end)

  it("reports damage through check() without raising", function()
    local t, p = new_table()
    p:transaction(function() for i = 1, 50 do t:insert{gold = i} end end)
    assert(t:delete(3))
    assert_check(t)
    local pid = t.pids[0]
    local w = p:write_protected(pid)
    w:pack(records.HEADER + 3 * t:stats().slot_size, "<B", 7)   -- id 4: a bad state
    assert(w:commit())
    local ok, problems = t:check()
    assert.is_false(ok)
    assert.matches("id 4", table.concat(problems, "\n"))
  end)
end)

describe("inserts inside a transaction (the count and fresh id kept until the commit)", function()
  after_each(function()
    core._inject_fault(nil)
    H.cleanup()
  end)

  local ROW = "record r { a: i64  b: f64  c: u8 }"

  local function anchor_words(p, t)
    return p:protected(t.pid):unpack(32, "<i8 i8")   -- count, fresh id (records.lua's layout)
  end

  it("are counted and seen by count, scan, stats, check and a second handle mid-transaction", function()
    local t, p = new_table({page_size = 1024}, ROW)
    local per = t:stats().per_page
    local other = assert(records.open(p, "players"))
    assert(p:transaction(function()
      for i = 1, 3 * per + 5 do
        assert.equal(i, t:insert{a = i, b = i / 2, c = i % 256})
        if i % 17 == 0 then
          assert.equal(i, t:count())
          assert.equal(i, other:count())
          assert.same({a = i, b = i / 2, c = i % 256}, other:get(i))
        end
      end
      local n = 0
      for id, row in other:scan() do n = n + 1 assert.equal(id, row.a) end
      assert.equal(3 * per + 5, n)
      assert.equal(3 * per + 5, other:stats().objects)
      assert_check(other)
      -- the second handle's inserts continue the same ids
      assert.equal(3 * per + 6, other:insert{a = 3 * per + 6})
      assert.equal(3 * per + 7, t:insert{a = 3 * per + 7})
      return true
    end))
    assert.equal(3 * per + 7, t:count())
    local count, fresh = anchor_words(p, t)
    assert.equal(3 * per + 7, count)
    assert.equal(3 * per + 8, fresh)
    assert_check(t)
  end)

  it("leave the anchor's words behind until the commit writes them, with the rows, in one barrier", function()
    local t, p, path = new_table({page_size = 1024}, ROW)
    assert(t:insert{a = 1})
    local b = H.barriers(p)
    local tx = p:begin()
    for i = 2, 40 do assert(t:insert{a = i}) end
    local count = anchor_words(p, t)
    assert.is_true(count < 40, "the count is written at the commit")
    assert.equal(40, t:count())
    assert(tx:commit())
    assert.equal(1, H.barriers(p) - b)
    assert.equal(40, (anchor_words(p, t)))
    p = H.reopen(p, path)
    t = assert(records.open(p, "players"))
    assert.equal(40, t:count())
    assert.equal(41, t:insert{a = 41})
    assert_check(t)
  end)

  it("are dropped by a rollback and by a failed commit: counts, rows and ids as before", function()
    local t, p, path = new_table({page_size = 1024}, ROW)
    local other = assert(records.open(p, "players"))
    for i = 1, 5 do assert(t:insert{a = i}) end
    local before = rows(t)
    local ok = pcall(p.transaction, p, function()
      for i = 1, 100 do t:insert{a = -i} end
      assert.equal(105, other:count())
      error("planned")
    end)
    assert.is_false(ok)
    assert.equal(5, t:count())
    assert.equal(5, other:count())
    assert.same(before, rows(other))
    assert_check(t)
    -- both handles go on from id 6, inside a transaction and outside
    assert(p:transaction(function()
      assert.equal(6, t:insert{a = 6})
      assert.equal(7, other:insert{a = 7})
      assert.equal(8, t:insert{a = 8})
      return true
    end))
    assert.equal(9, other:insert{a = 9})
    assert.equal(9, t:count())
    assert_check(t)
    before = rows(t)
    local tx = p:begin()
    for i = 1, 100 do t:insert{a = -i} end
    core._inject_fault("barrier", "eio")
    local done, _, code = tx:commit()
    core._inject_fault(nil)
    assert.is_nil(done)
    assert.equal("io", code)
    assert.equal(9, t:count())
    assert.equal(9, other:count())
    assert.same(before, rows(t))
    assert_check(other)
    -- the file holds one of the two states (the barrier's failure says
    -- nothing of what reached the disk), whole
    p = H.reopen(p, path)
    t = assert(records.open(p, "players"))
    assert.is_true(t:count() == 9 or t:count() == 109)
    assert_check(t)
  end)

  it("check every value as the first insert does, naming the field, and change nothing on a refusal", function()
    local t, p = new_table({page_size = 1024}, ROW)
    assert(p:transaction(function()
      assert.equal(1, t:insert{a = 1, b = 1.5, c = 1})   -- the next inserts take the fast path
      H.raises_with({"records:insert", "r.c", "256"}, t.insert, t, {a = 2, b = 2, c = 256})
      H.raises_with({"records:insert", "r.a", "\"2\""}, t.insert, t, {a = "2", b = 2, c = 2})
      H.raises_with({"records:insert", "r.a", "2.5"}, t.insert, t, {a = 2.5, b = 2, c = 2})
      H.raises_with({"records:insert", "r.b"}, t.insert, t, {a = 2, b = "2", c = 2})
      H.raises_with({"records:insert", "colour"}, t.insert, t, {a = 2, b = 2, c = 2, colour = 1})
      H.raises_with({"records:insert", "colour"}, t.insert, t,
                    setmetatable({a = 2, b = 2, c = 2, colour = 1}, {__index = {}}))
      H.raises_with({"records:insert", "table"}, t.insert, t, 7)
      H.raises_with({"records:insert"}, records.open(p, "players").insert, nil, {a = 2})
      assert.equal(1, t:count())
      -- what only the full check accepts, and rows given in part
      assert.equal(2, t:insert{a = 2.0, b = 2, c = 2.0})
      assert.equal(3, t:insert{b = 3})
      assert.equal(4, t:insert(setmetatable({a = 4}, {__index = {b = 4.5}})))
      assert.equal(5, t:insert{a = 5, b = 0 / 0, c = 5})
      return true
    end))
    assert.same({a = 2, b = 2, c = 2}, t:get(2))
    assert.equal("integer", math.type(t:get(2).a))
    assert.same({a = 0, b = 3, c = 0}, t:get(3))
    assert.same({a = 4, b = 0, c = 0}, t:get(4), "fields are read raw, as flatten reads them")
    assert.is_true(t:get(5).b ~= t:get(5).b)
    assert.equal(5, t:count())
    assert_check(t)
  end)

  it("take a deleted id only from the next transaction, between fast inserts", function()
    local t, p = new_table({page_size = 1024}, ROW)
    assert(p:transaction(function()
      for i = 1, 10 do assert(t:insert{a = i}) end
      assert(t:delete(3))
      assert.equal(11, t:insert{a = 11})
      assert(t:delete(11))
      assert.equal(12, t:insert{a = 12})
      assert.equal(10, t:count())
      return true
    end))
    assert(p:transaction(function()
      assert.equal(3, t:insert{a = 3})
      assert.equal(11, t:insert{a = 11})
      assert.equal(13, t:insert{a = 13})
      assert.equal(14, t:insert{a = 14})
      return true
    end))
    assert.equal(14, t:count())
    assert_check(t)
  end)

  it("stop at a migration or a drop in the same transaction", function()
    local t, p = new_table({page_size = 1024}, ROW)
    local before
    assert(p:transaction(function()
      for i = 1, 30 do assert(t:insert{a = i}) end
      local t2 = assert(records.open(p, "players", "record r { a: i64  b: f64  c: u8  d: i8 = 7 }"))
      H.raises_with({"records:insert", "open it again"}, t.insert, t, {a = 31})
      assert.equal(30, t2:count())
      assert.equal(31, t2:insert{a = 31})
      assert.same({a = 31, b = 0, c = 0, d = 7}, t2:get(31))
      assert.same({a = 30, b = 0, c = 0, d = 7}, t2:get(30))
      before = rows(t2)
      return true
    end))
    local t2 = assert(records.open(p, "players"))
    assert.same(before, rows(t2))
    assert.equal(31, t2:count())
    assert_check(t2)
    assert(p:transaction(function()
      for i = 32, 40 do assert(t2:insert{a = i}) end
      assert(records.drop(p, "players"))
      return true
    end))
    H.raises_with({"records:insert", "no longer exists"}, t2.insert, t2, {a = 1})
    local t3 = assert(records.open(p, "players", ROW))
    assert.equal(0, t3:count())
    assert.equal(1, t3:insert{a = 1})
    assert.truthy(p:check())
  end)
end)

describe("records on a full disk", function()
  after_each(function()
    core._inject_fault(nil)
    H.cleanup()
  end)

  it("fails with nil, msg, 'no_space' when an insert needs a page the file cannot get, changing nothing", function()
    -- room = 0, 1, 2, ...: free pages left when the file stops growing,
    -- so the failure falls on each page the insert needs (a data page,
    -- directory pages, the copies of the anchor and of a page).
    local failed = 0
    for room = 0, 5 do
      for _, inside in ipairs {false, true} do
        local t, p = new_table({page_size = 1024}, "record r { x: i64 }")
        local per = t:stats().per_page
        p:transaction(function() for i = 1, per do t:insert{x = i} end end)   -- page 0 full
        local tx = inside and p:begin()
        if inside then t:insert{x = -1} t:delete(per + 1) end   -- the next insert needs... a new page still
        while p:free_count() > room do p:alloc() end
        local before, count = rows(t), t:count()
        core._inject_fault("grow", "enospc")
        local id, msg, code = t:insert{x = 42}
        core._inject_fault(nil)
        if not id then
          failed = failed + 1
          assert.equal("no_space", code, msg)
          assert.same(before, rows(t))
          assert.equal(count, t:count())
        else
          assert.equal(42, t:field(id, "x"))
        end
        assert_check(t)
        if tx then assert(tx:commit()) end
        assert_check(t)
        assert(t:insert{x = 43})
        assert_check(t)
        H.cleanup()
      end
    end
    assert.is_true(failed >= 3, "only " .. failed .. " inserts failed")
  end)
end)

describe("schema evolution", function()
  after_each(function()
    core._inject_fault(nil)
    H.cleanup()
  end)

  local V2 = PLAYER:gsub("gold: i64", "gold: i64\n    xp: u32 = 100\n    tag: char[40] = \"new\"")

  it("opens with the same schema, whatever the white space and comments", function()
    local t, p = new_table()
    local id = assert(t:insert{name = "ada"})
    local txn = p:info().txn
    local same = "record player { name: char[8] score: f64 = 0.5 level: u16 = 1 alive: bool = true gold: i64 }"
    local t2 = assert(records.open(p, "players", same))
    assert.equal(txn, p:info().txn, "no commit")
    assert.equal("ada", t2:get(id).name)
  end)

  it("migrates a table whose schema appends fields, in one transaction, with defaults", function()
    local t, p, path = new_table()
    p:transaction(function()
      for i = 1, 500 do t:insert{gold = i, name = "p" .. (i % 1000)} end
      for i = 1, 500, 5 do t:delete(i) end
    end)
    local before = rows(t)
    local per = t:stats().per_page
    p = H.reopen(p, path)
    local b = H.barriers(p)
    local t2 = assert(records.open(p, "players", V2))
    assert.equal(1, H.barriers(p) - b, "one transaction")
    assert.is_true(t2:stats().per_page < per, "fewer records per page")
    local n = 0
    for id, row in t2:scan() do
      n = n + 1
      local old = before[id]
      assert.truthy(old, "id " .. id)
      assert.equal(100, row.xp)
      assert.equal("new", row.tag)
      row.xp, row.tag = nil, nil
      assert.same(old, row)
    end
    assert.equal(t2:count(), n)
    assert_check(t2)
    -- deleted ids still come back, new records get the new fields
    local id = assert(t2:insert{xp = 5})
    assert.is_nil(before[id])
    assert.equal(5, t2:field(id, "xp"))
    -- and it persists
    p = H.reopen(p, path)
    local t3 = assert(records.open(p, "players", V2))
    assert.equal(100, t3:field(2, "xp"))
    assert_check(t3)
    -- the old schema is now a difference (a removal)
    H.fails_with("schema", records.open(p, "players", PLAYER))
  end)

  it("makes handles of the old layout raise instead of misreading", function()
    local t, p = new_table()
    assert(t:insert{gold = 1})
    local t2 = assert(records.open(p, "players", V2))
    H.raises_with({"records:get", "open it again"}, t.get, t, 1)
    H.raises_with({"records:insert", "open it again"}, t.insert, t, {})
    assert.equal(1, t2:field(1, "gold"))
  end)

  it("rolls back a migration inside the caller's transaction", function()
    local t, p = new_table()
    p:transaction(function() for i = 1, 100 do t:insert{gold = i} end end)
    local before, n = rows(t), p:info().protected_count
    local tx = p:begin()
    local t2 = assert(records.open(p, "players", V2))
    assert.equal(100, t2:field(1, "xp"))
    tx:rollback()
    assert.equal(n, p:info().protected_count)
    assert.same(before, rows(t))
    assert_check(t)
    H.raises_with("open it again", t2.get, t2, 1)
  end)

  it("changes nothing when a migration cannot get its pages", function()
    for room = 0, 12, 3 do
      local t, p = new_table()
      p:transaction(function() for i = 1, 100 do t:insert{gold = i} end end)
      local before, st = rows(t), t:stats()
      while p:free_count() > room do p:alloc() end
      core._inject_fault("grow", "enospc")
      local t2, msg, code = records.open(p, "players", V2)
      core._inject_fault(nil)
      if not t2 then
        assert.equal("no_space", code, msg)
        assert.same(before, rows(t))
        assert.same(st, t:stats())
        assert_check(t)
      else
        assert_check(t2)
      end
      H.cleanup()
    end
  end)

  for _, case in ipairs {
    {"a reordered field",
     PLAYER:gsub("score: f64 = 0.5\n%s*level: u16 = 1", "level: u16 = 1\n score: f64 = 0.5"), "score"},
    {"a retyped field", PLAYER:gsub("level: u16", "level: u32"), "level"},
    {"a renamed field", PLAYER:gsub("gold: i64", "coins: i64"), "gold"},
    {"a removed field", PLAYER:gsub("gold: i64", ""), "gold"},
    {"a field added in the middle", PLAYER:gsub("level: u16 = 1", "level: u16 = 1\n mana: u8"), "alive"},
  } do
    it("refuses " .. case[1] .. " with 'schema', naming the first difference, changing nothing", function()
      local t, p = new_table()
      p:transaction(function() for i = 1, 50 do t:insert{gold = i} end end)
      local before, txn = rows(t), p:info().txn
      local msg = H.fails_with("schema", records.open(p, "players", case[2]))
      assert.matches(case[3], msg)
      assert.equal(txn, p:info().txn)
      assert.same(before, rows(t))
      assert_check(t)
    end)
  end

  it("refuses a migration to a record too large for a page", function()
    local t, p = new_table({page_size = 1024})
    assert(t:insert{})
    local bigger = PLAYER:gsub("gold: i64", "gold: i64  big: char[1200]")
    local msg = H.fails_with("schema", records.open(p, "players", bigger))
    assert.matches("does not fit", msg)
    assert_check(t)
  end)

  it("stores a schema source longer than a page", function()
    local p = H.create({page_size = 1024})
    local parts = {"record wide {"}
    for i = 1, 150 do parts[#parts + 1] = ("  field_number_%03d: u8 = %d"):format(i, i % 200) end
    parts[#parts + 1] = "}"
    local src = table.concat(parts, "\n")
    local t = assert(records.open(p, "wide", src))
    assert.is_true(t:stats().source_pages >= 3)
    local id = assert(t:insert{field_number_007 = 1})
    local t2 = assert(records.open(p, "wide", src))
    assert.equal(1, t2:field(id, "field_number_007"))
    assert.equal(8, t2:field(id, "field_number_008"))
    assert_check(t2)
  end)
end)

describe("records under a random workload", function()
  after_each(function() H.cleanup() end)

  it("matches a Lua table model through inserts, updates, deletes, rollbacks and reopens", function()
    local r = H.rng(2024)
    local src = "record r { a: i32  b: char[6]  c: f64  d: bool = true }"
    local p, path = H.create({page_size = 1024})
    local t = assert(records.open(p, "r", src))
    local model, ids = {}, {}         -- id -> row; ids: a list of live ids
    local last_deleted = {}           -- id -> the step's transaction serial
    local serial = 0
    local function random_row()
      return {a = r(2000) - 1000, b = ("x"):rep(r(7) - 1), c = r(1000) / 8, d = r(2) == 1}
    end
    local function live_list()
      local l = {}
      for id in pairs(model) do l[#l + 1] = id end
      table.sort(l)
      return l
    end
    local function op(m)
      local k = r(100)
      local grow = #ids < 300 and 40 or 20     -- grow to a few hundred rows, then churn
      if #ids == 0 or k <= grow then
        local row = random_row()
        local id = assert(t:insert(row))
        assert.is_nil(m[id], "a live id handed out again")
        assert.is_true(last_deleted[id] == nil or last_deleted[id] < serial,
                       "id " .. id .. " handed out in the transaction that deleted it")
        m[id] = row
        ids[#ids + 1] = id
      else
        local i = r(#ids)
        local id = ids[i]
        if not m[id] then
          table.remove(ids, i)
        elseif k <= 55 then
          local fields = {}
          if r(2) == 1 then fields.a = r(100) end
          if r(2) == 1 then fields.b = "u" .. r(9) end
          assert(t:update(id, fields))
          for f, v in pairs(fields) do m[id][f] = v end
        elseif k <= 65 then
          assert(t:set(id, "c", r(100) + 0.5))
          m[id].c = t:field(id, "c")
        elseif k <= 85 then
          assert(t:delete(id))
          m[id] = nil
          last_deleted[id] = serial
          table.remove(ids, i)
        else
          assert.same(m[id], t:get(id))
        end
      end
    end
    local function copy(m)
      local c = {}
      for id, row in pairs(m) do
        local rc = {}
        for f, v in pairs(row) do rc[f] = v end
        c[id] = rc
      end
      return c
    end
    for step = 1, 4000 do
      serial = serial + 1
      local k = r(100)
      if k <= 55 then
        op(model)
      elseif k <= 85 then
        local work = copy(model)
        local saved = {}
        for i, id in ipairs(ids) do saved[i] = id end
        local fail = r(4) == 1
        local ok, err = pcall(p.transaction, p, function()
          for _ = 1, r(20) do op(work) end
          if fail then error("planned rollback") end
        end)
        if fail then
          assert.is_false(ok)
          assert.matches("planned rollback", err)
          ids = saved
        else
          assert(ok, err)
          model = work
        end
      elseif k <= 88 then
        p = H.reopen(p, path)
        t = assert(records.open(p, "r", src))
      elseif k <= 95 then
        local from = r(10)
        local seen = 0
        for id, row in t:scan(from) do
          assert.same(model[id], row, "scan: id " .. id)
          seen = seen + 1
        end
        local want = 0
        for id in pairs(model) do if id >= from then want = want + 1 end end
        assert.equal(want, seen)
      else
        assert.equal(#live_list(), t:count())
        if step % 5 == 0 then assert_check(t) end
      end
    end
    local n = 0
    for id, row in t:scan() do
      n = n + 1
      assert.same(model[id], row)
    end
    assert.equal(#live_list(), n)
    assert_check(t)
  end)
end)

describe("examples/records.lua", function()
  after_each(function() H.cleanup() end)

  it("runs from the checkout and shows what it promises", function()
    -- as a newcomer runs it (lua5.4 examples/records.lua), with this
    -- process's build first on the module paths
    local cmd = ("LUA_PATH_5_4=%s LUA_CPATH_5_4=%s lua5.4 examples/records.lua 2>&1")
      :format(H.shell_quote(package.path), H.shell_quote(package.cpath))
    local f = assert(io.popen(cmd))
    local out = f:read("a")
    local _, _, status = f:close()
    assert.equal(0, status, out)
    assert.matches('mappedpages.Records "players": 6 records of player', out, 1, true)
    assert.matches("ada\tmage\t120", out, 1, true)
    assert.matches("transaction:\tfalse\tada is too poor\tada's gold:\t120", out, 1, true)
    assert.matches("records:insert: player.level: 70000 is out of range", out, 1, true)
    assert.matches("after reopen:\tada\t50\t6", out, 1, true)
    assert.matches("deleted:\tnil\t5\ttrue", out, 1, true)
    assert.matches("npc3 is id\t4", out, 1, true)
    assert.matches("30 <= gold < 50:\t4\tnpc3\t30\n30 <= gold < 50:\t5\tnpc4\t40", out, 1, true)
    assert.matches("nil\trecords:insert: \"players\": name \"npc3\" is taken (id 4)", out, 1, true)
    assert.matches("duplicate", out, 1, true)
  end)
end)
