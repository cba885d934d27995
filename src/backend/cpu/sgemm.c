/* sgemm.c: lfsearch's own single-threaded SGEMM, row-major,
 * C [m, n] = alpha op(A) [m, k] op(B) [k, n] + beta C.
 *
 * Goto/BLIS blocking: B is packed in KC x NC blocks into NR-wide row panels, A in
 * MC x KC blocks into MR-tall column panels (zero-padded at the edges), and a
 * register-tile micro-kernel multiplies one A panel by one B panel. Kernels are
 * chosen once from the CPU: AVX-512 (8 x 48 tile), AVX2 + FMA (6 x 16), or
 * portable C (4 x 16); results differ between kernels in the last bits only.
 *
 * Determinism: every C element is the sum over k in increasing order, one
 * multiply-add at a time, restarted at each KC boundary and folded into C as
 * C = alpha acc + beta C; so a result depends on k, KC and the kernel only, never
 * on m, n, the block an element falls in or the thread that computes it. This is
 * what lets a batch split over MPI ranks or OpenMP threads reproduce the whole
 * batch's numbers. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "lfs/log.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LFS_SGEMM_X86 1
#endif

enum { kc_block = 128, mc_block = 144, nc_block = 2016, max_mr = 8, max_nr = 48 };

/* c [rows, cols] (row stride ldc) = alpha a_panel b_panel + beta c, for the
 * top-left rows x cols of the mr x nr tile (edge tiles); beta == 0 does not read c. */
typedef void (*micro_kernel)(int kc, const float *a, const float *b, float *c, int ldc, float alpha,
                             float beta, int rows, int cols);

typedef struct {
  const char *name;
  int mr, nr;
  micro_kernel kernel;
} sgemm_arch;

static void kernel_portable(int kc, const float *a, const float *b, float *c, int ldc, float alpha,
                            float beta, int rows, int cols) {
  enum { mr = 4, nr = 16 };
  float acc[mr][nr] = {{0}};
  for (int p = 0; p < kc; p++, a += mr, b += nr)
    for (int i = 0; i < mr; i++)
      for (int j = 0; j < nr; j++) acc[i][j] += a[i] * b[j];
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++) {
      float *cij = c + (size_t)i * ldc + j;
      *cij = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * *cij;
    }
}

#ifdef LFS_SGEMM_X86
__attribute__((target("avx2,fma"))) static void kernel_avx2(int kc, const float *a, const float *b,
                                                            float *c, int ldc, float alpha,
                                                            float beta, int rows, int cols) {
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
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int h = 0; h < 2; h++) {
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols - 8 * h), lane);
    for (int i = 0; i < rows; i++) {
      float *ci = c + (size_t)i * ldc + 8 * h;
      const __m256 scaled = _mm256_mul_ps(va, acc[i][h]);
      if (cols >= 8 * h + 8) {
        _mm256_storeu_ps(ci, beta == 0.0f ? scaled : _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), scaled));
      } else if (cols > 8 * h) {
        const __m256 old = beta == 0.0f ? scaled : _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci, mask), scaled);
        _mm256_maskstore_ps(ci, mask, old);
      }
    }
  }
}

/* 8 x 48: eight rows keep power-of-two channel counts (16, 64, ...) free of
 * padded rows; 24 accumulators + 3 B vectors + 1 broadcast fill 28 of 32 zmm. */
__attribute__((target("avx512f"))) static void kernel_avx512(int kc, const float *a, const float *b,
                                                            float *c, int ldc, float alpha,
                                                            float beta, int rows, int cols) {
  enum { mr = 8, nv = 3 };
  __m512 acc[mr][nv];
  /* C's rows lie far apart (ldc); start their misses now, under the k loop */
  for (int i = 0; i < rows; i++)
    for (int h = 0; h < nv; h++) _mm_prefetch((const char *)(c + (size_t)i * ldc + 16 * h), _MM_HINT_T0);
  for (int i = 0; i < mr; i++)
    for (int h = 0; h < nv; h++) acc[i][h] = _mm512_setzero_ps();
#pragma GCC unroll 4
  for (int p = 0; p < kc; p++, a += mr, b += 16 * nv) {
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16), b2 = _mm512_loadu_ps(b + 32);
    for (int i = 0; i < mr; i++) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
      acc[i][2] = _mm512_fmadd_ps(ai, b2, acc[i][2]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int h = 0; h < nv; h++) {
    const int left = cols - 16 * h;
    if (left <= 0) break;
    const __mmask16 mask = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1u);
    for (int i = 0; i < rows; i++) {
      float *ci = c + (size_t)i * ldc + 16 * h;
      const __m512 scaled = _mm512_mul_ps(va, acc[i][h]);
      const __m512 out =
          beta == 0.0f ? scaled : _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask, ci), scaled);
      _mm512_mask_storeu_ps(ci, mask, out);
    }
  }
}
#endif

static const sgemm_arch arch_portable = {"portable", 4, 16, kernel_portable};
#ifdef LFS_SGEMM_X86
static const sgemm_arch arch_avx2 = {"avx2", 6, 16, kernel_avx2};
static const sgemm_arch arch_avx512 = {"avx512", 8, 48, kernel_avx512};
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

int lfs_cpu_gemm_select(const char *name) {
  const sgemm_arch *a = name ? find_arch(name) : best_arch();
  if (!a) return -1;
  __atomic_store_n(&chosen, a, __ATOMIC_RELEASE);
  return 0;
}

const char *lfs_cpu_sgemm_kernel_name(void) { return arch()->name; }

/* Per-thread packing buffers: one block of A and one of B, allocated on a
 * thread's first GEMM and freed when the thread ends (OpenMP teams shrink and
 * grow with the thread count). */
typedef struct {
  float *a, *b;
} pack_buffers;

static pthread_key_t pack_key;
static pthread_once_t pack_key_once = PTHREAD_ONCE_INIT;

static void free_pack_buffers(void *p) {
  pack_buffers *bufs = p;
  free(bufs->a), free(bufs->b), free(bufs);
}

static void make_pack_key(void) {
  if (pthread_key_create(&pack_key, free_pack_buffers) != 0)
    lfs_fatal("sgemm: pthread_key_create failed");
}

static pack_buffers *thread_pack_buffers(void) {
  pthread_once(&pack_key_once, make_pack_key);
  pack_buffers *bufs = pthread_getspecific(pack_key);
  if (!bufs) {
    bufs = lfs_malloc(sizeof *bufs);
    bufs->a = lfs_alloc_floats((size_t)(mc_block + max_mr) * kc_block);
    bufs->b = lfs_alloc_floats((size_t)(nc_block + max_nr) * kc_block);
    if (pthread_setspecific(pack_key, bufs) != 0) lfs_fatal("sgemm: pthread_setspecific failed");
  }
  return bufs;
}

/* pa [ceil(mc/mr) panels][kc][mr] <- op(A) rows [0, mc), columns [0, kc) at a.
 * Loops run along A's memory order, so reads are sequential and the scattered
 * writes stay inside one panel (kc x mr floats, in L1/L2). */
static void pack_a_block(float *pa, int mr, int ta, const float *a, int lda, int mc, int kc) {
  for (int i0 = 0; i0 < mc; i0 += mr, pa += (size_t)mr * kc) {
    const int rows = mc - i0 < mr ? mc - i0 : mr;
    if (ta) {
      for (int p = 0; p < kc; p++) {
        const float *src = a + (size_t)p * lda + i0;
        float *dst = pa + (size_t)p * mr;
        for (int i = 0; i < rows; i++) dst[i] = src[i];
        for (int i = rows; i < mr; i++) dst[i] = 0.0f;
      }
      continue;
    }
    for (int i = 0; i < rows; i++) {
      const float *src = a + (size_t)(i0 + i) * lda;
      for (int p = 0; p < kc; p++) pa[(size_t)p * mr + i] = src[p];
    }
    for (int i = rows; i < mr; i++)
      for (int p = 0; p < kc; p++) pa[(size_t)p * mr + i] = 0.0f;
  }
}

/* pb [ceil(nc/nr) panels][kc][nr] <- op(B) rows [p0, p0 + kc), columns [j0, j0 + nc),
 * read in B's memory order as pack_a_block does. */
void lfs_gemm_pack_matrix(const void *ctx, float *pb, int nr, int p0, int kc, int j0, int nc) {
  const lfs_gemm_matrix *mb = ctx;
  const int tb = mb->tb, ldb = mb->ldb;
  const float *b = tb ? mb->b + (size_t)j0 * ldb + p0 : mb->b + (size_t)p0 * ldb + j0;
  for (int jp = 0; jp < nc; jp += nr, pb += (size_t)nr * kc) {
    const int cols = nc - jp < nr ? nc - jp : nr;
    if (!tb) {
      for (int p = 0; p < kc; p++) {
        float *dst = pb + (size_t)p * nr;
        const float *src = b + (size_t)p * ldb + jp;
        for (int j = 0; j < cols; j++) dst[j] = src[j]; /* 32 floats: a call costs more */
        for (int j = cols; j < nr; j++) dst[j] = 0.0f;
      }
      continue;
    }
    for (int j = 0; j < cols; j++) {
      const float *src = b + (size_t)(jp + j) * ldb;
      for (int p = 0; p < kc; p++) pb[(size_t)p * nr + j] = src[p];
    }
    for (int j = cols; j < nr; j++)
      for (int p = 0; p < kc; p++) pb[(size_t)p * nr + j] = 0.0f;
  }
}

/* dst [kc][nr] = src[off[p] + idx[t]] (t < cols; zeros in columns [cols, nr)):
 * the packing of an implicit B whose elements are scattered (convolution
 * column matrices). AVX-512 gathers 16 elements per instruction; the result is
 * the same data either way. */
static void pack_gather_portable(float *dst, int nr, int kc, const float *src, const size_t *off,
                                 const int32_t *idx, int cols) {
  for (int p = 0; p < kc; p++, dst += nr) {
    const float *row = src + off[p];
    for (int t = 0; t < cols; t++) dst[t] = row[idx[t]];
    for (int t = cols; t < nr; t++) dst[t] = 0.0f;
  }
}

#ifdef LFS_SGEMM_X86
__attribute__((target("avx512f"))) static void pack_gather_avx512(float *dst, int nr, int kc,
                                                                  const float *src, const size_t *off,
                                                                  const int32_t *idx, int cols) {
  if (nr % 16) {
    pack_gather_portable(dst, nr, kc, src, off, idx, cols);
    return;
  }
  enum { max_vectors = 4 };
  __m512i vidx[max_vectors];
  __mmask16 mask[max_vectors];
  const int vectors = nr / 16 < max_vectors ? nr / 16 : max_vectors;
  for (int v = 0; v < vectors; v++) {
    const int left = cols - 16 * v;
    mask[v] = left >= 16 ? 0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1u);
    vidx[v] = _mm512_maskz_loadu_epi32(mask[v], idx + 16 * v);
  }
  for (int p = 0; p < kc; p++, dst += nr) {
    const float *row = src + off[p];
    for (int v = 0; v < vectors; v++)
      _mm512_storeu_ps(dst + 16 * v,
                       _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mask[v], vidx[v], row, 4));
  }
}
#endif

void lfs_cpu_pack_gather(float *dst, int nr, int kc, const float *src, const size_t *off,
                         const int32_t *idx, int cols) {
#ifdef LFS_SGEMM_X86
  static int has_avx512 = -1;
  if (has_avx512 < 0) has_avx512 = __builtin_cpu_supports("avx512f") != 0;
  if (has_avx512 && nr <= 64) {
    pack_gather_avx512(dst, nr, kc, src, off, idx, cols);
    return;
  }
#endif
  pack_gather_portable(dst, nr, kc, src, off, idx, cols);
}

/* C block [mc, nc] from packed panels. */
static void macro_kernel(const sgemm_arch *ar, int mc, int nc, int kc, const float *pa,
                         const float *pb, float alpha, float beta, float *c, int ldc) {
  const int mr = ar->mr, nr = ar->nr;
  for (int j0 = 0; j0 < nc; j0 += nr) {
    const float *bp = pb + (size_t)(j0 / nr) * nr * kc;
    const int cols = nc - j0 < nr ? nc - j0 : nr;
    for (int i0 = 0; i0 < mc; i0 += mr) {
      const float *ap = pa + (size_t)(i0 / mr) * mr * kc;
      const int rows = mc - i0 < mr ? mc - i0 : mr;
      ar->kernel(kc, ap, bp, c + (size_t)i0 * ldc + j0, ldc, alpha, beta, rows, cols);
    }
  }
}

static void scale_c(int m, int n, float beta, float *c, int ldc) {
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[(size_t)i * ldc + j];
}

void lfs_cpu_sgemm_serial_b(int ta, int m, int n, int k, float alpha, const float *a, int lda,
                            const lfs_gemm_b *b, float beta, float *c, int ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0.0f) {
    scale_c(m, n, beta, c, ldc);
    return;
  }
  const sgemm_arch *ar = arch();
  const pack_buffers *bufs = thread_pack_buffers();
  float *pa = bufs->a, *pb = bufs->b;
  for (int j0 = 0; j0 < n; j0 += nc_block) {
    const int nc = n - j0 < nc_block ? n - j0 : nc_block;
    for (int p0 = 0; p0 < k; p0 += kc_block) {
      const int kc = k - p0 < kc_block ? k - p0 : kc_block;
      b->pack(b->ctx, pb, ar->nr, p0, kc, b->j_offset + j0, nc);
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

void lfs_cpu_sgemm_serial(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                          const float *b, int ldb, float beta, float *c, int ldc) {
  const lfs_gemm_matrix mb = {tb, ldb, b};
  const lfs_gemm_b src = {lfs_gemm_pack_matrix, &mb, 0};
  lfs_cpu_sgemm_serial_b(ta, m, n, k, alpha, a, lda, &src, beta, c, ldc);
}
