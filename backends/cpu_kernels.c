/* Max pooling and ReLU on the CPU, float32: the NumPy backend's two in one pass each (and, at the end, the
 * space-to-depth copies of strided_conv.py).
 *
 * The NumPy code they replace (backends/pooling.py, numpy_split.relu_*) makes one array pass per window
 * tap or per ufunc; here each output reads its inputs once. They give the same bits as that code:
 *
 * - maximum is NumPy's: maximum(a, b) is b on ties (so a -0/+0 tie gives the later tap) and a NaN
 *   propagates; padding reads as -inf; the window maximum folds the taps in (kh, kw) order;
 * - the pooling gradient goes to the first tap in (kh, kw) order equal to the maximum (none if it is
 *   NaN), as dout * 1 or dout * 0 (so an inf or NaN dout gives NaN elsewhere in its window, as in NumPy),
 *   summed over overlapping windows in tap order, the positions no window covers 0 (which of two NaNs
 *   a sum keeps is left to the compiler's operand order, here as in NumPy's loops);
 * - ReLU is y = maximum(x, 0), mask = x > 0, and its gradient dout * mask.
 *
 * Arrays are addressed as planes: image n, channel c of an array starts at n*sn + c*sc floats, and each
 * (H, W) plane is contiguous, so the NCHW and the channel-major layouts both run without a copy.
 *
 * Every kernel has a portable C loop; on a CPU with AVX-512F the 2x2 stride-2 pooling and ReLU run
 * vector code instead (target pragma, checked at run time). Python calls them through ctypes
 * (backends/cpu_kernels.py); this file shares the extension module of direct_conv.c.
 */
#include <stdlib.h>
#include <string.h>

typedef long long i64;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define XPNET_CK_X86 1
#endif

typedef struct {
    int C, H, W, KH, KW, SH, SW, PH, PW, OH, OW;
} pool_geom;

static int use_vector = -1; /* -1: not decided yet; 0: portable loops; 1: AVX-512F */

static int vector_on(void) {
    if (use_vector < 0) {
#ifdef XPNET_CK_X86
        __builtin_cpu_init();
        use_vector = __builtin_cpu_supports("avx512f") ? 1 : 0;
#else
        use_vector = 0;
#endif
    }
    return use_vector;
}

/* Whether the vector kernels run (those of cpu_leaky_relu.c and cpu_batchnorm.c too) */
int xpnet_ck_vector_on(void) { return vector_on(); }

/* Turn the vector kernels off (0) or back on where the CPU has them (1); returns whether they run now.
 * The tests use it to check the portable loops on an AVX-512 machine too. */
int xpnet_ck_use_vector(int on) {
    use_vector = -1;
    if (!on || !vector_on()) use_vector = 0;
    return use_vector;
}

static inline float np_max(float a, float b) { return (a > b || a != a) ? a : b; }

/* ---- portable loops ---- */

static inline float tap_value(const float *x, const pool_geom *g, int oh, int ow, int kh, int kw) {
    int h = oh * g->SH - g->PH + kh, w = ow * g->SW - g->PW + kw;
    return (h >= 0 && h < g->H && w >= 0 && w < g->W) ? x[(size_t)h * g->W + w] : -__builtin_inff();
}

static void max_fwd_plane(const float *x, float *o, const pool_geom *g) {
    for (int oh = 0; oh < g->OH; oh++)
        for (int ow = 0; ow < g->OW; ow++) {
            float m = tap_value(x, g, oh, ow, 0, 0);
            for (int k = 1; k < g->KH * g->KW; k++) m = np_max(m, tap_value(x, g, oh, ow, k / g->KW, k % g->KW));
            o[(size_t)oh * g->OW + ow] = m;
        }
}

/* hit[q]: the first tap equal to the maximum of output q, KH*KW where none is (a NaN maximum) */
static void first_hits(const float *x, const float *p, int *hit, const pool_geom *g) {
    const int taps = g->KH * g->KW;
    for (int oh = 0; oh < g->OH; oh++)
        for (int ow = 0; ow < g->OW; ow++) {
            const float m = p[(size_t)oh * g->OW + ow];
            int k = 0;
            while (k < taps && !(tap_value(x, g, oh, ow, k / g->KW, k % g->KW) == m)) k++;
            hit[oh * g->OW + ow] = k;
        }
}

static void max_bwd_plane(const float *x, const float *p, const float *d, float *dx, int *hit, const pool_geom *g) {
    first_hits(x, p, hit, g);
    const int overlap = g->SH < g->KH || g->SW < g->KW;
    const int tiled = g->SH == g->KH && g->SW == g->KW && !g->PH && !g->PW && g->OH * g->SH == g->H &&
                      g->OW * g->SW == g->W;
    if (!tiled) memset(dx, 0, sizeof(float) * g->H * g->W);
    for (int k = 0; k < g->KH * g->KW; k++) /* taps outer: overlapping windows add up in tap order */
        for (int oh = 0; oh < g->OH; oh++) {
            int h = oh * g->SH - g->PH + k / g->KW;
            if (h < 0 || h >= g->H) continue;
            for (int ow = 0; ow < g->OW; ow++) {
                int w = ow * g->SW - g->PW + k % g->KW, q = oh * g->OW + ow;
                if (w < 0 || w >= g->W) continue;
                float v = d[q] * (hit[q] == k ? 1.0f : 0.0f);
                if (overlap)
                    dx[(size_t)h * g->W + w] += v;
                else
                    dx[(size_t)h * g->W + w] = v;
            }
        }
}

static void relu_fwd_run(const float *x, float *y, unsigned char *m, i64 n) {
    for (i64 i = 0; i < n; i++) {
        float v = x[i];
        y[i] = (v > 0.0f || v != v) ? v : 0.0f;
        if (m) m[i] = v > 0.0f;
    }
}

static void relu_bwd_run(const float *d, const unsigned char *m, float *dx, i64 n) {
    for (i64 i = 0; i < n; i++) dx[i] = d[i] * (m[i] ? 1.0f : 0.0f);
}

/* ---- AVX-512F: 2x2 stride-2 pooling on even/odd lanes, ReLU 16 floats at a time ---- */

#ifdef XPNET_CK_X86
#pragma GCC push_options
#pragma GCC target("avx512f")
#include <immintrin.h>

static inline __m512 v_np_max(__m512 a, __m512 b) { /* vmaxps is a > b ? a : b; keep a where a is NaN */
    return _mm512_mask_mov_ps(_mm512_max_ps(a, b), _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), a);
}

static inline __mmask16 lanes(int n) { return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

/* the even and odd columns of 2*cnt floats of a row */
static inline void even_odd(const float *r, int cnt, __m512 *e, __m512 *o) {
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    __m512 a = _mm512_maskz_loadu_ps(lanes(2 * cnt), r), b = _mm512_maskz_loadu_ps(lanes(2 * cnt - 16), r + 16);
    *e = _mm512_permutex2var_ps(a, ev, b);
    *o = _mm512_permutex2var_ps(a, od, b);
}

static inline void store_interleaved(float *r, int cnt, __m512 e, __m512 o) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    _mm512_mask_storeu_ps(r, lanes(2 * cnt), _mm512_permutex2var_ps(e, lo, o));
    _mm512_mask_storeu_ps(r + 16, lanes(2 * cnt - 16), _mm512_permutex2var_ps(e, hi, o));
}

static void max_fwd_2x2(const float *x, float *o, const pool_geom *g) {
    for (int oh = 0; oh < g->OH; oh++) {
        const float *r0 = x + (size_t)2 * oh * g->W, *r1 = r0 + g->W;
        for (int ow = 0; ow < g->OW; ow += 16) {
            int cnt = g->OW - ow < 16 ? g->OW - ow : 16;
            __m512 e0, o0, e1, o1;
            even_odd(r0 + 2 * ow, cnt, &e0, &o0);
            even_odd(r1 + 2 * ow, cnt, &e1, &o1);
            _mm512_mask_storeu_ps(o + (size_t)oh * g->OW + ow, lanes(cnt), v_np_max(v_np_max(v_np_max(e0, o0), e1), o1));
        }
    }
}

static void max_bwd_2x2(const float *x, const float *p, const float *d, float *dx, const pool_geom *g) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int oh = 0; oh < g->OH; oh++) {
        const float *r0 = x + (size_t)2 * oh * g->W, *r1 = r0 + g->W;
        float *q0 = dx + (size_t)2 * oh * g->W, *q1 = q0 + g->W;
        for (int ow = 0; ow < g->OW; ow += 16) {
            int cnt = g->OW - ow < 16 ? g->OW - ow : 16;
            __m512 e0, o0, e1, o1;
            even_odd(r0 + 2 * ow, cnt, &e0, &o0);
            even_odd(r1 + 2 * ow, cnt, &e1, &o1);
            __m512 m = _mm512_maskz_loadu_ps(lanes(cnt), p + (size_t)oh * g->OW + ow);
            __m512 dv = _mm512_maskz_loadu_ps(lanes(cnt), d + (size_t)oh * g->OW + ow);
            __mmask16 h0 = _mm512_cmp_ps_mask(e0, m, _CMP_EQ_OQ), taken = h0;
            __mmask16 h1 = _mm512_cmp_ps_mask(o0, m, _CMP_EQ_OQ) & ~taken;
            taken |= h1;
            __mmask16 h2 = _mm512_cmp_ps_mask(e1, m, _CMP_EQ_OQ) & ~taken;
            taken |= h2;
            __mmask16 h3 = _mm512_cmp_ps_mask(o1, m, _CMP_EQ_OQ) & ~taken;
            store_interleaved(q0 + 2 * ow, cnt, _mm512_mul_ps(dv, _mm512_maskz_mov_ps(h0, one)),
                              _mm512_mul_ps(dv, _mm512_maskz_mov_ps(h1, one)));
            store_interleaved(q1 + 2 * ow, cnt, _mm512_mul_ps(dv, _mm512_maskz_mov_ps(h2, one)),
                              _mm512_mul_ps(dv, _mm512_maskz_mov_ps(h3, one)));
        }
        if (g->W > 2 * g->OW) q0[g->W - 1] = q1[g->W - 1] = 0.0f; /* the odd last column: in no window */
    }
    if (g->H > 2 * g->OH) memset(dx + (size_t)2 * g->OH * g->W, 0, sizeof(float) * g->W);
}

static void relu_fwd_vec(const float *x, float *y, unsigned char *m, i64 n) {
    const __m512 zero = _mm512_setzero_ps();
    const __m512i one = _mm512_set1_epi32(1);
    i64 i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __mmask16 pos = _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ), nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        _mm512_storeu_ps(y + i, _mm512_maskz_mov_ps(pos | nan, v));
        if (m) _mm_storeu_si128((__m128i *)(m + i), _mm512_cvtepi32_epi8(_mm512_maskz_mov_epi32(pos, one)));
    }
    relu_fwd_run(x + i, y + i, m ? m + i : NULL, n - i);
}

static void relu_bwd_vec(const float *d, const unsigned char *m, float *dx, i64 n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    i64 i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(m + i)));
        __mmask16 set = _mm512_test_epi32_mask(b, b);
        _mm512_storeu_ps(dx + i, _mm512_mul_ps(_mm512_loadu_ps(d + i), _mm512_maskz_mov_ps(set, one)));
    }
    relu_bwd_run(d + i, m + i, dx + i, n - i);
}

#pragma GCC pop_options
#endif

/* ---- entry points: images n0..n1, planes at n*sn + c*sc floats (s: {sn, sc} per array) ---- */

static pool_geom make_pool_geom(const int *dims) {
    pool_geom g = {dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], dims[7], dims[8], dims[9], dims[10]};
    return g;
}

static int is_2x2(const pool_geom *g) {
    return g->KH == 2 && g->KW == 2 && g->SH == 2 && g->SW == 2 && !g->PH && !g->PW;
}

/* dims: C, H, W, KH, KW, SH, SW, PH, PW, OH, OW; s: x's then out's {sn, sc} */
void xpnet_ck_max_forward(const float *x, float *out, int n0, int n1, const int *dims, const i64 *s) {
    pool_geom g = make_pool_geom(dims);
    for (int n = n0; n < n1; n++)
        for (int c = 0; c < g.C; c++) {
            const float *xp = x + n * s[0] + c * s[1];
            float *o = out + n * s[2] + c * s[3];
#ifdef XPNET_CK_X86
            if (is_2x2(&g) && vector_on()) {
                max_fwd_2x2(xp, o, &g);
                continue;
            }
#endif
            max_fwd_plane(xp, o, &g);
        }
}

/* s: {sn, sc} of x, pooled, dout, dx. Returns 0, or -1 if the scratch could not be allocated. */
int xpnet_ck_max_backward(const float *x, const float *pooled, const float *dout, float *dx, int n0, int n1,
                          const int *dims, const i64 *s) {
    pool_geom g = make_pool_geom(dims);
    int *hit = malloc(sizeof(int) * ((size_t)g.OH * g.OW + 1));
    if (!hit) return -1;
    for (int n = n0; n < n1; n++)
        for (int c = 0; c < g.C; c++) {
            const float *xp = x + n * s[0] + c * s[1], *p = pooled + n * s[2] + c * s[3], *d = dout + n * s[4] + c * s[5];
            float *q = dx + n * s[6] + c * s[7];
#ifdef XPNET_CK_X86
            if (is_2x2(&g) && vector_on()) {
                max_bwd_2x2(xp, p, d, q, &g);
                continue;
            }
#endif
            max_bwd_plane(xp, p, d, q, hit, &g);
        }
    free(hit);
    return 0;
}

/* y = maximum(x, 0) and (unless m is NULL) m = x > 0 over runs runs of len elements, run r at
 * start + r*stride in all three arrays */
void xpnet_ck_relu_forward(const float *x, float *y, unsigned char *m, i64 start, i64 runs, i64 len, i64 stride) {
    for (i64 r = 0; r < runs; r++) {
        i64 at = start + r * stride;
#ifdef XPNET_CK_X86
        if (vector_on()) {
            relu_fwd_vec(x + at, y + at, m ? m + at : NULL, len);
            continue;
        }
#endif
        relu_fwd_run(x + at, y + at, m ? m + at : NULL, len);
    }
}

/* dx = dout * m, laid out as xpnet_ck_relu_forward's arrays */
void xpnet_ck_relu_backward(const float *d, const unsigned char *m, float *dx, i64 start, i64 runs, i64 len,
                            i64 stride) {
    for (i64 r = 0; r < runs; r++) {
        i64 at = start + r * stride;
#ifdef XPNET_CK_X86
        if (vector_on()) {
            relu_bwd_vec(d + at, m + at, dx + at, len);
            continue;
        }
#endif
        relu_bwd_run(d + at, m + at, dx + at, len);
    }
}

/* ---- space-to-depth, the copies of a strided convolution run as a stride-1 one (backends/strided_conv.py) ----
 * dims: C, H, W, SH, SW, PH, PW, HI, WI; x (N, C, H, W) and xs (N, C*SH*SW, HI, WI), C-contiguous, with
 * xs[n][(c*SH + py)*SW + px][i][j] = x[n][c][SH*i + py - PH][SW*j + px - PW], the zero-padded input's pixel.
 * Scalar loops: NumPy's four strided slice copies spent their time per row of 7-14 floats, not per float. */

static int first_inside(int p, int pad, int s) { /* the least i >= 0 with s*i + p - pad >= 0 */
    return pad - p <= 0 ? 0 : (pad - p + s - 1) / s;
}

static int end_inside(int p, int pad, int s, int size, int n) { /* one past the last i < n with s*i + p - pad < size */
    int e = size - 1 + pad - p;
    e = e < 0 ? 0 : e / s + 1;
    return e < n ? e : n;
}

/* ranges[2p], ranges[2p + 1]: the first and one past the last i of phase p inside the input, for p < s */
static void phase_ranges(int *ranges, int s, int pad, int size, int n) {
    for (int p = 0; p < s; p++) {
        ranges[2 * p] = first_inside(p, pad, s);
        ranges[2 * p + 1] = end_inside(p, pad, s, size, n);
    }
}

/* xs = the space-to-depth of images n0..n1 of x; xs's pixels that are padding are not written (the caller's
 * buffer keeps them 0). The phases' ranges are worked out once: per plane, their divisions cost more than
 * a 7x7 plane's copy. */
void xpnet_ck_space_to_depth(const float *x, float *xs, int n0, int n1, const int *d) {
    const int C = d[0], H = d[1], W = d[2], SH = d[3], SW = d[4], PH = d[5], PW = d[6], HI = d[7], WI = d[8];
    int rows[2 * SH], cols[2 * SW];
    phase_ranges(rows, SH, PH, H, HI);
    phase_ranges(cols, SW, PW, W, WI);
    for (int n = n0; n < n1; n++)
        for (int c = 0; c < C; c++) {
            const float *xc = x + ((size_t)n * C + c) * H * W;
            float *sc = xs + ((size_t)n * C + c) * SH * SW * HI * WI;
            for (int py = 0; py < SH; py++)
                for (int px = 0; px < SW; px++) {
                    const int i0 = rows[2 * py], i1 = rows[2 * py + 1], j0 = cols[2 * px], j1 = cols[2 * px + 1];
                    float *s = sc + (size_t)(py * SW + px) * HI * WI;
                    for (int i = i0; i < i1; i++) {
                        const float *row = xc + (size_t)(SH * i + py - PH) * W;
                        for (int j = j0; j < j1; j++) s[(size_t)i * WI + j] = row[SW * j + px - PW];
                    }
                }
        }
}

/* images n0..n1 of x = the inverse of xpnet_ck_space_to_depth on xs (its padding dropped); x's pixels that
 * no pixel of xs comes from (past SH*HI - PH or SW*WI - PW) are 0 */
void xpnet_ck_depth_to_space(const float *xs, float *x, int n0, int n1, const int *d) {
    const int C = d[0], H = d[1], W = d[2], SH = d[3], SW = d[4], PH = d[5], PW = d[6], HI = d[7], WI = d[8];
    const int wend = SW * WI - PW < W ? SW * WI - PW : W; /* columns from w = wend on are read by no output */
    int rows[2 * SH], cols[2 * SW];
    phase_ranges(rows, SH, PH, H, HI);
    phase_ranges(cols, SW, PW, W, WI);
    for (int n = n0; n < n1; n++)
        for (int c = 0; c < C; c++) {
            const float *sc = xs + ((size_t)n * C + c) * SH * SW * HI * WI;
            float *xc = x + ((size_t)n * C + c) * H * W;
            for (int h = 0; h < H; h++) { /* the pixels no xs pixel maps to */
                float *row = xc + (size_t)h * W;
                if (h + PH >= SH * HI || wend <= 0)
                    memset(row, 0, sizeof(float) * W);
                else if (wend < W)
                    memset(row + wend, 0, sizeof(float) * (W - wend));
            }
            for (int py = 0; py < SH; py++)
                for (int px = 0; px < SW; px++) {
                    const int i0 = rows[2 * py], i1 = rows[2 * py + 1], j0 = cols[2 * px], j1 = cols[2 * px + 1];
                    const float *s = sc + (size_t)(py * SW + px) * HI * WI;
                    for (int i = i0; i < i1; i++) {
                        float *row = xc + (size_t)(SH * i + py - PH) * W;
                        for (int j = j0; j < j1; j++) row[SW * j + px - PW] = s[(size_t)i * WI + j];
                    }
                }
        }
}
