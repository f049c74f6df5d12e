// convk_avx512: the micro-kernels for AVX-512F (16 floats per vector).  A
// tile is 8 output channels by 48 positions: 24 accumulators, 3 loads and
// 8 broadcasts for 24 FMAs per tap, within the 32 registers; a gather tile
// is 12 rows by 32 channels (24 accumulators).
#ifdef __x86_64__
#include <immintrin.h>

// The kernels alone are built for the level (clang has no #pragma GCC
// target); the rest of the program runs on any x86-64.
#define TARGET __attribute__((target("avx512f,fma")))
#define VEC __m512
#define VL 16
#define LOAD(p) _mm512_loadu_ps(p)
#define STORE(p, v) _mm512_storeu_ps((p), (v))
#define BCAST(p) _mm512_set1_ps(*(p))
#define FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define ZERO() _mm512_setzero_ps()
#define MR 8
#define NV 3
#define WR 8
#define GMR 12
#define GNV 2
#define KSET convk_avx512
#define KSET_NAME "avx512"
#include "convk_impl.h"
#else
#include "convk.h"
const convk convk_avx512 = {.name = "avx512"};   // no tile: never runs off x86-64
#endif
