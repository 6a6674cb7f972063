-- spec/children/bank_reader.lua -- spec/37's reader: refresh, check the
-- snapshot (spec/children/bank_lib.lua's B.verify), that transaction ids
-- and the transfer count never go back, forever (the spec kills it).
-- Prints "checked N" every 50 snapshots and "FAIL ..." then exits 1 on
-- the first inconsistent one.  A.path, A.lib.
local A = dofile(arg[1])
local B = dofile(A.lib)
local mp = require "mappedpages"
io.stdout:setvbuf("no")

local function fail(why)
  print("FAIL " .. why)
  os.exit(1)
end
local r = assert(mp.open(A.path, { readonly = true }))
local t = B.table(r)
local last_txn, last_root, n = 0, -1, 0
local deadline = os.time() + (A.seconds or 120)   -- never outlives a failed spec
while os.time() <= deadline do
  local ok, msg = r:refresh()
  if not ok then fail("refresh: " .. tostring(msg)) end
  local txn, root = r:info().txn, t:field(B.COUNTER, "balance")
  if txn < last_txn then fail(("txn went back from %d to %d"):format(last_txn, txn)) end
  if root < last_root then fail(("the transfer count went back from %d to %d"):format(last_root, root)) end
  last_txn, last_root = txn, root
  -- twice: the second time the writer has committed meanwhile, and the
  -- snapshot must still be whole (its pages held, not reused)
  for _ = 1, 2 do
    local why = B.verify(r, t)
    if why then fail("txn " .. txn .. ": " .. why) end
  end
  if r:info().barriers ~= 0 then fail("a reader issued a barrier") end
  n = n + 1
  if n % 50 == 0 then print("checked " .. n .. " at txn " .. txn) end
end
