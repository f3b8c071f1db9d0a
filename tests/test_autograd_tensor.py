"""Tensor semantics (autograd/tensor.py, function.py): dtypes, gradient accumulation, no_grad,
detach, leaves versus intermediates, shared subgraphs, and deep graphs."""

import sys

import numpy as np
import pytest

from minibnn import Tensor, no_grad
from minibnn import functional as F
from minibnn.autograd import enable_grad, function, is_grad_enabled


# ------------------------------------------------------------------------------------ dtypes
@pytest.mark.parametrize("data", [[1.0, 2.0], 3.0, [[0.5], [1.5]], [1, 2.5]], ids=str)
def test_python_floats_and_lists_default_to_float32(data):
    assert Tensor(data).dtype == np.float32


def test_python_ints_become_int64_as_torch_tensor():
    assert Tensor([1, 2, 3]).dtype == np.int64
    assert Tensor(4).dtype == np.int64


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, np.int32, np.int64, np.uint8, bool])
def test_ndarrays_and_numpy_scalars_keep_their_dtype(dtype):
    assert Tensor(np.zeros(3, dtype=dtype)).dtype == dtype
    assert Tensor(np.zeros((), dtype=dtype)[()]).dtype == dtype   # a NumPy scalar


def test_explicit_dtype_converts():
    t = Tensor([1, 2], dtype=np.float64)
    assert t.dtype == np.float64
    np.testing.assert_array_equal(t.data, [1.0, 2.0])


SCALAR_OPS = {
    "x+s": lambda x: x + 2.0, "s+x": lambda x: 2.0 + x, "x-s": lambda x: x - 1, "s-x": lambda x: 1 - x,
    "x*s": lambda x: x * 0.5, "s*x": lambda x: 0.5 * x, "x/s": lambda x: x / 3.0, "s/x": lambda x: 3.0 / x,
    "x**2": lambda x: x ** 2, "x**0.5": lambda x: x ** 0.5, "2**x": lambda x: 2.0 ** x,
    "maximum": lambda x: F.maximum(x, 0.1), "where": lambda x: F.where(x.data > 1, x, 0.0),
    "clip": lambda x: x.clip(0.5, 1.5), "mean": lambda x: x.mean(), "var": lambda x: x.var(),
    "softmax": F.softmax, "normalize": lambda x: F.normalize(x.reshape(1, -1)),
    "np.float64*x": lambda x: np.float64(2.0) * x,
}


@pytest.mark.parametrize("name", SCALAR_OPS)
def test_float32_stays_float32_through_ops_with_python_scalars(name):
    x = Tensor(np.array([0.5, 1.0, 2.0], dtype=np.float32), requires_grad=True)
    y = SCALAR_OPS[name](x)
    assert y.dtype == np.float32, name
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_float64_stays_float64_with_python_scalars():
    x = Tensor(np.array([0.5, 1.0]), requires_grad=True)
    y = (x * 0.5 + 1.0) ** 2
    assert y.dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float64


def test_gradient_is_cast_to_the_leaf_dtype():
    x = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    (x * np.full(3, 2.0)).sum().backward()           # float64 constant: float64 result
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [2.0, 2.0, 2.0])


def test_integer_tensor_with_python_float_promotes_to_float():
    np.testing.assert_allclose((Tensor([1, 2, 3]) * 0.5).data, [0.5, 1.0, 1.5])
    np.testing.assert_allclose((Tensor([1, 2, 3]) + 0.5).data, [1.5, 2.5, 3.5])


def test_mean_of_integer_tensor_is_the_true_mean():
    assert float(Tensor([1, 2, 4]).mean().item()) == pytest.approx(7 / 3)


# ------------------------------------------------------------------------- small accessors
def test_item_returns_a_python_number():
    value = Tensor(np.array([[2.5]])).item()
    assert value == 2.5 and isinstance(value, float)
    assert Tensor(np.float32(1.5)).item() == 1.5


def test_T_reverses_the_axes_and_routes_the_gradient(rng):
    x = Tensor(rng.normal(size=(2, 3)), requires_grad=True)
    assert x.T.shape == (3, 2)
    np.testing.assert_array_equal(x.T.data, x.data.T)
    assert Tensor(np.zeros((2, 3, 4))).T.shape == (4, 3, 2)
    g = rng.normal(size=(3, 2))
    x.T.backward(g)
    np.testing.assert_array_equal(x.grad, g.T)


def test_shape_attributes_and_len():
    t = Tensor(np.zeros((2, 3, 4), dtype=np.float32))
    assert (t.shape, t.ndim, t.size, len(t)) == ((2, 3, 4), 3, 24, 2)
    assert t.numpy() is t.data


def test_ndarray_on_the_left_dispatches_to_the_tensor(rng):
    x = Tensor(rng.normal(size=(3,)), requires_grad=True)
    y = np.array([1.0, 2.0, 3.0]) * x
    assert isinstance(y, Tensor)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 2.0, 3.0])


def test_comparisons_give_boolean_tensors_without_gradient():
    x = Tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    for mask, want in [(x > 0, [0, 0, 1]), (x >= 0, [0, 1, 1]), (x < 0, [1, 0, 0]), (x <= 0, [1, 1, 0])]:
        assert mask.dtype == bool and not mask.requires_grad
        np.testing.assert_array_equal(mask.data, np.array(want, dtype=bool))


def test_tensors_hash_by_identity():
    a, b = Tensor([1.0]), Tensor([1.0])
    assert len({a, b}) == 2 and a == a and not (a == b)


# ------------------------------------------------------------------- graph and accumulation
def test_gradients_accumulate_across_two_backward_calls(rng):
    x = Tensor(rng.normal(size=(3,)), requires_grad=True)
    y = (x * x).sum()
    y.backward()
    first = x.grad.copy()
    y.backward()                                     # the graph is kept: backward twice works
    np.testing.assert_allclose(x.grad, 2 * first)
    np.testing.assert_allclose(first, 2 * x.data)
    x.zero_grad()
    assert x.grad is None


def test_only_leaves_keep_grad_unless_retain_grad(rng):
    x = Tensor(rng.normal(size=(3,)), requires_grad=True)
    h = x * 2.0
    k = (h + 1.0).retain_grad()
    assert k.is_leaf is False and x.is_leaf is True
    (k * k).sum().backward()
    assert h.grad is None
    np.testing.assert_allclose(k.grad, 2 * k.data)
    np.testing.assert_allclose(x.grad, 2 * 2 * k.data)


def test_constant_leaves_get_no_gradient(rng):
    x = Tensor(rng.normal(size=(3,)), requires_grad=True)
    c = Tensor(rng.normal(size=(3,)))
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_array_equal(x.grad, c.data)


def test_ops_on_constants_do_not_require_grad():
    y = Tensor([1.0, 2.0]) * 3.0 + Tensor([1.0, 1.0])
    assert not y.requires_grad and y.is_leaf


def test_diamond_graph_sums_both_paths():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    a = x * 3.0
    b = x.exp()
    (a * b).sum().backward()                          # d/dx (3x e^x) = 3 e^x (1 + x)
    np.testing.assert_allclose(x.grad, 3 * np.exp(x.data) * (1 + x.data), rtol=1e-12)


def test_tensor_used_twice_in_one_op_gets_both_contributions():
    x = Tensor(np.array([1.5, -2.0]), requires_grad=True)
    (x * x + x).sum().backward()
    np.testing.assert_array_equal(x.grad, 2 * x.data + 1)


def test_shared_intermediate_is_processed_once_after_all_consumers():
    x = Tensor(np.array([2.0]), requires_grad=True)
    h = x * x                                          # used by three consumers
    y = h + h * 3.0 + h.exp()
    y.backward()
    np.testing.assert_allclose(x.grad, (1 + 3 + np.exp(4.0)) * 2 * 2.0)


def test_deep_graph_backward_does_not_hit_the_recursion_limit():
    depth = max(20_000, 10 * sys.getrecursionlimit())
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x
    for _ in range(depth):
        y = y + 1.0
    y.sum().backward()
    np.testing.assert_array_equal(y.data, x.data + depth)
    np.testing.assert_array_equal(x.grad, [1.0, 1.0])


def test_deep_graph_of_mixed_ops_backward():
    x = Tensor(np.array([0.5]), requires_grad=True)
    y = x
    for _ in range(7_000):                             # 21,000 nodes of three kinds
        y = (y * 1.0).reshape(1) - 0.0
    y.backward()
    np.testing.assert_array_equal(x.grad, [1.0])


def test_backward_with_explicit_upstream_gradient(rng):
    x = Tensor(rng.normal(size=(2, 3)), requires_grad=True)
    g = rng.normal(size=(2, 3))
    (x * 2.0).backward(g)
    np.testing.assert_allclose(x.grad, 2 * g)


def test_backward_on_a_leaf_sets_its_grad():
    x = Tensor(np.array(3.0), requires_grad=True)
    x.backward()
    assert x.grad == 1.0


def test_single_element_non_scalar_defaults_upstream_to_one():
    x = Tensor(np.array([[2.0]]), requires_grad=True)
    (x * 3.0).backward()
    np.testing.assert_array_equal(x.grad, [[3.0]])


def test_leaf_grad_is_writable_and_not_aliased_to_the_upstream_gradient():
    x = Tensor(np.zeros(3), requires_grad=True)
    g = np.ones(3)
    (x + 0.0).backward(g)
    g[:] = 7.0
    np.testing.assert_array_equal(x.grad, [1.0, 1.0, 1.0])
    y = Tensor(np.zeros((2, 3)), requires_grad=True)
    y.sum().backward()                                # Sum's backward returns a broadcast view
    y.grad += 1.0
    np.testing.assert_array_equal(y.grad, np.full((2, 3), 2.0))


# ------------------------------------------------------------------------ no_grad, detach
def test_no_grad_context_records_nothing(rng):
    x = Tensor(rng.normal(size=(3,)), requires_grad=True)
    with no_grad():
        assert not is_grad_enabled()
        y = (x * 2.0).exp().sum()
    assert is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_no_grad_decorator_records_nothing(rng):
    x = Tensor(rng.normal(size=(3,)), requires_grad=True)

    @no_grad()
    def f(t):
        assert not is_grad_enabled()
        return F.softmax(t * 3.0)

    y = f(x)
    assert not y.requires_grad and y._ctx is None
    assert is_grad_enabled()


def test_no_grad_restores_the_mode_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with no_grad():
            1 / 0
    assert is_grad_enabled()


def test_enable_grad_inside_no_grad_records_again():
    x = Tensor(np.ones(2), requires_grad=True)
    with no_grad():
        with enable_grad():
            y = x * 2.0
        z = x * 2.0
        assert not is_grad_enabled()
    assert y.requires_grad and not z.requires_grad


def test_recursive_no_grad_function_restores_grad_mode():
    @no_grad()
    def depth(n):
        return 0 if n == 0 else 1 + depth(n - 1)

    try:
        depth(2)
        enabled_after = is_grad_enabled()
    finally:
        function._GRAD_ENABLED = True                  # never leak a disabled mode to other tests
    assert enabled_after


def test_detach_cuts_the_graph_and_shares_memory(rng):
    x = Tensor(rng.normal(size=(3,)), requires_grad=True)
    h = x * 2.0
    d = h.detach()
    assert not d.requires_grad and d.is_leaf
    assert np.shares_memory(d.data, h.data)
    (x * d).sum().backward()                          # d is a constant: d/dx (x * 2x_const) = 2x
    np.testing.assert_allclose(x.grad, 2 * x.data)


def test_requires_grad_is_only_set_on_results_that_need_it(rng):
    x = Tensor(rng.normal(size=(3,)), requires_grad=True)
    c = Tensor(rng.normal(size=(3,)))
    assert (x + c).requires_grad and not (c + c).requires_grad
