"""xpnet: the layers of "Deep Learning from Scratch", for real, on NumPy or CuPy.

Quick start:
    >>> import xpnet
    >>> (x_train, t_train), (x_test, t_test) = xpnet.datasets.load_mnist(flatten=False)
    >>> model = xpnet.models.DeepConvNet()
    >>> model.accuracy(x_test, t_test)
"""

__version__ = "0.1.0"

import os as _os  # noqa: E402

# A checkout used without installing (PYTHONPATH=CHECKOUT, as on a machine with no network for pip):
# backends/ sits beside xpnet/ and is installed as xpnet.backends, so look for subpackages there too.
_here = _os.path.dirname(_os.path.abspath(__file__))
if not _os.path.isdir(_os.path.join(_here, "backends")) and _os.path.isfile(
        _os.path.join(_here, _os.pardir, "backends", "__init__.py")):
    __path__.append(_os.path.dirname(_here))

from xpnet import backends, datasets, errors, init, layers, models, onnx, optim  # noqa: E402
from xpnet.models import load  # noqa: E402

__all__ = ["__version__", "backends", "datasets", "errors", "init", "layers", "load", "models", "onnx", "optim"]
