#include "pcrl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loss.h"
#include "util.h"

// rng stream ids of pcrl's draws (seeded by the run's seed).
enum { STREAM_DECODER = 0x50435231, STREAM_QUEUE = 0x50435232, STREAM_ALPHA = 0x50435233 };

pcrl_config pcrl_defaults(void)
{
    return (pcrl_config){.contrast = PCRL_MOCO, .tau = 0.2, .queue = 16384, .ema = 0.999, .recon_weight = 1};
}

bool pcrl_contrast_parse(const char *name, pcrl_contrast *out)
{
    if (strcmp(name, "moco") == 0)
        *out = PCRL_MOCO;
    else if (strcmp(name, "ntxent") == 0)
        *out = PCRL_NTXENT;
    else
        return false;
    return true;
}

// Unit rows: (rows, dim) divided by their norms, in double.
static void normalise(float *v, int rows, int dim)
{
    for (int i = 0; i < rows; i++) {
        float *r = v + (size_t)i * dim;
        double s = 0;
        for (int k = 0; k < dim; k++)
            s += (double)r[k] * r[k];
        double inv = s > 0 ? 1 / sqrt(s) : 0;
        for (int k = 0; k < dim; k++)
            r[k] = (float)(r[k] * inv);
    }
}

void pcrl_init(pcrl *p, const model_config *cfg, const pcrl_config *pc, uint64_t seed)
{
    memset(p, 0, sizeof *p);
    p->cfg = *pc;
    model_init(&p->student, cfg, seed);
    model_init(&p->teacher, cfg, seed);
    unet_init(&p->decoder, &cfg->encoder, cfg->encoder.in_ch, seed ^ STREAM_DECODER);
    param_list_append(&p->params, &p->student.params);
    param_list_append(&p->params, &p->decoder.params);
    if (pc->contrast == PCRL_MOCO) {
        // MoCo's queue: normal rows, normalised.
        int dim = cfg->proj_dim;
        p->queue = xaligned_alloc(mul_size((size_t)pc->queue * dim, sizeof(float), "key queue"));
        rng_t r = rng_make(seed, STREAM_QUEUE, 0, 0);
        for (size_t i = 0; i < (size_t)pc->queue * dim; i++)
            p->queue[i] = rng_normal(&r);
        normalise(p->queue, pc->queue, dim);
    }
    p->alpha_rng = rng_make(seed, STREAM_ALPHA, 0, 0);
}

void pcrl_sync_teacher(pcrl *p)
{
    param_ema_update(&p->teacher.params, &p->student.params, 0);
    for (int i = 0; i < p->student.nbn; i++) {
        const batchnorm *s = p->student.bns[i].bn;
        batchnorm *t = p->teacher.bns[i].bn;
        memcpy(t->running_mean, s->running_mean, (size_t)s->channels * sizeof(float));
        memcpy(t->running_var, s->running_var, (size_t)s->channels * sizeof(float));
        t->num_batches_tracked = s->num_batches_tracked;
    }
}

static void free_scratch(pcrl *p)
{
    free(p->xa);
    free(p->xb);
    free(p->tb);
    free(p->ta);
    free(p->tmix);
    free(p->dout);
    free(p->dproj);
    free(p->keys);
    free(p->codes_a);
    free(p->codes_b);
    for (int s = 0; s < 5; s++) {
        free(p->dstage[s]);
        free(p->a_maps[s]);
        free(p->da_maps[s]);
    }
    p->xa = p->xb = p->tb = p->ta = p->tmix = p->dout = p->dproj = p->keys = p->codes_a = p->codes_b = NULL;
    memset(p->dstage, 0, sizeof p->dstage);
    memset(p->a_maps, 0, sizeof p->a_maps);
    memset(p->da_maps, 0, sizeof p->da_maps);
}

void pcrl_free(pcrl *p)
{
    free_scratch(p);
    model_free(&p->student);
    model_free(&p->teacher);
    unet_free(&p->decoder);
    param_list_free(&p->params);
    free(p->queue);
    memset(p, 0, sizeof *p);
}

// The student's batch: n views (moco: a) or 2n (ntxent: a and b).
static int student_rows(const pcrl *p, int n) { return p->cfg.contrast == PCRL_MOCO ? n : 2 * n; }

static float *alloc_floats(size_t count) { return xaligned_alloc(mul_size(count, sizeof(float), "pcrl buffers")); }

static void reserve(pcrl *p, int n, int h, int w)
{
    if (n == p->n && h == p->h && w == p->w)
        return;
    free_scratch(p);
    p->n = n, p->h = h, p->w = w;
    const model_config *cfg = &p->student.cfg;
    size_t plane = (size_t)cfg->encoder.in_ch * h * w, ns = (size_t)student_rows(p, n);
    p->xa = alloc_floats(n * plane);
    p->xb = alloc_floats(n * plane);
    p->tb = alloc_floats(n * plane);
    p->ta = alloc_floats(n * plane);
    p->tmix = alloc_floats(n * plane);
    p->dout = alloc_floats(ns * plane);
    p->dproj = alloc_floats(ns * cfg->proj_dim);
    p->keys = alloc_floats((size_t)n * cfg->proj_dim);
    p->codes_a = alloc_floats((size_t)n * 6);
    p->codes_b = alloc_floats((size_t)n * 6);
    for (int s = 0; s < 5; s++) {
        int c, sh, sw;
        resnet_stage_shape(&cfg->encoder, s, h, w, &c, &sh, &sw);
        p->stage_floats[s] = (size_t)c * sh * sw;
        p->dstage[s] = alloc_floats(ns * p->stage_floats[s]);
        p->da_maps[s] = alloc_floats((size_t)n * p->stage_floats[s]);
        // ntxent: the student's rows of view a, gathered for the hybrid.
        if (p->cfg.contrast == PCRL_NTXENT)
            p->a_maps[s] = alloc_floats((size_t)n * p->stage_floats[s]);
    }
}

// dst (rows, len) = rows every `stride`-th of src, from row 0.
static void gather_rows(float *dst, const float *src, int rows, int stride, size_t len)
{
    for (int k = 0; k < rows; k++)
        memcpy(dst + (size_t)k * len, src + (size_t)k * stride * len, len * sizeof(float));
}

static void scale(float *v, size_t count, float s)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < (long)count; i++)
        v[i] *= s;
}

// One reconstruction's loss and, scaled by `weight`, its gradient in p->dout.
static float recon_loss(pcrl *p, size_t count, const float *target, float weight)
{
    float loss = mse_loss(p->decoder.output, target, count, p->dout);
    scale(p->dout, count, weight);
    return loss;
}

void pcrl_step(pcrl *p, int n, int h, int w, const float *x, const float *targets, const float *codes,
               pcrl_losses *out)
{
    reserve(p, n, h, w);
    memset(out, 0, sizeof *out);
    const model_config *cfg = &p->student.cfg;
    const int dim = cfg->proj_dim, ns = student_rows(p, n);
    const size_t plane = (size_t)cfg->encoder.in_ch * h * w;
    const bool moco = p->cfg.contrast == PCRL_MOCO;
    // The views apart: a (rows 2k) and b (rows 2k + 1), their targets and codes.
    float *xa = p->xa;
    gather_rows(xa, x, n, 2, plane);
    gather_rows(p->xb, x + plane, n, 2, plane);
    gather_rows(p->ta, targets, n, 2, plane);
    gather_rows(p->tb, targets + plane, n, 2, plane);
    float *codes_a = p->codes_a, *codes_b = p->codes_b;
    gather_rows(codes_a, codes, n, 2, 6);
    gather_rows(codes_b, codes + 6, n, 2, 6);

    param_zero_grad(&p->params);
    model_forward(&p->student, true, ns, h, w, moco ? xa : x);
    model_forward(&p->teacher, true, n, h, w, p->xb);

    // The contrast.
    if (moco) {
        out->contrast = infonce_queue(p->student.proj, p->teacher.proj, n, dim, p->queue, p->cfg.queue,
                                      (float)p->cfg.tau, p->dproj, &out->correct);
        out->anchors = n;
    } else {
        out->contrast = ntxent_loss(p->student.proj, ns, dim, 0, ns, (float)p->cfg.tau, p->dproj, &out->correct);
        out->anchors = ns;
    }

    // The three reconstructions, each weighted w / 3.
    const float weight = (float)(p->cfg.recon_weight / 3);
    unet_decoder *d = &p->decoder;
    const float *s_maps[5], *t_maps[5];
    for (int s = 0; s < 5; s++) {
        s_maps[s] = resnet_stage_output(&p->student.enc, s);
        t_maps[s] = resnet_stage_output(&p->teacher.enc, s);
    }
    // 1: ordinary, the student's views against their own targets.
    unet_forward(d, true, ns, h, w, s_maps[4], (const float *const[4]){s_maps[3], s_maps[2], s_maps[1], s_maps[0]},
                 moco ? codes_a : codes);
    out->recon[0] = recon_loss(p, (size_t)ns * plane, moco ? p->ta : targets, weight);
    unet_backward(d, p->dout, p->dstage[4], (float *const[4]){p->dstage[3], p->dstage[2], p->dstage[1], p->dstage[0]});
    // 2: the teacher's maps of b against b's target; only the decoder learns.
    unet_forward(d, true, n, h, w, t_maps[4], (const float *const[4]){t_maps[3], t_maps[2], t_maps[1], t_maps[0]},
                 codes_b);
    out->recon[1] = recon_loss(p, (size_t)n * plane, p->tb, weight);
    unet_backward(d, p->dout, NULL, NULL);
    // 3: hybrid, alpha (student's a) + (1 - alpha) (teacher's b).
    float u = rng_uniform(&p->alpha_rng), alpha = u > 1 - u ? u : 1 - u;
    out->alpha = alpha;
    const float *a_maps[5];
    for (int s = 0; s < 5; s++) {
        if (!moco)
            gather_rows(p->a_maps[s], s_maps[s], n, 2, p->stage_floats[s]);
        a_maps[s] = moco ? s_maps[s] : p->a_maps[s];
    }
    unet_input mix_a = {a_maps[4], {a_maps[3], a_maps[2], a_maps[1], a_maps[0]}, codes_a};
    unet_input mix_b = {t_maps[4], {t_maps[3], t_maps[2], t_maps[1], t_maps[0]}, codes_b};
    unet_forward_mix(d, true, n, h, w, &mix_a, &mix_b, alpha);
    const float fa = alpha, fb = (float)(1.0 - (double)alpha);
    for (size_t i = 0; i < (size_t)n * plane; i++)
        p->tmix[i] = fa * p->ta[i] + fb * p->tb[i];
    out->recon[2] = recon_loss(p, (size_t)n * plane, p->tmix, weight);
    unet_backward(d, p->dout, p->da_maps[4],
                  (float *const[4]){p->da_maps[3], p->da_maps[2], p->da_maps[1], p->da_maps[0]});
    // The hybrid's gradient joins the ordinary one at the student's rows of a.
    const int stride = moco ? 1 : 2;
    for (int s = 0; s < 5; s++) {
        size_t len = p->stage_floats[s];
        for (int k = 0; k < n; k++) {
            float *dst = p->dstage[s] + (size_t)k * stride * len;
            const float *src = p->da_maps[s] + (size_t)k * len;
            for (size_t i = 0; i < len; i++)
                dst[i] += src[i];
        }
    }
    model_backward_stages(&p->student, p->dproj, NULL, (const float *const[5]){p->dstage[0], p->dstage[1],
                                                                               p->dstage[2], p->dstage[3],
                                                                               p->dstage[4]});
    out->loss = out->contrast + weight * (out->recon[0] + out->recon[1] + out->recon[2]);

    // The keys enter the queue after the loss used it (MoCo's order).
    if (moco) {
        memcpy(p->keys, p->teacher.proj, (size_t)n * dim * sizeof(float));
        normalise(p->keys, n, dim);
        for (int k = 0; k < n; k++) {
            memcpy(p->queue + (size_t)p->queue_pos * dim, p->keys + (size_t)k * dim, (size_t)dim * sizeof(float));
            p->queue_pos = (p->queue_pos + 1) % p->cfg.queue;
        }
    }
}

void pcrl_update_teacher(pcrl *p) { param_ema_update(&p->teacher.params, &p->student.params, p->cfg.ema); }

void pcrl_decoder_tensors(unet_decoder *d, ckpt_extra *x)
{
    ckpt_extra_params(x, &d->params, "");
    for (int i = 0; i < d->nbn; i++)
        ckpt_extra_bn(x, d->bns[i], d->bn_names[i]);
}

void pcrl_checkpoint_tensors(pcrl *p, ckpt_extra *x)
{
    pcrl_decoder_tensors(&p->decoder, x);
    ckpt_extra_model(x, &p->teacher, "momentum.");
    if (p->queue) {
        int64_t shape[2] = {p->cfg.queue, p->student.cfg.proj_dim};
        ckpt_extra_add(x, "queue.keys", MTS_F32, 2, shape, p->queue);
        ckpt_extra_add(x, "queue.position", MTS_I64, 0, shape, &p->queue_pos);
    }
}

void pcrl_reconstruct(model *student, unet_decoder *d, int n, int h, int w, const float *x, const float *codes)
{
    model_forward(student, false, n, h, w, x);
    const resnet *enc = &student->enc;
    unet_forward(d, false, n, h, w, resnet_stage_output(enc, 4),
                 (const float *const[4]){resnet_stage_output(enc, 3), resnet_stage_output(enc, 2),
                                         resnet_stage_output(enc, 1), resnet_stage_output(enc, 0)},
                 codes);
}
