"""What a benchmark ran on: CPU model, the engine's ISA path, NumPy's BLAS, and the environment
variables that make any of them run a lesser instruction set than the CPU has.

Every `minibnn bench` command prints `machine_report()` first, because a speed figure means
little without it: the packed kernels' speed depends on their ISA path, and NumPy's on the
kernels OpenBLAS runs (OPENBLAS_CORETYPE=Haswell forces AVX2 kernels on an AVX-512 CPU);
docs/engine_speed.md has the measurements.
threadpoolctl would report BLAS details too; it is not a dependency, so this asks the OpenBLAS
NumPy has loaded directly (blas_threads.py) and says "unknown" for any other BLAS.
"""

from __future__ import annotations

import os
import platform

import numba
import numpy as np

from ..blas_threads import blas_core_name, blas_threads
from ..engine import isa

__all__ = ["cpu_model", "machine_report", "print_machine_report", "blas_warning"]

# OpenBLAS kernel sets (its core names, lower case) by the vector ISA they use.
_BLAS_AVX512 = {"skylakex", "cooperlake", "sapphirerapids"}
_BLAS_AVX2 = {"haswell", "zen", "excavator", "skylake"}


def _cpuinfo() -> dict:
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break                                  # the first processor is enough
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def cpu_model() -> str:
    """Model name, with family/model numbers (VMs often shorten the name, e.g. "AMD EPYC")
    and the CPU name LLVM detects (e.g. znver3, sapphirerapids)."""
    info = _cpuinfo()
    name = info.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    extra = [f"family {info['cpu family']} model {info['model']}"] if "cpu family" in info else []
    extra.append(f"LLVM host CPU {isa.host_cpu_name()}")
    return f"{name} ({', '.join(extra)})"


def blas_warning(core: str | None, host: str, env: str | None) -> str | None:
    """A warning when OPENBLAS_CORETYPE (env) makes OpenBLAS use kernels for a lesser ISA
    than the host's isa path, else None."""
    if not env or core is None:
        return None
    core_rank = 2 if core.lower() in _BLAS_AVX512 else 1 if core.lower() in _BLAS_AVX2 else 0
    host_rank = {"avx512": 2, "avx2": 1}.get(host, 0)
    if core_rank < host_rank:
        return (f"OPENBLAS_CORETYPE={env} makes NumPy's OpenBLAS use its {core} kernels on a "
                f"CPU with {host}: NumPy-side timings are slower than this CPU allows")
    return None


def machine_report(threads: int | None = None) -> list:
    """Lines describing the machine, the engine's ISA path and NumPy's BLAS, then warnings."""
    triple, target, _ = isa.target_cpu()
    n = numba.get_num_threads() if threads is None else threads
    core, env = blas_core_name(), os.environ.get("OPENBLAS_CORETYPE")
    lines = [f"CPU: {cpu_model()}, {os.cpu_count()} logical cores",
             f"Numba kernels: ISA path {isa.isa_path()} (CPU supports {isa.host_isa()}; compiled "
             f"for {target}, {triple}), {n} thread(s); numba {numba.__version__}",
             f"NumPy BLAS: OpenBLAS core type {core or 'unknown'}"
             f"{f' (OPENBLAS_CORETYPE={env})' if env else ''}, {blas_threads() or 'unknown'} "
             f"thread(s); numpy {np.__version__}"]
    warns = isa.lesser_isa_warnings()
    blas = blas_warning(core, isa.host_isa(), env)
    warns += [blas] if blas else []
    return lines + [f"WARNING: {w}" for w in warns]


def print_machine_report(threads: int | None = None) -> None:
    print("\n".join(machine_report(threads)), flush=True)
