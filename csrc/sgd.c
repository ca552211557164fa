/* SGD with momentum, dampening, Nesterov and L2 weight decay: one fused pass per step, in place.
 *
 * Per element, with g the gradient (negated when maximize):
 *     weight_decay != 0:  g <- g + weight_decay * p             (skipped when 0, so inf params give no NaN)
 *     momentum != 0:      b <- g on the tensor's first momentum step (PyTorch's grad.clone()),
 *                         else b <- b * momentum + (1 - dampening) * g
 *                         d = g + momentum * b if nesterov else b
 *     momentum == 0:      d = g
 *     p <- p + (-lr) * d
 * which is torch.optim.SGD's single-tensor formula, operation for operation.
 * Bytes per element (fp32): read p, g and write p = 12; with momentum read and write b too = 20 (16 on the first
 * step, which writes b without reading it).
 *
 * The first-step flag is per tensor (params join a momentum run at different times), so the entry point picks a
 * pair of range functions for the call's modes and a small dispatcher picks one of the pair per tensor: still no
 * per-element branch.
 *
 * This file is its own template: instantiate.h includes it once for float and once for double (T, SUFFIX). */
#ifndef PYOPT_TEMPLATE
#include "common.h"

typedef struct {
    void **param, **grad, **momentum_buffer;
    const uint8_t *first_step;
    pyopt_range_fn fn[2]; /* [first step of tensor t] */
    const pyopt_sgd_hparams *hp;
} sgd_ctx;

/* Chooses the range function of tensor t from its first-step flag. */
static void sgd_range_dispatch(const void *vctx, int64_t t, int64_t begin, int64_t end)
{
    const sgd_ctx *ctx = (const sgd_ctx *)vctx;
    int first = ctx->first_step != NULL && ctx->first_step[t] != 0;
    ctx->fn[first](vctx, t, begin, end);
}

#define PYOPT_TEMPLATE_FILE "sgd.c"
#include "instantiate.h"

#else /* ---------------- per-dtype part ---------------- */

/* The update rule, written once; momentum, nesterov, decay and first are compile-time constants at every call. */
PYOPT_INLINE void SUFFIX(sgd_update)(T *restrict p, const T *restrict grad, T *restrict b, int64_t i, int flip,
                                     T weight_decay, T momentum, T one_minus_dampening, T neg_lr,
                                     const int has_momentum, const int nesterov, const int decay, const int first)
{
    T g = SUFFIX(pyopt_flip_sign)(grad[i], flip);
    T param = p[i];
    if (decay) g = g + weight_decay * param;
    if (has_momentum) {
        T buf = first ? g : b[i] * momentum + one_minus_dampening * g;
        b[i] = buf;
        g = nesterov ? g + momentum * buf : buf;
    }
    p[i] = param + neg_lr * g;
}

PYOPT_INLINE void SUFFIX(sgd_loop)(const void *vctx, int64_t t, int64_t begin, int64_t end, const int has_momentum,
                                   const int nesterov, const int decay, const int first)
{
    const sgd_ctx *ctx = (const sgd_ctx *)vctx;
    const pyopt_sgd_hparams *hp = ctx->hp;
    T *restrict p = (T *)ctx->param[t];
    const T *restrict g = (const T *)ctx->grad[t];
    T *restrict b = has_momentum ? (T *)ctx->momentum_buffer[t] : NULL;
    const int flip = hp->maximize != 0;
    const T weight_decay = (T)hp->weight_decay, momentum = (T)hp->momentum;
    const T one_minus_dampening = (T)(1.0 - hp->dampening), neg_lr = (T)(-hp->lr);
#pragma omp simd
    for (int64_t i = begin; i < end; i++)
        SUFFIX(sgd_update)(p, g, b, i, flip, weight_decay, momentum, one_minus_dampening, neg_lr, has_momentum,
                           nesterov, decay, first);
}

#define SGD_VARIANT(m, n, d, f)                                                                               \
    static void SUFFIX(sgd_range_base_##m##n##d##f)(const void *c, int64_t t, int64_t b, int64_t e)             \
    {                                                                                                         \
        SUFFIX(sgd_loop)(c, t, b, e, m, n, d, f);                                                             \
    }                                                                                                         \
    PYOPT_TARGET_AVX2 static void SUFFIX(sgd_range_avx2_##m##n##d##f)(const void *c, int64_t t, int64_t b,     \
                                                                      int64_t e)                              \
    {                                                                                                         \
        SUFFIX(sgd_loop)(c, t, b, e, m, n, d, f);                                                             \
    }
/* without momentum neither nesterov nor the first step means anything: one variant per decay mode */
SGD_VARIANT(0, 0, 0, 0)
SGD_VARIANT(0, 0, 1, 0)
SGD_VARIANT(1, 0, 0, 0)
SGD_VARIANT(1, 0, 0, 1)
SGD_VARIANT(1, 0, 1, 0)
SGD_VARIANT(1, 0, 1, 1)
SGD_VARIANT(1, 1, 0, 0)
SGD_VARIANT(1, 1, 0, 1)
SGD_VARIANT(1, 1, 1, 0)
SGD_VARIANT(1, 1, 1, 1)
#undef SGD_VARIANT

/* [isa == AVX2][momentum != 0][nesterov][weight_decay != 0][first step]; the momentum-free rows repeat their
 * one variant so that the entry point can index without special cases. */
#define SGD_TABLE(isa)                                                                                        \
    {{{{SUFFIX(sgd_range_##isa##_0000), SUFFIX(sgd_range_##isa##_0000)},                                      \
       {SUFFIX(sgd_range_##isa##_0010), SUFFIX(sgd_range_##isa##_0010)}},                                     \
      {{SUFFIX(sgd_range_##isa##_0000), SUFFIX(sgd_range_##isa##_0000)},                                      \
       {SUFFIX(sgd_range_##isa##_0010), SUFFIX(sgd_range_##isa##_0010)}}},                                    \
     {{{SUFFIX(sgd_range_##isa##_1000), SUFFIX(sgd_range_##isa##_1001)},                                      \
       {SUFFIX(sgd_range_##isa##_1010), SUFFIX(sgd_range_##isa##_1011)}},                                     \
      {{SUFFIX(sgd_range_##isa##_1100), SUFFIX(sgd_range_##isa##_1101)},                                      \
       {SUFFIX(sgd_range_##isa##_1110), SUFFIX(sgd_range_##isa##_1111)}}}}
static const pyopt_range_fn SUFFIX(sgd_ranges)[2][2][2][2][2] = {SGD_TABLE(base), SGD_TABLE(avx2)};
#undef SGD_TABLE

int SUFFIX(pyopt_sgd_step)(int64_t n_tensors, void **param, void **grad, void **momentum_buffer,
                           const int64_t *numel, const uint8_t *first_step, const pyopt_sgd_hparams *hp, int isa)
{
    isa = pyopt_resolve_isa(isa);
    if (isa < 0) return PYOPT_ERR_ISA;
    const int has_momentum = hp->momentum != 0, decay = hp->weight_decay != 0;
    const int nesterov = has_momentum && hp->nesterov;
    const pyopt_range_fn *pair = SUFFIX(sgd_ranges)[isa == PYOPT_ISA_AVX2][has_momentum][nesterov][decay];
    sgd_ctx ctx = {param, grad, momentum_buffer, has_momentum ? first_step : NULL, {pair[0], pair[1]}, hp};
    pyopt_for_each_range(&ctx, n_tensors, numel, sgd_range_dispatch);
    return PYOPT_OK;
}

#endif
