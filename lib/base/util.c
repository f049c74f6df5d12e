#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <sched.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *progname = "medssl";

static void on_sigpipe(int sig)
{
    (void)sig;
    _exit(0);
}

// A fixed table, so that the signal handler can walk it without locks or
// allocation.  A tool has a handful of outputs at most.
#define TEMP_SLOTS 16
static char temp_paths[TEMP_SLOTS][4096];
static volatile sig_atomic_t temp_used[TEMP_SLOTS];

void temp_register(const char *path)
{
    for (int i = 0; i < TEMP_SLOTS; i++) {
        if (!temp_used[i]) {
            snprintf(temp_paths[i], sizeof temp_paths[i], "%s", path);
            temp_used[i] = 1;
            return;
        }
    }
    die("output", "too many open output files");
}

void temp_release(const char *path)
{
    for (int i = 0; i < TEMP_SLOTS; i++)
        if (temp_used[i] && strcmp(temp_paths[i], path) == 0)
            temp_used[i] = 0;
}

static void remove_temps(void)
{
    for (int i = 0; i < TEMP_SLOTS; i++)
        if (temp_used[i]) {
            unlink(temp_paths[i]);
            temp_used[i] = 0;
        }
}

static void on_terminate(int sig)
{
    remove_temps();
    signal(sig, SIG_DFL);
    raise(sig);
}

// Installs a handler, unless the signal was ignored when the process
// started: nohup ignores SIGHUP, and a shell without job control ignores
// SIGINT in its background commands; those choices must stand.
static void catch_signal(int sig, void (*handler)(int))
{
    struct sigaction old, sa;
    if (sigaction(sig, NULL, &old) == 0 && old.sa_handler == SIG_IGN)
        return;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigaction(sig, &sa, NULL);
}

static volatile sig_atomic_t *stop_flag;

static void on_stop(int sig)
{
    if (stop_flag && !*stop_flag) {
        *stop_flag = sig;
        return;
    }
    on_terminate(sig);
}

void on_stop_signal(volatile sig_atomic_t *flag)
{
    stop_flag = flag;
    catch_signal(SIGINT, on_stop);
    catch_signal(SIGTERM, on_stop);
}

void util_init(const char *argv0)
{
    if (argv0 && *argv0) {
        const char *slash = strrchr(argv0, '/');
        progname = slash ? slash + 1 : argv0;
    }
    // A downstream tool that exits early (head, a failing stage) must not
    // make us print "Broken pipe" noise or exit with a signal status.
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigpipe;
    sigaction(SIGPIPE, &sa, NULL);
    catch_signal(SIGINT, on_terminate);
    catch_signal(SIGTERM, on_terminate);
    catch_signal(SIGHUP, on_terminate);
    atexit(remove_temps);
    // Freed memory stays with the process for the next image or batch:
    // glibc hands a freed block over 128 KiB back to the kernel (munmap, or
    // by trimming the heap), and the next one of the same size then faults
    // its pages in again, zero-filled.  On this project's virtual machines
    // page faults are dear: case-pack spent 40% of its time in the kernel
    // (300 photos on 2 threads: 1.2 s, 0.5 s with these settings).  Blocks
    // over 32 MiB (activations, workspaces) are still mapped on their own.
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

const char *util_progname(void) { return progname; }

bool failf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return false;
}

static void vwarn(const char *where, const char *fmt, va_list ap)
{
    // One fprintf per piece would interleave with other tools in a pipeline;
    // format the whole line first.
    char line[4096];
    int n = snprintf(line, sizeof line, "%s: ", progname);
    if (where && n < (int)sizeof line)
        n += snprintf(line + n, sizeof line - n, "%s: ", where);
    if (n < (int)sizeof line)
        n += vsnprintf(line + n, sizeof line - n, fmt, ap);
    if (n >= (int)sizeof line - 1)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    fwrite(line, 1, (size_t)n, stderr);
}

void warnf(const char *where, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vwarn(where, fmt, ap);
    va_end(ap);
}

void die(const char *where, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vwarn(where, fmt, ap);
    va_end(ap);
    exit(1);
}

void die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vwarn("usage", fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help'.\n", progname);
    exit(EXIT_USAGE);
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("memory", "cannot allocate %zu bytes", n);
    return p;
}

void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        die("memory", "cannot allocate %zu x %zu bytes", count, size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        die("memory", "cannot allocate %zu bytes", n);
    return q;
}

char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

void *xaligned_alloc(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64) != 0)
        die("memory", "cannot allocate %zu aligned bytes", n);
    return p;
}

size_t mul_size(size_t a, size_t b, const char *what)
{
    size_t r;
    if (__builtin_mul_overflow(a, b, &r))
        die(what, "size overflow (%zu x %zu)", a, b);
    return r;
}

size_t add_size(size_t a, size_t b, const char *what)
{
    size_t r;
    if (__builtin_add_overflow(a, b, &r))
        die(what, "size overflow (%zu + %zu)", a, b);
    return r;
}

int temp_create_beside(const char *path, char **temp)
{
    size_t n = strlen(path) + 16;
    *temp = xmalloc(n);
    const char *slash = strrchr(path, '/');
    int dirlen = slash ? (int)(slash - path) + 1 : 0;
    snprintf(*temp, n, "%.*s.%s.XXXXXX", dirlen, path, path + dirlen);
    int fd = mkstemp(*temp);
    if (fd < 0)
        die(path, "cannot create: %s", strerror(errno));
    temp_register(*temp);
    // mkstemp makes the file 0600; give it the permissions open() would.
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    return fd;
}

void temp_commit(char *temp, const char *path)
{
    if (rename(temp, path) != 0)
        die(path, "rename from %s: %s", temp, strerror(errno));
    temp_release(temp);
    free(temp);
    // Make the rename itself durable.
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[1] = 0;
    int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(dir);
}

void check_writable(const char *path)
{
    char *temp;
    close(temp_create_beside(path, &temp));
    unlink(temp);
    temp_release(temp);
    free(temp);
}

int default_threads(void)
{
    const char *s = getenv("MEDSSL_THREADS");
    if (s && *s) {
        char *end;
        long n = strtol(s, &end, 10);
        if (*end || n < 1 || n > 4096)
            die(NULL, "MEDSSL_THREADS=%s: expected a thread count >= 1", s);
        return (int)n;
    }
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
