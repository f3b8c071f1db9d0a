"""What every training method shares: the Recipe interface, LossOutput, the plain cross-entropy
baseline (method "ce"), the method registry, and the one loader of trained models from
checkpoints (teachers, step-1 students, `minibnn eval`).

A method is registered under its name (`register("lcr", lcr_recipe)`; methods/__init__.py
registers the three paper methods, this module registers "ce") as any object with

    add_arguments(group)                 its command-line options (--lcr-alpha, ...)
    options_from_args(args) -> dict      those options as the config's method_options
    make_recipe(config, model, train_set) -> Recipe
    model_kwargs(config) -> dict         (optional) extra build_model arguments, e.g. an MLP head
    DEFAULTS                             (optional) its options' defaults (sweeps read them)
    USES_TEACHER                         (optional, default True) whether --teacher means anything

`config` is any object with the training fields (train.TrainConfig in practice; this layer never
imports it). A checkpoint describes its model (header fields "architecture" and "data", written
by train since 0.2), so `load_trained_model` builds the network without reading a dataset;
checkpoints of 0.1.0 are described from their config and the dataset's static metadata.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .. import functional as F
from ..autograd import Tensor, no_grad
from ..checkpoint import CheckpointError, check_header, checkpoint_file, load_state
from ..data import DatasetInfo, dataset_info
from ..models import build_model

__all__ = ["Recipe", "LossOutput", "cross_entropy_loss", "evaluate", "MetricTotals",
           "CrossEntropy", "METHODS", "register", "method", "available_methods",
           "add_method_arguments", "options_from_args", "make_recipe", "model_kwargs",
           "uses_teacher", "with_defaults", "describe_model", "build_described_model",
           "TrainedModel", "model_from_state", "load_trained_model", "load_teacher"]


# ------------------------------------------------------------------ losses and recipes
@dataclass
class LossOutput:
    loss: Tensor                              # scalar to minimise
    logits: Tensor | None = None              # (N, classes), for accuracy
    terms: dict[str, float] = field(default_factory=dict)


def cross_entropy_loss(model, batch) -> LossOutput:
    """The plain supervised loss: CE(model(x), y)."""
    x, y = batch[0], batch[1]
    logits = model(Tensor(x))
    loss = F.cross_entropy(logits, y)
    return LossOutput(loss, logits, {"ce": loss.item()})


class MetricTotals:
    """Running sums of the per-batch loss terms and correct predictions."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.correct = self.seen = 0
        self.with_logits = False

    def add(self, out: LossOutput, labels: np.ndarray) -> None:
        n = len(labels)
        for name, value in {"loss": out.loss.item(), **out.terms}.items():
            self.sums[name] = self.sums.get(name, 0.0) + value * n
        if out.logits is not None:
            self.with_logits = True
            self.correct += int(np.sum(np.argmax(out.logits.data, axis=1) == labels))
        self.seen += n

    def means(self, prefix: str) -> dict:
        row = {f"{prefix}{k}": v / max(self.seen, 1) for k, v in self.sums.items()}
        if self.with_logits:
            row[f"{prefix}accuracy"] = self.correct / max(self.seen, 1)
        return row


def evaluate(model, loader, loss_fn=cross_entropy_loss) -> dict:
    """Mean loss terms and accuracy ("val_" keys) over `loader`, in eval mode, without gradients."""
    model.eval()
    totals = MetricTotals()
    with no_grad():
        for batch in loader:
            totals.add(loss_fn(model, batch), batch[1])
    return totals.means("val_")


class Recipe:
    """The loss of a method and its hooks into the training loop (defaults do nothing)."""

    def __call__(self, model, batch) -> LossOutput:
        """(model, (x, y, idx)) -> LossOutput(loss, logits or None, terms)."""
        raise NotImplementedError(f"{type(self).__name__} must define __call__")

    def parameters(self) -> list:
        """Extra trainable Parameters owned by the method (LCR's gammas, trainable heads)."""
        return []

    def state_dict(self) -> dict:
        """Everything a resumed run needs (memory banks, queues, samplers' generators, ...)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def on_epoch_start(self, epoch: int) -> dict:
        """Called before each epoch; returns values to log."""
        return {}

    def on_epoch_end(self, epoch: int, row: dict) -> None:
        """Called after each epoch with its history row; may add entries to it."""

    def after_step(self) -> None:
        """Called after every optimizer step (e.g. a momentum encoder's update)."""

    def evaluate(self, model, val_loader) -> dict:
        """Validation metrics with "val_"-prefixed keys; by default cross-entropy and accuracy."""
        return evaluate(model, val_loader)

    def train_transform(self, transform):
        """Wrap the loader's per-batch transform (x, rng) -> x, e.g. to return two views."""
        return transform


class CrossEntropy(Recipe):
    """The plain supervised recipe (method "ce"): CE(model(x), y), no hooks."""

    def __call__(self, model, batch) -> LossOutput:
        return cross_entropy_loss(model, batch)


class _CrossEntropyMethod:
    """Method "ce" as the registry sees it: no options, no teacher, no extra model arguments."""

    USES_TEACHER = False
    DESCRIPTION = "plain cross-entropy"
    DEFAULTS: dict = {}

    @staticmethod
    def add_arguments(group) -> None:
        pass

    @staticmethod
    def options_from_args(args: argparse.Namespace) -> dict:
        return {}

    @staticmethod
    def make_recipe(config, model, train_set) -> Recipe:
        return CrossEntropy()


def with_defaults(method: str, options: dict, defaults: dict) -> dict:
    """A method's options merged over its defaults; unknown keys are an error naming them."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(f"unknown {method} options {unknown}; known: {sorted(defaults)}")
    return {**defaults, **options}


# --------------------------------------------------------------------------- registry
METHODS: dict = {}


def register(name: str, method_impl) -> None:
    """Make `method_impl` (a recipe module or an object with the same functions) `--method name`."""
    METHODS[name] = method_impl


register("ce", _CrossEntropyMethod)


def available_methods() -> list[str]:
    return list(METHODS)


def method(name: str):
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def make_recipe(config, model, train_set) -> Recipe:
    return method(config.method).make_recipe(config, model, train_set)


def model_kwargs(config) -> dict:
    """Extra keyword arguments for build_model that a method asks for (e.g. an MLP head)."""
    impl = method(config.method)
    return impl.model_kwargs(config) if hasattr(impl, "model_kwargs") else {}


def uses_teacher(name: str) -> bool:
    return bool(getattr(method(name), "USES_TEACHER", True))


def add_method_arguments(parser: argparse.ArgumentParser) -> None:
    for name, impl in METHODS.items():             # --help leaves out a group without options
        impl.add_arguments(parser.add_argument_group(f"method {name}"))


def options_from_args(name: str, args: argparse.Namespace) -> dict:
    return method(name).options_from_args(args)


# ------------------------------------------------------------ trained models from checkpoints
def describe_model(config, input_shape, num_classes: int) -> dict:
    """The build_model arguments of a run (its "architecture" header field): architecture name,
    binary or real, input shape, class count, width, quantizers and the method's extra kwargs."""
    c, h = int(input_shape[0]), int(input_shape[1])
    return {"name": config.model, "binary": not config.real, "in_channels": c, "image_size": h,
            "num_classes": int(num_classes), "width": config.width,
            "input_quantizer": config.input_quantizer,
            "weight_quantizer": config.weight_quantizer, "kwargs": model_kwargs(config)}


def build_described_model(description: dict, rng):
    """The freshly initialised model of a description made by describe_model."""
    d = description
    return build_model(d["name"], binary=d["binary"], in_channels=d["in_channels"],
                       image_size=d["image_size"], num_classes=d["num_classes"], width=d["width"],
                       input_quantizer=d["input_quantizer"],
                       weight_quantizer=d["weight_quantizer"], rng=rng, **d["kwargs"])


def describe_data(info: DatasetInfo) -> dict:
    """The "data" header field: dataset name, input shape, class count, normalisation."""
    return {"dataset": info.name, "input_shape": [int(v) for v in info.input_shape],
            "num_classes": int(info.num_classes), "mean": [float(v) for v in info.mean],
            "std": [float(v) for v in info.std]}


@dataclass
class TrainedModel:
    """A model loaded from a checkpoint (in eval mode) and what the checkpoint says about it."""

    model: object
    config: dict            # the run's training options (TrainConfig.to_dict())
    data: DatasetInfo       # dataset name, input shape, classes, normalisation
    path: Path              # the checkpoint file read
    state: dict             # the whole checkpoint (method state, history, ...)

    @property
    def description(self) -> str:
        c = self.config
        kind = "real-valued" if c.get("real") else "binary"
        return f"{kind} {c.get('model')} (width {c.get('width')})"


def _descriptions(state: dict) -> tuple[dict, DatasetInfo]:
    """(architecture, data) of a checkpoint; for one written by 0.1.0 (no description), made
    from its config and the dataset's static metadata (no images are read)."""
    config = state["config"]
    if "architecture" in state and "data" in state:
        d = state["data"]
        info = DatasetInfo(d["dataset"], tuple(d["input_shape"]), d["num_classes"],
                           tuple(d["mean"]), tuple(d["std"]))
        return state["architecture"], info
    info = dataset_info(config["dataset"])
    return describe_model(SimpleNamespace(**config), info.input_shape, info.num_classes), info


def model_from_state(state: dict, path) -> TrainedModel:
    """Build the model a checked checkpoint describes and load its weights (one error line)."""
    config = state["config"]
    try:
        architecture, info = _descriptions(state)
        model = build_described_model(architecture, np.random.default_rng(config.get("seed", 0)))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot build the model it describes "
                              f"({type(err).__name__}: {err})") from None
    try:
        model.load_state_dict(state["model"])
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{path}: the model entries do not fit a {config.get('model')} "
                              f"({err})") from None
    return TrainedModel(model.eval(), config, info, Path(path), state)


def load_trained_model(path) -> TrainedModel:
    """The trained model of a checkpoint (last.npz / best.npz) or run folder (its best.npz,
    else last.npz), in eval mode; the folder is read as it stands, nothing is written."""
    path = checkpoint_file(path)
    return model_from_state(check_header(load_state(path), path), path)


def load_teacher(path, student_input_shape, method_name: str) -> TrainedModel:
    """A frozen teacher (eval mode, no parameter takes gradients) whose inputs match the
    student's; the one loader of every method that learns from a trained network."""
    teacher = load_trained_model(path)
    for p in teacher.model.parameters():
        p.requires_grad = False
    theirs, mine = tuple(teacher.model.input_shape), tuple(student_input_shape)
    if theirs != mine:
        raise ValueError(f"{method_name}: the teacher {teacher.path} takes inputs {theirs}, the "
                         f"student {mine}; train the teacher on the student's dataset")
    return teacher
