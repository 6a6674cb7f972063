-- 10-fuzz_regress: the fuzzers' files replayed through the Lua API.
--
-- fuzz/corpus/open/ holds the seed files of fuzz_open (valid images made
-- by fuzz/make_corpus.c and a few hostile ones); fuzz/regress/ keeps every
-- input a fuzzer found that crashed or broke an oracle: for fuzz_open the
-- file itself, for fuzz_open_fixed* the patch list and, next to it as
-- NAME.mp, the patched file it produced (MP_FUZZ_SAVE), which is what this
-- spec replays.  (`make fuzz-regress` replays every kept input through its
-- libFuzzer target, fuzz_ops ones included.)
--
-- Each file is opened in a child process, so a crash fails one test and
-- not the run: read-only, then for writing; both must agree, and either
-- open with every page readable and check() passing, or return nil, msg,
-- code.  A file that opens is then changed (alloc, a protected write,
-- set_root), closed, and must reopen at exactly that commit.

local H = require "helpers"

local sq = H.shell_quote

-- Files in dir (sorted), optionally only names matching pattern.
local function list(dir, pattern)
  local f = io.popen("ls -1 " .. sq(dir) .. " 2>/dev/null")
  local names = {}
  for name in f:lines() do
    if not pattern or name:match(pattern) then names[#names + 1] = dir .. "/" .. name end
  end
  f:close()
  table.sort(names)
  return names
end

-- What each seed file must do (anything else in the corpus: open or fail
-- cleanly).  Valid images must keep opening.
local EXPECT = {
  ["empty.mp"] = "opened", ["mixed.mp"] = "opened", ["tree.mp"] = "opened",
  ["tiny.mp"] = "opened", ["grown.mp"] = "opened", ["mixed2k.mp"] = "opened",
  ["empty8k.mp"] = "opened",
  ["empty-file.bin"] = "not_mappedpages", ["garbage.bin"] = "not_mappedpages",
  ["version-next.mp"] = "version", ["torn-root.mp"] = "opened", ["both-roots-torn.mp"] = "corrupt",
  ["roots-only.mp"] = "corrupt", ["pagesize-lie.mp"] = "corrupt",
}

local CHILD = [[
local mp = require "mappedpages"
local path = %q

local function walk(p, when)
  local ok, problems = p:check()
  if not ok then
    error(when .. ": check after a successful open: " .. tostring(ok == nil and problems
      or table.concat(problems, "; ")))
  end
  local info = p:info()
  local n = 0
  for id in p:pages() do
    local v = p:page(id)
    assert(#v:read(0, #v) == info.page_size)
    n = n + 1
  end
  assert(n == info.regular_count, when .. ": regular pages iterated vs info")
  local k = 0
  for pid in p:protected_pages() do
    assert(#p:protected(pid):read() == info.page_size)
    k = k + 1
  end
  assert(k == info.protected_count, when .. ": protected pages iterated vs info")
  return info
end

local function clean_failure(p, msg, code)
  assert(p == nil and type(msg) == "string" and #msg > 0 and type(code) == "string",
    "a failed open must return nil, msg, code")
end

local ro, msg, code = mp.open(path, { readonly = true })
local verdict, a
if ro then
  a = walk(ro, "read-only")
  ro:close()
  verdict = "opened"
else
  clean_failure(ro, msg, code)
  verdict = code
end

local rw, msg2, code2 = mp.open(path)
assert((rw ~= nil) == (ro ~= nil), "read-only and read-write opens disagree: " .. tostring(msg2))
if rw then
  local b = walk(rw, "read-write")
  assert(a.txn == b.txn and a.regular_count == b.regular_count and
         a.protected_count == b.protected_count, "read-only and read-write opens differ")
  local FULL = { full = true, no_space = true }
  local id, m, c = rw:alloc()
  if id then rw:page(id):write(0, "fuzz") else assert(FULL[c], m) end
  local pid, m2, c2 = rw:alloc_protected()
  if pid then
    local w = rw:write_protected(pid)
    w:write(0, "prot")
    local ok, m3, c3 = w:commit()
    if not ok then assert(FULL[c3], m3) pid = nil end
  else
    assert(FULL[c2], m2)
  end
  assert(rw:set_root(12345))
  walk(rw, "after changes")
  local txn = rw:info().txn
  rw:close()
  local again = assert(mp.open(path, { readonly = true }))
  walk(again, "reopen")
  assert(again:info().txn == txn and again:root() == 12345, "reopen shows another commit")
  if id then assert(again:page(id):read(0, 4) == "fuzz") end
  if pid then assert(again:protected(pid):read(0, 4) == "prot") end
  again:close()
else
  clean_failure(rw, msg2, code2)
end
io.write("verdict=", verdict, " done")
]]

-- Replay one file in a child process; returns the verdict ("opened" or
-- the error code of a clean failure).
local function replay(file)
  local copy = H.path("replay.mp")          -- never touch the repository's file
  H.copy(file, copy)
  local out, status = H.run_lua(CHILD:format(copy))
  assert(status == 0 and out:find(" done$"),
    ("%s: the child crashed or an assertion failed (exit status %s):\n%s")
      :format(file, tostring(status), out))
  return out:match("verdict=(%S+)")
end

describe("the fuzz seed corpus (fuzz/corpus/open)", function()
  after_each(H.cleanup)

  local files = list("fuzz/corpus/open")

  it("is there", function()
    assert.is_true(#files >= 10, "fuzz/corpus/open holds " .. #files .. " files")
    for name in pairs(EXPECT) do
      assert.is_true(H.exists("fuzz/corpus/open/" .. name), "missing seed " .. name)
    end
  end)

  for _, file in ipairs(files) do
    local name = file:match("[^/]+$")
    it("replays " .. name .. ": opens or fails cleanly", function()
      local verdict = replay(file)
      if EXPECT[name] then assert.are.equal(EXPECT[name], verdict) end
    end)
  end
end)

describe("fuzz regressions (fuzz/regress)", function()
  after_each(H.cleanup)

  local files = list("fuzz/regress/fuzz_open")
  for _, dir in ipairs(list("fuzz/regress", "^fuzz_open_fixed")) do
    for _, f in ipairs(list(dir, "%.mp$")) do files[#files + 1] = f end
  end

  for _, file in ipairs(files) do
    it("replays " .. file:match("fuzz/regress/(.*)$") .. ": opens or fails cleanly", function()
      replay(file)
    end)
  end

end)
