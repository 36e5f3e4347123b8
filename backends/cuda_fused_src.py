"""CUDA C of the kernels that end and begin a fused layer chain (a GEMM's epilogue, its gradient's prologue).

A convolution or an affine layer followed by ReLU and/or dropout (``xpnet.layers.fusion``) runs as one
GEMM and one :data:`BIAS_ACT` kernel forward; backward, one :data:`ACT_GRAD` kernel masks the incoming
gradient (ReLU from the chain's output, dropout by regenerating the mask from the counter-based stream)
and reduces it to the bias gradient, then the GEMMs. Reductions in one launch (the bias gradient, the
mean loss) finish in the last thread to arrive: each thread writes its partial sum, fences, and counts
itself in; the one that completes the count sums the partials in a fixed order (so runs are
deterministic) and resets the count for the next launch. The counters are the backend's and shared by
kernels on one stream, which run one after the other. Built by :mod:`xpnet.backends.cuda_kernels`.
"""

# element k of the counter-based dropout stream: kept when its uniform number is >= ratio (SplitMix64's
# finaliser of (key, k)); the dropout kernel and the fused ones draw the same numbers
KEEP = """
__device__ __forceinline__ bool xpnet_keep(unsigned long long key, unsigned long long k, double ratio) {
    unsigned long long z = key ^ (k * 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0) >= ratio;  // 53 bits: uniform in [0, 1)
}
"""

# a partial sum another thread wrote, read past the L1 cache (float16, CuPy's class defined after this
# preamble, only ever holds float32 partials' results: a plain load)
LOAD = """
__device__ __forceinline__ float xpnet_ldcg(const float* p) { return __ldcg(p); }
__device__ __forceinline__ double xpnet_ldcg(const double* p) { return __ldcg(p); }
template <class T> __device__ __forceinline__ T xpnet_ldcg(const T* p) { return *p; }

// thread (s, f) of a reduction over S slices of F columns writes its partial sum, then counts itself in;
// true in the thread that completes column f, with the S partials summed in order in *total (count reset)
template <class W> __device__ __forceinline__ bool xpnet_last_of(W* part, int* count, long long s, long long S,
                                                                 int F, int f, W partial, W* total) {
    part[s * F + f] = partial;
    __threadfence();
    if (atomicAdd(&count[f], 1) != (int)(S - 1)) return false;
    __threadfence();
    W sum = W(0);
    for (long long k = 0; k < S; ++k) sum += xpnet_ldcg(&part[k * F + f]);
    count[f] = 0;
    *total = sum;
    return true;
}
"""

# in place on a GEMM's (rows, F) output: + bias, then ReLU, then inverted dropout (element i of the output;
# offset: the device word where RESERVE put this draw's first number, so the arguments are the same every step)
BIAS_ACT = (
    "raw T b, int32 F, int32 relu, uint64 key, raw uint64 offset, float64 ratio, T scale",
    "T y",
    """
    T v = y + b[i % F];
    if (relu) v = v > T(0) ? v : T(0);
    if (ratio > 0.0) v = xpnet_keep(key, offset[0] + (unsigned long long)i, ratio) ? T(v * scale) : T(0);
    y = v;
    """,
    "xpnet_bias_act",
    True,
    KEEP,
)

# thread (s, f): rows [s * rows, (s + 1) * rows) of channel f. dout is read logically as (N, F, P) (a
# convolution's NCHW gradient, P = OH * OW; P = 1 for an affine layer), y and d as (N * P, F). d = dout
# through the chain's dropout (scale where kept) and ReLU (where y > 0); db[f] = the sum of d over rows.
ACT_GRAD = (
    "raw T dout, raw T y, int32 F, int64 P, int64 M, int64 rows, int32 relu, uint64 key, raw uint64 offset, "
    "float64 ratio, T scale",
    "raw T d, raw T db, raw W part, raw int32 count",
    """
    const int f = i % F;
    const long long s = i / F, S = (M + rows - 1) / rows;
    const long long r1 = min((s + 1) * rows, M);
    W acc = W(0);
    for (long long r = s * rows; r < r1; ++r) {
        const long long o = r * F + f;
        T v = dout[((r / P) * F + f) * P + r % P];
        if (ratio > 0.0) v = xpnet_keep(key, offset[0] + (unsigned long long)o, ratio) ? T(v * scale) : T(0);
        if (relu && !(y[o] > T(0))) v = T(0);
        d[o] = v;
        acc += (W)v;
    }
    W total;
    if (xpnet_last_of(&part[0], &count[0], s, S, F, f, acc, &total)) db[f] = (T)total;
    """,
    "xpnet_act_grad",
    True,
    KEEP + LOAD,
)


_POOL = "int32 F, int32 OH, int32 OW, int32 PH, int32 PW, int32 KH, int32 KW, int32 SH, int32 SW, int32 QH, int32 QW"

# conv + ReLU + max pool forward, one thread per pooled output (N, F, PH, PW): the window of the GEMM's
# (N * OH * OW, F) output through bias and ReLU, then the first maximum in (kh, kw) order, as the
# separate kernels compute it (QH, QW: the pool's padding; taps outside the image are skipped)
BIAS_RELU_POOL = (
    "raw T acc, raw T b, " + _POOL,
    "T out, int32 arg",
    """
    const int pw = i % PW, ph = (i / PW) % PH;
    const long long nf = i / ((long long)PH * PW);
    const int f = nf % F;
    const long long n = nf / F;
    int best = -1;
    T m = T(0);
    for (int kh = 0; kh < KH; ++kh) {
        const int h = ph * SH - QH + kh;
        if (h < 0 || h >= OH) continue;
        for (int kw = 0; kw < KW; ++kw) {
            const int w = pw * SW - QW + kw;
            if (w < 0 || w >= OW) continue;
            T v = acc[((n * OH + h) * OW + w) * F + f] + b[f];
            v = v > T(0) ? v : T(0);
            if (best < 0 || v > m) { m = v; best = h * OW + w; }
        }
    }
    out = m;
    arg = best;
    """,
    "xpnet_bias_relu_pool",
)

# its backward, thread (s, f) over rows of channel f as ACT_GRAD: each conv output element (n, h, w)
# gathers the pooled gradients of the windows whose maximum it is (in (kh, kw) order), masked where
# the forward's acc + b was not > 0; d (N * OH * OW, F) and db[f] as ACT_GRAD
POOL_ACT_GRAD = (
    "raw T dpool, raw int32 arg, raw T acc, raw T b, " + _POOL + ", int64 M, int64 rows",
    "raw T d, raw T db, raw W part, raw int32 count",
    """
    const long long s = i / F, S = (M + rows - 1) / rows;
    const int f = i % F;
    const long long r1 = min((s + 1) * rows, M);
    W total = W(0);
    for (long long r = s * rows; r < r1; ++r) {
        const int w = r % OW, h = (r / OW) % OH;
        const long long base = ((r / ((long long)OH * OW)) * F + f) * (long long)PH * PW;
        const int here = h * OW + w;
        T g = T(0);
        for (int kh = 0; kh < KH; ++kh) {
            const int hp = h + QH - kh;
            if (hp < 0 || hp % SH != 0 || hp / SH >= PH) continue;
            for (int kw = 0; kw < KW; ++kw) {
                const int wp = w + QW - kw;
                if (wp < 0 || wp % SW != 0 || wp / SW >= PW) continue;
                const long long o = base + (hp / SH) * (long long)PW + wp / SW;
                if (arg[o] == here) g = g + dpool[o];
            }
        }
        const long long o = r * F + f;
        const T v = acc[o] + b[f];
        if (!(v > T(0))) g = T(0);
        d[o] = g;
        total += (W)g;
    }
    W sum;
    if (xpnet_last_of(&part[0], &count[0], s, S, F, f, total, &sum)) db[f] = (T)sum;
    """,
    "xpnet_pool_act_grad",
    True,
    LOAD,
)


def kernels():
    """``{attribute: (CuPy class name, its constructor's arguments)}`` for the fused-chain kernels."""
    return {"bias_act": ("ElementwiseKernel", BIAS_ACT), "act_grad": ("ElementwiseKernel", ACT_GRAD),
            "bias_relu_pool": ("ElementwiseKernel", BIAS_RELU_POOL),
            "pool_act_grad": ("ElementwiseKernel", POOL_ACT_GRAD)}
