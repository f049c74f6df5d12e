// util: process-wide error reporting and checked allocation.
//
// Every message a tool prints has the form "tool: where: what" (the tool name
// is set once by util_init from argv[0]).  die() exits 1 (a failure), usage
// errors exit 2.  Allocation failures are fatal: a tool that cannot get memory
// for a batch has nothing sensible left to do.
#ifndef MEDSSL_UTIL_H
#define MEDSSL_UTIL_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdnoreturn.h>

#define EXIT_USAGE 2

// Records the program name (basename of argv0) used as the message prefix,
// and makes SIGPIPE a quiet exit (a reader that goes away is not an error).
void util_init(const char *argv0);
const char *util_progname(void);

// "tool: where: what\n" on stderr.  `where` may be NULL.
void warnf(const char *where, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
// Formats the message into err (errlen bytes) and returns false: the
// check-and-fail style of the parsers that report instead of dying.
bool failf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
// warnf, then exit(1).
noreturn void die(const char *where, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
// warnf, then exit(2).
noreturn void die_usage(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
// 64-byte aligned allocation (for SIMD and BLIS packing); free with free().
void *xaligned_alloc(size_t n);

// Overflow-checked size arithmetic: dies with `what` on overflow.
size_t mul_size(size_t a, size_t b, const char *what);
size_t add_size(size_t a, size_t b, const char *what);

// Temporary output files (written, then renamed into place) are registered
// here so that an exit through die() or a terminating signal (SIGINT, SIGTERM,
// SIGHUP, handled by util_init) removes them: no half-written output survives.
void temp_register(const char *path);
void temp_release(const char *path);   // after the rename, or after unlinking

// For long jobs that stop cleanly: the first SIGINT or SIGTERM stores the
// signal number in *flag (the job notices it between steps, saves its work
// and exits 128 + signal); a second one stops at once, as util_init's
// default handling does.
void on_stop_signal(volatile sig_atomic_t *flag);

// Atomic output: the file is written to a temporary beside `path` (the same
// folder, so that rename is atomic), created with the permissions open()
// would give and registered with temp_register; temp_commit renames it into
// place, makes the rename durable and releases it.  The caller fsyncs and
// closes the descriptor in between.  Both die on failure.
int temp_create_beside(const char *path, char **temp);
void temp_commit(char *temp, const char *path);

// Dies unless a file can be created beside `path` (where an atomic write
// puts its temporary): long jobs check this before hours of work.
void check_writable(const char *path);

// Threads when a tool is not told: MEDSSL_THREADS, else every core this
// process may run on.
int default_threads(void);

// Monotonic wall clock in seconds.
double now_seconds(void);

#endif
