"""Optimizers, clipping and schedules against values worked out by hand, on every backend."""

import math

import numpy as np
import pytest
from tolerance import assert_close

from xpnet import optim
from xpnet.optim import SGD, AdaGrad, Adam, AdamW, Constant, Cosine, Momentum, Nesterov, RMSprop, StepDecay, Warmup

P0 = [1.0, -2.0]
G = [0.5, -1.0]


def _run(backend, opt, grads, p0=P0):
    """Step ``opt`` on one parameter ``w`` (float64, starting at p0); return its value after each step."""
    p = backend.asarray(p0, dtype=np.float64)
    out = []
    for g in grads:
        opt.step({"w": p}, {"w": backend.asarray(g, dtype=np.float64)})
        out.append(backend.asnumpy(p).copy())
    return out


def _assert_steps(got, want, ops=4):
    """Each step rounds ``ops`` times in float64 (values of order 1); the hand values round once more."""
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want), start=1):
        assert_close(a, b, terms=ops * k + 1, scale=2.0, dtype=np.float64, err_msg=f"step {k}")


def test_sgd(backend):
    # p -= 0.1 * g: [1, -2] - [0.05, -0.1] = [0.95, -1.9]; again: [0.9, -1.8]
    _assert_steps(_run(backend, SGD(lr=0.1), [G, G]), [[0.95, -1.9], [0.9, -1.8]])


def test_momentum(backend):
    # v1 = -0.1 g = [-0.05, 0.1]                            p1 = [0.95, -1.9]
    # v2 = 0.9 v1 - 0.1 g = [-0.045 - 0.05, 0.09 + 0.1]    = [-0.095, 0.19]     p2 = [0.855, -1.71]
    # v3 = 0.9 v2 - 0.1 g = [-0.0855 - 0.05, 0.171 + 0.1]  = [-0.1355, 0.271]   p3 = [0.7195, -1.439]
    got = _run(backend, Momentum(lr=0.1, momentum=0.9), [G, G, G])
    _assert_steps(got, [[0.95, -1.9], [0.855, -1.71], [0.7195, -1.439]])


def test_nesterov(backend):
    # Sutskever et al. / PyTorch SGD(nesterov=True): v = mu v + g; p -= lr (g + mu v), mu = 0.9, lr = 0.1
    # g1 = [0.5, -1]:  v1 = [0.5, -1];  step 0.1 ([0.5, -1] + [0.45, -0.9]) = [0.095, -0.19]   (= (1 + mu) lr g1)
    #   p1 = [0.905, -1.81]
    # g2 = [-0.5, 2]:  v2 = [0.45 - 0.5, -0.9 + 2] = [-0.05, 1.1];  step 0.1 ([-0.5, 2] + [-0.045, 0.99])
    #   = [-0.0545, 0.299]                                                                p2 = [0.9595, -2.109]
    # g3 = [1, 0.5]:   v3 = [-0.045 + 1, 0.99 + 0.5] = [0.955, 1.49];  step 0.1 ([1, 0.5] + [0.8595, 1.341])
    #   = [0.18595, 0.1841]                                                               p3 = [0.77355, -2.2931]
    got = _run(backend, Nesterov(lr=0.1, momentum=0.9), [G, [-0.5, 2.0], [1.0, 0.5]])
    _assert_steps(got, [[0.905, -1.81], [0.9595, -2.109], [0.77355, -2.2931]])


def test_adagrad(backend):
    # h1 = g^2 = [0.25, 1]; p -= 0.1 g / sqrt(h1) = 0.1 [1, -1]             p1 = [0.9, -1.9]
    # h2 = 2 g^2 = [0.5, 2]; p -= 0.1 [0.5 / 0.70711, -1 / 1.41421] = 0.1 [0.70711, -0.70711]
    #   p2 = [0.829289, -1.829289]   (eps = 1e-7 moves these by < 1e-6 relative)
    e = 1e-7  # AdaGrad's eps, in the denominator
    got = _run(backend, AdaGrad(lr=0.1), [G, G])
    _assert_steps(got, [[1 - 0.05 / (0.5 + e), -2 + 0.1 / (1 + e)],
                        [1 - 0.05 / (0.5 + e) - 0.05 / (math.sqrt(0.5) + e),
                         -2 + 0.1 / (1 + e) + 0.1 / (math.sqrt(2) + e)]])


def test_rmsprop(backend):
    # decay 0.9: h1 = 0.1 g^2 = [0.025, 0.1]; g / sqrt(h1) = [0.5 / 0.158114, -1 / 0.316228] = +-3.162278
    #   p1 = [1 - 0.3162278, -2 + 0.3162278] = [0.6837722, -1.6837722]
    # h2 = 0.9 h1 + 0.1 g^2 = [0.0475, 0.19]; g / sqrt(h2) = +-1 / sqrt(0.19) = +-2.2941573
    #   p2 = [0.6837722 - 0.2294157, -1.6837722 + 0.2294157] = [0.4543565, -1.4543565]
    e = 1e-7
    p1 = [1 - 0.05 / (math.sqrt(0.025) + e), -2 + 0.1 / (math.sqrt(0.1) + e)]
    p2 = [p1[0] - 0.05 / (math.sqrt(0.0475) + e), p1[1] + 0.1 / (math.sqrt(0.19) + e)]
    _assert_steps(_run(backend, RMSprop(lr=0.1, decay=0.9), [G, G]), [p1, p2])


def test_adam_bias_correction(backend):
    # beta1 = 0.9, beta2 = 0.999, lr = 0.1, g1 = [0.5, -1], g2 = [-0.5, 2]
    # step 1: m = 0.1 g1, v = 0.001 g1^2; corrected m / (1 - 0.9) = g1, v / (1 - 0.999) = g1^2
    #   p -= 0.1 g1 / |g1| = [0.1, -0.1]                                    p1 = [0.9, -1.9]
    # step 2: m = 0.9 [0.05, -0.1] + 0.1 g2 = [-0.005, 0.11]
    #         v = 0.999 [0.00025, 0.001] + 0.001 g2^2 = [0.00049975, 0.004999]
    #   c1 = 1 - 0.9^2 = 0.19, c2 = 1 - 0.999^2 = 0.001999
    #   m / c1 = [-0.0263158, 0.5789474], v / c2 = [0.25, 2.5007504], sqrt = [0.5, 1.5813761]
    #   p -= 0.1 [-0.0526316, 0.3661035]                                    p2 = [0.9052632, -1.9366104]
    #   (the same with Adam's eps = 1e-8 added to sqrt(v / c2))
    e = 1e-8
    p1 = [1 - 0.05 / (0.5 + e), -2 + 0.1 / (1 + e)]
    p2 = [p1[0] + 0.1 * (0.005 / 0.19) / (math.sqrt(0.00049975 / 0.001999) + e),
          p1[1] - 0.1 * (0.11 / 0.19) / (math.sqrt(0.004999 / 0.001999) + e)]
    _assert_steps(_run(backend, Adam(lr=0.1), [G, [-0.5, 2.0]]), [p1, p2])


def test_adam_constant_gradient_moves_lr_per_step(backend):
    # with bias correction a constant g gives m_hat = g, v_hat = g^2: every step is lr * sign(g)
    got = _run(backend, Adam(lr=0.1), [G, G, G])
    _assert_steps(got, [[1 - 0.1 * k * 0.5 / (0.5 + 1e-8), -2 + 0.1 * k / (1 + 1e-8)] for k in (1, 2, 3)])


def test_adam_bias_correction_counts_each_parameters_own_steps(backend):
    # "late" is frozen (not passed to step) for the first 5 steps; its first update must be the one a
    # fresh Adam makes, lr * g / (|g| + eps): m_hat = g, v_hat = g^2 after one step of its own. Counting the
    # optimizer's 6 steps instead gives m / (1 - 0.9^6) = 0.1 g / 0.468559 and sqrt(v / (1 - 0.999^6))
    # = |g| sqrt(0.001 / 0.005985), a step of 0.522 lr.
    opt = Adam(lr=0.1)
    early = backend.asarray(P0, dtype=np.float64)
    late = backend.asarray(P0, dtype=np.float64)
    g = backend.asarray(G, dtype=np.float64)
    for _ in range(5):
        opt.step({"early": early}, {"early": g})
    opt.step({"early": early, "late": late}, {"early": g, "late": g})
    _assert_steps([backend.asnumpy(late)], [[1 - 0.05 / (0.5 + 1e-8), -2 + 0.1 / (1 + 1e-8)]])
    assert opt.t == 6 and opt.state["early"]["step"] == 6 and opt.state["late"]["step"] == 1
    sd = opt.state_dict()
    assert sd["state"]["late"]["step"] == 1 and sd["state"]["late"]["step"].dtype == np.int64
    again = Adam(lr=0.1)
    again.load_state_dict(sd)
    assert again.state["late"]["step"] == 1 and again.state["early"]["step"] == 6


def test_adam_loads_state_saved_without_step_counts(backend):
    # older state dicts have no per-parameter "step": every parameter then took the optimizer's t steps
    a = Adam(lr=0.1)
    p = backend.asarray(P0, dtype=np.float64)
    for g in (G, [-0.5, 2.0]):
        a.step({"w": p}, {"w": backend.asarray(g, dtype=np.float64)})
    sd = a.state_dict()
    del sd["state"]["w"]["step"]
    b = Adam(lr=0.1)
    b.load_state_dict(sd)
    assert b.state["w"]["step"] == 2
    q = backend.asarray(backend.asnumpy(p).copy())
    a.step({"w": p}, {"w": backend.asarray(G, dtype=np.float64)})
    b.step({"w": q}, {"w": backend.asarray(G, dtype=np.float64)})
    np.testing.assert_array_equal(backend.asnumpy(q), backend.asnumpy(p))


def test_adamw_decoupled_decay(backend):
    # p *= 1 - lr * wd = 0.99, then the Adam step of lr * sign(g) (constant g):
    # p1 = [0.99, -1.98] - [0.1, -0.1] = [0.89, -1.88]
    # p2 = [0.8811, -1.8612] - [0.1, -0.1] = [0.7811, -1.7612]
    #   (Adam's eps = 1e-8 makes each step lr * |g| / (|g| + eps))
    s1, s2 = 0.1 * 0.5 / (0.5 + 1e-8), 0.1 / (1 + 1e-8)
    got = _run(backend, AdamW(lr=0.1, weight_decay=0.1), [G, G])
    _assert_steps(got, [[0.99 - s1, -1.98 + s2], [0.99 * (0.99 - s1) - s1, 0.99 * (-1.98 + s2) + s2]])
    # Adam's coupled L2 goes through the normalisation instead: step 1 is still lr * sign(g + wd p),
    # g + wd p = [0.6, -1.2]
    coupled = _run(backend, Adam(lr=0.1, weight_decay=0.1), [G])
    _assert_steps(coupled, [[1 - 0.1 * 0.6 / (0.6 + 1e-8), -2 + 0.1 * 1.2 / (1.2 + 1e-8)]])


def test_sgd_weight_decay_adds_l2_to_gradient(backend):
    # g' = g + 0.5 p: step 1 g' = [0.5 + 0.5, -1 - 1] = [1, -2]         p1 = [0.9, -1.8]
    #                 step 2 g' = [0.5 + 0.45, -1 - 0.9] = [0.95, -1.9]  p2 = [0.805, -1.61]
    got = _run(backend, SGD(lr=0.1, weight_decay=0.5), [G, G])
    _assert_steps(got, [[0.9, -1.8], [0.805, -1.61]])


def test_clip_norm_scales_by_global_norm(backend):
    # grads a = [3, 0], b = [4]: global norm sqrt(9 + 16) = 5; clip to 1 scales by 1 / 5
    def step(clip_norm):
        params = {"a": backend.xp.zeros(2), "b": backend.xp.zeros(1)}
        grads = {"a": backend.asarray([3.0, 0.0]), "b": backend.asarray([4.0])}
        norm = SGD(lr=1.0, clip_norm=clip_norm).step(params, grads)
        return norm, backend.asnumpy(params["a"]), backend.asnumpy(params["b"])

    norm, a, b = step(1.0)
    assert float(norm) == 5.0  # sqrt(25) is exact
    assert_close(a, [-3 / (5 + 1e-6), 0.0], terms=4)  # scaled by 1 / (norm + 1e-6)
    assert_close(b, [-4 / (5 + 1e-6)], terms=4)
    norm, a, b = step(10.0)  # already below the limit: untouched
    assert float(norm) == 5.0
    np.testing.assert_array_equal(a, [-3.0, 0.0])
    np.testing.assert_array_equal(b, [-4.0])
    assert step(None)[0] is None
    assert float(optim.global_norm({"a": backend.asarray([3.0, 0.0]), "b": backend.asarray([4.0])})) == 5.0


# -- schedules ---------------------------------------------------------------------------------------


def test_step_decay_values():
    s = StepDecay(step_size=2, gamma=0.5)
    assert [s(k) for k in range(6)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_cosine_values():
    s = Cosine(total_steps=4, min_factor=0.1)
    # 0.1 + 0.9 * 0.5 * (1 + cos(pi * k / 4)):  k=1 -> 0.1 + 0.45 (1 + 1 / sqrt(2)) = 0.8681981, k=2 -> 0.55
    want = [1.0, 0.1 + 0.45 * (1 + 1 / math.sqrt(2)), 0.55, 0.1 + 0.45 * (1 - 1 / math.sqrt(2)), 0.1, 0.1]
    assert_close([s(k) for k in (0, 1, 2, 3, 4, 100)], want, terms=6)  # flat after total_steps


def test_warmup_values():
    s = Warmup(4)
    assert [s(k) for k in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert Constant()(123) == 1.0


def test_warmup_then_cosine_values():
    s = Warmup(2, after=Cosine(4))
    # (k + 1) / 2 for k < 2, then cosine of k - 2: 1, cos-half at 2 -> 0.5, 0 from 4 on
    expected = [0.5, 1.0, 1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4)), 0.0, 0.0]
    assert_close([s(k) for k in range(8)], expected, terms=6)
    assert s.to_dict() == {"name": "warmup", "warmup_steps": 2,
                           "after": {"name": "cosine", "total_steps": 4, "min_factor": 0.0}}


@pytest.mark.parametrize("bad", [lambda: StepDecay(0), lambda: StepDecay(2, gamma=1.5), lambda: Cosine(0),
                                 lambda: Cosine(4, min_factor=2.0), lambda: Warmup(0)])
def test_schedules_reject_bad_arguments(bad):
    with pytest.raises(ValueError):
        bad()


def test_schedule_drives_learning_rate(backend):
    opt = SGD(lr=0.1, schedule=StepDecay(1, gamma=0.5))
    assert opt.current_lr() == 0.1  # 0.1 x a factor of exactly 1
    # lr 0.1, 0.05, 0.025 with g = 1: p = -0.1, -0.15, -0.175
    got = _run(backend, opt, [[1.0]] * 3, p0=[0.0])
    _assert_steps(got, [[-0.1], [-0.15], [-0.175]])
    assert opt.t == 3
    assert_close(opt.current_lr(), 0.0125, terms=1, scale=0.0125)  # 0.1 x 0.5^3


# -- contracts ---------------------------------------------------------------------------------------

ALL = {
    "sgd": lambda: SGD(lr=0.1, weight_decay=0.01, clip_norm=0.5),
    "momentum": lambda: Momentum(lr=0.1, weight_decay=0.01, clip_norm=0.5),
    "nesterov": lambda: Nesterov(lr=0.1, clip_norm=0.5),
    "adagrad": lambda: AdaGrad(lr=0.1, weight_decay=0.01),
    "rmsprop": lambda: RMSprop(lr=0.1, clip_norm=0.5),
    "adam": lambda: Adam(lr=0.1, weight_decay=0.01, clip_norm=0.5),
    "adamw": lambda: AdamW(lr=0.1, clip_norm=0.5),
}


def _problem(backend, rng, dtype=np.float32):
    params = {"fc1.W": backend.asarray(rng.standard_normal((3, 2)), dtype=dtype),
              "fc1.b": backend.asarray(rng.standard_normal(2), dtype=dtype)}
    grads = {k: backend.asarray(rng.standard_normal(v.shape), dtype=dtype) for k, v in params.items()}
    return params, grads


@pytest.mark.parametrize("name", list(ALL))
def test_step_does_not_modify_gradient_and_keeps_dtype(backend, name, rng):
    params, grads = _problem(backend, rng)
    before = {k: backend.asnumpy(g).copy() for k, g in grads.items()}
    p_before = {k: backend.asnumpy(p).copy() for k, p in params.items()}
    opt = ALL[name]()
    for _ in range(2):
        opt.step(params, grads)
    for k in grads:
        np.testing.assert_array_equal(backend.asnumpy(grads[k]), before[k])
        assert params[k].dtype == np.float32 and backend.owns(params[k])
        assert not np.array_equal(backend.asnumpy(params[k]), p_before[k])  # updated in place


@pytest.mark.parametrize("name", list(ALL))
def test_state_is_lazy_keyed_by_name_on_parameter_device(backend, name, rng):
    params, grads = _problem(backend, rng)
    opt = ALL[name]()
    assert opt.state == {}
    opt.step(params, grads)
    assert set(opt.state) == set(params)
    for k, state in opt.state.items():
        for arr in (v for v in state.values() if not isinstance(v, int)):  # ints: Adam's step counts
            assert backend.owns(arr)
            assert arr.shape == params[k].shape and arr.dtype == params[k].dtype


@pytest.mark.parametrize("name", list(ALL))
def test_state_dict_round_trip_gives_identical_updates(backend, name, rng):
    params, grads = _problem(backend, rng)
    later = [_problem(backend, rng)[1] for _ in range(2)]
    a = ALL[name]()
    a.step(params, grads)
    a.step(params, later[0])
    sd = a.state_dict()
    assert sd["type"] == type(a).__name__ and sd["t"] == 2
    snapshot = {n: {k: np.array(v) for k, v in s.items()} for n, s in sd["state"].items()}
    for s in sd["state"].values():
        assert all(isinstance(v, np.ndarray) for v in s.values())

    b = ALL[name]()
    b.load_state_dict(sd)
    params_b = {k: backend.asarray(backend.asnumpy(p).copy()) for k, p in params.items()}
    for g in later:
        a.step(params, g)
        b.step(params_b, g)
    for k in params:
        np.testing.assert_array_equal(backend.asnumpy(params[k]), backend.asnumpy(params_b[k]))
    assert a.t == b.t == 4
    # the saved dict is a snapshot: stepping either optimizer did not change it
    for n, s in sd["state"].items():
        for k, v in s.items():
            np.testing.assert_array_equal(v, snapshot[n][k])


def test_load_state_dict_rejects_other_optimizer():
    sd = SGD(lr=0.1).state_dict()
    with pytest.raises(ValueError, match="SGD"):
        Adam().load_state_dict(sd)


def test_step_without_gradient_raises(backend):
    with pytest.raises(ValueError, match="no gradient"):
        SGD().step({"w": backend.xp.zeros(2)}, {})


@pytest.mark.parametrize("make, needle", [
    (lambda: SGD(lr=-0.01), "lr must be a number > 0.0, got -0.01"),
    (lambda: SGD(lr=0), "got 0"),
    (lambda: SGD(lr="0.1"), "got '0.1'"),
    (lambda: SGD(weight_decay=-1e-4), "weight_decay must be a number >= 0.0, got -0.0001"),
    (lambda: SGD(clip_norm=0.0), "clip_norm must be a number > 0.0, got 0.0"),
    (lambda: Momentum(momentum=-0.1), "momentum must be a number >= 0.0 and < 1.0, got -0.1"),
    (lambda: Nesterov(momentum=1.0), "got 1.0"),
    (lambda: AdaGrad(eps=0.0), "eps must be a number > 0.0, got 0.0"),
    (lambda: RMSprop(decay=1.5), "decay must be a number >= 0.0 and < 1.0, got 1.5"),
    (lambda: Adam(beta1=1.0), "beta1 must be a number >= 0.0 and < 1.0, got 1.0"),
    (lambda: Adam(beta2=-0.5), "beta2 must be a number >= 0.0 and < 1.0, got -0.5"),
    (lambda: AdamW(weight_decay=-0.01), "got -0.01"),
])
def test_hyperparameter_validation(make, needle):
    with pytest.raises(ValueError) as exc:
        make()
    assert needle in str(exc.value)


def test_get_by_name():
    opt = optim.get("adam", lr=0.01, beta1=0.8)
    assert isinstance(opt, Adam) and opt.lr == 0.01 and opt.beta1 == 0.8
    assert type(optim.get("AdamW")) is AdamW
    assert set(optim.OPTIMIZERS) == {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"}
    with pytest.raises(ValueError) as exc:
        optim.get("adamax")
    assert "adamax" in str(exc.value) and "sgd" in str(exc.value) and "adamw" in str(exc.value)


def test_adam_unfrozen_layer_starts_fresh_on_the_flat_path(backend, rng):
    # fc2 frozen for 3 steps, then everything trains: the model hands flat buffers (the fused kernel on
    # CUDA) whose parameters have taken 3 and 0 steps; fc2's first update is a fresh Adam's first one,
    # lr * g / (|g| + eps), and fc1 goes on with its 4th
    from xpnet.models import MLP
    from xpnet.optim import flat

    model = MLP(input_size=4, hidden_size_list=[3], output_size=2, seed=0, dtype="float64")
    x, t = rng.standard_normal((5, 4)), np.array([0, 1, 1, 0, 1])
    opt = Adam(lr=0.1)
    model.freeze("fc2")
    for _ in range(3):
        model.loss(x, t)
        opt.step(model.trainable_params, model.backward())
    model.unfreeze()
    before = backend.asnumpy(model.params["fc2.W"]).copy()
    model.loss(x, t)
    grads = model.backward()
    g = backend.asnumpy(grads["fc2.W"]).copy()
    assert flat.pairs(model.trainable_params, grads) is not None  # the flat path
    opt.step(model.trainable_params, grads)
    assert opt.state["fc2.W"]["step"] == 1 and opt.state["fc1.W"]["step"] == 4
    assert_close(backend.asnumpy(model.params["fc2.W"]), before - 0.1 * g / (np.abs(g) + 1e-8), terms=6,
                 scale=np.abs(before) + 0.1)
    model.loss(x, t)
    opt.step(model.trainable_params, model.backward())
    assert opt.state["fc2.W"]["step"] == 2 and opt.state["fc1.W"]["step"] == 5


def _filled(model, value):
    for arrays in (model.params, model.buffers):
        for a in arrays.values():
            a[...] = value
    return model


def test_weight_average_warms_up_then_decays_parameters_and_buffers(backend):
    """From 0 towards a model of all ones, a_t = 1 - prod(d_s), d_s = min(0.2, (1 + s) / (10 + s)): 0.1, 2/11, 0.2."""
    from xpnet.models import Generator

    average, current = (_filled(Generator(z_dim=2, widths=(3, 2), seed=s), v) for s, v in ((0, 0.0), (1, 1.0)))
    assert len(average.buffers) == 4  # BatchNorm's running statistics take part too
    ema = optim.WeightAverage(decay=0.2)
    for k, want in enumerate([1 - 0.1, 1 - 0.1 * 2 / 11, 1 - 0.1 * 2 / 11 * 0.2, 1 - 0.1 * 2 / 11 * 0.2 ** 2], 1):
        ema.update(average, current)
        for name, a in {**average.params, **average.buffers}.items():
            assert_close(backend.asnumpy(a), np.full(a.shape, want), terms=2 * k + 1, dtype=a.dtype,
                         err_msg=f"{name} after {k} updates")
    for a in {**current.params, **current.buffers}.values():
        np.testing.assert_array_equal(backend.asnumpy(a), 1.0)  # the trained model is only read


@pytest.mark.parametrize("bad", [1.0, -0.1, float("nan"), "0.9"])
def test_weight_average_rejects_bad_decay(bad):
    with pytest.raises(ValueError, match="WeightAverage: decay"):
        optim.WeightAverage(decay=bad)


def test_weight_average_rejects_another_architecture():
    from xpnet.models import Discriminator, Generator

    with pytest.raises(ValueError, match="averaged model has arrays"):
        optim.WeightAverage().update(Generator(z_dim=2, widths=(3, 2)), Discriminator(widths=(2, 3)))


def test_weight_average_with_start_copies_then_decays(backend):
    """start=2, decay 0.5, the trained model at 1, 2, 4, 8: copies 1, 2, then 0.5*2 + 0.5*4 = 3, 0.5*3 + 0.5*8."""
    from xpnet.models import Generator

    average, current = (Generator(z_dim=2, widths=(3, 2), seed=s) for s in (0, 1))
    ema = optim.WeightAverage(decay=0.5, start=2)
    for k, (value, want) in enumerate(zip([1.0, 2.0, 4.0, 8.0], [1.0, 2.0, 3.0, 5.5]), 1):
        ema.update(average, _filled(current, value))
        for name, a in {**average.params, **average.buffers}.items():
            assert_close(backend.asnumpy(a), np.full(a.shape, want), terms=2 * k + 1, scale=8.0, dtype=a.dtype,
                         err_msg=f"{name} after {k} updates")


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_weight_average_rejects_bad_start(bad):
    with pytest.raises(ValueError, match="WeightAverage: start"):
        optim.WeightAverage(start=bad)
