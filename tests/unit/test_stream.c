// Tests of lib/io/stream: round trips, compression, concatenation, truncation
// at every byte, malformed tensors and hostile sizes.
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../check.h"
#include "stream.h"
#include "util.h"

static char tmpdir[] = "/tmp/medssl-test-stream-XXXXXX";

static char *tmp_path(const char *name)
{
    static char buf[4][256];
    static int i;
    char *p = buf[i++ % 4];
    snprintf(p, 256, "%s/%s", tmpdir, name);
    return p;
}

static uint8_t *slurp(const char *path, size_t *size)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    fstat(fd, &st);
    uint8_t *p = xmalloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, p + got, (size_t)st.st_size - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    *size = got;
    return p;
}

static bool is_zstd(const uint8_t *p, size_t n)
{
    return n >= 4 && p[0] == 0x28 && p[1] == 0xb5 && p[2] == 0x2f && p[3] == 0xfd;
}

// Fills a tensor of any dtype with a pattern that depends on (seed, i).
static void pattern(mts_dtype d, size_t count, uint8_t *out, unsigned seed)
{
    size_t es = mts_dtype_size(d);
    for (size_t i = 0; i < count * es; i++)
        out[i] = (uint8_t)((i * 131 + seed * 7 + (i >> 8)) & 0xff);
}

static const mts_dtype all_dtypes[] = {MTS_U8, MTS_U16, MTS_I32, MTS_I64, MTS_F32, MTS_F64};

typedef struct {
    int rank;
    int64_t shape[4];
} shape_case;

static const shape_case shapes[] = {
    {0, {0}}, {1, {0}}, {1, {1}}, {1, {7}}, {2, {3, 0}}, {2, {5, 3}}, {3, {3, 17, 9}}, {4, {2, 1, 4, 4}},
};
#define NSHAPES (int)(sizeof shapes / sizeof shapes[0])

// Writes every dtype x shape, one record each, to `path`.
static void write_all_kinds(const char *path, int level)
{
    mts_write_opts o = {.zstd_level = level};
    mts_writer *w = mts_writer_open(path, &o);
    char *argv[] = {"test", "--x", NULL};
    mts_write_header(w, "test_stream", 2, argv, 1);
    mts_put_int(w, "records", 6 * NSHAPES);
    uint8_t *buf = xmalloc(1 << 16);
    for (int d = 0; d < 6; d++) {
        for (int s = 0; s < NSHAPES; s++) {
            mts_tensor t = mts_tensor_make(all_dtypes[d], shapes[s].rank, shapes[s].shape, buf);
            pattern(all_dtypes[d], mts_tensor_count(&t), buf, (unsigned)(d * 100 + s));
            mts_begin_map(w, 4);
            mts_put_int(w, "d", d);
            mts_put_int(w, "s", s);
            mts_put_str(w, "case", "c\"1");
            mts_put_tensor(w, "x", &t);
        }
    }
    mts_writer_close(w);
    free(buf);
}

// Reads what write_all_kinds wrote (possibly several times over, for
// concatenated files) and checks every byte.  Returns the record count.
static int verify_all_kinds(mts_reader *r, int *headers)
{
    mts_frame f;
    int records = 0;
    uint8_t *want = xmalloc(1 << 16);
    *headers = 0;
    int got;
    while ((got = mts_read(r, &f)) == 1) {
        if (f.is_header) {
            (*headers)++;
            EXPECT(mts_req_int(r, &f, "records") == 6 * NSHAPES);
            continue;
        }
        int d = (int)mts_req_int(r, &f, "d"), s = (int)mts_req_int(r, &f, "s");
        EXPECT(d == (records / NSHAPES) % 6 && s == records % NSHAPES);
        char cs[16];
        mts_req_str(r, &f, "case", cs, sizeof cs);
        EXPECT(strcmp(cs, "c\"1") == 0);
        mts_tensor t;
        mts_req_tensor(r, &f, "x", &t);
        EXPECT(t.dtype == all_dtypes[d]);
        EXPECT(t.rank == shapes[s].rank);
        for (int i = 0; i < t.rank; i++)
            EXPECT(t.shape[i] == shapes[s].shape[i]);
        pattern(t.dtype, mts_tensor_count(&t), want, (unsigned)(d * 100 + s));
        EXPECT(t.nbytes == mts_tensor_count(&t) * mts_dtype_size(t.dtype));
        EXPECT(t.nbytes == 0 || memcmp(t.data, want, t.nbytes) == 0);
        records++;
    }
    EXPECT_MSG(got == 0, "read error: %s", mts_reader_error(r));
    free(want);
    return records;
}

TEST(round_trip_every_dtype_and_shape_raw_and_zstd)
{
    for (int level = 0; level <= 3; level += 3) {
        char *path = tmp_path(level ? "kinds.mts.zst" : "kinds.mts");
        write_all_kinds(path, level);
        mts_reader *r = mts_reader_open(path, NULL);
        int headers;
        EXPECT(verify_all_kinds(r, &headers) == 6 * NSHAPES);
        EXPECT(headers == 1);
        mts_reader_close(r);
        size_t size;
        uint8_t *bytes = slurp(path, &size);
        EXPECT(level == 0 || is_zstd(bytes, size));
        free(bytes);
    }
}

TEST(zst_name_compresses_by_default)
{
    char *path = tmp_path("byname.mts.zst");
    write_all_kinds(path, -1);
    size_t size;
    uint8_t *bytes = slurp(path, &size);
    EXPECT(size >= 4 && is_zstd(bytes, size));
    free(bytes);
}

TEST(large_tensor_round_trip_through_a_file)
{
    // 40 MiB: larger than any internal buffer, so the reader must grow and
    // the writer must send the data straight through.
    size_t n = 40u << 20;
    uint8_t *data = xmalloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)(i * 2654435761u >> 24);
    int64_t shape[2] = {(int64_t)(n / 4096), 4096};
    for (int level = 0; level <= 1; level++) {
        char *path = tmp_path("large.mts");
        mts_write_opts o = {.zstd_level = level};
        mts_writer *w = mts_writer_open(path, &o);
        mts_tensor t = mts_tensor_make(MTS_U8, 2, shape, data);
        mts_begin_map(w, 1);
        mts_put_tensor(w, "big", &t);
        mts_begin_map(w, 1);
        mts_put_int(w, "after", 1);
        mts_writer_close(w);
        mts_reader *r = mts_reader_open(path, NULL);
        mts_frame f;
        EXPECT(mts_read(r, &f) == 1);
        mts_tensor got;
        mts_req_tensor(r, &f, "big", &got);
        EXPECT(got.nbytes == n && memcmp(got.data, data, n) == 0);
        EXPECT(mts_read(r, &f) == 1 && mts_req_int(r, &f, "after") == 1);
        EXPECT(mts_read(r, &f) == 0);
        mts_reader_close(r);
    }
    free(data);
}

// raw, zstd, raw, zstd concatenated as `cat` would.
static uint8_t *concatenation(size_t *size)
{
    size_t a, b;
    write_all_kinds(tmp_path("c1.mts"), 0);
    write_all_kinds(tmp_path("c2.mts.zst"), 3);
    uint8_t *raw = slurp(tmp_path("c1.mts"), &a);
    uint8_t *zst = slurp(tmp_path("c2.mts.zst"), &b);
    uint8_t *all = xmalloc(2 * (a + b));
    memcpy(all, raw, a);
    memcpy(all + a, zst, b);
    memcpy(all + a + b, raw, a);
    memcpy(all + 2 * a + b, zst, b);
    *size = 2 * (a + b);
    free(raw);
    free(zst);
    return all;
}

TEST(concatenated_raw_and_zstd_streams)
{
    size_t size;
    uint8_t *all = concatenation(&size);
    mts_reader *r = mts_reader_memopen(all, size, "cat", NULL);
    int headers;
    EXPECT(verify_all_kinds(r, &headers) == 4 * 6 * NSHAPES);
    EXPECT(headers == 4);
    mts_reader_close(r);
    free(all);
}

TEST(zstd_through_a_pipe_in_small_writes)
{
    // A pipe cannot seek: the magic number must be detected from the bytes
    // as they come, even a few at a time.
    size_t size;
    uint8_t *all = concatenation(&size);
    int fds[2];
    EXPECT(pipe(fds) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        for (size_t i = 0; i < size; i += 3) {
            size_t n = size - i < 3 ? size - i : 3;
            if (write(fds[1], all + i, n) != (ssize_t)n)
                _exit(1);
        }
        _exit(0);
    }
    close(fds[1]);
    mts_reader *r = mts_reader_fdopen(fds[0], "pipe", NULL);
    int headers;
    EXPECT(verify_all_kinds(r, &headers) == 4 * 6 * NSHAPES);
    mts_reader_close(r);
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    free(all);
}

TEST(byte_range_reader)
{
    size_t a;
    write_all_kinds(tmp_path("r.mts"), 0);
    uint8_t *raw = slurp(tmp_path("r.mts"), &a);
    // Find the second frame's extent with a memory reader, then read just it.
    mts_reader *m = mts_reader_memopen(raw, a, "mem", NULL);
    mts_frame f;
    mts_read(m, &f);
    mts_read(m, &f);
    uint64_t off = f.offset, len = f.size;
    mts_reader_close(m);
    int fd = open(tmp_path("r.mts"), O_RDONLY);
    mts_reader *r = mts_reader_range(fd, off, len, "range", NULL);
    EXPECT(mts_read(r, &f) == 1 && !f.is_header && mts_req_int(r, &f, "s") == 0);
    EXPECT(mts_read(r, &f) == 0);
    mts_reader_close(r);
    close(fd);
    free(raw);
}

// Every prefix of a valid stream either ends cleanly at a frame boundary or
// fails with a message; never a crash, a hang or a bogus frame.
static void truncate_everywhere(const uint8_t *bytes, size_t size, bool compressed)
{
    // Frame boundaries of the full stream.
    uint64_t ends[512];
    int nends = 0;
    mts_reader *r = mts_reader_memopen(bytes, size, "full", NULL);
    mts_frame f;
    while (mts_read(r, &f) == 1 && nends < 512)
        ends[nends++] = f.offset + f.size;
    mts_reader_close(r);
    for (size_t cut = 0; cut < size; cut++) {
        r = mts_reader_memopen(bytes, cut, "cut", NULL);
        int frames = 0, got;
        while ((got = mts_read(r, &f)) == 1)
            frames++;
        if (got == 0) {
            // A clean end is only possible exactly at a frame boundary of an
            // uncompressed stream.
            EXPECT_MSG(!compressed || cut == 0, "cut %zu of a zstd stream ended cleanly", cut);
            EXPECT_MSG(cut == 0 || (frames > 0 && ends[frames - 1] == cut),
                       "cut %zu ended cleanly after %d frames", cut, frames);
        } else {
            EXPECT_MSG(strstr(mts_reader_error(r), "byte ") == mts_reader_error(r),
                       "cut %zu: message without an offset: %s", cut, mts_reader_error(r));
        }
        mts_reader_close(r);
    }
}

static uint8_t *small_stream(int level, size_t *size)
{
    char *path = tmp_path(level ? "small.mts.zst" : "small.mts");
    mts_write_opts o = {.zstd_level = level};
    mts_writer *w = mts_writer_open(path, &o);
    char *argv[] = {"t", NULL};
    mts_write_header(w, "t", 1, argv, 0);
    float v[6] = {1, 2, 3, 4, 5, 6};
    int64_t shape[2] = {2, 3};
    for (int i = 0; i < 3; i++) {
        mts_tensor t = mts_tensor_make(MTS_F32, 2, shape, v);
        mts_begin_map(w, 2);
        mts_put_str(w, "case", "abc");
        mts_put_tensor(w, "x", &t);
    }
    mts_writer_close(w);
    return slurp(path, size);
}

TEST(truncation_at_every_byte_raw)
{
    size_t size;
    uint8_t *bytes = small_stream(0, &size);
    truncate_everywhere(bytes, size, false);
    free(bytes);
}

TEST(truncation_at_every_byte_zstd)
{
    size_t size;
    uint8_t *bytes = small_stream(3, &size);
    truncate_everywhere(bytes, size, true);
    free(bytes);
}

// ---- hand-made malformed frames ------------------------------------------------

typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} frame_builder;

static void fb_init(frame_builder *b)
{
    msgpack_sbuffer_init(&b->sb);
    msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
}

static void fb_str(frame_builder *b, const char *s)
{
    msgpack_pack_str(&b->pk, strlen(s));
    msgpack_pack_str_body(&b->pk, s, strlen(s));
}

// Reads one record from bytes and asks for tensor "x"; returns the error
// text of mts_object_tensor ("" when valid), or the reader's error.
static const char *tensor_error(const void *bytes, size_t size)
{
    static char err[512];
    err[0] = 0;
    mts_reader *r = mts_reader_memopen(bytes, size, "t", NULL);
    mts_frame f;
    if (mts_read(r, &f) != 1) {
        snprintf(err, sizeof err, "read: %s", mts_reader_error(r));
    } else {
        mts_tensor t;
        const msgpack_object *o = mts_get(&f, "x");
        if (!o)
            snprintf(err, sizeof err, "no x");
        else if (!mts_object_tensor(o, &t, err, sizeof err))
            ;
        else
            err[0] = 0;
    }
    mts_reader_close(r);
    return err;
}

// Packs {"x": {"dtype": dtype, "shape": [dims], "data": bin(n)}}, with the
// value of one key replaced by a wrong type when `wrong` names it.
static const char *tensor_case(const char *dtype, int rank, const uint64_t *dims, size_t nbytes,
                               const char *wrong)
{
    frame_builder b;
    fb_init(&b);
    msgpack_pack_map(&b.pk, 1);
    fb_str(&b, "x");
    msgpack_pack_map(&b.pk, 3);
    fb_str(&b, "dtype");
    if (wrong && !strcmp(wrong, "dtype"))
        msgpack_pack_int(&b.pk, 4);
    else
        fb_str(&b, dtype);
    fb_str(&b, "shape");
    if (wrong && !strcmp(wrong, "shape")) {
        fb_str(&b, "3x4");
    } else if (wrong && !strcmp(wrong, "dim")) {
        msgpack_pack_array(&b.pk, 1);
        msgpack_pack_int(&b.pk, -3);
    } else {
        msgpack_pack_array(&b.pk, (size_t)rank);
        for (int i = 0; i < rank; i++)
            msgpack_pack_uint64(&b.pk, dims[i]);
    }
    fb_str(&b, "data");
    char *zeros = calloc(1, nbytes + 1);
    if (wrong && !strcmp(wrong, "data")) {
        msgpack_pack_str(&b.pk, nbytes);
        msgpack_pack_str_body(&b.pk, zeros, nbytes);
    } else {
        msgpack_pack_bin(&b.pk, nbytes);
        msgpack_pack_bin_body(&b.pk, zeros, nbytes);
    }
    free(zeros);
    const char *e = tensor_error(b.sb.data, b.sb.size);
    msgpack_sbuffer_destroy(&b.sb);
    return e;
}

TEST(valid_tensor_maps_are_accepted)
{
    uint64_t d[2] = {2, 3};
    EXPECT(strcmp(tensor_case("f32", 2, d, 24, NULL), "") == 0);
    EXPECT(strcmp(tensor_case("u8", 0, d, 1, NULL), "") == 0);
}

TEST(wrong_types_inside_tensor_maps)
{
    uint64_t d[2] = {2, 3};
    EXPECT(strstr(tensor_case("f32", 2, d, 24, "dtype"), "dtype must be"));
    EXPECT(strstr(tensor_case("f16", 2, d, 12, NULL), "dtype must be"));
    EXPECT(strstr(tensor_case("f32", 2, d, 24, "shape"), "shape must be an array"));
    EXPECT(strstr(tensor_case("f32", 2, d, 24, "dim"), "shape[0] must be a non-negative"));
    EXPECT(strstr(tensor_case("f32", 2, d, 24, "data"), "use_bin_type=True"));
}

TEST(shape_and_data_size_mismatch)
{
    uint64_t d[2] = {2, 3};
    EXPECT(strstr(tensor_case("f32", 2, d, 23, NULL), "shape [2,3] of f32 needs 24 bytes, data has 23"));
    EXPECT(strstr(tensor_case("u16", 2, d, 24, NULL), "needs 12 bytes, data has 24"));
    uint64_t huge[3] = {1ull << 40, 1ull << 40, 1ull << 40};
    EXPECT(strstr(tensor_case("f64", 3, huge, 8, NULL), "more than 2^64"));
    uint64_t big[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    EXPECT(strstr(tensor_case("u8", 9, big, 1, NULL), "rank 9 is over the limit"));
}

static const char *read_error(const void *bytes, size_t size, const mts_limits *lim)
{
    static char err[512];
    mts_reader *r = mts_reader_memopen(bytes, size, "t", lim);
    mts_frame f;
    int got;
    while ((got = mts_read(r, &f)) == 1)
        ;
    snprintf(err, sizeof err, "%s", got < 0 ? mts_reader_error(r) : "");
    mts_reader_close(r);
    return err;
}

TEST(hostile_counts_are_refused_before_allocation)
{
    // A 5-byte map32 declaring 2^32-1 pairs: msgpack-c would reserve 64 GiB.
    const uint8_t map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    EXPECT(strstr(read_error(map32, sizeof map32, NULL), "declares 4294967295 elements, over the limit"));
    // An array32 inside a small map.
    const uint8_t arr32[] = {0x81, 0xa1, 'x', 0xdd, 0x10, 0x00, 0x00, 0x00};
    const char *e = read_error(arr32, sizeof arr32, NULL);
    EXPECT_MSG(strstr(e, "byte 3: an array declares 268435456 elements"), "%s", e);
    // A count under the limit but more than the bytes there: a truncated frame.
    const uint8_t arr16[] = {0x81, 0xa1, 'x', 0xdc, 0x10, 0x00, 0x01};
    EXPECT(strstr(read_error(arr16, sizeof arr16, NULL), "truncated frame"));
    // bin32 of 4 GiB: over the frame limit, refused from the header alone.
    const uint8_t bin32[] = {0x81, 0xa1, 'x', 0xc6, 0xff, 0xff, 0xff, 0xff};
    EXPECT(strstr(read_error(bin32, sizeof bin32, NULL), "over the limit of 1073741824 (MTS_MAX_FRAME)"));
}

TEST(limits_are_configurable)
{
    mts_limits lim = mts_limits_default();
    lim.max_count = 2;
    const uint8_t arr3[] = {0x81, 0xa1, 'x', 0x93, 1, 2, 3};
    EXPECT(strstr(read_error(arr3, sizeof arr3, &lim), "array declares 3 elements, over the limit of 2"));
    lim = mts_limits_default();
    EXPECT(strcmp(read_error(arr3, sizeof arr3, &lim), "") == 0);
    lim.max_frame = 6;
    EXPECT(strstr(read_error(arr3, sizeof arr3, &lim), "MTS_MAX_FRAME"));
    // Nesting: {"x": [[[[...]]]]} 40 deep.
    uint8_t deep[64] = {0x81, 0xa1, 'x'};
    for (int i = 0; i < 40; i++)
        deep[3 + i] = 0x91;
    deep[43] = 0x01;
    lim = mts_limits_default();
    EXPECT(strstr(read_error(deep, 44, &lim), "nesting deeper than the limit of 16"));
    setenv("MTS_MAX_COUNT", "2", 1);
    lim = mts_limits_default();
    unsetenv("MTS_MAX_COUNT");
    EXPECT(lim.max_count == 2);
    setenv("MTS_MAX_FRAME", "3M", 1);
    lim = mts_limits_default();
    unsetenv("MTS_MAX_FRAME");
    EXPECT(lim.max_frame == 3u << 20);
}

TEST(frames_must_be_maps_and_headers_version_1)
{
    const uint8_t notmap[] = {0x93, 1, 2, 3};
    EXPECT(strstr(read_error(notmap, sizeof notmap, NULL), "byte 0: expected a msgpack map"));
    const uint8_t v2[] = {0x81, 0xa3, 'm', 't', 's', 0x02};
    EXPECT(strstr(read_error(v2, sizeof v2, NULL), "format version"));
    const uint8_t c1[] = {0x81, 0xa1, 'x', 0xc1};
    EXPECT(strstr(read_error(c1, sizeof c1, NULL), "byte 3: invalid msgpack byte 0xc1"));
    // Garbage after a good frame: the offset points at the garbage.
    const uint8_t tail[] = {0x81, 0xa1, 'x', 0x01, 0x05};
    EXPECT(strstr(read_error(tail, sizeof tail, NULL), "byte 4: expected a msgpack map"));
    // Corrupt zstd.
    const uint8_t badz[] = {0x28, 0xb5, 0x2f, 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff};
    EXPECT(strstr(read_error(badz, sizeof badz, NULL), "zstd"));
}

TEST(to_f32_converts_every_dtype)
{
    uint8_t u8[3] = {0, 7, 255};
    uint16_t u16[3] = {0, 7, 65535};
    int32_t i32[3] = {-5, 7, 1 << 20};
    int64_t i64[3] = {-5, 7, 1 << 20};
    double f64[3] = {-0.5, 7, 1e10};
    const void *srcs[5] = {u8, u16, i32, i64, f64};
    mts_dtype ds[5] = {MTS_U8, MTS_U16, MTS_I32, MTS_I64, MTS_F64};
    float want[5][3] = {{0, 7, 255}, {0, 7, 65535}, {-5, 7, 1 << 20}, {-5, 7, 1 << 20}, {-0.5f, 7, 1e10f}};
    int64_t shape[1] = {3};
    for (int k = 0; k < 5; k++) {
        mts_tensor t = mts_tensor_make(ds[k], 1, shape, srcs[k]);
        float out[3];
        mts_tensor_to_f32(&t, out);
        for (int i = 0; i < 3; i++)
            EXPECT(out[i] == want[k][i]);
    }
}

TEST(writer_abort_and_exit_leave_no_partial_file)
{
    char *path = tmp_path("aborted.mts");
    mts_writer *w = mts_writer_open(path, NULL);
    mts_begin_map(w, 1);
    mts_put_int(w, "a", 1);
    mts_writer_abort(w);
    EXPECT(access(path, F_OK) != 0);
    // A child that dies through die() in the middle of writing.
    pid_t pid = fork();
    if (pid == 0) {
        mts_writer *w2 = mts_writer_open(tmp_path("died.mts"), NULL);
        mts_begin_map(w2, 1);
        mts_put_int(w2, "a", 1);
        die("child", "simulated failure");
    }
    int status;
    waitpid(pid, &status, 0);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    EXPECT(access(tmp_path("died.mts"), F_OK) != 0);
    // Nothing else was left in the directory (no temporaries).
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls -A %s | grep -q '^\\.'", tmpdir);
    EXPECT(system(cmd) != 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    util_init(argv[0]);
    if (!mkdtemp(tmpdir))
        die("test", "mkdtemp: %s", strerror(errno));
    RUN(round_trip_every_dtype_and_shape_raw_and_zstd);
    RUN(zst_name_compresses_by_default);
    RUN(large_tensor_round_trip_through_a_file);
    RUN(concatenated_raw_and_zstd_streams);
    RUN(zstd_through_a_pipe_in_small_writes);
    RUN(byte_range_reader);
    RUN(truncation_at_every_byte_raw);
    RUN(truncation_at_every_byte_zstd);
    RUN(valid_tensor_maps_are_accepted);
    RUN(wrong_types_inside_tensor_maps);
    RUN(shape_and_data_size_mismatch);
    RUN(hostile_counts_are_refused_before_allocation);
    RUN(limits_are_configurable);
    RUN(frames_must_be_maps_and_headers_version_1);
    RUN(to_f32_converts_every_dtype);
    RUN(writer_abort_and_exit_leave_no_partial_file);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        warnf("test", "could not remove %s", tmpdir);
    return CHECK_DONE();
}
