// mkcases: turns Fashion-MNIST into a multi-instance "patient case" dataset:
// every base image becomes a case of 1 to 4 simulated photos (PNG files), with
// CSV manifests for case-pack(1).  The design is in README.md beside this file.
//
//   mkcases [options] --out DIR
//
// Writes DIR/images/<split>/<case>_<k>.png, DIR/cases.csv (case,path,label,
// split: train, val, test, test_shift) and DIR/natural.csv (case,path: the
// unlabeled "natural" pretraining source).  Every photo draws its randomness
// from its own Philox stream (seed, source file, base image, photo), so the
// bytes do not depend on the thread count.
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>
#include <zlib.h>

#include "cli.h"
#include "image.h"
#include "imgops.h"
#include "rng.h"
#include "util.h"

static const char usage_text[] =
    "usage: mkcases [options] --out DIR\n"
    "Turn Fashion-MNIST into multi-instance patient cases: PNG photos and CSV manifests.\n"
    "\n"
    "      --cases-train N     labeled cases from the train file, val included (default 10000)\n"
    "      --val-fraction F    of those, held out as split val (default 0.1)\n"
    "      --cases-test N      in-distribution test cases from the t10k file (default 2000)\n"
    "      --cases-shift N     test_shift cases, other t10k images, another clinic (default 2000)\n"
    "      --natural N         unlabeled single-image cases from unused train images (default 20000)\n"
    "  -s, --size S            photos are S x S grey (default 32)\n"
    "      --seed N            seed of the splits and of every photo (default 1)\n"
    "      --data DIR          the IDX files (default /usr/share/datasets/fashion-mnist)\n"
    "  -o, --out DIR           output folder (created)\n"
    "  -T, --threads N         threads (default: all cores)\n"
    "  -q, --quiet             no progress or summary\n"
    "  -h, --help, -V, --version\n";

// Fashion-MNIST's classes, in the order of its label numbers.
#define NCLASSES 10
static const char *const class_names[NCLASSES] = {
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"};

// ---- Fashion-MNIST's IDX files ----------------------------------------------------------

enum { SRC_TRAIN, SRC_T10K, NSOURCES };
static const char *const source_names[NSOURCES] = {"train", "t10k"};

typedef struct {
    int count, height, width;
    uint8_t *pixels;   // (count, height, width)
    uint8_t *labels;   // (count,)
} idx_set;

// The whole decompressed content of a gzip file.
static uint8_t *read_gzip(const char *path, size_t *size)
{
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f)
        die(path, "%s", errno ? strerror(errno) : "cannot open");
    size_t cap = 1 << 20, n = 0;
    uint8_t *data = xmalloc(cap);
    for (;;) {
        if (n == cap)
            data = xrealloc(data, cap = mul_size(cap, 2, "file size"));
        unsigned want = cap - n > (1u << 30) ? 1u << 30 : (unsigned)(cap - n);
        int got = gzread(f, data + n, want);
        if (got < 0) {
            int code;
            die(path, "cannot decompress: %s", gzerror(f, &code));
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    gzclose(f);
    *size = n;
    return data;
}

static uint32_t big_endian32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

// An IDX file is a big-endian magic 0x000008DD (0x08: unsigned bytes, DD: the
// number of dimensions), DD big-endian 32-bit sizes, then the bytes in C
// order.  Returns the data; dims gets the sizes.
static const uint8_t *idx_parse(const char *path, const uint8_t *file, size_t size, int ndim,
                                uint32_t *dims)
{
    size_t header = 4 + 4 * (size_t)ndim;
    if (size < header || big_endian32(file) != (0x0800u | (uint32_t)ndim))
        die(path, "not an IDX file of unsigned bytes with %d dimensions", ndim);
    size_t total = 1;
    for (int d = 0; d < ndim; d++) {
        dims[d] = big_endian32(file + 4 + 4 * d);
        total = mul_size(total, dims[d], "IDX size");
    }
    if (size - header != total)
        die(path, "%zu bytes of data where the header promises %zu", size - header, total);
    return file + header;
}

static void load_idx_set(const char *dir, int source, idx_set *set)
{
    char images_path[4096], labels_path[4096];
    snprintf(images_path, sizeof images_path, "%s/%s-images-idx3-ubyte.gz", dir, source_names[source]);
    snprintf(labels_path, sizeof labels_path, "%s/%s-labels-idx1-ubyte.gz", dir, source_names[source]);
    size_t images_size, labels_size;
    uint8_t *images_file = read_gzip(images_path, &images_size);
    uint8_t *labels_file = read_gzip(labels_path, &labels_size);
    uint32_t image_dims[3], label_dims[1];
    const uint8_t *pixels = idx_parse(images_path, images_file, images_size, 3, image_dims);
    const uint8_t *labels = idx_parse(labels_path, labels_file, labels_size, 1, label_dims);
    if (image_dims[0] != label_dims[0])
        die(labels_path, "%u labels for %u images", label_dims[0], image_dims[0]);
    if (image_dims[0] == 0 || image_dims[0] > 1000000 || image_dims[1] == 0 || image_dims[1] > 1024 ||
        image_dims[2] == 0 || image_dims[2] > 1024)
        die(images_path, "implausible shape %u x %u x %u", image_dims[0], image_dims[1], image_dims[2]);
    for (uint32_t i = 0; i < label_dims[0]; i++)
        if (labels[i] >= NCLASSES)
            die(labels_path, "label %d of image %u is not a Fashion-MNIST class", labels[i], i);
    set->count = (int)image_dims[0];
    set->height = (int)image_dims[1];
    set->width = (int)image_dims[2];
    size_t npixels = (size_t)set->count * set->height * set->width;
    set->pixels = xmalloc(npixels);
    memcpy(set->pixels, pixels, npixels);
    set->labels = xmalloc((size_t)set->count);
    memcpy(set->labels, labels, (size_t)set->count);
    free(images_file);
    free(labels_file);
}

// ---- clinics: how a photo is taken ----------------------------------------------------

// The ranges of one "clinic"'s random viewpoint and imaging parameters; every
// photo draws each parameter uniformly from its range (README.md explains the
// choices).
typedef struct {
    float rotate_deg;                 // rotation in [-r, r]
    float scale_min, scale_max;       // 1: the base image fills the frame
    float shift;                      // per axis, in [-s, s] times the size
    float shear_deg;                  // horizontal shear in [-h, h]
    bool mirror;                      // half of the photos are mirrored left-right
    float sensor;                     // drawn at round(sensor * size), then upsampled
    float blur_min, blur_max;         // Gaussian sigma, in sensor pixels
    float brightness_min, brightness_max;   // x *= b
    float contrast_min, contrast_max; // (x - mean) * c + mean
    float gamma_min, gamma_max;       // x^g
    float backdrop_min, backdrop_max;   // x = g + (1 - g) x: a grey backdrop
    float noise_min, noise_max;       // std of additive Gaussian noise
} clinic;

// The clinic of the labeled cases (train, val, test).
static const clinic clinic_main = {
    .rotate_deg = 25, .scale_min = 0.8f, .scale_max = 1.2f, .shift = 0.1f, .shear_deg = 10,
    .sensor = 1, .blur_min = 0, .blur_max = 1.0f, .brightness_min = 0.8f, .brightness_max = 1.2f,
    .contrast_min = 0.7f, .contrast_max = 1.3f, .gamma_min = 0.7f, .gamma_max = 1.4f,
    .noise_min = 0, .noise_max = 0.03f};

// Another clinic (test_shift): the same viewpoints, but a coarser sensor
// (20 pixels for 32), softer optics, a flat and darker tone curve, more noise.
static const clinic clinic_shift = {
    .rotate_deg = 25, .scale_min = 0.8f, .scale_max = 1.2f, .shift = 0.1f, .shear_deg = 10,
    .sensor = 0.625f, .blur_min = 0.5f, .blur_max = 1.0f, .brightness_min = 0.8f, .brightness_max = 1.2f,
    .contrast_min = 0.5f, .contrast_max = 0.75f, .gamma_min = 1.2f, .gamma_max = 1.6f,
    .noise_min = 0.04f, .noise_max = 0.07f};

// The unlabeled "natural" source: garments further away, mildly turned,
// mirrored, on a grey backdrop, sharp and clean.
static const clinic clinic_natural = {
    .rotate_deg = 10, .scale_min = 0.7f, .scale_max = 1.0f, .shift = 0.1f, .shear_deg = 0, .mirror = true,
    .sensor = 1, .blur_min = 0, .blur_max = 0, .brightness_min = 1, .brightness_max = 1,
    .contrast_min = 1, .contrast_max = 1, .gamma_min = 1, .gamma_max = 1,
    .backdrop_min = 0, .backdrop_max = 0.35f, .noise_min = 0, .noise_max = 0.01f};

static float uniform_in(rng_t *r, float lo, float hi) { return lo + (hi - lo) * rng_uniform(r); }

// dst (dw x dh) sampled from src (sw x sh) at p = A q + b for the centre q of
// every output pixel (continuous coordinates: pixel i covers [i, i + 1), so
// its centre is i + 0.5), bilinearly.  m = {A00, A01, A10, A11, b0, b1}.
// Outside the source is 0 (the photo's background), or with clamp_edges the
// nearest edge pixel (for upsampling a whole image).
static void warp_affine(const float *src, int sw, int sh, float *dst, int dw, int dh, const double m[6],
                        bool clamp_edges)
{
    for (int y = 0; y < dh; y++)
        for (int x = 0; x < dw; x++) {
            double qx = x + 0.5, qy = y + 0.5;
            // Source pixel centres sit at i + 0.5: shift to index space.
            double fx = m[0] * qx + m[1] * qy + m[4] - 0.5;
            double fy = m[2] * qx + m[3] * qy + m[5] - 0.5;
            double x0 = floor(fx), y0 = floor(fy);
            double tx = fx - x0, ty = fy - y0;
            double sum = 0;
            for (int j = 0; j < 2; j++)
                for (int i = 0; i < 2; i++) {
                    double weight = (i ? tx : 1 - tx) * (j ? ty : 1 - ty);
                    // Kept in double until known to be inside the source:
                    // far outside, a coordinate may not fit an int.
                    double sx = x0 + i, sy = y0 + j;
                    if (clamp_edges) {
                        sx = sx < 0 ? 0 : sx > sw - 1 ? sw - 1 : sx;
                        sy = sy < 0 ? 0 : sy > sh - 1 ? sh - 1 : sy;
                    } else if (sx < 0 || sx > sw - 1 || sy < 0 || sy > sh - 1) {
                        continue;
                    }
                    sum += weight * src[(size_t)sy * sw + (size_t)sx];
                }
            dst[(size_t)y * dw + x] = (float)sum;
        }
}

// Per-thread buffers for render_photo.
typedef struct {
    float *base;    // the base image in [0, 1]
    float *sensor;  // the photo at the sensor's resolution
    float *photo;   // upsampled to the output size
    img_workspace ws;
} render_buffers;

// One photo of `base` (bw x bh u8) as `clinic` takes it: out is size x size
// u8.  params draws the parameters (a fixed number of words), noise the
// pixel noise, so the parameters do not depend on the image size.
static void render_photo(const clinic *c, const uint8_t *base, int bw, int bh, int size, rng_t *params,
                         rng_t *noise, render_buffers *b, uint8_t *out)
{
    float angle = uniform_in(params, -c->rotate_deg, c->rotate_deg) * (float)(M_PI / 180);
    float scale = uniform_in(params, c->scale_min, c->scale_max);
    float shift_x = uniform_in(params, -c->shift, c->shift), shift_y = uniform_in(params, -c->shift, c->shift);
    float shear = tanf(uniform_in(params, -c->shear_deg, c->shear_deg) * (float)(M_PI / 180));
    bool mirror = c->mirror && rng_uniform(params) < 0.5f;
    float sigma = uniform_in(params, c->blur_min, c->blur_max);
    float brightness = uniform_in(params, c->brightness_min, c->brightness_max);
    float contrast = uniform_in(params, c->contrast_min, c->contrast_max);
    float gamma = uniform_in(params, c->gamma_min, c->gamma_max);
    float backdrop = uniform_in(params, c->backdrop_min, c->backdrop_max);
    float noise_std = uniform_in(params, c->noise_min, c->noise_max);

    int n = (int)lroundf(c->sensor * (float)size);
    for (int i = 0; i < bw * bh; i++)
        b->base[i] = base[i] / 255.0f;
    // Forward map from base to sensor pixels: q = co + t + k M (p - cb), with
    // k fitting the base's long side to 7/8 of the frame (28 of 32 pixels:
    // Fashion-MNIST's own framing) and M = scale R(angle) Shear (mirror).
    // warp_affine needs the inverse, p = A q + b.
    double k = 0.875 * n / (bw > bh ? bw : bh);
    double ca = cos(angle), sa = sin(angle), flip = mirror ? -1 : 1;
    // R = [ca sa; -sa ca] turns counter-clockwise on screen (y down);
    // Shear = [1 shear; 0 1]; mirror negates x before both.
    double m00 = scale * ca * flip, m01 = scale * (ca * shear + sa);
    double m10 = -scale * sa * flip, m11 = scale * (-sa * shear + ca);
    double det = (m00 * m11 - m01 * m10) * k;
    double a00 = m11 / det, a01 = -m01 / det, a10 = -m10 / det, a11 = m00 / det;
    double cx = n / 2.0 + shift_x * n, cy = n / 2.0 + shift_y * n;
    double to_base[6] = {a00, a01, a10, a11, bw / 2.0 - (a00 * cx + a01 * cy), bh / 2.0 - (a10 * cx + a11 * cy)};
    warp_affine(b->base, bw, bh, b->sensor, n, n, to_base, false);

    // Optics, exposure, tone curve, backdrop, sensor noise: in that order.
    size_t npix = (size_t)n * n;
    img_blur(b->sensor, 1, n, n, sigma, img_blur_radius(sigma, n - 1), &b->ws);
    img_brightness(b->sensor, 1, npix, brightness);
    img_contrast(b->sensor, 1, npix, contrast);
    for (size_t i = 0; i < npix; i++)
        b->sensor[i] = powf(b->sensor[i], gamma);
    for (size_t i = 0; i < npix; i++)
        b->sensor[i] = backdrop + (1 - backdrop) * b->sensor[i];
    img_noise(b->sensor, 1, npix, noise_std, noise);

    const float *photo = b->sensor;
    if (n != size) {
        double up = (double)n / size;
        double to_sensor[6] = {up, 0, 0, up, 0, 0};
        warp_affine(b->sensor, n, n, b->photo, size, size, to_sensor, true);
        photo = b->photo;
    }
    img_to_u8(photo, 1, (size_t)size * size, out);
}

static void write_png(const char *path, const uint8_t *pixels, int size)
{
    VipsImage *im = vips_image_new_from_memory(pixels, (size_t)size * size, size, size, 1, VIPS_FORMAT_UCHAR);
    if (!im || vips_pngsave(im, path, "strip", TRUE, NULL))
        die(path, "cannot write PNG: %s", vips_error_buffer());
    g_object_unref(im);
}

// ---- the dataset ---------------------------------------------------------------------

enum { SPLIT_TRAIN, SPLIT_VAL, SPLIT_TEST, SPLIT_SHIFT, SPLIT_NATURAL, NSPLITS };
static const char *const split_names[NSPLITS] = {"train", "val", "test", "test_shift", "natural"};

// Philox stream ids: (seed, source, base image, photo << 8 | purpose) for a
// photo, (seed, STREAM_SPLITS, source, 0) for the split of a source file.
enum { STREAM_SPLITS = NSOURCES };
enum { PURPOSE_COUNT, PURPOSE_PARAMS, PURPOSE_NOISE };

#define MAX_PHOTOS 4

typedef struct {
    int source, index;   // the base image
    int split;
    int nphotos;
} case_job;

// The number of photos of a case: 1, 2, 3, 4 with probabilities
// 0.25, 0.35, 0.25, 0.15 (mean 2.3).
static int draw_photo_count(uint64_t seed, int source, int index)
{
    static const float cumulative[MAX_PHOTOS] = {0.25f, 0.60f, 0.85f, 1.0f};
    rng_t r = rng_make(seed, (uint64_t)source, (uint64_t)index, PURPOSE_COUNT);
    float u = rng_uniform(&r);
    int count = 1;
    while (count < MAX_PHOTOS && u >= cumulative[count - 1])
        count++;
    return count;
}

static void case_id(const case_job *j, char *out, size_t len)
{
    snprintf(out, len, "%s%05d", source_names[j->source], j->index);
}

static void photo_path(const char *dir, const case_job *j, int k, char *out, size_t len)
{
    char id[32];
    case_id(j, id, sizeof id);
    if ((size_t)snprintf(out, len, "%s%simages/%s/%s_%d.png", dir, *dir ? "/" : "", split_names[j->split], id, k) >=
        len)
        die(dir, "path too long");
}

static void make_dirs(const char *path)
{
    char *p = xstrdup(path);
    for (char *slash = p + 1;; slash++) {
        if (*slash != '/' && *slash)
            continue;
        char saved = *slash;
        *slash = 0;
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            die(p, "cannot create: %s", strerror(errno));
        *slash = saved;
        if (!saved)
            break;
    }
    free(p);
}

// Writes a manifest of the njobs cases to a temporary beside `path`, renamed
// into place when complete.
static void write_manifest(const char *path, const case_job *jobs, int njobs, bool labeled,
                           const idx_set *sets)
{
    char temp[4096];
    snprintf(temp, sizeof temp, "%s.tmp", path);
    FILE *f = fopen(temp, "w");
    if (!f)
        die(temp, "%s", strerror(errno));
    temp_register(temp);
    fputs(labeled ? "case,path,label,split\n" : "case,path\n", f);
    for (int i = 0; i < njobs; i++) {
        const case_job *j = &jobs[i];
        char id[32], file[4096];
        case_id(j, id, sizeof id);
        for (int k = 0; k < j->nphotos; k++) {
            photo_path("", j, k, file, sizeof file);
            if (labeled)
                fprintf(f, "%s,%s,%s,%s\n", id, file, class_names[sets[j->source].labels[j->index]],
                        split_names[j->split]);
            else
                fprintf(f, "%s,%s\n", id, file);
        }
    }
    if (fclose(f) != 0)
        die(temp, "%s", strerror(errno));
    if (rename(temp, path) != 0)
        die(path, "rename from %s: %s", temp, strerror(errno));
    temp_release(temp);
}

int main(int argc, char **argv)
{
    util_init(argv[0]);
    long long cases_train = 10000, cases_test = 2000, cases_shift = 2000, natural = 20000;
    double val_fraction = 0.1;
    int size = 32, threads = 0;
    uint64_t seed = 1;
    const char *data_dir = "/usr/share/datasets/fashion-mnist", *out_dir = NULL;
    bool quiet = false;
    enum { OPT_TRAIN = 256, OPT_VAL, OPT_TEST, OPT_SHIFT, OPT_NATURAL, OPT_SEED, OPT_DATA };
    static const struct option longopts[] = {
        {"cases-train", required_argument, 0, OPT_TRAIN}, {"val-fraction", required_argument, 0, OPT_VAL},
        {"cases-test", required_argument, 0, OPT_TEST}, {"cases-shift", required_argument, 0, OPT_SHIFT},
        {"natural", required_argument, 0, OPT_NATURAL}, {"size", required_argument, 0, 's'},
        {"seed", required_argument, 0, OPT_SEED}, {"data", required_argument, 0, OPT_DATA},
        {"out", required_argument, 0, 'o'}, {"threads", required_argument, 0, 'T'},
        {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "s:o:T:qhV", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_TRAIN: cases_train = cli_int("--cases-train", optarg, 0, 1000000); break;
        case OPT_VAL: val_fraction = cli_double("--val-fraction", optarg, 0, 0.9); break;
        case OPT_TEST: cases_test = cli_int("--cases-test", optarg, 0, 1000000); break;
        case OPT_SHIFT: cases_shift = cli_int("--cases-shift", optarg, 0, 1000000); break;
        case OPT_NATURAL: natural = cli_int("--natural", optarg, 0, 1000000); break;
        // The shifted clinic's sensor is 5/8 of the size: at least 5 pixels.
        case 's': size = (int)cli_int("--size", optarg, 8, 1024); break;
        case OPT_SEED: seed = (uint64_t)cli_int("--seed", optarg, 0, INT64_MAX); break;
        case OPT_DATA: data_dir = optarg; break;
        case 'o': out_dir = optarg; break;
        case 'T': threads = (int)cli_int("--threads", optarg, 1, 1024); break;
        case 'q': quiet = true; break;
        case 'h': fputs(usage_text, stdout); return 0;
        case 'V': cli_version(NULL); return 0;
        default: die_usage("unknown option");
        }
    }
    if (!out_dir)
        die_usage("no output: name the folder with --out");
    if (optind != argc)
        die_usage("unexpected argument '%s'", argv[optind]);
    if (threads > 0)
        omp_set_num_threads(threads);
    image_init(argv[0]);
    double t0 = now_seconds();

    idx_set sets[NSOURCES];
    for (int s = 0; s < NSOURCES; s++)
        load_idx_set(data_dir, s, &sets[s]);
    if (cases_train + natural > sets[SRC_TRAIN].count)
        die_usage("--cases-train %lld + --natural %lld is more than the %d train images", cases_train, natural,
                  sets[SRC_TRAIN].count);
    if (cases_test + cases_shift > sets[SRC_T10K].count)
        die_usage("--cases-test %lld + --cases-shift %lld is more than the %d t10k images", cases_test,
                  cases_shift, sets[SRC_T10K].count);

    // Splits by base image: a seeded permutation of each file, cut into runs.
    // train and val (in that order) and test come from the start of their
    // file's order, natural and test_shift from its end, so that the size of
    // one split does not change which images the others get.
    long long nval = llround(val_fraction * (double)cases_train);
    long long split_sizes[NSPLITS] = {cases_train - nval, nval, cases_test, cases_shift, natural};
    static const int split_source[NSPLITS] = {SRC_TRAIN, SRC_TRAIN, SRC_T10K, SRC_T10K, SRC_TRAIN};
    long long split_start[NSPLITS] = {0, cases_train - nval, 0, sets[SRC_T10K].count - cases_shift,
                                      sets[SRC_TRAIN].count - natural};
    uint32_t *perms[NSOURCES];
    for (int s = 0; s < NSOURCES; s++) {
        perms[s] = xmalloc((size_t)sets[s].count * sizeof *perms[s]);
        rng_t r = rng_make(seed, STREAM_SPLITS, (uint64_t)s, 0);
        rng_permutation(&r, perms[s], (uint32_t)sets[s].count);
    }
    int njobs = 0;
    for (int sp = 0; sp < NSPLITS; sp++)
        njobs += (int)split_sizes[sp];
    case_job *jobs = xmalloc((size_t)(njobs ? njobs : 1) * sizeof *jobs);
    long long split_photos[NSPLITS] = {0}, total_photos = 0;
    for (int sp = 0, i = 0; sp < NSPLITS; sp++) {
        int source = split_source[sp];
        for (long long c = 0; c < split_sizes[sp]; c++, i++) {
            case_job *j = &jobs[i];
            j->source = source;
            j->index = (int)perms[source][split_start[sp] + c];
            j->split = sp;
            j->nphotos = sp == SPLIT_NATURAL ? 1 : draw_photo_count(seed, source, j->index);
            split_photos[sp] += j->nphotos;
            total_photos += j->nphotos;
        }
    }

    // A manifest exists only when every image it names was written by one
    // run: the old ones go first, the new ones are renamed in at the end.
    char cases_csv[4096], natural_csv[4096];
    snprintf(cases_csv, sizeof cases_csv, "%s/cases.csv", out_dir);
    snprintf(natural_csv, sizeof natural_csv, "%s/natural.csv", out_dir);
    for (const char *old = cases_csv; old; old = old == cases_csv ? natural_csv : NULL)
        if (unlink(old) != 0 && errno != ENOENT)
            die(old, "cannot remove the old manifest: %s", strerror(errno));
    make_dirs(out_dir);
    for (int sp = 0; sp < NSPLITS; sp++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/images/%s", out_dir, split_names[sp]);
        if (split_sizes[sp] > 0)
            make_dirs(dir);
    }

    progress_t progress;
    progress_init(&progress, 10);
    long long done = 0;
    double t_render = now_seconds();
    size_t base_pixels = 0;
    for (int s = 0; s < NSOURCES; s++)
        if ((size_t)sets[s].height * sets[s].width > base_pixels)
            base_pixels = (size_t)sets[s].height * sets[s].width;
#pragma omp parallel
    {
        render_buffers b = {0};
        b.base = xmalloc(base_pixels * sizeof *b.base);
        b.sensor = xmalloc((size_t)size * size * sizeof *b.sensor);
        b.photo = xmalloc((size_t)size * size * sizeof *b.photo);
        uint8_t *pixels = xmalloc((size_t)size * size);
#pragma omp for schedule(dynamic, 16)
        for (int i = 0; i < njobs; i++) {
            const case_job *j = &jobs[i];
            const idx_set *set = &sets[j->source];
            const uint8_t *base = set->pixels + (size_t)j->index * set->height * set->width;
            const clinic *c = j->split == SPLIT_SHIFT ? &clinic_shift
                              : j->split == SPLIT_NATURAL ? &clinic_natural
                                                          : &clinic_main;
            for (int k = 0; k < j->nphotos; k++) {
                rng_t params = rng_make(seed, (uint64_t)j->source, (uint64_t)j->index, (uint64_t)k << 8 | PURPOSE_PARAMS);
                rng_t noise = rng_make(seed, (uint64_t)j->source, (uint64_t)j->index, (uint64_t)k << 8 | PURPOSE_NOISE);
                render_photo(c, base, set->width, set->height, size, &params, &noise, &b, pixels);
                char path[4096];
                photo_path(out_dir, j, k, path, sizeof path);
                write_png(path, pixels, size);
            }
            long long now_done;
#pragma omp atomic capture
            now_done = done += j->nphotos;
            if (!quiet && omp_get_thread_num() == 0) {
                double el = now_seconds() - t_render;
                progress_update(&progress, "%lld/%lld images, %.0f images/s, %.0f s left", now_done, total_photos,
                                now_done / el, (total_photos - now_done) / (now_done / el));
            }
        }
        free(b.base);
        free(b.sensor);
        free(b.photo);
        free(pixels);
        img_workspace_free(&b.ws);
    }
    if (!quiet)
        progress_done(&progress);

    int nlabeled = njobs - (int)split_sizes[SPLIT_NATURAL];
    write_manifest(cases_csv, jobs, nlabeled, true, sets);
    write_manifest(natural_csv, jobs + nlabeled, (int)split_sizes[SPLIT_NATURAL], false, sets);
    if (!quiet) {
        fprintf(stderr, "mkcases: %s: %d cases, %lld images of %dx%d; %.1f s\n", out_dir, njobs, total_photos, size,
                size, now_seconds() - t0);
        for (int sp = 0; sp < NSPLITS; sp++)
            fprintf(stderr, "mkcases:   %-10s %6lld cases, %6lld images (%.2f per case)\n", split_names[sp],
                    split_sizes[sp], split_photos[sp],
                    split_sizes[sp] ? (double)split_photos[sp] / (double)split_sizes[sp] : 0.0);
    }
    for (int s = 0; s < NSOURCES; s++) {
        free(sets[s].pixels);
        free(sets[s].labels);
        free(perms[s]);
    }
    free(jobs);
    return 0;
}
