-- spec/format.lua -- the specs' one reader and forger of the on-disk
-- format (docs/FORMAT.md), with every field named.
--
-- Offsets are 0-based byte offsets within a page, as in docs/FORMAT.md's
-- tables; page n of a file of page size P starts at n * P.  Readers take
-- (path, P, ...) or a parsed root (F.parse); forgers rewrite the bytes and
-- then re-sign every checksum on the way up (the page's own CRC32C, its
-- parent's entry, the root), so that only the structural checks of open
-- can catch the change.  spec/helpers.lua re-exports the basic ones (H.ROOT,
-- H.fix_root_crc, H.forge_bitmap...).

local mp = require "mappedpages"

local su, sp = string.unpack, string.pack

local F = {}

F.MAGIC = "mappedpg"
F.PAGE_SIZES = { 1024, 2048, 4096, 8192, 16384, 32768, 65536 }

-- Metadata page types (META.type).
F.BITMAP_TYPE = 0x4d424d50      -- "PMBM"
F.INDEX_TYPE = 0x58494d50       -- "PMIX"
F.LEAF_TYPE = 0x54504d50        -- "PMPT", page-table leaf
F.NODE_TYPE = 0x4e504d50        -- "PMPN", page-table node

-- Root fields (root slots are pages 0 and 1).
F.ROOT = {
  magic = 0, version = 8, page_size = 12, crc = 16, flags = 20,
  txn = 24,                -- i64
  page_count = 32,         -- i64
  user_root = 40,          -- i64
  height = 48,             -- u32: FSM height (index levels above the bitmaps)
  pt_height = 52,          -- u32: page-table levels above the leaves
  pid_limit = 56,          -- i64
  protected_count = 64,    -- i64
  pt_top = 72,             -- u32: page of the top page-table page
  pt_top_crc = 76,         -- u32
  pt_tree = 80,            -- i64: pids the page-table tree covers
  pt_ndelta = 88,          -- u32: D, page-table entries carried at the end
  fm_ncarry = 92,          -- u32: C, free-map entries carried before them
  reserved = 96,           -- 32 bytes of zeros
  entries = 128,           -- top entries, TOP_ENTRY bytes each
}
F.ROOT.fsm_height = F.ROOT.height

-- Metadata page header fields; entries start at META.data.
F.META = { type = 0, crc = 4, txn = 8, level = 16, index = 20, reserved = 24, data = 32 }

-- Entries.  A top entry (root) and an index-node entry: {crc u32, slot u32}.
-- A page-table node entry: {page u32, crc u32}.  A page-table leaf entry:
-- {page u32, crc u32, txn i64}.  A carried page-table entry (root tail, the
-- i-th at P - 24 * (i + 1)): {pid i64, page u32, crc u32, txn i64}.  A
-- carried free-map entry (the i-th at P - 24 * D - 8 * (i + 1)): i64
-- page << 2 | state.
F.TOP_ENTRY = { size = 8, crc = 0, slot = 4 }
F.NODE_ENTRY = { size = 8, page = 0, crc = 4 }
F.LEAF_ENTRY = { size = 16, page = 0, crc = 4, txn = 8 }
F.CARRIED_PT = { size = 24, pid = 0, page = 8, crc = 12, txn = 16 }
F.CARRIED_FM = { size = 8 }

-- More page-state changes than any root carries (docs/FORMAT.md, "Carried
-- free-map entries"): a commit of this many changes writes its bitmaps.
F.MORE_THAN_CARRIED = 200

-- ceil(a / b)
local function cdiv(a, b) return (a + b - 1) // b end
F.cdiv = cdiv

-- Geometry of page size P: G pages per group, E entries per index or
-- page-table node, EL per page-table leaf, K top entries in a root, LMAX
-- the largest FSM height.
function F.geometry(P)
  local G = 4 * (P - F.META.data)
  local E = (P - F.META.data) // F.NODE_ENTRY.size
  local EL = (P - F.META.data) // F.LEAF_ENTRY.size
  local K = (P - F.ROOT.entries) // F.TOP_ENTRY.size
  local n = -((-(1 << 32)) // G)        -- ceil(2^32 / G) groups
  local L = 0
  while n > K do n = -((-n) // E); L = L + 1 end
  return { P = P, G = G, E = E, EL = EL, K = K, LMAX = L }
end

-- Number of reserved pages at the start of group 0 (roots + run).
function F.group0_reserved(P)
  return 2 + 2 + 2 * F.geometry(P).LMAX
end

-- Reserved page ids of group g (g >= 1).
function F.group_reserved(P, g)
  local geo = F.geometry(P)
  local hosted = 0
  local span = 1
  for _ = 1, geo.LMAX do
    span = span * geo.E
    if g % span == 0 then hosted = hosted + 1 end
  end
  local ids = {}
  for i = 0, 1 + 2 * hosted do ids[#ids + 1] = g * geo.G + i end
  return ids
end

-- First page of group g's reserved run (past the root slots in group 0).
function F.group_base(P, g)
  return g * F.geometry(P).G + (g == 0 and 2 or 0)
end

---------------------------------------------------------------------------
-- bytes of a file

local function read_at(path, off, len)
  local f = assert(io.open(path, "rb"))
  f:seek("set", off)
  local s = f:read(len) or ""
  f:close()
  return s
end
F.read_at = read_at

local function write_at(path, off, s)
  local f = assert(io.open(path, "r+b"))
  f:seek("set", off)
  assert(f:write(s))
  f:close()
end
F.write_at = write_at

local function set_u32(path, off, v) write_at(path, off, sp("<I4", v)) end
F.set_u32 = set_u32

-- s with bytes at 0-based offset off replaced by rep.
function F.splice(s, off, rep)
  return s:sub(1, off) .. rep .. s:sub(off + #rep + 1)
end

---------------------------------------------------------------------------
-- checksums

-- CRC32C of a root page with its CRC field zeroed.
function F.root_crc(page)
  local o = F.ROOT.crc
  return mp.crc32c(page:sub(1, o) .. "\0\0\0\0" .. page:sub(o + 5))
end

-- CRC32C of a metadata page with its CRC field zeroed.
function F.meta_crc(page)
  local o = F.META.crc
  return mp.crc32c(page:sub(1, o) .. "\0\0\0\0" .. page:sub(o + 5))
end

function F.root_page(path, P, slot) return read_at(path, slot * P, P) end

function F.root_field(path, P, slot, field, fmt)
  return (su(fmt or "<i8", read_at(path, slot * P + F.ROOT[field], 8)))
end

-- Recompute and store the CRC of root slot `slot`; returns it.
function F.fix_root_crc(path, P, slot)
  local crc = F.root_crc(F.root_page(path, P, slot))
  set_u32(path, slot * P + F.ROOT.crc, crc)
  return crc
end

-- Recompute and store the CRC of metadata page pgno; returns it.
function F.fix_meta_crc(path, P, pgno)
  local crc = F.meta_crc(read_at(path, pgno * P, P))
  set_u32(path, pgno * P + F.META.crc, crc)
  return crc
end

-- A metadata page of size P: header fields, then body (zero-padded), with
-- its CRC computed.
function F.meta_page(P, type_, txn, level, index, body)
  local page = sp("<I4I4i8I4I4i8", type_, 0, txn, level, index, 0) .. body
  page = page .. string.rep("\0", P - #page)
  return F.splice(page, F.META.crc, sp("<I4", F.meta_crc(page)))
end

---------------------------------------------------------------------------
-- the free-space map of group 0 with FSM height 0 (small files)

-- Page number of the group-0 bitmap slot named by root slot `slot`
-- (FSM height 0: the first top entry is {crc, slot} of group 0).
function F.bitmap_page(path, P, slot)
  return 2 + su("<I4", read_at(path, slot * P + F.ROOT.entries + F.TOP_ENTRY.slot, 4))
end

-- 2-bit state of page i in a bitmap page string (i within its group).
function F.bitmap_state(page, i)
  local byte = page:byte(F.META.data + i // 4 + 1)
  return (byte >> (2 * (i % 4))) & 3
end

function F.set_bitmap_state(page, i, state)
  local pos = F.META.data + i // 4 + 1
  local byte = page:byte(pos)
  local shift = 2 * (i % 4)
  byte = (byte & ~(3 << shift)) | (state << shift)
  return page:sub(1, pos - 1) .. string.char(byte) .. page:sub(pos + 1)
end

-- Offset in a root page of carried free-map entry i (0-based) when the
-- root carries D page-table entries.
function F.carried_fm_offset(P, D, i)
  return P - F.CARRIED_PT.size * D - F.CARRIED_FM.size * (i + 1)
end

-- Offset in a root page of carried page-table entry i (0-based).
function F.carried_pt_offset(P, i)
  return P - F.CARRIED_PT.size * (i + 1)
end

-- The free-map entries root slot `slot` carries: a list of {page, state}.
function F.root_carried(path, P, slot)
  local root = F.root_page(path, P, slot)
  local nd = su("<I4", root, F.ROOT.pt_ndelta + 1)
  local n = su("<I4", root, F.ROOT.fm_ncarry + 1)
  local list = {}
  for i = 1, n do
    local v = su("<i8", root, F.carried_fm_offset(P, nd, i - 1) + 1)
    list[i] = { v >> 2, v & 3 }
  end
  return list
end

-- The durable 2-bit state of page i of group 0 as root slot `slot` sees
-- it: its bitmap page, overridden by the root's carried entries.
function F.durable_state(path, P, slot, i)
  for _, e in ipairs(F.root_carried(path, P, slot)) do
    if e[1] == i then return e[2] end
  end
  return F.bitmap_state(read_at(path, F.bitmap_page(path, P, slot) * P, P), i)
end

-- Rewrite the group-0 bitmap named by root slot `slot` with mutate(page)
-- and re-sign it, its root entry and the root.
function F.forge_bitmap(path, P, slot, mutate)
  local pg = F.bitmap_page(path, P, slot)
  local page = read_at(path, pg * P, P)
  local new = mutate(page)
  assert(#new == P)
  write_at(path, pg * P, new)
  local crc = F.fix_meta_crc(path, P, pg)
  set_u32(path, slot * P + F.ROOT.entries + F.TOP_ENTRY.crc, crc)
  F.fix_root_crc(path, P, slot)
end

-- Patch root slot `slot` at offset off (F.ROOT.x) with bytes, then re-sign.
function F.forge_root(path, P, slot, off, bytes)
  write_at(path, slot * P + off, bytes)
  F.fix_root_crc(path, P, slot)
end

---------------------------------------------------------------------------
-- a whole root and what it references

-- Page-table level sizes for `tree` pids with EL entries a leaf and E a
-- node: counts[0] leaves, ... up to a level of one page; returns counts,
-- height.
function F.pt_shape(tree, E, EL)
  local counts = { [0] = cdiv(tree, EL) }
  local h = 0
  while counts[h] > 1 do
    counts[h + 1] = cdiv(counts[h], E)
    h = h + 1
  end
  return counts, h
end

-- Parse the root in slot `slot` of the file at path (page size P, FSM
-- height 0 or 1): its fields, the metadata pages it references (refs:
-- page -> what), its bitmaps and index nodes, its page-table pages
-- (pt[l][n] = page), its entries (pid -> {page, crc, txn, off}), its
-- carried free-map entries (fm, fm_state) and the content pages it
-- verifies (entries written by its own transaction).
function F.parse(path, P, slot)
  local R, TOP, NE, LE, CP = F.ROOT, F.TOP_ENTRY, F.NODE_ENTRY, F.LEAF_ENTRY, F.CARRIED_PT
  local geo = F.geometry(P)
  local G, E, EL = geo.G, geo.E, geo.EL
  local D0 = F.META.data
  local root = read_at(path, slot * P, P)
  local function u32(o) return (su("<I4", root, o + 1)) end
  local function i64(o) return (su("<i8", root, o + 1)) end
  local function base(g) return F.group_base(P, g) end
  local r = { P = P, slot = slot, txn = i64(R.txn), page_count = i64(R.page_count),
              user_root = i64(R.user_root), fsm_h = u32(R.height), pt_h = u32(R.pt_height),
              pids = i64(R.pid_limit), pcount = i64(R.protected_count), top = u32(R.pt_top),
              top_crc = u32(R.pt_top_crc), tree = i64(R.pt_tree), D = u32(R.pt_ndelta),
              C = u32(R.fm_ncarry),
              refs = {}, bitmaps = {}, index = {}, pt = {}, entries = {}, verified = {},
              fm = {}, fm_state = {} }
  r.ngroups = cdiv(r.page_count, G)
  -- the tail: carried page-table entries at the end, the carried free-map
  -- entries just before them, and the top entries must end before both
  r.tail = CP.size * r.D + F.CARRIED_FM.size * r.C
  assert(R.entries + TOP.size * cdiv(r.ngroups, r.fsm_h == 0 and 1 or E) + r.tail <= P,
         "parse: the tail overlaps the top entries")
  for i = 0, r.C - 1 do
    local at = F.carried_fm_offset(P, r.D, i)
    local v = i64(at)
    local e = { page = v >> 2, state = v & 3, i = i, off = slot * P + at }
    r.fm[i + 1] = e
    assert(not r.fm_state[e.page], "parse: two free-map entries for page " .. e.page)
    r.fm_state[e.page] = e.state
  end
  local function ref(pg, what)
    assert(not r.refs[pg], "page " .. pg .. " referenced twice")
    r.refs[pg] = what
  end
  -- free-space map
  local function group_entry(g, crc_slot_page, at)
    local s = su("<I4", crc_slot_page, at + TOP.slot + 1)
    r.bitmaps[g] = base(g) + s
    ref(base(g) + s, "bitmap " .. g)
  end
  if r.fsm_h == 0 then
    for g = 0, r.ngroups - 1 do group_entry(g, root, R.entries + TOP.size * g) end
  else
    assert(r.fsm_h == 1, "parse: FSM height " .. r.fsm_h)
    for n = 0, cdiv(r.ngroups, E) - 1 do
      local pg = base(n * E) + 2 + u32(R.entries + TOP.size * n + TOP.slot)
      r.index[n] = pg
      ref(pg, "index node " .. n)
      local node = read_at(path, pg * P, P)
      for g = n * E, math.min(r.ngroups, (n + 1) * E) - 1 do
        group_entry(g, node, D0 + TOP.size * (g - n * E))
      end
    end
  end
  -- page table
  if r.tree > 0 then
    local counts, h = F.pt_shape(r.tree, E, EL)
    assert(h == r.pt_h)
    r.pt[h] = { [0] = r.top }
    for l = h, 0, -1 do
      if l > 0 then r.pt[l - 1] = {} end
      for n = 0, counts[l] - 1 do
        local pg = r.pt[l][n]
        ref(pg, (l == 0 and "page-table leaf " or "page-table node ") .. l .. "." .. n)
        local page = read_at(path, pg * P, P)
        if l > 0 then
          for c = n * E, math.min(counts[l - 1], (n + 1) * E) - 1 do
            r.pt[l - 1][c] = su("<I4", page, D0 + NE.size * (c - n * E) + NE.page + 1)
          end
        else
          for pid = n * EL, math.min(r.tree, (n + 1) * EL) - 1 do
            local at = D0 + LE.size * (pid - n * EL)
            local e = { page = su("<I4", page, at + LE.page + 1), crc = su("<I4", page, at + LE.crc + 1),
                        txn = su("<i8", page, at + LE.txn + 1), off = pg * P + at }
            if e.page ~= 0 then r.entries[pid] = e end
          end
        end
      end
    end
  end
  for i = 0, r.D - 1 do
    local at = F.carried_pt_offset(P, i)
    local pid = i64(at + CP.pid)
    local e = { page = u32(at + CP.page), crc = u32(at + CP.crc),
                txn = i64(at + CP.txn), off = slot * P + at, carried = i }
    r.entries[pid] = e.page ~= 0 and e or nil
  end
  for pid, e in pairs(r.entries) do
    if e.page > 1 then
      ref(e.page, "content of pid " .. pid)
      if e.txn == r.txn then r.verified[pid] = e.page end
    end
  end
  return r
end

-- The newest and the previous root of the file.
function F.roots(path, P)
  local a, b = F.parse(path, P, 0), F.parse(path, P, 1)
  if a.txn > b.txn then return a, b end
  return b, a
end

-- Patch bytes of parsed root r at offset off and re-sign it.
function F.forge_parsed_root(path, r, off, bytes)
  F.forge_root(path, r.P, r.slot, off, bytes)
end

-- Re-sign page-table page (l, n) of root r and every page above it, the
-- root last.
function F.resign_pt(path, r, l, n)
  local P, E = r.P, F.geometry(r.P).E
  local crc = F.fix_meta_crc(path, P, r.pt[l][n])
  while l < r.pt_h do
    local parent = r.pt[l + 1][n // E]
    set_u32(path, parent * P + F.META.data + F.NODE_ENTRY.size * (n % E) + F.NODE_ENTRY.crc, crc)
    l, n = l + 1, n // E
    crc = F.fix_meta_crc(path, P, parent)
  end
  set_u32(path, r.slot * P + F.ROOT.pt_top_crc, crc)
  F.fix_root_crc(path, P, r.slot)
end

-- Rewrite page-table page (l, n) of root r with mutate(page) and re-sign.
function F.forge_pt(path, r, l, n, mutate)
  local P = r.P
  local pg = r.pt[l][n]
  local new = mutate(read_at(path, pg * P, P))
  assert(#new == P)
  write_at(path, pg * P, new)
  F.resign_pt(path, r, l, n)
end

-- Rewrite bitmap of group g (root r) with mutate(page) and re-sign it, the
-- index node above it if any, and the root.
function F.forge_group_bitmap(path, r, g, mutate)
  local P, E = r.P, F.geometry(r.P).E
  local pg = r.bitmaps[g]
  local new = mutate(read_at(path, pg * P, P))
  assert(#new == P)
  write_at(path, pg * P, new)
  local crc = F.fix_meta_crc(path, P, pg)
  local TOP = F.TOP_ENTRY
  if r.fsm_h == 0 then
    set_u32(path, r.slot * P + F.ROOT.entries + TOP.size * g + TOP.crc, crc)
  else
    local n = g // E
    set_u32(path, r.index[n] * P + F.META.data + TOP.size * (g % E) + TOP.crc, crc)
    set_u32(path, r.slot * P + F.ROOT.entries + TOP.size * n + TOP.crc, F.fix_meta_crc(path, P, r.index[n]))
  end
  F.fix_root_crc(path, P, r.slot)
end

-- Rewrite index node n (root r) with mutate(page) and re-sign it and the root.
function F.forge_index(path, r, n, mutate)
  local P, TOP = r.P, F.TOP_ENTRY
  local pg = r.index[n]
  write_at(path, pg * P, mutate(read_at(path, pg * P, P)))
  set_u32(path, r.slot * P + F.ROOT.entries + TOP.size * n + TOP.crc, F.fix_meta_crc(path, P, pg))
  F.fix_root_crc(path, P, r.slot)
end

return F
