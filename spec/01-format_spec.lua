-- spec/01-format_spec.lua -- the on-disk format (docs/FORMAT.md) and how
-- open treats files that are not, or no longer, valid mappedpages files.

local H = require "helpers"
local mp = H.mp

local P = 1024                 -- small pages keep byte-flip loops quick
local R = H.ROOT

-- Build a small file with some history.  The last commit allocates more
-- pages than a root carries, so it rewrote the group-0 bitmap into the slot
-- the previous root does not use (a smaller one would ride in the root).
-- extra adds set_root commits before that to change which root slot ends
-- up current.  Returns {path, S1 (previous commit), S2 (latest), slot}.
local function make_history(extra)
  local p, path = H.create({ page_size = P })
  local ids = p:alloc_bulk(5)
  for _, id in ipairs(ids) do H.stamp(p, id) end
  p:set_root(77)
  p:free(ids[2])
  for i = 1, extra or 0 do p:set_root(100 + i) end
  local S1 = H.state(p)
  local tx = p:begin()
  local last = p:alloc()
  p:alloc_bulk(H.MORE_THAN_CARRIED)
  tx:commit()
  H.stamp(p, last)
  local S2 = H.state(p)
  local slot = p:info().root_slot
  p:close()
  assert(S2.txn == S1.txn + 1)
  assert(H.bitmap_page(path, P, slot) ~= H.bitmap_page(path, P, 1 - slot))
  assert(#H.root_carried(path, P, slot) == 0)
  return { path = path, S1 = S1, S2 = S2, slot = slot,
           last = last, ids = ids }
end

local function same(a, b)
  for k, v in pairs(a) do if b[k] ~= v then return false end end
  for k, v in pairs(b) do if a[k] ~= v then return false end end
  return true
end

local function describe_state(s)
  return ("txn %s, %s pages, %s free, root %s, [%s]"):format(
    tostring(s.txn), tostring(s.page_count), tostring(s.free_count),
    tostring(s.root), s.pages)
end

-- Open read-only and classify the result against a history:
-- "older" (recovered at S1), "latest" (at S2), "failed",
-- or a description of anything else (never acceptable).
local function classify(h, opts)
  local p, msg, code = mp.open(h.path, opts or { readonly = true })
  if not p then
    assert(type(msg) == "string" and #msg > 0, "nil without a message")
    return "failed", code, msg
  end
  local ok, res = pcall(function()
    local info = p:info()
    local st = H.state(p)
    if same(st, h.S1) and info.recovered == true then return "older" end
    -- damage to the older root may or may not count as a fallback: open
    -- cannot tell a damaged older root from a damaged newer one
    if same(st, h.S2) then return "latest" end
    return ("unexpected state (recovered=%s): %s"):format(
      tostring(info.recovered), describe_state(st))
  end)
  p:close()
  if not ok then return "error: " .. tostring(res) end
  return res
end

-- Flip each byte of [first, first+count) one at a time (restoring it after)
-- and classify each open.  Returns a list of "offset: result" for results
-- not in `allowed`.
local function flip_each(h, first, count, allowed)
  local bad = {}
  for off = first, first + count - 1 do
    H.flip(h.path, off)
    local res, code, msg = classify(h)
    H.flip(h.path, off)
    if not allowed[res] then
      bad[#bad + 1] = ("byte %d: %s %s %s"):format(off - first, res,
        tostring(code or ""), tostring(msg or ""))
    end
  end
  return bad
end

local function report(bad)
  if #bad > 0 then
    error(("%d flipped bytes misbehaved; first ones:\n  %s"):format(#bad,
      table.concat(bad, "\n  ", 1, math.min(#bad, 8))), 2)
  end
end

describe("the file layout", function()
  after_each(H.cleanup)

  it("starts both root slots with the magic, format version 2 and the page size", function()
    local p, path = H.create({ page_size = P })
    p:alloc()                          -- both slots now hold a root
    p:close()
    for slot = 0, 1 do
      local page = H.root_page(path, P, slot)
      assert.are.equal(H.MAGIC, page:sub(1, 8))
      assert.are.equal(2, (string.unpack("<I4", page, R.version + 1)))
      assert.are.equal(2, mp.FORMAT_VERSION)
      assert.are.equal(P, (string.unpack("<I4", page, R.page_size + 1)))
      assert.are.equal(0, (string.unpack("<I4", page, R.flags + 1)))
    end
  end)

  it("signs each root slot with a CRC32C of the page taken with the CRC field as zero", function()
    local p, path = H.create({ page_size = P })
    p:alloc()
    p:close()
    for slot = 0, 1 do
      local page = H.root_page(path, P, slot)
      assert.are.equal(H.root_crc(page),
        (string.unpack("<I4", page, R.crc + 1)))
    end
  end)

  it("numbers the creating commit 1 and each later commit one higher", function()
    local p = H.create({ page_size = P })
    assert.are.equal(1, p:info().txn)
    p:alloc()
    assert.are.equal(2, p:info().txn)
    p:set_root(5)
    assert.are.equal(3, p:info().txn)
  end)

  it("records the transaction id, page count, user root and FSM height in the current root slot", function()
    local p, path = H.create({ page_size = P })
    p:alloc_bulk(3)
    p:set_root(-42)
    local info = p:info()
    p:close()
    local slot = info.root_slot
    assert.is_true(slot == 0 or slot == 1)
    assert.are.equal(info.txn, H.root_field(path, P, slot, "txn"))
    assert.are.equal(info.page_count, H.root_field(path, P, slot, "page_count"))
    assert.are.equal(-42, H.root_field(path, P, slot, "user_root"))
    assert.are.equal(info.fsm_height, H.u32(path, slot * P + R.height))
    assert.are.equal(0, info.fsm_height)
  end)

  it("writes each commit into the root slot the previous commit did not use", function()
    local p, path = H.create({ page_size = P })
    local prev = p:info().root_slot
    for i = 1, 4 do
      p:set_root(i)
      local info = p:info()
      assert.are_not.equal(prev, info.root_slot)
      prev = info.root_slot
    end
    local info = p:info()
    p:close()
    assert.are.equal(info.txn, H.root_field(path, P, info.root_slot, "txn"))
    assert.are.equal(info.txn - 1, H.root_field(path, P, 1 - info.root_slot, "txn"))
  end)

  it("keeps the group-0 bitmap in page 2 or 3, as the root's first entry names it", function()
    local p, path = H.create({ page_size = P })
    local ids = p:alloc_bulk(4)
    p:free(ids[3])
    local info = p:info()
    local allocated = H.page_set(p)
    p:close()
    local slot = info.root_slot
    local bm = H.bitmap_page(path, P, slot)
    assert.is_true(bm == 2 or bm == 3)
    local page = H.read_at(path, bm * P, P)
    local M = H.META
    assert.are.equal(H.BITMAP_TYPE, (string.unpack("<I4", page, M.type + 1)))
    assert.are.equal(H.meta_crc(page), (string.unpack("<I4", page, M.crc + 1)))
    assert.are.equal(H.meta_crc(page), H.u32(path, slot * P + R.entries))
    assert.are.equal(0, (string.unpack("<I4", page, M.level + 1)))
    assert.are.equal(0, (string.unpack("<I4", page, M.index + 1)))
    assert.is_true((string.unpack("<i8", page, M.txn + 1)) <= info.txn)
    local reserved = H.group0_reserved(P)
    for i = 0, info.page_count - 1 do
      local want = (i < reserved and 2) or (allocated[i] and 1) or 0
      assert.are.equal(want, H.durable_state(path, P, slot, i), "state of page " .. i)
    end
    for i = info.page_count, math.min(H.geometry(P).G, 64 * 4) - 1 do
      assert.are.equal(0, H.bitmap_state(page, i), "page past the end " .. i)
    end
  end)

  it("carries a small change of page states in the root, leaving the bitmap as it was", function()
    local p, path = H.create({ page_size = P })
    local before = p:info().root_slot
    local bm = H.read_at(path, H.bitmap_page(path, P, before) * P, P)
    local a = p:alloc()
    local b = p:alloc()
    p:free(a)
    local after = p:info().root_slot
    p:close()
    assert.are.equal(H.bitmap_page(path, P, before), H.bitmap_page(path, P, after))
    assert.are.equal(bm, H.read_at(path, H.bitmap_page(path, P, after) * P, P))
    local carried = H.root_carried(path, P, after)
    table.sort(carried, function(x, y) return x[1] < y[1] end)
    assert.are.same({ { a, 0 }, { b, 1 } }, carried)
    assert.are.equal(0, H.durable_state(path, P, after, a))
    assert.are.equal(1, H.durable_state(path, P, after, b))
  end)

  it("writes the bitmap into its other slot, carrying nothing, when the changes do not fit in the root", function()
    local p, path = H.create({ page_size = P })
    local bm1 = H.bitmap_page(path, P, p:info().root_slot)
    local ids = p:alloc_bulk(H.MORE_THAN_CARRIED)
    local after = p:info().root_slot
    p:close()
    assert.are_not.equal(bm1, H.bitmap_page(path, P, after))
    assert.are.same({}, H.root_carried(path, P, after))
    for _, id in ipairs(ids) do assert.are.equal(1, H.durable_state(path, P, after, id)) end
  end)

  it("computes CRC32C with the Castagnoli polynomial", function()
    assert.are.equal(0xE3069283, mp.crc32c("123456789"))
    assert.are.equal(0, mp.crc32c(""))
    assert.are.equal(0x8A9136AA, mp.crc32c(string.rep("\0", 32)))
    assert.are.equal(0x62A8AB43, mp.crc32c(string.rep("\255", 32)))
  end)

  it("keeps the file at least as long as its page count", function()
    local p, path = H.create({ page_size = P })
    p:alloc_bulk(50)
    local info = p:info()
    assert.is_true(info.file_size >= info.page_count * P)
    p:close()
    assert.is_true(H.file_size(path) >= info.page_count * P)
  end)
end)

describe("opening something that is not a mappedpages file", function()
  after_each(H.cleanup)

  for _, mode in ipairs({ "writer", "read-only" }) do
    local opts = mode == "read-only" and { readonly = true } or nil

    it("reports not_found for a missing file (" .. mode .. ")", function()
      local path = H.path("missing.mp")
      local msg = H.fails_with("not_found", mp.open(path, opts))
      assert.is_truthy(msg:find("missing.mp", 1, true), msg)
      assert.is_false(H.exists(path))
    end)

    it("reports is_dir for a directory (" .. mode .. ")", function()
      H.fails_with("is_dir", mp.open(H.dir(), opts))
    end)

    it("reports not_mappedpages for an empty file (" .. mode .. ")", function()
      local path = H.path()
      H.write_file(path, "")
      H.fails_with("not_mappedpages", mp.open(path, opts))
      assert.are.equal(0, H.file_size(path))
    end)

    it("reports not_mappedpages for files too short to hold the roots (" .. mode .. ")", function()
      for _, n in ipairs({ 1, 7, 100, 1000, 1023 }) do
        local path = H.path()
        H.write_file(path, H.garbage(n, n))
        H.fails_with("not_mappedpages", mp.open(path, opts))
      end
    end)

    it("reports not_mappedpages for the first page of a real file alone (" .. mode .. ")", function()
      local p, src = H.create({ page_size = P })
      p:close()
      local path = H.path()
      H.write_file(path, H.read_at(src, 0, P))
      H.fails_with("not_mappedpages", mp.open(path, opts))
    end)

    it("reports not_mappedpages for zeros and for garbage (" .. mode .. ")", function()
      local zeros = H.path()
      H.write_file(zeros, string.rep("\0", 65536))
      H.fails_with("not_mappedpages", mp.open(zeros, opts))
      local junk = H.path()
      H.write_file(junk, H.garbage(65536 * 2, 7))
      H.fails_with("not_mappedpages", mp.open(junk, opts))
      local text = H.path()
      H.write_file(text, string.rep("hello, world\n", 1000))
      H.fails_with("not_mappedpages", mp.open(text, opts))
    end)
  end

  it("refuses to create over an existing file and leaves it untouched", function()
    local path = H.path()
    H.write_file(path, "precious data")
    H.fails_with("exists", mp.create(path))
    assert.are.equal("precious data", H.read_file(path))
  end)

  it("refuses to create over an existing mappedpages file and leaves it untouched", function()
    local p, path = H.create({ page_size = P })
    local id = p:alloc()
    H.stamp(p, id)
    p:close()
    local before = H.read_file(path)
    H.fails_with("exists", mp.create(path, { page_size = P }))
    assert.are.equal(before, H.read_file(path))
  end)

  it("reports not_found when creating in a missing directory", function()
    H.fails_with("not_found", mp.create(H.dir() .. "/no/such/dir/x.mp"))
  end)

  it("reports an error when creating at a directory's path", function()
    H.fails_with({ "exists", "is_dir" }, mp.create(H.dir()))
  end)
end)

describe("opening a file with a foreign header", function()
  after_each(H.cleanup)

  -- Patch both root slots with bytes at off and re-sign them.
  local function patch_both(path, off, bytes)
    for slot = 0, 1 do H.forge_root(path, P, slot, off, bytes) end
  end

  local function history_file()
    local p, path = H.create({ page_size = P })
    p:alloc()
    p:close()
    return path
  end

  it("reports not_mappedpages when the magic is wrong, even under a valid checksum", function()
    local path = history_file()
    patch_both(path, R.magic, "MAPPEDPG")
    H.fails_with("not_mappedpages", mp.open(path))
    H.fails_with("not_mappedpages", mp.open(path, { readonly = true }))
  end)

  it("reports version for a newer format version", function()
    local path = history_file()
    patch_both(path, R.version, string.pack("<I4", mp.FORMAT_VERSION + 1))
    local msg = H.fails_with("version", mp.open(path))
    assert.is_truthy(msg:lower():find("version", 1, true), msg)
    H.fails_with("version", mp.open(path, { readonly = true }))
  end)

  it("refuses a page size field that is not a supported page size", function()
    for _, bad in ipairs({ 0, 512, 1000, 3000, 131072, 0xFFFFFFFF }) do
      local path = history_file()
      patch_both(path, R.page_size, string.pack("<I4", bad))
      H.fails_with({ "corrupt", "not_mappedpages" }, mp.open(path))
      H.fails_with({ "corrupt", "not_mappedpages" }, mp.open(path, { readonly = true }))
    end
  end)

  it("refuses a page size field that differs from the file's real page size", function()
    local path = history_file()
    patch_both(path, R.page_size, string.pack("<I4", 2048))
    H.fails_with({ "corrupt", "not_mappedpages" }, mp.open(path))
    H.fails_with({ "corrupt", "not_mappedpages" }, mp.open(path, { readonly = true }))
  end)

  it("refuses roots that claim 2^32 or more pages without crashing", function()
    for _, n in ipairs({ 1 << 32, (1 << 32) + 1, 1 << 40, -1 }) do
      local path = history_file()
      patch_both(path, R.page_count, string.pack("<i8", n))
      H.assert_open_survives(path)
      H.fails_with("corrupt", mp.open(path, { readonly = true }))
      H.fails_with("corrupt", mp.open(path))
    end
  end)
end)

describe("damage to the metadata of the latest commit", function()
  after_each(H.cleanup)

  it("is detected for every byte of the current root: open never shows the damaged root", function()
    for extra = 0, 1 do                  -- current root in either slot
      local h = make_history(extra)
      report(flip_each(h, h.slot * P, P, { older = true, failed = true }))
    end
  end)

  it("makes open recover from the other root whatever byte of the current root is damaged", function()
    for extra = 0, 1 do
      local h = make_history(extra)
      report(flip_each(h, h.slot * P, P, { older = true }))
    end
  end)

  it("is detected for every byte of the current group bitmap: open never shows the damaged bitmap", function()
    local h = make_history()
    local bm = H.bitmap_page(h.path, P, h.slot)
    -- the previous root must use the other slot, so it is still intact
    assert.are_not.equal(bm, H.bitmap_page(h.path, P, 1 - h.slot))
    report(flip_each(h, bm * P, P, { older = true, failed = true }))
  end)

  it("makes open recover the previous commit whatever byte of the current bitmap is damaged", function()
    local h = make_history(1)
    local bm = H.bitmap_page(h.path, P, h.slot)
    assert.are_not.equal(bm, H.bitmap_page(h.path, P, 1 - h.slot))
    report(flip_each(h, bm * P, P, { older = true }))
  end)

  it("does not matter when only the older root is damaged: open shows the latest commit", function()
    local h = make_history()
    report(flip_each(h, (1 - h.slot) * P, P, { latest = true }))
  end)

  it("does not matter when only the older root's bitmap is damaged: open shows the latest commit", function()
    local h = make_history()
    local old_bm = H.bitmap_page(h.path, P, 1 - h.slot)
    report(flip_each(h, old_bm * P, P, { latest = true }))
  end)

  it("makes open fail with 'corrupt' when both roots are damaged", function()
    local h = make_history()
    H.flip(h.path, 0 * P + 60)
    H.flip(h.path, 1 * P + 60)
    local msg = H.fails_with("corrupt", mp.open(h.path))
    assert.is_true(#msg > 10)
    H.fails_with("corrupt", mp.open(h.path, { readonly = true }))
  end)

  it("makes open fail with 'corrupt' when both bitmap slots are damaged", function()
    local h = make_history()
    H.flip(h.path, 2 * P + 100)
    H.flip(h.path, 3 * P + 100)
    H.fails_with("corrupt", mp.open(h.path))
    H.fails_with("corrupt", mp.open(h.path, { readonly = true }))
  end)

  it("leaves the file untouched when a read-only open falls back", function()
    local h = make_history()
    H.flip(h.path, h.slot * P + 40)
    local before = H.read_file(h.path)
    assert.are.equal("older", (classify(h)))
    assert.are.equal(before, H.read_file(h.path))
  end)

  it("shows the pages of the previous commit with their bytes after a fallback", function()
    local h = make_history()
    H.flip(h.path, h.slot * P + 40)
    local p = H.open(h.path, { readonly = true })
    assert.is_true(p:info().recovered)
    for _, id in ipairs(H.page_list(p)) do
      assert.is_true(H.stamp_ok(p, id), "stamp of page " .. id)
    end
  end)

  it("is durably invalidated by a writer that fell back, so it cannot come back", function()
    local h = make_history()
    local off = h.slot * P + 40
    H.flip(h.path, off)
    local p = H.open(h.path)
    assert.is_true(p:info().recovered)
    assert.are.same(h.S1, H.state(p))
    p:close()
    H.flip(h.path, off)                -- undo the damage byte
    p = H.open(h.path, { readonly = true })
    assert.are.same(h.S1, H.state(p))
  end)

  it("is cleared with 0xFF bytes, so a torn clearing cannot complete a torn root", function()
    local h = make_history()
    local base = h.slot * P
    local root = H.read_at(h.path, base, P)
    -- the latest root's second 512-byte sector is zeros: a power loss that
    -- wrote only its first sector leaves the stale bytes of an older root
    assert.are.equal(string.rep("\0", 512), root:sub(513))
    H.write_at(h.path, base + 512, H.garbage(512, 7))
    local p = H.open(h.path)
    assert.is_true(p:info().recovered)
    assert.are.same(h.S1, H.state(p))
    p:close()
    assert.are.equal(string.rep("\255", P), H.read_at(h.path, base, P))
    -- a power loss during that clearing that wrote only its second sector
    -- leaves the torn root's first sector: zeros there would complete it
    H.write_at(h.path, base, root:sub(1, 512))
    p = H.open(h.path, { readonly = true })
    assert.is_true(p:info().recovered)
    assert.are.same(h.S1, H.state(p))
    p:close()
    H.write_at(h.path, base + 512, string.rep("\0", 512))   -- what zeros would do
    p = H.open(h.path, { readonly = true })
    assert.are.same(h.S2, H.state(p))
  end)

  it("is not reported as a recovery once cleared", function()
    local h = make_history()
    H.flip(h.path, h.slot * P + 40)
    H.open(h.path):close()
    local p = H.open(h.path)
    assert.is_false(p:info().recovered)
    assert.are.same(h.S1, H.state(p))
  end)

  it("stays rejected after a writer fell back because of its bitmap, even once the bitmap is repaired", function()
    local h = make_history()
    local bm = H.bitmap_page(h.path, P, h.slot)
    local off = bm * P + 200
    H.flip(h.path, off)
    local p = H.open(h.path)
    assert.is_true(p:info().recovered)
    p:close()
    H.flip(h.path, off)
    p = H.open(h.path, { readonly = true })
    assert.are.same(h.S1, H.state(p))
  end)

  it("lets a writer that fell back commit again, and the new commit wins on reopen", function()
    local h = make_history()
    H.flip(h.path, h.slot * P + 40)
    local p = H.open(h.path)
    assert.are.same(h.S1, H.state(p))
    local id = p:alloc()
    H.stamp(p, id, "after")
    p:set_root(999)
    local S3 = H.state(p)
    assert.are.equal(h.S1.txn + 2, S3.txn)
    p:close()
    p = H.open(h.path)
    assert.is_false(p:info().recovered)
    assert.are.same(S3, H.state(p))
    assert.is_true(H.stamp_ok(p, id, "after"))
  end)
end)

describe("structural checks behind valid checksums", function()
  after_each(H.cleanup)

  -- Each forgery re-signs what it touched; open must still reject the
  -- latest root and recover the previous commit.
  local root_forgeries = {
    { "a page count past the end of the file", function(h)
        local n = H.file_size(h.path) // P + 1
        return R.page_count, string.pack("<i8", n) end },
    { "a page count that does not cover the reserved pages", function()
        return R.page_count, string.pack("<i8", 3) end },
    { "a page count of zero", function()
        return R.page_count, string.pack("<i8", 0) end },
    { "an FSM height that does not match its page count", function()
        return R.height, string.pack("<I4", 1) end },
    { "an absurd FSM height", function()
        return R.height, string.pack("<I4", 0xFFFFFFFF) end },
    { "a bitmap slot number 2", function()
        return R.entries + 4, string.pack("<I4", 2) end },
    { "a bitmap slot number 2^32-1", function()
        return R.entries + 4, string.pack("<I4", 0xFFFFFFFF) end },
    { "a bitmap checksum in its entry that does not match the bitmap", function(h)
        local crc = H.u32(h.path, h.slot * P + R.entries)
        return R.entries, string.pack("<I4", crc ~ 1) end },
    { "a wrong page size", function()
        return R.page_size, string.pack("<I4", 4096) end },
    -- found by fuzz_open_fixed: 2^64-1 was accepted, the next commit wrapped
    -- to transaction id 0 and was lost on reopen
    { "the transaction id 2^64-1", function()
        return R.txn, string.pack("<i8", -1) end },
    { "the transaction id 2^63", function()
        return R.txn, string.pack("<i8", math.mininteger) end },
  }

  -- Carried free-map entries (FORMAT.md): count at offset 92, entry i at
  -- P - 8*(i+1) here (the history has no page-table entries).
  local function carried(list)
    local patches = { { R.fm_ncarry, string.pack("<I4", #list) } }
    for i, v in ipairs(list) do patches[#patches + 1] = { P - 8 * i, string.pack("<i8", v) } end
    return patches
  end
  local carried_forgeries = {
    { "a carried free-map entry for a page past the page count", function(h)
        return carried { h.S2.page_count << 2 | 1 } end },
    { "a carried free-map entry freeing root slot 0", function() return carried { 0 << 2 | 0 } end },
    { "a carried free-map entry making a bitmap slot a regular page", function()
        return carried { 2 << 2 | 1 } end },
    { "a carried free-map entry with state 11 in a version-1 root (held pages came with version 2)",
      function(h)
        local patches = carried { h.last << 2 | 3 }
        patches[#patches + 1] = { R.version, string.pack("<I4", 1) }
        return patches end },
    { "two carried free-map entries for one page", function(h)
        return carried { h.last << 2 | 0, h.last << 2 | 1 } end },
    { "a carried free-map entry making a free page system (no page-table page or content is there)",
      function(h) return carried { (h.S2.page_count - 1) << 2 | 2 } end },
    { "129 carried free-map entries", function()
        return { { R.fm_ncarry, string.pack("<I4", 129) } } end },
    { "carried free-map entries reaching into the top entries", function(h)
        local list = {}
        for i = 1, (P - R.entries) // 8 do list[i] = (h.ids[1] + i) << 2 | 0 end
        return carried(list) end },
  }
  -- a forgery returns (offset, bytes) or a list of {offset, bytes}
  for _, f in ipairs(carried_forgeries) do root_forgeries[#root_forgeries + 1] = f end
  for _, f in ipairs(root_forgeries) do
    it("rejects a latest root with " .. f[1] .. " and recovers the previous commit", function()
      local h = make_history()
      local off, bytes = f[2](h)
      for _, patch in ipairs(type(off) == "table" and off or { { off, bytes } }) do
        H.write_at(h.path, h.slot * P + patch[1], patch[2])
      end
      H.fix_root_crc(h.path, P, h.slot)
      H.assert_open_survives(h.path)
      assert.are.equal("older", (classify(h)))
      assert.are.equal("older", (classify(h, {})))   -- writer too
    end)
  end

  it("accepts a carried free-map entry that frees an allocated page, as a commit would write it", function()
    local h = make_history()
    for _, patch in ipairs(carried { h.last << 2 | 0 }) do H.write_at(h.path, h.slot * P + patch[1], patch[2]) end
    H.fix_root_crc(h.path, P, h.slot)
    local p = H.open(h.path, { readonly = true })
    assert.is_nil(H.page_set(p)[h.last])
    assert.are.equal(h.S2.txn, p:info().txn)
    assert.is_true(p:check())
  end)

  -- Version 2: state 11 on disk is a page held for readers (freed by a
  -- commit while a reader's snapshot could reach it).  Open keeps it out
  -- of the free pages; a writer frees it at its first commit that finds
  -- no reader older than its own snapshot.
  for _, how in ipairs({ "carried", "bitmap" }) do
    it("takes state 11 in a version-2 root (" .. how .. ") as a page held for readers", function()
      local h = make_history()
      if how == "carried" then
        for _, patch in ipairs(carried { h.last << 2 | 3 }) do
          H.write_at(h.path, h.slot * P + patch[1], patch[2])
        end
        H.fix_root_crc(h.path, P, h.slot)
      else
        H.forge_bitmap(h.path, P, h.slot, function(page) return H.set_bitmap_state(page, h.last, 3) end)
      end
      local r = H.open(h.path, { readonly = true })
      assert.are.equal(h.S2.txn, r:info().txn)
      assert.is_nil(H.page_set(r)[h.last])
      assert.are.equal(1, r:info().held_count)
      assert.is_true(r:check())
      local free = r:free_count()
      r:close()
      local w = H.open(h.path)
      assert.are.equal(1, w:info().held_count)
      assert.are.equal(free, w:free_count())
      assert.is_true(w:check())
      w:set_root(9)                          -- no reader: the commit frees it
      assert.are.equal(0, w:info().held_count)
      assert.are.equal(free + 1, w:free_count())
      assert.is_true(w:check())
      w:close()
    end)
  end

  -- Regression: a commit of a writer that never held a page moved its
  -- empty (never allocated, NULL) held list with memmove, undefined
  -- behaviour that `make test-asan` stops at (UBSan, nonnull argument).
  it("commits with no page ever held, then holds and releases one for a reader", function()
    local p, path = H.create({ page_size = 1024 })
    local id = assert(p:alloc())
    assert(p:set_root(1))
    assert.are.equal(0, p:info().held_count)
    local r = H.open(path, { readonly = true })
    assert(p:free(id))                       -- the reader's snapshot reaches it: held
    assert.are.equal(1, p:info().held_count)
    r:close()
    assert(p:set_root(2))                    -- no reader now: released
    assert.are.equal(0, p:info().held_count)
    assert.is_true(p:check())
  end)

  it("opens a root at the last transaction id, 2^63-1, and refuses to commit past it", function()
    local h = make_history()
    H.forge_root(h.path, P, h.slot, R.txn, string.pack("<i8", math.maxinteger))
    local p = H.open(h.path)
    assert.are.equal(math.maxinteger, p:info().txn)
    assert.is_false(p:info().recovered)
    H.fails_with("full", p:alloc())
    H.fails_with("full", p:set_root(5))
    assert.is_true(p:check())
    p:close()
    local again = H.open(h.path, { readonly = true })
    local st = H.state(again)
    assert.are.equal(math.maxinteger, st.txn)
    st.txn = h.S2.txn
    assert.is_true(same(st, h.S2), describe_state(st))
  end)

  local bitmap_forgeries = {
    { "marks a root slot free", function(page) return H.set_bitmap_state(page, 0, 0) end },
    { "marks its own slot page as a regular page", function(page)
        return H.set_bitmap_state(page, 2, 1) end },
    { "marks a reserved index page free", function(page)
        return H.set_bitmap_state(page, H.group0_reserved(P) - 1, 0) end },
    { "holds state 11 under a version-1 root (held pages came with version 2)", function(page, h)
        return H.set_bitmap_state(page, h.last, 3) end, 1 },
    { "marks a page past the page count allocated", function(page, h)
        return H.set_bitmap_state(page, h.S2.page_count, 1) end },
    { "has the index-node type", function(page)
        return string.pack("<I4", H.INDEX_TYPE) .. page:sub(5) end },
    { "claims level 1", function(page)
        return page:sub(1, 16) .. string.pack("<I4", 1) .. page:sub(21) end },
    { "claims to be group 1's bitmap", function(page)
        return page:sub(1, 20) .. string.pack("<I4", 1) .. page:sub(25) end },
    { "was written by a transaction newer than its root", function(page, h)
        return page:sub(1, 8) .. string.pack("<i8", h.S2.txn + 1) .. page:sub(17) end },
  }

  for _, f in ipairs(bitmap_forgeries) do
    it("rejects a latest bitmap that " .. f[1] .. " and recovers the previous commit", function()
      local h = make_history()
      assert.is_true(h.S2.page_count < H.geometry(P).G)
      H.forge_bitmap(h.path, P, h.slot, function(page) return f[2](page, h) end)
      if f[3] then H.forge_root(h.path, P, h.slot, R.version, string.pack("<I4", f[3])) end
      assert.are.equal("older", (classify(h)))
      assert.are.equal("older", (classify(h, {})))
    end)
  end

  it("never lets a forged bitmap hand out a root slot", function()
    local h = make_history()
    -- forge both generations so there is nothing valid to fall back to
    H.forge_bitmap(h.path, P, h.slot, function(page) return H.set_bitmap_state(page, 1, 0) end)
    H.forge_bitmap(h.path, P, 1 - h.slot, function(page) return H.set_bitmap_state(page, 1, 0) end)
    local p, msg, code = mp.open(h.path)
    if p then
      H.track(p)
      for _ = 1, p:free_count() + 2 do
        assert.are_not.equal(1, p:alloc())
      end
    else
      H.fails_with("corrupt", p, msg, code)
    end
  end)
end)

describe("truncated and extended files", function()
  after_each(H.cleanup)

  local function opens_consistently(path)
    H.assert_open_survives(path)
    local p, msg, code = mp.open(path, { readonly = true })
    if not p then
      H.fails_with({ "corrupt", "not_mappedpages" }, p, msg, code)
      return false
    end
    H.track(p)
    local info = p:info()
    assert.is_true(info.page_count * P <= H.file_size(path))
    for _, id in ipairs(H.page_list(p)) do p:page(id):read() end   -- no SIGBUS
    p:close()
    return true
  end

  it("refuses or falls back when the file is cut below its page count", function()
    local p, path = H.create({ page_size = P })
    p:alloc_bulk(40)
    local info = p:info()
    p:close()
    H.truncate(path, (info.page_count - 3) * P)
    opens_consistently(path)
  end)

  it("refuses or falls back when the file is cut in the middle of a page", function()
    local p, path = H.create({ page_size = P })
    p:alloc_bulk(40)
    local info = p:info()
    p:close()
    H.truncate(path, info.page_count * P - 100)
    opens_consistently(path)
  end)

  it("reports corrupt when the file keeps its roots but loses everything after", function()
    local p, path = H.create({ page_size = P })
    p:alloc_bulk(10)
    p:close()
    H.truncate(path, 3 * P)
    H.assert_open_survives(path)
    H.fails_with({ "corrupt", "not_mappedpages" }, mp.open(path, { readonly = true }))
    H.fails_with({ "corrupt", "not_mappedpages" }, mp.open(path))
  end)

  it("still opens at the latest commit when garbage follows the last page", function()
    local h = make_history()
    local f = assert(io.open(h.path, "ab"))
    f:write(H.garbage(10 * P, 3))
    f:close()
    assert.are.equal("latest", (classify(h)))
  end)
end)
