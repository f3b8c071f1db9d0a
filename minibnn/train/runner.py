"""Build everything a run needs from a TrainConfig, train it, and keep its folder up to date.

A run folder holds config.json, last.npz (the state after the last finished epoch: model,
optimizer, loader generators, method state, history), best.npz (the model with the best
validation accuracy), history.json and history.csv. `run_training(config, out_dir)` starts a run;
`resume_training(out_dir)` continues one bit-exactly from last.npz.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import BatchLoader, load_dataset, transforms
from ..models import build_model
from ..nn import binary as binary_nn
from .checkpoint import CheckpointError, atomic_write_text, load_state, save_state
from .config import TrainConfig
from .history import write_history
from ..methods import Recipe
from .loop import Callback, NonFiniteLossError, cross_entropy_loss, evaluate, fit
from .setup import make_lr_schedule, make_optimizer

__all__ = ["run_training", "resume_training", "load_model", "RunResult", "build_run",
           "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "minibnn-checkpoint-1"


@dataclass
class RunResult:
    out_dir: Path
    history: list
    final: dict            # the last epoch's row

    @property
    def val_accuracy(self) -> float:
        return float(self.final["val_accuracy"])


def _model_for(config: TrainConfig, dataset, rng) -> object:
    from ..methods import model_options

    c, h = dataset.x.shape[1], dataset.x.shape[2]
    return build_model(config.model, binary=not config.real, in_channels=c, image_size=h,
                       num_classes=dataset.num_classes, width=config.width,
                       input_quantizer=config.input_quantizer,
                       weight_quantizer=config.weight_quantizer, rng=rng, **model_options(config))


def _loaders(config: TrainConfig, train, val, recipe):
    mean, std = np.array(train.mean, np.float32), np.array(train.std, np.float32)

    def train_transform(x, rng):
        x = transforms.normalize(x, mean, std)
        if config.augment:
            x = transforms.pad_random_crop(x, 4 if x.shape[-1] >= 32 else 2, rng)
            if x.shape[1] == 3:
                x = transforms.random_hflip(x, rng)
        return x

    train_loader = BatchLoader(train.x, train.y, config.batch_size, shuffle=True,
                               rng=config.seed, transform=recipe.train_transform(train_transform))
    val_loader = BatchLoader(val.x, val.y, 500, shuffle=False,
                             transform=lambda x, rng: transforms.normalize(x, mean, std))
    return train_loader, val_loader


class _EpochSchedules(Callback):
    """Sets the learning rate (and the EDE t, k of binary layers) at the start of each epoch."""

    def __init__(self, config: TrainConfig, optimizer, model):
        self.config, self.optimizer, self.model = config, optimizer, model
        self.lr_at = make_lr_schedule(config)
        self.uses_ede = any(
            getattr(q, "name", "") == "ede"
            for _, layer in binary_nn.binary_layers(model)
            for q in (layer.input_quantizer, layer.weight_quantizer))

    def on_epoch_start(self, epoch: int) -> dict:
        from ..optim.schedules import ede_tk

        values = {"lr": self.lr_at(epoch)}
        for group in self.optimizer.param_groups:
            group["lr"] = values["lr"]
        if self.uses_ede:
            t, k = ede_tk(epoch, self.config.epochs, self.config.ede_t_min, self.config.ede_t_max)
            binary_nn.set_ede(self.model, t, k)
            values.update(ede_t=t, ede_k=k)
        return values


class _Checkpointer(Callback):
    """After every epoch: last.npz (full state), best.npz (best model), history files."""

    def __init__(self, run, out_dir: Path, history: list, stop_after: int | None):
        self.run, self.out_dir, self.history, self.stop_after = run, out_dir, history, stop_after

    def on_epoch_end(self, epoch: int, row: dict) -> None:
        self.history.append(row)
        state = self.run.state(epoch + 1, self.history)
        save_state(self.out_dir / "last.npz", state)
        best = max(r.get("val_accuracy", 0.0) for r in self.history)
        if row.get("val_accuracy", 0.0) >= best:
            save_state(self.out_dir / "best.npz", {**state, "optimizer": {}, "loader": {}})
        write_history(self.out_dir, self.history)
        if self.stop_after is not None and epoch + 1 >= self.stop_after:
            raise _StopRequested


class _StopRequested(Exception):
    """Internal: end the run after a chosen epoch (tests and `--stop-after`)."""


@dataclass
class _Run:
    config: TrainConfig
    model: object
    optimizer: object
    loss: object
    train_loader: object
    val_loader: object

    def state(self, epochs_done: int, history: list) -> dict:
        method_state = self.loss.state_dict()
        return {"format": CHECKPOINT_FORMAT, "config": self.config.to_dict(),
                "epoch": epochs_done, "model": dict(self.model.state_dict()),
                "optimizer": self.optimizer.state_dict(), "loader": self.train_loader.state_dict(),
                "method": method_state, "history": history}

    def load(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.train_loader.load_state_dict(state["loader"])
        self.loss.load_state_dict(state["method"])


def build_run(config: TrainConfig) -> _Run:
    """Dataset, loaders, model, optimizer and loss of a config (nothing is trained yet)."""
    train, val = load_dataset(config.dataset, config.data_dir)
    if config.limit_train:
        train = train.subset(np.arange(min(config.limit_train, len(train))))
    model = _model_for(config, train, np.random.default_rng(config.seed))
    recipe = make_recipe(config, model, train)
    optimizer = make_optimizer(config, model, recipe.parameters())
    train_loader, val_loader = _loaders(config, train, val, recipe)
    return _Run(config, model, optimizer, recipe, train_loader, val_loader)


class _CrossEntropy(Recipe):
    """The plain supervised recipe (method "ce")."""

    def __call__(self, model, batch):
        return cross_entropy_loss(model, batch)


def make_recipe(config: TrainConfig, model, train_set) -> Recipe:
    if config.method == "ce":
        return _CrossEntropy()
    from ..methods import make_loss

    return make_loss(config, model, train_set)


def _train(run: _Run, out_dir: Path, start_epoch: int, history: list, quiet: bool,
           stop_after: int | None) -> RunResult:
    config, model = run.config, run.model
    flips = binary_nn.FlipRatio(model) if not config.real else None
    if flips is not None:
        flips.update()                                   # remember the signs we start from
    clip = config.clip_weights if not config.real else 0

    def after_step():
        if clip:
            binary_nn.clip_latent_weights(model, clip)
        run.loss.after_step()

    def evaluate_fn(model, loader):
        return run.loss.evaluate(model, loader) or evaluate(model, loader)

    callbacks = (_EpochSchedules(config, run.optimizer, model), run.loss,
                 _Checkpointer(run, out_dir, history, stop_after))
    try:
        fit(model, run.loss, run.optimizer, run.train_loader, run.val_loader, config.epochs,
            start_epoch, callbacks, after_step, evaluate_fn=evaluate_fn, flip_ratio=flips,
            quiet=quiet)
    except _StopRequested:
        pass
    except NonFiniteLossError as err:
        kept = (f"the last good checkpoint is {out_dir / 'last.npz'} (epoch {len(history)})"
                if history else "no epoch had finished, so no checkpoint was written")
        raise NonFiniteLossError(f"{err}; training stopped and {kept}") from None
    return RunResult(out_dir, history, history[-1] if history else {})


def run_training(config: TrainConfig, out_dir: str | Path, quiet: bool = False,
                 stop_after: int | None = None) -> RunResult:
    """Train `config` from scratch into `out_dir` (which must not hold a run already)."""
    out_dir = Path(out_dir)
    if (out_dir / "last.npz").exists():
        raise ValueError(f"{out_dir} already holds a run (last.npz); continue it with "
                         f"'minibnn train --resume {out_dir}' or choose another --out folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
    return _train(build_run(config), out_dir, 0, [], quiet, stop_after)


def resume_training(out_dir: str | Path, epochs: int | None = None, quiet: bool = False,
                    stop_after: int | None = None) -> RunResult:
    """Continue the run in `out_dir` from last.npz, bit-exactly; `epochs` may extend it."""
    out_dir = Path(out_dir)
    state = load_state(out_dir / "last.npz")
    _check_format(state, out_dir / "last.npz")
    config = TrainConfig.from_dict(state["config"])
    if epochs is not None:
        config.epochs = epochs
    run = build_run(config)
    run.load(state)
    return _train(run, out_dir, int(state["epoch"]), list(state["history"]), quiet, stop_after)


def _check_format(state: dict, path: Path) -> None:
    if state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a minibnn training checkpoint "
                              f"(format {state.get('format')!r}, expected {CHECKPOINT_FORMAT!r})")


def load_model(path: str | Path):
    """(model in eval mode, TrainConfig) from a checkpoint (last.npz / best.npz) or run folder."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.npz" if (path / "best.npz").exists() else path / "last.npz"
    state = load_state(path)
    _check_format(state, path)
    config = TrainConfig.from_dict(state["config"])
    train, _ = load_dataset(config.dataset, config.data_dir)
    model = _model_for(config, train, np.random.default_rng(config.seed))
    model.load_state_dict(state["model"])
    return model.eval(), config
