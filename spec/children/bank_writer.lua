-- spec/children/bank_writer.lua -- spec/37's writer: seeded random
-- transfers between the bank's accounts (spec/children/bank_lib.lua), one
-- transaction each, forever (the spec kills it).  A.path, A.seed, A.lib.
local A = dofile(arg[1])
local B = dofile(A.lib)
local mp = require "mappedpages"
io.stdout:setvbuf("no")

local p = assert(mp.open(A.path))
local t = B.table(p)
local x = A.seed
local function rnd(n)   -- a small LCG: deterministic per seed
  x = (x * 1103515245 + 12345) % 2147483648
  return x % n + 1
end
local spare = {}
print("writing from " .. p:info().txn)
local deadline = os.time() + (A.seconds or 120)   -- never outlives a failed spec
while os.time() <= deadline do
  local a, b = rnd(B.ACCOUNTS), rnd(B.ACCOUNTS)
  local amount = rnd(50)
  p:transaction(function()
    for _, step in ipairs({ { a, -amount }, { b, amount } }) do
      local acct, delta = step[1], step[2]
      local row = t:get(acct)
      local ver = row.version + 1
      local w = p:write_protected(row.pid)
      w:pack(0, "<i8 i8", row.balance + delta, ver)
      w:write(16, B.pattern(acct, ver))
      t:update(acct, { balance = row.balance + delta, version = ver })
    end
    -- churn of regular pages, so that frees reach the free-space map
    if #spare > 0 and rnd(2) == 1 then p:free(table.remove(spare)) end
    if #spare < 8 then spare[#spare + 1] = assert(p:alloc()) end
    t:update(B.COUNTER, { balance = t:field(B.COUNTER, "balance") + 1 })
  end)
end
