"""CUDA kernels (CuPy ElementwiseKernel) for im2col and col2im, and the registry of every kernel.

Every kernel xpnet runs is in :data:`KERNELS` (CI compiles each with NVRTC for sm_80 and sm_90);
:func:`build` makes them with a given CuPy module. col2im gathers: one thread per image element sums
its windows in (kh, kw) order, as the NumPy backend's strided adds do, so runs are deterministic and
agree with NumPy bit for bit on normal numbers. CuPy compiles kernels with ``-ftz=true``: float32
subnormal values (below 1.2e-38) are flushed to zero on the GPU, so results on such inputs differ from
NumPy's (``tests/test_backends.py`` shows both).
"""

import types

from xpnet.backends import cuda_fused_src, cuda_layer_src, cuda_optim_src

_INDEX = """
    const long long KW_ = KW, KH_ = KH, C_ = C, OW_ = OW, OH_ = OH;
"""

IM2COL = (
    "raw T img, int32 C, int32 H, int32 W, int32 OH, int32 OW, int32 KH, int32 KW, "
    "int32 SH, int32 SW, int32 PH, int32 PW, T pad_value",
    "T col",
    _INDEX
    + """
    long long t = i;
    const int kw = t % KW_; t /= KW_;
    const int kh = t % KH_; t /= KH_;
    const int c = t % C_; t /= C_;
    const int ow = t % OW_; t /= OW_;
    const int oh = t % OH_;
    const long long n = t / OH_;
    const int h = oh * SH - PH + kh;
    const int w = ow * SW - PW + kw;
    col = (h >= 0 && h < H && w >= 0 && w < W) ? img[((n * C_ + c) * H + h) * (long long)W + w] : pad_value;
    """,
    "xpnet_im2col",
)

COL2IM = (
    "raw T col, int32 C, int32 H, int32 W, int32 OH, int32 OW, int32 KH, int32 KW, "
    "int32 SH, int32 SW, int32 PH, int32 PW",
    "T img",
    _INDEX
    + """
    long long t = i;
    const int w = t % W; t /= W;
    const int h = t % H; t /= H;
    const int c = t % C_;
    const long long n = t / C_;
    T val = 0;
    for (int kh = 0; kh < KH; ++kh) {
        const int hp = h + PH - kh;
        if (hp < 0 || hp % SH != 0 || hp / SH >= OH) continue;
        const int oh = hp / SH;
        for (int kw = 0; kw < KW; ++kw) {
            const int wp = w + PW - kw;
            if (wp < 0 || wp % SW != 0 || wp / SW >= OW) continue;
            const int ow = wp / SW;
            val += col[((((n * OH_ + oh) * OW_ + ow) * C_ + c) * KH_ + kh) * KW_ + kw];
        }
    }
    img = val;
    """,
    "xpnet_col2im",
)

# One thread spins on a chain of dependent multiply-adds the compiler cannot shorten; n sets the length
# (backends/cuda_timing.py: keeps the stream busy while a profile queues the work it times).
SPIN = ("int64 n", "float32 y", "float a = y; for (long long k = 0; k < n; ++k) a = a * 0.999999f + 1e-6f; y = a;",
        "xpnet_spin")

# The smallest kernel CuPy can generate, compiled and run when the backend starts (check_compiler): its
# source includes the same CuPy and CUDA headers as every other kernel.
PROBE = ("T x", "T y", "y = x + x", "xpnet_compile_probe")

# attribute name -> (CuPy class, its constructor's arguments)
KERNELS = {
    "im2col_kernel": ("ElementwiseKernel", IM2COL),
    "col2im_kernel": ("ElementwiseKernel", COL2IM),
    **cuda_layer_src.kernels(),
    **cuda_fused_src.kernels(),
    **cuda_optim_src.kernels(),
    "spin_kernel": ("ElementwiseKernel", SPIN),
    "probe_kernel": ("ElementwiseKernel", PROBE),
}


def build(cupy):
    """xpnet's kernels as objects of the given CuPy module (``cupy.ElementwiseKernel`` ...), by name."""
    return types.SimpleNamespace(**{name: getattr(cupy, kind)(*args) for name, (kind, args) in KERNELS.items()})
