-- spec/children/hostile_flip.lua -- a child of spec/14-hostile_files_spec.lua
-- (run_child("flip", args); the arguments are A).
--
-- The flip loop, in a child: every byte of every planned page, one at a
-- time, opened read-only and for writing.  ARGS: path, S, pages, P, step,
-- carry_every (every so many bytes, the writer also commits and reopens).
-- A page's regions ({name, from, to}) count the bytes flipped in each
-- ("flipped <name>").
local C = require "children.hostile_lib"
local A = C.args()
local path, S, P = A.path, A.S, A.P
local orig = C.read_at(path, 0, A.size)
local fh = assert(io.open(path, "r+b"))
fh:setvbuf("no")
local function put(off, s) fh:seek("set", off) assert(fh:write(s)) end
local roots = orig:sub(1, 2 * P)
local saved = {}
for _, pg in ipairs(A.pages) do saved[pg.page] = C.read_at(path, pg.page * P, P) end
for _, pg in ipairs(A.pages) do
  for i = 0, P - 1, pg.step or 1 do
    local off = pg.page * P + i
    local where = ("%s (page %d) byte %d"):format(pg.what, pg.page, i)
    C.at(where)
    for _, reg in ipairs(pg.regions or {}) do
      if i >= reg[2] and i < reg[3] then
        C.count("flipped " .. reg[1])
        where = where .. " (" .. reg[1] .. ")"
      end
    end
    local b = saved[pg.page]:byte(i + 1)
    put(off, string.char(b ~ 0xFF))
    local c1, x1 = C.classify(path, true, S)
    -- a read-only open writes nothing, not even to clear a rejected root
    local now = C.read_at(path, 0, 2 * P)
    if now ~= (off < 2 * P and roots:sub(1, off) .. string.char(b ~ 0xFF) .. roots:sub(off + 2) or roots) then
      C.complain(where .. ": the read-only open changed a root slot")
    end
    local keep = i % A.carry_every == 0
    local c2, x2 = C.classify(path, false, S, keep)
    C.count("images", 2)
    C.count("opened " .. (c1 == "fail" and "fail:" .. tostring(x1) or c1))
    local why = C.judge(c1, x1, pg.expect)
    if why then C.complain(where .. ": read-only open: " .. why) end
    why = C.judge(c2, type(x2) == "string" and x2 or nil, pg.expect)
    if why then C.complain(where .. ": writer open: " .. why) end
    if type(x2) == "userdata" then
      local err = C.carry_on(x2, path, S)
      C.count("carried on")
      if err then C.complain(where .. ": carrying on after the writer open: " .. err) end
      put(0, orig)
      for page, bytes in pairs(saved) do put(page * P, bytes) end
    elseif c2 == "older" and off >= 2 * P then
      -- the writer fell back: it must have invalidated the newest root for
      -- good, so repairing the damage must not bring it back
      put(off, string.char(b))
      local c3 = C.classify(path, true, S)
      C.count("repaired and reopened")
      if c3 ~= "S1" then
        C.complain(where .. ": the writer fell back, the byte was repaired, then: " .. c3)
      end
    end
    put(0, roots)
    if off >= 2 * P then put(off, string.char(b)) end
  end
end
fh:close()
local sf = assert(io.open(path, "rb"))
local size = sf:seek("end")
sf:close()
local same = C.read_at(path, 0, A.size) == orig and size == A.file_size
for page, bytes in pairs(saved) do same = same and C.read_at(path, page * P, P) == bytes end
if not same then C.complain("the file was not restored") end
C.report()
