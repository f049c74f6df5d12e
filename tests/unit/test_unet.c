// U-Net decoder tests: the whole decoder against PyTorch autograd
// (tests/fixtures/unet.mts, written by tests/torch/make_decoder_fixtures.py)
// for a small and a large stem and PCRL's mixed (hybrid) input, its shapes and names, and the encoder's
// stage maps that feed it (resnet_backward_stages against PyTorch is in
// test_resnet.c).
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "../fixture.h"
#include "blas.h"
#include "conv.h"
#include "resnet.h"
#include "rng.h"
#include "unet.h"
#include "util.h"

TEST(decoder_torch_parity)
{
    mts_reader *r = mts_reader_open("tests/fixtures/unet.mts", NULL);
    EXPECT_MSG(r, "cannot open tests/fixtures/unet.mts (run from the top of the tree)");
    if (!r)
        return;
    mts_frame f;
    int cases = 0;
    while (mts_next_record(r, &f, NULL, NULL)) {
        char what[32], stem[16];
        mts_req_str(r, &f, "case", what, sizeof what);
        mts_req_str(r, &f, "stem", stem, sizeof stem);
        resnet_config enc = {.depth = 18, .width = mts_req_f64(r, &f, "width"),
                             .stem = strcmp(stem, "large") == 0 ? RESNET_STEM_LARGE : RESNET_STEM_SMALL,
                             .in_ch = (int)mts_req_int(r, &f, "in_ch")};
        int h = (int)mts_req_int(r, &f, "h"), n = (int)mts_req_int(r, &f, "n");
        unet_decoder d;
        unet_init(&d, &enc, enc.in_ch, 7);
        char err[200];
        EXPECT(unet_size_ok(&d, h, h, err, sizeof err));
        EXPECT(!unet_size_ok(&d, h + 4, h, err, sizeof err));

        // The weights, by name: the fixture must name every parameter once.
        const msgpack_object *names = mts_get(&f, "params");
        EXPECT(names && names->type == MSGPACK_OBJECT_ARRAY && (int)names->via.array.size == d.params.count);
        for (uint32_t i = 0; names && i < names->via.array.size; i++) {
            char name[PARAM_NAME_MAX];
            const msgpack_object *o = &names->via.array.ptr[i];
            snprintf(name, sizeof name, "%.*s", (int)o->via.str.size, o->via.str.ptr);
            param_t *p = param_find(&d.params, name);
            EXPECT_MSG(p, "%s: no parameter %s", what, name);
            size_t count;
            float *v = fixture_f32(r, &f, name, &count);
            EXPECT_MSG(p && count == p->n, "%s: %zu values, the parameter has %zu", name, count, p ? p->n : 0);
            if (p && count == p->n)
                memcpy(p->w, v, count * sizeof *v);
            free(v);
        }
        size_t count;
        float *bottleneck = fixture_f32(r, &f, "bottleneck", &count), *code = fixture_f32(r, &f, "code", &count);
        float *rr = fixture_f32(r, &f, "r", &count);
        float *skips[4], *dskips[4];
        size_t skip_n[4];
        for (int k = 0; k < 4; k++) {
            char key[16];
            snprintf(key, sizeof key, "skip%d", k);
            skips[k] = fixture_f32(r, &f, key, &skip_n[k]);
            dskips[k] = xmalloc(skip_n[k] * sizeof *dskips[k]);
        }
        int c4, h4, w4;
        resnet_stage_shape(&enc, 4, h, h, &c4, &h4, &w4);
        size_t nb = (size_t)n * c4 * h4 * w4, no = (size_t)n * enc.in_ch * h * h;
        float *dbottleneck = xmalloc(nb * sizeof *dbottleneck);

        // The hybrid context's record mixes in a second input B.
        float *bottleneck_b = NULL, *code_b = NULL, *skips_b[4] = {NULL};
        if (mts_get(&f, "alpha")) {
            bottleneck_b = fixture_f32(r, &f, "bottleneck_b", &count);
            code_b = fixture_f32(r, &f, "code_b", &count);
            for (int k = 0; k < 4; k++) {
                char key[16];
                snprintf(key, sizeof key, "skip_b%d", k);
                skips_b[k] = fixture_f32(r, &f, key, &count);
            }
            unet_input a = {bottleneck, {skips[0], skips[1], skips[2], skips[3]}, code};
            unet_input b = {bottleneck_b, {skips_b[0], skips_b[1], skips_b[2], skips_b[3]}, code_b};
            unet_forward_mix(&d, true, n, h, h, &a, &b, (float)mts_req_f64(r, &f, "alpha"));
        } else {
            unet_forward(&d, true, n, h, h, bottleneck, (const float *const *)skips, code);
        }
        fixture_expect_key(r, &f, what, "out", d.output, no);
        param_zero_grad(&d.params);
        unet_backward(&d, rr, dbottleneck, dskips);
        fixture_expect_key(r, &f, what, "d_bottleneck", dbottleneck, nb);
        for (int k = 0; k < 4; k++) {
            char key[16];
            snprintf(key, sizeof key, "d_skip%d", k);
            fixture_expect_key(r, &f, what, key, dskips[k], skip_n[k]);
        }
        for (int i = 0; i < d.params.count; i++) {
            char key[PARAM_NAME_MAX + 2];
            snprintf(key, sizeof key, "d_%s", d.params.items[i].name);
            fixture_expect_key(r, &f, what, key, d.params.items[i].g, d.params.items[i].n);
        }
        cases++;
        for (int k = 0; k < 4; k++) {
            free(skips[k]);
            free(dskips[k]);
            free(skips_b[k]);
        }
        free(bottleneck_b);
        free(code_b);
        free(bottleneck);
        free(code);
        free(rr);
        free(dbottleneck);
        unet_free(&d);
    }
    EXPECT(cases == 3);
    mts_reader_close(r);
}

TEST(shapes_follow_the_encoder)
{
    // ResNet-50 x2, large stem, 3 channels: the bottleneck is 4096 wide, the
    // blocks 512..32, five upsamplings; a small stem upsamples three times.
    resnet_config enc = {.depth = 50, .width = 2, .stem = RESNET_STEM_LARGE, .in_ch = 3};
    unet_decoder d;
    unet_init(&d, &enc, 3, 1);
    EXPECT(d.bottleneck_ch == 4096);
    EXPECT(d.blocks[0].in_ch == 4096 && d.blocks[0].skip_ch == 2048 && d.blocks[0].out_ch == 512);
    EXPECT(d.blocks[3].skip_ch == 128 && d.blocks[4].skip_ch == 0 && d.blocks[4].out_ch == 32);
    int ups = 0;
    for (int i = 0; i < UNET_BLOCKS; i++)
        ups += d.blocks[i].upsample;
    EXPECT(ups == 5);
    param_t *p = param_find(&d.params, "decoder.blocks.1.conv1.0.weight");
    EXPECT(p && p->shape[0] == 256 && p->shape[1] == 512 + 1024 && p->shape[2] == 3);
    p = param_find(&d.params, "decoder.gate.fc2.weight");
    EXPECT(p && p->shape[0] == 4096 && p->shape[1] == UNET_GATE_HIDDEN);
    p = param_find(&d.params, "decoder.head.bias");
    EXPECT(p && p->n == 3 && p->no_decay);
    unet_free(&d);
    resnet_config small = {.depth = 18, .width = 0.5, .stem = RESNET_STEM_SMALL, .in_ch = 1};
    unet_init(&d, &small, 1, 1);
    ups = 0;
    for (int i = 0; i < UNET_BLOCKS; i++)
        ups += d.blocks[i].upsample;
    EXPECT(ups == 3 && !d.blocks[3].upsample && d.blocks[3].skip_ch == 32);
    char err[200];
    EXPECT(unet_size_ok(&d, 32, 40, err, sizeof err) && !unet_size_ok(&d, 32, 36, err, sizeof err));
    unet_free(&d);
}

// ---- the encoder's stage maps ---------------------------------------------

// A gradient at layer4's map spread evenly is the gradient at the pooled
// features: both paths give the same parameter gradients.
TEST(stage4_gradient_is_the_features_gradient)
{
    resnet_config cfg = {.depth = 18, .width = 0.125, .stem = RESNET_STEM_SMALL, .in_ch = 1};
    int n = 2, h = 16, c, sh, sw;
    resnet m;
    resnet_init(&m, &cfg, 3);
    resnet_stage_shape(&cfg, 4, h, h, &c, &sh, &sw);
    EXPECT(c == m.feature_dim && sh == 2 && sw == 2);
    float *x = xmalloc((size_t)n * h * h * sizeof *x), *features = xmalloc((size_t)n * c * sizeof *features);
    rng_t g = rng_make(4, 0, 0, 0);
    for (int i = 0; i < n * h * h; i++)
        x[i] = rng_normal(&g);
    float *df = xmalloc((size_t)n * c * sizeof *df), *spread = xmalloc((size_t)n * c * 4 * sizeof *spread);
    for (int i = 0; i < n * c; i++) {
        df[i] = rng_uniform(&g) - 0.5f;
        for (int j = 0; j < 4; j++)
            spread[i * 4 + j] = df[i] / 4;
    }
    resnet_forward(&m, true, n, h, h, x, features);
    param_zero_grad(&m.params);
    resnet_backward(&m, df);
    size_t total = param_count(&m.params);
    float *want = xmalloc(total * sizeof *want);
    size_t k = 0;
    for (int p = 0; p < m.params.count; p++)
        for (size_t i = 0; i < m.params.items[p].n; i++)
            want[k++] = m.params.items[p].g[i];
    resnet_forward(&m, true, n, h, h, x, features);
    param_zero_grad(&m.params);
    resnet_backward_stages(&m, NULL, (const float *const[5]){NULL, NULL, NULL, NULL, spread});
    k = 0;
    for (int p = 0; p < m.params.count; p++)
        for (size_t i = 0; i < m.params.items[p].n; i++, k++)
            EXPECT_MSG(fabsf(m.params.items[p].g[i] - want[k]) <= 1e-6f * (1 + fabsf(want[k])), "%s[%zu]: %g, want %g",
                       m.params.items[p].name, i, m.params.items[p].g[i], want[k]);
    free(x);
    free(features);
    free(df);
    free(spread);
    free(want);
    resnet_free(&m);
}

// Output and every gradient, for a random decoder and inputs, on `threads` threads.
static float *decoder_step(int threads, size_t *len)
{
    blas_set_threads(threads);
    resnet_config enc = {.depth = 18, .width = 0.25, .stem = RESNET_STEM_LARGE, .in_ch = 3};
    unet_decoder d;
    unet_init(&d, &enc, 3, 11);
    const int n = 3, h = 64, w = 96;
    rng_t g = rng_make(12, 0, 0, 0);
    float *maps[5], *dmaps[5];
    size_t sizes[5];
    for (int st = 0; st < 5; st++) {
        int c, sh, sw;
        resnet_stage_shape(&enc, st, h, w, &c, &sh, &sw);
        sizes[st] = (size_t)n * c * sh * sw;
        maps[st] = xmalloc(sizes[st] * sizeof *maps[st]);
        dmaps[st] = xmalloc(sizes[st] * sizeof *dmaps[st]);
        for (size_t i = 0; i < sizes[st]; i++)
            maps[st][i] = rng_normal(&g);
    }
    float code[3 * 6] = {1, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1};
    const float *skips[4] = {maps[3], maps[2], maps[1], maps[0]};
    float *dskips[4] = {dmaps[3], dmaps[2], dmaps[1], dmaps[0]};
    unet_forward(&d, true, n, h, w, maps[4], skips, code);
    size_t no = (size_t)n * 3 * h * w, np = param_count(&d.params);
    float *dout = xmalloc(no * sizeof *dout);
    for (size_t i = 0; i < no; i++)
        dout[i] = rng_uniform(&g) - 0.5f;
    param_zero_grad(&d.params);
    unet_backward(&d, dout, dmaps[4], dskips);
    *len = no + np + sizes[0] + sizes[1] + sizes[2] + sizes[3] + sizes[4];
    float *all = xmalloc(*len * sizeof *all), *at = all;
    memcpy(at, d.output, no * sizeof *at), at += no;
    for (int i = 0; i < d.params.count; i++)
        memcpy(at, d.params.items[i].g, d.params.items[i].n * sizeof *at), at += d.params.items[i].n;
    for (int st = 0; st < 5; st++) {
        memcpy(at, dmaps[st], sizes[st] * sizeof *at), at += sizes[st];
        free(maps[st]);
        free(dmaps[st]);
    }
    free(dout);
    unet_free(&d);
    return all;
}

TEST(same_bytes_with_1_and_2_threads)
{
    size_t n1, n2;
    float *a = decoder_step(1, &n1), *b = decoder_step(2, &n2);
    EXPECT(n1 == n2 && memcmp(a, b, n1 * sizeof *a) == 0);
    free(a);
    free(b);
}

int main(int argc, char **argv)
{
    (void)argc;
    util_init(argv[0]);
    blas_init(0);
    RUN(decoder_torch_parity);
    RUN(shapes_follow_the_encoder);
    RUN(stage4_gradient_is_the_features_gradient);
    RUN(same_bytes_with_1_and_2_threads);
    conv_workspace_release();
    return CHECK_DONE();
}
