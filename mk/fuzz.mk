# mk/fuzz.mk -- libFuzzer targets (fuzz/), included by the Makefile.
#
#   make fuzz            build build/fuzz/* and run each target for
#                        FUZZ_SECONDS (default 60), one process each
#   make fuzz-smoke      the same, FUZZ_SMOKE_SECONDS (default 10) each: for CI
#   make fuzz-regress    replay fuzz/regress/<target>/* through each target once
#                        (and fuzz_pack's seeds)
#   make fuzz-build      only build the targets
#   make fuzz-corpus     regenerate the seed corpus fuzz/corpus/ (make_corpus,
#                        make_pack_corpus.lua)
#   make fuzz-clean      remove build/fuzz/ (the working corpora too)
#
# Targets (fuzz/README.md):
#   fuzz_open            input = a whole file; open ro + rw, check, iterate,
#                        read every byte, mutate, commit, reopen
#   fuzz_open_fixed      input = patches to a valid image, checksums repaired
#   fuzz_ops             input = a sequence of API calls against a model
#   fuzz_open_fixed_f8, fuzz_ops_f8
#                        the same built with -DMP_TEST_FANOUT=8 (tiny index and
#                        page-table nodes: deep trees in small files)
#   fuzz_pack            input = a view:pack / view:unpack format, values and
#                        a buffer; csrc/lua_pack.c against string.pack/unpack
#
# Each run starts from build/fuzz/corpus/<target>/ (kept between runs, so
# coverage accumulates) plus the committed seeds fuzz/corpus/<set>/, never
# writing to the latter.  Findings go to build/fuzz/artifacts/<target>/; the
# log of a run is build/fuzz/<target>.log.  After each run the summary
# line shows executions, coverage (cov: edges, ft: features) and the corpus
# size; the run fails when any target found something.  To keep a finding:
# minimize it (build/fuzz/<target> -minimize_crash=1 -runs=10000 FILE),
# copy it to fuzz/regress/<target>/ and add a case to
# spec/10-fuzz_regress_spec.lua.
#
# Overridable: FUZZ_CC (clang), FUZZ_SECONDS, FUZZ_SMOKE_SECONDS,
# FUZZ_TARGETS (a subset, e.g. FUZZ_TARGETS=fuzz_ops), FUZZ_ARGS (extra
# libFuzzer flags, e.g. FUZZ_ARGS='-jobs=2 -workers=2').
#
# Needs clang with the libFuzzer and sanitizer runtimes: on Debian the
# packages clang and libclang-rt-dev (for clang 14 that is
# libclang-rt-14-dev).  `make fuzz` installs them as root, else prints the
# apt-get line and stops (ensure_debs, like `make deps`).

FUZZ_CC            = clang
FUZZ_SECONDS       = 60
FUZZ_SMOKE_SECONDS = 10
FUZZ_ARGS          =
FUZZ_DIR           = $(BUILD)/fuzz
FUZZ_DEB_PACKAGES  = clang libclang-rt-dev

FUZZ_CORE_SRC = $(filter-out csrc/lua_%.c,$(wildcard csrc/*.c))
FUZZ_DEPS     = fuzz/fuzz_common.c fuzz/fuzz_common.h fuzz/coverage_ignore.txt $(FUZZ_CORE_SRC) $(wildcard csrc/*.h)
# The project's warnings, without -Werror (clang may warn where gcc does
# not; a new clang warning in the core should not stop fuzzing) and with
# the optimisation libFuzzer likes.
FUZZ_CFLAGS   = $(filter-out -Werror -O%,$(CFLAGS)) -O1 -fno-omit-frame-pointer -Icsrc -Ifuzz
FUZZ_SAN      = -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
                -fsanitize-coverage-ignorelist=fuzz/coverage_ignore.txt

FUZZ_STD_TARGETS = fuzz_open fuzz_open_fixed fuzz_ops
FUZZ_F8_TARGETS  = fuzz_open_fixed_f8 fuzz_ops_f8
FUZZ_LUA_TARGETS = fuzz_pack
FUZZ_TARGETS     = $(FUZZ_STD_TARGETS) $(FUZZ_F8_TARGETS) $(FUZZ_LUA_TARGETS)

# per target: seed set (fuzz/corpus/<set>) and largest input
FUZZ_SEEDS_fuzz_open          = open
FUZZ_SEEDS_fuzz_open_fixed    = open_fixed
FUZZ_SEEDS_fuzz_open_fixed_f8 = open_fixed
FUZZ_SEEDS_fuzz_ops           = ops
FUZZ_SEEDS_fuzz_ops_f8        = ops
FUZZ_SEEDS_fuzz_pack          = pack
FUZZ_LEN_fuzz_open            = 70000
FUZZ_LEN_fuzz_open_fixed      = 512
FUZZ_LEN_fuzz_open_fixed_f8   = 512
FUZZ_LEN_fuzz_ops             = 1024
FUZZ_LEN_fuzz_ops_f8          = 1024
FUZZ_LEN_fuzz_pack            = 512

.PHONY: fuzz fuzz-smoke fuzz-regress fuzz-build fuzz-corpus fuzz-clean fuzz-deps

fuzz-deps:
	$(call ensure_debs,$(FUZZ_DEB_PACKAGES))

$(addprefix $(FUZZ_DIR)/,$(FUZZ_STD_TARGETS)): $(FUZZ_DIR)/%: fuzz/%.c $(FUZZ_DEPS) | fuzz-deps
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -o $@ $< fuzz/fuzz_common.c $(FUZZ_CORE_SRC)

$(addprefix $(FUZZ_DIR)/,$(FUZZ_F8_TARGETS)): $(FUZZ_DIR)/%_f8: fuzz/%.c $(FUZZ_DEPS) | fuzz-deps
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -DMP_TEST_FANOUT=8 $(FUZZ_SAN) -o $@ $< fuzz/fuzz_common.c $(FUZZ_CORE_SRC)

# The pack engine and the helpers it uses (nothing else of the binding),
# with liblua5.4's static library (not instrumented: the engine is what
# coverage follows) for the Lua state and the reference string.pack.
FUZZ_PACK_SRC = csrc/lua_pack.c csrc/lua_util.c
FUZZ_LUA_LIBS = $(shell pkg-config --variable=libdir lua5.4 2>/dev/null || echo /usr/lib/x86_64-linux-gnu)/liblua5.4.a -lm
$(FUZZ_DIR)/fuzz_pack: fuzz/fuzz_pack.c $(FUZZ_PACK_SRC) csrc/lua_pack.h csrc/lua_util.h fuzz/coverage_ignore.txt | fuzz-deps deps
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(LUA_CFLAGS) $(FUZZ_SAN) -o $@ $< $(FUZZ_PACK_SRC) $(FUZZ_LUA_LIBS)

# The corpus generator is an ordinary program (no libFuzzer, no sanitizer).
$(FUZZ_DIR)/make_corpus: fuzz/make_corpus.c $(FUZZ_DEPS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(MP_CFLAGS) -Icsrc -Ifuzz -o $@ $< fuzz/fuzz_common.c $(FUZZ_CORE_SRC)

fuzz-build: $(addprefix $(FUZZ_DIR)/,$(FUZZ_TARGETS))

fuzz-corpus: $(FUZZ_DIR)/make_corpus
	$(FUZZ_DIR)/make_corpus fuzz/corpus
	mkdir -p fuzz/corpus/pack && $(LUA) fuzz/make_pack_corpus.lua fuzz/corpus/pack

# $(call fuzz_run,SECONDS): run every target for SECONDS; print a summary
# line per target; fail at the end if any found something.
define fuzz_run
@set -u; failed=; \
$(foreach t,$(FUZZ_TARGETS),seeds_$(t)=fuzz/corpus/$(FUZZ_SEEDS_$(t)); len_$(t)=$(FUZZ_LEN_$(t));) \
for t in $(FUZZ_TARGETS); do \
  eval "seeds=\$$seeds_$$t len=\$$len_$$t"; \
  mkdir -p $(FUZZ_DIR)/corpus/$$t $(FUZZ_DIR)/artifacts/$$t; \
  echo "== $$t: $(1) s (log: $(FUZZ_DIR)/$$t.log)"; \
  if $(FUZZ_DIR)/$$t -max_total_time=$(1) -timeout=10 -rss_limit_mb=2048 -max_len=$$len \
       -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/artifacts/$$t/ $(FUZZ_ARGS) \
       $(FUZZ_DIR)/corpus/$$t $$seeds > $(FUZZ_DIR)/$$t.log 2>&1; then \
    status=ok; \
  else \
    status="FOUND SOMETHING (exit $$?)"; failed="$$failed $$t"; \
  fi; \
  execs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(FUZZ_DIR)/$$t.log | tail -n 1); \
  rate=$$(sed -n 's/^stat::average_exec_per_sec: *//p' $(FUZZ_DIR)/$$t.log | tail -n 1); \
  cov=$$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' $(FUZZ_DIR)/$$t.log | tail -n 1); \
  echo "   $$status: $${execs:-?} executions ($${rate:-?}/s), $${cov:-no coverage line}"; \
  if [ "$$status" != ok ]; then \
    grep -E 'ERROR: |FUZZ ORACLE|SUMMARY: |Test unit written' $(FUZZ_DIR)/$$t.log | sed 's/^/   /' | head -n 8; \
    grep -E '^ +#[0-9]+ .* in ' $(FUZZ_DIR)/$$t.log | grep -v -E 'libFuzzer|fuzzer::|__sanitizer|libc' | head -n 8 | sed 's/^/   /'; \
  fi; \
done; \
if [ -n "$$failed" ]; then \
  echo "fuzz: findings in:$$failed (inputs under $(FUZZ_DIR)/artifacts/)" >&2; exit 1; \
fi; \
echo "fuzz: no findings"
endef

fuzz: fuzz-build
	$(call fuzz_run,$(FUZZ_SECONDS))

fuzz-smoke: fuzz-build
	$(call fuzz_run,$(FUZZ_SMOKE_SECONDS))

# Replays every kept finding (fuzz/regress/<target>/*) once; in the
# fuzz_open_fixed* directories NAME.mp is the file NAME's patches produced
# (for spec/10-fuzz_regress_spec.lua), not an input.  The targets of
# FUZZ_REGRESS_SEEDS replay their seeds too (fuzz_pack: no spec replays its
# inputs, so its oracles run on them here).
FUZZ_REGRESS_SEEDS = fuzz_pack
fuzz-regress: fuzz-build
	@failed=; $(foreach t,$(FUZZ_REGRESS_SEEDS),seeds_$(t)="fuzz/corpus/$(FUZZ_SEEDS_$(t))/*";) \
	for t in $(FUZZ_TARGETS); do \
	  case $$t in fuzz_open_fixed*) skip='\.mp$$';; *) skip='^$$';; esac; \
	  eval "seeds=\$${seeds_$$t:-}"; \
	  files=$$(ls fuzz/regress/$$t/* $$seeds 2>/dev/null | grep -v "$$skip" || true); \
	  for f in $$files; do \
	    if $(FUZZ_DIR)/$$t -runs=1 $$f > $(FUZZ_DIR)/regress.log 2>&1; then echo "ok      $$t $$f"; \
	    else echo "FAILED  $$t $$f:"; grep -E 'ERROR: |FUZZ ORACLE|SUMMARY: ' $(FUZZ_DIR)/regress.log | sed 's/^/    /'; failed=1; fi; \
	  done; \
	done; test -z "$$failed" && echo "fuzz-regress: ok"

fuzz-clean:
	rm -rf $(FUZZ_DIR)
