-- 21-arena: examples/arena.lua, the arena of docs/ALLOCATORS.md.
--
-- Every function and error path, persistence across reopen, rollback in
-- the middle of a transaction, two handles, a full file inside the
-- caller's transaction, and a seeded random model test with reopens and
-- rollbacks, check() throughout.

local H = require "helpers"
local access = require "mappedpages.access"
local object = require "mappedpages.object"
local catalog = require "mappedpages.catalog"

package.path = "examples/?.lua;" .. package.path
local arena = require "arena"

local P = 1024
local MAX = P - 36                 -- the page minus its header and one entry

local function new(name, opts)
  local p, path = H.create(opts or {page_size = P})
  return assert(arena.open(p, name or "a")), p, path
end

local function ok_check(a)
  local ok, problems = a:check()
  assert(ok, problems and table.concat(problems, "; "))
end

describe("arena", function()
  after_each(function() H.cleanup() end)

  describe("open and drop", function()
    it("creates an arena once, then opens it by name", function()
      local p = H.create({page_size = P})
      assert(catalog.open(p))                  -- the file's first object makes it
      local b = H.barriers(p)
      local a = assert(arena.open(p, "a"))
      assert.equal(1, H.barriers(p) - b, "creation is one durable commit")
      local txn = p:info().txn
      local a2 = assert(arena.open(p, "a"))
      assert.equal(txn, p:info().txn, "opening changes nothing")
      assert.equal(a.pid, a2.pid)
      assert.equal("example.arena/2", catalog.open(p):get("a").kind)
      assert.equal(arena.KIND, catalog.open(p):get("a").kind)
      ok_check(a)
    end)

    it("refuses a name of another kind, and a missing name on a read-only pager", function()
      local p, path = H.create({page_size = P})
      assert(object.open(p, "other", "something", "t.open", function() return true end))
      assert.matches("something", H.fails_with("kind", arena.open(p, "other")))
      p:close()
      p = H.open(path, {readonly = true})
      H.fails_with("not_found", arena.open(p, "a"))
    end)

    it("raises for a bad pager or name", function()
      H.raises_with({"arena.open", "pager expected"}, arena.open, nil, "a")
      local p = H.create({page_size = P})
      H.raises_with({"arena.open", "1 to 255"}, arena.open, p, "")
      H.raises_with({"arena.open", "string"}, arena.open, p, 42)
    end)

    it("drop frees every page, and a dropped handle raises", function()
      local a, p = new()
      local base = p:info().protected_count
      for _ = 1, 20 do a:alloc(500) end
      assert.is_true(p:info().protected_count > base)
      assert.is_true(arena.drop(p, "a"))
      assert.equal(base - 1, p:info().protected_count)   -- the anchor too
      H.raises_with({"arena:alloc", "no longer exists"}, a.alloc, a, 1)
      H.raises_with({"arena:read", "no longer exists"}, a.read, a, 1)
      H.raises_with({"arena:stats", "no longer exists"}, a.stats, a)
      assert.matches("unusable", tostring(a))
      H.fails_with("not_found", arena.drop(p, "a"))
      assert(object.open(p, "k", "something", "t.open", function() return true end))
      H.fails_with("kind", arena.drop(p, "k"))
      assert.is_true(catalog.open(p):check())
    end)

    it("a handle whose creation was rolled back raises", function()
      local p = H.create({page_size = P})
      local tx = p:begin()
      local a = assert(arena.open(p, "a"))
      a:alloc(10)
      tx:rollback()
      H.raises_with({"arena:alloc", "no longer exists"}, a.alloc, a, 1)
      assert.is_nil(catalog.open(p):get("a"))
    end)

    it("use after the pager closed raises", function()
      local a, p = new()
      local r = a:alloc(3)
      p:close()
      H.raises_with({"arena:read", "closed"}, a.read, a, r)
      H.raises_with({"arena:alloc", "closed"}, a.alloc, a, 3)
      H.raises_with({"arena:check", "closed"}, a.check, a)
      assert.matches("unusable", tostring(a))
    end)

    it("a method called with a dot raises naming it", function()
      local a = new()
      H.raises_with({"arena:alloc", "expected a handle"}, a.alloc, 5)
    end)
  end)

  describe("alloc, read, write, size", function()
    it("hands out distinct positive integer refs whose objects read as zeros", function()
      local a = new()
      local seen = {}
      for i = 1, 50 do
        local r = a:alloc(i * 7)
        assert.equal("integer", math.type(r))
        assert.is_true(r > 0)
        assert.is_nil(seen[r])
        seen[r] = true
        assert.equal(i * 7, a:size(r))
        assert.equal(("\0"):rep(i * 7), a:read(r))
      end
      ok_check(a)
    end)

    it("takes sizes from 1 to the page payload and refuses others", function()
      local a = new()
      assert.equal(1, a:size(a:alloc(1)))
      assert.equal(MAX, a:size(a:alloc(MAX)))
      assert.equal(MAX, a:stats().max_size)
      for _, bad in ipairs({0, -1, MAX + 1, 1.5, "5", nil, {}}) do
        H.raises_with({"arena:alloc", "size must be an integer from 1 to " .. MAX}, a.alloc, a, bad)
      end
      ok_check(a)
    end)

    it("reads and writes within an object", function()
      local a = new()
      local r = a:alloc(10)
      assert.is_true(a:write(r, 0, "0123456789"))
      assert.is_true(a:write(r, 3, "abc"))
      assert.is_true(a:write(r, 10, ""))
      assert.equal("012abc6789", a:read(r))
      assert.equal("abc6789", a:read(r, 3))
      assert.equal("ab", a:read(r, 3, 2))
      assert.equal("", a:read(r, 10))
      assert.equal("", a:read(r, 4, 0))
      local r2 = a:alloc(5)          -- its neighbour is untouched
      assert.equal(("\0"):rep(5), a:read(r2))
      assert.equal("012abc6789", a:read(r))
    end)

    it("raises for offsets, lengths and data out of range or of the wrong type", function()
      local a = new()
      local r = a:alloc(10)
      local cases = {
        {a.read, r, -1}, {a.read, r, 11}, {a.read, r, 5, 6}, {a.read, r, 0, -1},
        {a.read, r, "0"}, {a.read, r, 0, 1.5}, {a.write, r, 8, "abc"}, {a.write, r, -1, "a"},
        {a.write, r, nil, "a"}, {a.write, r, 0.5, "a"},
      }
      for _, c in ipairs(cases) do
        local fname = c[1] == a.read and "arena:read" or "arena:write"
        H.raises_with({fname, "must be an integer from 0 to"}, c[1], a, c[2], c[3], c[4])
      end
      H.raises_with({"arena:read", "offset must be an integer from 0 to 10 (got 11)"}, a.read, a, r, 11)
      H.raises_with({"arena:write", "length must be an integer from 0 to 2 at offset 8 (got 3)"},
                    a.write, a, r, 8, "abc")
      H.raises_with({"arena:write", "data must be a string"}, a.write, a, r, 0, 5)
      assert.equal(("\0"):rep(10), a:read(r))
    end)

    it("raises for refs that are not its objects", function()
      local a, p = new()
      local b = assert(arena.open(p, "b"))
      local r = a:alloc(8)
      local rb = b:alloc(8)
      for _, bad in ipairs({0, -5, 1.0, "1", nil, true}) do
        H.raises_with({"arena:read", "ref must be an integer >= 1"}, a.read, a, bad)
      end
      H.raises_with({"arena:size", "belongs to another object"}, a.size, a, rb)
      H.raises_with({"arena:write", "belongs to another object"}, a.write, a, rb, 0, "x")
      H.raises_with({"arena:read", "is not an object"}, a.read, a, r + 1)       -- next slot
      H.raises_with({"arena:read", "is not an object"}, a.read, a, r + (1 << 48)) -- wrong tag
      H.raises_with({"arena:read", "is not an object"}, a.read, a, 999 << 16)   -- no such pid
      H.raises_with({"arena:read", "is not an object"}, a.read, a, a.pid << 16) -- the anchor
      local bud = assert(require("buddy").open(p, "a buddy"))
      H.raises_with({"arena:read", "is not an object"}, a.read, a, bud:alloc(8)) -- another kind's
      assert.equal(("\0"):rep(8), b:read(rb))
    end)

    it("fills pages and chains new ones", function()
      local a = new()
      local refs = {}
      for i = 1, 30 do refs[i] = a:alloc(300) end    -- 3 per page
      local s = a:stats()
      assert.equal(30, s.objects)
      assert.equal(9000, s.bytes)
      assert.equal(11, s.pages)                       -- 10 data pages and the anchor
      assert.equal(11 * P, s.page_bytes)
      assert.equal(9000 / (11 * P), s.efficiency)
      for i, r in ipairs(refs) do a:write(r, 0, ("%03d"):format(i)) end
      for i, r in ipairs(refs) do assert.equal(("%03d"):format(i), a:read(r, 0, 3)) end
      ok_check(a)
    end)

    it("prints one line", function()
      local a = new("scratch")
      a:alloc(100)
      assert.equal('arena "scratch": 1 objects, 100 bytes in 2 pages (efficiency 0.049)', tostring(a))
    end)
  end)

  describe("reset", function()
    it("frees every page in one transaction, and old refs raise", function()
      local a, p = new()
      local base = p:info().protected_count
      local refs = {}
      for i = 1, 20 do refs[i] = a:alloc(200) end
      local b = H.barriers(p)
      assert.is_true(a:reset())
      assert.equal(1, H.barriers(p) - b)
      assert.equal(base, p:info().protected_count)
      assert.same({objects = 0, bytes = 0, pages = 1, page_bytes = P, efficiency = 0, max_size = MAX}, a:stats())
      for _, r in ipairs(refs) do H.raises_with({"arena:read", "freed by reset"}, a.read, a, r) end
      ok_check(a)
    end)

    it("never hands out a ref again, in the same transaction or later", function()
      local a, p, path = new()
      local old = {}
      for _ = 1, 10 do old[a:alloc(400)] = true end
      p:transaction(function()
        a:reset()
        for _ = 1, 10 do
          local r = a:alloc(400)
          assert.is_nil(old[r], "a ref freed by reset came back in its transaction")
          old[r] = true
        end
      end)
      for _ = 1, 5 do                         -- later transactions reuse the pids
        a:reset()
        for _ = 1, 10 do
          local r = a:alloc(400)
          assert.is_nil(old[r], "a ref freed by reset came back")
          old[r] = true
        end
      end
      p = H.reopen(p, path)
      a = assert(arena.open(p, "a"))
      a:reset()
      local r = a:alloc(400)
      assert.is_nil(old[r])
      ok_check(a)
    end)
  end)

  describe("transactions", function()
    it("each call outside a transaction is one durable commit; inside, none", function()
      local a, p = new()
      local b = H.barriers(p)
      local r = a:alloc(10)
      a:write(r, 0, "x")
      assert.equal(2, H.barriers(p) - b)
      b = H.barriers(p)
      p:transaction(function()
        for _ = 1, 50 do a:write(a:alloc(100), 0, "y") end
      end)
      assert.equal(1, H.barriers(p) - b)
    end)

    it("a rollback in the middle of a transaction restores the model", function()
      local a, p = new()
      local model = {}
      for i = 1, 10 do
        local r = a:alloc(50)
        a:write(r, 0, "v" .. i)
        model[r] = a:read(r)
      end
      local stats = a:stats()
      local tx = p:begin()
      for r in pairs(model) do a:write(r, 0, "changed") end
      for _ = 1, 30 do a:alloc(300) end
      assert.equal(40, a:stats().objects)
      a:reset()
      a:alloc(7)
      tx:rollback()
      assert.same(stats, a:stats())
      for r, s in pairs(model) do assert.equal(s, a:read(r)) end
      ok_check(a)
    end)

    it("a function raising inside pager:transaction leaves nothing", function()
      local a, p = new()
      local r = a:alloc(5)
      assert.has_error(function()
        p:transaction(function() a:write(r, 0, "abc") a:alloc(10) error("boom") end)
      end)
      assert.equal(("\0"):rep(5), a:read(r))
      assert.equal(1, a:stats().objects)
    end)

    it("two handles of one arena agree at once", function()
      local a, p = new()
      local a2 = assert(arena.open(p, "a"))
      local r = a:alloc(4)
      a2:write(r, 0, "abcd")
      assert.equal("abcd", a:read(r))
      local tx = p:begin()
      a2:reset()
      H.raises_with("freed by reset", a.read, a, r)
      tx:rollback()
      assert.equal("abcd", a:read(r))
      assert.same(a:stats(), a2:stats())
    end)

    it("keeps everything across reopen", function()
      local a, p, path = new()
      local model = {}
      for i = 1, 40 do
        local r = a:alloc(i * 11)
        a:write(r, 0, ("%d"):format(i))
        model[r] = a:read(r)
      end
      local stats = a:stats()
      p = H.reopen(p, path)
      a = assert(arena.open(p, "a"))
      assert.same(stats, a:stats())
      for r, s in pairs(model) do assert.equal(s, a:read(r)) end
      ok_check(a)
    end)

    it("a full file inside the caller's transaction leaves nothing half done", function()
      local a, p = new(nil, {page_size = P, max_bytes = 64 * P})
      local r = a:alloc(10)
      while p:alloc() do end                      -- no physical page left
      local tx = p:begin()
      local stats, count = a:stats(), p:info().protected_count
      H.fails_with("full", a:alloc(MAX))          -- needs a page: nothing changes
      H.fails_with("full", a:write(r, 0, "x"))    -- its first write copies the page
      H.fails_with("full", a:alloc(1))            -- the anchor's writer cannot be had
      assert.same(stats, a:stats())
      assert.equal(count, p:info().protected_count)
      ok_check(a)
      assert(tx:commit())
      ok_check(a)
      assert.equal(("\0"):rep(10), a:read(r))
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

    it("a reset whose free fails leaves no freed page linked", function()
      local a, p = new()
      for _ = 1, 10 do a:alloc(500) end               -- 10 data pages
      local stats = a:stats()
      local tx = p:begin()
      failing_free(2)
      H.fails_with("no_memory", a:reset())
      ok_check(a)                                     -- the anchor names no freed page
      assert.equal(0, a:stats().objects)
      tx:rollback()                                   -- what the error calls for
      assert.same(stats, a:stats())
      ok_check(a)
    end)

    it("an alloc that cannot use its new page, nor free it, says so", function()
      local a, p = new(nil, {page_size = P, max_bytes = 64 * P})
      a:alloc(10)
      local tx = p:begin()
      assert(access.writer(p, a.pid))                 -- the anchor's copy, while there is room
      while p:alloc() do end                          -- then no physical page left
      local stats = a:stats()
      failing_free(0)
      local msg = H.fails_with("no_memory", a:alloc(MAX))
      assert.matches("freeing page %d+ failed too", msg)
      assert.same(stats, a:stats())
      ok_check(a)
      tx:rollback()
    end)
  end)

  describe("read-only pagers", function()
    it("open existing arenas, read them, and refuse every mutation", function()
      local a, p, path = new()
      local r = a:alloc(3)
      a:write(r, 0, "abc")
      p:close()
      p = H.open(path, {readonly = true})
      a = assert(arena.open(p, "a"))
      assert.equal("abc", a:read(r))
      assert.equal(3, a:size(r))
      ok_check(a)
      H.raises_with({"arena:alloc", "read-only"}, a.alloc, a, 1)
      H.raises_with({"arena:write", "read-only"}, a.write, a, r, 0, "x")
      H.raises_with({"arena:reset", "read-only"}, a.reset, a)
      H.raises_with({"arena.drop", "read-only"}, arena.drop, p, "a")
      assert.equal("abc", a:read(r))
    end)
  end)

  describe("check", function()
    local function damage(p, pid, off, fmt, value)
      p:transaction(function() p:write_protected(pid):pack(off, fmt, value) end)
    end

    local function problem(a)
      local ok, problems = a:check()
      assert.is_false(ok)
      return table.concat(problems, "; ")
    end

    it("reports damage, and never raises for it", function()
      local a, p = new()
      local r = a:alloc(10)
      local pid = (r >> 16) & 0xFFFFFFFF
      damage(p, pid, 24, "<I4", 99)                    -- the page's top
      assert.matches("page %d+: top 99, objects end at 42", problem(a))
      damage(p, pid, 24, "<I4", 42)
      ok_check(a)
      damage(p, pid, P - 4, "<I2", 40)                 -- object 0's offset
      assert.matches("object 0 at 40, expected at 32", problem(a))
      damage(p, pid, P - 4, "<I2", 32)
      damage(p, pid, 20, "<I4", 1 << 30)               -- the count: far past the page
      assert.matches("top 42", problem(a))
      damage(p, pid, 20, "<I4", 1)
      damage(p, pid, 12, "<I4", a.pid + 1)             -- the owner
      assert.matches("bad magic or owner", problem(a))
      damage(p, pid, 12, "<I4", a.pid)
      ok_check(a)
      damage(p, pid, 8, "<I4", pid + 1)                -- the page names itself as next
      assert.matches("a second time", problem(a))
      damage(p, pid, 8, "<I4", 999)                    -- a page that is not there
      assert.matches("not an allocated protected page", problem(a))
      damage(p, a.pid, 0, "c8", "mparenaX")
      assert.matches("bad magic", problem(a))
    end)
  end)

  describe("against a model", function()
    it("survives a seeded random workload with reopens and rollbacks", function()
      local seed = tonumber(os.getenv("ARENA_SEED") or "") or 2024
      local rnd = H.rng(seed)
      local a, p, path = new()
      local model = {}                -- ref -> content (saved: at begin)
      local saved, tx = nil, nil
      local retired, pending = {}, {} -- refs reset by committed / the open transaction
      local seen = {reset = 0, rollback = 0, reopen = 0, pages = 0}
      local function snapshot() local t = {} for k, v in pairs(model) do t[k] = v end return t end
      local function any_ref()
        for r in pairs(model) do if rnd(3) == 1 then return r end end
        return next(model)
      end
      local steps = 5000
      for step = 1, steps do
        local op = rnd(100)
        local ctx = ("seed %d step %d"):format(seed, step)
        if op <= 40 then
          local size = rnd(8) == 1 and rnd(MAX) or rnd(64)
          local r = a:alloc(size)
          assert.is_nil(model[r], ctx)
          assert.is_nil(retired[r] or pending[r], ctx .. ": a ref freed by reset came back")
          model[r] = ("\0"):rep(size)
        elseif op <= 65 then
          local r = any_ref()
          if r then
            local s = model[r]
            local off = rnd(#s) - 1
            local data = H.garbage(rnd(#s - off), step)
            a:write(r, off, data)
            model[r] = s:sub(1, off) .. data .. s:sub(off + #data + 1)
          end
        elseif op <= 80 then
          local r = any_ref()
          if r then assert.equal(model[r], a:read(r), ctx) end
        elseif op <= 82 then
          a:reset()
          for r in pairs(model) do (tx and pending or retired)[r] = true end
          model, seen.reset = {}, seen.reset + 1
        elseif op <= 90 then
          if tx then
            if rnd(3) == 1 then
              tx:rollback()
              model, seen.rollback = saved, seen.rollback + 1
            else
              assert(tx:commit())
              for r in pairs(pending) do retired[r] = true end
            end
            pending = {}
            tx = nil
          else
            saved, tx = snapshot(), p:begin()
          end
        elseif op <= 92 then
          if tx then tx:rollback() model, tx, pending = saved, nil, {} end
          p = H.reopen(p, path)
          a = assert(arena.open(p, "a"))
          seen.reopen = seen.reopen + 1
        end
        seen.pages = math.max(seen.pages, a:stats().pages)
        if step % 100 == 0 then
          ok_check(a)
          local n, bytes = 0, 0
          for r, s in pairs(model) do
            n, bytes = n + 1, bytes + #s
            assert.equal(s, a:read(r), ctx)
          end
          assert.equal(n, a:stats().objects, ctx)
          assert.equal(bytes, a:stats().bytes, ctx)
        end
      end
      if tx then assert(tx:commit()) end
      ok_check(a)
      assert.is_true(p:check())
      for what, n in pairs(seen) do assert.is_true(n >= 5, what .. " happened too rarely") end
    end)
  end)
end)
