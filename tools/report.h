/* report.h: `memscope report`, the pprof -top table without a Go toolchain.
 * memscope.c only dispatches here; see report.c for the design. */
#ifndef MS_REPORT_H
#define MS_REPORT_H

/* ms_report_main runs `memscope report ARGS...` (argv holds the words after
 * "report") and returns the exit status: 0 ok, 1 unreadable or invalid
 * profile, 2 usage error.  Messages are one line each on stderr. */
int ms_report_main(int argc, char **argv);

/* Usage lines of `report`, for memscope --help. */
extern const char ms_report_usage[];

#endif /* MS_REPORT_H */
