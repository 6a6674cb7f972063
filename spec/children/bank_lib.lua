-- spec/children/bank_lib.lua -- the bank of spec/37: accounts kept twice
-- (a protected page each, and a row of a records table), whose balances
-- always sum to the same total; shared by the writer and reader children.
--
-- Account a's page: balance (i8), version (i8), then the bytes [16, P)
-- filled with a pattern that is a function of (a, version) alone, so a
-- reader can tell from the page itself whether it shows one whole commit.
-- Its row: {balance =, version =} equal to the page's.  Row ACCOUNTS + 1
-- counts the transfers committed (its balance).
local mp = require "mappedpages"

local B = { ACCOUNTS = 24, START = 1000, PAGE = 1024 }
B.TOTAL = B.ACCOUNTS * B.START
B.COUNTER = B.ACCOUNTS + 1   -- the row counting the transfers
B.SCHEMA = "record account { balance: i64; version: i64; pid: u32 }"

function B.pattern(a, version)
  local byte = (a * 31 + version * 7) % 251
  return string.char(byte):rep(B.PAGE - 16)
end

function B.table(pager)
  return assert(mp.records.open(pager, "accounts", B.SCHEMA))
end

-- Create the bank in a new file at path.
function B.create(path)
  local p = assert(mp.create(path, { page_size = B.PAGE }))
  local t = B.table(p)
  p:transaction(function()
    for a = 1, B.ACCOUNTS do
      local pid = assert(p:alloc_protected())
      local w = p:write_protected(pid)
      w:pack(0, "<i8 i8", B.START, 0)
      w:write(16, B.pattern(a, 0))
      assert(t:insert { balance = B.START, version = 0, pid = pid } == a)
    end
    assert(t:insert { balance = 0, version = 0, pid = 0 } == B.COUNTER)
  end)
  p:close()
end

-- Check one committed state: every account's page and row agree and are
-- whole, and the balances sum to the total.  Returns nil or why not.
function B.verify(pager, t)
  local sum = 0
  for a = 1, B.ACCOUNTS do
    local row = t:get(a)
    if not row then return "account " .. a .. ": no row" end
    local v = pager:protected(row.pid)
    local bal, ver = v:unpack(0, "<i8 i8")
    if bal ~= row.balance or ver ~= row.version then
      return ("account %d: page says %d (version %d), row says %d (version %d)"):format(
        a, bal, ver, row.balance, row.version)
    end
    if v:read(16) ~= B.pattern(a, ver) then
      return ("account %d: page content is not version %d's"):format(a, ver)
    end
    sum = sum + bal
  end
  if sum ~= B.TOTAL then return ("the balances sum to %d, not %d"):format(sum, B.TOTAL) end
  return nil
end

return B
