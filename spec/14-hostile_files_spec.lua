-- spec/14-hostile_files_spec.lua -- corrupt and hostile files (issue 5,
-- item 3).
--
-- Every image here is opened in a child lua5.4 process (under `timeout`),
-- read-only and for writing, so a crash or a hang fails one test and names
-- the image instead of killing the run.  The verdict on each image is one
-- of:
--   older   the open shows the previous committed state, flagged recovered
--   latest  the open shows the newest committed state
--   fail    nil, msg, code (the codes each test allows)
-- and anything else (another state, a failed check(), an unreadable page,
-- a raise, a crash, a hang) is a failure.  A state is compared as a
-- fingerprint: the counters, the user root, the regular pages, and each
-- allocated pid with the first and last 16 bytes of its content (every
-- content page written here starts with a marker of its own).
--
-- The byte-flip loops know, from the file itself (docs/FORMAT.md), which
-- metadata pages each of the two roots references, so each flip has one
-- right answer: damage to a page only the newest root uses must fall back
-- to the previous commit, damage to one only the previous root uses must
-- not matter, and damage to one both use must fail cleanly (a CRC32C
-- catches every single-byte change).  Both roots may name the same bitmap
-- page (a commit with few page-state changes carries them in its root as
-- free-map entries instead of writing a bitmap): that page is then one
-- both use.  A writer that fell back must have invalidated the newest root
-- for good: with the byte repaired, the file still opens at the previous
-- commit.
--
-- Forgeries re-sign every checksum on the way up (page, parent entry,
-- root) so that only the structural checks can catch them.
--
-- The files (1 KiB pages): the main file (regular pages, 100 pids in a page
-- table of two leaves under a node, the previous root carrying 36
-- page-table entries, the newest commit rewriting part of the table,
-- growing the file and carrying its page-state changes over the bitmap
-- page both roots share; or, for the forgeries, writing a bitmap of its
-- own), the carrying file (the newest root carrying a full tail of 37
-- page-table entries, and so writing its bitmap), the free-map file (both
-- roots carrying free-map and page-table entries over a shared bitmap and
-- page table, the newest with a tail full of both), the index file (113
-- groups: FSM height 1, a sparse 434 MiB file), the deep file (7,700
-- pids: a page table of height 2), hand-made fresh files, and one file of
-- 4 KiB pages (roots with room for more than the 128 free-map entries a
-- root may carry).  Sections: byte flips, truncation, growth by another
-- tool, forgeries, garbage and non-files, unusual valid files.

local H = require "helpers"

local P = 1024
local G = 4 * (P - 32)            -- pages per group
local E = (P - 32) // 8           -- entries per index / page-table node
local EL = (P - 32) // 16         -- entries per page-table leaf
local K = (P - 128) // 8          -- entries the root holds directly (ROOT.entries, TOP_ENTRY)
local su, sp = string.unpack, string.pack
local sq = H.shell_quote

-- Seconds a child may take before it counts as hung (generous: ASan).
local CHILD_LIMIT = 300

-- MP_HOSTILE_VERBOSE=1 prints what each child counted (images opened, and
-- how each open went), and for each forgery that must fall back, why open
-- rejects the forged root.
--
-- The byte-flip loops open thousands of images, and a writer that falls
-- back issues a barrier to invalidate the rejected root: on a disk that
-- costs milliseconds each.  Their files live in /dev/shm (tmpfs, where a
-- barrier is cheap) when there is one; the format checks do not care.
local verbose = os.getenv("MP_HOSTILE_VERBOSE") ~= nil
local fast_dirs = {}
local function fast_path(name)
  local dir = fast_dirs[1]
  if not dir then
    dir = H.scratch("mp-hostile")
    fast_dirs[1] = dir
  end
  return dir .. "/" .. name
end

local function cleanup()
  fast_dirs[1] = nil
  H.cleanup()
end

---------------------------------------------------------------------------
-- code shared by this process and the children


local C = require "children.hostile_lib"

-- Run spec/children/hostile_<name>.lua in a child lua5.4 with args (its
-- C.args()); fail the test with what the child was doing if it crashed,
-- hung or raised, and with its BAD lines if it found anything.  Returns
-- the counters it reported.
local function run_child(name, args)
  args.progress = H.path("progress.txt")
  H.write_file(args.progress, "(not started)")
  local out, status = H.run_child("hostile_" .. name, args, { timeout = CHILD_LIMIT })
  if status ~= 0 or not out:find("\ndone\n$") then
    error(("the child crashed, hung or raised (exit status %s%s) at: %s\n%s"):format(
      tostring(status), status == 137 and ", killed after " .. CHILD_LIMIT .. " s" or "",
      H.read_file(args.progress):gsub("%s+$", ""), out:sub(1, 4000)), 2)
  end
  local bads = {}
  for line in out:gmatch("BAD ([^\n]*)") do bads[#bads + 1] = line end
  if #bads > 0 then error(table.concat(bads, "\n"), 2) end
  local counts = {}
  for k, n in out:gmatch("COUNT ([^=\n]+)=(%d+)") do counts[k] = tonumber(n) end
  if verbose then io.stderr:write((out:gsub("\ndone\n$", "\n"))) end
  return counts
end

---------------------------------------------------------------------------
-- reading the format and forging behind valid checksums: spec/format.lua

local F = H.format
local ROOT, META = F.ROOT, F.META
local TOP, NE, LE, CP = F.TOP_ENTRY, F.NODE_ENTRY, F.LEAF_ENTRY, F.CARRIED_PT
-- Offset of entry k of a page-table node, and its bytes in page pg.
local function node_at(k) return META.data + NE.size * k end
local function node_bytes(pg, k) return pg:sub(node_at(k) + 1, node_at(k) + NE.size) end
local function base(g) return F.group_base(P, g) end
local cdiv = F.cdiv
local function roots(path) return F.roots(path, P) end
local forge_pt, forge_bitmap, forge_index = F.forge_pt, F.forge_group_bitmap, F.forge_index
local forge_root = F.forge_parsed_root
local splice = F.splice

-- A page-table entry, 16 bytes.
local function entry16(page, crc, txn) return sp("<I4I4i8", page, crc, txn) end   -- LEAF_ENTRY

---------------------------------------------------------------------------
-- the files

-- Content for protected pages: a marker naming tag, then bytes seeded by it.
local function content(tag) return H.pcontent(P, tag) end

-- Write content(tag) to pid inside the open transaction.
local function twrite(p, pid, tag)
  p:write_protected(pid):write(0, content(tag))
end

-- Finish a built file: the fingerprints of its last two commits.
local function finish(p, path, S1, pids)
  local S2 = C.fingerprint(p, pids)
  local txn = p:info().txn
  p:close()
  local latest, prev = roots(path)
  assert(latest.txn == txn and prev.txn == txn - 1, "both root slots must hold the last two commits")
  return { path = path, S = { S1 = S1, S2 = S2, pids = pids } }
end

-- The main file: regular pages, 100 protected pids (25 with content) in a
-- page table of two leaves under a node, a user root, and a history that
-- leaves both root slots valid with different pages below them:
--   * the previous commit's root carries 36 page-table entries in its tail
--     (36 single-pid commits since the table was last written, all in
--     leaf 0: writes, frees, first writes of never-written pids);
--   * the newest commit (one transaction) writes two more pids of leaf 0,
--     which no longer fit in the root: it writes leaf 0 and the node to
--     fresh pages (leaf 1 stays shared by both roots), frees a regular
--     page, sets the root and allocates enough to grow the file from 64
--     to 128 pages.  Its page-state changes fit in the root: it carries
--     them as free-map entries over the bitmap page the previous root
--     names too (a shared bitmap).
-- With `own_bitmap` the newest commit also allocates more pages than a
-- root carries free-map entries for (the file grows further), so it
-- writes the bitmap to its other slot and carries none: each root has a
-- bitmap page of its own, and forged bitmaps say exactly what they say.
local function build_main(own_bitmap)
  local p, path = H.create({ page_size = P }, fast_path(own_bitmap and "main-own.mp" or "main.mp"))
  local ids = p:alloc_bulk(6)
  for _, id in ipairs(ids) do H.stamp(p, id) end
  p:transaction(function()
    for i = 0, 99 do assert(p:alloc_protected() == i) end
    for pid = 0, 99, 4 do twrite(p, pid, "a" .. pid) end
  end)
  p:free(ids[2])
  p:set_root(77)
  local changed = 0
  for pid = 0, 60, 4 do H.pset(p, pid, content("b" .. pid)); changed = changed + 1 end
  for _, pid in ipairs({ 1, 2, 3, 5, 6, 7, 9, 10, 11, 13 }) do
    assert(p:free_protected(pid)); changed = changed + 1
  end
  for _, pid in ipairs({ 14, 15, 17, 18, 19, 21, 22, 23, 25, 26 }) do
    H.pset(p, pid, content("c" .. pid)); changed = changed + 1
  end
  assert(changed == 36)
  local S1 = C.fingerprint(p)
  assert(p:info().page_count == 64)
  p:transaction(function()
    twrite(p, 27, "d27")
    twrite(p, 29, "d29")
    p:free(ids[4])
    p:set_root(-5)
    for _, id in ipairs(assert(p:alloc_bulk(p:free_count() + 3))) do H.stamp(p, id) end
    if own_bitmap then
      for _, id in ipairs(assert(p:alloc_bulk(H.MORE_THAN_CARRIED))) do H.stamp(p, id) end
    end
  end)
  assert(p:info().page_count == 128 or own_bitmap and p:info().page_count > 128)
  local f = finish(p, path, S1)
  local latest, prev = roots(path)
  assert(prev.D == 36 and latest.D == 0 and latest.pt_h == 1 and prev.pt_h == 1)
  assert(latest.pt[0][0] ~= prev.pt[0][0] and latest.pt[1][0] ~= prev.pt[1][0])
  assert(latest.pt[0][1] == prev.pt[0][1])
  if own_bitmap then
    assert(latest.C == 0 and latest.bitmaps[0] ~= prev.bitmaps[0])
  else
    assert(latest.C > 0 and latest.bitmaps[0] == prev.bitmaps[0])
  end
  return f
end

-- The carrying file: the newest root carries a full tail (37 page-table
-- entries, all the room one top entry leaves at 1 KiB pages, so no
-- free-map entry) and the previous one 36, both over one page table (two
-- leaves and a node) that both roots share.
local function build_carry()
  local p, path = H.create({ page_size = P }, fast_path("carry.mp"))
  local ids = p:alloc_bulk(4)
  for _, id in ipairs(ids) do H.stamp(p, id) end
  p:transaction(function()
    for i = 0, 69 do assert(p:alloc_protected() == i) end
    for pid = 0, 69, 5 do twrite(p, pid, "a" .. pid) end
  end)
  for pid = 1, 18 do if pid % 5 ~= 0 then assert(p:free_protected(pid)) end end
  for pid = 19, 40 do if pid % 5 ~= 0 then H.pset(p, pid, content("b" .. pid)) end end
  for _, pid in ipairs({ 5, 10, 15, 20 }) do H.pset(p, pid, content("c" .. pid)) end
  p:set_root(9)
  local S1 = C.fingerprint(p)
  p:transaction(function()
    twrite(p, 66, "d66")
    H.stamp(p, p:alloc())
    p:free(ids[1])
    p:set_root(10)
  end)
  local f = finish(p, path, S1)
  local latest, prev = roots(path)
  assert(latest.D == 37 and prev.D == 36, "tails " .. latest.D .. ", " .. prev.D)
  assert(latest.top == prev.top and latest.pt_h == 1)
  -- page-table entries come first: a full tail of them leaves no room for
  -- free-map entries, so the newest commit wrote the bitmap instead
  assert(latest.C == 0 and latest.bitmaps[0] ~= prev.bitmaps[0])
  return f
end

-- Write a fresh file by hand at path, as another tool could: transaction
-- 1 in root slot 0 (slot 1 zero), `pc` pages (the file is made sparse to
-- that size, plus `extra` bytes), nothing allocated.  FSM height 0 or 1.
local function hosted(g)
  if g == 0 then return 2 end
  local n = 0
  if g % E == 0 then n = n + 1 end
  if g % (E * E) == 0 then n = n + 1 end
  return n
end

local function forge_fresh(path, pc, extra)
  local ngroups = cdiv(pc, G)
  local h = ngroups <= K and 0 or 1
  assert(ngroups <= K * E)
  assert(os.execute(("truncate -s %d %s"):format(pc * P + (extra or 0), sq(path))))
  local function meta(type_, level, index, body) return F.meta_page(P, type_, 1, level, index, body) end
  local entries = {}
  for g = 0, ngroups - 1 do
    -- the reserved run: pages 0 and 1 (the roots) in group 0, then the
    -- bitmap's two slots and two per index level the group hosts
    local run = base(g) - g * G + 2 + 2 * hosted(g)
    local bytes = {}
    for i = 1, cdiv(run, 4) do bytes[i] = 0 end
    for i = 0, run - 1 do bytes[i // 4 + 1] = bytes[i // 4 + 1] | (2 << (2 * (i % 4))) end
    local page = meta(H.BITMAP_TYPE, 0, g, string.char(table.unpack(bytes)))
    H.write_at(path, base(g) * P, page)
    entries[#entries + 1] = sp("<I4I4", su("<I4", page, META.crc + 1), 0)   -- {crc, slot 0}
  end
  if h == 1 then
    local nodes = {}
    for n = 0, cdiv(ngroups, E) - 1 do
      local node = meta(H.INDEX_TYPE, 1, n, table.concat(entries, "", n * E + 1, math.min(ngroups, (n + 1) * E)))
      H.write_at(path, (base(n * E) + 2) * P, node)
      nodes[#nodes + 1] = sp("<I4I4", su("<I4", node, META.crc + 1), 0)
    end
    entries = nodes
  end
  -- magic, version, page size, crc, flags, txn, page count, user root, FSM height
  local root = H.MAGIC .. sp("<I4I4I4I4i8i8i8I4", 1, P, 0, 0, 1, pc, 0, h)
  assert(#root == ROOT.height + 4)
  root = root .. string.rep("\0", ROOT.entries - #root) .. table.concat(entries)
  H.write_at(path, 0, root .. string.rep("\0", P - #root))
  H.fix_root_crc(path, P, 0)
end

-- The index file: FSM height 1.  It has more groups (K + 1 = 113) than
-- the root has entries, so the root names an index node that names the
-- bitmaps: 444,480 pages, a 434 MiB sparse file.  No writer makes one
-- quickly (growth reserves disk blocks), so transaction 1 is forged by
-- hand, like a fresh file, and a writer adds the later commits: the
-- previous ones carry their free-map changes in the root (both name
-- transaction 1's bitmaps), the newest changes more pages of group 0 than
-- a root carries, so it writes group 0's bitmap and index node 0 to their
-- other slots (the other groups' bitmaps stay shared).
local function build_index()
  local path = fast_path("index.mp")
  local pc = K * G + 64
  forge_fresh(path, pc)
  local p = H.open(path)
  assert(p:info().fsm_height == 1 and p:page_count() == pc and not p:info().recovered)
  local ids = p:alloc_bulk(3)
  for _, id in ipairs(ids) do H.stamp(p, id) end
  local pid = p:alloc_protected()
  H.pset(p, pid, content("i" .. pid))
  p:set_root(5)
  local S1 = C.fingerprint(p)
  p:transaction(function()
    p:free(ids[2])
    H.stamp(p, p:alloc())
    twrite(p, p:alloc_protected(), "i1")
    for _, id in ipairs(assert(p:alloc_bulk(H.MORE_THAN_CARRIED))) do H.stamp(p, id) end
  end)
  local f = finish(p, path, S1)
  local latest, prev = roots(path)
  assert(latest.fsm_h == 1 and latest.index[0] ~= prev.index[0])
  assert(latest.C == 0 and prev.C > 0 and latest.bitmaps[0] ~= prev.bitmaps[0] and latest.bitmaps[1] == prev.bitmaps[1])
  return f
end

-- The deep file: 7,700 pids, a page table of height 2 (125 leaves, two
-- nodes above them, a top).  The previous commit rewrote leaves 0 and 1,
-- node 1.0 and the top; the newest rewrites leaf 0, node 1.0 and the top
-- again (node 1.1 and the leaves below it are shared).  Its states are
-- fingerprinted by the pids with content only.
local function build_deep()
  local p, path = H.create({ page_size = P }, fast_path("deep.mp"))
  local N = 7700
  local a, b, c, pids = {}, {}, {}, {}
  for pid = 0, N - 1, 200 do a[#a + 1] = pid end
  for pid = 41, 120, 2 do b[#b + 1] = pid end                 -- leaves 0 and 1
  for pid = 2, 60, 2 do c[#c + 1] = pid end                   -- leaf 0 ...
  for pid = 7000, 7010 do c[#c + 1] = pid end                 -- ... and 112, 113
  for _, t in ipairs({ a, b, c }) do
    for _, pid in ipairs(t) do pids[#pids + 1] = pid end
  end
  table.sort(pids)
  p:transaction(function()
    for i = 0, N - 1 do assert(p:alloc_protected() == i) end
    for _, pid in ipairs(a) do twrite(p, pid, "a" .. pid) end
  end)
  H.stamp(p, p:alloc())
  p:transaction(function()
    for _, pid in ipairs(b) do twrite(p, pid, "b" .. pid) end
  end)
  local S1 = C.fingerprint(p, pids)
  p:transaction(function()
    for _, pid in ipairs(c) do twrite(p, pid, "c" .. pid) end
    p:set_root(3)
  end)
  local f = finish(p, path, S1, pids)
  local latest, prev = roots(path)
  assert(latest.pt_h == 2 and latest.top ~= prev.top and latest.pt[1][0] ~= prev.pt[1][0])
  assert(latest.pt[1][1] == prev.pt[1][1])
  return f
end

-- Free-map entries' worth of room a 1 KiB root with one top entry leaves
-- beside D carried page-table entries.
local function fm_room(D) return (P - ROOT.entries - TOP.size - CP.size * D) // F.CARRIED_FM.size end

-- The free-map file: both roots carry free-map entries over one bitmap
-- page they share (written by an earlier commit whose changes no longer
-- fitted in its root) and page-table entries over one page table they
-- share (70 pids: two leaves and a node).  The newest root's tail is full:
-- 25 page-table entries and 36 free-map entries take all the room its one
-- top entry leaves.  The previous commit allocated a regular page (and
-- carries 34 entries beside 24 page-table entries); the newest writes
-- pid 30, which adds a page-table entry and two free-map entries.
local function build_fm()
  local p, path = H.create({ page_size = P }, fast_path("fm.mp"))
  local ids = p:alloc_bulk(8)
  for _, id in ipairs(ids) do H.stamp(p, id) end
  p:transaction(function()
    for i = 0, 69 do assert(p:alloc_protected() == i) end
    for pid = 0, 69, 5 do twrite(p, pid, "a" .. pid) end
  end)
  local bitmap = roots(path).bitmaps[0]
  for pid = 1, 24 do H.pset(p, pid, content("b" .. pid)) end
  assert(roots(path).bitmaps[0] ~= bitmap, "the bitmap should have been written on the way")
  p:free(ids[3])
  -- single allocations until pid 30's write fills the tail exactly
  local r
  repeat
    H.stamp(p, p:alloc())
    r = roots(path)
  until r.C >= fm_room(r.D + 1) - 2
  assert(r.C == fm_room(r.D + 1) - 2)
  local S1 = C.fingerprint(p)
  H.pset(p, 30, content("c30"))
  local f = finish(p, path, S1)
  local latest, prev = roots(path)
  assert(latest.D == prev.D + 1 and latest.C == prev.C + 2 and latest.C == fm_room(latest.D),
         ("tails: %d + %d, %d + %d"):format(latest.D, latest.C, prev.D, prev.C))
  assert(latest.bitmaps[0] == prev.bitmaps[0] and latest.top == prev.top and latest.pt_h == 1)
  assert(latest.entries[30].txn == latest.txn)
  return f
end

-- A 4 KiB-page file (roots with room for more than 128 free-map entries):
-- the newest commit allocated more pages than a root carries, so it wrote
-- the bitmap and carries none; its 200 pages, regular in that bitmap, are
-- the pages the forgeries free.  No page table.  The root parser above is
-- for 1 KiB pages: this file is read by hand (page-table entries: none,
-- so free-map entry i sits at P4 - 8*(i+1)).
local P4 = 4096
local function build_wide()
  local p, path = H.create({ page_size = P4 }, fast_path("wide.mp"))
  H.stamp(p, p:alloc())
  local S1 = C.fingerprint(p)
  local ids = assert(p:alloc_bulk(H.MORE_THAN_CARRIED))
  local S2 = C.fingerprint(p)
  local slot = p:info().root_slot
  p:close()
  assert(H.u32(path, slot * P4 + H.ROOT.fm_ncarry) == 0 and H.u32(path, slot * P4 + H.ROOT.pt_ndelta) == 0)
  assert(H.u64(path, slot * P4 + H.ROOT.txn) == H.u64(path, (1 - slot) * P4 + H.ROOT.txn) + 1)
  assert(H.bitmap_page(path, P4, slot) ~= H.bitmap_page(path, P4, 1 - slot))
  table.sort(ids)
  return { path = path, S = { S1 = S1, S2 = S2 }, slot = slot, ids = ids }
end

-- Each metadata page either root uses, the root slots and the content
-- pages the newest commit verifies, with what a flip there must do:
-- a page only the newest root uses -> older; only the previous -> latest;
-- both -> fail.  `only` keeps the pages whose description matches.
local function root_regions(r, who)
  local top = ROOT.entries + TOP.size * (r.fsm_h == 0 and r.ngroups or cdiv(r.ngroups, E))
  return {
    { who .. " header", 0, ROOT.entries },
    { who .. " top entries", ROOT.entries, top },
    { who .. " zeros between", top, P - r.tail },
    { who .. " free-map entries", P - r.tail, P - CP.size * r.D },
    { who .. " page-table entries", P - CP.size * r.D, P },
  }
end

local function flip_plan(path, only)
  local latest, prev = roots(path)
  local plan = {
    { page = latest.slot, what = "newest root", expect = "older", regions = root_regions(latest, "newest root") },
    { page = prev.slot, what = "previous root", expect = "latest", regions = root_regions(prev, "previous root") },
  }
  local seen = {}
  for _, r in ipairs({ latest, prev }) do
    for pg in pairs(r.refs) do
      if not seen[pg] then
        seen[pg] = true
        local a, b = latest.refs[pg], prev.refs[pg]
        local what = a or b
        local is_content = what:find("^content")
        if not is_content or (a and not b and a:find("pid (%d+)$") and
                              latest.verified[tonumber(a:match("pid (%d+)$"))]) then
          local expect = (a and b) and "fail:corrupt" or a and "older" or "latest"
          local who = (a and b) and "shared " or a and "newest " or "previous "
          if is_content then who = "newest commit's " end
          plan[#plan + 1] = { page = pg, what = who .. what, expect = expect }
        end
      end
    end
  end
  table.sort(plan, function(x, y) return x.page < y.page end)
  if only then
    local keep = {}
    for _, e in ipairs(plan) do
      for _, pat in ipairs(only) do
        if e.what:find(pat) then keep[#keep + 1] = e break end
      end
    end
    plan = keep
  end
  return plan
end

-- The flip loop, in a child: every byte of every planned page, one at a
-- time, opened read-only and for writing.  ARGS: path, S, pages, P, step,
-- carry_every (every so many bytes, the writer also commits and reopens).
-- A page's regions ({name, from, to}) count the bytes flipped in each
-- ("flipped <name>").
-- (the child: spec/children/hostile_flip.lua)

-- Flip the bytes of the planned pages of file f in one child (every byte,
-- or every step-th where an entry of the plan says so).  Returns the
-- counters the child reported.
local function flip_all(f, plan, opts)
  opts = opts or {}
  local file_size = H.file_size(f.path)
  local counts = run_child("flip", { path = f.path, S = f.S, pages = plan, P = P,
                                   carry_every = opts.carry_every or 128,
                                   size = opts.size or file_size, file_size = file_size })
  local want = 0
  for _, e in ipairs(plan) do want = want + 2 * cdiv(P, e.step or 1) end
  assert.are.equal(want, counts.images)
  return counts
end

-- The plan's entries whose description matches pattern (exactly one
-- entry must when `one`); with step, flip only every step-th byte there.
local function pick(plan, pattern, step)
  local out = {}
  for _, e in ipairs(plan) do
    if e.what:find(pattern) then
      e.step = step
      out[#out + 1] = e
    end
  end
  assert(#out > 0, "no page matches " .. pattern)
  return out
end

local function concat(...)
  local out = {}
  for _, t in ipairs({ ... }) do
    for _, x in ipairs(t) do out[#out + 1] = x end
  end
  return out
end

local function expect_kinds(plan, want)
  local got = {}
  for _, e in ipairs(plan) do got[#got + 1] = e.what end
  table.sort(got)
  table.sort(want)
  assert.are.same(want, got)
end

describe("a file with every byte of its metadata flipped, one at a time", function()
  after_each(cleanup)

  it("falls back, keeps the newest commit or fails cleanly, as the page decides (main file)", function()
    local f = build_main()
    -- all of them but the second content page the newest commit wrote
    local plan = flip_plan(f.path)
    local pids = {}
    for i = #plan, 1, -1 do
      local pid = plan[i].what:match("content of pid (%d+)")
      if pid then
        if #pids > 0 then table.remove(plan, i) end
        pids[#pids + 1] = pid
      end
    end
    expect_kinds(plan, {
      "newest root", "previous root",                          -- previous: a tail of 36
      "shared bitmap 0",                                       -- newest: free-map entries over it
      "newest page-table leaf 0.0", "previous page-table leaf 0.0",
      "newest page-table node 1.0", "previous page-table node 1.0",
      "shared page-table leaf 0.1",
      "newest commit's content of pid " .. pids[1],
    })
    local latest = roots(f.path)
    local counts = flip_all(f, plan)
    assert.are.equal(4 * P, counts["opened older"])
    assert.are.equal(3 * P, counts["opened latest"])
    assert.are.equal(2 * P, counts["opened fail:corrupt"])
    assert.are.equal(8 * latest.C, counts["flipped newest root free-map entries"])
  end)

  it("falls back whatever byte of a root carrying a full tail of page-table entries, or of its own bitmap, is damaged,"
     .. " and keeps the newest commit whatever byte of the previous root's own bitmap is", function()
    local f = build_carry()
    local plan = flip_plan(f.path, { "newest root", "newest bitmap 0", "previous bitmap 0" })
    expect_kinds(plan, { "newest root", "newest bitmap 0", "previous bitmap 0" })
    local counts = flip_all(f, plan)
    assert.are.equal(2 * P, counts["opened older"])
    assert.are.equal(P, counts["opened latest"])
    assert.are.equal(24 * 37, counts["flipped newest root page-table entries"])
  end)

  it("falls back, keeps the newest commit or fails cleanly when roots carrying free-map entries over a shared bitmap"
     .. " are damaged, the newest with a tail full of both kinds of entries (free-map file)", function()
    local f = build_fm()
    local latest, prev = roots(f.path)
    local all = flip_plan(f.path)
    expect_kinds(all, { "newest root", "previous root", "shared bitmap 0", "shared page-table leaf 0.0",
                        "shared page-table leaf 0.1", "shared page-table node 1.0",
                        "newest commit's content of pid 30" })
    local plan = concat(pick(all, "root$"), pick(all, "^shared bitmap 0$", 2), pick(all, "content", 8))
    local counts = flip_all(f, plan)
    assert.are.equal(P + P // 8, counts["opened older"])
    assert.are.equal(P, counts["opened latest"])
    assert.are.equal(P // 2, counts["opened fail:corrupt"])
    assert.are.equal(8 * latest.C, counts["flipped newest root free-map entries"])
    assert.are.equal(24 * latest.D, counts["flipped newest root page-table entries"])
    assert.is_nil(counts["flipped newest root zeros between"])                 -- a full tail
    assert.are.equal(8 * prev.C, counts["flipped previous root free-map entries"])
  end)

  it("falls back, keeps the newest commit or fails cleanly when an index node or a bitmap below it is damaged",
  function()
    local f = build_index()
    local all = flip_plan(f.path)
    local plan = concat(pick(all, "^newest index node 0$"), pick(all, "^previous index node 0$", 8),
                        pick(all, "^shared bitmap 112$", 8), pick(all, "^newest bitmap 0$", 8))
    local counts = flip_all(f, plan, { size = 64 * P })
    assert.are.equal(P + P // 8, counts["opened older"])
    assert.are.equal(P // 8, counts["opened latest"])
    assert.are.equal(P // 8, counts["opened fail:corrupt"])
  end)

  it("falls back, keeps the newest commit or fails cleanly when a page table of height 2 is damaged", function()
    local f = build_deep()
    local all = flip_plan(f.path)
    local plan = concat(pick(all, "^newest page%-table node 2%.0$", 2),
                        pick(all, "^newest page%-table node 1%.0$", 8),
                        pick(all, "^newest page%-table leaf 0%.0$", 16),
                        pick(all, "^shared page%-table node 1%.1$", 8),
                        pick(all, "^previous page%-table node 2%.0$", 16),
                        pick(all, "^previous page%-table node 1%.0$", 16))
    local counts = flip_all(f, plan, { carry_every = 64 })
    assert.are.equal(P // 2 + P // 8 + P // 16, counts["opened older"])
    assert.are.equal(P // 8, counts["opened fail:corrupt"])
    assert.are.equal(P // 8, counts["opened latest"])
  end)
end)

---------------------------------------------------------------------------
-- truncation

-- Cut the file to each size in turn (ARGS.sizes) and open it: shorter than
-- the two root slots, not a mappedpages file; shorter than both roots'
-- page counts, corrupt; shorter than the newest root's only, the previous
-- commit; else the newest.  When a writer fell back, the cut-off tail is
-- put back and the file must still open at the previous commit.
-- (the child: spec/children/hostile_trunc.lua)

describe("a truncated file", function()
  after_each(cleanup)

  it("falls back or fails cleanly when cut at every page boundary and in the middle of every page", function()
    local f = build_main()
    local latest, prev = roots(f.path)
    local pc1, pc2 = prev.page_count, latest.page_count
    assert.are.equal(64, pc1)
    assert.are.equal(128, pc2)
    assert.are.equal(pc2 * P, H.file_size(f.path))
    local sizes = {}
    for k = 0, pc2 do
      sizes[#sizes + 1] = k * P
      if k < pc2 then sizes[#sizes + 1] = k * P + P // 2 end
    end
    for _, n in ipairs({ 1, P - 1, P + 1, 2 * P - 1, 2 * P + 1, pc1 * P - 1, pc1 * P + 1, pc2 * P - 1 }) do
      sizes[#sizes + 1] = n
    end
    local counts = run_child("trunc", { path = f.path, S = f.S, P = P, sizes = sizes, pc1 = pc1, pc2 = pc2,
                                      file_size = H.file_size(f.path), carry_every = 16 })
    assert.are.equal(2 * #sizes, counts.images)
    assert.is_true(counts["opened older"] >= 2 * (pc2 - pc1))
    assert.is_true(counts["opened fail:corrupt"] >= 2 * (pc1 - 2))
    assert.is_true(counts["opened fail:not_mappedpages"] >= 4)
    assert.are.equal(1, counts["opened latest"])
    assert.is_true(counts["tail put back and reopened"] > 100)
  end)
end)

---------------------------------------------------------------------------
-- files grown by another tool

-- Each case (ARGS.cases) grows a copy of the file: appended zeros or
-- garbage, or a sparse extension.  It must open at the newest commit, and
-- a writer must allocate into the grown region (past the old page count,
-- into a second group when the case is big enough), put a protected page
-- there, and all of it must survive a reopen.
-- (the child: spec/children/hostile_grown.lua)

describe("a file grown by another tool", function()
  after_each(cleanup)

  it("opens at the newest commit, and allocations into the grown region work and persist", function()
    local f = build_main()
    local pc = roots(f.path).page_count
    local cases = {
      { what = "one zero byte appended", zeros = 1, extra = 3, min_pages = pc + 1 },
      { what = "100 bytes of garbage appended", garbage = 100, extra = 3, min_pages = pc + 1 },
      { what = "3 pages and 7 bytes of zeros appended", zeros = 3 * P + 7, extra = 10, min_pages = pc + 10 },
      { what = "64 pages of zeros appended", zeros = 64 * P, extra = 20, min_pages = pc + 20 },
      { what = "64 pages of garbage appended", garbage = 64 * P, extra = 70, min_pages = pc + 70 },
      -- past the first group (G pages): group 1's reserved run was garbage
      { what = "4 MiB of garbage appended", garbage = 4 << 20, extra = G, min_pages = G + 2 },
      { what = "sparse extension to 8 MiB", sparse = 8 << 20, extra = G, min_pages = G + 2 },
      { what = "sparse extension by half a page", sparse = pc * P + P // 2, extra = 3, min_pages = pc + 1 },
    }
    for i, case in ipairs(cases) do
      case.path = fast_path("grown" .. i .. ".mp")
      H.copy(f.path, case.path)
    end
    local counts = run_child("grown", { S = f.S, P = P, cases = cases })
    assert.are.equal(2 * #cases, counts.images)
    assert.are.equal(#cases, counts["grew and reopened"])
  end)
end)

---------------------------------------------------------------------------
-- forgeries behind valid checksums

-- Open each forged image (ARGS.images: path, what, expect, and S2 when
-- the forgery is valid and shows a state of its own) read-only and for
-- writing; a writer that opened must carry on.
-- (the child: spec/children/hostile_forged.lua)

-- Pages of a and b (strings of whole pages) that differ.
local function changed_pages(a, b)
  local out = {}
  for pg = 0, math.max(#a, #b) // P - 1 do
    if a:sub(pg * P + 1, (pg + 1) * P) ~= b:sub(pg * P + 1, (pg + 1) * P) then out[#out + 1] = pg end
  end
  return out
end

-- Apply each forgery of list ({what, fn(path, latest, prev) [-> expect
-- [, S2]]}) to a copy of file f and open them all in one child.  Without
-- an expectation from fn: the forged root must be rejected, so the file
-- opens at the previous commit, unless the forgery had to change a page
-- the previous root also uses, and then it must fail (corrupt).  A valid
-- forgery returns "latest" and the fingerprint of the state it shows.
-- With opts.raw (a file the parser cannot read), fn gets (path, f) and
-- must say what the forgery must do.
local function forge_all(f, list, opts)
  opts = opts or {}
  local orig = not opts.sparse and H.read_file(f.path)
  local images = {}
  for i, fg in ipairs(list) do
    local path = fast_path(("forged%d.mp"):format(i))
    if opts.sparse then
      assert(os.execute(("cp --sparse=always %s %s"):format(sq(f.path), sq(path))))
    else
      H.write_file(path, orig)
    end
    local latest, prev, expect, S2
    if opts.raw then
      expect, S2 = fg[2](path, f)
      assert(expect, fg[1] .. ": say what the forgery must do")
    else
      latest, prev = roots(path)
      expect, S2 = fg[2](path, latest, prev)
    end
    if not expect then
      assert(orig, fg[1] .. ": say what a forgery of a sparse file must do")
      local now = H.read_file(path)
      assert(now ~= orig, fg[1] .. ": the forgery changed nothing")
      expect = "older"
      for _, pg in ipairs(changed_pages(orig, now)) do
        if pg == prev.slot or prev.refs[pg] then expect = "fail:corrupt" end
      end
    end
    assert(not S2 or expect == "latest")
    local im = { path = path, what = fg[1], expect = expect, S2 = S2 }
    if verbose and expect == "older" then
      im.why, im.prev_slot = path .. ".why", opts.raw and 1 - f.slot or prev.slot
      assert(os.execute(("cp --sparse=always %s %s"):format(sq(path), sq(im.why))))
    end
    images[#images + 1] = im
  end
  local counts = run_child("forged", { S = f.S, images = images, verbose = verbose, P = opts.raw and P4 or P })
  assert.are.equal(2 * #list, counts.images)
  return counts, images
end

-- Durable states of group 0's pages as root r sees them: states[i] for
-- every page, the bitmap's unless r carries an entry for it; with
-- `bitmap_only`, the bitmap's alone.
local function states(path, r, bitmap_only)
  local page = H.read_at(path, r.bitmaps[0] * P, P)
  local st = {}
  for i = 0, math.min(r.page_count, G) - 1 do
    st[i] = not bitmap_only and r.fm_state[i] or H.bitmap_state(page, i)
  end
  return st
end

-- The first page of root r in durable state `want` (1 regular, 0 free,
-- 2 system), from `from`; with `uncarried`, only among the pages r carries
-- no entry for.
local function first_in_state(path, r, want, from, uncarried)
  local st = states(path, r)
  for i = from or 0, #st do
    if st[i] == want and not (uncarried and r.fm_state[i]) then return i end
  end
  error("no page in state " .. want)
end

-- Rewrite the entry of pid in the newest root's leaf (re-signed).
local function set_leaf_entry(path, r, pid, page, crc, txn)
  local e = r.entries[pid] or { page = 0, crc = 0, txn = 0 }
  forge_pt(path, r, 0, pid // EL, function(pg)
    return splice(pg, META.data + LE.size * (pid % EL), entry16(page or e.page, crc or e.crc, txn or e.txn))
  end)
end

-- Rewrite carried entry i of root r: {pid, page, crc, txn} (nil keeps).
local function set_carried(path, r, i, pid, page, crc, txn)
  local off = F.carried_pt_offset(P, i)
  local old = H.read_at(path, r.slot * P + off, CP.size)
  local opid, opage, ocrc, otxn = su("<i8I4I4i8", old)
  forge_root(path, r, off, sp("<i8I4I4i8", pid or opid, page or opage, crc or ocrc, txn or otxn))
end

-- The index of root r's carried entry for pid.
local function carried_index(r, pid) return assert(r.entries[pid].carried, "pid not carried") end

-- Patch a field of the newest root (re-signed).
local function root_field(off, fmt, value)
  return function(path, r) forge_root(path, r, off, sp(fmt, value(r))) end
end

local function bitmap_set(i_of, state)
  return function(path, r)
    forge_bitmap(path, r, 0, function(page) return H.set_bitmap_state(page, i_of(path, r), state) end)
  end
end

-- The content page of pid in root r.
local function page_of(pid) return function(_, r) return r.entries[pid].page end end

-- Free-map entry i of root r rewritten as page << 2 | state (re-signed).
local function set_fm(path, r, i, page, state)
  forge_root(path, r, F.carried_fm_offset(P, r.D, i), sp("<i8", page << 2 | state))
end

-- A forgery adding the entries of list ({page, state}) after those root r
-- carries, and counting them.
local function add_fm(list)
  return function(path, r)
    for k, e in ipairs(list) do set_fm(path, r, r.C + k - 1, e[1], e[2]) end
    forge_root(path, r, ROOT.fm_ncarry, sp("<I4", r.C + #list))
  end
end

-- An entry of root r allocating a page its bitmap has free: replacing it
-- with a forged entry leaves that page free again (valid in itself), so
-- only the forged entry can make the root invalid.
local function fm_alloc_entry(path, r)
  local bm = states(path, r, true)
  for _, e in ipairs(r.fm) do
    if e.state == 1 and bm[e.page] == 0 then return e end
  end
  error("no free-map entry allocating a page")
end

-- The entry root r carries for page pg.
local function fm_entry_of(r, pg)
  for _, e in ipairs(r.fm) do if e.page == pg then return e end end
  error("no free-map entry for page " .. pg)
end

-- The fingerprint fp (C.fingerprint) with regular pages `freed` free and
-- free pages `taken` regular.
local function fp_with(fp, freed, taken)
  local t = {}
  for w in (fp .. " "):gmatch("([^ ]*) ") do t[#t + 1] = w end
  assert(#t == 11, "fp_with: " .. fp)
  local ids = {}
  for id in t[10]:gmatch("%d+") do ids[tonumber(id)] = true end
  for _, id in ipairs(freed) do assert(ids[id], "page " .. id .. " is not regular") ids[id] = nil end
  for _, id in ipairs(taken) do assert(not ids[id], "page " .. id .. " is regular") ids[id] = true end
  t[4] = tostring(math.tointeger(t[4]) + #freed - #taken)
  t[5] = tostring(math.tointeger(t[5]) - #freed + #taken)
  t[10] = table.concat(H.sorted_keys(ids), ",")
  return table.concat(t, " ")
end

-- Forgeries of the main file's newest commit: page table and bitmap.
local main_forgeries = {
  -- leaf entries pointing at each other or at the wrong pages
  { "two pids of one leaf naming the same page", function(path, r)
      local e = r.entries[0]
      set_leaf_entry(path, r, 4, e.page, e.crc, e.txn) end },
  { "a pid naming the content page of a pid in the other leaf", function(path, r)
      local e = r.entries[64]
      set_leaf_entry(path, r, 0, e.page, e.crc, e.txn) end },
  { "a pid naming the other page-table leaf", function(path, r) set_leaf_entry(path, r, 0, r.pt[0][1]) end },
  { "a pid naming its own leaf", function(path, r) set_leaf_entry(path, r, 0, r.pt[0][0]) end },
  { "a pid naming the page-table node", function(path, r) set_leaf_entry(path, r, 0, r.pt[1][0]) end },
  { "a pid naming root slot 0 (page 0, with a checksum)", function(path, r) set_leaf_entry(path, r, 0, 0) end },
  { "a pid naming root slot 1 (page 1, with a checksum)", function(path, r) set_leaf_entry(path, r, 0, 1) end },
  { "a pid made never-written (page 1), leaving its content page behind", function(path, r)
      set_leaf_entry(path, r, 0, 1, 0) end },
  { "a pid naming bitmap slot 0", function(path, r) set_leaf_entry(path, r, 0, 2) end },
  { "a pid naming bitmap slot 1", function(path, r) set_leaf_entry(path, r, 0, 3) end },
  { "a pid naming an unused index-node slot", function(path, r) set_leaf_entry(path, r, 0, 4) end },
  { "a pid naming the last reserved page", function(path, r) set_leaf_entry(path, r, 0, 7) end },
  { "a pid naming a regular page", function(path, r)
      set_leaf_entry(path, r, 0, first_in_state(path, r, 1)) end },
  { "a pid naming a free page", function(path, r)
      set_leaf_entry(path, r, 0, first_in_state(path, r, 0)) end },
  { "a pid naming the previous root's leaf (free in the newest bitmap)", function(path, r, prev)
      set_leaf_entry(path, r, 0, prev.pt[0][0]) end },
  { "a pid naming the page count", function(path, r) set_leaf_entry(path, r, 0, r.page_count) end },
  { "a pid naming page 2^32-1", function(path, r) set_leaf_entry(path, r, 0, 0xFFFFFFFF) end },
  { "a free pid with a transaction id", function(path, r) set_leaf_entry(path, r, 1, 0, 0, r.txn - 1) end },
  { "a free pid with a checksum", function(path, r) set_leaf_entry(path, r, 1, 0, 5, 0) end },
  { "a free pid made allocated behind the root's count", function(path, r)
      set_leaf_entry(path, r, 1, 1, 0, r.txn - 1) end },
  { "a never-written pid with a checksum", function(path, r) set_leaf_entry(path, r, 30, 1, 7) end },
  { "an entry written by a newer transaction", function(path, r) set_leaf_entry(path, r, 0, nil, nil, r.txn + 1) end },
  { "an entry with transaction id 0", function(path, r) set_leaf_entry(path, r, 0, nil, nil, 0) end },
  { "the newest commit's content page with another checksum", function(path, r)
      set_leaf_entry(path, r, 27, nil, r.entries[27].crc ~ 1) end },
  -- leaf headers
  { "a leaf with the node type", function(path, r)
      forge_pt(path, r, 0, 0, function(pg) return splice(pg, META.type, sp("<I4", F.NODE_TYPE)) end) end },
  { "a leaf claiming level 1", function(path, r)
      forge_pt(path, r, 0, 0, function(pg) return splice(pg, META.level, sp("<I4", 1)) end) end },
  { "a leaf claiming index 1", function(path, r)
      forge_pt(path, r, 0, 0, function(pg) return splice(pg, META.index, sp("<I4", 1)) end) end },
  { "a leaf with a reserved header byte set", function(path, r)
      forge_pt(path, r, 0, 0, function(pg) return splice(pg, META.data - 1, "\1") end) end },
  { "a leaf written by a newer transaction", function(path, r)
      forge_pt(path, r, 0, 0, function(pg) return splice(pg, META.txn, sp("<i8", r.txn + 1)) end) end },
  { "a leaf with an entry past the tree's pids (shared leaf)", function(path, r)
      forge_pt(path, r, 0, 1, function(pg)
        return splice(pg, META.data + LE.size * (100 - EL), entry16(1, 0, 1)) end) end },
  { "a leaf with a stray byte past the tree's pids (shared leaf)", function(path, r)
      forge_pt(path, r, 0, 1, function(pg) return splice(pg, P - 1, "\1") end) end },
  -- the node
  { "a node naming page 0 as a child", function(path, r)
      forge_pt(path, r, 1, 0, function(pg) return splice(pg, node_at(0) + NE.page, sp("<I4", 0)) end) end },
  { "a node naming page 1 as a child", function(path, r)
      forge_pt(path, r, 1, 0, function(pg) return splice(pg, node_at(0) + NE.page, sp("<I4", 1)) end) end },
  { "a node naming a bitmap slot as a child", function(path, r)
      forge_pt(path, r, 1, 0, function(pg) return splice(pg, node_at(0) + NE.page, sp("<I4", r.bitmaps[0])) end) end },
  { "a node naming the page count as a child", function(path, r)
      forge_pt(path, r, 1, 0, function(pg) return splice(pg, node_at(1) + NE.page, sp("<I4", r.page_count)) end) end },
  { "a node naming page 2^32-1 as a child", function(path, r)
      forge_pt(path, r, 1, 0, function(pg) return splice(pg, node_at(1) + NE.page, sp("<I4", 0xFFFFFFFF)) end) end },
  { "a node with its children swapped", function(path, r)
      forge_pt(path, r, 1, 0, function(pg)
        return splice(pg, node_at(0), node_bytes(pg, 1) .. node_bytes(pg, 0)) end) end },
  { "a node naming the same leaf twice", function(path, r)
      forge_pt(path, r, 1, 0, function(pg) return splice(pg, node_at(0), node_bytes(pg, 1)) end) end },
  { "a node naming the previous root's leaf 0 (a valid leaf, free now)", function(path, r, prev)
      local crc = su("<I4", H.read_at(path, prev.pt[0][0] * P + META.crc, 4))
      forge_pt(path, r, 1, 0, function(pg)
        return splice(pg, node_at(0) + NE.page, sp("<I4I4", prev.pt[0][0], crc)) end) end },
  { "a node naming itself as a child", function(path, r)
      forge_pt(path, r, 1, 0, function(pg) return splice(pg, node_at(0) + NE.page, sp("<I4", r.pt[1][0])) end) end },
  { "a node with a third child", function(path, r)
      forge_pt(path, r, 1, 0, function(pg) return splice(pg, node_at(2), node_bytes(pg, 1)) end) end },
  { "a node with the leaf type", function(path, r)
      forge_pt(path, r, 1, 0, function(pg) return splice(pg, META.type, sp("<I4", F.LEAF_TYPE)) end) end },
  { "a node claiming level 2", function(path, r)
      forge_pt(path, r, 1, 0, function(pg) return splice(pg, META.level, sp("<I4", 2)) end) end },
  -- the root's page-table fields
  { "a root with page-table height 0", root_field(ROOT.pt_height, "<I4", function() return 0 end) },
  { "a root with page-table height 2", root_field(ROOT.pt_height, "<I4", function() return 2 end) },
  { "a root with page-table height 2^32-1", root_field(ROOT.pt_height, "<I4", function() return 0xFFFFFFFF end) },
  { "a root with a pid limit below the tree's pids", root_field(ROOT.pid_limit, "<i8",
      function(r) return r.tree - 1 end) },
  { "a root with pids past the tree and none carried", root_field(ROOT.pid_limit, "<i8",
      function(r) return r.tree + 1 end) },
  { "a root with a pid limit of 2^32", root_field(ROOT.pid_limit, "<i8", function() return 1 << 32 end) },
  { "a root with a pid limit of 2^63-1", root_field(ROOT.pid_limit, "<i8", function() return math.maxinteger end) },
  { "a root counting one protected page more", root_field(ROOT.protected_count, "<i8",
      function(r) return r.pcount + 1 end) },
  { "a root counting one protected page less", root_field(ROOT.protected_count, "<i8",
      function(r) return r.pcount - 1 end) },
  { "a root counting more protected pages than pids", root_field(ROOT.protected_count, "<i8",
      function(r) return r.pids + 1 end) },
  { "a root whose top page is a leaf", function(path, r)
      forge_root(path, r, ROOT.pt_top,
        sp("<I4I4", r.pt[0][0], su("<I4", H.read_at(path, r.pt[0][0] * P + META.crc, 4)))) end },
  { "a root whose top page is the previous root's node (free now)", function(path, r, prev)
      forge_root(path, r, ROOT.pt_top, sp("<I4I4", prev.top, prev.top_crc)) end },
  { "a root whose top page is page 0", root_field(ROOT.pt_top, "<I4", function() return 0 end) },
  { "a root whose top page is page 1", root_field(ROOT.pt_top, "<I4", function() return 1 end) },
  { "a root whose top page is the page count", root_field(ROOT.pt_top, "<I4", function(r) return r.page_count end) },
  { "a root with no tree pids but a top page", root_field(ROOT.pt_tree, "<i8", function() return 0 end) },
  { "a root with one leaf's worth of tree pids", root_field(ROOT.pt_tree, "<i8", function() return EL end) },
  { "a root with more tree pids than pids", root_field(ROOT.pt_tree, "<i8", function(r) return r.pids + EL end) },
  { "a root carrying an entry that frees pid 0", function(path, r)
      forge_root(path, r, ROOT.pt_ndelta, sp("<I4", 1))
      set_carried(path, r, 0, 0, 0, 0, 0) end },
  { "a root carrying 65 entries", root_field(ROOT.pt_ndelta, "<I4", function() return 65 end) },
  { "a root carrying 2^32-1 entries", root_field(ROOT.pt_ndelta, "<I4", function() return 0xFFFFFFFF end) },
  { "a root with its first reserved header byte set", root_field(ROOT.reserved, "<I1", function() return 1 end) },
  { "a root with its last reserved header byte set", root_field(ROOT.entries - 1, "<I1", function() return 1 end) },
  { "a root with a stray byte where carried entries would be", root_field(P - 1, "<I1", function() return 1 end) },
  { "a root with a stray byte after its top entry", root_field(ROOT.entries + TOP.size, "<I1",
      function() return 1 end) },
  { "a root with flags set", root_field(ROOT.flags, "<I4", function() return 1 end) },
  -- the bitmap
  { "a bitmap marking a protected content page free", bitmap_set(page_of(0), 0) },
  { "a bitmap marking a protected content page regular", bitmap_set(page_of(0), 1) },
  { "a bitmap marking a protected content page 11", bitmap_set(page_of(0), 3) },
  { "a bitmap marking the newest commit's content page free", bitmap_set(page_of(27), 0) },
  { "a bitmap marking a page-table leaf free", bitmap_set(function(_, r) return r.pt[0][0] end, 0) },
  { "a bitmap marking the shared page-table leaf free", bitmap_set(function(_, r) return r.pt[0][1] end, 0) },
  { "a bitmap marking the page-table node regular", bitmap_set(function(_, r) return r.pt[1][0] end, 1) },
  { "a bitmap marking a free page system", bitmap_set(function(path, r) return first_in_state(path, r, 0) end, 2) },
  { "a bitmap marking a regular page system", bitmap_set(function(path, r) return first_in_state(path, r, 1) end, 2) },
  { "a bitmap marking a content page free and a free page system", function(path, r)
      local free = first_in_state(path, r, 0)
      forge_bitmap(path, r, 0, function(page)
        return H.set_bitmap_state(H.set_bitmap_state(page, r.entries[0].page, 0), free, 2)
      end) end },
  { "a bitmap marking a page-table leaf regular and a free page system", function(path, r)
      local free = first_in_state(path, r, 0)
      forge_bitmap(path, r, 0, function(page)
        return H.set_bitmap_state(H.set_bitmap_state(page, r.pt[0][0], 1), free, 2)
      end) end },
  -- both generations at once: nothing valid is left
  { "both bitmaps marking a protected content page free", function(path, r, prev)
      for _, root in ipairs({ r, prev }) do
        local pg = root.entries[64].page
        forge_bitmap(path, root, 0, function(page) return H.set_bitmap_state(page, pg, 0) end)
      end
      return "fail:corrupt" end },
  { "both roots counting one protected page more", function(path, r, prev)
      for _, root in ipairs({ r, prev }) do forge_root(path, root, ROOT.protected_count, sp("<i8", root.pcount + 1)) end
      return "fail:corrupt" end },
}

-- Forgeries of the free-map file's newest root: its free-map entries (a
-- full tail: 36 of them before 25 page-table entries) and the bitmap page
-- both roots share.  Most replace an entry allocating a page (so that page
-- is free again, which alone would be valid) with a forged one.  The
-- valid ones return the state they must show (fm_S2: the file's newest
-- state, set before the list is used).
local fm_S2
local function fm_replace(page_of_r, state, valid)
  return function(path, r)
    local e = fm_alloc_entry(path, r)
    local pg = page_of_r(path, r, e)
    set_fm(path, r, e.i, pg, state)
    if valid then return "latest", fp_with(fm_S2, valid(e, pg)) end
  end
end
local function const(v) return function() return v end end
-- A forgery done to the newest root, which is then marked version 1.
local function in_v1(forge)
  return function(path, r, ...)
    local expect, fp = forge(path, r, ...)
    forge_root(path, r, ROOT.version, sp("<I4", 1))
    return expect, fp
  end
end
-- A regular page the bitmap holds that the newest root carries no entry
-- for, and a free one.
local function bitmap_regular(path, r) return first_in_state(path, r, 1, 8, true) end
local function bitmap_free(path, r) return first_in_state(path, r, 0, 8, true) end

local fm_forgeries = {
  -- where the page is
  { "a free-map entry for the page count", fm_replace(function(_, r) return r.page_count end, 0) },
  { "a free-map entry allocating a page past the page count", fm_replace(function(_, r)
      return r.page_count + 5 end, 1) },
  { "a free-map entry freeing page 2^32 + a regular page's number", fm_replace(function(path, r)
      return (1 << 32) + bitmap_regular(path, r) end, 0) },
  { "a free-map entry for page 2^62-1", fm_replace(const((1 << 62) - 1), 0) },
  { "a free-map entry for root slot 0", fm_replace(const(0), 2) },
  { "a free-map entry freeing root slot 1", fm_replace(const(1), 0) },
  { "a free-map entry for the bitmap slot the root names", fm_replace(function(_, r) return r.bitmaps[0] end, 2) },
  { "a free-map entry allocating the other bitmap slot", fm_replace(function(_, r) return 5 - r.bitmaps[0] end, 1) },
  { "a free-map entry for an index-node slot of the reserved run", fm_replace(const(4), 2) },
  { "a free-map entry freeing the last reserved page", fm_replace(const(7), 0) },
  -- the state
  -- (state 11, a page held for readers, came with version 2)
  { "a free-map entry with state 11 in a version-1 root", in_v1(fm_replace(function(_, _, e) return e.page end, 3)) },
  { "a free-map entry with state 11 for a free page in a version-1 root", in_v1(fm_replace(bitmap_free, 3)) },
  -- duplicates
  { "two free-map entries for one page, with the same state", function(path, r)
      local e = fm_alloc_entry(path, r)
      local f = r.fm[e.i == 0 and 2 or 1]
      set_fm(path, r, e.i, f.page, f.state) end },
  { "two free-map entries for one page, with different states", function(path, r)
      local e = fm_alloc_entry(path, r)
      local f = r.fm[e.i == 0 and 2 or 1]
      set_fm(path, r, e.i, f.page, f.state == 1 and 0 or 1) end },
  -- the count, and where the entries sit
  { "a root counting 129 free-map entries", root_field(ROOT.fm_ncarry, "<I4", const(129)) },
  { "a root counting 2^32-1 free-map entries", root_field(ROOT.fm_ncarry, "<I4", const(0xFFFFFFFF)) },
  { "a root counting one free-map entry more, over its top entry", root_field(ROOT.fm_ncarry, "<I4", function(r)
      return r.C + 1 end) },
  { "a root counting one free-map entry fewer, the last left among the zeros", root_field(ROOT.fm_ncarry, "<I4",
      function(r)
      return r.C - 1 end) },
  { "a root counting no free-map entries, its entries left among the zeros", root_field(ROOT.fm_ncarry, "<I4",
      const(0)) },
  { "a root counting one page-table entry fewer (its free-map entries read 24 bytes on)",
    root_field(ROOT.pt_ndelta, "<I4", function(r) return r.D - 1 end) },
  -- what the state contradicts
  { "a free-map entry marking a page-table leaf free", fm_replace(function(_, r) return r.pt[0][0] end, 0) },
  { "a free-map entry marking the page-table node regular", fm_replace(function(_, r) return r.pt[1][0] end, 1) },
  { "a free-map entry marking a protected content page free", fm_replace(function(_, r)
      return r.entries[0].page end, 0) },
  { "a free-map entry marking a protected content page regular", fm_replace(function(_, r)
      return r.entries[0].page end, 1) },
  { "the newest commit's content page marked free by its own entry", function(path, r)
      set_fm(path, r, fm_entry_of(r, r.entries[30].page).i, r.entries[30].page, 0) end },
  { "a free-map entry making a free page system", fm_replace(function(_, _, e) return e.page end, 2) },
  { "a free-map entry making a regular page system", fm_replace(bitmap_regular, 2) },
  -- valid: a commit could have written these
  { "a free-map entry freeing the page it allocated (valid)", fm_replace(function(_, _, e) return e.page end, 0,
      function(e) return { e.page }, {} end) },
  { "a free-map entry freeing a regular page of the bitmap (valid)", fm_replace(bitmap_regular, 0,
      function(e, pg) return { e.page, pg }, {} end) },
  { "a free-map entry allocating another free page (valid)", fm_replace(bitmap_free, 1,
      function(e, pg) return { e.page }, { pg } end) },
  { "a free-map entry restating its page's state in the bitmap (valid)", fm_replace(bitmap_regular, 1,
      function(e) return { e.page }, {} end) },
  -- the shared bitmap under the entries: re-signed for the newest root, so
  -- the previous root fails its checksum; an entry overrides its page's bits
  { "the shared bitmap marking a page system where an entry says regular (valid: the entry decides)", function(path, r)
      local e = fm_alloc_entry(path, r)
      forge_bitmap(path, r, 0, function(page) return H.set_bitmap_state(page, e.page, 2) end)
      return "latest" end },
  { "the shared bitmap marking the newest commit's content page regular under its entry (valid)", function(path, r)
      local pg = r.entries[30].page
      assert(fm_entry_of(r, pg).state == 2)
      forge_bitmap(path, r, 0, function(page) return H.set_bitmap_state(page, pg, 1) end)
      return "latest" end },
  { "the shared bitmap marking 11 (held for readers) under an entry", function(path, r)
      local e = fm_alloc_entry(path, r)
      forge_bitmap(path, r, 0, function(page) return H.set_bitmap_state(page, e.page, 3) end)
      return "latest" end },
  { "the shared bitmap marking 11 under an entry, both roots of version 1", function(path, r, prev)
      local e = fm_alloc_entry(path, r)
      forge_bitmap(path, r, 0, function(page) return H.set_bitmap_state(page, e.page, 3) end)
      for _, root in ipairs({ r, prev }) do forge_root(path, root, ROOT.version, sp("<I4", 1)) end
      return "fail:corrupt" end },
  { "the shared bitmap marking a free page system, with no entry over it", function(path, r)
      local pg = bitmap_free(path, r)
      forge_bitmap(path, r, 0, function(page) return H.set_bitmap_state(page, pg, 2) end)
      return "fail:corrupt" end },
}

-- Forgeries of the 4 KiB file: the limit of 128 free-map entries, where
-- the root has room for more.  Each entry frees one of the newest commit's
-- pages, which alone would be valid.
local function wide_free(n)
  return function(path, f)
    for i = 1, n do H.write_at(path, f.slot * P4 + F.carried_fm_offset(P4, 0, i - 1), sp("<i8", f.ids[i] << 2)) end
    H.forge_root(path, P4, f.slot, H.ROOT.fm_ncarry, sp("<I4", n))
    if n > 128 then return "older" end
    return "latest", fp_with(f.S.S2, table.move(f.ids, 1, n, 1, {}), {})
  end
end
local wide_forgeries = {
  { "a root carrying 128 free-map entries, each freeing a page (valid: the most a root carries)", wide_free(128) },
  { "a root carrying 129 free-map entries, each freeing a page", wide_free(129) },
  { "a root carrying 200 free-map entries, each freeing a page", wide_free(200) },
}

-- Forgeries of the carrying file's newest root: its 37 carried entries.
local carry_forgeries = {
  { "a carried pid at the pid limit", function(path, r) set_carried(path, r, 0, r.pids) end },
  { "a carried pid of 2^63-1", function(path, r) set_carried(path, r, 0, math.maxinteger) end },
  { "a carried pid of 2^64-1", function(path, r) set_carried(path, r, 0, -1) end },
  { "two carried entries for one pid", function(path, r)
      set_carried(path, r, 1, su("<i8", H.read_at(path, r.slot * P + F.carried_pt_offset(P, 0) + CP.pid, 8))) end },
  { "two carried entries naming one page", function(path, r)
      local i = carried_index(r, 66)
      local j = carried_index(r, 39)
      set_carried(path, r, j, nil, r.entries[66].page, r.entries[66].crc, r.entries[66].txn)
      assert(i ~= j) end },
  { "a carried entry naming a leaf entry's page", function(path, r)
      set_carried(path, r, carried_index(r, 39), nil, r.entries[0].page) end },
  { "a carried entry naming a page-table leaf", function(path, r)
      set_carried(path, r, carried_index(r, 39), nil, r.pt[0][0]) end },
  { "a carried entry naming the page-table node", function(path, r)
      set_carried(path, r, carried_index(r, 39), nil, r.pt[1][0]) end },
  { "a carried entry naming page 0 with a checksum", function(path, r)
      set_carried(path, r, carried_index(r, 39), nil, 0) end },
  { "a carried entry naming a bitmap slot", function(path, r)
      set_carried(path, r, carried_index(r, 39), nil, 2) end },
  { "a carried entry naming an unused index-node slot", function(path, r)
      set_carried(path, r, carried_index(r, 39), nil, 5) end },
  { "a carried entry naming a regular page", function(path, r)
      set_carried(path, r, carried_index(r, 39), nil, first_in_state(path, r, 1)) end },
  { "a carried entry naming a free page", function(path, r)
      set_carried(path, r, carried_index(r, 39), nil, first_in_state(path, r, 0)) end },
  { "a carried entry naming the page count", function(path, r)
      set_carried(path, r, carried_index(r, 39), nil, r.page_count) end },
  { "a carried entry freeing its pid and leaving its page behind", function(path, r)
      set_carried(path, r, carried_index(r, 39), nil, 0, 0, 0) end },
  { "a carried entry making its pid never-written and leaving its page behind", function(path, r)
      set_carried(path, r, carried_index(r, 39), nil, 1, 0) end },
  { "a carried entry written by a newer transaction", function(path, r)
      set_carried(path, r, carried_index(r, 39), nil, nil, nil, r.txn + 1) end },
  { "a carried entry with transaction id 0", function(path, r)
      set_carried(path, r, carried_index(r, 39), nil, nil, nil, 0) end },
  { "the newest commit's carried entry with another checksum", function(path, r)
      set_carried(path, r, carried_index(r, 66), nil, nil, r.entries[66].crc ~ 1) end },
  { "a tail of 38 entries, over the top entry", root_field(ROOT.pt_ndelta, "<I4", function() return 38 end) },
  { "a tail of 64 entries", root_field(ROOT.pt_ndelta, "<I4", function() return 64 end) },
  { "a tail one entry shorter, the last entry left in the gap", root_field(ROOT.pt_ndelta, "<I4",
      function() return 36 end) },
  { "pids past the tree beyond the carried entries", root_field(ROOT.pid_limit, "<i8",
      function(r) return r.tree + r.D + 1 end) },
}

-- Forgeries of the index file's newest commit: the index node.  Bitmaps
-- of groups 1 and up are shared by both roots, so forging one (and
-- re-signing the newest index node and root) leaves nothing valid.
local function index_entry(g, crc, slot)
  return function(path, r)
    forge_index(path, r, 0, function(pg)
      local at = META.data + TOP.size * g          -- {crc, slot}
      local ocrc, oslot = su("<I4I4", pg, at + 1)
      return splice(pg, at, sp("<I4I4", crc or ocrc, slot or oslot))
    end)
  end
end

local function index_header(off, fmt, v)
  return function(path, r)
    forge_index(path, r, 0, function(pg) return splice(pg, off, sp(fmt, type(v) == "function" and v(r) or v)) end)
  end
end

local function bitmap_of(g, fn, expect)
  return function(path, r)
    forge_bitmap(path, r, g, function(page) return fn(page, r) end)
    return expect
  end
end

-- (the newest index node and the root are the newest commit's alone)
local function older(fn) return function(...) fn(...) return "older" end end

local index_S2             -- the index file's newest state, set before the list is used
local index_forgeries = {
  { "an index entry naming bitmap slot 2", older(index_entry(5, nil, 2)) },
  { "an index entry naming bitmap slot 2^32-1", older(index_entry(5, nil, 0xFFFFFFFF)) },
  { "an index entry naming a never-written bitmap slot", function(path, r)
      local zero = string.rep("\0", P)
      index_entry(112, H.meta_crc(zero), 1)(path, r)
      return "older" end },
  { "an index entry for a group past the last (checksum)", older(index_entry(113, 0x1234, 0)) },
  { "an index entry for a group past the last (slot)", older(index_entry(113, 0, 1)) },
  { "an index node with the bitmap type", older(index_header(0, "<I4", H.BITMAP_TYPE)) },
  { "an index node claiming level 0", older(index_header(16, "<I4", 0)) },
  { "an index node claiming level 2", older(index_header(16, "<I4", 2)) },
  { "an index node claiming index 1", older(index_header(20, "<I4", 1)) },
  { "an index node with a reserved header byte set", older(index_header(24, "<I1", 1)) },
  { "an index node written by a newer transaction",
    older(index_header(8, "<i8", function(r) return r.txn + 1 end)) },
  { "a root with FSM height 0", older(root_field(ROOT.height, "<I4", function() return 0 end)) },
  { "a root with FSM height 2", older(root_field(ROOT.height, "<I4", function() return 2 end)) },
  { "a root with a second top entry", older(root_field(ROOT.entries + TOP.size, "<I4I4", function() return 1, 0 end)) },
  { "a root naming index-node slot 2", older(root_field(ROOT.entries + TOP.slot, "<I4", function() return 2 end)) },
  { "a bitmap of group 50 marking a page system", bitmap_of(50, function(page)
      return H.set_bitmap_state(page, 100, 2) end, "fail:corrupt") },
  { "a bitmap of group 50 not marking its own slot system", bitmap_of(50, function(page)
      return H.set_bitmap_state(page, 1, 0) end, "fail:corrupt") },
  { "a bitmap of the last group marking a page past the page count", bitmap_of(112, function(page)
      return H.set_bitmap_state(page, 64, 1) end, "fail:corrupt") },
  { "a bitmap of group 7 claiming to be group 8's", bitmap_of(7, function(page)
      return splice(page, META.index, sp("<I4", 8)) end, "fail:corrupt") },
  { "a bitmap of group 0 marking a free page system", function(path, r)
      local free = first_in_state(path, r, 0)
      forge_bitmap(path, r, 0, function(page) return H.set_bitmap_state(page, free, 2) end)
      return "older" end },
  -- free-map entries of other groups than 0 (the newest root carries none:
  -- these are added to it)
  { "a free-map entry in group 50's reserved run", older(add_fm({ { 50 * G + 1, 2 } })) },
  { "a free-map entry for the last group's first page (its bitmap slot 0)", older(add_fm({ { 112 * G, 2 } })) },
  { "a free-map entry for the page count", older(add_fm({ { K * G + 64, 1 } })) },
  { "a free-map entry making a page of group 50 system", older(add_fm({ { 50 * G + 100, 2 } })) },
  { "a free-map entry allocating a page of group 50 (valid)", function(path, r)
      add_fm({ { 50 * G + 100, 1 } })(path, r)
      return "latest", fp_with(index_S2, {}, { 50 * G + 100 }) end },
  { "free-map entries allocating the last page and freeing a page of group 0 (valid)", function(path, r)
      local id = first_in_state(path, r, 1, 8)
      add_fm({ { K * G + 63, 1 }, { id, 0 } })(path, r)
      return "latest", fp_with(index_S2, { id }, { K * G + 63 }) end },
}

-- Foreign headers in one root slot or both (spec/01 covers both slots
-- with a wrong magic, the version after this build's and bad page sizes).
local function both(off, bytes, expect)
  return function(path, r, prev)
    for _, root in ipairs({ r, prev }) do forge_root(path, root, off, bytes) end
    return expect
  end
end

local header_forgeries = {
  { "the newest root with another magic", root_field(ROOT.magic, "c8", function() return "MAPPEDPG" end) },
  { "the previous root with another magic", function(path, _, prev)
      forge_root(path, prev, ROOT.magic, "MAPPEDPG")
      return "latest" end },
  { "the newest root at version 0", root_field(ROOT.version, "<I4", function() return 0 end) },
  { "the newest root at version 3", root_field(ROOT.version, "<I4", function() return 3 end) },
  { "the newest root at version 2^32-1", root_field(ROOT.version, "<I4", function() return 0xFFFFFFFF end) },
  { "the previous root at version 3", function(path, _, prev)
      forge_root(path, prev, ROOT.version, sp("<I4", 3))
      return "latest" end },
  { "both roots at version 2^32-1", both(ROOT.version, sp("<I4", 0xFFFFFFFF), "fail:version") },
  { "one root with another magic, the other at version 3", function(path, r, prev)
      forge_root(path, r, ROOT.magic, "MAPPEDPG")
      forge_root(path, prev, ROOT.version, sp("<I4", 3))
      return "fail:version" end },
  { "the newest root with page size 0", root_field(ROOT.page_size, "<I4", function() return 0 end) },
  { "the newest root with page size 512", root_field(ROOT.page_size, "<I4", function() return 512 end) },
  { "the newest root with page size 2048", root_field(ROOT.page_size, "<I4", function() return 2048 end) },
  { "the newest root with page size 4096", root_field(ROOT.page_size, "<I4", function() return 4096 end) },
  { "the newest root with page size 65536", root_field(ROOT.page_size, "<I4", function() return 65536 end) },
  { "the newest root with page size 2^32-1", root_field(ROOT.page_size, "<I4", function() return 0xFFFFFFFF end) },
  -- a root slot signed as a whole page of another size: open reads slot 0
  -- as 2 KiB and 4 KiB too, so these are candidates of another geometry,
  -- newer than both real roots, whose bitmaps cannot be right
  { "slot 0 re-signed as a newer 2 KiB root", function(path, r, prev)
      local root = r.slot == 0 and r or prev
      H.write_at(path, ROOT.page_size, sp("<I4", 2048))
      H.write_at(path, ROOT.txn, sp("<i8", r.txn + 5))
      H.fix_root_crc(path, 2048, 0)
      return root == r and "older" or "latest" end },
  { "slot 0 re-signed as a newer 4 KiB root with a page count the file holds", function(path, r, prev)
      local root = r.slot == 0 and r or prev
      H.write_at(path, ROOT.page_size, sp("<I4", 4096))
      H.write_at(path, ROOT.txn, sp("<i8", r.txn + 5))
      H.write_at(path, ROOT.page_count, sp("<i8", 16))
      H.fix_root_crc(path, 4096, 0)
      return root == r and "older" or "latest" end },
}

describe("a forged file with valid checksums", function()
  after_each(cleanup)

  it("is rejected when its page table or bitmap is inconsistent (main file)", function()
    local counts = forge_all(build_main(true), main_forgeries)
    assert.is_true(counts["opened older"] > 60)
  end)

  it("is rejected when the entries its root carries are inconsistent (carrying file)", function()
    local counts = forge_all(build_carry(), carry_forgeries)
    assert.are.equal(#carry_forgeries, counts["opened older"])
  end)

  it("is rejected when the free-map entries its root carries are inconsistent, and opens when they are valid"
     .. " (free-map file)", function()
    local f = build_fm()
    fm_S2 = f.S.S2
    local counts = forge_all(f, fm_forgeries)
    -- (counted once per image: the read-only open's verdict)
    assert.are.equal(#fm_forgeries - 9, counts["opened older"])
    assert.are.equal(7, counts["opened latest"])
    assert.are.equal(2, counts["opened fail:corrupt"])
  end)

  it("is rejected when its root carries more than 128 free-map entries, even with room for them", function()
    local counts = forge_all(build_wide(), wide_forgeries, { raw = true })
    assert.are.equal(1, counts["opened latest"])
    assert.are.equal(2, counts["opened older"])
  end)

  it("is rejected when its index node or a bitmap below it is inconsistent (index file)", function()
    local f = build_index()
    index_S2 = f.S.S2
    forge_all(f, index_forgeries, { sparse = true })
  end)

  it("is rejected, or opens the other root, when a root's header is foreign", function()
    forge_all(build_main(), header_forgeries)
  end)

  -- (this was reported as corrupt, "both root slots fail their checksum":
  -- open took an unsupported version of 0 for "none seen")
  it("reports version when both roots say format version 0", function()
    forge_all(build_main(), { { "both roots at version 0", both(ROOT.version, sp("<I4", 0), "fail:version") } })
  end)
end)

---------------------------------------------------------------------------
-- garbage, and things that are not files

-- Write each image (ARGS.images: what, size, kind) and open it; every one
-- must fail with one of its codes.
-- (the child: spec/children/hostile_garbage.lua)

describe("a file of garbage", function()
  after_each(cleanup)

  it("is not a mappedpages file, whatever its size, and open leaves it alone", function()
    local f = build_main()
    local images = {}
    local function add(size, kind, codes) images[#images + 1] = { size = size, kind = kind, codes = codes } end
    local sizes = { 0, 1, 511, 512, 1023, 1024, 1025, 2047, 2048, 4096, 65536, 1 << 20 }
    for _, n in ipairs(sizes) do
      for _, kind in ipairs({ "zeros", "ones", "garbage" }) do add(n, kind, "not_mappedpages") end
      -- the magic alone: too short for the roots, else a root that fails
      -- its checksum (garbage where the version is may read as one)
      local short = n < 2048
      add(n, "magic", short and "not_mappedpages" or "corrupt,version")
      add(n, "magic v1", short and "not_mappedpages" or "corrupt")
      -- both real roots, then garbage or zeros where the metadata should be
      if n >= 2048 then
        add(n, "real roots", "corrupt")
        add(n, "real roots, zeros", "corrupt")
      end
    end
    local counts = run_child("garbage", { path = fast_path("garbage.mp"), real = f.path, P = P,
                                        S = f.S, images = images })
    assert.are.equal(2 * #images, counts.images)
  end)
end)

-- Open path read-only and for writing in a child that must not take
-- longer than `limit` seconds; returns "ok" or "code,code".
local function open_special(path, limit, modes)
  local out, status = H.run_child("open_modes", { path = path, modes = modes or { true, false } },
                                  { timeout = limit or 20 })
  assert(status == 0, ("opening %s crashed or hung (exit status %s): %s"):format(path, tostring(status), out))
  return (out:gsub("%s+$", ""))
end

describe("something that is not a regular file", function()
  after_each(cleanup)

  it("is refused cleanly: a directory, /dev/null, /dev/zero", function()
    assert.are.equal("is_dir,is_dir", open_special(H.dir()))
    assert.are.equal("not_mappedpages,not_mappedpages", open_special("/dev/null"))
    assert.are.equal("not_mappedpages,not_mappedpages", open_special("/dev/zero"))
  end)

  it("is followed when it is a symbolic link, and refused cleanly when the link is dangling", function()
    local f = build_main()
    local link = H.path("link.mp")
    assert(os.execute(("ln -s %s %s"):format(sq(f.path), sq(link))))
    assert.are.equal("ok,ok", open_special(link))
    local dangling = H.path("dangling.mp")
    assert(os.execute(("ln -s %s %s"):format(sq(H.path("nowhere.mp")), sq(dangling))))
    assert.are.equal("not_found,not_found", open_special(dangling))
    local dirlink = H.path("dirlink.mp")
    assert(os.execute(("ln -s %s %s"):format(sq(H.dir()), sq(dirlink))))
    assert.are.equal("is_dir,is_dir", open_special(dirlink))
  end)

  -- open() of a FIFO for reading blocks until a writer opens the other
  -- end: a read-only mp.open of a FIFO used to hang (it now opens with
  -- O_NONBLOCK and refuses it as "not a regular file", like a writer)
  it("is refused cleanly, and promptly, when it is a FIFO", function()
    local fifo = H.path("fifo.mp")
    assert(os.execute("mkfifo " .. sq(fifo)))
    assert.are.equal("not_mappedpages,not_mappedpages", open_special(fifo, 10))
  end)

  it("is refused cleanly by a writer when it is a FIFO", function()
    local fifo = H.path("fifo.mp")
    assert(os.execute("mkfifo " .. sq(fifo)))
    assert.are.equal("not_mappedpages", open_special(fifo, 10, { false }))   -- O_RDWR does not block
  end)
end)

---------------------------------------------------------------------------
-- unusual but valid files made by another tool

-- Each case (ARGS.cases: path, what, expect, pc, free, grow) is a fresh
-- file written by hand.  Valid ones must open at transaction 1 with the
-- right counts and keep working: a writer allocates (past the end when
-- `grow`), writes a protected page and sets the root, and a reopen shows
-- exactly that.  Invalid ones must fail cleanly.
-- (the child: spec/children/hostile_valid.lua)

describe("a valid file made by another tool", function()
  after_each(cleanup)

  it("opens and keeps working at unusual page counts, and is refused when they cut a reserved run", function()
    local run0 = 8                                 -- roots, bitmap slots, two index levels
    local cases = {}
    local function add(pc, extra, grow, what)
      local ngroups = cdiv(pc, G)
      local system = run0 + 2 * (ngroups - 1)      -- groups 1.. host no index level here
      local ok = pc >= run0 and pc - (ngroups - 1) * G >= (ngroups > 1 and 2 or run0)
      cases[#cases + 1] = { pc = pc, extra = extra or 0, grow = grow, free = pc - system,
                            expect = ok and "ok" or "fail:corrupt",
                            what = what or ("%d pages%s"):format(pc, extra and (" and " .. extra .. " bytes") or "") }
    end
    add(8, nil, true, "8 pages: the reserved run alone, nothing free")
    add(8, 100, true)
    add(9, nil, true)
    add(63, nil, true)
    add(65, P - 1, true)
    add(G - 1, nil, true)
    add(G, nil, true, "one whole group")
    add(G + 2, nil, true, "a second group holding its reserved run alone")
    add(G + 3, nil, true)
    add(2 * G + 2, 17, true)
    add(K * G, nil, false, "112 groups, all the root holds")
    add(K * G + 2, nil, false, "113 groups, FSM height 1")
    add(7, nil, false, "7 pages: short of group 0's reserved run")
    add(2, nil, false, "2 pages: the roots alone")
    add(G + 1, nil, false, "a second group cut inside its reserved run")
    add(K * G + 1, nil, false, "a 113th group cut inside its reserved run")
    for i, case in ipairs(cases) do
      case.path = fast_path("valid" .. i .. ".mp")
      forge_fresh(case.path, case.pc, case.extra)
    end
    local counts = run_child("valid", { cases = cases })
    assert.are.equal(2 * #cases, counts.images)
    assert.are.equal(12, counts["kept working"])
  end)
end)

-- A file whose newest root was cut back to one group (as if a tool had
-- rolled it back to an older, shorter state): group 1's stale bitmap
-- slots, which mark pages allocated, lie past the page count.  Growth
-- must start group 1 afresh, never take its stale bitmap for real.
-- (the child: spec/children/hostile_shrunk.lua)

describe("a valid file with stale metadata past its page count", function()
  after_each(cleanup)

  it("grows into a fresh group, not into the stale bitmap left there", function()
    local p, path = H.create({ page_size = P }, fast_path("shrunk.mp"))
    local ids = p:alloc_bulk(G + 10)
    local low = {}
    for _, id in ipairs(ids) do if id < G then low[#low + 1] = id end end
    assert(p:free_bulk(low))                  -- group 1's pages stay allocated
    assert(p:set_root(1))                     -- a commit with the frees durable
    p:close()
    local r = roots(path)
    assert(r.ngroups == 2 and r.C == 0)
    -- the newest root, cut back to 64 pages and one group
    forge_root(path, r, ROOT.page_count, sp("<i8", 64))
    forge_root(path, r, ROOT.entries + TOP.size, sp("<I4I4", 0, 0))
    local counts = run_child("shrunk", { path = path, G = G, more = G })
    assert.are.equal(1, counts.images)
  end)
end)
