/* pprofread.h: a bounded reader of pprof profiles (profile.proto), for the
 * memscope CLI.
 *
 * The reader turns a file -- gzipped or plain -- into the arrays below and
 * validates every cross-reference once, so the code that walks a profile
 * (report.c) can index without checking: every string index is below
 * nstrings, every sample's locations are indices into locations[] (not the
 * file's ids), every line's function is an index into functions[] or -1,
 * and every sample has exactly nsample_types values.  A file that does not
 * satisfy all of that is rejected as a whole with a one-line reason; there is
 * no partially read profile.
 *
 * Everything is owned by the profile and freed by ms_pprof_free; strings are
 * NUL-terminated copies (a string holding a NUL byte reads as cut short).
 */
#ifndef MS_PPROFREAD_H
#define MS_PPROFREAD_H

#include <stddef.h>
#include <stdint.h>

typedef struct pp_valuetype_s {
    const char *type, *unit;     /* e.g. "inuse_space", "bytes" */
} pp_valuetype_t;

typedef struct pp_line_s {
    long function;               /* index into functions[], -1 if none */
    int64_t line;                /* 0 if unknown */
} pp_line_t;

typedef struct pp_location_s {
    uint64_t id, address;
    long mapping;                /* index into mappings[], -1 if none */
    pp_line_t *lines;            /* innermost (inlined) first, caller last */
    size_t nlines;
} pp_location_t;

typedef struct pp_function_s {
    uint64_t id;
    const char *name, *system_name, *filename;
    int64_t start_line;
} pp_function_t;

typedef struct pp_mapping_s {
    uint64_t id, start, limit;
    const char *file, *build_id;
} pp_mapping_t;

typedef struct pp_sample_s {
    size_t *locs;                /* indices into locations[], leaf first */
    size_t nlocs;
    int64_t *values;             /* nsample_types of them */
} pp_sample_t;

typedef struct pp_profile_s {
    pp_valuetype_t *sample_types;
    size_t nsample_types;
    long default_sample_type;    /* index into sample_types[], -1 if unset */
    pp_sample_t *samples;
    size_t nsamples;
    pp_location_t *locations;
    size_t nlocations;
    pp_function_t *functions;
    size_t nfunctions;
    pp_mapping_t *mappings;      /* in file order */
    size_t nmappings;
    const char **comments;
    size_t ncomments;
    pp_valuetype_t period_type;
    int64_t period, time_nanos, duration_nanos;
    /* storage behind the pointers above */
    char **strings;
    size_t nstrings;
    char *string_data;
} pp_profile_t;

/* Largest profile accepted, compressed or not (a guard against a gzip bomb
 * and against reading a huge wrong file into memory). */
#define MS_PPROF_MAX_BYTES ((size_t)1 << 30)

/* ms_pprof_read reads and validates the profile at path.  Returns a profile
 * to free with ms_pprof_free, or NULL with a one-line reason (no trailing
 * newline, no path) in err, e.g. "not a pprof profile (truncated varint)". */
pp_profile_t *ms_pprof_read(const char *path, char *err, size_t errlen);

/* ms_pprof_parse does the same for an uncompressed profile.proto in memory
 * (buf is only read, and may be freed once it returns). */
pp_profile_t *ms_pprof_parse(const unsigned char *buf, size_t len, char *err, size_t errlen);

void ms_pprof_free(pp_profile_t *p);

#endif /* MS_PPROFREAD_H */
