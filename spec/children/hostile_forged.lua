-- spec/children/hostile_forged.lua -- a child of spec/14-hostile_files_spec.lua
-- (run_child("forged", args); the arguments are A).
--
-- Open each forged image (ARGS.images: path, what, expect, and S2 when
-- the forgery is valid and shows a state of its own) read-only and for
-- writing; a writer that opened must carry on.
local C = require "children.hostile_lib"
local mp = require "mappedpages"
local A = C.args()
for _, im in ipairs(A.images) do
  C.at(im.what)
  local S = im.S2 and { S1 = A.S.S1, S2 = im.S2, pids = A.S.pids } or A.S
  local c1, x1 = C.classify(im.path, true, S)
  local c2, x2 = C.classify(im.path, false, S, true)
  C.count("images", 2)
  C.count("opened " .. (c1 == "fail" and "fail:" .. tostring(x1) or c1))
  local why = C.judge(c1, x1, im.expect)
  if why then C.complain(im.what .. ": read-only open: " .. why) end
  why = C.judge(c2, type(x2) == "string" and x2 or nil, im.expect)
  if why then C.complain(im.what .. ": writer open: " .. why) end
  if type(x2) == "userdata" then
    local err = C.carry_on(x2, im.path, S)
    if err then C.complain(im.what .. ": carrying on after the writer open: " .. err) end
  end
  os.remove(im.path)
  if A.verbose and im.why then
    -- why the newest root was rejected: open the image with the previous
    -- root slot made unreadable, and print the reasons open gives
    local f = assert(io.open(im.why, "r+b"))
    f:seek("set", im.prev_slot * A.P + 16)
    f:write("\255\255\255\255")
    f:close()
    local p, msg = mp.open(im.why, { readonly = true })
    io.write("WHY ", im.what, ": ", p and "opened" or tostring(msg):gsub("^.-corrupt", "corrupt"), "\n")
    if p then p:close() end
    os.remove(im.why)
  end
end
C.report()
