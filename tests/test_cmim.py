"""CMIM: the test vectors of docs/methods.md §5, gradchecks, torch parity, state objects, the recipe."""

import argparse
import json

import numpy as np
import pytest

from minibnn import Tensor
from minibnn.autograd import gradcheck
from minibnn.methods import cmim
from minibnn.methods import cmim_recipe
from minibnn.models import build_model
from minibnn.checkpoint import load_state
from minibnn.train import TrainConfig, resume_training, run_training


def unit_rows(rng, shape):
    x = rng.normal(size=shape)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def official_setup(rng, b=6, d=8, k=5, n_noise=7, m=40, dtype=np.float64):
    """Raw features, head weights, memories, normalisers and sampled indices of a small batch."""
    labels = np.arange(m) % 4
    idx = rng.choice(m, b, replace=False)
    s = cmim.NegativeSampler(labels, n_noise, rng=1).sample(idx)
    return dict(f_bnn=rng.normal(size=(b, k)), f_fp=rng.normal(size=(b, k + 2)),
                w_bnn=rng.normal(size=(d, k)), w_fp=rng.normal(size=(d, k + 2)),
                mem_bnn=cmim.MemoryBank(m, d, rng=2, dtype=dtype),
                mem_fp=cmim.MemoryBank(m, d, rng=3, dtype=dtype), idx=idx, sample_idx=s)


# ------------------------------------------------------------------ NCE loss (§5 CMIM 2-4)
@pytest.mark.parametrize("n_noise, n_data, expected", [(4096, 50000, 9.322888),
                                                       (16384, 50000, 10.709091),
                                                       (10, 100, 3.351007)])
def test_nce_loss_on_uniform_scores_matches_the_closed_form(n_noise, n_data, expected):
    x = Tensor(np.full((2, n_noise + 1), 1.0 / n_data))                 # float64
    loss = cmim.nce_loss(x, n_noise, n_data).item()
    assert loss == pytest.approx(expected, abs=5e-7)                   # docs/methods.md §5 (eps = 1e-7)
    assert loss == pytest.approx(cmim.nce_uniform_value(n_noise, n_data), rel=1e-11)
    # without eps it is exactly log(N+1) + N log(1 + 1/N); eps adds about M * eps
    no_eps = cmim.nce_loss(x, n_noise, n_data, eps=0.0).item()
    assert no_eps == pytest.approx(np.log(n_noise + 1) + n_noise * np.log1p(1 / n_noise), rel=1e-11)
    assert loss - no_eps == pytest.approx(n_data * 1e-7, rel=1e-2)


def test_nce_loss_is_positive_and_tends_to_m_eps(rng):
    for _ in range(5):
        x = Tensor(rng.uniform(1e-6, 10, size=(4, 33)))
        assert cmim.nce_loss(x, 32, 500).item() > 0
    x = np.full((3, 101), 1e-12)
    x[:, 0] = 1e12                                                      # positive -> inf, negatives -> 0
    assert cmim.nce_loss(Tensor(x), 100, 50000).item() == pytest.approx(50000 * 1e-7, rel=1e-3)


def test_normaliser_is_fixed_at_the_first_call(rng):
    m, e, memory = 1000, Tensor(unit_rows(rng, (8, 16))), unit_rows(rng, (1000, 16))
    index = rng.integers(0, m, size=(8, 65))
    z = cmim.Normaliser(m)
    x = cmim.contrast_probabilities(e, memory, index, z, tau=0.1)
    assert x.data.mean() == pytest.approx(1 / m, rel=1e-13)
    first = z.value
    cmim.contrast_probabilities(Tensor(unit_rows(rng, (8, 16))), memory, index, z, tau=0.1)
    assert z.value == first                                             # never updated again
    back = cmim.Normaliser(m)
    back.load_state_dict(json.loads(json.dumps(z.state_dict())))
    assert back.value == first


def test_nce_loss_rejects_a_wrong_number_of_columns():
    with pytest.raises(ValueError, match=r"\(B, 11\)"):
        cmim.nce_loss(Tensor(np.ones((2, 5))), 10, 100)


# --------------------------------------------------------------------- memory bank (§5 1, 5)
def test_memory_init_is_seeded_uniform_with_unit_expected_row_norm():
    a, b = cmim.MemoryBank(200, 128, rng=0), cmim.MemoryBank(200, 128, rng=0)
    np.testing.assert_array_equal(a.weight, b.weight)
    s = 1 / np.sqrt(128 / 3)
    assert np.abs(a.weight).max() <= s and a.weight.dtype == np.float32
    assert np.linalg.norm(a.weight, axis=1).mean() == pytest.approx(1.0, abs=0.02)


def test_memory_update_touches_only_the_batch_rows(rng):
    bank = cmim.MemoryBank(50, 8, rng=1, dtype=np.float64)
    before = bank.weight.copy()
    idx, new = np.array([3, 17, 40]), unit_rows(rng, (3, 8))
    bank.update(idx, new, momentum=0.5)
    expected = 0.5 * before[idx] + 0.5 * new
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(bank.weight[idx], expected, rtol=0, atol=1e-15)
    others = np.setdiff1d(np.arange(50), idx)
    np.testing.assert_array_equal(bank.weight[others], before[others])  # bit-identical


def test_memory_state_dict_round_trip_and_bad_indices(rng):
    bank = cmim.MemoryBank(10, 4, rng=0)
    other = cmim.MemoryBank(10, 4, rng=1)
    other.load_state_dict(bank.state_dict())
    np.testing.assert_array_equal(other.weight, bank.weight)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        bank.gather([0, 10])
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        bank.update([-1], np.ones((1, 4)), 0.5)
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        bank.update([1, 2], np.ones((2, 5)), 0.5)
    with pytest.raises(ValueError, match="duplicate"):
        bank.update([1, 1], np.ones((2, 4)), 0.5)
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict({"weight": np.zeros((9, 4))})


# ------------------------------------------------------------------------ negative sampler
def test_negative_sampler_never_returns_the_anchor_class_and_is_seeded():
    labels = np.repeat(np.arange(5), [30, 12, 25, 20, 13])
    sampler = cmim.NegativeSampler(labels, 60, rng=7)
    idx = np.array([0, 31, 45, 70, 99, 7])
    s = sampler.sample(idx)
    assert s.shape == (6, 61)
    np.testing.assert_array_equal(s[:, 0], idx)
    for row, i in zip(s, idx):
        assert not np.any(labels[row[1:]] == labels[i])                # other classes only
        assert len(np.unique(row[1:])) == 60                            # without replacement
    again = cmim.NegativeSampler(labels, 60, rng=7).sample(idx)
    np.testing.assert_array_equal(s, again)
    state = sampler.state_dict()
    nxt = sampler.sample(idx)
    sampler.load_state_dict(json.loads(json.dumps(state)))              # survives a checkpoint
    np.testing.assert_array_equal(sampler.sample(idx), nxt)


def test_negative_sampler_errors():
    labels = np.repeat(np.arange(3), [10, 5, 5])                       # the largest class: 10
    assert cmim.NegativeSampler.max_negatives(labels) == 10
    with pytest.raises(ValueError, match="11 negatives requested.*holds 10"):
        cmim.NegativeSampler(labels, 11)
    sampler = cmim.NegativeSampler(labels, 10)
    with pytest.raises(ValueError, match=r"\[0, 20\)"):
        sampler.sample([3, 20])


# ----------------------------------------------------------------- scores and official loss
@pytest.mark.parametrize("method", ["dense", "gather", "auto"])
def test_memory_scores_equal_the_gather_oracle_and_pass_gradcheck(method, rng):
    memory = rng.normal(size=(30, 5))
    index = rng.integers(0, 30, size=(4, 9))
    index[0, 2] = index[0, 1]                                           # repeated rows add up
    e = Tensor(rng.normal(size=(4, 5)), requires_grad=True)
    got = cmim.memory_scores(e, memory, index, method=method)
    np.testing.assert_allclose(got.data, cmim.memory_scores_reference(e.data, memory, index),
                               rtol=1e-12, atol=1e-12)
    gradcheck(lambda t: cmim.memory_scores(t, memory, index, method=method), e)


def _official(p, swap=False, update=False):
    e_bnn = cmim.embed(p["fb"], Tensor(p["w_bnn"]))
    e_fp = cmim.embed(p["ff"], Tensor(p["w_fp"]))
    z = [cmim.Normaliser(p["mem_bnn"].shape[0]) for _ in range(2)]
    if swap:
        return cmim.official_loss(e_fp, e_bnn, p["idx"], p["sample_idx"], p["mem_fp"],
                                  p["mem_bnn"], z[1], z[0], update=update)
    return cmim.official_loss(e_bnn, e_fp, p["idx"], p["sample_idx"], p["mem_bnn"], p["mem_fp"],
                              z[0], z[1], update=update)


def test_swapping_the_two_sides_swaps_the_terms_and_keeps_the_total(rng):
    p = official_setup(rng)
    p["fb"], p["ff"] = Tensor(p["f_bnn"], requires_grad=True), Tensor(p["f_fp"], requires_grad=True)
    terms = _official(p)
    swapped = _official(p, swap=True)
    assert swapped.bnn_anchor.item() == pytest.approx(terms.fp_anchor.item(), rel=1e-14)
    assert swapped.fp_anchor.item() == pytest.approx(terms.bnn_anchor.item(), rel=1e-14)
    assert (swapped.bnn_anchor + swapped.fp_anchor).item() == pytest.approx(
        (terms.bnn_anchor + terms.fp_anchor).item(), rel=1e-14)


def test_bnn_features_get_gradient_only_through_the_bnn_anchored_term(rng):
    p = official_setup(rng)
    mem_before = p["mem_bnn"].weight.copy(), p["mem_fp"].weight.copy()
    p["fb"], p["ff"] = Tensor(p["f_bnn"], requires_grad=True), Tensor(p["f_fp"], requires_grad=True)
    _official(p).fp_anchor.backward()
    assert p["fb"].grad is None and np.abs(p["ff"].grad).sum() > 0
    p["fb"], p["ff"] = Tensor(p["f_bnn"], requires_grad=True), Tensor(p["f_fp"], requires_grad=True)
    _official(p).bnn_anchor.backward()
    assert p["ff"].grad is None and np.abs(p["fb"].grad).sum() > 0
    np.testing.assert_array_equal(p["mem_bnn"].weight, mem_before[0])  # memories: no gradient,
    np.testing.assert_array_equal(p["mem_fp"].weight, mem_before[1])   # unchanged without update


def test_official_loss_updates_both_memories_after_scoring(rng):
    p = official_setup(rng)
    p["fb"], p["ff"] = Tensor(p["f_bnn"]), Tensor(p["f_fp"])
    before = p["mem_bnn"].weight.copy()
    frozen = _official(p)                                               # update=False: scores only
    updated = _official(p, update=True)
    assert updated.bnn_anchor.item() == frozen.bnn_anchor.item()        # scored before the update
    e_bnn = cmim.embed(p["fb"], Tensor(p["w_bnn"])).data
    expected = 0.5 * before[p["idx"]] + 0.5 * e_bnn
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(p["mem_bnn"].weight[p["idx"]], expected, atol=1e-15)


def test_official_loss_gradcheck_through_the_heads(rng):
    p = official_setup(rng, b=3, k=4, n_noise=5, m=20)
    z = [cmim.Normaliser(20) for _ in range(2)]

    def total(fb, ff, wb):
        e_bnn, e_fp = cmim.embed(fb, wb), cmim.embed(ff, Tensor(p["w_fp"]))
        t = cmim.official_loss(e_bnn, e_fp, p["idx"], p["sample_idx"], p["mem_bnn"], p["mem_fp"],
                               z[0], z[1], tau=0.5, update=False)
        return t.bnn_anchor + t.fp_anchor

    args = [Tensor(p[k], requires_grad=True) for k in ("f_bnn", "f_fp", "w_bnn")]
    gradcheck(total, *args)


def test_nce_loss_gradcheck(rng):
    x = Tensor(rng.uniform(0.01, 2.0, size=(3, 6)), requires_grad=True)
    gradcheck(lambda t: cmim.nce_loss(t, 5, 40), x)


def test_official_loss_rejects_mismatched_inputs(rng):
    p = official_setup(rng)
    e = Tensor(unit_rows(rng, (6, 8)))
    args = (p["idx"], p["sample_idx"], p["mem_bnn"], p["mem_fp"], cmim.Normaliser(40),
            cmim.Normaliser(40))
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        cmim.official_loss(e, Tensor(unit_rows(rng, (5, 8))), *args)      # batch sizes differ
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        cmim.official_loss(Tensor(unit_rows(rng, (6, 7))), Tensor(unit_rows(rng, (6, 7))), *args)
    with pytest.raises(ValueError, match="sample_idx"):
        cmim.official_loss(e, e, p["idx"], p["sample_idx"][:4], *args[2:])
    bad = p["sample_idx"].copy()
    bad[0, 3] = 40                                                      # out of the memory's range
    with pytest.raises(ValueError, match=r"\[0, 40\)"):
        cmim.official_loss(e, e, p["idx"], bad, *args[2:])


# ----------------------------------------------------------------------- InfoNCE (§5 8)
def test_info_nce_with_equal_logits_is_log_of_the_number_of_candidates():
    k, d = 65536, 4                                                     # MoCo's queue
    anchor = Tensor(np.zeros((2, d)))                                   # every logit 0
    queue = np.tile(np.eye(d)[:1], (k, 1))
    moco = cmim.info_nce(anchor, Tensor(np.ones((2, d))), queue, tau=0.2, in_batch=False)
    assert moco.item() == pytest.approx(np.log(1 + k), rel=1e-13)
    assert moco.item() == pytest.approx(11.090370, abs=5e-7)
    batch = cmim.info_nce(Tensor(np.zeros((16, d))), Tensor(np.ones((16, d))))
    assert batch.item() == pytest.approx(np.log(16), rel=1e-13)        # 1 positive + 15 in-batch


@pytest.mark.parametrize("with_queue, in_batch", [(False, True), (True, True), (True, False)])
def test_info_nce_gradcheck(with_queue, in_batch, rng):
    queue = unit_rows(rng, (7, 5)) if with_queue else None
    a = Tensor(rng.normal(size=(4, 5)), requires_grad=True)
    p = Tensor(rng.normal(size=(4, 5)), requires_grad=True)
    gradcheck(lambda x, y: cmim.info_nce(x, y, queue, tau=0.3, in_batch=in_batch), a, p)


def test_info_nce_and_paper_loss_bad_input(rng):
    with pytest.raises(ValueError, match="anchor and positives"):
        cmim.info_nce(Tensor(np.ones((4, 5))), Tensor(np.ones((3, 5))))
    with pytest.raises(ValueError, match=r"\(K, 5\)"):
        cmim.info_nce(Tensor(np.ones((4, 5))), Tensor(np.ones((4, 5))), np.ones((3, 4)))
    with pytest.raises(ValueError, match="no negatives"):
        cmim.info_nce(Tensor(np.ones((4, 5))), Tensor(np.ones((4, 5))), in_batch=False)
    with pytest.raises(ValueError, match="as many"):
        cmim.paper_loss([Tensor(np.ones((4, 5)))], [])


def test_paper_loss_enqueues_the_latent_side(rng):
    queues = [cmim.FeatureQueue(6, 3, rng=0, dtype=np.float64)]
    zb, zr = Tensor(unit_rows(rng, (4, 3))), Tensor(unit_rows(rng, (4, 3)))
    before = queues[0].rows.copy()
    (loss,) = cmim.paper_loss([zb], [zr], 0.1, queues)
    assert loss.item() == pytest.approx(cmim.info_nce(zb, zr, before, 0.1).item(), rel=1e-14)
    np.testing.assert_array_equal(queues[0].rows[:4], zr.data)
    queues[0].enqueue(zr.data)                                          # wraps around: 4 + 4 > 6
    assert queues[0].ptr == 2
    np.testing.assert_array_equal(queues[0].rows[[4, 5, 0, 1]], zr.data)


# ------------------------------------------------------------------------- torch parity
def test_official_loss_matches_a_torch_transcription(rng):
    torch = pytest.importorskip("torch")
    p = official_setup(rng, b=8, d=16, k=12, n_noise=16, m=200)
    tau, m, n = 0.1, 200, 16
    fb = Tensor(p["f_bnn"], requires_grad=True)
    ff = Tensor(p["f_fp"], requires_grad=True)
    terms = cmim.official_loss(cmim.embed(fb, Tensor(p["w_bnn"])), cmim.embed(ff, Tensor(p["w_fp"])),
                               p["idx"], p["sample_idx"], p["mem_bnn"], p["mem_fp"],
                               cmim.Normaliser(m), cmim.Normaliser(m), tau=tau, update=False)
    (terms.bnn_anchor + terms.fp_anchor).backward()

    def torch_side(f, w, memory):                       # CRD: bmm of gathered rows, exp, /Z, NCE
        e = torch.nn.functional.normalize(f @ torch.tensor(w).T, dim=1)
        rows = torch.tensor(memory)[torch.tensor(p["sample_idx"])]          # (B, N+1, d)
        out = torch.exp(torch.bmm(rows, e.unsqueeze(2)).squeeze(2) / tau)
        out = out / (out.mean().detach() * m)
        c, eps = n / m, 1e-7
        log_pos = torch.log(out[:, 0] / (out[:, 0] + c + eps))
        log_neg = torch.log(c / (out[:, 1:] + c + eps))
        return -(log_pos.sum() + log_neg.sum()) / out.shape[0]

    tb = torch.tensor(p["f_bnn"], requires_grad=True)
    tf = torch.tensor(p["f_fp"], requires_grad=True)
    t_bnn = torch_side(tb, p["w_bnn"], p["mem_fp"].weight)
    t_fp = torch_side(tf, p["w_fp"], p["mem_bnn"].weight)
    (t_bnn + t_fp).backward()
    assert terms.bnn_anchor.item() == pytest.approx(t_bnn.item(), rel=1e-12)
    assert terms.fp_anchor.item() == pytest.approx(t_fp.item(), rel=1e-12)
    np.testing.assert_allclose(fb.grad, tb.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ff.grad, tf.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_info_nce_matches_torch_cross_entropy(rng):
    torch = pytest.importorskip("torch")
    a, pos, queue = rng.normal(size=(6, 4)), rng.normal(size=(6, 4)), rng.normal(size=(9, 4))
    ta, tp = torch.tensor(a, requires_grad=True), torch.tensor(pos, requires_grad=True)
    logits = torch.cat([ta @ tp.T, ta @ torch.tensor(queue).T], dim=1) / 0.2
    ref = torch.nn.functional.cross_entropy(logits, torch.arange(6))
    ref.backward()
    ma, mp = Tensor(a, requires_grad=True), Tensor(pos, requires_grad=True)
    got = cmim.info_nce(ma, mp, queue, tau=0.2)
    got.backward()
    assert got.item() == pytest.approx(ref.item(), rel=1e-13)
    np.testing.assert_allclose(ma.grad, ta.grad.numpy(), rtol=1e-11)
    np.testing.assert_allclose(mp.grad, tp.grad.numpy(), rtol=1e-11)


# ------------------------------------------------------------------------------ recipe
def test_record_binary_inputs_records_pre_sign_and_sign_and_restores(rng):
    model = build_model("cnn", width=0.25, input_quantizer="ede", weight_quantizer="irnet", rng=0)
    layers = cmim_recipe._pick_layers(model, "-3,-2,-1")
    originals = [layer.input_quantizer for layer in layers]
    x = Tensor(rng.normal(size=(2, 1, 28, 28)).astype(np.float32))
    with cmim_recipe.record_binary_inputs(layers) as recorders:
        logits = model(x)
    assert [layer.input_quantizer for layer in layers] == originals
    np.testing.assert_array_equal(logits.data, model(x).data)          # recording changes nothing
    for rec in recorders:
        (a, ab), = rec.records
        np.testing.assert_array_equal(ab.data, np.where(a.data >= 0, 1, -1))


def tiny(tmp_path, **overrides):
    values = dict(model="cnn", dataset="synthetic", width=0.25, epochs=2, batch_size=64,
                  limit_train=192, lr=5e-3, seed=3, input_quantizer="ede",
                  weight_quantizer="irnet", method="cmim")
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmim") / "teacher"
    run_training(TrainConfig(model="cnn", dataset="synthetic", width=0.25, epochs=1,
                             batch_size=64, limit_train=192, real=True, seed=0), out, quiet=True)
    return str(out)


@pytest.mark.parametrize("form", ["official", "paper"])
def test_training_logs_each_term_and_resumes_bit_exactly(form, teacher, tmp_path):
    options = {"form": form, "negatives": 50, "queue": 32 if form == "paper" else 0}
    config = tiny(tmp_path, method_options=options, teacher=teacher if form == "official" else None)
    full = run_training(config, tmp_path / "full", quiet=True)
    run_training(config, tmp_path / "part", quiet=True, stop_after=1)
    resumed = resume_training(tmp_path / "part", quiet=True)
    keys = {"official": ["train_ce", "train_cmim_bnn_anchor", "train_cmim_fp_anchor"],
            "paper": ["train_ce", "train_infonce", "train_infonce_1", "train_infonce_3"]}[form]
    assert all(k in full.final for k in keys)
    for key in keys + ["train_loss", "val_accuracy"]:
        assert resumed.final[key] == full.final[key]
    a, b = load_state(tmp_path / "full" / "last.npz"), load_state(tmp_path / "part" / "last.npz")
    for name, w in a["model"].items():
        np.testing.assert_array_equal(w, b["model"][name])
    if form == "official":
        for key in ("memory_bnn", "memory_fp"):
            np.testing.assert_array_equal(a["method"][key]["weight"], b["method"][key]["weight"])
        assert a["method"]["sampler"] == b["method"]["sampler"]
    else:
        np.testing.assert_array_equal(a["method"]["queues"][0]["rows"], b["method"]["queues"][0]["rows"])


def test_official_heads_stay_frozen_by_default_and_train_on_request(teacher, tmp_path):
    from minibnn.train.runner import build_run

    run = build_run(tiny(tmp_path, method_options={"negatives": 20}, teacher=teacher))
    assert run.loss.parameters() == [] and run.loss.n_negatives == 20
    w = run.loss.head_bnn.linear.weight.data.copy()
    out = run.loss(run.model, next(iter(run.train_loader)))
    out.loss.backward()
    assert run.loss.head_bnn.linear.weight.grad is None
    np.testing.assert_array_equal(run.loss.head_bnn.linear.weight.data, w)
    trained = build_run(tiny(tmp_path, method_options={"negatives": 20, "train_heads": True},
                             teacher=teacher))
    assert len(trained.loss.parameters()) == 4
    # the default number of negatives is 4096 capped by the data (192 samples here)
    capped = build_run(tiny(tmp_path, teacher=teacher))
    assert capped.loss.n_negatives == cmim.NegativeSampler.max_negatives(capped.loss.sampler.labels)


def test_cached_teacher_features_equal_a_forward(teacher, tmp_path):
    from minibnn import no_grad
    from minibnn.train.runner import build_run

    run = build_run(tiny(tmp_path, method_options={"negatives": 20}, teacher=teacher))
    assert run.loss.cache_teacher
    x, _, idx = next(iter(run.train_loader))
    cached = run.loss.teacher_features(x, idx)
    with no_grad():
        direct = run.loss.teacher.forward_all(Tensor(x)).embedding.data
    np.testing.assert_allclose(cached, direct, rtol=1e-5, atol=1e-5)


def test_recipe_errors(teacher, tmp_path):
    from minibnn.train.runner import build_run

    with pytest.raises(ValueError, match="needs --teacher"):
        build_run(tiny(tmp_path))
    with pytest.raises(ValueError, match="uses no teacher"):
        build_run(tiny(tmp_path, method_options={"form": "paper"}, teacher=teacher))
    with pytest.raises(ValueError, match="negatives requested"):
        build_run(tiny(tmp_path, method_options={"negatives": 10_000}, teacher=teacher))
    with pytest.raises(ValueError, match="tau must be positive"):
        build_run(tiny(tmp_path, method_options={"tau": 0.0}, teacher=teacher))
    with pytest.raises(ValueError, match="cmim-layers"):
        build_run(tiny(tmp_path, method_options={"form": "paper", "layers": "0,5"}))
    run_training(tiny(tmp_path, method="ce", epochs=1), tmp_path / "bnn", quiet=True)
    with pytest.raises(ValueError, match="is a binary network"):
        build_run(tiny(tmp_path, teacher=str(tmp_path / "bnn")))


def test_cli_options_reach_the_config():
    from minibnn.commands.train import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--method", "cmim", "--cmim-form", "paper", "--cmim-alpha", "1.5",
                              "--cmim-queue", "256", "--no-cmim-train-heads"])
    options = config_from_args(args).method_options
    assert options["form"] == "paper" and options["alpha"] == 1.5 and options["queue"] == 256
    assert options["train_heads"] is False and options["negatives"] is None


def test_bench_runs_at_small_sizes(capsys):
    from minibnn.bench import cmim as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--batch", "8", "--n-data", "200", "--negatives", "30",
                              "--repeats", "1", "--feat-dim", "16"])
    assert bench.run(args) == 0
    out = capsys.readouterr().out
    assert "overhead" in out and "paper" in out and "official, cached teacher" in out
