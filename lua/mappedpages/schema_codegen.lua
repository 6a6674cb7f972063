--- mappedpages.schema_codegen: the value side of mappedpages.schema.
--
-- mappedpages.schema parses the language and lays records out; this module
-- turns a laid-out record into Lua functions: it checks values against
-- their types and generates, with `load`, one specialized function per
-- record (and per top-level field) for each direction:
--
--     flatten(t) -> v1, ..., vN   the record's values in its format's order,
--                                 checked, missing ones filled
--     build(v1, ..., vN) -> t     the inverse, from string.unpack's results
--     encode(t) -> string         string.pack(format, flatten(t))
--     decode(s) -> t              build(string.unpack(format, s))
--
-- Generated code is straight-line: every field of every embedded record
-- and every item of every array is unrolled, its check inlined (a
-- math.type and a range comparison for an integer), and only a failing
-- value calls back into this module (`check`), which accepts what the
-- inline test left out (an integral float for an integer field, NaN and
-- infinities for f32) or raises with the field's path and the value.
-- Up to MAX_LOCALS values travel in locals; past that in a table.
--
-- Types (built by mappedpages.schema; read here, never changed):
--
--     {kind = "int",    text, size, fmt, signed, min, max}
--     {kind = "float",  text, size, fmt}                  -- f32: size 4
--     {kind = "bool",   text, size = 1, fmt = "B"}
--     {kind = "char",   text, size = n, fmt = "c<n>", n}
--     {kind = "enum",   text, size, fmt, members, index}  -- members[i + 1]
--                                                         -- is index i;
--                                                         -- index[name] = i
--     {kind = "array",  text, size, fmt, elem, n}
--     {kind = "record", text, size, fmt, rec}             -- rec.fields
--
-- and `leaves`, the number of values a type flattens to. A value "packed"
-- is what string.pack takes: a bool is 1 or 0, an enum its index.
-- @module mappedpages.schema_codegen

local assert, error, ipairs, load, next, select, setmetatable, tonumber, tostring, type =
      assert, error, ipairs, load, next, select, setmetatable, tonumber, tostring, type
local mtype, tointeger, floor, mininteger, huge =
      math.type, math.tointeger, math.floor, math.mininteger, math.huge
local format, sbyte, sfind, ssub, spack, sunpack =
      string.format, string.byte, string.find, string.sub, string.pack, string.unpack
local concat, unpack = table.concat, table.unpack

local M = {}

--- Largest finite f32, (2 - 2^-23) * 2^127.
local FLT_MAX = (2 - 2 ^ -23) * 2 ^ 127
M.FLT_MAX = FLT_MAX
--- Values past this many travel in a table instead of locals (a Lua
-- function has at most 200 locals and 255 registers).
local MAX_LOCALS = 100

--- A value as messages show it: integers exactly, floats in the fewest
-- digits that read back the same, strings quoted (cut after 40 bytes).
local function describe(v)
  local t = mtype(v)
  if t == "integer" then return format("%d", v) end
  if t == "float" then
    if v ~= v then return "nan" end
    if v == huge then return "inf" elseif v == -huge then return "-inf" end
    for digits = 15, 17 do
      local s = format("%." .. digits .. "g", v)
      if tonumber(s) == v then
        if not sfind(s, "[.eni]") then s = s .. ".0" end
        return s
      end
    end
  end
  if type(v) == "string" then
    if #v > 40 then return format("%q... (%d bytes)", ssub(v, 1, 40), #v) end
    return (format("%q", v):gsub("\\\n", "\\n"))
  end
  if type(v) == "table" then return "a table" end
  return tostring(v)
end
M.describe = describe

--- Check one value of a leaf type (int, float, bool, char, enum).
-- @return the packed value, or nil and a phrase saying what is wrong
-- (said of the value: "is out of range for u8 (0 to 255)")
local function problem(T, v)
  local kind = T.kind
  if kind == "int" then
    local i = v
    if mtype(v) == "float" then
      if v ~= floor(v) then return nil, "is not an integer (" .. T.text .. ")" end
      i = tointeger(v)
      if i == nil and T.text == "u64" and v >= 2.0 ^ 63 and v < 2.0 ^ 64 then
        i = tointeger(v - 2.0 ^ 63) + mininteger   -- the 64-bit pattern
      end
      if i == nil then
        return nil, "is out of range for " .. T.text .. " (" .. T.range .. ")"
      end
    elseif mtype(v) ~= "integer" then
      return nil, "is not an integer (" .. T.text .. ")"
    end
    if i < T.min or i > T.max then
      return nil, "is out of range for " .. T.text .. " (" .. T.range .. ")"
    end
    return i
  elseif kind == "float" then
    if not mtype(v) then return nil, "is not a number (" .. T.text .. ")" end
    if T.size == 4 and v == v and v ~= huge and v ~= -huge
       and (v > FLT_MAX or v < -FLT_MAX) then
      return nil, "is out of range for f32 (finite values up to 3.4028234663852886e+38)"
    end
    return v
  elseif kind == "bool" then
    if v == true then return 1 elseif v == false then return 0 end
    return nil, "is not a boolean"
  elseif kind == "char" then
    if type(v) ~= "string" then return nil, "is not a string (" .. T.text .. ")" end
    if #v > T.n then
      return nil, format("is too long for %s (%d bytes)", T.text, #v)
    end
    return v
  elseif kind == "enum" then
    local i = T.index[v]
    if i == nil then return nil, "is not a member of " .. T.text end
    return i
  end
  error("schema_codegen: not a leaf type: " .. tostring(kind))
end
M.problem = problem

-- Raisers, called by generated code only when a value fails its inline
-- test. Level 3: the caller of the generated function (1 is the raiser,
-- 2 the generated function).

--- The slow path of a leaf check: the packed value, or raise.
local function check(v, T, path)
  local packed, why = problem(T, v)
  if packed == nil then error(path .. ": " .. describe(v) .. " " .. why, 3) end
  return packed
end

local function notable(v, T, path)
  error(path .. ": " .. describe(v) .. " is not a table (" .. T.text .. ")", 3)
end

--- A key as a path shows it: `.name` or `[key]`.
local function keypath(k)
  if type(k) == "string" and sfind(k, "^[%a_][%w_]*$") then return "." .. k end
  return "[" .. describe(k) .. "]"
end

--- A table held more keys than the type's fields or items it had: find
-- one that is not a field (or item) of T and raise. (When there is none,
-- the table answered reads through __index: nothing to say.)
local function extra(t, T, path)
  if T.kind == "record" then
    local index = T.rec.by_name
    for k, v in next, t do
      if index[k] == nil then
        error(path .. keypath(k) .. ": unknown field of " .. T.text
              .. " (value " .. describe(v) .. ")", 3)
      end
    end
  else
    for k, v in next, t do
      local i = mtype(k) == "float" and tointeger(k) or k
      if mtype(i) ~= "integer" or i < 1 then
        error(path .. keypath(k) .. ": not an item of " .. T.text
              .. " (value " .. describe(v) .. ")", 3)
      elseif i > T.n then
        error(path .. keypath(k) .. ": too many items for " .. T.text
              .. " (value " .. describe(v) .. ")", 3)
      end
    end
  end
end

local function badarg(v, fname)
  error(format("bad argument #1 to '%s' (table expected, got %s)", fname,
               type(v)), 3)
end

local function baddecode(s, size, fname)
  if type(s) ~= "string" then
    error(format("bad argument #1 to '%s' (string expected, got %s)", fname,
                 type(s)), 3)
  end
  error(format("bad argument #1 to '%s' (string of %d bytes expected, got %d)",
               fname, size, #s), 3)
end

--- A char[N] value as it comes back: without its trailing zero bytes.
local function strip(s)
  return ssub(s, 1, sfind(s, "%z*$") - 1)   -- one scan in C, however many zeros
end

-- The binding's key count (mappedpages.core._key_count: the keys of a
-- table without a metatable, else nil), when it is there: this module is
-- pure Lua and works without it, walking the keys in Lua.
local okcore, core = pcall(require, "mappedpages.core")
local key_count = okcore and type(core) == "table" and core._key_count or nil
if not key_count then
  local getmetatable = getmetatable
  key_count = function(x)
    if type(x) ~= "table" or getmetatable(x) ~= nil then return nil end
    local n = 0
    for _ in next, x do n = n + 1 end
    return n
  end
end

local H = {key_count = key_count, error = error, type = type, next = next, mtype = mtype, sbyte = sbyte,
           spack = spack, sunpack = sunpack, unpack = unpack, strip = strip,
           check = check, notable = notable, extra = extra, badarg = badarg,
           baddecode = baddecode, INF = huge, NAN = 0.0 / 0.0}
local PRELUDE = "local H, K = ...\nlocal key_count, error = H.key_count, H.error\n" ..
  "local type, next, mtype, sbyte, spack, sunpack, unpack, strip, check, " ..
  "notable, extra, badarg, baddecode, INF, NAN = H.type, H.next, H.mtype, " ..
  "H.sbyte, H.spack, H.sunpack, H.unpack, H.strip, H.check, H.notable, " ..
  "H.extra, H.badarg, H.baddecode, H.INF, H.NAN\n"

--- The values of `v` (of type T) packed, appended to `out` in format order.
local function flat(T, v, out)
  local kind = T.kind
  if kind == "array" then
    for i = 1, T.n do flat(T.elem, v[i], out) end
  elseif kind == "record" then
    for _, f in ipairs(T.rec.fields) do flat(f.t, v[f.name], out) end
  else
    out[#out + 1] = (problem(T, v))
  end
  return out
end
M.flat = flat

--- A constant as Lua source.
local function lit(v)
  local t = mtype(v)
  if t == "integer" then
    if v == mininteger then return "(-0x7fffffffffffffff - 1)" end
    return format("%d", v)
  elseif t == "float" then
    if v ~= v then return "NAN" elseif v == huge then return "INF"
    elseif v == -huge then return "(-INF)" end
    return format("%a", v)
  elseif type(v) == "string" then
    return format("%q", v)
  end
  return tostring(v)
end

-- A code generator: the text of one chunk, its constants (K) and the
-- state of the function being written.
local Gen = {}
Gen.__index = Gen

local function new_gen()
  return setmetatable({buf = {}, K = {}, kidx = {}, nlocal = 0, decl = {}}, Gen)
end

function Gen:emit(...)
  local buf = self.buf
  for i = 1, select("#", ...) do buf[#buf + 1] = select(i, ...) end
end

--- A name for a constant object (a type, an enum's table): a local of
-- the chunk while there are few, else an index into K.
function Gen:ref(obj)
  local name = self.kidx[obj]
  if name then return name end
  local K = self.K
  K[#K + 1] = obj
  if self.nlocal < 100 then
    self.nlocal = self.nlocal + 1
    name = "K" .. #K
    self.decl[#self.decl + 1] = format("local %s = K[%d]\n", name, #K)
  else
    name = format("K[%d]", #K)
  end
  self.kidx[obj] = name
  return name
end

--- The next output slot of the function being written.
function Gen:slot()
  self.n = self.n + 1
  if self.big then return format("o[%d]", self.n) end
  return "o" .. self.n
end

--- Assign the packed fill values of T (from its fill value `fill`).
function Gen:fills(T, fill)
  for _, v in ipairs(flat(T, fill, {})) do self:emit(self:slot(), " = ", lit(v), " ") end
end

--- Code that checks the value `src` (an expression) of type T, at `path`
-- (a string), into the next slots; nil takes `fill`. `cnt`: a counter
-- variable to increment when the value is not nil.
-- `src` == false: the value is the variable "x<depth - 1>" of a key
-- loop, never nil.
function Gen:value(T, src, path, fill, cnt, depth)
  local v = "v" .. depth
  if src then
    local inc = cnt and (cnt .. " = " .. cnt .. " + 1 ") or ""
    self:emit("do local ", v, " = ", src, " if ", v, " == nil then ")
    local base = self.n
    self:fills(T, fill)
    self.n = base
    self:emit("else ", inc)
  else
    v = "x" .. (depth - 1)
    self:emit("do do ")
  end
  local kind, P = T.kind, lit(path)
  if kind == "record" or kind == "array" then
    self:body(T, v, path, fill, depth)
    self:emit("end end\n")
    return
  end
  local out = self:slot()
  local fail = format("%s = check(%s, %s, %s) ", out, v, self:ref(T), P)
  if kind == "int" then
    if T.size == 8 then
      self:emit("if mtype(", v, ") == 'integer' then ")
    else
      self:emit(format("if mtype(%s) == 'integer' and %s >= %s and %s <= %s then ",
                       v, v, lit(T.min), v, lit(T.max)))
    end
    self:emit(out, " = ", v, " else ", fail, "end ")
  elseif kind == "float" then
    if T.size == 4 then
      self:emit(format("if mtype(%s) and %s <= %s and %s >= -%s then ",
                       v, v, lit(FLT_MAX), v, lit(FLT_MAX)))
    else
      self:emit("if mtype(", v, ") then ")
    end
    self:emit(out, " = ", v, " else ", fail, "end ")
  elseif kind == "bool" then
    self:emit("if ", v, " == true then ", out, " = 1 elseif ", v, " == false then ",
              out, " = 0 else ", fail, "end ")
  elseif kind == "char" then
    self:emit(format("if type(%s) == 'string' and #%s <= %d then ", v, v, T.n),
              out, " = ", v, " else ", fail, "end ")
  elseif kind == "enum" then
    self:emit(out, " = ", self:ref(T.index), "[", v, "] or check(", v, ", ",
              self:ref(T), ", ", P, ") ")
  end
  self:emit("end end\n")
end

--- Code for a table `v` (a variable) of record or array type T: its type,
-- each field or item, and no other key.
function Gen:body(T, v, path, fill, depth, checked)
  local c, n, K = "c" .. depth, "n" .. depth, self:ref(T)
  if not checked then
    self:emit("if type(", v, ") ~= 'table' then notable(", v, ", ", K, ", ",
              lit(path), ") end\n")
  end
  if T.kind == "record" then
    -- One pass over the table's keys: every field starts as its fill,
    -- each key present overwrites its field or is unknown.
    local base = self.n
    self:fills(T, fill)
    self.n = base
    local k, x = "k" .. depth, "x" .. depth
    self:emit("for ", k, ", ", x, " in next, ", v, " do\n")
    for i, f in ipairs(T.rec.fields) do
      self:emit(i == 1 and "if " or "elseif ", k, " == ", lit(f.name), " then\n")
      self:value(f.t, false, path .. "." .. f.name, fill[f.name], nil, depth + 1)
    end
    self:emit("else extra(", v, ", ", K, ", ", lit(path), ") end end\n")
    return
  else
    self:emit("local ", c, " = 0\n")
    for i = 1, T.n do
      self:value(T.elem, format("%s[%d]", v, i), format("%s[%d]", path, i),
                 fill[i], c, depth + 1)
    end
  end
  self:emit("local ", n, " = 0 for _ in next, ", v, " do ", n, " = ", n,
            " + 1 end if ", n, " ~= ", c, " then extra(", v, ", ", K, ", ",
            lit(path), ") end\n")
end

--- Declarations of the output slots, and the expression list of them.
function Gen:outputs(count)
  if self.big then return "local o = {}\n", format("unpack(o, 1, %d)", count) end
  local names = {}
  for i = 1, count do names[i] = "o" .. i end
  local list = concat(names, ", ")
  return "local " .. list .. "\n", list
end

--- A flatten-like function: `checks` writes the checks of its argument
-- `x`; `ret` wraps the list of values (e.g. in spack).
function Gen:checker(count, ret, checks)
  self.n = 0
  self.big = count > MAX_LOCALS
  local buf = self.buf
  self.buf = {}
  local decl, list = self:outputs(count)
  checks()
  local code = concat(self.buf)
  self.buf = buf
  self:emit("function(x)\n", decl, code, "return ", ret(list), "\nend")
end

--- The expression that builds a value of type T from the next slots.
function Gen:build_expr(T)
  local kind = T.kind
  if kind == "record" then
    local parts = {}
    for i, f in ipairs(T.rec.fields) do
      parts[i] = format("[%q] = %s", f.name, self:build_expr(f.t))
    end
    return "{" .. concat(parts, ", ") .. "}"
  elseif kind == "array" then
    local parts = {}
    for i = 1, T.n do parts[i] = self:build_expr(T.elem) end
    return "{" .. concat(parts, ", ") .. "}"
  end
  self.n = self.n + 1
  local p = self.big and format("a[%d]", self.n) or ("p" .. self.n)
  if kind == "bool" then return "(" .. p .. " ~= 0)" end
  if kind == "char" then
    return format("(sbyte(%s, -1) == 0 and strip(%s) or %s)", p, p, p)
  end
  if kind == "enum" then return format("(%s[%s] or %s)", self:ref(T.names), p, p) end
  return p
end

--- build (params: unpacked values) and decode (param: a string) of T.
function Gen:builders(T, fmt, fname)
  local count = T.leaves
  self.big = count > MAX_LOCALS
  self.n = 0
  local expr = self:build_expr(T)
  local params = {}
  for i = 1, count do params[i] = "p" .. i end
  local plist = concat(params, ", ")
  local F = lit(fmt)
  local guard = format("if type(s) ~= 'string' or #s ~= %d then baddecode(s, %d, %q) end\n",
                       T.size, T.size, fname)
  if self.big then
    self:emit("function(...)\nlocal a = {...}\nreturn ", expr, "\nend,\n")
    self:emit("function(s)\n", guard, "local a = {sunpack(", F, ", s)}\nreturn ",
              expr, "\nend")
  else
    self:emit("function(", plist, ")\nreturn ", expr, "\nend,\n")
    self:emit("function(s)\n", guard, "local ", plist, " = sunpack(", F,
              ", s)\nreturn ", expr, "\nend")
  end
end

--- Load the chunk; nil and the message when Lua refuses it (too many
-- registers in some corner: the caller retries with tables).
local function finish(g, name)
  local src = PRELUDE .. concat(g.decl) .. "return " .. concat(g.buf) .. "\n"
  local chunk, msg = load(src, "=(schema " .. name .. ")", "t")
  if not chunk then return nil, msg end
  return chunk(H, g.K)
end

--- The quick checks of a record whose fields are all leaves (no embedded
-- record or array), or nil. Each reads every field once (`x.name`) and
-- tests it with operators instead of calls (an integer `v | 0 == v`, a
-- float `v + 0.0 == v`), then counts the table's keys in one call
-- (key_count: nil for a table with a metatable, whose reads may not be
-- raw) against the fields read. Any value it is not sure of, any other
-- key and a metatable raise a bare error: the caller (records:insert,
-- under pcall) then runs flatten, which accepts the value or raises
-- naming the field. Three forms, from one generator:
--
--     quick(x) -> v1, ..., vN            nil fields take their fills
--     quick_into(fn, c, d) -> function(x, a, b): fn(a, b, c, d, v1, ..., vN)
--                                        the same check, then a call (a
--                                        writer's pack, say: no values
--                                        travel back through pcall)
--     quick_into_all(fn, c, d)           the same for a table that holds
--                                        every field: a nil one raises,
--                                        and the values go as read
--
-- The values passed on are packable, not always flatten's: an integral
-- float for an integer field stays a float (string.pack takes it).
local function quick_function(rec, form)
  local T = rec.T
  local fields = T.rec.fields
  if T.leaves ~= #fields or T.leaves > MAX_LOCALS then return nil end
  local g = new_gen()
  local vs = {}
  for i, f in ipairs(fields) do
    local k = f.t.kind
    if k == "record" or k == "array" then return nil end
    vs[i] = "v" .. i
  end
  local list = concat(vs, ", ")
  local all = form == "all"
  if form == "values" then
    g:emit("function(x)\n")
  else
    g:emit("function(fn, c, d)\nreturn function(x, a, b)\n")
  end
  if all then
    local reads = {}
    for i, f in ipairs(fields) do reads[i] = "x[" .. lit(f.name) .. "]" end
    g:emit("local ", list, " = ", concat(reads, ", "), "\n")
  else
    g:emit("local ", list, "\nlocal n, v = 0\n")
  end
  for i, f in ipairs(fields) do
    local t, v = f.t, all and vs[i] or "v"
    if not all then
      local fill = flat(t, rec.fill[f.name], {})[1]
      g:emit("v = x[", lit(f.name), "] if v == nil then ", vs[i], " = ", lit(fill),
             " else n = n + 1 ")
    end
    local kind = t.kind
    if kind == "int" then
      g:emit("if (", v, " | 0) ~= ", v)
      if t.size < 8 then g:emit(" or ", v, " < ", lit(t.min), " or ", v, " > ", lit(t.max)) end
      g:emit(" then error() end ")
    elseif kind == "float" then
      g:emit("if ", v, " + 0.0 ~= ", v)
      if t.size == 4 then g:emit(" or ", v, " > ", lit(FLT_MAX), " or ", v, " < -", lit(FLT_MAX)) end
      g:emit(" then error() end ")
    elseif kind == "bool" then
      g:emit("if ", v, " == true then ", v, " = 1 elseif ", v, " == false then ", v,
             " = 0 else error() end ")
    elseif kind == "char" then
      g:emit("if type(", v, ") ~= 'string' or #", v, " > ", t.n, " then error() end ")
    elseif kind == "enum" then
      g:emit(v, " = ", g:ref(t.index), "[", v, "] if ", v, " == nil then error() end ")
    else
      return nil
    end
    if not all then g:emit(vs[i], " = v end") end
    g:emit("\n")
  end
  g:emit("if key_count(x) ~= ", all and #fields or "n", " then error() end\n")
  if form == "values" then
    g:emit("return ", list, "\nend")
  else
    g:emit("return fn(a, b, c, d, ", list, ")\nend\nend")
  end
  return finish(g, rec.name)
end

--- The functions of a record description: flatten, encode, build, decode.
-- `rec` has name, format, fields (with .t) and its type rec.T.
local function record_functions(rec, force_big)
  local T = rec.T
  local g = new_gen()
  local count, F, path = T.leaves, lit(rec.format), rec.name
  local big = force_big or count > MAX_LOCALS
  local function checks(fname)
    return function()
      g.big = big
      g:emit("if type(x) ~= 'table' then badarg(x, ", lit(fname), ") end\n")
      g:body(T, "x", path, rec.fill, 0, true)
    end
  end
  g:checker(count, function(list) return list end, checks("flatten"))
  g.big = big
  g:emit(",\n")
  g:checker(count, function(list) return "spack(" .. F .. ", " .. list .. ")" end,
            checks("encode"))
  g.big = big
  g:emit(",\n")
  g:builders(T, rec.format, "decode")
  return finish(g, path)
end

--- The functions of one top-level field f of rec: flatten(v) and build(...).
local function field_functions(rec, f, force_big)
  local g = new_gen()
  local count = f.t.leaves
  g:checker(count, function(list) return list end, function()
    g.big = force_big or count > MAX_LOCALS
    g:value(f.t, "x", rec.name .. "." .. f.name, f.default, nil, 0)
  end)
  g:emit(",\n")
  g.big = force_big or count > MAX_LOCALS
  g.n = 0
  local expr = g:build_expr(f.t)
  if g.big then
    g:emit("function(...)\nlocal a = {...}\nreturn ", expr, "\nend")
  else
    local params = {}
    for i = 1, count do params[i] = "p" .. i end
    g:emit("function(", concat(params, ", "), ")\nreturn ", expr, "\nend")
  end
  return finish(g, rec.name .. "." .. f.name)
end

--- Fill in rec.flatten, rec.build, rec.encode, rec.decode and, for each
-- top-level field, f.flatten and f.build.
function M.compile(rec)
  local fl, en, bu, de = record_functions(rec, false)
  if not fl then fl, en, bu, de = assert(record_functions(rec, true)) end
  rec.flatten, rec.build, rec.encode, rec.decode = fl, bu, en, de
  rec.quick = quick_function(rec, "values") or fl
  rec.quick_into = quick_function(rec, "into")
  rec.quick_into_all = quick_function(rec, "all")
  for _, f in ipairs(rec.fields) do
    local ffl, fbu = field_functions(rec, f, false)
    if not ffl then ffl, fbu = assert(field_functions(rec, f, true)) end
    f.flatten, f.build = ffl, fbu
  end
end

return M
