"""Ready-made TrainConfigs for methods whose papers fix the optimisation (S2-BNN)."""

from __future__ import annotations

from ..methods.s2bnn_options import DEFAULTS, RECOMMENDED, resolve_options
from .config import TrainConfig

__all__ = ["s2bnn_config"]


def s2bnn_config(variant: str = DEFAULTS["variant"], step: int = 2, *, real: bool = False,
                 **fields) -> TrainConfig:
    """A TrainConfig for S2-BNN with the official optimisation (Adam 3e-4, linear decay, weight
    decay 1e-4 for contrastive only, else 0) and the step's weight quantizer. `fields` override
    TrainConfig fields; keys of DEFAULTS go to method_options."""
    method = {k: fields.pop(k) for k in list(fields) if k in DEFAULTS}
    method.update(variant=variant, step=step)
    base = dict(model="reactnet", real=real, method="s2bnn", **RECOMMENDED,
                weight_decay=1e-4 if variant == "contrastive" else 0.0,
                weight_quantizer=None if real or step == 2 else "none")
    base.update(fields)
    base["method_options"] = resolve_options({**fields.get("method_options", {}), **method})
    return TrainConfig(**base)
