/* prog_scavstart.c: the scavenger thread when its first start fails.
 *
 * Why: under an address-space limit a program may hold nearly all of it
 * for a moment (GNU sort sizes its buffer from the limit), and the
 * scavenger's start, at the first span left idle, fails for want of room
 * for its stack.  memscope must try again later rather than give the
 * thread up, and must not print about a failure that passed: a line on
 * stderr is output the program never gave under glibc (sort under
 * `ulimit -v 13000` met it in 3 runs of 60).  A failure that lasts is
 * warned of, once.  tests/test_scavenger.sh runs this program and reads
 * its stderr:
 *
 *   prog_scavstart passing   the first start fails; once room is back, the
 *                            next span left idle (after the retry delay)
 *                            starts the thread; no line on stderr.
 *   prog_scavstart lasting   every start fails for 6.6 s, one try each 1.1 s;
 *                            one warning on stderr.
 *
 * The room goes by lowering RLIMIT_AS to what the process maps plus a
 * little and filling that little with PROT_NONE mappings, so every mmap
 * fails, the thread's stack's included.  Blocks of 272 KiB are allocated
 * first and freed one at a time: each free leaves a span idle, which is
 * what starts the thread.  A failed pthread_create leaves glibc counting
 * the process as one that has had threads (__libc_single_threaded), and
 * there a free only asks for the start, which the next allocation makes
 * (scavenger.c: start_here): so each free is followed by an allocation
 * (then_alloc), as in any program that goes on working.  Exits 0 when the
 * thread is there (passing) or absent (lasting) as expected.
 */
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define NBLOCKS 10
#define BLOCK (272 << 10) /* large (above 256 KiB), and 10 of them keep the heap below the
                            * 4 MiB that starts the thread for huge pages (scavenger.c: on_grow) */
#define FILL_MAX 4096

static bool scavenger_running(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[300], comm[64] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(comm, sizeof comm, f)) found = strncmp(comm, "memscope-scvg", 13) == 0;
        fclose(f);
    }
    closedir(d);
    return found;
}

static size_t vm_size(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %zu kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb << 10;
}

static void *fill[FILL_MAX];
static size_t fill_len[FILL_MAX], nfill;

/* no_room: every mmap fails from now on (the limit just above what is
 * mapped, the rest taken); false if that could not be arranged */
static bool no_room(void) {
    struct rlimit rl = {vm_size() + (1 << 20), RLIM_INFINITY};
    if (rl.rlim_cur <= (1 << 20) || setrlimit(RLIMIT_AS, &rl) != 0) return false;
    for (size_t len = 1 << 20; len >= 4096 && nfill < FILL_MAX;) {
        void *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            len /= 2;
            continue;
        }
        fill[nfill] = p, fill_len[nfill++] = len;
    }
    void *probe = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (probe != MAP_FAILED) return false;
    return true;
}

static void room_back(void) {
    while (nfill) {
        nfill--;
        munmap(fill[nfill], fill_len[nfill]);
    }
    struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
    setrlimit(RLIMIT_AS, &rl);
}

/* then_alloc: an allocation after a free, which takes the span that free
 * left idle (no mapping needed) */
static void then_alloc(void) {
    void *volatile p = malloc(BLOCK);
    free(p);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv) {
    bool lasting = argc > 1 && strcmp(argv[1], "lasting") == 0;
    if (argc < 2 || (!lasting && strcmp(argv[1], "passing") != 0)) {
        fprintf(stderr, "usage: prog_scavstart passing|lasting\n");
        return 2;
    }
    printf("prog_scavstart %s\n", argv[1]); /* stdout's buffer, before the room goes */
    fflush(stdout);
    if (scavenger_running()) {
        printf("FAIL: the scavenger runs before any span was idle\n");
        return 1;
    }
    char *b[NBLOCKS];
    for (int i = 0; i < NBLOCKS; i++) {
        b[i] = malloc(BLOCK);
        if (!b[i]) {
            printf("FAIL: malloc of %d bytes\n", BLOCK);
            return 1;
        }
        memset(b[i], i, BLOCK);
    }
    if (scavenger_running()) {
        printf("FAIL: the scavenger started before any span was idle (the check cannot tell)\n");
        return 1;
    }
    if (!no_room()) {
        printf("FAIL: cannot take the address space away (to make the start fail)\n");
        return 1;
    }
    free(b[0]); /* a span idle: the start, which fails */
    int tries = lasting ? 7 : 1;
    for (int i = 1; i < tries; i++) {
        sleep_ms(1100);
        free(b[i]);
        then_alloc();
    }
    bool early = scavenger_running();
    room_back();
    if (early) {
        printf("FAIL: the scavenger started with no room for its stack (the check cannot tell)\n");
        return 1;
    }
    if (lasting) {
        printf("ok: %d starts failed, the scavenger is not running\n", tries);
        for (int i = tries; i < NBLOCKS; i++) free(b[i]);
        return 0;
    }
    free(b[1]); /* before the retry delay: no try */
    then_alloc();
    bool too_soon = scavenger_running();
    sleep_ms(1100);
    free(b[2]); /* after it: the start, which now succeeds */
    then_alloc();
    bool started = scavenger_running();
    for (int i = 3; i < NBLOCKS; i++) free(b[i]);
    if (too_soon) printf("FAIL: a start was tried again before the retry delay\n");
    if (!started) printf("FAIL: the scavenger did not start once there was room\n");
    if (too_soon || !started) return 1;
    printf("ok: the first start failed, the scavenger started once there was room\n");
    return 0;
}
