# medssl: contrastive pretraining (SimCLR, MICLe) as a pipeline of small tools.
#
#   make            build the library and the tools (bin/)
#   make check      install missing packages, build, run all tests
#   make demo       run the main job on built-in data
#   make bench      benchmarks against the peers (PyTorch, PIL, sklearn)
#   make install PREFIX=/usr/local

PREFIX   ?= /usr/local
include mk/flags.mk

LIB_SRC   = $(wildcard lib/*.c)
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

.PHONY: all deps check demo bench install clean
.SECONDARY:
all: $(TOOLS)

$(DEPS_OK): mk/deps.sh
	@mkdir -p build
	@sh mk/deps.sh build
	@touch $@

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
	install -m 644 lib/*.h $(DESTDIR)$(PREFIX)/include/medssl
	install -m 644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 644 man/*.5 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 644 man/*.7 $(DESTDIR)$(PREFIX)/share/man/man7
	install -m 755 pipelines/*.sh $(DESTDIR)$(PREFIX)/share/medssl/pipelines
	install -m 644 pipelines/common.bash $(DESTDIR)$(PREFIX)/share/medssl/pipelines

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)
