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
 * The filter gradient is in direct_conv_taps.c and direct_conv_pixels.c, what they share in
 * direct_conv_common.h. Python calls them through ctypes (backends/direct_conv.py), in the extension module
 * native_module.c makes importable.
 */
#include "direct_conv_common.h"

#ifndef XPNET_DC_X86

int xpnet_dc_supported(void) { return 0; }
int xpnet_dc_forward(void) { return -1; }

#else

#define FWD_FB 8  /* output channels per register block */
#define FWD_R 3   /* 16-float vectors of output pixels per register block */

int xpnet_dc_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

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
            if (relu) /* NumPy's maximum(v, 0): max_ps returns its 2nd operand on NaN and on equals (-0.0 stays) */
                v = _mm512_max_ps(_mm512_setzero_ps(), v);
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
    if (R == 4) /* 6 x 4 accumulators: a 4-vector plane (49..64 pixels) in one block */
        for (; f0 + 6 <= g->F; f0 += 6) fwd_block(S, Wt, bias, o, g, KH, KW, f0, q0, last, 6, 4, relu);
    else
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
    if (nv == 4) { /* 6 filters x 4 vectors: the plane read once per 6 filters, not twice per 8 */
        fwd_channels(S, Wt, bias, o, g, KH, KW, 0, tail, 4, relu);
        return;
    }
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
static int forward(const float *x, const float *xmask, const float *Wt, const float *bias, float *out, int relu,
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
        else if (KH == 2 && KW == 2) /* a 4x4 stride-2 layer's space-to-depth (strided_conv.py) */
            fwd_image(S, Wt, bias, o, &g, 2, 2, relu);
        else
            fwd_image(S, Wt, bias, o, &g, KH, KW, relu);
    }
    free(S);
    return 0;
}

int xpnet_dc_forward(const float *x, const float *xmask, const float *Wt, const float *bias, float *out, int relu,
                     int n0, int n1, int C, int H, int W, int F, int KH, int KW, int ph, int pw) {
    XPNET_FLUSHED(forward(x, xmask, Wt, bias, out, relu, n0, n1, C, H, W, F, KH, KW, ph, pw));
}

#pragma GCC pop_options
#endif
