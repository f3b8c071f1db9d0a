"""LCR-BNN: the test vectors of docs/methods.md §5, scipy and PyTorch oracles, gradchecks, the recipe."""

import numpy as np
import pytest
import scipy.linalg

from minibnn import Tensor, no_grad
from minibnn.autograd import gradcheck
from minibnn.methods import lcr
from minibnn.methods.lcr import (PowerIterationState, gram, lcr_loss, lcr_terms, loss_multiplier,
                                 power_iteration, retention_matrix, spectral_norm_estimate)


def sigma(k: np.ndarray, variant: str = "official") -> np.ndarray:
    return spectral_norm_estimate(Tensor(k), variant).data


def random_features(rng, channels=(3, 4, 5), sizes=(4, 2, 1), n=2, scale=1.0):
    return [Tensor(scale * rng.normal(size=(n, c, s, s)), requires_grad=True)
            for c, s in zip(channels, sizes)]


# ------------------------------------------------------------------- test vectors (§5)
@pytest.mark.parametrize("c, expected", [(4, 1.414214), (64, 2.828427), (256, 4.0)])
def test_official_sigma_of_identity_is_the_fourth_root_of_c(c, expected):
    np.testing.assert_allclose(sigma(np.eye(c)[None]), [expected], atol=1e-6)
    np.testing.assert_allclose(sigma(np.eye(c)[None], "exact"), [1.0], atol=1e-12)


def test_official_sigma_of_a_constant_matrix_is_biased_by_c_to_the_quarter():
    k = 0.3 * np.ones((1, 16, 16))
    np.testing.assert_allclose(sigma(k), [4.381780], atol=1e-6)          # sqrt(c) C^(3/4)
    np.testing.assert_allclose(sigma(k, "exact"), [2.190890], atol=1e-6)  # sqrt(c C)


def test_worked_example():
    f_i = Tensor(np.array([[[[1.0, 0], [0, 1]], [[0, 1], [1, 0]]]]))    # (1, 2, 2, 2)
    f_next = Tensor(np.array([1.0, -1.0, 0.5]).reshape(1, 3, 1, 1))      # (1, 3, 1, 1)
    rm = retention_matrix(f_i, f_next)
    np.testing.assert_allclose(rm.data[0], [[0.5, -0.5, 0.25], [0.5, -0.5, 0.25]])
    k = gram(rm)
    np.testing.assert_allclose(k.data[0], 0.5625 * np.ones((2, 2)))
    np.testing.assert_allclose(spectral_norm_estimate(k).data, [1.2613447], atol=1e-7)


def test_closed_form_full_loss():
    channels, sizes = [2, 4, 8, 16], [8, 4, 2, 1]
    ones = [Tensor(np.ones((1, c, s, s))) for c, s in zip(channels, sizes)]
    twos = [Tensor(2 * np.ones((1, c, s, s))) for c, s in zip(channels, sizes)]
    terms = lcr_terms(ones, twos)
    # each pair: 9 * C_{i+1} * C_i^(3/2), weighted 1/8, 1/4, 1/2
    expected = [9 * c2 * c1 ** 1.5 for c1, c2 in zip(channels, channels[1:])]
    np.testing.assert_allclose([t.item() for t in terms.pair_losses], expected, rtol=1e-12)
    assert terms.weights == [0.125, 0.25, 0.5]
    np.testing.assert_allclose(terms.loss.item(), 1785.902, atol=1e-3)
    np.testing.assert_allclose(terms.loss.item(), 12.728 / 1 + 144 + 1629.174, atol=2e-3)


@pytest.mark.parametrize("variant", ["official", "exact"])
def test_identical_features_give_exactly_zero_loss_and_zero_gradient(variant, rng):
    feats = random_features(rng, channels=(4, 6, 8, 8), sizes=(8, 4, 2, 2), n=3)
    gammas = Tensor(np.ones(4), requires_grad=True)
    loss = lcr_loss(feats, [Tensor(f.data.copy()) for f in feats], variant, gammas=gammas)
    assert loss.item() == 0.0
    loss.backward()
    for t in feats + [gammas]:
        np.testing.assert_array_equal(t.grad, np.zeros_like(t.data))


@pytest.mark.parametrize("variant", ["official", "exact"])
def test_gamma_scales_the_pair_estimates_by_the_product_of_its_two_gammas(variant, rng):
    feats = random_features(rng, channels=(3, 4, 5, 6), sizes=(4, 4, 2, 1), n=2)
    reference = [Tensor(f.data * 0.5) for f in feats]
    gammas = np.array([2.0, -0.5, 3.0, 1.5])
    plain = lcr_terms(feats, reference, variant)
    scaled = lcr_terms(feats, reference, variant, gammas=Tensor(gammas))
    for i in range(3):
        np.testing.assert_allclose(scaled.sigma_binary[i].data,
                                   abs(gammas[i] * gammas[i + 1]) * plain.sigma_binary[i].data,
                                   rtol=1e-9)
        np.testing.assert_array_equal(scaled.sigma_real[i].data, plain.sigma_real[i].data)


@pytest.mark.parametrize("variant", ["official", "exact"])
def test_estimates_ignore_channel_order_and_batch_order(variant, rng):
    f_i, f_next = rng.normal(size=(3, 6, 4, 4)), rng.normal(size=(3, 5, 2, 2))
    base = spectral_norm_estimate(gram(retention_matrix(Tensor(f_i), Tensor(f_next))), variant).data
    p_i, p_next, p_batch = rng.permutation(6), rng.permutation(5), rng.permutation(3)
    moved = spectral_norm_estimate(gram(retention_matrix(
        Tensor(f_i[p_batch][:, p_i]), Tensor(f_next[p_batch][:, p_next]))), variant).data
    np.testing.assert_allclose(moved, base[p_batch], rtol=1e-9)


def test_retention_matrix_pools_only_when_the_first_stage_is_larger(rng):
    f_i, f_next = rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 5, 2, 2))
    pooled = f_i.reshape(2, 3, 2, 2, 2, 2).mean(axis=(3, 5))               # exact 2x2 means
    x, y = pooled.reshape(2, 3, 4), f_next.reshape(2, 5, 4)
    rm = retention_matrix(Tensor(f_i), Tensor(f_next))
    assert rm.shape == (2, 3, 5)
    np.testing.assert_allclose(rm.data, x @ y.transpose(0, 2, 1) / 4, rtol=1e-12)
    same = retention_matrix(Tensor(f_next[:, :3]), Tensor(f_next))          # equal sizes: no pooling
    np.testing.assert_allclose(same.data, f_next[:, :3].reshape(2, 3, 4) @ y.transpose(0, 2, 1) / 4)
    flat = retention_matrix(Tensor(rng.normal(size=(2, 7))), Tensor(rng.normal(size=(2, 4))))
    assert flat.shape == (2, 7, 4)                                          # MLP features: 1x1 maps


# ---------------------------------------------------------------- the power iteration
@pytest.mark.parametrize("shape", [((2, 5, 4, 4), (2, 7, 2, 2)), ((3, 8, 2, 2), (3, 3, 1, 1)),
                                   ((1, 16, 6, 6), (1, 16, 3, 3))])
def test_exact_variant_equals_scipy_top_singular_value(shape, rng):
    f_i, f_next = rng.normal(size=shape[0]), rng.normal(size=shape[1])
    rm = retention_matrix(Tensor(f_i), Tensor(f_next))
    got = spectral_norm_estimate(gram(rm), "exact").data
    want = [scipy.linalg.svdvals(m)[0] for m in rm.data]
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_power_iteration_stops_at_tolerance_and_survives_a_zero_matrix(rng):
    a = rng.normal(size=(2, 6, 6))
    k = np.concatenate([a @ a.transpose(0, 2, 1), np.zeros((1, 6, 6))])   # (3, 6, 6)
    v, steps = power_iteration(k, np.ones(6) / np.sqrt(6), max_steps=5000, tol=1e-12)
    assert steps < 5000
    np.testing.assert_array_equal(v[2], np.ones(6) / np.sqrt(6))            # K v = 0: kept
    top = np.linalg.eigh(k[:2])[1][:, :, -1]
    np.testing.assert_allclose(np.abs(np.sum(v[:2] * top, axis=1)), 1.0, atol=1e-10)
    assert np.isfinite(spectral_norm_estimate(Tensor(k), "exact").data).all()


def test_persistent_state_warm_starts_and_round_trips(rng):
    a = rng.normal(size=(4, 6, 6))
    k = Tensor(a @ a.transpose(0, 2, 1))
    state = PowerIterationState()
    spectral_norm_estimate(k, "exact", state=state, key="binary.0")
    cold = power_iteration(k.data, lcr._exact_start(6, np.float64), 10000, 1e-12)[1]
    warm = power_iteration(k.data, state.start("binary.0", 6, np.float64), 10000, 1e-12)[1]
    assert warm < cold
    copy = PowerIterationState()
    copy.load_state_dict(state.state_dict())
    np.testing.assert_array_equal(copy.vectors["binary.0"], state.vectors["binary.0"])
    one_step = spectral_norm_estimate(k, "exact", max_steps=1, state=state, key="binary.0").data
    exact = spectral_norm_estimate(k, "exact").data
    assert np.all(one_step <= exact * (1 + 1e-12))                         # a lower bound


# ------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("variant", ["official", "exact"])
def test_loss_gradcheck_float64_through_the_power_iteration(variant, rng):
    binary = random_features(rng, channels=(3, 4, 5), sizes=(4, 2, 1), n=2)
    real = [Tensor(rng.normal(size=f.shape)) for f in binary]
    gammas = Tensor(np.array([1.2, 0.8, -1.1]), requires_grad=True)
    gradcheck(lambda g, *fs: lcr_loss(list(fs), real, variant, gammas=g), gammas, *binary,
              atol=1e-6, rtol=1e-5)


def test_exact_gradient_is_u_v_transpose(rng):
    rm = Tensor(rng.normal(size=(1, 4, 6)), requires_grad=True)
    spectral_norm_estimate(gram(rm), "exact").sum().backward()
    u, s, vt = np.linalg.svd(rm.data[0])
    np.testing.assert_allclose(rm.grad[0], np.outer(u[:, 0], vt[0]), atol=1e-9)


def test_official_variant_matches_a_torch_transcription_value_and_gradient(rng):
    torch = pytest.importorskip("torch")

    def torch_lcr(feats_b, feats_f, gamma):                 # the formulas of docs/methods.md §2.1
        feats_b = [f * gamma[i] for i, f in enumerate(feats_b)]
        total, n = 0.0, len(feats_b)
        for i in range(n - 1):
            sig = []
            for f1, f2 in ((feats_b[i], feats_b[i + 1]), (feats_f[i], feats_f[i + 1])):
                if f1.shape[2] > f2.shape[2]:
                    f1 = torch.nn.functional.adaptive_avg_pool2d(f1, f2.shape[2:])
                x, y = f1.flatten(2), f2.flatten(2)
                rm = torch.bmm(x, y.transpose(1, 2)) / x.shape[2]
                k = torch.bmm(rm, rm.transpose(1, 2))
                m = torch.bmm(k, torch.ones(k.shape[0], k.shape[1], 1, dtype=k.dtype))
                nrm = m.norm(dim=1, keepdim=True)
                v = m / nrm
                sig.append(torch.sqrt(nrm / v.norm(dim=1, keepdim=True)).flatten())
            total = total + 2.0 ** -(n - 1 - i) * torch.nn.functional.mse_loss(sig[0], sig[1])
        return total

    shapes = [(3, 8, 16, 16), (3, 16, 8, 8), (3, 32, 4, 4), (3, 64, 2, 2)]
    fb = [rng.normal(size=s) for s in shapes]
    ff = [np.abs(rng.normal(size=s)) for s in shapes]
    gamma = np.array([1.0, 0.9, 1.1, 1.3])
    ours_b = [Tensor(f, requires_grad=True) for f in fb]
    ours_g = Tensor(gamma, requires_grad=True)
    loss = lcr_loss(ours_b, [Tensor(f) for f in ff], gammas=ours_g)
    loss.backward()
    theirs_b = [torch.tensor(f, requires_grad=True) for f in fb]
    theirs_g = torch.tensor(gamma, requires_grad=True)
    ref = torch_lcr(theirs_b, [torch.tensor(f) for f in ff], theirs_g)
    ref.backward()
    np.testing.assert_allclose(loss.item(), ref.item(), rtol=1e-10)
    np.testing.assert_allclose(ours_g.grad, theirs_g.grad.numpy(), rtol=1e-8)
    for ours, theirs in zip(ours_b, theirs_b):
        np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=1e-7, atol=1e-12)


def test_loss_multiplier_is_alpha_over_batch_times_1e4():
    assert loss_multiplier(8.0, 128) == pytest.approx(6.25e-6, rel=1e-12)
    assert loss_multiplier(8.0, 128, divisor=4.0) == 2.0


# -------------------------------------------------------------------------- bad input
def test_bad_inputs_give_errors_that_name_the_shapes(rng):
    f = [Tensor(rng.normal(size=(2, 3, 4, 4))), Tensor(rng.normal(size=(2, 4, 2, 2)))]
    with pytest.raises(ValueError, match=r"differ in length: 2 stages .* vs 3 stages"):
        lcr_loss(f, f + [Tensor(rng.normal(size=(2, 4, 1, 1)))])
    with pytest.raises(ValueError, match=r"different batch sizes.*\(2, 3, 4, 4\).*\(3, 4, 2, 2\)"):
        lcr_loss([f[0], Tensor(rng.normal(size=(3, 4, 2, 2)))], f)
    with pytest.raises(ValueError, match=r"stage 1 \(2, 4, 8, 8\) is spatially larger than stage 0"):
        lcr_loss([f[0], Tensor(rng.normal(size=(2, 4, 8, 8)))], f)
    with pytest.raises(ValueError, match=r"stage shapes differ: .*\(2, 4, 2, 2\).*\(2, 5, 2, 2\)"):
        lcr_loss(f, [f[0], Tensor(rng.normal(size=(2, 5, 2, 2)))])
    with pytest.raises(ValueError, match=r"at least 2 stage features"):
        lcr_loss(f[:1], f[:1])
    with pytest.raises(ValueError, match=r"gammas must have shape \(2,\)"):
        lcr_loss(f, f, gammas=Tensor(np.ones(3)))
    with pytest.raises(ValueError, match="unknown LCR variant 'svd'"):
        lcr_loss(f, f, variant="svd")
    with pytest.raises(ValueError, match="apply to variant='exact' only"):
        lcr_loss(f, f, state=PowerIterationState())
    with pytest.raises(ValueError, match="spatially larger"):
        retention_matrix(f[1], f[0])


# ---------------------------------------------------------------------------- recipe
from minibnn.methods import lcr_recipe  # noqa: E402
from minibnn.models import build_model  # noqa: E402
from minibnn.checkpoint import load_state  # noqa: E402
from minibnn.train import TrainConfig, read_history, resume_training, run_training  # noqa: E402


def tiny(**overrides):
    values = dict(model="cnn", dataset="synthetic", width=0.25, epochs=2, batch_size=64,
                  lr=5e-3, seed=1, input_quantizer="ede", weight_quantizer="irnet")
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    run_training(TrainConfig(model="cnn", dataset="synthetic", width=0.25, epochs=1,
                             batch_size=64, real=True, seed=0), out, quiet=True)
    return out


@pytest.fixture(scope="module")
def lcr_run(teacher_dir, tmp_path_factory):
    config = tiny(method="lcr", teacher=str(teacher_dir), method_options={"alpha": 2e4})
    return run_training(config, tmp_path_factory.mktemp("lcr"), quiet=True)


def test_recipe_logs_each_term_the_pair_estimates_and_the_gammas(lcr_run):
    history = read_history(lcr_run.out_dir)
    row = history[-1]
    for key in ("train_ce", "train_lcr", "val_ce", "val_lcr", "val_accuracy", "lcr_gamma4",
                "lcr_pair1_sigma_bin", "lcr_pair3_sigma_ref", "lcr_val_pair2_sigma_bin"):
        assert key in row and np.isfinite(row[key]), key
    multiplier = loss_multiplier(2e4, 64)
    assert row["train_loss"] == pytest.approx(row["train_ce"] + multiplier * row["train_lcr"],
                                              rel=1e-5)
    gamma = load_state(lcr_run.out_dir / "last.npz")["method"]["gamma"]
    assert gamma.shape == (4,) and not np.allclose(gamma, 1.0)             # learned, and saved
    np.testing.assert_allclose(gamma, [row[f"lcr_gamma{i}"] for i in range(1, 5)], rtol=1e-6)


def test_recipe_resume_is_bit_exact(lcr_run, teacher_dir, tmp_path):
    config = tiny(method="lcr", teacher=str(teacher_dir), method_options={"alpha": 2e4})
    run_training(config, tmp_path, quiet=True, stop_after=1)
    resume_training(tmp_path, quiet=True)
    full, again = load_state(lcr_run.out_dir / "last.npz"), load_state(tmp_path / "last.npz")
    for name, value in full["model"].items():
        np.testing.assert_array_equal(again["model"][name], value, err_msg=name)
    np.testing.assert_array_equal(again["method"]["gamma"], full["method"]["gamma"])


def _recipe(teacher_dir, **options):
    config = tiny(method="lcr", teacher=str(teacher_dir), method_options=options)
    model = build_model("cnn", in_channels=1, image_size=16, num_classes=4, width=0.25,
                        input_quantizer="ede", weight_quantizer="irnet", rng=0)
    return lcr_recipe.make_recipe(config, model, None), model


def test_recipe_runs_the_student_and_the_teacher_once_per_step(teacher_dir, rng):
    recipe, model = _recipe(teacher_dir)
    calls = {"student": 0, "teacher": 0}
    for name, net in (("student", model), ("teacher", recipe.teacher)):
        original = net._stages

        def counting(x, original=original, name=name):
            calls[name] += 1
            return original(x)
        net._stages = counting
    x = rng.normal(size=(8, 1, 16, 16)).astype(np.float32)
    out = recipe(model, (x, rng.integers(0, 4, 8), np.arange(8)))
    out.loss.backward()
    assert calls == {"student": 1, "teacher": 1}
    assert recipe.gamma.grad is not None and model.classifier.weight.grad is not None


def test_latent_reference_is_the_real_twin_with_the_same_weights(rng):
    model = build_model("cnn", in_channels=1, image_size=16, num_classes=4, width=0.25,
                        input_quantizer="ede", weight_quantizer="irnet", rng=0)
    twin = build_model("cnn", binary=False, activation="hardtanh", in_channels=1, image_size=16,
                       num_classes=4, width=0.25, rng=1)
    twin.load_state_dict(model.state_dict())
    model.eval()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    quantizers = [(l.input_quantizer, l.weight_quantizer)
                  for _, l in lcr_recipe.binary_nn.binary_layers(model)]
    x = rng.normal(size=(6, 1, 16, 16)).astype(np.float32)
    latent = lcr_recipe.latent_features(model, x)
    with no_grad():
        expected = twin.train().forward_features(Tensor(x))
    for a, b in zip(latent, expected):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-5, atol=1e-6)
    after = model.state_dict()
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)      # running stats kept
    assert not model.training                                               # mode restored
    assert quantizers == [(l.input_quantizer, l.weight_quantizer)
                          for _, l in lcr_recipe.binary_nn.binary_layers(model)]


def test_latent_reference_trains_without_a_teacher(tmp_path):
    result = run_training(tiny(epochs=1, limit_train=128, method="lcr",
                               method_options={"reference": "latent", "variant": "exact",
                                               "persistent": True, "max_steps": 3}),
                          tmp_path, quiet=True)
    assert np.isfinite(result.final["train_lcr"])
    assert set(load_state(tmp_path / "last.npz")["method"]["power_iteration"]) == {
        f"{side}.{i}" for side in ("binary", "real") for i in range(3)}


def test_teacher_problems_give_clear_errors(teacher_dir, tmp_path):
    with pytest.raises(ValueError, match="needs --teacher CKPT"):
        lcr_recipe.make_recipe(tiny(method="lcr"), build_model(
            "cnn", image_size=16, num_classes=4, width=0.25, input_quantizer="ede",
            weight_quantizer="irnet", rng=0), None)
    with pytest.raises(ValueError, match=r"teacher's stage shapes \[\(2, 8, 8, 8\).*do not match "
                                         r"the student's \[\(2, 16, 8, 8\)"):
        run_training(tiny(width=0.5, method="lcr", teacher=str(teacher_dir)), tmp_path, quiet=True)
    with pytest.raises(ValueError, match="apply to --lcr-variant exact only"):
        _recipe(teacher_dir, persistent=True)
    with pytest.raises(ValueError, match="unknown LCR options"):
        _recipe(teacher_dir, alhpa=3)


def test_cli_options_reach_the_config():
    from minibnn.cli import build_parser
    from minibnn.commands.train import config_from_args

    args = build_parser().parse_args(["train", "--method", "lcr", "--teacher", "t.npz",
                                      "--lcr-alpha", "3", "--lcr-variant", "exact",
                                      "--lcr-reference", "latent", "--lcr-fixed-gamma"])
    config = config_from_args(args)
    assert config.method_options == {"alpha": 3.0, "variant": "exact", "divisor": None,
                                     "reference": "latent", "teacher_mode": "eval",
                                     "max_steps": None, "persistent": False,
                                     "learn_gamma": False}
