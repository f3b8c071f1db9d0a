"""The shape of the engine: no second module under an old name, and the primitives attached to
Tensor in one place, as the primitives themselves. (That autograd and functional import one way
and have no imports inside functions is checked for the whole package by test_architecture.py.)"""

import importlib.util

import numpy as np
import pytest

from minibnn import Tensor
from minibnn import functional as F
from minibnn.autograd import elementwise, reductions, shape, tensor_methods


@pytest.mark.parametrize("old", ["minibnn.autograd.functional", "minibnn.autograd.conv",
                                 "minibnn.autograd.batchnorm", "minibnn.autograd.kernels",
                                 "minibnn.autograd.ops", "minibnn.autograd.ops_structure"])
def test_moved_modules_are_gone_from_their_old_paths(old):
    assert importlib.util.find_spec(old) is None


def test_tensor_methods_are_the_primitives_themselves():
    for name, value in tensor_methods.METHODS.items():
        assert Tensor.__dict__[name] is value, name
    assert Tensor.sum is reductions.sum and Tensor.reshape is shape.reshape
    assert Tensor.__add__ is elementwise.add and Tensor.astype is elementwise.cast


def test_reflected_operators_swap_their_arguments():
    x = Tensor(np.array([1.0, 2.0, 4.0]), requires_grad=True)
    a = np.arange(6.0).reshape(2, 3)
    for got, want in ((2.0 - x, [1.0, 0.0, -2.0]), (8.0 / x, [8.0, 4.0, 2.0]),
                      (2.0 ** x, [2.0, 4.0, 16.0]), (a @ x, a @ [1.0, 2.0, 4.0])):
        np.testing.assert_allclose(got.data, want)
    (8.0 / x).sum().backward()
    np.testing.assert_allclose(x.grad, [-8.0, -2.0, -0.5])


def test_functional_exports_resolve_to_callables():
    assert all(callable(getattr(F, name)) for name in F.__all__)
    assert F.var is reductions.var and F.where is elementwise.where
