-- fuzz/make_pack_corpus.lua DIR -- writes the seeds of fuzz_pack (the input
-- format is at the top of fuzz/fuzz_pack.c); run by `make fuzz-corpus`.
local dir = assert(arg[1], "usage: make_pack_corpus.lua DIR")

local function I(v) return string.pack("<B i8", 0, v) end          -- integer
local function SI(v) return string.pack("<B b", 1, v) end         -- small integer
local function F(x) return string.pack("<B d", 2, x) end          -- float
local function S(s) return string.pack("<B s1", 4, s) end         -- string (< 48 bytes)
local function NS(v) return string.pack("<B b", 5, v) end         -- numeric string

local function seed(name, fmt, vals, o)
  o = o or {}
  local len, flags = o.len or 64, o.flags or 0
  if len > 255 then flags, len = flags | 4, len - 256 end
  local f = assert(io.open(dir .. "/" .. name, "wb"))
  f:write(string.pack("BBB s1 B", flags, len, o.off or 0, fmt, #vals), table.concat(vals),
          o.content or "")
  f:close()
end

seed("ints", "<i4 I2 j B", { I(-5), I(65535), I(1 << 62), SI(7) })
seed("big-endian", ">i8 h H", { I(-2), SI(-3), I(4660) })
seed("align", "!4 b i4 !8 d", { SI(1), I(2), F(1.5) }, { off = 2 })
seed("align-X", "!8 b Xi8 j Xh", { SI(1), I(99) }, { off = 3 })
seed("strings", "s1 z c5 s", { S("hi"), S("zero"), S("abc"), S(("x"):rep(20)) })
seed("numbers-as-strings", "z s2", { NS(-12), F(0.1) })
seed("floats", "=f d n", { F(3.25), F(0 / 0), F(-0.0) })
seed("int16", "<i16 I16 i3 I7", { I(-1), I(1), I(-8388608), I(123456789) })
local raw = {}
for i = 1, 47 do raw[i] = string.char(i) end
seed("unpack-raw", "<i16 I9 z c3", {}, { len = 48, flags = 8, content = table.concat(raw) .. "\0" })
seed("too-long", "c100", { S("a") })
seed("window", "i4 i4", { I(1), I(2) }, { len = 40, off = 36, flags = 1 })
seed("errors", "i17 !3 Xz q", { I(1) })
seed("overflow", "i1 I1 c2", { I(200), I(-1), S("xxxxx") })
seed("bad-offset", "b", { SI(1) }, { len = 10, off = 11 })
seed("negative-offset", "b", { SI(1) }, { len = 10, flags = 2 })
seed("big-page", "<!16 c300 i16", { S(("q"):rep(40)), I(-77) }, { len = 400, off = 5 })
seed("empty-format", "", { I(1) }, { len = 0 })
seed("spaces-defaults", " < > = ! x xb", { SI(9) }, { off = 1 })
