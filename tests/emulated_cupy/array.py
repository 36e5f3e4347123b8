"""The emulated ``cupy.ndarray``: a NumPy array held "on the device", with CuPy's rules for leaving it.

Like CuPy, a device array never turns into a host array by itself: ``numpy.asarray(a)`` and any NumPy
function given one raise TypeError, mixing it with a NumPy array in an operation raises TypeError, and
the ways out (``.get()``, ``cupy.asnumpy``, ``int()``, ``float()``, ``bool()``, ``.item()``) count a
host sync. Python and NumPy scalars mix freely, as in CuPy.
"""

import numpy as np

from . import counters


def _reject_host(value):
    raise TypeError(f"Unsupported type {type(value)}")


def unwrap(value):
    """An argument of an emulated CuPy call, as NumPy sees it (TypeError for host arrays)."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, np.ndarray):
        _reject_host(value)
    if isinstance(value, (list, tuple)):
        return type(value)(unwrap(v) for v in value)
    return value


def wrap(result, inputs=(), launched="copy"):
    """Wrap NumPy results as device arrays, counting a launch of ``launched`` (unless None) and an
    allocation per new buffer. A result sharing memory with an input is a view: nothing is counted.
    """
    if isinstance(result, tuple):
        return tuple(wrap(r, inputs, launched) for r in result)
    if isinstance(result, np.generic):
        result = np.asarray(result)
    if not isinstance(result, np.ndarray):
        return result
    base = [a for a in inputs if isinstance(a, np.ndarray)]
    if any(np.may_share_memory(result, a) for a in base):
        return _view(result)
    if launched:
        counters.launch(launched)
    return allocated(result)


def allocated(a):
    """A new device array over the NumPy array ``a``: one allocation from the memory pool."""
    from .cuda import _POOL as POOL

    POOL._allocate(a)
    counters.allocation()
    return _view(a)


def _view(a):
    out = ndarray.__new__(ndarray)
    out._a = a
    return out


def _index(key):
    """An index for ``__getitem__``/``__setitem__``; host index arrays are copied over, as CuPy does."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, ndarray):
        return key._a
    if isinstance(key, np.ndarray):
        counters.h2d()
        return key
    return key


def _has_mask(key):
    """A boolean index: CuPy must count its True values on the host first (a sync)."""
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, np.ndarray) and k.dtype == bool for k in keys)


def _is_basic(key):
    keys = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, (int, np.integer, slice)) for k in keys)


class _Memory:
    """``a.data``: where the array's buffer lives (a host address here)."""

    def __init__(self, a):
        self.ptr = a.ctypes.data


class Device:
    """``a.device``: the one emulated device."""

    id = 0

    def __repr__(self):
        return "<CUDA Device 0>"


def _binary(name):
    def op(self, other):
        from . import ufuncs

        return getattr(ufuncs, name)(self, other)

    op.__name__ = f"__{name}__"
    return op


def _reflected(name):
    def op(self, other):
        from . import ufuncs

        return getattr(ufuncs, name)(other, self)

    return op


def _inplace(name):
    def op(self, other):
        from . import ufuncs

        getattr(ufuncs, name)(self, other, out=self)
        return self

    return op


def _unary(name):
    def op(self):
        from . import ufuncs

        return getattr(ufuncs, name)(self)

    return op


def _to_host(convert):
    def method(self):
        counters.sync()
        return convert(self._a)

    return method


def _reduction(name):
    def method(self, *args, **kwargs):
        from . import functions

        return getattr(functions, name)(self, *args, **kwargs)

    method.__name__ = name
    return method


class ndarray:
    """An array on the emulated device (a NumPy array inside; see the module docstring for the rules)."""

    __array_priority__ = 100

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        from .cuda import _POOL as POOL

        self._a = np.empty(shape, dtype=dtype, order=order)
        POOL._allocate(self._a)
        counters.allocation()

    # -- leaving the device ------------------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to "
                        "construct a NumPy array explicitly.")

    def get(self, stream=None, order="C", out=None, blocking=True):
        counters.sync()
        if out is not None:
            out[...] = self._a
            return out
        return np.array(self._a, order=order)

    def set(self, arr, stream=None):
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray: {type(arr)}")
        counters.h2d()
        self._a[...] = arr

    # the host reads the value: each is one sync
    item, tolist = _to_host(np.ndarray.item), _to_host(np.ndarray.tolist)
    __int__, __float__, __complex__, __bool__ = _to_host(int), _to_host(float), _to_host(complex), _to_host(bool)
    __index__, __repr__, __str__ = _to_host(np.ndarray.__index__), _to_host(repr), _to_host(str)

    def __format__(self, spec):
        counters.sync()
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self)))

    def __len__(self):
        return len(self._a)

    # -- NumPy's protocols: CuPy's functions take over, host arrays are refused --------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        from . import ufuncs

        mine = getattr(ufuncs, ufunc.__name__, None)
        if mine is None or method != "__call__":
            return NotImplemented
        return mine(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        import importlib

        mine = getattr(importlib.import_module(__package__), func.__name__, None)
        if mine is None or not callable(mine):
            return NotImplemented
        return mine(*args, **kwargs)

    # -- attributes --------------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    data = property(lambda self: _Memory(self._a))
    device = property(lambda self: Device())
    T = property(lambda self: _view(self._a.T))
    base = property(lambda self: None if self._a.base is None else _view(self._a.base))

    @property
    def mT(self):
        return _view(np.swapaxes(self._a, -1, -2))

    # -- views and copies --------------------------------------------------------------------
    def reshape(self, *shape, order="C"):
        shape = shape[0] if len(shape) == 1 else shape
        return wrap(self._a.reshape(unwrap(shape), order=order), (self._a,))

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 else axes
        return _view(self._a.transpose(*(() if axes in ((), None) else (axes,))))

    def swapaxes(self, a, b):
        return _view(self._a.swapaxes(a, b))

    def squeeze(self, axis=None):
        return _view(self._a.squeeze(axis))

    def ravel(self, order="C"):
        return wrap(self._a.ravel(order), (self._a,))

    def flatten(self, order="C"):
        return wrap(self._a.flatten(order))

    def view(self, dtype=None):
        return _view(self._a.view() if dtype is None else self._a.view(dtype))

    def copy(self, order="C"):
        return wrap(self._a.copy(order))

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        if not copy and np.dtype(dtype) == self._a.dtype:
            return self
        return wrap(self._a.astype(dtype, order=order), launched="astype")

    def fill(self, value):
        counters.launch("fill", (self, value))
        self._a.fill(unwrap(value))

    def __getitem__(self, key):
        key = _index(key)
        if _has_mask(key):
            counters.sync()
        if _is_basic(key):
            out = self._a[key]
            if not isinstance(out, np.ndarray):  # CuPy gives a 0-d view where NumPy gives a scalar
                out = self._a[(key if isinstance(key, tuple) else (key,)) + (Ellipsis,)]
            return _view(out)
        return wrap(self._a[key], launched="take")

    def __setitem__(self, key, value):
        if isinstance(value, np.ndarray):
            counters.h2d()
        elif isinstance(value, ndarray):
            value = value._a
        key = _index(key)
        if _has_mask(key):
            counters.sync()
        counters.launch("setitem", (self, key, value))
        self._a[key] = value

    # -- arithmetic --------------------------------------------------------------------------
    __add__, __radd__, __iadd__ = _binary("add"), _reflected("add"), _inplace("add")
    __sub__, __rsub__, __isub__ = _binary("subtract"), _reflected("subtract"), _inplace("subtract")
    __mul__, __rmul__, __imul__ = _binary("multiply"), _reflected("multiply"), _inplace("multiply")
    __truediv__, __rtruediv__ = _binary("true_divide"), _reflected("true_divide")
    __itruediv__ = _inplace("true_divide")
    __floordiv__, __rfloordiv__ = _binary("floor_divide"), _reflected("floor_divide")
    __ifloordiv__ = _inplace("floor_divide")
    __mod__, __rmod__ = _binary("remainder"), _reflected("remainder")
    __pow__, __rpow__, __ipow__ = _binary("power"), _reflected("power"), _inplace("power")
    __matmul__, __rmatmul__ = _binary("matmul"), _reflected("matmul")
    __and__, __rand__, __iand__ = _binary("bitwise_and"), _reflected("bitwise_and"), _inplace("bitwise_and")
    __or__, __ror__, __ior__ = _binary("bitwise_or"), _reflected("bitwise_or"), _inplace("bitwise_or")
    __xor__, __rxor__, __ixor__ = _binary("bitwise_xor"), _reflected("bitwise_xor"), _inplace("bitwise_xor")
    __lt__, __le__ = _binary("less"), _binary("less_equal")
    __gt__, __ge__ = _binary("greater"), _binary("greater_equal")
    __eq__, __ne__ = _binary("equal"), _binary("not_equal")
    __neg__, __pos__, __abs__ = _unary("negative"), _unary("positive"), _unary("absolute")
    __invert__ = _unary("invert")
    __hash__ = None

    # -- reductions and friends (the module's functions) -------------------------------------
    sum, mean, max, min = _reduction("sum"), _reduction("mean"), _reduction("max"), _reduction("min")
    argmax, argmin, prod = _reduction("argmax"), _reduction("argmin"), _reduction("prod")
    std, var, all, any = _reduction("std"), _reduction("var"), _reduction("all"), _reduction("any")
    cumsum, clip, round = _reduction("cumsum"), _reduction("clip"), _reduction("round")
    dot, nonzero, sort = _reduction("dot"), _reduction("nonzero"), _reduction("sort")
    argsort, repeat, take = _reduction("argsort"), _reduction("repeat"), _reduction("take")
    conj, trace = _reduction("conj"), _reduction("trace")


ndarray.__module__ = "cupy"  # xpnet tells device arrays by their type's module, as for CuPy's
