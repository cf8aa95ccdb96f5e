# pagewright - one non-recursive GNU Makefile.
#
#   make              build/libpagewright.a, build/libpagewright.so, tools
#   make test         the whole suite: plain, ASan+UBSan, TSan (threaded
#                     tests), the faulting-copy build that must hang, and
#                     the FUSE tests (skipped without /dev/fuse)
#   make bench        the benchmark programs (build/bench/*)
#   make demo         the narrated same-page write demo
#   make fuzz         fuzz ext2 mount and lookup (FUZZ_SECONDS, default 600)
#
# Variants build into build/<variant>/ so they never mix objects.

CC      ?= cc
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Werror
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude -Isrc -Itests -pthread -MMD -MP -g
LDLIBS  := -pthread

SRC       := $(sort $(wildcard src/mm/*.c src/fs/*.c src/block/*.c src/fs/ext2/*.c))
TEST_SRC  := tests/runner.c $(sort $(wildcard tests/unit/*.c tests/stress/*.c))
BENCH_SRC := $(sort $(wildcard bench/bench_*.c))
TOOL_SRC  := $(sort $(wildcard tools/*.c))

# The FUSE server (src/fuse/) and the command link libfuse3, found by
# pkg-config; the library itself never does.  Without libfuse3 the command
# builds with a `mount` that says so.
ifeq ($(shell pkg-config --exists fuse3 && echo yes),yes)
FUSE_CFLAGS := $(shell pkg-config --cflags fuse3)
FUSE_LIBS   := $(shell pkg-config --libs fuse3)
FUSE_SRC    := $(sort $(wildcard src/fuse/*.c))
else
FUSE_CFLAGS := -DPW_NO_FUSE
endif

V_rel   := -O2 -fPIC
V_asan  := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
V_tsan  := -O1 -fsanitize=thread
V_fault := -O1 -DPW_TEST_FAULTING_COPY
VARIANTS := rel asan tsan fault

all: build/libpagewright.a build/libpagewright.so $(if $(TOOL_SRC),build/pagewright)

define variant
build/$(1)/obj/%.o: %.c
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS_BASE) $$(V_$(1)) $$(EXTRA_CFLAGS) -c $$< -o $$@
build/$(1)/obj/src/fuse/%.o build/$(1)/obj/tools/%.o: EXTRA_CFLAGS := $$(FUSE_CFLAGS)
build/$(1)/libpagewright.a: $$(SRC:%.c=build/$(1)/obj/%.o)
	@rm -f $$@
	ar rcs $$@ $$^
build/$(1)/test-runner: $$(TEST_SRC:%.c=build/$(1)/obj/%.o) build/$(1)/libpagewright.a
	$$(CC) $$(V_$(1)) -o $$@ $$^ $$(LDLIBS)
-include $$(wildcard build/$(1)/obj/*/*.d build/$(1)/obj/*/*/*.d build/$(1)/obj/*/*/*/*.d)
endef
$(foreach v,$(VARIANTS),$(eval $(call variant,$(v))))

build/libpagewright.a: build/rel/libpagewright.a
	cp $< $@
build/libpagewright.so: $(SRC:%.c=build/rel/obj/%.o)
	$(CC) -shared -o $@ $^ $(LDLIBS)
build/pagewright: $(TOOL_SRC:%.c=build/rel/obj/%.o) $(FUSE_SRC:%.c=build/rel/obj/%.o) \
		build/rel/libpagewright.a
	$(CC) -o $@ $^ $(FUSE_LIBS) $(LDLIBS)
# The server under AddressSanitizer+UBSan: make test runs the FUSE suite
# over io_uring with it.
build/asan/pagewright: $(TOOL_SRC:%.c=build/asan/obj/%.o) $(FUSE_SRC:%.c=build/asan/obj/%.o) \
		build/asan/libpagewright.a
	$(CC) $(V_asan) -o $@ $^ $(FUSE_LIBS) $(LDLIBS)
# The FUSE tests' client: ordinary system calls on the mount, no pagewright.
build/fuse-check: tests/fuse/fuse_check.c
	$(CC) $(CFLAGS_BASE) -O1 -o $@ $< $(LDLIBS)
build/fuse-random: tests/fuse/fuse_random.c tests/rops.h
	$(CC) $(CFLAGS_BASE) -O1 -o $@ $< $(LDLIBS)
build/bench/%: build/rel/obj/bench/%.o build/rel/libpagewright.a
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(LDLIBS)

# The ext2 fuzz harness: a corpus replayer in the ASan build (make test),
# and a libFuzzer binary built with clang (make fuzz, bounded in make test).
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude -Isrc -pthread -g -O1 \
	-fsanitize=address,undefined -fno-sanitize-recover=undefined
build/asan/fuzz_ext2_replay: tests/fuzz/fuzz_ext2.c build/asan/libpagewright.a
	$(CC) $(FUZZ_CFLAGS) -o $@ $^ $(LDLIBS)
build/fuzz/fuzz_ext2: tests/fuzz/fuzz_ext2.c $(SRC)
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -DPW_LIBFUZZER -o $@ $^ $(LDLIBS)
FUZZ_SECONDS ?= 600
fuzz: build/fuzz/fuzz_ext2
	tests/fuzz/run.sh $(FUZZ_SECONDS)

test: $(foreach v,$(VARIANTS),build/$(v)/test-runner) build/asan/fuzz_ext2_replay \
		build/pagewright build/asan/pagewright build/fuse-check build/fuse-random
	tests/run-all.sh

bench: $(BENCH_SRC:bench/%.c=build/bench/%) build/pagewright

demo: build/pagewright
	build/pagewright demo

clean:
	rm -rf build

.PHONY: all test bench demo clean fuzz
.SECONDARY:
