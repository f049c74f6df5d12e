#include "conv_direct.h"

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

// Every buffer here is a "padded chunk": for each channel, rows of wp =
// w + 2 pad floats (pad zeros, the row, pad zeros), the pad rows above and
// below zero, then a zero tail, `plane` floats in all.  Tap (ci, ky, kx) of
// output position j = row wp + col is then the float at ci plane + ky wp +
// kx + j: one offset per tap, and consecutive outputs read consecutive
// floats.  The columns col >= w of each row are computed and dropped (2 pad
// of every wp: 6% at 32 wide, 20% at 8 wide).

static const convk *forced_kernels;

void conv_direct_use_kernels(const convk *k) { forced_kernels = k; }

static const convk *kernels(void) { return forced_kernels ? forced_kernels : convk_selected(); }

const char *conv_direct_kernel_name(void) { return kernels()->name; }

static int round_up(int v, int m) { return (v + m - 1) / m * m; }

// One stride-1 "same" correlation: `in_ch` planes of h x w in, `out_ch` out,
// in chunks of `rows` output rows.
typedef struct {
    int in_ch, out_ch, h, w, k, pad;
    int wp;       // padded row: w + 2 pad
    int rows;     // output rows per chunk
    int chunks;   // chunks per image
    int plane;    // floats per padded channel of a chunk
    int cols;     // output positions per chunk, rows wp rounded up to whole tiles
    int kdim;     // taps: in_ch k k
    int mblocks;  // tiles of mr output channels
} corr_geom;

// Floats of a padded plane of `rows` output rows: the rows with their pad
// rows, then a zero tail as long as the farthest read past them (a tile's
// columns past the last row, plus the last tap's offset).
static int plane_floats(int rows, int pad, int wp, int k, int tail)
{
    return round_up((rows + 2 * pad) * wp + tail + k, 16);
}

// The chunk rows: as many as keep a chunk's padded input and its outputs
// within about 256 KB (a core's L2 cache holds them while every tile of
// the chunk reads them), in chunks of equal size.
static corr_geom corr_geometry(const convk *ks, int in_ch, int out_ch, int h, int w, int k, int pad)
{
    enum { chunk_floats = 64 << 10 };
    corr_geom g = {.in_ch = in_ch, .out_ch = out_ch, .h = h, .w = w, .k = k, .pad = pad};
    g.wp = w + 2 * pad;
    g.mblocks = (out_ch + ks->mr - 1) / ks->mr;
    long per_row = (long)g.wp * (in_ch + (long)g.mblocks * ks->mr);
    int rows = (int)(chunk_floats / per_row);
    if (rows < 1)
        rows = 1;
    if (rows > h)
        rows = h;
    g.chunks = (h + rows - 1) / rows;
    g.rows = (h + g.chunks - 1) / g.chunks;
    g.plane = plane_floats(g.rows, pad, g.wp, k, ks->nr);
    g.cols = round_up(g.rows * g.wp, ks->nr);
    g.kdim = in_ch * k * k;
    return g;
}

// Padded rows [r0 - pad, r0 + rows + pad) of every channel of one image
// (channels, h, w) into dst, `plane` floats per channel.
static void pad_chunk(const float *image, int channels, int h, int w, int pad, int r0, int rows,
                      int plane, float *dst)
{
    const int wp = w + 2 * pad, padded_rows = rows + 2 * pad;
    for (int ch = 0; ch < channels; ch++) {
        const float *src = image + (size_t)ch * h * w;
        float *d = dst + (size_t)ch * plane;
        for (int pr = 0; pr < padded_rows; pr++, d += wp) {
            const int sr = r0 - pad + pr;
            if (sr < 0 || sr >= h) {
                memset(d, 0, (size_t)wp * sizeof(float));
                continue;
            }
            memset(d, 0, (size_t)pad * sizeof(float));
            memcpy(d + pad, src + (size_t)sr * w, (size_t)w * sizeof(float));
            memset(d + pad + w, 0, (size_t)pad * sizeof(float));
        }
        memset(d, 0, (size_t)(plane - padded_rows * wp) * sizeof(float));
    }
}

// Tap k = (ci, ky, kx) of a chunk: ci plane + ky wp + kx.
static void tap_offsets(int in_ch, int k, int wp, int plane, int *off)
{
    for (int ci = 0; ci < in_ch; ci++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++)
                *off++ = ci * plane + ky * wp + kx;
}

// Per-thread part of the workspace: a padded chunk, then its outputs
// (mblocks mr rows of cols).
static size_t corr_slot(const convk *ks, const corr_geom *g)
{
    return (size_t)g->in_ch * g->plane + (size_t)g->mblocks * ks->mr * g->cols;
}

// out (n, out_ch, h, w) = (or += when accumulate) the correlation of
// in (n, in_ch, h, w), zero-padded by pad, with the packed weights:
// packed[b][tap][r] is the weight of output channel b mr + r (0 past
// out_ch).  A task is one chunk of one image, so every output is computed
// by one thread in one fixed order, whatever the thread count.
static void correlate(const convk *ks, const corr_geom *g, int n, const float *packed,
                      const int *off, float *ws, const float *in, float *out, bool accumulate)
{
    const size_t slot = corr_slot(ks, g);
    const size_t in_image = (size_t)g->in_ch * g->h * g->w, out_image = (size_t)g->out_ch * g->h * g->w;
    const int tasks = n * g->chunks;
#pragma omp parallel
    {
        float *chunk = ws + (size_t)omp_get_thread_num() * slot;
        float *res = chunk + (size_t)g->in_ch * g->plane;
#pragma omp for schedule(static)
        for (int t = 0; t < tasks; t++) {
            const int image = t / g->chunks, r0 = t % g->chunks * g->rows;
            const int rows = g->rows < g->h - r0 ? g->rows : g->h - r0;
            pad_chunk(in + (size_t)image * in_image, g->in_ch, g->h, g->w, g->pad, r0, rows,
                      g->plane, chunk);
            const int used = round_up(rows * g->wp, ks->nr);
            for (int b = 0; b < g->mblocks; b++) {
                const float *a = packed + (size_t)b * g->kdim * ks->mr;
                float *c = res + (size_t)b * ks->mr * g->cols;
                for (int j = 0; j < used; j += ks->nr)
                    ks->tile(g->kdim, a, chunk + j, off, c + j, g->cols, false);
            }
            float *dst0 = out + (size_t)image * out_image + (size_t)r0 * g->w;
            for (int o = 0; o < g->out_ch; o++)
                for (int r = 0; r < rows; r++) {
                    const float *src = res + (size_t)o * g->cols + (size_t)r * g->wp;
                    float *dst = dst0 + (size_t)o * g->h * g->w + (size_t)r * g->w;
                    if (accumulate) {
#pragma omp simd
                        for (int x = 0; x < g->w; x++)
                            dst[x] += src[x];
                    } else {
                        memcpy(dst, src, (size_t)g->w * sizeof(float));
                    }
                }
        }
    }
}

// The forward pass's weights, packed: [block][ci][ky][kx][r] = weight (b
// mr + r, ci, ky, kx).
static void pack_forward(const conv2d *c, int mr, int mblocks, float *packed)
{
    const int taps = c->in_ch * c->kernel * c->kernel;
    for (int b = 0; b < mblocks; b++)
        for (int t = 0; t < taps; t++)
            for (int r = 0; r < mr; r++) {
                const int o = b * mr + r;
                *packed++ = o < c->out_ch ? c->weight[(size_t)o * taps + t] : 0.0f;
            }
}

// The input gradient's weights: the forward taps flipped, inputs and
// outputs swapped: [block][o][ky][kx][r] = weight (o, b mr + r, k-1-ky, k-1-kx).
static void pack_backward(const conv2d *c, int mr, int mblocks, float *packed)
{
    const int k = c->kernel, kk = k * k, taps = c->in_ch * kk;
    for (int b = 0; b < mblocks; b++)
        for (int o = 0; o < c->out_ch; o++)
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++)
                    for (int r = 0; r < mr; r++) {
                        const int ci = b * mr + r;
                        *packed++ = ci < c->in_ch ? c->weight[(size_t)o * taps + (size_t)ci * kk +
                                                              (k - 1 - ky) * k + (k - 1 - kx)]
                                                  : 0.0f;
                    }
}

bool conv_direct_supports(const conv2d *c)
{
    return c->stride == 1 && c->kernel > 1 && c->kernel == 2 * c->pad + 1;
}

// The workspace: per-thread slots, then the packed weights and the tap
// offsets.
static float *corr_setup(const convk *ks, const corr_geom *g, int **off)
{
    const size_t slot = corr_slot(ks, g);
    const size_t packed = (size_t)g->mblocks * ks->mr * g->kdim;
    const size_t floats = add_size(add_size(mul_size((size_t)omp_get_max_threads(), slot, "conv workspace"),
                                            packed, "conv workspace"),
                                   (size_t)g->kdim, "conv workspace");
    float *ws = conv_workspace(floats);
    *off = (int *)(ws + floats - (size_t)g->kdim);
    return ws;
}

void conv_direct_forward(const conv2d *c, int n, int h, int w, const float *x, float *y)
{
    const convk *ks = kernels();
    corr_geom g = corr_geometry(ks, c->in_ch, c->out_ch, h, w, c->kernel, c->pad);
    int *off;
    float *ws = corr_setup(ks, &g, &off);
    float *packed = ws + (size_t)omp_get_max_threads() * corr_slot(ks, &g);
    pack_forward(c, ks->mr, g.mblocks, packed);
    tap_offsets(c->in_ch, c->kernel, g.wp, g.plane, off);
    correlate(ks, &g, n, packed, off, ws, x, y, false);
}

// dW: for every output channel o and tap (ci, ky, kx), the sum over images
// and positions j of dy[o][j] x[ci][tap + j], on the images' whole padded
// planes (dy's with the same width, its pad columns zero).  The taps are
// taken three at a time (the last group padded with tap 0, its sums
// dropped).  The images are padded a group at a time, channel by channel
// (a channel's planes of the group side by side, so that a tile streams
// through them), as many images as keep a tile's rows of the group (wr of
// dy, 3 of x) within about 256 KB: a tile sums over all of them in its
// registers before it stores (small maps have too few positions per image
// to pay for the store).  A tile is summed by one thread, into its own
// accumulators, group after group: the sums, and so every byte, depend on
// the batch and the shapes only.
static void weight_grad(const convk *ks, conv2d *c, int n, int h, int w, const float *x,
                        const float *dy)
{
    enum { tile_rows_floats = 64 << 10, group_floats_max = 4 << 20 };
    const int k = c->kernel, pad = c->pad, wp = w + 2 * pad;
    const int plane = plane_floats(h, pad, wp, k, ks->vl);
    const int taps = c->in_ch * k * k, groups = (taps + 2) / 3;
    const int oblocks = (c->out_ch + ks->wr - 1) / ks->wr, out_planes = oblocks * ks->wr;
    const int tiles = oblocks * groups, nvec = (h * wp + ks->vl - 1) / ks->vl;
    const size_t image_floats = (size_t)(c->in_ch + out_planes) * plane;
    size_t batch = tile_rows_floats / ((size_t)(ks->wr + 3) * plane);
    if (batch > group_floats_max / image_floats)
        batch = group_floats_max / image_floats;
    batch = batch < 1 ? 1 : batch > (size_t)n ? (size_t)n : batch;
    const size_t row = batch * (size_t)plane;   // one channel of the group
    const size_t tile_floats = (size_t)ks->wr * 3;
    const size_t floats = mul_size(batch, image_floats, "conv workspace") +
                          (size_t)tiles * tile_floats + (size_t)groups * 3;
    float *ws = conv_workspace(floats);
    float *dyg = ws + (size_t)c->in_ch * row;
    float *acc = ws + batch * image_floats;
    int *off = (int *)(acc + (size_t)tiles * tile_floats);
    for (int t = 0; t < groups * 3; t++) {
        const int tap = t < taps ? t : 0, ci = tap / (k * k), ky = tap / k % k, kx = tap % k;
        off[t] = (int)(ci * row) + ky * wp + kx;
    }
    memset(acc, 0, (size_t)tiles * tile_floats * sizeof(float));
    memset(dyg + (size_t)c->out_ch * row, 0, (size_t)(out_planes - c->out_ch) * row * sizeof(float));
    const size_t in_plane = (size_t)h * w;
    const int in_tasks = c->in_ch + c->out_ch;
#pragma omp parallel
    {
        float g[3 * 16];   // wr <= 16
        for (int first = 0; first < n; first += (int)batch) {
            const int count = first + (int)batch <= n ? (int)batch : n - first;
            // Pad the group: x's channels, then dy's.
#pragma omp for schedule(static)
            for (int ch = 0; ch < in_tasks; ch++) {
                const bool is_x = ch < c->in_ch;
                const int chan = is_x ? ch : ch - c->in_ch, channels = is_x ? c->in_ch : c->out_ch;
                const float *src = (is_x ? x : dy) + (size_t)chan * in_plane;
                float *dst = (is_x ? ws : dyg) + (size_t)chan * row;
                for (int i = 0; i < count; i++)
                    pad_chunk(src + (size_t)(first + i) * channels * in_plane, 1, h, w, pad, 0, h,
                              plane, dst + (size_t)i * plane);
            }
#pragma omp for schedule(static)
            for (int t = 0; t < tiles; t++) {
                const int ob = t / groups, grp = t % groups;
                ks->grad_tile(count, plane, nvec, dyg + (size_t)ob * ks->wr * row + (size_t)pad * wp + pad,
                              (int)row, ws, off + 3 * grp, g);
                float *a = acc + (size_t)t * tile_floats;
                for (size_t e = 0; e < tile_floats; e++)
                    a[e] += g[e];
            }
        }
    }
    for (int t = 0; t < tiles; t++) {
        const int ob = t / groups, grp = t % groups;
        const float *a = acc + (size_t)t * tile_floats;
        for (int r = 0; r < ks->wr; r++) {
            const int o = ob * ks->wr + r;
            if (o >= c->out_ch)
                break;
            for (int q = 0; q < 3; q++) {
                const int tap = grp * 3 + q;
                if (tap < taps)
                    c->weight_grad[(size_t)o * taps + tap] += a[3 * r + q];
            }
        }
    }
}

void conv_direct_backward(conv2d *c, int n, int h, int w, const float *x, const float *dy,
                          float *dx, bool accumulate_dx)
{
    const convk *ks = kernels();
    weight_grad(ks, c, n, h, w, x, dy);
    if (!dx)
        return;
    corr_geom g = corr_geometry(ks, c->out_ch, c->in_ch, h, w, c->kernel, c->kernel - 1 - c->pad);
    int *off;
    float *ws = corr_setup(ks, &g, &off);
    float *packed = ws + (size_t)omp_get_max_threads() * corr_slot(ks, &g);
    pack_backward(c, ks->mr, g.mblocks, packed);
    tap_offsets(c->out_ch, c->kernel, g.wp, g.plane, off);
    correlate(ks, &g, n, packed, off, ws, dy, dx, accumulate_dx);
}

// ---- channels last: small maps ---------------------------------------------
//
// On small maps the padded rows waste too much (a third of the work 4
// wide), so these convolutions go channels last: a padded (h + 2 pad,
// w + 2 pad, channels) copy of each image, and gather tiles (convk.h)
// whose rows are output positions (forward, dx) or input channels (dW),
// each with its own pointer, and whose columns are a vector block of
// output channels.  Tap k = (ky, kx, ci) is then an offset (ky wp + kx)
// channels + ci from a position's pointer.

// Images [0, count) of src (count, ch, h, w) into dst, channels last and
// zero-padded: (count, h + 2 pad, w + 2 pad, stride), channels past ch zero.
static void to_channels_last(const float *src, int count, int ch, int h, int w, int pad, int stride,
                             float *dst)
{
    const int wp = w + 2 * pad, hp = h + 2 * pad;
    for (int i = 0; i < count; i++) {
        float *d = dst + (size_t)i * hp * wp * stride;
        memset(d, 0, (size_t)hp * wp * stride * sizeof(float));
        const float *s = src + (size_t)i * ch * h * w;
        for (int c = 0; c < ch; c++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    d[((size_t)(y + pad) * wp + x + pad) * stride + c] = s[((size_t)c * h + y) * w + x];
    }
}

// The gather forward's weights: [block][ky][kx][ci][j] = weight (b gnr + j,
// ci, ky, kx), 0 past out_ch.  With flip, dx's: inputs and outputs swapped
// and the taps flipped, [block][ky][kx][o][j] = weight (o, b gnr + j, k-1-ky, k-1-kx).
static void pack_gather(const conv2d *c, bool flip, int gnr, float *packed)
{
    const int k = c->kernel, kk = k * k;
    const int rows_in = flip ? c->out_ch : c->in_ch, cols = flip ? c->in_ch : c->out_ch;
    const int blocks = (cols + gnr - 1) / gnr;
    for (int b = 0; b < blocks; b++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++)
                for (int ch = 0; ch < rows_in; ch++)
                    for (int j = 0; j < gnr; j++) {
                        const int col = b * gnr + j;
                        float v = 0.0f;
                        if (col < cols) {
                            const int o = flip ? ch : col, ci = flip ? col : ch;
                            const int tap = flip ? (k - 1 - ky) * k + (k - 1 - kx) : ky * k + kx;
                            v = c->weight[((size_t)o * c->in_ch + ci) * kk + tap];
                        }
                        *packed++ = v;
                    }
}

// Images per group: the group's padded inputs and channels-last outputs
// within about 384 KB (they stay in L2 while every block of outputs reads
// them), in groups of equal size, and a multiple of `threads` groups when
// there are enough images (1 for the weight gradient, whose sums follow
// the groups; the forward pass's outputs do not depend on them).
static int gather_group(int n, size_t image_floats, int threads)
{
    enum { group_floats = 96 << 10 };
    int g = (int)(group_floats / image_floats);
    g = g < 1 ? 1 : g > n ? n : g;
    int groups = (n + g - 1) / g;
    if (n >= threads)
        groups = (groups + threads - 1) / threads * threads;
    return (n + groups - 1) / groups;
}

// out (n, out_ch, oh, ow) = (or += when accumulate) the correlation of
// in (n, in_ch, h, w), zero-padded by pad, at the given stride, with
// weights packed by pack_gather.  A task is one group of images: each
// output is computed by one thread in one fixed order.
static void gather_correlate(const convk *ks, int n, int in_ch, int out_ch, int h, int w, int k,
                             int stride, int pad, const float *packed, const float *in, float *out,
                             bool accumulate)
{
    const int wp = w + 2 * pad, hp = h + 2 * pad;
    const int oh = (hp - k) / stride + 1, ow = (wp - k) / stride + 1, map = oh * ow;
    const int blocks = (out_ch + ks->gnr - 1) / ks->gnr, out_stride = blocks * ks->gnr;
    const int kdim = k * k * in_ch;
    const size_t in_pad = (size_t)hp * wp * in_ch, out_cl = (size_t)map * out_stride;
    const int group = gather_group(n, in_pad + out_cl, omp_get_max_threads()), tasks = (n + group - 1) / group;
    const int positions = round_up(group * map, ks->gmr);
    // Per thread: the group's padded inputs, its outputs (positions rows),
    // the positions' pointers.  Shared: the offsets of the taps, the unit
    // strides of the weights.
    const size_t slot = (size_t)group * in_pad + (size_t)positions * out_stride +
                        (size_t)positions * sizeof(float *) / sizeof(float) + 1;
    const size_t floats = add_size(mul_size((size_t)omp_get_max_threads(), slot, "conv workspace"),
                                   2 * (size_t)kdim, "conv workspace");
    float *ws = conv_workspace(floats);
    int *aoff = (int *)(ws + floats - 2 * (size_t)kdim), *boff = aoff + kdim;
    for (int ky = 0, t = 0; ky < k; ky++)
        for (int kx = 0; kx < k; kx++)
            for (int ch = 0; ch < in_ch; ch++, t++) {
                aoff[t] = (ky * wp + kx) * in_ch + ch;
                boff[t] = t * ks->gnr;
            }
    const size_t in_image = (size_t)in_ch * h * w, out_image = (size_t)out_ch * map;
#pragma omp parallel
    {
        float *xp = ws + (size_t)omp_get_thread_num() * slot;
        float *res = xp + (size_t)group * in_pad;
        // Pointers are 8-aligned: slot and res's length are whole floats,
        // rounded up by one for an odd count.
        const float **rows = (const float **)(((uintptr_t)(res + (size_t)positions * out_stride) + 7) & ~(uintptr_t)7);
#pragma omp for schedule(static)
        for (int t = 0; t < tasks; t++) {
            const int first = t * group, count = first + group <= n ? group : n - first;
            to_channels_last(in + (size_t)first * in_image, count, in_ch, h, w, pad, in_ch, xp);
            const int used = count * map;
            for (int p = 0; p < positions; p++) {
                const int q = p < used ? p : used - 1;   // past the end: repeat the last
                const int i = q / map, y = q % map / ow * stride, x = q % ow * stride;
                rows[p] = xp + ((size_t)i * hp * wp + (size_t)y * wp + x) * in_ch;
            }
            for (int b = 0; b < blocks; b++)
                for (int p = 0; p < used; p += ks->gmr)
                    ks->gather_tile(kdim, rows + p, aoff, packed + (size_t)b * kdim * ks->gnr, boff,
                                    res + (size_t)p * out_stride + (size_t)b * ks->gnr, out_stride, false);
            for (int i = 0; i < count; i++) {
                float *dst = out + (size_t)(first + i) * out_image;
                const float *src = res + (size_t)i * map * out_stride;
                for (int o = 0; o < out_ch; o++)
                    for (int q = 0; q < map; q++) {
                        const float v = src[(size_t)q * out_stride + o];
                        dst[(size_t)o * map + q] = accumulate ? dst[(size_t)o * map + q] + v : v;
                    }
            }
        }
    }
}

void conv_gather_forward(const conv2d *c, int n, int h, int w, const float *x, float *y)
{
    const convk *ks = kernels();
    const int blocks = (c->out_ch + ks->gnr - 1) / ks->gnr;
    const size_t packed_floats = (size_t)blocks * ks->gnr * c->in_ch * c->kernel * c->kernel;
    float *packed = xaligned_alloc(packed_floats * sizeof(float));
    pack_gather(c, false, ks->gnr, packed);
    gather_correlate(ks, n, c->in_ch, c->out_ch, h, w, c->kernel, c->stride, c->pad, packed, x, y, false);
    free(packed);
}

// dW[o][ci][ky][kx] = the sum over images and output positions p of
// x[p + (ky, kx)][ci] dy[p][o]: tiles of (gmr input channels, gnr
// outputs) for one tap, each summing over the positions of a group of
// images, group after group in order (into the tile's own accumulators),
// whichever thread has it.
static void gather_weight_grad(const convk *ks, conv2d *c, int n, int h, int w, const float *x,
                               const float *dy)
{
    const int k = c->kernel, pad = c->pad, s = c->stride, wp = w + 2 * pad, hp = h + 2 * pad;
    const int oh = conv2d_out_size(c, h), ow = conv2d_out_size(c, w), map = oh * ow;
    const int oblocks = (c->out_ch + ks->gnr - 1) / ks->gnr, out_stride = oblocks * ks->gnr;
    const int cblocks = (c->in_ch + ks->gmr - 1) / ks->gmr, kk = k * k;
    const int tiles = kk * cblocks * oblocks;
    const size_t x_image = (size_t)hp * wp * c->in_ch, dy_image = (size_t)map * out_stride;
    const int group = gather_group(n, x_image + dy_image, 1);
    const size_t tile_floats = (size_t)ks->gmr * ks->gnr;
    const size_t floats = (size_t)group * (x_image + dy_image) + (size_t)tiles * tile_floats +
                          2 * (size_t)group * map;
    float *ws = conv_workspace(floats);
    float *dyg = ws + (size_t)group * x_image, *acc = dyg + (size_t)group * dy_image;
    int *aoff = (int *)(acc + (size_t)tiles * tile_floats), *boff = aoff + (size_t)group * map;
    const size_t in_image = (size_t)c->in_ch * h * w, out_image = (size_t)c->out_ch * map;
#pragma omp parallel
    {
        for (int first = 0; first < n; first += group) {
            const int count = first + group <= n ? group : n - first, used = count * map;
#pragma omp for schedule(static)
            for (int i = 0; i < count; i++) {
                to_channels_last(x + (size_t)(first + i) * in_image, 1, c->in_ch, h, w, pad, c->in_ch,
                                 ws + (size_t)i * x_image);
                to_channels_last(dy + (size_t)(first + i) * out_image, 1, c->out_ch, oh, ow, 0, out_stride,
                                 dyg + (size_t)i * dy_image);
            }
#pragma omp for schedule(static)
            for (int p = 0; p < used; p++) {
                const int i = p / map, y = p % map / ow * s, xx = p % ow * s;
                aoff[p] = (int)(((size_t)i * hp * wp + (size_t)y * wp + xx) * c->in_ch);
                boff[p] = p * out_stride;
            }
#pragma omp for schedule(static)
            for (int t = 0; t < tiles; t++) {
                const int tap = t / (cblocks * oblocks), cb = t / oblocks % cblocks, ob = t % oblocks;
                const int ky = tap / k, kx = tap % k;
                const float *rows[16];   // gmr <= 16
                for (int r = 0; r < ks->gmr; r++) {
                    const int ci = cb * ks->gmr + r < c->in_ch ? cb * ks->gmr + r : c->in_ch - 1;
                    rows[r] = ws + (size_t)(ky * wp + kx) * c->in_ch + ci;
                }
                ks->gather_tile(used, rows, aoff, dyg + (size_t)ob * ks->gnr, boff,
                                acc + (size_t)t * tile_floats, ks->gnr, first > 0);
            }
        }
    }
    for (int t = 0; t < tiles; t++) {
        const int tap = t / (cblocks * oblocks), cb = t / oblocks % cblocks, ob = t % oblocks;
        const float *a = acc + (size_t)t * tile_floats;
        for (int r = 0; r < ks->gmr; r++) {
            const int ci = cb * ks->gmr + r;
            if (ci >= c->in_ch)
                break;
            for (int j = 0; j < ks->gnr; j++) {
                const int o = ob * ks->gnr + j;
                if (o < c->out_ch)
                    c->weight_grad[((size_t)o * c->in_ch + ci) * kk + tap] += a[(size_t)r * ks->gnr + j];
            }
        }
    }
}

void conv_gather_weight_grad(conv2d *c, int n, int h, int w, const float *x, const float *dy)
{
    gather_weight_grad(kernels(), c, n, h, w, x, dy);
}

void conv_gather_backward(conv2d *c, int n, int h, int w, const float *x, const float *dy,
                          float *dx, bool accumulate_dx)
{
    const convk *ks = kernels();
    gather_weight_grad(ks, c, n, h, w, x, dy);
    if (!dx)
        return;
    const int blocks = (c->in_ch + ks->gnr - 1) / ks->gnr;
    const size_t packed_floats = (size_t)blocks * ks->gnr * c->out_ch * c->kernel * c->kernel;
    float *packed = xaligned_alloc(packed_floats * sizeof(float));
    pack_gather(c, true, ks->gnr, packed);
    gather_correlate(ks, n, c->out_ch, c->in_ch, h, w, c->kernel, 1, c->kernel - 1 - c->pad, packed, dy,
                     dx, accumulate_dx);
    free(packed);
}
