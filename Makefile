# medssl: contrastive pretraining (SimCLR, MICLe) as a pipeline of small tools.
#
#   make            build the library and the tools (bin/)
#   make check      install missing packages, build, run all tests
#   make demo       run the main job on built-in data
#   make bench      benchmarks against the peers (PyTorch, PIL, sklearn)
#   make install PREFIX=/usr/local   (tools, man pages, pipelines, libmedssl.a,
#                                     its headers and medssl.pc)

PREFIX   ?= /usr/local
include mk/flags.mk

LIB_SRC   = $(wildcard lib/*/*.c)
LIB_OBJ   = $(LIB_SRC:%.c=build/%.o)
TOOL_SRC  = $(wildcard tools/*.c)
TOOLS     = $(TOOL_SRC:tools/%.c=bin/%)
UNIT_SRC  = $(wildcard tests/unit/test_*.c)
UNITS     = $(UNIT_SRC:tests/unit/%.c=build/tests/%)
TOOL_TESTS= $(sort $(wildcard tests/tools/*.sh))
HELPER_SRC= $(wildcard tests/helpers/*.c)
HELPERS   = $(HELPER_SRC:tests/helpers/%.c=build/helpers/%)
BENCH_SRC = $(wildcard bench/*.c)
BENCHES   = $(BENCH_SRC:bench/%.c=build/bench/%)
LIBA      = build/libmedssl.a
DEPS_OK   = build/.deps-build
# make check installs its packages (Open MPI among them) before it compiles,
# so that lib/numerics/dist.c is built with the MPI the tests then run.
ifneq ($(filter check,$(MAKECMDGOALS)),)
DEPS_OK   = build/.deps-check
endif
# Built with MPI or without: lib/numerics/dist.o follows when that changes.
MPI_STAMP = build/.mpi-$(HAVE_MPI)

.PHONY: all deps check demo bench install clean
.SECONDARY:
all: $(TOOLS)

build/.deps-build: mk/deps.sh
	@mkdir -p build
	@sh mk/deps.sh build
	@touch $@

build/.deps-check: mk/deps.sh
	@mkdir -p build
	@sh mk/deps.sh check
	@touch $@

$(MPI_STAMP):
	@mkdir -p build
	@rm -f build/.mpi-*
	@touch $@
build/lib/numerics/dist.o: $(MPI_STAMP)

build/%.o: %.c $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(say) CC $<
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

$(LIBA): $(LIB_OBJ)
	@rm -f $@
	$(say) AR $@
	$(Q)ar rcs $@ $^

bin/%: build/tools/%.o $(LIBA)
	@mkdir -p bin
	$(say) LD $@
	$(Q)$(CC) $(CFLAGS) $< $(LIBA) $(ALL_LDLIBS) -o $@

build/tests/%: build/tests/unit/%.o $(LIBA)
	@mkdir -p build/tests
	$(say) LD $@
	$(Q)$(CC) $(CFLAGS) $< $(LIBA) $(ALL_LDLIBS) -o $@

build/helpers/%: build/tests/helpers/%.o $(LIBA)
	@mkdir -p build/helpers
	$(say) LD $@
	$(Q)$(CC) $(CFLAGS) $< $(LIBA) $(ALL_LDLIBS) -o $@

build/bench/%: build/bench/%.o $(LIBA)
	@mkdir -p build/bench
	$(say) LD $@
	$(Q)$(CC) $(CFLAGS) $< $(LIBA) $(ALL_LDLIBS) -o $@

check: $(TOOLS) $(UNITS) $(HELPERS)
	@sh mk/deps.sh check
	@PATH="$(CURDIR)/bin:$(CURDIR)/build/helpers:$$PATH" tests/run.sh $(UNITS) $(TOOL_TESTS)

demo: $(TOOLS)
	@sh mk/deps.sh demo
	@sh examples/demo.sh

bench: $(TOOLS) $(BENCHES) $(HELPERS)
	@sh mk/deps.sh bench
	@sh bench/run.sh

install: $(TOOLS) $(LIBA)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib \
	    $(DESTDIR)$(PREFIX)/include/medssl $(DESTDIR)$(PREFIX)/share/man/man1 \
	    $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man7 \
	    $(DESTDIR)$(PREFIX)/share/medssl/pipelines
	install -m 755 $(TOOLS) $(DESTDIR)$(PREFIX)/bin
	install -m 644 $(LIBA) $(DESTDIR)$(PREFIX)/lib
	install -m 644 lib/*/*.h $(DESTDIR)$(PREFIX)/include/medssl
	install -m 644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 644 man/*.5 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 644 man/*.7 $(DESTDIR)$(PREFIX)/share/man/man7
	install -m 755 pipelines/*.sh $(DESTDIR)$(PREFIX)/share/medssl/pipelines
	install -m 644 pipelines/common.bash $(DESTDIR)$(PREFIX)/share/medssl/pipelines
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@BLIS_LIB@|$(BLIS_LIB)|g' -e 's|@PKGS@|$(PKGS) $(MPI_PKG)|' \
	    -e "s|@VERSION@|$$(sed -n 's/^#define MEDSSL_VERSION "\(.*\)"/\1/p' lib/base/cli.h)|" \
	    mk/medssl.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/medssl.pc

clean:
	rm -rf build bin

# ---- hardening: sanitizers, fuzzing, valgrind (see tests/fuzz/README.md) ----------
#
#   make check-asan      the whole suite on tools and tests built with ASan + UBSan
#   make fuzz            each libFuzzer target for FUZZ_SECONDS (clang)
#   make check-valgrind  memcheck on a tiny end-to-end run (slow: not in make check)
#   make check-fresh     the README's two commands on a debootstrapped minimal
#                        Debian 12 (root, the package archive, 15-25 minutes)
#
# Each build has its own folder under build/, apart from the gcc objects.

.PHONY: check-asan fuzzers fuzz check-valgrind check-fresh
SAN_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

ASAN = build/asan
ASAN_UNITS = $(UNITS:build/%=$(ASAN)/%)
$(ASAN)/%.o: %.c $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(say) CC $@
	$(Q)$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) -c $< -o $@
$(ASAN)/libmedssl.a: $(LIB_OBJ:build/%=$(ASAN)/%)
	@rm -f $@
	$(Q)ar rcs $@ $^
define asan_link
	@mkdir -p $(dir $@)
	$(say) LD $@
	$(Q)$(CC) $(CFLAGS) $(SAN_FLAGS) $< $(ASAN)/libmedssl.a $(ALL_LDLIBS) -o $@
endef
$(ASAN)/bin/%: $(ASAN)/tools/%.o $(ASAN)/libmedssl.a ; $(asan_link)
$(ASAN)/tests/%: $(ASAN)/tests/unit/%.o $(ASAN)/libmedssl.a ; $(asan_link)
$(ASAN)/helpers/%: $(ASAN)/tests/helpers/%.o $(ASAN)/libmedssl.a ; $(asan_link)

# Sanitizer reports go to files, so that none goes unseen in a test that
# keeps a tool's stderr to itself; any error report fails the target (a
# forked child's "thread was not suspended" notes are not errors).  A small
# quarantine keeps resident memory near the plain build's, which
# pair-sample.sh measures; tests/memcheck/lsan.supp lists third-party leaks.
check-asan: $(TOOLS:bin/%=$(ASAN)/bin/%) $(ASAN_UNITS) $(HELPERS:build/%=$(ASAN)/%)
	@sh mk/deps.sh check
	@rm -rf $(ASAN)/reports && mkdir -p $(ASAN)/reports
	@ASAN_OPTIONS=detect_leaks=1:quarantine_size_mb=8:exitcode=86:log_path=$(CURDIR)/$(ASAN)/reports/asan \
	 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/memcheck/lsan.supp:print_suppressions=0 \
	 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=86:log_path=$(CURDIR)/$(ASAN)/reports/ubsan \
	 PATH="$(CURDIR)/$(ASAN)/bin:$(CURDIR)/$(ASAN)/helpers:$$PATH" tests/run.sh $(ASAN_UNITS) $(TOOL_TESTS); \
	 rc=$$?; bad=$$(grep -l -e ERROR -e 'runtime error' $(ASAN)/reports/* 2>/dev/null); \
	 if [ -n "$$bad" ]; then head -n 60 $$bad; echo "sanitizer reports: $$bad"; exit 1; fi; exit $$rc

# libFuzzer targets, built with clang; OpenMP through libgomp, the runtime
# BLIS is built against.  clang ignores GCC's optimize pragma (imgops.c).
FUZZ = build/fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = $(patsubst tests/fuzz/%.c,$(FUZZ)/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_CFLAGS = $(subst -fopenmp,-fopenmp=libgomp,$(ALL_CFLAGS)) $(SAN_FLAGS) -Wno-unknown-pragmas
$(FUZZ)/.deps: mk/deps.sh
	@mkdir -p $(FUZZ)
	@sh mk/deps.sh check
	@touch $@
$(FUZZ)/%.o: %.c $(DEPS_OK) $(FUZZ)/.deps
	@mkdir -p $(dir $@)
	$(say) CC $@
	$(Q)clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@
$(FUZZ)/libmedssl.a: $(LIB_OBJ:build/%=$(FUZZ)/%)
	@rm -f $@
	$(Q)ar rcs $@ $^
$(FUZZ)/fuzz_%: $(FUZZ)/tests/fuzz/fuzz_%.o $(FUZZ)/libmedssl.a
	$(say) LD $@
	$(Q)clang $(FUZZ_CFLAGS) -fsanitize=fuzzer $< $(FUZZ)/libmedssl.a \
	    $(subst -fopenmp,-fopenmp=libgomp,$(ALL_LDLIBS)) -o $@
$(FUZZ)/mkseeds: build/tests/fuzz/mkseeds.o $(LIBA)
	$(say) LD $@
	$(Q)$(CC) $(CFLAGS) $< $(LIBA) $(ALL_LDLIBS) -o $@
$(FUZZ)/seeds: $(FUZZ)/mkseeds
	@rm -rf $@
	$(Q)$(FUZZ)/mkseeds $@
fuzzers: $(FUZZ_TARGETS) $(FUZZ)/seeds
fuzz: fuzzers
	@tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

check-valgrind: $(TOOLS) $(HELPERS)
	@sh mk/deps.sh valgrind
	@PATH="$(CURDIR)/bin:$(CURDIR)/build/helpers:$$PATH" tests/memcheck/valgrind.sh

check-fresh:
	@tests/fresh.sh

-include $(shell find build -name '*.d' 2>/dev/null)
