/* symbolize.c: program counter -> function, file:line and mapping, inside
 * the profiled process.
 *
 * A symtab is a picture of the address space taken when a profile is
 * written.  ms_sym_open reads /proc/self/maps once and keeps every
 * executable mapping (pprof needs start, limit, offset, path and build ID of
 * each); the ELF file behind a mapping is mapped read-only at once, because
 * its build ID and its load bias (mapping start minus the link-time address
 * of the PT_LOAD segment at that file offset) come from the headers.  The
 * rest is lazy and per module (one file at one bias):
 *   names   on a module's first lookup its function symbols (STT_FUNC and
 *           STT_GNU_IFUNC with a size) are taken from .symtab, else from a
 *           separate debug file found by build ID under /usr/lib/debug, else
 *           from .dynsym; sorted by address once, then every lookup is a
 *           binary search.  Names point into the mapped file.
 *   lines   file:line and inlined frames come from DWARF through libdw, which
 *           is dlopen'd on first need and never linked: linking it would load
 *           libdw, libelf and three decompressors into every process that
 *           preloads memscope.  Without libdw, names still work.
 *   C++     names starting with _Z are demangled with libiberty's callback
 *           demangler, which never calls malloc.
 *
 * Memory.  This code runs inside the allocator's own process, so what it
 * keeps must neither show up in the heap it profiles nor disturb it: the
 * symtab, its tables and strings live in an arena of pages from ms_os_alloc,
 * and ELF files are read through private read-only mappings, all unmapped by
 * ms_sym_close.  libdw's own mallocs are the exception; the caller marks the
 * thread so they are not sampled.
 *
 * Invariants.  ELF input is untrusted: every offset and size read from a
 * file is checked against the size of the file (or of the [vdso] image)
 * before use, so a truncated or malformed file yields no names, never a
 * crash.  Maps are capped at MS_SYM_MAX_MAPS and symbols per module at
 * MS_SYM_MAX_SYMS.  A symtab belongs to one thread at a time; the only
 * global state is the table of libdw entry points, filled once.
 */
#include "prof.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dwarf.h>
#include <elfutils/libdwfl.h>
#include <libiberty/demangle.h>

/* Enough for any real process (a large browser has about 1500 executable
 * mappings); past it the rest are dropped with one warning. */
#define MS_SYM_MAX_MAPS 4096
/* Per module.  The largest binaries in common use (browsers, LLVM) have
 * around a million function symbols; beyond this the rest are ignored. */
#define MS_SYM_MAX_SYMS (1u << 21)
/* Files larger than this are not mapped (no real shared object is). */
#define MS_SYM_MAX_FILE ((size_t)1 << 34)
/* Deepest chain of inlined calls reported at one pc. */
#define MS_SYM_MAX_INLINE 32
#define ARENA_CHUNK ((size_t)256 << 10)
#define INTERN_SLOTS 8192 /* power of two */
#define CACHE_SLOTS 32768 /* power of two */

typedef struct chunk_s {
    struct chunk_s *next;
    size_t bytes;  /* the whole mapping, header included */
} chunk_t;

typedef struct sym_s {
    uintptr_t addr;      /* link-time address */
    const char *name;    /* in the mapped file */
    const char *pretty;  /* demangled, filled on first lookup */
    uint32_t size;       /* bytes (no function is 4 GiB) */
    uint32_t rank;       /* among aliases at one address: lower is shown */
} sym_t;

typedef struct pcache_s {
    uintptr_t pc;
    sym_frame_t *frames;      /* NULL: slot empty */
    int n;
} pcache_t;

typedef struct mod_s {
    const char *path;         /* the file (or "[vdso]") */
    const uint8_t *img;       /* the whole ELF image: a file mapping or the vDSO */
    size_t img_bytes;
    bool img_mapped;          /* img is our mapping: unmap at close */
    const uint8_t *dbg;       /* separate debug file, mapped, or NULL */
    size_t dbg_bytes;
    uintptr_t bias;           /* runtime address - link-time address */
    const char *build_id;     /* hex, "" if none */
    bool loaded;              /* symbols read (successfully or not) */
    bool dw_tried;            /* reported to libdw (successfully or not) */
    sym_t *syms;              /* sorted by addr, one per address */
    size_t nsyms;
    Dwfl_Module *dw;          /* NULL: no DWARF */
} mod_t;

struct symtab_s {
    chunk_t *chunks;          /* arena; the symtab lives in the first */
    char *cur;                /* free space of the newest chunk */
    size_t left;
    sym_map_t *maps;          /* sorted by start, disjoint */
    mod_t **mapmod;           /* module of each map, or NULL */
    int nmaps;
    mod_t *mods;
    int nmods;
    Dwfl *dwfl;               /* created on first need */
    const char **intern;      /* INTERN_SLOTS strings copied from libdw */
    size_t ninterned;
    pcache_t *cache;          /* CACHE_SLOTS lookups in modules with DWARF */
    size_t ncached;
};

/* ------------------------------------------------------------------------
 * Arena
 * ---------------------------------------------------------------------- */

static void *arena_alloc(symtab_t *st, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n > st->left) {
        size_t bytes = n + sizeof(chunk_t) + 16 > ARENA_CHUNK ? n + sizeof(chunk_t) + 16 : ARENA_CHUNK;
        bytes = (bytes + 4095) & ~(size_t)4095;
        chunk_t *c = ms_os_alloc(bytes);
        if (c == NULL) return NULL;
        c->bytes = bytes;
        c->next = st->chunks;
        st->chunks = c;
        st->cur = (char *)c + ((sizeof(chunk_t) + 15) & ~(size_t)15);
        st->left = bytes - (size_t)(st->cur - (char *)c);
    }
    void *p = st->cur;
    st->cur += n;
    st->left -= n;
    return p;
}

static const char *arena_strndup(symtab_t *st, const char *s, size_t len) {
    char *p = arena_alloc(st, len + 1);
    if (p == NULL) return NULL;
    memcpy(p, s, len);
    p[len] = 0;
    return p;
}

/* intern: one copy per distinct string from libdw (source file names repeat
 * for every pc in a file).  A full table just copies. */
static const char *intern(symtab_t *st, const char *s) {
    size_t len = strlen(s);
    if (st->intern == NULL) st->intern = arena_alloc(st, INTERN_SLOTS * sizeof(char *));
    if (st->intern == NULL || st->ninterned >= INTERN_SLOTS / 4 * 3) return arena_strndup(st, s, len);
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    for (size_t i = h & (INTERN_SLOTS - 1);; i = (i + 1) & (INTERN_SLOTS - 1)) {
        if (st->intern[i] == NULL) {
            const char *c = arena_strndup(st, s, len);
            if (c == NULL) return NULL;
            st->intern[i] = c;
            st->ninterned++;
            return c;
        }
        if (strcmp(st->intern[i], s) == 0) return st->intern[i];
    }
}

/* ------------------------------------------------------------------------
 * ELF images.  img/bytes is a whole file (or the vDSO); nothing here trusts
 * an offset before checking it against bytes.
 * ---------------------------------------------------------------------- */

static bool in_image(size_t bytes, uint64_t off, uint64_t len) {
    return off <= bytes && len <= bytes - off;
}

static const ElfW(Ehdr) *elf_header(const uint8_t *img, size_t bytes) {
    if (img == NULL || bytes < sizeof(ElfW(Ehdr))) return NULL;
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)img;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0) return NULL;
#if __SIZEOF_POINTER__ == 8
    if (eh->e_ident[EI_CLASS] != ELFCLASS64) return NULL;
#else
    if (eh->e_ident[EI_CLASS] != ELFCLASS32) return NULL;
#endif
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (eh->e_ident[EI_DATA] != ELFDATA2LSB) return NULL;
#else
    if (eh->e_ident[EI_DATA] != ELFDATA2MSB) return NULL;
#endif
    return eh;
}

static const ElfW(Phdr) *elf_phdrs(const uint8_t *img, size_t bytes, size_t *n) {
    const ElfW(Ehdr) *eh = elf_header(img, bytes);
    *n = 0;
    if (eh == NULL || eh->e_phnum == 0 || eh->e_phentsize != sizeof(ElfW(Phdr))) return NULL;
    if (eh->e_phoff % _Alignof(ElfW(Phdr)) != 0) return NULL;
    if (!in_image(bytes, eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(ElfW(Phdr)))) return NULL;
    *n = eh->e_phnum;
    return (const ElfW(Phdr) *)(img + eh->e_phoff);
}

static const ElfW(Shdr) *elf_shdrs(const uint8_t *img, size_t bytes, size_t *n) {
    const ElfW(Ehdr) *eh = elf_header(img, bytes);
    *n = 0;
    if (eh == NULL || eh->e_shnum == 0 || eh->e_shentsize != sizeof(ElfW(Shdr))) return NULL;
    if (eh->e_shoff % _Alignof(ElfW(Shdr)) != 0) return NULL;
    if (!in_image(bytes, eh->e_shoff, (uint64_t)eh->e_shnum * sizeof(ElfW(Shdr)))) return NULL;
    *n = eh->e_shnum;
    return (const ElfW(Shdr) *)(img + eh->e_shoff);
}

/* notes_build_id: the NT_GNU_BUILD_ID in a run of notes, as hex. */
static const char *notes_build_id(symtab_t *st, const uint8_t *p, size_t len, size_t align) {
    if (align != 8) align = 4;
    size_t off = 0;
    while (len - off >= sizeof(ElfW(Nhdr))) {
        ElfW(Nhdr) nh;
        memcpy(&nh, p + off, sizeof nh);
        off += sizeof nh;
        size_t name_at = off, namesz = (nh.n_namesz + align - 1) & ~(align - 1);
        if (nh.n_namesz > len || namesz > len - off) return NULL;
        off += namesz;
        size_t descsz = (nh.n_descsz + align - 1) & ~(align - 1);
        if (nh.n_descsz > len || descsz > len - off) {
            if (nh.n_descsz > len - off) return NULL;
            descsz = len - off; /* last note, padding cut */
        }
        if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 && memcmp(p + name_at, "GNU", 4) == 0 &&
            nh.n_descsz > 0 && nh.n_descsz <= 64) {
            char hex[129];
            for (size_t i = 0; i < nh.n_descsz; i++) {
                hex[2 * i] = "0123456789abcdef"[p[off + i] >> 4];
                hex[2 * i + 1] = "0123456789abcdef"[p[off + i] & 15];
            }
            return arena_strndup(st, hex, 2 * nh.n_descsz);
        }
        off += descsz;
    }
    return NULL;
}

/* elf_build_id: from the PT_NOTE segments, else from SHT_NOTE sections. */
static const char *elf_build_id(symtab_t *st, const uint8_t *img, size_t bytes) {
    size_t n;
    const ElfW(Phdr) *ph = elf_phdrs(img, bytes, &n);
    for (size_t i = 0; i < n; i++) {
        if (ph[i].p_type != PT_NOTE || !in_image(bytes, ph[i].p_offset, ph[i].p_filesz)) continue;
        const char *id = notes_build_id(st, img + ph[i].p_offset, ph[i].p_filesz, ph[i].p_align);
        if (id != NULL) return id;
    }
    const ElfW(Shdr) *sh = elf_shdrs(img, bytes, &n);
    for (size_t i = 0; i < n; i++) {
        if (sh[i].sh_type != SHT_NOTE || !in_image(bytes, sh[i].sh_offset, sh[i].sh_size)) continue;
        const char *id = notes_build_id(st, img + sh[i].sh_offset, sh[i].sh_size, sh[i].sh_addralign);
        if (id != NULL) return id;
    }
    return "";
}

/* elf_bias: load bias of the image mapped at start from file offset off.  The
 * kernel maps a PT_LOAD segment page-aligned, and p_vaddr and p_offset agree
 * modulo the page size, so start - off is bias + p_vaddr - p_offset. */
static uintptr_t elf_bias(const uint8_t *img, size_t bytes, uintptr_t start, uintptr_t off) {
    size_t n, pg = (size_t)sysconf(_SC_PAGESIZE);
    const ElfW(Phdr) *ph = elf_phdrs(img, bytes, &n);
    for (size_t i = 0; i < n; i++) {
        if (ph[i].p_type != PT_LOAD) continue;
        uintptr_t lo = ph[i].p_offset & ~(uintptr_t)(pg - 1);
        if (off >= lo && off < ph[i].p_offset + (ph[i].p_filesz ? ph[i].p_filesz : 1))
            return start - off - (ph[i].p_vaddr - ph[i].p_offset);
    }
    return start - off;
}

static const uint8_t *map_file(const char *path, size_t *bytes) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct stat sb;
    void *p = MAP_FAILED;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size >= (off_t)sizeof(ElfW(Ehdr)) &&
        (uint64_t)sb.st_size <= MS_SYM_MAX_FILE) {
        p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        *bytes = (size_t)sb.st_size;
    }
    close(fd);
    return p == MAP_FAILED ? NULL : p;
}

/* ------------------------------------------------------------------------
 * Symbol tables
 * ---------------------------------------------------------------------- */

/* sym_rank: which of several names at one address to show: global before
 * weak before local, then the one with fewer leading underscores (qsort over
 * __libc_qsort). */
static uint32_t sym_rank(const char *name, int bind) {
    uint32_t r = bind == STB_GLOBAL ? 0 : bind == STB_WEAK ? 1 : 2, u = 0;
    while (name[u] == '_' && u < 3) u++;
    return r * 4 + u;
}

static bool sym_before(const sym_t *a, const sym_t *b) {
    if (a->addr != b->addr) return a->addr < b->addr;
    return a->rank < b->rank;
}

/* sort_syms: heapsort, in place (glibc's qsort may call malloc). */
static void sort_syms(sym_t *s, size_t n) {
    for (size_t k = n / 2; k-- > 0;) {
        for (size_t i = k;;) {
            size_t c = 2 * i + 1;
            if (c >= n) break;
            if (c + 1 < n && sym_before(&s[c], &s[c + 1])) c++;
            if (!sym_before(&s[i], &s[c])) break;
            sym_t t = s[i]; s[i] = s[c]; s[c] = t;
            i = c;
        }
    }
    for (size_t end = n; end > 1; end--) {
        sym_t t = s[0]; s[0] = s[end - 1]; s[end - 1] = t;
        for (size_t i = 0, m = end - 1;;) {
            size_t c = 2 * i + 1;
            if (c >= m) break;
            if (c + 1 < m && sym_before(&s[c], &s[c + 1])) c++;
            if (!sym_before(&s[i], &s[c])) break;
            t = s[i]; s[i] = s[c]; s[c] = t;
            i = c;
        }
    }
}

/* read_syms: the function symbols of the first section of type `type` in
 * img, sorted and one per address, into mod.  False if there is none. */
static bool read_syms(symtab_t *st, mod_t *m, const uint8_t *img, size_t bytes, uint32_t type) {
    size_t nsh;
    const ElfW(Shdr) *sh = elf_shdrs(img, bytes, &nsh);
    for (size_t i = 0; i < nsh; i++) {
        if (sh[i].sh_type != type || sh[i].sh_link >= nsh || sh[i].sh_entsize != sizeof(ElfW(Sym))) continue;
        const ElfW(Shdr) *ss = &sh[sh[i].sh_link];
        if (ss->sh_type != SHT_STRTAB || !in_image(bytes, ss->sh_offset, ss->sh_size) || ss->sh_size == 0) continue;
        if (!in_image(bytes, sh[i].sh_offset, sh[i].sh_size) || sh[i].sh_offset % _Alignof(ElfW(Sym))) continue;
        const ElfW(Sym) *sym = (const ElfW(Sym) *)(img + sh[i].sh_offset);
        const char *str = (const char *)img + ss->sh_offset;
        size_t nsym = sh[i].sh_size / sizeof(ElfW(Sym)), strsz = ss->sh_size, n = 0;
        for (int pass = 0; pass < 2; pass++) { /* count, then fill */
            if (pass == 1) {
                if (n == 0) return true;
                if ((m->syms = arena_alloc(st, n * sizeof(sym_t))) == NULL) return false;
                n = 0;
            }
            for (size_t j = 0; j < nsym && n < MS_SYM_MAX_SYMS; j++) {
                int t = ELF64_ST_TYPE(sym[j].st_info);
                if ((t != STT_FUNC && t != STT_GNU_IFUNC) || sym[j].st_shndx == SHN_UNDEF ||
                    sym[j].st_size == 0 || sym[j].st_size > UINT32_MAX || sym[j].st_value == 0 || sym[j].st_name == 0 ||
                    sym[j].st_name >= strsz || memchr(str + sym[j].st_name, 0, strsz - sym[j].st_name) == NULL)
                    continue;
                if (pass == 1) {
                    sym_t *s = &m->syms[n];
                    s->addr = sym[j].st_value;
                    s->size = (uint32_t)sym[j].st_size;
                    s->name = str + sym[j].st_name;
                    /* "f@@GLIBC_2.34": the version is not part of the function's name */
                    const char *at = strchr(s->name, '@');
                    if (at && at > s->name) s->name = arena_strndup(st, s->name, (size_t)(at - s->name));
                    if (!s->name) s->name = str + sym[j].st_name;
                    s->pretty = NULL;
                    s->rank = sym_rank(s->name, ELF64_ST_BIND(sym[j].st_info));
                }
                n++;
            }
        }
        sort_syms(m->syms, n);
        size_t k = 0;
        for (size_t j = 0; j < n; j++) {
            if (k > 0 && m->syms[k - 1].addr == m->syms[j].addr) continue; /* aliases: best ranked first */
            m->syms[k++] = m->syms[j];
        }
        m->nsyms = k;
        return true;
    }
    return false;
}

/* mod_load: the module's symbols, on its first lookup.  A binary Debian
 * ships stripped keeps only .dynsym; its .symtab (static functions too) is
 * in the debug package, found by build ID. */
static void mod_load(symtab_t *st, mod_t *m) {
    if (m->loaded) return;
    m->loaded = true;
    if (read_syms(st, m, m->img, m->img_bytes, SHT_SYMTAB)) return;
    size_t idlen = strlen(m->build_id);
    if (idlen > 2 && m->img_mapped) {
        char path[256];
        ms_snprintf(path, sizeof path, "/usr/lib/debug/.build-id/%.2s/%s.debug", m->build_id, m->build_id + 2);
        m->dbg = map_file(path, &m->dbg_bytes);
        if (m->dbg != NULL && read_syms(st, m, m->dbg, m->dbg_bytes, SHT_SYMTAB)) return;
    }
    read_syms(st, m, m->img, m->img_bytes, SHT_DYNSYM);
}

/* sym_find: the symbol whose [addr, addr+size) holds a (link-time address).
 * Symbols may nest (a local label-like function inside a larger one), so a
 * few entries before the nearest one are tried too. */
static sym_t *sym_find(mod_t *m, uintptr_t a) {
    size_t lo = 0, hi = m->nsyms;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->syms[mid].addr <= a) lo = mid + 1;
        else hi = mid;
    }
    for (size_t i = lo, tries = 0; i-- > 0 && tries < 8; tries++)
        if (a - m->syms[i].addr < m->syms[i].size) return &m->syms[i];
    return NULL;
}

/* ------------------------------------------------------------------------
 * Demangling
 * ---------------------------------------------------------------------- */

typedef struct dbuf_s { char *buf; size_t cap, len; } dbuf_t;

static void dm_append(const char *s, size_t n, void *opaque) {
    dbuf_t *d = opaque;
    if (d->len < d->cap) {
        size_t k = d->cap - 1 - d->len < n ? d->cap - 1 - d->len : n;
        memcpy(d->buf + d->len, s, k);
        d->buf[d->len + k] = 0;
    }
    d->len += n;
}

/* ms_sym_demangle: see prof.h. */
size_t ms_sym_demangle(const char *mangled, char *buf, size_t cap) {
    if (cap == 0) return 0;
    buf[0] = 0;
    if (mangled == NULL || mangled[0] != '_' || mangled[1] != 'Z') return 0;
    dbuf_t d = {buf, cap, 0};
    if (!cplus_demangle_v3_callback(mangled, DMGL_PARAMS | DMGL_ANSI, dm_append, &d)) {
        buf[0] = 0;
        return 0;
    }
    return d.len;
}

static const char *pretty_name(symtab_t *st, const char *name) {
    char buf[1024];
    size_t n = ms_sym_demangle(name, buf, sizeof buf);
    if (n == 0) return name;
    if (n < sizeof buf) return intern(st, buf);
    char *big = arena_alloc(st, n + 1); /* rare: a long template name */
    if (big == NULL) return name;
    ms_sym_demangle(name, big, n + 1);
    return big;
}

/* ------------------------------------------------------------------------
 * libdw, loaded on first need
 * ---------------------------------------------------------------------- */

#define DW_FUNCS(X)                                                                               \
    X(dwfl_begin) X(dwfl_end) X(dwfl_report_begin_add) X(dwfl_report_elf) X(dwfl_report_end)      \
    X(dwfl_module_getsrc) X(dwfl_lineinfo) X(dwfl_module_addrdie) X(dwfl_module_build_id)         \
    X(dwfl_module_getdwarf) X(dwfl_module_nextcu) X(dwarf_haspc) X(dwarf_getsrc_die)              \
    X(dwarf_linesrc) X(dwarf_lineno)                                                              \
    X(dwarf_getscopes) X(dwarf_getscopes_die) X(dwarf_tag) X(dwarf_attr) X(dwarf_attr_integrate)  \
    X(dwarf_formstring) X(dwarf_formudata) X(dwarf_diecu) X(dwarf_getsrcfiles) X(dwarf_filesrc)

static struct {
#define X(f) __typeof__(f) *f;
    DW_FUNCS(X)
#undef X
    bool ok;
} dw;
static pthread_once_t dw_once = PTHREAD_ONCE_INIT;

static void dw_load(void) {
    void *h = dlopen("libdw.so.1", RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) return;
#define X(f) if ((dw.f = (__typeof__(f) *)dlsym(h, #f)) == NULL) return;
    DW_FUNCS(X)
#undef X
    dw.ok = true;
}

static int dw_find_elf(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base,
                       char **file_name, Elf **elfp) {
    return -1; /* every module is reported with its file */
}

/* dw_find_debuginfo: the separate debug file by build ID.  Deliberately not
 * dwfl_standard_find_debuginfo, which may ask a debuginfod server over the
 * network from inside the profiled program. */
static int dw_find_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base,
                             const char *file_name, const char *debuglink_file, GElf_Word debuglink_crc,
                             char **debuginfo_file_name) {
    const unsigned char *bits;
    GElf_Addr vaddr;
    int n = dw.dwfl_module_build_id(mod, &bits, &vaddr);
    if (n <= 1 || n > 64) return -1;
    char path[256];
    size_t len = ms_snprintf(path, sizeof path, "/usr/lib/debug/.build-id/%02x/", bits[0]);
    for (int i = 1; i < n; i++) len += ms_snprintf(path + len, sizeof path - len, "%02x", bits[i]);
    ms_snprintf(path + len, sizeof path - len, ".debug");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) *debuginfo_file_name = strdup(path); /* libdw frees it */
    return fd;
}

static int dw_section_address(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base,
                              const char *secname, GElf_Word shndx, const GElf_Shdr *shdr, Dwarf_Addr *addr) {
    return -1; /* only relocatable files ask; we report none */
}

static const Dwfl_Callbacks dw_callbacks = {
    .find_elf = dw_find_elf,
    .find_debuginfo = dw_find_debuginfo,
    .section_address = dw_section_address,
};

/* Compressed DWARF is inflated whole by libelf on first use, section by
 * section, into memory of the profiled process: libc6-dbg's 4 MB file
 * inflates to 9.8 MB, and a profile written at the exit of a short program
 * (python3 -c pass) grew its peak RSS from 9.7 to 27.8 MB and took 50 ms
 * more.  Compressed DWARF comes from distribution debug packages (gcc -g
 * writes it plain, and plain DWARF is read in place); such a module gets
 * file:line only up to this much inflated, and ELF symbols beyond. */
#define DWARF_INFLATE_MAX ((uint64_t)4 << 20)

/* inflated_bytes: what the image's compressed sections inflate to (their
 * ELF compression headers say so). */
static uint64_t inflated_bytes(const uint8_t *img, size_t bytes) {
    size_t n;
    const ElfW(Shdr) *sh = img ? elf_shdrs(img, bytes, &n) : NULL;
    uint64_t total = 0;
    for (size_t i = 0; sh && i < n; i++) {
        if (!(sh[i].sh_flags & SHF_COMPRESSED) || !in_image(bytes, sh[i].sh_offset, sizeof(ElfW(Chdr)))) continue;
        ElfW(Chdr) ch;
        memcpy(&ch, img + sh[i].sh_offset, sizeof ch);
        total += ch.ch_size;
    }
    return total;
}

/* dw_module: the module's Dwfl_Module, reported on first need at its bias. */
static Dwfl_Module *dw_module(symtab_t *st, mod_t *m) {
    if (m->dw_tried) return m->dw;
    m->dw_tried = true;
    if (!m->img_mapped) return NULL; /* the vDSO has no DWARF */
    if (inflated_bytes(m->img, m->img_bytes) + inflated_bytes(m->dbg, m->dbg_bytes) > DWARF_INFLATE_MAX) return NULL;
    pthread_once(&dw_once, dw_load);
    if (!dw.ok) return NULL;
    if (st->dwfl == NULL && (st->dwfl = dw.dwfl_begin(&dw_callbacks)) == NULL) return NULL;
    dw.dwfl_report_begin_add(st->dwfl);
    Dwfl_Module *dm = dw.dwfl_report_elf(st->dwfl, m->path, m->path, -1, m->bias, true);
    dw.dwfl_report_end(st->dwfl, NULL, NULL);
    /* a module without DWARF (most of a Debian system) is dropped here once,
     * not asked again at every pc */
    Dwarf_Addr bias;
    if (dm != NULL && dw.dwfl_module_getdwarf(dm, &bias) != NULL) m->dw = dm;
    return m->dw;
}

/* die_name: linkage name if any (so C++ frames demangle with parameters),
 * else the plain name; through abstract origins and specifications. */
static const char *die_name(Dwarf_Die *die) {
    Dwarf_Attribute a;
    const char *s = NULL;
    if (dw.dwarf_attr_integrate(die, DW_AT_linkage_name, &a) != NULL) s = dw.dwarf_formstring(&a);
    if (s == NULL && dw.dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &a) != NULL) s = dw.dwarf_formstring(&a);
    if (s == NULL && dw.dwarf_attr_integrate(die, DW_AT_name, &a) != NULL) s = dw.dwarf_formstring(&a);
    return s;
}

typedef struct dwframe_s { const char *name, *file; int line; } dwframe_t;

/* dw_frames: the functions at pc from DWARF, innermost first: inlined
 * subroutines, then the subprogram holding them.  Frame 0's line is the line
 * table's; frame k's is the call site recorded on inlined frame k-1.  Returns
 * the count, 0 if DWARF knows nothing of pc. */
static int dw_frames(Dwfl_Module *dm, uintptr_t pc, dwframe_t *f, int max) {
    int n = 0;
    Dwarf_Addr bias = 0;
    Dwarf_Die *cu = dw.dwfl_module_addrdie(dm, pc, &bias);
    /* libdw 0.188 (Debian 12) finds a unit only through .debug_aranges, which
     * clang does not emit by default: then ask each unit (the result is
     * cached per pc by the caller) */
    for (Dwarf_Die *c = NULL; cu == NULL && (c = dw.dwfl_module_nextcu(dm, c, &bias)) != NULL;)
        if (dw.dwarf_haspc(c, pc - bias) > 0) cu = c;
    /* outside every unit (crt1's _start, code built without -g) the line
     * table's nearest row belongs to some other function: say nothing */
    if (cu == NULL) return 0;
    const char *file0 = NULL;
    int line0 = 0;
    Dwfl_Line *line = dw.dwfl_module_getsrc(dm, pc);
    if (line != NULL) {
        file0 = dw.dwfl_lineinfo(line, NULL, &line0, NULL, NULL, NULL);
    } else if (cu != NULL) {
        Dwarf_Line *dl = dw.dwarf_getsrc_die(cu, pc - bias);
        if (dl != NULL && (file0 = dw.dwarf_linesrc(dl, NULL, NULL)) != NULL && dw.dwarf_lineno(dl, &line0) != 0)
            line0 = 0;
    }

    Dwarf_Die *scopes = NULL, *chain = NULL;
    int ns = cu != NULL ? dw.dwarf_getscopes(cu, pc - bias, &scopes) : -1;
    int nc = 0;
    if (ns > 0) {
        /* dwarf_getscopes follows inlined code into its abstract definition;
         * the physical nesting of scopes[0] is what gives the call sites. */
        Dwarf_Die inner = scopes[0];
        nc = dw.dwarf_getscopes_die(&inner, &chain);
    }
    free(scopes); /* libdw's malloc */
    Dwarf_Files *files = NULL;
    Dwarf_Die cudie;
    if (nc > 0 && dw.dwarf_diecu(&chain[0], &cudie, NULL, NULL) != NULL)
        if (dw.dwarf_getsrcfiles(&cudie, &files, NULL) != 0) files = NULL;
    const char *file = file0;
    int ln = line0;
    for (int i = 0; i < nc && n < max; i++) {
        int tag = dw.dwarf_tag(&chain[i]);
        if (tag != DW_TAG_inlined_subroutine && tag != DW_TAG_subprogram) continue;
        f[n].name = die_name(&chain[i]);
        f[n].file = file;
        f[n].line = ln;
        n++;
        if (tag == DW_TAG_subprogram) break;
        /* the caller's position is the call site of this inlined call */
        Dwarf_Attribute a;
        Dwarf_Word v;
        file = NULL;
        ln = 0;
        if (files != NULL && dw.dwarf_formudata(dw.dwarf_attr(&chain[i], DW_AT_call_file, &a), &v) == 0)
            file = dw.dwarf_filesrc(files, v, NULL, NULL);
        if (dw.dwarf_formudata(dw.dwarf_attr(&chain[i], DW_AT_call_line, &a), &v) == 0) ln = (int)v;
    }
    free(chain);
    /* a line row with no function DIE around pc is the nearest row of some
     * other code (crt1's _start lies between units): not trusted */
    return n;
}

/* ------------------------------------------------------------------------
 * /proc/self/maps
 * ---------------------------------------------------------------------- */

static const char *hex_field(const char *s, const char *end, uintptr_t *v) {
    uintptr_t x = 0;
    const char *p = s;
    for (; p < end; p++) {
        int d = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
        if (d < 0) break;
        x = x << 4 | (uintptr_t)d;
    }
    *v = x;
    return p == s ? NULL : p;
}

static mod_t *find_or_add_module(symtab_t *st, const char *path, uintptr_t start, uintptr_t off) {
    const uint8_t *img = NULL;
    size_t bytes = 0;
    bool mapped = false, again = false;
    if (st->nmods >= MS_SYM_MAX_MAPS) return NULL;
    if (strcmp(path, "[vdso]") == 0) {
        img = (const uint8_t *)start; /* the kernel maps the whole vDSO image here */
    } else if (path[0] == '/') {
        for (int i = st->nmods - 1; i >= 0; i--) { /* a later mapping of a file already seen */
            mod_t *m = &st->mods[i];
            if (m->img_mapped && strcmp(m->path, path) == 0) {
                if (elf_bias(m->img, m->img_bytes, start, off) == m->bias) return m;
                again = true;
            }
        }
        img = map_file(path, &bytes);
        mapped = img != NULL;
    }
    if (img == NULL) return NULL;
    mod_t *m = &st->mods[st->nmods++];
    m->img = img;
    m->img_bytes = bytes;
    m->img_mapped = mapped;
    m->path = path;
    /* A second copy of a file's code at another bias (V8 maps node's
     * builtins again, far from the executable) gets symbols but no DWARF:
     * reported to libdw as the whole file at that bias, it overlapped the
     * other modules, and a lookup in it crashed inside libdw (tfind, from
     * dwfl_module_addrdie) on every debug=1 profile of node. */
    m->dw_tried = again;
    return m;
}

static void add_map(symtab_t *st, const char *line, const char *end) {
    uintptr_t start, limit, off;
    const char *p = hex_field(line, end, &start);
    if (p == NULL || p >= end || *p != '-' || (p = hex_field(p + 1, end, &limit)) == NULL) return;
    if (end - p < 6 || p[0] != ' ' || p[1] != 'r' || p[3] != 'x') return;
    p += 6;
    if ((p = hex_field(p, end, &off)) == NULL) return;
    for (int field = 0; field < 2; field++) { /* dev, inode */
        while (p < end && *p == ' ') p++;
        while (p < end && *p != ' ') p++;
    }
    while (p < end && *p == ' ') p++;
    if (st->nmaps >= MS_SYM_MAX_MAPS) {
        if (st->nmaps++ == MS_SYM_MAX_MAPS)
            ms_warn("memscope: more than %d executable mappings; the rest are not symbolized", MS_SYM_MAX_MAPS);
        return;
    }
    const char *path = arena_strndup(st, p, (size_t)(end - p));
    if (path == NULL) return;
    sym_map_t *mp = &st->maps[st->nmaps];
    *mp = (sym_map_t){start, limit, off, start - off, path, ""};
    mod_t *m = find_or_add_module(st, path, start, off);
    if (m != NULL && m->build_id == NULL) {
        if (!m->img_mapped) m->img_bytes = limit - start; /* [vdso] */
        m->bias = elf_bias(m->img, m->img_bytes, start, off);
        m->build_id = elf_build_id(st, m->img, m->img_bytes);
        if (m->build_id == NULL) m->build_id = "";
    }
    if (m != NULL) mp->build_id = m->build_id, mp->bias = m->bias;
    st->mapmod[st->nmaps++] = m;
}

static bool read_maps(symtab_t *st) {
    int fd = ms_os_open_proc_mm("maps");
    if (fd < 0) return false;
    size_t cap = 64 << 10, have = 0;
    char *buf = arena_alloc(st, cap);
    if (buf == NULL) {
        close(fd);
        return false;
    }
    bool skipping = false; /* inside a line longer than the buffer */
    for (;;) {
        ssize_t r = read(fd, buf + have, cap - have);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        have += (size_t)r;
        char *line = buf, *nl;
        while ((nl = memchr(line, '\n', have - (size_t)(line - buf))) != NULL) {
            if (!skipping) add_map(st, line, nl);
            skipping = false;
            line = nl + 1;
        }
        have -= (size_t)(line - buf);
        memmove(buf, line, have);
        if (have == cap) {
            have = 0;
            skipping = true;
        }
    }
    if (have > 0 && !skipping) add_map(st, buf, buf + have);
    close(fd);
    if (st->nmaps > MS_SYM_MAX_MAPS) st->nmaps = MS_SYM_MAX_MAPS;
    return true;
}

/* ------------------------------------------------------------------------
 * Interface (prof.h)
 * ---------------------------------------------------------------------- */

symtab_t *ms_sym_open(void) {
    int saved = errno;
    symtab_t tmp = {0};
    symtab_t *st = arena_alloc(&tmp, sizeof(symtab_t));
    if (st == NULL) return NULL;
    *st = tmp;
    st->maps = arena_alloc(st, MS_SYM_MAX_MAPS * sizeof(sym_map_t));
    st->mapmod = arena_alloc(st, MS_SYM_MAX_MAPS * sizeof(mod_t *));
    st->mods = arena_alloc(st, MS_SYM_MAX_MAPS * sizeof(mod_t));
    if (st->maps == NULL || st->mapmod == NULL || st->mods == NULL || !read_maps(st)) {
        ms_sym_close(st);
        st = NULL;
    }
    errno = saved;
    return st;
}

int ms_sym_nmaps(const symtab_t *st) { return st->nmaps; }

const sym_map_t *ms_sym_map(const symtab_t *st, int i) {
    return i >= 0 && i < st->nmaps ? &st->maps[i] : NULL;
}

static int map_find(const symtab_t *st, uintptr_t pc) {
    int lo = 0, hi = st->nmaps;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (st->maps[mid].start <= pc) lo = mid + 1;
        else hi = mid;
    }
    return lo > 0 && pc < st->maps[lo - 1].limit ? lo - 1 : -1;
}

/* frames_dwarf: the frames at pc in a module with DWARF into f (room for
 * MS_SYM_MAX_INLINE), base being the ELF symbol's frame; the count. */
static int frames_dwarf(symtab_t *st, Dwfl_Module *dm, uintptr_t pc, sym_frame_t base, sym_frame_t *out) {
    dwframe_t f[MS_SYM_MAX_INLINE];
    int nf = dw_frames(dm, pc, f, MS_SYM_MAX_INLINE), n = 0;
    for (int i = 0; i < nf - 1; i++) { /* inlined frames, innermost first */
        const char *name = f[i].name != NULL ? intern(st, f[i].name) : NULL;
        out[n++] = (sym_frame_t){name, name != NULL ? pretty_name(st, name) : NULL, 0,
                                 f[i].file != NULL ? intern(st, f[i].file) : NULL, f[i].line, base.map};
    }
    if (nf > 0) {
        base.file = f[nf - 1].file != NULL ? intern(st, f[nf - 1].file) : NULL;
        base.line = f[nf - 1].line;
        if (base.name == NULL && f[nf - 1].name != NULL) {
            base.name = intern(st, f[nf - 1].name); /* no ELF symbol: DWARF's name */
            base.pretty = pretty_name(st, base.name);
        }
    }
    out[n++] = base;
    return n;
}

/* cache_slot: where pc's DWARF frames are, or would go (NULL: table full).
 * libdw finds the scopes at a pc by walking its compilation unit's DIEs, tens
 * of microseconds in a large unit, so each pc is asked once per symtab. */
static pcache_t *cache_slot(symtab_t *st, uintptr_t pc) {
    if (st->cache == NULL && (st->cache = arena_alloc(st, CACHE_SLOTS * sizeof(pcache_t))) == NULL) return NULL;
    uint64_t h = (uint64_t)pc * 0x9e3779b97f4a7c15ull;
    for (size_t i = h >> 48 & (CACHE_SLOTS - 1);; i = (i + 1) & (CACHE_SLOTS - 1)) {
        if (st->cache[i].frames == NULL) return st->ncached < CACHE_SLOTS / 4 * 3 ? &st->cache[i] : NULL;
        if (st->cache[i].pc == pc) return &st->cache[i];
    }
}

int ms_sym_lookup(symtab_t *st, uintptr_t pc, sym_frame_t *out, int cap) {
    if (cap <= 0) return 0;
    int saved = errno;
    sym_frame_t base = {NULL, NULL, 0, NULL, 0, map_find(st, pc)};
    mod_t *m = base.map >= 0 ? st->mapmod[base.map] : NULL;
    int n = 1;
    sym_frame_t fr[MS_SYM_MAX_INLINE], *f = &base;
    if (m != NULL) {
        mod_load(st, m);
        Dwfl_Module *dm = dw_module(st, m);
        pcache_t *c = dm != NULL ? cache_slot(st, pc) : NULL;
        if (c != NULL && c->frames != NULL) {
            f = c->frames;
            n = c->n;
        } else {
            sym_t *s = m->nsyms > 0 ? sym_find(m, pc - m->bias) : NULL;
            if (s != NULL) {
                if (s->pretty == NULL) s->pretty = pretty_name(st, s->name);
                base.name = s->name;
                base.pretty = s->pretty;
                base.offset = pc - m->bias - s->addr;
            }
            if (dm != NULL) {
                n = frames_dwarf(st, dm, pc, base, fr);
                f = fr;
                if (c != NULL && (c->frames = arena_alloc(st, (size_t)n * sizeof(sym_frame_t))) != NULL) {
                    memcpy(c->frames, fr, (size_t)n * sizeof(sym_frame_t));
                    c->pc = pc;
                    c->n = n;
                    st->ncached++;
                }
            }
        }
    }
    /* more frames than room: the innermost inlined ones, and the real
     * function last as promised */
    int k = n <= cap ? n : cap;
    memcpy(out, f, (size_t)(k - 1) * sizeof(sym_frame_t));
    out[k - 1] = f[n - 1];
    errno = saved;
    return k;
}

void ms_sym_close(symtab_t *st) {
    if (st == NULL) return;
    int saved = errno;
    if (st->dwfl != NULL) dw.dwfl_end(st->dwfl);
    for (int i = 0; i < st->nmods; i++) {
        if (st->mods[i].img_mapped) munmap((void *)st->mods[i].img, st->mods[i].img_bytes);
        if (st->mods[i].dbg != NULL) munmap((void *)st->mods[i].dbg, st->mods[i].dbg_bytes);
    }
    for (chunk_t *c = st->chunks, *next; c != NULL; c = next) { /* st lives in one of them */
        next = c->next;
        ms_os_free(c, c->bytes); /* ms_os_alloc's: it lists them (os.c, memscope's own mappings) */
    }
    errno = saved;
}

/* ms_sym_first_frame: the index of the first of pcs[0..n) that is not C++'s
 * operator new or new[] (linkage names _Znw... and _Zna...: every variant,
 * nothrow and aligned).  Those only pass the request on to malloc, so the
 * caller of new is the allocation site a C++ programmer wants named, as
 * memscope's own frames are already cut off for C.  Done when a profile is
 * written, by name, so it holds for a libstdc++ loaded at any time. */
uint32_t ms_sym_first_frame(symtab_t *st, const uintptr_t *pcs, uint32_t n) {
    uint32_t i = 0;
    for (; st && i + 1 < n; i++) {
        sym_frame_t f[8];
        int k = ms_sym_lookup(st, pcs[i] - 1, f, 8);
        const char *name = k > 0 ? f[k - 1].name : NULL;
        if (!name || strncmp(name, "_Zn", 3) != 0 || (name[3] != 'w' && name[3] != 'a')) break;
    }
    return i;
}
