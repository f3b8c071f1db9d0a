"""Options of S2-BNN (`minibnn train --method s2bnn`, `minibnn pretrain`): defaults, command-line
arguments, their checks, and the model arguments the method asks for (ReActNet's MLP head).

The defaults and their sources are listed next to each value; the method itself is described in
s2bnn_recipe.py and docs/s2bnn.md.
"""

from __future__ import annotations

import argparse

from ..models import option_names
from .base import with_defaults
from .s2bnn import DEFAULT_MOMENTUM, DEFAULT_TAU

__all__ = ["VARIANTS", "AUGMENTATIONS", "DEFAULTS", "RECOMMENDED", "add_arguments",
           "add_view_arguments", "options_from_args", "resolve_options", "check_step",
           "model_kwargs"]

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
    check_step(options["step"], getattr(args, "weight_quantizer", None),
                getattr(args, "real", False))
    return resolve_options(options)


def resolve_options(options: dict) -> dict:
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


def check_step(step: int, weight_quantizer, real: bool) -> None:
    if real:
        return                          # a real-valued net (the MoCo teacher) has no steps
    if step == 1 and weight_quantizer != "none":
        raise ValueError(f"s2bnn step 1 trains binary activations with REAL weights: the weight "
                         f"quantizer must be 'none', got {weight_quantizer!r} (on the command "
                         f"line --s2bnn-step 1 selects it unless --weight-quantizer is given)")
    if step == 2 and weight_quantizer == "none":
        raise ValueError("s2bnn step 2 binarizes the weights: drop --weight-quantizer none "
                         "(or pass --s2bnn-step 1)")


def model_kwargs(config) -> dict:
    """ReActNet gets the MoCo v2 MLP head as its classifier (as the official student); other
    models keep their classifier and the recipe owns the head (saved in the method state)."""
    o = resolve_options(config.method_options)
    if "mlp_head" not in option_names(config.model):
        return {}
    extra = {"mlp_head": True, "head_dim": o["dim"]}
    if o["weight_init"] != "default":
        extra["weight_init"] = o["weight_init"]
    return extra
