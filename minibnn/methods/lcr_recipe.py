"""`minibnn train --method lcr`: cross-entropy plus the LCR-BNN Lipschitz retention loss.

    loss = CE(logits, y) + alpha / (B * 1e4) * L_LCR(gamma * binary stage features, reference)

Logits and binary stage features come from ONE forward pass (`model.forward_all`); the official
code runs the BNN twice per step (once for the logits, once for the features), which also
updates its batch-norm statistics twice. The reference features are either a trained
real-valued teacher's (`--lcr-reference teacher`, the official code's choice) or the BNN's own
latent real-valued forward (`--lcr-reference latent`, the paper's description); both are
detached. Reference: Shang et al., ECCV 2022, arXiv:2207.06540; docs/methods.md §2.
"""

from __future__ import annotations

import argparse
import warnings
from contextlib import contextmanager

import numpy as np

from .. import functional as F
from ..autograd import Tensor, no_grad
from ..nn import Parameter
from ..nn import binary as binary_nn
from ..quantizers import make_quantizer
from .base import LossOutput, Recipe, evaluate, load_teacher, with_defaults
from .lcr import VARIANTS, PowerIterationState, lcr_terms, loss_multiplier

__all__ = ["LCRRecipe", "add_arguments", "options_from_args", "make_recipe", "DEFAULTS",
           "REFERENCES", "latent_features"]

REFERENCES = ("teacher", "latent")
DEFAULTS = {
    "alpha": 8.0,             # official README (--alpha=8)
    "variant": "official",    # one step from the unnormalised all-ones vector
    "divisor": None,          # None: B_cfg * 1e4, the official normalisation
    "reference": "teacher",   # the official code's choice
    "teacher_mode": "eval",   # the official code leaves the teacher in train mode (see docs)
    "max_steps": None,        # exact only: power-iteration steps per call (None: to tolerance)
    "persistent": False,      # exact only: carry the start vector between calls
    "learn_gamma": True,      # official: one trainable scalar per stage, with weight decay
}


# --------------------------------------------------------------------------- options
def add_arguments(group) -> None:
    d = DEFAULTS
    group.add_argument("--lcr-alpha", type=float, default=d["alpha"],
                       help="weight of the LCR term (official README: 8; 0 gives plain IR-Net)")
    group.add_argument("--lcr-variant", choices=VARIANTS, default=d["variant"],
                       help="spectral-norm estimate: official (one step from the unnormalised "
                            "all-ones vector, C^(1/4)-biased) or exact (power iteration to "
                            "convergence)")
    group.add_argument("--lcr-divisor", type=float, default=d["divisor"], metavar="D",
                       help="the LCR term is multiplied by alpha / D; unset: batch size * 1e4, "
                            "as the official code")
    group.add_argument("--lcr-reference", choices=REFERENCES, default=d["reference"],
                       help="where the real-valued features come from: a trained real-valued "
                            "--teacher (official code) or the BNN's own latent real-valued "
                            "forward (the paper's description)")
    group.add_argument("--lcr-teacher-mode", choices=("eval", "train"), default=d["teacher_mode"],
                       help="teacher batch norm: running statistics (eval) or batch statistics "
                            "(train, as the official code)")
    group.add_argument("--lcr-max-steps", type=int, default=d["max_steps"], metavar="S",
                       help="exact variant: at most S power-iteration steps per call "
                            "(unset: iterate to tolerance, up to 1000)")
    group.add_argument("--lcr-persistent", action="store_true",
                       help="exact variant: start each power iteration from the previous "
                            "call's vector (spectral-norm-regulariser style)")
    group.add_argument("--lcr-fixed-gamma", action="store_true",
                       help="keep the per-stage scalars gamma at 1 instead of learning them")


def options_from_args(args: argparse.Namespace) -> dict:
    return {"alpha": args.lcr_alpha, "variant": args.lcr_variant, "divisor": args.lcr_divisor,
            "reference": args.lcr_reference, "teacher_mode": args.lcr_teacher_mode,
            "max_steps": args.lcr_max_steps, "persistent": args.lcr_persistent,
            "learn_gamma": not args.lcr_fixed_gamma}


def _resolve_options(options: dict) -> dict:
    o = with_defaults("LCR", options, DEFAULTS)
    if o["variant"] not in VARIANTS:
        raise ValueError(f"LCR variant must be one of {', '.join(VARIANTS)}, got {o['variant']!r}")
    if o["reference"] not in REFERENCES:
        raise ValueError(f"LCR reference must be one of {', '.join(REFERENCES)}, "
                         f"got {o['reference']!r}")
    if o["teacher_mode"] not in ("eval", "train"):
        raise ValueError(f"LCR teacher mode must be eval or train, got {o['teacher_mode']!r}")
    if o["alpha"] < 0:
        raise ValueError(f"--lcr-alpha must be >= 0, got {o['alpha']}")
    if o["divisor"] is not None and not o["divisor"] > 0:
        raise ValueError(f"--lcr-divisor must be positive, got {o['divisor']}")
    if o["variant"] == "official" and (o["persistent"] or o["max_steps"] is not None):
        raise ValueError("--lcr-persistent and --lcr-max-steps apply to --lcr-variant exact only "
                         "(the official estimate is one fixed step from the all-ones vector)")
    if o["max_steps"] is not None and o["max_steps"] < 1:
        raise ValueError(f"--lcr-max-steps must be >= 1, got {o['max_steps']}")
    return o


# -------------------------------------------------------------------- reference nets
@contextmanager
def _latent_mode(model):
    """Inside: binary layers use identity activations and their raw latent weights, every
    batch norm uses batch statistics, and running statistics are restored on exit."""
    layers = [layer for _, layer in binary_nn.binary_layers(model)]
    quantizers = [(layer.input_quantizer, layer.weight_quantizer) for layer in layers]
    buffers = [(b, b.copy()) for _, b in model.named_buffers()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        for layer in layers:
            layer.input_quantizer = make_quantizer("identity", "input")
            layer.weight_quantizer = make_quantizer("none", "weight")
        model.train()
        yield model
    finally:
        for layer, (qin, qw) in zip(layers, quantizers):
            layer.input_quantizer, layer.weight_quantizer = qin, qw
        for array, saved in buffers:
            array[...] = saved
        for m, training in modes:
            object.__setattr__(m, "training", training)


def latent_features(model, x: np.ndarray) -> list:
    """Stage features of `model` run as its latent real-valued network (detached).

    Same weights, no binarization: activations pass unchanged and each binary layer uses its
    real latent W (not IR-Net's standardised weight), batch norms use the batch's statistics
    (the binary network's running statistics do not fit real-valued activations) and are left
    untouched. This is the paper's "latent full-precision counterpart"; it is not a trained
    real-valued network, so early in training it is as random as the BNN itself.
    """
    with no_grad(), _latent_mode(model):
        return [Tensor(f.data) for f in model.forward_features(Tensor(x))]


def _stage_shapes(model, x: np.ndarray) -> list:
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with no_grad():
            return [tuple(f.shape) for f in model.forward_features(Tensor(x))]
    finally:
        for m, training in modes:
            object.__setattr__(m, "training", training)


def _load_teacher(config, model):
    if not config.teacher:
        raise ValueError("--lcr-reference teacher needs --teacher CKPT (train one with "
                         "'minibnn train --real --model MODEL ...'), or use --lcr-reference latent")
    loaded = load_teacher(config.teacher, model.input_shape, "lcr")
    teacher, tconfig = loaded.model, loaded.config
    if not tconfig["real"]:
        warnings.warn(f"the LCR teacher {config.teacher} is a binary network; the official code "
                      "uses a real-valued one", stacklevel=3)
    if loaded.data.name != config.dataset:
        warnings.warn(f"the LCR teacher was trained on {loaded.data.name!r}, the student "
                      f"trains on {config.dataset!r}", stacklevel=3)
    x = np.zeros((2,) + tuple(model.input_shape), np.float32)
    mine, theirs = _stage_shapes(model, x), _stage_shapes(teacher, x)
    if mine != theirs:
        raise ValueError(f"the LCR teacher's stage shapes {theirs} ({tconfig['model']}, width "
                         f"{tconfig['width']}) do not match the student's {mine} "
                         f"({config.model}, width {config.width}); train the teacher with the "
                         f"same --model and --width")
    return teacher


# ----------------------------------------------------------------------------- recipe
class _PairMeans:
    """Sample-weighted running means of the per-pair estimates over an epoch."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, terms, n: int) -> None:
        for i, (sb, sr) in enumerate(zip(terms.sigma_binary, terms.sigma_real)):
            for name, s in ((f"pair{i + 1}_sigma_bin", sb), (f"pair{i + 1}_sigma_ref", sr)):
                self.sums[name] = self.sums.get(name, 0.0) + float(np.sum(s.data))
        self.count += n

    def means(self, prefix: str) -> dict:
        return {f"{prefix}{k}": v / self.count for k, v in self.sums.items()} if self.count else {}


class LCRRecipe(Recipe):
    """CE + alpha / divisor * L_LCR, with one learnable gamma per stage.

    reference: a teacher network (its stage features, detached; eval or train mode) or None for
    the BNN's own latent real-valued forward. gamma starts at 1 and is returned by parameters(),
    so the optimizer trains it with the configured weight decay (as the official code).
    Logged per epoch: train_/val_ ce and lcr (unscaled L_LCR), lcr_gamma{i}, and the batch-mean
    estimates lcr_pair{i}_sigma_bin / _sigma_ref (and lcr_val_... on validation).
    """

    def __init__(self, num_stages: int, multiplier: float, variant: str = "official",
                 teacher=None, teacher_mode: str = "eval", max_steps: int | None = None,
                 persistent: bool = False, learn_gamma: bool = True):
        self.multiplier, self.variant = multiplier, variant
        self.teacher, self.teacher_mode = teacher, teacher_mode
        self.max_steps = max_steps
        self.state = PowerIterationState() if persistent else None
        self.gamma = Parameter(np.ones(num_stages, np.float32), requires_grad=learn_gamma)
        self.learn_gamma = learn_gamma
        self._means = {"train": _PairMeans(), "val": _PairMeans()}
        if teacher is not None:
            teacher.train(teacher_mode == "train")

    # ---- the loss
    def reference_features(self, model, x: np.ndarray) -> list:
        if self.teacher is None:
            return latent_features(model, x)
        with no_grad():
            return [Tensor(f.data) for f in self.teacher.forward_features(Tensor(x))]

    def _loss(self, model, batch, split: str):
        x, y = batch[0], batch[1]
        out = model.forward_all(Tensor(x))                          # ONE forward pass
        ce = F.cross_entropy(out.logits, y)
        reference = self.reference_features(model, x)
        training = split == "train"
        terms = lcr_terms(out.features, reference, self.variant, self.gamma,
                          self.max_steps if training else None, None,
                          self.state if training else None)
        self._means[split].add(terms, len(y))
        loss = ce + terms.loss * self.multiplier
        return LossOutput(loss, out.logits, {"ce": ce.item(), "lcr": terms.loss.item()})

    def __call__(self, model, batch):
        return self._loss(model, batch, "train")

    def evaluate(self, model, val_loader) -> dict:
        return evaluate(model, val_loader, lambda m, b: self._loss(m, b, "val"))

    # ---- hooks
    def parameters(self) -> list:
        return [self.gamma] if self.learn_gamma else []

    def state_dict(self) -> dict:
        state = {"gamma": self.gamma.data.copy()}
        if self.state is not None:
            state["power_iteration"] = self.state.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if "gamma" in state:
            self.gamma.data[...] = np.asarray(state["gamma"], np.float32)
        if self.state is not None:
            self.state.load_state_dict(state.get("power_iteration", {}))

    def on_epoch_start(self, epoch: int) -> dict:
        self._means = {"train": _PairMeans(), "val": _PairMeans()}
        return {}

    def on_epoch_end(self, epoch: int, row: dict) -> None:
        row.update(self._means["train"].means("lcr_"))
        row.update(self._means["val"].means("lcr_val_"))
        row.update({f"lcr_gamma{i + 1}": float(g) for i, g in enumerate(self.gamma.data)})


def make_recipe(config, model, train_set) -> LCRRecipe:
    o = _resolve_options(config.method_options)
    if config.real:
        raise ValueError("--method lcr trains a binary network; drop --real "
                         "(train the teacher separately with 'minibnn train --real')")
    quantizers = getattr(model, "quantizers", (None, None))
    if tuple(quantizers) != ("ede", "irnet"):
        warnings.warn(f"LCR-BNN trains IR-Net binarization (EDE activations, irnet weights); this "
                      f"{config.model} uses {tuple(quantizers)}. Pass --input-quantizer ede "
                      f"--weight-quantizer irnet for the paper's setting.", stacklevel=2)
    teacher = _load_teacher(config, model) if o["reference"] == "teacher" else None
    x = np.zeros((2,) + tuple(model.input_shape), np.float32)
    num_stages = len(_stage_shapes(model, x))
    return LCRRecipe(num_stages, loss_multiplier(o["alpha"], config.batch_size, o["divisor"]),
                     o["variant"], teacher, o["teacher_mode"], o["max_steps"], o["persistent"],
                     o["learn_gamma"])
