"""Every CUDA kernel xpnet defines compiles with NVRTC for sm_80 and sm_90, as CuPy would compile it.

Needs real CuPy and NVRTC, no GPU: ``pip install -e ".[cuda-build]"`` (CI installs it and sets
``XPNET_REQUIRE_CUDA_CHECKS=1``, which turns the skip into a failure). The source is CuPy's own: its
ElementwiseKernel code generator (``cupy._core._kernel``), its headers and compiler options.
"""

import os
import re
from pathlib import Path

import numpy as np
import pytest

from xpnet.backends import cuda_kernels

ARCHS = ("sm_80", "sm_90")
DTYPES = (np.float16, np.float32, np.float64)  # what a type placeholder (T) can be in xpnet
ROOT = Path(__file__).resolve().parent.parent
_CONSTRUCTORS = re.compile(r"\b(ElementwiseKernel|RawKernel|ReductionKernel|RawModule)\s*\(")


def _nvrtc():
    """Real CuPy's kernel generator and compiler, or a skip (a failure under XPNET_REQUIRE_CUDA_CHECKS=1)."""
    try:
        import cupy
        from cupy._core import _carray, _kernel, _scalar, core
        from cupy.cuda import compiler

        compiler._NVRTCProgram("", "probe.cu").compile(core.assemble_cupy_compiler_options(("-arch=sm_90",)))
    except Exception as e:  # not installed, no libnvrtc, no CUDA headers
        if os.environ.get("XPNET_REQUIRE_CUDA_CHECKS") == "1":
            raise
        pytest.skip(f"CuPy with NVRTC unavailable ({type(e).__name__}: {e}); pip install -e '.[cuda-build]'")
    return cupy, _kernel, _carray, _scalar, core, compiler


def _elementwise_source(cupy, K, _carray, _scalar, kernel, dtype):
    """CuPy's CUDA source for ``kernel`` with every type placeholder bound to ``dtype`` (C-contiguous
    arrays, 4-d raw inputs, 1-d loop), as ElementwiseKernel generates it before calling NVRTC."""
    def arginfo(p):
        if p.name == "_ind":
            return K._ArgInfo(2, _carray.Indexer, None, 1, True, True)
        if p.raw or not p.is_const:
            return K._ArgInfo(1, cupy.ndarray, p.dtype or dtype, 4 if p.raw else 1, True, True)
        return K._ArgInfo(3, _scalar.CScalar, p.dtype or dtype, 0, True, True)

    placeholders = sorted({p.ctype for p in kernel.params if p.ctype and p.dtype is None})
    type_map = K._TypeMap(tuple((t, np.dtype(dtype)) for t in placeholders))
    return K._get_elementwise_kernel_code(tuple(arginfo(p) for p in kernel.params), type_map, kernel.params,
                                          kernel.operation, kernel.name, kernel.preamble)


def _sources(nv):
    cupy, K, _carray, _scalar, core, _ = nv
    header = "".join(f"#include <{h}>\n" for h in core._cupy_header_list)
    for name, kernel in vars(cuda_kernels.build(cupy)).items():
        if isinstance(kernel, cupy.ElementwiseKernel):
            for dtype in DTYPES:
                yield f"{name}[{np.dtype(dtype).name}]", header + _elementwise_source(cupy, K, _carray, _scalar,
                                                                                       kernel, dtype)
        elif isinstance(kernel, cupy.RawKernel):
            yield name, header + kernel.code
        else:
            raise AssertionError(f"{name}: no NVRTC check for {type(kernel).__name__} yet; add one here")


@pytest.mark.parametrize("arch", ARCHS)
def test_every_kernel_compiles_with_nvrtc(arch):
    nv = _nvrtc()
    core, compiler = nv[4], nv[5]
    options = core.assemble_cupy_compiler_options((f"-arch={arch}", "-ftz=true"))
    compiled = []
    for label, source in _sources(nv):
        cubin, _ = compiler._NVRTCProgram(source, f"{label}.cu", method="cubin").compile(options)
        assert len(cubin) > 0, label
        compiled.append(label)
    assert len(compiled) >= len(cuda_kernels.KERNELS)


def test_kernels_are_defined_only_in_cuda_kernels():
    """A kernel made anywhere else would escape the NVRTC check above."""
    elsewhere = [str(p.relative_to(ROOT)) for d in ("backends", "xpnet") for p in sorted((ROOT / d).rglob("*.py"))
                 if p.name != "cuda_kernels.py" and _CONSTRUCTORS.search(p.read_text())]
    assert not elsewhere, "define CUDA kernels in backends/cuda_kernels.py (KERNELS)"
