"""The parts a Trainer is given besides model and optimizer, as they are when it is given none.

A *distribution* says how this process shares the work: :class:`Local` (one process) here,
:class:`xpnet.distributed.DataParallel` over MPI ranks. A *precision policy* says how gradients become an
update: :class:`FullPrecision` (the optimizer's step as it is) here, :class:`~xpnet.training.MixedPrecision`
for a float16 model with float32 master weights. The Trainer calls their methods at fixed points of a step
and knows nothing else of them; each writes only into the arrays it is handed.
"""


class Local:
    """One process trains alone: nothing to broadcast, average or sum.

    The interface every distribution has:

    Attributes:
        rank, size: this process's index among the ``size`` that train together (0 and 1 here).
        is_root: rank 0, which alone evaluates, reports and writes files.
    """

    rank, size, is_root = 0, 1, True

    def broadcast_params(self, params):
        """Make every rank's ``params`` (a dict of arrays, updated in place) rank 0's; called before training."""

    def average_grads(self, grads, count):
        """The global-batch mean of ``grads`` (this rank's mean over ``count`` examples); here ``grads``."""
        return grads

    def sum(self, values):
        """Elementwise sum of a list of floats over the ranks (the epoch's metrics); here ``values``."""
        return list(values)


class FullPrecision:
    """The model computes in the dtype it has; the optimizer updates its parameters directly.

    The interface every precision policy has: :attr:`loss_scale`, :meth:`step`, :meth:`history_fields`,
    :meth:`state_dict` and :meth:`load_state_dict`.
    """

    #: The factor the loss is multiplied by before back-propagation (``model.backward(loss_scale)``).
    loss_scale = 1.0

    def step(self, optimizer, params, grads):
        """Update ``params`` in place with ``optimizer`` from ``grads``; returns True (the step was applied)."""
        optimizer.step(params, grads)
        return True

    def history_fields(self):
        """Extra per-epoch fields for the training history (none here)."""
        return {}

    def state_dict(self):
        """What a checkpoint keeps: ``{"type": ...}`` plus, for policies with arrays, ``"arrays"``."""
        return {"type": type(self).__name__}

    def load_state_dict(self, d):
        if d.get("type") != type(self).__name__:
            raise ValueError(f"precision state is for {d.get('type')!r}, not {type(self).__name__}")
