# shmex: one non-recursive Makefile.
#
#   make                 build everything into $(BUILD)/ (programs in $(BUILD)/bin)
#   make check           run the check unit and integration tests
#   make stress          multi-process torture tests (bounded in time)
#   make stress-loop     shmex-stress again and again until a run fails
#   make bench           benchmarks (figures, never pass/fail)
#   make bench-report    measure and plot docs/img/*.png (needs gnuplot)
#   make run             start an exchange with the embedded defaults
#   make install         install programs under $(DESTDIR)$(PREFIX)
#   make format-check    the sources as clang-format (.clang-format) writes them
#   make SANITIZER=address|undefined|thread ...
#
# Folders are the process diagram (docs/architecture.md).  Each folder below
# is one library (its *.c except main_*.c) and its programs
# (main_<prog>.c -> $(BUILD)/bin/shmex-<prog>; main_shmex.c -> shmex).
# A folder links only what its `uses_` line names, compiles with only the
# packages of its own `pkgs_` line and of what it uses, and includes only
# the headers of those folders (tests/layout-check.sh enforces that):
#
#   module      folder               uses            process
#   shm         shm/                 -               the contract, in every process
#   query       shm/query/           shm             shmex-query
#   journal     shm/journal/         shm             shmex-journal, shmex-audit
#   engine      engine/              shm             shmex-matcher
#   replay      engine/replay/       engine shm      shmex-replay
#   gateway     gateway/             shm             shmex-gateway
#   fix         gateway/fix/         gw_listen shm   shmex-fix (C++ inside)
#   supervisor  gateway/supervisor/  gw_listen shm   shmex
#
# A folder's *.cpp files compile with $(CXX) into its library (the FIX
# gateway's QuickFIX session layer); a module with C++ inside links the C++
# runtime (its `libs_` line).
# Adding a source file to a folder never edits this file.
# tests/test_*.c are check suites -> $(BUILD)/tests/, tests/support_*.c
# their helpers, tests/bench/*.c make $(BUILD)/bin/shmex-bench, tests/stress/*.c
# make $(BUILD)/bin/shmex-stress (the torture harness of `make stress`),
# tests/fix_client.cpp the QuickFIX initiator the FIX tests drive.

BUILD ?= build
PREFIX ?= /usr/local
CC ?= cc
CXX ?= c++
CFLAGS ?= -O2 -g
CXXFLAGS ?= -O2 -g
SANITIZER ?=
CLANG_FORMAT ?= clang-format

WARN := -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes \
	-Wmissing-prototypes -Wformat=2 -Wundef -Wvla -Wno-unused-parameter
# -mcx16: 16-byte compare-and-swap inline (lock cmpxchg16b) for 128-bit cash
# (shm/shm_atomic16.h), never a call into libatomic.
ARCH_FLAGS := -mcx16
BASE_CFLAGS = -std=gnu11 $(WARN) $(ARCH_FLAGS) $(CFLAGS) -MMD -MP -I. -D_GNU_SOURCE $(SAN_FLAGS)
# QuickFIX 1.15's headers use dynamic exception specifications: C++11.
BASE_CXXFLAGS = -std=gnu++11 $(ARCH_FLAGS) -Wall -Wextra -Wno-unused-parameter -Wno-deprecated \
	$(CXXFLAGS) -MMD -MP -I. -D_GNU_SOURCE $(SAN_FLAGS)
ALL_LDFLAGS = $(LDFLAGS) $(SAN_FLAGS)
SYS_LIBS := -lrt -lpthread -lm

ifneq ($(SANITIZER),)
SAN_FLAGS := -fsanitize=$(SANITIZER) -fno-omit-frame-pointer
ifeq ($(SANITIZER),undefined)
SAN_FLAGS += -fno-sanitize-recover=all
endif
endif

.DEFAULT_GOAL := all

MODULES := shm query journal engine replay gateway fix supervisor
dir_shm := shm
dir_query := shm/query
dir_journal := shm/journal
dir_engine := engine
dir_replay := engine/replay
dir_gateway := gateway
dir_fix := gateway/fix
dir_supervisor := gateway/supervisor

uses_shm :=
uses_query := shm
uses_journal := shm
uses_engine := shm
uses_replay := engine shm
uses_gateway := shm
uses_fix := shm
uses_supervisor := shm

pkgs_shm := liburcu
pkgs_query :=
pkgs_journal :=
pkgs_engine :=
pkgs_replay := jansson liblzma
pkgs_gateway := expat
pkgs_fix := quickfix
pkgs_supervisor :=

# Single objects a module links from another folder (not its library).
extra_supervisor := gateway/gw_listen.c
extra_fix := gateway/gw_listen.c
# Libraries beyond pkg-config's.
libs_fix := -lstdc++

# Tests and benchmarks see everything.
TEST_PKGS := check liburcu-memb liburcu-qsbr

DEPS_STAMP := $(BUILD)/.deps-ok

# pkg-config runs once per module, lazily, after the deps step.
define pkg_query
$(if $(strip $(1)),$(shell pkg-config --$(2) $(1)))
endef
# Memoised per module: $(call mod_cflags,m) / $(call mod_libs,m).
closure = $(sort $(1) $(foreach u,$(1),$(uses_$(u))))
mod_pkgs = $(sort $(foreach u,$(call closure,$(1)),$(pkgs_$(u))))
define memo
$(eval $(1) := $(2))$($(1))
endef
mod_cflags = $(if $(filter undefined,$(origin PKGC_$(1))),$(call memo,PKGC_$(1),$(call pkg_query,$(call mod_pkgs,$(1)),cflags)),$(PKGC_$(1)))
mod_libs = $(if $(filter undefined,$(origin PKGL_$(1))),$(call memo,PKGL_$(1),$(call pkg_query,$(call mod_pkgs,$(1)),libs)),$(PKGL_$(1)))
ALL_PKGS = $(sort $(foreach m,$(MODULES),$(pkgs_$(m))) $(TEST_PKGS))
TEST_CFLAGS = $(if $(filter undefined,$(origin PKGC_tests)),$(call memo,PKGC_tests,$(call pkg_query,$(ALL_PKGS),cflags)),$(PKGC_tests))
TEST_LDLIBS = $(if $(filter undefined,$(origin PKGL_tests)),$(call memo,PKGL_tests,$(call pkg_query,$(ALL_PKGS),libs)),$(PKGL_tests))

obj = $(patsubst %.cpp,$(BUILD)/obj/%.o,$(patsubst %.c,$(BUILD)/obj/%.o,$(1)))
lib_srcs = $(filter-out $(1)/main_%.c,$(wildcard $(1)/*.c $(1)/*.cpp))
lib_file = $(BUILD)/lib/libshmex-$(1).a
prog_name = $(if $(filter shmex,$(1)),shmex,shmex-$(1))
mains = $(patsubst $(1)/main_%.c,%,$(wildcard $(1)/main_*.c))

# Which module an object belongs to (for its compile flags).
$(foreach m,$(MODULES),$(foreach s,$(wildcard $(dir_$(m))/*.c $(dir_$(m))/*.cpp),$(eval mod_of_$(s) := $(m))))

LIBS_BUILT := $(foreach m,$(MODULES),$(if $(call lib_srcs,$(dir_$(m))),$(call lib_file,$(m))))
link_libs = $(foreach u,$(1) $(uses_$(1)),$(if $(call lib_srcs,$(dir_$(u))),$(call lib_file,$(u))))

define module_rules
$(call lib_file,$(1)): $(call obj,$(call lib_srcs,$(dir_$(1))))
$(foreach p,$(call mains,$(dir_$(1))),
$(BUILD)/bin/$(call prog_name,$(p)): $(call obj,$(dir_$(1))/main_$(p).c $(extra_$(1))) $(call link_libs,$(1))
	@mkdir -p $$(@D)
	$$(CC) $$(BASE_CFLAGS) -o $$@ $$(filter %.o,$$^) $(call link_libs,$(1)) $$(ALL_LDFLAGS) $$(call mod_libs,$(1)) $(libs_$(1)) $$(SYS_LIBS)
PROGS += $(BUILD)/bin/$(call prog_name,$(p))
)
endef
PROGS :=
$(foreach m,$(MODULES),$(eval $(call module_rules,$(m))))

BENCH_SRCS := $(wildcard tests/bench/*.c)
QC_DIR := tests/bench/third_party/quantcup-2011
QC_TEST := $(BUILD)/tests/qc-autotester
LB_DIR := tests/bench/third_party/liquibook
LB_PROG := $(BUILD)/bin/shmex-bench-liquibook
BENCH_PROG := $(if $(BENCH_SRCS),$(BUILD)/bin/shmex-bench)
STRESS_TOOL_SRCS := $(wildcard tests/stress/*.c)
STRESS_TOOL := $(if $(STRESS_TOOL_SRCS),$(BUILD)/bin/shmex-stress)
TEST_SUPPORT := $(wildcard tests/support_*.c)
TEST_SRCS := $(wildcard tests/test_*.c)
TEST_PROGS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRCS))
STRESS_SRCS := $(wildcard tests/stress_*.c)
STRESS_PROGS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(STRESS_SRCS))
# Tests link every library; order: users before what they use.
TEST_LIBS := $(foreach m,supervisor gateway replay engine journal query shm,$(filter $(call lib_file,$(m)),$(LIBS_BUILT)))

.PHONY: all check stress stress-loop bench bench-report run install uninstall clean deps check-loop \
	format format-check layout-check
# Objects are never intermediate: an interrupted make keeps what it built.
.SECONDARY:
.DELETE_ON_ERROR:

FIX_CLIENT := $(BUILD)/bin/shmex-fix-client

all: $(PROGS) $(BENCH_PROG) $(STRESS_TOOL) $(TEST_PROGS) $(STRESS_PROGS) $(FIX_CLIENT) $(QC_TEST) $(LB_PROG)

deps: $(DEPS_STAMP)
$(DEPS_STAMP): .ci/deps
	@mkdir -p $(@D)
	sh .ci/deps
	@touch $@

# Module sources compile with their module's packages only; tests with all.
$(BUILD)/obj/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(if $(mod_of_$<),$(call mod_cflags,$(mod_of_$<)),$(TEST_CFLAGS)) -c -o $@ $<

$(BUILD)/obj/%.o: %.cpp | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CXX) $(BASE_CXXFLAGS) $(if $(mod_of_$<),$(call mod_cflags,$(mod_of_$<)),$(TEST_CFLAGS)) -c -o $@ $<

# The FIX gateway carries its data dictionary inside (.incbin).
$(BUILD)/obj/gateway/fix/fx_app.o: gateway/fix/spec/FIX44.xml

$(BUILD)/lib/%.a:
	@mkdir -p $(@D)
	rm -f $@
	$(AR) rcs $@ $^

$(BENCH_PROG): $(call obj,$(BENCH_SRCS) $(TEST_SUPPORT)) $(TEST_LIBS)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -o $@ $(filter %.o,$^) $(TEST_LIBS) $(ALL_LDFLAGS) $(TEST_LDLIBS) $(SYS_LIBS)

$(STRESS_TOOL): $(call obj,$(STRESS_TOOL_SRCS) $(TEST_SUPPORT)) $(TEST_LIBS)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -o $@ $(filter %.o,$^) $(TEST_LIBS) $(ALL_LDFLAGS) $(TEST_LDLIBS) $(SYS_LIBS)

# The anchors benchmark's third-party engines (tests/bench/third_party/):
# the QuantCup reference engine compiles without warnings (its code, not
# ours); Liquibook is C++ and builds into its own program, which
# shmex-bench anchors skips with a message when it could not be built; the
# contest's unmodified autotester test.c includes "engine.c", so it is
# copied into $(BUILD)/qc/ beside a one-line engine.c that includes the
# adapter's API (tests/qc_engine_api.h); tests/test_qc.c runs it.
$(BUILD)/obj/tests/bench/qc_reference.o: WARN := -w

$(BUILD)/qc/test.c: $(QC_DIR)/test.c
	@mkdir -p $(@D)
	cp $< $@
$(BUILD)/qc/engine.c:
	@mkdir -p $(@D)
	printf '#include "tests/qc_engine_api.h"\n' >$@
$(BUILD)/qc/test.o: $(BUILD)/qc/test.c $(BUILD)/qc/engine.c tests/qc_engine_api.h tests/qc.h
	$(CC) -std=gnu11 $(CFLAGS) -w -I. -iquote $(QC_DIR) -D_GNU_SOURCE $(SAN_FLAGS) -c -o $@ $<
$(QC_TEST): $(BUILD)/qc/test.o $(call obj,tests/support_qc.c) $(TEST_LIBS)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -o $@ $(filter %.o,$^) $(TEST_LIBS) $(ALL_LDFLAGS) $(SYS_LIBS)

$(LB_PROG): tests/bench/liquibook_run.cpp $(wildcard $(LB_DIR)/src/*/*)
	@mkdir -p $(@D)
	@if command -v $(CXX) >/dev/null 2>&1; then \
		echo "$(CXX) ... -o $@ tests/bench/liquibook_run.cpp"; \
		$(CXX) -std=c++11 $(CFLAGS) -w $(SAN_FLAGS) -I$(LB_DIR)/src -o $@ \
			tests/bench/liquibook_run.cpp $(LB_DIR)/src/simple/simple_order.cpp || \
		{ rm -f $@; echo "liquibook: not built; shmex-bench anchors will skip it"; }; \
	else echo "liquibook: no C++ compiler ($(CXX)); shmex-bench anchors will skip it"; fi

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(call obj,$(TEST_SUPPORT)) $(TEST_LIBS)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -o $@ $(filter %.o,$^) $(TEST_LIBS) $(ALL_LDFLAGS) $(TEST_LDLIBS) $(SYS_LIBS)

$(FIX_CLIENT): $(BUILD)/obj/tests/fix_client.o $(BUILD)/obj/gateway/fix/fx_store.o
	@mkdir -p $(@D)
	$(CXX) $(BASE_CXXFLAGS) -o $@ $^ $(ALL_LDFLAGS) $(call pkg_query,quickfix,libs) -lpthread

# Tests find programs, the sources and the conformance data through the
# environment.
TEST_ENV = SHMEX_BIN_DIR=$(abspath $(BUILD)/bin) SHMEX_SRC_DIR=$(abspath .) \
	SHMEX_CONFORMANCE_DIR=$(abspath tests/data/conformance)

check: all layout-check format-check
	@$(TEST_ENV) sh tests/run-tests.sh $(TEST_PROGS)

layout-check:
	@sh tests/layout-check.sh

check-loop: all
	@n=0; while $(TEST_ENV) sh tests/run-tests.sh $(TEST_PROGS) >/dev/null; \
	do n=$$((n+1)); echo "check-loop: pass $$n"; done; echo "check-loop: failed after $$n passes"

# STRESS_SECONDS: length of the shmex-stress run; STRESS_ARGS: more options
# (--seed N reproduces a run).
STRESS_SECONDS ?= 60
stress: all
	@$(TEST_ENV) sh tests/run-tests.sh $(STRESS_PROGS)
	@$(TEST_ENV) $(STRESS_TOOL) --seconds $(STRESS_SECONDS) $(STRESS_ARGS)

# Repeats shmex-stress until a run fails; the failing run's log stays in
# $(BUILD)/stress-loop.log (its VIOLATION lines carry the seed).
stress-loop: all
	@n=0; while $(TEST_ENV) $(STRESS_TOOL) --seconds $(STRESS_SECONDS) $(STRESS_ARGS) \
		>$(BUILD)/stress-loop.log 2>&1; do n=$$((n+1)); \
		echo "stress-loop: pass $$n: $$(tail -n 1 $(BUILD)/stress-loop.log)"; done; \
	echo "stress-loop: failed after $$n passes: see $(BUILD)/stress-loop.log"

bench: all
	$(BENCH_PROG) all

# Measures on this machine and draws docs/img/*.png (gnuplot; see
# docs/performance.md).  REPS, OPS, E2E_SECONDS tune it.
bench-report: all
	sh tests/bench/report.sh $(abspath $(BUILD)/bin) docs/img

run: all
	$(BUILD)/bin/shmex

FORMAT_SRCS = $(shell git ls-files '*.c' '*.h' 2>/dev/null | grep -v '/third_party/')
format:
	@for f in $(FORMAT_SRCS); do $(CLANG_FORMAT) -i --style=file "$$f"; done

format-check:
	@command -v $(CLANG_FORMAT) >/dev/null || { echo "format-check: $(CLANG_FORMAT) not found"; exit 1; }
	@bad=0; for f in $(FORMAT_SRCS); do \
		$(CLANG_FORMAT) --style=file "$$f" | cmp -s - "$$f" || { echo "format-check: $$f"; bad=1; }; \
	done; exit $$bad

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(PROGS) $(DESTDIR)$(PREFIX)/bin

uninstall:
	rm -f $(foreach p,$(PROGS),$(DESTDIR)$(PREFIX)/bin/$(notdir $(p)))

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
