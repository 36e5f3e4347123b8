"""xpnet: the layers of "Deep Learning from Scratch", for real, on NumPy or CuPy.

Quick start:
    >>> import xpnet
    >>> (x_train, t_train), (x_test, t_test) = xpnet.datasets.load_mnist(flatten=False)
    >>> model = xpnet.models.DeepConvNet()
    >>> model.accuracy(x_test, t_test)
"""

__version__ = "0.1.0"

from xpnet import backends, datasets, errors, init, layers, models, optim  # noqa: E402
from xpnet.models import load  # noqa: E402

__all__ = ["__version__", "backends", "datasets", "errors", "init", "layers", "load", "models", "optim"]
