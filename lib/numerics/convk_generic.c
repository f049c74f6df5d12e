// convk_generic: the portable micro-kernels, in GCC's generic vectors of 4
// floats (SSE2 on any x86-64, NEON on arm64, scalar code elsewhere),
// without fused multiply-add.  A tile is 4 output channels by 12 positions,
// a gather tile 6 rows by 8 channels.
typedef float vec4 __attribute__((vector_size(16)));

static inline vec4 load4(const float *p)
{
    vec4 v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

static inline void store4(float *p, vec4 v) { __builtin_memcpy(p, &v, sizeof v); }

#define TARGET
#define VEC vec4
#define VL 4
#define LOAD(p) load4(p)
#define STORE(p, v) store4((p), (v))
#define BCAST(p) ((vec4){0, 0, 0, 0} + *(p))
#define FMA(a, b, c) ((a) * (b) + (c))
#define ZERO() ((vec4){0, 0, 0, 0})
#define MR 4
#define NV 3
#define WR 4
#define GMR 6
#define GNV 2
#define KSET convk_generic
#define KSET_NAME "generic"
#include "convk_impl.h"
