--- mappedpages.schema: fixed-size record layouts from a small language.
--
--     local schema = require "mappedpages.schema"   -- or mp.schema
--     local s = assert(schema.parse [[
--       record vec3 { x: f32  y: f32  z: f32 }
--       record player {
--         id: u64
--         name: char[24]
--         pos: vec3                -- a record declared earlier, embedded
--         score: f64 = 0.5         -- a default
--         tags: u8[4]
--         alive: bool = true
--         class: enum { warrior, mage, rogue } = mage
--       }
--     ]])
--     local player = s.player                 -- or s:record "player"
--     print(player.size, player.format)       --> 51  <I8 c24 fff d BBBB B B
--     local bytes = player.encode{id = 7, name = "ada"}   -- #bytes == 58
--     print(player.decode(bytes).class)       --> mage
--
-- The language (docs/SCHEMA.md has the grammar, every type and every
-- message): records of fields `name: type [= default]` separated by white
-- space, `;` or `,`; comments from `--` to the end of the line. Types:
-- u8 u16 u32 u64 i8 i16 i32 i64 f32 f64 bool, char[N], enum { names },
-- a record declared earlier, and T[N] of any of them; `u8[4][3]` is three
-- `u8[4]`s (brackets apply left to right). Layout: packed, little-endian,
-- in declaration order. A default is written as the Lua value it stands
-- for: numbers, true/false, "strings" with Lua's escapes, enum member
-- names, {a, b} for an array and {x = 1, y = 2} for an embedded record,
-- nested for nested types (`{{1, 2}, {3, 4}}`, `{{x = 1}, {y = 2}}`).
--
-- Interface:
--
--     schema.parse(src) -> s | nil, msg   -- msg: "line 3, column 12: ..."
--     s:record(name) -> rec | nil, msg    -- always works
--     s.<name> -> rec                     -- sugar, for every name but
--                                         -- "record" and "records"
--     s.records                           -- {rec, ...} in declaration order
--     schema.diff(old, new) -> nil | "appends" | msg
--
-- A record description `rec` (shared by every parse of the same source:
-- read it, never change it):
--
--     rec.name  rec.size  rec.format  rec.source
--     rec.fields = {f, ...}   rec.by_name[fname] = f
--     rec.encode(t) -> string             rec.decode(s) -> t
--     rec.flatten(t) -> v1, ..., vN       rec.build(v1, ..., vN) -> t
--
-- encode is string.pack(rec.format, rec.flatten(t)) and decode is
-- rec.build(string.unpack(rec.format, s)), so view:pack(off, rec.format,
-- rec.flatten(t)) and rec.build(view:unpack(off, rec.format)) do the same
-- in a page. A field `f`: f.name, f.type (its canonical text: "u8[4]",
-- "vec3", "enum { warrior, mage, rogue }"), f.kind ("u8" ... "bool",
-- "char", "enum", "array", "record"), f.offset, f.size, f.count (items of
-- an array, else 1), f.default (the value the field takes when missing:
-- its declared default, else zero, "" or false, the first member of an
-- enum, an embedded record's own defaults; arrays and records complete),
-- f.members (an enum's names), f.record (the description of an embedded
-- record, or of the records an array holds), f.format (the pack format
-- of the field alone, at f.offset), f.flatten(v) -> ... and
-- f.build(...) -> v.
--
-- Values. flatten (and so encode) raises, with the field's path and the
-- value ("player.tags[2]: 300 is out of range for u8 (0 to 255)"), for an
-- integer out of range, a float with a fraction for an integer, a string
-- longer than its char[N], a name that is no member of its enum, a value
-- of the wrong type, a table for a record or an array holding a key that
-- is no field or item ("player.tags[5]: too many items for u8[4]"). An
-- integral float is taken for an integer field; f32 and f64 take any
-- number, NaN and infinities, but a finite number beyond f32's range
-- raises for f32. Anything missing - a field, a field of an embedded
-- record, an item of an array - takes its value in the defaults. Decoding
-- gives integers for integer fields, floats for floats, char[N] strings
-- without their trailing zero bytes, booleans (any non-zero byte is
-- true), member names (an index past the members comes back as the
-- integer), and fresh tables.
--
-- u64 holds 64-bit patterns the way Lua's integers hold them (as
-- string.pack("I8") and math.ult do): 0 to math.maxinteger are
-- themselves, and 2^63 to 2^64 - 1 are the negative integers (-1 is
-- 2^64 - 1). So every value a u64 can store decodes and encodes back
-- unchanged; an integral float up to 2^64 is taken and stored as its
-- pattern. In the source a u64 default is written as the unsigned number
-- (0 to 18446744073709551615, or hex); a negative one is out of range.
--
-- rec.source is a canonical schema declaring rec and the records it
-- embeds (first), one record per line, no comments: equal layouts with
-- equal defaults give equal sources, and schema.parse(rec.source) gives
-- rec again. schema.diff compares layouts: field names, types (an
-- embedded record's name and its own fields) and order; defaults and the
-- record's own name are not layout, so a changed default is no
-- difference (compare `.source` to see one). It returns nil for the same
-- layout, "appends" when new is old plus fields at the end, or a message
-- naming the first difference ("field 3 'score': type f64 became f32").
--
-- s:record(name) is the way that always works; the sugar s.<name> is set
-- for each record except those named "record" and "records", which would
-- hide the method and the list. Parses are cached by source (weakly):
-- parsing a source again is a table lookup.
-- @module mappedpages.schema

local lpeg = require "lpeg"
local codegen = require "mappedpages.schema_codegen"

local error, getmetatable, ipairs, load, pcall, setmetatable, tonumber, tostring, type =
      error, getmetatable, ipairs, load, pcall, setmetatable, tonumber, tostring, type
local mtype, tointeger, maxinteger, mininteger, huge =
      math.type, math.tointeger, math.maxinteger, math.mininteger, math.huge
local format, sbyte, smatch, spack, srep, ssub =
      string.format, string.byte, string.match, string.pack, string.rep, string.sub
local min = math.min
local concat = table.concat
local P, R, S, C, Cc, Cg, Cmt, Cp, Ct, V =
      lpeg.P, lpeg.R, lpeg.S, lpeg.C, lpeg.Cc, lpeg.Cg, lpeg.Cmt, lpeg.Cp, lpeg.Ct, lpeg.V
local problem, describe, flat = codegen.problem, codegen.describe, codegen.flat

local M = {}

--- A record holds at most this many values (numbers, strings, booleans):
-- generated code unrolls every one, and string.pack takes them as
-- arguments. Use char[N] for long runs of bytes.
local MAX_VALUES = 8192
--- A record (or an array, or char[N]) is at most this many bytes.
local MAX_SIZE = 2 ^ 31 - 1
--- An enum has at most this many members (a u16 holds their indices).
local MAX_MEMBERS = 65536

-- ---- the grammar ---------------------------------------------------------

-- A syntax or semantic error carries its position; parse turns it into
-- "line L, column C: msg". Raised from inside lpeg.match (Cmt) as well.
local Fail = {}

local function fail(pos, msg) error(setmetatable({pos = pos, msg = msg}, Fail), 0) end

--- The token at pos, for "near ...".
local function near(src, pos)
  if pos > #src then return "end of input" end
  local tok = smatch(src, "^[%w_.]+", pos) or smatch(src, '^"[^"\n]*"?', pos)
              or ssub(src, pos, pos)
  return "'" .. tok .. "'"
end

local grammar
do
  local space = (S" \t\r\n\f\v" + P"--" * (1 - P"\n") ^ 0) ^ 0
  local idrest = R("az", "AZ", "09", "__")
  local ident = R("az", "AZ", "__") * idrest ^ 0
  local digit = R"09"
  local function tok(s) return P(s) * space end
  local function kw(w) return P(w) * -idrest * space end
  -- Matching fails with "expected <what> near ..." when p does not match.
  local function expect(p, what)
    return p + Cmt(Cc(what), function(src, pos, w)
      fail(pos, "expected " .. w .. " near " .. near(src, pos))
    end)
  end
  local listsep = tok"," + tok";"
  local fieldsep = S";," * space

  local exponent = S"eE" * S"+-" ^ -1 * digit ^ 1
  local numeral = (P"-inf" + P"-" ^ -1 * (P"0" * S"xX" * R("09", "af", "AF") ^ 1
                   + (digit ^ 1 * (P"." * digit ^ 0) ^ -1 + P"." * digit ^ 1)
                     * exponent ^ -1)) * -idrest
  local escape = P"\\" * (P"z" * S" \t\r\n\f\v" ^ 0 + P"\r\n" + P"\n\r" + P(1))
  local str = P'"' * (escape + (1 - S'"\\\n\r')) ^ 0
              * expect(P'"', "'\"' to close the string")
  local length = expect(C(digit ^ 1) * -idrest, "a length (a positive integer)")

  grammar = P{ "schema",
    schema = space * Ct(expect(V"record", "'record'") * V"record" ^ 0)
             * expect(-P(1), "'record'"),
    record = Ct(kw"record" * Cg(Cp(), "pos")
                * Cg(expect(C(ident), "a record name"), "name") * space
                * expect(tok"{", "'{'") * fieldsep ^ 0
                * Cg(Ct((V"field" * fieldsep ^ 0) ^ 0), "fields")
                * expect(tok"}", "a field name or '}'")),
    field = Ct(Cg(Cp(), "pos") * Cg(C(ident), "name") * space
               * expect(tok":", "':' after the field name")
               * Cg(expect(V"type", "a type"), "type")
               * (tok"=" * Cg(expect(V"lit", "a default value"), "default")) ^ -1),
    type = Ct(Cg(V"base", "base") * Cg(Ct(V"dim" ^ 0), "dims")),
    dim = Ct(tok"[" * Cg(Cp(), "pos") * Cg(length, "n") * space * expect(tok"]", "']'")),
    base = Ct(Cg(Cc"enum", "k") * Cg(Cp(), "pos") * kw"enum"
              * expect(tok"{", "'{' after enum") * Cg(Ct(V"members"), "members"))
         + Ct(Cg(Cc"char", "k") * Cg(Cp(), "pos") * kw"char"
              * expect(tok"[", "'[' after char (char[N])") * Cg(Cp(), "npos")
              * Cg(length, "n") * space * expect(tok"]", "']'"))
         + Ct(Cg(Cc"name", "k") * Cg(Cp(), "pos") * Cg(C(ident), "name") * space),
    -- Loops, not recursion: LPeg's backtrack stack is 400 deep.
    members = tok"}"
            + expect(V"member", "an enum member name or '}'")
              * (listsep * (#P"}" + expect(V"member", "an enum member name or '}'"))) ^ 0
              * expect(tok"}", "',' or '}'"),
    member = Ct(Cg(Cp(), "pos") * Cg(C(ident), "name") * space),
    lit = Ct(Cg(Cp(), "pos") * (
            Cg(Cc"num", "k") * Cg(C(numeral), "v") * space
          + Cg(Cc"str", "k") * Cg(C(str), "v") * space
          + Cg(Cc"name", "k") * Cg(C(ident), "v") * space
          + Cg(Cc"list", "k") * tok"{" * Cg(Ct(V"items"), "items"))),
    items = tok"}"
          + expect(V"item", "a value or '}'")
            * (listsep * (#P"}" + expect(V"item", "a value or '}'"))) ^ 0
            * expect(tok"}", "',' or '}'"),
    item = Ct(Cg(Cp(), "pos") * Cg(C(ident), "key") * space * tok"=" * -P"="
              * Cg(expect(V"lit", "a value"), "value"))
         + Ct(Cg(Cp(), "pos") * Cg(V"lit", "value")),
  }
end

-- ---- types ---------------------------------------------------------------

local function int_type(text, size, signed, fmt)
  local T = {kind = "int", text = text, size = size, fmt = fmt, signed = signed,
             leaves = 1}
  if size == 8 then
    T.min, T.max = mininteger, maxinteger
    T.range = signed and "-2^63 to 2^63 - 1" or "0 to 2^64 - 1"
  elseif signed then
    T.min, T.max = -(1 << (8 * size - 1)), (1 << (8 * size - 1)) - 1
  else
    T.min, T.max = 0, (1 << (8 * size)) - 1
  end
  T.range = T.range or format("%d to %d", T.min, T.max)
  return T
end

local BUILTIN = {
  u8 = int_type("u8", 1, false, "B"),   i8 = int_type("i8", 1, true, "b"),
  u16 = int_type("u16", 2, false, "I2"), i16 = int_type("i16", 2, true, "i2"),
  u32 = int_type("u32", 4, false, "I4"), i32 = int_type("i32", 4, true, "i4"),
  u64 = int_type("u64", 8, false, "I8"), i64 = int_type("i64", 8, true, "i8"),
  f32 = {kind = "float", text = "f32", size = 4, fmt = "f", leaves = 1},
  f64 = {kind = "float", text = "f64", size = 8, fmt = "d", leaves = 1},
  bool = {kind = "bool", text = "bool", size = 1, fmt = "B", leaves = 1},
}
-- Names no record may take.
local RESERVED = {char = true, enum = true}

--- The value a type takes when nothing says otherwise.
local function zero(T)
  local kind = T.kind
  if kind == "int" then return 0
  elseif kind == "float" then return 0.0
  elseif kind == "bool" then return false
  elseif kind == "char" then return ""
  elseif kind == "enum" then return T.members[1]
  elseif kind == "record" then return T.rec.fill
  end
  local t, z = {}, zero(T.elem)
  for i = 1, T.n do t[i] = z end
  return t
end

-- ---- defaults ------------------------------------------------------------

--- A literal as source text, for messages.
local function render(lit)
  if lit.k ~= "list" then return lit.v end
  local parts = {}
  for i, item in ipairs(lit.items) do
    parts[i] = (item.key and item.key .. " = " or "") .. render(item.value)
  end
  return "{" .. concat(parts, ", ") .. "}"
end

--- The integer an integer literal stands for: a Lua integer, with
-- `big` true when it is 2^63 .. 2^64 - 1 (then the integer is its
-- pattern); nil when it is out of every integer's range.
local function int_literal(text)
  local neg, body = smatch(text, "^(%-?)(.*)$")
  local hex = smatch(body, "^0[xX]0*(%x*)$")
  local m   -- the magnitude's 64-bit pattern
  if hex then
    if #hex > 16 then return nil end
    m = tonumber("0x" .. (hex == "" and "0" or hex))
  elseif smatch(body, "^%d+$") then
    local digits = smatch(body, "^0*(%d*)$")
    if #digits > 20 or (#digits == 20 and digits > "18446744073709551615") then
      return nil
    end
    m = 0
    for i = 1, #digits do m = m * 10 + (sbyte(digits, i) - 48) end   -- wraps
  else
    return nil, "float"
  end
  if neg == "-" then
    if m < 0 and m ~= mininteger then return nil end   -- below -2^63
    return -m, false
  end
  return m, m < 0
end

local function default_error(lit, path, why)
  fail(lit.pos, format("default %s of %s %s", render(lit), path, why))
end

local check_default

--- A list literal's positional items, for an array of T.elem.
local function array_default(T, lit, path)
  if lit.k ~= "list" then default_error(lit, path, "is not a list (" .. T.text .. ")") end
  local items, v = lit.items, {}
  for i, item in ipairs(items) do
    if i > T.n then
      fail(item.pos, format("default %s of %s has too many items for %s (%d)",
                            render(lit), path, T.text, #items))
    end
    if item.key then
      fail(item.pos, format("default %s of %s: item %d is named (%s =), "
                            .. "but %s is an array", render(lit), path, i, item.key, T.text))
    end
    v[i] = check_default(T.elem, item.value, format("%s[%d]", path, i))
  end
  local z = zero(T.elem)
  for i = #items + 1, T.n do v[i] = z end
  return v
end

--- A list literal's named items, for an embedded record.
local function record_default(T, lit, path)
  if lit.k ~= "list" then
    default_error(lit, path, "is not a list of named fields (" .. T.text .. ")")
  end
  local rec, v, seen = T.rec, {}, {}
  for _, item in ipairs(lit.items) do
    if not item.key then
      fail(item.pos, format("default %s of %s: item %s has no name (%s is a record: "
                            .. "{field = value, ...})", render(lit), path,
                            render(item.value), T.text))
    end
    local f = rec.by_name[item.key]
    if not f then
      fail(item.pos, format("default %s of %s: %s has no field '%s'", render(lit),
                            path, T.text, item.key))
    end
    if seen[item.key] then
      fail(item.pos, format("default %s of %s: field '%s' is given twice", render(lit),
                            path, item.key))
    end
    seen[item.key] = true
    v[item.key] = check_default(f.t, item.value, path .. "." .. item.key)
  end
  for _, f in ipairs(rec.fields) do
    if v[f.name] == nil then v[f.name] = f.default end
  end
  return v
end

--- The value of the default `lit` for a field of type T at `path`, or
-- fail at the literal.
function check_default(T, lit, path)
  local kind, k, v = T.kind, lit.k, lit.v
  if kind == "array" then return array_default(T, lit, path) end
  if kind == "record" then return record_default(T, lit, path) end
  local value
  if kind == "int" then
    if k ~= "num" then default_error(lit, path, "is not an integer (" .. T.text .. ")") end
    local i, big = int_literal(v)
    if big == "float" then   -- problem() below judges it as flatten would
      value = tonumber(v)
      if value == nil then default_error(lit, path, "is not an integer (" .. T.text .. ")") end
      if T.text == "u64" and value < 0 then   -- no negative numbers in the source
        default_error(lit, path, "is out of range for u64 (" .. T.range .. ")")
      end
    elseif i == nil then
      default_error(lit, path, "is out of range for " .. T.text .. " (" .. T.range .. ")")
    elseif big and T.text ~= "u64" or (T.text == "u64" and not big and i < 0) then
      default_error(lit, path, "is out of range for " .. T.text .. " (" .. T.range .. ")")
    else
      value = i
    end
  elseif kind == "float" then
    if k == "num" then
      value = v == "-inf" and -huge or tonumber(v)
      if mtype(value) == "integer" then value = value + 0.0 end   -- keeps -0.0
    elseif k == "name" and (v == "inf" or v == "nan") then
      value = v == "inf" and huge or 0.0 / 0.0
    else
      default_error(lit, path, "is not a number (" .. T.text .. ")")
    end
  elseif kind == "bool" then
    if k == "name" and (v == "true" or v == "false") then
      value = v == "true"
    else
      default_error(lit, path, "is not a boolean (true or false)")
    end
  elseif kind == "char" then
    if k ~= "str" then default_error(lit, path, "is not a string (" .. T.text .. ")") end
    -- The grammar let through a string literal and nothing else: Lua
    -- itself reads its escapes.
    local chunk, msg = load("return " .. v, "=string", "t", {})
    if not chunk then
      default_error(lit, path, "is not a valid string: "
                    .. (smatch(msg, "^string:%d+: (.-) near") or msg))
    end
    value = chunk()
    local z = smatch(value, "^(.-)%z*$")   -- as decode gives it back
    if #value <= T.n then value = z end
  elseif kind == "enum" then
    if k ~= "name" then
      default_error(lit, path, "is not a member name of " .. T.text)
    end
    value = v
  end
  local packed, why = problem(T, value)
  if packed == nil then default_error(lit, path, why) end
  if kind == "int" then return packed end
  return value
end

-- ---- canonical source ----------------------------------------------------

--- A string as a schema literal: printable ASCII as it is, the rest
-- escaped.
local function quote(s)
  return '"' .. s:gsub('[%c"\\\128-\255]', function(c)
    if c == "\n" then return "\\n" elseif c == "\t" then return "\\t"
    elseif c == '"' then return '\\"' elseif c == "\\" then return "\\\\" end
    return format("\\%03d", sbyte(c))
  end) .. '"'
end

--- A value of type T as a schema literal.
local function value_text(T, v)
  local kind = T.kind
  if kind == "int" then
    if T.text == "u64" then return format("%u", v) end
    return format("%d", v)
  elseif kind == "float" then
    if v ~= v then return "nan" end
    return describe(mtype(v) == "integer" and v + 0.0 or v)
  elseif kind == "bool" or kind == "enum" then return tostring(v)
  elseif kind == "char" then return quote(v)
  elseif kind == "array" then
    local parts = {}
    for i = 1, T.n do parts[i] = value_text(T.elem, v[i]) end
    return "{" .. concat(parts, ", ") .. "}"
  end
  local parts = {}
  for i, f in ipairs(T.rec.fields) do parts[i] = f.name .. " = " .. value_text(f.t, v[f.name]) end
  return "{" .. concat(parts, ", ") .. "}"
end

--- Do two values of type T hold the same bytes?
local function same_value(T, a, b)
  local x, y = flat(T, a, {}), flat(T, b, {})
  for i = 1, #x do
    local p, q = x[i], y[i]
    if mtype(p) == "float" or mtype(q) == "float" then
      if spack("<d", p) ~= spack("<d", q) then return false end
    elseif p ~= q then
      return false
    end
  end
  return true
end

--- The records rec embeds, depth first, then rec: each once.
local function dependencies(rec, out, seen)
  if seen[rec] then return out end
  seen[rec] = true
  for _, f in ipairs(rec.fields) do
    if f.record then dependencies(f.record, out, seen) end
  end
  out[#out + 1] = rec
  return out
end

local function record_line(rec)
  local parts = {}
  for i, f in ipairs(rec.fields) do
    local s = f.name .. ": " .. f.type
    if not same_value(f.t, f.default, zero(f.t)) then
      s = s .. " = " .. value_text(f.t, f.default)
    end
    parts[i] = s
  end
  return "record " .. rec.name .. " { " .. concat(parts, "; ") .. " }\n"
end

-- ---- records -------------------------------------------------------------

local Record_mt = {__name = "mappedpages.schema.Record"}
function Record_mt.__tostring(rec)
  return format("mappedpages.schema record %s: %d bytes, %d fields", rec.name,
                rec.size, #rec.fields)
end

local function linecol(src, pos)
  local line, start = 1, 1
  for nl in src:gmatch("()\n") do
    if nl >= pos then break end
    line, start = line + 1, nl + 1
  end
  return line, pos - start + 1
end

local function where(src, pos)
  local line, col = linecol(src, pos)
  return format("line %d, column %d", line, col)
end

--- The length in `[N]` or `char[N]`, at pos.
local function check_length(pos, text, what)
  local n = tointeger(tonumber(text))
  if n == 0 then fail(pos, "zero-length " .. what) end
  if n == nil or n > MAX_SIZE then
    fail(pos, format("%s is too long (at most %d)", what, MAX_SIZE))
  end
  return n
end

local function new_type(T, pos)
  if T.size > MAX_SIZE then
    fail(pos, format("type %s is too large (%.0f bytes; at most %d)", T.text, T.size, MAX_SIZE))
  end
  if T.leaves > MAX_VALUES then
    fail(pos, format("type %s holds too many values (%d; at most %d: use char[N] "
                     .. "for bytes)", T.text, T.leaves, MAX_VALUES))
  end
  return T
end

local function enum_type(src, b)
  local members, index, names = {}, {}, {}
  if #b.members == 0 then fail(b.pos, "enum { } has no members") end
  for i, m in ipairs(b.members) do
    if index[m.name] then
      fail(m.pos, format("duplicate enum member '%s' (first at %s)", m.name,
                         where(src, b.members[index[m.name] + 1].pos)))
    end
    if i > MAX_MEMBERS then
      fail(m.pos, format("enum has more than %d members", MAX_MEMBERS))
    end
    members[i], index[m.name], names[i - 1] = m.name, i - 1, m.name
  end
  local size = #members <= 256 and 1 or 2
  return {kind = "enum", text = "enum { " .. concat(members, ", ") .. " }",
          size = size, fmt = size == 1 and "B" or "I2", members = members,
          index = index, names = names, leaves = 1}
end

--- The type of a field's type syntax.
local function resolve(src, tast, ctx, recname)
  local b, T = tast.base
  if b.k == "name" then
    T = BUILTIN[b.name]
    if not T then
      local rec = ctx.byname[b.name]
      if rec then
        T = rec.T
      elseif b.name == recname then
        fail(b.pos, format("record '%s' cannot contain itself", recname))
      elseif ctx.first[b.name] then
        fail(b.pos, format("record '%s' is used before it is declared (at %s)",
                           b.name, where(src, ctx.first[b.name].pos)))
      else
        fail(b.pos, format("expected a type near '%s' (unknown type: no built-in "
                           .. "type or record declared before has that name)", b.name))
      end
    end
  elseif b.k == "char" then
    local n = check_length(b.npos, b.n, "string char[" .. b.n .. "]")
    T = new_type({kind = "char", text = format("char[%d]", n), size = n,
                  fmt = "c" .. n, n = n, leaves = 1}, b.pos)
  else
    T = enum_type(src, b)
  end
  for _, d in ipairs(tast.dims) do
    local n = check_length(d.pos, d.n, format("array %s[%s]", T.text, d.n))
    T = new_type({kind = "array", text = format("%s[%d]", T.text, n), size = T.size * n,
                  fmt = srep(T.fmt, n), elem = T, n = n, leaves = T.leaves * n}, d.pos)
  end
  return T
end

--- The innermost type of an array (T itself for others).
local function base_of(T)
  while T.kind == "array" do T = T.elem end
  return T
end

local function build_record(src, r, ctx)
  local rec = setmetatable({name = r.name, fields = {}, by_name = {}}, Record_mt)
  local offset, fmts, leaves, fill = 0, {}, 0, {}
  local seen = {}
  for i, fa in ipairs(r.fields) do
    if seen[fa.name] then
      fail(fa.pos, format("duplicate field '%s' in record '%s' (first at %s)", fa.name,
                          r.name, where(src, seen[fa.name])))
    end
    seen[fa.name] = fa.pos
    local T = resolve(src, fa.type, ctx, r.name)
    local path = r.name .. "." .. fa.name
    local default = fa.default and check_default(T, fa.default, path) or zero(T)
    local B = base_of(T)
    local f = {name = fa.name, type = T.text, t = T, offset = offset, size = T.size,
               count = T.kind == "array" and T.n or 1, default = default,
               kind = (T.kind == "int" or T.kind == "float" or T.kind == "bool")
                      and T.text or T.kind,
               members = B.kind == "enum" and B.members or nil,
               record = B.kind == "record" and B.rec or nil,
               format = "<" .. T.fmt}
    rec.fields[i], rec.by_name[fa.name] = f, f
    fmts[i], fill[fa.name] = T.fmt, default
    offset, leaves = offset + T.size, leaves + T.leaves
  end
  if #rec.fields == 0 then fail(r.pos, format("record '%s' has no fields", r.name)) end
  rec.size, rec.fill = offset, fill
  rec.format = "<" .. concat(fmts, " ")
  rec.T = new_type({kind = "record", text = r.name, size = offset, fmt = concat(fmts),
                    rec = rec, leaves = leaves}, r.pos)
  local lines = {}
  for i, dep in ipairs(dependencies(rec, {}, {})) do
    lines[i] = dep == rec and record_line(rec) or dep.line
  end
  rec.line = record_line(rec)
  rec.source = concat(lines)
  codegen.compile(rec)
  return rec
end

-- ---- schemas ---------------------------------------------------------------

local cache = setmetatable({}, {__mode = "v"})     -- source -> schema
local byname_of = setmetatable({}, {__mode = "k"}) -- schema -> {name = rec}

local Schema = {}
local Schema_mt = {__index = Schema, __name = "mappedpages.schema.Schema"}
function Schema_mt.__tostring(s)
  local names = {}
  for i, rec in ipairs(s.records) do names[i] = rec.name end
  return format("mappedpages.schema: %d record%s (%s)", #names,
                #names == 1 and "" or "s", concat(names, ", "))
end

--- The description of the record `name`, or nil and a message.
function Schema:record(name)
  if type(name) ~= "string" then
    error(format("bad argument #1 to 'record' (string expected, got %s)", type(name)), 2)
  end
  local rec = byname_of[self][name]
  if rec then return rec end
  local names = {}
  for i, r in ipairs(self.records) do names[i] = r.name end
  return nil, format("no record '%s' in the schema (it has: %s)", name, concat(names, ", "))
end


local function analyze(src, ast)
  local ctx = {byname = {}, first = {}}
  for _, r in ipairs(ast) do ctx.first[r.name] = ctx.first[r.name] or r end
  local records = {}
  for i, r in ipairs(ast) do
    if BUILTIN[r.name] or RESERVED[r.name] then
      fail(r.pos, format("record name '%s' is a built-in type", r.name))
    end
    if ctx.byname[r.name] then
      fail(r.pos, format("duplicate record '%s' (first at %s)", r.name,
                         where(src, ctx.first[r.name].pos)))
    end
    local rec = build_record(src, r, ctx)
    records[i], ctx.byname[r.name] = rec, rec
  end
  local s = setmetatable({records = records}, Schema_mt)
  byname_of[s] = ctx.byname
  for _, rec in ipairs(records) do
    if rec.name ~= "record" and rec.name ~= "records" then
      s[rec.name] = rec
    end
  end
  return s
end

--- Parse a schema source.
-- @tparam string src
-- @return a schema, or nil and "line L, column C: message"
function M.parse(src)
  if type(src) ~= "string" then
    error(format("bad argument #1 to 'mappedpages.schema.parse' (string expected, got %s)",
                 type(src)), 2)
  end
  local s = cache[src]
  if s then return s end
  local ok, res = pcall(function() return analyze(src, grammar:match(src)) end)
  if not ok then
    if getmetatable(res) ~= Fail then error(res, 0) end
    return nil, where(src, res.pos) .. ": " .. res.msg
  end
  cache[src] = res
  return res
end

-- ---- diff ------------------------------------------------------------------

local function is_record(rec)
  return type(rec) == "table" and type(rec.fields) == "table" and type(rec.name) == "string"
end

local diff

--- How the layouts of fields a and b differ (nil: the same).
local function field_diff(i, a, b)
  if a.name ~= b.name then
    return format("field %d '%s' became '%s'", i, a.name, b.name)
  end
  if a.type ~= b.type then
    return format("field %d '%s': type %s became %s", i, a.name, a.type, b.type)
  end
  if a.record and b.record then
    local d = diff(a.record, b.record)
    if d == "appends" then d = "fields were added" end
    if d then return format("field %d '%s': record %s changed: %s", i, a.name, a.record.name, d) end
  end
  return nil
end

--- Compare two record descriptions' layouts.
-- @return nil (the same), "appends" (new adds fields at the end) or a
-- message naming the first difference
function diff(old, new)
  local fo, fn = old.fields, new.fields
  for i = 1, min(#fo, #fn) do
    local d = field_diff(i, fo[i], fn[i])
    if d then return d end
  end
  if #fn < #fo then
    return format("field %d '%s' was removed", #fn + 1, fo[#fn + 1].name)
  end
  if #fn > #fo then return "appends" end
  return nil
end

function M.diff(old, new)
  if not is_record(old) then
    error("bad argument #1 to 'mappedpages.schema.diff' (record description expected, got "
          .. type(old) .. ")", 2)
  end
  if not is_record(new) then
    error("bad argument #2 to 'mappedpages.schema.diff' (record description expected, got "
          .. type(new) .. ")", 2)
  end
  return diff(old, new)
end

return M
