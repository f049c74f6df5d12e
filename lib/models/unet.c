#include "unet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act.h"
#include "rng.h"
#include "upsample.h"
#include "util.h"

static const int official_widths[UNET_BLOCKS] = {256, 128, 64, 32, 16};

// The encoder stage whose map block i concatenates (-1: none).
static int skip_stage(int block) { return block < 4 ? 3 - block : -1; }

static int stride_of(const resnet_config *e) { return e->stem == RESNET_STEM_LARGE ? 32 : 8; }

// Uniform in [-bound, bound), one stream per parameter.
static void fill_uniform(param_t *p, double bound, uint64_t seed, uint64_t stream)
{
    rng_t r = rng_make(seed, stream, 0, 1);
    for (size_t i = 0; i < p->n; i++)
        p->w[i] = (float)((2.0 * rng_uniform(&r) - 1.0) * bound);
}

void unet_init(unet_decoder *d, const resnet_config *encoder, int out_ch, uint64_t seed)
{
    memset(d, 0, sizeof *d);
    d->encoder = *encoder;
    d->out_ch = out_ch;
    // Shapes at a reference size: which blocks upsample does not depend on it.
    const int ref = 8 * stride_of(encoder);
    int c, h, w;
    resnet_stage_shape(encoder, 4, ref, ref, &c, &h, &w);
    d->bottleneck_ch = c;
    int in = c, cur_h = h;
    int64_t shape[1];
    for (int i = 0; i < UNET_BLOCKS; i++) {
        unet_block *b = &d->blocks[i];
        int sc = 0, sh = ref, sw = ref;
        if (skip_stage(i) >= 0)
            resnet_stage_shape(encoder, skip_stage(i), ref, ref, &sc, &sh, &sw);
        b->upsample = sh > cur_h;
        b->in_ch = in, b->skip_ch = sc;
        b->out_ch = (int)lround(official_widths[i] * encoder->width);
        if (b->out_ch < 1)
            b->out_ch = 1;
        conv2d_init(&b->conv1, in + sc, b->out_ch, 3, 1, 1);
        conv2d_init(&b->conv2, b->out_ch, b->out_ch, 3, 1, 1);
        batchnorm_init(&b->bn1, b->out_ch);
        batchnorm_init(&b->bn2, b->out_ch);
        for (int j = 0; j < 2; j++) {
            conv2d *cv = j ? &b->conv2 : &b->conv1;
            batchnorm *bn = j ? &b->bn2 : &b->bn1;
            char prefix[PARAM_NAME_MAX];
            snprintf(prefix, sizeof prefix, "decoder.blocks.%d.conv%d.0", i, j + 1);
            conv2d_register(cv, &d->params, prefix);
            snprintf(d->bn_names[d->nbn], sizeof d->bn_names[d->nbn], "decoder.blocks.%d.conv%d.1", i, j + 1);
            batchnorm_register(bn, &d->params, d->bn_names[d->nbn]);
            d->bns[d->nbn++] = bn;
        }
        in = b->out_ch;
        cur_h = sh;
    }
    conv2d_init(&d->head, in, out_ch, 3, 1, 1);
    conv2d_register(&d->head, &d->params, "decoder.head");
    d->head_bias = xcalloc((size_t)out_ch, sizeof *d->head_bias);
    d->head_bias_grad = xcalloc((size_t)out_ch, sizeof *d->head_bias_grad);
    shape[0] = out_ch;
    param_add(&d->params, d->head_bias, d->head_bias_grad, 1, shape, true, "decoder.head.bias");
    linear_init(&d->gate_fc1, 6, UNET_GATE_HIDDEN, true);
    linear_init(&d->gate_fc2, UNET_GATE_HIDDEN, d->bottleneck_ch, true);
    linear_register(&d->gate_fc1, &d->params, "decoder.gate.fc1");
    linear_register(&d->gate_fc2, &d->params, "decoder.gate.fc2");

    // The official initialize_decoder / initialize_head: Kaiming uniform
    // (fan_in, ReLU: bound sqrt(6 / fan_in)) for the blocks' convs, Xavier
    // uniform (bound sqrt(6 / (fan_in + fan_out))) for the head and the
    // linear layers; biases 0, BN 1 and 0 (their init values).
    for (int i = 0; i < d->params.count; i++) {
        param_t *p = &d->params.items[i];
        if (p->no_decay)
            continue;
        double fan_in = (double)p->n / (double)p->shape[0], fan_out = (double)p->n / (double)p->shape[1];
        bool kaiming = p->rank == 4 && strncmp(p->name, "decoder.blocks.", 15) == 0;
        fill_uniform(p, kaiming ? sqrt(6.0 / fan_in) : sqrt(6.0 / (fan_in + fan_out)), seed, (uint64_t)i);
    }
}

void unet_free(unet_decoder *d)
{
    for (int i = 0; i < UNET_BLOCKS; i++) {
        unet_block *b = &d->blocks[i];
        conv2d_free(&b->conv1);
        conv2d_free(&b->conv2);
        batchnorm_free(&b->bn1);
        batchnorm_free(&b->bn2);
    }
    conv2d_free(&d->head);
    free(d->head_bias);
    free(d->head_bias_grad);
    linear_free(&d->gate_fc1);
    linear_free(&d->gate_fc2);
    param_list_free(&d->params);
    free(d->arena);
    free(d->grad[0]);
    free(d->grad[1]);
    free(d->gate_grad);
    memset(d, 0, sizeof *d);
}

bool unet_size_ok(const unet_decoder *d, int h, int w, char *err, size_t errlen)
{
    int s = stride_of(&d->encoder);
    if (h >= s && w >= s && h % s == 0 && w % s == 0)
        return true;
    snprintf(err, errlen, "%dx%d images: the decoder needs sides that are multiples of %d (the encoder's stride)",
             w, h, s);
    return false;
}

// Places every activation of a forward at (n, h, w) in the arena (when
// store) and returns the floats needed; *largest gets the largest gradient
// any step of backward holds.
static size_t layout(unet_decoder *d, bool store, int n, int h, int w, bool gated, bool mixed, size_t *largest)
{
    size_t used = 0;
    *largest = 0;
#define PLACE(ptr, count)                                    \
    do {                                                     \
        size_t count_ = (count);                             \
        if (store)                                           \
            (ptr) = d->arena + used;                         \
        used += (count_ + 15) & ~(size_t)15;                 \
        if (count_ > *largest)                               \
            *largest = count_;                               \
    } while (0)
    int c4, h4, w4;
    resnet_stage_shape(&d->encoder, 4, h, w, &c4, &h4, &w4);
    if (gated) {
        PLACE(d->gate_hidden, (size_t)n * UNET_GATE_HIDDEN);
        PLACE(d->gate, (size_t)n * c4);
        PLACE(d->gated, (size_t)n * c4 * h4 * w4);
    }
    if (mixed) {
        if (gated) {
            PLACE(d->gate_hidden_b, (size_t)n * UNET_GATE_HIDDEN);
            PLACE(d->gate_b, (size_t)n * c4);
            PLACE(d->gated_b, (size_t)n * c4 * h4 * w4);
        }
        PLACE(d->mix, (size_t)n * c4 * h4 * w4);
        for (int k = 0; k < 4; k++) {
            int sc, sh, sw;
            resnet_stage_shape(&d->encoder, 3 - k, h, w, &sc, &sh, &sw);
            PLACE(d->mix_skips[k], (size_t)n * sc * sh * sw);
        }
    }
    int cur_h = h4, cur_w = w4;
    for (int i = 0; i < UNET_BLOCKS; i++) {
        unet_block *b = &d->blocks[i];
        b->in_h = cur_h, b->in_w = cur_w;
        b->h = b->upsample ? 2 * cur_h : cur_h;
        b->w = b->upsample ? 2 * cur_w : cur_w;
        size_t map = (size_t)b->h * b->w;
        if (b->upsample)
            PLACE(b->up, (size_t)n * b->in_ch * map);
        if (b->skip_ch)
            PLACE(b->cat, (size_t)n * (b->in_ch + b->skip_ch) * map);
        PLACE(b->c1, (size_t)n * b->out_ch * map);
        PLACE(b->a1, (size_t)n * b->out_ch * map);
        PLACE(b->c2, (size_t)n * b->out_ch * map);
        PLACE(b->a2, (size_t)n * b->out_ch * map);
        cur_h = b->h, cur_w = b->w;
    }
    PLACE(d->output, (size_t)n * d->out_ch * h * w);
#undef PLACE
    return used;
}

// gate (n, C) = sigmoid(fc2(relu(fc1(code)))); gated = bottleneck x gate.
static void gate_apply(unet_decoder *d, int n, size_t map4, const float *code, const float *bottleneck,
                       float *hidden, float *gate, float *gated)
{
    linear_forward(&d->gate_fc1, n, code, hidden);
    relu_forward((size_t)n * UNET_GATE_HIDDEN, hidden, hidden);
    linear_forward(&d->gate_fc2, n, hidden, gate);
    sigmoid_forward((size_t)n * d->bottleneck_ch, gate, gate);
    gate_forward(n, d->bottleneck_ch, map4, bottleneck, gate, gated);
}

// y = alpha a + (1 - alpha) b, the factors rounded to float once (as
// PyTorch's alpha * x1 + (1 - alpha) * x2 with a Python float alpha).
static void mix_maps(size_t count, float alpha, const float *a, const float *b, float *y)
{
    const float fa = alpha, fb = (float)(1.0 - (double)alpha);
#pragma omp parallel for schedule(static)
    for (long i = 0; i < (long)count; i++)
        y[i] = fa * a[i] + fb * b[i];
}

static void scale_maps(size_t count, float s, float *y)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < (long)count; i++)
        y[i] *= s;
}

void unet_forward_mix(unet_decoder *d, bool training, int n, int h, int w, const unet_input *a,
                      const unet_input *b, float alpha)
{
    char err[200];
    if (!unet_size_ok(d, h, w, err, sizeof err))
        die("decoder", "%s", err);
    bool gated = a->code != NULL, mixed = b != NULL;
    if (mixed && (b->code != NULL) != gated)
        die("decoder", "mixing a gated input with an ungated one");
    size_t largest, need = layout(d, false, n, h, w, gated, mixed, &largest);
    if (need > d->arena_floats) {
        free(d->arena);
        d->arena = xaligned_alloc(mul_size(need, sizeof(float), "decoder activations"));
        d->arena_floats = need;
    }
    layout(d, true, n, h, w, gated, mixed, &largest);
    d->training = training;
    d->n = n, d->h = h, d->w = w;
    d->bottleneck = a->bottleneck, d->code = a->code;
    d->mixed = mixed, d->alpha = mixed ? alpha : 1;
    d->bottleneck_b = mixed ? b->bottleneck : NULL, d->code_b = mixed ? b->code : NULL;

    const unet_block *first = &d->blocks[0];
    size_t map4 = (size_t)first->in_h * first->in_w, bottleneck_n = (size_t)n * d->bottleneck_ch * map4;
    const float *cur = a->bottleneck;
    if (gated) {
        gate_apply(d, n, map4, a->code, a->bottleneck, d->gate_hidden, d->gate, d->gated);
        cur = d->gated;
    }
    for (int k = 0; k < 4; k++)
        d->skips[k] = a->skips[k];
    if (mixed) {
        const float *cur_b = b->bottleneck;
        if (gated) {
            gate_apply(d, n, map4, b->code, b->bottleneck, d->gate_hidden_b, d->gate_b, d->gated_b);
            cur_b = d->gated_b;
        }
        mix_maps(bottleneck_n, alpha, cur, cur_b, d->mix);
        cur = d->mix;
        for (int k = 0; k < 4; k++) {
            int sc, sh, sw;
            resnet_stage_shape(&d->encoder, 3 - k, h, w, &sc, &sh, &sw);
            mix_maps((size_t)n * sc * sh * sw, alpha, a->skips[k], b->skips[k], d->mix_skips[k]);
            d->skips[k] = d->mix_skips[k];
        }
    }
    for (int i = 0; i < UNET_BLOCKS; i++) {
        unet_block *bl = &d->blocks[i];
        size_t map = (size_t)bl->h * bl->w;
        if (bl->upsample) {
            upsample2x_forward(n, bl->in_ch, bl->in_h, bl->in_w, cur, bl->up);
            cur = bl->up;
        }
        if (bl->skip_ch) {
            concat_forward(n, bl->in_ch, bl->skip_ch, map, cur, d->skips[i], bl->cat);
            cur = bl->cat;
        }
        conv2d_forward(&bl->conv1, n, bl->h, bl->w, cur, bl->c1);
        batchnorm_forward(&bl->bn1, training, n, (int)map, bl->c1, NULL, true, bl->a1);
        conv2d_forward(&bl->conv2, n, bl->h, bl->w, bl->a1, bl->c2);
        batchnorm_forward(&bl->bn2, training, n, (int)map, bl->c2, NULL, true, bl->a2);
        cur = bl->a2;
    }
    conv2d_forward(&d->head, n, h, w, cur, d->output);
    bias_forward(n, d->out_ch, (size_t)h * w, d->head_bias, d->output);
    sigmoid_forward((size_t)n * d->out_ch * h * w, d->output, d->output);
}

void unet_forward(unet_decoder *d, bool training, int n, int h, int w, const float *bottleneck,
                  const float *const skips[4], const float *code)
{
    unet_input a = {.bottleneck = bottleneck, .skips = {skips[0], skips[1], skips[2], skips[3]}, .code = code};
    unet_forward_mix(d, training, n, h, w, &a, NULL, 1);
}

// The input of block i's first conv in the last forward.
static const float *block_input(const unet_decoder *d, int i)
{
    const unet_block *b = &d->blocks[i];
    if (b->skip_ch)
        return b->cat;
    if (b->upsample)
        return b->up;
    return i > 0 ? d->blocks[i - 1].a2 : d->mixed ? d->mix : d->code ? d->gated : d->bottleneck;
}

void unet_backward(unet_decoder *d, const float *doutput, float *dbottleneck, float *const dskips[4])
{
    const int n = d->n, h = d->h, w = d->w;
    size_t largest;
    layout(d, false, n, h, w, d->code != NULL, d->mixed, &largest);
    if (largest > d->grad_floats) {
        for (int k = 0; k < 2; k++) {
            free(d->grad[k]);
            d->grad[k] = xaligned_alloc(mul_size(largest, sizeof(float), "decoder gradients"));
        }
        d->grad_floats = largest;
    }
    // p holds the gradient being passed down, q is free.
    float *p = d->grad[0], *q = d->grad[1], *t;
    size_t out_n = (size_t)n * d->out_ch * h * w;
    sigmoid_backward(out_n, d->output, doutput, q);
    bias_backward(n, d->out_ch, (size_t)h * w, q, d->head_bias_grad);
    conv2d_backward(&d->head, n, h, w, d->blocks[UNET_BLOCKS - 1].a2, q, p, false);
    for (int i = UNET_BLOCKS - 1; i >= 0; i--) {
        unet_block *b = &d->blocks[i];
        int map = b->h * b->w;
        batchnorm_backward(&b->bn2, d->training, n, map, b->c2, b->a2, true, p, q);
        conv2d_backward(&b->conv2, n, b->h, b->w, b->a1, q, p, false);
        batchnorm_backward(&b->bn1, d->training, n, map, b->c1, b->a1, true, p, q);
        conv2d_backward(&b->conv1, n, b->h, b->w, block_input(d, i), q, p, false);
        // p: the gradient at the conv's input (the concatenation, when there is a skip).
        if (b->skip_ch) {
            float *dskip = dskips ? dskips[i] : NULL;
            concat_backward(n, b->in_ch, b->skip_ch, (size_t)map, p, q, dskip);
            if (dskip && d->mixed)
                scale_maps((size_t)n * b->skip_ch * map, d->alpha, dskip);
            t = p, p = q, q = t;
        }
        if (b->upsample) {
            upsample2x_backward(n, b->in_ch, b->in_h, b->in_w, p, q);
            t = p, p = q, q = t;
        }
    }
    // p: the gradient at the (gated, mixed) bottleneck.
    const unet_block *first = &d->blocks[0];
    size_t map4 = (size_t)first->in_h * first->in_w, bottleneck_n = (size_t)n * d->bottleneck_ch * map4;
    if (d->mixed && d->code_b) {
        // B's gate: its gradient is (1 - alpha) sum over the map of p x B.
        size_t need = (size_t)n * (UNET_GATE_HIDDEN + d->bottleneck_ch);
        if (need > d->gate_grad_floats) {
            free(d->gate_grad);
            d->gate_grad = xaligned_alloc(mul_size(need, sizeof(float), "decoder gradients"));
            d->gate_grad_floats = need;
        }
        float *dgate = d->gate_grad, *dhidden = d->gate_grad + (size_t)n * d->bottleneck_ch;
        gate_backward(n, d->bottleneck_ch, map4, d->bottleneck_b, d->gate_b, p, NULL, dgate);
        scale_maps((size_t)n * d->bottleneck_ch, (float)(1.0 - (double)d->alpha), dgate);
        sigmoid_backward((size_t)n * d->bottleneck_ch, d->gate_b, dgate, dgate);
        linear_backward(&d->gate_fc2, n, d->gate_hidden_b, dgate, dhidden);
        relu_backward((size_t)n * UNET_GATE_HIDDEN, d->gate_hidden_b, dhidden, dhidden);
        linear_backward(&d->gate_fc1, n, d->code_b, dhidden, NULL);
    }
    if (d->mixed)
        scale_maps(bottleneck_n, d->alpha, p);
    if (!d->code) {
        if (dbottleneck)
            memcpy(dbottleneck, p, bottleneck_n * sizeof *p);
        return;
    }
    // q: (n, C) the gate's gradient, then (n, 256) the hidden layer's.
    gate_backward(n, d->bottleneck_ch, map4, d->bottleneck, d->gate, p, dbottleneck, q);
    sigmoid_backward((size_t)n * d->bottleneck_ch, d->gate, q, q);
    linear_backward(&d->gate_fc2, n, d->gate_hidden, q, p);
    relu_backward((size_t)n * UNET_GATE_HIDDEN, d->gate_hidden, p, p);
    linear_backward(&d->gate_fc1, n, d->code, p, NULL);
}
