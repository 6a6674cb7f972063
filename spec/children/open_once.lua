-- spec/children/open_once.lua -- H.child_open (spec/helpers.lua): open A.path
-- (read-only with A.readonly) and print "ok" or the error code.
local mp = require "mappedpages"
local A = dofile(arg[1])
local p, _, code = mp.open(A.path, A.readonly and { readonly = true } or nil)
if p then io.write("ok") p:close() else io.write(tostring(code)) end
