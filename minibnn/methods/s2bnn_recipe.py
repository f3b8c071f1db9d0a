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
Options: s2bnn_options.py; views: s2bnn_augment.py; teacher and step-1 checkpoints:
s2bnn_teacher.py; the preset TrainConfig with the official optimisation: train.s2bnn_config.
Not done here: multi-GPU shuffle BN (replaced by a key-side sub-batch shuffle, see
`S2BNNRecipe.keys`), the 65,536-key queue (sized to the data set instead).
"""

from __future__ import annotations

import copy

import numpy as np

from .. import functional as F
from ..autograd import Tensor, no_grad
from ..data import transforms
from ..models.heads import MLPHead
from .base import LossOutput, Recipe
from .s2bnn import MoCoQueue, distribution_loss, knn_predict, moco_logits, momentum_update
from .s2bnn_augment import S2BNNAugment
from .s2bnn_options import (DEFAULTS, add_arguments, check_step, model_kwargs,
                            options_from_args, resolve_options)
from .s2bnn_teacher import init_from_checkpoint, load_teacher

# make_recipe, add_arguments, options_from_args, model_kwargs and DEFAULTS: the interface the
# method registry uses (methods/base.py)
__all__ = ["S2BNNRecipe", "make_recipe", "add_arguments", "options_from_args", "model_kwargs",
           "DEFAULTS"]


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
    o = resolve_options(config.method_options)
    check_step(o["step"], config.weight_quantizer, config.real)
    return S2BNNRecipe(config, model, train_set, o)
