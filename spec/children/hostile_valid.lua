-- spec/children/hostile_valid.lua -- a child of spec/14-hostile_files_spec.lua
-- (run_child("valid", args); the arguments are A).
--
-- Each case (ARGS.cases: path, what, expect, pc, free, grow) is a fresh
-- file written by hand.  Valid ones must open at transaction 1 with the
-- right counts and keep working: a writer allocates (past the end when
-- `grow`), writes a protected page and sets the root, and a reopen shows
-- exactly that.  Invalid ones must fail cleanly.
local C = require "children.hostile_lib"
local mp = require "mappedpages"
local A = C.args()
for _, case in ipairs(A.cases) do
  C.at(case.what)
  for _, ro in ipairs({ true, false }) do
    local mode = ro and "read-only" or "writer"
    local p, msg, code = mp.open(case.path, { readonly = ro })
    C.count("images")
    if case.expect ~= "ok" then
      if p then
        p:close()
        C.complain(case.what .. ": the " .. mode .. " open succeeded, expected " .. case.expect)
      else
        local why = C.judge("fail", code, case.expect)
        if why or type(msg) ~= "string" then C.complain(case.what .. ": " .. mode .. " open: " .. tostring(why)) end
      end
    elseif not p then
      C.complain(case.what .. ": the " .. mode .. " open failed: " .. tostring(msg))
    else
      local err = C.walk(p)
      local i = p:info()
      p:close()
      if err then C.complain(case.what .. ": " .. mode .. ": " .. err) end
      if i.txn ~= 1 or i.page_count ~= case.pc or i.free_count ~= case.free or i.recovered then
        C.complain(("%s: %s open shows txn %d, %d pages, %d free, recovered %s"):format(case.what, mode,
          i.txn, i.page_count, i.free_count, tostring(i.recovered)))
      end
    end
  end
  if case.expect == "ok" then
    local ok, err = pcall(function()
      local p = assert(mp.open(case.path))
      local ids = assert(p:alloc_bulk(case.grow and p:free_count() + 5 or 5))
      for _, id in ipairs(ids) do p:page(id):write(0, string.pack("<I8", id)) end
      if case.grow then assert(p:page_count() > case.pc, "did not grow") end
      local pid = assert(p:alloc_protected())
      local w = p:write_protected(pid)
      w:write(0, "valid")
      assert(w:commit())
      assert(p:set_root(99))
      local want = C.fingerprint(p)
      p:close()
      for _, ro in ipairs({ true, false }) do
        local q = assert(mp.open(case.path, { readonly = ro }))
        local werr = C.walk(q)
        assert(not werr, werr)
        assert(C.fingerprint(q) == want, "reopened at another state")
        for _, id in ipairs(ids) do assert(q:page(id):read(0, 8) == string.pack("<I8", id), "page lost its bytes") end
        assert(q:protected(pid):read(0, 5) == "valid")
        q:close()
      end
    end)
    C.count("kept working")
    if not ok then C.complain(case.what .. ": " .. tostring(err)) end
  end
  os.remove(case.path)
end
C.report()
