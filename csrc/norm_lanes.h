/* Per-dtype row sums of the norm kernels in float64 lanes (norm_common.h says why the order is fixed), and the
 * fixed-order combination of per-block partials.  Included once per dtype from inside a kernel file's template
 * part (T, SUFFIX defined); no include guard. */

/* float32 rows: the sum of x by float32 chunks (NORM_CHUNK elements, 8 terms per lane) added into float64 lanes.
 * Each chunk's rounding is that of a float32 sum of 8 terms (~5e-7 of the terms' size); a centred second pass
 * (norm_centred_sums_f32) corrects the mean this gives, so the statistics keep float64 accuracy where it
 * matters (rows far from zero), at a quarter of the instructions of widening each element. */
PYOPT_INLINE void SUFFIX(norm_sum_f32_acc)(const float *restrict x, int64_t n, norm_acc16 *S)
{
    norm_v8f x0, x1;
    int64_t i = 0;
    while (i + NORM_LANES <= n) {
        norm_v8f a0 = {0}, a1 = {0};
        for (int64_t end = i + NORM_CHUNK; i + NORM_LANES <= n && i < end; i += NORM_LANES) {
            NORM_LOAD16F(x, x + i);
            a0 += x0, a1 += x1;
        }
        NORM_FLUSH16F(S->v, a);
    }
    if (i < n && n >= NORM_LANES) { /* the tail: the last 16 values, those already summed masked out */
        norm_v8i m0, m1;
        NORM_TAIL_MASK16(m, n - i);
        NORM_LOAD16F(x, x + n - NORM_LANES);
        norm_v8f a0 = NORM_MASKF(x0, m0), a1 = NORM_MASKF(x1, m1);
        NORM_FLUSH16F(S->v, a);
    } else if (i < n) {
        double lanes[NORM_LANES];
        NORM_SPILL(lanes, S->v);
        for (int k = 0; i < n; i++, k++) lanes[k] += (double)x[i];
        NORM_UNSPILL(S->v, lanes);
    }
}

PYOPT_INLINE double SUFFIX(norm_sum_f32)(const float *restrict x, int64_t n)
{
    norm_acc16 S = NORM_ACC16_ZERO;
    SUFFIX(norm_sum_f32_acc)(x, n, &S);
    return norm_acc16_total(&S);
}

/* sum of x (float64 lanes; float32 rows: the chunked path above) */
PYOPT_INLINE double SUFFIX(norm_sum)(const T *restrict x, int64_t n)
{
    if (sizeof(T) == sizeof(float)) return SUFFIX(norm_sum_f32)((const float *)x, n);
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

/* float32 rows: out[0] = sum d, out[1] = sum d^2 with d = (x - mean_hi) - mean_lo in float32 (exact when x is
 * within a factor 2 of the mean, else rounded to d's own precision), by float32 chunks into float64 lanes.
 * With mean the first pass's estimate, the row's mean is mean + out[0] / n and its variance
 * out[1] / n - (out[0] / n)^2, where the correction is tiny next to the variance (the estimate is within a few
 * float32 ulps of the mean).  Prefetches the line of `ahead` (the next row) level with each line of x, so the
 * next row's reads overlap this row's arithmetic. */
PYOPT_INLINE void SUFFIX(norm_centred_sums_f32_acc)(const float *restrict x, int64_t n, double mean,
                                                    const float *ahead, norm_acc16 *S, norm_acc16 *Q)
{
    float mh, ml;
    NORM_SPLIT(float, mean, mh, ml);
    norm_v8f x0, x1;
    int64_t i = 0;
    while (i + NORM_LANES <= n) {
        norm_v8f s0 = {0}, s1 = {0}, q0 = {0}, q1 = {0};
        for (int64_t end = i + NORM_CHUNK; i + NORM_LANES <= n && i < end; i += NORM_LANES) {
            __builtin_prefetch(ahead + i, 0, 2);
            NORM_LOAD16F(x, x + i);
            x0 = (x0 - mh) - ml, x1 = (x1 - mh) - ml;
            s0 += x0, s1 += x1;
            q0 += x0 * x0, q1 += x1 * x1;
        }
        NORM_FLUSH16F(S->v, s);
        NORM_FLUSH16F(Q->v, q);
    }
    if (i < n && n >= NORM_LANES) { /* the tail as in norm_sum_f32_acc */
        norm_v8i m0, m1;
        NORM_TAIL_MASK16(m, n - i);
        NORM_LOAD16F(x, x + n - NORM_LANES);
        norm_v8f s0 = NORM_MASKF((x0 - mh) - ml, m0), s1 = NORM_MASKF((x1 - mh) - ml, m1);
        norm_v8f q0 = s0 * s0, q1 = s1 * s1;
        NORM_FLUSH16F(S->v, s);
        NORM_FLUSH16F(Q->v, q);
    } else if (i < n) {
        double ls[NORM_LANES], lq[NORM_LANES];
        NORM_SPILL(ls, S->v);
        NORM_SPILL(lq, Q->v);
        for (int k = 0; i < n; i++, k++) {
            const double d = (double)((x[i] - mh) - ml);
            ls[k] += d;
            lq[k] += d * d;
        }
        NORM_UNSPILL(S->v, ls);
        NORM_UNSPILL(Q->v, lq);
    }
}

PYOPT_INLINE void SUFFIX(norm_centred_sums_f32)(const float *restrict x, int64_t n, double mean,
                                                const float *ahead, double *out)
{
    norm_acc16 S = NORM_ACC16_ZERO, Q = NORM_ACC16_ZERO;
    SUFFIX(norm_centred_sums_f32_acc)(x, n, mean, ahead, &S, &Q);
    out[0] = norm_acc16_total(&S);
    out[1] = norm_acc16_total(&Q);
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

/* The mean and the biased variance of a row (norm_mean_var_sums, then norm_mean_var_finish).  float32 rows: one
 * pass of centred sums around a shift (the mean of the first 16 elements, norm_shift_f32), a second around the
 * mean so found only when the shift was more than sqrt(NORM_SHIFT_FAR) standard deviations away; float64 rows:
 * exact float64 two-pass.  `ahead`: a row to prefetch during the pass (this row when there is none).
 * In two steps, so that a block of rows can take all its sums before the divisions of any (layer_norm.c): the
 * sums (float32: the shift and the centred sums; float64: the whole two-pass), then the mean and variance. */
typedef struct {
    double centre, s, q; /* float32: the shift, sum d, sum d^2; float64: the mean, -, the variance */
} SUFFIX(norm_row_sums);

PYOPT_INLINE SUFFIX(norm_row_sums) SUFFIX(norm_mean_var_sums)(const T *restrict x, int64_t n, const T *ahead)
{
    SUFFIX(norm_row_sums) r;
    if (sizeof(T) == sizeof(float)) {
        double s[2];
        r.centre = (double)norm_shift_f32((const float *)x, n);
        SUFFIX(norm_centred_sums_f32)((const float *)x, n, r.centre, (const float *)ahead, s);
        r.s = s[0], r.q = s[1];
        return r;
    }
    r.centre = SUFFIX(norm_sum)(x, n) / (double)n;
    r.s = 0.0;
    r.q = SUFFIX(norm_sum_sq_dev)(x, n, r.centre) / (double)n;
    return r;
}

PYOPT_INLINE void SUFFIX(norm_mean_var_finish)(const T *restrict x, int64_t n, const T *ahead,
                                               SUFFIX(norm_row_sums) r, double *mean, double *var)
{
    if (sizeof(T) == sizeof(float)) {
        double s[2], v;
        if (norm_centred_stats(r.s, r.q, (double)n, r.centre, mean, &v)) { /* far (or a constant row) */
            const double centre = *mean;
            SUFFIX(norm_centred_sums_f32)((const float *)x, n, centre, (const float *)ahead, s);
            norm_centred_stats(s[0], s[1], (double)n, centre, mean, &v);
        }
        *var = v > 0.0 ? v : 0.0;
        return;
    }
    *mean = r.centre;
    *var = r.q;
}

/* float32 rows: the sum of x^2 by float32 chunks into float64 lanes (as norm_sum_f32; the terms are positive,
 * so each chunk's relative rounding, ~5e-7, is the result's) */
PYOPT_INLINE double SUFFIX(norm_sum_sq_f32)(const float *restrict x, int64_t n)
{
    norm_v4d S0 = {0}, S1 = {0}, S2 = {0}, S3 = {0};
    norm_v8f x0, x1;
    int64_t i = 0;
    while (i + NORM_LANES <= n) {
        norm_v8f a0 = {0}, a1 = {0};
        for (int64_t end = i + NORM_CHUNK; i + NORM_LANES <= n && i < end; i += NORM_LANES) {
            NORM_LOAD16F(x, x + i);
            a0 += x0 * x0, a1 += x1 * x1;
        }
        NORM_FLUSH16F(S, a);
    }
    double lanes[NORM_LANES];
    NORM_SPILL(lanes, S);
    for (int k = 0; i < n; i++, k++) lanes[k] += (double)x[i] * (double)x[i];
    return norm_combine_lanes(lanes);
}

/* sum of x^2 (RMSNorm: no centring, so no cancellation; float32 rows: the chunked path above) */
PYOPT_INLINE double SUFFIX(norm_sum_sq)(const T *restrict x, int64_t n)
{
    if (sizeof(T) == sizeof(float)) return SUFFIX(norm_sum_sq_f32)((const float *)x, n);
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

/* float32 rows: the sums of norm_grad_sums by float32 chunks (NORM_CHUNK); xc = (x - mean_hi) - mean_lo.
 * ahead_dy, ahead_x (NULL: none): spans of a later row prefetched into L2 level with each line of dy and x, so the
 * reads of this first pass, the backward's only trip to memory, keep the next rows on their way. */
PYOPT_INLINE void SUFFIX(norm_grad_sums_f32_acc)(const float *restrict dy, const float *restrict w,
                                                 const float *restrict x, double mean, int64_t n, const int has_w,
                                                 const float *ahead_dy, const float *ahead_x, norm_acc16 *G,
                                                 norm_acc16 *P, norm_acc16 *C)
{
    float mh, ml;
    NORM_SPLIT(float, mean, mh, ml);
    norm_v8f d0, d1, w0, w1, x0, x1;
    int64_t i = 0;
    while (i + NORM_LANES <= n) {
        norm_v8f g0 = {0}, g1 = {0}, p0 = {0}, p1 = {0}, c0 = {0}, c1 = {0};
        for (int64_t end = i + NORM_CHUNK; i + NORM_LANES <= n && i < end; i += NORM_LANES) {
            if (ahead_dy) { /* 16 floats: one line of each */
                __builtin_prefetch(ahead_dy + i, 0, 2);
                __builtin_prefetch(ahead_x + i, 0, 2);
            }
            NORM_LOAD16F(d, dy + i);
            if (has_w) {
                NORM_LOAD16F(w, w + i);
                d0 *= w0, d1 *= w1;
            }
            NORM_LOAD16F(x, x + i);
            x0 = (x0 - mh) - ml, x1 = (x1 - mh) - ml;
            g0 += d0, g1 += d1;
            p0 += d0 * x0, p1 += d1 * x1;
            c0 += x0, c1 += x1;
        }
        NORM_FLUSH16F(G->v, g);
        NORM_FLUSH16F(P->v, p);
        NORM_FLUSH16F(C->v, c);
    }
    if (i < n && n >= NORM_LANES) { /* the tail as in norm_sum_f32_acc */
        norm_v8i m0, m1;
        NORM_TAIL_MASK16(m, n - i);
        const int64_t t = n - NORM_LANES;
        NORM_LOAD16F(d, dy + t);
        if (has_w) {
            NORM_LOAD16F(w, w + t);
            d0 *= w0, d1 *= w1;
        }
        NORM_LOAD16F(x, x + t);
        norm_v8f g0 = NORM_MASKF(d0, m0), g1 = NORM_MASKF(d1, m1);
        norm_v8f c0 = NORM_MASKF((x0 - mh) - ml, m0), c1 = NORM_MASKF((x1 - mh) - ml, m1);
        norm_v8f p0 = g0 * c0, p1 = g1 * c1;
        NORM_FLUSH16F(G->v, g);
        NORM_FLUSH16F(P->v, p);
        NORM_FLUSH16F(C->v, c);
    } else if (i < n) {
        double lg[NORM_LANES], lp[NORM_LANES], lc[NORM_LANES];
        NORM_SPILL(lg, G->v);
        NORM_SPILL(lp, P->v);
        NORM_SPILL(lc, C->v);
        for (int k = 0; i < n; i++, k++) {
            const double g = has_w ? (double)dy[i] * (double)w[i] : (double)dy[i], xc = (double)x[i] - mean;
            lg[k] += g;
            lp[k] += g * xc;
            lc[k] += xc;
        }
        NORM_UNSPILL(G->v, lg);
        NORM_UNSPILL(P->v, lp);
        NORM_UNSPILL(C->v, lc);
    }
}

PYOPT_INLINE void SUFFIX(norm_grad_sums_f32)(const float *restrict dy, const float *restrict w,
                                             const float *restrict x, double mean, int64_t n, const int has_w,
                                             const float *ahead_dy, const float *ahead_x, double *out)
{
    norm_acc16 G = NORM_ACC16_ZERO, P = NORM_ACC16_ZERO, C = NORM_ACC16_ZERO;
    SUFFIX(norm_grad_sums_f32_acc)(dy, w, x, mean, n, has_w, ahead_dy, ahead_x, &G, &P, &C);
    out[0] = norm_acc16_total(&G);
    out[1] = norm_acc16_total(&P);
    out[2] = norm_acc16_total(&C);
}

/* The backward's row sums, with g = dy * w (dy when has_w is 0) and xc = x - mean:
 * out[0] = sum g, out[1] = sum g xc, out[2] = sum xc.  float64 rows: products and sums in float64; float32 rows:
 * the float32-chunk fast path above.  ahead_dy, ahead_x: a later row to prefetch meanwhile (NULL: none). */
PYOPT_INLINE void SUFFIX(norm_grad_sums)(const T *restrict dy, const T *restrict w, const T *restrict x,
                                         double mean, int64_t n, const int has_w, const T *ahead_dy,
                                         const T *ahead_x, double *out)
{
    if (sizeof(T) == sizeof(float)) {
        SUFFIX(norm_grad_sums_f32)((const float *)dy, (const float *)w, (const float *)x, mean, n, has_w,
                                   (const float *)ahead_dy, (const float *)ahead_x, out);
        return;
    }
    norm_v4d g0 = {0}, g1 = {0}, g2 = {0}, g3 = {0}, p0 = {0}, p1 = {0}, p2 = {0}, p3 = {0};
    norm_v4d c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0}, d0, d1, d2, d3, x0, x1, x2, x3, w0, w1, w2, w3;
    int64_t i = 0;
    for (; i + NORM_LANES <= n; i += NORM_LANES) {
        if (ahead_dy) { /* 16 doubles: two lines of each */
            __builtin_prefetch(ahead_dy + i, 0, 2);
            __builtin_prefetch(ahead_dy + i + 8, 0, 2);
            __builtin_prefetch(ahead_x + i, 0, 2);
            __builtin_prefetch(ahead_x + i + 8, 0, 2);
        }
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

/* float32 rows: norm_grad_dot by float32 chunks (NORM_CHUNK). */
PYOPT_INLINE double SUFFIX(norm_grad_dot_f32)(const float *restrict dy, const float *restrict w,
                                              const float *restrict x, int64_t n, const int has_w)
{
    norm_v4d A0 = {0}, A1 = {0}, A2 = {0}, A3 = {0};
    norm_v8f d0, d1, w0, w1, x0, x1;
    int64_t i = 0;
    while (i + NORM_LANES <= n) {
        norm_v8f a0 = {0}, a1 = {0};
        for (int64_t end = i + NORM_CHUNK; i + NORM_LANES <= n && i < end; i += NORM_LANES) {
            NORM_LOAD16F(d, dy + i);
            if (has_w) {
                NORM_LOAD16F(w, w + i);
                d0 *= w0, d1 *= w1;
            }
            NORM_LOAD16F(x, x + i);
            a0 += d0 * x0, a1 += d1 * x1;
        }
        NORM_FLUSH16F(A, a);
    }
    double lanes[NORM_LANES];
    NORM_SPILL(lanes, A);
    for (int k = 0; i < n; i++, k++)
        lanes[k] += (has_w ? (double)dy[i] * (double)w[i] : (double)dy[i]) * (double)x[i];
    return norm_combine_lanes(lanes);
}

/* sum of g x with g = dy * w (dy when has_w is 0): RMSNorm's backward (float32 rows: the chunked fast path) */
PYOPT_INLINE double SUFFIX(norm_grad_dot)(const T *restrict dy, const T *restrict w, const T *restrict x,
                                          int64_t n, const int has_w)
{
    if (sizeof(T) == sizeof(float))
        return SUFFIX(norm_grad_dot_f32)((const float *)dy, (const float *)w, (const float *)x, n, has_w);
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
    double s[64];
    for (int64_t j0 = begin; j0 < end; j0 += 64) { /* blocks in order for each column, 64 columns at a time */
        const int64_t m = end - j0 < 64 ? end - j0 : 64;
        for (int64_t k = 0; k < m; k++) s[k] = 0.0;
        for (int64_t blk = 0; blk < c->n_blocks; blk++) {
            const double *p = c->partial + blk * c->cols + j0;
#pragma omp simd
            for (int64_t k = 0; k < m; k++) s[k] += p[k];
        }
        for (int64_t k = 0; k < m; k++) out[j0 + k] = (T)s[k];
    }
}

/* partial[j] += (double)chunk[j], chunk[j] = 0: the flush of float32 row-chunk partials (NORM_FLUSH_ROWS). */
PYOPT_INLINE void SUFFIX(norm_flush_partial)(double *restrict partial, T *restrict chunk, int64_t n)
{
#pragma omp simd
    for (int64_t j = 0; j < n; j++) {
        partial[j] += (double)chunk[j];
        chunk[j] = (T)0;
    }
}
