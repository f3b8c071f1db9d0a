"""Solutions to the exercises of tutorial 09 (verifying a port); each ends with its check."""

import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from minibnn import golden
from minibnn.verify.torch import TorchPort

WORK = Path(tempfile.mkdtemp(prefix="minibnn_09_solutions_"))
golden.write_golden(WORK / "cases", only="quantizer.ste,cmim.nce_loss,cmim.official")

# 1. Read a case and recompute its loss by hand: CRD's NCE with c = N / M.
case = golden.load_case(WORK / "cases", "cmim.nce_loss")
x, a = case.inputs["x"], case.attrs
c = a["n_noise"] / a["n_data"]
mine = -np.mean(np.log(x[:, 0] / (x[:, 0] + c + a["eps"]))
                + np.sum(np.log(c / (x[:, 1:] + c + a["eps"])), axis=1))
check = case.checks["loss"]
print(f"1. NCE by hand {mine:.10f}, reference {float(case.expected['loss']):.10f}")
assert abs(mine - case.expected["loss"]) <= check.atol + check.rtol * abs(case.expected["loss"])


# 2. A port written with torch.sign (sign(0) = 0) fails strictly, passes under its convention.
def ste(i, p, a):
    x = i["x"]
    clipped = x.clamp(-1.0, 1.0)                      # gradient 1 on |x| <= 1, edges included
    return clipped + (torch.sign(x) - clipped).detach()


port = TorchPort(torch.float64)
port.function("quantizer.ste", ste)
cases = golden.load_cases(WORK / "cases", only="quantizer.ste")
strict = golden.verify(cases, port)
declared = golden.verify(cases, port, conventions=["sign0=zero"])
print(f"2. strict: {strict.summary()}; with sign0=zero: {declared.summary()}")
assert not strict.ok and declared.ok

# 3. Who is wrong? The reference's own gradients agree with finite differences of its forward.
report = golden.finite_difference_check(golden.load_case(WORK / "cases", "cmim.official"))
print(f"3. {len(report.rows)} reference gradients of cmim.official agree with finite "
      f"differences: {report.ok}")
assert report.ok
shutil.rmtree(WORK)                                  # the scratch folder
