# check.mk: the builds that check memscope rather than ship it; included by
# the Makefile.  Kept apart from the release and debug builds so that a
# missing sanitizer runtime or clang never breaks `make all`.
#
#   make fuzzers    build/fuzz/fuzz_options  the MEMSCOPE parser (src/options.c,
#                                            src/log.c) with ASan + UBSan + libFuzzer
#                   build/fuzz/fuzz_malloc   the whole allocator, built by clang with
#                                            MEMSCOPE_DEBUG=2, UBSan and libFuzzer's
#                                            coverage, as the process's own malloc (no
#                                            ASan: ASan would replace malloc itself)
#   make fuzz       runs both for FUZZ_SECONDS each (default 300), corpora in
#                   tests/fuzz/corpus-*/ (new inputs are kept in build/fuzz/)
#   make ubsan      build/ubsan/tests/test_unit_*: the unit tests and the debug
#                   allocator they link, all with -fsanitize=undefined and no
#                   recovery (tests/test_ubsan.sh runs them)
#
# Why clang for the fuzzers: libFuzzer ships with clang (Debian
# libclang-rt-14-dev); gcc has no equivalent.  UBSan for the unit tests uses
# $(CC), gcc by default, so they are checked by a second compiler's view of
# undefined behaviour besides clang's in the fuzzers.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 300
FUZZ_SAN     := -fsanitize=undefined -fno-sanitize-recover=all
FUZZOBJS     := $(SRCS:src/%.c=$(BUILD)/fuzz/obj/%.o)
UBSAN_FLAGS  := -fsanitize=undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
UBSANOBJS    := $(SRCS:src/%.c=$(BUILD)/ubsan/obj/%.o)
UNIT_SRCS    := $(sort $(wildcard tests/test_unit_*.c))
UBSAN_BINS   := $(UNIT_SRCS:tests/%.c=$(BUILD)/ubsan/tests/%)

.PHONY: fuzzers fuzz ubsan

fuzzers: $(BUILD)/fuzz/fuzz_options $(BUILD)/fuzz/fuzz_malloc

$(BUILD)/fuzz/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(LIBFLAGS) -O1 -g -DMEMSCOPE_DEBUG=2 $(FUZZ_SAN) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@
$(BUILD)/fuzz/obj/http/page.o: src/http/page.html

$(BUILD)/fuzz/fuzz_malloc: tests/fuzz_malloc.c $(FUZZOBJS)
	$(FUZZ_CC) $(CSTD) $(WARN) -O1 -g $(FUZZ_SAN) -fsanitize=fuzzer -Iinclude $< $(FUZZOBJS) -o $@ $(LIBLIBS)

$(BUILD)/fuzz/fuzz_options: tests/fuzz_options.c src/options.c src/log.c src/internal.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CSTD) $(WARN) -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    -Iinclude -Isrc tests/fuzz_options.c src/options.c src/log.c -o $@

fuzz: fuzzers
	MEMSCOPE_FUZZ_SECONDS=$(FUZZ_SECONDS) MEMSCOPE_FUZZ_KEEP=1 BUILD=$(BUILD) bash tests/test_fuzz.sh

ubsan: $(UBSAN_BINS)

$(BUILD)/ubsan/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(LIBFLAGS) $(DBGFLAGS) $(UBSAN_FLAGS) -MMD -MP -c $< -o $@
$(BUILD)/ubsan/obj/http/page.o: src/http/page.html
$(BUILD)/ubsan/libmemscope.a: $(UBSANOBJS)
	@rm -f $@; ar rcs $@ $(UBSANOBJS)
$(BUILD)/ubsan/tests/test_unit_%: tests/test_unit_%.c $(BUILD)/ubsan/libmemscope.a tests/testhelper.h
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) -O1 -g -DMEMSCOPE_DEBUG=3 $(UBSAN_FLAGS) -Iinclude -Isrc $< -o $@ \
	    $(BUILD)/ubsan/libmemscope.a $(UNIT_LIBS)
# with the scavenger's look wrapped, as in the Makefile's rule for it
$(BUILD)/ubsan/tests/test_unit_scavlooks: tests/test_unit_scavlooks.c $(BUILD)/ubsan/libmemscope.a tests/testhelper.h
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(WARN) -O1 -g -DMEMSCOPE_DEBUG=3 $(UBSAN_FLAGS) -Iinclude -Isrc $< -o $@ \
	    -Wl,--wrap=ms_tcache_park_idle $(BUILD)/ubsan/libmemscope.a $(UNIT_LIBS)

-include $(FUZZOBJS:.o=.d) $(UBSANOBJS:.o=.d)

# every test that can run under memcheck with memscope as the allocator (minutes)
.PHONY: valgrind
valgrind: all
	MEMSCOPE_VALGRIND_ALL=1 BUILD=$(BUILD) bash tests/test_valgrind.sh
