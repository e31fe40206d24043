# memscope build.  Outputs go to build/:
#   build/libmemscope.so, build/libmemscope.a   release library (-O2, hidden visibility)
#   build/debug/libmemscope.{a,so}              MEMSCOPE_DEBUG=3: every structure validated after each operation
#   build/memscope                              the CLI (tools/memscope.c, report.c, pprofread.c)
#   build/tests/*                               one binary per tests/test_*.c
#   build/examples/*                            one binary per examples/*.c
# `make test` builds everything and runs tests/run.sh; `make stress` the long runs in tests/stress/;
# `make bench` runs bench/run.sh.

CC       ?= cc
PREFIX   ?= /usr/local
BUILD    ?= build
VERSION  := 0.1.0

WARN     := -Wall -Wextra -Werror -Wno-unused-parameter
CSTD     := -std=c11 -D_GNU_SOURCE
LIBFLAGS := $(CSTD) $(WARN) -fPIC -fvisibility=hidden -fno-builtin-malloc -fno-builtin-free \
            -fno-builtin-calloc -fno-builtin-realloc -ftls-model=initial-exec -ffunction-sections -Iinclude -Isrc
RELFLAGS := -O2 -g -DNDEBUG
DBGFLAGS := -O1 -g -DMEMSCOPE_DEBUG=3
LDLIBS   := -lpthread -ldl
# The profiler (src/prof): libm for the sample weights, libiberty's C++
# demangler (static and PIC on Debian: nothing more is loaded into preloaded
# processes; its symbols are kept out of the .so's exports).  libunwind,
# libdw and zlib are deliberately not linked: stack.c, symbolize.c and
# pprof.c dlopen them when first needed (libunwind-dev gives the header).
LIBIBERTY := $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/libiberty.a /usr/lib/libiberty.a))
ifeq ($(LIBIBERTY),)
$(error libiberty.a not found: install the Debian package libiberty-dev (scripts/install-deps.sh))
endif
LIBLIBS  := $(LIBIBERTY) $(LDLIBS)
# Unit tests link the library statically, and libunwind: test_unit_unwind
# holds memscope's walker against it.
# They are bound at load, as libmemscope.so is (SOFLAGS' -z now): lazily
# bound, the first call of an import inside a hook (a contended lock's
# futex) ran the loader's resolver, whose saved registers reach 3416 bytes
# down the stack, and test_unit_hookdepth measured a shallow record so (3
# runs in 40 failed, none in 60 with LD_BIND_NOW=1; by hand).
UNIT_LIBS := $(LIBLIBS) -lunwind -lm -Wl,-z,now
# Bound at load (-z now), not at each imported function's first call: the
# loader's lazy binding saves every register some 2.5 KiB down the stack
# of whatever first calls, say, memset, which inside calloc left a new
# block's address deeper than the profiler's hooks clear, where a leak
# check's scan of the stack found it (tests/test_hookstack.c, by hand);
# and no first call inside malloc, a signal handler or a fork reaches the
# loader.
SOFLAGS  := -shared -Wl,-z,now -Wl,-T,mk/text.ld -Wl,-z,max-page-size=0x10000 -Wl,-soname,libmemscope.so -Wl,-z,nodelete -Wl,--exclude-libs,libiberty.a -Wl,--version-script,mk/libmemscope.map
# Relative relocations packed (DT_RELR, glibc 2.36 and binutils 2.38 on):
# the 306 of them took 7 KiB of the first segment, all of it read at load,
# which was 20 KiB resident and is 12 KiB so.  Used where the linker takes it.
RELR     := $(shell printf 'int x, *p = &x;\n' | $(CC) -shared -fPIC -Wl,-z,pack-relative-relocs -x c - -o /dev/null 2>/dev/null && echo -Wl,-z,pack-relative-relocs)
SOFLAGS  += $(RELR)

# Link order is text order, and the kernel maps a library's text 64 KiB at
# a time around each page executed, clipped to the mapping: the first page
# run (.init, at the text's start) maps the text's first 64 KiB, and with
# the page cache's large folios (ext4 since Linux 6.16) the whole folio
# that window ends in, up to the first 64 KiB boundary past it.  So the
# allocator and the sampler come first, right after memscope's own hot
# section and the C library's pthread_atfork stub (mk/text.ld puts both
# ahead of .text), where they share the windows that every process maps
# anyway; what only runs on request (the HTTP server, the leak checker,
# the profile writers, the symbolizer and libiberty's demangler, pulled in
# right after them) comes last, in windows a process that never asks for
# a report leaves unmapped.  With the cold code first, every window of the
# text was mapped (188 KiB of RSS; 108 KiB so).  Within the allocator's and
# the sampler's files, the functions that ordinary programs run are linked
# first of all (-ffunction-sections; mk/text.ld, mk/hot.ld), and every
# segment starts on a 64 KiB boundary (max-page-size): the text's first
# 64 KiB are then one window and one folio, which .init maps and which
# holds all that code, and the text's RSS is 64 KiB (108 KiB with the text
# at 0x5000: .init's window ended inside the folio at 0x10000, mapped up
# to 0x20000; /proc/PID/pagemap of bench/false_sharing.c at its exit).
COLD_SRCS := $(sort $(wildcard src/http/*.c src/leak/*.c)) src/prof/pprof.c src/prof/text.c src/prof/symbolize.c
SRCS     := $(filter-out $(COLD_SRCS),$(sort $(wildcard src/*.c src/*/*.c))) $(COLD_SRCS)
COLD_OBJS := $(COLD_SRCS:src/%.c=$(BUILD)/obj/%.o)
OBJS     := $(SRCS:src/%.c=$(BUILD)/obj/%.o)
DBGOBJS  := $(SRCS:src/%.c=$(BUILD)/dbg/%.o)

TEST_SRCS := $(sort $(wildcard tests/test_*.c))
TEST_BINS := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
EX_SRCS   := $(sort $(wildcard examples/*.c))
EX_BINS   := $(EX_SRCS:examples/%.c=$(BUILD)/examples/%)

.PHONY: all lib test stress bench bench-all clean install uninstall
# Helpers of the .sh tests (tests/prog_*.c): built, never run by themselves.
PROG_SRCS := $(sort $(wildcard tests/prog_*.c))
PROG_BINS := $(PROG_SRCS:tests/%.c=$(BUILD)/tests/%)
# LD_PRELOAD shims of the .sh tests (tests/shim_*.c, e.g. fault injection):
# plain shared objects that never link the allocator.
SHIM_SRCS := $(sort $(wildcard tests/shim_*.c))
SHIM_SOS  := $(SHIM_SRCS:tests/%.c=$(BUILD)/tests/%.so)

all: lib $(BUILD)/memscope $(EX_BINS) $(TEST_BINS) $(PROG_BINS) $(SHIM_SOS)
lib: $(BUILD)/libmemscope.so $(BUILD)/libmemscope.a $(BUILD)/debug/libmemscope.a $(BUILD)/debug/libmemscope.so

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(LIBFLAGS) $(RELFLAGS) -MMD -MP -c $< -o $@
$(BUILD)/dbg/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(LIBFLAGS) $(DBGFLAGS) -MMD -MP -c $< -o $@

# The live page is linked in with .incbin (src/http/page.c): rebuild on edit.
$(BUILD)/obj/http/page.o $(BUILD)/dbg/http/page.o: src/http/page.html

$(BUILD)/libmemscope.so: $(OBJS) mk/libmemscope.map mk/text.ld mk/hot.ld
	$(CC) $(SOFLAGS) -o $@ $(filter-out $(COLD_OBJS),$(OBJS)) $(COLD_OBJS) $(LIBIBERTY) $(LIBLIBS)
$(BUILD)/libmemscope.a: $(OBJS)
	@rm -f $@; ar rcs $@ $(OBJS)
$(BUILD)/debug/libmemscope.a: $(DBGOBJS)
	@mkdir -p $(@D); rm -f $@; ar rcs $@ $(DBGOBJS)
$(BUILD)/debug/libmemscope.so: $(DBGOBJS) mk/libmemscope.map mk/text.ld mk/hot.ld
	@mkdir -p $(@D)
	$(CC) $(SOFLAGS) -o $@ $(DBGOBJS) $(LIBLIBS)

# The CLI never links the allocator: it only finds and preloads it (run), and
# reads profiles with its own pprof reader (report: zlib for gzip, libm).
CLI_SRCS := tools/memscope.c tools/report.c tools/pprofread.c tools/top.c
$(BUILD)/memscope: $(CLI_SRCS) tools/report.h tools/pprofread.h include/memscope.h
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) -O2 -g -Iinclude -DMEMSCOPE_VERSION_STR='"$(VERSION)"' $(CLI_SRCS) -o $@ -lz -lm

# test_unit_hookdepth measures the optimized build's stack depths: the release archive.
$(BUILD)/tests/test_unit_hookdepth: tests/test_unit_hookdepth.c $(BUILD)/libmemscope.a tests/testhelper.h
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) -O1 -g -Iinclude -Isrc $< -o $@ $(BUILD)/libmemscope.a $(UNIT_LIBS)
# test_unit_scavlooks counts the scavenger's looks: its calls of ms_tcache_park_idle, wrapped.
$(BUILD)/tests/test_unit_scavlooks: tests/test_unit_scavlooks.c $(BUILD)/debug/libmemscope.a tests/testhelper.h
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) -O1 -g -DMEMSCOPE_DEBUG=3 -Iinclude -Isrc $< -o $@ -Wl,--wrap=ms_tcache_park_idle $(BUILD)/debug/libmemscope.a $(UNIT_LIBS)
# Tests named test_unit_*.c see internal symbols: they link the debug archive statically.
# Every other test links the shared library the way a user's program would.
$(BUILD)/tests/test_unit_%: tests/test_unit_%.c $(BUILD)/debug/libmemscope.a tests/testhelper.h
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) -O1 -g -DMEMSCOPE_DEBUG=3 -Iinclude -Isrc $< -o $@ $(BUILD)/debug/libmemscope.a $(UNIT_LIBS)
$(BUILD)/tests/%: tests/%.c $(BUILD)/libmemscope.so tests/testhelper.h
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) -O1 -g -Iinclude $< -o $@ -L$(BUILD) -lmemscope -Wl,-rpath,'$$ORIGIN/..' $(LDLIBS)

$(BUILD)/tests/shim_%.so: tests/shim_%.c
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) -O2 -g -fPIC -shared -fvisibility=hidden $< -o $@

$(BUILD)/examples/%: examples/%.c $(BUILD)/libmemscope.so
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) -O2 -g -Iinclude $< -o $@ $(LDLIBS)

# fuzzers and ubsan (mk/check.mk) are run by tests/test_fuzz.sh and tests/test_ubsan.sh
test: all fuzzers ubsan
	./tests/run.sh

# The long runs (minutes): CPython's 46-module list, redis at 500,000
# requests, 15 s of fork torture, full-size stress, faults with 8 threads and
# the real programs with every diagnostic on.  Each tests/stress/*.sh runs;
# the target fails if any failed.
stress: all
	@fail=0; for s in tests/stress/*.sh; do echo "=== $$s"; t0=$$(date +%s); \
	  if bash $$s; then echo "--- PASS $$s ($$(( $$(date +%s) - t0 )) s)"; else echo "--- FAIL $$s"; fail=1; fi; done; \
	  exit $$fail

bench: all
	./bench/run.sh

bench-all: all
	./bench/run_all.sh

clean:
	rm -rf $(BUILD)

include mk/install.mk
include mk/check.mk

-include $(OBJS:.o=.d) $(DBGOBJS:.o=.d)
