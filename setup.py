"""The package's one compiled part: the CPU's direct convolution kernels (backends/direct_conv.c).

Everything else is in setup.cfg. The extension is optional: where no C compiler is found the build goes on
without it and the NumPy backend keeps its im2col path (xpnet.backends.direct_conv.unavailable() says so).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("xpnet.backends._direct_conv", ["backends/direct_conv.c"], optional=True,
                             extra_compile_args=["-O3"])])
