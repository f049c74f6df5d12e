// convk: the register-blocked micro-kernels of the direct convolution
// (conv.c), one set per instruction level (AVX-512, AVX2 with FMA, and a
// portable one in GCC's generic vectors), chosen at run time from the
// CPU's features.
//
// The first two kernels read their input in the "flattened padded" form conv.c
// builds: a channel's zero-padded plane laid out row after row, so that
// every tap (ci, ky, kx) of a stride-1 convolution is one fixed offset
// into it and a tile of consecutive outputs reads consecutive floats (the
// outputs that fall in the padding columns are computed and dropped).
//
// Environment:
//   MEDSSL_CONV_KERNELS  auto (the default): the widest set this CPU runs,
//                        but avx2 on AMD's family 19h (Zen 4), whose
//                        AVX-512 units are 256 bits wide: there the avx2
//                        set ran steps (a) and (c) of make bench 8-10%
//                        faster and (d) 0-10% (2026-12-04, EPYC family 25
//                        model 17; Zen 5, family 1Ah, keeps avx512,
//                        unmeasured); avx512, avx2 or generic: that set (an
//                        error when this CPU cannot run it).
#ifndef MEDSSL_CONVK_H
#define MEDSSL_CONVK_H

#include <stdbool.h>

typedef struct {
    const char *name;   // "avx512", "avx2", "generic"
    int mr;             // tile rows: output channels per tile
    int nr;             // tile columns: flattened output positions per tile
    int wr;             // weight-gradient tile rows (output channels)
    int vl;             // floats per vector: the weight gradient's step along a plane
    // c (mr, nr) of row stride ldc = (accumulate ? c : 0) + sum over k <
    // kdim of a[k mr + r] b[off[k] + j]: a is mr weights per tap, b one
    // image's padded planes, off each tap's offset into them.
    void (*tile)(int kdim, const float *a, const float *b, const int *off, float *c, int ldc,
                 bool accumulate);
    // g[3 r + q] = sum over images i < nimg and j < nvec vl of
    // dy[i stride + r ldy + j] x[i stride + off[q] + j], for r < wr, q < 3:
    // three taps of the weight gradient for wr output channels, summed in
    // a fixed order (each lane over the images and j, then the lanes).
    void (*grad_tile)(int nimg, long stride, int nvec, const float *dy, int ldy, const float *x,
                      const int *off, float *g);
    // The channels-last kernel of small maps: c (gmr, gnr) of row stride
    // ldc = (accumulate ? c : 0) + sum over k < kdim of a[r][aoff[k]]
    // b[boff[k] + j].  Each row has its own pointer, so a tile's rows can
    // be any positions (or channels) and none is wasted on padding.
    int gmr, gnr;
    void (*gather_tile)(int kdim, const float *const *a, const int *aoff, const float *b,
                        const int *boff, float *c, int ldc, bool accumulate);
} convk;

// The set MEDSSL_CONV_KERNELS names (auto when unset); dies when it names
// an unknown set or one this CPU cannot run.  Chosen once per process.
const convk *convk_selected(void);

// The set of that name, or NULL when unknown or this CPU cannot run it.
const convk *convk_by_name(const char *name);

// Names of every set, widest first: "avx512 avx2 generic".
const char *convk_names(void);

// The sets of each level (defined in convk_*.c).
extern const convk convk_avx512, convk_avx2, convk_generic;

#endif
