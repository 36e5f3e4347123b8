"""Models and the registry :func:`build` uses to rebuild a saved model by its architecture name."""

from xpnet.models.alexnet import AlexNet
from xpnet.models.base import Model
from xpnet.models.convnets import DeepConvNet, SimpleConvNet
from xpnet.models.mlp import MLP

REGISTRY = {cls.arch: cls for cls in (MLP, SimpleConvNet, DeepConvNet, AlexNet)}


def build(arch, **kwargs):
    """Instantiate a registered model by architecture name (``"deep_convnet"``, ``"mlp"``...)."""
    try:
        cls = REGISTRY[arch]
    except KeyError:
        raise ValueError(f"unknown model {arch!r}; valid names: {', '.join(REGISTRY)}") from None
    return cls(**kwargs)


__all__ = ["MLP", "AlexNet", "REGISTRY", "DeepConvNet", "Model", "SimpleConvNet", "build"]
