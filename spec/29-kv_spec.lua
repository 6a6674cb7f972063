-- spec/29-kv: examples/kv.lua, the key/value store with a tiny command
-- line, run as a command the way a newcomer runs it from the checkout:
-- every command, missing keys, prefix edges, import all or nothing,
-- persistence across runs, usage errors.

local H = require "helpers"
local mp = require "mappedpages"

local sq = H.shell_quote

-- Run examples/kv.lua with args (this process's build first on the module
-- paths): status, stdout, stderr.
local function kv(...)
  local words = {}
  for i, a in ipairs({...}) do words[i] = sq(a) end
  local errpath = H.path("stderr")
  local status, out = H.sh(("( LUA_PATH_5_4=%s LUA_CPATH_5_4=%s lua5.4 examples/kv.lua %s 2>%s )")
    :format(sq(package.path), sq(package.cpath), table.concat(words, " "), sq(errpath)))
  local err = H.read_file(errpath)
  assert.is_nil(err:find("traceback", 1, true), err)
  return status, out, err
end

-- kv(...) must succeed; returns its stdout.
local function ok(...)
  local status, out, err = kv(...)
  assert.equal(0, status, err)
  assert.equal("", err)
  return out
end

local function tsv(lines)
  local path = H.path("in.tsv")
  H.write_file(path, table.concat(lines, "\n") .. "\n")
  return path
end

-- The file's transaction id, and its B-tree's own check.
local function txn_and_check(path)
  local p = H.open(path, {readonly = true})
  local t = assert(mp.btree.open(p, "kv"))
  assert.same({true}, {t:check()})
  assert.is_true(p:check())
  local txn = p:info().txn
  p:close()
  return txn
end

describe("examples/kv.lua", function()
  after_each(function() H.cleanup() end)

  it("puts, gets, replaces and deletes keys, each run seeing the last", function()
    local f = H.path()
    assert.equal("", ok(f, "put", "lang", "Lua"))
    assert.is_true(H.exists(f), "put makes the file")
    assert.equal("Lua\n", ok(f, "get", "lang"))
    ok(f, "put", "lang", "Lua 5.4")
    ok(f, "put", "empty", "")
    assert.equal("Lua 5.4\n", ok(f, "get", "lang"))
    assert.equal("\n", ok(f, "get", "empty"))
    assert.equal("", ok(f, "del", "lang"))
    local status, out, err = kv(f, "get", "lang")
    assert.equal(1, status)
    assert.equal("", out)
    assert.matches("lang: no such key", err, 1, true)
    assert.equal("empty\t\n", ok(f, "list"))
    txn_and_check(f)
  end)

  it("stores a value larger than a page and gives it back whole", function()
    local f = H.path()
    local big = H.garbage(50000, 7):gsub("[%z\n]", "x")
    ok(f, "put", "big", big)
    ok(f, "put", "small", "s")
    assert.equal(big .. "\n", ok(f, "get", "big"))
    assert.equal("big\t" .. big .. "\nsmall\ts\n", ok(f, "list"))
    txn_and_check(f)
  end)

  it("reports a missing key on stderr with exit 1, for get and del", function()
    local f = H.path()
    ok(f, "put", "a", "1")
    for _, cmd in ipairs({"get", "del"}) do
      local status, out, err = kv(f, cmd, "nope")
      assert.equal(1, status, cmd)
      assert.equal("", out)
      assert.matches("kv: nope: no such key", err, 1, true)
    end
    assert.equal("a\t1\n", ok(f, "list"))
  end)

  it("refuses an empty key or one longer than the tree takes, and stores nothing", function()
    local f = H.path()
    ok(f, "put", "a", "1")
    for _, key in ipairs({"", ("k"):rep(1338)}) do
      local status, _, err = kv(f, "put", key, "v")
      assert.equal(1, status)
      assert.matches("a key is 1 to 1337 bytes (got " .. #key .. ")", err, 1, true)
    end
    assert.equal("a\t1\n", ok(f, "list"))
  end)

  it("fails cleanly on a file that does not exist, and does not make it", function()
    local f = H.path()
    for _, args in ipairs({{"get", "a"}, {"del", "a"}, {"list"}}) do
      local status, out, err = kv(f, table.unpack(args))
      assert.equal(1, status, args[1])
      assert.equal("", out)
      assert.matches("no such file", err, 1, true)
    end
    assert.is_false(H.exists(f))
  end)

  it("lists a mappedpages file with no store in it as empty, and gets nothing from it", function()
    local p, f = H.create()
    p:close()
    assert.equal("", ok(f, "list"))
    assert.equal(1, (kv(f, "get", "a")))
  end)

  describe("list", function()
    local f
    local keys = {"a", "ab", "abc", "ac", "a\255", "a\255\255", "a\255\255x", "b", "b\0",
                  "\255", "\255\255", "\255\255\1"}

    before_each(function()
      f = H.path()
      local lines = {}
      for i, k in ipairs(keys) do lines[i] = k .. "\t" .. i end
      ok(f, "import", tsv(lines))
    end)

    -- The key<TAB>value lines of every key starting with prefix, in byte order.
    local function expect(prefix)
      local want = {}
      for i, k in ipairs(keys) do
        if k:sub(1, #prefix) == prefix then want[#want + 1] = {k, i} end
      end
      table.sort(want, function(x, y) return x[1] < y[1] end)
      local out = {}
      for i, kvp in ipairs(want) do out[i] = kvp[1] .. "\t" .. kvp[2] .. "\n" end
      return table.concat(out)
    end

    it("prints every key with the prefix, in order, as key<TAB>value lines", function()
      assert.equal("ab\t2\nabc\t3\n", ok(f, "list", "ab"))
      assert.equal(expect("a"), ok(f, "list", "a"))
      assert.equal("abc\t3\n", ok(f, "list", "abc"))
      assert.equal("b\t8\nb\0\t9\n", ok(f, "list", "b"))
    end)

    it("prints every key for an empty prefix or none", function()
      assert.equal(expect(""), ok(f, "list", ""))
      assert.equal(expect(""), ok(f, "list"))
      assert.equal(#keys, select(2, ok(f, "list"):gsub("\n", "")))
    end)

    it("handles prefixes ending in \\255 and prefixes of \\255 bytes only", function()
      assert.equal("a\255\t5\na\255\255\t6\na\255\255x\t7\n", ok(f, "list", "a\255"))
      assert.equal("a\255\255\t6\na\255\255x\t7\n", ok(f, "list", "a\255\255"))
      assert.equal(expect("\255"), ok(f, "list", "\255"))
      assert.equal("\255\255\t11\n\255\255\1\t12\n", ok(f, "list", "\255\255"))
      assert.equal("", ok(f, "list", "\255\255\255"))
    end)

    it("prints nothing for a prefix no key has", function()
      assert.equal("", ok(f, "list", "abd"))
      assert.equal("", ok(f, "list", "0"))
      assert.equal("", ok(f, "list", "c"))
    end)
  end)

  describe("import", function()
    it("stores every line in one transaction, values keeping their tabs", function()
      local f = H.path()
      ok(f, "put", "old", "x")
      local before = txn_and_check(f)
      ok(f, "import", tsv({"k1\tv1", "k2\tv2\twith a tab", "old\treplaced", "k3\t"}))
      assert.equal(before + 1, txn_and_check(f))
      assert.equal("k1\tv1\nk2\tv2\twith a tab\nk3\t\nold\treplaced\n", ok(f, "list"))
    end)

    it("imports nothing when a line is malformed, naming its line number", function()
      local f = H.path()
      ok(f, "import", tsv({"keep\t1", "also\t2"}))
      local before, listed = txn_and_check(f), ok(f, "list")
      local bad = {
        {{"a\t1", "b\t2", "no tab here", "c\t3"}, ":3: expected key<TAB>value"},
        {{"a\t1", "\tempty key"}, ":2: a key is 1 to 1337 bytes (got 0)"},
        {{("k"):rep(1338) .. "\tv"}, ":1: a key is 1 to 1337 bytes (got 1338)"},
        {{"a\t1", "keep\tchanged", ""}, ":3: expected key<TAB>value"},
      }
      for _, case in ipairs(bad) do
        local status, out, err = kv(f, "import", tsv(case[1]))
        assert.equal(1, status, err)
        assert.equal("", out)
        assert.matches(case[2], err, 1, true)
        assert.matches("nothing imported", err, 1, true)
        assert.equal(listed, ok(f, "list"))
        assert.equal(before, txn_and_check(f), "no transaction was committed")
      end
    end)

    it("makes a new file, and leaves it empty when a line is malformed", function()
      local f = H.path()
      ok(f, "import", tsv({"x\t1"}))
      assert.equal("x\t1\n", ok(f, "list"))
      local g = H.path()
      assert.equal(1, (kv(g, "import", tsv({"x\t1", "y"}))))
      assert.equal("", ok(g, "list"))
    end)

    it("fails cleanly on an input file that cannot be read", function()
      local f = H.path()
      ok(f, "put", "a", "1")
      local status, _, err = kv(f, "import", H.path("missing.tsv"))
      assert.equal(1, status)
      assert.matches("missing.tsv", err, 1, true)
      assert.equal("a\t1\n", ok(f, "list"))
    end)
  end)

  it("prints the usage on stderr and exits 2 for a bad command line", function()
    local f = H.path()
    for _, args in ipairs({{}, {f}, {f, "nope"}, {f, "put", "k"}, {f, "put", "k", "v", "w"},
                           {f, "get"}, {f, "get", "a", "b"}, {f, "del"}, {f, "list", "a", "b"},
                           {f, "import"}}) do
      local status, out, err = kv(table.unpack(args))
      assert.equal(2, status, table.concat(args, " "))
      assert.equal("", out)
      assert.matches("^usage: lua5.4 examples/kv.lua FILE put KEY VALUE\n", err)
    end
    assert.is_false(H.exists(f), "a usage error touches no file")
  end)

  it("is under 150 lines", function()
    local n = select(2, H.read_file("examples/kv.lua"):gsub("\n", ""))
    assert.is_true(n < 150, n .. " lines")
  end)
end)
