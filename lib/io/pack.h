// pack: a random-access file of patient cases (what case-pack writes and
// pair-sample reads), stored as a tensor stream so that every tool and
// `mts show` can also read it front to back.  Layout (see mts(5), PACKS):
//
//   header   {"mts": 1, "tool": "case-pack", "args", "pack": 1, "task",
//             "classes": [...], "splits": [...], "channels", "dtype", "size",
//             "cases", "images"}
//   records  one per case, in manifest order, each a separate frame, raw or
//            individually zstd-compressed:
//            {"case": id, "split": name, "label": int | [0/1 ...] (absent
//             when unlabeled), "images": [tensor (C,H,W) ...],
//             "files": [path ...], "pages": [page ...]}
//   index    a header-like frame {"mts": 1, "pack_index": 1, "offsets": i64[N],
//            "sizes": i64[N], "ninst": i32[N], "split": u8[N],
//            "label": i32[N] (multi-class; -1 unlabeled) | u8[N,K] (multi-label),
//            "labeled": u8[N], "names": u8[...] (case ids, each NUL-terminated)}
//   footer   exactly PACK_FOOTER_SIZE bytes: {"mts": 1, "pack_index_at": u64}
//            with the u64 always in its 9-byte form, so a reader finds the
//            index from the end of the file.
//
// Index and footer are headers (they carry "mts"), which stream readers skip;
// so a pack piped into any tool reads as a header followed by case records.
// The reader checks every index entry against the file size before use and
// reads one case at a time with pread: memory stays bounded by the index
// (about 30 bytes and the id per case) whatever the pack's size.
#ifndef MEDSSL_PACK_H
#define MEDSSL_PACK_H

#include <stdbool.h>
#include <stdint.h>

#include "stream.h"

#define PACK_FOOTER_SIZE 29
#define PACK_MAX_CLASSES 1024
#define PACK_MAX_SPLITS 16
#define PACK_NAME_MAX 256   // case ids, class and split names, file paths

typedef enum { TASK_NONE, TASK_MULTICLASS, TASK_MULTILABEL } pack_task;

const char *pack_task_name(pack_task t);

typedef struct {
    pack_task task;
    int nclasses;
    char **classes;
    int nsplits;
    char **splits;
    int channels;
    mts_dtype dtype;     // u8 or u16
    int size;            // short side (0: original sizes)
    bool centre_crop;
} pack_meta;

// ---- writing ---------------------------------------------------------------

typedef struct pack_writer pack_writer;

typedef struct {
    const char *id;
    int split;              // index into meta.splits
    bool labeled;
    int label;              // multi-class
    const uint8_t *labels;  // multi-label: nclasses 0/1 values
    int ninst;
    const mts_tensor *images;
    const char *const *files;
    const int *pages;
} pack_case;

// Writes the header; argc/argv go into it.  zstd_level > 0 compresses each
// case record on its own (random access stays possible).
pack_writer *pack_writer_open(const char *path, const pack_meta *meta, int zstd_level,
                              int argc, char **argv);
void pack_write_case(pack_writer *w, const pack_case *c);
// Writes index and footer and renames the file into place.
void pack_writer_close(pack_writer *w);

// ---- reading ---------------------------------------------------------------

typedef struct {
    char *path;
    int fd;
    uint64_t file_size;
    pack_meta meta;
    int64_t ncases;
    int64_t nimages;
    int64_t *offsets, *sizes;
    int32_t *ninst;
    uint8_t *split;
    int32_t *label;      // multi-class: class or -1
    uint8_t *labels;     // multi-label: (ncases, nclasses)
    uint8_t *labeled;
    char **names;        // case ids (point into one block)
    char *name_block;
    mts_limits lim;
} pack_t;

// Opens and validates a pack; returns false with a message on failure.
bool pack_open(const char *path, pack_t *p, char *err, size_t errlen);
void pack_close(pack_t *p);
// Index of a split name, or -1.
int pack_split_index(const pack_t *p, const char *name);

// Reads case i's record.  The reader (returned in *r, to be closed by the
// caller after use, also on failure) owns the frame's memory; the images
// array is checked (count, dtype, rank, channels).  Returns false with a
// message on a malformed record (its byte offsets count from the record).
bool pack_read_case_checked(const pack_t *p, int64_t i, mts_reader **r, mts_frame *f,
                            const msgpack_object **images, char *err, size_t errlen);
// The same, dying with the pack's name and the case on a malformed record.
void pack_read_case(const pack_t *p, int64_t i, mts_reader **r, mts_frame *f,
                    const msgpack_object **images);

// Writes the pack's header keys that describe the data (task, classes,
// channels, dtype, size) into a stream header being written: 5 pairs.
#define PACK_META_KEYS 5
void pack_put_meta(mts_writer *w, const pack_meta *m);

#endif
