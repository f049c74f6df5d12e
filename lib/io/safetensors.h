// safetensors: the weights format of PyTorch, timm and Hugging Face, read
// and written exactly, so that checkpoints leave and enter the toolkit
// without a converter (DESIGN.md, "Weights interop").
//
//   bytes 0..7     N, the header's length, little-endian u64
//   bytes 8..8+N   a JSON object (padded with spaces to a multiple of 8):
//                  {"__metadata__": {"format": "pt", key: string, ...},
//                   NAME: {"dtype": "F32", "shape": [64, 3, 7, 7],
//                          "data_offsets": [BEGIN, END]}, ...}
//   the rest       the data section: every tensor's bytes, little-endian,
//                  C order, at [BEGIN, END) relative to the section's start,
//                  the tensors back to back with no gap and no overlap (we
//                  write wider dtypes first, so each is aligned to its size)
//
// The reader trusts nothing: the header length is checked against the file
// and a limit before it is read, a scanner bounds the header's nesting and
// number of values before cJSON builds anything (cJSON allocates a node per
// value), and every dtype, shape, offset and size is checked against the
// data section before a tensor is read; duplicate names and stray or
// overlapping bytes are refused by name.  Errors read "where: what"
// ("header: ...", "tensor 'conv1.weight': ...").  Tensor data stays in the
// file until asked for, then is read straight into the caller's memory.
#ifndef MEDSSL_SAFETENSORS_H
#define MEDSSL_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Every dtype of the format (so that any file can be checked and listed);
// st_read_f32 converts the floating ones, st_read_i64 reads I64.
typedef enum {
    ST_BOOL, ST_U8, ST_I8, ST_F8_E5M2, ST_F8_E4M3, ST_I16, ST_U16, ST_F16, ST_BF16,
    ST_I32, ST_U32, ST_F32, ST_F64, ST_I64, ST_U64, ST_NDTYPES
} st_dtype;

#define ST_MAX_RANK 8
// The header's limits: 16 MiB (ResNet-152's header is under 100 KB; the
// format's own reference reader stops at 100 MB), values of any kind
// (cJSON makes a node of each), nesting (a tensor's shape is at depth 3).
#define ST_MAX_HEADER (16u << 20)
#define ST_MAX_VALUES (1u << 19)
#define ST_MAX_DEPTH 3

const char *st_dtype_name(st_dtype d);
size_t st_dtype_size(st_dtype d);

typedef struct {
    char *name;
    st_dtype dtype;
    int rank;                    // 0 for a scalar
    int64_t shape[ST_MAX_RANK];
    uint64_t count;              // elements (1 for a scalar)
    uint64_t begin, end;         // bytes within the data section
} st_entry;

typedef struct {
    int fd;
    uint64_t data_start, data_size;   // the data section within the file
    int count;
    st_entry *entries;                // in the order of their data
    int nmeta;
    char **meta_keys, **meta_values;  // __metadata__, in the header's order
} st_file;

// True when `path` is a safetensors file rather than one of our streams: its
// name ends in ".safetensors", or its first 8 bytes are a length that fits
// in the file and a '{' follows (a stream starts with a msgpack map or the
// zstd magic, which read as a length far past any file's end).
bool st_sniff(const char *path);

// Opens and checks the whole header.  NULL with "where: what" in err.
st_file *st_open(const char *path, char *err, size_t errlen);
void st_close(st_file *f);
const st_entry *st_find(const st_file *f, const char *name);
// The metadata value of `key`, or NULL.
const char *st_meta(const st_file *f, const char *key);

// Reads a tensor of dtype F32, F16, BF16 or F64 as float32 (e->count
// floats), or an I64 one (e->count values).  False with "where: what".
bool st_read_f32(const st_file *f, const st_entry *e, float *out, char *err, size_t errlen);
bool st_read_i64(const st_file *f, const st_entry *e, int64_t *out, char *err, size_t errlen);

// ---- writing ---------------------------------------------------------------

typedef struct st_writer st_writer;

st_writer *st_writer_new(void);
// Adds a tensor (F32 or I64 are what the toolkit writes; any dtype is
// accepted).  The data is the caller's until st_write returns.
void st_add(st_writer *w, const char *name, st_dtype d, int rank, const int64_t *shape, const void *data);
// A __metadata__ entry ("format": "pt" is always written first).
void st_add_meta(st_writer *w, const char *key, const char *value);
// Writes the file atomically (a temporary beside it, fsync, rename) and
// frees the writer; dies with "path: what" on failure.
void st_write(st_writer *w, const char *path);

#endif
