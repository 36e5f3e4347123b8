/* The filter gradient by per-tap dot products: dW[f][c][kh][kw] = sum over images and output pixels q of
 * dout[f][q] * S[c][kw][kh*OW + q] (direct_conv_common.h's shifted rows), in FB x CB channel blocks per tap
 * whose accumulators are summed across lanes at the end. For maps of more than 128 pixels (see
 * xpnet.backends.direct_conv.by_pixels). */
#include "direct_conv_common.h"

#ifndef XPNET_DC_X86

int xpnet_dc_weight_grad_taps(void) { return -1; }

#else

#define WG_FB 4   /* output channels ... */
#define WG_CB 4   /* ... times input channels per register block, one tap at a time */

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
    if (FB == 4 && CB == 4) { /* the full block: one tree for its 16 sums */
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

#define WG_BLOCK_BYTES (32 << 10) /* a block's dout rows and shifted-row planes over a chunk's images: L1 */

/* dW (F, C, KH, KW) and db (F,) += the filter and bias gradients of images n0..n1 (x (N, C, H, W), dout
 * (N, F, OH, OW)); dout taken as dout * (y > 0) where ``y`` (the shape of dout: the ReLU's output of a
 * convolution + ReLU) is given. Returns 0, or -1 if the scratch could not be allocated. */
static int weight_grad(const float *x, const float *dout, const float *y, float *dW, float *db, int n0, int n1,
                         int C, int H, int W, int F, int KH, int KW, int ph, int pw) {
    geom g = make_geom(C, H, W, F, KH, KW, ph, pw);
    size_t per = scratch_floats(&g), dper = (size_t)F * g.Q;
    const int m = chunk_images(WG_BLOCK_BYTES, sizeof(float) * ((size_t)WG_FB * g.Q + (size_t)WG_CB * g.Hp * g.OW),
                               n1 - n0);
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
        const int k = n1 - n < m ? n1 - n : m;
        const float *d = chunk_dout(dout, y, masked, db, (size_t)n, k, &g);
        for (int i = 0; i < k; i++) shifted_rows(x + (size_t)(n + i) * C * H * W, (float *)S[i], &g);
        wg_chunk(S, d, dW, &g, k);
    }
    free(buf);
    free(S);
    return 0;
}

int xpnet_dc_weight_grad_taps(const float *x, const float *dout, const float *y, float *dW, float *db, int n0, int n1,
                         int C, int H, int W, int F, int KH, int KW, int ph, int pw) {
    XPNET_FLUSHED(weight_grad(x, dout, y, dW, db, n0, n1, C, H, W, F, KH, KW, ph, pw));
}

#pragma GCC pop_options
#endif
