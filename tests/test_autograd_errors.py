"""Bad input fails early with a message that names the offending shapes or values."""

import re

import numpy as np
import pytest

from minibnn import Tensor
from minibnn import functional as F


def t(*shape, dtype=np.float64, grad=False) -> Tensor:
    return Tensor(np.ones(shape, dtype=dtype), requires_grad=grad)


# ---------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("a, b, pattern", [
    ((2, 3), (4, 5), r"matmul: shapes \(2, 3\) and \(4, 5\) do not align.*3.*4"),
    ((3,), (4,), r"matmul: shapes \(3,\) and \(4,\) do not align"),
    ((2, 3), (2,), r"matmul: shapes \(2, 3\) and \(2,\)"),
    ((2, 3, 4), (3, 4, 5), r"matmul: batch dimensions of \(2, 3, 4\) and \(3, 4, 5\) do not broadcast"),
    ((), (3,), r"matmul: operands must have at least one dimension, got \(\) and \(3,\)"),
], ids=str)
def test_matmul_shape_mismatch_names_both_shapes(a, b, pattern):
    with pytest.raises(ValueError, match=pattern):
        t(*a) @ t(*b)


@pytest.mark.parametrize("op, name", [
    (lambda a, b: a + b, "add"), (lambda a, b: a - b, "sub"), (lambda a, b: a * b, "mul"),
    (lambda a, b: a / b, "div"), (lambda a, b: a ** b, "pow"), (F.maximum, "maximum"),
])
def test_elementwise_broadcast_mismatch_names_op_and_shapes(op, name):
    with pytest.raises(ValueError, match=rf"{name}: cannot broadcast shapes \(3, 2\) and \(4,\)"):
        op(t(3, 2), t(4))


def test_broadcast_mismatch_with_ndarray_operand():
    with pytest.raises(ValueError, match=r"cannot broadcast shapes \(3,\) and \(2, 2\)"):
        t(3) * np.ones((2, 2))


def test_where_broadcast_mismatch_names_all_three_shapes():
    with pytest.raises(ValueError, match=r"where: cannot broadcast condition \(3,\) with \(2,\) and \(3,\)"):
        F.where(np.ones(3, dtype=bool), t(2), t(3))


def test_where_needs_a_boolean_condition():
    with pytest.raises(TypeError, match=r"condition must be boolean, got float64"):
        F.where(np.ones(3), t(3), t(3))


@pytest.mark.parametrize("shape, pattern", [
    ((4, 2), r"cannot reshape a tensor of shape \(2, 3\) \(6 elements\) into \(4, 2\)"),
    ((4, -1), r"cannot reshape a tensor of shape \(2, 3\) \(6 elements\) into \(4, -1\)"),
    ((-1, -1), r"into \(-1, -1\)"),
    ((7,), r"\(6 elements\) into \(7,\)"),
], ids=str)
def test_reshape_to_an_incompatible_size(shape, pattern):
    with pytest.raises(ValueError, match=pattern):
        t(2, 3).reshape(shape)


@pytest.mark.parametrize("axes", [(0, 0, 1), (0, 1), (0, 1, 2, 3)], ids=str)
def test_transpose_with_a_bad_permutation(axes):
    with pytest.raises(ValueError, match=r"transpose: .* is not a permutation of the 3 axes of \(2, 3, 4\)"):
        t(2, 3, 4).transpose(*axes)


@pytest.mark.parametrize("axes", [(0, 1, 5), (3, 1, 2), (-4, 1, 0)], ids=str)
def test_transpose_with_an_out_of_range_axis(axes):
    with pytest.raises(ValueError, match=r"transpose"):
        t(2, 3, 4).transpose(*axes)


@pytest.mark.parametrize("op", ["sum", "mean", "max"])
def test_reduction_axis_out_of_range(op):
    with pytest.raises(ValueError, match=r"axis 2 is out of range for a tensor with 2 dimensions"):
        getattr(t(2, 3), op)(axis=2)
    with pytest.raises(ValueError, match=r"axis -3 is out of range"):
        getattr(t(2, 3), op)(axis=(0, -3))


def test_concatenate_and_stack_shape_mismatches():
    with pytest.raises(ValueError, match=r"concatenate: shapes \[\(2, 3\), \(2, 4\)\] differ outside axis 0"):
        F.concatenate([t(2, 3), t(2, 4)], axis=0)
    with pytest.raises(ValueError, match=r"concatenate: shapes \[\(2, 3\), \(3,\)\]"):
        F.concatenate([t(2, 3), t(3)], axis=0)
    with pytest.raises(ValueError, match=r"concatenate: needs at least one tensor"):
        F.concatenate([])
    with pytest.raises(ValueError, match=r"stack: needs one or more tensors of equal shape, got \[\(2, 3\), \(3, 2\)\]"):
        F.stack([t(2, 3), t(3, 2)])


# ------------------------------------------------------------------------------ backward
def test_backward_on_a_non_scalar_without_upstream_gradient():
    y = t(2, 3, grad=True) * 2.0
    with pytest.raises(RuntimeError, match=r"backward\(\) on a tensor of shape \(2, 3\) needs an upstream gradient"):
        y.backward()


@pytest.mark.parametrize("gshape", [(3,), (3, 2), (1, 2, 3)], ids=str)
def test_backward_with_an_upstream_gradient_of_the_wrong_shape(gshape):
    y = t(2, 3, grad=True) * 2.0
    with pytest.raises(ValueError, match=re.escape(f"upstream gradient has shape {gshape}, expected (2, 3)")):
        y.backward(np.ones(gshape))


def test_backward_on_a_tensor_that_does_not_require_grad():
    with pytest.raises(RuntimeError, match=r"does not require grad"):
        (t(3) * 2.0).sum().backward()


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, bool])
def test_requires_grad_on_an_integer_tensor(dtype):
    name = np.dtype(dtype).name
    with pytest.raises(TypeError, match=rf"only floating-point tensors can require gradients, got {name}"):
        Tensor(np.zeros(3, dtype=dtype), requires_grad=True)
    with pytest.raises(TypeError, match=r"got int64"):
        Tensor([1, 2], requires_grad=True)


def test_item_on_a_multi_element_tensor():
    with pytest.raises(ValueError, match=r"item\(\) needs a tensor with one element, this one has shape \(2, 3\)"):
        t(2, 3).item()


# ---------------------------------------------------------------------------- conv, pool
@pytest.mark.parametrize("xs, ws, pattern", [
    ((1, 3, 5, 5), (4, 2, 3, 3), r"conv2d: input has 3 channels \(shape \(1, 3, 5, 5\)\) but the weight "
                                 r"\(4, 2, 3, 3\) expects 2"),
    ((3, 5, 5), (4, 3, 3, 3), r"conv2d: expected input \(N, C, H, W\) and weight \(M, C, kh, kw\), "
                              r"got \(3, 5, 5\) and \(4, 3, 3, 3\)"),
    ((1, 3, 5, 5), (4, 3, 3), r"got \(1, 3, 5, 5\) and \(4, 3, 3\)"),
    ((1, 3, 2, 2), (4, 3, 3, 3), r"conv2d: kernel \(3, 3\) with padding \(0, 0\) does not fit the "
                                 r"input's \(2, 2\) spatial size"),
], ids=["channels", "input-3d", "weight-3d", "kernel-too-big"])
def test_conv2d_bad_shapes(xs, ws, pattern):
    with pytest.raises(ValueError, match=pattern):
        F.conv2d(t(*xs), t(*ws))


def test_conv2d_bias_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"conv2d: bias must have shape \(4,\), got \(3,\)"):
        F.conv2d(t(1, 3, 5, 5), t(4, 3, 3, 3), t(3))


@pytest.mark.parametrize("pool", [F.max_pool2d, F.avg_pool2d])
def test_pool_bad_inputs(pool):
    name = pool.__name__
    with pytest.raises(ValueError, match=rf"{name}: expected input \(N, C, H, W\), got shape \(3, 4, 4\)"):
        pool(t(3, 4, 4), 2)
    with pytest.raises(ValueError, match=rf"{name}: padding \(2, 2\) must be at most half the kernel size \(3, 3\)"):
        pool(t(1, 1, 6, 6), 3, padding=2)
    with pytest.raises(ValueError, match=rf"{name}: kernel \(5, 5\) does not fit the input's \(3, 3\) spatial size"):
        pool(t(1, 1, 3, 3), 5)


def test_adaptive_pool_needs_a_4d_input():
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: expected input \(N, C, H, W\), got \(2, 3\)"):
        F.adaptive_avg_pool2d(t(2, 3), 1)


# ---------------------------------------------------------------------------- batch norm
@pytest.mark.parametrize("name, kwargs", [
    ("running_mean", dict(running_mean=np.zeros(4), running_var=np.ones(3))),
    ("running_var", dict(running_mean=np.zeros(3), running_var=np.ones((3, 1)))),
    ("weight", dict(running_mean=np.zeros(3), running_var=np.ones(3), weight=t(2))),
    ("bias", dict(running_mean=np.zeros(3), running_var=np.ones(3), bias=t(1, 3))),
])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_with_wrong_running_stat_or_affine_shapes(name, kwargs, training):
    bad = kwargs.get(name)
    bad_shape = np.shape(getattr(bad, "data", bad))
    pattern = re.escape(f"batch_norm: {name} must have shape (3,) for input (2, 3, 4, 4), got {bad_shape}")
    with pytest.raises(ValueError, match=pattern):
        F.batch_norm(t(2, 3, 4, 4), training=training, **kwargs)


def test_batch_norm_rejects_bad_rank_and_tiny_batches():
    with pytest.raises(ValueError, match=r"batch_norm: expected \(N, C\), \(N, C, L\) or \(N, C, H, W\), got \(5,\)"):
        F.batch_norm(t(5), None, None, training=True)
    with pytest.raises(ValueError, match=r"training needs more than one value per channel, got input of shape \(1, 3\)"):
        F.batch_norm(t(1, 3), None, None, training=True)
    with pytest.raises(ValueError, match=r"evaluation mode needs running_mean and running_var"):
        F.batch_norm(t(2, 3), None, None, training=False)


def test_batch_norm_rejected_input_leaves_running_stats_untouched():
    rm, rv = np.zeros(3), np.ones(3)
    with pytest.raises(ValueError):
        F.batch_norm(t(2, 3) * 5.0, rm, rv, weight=t(4), training=True)
    np.testing.assert_array_equal(rm, 0.0)
    np.testing.assert_array_equal(rv, 1.0)


# -------------------------------------------------------------------------------- losses
def test_cross_entropy_labels_out_of_range_name_the_values():
    logits = t(3, 4)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\], found values from 0 to 4"):
        F.cross_entropy(logits, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\], found values from -1 to 2"):
        F.cross_entropy(logits, np.array([-1, 2, 1]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\]"):
        F.cross_entropy(logits, np.array([0, 9, 1]), label_smoothing=0.1)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_float_labels_name_the_dtype(label_smoothing):
    with pytest.raises(TypeError, match=r"integer class labels expected, got dtype float64"):
        F.cross_entropy(t(3, 4), np.array([0.0, 1.0, 2.0]), label_smoothing=label_smoothing)
    with pytest.raises(TypeError, match=r"got dtype float32"):
        F.cross_entropy(t(3, 4), Tensor([0.0, 1.0, 2.0]), label_smoothing=label_smoothing)


def test_cross_entropy_target_shape_errors():
    with pytest.raises(ValueError, match=r"cross_entropy: 2 labels for a batch of 3 rows"):
        F.cross_entropy(t(3, 4), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"target must be labels \(3,\) or probabilities \(3, 4\), got shape \(3, 5\)"):
        F.cross_entropy(t(3, 4), np.ones((3, 5)) / 5)
    with pytest.raises(ValueError, match=r"cross_entropy: logits must be \(N, C\), got shape \(2, 3, 4\)"):
        F.cross_entropy(t(2, 3, 4), np.array([0, 1]))


@pytest.mark.parametrize("loss", [
    lambda r: F.cross_entropy(t(2, 3), np.array([0, 1]), reduction=r),
    lambda r: F.kl_div(t(2, 3), np.ones((2, 3)), reduction=r),
    lambda r: F.mse_loss(t(2, 3), np.ones((2, 3)), reduction=r),
], ids=["cross_entropy", "kl_div", "mse_loss"])
def test_losses_reject_unknown_reductions(loss):
    with pytest.raises(ValueError, match=r"reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        loss("avg")


def test_kl_div_and_mse_shape_mismatch_name_both_shapes():
    with pytest.raises(ValueError, match=r"kl_div: input \(2, 3\) and target \(3, 2\) must have one shape"):
        F.kl_div(t(2, 3), np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"mse_loss: input \(2, 3\) and target \(3,\) must have one shape"):
        F.mse_loss(t(2, 3), np.ones(3))


# ---------------------------------------------------------------------------- composites
def test_other_composite_argument_errors():
    with pytest.raises(ValueError, match=r"normalize: only the L2 norm \(p=2\) is implemented, got p=1"):
        F.normalize(t(2, 3), p=1)
    with pytest.raises(ValueError, match=r"var: the unbiased estimate needs at least 2 values, axis 1 of \(3, 1\) has 1"):
        F.var(t(3, 1), axis=1)
    with pytest.raises(ValueError, match=r"linear: input has 4 features \(shape \(2, 4\)\), the weight \(5, 3\) expects 3"):
        F.linear(t(2, 4), t(5, 3))
    with pytest.raises(ValueError, match=r"prelu: weight of shape \(4,\) does not match the 3 channels \(axis 1\) "
                                         r"of input \(2, 3, 5\)"):
        F.prelu(t(2, 3, 5), t(4))
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\), got 1"):
        F.dropout(t(2, 3), p=1, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"dropout: pass an explicit np.random.Generator"):
        F.dropout(t(2, 3), p=0.5)
