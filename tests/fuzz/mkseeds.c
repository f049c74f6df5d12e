// mkseeds: writes the fuzz targets' seed inputs, small valid files of every
// kind they read, made with the library's own writers so that the seeds
// follow the formats as they are today.
//
//   mkseeds DIR     writes DIR/stream, DIR/pack, DIR/ckpt, DIR/safetensors, DIR/csv,
//                   DIR/image, DIR/dicom
//
// The DICOM seeds are the small sample files of Debian's python3-pydicom
// (when installed), each behind an option byte.
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <vips/vips.h>

#include "ckpt.h"
#include "image.h"
#include "model.h"
#include "optim.h"
#include "pack.h"
#include "safetensors.h"
#include "stream.h"
#include "util.h"

static char dir[4096];

static const char *seed_path(const char *kind, const char *name)
{
    static char path[8192];
    snprintf(path, sizeof path, "%s/%s", dir, kind);
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        die(path, "cannot create: %s", strerror(errno));
    snprintf(path, sizeof path, "%s/%s/%s", dir, kind, name);
    return path;
}

static void write_file(const char *path, const void *prefix, size_t nprefix, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(prefix, 1, nprefix, f) != nprefix || fwrite(data, 1, n, f) != n || fclose(f) != 0)
        die(path, "cannot write: %s", strerror(errno));
}

static uint8_t *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path, "cannot open: %s", strerror(errno));
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    rewind(f);
    uint8_t *p = xmalloc(*size);
    if (fread(p, 1, *size, f) != *size)
        die(path, "cannot read");
    fclose(f);
    return p;
}

// ---- streams ------------------------------------------------------------------

// Records with a tensor of every dtype, a scalar, an empty tensor, labels.
static void write_records(const char *path, int level)
{
    mts_write_opts o = {.zstd_level = level};
    mts_writer *w = mts_writer_open(path, &o);
    char *argv[] = {"mkseeds", "--x", NULL};
    mts_write_header(w, "mkseeds", 2, argv, 2);
    mts_put_int(w, "pairs_per_epoch", 2);
    mts_put_key(w, "classes");
    msgpack_pack_array(mts_packer(w), 2);
    mts_pack_str(mts_packer(w), "cat");
    mts_pack_str(mts_packer(w), "dog");
    uint8_t bytes[64];
    for (int i = 0; i < 64; i++)
        bytes[i] = (uint8_t)(i * 37);
    int64_t s122[3] = {1, 2, 2}, s2[1] = {2}, s0[1] = {0};
    mts_tensor t = mts_tensor_make(MTS_U8, 3, s122, bytes);
    mts_begin_map(w, 4);
    mts_put_str(w, "case", "a");
    mts_put_int(w, "inst", 0);
    mts_put_int(w, "label", 1);
    mts_put_tensor(w, "image", &t);
    mts_begin_map(w, 7);
    mts_put_str(w, "case", "b");
    t = mts_tensor_make(MTS_U16, 3, s122, bytes);
    mts_put_tensor(w, "u16", &t);
    t = mts_tensor_make(MTS_I32, 1, s2, bytes);
    mts_put_tensor(w, "i32", &t);
    t = mts_tensor_make(MTS_I64, 0, NULL, bytes);
    mts_put_tensor(w, "i64", &t);
    t = mts_tensor_make(MTS_F32, 1, s2, bytes);
    mts_put_tensor(w, "f32", &t);
    t = mts_tensor_make(MTS_F64, 1, s0, bytes);
    mts_put_tensor(w, "f64", &t);
    mts_put_key(w, "label");
    msgpack_pack_array(mts_packer(w), 2);
    msgpack_pack_int(mts_packer(w), 0);
    msgpack_pack_int(mts_packer(w), 1);
    mts_writer_close(w);
}

// A pair record as augment writes them, and a header with every msgpack type.
static void write_pairs(const char *path)
{
    mts_write_opts o = {.zstd_level = 0};
    mts_writer *w = mts_writer_open(path, &o);
    mts_write_header(w, "mkseeds", 0, NULL, 1);
    mts_put_key(w, "misc");
    msgpack_packer *pk = mts_packer(w);
    msgpack_pack_array(pk, 10);
    msgpack_pack_nil(pk);
    msgpack_pack_true(pk);
    msgpack_pack_int64(pk, -5000000000);
    msgpack_pack_uint64(pk, 18000000000000000000ull);
    msgpack_pack_float(pk, 1.5f);
    msgpack_pack_double(pk, -0.25);
    msgpack_pack_bin(pk, 3);
    msgpack_pack_bin_body(pk, "xyz", 3);
    msgpack_pack_ext(pk, 2, 7);
    msgpack_pack_ext_body(pk, "ab", 2);
    msgpack_pack_map(pk, 1);
    mts_pack_str(pk, "k");
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 0);
    mts_pack_str(pk, "");
    float img[4] = {0.5f, -1, 1, 0};
    int64_t shape[3] = {1, 2, 2};
    mts_tensor t = mts_tensor_make(MTS_F32, 3, shape, img);
    mts_begin_map(w, 7);
    mts_put_str(w, "case", "p");
    mts_put_int(w, "inst_a", 0);
    mts_put_int(w, "inst_b", 1);
    mts_put_tensor(w, "a", &t);
    mts_put_tensor(w, "b", &t);
    mts_put_int(w, "epoch", 0);
    mts_put_int(w, "index", 0);
    mts_writer_close(w);
}

static void stream_seeds(void)
{
    char raw[8192], zst[8192];
    snprintf(raw, sizeof raw, "%s", seed_path("stream", "records.mts"));
    write_records(raw, 0);
    snprintf(zst, sizeof zst, "%s", seed_path("stream", "records.mts.zst"));
    write_records(zst, 3);
    write_pairs(seed_path("stream", "pairs.mts"));
    // Raw after zstd after raw: the reader switches modes at frame boundaries.
    size_t na, nb;
    uint8_t *a = slurp(raw, &na), *b = slurp(zst, &nb);
    uint8_t *cat = xmalloc(2 * na + nb);
    memcpy(cat, a, na);
    memcpy(cat + na, b, nb);
    memcpy(cat + na + nb, a, na);
    write_file(seed_path("stream", "concatenated.mts"), "", 0, cat, 2 * na + nb);
    free(a);
    free(b);
    free(cat);
}

// ---- packs --------------------------------------------------------------------

static void write_pack(const char *path, pack_task task, int channels, mts_dtype dtype, int zstd_level)
{
    char *classes[2] = {"cat", "dog"}, *splits[2] = {"train", "test"};
    pack_meta m = {.task = task, .nclasses = task == TASK_NONE ? 0 : 2, .classes = classes,
                   .nsplits = 2, .splits = splits, .channels = channels, .dtype = dtype, .size = 2};
    pack_writer *w = pack_writer_open(path, &m, zstd_level, 0, NULL);
    uint8_t pixels[128];  // two instances of up to (3, 2, 3) u16
    for (size_t i = 0; i < sizeof pixels; i++)
        pixels[i] = (uint8_t)(i * 11);
    int64_t shape[3] = {channels, 2, 3};
    for (int i = 0; i < 3; i++) {
        int ninst = 1 + i % 2;
        mts_tensor images[2];
        const char *files[2] = {"a.png", "b.tif"};
        int pages[2] = {0, 1};
        for (int k = 0; k < ninst; k++)
            images[k] = mts_tensor_make(dtype, 3, shape, pixels + k * 36);
        uint8_t labels[2] = {(uint8_t)(i & 1), 1};
        char id[8];
        snprintf(id, sizeof id, "c%d", i);
        pack_case c = {.id = id, .split = i == 2, .labeled = i != 1, .label = i % 2, .labels = labels,
                       .ninst = ninst, .images = images, .files = files, .pages = pages};
        pack_write_case(w, &c);
    }
    pack_writer_close(w);
}

static void pack_seeds(void)
{
    write_pack(seed_path("pack", "multiclass.pack"), TASK_MULTICLASS, 1, MTS_U8, 0);
    write_pack(seed_path("pack", "multilabel-u16-zstd.pack"), TASK_MULTILABEL, 1, MTS_U16, 1);
    write_pack(seed_path("pack", "unlabeled-rgb.pack"), TASK_NONE, 3, MTS_U8, 0);
}

// ---- checkpoints ----------------------------------------------------------------

// A ResNet-18 at width 1/64 (1 to 8 channels): every kind of tensor a real
// checkpoint has, in a few kilobytes.
static void write_ckpt(const char *path, int classes, optim_kind kind)
{
    model_config cfg = {.encoder = {.depth = 18, .width = 1.0 / 64, .stem = RESNET_STEM_SMALL, .in_ch = 1},
                        .head_layers = classes ? 0 : 2, .head_hidden = 4, .proj_dim = 4,
                        .classes = classes};
    model m;
    model_init(&m, &cfg, 1);
    optim_config oc = optim_defaults(kind);
    oc.momentum = 0.9;
    optimizer *o = optim_create(&m.params, &oc);
    ckpt_info info = {.step = 3, .records = 12, .epoch = 1, .loss = 2.5, .has_rng = true,
                      .rng = {1, 2, 3, 4, 5, 6, 7}, .task = "multiclass", .nclasses = classes};
    char *names[2] = {"cat", "dog"};
    for (int i = 0; i < classes; i++)
        info.class_names[i] = names[i];
    ckpt_save(path, &m, o, &info, "mkseeds", 0, NULL);
    optim_free(o);
    model_free(&m);
}

// The same frames uncompressed: mutations then reach the content rather
// than the zstd checksum.
static void decompress(const char *from, const char *to)
{
    mts_limits lim = mts_limits_default();
    mts_reader *r = mts_reader_open(from, &lim);
    mts_write_opts o = {.zstd_level = 0};
    mts_writer *w = mts_writer_open(to, &o);
    mts_frame f;
    while (mts_read_or_die(r, &f))
        mts_write_frame(w, &f);
    mts_writer_close(w);
    mts_reader_close(r);
}

static void ckpt_seeds(void)
{
    char lars[8192], ft[8192];
    snprintf(lars, sizeof lars, "%s", seed_path("ckpt", "lars.ckpt"));
    write_ckpt(lars, 0, OPTIM_LARS);
    decompress(lars, seed_path("ckpt", "lars-raw.ckpt"));
    snprintf(ft, sizeof ft, "%s", seed_path("ckpt", "classifier-sgd.ckpt"));
    write_ckpt(ft, 2, OPTIM_SGD);
    decompress(ft, seed_path("ckpt", "classifier-sgd-raw.ckpt"));
}

// ---- safetensors -------------------------------------------------------------------

// An export of the ResNet-18 x1/64 above with its head (the loader's every
// path: the model read off the names, F32 and I64 tensors, metadata), and a
// file of every dtype the reader converts, an empty tensor and a scalar.
static void safetensors_seeds(void)
{
    model_config cfg = {.encoder = {.depth = 18, .width = 1.0 / 64, .stem = RESNET_STEM_SMALL, .in_ch = 3},
                        .head_layers = 2, .head_hidden = 4, .proj_dim = 4, .classes = 2};
    model m;
    model_init(&m, &cfg, 1);
    ckpt_info info = {.step = 3, .records = 12, .epoch = 1, .loss = 2.5, .task = "multiclass", .nclasses = 2};
    char *names[2] = {"cat", "dog"};
    info.class_names[0] = names[0];
    info.class_names[1] = names[1];
    ckpt_export(seed_path("safetensors", "resnet18-head-fc.safetensors"), &m, &info,
                CKPT_ENCODER | CKPT_HEAD | CKPT_FC);
    model_free(&m);
    static const uint16_t half[3] = {0x3c00, 0x8001, 0x7e00}, bf16[2] = {0x3f80, 0xff80};
    static const double f64[2] = {0.1, -1e300};
    static const int64_t i64 = 7;
    static const uint8_t u8[4] = {1, 2, 3, 4};
    int64_t s3 = 3, s2 = 2, s22[2] = {2, 2}, s0 = 0;
    st_writer *w = st_writer_new();
    st_add_meta(w, "note", "every dtype the reader converts");
    st_add(w, "f16", ST_F16, 1, &s3, half);
    st_add(w, "bf16", ST_BF16, 1, &s2, bf16);
    st_add(w, "f64", ST_F64, 1, &s2, f64);
    st_add(w, "i64", ST_I64, 0, NULL, &i64);
    st_add(w, "u8", ST_U8, 2, s22, u8);
    st_add(w, "empty", ST_F32, 1, &s0, u8);
    st_write(w, seed_path("safetensors", "dtypes.safetensors"));
}

// ---- manifests --------------------------------------------------------------------

static void csv_seeds(void)
{
    static const struct { const char *name, *text; } seeds[] = {
        {"manifest.csv", "case,path,label,split\na,a1.png,cat,train\na,a2.png,cat,train\nb,b.jpg,dog,test\n"},
        {"quoted.csv", "case,path,findings\n\"p, 1\",\"x \"\"y\"\".png\",\"edema;effusion\"\n"
                       "p2,\"multi\nline.png\",\n"},
        {"bom-crlf.csv", "\xEF\xBB\xBF" "case,path\r\na,b.png\r\n\r\nc,d.png\r\n"},
        {"trailing-comma.csv", "case,path,\na,b,\nc,d,"},
    };
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++)
        write_file(seed_path("csv", seeds[i].name), "", 0, seeds[i].text, strlen(seeds[i].text));
}

// ---- images -------------------------------------------------------------------------

// A w x h image of `bands` bands, 8 or 16 bits, `pages` pages stacked
// vertically (TIFF writes them as pages).
static VipsImage *make_image(int w, int h, int bands, bool sixteen, int pages)
{
    size_t n = (size_t)w * h * pages * bands;
    uint16_t *px = xmalloc(n * 2);
    for (size_t i = 0; i < n; i++)
        px[i] = (uint16_t)((i * 2654435761u) >> (sixteen ? 16 : 24));
    if (!sixteen)
        for (size_t i = 0; i < n; i++)
            ((uint8_t *)px)[i] = (uint8_t)px[i];
    VipsImage *img = vips_image_new_from_memory_copy(px, n * (sixteen ? 2 : 1), w, h * pages, bands,
                                                      sixteen ? VIPS_FORMAT_USHORT : VIPS_FORMAT_UCHAR);
    free(px);
    VipsImage *out;
    VipsInterpretation interp = bands >= 3 ? (sixteen ? VIPS_INTERPRETATION_RGB16 : VIPS_INTERPRETATION_sRGB)
                                           : (sixteen ? VIPS_INTERPRETATION_GREY16 : VIPS_INTERPRETATION_B_W);
    if (!img || vips_copy(img, &out, "interpretation", interp, NULL))
        die("libvips", "%s", vips_error_buffer());
    g_object_unref(img);
    if (pages > 1)
        vips_image_set_int(out, "page-height", h);
    return out;
}

static void image_seed(const char *name, uint8_t options, VipsImage *img, const char *format)
{
    void *buf;
    size_t len;
    if (vips_image_write_to_buffer(img, format, &buf, &len, NULL))
        die(name, "libvips: %s", vips_error_buffer());
    write_file(seed_path("image", name), &options, 1, buf, len);
    g_free(buf);
    g_object_unref(img);
}

static void image_seeds(void)
{
    image_seed("rgb.png", 0, make_image(8, 6, 3, false, 1), ".png");
    image_seed("grey-to-1ch.png", 1, make_image(5, 9, 1, false, 1), ".png");
    image_seed("rgba-crop.png", 4, make_image(12, 7, 4, false, 1), ".png");
    image_seed("rgb-q50.jpg", 1, make_image(16, 8, 3, false, 1), ".jpg[Q=50]");
    image_seed("rgb-orig-size.webp", 32, make_image(6, 6, 3, false, 1), ".webp");
    image_seed("grey.gif", 0, make_image(7, 5, 1, false, 1), ".gif");
    image_seed("pages-u8.tif", 0, make_image(6, 4, 3, false, 3), ".tif");
    image_seed("u16-keep.tif", 2, make_image(9, 4, 1, true, 1), ".tif");
    image_seed("u16-pages-fixed.tif", 8 | 1, make_image(4, 4, 1, true, 2), ".tif[compression=lzw]");
    image_seed("rgb16-full.png", 16 | 32, make_image(5, 3, 3, true, 1), ".png");
}

// ---- DICOM ---------------------------------------------------------------------------

static void dicom_seeds(void)
{
    static const char root[] = "/usr/lib/python3/dist-packages/pydicom/data/test_files";
    static const char *const extra[] = {"dicomdirtests/77654033/CR1/6154", "dicomdirtests/77654033/CT2/17106"};
    DIR *d = opendir(root);
    if (!d)
        return;
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 4, ".dcm") != 0)
            continue;
        if (n == cap)
            names = xrealloc(names, (size_t)(cap = cap ? 2 * cap : 64) * sizeof *names);
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    for (size_t i = 0; i < sizeof extra / sizeof *extra; i++) {
        if (n == cap)
            names = xrealloc(names, (size_t)(cap = cap ? 2 * cap : 64) * sizeof *names);
        names[n++] = xstrdup(extra[i]);
    }
    for (int i = 0; i < n; i++) {
        char path[8192], name[256];
        snprintf(path, sizeof path, "%s/%s", root, names[i]);
        struct stat st;
        // Seeds stay small (40 KB), as the other targets'.
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= 40000) {
            size_t size;
            uint8_t *data = slurp(path, &size);
            uint8_t options = (uint8_t)(i * 7 % 64);
            snprintf(name, sizeof name, "%s", strrchr(names[i], '/') ? strrchr(names[i], '/') + 1 : names[i]);
            write_file(seed_path("dicom", name), &options, 1, data, size);
            free(data);
        }
        free(names[i]);
    }
    free(names);
}

int main(int argc, char **argv)
{
    util_init(argv[0]);
    if (argc != 2)
        die_usage("mkseeds DIR");
    snprintf(dir, sizeof dir, "%s", argv[1]);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        die(dir, "cannot create: %s", strerror(errno));
    image_init(argv[0]);
    stream_seeds();
    pack_seeds();
    ckpt_seeds();
    safetensors_seeds();
    csv_seeds();
    image_seeds();
    dicom_seeds();
    return 0;
}
