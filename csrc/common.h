/* Shared machinery of the C kernels: the ISA attribute, the run-time ISA choice and the one parallel-loop
 * helper every multi-tensor entry point uses.  Nothing here is exported; pyopt_cpu.h is the whole ABI. */
#ifndef PYOPT_COMMON_H
#define PYOPT_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <tgmath.h>   /* sqrt/fmax pick the float or double function from the argument type */
#ifdef _OPENMP
#include <omp.h>
#endif

#include "pyopt_cpu.h"

/* The AVX2+FMA copy of a loop.  The installed library is built for baseline x86-64; this attribute lets gcc emit
 * a second copy of one function for AVX2, chosen at run time (pyopt_resolve_isa), so no -march is needed. */
#if defined(__x86_64__) || defined(__i386__)
#define PYOPT_HAVE_AVX2_VARIANT 1
#define PYOPT_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define PYOPT_HAVE_AVX2_VARIANT 0
#define PYOPT_TARGET_AVX2
#endif

#define PYOPT_INLINE static inline __attribute__((always_inline))

/* Returns the ISA a call runs with, or -1 if the requested one cannot run on this CPU. */
static inline int pyopt_resolve_isa(int isa)
{
    int has_avx2 = pyopt_cpu_has_avx2();
    if (isa == PYOPT_ISA_AUTO) return has_avx2 ? PYOPT_ISA_AVX2 : PYOPT_ISA_BASELINE;
    if (isa == PYOPT_ISA_BASELINE) return PYOPT_ISA_BASELINE;
    if (isa == PYOPT_ISA_AVX2 && has_avx2) return PYOPT_ISA_AVX2;
    return -1;
}

/* Below this many elements in a call, the parallel region costs more than it saves (measured: an OpenMP
 * fork/join with a warm pool is a few microseconds, the time Adam takes on ~2^14 cache-resident floats). */
#define PYOPT_SERIAL_MAX_ELEMENTS ((int64_t)1 << 15)

/* Thread chunks start at multiples of this many elements of the concatenated index space (64 bytes of float32),
 * so two threads rarely write the same cache line. */
#define PYOPT_CHUNK_ALIGN ((int64_t)16)

/* fn(ctx, t, begin, end) processes elements [begin, end) of tensor t. */
typedef void (*pyopt_range_fn)(const void *ctx, int64_t tensor, int64_t begin, int64_t end);

/* Thread tid's slice [*lo, *hi) of a concatenated index space of `total` elements split over n_threads:
 * contiguous, starting at multiples of PYOPT_CHUNK_ALIGN, covering everything once.  All int64 arithmetic: index
 * spaces past 2^31 elements split correctly (tested through pyopt_thread_slice). */
static inline void pyopt_slice_bounds(int64_t total, int64_t n_threads, int64_t tid, int64_t *lo, int64_t *hi)
{
    int64_t per = (total + n_threads - 1) / n_threads;
    per = (per + PYOPT_CHUNK_ALIGN - 1) / PYOPT_CHUNK_ALIGN * PYOPT_CHUNK_ALIGN;
    *lo = tid * per < total ? tid * per : total;
    *hi = *lo + per < total ? *lo + per : total;
}

/* Runs fn over every element of every tensor once.  Small work runs on the calling thread; larger work runs in
 * one parallel region, each thread taking one contiguous slice of the concatenated index space of all tensors.
 * Elementwise kernels compute each element independently of the slice it falls in, so the result is bitwise the
 * same for any thread count. */
static inline void pyopt_for_each_range(const void *ctx, int64_t n_tensors, const int64_t *numel, pyopt_range_fn fn)
{
    int64_t total = 0;
    for (int64_t t = 0; t < n_tensors; t++) total += numel[t];
    if (total == 0) return;
#ifdef _OPENMP
    if (total > PYOPT_SERIAL_MAX_ELEMENTS && omp_get_max_threads() > 1) {
#pragma omp parallel
        {
            int64_t lo, hi, offset = 0;
            pyopt_slice_bounds(total, omp_get_num_threads(), omp_get_thread_num(), &lo, &hi);
            for (int64_t t = 0; t < n_tensors && offset < hi; offset += numel[t], t++) {
                int64_t begin = lo > offset ? lo : offset;
                int64_t end = hi < offset + numel[t] ? hi : offset + numel[t];
                if (begin < end) fn(ctx, t, begin - offset, end - offset);
            }
        }
        return;
    }
#endif
    for (int64_t t = 0; t < n_tensors; t++)
        if (numel[t] > 0) fn(ctx, t, 0, numel[t]);
}

/* -x when flip is 1, x when 0: the sign bit toggled exactly as IEEE negation does (a NaN's sign included,
 * which multiplying by -1 leaves alone on x86).  Branch-free, so the loop keeps one vectorized body; maximize
 * uses it on the gradient. */
PYOPT_INLINE float pyopt_flip_sign_f32(float x, int flip)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    bits ^= (uint32_t)(flip != 0) << 31;
    memcpy(&x, &bits, sizeof bits);
    return x;
}

PYOPT_INLINE double pyopt_flip_sign_f64(double x, int flip)
{
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    bits ^= (uint64_t)(flip != 0) << 63;
    memcpy(&x, &bits, sizeof bits);
    return x;
}

/* PyTorch's lerp(start, end, w): start + w (end - start) for |w| < 0.5, else end - (end - start)(1 - w).
 * The branch is on a scalar that is constant for the whole call, so it is hoisted out of the loop. */
#define PYOPT_LERP(start, end, w, one_minus_w, low_w) \
    ((low_w) ? (start) + (w) * ((end) - (start)) : (end) - ((end) - (start)) * (one_minus_w))

#endif
