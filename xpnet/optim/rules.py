"""Per-parameter update rules: SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam, AdamW."""

from xpnet import backends
from xpnet.optim.base import Optimizer, _check


def _zeros_like(p):
    return backends.of(p).xp.zeros_like(p)


class SGD(Optimizer):
    """p -= lr * g."""

    fused = "sgd"

    def update(self, p, g, state, lr):
        p -= lr * g


class Momentum(Optimizer):
    """v = momentum * v - lr * g; p += v (the book's form)."""

    fused = "momentum"

    def __init__(self, lr=0.01, momentum=0.9, **kw):
        super().__init__(lr, **kw)
        self.momentum = _check("momentum", momentum, 0.0, 1.0)

    def hyperparams(self):
        return {**super().hyperparams(), "momentum": self.momentum}

    def init_state(self, p):
        return {"v": _zeros_like(p)}

    def fused_args(self):
        return (self.momentum,)

    def update(self, p, g, state, lr):
        v = state["v"]
        v *= self.momentum
        v -= lr * g
        p += v


class Nesterov(Momentum):
    """Nesterov's accelerated gradient (Sutskever et al. 2013), as PyTorch's ``SGD(nesterov=True)``.

    v = momentum * v + g; p -= lr * (g + momentum * v): the gradient step plus the momentum step taken
    from the updated velocity (the look-ahead), so the first step is (1 + momentum) * lr * g. Unlike
    :class:`Momentum`, ``v`` holds gradients, not steps: a learning-rate schedule rescales it at once.
    """

    fused = "nesterov"

    def update(self, p, g, state, lr):
        v, mu = state["v"], self.momentum
        v *= mu
        v += g
        p -= lr * (g + mu * v)


class AdaGrad(Optimizer):
    """h += g^2; p -= lr * g / (sqrt(h) + eps)."""

    fused = "adagrad"

    def __init__(self, lr=0.01, eps=1e-7, **kw):
        super().__init__(lr, **kw)
        self.eps = _check("eps", eps, low_open=True)

    def hyperparams(self):
        return {**super().hyperparams(), "eps": self.eps}

    def init_state(self, p):
        return {"h": _zeros_like(p)}

    def fused_args(self):
        return (self.eps,)

    def update(self, p, g, state, lr):
        h = state["h"]
        h += g * g
        p -= lr * g / (backends.of(p).xp.sqrt(h) + self.eps)


class RMSprop(AdaGrad):
    """h = decay * h + (1 - decay) * g^2; p -= lr * g / (sqrt(h) + eps)."""

    fused = "rmsprop"

    def __init__(self, lr=0.01, decay=0.99, eps=1e-7, **kw):
        super().__init__(lr, eps=eps, **kw)
        self.decay = _check("decay", decay, 0.0, 1.0)

    def hyperparams(self):
        return {**super().hyperparams(), "decay": self.decay}

    def fused_args(self):
        return (self.decay, self.eps)

    def update(self, p, g, state, lr):
        h = state["h"]
        h *= self.decay
        h += (1 - self.decay) * g * g
        p -= lr * g / (backends.of(p).xp.sqrt(h) + self.eps)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction; ``weight_decay`` adds an L2 term to g.

    The bias correction counts each parameter's own updates (``state["step"]``, as PyTorch does): a
    parameter that first gets a gradient late (frozen, then unfrozen) starts as a fresh one would.
    """

    fused = "adam"

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, **kw):
        super().__init__(lr, **kw)
        self.beta1 = _check("beta1", beta1, 0.0, 1.0)
        self.beta2 = _check("beta2", beta2, 0.0, 1.0)
        self.eps = _check("eps", eps, low_open=True)

    def hyperparams(self):
        return {**super().hyperparams(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def init_state(self, p):
        return {"m": _zeros_like(p), "v": _zeros_like(p), "step": 0}

    def load_state_dict(self, d):
        """As :meth:`Optimizer.load_state_dict`; state saved without per-parameter step counts (older
        xpnet counted the optimizer's steps only) gets the optimizer's count, the value it then used."""
        super().load_state_dict(d)
        for state in self.state.values():
            state.setdefault("step", self.t)

    def fused_args(self):
        # the bias corrections of each step come from the step number fused_update is given
        return (self.beta1, self.beta2, self.eps)

    def update(self, p, g, state, lr):
        m, v = state["m"], state["v"]
        state["step"] = t = state["step"] + 1
        m += (1 - self.beta1) * (g - m)
        v += (1 - self.beta2) * (g * g - v)
        c1 = 1 - self.beta1**t
        c2 = 1 - self.beta2**t
        p -= (lr / c1) * m / (backends.of(p).xp.sqrt(v / c2) + self.eps)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): p -= lr * wd * p, then Adam."""

    decoupled_weight_decay = True
    fused = "adamw"

    def __init__(self, lr=0.001, weight_decay=0.01, **kw):
        super().__init__(lr, weight_decay=weight_decay, **kw)

    def fused_args(self):
        return (*super().fused_args(), self.weight_decay)  # the decoupled decay is lr * weight_decay

    def update(self, p, g, state, lr):
        if self.weight_decay:
            p -= (lr * self.weight_decay) * p
        super().update(p, g, state, lr)
