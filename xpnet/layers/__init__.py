"""Layers with forward/backward; parameters and gradients in dicts keyed by the same names."""

from xpnet.layers.activation import ReLU, Sigmoid, Tanh
from xpnet.layers.base import Layer
from xpnet.layers.blocks import Concat, GlobalAvgPool2D, Residual, basic_block, inception_block
from xpnet.layers.container import Container, Sequential
from xpnet.layers.conv import Conv2D
from xpnet.layers.dropout import Dropout
from xpnet.layers.linear import Affine, Flatten
from xpnet.layers.loss import MeanSquaredError, SoftmaxCrossEntropy
from xpnet.layers.lrn import LocalResponseNormalization
from xpnet.layers.norm import BatchNorm
from xpnet.layers.pool import AvgPool2D, MaxPool2D

Linear = Affine

__all__ = [
    "Affine", "AvgPool2D", "BatchNorm", "Concat", "Container", "Conv2D", "Dropout", "Flatten", "GlobalAvgPool2D",
    "Layer", "Linear", "MaxPool2D", "LocalResponseNormalization", "MeanSquaredError", "ReLU", "Residual",
    "Sequential", "Sigmoid", "SoftmaxCrossEntropy", "Tanh", "basic_block", "inception_block",
]
