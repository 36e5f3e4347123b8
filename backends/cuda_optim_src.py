"""CUDA C of the fused optimizer rules: one elementwise kernel per rule over a whole flat buffer.

Each kernel applies, per element, what :meth:`xpnet.optim.Optimizer.step` and the rule's ``update``
do per parameter: clipping by the global norm (``sumsq`` is the device scalar sum of squares of every
gradient, so no host sync), L2 weight decay added to the gradient (AdamW decays the weights instead),
then the rule. The values that change from step to step are read from a small float64 device buffer
``s`` (:data:`SCALARS_SIZE` slots), not passed as arguments, so every launch has the same arguments every step:
``s[0]`` the learning rate (the host writes it when it changes), ``s[1]`` the steps taken, and for
Adam and AdamW the bias-corrected values :data:`ADAM_SCALARS` computes from them on the device, one
thread, just before the update. Built by :mod:`xpnet.backends.cuda_kernels` (``KERNELS``).
"""

# float and double by their own sqrt; float16 (CuPy's class, defined after this preamble) through float
_PREAMBLE = """
__device__ __forceinline__ float xpnet_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double xpnet_sqrt(double x) { return sqrt(x); }
template <class T> __device__ __forceinline__ T xpnet_sqrt(T x) { return T(sqrtf(float(x))); }
"""

#: float64 slots of the scalar buffer ``s``: lr and the step count (host-written), ADAM_SCALARS's three
SCALARS_SIZE = 8

_COMMON_IN = "T g, raw T sumsq, raw float64 s, T wd, T clip"

# the gradient the rule sees: clipped by the global norm, plus the L2 term
_GRAD = """
    const T lr = T(s[0]);
    T gg = g;
    if (clip > T(0)) {
        const T k = clip / (xpnet_sqrt(sumsq[0]) + T(1e-6));
        if (k < T(1)) gg = gg * k;
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
    # lr_t = lr / (1 - beta1^t), c2 = 1 - beta2^t, from ADAM_SCALARS
    "adam": (", T b1, T b2, T eps", "T p, T m, T v",
             "const T lr_t = T(s[2]), c2 = T(s[3]);"
             " m = m + (T(1) - b1) * (gg - m); v = v + (T(1) - b2) * (gg * gg - v);"
             " p = p - lr_t * m / (xpnet_sqrt(v / c2) + eps);"),
}
# AdamW: decoupled decay (dw = lr * weight_decay, from ADAM_SCALARS) before the Adam step; wd (L2) is 0
_RULES["adamw"] = (_RULES["adam"][0], _RULES["adam"][1], "p = p - T(s[4]) * p; " + _RULES["adam"][2])

# Adam's per-step values, in double as the host would compute them, one thread (size=1): the step count
# moves on, then lr_t = lr / (1 - beta1^t), c2 = 1 - beta2^t and AdamW's dw = lr * weight_decay
ADAM_SCALARS = (
    "float64 b1, float64 b2, float64 weight_decay",
    "raw float64 s",
    "const double t = s[1] + 1.0; s[1] = t;"
    " s[2] = s[0] / (1.0 - pow(b1, t)); s[3] = 1.0 - pow(b2, t); s[4] = s[0] * weight_decay;",
    "xpnet_adam_scalars",
)

#: the rules whose per-step values ADAM_SCALARS computes (the others read only the learning rate)
COUNTED = ("adam", "adamw")


#: the state arrays each rule's kernel updates, after ``p``, in order
STATE = {"sgd": (), "momentum": ("v",), "nesterov": ("v",), "adagrad": ("h",), "rmsprop": ("h",),
         "adam": ("m", "v"), "adamw": ("m", "v")}


def kernels():
    """``{attribute: ("ElementwiseKernel", args)}`` for every rule (``fused_<rule>``) and ``adam_scalars``."""
    rules = {f"fused_{rule}": ("ElementwiseKernel", (_COMMON_IN + extra, out, _GRAD + op,
                                                     f"xpnet_fused_{rule}", True, _PREAMBLE))
             for rule, (extra, out, op) in _RULES.items()}
    return {**rules, "adam_scalars": ("ElementwiseKernel", ADAM_SCALARS)}
