/* backend.h: the compute backend interface, a table of functions plus a context.
 *
 * Every tensor pointer is in the backend's memory (host for cpu, device for
 * cuda). Layouts: activations NCHW, conv weights (out, in/groups, kh, kw), linear
 * weights (out, in), all row-major float32. Outputs come first in argument lists;
 * every backward function ACCUMULATES into its gradient outputs (dx += ..., dw += ...),
 * except where an lfs_grad_write of LFS_GRAD_SET says that it writes dx first;
 * a NULL gradient output is skipped. */
#ifndef LFS_BACKEND_H
#define LFS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "lfs/head.h"
#include "lfs/philox.h"

typedef struct lfs_backend lfs_backend;

typedef struct {
  int n, in_c, in_h, in_w;   /* input */
  int out_c, out_h, out_w;   /* output (derived by lfs_conv_desc_init) */
  int kh, kw, stride, pad, groups;
  int has_bias;
} lfs_conv_desc;

/* Fills out_h/out_w; returns -1 if the geometry is impossible. */
int lfs_conv_desc_init(lfs_conv_desc *d);
/* 1 if a and b are the same convolution (every field equal). */
int lfs_conv_desc_same(const lfs_conv_desc *a, const lfs_conv_desc *b);

typedef struct {
  int n, c, spatial; /* input viewed as [n, c, spatial] (spatial = H*W, 1 for BN1d) */
} lfs_bn_desc;

/* How a backward writes its input gradient dx: LFS_GRAD_ADD accumulates
 * (dx += g); LFS_GRAD_SET is for dx's only writer, which then need not be zeroed
 * first: dx = 0 + g, without reading dx (the CPU's bits are those of zeroing and
 * adding; a GPU library may give -0 for +0). */
typedef enum { LFS_GRAD_ADD = 0, LFS_GRAD_SET = 1 } lfs_grad_write;

/* How batch norm forms its statistics (lfs_backend_ops.batchnorm_stats). */
typedef struct {
  int training; /* 0: eval mode, the running statistics */
  double eps, momentum;
  /* Synchronised BN: sums buf [count] (host doubles) over the group, in place;
   * NULL: this rank's batch alone, and nothing leaves the device. */
  void (*group_sum)(double *buf, int count, void *ctx);
  void *group_ctx;
} lfs_bn_stats_cfg;

typedef struct {
  const char *name;
  /* memory */
  float *(*alloc)(lfs_backend *be, size_t count); /* zeroed */
  void (*free)(lfs_backend *be, float *p);
  void (*upload)(lfs_backend *be, float *dst, const float *src /* host */, size_t count);
  void (*download)(lfs_backend *be, float *dst /* host */, const float *src, size_t count);
  void (*fill)(lfs_backend *be, float *x, float value, size_t count);
  /* y += alpha * x */
  void (*axpy)(lfs_backend *be, float *y, float alpha, const float *x, size_t count);
  /* Host memory for staging copies to and from this backend (page-locked on a
   * GPU, so that transfers run at full speed); not zeroed. */
  float *(*host_alloc)(lfs_backend *be, size_t count);
  void (*host_free)(lfs_backend *be, float *p);
  /* upload on a copy stream: it overlaps the work issued since the previous
   * upload_async (which must not use dst: a double buffer, alternated per
   * call, is safe), waits for the work issued before that, and the ops issued
   * after it see dst filled. src (staging memory) must stay unchanged until a
   * later download, head_loss or synchronize has returned. */
  void (*upload_async)(lfs_backend *be, float *dst, const float *src /* host */, size_t count);

  /* y [n, out_c, out_h, out_w] = conv(x [n, in_c, in_h, in_w], w [out_c, in_c/groups, kh, kw]) + b [out_c] */
  void (*conv2d_forward)(lfs_backend *be, const lfs_conv_desc *d, float *y, const float *x,
                         const float *w, const float *b);
  void (*conv2d_backward)(lfs_backend *be, const lfs_conv_desc *d, float *dx,
                          lfs_grad_write dx_write, float *dw, float *db, const float *dy,
                          const float *x, const float *w);

  /* Batch normalisation over x viewed as [n, c, spatial]. The per-channel
   * statistics stay in backend memory; only synchronised BN (cfg->group_sum) takes
   * the sums to the host, between the phases, to add them up over the group.
   * Training mode: mean [c] and invstd [c] = 1 / sqrt(var + eps) of x (biased
   * variance about the mean as rounded to float, sums in double: the CPU takes
   * two passes, the mean then the squared deviations; CUDA one, of x less the
   * running mean and its square), and the running averages run_mean, run_var [c]
   * moved by cfg->momentum towards the mean and the unbiased variance. Returns the
   * number of values per channel (the group's). Eval mode: mean = run_mean,
   * invstd from run_var, x unread; returns 0. */
  double (*batchnorm_stats)(lfs_backend *be, const lfs_bn_desc *d, const lfs_bn_stats_cfg *cfg,
                            float *mean, float *invstd, float *run_mean, float *run_var,
                            const float *x);
  /* y = (x - mean) * invstd * gamma + beta */
  void (*batchnorm_apply)(lfs_backend *be, const lfs_bn_desc *d, float *y, const float *x,
                          const float *mean, const float *invstd, const float *gamma,
                          const float *beta);
  /* Backward's per-channel terms. Local sums: dbeta += sum of dy, dgamma += sum
   * of dy * (x - mean) * invstd (NULL: skipped). Then mean_dy, mean_dy_xhat [c] =
   * those sums (over the group with cfg->group_sum) / count, the count batchnorm_stats
   * returned; zero in eval mode. */
  void (*batchnorm_grad_terms)(lfs_backend *be, const lfs_bn_desc *d, const lfs_bn_stats_cfg *cfg,
                               double count, float *dgamma, float *dbeta, float *mean_dy,
                               float *mean_dy_xhat, const float *dy, const float *x,
                               const float *mean, const float *invstd);
  /* dx += gamma * invstd * (dy - mean_dy - xhat * mean_dy_xhat); both means are 0 in eval mode */
  void (*batchnorm_backward_apply)(lfs_backend *be, const lfs_bn_desc *d, float *dx,
                                   lfs_grad_write dx_write, const float *dy, const float *x,
                                   const float *gamma,
                                   const float *mean, const float *invstd, const float *mean_dy,
                                   const float *mean_dy_xhat);

  /* y = x > 0 ? x : alpha[c] * x, x viewed as [n, c, spatial] */
  void (*prelu_forward)(lfs_backend *be, int n, int c, int spatial, float *y, const float *x,
                        const float *alpha);
  void (*prelu_backward)(lfs_backend *be, int n, int c, int spatial, float *dx,
                         lfs_grad_write dx_write, float *dalpha, const float *dy, const float *x,
                         const float *alpha);

  /* y [n, out] = x [n, in] w^T [in, out] + b [out] */
  void (*linear_forward)(lfs_backend *be, int n, int in, int out, float *y, const float *x,
                         const float *w, const float *b);
  void (*linear_backward)(lfs_backend *be, int n, int in, int out, float *dx, float *dw, float *db,
                          const float *dy, const float *x, const float *w);

  /* y = a + b */
  void (*add_forward)(lfs_backend *be, float *y, const float *a, const float *b, size_t count);

  /* Inverted dropout: element i is kept iff uniform(rng, i) >= p, then scaled by 1/(1-p).
   * The mask is recomputed from rng in backward, never stored. */
  void (*dropout_forward)(lfs_backend *be, float *y, const float *x, size_t count, float p,
                          const lfs_rng *rng);
  void (*dropout_backward)(lfs_backend *be, float *dx, const float *dy, size_t count, float p,
                           const lfs_rng *rng);

  /* Row-wise L2 normalisation of x [rows, cols]: y = x / max(|x|, eps); norms [rows] saved. */
  void (*l2norm_forward)(lfs_backend *be, int rows, int cols, float eps, float *y, float *norms,
                         const float *x);
  void (*l2norm_backward)(lfs_backend *be, int rows, int cols, float eps, float *dx,
                          const float *dy, const float *y, const float *norms);

  /* The cosine head's mean loss and gradients, lfs_head_loss of lfs/head.h:
   * x [B, D], w [K, D] and the accumulated dx, dw in backend memory, labels [B]
   * on the host. */
  double (*head_loss)(lfs_backend *be, const lfs_head_cfg *cfg, int B, int D, int K, float *dx,
                      float *dw, lfs_head_stats *stats, const float *x, const float *w,
                      const int32_t *labels);
  /* SGD with momentum on w [n] (lfs_sgd_step_raw of lfs/optim.h):
   * d = g + weight_decay w; v = momentum v + d; w -= lr v. */
  void (*sgd_step)(lfs_backend *be, float *w, float *v, const float *g, size_t n, float lr,
                   float momentum, float weight_decay);
  /* Waits until the work issued so far has finished (NULL where ops are synchronous). */
  void (*synchronize)(lfs_backend *be);
} lfs_backend_ops;

struct lfs_backend {
  const lfs_backend_ops *ops;
  void *ctx;
  int device; /* device ordinal, -1 for the host */
};

/* What the backend's next allocations are for ("the output and gradient of node
 * 12 (conv2d layer1.0.conv1, 128x64x112x112)"), named when one fails for want of
 * memory; set by the code that allocates, NULL to clear. One per process. */
void lfs_backend_set_purpose(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *lfs_backend_purpose(void);
/* A backend's allocation of `bytes` failed: stops this rank with a user error
 * (exit 2) naming the device, the size, `what` (NULL: the purpose above), the
 * reason, and the memory left, and saying what needs less. */
void lfs_backend_out_of_memory(const char *device, size_t bytes, const char *what,
                               const char *reason, double free_mib, double total_mib)
    __attribute__((noreturn));

/* The CPU reference backend (always present). */
lfs_backend *lfs_backend_cpu(void);
/* The CPU kernels presented as a device (device 0), accepting only their own
 * memory: code that runs a GPU through host mirrors and copies takes that path
 * with it, for tests (src/backend/instrument.c). */
lfs_backend *lfs_backend_cpu_staged(void);
/* With LFS_PROFILE set (not 0): `be` wrapped so that each op is timed between
 * synchronisations (one backend per process); otherwise `be` itself. */
lfs_backend *lfs_backend_profiled(lfs_backend *be);
void lfs_backend_profile_reset(void);
/* Prints the times per op since the last reset, per step of `steps`, one line
 * at a time through out; 0 when nothing is profiled. */
int lfs_backend_profile_report(long steps, void (*out)(const char *line, void *user), void *user);
/* The GEMM the CPU backend computes with ("lfsearch packed SGEMM, avx512
 * micro-kernel"), and the OpenBLAS that `lfsearch bench` compares it with
 * ("OpenBLAS 0.3.21 (Haswell kernels)"). */
const char *lfs_cpu_gemm_describe(void);
const char *lfs_cpu_blas_describe(void);
/* Pins the GEMM micro-kernel by name ("avx512", "avx2", "portable"; NULL: the
 * best this CPU runs). -1 if this CPU cannot run it. Results differ between
 * kernels in the last bits, so ranks that must agree bit for bit pin one. */
int lfs_cpu_gemm_select(const char *name);
/* The instruction set the CPU backend's other kernels (convolution packing,
 * batch norm, pointwise) were built for: "x86-64-v4", "x86-64-v3" or
 * "baseline". They all compute the same bits; lfs_cpu_isa_select picks one by
 * name (NULL: the best this CPU runs; -1 if it cannot run it), for tests and
 * benchmarks. */
int lfs_cpu_isa_select(const char *name);
const char *lfs_cpu_isa_name(void);
/* A backend by name ("cpu", "cuda", "cpu-staged"); NULL if it is not built in
 * or, for cuda, no GPU is usable. */
lfs_backend *lfs_backend_get(const char *name);
/* The CUDA backend (built with --with-cuda) on the GPU of this rank's node-local
 * index modulo the node's GPUs, created on first use. NULL, with the reason in
 * why, where CUDA is not built in or no GPU is usable. */
lfs_backend *lfs_backend_cuda(char *why, size_t whylen);
/* TF32 tensor-core math in the CUDA backend's GEMMs and convolutions: on by
 * default, LFS_CUDA_TF32=0 turns it off for a process; parity tests turn it off. */
void lfs_cuda_set_tf32(lfs_backend *be, int on);
int lfs_cuda_tf32(lfs_backend *be);
/* Convolutions through im2col + cuBLAS instead of cuDNN (also LFS_CUDA_CONV=gemm):
 * the fallback where cuDNN has no algorithm, and a second opinion for tests. */
void lfs_cuda_set_conv_gemm(lfs_backend *be, int on);
/* Convolutions through cuDNN's graph API, where it has an engine for a pass
 * (also LFS_CUDA_CONV=graph); lfs_cuda_conv_graph_fallbacks counts the passes
 * it had none for and the calls whose tensors broke a plan's alignment, which
 * took cuDNN's legacy entry points. */
void lfs_cuda_set_conv_graph(lfs_backend *be, int on);
int lfs_cuda_conv_graph_fallbacks(lfs_backend *be);

/* Accelerator discovery for `lfsearch info --devices`. */
typedef struct {
  char name[128];
  int ordinal;
  int cc_major, cc_minor;
  double memory_gib;
  int multiprocessors;
} lfs_device_info;

/* Fills up to max devices; returns how many were found (0 without a GPU or without
 * CUDA support). `why`, when non-NULL, receives a reason when 0 are found. */
int lfs_devices_list(lfs_device_info *out, int max, char *why, size_t whylen);
/* Version line of the compiled-in accelerator runtime ("CUDA runtime 13.0, cuDNN 9.19.0"),
 * or "none". */
const char *lfs_devices_runtime(void);

#endif
