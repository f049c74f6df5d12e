// Tests of lib/models/model (head and classifier gradients through the whole
// model, against finite differences) and lib/io/ckpt (round trips, partial
// loads, mismatches, truncation).
#include <omp.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../check.h"
#include "blas.h"
#include "ckpt.h"
#include "model.h"
#include "optim.h"
#include "rng.h"
#include "stream.h"
#include "util.h"

static char tmpdir[] = "/tmp/medssl-test-model-XXXXXX";

static model_config small_config(int head, int classes)
{
    model_config c = model_config_default();
    c.encoder = (resnet_config){.depth = 18, .width = 0.125, .stem = RESNET_STEM_SMALL, .in_ch = 1};
    c.head_layers = head;
    c.head_hidden = 16;
    c.proj_dim = 8;
    c.classes = classes;
    return c;
}

enum { N = 4, H = 8, W = 8 };

// loss = sum(proj * R) + sum(logits * S), in double.
static double objective(model *m, const float *x, const float *R, const float *S)
{
    model_forward(m, true, N, H, W, x);
    double loss = 0;
    for (int i = 0; i < N * m->cfg.proj_dim && m->proj; i++)
        loss += (double)m->proj[i] * R[i];
    for (int i = 0; i < N * m->cfg.classes; i++)
        loss += (double)m->logits[i] * S[i];
    return loss;
}

TEST(model_gradients_match_finite_differences)
{
    model m;
    model_config cfg = small_config(3, 5);
    model_init(&m, &cfg, 7);
    rng_t r = rng_make(3, 0, 0, 0);
    float x[N * H * W], R[N * 8], S[N * 5];
    for (int i = 0; i < N * H * W; i++)
        x[i] = rng_normal(&r);
    for (int i = 0; i < N * 8; i++)
        R[i] = rng_normal(&r);
    for (int i = 0; i < N * 5; i++)
        S[i] = rng_normal(&r);
    param_zero_grad(&m.params);
    objective(&m, x, R, S);
    model_backward(&m, R, S);
    // Check a spread of entries of every head and classifier parameter and
    // of the encoder's last convolution.  (Deeper in, the ReLU kinks of a
    // float network make central differences unreliable; the encoder's
    // gradients are checked against PyTorch's in test_resnet.)
    int checked = 0;
    for (int p = 0; p < m.params.count; p++) {
        param_t *pa = &m.params.items[p];
        bool want = strncmp(pa->name, "head.", 5) == 0 || strncmp(pa->name, "fc.", 3) == 0 ||
                    strcmp(pa->name, "layer4.1.conv2.weight") == 0;
        if (!want)
            continue;
        for (size_t k = 0; k < pa->n; k += pa->n / 5 + 1) {
            float keep = pa->w[k];
            double eps = 1e-3;
            pa->w[k] = keep + (float)eps;
            double up = objective(&m, x, R, S);
            pa->w[k] = keep - (float)eps;
            double down = objective(&m, x, R, S);
            pa->w[k] = keep;
            double fd = (up - down) / (2 * eps);
            // float forward passes: a loose tolerance, still far below the
            // size of a missing term or a wrong sign.
            EXPECT_MSG(fabs(fd - pa->g[k]) <= 2e-2 * fmax(1, fabs(fd)), "%s[%zu]: analytic %g, numeric %g",
                       pa->name, k, pa->g[k], fd);
            checked++;
        }
    }
    EXPECT(checked > 30);
    model_free(&m);
}

TEST(frozen_encoder_gets_no_gradient_and_keeps_bn_statistics)
{
    model m;
    model_config cfg = small_config(0, 3);
    model_init(&m, &cfg, 1);
    model_freeze_encoder(&m);
    float x[N * H * W], dlogits[N * 3];
    for (int i = 0; i < N * H * W; i++)
        x[i] = (float)(i % 7) - 3;
    for (int i = 0; i < N * 3; i++)
        dlogits[i] = 0.1f * (float)(i % 5);
    float mean_before = m.enc.bn1.running_mean[0];
    param_zero_grad(&m.params);
    model_forward(&m, true, N, H, W, x);
    model_backward(&m, NULL, dlogits);
    EXPECT(m.enc.bn1.running_mean[0] == mean_before);
    double enc = 0, fc = 0;
    for (int p = 0; p < m.params.count; p++)
        for (size_t k = 0; k < m.params.items[p].n; k++)
            *(strncmp(m.params.items[p].name, "fc.", 3) == 0 ? &fc : &enc) += fabs(m.params.items[p].g[k]);
    EXPECT(enc == 0 && fc > 0);
    model_free(&m);
}

static bool same_floats(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof *a) == 0; }

static void train_one_step(model *m, optimizer *o)
{
    float x[N * H * W];
    for (int i = 0; i < N * H * W; i++)
        x[i] = (float)((i * 37) % 11) - 5;
    param_zero_grad(&m->params);
    model_forward(m, true, N, H, W, x);
    float dproj[N * 8], dlogits[N * 3];
    for (int i = 0; i < N * 8; i++)
        dproj[i] = 0.01f * (float)(i % 9);
    for (int i = 0; i < N * 3; i++)
        dlogits[i] = 0.02f * (float)(i % 4);
    model_backward(m, m->nhead ? dproj : NULL, m->has_fc ? dlogits : NULL);
    optim_step(o, 0.5);
}

TEST(checkpoint_round_trip_is_exact)
{
    model a, b;
    model_config cfg = small_config(2, 3);
    model_init(&a, &cfg, 11);
    optim_config oc = optim_defaults(OPTIM_LARS);
    oc.weight_decay = 1e-6;
    optimizer *oa = optim_create(&a.params, &oc);
    train_one_step(&a, oa);
    train_one_step(&a, oa);
    char path[256];
    snprintf(path, sizeof path, "%s/a.ckpt", tmpdir);
    ckpt_info info = {.step = 2, .records = 8, .epoch = 0, .loss = 1.5, .has_rng = true,
                      .rng = {1, 2, 3, 4, 5, 6, 0}, .task = "multiclass", .nclasses = 3};
    char *names[3] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++)
        info.class_names[i] = names[i];
    char *argv[] = {"test", NULL};
    ckpt_save(path, &a, oa, &info, "test", 1, argv);

    model_config rc;
    ckpt_info ri;
    char err[300];
    EXPECT(ckpt_read_header(path, &rc, &ri, err, sizeof err));
    EXPECT(rc.encoder.depth == 18 && rc.encoder.width == 0.125 && rc.head_layers == 2 && rc.classes == 3);
    EXPECT(ri.step == 2 && ri.records == 8 && ri.loss == 1.5 && ri.has_rng && ri.rng[5] == 6);
    EXPECT(ri.nclasses == 3 && strcmp(ri.class_names[2], "c") == 0 && strcmp(ri.task, "multiclass") == 0);
    EXPECT(strcmp(ri.optimizer, "lars") == 0);
    ckpt_info_free(&ri);

    model_init(&b, &rc, 99);  // other initial values: all must be overwritten
    optimizer *ob = optim_create(&b.params, &oc);
    ckpt_load(path, &b, ob, CKPT_ALL);
    for (int p = 0; p < a.params.count; p++)
        EXPECT_MSG(same_floats(a.params.items[p].w, b.params.items[p].w, a.params.items[p].n), "%s",
                   a.params.items[p].name);
    for (int i = 0; i < a.nbn; i++) {
        EXPECT(same_floats(a.bns[i].bn->running_mean, b.bns[i].bn->running_mean, (size_t)a.bns[i].bn->channels));
        EXPECT(same_floats(a.bns[i].bn->running_var, b.bns[i].bn->running_var, (size_t)a.bns[i].bn->channels));
        EXPECT(a.bns[i].bn->num_batches_tracked == b.bns[i].bn->num_batches_tracked);
    }
    EXPECT(ob->step == oa->step);
    for (int i = 0; i < optim_state_count(oa); i++) {
        optim_state sa = optim_state_get(oa, i), sb = optim_state_get(ob, i);
        EXPECT(same_floats(sa.data, sb.data, sa.n));
    }
    // Resuming gives the same next step, bit for bit.
    train_one_step(&a, oa);
    train_one_step(&b, ob);
    for (int p = 0; p < a.params.count; p++)
        EXPECT(same_floats(a.params.items[p].w, b.params.items[p].w, a.params.items[p].n));
    optim_free(oa);
    optim_free(ob);
    model_free(&a);
    model_free(&b);
}

TEST(encoder_only_load_into_another_head)
{
    model a, b;
    model_config ca = small_config(3, 0), cb = small_config(0, 7);
    model_init(&a, &ca, 5);
    model_init(&b, &cb, 6);
    char path[256];
    snprintf(path, sizeof path, "%s/enc.ckpt", tmpdir);
    ckpt_info info = {.loss = NAN};
    char *argv[] = {"test", NULL};
    ckpt_save(path, &a, NULL, &info, "test", 1, argv);
    float fc_before = b.fc.weight[3];
    ckpt_load(path, &b, NULL, CKPT_ENCODER);
    for (int p = 0; p < a.enc.params.count; p++)
        EXPECT(same_floats(a.enc.params.items[p].w, b.enc.params.items[p].w, a.enc.params.items[p].n));
    EXPECT(b.fc.weight[3] == fc_before);
    model_free(&a);
    model_free(&b);
}

// Runs fn in a child and returns its stderr and exit status.
static int child_status(void (*fn)(const char *), const char *arg, char *msg, size_t len)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        // libgomp's thread pool does not survive fork: a parallel region in
        // the child would wait for the parent's threads forever.
        omp_set_num_threads(1);
        fn(arg);
        _exit(0);
    }
    close(fds[1]);
    ssize_t got = read(fds[0], msg, len - 1);
    msg[got > 0 ? got : 0] = 0;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static void load_into_resnet34(const char *path)
{
    model m;
    model_config c = small_config(3, 0);
    c.encoder.depth = 34;
    model_init(&m, &c, 1);
    ckpt_load(path, &m, NULL, CKPT_ENCODER);
}

static void load_into_other_proj(const char *path)
{
    model m;
    model_config c = small_config(3, 0);
    c.proj_dim = 16;
    model_init(&m, &c, 1);
    ckpt_load(path, &m, NULL, CKPT_ALL & ~CKPT_STATE);
}

static void load_state_without_state(const char *path)
{
    model m;
    model_config c = small_config(3, 0);
    model_init(&m, &c, 1);
    optim_config oc = optim_defaults(OPTIM_SGD);
    oc.momentum = 0.9;
    optimizer *o = optim_create(&m.params, &oc);
    ckpt_load(path, &m, o, CKPT_ALL);
}

TEST(mismatches_say_what_differs)
{
    char path[256], msg[1024];
    snprintf(path, sizeof path, "%s/enc.ckpt", tmpdir);
    EXPECT(child_status(load_into_resnet34, path, msg, sizeof msg) == 1);
    EXPECT_MSG(strstr(msg, "the checkpoint's encoder (resnet18 x0.125") && strstr(msg, "this model's (resnet34"), "%s", msg);
    EXPECT(child_status(load_into_other_proj, path, msg, sizeof msg) == 1);
    EXPECT_MSG(strstr(msg, "head.2.linear.weight: the checkpoint's is f32 (8,16), this model's f32 (16,16)"), "%s", msg);
    EXPECT(child_status(load_state_without_state, path, msg, sizeof msg) == 1);
    EXPECT_MSG(strstr(msg, "saved without optimiser state"), "%s", msg);
}

static void load_truncated(const char *path)
{
    model m;
    model_config c = small_config(3, 0);
    model_init(&m, &c, 1);
    ckpt_load(path, &m, NULL, CKPT_ENCODER);
}

TEST(truncated_checkpoint_is_refused)
{
    char path[256], cut[300], cmd[1200], msg[1024];
    snprintf(path, sizeof path, "%s/enc.ckpt", tmpdir);
    snprintf(cut, sizeof cut, "%s/cut.ckpt", tmpdir);
    snprintf(cmd, sizeof cmd, "head -c $(( $(stat -c %%s %s) / 2 )) %s > %s", path, path, cut);
    EXPECT(system(cmd) == 0);
    EXPECT(child_status(load_truncated, cut, msg, sizeof msg) == 1);
    EXPECT_MSG(strstr(msg, "truncated"), "%s", msg);
}

// model_param_count is what model_init allocates, for both block kinds,
// heads and classifiers.
TEST(parameter_count_without_allocating)
{
    model_config cs[3] = {small_config(3, 10), small_config(2, 0), small_config(0, 7)};
    cs[1].encoder = (resnet_config){.depth = 50, .width = 0.25, .stem = RESNET_STEM_LARGE, .in_ch = 3};
    cs[1].head_hidden = 0;   // the feature width
    cs[2].encoder.width = 0.3;
    for (int i = 0; i < 3; i++) {
        model m;
        model_init(&m, &cs[i], 1);
        EXPECT_MSG(model_param_count(&cs[i]) == (double)param_count(&m.params), "config %d: %.0f vs %zu", i,
                   model_param_count(&cs[i]), param_count(&m.params));
        model_free(&m);
    }
}

// A header asking for ResNet-152 x16 (about 15e9 parameters, 60 GB) is
// refused before anything is allocated.
TEST(oversized_model_in_header_is_refused)
{
    char path[256], err[256];
    snprintf(path, sizeof path, "%s/huge.ckpt", tmpdir);
    mts_writer *w = mts_writer_open(path, &(mts_write_opts){0});
    mts_write_header(w, "test", 0, NULL, 2);
    mts_put_int(w, "checkpoint", 1);
    mts_put_key(w, "model");
    msgpack_packer *pk = mts_packer(w);
    msgpack_pack_map(pk, 8);
    const char *keys[8] = {"depth", "width", "stem", "in_ch", "head_layers", "head_hidden", "proj_dim", "classes"};
    const int values[8] = {152, 16, 0, 3, 3, 0, 128, 1000};
    for (int i = 0; i < 8; i++) {
        mts_pack_str(pk, keys[i]);
        if (i == 1)
            msgpack_pack_double(pk, 16.0);
        else if (i == 2)
            mts_pack_str(pk, "large");
        else
            msgpack_pack_int(pk, values[i]);
    }
    mts_writer_close(w);
    model_config cfg;
    ckpt_info info;
    EXPECT(!ckpt_read_header(path, &cfg, &info, err, sizeof err));
    EXPECT_MSG(strstr(err, "over the limit"), "%s", err);
}

int main(int argc, char **argv)
{
    (void)argc;
    util_init(argv[0]);
    blas_init(0);
    if (!mkdtemp(tmpdir))
        die("test", "mkdtemp failed");
    RUN(model_gradients_match_finite_differences);
    RUN(frozen_encoder_gets_no_gradient_and_keeps_bn_statistics);
    RUN(checkpoint_round_trip_is_exact);
    RUN(encoder_only_load_into_another_head);
    RUN(mismatches_say_what_differs);
    RUN(truncated_checkpoint_is_refused);
    RUN(parameter_count_without_allocating);
    RUN(oversized_model_in_header_is_refused);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        warnf("test", "cannot remove %s", tmpdir);
    return CHECK_DONE();
}
