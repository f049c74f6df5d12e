// fixture: reading the PyTorch parity fixtures (tests/fixtures/*.mts,
// written by tests/torch/) in the unit tests: a record's tensor as f32 (the
// layer's input) or as f64 (the reference, unrounded).
#ifndef MEDSSL_FIXTURE_H
#define MEDSSL_FIXTURE_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
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

// f32 results against an f64 reference from PyTorch: within 1e-4 of the
// reference's largest entry (plus 1e-5 relative).
static inline void fixture_expect_close(const char *what, const char *key, const float *got, const double *want,
                                        size_t n)
{
    double scale = 0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < n; i++)
        EXPECT_MSG(fabs(got[i] - want[i]) <= 1e-4 * scale + 1e-5 * fabs(want[i]), "%s %s[%zu]: %.9g, torch %.9g",
                   what, key, i, got[i], want[i]);
}

// The record's f64 tensor `key` against n f32 results.
static inline void fixture_expect_key(const mts_reader *r, const mts_frame *f, const char *what, const char *key,
                                      const float *got, size_t n)
{
    size_t count;
    double *want = fixture_f64(r, f, key, &count);
    EXPECT_MSG(count == n, "%s %s: %zu values, want %zu", what, key, count, n);
    if (count == n)
        fixture_expect_close(what, key, got, want, n);
    free(want);
}

#endif
