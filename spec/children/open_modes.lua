-- spec/children/open_modes.lua -- a child of spec/14-hostile_files_spec.lua
-- (open_special): open A.path once per mode in A.modes (true: read-only)
-- and print "ok" or the error code of each, comma-separated.
local mp = require "mappedpages"
local A = dofile(arg[1])
local out = {}
for _, ro in ipairs(A.modes) do
  local p, msg, code = mp.open(A.path, { readonly = ro })
  if p then out[#out + 1] = "ok" p:close()
  else
    assert(p == nil and type(msg) == "string" and #msg > 0 and type(code) == "string")
    out[#out + 1] = code
  end
end
io.write(table.concat(out, ","), "\n")
