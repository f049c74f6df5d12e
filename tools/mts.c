// mts: look inside tensor streams, convert and cut them (see mts(1)).
//
//   mts [show] [FILE...]      one line per frame: headers, record keys, tensor stats
//   mts count [FILE...]       headers, records and bytes
//   mts cat [-o OUT] [FILE...] copy frames (raw <-> zstd, --skip/--take records)
#include <errno.h>
#include <float.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "stream.h"
#include "util.h"

static const char usage_text[] =
    "usage: mts [show|count|cat] [options] [FILE...]\n"
    "Inspect, convert and cut tensor streams (standard input when no FILE).\n"
    "\n"
    "commands:\n"
    "  show          one line per frame: offset, kind, fields, tensor dtype/shape/min/max/mean (default)\n"
    "  count         count headers, records and bytes\n"
    "  cat           copy frames to the output (convert raw <-> zstd, select records)\n"
    "\n"
    "options:\n"
    "  -s, --skip N      skip the first N records (headers are kept)\n"
    "  -n, --take N      stop after N records\n"
    "  -o, --output F    cat: write to F (a name ending in .zst compresses; default stdout)\n"
    "  -z, --zstd L      cat: compress with zstd level L (0: raw; default: by the name)\n"
    "  -T, --threads N   cat: zstd worker threads (default 0: in the calling thread)\n"
    "      --no-stats    show: do not compute min/max/mean (faster on big tensors)\n"
    "      --no-headers  cat, show: leave headers out (compare the records of two streams)\n"
    "  -h, --help        this text\n"
    "  -V, --version     version\n";

typedef struct {
    long long skip, take;
    bool stats, headers;
} selection;

// ---- show ---------------------------------------------------------------------

static void print_str(const char *p, uint32_t n)
{
    putchar('"');
    for (uint32_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static double element(const mts_tensor *t, size_t i)
{
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case MTS_U8: return p[i];
    case MTS_U16: { uint16_t v; memcpy(&v, p + 2 * i, 2); return v; }
    case MTS_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case MTS_I64: { int64_t v; memcpy(&v, p + 8 * i, 8); return (double)v; }
    case MTS_F32: { float v; memcpy(&v, p + 4 * i, 4); return v; }
    case MTS_F64: { double v; memcpy(&v, p + 8 * i, 8); return v; }
    }
    return 0;
}

static void print_tensor(const mts_tensor *t, bool stats)
{
    printf("%s[", mts_dtype_name(t->dtype));
    for (int i = 0; i < t->rank; i++)
        printf("%s%lld", i ? "," : "", (long long)t->shape[i]);
    printf("]");
    size_t n = mts_tensor_count(t);
    if (!stats || n == 0)
        return;
    double lo = INFINITY, hi = -INFINITY, sum = 0;
    size_t nonfinite = 0;
    for (size_t i = 0; i < n; i++) {
        double v = element(t, i);
        if (!isfinite(v)) {
            nonfinite++;
            continue;
        }
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        sum += v;
    }
    if (nonfinite == n)
        printf("{all %zu non-finite}", n);
    else
        printf("{min %.6g max %.6g mean %.6g%s}", lo, hi, sum / (double)(n - nonfinite),
               nonfinite ? " NON-FINITE" : "");
    if (nonfinite && nonfinite != n)
        printf("{%zu non-finite}", nonfinite);
}

static void print_value(const msgpack_object *o, bool stats, int depth)
{
    char err[300];
    mts_tensor t;
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: printf("nil"); break;
    case MSGPACK_OBJECT_BOOLEAN: printf(o->via.boolean ? "true" : "false"); break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: printf("%llu", (unsigned long long)o->via.u64); break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: printf("%lld", (long long)o->via.i64); break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: printf("%.9g", o->via.f64); break;
    case MSGPACK_OBJECT_STR: print_str(o->via.str.ptr, o->via.str.size); break;
    case MSGPACK_OBJECT_BIN: printf("<bin %u bytes>", o->via.bin.size); break;
    case MSGPACK_OBJECT_EXT: printf("<ext %d, %u bytes>", o->via.ext.type, o->via.ext.size); break;
    case MSGPACK_OBJECT_ARRAY: {
        uint32_t n = o->via.array.size, shown = n > 12 ? 8 : n;
        printf("[");
        for (uint32_t i = 0; i < shown; i++) {
            if (i)
                printf(", ");
            print_value(&o->via.array.ptr[i], stats, depth + 1);
        }
        if (shown < n)
            printf(", ... %u items", n);
        printf("]");
        break;
    }
    case MSGPACK_OBJECT_MAP:
        if (mts_object_is_tensor(o)) {
            if (mts_object_tensor(o, &t, err, sizeof err))
                print_tensor(&t, stats);
            else
                printf("<bad tensor: %s>", err);
            break;
        }
        printf("{");
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (i)
                printf(depth == 0 ? " " : ", ");
            if (kv->key.type == MSGPACK_OBJECT_STR)
                printf("%.*s", (int)kv->key.via.str.size, kv->key.via.str.ptr);
            else
                print_value(&kv->key, stats, depth + 1);
            printf(depth == 0 ? "=" : ": ");
            print_value(&kv->val, stats, depth + 1);
        }
        printf("}");
        break;
    }
}

static void show_frame(const mts_frame *f, bool stats)
{
    printf("%-10llu %-6s ", (unsigned long long)f->offset, f->is_header ? "header" : "record");
    // Top-level fields as key=value without the outer braces.
    const msgpack_object_map *m = &f->root.via.map;
    for (uint32_t i = 0; i < m->size; i++) {
        if (i)
            putchar(' ');
        const msgpack_object *k = &m->ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR)
            printf("%.*s=", (int)k->via.str.size, k->via.str.ptr);
        else {
            print_value(k, stats, 1);
            putchar('=');
        }
        print_value(&m->ptr[i].val, stats, 1);
    }
    putchar('\n');
}

// ---- the frame loop shared by the commands -----------------------------------

typedef enum { CMD_SHOW, CMD_COUNT, CMD_CAT } command;

typedef struct {
    long long headers, records, seen_records;
    unsigned long long bytes;
} tally;

// Returns false when --take is satisfied (stop reading).
static bool visit(command cmd, const selection *sel, mts_writer *out, const mts_frame *f, tally *t)
{
    if (f->is_header) {
        t->headers++;
        if (!sel->headers)
            return true;
    } else {
        if (sel->take >= 0 && t->records >= sel->take)
            return false;
        if (t->seen_records++ < sel->skip)
            return true;
        t->records++;
    }
    t->bytes += f->size;
    if (cmd == CMD_SHOW)
        show_frame(f, sel->stats);
    else if (cmd == CMD_CAT)
        mts_write_frame(out, f);
    return true;
}

int main(int argc, char **argv)
{
    util_init(argv[0]);
    command cmd = CMD_SHOW;
    int first = 1;
    if (argc > 1) {
        if (strcmp(argv[1], "show") == 0)
            cmd = CMD_SHOW, first = 2;
        else if (strcmp(argv[1], "count") == 0)
            cmd = CMD_COUNT, first = 2;
        else if (strcmp(argv[1], "cat") == 0)
            cmd = CMD_CAT, first = 2;
    }
    selection sel = {.skip = 0, .take = -1, .stats = true, .headers = true};
    const char *output = NULL;
    mts_write_opts wopts = {.zstd_level = -1, .zstd_threads = 0};
    static const struct option longopts[] = {
        {"skip", required_argument, 0, 's'},  {"take", required_argument, 0, 'n'},
        {"output", required_argument, 0, 'o'}, {"zstd", required_argument, 0, 'z'},
        {"threads", required_argument, 0, 'T'}, {"no-stats", no_argument, 0, 'S'},
        {"no-headers", no_argument, 0, 'H'},
        {"help", no_argument, 0, 'h'},         {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    optind = first;
    int c;
    while ((c = getopt_long(argc, argv, "s:n:o:z:T:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 's': sel.skip = cli_int("--skip", optarg, 0, LLONG_MAX); break;
        case 'n': sel.take = cli_int("--take", optarg, 0, LLONG_MAX); break;
        case 'o': output = optarg; break;
        case 'z': wopts.zstd_level = (int)cli_int("--zstd", optarg, 0, 19); break;
        case 'T': wopts.zstd_threads = (int)cli_int("--threads", optarg, 0, 64); break;
        case 'S': sel.stats = false; break;
        case 'H': sel.headers = false; break;
        case 'h': fputs(usage_text, stdout); return 0;
        case 'V': cli_version(NULL); return 0;
        default: die_usage("unknown option");
        }
    }
    if (cmd != CMD_CAT && (output || wopts.zstd_level >= 0))
        die_usage("-o and -z go with 'mts cat'");

    mts_limits lim = mts_limits_default();
    mts_writer *out = cmd == CMD_CAT ? mts_writer_open(output, &wopts) : NULL;
    tally t = {0};
    int nfiles = argc - optind;
    bool more = true;
    for (int i = 0; more && i < (nfiles ? nfiles : 1); i++) {
        const char *path = nfiles ? argv[optind + i] : "-";
        mts_reader *r = mts_reader_open(path, &lim);
        if (!r)
            die(path, "cannot open: %s", strerror(errno));
        mts_frame f;
        while (more && mts_read_or_die(r, &f))
            more = visit(cmd, &sel, out, &f, &t);
        mts_reader_close(r);
    }
    if (out)
        mts_writer_close(out);
    if (cmd == CMD_COUNT)
        printf("%lld headers, %lld records, %llu bytes\n", t.headers, t.records, t.bytes);
    if (cmd == CMD_SHOW)
        fflush(stdout);
    return 0;
}
