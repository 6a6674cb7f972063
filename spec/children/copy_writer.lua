-- spec/children/copy_writer.lua -- spec/36: a writer that keeps committing
-- to A.path (opened for writing) while the parent copies reader snapshots.
-- Each round changes a record, B-tree keys, a heap value and regular pages,
-- and allocates and frees enough pages that the commit writes bitmaps (not
-- only carried entries). Prints "ready" after its first round, then runs
-- until the file A.stop exists (at most A.max rounds), and prints
-- "rounds N txn T".
local mp = require "mappedpages"
local A = dofile(arg[1])

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local p = assert(mp.open(A.path))
local recs = assert(mp.records.open(p, "rows", A.schema))
local tree = assert(mp.btree.open(p, "tree"))
local heap = assert(mp.heap.open(p, "heap"))
local refs = {}
local rounds = 0
while rounds < A.max and not exists(A.stop) do
  rounds = rounds + 1
  assert(p:transaction(function()
    recs:update(1, {n = rounds, s = "round " .. rounds})
    recs:insert({n = -rounds, s = "new"})
    tree:put(("k%03d"):format(rounds % 50), ("v"):rep(rounds % 700))
    tree:delete(("k%03d"):format((rounds + 25) % 50))
    refs[#refs + 1] = assert(heap:put(("h"):rep(rounds * 37 % 9000)))
    if #refs > 3 then assert(heap:free(table.remove(refs, 1))) end
    return true
  end))
  -- regular pages are not versioned: write them only while no committed
  -- state (no reader's snapshot) has them
  local ids = assert(p:transaction(function()
    local got = assert(p:alloc_bulk(200))
    for _, id in ipairs(got) do p:page(id):write(0, "w" .. rounds) end
    return got
  end))
  assert(p:free_bulk(ids))
  if rounds == 1 then
    io.write("ready\n")
    io.flush()
  end
end
io.write(("rounds %d txn %d\n"):format(rounds, p:info().txn))
p:close()
