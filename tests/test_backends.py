"""Backend selection, the CUDA-unavailable errors, and the im2col/col2im/conv kernels of every backend."""

import os
import subprocess
import sys

import numpy as np
import pytest
from tolerance import assert_close

from xpnet import backends
from xpnet.errors import BackendError

# (KH, KW, stride, pad) covering square, rectangular, strided, padded and uneven-coverage windows.
GEOMETRIES = [
    (3, 3, (1, 1), (1, 1)),
    (2, 2, (2, 2), (0, 0)),
    (3, 2, (2, 1), (1, 0)),
    (1, 1, (1, 1), (0, 0)),
    (5, 3, (3, 2), (2, 1)),
    (3, 3, (2, 2), (0, 0)),
]


def _run_python(code, backend_env):
    """Run ``code`` in a fresh interpreter with ``XPNET_BACKEND`` set (it is read at import)."""
    env = {**os.environ, "XPNET_BACKEND": backend_env}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def naive_im2col(x, KH, KW, stride, pad, pad_value=0.0):
    """Reference im2col by explicit loops: row (n, oh, ow), column (c, kh, kw)."""
    N, C, H, W = x.shape
    (SH, SW), (PH, PW) = stride, pad
    OH, OW = (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1
    col = np.empty((N * OH * OW, C * KH * KW), dtype=x.dtype)
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                row = (n * OH + oh) * OW + ow
                for c in range(C):
                    for kh in range(KH):
                        for kw in range(KW):
                            h, w = oh * SH - PH + kh, ow * SW - PW + kw
                            inside = 0 <= h < H and 0 <= w < W
                            col[row, (c * KH + kh) * KW + kw] = x[n, c, h, w] if inside else pad_value
    return col


def naive_col2im(col, x_shape, KH, KW, stride, pad):
    """Reference col2im: each image element sums its windows' entries in (kh, kw) order."""
    N, C, H, W = x_shape
    (SH, SW), (PH, PW) = stride, pad
    OH, OW = (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1
    img = np.zeros(x_shape, dtype=col.dtype)
    for n, c, h, w in np.ndindex(*x_shape):
        for kh in range(KH):
            for kw in range(KW):
                oh, rh = divmod(h + PH - kh, SH)
                ow, rw = divmod(w + PW - kw, SW)
                if rh == 0 and rw == 0 and 0 <= oh < OH and 0 <= ow < OW:
                    img[n, c, h, w] += col[(n * OH + oh) * OW + ow, (c * KH + kh) * KW + kw]
    return img


def _col_rows(x_shape, KH, KW, stride, pad):
    N, C, H, W = x_shape
    OH = (H + 2 * pad[0] - KH) // stride[0] + 1
    OW = (W + 2 * pad[1] - KW) // stride[1] + 1
    return N * OH * OW, C * KH * KW


# -- selection ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["numpy", "cpu", "NUMPY", "auto"])
def test_env_var_selects_numpy(value):
    proc = _run_python("import xpnet.backends as b; print(b.current().name, b.available())", value)
    assert proc.returncode == 0, proc.stderr
    name, available = proc.stdout.strip().split(" ", 1)
    assert name == ("cuda" if value == "auto" and "cuda" in available else "numpy")  # auto: CUDA where usable


def test_env_var_unknown_name_raises_value_error_listing_valid_names():
    # Whether the import itself or the first use raises, the process fails with a ValueError naming
    # the bad value and every valid name.
    proc = _run_python("import xpnet.backends as b; b.current()", "tpu")
    assert proc.returncode != 0
    assert "ValueError" in proc.stderr
    assert "tpu" in proc.stderr
    for name in backends.NAMES:
        assert name in proc.stderr


@pytest.mark.parametrize("call", [backends.get, backends.use, backends.resolve_name],
                         ids=["get", "use", "resolve_name"])
def test_unknown_name_raises_value_error(call):
    before = backends.current()
    with pytest.raises(ValueError, match="unknown backend 'tpu'") as exc:
        call("tpu")
    for name in backends.NAMES:
        assert name in str(exc.value)
    assert backends.current() is before  # a failed use() leaves the current backend alone


def test_use_context_manager_restores_previous():
    before = backends.current()
    with backends.use("cpu") as be:
        assert be is backends.get("numpy")
        assert backends.current() is be
    assert backends.current() is before


def test_use_nested_restores_each_level():
    outer_before = backends.current()
    with backends.use("numpy") as outer:
        with backends.use("NumPy") as inner:
            assert inner is outer
        assert backends.current() is outer
    assert backends.current() is outer_before


def test_available_is_numpy_only_without_cuda():
    if "cuda" in backends.available():
        pytest.skip("this machine has a usable CUDA backend")
    assert backends.available() == ["numpy"]


def test_of_numpy_array_and_scalar():
    assert backends.of(np.zeros(3)) is backends.get("numpy")
    assert backends.of(np.float32(1.0)).name == "numpy"
    assert backends.get(backends.get("numpy")) is backends.get("numpy")


def test_numpy_backend_round_trip(rng):
    be = backends.get("numpy")
    a = rng.standard_normal((2, 3))
    assert be.owns(be.asarray(a))
    np.testing.assert_array_equal(be.asnumpy(be.asarray(a, dtype=np.float32)), a.astype(np.float32))
    assert be.asarray(a, dtype=np.float32).dtype == np.float32
    with be.timer() as t:
        be.synchronize()
    assert t.elapsed_ms >= 0


def test_cuda_without_cupy_says_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` now raises ImportError
    monkeypatch.setattr(backends, "_instances", {})
    with pytest.raises(BackendError) as exc:
        backends.get("cuda")
    msg = str(exc.value)
    assert "not installed" in msg
    assert 'pip install "xpnet[cuda12]"' in msg
    assert backends.available() == ["numpy"]
    assert backends.get("auto").name == "numpy"


def test_cuda_without_device_says_no_usable_device(fake_cupy):
    fake_cupy(RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected"))
    with pytest.raises(BackendError) as exc:
        backends.get("gpu")
    msg = str(exc.value)
    assert "no usable CUDA device" in msg
    assert "13.0.0" in msg and "cudaErrorNoDevice" in msg


def test_cuda_with_zero_devices_says_no_usable_device(fake_cupy):
    fake_cupy(0)
    with pytest.raises(BackendError, match="no usable CUDA device"):
        backends.get("cupy")


_NO_NVRTC = RuntimeError("CuPy failed to load libnvrtc.so.13: OSError: libnvrtc.so.13: cannot open shared object "
                         "file: No such file or directory")
_NO_HEADERS = RuntimeError('/tmp/tmpq1x/9f2e.cu(12): catastrophic error: cannot open source file "cuda_fp16.h"\n'
                           "1 catastrophic error detected in the compilation")


@pytest.mark.parametrize("error, missing", [(_NO_NVRTC, "NVRTC (libnvrtc, CUDA 13) is not loadable"),
                                            (_NO_HEADERS, "the CUDA headers are missing")])
def test_cuda_start_compiles_a_kernel_and_names_what_is_missing(fake_cupy, capsys, error, missing):
    from xpnet.cli.main import main

    fake = fake_cupy(1)
    fake.__version__ = "14.2.0"
    fake.cuda.runtime.runtimeGetVersion = lambda: 13000
    fake.float32, fake.zeros = np.float32, np.zeros

    def kernel(*definition):
        def launch(*args):
            raise error

        return launch

    fake.ElementwiseKernel = kernel
    with pytest.raises(BackendError) as exc:
        backends.get("cuda")
    msg = str(exc.value)
    assert "\n" not in msg and missing in msg and 'pip install "cupy-cuda13x[ctk]"' in msg, msg
    assert main(["info"]) == 0  # the CPU report says why CUDA is unusable
    assert f"cuda: not usable: backend 'cuda': CuPy 14.2.0 cannot compile kernels here: {missing}" in \
        capsys.readouterr().out


# -- im2col / col2im ---------------------------------------------------------------------------------


@pytest.mark.parametrize("KH, KW, stride, pad", GEOMETRIES)
def test_naive_col2im_is_adjoint_of_naive_im2col(KH, KW, stride, pad, rng):
    """The references agree with each other: <im2col(x), c> = <x, col2im(c)>."""
    x_shape = (2, 3, 7, 6)
    x = rng.standard_normal(x_shape)
    c = rng.standard_normal(_col_rows(x_shape, KH, KW, stride, pad))
    col = naive_im2col(x, KH, KW, stride, pad)
    lhs = float(np.sum(col * c))
    rhs = float(np.sum(x * naive_col2im(c, x_shape, KH, KW, stride, pad)))
    assert_close(lhs, rhs, terms=col.size + KH * KW, scale=np.sqrt(col.size))  # float64 sums of unit products


@pytest.mark.parametrize("KH, KW, stride, pad", GEOMETRIES)
def test_col2im_is_adjoint_of_im2col(backend, KH, KW, stride, pad, rng):
    x_shape = (2, 3, 7, 6)
    x = rng.standard_normal(x_shape)
    c = rng.standard_normal(_col_rows(x_shape, KH, KW, stride, pad))
    col = backend.asnumpy(backend.im2col(backend.asarray(x), KH, KW, stride, pad))
    img = backend.asnumpy(backend.col2im(backend.asarray(c), x_shape, KH, KW, stride, pad))
    assert img.shape == x_shape
    lhs, rhs = float(np.sum(col * c)), float(np.sum(x * img))
    assert_close(lhs, rhs, terms=col.size + KH * KW, scale=np.sqrt(col.size))


@pytest.mark.parametrize("KH, KW, stride, pad", GEOMETRIES)
def test_im2col_col2im_equal_references(backend, KH, KW, stride, pad, rng):
    x_shape = (2, 3, 7, 6)
    x = rng.standard_normal(x_shape).astype(np.float32)
    c = rng.standard_normal(_col_rows(x_shape, KH, KW, stride, pad)).astype(np.float32)
    for pad_value in (0.0, -np.inf, 3.5):  # im2col copies: exactly equal
        col = backend.asnumpy(backend.im2col(backend.asarray(x), KH, KW, stride, pad, pad_value))
        assert np.array_equal(col, naive_im2col(x, KH, KW, stride, pad, pad_value))
    img = backend.asnumpy(backend.col2im(backend.asarray(c), x_shape, KH, KW, stride, pad))
    assert np.array_equal(img, naive_col2im(c, x_shape, KH, KW, stride, pad))  # the same sums in the same order
    # a channel-major (transposed) col, as Conv2DTranspose passes it, gives the same image
    cT = backend.asarray(np.ascontiguousarray(c.T)).T
    np.testing.assert_array_equal(backend.asnumpy(backend.col2im(cT, x_shape, KH, KW, stride, pad)), img)


def test_col2im_on_float32_subnormals_flushes_to_zero_on_the_gpu_only(cuda):
    """CuPy compiles kernels with -ftz=true (backends/cuda_kernels.py says so): a float32 subnormal sum
    is 0 on the GPU, while NumPy keeps it; normal numbers agree exactly (test above)."""
    c = np.full((4, 9), 1e-40, dtype=np.float32)  # the columns of a 1x1x4x4 image, 3x3 windows
    host = naive_col2im(c, (1, 1, 4, 4), 3, 3, (1, 1), (0, 0))
    assert host.max() == 4 * np.float32(1e-40)  # the centre gets all four windows' values, exactly
    assert not cuda.asnumpy(cuda.col2im(cuda.asarray(c), (1, 1, 4, 4), 3, 3)).any()


# -- conv2d kernels ----------------------------------------------------------------------------------


def _conv_case(rng, KH, KW, C=3, FN=4, shape=(2, 3, 7, 6)):
    x = rng.standard_normal(shape).astype(np.float32)
    W = rng.standard_normal((FN, C, KH, KW)).astype(np.float32)
    b = rng.standard_normal(FN).astype(np.float32)
    return x, W, b


def reference_conv(x, W, b, stride, pad, dout):
    """``(out, dx, dW, db)`` of a convolution by the loop references, in float64 on the host."""
    FN, _, KH, KW = W.shape
    N, _, H, Wd = x.shape
    OH, OW = (H + 2 * pad[0] - KH) // stride[0] + 1, (Wd + 2 * pad[1] - KW) // stride[1] + 1
    x, W, b, dout = (a.astype(np.float64) for a in (x, W, b, dout))
    col = naive_im2col(x, KH, KW, stride, pad)
    out = (col @ W.reshape(FN, -1).T + b).reshape(N, OH, OW, FN).transpose(0, 3, 1, 2)
    d = dout.transpose(0, 2, 3, 1).reshape(-1, FN)
    dx = naive_col2im(d @ W.reshape(FN, -1), x.shape, KH, KW, stride, pad)
    return out, dx, (d.T @ col).reshape(W.shape), d.sum(axis=0)


@pytest.mark.parametrize("KH, KW, stride, pad", GEOMETRIES)
def test_backend_conv2d_matches_reference(backend, KH, KW, stride, pad, rng):
    x, W, b = _conv_case(rng, KH, KW)
    out, cache = backend.conv2d_forward(*(backend.asarray(a) for a in (x, W, b)), stride, pad, {})
    dout = rng.standard_normal(out.shape).astype(np.float32)
    ref_out, *want = reference_conv(x, W, b, stride, pad, dout)
    assert out.shape == ref_out.shape and out.dtype == np.float32
    FN, C = W.shape[:2]
    assert_close(backend.asnumpy(out), ref_out, terms=C * KH * KW + 1, dtype=np.float32)
    got = backend.conv2d_backward(backend.asarray(dout), cache, backend.asarray(W), stride, pad, {})
    N, _, OH, OW = out.shape
    for name, g, w, terms in zip(("dx", "dW", "db"), got, want, (FN * KH * KW, N * OH * OW, N * OH * OW)):
        assert g.shape == w.shape and g.dtype == np.float32, name
        assert_close(backend.asnumpy(g), w, terms=terms, dtype=np.float32, err_msg=name)


def test_generic_conv2d_inference_keeps_no_columns_and_rebuilds_them(cuda, rng):
    backend = cuda  # the generic convolution is the CUDA backend's (it needs the backend's im2col/col2im)
    x, W, b = (backend.asarray(a) for a in _conv_case(rng, 3, 3))
    _, train_cache = backends.Backend.conv2d_forward(backend, x, W, b, (1, 1), (1, 1), keep=True)
    out, lean_cache = backends.Backend.conv2d_forward(backend, x, W, b, (1, 1), (1, 1), keep=False)
    kept = [a for a in lean_cache if hasattr(a, "size")]
    assert kept and max(a.size for a in kept) <= x.size  # the columns are 9x larger than x: not kept
    dout = backend.asarray(rng.standard_normal(out.shape).astype(np.float32))
    want = backends.Backend.conv2d_backward(backend, dout, train_cache, W, (1, 1), (1, 1))
    got = backends.Backend.conv2d_backward(backend, dout, lean_cache, W, (1, 1), (1, 1))
    for name, g, w in zip(("dx", "dW", "db"), got, want):
        assert np.array_equal(backend.asnumpy(g), backend.asnumpy(w)), name  # the same operations, rebuilt


def test_conv2d_workspace_reuse_gives_same_result(rng):
    be = backends.get("numpy")
    x, W, b = _conv_case(rng, 3, 3)
    ws = {}
    first = be.conv2d_forward(x, W, b, (1, 1), (1, 1), ws)[0].copy()
    be.conv2d_forward(2 * x, W, b, (1, 1), (1, 1), ws)
    again = be.conv2d_forward(x, W, b, (1, 1), (1, 1), ws)[0]
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("KH, KW, stride, pad", GEOMETRIES)
def test_conv2d_gpu_matches_cpu(cuda, KH, KW, stride, pad, rng):
    cpu = backends.get("numpy")
    x, W, b = _conv_case(rng, KH, KW)
    FN, C = W.shape[:2]
    out, cache = cpu.conv2d_forward(x, W, b, stride, pad, {})
    gout, gcache = cuda.conv2d_forward(cuda.asarray(x), cuda.asarray(W), cuda.asarray(b), stride, pad, {})
    assert_close(cuda.asnumpy(gout), out, terms=C * KH * KW + 1)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    want = cpu.conv2d_backward(dout, cache, W, stride, pad, {})
    got = cuda.conv2d_backward(cuda.asarray(dout), gcache, cuda.asarray(W), stride, pad, {})
    N, _, OH, OW = out.shape
    for name, g, w, terms in zip(("dx", "dW", "db"), got, want, (FN * KH * KW, N * OH * OW, N * OH * OW)):
        assert_close(cuda.asnumpy(g), w, terms=terms, err_msg=name)


# -- backends/ is the only door to CuPy -----------------------------------------------------------------
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cupy_uses(path):
    """``(line, text)`` of every CuPy name (import, attribute, variable) or module-name string in a file."""
    import io
    import tokenize

    with open(path, encoding="utf-8") as f:
        source = f.read()
    hits = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        name = tok.string.strip("'\"") if tok.type == tokenize.STRING else tok.string
        if tok.type in (tokenize.NAME, tokenize.STRING) and name.split(".")[0] in ("cupy", "cupyx"):
            hits.append((tok.start[0], tok.line.strip()))
    return hits


def test_no_cupy_outside_backends():
    found = []
    for top in ("xpnet", "benchmarks", "examples"):
        for folder, _, files in os.walk(os.path.join(_ROOT, top)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    found += [f"{os.path.relpath(path, _ROOT)}:{n}: {line}" for n, line in _cupy_uses(path)]
    assert not found, "CuPy used outside backends/:\n" + "\n".join(found)
    assert _cupy_uses(os.path.join(_ROOT, "backends", "cuda_collectives.py"))  # the check does see CuPy
