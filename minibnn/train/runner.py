"""Build everything a run needs from a TrainConfig, train it, and keep its folder up to date.

A run folder holds config.json, last.npz (the state after the last finished epoch: model,
optimizer, loader generators, method state, history), best.npz (the model with the best
validation accuracy), history.json, history.csv and run.json (the record naming the run and the
SHA-256 of each file). The files of an epoch are written as one transaction (runfolder.py).
`run_training(config, out_dir)` starts a run; resume.py continues one bit-exactly.
"""

from __future__ import annotations

import json
import math
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..checkpoint import CHECKPOINT_FORMAT, atomic_write_text, resolve, state_writer
from ..data import BatchLoader, DatasetInfo, eval_loader, load_dataset, transforms
from ..methods import make_recipe
from ..methods.base import build_described_model, describe_data, describe_model
from ..nn import binary as binary_nn
from ..nn.layers import BatchNorm1d, BatchNorm2d
from ..optim.schedules import ede_tk
from .config import TrainConfig
from .history import history_texts
from .loop import Callback, NonFiniteLossError, fit
from .runfolder import EpochTransaction, recover
from .setup import make_lr_schedule, make_optimizer

__all__ = ["run_training", "RunResult", "build_run", "config_text", "new_record",
           "check_batches", "describe_run"]


@dataclass
class RunResult:
    out_dir: Path
    history: list
    final: dict            # the last epoch's row
    notes: list = field(default_factory=list)   # what recovery repaired before a resume
    trained: int = 0       # epochs this call trained (0: the run had finished already)

    @property
    def val_accuracy(self) -> float:
        return float(self.final["val_accuracy"])


def describe_run(config: TrainConfig, dataset) -> dict:
    """The header fields that describe a run's model and data ("architecture", "data"), so a
    checkpoint is loaded without its dataset (methods.load_trained_model)."""
    info = DatasetInfo(config.dataset, tuple(dataset.x.shape[1:]), dataset.num_classes,
                       tuple(dataset.mean), tuple(dataset.std))
    return {"architecture": describe_model(config, info.input_shape, info.num_classes),
            "data": describe_data(info)}


def _loaders(config: TrainConfig, train, val, recipe):
    mean, std = np.array(train.mean, np.float32), np.array(train.std, np.float32)
    if config.augment:
        train_transform = transforms.train_augment(mean, std, train.x.shape[-1], train.x.shape[1])
    else:
        def train_transform(x, rng):
            return transforms.normalize(x, mean, std)

    train_loader = BatchLoader(train.x, train.y, config.batch_size, shuffle=True,
                               rng=config.seed, transform=recipe.train_transform(train_transform))
    val_loader = eval_loader(val)
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
        values = {"lr": self.lr_at(epoch)}
        for group in self.optimizer.param_groups:
            group["lr"] = values["lr"]
        if self.uses_ede:
            t, k = ede_tk(epoch, self.config.epochs, self.config.ede_t_min, self.config.ede_t_max)
            binary_nn.set_ede(self.model, t, k)
            values.update(ede_t=t, ede_k=k)
        return values


class _Checkpointer(Callback):
    """After every epoch, one transaction (runfolder.py): last.npz (full state), best.npz (when
    the epoch is the best so far), history.json/.csv, config.json and the record run.json.

    An epoch whose validation or training values are not finite, or whose weights or batch-norm
    statistics are not, is refused before anything is written, so last.npz stays the last good
    epoch."""

    def __init__(self, run, out_dir: Path, history: list, stop_after: int | None,
                 record: dict):
        self.run, self.out_dir, self.history, self.stop_after = run, out_dir, history, stop_after
        self.record = record                     # run_id, files (name -> sha256), best_epoch

    def on_epoch_end(self, epoch: int, row: dict) -> None:
        _check_finite_epoch(epoch, row, self.run.model)
        history = self.history + [row]
        state = {**self.run.state(epoch + 1, history), "run_id": self.record["run_id"]}
        tx = EpochTransaction(self.out_dir, epoch + 1)
        tx.write("last.npz", state_writer(state))
        best = max(r.get("val_accuracy", 0.0) for r in history)
        if row.get("val_accuracy", 0.0) >= best:
            tx.write("best.npz", state_writer({**state, "optimizer": {}, "loader": {}}))
            self.record["best_epoch"] = epoch + 1
        text, table = history_texts(history)
        tx.write_text("history.json", text)
        tx.write_text("history.csv", table)
        tx.write_text("config.json", config_text(self.run.config))
        tx.commit(self.record)
        self.record["files"].update(tx.files)
        self.history.append(row)
        if self.stop_after is not None and epoch + 1 >= self.stop_after:
            raise _StopRequested


def _check_finite_epoch(epoch: int, row: dict, model) -> None:
    bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise NonFiniteLossError(f"{bad[0]} became {row[bad[0]]} at epoch {epoch + 1}")
    for name, value in model.state_dict().items():
        if np.issubdtype(np.asarray(value).dtype, np.floating) and not np.all(np.isfinite(value)):
            raise NonFiniteLossError(f"the model entry {name} holds NaN or infinite values "
                                     f"after epoch {epoch + 1}")


def config_text(config: TrainConfig) -> str:
    return json.dumps(config.to_dict(), indent=2, allow_nan=False) + "\n"


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
    description: dict         # "architecture" and "data" header fields (describe_run)

    def state(self, epochs_done: int, history: list) -> dict:
        method_state = self.loss.state_dict()
        return {"format": CHECKPOINT_FORMAT, "config": self.config.to_dict(),
                **self.description,
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
    description = describe_run(config, train)
    model = build_described_model(description["architecture"], np.random.default_rng(config.seed))
    check_batches(config, len(train), model)
    recipe = make_recipe(config, model, train)
    optimizer = make_optimizer(config, model, recipe.parameters())
    train_loader, val_loader = _loaders(config, train, val, recipe)
    return _Run(config, model, optimizer, recipe, train_loader, val_loader, description)


def _train(run: _Run, out_dir: Path, start_epoch: int, history: list, quiet: bool,
           stop_after: int | None, record: dict) -> RunResult:
    config, model = run.config, run.model
    if stop_after is not None and stop_after <= start_epoch:
        return RunResult(out_dir, history, history[-1] if history else {})
    flips = binary_nn.FlipRatio(model) if not config.real else None
    if flips is not None:
        flips.update()                                   # remember the signs we start from
    clip = config.clip_weights if not config.real else 0

    def after_step():
        if clip:
            binary_nn.clip_latent_weights(model, clip)
        run.loss.after_step()

    callbacks = (_EpochSchedules(config, run.optimizer, model), run.loss,
                 _Checkpointer(run, out_dir, history, stop_after, record))
    try:
        fit(model, run.loss, run.optimizer, run.train_loader, run.val_loader, config.epochs,
            start_epoch, callbacks, after_step, evaluate_fn=run.loss.evaluate, flip_ratio=flips,
            quiet=quiet)
    except _StopRequested:
        pass
    except NonFiniteLossError as err:
        kept = (f"the last good checkpoint is {out_dir / 'last.npz'} (epoch {len(history)})"
                if history else "no epoch had finished, so no checkpoint was written")
        raise NonFiniteLossError(f"{err}; training stopped and {kept}") from None
    return RunResult(out_dir, history, history[-1] if history else {},
                     trained=len(history) - start_epoch)


def new_record() -> dict:
    """The record of a new run. The run id only names the run (so a checkpoint copied in from
    another run is recognised); it takes no part in any computation."""
    return {"run_id": secrets.token_hex(8), "files": {}}


def run_training(config: TrainConfig, out_dir: str | Path, quiet: bool = False,
                 stop_after: int | None = None) -> RunResult:
    """Train `config` from scratch into `out_dir` (which must not hold a run already).

    Everything that can fail before training (data, model, method) is built before the folder
    is made; a run that fails or is interrupted before its first epoch is written removes the
    folder again (or, for a folder that existed, what it wrote into it)."""
    out_dir = Path(out_dir)
    recover(out_dir)
    if (out_dir / "last.npz").exists() or (out_dir / "config.json").exists() and \
            _saved_config(out_dir) != config.to_dict():
        raise ValueError(f"{out_dir} already holds a run; continue it with "
                         f"'minibnn train --resume {out_dir}' or choose another --out folder")
    run = build_run(config)     # a folder with this very config and no epoch: start it again
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    history: list = []
    try:
        atomic_write_text(out_dir / "config.json", config_text(config))
        return _train(run, out_dir, 0, history, quiet, stop_after, new_record())
    except BaseException:
        if not history and not resolve(out_dir, "last.npz").exists():   # nothing committed
            _remove_unstarted(out_dir, created)
        raise


def _saved_config(out_dir: Path):
    try:
        return json.loads((out_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _remove_unstarted(out_dir: Path, created: bool) -> None:
    """Undo a run that never finished an epoch: nothing in it is worth keeping."""
    if created:
        shutil.rmtree(out_dir, ignore_errors=True)
        return
    (out_dir / "config.json").unlink(missing_ok=True)
    recover(out_dir)


def check_batches(config: TrainConfig, n_train: int, model) -> None:
    """Refuse a batch size that leaves a last training batch of one image when the model
    normalises over the batch (batch norm cannot normalise a single value)."""
    if n_train % config.batch_size != 1 or n_train == 1:
        return
    if not any(isinstance(m, (BatchNorm1d, BatchNorm2d)) for m in model.modules()):
        return
    near = [b for b in range(config.batch_size - 1, 0, -1) if n_train % b != 1][:1] + \
        [b for b in range(config.batch_size + 1, n_train + 1) if n_train % b != 1][:1]
    raise ValueError(f"batch size {config.batch_size} leaves a last training batch of one image "
                     f"({n_train} images = {n_train // config.batch_size} x {config.batch_size} "
                     f"+ 1), which batch normalization cannot normalize; choose another batch "
                     f"size, e.g. {' or '.join(map(str, near))}")
