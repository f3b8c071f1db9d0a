"""`minibnn train --method cmim`: CMIM (arXiv:2207.02970) in its two forms, as a Recipe.

    --cmim-form official   CE + alpha (l(u) + l(w)): CRD-style NCE between the BNN's embedding
                           and a real-valued teacher's (--teacher CKPT, trained with
                           `minibnn train --real`), memory banks, label-aware negatives
    --cmim-form paper      CE + alpha * mean_l InfoNCE(sign(a_l), a_l) over binary layers l of the
                           BNN itself (no teacher); the pre-sign inputs a_l are recorded while
                           the forward runs (record_binary_inputs below)
The math lives in methods/cmim.py; this file builds the heads, memories and samplers, runs the
forwards, and saves everything a resumed run needs in state_dict().
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Iterator

import numpy as np

from .. import functional as F
from ..autograd import Tensor, no_grad
from ..data import BatchLoader
from ..models.heads import ProjectionHead       # Linear -> L2 normalise (CMIM's Embed)
from ..nn import binary as binary_nn
from . import cmim
from .base import LossOutput, Recipe, load_teacher, with_defaults

__all__ = ["add_arguments", "options_from_args", "make_recipe", "DEFAULTS", "OfficialCMIM",
           "PaperCMIM", "record_binary_inputs", "default_negatives"]

# Defaults are the official code's (CMIM/cifar100/utils/options.py, README: alpha = 3.2).
DEFAULTS = {"form": "official", "alpha": 3.2, "negatives": None, "tau": 0.1, "momentum": 0.5,
            "feat_dim": 128, "train_heads": None, "layers": "-3,-2,-1", "queue": 0,
            "cache_teacher": None}
MAX_NEGATIVES = 4096          # nce_n of the official code


def add_arguments(group) -> None:
    d = DEFAULTS
    group.add_argument("--cmim-form", choices=("official", "paper"), default=d["form"],
                       help="official: CRD-style NCE against a real teacher (needs --teacher); "
                            "paper: InfoNCE between the BNN's binary and pre-sign activations")
    group.add_argument("--cmim-alpha", type=float, default=d["alpha"],
                       help="weight of the contrastive term (official README: 3.2)")
    group.add_argument("--cmim-negatives", type=int, default=d["negatives"], metavar="N",
                       help="official form: negatives per anchor, drawn from other classes; "
                            f"None: {MAX_NEGATIVES} capped at the training-set size minus its "
                            "largest class")
    group.add_argument("--cmim-tau", type=float, default=d["tau"], help="temperature")
    group.add_argument("--cmim-momentum", type=float, default=d["momentum"],
                       help="official form: memory-bank momentum")
    group.add_argument("--cmim-feat-dim", type=int, default=d["feat_dim"],
                       help="output size of the embedding heads")
    group.add_argument("--cmim-train-heads", action=argparse.BooleanOptionalAction,
                       default=d["train_heads"],
                       help="train the embedding heads; None: frozen at their random init for "
                            "the official form (as its code), trained for the paper form")
    group.add_argument("--cmim-layers", default=d["layers"],
                       help="paper form: comma-separated indices into the binary layers whose "
                            "inputs are paired (-3,-2,-1: the last three)")
    group.add_argument("--cmim-queue", type=int, default=d["queue"], metavar="K",
                       help="paper form: extra negatives from a queue of K earlier embeddings (0: "
                            "in-batch negatives only)")
    group.add_argument("--cmim-cache-teacher", action=argparse.BooleanOptionalAction,
                       default=d["cache_teacher"],
                       help="official form: compute the frozen teacher's features once per "
                            "training image instead of every step; None: on unless --augment")


def options_from_args(args: argparse.Namespace) -> dict:
    return {key: getattr(args, f"cmim_{key}") for key in DEFAULTS}


def _options(values: dict) -> dict:
    o = with_defaults("CMIM", values, DEFAULTS)
    checks = [(o["form"] in ("official", "paper"), f"form must be official or paper, got {o['form']!r}"),
              (o["alpha"] >= 0, f"alpha must be >= 0, got {o['alpha']}"),
              (o["tau"] > 0, f"tau must be positive, got {o['tau']}"),
              (0 <= o["momentum"] <= 1, f"momentum must be in [0, 1], got {o['momentum']}"),
              (o["feat_dim"] >= 1, f"feat_dim must be >= 1, got {o['feat_dim']}"),
              (o["queue"] >= 0, f"queue must be >= 0, got {o['queue']}"),
              (o["negatives"] is None or o["negatives"] >= 1,
               f"negatives must be >= 1, got {o['negatives']}")]
    problems = [msg for ok, msg in checks if not ok]
    if problems:
        raise ValueError("cmim: " + "; ".join(problems))
    return o


def default_negatives(labels: np.ndarray) -> int:
    """min(4096, N - largest class): the official count, capped so every anchor has enough."""
    return min(MAX_NEGATIVES, cmim.NegativeSampler.max_negatives(labels))


def _streams(seed: int, n: int) -> list:
    """n independent generators for the method's own randomness, derived from the run seed."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence([seed, 0xC313]).spawn(n)]


def _head(in_features: int, out_features: int, rng, trainable: bool):
    head = ProjectionHead(in_features, out_features, rng=rng)
    for p in head.parameters():
        p.requires_grad = trainable                   # frozen heads: no gradient is even computed
    return head


class OfficialCMIM(Recipe):
    """CE + alpha (l(u) + l(w)) with a frozen real-valued teacher (docs/methods.md §3.1)."""

    def __init__(self, teacher, labels: np.ndarray, embedding_dim: int, options: dict | None = None,
                 seed: int = 0, cache_teacher: bool = False):
        o = _options(options or {})
        self.options, self.teacher = o, teacher.eval()
        self.alpha, self.tau, self.momentum = o["alpha"], o["tau"], o["momentum"]
        n, d = len(labels), o["feat_dim"]
        negatives = o["negatives"] or default_negatives(labels)
        g = _streams(seed, 5)
        trainable = bool(o["train_heads"])                             # None -> frozen
        self.head_bnn = _head(embedding_dim, d, g[0], trainable)
        self.head_fp = _head(teacher.embedding_dim, d, g[1], trainable)
        self.memory_bnn, self.memory_fp = cmim.MemoryBank(n, d, g[2]), cmim.MemoryBank(n, d, g[3])
        self.sampler = cmim.NegativeSampler(labels, negatives, g[4])
        self.z_bnn, self.z_fp = cmim.Normaliser(n), cmim.Normaliser(n)
        self.cache_teacher, self._transform = cache_teacher, None
        self._train_x, self._teacher_features = None, None
        self.n_negatives = negatives

    # ---------------------------------------------------------------- teacher features
    def train_transform(self, transform):
        self._transform = transform                    # kept to compute the teacher cache
        return transform

    def set_train_images(self, x: np.ndarray) -> None:
        """The training images (uint8), indexed as the loader's idx; enables the cache."""
        self._train_x = x

    def _fill_cache(self) -> None:
        """Teacher embeddings of every training image, in fixed chunks of 500 in index order, so
        a resumed run recomputes the same numbers (only valid when the transform is fixed)."""
        loader = BatchLoader(self._train_x, np.zeros(len(self._train_x), np.int64), 500,
                             shuffle=False, transform=self._transform)
        with no_grad():
            chunks = [self.teacher.forward_all(Tensor(xb)).embedding.data for xb, _, _ in loader]
        self._teacher_features = np.concatenate(chunks)                   # (M, D_t)

    def teacher_features(self, x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        if self.cache_teacher and self._train_x is not None and self._transform is not None:
            if self._teacher_features is None:
                self._fill_cache()
            return self._teacher_features[idx]
        with no_grad():
            return self.teacher.forward_all(Tensor(x)).embedding.data    # (B, D_t)

    # --------------------------------------------------------------------- the loss
    def __call__(self, model, batch):
        x, y, idx = batch
        out = model.forward_all(Tensor(x))                               # one student forward
        ce = F.cross_entropy(out.logits, y)
        e_bnn = self.head_bnn(out.embedding)                             # (B, d) unit rows
        e_fp = self.head_fp(Tensor(self.teacher_features(x, idx)))       # (B, d)
        terms = cmim.official_loss(e_bnn, e_fp, idx, self.sampler.sample(idx), self.memory_bnn,
                                   self.memory_fp, self.z_bnn, self.z_fp, self.tau, self.momentum)
        loss = ce + (terms.bnn_anchor + terms.fp_anchor) * self.alpha
        return LossOutput(loss, out.logits, {"ce": ce.item(),
                                             "cmim_bnn_anchor": terms.bnn_anchor.item(),
                                             "cmim_fp_anchor": terms.fp_anchor.item()})

    def parameters(self) -> list:
        if not self.options["train_heads"]:
            return []
        return list(self.head_bnn.parameters()) + list(self.head_fp.parameters())

    def state_dict(self) -> dict:
        return {"form": "official", "head_bnn": dict(self.head_bnn.state_dict()),
                "head_fp": dict(self.head_fp.state_dict()),
                "memory_bnn": self.memory_bnn.state_dict(), "memory_fp": self.memory_fp.state_dict(),
                "sampler": self.sampler.state_dict(), "z_bnn": self.z_bnn.state_dict(),
                "z_fp": self.z_fp.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        _check_form(state, "official")
        self.head_bnn.load_state_dict(state["head_bnn"])
        self.head_fp.load_state_dict(state["head_fp"])
        for name in ("memory_bnn", "memory_fp", "sampler", "z_bnn", "z_fp"):
            getattr(self, name).load_state_dict(state[name])


def _check_form(state: dict, form: str) -> None:
    if state.get("form") != form:
        raise ValueError(f"cmim: the checkpoint holds the state of the {state.get('form')!r} form, "
                         f"this run uses the {form!r} form")


# --------------------------------------------------------------------------- paper form
class _RecordingQuantizer:
    """Stands in for a binary layer's input quantizer during one forward: calls the real one
    and keeps (a, q(a)), the latent input and its binary activation, both still in the graph."""

    def __init__(self, inner):
        self.inner, self.records = inner, []

    def __call__(self, a: Tensor) -> Tensor:
        ab = self.inner(a)                               # a's shape, in {-1, +1}
        self.records.append((a, ab))
        return ab


@contextlib.contextmanager
def record_binary_inputs(layers: list) -> Iterator[list]:
    """`with record_binary_inputs(layers) as rec:` run a forward; rec[i].records then holds
    (pre-sign input, binary input) of layers[i] for each call. The layers' own quantizers are
    put back on exit (also on error), so the model is unchanged outside the block."""
    recorders = [_RecordingQuantizer(layer.input_quantizer) for layer in layers]
    try:
        for layer, rec in zip(layers, recorders):
            layer.input_quantizer = rec
        yield recorders
    finally:
        for layer, rec in zip(layers, recorders):
            layer.input_quantizer = rec.inner


def _pick_layers(model, spec: str) -> list:
    layers = [layer for _, layer in binary_nn.binary_layers(model)]
    if not layers:
        raise ValueError("cmim --cmim-form paper needs a binary model (it pairs binary "
                         "activations with their pre-sign values); this model has no binary layer")
    try:
        picks = [int(s) for s in str(spec).split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"cmim: --cmim-layers must be comma-separated integers, got {spec!r}") from None
    if spec == DEFAULTS["layers"] and len(layers) < 3:
        picks = list(range(len(layers)))                 # the default asks for "the last three"
    bad = [i for i in picks if not -len(layers) <= i < len(layers)]
    if bad or not picks or len({i % len(layers) for i in picks}) != len(picks):
        raise ValueError(f"cmim: --cmim-layers {spec!r}: need distinct indices into the model's "
                         f"{len(layers)} binary layers (-{len(layers)} .. {len(layers) - 1})")
    return [layers[i] for i in picks]


class PaperCMIM(Recipe):
    """CE + alpha * mean over layers of InfoNCE(binary, latent) (cmim.paper_loss)."""

    def __init__(self, model, options: dict | None = None, seed: int = 0):
        o = _options(options or {})
        self.options, self.alpha, self.tau = o, o["alpha"], o["tau"]
        self.layers = _pick_layers(model, o["layers"])
        trainable = o["train_heads"] is not False                       # None -> trained
        g = _streams(seed, 3 * len(self.layers))
        self.heads_binary, self.heads_latent, self.queues = [], [], []
        for i, layer in enumerate(self.layers):
            c = getattr(layer, "in_channels", None) or layer.in_features
            self.heads_binary.append(_head(c, o["feat_dim"], g[3 * i], trainable))
            self.heads_latent.append(_head(c, o["feat_dim"], g[3 * i + 1], trainable))
            if o["queue"]:
                self.queues.append(cmim.FeatureQueue(o["queue"], o["feat_dim"], g[3 * i + 2]))

    def __call__(self, model, batch):
        x, y = batch[0], batch[1]
        with record_binary_inputs(self.layers) as recorders:
            logits = model(Tensor(x))
        z_binary, z_latent = [], []
        for rec, hb, hl in zip(recorders, self.heads_binary, self.heads_latent):
            if len(rec.records) != 1:
                raise RuntimeError(f"cmim: a paired binary layer ran {len(rec.records)} times in "
                                   "one forward; expected exactly once")
            a, ab = rec.records[0]
            z_binary.append(hb(cmim.pool_activation(ab)))                 # (B, d)
            z_latent.append(hl(cmim.pool_activation(a)))                  # (B, d)
        losses = cmim.paper_loss(z_binary, z_latent, self.tau, self.queues or None)
        infonce = losses[0] if len(losses) == 1 else F.stack(losses).mean()
        ce = F.cross_entropy(logits, y)
        terms = {"ce": ce.item(), "infonce": infonce.item()}
        terms.update({f"infonce_{i + 1}": l.item() for i, l in enumerate(losses)})
        return LossOutput(ce + infonce * self.alpha, logits, terms)

    def parameters(self) -> list:
        if self.options["train_heads"] is False:
            return []
        return [p for h in self.heads_binary + self.heads_latent for p in h.parameters()]

    def state_dict(self) -> dict:
        return {"form": "paper",
                "heads_binary": [dict(h.state_dict()) for h in self.heads_binary],
                "heads_latent": [dict(h.state_dict()) for h in self.heads_latent],
                "queues": [q.state_dict() for q in self.queues]}

    def load_state_dict(self, state: dict) -> None:
        _check_form(state, "paper")
        for key in ("heads_binary", "heads_latent", "queues"):
            own = getattr(self, key)
            if len(state[key]) != len(own):
                raise ValueError(f"cmim: the checkpoint has {len(state[key])} {key}, this run "
                                 f"{len(own)}")
            for obj, s in zip(own, state[key]):
                obj.load_state_dict(s)


# ------------------------------------------------------------------------------ factory
def _load_teacher(config, model):
    if not config.teacher:
        raise ValueError("cmim --cmim-form official needs --teacher CKPT: a real-valued twin "
                         "trained with 'minibnn train --real' (or use --cmim-form paper)")
    teacher = load_teacher(config.teacher, model.input_shape, "cmim")
    if not teacher.config["real"]:
        raise ValueError(f"cmim: the teacher {config.teacher} is a binary network; CMIM contrasts "
                         f"the BNN with a real-valued one (train it with 'minibnn train --real')")
    return teacher.model


def make_recipe(config, model, train_set) -> Recipe:
    o = _options(config.method_options)
    if o["form"] == "paper":
        if config.teacher:
            raise ValueError("cmim --cmim-form paper uses no teacher; drop --teacher")
        return PaperCMIM(model, o, config.seed)
    teacher = _load_teacher(config, model)
    cache = (not config.augment) if o["cache_teacher"] is None else bool(o["cache_teacher"])
    if cache and config.augment:
        raise ValueError("cmim: --cmim-cache-teacher needs fixed training images; with "
                         "--augment every step sees new crops, so drop one of the two")
    recipe = OfficialCMIM(teacher, train_set.y, model.embedding_dim, o, config.seed, cache)
    recipe.set_train_images(train_set.x)
    return recipe
