/* Run-time facts and controls: CPU features, the OpenMP thread count, and the at-fork release of the pool. */
#include <stdio.h>
#include <stdlib.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "common.h"

int pyopt_cpu_has_avx2(void)
{
#if PYOPT_HAVE_AVX2_VARIANT
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

void pyopt_thread_slice(int64_t total, int64_t n_threads, int64_t tid, int64_t *lo, int64_t *hi)
{
    pyopt_slice_bounds(total, n_threads, tid, lo, hi);
}

int pyopt_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void pyopt_set_num_threads(int n)
{
#ifdef _OPENMP
    if (n > 0) omp_set_num_threads(n);
#else
    (void)n;
#endif
}

/* The last-level cache size the norm kernels plan with: a call streams its outputs (non-temporal stores,
 * norm_common.h) when the bytes it touches exceed half of it, and BatchNorm works channel by channel when a
 * channel's data fits in a quarter of it.  sysconf(_SC_LEVEL3_CACHE_SIZE) is not trusted: on this project's VMs
 * it reports the host's 256 MiB while the guest's sysfs (and lscpu) say 32 MiB. */
#define PYOPT_DEFAULT_LLC_BYTES ((int64_t)32 << 20)
static int64_t cache_override = -1; /* -1: not set, use the detected size */
static int64_t llc_bytes = 0;       /* 0: not read yet */

static int64_t read_llc_bytes(void)
{
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/cache/index3/size", "r");
    long long value = 0;
    char unit = 0;
    int got = f ? fscanf(f, "%lld%c", &value, &unit) : 0;
    if (f) fclose(f);
    if (got < 1 || value <= 0) return PYOPT_DEFAULT_LLC_BYTES;
    if (unit == 'K') value <<= 10;
    else if (unit == 'M') value <<= 20;
    return (int64_t)value;
}

int64_t pyopt_cache_bytes(void)
{
    if (cache_override >= 0) return cache_override;
    if (llc_bytes == 0) llc_bytes = read_llc_bytes(); /* a benign race: every thread reads the same value */
    return llc_bytes;
}

void pyopt_set_cache_bytes(int64_t bytes)
{
    cache_override = bytes < 0 ? -1 : bytes;
}

/* The AMD family number from cpuid (0 on other vendors and other architectures): 0x19 Zen 3 and Zen 4,
 * 0x1A Zen 5.  Read once: in a VM each cpuid traps to the hypervisor (asked on every call, it took 47% of a
 * cache-resident BatchNorm backward's time). */
static int amd_family_read = -1; /* -1: not read yet */

static unsigned read_amd_family(void)
{
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return 0;
    if (b != 0x68747541u || d != 0x69746e65u || c != 0x444d4163u) return 0; /* "Auth" "enti" "cAMD" */
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const unsigned base = (a >> 8) & 0xFu;
    return base == 0xFu ? base + ((a >> 20) & 0xFFu) : base;
#else
    return 0;
#endif
}

static unsigned amd_family(void)
{
    if (amd_family_read < 0) amd_family_read = (int)read_amd_family(); /* a benign race: the same value */
    return (unsigned)amd_family_read;
}

/* Bytes of each row's runs the BatchNorm backward's channel path takes at once (batch_norm.c,
 * bn_group_channels; 0: one channel at a time).  Which is faster depends on the core, not on anything the call
 * knows, and the group never changes a bit of a result.  Measured at 64 x 256 x 14 x 14 fp32, 2 threads,
 * against one channel at a time: on Zen 3, 12 KB groups 0.82-0.95x the time (its prefetcher does not lock on to
 * 784-byte runs 200 KB apart; bench/README.md, 2026-11-27); on Zen 5 (family 0x1A) the reverse, one channel at a
 * time 0.82-0.89x the time of 12 KB groups (0.87x at 64 x 128 x 28 x 28, 0.95x at 128 x 512 x 7 x 7, equal with
 * 1 thread), its sums pass reading 16 GB/s grouped against 22 channel by channel.  Other cores, not measured,
 * keep the groups. */
#define PYOPT_BN_GROUP_BYTES ((int64_t)12288)
static int64_t bn_group_override = -1; /* -1: not set, the core's default */

int64_t pyopt_bn_group_bytes(void)
{
    if (bn_group_override >= 0) return bn_group_override;
    return amd_family() == 0x1A ? 0 : PYOPT_BN_GROUP_BYTES;
}

void pyopt_set_bn_group_bytes(int64_t bytes)
{
    bn_group_override = bytes < 0 ? -1 : bytes;
}

/* Half the cache: the last level is shared by every core and holds more than this call's arrays (the model's
 * weights, the other activations), so an output larger than that is gone before the next layer reads it. */
int pyopt_stream_outputs(int64_t bytes_touched)
{
    return bytes_touched > pyopt_cache_bytes() / 2;
}

/* A child forked after an OpenMP region has run inherits a pool whose threads do not exist in it, and its next
 * parallel region hangs.  Called before fork (os.register_at_fork): the pool is rebuilt on the next region. */
void pyopt_release_thread_pool(void)
{
/* omp_pause_resource_all is OpenMP 5.0; libgomp has it since gcc 9 while still announcing _OPENMP 201511 */
#if defined(_OPENMP) && (_OPENMP >= 201811 || (!defined(__clang__) && __GNUC__ >= 9))
    omp_pause_resource_all(omp_pause_hard);
#endif
}

/* Overlap of byte ranges [ptr[k], ptr[k] + nbytes[k]): the first pair found (in order of address), or 0.
 * Empty ranges overlap nothing.  Sorting pointers keeps this O(n log n) for model-sized parameter lists. */
typedef struct {
    uintptr_t begin, end;
    int64_t index;
} byte_range;

static int compare_ranges(const void *a, const void *b)
{
    const byte_range *x = (const byte_range *)a, *y = (const byte_range *)b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

int pyopt_find_overlap(int64_t n, void **ptr, const int64_t *nbytes, int64_t *first, int64_t *second)
{
    byte_range stack_ranges[256];
    byte_range *ranges = n <= 256 ? stack_ranges : (byte_range *)malloc((size_t)n * sizeof(byte_range));
    if (!ranges) return -1;
    int64_t m = 0;
    for (int64_t k = 0; k < n; k++) {
        if (nbytes[k] <= 0) continue;
        ranges[m].begin = (uintptr_t)ptr[k];
        ranges[m].end = (uintptr_t)ptr[k] + (uintptr_t)nbytes[k];
        ranges[m].index = k;
        m++;
    }
    qsort(ranges, (size_t)m, sizeof(byte_range), compare_ranges);
    int found = 0;
    int64_t reach = 0; /* index in ranges of the range reaching furthest so far */
    for (int64_t k = 1; k < m && !found; k++) {
        if (ranges[k].begin < ranges[reach].end) {
            *first = ranges[reach].index < ranges[k].index ? ranges[reach].index : ranges[k].index;
            *second = ranges[reach].index < ranges[k].index ? ranges[k].index : ranges[reach].index;
            found = 1;
        }
        if (ranges[k].end > ranges[reach].end) reach = k;
    }
    if (ranges != stack_ranges) free(ranges);
    return found;
}
