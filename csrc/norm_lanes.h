/* Per-dtype row sums of the norm kernels, in float64 lanes (norm_common.h says why the order is fixed).
 * Included once per dtype from inside a kernel file's template part (T, SUFFIX defined); no include guard. */

/* sum of x */
PYOPT_INLINE double SUFFIX(norm_sum)(const T *restrict x, int64_t n)
{
    double acc[NORM_LANES] = {0};
    NORM_LANE_LOOP(n, k, i, acc[k] += (double)x[i];);
    return norm_combine_lanes(acc);
}

/* sum of (x - mean)^2: the second pass of a two-pass variance, exact centring in float64 */
PYOPT_INLINE double SUFFIX(norm_sum_sq_dev)(const T *restrict x, int64_t n, double mean)
{
    double acc[NORM_LANES] = {0};
    NORM_LANE_LOOP(n, k, i, double d = (double)x[i] - mean; acc[k] += d * d;);
    return norm_combine_lanes(acc);
}

/* sum of x^2 (RMSNorm: no centring, so no cancellation) */
PYOPT_INLINE double SUFFIX(norm_sum_sq)(const T *restrict x, int64_t n)
{
    double acc[NORM_LANES] = {0};
    NORM_LANE_LOOP(n, k, i, double v = (double)x[i]; acc[k] += v * v;);
    return norm_combine_lanes(acc);
}

/* The fixed-order combination of per-block partials (norm_reduce_ctx); items are columns.  Static inline so a
 * file that does not use it gets no unused-function warning. */
static inline void SUFFIX(norm_reduce_blocks)(const void *vctx, int64_t begin, int64_t end)
{
    const norm_reduce_ctx *c = (const norm_reduce_ctx *)vctx;
    T *out = (T *)c->out;
    for (int64_t j = begin; j < end; j++) {
        double s = 0.0;
        for (int64_t blk = 0; blk < c->n_blocks; blk++) s += c->partial[blk * c->cols + j];
        out[j] = (T)s;
    }
}
