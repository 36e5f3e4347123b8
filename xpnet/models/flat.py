"""A model's parameters and gradients as views into one contiguous buffer per dtype.

With every parameter in one buffer an optimizer rule is one kernel over the whole buffer (see
:meth:`xpnet.optim.Optimizer.step`), and the gradients, gathered into a twin buffer after the
backward pass, are one array to reduce or clip.
"""

from collections import OrderedDict

import numpy as np

from xpnet import backends


class FlatArrays(OrderedDict):
    """An ordered ``name -> array`` dict whose arrays are views into flat buffers.

    Attributes:
        flat: list of ``(buffer, names)``: each 1-D buffer holds the named arrays back to back, in order.
    """

    def __init__(self, items, flat):
        super().__init__(items)
        self.flat = flat


class FlatStore:
    """Keeps a network's parameters as views into one buffer per dtype, and gathers its gradients.

    The store rebinds the network's parameters (through ``net.set_array``) when they are not its views
    any more (after ``to``, ``astype``, ``load_state_dict``...): values are copied, never changed.
    """

    def __init__(self):
        self.params = None  # FlatArrays of the bound views
        self._grads = None  # gradient buffers, one per params buffer
        self._gathered = None  # (the layers' gradient arrays gathered last, FlatArrays of views)

    def current(self, params):
        """True when ``params`` are exactly this store's views, in order."""
        own = self.params
        return own is not None and len(own) == len(params) and all(
            a is b for a, b in zip(own.values(), params.values(), strict=True))

    def bind(self, net):
        """Copy the network's parameters into fresh flat buffers and make its parameters views of them."""
        params = net.all_params
        groups = OrderedDict()
        for name, p in params.items():
            groups.setdefault((backends.of(p), p.dtype), []).append(name)
        views, gviews, flat, gflat = OrderedDict(), OrderedDict(), [], []
        for (be, dtype), names in groups.items():
            size = sum(int(np.prod(params[n].shape)) for n in names)
            buf, gbuf = be.xp.empty(size, dtype=dtype), be.xp.zeros(size, dtype=dtype)
            start = 0
            for n in names:
                p = params[n]
                views[n] = buf[start:start + p.size].reshape(p.shape)
                views[n][...] = p
                gviews[n] = gbuf[start:start + p.size].reshape(p.shape)
                start += p.size
            flat.append((buf, names))
            gflat.append((gbuf, names))
        for n, v in views.items():
            net.set_array(n, v, "params")
            net.set_array(n, gviews[n], "grad_out")  # layers that can write their gradients there do
        self.params = FlatArrays(((n, views[n]) for n in params), flat)
        self._grads, self._gathered = FlatArrays(((n, gviews[n]) for n in params), gflat), None
        return self.params

    def gather(self, grads):
        """Copy the layers' ``grads`` into the gradient buffers (one copy per buffer); returns FlatArrays of
        views into them, valid until the next gather. ``grads`` unchanged when they do not match the
        bound parameters (names, shapes or dtypes)."""
        own = self._grads
        if own is None or list(grads) != list(own) or any(
                grads[n].shape != g.shape or grads[n].dtype != g.dtype for n, g in own.items()):
            return grads
        for gbuf, names in own.flat:
            if all(grads[n] is own[n] for n in names):
                continue  # the layers wrote their gradients here (Layer.grad_out)
            backends.of(gbuf).xp.concatenate([grads[n].reshape(-1) for n in names], out=gbuf)
        self._gathered = list(grads.values())
        return own

    def gathered(self, grads):
        """The gradient views if the last :meth:`gather` copied exactly these layer gradients, else ``grads``."""
        arrays = self._gathered
        if arrays is not None and len(arrays) == len(grads) and all(
                a is b for a, b in zip(arrays, grads.values(), strict=True)):
            return self._grads
        return grads
