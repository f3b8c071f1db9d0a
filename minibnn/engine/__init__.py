"""minibnn.engine: bit-packed inference of trained binary networks on the CPU.

    bitpack       +-1 values <-> uint64 words (bit 1 means -1, sign(0) = +1), NumPy only
    pack          the fast sign packers (Numba): float activations -> words, NCHW or NHWC
    isa           which popcount this CPU gets (isa_path(): avx512, avx2 or generic)
    buffers       64-byte aligned, lane-padded kernel buffers; peak: the measured binary peak
    gemm, conv    XNOR-popcount GEMM / binary linear and binary conv (Numba) with fused output
                  stages, each beside its NumPy twin
    stage         the float arithmetic after every layer (fused output stage), NumPy twin
    float_layers  the real-valued layers and steps kept in float32
    graph         the nodes of an exported model
    export        trained model -> PackedModel, through the export_packed(builder, x) protocol
    runtime       PackedModel: run, trace accumulators, size report, .npz save/load

    from minibnn.engine import export, PackedModel
    packed = export(model)                 # model: any registry architecture, binary
    logits = packed(x)                     # x float32 (N, C, H, W), normalised as in training
    packed.save("model.npz"); PackedModel.load("model.npz").predict(x)
"""

from . import bitpack, conv, float_layers, gemm, graph, isa, pack, runtime, stage
from .export import ExportBuilder, ExportError, export
from .isa import isa_path
from .runtime import PackedFormatError, PackedModel, SizeReport, Trace

__all__ = ["bitpack", "pack", "isa", "isa_path", "gemm", "conv", "stage", "float_layers", "graph",
           "runtime", "export", "ExportBuilder", "ExportError", "PackedModel",
           "PackedFormatError", "SizeReport", "Trace"]
