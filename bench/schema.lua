-- schema.lua -- mappedpages.schema's generated codecs: ns per call.
--
-- The `player` record of docs/SCHEMA.md (8 fields, 12 values: a u64, a
-- char[24], an embedded vec3, an f64, a u8[4], a bool, an enum): ns per
-- rec.flatten(t), rec.build(values), rec.encode(t), rec.decode(s), and for
-- reference string.pack/string.unpack of rec.format with the same values
-- (the floor the codecs add their checks and tables to), plus
-- view:pack/view:unpack at an offset in a page with flatten/build; then
-- the same four codecs for a flat record of 8 scalar fields. CPU time
-- (os.clock), best of ROUNDS rounds of N calls. Figures, not pass/fail.
--
-- Run from the repository root (or `make bench`):
--   LUA_PATH_5_4='lua/?.lua;lua/?/init.lua;;' LUA_CPATH_5_4='build/?.so;;' lua5.4 bench/schema.lua [N [ROUNDS]]

local mp = require "mappedpages"
local schema = require "mappedpages.schema"

local N = tonumber(arg and arg[1]) or 200000
local ROUNDS = tonumber(arg and arg[2]) or 5
local clock = os.clock
local spack, sunpack = string.pack, string.unpack

local s = assert(schema.parse [[
  record vec3 { x: f32  y: f32  z: f32 }
  record player {
    id: u64
    name: char[24]
    pos: vec3
    score: f64 = 0.5
    tags: u8[4]
    alive: bool = true
    class: enum { warrior, mage, rogue } = mage
  }
]])
local rec = s.player
local row = {id = 12345, name = "ada lovelace", pos = {x = 1.5, y = -2, z = 3},
             score = 99.25, tags = {1, 2, 3, 4}, alive = false, class = "rogue"}
local bytes = rec.encode(row)
local values = table.pack(rec.flatten(row))
local fmt, flatten, build, encode, decode = rec.format, rec.flatten, rec.build,
                                            rec.encode, rec.decode
local unpack = table.unpack

local tmp = os.tmpname()
local pager = assert(mp.create(tmp .. ".mp"))
local page = pager:page(assert(pager:alloc()))

local function best(fn)
  local b = math.huge
  for _ = 1, ROUNDS do
    local t0 = clock()
    fn()
    b = math.min(b, clock() - t0)
  end
  return b / N * 1e9
end

local cases = {
  {"rec.flatten(t)", function() for _ = 1, N do flatten(row) end end},
  {"rec.build(...)", function() for _ = 1, N do build(unpack(values, 1, values.n)) end end},
  {"rec.encode(t)", function() for _ = 1, N do encode(row) end end},
  {"rec.decode(s)", function() for _ = 1, N do decode(bytes) end end},
  {"string.pack(rec.format, <values>)",
   function() for _ = 1, N do spack(fmt, unpack(values, 1, values.n)) end end},
  {"string.unpack(rec.format, s)", function() for _ = 1, N do sunpack(fmt, bytes) end end},
  {"view:pack(64, rec.format, rec.flatten(t))",
   function() for _ = 1, N do page:pack(64, fmt, flatten(row)) end end},
  {"rec.build(view:unpack(64, rec.format))",
   function() for _ = 1, N do build(page:unpack(64, fmt)) end end},
}

print(("mappedpages.schema codecs, record player (%d bytes, %d values), best of %d x %d calls")
      :format(rec.size, values.n, ROUNDS, N))
print("")
print("| call | ns |")
print("|---|---|")
for _, c in ipairs(cases) do print(("| `%s` | %.0f |"):format(c[1], best(c[2]))) end

-- A flat record of 8 scalar fields (8 values, one table).
local flat = assert(schema.parse [[
  record flat { id: u32  n: i64  x: f64  y: f32  k: u16  ok: bool  tag: char[16]
                kind: enum { a, b, c } }
]]).flat
local frow = {id = 1, n = -5, x = 2.5, y = 0.5, k = 300, ok = true, tag = "hello", kind = "c"}
local fbytes = flat.encode(frow)
local fvalues = table.pack(flat.flatten(frow))
print("")
print(("record flat (%d bytes, 8 scalar fields)"):format(flat.size))
print("")
print("| call | ns |")
print("|---|---|")
for _, c in ipairs{
  {"flat.flatten(t)", function() for _ = 1, N do flat.flatten(frow) end end},
  {"flat.build(...)", function() for _ = 1, N do flat.build(unpack(fvalues, 1, fvalues.n)) end end},
  {"flat.encode(t)", function() for _ = 1, N do flat.encode(frow) end end},
  {"flat.decode(s)", function() for _ = 1, N do flat.decode(fbytes) end end},
  {"string.pack(flat.format, <values>)",
   function() for _ = 1, N do spack(flat.format, unpack(fvalues, 1, fvalues.n)) end end},
  {"string.unpack(flat.format, s)", function() for _ = 1, N do sunpack(flat.format, fbytes) end end},
} do print(("| `%s` | %.0f |"):format(c[1], best(c[2]))) end

pager:close()
os.remove(tmp .. ".mp")
os.remove(tmp)
