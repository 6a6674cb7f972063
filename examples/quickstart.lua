-- examples/quickstart.lua -- a first tour of mappedpages.
--
-- Run it from the repository root with `make demo`, or by hand after `make`:
--   LUA_PATH_5_4='lua/?.lua;lua/?/init.lua;;' LUA_CPATH_5_4='build/?.so;;' \
--     lua5.4 examples/quickstart.lua
--
-- It creates a file in the temp directory, allocates pages, writes and packs
-- values into them, runs one transaction that rolls back and one that
-- commits, reopens the file to show what persisted, and removes the file.

local mp = require "mappedpages"

local function section(title)
  print(("\n-- %s %s"):format(title, ("-"):rep(60 - #title)))
end

-- A fresh file name.  os.tmpname() reserves a name by creating an empty
-- file; mp.create refuses a path that exists, so ours goes next to it.
-- This to-be-closed value removes both when the script ends, error or not
-- (it is declared first, so it is closed last, after every pager).
local stem = os.tmpname()
local path = stem .. ".mp"
local _ <close> = setmetatable({}, {
  __close = function()
    os.remove(path)
    os.remove(stem)
  end,
})

local first_page, saved_page

do
  section("create")
  -- A new file; page sizes are powers of two from 1024 to 65536.
  -- `<close>` closes the pager at the end of this block (close is idempotent,
  -- and the garbage collector would get to it too).
  local pager <close> = assert(mp.create(path, {page_size = 4096}))
  print(pager)
  print("page size", pager:page_size(), "pages", pager:page_count(),
        "free", pager:free_count())

  -- Failures of the environment return nil, message, code (like io.open)...
  local again, msg, code = mp.create(path)
  print("create again:", again, msg, code)
  -- ...while misuse raises an error naming the function and the problem.
  print("free(0):", pcall(function() pager:free(0) end))

  section("regular pages")
  -- Ids are physical page numbers.  Each alloc outside a transaction is its
  -- own transaction, durable when it returns.
  first_page = pager:alloc()
  local more = pager:alloc_bulk(3)
  print("allocated page", first_page, "and pages", table.concat(more, ", "))

  -- A view reads and writes the page in place; offsets are 0-based.
  local page = pager:page(first_page)
  print("view of page", page:id(), "is", #page, "bytes")
  page:fill(0)
  page:write(0, "hello, pages")
  -- pack/unpack take string.pack formats and work in place.
  local next_off = page:pack(16, "<i8 d s1", 42, 3.25, "packed in place")
  print("packed up to offset", next_off)
  print("read:", page:read(0, 12))
  print("unpack:", page:unpack(16, "<i8 d s1"))

  -- Regular-page contents are not transactional, but every write made
  -- before a commit is durable when that commit returns.
  pager:free_bulk(more)
  print("after free_bulk, allocated regular pages:")
  for id in pager:pages() do print("  page", id) end

  section("a transaction that rolls back")
  local free_before, root_before = pager:free_count(), pager:root()
  do
    local tx <close> = pager:begin()  -- every mutation now joins tx
    local scratch = pager:alloc_bulk(5)
    pager:set_root(scratch[1])
    print("inside: root", pager:root(), "free", pager:free_count())
    tx:rollback()                     -- <close> without commit would too
  end
  print("after rollback: root", pager:root(), "free", pager:free_count(),
        "(unchanged: " .. tostring(pager:root() == root_before
                                   and pager:free_count() == free_before) .. ")")

  section("a transaction that commits")
  -- Protected pages have their own ids and atomic, durable updates.
  -- pager:transaction(fn) commits when fn returns and rolls back (and
  -- rethrows) when it raises.  One durability barrier for all of it.
  print("root before", pager:root(), "(0: nothing saved yet)")
  saved_page = pager:transaction(function()
    local pid = pager:alloc_protected()
    local w = pager:write_protected(pid)  -- writes the transaction's copy
    w:pack(0, "<i8 s1", 1, "first save")
    -- The user root is one integer. Protected ids start at 0, so we store
    -- pid + 1 and keep 0 for "nothing saved".
    pager:set_root(pid + 1)
    return pid
  end)
  print("committed protected page", saved_page, "root", pager:root())
  print("protected reads:", pager:protected(saved_page):unpack(0, "<i8 s1"))

  -- The same through pager:transaction, but fn raises: all of it undone.
  local ok, err = pcall(pager.transaction, pager, function()
    pager:write_protected(saved_page):pack(0, "<i8 s1", 2, "never saved")
    pager:alloc()
    error("something went wrong", 0)
  end)
  print("failed transaction:", ok, err)
  print("protected still reads:", pager:protected(saved_page):unpack(0, "<i8 s1"))

  -- Outside a transaction a writer is a private copy until writer:commit().
  do
    local w <close> = pager:write_protected(saved_page)
    w:pack(0, "<i8 s1", 2, "second save")
    print("before writer:commit:", pager:protected(saved_page):unpack(0, "<i8 s1"))
    w:commit()
  end
  print("after writer:commit:", pager:protected(saved_page):unpack(0, "<i8 s1"))
  print(("barriers so far: %d for %d commits"):format(pager:info().barriers,
                                                     pager:info().commits))
end -- pager closed here

do
  section("reopen (read-only)")
  local pager <close> = assert(mp.open(path, {readonly = true}))
  print(tostring(pager))
  local saved = pager:root() - 1         -- the root holds pid + 1
  print("root", pager:root(), "-> protected page", saved, "(saved before: " .. saved_page .. ")")
  print("protected:", pager:protected(saved):unpack(0, "<i8 s1"))
  for pid in pager:protected_pages() do print("  protected page", pid) end
  print("regular page", first_page, "reads:", pager:page(first_page):read(0, 12))
  local ok, msg = pcall(pager.alloc, pager)
  print("alloc on a read-only pager raises:", not ok, msg)

  section("info")
  local info = pager:info()
  local keys = {}
  for k in pairs(info) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    print(("  %-16s %s"):format(k, tostring(info[k])))
  end
end

print("\ndone; removed " .. path)
