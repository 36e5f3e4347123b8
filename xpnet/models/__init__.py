"""Models and the registry :func:`build` uses to rebuild a saved model by its architecture name."""

from xpnet import serialization
from xpnet.metacheck import check_model_meta, check_weights
from xpnet.models.alexnet import AlexNet
from xpnet.models.base import Model
from xpnet.models.convnets import DeepConvNet, SimpleConvNet
from xpnet.models.dcgan import Discriminator, Generator
from xpnet.models.fcn import FCN
from xpnet.models.inception import Inception
from xpnet.models.mlp import MLP
from xpnet.models.resnet import ResNet
from xpnet.models.vgg import VGG16

REGISTRY = {cls.arch: cls for cls in (MLP, SimpleConvNet, DeepConvNet, AlexNet, ResNet, Inception, VGG16, FCN,
                                      Generator, Discriminator)}


def build(arch, **kwargs):
    """Instantiate a registered model by architecture name (``"deep_convnet"``, ``"mlp"``...)."""
    try:
        cls = REGISTRY[arch]
    except KeyError:
        raise ValueError(f"unknown model {arch!r}; valid names: {', '.join(REGISTRY)}") from None
    return cls(**kwargs)


def load(path, backend=None):
    """Rebuild the model saved at ``path`` (by :meth:`Model.save`) on ``backend`` (default: current backend).

    Raises:
        FileFormatError: missing, truncated, corrupted, foreign or newer-format file.
    """
    arrays, meta = serialization.read_npz(path, serialization.FORMAT)
    arch, config = check_model_meta(path, meta, REGISTRY)  # every field checked before it is used
    check_weights(path, arrays)
    config = dict(config)
    config.pop("weight_decay_lambda", None)  # in MLP files of older versions; L2 is the optimizer's option
    model = serialization.build_declared(path, REGISTRY[arch], config, arrays, backend)
    model.load_state_dict(arrays)
    return model


__all__ = [
    "FCN", "MLP", "VGG16", "AlexNet", "REGISTRY", "DeepConvNet", "Discriminator", "Generator", "Inception", "Model",
    "ResNet", "SimpleConvNet", "build", "load",
]
