/* Batch normalisation of (N, C, H, W) float32 arrays on the CPU, per channel: the NumPy backend's BatchNorm.
 *
 * Forward: the channel's mean and (biased) variance in one pass, then y = (x - mean) * (gamma * invstd) + beta
 * in a second (invstd = 1 / sqrt(var + eps)). Backward: dbeta = sum(dout) and dgamma = sum(dout * xn) in one
 * pass (xn = (x - mean) * invstd, recomputed from x rather than kept), then dx in a second:
 *
 *     batch statistics:  dx = gamma * invstd * (dout - dbeta / M - xn * dgamma / M)
 *     frozen ones:       dx = gamma * invstd * dout                                    (M = N*H*W)
 *
 * Sums run in double. The variance is that of x - x0, x0 the channel's first element (exact in double): the
 * shift keeps E[d^2] - E[d]^2 from cancelling when |mean| is large against the spread (the textbook shifted
 * data algorithm), so one pass gives it to double's precision; the element-wise steps run in float32, as
 * the NumPy code's do. Accumulators are 8 independent lanes (a plain sum would be one dependency chain),
 * written so that the compiler vectorises them; their order is fixed, so results do not depend on how the
 * channels are split over threads.
 *
 * Arrays are addressed as planes, as in cpu_kernels.c: channel c of image n at n*sn + c*sc floats, each
 * (H, W) plane of len floats contiguous. The loops are plain C, compiled twice: as the build says and, on
 * x86, for AVX-512F (the same code inlined into a target("avx512f") function), the second run where
 * cpu_kernels.c's switch says vector code runs (xpnet_ck_vector_on). The AVX-512 build may fuse a multiply
 * and an add, so the two agree to rounding, not bit for bit. Python calls them through ctypes
 * (backends/cpu_kernels.py).
 */
#include <math.h>

typedef long long i64;

#define LANES 8
#define BODY static inline __attribute__((always_inline))

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define XPNET_BN_X86 1
int xpnet_ck_vector_on(void); /* cpu_kernels.c */
#endif

/* sums of x - x0 and (x - x0)^2 over a channel's N planes, in double */
BODY void shifted_sums(const float *x, i64 sn, int N, i64 len, double x0, double *s1, double *s2) {
    double a[LANES] = {0}, b[LANES] = {0};
    for (int n = 0; n < N; n++) {
        const float *p = x + n * sn;
        i64 i = 0;
        for (; i + LANES <= len; i += LANES)
            for (int j = 0; j < LANES; j++) {
                double d = (double)p[i + j] - x0;
                a[j] += d;
                b[j] += d * d;
            }
        for (int j = 0; i < len; i++, j++) {
            double d = (double)p[i] - x0;
            a[j] += d;
            b[j] += d * d;
        }
    }
    *s1 = *s2 = 0.0;
    for (int j = 0; j < LANES; j++) {
        *s1 += a[j];
        *s2 += b[j];
    }
}

/* sums of dout and dout * xn over a channel's N planes, in double */
BODY void grad_sums(const float *x, i64 sx, const float *d, i64 sd, int N, i64 len, float mean, float invstd,
                      double *s1, double *s2) {
    double a[LANES] = {0}, b[LANES] = {0};
    for (int n = 0; n < N; n++) {
        const float *p = x + n * sx, *q = d + n * sd;
        i64 i = 0;
        for (; i + LANES <= len; i += LANES)
            for (int j = 0; j < LANES; j++) {
                float xn = (p[i + j] - mean) * invstd;
                a[j] += q[i + j];
                b[j] += (double)q[i + j] * xn;
            }
        for (int j = 0; i < len; i++, j++) {
            float xn = (p[i] - mean) * invstd;
            a[j] += q[i];
            b[j] += (double)q[i] * xn;
        }
    }
    *s1 = *s2 = 0.0;
    for (int j = 0; j < LANES; j++) {
        *s1 += a[j];
        *s2 += b[j];
    }
}

#define FORWARD_ARGS                                                                                             \
    const float *x, float *y, const float *gamma, const float *beta, double *mean, double *var, double *invstd, \
        double eps, int train, int N, i64 len, int c0, int c1, const i64 *s
#define BACKWARD_ARGS                                                                                          \
    const float *x, const float *dout, float *dx, const float *gamma, const double *mean, const double *invstd, \
        float *dgamma, float *dbeta, int train, int N, i64 len, int c0, int c1, const i64 *s

BODY void forward_channels(FORWARD_ARGS) {
    const double M = (double)N * (double)len;
    for (int c = c0; c < c1; c++) {
        const float *xc = x + c * s[1];
        if (train) {
            double x0 = M > 0 ? xc[0] : 0.0, s1, s2;
            shifted_sums(xc, s[0], N, len, x0, &s1, &s2);
            double m1 = M > 0 ? s1 / M : 0.0, v = M > 0 ? s2 / M - m1 * m1 : 0.0;
            mean[c] = x0 + m1;
            var[c] = v > 0.0 ? v : 0.0;
        }
        invstd[c] = 1.0 / sqrt(var[c] + eps);
        const float mu = (float)mean[c], k = (float)(gamma[c] * invstd[c]), b = beta[c];
        for (int n = 0; n < N; n++) {
            const float *p = xc + n * s[0];
            float *o = y + n * s[2] + c * s[3];
            for (i64 i = 0; i < len; i++) o[i] = (p[i] - mu) * k + b;
        }
    }
}

BODY void backward_channels(BACKWARD_ARGS) {
    const double M = (double)N * (double)len;
    for (int c = c0; c < c1; c++) {
        const float *xc = x + c * s[1], *dc = dout + c * s[3];
        const float mu = (float)mean[c], is = (float)invstd[c];
        double sd, sdx;
        grad_sums(xc, s[0], dc, s[2], N, len, mu, is, &sd, &sdx);
        dbeta[c] = (float)sd;
        dgamma[c] = (float)sdx;
        const float k = (float)(gamma[c] * invstd[c]);
        const float a = M > 0 ? (float)(sd / M) : 0.0f, b = M > 0 ? (float)(sdx / M) : 0.0f;
        for (int n = 0; n < N; n++) {
            const float *p = xc + n * s[0], *q = dc + n * s[2];
            float *o = dx + n * s[4] + c * s[5];
            if (!train) { /* y is affine in x: no xn term (an infinite x gives no NaN) */
                for (i64 i = 0; i < len; i++) o[i] = k * q[i];
                continue;
            }
            for (i64 i = 0; i < len; i++) o[i] = k * (q[i] - a - (p[i] - mu) * is * b);
        }
    }
}

static void forward_plain(FORWARD_ARGS) {
    forward_channels(x, y, gamma, beta, mean, var, invstd, eps, train, N, len, c0, c1, s);
}

static void backward_plain(BACKWARD_ARGS) {
    backward_channels(x, dout, dx, gamma, mean, invstd, dgamma, dbeta, train, N, len, c0, c1, s);
}

#ifdef XPNET_BN_X86
__attribute__((target("avx512f"))) static void forward_avx512(FORWARD_ARGS) {
    forward_channels(x, y, gamma, beta, mean, var, invstd, eps, train, N, len, c0, c1, s);
}

__attribute__((target("avx512f"))) static void backward_avx512(BACKWARD_ARGS) {
    backward_channels(x, dout, dx, gamma, mean, invstd, dgamma, dbeta, train, N, len, c0, c1, s);
}

static int vector(void) { return xpnet_ck_vector_on(); }
#else
#define forward_avx512 forward_plain
#define backward_avx512 backward_plain
static int vector(void) { return 0; }
#endif

/* Channels c0..c1 of x (N images of C planes of len floats): y = (x - mean) * gamma * invstd + beta.
 * train: mean[c] and var[c] are the batch's, written here; else they are read (the running statistics).
 * invstd[c] is written either way. s: {sn, sc} of x, then of y. */
void xpnet_bn_forward(FORWARD_ARGS) {
    (vector() ? forward_avx512 : forward_plain)(x, y, gamma, beta, mean, var, invstd, eps, train, N, len, c0, c1, s);
}

/* dx, dgamma[c] and dbeta[c] of xpnet_bn_forward for channels c0..c1 given dout; mean and invstd as the
 * forward left them; train: the forward used the batch's statistics. s: {sn, sc} of x, dout, dx. */
void xpnet_bn_backward(BACKWARD_ARGS) {
    (vector() ? backward_avx512 : backward_plain)(x, dout, dx, gamma, mean, invstd, dgamma, dbeta, train, N, len, c0,
                                                  c1, s);
}
