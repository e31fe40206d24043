#!/usr/bin/env bash
# test_lifecycle.sh: memscope leaves a process's life as it would be without
# it: how it ends, what its children hold, what its signals do, what room
# it leaves the program under an address-space limit.
#
# Why: each case is a way a helper session's sweep of real programs found
# memscope changing a program's behaviour, and each fails on the library
# before its fix:
#   pthread_exit   a program whose threads all leave with pthread_exit (its
#                  first one included) ends with status 0; memscope's own
#                  threads (scavenger, HTTP server) kept it alive for ever,
#                  deaf to SIGTERM (CPython's test_threading hung on it)
#   daemon         a daemon child that points its descriptors at /dev/null
#                  does not keep its parent's stderr pipe open: with a copy
#                  kept by memscope, `x=$(prog 2>&1)` waited for the daemon
#   sigpipe        a trace line written to a stderr whose reader has gone
#                  does not kill the program with SIGPIPE
#   rlimit-as      under `ulimit -v`, the heap's reservation leaves the
#                  program room for a mapping of its own
# and cases from a second sweep:
#   atexit         after pthread_exit, the process's exit (an atexit handler
#                  with 128 KiB of locals) ran on the scavenger's 64 KiB
#                  stack with every signal blocked: SIGSEGV
#   pexit-leaks    a leak check at exit after pthread_exit read /proc/self
#                  files that are empty once the first thread has exited:
#                  no roots, every block reported lost, exit status 23
#   http-fd        the HTTP server's socket took descriptor 3 from the
#                  program, and served the program's own clients when the
#                  program closed it and listened there itself
#   exit-signal    1 ms alarms whose handler forks hung the process in the
#                  exit-time leak check (memscope inside malloc)
#   thread-churn   thousands of detached threads that allocate, come and
#                  go: glibc frees the TLS vectors of exited threads with
#                  its stack cache's lock held, and when such a free made
#                  the first span idle, the scavenger's start from it
#                  (pthread_create, which takes that lock) hung the process
#                  (7 runs in 10 with hugepages=0)
#   quiet-free     a process that has had a second thread frees 60 MiB and
#                  then only sleeps: with the scavenger's start left to the
#                  next allocation of pages (thread-churn's fix), nothing
#                  started it with hugepages=0, and RSS stayed at 66 MiB
#   altstack       a signal handler on an 8 KiB alternate stack that
#                  allocates (glibc's malloc lets it): the first sample
#                  whose walk stopped at the signal frame loaded libunwind
#                  there, and dlopen ran off the stack: SIGSEGV
#   altleak        altstack's program in leak-check mode (profile_rate=1,
#                  leaks=reachable): the 4 KiB clearing of the stack below
#                  a refill ran off the 8 KiB alternate stack: SIGSEGV
#   sigunwind      a sample taken in a signal handler loads no library: its
#                  dlopen of libunwind, from a handler that had interrupted
#                  the program's dlopen, entered the loader a second time
#                  (ld.so's assertion, exit status 127), or waited for the
#                  page heap's lock the interrupted malloc held
set -u
. "$(dirname "$0")/prelude.sh"
CC=${CC:-cc}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

cat > "$T/pexit.c" <<'CEOF'
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* with an argument: a second thread outlives main, then leaves too */
static void *late(void *a) {
    for (int i = 0; i < 1000; i++) free(malloc(100));
    return a;
}
int main(int argc, char **argv) {
    enum { N = 100000 };
    static void *v[N];
    for (int i = 0; i < N; i++) v[i] = malloc(64);
    for (int i = 0; i < N; i++) free(v[i]);
    char *p = malloc(4 << 20);
    memset(p, 1, 4 << 20);
    free(p);
    pthread_t t;
    if (argc > 1) pthread_create(&t, NULL, late, NULL);
    printf("main leaves\n");
    pthread_exit(NULL);
}
CEOF
cat > "$T/daemon.c" <<'CEOF'
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(void) {
    printf("started\n");
    fflush(stdout);
    free(malloc(100));
    if (fork() == 0) { /* the daemon: detached from the caller's descriptors */
        int fd = open("/dev/null", O_RDWR);
        dup2(fd, 0), dup2(fd, 1), dup2(fd, 2);
        if (fd > 2) close(fd);
        setsid();
        sleep(5);
        _exit(0);
    }
    return 0;
}
CEOF
cat > "$T/churn.c" <<'CEOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* never writes to stderr itself; its heap cycles make trace lines */
int main(void) {
    usleep(300000); /* the reader of stderr is gone by then */
    for (int i = 0; i < 64; i++) memset(malloc(1 << 20), 1, 1 << 20);
    puts("done");
    return 0;
}
CEOF
cat > "$T/aslimit.c" <<'CEOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
int main(void) {
    for (size_t i = 0; i < ((size_t)40 << 20) / 64; i++) memset(malloc(64), 1, 64);
    void *m = mmap(NULL, (size_t)64 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("mmap: %s\n", m == MAP_FAILED ? "refused" : "ok");
    return 0;
}
CEOF
cat > "$T/atexit.c" <<'CEOF'
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static void at_exit(void) {
    volatile char buf[128 << 10];
    memset((char *)buf, 1, sizeof buf);
    sigset_t cur;
    pthread_sigmask(SIG_SETMASK, NULL, &cur);
    printf("atexit ran, SIGTERM %s, %d\n", sigismember(&cur, SIGTERM) ? "blocked" : "not blocked", buf[1000]);
}
static void *work(void *a) {
    for (int i = 0; i < 100; i++) free(malloc(1000));
    usleep(100000);
    return a;
}
int main(void) {
    atexit(at_exit);
    void *b[200];
    for (int i = 0; i < 200; i++) memset(b[i] = malloc(65536), 1, 65536);
    for (int i = 0; i < 200; i++) free(b[i]);
    pthread_t t;
    pthread_create(&t, NULL, work, NULL);
    pthread_exit(NULL);
}
CEOF
cat > "$T/pexitleaks.c" <<'CEOF'
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
void *keep[10]; /* every block stays reachable from here */
static void *work(void *a) {
    for (int i = 0; i < 100; i++) free(malloc(1000));
    usleep(100000);
    return a;
}
int main(void) {
    for (int i = 0; i < 10; i++) keep[i] = memset(malloc(100 * (i + 1)), 1, 100 * (i + 1));
    pthread_t t;
    pthread_create(&t, NULL, work, NULL);
    pthread_exit(NULL);
}
CEOF
cat > "$T/fd3.c" <<'CEOF'
#include <fcntl.h>
#include <stdio.h>
int main(void) {
    int fd = open("/dev/null", O_RDONLY);
    printf("%d\n", fd);
    return fd == 3 ? 0 : 1;
}
CEOF
cat > "$T/forkalarm.c" <<'CEOF'
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
static void on_alarm(int s) { (void)s; if (fork() == 0) _exit(9); }
static void churn(int n) {
    for (int i = 0; i < n; i++) free(malloc(100 + i % 3000));
    char *b = malloc(4 << 20);
    memset(b, 1, 4 << 20);
    free(b);
}
int main(void) {
    churn(10000);
    signal(SIGALRM, on_alarm);
    int st, kids = 0;
    for (int i = 0; i < 200; i++) { /* a 1 ms alarm at each round; the last ones fire during the exit */
        ualarm(1000, 0);
        churn(300);
        while (waitpid(-1, &st, WNOHANG) > 0) kids++;
    }
    while (waitpid(-1, &st, 0) > 0) kids++;
    printf("%d\n", kids > 0);
    return 0;
}
CEOF
cat > "$T/threadchurn.c" <<'CEOF'
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static void *work(void *a) {
    void *volatile p = malloc((size_t)a % 3000 + 1);
    free(p);
    return NULL;
}
int main(void) {
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    for (int i = 0; i < 6000; i++) {
        pthread_t t;
        while (pthread_create(&t, &at, work, (void *)(size_t)(i * 7)) != 0) usleep(1000);
    }
    usleep(200000);
    puts("done");
    return 0;
}
CEOF
cat > "$T/quietfree.c" <<'CEOF'
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static long rss_kib(void) {
    long pages = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &pages, &res) != 2) return -1;
    fclose(f);
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}
static void *one(void *a) { free(malloc(100)); return a; }
enum { N = 200000 };
static void *v[N];
int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, one, NULL);
    pthread_join(t, NULL);
    for (int i = 0; i < N; i++) { v[i] = malloc(300); memset(v[i], 1, 300); }
    long peak = rss_kib();
    for (int i = 0; i < N; i++) free(v[i]);
    sleep(3);
    printf("%ld %ld\n", peak, rss_kib());
    return 0;
}
CEOF
cat > "$T/altstack.c" <<'CEOF'
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
static volatile int n;
static void *keep[256];
static void on_usr1(int sig) {
    (void)sig;
    int i = n++ & 255;
    free(keep[i]);
    keep[i] = malloc((size_t)(n * 7919) % 300000 + 1);
}
int main(void) {
    stack_t ss = {.ss_sp = malloc(8192), .ss_size = 8192, .ss_flags = 0};
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_ONSTACK;
    if (!ss.ss_sp || sigaltstack(&ss, NULL) != 0 || sigaction(SIGUSR1, &sa, NULL) != 0) return 3;
    for (int i = 0; i < 20000; i++) raise(SIGUSR1);
    printf("%d signals\n", n);
    return 0;
}
CEOF
cat > "$T/sigunwind.c" <<'CEOF'
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static volatile int hits;
static void on_usr1(int sig) { (void)sig; void *volatile p = malloc(64); free(p); hits++; }
int main(void) {
    signal(SIGUSR1, on_usr1);
    for (int i = 0; i < 10; i++) raise(SIGUSR1);
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int loaded = 0;
    while (f && fgets(line, sizeof line, f)) loaded |= strstr(line, "libunwind") != NULL;
    printf("%d signals, libunwind %s\n", hits, loaded ? "loaded" : "not loaded");
    return 0;
}
CEOF
for p in pexit daemon churn aslimit atexit pexitleaks fd3 forkalarm threadchurn quietfree altstack sigunwind; do
    $CC -O2 -pthread -o "$T/$p" "$T/$p.c" || { echo "FAIL: cannot build $p"; exit 1; }
done

# pthread_exit: the process ends with status 0, its output flushed, within
# a few seconds (the scavenger looks at once when a thread with a cache
# exits, the HTTP server at its next one-second tick); timeout's SIGTERM
# would not end it (memscope's threads block every signal), hence -k
for mode in "" "http=127.0.0.1:0" "scavenge_delay_ms=0"; do
    for arg in "" late; do
        t0=$(now)
        out=$(MEMSCOPE=$mode LD_PRELOAD=$LIB timeout -k 1 8 "$T/pexit" $arg 2>/dev/null); rc=$?
        e=$(elapsed "$t0")
        if [ $rc = 0 ] && [ "$out" = "main leaves" ] && awk -v e="$e" 'BEGIN { exit !(e < 4) }'; then
            ok "pthread_exit${arg:+ (a thread outlives main)} with MEMSCOPE='$mode': status 0 in $e s"
        else
            bad "pthread_exit${arg:+ (a thread outlives main)} with MEMSCOPE='$mode': status $rc after $e s, output '$out'"
        fi
    done
done

# daemon: the command substitution returns when the parent exits
for mode in trace=1 stats=1 leaks=reachable; do
    t0=$(now)
    x=$(MEMSCOPE=$mode LD_PRELOAD=$LIB timeout 20 "$T/daemon" 2>&1)
    e=$(elapsed "$t0")
    if awk -v e="$e" 'BEGIN { exit !(e < 3) }' && [ "$(head -1 <<<"$x")" = started ]; then
        ok "daemon under MEMSCOPE=$mode: \$(...) returned in $e s"
    else
        bad "daemon under MEMSCOPE=$mode: \$(...) took $e s (the daemon lives 5 s)"
    fi
done

# sigpipe: stderr is a pipe whose reader exits at once
rc=$( { MEMSCOPE=trace=1 LD_PRELOAD=$LIB timeout 20 "$T/churn" 2> >(exec true) >/dev/null; echo $?; } )
[ "$rc" = 0 ] && ok "trace lines to a closed pipe: status 0" || bad "trace lines to a closed pipe: status $rc (141 is SIGPIPE)"

# rlimit-as: 40 MiB of small blocks, then the program maps 64 MiB itself,
# under a limit of about 293 MiB (glibc's malloc leaves room for it)
base=$( (ulimit -v 300000; "$T/aslimit") 2>&1 )
out=$( (ulimit -v 300000; LD_PRELOAD=$LIB "$T/aslimit") 2>&1 )
if [ "$base" != "mmap: ok" ]; then
    bad "rlimit-as: the program fails even without memscope: $base"
elif [ "$out" = "mmap: ok" ]; then
    ok "rlimit-as: the program's own 64 MiB mapping fits beside the heap"
else
    bad "rlimit-as: $out"
fi

# atexit: the process's exit runs on a thread with a normal stack and the
# program's signals unblocked, after every thread left with pthread_exit
out=$(LD_PRELOAD=$LIB timeout -k 1 10 "$T/atexit" 2>&1); rc=$?
[ $rc = 0 ] && [ "$out" = "atexit ran, SIGTERM not blocked, 1" ] && ok "atexit after pthread_exit: $out" ||
    bad "atexit after pthread_exit: status $rc, output '$out'"

# pexit-leaks: nothing is lost, so the check at exit reports nothing
out=$(MEMSCOPE=leaks=reachable LD_PRELOAD=$LIB timeout -k 1 10 "$T/pexitleaks" 2>&1); rc=$?
[ $rc = 0 ] && ! grep -q "leak of" <<<"$out" && ok "leak check at exit after pthread_exit: none lost, status 0" ||
    bad "leak check at exit after pthread_exit: status $rc: $(grep -m2 'leak of\|roots' <<<"$out" | tr '\n' ' ')"

# http-fd: the program's next descriptor is still 3
out=$(MEMSCOPE=http=127.0.0.1:0 LD_PRELOAD=$LIB timeout 10 "$T/fd3" 2>/dev/null); rc=$?
[ $rc = 0 ] && ok "with the HTTP server on, the program's first open gives 3" || bad "with the HTTP server on, the program's first open gave $out"

# exit-signal: the exit-time leak check finishes while the timer fires
t0=$(now)
MEMSCOPE=leaks=reachable LD_PRELOAD=$LIB timeout -k 1 20 "$T/forkalarm" >/dev/null 2>&1; rc=$?
e=$(elapsed "$t0")
[ $rc = 0 ] && ok "exit-time leak check with 1 ms alarms whose handler forks: status 0 in $e s" ||
    bad "exit-time leak check with 1 ms alarms whose handler forks: status $rc after $e s"

# altstack: as without memscope (sampling on, as by default)
base=$(timeout 20 "$T/altstack" 2>&1); brc=$?
out=$(LD_PRELOAD=$LIB timeout 20 "$T/altstack" 2>&1); rc=$?
if [ $brc != 0 ]; then
    bad "altstack: the program fails even without memscope: status $brc"
elif [ $rc = 0 ] && [ "$out" = "$base" ]; then
    ok "a handler on an 8 KiB alternate stack that allocates: $out"
else
    bad "a handler on an 8 KiB alternate stack that allocates: status $rc (139: SIGSEGV), output '$out'"
fi
for mode in profile_rate=1 leaks=reachable; do
    out=$(MEMSCOPE=$mode LD_PRELOAD=$LIB timeout 20 "$T/altstack" 2>&1); rc=$?
    [ $rc = 0 ] && [ "$out" = "$base" ] && ok "a handler on an 8 KiB alternate stack that allocates, MEMSCOPE=$mode: $out" ||
        bad "a handler on an 8 KiB alternate stack that allocates, MEMSCOPE=$mode: status $rc (139: SIGSEGV), output '$(head -c 200 <<<"$out")'"
done

# sigunwind: every allocation sampled, the handler's too, whose walks stop
# at the signal frame; the program's own walks need no libunwind
out=$(MEMSCOPE=profile_rate=1 LD_PRELOAD=$LIB timeout 20 "$T/sigunwind" 2>&1); rc=$?
[ $rc = 0 ] && [ "$out" = "10 signals, libunwind not loaded" ] && ok "samples in a signal handler load no library: $out" ||
    bad "samples in a signal handler load no library: status $rc, '$out'"

# thread-churn: no start of the scavenger from a free that glibc makes with
# its stack cache locked; hugepages=0, so that the heap's growth does not
# start it first; three runs, each hung in most runs before the fix
for run in 1 2 3; do
    t0=$(now)
    out=$(MEMSCOPE=hugepages=0 LD_PRELOAD=$LIB timeout -k 1 10 "$T/threadchurn" 2>&1); rc=$?
    e=$(elapsed "$t0")
    [ $rc = 0 ] && [ "$out" = done ] && ok "6000 detached threads come and go (run $run): status 0 in $e s" ||
        bad "6000 detached threads come and go (run $run): status $rc after $e s (124: hung)"
done

# quiet-free: the freed pages go back within the scavenge delay (1 s; 3 s
# allowed) in a process that has had a second thread, whatever hugepages
for mode in hugepages=0 hugepages=1; do
    read -r peak after < <(MEMSCOPE=$mode LD_PRELOAD=$LIB timeout -k 1 20 "$T/quietfree" 2>/dev/null)
    if [ -n "${after:-}" ] && [ "${peak:-0}" -gt 50000 ] && [ "$after" -lt 20000 ]; then
        ok "a threaded process frees 60 MiB and sleeps ($mode): RSS $peak -> $after KiB in 3 s"
    else
        bad "a threaded process frees 60 MiB and sleeps ($mode): RSS ${peak:-?} -> ${after:-?} KiB in 3 s (under 20000 wanted)"
    fi
done

exit $fail
