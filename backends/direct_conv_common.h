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

static inline __mmask16 tail_mask(int Q) { return (Q % 16) ? (__mmask16)((1u << (Q % 16)) - 1) : (__mmask16)0xFFFF; }

/* Lanes w0 + j (j < 16) of a row of OW outputs whose input w0 + j + kw - pw lies inside 0..W-1. */
static inline __mmask16 inside_mask(int w0, int kw, const geom *g) {
    unsigned m = 0;
    for (int j = 0; j < 16; j++) {
        const int w = w0 + j, src = w + kw - g->pw;
        if (w < g->OW && src >= 0 && src < g->W) m |= 1u << j;
    }
    return (__mmask16)m;
}

/* S (C, KW, Hp, OW) of one image x (C, H, W): S[c][kw][hp][w] = x[c][hp - ph][w + kw - pw], 0 outside.
 * Each 16-wide piece of a row is one masked load (its lanes outside the image read nothing and give 0, even
 * where the address lies before the row: AVX-512 masks suppress faults) and one masked store: per-row
 * memcpy/memset calls of 8-28 floats took a third of a 3x3 layer's forward time. */
static inline void shifted_rows(const float *x, float *S, const geom *g) {
    const int pieces = (g->OW + 15) / 16;
    __mmask16 in[64], out[4];                  /* per (kw, piece): lanes read; per piece: lanes written */
    if (pieces > 4 || g->KW * pieces > 64) {  /* wider rows than any layer here: the plain loop */
        for (int c = 0; c < g->C; c++)
            for (int kw = 0; kw < g->KW; kw++)
                for (int hp = 0; hp < g->Hp; hp++)
                    for (int w = 0; w < g->OW; w++) {
                        const int h = hp - g->ph, src = w + kw - g->pw;
                        S[(((size_t)c * g->KW + kw) * g->Hp + hp) * g->OW + w] =
                            h >= 0 && h < g->H && src >= 0 && src < g->W ? x[((size_t)c * g->H + h) * g->W + src] : 0.f;
                    }
        return;
    }
    for (int p = 0; p < pieces; p++) out[p] = tail_mask(p == pieces - 1 ? g->OW - 16 * p : 16);
    for (int kw = 0; kw < g->KW; kw++)
        for (int p = 0; p < pieces; p++) in[kw * pieces + p] = inside_mask(16 * p, kw, g);
    const __m512 zero = _mm512_setzero_ps();
    for (int c = 0; c < g->C; c++)
        for (int kw = 0; kw < g->KW; kw++) {
            float *s = S + ((size_t)c * g->KW + kw) * g->Hp * g->OW;
            for (int hp = 0; hp < g->Hp; hp++) {
                float *row = s + (size_t)hp * g->OW;
                const int h = hp - g->ph;
                const float *src = x + ((size_t)c * g->H + h) * g->W + kw - g->pw;
                const int inside = h >= 0 && h < g->H;
                for (int p = 0; p < pieces; p++) {
                    __m512 v = inside ? _mm512_maskz_loadu_ps(in[kw * pieces + p], src + 16 * p) : zero;
                    _mm512_mask_storeu_ps(row + 16 * p, out[p], v);
                }
            }
        }
}


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
