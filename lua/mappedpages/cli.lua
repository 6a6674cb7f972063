--- mappedpages.cli: the `mappedpages` command (bin/mappedpages runs it).
--
--     mappedpages info FILE             what the file holds
--     mappedpages check FILE            every checksum, page and object
--     mappedpages dump FILE ID [--protected]   a page in hex
--     mappedpages map FILE [--svg OUT] [--width N] [--colour | --plain]
--     mappedpages copy FILE OUT         a consistent copy, beside a writer
--
-- main(args) -> exit status: 0 done (check: clean), 1 check found
-- problems (or dump's page does not exist), 2 the file cannot be opened,
-- the output cannot be written (map --svg, copy) or the command line is
-- wrong. Errors go to stderr, one line each, never a traceback. The files
-- are opened read-only.
-- @module mappedpages.cli

local argparse = require "argparse"
local mp = require "mappedpages"
local inspect = require "mappedpages.inspect"

local ipairs, pcall, tostring, type = ipairs, pcall, tostring, type
local format = string.format
local stdout, stderr = io.stdout, io.stderr

local M = {}

local function out(...) stdout:write(format(...), "\n") end
local function err(...) stderr:write("mappedpages: ", format(...), "\n") end

local function parser()
  local p = argparse("mappedpages", "Inspect a mappedpages file (opened read-only).")
  p:command_target("command")
  p:require_command(true)
  local info = p:command("info", "Page counts, the transaction, the root and every named object.")
  info:argument("file", "The file.")
  local check = p:command("check", "Verify every checksum, every page's accounting and each "
                          .. "named object. Exit 0 when clean, 1 with each problem listed, "
                          .. "2 when the file cannot be opened.")
  check:argument("file", "The file.")
  local dump = p:command("dump", "A page in hex: 16 bytes a line, then as text.")
  dump:argument("file", "The file.")
  dump:argument("id", "The page id (a protected page's id with --protected)."):convert(function(s)
    local n = tonumber(s)
    n = n and math.tointeger(n)
    if not n or n < 0 then return nil, format("page id must be a non-negative integer (got %q)", s) end
    return n
  end)
  dump:flag("--protected", "ID is a protected page's id.")
  local map = p:command("map", "A picture of the file: a cell per page (or per run of pages), "
                        .. "showing what each is and which named object owns it, with a legend. "
                        .. "In colour on a terminal.")
  map:argument("file", "The file.")
  map:option("--svg", "Write the picture as a standalone SVG file to OUT instead.")
    :argname("<out>")
  map:option("--width", "Cells per row (default 64)."):convert(function(s)
    local n = tonumber(s)
    n = n and math.tointeger(n)
    if not n or n < 1 or n > 1024 then return nil, format("width must be 1 to 1024 (got %q)", s) end
    return n
  end)
  map:mutex(map:flag("--colour", "ANSI colours even when the output is not a terminal."),
            map:flag("--plain", "No colours, even on a terminal."))
  local copy = p:command("copy", "Copy the file's newest commit to OUT, a new file (it must not "
                         .. "exist), while a writer may go on committing: pages held for readers "
                         .. "are free in the copy.")
  copy:argument("file", "The file.")
  copy:argument("out", "The new file.")
  return p
end

-- Open FILE read-only, or say why not: the pager, or nil (reported).
local function open(path)
  local pager, msg, code = mp.open(path, {readonly = true})
  if not pager then
    -- the core's messages name the path already
    if not tostring(msg):find(path, 1, true) then msg = path .. ": " .. tostring(msg) end
    err("%s%s", msg, code and format(" (%s)", code) or "")
    return nil
  end
  return pager
end

local function plural(n, word) return format("%d %s%s", n, word, n == 1 and "" or "s") end

local function stats_line(st)
  local parts = {}
  if st.objects then parts[#parts + 1] = plural(st.objects, "object") end
  if st.bytes then parts[#parts + 1] = format("%d bytes", st.bytes) end
  if st.efficiency then parts[#parts + 1] = format("efficiency %.2f", st.efficiency) end
  return table.concat(parts, ", ")
end

-- Whether standard output is a terminal (plain Lua cannot ask; a shell's
-- `test -t 1` inherits our stdout).
local function stdout_is_terminal()
  return os.execute("test -t 1") == true
end

local commands = {}

function commands.info(a)
  local pager = open(a.file)
  if not pager then return 2 end
  local s = inspect.summary(pager)
  out("file         %s (%d bytes)", s.path, s.file_size)
  out("page size    %d", s.page_size)
  out("pages        %d: %d free, %d regular, %d protected (%d holding contents), %d metadata",
      s.page_count, s.free_count, s.regular_count, s.protected_count, s.protected_pages,
      s.system_count)
  out("transaction  %d (root slot %d%s)", s.txn, s.root_slot,
      s.recovered and ", recovered: the newest root was damaged" or "")
  -- (this command is a reader itself: its snapshot is among those held)
  local snaps = pager:readers()
  if #snaps > 1 or s.held_count > 0 then
    out("readers      snapshots held: %s (this command's: %d); %d page%s held for readers",
        table.concat(snaps, ", "), s.txn, s.held_count, s.held_count == 1 and "" or "s")
  end
  out("root         0x%016x%s", s.root, s.catalog == nil
      and format(" (the catalog, at protected page %d)", s.root & 0xFFFFFFFF) or "")
  if s.catalog == "empty" then
    out("objects      none (no catalog)")
  elseif s.catalog then
    out("objects      none known: %s", s.catalog)
  else
    out("objects      %d", #s.objects)
    for _, o in ipairs(s.objects) do
      local what
      if o.stats then
        what = format("%d page%s, %s", o.stats.pages, o.stats.pages == 1 and "" or "s",
                      stats_line(o.stats))
      elseif o.error then
        what = "does not open: " .. tostring(o.error)
      else
        what = "a kind this tool does not know"
      end
      out("  %-20s %-16s anchor %-6d %s", format("%q", o.name), o.kind, o.pid, what)
    end
  end
  pager:close()
  return 0
end

function commands.check(a)
  local pager = open(a.file)
  if not pager then return 2 end
  local progress
  if stdout_is_terminal() then
    progress = function(done, total, what)
      local bar = math.floor(20 * done / total)
      stdout:write(format("\r\27[Kchecking [%s%s] %d/%d %s", ("#"):rep(bar), (" "):rep(20 - bar),
                          done, total, done == total and "" or what))
      if done == total then stdout:write("\r\27[K") end
      stdout:flush()
    end
  end
  local ok, problems = inspect.check(pager, {progress = progress})
  pager:close()
  if ok then
    out("%s: clean", a.file)
    return 0
  end
  for _, p in ipairs(problems) do out("%s: %s", a.file, p) end
  out("%s: %s", a.file, plural(#problems, "problem"))
  return 1
end

function commands.dump(a)
  local pager = open(a.file)
  if not pager then return 2 end
  local ok, v = pcall(a.protected and pager.protected or pager.page, pager, a.id)
  if not ok then
    -- "bad argument #2 to 'page' (page 99 is out of range ...)": the reason
    local why = tostring(v)
    why = why:match("^bad argument #%d+ to '[^']*' %((.*)%)$") or why
    err("%s: %s page %d: %s", a.file, a.protected and "protected" or "regular", a.id, why)
    pager:close()
    return 1
  end
  out("%s page %d, %d bytes", a.protected and "protected" or "regular", a.id, #v)
  out("%s", inspect.hexdump(v:read()))
  pager:close()
  return 0
end

function commands.map(a)
  local pager = open(a.file)
  if not pager then return 2 end
  if a.svg then
    local svg = inspect.map(pager, {svg = true, width = a.width})
    pager:close()
    local f, msg = io.open(a.svg, "w")
    if not f then
      err("%s", msg)
      return 2
    end
    local ok, werr = f:write(svg)
    f:close()
    if not ok then
      err("%s: %s", a.svg, werr)
      return 2
    end
    out("%s: the picture of %s", a.svg, a.file)
    return 0
  end
  local colour = a.colour or (not a.plain and stdout_is_terminal())
  out("%s", inspect.map(pager, {width = a.width, colour = colour}))
  pager:close()
  return 0
end

function commands.copy(a)
  local pager = open(a.file)
  if not pager then return 2 end
  local i = pager:info()
  local ok, msg, code = pager:copy(a.out)
  pager:close()
  if not ok then
    err("%s%s", msg, code and format(" (%s)", code) or "")
    return 2
  end
  out("%s: a copy of %s at transaction %d (%s of %d bytes)", a.out, a.file, i.txn,
      plural(i.page_count, "page"), i.page_size)
  return 0
end

--- Run the command line args (a list of strings): the exit status.
function M.main(args)
  local p = parser()
  local ok, a = p:pparse(args)
  if not ok then
    stderr:write(p:get_usage(), "\n\n")
    err("%s", a)
    return 2
  end
  local done, status = pcall(commands[a.command], a)
  if not done then
    err("%s", type(status) == "string" and status or tostring(status))
    return 2
  end
  return status
end

return M
