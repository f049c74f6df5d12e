// check: a minimal unit-test frame for the library's test programs.
//
// A test program defines TEST functions and calls RUN on each from main; every
// RUN prints one TAP-style line ("ok - name" / "not ok - name") and failed
// expectations print "# file:line: ..." diagnostics.  tests/run.sh adds the
// lines of all programs into the closing "N passed, N failed" summary.
#ifndef MEDSSL_CHECK_H
#define MEDSSL_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int check_current_failures;
static int check_total_failed;
static int check_total_run;

static inline void check_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#include <stdarg.h>
static inline void check_fail(const char *file, int line, const char *fmt, ...)
{
    if (check_current_failures++ < 10) {
        va_list ap;
        va_start(ap, fmt);
        printf("# %s:%d: ", file, line);
        vprintf(fmt, ap);
        printf("\n");
        va_end(ap);
    }
}

#define EXPECT(cond)                                                          \
    do {                                                                      \
        if (!(cond))                                                          \
            check_fail(__FILE__, __LINE__, "expected %s", #cond);             \
    } while (0)

#define EXPECT_MSG(cond, ...)                                                 \
    do {                                                                      \
        if (!(cond))                                                          \
            check_fail(__FILE__, __LINE__, __VA_ARGS__);                      \
    } while (0)

// |a - b| <= atol + rtol * |b|, with b the reference value.
#define EXPECT_CLOSE(a, b, atol, rtol)                                        \
    do {                                                                      \
        double check_a_ = (double)(a), check_b_ = (double)(b);                \
        if (!(fabs(check_a_ - check_b_) <= (atol) + (rtol) * fabs(check_b_))) \
            check_fail(__FILE__, __LINE__, "%s = %.9g, expected %s = %.9g",   \
                       #a, check_a_, #b, check_b_);                           \
    } while (0)

static inline void check_run(const char *name, void (*fn)(void))
{
    check_current_failures = 0;
    fn();
    check_total_run++;
    if (check_current_failures) {
        check_total_failed++;
        printf("not ok - %s\n", name);
    } else {
        printf("ok - %s\n", name);
    }
    fflush(stdout);
}

#define TEST(name) static void name(void)
#define RUN(name) check_run(#name, name)
#define CHECK_DONE() (check_total_failed ? 1 : 0)

#endif
