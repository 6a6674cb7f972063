-- 22-buddy: examples/buddy.lua, the buddy allocator of docs/ALLOCATORS.md.
--
-- Every function and error path, splitting and merging, empty regions going
-- back to the pager, refs freed in a transaction kept out of it, persistence
-- across reopen, rollback in the middle of a transaction, two handles, a
-- full file inside the caller's transaction, and a seeded random model test
-- with reopens and rollbacks, check() throughout.

local H = require "helpers"
local access = require "mappedpages.access"
local catalog = require "mappedpages.catalog"

package.path = "examples/?.lua;" .. package.path
local buddy = require "buddy"
local arena = require "arena"

local P = 1024

local function new(name, opts)
  local p, path = H.create(opts or {page_size = P})
  return assert(buddy.open(p, name or "b")), p, path
end

local function ok_check(b)
  local ok, problems = b:check()
  assert(ok, problems and table.concat(problems, "; "))
end

local function block_size(n)
  local s = 32
  while s < n do s = s * 2 end
  return s
end

describe("buddy", function()
  after_each(function() H.cleanup() end)

  describe("open and drop", function()
    it("creates a buddy once, then opens it by name", function()
      local p = H.create({page_size = P})
      assert(catalog.open(p))
      local bar = H.barriers(p)
      local b = assert(buddy.open(p, "b"))
      assert.equal(1, H.barriers(p) - bar, "creation is one durable commit")
      local txn = p:info().txn
      local b2 = assert(buddy.open(p, "b"))
      assert.equal(txn, p:info().txn, "opening changes nothing")
      assert.equal(b.pid, b2.pid)
      assert.equal("example.buddy/2", catalog.open(p):get("b").kind)
      assert.equal(buddy.KIND, catalog.open(p):get("b").kind)
      assert.same({objects = 0, bytes = 0, pages = 1, page_bytes = P, efficiency = 0, regions = 0,
                   max_size = P // 2}, b:stats())
      ok_check(b)
    end)

    it("refuses a name of another kind, and a missing name on a read-only pager", function()
      local p, path = H.create({page_size = P})
      assert(arena.open(p, "an arena"))
      assert.matches(arena.KIND, H.fails_with("kind", buddy.open(p, "an arena")), 1, true)
      H.fails_with("kind", buddy.drop(p, "an arena"))
      p:close()
      p = H.open(path, {readonly = true})
      H.fails_with("not_found", buddy.open(p, "b"))
    end)

    it("raises for a bad pager or name", function()
      H.raises_with({"buddy.open", "pager expected"}, buddy.open, nil, "b")
      H.raises_with({"buddy.drop", "pager expected"}, buddy.drop, {}, "b")
      local p = H.create({page_size = P})
      H.raises_with({"buddy.open", "1 to 255"}, buddy.open, p, "")
      H.raises_with({"buddy.open", "string"}, buddy.open, p, false)
    end)

    it("drop frees every region, and a dropped handle raises", function()
      local b, p = new()
      local base = p:info().protected_count
      for _ = 1, 40 do b:alloc(300) end
      assert.is_true(b:stats().regions > 10)
      assert.is_true(buddy.drop(p, "b"))
      assert.equal(base - 1, p:info().protected_count)
      H.raises_with({"buddy:alloc", "no longer exists"}, b.alloc, b, 1)
      H.raises_with({"buddy:free", "no longer exists"}, b.free, b, 1)
      H.raises_with({"buddy:read", "no longer exists"}, b.read, b, 1)
      assert.matches("unusable", tostring(b))
      H.fails_with("not_found", buddy.drop(p, "b"))
      assert.is_true(catalog.open(p):check())
    end)

    it("a handle whose creation was rolled back raises", function()
      local p = H.create({page_size = P})
      local tx = p:begin()
      local b = assert(buddy.open(p, "b"))
      b:alloc(10)
      tx:rollback()
      H.raises_with({"buddy:alloc", "no longer exists"}, b.alloc, b, 1)
      assert.is_nil(catalog.open(p):get("b"))
    end)

    it("use after the pager closed raises", function()
      local b, p = new()
      local r = b:alloc(3)
      p:close()
      H.raises_with({"buddy:read", "closed"}, b.read, b, r)
      H.raises_with({"buddy:free", "closed"}, b.free, b, r)
      H.raises_with({"buddy:stats", "closed"}, b.stats, b)
      assert.matches("unusable", tostring(b))
    end)

    it("a method called with a dot raises naming it", function()
      local b = new()
      H.raises_with({"buddy:free", "expected a handle"}, b.free, 5)
    end)
  end)

  describe("alloc and free", function()
    it("hands out power-of-two blocks that read as zeros", function()
      local b = new()
      local seen = {}
      for _, size in ipairs({1, 31, 32, 33, 64, 100, 255, 256, 257, 511, 512}) do
        local r = b:alloc(size)
        assert.equal("integer", math.type(r))
        assert.is_true(r > 0)
        assert.is_nil(seen[r])
        seen[r] = true
        assert.equal(block_size(size), b:size(r))
        assert.equal(("\0"):rep(b:size(r)), b:read(r))
        b:write(r, 0, ("x"):rep(b:size(r)))      -- dirty it for the next block
      end
      ok_check(b)
      for r in pairs(seen) do b:free(r) end
      local r = b:alloc(512)
      assert.equal(("\0"):rep(512), b:read(r), "a reused block reads as zeros")
    end)

    it("takes sizes from 1 to half a page and refuses others", function()
      local b = new()
      for _, bad in ipairs({0, -3, P // 2 + 1, 2.5, "8", nil, {}}) do
        H.raises_with({"buddy:alloc", "size must be an integer from 1 to " .. P // 2}, b.alloc, b, bad)
      end
      for _, ps in ipairs({4096, 65536}) do
        local b2 = new("b" .. ps, {page_size = ps})
        assert.equal(ps // 2, b2:size(b2:alloc(ps // 2)))
        H.raises_with("from 1 to " .. ps // 2, b2.alloc, b2, ps // 2 + 1)
        ok_check(b2)
      end
    end)

    it("splits a region, merges buddies on free and returns an empty region", function()
      local b, p = new()
      local base = p:info().protected_count
      local r1 = b:alloc(32)
      assert.equal(1, b:stats().regions)
      assert.equal(base + 1, p:info().protected_count)
      local r2 = b:alloc(32)
      assert.equal(r1 ~ 32, r2, "the second small block is the first one's buddy")
      local big = b:alloc(P // 2)
      assert.equal(1, b:stats().regions, "the upper half of the same region")
      ok_check(b)
      b:free(r1)
      b:free(r2)
      ok_check(b)
      b:free(big)
      assert.equal(0, b:stats().regions)
      assert.equal(base, p:info().protected_count, "the empty region went back to the pager")
      ok_check(b)
    end)

    it("fills new regions when the current ones are full", function()
      local b = new()
      local refs = {}
      for i = 1, 30 do refs[i] = b:alloc(P // 2) end   -- one per region
      assert.equal(30, b:stats().regions)
      assert.same({objects = 30, bytes = 30 * P // 2, pages = 31, page_bytes = 31 * P,
                   efficiency = 30 * (P // 2) / (31 * P), regions = 30, max_size = P // 2}, b:stats())
      for i = 1, 30, 2 do b:free(refs[i]) end
      assert.equal(15, b:stats().regions)
      ok_check(b)
    end)

    it("never hands out a ref freed in the open transaction", function()
      local b, p = new()
      local keep = b:alloc(32)                 -- keeps the region alive
      local freed = {}
      p:transaction(function()
        for _ = 1, 6 do freed[b:alloc(32)] = true end
        for r in pairs(freed) do b:free(r) end
        for _ = 1, 20 do
          local r = b:alloc(32)
          assert.is_nil(freed[r], "a ref freed in this transaction came back in it")
        end
      end)
      assert.is_truthy(b:size(keep))
      ok_check(b)
    end)

    it("reuses a block freed in an earlier transaction, even behind one freed in this one", function()
      local b, p = new()
      local r = {}
      for i = 1, 4 do r[i] = b:alloc(32) end  -- two pairs of buddies
      b:free(r[1])                             -- its own transaction: reusable from the next one
      p:transaction(function()
        b:free(r[3])                           -- freed now: not reusable before the next one
        assert.equal(r[1], b:alloc(32))
        local again = b:alloc(32)
        assert.are_not.equal(r[3], again)
      end)
      ok_check(b)
    end)

    it("raises for a double free, a freed ref and refs that are not its blocks", function()
      local b, p = new()
      local other = assert(buddy.open(p, "other"))
      local a = assert(arena.open(p, "an arena"))
      local r, keep = b:alloc(40), b:alloc(40)
      local ro = other:alloc(40)
      b:free(r)
      H.raises_with({"buddy:free", "is not an allocated block"}, b.free, b, r)
      H.raises_with({"buddy:read", "is not an allocated block"}, b.read, b, r)
      H.raises_with({"buddy:write", "is not an allocated block"}, b.write, b, r, 0, "x")
      H.raises_with({"buddy:size", "is not an allocated block"}, b.size, b, r)
      H.raises_with({"buddy:free", "belongs to another object"}, b.free, b, ro)
      H.raises_with({"buddy:read", "is not an allocated block"}, b.read, b, keep + 32)  -- inside it
      H.raises_with({"buddy:read", "is not an allocated block"}, b.read, b, keep + 1)   -- misaligned
      H.raises_with({"buddy:read", "is not an allocated block"}, b.read, b, keep & ~0xFFFF) -- the header
      H.raises_with({"buddy:read", "is not an allocated block"}, b.read, b, a:alloc(8))
      H.raises_with({"buddy:read", "is not an allocated block"}, b.read, b, 1 << 40)
      for _, bad in ipairs({0, -1, 1.5, "1", nil, true}) do
        H.raises_with({"buddy:free", "ref must be an integer >= 1"}, b.free, b, bad)
      end
      assert.equal(("\0"):rep(64), other:read(ro))
      ok_check(b)
      ok_check(other)
    end)

    it("reads and writes within a block, up to its power-of-two size", function()
      local b = new()
      local r = b:alloc(20)                    -- a 32-byte block
      assert.is_true(b:write(r, 0, ("a"):rep(32)))
      assert.is_true(b:write(r, 30, "zz"))
      assert.equal(("a"):rep(30) .. "zz", b:read(r))
      assert.equal("az", b:read(r, 29, 2))
      assert.equal("", b:read(r, 32))
      H.raises_with({"buddy:write", "length must be an integer from 0 to 2 at offset 30"}, b.write, b, r, 30, "abc")
      H.raises_with({"buddy:read", "offset must be an integer from 0 to 32"}, b.read, b, r, 33)
      H.raises_with({"buddy:read", "length"}, b.read, b, r, 0, 33)
      H.raises_with({"buddy:write", "data must be a string"}, b.write, b, r, 0, {})
    end)

    it("prints one line", function()
      local b = new("heap")
      b:alloc(100)
      assert.equal('buddy "heap": 1 blocks, 128 bytes in 2 pages (efficiency 0.062)', tostring(b))
    end)
  end)

  describe("transactions", function()
    it("each call outside a transaction is one durable commit; inside, none", function()
      local b, p = new()
      local bar = H.barriers(p)
      local r = b:alloc(10)
      b:write(r, 0, "x")
      b:free(r)
      assert.equal(3, H.barriers(p) - bar)
      bar = H.barriers(p)
      p:transaction(function()
        local refs = {}
        for i = 1, 50 do refs[i] = b:alloc(i * 10) end
        for i = 1, 50, 3 do b:free(refs[i]) end
      end)
      assert.equal(1, H.barriers(p) - bar)
      ok_check(b)
    end)

    it("a rollback in the middle of a transaction restores the model", function()
      local b, p = new()
      local model = {}
      for i = 1, 12 do
        local r = b:alloc(i * 20)
        b:write(r, 0, "v" .. i)
        model[r] = b:read(r)
      end
      local stats, count = b:stats(), p:info().protected_count
      local tx = p:begin()
      for r in pairs(model) do b:write(r, 0, "changed") end
      b:free((next(model)))
      for i = 1, 30 do b:alloc(i * 15) end
      tx:rollback()
      assert.same(stats, b:stats())
      assert.equal(count, p:info().protected_count)
      for r, s in pairs(model) do assert.equal(s, b:read(r)) end
      ok_check(b)
    end)

    it("two handles of one buddy agree at once", function()
      local b, p = new()
      local b2 = assert(buddy.open(p, "b"))
      local r = b:alloc(4)
      b2:write(r, 0, "abcd")
      assert.equal("abcd", b:read(r, 0, 4))
      local tx = p:begin()
      b2:free(r)
      H.raises_with("is not an allocated block", b.read, b, r)
      tx:rollback()
      assert.equal("abcd", b:read(r, 0, 4))
      assert.same(b:stats(), b2:stats())
    end)

    it("keeps everything across reopen", function()
      local b, p, path = new()
      local model = {}
      for i = 1, 40 do
        local r = b:alloc(i * 11)
        b:write(r, 0, ("%d"):format(i))
        model[r] = b:read(r)
      end
      for r in pairs(model) do if r % 3 == 0 then b:free(r) model[r] = nil end end
      local stats = b:stats()
      p = H.reopen(p, path)
      b = assert(buddy.open(p, "b"))
      assert.same(stats, b:stats())
      for r, s in pairs(model) do assert.equal(s, b:read(r)) end
      ok_check(b)
    end)

    it("a region that cannot be freed leaves its last block as it was", function()
      local b, p = new()
      local keep = b:alloc(100)
      local last = b:alloc(P // 2)
      b:free(keep)                                  -- the region's last block in use: last
      local stats, count = b:stats(), p:info().protected_count
      local real = access.free_page                 -- fails only when memory runs out:
      access.free_page = function() return nil, "simulated", "no_memory" end
      finally(function() access.free_page = real end)
      local tx = p:begin()
      H.fails_with("no_memory", b:free(last))
      assert.same(stats, b:stats())                 -- the block is still in use
      assert.equal(count, p:info().protected_count)
      assert.equal(P // 2, b:size(last))
      ok_check(b)
      access.free_page = real
      assert.is_true(b:free(last))
      assert.equal(0, b:stats().regions)
      assert(tx:commit())
      ok_check(b)
    end)

    it("a full file inside the caller's transaction leaves nothing half done", function()
      local b, p = new(nil, {page_size = P, max_bytes = 64 * P})
      local refs = {}
      for i = 1, 6 do refs[i] = b:alloc(200) end
      while p:alloc() do end                    -- no physical page left
      local tx = p:begin()
      local stats, count = b:stats(), p:info().protected_count
      H.fails_with("full", b:alloc(P // 2))     -- a new region: nothing changes
      H.fails_with("full", b:alloc(32))         -- no copy of a page can be made
      H.fails_with("full", b:free(refs[1]))
      H.fails_with("full", b:write(refs[2], 0, "x"))
      assert.same(stats, b:stats())
      assert.equal(count, p:info().protected_count)
      ok_check(b)
      assert(tx:commit())
      ok_check(b)
      for _, r in ipairs(refs) do assert.equal(256, b:size(r)) end
    end)
  end)

  describe("read-only pagers", function()
    it("open existing buddies, read them, and refuse every mutation", function()
      local b, p, path = new()
      local r = b:alloc(3)
      b:write(r, 0, "abc")
      p:close()
      p = H.open(path, {readonly = true})
      b = assert(buddy.open(p, "b"))
      assert.equal("abc", b:read(r, 0, 3))
      assert.equal(32, b:size(r))
      assert.equal(1, b:stats().objects)
      ok_check(b)
      H.raises_with({"buddy:alloc", "read-only"}, b.alloc, b, 1)
      H.raises_with({"buddy:free", "read-only"}, b.free, b, r)
      H.raises_with({"buddy:write", "read-only"}, b.write, b, r, 0, "x")
      H.raises_with({"buddy.drop", "read-only"}, buddy.drop, p, "b")
      assert.equal("abc", b:read(r, 0, 3))
    end)
  end)

  describe("check", function()
    local function damage(p, pid, off, fmt, value)
      p:transaction(function() p:write_protected(pid):pack(off, fmt, value) end)
    end

    local function problem(b)
      local ok, problems = b:check()
      assert.is_false(ok)
      return table.concat(problems, "; ")
    end

    it("reports damage to the maps, the lists and the regions, and never raises", function()
      local b, p = new()
      local keep, r = b:alloc(32), b:alloc(32)      -- at 64 and 96 (the header: 0 to 63)
      local pid = keep >> 16
      local map = 32 + (r & 0xFFFF) // 32
      damage(p, pid, map, "B", 0x85)                -- a block of order 132
      assert.matches("region %d+: a bad map", problem(b))
      damage(p, pid, map, "B", 2)                   -- of order 1: it would hide its neighbour
      assert.matches("a bad map", problem(b))
      damage(p, pid, map, "B", 1)                   -- back again
      ok_check(b)
      damage(p, pid, 32, "B", 0)                    -- the header's map byte
      assert.matches("a bad map", problem(b))
      damage(p, pid, 32, "B", 2)
      damage(p, pid, 12, "<I4", b.pid + 1)          -- the owner
      assert.matches("bad magic or owner", problem(b))
      damage(p, pid, 12, "<I4", b.pid)
      ok_check(b)
      b:free(r)                                     -- a free block: corrupt its back link
      local list = b.pid << 16 | 32                 -- the free list of order 0
      local head = p:protected(b.pid):unpack(32, "<i8")
      assert.equal(r, head)
      damage(p, head >> 16, (head & 0xFFFF) + 8, "<i8", 12345)
      assert.matches(("list %d:32: a bad link"):format(list >> 16), problem(b))
      damage(p, head >> 16, (head & 0xFFFF) + 8, "<i8", 0)
      ok_check(b)
      damage(p, b.pid, 32, "<i8", 0)                -- the list loses its block
      damage(p, b.pid, 40, "<i8", 0)
      assert.matches("is on no list", problem(b))
      damage(p, b.pid, 48, "<i8", r)                -- the block on the list of order 1
      damage(p, b.pid, 56, "<i8", r)
      assert.matches("should not be on it", problem(b))
      damage(p, b.pid, 8, "<I4", 999)               -- a region that is not there
      assert.matches("not an allocated protected page", problem(b))
    end)
  end)

  describe("against a model", function()
    for _, ps in ipairs({1024, 4096}) do
      it("survives a seeded random workload with reopens and rollbacks (page size " .. ps .. ")", function()
        local seed = tonumber(os.getenv("BUDDY_SEED") or "") or 7
        local rnd = H.rng(seed + ps)
        local b, p, path = new(nil, {page_size = ps})
        local model, saved, tx = {}, nil, nil       -- ref -> content
        local young = {}                            -- refs freed in the open transaction
        local seen = {free = 0, rollback = 0, reopen = 0, regions = 0}
        local function snapshot() local t = {} for k, v in pairs(model) do t[k] = v end return t end
        local function any_ref()
          for r in pairs(model) do if rnd(4) == 1 then return r end end
          return next(model)
        end
        local base = p:info().protected_count
        for step = 1, 2500 do
          local op, ctx = rnd(100), ("seed %d page size %d step %d"):format(seed, ps, step)
          if op <= 35 then
            local size = rnd(6) == 1 and rnd(ps // 2) or rnd(100)
            local r = b:alloc(size)
            assert.is_nil(model[r], ctx)
            assert.is_nil(young[r], ctx .. ": a ref freed in this transaction came back")
            assert.equal(block_size(size), b:size(r), ctx)
            model[r] = ("\0"):rep(block_size(size))
          elseif op <= 60 then
            local r = any_ref()
            if r then
              b:free(r)
              model[r], seen.free = nil, seen.free + 1
              if tx then young[r] = true end
            end
          elseif op <= 75 then
            local r = any_ref()
            if r then
              local s = model[r]
              local off = rnd(#s) - 1
              local data = H.garbage(rnd(#s - off), step)
              b:write(r, off, data)
              model[r] = s:sub(1, off) .. data .. s:sub(off + #data + 1)
            end
          elseif op <= 85 then
            local r = any_ref()
            if r then assert.equal(model[r], b:read(r), ctx) end
          elseif op <= 93 then
            if tx then
              if rnd(3) == 1 then
                tx:rollback()
                model, seen.rollback = saved, seen.rollback + 1
              else
                assert(tx:commit())
              end
              tx, young = nil, {}
            else
              saved, tx = snapshot(), p:begin()
            end
          elseif op <= 95 then
            if tx then tx:rollback() model, tx, young = saved, nil, {} end
            p = H.reopen(p, path)
            b = assert(buddy.open(p, "b"))
            seen.reopen = seen.reopen + 1
          end
          if step % 10 == 0 then   -- (stats reads every region's map)
            seen.regions = math.max(seen.regions, b:stats().regions)
          end
          if step % 50 == 0 then
            ok_check(b)
            local n, bytes = 0, 0
            for r, s in pairs(model) do
              n, bytes = n + 1, bytes + #s
              assert.equal(s, b:read(r), ctx)
            end
            assert.equal(n, b:stats().objects, ctx)
            assert.equal(bytes, b:stats().bytes, ctx)
          end
        end
        if tx then assert(tx:commit()) end
        ok_check(b)
        for r in pairs(model) do b:free(r) end
        assert.equal(0, b:stats().regions)
        assert.equal(base, p:info().protected_count, "every region went back to the pager")
        ok_check(b)
        assert.is_true(p:check())
        for what, n in pairs(seen) do assert.is_true(n >= 3, what .. " happened too rarely") end
      end)
    end
  end)
end)
