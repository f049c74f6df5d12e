// pcrl: one training step of PCRL (Zhou et al., ICCV 2021, "Preservational
// Learning Improves Self-supervised Medical Image Models by Reconstructing
// Diverse Contexts"): a contrastive loss beside a U-Net decoder (unet.h)
// that reconstructs three contexts of the input.
//
// The networks: the student (model.h: encoder + projection head), its
// momentum copy (the teacher: the same model, weights an EMA of the
// student's, m = 0.999, never trained; its batch norms run in training mode
// and keep their own statistics, as the official code's model_ema), and the
// decoder over the student's stage maps.  A pair of views (a, b) per record,
// each with its colour-free target and its transformation code (augment
// --targets):
//
//   contrast   moco:   the student sees a, the teacher b; InfoNCE of the
//                      student's projection against the teacher's (positive)
//                      and a queue of K past teacher keys (negatives), tau
//                      0.2; then the keys enter the queue (MoCo)
//              ntxent: the student sees a and b, NT-Xent over the 2N
//                      projections (SimCLR's, ntxent-step's); the teacher
//                      still sees b, for the reconstructions
//   recon 1    ordinary: the decoder on the student's maps, each view gated
//              by its own code, against that view's target
//   recon 2    momentum: the decoder on the teacher's maps of b, gated by
//              b's code, against b's target (gradient to the decoder only)
//   recon 3    hybrid: the decoder on alpha (student's maps of a) + (1 -
//              alpha) (teacher's maps of b), each bottleneck gated by its own
//              code first, against alpha target_a + (1 - alpha) target_b;
//              alpha ~ Beta(1, 1) (uniform), alpha = max(alpha, 1 - alpha),
//              one draw per step
//   loss       contrast + w (recon1 + recon2 + recon3) / 3, w = 1 by default
//
// Where this differs from the official code (Luchixiang/PCRL, pcrl.py):
// the targets are the crops before colour augmentation (the paper; the
// code reconstructs the colour-augmented input), the momentum features are
// decoded as a context of their own (the paper's second context; the code
// decodes only the student's and the mixture), the code's second, input-
// level mixup pass with its two extra contrastive terms is left out, the
// contrast is InfoNCE with a softmax (MoCo's; the code's NCE criterion with
// a normalisation constant is not used), and there is no shuffle-BN (one
// process computes each batch norm over the whole batch, where shuffling
// changes nothing).
//
// One step is pcrl_step (forward, losses, backward into p->params'
// gradients; then the queue takes the keys), the caller's optimiser step on
// p->params, then pcrl_update_teacher.  Everything is deterministic: the
// same inputs and state give the same bytes for any thread count.
#ifndef MEDSSL_PCRL_H
#define MEDSSL_PCRL_H

#include <stdbool.h>
#include <stdint.h>

#include "ckpt.h"
#include "model.h"
#include "param.h"
#include "rng.h"
#include "unet.h"

typedef enum { PCRL_MOCO, PCRL_NTXENT } pcrl_contrast;

typedef struct {
    pcrl_contrast contrast;
    double tau;             // 0.2
    int queue;              // K keys (moco only; 16384)
    double ema;             // the teacher's momentum m (0.999)
    double recon_weight;    // w (1)
} pcrl_config;

pcrl_config pcrl_defaults(void);
// "moco" -> PCRL_MOCO, "ntxent" -> PCRL_NTXENT; false for anything else.
bool pcrl_contrast_parse(const char *name, pcrl_contrast *out);

typedef struct {
    float loss, contrast;
    float recon[3];         // ordinary, momentum, hybrid
    float alpha;
    int correct, anchors;   // contrastive top-1: positives ranked first
} pcrl_losses;

typedef struct {
    pcrl_config cfg;
    model student, teacher;
    unet_decoder decoder;
    param_list params;      // the student's, then the decoder's: what the optimiser updates
    float *queue;           // (K, proj_dim) unit rows; NULL for ntxent
    int64_t queue_pos;      // the next row the keys overwrite
    rng_t alpha_rng;        // one uniform draw a step
    // Scratch, sized for the last batch (n pairs of h x w views).
    int n, h, w;
    float *xa, *xb, *ta, *tb, *tmix;   // (n, C, h, w): the views, their targets, the hybrid's target
    float *codes_a, *codes_b;     // (n, 6)
    float *dout, *dproj;          // the gradients at the decoder's output and the projections
    float *keys;                  // (n, proj_dim): the teacher's keys, normalised
    size_t stage_floats[5];       // one image's stage-s map
    float *dstage[5];             // the gradients at the student's stage maps
    float *a_maps[5], *da_maps[5];   // the hybrid's student maps (view a) and their gradients
} pcrl;

// Builds student, teacher (a copy of the student), decoder (its seed
// derived from `seed`) and the queue (random unit rows, as MoCo's).
void pcrl_init(pcrl *p, const model_config *cfg, const pcrl_config *pc, uint64_t seed);
void pcrl_free(pcrl *p);
// After the student was loaded (--init): the teacher becomes its copy
// again, batch-norm statistics included.
void pcrl_sync_teacher(pcrl *p);

// x, targets: (2n, C, H, W) as batch_next_targets lays out pairs (rows 2k
// and 2k+1 the views a and b of record k); codes (2n, 6).  Zeroes and fills
// the gradients of p->params, pushes the keys into the queue, returns the
// losses in *out.
void pcrl_step(pcrl *p, int n, int h, int w, const float *x, const float *targets, const float *codes,
               pcrl_losses *out);
// After the optimiser's step: teacher = m teacher + (1 - m) student.
void pcrl_update_teacher(pcrl *p);

// The tensors a checkpoint keeps beside the student (decoder, teacher,
// queue and its position), for ckpt_save_extra / ckpt_load_extra.
void pcrl_checkpoint_tensors(pcrl *p, ckpt_extra *x);
// The decoder's alone ("decoder.*": parameters and batch-norm statistics),
// to load a trained decoder with CKPT_EXTRA | CKPT_EXTRA_SUBSET.
void pcrl_decoder_tensors(unet_decoder *d, ckpt_extra *x);

// What a trained decoder makes of images: the student's encoder and the
// decoder in eval mode (running statistics, nothing updated) on x (n, C, h,
// w), each image gated by its code (n, 6); the reconstructions in
// d->output (n, C, h, w), in [0, 1].
void pcrl_reconstruct(model *student, unet_decoder *d, int n, int h, int w, const float *x, const float *codes);

#endif
