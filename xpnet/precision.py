"""Floating-point formats xpnet computes in, and the float32-internal rule for half precision.

Storage and arithmetic follow the model's dtype (``model.astype("float16")`` computes in float16 on
both backends). Where float16's range (max 65,504) or its 11-bit significand would break a result,
layers compute internally in :data:`ACCUMULATE` (float32) and cast the result back:

- softmax and cross-entropy (exp of logits; the loss itself is returned in float32),
- BatchNorm's batch statistics and normalisation, LRN's sum of squares (squares overflow at |x| > 256),
- reductions over the batch (bias gradients, BatchNorm's parameter gradients).

GEMMs: NumPy's float16 ``matmul`` has no BLAS path; measured with numpy 2.4 it accumulates in float32
(a dot product of 4096 ones gives 4096, not float16's stalled 2048; the error of a K=4096 product
equals one final rounding, 4.7e-4 relative). CuPy's float16 ``matmul`` calls cuBLAS with float32
accumulation (tensor cores on Volta and later).

bfloat16 is not supported, for xpnet's own reasons rather than the libraries': NumPy has no bfloat16 of
its own; the ``ml_dtypes`` extension adds one, but (measured with ml_dtypes 0.7, NumPy 2.4) its matmul
returns float32, a plain sum of 4096 ones stalls at 256, and ``np.load`` reads a saved bfloat16 array back
as raw bytes (dtype V2), so models, checkpoints and the float32-internal rule above would all need work.
CuPy 14 has minimal bfloat16 through the same ``ml_dtypes`` (its upgrade guide: most functionality, some
gaps), which xpnet does not depend on, and xpnet's kernels have not been built or tested for it.
:func:`resolve` says so rather than failing somewhere deeper.
"""

import numpy as np

from xpnet.errors import DTypeError

SUPPORTED = ("float16", "float32", "float64")
ACCUMULATE = np.dtype(np.float32)
_NO_BFLOAT16 = {
    "numpy": ("NumPy has no bfloat16 dtype of its own, and with the ml_dtypes extension (which xpnet does not "
              "use) its matmul returns float32 and saved .npz files read bfloat16 back as raw bytes"),
    "cuda": ("CuPy 14's bfloat16 is minimal and comes through ml_dtypes, which xpnet does not use; xpnet's "
             "kernels and files are not built or tested for it"),
}


def resolve(dtype, backend_name="numpy", where="astype"):
    """The NumPy dtype for ``dtype`` (a name or dtype) if ``backend_name`` can compute in it.

    Raises:
        DTypeError: not a floating dtype, bfloat16 (xpnet supports it on no backend), or another unsupported one.
    """
    name = str(getattr(dtype, "__name__", dtype)).lower()
    if name in ("bfloat16", "bf16"):
        reason = _NO_BFLOAT16.get(backend_name, "this backend has no bfloat16 dtype")
        raise DTypeError(f"{where}: bfloat16 is not supported on backend '{backend_name}': {reason}; "
                         f"supported: {', '.join(SUPPORTED)}")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise DTypeError(f"{where}: unknown dtype {dtype!r}; supported: {', '.join(SUPPORTED)}") from None
    if dt.name not in SUPPORTED:
        raise DTypeError(f"{where}: expected a floating dtype ({', '.join(SUPPORTED)}) on backend "
                         f"'{backend_name}', got {dt}")
    return dt


def compute_dtype(dtype):
    """The dtype internal sums and exponentials use for arrays of ``dtype``: float32 for float16."""
    dtype = np.dtype(dtype)
    return ACCUMULATE if dtype.itemsize < ACCUMULATE.itemsize else dtype


def widen(x):
    """``x`` in :func:`compute_dtype` (no copy when it already is)."""
    return x.astype(compute_dtype(x.dtype), copy=False)


def epsilon(dtype):
    """Machine epsilon (the spacing of 1.0): 2^-10 for float16, 2^-23 float32, 2^-52 float64."""
    return float(np.finfo(np.dtype(dtype)).eps)


def sum_axis0(a):
    """``a.sum(axis=0)`` accumulated in :func:`compute_dtype`, returned in ``a``'s dtype."""
    return a.sum(axis=0, dtype=compute_dtype(a.dtype)).astype(a.dtype, copy=False)
