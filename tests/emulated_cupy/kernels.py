"""CuPy's user kernels, run on the host: the kernel's own CUDA C, compiled by g++, called through ctypes.

``ElementwiseKernel`` assembles what CuPy assembles around a kernel body (typedefs for the type
placeholders, a parameter per argument, a loop over ``i``) and compiles it with ``cuda_compat.h``,
which maps the CUDA names a kernel may use (``__device__``, ``half``/``float16``, ``atomicAdd``,
``threadIdx`` ...) onto C++. ``RawKernel`` compiles the source as written and loops over the grid and
block, one thread at a time (so ``__syncthreads`` cannot be emulated and is refused).
Float32 kernels run with denormals flushed to zero, as CuPy compiles with ``-ftz=true``.
Libraries are cached by a hash of their source in ``$XPNET_EMU_CACHE`` (default: a per-user temp dir).
"""

import ctypes
import hashlib
import os
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from . import counters
from .array import ndarray

_HEADER = Path(__file__).with_name("cuda_compat.h")
_FLAGS = ("-O2", "-std=c++17", "-shared", "-fPIC", "-fno-strict-aliasing", "-w")
_CTYPES = {
    "float16": "float16", "float32": "float", "float64": "double", "bool": "bool",
    "int8": "signed char", "int16": "short", "int32": "int", "int64": "long long",
    "uint8": "unsigned char", "uint16": "unsigned short", "uint32": "unsigned int",
    "uint64": "unsigned long long",
}
_loaded = {}


def _cache_dir():
    path = Path(os.environ.get("XPNET_EMU_CACHE") or Path(tempfile.gettempdir()) / f"xpnet-emu-{os.getuid()}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def compile_library(source):
    """A ctypes library built from C++ ``source`` (cached by the hash of source, header and flags)."""
    key = hashlib.sha256((source + _HEADER.read_text() + " ".join(_FLAGS)).encode()).hexdigest()[:24]
    if key in _loaded:
        return _loaded[key]
    lib = _cache_dir() / f"{key}.so"
    if not lib.exists():
        src = lib.with_suffix(f".{os.getpid()}.cpp")
        src.write_text(source)
        tmp = lib.with_suffix(f".{os.getpid()}.tmp")
        done = subprocess.run(["g++", *_FLAGS, "-include", str(_HEADER), str(src), "-o", str(tmp)],
                              capture_output=True, text=True)
        src.unlink()
        if done.returncode:
            raise CompileException(done.stderr, source)
        os.replace(tmp, lib)  # atomic: a parallel run sees the whole library or none
    _loaded[key] = ctypes.CDLL(str(lib))
    return _loaded[key]


def host_compiler_problem():
    """None when g++ can build kernels here (a tiny one, cached like the rest), else why not."""
    try:
        compile_library('extern "C" void _xpnet_probe(float16* x) { *x = (float16)rsqrtf(4.0f); }')
    except (OSError, CompileException) as e:
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else e}"
    return None


class CompileException(Exception):
    """The kernel did not compile (g++'s message and the source, as CuPy's CompileException gives)."""

    def __init__(self, msg, source):
        super().__init__(f"{msg}\n--- source ---\n{source}")


def _parse(params):
    """``"raw T x, int32 n"`` -> ``[(raw, type, name), ...]``."""
    out = []
    for p in filter(None, (s.strip() for s in params.split(","))):
        words = p.split()
        raw = words[0] == "raw"
        words = words[1:] if raw else words
        if len(words) != 2:
            raise ValueError(f"bad kernel parameter {p!r}")
        out.append((raw, words[0], words[1]))
    return out


def _dtype_name(t):
    return np.dtype(t).name if t != "bool" else "bool"


class ElementwiseKernel:
    """``cupy.ElementwiseKernel(in_params, out_params, operation, name)`` run on the host."""

    def __init__(self, in_params, out_params, operation, name="kernel", reduce_dims=True, preamble="",
                 no_return=False, return_tuple=False, loop_prep="", after_loop="", **kwargs):
        self.in_params, self.out_params = _parse(in_params), _parse(out_params)
        self.operation, self.name, self.preamble = operation, name, preamble
        self._loop_prep, self._after_loop = loop_prep, after_loop
        self.nin, self.nout = len(self.in_params), len(self.out_params)
        self.nargs = self.nin + self.nout

    def _bind(self, args):
        """Type placeholders -> dtypes, from the array arguments (then from scalars)."""
        types = {}
        params = self.in_params + self.out_params
        for (_, t, _), a in zip(params, args):
            if t not in _CTYPES and t not in types and isinstance(a, ndarray):
                types[t] = a.dtype
        for (_, t, _), a in zip(params, args):
            if t not in _CTYPES and t not in types and a is not None:
                types[t] = np.asarray(a).dtype
        return types

    def __call__(self, *args, size=None, block_size=None, stream=None):
        if len(args) not in (self.nin, self.nargs):
            raise TypeError(f"Wrong number of arguments for {self.name!r}: {self.nin} or {self.nargs} "
                            f"expected, {len(args)} given")
        for a in args:
            if isinstance(a, np.ndarray):
                raise TypeError(f"Unsupported type {type(a)}")
        args = list(args) + [None] * (self.nargs - len(args))
        types = self._bind(args)
        dtype = {name: np.dtype(_dtype_name(t)) if t in _CTYPES else types[t]
                 for _, t, name in self.in_params + self.out_params}
        shape = self._shape(args, size)
        for k, (raw, _, name) in enumerate(self.out_params):
            if args[self.nin + k] is None:
                if raw:
                    raise ValueError(f"{self.name}: raw output {name!r} must be given")
                from .functions import empty

                args[self.nin + k] = empty(shape, dtype=dtype[name])
        n = int(np.prod(shape)) if size is None else int(size)
        self._run(args, dtype, types, shape, n, size)
        outs = args[self.nin:]
        return outs[0] if self.nout == 1 else tuple(outs)

    def _shape(self, args, size):
        arrays = [a for (raw, _, _), a in zip(self.in_params + self.out_params, args)
                  if not raw and isinstance(a, ndarray)]
        outs = [a for (raw, _, _), a in zip(self.out_params, args[self.nin:]) if not raw and a is not None]
        if outs:
            return outs[0].shape
        if arrays:
            return np.broadcast_shapes(*(a.shape for a in arrays))
        if size is None:
            raise ValueError(f"{self.name}: loop size is undecided (give size= or a non-raw array)")
        return (int(size),)

    def _source(self, dtypes, types):
        """The C++ function for these argument dtypes: CuPy's loop around the kernel's own body."""
        lines = [f"typedef {_CTYPES[d.name]} {t};" for t, d in sorted(types.items())]
        body = []
        for k, (raw, t, name) in enumerate(self.in_params + self.out_params):
            c = t if t not in _CTYPES else _CTYPES[t]
            out = k >= self.nin
            if raw:
                lines.append(f"RawArray<{c}> {name}(({c}*)_args[{k}], _sizes[{k}]);")
            elif dtypes[k] is None:
                lines.append(f"const {c} {name} = *(const {c}*)_args[{k}];")
            else:
                lines.append(f"{c}* _p_{name} = ({c}*)_args[{k}];")
                body.append(f"{c}& {name} = _p_{name}[i];" if out else f"const {c} {name} = _p_{name}[i];")
        ftz = any(d.name == "float32" for d in types.values()) or any(
            t == "float32" for _, t, _ in self.in_params + self.out_params)
        return "\n".join([
            self.preamble,
            f'extern "C" void {self.name}(void** _args, const long long* _sizes, long long _n) {{',
            "FtzScope _ftz;" if ftz else "",
            *lines,
            "const LoopIndex _ind{_n};",
            self._loop_prep,
            "for (ptrdiff_t i = 0; i < _n; ++i) {",
            *body,
            self.operation + ";",
            "}",
            self._after_loop,
            "}",
        ])

    def _run(self, args, dtype, types, shape, n, size=None):
        params = self.in_params + self.out_params
        buffers, keep, writeback, kinds = [], [], [], []
        for k, ((raw, _, name), a) in enumerate(zip(params, args)):
            if isinstance(a, ndarray):
                if a.dtype != dtype[name]:
                    raise TypeError(f"{self.name}: argument {name!r} is {a.dtype}, the kernel binds "
                                    f"{dtype[name]}")
                buf = a._a if raw else np.broadcast_to(a._a, shape)
                if not buf.flags.c_contiguous:
                    buf = np.ascontiguousarray(buf)
                    if k >= self.nin:
                        writeback.append((a._a, buf))
                kinds.append(dtype[name])
            else:
                buf = np.array(a, dtype=dtype[name])
                kinds.append(None)
            keep.append(buf)
            buffers.append(buf.ctypes.data)
        lib = compile_library(self._source(kinds, types))
        ptrs = (ctypes.c_void_p * len(buffers))(*buffers)
        sizes = (ctypes.c_longlong * len(keep))(*(b.size for b in keep))
        counters.launch(self.name, args, {"size": size})
        getattr(lib, self.name)(ptrs, sizes, ctypes.c_longlong(n))
        for dst, src in writeback:
            dst[...] = src


_SIGNATURE = r'extern\s+"C"\s+__global__\s+void\s+{name}\s*\(([^)]*)\)'


class RawKernel:
    """``cupy.RawKernel(code, name)``: ``kernel(grid, block, args)`` runs every thread, one at a time."""

    def __init__(self, code, name, options=(), backend="nvrtc", translate_cucomplex=False, **kwargs):
        if "__syncthreads" in code:
            raise NotImplementedError("the emulated device runs threads one at a time: no __syncthreads")
        self.code, self.name, self.options = code, name, options
        match = re.search(_SIGNATURE.format(name=re.escape(name)), code)
        if match is None:
            raise ValueError(f'RawKernel: no extern "C" __global__ void {name}(...) in the source')
        self._params = [p.strip() for p in match.group(1).split(",") if p.strip()]

    def _launcher(self):
        casts = ", ".join(f"*({p.rsplit(None, 1)[0].replace('__restrict__', '')}*)_a[{k}]"
                          for k, p in enumerate(self._params))
        return self.code + f"""
extern "C" void _xpnet_launch_{self.name}(const unsigned* _g, const unsigned* _b, void** _a) {{
    gridDim = dim3(_g[0], _g[1], _g[2]); blockDim = dim3(_b[0], _b[1], _b[2]);
    for (unsigned bz = 0; bz < _g[2]; ++bz) for (unsigned by = 0; by < _g[1]; ++by)
    for (unsigned bx = 0; bx < _g[0]; ++bx) for (unsigned tz = 0; tz < _b[2]; ++tz)
    for (unsigned ty = 0; ty < _b[1]; ++ty) for (unsigned tx = 0; tx < _b[0]; ++tx) {{
        blockIdx = dim3(bx, by, bz); threadIdx = dim3(tx, ty, tz);
        {self.name}({casts});
    }}
}}
"""

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None, enable_cooperative_groups=False):
        grid, block = (tuple(g) + (1,) * (3 - len(g)) for g in (_dim(grid), _dim(block)))
        if len(args) != len(self._params):
            raise TypeError(f"{self.name}: {len(self._params)} arguments expected, {len(args)} given")
        keep = []
        for a in args:
            if isinstance(a, np.ndarray) and a.size != 1:
                raise TypeError(f"You are trying to pass a numpy.ndarray of shape {a.shape} as a kernel "
                                "parameter; pass a cupy.ndarray instead.")
            if isinstance(a, ndarray):
                if not a.flags.c_contiguous:
                    raise ValueError(f"{self.name}: the emulated device takes C-contiguous arrays only")
                keep.append(np.array([a._a.ctypes.data], dtype=np.uintp))
            else:
                keep.append(np.array(a).reshape(()))
        lib = compile_library(self._launcher())
        ptrs = (ctypes.c_void_p * len(keep))(*(k.ctypes.data for k in keep))
        dims = [(ctypes.c_uint * 3)(*d) for d in (grid, block)]
        counters.launch(self.name, args, {"grid": grid, "block": block})
        getattr(lib, f"_xpnet_launch_{self.name}")(dims[0], dims[1], ptrs)


def _dim(d):
    return (d,) if isinstance(d, int) else tuple(d)
