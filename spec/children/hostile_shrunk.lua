-- spec/children/hostile_shrunk.lua -- a child of spec/14-hostile_files_spec.lua
-- (run_child("shrunk", args); the arguments are A).
--
-- A file whose newest root was cut back to one group (as if a tool had
-- rolled it back to an older, shorter state): group 1's stale bitmap
-- slots, which mark pages allocated, lie past the page count.  Growth
-- must start group 1 afresh, never take its stale bitmap for real.
local C = require "children.hostile_lib"
local mp = require "mappedpages"
local A = C.args()
C.at("open the cut-back file")
local ok, err = pcall(function()
  local p = assert(mp.open(A.path))
  assert(p:page_count() == 64 and p:info().regular_count == 0, "opened at another state")
  local ids = assert(p:alloc_bulk(p:free_count() + A.more))
  assert(p:page_count() > A.G + 2, "did not grow into group 1")
  local got = {}
  for id in p:pages() do got[#got + 1] = id end
  assert(#got == #ids, ("%d pages allocated, pages() lists %d"):format(#ids, #got))
  assert(p:check())
  for _, id in ipairs(ids) do p:page(id):write(0, string.pack("<I8", id)) end
  local n = #ids
  p:close()
  local q = assert(mp.open(A.path, { readonly = true }))
  assert(q:check())
  assert(q:info().regular_count == n, "reopened with " .. q:info().regular_count .. " pages")
  for _, id in ipairs(ids) do assert(q:page(id):read(0, 8) == string.pack("<I8", id)) end
  q:close()
end)
C.count("images")
if not ok then C.complain(tostring(err)) end
C.report()
