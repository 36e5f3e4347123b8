/* What xpnet's direct convolution kernels (direct_conv.c, direct_conv_taps.c, direct_conv_pixels.c) share:
 * the geometry, the per-image shifted rows, the ReLU mask's multiply, masks and row sums. Included after the
 * AVX-512 target pragma is pushed (XPNET_DC_BEGIN); each file pops it at its end (XPNET_DC_END). */
#ifndef XPNET_DIRECT_CONV_COMMON_H
#define XPNET_DIRECT_CONV_COMMON_H

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define XPNET_DC_X86 1
#endif

#ifdef XPNET_DC_X86
#pragma GCC push_options
#pragma GCC target("avx512f,fma")
#include <immintrin.h>

#define AI __attribute__((always_inline)) static inline

typedef struct {
    int C, H, W, F, KH, KW, ph, pw;  /* input (C, H, W), filters (F, C, KH, KW), zero padding */
    int Hp, OH, OW, Q, K;            /* padded height, output OH x OW = Q pixels, K = C*KH*KW */
} geom;

static inline geom make_geom(int C, int H, int W, int F, int KH, int KW, int ph, int pw) {
    geom g = {C, H, W, F, KH, KW, ph, pw, H + 2 * ph, H + 2 * ph - KH + 1, W + 2 * pw - KW + 1, 0, C * KH * KW};
    g.Q = g.OH * g.OW;
    return g;
}

static inline size_t scratch_floats(const geom *g) { return (size_t)g->C * g->KW * g->Hp * g->OW + 16; }

/* dst[i] = src[i] * (y[i] > 0 ? 1 : 0): a ReLU's backward, the same multiply as NumPy's dout * mask (a bool
 * mask cast to 1.0/0.0), so -0.0 and NaN come out as there; y is the ReLU's output (> 0 where its input was) */
static inline void relu_masked(float *dst, const float *src, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = src[i] * (y[i] > 0.f ? 1.f : 0.f);
}

/* S (C, KW, Hp, OW) of one image x (C, H, W): S[c][kw][hp][w] = x[c][hp - ph][w + kw - pw], 0 outside */
static inline void shifted_rows(const float *x, float *S, const geom *g) {
    for (int c = 0; c < g->C; c++)
        for (int kw = 0; kw < g->KW; kw++) {
            float *s = S + ((size_t)c * g->KW + kw) * g->Hp * g->OW;
            int w0 = g->pw - kw > 0 ? g->pw - kw : 0;                    /* first w whose input is >= 0 */
            int w1 = g->W + g->pw - kw < g->OW ? g->W + g->pw - kw : g->OW; /* one past the last < W */
            for (int hp = 0; hp < g->Hp; hp++) {
                float *row = s + (size_t)hp * g->OW;
                int h = hp - g->ph;
                if (h < 0 || h >= g->H || w1 <= w0) {
                    memset(row, 0, sizeof(float) * g->OW);
                    continue;
                }
                memset(row, 0, sizeof(float) * w0);
                memcpy(row + w0, x + ((size_t)c * g->H + h) * g->W + (w0 + kw - g->pw), sizeof(float) * (w1 - w0));
                memset(row + w1, 0, sizeof(float) * (g->OW - w1));
            }
        }
}

static inline __mmask16 tail_mask(int Q) { return (Q % 16) ? (__mmask16)((1u << (Q % 16)) - 1) : (__mmask16)0xFFFF; }

/* db[f] += the sum of rows[f][0..Q) for f < F (rows (F, Q)) */
static inline void row_sums(const float *rows, float *db, int F, int Q) {
    const __mmask16 tail = tail_mask(Q);
    const int nv = (Q + 15) / 16;
    for (int f = 0; f < F; f++) {
        __m512 acc = _mm512_setzero_ps();
        for (int v = 0; v < nv; v++)
            acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(v == nv - 1 ? tail : (__mmask16)0xFFFF, rows + (size_t)f * Q + 16 * v));
        db[f] += _mm512_reduce_add_ps(acc);
    }
}

/* The kernels' arithmetic with denormals flushed: MXCSR's FTZ and DAZ bits set in this thread for the call
 * and restored after it (MXCSR is per-thread state: nothing outlives the call). Late in training 1-2% of
 * the backward pass's gradients fall below float32's normal range (1.2e-38), and a multiply-add on such a
 * value takes a microcode assist: a trained DeepConvNet's step ran ~30% slower than a fresh one's until
 * these kernels flushed them. Values that small are 0 to any gradient step. */
#define XPNET_FLUSHED(call)                                                                                            \
    do {                                                                                                               \
        const unsigned int csr_ = _mm_getcsr();                                                                        \
        _mm_setcsr(csr_ | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */                                                  \
        const int rc_ = (call);                                                                                        \
        _mm_setcsr(csr_);                                                                                              \
        return rc_;                                                                                                    \
    } while (0)

/* Images per chunk: as many as fit ``budget`` bytes at ``per_image`` each, at least one, at most ``n``. */
static inline int chunk_images(size_t budget, size_t per_image, int n) {
    int m = (int)(budget / per_image);
    if (m > n) m = n;
    return m < 1 ? 1 : m;
}

/* The k images of dout from image n on, (k, F, Q): dout itself, or dout * (y > 0) written to ``masked`` where
 * ``y`` is given; their bias gradient is added to db on the way. */
static inline const float *chunk_dout(const float *dout, const float *y, float *masked, float *db, size_t n, int k,
                                      const geom *g) {
    const size_t dper = (size_t)g->F * g->Q;
    const float *d = dout + n * dper;
    if (y) {
        relu_masked(masked, d, y + n * dper, dper * k);
        d = masked;
    }
    for (int i = 0; i < k; i++) row_sums(d + i * dper, db, g->F, g->Q);
    return d;
}

#endif
#endif
