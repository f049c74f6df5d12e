// param: the trainable tensors of a model, as optimisers and checkpoints see
// them.  A layer owns its weights and gradients; it registers them here under
// torchvision-style names ("layer1.0.conv1.weight") so that an optimiser can
// walk every parameter and a checkpoint can name and shape-check each one.
#ifndef MEDSSL_PARAM_H
#define MEDSSL_PARAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PARAM_MAX_RANK 4
#define PARAM_NAME_MAX 96

typedef struct {
    char name[PARAM_NAME_MAX];
    float *w;          // value, n floats (owned by the layer)
    float *g;          // gradient, n floats (owned by the layer); backward adds into it
    size_t n;
    int rank;
    int64_t shape[PARAM_MAX_RANK];
    // Batch-norm scales/shifts and biases: excluded from weight decay and from
    // LARS's trust-ratio adaptation (as in the SimCLR reference code).
    bool no_decay;
    // Frozen parameters (linear evaluation) are skipped by optimisers.
    bool frozen;
} param_t;

typedef struct {
    param_t *items;
    int count, cap;
} param_list;

// Appends a parameter; `name` is printf-style.  Returns the new entry.
param_t *param_add(param_list *l, float *w, float *g, int rank, const int64_t *shape,
                   bool no_decay, const char *name, ...)
    __attribute__((format(printf, 7, 8)));
param_t *param_find(const param_list *l, const char *name);
// Sets every gradient to zero (before a backward pass).
void param_zero_grad(const param_list *l);
// Total number of scalar parameters.
size_t param_count(const param_list *l);
void param_list_free(param_list *l);
// Appends every entry of src to dst (the same tensors: one optimiser over
// two models' parameters).
void param_list_append(param_list *dst, const param_list *src);
// A momentum (EMA) copy: ema = m ema + (1 - m) src, parameter by
// parameter (MoCo's momentum encoder); the lists must have the same shapes.
void param_ema_update(const param_list *ema, const param_list *src, double m);

#endif
