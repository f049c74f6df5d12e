// rng: a counter-based random generator (Philox4x32-10), so that the
// randomness of a record depends only on what it is, not on when or on which
// thread it is drawn.
//
// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC 2011; the Random123 library) maps a 128-bit counter and a 64-bit key to
// 128 random bits with ten rounds of multiply-xor.  A stream is named by
//     key     = seed (64 bits)
//     counter = (block, stream_a, stream_b, stream_c)   (32 bits each)
// and yields the words of blocks 0, 1, 2, ... in order, four words a block.
// Streams with different (seed, a, b, c) never share a block, so a tool can
// give every (epoch, record, view/purpose) its own stream, e.g.
//     rng_t r = rng_make(seed, epoch, record, view << 8 | purpose);
// and get the same numbers whatever the thread count or the order in which
// records are processed.  Stream ids must be below 2^32 (rng_make dies
// otherwise: a silently truncated id would make two streams collide), and one
// stream holds 2^32 - 1 blocks (16 GiB of randomness; drawing more dies).
//
// The state is seven 32-bit words (key, counter, position in the block); it
// is saved and restored with rng_save/rng_restore, e.g. as an i64 tensor in a
// checkpoint, so that a resumed run continues the same sequence.
#ifndef MEDSSL_RNG_H
#define MEDSSL_RNG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t key[2];
    uint32_t ctr[4];   // ctr[0]: blocks generated so far; ctr[1..3]: stream ids
    uint32_t buf[4];   // the last block generated
    int pos;           // next unused word of buf (4: buf used up)
} rng_t;

// The bare Philox4x32-10 bijection: out = philox(ctr, key).
void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

// The stream (seed, stream_a, stream_b, stream_c), positioned at its start.
rng_t rng_make(uint64_t seed, uint64_t stream_a, uint64_t stream_b, uint64_t stream_c);

// The next 32 random bits.
uint32_t rng_u32(rng_t *r);
// 64 bits from two words (the first word is the low half).
uint64_t rng_u64(rng_t *r);
// Uniform in [0, 1) with 24 random bits (every float of the form k / 2^24).
float rng_uniform(rng_t *r);
// Standard normal by Box-Muller (two words per call; computed in double).
float rng_normal(rng_t *r);
// Uniform integer in [0, n), exactly unbiased (Lemire's multiply-shift with
// rejection; on average fewer than 1 + n / 2^32 words).  n must be > 0.
uint32_t rng_below(rng_t *r, uint32_t n);
// perm: (n,) filled with a uniformly random permutation of 0..n-1
// (Fisher-Yates, drawing rng_below(i + 1) for i = n-1 down to 1).
void rng_permutation(rng_t *r, uint32_t *perm, uint32_t n);
// Shuffles perm in place with the same draws as rng_permutation.
void rng_shuffle(rng_t *r, uint32_t *perm, uint32_t n);

// Saved state: key[0], key[1], ctr[0..3], pos, each in [0, 2^32).
#define RNG_STATE_LEN 7
void rng_save(const rng_t *r, int64_t state[RNG_STATE_LEN]);
// Returns false (leaving *r untouched) when the values cannot be a saved state.
bool rng_restore(rng_t *r, const int64_t state[RNG_STATE_LEN]);

#endif
