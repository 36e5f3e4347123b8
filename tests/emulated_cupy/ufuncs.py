"""CuPy's ufuncs over NumPy's: one launch per call, an allocation unless ``out=`` is given."""

import numpy as np

from . import counters
from .array import ndarray, unwrap, wrap

NAMES = (
    "add subtract multiply divide true_divide floor_divide remainder mod fmod power float_power negative "
    "positive absolute abs fabs sign maximum minimum fmax fmin exp exp2 expm1 log log2 log10 log1p sqrt cbrt "
    "square reciprocal sin cos tan arcsin arccos arctan arctan2 sinh cosh tanh arcsinh arccosh arctanh "
    "floor ceil trunc rint equal not_equal greater greater_equal less less_equal logical_and logical_or "
    "logical_xor logical_not isfinite isinf isnan signbit copysign nextafter ldexp hypot deg2rad rad2deg "
    "bitwise_and bitwise_or bitwise_xor invert left_shift right_shift matmul"
).split()


class ufunc:
    """One of CuPy's ufuncs: device arrays and scalars in, a device array out."""

    def __init__(self, np_ufunc):
        self._u = np_ufunc
        self.__name__ = np_ufunc.__name__
        self.nin, self.nout = np_ufunc.nin, np_ufunc.nout

    def __repr__(self):
        return f"<ufunc '{self.__name__}'>"

    def __call__(self, *args, out=None, **kwargs):
        inputs = [unwrap(a) for a in args]
        if out is not None:
            outs = out if isinstance(out, tuple) else (out,)
            if not all(isinstance(o, ndarray) for o in outs):
                raise TypeError(f"Output arguments must be cupy arrays, got {[type(o) for o in outs]}")
            kwargs["out"] = tuple(o._a for o in outs) if isinstance(out, tuple) else out._a
        if "where" in kwargs:
            kwargs["where"] = unwrap(kwargs["where"])
        result = self._u(*inputs, **kwargs)
        if out is not None:
            counters.launch(self.__name__, inputs, kwargs)
            return out
        return wrap(result, launched=self.__name__)


for _name in NAMES:
    globals()[_name] = ufunc(getattr(np, _name))
