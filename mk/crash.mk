# mk/crash.mk -- the long crash simulations, included by the Makefile.
#
#   make test-crash    run test/crash_sim over CRASH_SEEDS seeds: at least
#                      20,000 crash images (about 40,000 with the defaults),
#                      then print the totals; fails on any violation, and,
#                      with readers (CRASH_READERS, 0 to 2), when no image
#                      had held pages
#
# The CI runs a short form through spec/09-crash_spec.lua.  The binary is
# $(BUILD)/test/crash_sim, built by the Makefile's rule for test/*.c (the
# core compiled with -DMP_TEST_FANOUT=8).  Override on the command line, e.g.
#   make test-crash CRASH_SEED=1000 CRASH_SEEDS=50
#   make test-crash BUILD=build-asan CFLAGS='...'   (a sanitizer build)
# A failure prints the seed, barrier and image with the command that
# replays it (crash_sim -r BARRIER:IMAGE DIR SEED OPS IMAGES), and keeps
# the log and the failing images in the temporary directory it names.

CRASH_SEED   ?= 1
CRASH_SEEDS  ?= 8
CRASH_OPS    ?= 300
CRASH_IMAGES ?= 16
CRASH_GROW   ?= 20000
CRASH_READERS ?= 2

.PHONY: test-crash
test-crash: $(BUILD)/test/crash_sim
	@dir=$$(mktemp -d) && \
	$(BUILD)/test/crash_sim -n $(CRASH_SEEDS) -g $(CRASH_GROW) -R $(CRASH_READERS) "$$dir" \
	  $(CRASH_SEED) $(CRASH_OPS) $(CRASH_IMAGES) > "$$dir/log" 2>&1; rc=$$?; \
	cat "$$dir/log"; \
	images=$$(sed -n 's/^crash_sim: images checked \([0-9]*\),.*/\1/p' "$$dir/log"); \
	if [ "$$rc" = 0 ] && [ "$${images:-0}" -lt 20000 ]; then \
	  echo "test-crash: only $${images:-0} images checked (want at least 20000)" >&2; rc=1; \
	fi; \
	held=$$(sed -n 's/^crash_sim: .*images with held pages \([0-9]*\) .*/\1/p' "$$dir/log"); \
	if [ "$$rc" = 0 ] && [ "$(CRASH_READERS)" != 0 ] && [ "$${held:-0}" = 0 ]; then \
	  echo "test-crash: no image had held pages" >&2; rc=1; \
	fi; \
	if [ "$$rc" = 0 ]; then rm -rf "$$dir"; \
	else echo "test-crash: FAILED; log and images kept in $$dir" >&2; fi; \
	exit $$rc

# ---- the Lua layer -------------------------------------------------------
#
#   make test-crash-lua   run spec/crash_lua.lua (spec/crash_harness.lua)
#                         over CRASH_LUA_SEEDS seeds of every available
#                         subject (the core through the binding, and each Lua
#                         module present: catalog, slab, examples): at least
#                         20,000 crash images, then the totals; fails on any
#                         violation
#
# The CI runs a short form through spec/16-lua_crash_spec.lua.  It loads
# $(BUILD)/mappedpages/core.so (core._barrier_hook is test-only, in every
# build).  Override on the command line, e.g.
#   make test-crash-lua CRASH_LUA_SEED=100 CRASH_LUA_SEEDS=20 CRASH_LUA_SUBJECTS=catalog
# A failure prints the subject, seed, barrier and image with the command
# that replays it (spec/crash_lua.lua -s SUBJECT -r BARRIER:IMAGE DIR SEED
# STEPS IMAGES), and keeps the log and the failing images in the temporary
# directory it names (on /dev/shm when there is one).

CRASH_LUA_SEED     ?= 1
CRASH_LUA_SEEDS    ?= 6
CRASH_LUA_STEPS    ?= 150
CRASH_LUA_IMAGES   ?= 16
CRASH_LUA_SUBJECTS ?=

.PHONY: test-crash-lua
test-crash-lua: deps $(MODULE)
	@dir=$$(mktemp -d /dev/shm/mp-crash-lua.XXXXXX 2>/dev/null || mktemp -d) && \
	MP_BUILD=$(BUILD) $(LUA) spec/crash_lua.lua -n $(CRASH_LUA_SEEDS) \
	  $(if $(CRASH_LUA_SUBJECTS),-s $(CRASH_LUA_SUBJECTS)) "$$dir" \
	  $(CRASH_LUA_SEED) $(CRASH_LUA_STEPS) $(CRASH_LUA_IMAGES) > "$$dir/log" 2>&1; rc=$$?; \
	cat "$$dir/log"; \
	images=$$(sed -n 's/^crash_lua: images checked \([0-9]*\),.*/\1/p' "$$dir/log"); \
	if [ "$$rc" = 0 ] && [ "$${images:-0}" -lt 20000 ]; then \
	  echo "test-crash-lua: only $${images:-0} images checked (want at least 20000)" >&2; rc=1; \
	fi; \
	if [ "$$rc" = 0 ]; then rm -rf "$$dir"; \
	else echo "test-crash-lua: FAILED; log and images kept in $$dir" >&2; fi; \
	exit $$rc
