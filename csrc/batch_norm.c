/* BatchNorm forward (training and eval) and fused backward over x viewed as [outer][channels][inner]:
 * NCHW is (N, C, H*W), channels-last is (N*H*W, C, 1).  pyopt/reference/batch_norm.py is the spec.
 *
 * Reductions per channel run over fixed tiles of about BN_BLOCK elements taken in memory order (rows x a range
 * of channels x an inner slice), never over per-thread slices.  Each tile is two-pass in cache (its mean, then
 * the sum of squared deviations from it, float64; channels-last vectorized across channels) and the tiles of a
 * channel are combined in a fixed order with Chan's formula: one streaming pass over memory for the statistics,
 * exact centring, and bitwise the same result for any thread count.
 *
 * Training forward: statistics, then per channel save_mean/save_rstd and the running-stat update (float64, as
 * ATen: rm = a mean + (1 - a) rm, rv = a var m/(m-1) + (1 - a) rv), then y = ((x - mean_hi) - mean_lo) * (rstd w)
 * + b in one elementwise pass.  Eval forward: the elementwise pass with the running stats.
 * Backward: one pass of per-channel sums (dy, dy (x - mean), x - mean; float64, with float32 chunks of
 * NORM_CHUNK elements for float32 NCHW runs) then, for batch statistics, one elementwise pass
 * dx = w rstd (dy - mean(dy) - xhat mean(dy xhat)); with running statistics dx = w rstd dy is written during the
 * sums pass.  The residual mean of x - save_mean re-centres xhat (see layer_norm.c).
 * Bytes per element (fp32), the minimum: forward 8, backward 12.  The channel path (planar, a channel within a
 * quarter of the cache) reaches it: its second pass over a channel reads cache.  The tiled path reads x (dy, x)
 * from memory twice in training: 12 forward, 20 backward.
 *
 * This file is its own template: instantiate.h includes it once for float and once for double (T, SUFFIX). */
#ifndef PYOPT_TEMPLATE
#include "norm_common.h"

/* Elements per reduction tile: 64 KiB of float32, so a tile's second pass reads L2, not memory. */
#define BN_BLOCK ((int64_t)16384)

/* Reduction tiles, in memory order: rows [o0, o1) x channels [c0, c1) x inner slice [i0, i1), about BN_BLOCK
 * elements each.  A task takes the tiles of one channel range and slice across a group of consecutive row
 * blocks (at most BN_GROUPS groups) and merges them into one partial per channel, partial block k = group *
 * slices + slice at partial[k * channels + c]; channels are then combined over k in order.  Everything depends
 * only on the shape, never on the thread count, and the partials stay small (at most BN_GROUPS x slices per
 * channel) however many rows a tile holds. */
#define BN_GROUPS 64

typedef struct {
    int64_t outer, channels, inner;
    int64_t rows, chans, slices;   /* rows per tile, channels per tile, slices per run (> 1: runs > BN_BLOCK) */
    int64_t n_ob, n_cb, per_group, n_groups, n_k, n_tasks;
} bn_geom;

static bn_geom bn_make_geom(int64_t outer, int64_t channels, int64_t inner)
{
    bn_geom g = {outer, channels, inner, 1, 1, 1, 0, 0, 0, 0, 0, 0};
    if (inner > BN_BLOCK) {
        g.slices = (inner + BN_BLOCK - 1) / BN_BLOCK;
    } else {
        g.chans = BN_BLOCK / inner < channels ? BN_BLOCK / inner : channels;
        g.rows = BN_BLOCK / (g.chans * inner) > 1 ? BN_BLOCK / (g.chans * inner) : 1;
    }
    g.n_ob = (outer + g.rows - 1) / g.rows;
    g.n_cb = (channels + g.chans - 1) / g.chans;
    g.per_group = (g.n_ob + BN_GROUPS - 1) / BN_GROUPS;
    g.n_groups = g.per_group > 0 ? (g.n_ob + g.per_group - 1) / g.per_group : 0;
    g.n_k = g.n_groups * g.slices;
    g.n_tasks = g.n_groups * g.n_cb * g.slices;
    return g;
}

typedef struct {
    int64_t ob0, ob1, c0, c1, i0, i1, k; /* row blocks [ob0, ob1) of the group, channels, slice, partial block */
} bn_task;

static inline bn_task bn_get_task(const bn_geom *g, int64_t t)
{
    const int64_t s = t % g->slices, cb = (t / g->slices) % g->n_cb, grp = t / g->slices / g->n_cb;
    bn_task b;
    b.ob0 = grp * g->per_group, b.ob1 = b.ob0 + g->per_group < g->n_ob ? b.ob0 + g->per_group : g->n_ob;
    b.c0 = cb * g->chans, b.c1 = b.c0 + g->chans < g->channels ? b.c0 + g->chans : g->channels;
    b.i0 = s * BN_BLOCK, b.i1 = b.i0 + BN_BLOCK < g->inner ? b.i0 + BN_BLOCK : g->inner;
    b.k = grp * g->slices + s;
    return b;
}

/* Rows [*o0, *o1) of row block ob. */
static inline void bn_rows(const bn_geom *g, int64_t ob, int64_t *o0, int64_t *o1)
{
    *o0 = ob * g->rows;
    *o1 = *o0 + g->rows < g->outer ? *o0 + g->rows : g->outer;
}

/* Values per channel in partial block k. */
static inline double bn_block_count(const bn_geom *g, int64_t k)
{
    const int64_t grp = k / g->slices, s = k % g->slices;
    const int64_t o0 = grp * g->per_group * g->rows, o_end = o0 + g->per_group * g->rows;
    const int64_t rows = (o_end < g->outer ? o_end : g->outer) - o0;
    const int64_t len = s * BN_BLOCK + BN_BLOCK < g->inner ? BN_BLOCK : g->inner - s * BN_BLOCK;
    return (double)(rows * len);
}

typedef struct {
    bn_geom g;
    const void *x, *dy, *weight, *bias, *mean, *rstd; /* mean/rstd: save_* (backward) */
    void *y;                                          /* y (forward) or dx (backward) */
    const void *coef;                                 /* per-channel constants of the elementwise pass */
    double *p0, *p1, *p2, *p3;                        /* partials [k][channels] */
    int stream;                                       /* non-temporal stores for y / dx (norm_common.h) */
} bn_ctx;

/* The channel-by-channel path (planar layouts whose channels fit in cache, batch statistics): a task (one
 * channel forward, a group of channels backward: bn_group_channels) computes each channel's statistics over its
 * runs and at once normalizes them (forward) or forms dx (backward), so the second pass reads the channel from
 * cache, not memory: 8 bytes per element forward instead of 12, 12 backward instead of 20.  Each channel is
 * computed the same way by whichever thread takes it, in whichever group. */
typedef struct {
    int64_t outer, channels, inner;
    const void *x, *dy, *weight, *bias;
    const void *mean_in, *rstd_in; /* backward: save_mean, save_rstd */
    void *out;                     /* y or dx */
    void *running_mean, *running_var, *save_mean, *save_rstd; /* forward */
    void *dweight, *dbias;                                    /* backward */
    double momentum, eps;
    int stream;
    int64_t group; /* backward: channels per work item (bn_group_channels) */
} bn_chan_ctx;

/* The channel path needs at least this many tasks to share among threads.  A fixed number, not the
 * thread count: which path runs decides the bits, and they must not depend on the thread count. */
#define BN_MIN_TASKS 8

/* Whether a call takes the channel path: planar, batch statistics, a channel's inputs within a quarter of the
 * cache (so a second pass finds them there), and BN_MIN_TASKS channels or more. */
static inline int bn_by_channel(int64_t outer, int64_t channels, int64_t inner, size_t elem, int n_inputs)
{
    return inner > 1 && channels >= BN_MIN_TASKS &&
           outer * inner * (int64_t)elem * n_inputs <= pyopt_cache_bytes() / 4;
}

/* A channel's runs lie a whole [C][inner] plane apart, so a short run (14 x 14 floats: 12 lines) ends before
 * the hardware prefetcher locks on and every run starts with a full memory latency.  The first pass over a
 * channel therefore prefetches the start of the run BN_AHEAD runs ahead (at most BN_AHEAD_LINES lines: all of
 * a short run, a head start on a long one). */
#define BN_AHEAD 4
#define BN_AHEAD_LINES 32

static inline void bn_prefetch_run(const void *run, int64_t bytes)
{
    const int64_t span = bytes < BN_AHEAD_LINES * NORM_LINE_BYTES ? bytes : BN_AHEAD_LINES * NORM_LINE_BYTES;
    for (int64_t off = 0; off < span; off += NORM_LINE_BYTES) __builtin_prefetch((const char *)run + off, 0, 3);
}

/* Taken one channel at a time, the backward's runs are short hops all over memory (64 x 256 x 14 x 14: runs of
 * 784 bytes, 200 KB apart): the hardware prefetcher never locks on, and even with the prefetches above the
 * backward moved 12.5 GB/s where the triad moved 18-24 (Zen 3).  The backward therefore takes
 * pyopt_bn_group_bytes() worth of channels at a time (12 KB; one channel on Zen 5, where this measured the other
 * way round: runtime.c), in memory order: for each row o the runs of channels [c0, c1) lie side by side, one
 * stretch the prefetcher streams.  Each channel's sums are still added run by run in row order into the
 * channel's own lanes, exactly as one channel at a time would: the group size changes the order in which
 * channels are visited, never a bit of a result, so it may follow the thread count (each thread keeps two
 * groups or more).  Measured on Zen 3 at 64 x 256 x 14 x 14, 2 threads, against one channel at a time: 12 KB groups
 * (16 channels) 0.82-0.94x the time, 6 KB 0.86-1.02x, 24 KB 0.88x; a pattern-only C loop (sums, then a
 * streamed dx) agreed (2.5-2.8 ms by channel, 1.7-1.9 ms in 6-12 KB groups, 2 KB as slow as by channel).
 * Not done: pipelining group g + 1's sums with group g's dx row by row (1.0x: no better than one channel at a
 * time), and the forward in groups (1.16-1.32x slower than by channel, whose next channel's runs arrive
 * in L2 while the current one streams out; 1.0-1.02x with its rows streamed as stretches, BN_STORE_STRETCH). */
/* dx = a ((dy - b) - xhat q), xhat = ((x - h) - l) r: a = w rstd, b = mean(dy), h + l = the mean of x split in two
 * (NORM_SPLIT), r = rstd, q = mean(dy xhat) */
#define BN_DX_VALUE(dy, x, a, b, h, l, r, q) ((a) * (((dy) - (b)) - ((((x) - (h)) - (l)) * (r)) * (q)))

/* dst[j] = EXPR for j < n, a group's stretch of runs of `inner` (k in EXPR: the channel of element j within the
 * group).  Streamed (stream: whole lines non-temporal, the partial ones at the ends plain), a line that holds the
 * end of one run and the start of the next takes each element's own channel; stored run by run, such a line would
 * be written in two plain halves (read from memory first, then written back: at 64 x 256 x 14 x 14 one line in 12
 * of a 784-byte run, 1.1x the time).  Each streamed line prefetches into L2 the same line of ahead_a, ahead_b (the
 * next group's stretch; NULL: none) while j < n_ahead.  The partial line at each end is shared with the stretch
 * before or after (the previous or next group's in the same row): slot_in (NULL: none) holds the previous
 * stretch's part of the first one, which is then streamed whole, and the part of the last one goes to slot_out
 * (NULL: stored plainly) for the next stretch to complete (streamed only; the stretch at least a line long). */
#define BN_STORE_STRETCH(T, dst, n, inner, stream, n_ahead, ahead_a, ahead_b, slot_in, slot_out, k, j, EXPR)       \
    do {                                                                                                            \
        T *restrict d_ = (dst);                                                                                     \
        const int64_t n_ = (n), run_ = (inner), na_ = (n_ahead);                                                    \
        const T *pa_ = (ahead_a), *pb_ = (ahead_b), *si_ = (slot_in);                                               \
        enum { LINE_ = NORM_LINE_BYTES / sizeof(T) };                                                               \
        const int64_t head_ = (stream) ? norm_line_head(d_, sizeof(T), n_) : 0;                                     \
        const int64_t body_ = (stream) ? head_ + (n_ - head_) / LINE_ * LINE_ : 0;                                  \
        T *tail_ = (stream) && (slot_out) ? (slot_out) - body_ : d_; /* where elements [body_, n_) go */          \
        int64_t k = 0, end_ = run_; /* the channel at hand and the end of its run */                                \
        if (si_ && head_) { /* complete the line the previous stretch began and stream it */                       \
            T line_[LINE_] __attribute__((aligned(64)));                                                            \
            for (int64_t e_ = 0; e_ < LINE_ - head_; e_++) line_[e_] = si_[e_];                                     \
            for (int64_t j = 0; j < head_; j++) {                                                                   \
                while (j >= end_) k++, end_ += run_;                                                                \
                line_[LINE_ - head_ + j] = (EXPR);                                                                  \
            }                                                                                                       \
            norm_stream_line(d_ + head_ - LINE_, line_, sizeof(T));                                                 \
        } else {                                                                                                    \
            for (int64_t j = 0; j < head_; j++) {                                                                   \
                while (j >= end_) k++, end_ += run_;                                                                \
                d_[j] = (EXPR);                                                                                     \
            }                                                                                                       \
        }                                                                                                           \
        for (int64_t at_ = head_; at_ < body_; at_ += LINE_) {                                                      \
            T line_[LINE_] __attribute__((aligned(64)));                                                            \
            if (at_ < na_) {                                                                                        \
                if (pa_) __builtin_prefetch(pa_ + at_, 0, 2);                                                       \
                if (pb_) __builtin_prefetch(pb_ + at_, 0, 2);                                                       \
            }                                                                                                       \
            while (at_ >= end_) k++, end_ += run_;                                                                  \
            if (at_ + LINE_ <= end_) { /* within one run */                                                         \
                _Pragma("omp simd") for (int64_t e_ = 0; e_ < LINE_; e_++) {                                        \
                    const int64_t j = at_ + e_;                                                                     \
                    line_[e_] = (EXPR);                                                                             \
                }                                                                                                   \
            } else {                                                                                                \
                for (int64_t e_ = 0; e_ < LINE_; e_++) {                                                            \
                    const int64_t j = at_ + e_;                                                                     \
                    while (j >= end_) k++, end_ += run_;                                                            \
                    line_[e_] = (EXPR);                                                                             \
                }                                                                                                   \
            }                                                                                                       \
            norm_stream_line(d_ + at_, line_, sizeof(T));                                                           \
        }                                                                                                           \
        for (int64_t j0_ = body_; j0_ < n_;) { /* the tail (everything when not streaming), run by run */          \
            while (j0_ >= end_) k++, end_ += run_;                                                                  \
            const int64_t stop_ = end_ < n_ ? end_ : n_;                                                            \
            _Pragma("omp simd") for (int64_t j = j0_; j < stop_; j++) tail_[j] = (EXPR);                            \
            j0_ = stop_;                                                                                            \
        }                                                                                                           \
    } while (0)

#define BN_GROUP_MAX 32

static inline int64_t bn_group_channels(int64_t outer, int64_t channels, int64_t inner, size_t elem, int n_inputs)
{
    const int64_t run = inner * (int64_t)elem, channel = outer * run * n_inputs;
    int64_t g = (pyopt_bn_group_bytes() + run - 1) / run; /* 12 KB, or one channel on Zen 5 (runtime.c) */
    if (g > BN_GROUP_MAX) g = BN_GROUP_MAX;
    if (g * channel > pyopt_cache_bytes() / 4) g = pyopt_cache_bytes() / 4 / channel; /* the second pass reads cache */
    const int64_t share = channels / (2 * (int64_t)pyopt_max_threads());
    if (g > share) g = share;
    return g > 1 ? g : 1;
}

#define PYOPT_TEMPLATE_FILE "batch_norm.c"
#include "instantiate.h"

#else /* ---------------- per-dtype part ---------------- */
#include "norm_lanes.h"

/* One tile's two-pass statistics for channels [b->c0, b->c1): mean[c], and m2[c] = the sum of squared
 * deviations from that mean (the second pass reads the tile from cache). */
PYOPT_INLINE void SUFFIX(bn_tile_stats)(const bn_geom *g, const T *x, const bn_task *b, int64_t o0, int64_t o1,
                                        double *mean, double *m2)
{
    const int64_t C = g->channels, inner = g->inner, len = b->i1 - b->i0;
    for (int64_t c = b->c0; c < b->c1; c++) mean[c] = m2[c] = 0.0;
    for (int64_t o = o0; o < o1; o++) {
        const T *row = x + o * C * inner + b->i0;
        if (inner == 1) { /* channels-last: vectorized across channels */
#pragma omp simd
            for (int64_t c = b->c0; c < b->c1; c++) mean[c] += (double)row[c];
        } else {
            for (int64_t c = b->c0; c < b->c1; c++) mean[c] += SUFFIX(norm_sum)(row + c * inner, len);
        }
    }
    const double inv = 1.0 / (double)((o1 - o0) * len);
    for (int64_t c = b->c0; c < b->c1; c++) mean[c] *= inv;
    if (inner > 1 && sizeof(T) == sizeof(float)) {
        /* float32 runs: sums of d = x - mean and d^2 in float32 chunks (norm_centred_sums_f32), then the mean
         * and m2 corrected by the sum of d (the first pass's mean is a float32-chunk estimate) */
        double shift[BN_BLOCK / 2]; /* channels per planar tile: at most BN_BLOCK / inner */
        for (int64_t c = b->c0; c < b->c1; c++) shift[c - b->c0] = 0.0;
        for (int64_t o = o0; o < o1; o++) {
            const T *row = x + o * C * inner + b->i0;
            for (int64_t c = b->c0; c < b->c1; c++) {
                double s[2];
                SUFFIX(norm_centred_sums_f32)((const float *)(row + c * inner), len, mean[c],
                                              (const float *)(row + c * inner), s);
                shift[c - b->c0] += s[0];
                m2[c] += s[1];
            }
        }
        for (int64_t c = b->c0; c < b->c1; c++) {
            const double sd = shift[c - b->c0], v = m2[c] - sd * sd * inv;
            mean[c] += sd * inv;
            m2[c] = v > 0.0 ? v : 0.0;
        }
        return;
    }
    for (int64_t o = o0; o < o1; o++) {
        const T *row = x + o * C * inner + b->i0;
        if (inner == 1) {
#pragma omp simd
            for (int64_t c = b->c0; c < b->c1; c++) {
                const double d = (double)row[c] - mean[c];
                m2[c] += d * d;
            }
        } else {
            for (int64_t c = b->c0; c < b->c1; c++) m2[c] += SUFFIX(norm_sum_sq_dev)(row + c * inner, len, mean[c]);
        }
    }
}

/* Statistics pass: each task's tiles, merged in row order with Chan's formula (the counts are the same for every
 * channel of a tile, so the merge is a vectorized multiply-add across channels).  p0/p1 = the task's mean and
 * m2 per channel, p2/p3 = scratch for the tile being merged. */
PYOPT_INLINE void SUFFIX(bn_stats_tasks)(const void *vctx, int64_t begin, int64_t end)
{
    const bn_ctx *ctx = (const bn_ctx *)vctx;
    const bn_geom *g = &ctx->g;
    const T *x = (const T *)ctx->x;
    const int64_t C = g->channels;
    for (int64_t t = begin; t < end; t++) {
        const bn_task b = bn_get_task(g, t);
        const double len = (double)(b.i1 - b.i0);
        double *mean = ctx->p0 + b.k * C, *m2 = ctx->p1 + b.k * C, *tmean = ctx->p2 + b.k * C;
        double *tm2 = ctx->p3 + b.k * C;
        double n = 0.0;
        for (int64_t ob = b.ob0; ob < b.ob1; ob++) {
            int64_t o0, o1;
            bn_rows(g, ob, &o0, &o1);
            const double nb = (double)(o1 - o0) * len, total = n + nb;
            if (ob == b.ob0) {
                SUFFIX(bn_tile_stats)(g, x, &b, o0, o1, mean, m2);
            } else {
                SUFFIX(bn_tile_stats)(g, x, &b, o0, o1, tmean, tm2);
                const double f = nb / total, h = n * nb / total;
#pragma omp simd
                for (int64_t c = b.c0; c < b.c1; c++) {
                    const double delta = tmean[c] - mean[c];
                    mean[c] += delta * f;
                    m2[c] += tm2[c] + delta * delta * h;
                }
            }
            n = total;
        }
    }
}

/* Backward sums pass: p0 = sum dy, p1 = sum dy (x - m), p2 = sum (x - m) per task, m the saved mean.  With
 * write_dx (running statistics; a constant at each call site) it also writes dx = dy * (w rstd)[c]. */
PYOPT_INLINE void SUFFIX(bn_sums_tasks)(const void *vctx, int64_t begin, int64_t end, const int write_dx)
{
    const bn_ctx *ctx = (const bn_ctx *)vctx;
    const bn_geom *g = &ctx->g;
    const int64_t C = g->channels, inner = g->inner;
    const T *x = (const T *)ctx->x, *dy = (const T *)ctx->dy, *mean_t = (const T *)ctx->mean;
    const T *k1 = (const T *)ctx->coef + 2 * C; /* w rstd, see pyopt_batch_norm_backward */
    T *dx = (T *)ctx->y;
    for (int64_t t = begin; t < end; t++) {
        const bn_task b = bn_get_task(g, t);
        const int64_t len = b.i1 - b.i0;
        double *s_dy = ctx->p0 + b.k * C, *s_dyx = ctx->p1 + b.k * C, *s_x = ctx->p2 + b.k * C;
        for (int64_t c = b.c0; c < b.c1; c++) s_dy[c] = s_dyx[c] = s_x[c] = 0.0;
        int64_t o_begin, o_end, unused;
        bn_rows(g, b.ob0, &o_begin, &unused);
        bn_rows(g, b.ob1 - 1, &unused, &o_end);
        for (int64_t o = o_begin; o < o_end; o++) {
            const int64_t off = o * C * inner + b.i0;
            const T *xr = x + off, *dyr = dy + off;
            T *dxr = dx + off;
            if (inner == 1) {
#pragma omp simd
                for (int64_t c = b.c0; c < b.c1; c++) {
                    const double d = (double)dyr[c], xc = (double)xr[c] - (double)mean_t[c];
                    s_dy[c] += d;
                    s_dyx[c] += d * xc;
                    s_x[c] += xc;
                    if (write_dx) dxr[c] = dyr[c] * k1[c];
                }
                continue;
            }
            for (int64_t c = b.c0; c < b.c1; c++) {
                const T *xs = xr + c * inner, *dys = dyr + c * inner;
                double sums[3];
                SUFFIX(norm_grad_sums)(dys, NULL, xs, (double)mean_t[c], len, 0, NULL, NULL, sums);
                s_dy[c] += sums[0];
                s_dyx[c] += sums[1];
                s_x[c] += sums[2];
                if (write_dx) {
                    T *dxs = dxr + c * inner;
                    const T kc = k1[c];
#pragma omp simd
                    for (int64_t i = 0; i < len; i++) dxs[i] = dys[i] * kc;
                }
            }
        }
    }
}

/* Elementwise passes.  coef holds per-channel constants [k][C]:
 *   forward  (n_coef 4): mean_hi, mean_lo, alpha = rstd w, beta = b         y = ((x - hi) - lo) alpha + beta
 *   backward (n_coef 6): mean_hi, mean_lo, k1 = w rstd, mean_dy, q, rstd
 *            dx = k1 ((dy - mean_dy) - ((x - hi) - lo) rstd q)
 * Items: planar (run, slice of BN_BLOCK) pairs, channels-last rows. */
PYOPT_INLINE void SUFFIX(bn_apply)(const bn_ctx *ctx, int64_t begin, int64_t end, const int backward)
{
    const bn_geom *g = &ctx->g;
    const int stream = ctx->stream;
    const int64_t C = g->channels;
    const T *x = (const T *)ctx->x, *dy = (const T *)ctx->dy, *cf = (const T *)ctx->coef;
    T *out = (T *)ctx->y;
    const T *hi = cf, *lo = cf + C, *k1 = cf + 2 * C, *k2 = cf + 3 * C;
    const T *k3 = backward ? cf + 4 * C : NULL, *k4 = backward ? cf + 5 * C : NULL;
    for (int64_t item = begin; item < end; item++) {
        if (g->inner == 1) { /* channels-last: item = row, the constants vary along it */
            const T *xr = x + item * C, *dyr = backward ? dy + item * C : NULL;
            T *o = out + item * C;
            if (backward)
                NORM_STORE_ROW(T, o, C, stream, NULL, NULL, c,
                               k1[c] * ((dyr[c] - k2[c]) - (((xr[c] - hi[c]) - lo[c]) * k4[c]) * k3[c]));
            else
                NORM_STORE_ROW(T, o, C, stream, NULL, NULL, c, ((xr[c] - hi[c]) - lo[c]) * k1[c] + k2[c]);
            continue;
        }
        /* planar: item = (run, slice), one channel's constants */
        const int64_t run = item / g->slices, i0 = (item % g->slices) * BN_BLOCK, c = run % C;
        const int64_t off = run * g->inner + i0, len = i0 + BN_BLOCK < g->inner ? BN_BLOCK : g->inner - i0;
        const T *xr = x + off;
        T *o = out + off;
        const T h = hi[c], l = lo[c], a = k1[c], b = k2[c];
        if (backward) {
            const T *dyr = dy + off;
            const T q = k3[c], r = k4[c];
            NORM_STORE_ROW(T, o, len, stream, NULL, NULL, i, BN_DX_VALUE(dyr[i], xr[i], a, b, h, l, r, q));
        } else {
            NORM_STORE_ROW(T, o, len, stream, NULL, NULL, i, ((xr[i] - h) - l) * a + b);
        }
    }
    if (stream) norm_stream_fence();
}

/* float32 channel ch's centred sums around `centre` over its runs, into one set of lanes combined once
 * (out[0] = sum d, out[1] = sum d^2); `fetch`: prefetch the runs ahead (the channel's first pass) */
PYOPT_INLINE void SUFFIX(bn_channel_centred_sums)(const bn_chan_ctx *c, int64_t ch, double centre, int fetch,
                                                  double *out)
{
    const int64_t C = c->channels, inner = c->inner, outer = c->outer;
    const float *x = (const float *)c->x;
    norm_acc16 D = NORM_ACC16_ZERO, Q = NORM_ACC16_ZERO;
    for (int64_t o = 0; o < outer; o++) {
        const float *run = x + (o * C + ch) * inner;
        if (fetch && o + BN_AHEAD < outer) bn_prefetch_run(run + BN_AHEAD * C * inner, inner * 4);
        SUFFIX(norm_centred_sums_f32_acc)(run, inner, centre, run, &D, &Q);
    }
    out[0] = norm_acc16_total(&D);
    out[1] = norm_acc16_total(&Q);
}

/* Forward, channels [begin, end): statistics over the channel's runs (float32: centred sums around the mean of the
 * first run's first 16 values, a second pass only when that shift was far, as LayerNorm's rows; float64: exact
 * two-pass), the running-stat update, then the normalized runs (while the next channel's runs are prefetched). */
PYOPT_INLINE void SUFFIX(bn_channel_forward)(const void *vctx, int64_t begin, int64_t end)
{
    const bn_chan_ctx *c = (const bn_chan_ctx *)vctx;
    const int64_t C = c->channels, inner = c->inner, outer = c->outer;
    const T *x = (const T *)c->x, *weight = (const T *)c->weight, *bias = (const T *)c->bias;
    T *y = (T *)c->out, *running_mean = (T *)c->running_mean, *running_var = (T *)c->running_var;
    const double n = (double)(outer * inner);
    /* Streamed, run o of channel ch shares its first line with run o of ch - 1 and its last with ch + 1 (at 14 x
     * 14 one line in 12); stored from each side in plain halves, such a line is read from memory first and
     * written back later.  The part of it channel ch computes is kept in `shared` for ch + 1, which streams the
     * whole line (this thread's channels only: the first channel's head and the last's tail stay plain).  Runs
     * of at least a line, element-aligned output (else norm_line_head streams nothing anyway). */
    enum { LINE = NORM_LINE_BYTES / sizeof(T) };
    T *shared = c->stream && inner >= LINE && (uintptr_t)y % sizeof(T) == 0 && end - begin > 1
                    ? (T *)malloc((size_t)(outer * LINE) * sizeof(T))
                    : NULL;
    for (int64_t ch = begin; ch < end; ch++) {
        double mean, var;
        if (sizeof(T) == sizeof(float)) { /* norm_mean_var_finish's rule over the channel's runs */
            double s[2], v;
            const double shift = (double)norm_shift_f32((const float *)(x + ch * inner), inner);
            SUFFIX(bn_channel_centred_sums)(c, ch, shift, 1, s);
            if (norm_centred_stats(s[0], s[1], n, shift, &mean, &v)) {
                const double centre = mean;
                SUFFIX(bn_channel_centred_sums)(c, ch, centre, 0, s);
                norm_centred_stats(s[0], s[1], n, centre, &mean, &v);
            }
            var = v > 0.0 ? v : 0.0;
        } else {
            double sum = 0.0, sq = 0.0;
            for (int64_t o = 0; o < outer; o++) {
                if (o + BN_AHEAD < outer)
                    bn_prefetch_run(x + ((o + BN_AHEAD) * C + ch) * inner, inner * (int64_t)sizeof(T));
                sum += SUFFIX(norm_sum)(x + (o * C + ch) * inner, inner);
            }
            mean = sum / n;
            for (int64_t o = 0; o < outer; o++) sq += SUFFIX(norm_sum_sq_dev)(x + (o * C + ch) * inner, inner, mean);
            var = sq / n;
        }
        if (running_mean) {
            running_mean[ch] = (T)(c->momentum * mean + (1.0 - c->momentum) * (double)running_mean[ch]);
            running_var[ch] =
                (T)(c->momentum * (var * n / (n - 1.0)) + (1.0 - c->momentum) * (double)running_var[ch]);
        }
        const double rstd = 1.0 / sqrt(var + c->eps);
        ((T *)c->save_mean)[ch] = (T)mean;
        ((T *)c->save_rstd)[ch] = (T)rstd;
        T h, l;
        NORM_SPLIT(T, mean, h, l);
        const T a = (T)(weight ? rstd * (double)weight[ch] : rstd), b = bias ? bias[ch] : (T)0;
        const int64_t next = ch + 1 < end ? inner : 0; /* the next channel's runs, fetched while these stream out */
        for (int64_t o = 0; o < outer; o++) {
            const T *xr = x + (o * C + ch) * inner;
            T *yr = y + (o * C + ch) * inner;
            if (!shared) {
                NORM_STORE_ROW(T, yr, inner, c->stream, next ? xr + next : NULL, NULL, i, ((xr[i] - h) - l) * a + b);
                continue;
            }
            T *slot = shared + o * LINE; /* the line run o shares with the next channel's run o */
            const int64_t head = norm_line_head(yr, sizeof(T), inner), body_end = head + (inner - head) / LINE * LINE;
            if (head && ch > begin) { /* the previous channel left its part of this line in the slot */
                T line[LINE] __attribute__((aligned(64)));
                for (int64_t e = 0; e < LINE - head; e++) line[e] = slot[e];
                for (int64_t i = 0; i < head; i++) line[LINE - head + i] = ((xr[i] - h) - l) * a + b;
                norm_stream_line(yr + head - LINE, line, sizeof(T));
            } else {
                for (int64_t i = 0; i < head; i++) yr[i] = ((xr[i] - h) - l) * a + b;
            }
            const T *xb = xr + head;
            NORM_STORE_ROW(T, yr + head, body_end - head, 1, next ? xb + next : NULL, NULL, i,
                           ((xb[i] - h) - l) * a + b);
            T *tail = next ? slot - body_end : yr; /* kept for the next channel, or stored */
            for (int64_t i = body_end; i < inner; i++) tail[i] = ((xr[i] - h) - l) * a + b;
        }
    }
    free(shared);
    if (c->stream) norm_stream_fence();
}

/* The backward's running sums for one group: float32 channels in lanes (one set per sum per channel), float64
 * channels as sums of the runs' float64 sums; and the per-channel constants of its dx pass. */
typedef struct {
    norm_acc16 g[BN_GROUP_MAX], p[BN_GROUP_MAX], x[BN_GROUP_MAX]; /* float32 */
    double s_dy[BN_GROUP_MAX], s_dyx[BN_GROUP_MAX], s_x[BN_GROUP_MAX]; /* float64 */
} SUFFIX(bn_group_sums);

typedef struct {
    T h[BN_GROUP_MAX], l[BN_GROUP_MAX], a[BN_GROUP_MAX], b[BN_GROUP_MAX], q[BN_GROUP_MAX], r[BN_GROUP_MAX];
} SUFFIX(bn_group_dx);

/* Adds row o's runs of channels [c0, c0 + m) to S (the runs lie side by side), prefetching the start of row
 * o + BN_AHEAD's stretch: the prefetcher streams within a stretch but not across the jump to the next row. */
PYOPT_INLINE void SUFFIX(bn_group_sums_row)(const bn_chan_ctx *c, int64_t c0, int64_t m, int64_t o,
                                            SUFFIX(bn_group_sums) *S)
{
    const int64_t C = c->channels, inner = c->inner, off = (o * C + c0) * inner;
    const T *x = (const T *)c->x + off, *dy = (const T *)c->dy + off, *save_mean = (const T *)c->mean_in + c0;
    if (o + BN_AHEAD < c->outer) {
        bn_prefetch_run(dy + BN_AHEAD * C * inner, m * inner * (int64_t)sizeof(T));
        bn_prefetch_run(x + BN_AHEAD * C * inner, m * inner * (int64_t)sizeof(T));
    }
    for (int64_t k = 0; k < m; k++) {
        if (sizeof(T) == sizeof(float)) {
            SUFFIX(norm_grad_sums_f32_acc)((const float *)(dy + k * inner), NULL, (const float *)(x + k * inner),
                                           (double)save_mean[k], inner, 0, NULL, NULL, &S->g[k], &S->p[k], &S->x[k]);
        } else {
            double sums[3];
            SUFFIX(norm_grad_sums)(dy + k * inner, NULL, x + k * inner, (double)save_mean[k], inner, 0, NULL, NULL,
                                   sums);
            S->s_dy[k] += sums[0], S->s_dyx[k] += sums[1], S->s_x[k] += sums[2];
        }
    }
}

/* Writes row o's dx runs of channels [c0, c0 + m) as one stretch (BN_STORE_STRETCH), dy and x read again from
 * cache, prefetching the next group's stretch (m_next channels), which then arrives while this one streams out;
 * slot_in, slot_out: the line shared with the previous and the next group's stretch (NULL: none). */
PYOPT_INLINE void SUFFIX(bn_group_dx_row)(const bn_chan_ctx *c, int64_t c0, int64_t m, int64_t m_next, int64_t o,
                                          const SUFFIX(bn_group_dx) *K, const T *slot_in, T *slot_out)
{
    const int64_t inner = c->inner, n = m * inner, off = (o * c->channels + c0) * inner;
    const T *dyr = (const T *)c->dy + off, *xr = (const T *)c->x + off;
    BN_STORE_STRETCH(T, (T *)c->out + off, n, inner, c->stream, m_next * inner, dyr + n, xr + n, slot_in, slot_out,
                     k, j, BN_DX_VALUE(dyr[j], xr[j], K->a[k], K->b[k], K->h[k], K->l[k], K->r[k], K->q[k]));
}

/* Backward with batch statistics, groups [begin, end) of c->group channels (bn_group_channels): each channel's
 * sums over its runs in row order, dweight = sum dy xhat and dbias = sum dy, then
 * dx = w rstd ((dy - mean(dy)) - xhat mean(dy xhat)) over its runs, read again from cache. */
PYOPT_INLINE void SUFFIX(bn_channel_backward)(const void *vctx, int64_t begin, int64_t end)
{
    const bn_chan_ctx *c = (const bn_chan_ctx *)vctx;
    const int64_t C = c->channels, outer = c->outer;
    const T *weight = (const T *)c->weight, *save_mean = (const T *)c->mean_in, *save_rstd = (const T *)c->rstd_in;
    const double n = (double)(outer * c->inner);
    SUFFIX(bn_group_sums) S;
    SUFFIX(bn_group_dx) K;
    /* Streamed, row o's stretch of one group shares a line with the next group's (at 14 x 14 by channel one line
     * in 12; BN_STORE_STRETCH): the part each group computes is kept in `shared` for the next group of this
     * thread, which streams the whole line, as the forward does (the first group's head and the last's tail stay
     * plain).  By channel on Zen 5, 2 threads, against plain halves: 0.91-0.97x the time at 14 x 14, 0.95x at
     * 10 x 10, 0.90-1.00x at 8 x 8, but 1.01-1.04x at 7 x 7 (runs of 3 lines, the slot's copy and the scalar head
     * outweigh a line read that the previous channel left in L2), 1.00x at 28 x 28 and 56 x 56, and with 12 KB
     * groups at 14 x 14; so runs of at least 4 lines (so is every stretch), element-aligned output. */
    enum { LINE = NORM_LINE_BYTES / sizeof(T) };
    T *shared = c->stream && c->inner >= 4 * LINE && (uintptr_t)c->out % sizeof(T) == 0 && end - begin > 1
                    ? (T *)malloc((size_t)(outer * LINE) * sizeof(T))
                    : NULL;
    for (int64_t grp = begin; grp < end; grp++) {
        const int64_t c0 = grp * c->group, m = c0 + c->group < C ? c->group : C - c0;
        const int64_t c1 = c0 + m, m_next = grp + 1 < end ? (c1 + c->group < C ? c->group : C - c1) : 0;
        for (int64_t k = 0; k < m; k++) {
            S.g[k] = S.p[k] = S.x[k] = (norm_acc16)NORM_ACC16_ZERO;
            S.s_dy[k] = S.s_dyx[k] = S.s_x[k] = 0.0;
        }
        for (int64_t o = 0; o < outer; o++) SUFFIX(bn_group_sums_row)(c, c0, m, o, &S);
        for (int64_t k = 0; k < m; k++) {
            const int64_t ch = c0 + k;
            double s_dy = S.s_dy[k], s_dyx = S.s_dyx[k], s_x = S.s_x[k];
            if (sizeof(T) == sizeof(float))
                s_dy = norm_acc16_total(&S.g[k]), s_dyx = norm_acc16_total(&S.p[k]), s_x = norm_acc16_total(&S.x[k]);
            const double r = (double)save_rstd[ch], shift = s_x / n, s_dyxhat = r * (s_dyx - shift * s_dy);
            ((T *)c->dweight)[ch] = (T)s_dyxhat;
            ((T *)c->dbias)[ch] = (T)s_dy;
            NORM_SPLIT(T, (double)save_mean[ch] + shift, K.h[k], K.l[k]);
            K.a[k] = (T)(weight ? r * (double)weight[ch] : r), K.b[k] = (T)(s_dy / n), K.q[k] = (T)(s_dyxhat / n);
            K.r[k] = save_rstd[ch];
        }
        for (int64_t o = 0; o < outer; o++) {
            T *slot = shared ? shared + o * LINE : NULL; /* the line row o shares with the next group */
            SUFFIX(bn_group_dx_row)(c, c0, m, m_next, o, &K, grp > begin ? slot : NULL, grp + 1 < end ? slot : NULL);
        }
    }
    free(shared);
    if (c->stream) norm_stream_fence();
}

#define BN_ISA_VARIANTS(name, body)                                                                           \
    static void SUFFIX(name##_base)(const void *c, int64_t b, int64_t e) { body; }                             \
    PYOPT_TARGET_AVX2 static void SUFFIX(name##_avx2)(const void *c, int64_t b, int64_t e) { body; }
BN_ISA_VARIANTS(bn_stats, SUFFIX(bn_stats_tasks)(c, b, e))
BN_ISA_VARIANTS(bn_sums, SUFFIX(bn_sums_tasks)(c, b, e, 0))
BN_ISA_VARIANTS(bn_sums_dx, SUFFIX(bn_sums_tasks)(c, b, e, 1))
BN_ISA_VARIANTS(bn_forward_apply, SUFFIX(bn_apply)((const bn_ctx *)c, b, e, 0))
BN_ISA_VARIANTS(bn_backward_apply, SUFFIX(bn_apply)((const bn_ctx *)c, b, e, 1))
BN_ISA_VARIANTS(bn_channel_forward, SUFFIX(bn_channel_forward)(c, b, e))
BN_ISA_VARIANTS(bn_channel_backward, SUFFIX(bn_channel_backward)(c, b, e))
#undef BN_ISA_VARIANTS
#define BN_PICK(name, isa) ((isa) == PYOPT_ISA_AVX2 ? SUFFIX(name##_avx2) : SUFFIX(name##_base))

static int64_t SUFFIX(bn_apply_items)(const bn_geom *g)
{
    return g->inner == 1 ? g->outer : g->outer * g->channels * g->slices;
}

/* Workspace: n_partials arrays of channels x partial blocks doubles, then n_coef x channels T constants. */
static void *SUFFIX(bn_workspace)(bn_ctx *ctx, int n_partials, int n_coef)
{
    const int64_t slots = ctx->g.channels * ctx->g.n_k;
    char *ws = (char *)malloc((size_t)(n_partials * slots) * sizeof(double) + (size_t)(n_coef * ctx->g.channels) *
                              sizeof(T));
    if (!ws) return NULL;
    double *p = (double *)ws;
    ctx->p0 = p, ctx->p1 = p + slots, ctx->p2 = p + 2 * slots, ctx->p3 = n_partials > 3 ? p + 3 * slots : NULL;
    ctx->coef = ws + (size_t)(n_partials * slots) * sizeof(double);
    return ws;
}

int SUFFIX(pyopt_batch_norm_forward)(int64_t outer, int64_t channels, int64_t inner, const T *x, const T *weight,
                                     const T *bias, T *running_mean, T *running_var, int use_batch_stats,
                                     double momentum, double eps, T *y, T *save_mean, T *save_rstd, int isa)
{
    isa = pyopt_resolve_isa(isa);
    if (isa < 0) return PYOPT_ERR_ISA;
    const int64_t count = outer * inner;
    if (count == 0 || channels == 0) return PYOPT_OK; /* the caller handles empty batches */
    const int stream = pyopt_stream_outputs(2 * count * channels * (int64_t)sizeof(T));
    if (use_batch_stats && bn_by_channel(outer, channels, inner, sizeof(T), 1)) {
        bn_chan_ctx cc = {outer, channels, inner, x, NULL, weight, bias, NULL, NULL, y, running_mean, running_var,
                          save_mean, save_rstd, NULL, NULL, momentum, eps, stream, 1};
        norm_parallel_items(&cc, channels, count, BN_PICK(bn_channel_forward, isa));
        return PYOPT_OK;
    }
    bn_ctx ctx = {bn_make_geom(outer, channels, inner), x, NULL, weight, bias, NULL, NULL, y, NULL, NULL, NULL,
                  NULL, NULL, stream};
    const bn_geom *g = &ctx.g;
    void *ws = SUFFIX(bn_workspace)(&ctx, 4, 4);
    if (!ws) return PYOPT_ERR_NO_MEMORY;
    if (use_batch_stats)
        norm_parallel_items(&ctx, g->n_tasks, count * channels / (g->n_tasks > 0 ? g->n_tasks : 1),
                            BN_PICK(bn_stats, isa));
    T *cf = (T *)ctx.coef;
    for (int64_t c = 0; c < channels; c++) {
        double mean, var;
        if (use_batch_stats) { /* Chan's combination of the partial blocks, in block order */
            double n = 0.0, m2 = 0.0;
            mean = 0.0;
            for (int64_t k = 0; k < g->n_k; k++) {
                const double nb = bn_block_count(g, k), total = n + nb;
                const double mb = ctx.p0[k * channels + c], delta = mb - mean;
                mean += delta * (nb / total);
                m2 += ctx.p1[k * channels + c] + delta * delta * (n * nb / total);
                n = total;
            }
            var = m2 / n;
            if (running_mean) {
                running_mean[c] = (T)(momentum * mean + (1.0 - momentum) * (double)running_mean[c]);
                running_var[c] = (T)(momentum * (var * n / (n - 1.0)) + (1.0 - momentum) * (double)running_var[c]);
            }
        } else {
            mean = (double)running_mean[c];
            var = (double)running_var[c];
        }
        const double rstd = 1.0 / sqrt(var + eps);
        save_mean[c] = (T)mean;
        save_rstd[c] = (T)rstd;
        NORM_SPLIT(T, mean, cf[c], cf[channels + c]);
        cf[2 * channels + c] = (T)(weight ? rstd * (double)weight[c] : rstd);
        cf[3 * channels + c] = bias ? bias[c] : (T)0;
    }
    norm_parallel_items(&ctx, SUFFIX(bn_apply_items)(g), inner == 1 ? channels : inner,
                        BN_PICK(bn_forward_apply, isa));
    free(ws);
    return PYOPT_OK;
}

int SUFFIX(pyopt_batch_norm_backward)(int64_t outer, int64_t channels, int64_t inner, const T *dy, const T *x,
                                      const T *weight, const T *save_mean, const T *save_rstd,
                                      int use_batch_stats, T *dx, T *dweight, T *dbias, int isa)
{
    isa = pyopt_resolve_isa(isa);
    if (isa < 0) return PYOPT_ERR_ISA;
    const int64_t count = outer * inner;
    if (count == 0) { /* the empty sums */
        for (int64_t c = 0; c < channels; c++) dweight[c] = dbias[c] = (T)0;
        return PYOPT_OK;
    }
    const int stream = pyopt_stream_outputs(3 * count * channels * (int64_t)sizeof(T));
    if (use_batch_stats && bn_by_channel(outer, channels, inner, sizeof(T), 2)) {
        const int64_t group = bn_group_channels(outer, channels, inner, sizeof(T), 2);
        bn_chan_ctx cc = {outer, channels, inner, x, dy, weight, NULL, save_mean, save_rstd, dx, NULL, NULL,
                          NULL, NULL, dweight, dbias, 0.0, 0.0, stream, group};
        norm_parallel_items(&cc, (channels + group - 1) / group, count * group, BN_PICK(bn_channel_backward, isa));
        return PYOPT_OK;
    }
    bn_ctx ctx = {bn_make_geom(outer, channels, inner), x, dy, weight, NULL, save_mean, save_rstd, dx, NULL, NULL,
                  NULL, NULL, NULL, stream};
    const bn_geom *g = &ctx.g;
    void *ws = SUFFIX(bn_workspace)(&ctx, 3, 6);
    if (!ws) return PYOPT_ERR_NO_MEMORY;
    T *cf = (T *)ctx.coef;
    for (int64_t c = 0; c < channels; c++) /* k1 = w rstd first: the running-stats pass writes dx with it */
        cf[2 * channels + c] = (T)(weight ? (double)save_rstd[c] * (double)weight[c] : (double)save_rstd[c]);
    norm_parallel_items(&ctx, g->n_tasks, count * channels / g->n_tasks,
                        use_batch_stats ? BN_PICK(bn_sums, isa) : BN_PICK(bn_sums_dx, isa));
    for (int64_t c = 0; c < channels; c++) {
        double s_dy = 0.0, s_dyx = 0.0, s_x = 0.0;
        for (int64_t k = 0; k < g->n_k; k++) {
            const int64_t slot = k * channels + c;
            s_dy += ctx.p0[slot], s_dyx += ctx.p1[slot], s_x += ctx.p2[slot];
        }
        const double r = (double)save_rstd[c];
        const double shift = use_batch_stats ? s_x / (double)count : 0.0;
        const double s_dyxhat = r * (s_dyx - shift * s_dy);
        dweight[c] = (T)s_dyxhat;
        dbias[c] = (T)s_dy;
        NORM_SPLIT(T, (double)save_mean[c] + shift, cf[c], cf[channels + c]);
        cf[3 * channels + c] = (T)(s_dy / (double)count);
        cf[4 * channels + c] = (T)(s_dyxhat / (double)count);
        cf[5 * channels + c] = save_rstd[c];
    }
    if (use_batch_stats)
        norm_parallel_items(&ctx, SUFFIX(bn_apply_items)(g), inner == 1 ? channels : inner,
                            BN_PICK(bn_backward_apply, isa));
    free(ws);
    return PYOPT_OK;
}

#undef BN_PICK
#endif
