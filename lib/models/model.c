#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "rng.h"
#include "util.h"

model_config model_config_default(void)
{
    return (model_config){
        .encoder = {.depth = 50, .width = 1, .stem = RESNET_STEM_LARGE, .in_ch = 3},
        .head_layers = 3,
        .head_hidden = 0,
        .proj_dim = 128,
        .classes = 0,
    };
}

bool model_depth_parse(const char *name, int *depth)
{
    static const int depths[] = {18, 34, 50, 101, 152};
    for (size_t i = 0; i < sizeof depths / sizeof *depths; i++) {
        char want[16];
        snprintf(want, sizeof want, "resnet%d", depths[i]);
        if (strcmp(name, want) == 0) {
            *depth = depths[i];
            return true;
        }
    }
    return false;
}

void model_describe(const model_config *c, char *buf, size_t len)
{
    char head[64] = "no head";
    if (c->head_layers)
        snprintf(head, sizeof head, "head %d layers -> %d", c->head_layers, c->proj_dim);
    snprintf(buf, len, "resnet%d x%g, %s stem, %d channel%s, %s, %d classes", c->encoder.depth,
             c->encoder.width, c->encoder.stem == RESNET_STEM_SMALL ? "small" : "large", c->encoder.in_ch,
             c->encoder.in_ch == 1 ? "" : "s", head, c->classes);
}

// PyTorch's nn.Linear initialisation: U(-1/sqrt(in), 1/sqrt(in)) for the
// weight (kaiming_uniform with a = sqrt 5) and the bias.
static void linear_init_uniform(linear *l, rng_t *r)
{
    float bound = 1.0f / sqrtf((float)l->in_features);
    for (size_t i = 0; i < (size_t)l->in_features * l->out_features; i++)
        l->weight[i] = (2 * rng_uniform(r) - 1) * bound;
    if (l->bias)
        for (int i = 0; i < l->out_features; i++)
            l->bias[i] = (2 * rng_uniform(r) - 1) * bound;
}

static void add_bn(model *m, batchnorm *bn)
{
    // The name is that of the BN's weight parameter, less ".weight".
    for (int i = 0; i < m->params.count; i++) {
        const param_t *p = &m->params.items[i];
        if (p->w == bn->weight) {
            m->bns = xrealloc(m->bns, (size_t)(m->nbn + 1) * sizeof *m->bns);
            snprintf(m->bns[m->nbn].prefix, PARAM_NAME_MAX, "%.*s", (int)(strlen(p->name) - 7), p->name);
            m->bns[m->nbn++].bn = bn;
            return;
        }
    }
    die("model", "a batch-norm layer without a registered weight");
}

double model_param_count(const model_config *cfg)
{
    resnet_config enc = cfg->encoder;
    double total = resnet_param_count(&enc);
    // The feature width is that of the last layer: round(512 w), x4 for bottlenecks.
    long f = lround(512 * enc.width);
    if (f < 1)
        f = 1;
    if (enc.depth >= 50)
        f *= 4;
    double hidden = cfg->head_hidden > 0 ? cfg->head_hidden : (double)f;
    for (int l = 0; l < cfg->head_layers; l++) {
        double in = l == 0 ? (double)f : hidden;
        double out = l == cfg->head_layers - 1 ? cfg->proj_dim : hidden;
        total += in * out + 2 * out;   // linear without bias, then BN
    }
    if (cfg->classes > 0)
        total += (double)f * cfg->classes + cfg->classes;
    return total;
}

void model_init(model *m, const model_config *cfg, uint64_t seed)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    if (cfg->head_layers != 0 && cfg->head_layers != 2 && cfg->head_layers != 3)
        die("model", "head layers must be 0, 2 or 3 (got %d)", cfg->head_layers);
    double count = model_param_count(cfg);
    if (count > MODEL_MAX_PARAMS)
        die("model", "%.0f parameters, over the limit of %.0f (a smaller --width or --depth?)", count,
            (double)MODEL_MAX_PARAMS);
    resnet_init(&m->enc, &cfg->encoder, seed);
    // The encoder registered its parameters in its own list; the model's
    // list starts with a copy of those entries (same memory).
    for (int i = 0; i < m->enc.params.count; i++) {
        const param_t *p = &m->enc.params.items[i];
        param_add(&m->params, p->w, p->g, p->rank, p->shape, p->no_decay, "%s", p->name);
    }
    int f = m->enc.feature_dim;
    rng_t r = rng_make(seed, 1, 0, 0);
    m->nhead = cfg->head_layers;
    int hidden = cfg->head_hidden > 0 ? cfg->head_hidden : f;
    for (int l = 0; l < m->nhead; l++) {
        head_layer *h = &m->head[l];
        int in = l == 0 ? f : hidden;
        h->width = l == m->nhead - 1 ? cfg->proj_dim : hidden;
        linear_init(&h->lin, in, h->width, false);
        linear_init_uniform(&h->lin, &r);
        batchnorm_init(&h->bn, h->width);
        char prefix[64];
        snprintf(prefix, sizeof prefix, "head.%d.linear", l);
        linear_register(&h->lin, &m->params, prefix);
        snprintf(prefix, sizeof prefix, "head.%d.bn", l);
        batchnorm_register(&h->bn, &m->params, prefix);
    }
    if (cfg->classes > 0) {
        m->has_fc = true;
        linear_init(&m->fc, f, cfg->classes, true);
        linear_init_uniform(&m->fc, &r);
        linear_register(&m->fc, &m->params, "fc");
    }
    add_bn(m, &m->enc.bn1);
    for (int b = 0; b < m->enc.nblocks; b++) {
        resnet_block *blk = &m->enc.blocks[b];
        for (int k = 0; k < blk->nconv; k++)
            add_bn(m, &blk->bn[k]);
        if (blk->has_downsample)
            add_bn(m, &blk->down_bn);
    }
    for (int l = 0; l < m->nhead; l++)
        add_bn(m, &m->head[l].bn);
}

void model_freeze_encoder(model *m)
{
    m->encoder_frozen = true;
    for (int i = 0; i < m->enc.params.count; i++)
        m->params.items[i].frozen = true;
}

static void free_buffers(model *m)
{
    free(m->features);
    free(m->logits);  // proj is the last head layer's bn_out
    free(m->dfeatures);
    free(m->dhead[0]);
    free(m->dhead[1]);
    for (int l = 0; l < m->nhead; l++) {
        free(m->head[l].lin_out);
        free(m->head[l].bn_out);
    }
}

void model_free(model *m)
{
    free_buffers(m);
    resnet_free(&m->enc);
    for (int l = 0; l < m->nhead; l++) {
        linear_free(&m->head[l].lin);
        batchnorm_free(&m->head[l].bn);
    }
    if (m->has_fc)
        linear_free(&m->fc);
    param_list_free(&m->params);
    free(m->bns);
    free(m->partials);
    memset(m, 0, sizeof *m);
}

void model_set_micro(model *m, int micro)
{
    m->micro = micro;
    m->enc.micro = micro;
    for (int i = 0; i < m->nbn; i++)
        m->bns[i].bn->micro = micro;
}

// Room for `parts` partials of n floats each, zeroed.
static float *zeroed_partials(model *m, int parts, size_t n)
{
    size_t need = mul_size((size_t)parts, n, "model partials");
    if (need > m->partials_floats) {
        free(m->partials);
        m->partials = xaligned_alloc(mul_size(need, sizeof(float), "model partials"));
        m->partials_floats = need;
    }
    memset(m->partials, 0, need * sizeof(float));
    return m->partials;
}

// linear_backward, or with m->micro one call per micro-batch (as resnet.c's
// convolutions): its weight and bias gradients go to partials of their own,
// added exactly over every rank into weight_grad and bias_grad.
static void linear_backward_micro(model *m, linear *l, int n, const float *x, const float *dy, float *dx)
{
    if (!m->micro) {
        linear_backward(l, n, x, dy, dx);
        return;
    }
    if (n % m->micro)
        die("model", "a batch of %d is not whole micro-batches of %d", n, m->micro);
    const int parts = n / m->micro, in = l->in_features, out = l->out_features;
    const size_t nw = (size_t)out * in, nb = l->bias ? (size_t)out : 0;
    // The weights' partials (parts, nw), then the bias's (parts, nb).
    float *partials = zeroed_partials(m, parts, nw + nb), *bias_partials = partials + (size_t)parts * nw;
    float *weight_grad = l->weight_grad, *bias_grad = l->bias_grad;
    for (int p = 0; p < parts; p++) {
        const size_t first = (size_t)p * m->micro;
        l->weight_grad = partials + (size_t)p * nw;
        l->bias_grad = l->bias ? bias_partials + (size_t)p * nb : NULL;
        linear_backward(l, m->micro, x + first * in, dy + first * out, dx ? dx + first * in : NULL);
    }
    l->weight_grad = weight_grad;
    l->bias_grad = bias_grad;
    dist_sum_f32_add(partials, parts, nw, weight_grad);
    if (l->bias)
        dist_sum_f32_add(bias_partials, parts, nb, bias_grad);
}

// Buffers sized for the largest batch seen.
static void reserve(model *m, int n)
{
    if (n <= m->cap_n)
        return;
    free_buffers(m);
    m->cap_n = n;
    size_t f = (size_t)m->enc.feature_dim, widest = f;
    for (int l = 0; l < m->nhead; l++) {
        size_t w = (size_t)m->head[l].width;
        m->head[l].lin_out = xaligned_alloc((size_t)n * w * sizeof(float));
        m->head[l].bn_out = xaligned_alloc((size_t)n * w * sizeof(float));
        widest = w > widest ? w : widest;
    }
    m->features = xaligned_alloc((size_t)n * f * sizeof(float));
    m->dfeatures = xaligned_alloc((size_t)n * f * sizeof(float));
    m->dhead[0] = xaligned_alloc((size_t)n * widest * sizeof(float));
    m->dhead[1] = xaligned_alloc((size_t)n * widest * sizeof(float));
    m->proj = m->nhead ? m->head[m->nhead - 1].bn_out : NULL;
    m->logits = m->has_fc ? xaligned_alloc((size_t)n * m->cfg.classes * sizeof(float)) : NULL;
}

void model_forward(model *m, bool training, int n, int h, int w, const float *x)
{
    reserve(m, n);
    m->n = n;
    resnet_forward(&m->enc, training && !m->encoder_frozen, n, h, w, x, m->features);
    const float *in = m->features;
    for (int l = 0; l < m->nhead; l++) {
        head_layer *hl = &m->head[l];
        bool relu = l < m->nhead - 1;
        linear_forward(&hl->lin, n, in, hl->lin_out);
        batchnorm_forward(&hl->bn, training, n, 1, hl->lin_out, NULL, relu, hl->bn_out);
        in = hl->bn_out;
    }
    m->proj = m->nhead ? m->head[m->nhead - 1].bn_out : NULL;
    if (m->has_fc)
        linear_forward(&m->fc, n, m->features, m->logits);
}

void model_backward(model *m, const float *dproj, const float *dlogits)
{
    model_backward_stages(m, dproj, dlogits, NULL);
}

void model_backward_stages(model *m, const float *dproj, const float *dlogits, const float *const dstages[5])
{
    int n = m->n;
    size_t nf = (size_t)n * m->enc.feature_dim;
    memset(m->dfeatures, 0, nf * sizeof(float));
    if (dproj && m->nhead) {
        // The gradient flows down the head, ping-ponging between two
        // buffers; batchnorm_backward turns dy into the gradient at its input.
        head_layer *last = &m->head[m->nhead - 1];
        float *dy = m->dhead[0], *dx = m->dhead[1];
        memcpy(dy, dproj, (size_t)n * last->width * sizeof(float));
        for (int l = m->nhead - 1; l >= 0; l--) {
            head_layer *hl = &m->head[l];
            bool relu = l < m->nhead - 1;
            batchnorm_backward(&hl->bn, true, n, 1, hl->lin_out, relu ? hl->bn_out : NULL, relu, dy, dy);
            const float *in = l == 0 ? m->features : m->head[l - 1].bn_out;
            linear_backward_micro(m, &hl->lin, n, in, dy, dx);
            float *t = dy;
            dy = dx;
            dx = t;
        }
        for (size_t i = 0; i < nf; i++)
            m->dfeatures[i] += dy[i];
    }
    if (dlogits && m->has_fc) {
        float *dx = m->dhead[0];
        linear_backward_micro(m, &m->fc, n, m->features, dlogits, m->encoder_frozen ? NULL : dx);
        if (!m->encoder_frozen)
            for (size_t i = 0; i < nf; i++)
                m->dfeatures[i] += dx[i];
    }
    bool stages = false;
    for (int s = 0; dstages && s < 5; s++)
        stages |= dstages[s] != NULL;
    if (!m->encoder_frozen && (dproj || dlogits || stages))
        resnet_backward_stages(&m->enc, m->dfeatures, stages ? dstages : NULL);
}
