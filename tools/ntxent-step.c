// ntxent-step: contrastive pretraining (SimCLR, MICLe) from a stream of
// augmented pairs: encoder + projection head, NT-Xent, backward, LARS,
// warmup + cosine; checkpoints, resumable (see ntxent-step(1)).
//
//   pair-sample ... | augment ... | ntxent-step --batch 256 -o run.ckpt
//
// Under mpirun -np K (see dist.h), each rank trains on its shard of every
// global batch (pair-sample --shard R/K --batch B) and the ranks keep one
// model: the same bytes as one process.
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
#include "model.h"
#include "optim.h"
#include "schedule.h"
#include "train.h"
#include "util.h"

static const char usage_text[] =
    "usage: ntxent-step [options] -o OUT.ckpt [PAIRS]\n"
    "Contrastive pretraining from augmented pairs (standard input when no PAIRS).\n"
    "\n"
    "  -o, --output FILE       the checkpoint (rewritten atomically at every save)\n"
    "  -b, --batch N           pairs per step (default 256), the global batch under mpirun\n"
    "      --micro-batch M     pairs per micro-batch: the sums over the batch (batch norm,\n"
    "                          weight gradients) are taken per micro-batch and added exactly,\n"
    "                          so any number of ranks gives the same bytes (default: batch /\n"
    "                          gcd(batch, 8); each rank's batch / K must be whole micro-batches)\n"
    "      --tau T             NT-Xent temperature (default 0.1; 0.2 suits small batches)\n"
    "      --lr LR             base learning rate (default 0.3), scaled by the batch:\n"
    "      --lr-scaling S      linear: LR x N/256 (default); sqrt: LR x sqrt(N)\n"
    "      --optimizer O       lars (default), sgd or adamw\n"
    "      --momentum M        (default 0.9)\n"
    "      --weight-decay WD   (default 1e-6)\n"
    "      --warmup-epochs E   linear warmup (default 10, or a tenth of a schedule shorter than\n"
    "                          100 epochs), then cosine decay to 0\n"
    "      --epochs E          schedule length (default: the stream header's)\n"
    "      --pairs-per-epoch P (default: the stream header's)\n"
    "      --strict-length     refuse a stream longer or shorter than the schedule (default: stop\n"
    "                          at the schedule's end and say what was left unread)\n"
    "      --init CKPT         start from another checkpoint's encoder (and its head when\n"
    "                          it has the same shape; or .safetensors): step 2 of the protocol\n"
    "      --resume CKPT       continue a run exactly (feed pair-sample --start STEP x N)\n"
    "      --save-every K      also save every K steps (default 0: at the end only)\n"
    "      --log FILE          per-step TSV: step epoch loss pos_acc lr images_per_s knn_acc\n"
    MONITOR_OPTIONS_HELP
    "      --seed S            initial weights (default 0)\n"
    "      --check-ranks K     under mpirun, compare a hash of every rank's weights, batch-norm\n"
    "                          statistics and optimiser state every K steps (a debugging aid)\n"
    "  -T, --threads N         threads (default: all cores; MEDSSL_THREADS)\n"
    "  -q, --quiet             no progress\n"
    "  -h, --help, -V, --version\n"
    MODEL_OPTIONS_HELP;

enum { OPT_TAU = 2000, OPT_MICRO, OPT_CHECK_RANKS };

int main(int argc, char **argv)
{
    util_init(argv[0]);
    dist_init(&argc, &argv);
    const int K = dist_size(), rank = dist_rank();
    common_opts co = {0};
    model_opts mo;
    model_opts_init(&mo);
    double tau = 0.1;
    int micro = 0;
    int64_t check_ranks = 0;
    pretrain_opts po = {.batch = 256, .lr = 0.3, .momentum = 0.9, .weight_decay = 1e-6,
                        .scaling = LR_SCALING_LINEAR, .optimizer = OPTIM_LARS};
    monitor_opts mon;
    monitor_opts_init(&mon, argc, argv);
    static const struct option longopts[] = {
        {"tau", required_argument, 0, OPT_TAU}, {"micro-batch", required_argument, 0, OPT_MICRO},
        {"check-ranks", required_argument, 0, OPT_CHECK_RANKS}, PRETRAIN_LONGOPTS, MONITOR_LONGOPTS, COMMON_LONGOPTS, MODEL_LONGOPTS,
        {0, 0, 0, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, PRETRAIN_SHORTOPTS COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (pretrain_opts_parse(&po, opt, optarg) || model_opts_parse(&mo, opt, optarg) ||
            monitor_opts_parse(&mon, opt, optarg) || common_opts_parse(&co, opt, optarg, usage_text))
            continue;
        switch (opt) {
        case OPT_TAU: tau = cli_double("--tau", optarg, 1e-4, 100); break;
        case OPT_CHECK_RANKS: check_ranks = cli_int("--check-ranks", optarg, 1, INT64_MAX); break;
        case OPT_MICRO: micro = (int)cli_int("--micro-batch", optarg, 1, 1 << 16); break;
        default: die_usage("unknown option");
        }
    }
    pretrain_opts_check(&po, argc - optind);
    int ck_argc;
    char **ck_argv = monitor_opts_args(&mon, argc, &ck_argc);
    const int batch = po.batch;
    if (!micro)
        micro = train_default_micro(batch);
    train_check_split(batch, micro, "pairs");
    const int local = batch / K;   // this rank's pairs per step
    if (po.strict_length && K > 1)
        train_fail_all(EXIT_USAGE, NULL, "--strict-length is not supported over several ranks yet");
    // Rank 0 speaks for the run, writes its files and runs the monitor.
    if (rank > 0) {
        co.quiet = true;
        mon.path = NULL;
    }
    if (rank == 0)
        check_writable(po.output);
    blas_init(co.threads);

    batch_reader *in = batch_open(optind < argc ? argv[optind] : NULL, 2,
                                  "pair records from pair-sample | augment");
    if (!batch_peek(in))
        die(batch_name(in), "no pair records in the stream");
    int c, h, w;
    batch_shape(in, &c, &h, &w);
    const stream_info *si = batch_info(in);
    train_check_shard(in, batch);
    train_check_ranks_agree(argc, argv, optind, si, c, h, w);
    train_length length = train_pair_schedule(in, po.pairs_per_epoch, po.epochs, po.batch, po.strict_length);
    po.pairs_per_epoch = length.per_epoch, po.epochs = length.epochs;

    // The model: fresh, from --init, or from --resume.
    model_config ckcfg;
    ckpt_info info = {.loss = NAN};
    const char *from = po.resume ? po.resume : po.init;
    char err[300];
    if (from && !ckpt_read_header(from, &ckcfg, &info, err, sizeof err))
        die(from, "%s", err);
    model_config cfg = model_opts_resolve(&mo, from ? &ckcfg : NULL, from, c);
    if (cfg.head_layers == 0)
        die_usage("--head-layers 0: contrastive training needs a projection head");
    cfg.classes = 0;
    model m;
    model_init(&m, &cfg, po.seed);
    model_set_micro(&m, 2 * micro);
    optim_config oc = pretrain_optim_config(&po);
    optimizer *o = optim_create(&m.params, &oc);
    int64_t step = 0;
    if (po.resume) {
        train_check_resumable(po.resume, &info, po.optimizer);
        ckpt_load(po.resume, &m, o, CKPT_ENCODER | CKPT_HEAD | CKPT_STATE);
        step = info.step;
        train_check_start(in, step, po.batch);
    } else if (po.init) {
        bool same_head = train_same_head(&ckcfg, &cfg);
        ckpt_load(po.init, &m, NULL, CKPT_ENCODER | (same_head ? CKPT_HEAD : 0));
        if (!co.quiet)
            fprintf(stderr, "ntxent-step: %s: initialised the encoder%s\n", po.init,
                    same_head ? " and the projection head" : " (the head is new: its shape differs)");
    }
    ckpt_info_free(&info);

    // SimCLR's 10 warm-up epochs are a tenth of its shortest schedule.
    if (!po.warmup_given)
        po.warmup_epochs = po.epochs < 100 ? (double)po.epochs / 10 : 10;
    lr_schedule sched = lr_schedule_simclr(po.lr, po.scaling, po.batch, po.pairs_per_epoch, po.epochs, po.warmup_epochs);
    train_check_warmup(&length, &sched, po.warmup_epochs, po.warmup_given);
    FILE *log = NULL;
    // Read and checked before the log is opened and the first step: a bad
    // stream stops the run before it writes anything.
    monitor_start(&mon, cfg.encoder.in_ch, co.quiet);
    if (po.log_path && rank == 0) {
        log = fopen(po.log_path, po.resume ? "a" : "w");
        if (!log)
            die(po.log_path, "cannot open: %s", strerror(errno));
        if (!po.resume)
            fprintf(log, "step\tepoch\tloss\tpos_acc\tlr\timages_per_s\tknn_acc\n");
    }
    if (!co.quiet) {
        char desc[200];
        model_describe(&cfg, desc, sizeof desc);
        fprintf(stderr, "ntxent-step: %s, %zu parameters; %s; %s; batch %d, %lld steps (%lld of warm-up), peak lr "
                "%g, tau %g; %d micro-batches of %d\n", desc, param_count(&m.params), compute_description(),
                dist_description(), batch, (long long)length.steps, (long long)sched.warmup_steps, sched.peak_lr,
                tau, batch / micro, micro);
    }

    size_t plane = (size_t)c * h * w;
    // x: this rank's (2 local, C, H, W) views; z and dz: the global batch's
    // (2 batch, proj_dim) projections, gathered, and their gradient.
    float *x = xaligned_alloc((size_t)2 * local * plane * sizeof(float));
    float *z = xaligned_alloc((size_t)2 * batch * cfg.proj_dim * sizeof(float));
    float *dz = xaligned_alloc((size_t)2 * batch * cfg.proj_dim * sizeof(float));
    volatile sig_atomic_t stop = 0;
    on_stop_signal(&stop);
    batch_stop_on(in, &stop);
    progress_t prog;
    progress_init(&prog, 30);
    double t_start = now_seconds(), loss_avg = NAN;
    int64_t first_step = step;
    float last_loss = NAN;
    ckpt_info save = {.loss = NAN};
    snprintf(save.trained_on, sizeof save.trained_on, "%s", si->trained_on);
    bool schedule_done = false;
    for (;;) {
        if (step >= length.steps) {
            schedule_done = true;
            break;
        }
        int n = batch_next(in, local, x, NULL);
        // Every rank takes the step or none does: a rank whose stream ended
        // (or was cut by a signal) stops them all.
        int ended[2] = {n < local, (int)stop};
        dist_max_int(ended, 2);
        if (ended[0]) {
            if (ended[1])
                stop = ended[1];
            else if (rank == 0)
                train_stream_short(&length, in, step);
            break;
        }
        double t0 = now_seconds();
        param_zero_grad(&m.params);
        model_forward(&m, true, 2 * n, h, w, x);
        // Every rank computes the whole loss from every rank's projections
        // and keeps the gradient of its own rows: that gradient includes
        // their part as the other rows' negatives, and is the one process's
        // to the bit (the loss's cost, O(batch^2 proj_dim), is small beside
        // the encoder's).
        const size_t zrows = (size_t)2 * n * cfg.proj_dim;
        dist_allgather(m.proj, zrows * sizeof(float), z);
        int correct = 0;
        float loss = ntxent_loss(z, 2 * batch, cfg.proj_dim, 0, 2 * batch, (float)tau, dz, &correct);
        if (!isfinite(loss))
            train_fail_all(1, "training", "step %lld: the loss is %g; stopping (the last checkpoint, if any, is intact; "
                     "try a lower --lr or a higher --tau)", (long long)step, loss);
        model_backward(&m, dz + (size_t)rank * zrows, NULL);
        double lr = lr_at(&sched, step);
        optim_step(o, lr);
        step++;
        last_loss = loss;
        loss_avg = isnan(loss_avg) ? loss : 0.98 * loss_avg + 0.02 * loss;
        double dt = now_seconds() - t0, epoch = (double)(step * po.batch) / po.pairs_per_epoch;
        // Between steps, when the training forward's activations are no
        // longer needed; rows of 2n images, the training batch, so that
        // images of the training's size need no larger buffers.
        bool measured = monitor_after_step(&mon, step, length.steps, &m.enc, 2 * n);
        if (log) {
            char knn_col[32] = "";
            if (measured)
                snprintf(knn_col, sizeof knn_col, "%.4f", mon.acc);
            fprintf(log, "%lld\t%.4f\t%.6f\t%.4f\t%.6g\t%.1f\t%s\n", (long long)step, epoch, loss,
                    (double)correct / (2 * batch), lr, 2 * batch / dt, knn_col);
            // A full disk must stop the run, not leave a log that ends early.
            if (fflush(log) != 0 || ferror(log))
                die(po.log_path, "write error: %s", strerror(errno));
        }
        if (!co.quiet) {
            double el = now_seconds() - t_start, per = el / (double)(step - first_step);
            char knn_text[48];
            monitor_progress_text(&mon, knn_text, sizeof knn_text);
            progress_update(&prog, "step %lld/%lld epoch %.2f loss %.4f (avg %.4f) pos-acc %.3f%s lr %.4g %.1f img/s %.0f s left",
                            (long long)step, (long long)length.steps, epoch, loss, loss_avg,
                            (double)correct / (2 * batch), knn_text, lr, 2 * batch / dt, per * (double)(length.steps - step));
        }
        save.step = step;
        save.records = step * po.batch;
        save.epoch = (int64_t)epoch;
        save.loss = last_loss;
        // The ranks stop after the same step (a signal reaches them at
        // different moments).
        int stopping = (int)stop;
        dist_max_int(&stopping, 1);
        if (stopping) {
            stop = stopping;
            break;
        }
        if (check_ranks && step % check_ranks == 0)
            train_check_same_state(&m, o, step);
        if (po.save_every && step % po.save_every == 0 && rank == 0)
            ckpt_save(po.output, &m, o, &save, "ntxent-step", ck_argc, ck_argv);
    }
    if (!co.quiet)
        progress_done(&prog);
    if (stop) {
        // The signal came during a step (finished first) or while waiting
        // for input (the producer, stopped by the same signal, may have cut
        // the stream short): either way the last step taken is saved.
        if (step > first_step && rank == 0)
            ckpt_save(po.output, &m, o, &save, "ntxent-step", ck_argc, ck_argv);
        if (!co.quiet)
            train_report_stop(stop, step, step > first_step, po.output);
    } else {
        if (step == first_step && !schedule_done)
            train_fail_all(1, batch_name(in), "fewer pairs than one batch of %d: nothing trained", batch);
        if (schedule_done)
            train_schedule_done(&length, in, (step - first_step) * po.batch, step, po.batch, co.quiet);
        save.step = step;   // also when a resumed run had nothing left to do
        save.records = step * po.batch;
        save.epoch = step * po.batch / po.pairs_per_epoch;
        if (rank == 0)
            ckpt_save(po.output, &m, o, &save, "ntxent-step", ck_argc, ck_argv);
        if (!co.quiet)
            fprintf(stderr, "ntxent-step: %lld steps, final loss %.4f, %.1f images/s; saved %s\n",
                    (long long)(step - first_step), last_loss,
                    2.0 * po.batch * (double)(step - first_step) / (now_seconds() - t_start), po.output);
    }
    monitor_finish(&mon, now_seconds() - t_start, co.quiet);
    train_report_mpi(now_seconds() - t_start, co.quiet);
    if (log && fclose(log) != 0)
        die(po.log_path, "write error: %s", strerror(errno));
    free(ck_argv);
    free(x);
    free(z);
    free(dz);
    optim_free(o);
    model_free(&m);
    batch_close(in);
    dist_finalize();
    return stop ? 128 + stop : 0;
}
