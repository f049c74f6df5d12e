#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "util.h"

void cli_version(const char *detail)
{
    printf("%s (medssl) %s\n", util_progname(), MEDSSL_VERSION);
    if (detail)
        printf("%s\n", detail);
}

long long cli_int(const char *opt, const char *s, long long min, long long max)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        die_usage("%s: '%s' is not an integer", opt, s);
    if (v < min || v > max)
        die_usage("%s: %lld is out of range [%lld, %lld]", opt, v, min, max);
    return v;
}

double cli_double(const char *opt, const char *s, double min, double max)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        die_usage("%s: '%s' is not a number", opt, s);
    if (v < min || v > max)
        die_usage("%s: %g is out of range [%g, %g]", opt, v, min, max);
    return v;
}

void progress_init(progress_t *p, double plain_every)
{
    p->last = 0;
    p->plain_every = plain_every;
    p->tty = isatty(2);
    p->dirty = false;
}

void progress_update(progress_t *p, const char *fmt, ...)
{
    double t = now_seconds();
    if (t - p->last < (p->tty ? 0.1 : p->plain_every))
        return;
    p->last = t;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (p->tty) {
        fprintf(stderr, "\r\033[K%s: %s", util_progname(), line);
        p->dirty = true;
    } else {
        fprintf(stderr, "%s: %s\n", util_progname(), line);
    }
}

void progress_done(progress_t *p)
{
    if (p->tty && p->dirty)
        fputc('\n', stderr);
    p->dirty = false;
}
