"""The golden cases: importing this module registers every case (see spec.py for the machinery).

    cases_layers.py    quantizers, weight binarizers, binary layers, batch norm, conv2d
    cases_methods.py   LCR-BNN, CMIM and S2-BNN losses
    cases_engine.py    the packed XNOR-popcount kernels
"""

from . import cases_engine, cases_layers, cases_methods  # noqa: F401 (importing registers the cases)
from .spec import (DEFAULT_SEED, GENERAL_CONVENTIONS, SPECS, Spec, build_case, build_cases,
                   case_names, reference)

__all__ = ["DEFAULT_SEED", "GENERAL_CONVENTIONS", "Spec", "SPECS", "case_names", "build_case",
           "build_cases", "reference"]
