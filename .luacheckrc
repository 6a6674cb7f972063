-- .luacheckrc -- `make lint` runs luacheck over lua spec examples bench.
std = "lua54"
exclude_files = {"build/**", "build-asan/**"}

files["spec"] = {std = "+busted"}
