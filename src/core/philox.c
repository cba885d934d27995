/* philox.c: Philox4x32-10 (Salmon et al., SC'11) and the keyed streams built on it.
 *
 * Stream mapping (tests/ref and Python fixture generators reproduce it bit for bit):
 *   key              = { (u32)seed, (u32)(seed >> 32) }
 *   block i          = Philox(counter { (u32)i, (u32)(i >> 32) | purpose << 24, a, b }),
 *                      i < 2^56 so that the purpose byte is never overwritten
 *   u32(i)           = word i % 4 of block i / 4
 *   uniform(i)       = ((u32(i) >> 9) + 0.5) * 2^-23
 *   below(i, n)      = Lemire multiply-shift on 64-bit draws x_0, x_1, ... (see below)
 *   normal(i)        = Box-Muller on block i (see below)
 *   permutation(n)   = Fisher-Yates, k = n-1 .. 1: swap(out[k], out[below(k, k + 1)])
 *
 * uniform() keeps 23 bits, not 24: (k + 0.5) * 2^-24 for k near 2^24 needs 25
 * significant bits, so in float the top value would round to 1.0 and leave the
 * open interval. With 23 bits every value is an exact float in [2^-24, 1 - 2^-24]
 * and the distribution is symmetric about 0.5. */
#include "lfs/philox.h"

#include <math.h>

#include "lfs/log.h"

enum { LFS_PHILOX_ROUNDS = 10 };

static const uint32_t lfs_philox_m0 = 0xD2511F53u;
static const uint32_t lfs_philox_m1 = 0xCD9E8D57u;
static const uint32_t lfs_philox_w0 = 0x9E3779B9u; /* golden ratio */
static const uint32_t lfs_philox_w1 = 0xBB67AE85u; /* sqrt(3) - 1 */

static void lfs_philox_round(uint32_t c[4], const uint32_t k[2]) {
  uint64_t p0 = (uint64_t)lfs_philox_m0 * c[0];
  uint64_t p1 = (uint64_t)lfs_philox_m1 * c[2];
  uint32_t c1 = c[1], c3 = c[3];
  c[0] = (uint32_t)(p1 >> 32) ^ c1 ^ k[0];
  c[1] = (uint32_t)p1;
  c[2] = (uint32_t)(p0 >> 32) ^ c3 ^ k[1];
  c[3] = (uint32_t)p0;
}

void lfs_philox4x32_10(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2]) {
  uint32_t c[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
  uint32_t k[2] = {key[0], key[1]};
  for (int r = 0; r < LFS_PHILOX_ROUNDS; r++) {
    if (r > 0) {
      k[0] += lfs_philox_w0;
      k[1] += lfs_philox_w1;
    }
    lfs_philox_round(c, k);
  }
  for (int j = 0; j < 4; j++) out[j] = c[j];
}

lfs_rng lfs_rng_make(uint64_t seed, lfs_rng_purpose purpose, uint32_t a, uint32_t b) {
  LFS_ASSERT((uint32_t)purpose < 256u);
  lfs_rng r;
  r.key[0] = (uint32_t)seed;
  r.key[1] = (uint32_t)(seed >> 32);
  r.a = a;
  r.b = b;
  r.purpose = (uint32_t)purpose;
  return r;
}

void lfs_rng_block(const lfs_rng *r, uint64_t i, uint32_t out[4]) {
  LFS_ASSERT(i < ((uint64_t)1 << 56));
  uint32_t ctr[4] = {(uint32_t)i, (uint32_t)(i >> 32) | (r->purpose << 24), r->a, r->b};
  lfs_philox4x32_10(out, ctr, r->key);
}

uint32_t lfs_rng_u32(const lfs_rng *r, uint64_t i) {
  uint32_t w[4];
  lfs_rng_block(r, i / 4, w);
  return w[i % 4];
}

float lfs_rng_uniform(const lfs_rng *r, uint64_t i) {
  /* (k + 0.5) has at most 24 significant bits, so both steps are exact in float. */
  return ((float)(lfs_rng_u32(r, i) >> 9) + 0.5f) * 0x1p-23f;
}

/* GCC and Clang provide 128-bit products; __extension__ keeps -pedantic quiet. */
__extension__ typedef unsigned __int128 lfs_u128;

static uint64_t lfs_words_to_u64(uint32_t lo, uint32_t hi) { return (uint64_t)lo | (uint64_t)hi << 32; }

/* Draws for below(i, n): block B_0 = block i, B_{t+1} = Philox(B_t, key) (the
 * previous block re-encrypted), x_{2t} = B_t[0] | B_t[1] << 32,
 * x_{2t+1} = B_t[2] | B_t[3] << 32. Re-encrypting keeps every retry a function
 * of (stream, i) alone without borrowing the blocks of other indices.
 * A draw x is accepted unless low64(x * n) < 2^64 mod n; the result is high64(x * n).
 * A rejection happens with probability < n / 2^64, so for n <= 2^32 the two
 * draws of block i are all one ever needs in practice. */
uint64_t lfs_rng_below(const lfs_rng *r, uint64_t i, uint64_t n) {
  LFS_ASSERT(n >= 1);
  uint32_t w[4];
  lfs_rng_block(r, i, w);
  const uint64_t threshold = (0 - n) % n; /* 2^64 mod n */
  for (int t = 0;; t++) {
    if (t > 0 && t % 2 == 0) {
      uint32_t prev[4] = {w[0], w[1], w[2], w[3]};
      lfs_philox4x32_10(w, prev, r->key);
    }
    int h = (t % 2) * 2;
    lfs_u128 m = (lfs_u128)lfs_words_to_u64(w[h], w[h + 1]) * n;
    if ((uint64_t)m >= threshold) return (uint64_t)(m >> 64);
  }
}

/* u1 = (k1 + 1) * 2^-53 lies in (0, 1], so log(u1) is finite; u2 = k2 * 2^-53 in [0, 1).
 * k1 = top 53 bits of B[0] | B[1] << 32, k2 = top 53 bits of B[2] | B[3] << 32.
 * Result: sqrt(-2 log u1) * cos(2 pi u2). */
double lfs_rng_normal(const lfs_rng *r, uint64_t i) {
  uint32_t w[4];
  lfs_rng_block(r, i, w);
  double u1 = (double)((lfs_words_to_u64(w[0], w[1]) >> 11) + 1) * 0x1p-53;
  double u2 = (double)(lfs_words_to_u64(w[2], w[3]) >> 11) * 0x1p-53;
  const double two_pi = 6.283185307179586476925286766559;
  return sqrt(-2.0 * log(u1)) * cos(two_pi * u2);
}

void lfs_rng_permutation(const lfs_rng *r, uint64_t *out, size_t n) {
  for (size_t k = 0; k < n; k++) out[k] = k;
  for (size_t k = n; k > 1; k--) {
    size_t top = k - 1;
    uint64_t j = lfs_rng_below(r, top, (uint64_t)k);
    uint64_t tmp = out[top];
    out[top] = out[j];
    out[j] = tmp;
  }
}
