-- 12-full_disk: a full disk is an error, never a SIGBUS, and nothing is lost.
--
-- The file lives on a tmpfs of 256 KiB mounted for the test (root only;
-- elsewhere the tests are pending).  Growth reserves blocks with
-- posix_fallocate before any new page is used, so when the file system is
-- full, alloc / alloc_bulk / protected writes return nil, msg, "no_space",
-- every page handed out before stays writable, and the file reopens intact.

local H = require "helpers"
local mp = H.mp

local sq = H.shell_quote

local function mount_small(size)
  local dir = H.tmpdir()
  local ok = os.execute("mount -t tmpfs -o size=" .. size .. " tmpfs " .. sq(dir) .. " 2>/dev/null")
  return ok and dir or nil
end

describe("a full disk", function()
  local dir, pagers
  before_each(function()
    dir = mount_small("256k")
    pagers = {}
  end)
  after_each(function()
    for _, p in ipairs(pagers) do p:close() end
    if dir then os.execute("umount " .. sq(dir)) end
    H.cleanup()
  end)

  local function fill(p)
    local ids = {}
    while true do
      local id, msg, code = p:alloc()
      if not id then return ids, msg, code end
      p:page(id):write(0, ("page %d"):format(id))
      ids[#ids + 1] = id
      assert(#ids < 10000, "the disk never filled")
    end
  end

  it("makes alloc return nil, msg, 'no_space' and keeps every earlier page", function()
    if not dir then return pending("needs root to mount a small tmpfs") end
    local path = dir .. "/f.mp"
    local p = assert(mp.create(path, { page_size = 4096 }))
    pagers[#pagers + 1] = p
    local ids, msg, code = fill(p)
    assert.are.equal("no_space", code)
    assert.matches("grow", msg)
    assert.is_true(#ids > 10)
    local info = p:info()
    -- every page handed out is still there and writable (blocks reserved)
    for _, id in ipairs(ids) do
      p:page(id):write(100, "still writable")
      assert.are.equal(("page %d"):format(id), p:page(id):read(0, #("page " .. id)))
    end
    assert.is_false(info.poisoned)
    assert.is_true(p:check())
    -- and it all survives a reopen
    p:close()
    local q = assert(mp.open(path))
    pagers[#pagers + 1] = q
    assert.are.equal(#ids, q:info().regular_count)
    for _, id in ipairs(ids) do
      assert.are.equal(("page %d"):format(id), q:page(id):read(0, #("page " .. id)))
    end
  end)

  it("lets allocation go on once pages are freed", function()
    if not dir then return pending("needs root to mount a small tmpfs") end
    local p = assert(mp.create(dir .. "/f.mp", { page_size = 4096 }))
    pagers[#pagers + 1] = p
    local ids = fill(p)
    assert.is_true(p:free(ids[1]))
    assert.is_number((p:alloc()))                       -- reuses the freed page
    assert.are.equal("no_space", select(3, p:alloc()))  -- and is full again
  end)

  it("makes alloc_bulk all-or-nothing when the disk cannot hold it", function()
    if not dir then return pending("needs root to mount a small tmpfs") end
    local p = assert(mp.create(dir .. "/f.mp", { page_size = 4096 }))
    pagers[#pagers + 1] = p
    local before = p:info()
    local ids, _, code = p:alloc_bulk(200)   -- 800 KiB on a 256 KiB disk
    assert.is_nil(ids)
    assert.are.equal("no_space", code)
    local after = p:info()
    assert.are.equal(before.regular_count, after.regular_count)
    assert.are.equal(before.txn, after.txn)
    assert.is_true(p:check())
  end)

  it("makes a protected write on a full disk return nil, msg, 'no_space' and keep the old content", function()
    if not dir then return pending("needs root to mount a small tmpfs") end
    local path = dir .. "/f.mp"
    local p = assert(mp.create(path, { page_size = 4096 }))
    pagers[#pagers + 1] = p
    local pid = p:alloc_protected()
    do
      local w <close> = p:write_protected(pid)
      w:write(0, "committed")
      assert.is_true(w:commit())
    end
    fill(p)
    local w <close> = p:write_protected(pid)
    w:write(0, "too late!")
    local ok, _, code = w:commit()
    assert.is_nil(ok)
    assert.are.equal("no_space", code)
    assert.are.equal("committed", p:protected(pid):read(0, 9))
    assert.is_true(p:check())
  end)
end)
