-- spec/children/hostile_lib.lua -- what spec/14-hostile_files_spec.lua and
-- its children (spec/children/hostile_*.lua) share: the fingerprint of a
-- commit, the walk every successful open must allow, classifying an open
-- against the expected states, and a child's reporting (COUNT and BAD
-- lines, the progress file).

local mp = require "mappedpages"
local C = {}

-- What a commit defines, as one string (see the top of the spec).  With
-- `pids`, only those pids' contents are read (files with many pids).
function C.fingerprint(p, pids)
  local i = p:info()
  local t = { i.txn, i.root, i.page_count, i.free_count, i.regular_count,
              i.system_count, i.protected_count, i.protected_pages, i.pid_limit }
  local ids = {}
  for id in p:pages() do ids[#ids + 1] = id end
  table.sort(ids)
  t[#t + 1] = table.concat(ids, ",")
  local parts = {}
  local function add(pid)
    local v = p:protected(pid)
    parts[#parts + 1] = pid .. "=" .. v:read(0, 16) .. v:read(#v - 16, 16)
  end
  if pids then
    for _, pid in ipairs(pids) do add(pid) end
  else
    for pid in p:protected_pages() do add(pid) end
  end
  t[#t + 1] = ("%08x"):format(mp.crc32c(table.concat(parts, ";")))
  return table.concat(t, " ")
end

-- What every successful open must allow: check() passes, every regular
-- page reads in full, and protected_pages() agrees with info().  (The
-- fingerprint reads the first and last bytes of every protected page, or
-- of `pids`: with 1 KiB pages that touches every page of the mapping.)
function C.walk(p, pids)
  local ok, problems = p:check()
  if ok == nil then return "check() could not run: " .. tostring(problems) end
  if not ok then return "check() failed: " .. table.concat(problems, "; ") end
  local info = p:info()
  local n = 0
  for id in p:pages() do
    if #p:page(id):read() ~= info.page_size then return "short read of page " .. id end
    n = n + 1
  end
  if n ~= info.regular_count then
    return ("pages() lists %d pages, info() says %d"):format(n, info.regular_count)
  end
  if pids then return nil end
  local k = 0
  for _ in p:protected_pages() do k = k + 1 end
  if k ~= info.protected_count then
    return ("protected_pages() lists %d pids, info() says %d"):format(k, info.protected_count)
  end
  return nil
end

-- Open path and classify what it shows against S = {S1 =, S2 =, pids =}:
-- "older" (S1, recovered), "S1" (S1, not flagged recovered), "latest"
-- (S2), "fail" (then the code and message follow) or "bad: ...".  With
-- keep, an open pager is returned as the second value instead of closed.
function C.classify(path, readonly, S, keep)
  local p, msg, code = mp.open(path, readonly and { readonly = true } or nil)
  if not p then
    if p ~= nil or type(msg) ~= "string" or msg == "" or type(code) ~= "string" then
      return "bad: a failed open must return nil, msg, code (got " ..
        tostring(p) .. ", " .. tostring(msg) .. ", " .. tostring(code) .. ")"
    end
    return "fail", code, msg
  end
  local ok, cls = pcall(function()
    local err = C.walk(p, S.pids)
    if err then return "bad: " .. err end
    local fp = C.fingerprint(p, S.pids)
    local rec = p:info().recovered
    if fp == S.S2 then return "latest" end
    if fp == S.S1 then return rec and "older" or "S1" end
    return "bad: another state: " .. fp
  end)
  if not ok then cls = "bad: raised: " .. tostring(cls) end
  if keep and (cls == "older" or cls == "latest" or cls == "S1") then return cls, p end
  p:close()
  return cls
end

-- nil when class cls (and code) is what `expect` allows, else why not.
-- expect: "older", "latest", "S1" or "fail:code1,code2".
function C.judge(cls, code, expect)
  local want, codes = expect:match("^(%a+%d?):?(.*)$")
  if cls ~= want then
    return ("%s%s, expected %s"):format(cls, code and (" (" .. tostring(code) .. ")") or "", expect)
  end
  if cls == "fail" and not ("," .. codes .. ","):find("," .. code .. ",", 1, true) then
    return "failed with code " .. tostring(code) .. ", expected " .. expect
  end
  return nil
end

-- After a successful writer open: the pager must keep working.  Allocates
-- a regular page, writes a new protected page, sets the root, closes, and
-- the file must reopen at exactly that commit.  nil, or what went wrong.
function C.carry_on(p, path, S)
  local ok, err = pcall(function()
    local base = p:info().txn
    local id = assert(p:alloc())
    p:page(id):write(0, "carry on")
    local pid = assert(p:alloc_protected())
    local w = p:write_protected(pid)
    w:write(0, "carry on")
    assert(w:commit())
    assert(p:set_root(4242))
    local want = C.fingerprint(p, S.pids)
    p:close()
    local q = assert(mp.open(path, { readonly = true }))
    local werr = C.walk(q, S.pids)
    local fp = C.fingerprint(q, S.pids)
    local txn, root = q:info().txn, q:root()
    local a, b = q:page(id):read(0, 8), q:protected(pid):read(0, 8)
    q:close()
    assert(not werr, werr)
    assert(txn == base + 4 and root == 4242, "reopened at txn " .. txn .. ", root " .. root)
    assert(a == "carry on" and b == "carry on", "the new pages lost their bytes")
    assert(S.pids or fp == want, "reopened at another state")
  end)
  if p then pcall(p.close, p) end
  return not ok and tostring(err) or nil
end

-- file I/O: the helpers' (children load spec/helpers.lua too)
local H = require "helpers"
C.read_at, C.write_at = H.read_at, H.write_at

-- Findings of a child: BAD lines (the first few kept), counters.
local bad, nbad, counts = {}, 0, {}
function C.complain(what)
  nbad = nbad + 1
  if #bad < 12 then bad[#bad + 1] = what end
end
function C.count(k, n) counts[k] = (counts[k] or 0) + (n or 1) end
function C.report()
  local ks = {}
  for k in pairs(counts) do ks[#ks + 1] = k end
  table.sort(ks)
  for _, k in ipairs(ks) do io.write("COUNT ", k, "=", counts[k], "\n") end
  for _, s in ipairs(bad) do io.write("BAD ", s, "\n") end
  if nbad > #bad then io.write("BAD ... and ", nbad - #bad, " more\n") end
  io.write("done\n")
end

-- A child's arguments (H.run_child, spec/helpers.lua): the table the file
-- named by arg[1] returns.
local ARGS
function C.args()
  ARGS = ARGS or dofile(arg[1])
  return ARGS
end

-- Mark what the child is doing, so a crash or a hang can be named.
local progress
function C.at(what)
  if not progress then
    progress = assert(io.open(C.args().progress, "w"))
    progress:setvbuf("no")
  end
  progress:seek("set")
  progress:write(what, string.rep(" ", 60))
end

return C
