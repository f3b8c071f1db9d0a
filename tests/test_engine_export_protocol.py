"""The export protocol (engine/export.py): an architecture defined here, unknown to the engine,
exports exactly through export_packed(builder, x); the builder names what it cannot run. (That
the engine imports nothing above nn is an import contract, checked by test_architecture.py.)"""

import numpy as np
import pytest

from minibnn import functional as F
from minibnn.autograd import Tensor
from minibnn.engine import export
from minibnn.engine.export import ExportError
from minibnn.models import Backbone
from minibnn.nn import (AvgPool2d, BatchNorm2d, BinaryConv2d, Conv2d, Hardtanh, Identity, Linear,
                        MaxPool2d, Module, RSign, Sequential, Tanh, as_generator)
from test_engine_export import check_against_model, perturb_batchnorm


class TwoPathBlock(Module):
    """s = sign(x + b); out = hardtanh(concat[BN_a(bconv_a(s)) + x, BN_b(bconv_b(s)) + x]):
    C -> 2C channels, two binary 3x3 convs reading the same signs."""

    def __init__(self, c: int, rng):
        super().__init__()
        conv = lambda: BinaryConv2d(c, c, 3, 1, 1, input_quantizer="identity",  # noqa: E731
                                    weight_quantizer="xnor", rng=rng)
        self.sign = RSign(c, quantizer="ste")
        self.conv_a, self.conv_b = conv(), conv()
        self.bn_a, self.bn_b = BatchNorm2d(c), BatchNorm2d(c)
        self.act = Hardtanh()

    def forward(self, x: Tensor) -> Tensor:
        s = self.sign(x)
        parts = [self.bn_a(self.conv_a(s)) + x, self.bn_b(self.conv_b(s)) + x]
        return self.act(F.concatenate(parts, axis=1))

    def export_packed(self, builder, x):
        return builder.layer([self.conv_a, self.conv_b], x, bns=[self.bn_a, self.bn_b],
                             act=self.act, rsign=self.sign,
                             residual=builder.residual(x, repeats=2))


class GlobalMean(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.mean(axis=(2, 3))

    def export_packed(self, builder, x):
        return builder.global_avg_pool(x, self)


class TinyNet(Module):
    """FP stem -> TwoPathBlock -> binary conv + maxpool + BN + hardtanh -> mean -> FP linear."""

    input_shape = (1, 12, 12)

    def __init__(self, rng=None, tail=None):
        super().__init__()
        rng = as_generator(rng)
        self.stem = Sequential(Conv2d(1, 8, 3, 1, 1, bias=False, rng=rng), BatchNorm2d(8),
                               Hardtanh())
        self.block = TwoPathBlock(8, rng)
        self.body = Sequential(BinaryConv2d(16, 16, 3, 1, 1, input_quantizer="ste", rng=rng),
                               MaxPool2d(2), BatchNorm2d(16), tail or Hardtanh())
        self.pool = GlobalMean()
        self.classifier = Linear(16, 5, rng=rng)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.body(self.block(self.stem(x)))))

    def export_packed(self, builder, x):
        return builder.chain([self.stem, self.block, self.body, self.pool, self.classifier], x)


def tiny(seed=0, **kw):
    model = TinyNet(rng=seed, **kw)
    perturb_batchnorm(model, np.random.default_rng(seed))
    return model.eval()


@pytest.mark.parametrize("seed", [0, 1])
def test_an_architecture_unknown_to_the_engine_exports_exactly(seed):
    model = tiny(seed)
    packed = export(model)
    x = np.random.default_rng(seed + 10).normal(size=(4, 1, 12, 12)).astype(np.float32)
    check_against_model(model, packed, x)         # decisions, logits, signs, accumulators
    two_path = next(n for n in packed.nodes if n.name == "block.conv_a")
    assert [s[0] for s in two_path.sources] == ["block.conv_a", "block.conv_b"]
    assert two_path.stage.res_reps == 2 and "sign_bias" in packed.nodes[0].stage.arrays


def test_a_module_without_the_protocol_is_named():
    model = tiny()
    model.block = Sequential(Tanh())
    with pytest.raises(ExportError, match=r"'block.0' \(Tanh\).*export_packed"):
        export(model)
    with pytest.raises(ExportError, match="export supports.*export_packed.*found Sequential"):
        export(Sequential(Conv2d(1, 2, 3)))

    class Hookless(Backbone):                    # a Backbone that never said how it exports
        input_shape = (1, 4, 4)
    with pytest.raises(ExportError, match="Hookless.*does not describe its packed export"):
        export(Hookless())


def test_avg_pool_is_not_taken_for_a_max_pool():
    model = tiny()
    model.body._modules["1"] = AvgPool2d(2)
    with pytest.raises(ExportError, match=r"'body.1' \(AvgPool2d\)"):
        export(model)


def test_a_block_that_forgets_a_leaf_or_its_result_fails():
    model = tiny()
    model.block.unused = Identity()              # a leaf no export step accounts for
    with pytest.raises(ExportError, match="'block.unused'.*not part of any exported step"):
        export(model)
    model = tiny()
    model.pool.export_packed = lambda builder, x: None
    with pytest.raises(ExportError, match="'pool'.*must return"):
        export(model)

