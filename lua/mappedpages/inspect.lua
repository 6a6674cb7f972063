--- mappedpages.inspect: what a file holds, for the `mappedpages` command
-- and for anyone who wants the same from Lua.
--
--     local inspect = require "mappedpages.inspect"
--     local pager = assert(mp.open(path, {readonly = true}))
--     local summary = inspect.summary(pager)   -- counts, txn, root, objects
--     local ok, problems = inspect.check(pager)   -- true | false, {msg, ...}
--     print(inspect.hexdump(pager:page(8):read()))
--     print(inspect.map(pager))               -- a picture of the file
--     local svg = inspect.map(pager, {svg = true})
--
-- Named objects are found through the catalog (when the file's root holds
-- one). Each is opened with the module of its kind when the kind is known
-- (`inspect.modules`: kind -> module name), so summary() gives its stats()
-- and check() runs its check(); an object of an unknown kind (your own
-- allocator's, say) is still listed with its kind and anchor page.
-- Nothing here writes: open the pager read-only.
-- @module mappedpages.inspect

local mp = require "mappedpages"

local ipairs, pairs, pcall, require, tostring, type = ipairs, pairs, pcall, require, tostring, type
local format, concat = string.format, table.concat
local min, max = math.min, math.max

local M = {}

--- Kinds this library knows, and the module that opens each.
M.modules = {
  slab = "mappedpages.slab",
  records = "mappedpages.records",
  heap = "mappedpages.heap",
  btree = "mappedpages.btree",
}

-- The catalog's magic in the root's high 32 bits (see docs/FORMAT.md).
local CATALOG_TAG = 0x4D504341

--- The file's catalog, or nil and why there is none ("empty": a root of
-- 0; anything else: the root holds something else).
local function catalog_of(pager)
  local root = pager:root()
  if root == 0 then return nil, "empty" end
  if root >> 32 ~= CATALOG_TAG then
    return nil, format("the root (0x%016x) is not a catalog's: this file's objects are its own", root)
  end
  local cat, msg = mp.catalog.open(pager)
  if not cat then return nil, msg end
  return cat
end

--- The named objects: a list of {name =, kind =, pid =, handle = (when
-- the kind is known and it opens), error = (why it did not open)}.
function M.objects(pager)
  local cat, why = catalog_of(pager)
  if not cat then return {}, why end
  local list = {}
  for name, kind, pid in cat:entries() do
    local o = {name = name, kind = kind, pid = pid}
    local modname = M.modules[kind]
    if modname then
      local ok, mod = pcall(require, modname)
      if ok then
        local h, msg = mod.open(pager, name)
        if h then o.handle = h else o.error = msg end
      else
        o.error = tostring(mod)
      end
    end
    list[#list + 1] = o
  end
  return list, nil, cat
end

--- A summary of the file: its info() table plus `objects` (as objects()
-- gives them, with `stats` for each that opened) and `catalog` (nil, or
-- why there is none).
function M.summary(pager)
  local s = pager:info()
  local objects, why = M.objects(pager)
  for _, o in ipairs(objects) do
    if o.handle and o.handle.stats then
      local ok, st = pcall(o.handle.stats, o.handle)
      if ok then o.stats = st else o.error = tostring(st) end
    end
  end
  s.objects, s.catalog = objects, why
  return s
end

--- Which named object owns each protected page: {[pid] = owner}, where
-- an owner is {name =, kind =} (the catalog's own pages: name "catalog",
-- kind "catalog"), and a list of problems (a pid claimed twice). Objects
-- of unknown kinds own their anchor; known ones every page their
-- page_ids() lists.
function M.owners(pager)
  local owner, problems = {}, {}
  local objects, _, cat = M.objects(pager)
  local function claim(pid, who)
    local had = owner[pid]
    if had then
      problems[#problems + 1] = format("protected page %d is owned twice: by %s %q and by %s %q",
                                       pid, had.kind, had.name, who.kind, who.name)
    else
      owner[pid] = who
    end
  end
  if cat then
    local who = {name = "catalog", kind = "catalog"}
    for _, pid in ipairs(cat:page_ids()) do claim(pid, who) end
  end
  for _, o in ipairs(objects) do
    local who = {name = o.name, kind = o.kind}
    local ok, ids = false, nil
    if o.handle and o.handle.page_ids then ok, ids = pcall(o.handle.page_ids, o.handle) end
    if ok then
      for _, pid in ipairs(ids) do claim(pid, who) end
    else
      claim(o.pid, who)
    end
  end
  return owner, problems
end

--- Check everything: the core's audit (checksums, every page accounted
-- for), the catalog, each known object's own check(), and that no page
-- has two owners. opts.progress, when given, is called as
-- progress(done, total, what) before each step and once at the end
-- (done == total).
-- @return true, or false and a list of problems (strings)
function M.check(pager, opts)
  local progress = opts and opts.progress or function() end
  local problems = {}
  local objects, why, cat = M.objects(pager)
  local total, done = #objects + 3, 0
  local function step(what) progress(done, total, what) done = done + 1 end
  step("the file's checksums and pages")
  local ok, found = pager:check()
  if ok == nil then
    problems[#problems + 1] = "file: not checked: " .. tostring(found)
  elseif not ok then
    for _, p in ipairs(found) do problems[#problems + 1] = "file: " .. p end
  end
  step("the catalog")
  if cat then
    local cok, list = cat:check()
    if not cok then
      for _, p in ipairs(list) do problems[#problems + 1] = "catalog: " .. p end
    end
  elseif why ~= "empty" and not why:find("its own", 1, true) then
    problems[#problems + 1] = "catalog: " .. why
  end
  for _, o in ipairs(objects) do
    step(format("%s %q", o.kind, o.name))
    if o.error then
      problems[#problems + 1] = format("%s %q: does not open: %s", o.kind, o.name, o.error)
    elseif o.handle and o.handle.check then
      local ran, res, list = pcall(o.handle.check, o.handle)
      if not ran then
        problems[#problems + 1] = format("%s %q: check failed: %s", o.kind, o.name, tostring(res))
      elseif not res then
        for _, p in ipairs(type(list) == "table" and list or {tostring(list)}) do
          problems[#problems + 1] = format("%s %q: %s", o.kind, o.name, p)
        end
      end
    end
  end
  step("who owns each page")
  local _, twice = M.owners(pager)
  for _, p in ipairs(twice) do problems[#problems + 1] = p end
  progress(total, total, "done")
  if #problems > 0 then return false, problems end
  return true
end

--- Bytes as lines of 16: offset, the bytes in hex separated by spaces,
-- then the printable ones (dots for the rest). `base` is the offset the
-- first byte has (0 by default).
function M.hexdump(s, base)
  base = base or 0
  local lines = {}
  for i = 1, #s, 16 do
    local chunk = s:sub(i, min(i + 15, #s))
    local hex = chunk:gsub(".", function(c) return format("%02x ", c:byte()) end)
    hex = hex:sub(1, -2)
    local text = chunk:gsub("[^\32-\126]", ".")
    lines[#lines + 1] = format("%08x  %-47s  |%s|", base + i - 1, hex, text)
  end
  return concat(lines, "\n")
end

---------------------------------------------------------------------------
-- pictures

-- Categories of pages, in legend order; objects come after them.
local BASE = {
  {key = "F", symbol = ".", name = "free", rgb = "#e8e8e8", ansi = "47;30"},
  {key = "S", symbol = "#", name = "the file's own structures", rgb = "#555555", ansi = "100;97"},
  {key = "R", symbol = "r", name = "regular pages", rgb = "#8fbc8f", ansi = "42;30"},
  {key = "C", symbol = "C", name = "catalog", rgb = "#1f4e79", ansi = "44;97"},
  {key = "P", symbol = "p", name = "protected, no named object", rgb = "#c9a227", ansi = "43;30"},
}
-- Colours for named objects, in turn.
local PALETTE = {
  {"#d62728", "41;97"}, {"#9467bd", "45;97"}, {"#17becf", "46;30"}, {"#ff7f0e", "101;30"},
  {"#2ca02c", "102;30"}, {"#e377c2", "105;30"}, {"#1f77b4", "104;97"}, {"#bcbd22", "103;30"},
}
local SYMBOLS = "abdefghijklmnoqstuvwxyzABDEGHIJKLMNOQTUVWXYZ0123456789"

--- The categories of a file and the category of each cell: a list of
-- cells ({cat = category, first = page, last = page}), the legend (the
-- categories in use, each with `pages`) and pages per cell.
local function layout(pager, cells_max)
  local kinds, holders = pager:page_kinds()
  local owner = M.owners(pager)
  local legend, by_key = {}, {}
  for _, c in ipairs(BASE) do
    local e = {key = c.key, symbol = c.symbol, name = c.name, rgb = c.rgb, ansi = c.ansi, pages = 0}
    by_key[c.key] = e
  end
  by_key.catalog = by_key.C
  local objects, n_objects = {}, 0
  -- the category of physical page i (0-based)
  local function category(i)
    local k = kinds:sub(i + 1, i + 1)
    if k ~= "P" then return by_key[k] end
    local who = owner[holders[i]]
    if not who then return by_key.P end
    if who.kind == "catalog" then return by_key.C end
    local e = objects[who.name]
    if not e then
      n_objects = n_objects + 1
      local colour = PALETTE[(n_objects - 1) % #PALETTE + 1]
      local sym = n_objects <= #SYMBOLS and SYMBOLS:sub(n_objects, n_objects) or "*"
      e = {key = who.name, symbol = sym, name = format("%s %q", who.kind, who.name),
           rgb = colour[1], ansi = colour[2], pages = 0}
      objects[who.name] = e
    end
    return e
  end
  local count = #kinds
  local per = max(1, (count + cells_max - 1) // cells_max)
  local cells = {}
  for first = 0, count - 1, per do
    local last = min(first + per, count) - 1
    -- a run shows what most of its pages are
    local tally, best = {}, nil
    for i = first, last do
      local e = category(i)
      e.pages = e.pages + 1
      tally[e] = (tally[e] or 0) + 1
      if not best or tally[e] > tally[best] then best = e end
    end
    cells[#cells + 1] = {cat = best, first = first, last = last}
  end
  for _, c in ipairs(BASE) do
    if by_key[c.key].pages > 0 then legend[#legend + 1] = by_key[c.key] end
  end
  local named = {}
  for _, e in pairs(objects) do named[#named + 1] = e end
  table.sort(named, function(a, b) return a.symbol < b.symbol end)
  for _, e in ipairs(named) do legend[#legend + 1] = e end
  return cells, legend, per, count
end

local function text_map(pager, width, colour)
  local cells, legend, per, count = layout(pager, width * 64)
  local lines = {format("%d pages of %d bytes, %s a cell", count, pager:page_size(),
                        per == 1 and "one page" or format("%d pages", per))}
  for row = 1, #cells, width do
    local parts = {format("%10d  ", cells[row].first)}
    for i = row, min(row + width - 1, #cells) do
      local e = cells[i].cat
      parts[#parts + 1] = colour and format("\27[%sm%s\27[0m", e.ansi, e.symbol) or e.symbol
    end
    lines[#lines + 1] = concat(parts)
  end
  lines[#lines + 1] = ""
  for _, e in ipairs(legend) do
    local sym = colour and format("\27[%sm%s\27[0m", e.ansi, e.symbol) or e.symbol
    lines[#lines + 1] = format("  %s  %s: %d page%s", sym, e.name, e.pages, e.pages == 1 and "" or "s")
  end
  return concat(lines, "\n")
end

local function xml(s)
  return (s:gsub("[&<>\"]", {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;"}))
end

local function svg_map(pager, width)
  local cells, legend, per, count = layout(pager, width * 128)
  local CELL, GAP, LEFT, TOP = 12, 1, 70, 40
  local rows = (#cells + width - 1) // width
  local map_h = TOP + rows * (CELL + GAP)
  local W = max(LEFT + width * (CELL + GAP) + 10, 420)
  local H = map_h + 20 + #legend * 18 + 10
  local out = {format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
                      .. 'font-family="sans-serif" font-size="12">', W, H),
               format('<rect width="%d" height="%d" fill="white"/>', W, H),
               format('<text x="10" y="20">%s: %d pages of %d bytes, %s a cell</text>',
                      xml(pager:info().path), count, pager:page_size(),
                      per == 1 and "one page" or format("%d pages", per))}
  for i, c in ipairs(cells) do
    local col, row = (i - 1) % width, (i - 1) // width
    if col == 0 then
      out[#out + 1] = format('<text x="%d" y="%d" text-anchor="end" fill="#666">%d</text>',
                             LEFT - 6, TOP + row * (CELL + GAP) + CELL - 2, c.first)
    end
    local span = c.first == c.last and format("page %d", c.first)
                 or format("pages %d-%d", c.first, c.last)
    out[#out + 1] = format('<rect x="%d" y="%d" width="%d" height="%d" fill="%s">'
                           .. '<title>%s: %s</title></rect>',
                           LEFT + col * (CELL + GAP), TOP + row * (CELL + GAP), CELL, CELL,
                           c.cat.rgb, span, xml(c.cat.name))
  end
  for i, e in ipairs(legend) do
    local y = map_h + 20 + (i - 1) * 18
    out[#out + 1] = format('<rect x="10" y="%d" width="12" height="12" fill="%s"/>', y, e.rgb)
    out[#out + 1] = format('<text x="28" y="%d">%s: %d page%s</text>', y + 11, xml(e.name),
                           e.pages, e.pages == 1 and "" or "s")
  end
  out[#out + 1] = "</svg>"
  return concat(out, "\n") .. "\n"
end

--- A picture of the file: one cell per page, or per run of pages when
-- the file is large, each showing what the page is (free, the file's own
-- structures, regular, the catalog, or the named object that owns it),
-- with a legend. opts: {width = cells per row (64), colour = true for ANSI
-- colours, svg = true for a standalone SVG document instead of text}.
function M.map(pager, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error(format("inspect.map: opts must be a table (got %s)", type(opts)), 2)
  end
  opts = opts or {}
  local width = opts.width or 64
  if math.type(width) ~= "integer" or width < 1 or width > 1024 then
    error(format("inspect.map: width must be an integer from 1 to 1024 (got %s)", tostring(width)), 2)
  end
  if opts.svg then return svg_map(pager, width) end
  return text_map(pager, width, opts.colour)
end

return M

