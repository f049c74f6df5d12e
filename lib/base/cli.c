#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
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

char **cli_args_without(int argc, char *const *orig, const char *const *drop, int ndrop, int *out_argc)
{
    char **out = xmalloc((size_t)(argc + 1) * sizeof *out);
    int n = 0;
    for (int i = 0; i < argc; i++) {
        bool inside = false, next = false;
        uintptr_t start = (uintptr_t)orig[i], end = start + strlen(orig[i]);
        for (int d = 0; d < ndrop; d++) {
            inside |= (uintptr_t)drop[d] > start && (uintptr_t)drop[d] <= end;
            next |= i + 1 < argc && drop[d] == orig[i + 1];
        }
        if (next)
            i++;  // the option and its value
        else if (!inside)
            out[n++] = orig[i];
    }
    out[n] = NULL;
    *out_argc = n;
    return out;
}
