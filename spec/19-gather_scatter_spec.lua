-- 19-gather_scatter: pager:gather and pager:scatter, byte spans over lists
-- of regular pages (docs/API.md, "Spans over several pages").
--
-- Round trips over consecutive and scattered pages at every boundary (an
-- empty span, a page's last byte, one byte across two pages, the list's
-- end), every argument checked (lists, elements, offsets, lengths,
-- read-only and closed pagers, pages freed by the open transaction), only
-- the span's pages looked at, and nothing written when an element is bad.
-- The misuse fuzzer (spec/13) calls both too, against its model, with
-- finalizers that close the pager in the middle.

local H = require "helpers"

local function pattern(n, seed)
  local t = {}
  for i = 1, n do t[i] = string.char((i * 31 + seed * 7) % 251) end
  return table.concat(t)
end

describe("pager:gather and pager:scatter", function()
  after_each(function() H.cleanup() end)

  it("round-trip a span over consecutive and scattered pages, at every boundary", function()
    local p = H.create({page_size = 1024})
    local ids = assert(p:alloc_bulk(6))
    local lists = {ids, {ids[4], ids[1], ids[6], ids[2]}, {ids[3]}}
    for li, list in ipairs(lists) do
      local total = #list * 1024
      for _, span in ipairs({{0, 0}, {0, 1}, {1023, 1}, {1023, 2}, {1024, 1024}, {0, total},
                             {total - 1, 1}, {total, 0}, {5, total - 10}}) do
        local off, len = span[1], span[2]
        if off + len <= total then
          local s = pattern(len, li + off)
          assert.equal(off + len, p:scatter(list, off, s))
          assert.equal(s, p:gather(list, off, len))
          -- the bytes went where the pages say: page by page through views
          local whole = {}
          for i, id in ipairs(list) do whole[i] = p:page(id):read() end
          assert.equal(s, table.concat(whole):sub(off + 1, off + len))
        end
      end
    end
  end)

  it("gathers what views wrote, and views see what scatter wrote", function()
    local p = H.create({page_size = 1024})
    local a, b = p:alloc(), p:alloc()
    p:page(a):write(1000, "abcdefghijklmnopqrstuvwx")
    p:page(b):write(0, "ABCD")
    assert.equal("uvwxABCD", p:gather({a, b}, 1020, 8))
    p:scatter({b, a}, 1022, "1234")
    assert.equal("12", p:page(b):read(1022, 2))
    assert.equal("34", p:page(a):read(0, 2))
  end)

  it("works inside a transaction on pages it allocated, and on a read-only pager (gather)", function()
    local p, path = H.create({page_size = 1024})
    local tx = p:begin()
    local ids = p:alloc_bulk(3)
    p:scatter(ids, 100, pattern(2000, 1))
    assert.equal(pattern(2000, 1), p:gather(ids, 100, 2000))
    assert(tx:commit())
    p:close()
    local q = H.open(path, {readonly = true})
    assert.equal(pattern(2000, 1), q:gather(ids, 100, 2000))
    H.raises_with({"scatter", "read-only"}, q.scatter, q, ids, 0, "x")
  end)

  it("looks only at the pages the span touches", function()
    local p = H.create({page_size = 1024})
    local a = p:alloc()
    p:scatter({a, "junk", 0}, 10, "hello")
    assert.equal("hello", p:gather({a, "junk", 0}, 10, 5))
    assert.equal("", p:gather({"junk"}, 0, 0))
    H.raises_with("element 2", p.gather, p, {a, "junk"}, 1020, 5)
  end)

  it("raises for bad lists, elements, offsets and lengths, naming the function", function()
    local p = H.create({page_size = 1024})
    local a, b = p:alloc(), p:alloc()
    local freed = p:alloc()
    p:free(freed)
    local cases = {
      {"table expected", "x", 0, 1},
      {"element 1 is not an integer", {"1"}, 0, 1},
      {"element 2 is not an integer", {a, 2.5}, 0, 2000},
      {"out of range", {-1}, 0, 1},
      {"out of range", {a, 1 << 40}, 1000, 100},
      {"reserved", {0}, 0, 1},
      {"not allocated", {a, freed}, 0, 2048},
      {"offset -1 is out of range", {a}, -1, 0},
      {"offset 2049 is out of range", {a, b}, 2049, 0},
      {"do not fit", {a, b}, 2000, 49},
      {"do not fit", {}, 0, 1},
    }
    for _, c in ipairs(cases) do
      H.raises_with({"'gather'", c[1]}, p.gather, p, c[2], c[3], c[4])
      H.raises_with({"'scatter'", c[1]}, p.scatter, p, c[2], c[3], ("z"):rep(c[4]))
    end
    H.raises_with({"'gather'", "length -1"}, p.gather, p, {a}, 0, -1)
    H.raises_with({"'gather'", "integer"}, p.gather, p, {a}, 0.5, 1)
    H.raises_with({"'gather'", "integer"}, p.gather, p, {a}, 0, {})
    H.raises_with({"'scatter'", "string expected"}, p.scatter, p, {a}, 0, {})
    H.raises_with("length is too large", p.gather, p, {a}, 0, math.maxinteger)
  end)

  it("writes nothing when an element of the span is bad", function()
    local p = H.create({page_size = 1024})
    local a, b = p:alloc(), p:alloc()
    p:page(a):fill(7)
    local before = p:page(a):read()
    H.raises_with("out of range", p.scatter, p, {a, b + 1000}, 0, ("x"):rep(1500))
    H.raises_with("not allocated", p.scatter, p, {a, b + 1}, 0, ("x"):rep(1500))
    assert.equal(before, p:page(a):read())
  end)

  it("refuses pages the open transaction freed, and works again after its rollback", function()
    local p = H.create({page_size = 1024})
    local a = p:alloc()
    p:scatter({a}, 0, "keep")
    local tx = p:begin()
    p:free(a)
    H.raises_with("not allocated", p.gather, p, {a}, 0, 4)
    H.raises_with("not allocated", p.scatter, p, {a}, 0, "x")
    tx:rollback()
    assert.equal("keep", p:gather({a}, 0, 4))
  end)

  it("raises on a closed pager", function()
    local p = H.create({page_size = 1024})
    local a = p:alloc()
    p:close()
    H.raises_with({"gather", "closed"}, p.gather, p, {a}, 0, 1)
    H.raises_with({"scatter", "closed"}, p.scatter, p, {a}, 0, "x")
  end)

  it("survives a finalizer that closes the pager while it copies", function()
    for round = 1, 50 do
      local p = H.create({page_size = 1024})
      local ids = p:alloc_bulk(8)
      local list = {ids[8], ids[1], ids[5], ids[2], ids[7], ids[3], ids[6], ids[4]}
      p:scatter(list, 0, pattern(8192, round))
      setmetatable({}, {__gc = function() p:close() end})
      collectgarbage("step", round)
      local ok, res = pcall(p.gather, p, list, 0, 8192)
      if ok then assert.equal(pattern(8192, round), res)
      else assert.matches("closed", res) end
      p:close()
    end
  end)
end)
