"""Checkpoints S2-BNN reads: the frozen teacher it distils from, and the step-1 student that
step 2 starts from (a run folder means its best.npz, else last.npz, as everywhere)."""

from __future__ import annotations

import numpy as np

from ..autograd import Tensor, no_grad
from ..checkpoint import checkpoint_file, load_state
from ..models.heads import MLPHead
from ..nn import StateDictError
from .base import load_teacher as load_frozen_teacher
from .s2bnn_options import resolve_options

__all__ = ["load_teacher", "init_from_checkpoint"]


def load_teacher(path, student_input_shape: tuple, dim: int):
    """(project(x Tensor) -> (N, dim) Tensor, description) of a frozen teacher checkpoint.

    A teacher pretrained here (method s2bnn, e.g. `minibnn pretrain --method moco`) projects
    with its MoCo MLP head (inside the model, or in the checkpoint's method state); a supervised
    teacher (method ce, a documented departure) gives its class logits, so its `dim` is the
    number of classes.
    """
    teacher = load_frozen_teacher(path, student_input_shape, "s2bnn")      # frozen, eval mode
    model, tconfig, path = teacher.model, teacher.config, teacher.path
    head, kind = None, "supervised logits"
    if isinstance(model.classifier, MLPHead):
        kind = "MoCo projection (model head)"
    elif tconfig["method"] == "s2bnn":
        state = (teacher.state.get("method") or {}).get("head") or {}
        o = resolve_options(tconfig["method_options"])
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
    return project, f"{teacher.description}, {kind}, from {path}"


def init_from_checkpoint(path, model) -> dict:
    """Copy every weight of a (step-1) checkpoint into `model`; returns the checkpoint's method
    state. The architecture must match exactly (same keys and shapes), else a ValueError."""
    path = checkpoint_file(path)
    state = load_state(path)
    if not isinstance(state.get("model"), dict) or not isinstance(state.get("config"), dict):
        raise ValueError(f"s2bnn: {path} is not a minibnn training checkpoint")
    src = state["config"]
    try:
        model.load_state_dict(state["model"])
    except StateDictError as err:
        raise ValueError(f"s2bnn step 2: {path} holds another architecture ({src.get('model')}, "
                         f"width {src.get('width')}, method {src.get('method')}) than this run "
                         f"builds; {err}") from None
    return state.get("method") or {}
