// finetune: supervised training of a classifier on a pretrained (or random)
// encoder: softmax (multi-class) or sigmoid (multi-label), full or linear,
// with an optional validation stream choosing the best epoch (see
// finetune(1)).
//
//   pair-sample --mode single -f 0.1 ... | augment ... | finetune --init pre.ckpt -o ft.ckpt
//
// Under mpirun -np K (see dist.h), each rank trains on its shard of every
// global batch (pair-sample --drop-last --shard R/K --batch B) and the ranks
// keep one model: the same bytes as one process with --micro-batch.
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "blas.h"
#include "ckpt.h"
#include "cli.h"
#include "dist.h"
#include "loss.h"
#include "metrics.h"
#include "model.h"
#include "optim.h"
#include "schedule.h"
#include "train.h"
#include "util.h"

static const char usage_text[] =
    "usage: finetune [options] (--init CKPT | --random-init) -o OUT.ckpt [IMAGES]\n"
    "Supervised fine-tuning from labeled images (standard input when no IMAGES).\n"
    "\n"
    "  -o, --output FILE       the fine-tuned checkpoint (with --val: the best epoch's)\n"
    "      --init CKPT         start from this checkpoint's encoder (pretrained; or .safetensors)\n"
    "      --random-init       start from random weights (the supervised baseline)\n"
    "      --task T            multiclass or multilabel (default: the stream header's)\n"
    "      --linear            train the classifier only: frozen encoder and batch norms\n"
    "  -b, --batch N           images per step (default 64), the global batch under mpirun\n"
    "      --micro-batch M     images per micro-batch: the sums over the batch (batch norm,\n"
    "                          weight gradients, the loss) are taken per micro-batch and added\n"
    "                          exactly, so any number of ranks gives the same bytes (under\n"
    "                          mpirun: default batch / gcd(batch, 8); without it and without\n"
    "                          mpirun, one sum per batch); every batch must then be full\n"
    "      --epochs E          epochs (default: the stream header's)\n"
    "      --images-per-epoch P  (default: the stream header's pairs_per_epoch)\n"
    "      --strict-length     refuse a stream longer or shorter than the schedule (default: stop\n"
    "                          at the schedule's end and say what was left unread)\n"
    "      --optimizer O       sgd (default, Nesterov momentum), lars or adamw\n"
    "      --lr LR             base learning rate (default 0.1), scaled by the batch:\n"
    "      --lr-scaling S      linear: LR x N/256 (default); sqrt: LR x sqrt(N)\n"
    "      --momentum M        (default 0.9)\n"
    "      --weight-decay WD   (default 1e-4; 0 with --linear is common)\n"
    "      --warmup-epochs E   (default 0), then cosine decay to 0\n"
    "      --val FILE          validation images (a file: read at the end of every epoch);\n"
    "                          the epoch with the best accuracy (mean AUC) is kept\n"
    "      --log FILE          per-epoch TSV: epoch step train_loss train_acc val_loss val_metric lr\n"
    "      --seed S            classifier (and --random-init encoder) weights (default 0)\n"
    "      --check-ranks K     under mpirun, compare a hash of every rank's weights, batch-norm\n"
    "                          statistics and optimiser state every K steps (a debugging aid)\n"
    "  -T, --threads N         threads (default: all cores; MEDSSL_THREADS)\n"
    "  -q, --quiet             no progress\n"
    "  -h, --help, -V, --version\n"
    MODEL_OPTIONS_HELP;

enum { OPT_INIT = 2000, OPT_RANDOM, OPT_TASK, OPT_LINEAR, OPT_EPOCHS, OPT_IPE, OPT_OPTIM, OPT_LR, OPT_SCALING,
       OPT_MOMENTUM, OPT_WD, OPT_WARMUP, OPT_VAL, OPT_LOG, OPT_SEED, OPT_STRICT_LENGTH, OPT_MICRO,
       OPT_CHECK_RANKS };

typedef struct {
    bool multilabel;
    int classes;
    float *targets;   // multi-label (n, K)
    int *labels;      // multi-class (n)
} label_buf;

// Gathers the batch's labels; dies on an unlabeled record.
static void batch_labels(const batch_reader *in, const record_meta *meta, int n, label_buf *lb)
{
    for (int i = 0; i < n; i++) {
        if (!meta[i].labeled)
            die(batch_name(in), "case '%s' has no label: fine-tuning needs labeled records "
                "(pair-sample --mode single --labeled-only)", meta[i].case_id);
        if (lb->multilabel) {
            if (!meta[i].labels)
                die(batch_name(in), "case '%s': a class index in a multi-label task", meta[i].case_id);
            for (int k = 0; k < lb->classes; k++)
                lb->targets[(size_t)i * lb->classes + k] = meta[i].labels[k];
        } else {
            if (meta[i].labels)
                die(batch_name(in), "case '%s': a multi-label target in a multi-class task", meta[i].case_id);
            if (meta[i].label >= lb->classes)
                die(batch_name(in), "case '%s': label %d out of range (%d classes)", meta[i].case_id,
                    meta[i].label, lb->classes);
            lb->labels[i] = meta[i].label;
        }
    }
}

// One pass over a validation file in eval mode: loss, and accuracy
// (multi-class) or mean AUC over the labels that have both kinds (multi-label).
static void validate(model *m, const char *path, int batch, label_buf *lb, double *loss, double *metric)
{
    batch_reader *in = batch_open(path, 1, "labeled image records (pair-sample --mode single | augment --eval)");
    int c, h, w;
    if (!batch_peek(in))
        die(path, "no validation records");
    batch_shape(in, &c, &h, &w);
    float *x = xaligned_alloc((size_t)batch * c * h * w * sizeof(float));
    record_meta *meta = xcalloc((size_t)batch, sizeof *meta);
    int k = lb->classes;
    size_t cap = 1024, rows = 0;
    double *scores = xmalloc(cap * k * sizeof *scores);
    uint8_t *pos = xmalloc(cap * k);
    double sum = 0, correct = 0;
    int n;
    while ((n = batch_next(in, batch, x, meta)) > 0) {
        batch_labels(in, meta, n, lb);
        model_forward(m, false, n, h, w, x);
        int right = 0;
        double l = lb->multilabel ? sigmoid_bce(m->logits, lb->targets, n, k, n, NULL)
                                  : softmax_xent(m->logits, lb->labels, n, k, n, NULL, &right);
        sum += l * n;
        correct += right;
        if (rows + n > cap) {
            cap = 2 * (rows + n);
            scores = xrealloc(scores, cap * k * sizeof *scores);
            pos = xrealloc(pos, cap * k);
        }
        // Column-major (class by class) for metrics_auc.
        for (int i = 0; i < n; i++)
            for (int j = 0; j < k; j++) {
                scores[(rows + i) * k + j] = m->logits[(size_t)i * k + j];
                pos[(rows + i) * k + j] = lb->multilabel ? (uint8_t)lb->targets[(size_t)i * k + j]
                                                         : (uint8_t)(lb->labels[i] == j);
            }
        rows += n;
    }
    *loss = sum / (double)rows;
    if (!lb->multilabel) {
        *metric = correct / (double)rows;
    } else {
        double *col = xmalloc(rows * sizeof *col);
        uint8_t *pcol = xmalloc(rows);
        double auc_sum = 0;
        int defined = 0;
        for (int j = 0; j < k; j++) {
            for (size_t i = 0; i < rows; i++) {
                col[i] = scores[i * k + j];
                pcol[i] = pos[i * k + j];
            }
            metrics_auc_result a = metrics_auc(col, pcol, rows);
            if (metrics_auc_defined(&a)) {
                auc_sum += a.auc;
                defined++;
            }
        }
        *metric = defined ? auc_sum / defined : NAN;
        free(col);
        free(pcol);
    }
    free(scores);
    free(pos);
    free(meta);
    free(x);
    batch_close(in);
}

// The loss of a batch's n rows (this rank's share of a global batch of
// `total`) and its gradient dlogits (n, classes); *correct: the batch's
// right answers.  micro 0: one sum over the n rows (n == total); else one
// per micro-batch of `micro` rows, added exactly over every rank, so that
// every rank gets the global batch's mean whatever K is.
static double batch_loss(const label_buf *lb, const float *logits, int n, int micro, int total, float *dlogits,
                         int64_t *correct)
{
    const int k = lb->classes;
    if (!micro) {
        int right = 0;
        double loss = lb->multilabel ? sigmoid_bce(logits, lb->targets, n, k, n, dlogits)
                                     : softmax_xent(logits, lb->labels, n, k, n, dlogits, &right);
        *correct = right;
        return loss;
    }
    const int parts = n / micro;
    double *part_loss = xmalloc((size_t)parts * sizeof *part_loss), loss;
    int64_t right_sum = 0;
    for (int p = 0; p < parts; p++) {
        const size_t row = (size_t)p * micro, at = row * k;
        int right = 0;
        part_loss[p] = lb->multilabel ? sigmoid_bce(logits + at, lb->targets + at, micro, k, total, dlogits + at)
                                      : softmax_xent(logits + at, lb->labels + row, micro, k, total, dlogits + at,
                                                     &right);
        right_sum += right;
    }
    dist_sum_f64(part_loss, parts, 1, 1, &loss);
    dist_sum_i64(&right_sum, 1);
    free(part_loss);
    *correct = right_sum;
    return loss;
}

int main(int argc, char **argv)
{
    util_init(argv[0]);
    dist_init(&argc, &argv);
    const int K = dist_size(), rank = dist_rank();
    common_opts co = {0};
    model_opts mo;
    model_opts_init(&mo);
    const char *output = NULL, *init = NULL, *val = NULL, *log_path = NULL, *task = NULL;
    bool random_init = false, linear_only = false, warmup_given = false, strict_length = false;
    int batch = 64, micro = 0;
    int64_t epochs = 0, per_epoch = 0, check_ranks = 0;
    double base_lr = 0.1, momentum = 0.9, weight_decay = 1e-4, warmup_epochs = 0;
    lr_scaling scaling = LR_SCALING_LINEAR;
    optim_kind okind = OPTIM_SGD;
    uint64_t seed = 0;
    static const struct option longopts[] = {
        {"output", required_argument, 0, 'o'}, {"init", required_argument, 0, OPT_INIT},
        {"random-init", no_argument, 0, OPT_RANDOM}, {"task", required_argument, 0, OPT_TASK},
        {"linear", no_argument, 0, OPT_LINEAR}, {"batch", required_argument, 0, 'b'},
        {"epochs", required_argument, 0, OPT_EPOCHS}, {"images-per-epoch", required_argument, 0, OPT_IPE},
        {"optimizer", required_argument, 0, OPT_OPTIM}, {"lr", required_argument, 0, OPT_LR},
        {"lr-scaling", required_argument, 0, OPT_SCALING}, {"momentum", required_argument, 0, OPT_MOMENTUM},
        {"weight-decay", required_argument, 0, OPT_WD}, {"warmup-epochs", required_argument, 0, OPT_WARMUP},
        {"val", required_argument, 0, OPT_VAL}, {"log", required_argument, 0, OPT_LOG},
        {"seed", required_argument, 0, OPT_SEED}, {"strict-length", no_argument, 0, OPT_STRICT_LENGTH},
        {"micro-batch", required_argument, 0, OPT_MICRO}, {"check-ranks", required_argument, 0, OPT_CHECK_RANKS},
        COMMON_LONGOPTS, MODEL_LONGOPTS, {0, 0, 0, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "o:b:" COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (model_opts_parse(&mo, opt, optarg) || common_opts_parse(&co, opt, optarg, usage_text))
            continue;
        switch (opt) {
        case 'o': output = optarg; break;
        case OPT_INIT: init = optarg; break;
        case OPT_RANDOM: random_init = true; break;
        case OPT_TASK:
            if (strcmp(optarg, "multiclass") != 0 && strcmp(optarg, "multilabel") != 0)
                die_usage("--task: '%s' is not multiclass or multilabel", optarg);
            task = optarg;
            break;
        case OPT_LINEAR: linear_only = true; break;
        case 'b': batch = (int)cli_int("--batch", optarg, 1, 1 << 16); break;
        case OPT_EPOCHS: epochs = cli_int("--epochs", optarg, 1, 1 << 30); break;
        case OPT_IPE: per_epoch = cli_int("--images-per-epoch", optarg, 1, INT64_MAX / 2); break;
        case OPT_OPTIM:
            if (!optim_kind_parse(optarg, &okind))
                die_usage("--optimizer: '%s' is not sgd, lars or adamw", optarg);
            break;
        case OPT_LR: base_lr = cli_double("--lr", optarg, 0, 1e4); break;
        case OPT_SCALING:
            if (!lr_scaling_parse(optarg, &scaling))
                die_usage("--lr-scaling: '%s' is not linear or sqrt", optarg);
            break;
        case OPT_MOMENTUM: momentum = cli_double("--momentum", optarg, 0, 1); break;
        case OPT_WD: weight_decay = cli_double("--weight-decay", optarg, 0, 1); break;
        case OPT_WARMUP:
            warmup_epochs = cli_double("--warmup-epochs", optarg, 0, 1e6);
            warmup_given = true;
            break;
        case OPT_VAL: val = optarg; break;
        case OPT_LOG: log_path = optarg; break;
        case OPT_SEED: seed = (uint64_t)cli_int("--seed", optarg, 0, INT64_MAX); break;
        case OPT_STRICT_LENGTH: strict_length = true; break;
        case OPT_MICRO: micro = (int)cli_int("--micro-batch", optarg, 1, 1 << 16); break;
        case OPT_CHECK_RANKS: check_ranks = cli_int("--check-ranks", optarg, 1, INT64_MAX); break;
        default: die_usage("unknown option");
        }
    }
    if (!output)
        die_usage("no output: name the checkpoint with -o");
    if (!init == !random_init)
        die_usage("say where the encoder comes from: --init CKPT or --random-init");
    if (optind < argc - 1)
        die_usage("at most one input stream");
    // Global-batch sums (micro-batches added exactly): under mpirun, or asked
    // for; then each rank trains on `local` images of every batch.
    const bool exact = dist_active() || micro > 0;
    if (exact && !micro)
        micro = train_default_micro(batch);
    if (exact)
        train_check_split(batch, micro, "images");
    const int local = exact ? batch / K : batch;
    if (strict_length && K > 1)
        train_fail_all(EXIT_USAGE, NULL, "--strict-length is not supported over several ranks yet");
    // Rank 0 speaks for the run and writes its files.
    if (rank > 0) {
        co.quiet = true;
        log_path = NULL;
    }
    if (rank == 0)
        check_writable(output);
    blas_init(co.threads);

    batch_reader *in = batch_open(optind < argc ? argv[optind] : NULL, 1,
                                  "labeled image records (pair-sample --mode single | augment)");
    if (!batch_peek(in))
        die(batch_name(in), "no image records in the stream");
    int c, h, w;
    batch_shape(in, &c, &h, &w);
    const stream_info *si = batch_info(in);
    train_check_shard(in, batch);
    train_check_ranks_agree(argc, argv, optind, si, c, h, w);
    if (!task)
        task = si->task;
    if (strcmp(task, "multiclass") != 0 && strcmp(task, "multilabel") != 0)
        die(batch_name(in), "the stream has no labels for a task (header task '%s'): give labeled images", task);
    if (si->nclasses < 1)
        die(batch_name(in), "the stream header names no classes");
    if (!per_epoch)
        per_epoch = si->pairs_per_epoch;
    if (!epochs)
        epochs = si->epochs;
    if (!per_epoch || !epochs)
        die(batch_name(in), "the header gives no pairs_per_epoch/epochs: give --images-per-epoch and --epochs");
    if (exact && per_epoch % batch)
        train_fail_all(1, batch_name(in), "an epoch of %lld images is not whole batches of %d: %s every batch is "
                       "full (feed pair-sample --drop-last --batch %d)", (long long)per_epoch, batch,
                       dist_active() ? "under mpirun" : "with --micro-batch", batch);
    // A batch never spans two epochs: an epoch's last batch may be short.
    int64_t steps_per_epoch = (per_epoch + batch - 1) / batch;
    train_length length = {.unit = "images", .per_epoch = per_epoch, .epochs = epochs,
                           .steps = steps_per_epoch * epochs, .strict = strict_length};
    train_check_length(&length, in);

    model_config ckcfg;
    ckpt_info info = {.loss = NAN};
    char err[300];
    if (init && !ckpt_read_header(init, &ckcfg, &info, err, sizeof err))
        die(init, "%s", err);
    ckpt_info_free(&info);
    model_config cfg = model_opts_resolve(&mo, init ? &ckcfg : NULL, init, c);
    cfg.head_layers = 0;  // a fine-tuned model has no projection head
    cfg.classes = si->nclasses;
    model m;
    model_init(&m, &cfg, seed);
    if (init)
        ckpt_load(init, &m, NULL, CKPT_ENCODER);
    if (linear_only)
        model_freeze_encoder(&m);
    if (exact)
        model_set_micro(&m, micro);
    optim_config oc = optim_defaults(okind);
    if (okind != OPTIM_ADAMW)
        oc.momentum = momentum;
    if (okind == OPTIM_SGD)
        oc.nesterov = true;
    oc.weight_decay = weight_decay;
    optimizer *o = optim_create(&m.params, &oc);
    lr_schedule sched = lr_schedule_simclr(base_lr, scaling, batch, per_epoch, epochs, warmup_epochs);
    // The steps this loop takes, short last batches included (SimCLR's
    // count, examples x epochs / batch + 1, is short of them by up to one
    // per epoch, which would then run at a rate of 0).
    sched.total_steps = length.steps;
    sched.warmup_steps = (int64_t)floor(warmup_epochs * (double)steps_per_epoch);
    train_check_warmup(&length, &sched, warmup_epochs, warmup_given);
    if (!co.quiet) {
        char desc[200];
        model_describe(&cfg, desc, sizeof desc);
        char split[200] = "";
        if (exact)
            snprintf(split, sizeof split, "; %s; %d micro-batches of %d", dist_description(), batch / micro, micro);
        fprintf(stderr, "finetune: %s (%s, %s%s); %s; %lld images x %lld epochs, batch %d, peak lr %g%s\n", desc,
                task, init ? "from " : "random init", init ? init : "", compute_description(), (long long)per_epoch,
                (long long)epochs, batch, sched.peak_lr, split);
    }
    FILE *log = NULL;
    if (log_path) {
        if (!(log = fopen(log_path, "w")))
            die(log_path, "cannot open: %s", strerror(errno));
        fprintf(log, "epoch\tstep\ttrain_loss\ttrain_acc\tval_loss\tval_metric\tlr\n");
    }

    label_buf lb = {.multilabel = strcmp(task, "multilabel") == 0, .classes = cfg.classes};
    lb.targets = xmalloc((size_t)batch * cfg.classes * sizeof(float));
    lb.labels = xmalloc((size_t)batch * sizeof(int));
    size_t plane = (size_t)c * h * w;
    float *x = xaligned_alloc((size_t)batch * plane * sizeof(float));
    float *dlogits = xaligned_alloc((size_t)batch * cfg.classes * sizeof(float));
    record_meta *meta = xcalloc((size_t)batch, sizeof *meta);
    ckpt_info save = {.loss = NAN, .nclasses = si->nclasses};
    snprintf(save.task, sizeof save.task, "%s", task);
    snprintf(save.trained_on, sizeof save.trained_on, "%s", si->trained_on);
    for (int k = 0; k < si->nclasses; k++)
        save.class_names[k] = si->classes[k];
    double best_metric = -INFINITY;
    int64_t best_epoch = -1, step = 0, seen = 0;
    double epoch_loss = 0, epoch_correct = 0;
    int64_t epoch_rows = 0, epoch = 0;
    progress_t prog;
    progress_init(&prog, 30);
    double t0 = now_seconds();
    volatile sig_atomic_t stop = 0;
    on_stop_signal(&stop);
    batch_stop_on(in, &stop);
    int halt = 0;  // the signal that stops the run, once every rank knows it
    for (;;) {
        // A batch never spans two epochs, so that validation sees whole epochs.
        int64_t left = per_epoch - (seen - epoch * per_epoch);
        int want = exact ? local : left < batch ? (int)left : batch;
        int n = batch_next(in, want, x, meta);
        halt = (int)stop;
        if (exact) {
            // Every rank takes the step or none does: a rank whose stream
            // ended (or was cut by a signal) stops them all.  A signal that
            // comes later is seen at the next step's agreement.
            int ended[2] = {n < want, halt};
            dist_max_int(ended, 2);
            halt = ended[1];
            if (ended[0])
                n = 0;
        }
        if (n > 0) {
            batch_labels(in, meta, n, &lb);
            param_zero_grad(&m.params);
            model_forward(&m, true, n, h, w, x);
            const int rows = exact ? batch : n;   // the global batch
            int64_t right = 0;
            double loss = batch_loss(&lb, m.logits, n, exact ? micro : 0, rows, dlogits, &right);
            if (!isfinite(loss))
                train_fail_all(1, "training", "step %lld: the loss is %g; stopping (try a lower --lr)",
                               (long long)step, loss);
            model_backward(&m, NULL, dlogits);
            double lr = lr_at(&sched, step);
            optim_step(o, lr);
            step++;
            seen += rows;
            epoch_loss += loss * rows;
            epoch_correct += (double)right;
            epoch_rows += rows;
            if (!co.quiet)
                progress_update(&prog, "epoch %lld step %lld loss %.4f lr %.4g %.1f img/s", (long long)epoch + 1,
                                (long long)step, loss, lr, seen / (now_seconds() - t0));
            if (check_ranks && step % check_ranks == 0)
                train_check_same_state(&m, o, step);
            if (!exact)
                halt = (int)stop;   // a signal during the step stops the run after it
        }
        bool epoch_done = n > 0 && seen == (epoch + 1) * per_epoch;
        if (epoch_done || (n == 0 && epoch_rows > 0) || halt) {
            double vloss = NAN, vmetric = NAN;
            if (val && rank == 0 && (epoch_done || n == 0))
                validate(&m, val, batch, &lb, &vloss, &vmetric);
            epoch++;
            if (log) {
                fprintf(log, "%lld\t%lld\t%.6f\t%.4f\t%.6f\t%.6f\t%.6g\n", (long long)epoch, (long long)step,
                        epoch_loss / epoch_rows, lb.multilabel ? NAN : epoch_correct / epoch_rows, vloss, vmetric,
                        lr_at(&sched, step));
                // A full disk must stop the run, not leave a log that ends early.
                if (fflush(log) != 0 || ferror(log))
                    die(log_path, "write error: %s", strerror(errno));
            }
            if (!co.quiet) {
                progress_done(&prog);
                fprintf(stderr, "finetune: epoch %lld: train loss %.4f%s", (long long)epoch, epoch_loss / epoch_rows,
                        val ? "" : "\n");
                if (val)
                    fprintf(stderr, ", val loss %.4f, val %s %.4f\n", vloss, lb.multilabel ? "mean AUC" : "accuracy",
                            vmetric);
            }
            save.step = step;
            save.records = seen;
            save.epoch = epoch;
            save.loss = epoch_loss / epoch_rows;
            if (val && rank == 0 && vmetric > best_metric) {
                // The best epoch so far goes to the output right away, so an
                // interrupted run keeps it.
                best_metric = vmetric;
                best_epoch = epoch;
                ckpt_save(output, &m, NULL, &save, "finetune", argc, argv);
            }
            epoch_loss = epoch_correct = 0;
            epoch_rows = 0;
        }
        if (seen == epochs * per_epoch && !halt)
            break;
        if (halt) {
            if (rank == 0) {
                if (!val)
                    ckpt_save(output, &m, NULL, &save, "finetune", argc, argv);
                if (!val)
                    fprintf(stderr, "finetune: stopped by a signal at step %lld; %s saved\n", (long long)step,
                            output);
                else if (best_epoch > 0)
                    fprintf(stderr, "finetune: stopped by a signal at step %lld; %s holds the best epoch so far "
                            "(%lld)\n", (long long)step, output, (long long)best_epoch);
                else
                    fprintf(stderr, "finetune: stopped by a signal at step %lld, before an epoch with a validation "
                            "metric: nothing saved\n", (long long)step);
            }
            break;
        }
        if (n == 0)
            break;
    }
    if (!halt) {
        if (step == 0)
            train_fail_all(1, batch_name(in), exact ? "fewer images than one batch of %d: nothing trained"
                           : "no records: nothing trained", batch);
        if (seen == epochs * per_epoch)
            train_schedule_done(&length, in, seen, step, batch, co.quiet);
        else if (rank == 0)
            train_stream_short(&length, in, step);
        if (rank == 0 && (!val || best_epoch < 0))  // no validation, or no epoch with a defined metric
            ckpt_save(output, &m, NULL, &save, "finetune", argc, argv);
        if (!co.quiet)
            fprintf(stderr, "finetune: %lld steps, %.1f images/s; %s%s\n", (long long)step,
                    seen / (now_seconds() - t0), output, best_epoch >= 0 ? "" : " (the last epoch)");
        if (!co.quiet && best_epoch >= 0)
            fprintf(stderr, "finetune: kept epoch %lld (val %s %.4f)\n", (long long)best_epoch,
                    lb.multilabel ? "mean AUC" : "accuracy", best_metric);
    }
    train_report_mpi(now_seconds() - t0, co.quiet);
    if (log && fclose(log) != 0)
        die(log_path, "write error: %s", strerror(errno));
    free(x);
    free(dlogits);
    free(meta);
    free(lb.targets);
    free(lb.labels);
    optim_free(o);
    model_free(&m);
    batch_close(in);
    dist_finalize();
    return halt ? 128 + halt : 0;
}
