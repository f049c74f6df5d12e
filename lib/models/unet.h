// unet: PCRL's U-Net decoder over a ResNet encoder (the official code's
// ShuffleUnetDecoder on segmentation_models_pytorch's Unet), which
// reconstructs the input image from the encoder's bottleneck and stage maps:
//
//   bottleneck (layer4's output) x gate --> block 0 --> ... --> block 4 --> head
//   block i:   [nearest 2x upsampling] [concat a skip] conv3x3 BN ReLU conv3x3 BN ReLU
//   skips:     layer3, layer2, layer1 and the stem's output, in that order;
//              block 4 has none
//   head:      conv3x3 with bias to the image's channels, then a sigmoid
//   gate:      sigmoid(fc2(ReLU(fc1(code)))), code (n, 6) the view's
//              transformation (vflip, hflip, one-hot 90-degree rotation),
//              one value per bottleneck channel and image (6 -> 256 -> C)
//   mixing:    PCRL's hybrid context decodes alpha A + (1 - alpha) B of two
//              inputs (the student's maps of one view, the momentum
//              encoder's of the other): each bottleneck gated by its own
//              code first, then mixed, and every skip mixed the same way
//              (the official ShuffleUnetDecoder.forward)
//
// Block widths are the official (256, 128, 64, 32, 16) times the encoder's
// width multiplier (at least 1).  A block upsamples when its skip (for the
// last block, the input) is larger than its input: the large stem's
// decoder upsamples five times, the small stem's three.  The input's sides
// must be multiples of the encoder's total stride (32 for the large stem, 8
// for the small) so that every map doubles exactly.
//
// Names (checkpoints): "decoder.blocks.<i>.conv<j>.0.weight" for the convs,
// "decoder.blocks.<i>.conv<j>.1.*" for their batch norms,
// "decoder.head.weight" / ".bias", "decoder.gate.fc1.*" / "decoder.gate.fc2.*":
// the official state dict's layout under our prefix.
//
// Activations live in one arena sized for the largest batch seen; nothing is
// allocated per step once that size is reached.
#ifndef MEDSSL_UNET_H
#define MEDSSL_UNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bn.h"
#include "conv.h"
#include "linear.h"
#include "param.h"
#include "resnet.h"

#define UNET_BLOCKS 5
#define UNET_GATE_HIDDEN 256

typedef struct {
    bool upsample;
    int in_ch, skip_ch, out_ch;
    int in_h, in_w, h, w;      // the last forward's input and output maps
    conv2d conv1, conv2;
    batchnorm bn1, bn2;
    // The last forward's activations, in the arena: up (n, in_ch, h, w) when
    // upsampling, cat (n, in_ch + skip_ch, h, w) when there is a skip, the
    // convs' outputs c1, c2 and the BN + ReLU outputs a1, a2 (n, out_ch, h, w);
    // a2 is the block's output.
    float *up, *cat, *c1, *a1, *c2, *a2;
} unet_block;

typedef struct {
    resnet_config encoder;
    int out_ch;                // the image's channels
    int bottleneck_ch;
    unet_block blocks[UNET_BLOCKS];
    conv2d head;
    float *head_bias, *head_bias_grad;   // (out_ch)
    linear gate_fc1, gate_fc2;
    param_list params;
    int nbn;
    batchnorm *bns[2 * UNET_BLOCKS];
    char bn_names[2 * UNET_BLOCKS][PARAM_NAME_MAX];   // "decoder.blocks.0.conv1.1"
    // The last forward: its batch, inputs (kept by the caller until
    // backward) and activations.
    bool training;
    int n, h, w;
    const float *bottleneck, *code;
    const float *skips[4];         // the skips the blocks read (mixed ones when mixing)
    float *gate_hidden, *gate;     // (n, 256) after ReLU, (n, C) after the sigmoid
    float *gated;                  // (n, C, h/32, w/32): the bottleneck times the gate
    // Mixing (unet_forward_mix): B's inputs and gate, and the mixtures.
    bool mixed;
    float alpha;
    const float *bottleneck_b, *code_b;
    float *gate_hidden_b, *gate_b, *gated_b;
    float *mix;                    // (n, C, h/32, w/32): what block 0 reads
    float *mix_skips[4];
    float *gate_grad;              // backward's (n, 256 + C) for B's gate
    size_t gate_grad_floats;
    float *output;                 // (n, out_ch, h, w), in [0, 1]
    float *arena;
    size_t arena_floats;
    float *grad[2];                // backward's buffers, grad_floats each
    size_t grad_floats;
} unet_decoder;

// Builds the decoder for this encoder and image channels with the official
// code's initial values drawn from `seed` (convs Kaiming uniform, fan_in,
// ReLU gain; BN 1 and 0; linear layers Xavier uniform, biases 0; the head
// Xavier uniform, bias 0).
void unet_init(unet_decoder *d, const resnet_config *encoder, int out_ch, uint64_t seed);
void unet_free(unet_decoder *d);
// False, with the reason, when an h x w input cannot be reconstructed (its
// sides are not multiples of the encoder's stride).
bool unet_size_ok(const unet_decoder *d, int h, int w, char *err, size_t errlen);

// bottleneck: (n, C, h/32, w/32) (layer4's map; h/8 for the small stem);
// skips[0..3]: the maps of layer3, layer2, layer1 and the stem
// (resnet_stage_output 3, 2, 1, 0); code: (n, 6), or NULL for no gate.
// Fills d->output (n, out_ch, h, w).  Every input must stay unchanged until
// unet_backward.  Dies when the size is not unet_size_ok.
void unet_forward(unet_decoder *d, bool training, int n, int h, int w, const float *bottleneck,
                  const float *const skips[4], const float *code);
// One input of unet_forward_mix: an encoder's maps and its view's code.
typedef struct {
    const float *bottleneck;   // (n, C, h/32, w/32)
    const float *skips[4];     // layer3, layer2, layer1, the stem
    const float *code;         // (n, 6), or NULL for no gate
} unet_input;

// Decodes alpha a + (1 - alpha) b (see "mixing" above); a and b both have a
// code or neither has.  Same contract as unet_forward; unet_backward then
// gives the gradients at a's maps (b's get none: in PCRL they are the
// momentum encoder's), and both codes' paths add into the gate's weights.
void unet_forward_mix(unet_decoder *d, bool training, int n, int h, int w, const unet_input *a,
                      const unet_input *b, float alpha);

// doutput: (n, out_ch, h, w), the gradient at d->output.  Adds into the
// decoder's parameter gradients; writes the gradients at the bottleneck and
// at each skip (overwritten; any may be NULL: not needed).
void unet_backward(unet_decoder *d, const float *doutput, float *dbottleneck, float *const dskips[4]);

#endif
