"""The optimizer step over flat buffers: parameters and gradients as views into one buffer per dtype.

When :meth:`Optimizer.step` is handed :class:`~xpnet.models.flat.FlatArrays` for both (a model's
``trainable_params`` and ``grads`` with nothing frozen), the per-parameter state lives in flat buffers
too (``optimizer.state[name]`` stays a dict of views into them, so ``state_dict`` and checkpoints are
unchanged) and each buffer is updated at once: one kernel on a backend with a fused rule, else the
rule's own ``update`` over the whole buffer, the same arithmetic element by element.
"""

from xpnet import backends


def pairs(params, grads):
    """``[(param_buffer, grad_buffer, names)]`` when both are FlatArrays of one layout, else None."""
    pf, gf = getattr(params, "flat", None), getattr(grads, "flat", None)
    if pf is None or gf is None or len(pf) != len(gf) or list(params) != list(grads):
        return None
    out = []
    for (pb, pn), (gb, gn) in zip(pf, gf, strict=True):
        if pn != gn or pb.shape != gb.shape or pb.dtype != gb.dtype or backends.of(pb) is not backends.of(gb):
            return None
        out.append((pb, gb, pn))
    return out


def fused_rule(cls):
    """The fused kernel name of an optimizer class, or None when a subclass changed its rule."""
    for klass in cls.__mro__:
        if "fused" in vars(klass):
            return klass.fused
        if "update" in vars(klass) or "step" in vars(klass):
            return None
    return None


class FlatState:
    """An optimizer's state as flat buffers, one set per parameter buffer, with per-name views."""

    def __init__(self):
        # id(param buffer) -> (param buffer, flat state, {name: state dict}, the backend's workspace dict)
        self._entries = {}

    def get(self, opt, pbuf, names, params):
        """The flat state arrays for ``pbuf``, (re)built from ``opt.state`` when it is not their views."""
        entry = self._entries.get(id(pbuf))
        if entry is not None and entry[0] is pbuf and all(opt.state.get(n) is entry[2][n] for n in names):
            return entry[1]
        fresh = opt.init_state(pbuf)
        flat = {k: v for k, v in fresh.items() if hasattr(v, "shape")}  # counters stay per parameter
        be, start, views = backends.of(pbuf), 0, {}
        for n in names:
            p, old = params[n], opt.state.get(n) or {}
            views[n] = {k: old.get(k, v) for k, v in fresh.items() if k not in flat}
            for k, v in flat.items():
                views[n][k] = v[start:start + p.size].reshape(p.shape)
                if k in old:  # loaded from a checkpoint, or built by a per-parameter step
                    views[n][k][...] = be.asarray(old[k])
            opt.state[n] = views[n]
            start += p.size
        self._entries[id(pbuf)] = (pbuf, flat, views, {})  # a new workspace: the device starts afresh
        return flat

    def workspace(self, pbuf):
        """The backend's workspace dict kept with ``pbuf``'s flat state (:meth:`get` made it)."""
        return self._entries[id(pbuf)][3]

    def keep_only(self, buffers):
        """Forget the state of parameter buffers not in ``buffers`` (a model re-bound its parameters)."""
        ids = {id(b) for b in buffers}
        self._entries = {k: e for k, e in self._entries.items() if k in ids}
