"""S2-BNN in `minibnn train --method s2bnn`: MoCo v2 and/or guided distribution calibration.

    minibnn pretrain --method moco --model reactnet --real --out runs/teacher    # MoCo v2 teacher
    minibnn train --method s2bnn --s2bnn-variant distill --teacher runs/teacher \
        --s2bnn-step 1 --optimizer adam --schedule linear --lr 3e-4 --out runs/step1
    minibnn train --method s2bnn --s2bnn-variant distill --teacher runs/teacher \
        --s2bnn-step 2 --s2bnn-init-from runs/step1 --optimizer adam --schedule linear --lr 3e-4
    minibnn linear-eval runs/step2

Variants (arXiv:2102.08946, Table 1 and the official code's three folders):
    contrastive           L = InfoNCE(q, k, queue)                     "enhanced MoCo v2"
    contrastive+distill   L = InfoNCE(q, k, queue) + L_KD(q, t)        1:1
    distill               L = L_KD(q, t)                               "guided learning only"
q = normalize(student projection of view 1), k = normalize(momentum key encoder on view 2),
t = normalize(teacher projection of view 1). Two-step ("progressive") binarization: step 1 has
binary activations and real weights (weight quantizer "none"), step 2 binary weights too,
initialised from step 1 (--s2bnn-init-from); step 2 without it is the one-step alternative.
Not done here: multi-GPU shuffle BN (replaced by a key-side sub-batch shuffle, see
`S2BNNRecipe.keys`), the 65,536-key queue (sized to the data set instead).
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import functional as F
from ..autograd import Tensor, no_grad
from ..data import transforms
from ..models.heads import MLPHead
from . import Recipe, with_defaults
from .s2bnn import (DEFAULT_MOMENTUM, DEFAULT_TAU, MoCoQueue, distribution_loss, knn_predict,
                    moco_logits, momentum_update)

__all__ = ["S2BNNRecipe", "S2BNNAugment", "add_arguments", "options_from_args", "make_recipe",
           "model_options", "make_config", "load_teacher", "init_from_checkpoint",
           "DEFAULTS", "VARIANTS", "RECOMMENDED"]

VARIANTS = ("contrastive", "contrastive+distill", "distill")
AUGMENTATIONS = ("lite", "moco_v2")
DEFAULTS = {
    "variant": "distill",        # the paper's best row ("guided learning only")
    "step": 2,                   # 2 = binary weights; with init_from = the second step
    "init_from": None,           # step-1 checkpoint (or run folder) that step 2 starts from
    "tau": DEFAULT_TAU,          # 0.2, README command (--moco-t 0.2); both losses use it
    "dim": 128,                  # projection size (MoCo v2 MLP head output)
    "queue": 4096,               # K; the paper's 65,536 is for ImageNet's 1.28M images
    "key_momentum": DEFAULT_MOMENTUM,  # 0.999, MoCo
    "kd_weight": 1.0,            # 1:1 as the official Contrastive+Distillation code
    "aug": "lite",               # S2-BNN's weaker MoCo v2 augmentation (jitter p .6, blur p .2)
    "crop_min": 0.2,             # RandomResizedCrop scale (0.2, 1), MoCo v2
    "noise": 0.1,                # Gaussian pixel noise std on 1-channel data (no colour to jitter)
    "flip": 0.5,                 # horizontal flip probability
    "shuffle_bn": 2,             # key encoder forward in this many shuffled sub-batches
    "knn_bank": 2000,            # training images in the kNN monitor's bank
    "knn_k": 20,
    "weight_init": "default",    # "hardbinary": official step-2 HardBinaryConv init U[0, 1e-3)
}
# The official optimisation (docs/methods.md section 4.4); TrainConfig's own defaults differ.
RECOMMENDED = {"optimizer": "adam", "schedule": "linear", "lr": 3e-4}


# ------------------------------------------------------------------------- options
def add_view_arguments(group, prefix: str, aug: str) -> None:
    """The two views' augmentation and the MoCo machinery shared by `minibnn train --method
    s2bnn` (prefix "s2bnn-") and `minibnn pretrain` (no prefix): --{prefix}aug, crop-min,
    noise, flip, shuffle-bn and knn-bank, with DEFAULTS except for `aug`."""
    d = DEFAULTS
    group.add_argument(f"--{prefix}aug", choices=AUGMENTATIONS, default=aug,
                       help="colour-jitter/blur probabilities on 3-channel data")
    group.add_argument(f"--{prefix}crop-min", type=float, default=d["crop_min"],
                       help="smallest area fraction of a random resized crop")
    group.add_argument(f"--{prefix}noise", type=float, default=d["noise"],
                       help="pixel noise std on 1-channel data")
    group.add_argument(f"--{prefix}flip", type=float, default=d["flip"],
                       help="probability of a horizontal flip")
    group.add_argument(f"--{prefix}shuffle-bn", type=int, default=d["shuffle_bn"], metavar="G",
                       help="key encoder forward in G shuffled sub-batches (1: off)")
    group.add_argument(f"--{prefix}knn-bank", type=int, default=d["knn_bank"], metavar="N",
                       help="training images in the k-NN validation monitor's feature bank")


def add_arguments(group) -> None:
    d = DEFAULTS
    group.add_argument("--s2bnn-variant", choices=VARIANTS, default=d["variant"],
                       help="loss: MoCo v2 only, MoCo + distribution loss (1:1), or the "
                            "distribution loss only (needs --teacher). Recommended optimisation "
                            "as the paper: --optimizer adam --schedule linear --lr 3e-4")
    group.add_argument("--s2bnn-step", type=int, choices=(1, 2), default=d["step"],
                       action=_StepAction,
                       help="1: binary activations, real weights (sets --weight-quantizer none); "
                            "2: binary weights too (one-step unless --s2bnn-init-from)")
    group.add_argument("--s2bnn-init-from", default=d["init_from"], metavar="CKPT",
                       help="step 2: start from this step-1 checkpoint (model, key encoder "
                            "and queue); a run folder means its best.npz, pass .../last.npz "
                            "for the final epoch as the official code")
    group.add_argument("--s2bnn-tau", type=float, default=d["tau"],
                       help="temperature of InfoNCE and of the distribution loss")
    group.add_argument("--s2bnn-dim", type=int, default=d["dim"], help="projection size")
    group.add_argument("--s2bnn-queue", type=int, default=d["queue"], metavar="K",
                       help="number of negative keys (a multiple of --batch-size)")
    group.add_argument("--s2bnn-key-momentum", type=float, default=d["key_momentum"],
                       help="momentum of the key encoder")
    group.add_argument("--s2bnn-kd-weight", type=float, default=d["kd_weight"],
                       help="weight of the distribution loss")
    add_view_arguments(group, "s2bnn-", d["aug"])
    group.add_argument("--s2bnn-weight-init", choices=("default", "hardbinary"),
                       default=d["weight_init"],
                       help="latent binary weight init; hardbinary = official U[0, 1e-3)")


class _StepAction(argparse.Action):
    """--s2bnn-step 1 also selects real weights (--weight-quantizer none) unless one was given."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        if values == 1 and getattr(namespace, "weight_quantizer", None) is None:
            namespace.weight_quantizer = "none"


def options_from_args(args: argparse.Namespace) -> dict:
    options = {key: getattr(args, f"s2bnn_{key}") for key in DEFAULTS if key != "knn_k"}
    _check_step(options["step"], getattr(args, "weight_quantizer", None),
                getattr(args, "real", False))
    return _resolve_options(options)


def _resolve_options(options: dict) -> dict:
    o = with_defaults("S2-BNN", options, DEFAULTS)
    if o["variant"] not in VARIANTS:
        raise ValueError(f"s2bnn: variant must be one of {', '.join(VARIANTS)}, "
                         f"got {o['variant']!r}")
    if o["step"] not in (1, 2):
        raise ValueError(f"s2bnn: step must be 1 or 2, got {o['step']!r}")
    if o["init_from"] and o["step"] != 2:
        raise ValueError("s2bnn: init_from (a step-1 checkpoint) is for step 2; step 1 starts "
                         "from scratch")
    if o["aug"] not in AUGMENTATIONS:
        raise ValueError(f"s2bnn: aug must be one of {AUGMENTATIONS}, got {o['aug']!r}")
    for key in ("tau", "dim", "queue", "shuffle_bn", "knn_bank", "knn_k"):
        if not o[key] > 0:
            raise ValueError(f"s2bnn: {key} must be positive, got {o[key]}")
    if not 0 <= o["key_momentum"] <= 1 or not 0 < o["crop_min"] <= 1 or not 0 <= o["flip"] <= 1:
        raise ValueError("s2bnn: key_momentum and flip must lie in [0, 1] and crop_min in (0, 1]")
    return o


def _check_step(step: int, weight_quantizer, real: bool) -> None:
    if real:
        return                          # a real-valued net (the MoCo teacher) has no steps
    if step == 1 and weight_quantizer != "none":
        raise ValueError(f"s2bnn step 1 trains binary activations with REAL weights: the weight "
                         f"quantizer must be 'none', got {weight_quantizer!r} (on the command "
                         f"line --s2bnn-step 1 selects it unless --weight-quantizer is given)")
    if step == 2 and weight_quantizer == "none":
        raise ValueError("s2bnn step 2 binarizes the weights: drop --weight-quantizer none "
                         "(or pass --s2bnn-step 1)")


def _has_mlp_option(config) -> bool:
    from ..models import option_names as options_of

    return "mlp_head" in options_of(config.model)


def model_options(config) -> dict:
    """ReActNet gets the MoCo v2 MLP head as its classifier (as the official student); other
    models keep their classifier and the recipe owns the head (saved in the method state)."""
    o = _resolve_options(config.method_options)
    if not _has_mlp_option(config):
        return {}
    extra = {"mlp_head": True, "head_dim": o["dim"]}
    if o["weight_init"] != "default":
        extra["weight_init"] = o["weight_init"]
    return extra


def make_config(variant: str = DEFAULTS["variant"], step: int = 2, *, real: bool = False,
                **fields):
    """A TrainConfig for S2-BNN with the official optimisation (Adam 3e-4, linear decay, weight
    decay 1e-4 for contrastive only, else 0) and the step's weight quantizer. `fields` override
    TrainConfig fields; keys of DEFAULTS go to method_options."""
    from ..train import TrainConfig

    method = {k: fields.pop(k) for k in list(fields) if k in DEFAULTS}
    method.update(variant=variant, step=step)
    base = dict(model="reactnet", real=real, method="s2bnn", **RECOMMENDED,
                weight_decay=1e-4 if variant == "contrastive" else 0.0,
                weight_quantizer=None if real or step == 2 else "none")
    base.update(fields)
    base["method_options"] = _resolve_options({**fields.get("method_options", {}), **method})
    return TrainConfig(**base)


# ---------------------------------------------------------------------- augmentation
@dataclass
class S2BNNAugment:
    """Independent random views of a [0, 1] float batch (N, C, H, W) -> tuple of `views` arrays.

    3 channels: TwoViewAugment's view (resized crop, colour jitter, grayscale, blur, flip) with
    the S2-BNN "lite" probabilities (jitter 0.6, blur 0.2) or MoCo v2's (0.8, 0.5).
    1 channel (MNIST): resized crop, Gaussian pixel noise, flip; nothing to jitter in colour.
    Every view is normalised with mean/std.
    """

    channels: int
    mean: tuple
    std: tuple
    aug: str = "lite"
    crop_min: float = 0.2
    noise: float = 0.1
    flip: float = 0.5
    views: int = 2

    def view(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.channels == 3:
            two = transforms.TwoViewAugment
            make = two.lite if self.aug == "lite" else two.moco_v2
            return make(crop_scale=(self.crop_min, 1.0), flip_p=self.flip, mean=self.mean,
                        std=self.std).view(x, rng)
        v = transforms.random_resized_crop(x, rng, scale=(self.crop_min, 1.0))
        if self.noise:
            v = transforms.gaussian_noise(v, self.noise, rng)
        v = transforms.random_hflip(v, rng, p=self.flip)
        return transforms.normalize(v, self.mean, self.std)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> tuple:
        return tuple(self.view(x, rng) for _ in range(self.views))


# -------------------------------------------------------------------- checkpoints
def _checkpoint_path(path) -> Path:
    """A run folder -> its best.npz (else last.npz), as train.load_model; a file -> itself."""
    path = Path(path)
    if path.is_dir():
        best, last = path / "best.npz", path / "last.npz"
        return best if best.exists() else last
    return path


def load_teacher(path, student_input_shape: tuple, dim: int):
    """(project(x Tensor) -> (N, dim) Tensor, description) of a frozen teacher checkpoint.

    A teacher pretrained here (method s2bnn, e.g. `minibnn pretrain --method moco`) projects
    with its MoCo MLP head (inside the model, or in the checkpoint's method state); a supervised
    teacher (method ce, a documented departure) gives its class logits, so its `dim` is the
    number of classes.
    """
    from ..train import load_model, load_state

    path = _checkpoint_path(path)
    model, tconfig = load_model(path)                              # eval mode
    for p in model.parameters():
        p.requires_grad = False
    if tuple(model.input_shape) != tuple(student_input_shape):
        raise ValueError(f"s2bnn: the teacher {path} takes inputs {tuple(model.input_shape)}, "
                         f"the student {tuple(student_input_shape)}; train it on the same data")
    head, kind = None, "supervised logits"
    if isinstance(model.classifier, MLPHead):
        kind = "MoCo projection (model head)"
    elif tconfig.method == "s2bnn":
        state = load_state(path)["method"].get("head") or {}
        o = _resolve_options(tconfig.method_options)
        d = model.embedding_dim
        head = MLPHead(d, d, o["dim"], rng=0)
        head.load_state_dict(state)
        kind = "MoCo projection (recipe head)"

    def project(x: Tensor) -> Tensor:
        return model(x) if head is None else head(model.embedding(x))

    with no_grad():
        out_dim = project(Tensor(np.zeros((1,) + tuple(model.input_shape), np.float32))).shape[1]
    if out_dim != dim:
        raise ValueError(f"s2bnn: the teacher {path} outputs {out_dim} values ({kind}) but the "
                         f"student projects to {dim}; the distribution loss needs equal sizes "
                         f"(set --s2bnn-dim {out_dim})")
    real = "real-valued" if tconfig.real else "binary"
    return project, f"{real} {tconfig.model} (width {tconfig.width}), {kind}, from {path}"


def init_from_checkpoint(path, model) -> dict:
    """Copy every weight of a (step-1) checkpoint into `model`; returns the checkpoint's method
    state. The architecture must match exactly (same keys and shapes), else a ValueError."""
    from ..nn import StateDictError
    from ..train import TrainConfig, load_state

    path = _checkpoint_path(path)
    state = load_state(path)
    if "model" not in state or "config" not in state:
        raise ValueError(f"s2bnn: {path} is not a minibnn training checkpoint")
    src = TrainConfig.from_dict(state["config"])
    try:
        model.load_state_dict(state["model"])
    except StateDictError as err:
        raise ValueError(f"s2bnn step 2: {path} holds another architecture ({src.model}, width "
                         f"{src.width}, method {src.method}) than this run builds; {err}") from None
    return state.get("method") or {}


# --------------------------------------------------------------------------- recipe
class S2BNNRecipe(Recipe):
    """MoCo v2 (query encoder = the trained model, momentum key encoder, queue) and the
    distribution loss to a frozen teacher; see the module docstring for the variants."""

    def __init__(self, config, model, train_set, options: dict):
        self.o = o = options
        self.config, self.model = config, model        # the query encoder
        self.contrast = o["variant"] in ("contrastive", "contrastive+distill")
        self.distill = o["variant"] in ("contrastive+distill", "distill")
        rng = np.random.default_rng([config.seed, 2102])
        self.rng = rng
        self.head = None                          # models without an MLP-head option
        if not isinstance(getattr(model, "classifier", None), MLPHead):
            d = model.embedding_dim
            self.head = MLPHead(d, d, o["dim"], rng=rng)
        method_state = {}
        if o["init_from"]:
            method_state = init_from_checkpoint(o["init_from"], model)
            if self.head is not None and method_state.get("head"):
                self.head.load_state_dict(method_state["head"])
        self.key_encoder = copy.deepcopy(model).train()
        self.key_head = copy.deepcopy(self.head)
        self.queue = MoCoQueue(o["dim"], o["queue"], config.batch_size, rng)
        if method_state.get("key_encoder"):       # the official step 2 loads the full state
            self._load_keys(method_state)
        self.teacher, self.teacher_info = None, None
        if self.distill:
            if not config.teacher:
                raise ValueError(f"s2bnn variant {o['variant']!r} needs a teacher: pass --teacher "
                                 f"CKPT (train one with 'minibnn pretrain --method moco')")
            self.teacher, self.teacher_info = load_teacher(config.teacher, model.input_shape,
                                                           o["dim"])
        elif config.teacher:
            raise ValueError("s2bnn variant 'contrastive' does not use a teacher; drop --teacher "
                             "or choose --s2bnn-variant contrastive+distill / distill")
        c = train_set.x.shape[1]
        self.augment = S2BNNAugment(c, tuple(train_set.mean), tuple(train_set.std), o["aug"],
                                    o["crop_min"], o["noise"], o["flip"],
                                    views=2 if self.contrast else 1)
        n_bank = min(o["knn_bank"], len(train_set))
        self.bank_x, self.bank_y = train_set.x[:n_bank], train_set.y[:n_bank]
        self.mean, self.std = tuple(train_set.mean), tuple(train_set.std)
        self.num_classes = train_set.num_classes

    # -- projections
    def project(self, model, x: Tensor, head=None) -> Tensor:
        """L2-normalised projection (N, dim) of the model (its MLP head or the recipe's)."""
        z = model(x) if head is None else head(model.embedding(x))
        return F.normalize(z, axis=1)

    def keys(self, x: np.ndarray) -> np.ndarray:
        """Key-encoder projections of view 2 without gradient, in train mode (batch statistics).

        MoCo shuffles the batch across GPUs so that BN statistics cannot leak which key belongs
        to which query; here the batch is permuted and split into `shuffle_bn` sub-batches, each
        normalised with its own statistics, and the outputs are put back in order.
        """
        g = self.o["shuffle_bn"]
        with no_grad():
            if g == 1:
                return self.project(self.key_encoder, Tensor(x), self.key_head).data
            perm = self.rng.permutation(len(x))
            out = np.empty((len(x), self.o["dim"]), np.float32)
            for part in np.array_split(perm, min(g, len(x))):
                out[part] = self.project(self.key_encoder, Tensor(x[part]), self.key_head).data
            return out

    # -- the loss
    def __call__(self, model, batch):
        from ..train import LossOutput

        views, n = batch[0], len(batch[1])
        q = self.project(model, Tensor(views[0]), self.head)          # (N, dim)
        loss, terms = None, {}
        if self.contrast:
            k = self.keys(views[1])                                     # (N, dim) constant
            logits = moco_logits(q, k, self.queue.keys, self.o["tau"])  # (N, 1 + K)
            l_moco = F.cross_entropy(logits, np.zeros(n, dtype=np.int64))
            terms["moco"] = l_moco.item()
            terms["pretext_acc"] = float(np.mean(np.argmax(logits.data, axis=1) == 0))
            loss = l_moco
            if n == self.config.batch_size:      # a last, smaller batch is not queued (MoCo
                self.queue.enqueue(k)            # drops it: drop_last)
        if self.distill:
            with no_grad():
                t = F.normalize(self.teacher(Tensor(views[0])), axis=1).data   # (N, dim)
            l_kd = distribution_loss(q, t, self.o["tau"])
            terms["kd"] = l_kd.item()
            l_kd = l_kd * self.o["kd_weight"]
            loss = l_kd if loss is None else loss + l_kd
        return LossOutput(loss, None, terms)

    def after_step(self) -> None:
        momentum_update(self.key_encoder, self.model, self.o["key_momentum"])
        if self.head is not None:
            momentum_update(self.key_head, self.head, self.o["key_momentum"])

    def parameters(self) -> list:
        return [] if self.head is None else list(self.head.parameters())

    def train_transform(self, transform):
        return self.augment         # replaces the supervised crop; normalises each view itself

    # -- validation: kNN on the backbone embedding (what linear evaluation reads)
    def _embed(self, model, x: np.ndarray) -> np.ndarray:
        out = []
        with no_grad():
            for i in range(0, len(x), 500):
                xb = x[i:i + 500].astype(np.float32) / np.float32(255) if x.dtype == np.uint8 \
                    else x[i:i + 500]
                xb = transforms.normalize(xb, self.mean, self.std)
                out.append(model.embedding(Tensor(xb)).data)
        return np.concatenate(out)

    def evaluate(self, model, val_loader) -> dict:
        model.eval()
        bank = self._embed(model, self.bank_x)
        feats, labels = [], []
        with no_grad():
            for x, y, _ in val_loader:
                feats.append(model.embedding(Tensor(x)).data)
                labels.append(y)
        pred = knn_predict(bank, self.bank_y, np.concatenate(feats), self.num_classes,
                           self.o["knn_k"])
        acc = float(np.mean(pred == np.concatenate(labels)))
        return {"val_accuracy": acc, "val_knn_accuracy": acc}

    # -- state
    def state_dict(self) -> dict:
        return {"key_encoder": dict(self.key_encoder.state_dict()),
                "head": {} if self.head is None else dict(self.head.state_dict()),
                "key_head": {} if self.key_head is None else dict(self.key_head.state_dict()),
                "queue": self.queue.state_dict(),
                "rng": copy.deepcopy(self.rng.bit_generator.state)}

    def _load_keys(self, state: dict) -> None:
        self.key_encoder.load_state_dict(state["key_encoder"])
        if self.key_head is not None and state.get("key_head"):
            self.key_head.load_state_dict(state["key_head"])
        queue = state.get("queue")
        if queue and np.shape(queue["keys"]) == self.queue.keys.shape:
            self.queue.load_state_dict(queue)
            if self.queue.ptr % self.queue.batch_size:   # step 1 ran with another batch size
                self.queue.ptr = 0

    def load_state_dict(self, state: dict) -> None:
        self._load_keys(state)
        if self.head is not None and state.get("head"):
            self.head.load_state_dict(state["head"])
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])


def make_recipe(config, model, train_set) -> S2BNNRecipe:
    o = _resolve_options(config.method_options)
    _check_step(o["step"], config.weight_quantizer, config.real)
    return S2BNNRecipe(config, model, train_set, o)
