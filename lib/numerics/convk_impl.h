// convk_impl: the body of one micro-kernel set (convk.h), included by
// convk_avx512.c, convk_avx2.c and convk_generic.c after each defines its
// vector type and operations:
//   VEC, VL (floats per vector), LOAD(p) (unaligned), STORE(p, v),
//   BCAST(p) (*p in every lane), FMA(a, b, c) (a b + c), ZERO(),
//   MR, NV (vectors per tile row: nr = NV VL), WR, GMR and GNV (the
//   gather tile's rows and vectors), TARGET (the function
//   attribute that enables the level), KSET and KSET_NAME (the convk
//   variable and its name).
// The loops over tile rows and vectors have constant trip counts and are
// unrolled, so that the accumulators live in registers: MR NV of them for
// a tile (12 to 24), 3 WR for a weight-gradient tile, GMR GNV for a
// gather tile.
#include "convk.h"

TARGET static void tile_kernel(int kdim, const float *a, const float *b, const int *off, float *c, int ldc,
                        bool accumulate)
{
    VEC acc[MR][NV];
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[r][v] = ZERO();
    for (int k = 0; k < kdim; k++) {
        const float *bk = b + off[k];
        const float *ak = a + (long)k * MR;
        VEC bv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            bv[v] = LOAD(bk + v * VL);
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++) {
            VEC ar = BCAST(ak + r);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                acc[r][v] = FMA(ar, bv[v], acc[r][v]);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) {
        float *cr = c + (long)r * ldc;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            VEC out = acc[r][v];
            if (accumulate)
                out = out + LOAD(cr + v * VL);
            STORE(cr + v * VL, out);
        }
    }
}

TARGET static void gather_kernel(int kdim, const float *const *a, const int *aoff, const float *b,
                                const int *boff, float *c, int ldc, bool accumulate)
{
    VEC acc[GMR][GNV];
#pragma GCC unroll 16
    for (int r = 0; r < GMR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < GNV; v++)
            acc[r][v] = ZERO();
    for (int k = 0; k < kdim; k++) {
        const float *bk = b + boff[k];
        const int ak = aoff[k];
        VEC bv[GNV];
#pragma GCC unroll 4
        for (int v = 0; v < GNV; v++)
            bv[v] = LOAD(bk + v * VL);
#pragma GCC unroll 16
        for (int r = 0; r < GMR; r++) {
            VEC ar = BCAST(a[r] + ak);
#pragma GCC unroll 4
            for (int v = 0; v < GNV; v++)
                acc[r][v] = FMA(ar, bv[v], acc[r][v]);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < GMR; r++) {
        float *cr = c + (long)r * ldc;
#pragma GCC unroll 4
        for (int v = 0; v < GNV; v++) {
            VEC out = acc[r][v];
            if (accumulate)
                out = out + LOAD(cr + v * VL);
            STORE(cr + v * VL, out);
        }
    }
}

// The lanes' sum in a fixed order (pairwise), so that the result does not
// depend on anything but the inputs.
TARGET static float lane_sum(VEC v)
{
    float lane[VL];
    STORE(lane, v);
    for (int width = VL / 2; width > 0; width /= 2)
        for (int i = 0; i < width; i++)
            lane[i] += lane[i + width];
    return lane[0];
}

TARGET static void grad_kernel(int nimg, long stride, int nvec, const float *dy, int ldy, const float *x,
                        const int *off, float *g)
{
    VEC acc[WR][3];
#pragma GCC unroll 16
    for (int r = 0; r < WR; r++)
#pragma GCC unroll 3
        for (int q = 0; q < 3; q++)
            acc[r][q] = ZERO();
    for (int i = 0; i < nimg; i++, dy += stride, x += stride) {
        const float *x0 = x + off[0], *x1 = x + off[1], *x2 = x + off[2];
        for (int j = 0; j < nvec * VL; j += VL) {
            VEC xv[3] = {LOAD(x0 + j), LOAD(x1 + j), LOAD(x2 + j)};
#pragma GCC unroll 16
            for (int r = 0; r < WR; r++) {
                VEC d = LOAD(dy + (long)r * ldy + j);
#pragma GCC unroll 3
                for (int q = 0; q < 3; q++)
                    acc[r][q] = FMA(d, xv[q], acc[r][q]);
            }
        }
    }
    for (int r = 0; r < WR; r++)
        for (int q = 0; q < 3; q++)
            g[3 * r + q] = lane_sum(acc[r][q]);
}

const convk KSET = {
    .name = KSET_NAME,
    .mr = MR,
    .nr = NV * VL,
    .wr = WR,
    .vl = VL,
    .tile = tile_kernel,
    .grad_tile = grad_kernel,
    .gmr = GMR,
    .gnr = GNV * VL,
    .gather_tile = gather_kernel,
};
