/* Per-dtype row sums of the norm kernels in float64 lanes (norm_common.h says why the order is fixed), and the
 * fixed-order combination of per-block partials.  Included once per dtype from inside a kernel file's template
 * part (T, SUFFIX defined); no include guard. */

/* sum of x */
PYOPT_INLINE double SUFFIX(norm_sum)(const T *restrict x, int64_t n)
{
    norm_v4d a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, v0, v1, v2, v3;
    int64_t i = 0;
    for (; i + NORM_LANES <= n; i += NORM_LANES) {
        NORM_LOAD16(v, x + i);
        a0 += v0, a1 += v1, a2 += v2, a3 += v3;
    }
    double lanes[NORM_LANES];
    NORM_SPILL(lanes, a);
    for (int k = 0; i < n; i++, k++) lanes[k] += (double)x[i];
    return norm_combine_lanes(lanes);
}

/* sum of (x - mean)^2: the second pass of a two-pass variance, centred exactly in float64 */
PYOPT_INLINE double SUFFIX(norm_sum_sq_dev)(const T *restrict x, int64_t n, double mean)
{
    norm_v4d a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, v0, v1, v2, v3;
    int64_t i = 0;
    for (; i + NORM_LANES <= n; i += NORM_LANES) {
        NORM_LOAD16(v, x + i);
        v0 -= mean, v1 -= mean, v2 -= mean, v3 -= mean;
        a0 += v0 * v0, a1 += v1 * v1, a2 += v2 * v2, a3 += v3 * v3;
    }
    double lanes[NORM_LANES];
    NORM_SPILL(lanes, a);
    for (int k = 0; i < n; i++, k++) {
        const double d = (double)x[i] - mean;
        lanes[k] += d * d;
    }
    return norm_combine_lanes(lanes);
}

/* sum of x^2 (RMSNorm: no centring, so no cancellation) */
PYOPT_INLINE double SUFFIX(norm_sum_sq)(const T *restrict x, int64_t n)
{
    norm_v4d a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, v0, v1, v2, v3;
    int64_t i = 0;
    for (; i + NORM_LANES <= n; i += NORM_LANES) {
        NORM_LOAD16(v, x + i);
        a0 += v0 * v0, a1 += v1 * v1, a2 += v2 * v2, a3 += v3 * v3;
    }
    double lanes[NORM_LANES];
    NORM_SPILL(lanes, a);
    for (int k = 0; i < n; i++, k++) lanes[k] += (double)x[i] * (double)x[i];
    return norm_combine_lanes(lanes);
}

/* The backward's row sums, with g = dy * w (dy when has_w is 0) and xc = x - mean:
 * out[0] = sum g, out[1] = sum g xc, out[2] = sum xc.  Products in float64 (exact for float32 inputs). */
PYOPT_INLINE void SUFFIX(norm_grad_sums)(const T *restrict dy, const T *restrict w, const T *restrict x,
                                         double mean, int64_t n, const int has_w, double *out)
{
    norm_v4d g0 = {0}, g1 = {0}, g2 = {0}, g3 = {0}, p0 = {0}, p1 = {0}, p2 = {0}, p3 = {0};
    norm_v4d c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0}, d0, d1, d2, d3, x0, x1, x2, x3, w0, w1, w2, w3;
    int64_t i = 0;
    for (; i + NORM_LANES <= n; i += NORM_LANES) {
        NORM_LOAD16(d, dy + i);
        if (has_w) {
            NORM_LOAD16(w, w + i);
            d0 *= w0, d1 *= w1, d2 *= w2, d3 *= w3;
        }
        NORM_LOAD16(x, x + i);
        x0 -= mean, x1 -= mean, x2 -= mean, x3 -= mean;
        g0 += d0, g1 += d1, g2 += d2, g3 += d3;
        p0 += d0 * x0, p1 += d1 * x1, p2 += d2 * x2, p3 += d3 * x3;
        c0 += x0, c1 += x1, c2 += x2, c3 += x3;
    }
    double lg[NORM_LANES], lp[NORM_LANES], lc[NORM_LANES];
    NORM_SPILL(lg, g);
    NORM_SPILL(lp, p);
    NORM_SPILL(lc, c);
    for (int k = 0; i < n; i++, k++) {
        const double g = has_w ? (double)dy[i] * (double)w[i] : (double)dy[i], xc = (double)x[i] - mean;
        lg[k] += g;
        lp[k] += g * xc;
        lc[k] += xc;
    }
    out[0] = norm_combine_lanes(lg);
    out[1] = norm_combine_lanes(lp);
    out[2] = norm_combine_lanes(lc);
}

/* sum of g x with g = dy * w (dy when has_w is 0): RMSNorm's backward */
PYOPT_INLINE double SUFFIX(norm_grad_dot)(const T *restrict dy, const T *restrict w, const T *restrict x,
                                          int64_t n, const int has_w)
{
    norm_v4d a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, d0, d1, d2, d3, x0, x1, x2, x3, w0, w1, w2, w3;
    int64_t i = 0;
    for (; i + NORM_LANES <= n; i += NORM_LANES) {
        NORM_LOAD16(d, dy + i);
        if (has_w) {
            NORM_LOAD16(w, w + i);
            d0 *= w0, d1 *= w1, d2 *= w2, d3 *= w3;
        }
        NORM_LOAD16(x, x + i);
        a0 += d0 * x0, a1 += d1 * x1, a2 += d2 * x2, a3 += d3 * x3;
    }
    double lanes[NORM_LANES];
    NORM_SPILL(lanes, a);
    for (int k = 0; i < n; i++, k++)
        lanes[k] += (has_w ? (double)dy[i] * (double)w[i] : (double)dy[i]) * (double)x[i];
    return norm_combine_lanes(lanes);
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
