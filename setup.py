"""The package's one compiled part: the CPU kernels in one extension module, direct convolution
(backends/direct_conv.c), max pooling / ReLU (backends/cpu_kernels.c), LeakyReLU (backends/cpu_leaky_relu.c)
and batch normalisation (backends/cpu_batchnorm.c).

Everything else is in setup.cfg. The extension is optional: where no C compiler is found the build goes on
without it and the NumPy backend keeps its im2col path and its NumPy pooling, activations and BatchNorm
(xpnet.backends.direct_conv.unavailable() and xpnet.backends.cpu_kernels.unavailable() say so).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("xpnet.backends._native",
                             ["backends/native_module.c", "backends/direct_conv.c", "backends/direct_conv_taps.c",
                              "backends/direct_conv_pixels.c", "backends/cpu_kernels.c",
                              "backends/cpu_leaky_relu.c", "backends/cpu_batchnorm.c"],
                             depends=["backends/direct_conv_common.h"], optional=True, extra_compile_args=["-O3"])])
