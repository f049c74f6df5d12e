// stream: the tensor stream that every tool reads and writes (see mts(5)).
//
// A stream is a sequence of msgpack maps.  The first is a header (it has the
// key "mts" = 1); a header may appear again later (concatenated streams).
// Every other map is a record whose values may be tensors:
//     {"dtype": "u8"|"u16"|"i32"|"i64"|"f32"|"f64", "shape": [..], "data": bin}
// little-endian, C order.  Input may be zstd-compressed anywhere a frame may
// start (detected by the zstd magic number, also on pipes); output is
// compressed on request or when the file name ends in ".zst".
//
// Reading never trusts a size: before msgpack-c sees a frame, a scanner walks
// its bytes and checks every declared count and length against mts_limits and
// against the bytes that are really there, so a hostile 5-byte frame cannot
// make msgpack-c reserve gigabytes.  Errors carry the byte offset (in the
// decompressed stream) and what was expected.
//
// Memory: the reader holds one frame (plus read-ahead) at a time; tensor data
// in a frame is a view into the reader's buffer (valid until the next read),
// so the bytes are copied once, by the caller, into wherever they are needed.
// The writer sends tensor data straight from the caller's memory to the
// file or to the compressor, without copying it into a buffer.
#ifndef MEDSSL_STREAM_H
#define MEDSSL_STREAM_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MTS_VERSION 1
#define MTS_MAX_RANK 8

typedef enum { MTS_U8, MTS_U16, MTS_I32, MTS_I64, MTS_F32, MTS_F64 } mts_dtype;

typedef struct {
    mts_dtype dtype;
    int rank;                       // 0 for a scalar
    int64_t shape[MTS_MAX_RANK];
    const void *data;               // may be unaligned when it comes from a reader
    size_t nbytes;                  // = count * dtype size (checked by the reader)
} mts_tensor;

size_t mts_dtype_size(mts_dtype d);
const char *mts_dtype_name(mts_dtype d);
// Parses "u8", "f32", ...; returns false for an unknown name.
bool mts_dtype_parse(const char *name, size_t len, mts_dtype *out);
// Number of elements (product of the shape; 1 for rank 0).
size_t mts_tensor_count(const mts_tensor *t);
// A tensor descriptor for caller-owned memory.
mts_tensor mts_tensor_make(mts_dtype d, int rank, const int64_t *shape, const void *data);

// ---- limits ---------------------------------------------------------------

typedef struct {
    uint64_t max_frame;   // bytes in one frame (default 1 GiB; MTS_MAX_FRAME)
    uint64_t max_count;   // elements of one array or map (default 1M; MTS_MAX_COUNT)
    int max_depth;        // nesting of arrays and maps (default 16, at most 30:
                          // msgpack-c's own parse stack; MTS_MAX_DEPTH)
} mts_limits;

// Defaults, raised or lowered by the environment variables named above
// (a plain number of bytes/elements, or with a K/M/G suffix).
mts_limits mts_limits_default(void);

// ---- reading ---------------------------------------------------------------

typedef struct mts_reader mts_reader;

typedef struct {
    msgpack_object root;  // a map; valid until the next mts_read
    uint64_t offset;      // byte offset of the frame in the decompressed stream
    uint64_t size;        // bytes of the frame
    const void *bytes;    // the frame's msgpack bytes (valid until the next read)
    bool is_header;       // the map has the key "mts"
} mts_frame;

// path NULL or "-" reads standard input.  Returns NULL (with errno set) when
// the file cannot be opened.  `name` is how errors refer to the input.
mts_reader *mts_reader_open(const char *path, const mts_limits *lim);
// Reads from an open descriptor (not closed by mts_reader_close).
mts_reader *mts_reader_fdopen(int fd, const char *name, const mts_limits *lim);
// Reads from memory (the caller keeps `data` alive); for fuzzing and tests.
mts_reader *mts_reader_memopen(const void *data, size_t size, const char *name,
                               const mts_limits *lim);
// Reads from a byte range of an open descriptor with pread (random access
// into a pack); the range holds one or more frames, optionally zstd.
mts_reader *mts_reader_range(int fd, uint64_t offset, uint64_t length,
                             const char *name, const mts_limits *lim);
void mts_reader_close(mts_reader *r);

// Returns 1 and fills *f, 0 at a clean end of the stream, -1 on an error
// (then mts_reader_error tells what and where; the reader is unusable).
int mts_read(mts_reader *r, mts_frame *f);
const char *mts_reader_error(const mts_reader *r);
const char *mts_reader_name(const mts_reader *r);
// Bytes of decompressed stream consumed so far.
uint64_t mts_reader_offset(const mts_reader *r);

// Like mts_read, but dies with "tool: name: byte N: what" on an error.
int mts_read_or_die(mts_reader *r, mts_frame *f);
// Reads frames until a record (skipping headers, which are handed to
// `on_header` when not NULL); dies on an error.  Returns 0 at the end.
int mts_next_record(mts_reader *r, mts_frame *f,
                    void (*on_header)(const mts_frame *h, void *ctx), void *ctx);

// ---- fields of a frame -------------------------------------------------------

// The value of `key` in the frame's map, or NULL.
const msgpack_object *mts_get(const mts_frame *f, const char *key);
// Interprets a msgpack object as a tensor, checking everything (dtype name,
// rank, non-negative dims, product of the shape times the dtype size equals
// the data length, no overflow).  On failure writes a message to err.
bool mts_object_tensor(const msgpack_object *o, mts_tensor *t, char *err, size_t errlen);
// True when the object is a map with the tensor keys (whether valid or not).
bool mts_object_is_tensor(const msgpack_object *o);

// Accessors that die with "tool: name: byte N: key 'k': what" when the key is
// missing (for the *_req forms) or has the wrong type.  The non-req forms
// return false when the key is absent.
void mts_req_tensor(const mts_reader *r, const mts_frame *f, const char *key, mts_tensor *t);
bool mts_opt_tensor(const mts_reader *r, const mts_frame *f, const char *key, mts_tensor *t);
int64_t mts_req_int(const mts_reader *r, const mts_frame *f, const char *key);
bool mts_opt_int(const mts_reader *r, const mts_frame *f, const char *key, int64_t *out);
double mts_req_f64(const mts_reader *r, const mts_frame *f, const char *key);
bool mts_opt_f64(const mts_reader *r, const mts_frame *f, const char *key, double *out);
// Strings are copied into a NUL-terminated buffer of `cap` bytes; a longer
// string is an error (names, case ids and labels are short).
void mts_req_str(const mts_reader *r, const mts_frame *f, const char *key, char *buf, size_t cap);
bool mts_opt_str(const mts_reader *r, const mts_frame *f, const char *key, char *buf, size_t cap);
// Copies tensor data into aligned caller memory, converting to f32 (u8, u16,
// i32, i64, f32, f64 accepted).  `count` must equal the tensor's count.
void mts_tensor_to_f32(const mts_tensor *t, float *out);
// Dies with "tool: name: byte N: what" (for checks a tool makes on content).
__attribute__((noreturn, format(printf, 3, 4)))
void mts_die_at(const mts_reader *r, const mts_frame *f, const char *fmt, ...);

// ---- writing ---------------------------------------------------------------

typedef struct mts_writer mts_writer;

typedef struct {
    int zstd_level;   // 0: raw; 1..19: zstd; -1: decide by the name (".zst": 3)
    int zstd_threads; // zstd worker threads (0: compress in the calling thread)
} mts_write_opts;

// path NULL or "-" writes standard output.  A named file is written to a
// temporary beside it and renamed into place by mts_writer_close; a process
// that exits before that (an error, a signal we handle) removes the temporary.
// Dies when the file cannot be created.
mts_writer *mts_writer_open(const char *path, const mts_write_opts *opts);
mts_writer *mts_writer_fdopen(int fd, const char *name, const mts_write_opts *opts);
// Flushes, fsyncs (files), renames into place, frees.  Dies on an I/O error.
void mts_writer_close(mts_writer *w);
// Drops the output: removes the temporary file.
void mts_writer_abort(mts_writer *w);
// Bytes written so far (before compression).
uint64_t mts_writer_offset(const mts_writer *w);

// A header map: {"mts": 1, "tool": tool, "args": argv[1..], + nextra pairs}.
// The caller then writes the nextra pairs with mts_put_*.
void mts_write_header(mts_writer *w, const char *tool, int argc, char **argv, uint32_t nextra);
// A record map with nkeys pairs; the caller writes them with mts_put_*.
void mts_begin_map(mts_writer *w, uint32_t nkeys);
void mts_put_str(mts_writer *w, const char *key, const char *val);
void mts_put_int(mts_writer *w, const char *key, int64_t val);
void mts_put_f64(mts_writer *w, const char *key, double val);
void mts_put_bool(mts_writer *w, const char *key, bool val);
void mts_put_tensor(mts_writer *w, const char *key, const mts_tensor *t);
// The key of a pair whose value the caller packs with mts_packer (arrays,
// nested maps).
void mts_put_key(mts_writer *w, const char *key);
msgpack_packer *mts_packer(mts_writer *w);
// Copies a whole frame read from a reader (pass-through tools).
void mts_write_frame(mts_writer *w, const mts_frame *f);
// Writes bytes that already form complete frames (raw msgpack or zstd).
void mts_write_bytes(mts_writer *w, const void *bytes, size_t n);

// Packing into any msgpack packer (for frames built in memory).
void mts_pack_str(msgpack_packer *pk, const char *s);
void mts_pack_tensor(msgpack_packer *pk, const mts_tensor *t);

#endif
