#include "rng.h"

#include <math.h>

#include "util.h"

// Round multipliers and Weyl key increments of Philox4x32 (Random123).
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

rng_t rng_make(uint64_t seed, uint64_t stream_a, uint64_t stream_b, uint64_t stream_c)
{
    if ((stream_a | stream_b | stream_c) >> 32)
        die("rng", "stream id (%llu, %llu, %llu) does not fit in 32 bits",
            (unsigned long long)stream_a, (unsigned long long)stream_b,
            (unsigned long long)stream_c);
    rng_t r = {
        .key = {(uint32_t)seed, (uint32_t)(seed >> 32)},
        .ctr = {0, (uint32_t)stream_a, (uint32_t)stream_b, (uint32_t)stream_c},
        .pos = 4,
    };
    return r;
}

uint32_t rng_u32(rng_t *r)
{
    if (r->pos == 4) {
        // The last block index is never used, so that ctr[0] cannot wrap
        // around to a block this stream already gave out.
        if (r->ctr[0] == UINT32_MAX)
            die("rng", "stream exhausted (2^32 - 1 blocks drawn)");
        philox4x32_10(r->ctr, r->key, r->buf);
        r->ctr[0]++;
        r->pos = 0;
    }
    return r->buf[r->pos++];
}

uint64_t rng_u64(rng_t *r)
{
    uint64_t lo = rng_u32(r);
    return lo | (uint64_t)rng_u32(r) << 32;
}

float rng_uniform(rng_t *r)
{
    return (float)(rng_u32(r) >> 8) * 0x1p-24f;
}

float rng_normal(rng_t *r)
{
    // u1 in (0, 1] keeps the logarithm finite; u2 in [0, 1).
    double u1 = ((double)rng_u32(r) + 1.0) * 0x1p-32;
    double u2 = (double)rng_u32(r) * 0x1p-32;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

uint32_t rng_below(rng_t *r, uint32_t n)
{
    if (n == 0)
        die("rng", "rng_below(0)");
    // x * n / 2^32 maps 2^32 words onto n values; some values get one more
    // word than others.  Rejecting the 2^32 mod n words whose low half falls
    // below that count leaves every value exactly floor(2^32 / n) words.
    uint64_t m = (uint64_t)rng_u32(r) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = (uint32_t)(-n) % n;  // 2^32 mod n
        while (low < threshold) {
            m = (uint64_t)rng_u32(r) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

void rng_shuffle(rng_t *r, uint32_t *perm, uint32_t n)
{
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = rng_below(r, i);
        uint32_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}

void rng_permutation(rng_t *r, uint32_t *perm, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        perm[i] = i;
    rng_shuffle(r, perm, n);
}

void rng_save(const rng_t *r, int64_t state[RNG_STATE_LEN])
{
    state[0] = r->key[0];
    state[1] = r->key[1];
    for (int i = 0; i < 4; i++)
        state[2 + i] = r->ctr[i];
    state[6] = r->pos;
}

bool rng_restore(rng_t *r, const int64_t state[RNG_STATE_LEN])
{
    for (int i = 0; i < RNG_STATE_LEN; i++)
        if (state[i] < 0 || state[i] > (int64_t)UINT32_MAX)
            return false;
    int pos = (int)state[6];
    // A partly used block (pos < 4) must have been generated: ctr[0] >= 1.
    if (pos > 4 || (pos < 4 && state[2] == 0))
        return false;
    rng_t s = {
        .key = {(uint32_t)state[0], (uint32_t)state[1]},
        .ctr = {(uint32_t)state[2], (uint32_t)state[3], (uint32_t)state[4], (uint32_t)state[5]},
        .pos = pos,
    };
    if (pos < 4) {
        // The buffered block is the one before ctr[0]: regenerate it.
        uint32_t prev[4] = {s.ctr[0] - 1, s.ctr[1], s.ctr[2], s.ctr[3]};
        philox4x32_10(prev, s.key, s.buf);
    }
    *r = s;
    return true;
}
