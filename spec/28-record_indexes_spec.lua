-- 28-record_indexes: B-tree indexes of record tables (mappedpages.records
-- with opts {unique = ..., index = ...}, mappedpages.records_index).
--
-- Every function and error path: find and range (bounds inclusive and
-- exclusive, open ends, the order of each field type), misuse of opts,
-- find and range (raising, naming the method), duplicates on insert,
-- update, set and when building (nil, msg, "duplicate", nothing changed),
-- entries moving with updates and going with deletes, persistence across
-- reopen, indexes built and dropped by open (pages freed), a migration
-- keeping them, a read-only pager, rollbacks (in the middle of a
-- transaction, and of the open that built an index), handles of a table
-- whose indexes changed, a full disk, check() seeing a damaged index, and
-- a seeded random model test with reopens and rollbacks.

local H = require "helpers"
local mp = H.mp
local core = require "mappedpages.core"
local records = require "mappedpages.records"
local btree = require "mappedpages.btree"
local inspect = require "mappedpages.inspect"

local PLAYER = [[
  record player {
    name: char[8]
    score: f64 = 0.5
    level: u16 = 1
    alive: bool = true
    class: enum { warrior, mage, rogue } = mage
    big: u64
    tags: u8[2]
  }
]]
local OPTS = {unique = {"name"}, index = {"score"}}

local function assert_check(t)
  local ok, problems = t:check()
  assert(ok, "t:check() failed:\n  " .. table.concat(problems or {}, "\n  "))
  local fine, why = inspect.check(t.pager)
  assert(fine, "inspect.check failed:\n  " .. table.concat(why or {}, "\n  "))
end

local function ids_of(iter, ...)
  local out = {}
  for id in iter(...) do out[#out + 1] = id end
  return out
end

local function range_ids(t, field, lo, hi) return ids_of(t.range, t, field, lo, hi) end

local function rows(t)
  local out = {}
  for id, row in t:scan() do out[id] = row end
  return out
end

local function table_with(opts, src, P)
  local p, path = H.create({page_size = P or 1024})
  local t = assert(records.open(p, "players", src or PLAYER, opts or OPTS))
  return t, p, path
end

describe("records.open with indexes", function()
  after_each(function() H.cleanup() end)

  it("creates a table with its indexes in one durable commit", function()
    local p = H.create()
    local b = H.barriers(p)
    local t = assert(records.open(p, "players", PLAYER, OPTS))
    assert.equal(1, H.barriers(p) - b)
    assert.is_nil(t:find("name", "ada"))
    assert.same({}, range_ids(t, "score"))
    assert.equal(3, t:stats().index_pages)     -- the list and two empty trees' anchors
    assert_check(t)
  end)

  it("takes opts after a record name too", function()
    local p = H.create()
    local t = assert(records.open(p, "players", PLAYER, "player", {index = {"level"}}))
    local id = assert(t:insert{name = "x", level = 7})
    assert.same({id}, range_ids(t, "level", 7, 8))
  end)

  it("raises for opts that name no field, an array or a record, a field twice, or are not lists", function()
    local p = H.create()
    local src = PLAYER .. "record team { boss: player  n: i32 }"
    local cases = {
      {{unique = {"nope"}}, {"records.open", "no field", "nope"}},
      {{index = {"tags"}}, {"records.open", "tags", "u8[2]", "cannot be indexed"}},
      {{unique = {"name"}, index = {"name"}}, {"records.open", "name", "named twice", "opts.unique"}},
      {{index = {"score", "score"}}, {"records.open", "score", "named twice"}},
      {{unique = "name"}, {"records.open", "opts.unique", "list of field names"}},
      {{index = {1}}, {"records.open", "opts.index[1]", "field name"}},
      {{index = {x = "score"}}, {"records.open", "opts.index", "list of field names"}},
      {{colour = {"name"}}, {"records.open", "unknown option"}},
    }
    for _, c in ipairs(cases) do
      H.raises_with(c[2], records.open, p, "players", PLAYER, c[1])
    end
    H.raises_with({"records.open", "boss", "cannot be indexed"}, records.open, p, "teams", src, "team",
                  {index = {"boss"}})
    assert.equal(0, p:root())      -- nothing created
    -- and on an existing table: nothing changes
    local t = assert(records.open(p, "players", PLAYER, OPTS))
    local id = assert(t:insert{name = "ada"})
    H.raises_with({"records.open", "no field"}, records.open, p, "players", PLAYER, {index = {"nope"}})
    assert.equal(id, t:find("name", "ada"))
    assert_check(t)
  end)

  it("returns 'schema' for a char[N] whose keys do not fit a B-tree key, creating nothing", function()
    local p = H.create({page_size = 1024})
    local max = btree.max_key_for(1024)
    local n = (max - 2) // 2
    local count = p:info().protected_count
    H.fails_with("schema", records.open(p, "a", ("record r { s: char[%d] }"):format(n + 1), {unique = {"s"}}))
    H.fails_with("schema", records.open(p, "a", ("record r { s: char[%d] }"):format(n), {index = {"s"}}))
    assert.equal(count, p:info().protected_count)
    local t = assert(records.open(p, "a", ("record r { s: char[%d] }"):format(n), {unique = {"s"}}))
    local s = ("\0"):rep(n - 1) .. "x"          -- every zero escaped: the longest key
    local id = assert(t:insert{s = s})
    assert.equal(id, t:find("s", s))
    assert_check(t)
  end)
end)

describe("find and range", function()
  after_each(function() H.cleanup() end)

  it("find gives the id of a unique value, nil for none; range goes lo inclusive, hi exclusive", function()
    local t = table_with()
    local a = assert(t:insert{name = "ada", score = 3})
    local b = assert(t:insert{name = "bob", score = 1})
    local c = assert(t:insert{name = "cy", score = 2})
    local d = assert(t:insert{name = "dee", score = 2})
    assert.equal(a, t:find("name", "ada"))
    assert.equal(c, t:find("name", "cy"))
    assert.is_nil(t:find("name", "zed"))
    assert.same({b, c, d, a}, range_ids(t, "score"))
    assert.same({c, d}, range_ids(t, "score", 2, 3))
    assert.same({c, d, a}, range_ids(t, "score", 2))
    assert.same({b}, range_ids(t, "score", nil, 2))
    assert.same({}, range_ids(t, "score", 3, 2))
    assert.same({b, c, d, a}, range_ids(t, "score", -math.huge, math.huge))
    assert.same({a, b}, range_ids(t, "name", "a", "c"))
    local got = {}
    for id, row in t:range("name", "b") do got[#got + 1] = {id, row.name} end
    assert.same({{b, "bob"}, {c, "cy"}, {d, "dee"}}, got)
  end)

  it("finds a value as the table stores it (f32 rounding, char[N]'s trailing zeros)", function()
    local t = table_with({unique = {"name", "w"}}, "record r { name: char[8]  w: f32 }")
    local id = assert(t:insert{name = "ab", w = 0.1})
    assert.equal(id, t:find("name", "ab\0\0"))
    assert.equal(id, t:find("w", 0.1))
    H.raises_with({"records:find", "too long"}, t.find, t, "name", "123456789")
    H.raises_with({"records:find"}, t.find, t, "w", "x")
  end)

  it("orders each field type: integers, u64 unsigned, floats with NaN last, bools, enums, strings", function()
    local src = "record r { i: i16  u: u64  f: f64  b: bool  e: enum { lo, mid, hi }  s: char[4] }"
    local t = table_with({index = {"i", "u", "f", "b", "e", "s"}}, src)
    local vals = {
      {i = 5, u = -1, f = 0 / 0, b = true, e = "lo", s = "b"},
      {i = -3, u = 7, f = math.huge, b = false, e = "hi", s = "a\0x"},
      {i = 0, u = math.mininteger, f = -0.5, b = true, e = "mid", s = ""},
      {i = -3, u = 0, f = -math.huge, b = false, e = "lo", s = "a"},
    }
    for _, v in ipairs(vals) do assert(t:insert(v)) end
    assert.same({2, 4, 3, 1}, range_ids(t, "i"))
    assert.same({4, 2, 3, 1}, range_ids(t, "u"))           -- 0, 7, 2^63, 2^64 - 1
    assert.same({3, 1}, range_ids(t, "u", math.mininteger))
    assert.same({4, 3, 2, 1}, range_ids(t, "f"))           -- -inf, -0.5, inf, NaN
    assert.same({4, 3}, range_ids(t, "f", -math.huge, math.huge))
    assert.same({3}, range_ids(t, "f", -1, 0))
    assert.same({2, 4, 1, 3}, range_ids(t, "b"))
    assert.same({1, 3}, range_ids(t, "b", true))
    assert.same({1, 4, 3, 2}, range_ids(t, "e"))           -- declaration order
    assert.same({3}, range_ids(t, "e", "mid", "hi"))
    assert.same({3, 4, 2, 1}, range_ids(t, "s"))           -- "", "a", "a\0x", "b"
    assert.same({4, 2}, range_ids(t, "s", "a", "b"))
    assert_check(t)
  end)

  it("raises naming the method for an unindexed, unknown or plain field, and bad bounds", function()
    local t = table_with()
    H.raises_with({"records:find", "score", "plain index", "range"}, t.find, t, "score", 1)
    H.raises_with({"records:find", "level", "no unique index"}, t.find, t, "level", 1)
    H.raises_with({"records:find", "no field", "nope"}, t.find, t, "nope", 1)
    H.raises_with({"records:range", "level", "no index"}, t.range, t, "level")
    H.raises_with({"records:range", "no field"}, t.range, t, "nope")
    H.raises_with({"records:range", "lo", "score", "a number"}, t.range, t, "score", "x")
    H.raises_with({"records:range", "hi", "score", "NaN"}, t.range, t, "score", nil, 0 / 0)
    H.raises_with({"records:range", "lo", "name", "a string"}, t.range, t, "name", 5)
    H.raises_with({"records:find"}, t.find, 5, "name", "x")
    local t2 = table_with({index = {"big", "alive", "class"}})
    H.raises_with({"records:range", "big", "integer"}, t2.range, t2, "big", 1.5)
    H.raises_with({"records:range", "alive", "boolean"}, t2.range, t2, "alive", 1)
    H.raises_with({"records:range", "class", "member"}, t2.range, t2, "class", "priest")
  end)

  it("refuses a duplicate on insert, update and set with 'duplicate', changing nothing", function()
    local t, p = table_with()
    local a = assert(t:insert{name = "ada", score = 1})
    local b = assert(t:insert{name = "bob", score = 2})
    local before, n = rows(t), p:info().protected_count
    local msg = H.fails_with("duplicate", t:insert{name = "ada", score = 9})
    assert.matches("name", msg)
    assert.matches("id " .. a, msg)
    H.fails_with("duplicate", t:update(b, {name = "ada", score = 7}))
    H.fails_with("duplicate", t:set(b, "name", "ada"))
    assert.same(before, rows(t))
    assert.equal(n, p:info().protected_count)
    assert.same({a, b}, range_ids(t, "score"))
    -- inside a transaction: the transaction goes on, unharmed
    local tx = p:begin()
    local c = assert(t:insert{name = "cy", score = 3})
    H.fails_with("duplicate", t:insert{name = "cy"})
    H.fails_with("duplicate", t:update(a, {name = "cy"}))
    assert(tx:commit())
    assert.equal(c, t:find("name", "cy"))
    assert.equal(a, t:find("name", "ada"))
    -- updating a unique field to its own value is no clash
    assert(t:update(a, {name = "ada", score = 5}))
    assert.same({b, c, a}, range_ids(t, "score"))
    assert_check(t)
  end)

  it("moves entries with updates and sets, and removes them with deletes", function()
    local t = table_with()
    local a = assert(t:insert{name = "ada", score = 1})
    local b = assert(t:insert{name = "bob", score = 2})
    assert(t:update(a, {name = "amy", score = 3}))
    assert.is_nil(t:find("name", "ada"))
    assert.equal(a, t:find("name", "amy"))
    assert.same({b, a}, range_ids(t, "score"))
    assert(t:set(b, "score", 4))
    assert.same({a, b}, range_ids(t, "score"))
    assert(t:set(b, "level", 9))                -- unindexed: entries stay
    assert(t:update(b, {}))
    assert.same({a, b}, range_ids(t, "score"))
    assert(t:delete(a))
    assert.is_nil(t:find("name", "amy"))
    assert.same({b}, range_ids(t, "score"))
    local c = assert(t:insert{name = "amy"})    -- the name is free again
    assert.equal(c, t:find("name", "amy"))
    H.raises_with({"records:update", "no field"}, t.update, t, b, {nope = 1})
    H.raises_with({"records:update", "out of range"}, t.update, t, b, {level = -1})
    H.raises_with({"records:insert", "too long"}, t.insert, t, {name = "123456789"})
    H.raises_with({"records:delete", "holds no record"}, t.delete, t, 999)
    H.raises_with({"records:update", "holds no record"}, t.update, t, 999, {score = 1})
    H.raises_with({"records:set", "holds no record"}, t.set, t, 999, "score", 1)
    assert_check(t)
  end)

  it("visits records inserted or deleted during a range as the tree then is", function()
    local t = table_with()
    for i = 1, 50 do assert(t:insert{name = "n" .. i, score = i}) end
    local seen = 0
    for id, row in t:range("score") do
      seen = seen + 1
      assert(t:delete(id))
      assert.equal(row.name, "n" .. id)
    end
    assert.equal(50, seen)
    assert.equal(0, t:count())
    assert_check(t)
  end)
end)

describe("indexes in the file", function()
  after_each(function()
    core._inject_fault(nil)
    H.cleanup()
  end)

  it("persist across reopen, with the schema or the stored one", function()
    local t, p, path = table_with()
    for i = 1, 200 do assert(t:insert{name = "p" .. i, score = i % 7}) end
    p = H.reopen(p, path)
    t = assert(records.open(p, "players"))          -- stored schema: stored indexes
    assert.equal(17, t:find("name", "p17"))
    assert.equal(200 // 7, #range_ids(t, "score", 0, 1))
    assert_check(t)
    p = H.reopen(p, path)
    t = assert(records.open(p, "players", PLAYER, OPTS))
    assert.equal(200, t:find("name", "p200"))
    assert_check(t)
  end)

  it("builds an index over existing rows, and drops one (freeing its pages) when opened without it", function()
    local p = H.create()
    local t = assert(records.open(p, "players", PLAYER))
    local n0 = p:info().protected_count
    for i = 1, 300 do assert(t:insert{name = "p" .. i, score = (i * 7) % 11}) end
    local n1 = p:info().protected_count
    local t2 = assert(records.open(p, "players", PLAYER, OPTS))
    assert.equal(42, t2:find("name", "p42"))
    local sc = {}
    for id, row in t2:range("score") do sc[#sc + 1] = row.score * 1000 + id end
    for i = 2, #sc do assert.is_true(sc[i - 1] < sc[i]) end
    assert.equal(300, #sc)
    assert_check(t2)
    assert.is_true(p:info().protected_count > n1)
    local t3 = assert(records.open(p, "players", PLAYER, {index = {"score"}}))   -- drops name's
    H.raises_with({"records:find", "no unique index"}, t3.find, t3, "name", "p1")
    assert_check(t3)
    local t4 = assert(records.open(p, "players", PLAYER))                        -- drops all
    assert.equal(n1, p:info().protected_count)
    assert.equal(0, t4:stats().index_pages)
    assert_check(t4)
    assert(records.drop(p, "players"))
    assert.is_true(p:info().protected_count < n0)
  end)

  it("refuses to build a unique index over duplicate rows with 'duplicate', creating nothing", function()
    local p = H.create()
    local t = assert(records.open(p, "players", PLAYER, {index = {"level"}}))
    assert(t:insert{name = "a", score = 1})
    assert(t:insert{name = "b", score = 1})
    local n = p:info().protected_count
    local msg = H.fails_with("duplicate", records.open(p, "players", PLAYER, {unique = {"score"}}))
    assert.matches("ids 1 and 2", msg)
    assert.equal(n, p:info().protected_count)
    assert.same({1, 2}, range_ids(t, "level"))          -- the old handle and its index are intact
    assert_check(t)
    -- inside a transaction: nothing changed either
    local tx = p:begin()
    H.fails_with("duplicate", records.open(p, "players", PLAYER, {unique = {"name", "score"}}))
    assert(tx:commit())
    assert.equal(n, p:info().protected_count)
    assert_check(t)
  end)

  it("keep their entries through a migration, and index an appended field in the same open", function()
    local p = H.create()
    local t = assert(records.open(p, "players", PLAYER, OPTS))
    for i = 1, 100 do assert(t:insert{name = "p" .. i, score = -i}) end
    local src2 = PLAYER:gsub("tags: u8%[2%]", "tags: u8[2]  rank: i32 = 4")
    -- a unique index on the new field: every row would get 4, a duplicate
    H.fails_with("duplicate", records.open(p, "players", src2, {unique = {"name", "rank"}}))
    assert.equal(#PLAYER:gsub("%s+", " ") > 0 and 7, #records.open(p, "players"):record().fields)
    local t2 = assert(records.open(p, "players", src2, {unique = {"name"}, index = {"score", "rank"}}))
    assert.equal(8, #t2:record().fields)
    assert.equal(5, t2:find("name", "p5"))
    assert.equal(100, range_ids(t2, "score")[1])
    assert.equal(100, #range_ids(t2, "rank", 4, 5))
    assert(t2:update(3, {rank = 1}))
    assert.same({3}, range_ids(t2, "rank", nil, 4))
    H.raises_with({"records:insert", "open it again"}, t.insert, t, {name = "zz"})
    assert_check(t2)
  end)

  it("drop frees every index page", function()
    local p = H.create()
    assert(mp.catalog.open(p))
    local n = p:info().protected_count
    local t = assert(records.open(p, "players", PLAYER, OPTS))
    for i = 1, 500 do assert(t:insert{name = "p" .. i, score = i}) end
    local ids = t:page_ids()
    assert.is_true(#ids > t:stats().pages - t:stats().index_pages)
    assert.equal(t:stats().pages, #ids)
    assert(records.drop(p, "players"))
    assert.equal(n, p:info().protected_count)
  end)

  it("on a read-only pager: opens with the stored indexes, returns 'readonly' for others", function()
    local t, p, path = table_with()
    assert(t:insert{name = "ada", score = 1})
    p:close()
    p = H.open(path, {readonly = true})
    t = assert(records.open(p, "players", PLAYER, OPTS))
    assert.equal(1, t:find("name", "ada"))
    assert(records.open(p, "players"))
    assert(records.open(p, "players", nil, OPTS))
    local msg = H.fails_with("readonly", records.open(p, "players", PLAYER, {unique = {"name"}}))
    assert.matches("read%-only", msg)
    H.fails_with("readonly", records.open(p, "players", PLAYER))
    H.fails_with("readonly", records.open(p, "players", PLAYER, {unique = {"name"}, index = {"level"}}))
    H.raises_with({"records:insert", "read-only"}, t.insert, t, {name = "x"})
    assert_check(t)
  end)

  it("roll back with the rows: a rollback in the middle of a transaction restores both", function()
    local t, p = table_with()
    local a = assert(t:insert{name = "ada", score = 1})
    local b = assert(t:insert{name = "bob", score = 2})
    local tx = p:begin()
    assert(t:update(a, {name = "amy", score = 5}))
    assert(t:delete(b))
    local c = assert(t:insert{name = "bob", score = 0})
    assert.equal(c, t:find("name", "bob"))
    assert.same({c, a}, range_ids(t, "score"))
    assert_check(t)
    tx:rollback()
    assert.equal(a, t:find("name", "ada"))
    assert.equal(b, t:find("name", "bob"))
    assert.is_nil(t:find("name", "amy"))
    assert.same({a, b}, range_ids(t, "score"))
    assert_check(t)
    -- a raising transaction
    assert.is_false(pcall(p.transaction, p, function()
      assert(t:insert{name = "cy", score = -1})
      error("planned")
    end))
    assert.is_nil(t:find("name", "cy"))
    assert_check(t)
  end)

  it("roll back an open that built or dropped an index, and its handles then raise", function()
    local p = H.create()
    local t = assert(records.open(p, "players", PLAYER, {index = {"level"}}))
    assert(t:insert{name = "ada", level = 3})
    local n = p:info().protected_count
    local tx = p:begin()
    local t2 = assert(records.open(p, "players", PLAYER, OPTS))      -- drops level's, builds two
    assert(t2:insert{name = "bob"})
    assert.equal(2, t2:find("name", "bob"))
    tx:rollback()
    assert.equal(n, p:info().protected_count)
    H.raises_with({"records:insert", "open it again"}, t2.insert, t2, {name = "cy"})
    H.raises_with({"records:find", "open it again"}, t2.find, t2, "name", "ada")
    assert.same({1}, range_ids(t, "level", 3, 4))                  -- the old handle works again
    assert(t:update(1, {level = 4}))
    assert_check(t)
    -- the same for an open that dropped every index: its handle checks too
    tx = p:begin()
    local t3 = assert(records.open(p, "players", PLAYER))
    assert(t3:get(1))
    tx:rollback()
    H.raises_with({"records:update", "open it again"}, t3.update, t3, 1, {level = 9})
    H.raises_with({"records:set", "open it again"}, t3.set, t3, 1, "level", 9)
    assert_check(t)
  end)

  it("makes the other handles of a table whose indexes changed raise instead of missing entries", function()
    local p = H.create()
    local plain = assert(records.open(p, "players", PLAYER))
    local id = assert(plain:insert{name = "ada"})
    assert(plain:get(id))                            -- its data page view is cached
    local t = assert(records.open(p, "players", PLAYER, OPTS))
    for _, call in ipairs {
      {plain.insert, plain, {name = "bob"}}, {plain.update, plain, id, {name = "amy"}},
      {plain.set, plain, id, "name", "amy"}, {plain.delete, plain, id},
    } do
      H.raises_with({"open it again"}, table.unpack(call))
    end
    assert.same({name = "ada"}, {name = plain:get(id).name})   -- reads go on
    assert.equal(id, t:find("name", "ada"))
    assert_check(t)
  end)

  it("fails with 'no_space' on a full disk, changing nothing, inside a transaction too", function()
    local failed = 0
    for room = 0, 6 do
      for _, inside in ipairs {false, true} do
        local t, p = table_with({unique = {"name"}, index = {"score"}})
        p:transaction(function()
          for i = 1, 60 do assert(t:insert{name = "p" .. i, score = i}) end
        end)
        local tx = inside and p:begin()
        while p:free_count() > room do p:alloc() end
        local before = rows(t)
        core._inject_fault("grow", "enospc")
        local ops = {
          function() return t:insert{name = "new", score = 0.25} end,
          function() return t:update(5, {name = "five", score = 99}) end,
          function() return t:delete(7) end,
        }
        for _, op in ipairs(ops) do
          local ok, msg, code = op()
          if not ok then
            failed = failed + 1
            assert.equal("no_space", code, msg)
            assert.same(before, rows(t))
          end
          before = rows(t)
        end
        core._inject_fault(nil)
        assert_check(t)
        if tx then assert(tx:commit()) end
        assert_check(t)
        H.cleanup()
      end
    end
    assert.is_true(failed >= 3, "only " .. failed .. " operations failed")
  end)

  it("check() reports an index whose entries disagree with the rows", function()
    local t, p = table_with()
    assert(t:insert{name = "ada", score = 1})
    local ok = t:check()
    assert.is_true(ok)
    local pid = t.indexes[2].pid
    assert(btree.at(p, pid):put(btree.key(7.5) .. btree.key(99), string.pack("<i8", 99)))
    local good, problems = t:check()
    assert.is_false(good)
    assert.matches("2 entries for 1 records", table.concat(problems, "\n"))
    assert(btree.at(p, pid):delete(btree.key(1) .. btree.key(1)))
    good, problems = t:check()
    assert.is_false(good)
    assert.matches("id 1 .* is missing", table.concat(problems, "\n"))
  end)
end)

describe("indexes under a random workload", function()
  after_each(function() H.cleanup() end)

  it("match a Lua model of find and range through inserts, updates, deletes, rollbacks and reopens", function()
    local r = H.rng(2828)
    local src = "record r { u: i32  s: f64  tag: char[4] }"
    local opts = {unique = {"u"}, index = {"s"}}
    local p, path = H.create({page_size = 1024})
    local t = assert(records.open(p, "r", src, opts))
    local model = {}                     -- id -> row
    local function copy(m)
      local c = {}
      for id, row in pairs(m) do c[id] = {u = row.u, s = row.s, tag = row.tag} end
      return c
    end
    local function owner(m, u)
      for id, row in pairs(m) do if row.u == u then return id end end
    end
    local function pick(m)
      local ids = {}
      for id in pairs(m) do ids[#ids + 1] = id end
      if #ids == 0 then return nil end
      table.sort(ids)
      return ids[r(#ids)]
    end
    local function op(m)
      local k = r(100)
      local id = pick(m)
      if not id or k <= 40 then
        local row = {u = r(600), s = r(20) / 4, tag = "t" .. r(9)}
        local got, _, code = t:insert(row)
        if owner(m, row.u) then
          assert.equal("duplicate", code)
        else
          assert(got, code)
          m[got] = row
        end
      elseif k <= 65 then
        local fields = {}
        if r(2) == 1 then fields.u = r(600) end
        if r(2) == 1 then fields.s = r(20) / 4 end
        if r(3) == 1 then fields.tag = "x" end
        local o = fields.u and owner(m, fields.u)
        local ok, _, code = t:update(id, fields)
        if o and o ~= id then
          assert.equal("duplicate", code)
        else
          assert(ok, code)
          for f, v in pairs(fields) do m[id][f] = v end
        end
      elseif k <= 72 then
        local s = r(20) / 4
        assert(t:set(id, "s", s))
        m[id].s = s
      else
        assert(t:delete(id))
        m[id] = nil
      end
    end
    local function compare()
      for _ = 1, 5 do
        local u = r(600)
        assert.equal(owner(model, u), t:find("u", u))
      end
      local lo, hi = r(24) / 4 - 0.5, r(24) / 4
      if r(4) == 1 then lo = nil end
      if r(4) == 1 then hi = nil end
      local want = {}
      for id, row in pairs(model) do
        if (lo == nil or row.s >= lo) and (hi == nil or row.s < hi) then want[#want + 1] = id end
      end
      table.sort(want, function(a, b)
        if model[a].s ~= model[b].s then return model[a].s < model[b].s end
        return a < b
      end)
      local got = {}
      for id, row in t:range("s", lo, hi) do
        got[#got + 1] = id
        assert.same(model[id], row)
      end
      assert.same(want, got)
      local us = {}
      for _, row in t:range("u") do us[#us + 1] = row.u end
      for i = 2, #us do assert.is_true(us[i - 1] < us[i]) end
    end
    for step = 1, 3000 do
      local k = r(100)
      if k <= 50 then
        op(model)
      elseif k <= 80 then
        local work = copy(model)
        local fail = r(4) == 1
        local ok, err = pcall(p.transaction, p, function()
          for _ = 1, r(15) do op(work) end
          if fail then error("planned rollback") end
        end)
        if fail then assert.is_false(ok) else assert(ok, err) model = work end
      elseif k <= 83 then
        p = H.reopen(p, path)
        t = assert(records.open(p, "r", src, opts))
      elseif k <= 97 then
        compare()
      else
        assert_check(t)
      end
      if step % 500 == 0 then assert_check(t) end
    end
    compare()
    assert_check(t)
  end)
end)
