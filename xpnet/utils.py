"""Small shared helpers."""


def pair(value, name="value"):
    """Return ``(a, b)`` for an int or a 2-sequence of non-negative ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        out = (value, value)
    else:
        try:
            out = tuple(int(v) for v in value)
        except TypeError:
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
        if len(out) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    if out[0] < 0 or out[1] < 0:
        raise ValueError(f"{name} must be non-negative, got {value!r}")
    return out


class LazyGenerator:
    """A seeded random generator made on the device that first asks for it (again if the device changes).

    Its state can be read and restored before it exists (a checkpoint loaded before the first step), so
    Dropout masks and augmentations continue the same stream after a resume.
    """

    def __init__(self, seed=None):
        self.seed = seed
        self._rng = self._backend = self._pending = None

    def on(self, be):
        """The generator on backend ``be``."""
        if self._rng is None or self._backend is not be:
            self._rng, self._backend = be.rng(self.seed), be
            if self._pending is not None:
                self._rng.set_state(self._pending)
                self._pending = None
        return self._rng

    def get_state(self):
        return self._rng.get_state() if self._rng is not None else self._pending

    def set_state(self, state):
        """Restore ``state`` (None: start again from the seed) at the next :meth:`on`."""
        self._rng, self._pending = None, state
