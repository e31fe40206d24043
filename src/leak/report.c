/* report.c: what a leak check found, for people and for tools.
 *
 * Text follows LeakSanitizer's report so that the two read alike and diff
 * well: one paragraph per (class, allocation stack), largest bytes first,
 *
 *   Direct leak of 48 byte(s) in 1 object(s) allocated from:
 *       #0 0x55d1c2a0b1c9 in make_node /src/list.c:12
 *       #1 0x55d1c2a0b2f0 in main /src/list.c:40
 *
 * then "SUMMARY: memscope: N byte(s) leaked in M allocation(s).", as LSan
 * prints it, and memscope's own lines: what is still reachable, the pause,
 * the time and memory of the check, threads that could not be stopped (the
 * result is then incomplete), and, when profile_rate is not 1, that stacks
 * are known only for the sampled blocks (the counts and bytes are exact
 * either way: the mark sees every block).  Stacks start at the caller of
 * malloc, as in memscope's other reports (LSan's start at malloc itself).
 *
 * The pprof form (/debug/pprof/leaks) has one sample per stack with the
 * values leaked_objects/count, leaked_space/bytes (definitely lost) and
 * indirect_objects/count, indirect_space/bytes; default leaked_space.
 * The JSON form feeds the live page's table.  Output goes through a fixed
 * buffer to the descriptor, never through stdio or the heap.
 */
#include "leak.h"

#include <errno.h>
#include "../prof/prof.h"

#include <string.h>
#include <unistd.h>

#define put ms_text_put
#define flush ms_text_flush

static const char *const kind_name[3] = {"Direct", "Indirect", "Reachable"};

static void frames(textout_t *o, symtab_t *st, uint32_t stack) {
    const uintptr_t *pcs;
    uint32_t npcs;
    bool trunc;
    if (stack == UINT32_MAX || !ms_prof_stack_get(stack, &pcs, &npcs, &trunc)) {
        put(o, "    (stack not recorded: the blocks were not sampled; every block has its stack with "
               "MEMSCOPE=profile_rate=1 or leaks=reachable)\n");
        return;
    }
    ms_text_frames(o, st, pcs, npcs, false);
    if (trunc) put(o, "    ... (deeper frames not recorded)\n");
}

static void check_lines(textout_t *o, const ms_leak_result_t *r) {
    const ms_leak_roots_t *t = &r->roots;
    put(o, "memscope: still reachable: %llu byte(s) in %llu block(s)\n",
        (unsigned long long)r->bytes[MS_LEAK_REACHABLE], (unsigned long long)r->objs[MS_LEAK_REACHABLE]);
    /* "stopped for": the longest stop, the pause a thread felt; a check
     * that looked again stopped the threads once per look */
    char stops[200] = "";
    size_t k = 0;
    if (t->nstops > 1)
        k = (size_t)ms_snprintf(stops, sizeof stops,
                                " (the longest of %u stops; %llu us in all; marking %llu us at most in one, %llu us of CPU)",
                                t->nstops, (unsigned long long)(t->pause_ns / 1000),
                                (unsigned long long)(t->held_max_ns / 1000), (unsigned long long)(t->held_max_cpu_ns / 1000));
    if (k < sizeof stops && (t->held || t->held_ns))
        ms_snprintf(stops + k, sizeof stops - k, t->held ? ", through the mark (%llu us of it)" : ", %llu us of it marking",
                    (unsigned long long)(t->held_ns / 1000));
    put(o, "memscope: check: %u of %u thread(s) stopped for %llu us%s; roots %llu KiB (segments %llu, stacks %llu, "
           "TLS %llu, registers %llu); %llu blocks in %llu spans; snapshot %llu ms, mark %llu ms, total %llu ms; "
           "memory %llu KiB\n",
        t->nstopped, t->nthreads, (unsigned long long)(t->pause_max_ns / 1000), stops,
        (unsigned long long)((t->seg_bytes + t->stack_bytes + t->tls_bytes + t->reg_bytes) >> 10),
        (unsigned long long)(t->seg_bytes >> 10), (unsigned long long)(t->stack_bytes >> 10),
        (unsigned long long)(t->tls_bytes >> 10), (unsigned long long)(t->reg_bytes >> 10),
        (unsigned long long)r->nblocks, (unsigned long long)r->nspans,
        (unsigned long long)(r->snapshot_ns / 1000000), (unsigned long long)(r->mark_ns / 1000000),
        (unsigned long long)(r->total_ns / 1000000), (unsigned long long)(r->mark_bytes >> 10));
    if (ms_opt.leaks_mmap && t->mmap_unsure)
        put(o, "memscope: leaks_mmap: INCOMPLETE: %llu KiB of the program's own mappings read, not all (memscope could "
               "not list all of its own mappings, or memory was refused): blocks only they reference may be reported "
               "as lost\n",
            (unsigned long long)(t->mmap_bytes >> 10));
    else if (ms_opt.leaks_mmap)
        put(o, "memscope: leaks_mmap: read %llu KiB of the program's own %s mappings (%zu range(s), resident pages)\n",
            (unsigned long long)(t->mmap_bytes >> 10),
            ms_opt.leaks_mmap == LEAKS_MMAP_SHARED ? "private and shared" : "private", t->nmmaps);
    if (r->changed_objs > r->unconfirmed_objs)
        put(o, "memscope: %llu block(s) allocated or freed during the check were left out (counted reachable)\n",
            (unsigned long long)(r->changed_objs - r->unconfirmed_objs));
    if (r->rescans)
        put(o, "memscope: the mark ran with the program going on; %u stop(s) rescanned the %llu page(s) it wrote "
               "meanwhile%s\n",
            r->rescans, (unsigned long long)r->rescan_pages, r->exact ? ", the last one to the end" : "");
    if (r->looks > 1)
        put(o, "memscope: the check looked %d times (threads ran during it) and reports the blocks lost at every "
               "look; %llu block(s) lost at the last look only were left out (counted reachable)\n",
            r->looks, (unsigned long long)r->unconfirmed_objs);
    if (t->nunstopped) {
        put(o, "memscope: INCOMPLETE: %u thread(s) did not stop (signal blocked, stopped, or too many threads):",
            t->nunstopped);
        for (uint32_t i = 0; i < t->nunstopped && i < MS_LEAK_LIST_TIDS; i++) put(o, " %d", t->unstopped_tids[i]);
        put(o, "; their registers were not scanned%s: blocks they alone reference may be reported as lost\n",
            t->nstack_only ? " (stacks of those in a system call were)" : " nor their stacks");
    }
    if (r->log_overflow)
        put(o, "memscope: INCOMPLETE: too many allocations during the check to track; a block allocated during it "
               "may be reported as lost\n");
    if (r->rate != 1 && r->objs[0] + r->objs[1])
        put(o, "memscope: stacks recorded for %llu of %llu lost block(s) (profile_rate=%lld samples; exact with "
               "MEMSCOPE=leaks=reachable or profile_rate=1)\n",
            (unsigned long long)(r->objs[0] + r->objs[1] - r->unsampled_objs),
            (unsigned long long)(r->objs[0] + r->objs[1]), (long long)r->rate);
}

int ms_leak_write_text(int fd, const ms_leak_result_t *r, int max_groups) {
    ms_no_sample++;
    textout_t o = {.fd = fd};
    uint64_t lost_objs = r->objs[0] + r->objs[1], lost_bytes = r->bytes[0] + r->bytes[1];
    symtab_t *st = r->ngroups ? ms_sym_open() : NULL;
    if (lost_objs) {
        put(&o, "=================================================================\n");
        put(&o, "==%d==memscope: leak check: detected memory leaks (by reachability)\n", (int)getpid());
    }
    int shown = 0;
    for (size_t i = 0; i < r->ngroups && shown < max_groups; i++, shown++) {
        const ms_leak_group_t *g = &r->groups[i];
        put(&o, "\n%s leak of %llu byte(s) in %llu object(s) allocated from:\n", kind_name[g->kind],
            (unsigned long long)g->bytes, (unsigned long long)g->objs);
        frames(&o, st, g->stack);
    }
    if ((size_t)shown < r->ngroups) put(&o, "\n... %zu more stack(s) not shown\n", r->ngroups - (size_t)shown);
    if (lost_objs) {
        put(&o, "\nSUMMARY: memscope: %llu byte(s) leaked in %llu allocation(s).\n", (unsigned long long)lost_bytes,
            (unsigned long long)lost_objs);
        put(&o, "memscope: definitely lost: %llu byte(s) in %llu block(s); indirectly lost: %llu byte(s) in %llu "
                "block(s)\n",
            (unsigned long long)r->bytes[0], (unsigned long long)r->objs[0], (unsigned long long)r->bytes[1],
            (unsigned long long)r->objs[1]);
    } else {
        put(&o, "memscope: leak check: no leaks found (by reachability)\n");
    }
    check_lines(&o, r);
    flush(&o);
    if (st) ms_sym_close(st);
    ms_no_sample--;
    return 0;
}

int ms_leak_write_pprof(int fd, const ms_leak_result_t *r) {
    static const char *const types[4][2] = {
        {"leaked_objects", "count"}, {"leaked_space", "bytes"}, {"indirect_objects", "count"}, {"indirect_space", "bytes"}};
    size_t bytes = ((r->ngroups + 1) * sizeof(prof_csample_t) + MS_PAGE_MASK) & ~MS_PAGE_MASK;
    size_t cap = 16;
    while (cap < 2 * r->ngroups + 2) cap *= 2;
    size_t hbytes = (cap * sizeof(uint32_t) + MS_PAGE_MASK) & ~MS_PAGE_MASK;
    prof_csample_t *s = ms_os_alloc(bytes);
    uint32_t *h = ms_os_alloc(hbytes); /* stack -> sample index + 1 */
    if (!s || !h) {
        ms_os_free(s, bytes), ms_os_free(h, hbytes);
        return -1;
    }
    /* one sample per stack: a stack with both direct and indirect blocks has two groups */
    size_t n = 0;
    for (size_t i = 0; i < r->ngroups; i++) {
        const ms_leak_group_t *g = &r->groups[i];
        size_t k = (size_t)(((uint64_t)g->stack * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
        while (h[k] && s[h[k] - 1].v[7] != (int64_t)g->stack) k = (k + 1) & (cap - 1);
        size_t j = h[k] ? h[k] - 1 : n;
        if (j == n) {
            h[k] = (uint32_t)n + 1;
            s[n] = (prof_csample_t){.v[7] = (int64_t)g->stack};
            bool trunc;
            if (g->stack == UINT32_MAX || !ms_prof_stack_get(g->stack, &s[n].pcs, &s[n].npcs, &trunc))
                s[n].pcs = NULL, s[n].npcs = 0;
            n++;
        }
        s[j].v[g->kind * 2] += (int64_t)g->objs;
        s[j].v[g->kind * 2 + 1] += (int64_t)g->bytes;
    }
    char comment[256];
    ms_snprintf(comment, sizeof comment,
                "memscope leak check: %llu byte(s) lost in %llu block(s); %llu byte(s) still reachable; longest pause %llu us%s",
                (unsigned long long)(r->bytes[0] + r->bytes[1]), (unsigned long long)(r->objs[0] + r->objs[1]),
                (unsigned long long)r->bytes[2], (unsigned long long)(r->roots.pause_max_ns / 1000),
                r->roots.nunstopped ? "; INCOMPLETE: some threads did not stop" : "");
    prof_custom_t c = {.types = types, .ntypes = 4, .default_type = "leaked_space",
                       .period_type = {"space", "bytes"}, .period = r->rate > 0 ? r->rate : 1,
                       .samples = s, .n = n, .comment = comment, .time_ns = r->time_ns};
    int rc = ms_prof_write_custom(fd, &c, true);
    ms_os_free(s, bytes);
    ms_os_free(h, hbytes);
    return rc;
}

static void json_str(textout_t *o, const char *s) {
    put(o, "\"");
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') put(o, "\\%c", ch);
        else if (ch < 0x20) put(o, "\\u%04x", ch);
        else put(o, "%c", ch);
    }
    put(o, "\"");
}

int ms_leak_write_json(int fd, const ms_leak_result_t *r, int max_groups) {
    ms_no_sample++;
    textout_t o = {.fd = fd};
    symtab_t *st = r->ngroups ? ms_sym_open() : NULL;
    put(&o, "{\"direct_objects\":%llu,\"direct_bytes\":%llu,\"indirect_objects\":%llu,\"indirect_bytes\":%llu,"
            "\"reachable_objects\":%llu,\"reachable_bytes\":%llu,\"pause_us\":%llu,\"pause_max_us\":%llu,\"held_max_us\":%llu,\"held_max_cpu_us\":%llu,"
            "\"stops\":%u,\"held\":%s,\"looks\":%d,\"rescans\":%u,\"exact\":%s,\"total_ms\":%llu,\"mmap_bytes\":%llu,\"mmap_complete\":%s,"
            "\"threads\":%u,\"stopped\":%u,\"complete\":%s,\"exact_stacks\":%s,\"groups\":[",
        (unsigned long long)r->objs[0], (unsigned long long)r->bytes[0], (unsigned long long)r->objs[1],
        (unsigned long long)r->bytes[1], (unsigned long long)r->objs[2], (unsigned long long)r->bytes[2],
        (unsigned long long)(r->roots.pause_ns / 1000), (unsigned long long)(r->roots.pause_max_ns / 1000),
        (unsigned long long)(r->roots.held_max_ns / 1000), (unsigned long long)(r->roots.held_max_cpu_ns / 1000), r->roots.nstops, r->roots.held ? "true" : "false", r->looks, r->rescans, r->exact ? "true" : "false", (unsigned long long)(r->total_ns / 1000000),
        (unsigned long long)r->roots.mmap_bytes,
        ms_opt.leaks_mmap && r->roots.mmap_unsure ? "false" : "true",
        r->roots.nthreads, r->roots.nstopped, r->roots.nunstopped || r->log_overflow ? "false" : "true",
        r->rate == 1 ? "true" : "false");
    for (size_t i = 0; i < r->ngroups && (int)i < max_groups; i++) {
        const ms_leak_group_t *g = &r->groups[i];
        put(&o, "%s{\"kind\":\"%s\",\"objects\":%llu,\"bytes\":%llu,\"where\":", i ? "," : "",
            g->kind == MS_LEAK_DIRECT ? "direct" : "indirect", (unsigned long long)g->objs,
            (unsigned long long)g->bytes);
        /* the first frame with a name, for the table */
        const uintptr_t *pcs;
        uint32_t npcs;
        bool trunc;
        const char *name = NULL;
        char buf[64];
        if (g->stack != UINT32_MAX && ms_prof_stack_get(g->stack, &pcs, &npcs, &trunc)) {
            for (uint32_t k = ms_sym_first_frame(st, pcs, npcs); k < npcs && !name; k++) {
                sym_frame_t fr[8];
                int n = st ? ms_sym_lookup(st, pcs[k] - 1, fr, 8) : 0;
                if (n > 0) name = fr[n - 1].pretty ? fr[n - 1].pretty : fr[n - 1].name;
                if (!name) ms_snprintf(buf, sizeof buf, "0x%lx", (unsigned long)(pcs[k] - 1)), name = buf;
            }
        }
        json_str(&o, name ? name : "(not sampled)");
        put(&o, "}");
    }
    put(&o, "]}\n");
    flush(&o);
    if (st) ms_sym_close(st);
    ms_no_sample--;
    return 0;
}

static __attribute__((noinline)) bool leak_exit(int fd, const ms_leak_self_t *self) {
    ms_leak_result_t *r = ms_leak_check(self, true);
    if (!r) {
        ms_printf_fd(fd, "memscope: leak check: %s; no report\n", ms_leak_why());
        return false;
    }
    bool lost = r->objs[0] + r->objs[1] > 0;
    /* A check at exit that finds nothing says nothing, as LeakSanitizer:
     * build tools capture a program's stderr with its stdout (cmake took
     * memscope's three lines for the name of the processor, by a helper
     * session).  So does one that could not stop every thread, or track
     * every block allocated during it: what it missed can only make blocks
     * look lost, never hide one (node and Chromium, whose threads block
     * every signal, printed four lines at every exit, "no leaks found"
     * among them).  trace=1 or stats=1 ask for memscope's lines, and they
     * show as well. */
    if (lost || ms_opt.trace || ms_opt.stats) ms_leak_write_text(fd, r, 50);
    ms_leak_result_free(r);
    return lost;
}

/* The entry points keep everything in thread-local memory across the
 * register spill, so that the compiler has no value to hold in a
 * callee-saved register there (it would save the caller's first, out of
 * the spill's sight). */
static __thread ms_leak_self_t entry_self __attribute__((tls_model("initial-exec")));

__attribute__((noinline)) bool ms_leak_exit(int fd) {
    entry_self.arg = fd;
    MS_LEAK_SELF(entry_self);
    return leak_exit((int)entry_self.arg, &entry_self);
}

static __attribute__((noinline)) long check_leaks(int fd, const ms_leak_self_t *self) {
    ms_ensure_init();
    int saved = errno; /* the stop signal's futex waits and /proc reads are not the caller's business */
    ms_held_t old;
    ms_hold(&old);
    ms_leak_result_t *r = ms_leak_check(self, false);
    long n = -1;
    if (!r) {
        ms_warn("memscope: leak check: %s; no report", ms_leak_why());
    } else {
        if (fd >= 0) ms_leak_write_text(fd, r, 50);
        n = (long)(r->objs[0] + r->objs[1]);
        ms_leak_result_free(r);
    }
    ms_release(&old);
    errno = saved;
    return n;
}

/* memscope_check_leaks: the program's callee-saved registers must be read
 * before any compiled code can save one of them out of sight (GCC keeps a
 * GOT address in rbx even in a two-line entry), so on x86-64 the entry is
 * written in assembly: it stores rbx, the caller's rbp and r12-r15 in its
 * frame and passes them, with the caller's stack pointer, to
 * ms_leak_check_entry. */
__attribute__((used)) long ms_leak_check_entry(int fd, const uintptr_t *regs, uintptr_t lo) {
    ms_leak_self_t self = {.lo = lo};
    for (int i = 0; i < 6; i++) self.regs[i] = regs[i];
    return check_leaks(fd, &self);
}
#if defined(__x86_64__)
__asm__(".text\n"
        ".globl memscope_check_leaks\n"
        ".type memscope_check_leaks, @function\n"
        "memscope_check_leaks:\n"
        ".cfi_startproc\n"
        "  push %rbp\n"
        ".cfi_def_cfa_offset 16\n"
        ".cfi_offset %rbp, -16\n"
        "  mov %rsp, %rbp\n"
        ".cfi_def_cfa_register %rbp\n"
        "  sub $48, %rsp\n"
        "  mov %rbx, 0(%rsp)\n"
        "  mov 0(%rbp), %rax\n"
        "  mov %rax, 8(%rsp)\n"
        "  mov %r12, 16(%rsp)\n"
        "  mov %r13, 24(%rsp)\n"
        "  mov %r14, 32(%rsp)\n"
        "  mov %r15, 40(%rsp)\n"
        "  mov %rsp, %rsi\n"
        "  lea 16(%rbp), %rdx\n"
        "  call ms_leak_check_entry\n"
        "  leave\n"
        ".cfi_def_cfa %rsp, 8\n"
        "  ret\n"
        ".cfi_endproc\n"
        ".size memscope_check_leaks, .-memscope_check_leaks\n");
#else
MEMSCOPE_API __attribute__((noinline)) long memscope_check_leaks(int fd) {
    entry_self.arg = fd;
    MS_LEAK_SELF(entry_self);
    return check_leaks((int)entry_self.arg, &entry_self);
}
#endif
