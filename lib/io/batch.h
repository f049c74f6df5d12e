// batch: reading the image records of a stream into batches for the
// trainers and embed: f32 (C, H, W) images (from augment) become one
// contiguous (n * views, C, H, W) array, with each record's case, instance,
// split, label and position kept beside it.
//
// A pair stream (keys "a" and "b", from pair-sample | augment) has two views
// per record, laid out as rows 2k and 2k+1 (NT-Xent's layout); an image
// stream (key "image") has one.  Every image of a stream must have the shape
// of the first; anything else stops the tool with the byte offset and what
// it expected.  Headers (also ones met later, in concatenated streams) update
// the stream's info.
#ifndef MEDSSL_BATCH_H
#define MEDSSL_BATCH_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "pack.h"
#include "stream.h"

#define BATCH_MAX_CLASSES PACK_MAX_CLASSES

typedef struct {
    int64_t pairs_per_epoch;  // records per epoch (0 when the header has none)
    int64_t epochs;
    int64_t start;            // records skipped before this stream (pair-sample --start)
    char task[16];            // "", "none", "multiclass", "multilabel"
    int nclasses;
    char *classes[BATCH_MAX_CLASSES];
    // What the records are, from pair-sample's header (passed on by
    // augment): "micle pairs, split train: 812 cases, 1870 images, label
    // fraction 1"; "" when the header does not say.  Checkpoints keep it.
    char trained_on[160];
    // pair-sample --shard R/K --batch B: {R, K, B}; {0, 0, 0} for a whole stream.
    int64_t shard[3];
    // FNV-1a of the header without what differs between the shards of one
    // run (the "shard" key and the value of a --shard argument): the ranks
    // of a run compare it (dist.h).
    uint64_t header_hash;
} stream_info;

typedef struct {
    char case_id[PACK_NAME_MAX];
    int64_t inst;             // -1 when absent
    char split[32];
    bool labeled;
    int label;                // multi-class
    uint8_t *labels;          // multi-label: nclasses values (owned by the reader)
    int64_t epoch, index;     // -1 when absent
} record_meta;

typedef struct batch_reader batch_reader;

// views: 2 for pair records, 1 for image records.  `need` says, in errors,
// what the tool expects ("pair records from pair-sample | augment").
batch_reader *batch_open(const char *path, int views, const char *need);
void batch_close(batch_reader *b);

// Reads up to n records; returns how many (0 at the end).  x must hold
// n * views * C * H * W floats (the shape is known after the first record:
// batch_peek).  meta (may be NULL) receives n entries.
int batch_next(batch_reader *b, int n, float *x, record_meta *meta);
// The same, with each view's reconstruction target and transformation code
// (augment --targets: KEY_target, KEY_code) read as well: targets like x,
// codes (n * views, 6).  A record without them stops the tool.
int batch_next_targets(batch_reader *b, int n, float *x, float *targets, float *codes, record_meta *meta);

// Once *stop is set (on_stop_signal), a read error ends the stream like a
// clean end: a signal sent to a whole pipeline stops the producer too, often
// in the middle of a frame, and the trainer must then save its last step
// rather than report a truncated input.
void batch_stop_on(batch_reader *b, volatile sig_atomic_t *stop);

// Reads ahead to the first record (not consumed) and returns false at the
// end of the stream; then the shape and the info are known.
bool batch_peek(batch_reader *b);
void batch_shape(const batch_reader *b, int *c, int *h, int *w);
const stream_info *batch_info(const batch_reader *b);
const char *batch_name(const batch_reader *b);

#endif
