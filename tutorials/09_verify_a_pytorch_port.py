# %% [markdown]
# # 09 · Verify a PyTorch port against minibnn's golden cases
#
# Goal: check, tensor by tensor, that a re-implementation of a BNN method in another framework
# computes what minibnn computes — forward values *and* gradients. We write two ports in
# PyTorch inside this tutorial (IR-Net's binary convolution with the EDE pseudo-gradient, and
# S2-BNN's distribution loss with MoCo's InfoNCE), run them over minibnn's golden cases, and
# then break them on purpose to see what the three classic bugs look like in the report:
# `torch.sign(0) = 0`, a missing `detach`, and a sum where a mean belongs (plus a fourth one
# that only the gradients catch). Prerequisites: tutorial 02 (sign and pseudo-gradients),
# PyTorch (CPU) installed. Runtime: about 5 seconds (4.2 s of CPU measured on a 2-core AMD EPYC,
# mostly importing PyTorch and compiling the packed kernels); no figures.

# %%
import os
import shutil
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as TF

from minibnn import golden
from minibnn.cli import main as minibnn_cli
from minibnn.verify.torch import TorchPort

FAST = os.environ.get("MINIBNN_FAST") == "1"
WORK = Path(tempfile.mkdtemp(prefix="minibnn_golden_"))
torch.set_num_threads(1)

# %% [markdown]
# ## 1. Golden cases: what they hold
# `minibnn golden DIR` writes one `.npz` per case and a `manifest.json` that describes them.
# The same thing from Python is `golden.write_golden(DIR, only=...)`. A case holds the
# **inputs** and **parameters** to feed the port, the **upstream** gradient of each output, the
# **expected** outputs and gradients (computed by minibnn in float64), a tolerance per tensor
# (chosen for a float32 port), and the **conventions** a port must follow. The repository
# commits a small set under `tests/golden/`, and the test suite recomputes it, so these
# numbers cannot drift silently.

# %%
ONLY = None if not FAST else ("quantizer.ede,weight.irnet,layer.binary_conv2d.irnet_ede,"
                              "s2bnn.*")
golden.write_golden(WORK / "cases", only=ONLY)
cases = golden.load_cases(WORK / "cases")
conv = golden.load_case(WORK / "cases", "layer.binary_conv2d.irnet_ede")
print(conv.description, "\n")
print("attrs   ", conv.attrs)
print("inputs  ", {k: v.shape for k, v in conv.inputs.items()})
print("params  ", {k: v.shape for k, v in conv.params.items()})
print("upstream", {k: v.shape for k, v in conv.upstream.items()})
for name, check in conv.checks.items():
    print(f"expected {name:<12} {check.kind:<12} shape {conv.expected[name].shape}, "
          f"atol {check.atol:.1e}, rtol {check.rtol:.0e}")
print("conventions:", *conv.conventions, sep="\n  - ")
assert conv.checks["wb"].kind == "intermediate" and not conv.checks["wb"].required
assert np.count_nonzero(conv.inputs["x"] == 0) == 3        # exact zeros, on purpose

# %% [markdown]
# ## 2. The calling convention, and the PyTorch adapter
# `minibnn verify` calls the port once per case:
#
#     fn(name, inputs, params, upstream, attrs) -> dict[str, array] | None
#
# and expects the outputs under their names and the gradient of every input or parameter X
# under `"grad_X"` — the gradient of `sum_o <upstream[o], output[o]>`, so for a scalar loss
# (upstream 1.0) it is just `loss.backward()`. Returning `None` skips a case. minibnn ships
# that glue for PyTorch: `minibnn.verify.torch.TorchPort` takes ordinary PyTorch functions
# (or modules) per case, converts the arrays to float32 tensors, marks the ones whose gradient
# the case checks as requiring grad, runs `torch.autograd.backward` with the case's upstream
# gradients, and turns a `None` gradient (a tensor the port detached) into zeros — exactly
# what the cases expect for detached tensors. docs/golden.md shows its module side (state
# loaded by name, layouts, buffers, captured intermediates).

# %%
def torch_port(forwards: dict) -> TorchPort:
    """The verify callable for {case name: forward(inputs, params, attrs) -> dict of tensors}."""
    port = TorchPort()
    for name, forward in forwards.items():
        port.function(name, forward)
    return port


def failing(result: golden.SuiteReport, case: str) -> set:
    return {row.tensor for row in result[case].failures}

# %% [markdown]
# ## 3. Port 1: IR-Net's binary convolution with EDE
# Written from the case conventions (and docs/methods.md §1.1): sign(0) = +1; the EDE backward
# `k t (1 - tanh²(t x))` with no clipping; balanced weights `(W - mean) / std` per output
# channel with the **unbiased** std and autograd through both; a **detached** power-of-two
# scale; zero padding after binarizing. The `zero` and `unbiased` switches exist only so that
# section 5 can break the port.

# %%
class EDESign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, t, k, zero):
        ctx.save_for_backward(x)
        ctx.t, ctx.k = t, k
        y = torch.where(x > 0, 1.0, -1.0)
        return torch.where(x == 0, torch.full_like(x, zero), y)   # zero=+1: sign(0) = +1

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        return dy * ctx.k * ctx.t * (1 - torch.tanh(ctx.t * x) ** 2), None, None, None


def irnet_weight(w, t, k, zero=1.0, unbiased=True):
    dims = tuple(range(1, w.ndim))
    centred = w - w.mean(dim=dims, keepdim=True)
    w_hat = centred / centred.std(dim=dims, unbiased=unbiased, keepdim=True)
    scale = 2.0 ** torch.round(torch.log2(w_hat.abs().mean(dim=dims, keepdim=True))).detach()
    return scale * EDESign.apply(w_hat, t, k, zero)


def irnet_forwards(zero=1.0, unbiased=True) -> dict:
    def conv(i, p, a):
        wb = irnet_weight(p["weight"], a["t"], a["k"], zero, unbiased)
        xb = EDESign.apply(i["x"], a["t"], a["k"], zero)
        return {"y": TF.conv2d(xb, wb, stride=a["stride"], padding=a["padding"]), "wb": wb}

    return {"quantizer.ede": lambda i, p, a: {"y": EDESign.apply(i["x"], a["t"], a["k"], zero)},
            "weight.irnet": lambda i, p, a: {"wb": irnet_weight(i["w"], a["t"], a["k"], zero,
                                                                unbiased)},
            "layer.binary_conv2d.irnet_ede": conv}


irnet = golden.verify(cases, torch_port(irnet_forwards()))
print(irnet["layer.binary_conv2d.irnet_ede"])
print(irnet.summary())
for name in irnet_forwards():
    assert irnet[name].status() == "OK", irnet[name]

# %% [markdown]
# ## 4. Port 2: S2-BNN's distribution loss and MoCo's InfoNCE
# The distribution loss is a cross-entropy between `softmax(t / τ)` of the frozen teacher and
# `log_softmax(s / τ)` of the student over the 128 (here 16) embedding dimensions, averaged
# over the batch; the teacher is **detached**. MoCo's InfoNCE puts the positive logit
# `<q, k>` in column 0 and the queue after it, with `k` from the key encoder (detached).

# %%
def distribution_loss(s, t, tau, detach=True, reduce=torch.mean):
    p_t = TF.softmax((t.detach() if detach else t) / tau, dim=1)
    return reduce(-(p_t * TF.log_softmax(s / tau, dim=1)).sum(dim=1))


def moco_infonce(q, k, queue, tau):
    k = k.detach()
    logits = torch.cat([(q * k).sum(dim=1, keepdim=True), q @ queue.detach().T], dim=1) / tau
    return TF.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long)), logits


def s2bnn_forwards(detach=True, reduce=torch.mean) -> dict:
    def moco(i, p, a):
        loss, logits = moco_infonce(i["q"], i["k"], i["queue"], a["tau"])
        return {"loss": loss, "logits": logits}

    return {"s2bnn.distribution_loss": lambda i, p, a: {
                "loss": distribution_loss(i["student"], i["teacher"], a["tau"], detach, reduce)},
            "s2bnn.moco_infonce": moco}


s2bnn = golden.verify(cases, torch_port(s2bnn_forwards()))
print(s2bnn["s2bnn.distribution_loss"])
print(s2bnn["s2bnn.moco_infonce"])
for name in s2bnn_forwards():
    assert s2bnn[name].status() == "OK", s2bnn[name]

# %% [markdown]
# ## 5. What the bugs look like
# **Bug 1: `torch.sign`.** The official LCR-BNN / CMIM / S2-BNN code binarizes with
# `torch.sign`, which maps 0 to 0. The cases contain exact zeros, so the port's output differs
# exactly there. In the convolution the zero also removes a term from the weight gradient
# (`grad_weight` sums `x_b · dy`), while `grad_x` is untouched: the pseudo-gradient does not
# look at the forward value. The report names the tensor, how many elements are off and the
# worst one, and lists the conventions to check.

# %%
bug = golden.verify(cases, torch_port(irnet_forwards(zero=0.0)))
print(bug["layer.binary_conv2d.irnet_ede"])
assert failing(bug, "quantizer.ede") == {"y"}
assert failing(bug, "layer.binary_conv2d.irnet_ede") == {"y", "grad_weight"}
assert bug["weight.irnet"].ok               # standardised weights are never exactly 0

# %% [markdown]
# **Bug 2: a missing `detach`.** Without `t.detach()` the teacher receives a gradient. The loss
# and the student's gradient are still right, so a training curve would not show it; the frozen
# teacher's weights would drift if it were in an optimizer. The golden case expects an exact
# zero for every detached tensor.

# %%
bug = golden.verify(cases, torch_port(s2bnn_forwards(detach=False)))
print(bug["s2bnn.distribution_loss"])
assert failing(bug, "s2bnn.distribution_loss") == {"grad_teacher"}

# %% [markdown]
# **Bug 3: a sum where the batch mean belongs.** Loss and gradient are both N times too large
# (N = 4 here): the report shows a max rel difference of 3 = N - 1.

# %%
bug = golden.verify(cases, torch_port(s2bnn_forwards(reduce=torch.sum)))
print(bug["s2bnn.distribution_loss"])
assert failing(bug, "s2bnn.distribution_loss") == {"loss", "grad_student"}
assert abs(bug["s2bnn.distribution_loss"].row("loss").max_rel - 3.0) < 1e-5

# %% [markdown]
# **Bug 4: the biased std.** `std(unbiased=False)` scales every standardised weight by
# sqrt(n / (n - 1)). No sign changes and the power-of-two scale stays put, so the forward is
# *identical* — only the gradient check catches it. This is why every case carries gradients
# for a given upstream, not just outputs.

# %%
bug = golden.verify(cases, torch_port(irnet_forwards(unbiased=False)))
print(bug["weight.irnet"])
assert failing(bug, "weight.irnet") == {"grad_w"}
assert failing(bug, "layer.binary_conv2d.irnet_ede") == {"grad_weight"}

# %% [markdown]
# ## 6. The same from the command line
# For your own port, put the callable in a file and run
# `minibnn verify DIR --against my_port.py:port` (or `--against package.module:port`). It
# prints the per-tensor report and exits with 1 when a tensor is NOT OK (2 for a usage error
# such as a misspelt function name), so it fits in CI; `--junit report.xml` and `--json` write
# machine-readable reports.
# Below, a plain-NumPy port of the distribution loss (with its hand-derived gradient
# `(softmax(s/τ) - softmax(t/τ)) / (N τ)`) goes through the CLI, then its buggy twin.

# %%
PORT = textwrap.dedent('''
    import numpy as np

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def port(name, inputs, params, upstream, attrs):
        if name != "s2bnn.distribution_loss":
            return None
        s, t, tau = inputs["student"], inputs["teacher"], attrs["tau"]
        p_s, p_t = softmax(s / tau), softmax(t / tau)
        loss = -(p_t * np.log(p_s)).sum(axis=1).MEAN()
        return {"loss": loss, "grad_student": upstream["loss"] * (p_s - p_t) / (len(s) * tau),
                "grad_teacher": np.zeros_like(t)}
''')
(WORK / "numpy_port.py").write_text(PORT.replace("MEAN", "mean"))
(WORK / "numpy_port_bug.py").write_text(PORT.replace("MEAN", "sum"))
code_ok = minibnn_cli(["verify", str(WORK / "cases"), "--against",
                       f"{WORK / 'numpy_port.py'}:port", "--only", "s2bnn.*"])
code_bug = minibnn_cli(["verify", str(WORK / "cases"), "--against",
                        f"{WORK / 'numpy_port_bug.py'}:port", "--only", "s2bnn.*", "--quiet"])
print("exit codes:", code_ok, code_bug)
assert (code_ok, code_bug) == (0, 1)

# %% [markdown]
# ## Where to go next
# `minibnn golden --list` shows every case: the quantizers and weight binarizers, binary and
# real layers, batch norm, the LCR loss (official and exact), CMIM (the released NCE with
# memory banks and sampled indices, and the paper's InfoNCE), S2-BNN's losses and the packed
# XNOR-popcount kernels. docs/golden.md describes the format and every convention; in
# particular, a port that follows the *official* code (sign(0) = 0) differs from minibnn
# exactly where an exact zero is binarised: declare it with `--convention sign0=zero` and those
# elements are judged by torch.sign's rule, in rows of their own. `minibnn verify
# --check-reference` recomputes the reference gradients by finite differences when you need to
# know whether the port or the reference is wrong.

# %%
shutil.rmtree(WORK)          # the scratch folder; comment this out to look at the files

# %% [markdown]
# ## Exercises
# Solutions: `tutorials/solutions/09_solutions.py` (it runs every check below).
# 1. **Read a case by hand.** Load `cmim.nce_loss` from a golden folder and recompute its loss
#    with NumPy from `case.inputs` and `case.attrs` (c = n_noise / n_data, the formula in its
#    conventions). Check: within `case.checks["loss"]`'s atol + rtol |want| of the reference.
# 2. **Declare a convention.** Port `quantizer.ste` with `TorchPort` using `torch.sign` and the
#    clamp trick (`clamp(x, -1, 1)` plus a detached correction). Check: `golden.verify` fails it
#    strictly and passes it with `conventions=["sign0=zero"]`.
# 3. **Who is wrong?** Check the reference itself: `golden.finite_difference_check` on
#    `cmim.official` (whose memory banks are updated before backward). Check: `report.ok`.
