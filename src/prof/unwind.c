/* unwind.c: the profiler's own stack walker, for x86-64 frames whose call
 * frame information is plain.
 *
 * Why not libunwind alone.  With every allocation recorded (leak-check
 * mode, profile_rate=1) the stack walk is most of an allocation's cost:
 * libunwind's cached walk (unw_backtrace) spent 790 instructions on
 * st_churn's stack of seven frames (callgrind), validating every read
 * through its accessors and filling a cursor of every register.  A frame of code built by gcc or
 * clang almost always says only three things: the canonical frame address
 * (CFA: the stack pointer before the call) is rsp or rbp plus a constant,
 * the return address is at CFA-8, and rbp is saved at CFA plus a constant
 * or not at all (a function that realigns its stack saves the CFA below
 * rbp, and rbp at rbp).  That is all a walk needs, so it is all this keeps: a
 * recipe of 8 bytes per return address, found once from the object's
 * .eh_frame_hdr and .eh_frame and then reused from a table shared by every
 * thread.  A warm frame costs a table probe, one or two checked reads and a
 * few adds.
 *
 * What it refuses, and then libunwind walks the whole stack instead, so the
 * result is libunwind's or the same as libunwind's (but for a few ms after a
 * dlclose, below): a return address in no object or in one without
 * .eh_frame_hdr, a binary-search table not of the usual encoding, a CFA or
 * rbp or return address given by another register or by an expression
 * (but the two that frames realigning the stack use: CFA = the word at
 * rbp + n, rbp saved at rbp + n), signal frames (the 'S' augmentation, or
 * a return address at rt_sigreturn's instructions), 64-bit .eh_frame
 * lengths, DW_CFA_set_loc and any opcode not listed in run().
 * tests/test_unit_unwind.c holds the walk against libunwind's on the shapes
 * that matter (deep recursion, VLA frames whose CFA is rbp, callbacks from
 * libc, a thread, realigned frames, replays, a signal handler, dlclose and
 * dlopen), tests/test_contexts.c runs samples where no walker can finish
 * (makecontext, signal handlers), and debug builds compare the two walkers
 * on every capture until an object is unloaded (libunwind keeps stale
 * recipes then).
 *
 * Replays.  A loop's mallocs walk the same stack again and again.  A walk
 * into a thread's own buffer keeps the list of words it read whose values
 * counted (every return address, a CFA saved below rbp, an rbp that a
 * later frame's CFA came from), and the range all its reads lay in; the
 * next walk from the same place, if that range is known readable, only
 * reads those words again, and if none changed it gives the same frames,
 * because a walk is a function of its start and of those words.  A warm
 * replay is a load and a compare per word (110 instructions a capture on
 * st_churn, against 218 when every word read went through the walk's
 * checks again).  A walk from elsewhere that reaches a frame of the last
 * one, standing where it stood, with the words from there on unchanged,
 * ends with the last walk's frames (a splice, below): most of a real
 * program's mallocs share their outer frames with the one before.
 *
 * Memory.  Stack words are read from the range the walk has found readable
 * (the caller's page, then each page above it once ms_stack_read, the same
 * check libunwind's reads go through, has proven it), and each CFA must lie
 * above the last, so a bad recipe or a corrupt stack ends the walk, never
 * the program.  Unwind tables are read inside dl_iterate_phdr's callback,
 * so that no dlclose can unmap them meanwhile, and from the object's file
 * (pread) for the process's first recipes, so that a small program's
 * samples do not make the C library's tables resident (src_t).
 *
 * The recipe table.  Entries of two words in pairs (two places for each
 * return address), written by any thread without a lock: an entry is the
 * recipe and a tag (the address xor the recipe), and a reader that finds
 * the tag wrong for its address, a torn write included, looks the recipe
 * up afresh.  (4,096 entries direct-mapped missed once in six captures in
 * cc1plus, and each miss is a walk of the loaded objects.)  The table
 * grows with the program: it starts at 256 entries (4 KiB, one page) and
 * is replaced by one four times larger whenever a quarter of its entries'
 * worth of recipes have been entered since it was made, up to 16,384 (256
 * KiB).  A return address hashes anywhere in the table, so made at full
 * size a small program's dozen addresses made six or seven of its pages
 * resident (24-28 KiB, by hand).  A replaced table is kept, never freed (a
 * walk may still be reading it; the ones kept add up to less than a third
 * of the current one), and the recipes in it are found again as they are
 * met.  The table's address and size are one word, read once a frame.
 * Objects unloaded by dlclose leave stale recipes under addresses that may
 * be reused by the next object mapped there: the table is emptied, and
 * replays of walks made before are void, when dl_iterate_phdr's count of
 * unloads has moved, which a walk looks at once per tick of the coarse
 * clock (fresh).
 *
 * Forks.  Only what takes the loader's lock or empties the table (finding
 * a recipe, looking for unloads) is counted as a capture a fork waits for
 * (stack.h: ms_stack_guard_enter); a warm walk reads the thread's stack
 * and the table and writes its own buffer, which a fork cannot leave
 * half-done for the child, and goes without the two locked instructions.
 */
#include "stack.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__)


/* A recipe, packed: CFA offset (signed 24 bits, in bytes), rbp's save slot
 * relative to the CFA (signed 16 bits), flags. */
#define R_CFA_RBP  1u /* CFA = rbp + off (else rsp + off) */
#define R_RBP_SAVED 2u
#define R_LAST     4u /* return address undefined: the outermost frame */
#define R_VALID    8u /* in every recipe found, so that none is 0 (an empty entry) */
#define R_REFUSED  16u /* a frame this walker gives way on (never 0: 0 is an empty entry) */
#define R_CFA_DEREF 32u /* CFA = the word at rbp + off (a frame that realigned its stack) */
#define R_RBP_AT_RBP 64u /* rbp saved at rbp + its offset, not at CFA + it */
#define R_FORK     128u /* never stored: no recipe found, as a fork is in progress */
typedef uint64_t recipe_t;

static inline recipe_t recipe_pack(unsigned flags, int32_t cfa_off, int32_t rbp_off) {
    return (uint64_t)flags | (uint64_t)(uint32_t)(cfa_off & 0xffffff) << 8 | (uint64_t)(uint16_t)rbp_off << 32;
}
static inline int32_t recipe_cfa_off(recipe_t r) { return (int32_t)((uint32_t)(r >> 8) << 8) >> 8; }
static inline int32_t recipe_rbp_off(recipe_t r) { return (int16_t)(r >> 32); }

#define TABLE_BITS_MIN 8  /* 256 entries, in pairs: 4 KiB ... */
#define TABLE_BITS_MAX 14 /* ... up to 16,384: 256 KiB */
typedef struct entry_s {
    _Atomic uint64_t tag; /* pc ^ recipe */
    _Atomic uint64_t recipe;
} entry_t;
/* the entries (page-aligned) | 64 - log2 of their number: the hash's shift */
static _Atomic uintptr_t table;
static _Atomic uint32_t entered; /* recipes entered since the table was made */
static _Atomic unsigned long long unloads_seen;
_Atomic uint32_t ms_unwind_gen; /* moves when the table is emptied: replays of older walks are void */
bool ms_unwind_enabled;

/* ------------------------------------------------------------------------
 * Reading DWARF: bounded by the section's end where it is known
 * ---------------------------------------------------------------------- */

typedef struct rd_s {
    const uint8_t *p, *end;
    bool bad;
    intptr_t bias; /* the tables' address of p, less p: nonzero on a copy (src_t) */
} rd_t;

static uint8_t rd_u8(rd_t *r) {
    if (r->p >= r->end) { r->bad = true; return 0; }
    return *r->p++;
}
static uint64_t rd_fixed(rd_t *r, int n) {
    if (r->end - r->p < n) { r->bad = true; r->p = r->end; return 0; }
    uint64_t v = 0;
    memcpy(&v, r->p, (size_t)n); /* little-endian */
    r->p += n;
    return v;
}
static uint64_t rd_uleb(rd_t *r) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        uint8_t b = rd_u8(r);
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return v;
    }
    r->bad = true;
    return 0;
}
static int64_t rd_sleb(rd_t *r) {
    int64_t v = 0;
    int shift = 0;
    uint8_t b;
    do {
        b = rd_u8(r);
        if (shift < 64) v |= (int64_t)((uint64_t)(b & 0x7f) << shift);
        shift += 7;
    } while ((b & 0x80) && !r->bad);
    if (shift < 64 && (b & 0x40)) v |= -((int64_t)1 << shift);
    return v;
}

/* rd_ptr: a pointer in DW_EH_PE encoding enc; data: the base of datarel */
static uint64_t rd_ptr(rd_t *r, uint8_t enc, uintptr_t data) {
    if (enc == 0xff) return 0; /* omit */
    uintptr_t here = (uintptr_t)r->p + (uintptr_t)r->bias;
    uint64_t v;
    switch (enc & 0x0f) {
    case 0x00: v = rd_fixed(r, 8); break;
    case 0x01: v = rd_uleb(r); break;
    case 0x02: v = rd_fixed(r, 2); break;
    case 0x03: v = rd_fixed(r, 4); break;
    case 0x04: v = rd_fixed(r, 8); break;
    case 0x09: v = (uint64_t)rd_sleb(r); break;
    case 0x0a: v = (uint64_t)(int64_t)(int16_t)rd_fixed(r, 2); break;
    case 0x0b: v = (uint64_t)(int64_t)(int32_t)rd_fixed(r, 4); break;
    case 0x0c: v = rd_fixed(r, 8); break;
    default: r->bad = true; return 0;
    }
    switch (enc & 0x70) {
    case 0x00: break;
    case 0x10: v += here; break;
    case 0x30: v += data; break;
    default: r->bad = true; return 0;
    }
    if (enc & 0x80) r->bad = true; /* indirect: not for code addresses here */
    return v;
}

/* ------------------------------------------------------------------------
 * Finding the FDE of a pc
 * ---------------------------------------------------------------------- */

/* Where an object's unwind tables are read from.  Read in place, they are
 * file pages that the program itself seldom reads (only an exception or a
 * backtrace does), and the kernel maps the 64 KiB around each page a read
 * faults in (fault-around): the binary search and a few FDEs in the C
 * library's tables, where every thread's stack ends (start_thread, clone3;
 * __libc_start_call_main), made 152 KiB of its .eh_frame_hdr and .eh_frame
 * resident in every program that took a sample, a tenth of
 * bench/false_sharing.c's peak RSS.  So the object's file is read with
 * pread where it can be: the bytes come from the page cache and nothing is
 * mapped.  The file must be the one mapped: its notes (the build ID),
 * which lie on the ELF header's page, read already by the loader and by
 * find_object, must match the file's, else, and for what lies outside the
 * segment of .eh_frame_hdr, what the file does not give (the vDSO, a file
 * gone) or a table entry longer than the copy, the tables are read in
 * place as before.  A recipe found so costs an open, a close and some
 * fifteen reads more (a few microseconds), once per return address, and
 * only the process's first FILE_FINDS are (below). */
typedef struct src_s {
    int fd;           /* the object's file, or -1: read in place */
    uintptr_t lo, hi; /* the addresses the file gives, at ... */
    int64_t off;      /* ... file offset = address + off */
} src_t;

/* fetch: n bytes of the tables at address a, into out */
static void fetch(const src_t *s, uintptr_t a, void *out, size_t n) {
    if (s->fd >= 0 && a >= s->lo && a < s->hi && n <= s->hi - a &&
        pread(s->fd, out, n, (off_t)((int64_t)a + s->off)) == (ssize_t)n)
        return;
    memcpy(out, (const void *)a, n);
}

/* fetch_entry: the CIE or FDE at address a (its 4-byte length, then that
 * many bytes) copied into buf, or read in place when longer than cap;
 * NULL for a length of 0 or of the 64-bit form.  *bias: its address less
 * the returned pointer's. */
static const uint8_t *fetch_entry(const src_t *s, uintptr_t a, uint8_t *buf, size_t cap, intptr_t *bias) {
    uint32_t len;
    fetch(s, a, &len, 4);
    if (len == 0 || len == 0xffffffffu) return NULL;
    if (s->fd < 0 || (size_t)len + 4 > cap) {
        *bias = 0;
        return (const uint8_t *)a;
    }
    memcpy(buf, &len, 4);
    fetch(s, a + 4, buf + 4, len);
    *bias = (intptr_t)(a - (uintptr_t)buf);
    return buf;
}

typedef struct find_s {
    uintptr_t pc;               /* a return address */
    recipe_t recipe;            /* its recipe, 0 if refused */
    unsigned long long subs;    /* objects unloaded so far (dl_iterate_phdr's count) */
} find_t;
static recipe_t recipe_in(const src_t *src, uintptr_t hdr, uintptr_t pc, uintptr_t code_end);

static bool has_subs(size_t size) {
    return size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof(unsigned long long);
}

/* The recipes found through the file (src_t), the first FILE_FINDS of the
 * process; the later ones read the tables in place.  Through the file, a
 * recipe costs some twenty system calls, where read in place it costs a
 * page fault on the first reads of each 64 KiB and nothing after: at
 * profile_rate=1, where every allocation is walked and a large program
 * finds thousands of recipes, python3's start took 0.65-0.86 s of wall
 * time with every recipe found through the file, against 0.37-0.49 s in
 * place (by hand).  A small program, for which the
 * tables' pages would be a good part of its memory, finds a few dozen
 * recipes at most (bench/false_sharing.c: 4 in a thread); a program that
 * finds hundreds is large enough that they are not. */
#define FILE_FINDS 64
static _Atomic uint32_t file_finds;

/* src_open: src reads the object's file if it is the one mapped
 * (src_t), for the loaded segment that holds hdr */
static void src_open(src_t *src, const struct dl_phdr_info *info, uintptr_t hdr) {
    const ElfW(Phdr) *seg = NULL, *note = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && hdr >= lo && hdr < lo + ph->p_filesz) seg = ph;
        else if (ph->p_type == PT_NOTE && !note) note = ph;
    }
    /* the notes, on the first page: 256 bytes hold the build ID's */
    uint8_t mine[256], theirs[256];
    size_t n = note ? (note->p_filesz < sizeof mine ? note->p_filesz : sizeof mine) : 0;
    if (!seg || n < 16 || note->p_offset + n > MS_OS_PAGE) return;
    bool mapped = false; /* the notes lie in a loaded segment, as linkers place them */
    for (int i = 0; i < info->dlpi_phnum && !mapped; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        mapped = ph->p_type == PT_LOAD && note->p_vaddr >= ph->p_vaddr && note->p_vaddr + n <= ph->p_vaddr + ph->p_filesz &&
                 note->p_vaddr - ph->p_vaddr == note->p_offset - ph->p_offset;
    }
    if (!mapped) return;
    const char *path = info->dlpi_name && info->dlpi_name[0] ? info->dlpi_name : "/proc/self/exe";
    if (path[0] != '/') return; /* the vDSO */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    memcpy(mine, (const void *)(info->dlpi_addr + note->p_vaddr), n);
    if (pread(fd, theirs, n, (off_t)note->p_offset) != (ssize_t)n || memcmp(mine, theirs, n) != 0) {
        close(fd);
        return;
    }
    src->fd = fd;
    src->lo = info->dlpi_addr + seg->p_vaddr;
    src->hi = src->lo + seg->p_filesz;
    src->off = (int64_t)seg->p_offset - (int64_t)src->lo;
}

static int find_object(struct dl_phdr_info *info, size_t size, void *arg) {
    find_t *f = arg;
    if (has_subs(size)) f->subs = info->dlpi_subs;
    const ElfW(Phdr) *eh = NULL;
    uintptr_t code_end = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD) {
            uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
            if (f->pc - 1 >= lo && f->pc - 1 < lo + ph->p_memsz && (ph->p_flags & PF_R)) code_end = lo + ph->p_filesz;
        } else if (ph->p_type == PT_GNU_EH_FRAME) {
            eh = ph;
        }
    }
    if (!code_end) return 0;
    /* in here, with the loader's lock held: no dlclose can unmap the
     * tables while they are read */
    if (eh) {
        uintptr_t hdr = info->dlpi_addr + eh->p_vaddr;
        src_t src = {.fd = -1};
        int cancel = ms_cancel_off(), saved = errno;
        if (atomic_fetch_add_explicit(&file_finds, 1, memory_order_relaxed) < FILE_FINDS)
            src_open(&src, info, hdr);
        f->recipe = recipe_in(&src, hdr, f->pc, code_end);
        if (src.fd >= 0) close(src.fd);
        errno = saved;
        ms_cancel_restore(cancel);
    }
    return 1;
}

/* fde_of: the address of the FDE covering pc from the object's
 * binary-search table, or 0.  The table is sorted by initial location, as
 * datarel sdata4 pairs (what every linker writes); another encoding is
 * refused. */
static uintptr_t fde_of(const src_t *src, uintptr_t hdr, uintptr_t pc) {
    uint8_t head[4 + 8 + 8]; /* version, encodings, two pointers at most */
    fetch(src, hdr, head, sizeof head);
    rd_t r = {head, head + sizeof head, false, (intptr_t)(hdr - (uintptr_t)head)};
    if (rd_u8(&r) != 1) return 0;
    uint8_t eh_enc = rd_u8(&r), count_enc = rd_u8(&r), table_enc = rd_u8(&r);
    if (table_enc != 0x3b) return 0;
    rd_ptr(&r, eh_enc, hdr);
    uint64_t count = rd_ptr(&r, count_enc, hdr);
    if (r.bad || count == 0) return 0;
    uintptr_t t = hdr + (uintptr_t)(r.p - head);
    uint64_t lo = 0, hi = count; /* the last entry whose start <= pc */
    int32_t e[2];
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        fetch(src, t + 8 * mid, e, 4);
        if (hdr + (intptr_t)e[0] <= pc) lo = mid;
        else hi = mid;
    }
    fetch(src, t + 8 * lo, e, 8);
    if (hdr + (intptr_t)e[0] > pc) return 0;
    return hdr + (intptr_t)e[1];
}

/* ------------------------------------------------------------------------
 * Running the CFA program
 * ---------------------------------------------------------------------- */

enum { DW_RBP = 6, DW_RSP = 7, DW_RA = 16 };
enum { RULE_SAME, RULE_OFFSET, RULE_AT_RBP, RULE_UNDEF, RULE_OTHER };
#define CFA_DEREF_RBP 100 /* row_t.cfa_reg: the CFA is the word at rbp + cfa_off */

/* breg6: the expression [p, p + n) is DW_OP_breg6 x (rbp + x), followed
 * by DW_OP_deref if deref; the two forms compilers write for a frame that
 * realigns its stack (the CFA saved below rbp, rbp saved at rbp). */
static bool breg6(const uint8_t *p, uint64_t n, bool deref, int64_t *x) {
    rd_t r = {p, p + n, false, 0};
    *x = 0;
    if (rd_u8(&r) != 0x76) return false;
    *x = rd_sleb(&r);
    if (deref && rd_u8(&r) != 0x06) return false;
    return !r.bad && r.p == r.end;
}

typedef struct row_s {
    int cfa_reg;        /* DW_RSP, DW_RBP, or -1 (anything else) */
    int64_t cfa_off;
    int rbp_rule, ra_rule;
    int64_t rbp_off, ra_off;
} row_t;

typedef struct cie_s {
    uint64_t caf;
    int64_t daf;
    uint8_t fde_enc;
    bool has_z, signal;
    rd_t insns;
} cie_t;

/* cie_read: the CIE at p (a copy of it at bias below its address) */
static bool cie_read(const uint8_t *p, intptr_t bias, cie_t *c) {
    uint32_t len;
    memcpy(&len, p, 4);
    if (len == 0 || len == 0xffffffffu) return false;
    rd_t r = {p + 4, p + 4 + len, false, bias};
    if (rd_fixed(&r, 4) != 0) return false; /* CIE id */
    uint8_t version = rd_u8(&r);
    if (version != 1 && version != 3) return false;
    const char *aug = (const char *)r.p;
    size_t alen = strnlen(aug, (size_t)(r.end - r.p));
    if (alen == (size_t)(r.end - r.p)) return false;
    r.p += alen + 1;
    if (strstr(aug, "eh")) return false;
    c->caf = rd_uleb(&r);
    c->daf = rd_sleb(&r);
    uint64_t ra = version == 1 ? rd_u8(&r) : rd_uleb(&r);
    if (ra != DW_RA) return false;
    c->fde_enc = 0; /* absptr */
    c->has_z = aug[0] == 'z';
    c->signal = false;
    if (c->has_z) {
        uint64_t n = rd_uleb(&r);
        const uint8_t *after = r.p + n;
        if (r.bad || after > r.end) return false;
        for (const char *a = aug + 1; *a; a++) {
            if (*a == 'R') c->fde_enc = rd_u8(&r);
            else if (*a == 'L') rd_u8(&r);
            else if (*a == 'P') rd_ptr(&r, rd_u8(&r) & 0x7f, 0); /* skipped: indirect is fine */
            else if (*a == 'S') c->signal = true;
            else break; /* unknown: 'z' gives the length to skip */
        }
        r.p = after;
    } else if (aug[0] != '\0') {
        return false;
    }
    c->insns = r;
    return !r.bad;
}

/* run: the CFA program of ins (from loc, up to the row holding target) on
 * row; init: the CIE's row, for DW_CFA_restore.  False on what this
 * walker does not follow.  Cold, as recipe_in, its only caller: both run
 * once for each return address a process's samples meet, and every
 * sampled process runs them, so they sit in the text's first window
 * (mk/hot.ld), where the compiler's code for size (cold) takes 2.9 KiB
 * where its code for speed took 6.3. */
ms_cold static bool run(rd_t ins, const cie_t *c, uintptr_t loc, uintptr_t target, row_t *row, const row_t *init) {
    row_t saved[8];
    int nsaved = 0;
    while (ins.p < ins.end) {
        uint8_t op = rd_u8(&ins), low = op & 0x3f;
        uint64_t reg, adv = 0;
        int64_t off;
        switch (op & 0xc0) {
        case 0x40: adv = low * c->caf; goto advance;
        case 0x80: reg = low; off = (int64_t)rd_uleb(&ins) * c->daf; goto offset;
        case 0xc0: reg = low; goto restore;
        }
        switch (op) {
        case 0x00: continue;                                    /* nop */
        case 0x02: adv = rd_fixed(&ins, 1) * c->caf; goto advance;
        case 0x03: adv = rd_fixed(&ins, 2) * c->caf; goto advance;
        case 0x04: adv = rd_fixed(&ins, 4) * c->caf; goto advance;
        case 0x05: reg = rd_uleb(&ins); off = (int64_t)rd_uleb(&ins) * c->daf; goto offset;
        case 0x11: reg = rd_uleb(&ins); off = rd_sleb(&ins) * c->daf; goto offset;
        case 0x2f: reg = rd_uleb(&ins); off = -(int64_t)rd_uleb(&ins) * c->daf; goto offset;
        case 0x06: reg = rd_uleb(&ins); goto restore;
        case 0x07: reg = rd_uleb(&ins); /* undefined */
            if (reg == DW_RBP) row->rbp_rule = RULE_UNDEF;
            if (reg == DW_RA) row->ra_rule = RULE_UNDEF;
            continue;
        case 0x08: reg = rd_uleb(&ins); /* same value */
            if (reg == DW_RBP) row->rbp_rule = RULE_SAME;
            if (reg == DW_RA) row->ra_rule = RULE_OTHER;
            continue;
        case 0x09: reg = rd_uleb(&ins); rd_uleb(&ins); goto other;   /* register */
        case 0x14: reg = rd_uleb(&ins); rd_uleb(&ins); goto other;   /* val_offset */
        case 0x15: reg = rd_uleb(&ins); rd_sleb(&ins); goto other;   /* val_offset_sf */
        case 0x10: case 0x16: {                                      /* (val_)expression */
            reg = rd_uleb(&ins);
            uint64_t n = rd_uleb(&ins);
            if (n > (uint64_t)(ins.end - ins.p)) return false;
            int64_t x;
            if (op == 0x10 && reg == DW_RBP && breg6(ins.p, n, false, &x)) { /* saved at rbp + x */
                ins.p += n;
                row->rbp_rule = RULE_AT_RBP, row->rbp_off = x;
                continue;
            }
            ins.p += n;
            goto other;
        }
        case 0x0a:                                              /* remember_state */
            if (nsaved == 8) return false;
            saved[nsaved++] = *row;
            continue;
        case 0x0b:                                              /* restore_state */
            if (nsaved == 0) return false;
            {
                row_t s = saved[--nsaved];
                *row = s;
            }
            continue;
        case 0x0c: reg = rd_uleb(&ins); row->cfa_off = (int64_t)rd_uleb(&ins); goto cfa_reg;
        case 0x12: reg = rd_uleb(&ins); row->cfa_off = rd_sleb(&ins) * c->daf; goto cfa_reg;
        case 0x0d: reg = rd_uleb(&ins); /* keeps the offset: meaningless after an expression */
            if (row->cfa_reg == CFA_DEREF_RBP) row->cfa_reg = -1, reg = DW_RA;
            goto cfa_reg;
        case 0x0e: row->cfa_off = (int64_t)rd_uleb(&ins); goto cfa_off;
        case 0x13: row->cfa_off = rd_sleb(&ins) * c->daf; goto cfa_off;
        case 0x0f: {                                            /* def_cfa_expression */
            uint64_t n = rd_uleb(&ins);
            if (n > (uint64_t)(ins.end - ins.p)) return false;
            int64_t x;
            row->cfa_reg = breg6(ins.p, n, true, &x) ? CFA_DEREF_RBP : -1; /* the word at rbp + x */
            row->cfa_off = x;
            ins.p += n;
            continue;
        }
        case 0x2e: rd_uleb(&ins); continue;                     /* GNU_args_size */
        default: return false;                                  /* set_loc, vendor ops */
        }
    advance:
        if (ins.bad) return false;
        if (loc + adv > target) return true;
        loc += adv;
        continue;
    offset:
        if (reg == DW_RBP) row->rbp_rule = RULE_OFFSET, row->rbp_off = off;
        if (reg == DW_RA) row->ra_rule = RULE_OFFSET, row->ra_off = off;
        continue;
    restore:
        if (!init) return false; /* in the CIE itself */
        if (reg == DW_RBP) row->rbp_rule = init->rbp_rule, row->rbp_off = init->rbp_off;
        if (reg == DW_RA) row->ra_rule = init->ra_rule, row->ra_off = init->ra_off;
        continue;
    other:
        if (reg == DW_RBP) row->rbp_rule = RULE_OTHER;
        if (reg == DW_RA) row->ra_rule = RULE_OTHER;
        if (reg == DW_RSP) return false;
        continue;
    cfa_reg:
        row->cfa_reg = reg == DW_RSP || reg == DW_RBP ? (int)reg : -1;
        continue;
    cfa_off:
        if (row->cfa_reg == CFA_DEREF_RBP) row->cfa_reg = -1;
        continue;
    }
    return !ins.bad;
}

/* forget: objects were unloaded (subs of them in all): every recipe goes,
 * since an object mapped where an unloaded one was would find the old
 * one's recipes under its return addresses. */
static void forget(unsigned long long subs) {
    uintptr_t t = atomic_load_explicit(&table, memory_order_acquire);
    unsigned shift = t & 63;
    entry_t *e = (entry_t *)(t - shift);
    /* only the entries in use are written: the rest stay unmapped */
    for (size_t i = 0; i < (size_t)1 << (64 - shift); i++) {
        if (!atomic_load_explicit(&e[i].tag, memory_order_relaxed) &&
            !atomic_load_explicit(&e[i].recipe, memory_order_relaxed))
            continue;
        atomic_store_explicit(&e[i].tag, 0, memory_order_relaxed);
        atomic_store_explicit(&e[i].recipe, 0, memory_order_relaxed);
    }
    atomic_store_explicit(&unloads_seen, subs, memory_order_relaxed);
    atomic_fetch_add_explicit(&ms_unwind_gen, 1, memory_order_relaxed);
}

static int count_unloads(struct dl_phdr_info *info, size_t size, void *arg) {
    if (has_subs(size)) *(unsigned long long *)arg = info->dlpi_subs;
    return 1;
}

/* fresh: looks whether objects were unloaded, at most once per tick of the
 * coarse clock (a few ms), so that a walk after a dlclose uses no recipe of
 * the unloaded object for longer than that: dl_iterate_phdr is the only
 * count of unloads, and it takes the loader's lock, too much for each of
 * a million walks a second.  Even the clock is read only every FRESH_EVERY
 * walks of a thread: at profile_rate=1 the read (a call into the vDSO) was
 * 6% of st_churn's time (perf), more than a warm replay.  So a thread may
 * make up to FRESH_EVERY - 1 walks more with a stale recipe after an unload
 * that does not come through dlclose below (the C library's own, of NSS
 * modules); such a walk gives wrong frames, never a read outside the stack
 * (ms_unwind's bounds). */
#define FRESH_EVERY 16
static _Atomic uint64_t fresh_ms;
static void look(void) {
    unsigned long long subs = 0;
    dl_iterate_phdr(count_unloads, &subs);
    if (subs != atomic_load_explicit(&unloads_seen, memory_order_relaxed)) forget(subs);
}
/* look_guarded: look, counted as a capture a fork waits for (the loader's
 * lock); false if a fork is in progress */
ms_cold __attribute__((noinline)) static bool look_guarded(uint64_t now) {
    if (!ms_stack_guard_enter()) {
        ms_unwind_fresh_skip = 0; /* it has not looked: the next walk tries again */
        return false;
    }
    atomic_store_explicit(&fresh_ms, now, memory_order_relaxed);
    look();
    ms_stack_guard_leave();
    return true;
}
/* fresh: false if it had to look while a fork is in progress */
static inline bool fresh(void) {
    if (ms_likely(ms_unwind_fresh_skip != 0)) {
        ms_unwind_fresh_skip--;
        return true;
    }
    ms_unwind_fresh_skip = FRESH_EVERY - 1;
    uint64_t now = ms_os_now_ms();
    if (ms_likely(now == atomic_load_explicit(&fresh_ms, memory_order_relaxed))) return true;
    return look_guarded(now);
}

/* ms_unwind_fresh_now: fresh() for a walk the caller replays inline
 * (stack.h: ms_stack_replay_hit), whose countdown (ms_unwind_fresh_skip)
 * is out: it is set again and the clock read; false if the look was due
 * and a fork is in progress (the countdown stays out).  Leak-check mode's
 * every hook asks this itself, where the whole capture, which it took
 * for each sixteenth malloc only to reach fresh(), cost st_churn 26
 * instructions a malloc (callgrind, by hand). */
bool ms_unwind_fresh_now(void) { return fresh(); }

/* dlclose: the C library's, then fresh()'s look at once.  A program that
 * closes a plugin and opens another, which the loader maps where the first
 * was, and allocates in it within the same tick had its stacks walked with
 * the closed object's recipes: one frame, every time (a helper session's
 * loop of two plugins).  Unloads that do not come through here (the C
 * library's own, of NSS modules) still wait for the tick (fresh).  Nothing is
 * looked at before the first walk: the table would be emptied for nothing. */
__attribute__((visibility("default"))) int dlclose(void *handle) {
    static int (*_Atomic next)(void *);
    int (*f)(void *) = atomic_load_explicit(&next, memory_order_acquire);
    if (!f) {
        f = (int (*)(void *))dlsym(RTLD_NEXT, "dlclose");
        if (!f) return -1; /* no C library's dlclose: the object stays, as after a failed close */
        atomic_store_explicit(&next, f, memory_order_release);
    }
    int r = f(handle);
    if (atomic_load_explicit(&fresh_ms, memory_order_relaxed)) look();
    return r;
}

/* recipe_find: the recipe for return address pc (the row of pc - 1: the
 * call, which may be a function's last instruction); 0 if refused,
 * R_FORK if a fork is in progress (it reads the loader's list under the
 * loader's lock and may empty the table: a fork waits for it). */
ms_cold __attribute__((noinline)) static recipe_t recipe_find(uintptr_t pc) {
    if (!ms_stack_guard_enter()) return R_FORK;
    find_t f = {.pc = pc};
    dl_iterate_phdr(find_object, &f);
    if (f.subs != atomic_load_explicit(&unloads_seen, memory_order_relaxed)) forget(f.subs);
    ms_stack_guard_leave();
    return f.recipe;
}

/* rt_sigreturn's instructions, where a signal handler returns to (its
 * restorer, the C library's __restore_rt) */
static const uint8_t sigreturn_code[9] = {0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05};

/* The thread's last refused walk stopped at a signal frame: the capture
 * runs in a signal handler, which may have interrupted the dynamic loader
 * with its lock held, or memscope with one of its own (stack.c: lu_load
 * loads no library then). */
static __thread bool refused_at_signal __attribute__((tls_model("initial-exec")));
bool ms_unwind_refused_at_signal(void) { return refused_at_signal; }

/* recipe_in: recipe_find's work, in the object whose .eh_frame_hdr is at
 * hdr (called back by dl_iterate_phdr); cold (run, above) */
ms_cold static recipe_t recipe_in(const src_t *src, uintptr_t hdr, uintptr_t pc, uintptr_t code_end) {
    /* a signal handler returns to the restorer's first instruction, not
     * after a call: pc - 1 is in whatever precedes it (the code is read in
     * place: pc lies in a readable segment of the object, which cannot go
     * while the loader's lock is held) */
    if (pc + sizeof sigreturn_code <= code_end && memcmp((const void *)pc, sigreturn_code, sizeof sigreturn_code) == 0) return 0;
    uintptr_t at = fde_of(src, hdr, pc - 1);
    if (!at) return 0;
    /* copies of the FDE and its CIE (src_t); most FDEs of gcc's and
     * clang's code are under 100 bytes, CIEs under 32 */
    uint8_t fbuf[256], cbuf[64];
    intptr_t fbias, cbias;
    const uint8_t *fde = fetch_entry(src, at, fbuf, sizeof fbuf, &fbias);
    if (!fde) return 0;
    uint32_t len, cie_off;
    memcpy(&len, fde, 4);
    if (len < 4) return 0;
    memcpy(&cie_off, fde + 4, 4);
    if (cie_off == 0) return 0; /* a CIE, not an FDE */
    const uint8_t *cie = fetch_entry(src, at + 4 - cie_off, cbuf, sizeof cbuf, &cbias);
    cie_t c;
    if (!cie || !cie_read(cie, cbias, &c) || c.signal) return 0;
    rd_t r = {fde + 8, fde + 4 + len, false, fbias};
    uintptr_t start = (uintptr_t)rd_ptr(&r, c.fde_enc, 0);
    uintptr_t range = (uintptr_t)rd_ptr(&r, c.fde_enc & 0x0f, 0);
    if (r.bad || pc - 1 < start || pc - 1 - start >= range) return 0;
    if (c.has_z) {
        uint64_t n = rd_uleb(&r);
        if (r.bad || n > (uint64_t)(r.end - r.p)) return 0;
        r.p += n;
    }
    row_t init = {.cfa_reg = -1, .rbp_rule = RULE_SAME, .ra_rule = RULE_UNDEF};
    if (!run(c.insns, &c, start, UINTPTR_MAX, &init, NULL)) return 0;
    row_t row = init;
    if (!run(r, &c, start, pc - 1, &row, &init)) return 0;
    if (row.cfa_reg < 0 || row.cfa_off < -(1 << 23) || row.cfa_off >= (1 << 23)) return 0;
    unsigned flags = R_VALID | (row.cfa_reg == DW_RBP ? R_CFA_RBP : row.cfa_reg == CFA_DEREF_RBP ? R_CFA_DEREF : 0);
    if (row.ra_rule == RULE_UNDEF) flags |= R_LAST;
    else if (row.ra_rule != RULE_OFFSET || row.ra_off != -8) return 0;
    int32_t rbp_off = 0;
    if (row.rbp_rule == RULE_OFFSET || row.rbp_rule == RULE_AT_RBP) {
        if (row.rbp_off < INT16_MIN || row.rbp_off > INT16_MAX) return 0;
        flags |= R_RBP_SAVED | (row.rbp_rule == RULE_AT_RBP ? R_RBP_AT_RBP : 0);
        rbp_off = (int32_t)row.rbp_off;
    } else if (row.rbp_rule != RULE_SAME) {
        return 0;
    }
    return recipe_pack(flags, (int32_t)row.cfa_off, rbp_off);
}

/* recipe_of: from the table, or found and entered (R_REFUSED too: a
 * stack through a frame refused once goes to libunwind at once) */
static void entered_one(uintptr_t t);
static inline recipe_t recipe_of(uintptr_t pc) {
    uintptr_t t = atomic_load_explicit(&table, memory_order_acquire);
    unsigned shift = t & 63;
    entry_t *e = (entry_t *)(t - shift) + (((pc * 0x9E3779B97F4A7C15ull) >> shift) & ~(uint64_t)1);
    for (int w = 0; w < 2; w++) {
        recipe_t r = atomic_load_explicit(&e[w].recipe, memory_order_relaxed);
        if (ms_likely(atomic_load_explicit(&e[w].tag, memory_order_relaxed) == (pc ^ r) && r)) return r;
    }
    recipe_t r = recipe_find(pc);
    if (r == R_FORK) return r;
    if (!r) r = R_REFUSED;
    e += (pc >> 4) & 1; /* of the pair, the way the address picks */
    atomic_store_explicit(&e->recipe, r, memory_order_relaxed);
    atomic_store_explicit(&e->tag, pc ^ r, memory_order_relaxed);
    entered_one(t);
    return r;
}

/* entered_one: a recipe was entered in table t; a table that has had a
 * quarter of its entries' worth is replaced by one four times larger
 * (under the guard, as a fork's child must find one table or the other).
 * Of threads that grow t at once, one publishes its table; the others
 * give theirs back. */
ms_cold __attribute__((noinline)) static void entered_one(uintptr_t t) {
    unsigned shift = t & 63;
    if (64 - shift >= TABLE_BITS_MAX ||
        atomic_fetch_add_explicit(&entered, 1, memory_order_relaxed) + 1 < (1u << (64 - shift)) / 4)
        return;
    if (!ms_stack_guard_enter()) return;
    unsigned bits = 64 - shift + 2;
    entry_t *n = ms_meta_alloc(sizeof(entry_t) << bits);
    if (n) {
        if (atomic_compare_exchange_strong(&table, &t, (uintptr_t)n | (64 - bits)))
            atomic_store_explicit(&entered, 0, memory_order_relaxed);
        else
            ms_meta_free(n, sizeof(entry_t) << bits);
    }
    ms_stack_guard_leave();
}

void ms_unwind_init(void) {
    entry_t *e = ms_meta_alloc(sizeof(entry_t) << TABLE_BITS_MIN);
    atomic_store_explicit(&table, e ? (uintptr_t)e | (64 - TABLE_BITS_MIN) : 0, memory_order_release);
    ms_unwind_enabled = e != NULL;
}

/* walk_read: the word at a (ok false: unreadable), from the walk's known
 * range [lo, *hi) or a page checked by ms_stack_read (the page just above
 * the range extends it).  By value, so that the walk keeps its state in
 * registers. */
typedef struct word_s {
    uintptr_t v;
    bool ok;
} word_t;

static ms_cold __attribute__((noinline)) word_t read_checked(uintptr_t a) {
    word_t w;
    w.ok = ms_stack_read(a, &w.v);
    return w;
}

static inline word_t walk_read(uintptr_t a, uintptr_t lo, uintptr_t *hi) {
    if (ms_likely(a >= lo && a + sizeof(uintptr_t) <= *hi)) return (word_t){*(const uintptr_t *)a, true};
    word_t w = read_checked(a);
    if (w.ok && (a & ~(uintptr_t)(MS_OS_PAGE - 1)) == *hi && ((a + sizeof(uintptr_t) - 1) & ~(uintptr_t)(MS_OS_PAGE - 1)) == *hi)
        *hi += MS_OS_PAGE;
    if (w.ok) { /* the thread's run may have grown past it (stack.c) */
        uintptr_t run = ms_stack_run_hi(lo);
        if (run > *hi) *hi = run;
    }
    return w;
}

/* replay: rp's walk, if it is the one that starts at (pc, sp, rbp) with
 * room for cap frames: the words whose values counted are read again and
 * must be those it read then.  The walk is a function of its start and of
 * those words (a word that does not count only had to be readable), so it
 * would give the frames out holds.  rbp at the start counts only if a
 * frame's CFA came from it before any frame restored rbp, and so does a
 * value read from a frame's save slot: optimized code keeps its own values
 * in rbp, which would otherwise make every walk new.  Every word the walk
 * read lies in [rd_lo, rd_hi), which must lie in what this walk knows is
 * readable, [lo, hi), the thread's run of proven pages (grown to rd_hi the
 * first time, where the walk read pages the run did not take in: pages
 * ms_stack_read remembered, a frame larger than a page; that rd_lo is
 * on or above the start's page is settled when the record is made, in
 * finish): then the words are read as they are, a load and a compare
 * each.  (Reading each through the checks of a walk, and comparing the
 * words that did not count as well, was most of a replay's cost.)  A
 * replay refused here is only a walk made again. */
static bool replay(const replay_t *rp, int cap, uintptr_t pc, uintptr_t sp, uintptr_t rbp, uintptr_t lo, uintptr_t hi) {
    if (rp->cap != cap || rp->pc0 != pc || rp->sp0 != sp || (rp->uses_rbp0 && rp->rbp0 != rbp) ||
        rp->gen != atomic_load_explicit(&ms_unwind_gen, memory_order_relaxed))
        return false;
    if (ms_unlikely(rp->rd_hi > hi) && ms_stack_run_to(lo, rp->rd_hi) < rp->rd_hi) return false; /* once */
    for (int i = MS_REPLAY_READS - rp->nreads; i < MS_REPLAY_READS; i++)
        if (*(const uintptr_t *)rp->at[i] != ~rp->not[i]) return false;
    return true;
}

/* Splices.  Most mallocs of a real program come from call sites other than
 * the last one (git log: one capture in eight was a replay), but from the
 * same outer frames: main, the command's loop, the library's entry point.
 * A walk that reaches a frame of the last walk, the same pc at the same sp,
 * with the same rbp if the rest of the last walk used it, and finds every
 * word that counted from there on unchanged and still readable, would go
 * on exactly as the last walk did from that frame: the rest of a walk is a
 * function of where it stands and of those words, as a replay's is.  So it
 * takes the last walk's frames from there and stops.  The record keeps,
 * per frame, where the walk stood, and the counted words and the lowest
 * address read from each frame on; the last walk must have ended by itself
 * (not cut at cap), and the frames taken must fit in cap. */

/* tail_same: the last walk (rp) from its frame at index f on is the walk
 * from (its pc, its sp, rbp) now */
static bool tail_same(const replay_t *rp, int f, uintptr_t rbp, uintptr_t lo, uintptr_t hi) {
    if (rp->frbp_counts[f] && ~rp->frbp[f] != rbp) return false;
    if (rp->flo[f] < lo) return false;
    if (rp->rd_hi > hi && ms_stack_run_to(lo, rp->rd_hi) < rp->rd_hi) return false;
    for (int i = MS_REPLAY_READS - rp->frest[f]; i < MS_REPLAY_READS; i++)
        if (*(const uintptr_t *)rp->at[i] != ~rp->not[i]) return false;
    return true;
}

/* walk_t: what a walk notes for its record while it goes, before it is
 * written over the last walk's (finish) */
typedef struct walk_s {
    int reads;                    /* all its reads, at/not[0 .. reads) (bit 0: counts) */
    bool uses0;                   /* rbp0 counts */
    int16_t first[MS_STACK_RAW];  /* per frame: its first read */
    int16_t src[MS_STACK_RAW];    /* per frame: the read rbp came from (-1: rbp0) */
} walk_t;

/* finish: rp becomes the record of the walk that gave k frames of its own
 * (their pc, sp and rbp at rp->f*[0 .. k)) and then `tail` frames of the
 * last walk's, already in place at the end of the arrays (their counted
 * reads too).  The walk's counted reads go just below the tail's, and its
 * frames to just below the tail's, from the last, so that nothing is
 * written over before it is read: every destination lies at or above its
 * source. */
static void finish(replay_t *rp, const walk_t *wk, int k, int tail, uintptr_t pc0, uintptr_t sp0, uintptr_t rbp0,
                   int cap, uint32_t gen) {
    const int RAW = MS_STACK_RAW, READS = MS_REPLAY_READS, N = k + tail;
    int c = tail ? rp->frest[RAW - tail] : 0, d = READS - c, next = wk->reads;
    uintptr_t mn = tail ? rp->flo[RAW - tail] : UINTPTR_MAX, mx = tail ? rp->rd_hi : 0;
    for (int f = k - 1; f >= 0; f--) {
        for (int i = next - 1; i >= wk->first[f]; i--) {
            uintptr_t a = rp->at[i] & ~(uintptr_t)1;
            if (a < mn) mn = a;
            if (a + sizeof(uintptr_t) > mx) mx = a + sizeof(uintptr_t);
            if (rp->at[i] & 1) --d, rp->at[d] = a, rp->not[d] = rp->not[i], c++;
        }
        next = wk->first[f];
        int to = RAW - N + f, s = wk->src[f];
        /* the read rbp came from was made before this frame's: not moved yet */
        rp->frbp_counts[to] = s < 0 ? wk->uses0 : (rp->at[s] & 1) != 0;
        rp->fpc[to] = rp->fpc[f], rp->fsp[to] = rp->fsp[f], rp->frbp[to] = rp->frbp[f];
        rp->frest[to] = (uint16_t)c, rp->flo[to] = mn;
    }
    rp->nreads = c;
    /* the start only for a record a replay can take, one with a frame
     * and no read below the page the walk started on; any other keeps
     * sp0 0, which no stack pointer matches, so that replay and
     * ms_stack_replay_hit refuse it by its start alone, a test fewer each */
    rp->sp0 = N && mn >= (sp0 & ~(uintptr_t)(MS_OS_PAGE - 1)) ? sp0 : 0;
    rp->pc0 = pc0, rp->rbp0 = rbp0, rp->cap = cap, rp->gen = gen, rp->id = UINT32_MAX;
    rp->uses_rbp0 = N ? rp->frbp_counts[RAW - N] : false;
    rp->rd_lo = N && mn != UINTPTR_MAX ? mn : sp0, rp->rd_hi = N && mx ? mx : sp0;
    rp->spliced = tail ? k : -1;
    rp->n = N;
}

/* ms_unwind: the return addresses of the calling frames, innermost (the
 * return into this function's caller) first, up to cap; -1 where this
 * walker gives way to libunwind.  __builtin_frame_address gives this
 * function a frame pointer of its own (push rbp; mov rsp, rbp), and with
 * it its caller's stack pointer, rbp and return address.  rp (or NULL):
 * the record of the last walk into out, replayed if it starts here, and
 * rewritten otherwise. */
static int walk(void **out, int cap, replay_t *rp, uintptr_t pc, uintptr_t sp, uintptr_t rbp, uintptr_t lo,
                uintptr_t hi);
static inline int unwind_at(void **out, int cap, replay_t *rp, const uintptr_t *fp);
MS_TEXT __attribute__((noinline)) int ms_unwind(void **out, int cap, replay_t *rp) {
    return unwind_at(out, cap, rp, __builtin_frame_address(0));
}

/* ms_unwind_from: the same walk, from the frame whose frame pointer is fp
 * (its caller's rbp at fp[0], its return address at fp[1]): leak-check
 * mode's hook starts from its own frame (the core's malloc tail-calls it,
 * so its return address is the program's), so that the replay of a warm
 * stack reads none of memscope's own frames (stack.h). */
MS_TEXT __attribute__((noinline)) int ms_unwind_from(void **out, int cap, replay_t *rp, const uintptr_t *fp) {
    return unwind_at(out, cap, rp, fp);
}

static inline int unwind_at(void **out, int cap, replay_t *rp, const uintptr_t *fp) {
    uintptr_t pc = fp[1], sp = (uintptr_t)(fp + 2), rbp = fp[0];
    /* [lo, hi): stack known readable in this walk, grown a page at a time
     * as the frames go up (sp's page is: the caller's frame is there), and
     * from the start as far as the thread's run of proven pages goes */
    uintptr_t lo = sp & ~(uintptr_t)(MS_OS_PAGE - 1), hi = ms_stack_run(lo);
    if (!fresh()) return MS_UNWIND_FORK;
    if (rp && (rp->hit = replay(rp, cap, pc, sp, rbp, lo, hi))) return rp->n;
    /* the last walk's record starts nowhere from here (finish gives it
     * the new walk's start, if a replay can take it) */
    if (rp) rp->sp0 = 0;
    return walk(out, cap, rp, pc, sp, rbp, lo, hi);
}

/* walk: ms_unwind's walk from (pc, sp, rbp), a function of its own so that
 * a replay, most captures, pays nothing for the registers a walk needs */
MS_TEXT __attribute__((noinline)) static int walk(void **out, int cap, replay_t *rp, uintptr_t pc, uintptr_t sp,
                                                  uintptr_t rbp, uintptr_t lo, uintptr_t hi) {
    const uintptr_t pc0 = pc, sp0 = sp, rbp0 = rbp;
    const uint32_t gen = atomic_load_explicit(&ms_unwind_gen, memory_order_relaxed);
    walk_t wk;
    wk.reads = 0, wk.uses0 = false;
    bool keep = rp != NULL; /* a record of this walk is kept */
    /* the last walk, whose frames this one may end with: its frames at
     * [obase, MS_STACK_RAW), its counted reads from oreads on; on 0 once
     * this walk's own have reached them */
    int on = 0, obase = MS_STACK_RAW, oreads = MS_REPLAY_READS, oj = 0;
    if (rp && rp->n > 0 && rp->n < rp->cap && rp->cap == cap && rp->gen == gen)
        on = rp->n, obase = MS_STACK_RAW - on, oreads = MS_REPLAY_READS - rp->nreads;
    int rbp_from = -1; /* the read that gave rbp (-1: rbp0) */
    int n = 0, tail = 0;
    word_t w;
/* read: w = the word at a, noted for replays; `counts`: its value does */
#define READ(a, counts)                                                      \
    do {                                                                     \
        uintptr_t a_ = (a);                                                  \
        w = walk_read(a_, lo, &hi);                                          \
        if (!w.ok) goto refused;                                             \
        if (keep) {                                                          \
            if (wk.reads == oreads) on = 0; /* the last walk's, from here */ \
            if (wk.reads == MS_REPLAY_READS) keep = false, on = 0;           \
            else rp->at[wk.reads] = a_ | (counts), rp->not[wk.reads++] = ~w.v; \
        }                                                                    \
    } while (0)
/* uses_rbp: an address or the CFA comes from rbp: its value counts */
#define USES_RBP()                                                           \
    do {                                                                     \
        if (keep) {                                                          \
            if (rbp_from < 0) wk.uses0 = true;                               \
            else rp->at[rbp_from] |= 1;                                      \
        }                                                                    \
    } while (0)
    while (n < cap) {
        if (on) {
            if (n >= obase) {
                on = 0; /* the last walk's frames, from here */
            } else {
                while (oj < on && rp->fsp[obase + oj] < sp) oj++;
                if (oj < on && rp->fsp[obase + oj] == sp && rp->fpc[obase + oj] == pc && n + on - oj < cap &&
                    tail_same(rp, obase + oj, rbp, lo, hi)) {
                    if (rp->frbp_counts[obase + oj]) USES_RBP();
                    tail = on - oj;
                    for (int t = 0; t < tail; t++) out[n + t] = (void *)rp->fpc[obase + oj + t];
                    goto done;
                }
            }
        }
        if (keep) {
            wk.first[n] = (int16_t)wk.reads, wk.src[n] = (int16_t)rbp_from;
            rp->fpc[n] = pc, rp->fsp[n] = sp, rp->frbp[n] = ~rbp;
        }
        out[n++] = (void *)pc;
        recipe_t r = recipe_of(pc);
        if (ms_unlikely(r & (R_REFUSED | R_FORK))) {
            if (r & R_FORK) goto forking;
            goto refused;
        }
        if (r & R_LAST) goto done;
        uintptr_t cfa;
        if (r & R_CFA_DEREF) { /* a realigned frame: the CFA was saved at rbp + off */
            USES_RBP();
            READ(rbp + (intptr_t)recipe_cfa_off(r), 1);
            cfa = w.v;
        } else {
            if (r & R_CFA_RBP) USES_RBP();
            cfa = ((r & R_CFA_RBP) ? rbp : sp) + (intptr_t)recipe_cfa_off(r);
        }
        if (cfa <= sp) goto refused;
        if (r & R_RBP_SAVED) {
            if (r & R_RBP_AT_RBP) USES_RBP();
            READ(((r & R_RBP_AT_RBP) ? rbp : cfa) + (intptr_t)recipe_rbp_off(r), 0);
            rbp = w.v;
            rbp_from = keep ? wk.reads - 1 : 0;
        }
        /* the return address counts, but for the last frame of a walk cut at cap */
        READ(cfa - 8, n < cap);
        if (w.v == 0) goto done; /* the outermost frame of a thread without CFI for it */
        sp = cfa;
        pc = w.v;
    }
done:
    if (keep) finish(rp, &wk, n, tail, pc0, sp0, rbp0, cap, gen);
    else if (rp) rp->n = 0;
    return n + tail;
refused:
    if (rp) rp->n = 0;
    {
        uint8_t code[sizeof sigreturn_code];
        refused_at_signal = ms_os_read_self(pc, code, sizeof code) == sizeof code &&
                            memcmp(code, sigreturn_code, sizeof code) == 0;
    }
    return MS_UNWIND_REFUSED;
forking:
    if (rp) rp->n = 0;
    return MS_UNWIND_FORK;
#undef READ
#undef USES_RBP
}

#if MEMSCOPE_DEBUG
/* ms_unwind_check: debug builds hold every walk of n frames (cap: the
 * most it could have given) against libunwind's from the program's first
 * frame on (the two start in different places), until an object is
 * unloaded. */
void ms_unwind_check(void *const *raw, int n, int cap) {
    /* after a dlclose libunwind 1.6's unw_backtrace keeps recipes of the
     * unloaded object (unw_flush_cache does not reach them): it is no
     * reference any more */
    if (atomic_load_explicit(&unloads_seen, memory_order_relaxed)) return;
    void *ref[MS_STACK_RAW + 16];
    int m = ms_libunwind_backtrace(ref, MS_STACK_RAW + 16);
    if (m <= 0) return; /* libunwind not loaded (yet): no reference */
    int i = 0, j = 0;
    while (i < n && ms_in_memscope_text((uintptr_t)raw[i])) i++;
    while (j < m && i < n && ref[j] != raw[i]) j++; /* this function's frames, and libunwind's */
    bool same = true;
    for (int a = i, b = j; a < n && b < m; a++, b++) same &= raw[a] == ref[b];
    if (n < cap && n - i != m - j) same = false; /* not cut short, so the same depth */
    if (same) return;
    for (int a = i; a < n; a++) ms_warn("memscope: unwind: own   %2d %p", a - i, raw[a]);
    for (int b = j; b < m; b++) ms_warn("memscope: unwind: libunwind %2d %p", b - j, ref[b]);
    ms_assert_fail("the stack walk differs from libunwind's", __FILE__, __LINE__);
}
#endif

#else /* not x86-64: libunwind walks every stack */
bool ms_unwind_refused_at_signal(void) { return false; }
bool ms_unwind_enabled;
_Atomic uint32_t ms_unwind_gen;
bool ms_unwind_fresh_now(void) { return false; } /* no replays to keep fresh */
void ms_unwind_init(void) {}
MS_TEXT int ms_unwind(void **out, int cap, replay_t *rp) { (void)out, (void)cap, (void)rp; return MS_UNWIND_REFUSED; }
MS_TEXT int ms_unwind_from(void **out, int cap, replay_t *rp, const uintptr_t *fp) {
    (void)out, (void)cap, (void)rp, (void)fp;
    return MS_UNWIND_REFUSED;
}
#endif
