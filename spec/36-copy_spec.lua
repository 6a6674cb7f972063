-- spec/36-copy: pager:copy(path) and `mappedpages copy`: a consistent copy
-- of a pager's committed state (a writer's last durable state, a reader's
-- snapshot while the writer keeps committing, in this process or another),
-- held pages free in it, and its error paths.

local H = require "helpers"
local mp = require "mappedpages"
local core = require "mappedpages.core"

local SCHEMA = "record row { n: i64 s: char[24] }"

-- Everything a copy must reproduce of p's state, in a comparable table:
-- the counters and page lists (H.pstate, free_count apart: held pages are
-- free in a copy), every regular page's bytes (a CRC of each) and the
-- catalog's objects: the rows of "rows", the keys and values of "tree",
-- the values of "heap".
local function snapshot(p)
  local st = H.pstate(p)
  st.free_count = nil
  local sums = {}
  for _, id in ipairs(H.page_list(p)) do
    sums[#sums + 1] = ("%d=%08x"):format(id, mp.crc32c(p:page(id):read()))
  end
  st.regular = table.concat(sums, ",")
  -- (only a file whose root is a catalog's: opening one on a writer of a
  -- file without would create it)
  local cat = p:root() >> 32 == 0x4D504341 and assert(mp.catalog.open(p))
  if cat and cat:get("rows") then
    local rows = {}
    for id, row in assert(mp.records.open(p, "rows")):scan() do
      rows[#rows + 1] = ("%d:%d:%s"):format(id, row.n, row.s)
    end
    st.rows = table.concat(rows, ",")
  end
  if cat and cat:get("tree") then
    local kv = {}
    for k, v in assert(mp.btree.open(p, "tree")):range() do kv[#kv + 1] = k .. "=" .. v end
    st.tree = table.concat(kv, ",")
  end
  if cat and cat:get("heap") then
    local h = assert(mp.heap.open(p, "heap"))
    local vals = {}
    for ref in h:values() do vals[#vals + 1] = ("%d=%08x"):format(ref, mp.crc32c(h:get(ref))) end
    table.sort(vals)
    st.heap = table.concat(vals, ",")
  end
  return st
end

-- Assert that two snapshots are equal, naming the fields that differ (the
-- values are long).
local function same_state(want, got, what)
  local diff = {}
  for k in pairs(want) do
    if want[k] ~= got[k] then diff[#diff + 1] = k end
  end
  for k in pairs(got) do
    if want[k] == nil then diff[#diff + 1] = k end
  end
  table.sort(diff)
  if #diff > 0 then
    local lines = {}
    for _, k in ipairs(diff) do
      lines[#lines + 1] = ("%s: %s ~= %s"):format(k, tostring(want[k]):sub(1, 200),
                                   tostring(got[k]):sub(1, 200))
    end
    error((what and what .. ": " or "") .. "snapshots differ in " .. table.concat(lines, "; "), 2)
  end
end

-- Open the copy at path read-only and for writing: it passes check() both
-- ways (and the objects' checks, through inspect); returns its snapshot.
local function verify_copy(path)
  local c = H.open(path, {readonly = true})
  assert(c:check())
  local ok, problems = require("mappedpages.inspect").check(c)
  assert(ok, problems and table.concat(problems, "; "))
  assert.equal(0, c:info().held_count)
  local st = snapshot(c)
  c:close()
  local w = H.open(path)           -- a writer opens it, and can commit
  assert(w:check())
  local id = assert(w:alloc())
  assert(w:free(id))
  w:close()
  return st
end

-- A file with regular pages, protected pages and the three kinds of
-- objects; returns the writer and its path.
local function sample(opts)
  local p, path = H.create(opts)
  local recs = assert(mp.records.open(p, "rows", SCHEMA))
  local tree = assert(mp.btree.open(p, "tree"))
  local heap = assert(mp.heap.open(p, "heap"))
  p:transaction(function()
    for i = 1, 40 do recs:insert({n = i * 7, s = "row " .. i}) end
    for i = 1, 60 do tree:put(("k%03d"):format(i), ("value %d "):format(i):rep(i % 9 + 1)) end
    tree:put("big", ("B"):rep(3 * p:page_size()))      -- kept in the tree's heap
    heap:put("small")
    heap:put(("L"):rep(5 * p:page_size() + 11))        -- a large value: data pages
    return true
  end)
  local ids = assert(p:alloc_bulk(7))
  for _, id in ipairs(ids) do H.stamp(p, id, "copy") end
  local pid = assert(p:alloc_protected())
  H.pset(p, pid, H.pcontent(p:page_size(), "mine"))
  assert(p:alloc_protected())                          -- never written: zeros
  -- more changed page-table entries than a root carries: the commit
  -- writes the page table's tree, which the copy's root must name
  p:transaction(function()
    for i = 1, 80 do
      local q = assert(p:alloc_protected())
      p:write_protected(q):write(0, H.pcontent(p:page_size(), "many" .. i))
    end
    return true
  end)
  return p, path, ids
end

-- Changes that rewrite both slots of every bitmap and index node and both
-- root slots (commits enough to flush the carried entries, twice), and
-- touch every object.
local function churn(p, rounds)
  local recs = assert(mp.records.open(p, "rows"))
  local tree = assert(mp.btree.open(p, "tree"))
  local heap = assert(mp.heap.open(p, "heap"))
  for r = 1, rounds do
    p:transaction(function()
      recs:update(1, {n = -r, s = "changed"})
      recs:delete(r + 1)
      recs:insert({n = 1000 + r, s = "later"})
      tree:put(("k%03d"):format(r), "new " .. r)
      tree:delete(("k%03d"):format(r + 30))
      heap:put(("z"):rep(r * 1000))
      return true
    end)
    local ids = assert(p:alloc_bulk(300))
    for _, id in ipairs(ids) do p:page(id):write(0, "churn") end
    assert(p:free_bulk(ids))
  end
end

describe("pager:copy", function()
  after_each(function()
    core._inject_fault(nil)
    H.cleanup()
  end)

  for _, P in ipairs({1024, 4096, 65536}) do
    it("copies a writer's last durable state (page size " .. P .. ")", function()
      local p = sample({page_size = P})
      local want = snapshot(p)
      local out = H.path()
      assert.is_true(p:copy(out))
      local got = verify_copy(out)
      same_state(want, got)
      assert.equal(p:info().txn, got.txn)
      assert.equal(H.file_size(out), p:page_count() * P)
      -- the source is unchanged and still commits
      same_state(want, snapshot(p))
      assert(p:check())
      assert(p:alloc())
    end)
  end

  it("copies a file with no protected pages, and one just created", function()
    local p = H.create()
    local out = H.path()
    assert.is_true(p:copy(out))
    same_state(snapshot(p), verify_copy(out))
    local ids = assert(p:alloc_bulk(3))
    for _, id in ipairs(ids) do H.stamp(p, id) end
    p:set_root(42)
    local out2 = H.path()
    assert.is_true(p:copy(out2))
    local got = verify_copy(out2)
    same_state(snapshot(p), got)
    assert.equal(42, got.root)
  end)

  it("writes its metadata fresh into slot 0, with slot 1 zero", function()
    local p, path = sample()
    churn(p, 2)                      -- the source's durable root may be in slot 1
    local out = H.path()
    assert.is_true(p:copy(out))
    local P = p:page_size()
    assert.equal(("\0"):rep(P), H.read_at(out, P, P))
    local c = H.open(out, {readonly = true})
    local i = c:info()
    assert.equal(0, i.root_slot)
    assert.is_false(i.recovered)
    assert.equal(p:info().txn, i.txn)
    assert.equal(p:info().fsm_height, i.fsm_height)
    c:close()
    assert(path)
  end)

  it("gives a reader's snapshot, not the writer's later commits (same process)", function()
    local p, path = sample()
    local r = H.open(path, {readonly = true})
    local want = snapshot(r)
    churn(p, 3)                      -- every metadata slot rewritten since r's snapshot
    local later = snapshot(p)
    assert.are_not.same(want, later)
    local out = H.path()
    assert.is_true(r:copy(out))
    -- interleave: the writer commits between the reader's copies too
    churn(p, 1)
    local out2 = H.path()
    assert.is_true(r:copy(out2))
    local got, got2 = verify_copy(out), verify_copy(out2)
    same_state(want, got)
    same_state(want, got2)
    assert.is_true(got.txn < p:info().txn)
    -- after a refresh the reader copies the newest commit
    assert(r:refresh())
    local out3 = H.path()
    assert.is_true(r:copy(out3))
    same_state(snapshot(p), verify_copy(out3))
  end)

  it("gives a reader's snapshot while a writer in another process commits", function()
    local p, path = sample()
    p:close()
    local stop = H.path("stop")
    local argfile = H.path("writer.args")
    H.write_file(argfile, "return " .. H.serialize({path = path, stop = stop, max = 100000,
                                                    schema = SCHEMA}) .. "\n")
    local script = H.CHILDREN .. "copy_writer.lua"
    local cmd = ("lua5.4 -e %s %s %s 2>&1"):format(
      H.shell_quote(("package.path = %q; package.cpath = %q"):format(package.path, package.cpath)),
      H.shell_quote(script), H.shell_quote(argfile))
    local child = assert(io.popen(cmd))
    local ok, err = pcall(function()
      assert.equal("ready", child:read("l"))
      local probe = H.open(path, {readonly = true})
      for k = 1, 3 do
        local r = H.open(path, {readonly = true})
        local want = snapshot(r)
        -- wait until the writer is several commits past the snapshot, so
        -- that the slots the snapshot's root names have been rewritten
        repeat assert(probe:refresh()) until probe:info().txn >= want.txn + 6
        local out = H.path()
        assert.is_true(r:copy(out))
        same_state(want, verify_copy(out), "copy " .. k)
        r:close()
      end
      probe:close()
    end)
    H.write_file(stop, "")
    local rest = child:read("a")
    child:close()
    assert(ok, err)
    local rounds = assert(tonumber(rest:match("rounds (%d+)")), rest)
    assert.is_true(rounds > 1, rest)
    local w = H.open(path)
    assert(w:check())
  end)

  it("copies pages held for a reader as free pages", function()
    local p, path, ids = sample()
    local r = H.open(path, {readonly = true})
    local old = snapshot(r)
    assert(p:free_bulk(ids))             -- freed while r's snapshot reaches them: held
    churn(p, 1)
    local held = p:info().held_count
    assert.is_true(held >= #ids)
    local want = snapshot(p)
    local out = H.path()
    assert.is_true(p:copy(out))
    local got = verify_copy(out)
    same_state(want, got)
    local c = H.open(out, {readonly = true})
    assert.equal(p:free_count() + held, c:free_count())
    for _, id in ipairs(ids) do assert.is_nil(c:page_kinds()[id]) end
    c:close()
    -- the reader's own copy still has them, in use, with their bytes
    local rout = H.path()
    assert.is_true(r:copy(rout))
    local rgot = verify_copy(rout)
    same_state(old, rgot)
    for _, id in ipairs(ids) do assert.matches(tostring(id) .. "=", rgot.regular, 1, true) end
  end)

  it("refuses an existing output, changing nothing", function()
    local p, path = sample()
    local out = H.path()
    H.write_file(out, "precious")
    local msg = H.fails_with("exists", p:copy(out))
    assert.matches("copy: ", msg, 1, true)
    assert.matches(out, msg, 1, true)
    assert.equal("precious", H.read_file(out))
    -- a copy onto the source itself is refused the same way
    H.fails_with("exists", p:copy(path))
    assert(p:check())
  end)

  it("fails for a directory that does not exist, leaving nothing", function()
    local p = sample()
    local out = H.dir() .. "/no/such/dir/copy.mp"
    H.fails_with("not_found", p:copy(out))
    assert.is_false(H.exists(out))
  end)

  it("removes a partial copy when a write or the barrier fails", function()
    local p = sample()
    local want = snapshot(p)
    for _, f in ipairs({{"write", "eio", 0, "io"}, {"write", "enospc", 1, "no_space"},
                        {"grow", "enospc", 0, "no_space"}, {"barrier", "eio", 0, "io"},
                        {"barrier", "eio", 1, "io"}}) do   -- the first barrier, then the last
      local out = H.path()
      core._inject_fault(f[1], f[2], f[3])
      local ok, msg, code = p:copy(out)
      core._inject_fault(nil)
      H.fails_with(f[4], ok, msg, code)
      assert.is_false(H.exists(out), f[1] .. " " .. f[2])
    end
    -- the source is untouched, not poisoned, and copies again
    assert.is_false(p:info().poisoned)
    same_state(want, snapshot(p))
    local out = H.path()
    assert.is_true(p:copy(out))
    same_state(want, verify_copy(out))
  end)

  it("raises inside a transaction and on a closed pager", function()
    local p = sample()
    local out = H.path()
    local tx = p:begin()
    H.raises_with({"copy", "transaction"}, p.copy, p, out)
    tx:rollback()
    assert.is_false(H.exists(out))
    H.raises_with("string expected", function() return p:copy(nil) end)
    H.raises_with("zero byte", function() return p:copy(out .. "\0x") end)
    p:close()
    H.raises_with("closed pager", p.copy, p, out)
    assert.is_false(H.exists(out))
  end)

  it("refuses a poisoned pager", function()
    local p = sample()
    core._inject_fault("barrier", "eio")
    assert.is_nil(p:alloc())
    core._inject_fault(nil)
    assert.is_true(p:info().poisoned)
    local out = H.path()
    H.fails_with("poisoned", p:copy(out))
    assert.is_false(H.exists(out))
  end)
end)

local run = H.run_cli

describe("mappedpages copy", function()
  after_each(function() H.cleanup() end)

  it("copies a file a writer has open, and the copy checks clean", function()
    local p, path = sample()
    local want = snapshot(p)
    local out = H.path()
    local status, stdout = run("copy", path, out)
    assert.equal(0, status, stdout)
    assert.equal(("%s: a copy of %s at transaction %d (%d pages of %d bytes)\n")
      :format(out, path, want.txn, p:page_count(), p:page_size()), stdout)
    same_state(want, verify_copy(out))
    local cstatus, cout = run("check", out)
    assert.equal(0, cstatus, cout)
    assert.matches("clean", cout, 1, true)
  end)

  it("exits 2 when the output exists or the file does not open", function()
    local _, path = sample()
    local out = H.path()
    H.write_file(out, "x")
    local status, stdout, err = run("copy", path, out)
    assert.equal(2, status)
    assert.equal("", stdout)
    assert.matches("(exists)", err, 1, true)
    assert.equal("x", H.read_file(out))
    local missing = H.path()
    local out2 = H.path()
    status, stdout, err = run("copy", missing, out2)
    assert.equal(2, status)
    assert.equal("", stdout)
    assert.matches(missing, err, 1, true)
    assert.is_false(H.exists(out2))
    status, _, err = run("copy", path)
    assert.equal(2, status)
    assert.matches("out", err)
  end)
end)
