"""An exponential moving average of a model's weights (Polyak averaging), kept in a second model.

GAN practice samples from the averaged generator rather than the last one (Yazici et al. 2019, "The
Unusual Effectiveness of Averaging in GAN Training"): the generator's weights circle around a good point
under the adversarial updates, and their average sits nearer to it.
"""

from xpnet import checks


class WeightAverage:
    """``average = d * average + (1 - d) * current`` after every update, parameters and buffers alike.

    ``d`` is ``min(decay, (1 + t) / (10 + t))`` at the t-th call (t from 0), as in TensorFlow's
    ExponentialMovingAverage with ``num_updates``: the first averages are not held back by the
    (random) initial weights. With ``start``, ``d`` is 0 (the average copies) for the first ``start``
    calls and ``decay`` after, as BigGAN's ``ema_start`` does: a long average that leaves out the
    early weights. Buffers (BatchNorm's running statistics) are averaged the same way, so
    the averaged model normalises with statistics of weights like its own.

    Args:
        decay: the long-run d, in [0, 1); 0.999 averages over about the last 1,000 updates.
        start: None (the warm-up above) or the number of updates that copy before averaging begins.
    """

    def __init__(self, decay=0.999, start=None):
        self.decay = checks.number("WeightAverage", "decay", decay, 0.0, 1.0, high_open=True)
        if start is not None and not (isinstance(start, int) and not isinstance(start, bool) and start >= 0):
            raise ValueError(f"WeightAverage: start must be None or an integer >= 0, got {start!r}")
        self.start, self.t = start, 0

    def update(self, average, current):
        """Move ``average``'s arrays (a Model) towards ``current``'s (a Model of the same config), in place.

        ``average`` must have been created as a copy of ``current`` (same names and shapes).
        """
        if self.start is None:
            d = min(self.decay, (1 + self.t) / (10 + self.t))
        else:
            d = 0.0 if self.t < self.start else self.decay
        for mine, theirs in ((average.params, current.params), (average.buffers, current.buffers)):
            if mine.keys() != theirs.keys():
                raise ValueError(f"WeightAverage: the averaged model has arrays {sorted(mine)}, "
                                 f"the trained one {sorted(theirs)}")
            for k, a in mine.items():
                a *= d
                a += (1 - d) * theirs[k]
        self.t += 1
