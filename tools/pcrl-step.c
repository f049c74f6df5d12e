// pcrl-step: PCRL pretraining (contrast + reconstruction of three contexts
// by a U-Net decoder) from a stream of augmented pairs with their targets:
// student, momentum teacher, key queue, SGD, cosine; checkpoints, resumable
// (see pcrl-step(1)).
//
//   pair-sample ... | augment --targets ... | pcrl-step --batch 256 -o run.ckpt
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
#include "model.h"
#include "optim.h"
#include "pcrl.h"
#include "schedule.h"
#include "train.h"
#include "util.h"

static const char usage_text[] =
    "usage: pcrl-step [options] -o OUT.ckpt [PAIRS]\n"
    "PCRL pretraining from augmented pairs with reconstruction targets (augment --targets;\n"
    "standard input when no PAIRS); SimCLR or MICLe pairs alike.\n"
    "\n"
    "  -o, --output FILE       the checkpoint (rewritten atomically at every save)\n"
    "  -b, --batch N           pairs per step (default 256)\n"
    "      --contrast C        moco: InfoNCE against a queue of momentum keys (default, PCRL's);\n"
    "                          ntxent: NT-Xent over the batch (SimCLR's, as ntxent-step)\n"
    "      --tau T             temperature (default 0.2)\n"
    "      --queue K           keys in the queue (moco; default 16384)\n"
    "      --ema M             the momentum teacher's rate (default 0.999)\n"
    "      --recon-weight W    loss = contrast + W x mean of the 3 reconstruction MSEs (default 1)\n"
    "      --lr LR             base learning rate (default 0.03), scaled by the batch:\n"
    "      --lr-scaling S      linear: LR x N/256 (default); sqrt: LR x sqrt(N)\n"
    "      --optimizer O       sgd (default), lars or adamw\n"
    "      --momentum M        (default 0.9)\n"
    "      --weight-decay WD   (default 1e-4)\n"
    "      --warmup-epochs E   linear warmup (default 0), then cosine decay to 0\n"
    "      --epochs E          schedule length (default: the stream header's)\n"
    "      --pairs-per-epoch P (default: the stream header's)\n"
    "      --strict-length     refuse a stream longer or shorter than the schedule\n"
    "      --init CKPT         start the student (and teacher) from another checkpoint's encoder\n"
    "                          (and head when it has the same shape; or .safetensors)\n"
    "      --resume CKPT       continue a run exactly (feed pair-sample --start STEP x N)\n"
    "      --save-every K      also save every K steps (default 0: at the end only)\n"
    "      --log FILE          per-step TSV: step epoch loss contrast recon_ordinary recon_momentum\n"
    "                          recon_hybrid alpha pos_acc lr images_per_s knn_acc\n"
    MONITOR_OPTIONS_HELP
    "      --seed S            initial weights, queue and mixing draws (default 0)\n"
    "  -T, --threads N         threads (default: all cores; MEDSSL_THREADS)\n"
    "  -q, --quiet             no progress\n"
    "  -h, --help, -V, --version\n"
    MODEL_OPTIONS_HELP
    "(pcrl-step's head: 2 layers, hidden width 128, as the official PCRL code's)\n";

enum { OPT_CONTRAST = 2000, OPT_TAU, OPT_QUEUE, OPT_EMA, OPT_RECON };

int main(int argc, char **argv)
{
    util_init(argv[0]);
    common_opts co = {0};
    model_opts mo;
    model_opts_init(&mo);
    mo.cfg.head_layers = 2;
    mo.cfg.head_hidden = 128;
    pcrl_config pc = pcrl_defaults();
    pretrain_opts po = {.batch = 256, .lr = 0.03, .momentum = 0.9, .weight_decay = 1e-4,
                        .scaling = LR_SCALING_LINEAR, .optimizer = OPTIM_SGD};
    monitor_opts mon;
    monitor_opts_init(&mon, argc, argv);
    static const struct option longopts[] = {
        {"contrast", required_argument, 0, OPT_CONTRAST}, {"tau", required_argument, 0, OPT_TAU},
        {"queue", required_argument, 0, OPT_QUEUE}, {"ema", required_argument, 0, OPT_EMA},
        {"recon-weight", required_argument, 0, OPT_RECON}, PRETRAIN_LONGOPTS, MONITOR_LONGOPTS, COMMON_LONGOPTS,
        MODEL_LONGOPTS, {0, 0, 0, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, PRETRAIN_SHORTOPTS COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (pretrain_opts_parse(&po, opt, optarg) || model_opts_parse(&mo, opt, optarg) ||
            monitor_opts_parse(&mon, opt, optarg) || common_opts_parse(&co, opt, optarg, usage_text))
            continue;
        switch (opt) {
        case OPT_CONTRAST:
            if (!pcrl_contrast_parse(optarg, &pc.contrast))
                die_usage("--contrast: '%s' is not moco or ntxent", optarg);
            break;
        case OPT_TAU: pc.tau = cli_double("--tau", optarg, 1e-4, 100); break;
        case OPT_QUEUE: pc.queue = (int)cli_int("--queue", optarg, 1, 1 << 24); break;
        case OPT_EMA: pc.ema = cli_double("--ema", optarg, 0, 1); break;
        case OPT_RECON: pc.recon_weight = cli_double("--recon-weight", optarg, 0, 1e6); break;
        default: die_usage("unknown option");
        }
    }
    pretrain_opts_check(&po, argc - optind);
    int ck_argc;
    char **ck_argv = monitor_opts_args(&mon, argc, &ck_argc);
    check_writable(po.output);
    blas_init(co.threads);

    batch_reader *in = batch_open(optind < argc ? argv[optind] : NULL, 2,
                                  "pair records with targets from pair-sample | augment --targets");
    if (!batch_peek(in))
        die(batch_name(in), "no pair records in the stream");
    int c, h, w;
    batch_shape(in, &c, &h, &w);
    const stream_info *si = batch_info(in);
    train_length length = train_pair_schedule(in, po.pairs_per_epoch, po.epochs, po.batch, po.strict_length);
    po.pairs_per_epoch = length.per_epoch, po.epochs = length.epochs;

    // The networks: fresh, from --init, or from --resume.
    model_config ckcfg;
    ckpt_info info = {.loss = NAN};
    const char *from = po.resume ? po.resume : po.init;
    char err[400];
    if (from && !ckpt_read_header(from, &ckcfg, &info, err, sizeof err))
        die(from, "%s", err);
    model_config cfg = model_opts_resolve(&mo, from ? &ckcfg : NULL, from, c);
    if (cfg.head_layers == 0)
        die_usage("--head-layers 0: the contrast needs a projection head");
    cfg.classes = 0;
    pcrl p;
    pcrl_init(&p, &cfg, &pc, po.seed);
    if (!unet_size_ok(&p.decoder, h, w, err, sizeof err))
        die(batch_name(in), "%s (augment --size)", err);
    optim_config oc = pretrain_optim_config(&po);
    optimizer *o = optim_create(&p.params, &oc);
    ckpt_extra extra = {0};
    pcrl_checkpoint_tensors(&p, &extra);
    int64_t step = 0;
    if (po.resume) {
        train_check_resumable(po.resume, &info, po.optimizer);
        if (!ckpt_load_extra(po.resume, &p.student, o, &extra, CKPT_ENCODER | CKPT_HEAD | CKPT_STATE | CKPT_EXTRA, err,
                             sizeof err))
            die(po.resume, "%s%s", err, strstr(err, "queue") || strstr(err, "decoder") || strstr(err, "momentum.")
                                          ? " (--resume takes a checkpoint of pcrl-step with the same --contrast "
                                            "and --queue)"
                                          : "");
        if (!info.has_rng || !rng_restore(&p.alpha_rng, info.rng))
            die(po.resume, "no random state for the mixing draws in it: not a checkpoint of pcrl-step");
        if (p.queue && (p.queue_pos < 0 || p.queue_pos >= pc.queue))
            die(po.resume, "queue.position %lld is outside the queue of %d keys", (long long)p.queue_pos, pc.queue);
        step = info.step;
        train_check_start(in, step, po.batch);
    } else if (po.init) {
        bool same_head = train_same_head(&ckcfg, &cfg);
        ckpt_load(po.init, &p.student, NULL, CKPT_ENCODER | (same_head ? CKPT_HEAD : 0));
        pcrl_sync_teacher(&p);
        if (!co.quiet)
            fprintf(stderr, "pcrl-step: %s: initialised the encoder%s; the teacher is its copy\n", po.init,
                    same_head ? " and the projection head" : " (the head is new: its shape differs)");
    }
    ckpt_info_free(&info);

    lr_schedule sched = lr_schedule_simclr(po.lr, po.scaling, po.batch, po.pairs_per_epoch, po.epochs, po.warmup_epochs);
    train_check_warmup(&length, &sched, po.warmup_epochs, po.warmup_given);
    // Read and checked before the log is opened and the first step.
    monitor_start(&mon, cfg.encoder.in_ch, co.quiet);
    FILE *log = NULL;
    if (po.log_path) {
        log = fopen(po.log_path, po.resume ? "a" : "w");
        if (!log)
            die(po.log_path, "cannot open: %s", strerror(errno));
        if (!po.resume)
            fprintf(log, "step\tepoch\tloss\tcontrast\trecon_ordinary\trecon_momentum\trecon_hybrid\talpha\tpos_acc\t"
                         "lr\timages_per_s\tknn_acc\n");
    }
    if (!co.quiet) {
        char desc[200];
        model_describe(&cfg, desc, sizeof desc);
        fprintf(stderr, "pcrl-step: %s + decoder, %zu parameters; %s; batch %d, %lld steps (%lld of warm-up), "
                "peak lr %g; %s, tau %g; recon weight %g\n", desc, param_count(&p.params), compute_description(), po.batch,
                (long long)length.steps, (long long)sched.warmup_steps, sched.peak_lr,
                pc.contrast == PCRL_MOCO ? "InfoNCE against a queue" : "NT-Xent", pc.tau, pc.recon_weight);
        if (pc.contrast == PCRL_MOCO)
            fprintf(stderr, "pcrl-step: queue of %d keys, teacher momentum %g\n", pc.queue, pc.ema);
    }

    size_t plane = (size_t)c * h * w;
    float *x = xaligned_alloc((size_t)2 * po.batch * plane * sizeof(float));
    float *targets = xaligned_alloc((size_t)2 * po.batch * plane * sizeof(float));
    float *codes = xmalloc((size_t)2 * po.batch * 6 * sizeof(float));
    volatile sig_atomic_t stop = 0;
    on_stop_signal(&stop);
    batch_stop_on(in, &stop);
    progress_t prog;
    progress_init(&prog, 30);
    double t_start = now_seconds(), loss_avg = NAN;
    int64_t first_step = step;
    float last_loss = NAN;
    ckpt_info save = {.loss = NAN, .has_rng = true};
    snprintf(save.trained_on, sizeof save.trained_on, "%s", si->trained_on);
    bool schedule_done = false;
    for (;;) {
        if (step >= length.steps) {
            schedule_done = true;
            break;
        }
        int n = batch_next_targets(in, po.batch, x, targets, codes, NULL);
        if (n < po.batch) {
            if (!stop)
                train_stream_short(&length, in, step);
            break;
        }
        double t0 = now_seconds();
        pcrl_losses l;
        pcrl_step(&p, n, h, w, x, targets, codes, &l);
        if (!isfinite(l.loss))
            die("training", "step %lld: the loss is %g; stopping (the last checkpoint, if any, is intact; "
                "try a lower --lr or a higher --tau)", (long long)step, l.loss);
        double lr = lr_at(&sched, step);
        optim_step(o, lr);
        pcrl_update_teacher(&p);
        step++;
        last_loss = l.loss;
        loss_avg = isnan(loss_avg) ? l.loss : 0.98 * loss_avg + 0.02 * l.loss;
        double dt = now_seconds() - t0, epoch = (double)(step * po.batch) / po.pairs_per_epoch,
               pos_acc = (double)l.correct / l.anchors;
        // Between steps; the student's batch of rows, so that its buffers suffice.
        bool measured = monitor_after_step(&mon, step, length.steps, &p.student.enc, l.anchors);
        if (log) {
            char knn_col[32] = "";
            if (measured)
                snprintf(knn_col, sizeof knn_col, "%.4f", mon.acc);
            fprintf(log, "%lld\t%.4f\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.4f\t%.4f\t%.6g\t%.1f\t%s\n", (long long)step,
                    epoch, l.loss, l.contrast, l.recon[0], l.recon[1], l.recon[2], l.alpha, pos_acc, lr, 2 * n / dt,
                    knn_col);
            if (fflush(log) != 0 || ferror(log))
                die(po.log_path, "write error: %s", strerror(errno));
        }
        if (!co.quiet) {
            double el = now_seconds() - t_start, per = el / (double)(step - first_step);
            char knn_text[48];
            monitor_progress_text(&mon, knn_text, sizeof knn_text);
            progress_update(&prog, "step %lld/%lld epoch %.2f loss %.4f (avg %.4f) contrast %.3f recon %.4f pos-acc "
                            "%.3f%s lr %.4g %.1f img/s %.0f s left", (long long)step, (long long)length.steps, epoch,
                            l.loss, loss_avg, l.contrast, (l.recon[0] + l.recon[1] + l.recon[2]) / 3, pos_acc,
                            knn_text, lr, 2 * n / dt, per * (double)(length.steps - step));
        }
        save.step = step;
        save.records = step * po.batch;
        save.epoch = (int64_t)epoch;
        save.loss = last_loss;
        rng_save(&p.alpha_rng, save.rng);
        if (stop)
            break;
        if (po.save_every && step % po.save_every == 0)
            ckpt_save_extra(po.output, &p.student, o, &extra, &save, "pcrl-step", ck_argc, ck_argv);
    }
    if (!co.quiet)
        progress_done(&prog);
    if (stop) {
        if (step > first_step)
            ckpt_save_extra(po.output, &p.student, o, &extra, &save, "pcrl-step", ck_argc, ck_argv);
        if (!co.quiet)
            train_report_stop(stop, step, step > first_step, po.output);
    } else {
        if (step == first_step && !schedule_done)
            die(batch_name(in), "fewer pairs than one batch of %d: nothing trained", po.batch);
        if (schedule_done)
            train_schedule_done(&length, in, (step - first_step) * po.batch, step, po.batch, co.quiet);
        save.step = step;
        save.records = step * po.batch;
        save.epoch = step * po.batch / po.pairs_per_epoch;
        rng_save(&p.alpha_rng, save.rng);
        ckpt_save_extra(po.output, &p.student, o, &extra, &save, "pcrl-step", ck_argc, ck_argv);
        if (!co.quiet)
            fprintf(stderr, "pcrl-step: %lld steps, final loss %.4f, %.1f images/s; saved %s\n",
                    (long long)(step - first_step), last_loss,
                    2.0 * po.batch * (double)(step - first_step) / (now_seconds() - t_start), po.output);
    }
    monitor_finish(&mon, now_seconds() - t_start, co.quiet);
    if (log && fclose(log) != 0)
        die(po.log_path, "write error: %s", strerror(errno));
    free(ck_argv);
    free(x);
    free(targets);
    free(codes);
    ckpt_extra_free(&extra);
    optim_free(o);
    pcrl_free(&p);
    batch_close(in);
    return stop ? 128 + stop : 0;
}
