// augment: SimCLR/MICLe augmentation of every image in a tensor stream (see
// augment(1)).
//
//   pair-sample ... | augment --seed 2 --size 224 | ntxent-step ...
//
// Records pass through with their keys in order; each image tensor ("image",
// "a", "b": u8 or u16 (C, H, W)) is replaced by its augmented view, f32
// (C, S, S) normalised or u8.  Records are read in windows (16 records per
// thread, or 128 MiB): while the threads augment one window, the main thread
// writes the window before it and reads the next, so output order is input
// order and memory stays bounded.  A view's randomness comes from (seed,
// epoch, index, view) alone, so the bytes out do not depend on the thread
// count.
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "augment.h"
#include "cli.h"
#include "jobs.h"
#include "stream.h"
#include "util.h"

static const char usage_text[] =
    "usage: augment [options] [FILE...]\n"
    "Augment every image of a tensor stream (standard input when no FILE) for\n"
    "contrastive training: SimCLR's chain per view, or --eval preprocessing.\n"
    "\n"
    "output:\n"
    "  -s, --size S            output images S x S (224)\n"
    "      --channels C        1 or 3 (default: the input header's, else the first image's)\n"
    "      --u8                u8 output for inspection (default f32, normalised)\n"
    "      --mean M[,M,M]      normalisation mean per channel (0.5)\n"
    "      --std S[,S,S]       normalisation std per channel (0.5)\n"
    "  -o, --output FILE       write to FILE (.zst compresses; default stdout)\n"
    "  -z, --zstd L            zstd level (0: raw; default: by the name)\n"
    "      --sheet FILE.png    write a contact sheet of the first records' views\n"
    "      --sheet-count K     records on the sheet (8)\n"
    "randomness:\n"
    "      --seed N            seed (0); a view is seeded by (seed, epoch, index, view)\n"
    "      --eval              centre crop and resize only, nothing random\n"
    "      --crop-fraction F   --eval: centre square side / short side (0.875)\n"
    "SimCLR chain (defaults are SimCLR's):\n"
    "      --area MIN,MAX      crop area / image area (0.08,1)\n"
    "      --aspect MIN,MAX    crop aspect ratio w/h (0.75,1.3333)\n"
    "      --flip-p P          horizontal flip probability (0.5)\n"
    "      --jitter S          colour jitter strength: brightness, contrast,\n"
    "                          saturation 0.8 S, hue 0.2 S (1)\n"
    "      --jitter-p P        colour jitter probability (0.8)\n"
    "      --brightness B      --contrast C  --saturation S  --hue H\n"
    "                          set one jitter range (after --jitter)\n"
    "      --grey-p P          greyscale probability (0.2)\n"
    "      --blur-p P          Gaussian blur probability (0.5)\n"
    "      --blur-sigma MIN,MAX  blur sigma range in pixels (0.1,2)\n"
    "      --blur-kernel F     blur kernel size / S (0.1)\n"
    "medical additions (off by default):\n"
    "      --rotate DEG        rotation uniform in [-DEG, DEG] degrees (0)\n"
    "      --vflip-p P         vertical flip probability (0)\n"
    "      --noise STD         Gaussian noise std, in [0, 1] units (0)\n"
    "      --noise-p P         noise probability (0.5)\n"
    "PCRL:\n"
    "      --targets           also write each view's reconstruction target (KEY_target:\n"
    "                          the colour-free view flipped and turned as KEY_code says)\n"
    "other:\n"
    "  -T, --threads N         threads (MEDSSL_THREADS, else all cores)\n"
    "  -q, --quiet             no progress lines\n"
    "  -h, --help              this text\n"
    "  -V, --version           version\n";

// A window holds 16 records per thread (at least 32): enough views to keep
// every thread busy while the main thread does the I/O, few enough that the
// output buffers of two windows stay small (at 224, 32 records of pairs are
// 38 MB of f32).  Large images also end a window at WINDOW_BYTES of input.
enum { WINDOW_RECORDS_PER_THREAD = 16, WINDOW_RECORDS_MIN = 32 };
#define WINDOW_BYTES ((size_t)128 << 20)

// The image keys and their view numbers: "image" and "a" are view 0, "b" 1.
static const char *const image_keys[] = {"image", "a", "b"};
static const uint32_t image_views[] = {0, 0, 1};
enum { NKEYS = 3 };

typedef struct {
    int key;                  // index into image_keys
    img_src src;              // points into the slot's copy of the frame
    void *out;                // (C, S, S) f32 or u8
    size_t out_cap;
    void *target;             // --targets: (C, S, S) f32 in [0, 1] or u8
    size_t target_cap;
    float code[6];            // --targets: the target's transformation
    uint8_t *tile;            // (C, S, S) u8 for the contact sheet, or NULL
    size_t tile_cap;
} view_job;

// One frame of a window: a copy of its bytes (the reader's buffer is reused
// at the next read) and msgpack-c's parse of the copy.
typedef struct {
    unsigned char *bytes;
    size_t cap;
    mts_frame frame;
    msgpack_unpacked parsed;
    bool has_parsed;
    uint32_t epoch, index;
    int nviews;
    view_job views[NKEYS];
    bool on_sheet;
} slot;

typedef struct {
    int slot, view;           // indices: the slots may move while the window fills
} job_ref;

typedef struct {
    slot *slots;
    int count, cap;
    job_ref *jobs;            // every view of the window's records
    int njobs, jobs_cap;
} window;

typedef struct {
    img_workspace ws;
    img_scratch planes;       // float (C, S, S) for u8 output
} thread_scratch;

typedef struct {
    aug_config cfg;
    uint64_t seed;
    bool u8;
    bool targets;             // --targets: PCRL's reconstruction targets
    int channels_opt;         // --channels, 0 when not given
    float mean[3], std[3];
    int nmean, nstd;
    int threads, window_records;
    bool quiet;
    int argc;
    char **argv;
    // input
    char **paths;
    int npaths, next_path;
    mts_reader *reader;
    mts_limits limits;
    uint64_t records_read;
    uint64_t records_expected;  // from the headers, 0 when they do not say
    bool channels_known;
    // output
    mts_writer *out;
    bool header_written;
    uint64_t records_written;
    // contact sheet
    const char *sheet_path;
    int sheet_count, sheet_rows;
    uint8_t **sheet_tiles;    // (sheet_count, 2) tiles, NULL where none
    bool sheet_done;
    progress_t progress;
    double start;
} state;

// ---- options --------------------------------------------------------------------

static int parse_list(const char *opt, const char *s, float *out, int max, double lo, double hi)
{
    char buf[256];
    if (strlen(s) >= sizeof buf)
        die_usage("%s: '%s' is too long", opt, s);
    strcpy(buf, s);
    int n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == max)
            die_usage("%s: at most %d values", opt, max);
        out[n++] = (float)cli_double(opt, tok, lo, hi);
    }
    if (n == 0)
        die_usage("%s: expected a number", opt);
    return n;
}

static void parse_range(const char *opt, const char *s, float *lo, float *hi, double min, double max)
{
    float v[2];
    if (parse_list(opt, s, v, 2, min, max) != 2 || v[0] > v[1])
        die_usage("%s: expected MIN,MAX with MIN <= MAX, got '%s'", opt, s);
    *lo = v[0];
    *hi = v[1];
}

static void parse_options(state *st, int argc, char **argv)
{
    aug_config *c = &st->cfg;
    enum {
        OPT_CHANNELS = 256, OPT_U8, OPT_MEAN, OPT_STD, OPT_SHEET, OPT_SHEET_COUNT, OPT_SEED,
        OPT_EVAL, OPT_CROP_FRACTION, OPT_AREA, OPT_ASPECT, OPT_FLIP_P, OPT_JITTER, OPT_JITTER_P,
        OPT_BRIGHTNESS, OPT_CONTRAST, OPT_SATURATION, OPT_HUE, OPT_GREY_P, OPT_BLUR_P,
        OPT_BLUR_SIGMA, OPT_BLUR_KERNEL, OPT_ROTATE, OPT_VFLIP_P, OPT_NOISE, OPT_NOISE_P, OPT_TARGETS,
    };
    static const struct option longopts[] = {
        {"size", required_argument, 0, 's'},
        {"channels", required_argument, 0, OPT_CHANNELS},
        {"u8", no_argument, 0, OPT_U8},
        {"mean", required_argument, 0, OPT_MEAN},
        {"std", required_argument, 0, OPT_STD},
        {"output", required_argument, 0, 'o'},
        {"zstd", required_argument, 0, 'z'},
        {"sheet", required_argument, 0, OPT_SHEET},
        {"sheet-count", required_argument, 0, OPT_SHEET_COUNT},
        {"seed", required_argument, 0, OPT_SEED},
        {"eval", no_argument, 0, OPT_EVAL},
        {"crop-fraction", required_argument, 0, OPT_CROP_FRACTION},
        {"area", required_argument, 0, OPT_AREA},
        {"aspect", required_argument, 0, OPT_ASPECT},
        {"flip-p", required_argument, 0, OPT_FLIP_P},
        {"jitter", required_argument, 0, OPT_JITTER},
        {"jitter-p", required_argument, 0, OPT_JITTER_P},
        {"brightness", required_argument, 0, OPT_BRIGHTNESS},
        {"contrast", required_argument, 0, OPT_CONTRAST},
        {"saturation", required_argument, 0, OPT_SATURATION},
        {"hue", required_argument, 0, OPT_HUE},
        {"grey-p", required_argument, 0, OPT_GREY_P},
        {"blur-p", required_argument, 0, OPT_BLUR_P},
        {"blur-sigma", required_argument, 0, OPT_BLUR_SIGMA},
        {"blur-kernel", required_argument, 0, OPT_BLUR_KERNEL},
        {"rotate", required_argument, 0, OPT_ROTATE},
        {"vflip-p", required_argument, 0, OPT_VFLIP_P},
        {"noise", required_argument, 0, OPT_NOISE},
        {"noise-p", required_argument, 0, OPT_NOISE_P},
        {"targets", no_argument, 0, OPT_TARGETS},
        {"threads", required_argument, 0, 'T'},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    const char *output = NULL;
    mts_write_opts wopts = {.zstd_level = -1, .zstd_threads = 0};
    int opt;
    while ((opt = getopt_long(argc, argv, "s:o:z:T:qhV", longopts, NULL)) != -1) {
        switch (opt) {
        case 's': c->size = (int)cli_int("--size", optarg, 1, 4096); break;
        case OPT_CHANNELS:
            st->channels_opt = (int)cli_int("--channels", optarg, 1, 3);
            if (st->channels_opt == 2)
                die_usage("--channels: 1 or 3");
            break;
        case OPT_U8: st->u8 = true; break;
        case OPT_MEAN: st->nmean = parse_list("--mean", optarg, st->mean, 3, -1e6, 1e6); break;
        case OPT_STD: st->nstd = parse_list("--std", optarg, st->std, 3, 1e-6, 1e6); break;
        case 'o': output = optarg; break;
        case 'z': wopts.zstd_level = (int)cli_int("--zstd", optarg, 0, 19); break;
        case OPT_SHEET: st->sheet_path = optarg; break;
        case OPT_SHEET_COUNT: st->sheet_count = (int)cli_int("--sheet-count", optarg, 1, 1000); break;
        case OPT_SEED: st->seed = (uint64_t)cli_int("--seed", optarg, 0, LLONG_MAX); break;
        case OPT_EVAL: c->eval = true; break;
        case OPT_CROP_FRACTION: c->crop_fraction = (float)cli_double("--crop-fraction", optarg, 1e-3, 1); break;
        case OPT_AREA: parse_range("--area", optarg, &c->area_min, &c->area_max, 1e-6, 1); break;
        case OPT_ASPECT: parse_range("--aspect", optarg, &c->aspect_min, &c->aspect_max, 1e-3, 1e3); break;
        case OPT_FLIP_P: c->hflip_p = (float)cli_double("--flip-p", optarg, 0, 1); break;
        case OPT_JITTER: aug_config_jitter_strength(c, (float)cli_double("--jitter", optarg, 0, 100)); break;
        case OPT_JITTER_P: c->jitter_p = (float)cli_double("--jitter-p", optarg, 0, 1); break;
        case OPT_BRIGHTNESS: c->brightness = (float)cli_double("--brightness", optarg, 0, 100); break;
        case OPT_CONTRAST: c->contrast = (float)cli_double("--contrast", optarg, 0, 100); break;
        case OPT_SATURATION: c->saturation = (float)cli_double("--saturation", optarg, 0, 100); break;
        case OPT_HUE: c->hue = (float)cli_double("--hue", optarg, 0, 0.5); break;
        case OPT_GREY_P: c->grey_p = (float)cli_double("--grey-p", optarg, 0, 1); break;
        case OPT_BLUR_P: c->blur_p = (float)cli_double("--blur-p", optarg, 0, 1); break;
        case OPT_BLUR_SIGMA:
            parse_range("--blur-sigma", optarg, &c->blur_sigma_min, &c->blur_sigma_max, 1e-3, 1e3);
            break;
        case OPT_BLUR_KERNEL: c->blur_kernel = (float)cli_double("--blur-kernel", optarg, 0, 1); break;
        case OPT_ROTATE: c->rotate_deg = (float)cli_double("--rotate", optarg, 0, 180); break;
        case OPT_VFLIP_P: c->vflip_p = (float)cli_double("--vflip-p", optarg, 0, 1); break;
        case OPT_NOISE: c->noise_std = (float)cli_double("--noise", optarg, 0, 10); break;
        case OPT_NOISE_P: c->noise_p = (float)cli_double("--noise-p", optarg, 0, 1); break;
        case OPT_TARGETS: st->targets = true; break;
        case 'T': st->threads = (int)cli_int("--threads", optarg, 1, 4096); break;
        case 'q': st->quiet = true; break;
        case 'h': fputs(usage_text, stdout); exit(0);
        case 'V': cli_version(NULL); exit(0);
        default: die_usage("unknown option (see augment --help)");
        }
    }
    if (st->u8 && (st->nmean || st->nstd))
        die_usage("--mean and --std go with f32 output, not --u8");
    if (!st->threads)
        st->threads = default_threads();
    st->window_records = st->threads * WINDOW_RECORDS_PER_THREAD;
    if (st->window_records < WINDOW_RECORDS_MIN)
        st->window_records = WINDOW_RECORDS_MIN;
    st->paths = argv + optind;
    st->npaths = argc - optind;
    st->out = mts_writer_open(output, &wopts);
}

// The output channel count is fixed by --channels, else by the input
// header's "channels", else by the first image; then --mean/--std must fit.
static void fix_channels(state *st, int channels)
{
    st->cfg.channels = channels;
    st->channels_known = true;
    float *lists[2] = {st->mean, st->std};
    int *counts[2] = {&st->nmean, &st->nstd};
    const char *names[2] = {"--mean", "--std"};
    for (int k = 0; k < 2; k++) {
        if (*counts[k] == 0)
            lists[k][0] = 0.5f, *counts[k] = 1;
        if (*counts[k] == 1)
            lists[k][1] = lists[k][2] = lists[k][0];
        else if (*counts[k] != channels)
            die_usage("%s has %d values, the output has %d channel%s", names[k], *counts[k],
                      channels, channels == 1 ? "" : "s");
    }
}

// ---- reading -----------------------------------------------------------------------

// The next frame of the inputs, one file after another; false at the end.
static bool next_frame(state *st, mts_frame *f)
{
    for (;;) {
        if (!st->reader) {
            if (st->next_path >= (st->npaths ? st->npaths : 1))
                return false;
            const char *path = st->npaths ? st->paths[st->next_path] : "-";
            st->next_path++;
            st->reader = mts_reader_open(path, &st->limits);
            if (!st->reader)
                die(path, "cannot open: %s", strerror(errno));
        }
        if (mts_read_or_die(st->reader, f))
            return true;
        mts_reader_close(st->reader);
        st->reader = NULL;
    }
}

static uint32_t record_id(state *st, const slot *s, const char *key, uint64_t fallback)
{
    int64_t v;
    if (!mts_opt_int(st->reader, &s->frame, key, &v))
        v = (int64_t)fallback;
    if (v < 0 || v > (int64_t)UINT32_MAX)
        mts_die_at(st->reader, &s->frame, "key '%s': %lld is outside [0, 2^32)", key, (long long)v);
    return (uint32_t)v;
}

// Checks a record's images and sets up its views.
static void take_record(state *st, slot *s)
{
    const mts_reader *r = st->reader;
    s->nviews = 0;
    for (int k = 0; k < NKEYS; k++) {
        mts_tensor t;
        if (!mts_opt_tensor(r, &s->frame, image_keys[k], &t))
            continue;
        if (t.dtype != MTS_U8 && t.dtype != MTS_U16)
            mts_die_at(r, &s->frame, "key '%s': dtype %s: augment takes u8 or u16 images",
                       image_keys[k], mts_dtype_name(t.dtype));
        if (t.rank != 3 || (t.shape[0] != 1 && t.shape[0] != 3) || t.shape[1] < 1 ||
            t.shape[2] < 1 || t.shape[1] > INT_MAX || t.shape[2] > INT_MAX)
            mts_die_at(r, &s->frame, "key '%s': expected an image of shape (C, H, W) with C = 1 or 3"
                       " and H, W >= 1, got rank %d%s%lld", image_keys[k], t.rank,
                       t.rank ? ", C = " : "", t.rank ? (long long)t.shape[0] : 0LL);
        view_job *v = &s->views[s->nviews++];
        v->key = k;
        v->src = (img_src){(int)t.shape[0], (int)t.shape[1], (int)t.shape[2], t.dtype == MTS_U16, t.data};
    }
    if (s->nviews == 0)
        mts_die_at(r, &s->frame, "the record has no image tensor ('image', or 'a' and 'b')");
    if (!st->channels_known)
        fix_channels(st, s->views[0].src.channels);
    s->epoch = record_id(st, s, "epoch", 0);
    s->index = record_id(st, s, "index", st->records_read);
    s->on_sheet = st->sheet_path && st->records_read < (uint64_t)st->sheet_count;
    st->records_read++;
}

// Fills w with the next frames: up to st->window_records records or WINDOW_BYTES
// bytes, and the headers among them.  Leaves w->count = 0 at the end.
static void read_window(state *st, window *w)
{
    w->count = 0;
    w->njobs = 0;
    int records = 0;
    size_t bytes = 0;
    mts_frame f;
    while (records < st->window_records && bytes < WINDOW_BYTES && next_frame(st, &f)) {
        if (w->count == w->cap) {
            int cap = w->cap ? 2 * w->cap : st->window_records + 1;
            w->slots = xrealloc(w->slots, (size_t)cap * sizeof(slot));
            memset(w->slots + w->cap, 0, (size_t)(cap - w->cap) * sizeof(slot));
            w->cap = cap;
        }
        slot *s = &w->slots[w->count++];
        if (f.size > s->cap) {
            free(s->bytes);
            s->cap = f.size;
            s->bytes = xmalloc(s->cap);
        }
        memcpy(s->bytes, f.bytes, f.size);
        if (s->has_parsed)
            msgpack_unpacked_destroy(&s->parsed);
        msgpack_unpacked_init(&s->parsed);
        s->has_parsed = true;
        size_t off = 0;
        if (msgpack_unpack_next(&s->parsed, (const char *)s->bytes, f.size, &off) !=
            MSGPACK_UNPACK_SUCCESS)
            mts_die_at(st->reader, &f, "msgpack-c could not parse a copy of the frame");
        s->frame = f;
        s->frame.root = s->parsed.data;
        s->frame.bytes = s->bytes;
        bytes += f.size;
        if (f.is_header) {
            s->nviews = 0;
            int64_t c, per_epoch, epochs, start = 0;
            if (!st->channels_known && mts_opt_int(st->reader, &s->frame, "channels", &c) &&
                (c == 1 || c == 3))
                fix_channels(st, (int)c);
            // pair-sample says how many records follow: the progress line can
            // then tell the time left.
            if (mts_opt_int(st->reader, &s->frame, "pairs_per_epoch", &per_epoch) &&
                mts_opt_int(st->reader, &s->frame, "epochs", &epochs)) {
                mts_opt_int(st->reader, &s->frame, "start", &start);
                if (per_epoch > 0 && epochs > 0 && per_epoch * epochs > start)
                    st->records_expected += (uint64_t)(per_epoch * epochs - start);
            }
        } else {
            take_record(st, s);
            records++;
            if (w->njobs + s->nviews > w->jobs_cap) {
                w->jobs_cap = 2 * w->jobs_cap + NKEYS;
                w->jobs = xrealloc(w->jobs, (size_t)w->jobs_cap * sizeof *w->jobs);
            }
            for (int k = 0; k < s->nviews; k++)
                w->jobs[w->njobs++] = (job_ref){w->count - 1, k};
        }
    }
}

// ---- augmenting -------------------------------------------------------------------

static void augment_view(const state *st, const slot *s, view_job *v, thread_scratch *ts)
{
    const aug_config *c = &st->cfg;
    size_t n = (size_t)c->size * c->size, values = (size_t)c->channels * n;
    size_t out_bytes = values * (st->u8 ? 1 : sizeof(float));
    if (out_bytes > v->out_cap) {
        free(v->out);
        v->out = xaligned_alloc(out_bytes);
        v->out_cap = out_bytes;
    }
    aug_params p;
    aug_draw(c, v->src.height, v->src.width, v->src.channels, st->seed, s->epoch, s->index,
             image_views[v->key], &p);
    float *x = st->u8 ? img_scratch_get(&ts->planes, values * sizeof(float)) : v->out;
    aug_render(c, &p, &v->src, x, &ts->ws);
    if (s->on_sheet && !st->u8) {
        if (values > v->tile_cap) {
            free(v->tile);
            v->tile = xmalloc(values);
            v->tile_cap = values;
        }
        img_to_u8(x, c->channels, n, v->tile);
    }
    if (st->u8)
        img_to_u8(x, c->channels, n, v->out);
    else
        img_normalize(x, c->channels, n, st->mean, st->std, x);
    if (!st->targets)
        return;
    if (out_bytes > v->target_cap) {
        free(v->target);
        v->target = xaligned_alloc(out_bytes);
        v->target_cap = out_bytes;
    }
    float *t = st->u8 ? img_scratch_get(&ts->planes, values * sizeof(float)) : v->target;
    aug_render_target(c, &p, &v->src, t, &ts->ws);
    if (st->u8)
        img_to_u8(t, c->channels, n, v->target);
    aug_target_code(&p, v->code);
}

typedef struct {
    const state *st;
    const window *w;
    thread_scratch *scratch;  // (threads,)
} augmenting;

static void augment_job(void *ctx, int index, int worker)
{
    augmenting *a = ctx;
    job_ref j = a->w->jobs[index];
    slot *s = &a->w->slots[j.slot];
    augment_view(a->st, s, &s->views[j.view], &a->scratch[worker]);
}

// ---- writing -------------------------------------------------------------------------

// Keys of an input header that augment writes itself, and "size" and
// "dtype" (pair-sample's description of the pack's images), which no longer
// describe the stream's images and are left out.
static bool overridden_header_key(const msgpack_object *k)
{
    static const char *const keys[] = {"mts", "tool", "args", "image_size", "image_dtype",
                                       "channels", "image_mean", "image_std", "size", "dtype"};
    if (k->type != MSGPACK_OBJECT_STR)
        return false;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (k->via.str.size == strlen(keys[i]) && memcmp(k->via.str.ptr, keys[i], k->via.str.size) == 0)
            return true;
    return false;
}

static void put_floats(mts_writer *w, const char *key, const float *v, int n)
{
    mts_put_key(w, key);
    msgpack_pack_array(mts_packer(w), (size_t)n);
    for (int i = 0; i < n; i++)
        msgpack_pack_double(mts_packer(w), v[i]);
}

// The input header's keys, with ours added or put over theirs.
static void write_header(state *st, const mts_frame *in)
{
    if (!st->channels_known)
        fix_channels(st, st->channels_opt ? st->channels_opt : 3);
    const msgpack_object_map *m = in ? &in->root.via.map : NULL;
    uint32_t kept = 0;
    for (uint32_t i = 0; m && i < m->size; i++)
        kept += !overridden_header_key(&m->ptr[i].key);
    mts_write_header(st->out, "augment", st->argc, st->argv, kept + 3 + (st->u8 ? 0 : 2));
    for (uint32_t i = 0; m && i < m->size; i++) {
        if (overridden_header_key(&m->ptr[i].key))
            continue;
        msgpack_pack_object(mts_packer(st->out), m->ptr[i].key);
        msgpack_pack_object(mts_packer(st->out), m->ptr[i].val);
    }
    mts_put_int(st->out, "image_size", st->cfg.size);
    mts_put_str(st->out, "image_dtype", st->u8 ? "u8" : "f32");
    mts_put_int(st->out, "channels", st->cfg.channels);
    if (!st->u8) {
        put_floats(st->out, "image_mean", st->mean, st->cfg.channels);
        put_floats(st->out, "image_std", st->std, st->cfg.channels);
    }
    st->header_written = true;
}

static void save_sheet(state *st)
{
    int cols = 1;
    for (int i = 0; i < st->sheet_rows; i++)
        if (st->sheet_tiles[2 * i + 1])
            cols = 2;
    uint8_t **tiles = xmalloc((size_t)st->sheet_rows * cols * sizeof *tiles);
    for (int i = 0; i < st->sheet_rows; i++)
        for (int k = 0; k < cols; k++)
            tiles[i * cols + k] = st->sheet_tiles[2 * i + k];
    char err[600];
    if (!aug_write_sheet(st->sheet_path, st->sheet_rows, cols, st->cfg.channels, st->cfg.size,
                         tiles, err, sizeof err))
        die(st->sheet_path, "%s", err);
    free(tiles);
    st->sheet_done = true;
}

// A record's views (u8) go onto the sheet: "image" and "a" left, "b" right.
static void add_to_sheet(state *st, const slot *s)
{
    size_t bytes = (size_t)st->cfg.channels * st->cfg.size * st->cfg.size;
    for (int i = 0; i < s->nviews; i++) {
        const view_job *v = &s->views[i];
        uint8_t **tile = &st->sheet_tiles[2 * st->sheet_rows + image_views[v->key]];
        if (!*tile)
            *tile = xmalloc(bytes);
        memcpy(*tile, st->u8 ? v->out : v->tile, bytes);
    }
    if (++st->sheet_rows == st->sheet_count)
        save_sheet(st);
}

static void write_record(state *st, const slot *s)
{
    const aug_config *c = &st->cfg;
    int64_t shape[3] = {c->channels, c->size, c->size};
    const msgpack_object_map *m = &s->frame.root.via.map;
    mts_begin_map(st->out, m->size + (st->targets ? 2 * (uint32_t)s->nviews : 0));
    for (uint32_t i = 0; i < m->size; i++) {
        const view_job *v = NULL;
        for (int k = 0; k < s->nviews; k++) {
            const char *key = image_keys[s->views[k].key];
            const msgpack_object *o = &m->ptr[i].key;
            if (o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(key) &&
                memcmp(o->via.str.ptr, key, o->via.str.size) == 0)
                v = &s->views[k];
        }
        if (v) {
            mts_tensor t = mts_tensor_make(st->u8 ? MTS_U8 : MTS_F32, 3, shape, v->out);
            mts_put_tensor(st->out, image_keys[v->key], &t);
            if (st->targets) {
                char key[32];
                snprintf(key, sizeof key, "%s_target", image_keys[v->key]);
                t = mts_tensor_make(st->u8 ? MTS_U8 : MTS_F32, 3, shape, v->target);
                mts_put_tensor(st->out, key, &t);
                snprintf(key, sizeof key, "%s_code", image_keys[v->key]);
                int64_t six = 6;
                t = mts_tensor_make(MTS_F32, 1, &six, v->code);
                mts_put_tensor(st->out, key, &t);
            }
        } else {
            msgpack_pack_object(mts_packer(st->out), m->ptr[i].key);
            msgpack_pack_object(mts_packer(st->out), m->ptr[i].val);
        }
    }
    if (s->on_sheet && !st->sheet_done)
        add_to_sheet(st, s);
    st->records_written++;
}

static void write_window(state *st, const window *w)
{
    for (int i = 0; i < w->count; i++) {
        const slot *s = &w->slots[i];
        if (s->frame.is_header) {
            write_header(st, &s->frame);
            continue;
        }
        if (!st->header_written)
            write_header(st, NULL);
        write_record(st, s);
    }
    if (st->quiet)
        return;
    double elapsed = now_seconds() - st->start;
    double rate = st->records_written / (elapsed > 0 ? elapsed : 1);
    if (st->records_expected > st->records_written)
        progress_update(&st->progress, "%llu of %llu records, %.0f records/s, %.0f s left",
                        (unsigned long long)st->records_written,
                        (unsigned long long)st->records_expected, rate,
                        (st->records_expected - st->records_written) / (rate > 0 ? rate : 1));
    else
        progress_update(&st->progress, "%llu records, %.0f records/s",
                        (unsigned long long)st->records_written, rate);
}

static void free_window(window *w)
{
    for (int i = 0; i < w->cap; i++) {
        slot *s = &w->slots[i];
        free(s->bytes);
        if (s->has_parsed)
            msgpack_unpacked_destroy(&s->parsed);
        for (int k = 0; k < NKEYS; k++) {
            free(s->views[k].out);
            free(s->views[k].tile);
            free(s->views[k].target);
        }
    }
    free(w->slots);
    free(w->jobs);
}

// ---- main ---------------------------------------------------------------------------

int main(int argc, char **argv)
{
    util_init(argv[0]);
    static state st;
    aug_config_default(&st.cfg);
    st.sheet_count = 8;
    st.argc = argc;
    st.argv = argv;
    parse_options(&st, argc, argv);
    if (st.channels_opt)
        fix_channels(&st, st.channels_opt);
    if (st.sheet_path)
        st.sheet_tiles = xcalloc((size_t)st.sheet_count * 2, sizeof *st.sheet_tiles);
    st.limits = mts_limits_default();
    progress_init(&st.progress, 10);
    st.progress.last = now_seconds();  // the first plain line after 10 s, not at once
    st.start = now_seconds();

    augmenting ctx = {&st, NULL, xcalloc((size_t)st.threads, sizeof(thread_scratch))};
    jobs *pool = jobs_start(st.threads);
    window windows[2] = {{0}};
    window *computing = &windows[0], *spare = &windows[1];
    read_window(&st, computing);
    bool spare_pending = false;  // spare holds augmented records not yet written
    while (computing->count > 0) {
        ctx.w = computing;
        jobs_submit(pool, computing->njobs, augment_job, &ctx);
        // Meanwhile, on this thread: the previous window out, the next in.
        if (spare_pending)
            write_window(&st, spare);
        read_window(&st, spare);
        jobs_wait(pool);
        window *t = computing;
        computing = spare;
        spare = t;
        spare_pending = true;
    }
    jobs_stop(pool);
    if (spare_pending)
        write_window(&st, spare);
    for (int i = 0; i < 2; i++)
        free_window(&windows[i]);
    for (int i = 0; i < st.threads; i++) {
        img_workspace_free(&ctx.scratch[i].ws);
        free(ctx.scratch[i].planes.p);
    }
    free(ctx.scratch);
    if (!st.header_written)
        write_header(&st, NULL);
    progress_done(&st.progress);
    if (st.sheet_path && !st.sheet_done) {
        if (st.sheet_rows > 0)
            save_sheet(&st);
        else
            warnf(st.sheet_path, "no records: no contact sheet written");
    }
    mts_writer_close(st.out);
    if (st.sheet_tiles)
        for (int i = 0; i < 2 * st.sheet_count; i++)
            free(st.sheet_tiles[i]);
    free(st.sheet_tiles);
    return 0;
}
