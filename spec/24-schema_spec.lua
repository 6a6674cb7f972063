-- 24-schema: the schema language and record codecs (mappedpages.schema).
--
-- Every type, separator and comment; layouts and formats; defaults of
-- every kind and nesting; encode/decode round trips at every type's
-- boundaries (and one past them, which raises naming the path and the
-- value); NaN, infinities and f32's range; char[N] exact, one too long,
-- embedded zeros; unknown keys; flatten/build and the field codecs, also
-- through view:pack/view:unpack; every parse error with its line and
-- column; the canonical source; diff.

local H = require "helpers"
local mp = H.mp
local schema = require "mappedpages.schema"

local PLAYER = [[
  -- comments run to the end of the line
  record vec3 { x: f32  y: f32  z: f32 }
  record player {
    id: u64
    name: char[24]
    pos: vec3                -- a record declared earlier, embedded
    score: f64 = 0.5         -- a default
    tags: u8[4]
    alive: bool = true
    class: enum { warrior, mage, rogue } = mage
  }
]]

local function parse(src)
  local s, msg = schema.parse(src)
  assert(s, msg)
  return s
end

-- The only record of src (or the last).
local function rec_of(src)
  local s = parse(src)
  return s.records[#s.records]
end

local function parse_error(src)
  local s, msg = schema.parse(src)
  assert.is_nil(s)
  return msg
end

-- The message of the error fn(...) raises.
local function raised(fn, ...)
  local ok, msg = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return msg
end

local function roundtrip(rec, t)
  return rec.decode(rec.encode(t))
end

describe("mappedpages.schema", function()
  it("is mp.schema", function()
    assert.equal(schema, mp.schema)
  end)

  describe("the example of the docs", function()
    local s = parse(PLAYER)
    local p = s.player

    it("lists the records in declaration order", function()
      assert.equal(2, #s.records)
      assert.equal("vec3", s.records[1].name)
      assert.equal(p, s.records[2])
      assert.equal(p, s:record "player")
      assert.equal(s.vec3, s:record "vec3")
    end)

    it("lays the fields out packed, in order", function()
      assert.equal(8 + 24 + 12 + 8 + 4 + 1 + 1, p.size)
      local want = {
        {"id", "u64", 0, 8, 1}, {"name", "char[24]", 8, 24, 1},
        {"pos", "vec3", 32, 12, 1}, {"score", "f64", 44, 8, 1},
        {"tags", "u8[4]", 52, 4, 4}, {"alive", "bool", 56, 1, 1},
        {"class", "enum { warrior, mage, rogue }", 57, 1, 1},
      }
      assert.equal(#want, #p.fields)
      for i, w in ipairs(want) do
        local f = p.fields[i]
        assert.same(w, {f.name, f.type, f.offset, f.size, f.count})
        assert.equal(f, p.by_name[f.name])
      end
      assert.equal("<I8 c24 fff d BBBB B B", p.format)
      assert.equal(p.size, string.packsize(p.format))
    end)

    it("gives every field its default or zero", function()
      local d = {}
      for _, f in ipairs(p.fields) do d[f.name] = f.default end
      assert.same({id = 0, name = "", pos = {x = 0.0, y = 0.0, z = 0.0}, score = 0.5,
                   tags = {0, 0, 0, 0}, alive = true, class = "mage"}, d)
      assert.same(d, p.decode(p.encode{}))
      assert.equal("float", math.type(p.decode(p.encode{}).score))
    end)

    it("says what the fields are", function()
      local by = p.by_name
      assert.same({"u64", "char", "record", "f64", "array", "bool", "enum"},
                  {by.id.kind, by.name.kind, by.pos.kind, by.score.kind,
                   by.tags.kind, by.alive.kind, by.class.kind})
      assert.same({"warrior", "mage", "rogue"}, by.class.members)
      assert.equal(s.vec3, by.pos.record)
      assert.is_nil(by.tags.record)
    end)

    it("encodes into the documented bytes, little-endian", function()
      local b = p.encode{id = 0x0102030405060708, name = "ada", pos = {x = 1, y = 2, z = 3},
                         score = 2.5, tags = {9, 8, 7}, alive = false, class = "rogue"}
      assert.equal(p.size, #b)
      assert.equal("\8\7\6\5\4\3\2\1", b:sub(1, 8))
      assert.equal("ada" .. ("\0"):rep(21), b:sub(9, 32))
      assert.equal(string.pack("<fffd", 1, 2, 3, 2.5), b:sub(33, 52))
      assert.equal("\9\8\7\0\0\2", b:sub(53, 58))
    end)

    it("decodes what it encodes, as nested tables and sequences", function()
      local t = {id = 7, name = "ada", pos = {x = 1.5, y = -2.0, z = 0.25}, score = 1e300,
                 tags = {1, 2, 3, 4}, alive = false, class = "warrior"}
      assert.same(t, roundtrip(p, t))
    end)

    it("has a tostring", function()
      assert.equal("mappedpages.schema: 2 records (vec3, player)", tostring(s))
      assert.equal("mappedpages.schema record player: 58 bytes, 7 fields", tostring(p))
    end)

    it("caches parses by source", function()
      assert.equal(s, schema.parse(PLAYER))
    end)
  end)

  describe("the language", function()
    it("takes white space, ';' or ',' between fields", function()
      for _, body in ipairs{"a: u8 b: u16", "a: u8; b: u16;", "a: u8, b: u16,",
                            "a:u8\nb:u16", ";;a: u8,;b: u16", "a: u8[2]b: u16"} do
        local r = rec_of("record r {" .. body .. "}")
        assert.equal("a", r.fields[1].name, body)
        assert.equal("b", r.fields[2].name, body)
        assert.equal("u16", r.fields[2].type, body)
      end
    end)

    it("skips comments to the end of the line, anywhere", function()
      local r = rec_of("-- head\nrecord -- a\n r -- b\n { -- c\n a -- d\n : -- e\n u8 -- f\n"
                       .. " = -- g\n 3 -- h\n } -- tail")
      assert.equal(3, r.fields[1].default)
    end)

    it("reads every scalar type with its size and format", function()
      local r = rec_of("record r { a: u8 b: u16 c: u32 d: u64 e: i8 f: i16 g: i32"
                       .. " h: i64 i: f32 j: f64 k: bool }")
      local sizes, fmts = {}, {}
      for i, f in ipairs(r.fields) do sizes[i], fmts[i] = f.size, f.format end
      assert.same({1, 2, 4, 8, 1, 2, 4, 8, 4, 8, 1}, sizes)
      assert.same({"<B", "<I2", "<I4", "<I8", "<b", "<i2", "<i4", "<i8", "<f", "<d", "<B"}, fmts)
      assert.equal(43, r.size)
    end)

    it("reads arrays of every kind, brackets applying left to right", function()
      local s = parse([[record v { x: f32 y: f32 z: f32 }
        record r { a: u8[4][3]  b: v[2]  c: char[8][4]  d: enum { p, q }[2]  e: bool[3] }]])
      local r = s.r
      local a, b, c = r.by_name.a, r.by_name.b, r.by_name.c
      assert.same({"u8[4][3]", 12, 3}, {a.type, a.size, a.count})
      assert.same({"v[2]", 24, 2}, {b.type, b.size, b.count})
      assert.same({"char[8][4]", 32, 4}, {c.type, c.size, c.count})
      assert.equal(s.v, b.record)
      local t = {a = {{1, 2, 3, 4}, {5, 6, 7, 8}, {9, 10, 11, 12}},
                 b = {{x = 1.0, y = 2.0, z = 3.0}, {x = 4.0, y = 5.0, z = 6.0}},
                 c = {"a", "bb", "cccccccc", ""}, d = {"q", "p"}, e = {true, false, true}}
      assert.same(t, roundtrip(r, t))
      assert.equal(12 + 24 + 32 + 2 + 3, r.size)
    end)

    it("embeds records in records", function()
      local s = parse([[record a { x: u8 } record b { a: a, y: u8 } record c { b: b[2], z: a }]])
      local t = {b = {{a = {x = 1}, y = 2}, {a = {x = 3}, y = 4}}, z = {x = 5}}
      assert.same(t, roundtrip(s.c, t))
      assert.equal(5, s.c.size)
    end)

    it("lets a record be named 'record' or 'records', reached with s:record", function()
      local s = parse("record record { a: u8 } record records { b: u8 } record x { c: u8 }")
      assert.equal("function", type(s.record))
      assert.equal(3, #s.records)
      assert.equal("record", s:record("record").name)
      assert.equal("records", s:record("records").name)
      assert.equal(s:record "x", s.x)
    end)

    it("answers an unknown record name with nil and a message", function()
      local s = parse(PLAYER)
      local r, msg = s:record "nope"
      assert.is_nil(r)
      assert.equal("no record 'nope' in the schema (it has: vec3, player)", msg)
      assert.matches("bad argument #1 to 'record' %(string expected, got number%)",
                     raised(s.record, s, 1))
    end)

    it("stores an enum in a u16 past 256 members", function()
      local names = {}
      for i = 1, 257 do names[i] = "m" .. i end
      local r = rec_of("record r { e: enum { " .. table.concat(names, ", ") .. " } = m257 }")
      assert.equal(2, r.size)
      assert.equal("<I2", r.fields[1].format)
      assert.equal("\0\1", r.encode{})
      assert.equal("m257", r.decode(r.encode{}).e)
      names[257] = nil
      local r8 = rec_of("record r { e: enum { " .. table.concat(names, ", ") .. " } = m256 }")
      assert.equal(1, r8.size)
      assert.equal("\255", r8.encode{})
    end)

    it("decodes an enum index past its members as the integer", function()
      local r = rec_of("record r { e: enum { a, b } }")
      assert.equal(7, r.decode("\7").e)
      assert.equal("b", r.decode("\1").e)
    end)

    it("decodes any non-zero byte of a bool as true", function()
      local r = rec_of("record r { b: bool }")
      assert.is_true(r.decode("\2").b)
      assert.is_false(r.decode("\0").b)
    end)
  end)

  describe("defaults", function()
    it("take integers in decimal and hex, negative ones, and integral floats", function()
      local r = rec_of([[record r { a: u8 = 0xff  b: i8 = -128  c: i16 = -0x10  d: u32 = 4e3
        e: i64 = -9223372036854775808  f: i64 = 9223372036854775807 g: u16 = 0X1F }]])
      assert.same({a = 255, b = -128, c = -16, d = 4000, e = math.mininteger,
                   f = math.maxinteger, g = 31}, r.decode(r.encode{}))
      assert.equal("integer", math.type(r.by_name.d.default))
    end)

    it("take u64 up to 2^64 - 1, in decimal or hex, as its 64-bit pattern", function()
      local r = rec_of("record r { a: u64 = 18446744073709551615  b: u64 = 0x8000000000000000"
                       .. " c: u64 = 9223372036854775808 }")
      assert.same({a = -1, b = math.mininteger, c = math.mininteger}, r.decode(r.encode{}))
    end)

    it("take floats, integers, inf, -inf and nan for float fields", function()
      local r = rec_of("record r { a: f64 = 1.25e-3 b: f64 = 3 c: f32 = -inf d: f64 = inf"
                       .. " e: f32 = nan f: f64 = .5 g: f64 = -0.0 }")
      local t = r.decode(r.encode{})
      assert.equal(1.25e-3, t.a)
      assert.equal("float", math.type(t.b))
      assert.equal(3.0, t.b)
      assert.equal(-math.huge, t.c)
      assert.equal(math.huge, t.d)
      assert.is_true(t.e ~= t.e)
      assert.equal(0.5, t.f)
      assert.equal("-0.0", tostring(t.g))
    end)

    it("take true, false, enum members and strings with Lua's escapes", function()
      local r = rec_of([[record r { a: bool = false  b: bool = true  c: enum { x, y } = y
        d: char[16] = "a\tb\"\\\65\x42\u{48}\z
                       c\0d\
e" }]])
      assert.same({a = false, b = true, c = "y", d = "a\tb\"\\ABHc\0d\ne"}, r.decode(r.encode{}))
    end)

    it("keep a char default as decode gives it back: no trailing zeros", function()
      local r = rec_of([[record r { a: char[4] = "ab\0\0" }]])
      assert.equal("ab", r.by_name.a.default)
    end)

    it("take lists for arrays, nested for nested arrays, the rest zero", function()
      local r = rec_of([[record r { a: u8[4] = {1, 2}  b: u8[2][3] = {{1, 2}, {3}}
        c: char[2][2] = {"ab"}  d: enum { p, q }[3] = {q; q,}  e: f32[2] = {} }]])
      assert.same({a = {1, 2, 0, 0}, b = {{1, 2}, {3, 0}, {0, 0}}, c = {"ab", ""},
                   d = {"q", "q", "p"}, e = {0.0, 0.0}}, r.decode(r.encode{}))
    end)

    it("take {field = value} lists for embedded records, the rest its own defaults", function()
      local s = parse([[record v { x: f32 = 1  y: f32 = 2 }
        record r { a: v = {y = 5}  b: v  c: v[2] = {{x = 3}, {}} }]])
      assert.same({a = {x = 1.0, y = 5.0}, b = {x = 1.0, y = 2.0},
                   c = {{x = 3.0, y = 2.0}, {x = 1.0, y = 2.0}}}, s.r.decode(s.r.encode{}))
      assert.same({x = 1.0, y = 5.0}, s.r.by_name.a.default)
    end)
  end)

  describe("encode and decode at the boundaries", function()
    local ranges = {
      u8 = {0, 255}, u16 = {0, 65535}, u32 = {0, 4294967295},
      i8 = {-128, 127}, i16 = {-32768, 32767}, i32 = {-2147483648, 2147483647},
      i64 = {math.mininteger, math.maxinteger},
    }
    for t, mm in pairs(ranges) do
      it("keeps " .. t .. "'s minimum and maximum and raises one past them", function()
        local r = rec_of("record r { v: " .. t .. " }")
        assert.equal(mm[1], roundtrip(r, {v = mm[1]}).v)
        assert.equal(mm[2], roundtrip(r, {v = mm[2]}).v)
        if t ~= "i64" then
          assert.equal(("r.v: %d is out of range for %s (%d to %d)"):format(mm[1] - 1, t, mm[1], mm[2]),
                       raised(r.encode, {v = mm[1] - 1}))
          assert.equal(("r.v: %d is out of range for %s (%d to %d)"):format(mm[2] + 1, t, mm[1], mm[2]),
                       raised(r.encode, {v = mm[2] + 1}))
        else
          assert.equal("r.v: 9.223372036854776e+18 is out of range for i64 (-2^63 to 2^63 - 1)",
                       raised(r.encode, {v = 2.0 ^ 63}))
          assert.equal("r.v: -9.223372036854778e+18 is out of range for i64 (-2^63 to 2^63 - 1)",
                       raised(r.encode, {v = -2.0 ^ 63 - 2048}))
        end
      end)
    end

    it("keeps every u64 pattern, takes floats up to 2^64 and raises past", function()
      local r = rec_of("record r { v: u64 }")
      for _, v in ipairs{0, 1, math.maxinteger, math.mininteger, -1} do
        assert.equal(v, roundtrip(r, {v = v}).v)
      end
      assert.equal("\255\255\255\255\255\255\255\255", r.encode{v = -1})
      assert.equal(math.mininteger, roundtrip(r, {v = 2.0 ^ 63}).v)
      assert.equal(-2048, roundtrip(r, {v = 2.0 ^ 64 - 2048}).v)
      assert.equal("r.v: 1.8446744073709552e+19 is out of range for u64 (0 to 2^64 - 1)",
                   raised(r.encode, {v = 2.0 ^ 64}))
    end)

    it("takes integral floats for integers and raises for a fraction", function()
      local r = rec_of("record r { v: i32 }")
      local t = roundtrip(r, {v = 3.0})
      assert.equal(3, t.v)
      assert.equal("integer", math.type(t.v))
      assert.equal("r.v: 3.5 is not an integer (i32)", raised(r.encode, {v = 3.5}))
      assert.equal("r.v: nan is not an integer (i32)", raised(r.encode, {v = 0 / 0}))
      assert.equal("r.v: inf is out of range for i32 (-2147483648 to 2147483647)", raised(r.encode, {v = math.huge}))
    end)

    it("raises for a value of the wrong type, naming it", function()
      local r = rec_of("record r { i: u8  f: f64  b: bool  c: char[2]  e: enum { a } }")
      assert.equal('r.i: "3" is not an integer (u8)', raised(r.encode, {i = "3"}))
      assert.equal('r.f: "1.5" is not a number (f64)', raised(r.encode, {f = "1.5"}))
      assert.equal("r.b: 1 is not a boolean", raised(r.encode, {b = 1}))
      assert.equal("r.c: 12 is not a string (char[2])", raised(r.encode, {c = 12}))
      assert.equal('r.e: "b" is not a member of enum { a }', raised(r.encode, {e = "b"}))
      assert.equal("r.e: 0 is not a member of enum { a }", raised(r.encode, {e = 0}))
      assert.equal("r.i: a table is not an integer (u8)", raised(r.encode, {i = {}}))
    end)

    it("keeps NaN and infinities in f32 and f64, and raises past f32's range", function()
      local r = rec_of("record r { a: f32  b: f64 }")
      for _, v in ipairs{math.huge, -math.huge} do
        local t = roundtrip(r, {a = v, b = v})
        assert.same({v, v}, {t.a, t.b})
      end
      local t = roundtrip(r, {a = 0 / 0, b = 0 / 0})
      assert.is_true(t.a ~= t.a and t.b ~= t.b)
      local max = (2 - 2 ^ -23) * 2 ^ 127
      assert.equal(max, roundtrip(r, {a = max}).a)
      assert.equal(-max, roundtrip(r, {a = -max}).a)
      assert.equal(1e300, roundtrip(r, {b = 1e300}).b)
      assert.equal("r.a: 3.4028235677973366e+38 is out of range for f32 (finite values up to "
                   .. "3.4028234663852886e+38)", raised(r.encode, {a = 3.4028235677973366e+38}))
      assert.matches("^r%.a: %-1e%+39 is out of range for f32", raised(r.encode, {a = -1e39}))
      assert.equal(0.5, roundtrip(r, {a = 0.5}).a)
      assert.equal(string.unpack("<f", string.pack("<f", 0.1)), roundtrip(r, {a = 0.1}).a)
    end)

    it("keeps char[N] exactly full, raises one byte more, keeps embedded zeros", function()
      local r = rec_of("record r { c: char[4]  d: u8 = 9 }")
      assert.equal("abcd", roundtrip(r, {c = "abcd"}).c)
      assert.equal('r.c: "abcde" is too long for char[4] (5 bytes)', raised(r.encode, {c = "abcde"}))
      assert.equal("a\0b", roundtrip(r, {c = "a\0b"}).c)
      assert.equal("a\0b", roundtrip(r, {c = "a\0b\0"}).c)
      assert.equal("", roundtrip(r, {c = "\0\0\0\0"}).c)
      assert.equal("", roundtrip(r, {c = ""}).c)
      assert.equal(9, roundtrip(r, {c = "abcd"}).d)
    end)

    it("cuts a long string in messages", function()
      local r = rec_of("record r { c: char[4] }")
      local long = ("x"):rep(50)
      assert.equal(('r.c: "%s"... (50 bytes) is too long for char[4] (50 bytes)'):format(("x"):rep(40)),
                   raised(r.encode, {c = long}))
    end)

    it("raises for unknown fields, naming the path and the value", function()
      local p = parse(PLAYER).player
      assert.equal('player.nmae: unknown field of player (value "ada")',
                   raised(p.encode, {nmae = "ada"}))
      assert.equal("player.pos.w: unknown field of vec3 (value 1)",
                   raised(p.encode, {pos = {x = 1, w = 1}}))
      assert.equal("player[1]: unknown field of player (value 5)", raised(p.encode, {5}))
      assert.equal("player.pos.x: \"a\" is not a number (f32)",
                   raised(p.flatten, {pos = {x = "a"}}))
    end)

    it("raises for too many items, a non-item key, or a non-table", function()
      local p = parse(PLAYER).player
      assert.equal("player.tags[5]: too many items for u8[4] (value 5)",
                   raised(p.encode, {tags = {1, 2, 3, 4, 5}}))
      assert.equal("player.tags.n: not an item of u8[4] (value 4)",
                   raised(p.encode, {tags = {1, 2, 3, 4, n = 4}}))
      assert.equal("player.tags[0]: not an item of u8[4] (value 1)",
                   raised(p.encode, {tags = {[0] = 1}}))
      assert.equal("player.tags[2]: 300 is out of range for u8 (0 to 255)",
                   raised(p.encode, {tags = {1, 300}}))
      assert.equal("player.pos: 3 is not a table (vec3)", raised(p.encode, {pos = 3}))
      assert.equal("player.tags: \"abc\" is not a table (u8[4])", raised(p.encode, {tags = "abc"}))
    end)

    it("fills what is missing at any depth from the defaults", function()
      local s = parse([[record v { x: f32 = 1  y: f32 = 2 }
        record r { a: v = {y = 5}  t: u8[3] = {7, 8, 9}  w: v[2] }]])
      assert.same({a = {x = 3.0, y = 5.0}, t = {1, 8, 9}, w = {{x = 1.0, y = 6.0}, {x = 1.0, y = 2.0}}},
                  roundtrip(s.r, {a = {x = 3}, t = {1}, w = {{y = 6}}}))
      assert.same({a = {x = 1.0, y = 5.0}, t = {7, 0, 9}, w = {{x = 1.0, y = 2.0}, {x = 1.0, y = 2.0}}},
                  roundtrip(s.r, {t = {nil, 0}}))
    end)

    it("raises for misuse naming the function", function()
      local p = parse(PLAYER).player
      assert.equal("bad argument #1 to 'encode' (table expected, got nil)", raised(p.encode))
      assert.equal("bad argument #1 to 'flatten' (table expected, got string)", raised(p.flatten, "x"))
      assert.equal("bad argument #1 to 'decode' (string of 58 bytes expected, got 3)",
                   raised(p.decode, "abc"))
      assert.equal("bad argument #1 to 'decode' (string expected, got table)", raised(p.decode, {}))
    end)

    it("points errors at the caller's line", function()
      local p = parse(PLAYER).player
      local ok, msg = pcall(function()
        local b = p.encode{id = "x"}   -- not a tail call: the caller's frame stays
        return b
      end)
      assert.is_false(ok)
      assert.matches("24%-schema_spec%.lua:%d+: player%.id: \"x\" is not an integer %(u64%)", msg)
    end)
  end)

  describe("flatten, build and the field codecs", function()
    local p = parse(PLAYER).player
    local row = {id = 5, name = "bo", pos = {x = 1.0, y = 2.0, z = 3.0}, score = 4.5,
                 tags = {1, 2, 3, 4}, alive = false, class = "rogue"}

    it("flatten gives the values encode packs", function()
      assert.same({5, "bo", 1.0, 2.0, 3.0, 4.5, 1, 2, 3, 4, 0, 2}, {p.flatten(row)})
      assert.equal(p.encode(row), string.pack(p.format, p.flatten(row)))
    end)

    it("build is decode from unpacked values", function()
      local b = p.encode(row)
      assert.same(row, p.build(string.unpack(p.format, b)))
      assert.same(p.decode(b), p.build(string.unpack(p.format, b)))
    end)

    it("works with view:pack and view:unpack at an offset", function()
      local pager = H.create()
      local page = pager:page(assert(pager:alloc()))
      page:pack(100, p.format, p.flatten(row))
      assert.equal(p.encode(row), page:read(100, p.size))
      assert.same(row, p.build(page:unpack(100, p.format)))
      page:pack(200, p.format, p.flatten{name = "x"})   -- c24 pads with zeros
      assert.equal(p.encode{name = "x"}, page:read(200, p.size))
      local f = p.by_name.pos
      page:pack(100 + f.offset, f.format, f.flatten{x = 9})
      local t = p.build(page:unpack(100, p.format))
      assert.same({x = 9.0, y = 0.0, z = 0.0}, t.pos)
      assert.same({x = 9.0, y = 0.0, z = 0.0}, f.build(page:unpack(100 + f.offset, f.format)))
      pager:close()
    end)

    it("each field codec packs that field's bytes alone", function()
      local b = p.encode(row)
      for _, f in ipairs(p.fields) do
        assert.equal(f.size, string.packsize(f.format), f.name)
        assert.equal(b:sub(f.offset + 1, f.offset + f.size),
                     string.pack(f.format, f.flatten(row[f.name])), f.name)
        assert.same(row[f.name], f.build(string.unpack(f.format, b, f.offset + 1)), f.name)
      end
    end)

    it("a field codec checks its value and fills nil with the default", function()
      local by = p.by_name
      assert.equal("player.tags[1]: -1 is out of range for u8 (0 to 255)",
                   raised(by.tags.flatten, {-1}))
      assert.equal("player.score: true is not a number (f64)", raised(by.score.flatten, true))
      assert.same({0.5}, {by.score.flatten(nil)})
      assert.same({1}, {by.class.flatten(nil)})
      assert.equal("mage", by.class.build(by.class.flatten()))
      assert.same({0, 0, 0, 0}, {by.tags.flatten()})
    end)

    it("handles records of more values than fit in locals", function()
      local r = rec_of("record big { a: u16[300]  b: char[2][150]  e: enum { x, y }[10] = {y} }")
      local t = r.decode(r.encode{a = {[300] = 65535}, b = {[150] = "zz"}})
      assert.equal(65535, t.a[300])
      assert.equal(0, t.a[1])
      assert.equal("zz", t.b[150])
      assert.same({"y", "x", "x", "x", "x", "x", "x", "x", "x", "x"}, t.e)
      assert.equal(460, select("#", r.flatten{}))
      assert.equal("big.a[301]: too many items for u16[300] (value 1)",
                   raised(r.encode, {a = {[301] = 1}}))
      assert.equal("big.a[7]: 65536 is out of range for u16 (0 to 65535)",
                   raised(r.encode, {a = {[7] = 65536}}))
      assert.same(t, r.build(string.unpack(r.format, r.encode(t))))
      local f = r.by_name.a
      assert.same(t.a, f.build(f.flatten(t.a)))
    end)
  end)

  describe("parse errors", function()
    local cases = {
      {"record p {\n  id: u64\n  name: strnig\n}",
       "line 3, column 9: expected a type near 'strnig' (unknown type: no built-in type "
       .. "or record declared before has that name)"},
      {"record p {\n  x u8 }", "line 2, column 5: expected ':' after the field name near 'u8'"},
      {"record p { x: }", "line 1, column 15: expected a type near '}'"},
      {"record p { x: u8[0] }", "line 1, column 18: zero-length array u8[0]"},
      {"record p { x: char[0] }", "line 1, column 20: zero-length string char[0]"},
      {"record p { x: u8 x: u16 }",
       "line 1, column 18: duplicate field 'x' in record 'p' (first at line 1, column 12)"},
      {"record p { x: u8 }\nrecord p { y: u8 }",
       "line 2, column 8: duplicate record 'p' (first at line 1, column 8)"},
      {"record p { x: p }", "line 1, column 15: record 'p' cannot contain itself"},
      {"record p { x: q }\nrecord q { y: u8 }",
       "line 1, column 15: record 'q' is used before it is declared (at line 2, column 8)"},
      {"record p { x: enum { } }", "line 1, column 15: enum { } has no members"},
      {"record p { x: enum { a, b,\n a } }",
       "line 2, column 2: duplicate enum member 'a' (first at line 1, column 22)"},
      {"record p { x: u8 = 256 }", "line 1, column 20: default 256 of p.x is out of range for u8 (0 to 255)"},
      {"record p { x: u8 = -1 }", "line 1, column 20: default -1 of p.x is out of range for u8 (0 to 255)"},
      {"record p { x: u64 = -1 }",
       "line 1, column 21: default -1 of p.x is out of range for u64 (0 to 2^64 - 1)"},
      {"record p { x: u64 = 18446744073709551616 }",
       "line 1, column 21: default 18446744073709551616 of p.x is out of range for u64 (0 to 2^64 - 1)"},
      {"record p { x: i64 = 0x10000000000000000 }",
       "line 1, column 21: default 0x10000000000000000 of p.x is out of range for i64 (-2^63 to 2^63 - 1)"},
      {"record p { x: i64 = 9223372036854775808 }",
       "line 1, column 21: default 9223372036854775808 of p.x is out of range for i64 (-2^63 to 2^63 - 1)"},
      {"record p { x: u8 = 1.5 }", "line 1, column 20: default 1.5 of p.x is not an integer (u8)"},
      {'record p { x: u8 = "a" }', 'line 1, column 20: default "a" of p.x is not an integer (u8)'},
      {"record p { x: f64 = true }", "line 1, column 21: default true of p.x is not a number (f64)"},
      {"record p { x: f32 = 1e39 }",
       "line 1, column 21: default 1e39 of p.x is out of range for f32 (finite values up to "
       .. "3.4028234663852886e+38)"},
      {"record p { x: bool = 1 }", "line 1, column 22: default 1 of p.x is not a boolean (true or false)"},
      {'record p { x: char[2] = "abc" }',
       'line 1, column 25: default "abc" of p.x is too long for char[2] (3 bytes)'},
      {"record p { x: char[2] = ab }", "line 1, column 25: default ab of p.x is not a string (char[2])"},
      {'record p { x: char[4] = "a\\qb" }',
       'line 1, column 25: default "a\\qb" of p.x is not a valid string: invalid escape sequence'},
      {'record p { x: char[4] = "ab\n" }',
       "line 1, column 28: expected '\"' to close the string near '\n'"},
      {"record p { x: u8[2] = {1, 2, 3} }",
       "line 1, column 30: default {1, 2, 3} of p.x has too many items for u8[2] (3)"},
      {"record p { x: u8[2][2] = {{1}, {1, 2, 3}} }",
       "line 1, column 39: default {1, 2, 3} of p.x[2] has too many items for u8[2] (3)"},
      {"record p { x: u8[2] = 5 }", "line 1, column 23: default 5 of p.x is not a list (u8[2])"},
      {"record p { x: u8[2] = {a = 1} }",
       "line 1, column 24: default {a = 1} of p.x: item 1 is named (a =), but u8[2] is an array"},
      {"record p { x: enum { a, b } = c }",
       "line 1, column 31: default c of p.x is not a member of enum { a, b }"},
      {'record p { x: enum { a, b } = "a" }',
       'line 1, column 31: default "a" of p.x is not a member name of enum { a, b }'},
      {"record v { x: f32 } record p { a: v = {x = 1, w = 2} }",
       "line 1, column 47: default {x = 1, w = 2} of p.a: v has no field 'w'"},
      {"record v { x: f32 } record p { a: v = {1} }",
       "line 1, column 40: default {1} of p.a: item 1 has no name (v is a record: {field = value, ...})"},
      {"record v { x: f32 } record p { a: v = {x = 1, x = 2} }",
       "line 1, column 47: default {x = 1, x = 2} of p.a: field 'x' is given twice"},
      {"record v { x: f32 } record p { a: v = 3 }",
       "line 1, column 39: default 3 of p.a is not a list of named fields (v)"},
      {"", "line 1, column 1: expected 'record' near end of input"},
      {"-- nothing", "line 1, column 11: expected 'record' near end of input"},
      {"record p { x: u8 } junk", "line 1, column 20: expected 'record' near 'junk'"},
      {"record { x: u8 }", "line 1, column 8: expected a record name near '{'"},
      {"record p x: u8 }", "line 1, column 10: expected '{' near 'x'"},
      {"record p { x: u8", "line 1, column 17: expected a field name or '}' near end of input"},
      {"record u8 { x: u8 }", "line 1, column 8: record name 'u8' is a built-in type"},
      {"record char { x: u8 }", "line 1, column 8: record name 'char' is a built-in type"},
      {"record p { }", "line 1, column 8: record 'p' has no fields"},
      {"record p { x: u8[2 }", "line 1, column 20: expected ']' near '}'"},
      {"record p { x: u8[-1] }", "line 1, column 18: expected a length (a positive integer) near '-'"},
      {"record p { x: char }", "line 1, column 20: expected '[' after char (char[N]) near '}'"},
      {"record p { x: enum a }", "line 1, column 20: expected '{' after enum near 'a'"},
      {"record p { x: enum { a b } }", "line 1, column 24: expected ',' or '}' near 'b'"},
      {"record p { x: enum { , } }",
       "line 1, column 22: expected an enum member name or '}' near ','"},
      {"record p { x: u8 = }", "line 1, column 20: expected a default value near '}'"},
      {"record p { x: u8[2] = {1 2} }", "line 1, column 26: expected ',' or '}' near '2'"},
      {"record p { x: u8[2] = {1, ,} }", "line 1, column 27: expected a value or '}' near ','"},
      {"record p { x: u8 = 1x }", "line 1, column 20: expected a default value near '1x'"},
      {"record p { x: u8[99999999999] }",
       "line 1, column 18: array u8[99999999999] is too long (at most 2147483647)"},
      {"record p { x: u8[9000] }",
       "line 1, column 18: type u8[9000] holds too many values (9000; at most 8192: use char[N] for bytes)"},
      {"record p { x: char[2000000000][2] }",
       "line 1, column 32: type char[2000000000][2] is too large (4000000000 bytes; at most 2147483647)"},
    }
    for _, c in ipairs(cases) do
      it("reports " .. c[2]:gsub("\n", "\\n"), function()
        assert.equal(c[2], parse_error(c[1]))
      end)
    end

    it("counts columns from 1 after comments and tabs, lines after CRLF", function()
      assert.equal("line 3, column 4: expected ':' after the field name near 'u8'",
                   parse_error("record p { -- {\r\n\ta: u8\r\n\tb u8 }"))
    end)

    it("raises for a non-string source, naming the function", function()
      assert.equal("bad argument #1 to 'mappedpages.schema.parse' (string expected, got number)",
                   raised(schema.parse, 5))
      assert.equal("bad argument #1 to 'mappedpages.schema.parse' (string expected, got nil)",
                   raised(schema.parse))
    end)
  end)

  describe("the canonical source", function()
    it("declares the record after the records it embeds, one per line", function()
      local p = parse(PLAYER).player
      assert.equal("record vec3 { x: f32; y: f32; z: f32 }\n"
                   .. "record player { id: u64; name: char[24]; pos: vec3; score: f64 = 0.5; "
                   .. "tags: u8[4]; alive: bool = true; class: enum { warrior, mage, rogue } = mage }\n",
                   p.source)
      assert.equal("record vec3 { x: f32; y: f32; z: f32 }\n", parse(PLAYER).vec3.source)
    end)

    it("leaves out what is not embedded and defaults equal to zero", function()
      local s = parse("record a { x: u8 } record b { y: u8 = 0 } record c { z: b; w: u8 = 1 }")
      assert.equal("record b { y: u8 }\nrecord c { z: b; w: u8 = 1 }\n", s.c.source)
    end)

    it("parses back to the same layout, defaults and members", function()
      local src = [[record v { x: f32 = 0.1  y: f64 = -0.0  s: char[3] = "\n\"\200" }
        record r { a: v[2] = {{x = 2}}  b: u64 = 18446744073709551615  c: f64 = nan
          d: f32 = -inf  e: enum { p, q, r } = r  f: char[3][2] = {"a\0b"}  g: i64 = -9223372036854775808
          h: u8[2][2] = {{1}, {2, 3}}  i: bool[2] = {true} j: v }]]
      local r = parse(src).r
      local r2 = parse(r.source).r
      assert.equal(r.source, r2.source)
      assert.is_nil(schema.diff(r, r2))
      assert.equal(r.format, r2.format)
      assert.equal(r.encode{}, r2.encode{})
      for i, f in ipairs(r.fields) do
        assert.equal(f.type, r2.fields[i].type)
        assert.equal(f.offset, r2.fields[i].offset)
      end
      assert.same(r.by_name.e.members, r2.by_name.e.members)
    end)

    it("does not depend on white space, comments or separators", function()
      local a = rec_of("record r { a: u8 = 0x10, b: f64 = 1e0 }")
      local b = rec_of("record r {\n a : u8 = 16 -- x\n b:f64=1.0; }")
      assert.equal(a.source, b.source)
    end)
  end)

  describe("diff", function()
    local base = rec_of("record r { a: u8  b: f64  c: char[4] }")

    it("says nil for the same layout, whatever the defaults or the record's name", function()
      assert.is_nil(schema.diff(base, rec_of("record r { a: u8, b: f64, c: char[4] }")))
      assert.is_nil(schema.diff(base, rec_of("record s { a: u8 = 3  b: f64 = 2  c: char[4] = \"x\" }")))
    end)

    it("says 'appends' when fields are only added at the end", function()
      assert.equal("appends", schema.diff(base, rec_of("record r { a: u8  b: f64  c: char[4]  d: u8 }")))
    end)

    it("names the first difference", function()
      assert.equal("field 2 'b': type f64 became f32",
                   schema.diff(base, rec_of("record r { a: u8  b: f32  c: char[4] }")))
      assert.equal("field 2 'b' became 'x'",
                   schema.diff(base, rec_of("record r { a: u8  x: f64  c: char[4] }")))
      assert.equal("field 3 'c' was removed", schema.diff(base, rec_of("record r { a: u8  b: f64 }")))
      assert.equal("field 1 'a' became 'z'",
                   schema.diff(base, rec_of("record r { z: u8 a: u8  b: f64  c: char[4] }")))
      assert.equal("field 1 'a': type enum { x, y } became enum { x, y, z }",
                   schema.diff(rec_of("record r { a: enum { x, y } }"),
                               rec_of("record r { a: enum { x, y, z } }")))
    end)

    it("looks inside embedded records", function()
      local old = parse("record v { x: f32 } record r { p: v[2] }").r
      assert.equal("field 1 'p': record v changed: field 1 'x': type f32 became f64",
                   schema.diff(old, parse("record v { x: f64 } record r { p: v[2] }").r))
      assert.equal("field 1 'p': record v changed: fields were added",
                   schema.diff(old, parse("record v { x: f32 y: u8 } record r { p: v[2] }").r))
      assert.equal("field 1 'p': type v[2] became w[2]",
                   schema.diff(old, parse("record w { x: f32 } record r { p: w[2] }").r))
    end)

    it("raises for a non-description, naming the function", function()
      assert.matches("bad argument #2 to 'mappedpages.schema.diff'", raised(schema.diff, base, 1))
      assert.matches("bad argument #1 to 'mappedpages.schema.diff'", raised(schema.diff, {}, base))
    end)
  end)
end)
