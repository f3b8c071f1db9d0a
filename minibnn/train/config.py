"""`TrainConfig`: every choice of a training run in one dataclass, saved beside its checkpoints.

The command line maps its options one to one onto these fields, and a resumed run reads them
back from the run folder, so a run is fully described by its `config.json`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..quantizers import check_quantizer_name

__all__ = ["TrainConfig", "OPTIMIZERS", "SCHEDULES"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "linear", "step", "constant")


@dataclass
class TrainConfig:
    """A training run. Defaults train the small binary CNN on the bundled MNIST test set."""

    model: str = "cnn"
    dataset: str = "mnist-t10k"
    data_dir: str | None = None
    real: bool = False                     # train the real-valued twin instead of the BNN
    width: float = 1.0
    input_quantizer: str | None = None     # None: the architecture's default
    weight_quantizer: str | None = None
    optimizer: str = "adam"
    lr: float = 2e-3
    momentum: float = 0.9                  # SGD only
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_epochs: int = 0
    epochs: int = 8
    batch_size: int = 128
    seed: int = 0
    augment: bool = False                  # pad-4 random crop (+ flip on colour data)
    clip_weights: float = 1.0              # clip latent binary weights to +-this after each step; 0: off
    ede_t_min: float = 1e-3                # IR-Net EDE schedule, used when a quantizer is "ede"
    ede_t_max: float = 10.0
    limit_train: int = 0                   # use only the first N training images (0: all)
    method: str = "ce"
    method_options: dict[str, Any] = field(default_factory=dict)
    teacher: str | None = None             # checkpoint of a teacher network, for the methods

    def __post_init__(self) -> None:
        for name in _FLOATS + _INTS + _BOOLS:            # NumPy scalars -> Python (JSON-able)
            if isinstance(getattr(self, name), np.generic):
                setattr(self, name, getattr(self, name).item())
        problems = _type_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in _FLOATS:
            if not math.isfinite(getattr(self, name)):
                problems.append(f"{name} must be a finite number, got {getattr(self, name)}")
        for name in ("lr", "width"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("weight_decay", "clip_weights", "warmup_epochs", "limit_train", "momentum",
                     "ede_t_min", "ede_t_max"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        for name, role in (("input_quantizer", "input"), ("weight_quantizer", "weight")):
            if getattr(self, name) is not None:
                try:
                    check_quantizer_name(getattr(self, name), role)
                except ValueError as err:
                    problems.append(f"{name}: {err}")
        if problems:
            raise ValueError("; ".join(dict.fromkeys(problems)))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        if not isinstance(values, dict):
            raise ValueError(f"expected a dict of training options, found {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training options {unknown}; known: {sorted(known)}")
        return cls(**values)


_FLOATS = ("width", "lr", "momentum", "weight_decay", "clip_weights", "ede_t_min", "ede_t_max")
_INTS = ("warmup_epochs", "epochs", "batch_size", "seed", "limit_train")
_BOOLS = ("real", "augment")
_STRINGS = ("model", "dataset", "optimizer", "schedule", "method")
_OPTIONAL_STRINGS = ("data_dir", "input_quantizer", "weight_quantizer", "teacher")


def _type_problems(config: TrainConfig) -> list[str]:
    """Fields of the wrong type (a hand-edited config.json, a library call with a string)."""
    def kind_ok(name, kinds, optional=False):
        value = getattr(config, name)
        if optional and value is None:
            return True
        return isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)

    checks = ([(n, (int, float), "a number", False) for n in _FLOATS]
              + [(n, (int,), "an integer", False) for n in _INTS]
              + [(n, (bool,), "true or false", False) for n in _BOOLS]
              + [(n, (str,), "a string", False) for n in _STRINGS]
              + [(n, (str,), "a string or null", True) for n in _OPTIONAL_STRINGS]
              + [("method_options", (dict,), "a dict", False)])
    return [f"{name} must be {what}, got {getattr(config, name)!r}"
            for name, kinds, what, optional in checks if not kind_ok(name, kinds, optional)]
