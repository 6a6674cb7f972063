-- mappedpages-scm-1.rockspec -- install the rock from a checkout, offline:
--     luarocks --lua-version 5.4 make --deps-mode=none
-- The "builtin" backend cannot glob: `make check-rockspec` (part of
-- `make test`) fails when the lists below and csrc/*.c, lua/**/*.lua differ.
rockspec_format = "3.0"
package = "mappedpages"
version = "scm-1"

source = {
   -- `luarocks make` builds the checkout it runs in and never fetches, so
   -- the URL is not used; there is no published repository to name yet.
   -- "." says what is true: the source is this directory.  (`luarocks
   -- build`/`download`, which fetch, need a real URL here.)
   url = ".",
}

description = {
   summary = "Crash-consistent, memory-mapped, single-file page store for Lua 5.4",
   license = "MIT",
   detailed = [[
A file of fixed-size pages, memory-mapped, with allocation, in-place reads
and writes, and protected pages whose updates are atomic and survive power
loss. Every commit issues one durability barrier. A C core with its own API
(csrc/mappedpages.h) and a Lua 5.4 binding, plus pure-Lua layers on top.
]],
}

dependencies = {
   "lua >= 5.4",
   "lpeg >= 1.0",     -- mappedpages.schema's grammar (Debian: lua-lpeg)
   "argparse >= 0.7", -- the mappedpages command (Debian: lua-argparse)
}

build = {
   type = "builtin",
   modules = {
      -- The C core and the Lua binding (csrc/lua_*.c) in one module.  The
      -- compiler flags come from LuaRocks (-O2 -fPIC); builtin has no
      -- per-rock CFLAGS, so there is no -std=c11 here: gcc's and clang's
      -- default dialect (gnu17) accepts the C11 code.
      ["mappedpages.core"] = {
         sources = {
            "csrc/check.c",
            "csrc/commit.c",
            "csrc/copy.c",
            "csrc/crc32c.c",
            "csrc/error.c",
            "csrc/format.c",
            "csrc/fsm.c",
            "csrc/layout.c",
            "csrc/osfile.c",
            "csrc/pager.c",
            "csrc/ptable.c",
            "csrc/readers.c",
            "csrc/recover.c",
            -- the Lua binding
            "csrc/lua_binding.c",
            "csrc/lua_pack.c",
            "csrc/lua_pager.c",
            "csrc/lua_sorted.c",
            "csrc/lua_span.c",
            "csrc/lua_testhook.c",
            "csrc/lua_txn.c",
            "csrc/lua_util.c",
            "csrc/lua_view.c",
         },
         incdirs = { "csrc" },
         defines = { "_GNU_SOURCE" },
      },
      mappedpages = "lua/mappedpages/init.lua",
      ["mappedpages.access"] = "lua/mappedpages/access.lua",
      ["mappedpages.btree"] = "lua/mappedpages/btree.lua",
      ["mappedpages.btree_key"] = "lua/mappedpages/btree_key.lua",
      ["mappedpages.catalog"] = "lua/mappedpages/catalog.lua",
      ["mappedpages.cli"] = "lua/mappedpages/cli.lua",
      ["mappedpages.inspect"] = "lua/mappedpages/inspect.lua",
      ["mappedpages.heap"] = "lua/mappedpages/heap.lua",
      ["mappedpages.object"] = "lua/mappedpages/object.lua",
      ["mappedpages.records"] = "lua/mappedpages/records.lua",
      ["mappedpages.records_index"] = "lua/mappedpages/records_index.lua",
      ["mappedpages.schema"] = "lua/mappedpages/schema.lua",
      ["mappedpages.schema_codegen"] = "lua/mappedpages/schema_codegen.lua",
      ["mappedpages.slab"] = "lua/mappedpages/slab.lua",
   },
   -- the command: LuaRocks installs a wrapper that runs it with the
   -- rock's Lua and paths
   install = {
      bin = { mappedpages = "bin/mappedpages" },
   },
   copy_directories = { "docs" },
}

test = {
   type = "command",
   command = "make test",
}
