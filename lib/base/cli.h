// cli: the command-line pieces every tool shares: the version line, checked
// number parsing for option values (a bad value is a usage error, exit 2),
// and the progress line that long work prints on stderr.
#ifndef MEDSSL_CLI_H
#define MEDSSL_CLI_H

#include <stdbool.h>
#include <stdint.h>

#define MEDSSL_VERSION "0.1.0"

// Prints "tool (medssl) VERSION" and, when `detail` is not NULL, a second line
// (the compute tools pass the BLIS kernel set and thread count).
void cli_version(const char *detail);

// Parse an option value or die_usage("--name: ...").
long long cli_int(const char *opt, const char *s, long long min, long long max);
double cli_double(const char *opt, const char *s, double min, double max);

// The command line without some options and their values, for what a
// checkpoint records of the run that made it (options that only observe a
// run, like ntxent-step's --monitor, must leave its bytes alone).  orig is
// argv as given (argc entries, copied before getopt_long permuted argv);
// drop holds the optarg of each option to leave out, which goes with the
// element that holds it ("--monitor=F") or with it and the one before it
// ("--monitor F", abbreviations too).  Returns a malloc'd array of
// *out_argc pointers into orig.
char **cli_args_without(int argc, char *const *orig, const char *const *drop, int ndrop, int *out_argc);

// Progress on stderr: on a terminal, a line rewritten in place at most ten
// times a second; otherwise a plain line every `plain_every` seconds.  The
// caller formats the text; progress_done ends the line.
typedef struct {
    double last, plain_every;
    bool tty, dirty;
} progress_t;
void progress_init(progress_t *p, double plain_every);
void progress_update(progress_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void progress_done(progress_t *p);

#endif
