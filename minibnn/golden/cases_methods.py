"""Golden cases of the three methods: the LCR-BNN loss (official and exact power iteration),
the CMIM losses (official NCE with memory banks, paper InfoNCE), and the S2-BNN distribution
loss and MoCo InfoNCE (docs/methods.md §2-§5)."""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..methods import cmim, lcr, s2bnn
from .spec import register, unit_rows

__all__: list[str] = []  # registers cases with spec.register on import

# --------------------------------------------------------------------------- LCR-BNN
_LCR_CHANNELS, _LCR_SIZES = (3, 4, 5, 6), (4, 2, 2, 1)


def _make_lcr(rng):
    inputs = {}
    for side in ("binary", "real"):
        for s, (c, hw) in enumerate(zip(_LCR_CHANNELS, _LCR_SIZES)):
            f = rng.uniform(-1, 1, (2, c, hw, hw))
            inputs[f"{side}_{s}"] = f if side == "binary" else np.abs(f) * 1.5
    return inputs, {"gammas": rng.uniform(0.5, 1.5, 4)}


def _op_lcr(i, p, a):
    n = len(_LCR_CHANNELS)
    terms = lcr.lcr_terms([i[f"binary_{s}"] for s in range(n)], [i[f"real_{s}"] for s in range(n)],
                          variant=a["variant"], gammas=p["gammas"])
    out = {"loss": terms.loss}
    for j in range(n - 1):
        out[f"sigma_binary_{j}"] = terms.sigma_binary[j]
        out[f"sigma_real_{j}"] = terms.sigma_real[j]
    return out


_LCR_OUT = tuple(f"sigma_{side}_{j}" for j in range(3) for side in ("binary", "real"))
_LCR_CONV = (
    "Stage features f_0..f_3 (N, C_i, H_i, W_i), C = 3, 4, 5, 6, H = W = 4, 2, 2, 1. Pair i: "
    "f_i is adaptive-average-pooled to f_{i+1}'s size when larger (pair 1 has equal sizes: no "
    "pooling); RM = X Y^T / P per sample (N, C_i, C_{i+1}), K = RM RM^T.",
    "The binary features are multiplied by gammas[i] (a learnable (4,) parameter) first.",
    "L = sum_i 2^-(3-i) * mean_n (sigma_B[n] - sigma_R[n])^2, weights 1/8, 1/4, 1/2 (F.mse_loss "
    "= mean over the N per-sample values). No alpha / (B * 1e4) multiplier.",
    "The real (reference-network) features are DETACHED: their gradient is 0.",
)
_LCR_COMMON = dict(
    op=_op_lcr, make=_make_lcr, outputs=("loss",), intermediates=_LCR_OUT,
    grads=tuple(f"binary_{s}" for s in range(4)) + tuple(f"real_{s}" for s in range(4)) + ("gammas",),
    detached=tuple(f"real_{s}" for s in range(4)))
register(name="lcr.loss_official", reference="minibnn.methods.lcr.lcr_loss(variant='official')",
         attrs={"variant": "official"}, **_LCR_COMMON,
         description="LCR-BNN's Lipschitz retention loss as the official code computes it "
                     "(arXiv:2207.06540, LCR.py): sigma = ||K 1||^(1/2), one power step from the "
                     "unnormalised all-ones vector, differentiated through K.",
         conventions=_LCR_CONV + (
             "sigma = (||K 1||_2^2 + 1e-30)^(1/4); the 1e-30 only matters at K = 0.",
             "Intermediates sigma_binary_i, sigma_real_i (N,) per pair."))
register(name="lcr.loss_exact", reference="minibnn.methods.lcr.lcr_loss(variant='exact')",
         attrs={"variant": "exact"}, **_LCR_COMMON,
         description="LCR loss with the converged spectral norm: sigma = sigma_max(RM) = "
                     "sqrt(lambda_max(K)) per sample (power iteration to convergence; "
                     "torch.linalg.matrix_norm(RM, 2) gives the same).",
         conventions=_LCR_CONV + (
             "The gradient is the true one of sigma_max: u v^T w.r.t. RM (the converged vector is "
             "a constant; at convergence its own dependence on K contributes nothing).",))


def _op_lcr_pair(i, p, a):
    rm = lcr.retention_matrix(i["f_i"], i["f_next"])
    k = lcr.gram(rm)
    return {"sigma": lcr.spectral_norm_estimate(k, "official"), "rm": rm, "k": k}


register(name="lcr.worked_example", reference="minibnn.methods.lcr.spectral_norm_estimate",
      op=_op_lcr_pair,
      make=lambda rng: ({"f_i": np.array([[[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]]]),
                         "f_next": np.array([1.0, -1.0, 0.5]).reshape(1, 3, 1, 1)}, {}),
      outputs=("sigma",), grads=("f_i", "f_next"), intermediates=("rm", "k"),
      description="docs/methods.md section 5, LCR vector 4: f_i one sample with 2 channels 2x2, "
                  "f_next 3 channels 1x1 -> pooled f_i = (0.5, 0.5), RM = [[0.5, -0.5, 0.25]] * 2 rows, "
                  "K = 0.5625 * 11^T, sigma = (1.125 sqrt 2)^(1/2) = 1.2613447 (official).",
      conventions=("rm (1, 2, 3) and k (1, 2, 2) are intermediates.",))


# ------------------------------------------------------------------------------ CMIM
_CMIM_M, _CMIM_D, _CMIM_K, _CMIM_N, _CMIM_B = 24, 6, 8, 5, 3


def _make_cmim(rng):
    labels = rng.permutation(np.arange(_CMIM_M) % 4)
    idx = rng.choice(_CMIM_M, _CMIM_B, replace=False)
    sampler = cmim.NegativeSampler(labels, _CMIM_N, rng)
    bound = 1 / np.sqrt(_CMIM_K)
    inputs = {"f_bnn": rng.normal(0, 1, (_CMIM_B, _CMIM_K)),
              "f_fp": rng.normal(0, 1, (_CMIM_B, _CMIM_K)),
              "idx": idx.astype(np.int64), "sample_idx": sampler.sample(idx)}
    params = {}
    for side in ("bnn", "fp"):
        params[f"embed_{side}.weight"] = rng.uniform(-bound, bound, (_CMIM_D, _CMIM_K))
        params[f"embed_{side}.bias"] = rng.uniform(-bound, bound, _CMIM_D)
    for side in ("bnn", "fp"):
        params[f"memory_{side}"] = cmim.MemoryBank(_CMIM_M, _CMIM_D, rng, np.float64).weight
    return inputs, params


def _op_cmim_official(i, p, a):
    e_bnn = cmim.embed(i["f_bnn"], p["embed_bnn.weight"], p["embed_bnn.bias"])
    e_fp = cmim.embed(i["f_fp"], p["embed_fp.weight"], p["embed_fp.bias"])
    banks = {}
    for side in ("bnn", "fp"):
        bank = cmim.MemoryBank(1, 1)
        bank.weight = p[f"memory_{side}"].data.copy()
        banks[side] = bank
    z = {side: cmim.Normaliser(len(banks[side].weight)) for side in ("bnn", "fp")}
    for side in ("bnn", "fp"):
        z[side].value = a[f"z_{side}"]
    terms = cmim.official_loss(e_bnn, e_fp, i["idx"], i["sample_idx"], banks["bnn"], banks["fp"],
                               z["bnn"], z["fp"], tau=a["tau"], momentum=a["momentum"],
                               eps=a["eps"], update=True)
    return {"loss_bnn_anchor": terms.bnn_anchor, "loss_fp_anchor": terms.fp_anchor,
            "memory_bnn": banks["bnn"].weight, "memory_fp": banks["fp"].weight,
            "z_bnn": np.array(z["bnn"].value), "z_fp": np.array(z["fp"].value),
            "e_bnn": e_bnn, "e_fp": e_fp}


_CMIM_CONV = (
    "Embedding heads: e = l2normalize(f W^T + b) per row (CMIM's Embed; d = 6).",
    "Memory banks memory_bnn, memory_fp (M = 24, d) are buffers (params without gradient); rows "
    "are gathered with sample_idx (B, N+1), column 0 = the positive idx, and are DETACHED.",
    "u[b, j] = exp(<memory_fp[S[b, j]], e_bnn[b]> / tau) / z_bnn (BNN-anchored); "
    "w[b, j] = exp(<memory_bnn[S[b, j]], e_fp[b]> / tau) / z_fp (FP-anchored).",
    "NCE with c = N / M, eps = 1e-7: l(x) = -1/B sum_b [log(x_b0 / (x_b0 + c + eps)) + "
    "sum_{j>=1} log(c / (x_bj + c + eps))]; loss_bnn_anchor = l(u), loss_fp_anchor = l(w).",
    "After scoring (no gradient): memory_bnn[idx] <- l2normalize(momentum * memory_bnn[idx] + "
    "(1 - momentum) * e_bnn), memory_fp likewise with e_fp; other rows unchanged. Return the "
    "updated memories and z_bnn, z_fp.",
    "Training call order: the memories are updated before backward runs, and the gradients are "
    "those of the rows as they were when the scores were computed (the official code scores a "
    "detached copy, index_select(...).detach()).",
    "e_fp is NOT detached: the FP-anchored term gives f_fp and its head a gradient.",
)
_CMIM_COMMON = dict(reference="minibnn.methods.cmim.official_loss", op=_op_cmim_official,
                    make=_make_cmim, outputs=("loss_bnn_anchor", "loss_fp_anchor"),
                    grads=("f_bnn", "f_fp", "embed_bnn.weight", "embed_bnn.bias",
                           "embed_fp.weight", "embed_fp.bias"),
                    intermediates=("e_bnn", "e_fp"))
register(name="cmim.official_first_call",
      attrs={"tau": 0.1, "momentum": 0.5, "eps": 1e-7, "z_bnn": None, "z_fp": None},
      description="CMIM's released loss (CRD-style NCE, arXiv:2207.02970 / 1910.10699) on the "
                  "first call: the normalisers are not set yet (attrs z = null) and become "
                  "Z = M * mean of this batch's exp scores.",
      conventions=_CMIM_CONV + ("z_bnn = M * mean(exp(scores_bnn / tau)) over the (B, N+1) "
                                "raw exponentials of this call, z_fp likewise; Z is a constant "
                                "(no gradient through it).",), **_CMIM_COMMON)
register(name="cmim.official",
      attrs={"tau": 0.1, "momentum": 0.5, "eps": 1e-7, "z_bnn": 30000.0, "z_fp": 50000.0},
      description="CMIM's released loss on a later call: the normalisers z_bnn, z_fp (attrs) "
                  "were fixed by the first call and are constants now.",
      conventions=_CMIM_CONV, **_CMIM_COMMON)


def _op_nce(i, p, a):
    return {"loss": cmim.nce_loss(i["x"], a["n_noise"], a["n_data"], a["eps"])}


register(name="cmim.nce_loss", reference="minibnn.methods.cmim.nce_loss", op=_op_nce,
      make=lambda rng: ({"x": rng.uniform(0.01, 1.0, (3, 6))}, {}),
      attrs={"n_noise": 5, "n_data": 20, "eps": 1e-7}, outputs=("loss",), grads=("x",),
      description="CRD's NCE loss alone: x (B, N+1) normalised scores, positive in column 0, "
                  "uniform noise 1/M with M = n_data.",
      conventions=("c = n_noise / n_data; l = -1/B sum_b [log(x_b0 / (x_b0 + c + eps)) + "
                   "sum_{j>=1} log(c / (x_bj + c + eps))] (batch MEAN, sum over columns).",))


def _op_info_nce(i, p, a):
    return {"loss": cmim.info_nce(i["anchor"], i["positives"], i["queue"].data, tau=a["tau"],
                                  in_batch=True)}


register(name="cmim.paper_infonce", reference="minibnn.methods.cmim.info_nce", op=_op_info_nce,
      make=lambda rng: ({"anchor": unit_rows(rng, (4, 8)), "positives": unit_rows(rng, (4, 8)),
                         "queue": unit_rows(rng, (6, 8))}, {}),
      attrs={"tau": 0.1}, outputs=("loss",), grads=("anchor", "positives", "queue"),
      detached=("queue",),
      description="The paper form of CMIM (per layer): InfoNCE between the embedded binary "
                  "activations (anchor) and the embedded latent real ones (positives), with "
                  "in-batch negatives and a queue of earlier latent embeddings.",
      conventions=("logits[b] = [<a_b, p_0>, ..., <a_b, p_{B-1}>, <a_b, queue_0>, ...] / tau "
                   "(B, B + K); target b (the diagonal); cross-entropy, batch MEAN.",
                   "The positives are NOT detached (they are also the negatives of the other "
                   "anchors); the queue is DETACHED (gradient 0).",))


# ----------------------------------------------------------------------------- S2-BNN
def _op_distribution(i, p, a):
    return {"loss": s2bnn.distribution_loss(i["student"], i["teacher"], tau=a["tau"])}


register(name="s2bnn.distribution_loss", reference="minibnn.methods.s2bnn.distribution_loss",
      op=_op_distribution,
      make=lambda rng: ({"student": unit_rows(rng, (4, 16)), "teacher": unit_rows(rng, (4, 16))},
                        {}),
      attrs={"tau": 0.2}, outputs=("loss",), grads=("student", "teacher"), detached=("teacher",),
      description="S2-BNN's guided distribution calibration (arXiv:2102.08946, DistributionLoss):"
                  " L = 1/N sum_n -sum_d softmax(t_n / tau)_d log_softmax(s_n / tau)_d over the "
                  "D = 16 embedding dimensions.",
      conventions=("Softmax over the embedding dimensions (axis 1), both inputs divided by "
                   "tau = 0.2; cross-entropy form (= KL + H(p_t)), no tau^2 factor; batch MEAN.",
                   "The teacher is DETACHED (frozen): its gradient is 0.",
                   "Inputs are the L2-normalised projections (the caller normalises)."))


def _op_moco(i, p, a):
    logits = s2bnn.moco_logits(i["q"], i["k"], i["queue"].data, tau=a["tau"])
    return {"loss": s2bnn.moco_infonce(i["q"], i["k"], i["queue"].data, tau=a["tau"]),
            "logits": logits}


register(name="s2bnn.moco_infonce", reference="minibnn.methods.s2bnn.moco_infonce", op=_op_moco,
      make=lambda rng: ({"q": unit_rows(rng, (4, 16)), "k": unit_rows(rng, (4, 16)),
                         "queue": unit_rows(rng, (8, 16))}, {}),
      attrs={"tau": 0.2}, outputs=("loss",), grads=("q", "k", "queue"), detached=("k", "queue"),
      intermediates=("logits",),
      description="MoCo v2's InfoNCE as S2-BNN uses it (arXiv:1911.05722): logits = [<q_n, k_n>,"
                  " <q_n, queue_j>] / tau (N, 1 + K), cross-entropy with label 0, batch mean.",
      conventions=("The queue holds K = 8 keys as ROWS (K, D) (the official code stores the "
                   "transpose).", "k comes from the key encoder and is DETACHED; the queue is "
                   "a constant: both gradients are 0.",
                   "Intermediate logits (N, 1 + K), positive in column 0."))




def _op_moco_step(i, p, a):
    q, k = i["q"], i["k"]
    queue = s2bnn.MoCoQueue(q.shape[1], i["queue"].shape[0], q.shape[0])
    queue.keys, queue.ptr = np.array(i["queue"].data), a["ptr"]         # the module's buffer
    logits = s2bnn.moco_logits(q, k, queue.keys, tau=a["tau"])             # (N, 1 + K)
    loss = F.cross_entropy(logits, np.zeros(q.shape[0], dtype=np.int64))
    queue.enqueue(k.data)                              # MoCo enqueues in forward, before backward
    return {"loss": loss, "logits": logits, "queue_after": queue.keys.copy()}


register(name="s2bnn.moco_step", reference="minibnn.methods.s2bnn.moco_logits + MoCoQueue.enqueue",
      op=_op_moco_step,
      make=lambda rng: ({"q": unit_rows(rng, (4, 16)), "k": unit_rows(rng, (4, 16)),
                         "queue": unit_rows(rng, (8, 16))}, {}),
      attrs={"tau": 0.2, "ptr": 4}, outputs=("loss",), grads=("q", "k", "queue"),
      detached=("k", "queue"), intermediates=("logits",),
      description="One MoCo step in the training call order: score q against the queue, enqueue "
                  "the keys k (rows ptr .. ptr + N - 1), then backward. The gradient of q is that "
                  "of the queue as it was when the logits were computed.",
      conventions=("logits = [<q_n, k_n>, <q_n, queue_j>] / tau (N, 1 + K), cross-entropy with "
                   "label 0, batch mean; the queue holds keys as ROWS (K, D).",
                   "After the logits and before backward: queue[ptr:ptr + N] <- k. Return the "
                   "updated queue as queue_after. A port that scores against the live queue "
                   "buffer (no clone) gets the wrong grad_q here.",
                   "k and the queue are DETACHED: both gradients are 0."))
