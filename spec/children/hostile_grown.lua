-- spec/children/hostile_grown.lua -- a child of spec/14-hostile_files_spec.lua
-- (run_child("grown", args); the arguments are A).
--
-- Each case (ARGS.cases) grows a copy of the file: appended zeros or
-- garbage, or a sparse extension.  It must open at the newest commit, and
-- a writer must allocate into the grown region (past the old page count,
-- into a second group when the case is big enough), put a protected page
-- there, and all of it must survive a reopen.
local C = require "children.hostile_lib"
local H = require "helpers"
local mp = require "mappedpages"
local A = C.args()
local S, P = A.S, A.P
local function stamp(v, id) v:write(0, string.pack("<I8", id)) v:write(P - 8, string.pack("<I8", id)) end
local function stamped(v, id)
  return v:read(0, 8) == string.pack("<I8", id) and v:read(P - 8, 8) == string.pack("<I8", id)
end
for _, case in ipairs(A.cases) do
  local path = case.path
  C.at(case.what)
  local f = assert(io.open(path, "ab"))
  if case.zeros then assert(f:write(string.rep("\0", case.zeros))) end
  if case.garbage then
    local block = H.garbage(math.min(case.garbage, 65536), case.garbage)
    local n = case.garbage
    while n > 0 do
      assert(f:write(block:sub(1, math.min(n, #block))))
      n = n - #block
    end
  end
  f:close()
  if case.sparse then assert(os.execute(("truncate -s %d '%s'"):format(case.sparse, path))) end
  local c1, x1 = C.classify(path, true, S)
  local c2, p = C.classify(path, false, S, true)
  C.count("images", 2)
  local why = C.judge(c1, x1, "latest") or C.judge(c2, type(p) == "string" and p or nil, "latest")
  if why then
    C.complain(case.what .. ": " .. why)
  else
    local ok, err = pcall(function()
      local pc0 = p:page_count()
      local ids = assert(p:alloc_bulk(p:free_count() + case.extra))
      table.sort(ids)
      assert(ids[#ids] >= pc0, "nothing allocated in the grown region")
      assert(p:page_count() >= case.min_pages, "grew to " .. p:page_count() .. " pages only")
      for _, id in ipairs(ids) do stamp(p:page(id), id) end
      -- free the three highest pages; a protected page then takes one
      local top = { table.remove(ids), table.remove(ids), table.remove(ids) }
      assert(p:free_bulk(top))
      local pid = assert(p:alloc_protected())
      local w = p:write_protected(pid)
      w:write(0, "grown region")
      assert(w:commit())
      assert(p:set_root(31337))
      local want = C.fingerprint(p)
      local pcount = p:page_count()
      p:close()
      for _, ro in ipairs({ true, false }) do
        local q = assert(mp.open(path, { readonly = ro }))
        local werr = C.walk(q)
        assert(not werr, werr)
        assert(C.fingerprint(q) == want, "reopened at another state")
        assert(q:page_count() == pcount)
        for _, id in ipairs(ids) do assert(stamped(q:page(id), id), "page " .. id .. " lost its stamp") end
        assert(q:protected(pid):read(0, 12) == "grown region")
        q:close()
      end
    end)
    if not ok then C.complain(case.what .. ": " .. tostring(err)) end
    C.count("grew and reopened")
  end
end
C.report()
