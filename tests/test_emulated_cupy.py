"""The emulated CUDA device is as strict as CuPy and counts what it claims to count."""

import importlib.util
import json
import subprocess
import sys

import emulated_cupy as cp
import numpy as np
import pytest
from emulated_cupy import counters, device
from emulated_cupy.kernels import CompileException, host_compiler_problem

pytestmark = pytest.mark.skipif(bool(host_compiler_problem()), reason="the emulated device needs g++ here")

# Objects whose public names the emulator offers, each with the real CuPy object it stands in for.
SURFACES = {
    "cupy": (cp, "cupy"),
    "cupy.ndarray": (cp.ndarray, "cupy.ndarray"),
    "cupy.cuda": (cp.cuda, "cupy.cuda"),
    "cupy.cuda.runtime": (cp.cuda.runtime, "cupy.cuda.runtime"),
    "cupy.cuda.memory": (cp.cuda.memory, "cupy.cuda.memory"),
    "cupy.cuda.Device": (cp.cuda.Device, "cupy.cuda.Device"),
    "cupy.cuda.Stream": (cp.cuda.Stream, "cupy.cuda.Stream"),
    "cupy.cuda.Event": (cp.cuda.Event, "cupy.cuda.Event"),
    "cupy.cuda.MemoryPool": (cp.cuda.MemoryPool, "cupy.cuda.MemoryPool"),
    "cupy.random": (cp.random, "cupy.random"),
    "cupy.random.Generator": (cp.random.Generator, "cupy.random.Generator"),
    "cupy.random.XORWOW": (cp.random.XORWOW, "cupy.random.XORWOW"),
    "cupy.ElementwiseKernel": (cp.ElementwiseKernel("T x", "T y", "y = x", "emu_copy"), "cupy.ElementwiseKernel"),
    "cupy.RawKernel": (cp.RawKernel, "cupy.RawKernel"),
}
_OWN = {"counters", "device", "kernels", "array", "functions", "ufuncs", "PUBLIC"}  # the emulator's own parts


def _public(obj, label):
    """The public names ``obj`` offers: a module's, a class's (with its bases'), an instance's and its class's."""
    if label == "cupy":
        return set(cp.PUBLIC)
    if type(obj).__name__ in ("module", "SimpleNamespace"):
        return {n for n in vars(obj) if not n.startswith("_")} - _OWN
    klass, own = (obj, set()) if isinstance(obj, type) else (type(obj), set(vars(obj)))
    return {n for n in own | {n for k in klass.__mro__[:-1] for n in vars(k)} if not n.startswith("_")}


def _missing_in_real_cupy(names):
    """``{path: [names the real object lacks]}``, asked of the installed CuPy in a fresh process."""
    script = ("import json, sys, operator, cupy\n"
              "names = json.loads(sys.stdin.read())\n"
              "get = lambda p: operator.attrgetter(p.partition('.')[2])(cupy) if '.' in p else cupy\n"
              "print(json.dumps({p: [n for n in ns if not hasattr(get(p), n)] for p, ns in names.items()}))")
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps(names), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.skipif(importlib.util.find_spec("cupy") is None, reason="real CuPy not installed (the cuda-build extra)")
def test_every_name_the_emulator_offers_exists_in_real_cupy():
    offered = {path: sorted(_public(obj, label)) for label, (obj, path) in SURFACES.items()}
    assert sum(map(len, offered.values())) > 300
    missing = _missing_in_real_cupy(offered)
    assert not {k: v for k, v in missing.items() if v}, "names CuPy 14 does not have"
    assert cp.__version__.split(".")[0] == "14"


# -- CuPy's rules for host and device arrays ---------------------------------------------------------------
@pytest.fixture
def a():
    return cp.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))


@pytest.mark.parametrize("mix", [
    lambda a: np.asarray(a),
    lambda a: np.where(a > 1, a, np.zeros((2, 3), np.float32)),
    lambda a: a + np.ones(3, np.float32),
    lambda a: np.ones(3, np.float32) * a,
    lambda a: cp.maximum(a, np.ones(3, np.float32)),
    lambda a: np.concatenate([a, np.ones((1, 3), np.float32)]),
    lambda a: cp.add(a, a, out=np.empty((2, 3), np.float32)),
], ids=["asarray", "where", "add", "rmul", "ufunc", "concatenate", "out"])
def test_mixing_host_and_device_arrays_raises_type_error(a, mix):
    with pytest.raises(TypeError):
        mix(a)


def test_scalars_and_numpy_functions_on_device_arrays_stay_on_the_device(a):
    for result in (a * 2, np.float32(2) * a, np.exp(a), np.sum(a), a[0, 1], np.where(a > 1, a, 0)):
        assert isinstance(result, cp.ndarray)


def test_array_module_and_lists_of_device_arrays_as_in_cupy(a):
    assert cp.get_array_module(np.ones(2)) is np and cp.get_array_module(np.ones(2), a) is cp
    with counters.counting() as c:
        stacked = cp.array([a, a])
    assert stacked.shape == (2, 2, 3) and (c.h2d, c.syncs) == (0, 0)


@pytest.mark.parametrize("leave", [
    lambda a: a.get(), lambda a: cp.asnumpy(a), lambda a: int(a[0, 1]), lambda a: float(a.sum()),
    lambda a: bool(a[0, 0] > 0), lambda a: a[1, 2].item(), lambda a: a.tolist(),
    lambda a: cp.cuda.get_current_stream().synchronize(), lambda a: cp.cuda.Device().synchronize(),
    lambda a: a[a > 2], lambda a: cp.nonzero(a),
], ids=["get", "asnumpy", "int", "float", "bool", "item", "tolist", "stream", "device", "mask", "nonzero"])
def test_each_way_back_to_the_host_is_one_sync(a, leave):
    with counters.counting() as c:
        leave(a)
    assert c.syncs == 1


def test_launches_and_allocations_are_counted_per_call(a):
    with counters.counting() as c:
        a.T.reshape(3, 2)[1:]  # views: nothing runs, nothing is allocated
    assert (c.launches, c.allocations) == (0, 0)
    with counters.counting() as c:
        b = a * 2 + 1
    assert (c.launches, c.allocations) == (2, 2)
    with counters.counting() as c:
        cp.multiply(b, b, out=b)
        b += 1
    assert (c.launches, c.allocations) == (2, 0)
    with counters.counting() as c:
        cp.empty((4,)), cp.zeros((4,)), cp.asarray(np.ones(4))
    assert (c.launches, c.allocations, c.h2d, c.syncs) == (1, 3, 1, 0)


# -- kernels: their own CUDA C, compiled for the host ------------------------------------------------------
def test_elementwise_kernel_runs_its_cuda_c(a):
    k = cp.ElementwiseKernel("T x, raw T y, float32 s", "T z", "z = x * s + y[(i + 1) % y.size()]", "emu_axpy")
    with counters.counting() as c:
        z = k(a, a, 2.0)
    expected = a.get() * 2 + np.roll(a.get().ravel(), -1).reshape(2, 3)
    np.testing.assert_array_equal(z.get(), expected)
    assert c.launches == 1


def test_a_kernel_that_does_not_compile_raises_with_the_compiler_message(a):
    k = cp.ElementwiseKernel("T x", "T z", "z = x * undefined_name", "emu_broken")
    with pytest.raises(CompileException, match="undefined_name"):
        k(a)


def test_float32_kernels_flush_subnormals_as_cupy_compiles_with_ftz():
    tiny = np.full(4, 1e-39, dtype=np.float32)  # subnormal in float32, normal in float64
    k = cp.ElementwiseKernel("T x", "T z", "z = x + x", "emu_double")
    assert not k(cp.asarray(tiny)).get().any()
    np.testing.assert_array_equal(k(cp.asarray(tiny.astype(np.float64))).get(), 2 * tiny.astype(np.float64))


def test_raw_kernel_runs_every_thread_of_the_grid():
    code = r'''extern "C" __global__ void emu_iota(float* out, int n) {
        int i = blockIdx.x * blockDim.x + threadIdx.x;
        if (i < n) out[i] = 2.0f * i;
    }'''
    out = cp.zeros((10,), dtype=np.float32)
    cp.RawKernel(code, "emu_iota")((3,), (4,), (out, np.int32(10)))
    np.testing.assert_array_equal(out.get(), 2.0 * np.arange(10))


# -- memory and random state -------------------------------------------------------------------------------
def test_the_pool_limit_is_cupys_out_of_memory_error():
    be = device.backend()
    pool = cp.get_default_memory_pool()
    pool.set_limit(size=pool.used_bytes() + 2**20)
    try:
        with pytest.raises(cp.cuda.memory.OutOfMemoryError) as exc:
            cp.empty((2**20,), dtype=np.float32)
    finally:
        pool.set_limit(size=0)
    assert be.is_out_of_memory(exc.value)


def test_cuda_rng_state_restores_the_same_draws():
    rng = device.backend().rng(3)
    rng.random((5,))
    state = json.loads(json.dumps(rng.get_state()))  # as a checkpoint stores it
    nxt = rng.random((7,)).get()
    again = device.backend().rng(99)
    again.set_state(state)
    np.testing.assert_array_equal(again.random((7,)).get(), nxt)
    with pytest.raises(ValueError, match="XORWOW"):
        again.set_state({"bit_generator": "PCG64", "state": {}})
