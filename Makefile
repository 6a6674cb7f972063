# Makefile -- build, test and try mappedpages.
#
#   make              build build/libmappedpages.a and build/mappedpages/core.so
#   make test         run the busted specs against the in-tree build
#   make test-asan    the same specs against an ASan+UBSan build (build-asan/)
#   make demo         run examples/quickstart.lua
#   make repl         lua5.4 -i with `mp = require "mappedpages"` loaded
#   make bench        run bench/*.lua, bench/*.c, bench/*.sh (figures, not pass/fail);
#                     COLD=1 lets open_time drop the whole page cache (as root)
#   make rock         a source rock of HEAD (mappedpages-scm-1.src.rock), installable offline
#   make results      write bench/RESULTS.md and bench/results.svg from bench/lib/results.lua
#   make test-crash   the long crash simulation (mk/crash.mk, test/crash_sim.c)
#   make test-crash-lua   the long crash simulation of the Lua layer
#                     (mk/crash.mk, spec/crash_lua.lua): >= 20,000 images
#   make lint         luacheck lua spec examples bench fuzz
#   make deps         install missing Debian packages (as root), else say how
#   make check-rockspec   the rockspec lists every csrc/*.c and lua module
#   make clean
#
# Variables worth overriding on the command line: CC, CFLAGS, LDFLAGS,
# LUA_CFLAGS (Lua headers), BUSTED_ARGS (e.g. BUSTED_ARGS='-o TAP').

.DEFAULT_GOAL := all

LUA      = lua5.4
CC       = cc
AR       = ar
BUILD    = build
ROCKSPEC = mappedpages-scm-1.rockspec

# Language, optimisation and warnings (kept at zero: -Werror).
CFLAGS    = -std=c11 -D_GNU_SOURCE -O2 -g -fPIC -Wall -Wextra -Werror -Wshadow \
            -Wcast-qual -Wmissing-prototypes -Wstrict-prototypes \
            -Wpointer-arith -Wundef -Wformat=2 -Wvla
LDFLAGS   =
LDLIBS    =
# What the code needs whatever CFLAGS says, added when CFLAGS lacks it (so
# `make CFLAGS=-O0` still builds a loadable module).
MP_CFLAGS = $(filter-out $(CFLAGS),-std=c11 -D_GNU_SOURCE -fPIC)
# Header dependencies: each object gets a .d file listing the headers it
# read; -MP adds empty rules so a deleted header does not break the build.
DEPFLAGS  = -MMD -MP
# Lua headers, for the binding only.  Recursive (=) on purpose: evaluated
# when first compiling, i.e. after `deps` may have installed liblua5.4-dev.
LUA_CFLAGS = $(shell pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)

# ---- sources -------------------------------------------------------------

# The core is every csrc/*.c except the Lua binding (csrc/lua_*.c); it must
# build without Lua.  Wildcards, so a new file is picked up by itself (and
# by check-rockspec, which insists the rockspec lists it too).
CORE_SRC  = $(filter-out csrc/lua_%.c,$(wildcard csrc/*.c))
BIND_SRC  = $(wildcard csrc/lua_*.c)
CORE_OBJ  = $(CORE_SRC:csrc/%.c=$(BUILD)/obj/%.o)
BIND_OBJ  = $(BIND_SRC:csrc/%.c=$(BUILD)/obj/%.o)
LIB       = $(BUILD)/libmappedpages.a
MODULE    = $(BUILD)/mappedpages/core.so

BENCH_C   = $(wildcard bench/*.c)
BENCH_LUA = $(wildcard bench/*.lua)
BENCH_SH  = $(wildcard bench/*.sh)
BENCH_BIN = $(BENCH_C:bench/%.c=$(BUILD)/bench/%)

LUA_MODULES = $(sort $(shell find lua -name '*.lua' 2>/dev/null))

# Run Lua against the in-tree build.  The _5_4 variables take precedence
# over LUA_PATH/LUA_CPATH in lua5.4, so a user's own LUA_PATH_5_4 cannot
# shadow the in-tree module; ';;' keeps the default paths (lpeg etc.).
INTREE = LUA_PATH_5_4='lua/?.lua;lua/?/init.lua;;' LUA_CPATH_5_4='$(BUILD)/?.so;;'

# busted (Debian's lua-busted) is a Lua script whose #! runs plain `lua`,
# which may be 5.1 or missing.  .busted says lua = "lua5.4", which makes it
# re-exec itself through os.execute with its arguments joined unquoted.  We
# skip that hop and run it under lua5.4 directly: fewer processes under the
# sanitizer preload, no shell re-parsing of arguments.  The .busted file
# supplies ROOT, pattern, lpath and cpath; MP_BUILD picks the build dir.
BUSTED      = $(LUA) "$$(command -v busted)" --ignore-lua
BUSTED_ARGS =

# ---- Debian packages -----------------------------------------------------

# luarocks: `make rock` and spec/32, which installs the rock in a scratch tree
DEB_PACKAGES      = lua5.4 liblua5.4-dev lua-busted lua-lpeg lua-argparse luarocks
DEB_LINT_PACKAGES = lua-check
# The benchmarks' peers: SQLite from Lua through LuaDBI (bench/records.lua,
# heap.lua, btree.lua), LMDB and SQLite for the C peers (they dlopen the
# libraries and skip when one is missing), and strace and valgrind (the
# barrier and instruction counts of bench/*.sh).
DEB_BENCH_PACKAGES = lua-dbi-sqlite3 libsqlite3-0 liblmdb-dev strace valgrind

# $(call ensure_debs,PACKAGES): install the missing ones when root (no
# Recommends, and dpkg's progress kept off the terminal: errors still show),
# else print the apt-get line and fail.  Machines without dpkg are trusted
# to have them by other means.
define ensure_debs
@set -e; \
if ! command -v dpkg >/dev/null 2>&1; then exit 0; fi; \
missing=; \
for p in $(1); do \
  dpkg -s "$$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing="$$missing $$p"; \
done; \
if [ -n "$$missing" ]; then \
  if [ "$$(id -u)" = 0 ]; then \
    echo "deps: installing$$missing"; \
    apt-get update -qq; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends$$missing \
      >/dev/null; \
  else \
    echo "deps: missing Debian packages:$$missing; as root run:" >&2; \
    echo "  apt-get update && apt-get install -y --no-install-recommends$$missing" >&2; \
    exit 1; \
  fi; \
fi
endef

# ---- build ---------------------------------------------------------------

.PHONY: all lib module tests deps test test-asan demo repl bench results rock lint \
        check-rockspec clean

all: deps $(LIB) $(MODULE)
lib: $(LIB)
module: $(MODULE)

deps:
	$(call ensure_debs,$(DEB_PACKAGES))

# Objects wait for `deps` (order-only: checked every run, never a reason
# to recompile), so a fresh machine has the headers before the first cc.
$(BUILD)/obj/%.o: csrc/%.c | deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(MP_CFLAGS) $(DEPFLAGS) -c -o $@ $<

$(BIND_OBJ): MP_CFLAGS += $(LUA_CFLAGS)

$(LIB): $(CORE_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	$(AR) rcs $@ $^

# Not linked against liblua: the interpreter that loads the module provides
# the lua_* symbols (linking a second copy of Lua would be a bug).
$(MODULE): $(CORE_OBJ) $(BIND_OBJ)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(MP_CFLAGS) -shared $(LDFLAGS) -o $@ $^ $(LDLIBS)

# C test programs (test/*.c) that the specs run.  They compile the core
# themselves with tiny index and page-table nodes (-DMP_TEST_FANOUT=8), so
# small files reach every tree height: a different geometry, so not the
# library's objects.
TEST_BIN = $(patsubst test/%.c,$(BUILD)/test/%,$(wildcard test/*.c))
$(BUILD)/test/%: test/%.c $(CORE_SRC) $(wildcard csrc/*.h) | deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(MP_CFLAGS) -DMP_TEST_FANOUT=8 -Icsrc $(LDFLAGS) -o $@ $< $(CORE_SRC) $(LDLIBS)
tests: $(TEST_BIN)

-include $(wildcard $(BUILD)/obj/*.d $(BUILD)/bench/*.d)

# Long-running checks live in their own fragments: mk/crash.mk (make
# test-crash) and mk/fuzz.mk (make fuzz).
include $(wildcard mk/*.mk)

# ---- tests ---------------------------------------------------------------

test: deps all tests check-rockspec
	MP_BUILD=$(BUILD) $(BUSTED) $(BUSTED_ARGS)

# The sanitizer build lives in its own directory with its own flags.
ASAN_BUILD  = build-asan
ASAN_CFLAGS = $(CFLAGS) -O1 -fsanitize=address,undefined \
              -fno-sanitize-recover=all -fno-omit-frame-pointer
# lua5.4 is not instrumented, so the sanitizer runtimes must be preloaded
# (ASan insists on being first in the library list).  Leak checking would
# only report the interpreter's and busted's own allocations at exit.
ASAN_ENV = LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
           ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 \
           UBSAN_OPTIONS=print_stacktrace=1

test-asan: deps
	$(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) CFLAGS='$(ASAN_CFLAGS)' module tests
	$(ASAN_ENV) MP_BUILD=$(ASAN_BUILD) $(BUSTED) $(BUSTED_ARGS)

# builtin rockspecs cannot glob, so the source and module lists in the
# rockspec are kept in sync with the tree by this check (run by `make test`).
RS_C   = $(sort $(subst ",,$(shell grep -o '"csrc/[^"]*\.c"' $(ROCKSPEC))))
RS_LUA = $(sort $(subst ",,$(shell grep -o '"lua/[^"]*\.lua"' $(ROCKSPEC))))
check-rockspec:
	@ok=1; \
	for f in $(filter-out $(RS_C),$(sort $(wildcard csrc/*.c))) \
	         $(filter-out $(RS_LUA),$(LUA_MODULES)); do \
	  echo "check-rockspec: $$f is not listed in $(ROCKSPEC)" >&2; ok=; \
	done; \
	for f in $(filter-out $(sort $(wildcard csrc/*.c)),$(RS_C)) \
	         $(filter-out $(LUA_MODULES),$(RS_LUA)); do \
	  echo "check-rockspec: $(ROCKSPEC) lists $$f, which does not exist" >&2; ok=; \
	done; \
	test -n "$$ok" && echo "check-rockspec: $(ROCKSPEC) matches csrc/ and lua/"

lint:
	$(call ensure_debs,$(DEB_LINT_PACKAGES))
	luacheck $(wildcard lua spec examples bench fuzz) bin/mappedpages

# ---- trying it -----------------------------------------------------------

demo: deps all
	$(INTREE) $(LUA) examples/quickstart.lua

repl: deps all
	@$(INTREE) $(LUA) -i examples/repl.lua

# C benchmarks link the static library, as a C user would.
$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(MP_CFLAGS) $(DEPFLAGS) -Icsrc $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS) -lm

# A source rock of the committed tree (git archive HEAD) in the current
# directory: luarocks --lua-version 5.4 install --deps-mode=none
# ./mappedpages-scm-1.src.rock installs it offline, command included.  The
# rockspec's source is "." (the checkout); the rock's copy points at the
# archive it carries instead.
ROCK     = mappedpages-scm-1.src.rock
ROCK_DIR = $(BUILD)/rock
ROCK_OUT = .
rock: deps
	@git rev-parse --git-dir >/dev/null 2>&1 || { echo "rock: not a git checkout (make rock packs git archive HEAD)" >&2; exit 1; }
	rm -rf $(ROCK_DIR) && mkdir -p $(ROCK_DIR)
	git archive --format=tar.gz --prefix=mappedpages/ -o $(ROCK_DIR)/mappedpages-scm-1.tar.gz HEAD
	sed 's|^   url = "\.",$$|   url = "file://$(abspath $(ROCK_DIR))/mappedpages-scm-1.tar.gz",\n   dir = "mappedpages",|' \
	  $(ROCKSPEC) > $(ROCK_DIR)/$(ROCKSPEC)
	grep -q 'dir = "mappedpages"' $(ROCK_DIR)/$(ROCKSPEC)
	cd $(ROCK_DIR) && luarocks --lua-version 5.4 pack $(ROCKSPEC) >/dev/null
	mv $(ROCK_DIR)/$(ROCK) $(ROCK_OUT)/$(ROCK)
	@echo "rock: $(ROCK_OUT)/$(ROCK)"

# bench/RESULTS.md and its plot from the figures in bench/lib/results.lua
results:
	$(LUA) bench/lib/write_results.lua bench

bench: deps all $(BENCH_BIN)
	$(call ensure_debs,$(DEB_BENCH_PACKAGES))
	@set -e; \
	for f in $(BENCH_LUA); do echo "== $$f"; $(INTREE) $(LUA) $$f; done; \
	for b in $(BENCH_BIN); do echo "== $$b"; \
	  case $$b in */open_time) $$b $(if $(COLD),--drop-caches);; *) $$b;; esac; done; \
	for f in $(BENCH_SH); do echo "== $$f"; BUILD=$(BUILD) sh $$f; done; \
	echo "== durable commits, side by side, for bench/RESULTS.md"; \
	$(LUA) bench/lib/collect_durable.lua $(BUILD); \
	$(LUA) bench/lib/write_results.lua bench

# csrc/*.o and mappedpages/ are what `luarocks make` leaves in the tree.
clean:
	rm -rf $(BUILD) $(ASAN_BUILD) mappedpages
	rm -f csrc/*.o
