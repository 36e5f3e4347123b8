/* The filter gradient by outer products over pixel columns (for small maps, see
 * xpnet.backends.direct_conv.by_pixels). */
#include "direct_conv_common.h"

#ifndef XPNET_DC_X86

int xpnet_dc_weight_grad_pixels(void) { return -1; }

#else

/* ---- filter gradient as an outer-product GEMM: dW[f][t*C + c] += sum_q dout[f][q] * colT[q][t*C + c] ----
 * colT (Q, Kp) is one image's columns in pixel-major order, tap-major within a row (t = kh*KW + kw), each
 * row zero-padded to Kp = K rounded up to 16: built from the image in (H, W, C) order, a tap's C inputs
 * are one contiguous run. A register block of GB output channels x KB vectors of K keeps its accumulators
 * over a pass of G_PIXELS pixels: per pixel, KB loads of colT's row and GB broadcasts of dout feed GB*KB
 * multiply-adds, and no horizontal sum is ever needed. Every block of output channels takes its turn on
 * the same strip of colT (pixels x KB vectors) while it is in L1. */

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

/* acc_out[f0..f0+FB)[k0..k0+16*KB) += sum over pixels q0..q1 of one image of dout[f][q] * colT[q][k] */
AI void g_block(const float *colT, const float *d, float *acc_out, const geom *g, int q0, int q1, int f0, int k0,
                const int FB, const int KB) {
    __m512 acc[G_FB][G_KB];
    const int Kp = padded_k(g);
#pragma GCC unroll 8
    for (int i = 0; i < FB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < KB; j++) acc[i][j] = _mm512_loadu_ps(acc_out + (size_t)(f0 + i) * Kp + k0 + 16 * j);
    const float *dn = d + (size_t)f0 * g->Q, *cn = colT + k0;
    for (int q = q0; q < q1; q++) {
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
#pragma GCC unroll 8
    for (int i = 0; i < FB; i++)
#pragma GCC unroll 8
        for (int j = 0; j < KB; j++) _mm512_storeu_ps(acc_out + (size_t)(f0 + i) * Kp + k0 + 16 * j, acc[i][j]);
}

/* every output channel block over one KB-vector strip of K and pixels q0..q1: the strip of colT stays in L1
 * while all of them read it (read from L2 by each block in turn, it kept the kernel waiting on L2) */
AI void g_filters(const float *colT, const float *d, float *acc_out, const geom *g, int q0, int q1, int k0,
                  const int KB) {
    int f0 = 0;
    for (; f0 + G_FB <= g->F; f0 += G_FB) g_block(colT, d, acc_out, g, q0, q1, f0, k0, G_FB, KB);
    for (; f0 + 2 <= g->F; f0 += 2) g_block(colT, d, acc_out, g, q0, q1, f0, k0, 2, KB);
    for (; f0 < g->F; f0++) g_block(colT, d, acc_out, g, q0, q1, f0, k0, 1, KB);
}

#define G_PIXELS 64 /* pixels per pass: a strip of G_PIXELS x G_KB vectors of colT is 24 KB, in L1 */

/* one image's share: acc_out (F, Kp) += dout (F, Q) @ colT (Q, Kp) */
static void g_image(const float *colT, const float *d, float *acc_out, const geom *g) {
    const int nk = padded_k(g) / 16;
    for (int q0 = 0; q0 < g->Q; q0 += G_PIXELS) {
        const int q1 = q0 + G_PIXELS < g->Q ? q0 + G_PIXELS : g->Q;
        int k = 0;
        for (; k + G_KB <= nk; k += G_KB) g_filters(colT, d, acc_out, g, q0, q1, 16 * k, G_KB);
        switch (nk - k) {
        case 5: g_filters(colT, d, acc_out, g, q0, q1, 16 * k, 5); break;
        case 4: g_filters(colT, d, acc_out, g, q0, q1, 16 * k, 4); break;
        case 3: g_filters(colT, d, acc_out, g, q0, q1, 16 * k, 3); break;
        case 2: g_filters(colT, d, acc_out, g, q0, q1, 16 * k, 2); break;
        case 1: g_filters(colT, d, acc_out, g, q0, q1, 16 * k, 1); break;
        }
    }
}

#define G_CHUNK_BYTES (1 << 18) /* the masked dout of a chunk of images, in L2 while its images are done */

/* The same as xpnet_dc_weight_grad_taps, by outer products over pixel columns (see above). */
static int weight_grad(const float *x, const float *dout, const float *y, float *dW, float *db, int n0,
                                int n1, int C, int H, int W, int F, int KH, int KW, int ph, int pw) {
    geom g = make_geom(C, H, W, F, KH, KW, ph, pw);
    const int Kp = padded_k(&g);
    const size_t per = (size_t)g.Q * Kp, dper = (size_t)F * g.Q, image = (size_t)C * H * W;
    const int m = chunk_images(G_CHUNK_BYTES, sizeof(float) * dper, n1 - n0);
    float *buf = malloc(sizeof(float) * (per + (y ? dper * m : 0) + image + (size_t)F * Kp));
    if (!buf) return -1;
    float *colT = buf, *masked = buf + per, *hwc = masked + (y ? dper * m : 0), *acc = hwc + image;
    memset(acc, 0, sizeof(float) * F * Kp);
    for (int n = n0; n < n1; n += m) {
        const int k = n1 - n < m ? n1 - n : m;
        const float *d = chunk_dout(dout, y, masked, db, (size_t)n, k, &g);
        for (int i = 0; i < k; i++) {
            pixel_columns(x + (size_t)(n + i) * image, hwc, colT, &g);
            g_image(colT, d + i * dper, acc, &g);
        }
    }
    const int taps = KH * KW; /* acc[f][t*C + c] -> dW[f][c][t] */
    for (int f = 0; f < F; f++)
        for (int t = 0; t < taps; t++)
            for (int c = 0; c < C; c++) dW[((size_t)f * C + c) * taps + t] += acc[(size_t)f * Kp + t * C + c];
    free(buf);
    return 0;
}

int xpnet_dc_weight_grad_pixels(const float *x, const float *dout, const float *y, float *dW, float *db, int n0,
                                int n1, int C, int H, int W, int F, int KH, int KW, int ph, int pw) {
    XPNET_FLUSHED(weight_grad(x, dout, y, dW, db, n0, n1, C, H, W, F, KH, KW, ph, pw));
}

#pragma GCC pop_options
#endif
