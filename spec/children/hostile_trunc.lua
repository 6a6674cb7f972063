-- spec/children/hostile_trunc.lua -- a child of spec/14-hostile_files_spec.lua
-- (run_child("trunc", args); the arguments are A).
--
-- Cut the file to each size in turn (ARGS.sizes) and open it: shorter than
-- the two root slots, not a mappedpages file; shorter than both roots'
-- page counts, corrupt; shorter than the newest root's only, the previous
-- commit; else the newest.  When a writer fell back, the cut-off tail is
-- put back and the file must still open at the previous commit.
local C = require "children.hostile_lib"
local A = C.args()
local path, S, P = A.path, A.S, A.P
local orig = C.read_at(path, 0, A.file_size)
local function write_file(s)
  local f = assert(io.open(path, "wb"))
  assert(f:write(s))
  f:close()
end
for k, size in ipairs(A.sizes) do
  local where = "cut to " .. size .. " bytes"
  C.at(where)
  write_file(orig:sub(1, size))
  local expect = size < 2 * P and "fail:not_mappedpages" or size < A.pc1 * P and "fail:corrupt"
                 or size < A.pc2 * P and "older" or "latest"
  local c1, x1 = C.classify(path, true, S)
  local c2, x2 = C.classify(path, false, S, k % A.carry_every == 0)
  C.count("images", 2)
  C.count("opened " .. (c1 == "fail" and "fail:" .. tostring(x1) or c1))
  local why = C.judge(c1, x1, expect)
  if why then C.complain(where .. ": read-only open: " .. why) end
  why = C.judge(c2, type(x2) == "string" and x2 or nil, expect)
  if why then C.complain(where .. ": writer open: " .. why) end
  if type(x2) == "userdata" then
    C.count("carried on")
    local err = C.carry_on(x2, path, S)
    if err then C.complain(where .. ": carrying on after the writer open: " .. err) end
  elseif c2 == "older" then
    local f = assert(io.open(path, "ab"))
    assert(f:write(orig:sub(size + 1)))
    f:close()
    local c3 = C.classify(path, true, S)
    C.count("tail put back and reopened")
    if c3 ~= "S1" then C.complain(where .. ": the writer fell back, the tail was put back, then: " .. c3) end
  end
end
write_file(orig)
C.report()
