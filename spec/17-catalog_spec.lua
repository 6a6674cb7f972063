-- 17-catalog: the file's named objects (mappedpages.catalog) and the
-- rules every named object shares (mappedpages.object, mappedpages.access).
--
-- The catalog owns the user root, grows past one page, keeps names in name
-- order, refuses a file whose root holds something else, and follows the
-- pager's transactions: a rollback restores it, a handle caches nothing.

local H = require "helpers"
local mp = H.mp
local catalog = require "mappedpages.catalog"
local object = require "mappedpages.object"
local access = require "mappedpages.access"

local function names(cat)
  local out = {}
  for name, kind, pid in cat:entries() do out[#out + 1] = {name, kind, pid} end
  return out
end

describe("the catalog", function()
  after_each(function() H.cleanup() end)

  it("is created on first open and owns the root", function()
    local p = H.create()
    assert.equal(0, p:root())
    local barriers = H.barriers(p)
    local cat = assert(catalog.open(p))
    assert.is_true(p:root() ~= 0)
    assert.equal(1, H.barriers(p) - barriers, "creation is one durable commit")
    assert.equal(1, p:info().protected_count)
    assert.same({}, names(cat))
    assert.is_true(cat:check())
  end)

  it("opens again without changing anything", function()
    local p = H.create()
    assert(catalog.open(p))
    local root, txn = p:root(), p:info().txn
    assert(catalog.open(p))
    assert.equal(root, p:root())
    assert.equal(txn, p:info().txn)
  end)

  it("creates names with zeroed anchor pages and finds them", function()
    local p = H.create()
    local cat = assert(catalog.open(p))
    local pid = assert(cat:create("scores", "mykind"))
    assert.equal(("\0"):rep(p:page_size()), p:protected(pid):read())
    assert.same({name = "scores", kind = "mykind", pid = pid}, cat:get("scores"))
    assert.is_nil(cat:get("other"))
  end)

  it("lists entries in name order", function()
    local p = H.create()
    local cat = assert(catalog.open(p))
    for _, n in ipairs({"delta", "alpha", "charlie", "bravo", "a\0b", "a"}) do
      cat:create(n, "k")
    end
    local got = {}
    for name in cat:entries() do got[#got + 1] = name end
    assert.same({"a", "a\0b", "alpha", "bravo", "charlie", "delta"}, got)
  end)

  it("grows past one page and shrinks back when names go", function()
    local p = H.create({page_size = 1024})
    local cat = assert(catalog.open(p))
    local pids = {}
    for i = 1, 40 do
      local name = ("object %03d "):format(i) .. ("x"):rep(200)
      pids[name] = assert(cat:create(name, "k"))
    end
    assert.is_true(cat:stats().pages >= 10)
    assert.is_true(cat:check())
    for name, pid in pairs(pids) do assert.equal(pid, cat:get(name).pid) end
    for name in pairs(pids) do cat:remove(name) end
    assert.equal(1, cat:stats().pages)
    assert.equal(0, cat:stats().objects)
    assert.equal(1, p:info().protected_count, "only the first page is left")
    assert.is_true(cat:check())
  end)

  it("keeps names of every length from 1 to 255 bytes and kinds up to 32", function()
    local p = H.create({page_size = 1024})
    local cat = assert(catalog.open(p))
    for len = 1, 255, 17 do cat:create(("n"):rep(len), ("k"):rep(len % 32 + 1)) end
    cat:create(("z"):rep(255), ("k"):rep(32))
    for len = 1, 255, 17 do
      assert.equal(("k"):rep(len % 32 + 1), cat:get(("n"):rep(len)).kind)
    end
    assert.is_true(cat:check())
  end)

  it("survives a reopen", function()
    local p, path = H.create({page_size = 1024})
    local cat = assert(catalog.open(p))
    for i = 1, 12 do cat:create("name" .. i .. ("-"):rep(150), "kind" .. i) end
    local before = names(cat)
    p = H.reopen(p, path)
    cat = assert(catalog.open(p))
    assert.same(before, names(cat))
    assert.is_true(cat:check())
  end)

  it("removes a name and frees its anchor page", function()
    local p = H.create()
    local cat = assert(catalog.open(p))
    local pid = cat:create("gone", "k")
    local count = p:info().protected_count
    assert.is_true(cat:remove("gone"))
    assert.is_nil(cat:get("gone"))
    assert.equal(count - 1, p:info().protected_count)
    H.raises_with("not allocated", p.protected, p, pid)
  end)

  it("makes each create and remove one durable commit outside a transaction", function()
    local p = H.create()
    local cat = assert(catalog.open(p))
    local b = H.barriers(p)
    cat:create("x", "k")
    assert.equal(b + 1, H.barriers(p))
    cat:remove("x")
    assert.equal(b + 2, H.barriers(p))
  end)

  it("joins the open transaction, and a rollback undoes it", function()
    local p = H.create()
    local cat = assert(catalog.open(p))
    cat:create("kept", "k")
    local tx = p:begin()
    cat:create("new", "k")
    cat:remove("kept")
    assert.is_nil(cat:get("kept"))
    assert.is_truthy(cat:get("new"))
    tx:rollback()
    assert.is_truthy(cat:get("kept"))
    assert.is_nil(cat:get("new"))
    assert.is_true(cat:check())
  end)

  it("rolls back its own creation inside a transaction, and is made again", function()
    local p = H.create()
    local tx = p:begin()
    local cat = assert(catalog.open(p))
    cat:create("a", "k")
    tx:rollback()
    assert.equal(0, p:root())
    assert.same({}, names(cat))
    assert.is_nil(cat:get("a"))
    -- the handle still works: the next create makes the catalog again
    assert(cat:create("b", "k"))
    assert.is_true(p:root() ~= 0)
    assert.is_true(cat:check())
  end)

  it("shows one state to two handles at once", function()
    local p = H.create()
    local a = assert(catalog.open(p))
    local b = assert(catalog.open(p))
    a:create("x", "k")
    assert.is_truthy(b:get("x"))
    b:remove("x")
    assert.is_nil(a:get("x"))
  end)

  it("refuses a file whose root was set to something else, and changes nothing", function()
    local p = H.create()
    p:set_root(12345)
    local txn = p:info().txn
    H.fails_with("not_catalog", catalog.open(p))
    assert.equal(12345, p:root())
    assert.equal(txn, p:info().txn)
    assert.equal(0, p:info().protected_count)
  end)

  it("refuses a root with the catalog's tag that points to another page", function()
    local p = H.create()
    local cat = assert(catalog.open(p))
    local other = cat:create("x", "k")   -- a zeroed page, not a catalog page
    local root = p:root()
    p:set_root((root >> 32 << 32) | other)
    H.fails_with("not_catalog", catalog.open(p))
    assert.equal((root >> 32 << 32) | other, p:root())
  end)

  it("raises when the root is changed under an open handle", function()
    local p = H.create()
    local cat = assert(catalog.open(p))
    p:set_root(7)
    H.raises_with({"catalog:get", "root"}, cat.get, cat, "x")
  end)

  it("is empty and refuses changes on a read-only pager of a file without one", function()
    local p, path = H.create()
    p:close()
    p = H.open(path, {readonly = true})
    local cat = assert(catalog.open(p))
    assert.same({}, names(cat))
    assert.is_nil(cat:get("x"))
    H.raises_with({"catalog:create", "read-only"}, cat.create, cat, "x", "k")
    assert.equal(0, p:root())
  end)

  it("reads a read-only file and refuses every change", function()
    local p, path = H.create()
    local cat = assert(catalog.open(p))
    cat:create("x", "k")
    p:close()
    p = H.open(path, {readonly = true})
    cat = assert(catalog.open(p))
    assert.equal("k", cat:get("x").kind)
    H.raises_with({"catalog:create", "read-only"}, cat.create, cat, "y", "k")
    H.raises_with({"catalog:remove", "read-only"}, cat.remove, cat, "x")
    assert.is_true(cat:check())
  end)

  it("raises for bad names and kinds, changing nothing", function()
    local p = H.create()
    local cat = assert(catalog.open(p))
    cat:create("x", "k")
    local txn = p:info().txn
    H.raises_with({"catalog:create", "name", "string"}, cat.create, cat, 5, "k")
    H.raises_with({"catalog:create", "1 to 255"}, cat.create, cat, "", "k")
    H.raises_with({"catalog:create", "1 to 255"}, cat.create, cat, ("n"):rep(256), "k")
    H.raises_with({"catalog:create", "kind"}, cat.create, cat, "y", nil)
    H.raises_with({"catalog:create", "1 to 32"}, cat.create, cat, "y", "")
    H.raises_with({"catalog:create", "1 to 32"}, cat.create, cat, "y", ("k"):rep(33))
    H.raises_with({"catalog:create", "exists"}, cat.create, cat, "x", "k")
    H.raises_with({"catalog:remove", "no object"}, cat.remove, cat, "missing")
    H.raises_with({"catalog:get", "string"}, cat.get, cat, {})
    H.raises_with({"catalog.open", "pager"}, catalog.open, "nope")
    assert.equal(txn, p:info().txn)
    assert.same({{"x", "k", cat:get("x").pid}}, names(cat))
  end)

  it("raises after its pager is closed", function()
    local p = H.create()
    local cat = assert(catalog.open(p))
    p:close()
    H.raises_with("closed", cat.get, cat, "x")
  end)

  it("check reports a damaged page precisely", function()
    local p = H.create()
    local cat = assert(catalog.open(p))
    cat:create("x", "k")
    local first = p:root() & 0xFFFFFFFF
    local w = p:write_protected(first)
    w:pack(12, "<I4", 5)          -- the entry count lies
    w:commit()
    local ok, problems = cat:check()
    assert.is_false(ok)
    assert.matches("catalog page " .. first .. ": 1 entries, header says 5", problems[1], 1, true)
  end)

  it("check reports an anchor that is not allocated", function()
    local p = H.create()
    local cat = assert(catalog.open(p))
    local pid = cat:create("x", "k")
    p:free_protected(pid)
    local ok, problems = cat:check()
    assert.is_false(ok)
    assert.matches("anchor " .. pid .. " is not an allocated protected page", problems[1], 1, true)
  end)

  it("returns no_space on a full disk and loses nothing", function()
    local dir = H.tmpdir()
    if not os.execute("mount -t tmpfs -o size=256k tmpfs " .. H.shell_quote(dir) .. " 2>/dev/null") then
      return pending("needs root to mount a small tmpfs")
    end
    local ok, err = pcall(function()
      local path = dir .. "/f.mp"
      local p = assert(mp.create(path, {page_size = 4096}))
      local cat = assert(catalog.open(p))
      cat:create("first", "k")
      while p:alloc() do end                    -- fill the disk
      local n, code, msg = 0
      repeat                                   -- every free page taken
        n = n + 1
        local pid
        pid, msg, code = cat:create("more" .. n .. ("-"):rep(250), "k")
      until not pid
      assert.equal("no_space", code, msg)
      assert.is_true(cat:check())
      local before = names(cat)
      local tx = p:begin()                     -- inside a transaction too
      H.fails_with("no_space", cat:create("in-tx" .. ("-"):rep(250), "k"))
      assert.same(before, names(cat))
      tx:commit()
      p:close()
      p = assert(mp.open(path))
      assert.same(before, names(assert(catalog.open(p))))
      p:close()
    end)
    os.execute("umount " .. H.shell_quote(dir))
    assert(ok, err)
  end)

  it("prints one line", function()
    local p = H.create()
    local cat = assert(catalog.open(p))
    cat:create("x", "k")
    assert.equal("mappedpages.Catalog: 1 object in 1 page", tostring(cat))
  end)

  it("is reachable as mp.catalog", function()
    assert.equal(catalog, mp.catalog)
  end)
end)

describe("named objects", function()
  after_each(function() H.cleanup() end)

  local function init_ok() return true end

  it("are created once and opened by name afterwards", function()
    local p = H.create()
    local pid, created = object.open(p, "thing", "kindA", "t.open", init_ok)
    assert.is_true(created)
    local pid2, created2 = object.open(p, "thing", "kindA", "t.open", init_ok)
    assert.equal(pid, pid2)
    assert.is_false(created2)
  end)

  it("make the file's first object and its catalog in one commit", function()
    local p = H.create()
    local b = H.barriers(p)
    assert(object.open(p, "thing", "kindA", "t.open", init_ok))
    assert.equal(b + 1, H.barriers(p))
    assert.is_truthy(catalog.open(p):get("thing"))
  end)

  it("leave no catalog behind when the file's first object fails to init", function()
    local p = H.create()
    H.fails_with("no_space", object.open(p, "thing", "kindA", "t.open",
      function() return nil, "no room", "no_space" end))
    assert.equal(0, p:root())
    assert.equal(0, p:info().protected_count)
  end)

  it("refuse a name that holds another kind", function()
    local p = H.create()
    object.open(p, "thing", "kindA", "t.open", init_ok)
    local msg = H.fails_with("kind", object.open(p, "thing", "kindB", "t.open", init_ok))
    assert.matches("kindA", msg)
  end)

  it("are not created on a read-only pager", function()
    local p, path = H.create()
    p:close()
    p = H.open(path, {readonly = true})
    H.fails_with("not_found", object.open(p, "thing", "kindA", "t.open", init_ok))
  end)

  it("roll back their creation when init fails", function()
    local p = H.create()
    assert(catalog.open(p))
    local count = p:info().protected_count
    H.fails_with("no_space", object.open(p, "thing", "kindA", "t.open",
      function() return nil, "no room", "no_space" end))
    assert.is_nil(catalog.open(p):get("thing"))
    assert.equal(count, p:info().protected_count)
  end)

  it("initialize a new anchor with a string", function()
    local p = H.create()
    local pid = assert(object.open(p, "thing", "kindA", "t.open", "MAGIC"))
    assert.equal("MAGIC\0", p:protected(pid):read(0, 6))
    local pid2, created = object.open(p, "thing", "kindA", "t.open", "OTHER")
    assert.equal(pid, pid2)
    assert.is_false(created)
    assert.equal("MAGIC", p:protected(pid):read(0, 5))
  end)

  it("check their names", function()
    local p = H.create()
    H.raises_with({"t.open", "1 to 255"}, object.open, p, "", "k", "t.open", init_ok)
    H.raises_with({"t.open", "string"}, object.open, p, 3, "k", "t.open", init_ok)
  end)

  it("are dropped with their pages, and a handle of a dropped object raises", function()
    local p = H.create()
    local pid = object.open(p, "thing", "kindA", "t.open", init_ok)
    local mt = {}
    local h = object.handle(mt, p, "thing", pid)
    object.check_handle(h, "t:use")
    local extra = p:alloc_protected()
    assert.is_true(object.drop(p, "thing", "kindA", "t.drop", function()
      return access.free_page(p, extra)
    end))
    H.raises_with({"t:use", "no longer exists"}, object.check_handle, h, "t:use")
    H.fails_with("not_found", object.drop(p, "thing", "kindA", "t.drop", init_ok))
  end)

  it("drop refuses another kind and changes nothing", function()
    local p = H.create()
    object.open(p, "thing", "kindA", "t.open", init_ok)
    H.fails_with("kind", object.drop(p, "thing", "kindB", "t.drop", init_ok))
    assert.is_truthy(catalog.open(p):get("thing"))
  end)

  it("a handle whose creation was rolled back raises", function()
    local p = H.create()
    local tx = p:begin()
    local pid = object.open(p, "thing", "kindA", "t.open", init_ok)
    local h = object.handle({}, p, "thing", pid)
    tx:rollback()
    H.raises_with("no longer exists", object.check_handle, h, "t:use")
  end)

  it("a method called with a dot instead of a colon raises naming it", function()
    H.raises_with({"t:use", "expected a handle"}, object.check_handle, 5, "t:use")
    H.raises_with({"t:use", "expected a handle"}, object.check_handle, {}, "t:use")
  end)

  it("a handle raises after its pager closed", function()
    local p = H.create()
    local pid = object.open(p, "thing", "kindA", "t.open", init_ok)
    local h = object.handle({}, p, "thing", pid)
    p:close()
    H.raises_with({"t:use", "closed"}, object.check_handle, h, "t:use")
  end)
end)

describe("access", function()
  after_each(function() H.cleanup() end)

  it("atomic commits its own transaction with one barrier", function()
    local p = H.create()
    local pid = p:alloc_protected()
    local b = H.barriers(p)
    assert.equal(7, access.atomic(p, function()
      access.writer(p, pid):write(0, "abc")
      access.writer(p, pid):write(3, "def")
      return 7
    end))
    assert.equal(b + 1, H.barriers(p))
    assert.equal("abcdef", p:protected(pid):read(0, 6))
  end)

  it("atomic rolls back on nil, msg, code and on errors", function()
    local p = H.create()
    local pid = p:alloc_protected()
    H.fails_with("x", access.atomic(p, function()
      access.writer(p, pid):write(0, "abc")
      return nil, "failed", "x"
    end))
    assert.equal("\0\0\0", p:protected(pid):read(0, 3))
    assert.has_error(function()
      access.atomic(p, function() access.writer(p, pid):write(0, "abc"); error("boom") end)
    end, nil)
    assert.equal("\0\0\0", p:protected(pid):read(0, 3))
    assert.is_false(p:in_transaction())
  end)

  it("atomic joins the caller's transaction", function()
    local p = H.create()
    local pid = p:alloc_protected()
    local tx = p:begin()
    access.atomic(p, function() access.writer(p, pid):write(0, "abc") return true end)
    assert.is_truthy(p:in_transaction())
    tx:rollback()
    assert.equal("\0\0\0", p:protected(pid):read(0, 3))
  end)

  it("gives one writer per page and transaction", function()
    local p = H.create()
    local pid = p:alloc_protected()
    local tx = p:begin()
    local w = access.writer(p, pid)
    assert.equal(w, access.writer(p, pid))
    tx:commit()
    tx = p:begin()
    assert.are_not.equal(w, access.writer(p, pid))
    assert.is_false(w:alive())
    tx:rollback()
  end)

  it("numbers transactions across reopens", function()
    local p, path = H.create()
    local n1 = access.atomic(p, function() return access.txn_number(p) end)
    local n2 = access.atomic(p, function() p:set_root(1) return access.txn_number(p) end)
    assert.is_true(n2 >= n1)
    p = H.reopen(p, path)
    local n3 = access.atomic(p, function() return access.txn_number(p) end)
    assert.is_true(n3 > n2)
  end)
end)

describe("inside the caller's transaction, a failure leaves nothing half done", function()
  after_each(function() H.cleanup() end)

  it("access.writer makes a writer again when someone ended it", function()
    local p = H.create()
    local pid = p:alloc_protected()
    local tx = p:begin()
    local w = access.writer(p, pid)
    w:write(0, "a")
    w:commit()                                -- ends the shared writer
    local w2 = access.writer(p, pid)
    assert.is_true(w2:alive())
    w2:write(1, "b")
    tx:commit()
    assert.equal("ab", p:protected(pid):read(0, 2))
  end)

  it("a full file: catalog create and remove change nothing", function()
    local p = H.create({page_size = 1024, max_bytes = 64 * 1024})
    local cat = assert(catalog.open(p))
    assert(cat:create("a", "k"))
    while p:alloc() do end                    -- no physical page left
    local count = p:info().protected_count
    local tx = p:begin()
    H.fails_with("full", cat:create("b", "k"))
    assert.equal(count, p:info().protected_count)
    H.fails_with("full", cat:remove("a"))
    assert.equal(count, p:info().protected_count)
    assert.is_true(cat:check())
    assert.is_truthy(cat:get("a"))
    assert.is_nil(cat:get("b"))
    assert(tx:commit())
    assert.is_true(cat:check())
  end)

  it("object.open takes the name out again when init fails", function()
    local p = H.create()
    assert(catalog.open(p))
    local count = p:info().protected_count
    local tx = p:begin()
    H.fails_with("no_space", object.open(p, "thing", "kindA", "t.open",
      function() return nil, "no room", "no_space" end))
    assert.is_nil(catalog.open(p):get("thing"))
    assert.equal(count, p:info().protected_count)
    assert(tx:commit())
    assert.is_nil(catalog.open(p):get("thing"))
  end)
end)

describe("the helpers every object uses", function()
  after_each(function() H.cleanup() end)

  it("access.stage: reads see staged values, apply writes them all", function()
    local p = H.create()
    local a, b = p:alloc_protected(), p:alloc_protected()
    access.atomic(p, function()
      local st = access.stage(p)
      assert.equal(0, st:get(a, 8, "<i8"))
      st:set(a, 8, "<i8", 5)
      st:add(a, 8, "<i8", 2)
      st:set(b, 0, "c3", "abc")
      assert.equal(7, st:get(a, 8, "<i8"))
      assert.equal(0, p:protected(a):unpack(8, "<i8"), "nothing written before apply")
      st:set(b, 100, "<I4", 9)
      st:forget(b)
      st:set(b, 0, "c3", "xyz")
      local ws = assert(st:apply())
      assert.is_truthy(ws[a] and ws[b])
      return true
    end)
    assert.equal(7, p:protected(a):unpack(8, "<i8"))
    assert.equal("xyz", p:protected(b):read(0, 3))
    assert.equal(0, p:protected(b):unpack(100, "<I4"), "forgotten fields are not written")
  end)

  it("access.stage: when a writer cannot be had, nothing is written", function()
    local p = H.create({page_size = 1024, max_bytes = 64 * 1024})
    local a, b = p:alloc_protected(), p:alloc_protected()
    H.pset(p, a, "A")
    H.pset(p, b, "B")
    while p:alloc() do end
    local tx = p:begin()
    local st = access.stage(p)
    st:set(a, 0, "c1", "x")
    st:set(b, 0, "c1", "y")
    H.fails_with("full", st:apply())
    assert.equal("A", p:protected(a):read(0, 1))
    assert.equal("B", p:protected(b):read(0, 1))
    tx:rollback()
  end)

  it("object.check_integer: integers within bounds", function()
    object.check_integer("t:alloc", "size", 1, 1, 10)
    object.check_integer("t:alloc", "size", 10, 1, 10)
    object.check_integer("t:read", "ref", math.maxinteger, 1)
    for _, bad in ipairs({0, 11, 1.5, "3", nil, {}}) do
      H.raises_with({"t:alloc", "size must be an integer from 1 to 10"},
                    object.check_integer, "t:alloc", "size", bad, 1, 10)
    end
    H.raises_with({"t:read", "ref must be an integer >= 1 (got 0)"}, object.check_integer, "t:read", "ref", 0, 1)
  end)

  it("object.check_span: offsets and lengths within an object", function()
    assert.equal(10, object.check_span("t:read", 10, 0))
    assert.equal(4, object.check_span("t:read", 10, 6))
    assert.equal(0, object.check_span("t:read", 10, 10))
    assert.equal(3, object.check_span("t:read", 10, 2, 3))
    H.raises_with({"t:read", "offset must be an integer from 0 to 10"}, object.check_span, "t:read", 10, 11)
    H.raises_with({"t:read", "offset"}, object.check_span, "t:read", 10, -1)
    H.raises_with({"t:read", "offset"}, object.check_span, "t:read", 10, "1")
    H.raises_with({"t:read", "length must be an integer from 0 to 4 at offset 6"},
                  object.check_span, "t:read", 10, 6, 5)
    H.raises_with({"t:read", "length"}, object.check_span, "t:read", 10, 0, 1.5)
  end)

  it("object.open and object.drop raise naming the function for a bad or closed pager", function()
    local init = function() return true end
    H.raises_with({"t.open", "pager expected (got nil)"}, object.open, nil, "x", "k", "t.open", init)
    H.raises_with({"t.drop", "pager expected (got number)"}, object.drop, 5, "x", "k", "t.drop", init)
    H.raises_with({"t.open", "pager expected (got userdata)"}, object.open, io.stdout, "x", "k", "t.open", init)
    local p = H.create()
    p:close()
    H.raises_with({"t.open", "closed"}, object.open, p, "x", "k", "t.open", init)
  end)

  it("object.contents gives read, write and size from one locate function", function()
    local p = H.create()
    local pid = object.open(p, "thing", "kindA", "t.open", function() return true end)
    local T = {}
    T.__index = T
    object.contents(T, "t", function(self, ref, fname)
      if ref ~= 1 then access.raise(fname, 2, "no ref %s", tostring(ref)) end
      return access.view(self.pager, self.pid), 100, 10
    end)
    local h = object.handle(T, p, "thing", pid)
    assert.equal(10, h:size(1))
    assert.is_true(h:write(1, 2, "abc"))
    assert.equal("\0\0abc\0\0\0\0\0", h:read(1))
    assert.equal("bc", h:read(1, 3, 2))
    assert.equal("abc", p:protected(pid):read(102, 3))
    H.raises_with({"t:read", "no ref 2"}, h.read, h, 2)
    H.raises_with({"t:write", "length must be an integer from 0 to 1 at offset 9"}, h.write, h, 1, 9, "ab")
    H.raises_with({"t:write", "data must be a string"}, h.write, h, 1, 0, 5)
    H.raises_with({"t:size", "expected a handle"}, h.size, 1)
    local tx = p:begin()
    h:write(1, 0, "zz")
    tx:rollback()
    assert.equal("\0\0abc", h:read(1, 0, 5))
  end)

  it("object.check_handle refuses mutation on a read-only pager", function()
    local p, path = H.create()
    local pid = object.open(p, "thing", "kindA", "t.open", function() return true end)
    p:close()
    p = H.open(path, {readonly = true})
    local h = object.handle({}, p, "thing", pid)
    object.check_handle(h, "t:read")
    H.raises_with({"t:write", "read-only"}, object.check_handle, h, "t:write", true)
  end)

  -- access.free_page fails only when memory runs out: simulated here.
  local function failing_free(after)
    local real, calls = access.free_page, 0
    access.free_page = function(...)
      calls = calls + 1
      if calls > after then return nil, "simulated: out of memory", "no_memory" end
      return real(...)
    end
    finally(function() access.free_page = real end)
  end

  it("access.new_page: a page and its writer, or nothing", function()
    local p = H.create({page_size = 1024, max_bytes = 64 * 1024})
    local tx = p:begin()
    local w = assert(access.new_page(p))
    assert.equal(w, access.writer(p, w:id()), "the transaction's writer")
    assert.equal(("\0"):rep(1024), w:read(0))
    while p:alloc() do end                    -- no physical page left
    local count = p:info().protected_count
    H.fails_with("full", access.new_page(p))
    assert.equal(count, p:info().protected_count, "the page was freed again")
    failing_free(0)
    local msg = H.fails_with("no_memory", access.new_page(p))
    assert.matches("cannot grow.*; freeing page %d+ failed too: simulated", msg)
    tx:rollback()
  end)

  it("access.free_pages frees a list of pages, stopping at a failure", function()
    local p = H.create()
    local pids = {p:alloc_protected(), p:alloc_protected(), p:alloc_protected()}
    local count = p:info().protected_count
    assert.is_true(access.free_pages(p, {pids[1]}))
    assert.is_true(access.free_pages(p, {}))
    assert.equal(count - 1, p:info().protected_count)
    failing_free(1)
    H.fails_with("no_memory", access.free_pages(p, {pids[2], pids[3]}))
    assert.equal(count - 2, p:info().protected_count)
  end)

  it("access.stage: new_page is freed again when apply fails", function()
    local p = H.create({page_size = 1024, max_bytes = 64 * 1024})
    local a = p:alloc_protected()
    while p:alloc() do end
    local count = p:info().protected_count
    local tx = p:begin()
    local st = access.stage(p)
    local new = assert(st:new_page())
    st:set(new, 0, "c1", "n")
    st:set(a, 0, "c1", "a")
    H.fails_with("full", st:apply())
    assert.equal(count, p:info().protected_count)
    assert.equal("\0", p:protected(a):read(0, 1))
    tx:rollback()
  end)

  it("access.stage: free frees after every writer is had and before any write", function()
    local p = H.create({page_size = 1024, max_bytes = 64 * 1024})
    local a, b, gone = p:alloc_protected(), p:alloc_protected(), p:alloc_protected()
    H.pset(p, a, "A")
    H.pset(p, b, "B")
    local count = p:info().protected_count
    local tx = p:begin()
    local st = access.stage(p)
    st:set(gone, 0, "c1", "x")
    st:free(gone)                             -- its staged fields are dropped
    H.raises_with({"stage:set", "to be freed"}, st.set, st, gone, 0, "c1", "y")
    st:set(a, 0, "c1", "a")
    failing_free(0)                           -- the free fails: nothing is written
    H.fails_with("no_memory", st:apply())
    assert.equal("A", p:protected(a):read(0, 1))
    assert.equal(count, p:info().protected_count)
    tx:rollback()
  end)

  it("access.stage: free, then a writer that cannot be had: nothing is freed", function()
    local p = H.create({page_size = 1024, max_bytes = 64 * 1024})
    local a, gone = p:alloc_protected(), p:alloc_protected()
    while p:alloc() do end
    local count = p:info().protected_count
    local tx = p:begin()
    local st = access.stage(p)
    st:free(gone)
    st:set(a, 0, "c1", "a")
    H.fails_with("full", st:apply())
    assert.equal(count, p:info().protected_count)
    tx:commit()
  end)

  it("access lists: push at either end, remove anywhere, walk both ways", function()
    local p = H.create({page_size = 1024})
    local owner, other = p:alloc_protected(), p:alloc_protected()
    local list = owner << 16 | 32             -- a list, and nodes in two pages
    local n1, n2, n3, n4 = owner << 16 | 64, other << 16 | 0, other << 16 | 512, owner << 16 | 80
    local function nodes() return (access.list(p, list)) end
    assert.same({}, nodes(), "a zeroed page holds empty lists")
    local function staged(fn)
      access.atomic(p, function()
        local st = access.stage(p)
        fn(st)
        return assert(st:apply())
      end)
    end
    staged(function(st)
      st:push_back(list, n1)
      st:push_front(list, n2)
      st:push_back(list, n3)
      assert.equal(n2, st:first(list))
    end)
    assert.same({n2, n1, n3}, nodes())
    staged(function(st) st:remove(list, n1) end)   -- the middle
    assert.same({n2, n3}, nodes())
    staged(function(st) st:push_front(list, n4) st:remove(list, n3) end)   -- the last
    assert.same({n4, n2}, nodes())
    assert.equal(n2, p:protected(owner):unpack(40, "<i8"), "the list's last")
    staged(function(st) st:remove(list, n4) st:remove(list, n2) end)
    assert.same({}, nodes())
    local first, last = p:protected(owner):unpack(32, "<i8 i8")
    assert.equal(0, first)
    assert.equal(0, last)
  end)

  it("access.list reports damage and never raises for it", function()
    local p = H.create({page_size = 1024})
    local pid = p:alloc_protected()
    local list, n1, n2 = pid << 16 | 0, pid << 16 | 100, pid << 16 | 200
    access.atomic(p, function()
      local st = access.stage(p)
      st:push_back(list, n1)
      st:push_back(list, n2)
      return assert(st:apply())
    end)
    local function damage(node, field, value)
      p:transaction(function()
        p:write_protected(node >> 16):pack((node & 0xFFFF) + field, "<i8", value)
      end)
    end
    local nodes, problem = access.list(p, list)
    assert.same({n1, n2}, nodes)
    assert.is_nil(problem)
    damage(n2, 8, n2)                         -- a wrong back link
    nodes, problem = access.list(p, list)
    assert.same({n1}, nodes)
    assert.matches("a bad link to " .. n2, problem)
    damage(n2, 8, n1)
    damage(n2, 0, n1)                         -- a loop
    assert.matches("a bad link", select(2, access.list(p, list)))
    damage(n2, 0, 999 << 16)                  -- a page that is not there
    assert.matches("a bad link", select(2, access.list(p, list)))
    damage(n2, 0, pid << 16 | 1020)           -- a node past the page's end
    assert.matches("a bad link", select(2, access.list(p, list)))
    damage(n2, 0, 0)
    damage(list, 8, n1)                       -- a wrong last node
    assert.matches("it ends at " .. n2, select(2, access.list(p, list)))
  end)

  it("object.chain lists a chain of pages and reports damage", function()
    local p = H.create()
    local a, b, c = p:alloc_protected(), p:alloc_protected(), p:alloc_protected()
    p:transaction(function()
      p:write_protected(a):pack(8, "<I4", c + 1)
      p:write_protected(c):pack(8, "<I4", b + 1)
    end)
    local pids, problem = object.chain(p, a, 8)
    assert.same({c, b}, pids)
    assert.is_nil(problem)
    assert.same({}, object.chain(p, b, 8))
    p:transaction(function() p:write_protected(b):pack(8, "<I4", c + 1) end)   -- a loop
    pids, problem = object.chain(p, a, 8)
    assert.same({c, b}, pids)
    assert.matches("page " .. c .. " .*a second time", problem)
    p:transaction(function() p:write_protected(b):pack(8, "<I4", 999) end)
    assert.matches("page 998 is not an allocated protected page", select(2, object.chain(p, a, 8)))
  end)

  it("object.describe makes a one-line tostring from stats()", function()
    local T = {}
    T.__index = T
    T.__tostring = object.describe("thing", "items")
    function T:stats()
      if self.broken then error("t:stats: gone", 0) end
      return {objects = 2, bytes = 105, pages = self.pages, efficiency = 0.0128}
    end
    local h = setmetatable({object_name = "x", pages = 2}, T)
    assert.equal('thing "x": 2 items, 105 bytes in 2 pages (efficiency 0.013)', tostring(h))
    h.pages = 1
    assert.matches('in 1 page %(', tostring(h))
    h.broken = true
    assert.equal('thing "x" (unusable: t:stats: gone)', tostring(h))
  end)

  it("object.drop frees the pages owned() lists after the name, and none on failure", function()
    local p = H.create({page_size = 1024, max_bytes = 64 * 1024})
    local pid = object.open(p, "thing", "kindA", "t.open", function() return true end)
    local extra = {p:alloc_protected(), p:alloc_protected()}
    local count = p:info().protected_count
    local seen
    local function owned(anchor)
      seen = anchor
      return extra
    end
    local regular = {}
    for id in function() return p:alloc() end do regular[#regular + 1] = id end
    local tx = p:begin()                      -- the catalog's writer cannot be had
    H.fails_with("full", object.drop(p, "thing", "kindA", "t.drop", owned))
    assert.equal(pid, seen)
    assert.equal(count, p:info().protected_count, "nothing freed")
    assert.is_truthy(catalog.open(p):get("thing"))
    tx:rollback()
    assert(p:free(regular[1]))                -- room again
    assert(p:free(regular[2]))
    assert.is_true(object.drop(p, "thing", "kindA", "t.drop", owned))
    assert.equal(count - 3, p:info().protected_count, "the anchor and both pages")
    assert.is_nil(catalog.open(p):get("thing"))
  end)

  it("object.drop passes on a failure of owned(), changing nothing", function()
    local p = H.create()
    object.open(p, "thing", "kindA", "t.open", function() return true end)
    local count = p:info().protected_count
    H.fails_with("no_space", object.drop(p, "thing", "kindA", "t.drop",
                                         function() return nil, "no room", "no_space" end))
    assert.is_truthy(catalog.open(p):get("thing"))
    assert.equal(count, p:info().protected_count)
  end)

  it("access free lists: freed now at the tail until the next transaction", function()
    local p = H.create({page_size = 1024})
    local pid = p:alloc_protected()
    local list = pid << 16 | 0
    local a, b, c = pid << 16 | 100, pid << 16 | 200, pid << 16 | 300
    local function staged(fn)
      return access.atomic(p, function()
        local st = access.stage(p)
        local result = fn(st)
        assert(st:apply())
        return result or true
      end)
    end
    staged(function(st) st:push_free(list, a, true) end)     -- freed in an earlier one
    local tx = p:begin()
    staged(function(st)
      st:push_free(list, b, true)                             -- freed now: at the tail
      st:push_free(list, c, false)                            -- usable at once: the head
    end)
    assert.same({c, a, b}, (access.list(p, list)))
    assert.equal(c, staged(function(st) return st:first_usable(list) end))
    staged(function(st) st:remove(list, c) st:remove(list, a) end)
    assert.is_true(staged(function(st) return st:first_usable(list) == nil end),
                   "b was freed by this transaction")
    assert(tx:commit())
    assert.equal(b, staged(function(st) return st:first_usable(list) end))
    local n = access.atomic(p, function() return access.txn_number(p) end)
    assert.is_true(p:protected(pid):unpack(200 + 16, "<i8") < n, "stamped when freed")
  end)

  it("access.check_lists reports what is not where it should be", function()
    local p = H.create({page_size = 1024})
    local pid = p:alloc_protected()
    local one, two = pid << 16 | 0, pid << 16 | 16
    local a, b = pid << 16 | 100, pid << 16 | 200
    access.atomic(p, function()
      local st = access.stage(p)
      st:push_back(one, a)
      st:push_back(two, b)
      return assert(st:apply())
    end)
    local function problems(expected)
      local bad, verdict = object.problems()
      access.check_lists(p, {one, two}, expected, bad)
      local ok, list = verdict()
      return ok, list and table.concat(list, "; ")
    end
    assert.is_true(problems({[a] = one, [b] = two}))
    local at = function(x) return ("%d:%d"):format(x >> 16, x & 0xFFFF) end
    local ok, msg = problems({[a] = one, [b] = one})
    assert.is_false(ok)
    assert.matches("list " .. at(two) .. ": " .. at(b) .. " should not be on it", msg, 1, true)
    local c = pid << 16 | 300
    ok, msg = problems({[a] = one, [b] = two, [c] = two})
    assert.is_false(ok)
    assert.equal(at(c) .. " is on no list (should be on " .. at(two) .. ")", msg)
    assert.matches("should not be on it", select(2, problems({[a] = one})))
    p:transaction(function() p:write_protected(pid):pack(200 + 8, "<i8", a) end)
    assert.matches("list " .. at(two) .. ": a bad link", select(2, problems({[a] = one, [b] = two})),
                   1, true)
  end)

  it("object pages: added first, listed, owned, removed, dropped", function()
    local p = H.create({page_size = 1024})
    local anchor = object.open(p, "thing", "kindA", "t.open", "ANCHOR")
    local h = object.handle({}, p, "thing", anchor)
    local count = p:info().protected_count
    local one, two, three = access.atomic(p, function()
      local st = access.stage(p)
      local a = assert(object.add_page(st, anchor, "PAGE"))
      local b = assert(object.add_page(st, anchor, "PAGE"))
      local c = assert(object.add_page(st, anchor, "PAGE"))
      assert(st:apply())
      return a, b, c
    end)
    assert.same({three, two, one}, (object.pages(p, anchor)))
    assert.equal("PAGE", p:protected(one):read(0, 4))
    assert.equal(anchor, p:protected(one):unpack(12, "<I4"))
    assert.is_truthy(object.own_page(h, two, "PAGE", "t:read", 5))
    assert.is_nil(object.own_page(h, two, "OTHER", "t:read", 5))
    assert.is_nil(object.own_page(h, 999, "PAGE", "t:read", 5))
    assert.is_nil(object.own_page(h, anchor, "PAGE", "t:read", 5))
    access.atomic(p, function()                      -- the middle one, then the first
      local st = access.stage(p)
      object.remove_page(st, anchor, two)
      assert(st:apply())
      st = access.stage(p)
      object.remove_page(st, anchor, three)
      return assert(st:apply())
    end)
    assert.same({one}, (object.pages(p, anchor)))
    assert.equal(count + 1, p:info().protected_count)
    local other = object.open(p, "other", "kindA", "t.open", "ANCHOR")
    p:transaction(function() p:write_protected(one):pack(12, "<I4", other) end)
    local function via_method() return object.own_page(h, one, "PAGE", "t:read", 5) end
    H.raises_with({"t:read", "ref 5 belongs to another object, not to \"thing\""},
                  function() return via_method() end)
    assert.matches("page " .. one .. " has a bad magic or owner",
                   select(2, object.pages(p, anchor, "PAGE")))
    assert.is_nil(select(2, object.pages(p, anchor)), "no magic given: no owner checked")
    assert.is_true(object.drop(p, "thing", "kindA", "t.drop"))   -- its pages by default
    assert.equal(count - 1 + 1, p:info().protected_count, "the other object's anchor is left")
    assert.is_nil(catalog.open(p):get("thing"))
  end)

  it("object.stats and object.problems", function()
    assert.same({objects = 2, bytes = 100, pages = 4, page_bytes = 4096, efficiency = 100 / 4096,
                 extra = true}, object.stats(2, 100, 4, 1024, {extra = true}))
    assert.same({objects = 0, bytes = 0, pages = 1, page_bytes = 1024, efficiency = 0},
                object.stats(0, 0, 1, 1024))
    local bad, verdict = object.problems()
    assert.is_true(verdict())
    bad("page %d: %s", 7, "broken")
    bad("again")
    local ok, problems = verdict()
    assert.is_false(ok)
    assert.same({"page 7: broken", "again"}, problems)
  end)
end)
