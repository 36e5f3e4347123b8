"""Gradient averaging: pack every gradient into one flat buffer, allreduce it in place, hand back views."""

import numpy as np

DEFAULT_BUCKET_BYTES = 25 * 2**20  # as PyTorch DDP: large enough to reach bandwidth, small enough to stage


class GradientAverager:
    """Average gradients (and broadcast parameters) over the ranks of ``world`` for one model.

    The buffer holds every gradient of the model, in ``model.params`` order, then one slot with the
    number of examples this rank saw. Each rank writes ``count * grad`` into it; after the allreduce
    (a sum) the buffer is divided by the summed count, so the result is the mean over the *global*
    batch even when shards differ in size. The gradients returned are views into the buffer.

    Args:
        world: a :class:`~xpnet.distributed.World` whose engine is bound (:meth:`World.bind`).
        model: the model whose ``params``/``grads`` are averaged.
        bucket_bytes: buffers larger than this are reduced in consecutive slices of this size
            (bounds the host staging copy and MPI's 2**31 element count; the prerequisite for
            overlapping communication with the backward pass).
    """

    def __init__(self, world, model, bucket_bytes=DEFAULT_BUCKET_BYTES):
        if world.engine is None:
            raise ValueError("GradientAverager: bind the world to the model's backend first (world.bind)")
        if int(bucket_bytes) < 1:
            raise ValueError(f"GradientAverager: bucket_bytes must be positive, got {bucket_bytes!r}")
        self.world, self.engine = world, world.engine
        params = model.params
        self.names = list(params)
        self.shapes = [tuple(p.shape) for p in params.values()]
        sizes = [int(np.prod(s)) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()
        # float16 models reduce in float32: count x a loss-scaled gradient would overflow float16
        xp, dtype = model.backend.xp, np.promote_types(model.dtype, np.float32)
        self.flat = xp.zeros(self.offsets[-1] + 1, dtype=dtype)  # + the example-count slot
        step = max(1, int(bucket_bytes) // self.flat.itemsize)
        self.buckets = [(i, min(i + step, self.flat.size)) for i in range(0, self.flat.size, step)]
        self.views = {n: self.flat[a:b].reshape(s)
                      for n, a, b, s in zip(self.names, self.offsets[:-1], self.offsets[1:], self.shapes, strict=True)}

    @property
    def nbytes(self):
        """Bytes each allreduce moves in (and out of) every rank."""
        return int(self.flat.nbytes)

    def average(self, grads, count):
        """The global-batch mean of ``grads`` (this rank's mean gradient over ``count`` examples).

        Returns a dict of views into the shared buffer, valid until the next call.
        """
        for name in self.names:
            view = self.views[name]
            view[...] = grads[name]
            view *= count
        self.flat[-1] = count
        self._allreduce()
        total = self.flat[-1:]  # a device value: dividing by it needs no host sync
        self.flat[:-1] /= total
        return self.views

    def _allreduce(self):
        for a, b in self.buckets:
            self.engine.allreduce_(self.flat[a:b])

    def broadcast(self, params):
        """Copy rank 0's ``params`` (the model's, by name) into every rank's, in place."""
        for name in self.names:
            self.views[name][...] = params[name]
        for a, b in self.buckets:
            self.engine.bcast_(self.flat[a:b], root=0)
        for name in self.names:
            params[name][...] = self.views[name]
