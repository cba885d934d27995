/* fuzz_targets.h: the per-target entry functions shared by the libFuzzer
 * programs (fuzz_recordio.c, fuzz_pickle.c, built by run-fuzz.sh) and the
 * regression runner of make check (test_fuzz_regress.c). Each runs one input
 * through a parser the way `lfsearch pack` does, checks the invariants of what
 * it returns (abort() on a violation, so the fuzzer reports it) and returns 0
 * when the input was accepted, 1 when it was rejected with a message. */
#ifndef LFS_FUZZ_TARGETS_H
#define LFS_FUZZ_TARGETS_H

#include <stddef.h>
#include <stdint.h>

/* The input is a train.rec file, scanned from offset 0 with resynchronisation
 * after bad records; its text is also parsed as a train.idx whose offsets are
 * then read from the same bytes. Record payloads are decoded as images. */
int lfs_fuzz_recordio(const uint8_t *data, size_t size);
/* The input is a verification .bin pickle; accepted images are decoded. */
int lfs_fuzz_pickle(const uint8_t *data, size_t size);

#endif
