"""`TrainConfig`: every choice of a training run in one dataclass, saved beside its checkpoints.

The command line maps its options one to one onto these fields, and a resumed run reads them
back from the run folder, so a run is fully described by its `config.json`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

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
        problems = []
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("lr", "width"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("weight_decay", "clip_weights", "warmup_epochs", "limit_train"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training options {unknown}; known: {sorted(known)}")
        return cls(**values)
