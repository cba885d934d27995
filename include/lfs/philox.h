/* philox.h: Philox4x32-10 counter-based random numbers (Salmon et al., SC'11).
 *
 * Nothing here has state: every random number is a pure function of
 * (seed, purpose, a, b, index). Training code keys streams by what it is for
 * (data order, flips, dropout, policy samples) and by epoch/candidate/step, so
 * that resuming needs no saved generator state. */
#ifndef LFS_PHILOX_H
#define LFS_PHILOX_H

#include <stddef.h>
#include <stdint.h>

/* The raw bijection: 10 rounds of Philox4x32 on counter ctr with key key. */
void lfs_philox4x32_10(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2]);

/* What a stream is used for; part of the key so that purposes never collide. */
typedef enum {
  LFS_RNG_TEST = 0,
  LFS_RNG_INIT = 1,       /* weight initialisation */
  LFS_RNG_DATA_ORDER = 2, /* epoch permutation */
  LFS_RNG_FLIP = 3,       /* horizontal flips */
  LFS_RNG_DROPOUT = 4,
  LFS_RNG_POLICY = 5,     /* search policy samples */
  LFS_RNG_SYNTH = 6,      /* synthetic data */
} lfs_rng_purpose;

/* A keyed stream: key = seed; counter = (i low, i high | purpose << 24, a, b);
 * element i of the stream is word i % 4 of block i / 4. */
typedef struct {
  uint32_t key[2];
  uint32_t a, b;
  uint32_t purpose; /* top byte of counter word 1 */
} lfs_rng;

lfs_rng lfs_rng_make(uint64_t seed, lfs_rng_purpose purpose, uint32_t a, uint32_t b);
/* Four 32-bit words for block i. */
void lfs_rng_block(const lfs_rng *r, uint64_t i, uint32_t out[4]);
/* Element i as a 32-bit word (block i/4, word i%4). */
uint32_t lfs_rng_u32(const lfs_rng *r, uint64_t i);
/* Uniform in the open interval (0, 1): ((u32 >> 9) + 0.5) * 2^-23, exact in float. */
float lfs_rng_uniform(const lfs_rng *r, uint64_t i);
/* Uniform in [0, n) without modulo bias; n >= 1. */
uint64_t lfs_rng_below(const lfs_rng *r, uint64_t i, uint64_t n);
/* Standard normal in double (Box-Muller on block i). */
double lfs_rng_normal(const lfs_rng *r, uint64_t i);
/* Fills out[0..n) with a uniformly random permutation of 0..n-1. */
void lfs_rng_permutation(const lfs_rng *r, uint64_t *out, size_t n);

#endif
