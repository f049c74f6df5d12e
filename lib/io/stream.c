#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "util.h"

// ---- dtypes and tensors -----------------------------------------------------

static const struct {
    const char *name;
    size_t size;
} dtype_info[] = {
    [MTS_U8] = {"u8", 1},   [MTS_U16] = {"u16", 2}, [MTS_I32] = {"i32", 4},
    [MTS_I64] = {"i64", 8}, [MTS_F32] = {"f32", 4}, [MTS_F64] = {"f64", 8},
};

size_t mts_dtype_size(mts_dtype d) { return dtype_info[d].size; }
const char *mts_dtype_name(mts_dtype d) { return dtype_info[d].name; }

bool mts_dtype_parse(const char *name, size_t len, mts_dtype *out)
{
    for (int d = 0; d <= MTS_F64; d++) {
        if (strlen(dtype_info[d].name) == len && memcmp(dtype_info[d].name, name, len) == 0) {
            *out = (mts_dtype)d;
            return true;
        }
    }
    return false;
}

size_t mts_tensor_count(const mts_tensor *t)
{
    size_t n = 1;
    for (int i = 0; i < t->rank; i++)
        n *= (size_t)t->shape[i];
    return n;
}

mts_tensor mts_tensor_make(mts_dtype d, int rank, const int64_t *shape, const void *data)
{
    mts_tensor t = {.dtype = d, .rank = rank, .data = data};
    if (rank < 0 || rank > MTS_MAX_RANK)
        die("tensor", "rank %d out of range 0..%d", rank, MTS_MAX_RANK);
    for (int i = 0; i < rank; i++)
        t.shape[i] = shape[i];
    t.nbytes = mts_tensor_count(&t) * mts_dtype_size(d);
    return t;
}

// ---- limits -----------------------------------------------------------------

static uint64_t env_size(const char *var, uint64_t fallback)
{
    const char *s = getenv(var);
    if (!s || !*s)
        return fallback;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    uint64_t mult = 1;
    switch (*end) {
    case 'k': case 'K': mult = 1ull << 10; end++; break;
    case 'm': case 'M': mult = 1ull << 20; end++; break;
    case 'g': case 'G': mult = 1ull << 30; end++; break;
    }
    if (errno || *end || end == s || v > UINT64_MAX / mult)
        die(var, "not a size: '%s' (a number, optionally with K, M or G)", s);
    return v * mult;
}

mts_limits mts_limits_default(void)
{
    mts_limits lim = {
        .max_frame = env_size("MTS_MAX_FRAME", 1ull << 30),
        .max_count = env_size("MTS_MAX_COUNT", 1ull << 20),
        .max_depth = (int)env_size("MTS_MAX_DEPTH", 16),
    };
    // msgpack-c parses with a fixed stack of 32 levels.
    if (lim.max_depth < 1 || lim.max_depth > 30)
        die("MTS_MAX_DEPTH", "must be between 1 and 30");
    return lim;
}

// ---- the frame scanner --------------------------------------------------------

// Walks one msgpack object at p[0..avail) without allocating anything.
// Returns SCAN_DONE with *size = its length, SCAN_NEED with *need = the number
// of bytes that must be available before the scan can get further, or
// SCAN_BAD with a message and *at = the offending offset.
enum { SCAN_DONE, SCAN_NEED, SCAN_BAD };

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static int scan_object(const uint8_t *p, size_t avail, const mts_limits *lim,
                       uint64_t *size, uint64_t *need, uint64_t *at,
                       char *err, size_t errlen)
{
    uint64_t left[32];  // items still to read at each nesting level
    int depth = 0;
    left[0] = 1;
    uint64_t pos = 0;

    if (avail < 1) {
        *need = 1;
        return SCAN_NEED;
    }
    uint8_t first = p[0];
    if (!((first >= 0x80 && first <= 0x8f) || first == 0xde || first == 0xdf)) {
        *at = 0;
        snprintf(err, errlen, "expected a msgpack map (a header or a record), found byte 0x%02x", first);
        return SCAN_BAD;
    }
    while (depth >= 0) {
        if (left[depth] == 0) {
            depth--;
            continue;
        }
        left[depth]--;
        if (pos + 1 > avail) {
            *need = pos + 1;
            return SCAN_NEED;
        }
        uint8_t b = p[pos];
        uint64_t hl = 1, payload = 0, items = 0;
        bool container = false;
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
            // fixint, nil, bool
        } else if (b >= 0x80 && b <= 0x8f) {
            container = true, items = 2ull * (b & 0x0f);
        } else if (b >= 0x90 && b <= 0x9f) {
            container = true, items = b & 0x0f;
        } else if (b >= 0xa0 && b <= 0xbf) {
            payload = b & 0x1f;
        } else {
            // Lengths of the header's size field, then the fixed payload.
            static const struct { uint8_t sizebytes, fixed, kind; } tab[] = {
                // kind: 0 scalar, 1 str/bin length, 2 ext length (+1 type byte), 3 array, 4 map
                [0xc4 - 0xc4] = {1, 0, 1}, [0xc5 - 0xc4] = {2, 0, 1}, [0xc6 - 0xc4] = {4, 0, 1},
                [0xc7 - 0xc4] = {1, 0, 2}, [0xc8 - 0xc4] = {2, 0, 2}, [0xc9 - 0xc4] = {4, 0, 2},
                [0xca - 0xc4] = {0, 4, 0}, [0xcb - 0xc4] = {0, 8, 0}, [0xcc - 0xc4] = {0, 1, 0},
                [0xcd - 0xc4] = {0, 2, 0}, [0xce - 0xc4] = {0, 4, 0}, [0xcf - 0xc4] = {0, 8, 0},
                [0xd0 - 0xc4] = {0, 1, 0}, [0xd1 - 0xc4] = {0, 2, 0}, [0xd2 - 0xc4] = {0, 4, 0},
                [0xd3 - 0xc4] = {0, 8, 0}, [0xd4 - 0xc4] = {0, 2, 0}, [0xd5 - 0xc4] = {0, 3, 0},
                [0xd6 - 0xc4] = {0, 5, 0}, [0xd7 - 0xc4] = {0, 9, 0}, [0xd8 - 0xc4] = {0, 17, 0},
                [0xd9 - 0xc4] = {1, 0, 1}, [0xda - 0xc4] = {2, 0, 1}, [0xdb - 0xc4] = {4, 0, 1},
                [0xdc - 0xc4] = {2, 0, 3}, [0xdd - 0xc4] = {4, 0, 3}, [0xde - 0xc4] = {2, 0, 4},
                [0xdf - 0xc4] = {4, 0, 4},
            };
            if (b == 0xc1) {
                *at = pos;
                snprintf(err, errlen, "invalid msgpack byte 0xc1");
                return SCAN_BAD;
            }
            uint8_t sb = tab[b - 0xc4].sizebytes, kind = tab[b - 0xc4].kind;
            hl = 1 + sb + (kind == 2);
            if (pos + hl > avail) {
                *need = pos + hl;
                return SCAN_NEED;
            }
            uint64_t n = be(p + pos + 1, sb);
            switch (kind) {
            case 0: payload = tab[b - 0xc4].fixed; break;
            case 1: case 2: payload = n; break;
            case 3: container = true, items = n; break;
            case 4: container = true, items = 2 * n; break;
            }
        }
        if (container) {
            uint64_t count = (b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf ? items / 2 : items;
            if (count > lim->max_count) {
                *at = pos;
                snprintf(err, errlen, "a%s declares %llu elements, over the limit of %llu (MTS_MAX_COUNT)",
                         items == count ? "n array" : " map", (unsigned long long)count,
                         (unsigned long long)lim->max_count);
                return SCAN_BAD;
            }
            if (depth + 1 >= lim->max_depth) {
                *at = pos;
                snprintf(err, errlen, "nesting deeper than the limit of %d (MTS_MAX_DEPTH)", lim->max_depth);
                return SCAN_BAD;
            }
            left[++depth] = items;
        }
        if (payload > lim->max_frame || pos + hl + payload > lim->max_frame) {
            *at = pos;
            snprintf(err, errlen, "a frame of more than %llu bytes, over the limit of %llu (MTS_MAX_FRAME)",
                     (unsigned long long)(pos + hl + payload), (unsigned long long)lim->max_frame);
            return SCAN_BAD;
        }
        pos += hl + payload;
        if (pos > avail) {
            *need = pos;
            return SCAN_NEED;
        }
    }
    *size = pos;
    return SCAN_DONE;
}

// ---- the reader ------------------------------------------------------------------

enum source_kind { SRC_FD, SRC_MEM, SRC_RANGE };

#define READ_CHUNK (1u << 20)
#define ZSTD_MAGIC 0xFD2FB528u

struct mts_reader {
    char *name;
    mts_limits lim;
    enum source_kind kind;
    int fd;
    bool own_fd;
    const uint8_t *mem;      // SRC_MEM: the whole input
    uint64_t mem_size;
    uint64_t range_pos, range_end;  // SRC_RANGE: pread window
    bool src_eof;

    uint8_t *buf;            // decompressed stream bytes
    size_t cap, start, end;  // [start, end) not yet consumed
    uint64_t consumed;       // stream offset of buf[start]

    bool zstd;               // decompressing
    ZSTD_DStream *zds;
    uint8_t *zin;            // compressed input
    size_t zin_cap, zin_pos, zin_end;
    bool zframe_done;        // the last zstd frame ended cleanly

    msgpack_unpacked unpacked;
    bool has_unpacked;
    char err[512];
    bool failed;
};

static bool is_zstd_magic(const uint8_t *p)
{
    uint32_t m = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return m == ZSTD_MAGIC || (m & 0xFFFFFFF0u) == 0x184D2A50u;  // or a skippable frame
}

static int fail(mts_reader *r, uint64_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(mts_reader *r, uint64_t at, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(r->err, sizeof r->err, "byte %llu: %s", (unsigned long long)at, what);
    r->failed = true;
    return -1;
}

// Reads up to n raw (possibly compressed) bytes; 0 at the end of the source.
static ssize_t source_read(mts_reader *r, void *dst, size_t n)
{
    if (r->src_eof)
        return 0;
    ssize_t got;
    switch (r->kind) {
    case SRC_MEM: {
        uint64_t left = r->mem_size - r->range_pos;
        got = (ssize_t)(n < left ? n : left);
        memcpy(dst, r->mem + r->range_pos, (size_t)got);
        r->range_pos += (uint64_t)got;
        break;
    }
    case SRC_RANGE: {
        uint64_t left = r->range_end - r->range_pos;
        if (n > left)
            n = (size_t)left;
        do
            got = pread(r->fd, dst, n, (off_t)r->range_pos);
        while (got < 0 && errno == EINTR);
        if (got > 0)
            r->range_pos += (uint64_t)got;
        break;
    }
    default:
        do
            got = read(r->fd, dst, n);
        while (got < 0 && errno == EINTR);
    }
    if (got == 0)
        r->src_eof = true;
    return got;
}

// How much to read at a time: a chunk, or less for a small byte range (a
// pack reads one case per range reader; a megabyte each would be waste).
static size_t chunk_size(const mts_reader *r)
{
    if (r->kind == SRC_RANGE && r->range_end - r->range_pos + 64 < READ_CHUNK)
        return (size_t)(r->range_end - r->range_pos) + 64;
    return READ_CHUNK;
}

static void ensure_cap(mts_reader *r, size_t want)
{
    if (want <= r->cap)
        return;
    size_t cap = r->cap ? r->cap : want;
    while (cap < want)
        cap *= 2;
    r->buf = xrealloc(r->buf, cap);
    r->cap = cap;
}

// Appends decompressed bytes to buf; returns bytes added, 0 at the end of
// input, -1 on an error.  Switches back to raw mode when what follows a
// finished zstd frame is not another zstd frame (cat a.mts.zst b.mts).
static ssize_t fill_zstd(mts_reader *r)
{
    for (;;) {
        if (r->zin_pos == r->zin_end) {
            ssize_t got = source_read(r, r->zin, r->zin_cap);
            if (got < 0)
                return fail(r, r->consumed + (r->end - r->start), "read error: %s", strerror(errno));
            if (got == 0) {
                if (!r->zframe_done)
                    return fail(r, r->consumed + (r->end - r->start),
                                "truncated zstd frame (the compressed input ends in the middle)");
                return 0;
            }
            r->zin_pos = 0;
            r->zin_end = (size_t)got;
        }
        if (r->zframe_done) {
            // At a zstd frame boundary: is the next thing zstd again?
            if (r->zin_end - r->zin_pos < 4 && !r->src_eof) {
                memmove(r->zin, r->zin + r->zin_pos, r->zin_end - r->zin_pos);
                r->zin_end -= r->zin_pos;
                r->zin_pos = 0;
                ssize_t got = source_read(r, r->zin + r->zin_end, r->zin_cap - r->zin_end);
                if (got < 0)
                    return fail(r, r->consumed + (r->end - r->start), "read error: %s", strerror(errno));
                r->zin_end += (size_t)got;
                continue;
            }
            if (r->zin_end - r->zin_pos < 4 || !is_zstd_magic(r->zin + r->zin_pos)) {
                // Raw bytes follow: hand them to buf and leave zstd mode.
                size_t n = r->zin_end - r->zin_pos;
                ensure_cap(r, r->end + n);
                memcpy(r->buf + r->end, r->zin + r->zin_pos, n);
                r->end += n;
                r->zin_pos = r->zin_end = 0;
                r->zstd = false;
                return (ssize_t)n;  // 0 only at the end of the input
            }
            r->zframe_done = false;
        }
        if (r->cap - r->end < chunk_size(r) / 4)
            ensure_cap(r, r->end + chunk_size(r));
        ZSTD_inBuffer in = {r->zin, r->zin_end, r->zin_pos};
        ZSTD_outBuffer out = {r->buf + r->end, r->cap - r->end, 0};
        size_t ret = ZSTD_decompressStream(r->zds, &out, &in);
        if (ZSTD_isError(ret))
            return fail(r, r->consumed + (r->end - r->start), "zstd: %s", ZSTD_getErrorName(ret));
        r->zin_pos = in.pos;
        r->end += out.pos;
        if (ret == 0)
            r->zframe_done = true;
        if (out.pos > 0)
            return (ssize_t)out.pos;
    }
}

// Makes at least `need` bytes available from buf[start]; returns 1 when they
// are, 0 when the input ends first, -1 on an error.
static int fill(mts_reader *r, uint64_t need)
{
    while (r->end - r->start < need) {
        // Make room: slide the unconsumed bytes to the front only when the
        // tail is short, so that a frame is moved at most once.
        if (r->start > 0 && (r->cap - r->end < READ_CHUNK / 4 || r->start + need > r->cap)) {
            memmove(r->buf, r->buf + r->start, r->end - r->start);
            r->end -= r->start;
            r->start = 0;
        }
        // Grow only for a frame that does not fit: the buffer stays about
        // one read chunk (or one frame) large, however long the stream.
        size_t chunk = chunk_size(r);
        ensure_cap(r, r->start + need > chunk ? r->start + need : chunk);
        ssize_t got;
        if (r->zstd) {
            got = fill_zstd(r);
        } else {
            size_t want = r->cap - r->end;
            got = source_read(r, r->buf + r->end, want);
            if (got < 0)
                return fail(r, r->consumed + (r->end - r->start), "read error: %s", strerror(errno));
            r->end += (size_t)got;
        }
        if (got < 0)
            return -1;
        if (got == 0)
            return 0;
    }
    return 1;
}

// At a frame boundary: if the next bytes are a zstd frame, move them from
// buf into the compressed-input buffer and switch to decompression.
static int detect_zstd(mts_reader *r)
{
    if (r->zstd)
        return 0;
    int ok = fill(r, 4);
    if (ok < 0)
        return -1;
    if (r->end - r->start < 4 || !is_zstd_magic(r->buf + r->start))
        return 0;
    if (!r->zds) {
        r->zds = ZSTD_createDStream();
        if (!r->zds)
            die("zstd", "cannot create a decompression context");
        r->zin_cap = chunk_size(r);
        r->zin = xmalloc(r->zin_cap);
    }
    ZSTD_initDStream(r->zds);
    size_t n = r->end - r->start;
    if (n > r->zin_cap) {
        r->zin_cap = n;
        r->zin = xrealloc(r->zin, n);
    }
    memcpy(r->zin, r->buf + r->start, n);
    r->zin_pos = 0;
    r->zin_end = n;
    r->end = r->start;
    r->zstd = true;
    r->zframe_done = false;
    return 0;
}

static mts_reader *reader_new(const char *name, const mts_limits *lim)
{
    mts_reader *r = xcalloc(1, sizeof *r);
    r->name = xstrdup(name);
    r->lim = lim ? *lim : mts_limits_default();
    r->fd = -1;
    return r;
}

// Pipes default to 64 KiB: a 150 KB image record then takes three wake-ups of
// each side.  Asking for 1 MiB (the usual unprivileged maximum) cuts the
// context switches of a pipeline several-fold; failure is harmless.
static void widen_pipe(int fd)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode))
        fcntl(fd, F_SETPIPE_SZ, 1 << 20);
}

mts_reader *mts_reader_fdopen(int fd, const char *name, const mts_limits *lim)
{
    widen_pipe(fd);
    mts_reader *r = reader_new(name, lim);
    r->kind = SRC_FD;
    r->fd = fd;
    return r;
}

mts_reader *mts_reader_open(const char *path, const mts_limits *lim)
{
    if (!path || strcmp(path, "-") == 0)
        return mts_reader_fdopen(0, "stdin", lim);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    mts_reader *r = mts_reader_fdopen(fd, path, lim);
    r->own_fd = true;
    return r;
}

mts_reader *mts_reader_memopen(const void *data, size_t size, const char *name,
                               const mts_limits *lim)
{
    mts_reader *r = reader_new(name, lim);
    r->kind = SRC_MEM;
    r->mem = data;
    r->mem_size = size;
    return r;
}

mts_reader *mts_reader_range(int fd, uint64_t offset, uint64_t length,
                             const char *name, const mts_limits *lim)
{
    mts_reader *r = reader_new(name, lim);
    r->kind = SRC_RANGE;
    r->fd = fd;
    r->range_pos = offset;
    r->range_end = offset + length;
    r->consumed = 0;
    return r;
}

void mts_reader_close(mts_reader *r)
{
    if (!r)
        return;
    if (r->has_unpacked)
        msgpack_unpacked_destroy(&r->unpacked);
    if (r->own_fd)
        close(r->fd);
    ZSTD_freeDStream(r->zds);
    free(r->zin);
    free(r->buf);
    free(r->name);
    free(r);
}

const char *mts_reader_error(const mts_reader *r) { return r->err; }
const char *mts_reader_name(const mts_reader *r) { return r->name; }
uint64_t mts_reader_offset(const mts_reader *r) { return r->consumed; }

static bool key_is(const msgpack_object *k, const char *key)
{
    size_t n = strlen(key);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, key, n) == 0;
}

static const msgpack_object *map_get(const msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (key_is(&map->via.map.ptr[i].key, key))
            return &map->via.map.ptr[i].val;
    return NULL;
}

int mts_read(mts_reader *r, mts_frame *f)
{
    if (r->failed)
        return -1;
    if (r->has_unpacked) {
        msgpack_unpacked_destroy(&r->unpacked);
        r->has_unpacked = false;
    }
    if (detect_zstd(r) < 0)
        return -1;
    uint64_t need = 1, size = 0;
    for (;;) {
        int ok = fill(r, need);
        if (ok < 0)
            return -1;
        size_t avail = r->end - r->start;
        if (ok == 0 && avail == 0)
            return 0;
        uint64_t at = 0;
        char what[300];
        int s = scan_object(r->buf + r->start, avail, &r->lim, &size, &need, &at, what, sizeof what);
        if (s == SCAN_BAD)
            return fail(r, r->consumed + at, "%s", what);
        if (s == SCAN_DONE)
            break;
        if (ok == 0)
            return fail(r, r->consumed + avail,
                        "truncated frame: the input ends inside a frame that started at byte %llu",
                        (unsigned long long)r->consumed);
    }
    // The scanner saw a complete, bounded frame: msgpack-c may now parse it
    // (every element it reserves memory for is backed by at least one byte).
    msgpack_unpacked_init(&r->unpacked);
    r->has_unpacked = true;
    size_t off = 0;
    msgpack_unpack_return ret =
        msgpack_unpack_next(&r->unpacked, (const char *)r->buf + r->start, size, &off);
    if (ret != MSGPACK_UNPACK_SUCCESS || off != size)
        return fail(r, r->consumed, "msgpack-c could not parse the frame (code %d)", (int)ret);
    f->root = r->unpacked.data;
    f->offset = r->consumed;
    f->size = size;
    f->bytes = r->buf + r->start;
    f->is_header = map_get(&f->root, "mts") != NULL;
    if (f->is_header) {
        const msgpack_object *v = map_get(&f->root, "mts");
        if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 != MTS_VERSION)
            return fail(r, r->consumed, "header: format version %s, this reader knows version %d",
                        v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? "other than 1" : "not an integer",
                        MTS_VERSION);
    }
    r->start += size;
    r->consumed += size;
    return 1;
}

int mts_read_or_die(mts_reader *r, mts_frame *f)
{
    int got = mts_read(r, f);
    if (got < 0)
        die(r->name, "%s", r->err);
    return got;
}

int mts_next_record(mts_reader *r, mts_frame *f,
                    void (*on_header)(const mts_frame *h, void *ctx), void *ctx)
{
    while (mts_read_or_die(r, f)) {
        if (!f->is_header)
            return 1;
        if (on_header)
            on_header(f, ctx);
    }
    return 0;
}

// ---- fields ------------------------------------------------------------------

const msgpack_object *mts_get(const mts_frame *f, const char *key)
{
    return map_get(&f->root, key);
}

bool mts_object_is_tensor(const msgpack_object *o)
{
    return o->type == MSGPACK_OBJECT_MAP && map_get(o, "dtype") && map_get(o, "data");
}

bool mts_object_tensor(const msgpack_object *o, mts_tensor *t, char *err, size_t errlen)
{
    if (o->type != MSGPACK_OBJECT_MAP) {
        snprintf(err, errlen, "expected a tensor map {dtype, shape, data}");
        return false;
    }
    const msgpack_object *dtype = map_get(o, "dtype"), *shape = map_get(o, "shape"),
                         *data = map_get(o, "data");
    if (!dtype || !shape || !data) {
        snprintf(err, errlen, "a tensor map needs the keys dtype, shape and data (missing %s)",
                 !dtype ? "dtype" : !shape ? "shape" : "data");
        return false;
    }
    memset(t, 0, sizeof *t);
    if (dtype->type != MSGPACK_OBJECT_STR ||
        !mts_dtype_parse(dtype->via.str.ptr, dtype->via.str.size, &t->dtype)) {
        snprintf(err, errlen, "dtype must be one of u8, u16, i32, i64, f32, f64");
        return false;
    }
    if (shape->type != MSGPACK_OBJECT_ARRAY) {
        snprintf(err, errlen, "shape must be an array of non-negative integers");
        return false;
    }
    if (shape->via.array.size > MTS_MAX_RANK) {
        snprintf(err, errlen, "rank %u is over the limit of %d", shape->via.array.size, MTS_MAX_RANK);
        return false;
    }
    t->rank = (int)shape->via.array.size;
    uint64_t count = 1;
    bool overflow = false;
    for (int i = 0; i < t->rank; i++) {
        const msgpack_object *d = &shape->via.array.ptr[i];
        if (d->type != MSGPACK_OBJECT_POSITIVE_INTEGER || d->via.u64 > INT64_MAX) {
            snprintf(err, errlen, "shape[%d] must be a non-negative integer", i);
            return false;
        }
        t->shape[i] = (int64_t)d->via.u64;
        overflow |= __builtin_mul_overflow(count, d->via.u64, &count);
    }
    if (data->type != MSGPACK_OBJECT_BIN) {
        snprintf(err, errlen, "data must be msgpack bin%s",
                 data->type == MSGPACK_OBJECT_STR ? " (not str: pack with use_bin_type=True)" : "");
        return false;
    }
    uint64_t nbytes;
    overflow |= __builtin_mul_overflow(count, (uint64_t)mts_dtype_size(t->dtype), &nbytes);
    if (overflow || nbytes != data->via.bin.size) {
        char dims[200];
        int n = 0;
        for (int i = 0; i < t->rank && n < (int)sizeof dims - 24; i++)
            n += snprintf(dims + n, sizeof dims - n, "%s%lld", i ? "," : "", (long long)t->shape[i]);
        dims[n] = 0;
        if (overflow)
            snprintf(err, errlen, "shape [%s] of %s needs more than 2^64 bytes, data has %u",
                     dims, mts_dtype_name(t->dtype), data->via.bin.size);
        else
            snprintf(err, errlen, "shape [%s] of %s needs %llu bytes, data has %u", dims,
                     mts_dtype_name(t->dtype), (unsigned long long)nbytes, data->via.bin.size);
        return false;
    }
    t->data = data->via.bin.ptr;
    t->nbytes = data->via.bin.size;
    return true;
}

void mts_die_at(const mts_reader *r, const mts_frame *f, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    die(r->name, "byte %llu: %s", (unsigned long long)f->offset, what);
}

static const msgpack_object *field(const mts_reader *r, const mts_frame *f, const char *key, bool required)
{
    const msgpack_object *o = mts_get(f, key);
    if (!o && required)
        mts_die_at(r, f, "the record has no key '%s'", key);
    return o;
}

bool mts_opt_tensor(const mts_reader *r, const mts_frame *f, const char *key, mts_tensor *t)
{
    const msgpack_object *o = field(r, f, key, false);
    if (!o)
        return false;
    char err[300];
    if (!mts_object_tensor(o, t, err, sizeof err))
        mts_die_at(r, f, "key '%s': %s", key, err);
    return true;
}

void mts_req_tensor(const mts_reader *r, const mts_frame *f, const char *key, mts_tensor *t)
{
    field(r, f, key, true);
    mts_opt_tensor(r, f, key, t);
}

bool mts_opt_int(const mts_reader *r, const mts_frame *f, const char *key, int64_t *out)
{
    const msgpack_object *o = field(r, f, key, false);
    if (!o)
        return false;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
        *out = (int64_t)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *out = o->via.i64;
    else
        mts_die_at(r, f, "key '%s': expected an integer", key);
    return true;
}

int64_t mts_req_int(const mts_reader *r, const mts_frame *f, const char *key)
{
    int64_t v = 0;
    field(r, f, key, true);
    mts_opt_int(r, f, key, &v);
    return v;
}

bool mts_opt_f64(const mts_reader *r, const mts_frame *f, const char *key, double *out)
{
    const msgpack_object *o = field(r, f, key, false);
    if (!o)
        return false;
    switch (o->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: *out = o->via.f64; break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: *out = (double)o->via.u64; break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: *out = (double)o->via.i64; break;
    default: mts_die_at(r, f, "key '%s': expected a number", key);
    }
    return true;
}

double mts_req_f64(const mts_reader *r, const mts_frame *f, const char *key)
{
    double v = 0;
    field(r, f, key, true);
    mts_opt_f64(r, f, key, &v);
    return v;
}

bool mts_opt_str(const mts_reader *r, const mts_frame *f, const char *key, char *buf, size_t cap)
{
    const msgpack_object *o = field(r, f, key, false);
    if (!o)
        return false;
    if (o->type != MSGPACK_OBJECT_STR)
        mts_die_at(r, f, "key '%s': expected a string", key);
    if (o->via.str.size >= cap)
        mts_die_at(r, f, "key '%s': string of %u bytes is longer than %zu", key,
                   o->via.str.size, cap - 1);
    memcpy(buf, o->via.str.ptr, o->via.str.size);
    buf[o->via.str.size] = 0;
    return true;
}

void mts_req_str(const mts_reader *r, const mts_frame *f, const char *key, char *buf, size_t cap)
{
    field(r, f, key, true);
    mts_opt_str(r, f, key, buf, cap);
}

void mts_tensor_to_f32(const mts_tensor *t, float *out)
{
    size_t n = mts_tensor_count(t);
    const uint8_t *p = t->data;
    // The source may be unaligned (it lives inside a msgpack frame), so every
    // element is fetched with memcpy, which compiles to a plain load.
    switch (t->dtype) {
    case MTS_U8:
        for (size_t i = 0; i < n; i++)
            out[i] = p[i];
        break;
    case MTS_U16:
        for (size_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, p + 2 * i, 2);
            out[i] = v;
        }
        break;
    case MTS_I32:
        for (size_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, p + 4 * i, 4);
            out[i] = (float)v;
        }
        break;
    case MTS_I64:
        for (size_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, p + 8 * i, 8);
            out[i] = (float)v;
        }
        break;
    case MTS_F32:
        memcpy(out, p, 4 * n);
        break;
    case MTS_F64:
        for (size_t i = 0; i < n; i++) {
            double v;
            memcpy(&v, p + 8 * i, 8);
            out[i] = (float)v;
        }
        break;
    }
}

// ---- the writer ---------------------------------------------------------------

#define WRITE_BUF (1u << 17)
// Chunks at least this large skip the buffer (tensor data goes straight to
// write() or to the compressor).
#define DIRECT_MIN (1u << 15)

struct mts_writer {
    char *name;       // for messages
    char *path;       // final path (NULL for a descriptor)
    char *temp;       // temporary path while writing
    int fd;
    bool own_fd;
    uint8_t *buf;
    size_t len;
    uint64_t offset;  // uncompressed bytes written
    ZSTD_CCtx *cctx;
    uint8_t *zout;
    size_t zout_cap;
    msgpack_packer pk;
};

static void write_all(mts_writer *w, const void *p, size_t n)
{
    const uint8_t *q = p;
    while (n > 0) {
        ssize_t got = write(w->fd, q, n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            die(w->name, "write error: %s", strerror(errno));
        q += got;
        n -= (size_t)got;
    }
}

static void compress_chunk(mts_writer *w, const void *p, size_t n, ZSTD_EndDirective mode)
{
    ZSTD_inBuffer in = {p, n, 0};
    for (;;) {
        ZSTD_outBuffer out = {w->zout, w->zout_cap, 0};
        size_t left = ZSTD_compressStream2(w->cctx, &out, &in, mode);
        if (ZSTD_isError(left))
            die(w->name, "zstd: %s", ZSTD_getErrorName(left));
        write_all(w, w->zout, out.pos);
        if (mode == ZSTD_e_continue ? in.pos == in.size : left == 0)
            break;
    }
}

static void emit(mts_writer *w, const void *p, size_t n)
{
    if (w->cctx)
        compress_chunk(w, p, n, ZSTD_e_continue);
    else
        write_all(w, p, n);
}

static void flush_buf(mts_writer *w)
{
    if (w->len) {
        emit(w, w->buf, w->len);
        w->len = 0;
    }
}

static int pack_write(void *data, const char *p, size_t n)
{
    mts_writer *w = data;
    w->offset += n;
    if (n >= DIRECT_MIN) {
        flush_buf(w);
        emit(w, p, n);
    } else {
        if (w->len + n > WRITE_BUF)
            flush_buf(w);
        memcpy(w->buf + w->len, p, n);
        w->len += n;
    }
    return 0;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static mts_writer *writer_new(int fd, const char *name, const mts_write_opts *opts, bool zst_name)
{
    mts_writer *w = xcalloc(1, sizeof *w);
    w->fd = fd;
    w->name = xstrdup(name);
    w->buf = xmalloc(WRITE_BUF);
    int level = opts ? opts->zstd_level : -1;
    if (level < 0)
        level = zst_name ? 3 : 0;
    if (level > 0) {
        w->cctx = ZSTD_createCCtx();
        if (!w->cctx)
            die("zstd", "cannot create a compression context");
        ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, level);
        ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
        if (opts && opts->zstd_threads > 0) {
            size_t ret = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_nbWorkers, opts->zstd_threads);
            if (ZSTD_isError(ret))
                warnf("zstd", "no worker threads in this libzstd; compressing in one thread");
        }
        w->zout_cap = ZSTD_CStreamOutSize();
        w->zout = xmalloc(w->zout_cap);
    }
    msgpack_packer_init(&w->pk, w, pack_write);
    return w;
}

mts_writer *mts_writer_fdopen(int fd, const char *name, const mts_write_opts *opts)
{
    widen_pipe(fd);
    return writer_new(fd, name, opts, false);
}

mts_writer *mts_writer_open(const char *path, const mts_write_opts *opts)
{
    if (!path || strcmp(path, "-") == 0) {
        if (isatty(1))
            die("output", "standard output is a terminal: redirect it, pipe it, or name a file with -o");
        return mts_writer_fdopen(1, "stdout", opts);
    }
    char *temp;
    int fd = temp_create_beside(path, &temp);
    mts_writer *w = writer_new(fd, path, opts, ends_with(path, ".zst"));
    w->path = xstrdup(path);
    w->temp = temp;
    w->own_fd = true;
    return w;
}

uint64_t mts_writer_offset(const mts_writer *w) { return w->offset; }

static void writer_free(mts_writer *w)
{
    ZSTD_freeCCtx(w->cctx);
    free(w->zout);
    free(w->buf);
    free(w->name);
    free(w->path);
    free(w->temp);
    free(w);
}

void mts_writer_close(mts_writer *w)
{
    flush_buf(w);
    if (w->cctx)
        compress_chunk(w, NULL, 0, ZSTD_e_end);
    if (w->own_fd) {
        if (fsync(w->fd) != 0)
            die(w->name, "fsync: %s", strerror(errno));
        if (close(w->fd) != 0)
            die(w->name, "close: %s", strerror(errno));
        temp_commit(w->temp, w->path);
        w->temp = NULL;
    }
    writer_free(w);
}

void mts_writer_abort(mts_writer *w)
{
    if (w->own_fd) {
        close(w->fd);
        unlink(w->temp);
        temp_release(w->temp);
    }
    writer_free(w);
}

msgpack_packer *mts_packer(mts_writer *w) { return &w->pk; }

void mts_pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void mts_write_header(mts_writer *w, const char *tool, int argc, char **argv, uint32_t nextra)
{
    msgpack_pack_map(&w->pk, 3 + nextra);
    mts_pack_str(&w->pk, "mts");
    msgpack_pack_int(&w->pk, MTS_VERSION);
    mts_pack_str(&w->pk, "tool");
    mts_pack_str(&w->pk, tool);
    mts_pack_str(&w->pk, "args");
    msgpack_pack_array(&w->pk, argc > 1 ? (size_t)(argc - 1) : 0);
    for (int i = 1; i < argc; i++)
        mts_pack_str(&w->pk, argv[i]);
}

void mts_begin_map(mts_writer *w, uint32_t nkeys) { msgpack_pack_map(&w->pk, nkeys); }

void mts_put_key(mts_writer *w, const char *key) { mts_pack_str(&w->pk, key); }

void mts_put_str(mts_writer *w, const char *key, const char *val)
{
    mts_pack_str(&w->pk, key);
    mts_pack_str(&w->pk, val);
}

void mts_put_int(mts_writer *w, const char *key, int64_t val)
{
    mts_pack_str(&w->pk, key);
    msgpack_pack_int64(&w->pk, val);
}

void mts_put_f64(mts_writer *w, const char *key, double val)
{
    mts_pack_str(&w->pk, key);
    msgpack_pack_double(&w->pk, val);
}

void mts_put_bool(mts_writer *w, const char *key, bool val)
{
    mts_pack_str(&w->pk, key);
    if (val)
        msgpack_pack_true(&w->pk);
    else
        msgpack_pack_false(&w->pk);
}

void mts_pack_tensor(msgpack_packer *pk, const mts_tensor *t)
{
    msgpack_pack_map(pk, 3);
    mts_pack_str(pk, "dtype");
    mts_pack_str(pk, mts_dtype_name(t->dtype));
    mts_pack_str(pk, "shape");
    msgpack_pack_array(pk, (size_t)t->rank);
    for (int i = 0; i < t->rank; i++)
        msgpack_pack_uint64(pk, (uint64_t)t->shape[i]);
    mts_pack_str(pk, "data");
    if (t->nbytes > UINT32_MAX)
        die("tensor", "%zu bytes is over msgpack's 4 GiB bin limit", t->nbytes);
    msgpack_pack_bin(pk, t->nbytes);
    msgpack_pack_bin_body(pk, t->data, t->nbytes);
}

void mts_put_tensor(mts_writer *w, const char *key, const mts_tensor *t)
{
    mts_pack_str(&w->pk, key);
    mts_pack_tensor(&w->pk, t);
}

void mts_write_frame(mts_writer *w, const mts_frame *f)
{
    pack_write(w, f->bytes, f->size);
}

void mts_write_bytes(mts_writer *w, const void *bytes, size_t n)
{
    pack_write(w, bytes, n);
}
