-- spec/helpers.lua -- shared helpers for the mappedpages specs.
--
-- Temp files: every spec asks for paths with H.path(); they live in one
-- private directory per test, made on first use and removed (with every
-- pager opened through H.create/H.open) by H.cleanup(), which each spec file
-- calls from after_each, so files go away even when a test fails.
--
-- Byte helpers patch files in place with io.open(path, "r+b"); the format
-- helpers (H.ROOT, H.forge_root...) come from spec/format.lua.

local mp = require "mappedpages"

local H = { mp = mp }

local unpack = table.unpack

---------------------------------------------------------------------------
-- temp directories and tracked pagers

local dirs = {}          -- directories to remove at cleanup
local current            -- this test's directory
local tracked = {}       -- pagers to close at cleanup
local counter = 0

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
H.shell_quote = shell_quote

function H.tmpdir()
  local name = os.tmpname()       -- creates an empty file; reuse its name
  os.remove(name)
  local ok = os.execute("mkdir -m 700 " .. shell_quote(name))
  assert(ok, "cannot make temp dir " .. name)
  dirs[#dirs + 1] = name
  return name
end

function H.dir()
  if not current then current = H.tmpdir() end
  return current
end

-- A fresh scratch directory on a tmpfs (/dev/shm) when there is one, for
-- runs of thousands of files and barriers where the disk is not the
-- point; else a fresh H.tmpdir().  Removed by H.cleanup(), unless
-- opts.keep: then the second result removes it (a no-op for a H.tmpdir(),
-- which H.cleanup() removes anyway).
function H.scratch(prefix, opts)
  local f = io.popen("mktemp -d /dev/shm/" .. (prefix or "mp-spec") .. ".XXXXXX 2>/dev/null")
  local dir = f and f:read("l")
  if f then f:close() end
  if not dir or dir == "" then return H.tmpdir(), function() end end
  local function remove() os.execute("rm -rf " .. shell_quote(dir)) end
  if not (opts and opts.keep) then dirs[#dirs + 1] = dir end
  return dir, remove
end

-- A fresh file name (not created) in this test's directory.
function H.path(name)
  counter = counter + 1
  return H.dir() .. "/" .. (name or ("f" .. counter .. ".mp"))
end

function H.track(p)
  if p then tracked[#tracked + 1] = p end
  return p
end

function H.cleanup()
  for i = #tracked, 1, -1 do
    pcall(function() tracked[i]:close() end)
    tracked[i] = nil
  end
  collectgarbage()
  collectgarbage()
  for i = #dirs, 1, -1 do
    os.execute("rm -rf " .. shell_quote(dirs[i]))
    dirs[i] = nil
  end
  current = nil
end

-- Create a pager (asserting success); returns pager, path.
function H.create(opts, path)
  path = path or H.path()
  local p, msg = mp.create(path, opts)
  assert(p, "create failed: " .. tostring(msg))
  return H.track(p), path
end

function H.open(path, opts)
  local p, msg = mp.open(path, opts)
  assert(p, "open failed: " .. tostring(msg))
  return H.track(p)
end

-- mp.open without asserting: p or nil, msg, code.
function H.try_open(path, opts)
  local p, msg, code = mp.open(path, opts)
  H.track(p)
  return p, msg, code
end

-- Close p and open its file again (same path).
function H.reopen(p, path, opts)
  p:close()
  return H.open(path, opts)
end

---------------------------------------------------------------------------
-- errors

-- Call fn(...) expecting it to raise; returns the message (a string).
function H.raises(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error, but the call succeeded")
  assert(type(err) == "string",
    "expected an error message string, got " .. type(err))
  return err
end

-- Expect a raise whose message contains every plain string given
-- (case-insensitive).
function H.raises_with(words, fn, ...)
  local err = H.raises(fn, ...)
  if type(words) == "string" then words = { words } end
  local low = err:lower()
  for _, w in ipairs(words) do
    assert(low:find(w:lower(), 1, true),
      ("error message %q does not mention %q"):format(err, w))
  end
  return err
end

-- Expect an environment error: nil, message, code.
function H.fails_with(code, p, msg, c)
  assert(p == nil, "expected nil, got " .. tostring(p))
  assert(type(msg) == "string" and #msg > 0,
    "expected an error message, got " .. tostring(msg))
  if type(code) == "table" then
    local okc = false
    for _, want in ipairs(code) do if c == want then okc = true end end
    assert(okc, ("expected one of codes {%s}, got %s (%s)"):format(
      table.concat(code, ","), tostring(c), msg))
  else
    assert(c == code, ("expected code %q, got %s (%s)"):format(
      code, tostring(c), msg))
  end
  return msg
end

---------------------------------------------------------------------------
-- pager state snapshots

function H.page_list(p)
  local ids = {}
  for id in p:pages() do ids[#ids + 1] = id end
  table.sort(ids)
  return ids
end

function H.page_set(p)
  local set = {}
  for id in p:pages() do set[id] = true end
  return set
end

-- Everything a commit defines, in a comparable table.
function H.state(p)
  local i = p:info()
  return {
    page_count = p:page_count(),
    free_count = p:free_count(),
    regular_count = i.regular_count,
    system_count = i.system_count,
    root = p:root(),
    txn = i.txn,
    pages = table.concat(H.page_list(p), ","),
  }
end

function H.barriers(p) return p:info().barriers end

-- Stamps: each page gets a recognisable pattern at its start and end.
function H.stamp(p, id, tag)
  local v = p:page(id)
  local s = string.pack("<I8", id) .. (tag or "stamp")
  v:write(0, s)
  v:write(#v - #s, s)
end

function H.stamp_ok(p, id, tag)
  local v = p:page(id)
  local s = string.pack("<I8", id) .. (tag or "stamp")
  return v:read(0, #s) == s and v:read(#v - #s, #s) == s
end

---------------------------------------------------------------------------
-- files and bytes

function H.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

function H.read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

function H.write_file(path, s)
  local f = assert(io.open(path, "wb"))
  assert(f:write(s))
  f:close()
end

function H.file_size(path)
  local f = assert(io.open(path, "rb"))
  local n = f:seek("end")
  f:close()
  return n
end

-- H.read_at(path, off, len) and H.write_at(path, off, s): spec/format.lua's,
-- below.

-- XOR the byte at off with mask (0xFF by default).
function H.flip(path, off, mask)
  local f = assert(io.open(path, "r+b"))
  f:seek("set", off)
  local b = f:read(1):byte()
  f:seek("set", off)
  f:write(string.char(b ~ (mask or 0xFF)))
  f:close()
end

function H.truncate(path, size)
  local s = H.read_file(path)
  if size <= #s then
    H.write_file(path, s:sub(1, size))
  else
    H.write_file(path, s .. string.rep("\0", size - #s))
  end
end

--- Run a shell command: its exit status and its output (stdout and
-- stderr together).
function H.sh(cmd)
  local f = assert(io.popen(cmd .. " 2>&1"))
  local out = f:read("a")
  local _, _, status = f:close()
  return status, out
end

function H.copy(src, dst)
  H.write_file(dst, H.read_file(src))
end

function H.u32(path, off) return (string.unpack("<I4", H.read_at(path, off, 4))) end
function H.u64(path, off) return (string.unpack("<i8", H.read_at(path, off, 8))) end
function H.set_u32(path, off, v) H.write_at(path, off, string.pack("<I4", v)) end
function H.set_u64(path, off, v) H.write_at(path, off, string.pack("<i8", v)) end

-- Deterministic pseudo-random bytes (independent of math.random state).
function H.garbage(n, seed)
  local x = seed or 12345
  local t = {}
  for i = 1, n do
    x = (x * 1103515245 + 12345) & 0x7fffffff
    t[i] = string.char((x >> 16) & 0xff)
  end
  return table.concat(t)
end

---------------------------------------------------------------------------
-- on-disk format (docs/FORMAT.md): spec/format.lua, the one reader and
-- forger of the format; the names the specs use from here

local F = require "format"
H.format = F
for _, k in ipairs({ "read_at", "write_at", "MAGIC", "BITMAP_TYPE", "INDEX_TYPE", "PAGE_SIZES", "ROOT",
                     "MORE_THAN_CARRIED", "META", "geometry", "group0_reserved",
                     "group_reserved", "root_crc", "meta_crc", "root_page", "root_field",
                     "fix_root_crc", "fix_meta_crc", "bitmap_page", "bitmap_state",
                     "root_carried", "durable_state", "set_bitmap_state", "forge_bitmap",
                     "forge_root" }) do
  H[k] = F[k]
end

---------------------------------------------------------------------------
-- child processes

-- Serialize a value as a Lua expression (integers in hex, so that every
-- 64-bit value survives): booleans, numbers, strings, tables of them.
local function serialize(v)
  local t = type(v)
  if t == "table" then
    local parts = {}
    for k, x in pairs(v) do parts[#parts + 1] = "[" .. serialize(k) .. "]=" .. serialize(x) end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif t == "string" then
    return ("%q"):format(v)
  elseif math.type(v) == "integer" then
    return ("0x%x"):format(v)
  else
    return tostring(v)
  end
end
H.serialize = serialize

-- The directory of the child programs: spec/children/ next to this file.
local CHILDREN = (debug.getinfo(1, "S").source:match("^@(.*)helpers%.lua$") or "spec/") .. "children/"
H.CHILDREN = CHILDREN

-- The one way the specs start a Lua child: run the Lua file script in a
-- separate lua5.4 process with this process's module paths, with argv
-- (strings) as its arg[1], ...; opts.timeout kills it (SIGKILL, status
-- 137) after that many seconds.  Returns its output (stdout and stderr)
-- and exit status.
local function spawn(script, argv, opts)
  local words = { "lua5.4", "-e",
    shell_quote(("package.path = %q; package.cpath = %q"):format(package.path, package.cpath)),
    shell_quote(script) }
  for _, a in ipairs(argv or {}) do words[#words + 1] = shell_quote(a) end
  local cmd = table.concat(words, " ")
  if opts and opts.timeout then cmd = ("timeout -s KILL %d %s"):format(opts.timeout, cmd) end
  local f = assert(io.popen(cmd .. " 2>&1"))
  local out = f:read("a")
  local _, _, status = f:close()
  return out, status
end

-- Run spec/children/<name>.lua with args (a table: H.serialize) as the
-- value of dofile(arg[1]); opts as for spawn.  Returns output, status.
function H.run_child(name, args, opts)
  local argfile = H.path(name .. ".args")
  H.write_file(argfile, "return " .. serialize(args or {}) .. "\n")
  return spawn(CHILDREN .. name .. ".lua", { argfile }, opts)
end

-- Run a few lines of Lua code in a child (spawn); returns its output and
-- exit status.
function H.run_lua(code, opts)
  local script = H.path("child.lua")
  H.write_file(script, code)
  return spawn(script, nil, opts)
end

-- Start Lua `code` in a background lua5.4 with this process's package
-- paths, its stdout and stderr going to out_path; returns the child's pid
-- (for H.kill9 and H.wait_gone).
function H.spawn_bg(code, out_path)
  local script = H.path("child" .. counter .. ".lua")
  counter = counter + 1
  H.write_file(script, ("package.path = %q\npackage.cpath = %q\n%s\n")
    :format(package.path, package.cpath, code))
  local f = assert(io.popen("lua5.4 " .. shell_quote(script) .. " > " .. shell_quote(out_path)
                            .. " 2>&1 & echo $!"))
  local pid = tonumber(f:read("l"))
  f:close()
  assert(pid, "could not start the child")
  return pid
end

-- Start spec/children/<name>.lua in the background with args (a table,
-- as for H.run_child), its output going to out_path; returns its pid.
function H.spawn_child_bg(name, args, out_path)
  local argfile = H.path(name .. counter .. ".args")
  counter = counter + 1
  H.write_file(argfile, "return " .. H.serialize(args or {}) .. "\n")
  return H.spawn_bg(("arg = { %q }\ndofile(%q)"):format(argfile, H.CHILDREN .. name .. ".lua"), out_path)
end

function H.kill9(pid) os.execute("kill -9 " .. pid .. " 2>/dev/null") end

-- Wait until the child has exited: gone, or a zombie (its files, and so
-- its locks, are released before it becomes one; here the zombie may wait
-- a while for its reaper).
function H.wait_gone(pid)
  for _ = 1, 500 do
    local f = io.open("/proc/" .. pid .. "/stat", "rb")
    if not f then return end
    local state = f:read("a"):match("^%d+ %b() (%a)")
    f:close()
    if state == "Z" or state == "X" then return end
    os.execute("sleep 0.01")
  end
  error("child " .. pid .. " did not exit")
end

-- Wait (up to 5 s) until the file out_path (a child's output) holds text.
function H.wait_output(out_path, text)
  for _ = 1, 500 do
    local f = io.open(out_path, "rb")
    local s = f and f:read("a") or ""
    if f then f:close() end
    if s:find(text, 1, true) then return s end
    os.execute("sleep 0.01")
  end
  error("the child never printed " .. text)
end

-- Run bin/mappedpages with args (the command-line tool, from the
-- repository root): its exit status, stdout and stderr; a Lua traceback
-- on stderr fails the test.
function H.run_cli(...)
  local words = {}
  for i, a in ipairs({...}) do words[i] = shell_quote(a) end
  local errpath = H.dir() .. "/stderr"
  local cmd = ("LUA_PATH_5_4=%s LUA_CPATH_5_4=%s bin/mappedpages %s 2>%s")
    :format(shell_quote(package.path), shell_quote(package.cpath), table.concat(words, " "),
            shell_quote(errpath))
  local f = assert(io.popen(cmd))
  local out = f:read("a")
  local _, _, status = f:close()
  local err = H.read_file(errpath) or ""
  if err:find("traceback", 1, true) then error("bin/mappedpages raised: " .. err, 2) end
  return status, out, err
end

-- In a child process, try to open path (optionally read-only); returns
-- "ok" or the error code the child saw.
function H.child_open(path, readonly)
  return (H.run_child("open_once", { path = path, readonly = readonly or false }))
end

-- Deterministic random numbers: r(n) gives an integer in 1..n.
function H.rng(seed)
  local x = seed or 1
  return function(n)
    x = (x * 6364136223846793005 + 1442695040888963407)
    return ((x >> 33) % n) + 1
  end
end

function H.sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

-- Open copies of path read-only and for writing in a child process and
-- read every page; raise if that crashed the child (a signal such as
-- SIGSEGV or SIGBUS), so that a hostile file fails one test instead of
-- killing the whole run.  Returns the child's output otherwise.
function H.assert_open_survives(path)
  local ro, rw = path .. ".probe-ro", path .. ".probe-rw"
  H.copy(path, ro)
  H.copy(path, rw)
  local out, status = H.run_child("open_survives", { ro = ro, rw = rw })
  os.remove(ro)
  os.remove(rw)
  if status ~= 0 or not out:find("done", 1, true) then
    error(("opening the file crashed or failed in a child process (exit status %s): %s")
      :format(tostring(status), out), 2)
  end
  return out
end

---------------------------------------------------------------------------
-- protected pages (spec/07, spec/08)

-- Allocated pids, sorted, as protected_pages() lists them.
function H.pid_list(p)
  local pids = {}
  for pid in p:protected_pages() do pids[#pids + 1] = pid end
  table.sort(pids)
  return pids
end

function H.pid_set(p)
  local set = {}
  for pid in p:protected_pages() do set[pid] = true end
  return set
end

-- Everything a commit defines, protected pages included: H.state plus the
-- protected counters and every allocated pid with a CRC32C of its bytes.
function H.pstate(p)
  local st = H.state(p)
  local i = p:info()
  st.protected_count = i.protected_count
  st.protected_pages = i.protected_pages
  st.pid_limit = i.pid_limit
  local sums = {}
  for _, pid in ipairs(H.pid_list(p)) do
    sums[#sums + 1] = ("%d=%08x"):format(pid, mp.crc32c(p:protected(pid):read()))
  end
  st.pids = table.concat(sums, ",")
  return st
end

-- A full page of n bytes nobody would write by chance: a 16-byte marker
-- naming tag, then pseudo-random bytes seeded by tag.  The marker lets a
-- spec find the page in the file (H.find_pages).
function H.pcontent(n, tag)
  local marker = ("<%-14s>"):format(tostring(tag)):sub(1, 16)
  local seed = mp.crc32c(tostring(tag)) & 0x7fffffff
  return marker .. H.garbage(n - 16, seed)
end

-- Replace pid's bytes from offset 0 with s through a writer and commit it;
-- returns writer:commit()'s results.
function H.pset(p, pid, s)
  local w = p:write_protected(pid)
  w:write(0, s)
  return w:commit()
end

-- A pager of page size P with some committed history (specs 07, 08): 3
-- stamped regular pages, pids 0..3 of which 0..2 hold
-- H.pcontent(P, "setup1".."setup3") and 3 was never written, root 5.
-- Returns p, path, pids, ids.
function H.protected_history(P)
  local p, path = H.create({ page_size = P })
  local ids = p:alloc_bulk(3)
  for _, id in ipairs(ids) do H.stamp(p, id) end
  local pids = {}
  for i = 1, 4 do pids[i] = p:alloc_protected() end
  for i = 1, 3 do H.pset(p, pids[i], H.pcontent(P, "setup" .. i)) end
  p:set_root(5)
  return p, path, pids, ids
end

-- Assert that p still shows what H.protected_history wrote.
function H.protected_history_ok(p, pids, ids)
  local P = p:info().page_size
  for i = 1, 3 do
    assert(p:protected(pids[i]):read() == H.pcontent(P, "setup" .. i), "pid " .. pids[i] .. " lost its content")
  end
  assert(p:protected(pids[4]):read() == string.rep("\0", P), "pid " .. pids[4] .. " is not zeros")
  for _, id in ipairs(ids) do assert(H.stamp_ok(p, id), "page " .. id .. " lost its stamp") end
end

-- Stamps for any view or writer (H.stamp works on regular pages by id).
function H.vstamp(v, key, tag)
  local s = string.pack("<I8", key) .. (tag or "stamp")
  v:write(0, s)
  v:write(#v - #s, s)
end

function H.vstamp_ok(v, key, tag)
  local s = string.pack("<I8", key) .. (tag or "stamp")
  return v:read(0, #s) == s and v:read(#v - #s, #s) == s
end

-- Page numbers of the pages of the file at path (page size P) whose first
-- bytes are prefix.
function H.find_pages(path, P, prefix)
  local s = H.read_file(path)
  local found = {}
  for off = 0, #s - P, P do
    if s:sub(off + 1, off + #prefix) == prefix then found[#found + 1] = off // P end
  end
  return found
end

H.unpack = unpack

return H
