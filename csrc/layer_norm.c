/* LayerNorm forward and fused backward over rows of `cols` contiguous elements (the caller flattens the
 * leading dimensions into `rows` and normalized_shape into `cols`).
 *
 * Forward, per row (pyopt/reference/layer_norm.py is the spec):
 *     mean = sum(x) / n,  var = sum((x - mean)^2) / n,  rstd = 1 / sqrt(var + eps),  y = (x - mean) * rstd * w + b
 * float64 rows: exact two-pass statistics in float64.  float32 rows: d = x - s around a shift s (the mean of the
 * first 16 values), mean = s + sum(d) / n, var = sum(d^2) / n - (sum(d) / n)^2 from one pass, and a second pass
 * around that mean when s was more than sqrt(NORM_SHIFT_FAR) deviations off (norm_mean_var_*): the sum of squares
 * then exceeds n var by at most 4x, so the rounding of its float32 chunks (NORM_CHUNK, added into float64 lanes)
 * stays ~1e-6 of the variance.
 * x - mean is formed as (x - mean_hi) - mean_lo (NORM_SPLIT), so a float32 row like 1e4 + 1e-2 randn keeps
 * the precision of its spread; mean and rstd are stored rounded to the dtype.
 * Backward, per row, with g = dy * w and xhat = (x - mean) * rstd:
 *     dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  dweight = sum_rows dy * xhat,  dbias = sum_rows dy
 * The stored mean is rounded to the dtype; the backward re-centres with the residual mean(x - mean) it gets for
 * free in its first pass (zero when mean is the row's exact mean), so a float32 mean of a row far from zero
 * does not bias xhat.
 * Bytes per element (fp32): forward read x, write y = 8; backward read dy, x, write dx = 12.  A row is read
 * from memory once per call; the later passes over it hit L1/L2 (rows up to ~64k floats).
 * Rows run in parallel, the forward's in blocks of rows (norm_block_rows), the backward's in pairs; the
 * backward's dweight/dbias come from a fixed number of row blocks (norm_rows_per_block) summed in block order,
 * so every output is bitwise the same for any thread count.
 * float32 backward: the row sums and the dweight/dbias partials run in float32 over short chunks (NORM_CHUNK
 * elements, NORM_FLUSH_ROWS rows) added into float64, which halves the backward's instructions.
 *
 * This file is its own template: instantiate.h includes it once for float and once for double (T, SUFFIX). */
#ifndef PYOPT_TEMPLATE
#include "norm_common.h"

typedef struct {
    int64_t cols;
    const void *x, *weight, *bias;
    void *y, *mean, *rstd;
    double eps;
    int stream; /* non-temporal stores for y (norm_common.h) */
} ln_forward_ctx;

typedef struct {
    int64_t rows, cols, rows_per_block;
    const void *dy, *x, *weight, *mean, *rstd;
    void *dx;
    double *partial_w, *partial_b; /* [block][cols] */
    void *scratch;                 /* float32: [block][2] row-chunk partial rows, row_stride elements apart (placed
                                    * clear of the inputs' page offsets, norm_common.h); NULL for float64 */
    int64_t row_stride;
    int stream;                    /* non-temporal stores for dx (norm_common.h) */
} ln_backward_ctx;

#define PYOPT_TEMPLATE_FILE "layer_norm.c"
#include "instantiate.h"

#else /* ---------------- per-dtype part ---------------- */
#include "norm_lanes.h"

/* y[j] of a row: ((x - mean_hi) - mean_lo) rstd, times w[j], plus b[j] */
PYOPT_INLINE T SUFFIX(ln_y)(int64_t j, const T *restrict x, const T *restrict w, const T *restrict b, T mh, T ml,
                            T r, const int has_w, const int has_b)
{
    T v = ((x[j] - mh) - ml) * r;
    if (has_w) v = v * w[j];
    if (has_b) v = v + b[j];
    return v;
}

/* The output pass of a row; when streaming, each line also prefetches the same span of `ahead` (NULL: none). */
PYOPT_INLINE void SUFFIX(ln_forward_apply)(const T *restrict x, const T *restrict w, const T *restrict b,
                                           T *restrict y, int64_t n, T mh, T ml, T r, const int has_w,
                                           const int has_b, const int stream, const T *ahead)
{
    NORM_STORE_ROW(T, y, n, stream, ahead, NULL, j, SUFFIX(ln_y)(j, x, w, b, mh, ml, r, has_w, has_b));
}

/* Rows [begin, end) in blocks (norm_block_rows); row r + dist (norm_ahead_rows) is prefetched while row r is
 * summed and again while it is written.  Every row's statistics and output are computed as one row alone would
 * be. */
PYOPT_INLINE void SUFFIX(ln_forward_rows)(const void *vctx, int64_t begin, int64_t end)
{
    const ln_forward_ctx *c = (const ln_forward_ctx *)vctx;
    const int64_t n = c->cols, row_bytes = n * (int64_t)sizeof(T);
    const T *x = (const T *)c->x, *w = (const T *)c->weight, *b = (const T *)c->bias;
    T *y = (T *)c->y, *mean = (T *)c->mean, *rstd = (T *)c->rstd;
    const int64_t dist = norm_ahead_rows(row_bytes), block = norm_block_rows(row_bytes);
    for (int64_t r0 = begin; r0 < end; r0 += block) {
        const int64_t m = r0 + block < end ? block : end - r0;
        SUFFIX(norm_row_sums) sums[NORM_BLOCK_ROWS];
        double mu[NORM_BLOCK_ROWS], var[NORM_BLOCK_ROWS];
        T r[NORM_BLOCK_ROWS];
        const T *ahead[NORM_BLOCK_ROWS];
        for (int64_t k = 0; k < m; k++) {
            const int64_t row = r0 + k;
            ahead[k] = x + (row + dist < end ? row + dist : row) * n;
            sums[k] = SUFFIX(norm_mean_var_sums)(x + row * n, n, ahead[k]);
        }
        for (int64_t k = 0; k < m; k++)
            SUFFIX(norm_mean_var_finish)(x + (r0 + k) * n, n, ahead[k], sums[k], &mu[k], &var[k]);
        for (int64_t k = 0; k < m; k++) r[k] = (T)(1.0 / sqrt(var[k] + c->eps));
        for (int64_t k = 0; k < m; k++) {
            const int64_t row = r0 + k;
            const T *xr = x + row * n, *pf = row + dist < end ? xr + dist * n : NULL;
            T *yr = y + row * n, mh, ml;
            NORM_SPLIT(T, mu[k], mh, ml);
            mean[row] = (T)mu[k];
            rstd[row] = r[k];
            const int s = c->stream; /* the affine flags and the stream flag: constants in each loop */
            if (w && b) SUFFIX(ln_forward_apply)(xr, w, b, yr, n, mh, ml, r[k], 1, 1, s, pf);
            else if (w) SUFFIX(ln_forward_apply)(xr, w, b, yr, n, mh, ml, r[k], 1, 0, s, pf);
            else if (b) SUFFIX(ln_forward_apply)(xr, w, b, yr, n, mh, ml, r[k], 0, 1, s, pf);
            else SUFFIX(ln_forward_apply)(xr, w, b, yr, n, mh, ml, r[k], 0, 0, s, pf);
        }
    }
    if (c->stream) norm_stream_fence();
}

/* A row's backward constants, from its first pass over dy and x (prefetching ahead_dy, ahead_x meanwhile). */
typedef struct {
    T mh, ml, rstd, mean_g, mean_gxhat;
} SUFFIX(ln_coef);

PYOPT_INLINE SUFFIX(ln_coef) SUFFIX(ln_backward_coef)(const T *restrict dy, const T *restrict x,
                                                      const T *restrict w, T mean_t, T rstd_t, int64_t n,
                                                      const int has_w, const T *ahead_dy, const T *ahead_x)
{
    const double m = (double)mean_t, r = (double)rstd_t;
    double sums[3];
    SUFFIX(norm_grad_sums)(dy, w, x, m, n, has_w, ahead_dy, ahead_x, sums);
    const double sum_g = sums[0], sum_gx = sums[1];
    const double shift = sums[2] / (double)n; /* residual of the rounded mean */
    const double sum_gxhat = r * (sum_gx - shift * sum_g);
    SUFFIX(ln_coef) cf;
    NORM_SPLIT(T, m + shift, cf.mh, cf.ml);
    cf.rstd = rstd_t;
    cf.mean_g = (T)(sum_g / (double)n);
    cf.mean_gxhat = (T)(sum_gxhat / (double)n);
    return cf;
}

/* dx[j] of one row, adding the row's dweight/dbias terms to the block's partials sw/sb (T; for float32 they are
 * flushed into the float64 partials every NORM_FLUSH_ROWS rows, see ln_backward_rows). */
PYOPT_INLINE T SUFFIX(ln_dx)(int64_t j, const T *restrict dy, const T *restrict x, const T *restrict w,
                             const SUFFIX(ln_coef) *cf, T *restrict sw, T *restrict sb, const int has_w)
{
    const T xhat = ((x[j] - cf->mh) - cf->ml) * cf->rstd;
    const T g = has_w ? dy[j] * w[j] : dy[j];
    sw[j] += dy[j] * xhat;
    sb[j] += dy[j];
    return ((g - cf->mean_g) - xhat * cf->mean_gxhat) * cf->rstd;
}

/* The second pass over one row: dx (streamed when the call is large), the partials, and the next row's dy and x
 * prefetched (ahead_dy, ahead_x). */
PYOPT_INLINE void SUFFIX(ln_backward_row)(const T *restrict dy, const T *restrict x, const T *restrict w,
                                          SUFFIX(ln_coef) cf, T *restrict dx, T *restrict sw, T *restrict sb,
                                          int64_t n, const int has_w, const int stream, const T *ahead_dy,
                                          const T *ahead_x)
{
    NORM_STORE_ROW(T, dx, n, stream, ahead_dy, ahead_x, j, SUFFIX(ln_dx)(j, dy, x, w, &cf, sw, sb, has_w));
}

/* Element j of two consecutive rows (dy1 = dy0 + n, x1 = x0 + n): both dx through o0, o1, and the pair's
 * dweight/dbias terms added to the partials together, so they are read and written once per pair of rows. */
PYOPT_INLINE void SUFFIX(ln_dx2)(int64_t j, int64_t n, const T *restrict dy0, const T *restrict x0,
                                 const T *restrict w, const SUFFIX(ln_coef) *c0, const SUFFIX(ln_coef) *c1,
                                 T *restrict sw, T *restrict sb, const int has_w, T *o0, T *o1)
{
    const T *dy1 = dy0 + n, *x1 = x0 + n;
    const T xh0 = ((x0[j] - c0->mh) - c0->ml) * c0->rstd, xh1 = ((x1[j] - c1->mh) - c1->ml) * c1->rstd;
    const T g0 = has_w ? dy0[j] * w[j] : dy0[j], g1 = has_w ? dy1[j] * w[j] : dy1[j];
    sw[j] += dy0[j] * xh0 + dy1[j] * xh1;
    sb[j] += dy0[j] + dy1[j];
    *o0 = ((g0 - c0->mean_g) - xh0 * c0->mean_gxhat) * c0->rstd;
    *o1 = ((g1 - c1->mean_g) - xh1 * c1->mean_gxhat) * c1->rstd;
}

PYOPT_INLINE void SUFFIX(ln_backward_rows)(const ln_backward_ctx *c, int64_t r0, int64_t r1, double *pw,
                                           double *pb, T *sw, T *sb, const int has_w)
{
    const int64_t n = c->cols;
    const T *dy = (const T *)c->dy, *x = (const T *)c->x, *w = (const T *)c->weight;
    const T *mean = (const T *)c->mean, *rstd = (const T *)c->rstd;
    T *dx = (T *)c->dx;
    /* rows in pairs from the block's first row (the last alone when the block's count is odd): the second pass
     * of a pair reads and writes the partials once.  A pair streams only when its rows lie whole lines apart
     * (plain stores otherwise); the pairing itself never depends on streaming, so neither do the bits.
     * The next pair is fetched twice over: row r's first pass prefetches row r + 2 and row r + 1's row r + 3 (the
     * first pass, the one trip to memory, then keeps the next pair's reads on their way: 0.87-0.98x the time at
     * 128, 768 and 4096 columns, 2 threads, out of cache; without it that pass stalled on its loads), and the
     * second pass prefetches them again line by line (dropping that one: 1.05x). */
    const int stream_pairs = c->stream && (n * (int64_t)sizeof(T)) % NORM_LINE_BYTES == 0;
    for (int64_t r = r0; r < r1;) {
        const T *dyr = dy + r * n, *xr = x + r * n;
        const int far0 = r + 2 < r1, far1 = r + 3 < r1; /* rows r + 2, r + 3 in the block: prefetched */
        const SUFFIX(ln_coef) cf = SUFFIX(ln_backward_coef)(dyr, xr, w, mean[r], rstd[r], n, has_w,
                                                            far0 ? dyr + 2 * n : NULL, far0 ? xr + 2 * n : NULL);
        if (r + 1 < r1) {
            const SUFFIX(ln_coef) cf1 =
                SUFFIX(ln_backward_coef)(dyr + n, xr + n, w, mean[r + 1], rstd[r + 1], n, has_w,
                                         far1 ? dyr + 3 * n : NULL, far1 ? xr + 3 * n : NULL);
            const int64_t next = (r + 3 < r1 ? r + 2 : r) * n;
            NORM_STORE_ROW2(T, dx + r * n, n, stream_pairs, dy + next, x + next,
                            ((const void *[]){dyr, xr, dyr + n, xr + n, w, sw, sb}), j, o0, o1,
                            SUFFIX(ln_dx2)(j, n, dyr, xr, w, &cf, &cf1, sw, sb, has_w, o0, o1));
            r += 2;
        } else {
            const int64_t next = r + 1 < r1 ? (r + 1) * n : r * n;
            SUFFIX(ln_backward_row)(dyr, xr, w, cf, dx + r * n, sw, sb, n, has_w, c->stream, dy + next, x + next);
            r += 1;
        }
        if (c->scratch && ((r - r0) % NORM_FLUSH_ROWS == 0 || r == r1)) {
            SUFFIX(norm_flush_partial)(pw, sw, n);
            SUFFIX(norm_flush_partial)(pb, sb, n);
        }
    }
}

PYOPT_INLINE void SUFFIX(ln_backward_blocks)(const void *vctx, int64_t begin, int64_t end)
{
    const ln_backward_ctx *c = (const ln_backward_ctx *)vctx;
    const int64_t n = c->cols;
    for (int64_t blk = begin; blk < end; blk++) {
        double *pw = c->partial_w + blk * n, *pb = c->partial_b + blk * n;
        memset(pw, 0, (size_t)n * sizeof(double));
        memset(pb, 0, (size_t)n * sizeof(double));
        /* float64 rows accumulate straight into the float64 partials */
        T *sw = c->scratch ? (T *)c->scratch + 2 * blk * c->row_stride : (T *)pw;
        T *sb = c->scratch ? sw + c->row_stride : (T *)pb;
        if (c->scratch) {
            memset(sw, 0, (size_t)n * sizeof(T));
            memset(sb, 0, (size_t)n * sizeof(T));
        }
        const int64_t r0 = blk * c->rows_per_block;
        const int64_t r1 = r0 + c->rows_per_block < c->rows ? r0 + c->rows_per_block : c->rows;
        if (c->weight) SUFFIX(ln_backward_rows)(c, r0, r1, pw, pb, sw, sb, 1);
        else SUFFIX(ln_backward_rows)(c, r0, r1, pw, pb, sw, sb, 0);
    }
    if (c->stream) norm_stream_fence();
}

static void SUFFIX(ln_forward_base)(const void *c, int64_t b, int64_t e) { SUFFIX(ln_forward_rows)(c, b, e); }
PYOPT_TARGET_AVX2 static void SUFFIX(ln_forward_avx2)(const void *c, int64_t b, int64_t e)
{
    SUFFIX(ln_forward_rows)(c, b, e);
}
static void SUFFIX(ln_backward_base)(const void *c, int64_t b, int64_t e) { SUFFIX(ln_backward_blocks)(c, b, e); }
PYOPT_TARGET_AVX2 static void SUFFIX(ln_backward_avx2)(const void *c, int64_t b, int64_t e)
{
    SUFFIX(ln_backward_blocks)(c, b, e);
}

int SUFFIX(pyopt_layer_norm_forward)(int64_t rows, int64_t cols, const T *x, const T *weight, const T *bias,
                                     double eps, T *y, T *mean, T *rstd, int isa)
{
    isa = pyopt_resolve_isa(isa);
    if (isa < 0) return PYOPT_ERR_ISA;
    const int64_t touched = 2 * rows * cols * (int64_t)sizeof(T);
    ln_forward_ctx ctx = {cols, x, weight, bias, y, mean, rstd, eps, pyopt_stream_outputs(touched)};
    norm_parallel_items(&ctx, rows, cols,
                        isa == PYOPT_ISA_AVX2 ? SUFFIX(ln_forward_avx2) : SUFFIX(ln_forward_base));
    return PYOPT_OK;
}

int SUFFIX(pyopt_layer_norm_backward)(int64_t rows, int64_t cols, const T *dy, const T *x, const T *weight,
                                      const T *mean, const T *rstd, T *dx, T *dweight, T *dbias, int isa)
{
    isa = pyopt_resolve_isa(isa);
    if (isa < 0) return PYOPT_ERR_ISA;
    if (cols == 0) return PYOPT_OK; /* dx, dweight (and dbias) are empty */
    const int64_t per = norm_rows_per_block(rows);
    const int64_t n_blocks = rows > 0 ? (rows + per - 1) / per : 0;
    const int chunked = sizeof(T) == sizeof(float);
    const int64_t row_bytes = cols * (int64_t)sizeof(T), stride = norm_partial_stride(row_bytes);
    double *partial = NULL;
    if (n_blocks > 0) { /* float64 partials, then (float32) the row-chunk rows, placed (norm_far_page_offset) */
        partial = (double *)malloc((size_t)(2 * n_blocks * cols) * sizeof(double) +
                                   (chunked ? (size_t)(2 * n_blocks * stride + 2 * NORM_PAGE_BYTES) : 0));
        if (!partial) return PYOPT_ERR_NO_MEMORY;
    }
    const void *loaded[3] = {dy, x, dx};
    ln_backward_ctx ctx = {rows, cols, per, dy, x, weight, mean, rstd, dx, partial,
                           partial ? partial + n_blocks * cols : NULL,
                           partial && chunked ? norm_place_partials(partial + 2 * n_blocks * cols,
                                                                    norm_far_page_offset(loaded, 3, row_bytes))
                                              : NULL,
                           stride / (int64_t)sizeof(T), pyopt_stream_outputs(3 * rows * cols * (int64_t)sizeof(T))};
    norm_parallel_items(&ctx, n_blocks, per * cols,
                        isa == PYOPT_ISA_AVX2 ? SUFFIX(ln_backward_avx2) : SUFFIX(ln_backward_base));
    /* zero rows: dweight = dbias = 0, the empty sum */
    norm_reduce_ctx red_w = {n_blocks, cols, ctx.partial_w, dweight}, red_b = {n_blocks, cols, ctx.partial_b, dbias};
    norm_parallel_items(&red_w, cols, n_blocks, SUFFIX(norm_reduce_blocks));
    norm_parallel_items(&red_b, cols, n_blocks, SUFFIX(norm_reduce_blocks));
    free(partial);
    return PYOPT_OK;
}

#endif
