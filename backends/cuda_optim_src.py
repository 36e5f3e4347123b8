"""CUDA C of the fused optimizer rules: one elementwise kernel per rule over a whole flat buffer.

Each kernel applies, per element, what :meth:`xpnet.optim.Optimizer.step` and the rule's ``update``
do per parameter: clipping by the global norm (``sumsq`` is the device scalar sum of squares of every
gradient, so no host sync), L2 weight decay added to the gradient (AdamW decays the weights instead),
then the rule. The per-step values (learning rate, bias corrections) are kernel arguments, so the
compiled kernel is the same every step. Built by :mod:`xpnet.backends.cuda_kernels` (``KERNELS``).
"""

# float and double by their own sqrt; float16 (CuPy's class, defined after this preamble) through float
_PREAMBLE = """
__device__ __forceinline__ float xpnet_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double xpnet_sqrt(double x) { return sqrt(x); }
template <class T> __device__ __forceinline__ T xpnet_sqrt(T x) { return T(sqrtf(float(x))); }
"""

_COMMON_IN = "T g, raw T sumsq, T lr, T wd, T clip"

# the gradient the rule sees: clipped by the global norm, plus the L2 term
_GRAD = """
    T gg = g;
    if (clip > T(0)) {
        const T s = clip / (xpnet_sqrt(sumsq[0]) + T(1e-6));
        if (s < T(1)) gg = gg * s;
    }
    if (wd > T(0)) gg = gg + wd * p;
"""

_RULES = {
    "sgd": ("", "T p", "p = p - lr * gg;"),
    "momentum": (", T mu", "T p, T v", "v = mu * v - lr * gg; p = p + v;"),
    # Sutskever's form as PyTorch's SGD(nesterov=True): v holds gradients
    "nesterov": (", T mu", "T p, T v", "v = mu * v + gg; p = p - lr * (gg + mu * v);"),
    "adagrad": (", T eps", "T p, T h", "h = h + gg * gg; p = p - lr * gg / (xpnet_sqrt(h) + eps);"),
    "rmsprop": (", T decay, T eps", "T p, T h",
                "h = decay * h + (T(1) - decay) * gg * gg; p = p - lr * gg / (xpnet_sqrt(h) + eps);"),
    # lr_t = lr / (1 - beta1^t), c2 = 1 - beta2^t
    "adam": (", T b1, T b2, T eps, T lr_t, T c2", "T p, T m, T v",
             "m = m + (T(1) - b1) * (gg - m); v = v + (T(1) - b2) * (gg * gg - v);"
             " p = p - lr_t * m / (xpnet_sqrt(v / c2) + eps);"),
}
# AdamW: decoupled decay (dw = lr * weight_decay) before the Adam step; wd (the L2 term) is 0
_RULES["adamw"] = (_RULES["adam"][0] + ", T dw", _RULES["adam"][1], "p = p - dw * p; " + _RULES["adam"][2])


#: the state arrays each rule's kernel updates, after ``p``, in order
STATE = {"sgd": (), "momentum": ("v",), "nesterov": ("v",), "adagrad": ("h",), "rmsprop": ("h",),
         "adam": ("m", "v"), "adamw": ("m", "v")}


def kernels():
    """``{attribute: ("ElementwiseKernel", args)}`` for every rule (``fused_<rule>``)."""
    return {f"fused_{rule}": ("ElementwiseKernel", (_COMMON_IN + extra, out, _GRAD + op,
                                                    f"xpnet_fused_{rule}", True, _PREAMBLE))
            for rule, (extra, out, op) in _RULES.items()}
