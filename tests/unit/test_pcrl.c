// PCRL step tests (lib/training/pcrl): the whole loss's gradients (contrast and the
// three reconstructions, through the decoder into the student's stage maps)
// against central differences, for both contrasts; the queue; the teacher's
// momentum update; the same bytes on 1 and 2 threads.  The decoder alone is
// checked against PyTorch in test_unet.c, InfoNCE in test_loss.c.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "blas.h"
#include "conv.h"
#include "pcrl.h"
#include "rng.h"
#include "util.h"

enum { N = 4, H = 16, W = 16, QUEUE = 6 };

static model_config small_config(void)
{
    model_config c = model_config_default();
    c.encoder = (resnet_config){.depth = 18, .width = 0.125, .stem = RESNET_STEM_SMALL, .in_ch = 1};
    c.head_layers = 2;
    c.head_hidden = 16;
    c.proj_dim = 8;
    return c;
}

typedef struct {
    float x[2 * N * H * W], targets[2 * N * H * W], codes[2 * N * 6];
} pairs;

static void make_pairs(pairs *b, uint64_t seed)
{
    rng_t r = rng_make(seed, 0, 0, 0);
    for (int i = 0; i < 2 * N * H * W; i++) {
        b->x[i] = rng_normal(&r);
        b->targets[i] = rng_uniform(&r);
    }
    memset(b->codes, 0, sizeof b->codes);
    for (int v = 0; v < 2 * N; v++) {
        b->codes[v * 6 + 0] = (float)(v % 2);
        b->codes[v * 6 + 1] = (float)(v / 2 % 2);
        b->codes[v * 6 + 2 + v % 4] = 1;
    }
}

// The loss of one step from the same state: the queue, its position and
// the alpha draw are put back afterwards.  Summed in double from its terms,
// so that a parameter that only the reconstructions see is not drowned in
// the contrast's rounding.
static double loss_at(pcrl *p, const pairs *b)
{
    size_t qn = p->queue ? (size_t)QUEUE * p->student.cfg.proj_dim : 0;
    float saved_queue[QUEUE * 8];
    if (qn)
        memcpy(saved_queue, p->queue, qn * sizeof(float));
    int64_t pos = p->queue_pos;
    rng_t alpha = p->alpha_rng;
    pcrl_losses l;
    pcrl_step(p, N, H, W, b->x, b->targets, b->codes, &l);
    if (qn)
        memcpy(p->queue, saved_queue, qn * sizeof(float));
    p->queue_pos = pos;
    p->alpha_rng = alpha;
    return (double)l.contrast + p->cfg.recon_weight / 3 * ((double)l.recon[0] + l.recon[1] + l.recon[2]);
}

static void check_contrast(pcrl_contrast contrast)
{
    model_config cfg = small_config();
    pcrl_config pc = pcrl_defaults();
    pc.contrast = contrast;
    pc.queue = QUEUE;
    pc.recon_weight = 3;   // the reconstructions' gradients well above the float noise
    pcrl p;
    pcrl_init(&p, &cfg, &pc, 5);
    // A teacher unlike the student, as after some training.
    rng_t r = rng_make(9, 0, 0, 0);
    for (int i = 0; i < p.teacher.params.count; i++)
        for (size_t k = 0; k < p.teacher.params.items[i].n; k++)
            p.teacher.params.items[i].w[k] *= 1 + 0.2f * (rng_uniform(&r) - 0.5f);
    pairs b;
    make_pairs(&b, 11);
    loss_at(&p, &b);
    // The analytic gradients of that loss, kept before the differences overwrite them.
    size_t total = param_count(&p.params), k0 = 0;
    float *analytic = xmalloc(total * sizeof *analytic);
    for (int i = 0; i < p.params.count; i++) {
        memcpy(analytic + k0, p.params.items[i].g, p.params.items[i].n * sizeof(float));
        k0 += p.params.items[i].n;
    }
    // The student's last conv and its stem (reached by the contrast and by
    // the decoder's skips), its head, and the decoder's gate, first block,
    // last block and head.
    static const char *const names[] = {
        "conv1.weight", "layer1.0.conv1.weight", "layer4.1.conv2.weight", "head.0.linear.weight",
        "decoder.gate.fc1.weight", "decoder.gate.fc2.bias", "decoder.blocks.0.conv1.0.weight",
        "decoder.blocks.4.conv2.1.weight", "decoder.head.weight", "decoder.head.bias"};
    int checked = 0;
    for (size_t j = 0; j < sizeof names / sizeof names[0]; j++) {
        size_t offset = 0;
        param_t *pa = NULL;
        for (int i = 0; i < p.params.count && !pa; i++) {
            if (strcmp(p.params.items[i].name, names[j]) == 0)
                pa = &p.params.items[i];
            else
                offset += p.params.items[i].n;
        }
        EXPECT_MSG(pa, "no parameter %s", names[j]);
        if (!pa)
            continue;
        double scale = 0;
        for (size_t k = 0; k < pa->n; k++)
            scale = fmax(scale, fabs(analytic[offset + k]));
        EXPECT_MSG(scale > 0, "%s: no gradient", names[j]);
        for (size_t k = 0; k < pa->n; k += pa->n / 4 + 1) {
            float keep = pa->w[k];
            // conv1's 9 weights a channel feed a batch norm over a small
            // batch: the loss curves fast in them, so a shorter step there.
            const double eps = strcmp(pa->name, "conv1.weight") == 0 ? 2e-4 : 2e-3;
            pa->w[k] = keep + (float)eps;
            double up = loss_at(&p, &b);
            pa->w[k] = keep - (float)eps;
            double down = loss_at(&p, &b);
            pa->w[k] = keep;
            double fd = (up - down) / (2 * eps), g = analytic[offset + k];
            // Float forward passes: a tolerance against the parameter's
            // largest gradient, still far below a missing term or a sign.
            EXPECT_MSG(fabs(fd - g) <= 0.05 * scale + 0.05 * fabs(fd), "%s %s[%zu]: analytic %g, numeric %g (largest %g)",
                       contrast == PCRL_MOCO ? "moco" : "ntxent", pa->name, k, g, fd, scale);
            checked++;
        }
    }
    EXPECT(checked >= 30);
    free(analytic);
    pcrl_free(&p);
}

TEST(moco_gradients_match_finite_differences) { check_contrast(PCRL_MOCO); }
TEST(ntxent_gradients_match_finite_differences) { check_contrast(PCRL_NTXENT); }

TEST(queue_takes_the_normalised_keys_and_wraps)
{
    model_config cfg = small_config();
    pcrl_config pc = pcrl_defaults();
    pc.queue = QUEUE;
    pcrl p;
    pcrl_init(&p, &cfg, &pc, 5);
    for (int i = 0; i < QUEUE; i++) {
        double s = 0;
        for (int k = 0; k < 8; k++)
            s += (double)p.queue[i * 8 + k] * p.queue[i * 8 + k];
        EXPECT_MSG(fabs(s - 1) < 1e-5, "initial queue row %d has norm^2 %g", i, s);
    }
    pairs b;
    make_pairs(&b, 3);
    pcrl_losses l;
    pcrl_step(&p, N, H, W, b.x, b.targets, b.codes, &l);
    EXPECT(p.queue_pos == N);
    pcrl_step(&p, N, H, W, b.x, b.targets, b.codes, &l);
    EXPECT(p.queue_pos == (2 * N) % QUEUE);
    // The last key written (row pos - 1) is the teacher's last projection, normalised.
    const float *key = p.teacher.proj + (N - 1) * 8, *row = p.queue + (p.queue_pos + QUEUE - 1) % QUEUE * 8;
    double s = 0;
    for (int k = 0; k < 8; k++)
        s += (double)key[k] * key[k];
    for (int k = 0; k < 8; k++)
        EXPECT_MSG(fabsf(row[k] - (float)(key[k] / sqrt(s))) < 1e-6f, "queue[%d]: %g, want %g", k, row[k],
                   key[k] / sqrt(s));
    EXPECT(l.anchors == N && l.correct >= 0 && l.correct <= N && l.alpha >= 0.5f && l.alpha <= 1);
    pcrl_free(&p);
}

TEST(teacher_is_the_momentum_average)
{
    model_config cfg = small_config();
    pcrl_config pc = pcrl_defaults();
    pc.queue = QUEUE;
    pc.ema = 0.75;
    pcrl p;
    pcrl_init(&p, &cfg, &pc, 5);
    param_t *s = param_find(&p.student.params, "layer2.0.conv1.weight"),
            *t = param_find(&p.teacher.params, "layer2.0.conv1.weight");
    EXPECT(s && t && memcmp(s->w, t->w, s->n * sizeof(float)) == 0);
    float before = t->w[3];
    s->w[3] += 1;
    pcrl_update_teacher(&p);
    EXPECT_MSG(fabsf(t->w[3] - (before + 0.25f)) < 1e-6f, "teacher %g, want %g", t->w[3], before + 0.25f);
    pcrl_sync_teacher(&p);
    EXPECT(t->w[3] == s->w[3]);
    pcrl_free(&p);
}

// Every gradient and the queue after two steps on `threads` threads.
static float *two_steps(int threads, pcrl_contrast contrast, size_t *len)
{
    blas_set_threads(threads);
    model_config cfg = small_config();
    pcrl_config pc = pcrl_defaults();
    pc.contrast = contrast;
    pc.queue = QUEUE;
    pcrl p;
    pcrl_init(&p, &cfg, &pc, 8);
    pairs b;
    make_pairs(&b, 4);
    pcrl_losses l;
    for (int step = 0; step < 2; step++) {
        pcrl_step(&p, N, H, W, b.x, b.targets, b.codes, &l);
        pcrl_update_teacher(&p);
    }
    size_t np = param_count(&p.params), nq = p.queue ? (size_t)QUEUE * 8 : 0;
    *len = np + nq + 1;
    float *all = xmalloc(*len * sizeof *all), *at = all;
    for (int i = 0; i < p.params.count; i++)
        memcpy(at, p.params.items[i].g, p.params.items[i].n * sizeof *at), at += p.params.items[i].n;
    if (nq)
        memcpy(at, p.queue, nq * sizeof *at), at += nq;
    *at = l.loss;
    pcrl_free(&p);
    return all;
}

TEST(same_bytes_with_1_and_2_threads)
{
    for (int c = 0; c < 2; c++) {
        size_t n1, n2;
        float *a = two_steps(1, c ? PCRL_NTXENT : PCRL_MOCO, &n1), *b = two_steps(2, c ? PCRL_NTXENT : PCRL_MOCO, &n2);
        EXPECT_MSG(n1 == n2 && memcmp(a, b, n1 * sizeof *a) == 0, "%s differs", c ? "ntxent" : "moco");
        free(a);
        free(b);
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    util_init(argv[0]);
    blas_init(0);
    RUN(moco_gradients_match_finite_differences);
    RUN(ntxent_gradients_match_finite_differences);
    RUN(queue_takes_the_normalised_keys_and_wraps);
    RUN(teacher_is_the_momentum_average);
    RUN(same_bytes_with_1_and_2_threads);
    conv_workspace_release();
    return CHECK_DONE();
}
