/* The memory-access ceiling of BatchNorm's NCHW backward: its bytes (dy and x read, dx written: 12 per float32
 * element) moved in the kernel's order with no arithmetic worth the name, against the same bytes moved in
 * sequence and the triad probe (a = b + s c, plain stores, as pyopt's bandwidth.c), all timed in the same rounds.
 *
 * A channel's data is N runs of H*W floats a whole C*H*W plane apart (64x256x14x14: 784-byte runs 200 KB apart).
 * A backward that reads each element from memory once must hold a channel (or a group of channels) in cache
 * between its statistics pass and its dx pass, so it visits memory channel by channel:
 *   two-pass G:  per group of G adjacent channels (runs side by side: G*H*W floats per row), pass 1 sums the
 *                group's rows (the start of the row BN_AHEAD rows down prefetched, as batch_norm.c does), pass 2
 *                reads them again from cache and streams dx (non-temporal), prefetching the next group's rows;
 *   one-pass:    each run read once and its output streamed at once (not a correct backward: no statistics;
 *                the cost of the order alone);
 *   sequential:  the same 2-in-1-out streaming pass over the arrays in memory order;
 *   triad:       a = b + 0.5 c in memory order, plain stores (12 bytes counted, as STREAM counts them).
 * Arrays start 16 bytes past a 64-byte boundary, where NumPy puts large ones; 6 rotating sets (229 MB at the
 * default shape) so that nothing is timed from the L3.
 *
 *   gcc -O2 -mavx2 -mfma -fopenmp bench/bn_pattern_ceiling.c -o bnpat && OMP_NUM_THREADS=2 ./bnpat [N C H W]
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { SETS = 6, ROUNDS = 41, AHEAD = 4, AHEAD_LINES = 32 };
static long N = 64, C = 256, I = 14 * 14;
static float *X[SETS], *D[SETS], *Y[SETS];
static volatile float sink;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* y[i] = x[i] + s d[i] for i < n, whole aligned lines streamed */
static void stream_out(float *y, const float *x, const float *d, float s, long n, const float *pa, const float *pb)
{
    long i = 0;
    for (; i < n && ((unsigned long)(y + i) & 63); i++) y[i] = x[i] + s * d[i];
    const __m256 vs = _mm256_set1_ps(s);
    for (; i + 16 <= n; i += 16) {
        if (pa) __builtin_prefetch(pa + i, 0, 2), __builtin_prefetch(pb + i, 0, 2);
        _mm256_stream_ps(y + i, _mm256_fmadd_ps(_mm256_loadu_ps(d + i), vs, _mm256_loadu_ps(x + i)));
        _mm256_stream_ps(y + i + 8, _mm256_fmadd_ps(_mm256_loadu_ps(d + i + 8), vs, _mm256_loadu_ps(x + i + 8)));
    }
    for (; i < n; i++) y[i] = x[i] + s * d[i];
}

static void two_pass(int s, long G)
{
#pragma omp parallel
    {
        const long t = omp_get_thread_num(), nt = omp_get_num_threads(), c0 = C * t / nt, c1 = C * (t + 1) / nt;
        __m256 acc = _mm256_setzero_ps();
        for (long cb = c0; cb < c1; cb += G) {
            const long g = cb + G <= c1 ? G : c1 - cb, len = g * I, next = cb + g < c1 ? len : 0;
            for (long r = 0; r < N; r++) { /* pass 1: the group's sums, from memory */
                const float *x = X[s] + (r * C + cb) * I, *d = D[s] + (r * C + cb) * I;
                if (r + AHEAD < N) {
                    const long span = len * 4 < AHEAD_LINES * 64 ? len * 4 : AHEAD_LINES * 64;
                    for (long l = 0; l < span; l += 64) {
                        __builtin_prefetch((const char *)(x + AHEAD * C * I) + l, 0, 3);
                        __builtin_prefetch((const char *)(d + AHEAD * C * I) + l, 0, 3);
                    }
                }
                long i = 0;
                for (; i + 8 <= len; i += 8)
                    acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(d + i), acc);
                for (; i < len; i++) acc[0] += x[i] * d[i];
            }
            const float k = acc[0] * 1e-30f + 0.5f;
            for (long r = 0; r < N; r++) { /* pass 2: dx from cache, the next group's rows prefetched */
                const long o = (r * C + cb) * I;
                stream_out(Y[s] + o, X[s] + o, D[s] + o, k, len, next ? X[s] + o + len : NULL, D[s] + o + len);
            }
        }
        _mm_sfence();
        sink += acc[1];
    }
}

static void one_pass(int s)
{
#pragma omp parallel
    {
        const long t = omp_get_thread_num(), nt = omp_get_num_threads(), c0 = C * t / nt, c1 = C * (t + 1) / nt;
        for (long c = c0; c < c1; c++)
            for (long r = 0; r < N; r++) {
                const long o = (r * C + c) * I;
                stream_out(Y[s] + o, X[s] + o, D[s] + o, 0.5f, I, c + 1 < c1 ? X[s] + o + I : NULL, D[s] + o + I);
            }
        _mm_sfence();
    }
}

static void sequential(int s)
{
#pragma omp parallel
    {
        const long n = N * C * I, t = omp_get_thread_num(), nt = omp_get_num_threads();
        const long b = n * t / nt, e = n * (t + 1) / nt;
        stream_out(Y[s] + b, X[s] + b, D[s] + b, 0.5f, e - b, NULL, NULL);
        _mm_sfence();
    }
}

static void triad(int s)
{
#pragma omp parallel
    {
        const long n = N * C * I, t = omp_get_thread_num(), nt = omp_get_num_threads();
        float *restrict a = Y[s];
        const float *restrict b = X[s], *restrict c = D[s];
#pragma omp simd
        for (long i = n * t / nt; i < n * (t + 1) / nt; i++) a[i] = b[i] + 0.5f * c[i];
    }
}

static int by_value(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc == 5) N = atol(argv[1]), C = atol(argv[2]), I = atol(argv[3]) * atol(argv[4]);
    const long n = N * C * I;
    for (int s = 0; s < SETS; s++) {
        float **arrays[3] = {&X[s], &D[s], &Y[s]};
        for (int k = 0; k < 3; k++) {
            float *p = aligned_alloc(64, (size_t)(n * 4 + 64));
            if (!p) return 1;
            *arrays[k] = p + 4; /* 16 bytes past the line, as NumPy's large arrays */
            for (long i = 0; i < n; i++) p[4 + i] = 1.0f + (float)(i % 7);
        }
    }
    const char *names[] = {"triad (plain stores)", "sequential 2-in-1-out", "one-pass, channel order",
                           "two-pass, 1 channel", "two-pass, 8 channels", "two-pass, 32 channels"};
    enum { K = 6 };
    static double t[K][ROUNDS];
    int s = 0;
    for (int r = 0; r < ROUNDS; r++)
        for (int k = 0; k < K; k++, s = (s + 1) % SETS) {
            const double t0 = now();
            switch (k) {
            case 0: triad(s); break;
            case 1: sequential(s); break;
            case 2: one_pass(s); break;
            default: two_pass(s, k == 3 ? 1 : k == 4 ? 8 : 32);
            }
            t[k][r] = now() - t0;
        }
    printf("%ldx%ldx%ld floats, %d threads, median of %d interleaved rounds, 12 bytes/element\n", N, C, I,
           omp_get_max_threads(), ROUNDS);
    double triad_ms = 0;
    for (int k = 0; k < K; k++) {
        qsort(t[k], ROUNDS, sizeof(double), by_value);
        const double ms = t[k][ROUNDS / 2] * 1e3;
        if (k == 0) triad_ms = ms;
        printf("  %-26s %7.3f ms  %5.1f GB/s  %4.0f%% of the triad\n", names[k], ms, 12.0 * n / ms / 1e6,
               100.0 * triad_ms / ms);
    }
    return 0;
}
