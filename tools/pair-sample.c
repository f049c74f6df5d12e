// pair-sample: draw positive pairs (or single labeled images) from a pack,
// epoch after epoch, shuffled and seeded (see pair-sample(1)).
//
//   pair-sample --mode simclr|micle|single [--epochs E] [--seed S] PACK > pairs.mts
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "pack.h"
#include "rng.h"
#include "util.h"

static const char usage_text[] =
    "usage: pair-sample [options] PACK\n"
    "Write positive pairs (or single images) from a pack, shuffled per epoch.\n"
    "\n"
    "  -m, --mode M            simclr: one image twice; micle: two distinct images of a case\n"
    "                          (one image twice when the case has one); single: each image\n"
    "                          once, labels passed through (default simclr)\n"
    "  -u, --unit U            what an epoch goes over once: image or case\n"
    "                          (default: image for simclr and single, case for micle)\n"
    "  -e, --epochs E          epochs (default 1)\n"
    "  -s, --seed S            shuffling and pairing seed (default 0)\n"
    "      --split LIST        splits to draw from, comma-separated, or 'all' (default train)\n"
    "      --no-shuffle        keep the pack's order (evaluation streams)\n"
    "      --start N           skip the first N records (resume: trainer step x batch)\n"
    "      --shard R/K         write only rank R's share (0 <= R < K) of each global batch\n"
    "                          of --batch records: the R-th slice of batch/K (mpirun -np K)\n"
    "  -b, --batch B           the global batch (of --shard, of --drop-last)\n"
    "      --drop-last         write only whole batches of --batch records per epoch: each\n"
    "                          epoch's last (units mod B) records, in its shuffled order, are\n"
    "                          dropped (finetune under mpirun needs whole batches)\n"
    "  -f, --label-fraction F  keep a case-level subset of fraction F of the labeled cases,\n"
    "                          stratified by class for multi-class tasks (0 < F <= 1)\n"
    "      --label-seed S      seed of that subset (default 0; nested: the 10% subset is\n"
    "                          inside the 20% subset for the same seed)\n"
    "      --labeled-only      drop unlabeled cases\n"
    "  -o, --output FILE       write to FILE (default stdout; .zst compresses)\n"
    "  -z, --zstd L            compress the output with zstd level L\n"
    "  -T, --threads N         reading threads (default: all cores)\n"
    "  -q, --quiet             no progress or summary\n"
    "  -h, --help, -V, --version\n";

typedef enum { MODE_SIMCLR, MODE_MICLE, MODE_SINGLE } mode_t_;
static const char *const mode_names[] = {"simclr", "micle", "single"};

// Purposes of the random streams (the fourth rng_make argument).
enum { RNG_SHUFFLE = 1, RNG_PAIR = 2, RNG_FRACTION = 3 };

typedef struct {
    uint32_t c;     // case index in the pack
    int32_t inst;   // instance, or -1 for a whole-case unit
} unit;

// Marks, among `eligible` cases, the subset kept by the label fraction.
static void select_fraction(const pack_t *p, const uint8_t *eligible, double fraction, uint64_t seed,
                            uint8_t *keep)
{
    int groups = p->meta.task == TASK_MULTICLASS ? p->meta.nclasses : 1;
    uint32_t *members = xmalloc((size_t)p->ncases * sizeof *members);
    for (int g = 0; g < groups; g++) {
        uint32_t n = 0;
        for (int64_t i = 0; i < p->ncases; i++)
            if (eligible[i] && (groups == 1 || p->label[i] == g))
                members[n++] = (uint32_t)i;
        if (n == 0)
            continue;
        // One permutation per class, cut at the fraction: the same seed
        // nests smaller fractions inside larger ones.
        rng_t r = rng_make(seed, (uint64_t)g, 0, RNG_FRACTION);
        rng_shuffle(&r, members, n);
        uint32_t take = (uint32_t)lround(fraction * n);
        if (take == 0)
            take = 1;
        for (uint32_t k = 0; k < take; k++)
            keep[members[k]] = 1;
    }
    free(members);
}

typedef struct {
    mts_reader *r;
    mts_frame f;
    const msgpack_object *images;
    int a, b;       // instances chosen
} fetched;

static void put_image(mts_writer *w, const char *key, const msgpack_object *o)
{
    mts_tensor t;
    char err[200];
    mts_object_tensor(o, &t, err, sizeof err);  // checked by pack_read_case
    mts_put_tensor(w, key, &t);
}

int main(int argc, char **argv)
{
    util_init(argv[0]);
    mode_t_ mode = MODE_SIMCLR;
    int unit_case = -1;  // -1: the mode's default
    long long epochs = 1, start = 0;
    uint64_t seed = 0, label_seed = 0;
    const char *splits = "train", *output = NULL;
    double fraction = 0;
    bool shuffle = true, labeled_only = false, quiet = false, drop_last = false;
    mts_write_opts wopts = {.zstd_level = -1};
    int threads = 0;
    long long shard_rank = 0, shard_count = 0, shard_batch = 0;
    enum { OPT_SPLIT = 256, OPT_NOSHUF, OPT_START, OPT_LSEED, OPT_LONLY, OPT_SHARD, OPT_DROP_LAST };
    static const struct option longopts[] = {
        {"mode", required_argument, 0, 'm'}, {"unit", required_argument, 0, 'u'},
        {"epochs", required_argument, 0, 'e'}, {"seed", required_argument, 0, 's'},
        {"split", required_argument, 0, OPT_SPLIT}, {"no-shuffle", no_argument, 0, OPT_NOSHUF},
        {"start", required_argument, 0, OPT_START}, {"label-fraction", required_argument, 0, 'f'},
        {"label-seed", required_argument, 0, OPT_LSEED}, {"labeled-only", no_argument, 0, OPT_LONLY},
        {"shard", required_argument, 0, OPT_SHARD}, {"batch", required_argument, 0, 'b'},
        {"drop-last", no_argument, 0, OPT_DROP_LAST},
        {"output", required_argument, 0, 'o'}, {"zstd", required_argument, 0, 'z'},
        {"threads", required_argument, 0, 'T'}, {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "m:u:e:s:f:o:z:T:b:qhV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'm':
            if (!strcmp(optarg, "simclr")) mode = MODE_SIMCLR;
            else if (!strcmp(optarg, "micle")) mode = MODE_MICLE;
            else if (!strcmp(optarg, "single")) mode = MODE_SINGLE;
            else die_usage("--mode: '%s' is not simclr, micle or single", optarg);
            break;
        case 'u':
            if (!strcmp(optarg, "image")) unit_case = 0;
            else if (!strcmp(optarg, "case")) unit_case = 1;
            else die_usage("--unit: '%s' is not image or case", optarg);
            break;
        case 'e': epochs = cli_int("--epochs", optarg, 1, 1000000); break;
        case 's': seed = (uint64_t)cli_int("--seed", optarg, 0, INT64_MAX); break;
        case OPT_SPLIT: splits = optarg; break;
        case OPT_NOSHUF: shuffle = false; break;
        case OPT_START: start = cli_int("--start", optarg, 0, INT64_MAX); break;
        case 'f': fraction = cli_double("--label-fraction", optarg, 1e-9, 1); break;
        case OPT_LSEED: label_seed = (uint64_t)cli_int("--label-seed", optarg, 0, INT64_MAX); break;
        case OPT_LONLY: labeled_only = true; break;
        case OPT_SHARD: {
            char *slash = strchr(optarg, '/');
            if (!slash || slash == optarg || !slash[1])
                die_usage("--shard: '%s' is not R/K (this process's rank R of K)", optarg);
            *slash = 0;
            shard_count = cli_int("--shard K", slash + 1, 1, 1 << 20);
            shard_rank = cli_int("--shard R", optarg, 0, shard_count - 1);
            *slash = '/';
            break;
        }
        case 'b': shard_batch = cli_int("--batch", optarg, 1, 1 << 30); break;
        case OPT_DROP_LAST: drop_last = true; break;
        case 'o': output = optarg; break;
        case 'z': wopts.zstd_level = (int)cli_int("--zstd", optarg, 0, 19); break;
        case 'T': threads = (int)cli_int("--threads", optarg, 1, 1024); break;
        case 'q': quiet = true; break;
        case 'h': fputs(usage_text, stdout); return 0;
        case 'V': cli_version(NULL); return 0;
        default: die_usage("unknown option");
        }
    }
    if (optind != argc - 1)
        die_usage("one pack");
    if (unit_case < 0)
        unit_case = mode == MODE_MICLE;
    if (mode == MODE_SINGLE && unit_case)
        die_usage("--mode single goes over images (--unit image)");
    if (shard_count && !shard_batch)
        die_usage("--shard needs --batch (the global batch it slices)");
    if (drop_last && !shard_batch)
        die_usage("--drop-last needs --batch (the batch whose whole multiples an epoch keeps)");
    if (shard_batch && !shard_count && !drop_last)
        die_usage("--batch is the global batch of --shard or --drop-last: give --shard R/K or --drop-last too");
    if (shard_count && shard_batch % shard_count)
        die_usage("--shard %lld/%lld: the batch of %lld does not split into %lld equal slices", shard_rank,
                  shard_count, shard_batch, shard_count);
    if (threads > 0)
        omp_set_num_threads(threads);

    const char *path = argv[optind];
    pack_t p;
    char err[400];
    if (!pack_open(path, &p, err, sizeof err))
        die(path, "%s", err);

    // Which cases: the splits, then labels.
    uint8_t *eligible = xcalloc((size_t)p.ncases + 1, 1);
    bool want_split[PACK_MAX_SPLITS] = {0};
    if (strcmp(splits, "all") == 0) {
        for (int s = 0; s < p.meta.nsplits; s++)
            want_split[s] = true;
    } else {
        char *copy = xstrdup(splits);
        for (char *save, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            int s = pack_split_index(&p, tok);
            if (s < 0) {
                char known[1024] = "";
                for (int k = 0; k < p.meta.nsplits; k++)
                    snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", k ? ", " : "",
                             p.meta.splits[k]);
                die(path, "no split '%s' in this pack (it has: %s)", tok, known);
            }
            want_split[s] = true;
        }
        free(copy);
    }
    for (int64_t i = 0; i < p.ncases; i++)
        eligible[i] = want_split[p.split[i]] && (!labeled_only && fraction == 0 ? 1 : p.labeled[i]);
    if (fraction > 0) {
        if (p.meta.task == TASK_NONE)
            die(path, "--label-fraction: the pack has no labels");
        uint8_t *keep = xcalloc((size_t)p.ncases + 1, 1);
        select_fraction(&p, eligible, fraction, label_seed, keep);
        free(eligible);
        eligible = keep;
    }

    // The units of an epoch.
    int64_t nunits = 0, ncases_used = 0, nimages_used = 0;
    for (int64_t i = 0; i < p.ncases; i++)
        if (eligible[i]) {
            ncases_used++;
            nimages_used += p.ninst[i];
        }
    nunits = unit_case ? ncases_used : nimages_used;
    if (nunits == 0)
        die(path, "no %s to draw from (splits: %s%s)", unit_case ? "cases" : "images", splits,
            fraction > 0 || labeled_only ? ", labeled only" : "");
    if (nunits > UINT32_MAX)
        die(path, "more than 2^32 units in an epoch");
    // The records an epoch writes (before sharding): whole batches only
    // with --drop-last.
    const int64_t per_epoch = drop_last ? nunits - nunits % shard_batch : nunits;
    if (per_epoch == 0)
        die(path, "--drop-last: %lld %s, fewer than one batch of %lld", (long long)nunits,
            unit_case ? "cases" : "images", shard_batch);
    unit *units = xmalloc((size_t)nunits * sizeof *units);
    int64_t u = 0;
    for (int64_t i = 0; i < p.ncases; i++) {
        if (!eligible[i])
            continue;
        if (unit_case)
            units[u++] = (unit){(uint32_t)i, -1};
        else
            for (int k = 0; k < p.ninst[i]; k++)
                units[u++] = (unit){(uint32_t)i, k};
    }
    if (!quiet && fraction > 0)
        fprintf(stderr, "pair-sample: label fraction %g (seed %llu): %lld cases, %lld images\n", fraction,
                (unsigned long long)label_seed, (long long)ncases_used, (long long)nimages_used);

    mts_writer *w = mts_writer_open(output, &wopts);
    mts_write_header(w, "pair-sample", argc, argv, 10 + (shard_count ? 1 : 0) + PACK_META_KEYS);
    mts_put_str(w, "mode", mode_names[mode]);
    mts_put_str(w, "unit", unit_case ? "case" : "image");
    mts_put_int(w, "pairs_per_epoch", per_epoch);
    mts_put_int(w, "epochs", epochs);
    mts_put_int(w, "start", start);
    mts_put_int(w, "seed", (int64_t)seed);
    mts_put_str(w, "split", splits);
    mts_put_f64(w, "label_fraction", fraction > 0 ? fraction : 1.0);
    mts_put_int(w, "cases", ncases_used);
    mts_put_int(w, "images", nimages_used);
    if (shard_count) {
        // The trainer checks that its stream is its own rank's share of its
        // own batch; pairs_per_epoch, epochs and start stay global.
        mts_put_key(w, "shard");
        msgpack_packer *pk = mts_packer(w);
        msgpack_pack_array(pk, 3);
        msgpack_pack_int64(pk, shard_rank);
        msgpack_pack_int64(pk, shard_count);
        msgpack_pack_int64(pk, shard_batch);
    }
    pack_put_meta(w, &p.meta);

    uint32_t *order = xmalloc((size_t)nunits * sizeof *order);
    int window = 16 * omp_get_max_threads();
    fetched *fx = xcalloc((size_t)window, sizeof *fx);
    bool *mine = xmalloc((size_t)window * sizeof *mine);
    progress_t prog;
    progress_init(&prog, 30);
    double t0 = now_seconds();
    long long written = 0;
    for (long long e = start / per_epoch; e < epochs; e++) {
        for (uint32_t k = 0; k < nunits; k++)
            order[k] = k;
        if (shuffle) {
            rng_t r = rng_make(seed, (uint64_t)e, 0, RNG_SHUFFLE);
            rng_shuffle(&r, order, (uint32_t)nunits);
        }
        int64_t first = e == start / per_epoch ? start % per_epoch : 0;
        for (int64_t lo = first; lo < per_epoch; lo += window) {
            int n = (int)(per_epoch - lo < window ? per_epoch - lo : window);
            // A shard keeps the records at global positions e x per_epoch + index
            // whose place in their run of shard_batch falls in its slice; the
            // draws below depend on (epoch, index) only, so every record is
            // the one a single process writes.
            for (int k = 0; k < n; k++)
                mine[k] = !shard_count || ((e * (long long)per_epoch + lo + k) % shard_batch) /
                                              (shard_batch / shard_count) == shard_rank;
            // Read the window's cases in parallel; write them in order.
#pragma omp parallel for schedule(dynamic, 1)
            for (int k = 0; k < n; k++) {
                if (!mine[k])
                    continue;
                const unit *un = &units[order[lo + k]];
                fetched *f = &fx[k];
                pack_read_case(&p, un->c, &f->r, &f->f, &f->images);
                int ninst = p.ninst[un->c];
                rng_t r = rng_make(seed, (uint64_t)e, (uint64_t)(lo + k), RNG_PAIR);
                int a = un->inst >= 0 ? un->inst : (int)rng_below(&r, (uint32_t)ninst);
                int b = a;
                if (mode == MODE_MICLE && ninst >= 2) {
                    // Uniform over the other instances: with a uniform (or
                    // each-once) anchor, uniform over ordered distinct pairs.
                    b = (int)rng_below(&r, (uint32_t)ninst - 1);
                    if (b >= a)
                        b++;
                }
                f->a = a;
                f->b = b;
            }
            for (int k = 0; k < n; k++) {
                if (!mine[k])
                    continue;
                const unit *un = &units[order[lo + k]];
                fetched *f = &fx[k];
                bool labeled = p.labeled[un->c];
                mts_begin_map(w, (mode == MODE_SINGLE ? 6 : 8) + labeled);
                mts_put_str(w, "case", p.names[un->c]);
                if (mode == MODE_SINGLE) {
                    mts_put_int(w, "inst", f->a);
                    put_image(w, "image", &f->images->via.array.ptr[f->a]);
                } else {
                    mts_put_int(w, "inst_a", f->a);
                    mts_put_int(w, "inst_b", f->b);
                    put_image(w, "a", &f->images->via.array.ptr[f->a]);
                    put_image(w, "b", &f->images->via.array.ptr[f->b]);
                }
                mts_put_str(w, "split", p.meta.splits[p.split[un->c]]);
                mts_put_int(w, "epoch", e);
                mts_put_int(w, "index", lo + k);
                if (labeled && p.meta.task == TASK_MULTILABEL) {
                    // Labels come from the index, which pack_open checked.
                    mts_put_key(w, "label");
                    msgpack_packer *pk = mts_packer(w);
                    msgpack_pack_array(pk, (size_t)p.meta.nclasses);
                    for (int q = 0; q < p.meta.nclasses; q++)
                        msgpack_pack_int(pk, p.labels[(size_t)un->c * p.meta.nclasses + q]);
                } else if (labeled) {
                    mts_put_int(w, "label", p.label[un->c]);
                }
                mts_reader_close(f->r);
                written++;
            }
            if (!quiet) {
                double el = now_seconds() - t0;
                progress_update(&prog, "epoch %lld/%lld, %lld records, %.0f/s", e + 1, epochs, written,
                                written / el);
            }
        }
    }
    if (!quiet)
        progress_done(&prog);
    mts_writer_close(w);
    if (!quiet)
        fprintf(stderr, "pair-sample: %lld records (%lld per epoch x %lld epochs, from %lld) in %.1f s\n",
                written, (long long)per_epoch, epochs, start, now_seconds() - t0);
    if (!quiet && per_epoch < nunits)
        fprintf(stderr, "pair-sample: --drop-last: %lld of the %lld %s left out of each epoch (a different set "
                "each epoch)\n", (long long)(nunits - per_epoch), (long long)nunits, unit_case ? "cases" : "images");
    free(fx);
    free(mine);
    free(order);
    free(units);
    free(eligible);
    pack_close(&p);
    return 0;
}
