# libckpt top-level Makefile.
#   make            library (.so + .a + .pc), ckpt tool, kernel suite, examples, benchmarks
#   make test       installs missing Debian packages, builds, runs every test (tests/run.sh)
#   make demo       the main job: the redis-ckpt demo (or the kernel probe)
#   make asan       builds and runs the unit tests with ASan + UBSan
#   make install / uninstall   honour PREFIX and DESTDIR

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig

CC ?= cc
CFLAGS ?= -O2 -g
B ?= build

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wcast-align -Wvla -Wformat=2 -Wpointer-arith -Wundef -Wno-unused-parameter
override CFLAGS += -std=gnu11 $(WARN) -pthread -D_GNU_SOURCE -MMD -MP \
	-Ilibckpt/include -Ilibckpt/src
override LDFLAGS += -pthread

VERSION := $(shell sed -n 's/^\#define CKPT_VERSION_STRING "\(.*\)"/\1/p' libckpt/include/ckpt.h)
SOMAJOR := 0
LIBDEPS := -luring -lzstd -lxxhash

LIB_SRCS := $(wildcard libckpt/src/*.c)
LIB_PIC_OBJS := $(LIB_SRCS:libckpt/src/%.c=$(B)/pic/%.o)
LIB_OBJS := $(LIB_SRCS:libckpt/src/%.c=$(B)/obj/%.o)
SONAME := libckpt.so.$(SOMAJOR)
SHLIB := $(B)/libckpt.so.$(VERSION)
STLIB := $(B)/libckpt.a

TOOL_SRCS := $(wildcard libckpt/tool/*.c)
TOOL := $(B)/ckpt

TEST_UTIL_SRCS := $(wildcard tests/util/*.c)
TEST_UTIL_OBJS := $(TEST_UTIL_SRCS:tests/%.c=$(B)/tests/%.o)
TEST_SRCS := $(wildcard tests/test_*.c)
TESTS := $(TEST_SRCS:tests/%.c=$(B)/tests/%)

BENCH_SRCS := $(wildcard bench/*.c)
BENCHES := $(BENCH_SRCS:bench/%.c=$(B)/bench/%)

REDIS_SRCS := $(wildcard examples/redis-ckpt/*.c)
REDIS := $(if $(REDIS_SRCS),examples/redis-ckpt/redis-ckpt)

all: lib $(TOOL) kernel $(BENCHES) $(REDIS) $(TESTS) $(FI_TESTS)

lib: $(SHLIB) $(STLIB) $(B)/libckpt.pc

$(B)/pic/%.o: libckpt/src/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fPIC -fvisibility=hidden -c -o $@ $<

$(B)/obj/%.o: libckpt/src/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fvisibility=hidden -c -o $@ $<

$(SHLIB): $(LIB_PIC_OBJS) libckpt/libckpt.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=libckpt/libckpt.map \
		-Wl,-z,defs -Wl,-z,relro -Wl,-z,now $(LDFLAGS) -o $@ $(LIB_PIC_OBJS) $(LIBDEPS)
	ln -sf $(notdir $@) $(B)/$(SONAME)
	ln -sf $(SONAME) $(B)/libckpt.so

$(STLIB): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(B)/libckpt.pc: libckpt/libckpt.pc.in libckpt/include/ckpt.h
	@mkdir -p $(@D)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
		-e 's|@VERSION@|$(VERSION)|' $< > $@

$(TOOL): $(TOOL_SRCS) $(STLIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $(TOOL_SRCS) $(STLIB) $(LDFLAGS) $(LIBDEPS)

# Tests, benchmarks and examples link the static library: they may use
# internal (hidden) functions, and need no LD_LIBRARY_PATH.
$(B)/tests/util/%.o: tests/util/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Itests -c -o $@ $<

$(B)/tests/test_%: tests/test_%.c $(TEST_UTIL_OBJS) $(STLIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(TEST_UTIL_OBJS) $(STLIB) $(LDFLAGS) -lcriterion $(LIBDEPS) -lm

# Fault-injection build (libckpt/src/faultinject.h): the library again with
# -DCKPT_FAULT_INJECTION, linked only by tests/fi_test_*.c; the release
# library has no injection hook.
FI_STLIB := $(B)/libckpt-fi.a
LIB_FI_OBJS := $(LIB_SRCS:libckpt/src/%.c=$(B)/obj-fi/%.o)
FI_TESTS := $(patsubst tests/%.c,$(B)/tests/%,$(wildcard tests/fi_test_*.c))
# `all` above was read before FI_TESTS had a value: name them here
all: $(FI_TESTS)

$(B)/obj-fi/%.o: libckpt/src/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -DCKPT_FAULT_INJECTION -fvisibility=hidden -c -o $@ $<

$(FI_STLIB): $(LIB_FI_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(B)/tests/fi_test_%: tests/fi_test_%.c $(TEST_UTIL_OBJS) $(FI_STLIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -DCKPT_FAULT_INJECTION -Itests -o $@ $< $(TEST_UTIL_OBJS) $(FI_STLIB) $(LDFLAGS) -lcriterion $(LIBDEPS) -lm

$(B)/bench/%: bench/%.c $(STLIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $< $(STLIB) $(LDFLAGS) $(LIBDEPS) -lm

examples/redis-ckpt/redis-ckpt: $(REDIS_SRCS) $(wildcard examples/redis-ckpt/*.h) $(STLIB)
	$(CC) $(CFLAGS) -Iexamples/redis-ckpt -o $@ $(REDIS_SRCS) $(STLIB) $(LDFLAGS) $(LIBDEPS) -lm

kernel:
	$(MAKE) -C kernel

deps:
	@scripts/deps.sh

test: deps
	$(MAKE) all
	tests/run.sh

demo: deps
	$(MAKE) all
	scripts/demo.sh

asan:
	$(MAKE) B=build-asan CC=clang CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
		build-asan/libckpt.a $(TESTS:$(B)/%=build-asan/%) $(FI_TESTS:$(B)/%=build-asan/%)
	CKPT_BUILD=build-asan ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp tests/run.sh --unit

install: lib $(TOOL)
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(BINDIR) \
		$(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3 $(DESTDIR)$(MANDIR)/man5
	install -m 0755 $(SHLIB) $(DESTDIR)$(LIBDIR)/
	ln -sf $(notdir $(SHLIB)) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libckpt.so
	install -m 0644 $(STLIB) $(DESTDIR)$(LIBDIR)/
	install -m 0644 libckpt/include/ckpt.h $(DESTDIR)$(INCLUDEDIR)/
	# generated here, not copied from $(B): PREFIX may differ from the build's
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
		-e 's|@VERSION@|$(VERSION)|' libckpt/libckpt.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/libckpt.pc
	chmod 0644 $(DESTDIR)$(PKGCONFIGDIR)/libckpt.pc
	install -m 0755 $(TOOL) $(DESTDIR)$(BINDIR)/
	for f in $(wildcard man/*.1); do install -m 0644 $$f $(DESTDIR)$(MANDIR)/man1/; done
	for f in $(wildcard man/*.3); do install -m 0644 $$f $(DESTDIR)$(MANDIR)/man3/; done
	for f in $(wildcard man/*.5); do install -m 0644 $$f $(DESTDIR)$(MANDIR)/man5/; done

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/$(notdir $(SHLIB)) $(DESTDIR)$(LIBDIR)/$(SONAME) \
		$(DESTDIR)$(LIBDIR)/libckpt.so $(DESTDIR)$(LIBDIR)/libckpt.a \
		$(DESTDIR)$(INCLUDEDIR)/ckpt.h $(DESTDIR)$(PKGCONFIGDIR)/libckpt.pc $(DESTDIR)$(BINDIR)/ckpt
	for f in $(notdir $(wildcard man/*.1)); do rm -f $(DESTDIR)$(MANDIR)/man1/$$f; done
	for f in $(notdir $(wildcard man/*.3)); do rm -f $(DESTDIR)$(MANDIR)/man3/$$f; done
	for f in $(notdir $(wildcard man/*.5)); do rm -f $(DESTDIR)$(MANDIR)/man5/$$f; done

clean:
	rm -rf build build-asan examples/redis-ckpt/redis-ckpt
	$(MAKE) -C kernel clean

.PHONY: all lib kernel deps test demo asan install uninstall clean
-include $(wildcard $(B)/*/*.d $(B)/*/*/*.d)

# ---------------------------------------------------------------- fuzzing
# (issue 7, fuzz/README.md)  make fuzz FUZZ_SECONDS=N runs each libFuzzer
# harness for N seconds, one after the other; the library is rebuilt with
# coverage + ASan/UBSan in build-fuzz/.  build/fuzz/replay_* are the same
# harnesses without libFuzzer: tests/sh/test_fuzz_replay.sh feeds them the
# committed corpus and regression inputs during `make test`.
FUZZ_SECONDS ?= 60
FZ := build-fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_INC := -std=gnu11 -D_GNU_SOURCE -pthread -Ilibckpt/include -Ilibckpt/src -Iexamples/redis-ckpt -Ifuzz
REDIS_LIB_SRCS := $(filter-out %/server.c,$(REDIS_SRCS))

fuzz-lib:
	$(MAKE) B=$(FZ) CC=clang CFLAGS="-O1 -g $(FUZZ_SAN) -fsanitize=fuzzer-no-link" $(FZ)/libckpt.a

$(FZ)/fuzz_image: fuzz/fuzz_image.c fuzz/fixup.h fuzz-lib
	clang -O1 -g $(FUZZ_SAN) -fsanitize=fuzzer $(FUZZ_INC) -o $@ $< $(FZ)/libckpt.a $(LIBDEPS)

$(FZ)/fuzz_resp: fuzz/fuzz_resp.c $(REDIS_SRCS) $(wildcard examples/redis-ckpt/*.h) fuzz-lib
	clang -O1 -g $(FUZZ_SAN) -fsanitize=fuzzer $(FUZZ_INC) -o $@ $< $(REDIS_LIB_SRCS) $(FZ)/libckpt.a $(LIBDEPS) -lm

$(FZ)/fuzz_lazy: fuzz/fuzz_lazy.c fuzz/fixup.h fuzz-lib
	clang -O1 -g $(FUZZ_SAN) -fsanitize=fuzzer $(FUZZ_INC) -o $@ $< $(FZ)/libckpt.a $(LIBDEPS)

fuzz: $(FZ)/fuzz_image $(FZ)/fuzz_resp $(FZ)/fuzz_lazy
	fuzz/run.sh $(FUZZ_SECONDS)

# Seeds for the image harness are made by the engine itself (needs uffd).
$(B)/fuzz/mkseeds: fuzz/mkseeds.c fuzz/fixup.h $(STLIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Ifuzz -o $@ $< $(STLIB) $(LDFLAGS) $(LIBDEPS)

fuzz-seeds: $(B)/fuzz/mkseeds
	$(B)/fuzz/mkseeds fuzz/corpus/image

# Replay builds: the harness code with ASan/UBSan (the library as released).
$(B)/fuzz/replay_image: fuzz/fuzz_image.c fuzz/replay_main.c fuzz/fixup.h $(STLIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fsanitize=address,undefined -fno-sanitize-recover=undefined -Ifuzz \
		-o $@ fuzz/fuzz_image.c fuzz/replay_main.c $(STLIB) $(LDFLAGS) $(LIBDEPS)

$(B)/fuzz/replay_resp: fuzz/fuzz_resp.c fuzz/replay_main.c $(REDIS_SRCS) $(wildcard examples/redis-ckpt/*.h) $(STLIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fsanitize=address,undefined -fno-sanitize-recover=undefined -Ifuzz -Iexamples/redis-ckpt \
		-o $@ fuzz/fuzz_resp.c fuzz/replay_main.c $(REDIS_LIB_SRCS) $(STLIB) $(LDFLAGS) $(LIBDEPS) -lm

$(B)/fuzz/replay_lazy: fuzz/fuzz_lazy.c fuzz/replay_main.c fuzz/fixup.h $(STLIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fsanitize=address,undefined -fno-sanitize-recover=undefined -Ifuzz \
		-o $@ fuzz/fuzz_lazy.c fuzz/replay_main.c $(STLIB) $(LDFLAGS) $(LIBDEPS)

fuzz-replay: $(B)/fuzz/replay_image $(B)/fuzz/replay_resp $(B)/fuzz/replay_lazy

# built by `make` (and so by `make test`) so that the replay test only runs
all: fuzz-replay

.PHONY: fuzz fuzz-lib fuzz-seeds fuzz-replay

# ------------------------------------------------------------------- soak
# (issue 7) tests/soak.sh drives build/tests/soak/soak_trial; not in make test.
$(B)/tests/soak/soak_trial: tests/soak/soak_trial.c $(STLIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $< $(STLIB) $(LDFLAGS) $(LIBDEPS)

# built by `make` too, so that it cannot silently rot
all: $(B)/tests/soak/soak_trial

soak: $(B)/tests/soak/soak_trial
	tests/soak.sh $(SOAK_ARGS)

.PHONY: soak

# ------------------------------------------------------------------- tsan
# (issue 7) ThreadSanitizer on the engine's concurrency: the soak trial
# driver (tests/soak/soak_trial.c: 1-3 writer threads racing checkpoints in
# thread, SIGBUS and fork trap modes, cancels, incremental chains, then a
# restore with its decompression workers) built with -fsanitize=thread,
# library included.  (The criterion test binaries cannot run under TSan:
# criterion 2.4's boxfort arena fails to initialise.)  TSan's shadow
# layout leaves 0x5a0000000000 (CKPT_DEFAULT_BASE) outside application
# memory, so this build moves the default base and the driver's heap into
# TSan's high application range.  Suppressions: tests/tsan.supp
# (kernel-mediated orderings only, each documented there).
TSAN_TRIALS ?= 40
TSAN_DEFS := '-DCKPT_DEFAULT_BASE=((void *)0x7e9000000000ull)' -DSOAK_BASE=0x7ea000000000ull

tsan:
	$(MAKE) B=build-tsan CC=clang CFLAGS="-O1 -g -fsanitize=thread -fno-omit-frame-pointer $(TSAN_DEFS)" \
		build-tsan/libckpt.a build-tsan/tests/soak/soak_trial
	TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp exitcode=66 second_deadlock_stack=1 $(TSAN_EXTRA)" \
		build-tsan/tests/soak/soak_trial --dir /tmp/ckpt-tsan.$$$$ --trials $(TSAN_TRIALS) \
		--kill-pct 0 --cancel-pct 20 --seed 1

.PHONY: tsan

# The same tree with clang: everything must build warning-free with both
# compilers (run by .ci/run after `make test`).
clang-check:
	$(MAKE) B=build-clang CC=clang build-clang/libckpt.a build-clang/libckpt.so.$(VERSION) \
		build-clang/ckpt $(TESTS:$(B)/%=build-clang/%) $(BENCHES:$(B)/%=build-clang/%)

.PHONY: clang-check
