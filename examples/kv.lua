-- examples/kv.lua -- a persistent key/value store with a tiny command line.
--
-- A file holds string keys and string values, kept in key order (bytes) by
-- one mappedpages.btree named "kv" in the file's catalog.  Run it from the
-- repository root after `make`:
--
--   lua5.4 examples/kv.lua FILE put KEY VALUE   store VALUE under KEY (makes FILE if new)
--   lua5.4 examples/kv.lua FILE get KEY         print KEY's value
--   lua5.4 examples/kv.lua FILE del KEY         remove KEY
--   lua5.4 examples/kv.lua FILE list [PREFIX]   print every key starting with PREFIX,
--                                               in order, as key<TAB>value lines
--   lua5.4 examples/kv.lua FILE import TSV      store every key<TAB>value line of TSV
--
-- Exit status: 0 done; 1 with a message on stderr when a key is missing (get,
-- del), a line of TSV is malformed, or the file cannot be used; 2 with the
-- usage on stderr for a bad command line.
--
-- How it uses mappedpages:
-- - Keys are the B-tree's keys (1 to max_key bytes: 1,337 with 4 KiB pages).
--   Values sit beside them in the leaves; a large value (past a third of a
--   page) goes to the tree's own heap, so a value can be of any size.
-- - put and del are each a transaction of their own: durable when they
--   return, with one barrier for a small value.
-- - import runs every put inside one pager:transaction.  A malformed line
--   raises inside it, the transaction rolls back, and the file keeps exactly
--   what it had: nothing of the file is imported.  A file of a million lines
--   is one commit too.
-- - list is one range scan, lo = PREFIX, hi = the smallest string greater
--   than every string that starts with PREFIX (next_prefix below).
-- - get and list open the file read-only: they run beside a writer.

if arg and arg[0] and debug.getinfo(1, "S").source == "@" .. arg[0] then
  package.path = "lua/?.lua;lua/?/init.lua;" .. package.path   -- the in-tree modules
  package.cpath = "build/?.so;" .. package.cpath
end
local mp = require "mappedpages"

local USAGE = [[
usage: lua5.4 examples/kv.lua FILE put KEY VALUE
       lua5.4 examples/kv.lua FILE get KEY
       lua5.4 examples/kv.lua FILE del KEY
       lua5.4 examples/kv.lua FILE list [PREFIX]
       lua5.4 examples/kv.lua FILE import TSV]]

-- Each command: fewest and most arguments, and how it opens the file.
local COMMANDS = {
  put = {2, 2, "create"}, get = {1, 1, "read"}, del = {1, 1, "write"},
  list = {0, 1, "read"}, import = {1, 1, "create"},
}

local function fail(fmt, ...)
  io.stderr:write("kv: ", fmt:format(...), "\n")
  return 1
end

-- The smallest string greater than every string that starts with prefix:
-- drop trailing \255 bytes, then add one to the last byte.  nil when
-- nothing is left (prefix is empty or all \255): no upper bound.
local function next_prefix(prefix)
  local stem = prefix:gsub("\255+$", "")
  if stem == "" then return nil end
  return stem:sub(1, -2) .. string.char(stem:byte(-1) + 1)
end

-- The pager and the tree (nil for a read-only file that has none yet), or
-- nil, msg.
local function open_store(path, mode)
  local f = io.open(path, "rb")
  if f then f:close() end
  local pager, msg
  if f then
    pager, msg = mp.open(path, {readonly = mode == "read"})
  elseif mode == "create" then
    pager, msg = mp.create(path)
  else
    return nil, path .. ": no such file"
  end
  if not pager then return nil, msg end
  local tree, tmsg, code = mp.btree.open(pager, "kv")
  if not tree and code ~= "not_found" then
    pager:close()
    return nil, tmsg
  end
  return pager, tree
end

-- import: every line of file as a put, all in one transaction.
local function import(pager, tree, file, maxkey)
  local f, msg = io.open(file, "rb")
  if not f then return fail("%s", msg) end
  local ok, done, cmsg = pcall(pager.transaction, pager, function()
    local n = 0
    for line in f:lines() do
      n = n + 1
      local key, value = line:match("^([^\t]*)\t(.*)$")
      if not key then
        error(("%s:%d: expected key<TAB>value"):format(file, n), 0)
      elseif #key < 1 or #key > maxkey then
        error(("%s:%d: a key is 1 to %d bytes (got %d)"):format(file, n, maxkey, #key), 0)
      end
      local put, pmsg = tree:put(key, value)
      if not put then error(("%s:%d: %s"):format(file, n, pmsg), 0) end
    end
    return true
  end)
  f:close()
  if not ok then return fail("%s; nothing imported", done) end
  if not done then return fail("%s; nothing imported", cmsg) end
  return 0
end

local function main(argv)
  local path, cmd, a, b = argv[1], argv[2], argv[3], argv[4]
  local spec = COMMANDS[cmd]
  if not spec or #argv - 2 < spec[1] or #argv - 2 > spec[2] then
    io.stderr:write(USAGE, "\n")
    return 2
  end
  local pager <close>, tree = open_store(path, spec[3])
  if not pager then return fail("%s", tree) end
  local maxkey = mp.btree.max_key_for(pager:page_size())
  if cmd == "list" then
    if tree then
      for k, v in tree:range(a or "", next_prefix(a or "")) do io.write(k, "\t", v, "\n") end
    end
    return 0
  elseif cmd == "import" then
    return import(pager, tree, a, maxkey)
  elseif #a < 1 or #a > maxkey then
    return fail("a key is 1 to %d bytes (got %d)", maxkey, #a)
  end
  if cmd == "get" then
    local v = tree and tree:get(a)
    if v == nil then return fail("%s: no such key", a) end
    io.write(v, "\n")
  elseif cmd == "put" then
    local ok, msg = tree:put(a, b)
    if not ok then return fail("%s", msg) end
  else
    local found, msg = tree:delete(a)
    if found == nil then return fail("%s", msg) end
    if not found then return fail("%s: no such key", a) end
  end
  return 0
end

os.exit(main(arg))
