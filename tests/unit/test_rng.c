// Tests of lib/numerics/rng: Philox4x32-10 known answers, stream layout, uniform and
// normal moments, unbiased bounded integers, permutations, save/restore.
#include "rng.h"

#include <string.h>

#include "../check.h"

// Random123's published known-answer vectors (kat_vectors, philox4x32_10).
TEST(philox_known_answers)
{
    static const uint32_t cases[3][10] = {
        // ctr[4], key[2], expected[4]
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
         0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
         0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1},
    };
    for (int c = 0; c < 3; c++) {
        uint32_t out[4];
        philox4x32_10(cases[c], cases[c] + 4, out);
        for (int i = 0; i < 4; i++)
            EXPECT_MSG(out[i] == cases[c][6 + i], "case %d word %d: %08x, expected %08x",
                       c, i, out[i], cases[c][6 + i]);
    }
}

// A stream's words are the blocks (block, a, b, c) under key = seed, in order.
TEST(stream_layout)
{
    uint64_t seed = 0x0123456789abcdefull;
    rng_t r = rng_make(seed, 7, 11, 13);
    uint32_t key[2] = {0x89abcdef, 0x01234567};
    for (uint32_t block = 0; block < 3; block++) {
        uint32_t ctr[4] = {block, 7, 11, 13}, want[4];
        philox4x32_10(ctr, key, want);
        for (int i = 0; i < 4; i++)
            EXPECT(rng_u32(&r) == want[i]);
    }
    // Same name, same numbers; any other name, other numbers.
    rng_t a = rng_make(1, 2, 3, 4), b = rng_make(1, 2, 3, 4);
    rng_t others[4] = {rng_make(2, 2, 3, 4), rng_make(1, 3, 3, 4), rng_make(1, 2, 4, 4),
                       rng_make(1, 2, 3, 5)};
    for (int i = 0; i < 8; i++) {
        uint32_t x = rng_u32(&a);
        EXPECT(x == rng_u32(&b));
        for (int k = 0; k < 4; k++)
            EXPECT(x != rng_u32(&others[k]));  // a 2^-32 chance per word of a false alarm
    }
    rng_t c = rng_make(5, 0, 0, 0);
    uint64_t lo = rng_u32(&c), hi = rng_u32(&c);
    c = rng_make(5, 0, 0, 0);
    EXPECT(rng_u64(&c) == (lo | hi << 32));
}

// Mean 1/2 and variance 1/12 within 5 standard errors; all 16 bins of a
// histogram within 5 standard errors; range [0, 1) with the 24-bit grid.
TEST(uniform_moments)
{
    enum { N = 1 << 20, BINS = 16 };
    rng_t r = rng_make(42, 0, 0, 0);
    double sum = 0, sum2 = 0;
    long bins[BINS] = {0};
    int off_grid = 0, out_of_range = 0;
    for (int i = 0; i < N; i++) {
        float u = rng_uniform(&r);
        if (!(u >= 0.0f && u < 1.0f))
            out_of_range++;
        if (u * 0x1p24f != floorf(u * 0x1p24f))
            off_grid++;
        sum += u;
        sum2 += (double)u * u;
        bins[(int)(u * BINS)]++;
    }
    EXPECT(out_of_range == 0);
    EXPECT(off_grid == 0);
    double mean = sum / N, var = sum2 / N - mean * mean;
    EXPECT_CLOSE(mean, 0.5, 5 * sqrt(1.0 / 12 / N), 0);
    // Var of (u - 1/2)^2 is 1/80 - 1/144 = 1/180.
    EXPECT_CLOSE(var, 1.0 / 12, 5 * sqrt(1.0 / 180 / N), 0);
    double p = 1.0 / BINS, expected = N * p, sd = sqrt(N * p * (1 - p));
    for (int b = 0; b < BINS; b++)
        EXPECT_CLOSE(bins[b], expected, 5 * sd, 0);
    // The extremes of the grid come out of the extreme words.
    rng_t z = rng_make(0, 0, 0, 0);
    z.pos = 0;
    z.buf[0] = 0, z.buf[1] = 0xffffffffu;
    EXPECT(rng_uniform(&z) == 0.0f);
    EXPECT(rng_uniform(&z) == 1.0f - 0x1p-24f);
}

// Mean 0, variance 1, third moment 0, fourth moment 3, within 5 standard
// errors (Var z = 1, Var z^2 = 2, Var z^3 = 15, Var z^4 = 96).
TEST(normal_moments)
{
    enum { N = 1 << 20 };
    rng_t r = rng_make(7, 1, 2, 3);
    double m1 = 0, m2 = 0, m3 = 0, m4 = 0;
    long within_1sd = 0;
    for (int i = 0; i < N; i++) {
        double z = rng_normal(&r);
        m1 += z, m2 += z * z, m3 += z * z * z, m4 += z * z * z * z;
        within_1sd += fabs(z) < 1.0;
    }
    m1 /= N, m2 /= N, m3 /= N, m4 /= N;
    EXPECT_CLOSE(m1, 0.0, 5 * sqrt(1.0 / N), 0);
    EXPECT_CLOSE(m2, 1.0, 5 * sqrt(2.0 / N), 0);
    EXPECT_CLOSE(m3, 0.0, 5 * sqrt(15.0 / N), 0);
    EXPECT_CLOSE(m4, 3.0, 5 * sqrt(96.0 / N), 0);
    double p = 0.682689492137;  // P(|z| < 1)
    EXPECT_CLOSE((double)within_1sd / N, p, 5 * sqrt(p * (1 - p) / N), 0);
}

// n = 3 * 2^30 is where the shortcuts fail: x % n gives values below 2^30
// twice as often (fraction 1/2, not 1/3), and x * n >> 32 without rejection
// gives multiples of 3 twice as often (fraction 1/2, not 1/3).
TEST(below_is_unbiased)
{
    enum { N = 200000 };
    const uint32_t n = 3u << 30;
    rng_t r = rng_make(3, 0, 0, 0);
    long low_third = 0, multiple_of_3 = 0, out_of_range = 0;
    for (int i = 0; i < N; i++) {
        uint32_t x = rng_below(&r, n);
        out_of_range += x >= n;
        low_third += x < (1u << 30);
        multiple_of_3 += x % 3 == 0;
    }
    double sd = sqrt(N * (1.0 / 3) * (2.0 / 3));
    EXPECT(out_of_range == 0);
    EXPECT_CLOSE(low_third, N / 3.0, 5 * sd, 0);
    EXPECT_CLOSE(multiple_of_3, N / 3.0, 5 * sd, 0);

    // Small n: every value equally often; n = 1 is always 0.
    long counts[7] = {0};
    for (int i = 0; i < 70000; i++)
        counts[rng_below(&r, 7)]++;
    for (int v = 0; v < 7; v++)
        EXPECT_CLOSE(counts[v], 10000, 5 * sqrt(70000 * (1.0 / 7) * (6.0 / 7)), 0);
    EXPECT(rng_below(&r, 1) == 0);

    // The rejection path: with n = 2^31 + 1, words whose low product half is
    // below 2^32 mod n = 2^31 - 1 are drawn again, so about half the calls
    // take two words or more.  The result still lies in range.
    rng_t a = rng_make(9, 0, 0, 0);
    uint32_t big = (1u << 31) + 1;
    for (int i = 0; i < 1000; i++)
        EXPECT(rng_below(&a, big) < big);
}

TEST(permutations)
{
    enum { N = 1000 };
    uint32_t perm[N];
    rng_t r = rng_make(11, 0, 0, 0);
    rng_permutation(&r, perm, N);
    char seen[N] = {0};
    int fixed = 0;
    for (int i = 0; i < N; i++) {
        EXPECT(perm[i] < N && !seen[perm[i]]);
        if (perm[i] < N)
            seen[perm[i]] = 1;
        fixed += perm[i] == (uint32_t)i;
    }
    EXPECT(fixed < 10);  // a random permutation has Poisson(1) fixed points

    // Reproducible from the stream name alone.
    uint32_t again[N];
    rng_t r2 = rng_make(11, 0, 0, 0);
    rng_permutation(&r2, again, N);
    EXPECT(memcmp(perm, again, sizeof perm) == 0);

    // Fisher-Yates exactly as documented: rng_below(i + 1) for i = n-1..1.
    uint32_t small[5];
    rng_t a = rng_make(12, 0, 0, 0), b = rng_make(12, 0, 0, 0);
    rng_permutation(&a, small, 5);
    uint32_t want[5] = {0, 1, 2, 3, 4};
    for (uint32_t i = 4; i >= 1; i--) {
        uint32_t j = rng_below(&b, i + 1), t = want[i];
        want[i] = want[j], want[j] = t;
    }
    EXPECT(memcmp(small, want, sizeof want) == 0);

    // All 6 permutations of 3 elements equally often (5 standard errors).
    enum { DRAWS = 60000 };
    long counts[6] = {0};
    for (int d = 0; d < DRAWS; d++) {
        uint32_t p[3];
        rng_permutation(&r, p, 3);
        counts[p[0] * 2 + (p[1] > p[2])]++;  // p[0] and the order of the rest
    }
    for (int k = 0; k < 6; k++)
        EXPECT_CLOSE(counts[k], DRAWS / 6.0, 5 * sqrt(DRAWS * (1.0 / 6) * (5.0 / 6)), 0);
    rng_permutation(&r, perm, 0);  // empty and single permutations are fine
    rng_permutation(&r, perm, 1);
    EXPECT(perm[0] == 0);
}

// Saving in the middle of a block and restoring continues the same sequence.
TEST(save_restore)
{
    for (int consumed = 0; consumed < 9; consumed++) {
        rng_t r = rng_make(0xdeadbeefcafe, 5, 6, 7);
        for (int i = 0; i < consumed; i++)
            rng_u32(&r);
        int64_t state[RNG_STATE_LEN];
        rng_save(&r, state);
        rng_t back;
        EXPECT(rng_restore(&back, state));
        for (int i = 0; i < 10; i++)
            EXPECT(rng_u32(&back) == rng_u32(&r));
    }
    rng_t r = rng_make(1, 0, 0, 0), untouched = r;
    int64_t bad_pos[RNG_STATE_LEN] = {1, 0, 1, 0, 0, 0, 5};
    int64_t bad_word[RNG_STATE_LEN] = {1ll << 32, 0, 1, 0, 0, 0, 0};
    int64_t never_generated[RNG_STATE_LEN] = {1, 0, 0, 0, 0, 0, 2};
    EXPECT(!rng_restore(&r, bad_pos));
    EXPECT(!rng_restore(&r, bad_word));
    EXPECT(!rng_restore(&r, never_generated));
    EXPECT(memcmp(&r, &untouched, sizeof r) == 0);
}

int main(void)
{
    RUN(philox_known_answers);
    RUN(stream_layout);
    RUN(uniform_moments);
    RUN(normal_moments);
    RUN(below_is_unbiased);
    RUN(permutations);
    RUN(save_restore);
    return CHECK_DONE();
}
