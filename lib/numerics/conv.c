#include "conv.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "conv_direct.h"
#include "util.h"

// The im2col matrix is built and multiplied a block of columns at a time,
// each block about 1.5 MB (block_floats of f32), so that it is written and
// then packed by BLIS from the core's own cache instead of going out to
// memory and back: a 3x3 conv at 56x56 would otherwise write a 7 MB matrix
// per image.  Measured on one thread (skx kernels): M 64, K 576 runs at
// 140-150 GFLOP/s with 384-1536 columns, 90-125 with the whole 3136.  A
// block has at least block_cols_min columns all the same, because BLIS
// packs the weights again for every block (9 MB for a 512-channel 3x3
// conv), and small maps are grouped, whole images per block, up to that
// size.  Against whole-batch GEMMs on 2 threads, ResNet-50's convolutions
// at batch 16 run 1.05-1.4x as fast where the maps are 28x28 or larger and
// 0.9-1.0x at 7x7, where the weights outweigh the images.
static const size_t block_floats = (size_t)384 << 10;
enum { block_cols_min = 768, block_cols_max = 4096 };
// The threads' blocks together stay under 64 Mi floats (256 MB) however
// many threads there are: a machine with many cores gets narrower blocks.
static const size_t slot_budget = (size_t)64 << 20;

static float *workspace;
static size_t workspace_floats;

float *conv_workspace(size_t floats)
{
    if (floats > workspace_floats) {
        free(workspace);
        workspace = xaligned_alloc(mul_size(floats, sizeof(float), "conv workspace"));
        workspace_floats = floats;
    }
    return workspace;
}

// Padded rows run maps from 16 wide, smaller ones go channels last
// (bench/conv_layers.c; conv.h says why).
enum { rows_min_width = 16 };

static conv_path path = CONV_PATH_AUTO;
static bool path_read;

void conv_set_path(conv_path p)
{
    path = p;
    path_read = true;
}

// MEDSSL_CONV_PATH, once, unless conv_set_path came first.
static void read_path_env(void)
{
    if (path_read)
        return;
    path_read = true;
    const char *v = getenv("MEDSSL_CONV_PATH");
    if (!v || !*v || strcmp(v, "auto") == 0)
        path = CONV_PATH_AUTO;
    else if (strcmp(v, "im2col") == 0)
        path = CONV_PATH_IM2COL;
    else if (strcmp(v, "rows") == 0)
        path = CONV_PATH_ROWS;
    else if (strcmp(v, "gather") == 0)
        path = CONV_PATH_GATHER;
    else
        die("conv", "MEDSSL_CONV_PATH=%s: not a path (auto, im2col, rows, gather)", v);
}

const char *conv_kernels_name(void) { return conv_direct_kernel_name(); }

// The path of a layer at this width, for its forward or backward pass.  A
// 1x1 stride-1 conv is a GEMM of the input itself on every path.  A layer
// the direct paths do not support (strided, the stems) goes channels last
// for its forward pass and weight gradient when a direct path is asked
// for; its dx is im2col's.  By default a strided 1x1 conv stays im2col's
// (no faster channels last), and so does the backward of a conv on fewer
// than 8 input channels (a stem: its tiles of 6 or 12 input channels
// would be mostly empty).
static conv_path path_for(const conv2d *c, int w, bool backward)
{
    read_path_env();
    const bool pointwise = c->kernel == 1 && c->stride == 1 && c->pad == 0;
    if (path == CONV_PATH_IM2COL || pointwise)
        return CONV_PATH_IM2COL;
    if (!conv_direct_supports(c)) {
        if (path != CONV_PATH_AUTO)
            return path == CONV_PATH_GATHER ? CONV_PATH_GATHER : CONV_PATH_IM2COL;
        return c->kernel == 1 || (backward && c->in_ch < 8) ? CONV_PATH_IM2COL : CONV_PATH_GATHER;
    }
    if (path != CONV_PATH_AUTO)
        return path;
    return w >= rows_min_width ? CONV_PATH_ROWS : CONV_PATH_GATHER;
}

void conv_workspace_release(void)
{
    free(workspace);
    workspace = NULL;
    workspace_floats = 0;
}

void conv2d_init(conv2d *c, int in_ch, int out_ch, int kernel, int stride, int pad)
{
    if (in_ch < 1 || out_ch < 1 || kernel < 1 || stride < 1 || pad < 0)
        die("conv2d", "bad shape: in %d, out %d, kernel %d, stride %d, pad %d",
            in_ch, out_ch, kernel, stride, pad);
    c->in_ch = in_ch;
    c->out_ch = out_ch;
    c->kernel = kernel;
    c->stride = stride;
    c->pad = pad;
    size_t bytes = (size_t)out_ch * in_ch * kernel * kernel * sizeof(float);
    c->weight = xaligned_alloc(bytes);
    c->weight_grad = xaligned_alloc(bytes);
    memset(c->weight, 0, bytes);
    memset(c->weight_grad, 0, bytes);
}

void conv2d_free(conv2d *c)
{
    free(c->weight);
    free(c->weight_grad);
    c->weight = c->weight_grad = NULL;
}

void conv2d_register(conv2d *c, param_list *params, const char *prefix)
{
    int64_t shape[4] = {c->out_ch, c->in_ch, c->kernel, c->kernel};
    param_add(params, c->weight, c->weight_grad, 4, shape, false, "%s.weight", prefix);
}

int conv2d_out_size(const conv2d *c, int in)
{
    return (in + 2 * c->pad - c->kernel) / c->stride + 1;
}

// Everything about one call that follows from the layer, the input size
// and (for the forward pass and dx only) the thread count.
typedef struct {
    int h, w, oh, ow;
    int rows;           // in_ch * kernel^2: rows of the im2col matrix, the forward GEMM's K
    int map;            // oh * ow: columns per image
    size_t in_image;    // floats per input image
    size_t out_image;   // floats per output image
    bool pointwise;     // 1x1, stride 1, no padding: an image is its own im2col matrix
    int parts;          // blocks per image (> 1 when a map is split)
    int group;          // most images in a block (> 1 when small maps are grouped)
    int blocks;         // blocks in the batch
    int cols;           // columns in the widest block
} geometry;

// One block: columns [j0, j1) of images [image, image + nb), side by side.
typedef struct {
    int image, nb, j0, j1;
} block;

static int block_width(const block *b) { return b->nb * (b->j1 - b->j0); }

// `threads` > 1 makes the number of grouped blocks a multiple of it, the
// images spread evenly (16 images in blocks of 7, 7 and 2 would leave one
// of 2 threads idle a third of the time), and keeps that many blocks
// within slot_budget.  The forward pass and dx may
// depend on it: a block is a set of GEMM columns, and a column's result
// does not depend on its neighbours.  The weight gradient sums over the
// blocks in their order, so it asks for 1: its blocks, and so its bytes,
// follow from the shapes alone.
static geometry geometry_of(const conv2d *c, int n, int h, int w, int threads)
{
    geometry g;
    g.h = h;
    g.w = w;
    g.oh = conv2d_out_size(c, h);
    g.ow = conv2d_out_size(c, w);
    if (n < 1 || h < 1 || w < 1 || g.oh < 1 || g.ow < 1)
        die("conv2d", "input (%d, %d, %d, %d) too small for kernel %d, stride %d, pad %d",
            n, c->in_ch, h, w, c->kernel, c->stride, c->pad);
    g.rows = c->in_ch * c->kernel * c->kernel;
    g.map = g.oh * g.ow;
    g.in_image = (size_t)c->in_ch * h * w;
    g.out_image = (size_t)c->out_ch * g.map;
    g.pointwise = c->kernel == 1 && c->stride == 1 && c->pad == 0;
    size_t target = block_floats / (size_t)g.rows;
    if (target < block_cols_min)
        target = block_cols_min;
    if (target > block_cols_max)
        target = block_cols_max;
    if (threads > 1) {
        size_t cap = slot_budget / ((size_t)threads * ((size_t)g.rows + (size_t)c->out_ch));
        if (target > cap)
            target = cap > 0 ? cap : 1;
    }
    g.parts = g.group = 1;
    if ((size_t)g.map > target) {
        g.parts = (int)(((size_t)g.map + target - 1) / target);
        g.blocks = n * g.parts;
        g.cols = (g.map + g.parts - 1) / g.parts;
    } else {
        int group = (int)(target / (size_t)g.map);
        g.blocks = (n + group - 1) / group;
        if (threads > 1)
            g.blocks = (g.blocks + threads - 1) / threads * threads;
        if (g.blocks > n)
            g.blocks = n;
        // Block t holds images [n t / blocks, n (t + 1) / blocks).
        g.group = (n + g.blocks - 1) / g.blocks;
        g.cols = g.group * g.map;
    }
    return g;
}

static block block_at(const geometry *g, int n, int t)
{
    block b;
    if (g->parts > 1) {
        int part = t % g->parts;
        b.image = t / g->parts;
        b.nb = 1;
        b.j0 = (int)((long)g->map * part / g->parts);
        b.j1 = (int)((long)g->map * (part + 1) / g->parts);
    } else {
        b.image = (int)((long)n * t / g->blocks);
        b.nb = (int)((long)n * (t + 1) / g->blocks) - b.image;
        b.j0 = 0;
        b.j1 = g->map;
    }
    return b;
}

// The output positions o (along one axis) whose input position
// o * stride - pad + k_off falls inside [0, in): o in [*lo, *hi).
static void valid_outputs(int k_off, int stride, int pad, int in, int out, int *lo, int *hi)
{
    int first = pad - k_off;       // o * stride >= pad - k_off
    int end = in + pad - k_off;    // o * stride <  in + pad - k_off
    *lo = first > 0 ? (first + stride - 1) / stride : 0;
    *hi = end > 0 ? (end + stride - 1) / stride : 0;
    if (*hi > out)
        *hi = out;
    if (*lo > *hi)
        *lo = *hi;
}

static int clamp_int(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

// Columns [j, j1) of an image's output map, cut at the end of an output
// row: the segment's row, its first column and its end (exclusive) in that
// row.  im2col and col2im walk a block this way.
static void row_segment(const geometry *g, int j, int j1, int *oy, int *ox0, int *ox1)
{
    *oy = j / g->ow;
    *ox0 = j % g->ow;
    *ox1 = *ox0 + (j1 - j) < g->ow ? *ox0 + (j1 - j) : g->ow;
}

// Rows [r0, r1) of one image's im2col matrix, columns [j0, j1): row
// (ci, ky, kx), column (oy, ox) holds x[ci][oy * stride - pad + ky][ox *
// stride - pad + kx], 0 outside.  x: (in_ch, h, w); dst: (r1 - r0) rows of
// row stride ld.
static void im2col_range(const conv2d *c, const geometry *g, const float *x, int r0, int r1,
                         int j0, int j1, float *dst, size_t ld)
{
    const int k = c->kernel, s = c->stride, p = c->pad;
    for (int r = r0; r < r1; r++) {
        int ci = r / (k * k), ky = r / k % k, kx = r % k;
        int oy_lo, oy_hi, ox_lo, ox_hi;
        valid_outputs(ky, s, p, g->h, g->oh, &oy_lo, &oy_hi);
        valid_outputs(kx, s, p, g->w, g->ow, &ox_lo, &ox_hi);
        const float *plane = x + (size_t)ci * g->h * g->w;
        float *d = dst + (size_t)(r - r0) * ld;
        // One output row's segment at a time: [ox0, ox1) of row oy.
        for (int j = j0; j < j1;) {
            int oy, ox0, ox1;
            row_segment(g, j, j1, &oy, &ox0, &ox1);
            float *seg = d + (j - j0) - ox0;   // seg[ox] is column (oy, ox)
            if (oy < oy_lo || oy >= oy_hi) {
                memset(seg + ox0, 0, (size_t)(ox1 - ox0) * sizeof(float));
            } else {
                const float *src = plane + (size_t)(oy * s - p + ky) * g->w - p + kx;
                int a = clamp_int(ox_lo, ox0, ox1), b = clamp_int(ox_hi, a, ox1);
                memset(seg + ox0, 0, (size_t)(a - ox0) * sizeof(float));
                if (s == 1) {
                    memcpy(seg + a, src + a, (size_t)(b - a) * sizeof(float));
                } else {
                    for (int ox = a; ox < b; ox++)
                        seg[ox] = src[ox * s];
                }
                memset(seg + b, 0, (size_t)(ox1 - b) * sizeof(float));
            }
            j += ox1 - ox0;
        }
    }
}

// Rows [r0, r1) of a block's im2col matrix: (r1 - r0, width), the images
// side by side.  x: the batch.
static void im2col_block(const conv2d *c, const geometry *g, const block *b, const float *x,
                         int r0, int r1, float *dst)
{
    const int part = b->j1 - b->j0;
    const size_t ld = (size_t)block_width(b);
    for (int i = 0; i < b->nb; i++)
        im2col_range(c, g, x + (size_t)(b->image + i) * g->in_image, r0, r1, b->j0, b->j1,
                     dst + (size_t)i * part, ld);
}

// The adjoint of im2col_block: each input pixel of the block's images gets
// the sum of the block's columns it was copied to, added to dx (the
// batch).  The adds run in a fixed order, so dx does not depend on the
// thread count as long as one thread handles all blocks of an image.
static void col2im_block(const conv2d *c, const geometry *g, const block *b, const float *cols,
                         float *dx)
{
    const int k = c->kernel, s = c->stride, p = c->pad;
    const int part = b->j1 - b->j0;
    const size_t ld = (size_t)block_width(b);
    for (int i = 0; i < b->nb; i++) {
        float *image = dx + (size_t)(b->image + i) * g->in_image;
        for (int ci = 0; ci < c->in_ch; ci++) {
            float *plane = image + (size_t)ci * g->h * g->w;
            for (int ky = 0; ky < k; ky++) {
                int oy_lo, oy_hi;
                valid_outputs(ky, s, p, g->h, g->oh, &oy_lo, &oy_hi);
                for (int kx = 0; kx < k; kx++) {
                    int ox_lo, ox_hi;
                    valid_outputs(kx, s, p, g->w, g->ow, &ox_lo, &ox_hi);
                    const float *src = cols + (size_t)((ci * k + ky) * k + kx) * ld +
                                       (size_t)i * part;
                    for (int j = b->j0; j < b->j1;) {
                        int oy, ox0, ox1;
                        row_segment(g, j, b->j1, &oy, &ox0, &ox1);
                        if (oy >= oy_lo && oy < oy_hi) {
                            const float *seg = src + (j - b->j0) - ox0;
                            float *d = plane + (size_t)(oy * s - p + ky) * g->w - p + kx;
                            int lo = clamp_int(ox_lo, ox0, ox1), hi = clamp_int(ox_hi, lo, ox1);
                            if (s == 1) {
#pragma omp simd
                                for (int ox = lo; ox < hi; ox++)
                                    d[ox] += seg[ox];
                            } else {
                                for (int ox = lo; ox < hi; ox++)
                                    d[ox * s] += seg[ox];
                            }
                        }
                        j += ox1 - ox0;
                    }
                }
            }
        }
    }
}

// (channels, nb * map) <-> nb images of (channels, map): between a grouped
// block's GEMM layout and NCHW.  fold_in takes channels [ch0, ch1) of the
// images; fold_out adds into the images when `add`.
static void fold_in(int nb, int channels, int ch0, int ch1, int map, const float *images,
                    float *folded)
{
    for (int b = 0; b < nb; b++)
        for (int ch = ch0; ch < ch1; ch++)
            memcpy(folded + ((size_t)(ch - ch0) * nb + b) * map,
                   images + ((size_t)b * channels + ch) * map, (size_t)map * sizeof(float));
}

static void fold_out(int nb, int channels, int map, const float *folded, float *images, bool add)
{
    for (int b = 0; b < nb; b++)
        for (int ch = 0; ch < channels; ch++) {
            const float *src = folded + ((size_t)ch * nb + b) * map;
            float *dst = images + ((size_t)b * channels + ch) * map;
            if (add) {
#pragma omp simd
                for (int j = 0; j < map; j++)
                    dst[j] += src[j];
            } else {
                memcpy(dst, src, (size_t)map * sizeof(float));
            }
        }
}

// Output channels [o0, o1) of a block of dY, (o1 - o0, width): the output
// gradient itself when the block is part of one image, else its images side
// by side, copied into `folded`.
static const float *dy_block(const conv2d *c, const geometry *g, const block *b, const float *dy,
                             int o0, int o1, float *folded, int *ld)
{
    const float *dy0 = dy + (size_t)b->image * g->out_image;
    if (b->nb == 1) {
        *ld = g->map;
        return dy0 + (size_t)o0 * g->map + b->j0;
    }
    fold_in(b->nb, c->out_ch, o0, o1, g->map, dy0, folded);
    *ld = block_width(b);
    return folded;
}

// Each thread's part of the forward pass's workspace: an im2col block
// (rows, cols) and a (out_ch, cols) block for grouped outputs.
static size_t slot_floats(const conv2d *c, const geometry *g)
{
    return ((size_t)g->rows + (size_t)c->out_ch) * (size_t)g->cols;
}

void conv2d_forward(const conv2d *c, int n, int h, int w, const float *x, float *y)
{
    switch (path_for(c, w, false)) {
    case CONV_PATH_ROWS:
        conv_direct_forward(c, n, h, w, x, y);
        return;
    case CONV_PATH_GATHER:
        conv_gather_forward(c, n, h, w, x, y);
        return;
    default:
        break;
    }
    const int threads = omp_get_max_threads();
    geometry g = geometry_of(c, n, h, w, threads);
    const size_t slot = slot_floats(c, &g);
    float *ws = conv_workspace(mul_size((size_t)threads, slot, "conv workspace"));
#pragma omp parallel num_threads(threads)
    {
        float *cols = ws + (size_t)omp_get_thread_num() * slot;
        float *folded = cols + (size_t)g.rows * g.cols;
#pragma omp for schedule(static)
        for (int t = 0; t < g.blocks; t++) {
            block b = block_at(&g, n, t);
            const int width = block_width(&b);
            const float *x0 = x + (size_t)b.image * g.in_image;
            float *y0 = y + (size_t)b.image * g.out_image;
            const float *B = cols;
            int ldb = width;
            if (g.pointwise && b.nb == 1) {
                B = x0 + b.j0;
                ldb = g.map;
            } else {
                im2col_block(c, &g, &b, x, 0, g.rows, cols);
            }
            // Y (out_ch, width) = W (out_ch, rows) cols (rows, width), into
            // the output itself when the block is part of one image.
            float *C = b.nb == 1 ? y0 + b.j0 : folded;
            gemm_f32(false, false, c->out_ch, width, g.rows, 1.0f, c->weight, g.rows, B, ldb, 0.0f,
                     C, b.nb == 1 ? g.map : width);
            if (b.nb > 1)
                fold_out(b.nb, c->out_ch, g.map, folded, y0, false);
        }
    }
}

// weight_grad (out_ch, rows) += dwt (rows, out_ch) transposed, over rows
// [r0, r1) and outputs [o0, o1), in tiles that keep both sides in cache.
static void add_transposed(float *weight_grad, int rows, const float *dwt, int out_ch, int r0,
                           int r1, int o0, int o1)
{
    enum { tile = 32 };
    for (int ob = o0; ob < o1; ob += tile) {
        const int oe = ob + tile < o1 ? ob + tile : o1;
        for (int rb = r0; rb < r1; rb += tile) {
            const int re = rb + tile < r1 ? rb + tile : r1;
            for (int o = ob; o < oe; o++) {
                float *wg = weight_grad + (size_t)o * rows;
                for (int r = rb; r < re; r++)
                    wg[r] += dwt[(size_t)r * out_ch + o];
            }
        }
    }
}

// Whether the threads split dW^T by rows (each builds its rows of every
// block's im2col matrix) or, for a 1x1 conv with more outputs than inputs
// (no im2col to share out), by columns, each thread reading only its part
// of dY.
static bool weight_grad_by_rows(const conv2d *c, const geometry *g)
{
    return !(g->pointwise && c->out_ch > g->rows);
}

// Adds dW into weight_grad.  dW^T (rows, out_ch) = the sum over blocks, in
// order, of cols dY^T, in `dwt`; the threads split it as
// weight_grad_by_rows says.  Every element of dW sums the same products in
// the same order whatever the thread count, and each thread adds its own
// part of dW.  A grouped block's dY comes from dy_folded, each (out_ch,
// width) at its first image's place (fold_dy), or when that is NULL is
// copied into the thread's `folded` just before its GEMM (faster: the copy
// is still in cache when BLIS packs it, 4% of a ResNet-50 step).
static void weight_grad_part(conv2d *c, const geometry *g, int n, int parts, const float *x,
                             const float *dy, const float *dy_folded, float *cols, float *folded,
                             float *dwt)
{
    const bool by_rows = weight_grad_by_rows(c, g);
    const int extent = by_rows ? g->rows : c->out_ch;
    // Part p of `parts` (the workspace is sized for that many), whatever
    // number of threads the region got.
    for (int p = omp_get_thread_num(); p < parts; p += omp_get_num_threads()) {
        const int lo = (int)((long)extent * p / parts), hi = (int)((long)extent * (p + 1) / parts);
        if (lo == hi)
            continue;
        const int r0 = by_rows ? lo : 0, r1 = by_rows ? hi : g->rows;
        const int o0 = by_rows ? 0 : lo, o1 = by_rows ? c->out_ch : hi;
        for (int i = 0; i < g->blocks; i++) {
            block b = block_at(g, n, i);
            const int width = block_width(&b);
            // dY's rows [o0, o1) for this block: only those are copied.
            int ldd;
            const float *D;
            if (b.nb > 1 && dy_folded) {
                ldd = width;
                D = dy_folded + (size_t)b.image * g->out_image + (size_t)o0 * ldd;
            } else {
                D = dy_block(c, g, &b, dy, o0, o1, folded, &ldd);
            }
            const float *A = cols;
            int lda = width;
            if (g->pointwise && b.nb == 1) {
                A = x + (size_t)b.image * g->in_image + (size_t)r0 * g->map + b.j0;
                lda = g->map;
            } else {
                im2col_block(c, g, &b, x, r0, r1, cols);
            }
            gemm_f32(false, true, r1 - r0, o1 - o0, width, 1.0f, A, lda, D, ldd,
                     i == 0 ? 0.0f : 1.0f, dwt + (size_t)r0 * c->out_ch + o0, c->out_ch);
        }
        add_transposed(c->weight_grad, g->rows, dwt, c->out_ch, r0, r1, o0, o1);
    }
}

// Copies the dY of every grouped block once, for all threads' weight
// gradients (called by every thread of the region).
static void fold_dy(const conv2d *c, const geometry *g, int n, const float *dy, float *dy_folded)
{
#pragma omp for schedule(static)
    for (int i = 0; i < g->blocks; i++) {
        block b = block_at(g, n, i);
        fold_in(b.nb, c->out_ch, 0, c->out_ch, g->map, dy + (size_t)b.image * g->out_image,
                dy_folded + (size_t)b.image * g->out_image);
    }
}

// dx for the blocks of task t: one image (all its parts) when maps are
// split, else one block of whole images; so the adds into an image never
// race.  dcols (rows, width) = W^T dY, then col2im (a 1x1 stride-1 conv's
// dcols is dx itself).
static void input_grad_task(const conv2d *c, const geometry *g, int n, int t, const float *dy,
                            float *dx, bool accumulate, float *cols, float *folded)
{
    const int first = g->parts > 1 ? t * g->parts : t, count = g->parts > 1 ? g->parts : 1;
    for (int i = first; i < first + count; i++) {
        block b = block_at(g, n, i);
        const int width = block_width(&b);
        float *dx0 = dx + (size_t)b.image * g->in_image;
        int ldd;
        const float *D = dy_block(c, g, &b, dy, 0, c->out_ch, folded, &ldd);
        if (g->pointwise && b.nb == 1) {
            gemm_f32(true, false, g->rows, width, c->out_ch, 1.0f, c->weight, g->rows, D, ldd,
                     accumulate ? 1.0f : 0.0f, dx0 + b.j0, g->map);
            continue;
        }
        gemm_f32(true, false, g->rows, width, c->out_ch, 1.0f, c->weight, g->rows, D, ldd, 0.0f,
                 cols, width);
        if (g->pointwise) {
            fold_out(b.nb, c->in_ch, g->map, cols, dx0, accumulate);
            continue;
        }
        if (!accumulate && i == first)
            memset(dx0, 0, (size_t)b.nb * g->in_image * sizeof(float));
        col2im_block(c, g, &b, cols, dx);
    }
}

// The im2col path's backward: dW when `weights`, dx when given.
static void im2col_backward(conv2d *c, int n, int h, int w, const float *x, const float *dy,
                            bool weights, float *dx, bool accumulate_dx);

void conv2d_backward(conv2d *c, int n, int h, int w, const float *x, const float *dy,
                     float *dx, bool accumulate_dx)
{
    switch (path_for(c, w, true)) {
    case CONV_PATH_ROWS:
        conv_direct_backward(c, n, h, w, x, dy, dx, accumulate_dx);
        return;
    case CONV_PATH_GATHER:
        if (conv_direct_supports(c)) {
            conv_gather_backward(c, n, h, w, x, dy, dx, accumulate_dx);
            return;
        }
        conv_gather_weight_grad(c, n, h, w, x, dy);
        if (dx)
            im2col_backward(c, n, h, w, x, dy, false, dx, accumulate_dx);
        return;
    default:
        im2col_backward(c, n, h, w, x, dy, true, dx, accumulate_dx);
        return;
    }
}

static void im2col_backward(conv2d *c, int n, int h, int w, const float *x, const float *dy,
                            bool weights, float *dx, bool accumulate_dx)
{
    const int threads = omp_get_max_threads();
    geometry gw = geometry_of(c, n, h, w, 1), gx = geometry_of(c, n, h, w, threads);
    // Each thread's part: an im2col block for dx (rows, gx.cols) or its rows
    // of one for dW, then a block of grouped dY, (out_ch, gx.cols) for dx or
    // (out_ch, gw.cols) for dW.  Shared: dW^T, and when the threads' copies
    // of dY for dW would pass slot_budget, one copy of the grouped blocks'
    // dY (the size of dY).
    const bool by_rows = weight_grad_by_rows(c, &gw);
    const size_t dw_rows = by_rows ? ((size_t)gw.rows + threads - 1) / threads : (size_t)gw.rows;
    size_t cols_floats = (size_t)gw.rows * gx.cols;
    if (cols_floats < dw_rows * gw.cols)
        cols_floats = dw_rows * gw.cols;
    const bool grouped = gw.parts == 1 && gw.group > 1;
    const bool shared_fold = grouped && (size_t)threads * c->out_ch * gw.cols > slot_budget;
    const size_t fold_cols = grouped && !shared_fold && gw.cols > gx.cols ? gw.cols : gx.cols;
    const size_t slot = cols_floats + (size_t)c->out_ch * fold_cols;
    const size_t dwt_floats = (size_t)gw.rows * c->out_ch;
    const size_t folded_floats = shared_fold ? (size_t)n * gw.out_image : 0;
    float *ws = conv_workspace(add_size(add_size(mul_size((size_t)threads, slot, "conv workspace"),
                                                dwt_floats, "conv workspace"),
                                       folded_floats, "conv workspace"));
    float *dwt = ws + (size_t)threads * slot, *dy_folded = shared_fold ? dwt + dwt_floats : NULL;
    const int tasks = gx.parts > 1 ? n : gx.blocks;
#pragma omp parallel num_threads(threads)
    {
        float *cols = ws + (size_t)omp_get_thread_num() * slot;
        float *folded = cols + cols_floats;
        if (shared_fold && weights)
            fold_dy(c, &gw, n, dy, dy_folded);
        if (weights)
            weight_grad_part(c, &gw, n, threads, x, dy, dy_folded, cols, folded, dwt);
        if (dx) {
#pragma omp for schedule(static)
            for (int t = 0; t < tasks; t++)
                input_grad_task(c, &gx, n, t, dy, dx, accumulate_dx, cols, folded);
        }
    }
}
