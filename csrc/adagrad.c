/* Adagrad (dense gradients): one fused pass per step, in place.
 *
 * Per element, with g the gradient (negated when maximize) and the per-tensor scalar
 * clr = lr / (1 + (step - 1) * lr_decay) computed by the caller in float64:
 *     weight_decay != 0:  g <- g + weight_decay * p     (skipped when 0, so inf params give no NaN)
 *     s <- s + g * g
 *     p <- p + (-clr * g) / (sqrt(s) + eps)
 * which is torch.optim.Adagrad's single-tensor formula (addcmul_, sqrt().add_(eps), addcdiv_), operation for
 * operation.
 * Bytes per element (fp32): read p, g, s and write p, s = 20.
 *
 * This file is its own template: instantiate.h includes it once for float and once for double (T, SUFFIX). */
#ifndef PYOPT_TEMPLATE
#include "common.h"

typedef struct {
    void **param, **grad, **state_sum;
    const double *clr;
    const pyopt_adagrad_hparams *hp;
} adagrad_ctx;

#define PYOPT_TEMPLATE_FILE "adagrad.c"
#include "instantiate.h"

#else /* ---------------- per-dtype part ---------------- */

/* The update rule, written once; decay is a compile-time constant at every call site. */
PYOPT_INLINE void SUFFIX(adagrad_update)(T *restrict p, const T *restrict grad, T *restrict s, int64_t i, int flip,
                                         T weight_decay, T neg_clr, T eps, const int decay)
{
    T g = SUFFIX(pyopt_flip_sign)(grad[i], flip);
    T param = p[i];
    if (decay) g = g + weight_decay * param;
    T sum = s[i] + g * g;
    s[i] = sum;
    T std = sqrt(sum) + eps;
    p[i] = param + neg_clr * g / std;
}

PYOPT_INLINE void SUFFIX(adagrad_loop)(const void *vctx, int64_t t, int64_t begin, int64_t end, const int decay)
{
    const adagrad_ctx *ctx = (const adagrad_ctx *)vctx;
    const pyopt_adagrad_hparams *hp = ctx->hp;
    T *restrict p = (T *)ctx->param[t];
    const T *restrict g = (const T *)ctx->grad[t];
    T *restrict s = (T *)ctx->state_sum[t];
    const int flip = hp->maximize != 0;
    const T weight_decay = (T)hp->weight_decay, eps = (T)hp->eps;
    const T neg_clr = (T)(-ctx->clr[t]);
#pragma omp simd
    for (int64_t i = begin; i < end; i++)
        SUFFIX(adagrad_update)(p, g, s, i, flip, weight_decay, neg_clr, eps, decay);
}

#define ADAGRAD_VARIANT(decay)                                                                                \
    static void SUFFIX(adagrad_range_base_##decay)(const void *c, int64_t t, int64_t b, int64_t e)              \
    {                                                                                                         \
        SUFFIX(adagrad_loop)(c, t, b, e, decay);                                                              \
    }                                                                                                         \
    PYOPT_TARGET_AVX2 static void SUFFIX(adagrad_range_avx2_##decay)(const void *c, int64_t t, int64_t b,       \
                                                                     int64_t e)                               \
    {                                                                                                         \
        SUFFIX(adagrad_loop)(c, t, b, e, decay);                                                              \
    }
ADAGRAD_VARIANT(0)
ADAGRAD_VARIANT(1)
#undef ADAGRAD_VARIANT

/* [isa == AVX2][weight_decay != 0] */
static const pyopt_range_fn SUFFIX(adagrad_ranges)[2][2] = {
    {SUFFIX(adagrad_range_base_0), SUFFIX(adagrad_range_base_1)},
    {SUFFIX(adagrad_range_avx2_0), SUFFIX(adagrad_range_avx2_1)},
};

int SUFFIX(pyopt_adagrad_step)(int64_t n_tensors, void **param, void **grad, void **state_sum, const int64_t *numel,
                               const double *clr, const pyopt_adagrad_hparams *hp, int isa)
{
    isa = pyopt_resolve_isa(isa);
    if (isa < 0) return PYOPT_ERR_ISA;
    adagrad_ctx ctx = {param, grad, state_sum, clr, hp};
    pyopt_range_fn fn = SUFFIX(adagrad_ranges)[isa == PYOPT_ISA_AVX2][hp->weight_decay != 0];
    pyopt_for_each_range(&ctx, n_tensors, numel, fn);
    return PYOPT_OK;
}

#endif
