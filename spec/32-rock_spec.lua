-- spec/32-rock: `make rock` writes a source rock that LuaRocks installs
-- offline into a scratch tree, and the installed module and command work
-- from there, with nothing of the checkout on the paths.

local H = require "helpers"

local sh = H.sh

describe("make rock", function()
  after_each(function() H.cleanup() end)

  it("makes a source rock that installs offline, command included", function()
    if sh("command -v luarocks") ~= 0 then return pending("luarocks is not installed") end
    if sh("git rev-parse --git-dir") ~= 0 then return pending("not a git checkout") end
    local dir = H.dir()
    local q = H.shell_quote
    local status, out = sh("make -s rock ROCK_OUT=" .. q(dir))
    assert.equal(0, status, out)
    local rock = dir .. "/mappedpages-scm-1.src.rock"
    assert.is_true(H.exists(rock), out)
    local tree = dir .. "/tree"
    status, out = sh(("luarocks --lua-version 5.4 install --deps-mode=none --tree %s %s"):format(q(tree), q(rock)))
    assert.equal(0, status, out)
    assert.matches("is now installed", out, 1, true)
    -- a file to look at, made by the checkout's build
    local p, path = H.create()
    local s = assert(H.mp.slab.open(p, "notes"))
    s:alloc(10)
    p:close()
    -- only the tree's paths (and the system's, for lpeg and argparse)
    local env = ("cd %s && eval \"$(luarocks --lua-version 5.4 path --tree %s)\" && "
                 .. "export LUA_PATH_5_4=\"$LUA_PATH\" LUA_CPATH_5_4=\"$LUA_CPATH\" && "
                 .. "unset LUA_PATH LUA_CPATH; "):format(q(dir), q(tree))
    status, out = sh(env .. q(tree .. "/bin/mappedpages") .. " info " .. q(path))
    assert.equal(0, status, out)
    assert.matches('"notes"%s+slab', out)
    status, out = sh(env .. "lua5.4 -e 'local mp = require \"mappedpages\"; "
                     .. "print(package.searchpath(\"mappedpages\", package.path), mp.slab ~= nil)'")
    assert.equal(0, status, out)
    assert.matches("^" .. tree:gsub("%p", "%%%0") .. "/.-init%.lua\ttrue", out)
  end)
end)
