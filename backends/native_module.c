/* The init of xpnet.backends._native, the extension that holds the CPU's compiled kernels (direct_conv.c,
 * cpu_kernels.c, cpu_leaky_relu.c, cpu_batchnorm.c). It defines no Python functions: backends/extension.py opens the module's file with
 * ctypes and calls the kernels' C functions, which take raw pointers and release nothing (ctypes drops the GIL). Being
 * an extension module is what lets setuptools build it with the package and the loader find it. */
#include <Python.h>

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", "xpnet's compiled CPU kernels (called "
                                    "through ctypes by xpnet.backends.extension)", -1, NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
