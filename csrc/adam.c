/* Adam and AdamW: one fused pass per step, in place.
 *
 * Per element, with g the gradient (negated when maximize), t the tensor's step, and the per-tensor scalars
 * step_size = lr / (1 - beta1^t) and bias_correction2_sqrt = sqrt(1 - beta2^t) computed by the caller:
 *     decoupled (AdamW):  p <- p * (1 - lr * weight_decay)
 *     L2 (Adam):          g <- g + weight_decay * p
 *     m <- lerp(m, g, 1 - beta1)                    (PyTorch's exp_avg.lerp_)
 *     v <- v * beta2 + (1 - beta2) * g * g
 *     amsgrad:            vmax <- max(vmax, v), and vmax replaces v below
 *     p <- p + (-step_size * m) / (sqrt(v) / bias_correction2_sqrt + eps)
 * which is torch.optim.Adam's single-tensor formula, operation for operation.
 * Bytes per element (fp32): read p, g, m, v and write p, m, v = 28 (amsgrad: +8).
 *
 * This file is its own template: instantiate.h includes it once for float and once for double (T, SUFFIX). */
#ifndef PYOPT_TEMPLATE
#include "common.h"

typedef struct {
    void **param, **grad, **exp_avg, **exp_avg_sq, **max_exp_avg_sq;
    const double *step_size, *bias_correction2_sqrt;
    const pyopt_adam_hparams *hp;
} adam_ctx;

#define PYOPT_TEMPLATE_FILE "adam.c"
#include "instantiate.h"

#else /* ---------------- per-dtype part ---------------- */

/* The update rule, written once; decay and amsgrad are compile-time constants at every call site. */
PYOPT_INLINE void SUFFIX(adam_update)(T *restrict p, const T *restrict grad, T *restrict m, T *restrict v,
                                      T *restrict vmax, int64_t i, int flip, T w, T one_minus_w, int low_w,
                                      T beta2, T one_minus_beta2, T weight_decay, T decay_factor, T neg_step_size,
                                      T bc2_sqrt, T eps, const int decay, const int amsgrad)
{
    T g = SUFFIX(pyopt_flip_sign)(grad[i], flip);
    T param = p[i];
    if (decay == PYOPT_DECAY_DECOUPLED) param = param * decay_factor;
    if (decay == PYOPT_DECAY_L2) g = g + weight_decay * param;
    T exp_avg = PYOPT_LERP(m[i], g, w, one_minus_w, low_w);
    T exp_avg_sq = v[i] * beta2 + one_minus_beta2 * g * g;
    m[i] = exp_avg;
    v[i] = exp_avg_sq;
    if (amsgrad) {
        T old = vmax[i];
        /* torch.maximum: NaN in either operand propagates (fmax would drop it) */
        exp_avg_sq = (exp_avg_sq > old || exp_avg_sq != exp_avg_sq) ? exp_avg_sq : old;
        vmax[i] = exp_avg_sq;
    }
    T denom = sqrt(exp_avg_sq) / bc2_sqrt + eps;
    p[i] = param + neg_step_size * exp_avg / denom;
}

PYOPT_INLINE void SUFFIX(adam_loop)(const void *vctx, int64_t t, int64_t begin, int64_t end, const int decay,
                                    const int amsgrad)
{
    const adam_ctx *ctx = (const adam_ctx *)vctx;
    const pyopt_adam_hparams *hp = ctx->hp;
    T *restrict p = (T *)ctx->param[t];
    const T *restrict g = (const T *)ctx->grad[t];
    T *restrict m = (T *)ctx->exp_avg[t];
    T *restrict v = (T *)ctx->exp_avg_sq[t];
    T *restrict vmax = amsgrad ? (T *)ctx->max_exp_avg_sq[t] : NULL;
    const int flip = hp->maximize != 0;
    const T w = (T)(1.0 - hp->beta1), one_minus_w = (T)1 - w;
    const int low_w = fabs(w) < (T)0.5;
    const T beta2 = (T)hp->beta2, one_minus_beta2 = (T)(1.0 - hp->beta2);
    const T weight_decay = (T)hp->weight_decay, decay_factor = (T)hp->decay_factor;
    const T neg_step_size = (T)(-ctx->step_size[t]), bc2_sqrt = (T)ctx->bias_correction2_sqrt[t];
    const T eps = (T)hp->eps;
#pragma omp simd
    for (int64_t i = begin; i < end; i++)
        SUFFIX(adam_update)(p, g, m, v, vmax, i, flip, w, one_minus_w, low_w, beta2, one_minus_beta2,
                            weight_decay, decay_factor, neg_step_size, bc2_sqrt, eps, decay, amsgrad);
}

#define ADAM_VARIANT(decay, amsgrad)                                                                          \
    static void SUFFIX(adam_range_base_##decay##_##amsgrad)(const void *c, int64_t t, int64_t b, int64_t e)     \
    {                                                                                                         \
        SUFFIX(adam_loop)(c, t, b, e, decay, amsgrad);                                                        \
    }                                                                                                         \
    PYOPT_TARGET_AVX2 static void SUFFIX(adam_range_avx2_##decay##_##amsgrad)(const void *c, int64_t t,        \
                                                                              int64_t b, int64_t e)           \
    {                                                                                                         \
        SUFFIX(adam_loop)(c, t, b, e, decay, amsgrad);                                                        \
    }
ADAM_VARIANT(0, 0)
ADAM_VARIANT(0, 1)
ADAM_VARIANT(1, 0)
ADAM_VARIANT(1, 1)
ADAM_VARIANT(2, 0)
ADAM_VARIANT(2, 1)
#undef ADAM_VARIANT

/* [isa == AVX2][decay][amsgrad] */
static const pyopt_range_fn SUFFIX(adam_ranges)[2][3][2] = {
    {{SUFFIX(adam_range_base_0_0), SUFFIX(adam_range_base_0_1)},
     {SUFFIX(adam_range_base_1_0), SUFFIX(adam_range_base_1_1)},
     {SUFFIX(adam_range_base_2_0), SUFFIX(adam_range_base_2_1)}},
    {{SUFFIX(adam_range_avx2_0_0), SUFFIX(adam_range_avx2_0_1)},
     {SUFFIX(adam_range_avx2_1_0), SUFFIX(adam_range_avx2_1_1)},
     {SUFFIX(adam_range_avx2_2_0), SUFFIX(adam_range_avx2_2_1)}},
};

int SUFFIX(pyopt_adam_step)(int64_t n_tensors, void **param, void **grad, void **exp_avg, void **exp_avg_sq,
                            void **max_exp_avg_sq, const int64_t *numel, const double *step_size,
                            const double *bias_correction2_sqrt, const pyopt_adam_hparams *hp, int isa)
{
    isa = pyopt_resolve_isa(isa);
    if (isa < 0) return PYOPT_ERR_ISA;
    adam_ctx ctx = {param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step_size, bias_correction2_sqrt, hp};
    pyopt_range_fn fn = SUFFIX(adam_ranges)[isa == PYOPT_ISA_AVX2][hp->decay][hp->amsgrad != 0];
    pyopt_for_each_range(&ctx, n_tensors, numel, fn);
    return PYOPT_OK;
}

#endif
