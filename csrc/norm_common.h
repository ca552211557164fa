/* Machinery the norm kernels share (layer_norm.c, rms_norm.c, batch_norm.c): the parallel loop over independent
 * work items, the fixed-order combination of lane accumulators, and the block partition that makes every
 * reduction independent of the thread count.  The dtype-templated sums are in norm_lanes.h. */
#ifndef PYOPT_NORM_COMMON_H
#define PYOPT_NORM_COMMON_H

#include <stdlib.h>
#include <string.h>

#include "common.h"

/* Reductions over a row keep NORM_LANES = 16 float64 partial sums, as four 4-wide vectors (GCC vector
 * extensions: one register each in the AVX2 copy, two SSE2 registers in the baseline); element i of a row goes
 * to lane i mod 16 and the lanes are combined in one fixed tree.  The order of every sum therefore depends only
 * on the length: not on the ISA, the alignment or the thread count, so the baseline and the AVX2 copies give
 * bitwise the same statistics. */
#define NORM_LANES 16
typedef double norm_v4d __attribute__((vector_size(32)));
typedef float norm_v4f __attribute__((vector_size(16)));
/* the same vectors at any element-aligned address: loads through these types are single unaligned loads */
typedef double norm_v4d_u __attribute__((vector_size(32), aligned(8), may_alias));
typedef float norm_v4f_u __attribute__((vector_size(16), aligned(4), may_alias));

/* v = p[0..3] widened to float64 (p: float or double; unaligned) */
#define NORM_LOAD4(v, p)                                     \
    do {                                                     \
        if (sizeof(*(p)) == sizeof(float))                   \
            (v) = __builtin_convertvector(*(const norm_v4f_u *)(const void *)(p), norm_v4d); \
        else                                                 \
            (v) = *(const norm_v4d_u *)(const void *)(p);    \
    } while (0)

/* v0..v3 = p[0..15] widened to float64 */
#define NORM_LOAD16(v, p)            \
    do {                             \
        NORM_LOAD4(v##0, (p));       \
        NORM_LOAD4(v##1, (p) + 4);   \
        NORM_LOAD4(v##2, (p) + 8);   \
        NORM_LOAD4(v##3, (p) + 12);  \
    } while (0)

/* lanes[0..15] = the four accumulators, for the tail and the final tree */
#define NORM_SPILL(lanes, a)                       \
    do {                                           \
        memcpy((lanes), &a##0, sizeof(norm_v4d));  \
        memcpy((lanes) + 4, &a##1, sizeof(norm_v4d)); \
        memcpy((lanes) + 8, &a##2, sizeof(norm_v4d)); \
        memcpy((lanes) + 12, &a##3, sizeof(norm_v4d)); \
    } while (0)

/* a0..a3 = lanes[0..15] (the inverse of NORM_SPILL) */
#define NORM_UNSPILL(a, lanes)                       \
    do {                                             \
        memcpy(&a##0, (lanes), sizeof(norm_v4d));      \
        memcpy(&a##1, (lanes) + 4, sizeof(norm_v4d));  \
        memcpy(&a##2, (lanes) + 8, sizeof(norm_v4d));  \
        memcpy(&a##3, (lanes) + 12, sizeof(norm_v4d)); \
    } while (0)

/* float32 fast path of the backward sums: float32 arithmetic (8-wide) over chunks of at most NORM_CHUNK elements
 * per lane group, each chunk's 16 float32 lane sums then added to the float64 lanes.  The rounding of a chunk is
 * that of a float32 sum of NORM_CHUNK / 16 terms (~5e-7 relative), far inside the backward's tolerance, at a
 * third of the instructions of widening every element. */
typedef float norm_v8f __attribute__((vector_size(32)));
#define NORM_CHUNK 128

/* v0, v1 = p[0..15] as two 8-wide float32 vectors (unaligned) */
#define NORM_LOAD16F(v, p)                                \
    do {                                                  \
        memcpy(&v##0, (p), sizeof(norm_v8f));             \
        memcpy(&v##1, (p) + 8, sizeof(norm_v8f));         \
    } while (0)

/* The tail of a row of n >= 16 float32 values whose first n - r are summed (r < 16): the last 16 values are
 * loaded again (NORM_LOAD16F(v, x + n - 16)) and the lanes already summed are cleared with masks m0, m1
 * (NORM_TAIL_MASK16, NORM_MASKF), so the tail costs one vector step instead of a trip of the lanes through
 * memory.  Value k of those 16 goes to lane k: a fixed order, the same for every ISA. */
typedef int32_t norm_v8i __attribute__((vector_size(32)));
#define NORM_TAIL_MASK16(m, r)                                         \
    do {                                                               \
        const norm_v8i iota_ = {0, 1, 2, 3, 4, 5, 6, 7};               \
        m##0 = iota_ >= (int32_t)(16 - (r));                           \
        m##1 = iota_ + 8 >= (int32_t)(16 - (r));                       \
    } while (0)
#define NORM_MASKF(v, m) ((norm_v8f)((norm_v8i)(v) & (m)))

/* L0..L3 (float64 lanes 0-3, 4-7, 8-11, 12-15) += the 16 float32 lanes of a0, a1.  Widened element by element
 * in a vector constructor, which GCC turns into one vcvtps2pd ymm, xmm per quarter in the AVX2 copy; the earlier
 * __builtin_convertvector of 4-float halves (taken through memory or with __builtin_shufflevector) compiled to two
 * half conversions and a vinsertf128 each, with trips through the stack: ~90 instructions per flush of the
 * backward's three sums, against ~210 in the loop over the 128 elements between flushes (one thread, in cache:
 * 0.87-0.95x the time of LayerNorm 64x768 and BatchNorm 8x64x14x14 forward and backward; out of cache, memory
 * hides it).  Exact conversions, the same additions: the same bits. */
#define NORM_WIDEN4(v, k) ((norm_v4d){(v)[k], (v)[(k) + 1], (v)[(k) + 2], (v)[(k) + 3]})
#define NORM_FLUSH16F(L, a)                  \
    do {                                     \
        L##0 += NORM_WIDEN4(a##0, 0);        \
        L##1 += NORM_WIDEN4(a##0, 4);        \
        L##2 += NORM_WIDEN4(a##1, 0);        \
        L##3 += NORM_WIDEN4(a##1, 4);        \
    } while (0)

/* float32 rows: the mean of the first min(n, 16) elements in float32, a shift for the one-pass centred sums
 * (norm_mean_var_sums in norm_lanes.h).  For most rows it lies within a fraction of a standard deviation of the row's
 * mean; the caller checks how far it was and sums again around the mean when it was far.  Same operations, so
 * the same bits, for every ISA. */
PYOPT_INLINE float norm_shift_f32(const float *x, int64_t n)
{
    if (n >= 16) {
        norm_v8f x0, x1;
        NORM_LOAD16F(x, x);
        const norm_v8f v = x0 * 0.0625f + x1 * 0.0625f; /* scaled first (exact): no overflow near FLT_MAX */
        return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
    }
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += x[i] / (float)n;
    return s;
}

/* How far a shift may lie from the mean, in standard deviations squared, for the one-pass centred sums: the sum
 * of squares around it is then at most 1 + NORM_SHIFT_FAR times the variance's, so its rounding (~5e-7 relative,
 * NORM_CHUNK) costs at most ~2e-6 of the variance.  Farther shifts sum again around the mean. */
#define NORM_SHIFT_FAR 3.0

/* The mean and the biased variance (unclamped) from centred sums s = sum d, q = sum d^2 of n values around
 * `centre`; returns whether the centre was far (NORM_SHIFT_FAR: sum again around *mean then).  NaN is not far. */
PYOPT_INLINE int norm_centred_stats(double s, double q, double n, double centre, double *mean, double *var)
{
    const double shift = s / n, v = q / n - shift * shift;
    *mean = centre + shift;
    *var = v;
    return shift * shift > NORM_SHIFT_FAR * v;
}

PYOPT_INLINE double norm_combine_lanes(const double *acc)
{
    double a[8];
    for (int k = 0; k < 8; k++) a[k] = acc[k] + acc[k + 8];
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

/* 16 float64 lanes held as four vectors (v0: lanes 0-3 ... v3: 12-15): a running sum that a float32 row
 * function adds into (the *_acc functions of norm_lanes.h), so BatchNorm can sum a channel's runs into one set
 * of lanes and combine them once.  Passed by pointer to always-inline functions, it stays in registers. */
typedef struct {
    norm_v4d v0, v1, v2, v3;
} norm_acc16;
#define NORM_ACC16_ZERO {{0}, {0}, {0}, {0}}

/* norm_combine_lanes of the 16 lanes, the same additions in the same order done on vectors, in registers:
 * b[k] = (acc[k] + acc[k+8]) + (acc[k+4] + acc[k+12]), then (b0 + b2) + (b1 + b3). */
PYOPT_INLINE double norm_acc16_total(const norm_acc16 *a)
{
    const norm_v4d b = (a->v0 + a->v2) + (a->v1 + a->v3);
    return (b[0] + b[2]) + (b[1] + b[3]);
}

/* How far ahead the LayerNorm and RMSNorm forwards prefetch: two rows, or as many as span NORM_AHEAD_BYTES.
 * Two rows of 128 floats are only 1 KiB ahead, which did not keep enough of x on its way: 8 KiB ahead took
 * 0.82-0.95x the time at 65536 x 128 (LayerNorm, 2 threads, out of cache, Zen 5, A/B in one process, seven
 * runs), 0.89-0.97x at 32768 x 256 and 0.95-0.98x at 8192 x 768 (4 and 16 KiB: within noise of 8 at 128
 * columns, 16 KiB 1.01x at 768). */
#define NORM_AHEAD_BYTES 8192

/* Rows per block of the LayerNorm and RMSNorm forwards: as many as fit in NORM_BLOCK_BYTES, 1 to
 * NORM_BLOCK_ROWS.  A row's statistics end in a chain of dependent operations (lane totals, divisions, a square
 * root), and the core retires in order.  Taken row by row (LayerNorm: row r + 1's statistics before row r's
 * output, as until 2026-12-07), at 128 columns each chain held up the rows behind it: LayerNorm 65536 x 128
 * (Zen 5, 2 threads, out of cache) took 1.85-1.94 ms, 1.36-1.45 ms with the statistics replaced by constants
 * (an NT copy: 1.30-1.38), 1.62-1.77 ms without the square root and division.  A block takes the sums of its
 * rows first (independent chains), then their means, variances and rstd side by side, then writes the rows:
 * 0.82-1.05x the time at 65536 x 128 (14 A/B runs, median 0.92x), the same at 8192 x 768 and 2048 x 4096 (a
 * block of one row).  Same bits. */
#define NORM_BLOCK_ROWS 8
#define NORM_BLOCK_BYTES 4096

static inline int64_t norm_ahead_rows(int64_t row_bytes)
{
    const int64_t d = row_bytes > 0 ? (NORM_AHEAD_BYTES + row_bytes - 1) / row_bytes : 2;
    return d < 2 ? 2 : d;
}

static inline int64_t norm_block_rows(int64_t row_bytes)
{
    const int64_t b = row_bytes > 0 ? NORM_BLOCK_BYTES / row_bytes : NORM_BLOCK_ROWS;
    return b < 1 ? 1 : b > NORM_BLOCK_ROWS ? NORM_BLOCK_ROWS : b;
}

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
/* float32 rows add their dweight/dbias terms to float32 row-chunk partials, flushed into the block's float64
 * partials every NORM_FLUSH_ROWS rows: a float32 sum of at most 16 terms (~1e-6 relative) at the cost of a
 * float32 add, where widening every term costs twice the second pass.  The flush points are fixed from the
 * block's first row, so the result still does not depend on the thread count. */
#define NORM_FLUSH_ROWS 16
#define NORM_MIN_BLOCK_ROWS 8

/* ---- Where the float32 row-chunk partials go ----
 * The backward's second pass loads dy, x (and w) at column j and stores its dweight/dbias partials sw[j], sb[j]
 * and dx.  When sw or sb lies just past the rows being read within a 4 KiB page (bits 11..0 of the addresses
 * nearly equal), the core takes the loads for dependent on those stores ("4K aliasing") and waits for them:
 * LayerNorm backward at 2048x4096 took 16.3 ms instead of 7.4 with dy, x, dx page-aligned and the partials at
 * page offset 16 (where malloc puts an mmap'd block, as numpy's large arrays get) rather than 1024, and which
 * offset malloc returned depended on the heap's history (it serves from the heap once a large block has been
 * freed).  Each partial row therefore starts at a page offset chosen per call, as far as possible (mod 4 KiB)
 * from those of the arrays' first rows, and the rows lie whole pages apart so every block's rows keep it.
 * Placement only: the values are the same. */
#define NORM_PAGE_BYTES 4096

/* The offset within a page, a multiple of 256 bytes, farthest (circularly) from the page offsets of rows 0-3 of
 * each of the n arrays (rows of row_bytes; later rows repeat these offsets when row_bytes is a multiple of 1 KiB,
 * and pass through all of them otherwise, where no offset avoids every row). */
static inline int64_t norm_far_page_offset(const void *const *arrays, int n, int64_t row_bytes)
{
    int64_t best = 0, best_gap = -1;
    for (int64_t o = 0; o < NORM_PAGE_BYTES; o += 256) {
        int64_t gap = NORM_PAGE_BYTES;
        for (int a = 0; a < n; a++)
            for (int64_t r = 0; r < 4; r++) {
                const int64_t at = (int64_t)(((uintptr_t)arrays[a] + (uintptr_t)(r * row_bytes)) % NORM_PAGE_BYTES);
                const int64_t d = (o - at + NORM_PAGE_BYTES) % NORM_PAGE_BYTES;
                const int64_t circ = d < NORM_PAGE_BYTES - d ? d : NORM_PAGE_BYTES - d;
                if (circ < gap) gap = circ;
            }
        if (gap > best_gap) best_gap = gap, best = o;
    }
    return best;
}

/* Bytes between consecutive partial rows of `row_bytes`: whole pages, so every row keeps the chosen offset. */
static inline int64_t norm_partial_stride(int64_t row_bytes)
{
    return (row_bytes + NORM_PAGE_BYTES - 1) / NORM_PAGE_BYTES * NORM_PAGE_BYTES;
}

/* The first partial row inside a workspace whose partial rows begin at `start` (with 2 NORM_PAGE_BYTES to spare):
 * the next page boundary plus the chosen offset. */
static inline void *norm_place_partials(void *start, int64_t offset)
{
    const uintptr_t page = ((uintptr_t)start + NORM_PAGE_BYTES - 1) / NORM_PAGE_BYTES * NORM_PAGE_BYTES;
    return (void *)(page + (uintptr_t)offset);
}

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


/* ---- Streaming (non-temporal) output stores ----
 * A call whose arrays take more than half the last-level cache (shared with the other cores and the rest of
 * the model) would see its outputs leave the cache before anyone reads them; a plain store first reads each output line from memory (write-allocate), so an output costs twice
 * its bytes.  Such calls store outputs with non-temporal stores (movntps/movntpd, SSE2: both ISA copies have
 * them), which write whole lines without reading them: LayerNorm's forward then moves 8 bytes per float32
 * element instead of 12.  Values are the same either way; only where they go differs.  pyopt_stream_outputs
 * (runtime.c) decides per call from the bytes it touches. */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define NORM_HAVE_STREAM 1
#else
#define NORM_HAVE_STREAM 0
#endif

/* bytes per streamed block: one cache line */
#define NORM_LINE_BYTES 64

/* dst[0 .. 64 bytes) = src (both 64-byte aligned), bypassing the caches where possible */
static inline void norm_stream_line(void *dst, const void *src, size_t elem_size)
{
#if NORM_HAVE_STREAM
    if (elem_size == sizeof(float)) {
        const float *s = (const float *)src;
        float *d = (float *)dst;
        for (int k = 0; k < 16; k += 4) _mm_stream_ps(d + k, _mm_load_ps(s + k));
    } else {
        const double *s = (const double *)src;
        double *d = (double *)dst;
        for (int k = 0; k < 8; k += 2) _mm_stream_pd(d + k, _mm_load_pd(s + k));
    }
#else
    memcpy(dst, src, NORM_LINE_BYTES);
    (void)elem_size;
#endif
}

/* Makes a thread's streamed stores globally visible before it reports its work done. */
static inline void norm_stream_fence(void)
{
#if NORM_HAVE_STREAM
    _mm_sfence();
#endif
}

/* Elements before dst is line-aligned, at most n; n when no element of dst starts a line. */
static inline int64_t norm_line_head(const void *dst, size_t elem_size, int64_t n)
{
    const uintptr_t misalign = (uintptr_t)dst % NORM_LINE_BYTES;
    if (misalign % elem_size) return n; /* elements straddle lines: no aligned lines to stream */
    const int64_t head = misalign ? (int64_t)((NORM_LINE_BYTES - misalign) / elem_size) : 0;
    return head < n ? head : n;
}

/* Streamed stores wait in the store queue until their line goes out, and a later load whose address matches a
 * queued store's in bits 11..0 is held back until that store is done ("4K aliasing").  Lines written upward
 * thus stall the next lines' loads of any row whose page offset lies just behind the output's (by less than
 * NORM_ALIAS_BYTES); written downward, of any row just ahead of it.  Where it was measured to matter: the
 * LayerNorm backward's row pairs (NORM_STORE_ROW2) with rows of whole pages, so that every row of dy, x, dx
 * keeps its page offset and an unlucky one stalls every line.  At 2048x4096 with dy page-aligned and dx 16-128
 * bytes past it, 12.2-27.7 ms upward against 6.1-8.5 ms downward (5-7 ms at other offsets either way; downward
 * is as slow at 64-128 bytes before it).  Not used elsewhere: at 8192x768 (offsets drifting from row to row)
 * upward was not slow and downward 1.2x slower; RMSNorm's backward at 2048x4096 was not slow upward with dx
 * 64-128 bytes past dy and 1.2-1.4x slower downward.  Whether a row of row_bytes of dst goes down, given the
 * rows its pass loads (src, NULL entries skipped): rows of whole pages, and more of src in the upward danger
 * zone than in the downward one. */
#define NORM_ALIAS_BYTES 256
static inline int norm_lines_down(const void *dst, int64_t row_bytes, const void *const *src, int n_src)
{
    if (row_bytes % NORM_PAGE_BYTES) return 0;
    int up = 0, down = 0;
    for (int k = 0; k < n_src; k++) {
        if (!src[k]) continue;
        const uintptr_t d = ((uintptr_t)dst - (uintptr_t)src[k]) % NORM_PAGE_BYTES;
        up += d > 0 && d < NORM_ALIAS_BYTES;
        down += d > NORM_PAGE_BYTES - NORM_ALIAS_BYTES;
    }
    return up > down;
}

/* The output pass of a row: for (j = 0; j < n; j++) dst[j] = EXPR (EXPR uses j and may update per-element
 * accumulators such as dweight partials).  With `stream`, whole 64-byte lines of dst are computed into a line
 * buffer and streamed (see above), and each line prefetches the same span of the next row's inputs `ahead_a`,
 * `ahead_b` (NULL: none) into L2, so the next row's first pass finds them there and the reads overlap this row's
 * arithmetic; the head before the first line boundary and the tail take plain stores.  Without `stream` (the
 * call fits in cache) it is one plain vectorized loop: a line buffer there only costs (gcc copies it through
 * general registers). */
#define NORM_STORE_ROW(T, dst, n, stream, ahead_a, ahead_b, j, EXPR)                         \
    do {                                                                                    \
        T *restrict dst_ = (dst);                                                           \
        const int64_t n_ = (n);                                                             \
        int64_t at_ = 0;                                                                    \
        if (stream) {                                                                       \
            const T *pa_ = (ahead_a), *pb_ = (ahead_b);                                     \
            const int64_t head_ = norm_line_head(dst_, sizeof(T), n_);                      \
            enum { LINE_ = NORM_LINE_BYTES / sizeof(T) };                                   \
            _Pragma("omp simd") for (int64_t j = 0; j < head_; j++) dst_[j] = (EXPR);       \
            for (at_ = head_; at_ + LINE_ <= n_; at_ += LINE_) {                            \
                T line_[LINE_] __attribute__((aligned(64)));                                \
                if (pa_) __builtin_prefetch(pa_ + at_, 0, 2);                               \
                if (pb_) __builtin_prefetch(pb_ + at_, 0, 2);                               \
                _Pragma("omp simd") for (int64_t k_ = 0; k_ < LINE_; k_++) {                \
                    const int64_t j = at_ + k_;                                             \
                    line_[k_] = (EXPR);                                                     \
                }                                                                           \
                norm_stream_line(dst_ + at_, line_, sizeof(T));                             \
            }                                                                               \
        }                                                                                   \
        _Pragma("omp simd") for (int64_t j = at_; j < n_; j++) dst_[j] = (EXPR);            \
    } while (0)

/* NORM_STORE_ROW for two consecutive rows at once (dst1 = dst0 + n): STMT sets both outputs of element j through
 * the pointers P0 and P1 (and may update per-element accumulators once for the pair).  With `stream` the rows
 * must lie a whole number of lines apart (n * sizeof(T) a multiple of NORM_LINE_BYTES), so they share the head;
 * each line prefetches the same span of the next pair (ahead_a, ahead_b and the rows after them), and the lines
 * go down when norm_lines_down says so for either output row against the rows in SRC. */
#define NORM_STREAM_LINE2_(T, d0_, d1_, n_, at_, pa_, pb_, j, P0, P1, STMT)                 \
    do {                                                                                    \
        enum { LINE_ = NORM_LINE_BYTES / sizeof(T) };                                       \
        T l0_[LINE_] __attribute__((aligned(64))), l1_[LINE_] __attribute__((aligned(64))); \
        __builtin_prefetch(pa_ + at_, 0, 2);                                                \
        __builtin_prefetch(pa_ + n_ + at_, 0, 2);                                           \
        __builtin_prefetch(pb_ + at_, 0, 2);                                                \
        __builtin_prefetch(pb_ + n_ + at_, 0, 2);                                           \
        _Pragma("omp simd") for (int64_t k_ = 0; k_ < LINE_; k_++) {                        \
            const int64_t j = at_ + k_;                                                     \
            T *P0 = l0_ + k_, *P1 = l1_ + k_;                                               \
            STMT;                                                                           \
        }                                                                                   \
        norm_stream_line(d0_ + at_, l0_, sizeof(T));                                        \
        norm_stream_line(d1_ + at_, l1_, sizeof(T));                                        \
    } while (0)
#define NORM_STORE_ROW2(T, dst0, n, stream, ahead_a, ahead_b, SRC, j, P0, P1, STMT)              \
    do {                                                                                    \
        T *restrict d0_ = (dst0);                                                           \
        const int64_t n_ = (n);                                                             \
        T *restrict d1_ = d0_ + n_;                                                         \
        int64_t at_ = 0;                                                                    \
        if (stream) {                                                                       \
            const T *pa_ = (ahead_a), *pb_ = (ahead_b);                                     \
            const int64_t head_ = norm_line_head(d0_, sizeof(T), n_);                       \
            enum { LINE_ = NORM_LINE_BYTES / sizeof(T) };                                   \
            const int64_t end_ = head_ + (n_ - head_) / LINE_ * LINE_, rb_ = n_ * (int64_t)sizeof(T); \
            const int nsrc_ = sizeof(SRC) / sizeof(const void *);                           \
            _Pragma("omp simd") for (int64_t j = 0; j < head_; j++) {                       \
                T *P0 = d0_ + j, *P1 = d1_ + j;                                             \
                STMT;                                                                       \
            }                                                                               \
            if (norm_lines_down(d0_, rb_, SRC, nsrc_) || norm_lines_down(d1_, rb_, SRC, nsrc_)) { \
                for (at_ = end_ - LINE_; at_ >= head_; at_ -= LINE_)                        \
                    NORM_STREAM_LINE2_(T, d0_, d1_, n_, at_, pa_, pb_, j, P0, P1, STMT);    \
            } else {                                                                        \
                for (at_ = head_; at_ < end_; at_ += LINE_)                                 \
                    NORM_STREAM_LINE2_(T, d0_, d1_, n_, at_, pa_, pb_, j, P0, P1, STMT);    \
            }                                                                               \
            at_ = end_;                                                                     \
        }                                                                                   \
        _Pragma("omp simd") for (int64_t j = at_; j < n_; j++) {                            \
            T *P0 = d0_ + j, *P1 = d1_ + j;                                                 \
            STMT;                                                                           \
        }                                                                                   \
    } while (0)

#endif
