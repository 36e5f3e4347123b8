"""``cupy.random``'s Generator API for the emulated device.

As in CuPy, the bit generator's whole state is a device array (``bit_generator._state``, int8), so it
can be read and written back; here it holds a NumPy PCG64 state instead of cuRAND's XORWOW states.
The numbers differ from a real GPU's; their reproducibility and resumption work the same way.
"""

import numpy as _np

from . import counters as _counters
from .array import allocated as _allocated
from .array import unwrap as _unwrap
from .functions import zeros as _zeros

_WORDS = 6  # PCG64 state: state (2 x uint64), increment (2 x uint64), has_uint32, uinteger


class BitGenerator:
    def __init__(self, seed=None):
        self._seed_seq = seed if isinstance(seed, _np.random.SeedSequence) else _np.random.SeedSequence(seed)


class XORWOW(BitGenerator):
    def __init__(self, seed=None, *, size=-1):
        super().__init__(seed)
        self._size = 8 * 256 * 4 if size < 0 else size
        self._state = _zeros(_WORDS * 8, dtype=_np.int8)
        self._store(_np.random.PCG64(self._seed_seq))

    def _store(self, pcg):
        s = pcg.state
        words = [s["state"]["state"] >> 64, s["state"]["state"] & (2**64 - 1), s["state"]["inc"] >> 64,
                 s["state"]["inc"] & (2**64 - 1), s["has_uint32"], s["uinteger"]]
        self._state._a[...] = _np.array(words, dtype=_np.uint64).view(_np.int8)

    def _load(self):
        w = [int(v) for v in self._state._a.view(_np.uint64)]
        pcg = _np.random.PCG64()
        pcg.state = {"bit_generator": "PCG64", "state": {"state": (w[0] << 64) | w[1], "inc": (w[2] << 64) | w[3]},
                     "has_uint32": w[4], "uinteger": w[5]}
        return pcg

    def _draw(self, method, *args, **kwargs):
        pcg = self._load()
        out = getattr(_np.random.Generator(pcg), method)(*args, **kwargs)
        self._store(pcg)
        return out

    def _state_size(self):
        return self._size


class Generator:
    def __init__(self, bit_generator):
        self.bit_generator = bit_generator

    def _sample(self, method, *args, **kwargs):
        out = self.bit_generator._draw(method, *args, **kwargs)
        _counters.launch(f"random.{method}")
        return _allocated(_np.asarray(out))

    def random(self, size=None, dtype=_np.float64, out=None):
        return self._sample("random", size, dtype=dtype)

    def standard_normal(self, size=None, dtype=_np.float64, out=None):
        return self._sample("standard_normal", size, dtype=dtype)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=_np.float64):
        return self._sample("uniform", _unwrap(low), _unwrap(high), size).astype(dtype, copy=False)

    def integers(self, low, high=None, size=None, dtype=_np.int64, endpoint=False):
        return self._sample("integers", _unwrap(low), _unwrap(high), size, dtype=dtype, endpoint=endpoint)


def default_rng(seed=None):
    if isinstance(seed, Generator):
        return seed
    return Generator(seed if isinstance(seed, BitGenerator) else XORWOW(seed))


