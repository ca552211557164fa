/* The STREAM-like probes that bench and track use as the roofline, parallelised exactly like the kernels.
 *   triad:          a[i] = b[i] + s * c[i]                          12 bytes/elem moved (fp32)
 *   read-4/write-3: p, m, v updated from p, g, m, v in place         28 bytes/elem, Adam's traffic, trivial maths
 * Both are timed by the caller; here is only the loop. */
#include "common.h"

/* The probe must be as wide as the widest kernel, or cache-resident cases would read over 100%. */
#if PYOPT_HAVE_AVX2_VARIANT
#define PYOPT_CLONES __attribute__((target_clones("avx2,fma", "default")))
#else
#define PYOPT_CLONES
#endif

typedef struct {
    float *a, *b, *c, *d;
    float s;
} probe_ctx;

PYOPT_CLONES static void triad_range(const void *vctx, int64_t t, int64_t begin, int64_t end)
{
    (void)t;
    const probe_ctx *ctx = (const probe_ctx *)vctx;
    float *restrict a = ctx->a;
    const float *restrict b = ctx->b, *restrict c = ctx->c;
    const float s = ctx->s;
#pragma omp simd
    for (int64_t i = begin; i < end; i++) a[i] = b[i] + s * c[i];
}

PYOPT_CLONES static void rw43_range(const void *vctx, int64_t t, int64_t begin, int64_t end)
{
    (void)t;
    const probe_ctx *ctx = (const probe_ctx *)vctx;
    float *restrict p = ctx->a, *restrict m = ctx->c, *restrict v = ctx->d;
    const float *restrict g = ctx->b;
    const float s = ctx->s;
#pragma omp simd
    for (int64_t i = begin; i < end; i++) {
        float gi = g[i];
        m[i] = m[i] * s + gi;
        v[i] = v[i] * s + gi;
        p[i] = p[i] - s * gi;
    }
}

void pyopt_probe_triad_f32(float *a, const float *b, const float *c, float s, int64_t n)
{
    probe_ctx ctx = {a, (float *)b, (float *)c, NULL, s};
    pyopt_for_each_range(&ctx, 1, &n, triad_range);
}

void pyopt_probe_rw43_f32(float *p, const float *g, float *m, float *v, float s, int64_t n)
{
    probe_ctx ctx = {p, (float *)g, m, v, s};
    pyopt_for_each_range(&ctx, 1, &n, rw43_range);
}
