#include "conv.h"

#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "util.h"

// Columns a folded GEMM aims for.  With 2 threads and the skx kernels, BLIS
// runs best between about 2000 and 6000 columns (bench/sgemm: 170 GFLOP/s
// at 49 columns, 310 at 392 and more); 3136 is one 56x56 map.
enum { target_gemm_cols = 3136 };
// Folding stops growing when its buffers would pass 16 Mi floats (64 MiB).
static const size_t fold_workspace_cap = (size_t)16 << 20;

static float *workspace;
static size_t workspace_floats;

static float *workspace_get(size_t floats)
{
    if (floats > workspace_floats) {
        free(workspace);
        workspace = xaligned_alloc(mul_size(floats, sizeof(float), "conv workspace"));
        workspace_floats = floats;
    }
    return workspace;
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

// Everything about one call that follows from the layer and the input size.
typedef struct {
    int h, w, oh, ow;
    int rows;           // in_ch * kernel^2: rows of the im2col matrix, the GEMM's K
    int map;            // oh * ow: columns per image
    size_t in_image;    // floats per input image
    size_t out_image;   // floats per output image
    bool pointwise;     // 1x1, stride 1, no padding: an image is its own im2col matrix
    int fold;           // images per GEMM
} geometry;

static geometry geometry_of(const conv2d *c, int n, int h, int w)
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
    // Depends only on shapes, never on the thread count, so the summation
    // order inside the GEMMs (and hence every result bit) is fixed.
    int fold = target_gemm_cols / g.map;
    if (fold > n)
        fold = n;
    size_t per_image = (size_t)(g.rows + c->out_ch) * g.map;
    if ((size_t)fold * per_image > fold_workspace_cap)
        fold = (int)(fold_workspace_cap / per_image);
    g.fold = fold < 1 ? 1 : fold;
    return g;
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

// cols (rows, nb * map): row (ci, ky, kx), column (image, oy, ox) holds
// x[image][ci][oy * stride - pad + ky][ox * stride - pad + kx], 0 outside.
static void im2col(const conv2d *c, const geometry *g, int nb, const float *x, float *cols)
{
    const int k = c->kernel, s = c->stride, p = c->pad;
    const size_t ncols = (size_t)nb * g->map;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < g->rows; r++) {
        int ci = r / (k * k), ky = r / k % k, kx = r % k;
        int oy_lo, oy_hi, ox_lo, ox_hi;
        valid_outputs(ky, s, p, g->h, g->oh, &oy_lo, &oy_hi);
        valid_outputs(kx, s, p, g->w, g->ow, &ox_lo, &ox_hi);
        float *dst = cols + (size_t)r * ncols;
        for (int b = 0; b < nb; b++) {
            const float *plane = x + b * g->in_image + (size_t)ci * g->h * g->w;
            for (int oy = 0; oy < g->oh; oy++, dst += g->ow) {
                if (oy < oy_lo || oy >= oy_hi) {
                    memset(dst, 0, (size_t)g->ow * sizeof(float));
                    continue;
                }
                const float *src = plane + (size_t)(oy * s - p + ky) * g->w;
                memset(dst, 0, (size_t)ox_lo * sizeof(float));
                if (s == 1) {
                    memcpy(dst + ox_lo, src + ox_lo - p + kx,
                           (size_t)(ox_hi - ox_lo) * sizeof(float));
                } else {
                    for (int ox = ox_lo; ox < ox_hi; ox++)
                        dst[ox] = src[ox * s - p + kx];
                }
                memset(dst + ox_hi, 0, (size_t)(g->ow - ox_hi) * sizeof(float));
            }
        }
    }
}

// The adjoint of im2col: each input pixel gets the sum of the columns it was
// copied to.  One thread per (image, channel) plane, each plane summed in
// the same order, so the result does not depend on the thread count.
static void col2im(const conv2d *c, const geometry *g, int nb, const float *cols, float *dx,
                   bool accumulate)
{
    const int k = c->kernel, s = c->stride, p = c->pad;
    const size_t ncols = (size_t)nb * g->map;
    const int planes = nb * c->in_ch;
#pragma omp parallel for schedule(static)
    for (int plane = 0; plane < planes; plane++) {
        int b = plane / c->in_ch, ci = plane % c->in_ch;
        float *dst = dx + (size_t)plane * g->h * g->w;
        if (!accumulate)
            memset(dst, 0, (size_t)g->h * g->w * sizeof(float));
        for (int ky = 0; ky < k; ky++) {
            int oy_lo, oy_hi;
            valid_outputs(ky, s, p, g->h, g->oh, &oy_lo, &oy_hi);
            for (int kx = 0; kx < k; kx++) {
                int ox_lo, ox_hi;
                valid_outputs(kx, s, p, g->w, g->ow, &ox_lo, &ox_hi);
                const float *src = cols + (size_t)((ci * k + ky) * k + kx) * ncols +
                                   (size_t)b * g->map;
                for (int oy = oy_lo; oy < oy_hi; oy++) {
                    float *d = dst + (size_t)(oy * s - p + ky) * g->w;
                    const float *sr = src + (size_t)oy * g->ow;
                    if (s == 1) {
#pragma omp simd
                        for (int ox = ox_lo; ox < ox_hi; ox++)
                            d[ox - p + kx] += sr[ox];
                    } else {
                        for (int ox = ox_lo; ox < ox_hi; ox++)
                            d[ox * s - p + kx] += sr[ox];
                    }
                }
            }
        }
    }
}

// (channels, nb, map) <-> (nb, channels, map): between a folded GEMM's
// layout and NCHW.
static void fold_to_images(int nb, int channels, int map, const float *folded, float *images)
{
#pragma omp parallel for schedule(static)
    for (int i = 0; i < nb * channels; i++) {
        int b = i / channels, ch = i % channels;
        memcpy(images + (size_t)i * map, folded + ((size_t)ch * nb + b) * map,
               (size_t)map * sizeof(float));
    }
}

static void images_to_fold(int nb, int channels, int map, const float *images, float *folded)
{
#pragma omp parallel for schedule(static)
    for (int i = 0; i < nb * channels; i++) {
        int b = i / channels, ch = i % channels;
        memcpy(folded + ((size_t)ch * nb + b) * map, images + (size_t)i * map,
               (size_t)map * sizeof(float));
    }
}

// Workspace for one call: the im2col matrix (unless the input is used as
// it is) and a (out_ch, fold * map) matrix for folded outputs or gradients.
static void workspace_split(const conv2d *c, const geometry *g, float **cols, float **folded)
{
    size_t cols_floats = g->pointwise && g->fold == 1 ? 0 : (size_t)g->rows * g->fold * g->map;
    size_t folded_floats = g->fold > 1 ? (size_t)c->out_ch * g->fold * g->map : 0;
    float *ws = workspace_get(cols_floats + folded_floats);
    *cols = ws;
    *folded = ws + cols_floats;
}

void conv2d_forward(const conv2d *c, int n, int h, int w, const float *x, float *y)
{
    geometry g = geometry_of(c, n, h, w);
    float *cols, *folded;
    workspace_split(c, &g, &cols, &folded);
    for (int n0 = 0; n0 < n; n0 += g.fold) {
        int nb = n - n0 < g.fold ? n - n0 : g.fold;
        int ncols = nb * g.map;
        const float *x0 = x + n0 * g.in_image;
        float *y0 = y + n0 * g.out_image;
        const float *B = x0;
        if (!(g.pointwise && nb == 1)) {
            im2col(c, &g, nb, x0, cols);
            B = cols;
        }
        float *C = nb == 1 ? y0 : folded;
        gemm_f32(false, false, c->out_ch, ncols, g.rows, 1.0f, c->weight, g.rows, B, ncols,
                 0.0f, C, ncols);
        if (nb > 1)
            fold_to_images(nb, c->out_ch, g.map, folded, y0);
    }
}

void conv2d_backward(conv2d *c, int n, int h, int w, const float *x, const float *dy,
                     float *dx, bool accumulate_dx)
{
    geometry g = geometry_of(c, n, h, w);
    float *cols, *folded;
    workspace_split(c, &g, &cols, &folded);
    for (int n0 = 0; n0 < n; n0 += g.fold) {
        int nb = n - n0 < g.fold ? n - n0 : g.fold;
        int ncols = nb * g.map;
        const float *x0 = x + n0 * g.in_image;
        const float *dy0 = dy + n0 * g.out_image;
        bool direct_input = g.pointwise && nb == 1;
        const float *B = x0;
        if (!direct_input) {
            im2col(c, &g, nb, x0, cols);
            B = cols;
        }
        const float *D = dy0;
        if (nb > 1) {
            images_to_fold(nb, c->out_ch, g.map, dy0, folded);
            D = folded;
        }
        // dW (out_ch, rows) += dY (out_ch, ncols) cols^T
        gemm_f32(false, true, c->out_ch, g.rows, ncols, 1.0f, D, ncols, B, ncols, 1.0f,
                 c->weight_grad, g.rows);
        if (!dx)
            continue;
        float *dx0 = dx + n0 * g.in_image;
        // dcols (rows, ncols) = W^T dY.  The im2col matrix was only needed
        // for dW above, so dcols takes its place.
        if (direct_input) {
            gemm_f32(true, false, g.rows, ncols, c->out_ch, 1.0f, c->weight, g.rows, D, ncols,
                     accumulate_dx ? 1.0f : 0.0f, dx0, ncols);
        } else {
            gemm_f32(true, false, g.rows, ncols, c->out_ch, 1.0f, c->weight, g.rows, D, ncols,
                     0.0f, cols, ncols);
            col2im(c, &g, nb, cols, dx0, accumulate_dx);
        }
    }
}
