-- spec/31-cli: the `mappedpages` command (bin/mappedpages, run as a
-- newcomer runs it from the checkout) and mappedpages.inspect under it:
-- info, check (0 clean, 1 problems, 2 unopenable), dump, usage errors;
-- never a traceback.

local H = require "helpers"
local mp = require "mappedpages"
local inspect = require "mappedpages.inspect"

local run = H.run_cli

-- A file with a slab and a record table, closed.
local function sample()
  local p, path = H.create({page_size = 4096})
  local s = assert(mp.slab.open(p, "notes"))
  local ref = s:alloc(10)
  s:write(ref, 0, "hello")
  local r = assert(mp.records.open(p, "players", "record player { name: char[16] score: f64 }"))
  r:insert{name = "ada", score = 2}
  r:insert{name = "bob"}
  p:close()
  return path, ref
end

describe("mappedpages info", function()
  after_each(function() H.cleanup() end)

  it("shows the snapshots readers hold and the pages held for them, beside a writer", function()
    local path = sample()
    local w = H.open(path)
    local pid = assert(w:alloc_protected())
    local r = H.open(path, { readonly = true })
    for i = 1, 3 do
      local x = w:write_protected(pid)
      x:pack(0, "<i8", i)
      assert(x:commit())
    end
    local status, out = run("info", path)
    assert.equal(0, status, out)
    assert.truthy(out:find(("snapshots held: %d, %d (this command's: %d); 2 pages held for readers")
      :format(r:info().txn, w:info().txn, w:info().txn), 1, true), out)
    r:close()
    w:free_protected(pid)                   -- a commit with no reader: frees what was held
    w:close()
    status, out = run("info", path)
    assert.equal(0, status, out)
    assert.is_nil(out:find("snapshots held", 1, true), out)   -- none but its own, nothing held
  end)

  it("shows the counts, the transaction, the root and every named object", function()
    local path = sample()
    local status, out = run("info", path)
    assert.equal(0, status, out)
    assert.matches("page size    4096", out, 1, true)
    assert.matches("pages        %d+: %d+ free, 0 regular, %d+ protected", out)
    assert.matches("(the catalog, at protected page %d+)", out)
    assert.matches("objects      2", out, 1, true)
    assert.matches('"notes"%s+slab%s+anchor %d+%s+2 pages, 1 object, 10 bytes', out)
    assert.matches('"players"%s+records%s+anchor %d+%s+%d+ pages, 2 objects, 48 bytes', out)
  end)

  it("lists an object of a kind it does not know, and a file with no catalog", function()
    local p, path = H.create()
    p:transaction(function()
      local cat = assert(mp.catalog.open(p))
      cat:create("mine", "my.allocator/1")
    end)
    p:close()
    local status, out = run("info", path)
    assert.equal(0, status, out)
    assert.matches('"mine"%s+my.allocator/1%s+anchor %d+%s+a kind this tool does not know', out)
    local q, bare = H.create()
    q:close()
    status, out = run("info", bare)
    assert.equal(0, status)
    assert.matches("objects      none (no catalog)", out, 1, true)
    local r, own = H.create()
    r:set_root(12345)
    r:close()
    status, out = run("info", own)
    assert.equal(0, status)
    assert.matches("objects      none known: the root (0x0000000000003039) is not a catalog's", out, 1, true)
  end)
end)

describe("mappedpages check", function()
  after_each(function() H.cleanup() end)

  it("exits 0 for a clean file", function()
    local path = sample()
    local status, out = run("check", path)
    assert.equal(0, status, out)
    assert.equal(path .. ": clean\n", out)
  end)

  it("exits 1 naming each problem of a damaged object, and the rest still checks", function()
    local path, ref = sample()
    local p = H.open(path)
    local pid = ref >> 16
    local w = p:write_protected(pid)
    w:pack(12, "<I2", 999)               -- the page's count of live objects
    assert(w:commit())
    p:close()
    local status, out = run("check", path)
    assert.equal(1, status, out)
    assert.matches(path .. ': slab "notes": ', out, 1, true)
    assert.matches("page " .. pid, out, 1, true)
    assert.is_nil(out:find('records "players"', 1, true), "the record table is fine")
    assert.matches("%d+ problems?\n$", out)
    -- the same from Lua
    local r = H.open(path, {readonly = true})
    local ok, problems = inspect.check(r)
    assert.is_false(ok)
    assert.matches('^slab "notes": ', problems[1])
  end)

  it("exits 2 with one line for a missing, a foreign and a truncated file", function()
    local dir = H.dir()
    local _, status, out, err
    status, out, err = run("check", dir .. "/missing.mp")
    assert.equal(2, status)
    assert.equal("", out)
    assert.matches("^mappedpages: .*missing.mp.*not_found%)\n$", err)
    H.write_file(dir .. "/foreign.mp", ("not a page store\n"):rep(1000))
    status, _, err = run("check", dir .. "/foreign.mp")
    assert.equal(2, status)
    assert.matches("^mappedpages: .*foreign.mp: .*%(not_mappedpages%)\n$", err)
    local path = sample()
    H.truncate(path, 100)
    status, _, err = run("info", path)
    assert.equal(2, status)
    assert.matches("^mappedpages: [^\n]+\n$", err)
  end)
end)

describe("mappedpages dump", function()
  after_each(function() H.cleanup() end)

  it("shows a page 16 bytes a line, in hex and as text", function()
    local p, path = H.create({page_size = 1024})
    local id = p:alloc()
    p:page(id):write(0, "hello, pages\0\1\2\3!")
    p:close()
    local status, out = run("dump", path, tostring(id))
    assert.equal(0, status, out)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal("regular page " .. id .. ", 1024 bytes", lines[1])
    assert.equal("00000000  68 65 6c 6c 6f 2c 20 70 61 67 65 73 00 01 02 03  |hello, pages....|", lines[2])
    assert.equal("00000010  21 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  |!...............|", lines[3])
    assert.equal(1 + 1024 // 16, #lines)
  end)

  it("dumps a protected page with --protected, and refuses a page that is not there", function()
    local path = sample()
    local status, out = run("dump", path, "0", "--protected")
    assert.equal(0, status, out)
    assert.matches("^protected page 0, 4096 bytes\n00000000  6d 70 63 61 74 6c 67", out)
    local _, err
    status, _, err = run("dump", path, "999")
    assert.equal(1, status)
    assert.matches("^mappedpages: .*regular page 999: page 999 is out of range", err)
    status, _, err = run("dump", path, "x3")
    assert.equal(2, status)
    assert.matches("page id must be a non%-negative integer", err)
    status = run("dump", path, "-3")       -- taken for an option: a usage error too
    assert.equal(2, status)
  end)
end)

describe("the mappedpages command line", function()
  after_each(function() H.cleanup() end)

  it("exits 2 with its usage for an unknown command or a missing argument", function()
    local status, _, err = run("frob")
    assert.equal(2, status)
    assert.matches("Usage: mappedpages", err, 1, true)
    assert.matches("unknown command 'frob'", err, 1, true)
    status, _, err = run("info")
    assert.equal(2, status)
    assert.matches("missing argument 'file'", err, 1, true)
  end)

  it("has --help for itself and each command", function()
    for _, args in ipairs({{"--help"}, {"info", "--help"}, {"check", "--help"}, {"dump", "--help"}}) do
      local status, out = run(table.unpack(args))
      assert.equal(0, status, out)
      assert.matches("Usage: mappedpages", out, 1, true)
    end
  end)
end)

describe("inspect.hexdump", function()
  it("writes offsets from base and pads a short last line", function()
    assert.equal("00000100  41 42 43" .. (" "):rep(47 - 8) .. "  |ABC|", inspect.hexdump("ABC", 256))
    assert.equal("", inspect.hexdump(""))
  end)
end)

describe("pager:page_kinds()", function()
  after_each(function() H.cleanup() end)

  it("says what every physical page is, and which pid each protected content page holds", function()
    local p = H.create({page_size = 1024})
    local regs = p:alloc_bulk(3)
    local pids = {}
    p:transaction(function()
      for i = 1, 4 do
        pids[i] = p:alloc_protected()
        if i < 4 then p:write_protected(pids[i]):write(0, "x") end   -- the 4th stays unwritten
      end
    end)
    p:free(regs[2])
    local kinds, holders = p:page_kinds()
    local info = p:info()
    assert.equal(info.page_count, #kinds)
    local n = {F = 0, R = 0, P = 0, S = 0}
    for c in kinds:gmatch(".") do n[c] = n[c] + 1 end
    assert.same({F = info.free_count, R = info.regular_count, P = info.protected_pages,
                 S = info.system_count}, n)
    assert.equal("R", kinds:sub(regs[1] + 1, regs[1] + 1))
    assert.equal("F", kinds:sub(regs[2] + 1, regs[2] + 1))
    local held = {}
    for page, pid in pairs(holders) do
      assert.equal("P", kinds:sub(page + 1, page + 1))
      assert.is_nil(held[pid], "a pid in two pages")
      held[pid] = page
    end
    assert.truthy(held[pids[1]] and held[pids[2]] and held[pids[3]])
    assert.is_nil(held[pids[4]], "a never-written protected page holds no page")
  end)

  it("raises on a closed pager", function()
    local p = H.create()
    p:close()
    H.raises_with("closed pager", p.page_kinds, p)
  end)
end)

describe("inspect.owners and the picture of a file", function()
  after_each(function()
    inspect.modules["test.claims"] = nil
    package.loaded["test.claims"] = nil
    H.cleanup()
  end)

  it("finds the owner of every page of every named object", function()
    local path = sample()
    local p = H.open(path, {readonly = true})
    local owner, problems = inspect.owners(p)
    assert.same({}, problems)
    for _, name in ipairs({"notes", "players"}) do
      local mod = name == "notes" and mp.slab or mp.records
      for _, pid in ipairs(mod.open(p, name):page_ids()) do
        assert.equal(name, owner[pid].name)
      end
    end
    for _, pid in ipairs(mp.catalog.open(p):page_ids()) do assert.equal("catalog", owner[pid].kind) end
  end)

  it("reports a page that two objects claim", function()
    local p, path = H.create()
    local s = assert(mp.slab.open(p, "notes"))
    s:alloc(10)
    p:transaction(function() assert(mp.catalog.open(p)):create("thief", "test.claims") end)
    p:close()
    local r = H.open(path, {readonly = true})
    local stolen = mp.slab.open(r, "notes"):page_ids()[2]
    package.loaded["test.claims"] = {
      open = function() return {page_ids = function() return {stolen} end} end,
    }
    inspect.modules["test.claims"] = "test.claims"
    local _, problems = inspect.owners(r)
    assert.equal(1, #problems)
    assert.matches(("protected page %d is owned twice: by slab \"notes\" and by test.claims \"thief\"")
                   :format(stolen), problems[1], 1, true)
    local ok, all = inspect.check(r)
    assert.is_false(ok)
    assert.matches("owned twice", all[#all], 1, true)
  end)

  it("draws a cell per page with a legend that counts every page", function()
    local path = sample()
    local p = H.open(path, {readonly = true})
    local kinds = p:page_kinds()
    local text = inspect.map(p, {width = 16})
    assert.matches(("^%d pages of 4096 bytes, one page a cell\n"):format(#kinds), text)
    local cells, total = 0, 0
    for row in text:gmatch("\n%s*%d+  (%S+)") do cells = cells + #row end
    assert.equal(#kinds, cells)
    for pages in text:gmatch(": (%d+) pages?") do total = total + tonumber(pages) end
    assert.equal(#kinds, total)
    assert.matches('slab "notes": 2 pages', text, 1, true)
    assert.is_nil(text:find("\27", 1, true), "no colour unless asked")
    assert.matches("\27[", inspect.map(p, {colour = true}), 1, true)
    H.raises_with("width must be an integer", inspect.map, p, {width = 0})
    assert.equal(text, p:map({width = 16}), "pager:map is inspect.map")
    H.raises_with({"'map'", "Pager expected"}, p.map, 5)
    H.raises_with({"'map'", "table expected"}, p.map, p, "wide")
    H.raises_with("inspect.map: opts must be a table", inspect.map, p, 3)
    p:close()
    H.raises_with({"'map'", "closed pager"}, p.map, p)
  end)

  it("puts runs of pages in a cell when the file is large, and writes SVG", function()
    local p = H.create({page_size = 1024})
    p:alloc_bulk(5000)
    local text = inspect.map(p, {width = 8})
    local per = tonumber(text:match("^%d+ pages of 1024 bytes, (%d+) pages a cell"))
    assert.is_true(per > 1)
    local svg = inspect.map(p, {svg = true, width = 8})
    assert.matches('^<svg xmlns="http://www.w3.org/2000/svg"', svg)
    assert.matches("</svg>\n$", svg)
    assert.matches("<title>pages 0%-%d+: the file's own structures</title>", svg)
    assert.matches("regular pages: 5000 pages", svg, 1, true)
  end)
end)

describe("mappedpages map", function()
  after_each(function() H.cleanup() end)

  it("prints the picture without colour when not on a terminal, with it when asked", function()
    local path = sample()
    local status, out = run("map", path, "--width", "16")
    assert.equal(0, status, out)
    assert.matches("one page a cell", out, 1, true)
    assert.is_nil(out:find("\27", 1, true))
    status, out = run("map", path, "--colour")
    assert.equal(0, status)
    assert.matches("\27[", out, 1, true)
  end)

  it("writes an SVG file with --svg, and refuses bad options", function()
    local path = sample()
    local svg = H.path("picture.svg")
    local status, out = run("map", path, "--svg", svg)
    assert.equal(0, status, out)
    assert.matches("^<svg ", H.read_file(svg))
    local _, err
    status, _, err = run("map", path, "--width", "0")
    assert.equal(2, status)
    assert.matches("width must be 1 to 1024", err, 1, true)
    status = run("map", path, "--colour", "--plain")
    assert.equal(2, status)
    status, _, err = run("map", path, "--svg", H.dir() .. "/no/such/dir/x.svg")
    assert.equal(2, status)
    assert.matches("^mappedpages: .*x.svg", err)
  end)
end)

describe("mappedpages check on more files", function()
  after_each(function() H.cleanup() end)

  it("finds clean files of every page size, with a slab and a record table, clean", function()
    for _, size in ipairs({1024, 2048, 4096, 8192, 16384, 32768, 65536}) do
      local p, path = H.create({page_size = size})
      local s = assert(mp.slab.open(p, "notes"))
      p:transaction(function() for i = 1, 50 do s:alloc(i * 7 % (s:max_size() - 1) + 1) end end)
      local r = assert(mp.records.open(p, "t", "record r { a: i64 b: char[8] }"))
      p:transaction(function() for i = 1, 300 do r:insert{a = i, b = "x"} end end)
      p:close()
      local status, out = run("check", path)
      assert.equal(0, status, size .. ": " .. out)
    end
  end)

  it("exits 2 naming the bitmap and its checksum when a free-space bitmap is damaged", function()
    local path = sample()
    local p = H.open(path, {readonly = true})
    local kinds = p:page_kinds()
    p:close()
    -- pages 0 and 1 are the root slots; page 2 is slot 0 of group 0's
    -- bitmap (docs/FORMAT.md), the one both roots of this small file use
    local bitmap = 2
    assert.equal("S", kinds:sub(bitmap + 1, bitmap + 1))
    H.flip(path, bitmap * 4096 + 100, 0xff)
    local status, out, err = run("check", path)
    assert.equal(2, status, out)
    assert.matches("bitmap of group 0", err, 1, true)
    assert.matches("checksum mismatch", err, 1, true)
  end)

  it("exits 2 for a directory", function()
    local status, _, err = run("info", H.dir())
    assert.equal(2, status)
    assert.matches("^mappedpages: [^\n]+%(is_dir%)\n$", err)
  end)
end)

describe("pager:check() and mappedpages check on damaged pages", function()
  after_each(function() H.cleanup() end)

  local P = 4096
  local PT_HEIGHT, PT_TOP = 52, 72      -- root fields (docs/FORMAT.md): page-table height, top page

  local function newest_slot(path)
    return H.root_field(path, P, 0, "txn") > H.root_field(path, P, 1, "txn") and 0 or 1
  end

  -- A closed file whose page table is a tree (a transaction of more
  -- protected pages than a root carries flushes it), with one protected
  -- page holding recognisable content written before the last commit, so
  -- that open does not read it.  Returns path, the victim's pid, its page,
  -- and the page-table leaf the newest root names.
  local function damaged_sample()
    local p, path = H.create({page_size = P})
    local pids = {}
    p:transaction(function()
      for i = 1, H.MORE_THAN_CARRIED do pids[i] = p:alloc_protected() end
    end)
    local victim = pids[7]
    H.pset(p, victim, H.pcontent(P, "victim"))
    p:set_root(42)                      -- a later commit that writes no protected page
    p:close()
    local pages = H.find_pages(path, P, H.pcontent(P, "victim"):sub(1, 16))
    assert.equal(1, #pages)
    local slot = newest_slot(path)
    assert.equal(0, H.u32(path, slot * P + PT_HEIGHT), "one leaf")
    local leaf = H.u32(path, slot * P + PT_TOP)
    assert.equal("PMPT", H.read_at(path, leaf * P, 4), "the page-table leaf")
    return path, victim, pages[1], leaf
  end

  it("pager:check() is true for a clean file, inside a transaction too", function()
    local path = damaged_sample()
    local p = H.open(path)
    assert.same({true}, {p:check()})
    p:transaction(function()
      local pid = p:alloc_protected()
      H.pset(p, pid, H.pcontent(P, "in txn"))
      p:free_protected(pid - 1)
      p:free(p:alloc())
      assert.same({true}, {p:check()})
    end)
    assert.same({true}, {p:check()})
  end)

  it("pager:check() names a page-table page whose byte changed under an open pager", function()
    local path, _, _, leaf = damaged_sample()
    local p = H.open(path)
    H.flip(path, leaf * P + 200)
    local ok, problems = p:check()
    assert.is_false(ok)
    assert.equal(1, #problems, table.concat(problems, "\n"))
    assert.equal(("page %d (page-table leaf 0): checksum mismatch"):format(leaf), problems[1])
  end)

  it("pager:check() names a protected page whose content changed", function()
    local path, victim, page = damaged_sample()
    local p = H.open(path)
    H.flip(path, page * P + 1000, 0x01)
    local ok, problems = p:check()
    assert.is_false(ok)
    assert.same({("page %d (protected page %d): content does not match its checksum"):format(page, victim)},
                problems)
  end)

  it("pager:check() lists every problem of a file, not only the first", function()
    local path, victim, page, leaf = damaged_sample()
    local p = H.open(path)
    H.flip(path, page * P + 1000, 0x01)
    H.flip(path, leaf * P + 200)
    local bitmap = H.bitmap_page(path, P, newest_slot(path))   -- group 0's, as the newest root names it
    H.flip(path, bitmap * P + 100)
    local ok, problems = p:check()
    assert.is_false(ok)
    local all = table.concat(problems, "\n")
    assert.equal(3, #problems, all)
    assert.matches(("page %d (page-table leaf 0): checksum mismatch"):format(leaf), all, 1, true)
    assert.matches(("page %d (protected page %d): content does not match"):format(page, victim), all, 1, true)
    assert.matches(("page %d (bitmap of group 0, slot %d): checksum mismatch"):format(bitmap, bitmap - 2),
                   all, 1, true)
  end)

  it("mappedpages check exits 1 naming a protected page whose content changed", function()
    local path, victim, page = damaged_sample()
    H.flip(path, page * P + 1000, 0x01)
    local status, out = run("check", path)
    assert.equal(1, status, out)
    assert.matches(("%s: file: page %d (protected page %d): content does not match its checksum\n")
                   :format(path, page, victim), out, 1, true)
    assert.matches("1 problem\n$", out)
  end)

  it("mappedpages check exits 1 listing two damaged protected pages", function()
    local p, path = H.create({page_size = P})
    local a, b = p:alloc_protected(), p:alloc_protected()
    H.pset(p, a, H.pcontent(P, "first"))
    H.pset(p, b, H.pcontent(P, "second"))
    p:set_root(1)
    p:close()
    local pa = H.find_pages(path, P, H.pcontent(P, "first"):sub(1, 16))[1]
    local pb = H.find_pages(path, P, H.pcontent(P, "second"):sub(1, 16))[1]
    H.flip(path, pa * P + 50)
    H.flip(path, pb * P + P - 1)
    local status, out = run("check", path)
    assert.equal(1, status, out)
    assert.matches(("page %d (protected page %d): content does not match"):format(pa, a), out, 1, true)
    assert.matches(("page %d (protected page %d): content does not match"):format(pb, b), out, 1, true)
    assert.matches("2 problems\n$", out)
  end)

  it("mappedpages check exits 2 naming the page-table leaf and its page when open rejects it", function()
    local path, _, _, leaf = damaged_sample()
    H.flip(path, leaf * P + 200)
    local status, out, err = run("check", path)
    assert.equal(2, status, out)
    assert.matches(("page table leaf 0 (level 0, page %d): checksum mismatch"):format(leaf), err, 1, true)
  end)
end)
