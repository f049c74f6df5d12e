// Tests of lib/training/optim: hand-computed updates of SGD, LARS and AdamW, frozen
// and no_decay parameters, state listing and restoring, thread-count
// independence, and parity over five steps with torch.optim.SGD and
// torch.optim.AdamW and with a numpy transcription of SimCLR's LARS, through
// tests/fixtures/optim.mts (written by tests/torch/make_loss_fixtures.py; run
// from the top of the tree, as make check does).
//
// Parity tolerance: weights and state within 1e-8 absolute + 1e-5 relative
// (both sides compute in float32, or the reference in float64; observed
// differences are below 1e-6 relative, 2e-7 absolute).  A dropped weight decay (0.01..0.1 of w), a
// momentum or bias correction applied one step late, or LARS's trust ratio
// taken before the decay all move the weights by 1e-4 or more.
#include "optim.h"

#include <string.h>

#include "../check.h"
#include "blas.h"
#include "rng.h"
#include "stream.h"
#include "util.h"

#define PARITY_ATOL 1e-8
#define PARITY_RTOL 1e-5

// One parameter with its gradient, in a list of its own (start from {0};
// each init replaces the previous parameter; free the list at the end).
typedef struct {
    param_list list;
    float w[8], g[8];
} one_param;

static void one_param_init(one_param *p, int n, const float *w, const float *g, bool no_decay)
{
    param_list_free(&p->list);
    memcpy(p->w, w, n * sizeof(float));
    memcpy(p->g, g, n * sizeof(float));
    int64_t shape[1] = {n};
    param_add(&p->list, p->w, p->g, 1, shape, no_decay, "p");
}

TEST(sgd_by_hand)
{
    // w = (1, 2), g = (0.5, -1), lr 0.1, momentum 0.9, wd 0.1.
    // Step 1: g' = g + 0.1 w = (0.6, -0.8), buf = g', w = (0.94, 2.08).
    // Step 2: g' = (0.594, -0.792), buf = 0.9 (0.6, -0.8) + g' = (1.134, -1.512),
    //         w = (0.8266, 2.2312).
    const float w0[2] = {1, 2}, g[2] = {0.5f, -1};
    optim_config c = optim_defaults(OPTIM_SGD);
    c.momentum = 0.9, c.weight_decay = 0.1;
    one_param p = {0};
    one_param_init(&p, 2, w0, g, false);
    optimizer *o = optim_create(&p.list, &c);
    optim_step(o, 0.1);
    EXPECT_CLOSE(p.w[0], 0.94, 1e-7, 0);
    EXPECT_CLOSE(p.w[1], 2.08, 1e-7, 0);
    optim_step(o, 0.1);
    EXPECT_CLOSE(p.w[0], 0.8266, 1e-6, 0);
    EXPECT_CLOSE(p.w[1], 2.2312, 1e-6, 0);
    EXPECT(o->step == 2);
    optim_free(o);

    // Nesterov, step 1: w -= lr (g' + 0.9 buf) = lr 1.9 g'.
    c.nesterov = true;
    one_param_init(&p, 2, w0, g, false);
    o = optim_create(&p.list, &c);
    optim_step(o, 0.1);
    EXPECT_CLOSE(p.w[0], 1 - 0.114, 1e-7, 0);
    EXPECT_CLOSE(p.w[1], 2 + 0.152, 1e-7, 0);
    optim_free(o);

    // no_decay: g' = g; plain SGD (momentum 0): w -= lr g.
    c = optim_defaults(OPTIM_SGD);
    c.weight_decay = 0.1;
    one_param_init(&p, 2, w0, g, true);
    o = optim_create(&p.list, &c);
    optim_step(o, 0.1);
    EXPECT_CLOSE(p.w[0], 0.95, 1e-7, 0);
    EXPECT_CLOSE(p.w[1], 2.1, 1e-7, 0);
    optim_free(o);
    param_list_free(&p.list);
}

TEST(lars_by_hand)
{
    // w = (3, 4): |w| = 5; g = (0.3, 0.4), wd 0.1: g' = g + 0.1 w = (0.6, 0.8),
    // |g'| = 1, trust = 0.001 * 5 / 1 = 0.005; lr 2:
    // v = 0.01 g' = (0.006, 0.008), w = (2.994, 3.992).
    optim_config c = optim_defaults(OPTIM_LARS);
    c.weight_decay = 0.1;
    one_param p = {0};
    one_param_init(&p, 2, (float[]){3, 4}, (float[]){0.3f, 0.4f}, false);
    optimizer *o = optim_create(&p.list, &c);
    optim_step(o, 2.0);
    EXPECT_CLOSE(p.w[0], 2.994, 1e-6, 0);
    EXPECT_CLOSE(p.w[1], 3.992, 1e-6, 0);
    optim_state s = optim_state_get(o, 0);
    EXPECT(strcmp(s.name, "p.momentum") == 0);
    EXPECT_CLOSE(s.data[0], 0.006, 1e-8, 0);
    // Step 2 at lr 1: w = (2.994, 3.992), g' = (0.5994, 0.7992), |g'| = 0.999,
    // |w| = 4.99; trust = 0.001 * 4.99 / 0.999; v = 0.9 v + trust g'.
    double wn = sqrt(2.994 * 2.994 + 3.992 * 3.992);
    double gx = 0.3 + 0.1 * 2.994, gy = 0.4 + 0.1 * 3.992, gn = sqrt(gx * gx + gy * gy);
    double trust = 0.001 * wn / gn;
    double vx = 0.9 * 0.006 + trust * gx, vy = 0.9 * 0.008 + trust * gy;
    optim_step(o, 1.0);
    EXPECT_CLOSE(p.w[0], 2.994 - vx, 1e-6, 0);
    EXPECT_CLOSE(p.w[1], 3.992 - vy, 1e-6, 0);
    optim_free(o);

    // |w| = 0: trust 1, v = lr g.
    one_param_init(&p, 2, (float[]){0, 0}, (float[]){1, 0}, false);
    o = optim_create(&p.list, &c);
    optim_step(o, 0.5);
    EXPECT_CLOSE(p.w[0], -0.5, 1e-7, 0);
    optim_free(o);

    // |g'| = 0 (no gradient, no decay): trust 1, nothing moves.
    c.weight_decay = 0;
    one_param_init(&p, 2, (float[]){1, 1}, (float[]){0, 0}, false);
    o = optim_create(&p.list, &c);
    optim_step(o, 0.5);
    EXPECT(p.w[0] == 1 && p.w[1] == 1);
    optim_free(o);

    // no_decay: neither decay nor adaptation: v = lr g.
    c.weight_decay = 0.1;
    one_param_init(&p, 2, (float[]){3, 4}, (float[]){0.3f, 0.4f}, true);
    o = optim_create(&p.list, &c);
    optim_step(o, 2.0);
    EXPECT_CLOSE(p.w[0], 3 - 0.6, 1e-6, 0);
    EXPECT_CLOSE(p.w[1], 4 - 0.8, 1e-6, 0);
    optim_free(o);

    // Nesterov, step 1: w -= 0.9 v + lr trust g' = 1.9 lr trust g'.
    c.nesterov = true;
    one_param_init(&p, 2, (float[]){3, 4}, (float[]){0.3f, 0.4f}, false);
    o = optim_create(&p.list, &c);
    optim_step(o, 2.0);
    EXPECT_CLOSE(p.w[0], 3 - 1.9 * 0.006, 1e-6, 0);
    EXPECT_CLOSE(p.w[1], 4 - 1.9 * 0.008, 1e-6, 0);
    optim_free(o);
    param_list_free(&p.list);
}

TEST(adamw_by_hand)
{
    // w = 1, g = 0.5, lr 0.1, wd 0.1, step 1: w = 0.99 after the decay,
    // m = 0.05, s = 0.00025; step size 0.1 / 0.1 = 1; denominator
    // sqrt(0.00025) / sqrt(0.001) + 1e-8 = 0.5: w = 0.99 - 0.1 = 0.89.
    optim_config c = optim_defaults(OPTIM_ADAMW);
    c.weight_decay = 0.1;
    one_param p = {0};
    one_param_init(&p, 1, (float[]){1}, (float[]){0.5f}, false);
    optimizer *o = optim_create(&p.list, &c);
    optim_step(o, 0.1);
    EXPECT_CLOSE(p.w[0], 0.89, 1e-6, 0);
    EXPECT(optim_state_count(o) == 2);
    optim_state m = optim_state_get(o, 0), s = optim_state_get(o, 1);
    EXPECT(strcmp(m.name, "p.exp_avg") == 0 && strcmp(s.name, "p.exp_avg_sq") == 0);
    EXPECT_CLOSE(m.data[0], 0.05, 1e-8, 0);
    EXPECT_CLOSE(s.data[0], 0.00025, 1e-10, 0);
    optim_free(o);

    one_param_init(&p, 1, (float[]){1}, (float[]){0.5f}, true);  // no_decay
    o = optim_create(&p.list, &c);
    optim_step(o, 0.1);
    EXPECT_CLOSE(p.w[0], 0.9, 1e-6, 0);
    optim_free(o);
    param_list_free(&p.list);
}

// A frozen parameter keeps its value and has no state; the others' state
// tensors are listed in parameter order with the parameter's shape.
TEST(frozen_and_state_listing)
{
    float a[6] = {1, 2, 3, 4, 5, 6}, ga[6] = {1, 1, 1, 1, 1, 1};
    float b[2] = {1, 2}, gb[2] = {1, 1};
    float c[3] = {7, 8, 9}, gc[3] = {1, 1, 1};
    param_list l = {0};
    param_add(&l, a, ga, 2, (int64_t[]){2, 3}, false, "layer.weight");
    param_add(&l, b, gb, 1, (int64_t[]){2}, false, "frozen.weight")->frozen = true;
    param_add(&l, c, gc, 1, (int64_t[]){3}, true, "layer.bias");
    const optim_kind kinds[3] = {OPTIM_SGD, OPTIM_LARS, OPTIM_ADAMW};
    for (int k = 0; k < 3; k++) {
        optim_config cfg = optim_defaults(kinds[k]);
        optimizer *o = optim_create(&l, &cfg);
        optim_step(o, 0.1);
        EXPECT(b[0] == 1 && b[1] == 2);
        EXPECT(a[0] != 1 && c[0] != 7);
        int per = kinds[k] == OPTIM_ADAMW ? 2 : 1;
        EXPECT(optim_state_count(o) == 2 * per);
        optim_state first = optim_state_get(o, 0), last = optim_state_get(o, 2 * per - 1);
        EXPECT(strncmp(first.name, "layer.weight.", 13) == 0);
        EXPECT(first.n == 6 && first.rank == 2 && first.shape[0] == 2 && first.shape[1] == 3);
        EXPECT(strncmp(last.name, "layer.bias.", 11) == 0 && last.n == 3);
        optim_free(o);
    }
    param_list_free(&l);
}

// A run stopped after two steps and resumed from its saved state (the
// state tensors and the step count) continues exactly as the unbroken run.
TEST(state_restore_continues_exactly)
{
    const optim_kind kinds[3] = {OPTIM_SGD, OPTIM_LARS, OPTIM_ADAMW};
    for (int k = 0; k < 3; k++) {
        enum { N = 10 };
        float w1[N], w2[N], g[N];
        rng_t r = rng_make(20, (uint64_t)k, 0, 0);
        for (int i = 0; i < N; i++)
            w1[i] = rng_normal(&r);
        param_list l1 = {0}, l2 = {0};
        param_add(&l1, w1, g, 1, (int64_t[]){N}, false, "w");
        param_add(&l2, w2, g, 1, (int64_t[]){N}, false, "w");
        optim_config cfg = optim_defaults(kinds[k]);
        cfg.momentum = 0.9, cfg.weight_decay = 0.01;
        optimizer *run = optim_create(&l1, &cfg);
        for (int step = 0; step < 5; step++) {
            for (int i = 0; i < N; i++)
                g[i] = rng_normal(&r);
            if (step == 2) {  // "checkpoint": copy weights, state and step
                optimizer *resumed = optim_create(&l2, &cfg);
                memcpy(w2, w1, sizeof w1);
                for (int s = 0; s < optim_state_count(run); s++) {
                    optim_state from = optim_state_get(run, s), to = optim_state_get(resumed, s);
                    EXPECT(strcmp(from.name, to.name) == 0);
                    memcpy(to.data, from.data, from.n * sizeof(float));
                }
                resumed->step = run->step;
                optim_free(run);
                run = resumed;
                for (int i = 0; i < N; i++)
                    w1[i] = NAN;  // the old weights must not be used again
            }
            optim_step(run, 0.05);
        }
        EXPECT(run->step == 5);
        // Compare with an unbroken run.
        float w3[N];
        param_list l3 = {0};
        param_add(&l3, w3, g, 1, (int64_t[]){N}, false, "w");
        r = rng_make(20, (uint64_t)k, 0, 0);
        for (int i = 0; i < N; i++)
            w3[i] = rng_normal(&r);
        optimizer *ref = optim_create(&l3, &cfg);
        for (int step = 0; step < 5; step++) {
            for (int i = 0; i < N; i++)
                g[i] = rng_normal(&r);
            optim_step(ref, 0.05);
        }
        EXPECT_MSG(memcmp(w2, w3, sizeof w3) == 0, "%s: resumed run differs",
                   optim_kind_name(kinds[k]));
        optim_free(run), optim_free(ref);
        param_list_free(&l1), param_list_free(&l2), param_list_free(&l3);
    }
}

// Large parameters are updated by several threads: the same bytes with one
// thread and with two (LARS's norms are sums in a fixed order).
TEST(thread_count_independent)
{
    enum { N = 100003 };
    const optim_kind kinds[3] = {OPTIM_SGD, OPTIM_LARS, OPTIM_ADAMW};
    float *w[2], *g = xmalloc(N * sizeof(float));
    rng_t r = rng_make(21, 0, 0, 0);
    for (int i = 0; i < N; i++)
        g[i] = rng_normal(&r);
    for (int k = 0; k < 3; k++) {
        for (int t = 0; t < 2; t++) {
            blas_set_threads(t + 1);
            w[t] = xmalloc(N * sizeof(float));
            rng_t rw = rng_make(22, 0, 0, 0);
            for (int i = 0; i < N; i++)
                w[t][i] = rng_normal(&rw);
            param_list l = {0};
            param_add(&l, w[t], g, 1, (int64_t[]){N}, false, "w");
            optim_config cfg = optim_defaults(kinds[k]);
            cfg.momentum = 0.9, cfg.weight_decay = 1e-4;
            optimizer *o = optim_create(&l, &cfg);
            for (int s = 0; s < 3; s++)
                optim_step(o, 0.1);
            optim_free(o);
            param_list_free(&l);
        }
        EXPECT_MSG(memcmp(w[0], w[1], N * sizeof(float)) == 0, "%s", optim_kind_name(kinds[k]));
        free(w[0]), free(w[1]);
    }
    free(g);
}

TEST(kind_names)
{
    optim_kind k;
    EXPECT(optim_kind_parse("lars", &k) && k == OPTIM_LARS);
    EXPECT(optim_kind_parse("adamw", &k) && k == OPTIM_ADAMW);
    EXPECT(optim_kind_parse("sgd", &k) && k == OPTIM_SGD);
    EXPECT(!optim_kind_parse("adam", &k));
    EXPECT(strcmp(optim_kind_name(OPTIM_LARS), "lars") == 0);
}

// ---- parity with torch.optim and SimCLR's LARS ---------------------------------

static const char *const fixture_params[3] = {"fc.weight", "fc.bias", "zero.weight"};

static float *req_f32(const mts_reader *r, const mts_frame *f, const char *key, mts_tensor *t)
{
    mts_req_tensor(r, f, key, t);
    float *x = xaligned_alloc(mts_tensor_count(t) * sizeof(float));
    mts_tensor_to_f32(t, x);
    return x;
}

static double *req_f64(const mts_reader *r, const mts_frame *f, const char *key, size_t *count)
{
    mts_tensor t;
    mts_req_tensor(r, f, key, &t);
    if (t.dtype != MTS_F64)
        mts_die_at(r, f, "key '%s': expected f64", key);
    *count = mts_tensor_count(&t);
    double *x = xmalloc(*count * sizeof(double));
    memcpy(x, t.data, *count * sizeof(double));
    return x;
}

static void expect_close_all(const char *what, int step, const float *got, const double *want,
                             size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabs(got[i] - want[i]) <= PARITY_ATOL + PARITY_RTOL * fabs(want[i]))) {
            check_fail(__FILE__, __LINE__, "%s, step %d, element %zu: %.9g, expected %.9g", what,
                       step, i, got[i], want[i]);
            return;
        }
}

static void run_fixture_case(const mts_reader *r, const mts_frame *f)
{
    char name[32], kind_name[16];
    mts_req_str(r, f, "case", name, sizeof name);
    mts_req_str(r, f, "optimizer", kind_name, sizeof kind_name);
    optim_kind kind;
    if (!optim_kind_parse(kind_name, &kind))
        mts_die_at(r, f, "unknown optimizer '%s'", kind_name);
    optim_config cfg = optim_defaults(kind);
    double v;
    int64_t flag;
    if (mts_opt_f64(r, f, "momentum", &v))
        cfg.momentum = v;
    if (mts_opt_int(r, f, "nesterov", &flag))
        cfg.nesterov = flag != 0;
    if (mts_opt_f64(r, f, "weight_decay", &v))
        cfg.weight_decay = v;
    if (mts_opt_f64(r, f, "trust_coef", &v))
        cfg.trust_coef = v;
    if (mts_opt_f64(r, f, "beta1", &v))
        cfg.beta1 = v;
    if (mts_opt_f64(r, f, "beta2", &v))
        cfg.beta2 = v;
    if (mts_opt_f64(r, f, "eps", &v))
        cfg.eps = v;
    size_t steps;
    double *lr = req_f64(r, f, "lr", &steps);

    // The fixture's three parameters, plus a frozen one the fixture does not know.
    param_list l = {0};
    float *w[4], *g[4], *grads[3];
    double *after[3];
    size_t n[4];
    char key[128];
    for (int p = 0; p < 3; p++) {
        mts_tensor t, tg;
        snprintf(key, sizeof key, "%s.init", fixture_params[p]);
        w[p] = req_f32(r, f, key, &t);
        n[p] = mts_tensor_count(&t);
        g[p] = xcalloc(n[p], sizeof(float));
        snprintf(key, sizeof key, "%s.grads", fixture_params[p]);
        grads[p] = req_f32(r, f, key, &tg);
        snprintf(key, sizeof key, "%s.after", fixture_params[p]);
        size_t count;
        after[p] = req_f64(r, f, key, &count);
        EXPECT(count == steps * n[p] && mts_tensor_count(&tg) == steps * n[p]);
        snprintf(key, sizeof key, "%s.no_decay", fixture_params[p]);
        param_add(&l, w[p], g[p], t.rank, t.shape, mts_req_int(r, f, key) != 0, "%s",
                  fixture_params[p]);
    }
    n[3] = 5;
    w[3] = xmalloc(n[3] * sizeof(float));
    g[3] = xmalloc(n[3] * sizeof(float));
    for (size_t i = 0; i < n[3]; i++)
        w[3][i] = (float)i, g[3][i] = 1.0f;
    param_add(&l, w[3], g[3], 1, (int64_t[]){5}, false, "frozen.weight")->frozen = true;

    optimizer *o = optim_create(&l, &cfg);
    for (size_t s = 0; s < steps; s++) {
        for (int p = 0; p < 3; p++)
            memcpy(g[p], grads[p] + s * n[p], n[p] * sizeof(float));
        optim_step(o, lr[s]);
        for (int p = 0; p < 3; p++) {
            snprintf(key, sizeof key, "%s %s", name, fixture_params[p]);
            expect_close_all(key, (int)s + 1, w[p], after[p] + s * n[p], n[p]);
        }
    }
    for (size_t i = 0; i < n[3]; i++)
        EXPECT(w[3][i] == (float)i);
    EXPECT(o->step == mts_req_int(r, f, "steps"));

    // Every state tensor has its counterpart in the fixture, under our name.
    EXPECT(optim_state_count(o) == 3 * o->nslots);
    for (int i = 0; i < optim_state_count(o); i++) {
        optim_state st = optim_state_get(o, i);
        snprintf(key, sizeof key, "state:%s", st.name);
        size_t count;
        double *want = req_f64(r, f, key, &count);
        EXPECT(count == st.n);
        expect_close_all(key, (int)steps, st.data, want, st.n);
        free(want);
    }
    optim_free(o);
    for (int p = 0; p < 4; p++)
        free(w[p]), free(g[p]);
    for (int p = 0; p < 3; p++)
        free(grads[p]), free(after[p]);
    free(lr);
    param_list_free(&l);
}

TEST(torch_and_simclr_parity)
{
    mts_reader *r = mts_reader_open("tests/fixtures/optim.mts", NULL);
    EXPECT_MSG(r, "cannot open tests/fixtures/optim.mts (run from the top of the tree)");
    if (!r)
        return;
    mts_frame f;
    int cases = 0;
    while (mts_next_record(r, &f, NULL, NULL)) {
        run_fixture_case(r, &f);
        cases++;
    }
    mts_reader_close(r);
    EXPECT_MSG(cases == 5, "%d fixture cases, expected 5", cases);
}

int main(void)
{
    RUN(sgd_by_hand);
    RUN(lars_by_hand);
    RUN(adamw_by_hand);
    RUN(frozen_and_state_listing);
    RUN(state_restore_continues_exactly);
    RUN(thread_count_independent);
    RUN(kind_names);
    RUN(torch_and_simclr_parity);
    return CHECK_DONE();
}
