"""CUDA C of the fused layer kernels: max pooling, ReLU, dropout, softmax +
cross-entropy, the batch gather.

Each runs what the NumPy backend does in several array operations as one elementwise kernel, in the
same order of floating-point operations where that decides the result (ties in max pooling go to the
first maximum in (kh, kw) order; a pooled input's gradient sums its windows in (kh, kw) order).
Built by :mod:`xpnet.backends.cuda_kernels` (``KERNELS``).
"""

from xpnet.backends.cuda_fused_src import KEEP, LOAD

_WINDOW = "int32 H, int32 W, int32 OH, int32 OW, int32 KH, int32 KW, int32 SH, int32 SW, int32 PH, int32 PW"

# one thread per output: the window's maximum and where it is (h * W + w in its image plane)
MAXPOOL_FORWARD = (
    "raw T x, " + _WINDOW,
    "T y, int32 arg",
    """
    const long long plane = i / ((long long)OH * OW);
    const int ow = i % OW, oh = (i / OW) % OH;
    const long long img = plane * H * (long long)W;  // x is indexed logically: any memory order
    int best = -1;
    T m = T(0);
    for (int kh = 0; kh < KH; ++kh) {
        const int h = oh * SH - PH + kh;
        if (h < 0 || h >= H) continue;
        for (int kw = 0; kw < KW; ++kw) {
            const int w = ow * SW - PW + kw;
            if (w < 0 || w >= W) continue;
            const T v = x[img + h * W + w];
            // the first maximum wins; a NaN is the maximum, as numpy.maximum propagates it
            if (best < 0 || v > m || (v != v && m == m)) { m = v; best = h * W + w; }
        }
    }
    y = m;
    arg = best;
    """,
    "xpnet_maxpool_forward",
)

# one thread per input element: the gradients of the windows whose maximum it is, in (kh, kw) order
MAXPOOL_BACKWARD = (
    "raw T dout, raw int32 arg, " + _WINDOW,
    "T dx",
    """
    const int w = i % W, h = (i / W) % H;
    const long long plane = i / ((long long)H * W);
    const long long base = plane * OH * (long long)OW;
    const int here = h * W + w;
    T acc = T(0);
    for (int kh = 0; kh < KH; ++kh) {
        const int hp = h + PH - kh;
        if (hp < 0 || hp % SH != 0 || hp / SH >= OH) continue;
        for (int kw = 0; kw < KW; ++kw) {
            const int wp = w + PW - kw;
            if (wp < 0 || wp % SW != 0 || wp / SW >= OW) continue;
            const long long o = base + (hp / SH) * (long long)OW + wp / SW;
            if (arg[o] == here) acc = acc + dout[o];
        }
    }
    dx = acc;
    """,
    "xpnet_maxpool_backward",
)

# one thread per row: log-softmax by a stable log-sum-exp in the compute type W, the probabilities, and
# the row's share of the mean loss (NaN for a label outside [0, K): checking would need a host sync); the
# last row to finish sums the shares in row order into loss (see cuda_fused_src: count is reset to 0)
SOFTMAX_XENT_FORWARD = (
    "raw T y, I t, int32 K, W inv_n",
    "raw W p, raw W row, raw W loss, raw int32 count",
    """
    const long long r0 = i * (long long)K;
    W m = (W)y[r0];
    for (int k = 1; k < K; ++k) { const W v = (W)y[r0 + k]; if (v > m) m = v; }
    W s = W(0);
    for (int k = 0; k < K; ++k) s += exp((W)y[r0 + k] - m);
    const W lse = log(s);
    for (int k = 0; k < K; ++k) p[r0 + k] = exp(((W)y[r0 + k] - m) - lse);
    const long long c = (long long)(double)t;
    const W share = (c >= 0 && c < K) ? -(((W)y[r0 + c] - m) - lse) * inv_n : W(0) / W(0);
    W total;
    if (xpnet_last_of(&row[0], &count[0], i, _ind.size(), 1, 0, share, &total)) loss[0] = total;
    """,
    "xpnet_softmax_xent_forward",
    True,
    LOAD,
)

# dL/dy = (p - onehot(t)) * scale, scale = dout / N, cast to the scores' dtype T
SOFTMAX_XENT_BACKWARD = (
    "W p, raw I t, int32 K, W scale",
    "T dy",
    """
    W v = p;
    if ((long long)(double)t[i / K] == i % K) v = v - W(1);  // through double: any label type converts
    dy = (T)(v * scale);
    """,
    "xpnet_softmax_xent_backward",
)

# ReLU forward in one pass: the output and the mask (written in the memory order of the arrays given)
RELU_FORWARD = ("T x", "T y, bool mask", "mask = x > T(0); y = mask ? x : T(0);", "xpnet_relu_forward")

# inverted dropout in one pass from a counter-based generator: element i's number is a hash of
# (key, offset[0] + i), offset[0] the device word RESERVE wrote (the fused chains draw the same numbers)
DROPOUT_FORWARD = (
    "T x, uint64 key, raw uint64 offset, float64 ratio, T scale",
    "T y, T mask",
    """
    mask = xpnet_keep(key, offset[0] + (unsigned long long)i, ratio) ? scale : T(0);
    y = x * mask;
    """,
    "xpnet_dropout_forward",
    True,
    KEEP,
)

# n consecutive positions of a device counter, one thread (size=1): where they start goes to *slot for
# the kernels that use them (a dropout's numbers of a counter-based stream, a mini-batch's rows), the
# counter moves on by n. The host passes the same arguments every step (a step can be captured as a
# CUDA graph) and keeps its own count, so it never reads the counter back.
RESERVE = (
    "uint64 n",
    "raw uint64 next, raw uint64 slot",
    "slot[0] = next[0]; next[0] += n;",
    "xpnet_reserve",
)

# a mini-batch in one pass: thread i copies element i of the gathered inputs and, for the first trow
# elements of its row, that row's labels (row >= trow: the caller checks); the batch's rows are
# idx[start[0]:], start a device word (so the arguments are the same batch after batch)
BATCH_GATHER = (
    "raw X x, raw I idx, raw uint64 start, raw L t, int64 row, int64 trow",
    "X xb, raw L tb",
    """
    const long long r = i / row, c = i % row;
    const long long src = (long long)(double)idx[start[0] + r];
    xb = x[src * row + c];
    if (c < trow) tb[r * trow + c] = t[src * trow + c];
    """,
    "xpnet_batch_gather",
)


def kernels():
    """``{attribute: (CuPy class name, its constructor's arguments)}`` for the layer kernels."""
    return {
        "maxpool_forward": ("ElementwiseKernel", MAXPOOL_FORWARD),
        "maxpool_backward": ("ElementwiseKernel", MAXPOOL_BACKWARD),
        "relu_forward": ("ElementwiseKernel", RELU_FORWARD),
        "batch_gather": ("ElementwiseKernel", BATCH_GATHER),
        "dropout_forward": ("ElementwiseKernel", DROPOUT_FORWARD),
        "reserve": ("ElementwiseKernel", RESERVE),
        "softmax_xent_forward": ("ElementwiseKernel", SOFTMAX_XENT_FORWARD),
        "softmax_xent_backward": ("ElementwiseKernel", SOFTMAX_XENT_BACKWARD),
    }
