"""Save VGG16 (batchnorm), ResNet and Inception with random weights, for ``xpnet export`` / ``xpnet eval --compare``.

Weights: each model's He initialisation (seed 0). BatchNorm: gamma, beta and the running statistics drawn
uniformly (gamma, running_var in [0.5, 1.5]; beta, running_mean in [-0.5, 0.5]), so the exported
inference form is not the near-identity of fresh statistics.

    python benchmarks/prototypes/random_models.py OUT_DIR    # writes OUT_DIR/{vgg16_bn,resnet,inception}.npz
"""

import os
import sys

import numpy as np

from xpnet import models


def randomize_batchnorm(model, rng):
    for name, v in {**model.params, **model.buffers}.items():
        kind = "buffers" if name in model.buffers else "params"
        if name.endswith(("gamma", "running_var")):
            model.net.set_array(name, rng.uniform(0.5, 1.5, v.shape).astype(v.dtype), kind)
        elif name.endswith(("beta", "running_mean")):
            model.net.set_array(name, rng.uniform(-0.5, 0.5, v.shape).astype(v.dtype), kind)


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(2020)
    for name, model in (("vgg16_bn", models.VGG16(batchnorm=True)), ("resnet", models.ResNet()),
                        ("inception", models.Inception())):
        randomize_batchnorm(model, rng)
        path = os.path.join(out_dir, f"{name}.npz")
        model.save(path)
        print(f"{path}: {model.arch}, {model.num_params():,} parameters")


if __name__ == "__main__":
    main(sys.argv[1])
