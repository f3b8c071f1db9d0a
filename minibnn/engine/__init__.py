"""minibnn.engine: bit-packed inference of trained binary networks on the CPU.

    bitpack       +-1 values <-> uint64 words (bit 1 means -1, sign(0) = +1), NumPy only
    isa           which popcount this CPU gets (isa_path(): avx512, avx2 or generic)
    buffers       64-byte aligned, lane-padded kernel buffers; peak: the measured binary peak
    kernels*      XNOR-popcount GEMM / conv (Numba) with fused output stages, NumPy twins
    ops, graph    the float arithmetic (fused output stage) and nodes of an exported model
    export        trained model -> PackedModel (BN and scales folded, real first/last layers)
    runtime       PackedModel: run, trace accumulators, size report, .npz save/load

    from minibnn.engine import export, PackedModel
    packed = export(model)                 # model: any registry architecture, binary
    logits = packed(x)                     # x float32 (N, C, H, W), normalised as in training
    packed.save("model.npz"); PackedModel.load("model.npz").predict(x)
"""

from . import bitpack, graph, isa, kernels, kernels_conv, ops, runtime
from .export import ExportError, export
from .isa import isa_path
from .runtime import PackedFormatError, PackedModel, SizeReport, Trace

__all__ = ["bitpack", "isa", "isa_path", "kernels", "kernels_conv", "ops", "graph", "runtime",
           "export", "ExportError", "PackedModel", "PackedFormatError", "SizeReport", "Trace"]
