# weir — build, test, bench, install and sanitizer targets.
#
#   make            library (static + shared) and the weir binary, in build/
#   make demo       install missing Debian packages, build, run the demo
#   make test       install missing Debian packages, build, run every test
#   make asan|tsan  the tests / stress programs under a sanitizer
#   make bench      benchmarks (ratios against baselines in the same run)
#   make install    PREFIX=/usr/local DESTDIR=

PREFIX  ?= /usr/local
DESTDIR ?=
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
BINDIR  ?= $(PREFIX)/bin
PCDIR   ?= $(LIBDIR)/pkgconfig

SOMAJOR := 0
VERSION := $(shell sed -n 's/^\#define WEIR_VERSION_STRING "\(.*\)"/\1/p' pipeline/weir.h)

CC      ?= cc
B       ?= build
OPT     ?= -O2
SAN     ?=
WERROR  ?= $(if $(CI),-Werror,)

WARN := -Wall -Wextra -Wshadow -Wcast-qual -Wstrict-prototypes \
        -Wmissing-prototypes -Wformat=2 -Wvla -Wundef -Wpointer-arith \
        -Wcast-align -Wwrite-strings -Wredundant-decls -Wno-unused-parameter
CFLAGS_ALL := -std=c11 -D_GNU_SOURCE $(OPT) -g $(WARN) $(WERROR) -fopenmp \
              -MMD -MP -Ipipeline $(SAN) $(CFLAGS)
LIBCFLAGS  := $(CFLAGS_ALL) -fPIC -fvisibility=hidden -DWEIR_BUILDING
LDLIBS_ALL := -lcsv -lzstd -lpthread -lm -ldl $(LDLIBS)
LDFLAGS_ALL := -fopenmp $(SAN) $(LDFLAGS)

LIB_SRC  := $(wildcard pipeline/*.c) $(wildcard stages/*.c)
LINK_LIB = $(STATIC)
CLI_SRC  := $(wildcard cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
STRESS_SRC := $(wildcard tests/stress/*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(B)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(B)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(B)/tests/%)
STRESS_BIN := $(STRESS_SRC:tests/stress/%.c=$(B)/stress/%)

STATIC := $(B)/libweir.a
SHARED := $(B)/libweir.so.$(VERSION)
SONAME := libweir.so.$(SOMAJOR)
WEIR   := $(B)/weir

.PHONY: all lib test unit stress cli check-install demo demo-lib bench deps asan tsan \
        clean format lint install uninstall help
.DEFAULT_GOAL := all

all: lib $(WEIR)
lib: $(STATIC) $(SHARED)

$(B)/pipeline/%.o $(B)/stages/%.o: CFLAGS_OBJ = $(LIBCFLAGS)
$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(if $(CFLAGS_OBJ),$(CFLAGS_OBJ),$(CFLAGS_ALL)) -c $< -o $@

$(STATIC): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(SHARED): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined -o $@ $^ \
	      $(LDFLAGS_ALL) $(LDLIBS_ALL)
	ln -sf libweir.so.$(VERSION) $(B)/$(SONAME)
	ln -sf $(SONAME) $(B)/libweir.so

$(WEIR): $(CLI_OBJ) $(STATIC)
	$(CC) -rdynamic -o $@ $(CLI_OBJ) $(LINK_LIB) $(LDFLAGS_ALL) $(LDLIBS_ALL)

$(B)/tests/%: tests/%.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Wno-missing-prototypes -o $@ $< $(LINK_LIB) \
	      $(LDFLAGS_ALL) -lcriterion $(LDLIBS_ALL)

$(B)/stress/%: tests/stress/%.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(LINK_LIB) $(LDFLAGS_ALL) $(LDLIBS_ALL)

# ---- dependencies -------------------------------------------------------
# Installs the Debian packages weir needs when one is missing.
DEB_PKGS := gcc make pkg-config libzstd-dev libcsv-dev libcriterion-dev zstd graphviz python3
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' \
	    || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "weir: installing missing Debian packages:$$missing"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# ---- tests ----------------------------------------------------------------
# Criterion tests, stress programs (short), the CLI tests, then the
# install test.
test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory unit stress cli reliability check-install

cli: $(WEIR)
	@WEIR=$(CURDIR)/$(WEIR) bash tests/cli/cli_test.sh

unit: $(TEST_BIN)
	@set -e; for t in $(TEST_BIN); do echo "== $$t"; $$t $(CRITERION_ARGS); done

STRESS_ARGS ?= --seconds 2
stress: $(STRESS_BIN)
	@set -e; for t in $(STRESS_BIN); do echo "== $$t $(STRESS_ARGS)"; \
	  $$t $(STRESS_ARGS); done

check-install: lib
	@sh tests/install_test.sh
	@sh tests/examples_test.sh

# Sanitizer builds live in their own folders and reuse the targets above.
# Criterion's runner process leaks a little of its own: tests/lsan.supp.
asan:
	@LSAN_OPTIONS="suppressions=$(CURDIR)/tests/lsan.supp print_suppressions=0" \
	  $(MAKE) --no-print-directory B=build-asan OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  unit stress cli
# TSAN runs the stress programs (plain C): Criterion's runner cannot start
# under TSAN (Snaipe/Criterion#274). libgomp is not built with TSAN, so the
# workers run on pthreads (WEIR_LAUNCH=pthread) to keep the report about
# weir's own code. TSAN does not model atomic_thread_fence (gcc warns:
# -Wtsan); the fences order only our own atomics, which TSAN sees.
tsan:
	@WEIR_LAUNCH=pthread TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
	  $(MAKE) --no-print-directory B=build-tsan OPT=-O1 SAN="-fsanitize=thread -Wno-tsan" stress

# ---- demo and bench -----------------------------------------------------------
# The main job on a built-in dataset: 1M generated trips as .csv.zst (made
# once), through datasets/examples/trips.weir — a fan-out writing the big
# card trips to a .csv.zst and printing a group-by summary.
DEMO_DIR := $(B)/demo
demo: deps
	@$(MAKE) --no-print-directory all
	@mkdir -p $(DEMO_DIR)
	@if [ ! -f $(DEMO_DIR)/trips-1m.csv.zst ]; then \
	  echo "generating 1,000,000 trips: weir gen trips --rows 1000000 -o $(DEMO_DIR)/trips-1m.csv.zst"; \
	  $(WEIR) gen trips --rows 1000000 --seed 42 -o $(DEMO_DIR)/trips-1m.csv.zst; fi
	@echo "running:  weir run datasets/examples/trips.weir --var input=$(DEMO_DIR)/trips-1m.csv.zst --var out=$(DEMO_DIR)/big.csv.zst"
	@echo
	@start=$$(date +%s.%N); \
	$(WEIR) run datasets/examples/trips.weir --var input=$(DEMO_DIR)/trips-1m.csv.zst \
	  --var out=$(DEMO_DIR)/big.csv.zst && \
	end=$$(date +%s.%N) && echo && \
	echo "wrote $(DEMO_DIR)/big.csv.zst: $$($(WEIR) run -e 'read("$(DEMO_DIR)/big.csv.zst") | csv() | count()') big card trips" && \
	awk -v s=$$start -v e=$$end 'BEGIN { printf "time: %.2f s for 1,000,000 trips\n", e - s }'

# The library on its own: a C program with custom stages (no CLI).
demo-lib: lib $(B)/examples/demo
	@$(B)/examples/demo

$(B)/examples/%: stages/examples/%.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Wno-missing-prototypes -o $@ $< $(LINK_LIB) \
	      $(LDFLAGS_ALL) $(LDLIBS_ALL)

$(B)/bench/%: bench/%.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Wno-missing-prototypes -o $@ $< $(LINK_LIB) \
	      $(LDFLAGS_ALL) $(LDLIBS_ALL)

bench: deps
	@$(MAKE) --no-print-directory lib
	@sh bench/run.sh

# ---- install ------------------------------------------------------------------
install: all
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(BINDIR) \
	           $(DESTDIR)$(PCDIR)
	install -m 644 pipeline/weir.h $(DESTDIR)$(INCDIR)/weir.h
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/libweir.a
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/libweir.so.$(VERSION)
	ln -sf libweir.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libweir.so
	install -m 755 $(WEIR) $(DESTDIR)$(BINDIR)/weir
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@INCDIR@|$(INCDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	    pipeline/weir.pc.in > $(DESTDIR)$(PCDIR)/weir.pc
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 644 docs/weir.1 $(DESTDIR)$(PREFIX)/share/man/man1/weir.1
	install -m 644 docs/weir-spec.5 $(DESTDIR)$(PREFIX)/share/man/man5/weir-spec.5

uninstall:
	rm -f $(DESTDIR)$(INCDIR)/weir.h $(DESTDIR)$(LIBDIR)/libweir.a \
	      $(DESTDIR)$(LIBDIR)/libweir.so.$(VERSION) \
	      $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libweir.so \
	      $(DESTDIR)$(BINDIR)/weir $(DESTDIR)$(PCDIR)/weir.pc \
	      $(DESTDIR)$(PREFIX)/share/man/man1/weir.1 $(DESTDIR)$(PREFIX)/share/man/man5/weir-spec.5

# ---- reliability ----------------------------------------------------------------
# tests/reliability_test.sh (part of make test): how fast a cancel stops a
# busy run, and a full and a read-only file system (as root: it mounts a
# 1 MiB tmpfs). tests/valgrind_cli.sh: CLI commands under valgrind memcheck,
# no error and no leak (about a minute).
.PHONY: reliability valgrind
reliability: $(WEIR)
	@WEIR=$(CURDIR)/$(WEIR) bash tests/reliability_test.sh

valgrind: $(WEIR)
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(DEB_PKGS) valgrind"
	@WEIR=$(CURDIR)/$(WEIR) bash tests/valgrind_cli.sh

# ---- fuzzing ------------------------------------------------------------------
# libFuzzer harnesses (tests/fuzz/, see its README): clang builds the library
# sources with coverage, ASan and UBSan into build-fuzz/ (not libweir.a,
# which gcc builds), links each harness, and runs it for FUZZ_SECONDS on its
# seed corpus (tests/fuzz/corpus/NAME, read-only; what the fuzzer adds goes
# to build-fuzz/corpus/NAME). A failure leaves build-fuzz/crash-NAME-*: a
# reproducer to add to the seed corpus with the fix.
#   make fuzz                       every harness, FUZZ_SECONDS (60) each
#   make fuzz FUZZ=csv FUZZ_SECONDS=600
FUZZ_SECONDS ?= 60
FUZZ_CC  ?= clang
FUZZ_DIR := build-fuzz
FUZZ_ALL := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ     ?= $(FUZZ_ALL)
FUZZ_ARGS ?=
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -O1 -g -fno-omit-frame-pointer -fopenmp \
               -fsanitize=address,undefined -fno-sanitize-recover=undefined \
               -MMD -MP -Ipipeline $(WARN) -Wno-missing-field-initializers
FUZZ_OBJ := $(LIB_SRC:%.c=$(FUZZ_DIR)/%.o)
FUZZ_DEB_PKGS := clang libclang-rt-14-dev libomp-dev

.PHONY: fuzz fuzz-deps fuzz-build fuzz-clean
fuzz-deps:
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(DEB_PKGS) $(FUZZ_DEB_PKGS)"

$(FUZZ_DIR)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -DWEIR_BUILDING -c $< -o $@

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_common.h $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Wno-missing-prototypes -fsanitize=fuzzer -o $@ $< \
	      $(FUZZ_OBJ) -lcsv -lzstd -lpthread -lm -ldl

fuzz-build: $(FUZZ:%=$(FUZZ_DIR)/fuzz_%)

fuzz: fuzz-deps
	@$(MAKE) --no-print-directory fuzz-build
	@set -e; for n in $(FUZZ); do \
	  mkdir -p $(FUZZ_DIR)/corpus/$$n; \
	  echo "== fuzz_$$n for $(FUZZ_SECONDS) s"; \
	  ASAN_OPTIONS=detect_leaks=1 $(FUZZ_DIR)/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) \
	    -timeout=20 -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/crash-$$n- \
	    $(FUZZ_ARGS) $(FUZZ_DIR)/corpus/$$n tests/fuzz/corpus/$$n 2>$(FUZZ_DIR)/fuzz_$$n.log \
	  || { tail -n 60 $(FUZZ_DIR)/fuzz_$$n.log; exit 1; }; \
	  grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added)' \
	    $(FUZZ_DIR)/fuzz_$$n.log; \
	done

fuzz-clean:
	rm -rf $(FUZZ_DIR)
clean: fuzz-clean

-include $(FUZZ_OBJ:.o=.d) $(FUZZ_ALL:%=$(FUZZ_DIR)/fuzz_%.d)

# ---- housekeeping -------------------------------------------------------------
SRC_ALL := $(wildcard pipeline/*.[ch] stages/*.[ch] cli/*.[ch] tests/*.c \
                      tests/stress/*.c bench/*.c)
format:
	clang-format -i $(SRC_ALL)

lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --inline-suppr --suppress=missingIncludeSystem -Ipipeline -D__GNUC__ \
	  pipeline stages cli
	clang-tidy --quiet $(LIB_SRC) $(CLI_SRC) -- -std=c11 -D_GNU_SOURCE -Ipipeline

clean:
	rm -rf build build-asan build-tsan

help:
	@sed -n '2,9p' Makefile | sed 's/^# \{0,1\}//'

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
