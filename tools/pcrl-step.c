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

enum { OPT_CONTRAST = 2000, OPT_TAU, OPT_QUEUE, OPT_EMA, OPT_RECON, OPT_LR, OPT_SCALING, OPT_OPTIM, OPT_MOMENTUM,
       OPT_WD, OPT_WARMUP, OPT_EPOCHS, OPT_PPE, OPT_INIT, OPT_RESUME, OPT_SAVE_EVERY, OPT_LOG, OPT_SEED,
       OPT_STRICT_LENGTH };

int main(int argc, char **argv)
{
    util_init(argv[0]);
    common_opts co = {0};
    model_opts mo;
    model_opts_init(&mo);
    mo.cfg.head_layers = 2;
    mo.cfg.head_hidden = 128;
    pcrl_config pc = pcrl_defaults();
    const char *output = NULL, *init = NULL, *resume = NULL, *log_path = NULL;
    int batch = 256;
    double base_lr = 0.03, momentum = 0.9, weight_decay = 1e-4, warmup_epochs = 0;
    int64_t epochs = 0, pairs_per_epoch = 0, save_every = 0;
    monitor_opts mon;
    monitor_opts_init(&mon, argc, argv);
    uint64_t seed = 0;
    bool strict_length = false, warmup_given = false;
    lr_scaling scaling = LR_SCALING_LINEAR;
    optim_kind okind = OPTIM_SGD;
    static const struct option longopts[] = {
        {"output", required_argument, 0, 'o'}, {"batch", required_argument, 0, 'b'},
        {"contrast", required_argument, 0, OPT_CONTRAST}, {"tau", required_argument, 0, OPT_TAU},
        {"queue", required_argument, 0, OPT_QUEUE}, {"ema", required_argument, 0, OPT_EMA},
        {"recon-weight", required_argument, 0, OPT_RECON}, {"lr", required_argument, 0, OPT_LR},
        {"lr-scaling", required_argument, 0, OPT_SCALING}, {"optimizer", required_argument, 0, OPT_OPTIM},
        {"momentum", required_argument, 0, OPT_MOMENTUM}, {"weight-decay", required_argument, 0, OPT_WD},
        {"warmup-epochs", required_argument, 0, OPT_WARMUP}, {"epochs", required_argument, 0, OPT_EPOCHS},
        {"pairs-per-epoch", required_argument, 0, OPT_PPE}, {"init", required_argument, 0, OPT_INIT},
        {"resume", required_argument, 0, OPT_RESUME}, {"save-every", required_argument, 0, OPT_SAVE_EVERY},
        {"log", required_argument, 0, OPT_LOG}, {"seed", required_argument, 0, OPT_SEED},
        {"strict-length", no_argument, 0, OPT_STRICT_LENGTH}, MONITOR_LONGOPTS, COMMON_LONGOPTS, MODEL_LONGOPTS,
        {0, 0, 0, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "o:b:" COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (model_opts_parse(&mo, opt, optarg) || monitor_opts_parse(&mon, opt, optarg) ||
            common_opts_parse(&co, opt, optarg, usage_text))
            continue;
        switch (opt) {
        case 'o': output = optarg; break;
        case 'b': batch = (int)cli_int("--batch", optarg, 2, 1 << 16); break;
        case OPT_CONTRAST:
            if (!pcrl_contrast_parse(optarg, &pc.contrast))
                die_usage("--contrast: '%s' is not moco or ntxent", optarg);
            break;
        case OPT_TAU: pc.tau = cli_double("--tau", optarg, 1e-4, 100); break;
        case OPT_QUEUE: pc.queue = (int)cli_int("--queue", optarg, 1, 1 << 24); break;
        case OPT_EMA: pc.ema = cli_double("--ema", optarg, 0, 1); break;
        case OPT_RECON: pc.recon_weight = cli_double("--recon-weight", optarg, 0, 1e6); break;
        case OPT_LR: base_lr = cli_double("--lr", optarg, 0, 1e4); break;
        case OPT_SCALING:
            if (!lr_scaling_parse(optarg, &scaling))
                die_usage("--lr-scaling: '%s' is not linear or sqrt", optarg);
            break;
        case OPT_OPTIM:
            if (!optim_kind_parse(optarg, &okind))
                die_usage("--optimizer: '%s' is not lars, sgd or adamw", optarg);
            break;
        case OPT_MOMENTUM: momentum = cli_double("--momentum", optarg, 0, 1); break;
        case OPT_WD: weight_decay = cli_double("--weight-decay", optarg, 0, 1); break;
        case OPT_WARMUP:
            warmup_epochs = cli_double("--warmup-epochs", optarg, 0, 1e6);
            warmup_given = true;
            break;
        case OPT_EPOCHS: epochs = cli_int("--epochs", optarg, 1, 1 << 30); break;
        case OPT_PPE: pairs_per_epoch = cli_int("--pairs-per-epoch", optarg, 1, INT64_MAX / 2); break;
        case OPT_INIT: init = optarg; break;
        case OPT_RESUME: resume = optarg; break;
        case OPT_SAVE_EVERY: save_every = cli_int("--save-every", optarg, 0, INT64_MAX); break;
        case OPT_LOG: log_path = optarg; break;
        case OPT_SEED: seed = (uint64_t)cli_int("--seed", optarg, 0, INT64_MAX); break;
        case OPT_STRICT_LENGTH: strict_length = true; break;
        default: die_usage("unknown option");
        }
    }
    if (!output)
        die_usage("no output: name the checkpoint with -o");
    if (optind < argc - 1)
        die_usage("at most one input stream");
    if (init && resume)
        die_usage("--init and --resume exclude each other (--resume continues a run, --init starts one)");
    int ck_argc;
    char **ck_argv = monitor_opts_args(&mon, argc, &ck_argc);
    check_writable(output);
    blas_init(co.threads);

    batch_reader *in = batch_open(optind < argc ? argv[optind] : NULL, 2,
                                  "pair records with targets from pair-sample | augment --targets");
    if (!batch_peek(in))
        die(batch_name(in), "no pair records in the stream");
    int c, h, w;
    batch_shape(in, &c, &h, &w);
    const stream_info *si = batch_info(in);
    if (!pairs_per_epoch)
        pairs_per_epoch = si->pairs_per_epoch;
    if (!epochs)
        epochs = si->epochs;
    if (!pairs_per_epoch || !epochs)
        die(batch_name(in), "the stream header gives no pairs_per_epoch/epochs: give --pairs-per-epoch and --epochs");
    train_length length = {.unit = "pairs", .per_epoch = pairs_per_epoch, .epochs = epochs,
                           .steps = pairs_per_epoch * epochs / batch, .strict = strict_length};
    train_check_length(&length, in);

    // The networks: fresh, from --init, or from --resume.
    model_config ckcfg;
    ckpt_info info = {.loss = NAN};
    const char *from = resume ? resume : init;
    char err[400];
    if (from && !ckpt_read_header(from, &ckcfg, &info, err, sizeof err))
        die(from, "%s", err);
    model_config cfg = model_opts_resolve(&mo, from ? &ckcfg : NULL, from, c);
    if (cfg.head_layers == 0)
        die_usage("--head-layers 0: the contrast needs a projection head");
    cfg.classes = 0;
    pcrl p;
    pcrl_init(&p, &cfg, &pc, seed);
    if (!unet_size_ok(&p.decoder, h, w, err, sizeof err))
        die(batch_name(in), "%s (augment --size)", err);
    optim_config oc = optim_defaults(okind);
    oc.momentum = okind == OPTIM_ADAMW ? oc.momentum : momentum;
    oc.weight_decay = weight_decay;
    optimizer *o = optim_create(&p.params, &oc);
    ckpt_extra extra = {0};
    pcrl_checkpoint_tensors(&p, &extra);
    int64_t step = 0;
    if (resume) {
        if (!info.optimizer[0])
            die(resume, "no optimiser state in it (a safetensors file, or a fine-tuned model): --resume continues "
                "a run of pcrl-step, --init starts one from these weights");
        if (strcmp(info.optimizer, optim_kind_name(okind)) != 0)
            die(resume, "saved with optimizer '%s', this run uses '%s'", info.optimizer, optim_kind_name(okind));
        if (!ckpt_load_extra(resume, &p.student, o, &extra, CKPT_ENCODER | CKPT_HEAD | CKPT_STATE | CKPT_EXTRA, err,
                             sizeof err))
            die(resume, "%s%s", err, strstr(err, "queue") || strstr(err, "decoder") || strstr(err, "momentum.")
                                          ? " (--resume takes a checkpoint of pcrl-step with the same --contrast "
                                            "and --queue)"
                                          : "");
        if (!info.has_rng || !rng_restore(&p.alpha_rng, info.rng))
            die(resume, "no random state for the mixing draws in it: not a checkpoint of pcrl-step");
        if (p.queue && (p.queue_pos < 0 || p.queue_pos >= pc.queue))
            die(resume, "queue.position %lld is outside the queue of %d keys", (long long)p.queue_pos, pc.queue);
        step = info.step;
        if (si->start != step * batch)
            die(batch_name(in), "the stream starts at pair %lld, the checkpoint is at pair %lld (step %lld x "
                "batch %d): run pair-sample --start %lld", (long long)si->start, (long long)(step * batch),
                (long long)step, batch, (long long)(step * batch));
    } else if (init) {
        bool same_head = ckcfg.head_layers == cfg.head_layers && ckcfg.proj_dim == cfg.proj_dim &&
                         ckcfg.head_hidden == cfg.head_hidden;
        ckpt_load(init, &p.student, NULL, CKPT_ENCODER | (same_head ? CKPT_HEAD : 0));
        pcrl_sync_teacher(&p);
        if (!co.quiet)
            fprintf(stderr, "pcrl-step: %s: initialised the encoder%s; the teacher is its copy\n", init,
                    same_head ? " and the projection head" : " (the head is new: its shape differs)");
    }
    ckpt_info_free(&info);

    lr_schedule sched = lr_schedule_simclr(base_lr, scaling, batch, pairs_per_epoch, epochs, warmup_epochs);
    train_check_warmup(&length, &sched, warmup_epochs, warmup_given);
    // Read and checked before the log is opened and the first step.
    monitor_start(&mon, cfg.encoder.in_ch, co.quiet);
    FILE *log = NULL;
    if (log_path) {
        log = fopen(log_path, resume ? "a" : "w");
        if (!log)
            die(log_path, "cannot open: %s", strerror(errno));
        if (!resume)
            fprintf(log, "step\tepoch\tloss\tcontrast\trecon_ordinary\trecon_momentum\trecon_hybrid\talpha\tpos_acc\t"
                         "lr\timages_per_s\tknn_acc\n");
    }
    if (!co.quiet) {
        char desc[200];
        model_describe(&cfg, desc, sizeof desc);
        fprintf(stderr, "pcrl-step: %s + decoder, %zu parameters; %s; batch %d, %lld steps (%lld of warm-up), "
                "peak lr %g; %s, tau %g; recon weight %g\n", desc, param_count(&p.params), blas_description(), batch,
                (long long)length.steps, (long long)sched.warmup_steps, sched.peak_lr,
                pc.contrast == PCRL_MOCO ? "InfoNCE against a queue" : "NT-Xent", pc.tau, pc.recon_weight);
        if (pc.contrast == PCRL_MOCO)
            fprintf(stderr, "pcrl-step: queue of %d keys, teacher momentum %g\n", pc.queue, pc.ema);
    }

    size_t plane = (size_t)c * h * w;
    float *x = xaligned_alloc((size_t)2 * batch * plane * sizeof(float));
    float *targets = xaligned_alloc((size_t)2 * batch * plane * sizeof(float));
    float *codes = xmalloc((size_t)2 * batch * 6 * sizeof(float));
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
        int n = batch_next_targets(in, batch, x, targets, codes, NULL);
        if (n < batch) {
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
        double dt = now_seconds() - t0, epoch = (double)(step * batch) / pairs_per_epoch,
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
                die(log_path, "write error: %s", strerror(errno));
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
        save.records = step * batch;
        save.epoch = (int64_t)epoch;
        save.loss = last_loss;
        rng_save(&p.alpha_rng, save.rng);
        if (stop)
            break;
        if (save_every && step % save_every == 0)
            ckpt_save_extra(output, &p.student, o, &extra, &save, "pcrl-step", ck_argc, ck_argv);
    }
    if (!co.quiet)
        progress_done(&prog);
    if (stop) {
        if (step > first_step)
            ckpt_save_extra(output, &p.student, o, &extra, &save, "pcrl-step", ck_argc, ck_argv);
        if (!co.quiet)
            fprintf(stderr, "pcrl-step: %s at step %lld: %s%s\n", stop == SIGINT ? "interrupted" : "terminated",
                    (long long)step, step > first_step ? "checkpoint saved to " : "no step taken, nothing saved",
                    step > first_step ? output : "");
    } else {
        if (step == first_step && !schedule_done)
            die(batch_name(in), "fewer pairs than one batch of %d: nothing trained", batch);
        if (schedule_done)
            train_schedule_done(&length, in, (step - first_step) * batch, step, batch, co.quiet);
        save.step = step;
        save.records = step * batch;
        save.epoch = step * batch / pairs_per_epoch;
        rng_save(&p.alpha_rng, save.rng);
        ckpt_save_extra(output, &p.student, o, &extra, &save, "pcrl-step", ck_argc, ck_argv);
        if (!co.quiet)
            fprintf(stderr, "pcrl-step: %lld steps, final loss %.4f, %.1f images/s; saved %s\n",
                    (long long)(step - first_step), last_loss,
                    2.0 * batch * (double)(step - first_step) / (now_seconds() - t_start), output);
    }
    monitor_finish(&mon, now_seconds() - t_start, co.quiet);
    if (log && fclose(log) != 0)
        die(log_path, "write error: %s", strerror(errno));
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
