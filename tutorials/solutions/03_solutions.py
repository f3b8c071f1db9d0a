"""Solutions to the exercises of tutorial 03 (train a binary network); each ends with its check."""

import tempfile
from pathlib import Path

import numpy as np

from minibnn.models import build_model
from minibnn.nn import binary as binary_nn
from minibnn.summary import summary
from minibnn.train import TrainConfig, load_model, run_training

workdir = Path(tempfile.mkdtemp(prefix="minibnn-solutions-03-"))

# 1. Clipping keeps latent weights in [-1, 1]. Beyond 1 the clipped STE passes no gradient
#    (dx = dy * 1[|x| <= 1] on the weight), so only clipping or weight decay could bring the
#    weight back; with the default XNOR weights the forward still sees only its sign.
outside = {}
for clip in (0.0, 1.0):
    config = TrainConfig(model="mlp", epochs=1, limit_train=2000, lr=0.1, clip_weights=clip, seed=0)
    result = run_training(config, workdir / f"clip-{clip}", quiet=True)
    model, _ = load_model(result.out_dir / "last.npz")
    outside[clip] = sum(int(np.count_nonzero(np.abs(layer.weight.data) > 1))
                        for _, layer in binary_nn.binary_layers(model))
print("1. latent weights with |w| > 1:", outside)
assert outside[0.0] > 0 and outside[1.0] == 0

# 2. The real first layer: 784 * 512 float32 weights (plus 512 biases).
bnn_summary = summary(build_model("mlp", rng=0), (1, 28, 28))
first_layer_bytes = 784 * 512 * 4
print(f"2. first layer {first_layer_bytes / 1024:.0f} KiB of {bnn_summary.packed_bytes / 1024:.0f} KiB")
assert first_layer_bytes > bnn_summary.packed_bytes / 2
