/* LeakyReLU on the CPU, float32: the NumPy backend's, in one pass each way, with the same bits as the
 * NumPy code it replaces (numpy_split's where(mask, x, x * slope)):
 *
 * - y = x where x > 0, else x * slope (so NaN * slope, -0 * slope, and -inf * 0 = NaN for slope 0);
 * - mask = x > 0, and the gradient dout where the mask is set, else dout * slope.
 *
 * Arrays are addressed as planes, each array with its own strides: plane (n, c) of an array starts at
 * n*sn + c*sc elements and is one contiguous run of len, so NCHW and channel-major arrays mix without a
 * copy (the GAN discriminator's LeakyReLUs get a channel-major x with an NCHW gradient, or the reverse).
 *
 * A portable C loop, and on a CPU with AVX-512F vector code (target pragma), chosen at run time by
 * cpu_kernels.c's switch (xpnet_ck_vector_on). Python calls these through ctypes (backends/cpu_kernels.py).
 */
#include <stddef.h>

typedef long long i64;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define XPNET_LR_X86 1
#endif

int xpnet_ck_vector_on(void); /* cpu_kernels.c */

static void lrelu_fwd_run(const float *x, float *y, unsigned char *m, float slope, i64 n) {
    for (i64 i = 0; i < n; i++) {
        float v = x[i];
        y[i] = v > 0.0f ? v : v * slope;
        if (m) m[i] = v > 0.0f;
    }
}

static void lrelu_bwd_run(const float *d, const unsigned char *m, float *dx, float slope, i64 n) {
    for (i64 i = 0; i < n; i++) dx[i] = m[i] ? d[i] : d[i] * slope;
}

#ifdef XPNET_LR_X86
#pragma GCC push_options
#pragma GCC target("avx512f")
#include <immintrin.h>

static void lrelu_fwd_vec(const float *x, float *y, unsigned char *m, float slope, i64 n) {
    const __m512 zero = _mm512_setzero_ps(), s = _mm512_set1_ps(slope);
    const __m512i one = _mm512_set1_epi32(1);
    i64 i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __mmask16 pos = _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ);
        _mm512_storeu_ps(y + i, _mm512_mask_mov_ps(_mm512_mul_ps(v, s), pos, v));
        if (m) _mm_storeu_si128((__m128i *)(m + i), _mm512_cvtepi32_epi8(_mm512_maskz_mov_epi32(pos, one)));
    }
    lrelu_fwd_run(x + i, y + i, m ? m + i : NULL, slope, n - i);
}

static void lrelu_bwd_vec(const float *d, const unsigned char *m, float *dx, float slope, i64 n) {
    const __m512 s = _mm512_set1_ps(slope);
    i64 i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(m + i)));
        __m512 dv = _mm512_loadu_ps(d + i);
        _mm512_storeu_ps(dx + i, _mm512_mask_mov_ps(_mm512_mul_ps(dv, s), _mm512_test_epi32_mask(b, b), dv));
    }
    lrelu_bwd_run(d + i, m + i, dx + i, slope, n - i);
}

#pragma GCC pop_options
#else
#define lrelu_fwd_vec lrelu_fwd_run
#define lrelu_bwd_vec lrelu_bwd_run
#endif

/* LeakyReLU of images n0..n1, each C planes of len elements, plane (n, c) at n*s[0] + c*s[1] elements of
 * x and n*s[2] + c*s[3] of y and m (unless m is NULL) */
void xpnet_ck_lrelu_forward(const float *x, float *y, unsigned char *m, float slope, int n0, int n1, int C, i64 len,
                            const i64 *s) {
    const int vec = xpnet_ck_vector_on();
    for (int n = n0; n < n1; n++)
        for (int c = 0; c < C; c++) {
            const float *xp = x + n * s[0] + c * s[1];
            i64 at = n * s[2] + c * s[3];
            (vec ? lrelu_fwd_vec : lrelu_fwd_run)(xp, y + at, m ? m + at : NULL, slope, len);
        }
}

/* dx = d where m is set else d * slope; planes as in xpnet_ck_lrelu_forward: s holds d's {sn, sc}, then
 * those of m and dx */
void xpnet_ck_lrelu_backward(const float *d, const unsigned char *m, float *dx, float slope, int n0, int n1, int C,
                             i64 len, const i64 *s) {
    const int vec = xpnet_ck_vector_on();
    for (int n = n0; n < n1; n++)
        for (int c = 0; c < C; c++) {
            i64 at = n * s[2] + c * s[3];
            (vec ? lrelu_bwd_vec : lrelu_bwd_run)(d + n * s[0] + c * s[1], m + at, dx + at, slope, len);
        }
}
