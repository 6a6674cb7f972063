-- bench/lib/reader_loop.lua -- one child process of bench/readers.lua.
-- It sits in bench/lib/ because `make bench` runs every bench/*.lua as a
-- benchmark; this one is started by readers.lua alone:
--
--   lua5.4 bench/lib/reader_loop.lua MODE PATH PID RUNFILE MAX_SECONDS
--
-- MODE "reader": opens PATH as a reader beside readers.lua's writer, says
-- "ready" on stdout, then in a tight loop `refresh()`es and reads the
-- first 8 bytes of protected page PID (the value the writer's commits
-- count up; it must never go back). MODE "burn": the same loop's shape
-- with no file at all, to tell the CPU the readers take on a 2-core
-- machine from what their refreshes do to the writer.
--
-- It stops when RUNFILE disappears (readers.lua removes it at the end of
-- a round; its cleanup removes the whole scratch directory on any exit,
-- Ctrl-C included) or after MAX_SECONDS of CPU time, whichever is first,
-- and prints "loops moves barriers": lookups done, how many of them saw a
-- newer commit than the one before, and the reader's durability barriers
-- (must be 0).

local mode, path, pid, runfile, max_s = arg[1], arg[2], tonumber(arg[3]), arg[4], tonumber(arg[5])
assert(mode == "reader" or mode == "burn", "reader_loop.lua: MODE is reader or burn")
local open, clock, write, flush = io.open, os.clock, io.write, io.flush

local BATCH = 64   -- lookups between two looks at RUNFILE (one open each)

local function running()
  local f = open(runfile)
  if not f then return false end
  f:close()
  return clock() < max_s
end

local loops, moves, barriers = 0, 0, 0
if mode == "reader" then
  local mp = require "mappedpages"
  local r = assert(mp.open(path, {readonly = true}))
  write("ready\n")
  flush()
  local last = -1
  while running() do
    for _ = 1, BATCH do
      assert(r:refresh())
      local v = r:protected(pid):unpack(0, "<i8")
      if v ~= last then
        if v < last then error(("reader went back: %d after %d"):format(v, last)) end
        moves, last = moves + 1, v
      end
    end
    loops = loops + BATCH
  end
  barriers = r:info().barriers
  r:close()
else
  write("ready\n")
  flush()
  local x = 0
  while running() do
    for i = 1, BATCH * 16 do x = (x + i) % 1000003 end
    loops = loops + BATCH
  end
  moves = x % 1   -- 0; keeps x live
end
write(("%d %d %d\n"):format(loops, moves, barriers))
