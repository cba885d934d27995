/* sgemm.c: lfsearch's own single-threaded SGEMM, row-major,
 * C [m, n] = alpha op(A) [m, k] op(B) [k, n] + beta C.
 *
 * Goto/BLIS blocking: B is packed in KC x NC blocks into NR-wide row panels, A in
 * MC x KC blocks into MR-tall column panels (zero-padded at the edges), and a
 * register-tile micro-kernel multiplies one A panel by one B panel. Kernels are
 * chosen once from the CPU: AVX-512 (12 x 32 tile), AVX2 + FMA (6 x 16), or
 * portable C (4 x 16); results differ between kernels in the last bits only.
 *
 * Determinism: every C element is the sum over k in increasing order, one
 * multiply-add at a time, restarted at each KC boundary and folded into C as
 * C = alpha acc + beta C; so a result depends on k, KC and the kernel only, never
 * on m, n, the block an element falls in or the thread that computes it. This is
 * what lets a batch split over MPI ranks or OpenMP threads reproduce the whole
 * batch's numbers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "lfs/log.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LFS_SGEMM_X86 1
#endif

enum { kc_block = 256, mc_block = 96, nc_block = 2048, max_mr = 12, max_nr = 32 };

/* c [mr, nr] (row stride ldc) = alpha a_panel b_panel + beta c; beta == 0 does not read c. */
typedef void (*micro_kernel)(int kc, const float *a, const float *b, float *c, int ldc, float alpha,
                             float beta);

typedef struct {
  const char *name;
  int mr, nr;
  micro_kernel kernel;
} sgemm_arch;

/* alpha acc + beta c with one rounding of the sum, as the vector kernels do it. */
static inline float fold(float acc, float alpha, float beta, float c) {
  return beta == 0.0f ? alpha * acc : fmaf(beta, c, alpha * acc);
}

static void kernel_portable(int kc, const float *a, const float *b, float *c, int ldc, float alpha,
                            float beta) {
  enum { mr = 4, nr = 16 };
  float acc[mr][nr] = {{0}};
  for (int p = 0; p < kc; p++, a += mr, b += nr)
    for (int i = 0; i < mr; i++)
      for (int j = 0; j < nr; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
  for (int i = 0; i < mr; i++)
    for (int j = 0; j < nr; j++) c[(size_t)i * ldc + j] = fold(acc[i][j], alpha, beta, c[(size_t)i * ldc + j]);
}

#ifdef LFS_SGEMM_X86
__attribute__((target("avx2,fma"))) static void kernel_avx2(int kc, const float *a, const float *b,
                                                            float *c, int ldc, float alpha,
                                                            float beta) {
  enum { mr = 6 };
  __m256 acc[mr][2];
  for (int i = 0; i < mr; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (int p = 0; p < kc; p++, a += mr, b += 16) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
    for (int i = 0; i < mr; i++) {
      const __m256 ai = _mm256_broadcast_ss(a + i);
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
    }
  }
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  for (int i = 0; i < mr; i++)
    for (int h = 0; h < 2; h++) {
      float *ci = c + (size_t)i * ldc + 8 * h;
      const __m256 scaled = _mm256_mul_ps(va, acc[i][h]);
      _mm256_storeu_ps(ci, beta == 0.0f ? scaled : _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), scaled));
    }
}

__attribute__((target("avx512f"))) static void kernel_avx512(int kc, const float *a, const float *b,
                                                            float *c, int ldc, float alpha,
                                                            float beta) {
  enum { mr = 12 };
  __m512 acc[mr][2];
  for (int i = 0; i < mr; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int p = 0; p < kc; p++, a += mr, b += 32) {
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
    for (int i = 0; i < mr; i++) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int i = 0; i < mr; i++)
    for (int h = 0; h < 2; h++) {
      float *ci = c + (size_t)i * ldc + 16 * h;
      const __m512 scaled = _mm512_mul_ps(va, acc[i][h]);
      _mm512_storeu_ps(ci, beta == 0.0f ? scaled : _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci), scaled));
    }
}
#endif

static const sgemm_arch arch_portable = {"portable", 4, 16, kernel_portable};
#ifdef LFS_SGEMM_X86
static const sgemm_arch arch_avx2 = {"avx2", 6, 16, kernel_avx2};
static const sgemm_arch arch_avx512 = {"avx512", 12, 32, kernel_avx512};
#endif

/* The named kernel if this CPU runs it, else NULL. */
static const sgemm_arch *find_arch(const char *name) {
  if (!strcmp(name, "portable")) return &arch_portable;
#ifdef LFS_SGEMM_X86
  if (!strcmp(name, "avx2") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return &arch_avx2;
  if (!strcmp(name, "avx512") && __builtin_cpu_supports("avx512f")) return &arch_avx512;
#endif
  return NULL;
}

static const sgemm_arch *best_arch(void) {
  static const char *const order[] = {"avx512", "avx2", "portable"};
  for (int i = 0;; i++)
    if (find_arch(order[i])) return find_arch(order[i]);
}

static const sgemm_arch *chosen;

static const sgemm_arch *arch(void) {
  /* a benign race: every thread computes the same pointer */
  const sgemm_arch *a = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
  if (!a) {
    a = best_arch();
    __atomic_store_n(&chosen, a, __ATOMIC_RELEASE);
  }
  return a;
}

int lfs_cpu_sgemm_select(const char *name) {
  const sgemm_arch *a = name ? find_arch(name) : best_arch();
  if (!a) return -1;
  __atomic_store_n(&chosen, a, __ATOMIC_RELEASE);
  return 0;
}

const char *lfs_cpu_sgemm_kernel_name(void) { return arch()->name; }

/* Per-thread packing buffers, grown on demand and kept. */
static _Thread_local float *pack_a, *pack_b;

static float *pack_buffer(float **buf, size_t count) {
  if (!*buf) *buf = lfs_alloc_floats(count);
  return *buf;
}

/* pa [ceil(mc/mr) panels][kc][mr] <- op(A) rows [0, mc), columns [0, kc) at a. */
static void pack_a_block(float *pa, int mr, int ta, const float *a, int lda, int mc, int kc) {
  for (int i0 = 0; i0 < mc; i0 += mr, pa += (size_t)mr * kc) {
    const int rows = mc - i0 < mr ? mc - i0 : mr;
    for (int p = 0; p < kc; p++) {
      float *dst = pa + (size_t)p * mr;
      if (ta) {
        const float *src = a + (size_t)p * lda + i0;
        for (int i = 0; i < rows; i++) dst[i] = src[i];
      } else {
        const float *src = a + (size_t)i0 * lda + p;
        for (int i = 0; i < rows; i++) dst[i] = src[(size_t)i * lda];
      }
      for (int i = rows; i < mr; i++) dst[i] = 0.0f;
    }
  }
}

/* pb [ceil(nc/nr) panels][kc][nr] <- op(B) rows [0, kc), columns [0, nc) at b. */
static void pack_b_block(float *pb, int nr, int tb, const float *b, int ldb, int kc, int nc) {
  for (int j0 = 0; j0 < nc; j0 += nr, pb += (size_t)nr * kc) {
    const int cols = nc - j0 < nr ? nc - j0 : nr;
    for (int p = 0; p < kc; p++) {
      float *dst = pb + (size_t)p * nr;
      if (tb) {
        const float *src = b + (size_t)j0 * ldb + p;
        for (int j = 0; j < cols; j++) dst[j] = src[(size_t)j * ldb];
      } else {
        memcpy(dst, b + (size_t)p * ldb + j0, sizeof(float) * cols);
      }
      for (int j = cols; j < nr; j++) dst[j] = 0.0f;
    }
  }
}

/* C block [mc, nc] from packed panels; edge tiles go through a scratch tile. */
static void macro_kernel(const sgemm_arch *ar, int mc, int nc, int kc, const float *pa,
                         const float *pb, float alpha, float beta, float *c, int ldc) {
  const int mr = ar->mr, nr = ar->nr;
  float tile[max_mr * max_nr];
  for (int j0 = 0; j0 < nc; j0 += nr) {
    const float *bp = pb + (size_t)(j0 / nr) * nr * kc;
    const int cols = nc - j0 < nr ? nc - j0 : nr;
    for (int i0 = 0; i0 < mc; i0 += mr) {
      const float *ap = pa + (size_t)(i0 / mr) * mr * kc;
      const int rows = mc - i0 < mr ? mc - i0 : mr;
      float *cij = c + (size_t)i0 * ldc + j0;
      if (rows == mr && cols == nr) {
        ar->kernel(kc, ap, bp, cij, ldc, alpha, beta);
        continue;
      }
      ar->kernel(kc, ap, bp, tile, nr, 1.0f, 0.0f);
      for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
          cij[(size_t)i * ldc + j] = fold(tile[i * nr + j], alpha, beta, cij[(size_t)i * ldc + j]);
    }
  }
}

static void scale_c(int m, int n, float beta, float *c, int ldc) {
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[(size_t)i * ldc + j];
}

void lfs_cpu_sgemm_serial(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                          const float *b, int ldb, float beta, float *c, int ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0.0f) {
    scale_c(m, n, beta, c, ldc);
    return;
  }
  const sgemm_arch *ar = arch();
  float *pa = pack_buffer(&pack_a, (size_t)(mc_block + max_mr) * kc_block);
  float *pb = pack_buffer(&pack_b, (size_t)(nc_block + max_nr) * kc_block);
  for (int j0 = 0; j0 < n; j0 += nc_block) {
    const int nc = n - j0 < nc_block ? n - j0 : nc_block;
    for (int p0 = 0; p0 < k; p0 += kc_block) {
      const int kc = k - p0 < kc_block ? k - p0 : kc_block;
      const float *bblk = tb ? b + (size_t)j0 * ldb + p0 : b + (size_t)p0 * ldb + j0;
      pack_b_block(pb, ar->nr, tb, bblk, ldb, kc, nc);
      const float beta_here = p0 == 0 ? beta : 1.0f;
      for (int i0 = 0; i0 < m; i0 += mc_block) {
        const int mc = m - i0 < mc_block ? m - i0 : mc_block;
        const float *ablk = ta ? a + (size_t)p0 * lda + i0 : a + (size_t)i0 * lda + p0;
        pack_a_block(pa, ar->mr, ta, ablk, lda, mc, kc);
        macro_kernel(ar, mc, nc, kc, pa, pb, alpha, beta_here, c + (size_t)i0 * ldc + j0, ldc);
      }
    }
  }
}
