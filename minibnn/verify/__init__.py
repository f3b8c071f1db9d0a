"""The verification toolkit: check a port of a BNN method (another framework, another code base)
against minibnn, tensor by tensor or layer by layer.

    loading.py    load_callable("module:function" | "file.py:function") for the CLI
    layouts.py    layout declarations (KERAS_KERNEL, QUEUE_COLUMNS, CHANNEL_BIAS, transpose, ...)
    adapter.py    what the framework adapters share (per-case entries, name/shape matching)
    torch.py      TorchPort: PyTorch functions and modules -> the verify callable (needs torch)
    jax.py        JaxPort: JAX functions -> the verify callable (needs jax)
    keras.py      KerasPort: Keras 3 layers and functions -> the verify callable (needs keras)
    models.py     compare_models: a minibnn model vs a PyTorch port, layer by layer (needs torch)
    pytest.py     golden_tests: one pytest test per case and tensor (needs pytest)

The golden machinery itself (cases, compare, verify, conventions, finite differences, JSON /
JUnit reports) lives in minibnn.golden and is re-exported here. The framework modules are
imported on demand (`from minibnn.verify.torch import TorchPort`), so this package imports
without any framework; each raises an ImportError naming the missing package.
"""

from ..golden import Report, Row, SuiteReport, compare, load_case, load_cases, verify
from ..golden.conventions import CONVENTIONS, parse_conventions
from ..golden.fdcheck import finite_difference_check
from ..golden.reports import to_json, to_junit, write_json, write_junit
from .layouts import (CHANNEL_BIAS, KERAS_DENSE, KERAS_KERNEL, NHWC, QUEUE_COLUMNS, Layout,
                      reshape, transpose)
from .loading import load_callable

__all__ = ["verify", "compare", "load_cases", "load_case", "Report", "Row", "SuiteReport",
           "CONVENTIONS", "parse_conventions", "finite_difference_check", "to_json", "to_junit",
           "write_json", "write_junit", "Layout", "transpose", "reshape", "KERAS_KERNEL",
           "KERAS_DENSE", "NHWC", "QUEUE_COLUMNS", "CHANNEL_BIAS", "load_callable"]
