"""Projection heads of the contrastive methods.

`ProjectionHead` (Linear -> L2 normalise, CMIM's "Embed", arXiv:2207.02970) and `MLPHead`
(Linear -> ReLU -> Linear, the MoCo v2 head that S2-BNN puts on ReActNet, arXiv:2102.08946 /
arXiv:2003.04297).
Differences from the papers: MLPHead can L2-normalise its own output (MoCo normalises after the
encoder); whether a head is trained or frozen (CMIM freezes its random heads) is the caller's.
"""

from __future__ import annotations

from .. import functional as F
from ..autograd import Tensor
from ..nn import Linear, Module, ReLU, as_generator

__all__ = ["ProjectionHead", "MLPHead"]


class ProjectionHead(Module):
    """z = normalize(x W^T + b).  x (N, D) -> z (N, out_features) with unit L2 rows."""

    def __init__(self, in_features: int, out_features: int = 128, rng=None):
        super().__init__()
        self.linear = Linear(in_features, out_features, rng=as_generator(rng))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.linear(x.flatten(1)), axis=1)


class MLPHead(Module):
    """Linear(D, hidden) -> ReLU -> Linear(hidden, out) [-> L2 normalise].  (N, D) -> (N, out).

    With hidden = D = 1024 and out = 128 this is the MoCo v2 head of S2-BNN's ReActNet.
    """

    def __init__(self, in_features: int, hidden_features: int | None = None,
                 out_features: int = 128, normalize: bool = False, rng=None):
        super().__init__()
        rng = as_generator(rng)
        hidden_features = hidden_features or in_features
        self.fc1 = Linear(in_features, hidden_features, rng=rng)
        self.relu = ReLU()
        self.fc2 = Linear(hidden_features, out_features, rng=rng)
        self.normalize = normalize

    def forward(self, x: Tensor) -> Tensor:
        z = self.fc2(self.relu(self.fc1(x.flatten(1))))  # (N, out)
        return F.normalize(z, axis=1) if self.normalize else z

    def export_packed(self, builder, x):
        """Packed export (minibnn.engine.export's protocol): fc1 -> ReLU -> fc2 [-> L2]."""
        x = builder.chain([self.fc1, self.relu, self.fc2], x)
        return builder.l2_normalize(x) if self.normalize else x
