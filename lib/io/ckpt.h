// ckpt: checkpoints.  One zstd-compressed tensor stream holds the model's
// configuration, every parameter and batch-norm buffer, the optimiser's
// state, the training position and the random state:
//
//   header  {"mts": 1, "tool", "args", "checkpoint": 1, "model": {depth, width,
//            stem, in_ch, head_layers, head_hidden, proj_dim, classes},
//            "step", "records", "epoch", "loss", "rng": [7 ints], "task",
//            "class_names": [...], "optimizer": name, "trained_on", "tensors": count}
//   records {"name": "layer1.0.conv1.weight", "kind": "param"|"buffer"|"state"|"extra",
//            "tensor": f32 (or i64 for num_batches_tracked)}
//
// It is written to a temporary, fsynced and renamed (mts_writer), so a crash
// at any moment leaves the previous checkpoint intact.  Loading checks the
// configuration and every shape and says what differs; it can take a subset
// (the encoder only, to fine-tune or to start step 2 of the protocol from
// step 1; with or without the projection head and the classifier).
//
// Weights also leave and enter as safetensors (safetensors.h) under
// torchvision's names, so that torchvision, timm and MONAI load them as they
// are: ckpt_export writes one; ckpt_read_header and ckpt_load take one
// wherever they take a checkpoint (told apart by st_sniff).  Such a file
// holds no optimiser state; its model is read off its tensors' names and
// shapes (the depth from the blocks per layer, the stem from conv1's kernel,
// the width from its channels or from our metadata), and its training
// position from our metadata ("medssl.step", ...) when we wrote it.  The
// projection head is "head.<l>.linear.weight" and "head.<l>.bn.*" there too.
#ifndef MEDSSL_CKPT_H
#define MEDSSL_CKPT_H

#include <stdbool.h>
#include <stdint.h>

#include "bn.h"
#include "model.h"
#include "optim.h"
#include "rng.h"
#include "stream.h"

#define CKPT_MAX_CLASSES 1024

typedef struct {
    int64_t step;       // optimiser steps taken
    int64_t records;    // input records consumed
    int64_t epoch;
    double loss;        // the last step's loss (NaN when unknown)
    bool has_rng;
    int64_t rng[RNG_STATE_LEN];
    char task[16];      // "", "multiclass", "multilabel"
    int nclasses;
    char *class_names[CKPT_MAX_CLASSES];  // owned (ckpt_info_free)
    char optimizer[16]; // "" when no optimiser state is saved
    char trained_on[160]; // what the run read (stream_info.trained_on), or ""
} ckpt_info;

void ckpt_info_free(ckpt_info *info);

// Writes model (+ optimiser state when o is not NULL) to path atomically.
void ckpt_save(const char *path, const model *m, const optimizer *o, const ckpt_info *info,
               const char *tool, int argc, char **argv);

// Reads only the header: the model configuration and the info.
bool ckpt_read_header(const char *path, model_config *cfg, ckpt_info *info, char *err, size_t errlen);

// What to load.
enum {
    CKPT_ENCODER = 1,   // encoder parameters and batch-norm statistics
    CKPT_HEAD = 2,      // projection head
    CKPT_FC = 4,        // classifier
    CKPT_STATE = 8,     // optimiser state (o must not be NULL)
    CKPT_ALL = 15,
    // With CKPT_ENCODER: a 3-channel checkpoint may go into a 1-channel
    // model, conv1's weight summed over its input channels (as timm does).
    CKPT_GREY = 16,
    CKPT_EXTRA = 32,    // a trainer's own tensors beside the model (ckpt_extra)
    // With CKPT_EXTRA: the file's extras that the list does not name are
    // skipped (the decoder of a PCRL checkpoint without its teacher and
    // queue); the list's must all be there still.
    CKPT_EXTRA_SUBSET = 64,
};

// Copies the chosen parts into m (and o), which must have the same shapes
// for those parts: every tensor of a chosen part present in the model must
// be in the checkpoint and vice versa.  Returns false with what differs (or
// what is malformed) in err; the model may then be partly overwritten.
bool ckpt_load_checked(const char *path, model *m, optimizer *o, unsigned parts, char *err, size_t errlen);
// The same, dying with "path: what differs".
void ckpt_load(const char *path, model *m, optimizer *o, unsigned parts);

// ---- a trainer's own tensors ---------------------------------------------------
//
// What a trainer keeps beside the model (pcrl-step: its decoder, the
// momentum copy of the model, the key queue) is saved after the model's
// tensors as records of kind "extra", under the names given here.  Tools
// that load a model leave them alone; the trainer that made them loads
// them back with CKPT_EXTRA and the same list, which must then match the
// file's extras one to one, as the model's tensors must.

typedef struct {
    char name[PARAM_NAME_MAX + 32];
    mts_dtype dtype;   // MTS_F32 or MTS_I64
    int rank;
    int64_t shape[PARAM_MAX_RANK];
    void *data;        // the tensor's memory, read on save and written on load
} ckpt_tensor;

typedef struct {
    ckpt_tensor *items;
    int count, cap;
} ckpt_extra;

void ckpt_extra_add(ckpt_extra *x, const char *name, mts_dtype dtype, int rank, const int64_t *shape, void *data);
// Every parameter's value, named prefix + the parameter's name.
void ckpt_extra_params(ckpt_extra *x, const param_list *l, const char *prefix);
// A batch norm's running_mean, running_var and num_batches_tracked, named
// prefix + "." + the buffer.
void ckpt_extra_bn(ckpt_extra *x, batchnorm *bn, const char *prefix);
// A whole model (parameters and batch-norm buffers) under a prefix
// ("momentum." + "layer1.0.conv1.weight").
void ckpt_extra_model(ckpt_extra *x, const model *m, const char *prefix);
void ckpt_extra_free(ckpt_extra *x);

// ckpt_save and ckpt_load_checked with extras (x may be NULL: none).
void ckpt_save_extra(const char *path, const model *m, const optimizer *o, const ckpt_extra *x,
                     const ckpt_info *info, const char *tool, int argc, char **argv);
bool ckpt_load_extra(const char *path, model *m, optimizer *o, const ckpt_extra *x, unsigned parts, char *err,
                     size_t errlen);

// Writes the chosen parts (CKPT_ENCODER, CKPT_HEAD, CKPT_FC) as safetensors,
// float32 with I64 num_batches_tracked, atomically; the metadata has
// "format": "pt", the model's description and width and the info.
void ckpt_export(const char *path, const model *m, const ckpt_info *info, unsigned parts);

#endif
