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
end)
