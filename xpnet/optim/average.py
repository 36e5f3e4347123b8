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
    (random) initial weights. Buffers (BatchNorm's running statistics) are averaged the same way, so
    the averaged model normalises with statistics of weights like its own.

    Args:
        decay: the long-run d, in [0, 1); 0.999 averages over about the last 1,000 updates.
    """

    def __init__(self, decay=0.999):
        self.decay = checks.number("WeightAverage", "decay", decay, 0.0, 1.0, high_open=True)
        self.t = 0

    def update(self, average, current):
        """Move ``average``'s arrays (a Model) towards ``current``'s (a Model of the same config), in place.

        ``average`` must have been created as a copy of ``current`` (same names and shapes).
        """
        d = min(self.decay, (1 + self.t) / (10 + self.t))
        for mine, theirs in ((average.params, current.params), (average.buffers, current.buffers)):
            if mine.keys() != theirs.keys():
                raise ValueError(f"WeightAverage: the averaged model has arrays {sorted(mine)}, "
                                 f"the trained one {sorted(theirs)}")
            for k, a in mine.items():
                a *= d
                a += (1 - d) * theirs[k]
        self.t += 1
