// model: the networks the trainers train and the tools run: a ResNet
// encoder, optionally SimCLR's projection head (pretraining) and a linear
// classifier (fine-tuning, evaluation), with one parameter list for the
// optimiser and one name space for checkpoints.
//
//   image (n, C, H, W) -> encoder -> features h (n, F)
//                                  -> head    -> projection z (n, P)
//                                  -> fc      -> logits (n, K)
//
// The projection head is SimCLR v2's: head_layers linear layers without bias,
// each followed by batch norm, ReLU between them (not after the last); the
// hidden width defaults to F, the output to 128.  The classifier reads the
// encoder's features (SimCLR v1's linear evaluation and fine-tuning).
//
// Names (checkpoints, optimiser state): torchvision's for the encoder
// ("conv1.weight", "layer1.0.bn1.running_mean"), "head.<l>.linear.weight" and
// "head.<l>.bn.*" for the head, "fc.weight" and "fc.bias" for the classifier.
#ifndef MEDSSL_MODEL_H
#define MEDSSL_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "bn.h"
#include "linear.h"
#include "param.h"
#include "resnet.h"

#define MODEL_MAX_HEAD 3

typedef struct {
    resnet_config encoder;
    int head_layers;   // 0 (none), 2 or 3
    int head_hidden;   // 0: the encoder's feature width
    int proj_dim;      // projection width (128)
    int classes;       // 0: no classifier
} model_config;

// A model configuration with SimCLR's defaults for everything not given.
model_config model_config_default(void);
// "resnet50" -> 50; false for an unknown name.
bool model_depth_parse(const char *name, int *depth);
// One line: "resnet18 x0.5, small stem, 1 channel, head 2x128, 10 classes".
void model_describe(const model_config *c, char *buf, size_t len);

typedef struct {
    linear lin;
    batchnorm bn;
    int width;
    float *lin_out, *bn_out;   // (n, width): the BN input and output
} head_layer;

// A view of every batch-norm layer with its name prefix (for checkpoints).
typedef struct {
    batchnorm *bn;
    char prefix[PARAM_NAME_MAX];
} model_bn;

typedef struct {
    model_config cfg;
    resnet enc;
    int nhead;
    head_layer head[MODEL_MAX_HEAD];
    linear fc;
    bool has_fc;
    param_list params;          // encoder, head, classifier, in that order
    int nbn;
    model_bn *bns;
    bool encoder_frozen;        // linear evaluation: no encoder gradients, BN in eval mode
    // Outputs of the last forward, and buffers for backward.
    int n, cap_n;
    float *features, *proj, *logits;
    float *dfeatures, *dhead[2];
    int micro;                  // model_set_micro; 0: none
    float *partials;            // (micro-batches, the largest linear layer's weights)
    size_t partials_floats;
} model;

// The largest model built: 2^30 parameters (4 GiB of weights, three times
// that with gradients and momentum), above ResNet-152 4x (about 0.94e9).
// It keeps a checkpoint's header from asking for an allocation the machine
// cannot make.
#define MODEL_MAX_PARAMS (1L << 30)

// The trainable parameters model_init would create, without allocating.
double model_param_count(const model_config *cfg);
// Builds the model with PyTorch's initial values drawn from `seed`; dies
// when it has over MODEL_MAX_PARAMS parameters.
void model_init(model *m, const model_config *cfg, uint64_t seed);
void model_free(model *m);
// Linear evaluation: marks the encoder's parameters frozen (optimisers skip
// them), runs its batch norms in eval mode and skips its backward.
void model_freeze_encoder(model *m);

// Trains on this rank's share of a global batch (dist.h), whole
// micro-batches of `micro` images (0: a batch of its own, as by default):
// every batch norm takes the global batch's statistics and every weight
// gradient is the exact sum of its micro-batches' over every rank, so that
// the result does not depend on how many ranks share the batch.  Forward and
// backward are then collective calls.
void model_set_micro(model *m, int micro);

// x: (n, C, H, W), kept unchanged by the caller until model_backward.
// Fills m->features, and m->proj / m->logits when the model has them.
void model_forward(model *m, bool training, int n, int h, int w, const float *x);
// Gradients at the outputs of the last forward (either may be NULL: that
// branch gets no gradient).  Adds into the parameters' gradients.
void model_backward(model *m, const float *dproj, const float *dlogits);
// The same with gradients added at the encoder's stage maps too (a
// decoder's, resnet_backward_stages): dstages may be NULL, or any entry.
void model_backward_stages(model *m, const float *dproj, const float *dlogits, const float *const dstages[5]);

#endif
