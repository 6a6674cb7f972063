-- spec/children/open_survives.lua -- H.assert_open_survives (spec/helpers.lua):
-- open the copy A.ro read-only and A.rw for writing, read every page, and
-- print "opened" or the error code of each, then "done".
local mp = require "mappedpages"
local A = dofile(arg[1])
for _, c in ipairs({ { A.ro, true }, { A.rw, false } }) do
  local p, _, code = mp.open(c[1], { readonly = c[2] })
  if p then
    for id in p:pages() do p:page(id):read() end
    p:info()
    p:close()
    io.write("opened ")
  else
    io.write(tostring(code), " ")
  end
end
io.write("done")
