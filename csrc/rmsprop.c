/* RMSprop, plain or centered, with or without momentum: one fused pass per step, in place.
 *
 * Per element, with g the gradient (negated when maximize):
 *     weight_decay != 0:  g <- g + weight_decay * p     (skipped when 0, so inf params give no NaN)
 *     s <- s * alpha + (1 - alpha) * g * g
 *     centered:           a <- lerp(a, g, 1 - alpha),  r = sqrt(s - a * a) + eps
 *     otherwise:          r = sqrt(s) + eps
 *     momentum > 0:       b <- b * momentum + g / r,   p <- p + (-lr) * b
 *     otherwise:          p <- p + (-lr * g) / r
 * which is torch.optim.RMSprop's single-tensor formula, operation for operation.
 * Bytes per element (fp32): read p, g, s and write p, s = 20; +8 for grad_avg (centered), +8 for momentum_buffer.
 *
 * This file is its own template: instantiate.h includes it once for float and once for double (T, SUFFIX). */
#ifndef PYOPT_TEMPLATE
#include "common.h"

typedef struct {
    void **param, **grad, **square_avg, **grad_avg, **momentum_buffer;
    const pyopt_rmsprop_hparams *hp;
} rmsprop_ctx;

#define PYOPT_TEMPLATE_FILE "rmsprop.c"
#include "instantiate.h"

#else /* ---------------- per-dtype part ---------------- */

/* The update rule, written once; centered, momentum and decay are compile-time constants at every call site. */
PYOPT_INLINE void SUFFIX(rmsprop_update)(T *restrict p, const T *restrict grad, T *restrict s, T *restrict a,
                                         T *restrict b, int64_t i, int flip, T alpha, T one_minus_alpha, T w,
                                         T one_minus_w, int low_w, T eps, T weight_decay, T momentum, T neg_lr,
                                         const int centered, const int has_momentum, const int decay)
{
    T g = SUFFIX(pyopt_flip_sign)(grad[i], flip);
    T param = p[i];
    if (decay) g = g + weight_decay * param;
    T square_avg = s[i] * alpha + one_minus_alpha * g * g;
    s[i] = square_avg;
    T avg;
    if (centered) {
        T grad_avg = PYOPT_LERP(a[i], g, w, one_minus_w, low_w);
        a[i] = grad_avg;
        avg = sqrt(square_avg - grad_avg * grad_avg);
    } else {
        avg = sqrt(square_avg);
    }
    avg = avg + eps;
    if (has_momentum) {
        T buf = b[i] * momentum + g / avg;
        b[i] = buf;
        p[i] = param + neg_lr * buf;
    } else {
        p[i] = param + neg_lr * g / avg;
    }
}

PYOPT_INLINE void SUFFIX(rmsprop_loop)(const void *vctx, int64_t t, int64_t begin, int64_t end, const int centered,
                                       const int has_momentum, const int decay)
{
    const rmsprop_ctx *ctx = (const rmsprop_ctx *)vctx;
    const pyopt_rmsprop_hparams *hp = ctx->hp;
    T *restrict p = (T *)ctx->param[t];
    const T *restrict g = (const T *)ctx->grad[t];
    T *restrict s = (T *)ctx->square_avg[t];
    T *restrict a = centered ? (T *)ctx->grad_avg[t] : NULL;
    T *restrict b = has_momentum ? (T *)ctx->momentum_buffer[t] : NULL;
    const int flip = hp->maximize != 0;
    const T alpha = (T)hp->alpha, one_minus_alpha = (T)(1.0 - hp->alpha);
    /* lerp's weight is 1 - alpha rounded to T, as the reference (and ATen) round a Python scalar weight */
    const T w = one_minus_alpha, one_minus_w = (T)1 - w;
    const int low_w = fabs(w) < (T)0.5;
    const T eps = (T)hp->eps, weight_decay = (T)hp->weight_decay, momentum = (T)hp->momentum;
    const T neg_lr = (T)(-hp->lr);
#pragma omp simd
    for (int64_t i = begin; i < end; i++)
        SUFFIX(rmsprop_update)(p, g, s, a, b, i, flip, alpha, one_minus_alpha, w, one_minus_w, low_w, eps,
                               weight_decay, momentum, neg_lr, centered, has_momentum, decay);
}

#define RMSPROP_VARIANT(c, m, d)                                                                              \
    static void SUFFIX(rmsprop_range_base_##c##m##d)(const void *x, int64_t t, int64_t b, int64_t e)            \
    {                                                                                                         \
        SUFFIX(rmsprop_loop)(x, t, b, e, c, m, d);                                                            \
    }                                                                                                         \
    PYOPT_TARGET_AVX2 static void SUFFIX(rmsprop_range_avx2_##c##m##d)(const void *x, int64_t t, int64_t b,     \
                                                                       int64_t e)                             \
    {                                                                                                         \
        SUFFIX(rmsprop_loop)(x, t, b, e, c, m, d);                                                            \
    }
RMSPROP_VARIANT(0, 0, 0)
RMSPROP_VARIANT(0, 0, 1)
RMSPROP_VARIANT(0, 1, 0)
RMSPROP_VARIANT(0, 1, 1)
RMSPROP_VARIANT(1, 0, 0)
RMSPROP_VARIANT(1, 0, 1)
RMSPROP_VARIANT(1, 1, 0)
RMSPROP_VARIANT(1, 1, 1)
#undef RMSPROP_VARIANT

/* [isa == AVX2][centered][momentum > 0][weight_decay != 0] */
#define RMSPROP_TABLE(isa)                                                                                    \
    {{{SUFFIX(rmsprop_range_##isa##_000), SUFFIX(rmsprop_range_##isa##_001)},                                 \
      {SUFFIX(rmsprop_range_##isa##_010), SUFFIX(rmsprop_range_##isa##_011)}},                                \
     {{SUFFIX(rmsprop_range_##isa##_100), SUFFIX(rmsprop_range_##isa##_101)},                                 \
      {SUFFIX(rmsprop_range_##isa##_110), SUFFIX(rmsprop_range_##isa##_111)}}}
static const pyopt_range_fn SUFFIX(rmsprop_ranges)[2][2][2][2] = {RMSPROP_TABLE(base), RMSPROP_TABLE(avx2)};
#undef RMSPROP_TABLE

int SUFFIX(pyopt_rmsprop_step)(int64_t n_tensors, void **param, void **grad, void **square_avg, void **grad_avg,
                               void **momentum_buffer, const int64_t *numel, const pyopt_rmsprop_hparams *hp,
                               int isa)
{
    isa = pyopt_resolve_isa(isa);
    if (isa < 0) return PYOPT_ERR_ISA;
    rmsprop_ctx ctx = {param, grad, square_avg, grad_avg, momentum_buffer, hp};
    pyopt_range_fn fn = SUFFIX(rmsprop_ranges)[isa == PYOPT_ISA_AVX2][hp->centered != 0][hp->momentum > 0]
                                              [hp->weight_decay != 0];
    pyopt_for_each_range(&ctx, n_tensors, numel, fn);
    return PYOPT_OK;
}

#endif
