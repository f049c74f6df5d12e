// train: what the tools that build models share (ntxent-step, finetune,
// embed): the model options of the command line, a model built from them,
// from a checkpoint, or from both, and how a trainer's schedule meets the
// length of its stream.
#ifndef MEDSSL_TRAIN_H
#define MEDSSL_TRAIN_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include "batch.h"
#include "ckpt.h"
#include "knn.h"
#include "model.h"
#include "optim.h"
#include "schedule.h"

enum {
    OPT_MODEL = 1000, OPT_WIDTH, OPT_STEM, OPT_IN_CH, OPT_HEAD_LAYERS, OPT_HEAD_HIDDEN, OPT_PROJ_DIM,
};

#define MODEL_LONGOPTS                                                                     \
    {"model", required_argument, 0, OPT_MODEL}, {"width", required_argument, 0, OPT_WIDTH}, \
    {"stem", required_argument, 0, OPT_STEM}, {"in-ch", required_argument, 0, OPT_IN_CH},  \
    {"head-layers", required_argument, 0, OPT_HEAD_LAYERS},                                \
    {"head-hidden", required_argument, 0, OPT_HEAD_HIDDEN},                                \
    {"proj-dim", required_argument, 0, OPT_PROJ_DIM}

#define MODEL_OPTIONS_HELP                                                                  \
    "model (ignored when a checkpoint gives the model, unless they conflict):\n"          \
    "      --model NAME        resnet18, resnet34, resnet50, resnet101, resnet152 (default resnet50)\n" \
    "      --width W           channel multiplier: 1, 2, 4, or 0.5, 0.25 (default 1)\n"    \
    "      --stem S            large: 7x7/2 conv + max pool; small: 3x3/1, no pool (default large)\n" \
    "      --in-ch C           image channels, 1 or 3 (default: the stream's)\n"           \
    "      --head-layers L     projection head layers: 2 or 3, 0 for none (default 3)\n"   \
    "      --head-hidden D     hidden width of the head (default: the encoder's width)\n"  \
    "      --proj-dim D        projection width (default 128)\n"

// The options every computing tool shares: -T/--threads, -q/--quiet,
// -h/--help, -V/--version (which names the BLIS kernel set).
#define COMMON_LONGOPTS                                                               \
    {"threads", required_argument, 0, 'T'}, {"quiet", no_argument, 0, 'q'},          \
    {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'}
#define COMMON_SHORTOPTS "T:qhV"

typedef struct {
    int threads;   // 0: the default (MEDSSL_THREADS, else all cores)
    bool quiet;
} common_opts;

// What computes: "BLIS 0.9.0, kernels zen3 (auto: avx2), 2 threads; conv
// kernels avx2" (after blas_init), for --version and the tools' logs.
const char *compute_description(void);

// Handles one of COMMON_LONGOPTS (--help prints usage and --version the
// version, both then exit 0); false for any other option.
bool common_opts_parse(common_opts *c, int opt, const char *arg, const char *usage);

typedef struct {
    model_config cfg;
    unsigned given;   // which options the user gave (bits by OPT_* - OPT_MODEL)
} model_opts;

void model_opts_init(model_opts *o);
// Handles one of the MODEL_LONGOPTS; false for any other option.
bool model_opts_parse(model_opts *o, int opt, const char *arg);
bool model_opts_given(const model_opts *o, int opt);

// The configuration to build: the checkpoint's (when ckpt_cfg is not NULL)
// with the options the user gave on top.  An option that contradicts the
// checkpoint's encoder dies with both values.  in_ch fills from the stream
// when neither gives it.
model_config model_opts_resolve(const model_opts *o, const model_config *ckpt_cfg, const char *ckpt_path,
                                int stream_channels);

// ---- the options of a pretraining trainer (ntxent-step, pcrl-step) -------------

enum {
    OPT_PT_LR = 1200, OPT_PT_SCALING, OPT_PT_OPTIM, OPT_PT_MOMENTUM, OPT_PT_WD, OPT_PT_WARMUP, OPT_PT_EPOCHS, OPT_PT_PPE, OPT_PT_INIT,
    OPT_PT_RESUME, OPT_PT_SAVE_EVERY, OPT_PT_LOG, OPT_PT_SEED, OPT_PT_STRICT_LENGTH,
};

#define PRETRAIN_SHORTOPTS "o:b:"
#define PRETRAIN_LONGOPTS                                                                              \
    {"output", required_argument, 0, 'o'}, {"batch", required_argument, 0, 'b'},                       \
    {"lr", required_argument, 0, OPT_PT_LR}, {"lr-scaling", required_argument, 0, OPT_PT_SCALING},          \
    {"optimizer", required_argument, 0, OPT_PT_OPTIM}, {"momentum", required_argument, 0, OPT_PT_MOMENTUM},  \
    {"weight-decay", required_argument, 0, OPT_PT_WD}, {"warmup-epochs", required_argument, 0, OPT_PT_WARMUP}, \
    {"epochs", required_argument, 0, OPT_PT_EPOCHS}, {"pairs-per-epoch", required_argument, 0, OPT_PT_PPE},   \
    {"init", required_argument, 0, OPT_PT_INIT}, {"resume", required_argument, 0, OPT_PT_RESUME},           \
    {"save-every", required_argument, 0, OPT_PT_SAVE_EVERY}, {"log", required_argument, 0, OPT_PT_LOG},     \
    {"seed", required_argument, 0, OPT_PT_SEED}, {"strict-length", no_argument, 0, OPT_PT_STRICT_LENGTH}

typedef struct {
    const char *output, *init, *resume, *log_path;
    int batch;
    double lr, momentum, weight_decay, warmup_epochs;
    bool warmup_given, strict_length;
    int64_t epochs, pairs_per_epoch, save_every;   // 0: the stream header's, none
    uint64_t seed;
    lr_scaling scaling;
    optim_kind optimizer;
} pretrain_opts;

// Handles one of PRETRAIN_LONGOPTS (the tool sets its defaults first);
// false for any other option.
bool pretrain_opts_parse(pretrain_opts *o, int opt, const char *arg);
// After the options: usage errors for no -o, several inputs (argc -
// optind > 1), --init with --resume.
void pretrain_opts_check(const pretrain_opts *o, int inputs);
// The optimiser these options ask for (AdamW keeps its own betas).
optim_config pretrain_optim_config(const pretrain_opts *o);

// ---- the schedule against the stream ------------------------------------------
//
// A trainer runs its schedule (epochs x records per epoch, from the stream
// header or its options) and stops at its end, whatever the stream holds
// beyond it: a learning rate that has decayed to 0 teaches nothing more.
// It says how many records it left unread; --strict-length makes any
// difference between the two lengths an error instead.

typedef struct {
    const char *unit;     // "pairs", "images"
    int64_t per_epoch, epochs;
    int64_t steps;        // the optimiser steps the schedule's records give
    bool strict;          // --strict-length
} train_length;

// Dies (usage) when the warm-up takes every step of the schedule: the rate
// would rise to the end and never decay.  `given`: warmup_epochs came from
// --warmup-epochs (else it is the tool's default).
void train_check_warmup(const train_length *t, const lr_schedule *s, double warmup_epochs, bool given);
// A pair trainer's schedule: records per epoch and epochs from the options
// when given (non-zero), else from the stream header (dies when neither
// gives them); every full batch of the schedule's records is a step
// (SimCLR's total_steps is one more: its rate at the last step is never
// used).  Checks --strict-length (train_check_length).
train_length train_pair_schedule(batch_reader *in, int64_t per_epoch, int64_t epochs, int batch, bool strict);
// --resume, before loading: the checkpoint holds optimiser state of this
// kind (not a safetensors file or a fine-tuned model).
void train_check_resumable(const char *path, const ckpt_info *info, optim_kind kind);
// --resume, after loading: the stream starts at the checkpoint's position
// (step x batch records), else dies saying which pair-sample --start to run.
void train_check_start(batch_reader *in, int64_t step, int batch);
// --init: the checkpoint's projection head has the shape of the one built
// (then it is loaded too).
bool train_same_head(const model_config *ckpt, const model_config *built);
// The last words of an interrupted run: what stopped it and whether the
// last step was saved.
void train_report_stop(int signal, int64_t step, bool saved, const char *output);

// --strict-length, before training: the stream header must give the
// schedule's length (epochs x records per epoch), from its start on.
void train_check_length(const train_length *t, batch_reader *in);
// The schedule has ended after `consumed` records of this stream: says how
// many records are left unread (from the header's length, else whether the
// stream goes on), or under --strict-length reads the leftover of the last
// epoch (less than a batch, part of the schedule) and dies unless the stream
// then ends.
void train_schedule_done(const train_length *t, batch_reader *in, int64_t consumed, int64_t step, int batch,
                         bool quiet);
// The stream ended at `step`, before the schedule's last step: a warning,
// or under --strict-length an error.
void train_stream_short(const train_length *t, batch_reader *in, int64_t step);

// ---- over several ranks (mpirun, dist.h) ---------------------------------------
//
// An error that every rank finds alike, from what they all share: rank 0
// says it (once, not K times), every rank leaves the job and exits with
// `status` (EXIT_USAGE adds the --help hint).
_Noreturn void train_fail_all(int status, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
// What the ranks of one run must share: their options (argv[1 ..
// first_positional - 1]; the positional input may differ), their streams'
// headers (but for the shard) and image shapes.  Rank 0 names the ranks that
// differ from it; all of them fail.
void train_check_ranks_agree(int argc, char **argv, int first_positional, const stream_info *si, int c, int h,
                             int w);
// The rank's stream must be pair-sample --shard rank/K --batch B (or, for
// one process, a whole stream or shard 0/1): else dies naming the command.
void train_check_shard(batch_reader *in, int batch);
// --check-ranks: every rank hashes its weights, batch-norm statistics and
// optimiser state; rank 0 names the ranks whose hash differs from its own.
void train_check_same_state(const model *m, const optimizer *o, int64_t step);
// The micro-batch of a global batch when none is given: batch / gcd(batch,
// 8), so that 1, 2, 4 or 8 ranks hold whole micro-batches when they split
// the batch evenly.
int train_default_micro(int batch);
// Checks that `batch` splits over the ranks into whole micro-batches; says
// (once) what to give instead.  `unit`: "pairs" or "images".
void train_check_split(int batch, int micro, const char *unit);
// Under mpirun, unless quiet: rank 0's last line, the seconds of the run
// spent in MPI and in the exact sums' conversions.
void train_report_mpi(double run_seconds, bool quiet);

// ---- the kNN monitor (ntxent-step --monitor) ------------------------------------
//
// A labeled image stream (one "image" per record with its "case" and a
// multi-class "label": pair-sample --mode single --no-shuffle --labeled-only
// | augment --eval) is read once into memory and split by case: the cases
// are numbered in the order of their first record and every fifth one (the
// 5th, 10th, ...) is a query case, the others make the bank, so no case is
// on both sides.  A measurement runs the encoder in eval mode over every
// image (the running statistics normalise, nothing is updated) and
// classifies each query's features (n, F) against the bank's with knn.h.

typedef struct train_monitor train_monitor;

// Reads the stream at path and dies naming it when a record is not a
// labeled image of in_ch channels, the labels are multi-label, or there are
// fewer than 5 cases (no query).
train_monitor *train_monitor_open(const char *path, int in_ch, int k, double temperature);
// "812 images of 400 cases: bank 650 images (320 cases), 162 queries (80 cases), 10 classes"
void train_monitor_describe(const train_monitor *mon, char *buf, size_t len);
// The fraction of queries whose predicted class is their label, with the
// encoder as it is (NaN when a feature is not finite), running `rows`
// images per forward.  Between training steps only: it overwrites the
// encoder's activations, which a backward would need, and nothing else.
double train_monitor_eval(train_monitor *mon, resnet *enc, int rows);
void train_monitor_free(train_monitor *mon);

// The monitor in a trainer: its options, the command line a checkpoint
// records (without them: a run with the monitor writes the same bytes as
// one without), the measurements between steps and the report at the end.
enum { OPT_MONITOR = 1100, OPT_MONITOR_EVERY, OPT_MONITOR_K, OPT_MONITOR_T };

#define MONITOR_LONGOPTS                                                                         \
    {"monitor", required_argument, 0, OPT_MONITOR},                                              \
    {"monitor-every", required_argument, 0, OPT_MONITOR_EVERY},                                  \
    {"monitor-k", required_argument, 0, OPT_MONITOR_K}, {"monitor-t", required_argument, 0, OPT_MONITOR_T}

#define MONITOR_OPTIONS_HELP                                                                          \
    "      --monitor IMAGES    kNN accuracy of the encoder's features on labeled images (pair-sample\n" \
    "                          --mode single --no-shuffle --labeled-only | augment --eval): every\n"   \
    "                          fifth case a query, the others the bank; logged (knn_acc) and shown\n"  \
    "      --monitor-every N   measure every N steps and at the last (default 50)\n"                   \
    "      --monitor-k K       neighbours (default 20)\n"                                              \
    "      --monitor-t T       vote weight exp(similarity / T) (default 0.07)\n"

typedef struct {
    const char *path;          // NULL: no monitor
    int64_t every;
    int k;
    double t;
    const char **args;         // the options' arguments as given, to drop from the recorded command line
    int nargs;
    char **given_argv;         // argv as main received it (getopt_long permutes argv)
    train_monitor *mon;
    double acc, seconds;       // the last measurement; time spent measuring
    int64_t runs, step;        // measurements so far; the step of the last
} monitor_opts;

// Before getopt_long: keeps argv as given.
void monitor_opts_init(monitor_opts *m, int argc, char **argv);
// Handles one of MONITOR_LONGOPTS; false for any other option.
bool monitor_opts_parse(monitor_opts *m, int opt, const char *arg);
// After the options: a usage error for the monitor's options without
// --monitor; returns the command line checkpoints record (free it).
char **monitor_opts_args(monitor_opts *m, int argc, int *ck_argc);
// Opens the stream (dies on a bad one) and says what it holds unless quiet.
void monitor_start(monitor_opts *m, int in_ch, bool quiet);
// After step `step` of `last`: measures when it is due; true when it did.
bool monitor_after_step(monitor_opts *m, int64_t step, int64_t last, resnet *enc, int rows);
// " knn-acc 0.545 (step 56)" after the first measurement, else "".
void monitor_progress_text(const monitor_opts *m, char *buf, size_t len);
// The cost line at the end (unless quiet), then frees everything.
void monitor_finish(monitor_opts *m, double run_seconds, bool quiet);

#endif
