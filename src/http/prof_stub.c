/* prof_stub.c: TEMPORARY weak stand-ins for the heap profiler (src/prof),
 * which lands on main while the endpoint is built on branch http.  With
 * them the library links and every profile route answers "profiling is
 * off".  Delete this file when main's src/prof is merged. */
#include "../prof/prof.h"

#define WEAK __attribute__((weak))
WEAK void ms_prof_thread_internal(void) {}
WEAK bool ms_prof_enabled(void) { return false; }
WEAK prof_snap_t *ms_prof_snap_take(void) { return NULL; }
WEAK void ms_prof_snap_free(prof_snap_t *s) { (void)s; }
WEAK void ms_prof_snap_sub(prof_snap_t *snap, const prof_snap_t *base) { (void)snap, (void)base; }
WEAK symtab_t *ms_sym_open(void) { return NULL; }
WEAK int ms_sym_lookup(symtab_t *st, uintptr_t pc, sym_frame_t *out, int cap) { (void)st, (void)pc, (void)out, (void)cap; return 0; }
WEAK void ms_sym_close(symtab_t *st) { (void)st; }
WEAK int ms_prof_write_pprof(int fd, const prof_snap_t *snap, int kind) { (void)fd, (void)snap, (void)kind; return -1; }
WEAK int ms_prof_write_text(int fd, const prof_snap_t *snap, int kind) { (void)fd, (void)snap, (void)kind; return -1; }
WEAK int ms_prof_write(int fd, int kind, int debug) { (void)fd, (void)kind, (void)debug; return -1; }
