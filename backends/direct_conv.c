/* Direct stride-1 convolution on the CPU, float32, NCHW: forward (also dx, as the full convolution of dout
 * with the flipped filters) and the filter gradient, in AVX-512 register blocks.
 *
 * Why not im2col + GEMM: the 9x-expanded column matrix of a 3x3 layer is written and read back through
 * memory for every product, and at DeepConvNet's sizes (16-64 channels) moving it costs more than the
 * multiply-adds. Here each image is expanded only KW times, into a per-thread scratch that stays in L2:
 *
 *     S[c][kw][hp][w] = x_padded[c][hp][w + kw]      (C, KW, Hp, OW)
 *
 * so that for tap (kh, kw) the inputs of ALL output pixels q = oh*OW + ow are one contiguous run,
 * S[c][kw] + kh*OW + q. An output channel's whole OH*OW plane is then a few 16-float vectors, whatever
 * the width (no half-empty vectors on 8x8 or 14x14 maps), and a block of FB output channels x R vectors
 * keeps its FB*R accumulators in registers: per input channel and tap, R loads and FB broadcasts feed
 * FB*R fused multiply-adds. The filter gradient is the same correlation read the other way: each (f, c,
 * tap) entry is a dot product of dout's plane with S's shifted run.
 *
 * The kernels are compiled for AVX-512F whatever the build flags say (target pragma) and are only run
 * where the CPU has it (xpnet_dc_supported); everything else stays on the NumPy im2col path.
 *
 * Python sees this file through ctypes (backends/direct_conv.py), in the extension module native_module.c
 * makes importable.
 */
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define XPNET_DC_X86 1
#endif

#ifndef XPNET_DC_X86

int xpnet_dc_supported(void) { return 0; }
int xpnet_dc_forward(void) { return -1; }
int xpnet_dc_weight_grad_taps(void) { return -1; }
int xpnet_dc_weight_grad_pixels(void) { return -1; }

#else

#pragma GCC push_options
#pragma GCC target("avx512f,fma")
#include <immintrin.h>

#define AI __attribute__((always_inline)) static inline
#define FWD_FB 8  /* output channels per register block */
#define FWD_R 3   /* 16-float vectors of output pixels per register block */
#ifndef WG_FB
#define WG_FB 4   /* filter gradient: output channels ... */
#define WG_CB 4   /* ... times input channels per register block, one tap at a time */
#endif

int xpnet_dc_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

typedef struct {
    int C, H, W, F, KH, KW, ph, pw;  /* input (C, H, W), filters (F, C, KH, KW), zero padding */
    int Hp, OH, OW, Q, K;            /* padded height, output OH x OW = Q pixels, K = C*KH*KW */
} geom;

static geom make_geom(int C, int H, int W, int F, int KH, int KW, int ph, int pw) {
    geom g = {C, H, W, F, KH, KW, ph, pw, H + 2 * ph, H + 2 * ph - KH + 1, W + 2 * pw - KW + 1, 0, C * KH * KW};
    g.Q = g.OH * g.OW;
    return g;
}

static size_t scratch_floats(const geom *g) { return (size_t)g->C * g->KW * g->Hp * g->OW + 16; }

/* dst[i] = src[i] * (y[i] > 0 ? 1 : 0): a ReLU's backward, the same multiply as NumPy's dout * mask (a bool
 * mask cast to 1.0/0.0), so -0.0 and NaN come out as there; y is the ReLU's output (> 0 where its input was) */
static void relu_masked(float *dst, const float *src, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = src[i] * (y[i] > 0.f ? 1.f : 0.f);
}

/* S (C, KW, Hp, OW) of one image x (C, H, W): S[c][kw][hp][w] = x[c][hp - ph][w + kw - pw], 0 outside */
static void shifted_rows(const float *x, float *S, const geom *g) {
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

static __mmask16 tail_mask(int Q) { return (Q % 16) ? (__mmask16)((1u << (Q % 16)) - 1) : (__mmask16)0xFFFF; }

/* ---- forward: out[f][q] = b[f] + sum_{c,kh,kw} Wt[f][c][kh][kw] * S[c][kw][kh*OW + q] ---- */

AI void fwd_block(const float *S, const float *Wt, const float *bias, float *o, const geom *g, const int KH,
                  const int KW, int f0, int q0, __mmask16 last, const int FB, const int R, int relu) {
    __m512 acc[FWD_FB][8];
#pragma GCC unroll 8
    for (int i = 0; i < FB; i++)
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) acc[i][r] = _mm512_setzero_ps();
    const size_t plane = (size_t)g->Hp * g->OW;
    for (int c = 0; c < g->C; c++) {
        const float *wc = Wt + (size_t)f0 * g->K + (size_t)c * KH * KW;
#pragma GCC unroll 3
        for (int kh = 0; kh < KH; kh++)
#pragma GCC unroll 3
            for (int kw = 0; kw < KW; kw++) {
                const float *s = S + ((size_t)c * KW + kw) * plane + (size_t)kh * g->OW + q0;
                __m512 xv[8];
#pragma GCC unroll 8
                for (int r = 0; r < R; r++)
                    xv[r] = r == R - 1 ? _mm512_maskz_loadu_ps(last, s + 16 * r) : _mm512_loadu_ps(s + 16 * r);
#pragma GCC unroll 8
                for (int i = 0; i < FB; i++) {
                    __m512 wb = _mm512_set1_ps(wc[(size_t)i * g->K + kh * KW + kw]);
#pragma GCC unroll 8
                    for (int r = 0; r < R; r++) acc[i][r] = _mm512_fmadd_ps(wb, xv[r], acc[i][r]);
                }
            }
    }
#pragma GCC unroll 8
    for (int i = 0; i < FB; i++) {
        __m512 b = _mm512_set1_ps(bias ? bias[f0 + i] : 0.f);
        float *oo = o + (size_t)(f0 + i) * g->Q + q0;
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m512 v = _mm512_add_ps(acc[i][r], b);
            if (relu) v = _mm512_max_ps(v, _mm512_setzero_ps()); /* maximum(v, 0) as NumPy's: NaN stays NaN */
            if (r == R - 1)
                _mm512_mask_storeu_ps(oo + 16 * r, last, v);
            else
                _mm512_storeu_ps(oo + 16 * r, v);
        }
    }
}

AI void fwd_channels(const float *S, const float *Wt, const float *bias, float *o, const geom *g, const int KH,
                     const int KW, int q0, __mmask16 last, const int R, int relu) {
    int f0 = 0;
    for (; f0 + FWD_FB <= g->F; f0 += FWD_FB) fwd_block(S, Wt, bias, o, g, KH, KW, f0, q0, last, FWD_FB, R, relu);
    for (; f0 + 4 <= g->F; f0 += 4) fwd_block(S, Wt, bias, o, g, KH, KW, f0, q0, last, 4, R, relu);
    for (; f0 + 2 <= g->F; f0 += 2) fwd_block(S, Wt, bias, o, g, KH, KW, f0, q0, last, 2, R, relu);
    for (; f0 < g->F; f0++) fwd_block(S, Wt, bias, o, g, KH, KW, f0, q0, last, 1, R, relu);
}

AI void fwd_image(const float *S, const float *Wt, const float *bias, float *o, const geom *g, const int KH,
                  const int KW, int relu) {
    const int nv = (g->Q + 15) / 16;
    const __mmask16 full = 0xFFFF, tail = tail_mask(g->Q);
    /* blocks of FWD_R = 3 vectors; a remainder of one becomes two blocks of two (a block of one vector
     * would need FB broadcasts per FB multiply-adds) */
    const int last = nv % 3 == 0 ? 3 : nv % 3 == 2 ? 2 : nv == 1 ? 1 : 4;
    int v = 0;
    for (; v < nv - last; v += FWD_R) fwd_channels(S, Wt, bias, o, g, KH, KW, 16 * v, full, FWD_R, relu);
    switch (last) { /* the last 1..4 vectors, the final one masked */
    case 4:
        fwd_channels(S, Wt, bias, o, g, KH, KW, 16 * v, full, 2, relu);
        fwd_channels(S, Wt, bias, o, g, KH, KW, 16 * v + 32, tail, 2, relu);
        break;
    case 3: fwd_channels(S, Wt, bias, o, g, KH, KW, 16 * v, tail, 3, relu); break;
    case 2: fwd_channels(S, Wt, bias, o, g, KH, KW, 16 * v, tail, 2, relu); break;
    case 1: fwd_channels(S, Wt, bias, o, g, KH, KW, 16 * v, tail, 1, relu); break;
    }
}

/* Images n0..n1 of x (N, C, H, W) convolved with Wt (F, C, KH, KW) (+ bias (F,) unless NULL) into
 * out (N, F, OH, OW), through maximum(., 0) if ``relu``; x taken as x * (xmask > 0) where ``xmask`` (the
 * shape of x) is given. All C-contiguous float32. Returns 0, or -1 if the scratch could not be allocated. */
int xpnet_dc_forward(const float *x, const float *xmask, const float *Wt, const float *bias, float *out, int relu,
                     int n0, int n1, int C, int H, int W, int F, int KH, int KW, int ph, int pw) {
    geom g = make_geom(C, H, W, F, KH, KW, ph, pw);
    const size_t image = (size_t)C * H * W;
    float *S = malloc(sizeof(float) * (scratch_floats(&g) + (xmask ? image : 0)));
    if (!S) return -1;
    float *masked = S + scratch_floats(&g); /* one image of x * (xmask > 0), where xmask is given */
    for (int n = n0; n < n1; n++) {
        const float *xn = x + (size_t)n * image;
        if (xmask) { /* whole image at once: long runs vectorise, the rows' 8-28 floats would not */
            relu_masked(masked, xn, xmask + (size_t)n * image, image);
            xn = masked;
        }
        shifted_rows(xn, S, &g);
        float *o = out + (size_t)n * F * g.Q;
        if (KH == 3 && KW == 3)
            fwd_image(S, Wt, bias, o, &g, 3, 3, relu);
        else
            fwd_image(S, Wt, bias, o, &g, KH, KW, relu);
    }
    free(S);
    return 0;
}

/* ---- filter gradient: dW[f][c][kh][kw] += sum_n sum_q dout[n][f][q] * S_n[c][kw][kh*OW + q] ---- */

/* The 16 horizontal sums of v[0..15] as one vector (lane j = the sum of v[j]'s lanes): a transpose-and-add
 * tree of 45 shuffles and adds instead of 16 separate reductions (~8 each). */
AI __m512 hsum16(const __m512 *v) {
    __m512 t[8], u[4];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) /* per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3] */
        t[j] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * j], v[2 * j + 1]), _mm512_unpackhi_ps(v[2 * j], v[2 * j + 1]));
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) /* per 128-bit lane: that lane's sums of v[4k..4k+3] */
        u[k] = _mm512_add_ps(_mm512_shuffle_ps(t[2 * k], t[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(t[2 * k], t[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 x = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(u[0], u[1], _MM_SHUFFLE(3, 1, 3, 1)));
    __m512 y = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(u[2], u[3], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_add_ps(_mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(3, 1, 3, 1)));
}

AI void wg_step(const float *d, const float *s, __m512 acc[WG_FB][WG_CB], int Q, size_t kwplane, int q,
                __mmask16 mk, const int FB, const int CB) {
    __m512 dv[WG_FB], sv[WG_CB];
#pragma GCC unroll 8
    for (int i = 0; i < FB; i++) dv[i] = _mm512_maskz_loadu_ps(mk, d + (size_t)i * Q + q);
#pragma GCC unroll 8
    for (int j = 0; j < CB; j++) sv[j] = _mm512_maskz_loadu_ps(mk, s + j * kwplane + q);
#pragma GCC unroll 8
    for (int i = 0; i < FB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < CB; j++) acc[i][j] = _mm512_fmadd_ps(dv[i], sv[j], acc[i][j]);
}

/* one tap, FB output x CB input channels, summed over the m images of a chunk */
AI void wg_block(const float *const *S, const float *dout, float *dW, const geom *g, int m, int kh, int kw, int f0,
                 int c0, const int FB, const int CB) {
    __m512 acc[WG_FB][WG_CB];
#pragma GCC unroll 8
    for (int i = 0; i < FB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < CB; j++) acc[i][j] = _mm512_setzero_ps();
    const int nv = (g->Q + 15) / 16;
    const __mmask16 tail = tail_mask(g->Q);
    const size_t plane = (size_t)g->Hp * g->OW, kwplane = (size_t)g->KW * plane;
    for (int n = 0; n < m; n++) {
        const float *d = dout + (size_t)n * g->F * g->Q + (size_t)f0 * g->Q;
        const float *s = S[n] + ((size_t)c0 * g->KW + kw) * plane + (size_t)kh * g->OW;
        int v = 0;
        for (; v + 1 < nv; v++) wg_step(d, s, acc, g->Q, kwplane, 16 * v, (__mmask16)0xFFFF, FB, CB);
        wg_step(d, s, acc, g->Q, kwplane, 16 * v, tail, FB, CB);
    }
    const int taps = g->KH * g->KW;
    float sums[WG_FB * WG_CB];
    if (FB * CB == 16) {
        __m512 v[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) v[i] = acc[i / CB][i % CB];
        _mm512_storeu_ps(sums, hsum16(v));
    } else {
#pragma GCC unroll 16
        for (int i = 0; i < FB * CB; i++) sums[i] = _mm512_reduce_add_ps(acc[i / CB][i % CB]);
    }
#pragma GCC unroll 8
    for (int i = 0; i < FB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < CB; j++) dW[(size_t)(f0 + i) * g->K + (size_t)(c0 + j) * taps + kh * g->KW + kw] += sums[i * CB + j];
}

/* all taps of one FB x CB block, kw outer and kh inner: the CB shifted-row planes of one kw stay in L1
 * for its KH taps, and the FB rows of dout for the whole block */
AI void wg_taps(const float *const *S, const float *dout, float *dW, const geom *g, int m, int f0, int c0,
                const int FB, const int CB) {
    for (int kw = 0; kw < g->KW; kw++)
        for (int kh = 0; kh < g->KH; kh++) wg_block(S, dout, dW, g, m, kh, kw, f0, c0, FB, CB);
}

AI void wg_inputs(const float *const *S, const float *dout, float *dW, const geom *g, int m, int f0, const int FB) {
    int c0 = 0;
    for (; c0 + WG_CB <= g->C; c0 += WG_CB) wg_taps(S, dout, dW, g, m, f0, c0, FB, WG_CB);
    for (; c0 + 2 <= g->C; c0 += 2) wg_taps(S, dout, dW, g, m, f0, c0, FB, 2);
    for (; c0 < g->C; c0++) wg_taps(S, dout, dW, g, m, f0, c0, FB, 1);
}

static void wg_chunk(const float *const *S, const float *dout, float *dW, const geom *g, int m) {
    int f0 = 0;
    for (; f0 + WG_FB <= g->F; f0 += WG_FB) wg_inputs(S, dout, dW, g, m, f0, WG_FB);
    for (; f0 + 2 <= g->F; f0 += 2) wg_inputs(S, dout, dW, g, m, f0, 2);
    for (; f0 < g->F; f0++) wg_inputs(S, dout, dW, g, m, f0, 1);
}

#ifndef WG_BLOCK_BYTES
#define WG_BLOCK_BYTES (32 << 10) /* a block's dout rows and shifted-row planes over a chunk's images: L1 */
#endif

/* db[f] += the sum of rows[f][0..Q) for f < F (rows (F, Q)) */
static void row_sums(const float *rows, float *db, int F, int Q) {
    const __mmask16 tail = tail_mask(Q);
    const int nv = (Q + 15) / 16;
    for (int f = 0; f < F; f++) {
        __m512 acc = _mm512_setzero_ps();
        for (int v = 0; v < nv; v++)
            acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(v == nv - 1 ? tail : (__mmask16)0xFFFF, rows + (size_t)f * Q + 16 * v));
        db[f] += _mm512_reduce_add_ps(acc);
    }
}

/* dW (F, C, KH, KW) and db (F,) += the filter and bias gradients of images n0..n1 (x (N, C, H, W), dout
 * (N, F, OH, OW)); dout taken as dout * (y > 0) where ``y`` (the shape of dout: the ReLU's output of a
 * convolution + ReLU) is given. Returns 0, or -1 if the scratch could not be allocated. */
int xpnet_dc_weight_grad_taps(const float *x, const float *dout, const float *y, float *dW, float *db, int n0, int n1,
                         int C, int H, int W, int F, int KH, int KW, int ph, int pw) {
    geom g = make_geom(C, H, W, F, KH, KW, ph, pw);
    size_t per = scratch_floats(&g), dper = (size_t)F * g.Q;
    int m = (int)(WG_BLOCK_BYTES / (sizeof(float) * ((size_t)WG_FB * g.Q + (size_t)WG_CB * g.Hp * g.OW)));
    if (m < 1) m = 1;
    if (m > n1 - n0) m = n1 - n0;
    if (m < 1) m = 1;
    float *buf = malloc(sizeof(float) * (per + (y ? dper : 0)) * m);
    const float **S = malloc(sizeof(float *) * m);
    if (!buf || !S) {
        free(buf);
        free(S);
        return -1;
    }
    for (int i = 0; i < m; i++) S[i] = buf + per * i;
    float *masked = buf + per * m; /* the chunk's dout * (y > 0), (m, F, Q), where y is given */
    for (int n = n0; n < n1; n += m) {
        int k = n1 - n < m ? n1 - n : m;
        const float *d = dout + (size_t)n * dper;
        if (y) {
            relu_masked(masked, d, y + (size_t)n * dper, dper * k);
            d = masked;
        }
        for (int i = 0; i < k; i++) {
            shifted_rows(x + (size_t)(n + i) * C * H * W, (float *)S[i], &g);
            row_sums(d + i * dper, db, F, g.Q);
        }
        wg_chunk(S, d, dW, &g, k);
    }
    free(buf);
    free(S);
    return 0;
}

/* ---- filter gradient as an outer-product GEMM: dW[f][t*C + c] += sum_q dout[f][q] * colT[q][t*C + c] ----
 * colT (Q, Kp) is one image's columns in pixel-major order, tap-major within a row (t = kh*KW + kw), each
 * row zero-padded to Kp = K rounded up to 16: built from the image in (H, W, C) order, a tap's C inputs
 * are one contiguous run. A register block of GB output channels x KB vectors of K keeps its accumulators
 * over every pixel of a chunk of images: per pixel, KB loads of colT's row and GB broadcasts of dout feed
 * GB*KB multiply-adds, and no horizontal sum is ever needed. */

#define G_FB 4 /* output channels per block */
#define G_KB 6 /* 16-float vectors of K per block */

static int padded_k(const geom *g) { return (g->K + 15) / 16 * 16; }

/* colT (Q, Kp) of one image x (C, H, W); hwc: scratch of C*H*W floats */
static void pixel_columns(const float *x, float *hwc, float *colT, const geom *g) {
    const int C = g->C, Kp = padded_k(g);
    for (int c = 0; c < C; c++)
        for (int i = 0; i < g->H * g->W; i++) hwc[(size_t)i * C + c] = x[(size_t)c * g->H * g->W + i];
    for (int oh = 0; oh < g->OH; oh++)
        for (int ow = 0; ow < g->OW; ow++) {
            float *row = colT + ((size_t)oh * g->OW + ow) * Kp;
            for (int kh = 0; kh < g->KH; kh++) {
                int h = oh + kh - g->ph;
                for (int kw = 0; kw < g->KW; kw++) {
                    int w = ow + kw - g->pw;
                    float *dst = row + (size_t)(kh * g->KW + kw) * C;
                    const float *src = hwc + ((size_t)h * g->W + w) * C;
                    int inside = h >= 0 && h < g->H && w >= 0 && w < g->W;
                    int j = 0; /* C floats, inline: a memcpy call per tap costs more than the copy */
                    for (; j + 16 <= C; j += 16)
                        _mm512_storeu_ps(dst + j, inside ? _mm512_loadu_ps(src + j) : _mm512_setzero_ps());
                    if (j < C) {
                        __mmask16 mk = (__mmask16)((1u << (C - j)) - 1);
                        _mm512_mask_storeu_ps(dst + j, mk, inside ? _mm512_maskz_loadu_ps(mk, src + j)
                                                                  : _mm512_setzero_ps());
                    }
                }
            }
            memset(row + g->K, 0, sizeof(float) * (Kp - g->K));
        }
}

AI void g_block(const float *const *colT, const float *d, float *acc_out, const geom *g, int m, int f0, int k0,
                const int FB, const int KB) {
    __m512 acc[G_FB][G_KB];
#pragma GCC unroll 8
    for (int i = 0; i < FB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < KB; j++) acc[i][j] = _mm512_setzero_ps();
    const int Kp = padded_k(g);
    const size_t dper = (size_t)g->F * g->Q;
    for (int n = 0; n < m; n++) {
        const float *dn = d + n * dper + (size_t)f0 * g->Q, *cn = colT[n] + k0;
        for (int q = 0; q < g->Q; q++) {
            __m512 b[G_KB];
#pragma GCC unroll 8
            for (int j = 0; j < KB; j++) b[j] = _mm512_loadu_ps(cn + (size_t)q * Kp + 16 * j);
#pragma GCC unroll 8
            for (int i = 0; i < FB; i++) {
                __m512 a = _mm512_set1_ps(dn[(size_t)i * g->Q + q]);
#pragma GCC unroll 8
                for (int j = 0; j < KB; j++) acc[i][j] = _mm512_fmadd_ps(a, b[j], acc[i][j]);
            }
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < FB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < KB; j++) {
            float *o = acc_out + (size_t)(f0 + i) * Kp + k0 + 16 * j;
            _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o), acc[i][j]));
        }
}

AI void g_kblocks(const float *const *colT, const float *d, float *acc_out, const geom *g, int m, int f0,
                  const int FB) {
    const int nk = padded_k(g) / 16;
    int k = 0;
    for (; k + G_KB <= nk; k += G_KB) g_block(colT, d, acc_out, g, m, f0, 16 * k, FB, G_KB);
    switch (nk - k) {
    case 5: g_block(colT, d, acc_out, g, m, f0, 16 * k, FB, 5); break;
    case 4: g_block(colT, d, acc_out, g, m, f0, 16 * k, FB, 4); break;
    case 3: g_block(colT, d, acc_out, g, m, f0, 16 * k, FB, 3); break;
    case 2: g_block(colT, d, acc_out, g, m, f0, 16 * k, FB, 2); break;
    case 1: g_block(colT, d, acc_out, g, m, f0, 16 * k, FB, 1); break;
    }
}

#define G_CHUNK_BYTES (1 << 20) /* a chunk's pixel columns stay in L2 while every block reads them */

/* The same as xpnet_dc_weight_grad_taps, by outer products over pixel columns (see above). */
int xpnet_dc_weight_grad_pixels(const float *x, const float *dout, const float *y, float *dW, float *db, int n0,
                                int n1, int C, int H, int W, int F, int KH, int KW, int ph, int pw) {
    geom g = make_geom(C, H, W, F, KH, KW, ph, pw);
    const int Kp = padded_k(&g);
    const size_t per = (size_t)g.Q * Kp, dper = (size_t)F * g.Q, image = (size_t)C * H * W;
    int m = (int)(G_CHUNK_BYTES / (sizeof(float) * per));
    if (m > n1 - n0) m = n1 - n0;
    if (m < 1) m = 1;
    float *buf = malloc(sizeof(float) * ((per + (y ? dper : 0)) * m + image + (size_t)F * Kp));
    const float **colT = malloc(sizeof(float *) * m);
    if (!buf || !colT) {
        free(buf);
        free(colT);
        return -1;
    }
    for (int i = 0; i < m; i++) colT[i] = buf + per * i;
    float *masked = buf + per * m, *hwc = masked + (y ? dper * m : 0), *acc = hwc + image;
    memset(acc, 0, sizeof(float) * F * Kp);
    for (int n = n0; n < n1; n += m) {
        int k = n1 - n < m ? n1 - n : m;
        const float *d = dout + (size_t)n * dper;
        if (y) {
            relu_masked(masked, d, y + (size_t)n * dper, dper * k);
            d = masked;
        }
        for (int i = 0; i < k; i++) {
            pixel_columns(x + (size_t)(n + i) * image, hwc, (float *)colT[i], &g);
            row_sums(d + i * dper, db, F, g.Q);
        }
        int f0 = 0;
        for (; f0 + G_FB <= F; f0 += G_FB) g_kblocks(colT, d, acc, &g, k, f0, G_FB);
        for (; f0 + 2 <= F; f0 += 2) g_kblocks(colT, d, acc, &g, k, f0, 2);
        for (; f0 < F; f0++) g_kblocks(colT, d, acc, &g, k, f0, 1);
    }
    const int taps = KH * KW; /* acc[f][t*C + c] -> dW[f][c][t] */
    for (int f = 0; f < F; f++)
        for (int t = 0; t < taps; t++)
            for (int c = 0; c < C; c++) dW[((size_t)f * C + c) * taps + t] += acc[(size_t)f * Kp + t * C + c];
    free(buf);
    free(colT);
    return 0;
}

#pragma GCC pop_options
#endif
