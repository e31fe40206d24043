/* test_unit_symbolize: pc -> function, file:line and mapping, in this process.
 *
 * Checks against facts the test knows independently: a static function of
 * this file resolves to its name and to the __LINE__ of a call inside it (the
 * binary is PIE, so the load bias is exercised; .symtab and DWARF are present
 * because tests build with -g and are not stripped); an always_inline
 * function gives an inlined frame before the real one; libc's qsort (stripped
 * on Debian: .dynsym only) resolves to its name, in a mapping named libc.so
 * with a 160-bit build ID; a library dlopen'd after startup is seen by the
 * next ms_sym_open; C++ names demangle; an address in no mapping and a
 * mapping of a truncated or garbage ELF file give no name and no crash.
 * (The files live in /tmp while mapped; removed at the end.)
 * Linked against the debug archive (internal symbols).
 */
#include "prof/prof.h"
#include "testhelper.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static volatile int sink;

static __attribute__((noinline)) uintptr_t return_address(void) {
    sink++;
    return (uintptr_t)__builtin_return_address(0);
}

/* marker_function: *ra = the return address of a call made on line *line. */
static __attribute__((noinline)) void marker_function(uintptr_t *ra, int *line) {
    *ra = return_address(); *line = __LINE__;
    sink++;
}

/* inlined_leaf is always inlined into inlined_caller: a lookup of the return
 * address inside it must give the inlined frame first (its own line), then
 * the real function at the line of the inlined call. */
static inline __attribute__((always_inline)) void inlined_leaf(uintptr_t *ra, int *line) {
    *ra = return_address(); *line = __LINE__;
}

static __attribute__((noinline)) void inlined_caller(uintptr_t *ra, int *line, int *call_line) {
    inlined_leaf(ra, line); *call_line = __LINE__;
    sink++;
}

static bool ends_with(const char *s, const char *suffix) {
    if (s == NULL) return false;
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static bool is_hex(const char *s, size_t len) {
    if (s == NULL || strlen(s) != len) return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

/* map_junk: maps `bytes` bytes of a file holding `data` executable, so that
 * it shows in /proc/self/maps as r-xp with a path; NULL if the system says no. */
static void *map_junk(const char *path, const void *data, size_t bytes) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return NULL;
    bool ok = write(fd, data, bytes) == (ssize_t)bytes;
    void *p = ok ? mmap(NULL, bytes, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    close(fd);
    return p == MAP_FAILED ? NULL : p;
}

int main(void) {
    uintptr_t ra = 0, ira = 0;
    int line = 0, iline = 0, icall = 0;
    marker_function(&ra, &line);
    inlined_caller(&ira, &iline, &icall);

    symtab_t *st = ms_sym_open();
    CHECK("open", st != NULL && ms_sym_nmaps(st) > 0);
    if (st == NULL) return print_test_summary();

    CHECK_BODY("maps-sorted-disjoint") {
        result = true;
        for (int i = 0; i < ms_sym_nmaps(st); i++) {
            const sym_map_t *m = ms_sym_map(st, i);
            CHECK_TRUE(m != NULL && m->start < m->limit && m->path != NULL && m->build_id != NULL);
            if (i > 0) CHECK_TRUE(ms_sym_map(st, i - 1)->limit <= m->start);
        }
        CHECK_TRUE(ms_sym_map(st, -1) == NULL && ms_sym_map(st, ms_sym_nmaps(st)) == NULL);
    }

    CHECK_BODY("static-function-name-file-line") {
        sym_frame_t f[8];
        int n = ms_sym_lookup(st, ra - 1, f, 8);
        CHECK_TRUE(n >= 1);
        sym_frame_t *last = &f[n - 1];
        fprintf(stderr, "[%s+%#lx %s:%d] ", last->name ? last->name : "?", (unsigned long)last->offset,
                last->file ? last->file : "?", last->line);
        CHECK_TRUE(last->name != NULL && strcmp(last->name, "marker_function") == 0);
        CHECK_TRUE(last->pretty == last->name);
        CHECK_TRUE(last->offset > 0 && last->offset < 256);
        CHECK_TRUE(ends_with(last->file, "test_unit_symbolize.c"));
        CHECK_TRUE(last->line == line);
        CHECK_TRUE(last->map >= 0);
        const sym_map_t *m = ms_sym_map(st, last->map);
        CHECK_TRUE(m != NULL && ra - 1 >= m->start && ra - 1 < m->limit);
        CHECK_TRUE(m != NULL && is_hex(m->build_id, 40));
        /* the symbol's start is the function's address */
        CHECK_TRUE(ra - 1 - last->offset == (uintptr_t)marker_function);
    }

    CHECK_BODY("inlined-frames") {
        sym_frame_t f[8];
        int n = ms_sym_lookup(st, ira - 1, f, 8);
        for (int i = 0; i < n; i++)
            fprintf(stderr, "[%s %s:%d] ", f[i].name ? f[i].name : "?", f[i].file ? f[i].file : "?", f[i].line);
        CHECK_TRUE(n == 2);
        CHECK_TRUE(f[0].name != NULL && strcmp(f[0].name, "inlined_leaf") == 0 && f[0].line == iline);
        CHECK_TRUE(ends_with(f[0].file, "test_unit_symbolize.c") && f[0].map == f[n - 1].map);
        CHECK_TRUE(f[n - 1].name != NULL && strcmp(f[n - 1].name, "inlined_caller") == 0);
        CHECK_TRUE(f[n - 1].line == icall && ends_with(f[n - 1].file, "test_unit_symbolize.c"));
        /* room for one frame: the real function, not the inlined one */
        CHECK_TRUE(ms_sym_lookup(st, ira - 1, f, 1) == 1 && f[0].name != NULL &&
                   strcmp(f[0].name, "inlined_caller") == 0);
    }

    CHECK_BODY("libc-function-dynsym") {
        void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
        void *q = libc != NULL ? dlsym(libc, "qsort") : NULL;
        CHECK_TRUE(q != NULL);
        sym_frame_t f[8];
        int n = ms_sym_lookup(st, (uintptr_t)q + 1, f, 8);
        sym_frame_t *last = &f[n - 1];
        fprintf(stderr, "[%s+%#lx] ", last->name ? last->name : "?", (unsigned long)last->offset);
        CHECK_TRUE(last->name != NULL && strcmp(last->name, "qsort") == 0 && last->offset == 1);
        CHECK_TRUE(last->map >= 0);
        const sym_map_t *m = last->map >= 0 ? ms_sym_map(st, last->map) : NULL;
        CHECK_TRUE(m != NULL && strstr(m->path, "libc.so") != NULL);
        CHECK_TRUE(m != NULL && is_hex(m->build_id, 40));
        if (libc) dlclose(libc);
    }

    CHECK_BODY("outside-any-mapping") {
        sym_frame_t f[4];
        memset(f, 0x55, sizeof f);
        int n = ms_sym_lookup(st, 0x10, f, 4);
        result = n == 1 && f[0].map == -1 && f[0].name == NULL && f[0].pretty == NULL && f[0].file == NULL &&
                 f[0].line == 0;
    }

    CHECK_BODY("vdso") {
        uintptr_t vdso = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
        result = true;
        if (vdso != 0) {
            sym_frame_t f[4];
            ms_sym_lookup(st, vdso, f, 4); /* the ELF header: in the mapping, no function */
            CHECK_TRUE(f[0].map >= 0 && strcmp(ms_sym_map(st, f[0].map)->path, "[vdso]") == 0);
            fprintf(stderr, "[build id %s] ", f[0].map >= 0 ? ms_sym_map(st, f[0].map)->build_id : "?");
        }
    }

    CHECK_BODY("lookup-is-fast-once-loaded") {
        /* the same pcs again: modules loaded, DWARF answers cached */
        sym_frame_t f[8];
        void *q = dlsym(RTLD_DEFAULT, "qsort");
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (int i = 0; i < 100000; i++) {
            ms_sym_lookup(st, ra - 1, f, 8);
            ms_sym_lookup(st, (uintptr_t)q, f, 8);
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        double ns = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 200000;
        fprintf(stderr, "[%.0f ns/repeated lookup] ", ns);
        /* distinct pcs in a module just loaded: the first lookup of each
         * pays for libdw where there is DWARF (informational only) */
        symtab_t *s2 = ms_sym_open();
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (int i = 0; i < 1000; i++) ms_sym_lookup(s2, (uintptr_t)q + (uintptr_t)i * 64, f, 8);
        clock_gettime(CLOCK_MONOTONIC, &b);
        fprintf(stderr, "[%.1f us/first lookup in libc] ",
                ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 1000 / 1000);
        ms_sym_close(s2);
        result = ns < 1000; /* generous: a binary search is tens of ns */
    }
    ms_sym_close(st);

    CHECK_BODY("dlopen-after-start") {
        void *h = dlopen("libdw.so.1", RTLD_NOW | RTLD_LOCAL);
        void *fn = h != NULL ? dlsym(h, "dwfl_begin") : NULL;
        result = true;
        if (fn == NULL) {
            fprintf(stderr, "[libdw.so.1 absent: skipped] ");
        } else {
            symtab_t *s2 = ms_sym_open();
            sym_frame_t f[4];
            int n = ms_sym_lookup(s2, (uintptr_t)fn, f, 4);
            CHECK_TRUE(n >= 1 && f[n - 1].name != NULL && strcmp(f[n - 1].name, "dwfl_begin") == 0);
            CHECK_TRUE(f[n - 1].map >= 0 && strstr(ms_sym_map(s2, f[n - 1].map)->path, "libdw") != NULL);
            ms_sym_close(s2);
        }
    }

    CHECK_BODY("demangle") {
        char buf[64];
        CHECK_TRUE(ms_sym_demangle("_ZN3foo3barEi", buf, sizeof buf) == 13 && strcmp(buf, "foo::bar(int)") == 0);
        CHECK_TRUE(ms_sym_demangle("_ZNSt6vectorIiSaIiEE9push_backERKi", buf, sizeof buf) > 0 &&
                   strcmp(buf, "std::vector<int, std::allocator<int> >::push_back(int const&)") == 0);
        char small[8];
        CHECK_TRUE(ms_sym_demangle("_ZN3foo3barEi", small, sizeof small) == 13 && strcmp(small, "foo::ba") == 0);
        CHECK_TRUE(ms_sym_demangle("strlen", buf, sizeof buf) == 0 && buf[0] == 0);
        CHECK_TRUE(ms_sym_demangle("_Z!!garbage", buf, sizeof buf) == 0);
    }

    CHECK_BODY("malformed-elf-mappings") {
        /* a truncated copy of a real ELF file (headers intact, section table
         * past the end) and a page of garbage after an ELF magic */
        static uint8_t junk[3][8192];
        FILE *self = fopen("/proc/self/exe", "rb");
        CHECK_TRUE(self != NULL && fread(junk[0], 1, sizeof junk[0], self) == sizeof junk[0]);
        if (self) fclose(self);
        memcpy(junk[1], "\177ELF\2\1\1", 7);
        for (size_t i = 7; i < sizeof junk[1]; i++) junk[1][i] = (uint8_t)(i * 131 + 7);
        memcpy(junk[2], junk[0], 64); /* good header, every table offset garbage */
        for (size_t i = 64; i < sizeof junk[2]; i++) junk[2][i] = 0xff;
        void *p[3];
        char path[3][64];
        for (int k = 0; k < 3; k++) {
            snprintf(path[k], sizeof path[k], "/tmp/ms_symtest_%d_%d", (int)getpid(), k);
            p[k] = map_junk(path[k], junk[k], sizeof junk[k]);
        }
        symtab_t *s3 = ms_sym_open();
        CHECK_TRUE(s3 != NULL);
        for (int k = 0; k < 3 && s3 != NULL; k++) {
            if (p[k] == NULL) {
                fprintf(stderr, "[no exec mapping of /tmp: %d skipped] ", k);
                continue;
            }
            sym_frame_t f[4];
            int n = ms_sym_lookup(s3, (uintptr_t)p[k] + 100, f, 4);
            CHECK_TRUE(n == 1 && f[0].map >= 0 && f[0].name == NULL);
            CHECK_TRUE(strstr(ms_sym_map(s3, f[0].map)->path, "ms_symtest_") != NULL);
        }
        ms_sym_close(s3);
        for (int k = 0; k < 3; k++) {
            if (p[k]) munmap(p[k], sizeof junk[k]);
            unlink(path[k]);
        }
        result = true;
    }

    CHECK_BODY("open-close-many") {
        result = true;
        for (int i = 0; i < 50; i++) {
            symtab_t *s = ms_sym_open();
            sym_frame_t f[8];
            CHECK_TRUE(s != NULL && ms_sym_lookup(s, ra - 1, f, 8) >= 1);
            ms_sym_close(s);
        }
    }
    return print_test_summary();
}
