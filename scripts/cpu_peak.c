// The CPU's peak f32 rate, the denominator of the FLOP fractions in docs/benchmarks.md:
// twelve independent chains of 512-bit fused multiply-adds kept in registers, on 1 and on 2
// threads. Build and run: gcc -O2 -mavx512f -mfma -pthread scripts/cpu_peak.c -o /tmp/cpu_peak && /tmp/cpu_peak
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#define FMAS 2000000000L

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define STEP(a) a = _mm512_fmadd_ps(a, b, c)

static void *chains(void *out) {
    __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    __m512 a0 = _mm512_set1_ps(0), a1 = _mm512_set1_ps(1), a2 = _mm512_set1_ps(2),
           a3 = _mm512_set1_ps(3), a4 = _mm512_set1_ps(4), a5 = _mm512_set1_ps(5),
           a6 = _mm512_set1_ps(6), a7 = _mm512_set1_ps(7), a8 = _mm512_set1_ps(8),
           a9 = _mm512_set1_ps(9), a10 = _mm512_set1_ps(10), a11 = _mm512_set1_ps(11);
    for (long k = 0; k < FMAS / 12; k++) {
        STEP(a0); STEP(a1); STEP(a2); STEP(a3); STEP(a4); STEP(a5);
        STEP(a6); STEP(a7); STEP(a8); STEP(a9); STEP(a10); STEP(a11);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    *(float *)out = _mm512_reduce_add_ps(s); // keeps the chains live
    return 0;
}

int main(void) {
    for (int threads = 1; threads <= 2; threads++) {
        pthread_t t[2];
        float sink[2];
        double start = now();
        for (int i = 0; i < threads; i++) pthread_create(&t[i], 0, chains, &sink[i]);
        for (int i = 0; i < threads; i++) pthread_join(t[i], 0);
        double seconds = now() - start;
        double flops = (double)threads * (FMAS / 12) * 12 * 16 * 2;
        printf("%d thread(s): %.1f GFLOP/s f32 (%.2f s)\n", threads, flops / seconds / 1e9, seconds);
    }
    return 0;
}
