-- spec/34-c_example: examples/hello.c, the README's C example, builds with
-- the warnings the project uses and prints what it promises.

local H = require "helpers"

local sh = H.sh

describe("examples/hello.c", function()
  after_each(function() H.cleanup() end)

  it("builds against the C core alone and saves and reads back its counter", function()
    if sh("command -v cc") ~= 0 then return pending("no C compiler") end
    local core = {}
    local _, list = sh("ls csrc/*.c")
    for name in list:gmatch("[^\n]+") do
      if not name:match("/lua_[^/]*%.c$") then core[#core + 1] = name end
    end
    local dir = H.dir()
    local exe = dir .. "/hello"
    local status, out = sh(("cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Icsrc -o %s examples/hello.c %s")
                           :format(H.shell_quote(exe), table.concat(core, " ")))
    assert.equal(0, status, out)
    local path = dir .. "/hello.mp"
    status, out = sh(H.shell_quote(exe) .. " " .. H.shell_quote(path))
    assert.equal(0, status, out)
    assert.equal("root 1 -> protected page 0 holds 42\n", out)
    assert.is_false(H.exists(path), "it removes its file")
  end)
end)
