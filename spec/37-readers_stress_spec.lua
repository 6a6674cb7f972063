-- spec/37-readers_stress: one writer process and several reader processes
-- on one file, killed with SIGKILL at random moments and restarted.
--
-- The writer (spec/children/bank_writer.lua) runs seeded random transfers
-- between accounts kept in protected pages and in a records table (their
-- balances always sum to the same total; each page's content is a
-- function of its version).  Each reader (spec/children/bank_reader.lua)
-- refreshes in a loop and checks that its snapshot is one whole commit
-- (pages and rows agree, every page is the content its version
-- committed, the sum holds), also after the writer committed more, and
-- that transaction ids never go back.  At the end, with no reader left,
-- one commit frees every page the readers held: nothing leaks.

local H = require "helpers"

local LIB = H.CHILDREN .. "bank_lib.lua"
local B = dofile(LIB)
local ROUNDS = tonumber(os.getenv("MP_READERS_STRESS_ROUNDS") or "") or 16
local READERS = 3

describe("readers and a writer in separate processes, killed at random", function()
  after_each(H.cleanup)

  it("keep every snapshot whole and leak no page (" .. ROUNDS .. " rounds)", function()
    local path = H.path("bank.mp")
    B.create(path)
    local rnd = H.rng(37)
    local procs = {}   -- slot -> {pid =, out =, kind =}
    local outs = {}
    local function start(slot)
      local kind = slot == 0 and "writer" or "reader"
      local out = H.path(("%s%d-%d.txt"):format(kind, slot, #outs))
      outs[#outs + 1] = out
      local args = { path = path, lib = LIB, seed = rnd(1000000) }
      procs[slot] = { kind = kind, out = out,
                      pid = H.spawn_child_bg("bank_" .. kind, args, out) }
    end
    local function stop(slot)
      H.kill9(procs[slot].pid)
      H.wait_gone(procs[slot].pid)
    end
    finally(function()
      for slot = 0, READERS do if procs[slot] then H.kill9(procs[slot].pid) end end
    end)
    for slot = 0, READERS do start(slot) end
    H.wait_output(procs[0].out, "writing from")
    for _ = 1, ROUNDS do
      os.execute(("sleep %.2f"):format(0.05 + rnd(15) / 100))
      local slot = rnd(READERS + 1) - 1      -- the writer too, now and then
      stop(slot)
      start(slot)
    end
    os.execute("sleep 0.3")
    for slot = 0, READERS do stop(slot) end

    local checked = 0
    for _, out in ipairs(outs) do
      local s = H.read_file(out)
      assert.is_nil(s:find("FAIL", 1, true), out .. ": " .. s)
      assert.is_nil(s:find("lua5.4:", 1, true), out .. ": " .. s)   -- no error
      for _ in s:gmatch("checked %d+") do checked = checked + 1 end
    end
    assert.is_true(checked > 0, "the readers checked no snapshot")

    -- no reader left: the next commit frees every held page
    local p = H.open(path)
    assert.are.equal(0, p:info().readers)
    local t = B.table(p)
    assert.is_nil(B.verify(p, t))
    assert.is_true(t:field(B.COUNTER, "balance") > 0, "the writer committed no transfer")
    p:set_root(p:root())          -- a commit
    local i = p:info()
    assert.are.equal(0, i.held_count)
    assert.are.equal(i.page_count, i.free_count + i.regular_count + i.system_count + i.protected_pages)
    assert.is_true(p:check())
    p:close()
  end)
end)
