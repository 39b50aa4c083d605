# shmex: one non-recursive Makefile.
#
#   make                 build everything into $(BUILD)/ (programs in $(BUILD)/bin)
#   make check           run the check unit and integration tests
#   make stress          multi-process torture tests (bounded in time)
#   make bench           benchmarks (figures, never pass/fail)
#   make run             start an exchange with the embedded defaults
#   make install         install programs under $(DESTDIR)$(PREFIX)
#   make SANITIZER=address|undefined|thread ...
#
# Sources are found by convention, so adding a module never edits this file:
#   shm/*.c, engine/*.c, gateway/*.c   one library per folder
#   <folder>/main_<prog>.c             program $(BUILD)/bin/shmex-<prog>
#                                      (main_shmex.c gives $(BUILD)/bin/shmex)
#   tests/test_*.c                     one check suite each -> $(BUILD)/tests/
#   tests/bench/*.c                    $(BUILD)/bin/shmex-bench
# engine/ and gateway/ link shm/ only; they never link each other.

BUILD ?= build
PREFIX ?= /usr/local
CC ?= cc
CFLAGS ?= -O2 -g
SANITIZER ?=

WARN := -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes \
	-Wmissing-prototypes -Wformat=2 -Wundef -Wvla -Wno-unused-parameter
ALL_CFLAGS = -std=gnu11 $(WARN) $(CFLAGS) -MMD -MP -I. -D_GNU_SOURCE \
	$(PKG_CFLAGS) $(SAN_FLAGS)
ALL_LDFLAGS = $(LDFLAGS) $(SAN_FLAGS)

ifneq ($(SANITIZER),)
SAN_FLAGS := -fsanitize=$(SANITIZER) -fno-omit-frame-pointer
ifeq ($(SANITIZER),undefined)
SAN_FLAGS += -fno-sanitize-recover=all
endif
endif

# pkg-config runs once, lazily, after the deps step has had its chance.
PKGS := liburcu liburcu-memb liburcu-qsbr check expat liblzma jansson
PKG_CFLAGS = $(eval PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS)))$(PKG_CFLAGS)
PKG_LIBS = $(eval PKG_LIBS := $(shell pkg-config --libs $(PKGS)))$(PKG_LIBS)
LIBS = $(PKG_LIBS) -lrt -lpthread -lm

DEPS_STAMP := $(BUILD)/.deps-ok

lib_srcs = $(filter-out $(1)/main_%.c,$(wildcard $(1)/*.c))
SHM_SRCS := $(call lib_srcs,shm)
ENGINE_SRCS := $(call lib_srcs,engine)
GATEWAY_SRCS := $(call lib_srcs,gateway)
SHM_LIB := $(BUILD)/lib/libshmex-shm.a
ENGINE_LIB := $(BUILD)/lib/libshmex-engine.a
GATEWAY_LIB := $(BUILD)/lib/libshmex-gateway.a

prog_name = $(if $(filter shmex,$(1)),shmex,shmex-$(1))
mains = $(patsubst $(1)/main_%.c,%,$(wildcard $(1)/main_*.c))
SHM_PROGS := $(foreach p,$(call mains,shm),$(BUILD)/bin/$(call prog_name,$(p)))
ENGINE_PROGS := $(foreach p,$(call mains,engine),$(BUILD)/bin/$(call prog_name,$(p)))
GATEWAY_PROGS := $(foreach p,$(call mains,gateway),$(BUILD)/bin/$(call prog_name,$(p)))
BENCH_SRCS := $(wildcard tests/bench/*.c)
BENCH_PROG := $(if $(BENCH_SRCS),$(BUILD)/bin/shmex-bench)
TEST_SUPPORT := $(wildcard tests/support_*.c)
TEST_SRCS := $(wildcard tests/test_*.c)
TEST_PROGS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRCS))
STRESS_SRCS := $(wildcard tests/stress_*.c)
STRESS_PROGS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(STRESS_SRCS))

PROGS := $(SHM_PROGS) $(ENGINE_PROGS) $(GATEWAY_PROGS) $(BENCH_PROG)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

.PHONY: all check stress bench run install uninstall clean deps check-loop
all: $(PROGS) $(TEST_PROGS) $(STRESS_PROGS)

deps: $(DEPS_STAMP)
$(DEPS_STAMP): .ci/deps
	@mkdir -p $(@D)
	sh .ci/deps
	@touch $@

$(BUILD)/obj/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(SHM_LIB): $(call obj,$(SHM_SRCS))
$(ENGINE_LIB): $(call obj,$(ENGINE_SRCS))
$(GATEWAY_LIB): $(call obj,$(GATEWAY_SRCS))
$(BUILD)/lib/%.a:
	@mkdir -p $(@D)
	rm -f $@
	$(AR) rcs $@ $^

define prog_rule
$(BUILD)/bin/$(call prog_name,$(2)): $(call obj,$(1)/main_$(2).c) $(3)
	@mkdir -p $$(@D)
	$$(CC) $$(ALL_CFLAGS) -o $$@ $$(filter %.o,$$^) $(3) $$(ALL_LDFLAGS) $$(LIBS)
endef
$(foreach p,$(call mains,shm),$(eval $(call prog_rule,shm,$(p),$(SHM_LIB))))
$(foreach p,$(call mains,engine),$(eval $(call prog_rule,engine,$(p),$(ENGINE_LIB) $(SHM_LIB))))
$(foreach p,$(call mains,gateway),$(eval $(call prog_rule,gateway,$(p),$(GATEWAY_LIB) $(SHM_LIB))))

TEST_LIBS := $(GATEWAY_LIB) $(ENGINE_LIB) $(SHM_LIB)
$(BENCH_PROG): $(call obj,$(BENCH_SRCS) $(TEST_SUPPORT)) $(TEST_LIBS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -o $@ $(filter %.o,$^) $(TEST_LIBS) $(ALL_LDFLAGS) $(LIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(call obj,$(TEST_SUPPORT)) $(TEST_LIBS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -o $@ $(filter %.o,$^) $(TEST_LIBS) $(ALL_LDFLAGS) $(LIBS)

# Tests find programs and the conformance data through the environment.
TEST_ENV = SHMEX_BIN_DIR=$(abspath $(BUILD)/bin) \
	SHMEX_CONFORMANCE_DIR=$(abspath tests/data/conformance)

check: all
	@$(TEST_ENV) sh tests/run-tests.sh $(TEST_PROGS)

check-loop: all
	@n=0; while $(TEST_ENV) sh tests/run-tests.sh $(TEST_PROGS) >/dev/null; \
	do n=$$((n+1)); echo "check-loop: pass $$n"; done; echo "check-loop: failed after $$n passes"

stress: all
	@$(TEST_ENV) sh tests/run-tests.sh $(STRESS_PROGS)

bench: all
	$(BENCH_PROG) all

run: all
	$(BUILD)/bin/shmex

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(filter-out $(BENCH_PROG),$(PROGS)) $(DESTDIR)$(PREFIX)/bin

uninstall:
	rm -f $(foreach p,$(PROGS),$(DESTDIR)$(PREFIX)/bin/$(notdir $(p)))

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
