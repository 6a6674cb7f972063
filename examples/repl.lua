-- examples/repl.lua -- what `make repl` runs before its prompt: loads the
-- module as the global `mp` and prints lines to try. Each line works on
-- every run, also when /tmp/try.mp is left from an earlier session.
-- By hand, from the repository root after `make`:
--   LUA_PATH_5_4='lua/?.lua;lua/?/init.lua;;' LUA_CPATH_5_4='build/?.so;;' \
--     lua5.4 -i examples/repl.lua

mp = require "mappedpages"   -- luacheck: ignore 111 (the REPL's global)

print([[
mp = require "mappedpages" is loaded. Try:
  p = mp.open("/tmp/try.mp") or assert(mp.create("/tmp/try.mp")); print(p)
  s = mp.slab.open(p, "notes"); r = s:alloc(5); s:write(r, 0, "hello"); print(s, s:read(r))
  print(p:info().commits, "commits so far")
  print(p:map())                        -- a picture of the file
  p:close(); os.remove("/tmp/try.mp")   -- to start over]])
