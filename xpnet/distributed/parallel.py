"""Data parallelism as a part the Trainer is given: broadcast, gradient averaging and metric sums over a World."""

from xpnet.distributed.gradients import GradientAverager


class DataParallel:
    """The distribution of :class:`~xpnet.training.Trainer` over the ranks of ``world``, for one model.

    It has the interface of :class:`xpnet.training.parts.Local`. With more than one rank it binds the
    world's collective engine to the model's backend (unless already bound) and holds the
    :class:`~xpnet.distributed.GradientAverager` whose buffer every step reduces; a world of one rank
    broadcasts, averages and sums nothing.

    Args:
        world: a :class:`~xpnet.distributed.World`. model: the model trained (its parameters' names,
            shapes, dtype and backend size the buffer).
    """

    def __init__(self, world, model):
        self.world = world
        self.rank, self.size, self.is_root = world.rank, world.size, world.is_root
        self.averager = None
        if world.size > 1:
            if world.engine is None:
                world.bind(model.backend)
            self.averager = GradientAverager(world, model)

    def __repr__(self):
        return f"DataParallel({self.world!r})"

    def broadcast_params(self, params):
        """Copy rank 0's ``params`` into every rank's, in place."""
        if self.averager is not None:
            self.averager.broadcast(params)

    def average_grads(self, grads, count):
        """The global-batch mean of ``grads`` (views into the shared buffer, valid until the next call)."""
        return grads if self.averager is None else self.averager.average(grads, count)

    def sum(self, values):
        """Elementwise sum of a list of floats over the ranks."""
        return list(values) if self.size == 1 else self.world.sum(values)
