/* RMSNorm forward and fused backward over rows of `cols` contiguous elements.
 *
 * Forward, per row (pyopt/reference/rms_norm.py is the spec):
 *     rstd = 1 / sqrt(sum(x^2) / n + eps)   (float64 accumulation),   y = x * rstd * w
 * Backward, per row, with g = dy * w and xhat = x * rstd:
 *     dx = rstd * (g - xhat * mean(g * xhat)),   dweight = sum_rows dy * xhat
 * Bytes per element (fp32): forward read x, write y = 8; backward read dy, x, write dx = 12.
 * Parallel structure, determinism and the float32 backward chunks as in layer_norm.c: the forward by blocks of
 * rows, the backward one row at a time, dweight from a fixed number of row blocks summed in block order.
 *
 * This file is its own template: instantiate.h includes it once for float and once for double (T, SUFFIX). */
#ifndef PYOPT_TEMPLATE
#include "norm_common.h"

typedef struct {
    int64_t cols;
    const void *x, *weight;
    void *y, *rstd;
    double eps;
    int stream; /* non-temporal stores for y (norm_common.h) */
} rms_forward_ctx;

typedef struct {
    int64_t rows, cols, rows_per_block;
    const void *dy, *x, *weight, *rstd;
    void *dx;
    double *partial_w; /* [block][cols] */
    void *scratch;     /* float32: [block] row-chunk partial rows, row_stride elements apart (placed clear of the
                        * inputs' page offsets, norm_common.h); NULL for float64 */
    int64_t row_stride;
    int stream;        /* non-temporal stores for dx */
} rms_backward_ctx;

#define PYOPT_TEMPLATE_FILE "rms_norm.c"
#include "instantiate.h"

#else /* ---------------- per-dtype part ---------------- */
#include "norm_lanes.h"

/* Rows [begin, end) in blocks (norm_block_rows, as LayerNorm's forward): the sums of squares of a block's rows,
 * then their rstd side by side, then the rows written, each prefetching row r + dist (norm_ahead_rows).  Against
 * one row at a time prefetching the next (until 2026-12-07; Zen 5, 2 threads, out of cache, A/B in one process):
 * 0.86-0.98x the time at 65536 x 128 (six runs), 0.84-0.93x at 8192 x 768 and 0.99-1.08x at 2048 x 4096 (four
 * each).  Same bits. */
PYOPT_INLINE void SUFFIX(rms_forward_rows)(const void *vctx, int64_t begin, int64_t end)
{
    const rms_forward_ctx *c = (const rms_forward_ctx *)vctx;
    const int64_t n = c->cols, row_bytes = n * (int64_t)sizeof(T);
    const T *x = (const T *)c->x, *w = (const T *)c->weight;
    T *y = (T *)c->y, *rstd = (T *)c->rstd;
    const int64_t dist = norm_ahead_rows(row_bytes), block = norm_block_rows(row_bytes);
    for (int64_t r0 = begin; r0 < end; r0 += block) {
        const int64_t m = r0 + block < end ? block : end - r0;
        double ss[NORM_BLOCK_ROWS];
        T r[NORM_BLOCK_ROWS];
        for (int64_t k = 0; k < m; k++) ss[k] = SUFFIX(norm_sum_sq)(x + (r0 + k) * n, n);
        for (int64_t k = 0; k < m; k++) r[k] = (T)(1.0 / sqrt(ss[k] / (double)n + c->eps));
        for (int64_t k = 0; k < m; k++) {
            const int64_t row = r0 + k;
            const T *xr = x + row * n, *pf = row + dist < end ? xr + dist * n : NULL, rk = r[k];
            T *yr = y + row * n;
            if (w) NORM_STORE_ROW(T, yr, n, c->stream, pf, NULL, j, (xr[j] * rk) * w[j]);
            else NORM_STORE_ROW(T, yr, n, c->stream, pf, NULL, j, xr[j] * rk);
            rstd[row] = rk;
        }
    }
    if (c->stream) norm_stream_fence();
}

/* dx[j] of one row, adding the row's dweight term to the partial sw (T; float32 chunks are flushed into the
 * float64 partials every NORM_FLUSH_ROWS rows, as in layer_norm.c). */
PYOPT_INLINE T SUFFIX(rms_dx)(int64_t j, const T *restrict dy, const T *restrict x, const T *restrict w, T rstd_t,
                              T mean_gxhat, T *restrict sw, const int has_w)
{
    const T xhat = x[j] * rstd_t;
    const T g = has_w ? dy[j] * w[j] : dy[j];
    sw[j] += dy[j] * xhat;
    return (g - xhat * mean_gxhat) * rstd_t;
}

/* One row of the backward: the row sum, then dx (streamed when the call is large) with the next row's dy and x
 * prefetched. */
PYOPT_INLINE void SUFFIX(rms_backward_row)(const T *restrict dy, const T *restrict x, const T *restrict w,
                                           T rstd_t, T *restrict dx, T *restrict sw, int64_t n, const int has_w,
                                           const int stream, const T *ahead_dy, const T *ahead_x)
{
    const double r = (double)rstd_t;
    const T mean_gxhat = (T)(r * SUFFIX(norm_grad_dot)(dy, w, x, n, has_w) / (double)n);
    NORM_STORE_ROW(T, dx, n, stream, ahead_dy, ahead_x, j,
                   SUFFIX(rms_dx)(j, dy, x, w, rstd_t, mean_gxhat, sw, has_w));
}

PYOPT_INLINE void SUFFIX(rms_backward_blocks)(const void *vctx, int64_t begin, int64_t end)
{
    const rms_backward_ctx *c = (const rms_backward_ctx *)vctx;
    const int64_t n = c->cols;
    const T *dy = (const T *)c->dy, *x = (const T *)c->x, *w = (const T *)c->weight, *rstd = (const T *)c->rstd;
    T *dx = (T *)c->dx;
    for (int64_t blk = begin; blk < end; blk++) {
        double *pw = c->partial_w + blk * n;
        memset(pw, 0, (size_t)n * sizeof(double));
        T *sw = c->scratch ? (T *)c->scratch + blk * c->row_stride : (T *)pw; /* float64 rows: straight into pw */
        if (c->scratch) memset(sw, 0, (size_t)n * sizeof(T));
        const int64_t r0 = blk * c->rows_per_block;
        const int64_t r1 = r0 + c->rows_per_block < c->rows ? r0 + c->rows_per_block : c->rows;
        for (int64_t r = r0; r < r1; r++) {
            const int64_t next = (r + 1 < r1 ? r + 1 : r) * n;
            if (w)
                SUFFIX(rms_backward_row)(dy + r * n, x + r * n, w, rstd[r], dx + r * n, sw, n, 1, c->stream,
                                         dy + next, x + next);
            else
                SUFFIX(rms_backward_row)(dy + r * n, x + r * n, w, rstd[r], dx + r * n, sw, n, 0, c->stream,
                                         dy + next, x + next);
            if (c->scratch && ((r - r0 + 1) % NORM_FLUSH_ROWS == 0 || r + 1 == r1))
                SUFFIX(norm_flush_partial)(pw, sw, n);
        }
    }
    if (c->stream) norm_stream_fence();
}

static void SUFFIX(rms_forward_base)(const void *c, int64_t b, int64_t e) { SUFFIX(rms_forward_rows)(c, b, e); }
PYOPT_TARGET_AVX2 static void SUFFIX(rms_forward_avx2)(const void *c, int64_t b, int64_t e)
{
    SUFFIX(rms_forward_rows)(c, b, e);
}
static void SUFFIX(rms_backward_base)(const void *c, int64_t b, int64_t e) { SUFFIX(rms_backward_blocks)(c, b, e); }
PYOPT_TARGET_AVX2 static void SUFFIX(rms_backward_avx2)(const void *c, int64_t b, int64_t e)
{
    SUFFIX(rms_backward_blocks)(c, b, e);
}

int SUFFIX(pyopt_rms_norm_forward)(int64_t rows, int64_t cols, const T *x, const T *weight, double eps, T *y,
                                   T *rstd, int isa)
{
    isa = pyopt_resolve_isa(isa);
    if (isa < 0) return PYOPT_ERR_ISA;
    rms_forward_ctx ctx = {cols, x, weight, y, rstd, eps, pyopt_stream_outputs(2 * rows * cols * (int64_t)sizeof(T))};
    norm_parallel_items(&ctx, rows, cols,
                        isa == PYOPT_ISA_AVX2 ? SUFFIX(rms_forward_avx2) : SUFFIX(rms_forward_base));
    return PYOPT_OK;
}

int SUFFIX(pyopt_rms_norm_backward)(int64_t rows, int64_t cols, const T *dy, const T *x, const T *weight,
                                    const T *rstd, T *dx, T *dweight, int isa)
{
    isa = pyopt_resolve_isa(isa);
    if (isa < 0) return PYOPT_ERR_ISA;
    if (cols == 0) return PYOPT_OK; /* dx and dweight are empty */
    const int64_t per = norm_rows_per_block(rows);
    const int64_t n_blocks = rows > 0 ? (rows + per - 1) / per : 0;
    const int chunked = sizeof(T) == sizeof(float);
    const int64_t row_bytes = cols * (int64_t)sizeof(T), stride = norm_partial_stride(row_bytes);
    double *partial = NULL;
    if (n_blocks > 0) { /* float64 partials, then (float32) the row-chunk rows, placed as in layer_norm.c */
        partial = (double *)malloc((size_t)(n_blocks * cols) * sizeof(double) +
                                   (chunked ? (size_t)(n_blocks * stride + 2 * NORM_PAGE_BYTES) : 0));
        if (!partial) return PYOPT_ERR_NO_MEMORY;
    }
    const void *loaded[3] = {dy, x, dx};
    rms_backward_ctx ctx = {rows, cols, per, dy, x, weight, rstd, dx, partial,
                            partial && chunked ? norm_place_partials(partial + n_blocks * cols,
                                                                     norm_far_page_offset(loaded, 3, row_bytes))
                                               : NULL,
                            stride / (int64_t)sizeof(T), pyopt_stream_outputs(3 * rows * cols * (int64_t)sizeof(T))};
    norm_parallel_items(&ctx, n_blocks, per * cols,
                        isa == PYOPT_ISA_AVX2 ? SUFFIX(rms_backward_avx2) : SUFFIX(rms_backward_base));
    norm_reduce_ctx red = {n_blocks, cols, partial, dweight};
    norm_parallel_items(&red, cols, n_blocks, SUFFIX(norm_reduce_blocks));
    free(partial);
    return PYOPT_OK;
}

#endif
