"""minibnn.nn: registration, traversal, state dicts, modes, layers and initialisers."""

import numpy as np
import pytest

from minibnn import Tensor, nn
from minibnn import functional as F


def small_net(seed=0):
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, rng=rng), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 3, rng=rng),
    )


def test_parameters_and_buffers_are_registered_by_dotted_name():
    net = small_net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias", "5.weight", "5.bias"]
    assert [n for n, _ in net.named_buffers()] == ["1.running_mean", "1.running_var"]
    assert net.num_parameters() == 4 * 9 + 4 + 4 + 4 + 64 * 3 + 3


def test_optional_bias_none_is_not_a_parameter():
    layer = nn.Linear(3, 2, bias=False, rng=0)
    assert [n for n, _ in layer.named_parameters()] == ["weight"]
    assert layer.bias is None


def test_shared_parameter_is_listed_once():
    shared = nn.Linear(2, 2, rng=0)
    net = nn.Sequential(shared, shared)
    assert len(list(net.parameters())) == 2


def test_state_dict_round_trip_restores_outputs(rng):
    a, b = small_net(0), small_net(1)
    x = Tensor(rng.normal(size=(2, 1, 8, 8)).astype(np.float32))
    a.train()(x)                                   # move running stats away from their init
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(x).data, b(x).data)


def test_state_dict_is_a_copy():
    net = small_net()
    state = net.state_dict()
    state["0.weight"][...] = 0
    assert np.any(net[0].weight.data != 0)


def test_load_state_dict_keeps_parameter_identity():
    net = small_net()
    weight = net[0].weight
    net.load_state_dict(small_net(3).state_dict())
    assert net[0].weight is weight
    np.testing.assert_array_equal(weight.data, small_net(3)[0].weight.data)


def test_load_state_dict_names_missing_unexpected_and_misshaped_keys():
    net = small_net()
    state = net.state_dict()
    del state["0.bias"]
    state["extra.weight"] = np.zeros(2)
    state["5.weight"] = np.zeros((2, 2))
    with pytest.raises(nn.StateDictError) as err:
        net.load_state_dict(state)
    message = str(err.value)
    assert "missing: 0.bias" in message and "unexpected: extra.weight" in message
    assert "5.weight: expected (3, 64), got (2, 2)" in message


def test_load_state_dict_non_strict_reports_and_loads_the_rest():
    net = small_net()
    state = small_net(5).state_dict()
    del state["0.bias"]
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert missing == ["0.bias"] and unexpected == []
    np.testing.assert_array_equal(net[0].weight.data, state["0.weight"])


def test_train_eval_propagate_to_every_submodule():
    net = small_net()
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_batchnorm_module_uses_running_stats_in_eval(rng):
    bn = nn.BatchNorm2d(3)
    x = Tensor(rng.normal(2.0, 3.0, size=(8, 3, 4, 4)).astype(np.float32))
    bn(x)
    assert np.all(bn.running_mean > 0.1)
    bn.eval()
    expected = (x.data - bn.running_mean[None, :, None, None]) / np.sqrt(
        bn.running_var[None, :, None, None] + bn.eps)
    np.testing.assert_allclose(bn(x).data, expected, rtol=1e-5, atol=1e-5)


def test_zero_grad_clears_every_gradient(rng):
    net = small_net()
    F.cross_entropy(net(Tensor(rng.normal(size=(2, 1, 8, 8)).astype(np.float32))), [0, 2]).backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_repr_shows_the_tree():
    text = repr(small_net())
    assert "(0): Conv2d(1, 4, kernel_size=3, stride=1, padding=1, bias=True)" in text
    assert "(5): Linear(64, 3, bias=True)" in text


@pytest.mark.parametrize("layer, shape", [
    (nn.Conv2d(3, 5, 3, stride=2, padding=1, rng=0), (2, 3, 9, 9)),
    (nn.Linear(7, 4, rng=0), (2, 7)),
])
def test_default_init_is_torch_uniform_bound(layer, shape):
    fan_in = int(np.prod(layer.weight.shape[1:]))
    bound = 1 / np.sqrt(fan_in)
    assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.bias.data).max() <= bound
    assert layer.weight.dtype == np.float32
    assert layer(Tensor(np.zeros(shape, np.float32))).ndim == len(shape)


def test_same_seed_same_weights_different_seed_different_weights():
    assert np.array_equal(nn.Linear(5, 3, rng=1).weight.data, nn.Linear(5, 3, rng=1).weight.data)
    assert not np.array_equal(nn.Linear(5, 3, rng=1).weight.data, nn.Linear(5, 3, rng=2).weight.data)


@pytest.mark.parametrize("name, expected_std", [
    ("kaiming_normal", np.sqrt(2 / 200)),
    ("xavier_normal", np.sqrt(2 / (200 + 300))),
])
def test_init_standard_deviations(name, expected_std):
    w = getattr(nn.init, name)((300, 200), np.random.default_rng(0))
    assert abs(w.std() - expected_std) / expected_std < 0.02


def test_kaiming_uniform_and_xavier_uniform_bounds():
    rng = np.random.default_rng(0)
    w = nn.init.kaiming_uniform((64, 32, 3, 3), rng)
    assert np.abs(w).max() <= np.sqrt(6 / (32 * 9))
    w = nn.init.xavier_uniform((50, 70), rng)
    assert np.abs(w).max() <= np.sqrt(6 / 120)


def test_batchnorm_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match=r"expected 3 channels.*\(2, 4, 5, 5\)"):
        nn.BatchNorm2d(3)(Tensor(np.zeros((2, 4, 5, 5), np.float32)))
    with pytest.raises(ValueError, match=r"expected \(N, C, H, W\)"):
        nn.BatchNorm2d(3)(Tensor(np.zeros((2, 3), np.float32)))


def test_prelu_is_per_channel():
    prelu = nn.PReLU(2)
    x = Tensor(np.array([[[-1.0]], [[-2.0]]], np.float32)[None])     # (1, 2, 1, 1)
    np.testing.assert_allclose(prelu(x).data.ravel(), [-0.25, -0.5])


def test_dropout_is_seeded_and_off_in_eval():
    x = Tensor(np.ones((4, 100), np.float32))
    a, b = nn.Dropout(0.5, rng=3), nn.Dropout(0.5, rng=3)
    np.testing.assert_array_equal(a(x).data, b(x).data)
    a.eval()
    np.testing.assert_array_equal(a(x).data, x.data)


def test_torch_parity_of_conv_linear_batchnorm_modules(rng):
    torch = pytest.importorskip("torch")
    net = small_net(2)
    ref = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(64, 3))
    ref.load_state_dict({k: torch.tensor(v) for k, v in net.state_dict().items()}, strict=False)
    x = rng.normal(size=(3, 1, 8, 8)).astype(np.float32)
    for mode in ("train", "eval"):
        getattr(net, mode)(), getattr(ref, mode)()
        np.testing.assert_allclose(net(Tensor(x)).data, ref(torch.tensor(x)).detach().numpy(),
                                   rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(net[1].running_var, ref[1].running_var.numpy(), rtol=1e-5)
