"""Layers with forward/backward; parameters and gradients in dicts keyed by the same names."""

from xpnet.layers.activation import LeakyReLU, ReLU, Sigmoid, Tanh
from xpnet.layers.base import Layer
from xpnet.layers.blocks import Concat, GlobalAvgPool2D, Residual, basic_block, inception_block
from xpnet.layers.container import Container, Sequential
from xpnet.layers.conv import Conv2D
from xpnet.layers.conv_transpose import Conv2DTranspose
from xpnet.layers.dropout import Dropout
from xpnet.layers.linear import Affine, Flatten
from xpnet.layers.loss import MeanSquaredError, SigmoidBinaryCrossEntropy, SoftmaxCrossEntropy, SoftmaxCrossEntropy2D
from xpnet.layers.lrn import LocalResponseNormalization
from xpnet.layers.norm import BatchNorm
from xpnet.layers.pool import AvgPool2D, MaxPool2D
from xpnet.layers.upsample import Upsample2D

Linear = Affine

__all__ = [
    "Affine", "AvgPool2D", "BatchNorm", "Concat", "Container", "Conv2D", "Conv2DTranspose", "Dropout", "Flatten",
    "GlobalAvgPool2D", "Layer", "LeakyReLU", "Linear", "MaxPool2D", "LocalResponseNormalization", "MeanSquaredError",
    "ReLU", "Residual", "Sequential", "Sigmoid", "SigmoidBinaryCrossEntropy", "SoftmaxCrossEntropy",
    "SoftmaxCrossEntropy2D", "Tanh", "Upsample2D", "basic_block", "inception_block",
]
