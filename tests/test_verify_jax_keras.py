"""The JAX and Keras 3 adapters, each skipped when its framework is not installed. Keras runs on
the torch backend here (KERAS_BACKEND=torch unless set); its TensorFlow path is not exercised."""

import os

import numpy as np
import pytest

from minibnn import golden
from minibnn.verify import KERAS_KERNEL, NHWC, QUEUE_COLUMNS


@pytest.fixture(scope="module")
def cases():
    return {c.name: c for c in golden.build_cases("quantizer.ste,s2bnn.*,op.conv2d.s2p1,"
                                                  "layer.batch_norm2d.train")}


def test_jax_port_functions_stop_gradient_layout_and_buffers(cases):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    from minibnn.verify.jax import JaxPort

    @jax.custom_vjp
    def ste(x):
        return jnp.where(x < 0, -1.0, 1.0).astype(x.dtype)
    ste.defvjp(lambda x: (ste(x), x), lambda x, g: (g * (jnp.abs(x) <= 1),))

    def moco(i, p, a):
        q, k, queue = i["q"], jax.lax.stop_gradient(i["k"]), jax.lax.stop_gradient(i["queue"])
        logits = jnp.concatenate([(q * k).sum(1, keepdims=True), q @ queue], 1) / a["tau"]
        return {"loss": -jax.nn.log_softmax(logits, axis=1)[:, 0].mean(), "logits": logits}

    def bn(i, p, a):
        x, m = i["x"], a["momentum"]
        mu, var = x.mean((0, 2, 3)), x.var((0, 2, 3))
        n = x.size / x.shape[1]
        shape = (1, -1, 1, 1)
        y = ((x - mu.reshape(shape)) / jnp.sqrt(var.reshape(shape) + a["eps"])
             * p["weight"].reshape(shape) + p["bias"].reshape(shape))
        mu, var = jax.lax.stop_gradient(mu), jax.lax.stop_gradient(var)
        return {"y": y, "running_mean": (1 - m) * p["running_mean"] + m * mu,
                "running_var": (1 - m) * p["running_var"] + m * var * n / (n - 1)}

    port = JaxPort()
    port.function("quantizer.ste", lambda i, p, a: ste(i["x"]))
    port.function("s2bnn.moco_infonce", moco, layout={"queue": QUEUE_COLUMNS})
    port.function("layer.batch_norm2d.train", bn)
    result = golden.verify(list(cases.values()), port)
    assert result.ok and result.counts()["OK"] == 3, str(result)
    c = cases["s2bnn.moco_infonce"]
    got = port(c.name, c.inputs, c.params, c.upstream, c.attrs)
    assert got["grad_queue"].shape == (8, 16) and not got["grad_queue"].any()   # stopped
    half = JaxPort(jnp.bfloat16)
    half.entries = port.entries
    assert golden.verify(list(cases.values()), half, tolerance_scale=1000).ok


def test_keras_layers_with_keras_layouts(cases):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    from minibnn.verify.keras import KerasPort

    port = KerasPort()
    port.layer("op.conv2d.s2p1", lambda a: keras.Sequential([
        keras.layers.ZeroPadding2D(a["padding"]),
        keras.layers.Conv2D(4, 3, strides=a["stride"], name="conv")]),
        layout={"x": NHWC, "y": NHWC, "weight": KERAS_KERNEL})
    port.layer("layer.batch_norm2d.train", lambda a: keras.layers.BatchNormalization(
        axis=1, momentum=1 - a["momentum"], epsilon=a["eps"]))
    port.function("s2bnn.distribution_loss", lambda i, p, a: -(
        keras.ops.softmax(keras.ops.stop_gradient(i["teacher"]) / a["tau"], axis=1)
        * keras.ops.log_softmax(i["student"] / a["tau"], axis=1)).sum(1).mean())
    result = golden.verify(list(cases.values()), port)
    assert result["op.conv2d.s2p1"].ok, str(result["op.conv2d.s2p1"])
    assert result["s2bnn.distribution_loss"].ok
    bn = result["layer.batch_norm2d.train"]
    # Keras updates the moving variance with the BIASED batch variance (torch: unbiased)
    assert {r.tensor for r in bn.failures} == {"running_var"}
    ratio = np.float64(bn.row("running_var").max_rel)
    assert 0 < ratio < 0.05
