"""Primitive ops (autograd/elementwise.py, reductions.py, shape.py): float64 central-difference
gradchecks with broadcasting shapes, forward values against NumPy, and the exact gradient
conventions at ties and edges."""

import numpy as np
import pytest

from minibnn import Tensor
from minibnn import functional as F
from minibnn.autograd import gradcheck


def leaf(x) -> Tensor:
    return Tensor(np.array(x, dtype=np.float64), requires_grad=True)


def away_from_zero(rng, shape, low=0.3, high=2.0) -> np.ndarray:
    """Values with |x| in [low, high] and random sign: safe for div, abs, kinks at 0."""
    return rng.uniform(low, high, size=shape) * rng.choice([-1.0, 1.0], size=shape)


# -------------------------------------------------------------- binary elementwise, broadcast
BROADCAST_SHAPES = [
    ((3, 1, 5), (4, 5)),
    ((4, 5), (3, 1, 5)),
    ((2, 3), ()),
    ((), (2, 3)),
    ((4, 1), (1, 3)),
    ((2, 3), (2, 3)),
    ((2, 1, 3), (2, 4, 1)),
]

BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.divide),
    "maximum": (F.maximum, np.maximum),
    "pow_positive_base": (lambda a, b: a ** b, np.power),
}


def binary_inputs(name, rng, sa, sb):
    if name == "pow_positive_base":
        return rng.uniform(0.5, 2.0, sa), rng.normal(size=sb)
    if name == "maximum":  # distinct values, far apart compared with the gradcheck step
        vals = rng.permutation(np.prod(sa, dtype=int) + np.prod(sb, dtype=int)) * 0.1
        return vals[: np.prod(sa, dtype=int)].reshape(sa), vals[np.prod(sa, dtype=int):].reshape(sb)
    return rng.normal(size=sa), away_from_zero(rng, sb)


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("sa, sb", BROADCAST_SHAPES)
def test_binary_op_gradcheck_with_broadcasting(name, sa, sb, rng):
    op, _ = BINARY[name]
    a, b = binary_inputs(name, rng, sa, sb)
    ta, tb = leaf(a), leaf(b)
    gradcheck(op, ta, tb)
    assert ta.grad.shape == sa and tb.grad.shape == sb  # summed back to each input's shape


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("sa, sb", BROADCAST_SHAPES)
def test_binary_op_forward_matches_numpy(name, sa, sb, rng):
    op, ref = BINARY[name]
    a, b = binary_inputs(name, rng, sa, sb)
    out = op(leaf(a), leaf(b))
    assert out.shape == np.broadcast_shapes(sa, sb)
    np.testing.assert_allclose(out.data, ref(a, b), rtol=1e-12, atol=0)


@pytest.mark.parametrize("fn", [
    lambda x: x + 2.5, lambda x: 2.5 + x, lambda x: x - 2.5, lambda x: 2.5 - x,
    lambda x: x * -1.5, lambda x: -1.5 * x, lambda x: x / 3.0, lambda x: 3.0 / x,
    lambda x: x ** 2, lambda x: x ** 3, lambda x: x + np.arange(5.0), lambda x: np.arange(5.0) * x,
], ids=["x+s", "s+x", "x-s", "s-x", "x*s", "s*x", "x/s", "s/x", "x**2", "x**3", "x+arr", "arr*x"])
def test_binary_op_with_constant_operand_gradcheck(fn, rng):
    gradcheck(fn, leaf(away_from_zero(rng, (3, 5))))


@pytest.mark.parametrize("p", [0.5, 1.5, -0.7, 2.0])
def test_pow_tensor_scalar_gradcheck_positive_base(p, rng):
    gradcheck(lambda x: x ** p, leaf(rng.uniform(0.5, 2.0, (3, 4))))


def test_pow_scalar_base_tensor_exponent_gradcheck(rng):
    gradcheck(lambda x: 2.0 ** x, leaf(rng.normal(size=(3, 4))))


def test_pow_gradient_at_zero_base_with_integer_exponent_is_finite():
    x = leaf([0.0, -1.0, 2.0])
    (x ** 2).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, -2.0, 4.0])


def test_pow_exponent_gradient_with_constant_zero_base_does_not_warn():
    y = leaf([0.5, 1.0, 2.0])
    (Tensor(np.array([0.0, 1.0, 2.0])) ** y).sum().backward()
    np.testing.assert_allclose(y.grad, [0.0, 0.0, 4 * np.log(2)], atol=1e-12)


# ----------------------------------------------------------------------- unary elementwise
UNARY = {
    "neg": (lambda x: -x, np.negative, lambda r, s: r.normal(size=s)),
    "exp": (F.exp, np.exp, lambda r, s: r.normal(size=s)),
    "log": (F.log, np.log, lambda r, s: r.uniform(0.2, 3.0, s)),
    "abs": (F.abs, np.abs, away_from_zero),
    "sqrt": (F.sqrt, np.sqrt, lambda r, s: r.uniform(0.2, 3.0, s)),
    "tanh": (F.tanh, np.tanh, lambda r, s: r.normal(size=s)),
    "sigmoid": (F.sigmoid, lambda x: 1 / (1 + np.exp(-x)), lambda r, s: 3 * r.normal(size=s)),
    "method_exp": (lambda x: x.exp(), np.exp, lambda r, s: r.normal(size=s)),
    "method_log": (lambda x: x.log(), np.log, lambda r, s: r.uniform(0.2, 3.0, s)),
    "method_abs": (lambda x: x.abs(), np.abs, away_from_zero),
    "method_sqrt": (lambda x: x.sqrt(), np.sqrt, lambda r, s: r.uniform(0.2, 3.0, s)),
}


@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("shape", [(), (7,), (3, 1, 4)])
def test_unary_op_gradcheck_and_forward(name, shape, rng):
    op, ref, sample = UNARY[name]
    x = sample(rng, shape)
    out = op(leaf(x))
    np.testing.assert_allclose(out.data, ref(x), rtol=1e-12, atol=1e-15)
    gradcheck(op, leaf(x))


def clip_sample(rng, shape, lo=-0.5, hi=0.5, margin=0.05):
    x = rng.uniform(-1.0, 1.0, shape)
    for edge in (lo, hi):
        x[np.abs(x - edge) < margin] += 2 * margin  # move values off the kinks
    return x


@pytest.mark.parametrize("lo, hi", [(-0.5, 0.5), (None, 0.5), (-0.5, None)])
def test_clip_gradcheck_away_from_the_edges(lo, hi, rng):
    x = clip_sample(rng, (4, 6))
    np.testing.assert_array_equal(F.clip(leaf(x), lo, hi).data, np.clip(x, lo, hi))
    gradcheck(lambda t: t.clip(lo, hi), leaf(x))


def test_clip_gradient_passes_at_the_edges_and_stops_outside():
    x = leaf([-2.0, -1.0, -0.3, 0.0, 0.3, 1.0, 2.0])               # both edges exactly
    F.clip(x, -1.0, 1.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0, 1, 1, 1, 1, 1, 0])


def test_abs_gradient_at_zero_is_zero():
    x = leaf([-2.0, 0.0, 3.0])
    F.abs(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [-1.0, 0.0, 1.0])


def test_maximum_ties_split_the_gradient_equally():
    a, b = leaf([1.0, 2.0, 3.0]), leaf([1.0, 5.0, 0.0])
    F.maximum(a, b).backward(np.array([2.0, 1.0, 1.0]))
    np.testing.assert_array_equal(a.grad, [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(b.grad, [1.0, 1.0, 0.0])


def test_maximum_with_scalar_is_relu_like(rng):
    x = away_from_zero(rng, (3, 4))
    t = leaf(x)
    F.maximum(t, 0.0).sum().backward()
    np.testing.assert_array_equal(t.grad, (x > 0).astype(float))


def test_sigmoid_saturates_without_overflow_warning():
    x = leaf([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    y = F.sigmoid(x)
    np.testing.assert_allclose(y.data, [0.0, 1 / (1 + np.exp(50)), 0.5, 1 / (1 + np.exp(-50)), 1.0])
    y.sum().backward()
    assert np.all(np.isfinite(x.grad))


# -------------------------------------------------------------------------------- reductions
AXES = [None, 0, 1, -1, (0, 2), (-1, 0), (0, 1, 2)]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("name", ["sum", "mean", "max"])
def test_reduction_gradcheck_and_forward(name, axis, keepdims, rng):
    x = rng.permutation(60).reshape(3, 4, 5) * 0.1 + rng.uniform(0, 0.01, (3, 4, 5))  # no ties
    out = getattr(leaf(x), name)(axis=axis, keepdims=keepdims)
    ref = getattr(np, name)(x, axis=axis, keepdims=keepdims)
    assert out.shape == np.shape(ref)
    np.testing.assert_allclose(out.data, ref, rtol=1e-12)
    gradcheck(lambda t: getattr(F, name)(t, axis, keepdims), leaf(x))


def test_sum_gradient_is_ones_and_mean_gradient_is_one_over_count():
    x = leaf(np.zeros((3, 4)))
    x.sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones((3, 4)))
    y = leaf(np.zeros((3, 4)))
    y.mean(axis=1).sum().backward()
    np.testing.assert_allclose(y.grad, np.full((3, 4), 0.25))


def test_max_reduction_ties_spread_the_gradient_evenly():
    x = leaf([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    x.max(axis=1).sum().backward()
    np.testing.assert_allclose(x.grad, [[0, 0.5, 0.5, 0], [0.25, 0.25, 0.25, 0.25]])


def test_reduction_of_a_zero_dim_tensor_is_identity():
    x = leaf(2.0)
    y = x.sum() * 3.0
    y.backward()
    assert y.shape == () and x.grad == 3.0


# ---------------------------------------------------------------------------------- matmul
@pytest.mark.parametrize("sa, sb", [
    ((3, 4), (4, 2)),            # 2-D
    ((2, 3, 4), (2, 4, 5)),      # batched
    ((2, 1, 3, 4), (3, 4, 2)),   # broadcasting batch dims on both sides
    ((3, 4), (2, 4, 5)),         # 2-D broadcast against a batch
    ((4,), (4, 3)),              # 1-D @ 2-D
    ((3, 4), (4,)),              # 2-D @ 1-D
    ((2, 3, 4), (4,)),           # batched @ 1-D
    ((4,), (2, 4, 3)),           # 1-D @ batched
], ids=str)
def test_matmul_gradcheck_and_forward(sa, sb, rng):
    a, b = rng.normal(size=sa), rng.normal(size=sb)
    ta, tb = leaf(a), leaf(b)
    np.testing.assert_allclose((ta @ tb).data, a @ b, rtol=1e-12)
    gradcheck(lambda x, y: x @ y, ta, tb)
    assert ta.grad.shape == sa and tb.grad.shape == sb


def test_matmul_vector_dot_vector_gradient(rng):
    a, b = leaf(rng.normal(size=4)), leaf(rng.normal(size=4))
    gradcheck(lambda x, y: x @ y, a, b)


def test_matmul_with_constant_ndarray_operand(rng):
    w = rng.normal(size=(4, 2))
    x = leaf(rng.normal(size=(3, 4)))
    gradcheck(lambda t: t @ w, x)
    gradcheck(lambda t: w.T @ t.T, x)   # ndarray @ Tensor goes through __rmatmul__


# ------------------------------------------------------------------------------ shape ops
@pytest.mark.parametrize("shape", [(6, 4), (2, 12), (24,), (2, -1), (-1, 3, 2), [4, 6]], ids=str)
def test_reshape_gradcheck(shape, rng):
    x = rng.normal(size=(2, 3, 4))
    out = leaf(x).reshape(shape)
    np.testing.assert_array_equal(out.data, x.reshape(shape))
    gradcheck(lambda t: t.reshape(shape), leaf(x))
    gradcheck(lambda t: F.reshape(t, *shape) if isinstance(shape, tuple) else F.reshape(t, shape), leaf(x))


@pytest.mark.parametrize("start_axis", [0, 1, 2, -1])
def test_flatten_gradcheck(start_axis, rng):
    x = rng.normal(size=(2, 3, 4))
    out = leaf(x).flatten(start_axis)
    assert out.shape == x.shape[: start_axis % 3] + (int(np.prod(x.shape[start_axis % 3:])),)
    gradcheck(lambda t: t.flatten(start_axis), leaf(x))


@pytest.mark.parametrize("axes", [(), (0, 2, 1), (2, 0, 1), (1, 0, 2), (-1, 0, 1)], ids=str)
def test_transpose_and_permute_gradcheck(axes, rng):
    x = rng.normal(size=(2, 3, 4))
    ref = np.transpose(x, axes or None)
    np.testing.assert_array_equal(leaf(x).transpose(*axes).data, ref)
    np.testing.assert_array_equal(F.transpose(leaf(x), axes).data, ref)
    gradcheck(lambda t: t.transpose(*axes), leaf(x))
    if axes:
        gradcheck(lambda t: t.permute(*axes), leaf(x))


def test_T_property_reverses_axes_and_gradchecks(rng):
    x = rng.normal(size=(3, 5))
    np.testing.assert_array_equal(leaf(x).T.data, x.T)
    gradcheck(lambda t: t.T, leaf(x))


MASK = np.array([[True, False, True, True], [False, False, True, False], [True, True, False, True]])
GETITEM_INDICES = {
    "slice": (slice(1, None), slice(None, None, 2)),
    "negative_step": (slice(None, None, -1),),
    "int": 1,
    "int_and_slice": (slice(None), -1),
    "ellipsis_newaxis": (Ellipsis, None, 2),
    "int_array_repeats": np.array([0, 2, 0, 0]),
    "list_on_axis1_repeats": (slice(None), [1, 1, 3, 1]),
    "paired_int_arrays": (np.array([0, 1, 0, 2]), np.array([2, 2, 2, 0])),
    "bool_mask": MASK,
    "bool_mask_rows": np.array([True, False, True]),
}


@pytest.mark.parametrize("name", GETITEM_INDICES)
def test_getitem_gradcheck(name, rng):
    index = GETITEM_INDICES[name]
    x = rng.normal(size=(3, 4))
    np.testing.assert_array_equal(leaf(x)[index].data, x[index])
    gradcheck(lambda t: t[index], leaf(x))


def test_getitem_repeated_integer_indices_accumulate():
    x = leaf(np.zeros(4))
    x[np.array([0, 2, 0, 0, 3])].sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 0.0, 1.0, 1.0])


def test_getitem_with_tensor_index_and_tensor_mask():
    x = leaf(np.arange(6.0))
    x[Tensor(np.array([5, 5, 1]))].sum().backward()
    np.testing.assert_array_equal(x.grad, [0, 1, 0, 0, 0, 2])
    y = leaf(np.arange(6.0) - 2)
    out = y[y > 0]
    np.testing.assert_array_equal(out.data, [1.0, 2.0, 3.0])
    out.sum().backward()
    np.testing.assert_array_equal(y.grad, [0, 0, 0, 1, 1, 1])


@pytest.mark.parametrize("axis, shapes", [
    (0, [(2, 3), (1, 3), (4, 3)]),
    (1, [(2, 1), (2, 3), (2, 2)]),
    (-1, [(2, 2, 1), (2, 2, 3)]),
    (-2, [(2, 1, 3), (2, 2, 3), (2, 1, 3)]),
], ids=str)
def test_concatenate_gradcheck(axis, shapes, rng):
    arrays = [rng.normal(size=s) for s in shapes]
    tensors = [leaf(a) for a in arrays]
    np.testing.assert_array_equal(F.concatenate(tensors, axis=axis).data, np.concatenate(arrays, axis))
    gradcheck(lambda *ts: F.concatenate(list(ts), axis=axis), *tensors)
    assert [t.grad.shape for t in tensors] == shapes


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_stack_gradcheck(axis, rng):
    arrays = [rng.normal(size=(2, 3)) for _ in range(3)]
    tensors = [leaf(a) for a in arrays]
    np.testing.assert_array_equal(F.stack(tensors, axis=axis).data, np.stack(arrays, axis))
    gradcheck(lambda *ts: F.stack(list(ts), axis=axis), *tensors)


def test_concatenate_and_stack_mix_tensors_and_constants(rng):
    x = leaf(rng.normal(size=(2, 3)))
    const = rng.normal(size=(2, 3))
    gradcheck(lambda t: F.concatenate([const, t, t], axis=0), x)
    x.grad = None
    F.stack([t for t in (x, const, x)], axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad, np.full((2, 3), 2.0))  # used twice


@pytest.mark.parametrize("sc, sa, sb", [
    ((3, 4), (3, 4), (3, 4)),
    ((3, 1), (1, 4), (3, 4)),
    ((4,), (3, 4), ()),
    ((2, 1, 4), (3, 1), (1, 4)),
], ids=str)
def test_where_gradcheck_with_broadcasting(sc, sa, sb, rng):
    cond = rng.random(sc) > 0.4
    a, b = rng.normal(size=sa), rng.normal(size=sb)
    ta, tb = leaf(a), leaf(b)
    np.testing.assert_array_equal(F.where(cond, ta, tb).data, np.where(cond, a, b))
    gradcheck(lambda x, y: F.where(cond, x, y), ta, tb)
    assert ta.grad.shape == sa and tb.grad.shape == sb


def test_where_routes_gradient_by_condition_and_accepts_scalars():
    cond = np.array([True, False, True])
    a, b = leaf([1.0, 2.0, 3.0]), leaf([4.0, 5.0, 6.0])
    F.where(cond, a, b).backward(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(a.grad, [1.0, 0.0, 3.0])
    np.testing.assert_array_equal(b.grad, [0.0, 2.0, 0.0])
    c = leaf([1.0, 2.0, 3.0])
    y = F.where(Tensor(cond), 0.0, c)                  # boolean Tensor condition, scalar branch
    np.testing.assert_array_equal(y.data, [0.0, 2.0, 0.0])
    y.sum().backward()
    np.testing.assert_array_equal(c.grad, [0.0, 1.0, 0.0])


# ---------------------------------------------------------------------------- composition
def test_chain_of_primitives_gradcheck(rng):
    """A small expression mixing broadcasting, reductions, matmul and indexing."""
    x, w, b = leaf(rng.normal(size=(3, 4))), leaf(rng.normal(size=(4, 2))), leaf(rng.normal(size=(2,)))

    def f(x, w, b):
        h = F.tanh(x @ w + b)                            # (3, 2)
        return (h * h).sum(axis=0) / (1.0 + F.exp(x[:, :2]).mean(axis=0))

    gradcheck(f, x, w, b)


def test_cast_gradcheck_and_dtype(rng):
    x = leaf(rng.normal(size=(3,)))
    y = x.astype(np.float32)
    assert y.dtype == np.float32
    (y * 2.0).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad, [2.0, 2.0, 2.0])
