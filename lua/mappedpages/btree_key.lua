--- mappedpages.btree_key: an order-preserving encoding of tuples.
--
--     local key, unkey = btree.key, btree.unkey      -- (this module's two functions)
--     key(1) < key(1.5) < key(2)                     -- as byte strings
--     key("a", 2) < key("a", 10) < key("a\0") < key("b")
--     unkey(key(true, -3, "x\0y"))                   --> true, -3, "x\0y"
--
-- A B-tree orders its keys as bytes; `key(...)` turns a tuple of
-- booleans, numbers and strings into bytes that sort like the tuple:
-- element by element, a tuple that is a prefix of another first. Each
-- element is a type byte and a body, and no element's encoding is a prefix
-- of another's, so concatenating them is the tuple's encoding:
--
--     0x10                 false
--     0x11                 true
--     0x1F  8 bytes        a float below math.mininteger (-inf included):
--                          the bitwise complement of its IEEE 754 bits, big-endian
--     0x20  8 + 8 bytes    a number from math.mininteger to below 2^63: its
--                          integer part (toward zero) as a big-endian i64 with
--                          the sign bit flipped, then the rest (in (-1, 1), of
--                          the number's sign; 0 for an integer) as a double's
--                          bits made to sort as bytes (the sign bit flipped
--                          for a positive one, every bit for a negative one)
--     0x21  8 bytes        a float >= 2^63 (+inf included): its IEEE 754 bits
--     0x30  bytes 0x00     a string: each zero byte written 0x00 0xFF, ended by 0x00
--
-- So false < true < every number < every string; numbers sort by value,
-- integers and floats interleaved. Numbers compare as Lua compares them:
-- a float with an integer value is that integer (`key(2.0) == key(2)`,
-- `key(-0.0) == key(0)`, and unkey gives the integer back), as Lua's
-- tables treat such keys. NaN has no place in an order: key raises for it,
-- as for nil, tables and every other type. A string's escape keeps the
-- order of bytes: the terminator 0x00 0x00 and the next element's type
-- byte (below 0xFF) sort before an escaped zero, so "a" < "a\0" < "ab".
-- @module mappedpages.btree_key

local error, select, type = error, select, type
local mtype, floor, ceil = math.type, math.floor, math.ceil
local spack, sunpack, format, gsub, find, sub, byte =
      string.pack, string.unpack, string.format, string.gsub, string.find, string.sub, string.byte
local concat = table.concat

local M = {}

local SIGN = math.mininteger            -- 0x8000000000000000
local TWO63 = 2.0 ^ 63

local T_FALSE, T_TRUE, T_LOW, T_NUM, T_HIGH, T_STR = 0x10, 0x11, 0x1F, 0x20, 0x21, 0x30
local C_FALSE, C_TRUE, C_NUM, C_LOW, C_HIGH, C_STR =
      "\x10", "\x11", "\x20", "\x1F", "\x21", "\x30"

local function bits(f) return (sunpack("<i8", spack("<d", f))) end

-- A double's bits made to sort as unsigned bytes in the double's order.
local function sortable(f)
  local b = bits(f)
  if b >= 0 then return b ~ SIGN end
  return ~b
end

local ZERO_FRAC = spack(">i8", sortable(0.0))

local function number(fname, i, v)
  if mtype(v) == "integer" then
    return C_NUM .. spack(">i8", v ~ SIGN) .. ZERO_FRAC
  end
  if v ~= v then error(format("%s: argument #%d is NaN, which has no order", fname, i), 3) end
  if v >= TWO63 then return C_HIGH .. spack(">i8", bits(v)) end
  if v < -TWO63 then return C_LOW .. spack(">i8", ~bits(v)) end
  -- the integer part toward zero, and the rest, of the same sign: exact
  local int = v < 0 and ceil(v) or floor(v)
  local frac = v - int
  if frac == 0 then return C_NUM .. spack(">i8", int ~ SIGN) .. ZERO_FRAC end
  return C_NUM .. spack(">i8 >i8", int ~ SIGN, sortable(frac))
end

--- Encode the tuple of the arguments (booleans, numbers and strings).
-- Raises for any other type, nil and NaN. `key()` is "".
function M.key(...)
  local n = select("#", ...)
  if n == 1 then                       -- the common case, without a table
    local v = ...
    local t = type(v)
    if t == "string" then return C_STR .. gsub(v, "%z", "\0\xFF") .. "\0" end
    if t == "number" then return number("btree.key", 1, v) end
    if t == "boolean" then return v and C_TRUE or C_FALSE end
  end
  local parts = {}
  for i = 1, n do
    local v = select(i, ...)
    local t = type(v)
    if t == "string" then
      parts[i] = C_STR .. gsub(v, "%z", "\0\xFF") .. "\0"
    elseif t == "number" then
      parts[i] = number("btree.key", i, v)
    elseif t == "boolean" then
      parts[i] = v and C_TRUE or C_FALSE
    else
      error(format("btree.key: argument #%d must be a boolean, number or string (got %s)",
                   i, type(v)), 2)
    end
  end
  return concat(parts)
end

local function bad(s, pos, what)
  error(format("btree.unkey: %s at byte %d of a %d-byte key", what, pos, #s), 3)
end

--- Decode what `key` encoded: the tuple's elements, in order. Raises for
-- bytes that no `key` call makes.
function M.unkey(s)
  if type(s) ~= "string" then
    error(format("btree.unkey: key must be a string (got %s)", type(s)), 2)
  end
  local out, n, pos, len = {}, 0, 1, #s
  while pos <= len do
    local t = byte(s, pos)
    local v
    if t == T_STR then
      local parts, p = {}, pos + 1
      while true do
        local z = find(s, "\0", p, true)
        if not z then bad(s, pos, "an unterminated string") end
        parts[#parts + 1] = sub(s, p, z - 1)
        local nb = byte(s, z + 1)
        if nb == 0xFF then
          parts[#parts + 1] = "\0"
          p = z + 2
        else
          pos = z + 1
          break
        end
      end
      v = concat(parts)
    elseif t == T_NUM then
      if pos + 16 > len then bad(s, pos, "a truncated number") end
      local int, e = sunpack(">i8 >i8", s, pos + 1)
      int = int ~ SIGN
      local frac = sunpack("<d", spack("<i8", e < 0 and e ~ SIGN or ~e))
      if frac == 0 then
        if e ~= SIGN then bad(s, pos, "a malformed number") end
        v = int
      else
        if not (frac > -1 and frac < 1) or int >= (1 << 52) or int <= -(1 << 52)
           or (int > 0 and frac < 0) or (int < 0 and frac > 0) then
          bad(s, pos, "a malformed number")
        end
        v = int + frac
      end
      pos = pos + 17
    elseif t == T_HIGH or t == T_LOW then
      if pos + 8 > len then bad(s, pos, "a truncated number") end
      local b = sunpack(">i8", s, pos + 1)
      if t == T_LOW then b = ~b end
      v = sunpack("<d", spack("<i8", b))
      if v ~= v or (t == T_HIGH and v < TWO63) or (t == T_LOW and v >= -TWO63) then
        bad(s, pos, "a malformed number")
      end
      pos = pos + 9
    elseif t == T_TRUE then
      v, pos = true, pos + 1
    elseif t == T_FALSE then
      v, pos = false, pos + 1
    else
      bad(s, pos, format("an unknown type byte 0x%02X", t))
    end
    n = n + 1
    out[n] = v
  end
  return table.unpack(out, 1, n)
end

return M
