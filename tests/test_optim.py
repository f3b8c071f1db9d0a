"""Optimizers: PyTorch parity of whole trajectories, closed forms, state_dict resume, bad inputs."""

import json

import numpy as np
import pytest

from minibnn import Tensor, nn
from minibnn import functional as F
from minibnn.optim import SGD, Adam, AdamW

SHAPES = [(3, 4), (5,)]
STEPS = 10

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.05, momentum=0.8, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.5, nesterov=True, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, weight_decay=0.2)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, betas=(0.5, 0.9), weight_decay=0.3)),  # lerp weight 0.5: torch's other branch
]
OURS = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}


def make_problem(kind: str, seed: int = 0):
    """Initial float32 params and grad_fn(step, i, p) -> float32 grad or None (param 1 at step 3)."""
    rng = np.random.default_rng(seed)
    inits = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
    grads = [[rng.normal(size=s).astype(np.float32) * (rng.random(s) > 0.2) for s in SHAPES]
             for _ in range(STEPS)]                                   # ~20% exact zeros
    scale = [rng.uniform(0.5, 2.0, size=s).astype(np.float32) for s in SHAPES]
    target = [rng.normal(size=s).astype(np.float32) for s in SHAPES]

    def grad_fn(step, i, p):
        if (step, i) == (3, 1):
            return None
        return grads[step][i] if kind == "random" else scale[i] * (p - target[i])

    return inits, grad_fn


def params_of(inits):
    return [Tensor(a.copy(), requires_grad=True) for a in inits]


def run_minibnn(opt, params, grad_fn, steps, start=0):
    trajectory = []
    for step in range(start, start + steps):
        for i, p in enumerate(params):
            p.grad = grad_fn(step, i, p.data)
        opt.step()
        trajectory.append([p.data.copy() for p in params])
    return trajectory


def run_torch(torch, name, kwargs, inits, grad_fn, groups=None):
    params = [torch.tensor(a.copy(), requires_grad=True) for a in inits]
    spec = params if groups is None else [{**g, "params": [params[i]]} for i, g in enumerate(groups)]
    opt = getattr(torch.optim, name)(spec, **kwargs)
    trajectory = []
    for step in range(STEPS):
        for i, p in enumerate(params):
            g = grad_fn(step, i, p.detach().numpy())
            p.grad = None if g is None else torch.from_numpy(g.copy())
        opt.step()
        trajectory.append([p.detach().numpy().copy() for p in params])
    return trajectory, opt, params


def assert_trajectories_close(ours, theirs):
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for x, y in zip(a, b):
            assert x.dtype == np.float32
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=f"step {step}")


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["random", "quadratic"])
@pytest.mark.parametrize("name, kwargs", CASES)
def test_trajectory_matches_torch(name, kwargs, kind):
    torch = pytest.importorskip("torch")
    inits, grad_fn = make_problem(kind)
    params = params_of(inits)
    opt = OURS[name](params, **kwargs)
    ours = run_minibnn(opt, params, grad_fn, STEPS)
    theirs, topt, tparams = run_torch(torch, name, kwargs, inits, grad_fn)
    assert_trajectories_close(ours, theirs)
    for p, tp in zip(params, tparams):                                 # buffers match too
        for key, value in opt.state.get(p, {}).items():
            expected = topt.state[tp][key]
            expected = expected.item() if key == "step" else expected.numpy()
            np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.torch
@pytest.mark.parametrize("name, kwargs", [("SGD", dict(lr=0.1, momentum=0.9)),
                                          ("Adam", dict(lr=0.01, weight_decay=0.01))])
def test_param_groups_with_own_hyperparameters_match_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    inits, grad_fn = make_problem("random", seed=1)
    groups = [{"lr": kwargs["lr"] * 3}, {"weight_decay": 0.5}]          # group 1 keeps the default lr
    params = params_of(inits)
    opt = OURS[name]([{**g, "params": [p]} for g, p in zip(groups, params)], **kwargs)
    ours = run_minibnn(opt, params, grad_fn, STEPS)
    theirs, _, _ = run_torch(torch, name, kwargs, inits, grad_fn, groups)
    assert_trajectories_close(ours, theirs)
    assert opt.param_groups[0]["lr"] == 3 * kwargs["lr"] and opt.param_groups[1]["lr"] == kwargs["lr"]


# ------------------------------------------------------------------------------ closed forms
def test_sgd_step_is_minus_lr_times_grad():
    p = Tensor(np.array([1.0, 2.0, -3.0, 0.0]), requires_grad=True)
    g = np.array([0.5, -1.0, 0.0, 2.0])                               # an exact zero stays put
    p.grad = g
    SGD([p], lr=0.1).step()
    np.testing.assert_array_equal(p.data, np.array([1.0, 2.0, -3.0, 0.0]) - 0.1 * g)


@pytest.mark.parametrize("dampening", [0.0, 0.5])
def test_sgd_momentum_with_constant_gradient_follows_the_geometric_sum(dampening):
    mu, lr, n = 0.9, 0.1, 6
    g = np.array([1.0, -2.0, 0.0])
    p = Tensor(np.zeros(3), requires_grad=True)
    opt = SGD([p], lr=lr, momentum=mu, dampening=dampening)
    for _ in range(n):
        p.grad = g
        opt.step()
    # first buffer = g undamped, then b_t = mu*b_{t-1} + (1-d)*g
    bufs = [mu ** (t - 1) + (1 - dampening) * (1 - mu ** (t - 1)) / (1 - mu) for t in range(1, n + 1)]
    np.testing.assert_allclose(p.data, -lr * sum(bufs) * g, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("cls", [SGD, AdamW])
def test_weight_decay_alone_shrinks_geometrically(cls):
    lr, wd, n = 0.1, 0.5, 4
    p = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    opt = cls([p], lr=lr, weight_decay=wd)
    for _ in range(n):
        p.grad = np.zeros(2)                                          # Adam's part is 0/(0+eps) = 0
        opt.step()
    np.testing.assert_allclose(p.data, np.array([1.0, -2.0]) * (1 - lr * wd) ** n, rtol=1e-12)


def test_adam_first_step_is_minus_lr_times_sign_of_grad():
    p = Tensor(np.array([0.5, 0.5, 0.5, 0.5], dtype=np.float32), requires_grad=True)
    p.grad = np.array([3.0, -1e-3, 0.0, 250.0], dtype=np.float32)
    Adam([p], lr=0.01, eps=1e-12).step()
    np.testing.assert_allclose(p.data, 0.5 - 0.01 * np.array([1, -1, 0, 1]), rtol=1e-6)


def test_adam_bias_correction_makes_every_step_lr_sized_under_a_constant_gradient():
    # m_t = (1 - b1^t) g and v_t = (1 - b2^t) g^2: the corrected ratio is sign(g) at every step
    p = Tensor(np.zeros(3), requires_grad=True)
    opt = Adam([p], lr=0.01, betas=(0.9, 0.999), eps=1e-14)
    for t in range(1, 6):
        p.grad = np.array([2.0, -0.5, 0.0])
        opt.step()
        np.testing.assert_allclose(p.data, -0.01 * t * np.array([1.0, -1.0, 0.0]), rtol=1e-10)
    assert opt.state[p]["step"] == 5


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
                                  lambda ps: Adam(ps, weight_decay=0.1), lambda ps: AdamW(ps)])
def test_step_updates_in_place_keeps_dtype_and_leaves_grad_alone(make):
    p = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    opt = make([p])
    opt.param_groups[0]["lr"] = np.float64(0.05)                     # as a schedule might set it
    data, grad = p.data, np.full((2, 3), 0.5)                          # float64 grad
    p.grad = grad
    for _ in range(2):
        opt.step()
    assert p.data is data and p.data.dtype == np.float32
    assert all(v.dtype == np.float32 for v in opt.state[p].values() if isinstance(v, np.ndarray))
    np.testing.assert_array_equal(grad, 0.5)
    assert not np.array_equal(p.data, 1.0)


def test_params_without_grad_are_skipped_and_adam_counts_steps_per_parameter():
    a, b = Tensor(np.ones(2), requires_grad=True), Tensor(np.ones(3), requires_grad=True)
    opt = Adam([a, b], lr=0.1)
    for step in range(3):
        a.grad, b.grad = np.ones(2), (np.ones(3) if step == 1 else None)
        opt.step()
    np.testing.assert_allclose(b.data, 0.9, rtol=1e-7)                # one step of -lr*sign(g)
    assert opt.state[a]["step"] == 3 and opt.state[b]["step"] == 1
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_add_param_group_fills_in_defaults():
    a, b = Tensor(np.ones(2), requires_grad=True), Tensor(np.ones(2), requires_grad=True)
    opt = SGD([a], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": b, "lr": 0.01})                     # a single tensor is accepted
    assert opt.param_groups[1] == {"params": [b], "lr": 0.01, "momentum": 0.9, "dampening": 0.0,
                                   "nesterov": False, "weight_decay": 0.0}
    a.grad = b.grad = np.ones(2)
    opt.step()
    np.testing.assert_allclose([a.data[0], b.data[0]], [0.9, 0.99], rtol=1e-12)


def test_fits_a_linear_model_through_autograd(rng):
    x = Tensor(rng.normal(size=(64, 3)).astype(np.float32))
    y = x.data @ np.array([[1.0], [-2.0], [0.5]], dtype=np.float32) + 0.3
    model = nn.Linear(3, 1, rng=rng)
    opt = Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    assert loss.item() < 1e-4


# ----------------------------------------------------------------------------- state_dict
RESUMABLE = [lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
             lambda ps: Adam(ps, lr=0.01, weight_decay=1e-2), lambda ps: AdamW(ps, lr=0.01)]


def as_if_from_json(sd):
    """What a JSON + .npz checkpoint gives back: str keys, lists instead of tuples."""
    return {"param_groups": json.loads(json.dumps(sd["param_groups"])),
            "state": {str(k): dict(v) for k, v in sd["state"].items()}}


@pytest.mark.parametrize("make", RESUMABLE)
def test_resumed_optimizer_continues_bit_identically(make):
    inits, grad_fn = make_problem("random")
    params = params_of(inits)
    opt = make([{"params": [params[0]]}, {"params": [params[1]], "lr": 0.03}])
    run_minibnn(opt, params, grad_fn, 4)
    sd = opt.state_dict()
    saved = as_if_from_json(sd)
    snapshot = {k: {n: np.copy(v) for n, v in s.items()} for k, s in sd["state"].items()}

    resumed = params_of([p.data for p in params])                     # weights from the checkpoint
    opt2 = make([{"params": [resumed[0]]}, {"params": [resumed[1]]}])  # lr 0.03 comes from the sd
    opt2.load_state_dict(saved)
    assert opt2.param_groups[1]["lr"] == 0.03
    a = run_minibnn(opt, params, grad_fn, 5, start=4)
    b = run_minibnn(opt2, resumed, grad_fn, 5, start=4)
    for step_a, step_b in zip(a, b):
        for x, y in zip(step_a, step_b):
            np.testing.assert_array_equal(x, y)
    for p, q in zip(params, resumed):
        for key, value in opt.state[p].items():
            np.testing.assert_array_equal(opt2.state[q][key], value)
    assert opt2.state_dict()["param_groups"] == opt.state_dict()["param_groups"]
    for k, s in sd["state"].items():                                  # state_dict() was a snapshot
        for n, v in s.items():
            np.testing.assert_array_equal(v, snapshot[k][n])


def test_state_dict_is_plain_data_indexed_by_position():
    a, b = Tensor(np.ones(2, np.float32), requires_grad=True), Tensor(np.ones(3, np.float32), requires_grad=True)
    opt = Adam([{"params": [a]}, {"params": [b], "lr": 0.5}])
    b.grad = np.ones(3, np.float32)
    opt.step()
    sd = opt.state_dict()
    assert sd["param_groups"] == [
        {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "params": [0]},
        {"lr": 0.5, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "params": [1]}]
    assert list(sd["state"]) == [1] and sd["state"][1]["step"] == 1
    json.dumps(sd["param_groups"])
    opt.load_state_dict(as_if_from_json(sd))
    assert opt.param_groups[0]["betas"] == (0.9, 0.999)


def one_param_opt(cls=Adam, shape=(4,), **kw):
    p = Tensor(np.ones(shape, np.float32), requires_grad=True)
    opt = cls([p], lr=0.1, **kw)
    p.grad = np.ones(shape, np.float32)
    opt.step()
    return opt


@pytest.mark.parametrize("sd_from, target, message", [
    (lambda: one_param_opt().state_dict(),
     lambda: Adam([{"params": [Tensor(np.ones(4), requires_grad=True)]},
                   {"params": [Tensor(np.ones(1), requires_grad=True)]}]),
     r"state_dict has 1 param group\(s\), this optimizer has 2"),
    (lambda: one_param_opt().state_dict(),
     lambda: Adam([Tensor(np.ones(4), requires_grad=True), Tensor(np.ones(4), requires_grad=True)]),
     r"param group 0 has 1 parameter\(s\) in the state_dict, 2 in this optimizer"),
    (lambda: one_param_opt().state_dict(),
     lambda: Adam([Tensor(np.ones(3), requires_grad=True)]),
     r"parameter 0: 'exp_avg' has shape \(4,\), the parameter has shape \(3,\).*'exp_avg_sq'"),
    (lambda: one_param_opt(SGD, momentum=0.9).state_dict(),
     lambda: Adam([Tensor(np.ones(4), requires_grad=True)]),
     r"state has \['momentum_buffer'\], Adam expects \['exp_avg', 'exp_avg_sq', 'step'\]"),
    (lambda: {"state": {}}, lambda: Adam([Tensor(np.ones(4), requires_grad=True)]),
     r"lacks \['param_groups'\]"),
])
def test_load_state_dict_mismatch_names_expected_and_found(sd_from, target, message):
    opt = target()
    before = opt.state_dict()
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(sd_from())
    assert opt.state_dict() == before                                  # nothing was half-loaded


# ---------------------------------------------------------------------------- bad inputs
def param(shape=(2,)):
    return Tensor(np.ones(shape), requires_grad=True)


@pytest.mark.parametrize("make, message", [
    (lambda: SGD([param()], lr=-0.1), r"SGD: lr must be >= 0, got -0.1"),
    (lambda: SGD([param()], lr=float("nan")), r"lr must be >= 0, got nan"),
    (lambda: SGD([{"params": [param()], "lr": -1.0}], lr=0.1), r"lr must be >= 0, got -1.0"),
    (lambda: SGD([param()], lr=0.1, momentum=-0.5), r"momentum must be >= 0"),
    (lambda: SGD([param()], lr=0.1, weight_decay=-1e-4), r"weight_decay must be >= 0"),
    (lambda: SGD([param()], lr=0.1, nesterov=True), r"nesterov=True needs momentum > 0 and dampening = 0, got momentum=0.0"),
    (lambda: SGD([param()], lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), r"dampening=0.1"),
    (lambda: Adam([param()], betas=(1.0, 0.999)), r"Adam: betas\[0\] must be in \[0, 1\), got 1.0"),
    (lambda: AdamW([param()], betas=(0.9, -0.1)), r"AdamW: betas\[1\] must be in \[0, 1\), got -0.1"),
    (lambda: Adam([param()], betas=(0.9,)), r"betas must be a pair"),
    (lambda: Adam([param()], eps=-1e-8), r"eps must be >= 0"),
    (lambda: Adam([param()], lr=-1e-3), r"Adam: lr must be >= 0"),
])
def test_bad_hyperparameters_raise_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("params, error, message", [
    (lambda: [Tensor(np.ones(2))], ValueError, r"parameter 0: requires_grad is False"),
    (lambda: [param(), Tensor(np.arange(3))], TypeError, r"parameter 1: only floating-point .* int64"),
    (lambda: [np.ones(2)], TypeError, r"expected a Tensor or Parameter, got ndarray"),
    (lambda: param(), TypeError, r"got a single Tensor; wrap it in a list"),
    (lambda: [], ValueError, r"empty parameter list"),
    (lambda: [param(), param()][:1] * 2, ValueError, r"appears more than once"),
    (lambda: [{"params": {param()}}], TypeError, r"not a set"),
    (lambda: [param() * 2.0], ValueError, r"not a leaf"),
])
def test_bad_params_are_rejected(params, error, message):
    with pytest.raises(error, match=message):
        SGD(params(), lr=0.1)


def test_grad_of_wrong_shape_is_an_error():
    p = param((2, 3))
    opt = SGD([p], lr=0.1)
    p.grad = np.ones(6)
    with pytest.raises(ValueError, match=r"grad has shape \(6,\), the parameter has shape \(2, 3\)"):
        opt.step()
