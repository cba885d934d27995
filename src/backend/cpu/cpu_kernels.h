/* cpu_kernels.h: the CPU backend's per-instruction-set kernels (conv.c,
 * batchnorm.c, pointwise.c), same layouts and accumulate-in-backward contract
 * as lfs_backend_ops. No include guard: cpu_backend.c includes it once per
 * instruction set, with LFS_CPU_K naming that build's symbols. */

void LFS_CPU_K(conv2d_forward)(lfs_backend *be, const lfs_conv_desc *d, float *y, const float *x,
                               const float *w, const float *b);
void LFS_CPU_K(conv2d_backward)(lfs_backend *be, const lfs_conv_desc *d, float *dx,
                                lfs_grad_write dx_write, float *dw, float *db, const float *dy,
                                const float *x, const float *w);

double LFS_CPU_K(batchnorm_stats)(lfs_backend *be, const lfs_bn_desc *d,
                                  const lfs_bn_stats_cfg *cfg, float *mean, float *invstd,
                                  float *run_mean, float *run_var, const float *x);
void LFS_CPU_K(batchnorm_apply)(lfs_backend *be, const lfs_bn_desc *d, float *y, const float *x,
                                const float *mean, const float *invstd, const float *gamma,
                                const float *beta);
void LFS_CPU_K(batchnorm_grad_terms)(lfs_backend *be, const lfs_bn_desc *d,
                                     const lfs_bn_stats_cfg *cfg, double count, float *dgamma,
                                     float *dbeta, float *mean_dy, float *mean_dy_xhat,
                                     const float *dy, const float *x, const float *mean,
                                     const float *invstd);
void LFS_CPU_K(batchnorm_backward_apply)(lfs_backend *be, const lfs_bn_desc *d, float *dx,
                                         lfs_grad_write dx_write, const float *dy, const float *x, const float *gamma,
                                         const float *mean, const float *invstd,
                                         const float *mean_dy, const float *mean_dy_xhat);

void LFS_CPU_K(prelu_forward)(lfs_backend *be, int n, int c, int spatial, float *y, const float *x,
                              const float *alpha);
void LFS_CPU_K(prelu_backward)(lfs_backend *be, int n, int c, int spatial, float *dx,
                               lfs_grad_write dx_write, float *dalpha, const float *dy,
                               const float *x, const float *alpha);
void LFS_CPU_K(linear_forward)(lfs_backend *be, int n, int in, int out, float *y, const float *x,
                               const float *w, const float *b);
void LFS_CPU_K(linear_backward)(lfs_backend *be, int n, int in, int out, float *dx, float *dw,
                                float *db, const float *dy, const float *x, const float *w);
void LFS_CPU_K(add_forward)(lfs_backend *be, float *y, const float *a, const float *b,
                            size_t count);
void LFS_CPU_K(dropout_forward)(lfs_backend *be, float *y, const float *x, size_t count, float p,
                                const lfs_rng *rng);
void LFS_CPU_K(dropout_backward)(lfs_backend *be, float *dx, const float *dy, size_t count, float p,
                                 const lfs_rng *rng);
void LFS_CPU_K(l2norm_forward)(lfs_backend *be, int rows, int cols, float eps, float *y,
                               float *norms, const float *x);
void LFS_CPU_K(l2norm_backward)(lfs_backend *be, int rows, int cols, float eps, float *dx,
                                const float *dy, const float *y, const float *norms);
