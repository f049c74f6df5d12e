// fixture: reading the PyTorch parity fixtures (tests/fixtures/*.mts,
// written by tests/torch/) in the unit tests: a record's tensor as f32 (the
// layer's input) or as f64 (the reference, unrounded).
#ifndef MEDSSL_FIXTURE_H
#define MEDSSL_FIXTURE_H

#include <string.h>

#include "stream.h"
#include "util.h"

static inline float *fixture_f32(const mts_reader *r, const mts_frame *f, const char *key, size_t *count)
{
    mts_tensor t;
    mts_req_tensor(r, f, key, &t);
    *count = mts_tensor_count(&t);
    float *x = xaligned_alloc((*count ? *count : 1) * sizeof(float));
    mts_tensor_to_f32(&t, x);
    return x;
}

static inline double *fixture_f64(const mts_reader *r, const mts_frame *f, const char *key, size_t *count)
{
    mts_tensor t;
    mts_req_tensor(r, f, key, &t);
    if (t.dtype != MTS_F64)
        mts_die_at(r, f, "key '%s': expected f64", key);
    *count = mts_tensor_count(&t);
    double *x = xmalloc((*count ? *count : 1) * sizeof(double));
    memcpy(x, t.data, *count * sizeof(double));
    return x;
}

#endif
