/* Machinery the norm kernels share (layer_norm.c, rms_norm.c, batch_norm.c): the parallel loop over independent
 * work items, the fixed-order combination of lane accumulators, and the block partition that makes every
 * reduction independent of the thread count.  The dtype-templated sums are in norm_lanes.h. */
#ifndef PYOPT_NORM_COMMON_H
#define PYOPT_NORM_COMMON_H

#include <stdlib.h>
#include <string.h>

#include "common.h"

/* Reductions over a row keep NORM_LANES float64 partial sums; element i goes to lane i mod NORM_LANES and the
 * lanes are combined in one fixed tree.  The order therefore depends only on the length, not on the ISA, the
 * alignment or the thread count: the baseline and the AVX2 copy give bitwise the same statistics. */
#define NORM_LANES 16

PYOPT_INLINE double norm_combine_lanes(const double *acc)
{
    double a[8];
    for (int k = 0; k < 8; k++) a[k] = acc[k] + acc[k + 8];
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

/* Visits i = 0 .. n-1 with k = i mod NORM_LANES: whole groups of NORM_LANES first (gcc vectorizes the inner
 * loop across lanes), then the tail.  The body sees the lane k and the index i. */
#define NORM_LANE_LOOP(n, k, i, ...)                                                  \
    do {                                                                              \
        int64_t lane_base_ = 0;                                                       \
        for (; lane_base_ + NORM_LANES <= (n); lane_base_ += NORM_LANES)              \
            for (int k = 0; k < NORM_LANES; k++) {                                    \
                const int64_t i = lane_base_ + k;                                     \
                __VA_ARGS__                                                           \
            }                                                                         \
        for (int k = 0; lane_base_ + k < (n); k++) {                                  \
            const int64_t i = lane_base_ + k;                                         \
            __VA_ARGS__                                                               \
        }                                                                             \
    } while (0)

/* fn(ctx, begin, end) processes items [begin, end); items are independent and each is computed the same way
 * whichever thread takes it, so the split only changes who does the work, never a bit of the result. */
typedef void (*norm_items_fn)(const void *ctx, int64_t begin, int64_t end);

/* Runs fn over n_items items of about work_per_item elements each: serially when the whole call is small (an
 * OpenMP fork/join costs more than it saves there), else one static contiguous range per thread. */
static inline void norm_parallel_items(const void *ctx, int64_t n_items, int64_t work_per_item, norm_items_fn fn)
{
    if (n_items <= 0) return;
#ifdef _OPENMP
    int64_t work = work_per_item > 0 ? work_per_item : 1;
    if (n_items > 1 && n_items > PYOPT_SERIAL_MAX_ELEMENTS / work && omp_get_max_threads() > 1) {
#pragma omp parallel
        {
            int64_t n_threads = omp_get_num_threads(), tid = omp_get_thread_num();
            int64_t per = (n_items + n_threads - 1) / n_threads;
            int64_t lo = tid * per < n_items ? tid * per : n_items;
            int64_t hi = lo + per < n_items ? lo + per : n_items;
            if (lo < hi) fn(ctx, lo, hi);
        }
        return;
    }
#endif
    fn(ctx, 0, n_items);
}

/* Row blocks of the fused LayerNorm/RMSNorm backward.  Each block accumulates its rows' dweight/dbias terms
 * into its own float64 partial row and the partials are summed in block order, so the number of blocks must
 * not depend on the thread count: at most NORM_ROW_BLOCKS blocks (enough to keep a few dozen cores busy) of at
 * least NORM_MIN_BLOCK_ROWS rows (so the partials stay a small fraction of the traffic). */
#define NORM_ROW_BLOCKS 32
#define NORM_MIN_BLOCK_ROWS 8

/* out[j] = sum over blocks of partial[block][j] in block order (norm_reduce_blocks in norm_lanes.h). */
typedef struct {
    int64_t n_blocks, cols;
    const double *partial; /* [n_blocks][cols] */
    void *out;             /* [cols], the kernel's dtype */
} norm_reduce_ctx;

static inline int64_t norm_rows_per_block(int64_t rows)
{
    int64_t per = (rows + NORM_ROW_BLOCKS - 1) / NORM_ROW_BLOCKS;
    return per > NORM_MIN_BLOCK_ROWS ? per : NORM_MIN_BLOCK_ROWS;
}

/* A float64 value split into a T-rounded high part and the T-rounded remainder: x - mean is computed as
 * (x - hi) - lo, which keeps the centred value accurate to its own precision even when |mean| >> spread
 * (rows like 1e4 + 1e-2 randn), without widening every element to float64. */
#define NORM_SPLIT(T, value, hi, lo) \
    do {                             \
        hi = (T)(value);             \
        lo = (T)((value) - (double)hi); \
    } while (0)

#endif
