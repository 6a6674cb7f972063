-- spec/children/hostile_garbage.lua -- a child of spec/14-hostile_files_spec.lua
-- (run_child("garbage", args); the arguments are A).
--
-- Write each image (ARGS.images: what, size, kind) and open it; every one
-- must fail with one of its codes.
local C = require "children.hostile_lib"
local H = require "helpers"
local A = C.args()
local path = A.path
local real = C.read_at(A.real, 0, 2 * A.P)
local function image(size, kind)
  local s
  if kind == "zeros" then s = string.rep("\0", size)
  elseif kind == "ones" then s = string.rep("\255", size)
  elseif kind == "garbage" then
    local block = H.garbage(math.min(size, 65536), size + 1)
    s = size == 0 and "" or string.rep(block, size // #block) .. block:sub(1, size % #block)
  elseif kind == "magic" then s = ("mappedpg" .. H.garbage(size, size + 2)):sub(1, size)
  elseif kind == "magic v1" then
    s = ("mappedpg" .. string.pack("<I4I4", 1, A.P) .. H.garbage(size, size + 3)):sub(1, size)
  elseif kind == "real roots" then s = (real .. H.garbage(size, size + 4)):sub(1, size)
  elseif kind == "real roots, zeros" then s = (real .. string.rep("\0", size)):sub(1, size)
  end
  assert(#s == size)
  return s
end
for _, im in ipairs(A.images) do
  local what = ("%d bytes of %s"):format(im.size, im.kind)
  C.at(what)
  local f = assert(io.open(path, "wb"))
  assert(f:write(image(im.size, im.kind)))
  f:close()
  for _, ro in ipairs({ true, false }) do
    local cls, code = C.classify(path, ro, A.S)
    C.count("images")
    C.count("opened " .. (cls == "fail" and "fail:" .. tostring(code) or cls))
    local why = C.judge(cls, code, "fail:" .. im.codes)
    if why then C.complain(what .. (ro and ": read-only open: " or ": writer open: ") .. why) end
  end
  local size = C.read_at(path, 0, im.size + 1)
  if #size ~= im.size then C.complain(what .. ": open changed the file's size") end
end
C.report()
