"""The optimizer step over flat buffers (one fused kernel per buffer on CUDA) equals the per-parameter step."""

import numpy as np
import pytest

from xpnet import optim
from xpnet.models import DeepConvNet
from xpnet.models.flat import FlatArrays

SHAPES = {"conv.W": (4, 2, 3, 3), "conv.b": (4,), "fc.W": (36, 5), "fc.b": (5,)}
STEPS = 10
RULES = {
    "sgd": lambda **kw: optim.SGD(lr=0.1, **kw),
    "momentum": lambda **kw: optim.Momentum(lr=0.05, **kw),
    "nesterov": lambda **kw: optim.Nesterov(lr=0.05, **kw),
    "adagrad": lambda **kw: optim.AdaGrad(lr=0.05, **kw),
    "rmsprop": lambda **kw: optim.RMSprop(lr=0.01, **kw),
    "adam": lambda **kw: optim.Adam(lr=0.01, **kw),
    "adamw": lambda **kw: optim.AdamW(lr=0.01, **kw),
}
VARIANTS = {
    "plain": {},
    "weight_decay": {"weight_decay": 0.1},
    "clip": {"clip_norm": 0.5},
    "both+schedule": {"weight_decay": 0.05, "clip_norm": 2.0, "schedule": optim.Cosine(STEPS)},
}


def _flat(backend, arrays):
    """FlatArrays of views into one new buffer holding ``arrays`` back to back (as a model's FlatStore)."""
    buf = backend.asarray(np.concatenate([a.ravel() for a in arrays.values()]))
    views, start = {}, 0
    for name, a in arrays.items():
        views[name] = buf[start:start + a.size].reshape(a.shape)
        start += a.size
    return FlatArrays(views.items(), [(buf, list(arrays))])


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("rule", RULES)
def test_flat_step_equals_per_parameter_step(backend, rule, variant):
    rng = np.random.default_rng(3)
    p0 = {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
    grads = [{k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()} for _ in range(STEPS)]
    fused, ref = RULES[rule](**VARIANTS[variant]), RULES[rule](**VARIANTS[variant])
    flat_p = _flat(backend, p0)
    ref_p = {k: backend.asarray(v) for k, v in p0.items()}
    for g in grads:
        norm_f = fused.step(flat_p, _flat(backend, g))
        norm_r = ref.step(ref_p, {k: backend.asarray(v) for k, v in g.items()})
    # float32: each step rounds a few ops per element (clip, decay, rule: <= 12), errors add over the steps;
    # values stay of order |p0| + the steps taken (< 4 here)
    tol = STEPS * 12 * np.finfo(np.float32).eps * 4.0
    for k in SHAPES:
        np.testing.assert_allclose(backend.asnumpy(flat_p[k]), backend.asnumpy(ref_p[k]), rtol=tol, atol=tol,
                                   err_msg=k)
    if "clip_norm" in VARIANTS[variant]:
        np.testing.assert_allclose(float(norm_f), float(norm_r), rtol=1e-5)  # 66+ squares summed in float32
    state_f, state_r = fused.state_dict(), ref.state_dict()
    assert state_f["t"] == state_r["t"] == STEPS and state_f["state"].keys() == state_r["state"].keys()
    for name, s in state_r["state"].items():
        for key, v in s.items():
            np.testing.assert_allclose(state_f["state"][name][key], v, rtol=tol, atol=tol, err_msg=f"{name}.{key}")


def test_a_subclass_with_its_own_rule_is_not_fused(backend):
    class Halved(optim.SGD):
        def update(self, p, g, state, lr):
            p -= 0.5 * lr * g

    p = _flat(backend, {"w": np.ones(3, np.float32)})
    Halved(lr=1.0).step(p, _flat(backend, {"w": np.ones(3, np.float32)}))
    np.testing.assert_array_equal(backend.asnumpy(p["w"]), [0.5, 0.5, 0.5])


def test_model_hands_flat_views_and_a_checkpointed_state_resumes(backend, tmp_path):
    """Through a model: one buffer for parameters and one for gradients; state saved mid-way and loaded
    into a fresh optimizer continues exactly as the uninterrupted run (bit for bit on the same backend)."""
    rng = np.random.default_rng(0)
    x, t = rng.random((4, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 4)

    def train(model, opt, steps):
        for _ in range(steps):
            model.loss(backend.asarray(x), backend.asarray(t), train=False)
            model.backward()
            opt.step(model.trainable_params, model.grads)

    a, b = DeepConvNet(seed=1, backend=backend), DeepConvNet(seed=1, backend=backend)
    params = a.trainable_params
    assert isinstance(params, FlatArrays) and len(params.flat) == 1
    opt_a, opt_b = optim.Adam(lr=0.01), optim.Adam(lr=0.01)
    train(a, opt_a, 2)
    assert isinstance(a.grads, FlatArrays) and a.grads.flat[0][0].size == params.flat[0][0].size
    train(b, opt_b, 2)
    b.load_state_dict(b.state_dict())  # re-bound parameters: new flat buffers
    resumed = optim.Adam(lr=0.01)
    resumed.load_state_dict(opt_b.state_dict())
    train(a, opt_a, 2)
    train(b, resumed, 2)
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k], err_msg=k)
