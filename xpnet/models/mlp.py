"""The book's MultiLayerNetExtend: fully connected ReLU/sigmoid layers with BatchNorm and Dropout options."""

import numpy as np

from xpnet import checks
from xpnet.layers import Affine, BatchNorm, Dropout, MeanSquaredError, ReLU, Sequential, Sigmoid, SoftmaxCrossEntropy
from xpnet.models.base import Model

LOSSES = {"cross_entropy": SoftmaxCrossEntropy, "mse": MeanSquaredError}


class MLP(Model):
    """Affine -> [BatchNorm] -> activation -> [Dropout], repeated, then Affine -> the loss.

    Args:
        input_size: features per example (784 for MNIST). hidden_size_list: hidden widths.
        output_size: classes (or outputs, for ``loss="mse"``). activation: ``"relu"`` or ``"sigmoid"``.
        weight_init_std: ``"relu"``/``"he"``, ``"sigmoid"``/``"xavier"`` or a float std.
        weight_decay_lambda: must be 0 (the value files of older versions hold): L2 regularisation is the
            optimizer's ``weight_decay``. use_dropout, dropout_ratio, use_batchnorm.
        seed: initialisation and dropout seed. dtype, backend: where and in what the parameters live.
        loss: ``"cross_entropy"`` (softmax cross-entropy against class labels) or ``"mse"`` (mean squared
            error against (N, output_size) targets: regression).

    Shapes:
        x (N, input_size) -> scores (N, output_size).
    """

    arch = "mlp"

    def __init__(self, input_size=784, hidden_size_list=(100, 100), output_size=10, activation="relu",
                 weight_init_std="relu", weight_decay_lambda=0.0, use_dropout=False, dropout_ratio=0.5,
                 use_batchnorm=False, seed=0, dtype="float32", backend=None, loss="cross_entropy"):
        checks.common("MLP", output_size=output_size, seed=seed, dropout_ratio=dropout_ratio)
        checks.integer("MLP", "input_size", input_size)
        checks.integers("MLP", "hidden_size_list", hidden_size_list)
        checks.weight_init("MLP", "weight_init_std", weight_init_std)
        checks.flag("MLP", "use_dropout", use_dropout)
        checks.flag("MLP", "use_batchnorm", use_batchnorm)
        if activation not in ("relu", "sigmoid"):
            raise ValueError(f"MLP: activation must be 'relu' or 'sigmoid', got {activation!r}")
        if weight_decay_lambda:
            raise ValueError(f"MLP: weight_decay_lambda must be 0, got {weight_decay_lambda!r}; L2 regularisation is "
                             f"the optimizer's: pass weight_decay={weight_decay_lambda!r} to it, e.g. "
                             f"optim.SGD(lr=0.01, weight_decay={weight_decay_lambda!r}) (it decays every parameter)")
        if loss not in LOSSES:
            raise ValueError(f"MLP: loss must be one of {', '.join(map(repr, LOSSES))}, got {loss!r}")
        config = dict(input_size=input_size, hidden_size_list=list(hidden_size_list), output_size=output_size,
                      activation=activation, weight_init_std=weight_init_std,
                      weight_decay_lambda=0.0, use_dropout=use_dropout,
                      dropout_ratio=dropout_ratio, use_batchnorm=use_batchnorm, seed=seed, dtype=str(dtype))
        if loss != "cross_entropy":  # files of classifiers stay as they were
            config["loss"] = loss
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
        super().__init__(Sequential(*layers), LOSSES[loss](), config, input_shape=(input_size,))
