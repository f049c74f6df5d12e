#include "resnet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act.h"
#include "dist.h"
#include "pool.h"
#include "rng.h"
#include "util.h"

static int scaled_width(int base, double width)
{
    long c = lround(base * width);
    return c < 1 ? 1 : (int)c;
}

// torchvision's _make_layer for one block: `planes` is the layer's width,
// `out` the block's output channels (planes, or 4 planes for a bottleneck).
static void block_init(resnet_block *b, bool bottleneck, int in, int planes, int out,
                       int stride, param_list *params, int layer, int index)
{
    memset(b, 0, sizeof *b);
    if (bottleneck) {
        b->nconv = 3;
        conv2d_init(&b->conv[0], in, planes, 1, 1, 0);
        conv2d_init(&b->conv[1], planes, planes, 3, stride, 1);
        conv2d_init(&b->conv[2], planes, out, 1, 1, 0);
    } else {
        b->nconv = 2;
        conv2d_init(&b->conv[0], in, planes, 3, stride, 1);
        conv2d_init(&b->conv[1], planes, out, 3, 1, 1);
    }
    char name[64];
    for (int i = 0; i < b->nconv; i++) {
        batchnorm_init(&b->bn[i], b->conv[i].out_ch);
        snprintf(name, sizeof name, "layer%d.%d.conv%d", layer, index, i + 1);
        conv2d_register(&b->conv[i], params, name);
        snprintf(name, sizeof name, "layer%d.%d.bn%d", layer, index, i + 1);
        batchnorm_register(&b->bn[i], params, name);
    }
    b->has_downsample = stride != 1 || in != out;
    if (b->has_downsample) {
        conv2d_init(&b->down_conv, in, out, 1, stride, 0);
        batchnorm_init(&b->down_bn, out);
        snprintf(name, sizeof name, "layer%d.%d.downsample.0", layer, index);
        conv2d_register(&b->down_conv, params, name);
        snprintf(name, sizeof name, "layer%d.%d.downsample.1", layer, index);
        batchnorm_register(&b->down_bn, params, name);
    }
}

static void block_free(resnet_block *b)
{
    for (int i = 0; i < b->nconv; i++) {
        conv2d_free(&b->conv[i]);
        batchnorm_free(&b->bn[i]);
    }
    if (b->has_downsample) {
        conv2d_free(&b->down_conv);
        batchnorm_free(&b->down_bn);
    }
}

// Blocks per layer for each depth, and a config's checks: shared by
// resnet_init and resnet_param_count so that they cannot disagree.
static const int *checked_layer_counts(const resnet_config *cfg)
{
    static const int counts18[4] = {2, 2, 2, 2}, counts34[4] = {3, 4, 6, 3};
    static const int counts101[4] = {3, 4, 23, 3}, counts152[4] = {3, 8, 36, 3};
    const int *counts;
    switch (cfg->depth) {
    case 18: counts = counts18; break;
    case 34:
    case 50: counts = counts34; break;
    case 101: counts = counts101; break;
    case 152: counts = counts152; break;
    default: die("resnet", "depth %d: expected 18, 34, 50, 101 or 152", cfg->depth);
    }
    if (!(cfg->width > 0 && cfg->width <= 16))
        die("resnet", "width multiplier %g: expected a value in (0, 16]", cfg->width);
    if (cfg->in_ch < 1 || cfg->in_ch > 64)
        die("resnet", "input channels %d: expected 1 to 64", cfg->in_ch);
    return counts;
}

// A conv without bias and its BN (weight and bias).
static double conv_bn_params(int in, int out, int k)
{
    return (double)in * out * k * k + 2.0 * out;
}

double resnet_param_count(const resnet_config *cfg)
{
    const int *counts = checked_layer_counts(cfg);
    bool bottleneck = cfg->depth >= 50;
    int in = scaled_width(64, cfg->width);
    double total = conv_bn_params(cfg->in_ch, in, cfg->stem == RESNET_STEM_LARGE ? 7 : 3);
    for (int layer = 0; layer < 4; layer++) {
        int planes = scaled_width(64 << layer, cfg->width);
        int out = bottleneck ? 4 * planes : planes;
        for (int i = 0; i < counts[layer]; i++) {
            if (bottleneck)
                total += conv_bn_params(in, planes, 1) + conv_bn_params(planes, planes, 3) +
                         conv_bn_params(planes, out, 1);
            else
                total += conv_bn_params(in, planes, 3) + conv_bn_params(planes, out, 3);
            if ((layer > 0 && i == 0) || in != out)
                total += conv_bn_params(in, out, 1);
            in = out;
        }
    }
    return total;
}

void resnet_init(resnet *m, const resnet_config *cfg, uint64_t seed)
{
    const int *counts = checked_layer_counts(cfg);
    bool bottleneck = cfg->depth >= 50;

    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    int stem_ch = scaled_width(64, cfg->width);
    if (cfg->stem == RESNET_STEM_LARGE)
        conv2d_init(&m->conv1, cfg->in_ch, stem_ch, 7, 2, 3);
    else
        conv2d_init(&m->conv1, cfg->in_ch, stem_ch, 3, 1, 1);
    batchnorm_init(&m->bn1, stem_ch);
    conv2d_register(&m->conv1, &m->params, "conv1");
    batchnorm_register(&m->bn1, &m->params, "bn1");

    m->nblocks = counts[0] + counts[1] + counts[2] + counts[3];
    m->blocks = xcalloc((size_t)m->nblocks, sizeof *m->blocks);
    int in = stem_ch, k = 0;
    for (int layer = 0; layer < 4; layer++) {
        int planes = scaled_width(64 << layer, cfg->width);
        int out = bottleneck ? 4 * planes : planes;
        for (int i = 0; i < counts[layer]; i++, k++) {
            int stride = layer > 0 && i == 0 ? 2 : 1;
            block_init(&m->blocks[k], bottleneck, in, planes, out, stride, &m->params,
                       layer + 1, i);
            in = out;
        }
        m->stage_last_block[layer] = k - 1;
    }
    m->feature_dim = in;

    // torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu") for
    // every conv; BN weights 1 and biases 0 are batchnorm_init's values.
    // Each output channel of each conv draws from its own stream (seed,
    // parameter index, channel): a weight depends neither on the sizes of
    // the layers before it nor on the thread count, and a 4x ResNet-50's
    // 375M weights are drawn in parallel.
    for (int i = 0; i < m->params.count; i++) {
        param_t *p = &m->params.items[i];
        if (p->rank != 4)
            continue;
        double std = sqrt(2.0 / (double)(p->shape[0] * p->shape[2] * p->shape[3]));
        size_t per_channel = p->n / (size_t)p->shape[0];
#pragma omp parallel for schedule(static)
        for (int64_t oc = 0; oc < p->shape[0]; oc++) {
            rng_t r = rng_make(seed, (uint64_t)i, (uint64_t)oc, 0);
            float *w = p->w + (size_t)oc * per_channel;
            for (size_t j = 0; j < per_channel; j++)
                w[j] = (float)(std * rng_normal(&r));
        }
    }
}

void resnet_free(resnet *m)
{
    conv2d_free(&m->conv1);
    batchnorm_free(&m->bn1);
    for (int i = 0; i < m->nblocks; i++)
        block_free(&m->blocks[i]);
    free(m->blocks);
    param_list_free(&m->params);
    free(m->arena);
    free(m->partials);
    for (int i = 0; i < 3; i++)
        free(m->grad[i]);
    memset(m, 0, sizeof *m);
}

// Reserves `floats` in the arena (rounded up to 64 bytes, so every tensor
// stays aligned for SIMD and BLIS) and returns where, or NULL when only
// counting.  *largest tracks the largest tensor.
static float *place(float *arena, size_t *used, size_t floats, size_t *largest)
{
    float *p = arena ? arena + *used : NULL;
    *used = add_size(*used, (floats + 15) & ~(size_t)15, "resnet activations");
    if (floats > *largest)
        *largest = floats;
    return p;
}

static size_t tensor_floats(int n, int c, int h, int w)
{
    return mul_size(mul_size((size_t)n, (size_t)c * h, "resnet activations"), (size_t)w,
                    "resnet activations");
}

// Walks a forward at (n, h, w): the size of every activation and, when
// `store`, the shapes and arena places recorded in m.  Without `store`, m is
// only read.  Returns the arena floats needed; *largest gets the largest
// activation (the size of each of backward's gradient buffers).
static size_t layout(resnet *m, bool store, int n, int h, int w, float *arena,
                     size_t *largest)
{
    size_t used = 0;
    *largest = 0;
    const int stem_ch = m->conv1.out_ch;
    int sh = conv2d_out_size(&m->conv1, h), sw = conv2d_out_size(&m->conv1, w);
    if (n < 1 || sh < 1 || sw < 1)
        die("resnet", "input (%d, %d, %d, %d) too small", n, m->cfg.in_ch, h, w);
    float *stem_conv = place(arena, &used, tensor_floats(n, stem_ch, sh, sw), largest);
    float *stem_act = place(arena, &used, tensor_floats(n, stem_ch, sh, sw), largest);
    int cur_h = sh, cur_w = sw;
    float *stem_pool = NULL;
    if (m->cfg.stem == RESNET_STEM_LARGE) {
        cur_h = maxpool2d_out_size(sh, 3, 2, 1);
        cur_w = maxpool2d_out_size(sw, 3, 2, 1);
        stem_pool = place(arena, &used, tensor_floats(n, stem_ch, cur_h, cur_w), largest);
    }
    if (store) {
        m->stem_h = sh, m->stem_w = sw, m->pool_h = cur_h, m->pool_w = cur_w;
        m->stem_conv = stem_conv, m->stem_act = stem_act, m->stem_pool = stem_pool;
    }
    for (int k = 0; k < m->nblocks; k++) {
        resnet_block *b = &m->blocks[k];
        if (store)
            b->in_h = cur_h, b->in_w = cur_w;
        int ih = cur_h, iw = cur_w;
        for (int i = 0; i < b->nconv; i++) {
            int oh = conv2d_out_size(&b->conv[i], ih), ow = conv2d_out_size(&b->conv[i], iw);
            size_t floats = tensor_floats(n, b->conv[i].out_ch, oh, ow);
            float *c = place(arena, &used, floats, largest);
            float *a = place(arena, &used, floats, largest);
            if (store) {
                b->conv_h[i] = oh, b->conv_w[i] = ow;
                b->conv_out[i] = c, b->bn_out[i] = a;
            }
            ih = oh, iw = ow;
        }
        if (b->has_downsample) {
            size_t floats = tensor_floats(n, b->down_conv.out_ch, ih, iw);
            float *c = place(arena, &used, floats, largest);
            float *a = place(arena, &used, floats, largest);
            if (store)
                b->down_out = c, b->down_bn_out = a;
        }
        if (store)
            b->out_h = ih, b->out_w = iw;
        cur_h = ih, cur_w = iw;
    }
    return used;
}

size_t resnet_memory_bytes(const resnet *m, int n, int h, int w)
{
    size_t largest;
    // layout() without `store` does not write to the model.
    size_t floats = layout((resnet *)m, false, n, h, w, NULL, &largest);
    return mul_size(add_size(floats, mul_size(3, largest, "resnet"), "resnet"), sizeof(float),
                    "resnet");
}

static void block_forward(resnet_block *b, bool training, int n, const float *x)
{
    const int last = b->nconv - 1;
    const float *in = x;
    int ih = b->in_h, iw = b->in_w;
    for (int i = 0; i < b->nconv; i++) {
        conv2d_forward(&b->conv[i], n, ih, iw, in, b->conv_out[i]);
        ih = b->conv_h[i], iw = b->conv_w[i];
        if (i < last) {
            batchnorm_forward(&b->bn[i], training, n, ih * iw, b->conv_out[i], NULL, true,
                              b->bn_out[i]);
            in = b->bn_out[i];
        }
    }
    const float *shortcut = x;
    if (b->has_downsample) {
        conv2d_forward(&b->down_conv, n, b->in_h, b->in_w, x, b->down_out);
        batchnorm_forward(&b->down_bn, training, n, ih * iw, b->down_out, NULL, false,
                          b->down_bn_out);
        shortcut = b->down_bn_out;
    }
    batchnorm_forward(&b->bn[last], training, n, ih * iw, b->conv_out[last], shortcut, true,
                      b->bn_out[last]);
}

void resnet_forward(resnet *m, bool training, int n, int h, int w, const float *x,
                    float *features)
{
    size_t largest, need = layout(m, false, n, h, w, NULL, &largest);
    if (need > m->arena_floats) {
        free(m->arena);
        m->arena = xaligned_alloc(mul_size(need, sizeof(float), "resnet activations"));
        m->arena_floats = need;
    }
    layout(m, true, n, h, w, m->arena, &largest);
    m->training = training;
    m->n = n, m->h = h, m->w = w;
    m->input = x;

    const int stem_ch = m->conv1.out_ch;
    conv2d_forward(&m->conv1, n, h, w, x, m->stem_conv);
    batchnorm_forward(&m->bn1, training, n, m->stem_h * m->stem_w, m->stem_conv, NULL, true,
                      m->stem_act);
    const float *cur = m->stem_act;
    if (m->cfg.stem == RESNET_STEM_LARGE) {
        maxpool2d_forward(n, stem_ch, m->stem_h, m->stem_w, 3, 2, 1, m->stem_act, m->stem_pool);
        cur = m->stem_pool;
    }
    for (int k = 0; k < m->nblocks; k++) {
        resnet_block *b = &m->blocks[k];
        block_forward(b, training, n, cur);
        cur = b->bn_out[b->nconv - 1];
    }
    const resnet_block *last = &m->blocks[m->nblocks - 1];
    avgpool_global_forward(n, m->feature_dim, last->out_h * last->out_w, cur, features);
}

// conv2d_backward, or with m->micro one call per micro-batch, each adding
// its weight gradient into a partial of its own (conv2d_backward adds into
// weight_grad, pointed at the partial meanwhile); the partials of every
// rank are then added exactly into weight_grad.  dx is per image either way.
static void conv_backward(resnet *m, conv2d *c, int n, int h, int w, const float *x, const float *dy, float *dx,
                          bool accumulate_dx)
{
    if (!m->micro) {
        conv2d_backward(c, n, h, w, x, dy, dx, accumulate_dx);
        return;
    }
    if (n % m->micro)
        die("resnet", "a batch of %d is not whole micro-batches of %d", n, m->micro);
    const int parts = n / m->micro;
    const size_t nw = (size_t)c->out_ch * c->in_ch * c->kernel * c->kernel;
    const size_t need = mul_size((size_t)parts, nw, "resnet partials");
    if (need > m->partials_floats) {
        free(m->partials);
        m->partials = xaligned_alloc(mul_size(need, sizeof(float), "resnet partials"));
        m->partials_floats = need;
    }
    const size_t in_img = (size_t)c->in_ch * h * w,
                 out_img = (size_t)c->out_ch * conv2d_out_size(c, h) * conv2d_out_size(c, w);
    float *weight_grad = c->weight_grad;
    memset(m->partials, 0, need * sizeof(float));
    for (int p = 0; p < parts; p++) {
        const size_t first = (size_t)p * m->micro;
        c->weight_grad = m->partials + (size_t)p * nw;
        conv2d_backward(c, m->micro, h, w, x + first * in_img, dy + first * out_img,
                        dx ? dx + first * in_img : NULL, accumulate_dx);
    }
    c->weight_grad = weight_grad;
    dist_sum_f32_add(m->partials, parts, nw, weight_grad);
}

// g_io holds the gradient at the block's output on entry and at its input on
// return; g1 and g2 are scratch.
static void block_backward(resnet *m, resnet_block *b, bool training, int n, const float *x,
                           float *g_io, float *g1, float *g2)
{
    const int last = b->nconv - 1;
    const int out_hw = b->out_h * b->out_w;
    // The fused ReLU masks g_io in place: from here on it is also the
    // shortcut's gradient.
    batchnorm_backward(&b->bn[last], training, n, out_hw, b->conv_out[last], b->bn_out[last],
                       true, g_io, g1);
    for (int i = last; i > 0; i--) {
        // g1: the gradient at conv_out[i].
        conv_backward(m, &b->conv[i], n, b->conv_h[i - 1], b->conv_w[i - 1], b->bn_out[i - 1],
                      g1, g2, false);
        batchnorm_backward(&b->bn[i - 1], training, n, b->conv_h[i - 1] * b->conv_w[i - 1],
                           b->conv_out[i - 1], b->bn_out[i - 1], true, g2, g1);
    }
    if (b->has_downsample) {
        batchnorm_backward(&b->down_bn, training, n, out_hw, b->down_out, NULL, false, g_io,
                           g2);
        conv_backward(m, &b->down_conv, n, b->in_h, b->in_w, x, g2, g_io, false);
    }
    // The identity shortcut's gradient is already in g_io: add the main
    // branch's.
    conv_backward(m, &b->conv[0], n, b->in_h, b->in_w, x, g1, g_io, true);
}

void resnet_stage_shape(const resnet_config *cfg, int stage, int h, int w, int *c, int *oh, int *ow)
{
    checked_layer_counts(cfg);
    bool bottleneck = cfg->depth >= 50;
    if (stage < 0 || stage > 4)
        die("resnet", "stage %d: expected 0 to 4", stage);
    // Every downsampling conv (7x7 s2 p3, 3x3 s2 p1, 1x1 s2) and the max
    // pool (3x3 s2 p1) give ceil(size / 2).
    int halvings = cfg->stem == RESNET_STEM_LARGE ? (stage == 0 ? 1 : stage + 1) : (stage <= 1 ? 0 : stage - 1);
    for (int i = 0; i < halvings; i++)
        h = (h + 1) / 2, w = (w + 1) / 2;
    *oh = h, *ow = w;
    int planes = stage == 0 ? 0 : scaled_width(64 << (stage - 1), cfg->width);
    *c = stage == 0 ? scaled_width(64, cfg->width) : bottleneck ? 4 * planes : planes;
}

const float *resnet_stage_output(const resnet *m, int stage)
{
    if (stage == 0)
        return m->stem_act;
    const resnet_block *b = &m->blocks[m->stage_last_block[stage - 1]];
    return b->bn_out[b->nconv - 1];
}

// g += d over the stage's map, when there is a d.
static void add_stage_grad(const resnet *m, int stage, const float *const dstages[5], float *g)
{
    if (!dstages || !dstages[stage])
        return;
    int c, h, w;
    resnet_stage_shape(&m->cfg, stage, m->h, m->w, &c, &h, &w);
    add_forward((size_t)m->n * c * h * w, g, dstages[stage], g);
}

void resnet_backward(resnet *m, const float *dfeatures) { resnet_backward_stages(m, dfeatures, NULL); }

void resnet_backward_stages(resnet *m, const float *dfeatures, const float *const dstages[5])
{
    const int n = m->n;
    size_t largest;
    layout(m, false, n, m->h, m->w, NULL, &largest);
    if (largest > m->grad_floats) {
        for (int i = 0; i < 3; i++) {
            free(m->grad[i]);
            m->grad[i] = xaligned_alloc(mul_size(largest, sizeof(float), "resnet gradients"));
        }
        m->grad_floats = largest;
    }
    float *g0 = m->grad[0], *g1 = m->grad[1], *g2 = m->grad[2];

    const resnet_block *last = &m->blocks[m->nblocks - 1];
    if (dfeatures)
        avgpool_global_backward(n, m->feature_dim, last->out_h * last->out_w, dfeatures, g0);
    else
        memset(g0, 0, (size_t)n * m->feature_dim * last->out_h * last->out_w * sizeof *g0);
    for (int k = m->nblocks - 1; k >= 0; k--) {
        for (int s = 1; s <= 4; s++)
            if (m->stage_last_block[s - 1] == k)
                add_stage_grad(m, s, dstages, g0);
        const float *x = k > 0 ? m->blocks[k - 1].bn_out[m->blocks[k - 1].nconv - 1]
                         : m->cfg.stem == RESNET_STEM_LARGE ? m->stem_pool
                                                            : m->stem_act;
        block_backward(m, &m->blocks[k], m->training, n, x, g0, g1, g2);
    }
    // g0: the gradient at the stem's output.
    float *g_act = g0, *g_conv = g1;
    if (m->cfg.stem == RESNET_STEM_LARGE) {
        maxpool2d_backward(n, m->conv1.out_ch, m->stem_h, m->stem_w, 3, 2, 1, m->stem_act, g0,
                           g1);
        g_act = g1, g_conv = g2;
    }
    add_stage_grad(m, 0, dstages, g_act);
    batchnorm_backward(&m->bn1, m->training, n, m->stem_h * m->stem_w, m->stem_conv,
                       m->stem_act, true, g_act, g_conv);
    conv_backward(m, &m->conv1, n, m->h, m->w, m->input, g_conv, NULL, false);
}
