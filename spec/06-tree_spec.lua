-- 06-tree: the free-space map's index tree at every height.
--
-- Real geometries reach index height 2 only past ~55M pages, so the test
-- program test/tree_heights.c compiles the core with tiny index nodes
-- (MP_TEST_FANOUT=8) and drives files of 1 KiB and 2 KiB pages through
-- heights 1..3 against a model: audit, page states, iteration, reopen,
-- rollback of a growth that adds a level, fallback when a node of the
-- newest tree is damaged.  `make test` builds it into $MP_BUILD/test/.

local H = require "helpers"

describe("the index tree", function()
  after_each(function() H.cleanup() end)

  it("stays consistent through heights 1, 2 and 3, reopen, rollback and damage", function()
    local build = os.getenv("MP_BUILD") or "build"
    local prog = build .. "/test/tree_heights"
    local f = io.open(prog, "rb")
    assert(f, prog .. " is missing: run `make tests` (make test builds it)")
    f:close()
    local out = H.tmpdir() .. "/out.txt"
    local ok = os.execute(H.shell_quote(prog) .. " " .. H.shell_quote(H.dir()) .. " > "
                          .. H.shell_quote(out) .. " 2>&1")
    local text = io.open(out, "rb"):read("a")
    assert.is_true(ok == true, text)
    assert.matches("height 3 at", text)
    assert.matches("\nok\n$", text)
  end)
end)

describe("protected pages against a model", function()
  after_each(function() H.cleanup() end)

  -- test/protected_model.c: seeded random alloc_protected / free_protected /
  -- writes (whole-page and in place), regular traffic, set_root,
  -- transactions committed or rolled back, reopens; checked against a model
  -- after steps and transactions, with the audit, at page-table height 3.
  for _, seed in ipairs { 1, 2, 3 } do
    it("keeps every pid's content, reuse order and audit right (seed " .. seed .. ")", function()
      local build = os.getenv("MP_BUILD") or "build"
      local prog = build .. "/test/protected_model"
      local f = io.open(prog, "rb")
      assert(f, prog .. " is missing: run `make tests` (make test builds it)")
      f:close()
      local out = H.tmpdir() .. "/out.txt"
      local ok = os.execute(H.shell_quote(prog) .. " " .. H.shell_quote(H.dir()) .. " " .. seed
                            .. " 20000 > " .. H.shell_quote(out) .. " 2>&1")
      local text = io.open(out, "rb"):read("a")
      assert.is_true(ok == true, text)
      assert.matches("table height 3", text)
      assert.matches("\nok\n$", text)
    end)
  end
end)
