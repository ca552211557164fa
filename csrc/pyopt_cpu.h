/* The whole C ABI of pyopt._cpu.  build.py hands this file (less the preprocessor lines) to cffi's cdef, so it
 * must stay plain declarations: no macros with arguments, no includes below the guard.
 *
 * Conventions shared by every entry point:
 *  - Multi-tensor: arrays of n_tensors data pointers (void *, cast to the dtype named by the _f32/_f64 suffix)
 *    and an array of n_tensors element counts (int64).  One call runs one parallel region over all tensors.
 *  - Updates are in place.  Pointers of one tensor must not overlap (the Python layer checks this).
 *  - isa: PYOPT_ISA_AUTO picks AVX2+FMA when the CPU has it; BASELINE / AVX2 force one variant (tests use both).
 *  - Return 0 on success, PYOPT_ERR_ISA when the requested ISA cannot run on this CPU (nothing is written then).
 *  - Scalars that depend on the step are computed by the caller in float64, one per tensor.
 */
#ifndef PYOPT_CPU_H
#define PYOPT_CPU_H
#include <stdint.h>

enum { PYOPT_ISA_AUTO = 0, PYOPT_ISA_BASELINE = 1, PYOPT_ISA_AVX2 = 2 };
enum { PYOPT_OK = 0, PYOPT_ERR_ISA = -1 };
enum { PYOPT_DECAY_NONE = 0, PYOPT_DECAY_L2 = 1, PYOPT_DECAY_DECOUPLED = 2 };

/* ---- runtime ---- */
int pyopt_cpu_has_avx2(void);
int pyopt_max_threads(void);
void pyopt_set_num_threads(int n);
void pyopt_release_thread_pool(void);
/* the slice of a concatenated index space that thread tid of n_threads takes (exposed for tests) */
void pyopt_thread_slice(int64_t total, int64_t n_threads, int64_t tid, int64_t *lo, int64_t *hi);
/* 1 and the first overlapping pair of byte ranges (ptr[k], nbytes[k]) in *first < *second; 0 if none; -1 no memory */
int pyopt_find_overlap(int64_t n, void **ptr, const int64_t *nbytes, int64_t *first, int64_t *second);

/* ---- Adam / AdamW (adam.c) ---- */
typedef struct {
    double beta1, beta2, eps;
    double weight_decay;   /* L2: g += weight_decay * p */
    double decay_factor;   /* decoupled: p *= decay_factor (= 1 - lr * weight_decay) */
    int decay;             /* PYOPT_DECAY_* */
    int amsgrad;
    int maximize;
} pyopt_adam_hparams;

int pyopt_adam_step_f32(int64_t n_tensors, void **param, void **grad, void **exp_avg, void **exp_avg_sq,
                        void **max_exp_avg_sq, const int64_t *numel, const double *step_size,
                        const double *bias_correction2_sqrt, const pyopt_adam_hparams *hp, int isa);
int pyopt_adam_step_f64(int64_t n_tensors, void **param, void **grad, void **exp_avg, void **exp_avg_sq,
                        void **max_exp_avg_sq, const int64_t *numel, const double *step_size,
                        const double *bias_correction2_sqrt, const pyopt_adam_hparams *hp, int isa);

/* ---- SGD (sgd.c) ---- */
typedef struct {
    double lr, momentum, dampening;
    double weight_decay;   /* L2: g += weight_decay * p; skipped entirely when 0 */
    int nesterov;          /* only read when momentum != 0 */
    int maximize;
} pyopt_sgd_hparams;

/* momentum_buffer may be NULL when hp->momentum == 0.  first_step[t] != 0: tensor t has no buffer yet, and this
 * step sets it to the gradient (PyTorch's clone) instead of reading it; may be NULL when momentum == 0. */
int pyopt_sgd_step_f32(int64_t n_tensors, void **param, void **grad, void **momentum_buffer, const int64_t *numel,
                       const uint8_t *first_step, const pyopt_sgd_hparams *hp, int isa);
int pyopt_sgd_step_f64(int64_t n_tensors, void **param, void **grad, void **momentum_buffer, const int64_t *numel,
                       const uint8_t *first_step, const pyopt_sgd_hparams *hp, int isa);

/* ---- Adagrad (adagrad.c) ---- */
typedef struct {
    double weight_decay;   /* L2: g += weight_decay * p; skipped entirely when 0 */
    double eps;
    int maximize;
} pyopt_adagrad_hparams;

/* clr[t] = lr / (1 + (step_t - 1) * lr_decay), tensor t's learning rate this step. */
int pyopt_adagrad_step_f32(int64_t n_tensors, void **param, void **grad, void **state_sum, const int64_t *numel,
                           const double *clr, const pyopt_adagrad_hparams *hp, int isa);
int pyopt_adagrad_step_f64(int64_t n_tensors, void **param, void **grad, void **state_sum, const int64_t *numel,
                           const double *clr, const pyopt_adagrad_hparams *hp, int isa);

/* ---- RMSprop (rmsprop.c) ---- */
typedef struct {
    double lr, alpha, eps;
    double weight_decay;   /* L2: g += weight_decay * p; skipped entirely when 0 */
    double momentum;       /* > 0: momentum_buffer is used */
    int centered;          /* grad_avg is used */
    int maximize;
} pyopt_rmsprop_hparams;

/* grad_avg may be NULL unless centered; momentum_buffer may be NULL unless momentum > 0. */
int pyopt_rmsprop_step_f32(int64_t n_tensors, void **param, void **grad, void **square_avg, void **grad_avg,
                           void **momentum_buffer, const int64_t *numel, const pyopt_rmsprop_hparams *hp, int isa);
int pyopt_rmsprop_step_f64(int64_t n_tensors, void **param, void **grad, void **square_avg, void **grad_avg,
                           void **momentum_buffer, const int64_t *numel, const pyopt_rmsprop_hparams *hp, int isa);

/* ---- bandwidth probes (bandwidth.c): the roofline for bench and track ---- */
void pyopt_probe_triad_f32(float *a, const float *b, const float *c, float s, int64_t n);
void pyopt_probe_rw43_f32(float *p, const float *g, float *m, float *v, float s, int64_t n);

/* ---- norms: shared conventions (layer_norm.c, rms_norm.c, batch_norm.c) ----
 * Single arrays, C-contiguous, of the dtype named by the suffix; weight/bias NULL means absent (1 and 0).
 * Outputs must not overlap inputs (the Python layer checks).  Forward statistics accumulate in float64 for every
 * dtype; float32 backward sums run in float32 chunks (<= 128 elements, <= 16 rows) added into float64.
 * Results are bitwise the same for any thread count.  PYOPT_ERR_NO_MEMORY: a workspace malloc failed (nothing
 * was written then). */
/* The last-level cache size the norm kernels plan with (default: read from sysfs; set a value >= 0 to override,
 * -1 to go back to the default).  Norm calls touching more than half of it store their outputs with
 * non-temporal stores; BatchNorm runs channel by channel when a channel's data fits in a quarter of it.  Only
 * the speed depends on it, and for BatchNorm the order of the statistics' sums (never the thread count). */
int64_t pyopt_cache_bytes(void);
void pyopt_set_cache_bytes(int64_t bytes);
/* bytes of runs per row the BatchNorm backward's channel path takes at once (0: one channel); set: -1 = default */
int64_t pyopt_bn_group_bytes(void);
void pyopt_set_bn_group_bytes(int64_t bytes);
int pyopt_stream_outputs(int64_t bytes_touched);

enum { PYOPT_ERR_NO_MEMORY = -2 };

/* ---- LayerNorm (layer_norm.c) ----
 * x, y, dy, dx: [rows][cols]; weight, bias, dweight, dbias: [cols]; mean, rstd: [rows]. */
int pyopt_layer_norm_forward_f32(int64_t rows, int64_t cols, const float *x, const float *weight,
                                 const float *bias, double eps, float *y, float *mean, float *rstd, int isa);
int pyopt_layer_norm_forward_f64(int64_t rows, int64_t cols, const double *x, const double *weight,
                                 const double *bias, double eps, double *y, double *mean, double *rstd, int isa);
int pyopt_layer_norm_backward_f32(int64_t rows, int64_t cols, const float *dy, const float *x,
                                  const float *weight, const float *mean, const float *rstd, float *dx,
                                  float *dweight, float *dbias, int isa);
int pyopt_layer_norm_backward_f64(int64_t rows, int64_t cols, const double *dy, const double *x,
                                  const double *weight, const double *mean, const double *rstd, double *dx,
                                  double *dweight, double *dbias, int isa);

/* ---- RMSNorm (rms_norm.c) ----
 * x, y, dy, dx: [rows][cols]; weight, dweight: [cols]; rstd: [rows]. */
int pyopt_rms_norm_forward_f32(int64_t rows, int64_t cols, const float *x, const float *weight, double eps,
                               float *y, float *rstd, int isa);
int pyopt_rms_norm_forward_f64(int64_t rows, int64_t cols, const double *x, const double *weight, double eps,
                               double *y, double *rstd, int isa);
int pyopt_rms_norm_backward_f32(int64_t rows, int64_t cols, const float *dy, const float *x, const float *weight,
                                const float *rstd, float *dx, float *dweight, int isa);
int pyopt_rms_norm_backward_f64(int64_t rows, int64_t cols, const double *dy, const double *x,
                                const double *weight, const double *rstd, double *dx, double *dweight, int isa);

/* ---- BatchNorm (batch_norm.c) ----
 * x, y, dy, dx: [outer][channels][inner] (NCHW: outer = N, inner = H*W; channels-last: inner = 1);
 * weight, bias, running_*, save_*, dweight, dbias: [channels].  use_batch_stats: normalize with the batch's
 * statistics (and, if running_mean is not NULL, update running_mean/running_var with weight `momentum`, the
 * caller's resolved factor); else with the running stats.  outer * inner must be > 1 when updating. */
int pyopt_batch_norm_forward_f32(int64_t outer, int64_t channels, int64_t inner, const float *x,
                                 const float *weight, const float *bias, float *running_mean, float *running_var,
                                 int use_batch_stats, double momentum, double eps, float *y, float *save_mean,
                                 float *save_rstd, int isa);
int pyopt_batch_norm_forward_f64(int64_t outer, int64_t channels, int64_t inner, const double *x,
                                 const double *weight, const double *bias, double *running_mean,
                                 double *running_var, int use_batch_stats, double momentum, double eps, double *y,
                                 double *save_mean, double *save_rstd, int isa);
int pyopt_batch_norm_backward_f32(int64_t outer, int64_t channels, int64_t inner, const float *dy,
                                  const float *x, const float *weight, const float *save_mean,
                                  const float *save_rstd, int use_batch_stats, float *dx, float *dweight,
                                  float *dbias, int isa);
int pyopt_batch_norm_backward_f64(int64_t outer, int64_t channels, int64_t inner, const double *dy,
                                  const double *x, const double *weight, const double *save_mean,
                                  const double *save_rstd, int use_batch_stats, double *dx, double *dweight,
                                  double *dbias, int isa);

#endif
