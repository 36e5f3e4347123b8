"""The book's MultiLayerNetExtend: fully connected ReLU/sigmoid layers with BatchNorm and Dropout options."""

import numpy as np

from xpnet import checks
from xpnet.layers import Affine, BatchNorm, Dropout, ReLU, Sequential, Sigmoid, SoftmaxCrossEntropy
from xpnet.models.base import Model


class MLP(Model):
    """Affine -> [BatchNorm] -> activation -> [Dropout], repeated, then Affine -> softmax cross-entropy.

    Args:
        input_size: features per example (784 for MNIST). hidden_size_list: hidden widths.
        output_size: classes. activation: ``"relu"`` or ``"sigmoid"``.
        weight_init_std: ``"relu"``/``"he"``, ``"sigmoid"``/``"xavier"`` or a float std.
        weight_decay_lambda: L2 penalty (see :class:`Model`). use_dropout, dropout_ratio, use_batchnorm.
        seed: initialisation and dropout seed. dtype, backend: where and in what the parameters live.

    Shapes:
        x (N, input_size) -> scores (N, output_size).
    """

    arch = "mlp"

    def __init__(self, input_size=784, hidden_size_list=(100, 100), output_size=10, activation="relu",
                 weight_init_std="relu", weight_decay_lambda=0.0, use_dropout=False, dropout_ratio=0.5,
                 use_batchnorm=False, seed=0, dtype="float32", backend=None):
        checks.common("MLP", output_size=output_size, seed=seed, dropout_ratio=dropout_ratio)
        checks.integer("MLP", "input_size", input_size)
        checks.integers("MLP", "hidden_size_list", hidden_size_list)
        checks.weight_init("MLP", "weight_init_std", weight_init_std)
        checks.number("MLP", "weight_decay_lambda", weight_decay_lambda)
        checks.flag("MLP", "use_dropout", use_dropout)
        checks.flag("MLP", "use_batchnorm", use_batchnorm)
        if activation not in ("relu", "sigmoid"):
            raise ValueError(f"MLP: activation must be 'relu' or 'sigmoid', got {activation!r}")
        config = dict(input_size=input_size, hidden_size_list=list(hidden_size_list), output_size=output_size,
                      activation=activation, weight_init_std=weight_init_std,
                      weight_decay_lambda=weight_decay_lambda, use_dropout=use_dropout,
                      dropout_ratio=dropout_ratio, use_batchnorm=use_batchnorm, seed=seed, dtype=str(dtype))
        rng = np.random.default_rng(seed)
        kw = dict(rng=rng, dtype=dtype, backend=backend)
        act = ReLU if activation == "relu" else Sigmoid
        sizes = [input_size, *hidden_size_list]
        layers = []
        for i, (fan_in, width) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            layers.append((f"fc{i}", Affine(fan_in, width, weight_init_std, **kw)))
            if use_batchnorm:
                layers.append((f"bn{i}", BatchNorm(width, dtype=dtype, backend=backend)))
            layers.append((f"{activation}{i}", act()))
            if use_dropout:
                layers.append((f"dropout{i}", Dropout(dropout_ratio, seed=int(rng.integers(2**31)))))
        n = len(hidden_size_list) + 1
        layers.append((f"fc{n}", Affine(sizes[-1], output_size, weight_init_std, **kw)))
        super().__init__(Sequential(*layers), SoftmaxCrossEntropy(), config, weight_decay_lambda)
