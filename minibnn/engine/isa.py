"""Which popcount the packed kernels use on this CPU, and the LLVM pieces behind each choice.

A binary MAC is one bit of  a.b = K - 2 popcount(a XOR b)  (gemm.py). The kernels spend
nearly all their time in XOR, popcount and add, and how to popcount a vector depends on the ISA:

    path     chosen when the Numba target has       popcount
    avx512   AVX-512 VPOPCNTDQ                      vpopcntd per word, one add per word
    avx2     AVX2 (x86-64) without VPOPCNTDQ        3x3 convs: nibble tables chosen by the input
                                                    (nibble.py); other kernels: as generic
    generic  anything else (ARM64, older x86)       per byte, widened once per up to 31 terms

AVX2 has no vector popcount. LLVM lowers a 32-bit lane popcount there to a nibble lookup
(vpshufb: the 4-bit table trick) followed by a widening of bytes to 32 bits (vpsadbw and
unpacks), about 11 instructions per vector. `popsum16` instead combines the up to 31 XORed
terms of one output with carry-save adders (Harley-Seal) first, counts the few vectors left
per byte (llvm.ctpop on <64 x i8>: vpshufb on AVX2, one `cnt` on ARM NEON), adds those counts
as bytes (at most 8 * 31 < 256) and widens to 32-bit lanes once: Mula, Kurz and Lemire,
"Faster population counts using AVX2 instructions" (The Computer Journal, 2018).
Differences from the paper: the adders reduce the terms of one output (18 for a 3x3 word), not
a long stream with carried state, so the leftovers of every weight get their own popcount;
and counts are widened to 32-bit lanes (one output channel each), not summed to 64 bits with
vpsadbw. On x86-64 targets with AVX2 the leftovers of weight k are looked up in a table of
k * popcount (no shifts) and bytes widen by two multiply-adds with 1 (vpmaddubsw, vpmaddwd);
elsewhere by llvm.ctpop, shifts and masks. The avx2 path runs popsum16 for its linear and
non-3x3 layers; its 3x3 convs skip the XOR and the adders altogether (nibble.py), which is
faster where shuffles are the only bottleneck left. Measurements: docs/engine_speed.md.

The path is chosen once per process from the CPU features Numba compiles for (its
NUMBA_CPU_NAME / NUMBA_CPU_FEATURES overrides, else the host's, via llvmlite), and
MINIBNN_ISA=avx512|avx2|generic overrides it. The kernels take the popcount method as a runtime
argument (so every method is exact on every CPU and the tests run each one); only
pack.neg_mask16 and the byte counting of popsum16 choose at compile time, by target (Numba's
cache keys on the target).
Imports numba and llvmlite only.
"""

import functools
import os

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils, config
from numba.extending import intrinsic, overload

__all__ = ["ISA_PATHS", "POPCOUNT_WORDS", "POPCOUNT_BYTES", "POPCOUNT_NIBBLES", "isa_path",
           "detected_isa", "host_isa", "host_cpu_name", "lesser_isa_warnings", "popcount_method",
           "target_cpu", "popcount", "popsum16", "popsum16_out"]

ISA_PATHS = ("avx512", "avx2", "generic")
POPCOUNT_WORDS, POPCOUNT_BYTES, POPCOUNT_NIBBLES = 0, 1, 2   # runtime codes for the kernels
_METHOD = {"avx512": POPCOUNT_WORDS, "avx2": POPCOUNT_NIBBLES, "generic": POPCOUNT_BYTES}
MAX_POPSUM_TERMS = 31                               # byte counts: 8 * 31 = 248 < 256


@functools.lru_cache(maxsize=1)
def target_cpu() -> tuple:
    """(triple, cpu name, set of enabled features) Numba compiles for: its NUMBA_CPU_NAME and
    NUMBA_CPU_FEATURES when set (as Numba's JIT codegen reads them), else the host's."""
    llvm.initialize_native_target()
    name = config.CPU_NAME or llvm.get_host_cpu_name()
    feats = config.CPU_FEATURES
    if feats is None:
        feats = llvm.get_host_cpu_features().flatten()
    enabled = {f[1:] for f in feats.split(",") if f.startswith("+")}
    return llvm.get_process_triple(), name, frozenset(enabled)


def isa_of(triple: str, features) -> str:
    """The path a target deserves: see the table in the module docstring."""
    if not triple.startswith(("x86_64", "i686", "i386")):
        return "generic"
    if "avx512vpopcntdq" in features and "avx512f" in features:
        return "avx512"
    return "avx2" if "avx2" in features else "generic"


def host_cpu_name() -> str:
    """LLVM's name for the host CPU (e.g. znver3, skylake-avx512)."""
    llvm.initialize_native_target()
    return llvm.get_host_cpu_name()


def host_isa() -> str:
    """The path the CPU itself supports (llvmlite's host features; ignores NUMBA_CPU_*)."""
    llvm.initialize_native_target()
    feats = llvm.get_host_cpu_features().flatten()
    return isa_of(llvm.get_process_triple(), {f[1:] for f in feats.split(",") if f[:1] == "+"})


def lesser_isa_warnings() -> list:
    """One line per environment variable that makes the engine run a lesser path than the
    CPU has (NUMBA_CPU_NAME / NUMBA_CPU_FEATURES through the compile target, MINIBNN_ISA)."""
    rank = {"generic": 0, "avx2": 1, "avx512": 2}
    host, target, run = host_isa(), detected_isa(), isa_path()
    notes = []
    if rank[target] < rank[host]:
        forced = [f"{v}={os.environ[v]}" for v in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")
                  if os.environ.get(v)]
        notes.append(f"{' '.join(forced) or 'the Numba target'} compiles the kernels for the "
                     f"{target} path on a CPU that has {host}")
    if rank[run] < rank[target]:
        notes.append(f"MINIBNN_ISA={os.environ.get('MINIBNN_ISA')} runs the {run} path where "
                     f"the compile target has {target}")
    return notes


def detected_isa() -> str:
    """The path the compile target supports, ignoring MINIBNN_ISA."""
    triple, _, features = target_cpu()
    return isa_of(triple, features)


@functools.lru_cache(maxsize=1)
def isa_path() -> str:
    """The path this process runs: MINIBNN_ISA if set, else detected_isa()."""
    forced = os.environ.get("MINIBNN_ISA", "").strip().lower()
    if not forced:
        return detected_isa()
    if forced not in ISA_PATHS:
        raise ValueError(f"MINIBNN_ISA must be one of {', '.join(ISA_PATHS)}, found {forced!r}")
    return forced


def popcount_method(isa: str | None = None) -> int:
    """Runtime popcount code of a path (default: isa_path())."""
    isa = isa_path() if isa is None else isa
    if isa not in _METHOD:
        raise ValueError(f"isa must be one of {', '.join(ISA_PATHS)}, found {isa!r}")
    return _METHOD[isa]


def vector_compare_target() -> bool:
    """Whether the compile target is x86-64 with AVX2, where pack.neg_mask16 compiles to a
    vector compare + mask move (vmovmskps / vpmovmskb, or kmovw on AVX-512) and popsum16 and
    nibble.nibsum32 use vpshufb lookups. Elsewhere: a loop, and llvm.ctpop on bytes."""
    triple, _, features = target_cpu()
    return triple.startswith("x86_64") and "avx2" in features


# ---------------------------------------------------------------------------------------------
# Word popcount: a plain Python function (used under NUMBA_DISABLE_JIT=1) and the overload
# Numba compiles instead (llvm.ctpop: vpopcntd on AVX-512 VPOPCNTDQ, a lookup elsewhere).

def popcount(x):
    """Number of set bits of an unsigned integer (uint32 or uint64)."""
    return int(x).bit_count()


@intrinsic
def _ctpop(typingctx, x):
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        return builder.ctpop(args[0])
    return x(x), codegen


@overload(popcount)
def _popcount_jit(x):
    if isinstance(x, types.Integer):
        return lambda x: _ctpop(x)


# ---------------------------------------------------------------------------------------------
# Byte popcount of 16 lanes, summed over up to 31 terms before one widening.

def popsum16(dst, at, w, offs, xs, add):
    """For j < 16, with d = dst[at[0], at[1] + j]:

        d = [d if add] + sum_k popcount(xs[k] ^ w[offs[k] + j])

    dst uint32 2-D (row at[0], columns at[1] .. at[1] + 15), w uint32 1-D C-contiguous, offs and
    xs tuples of equal length <= 31 (weight start indices, uint32 inputs broadcast to 16 lanes).
    Compiled, the 16-lane loads are unchecked: the caller keeps every index in bounds.
    """
    for j in range(16):
        total = sum(int(w[o + j] ^ x).bit_count() for o, x in zip(offs, xs))
        dst[at[0], at[1] + j] = (int(dst[at[0], at[1] + j]) if add else 0) + total


def popsum16_out(out, at, w, offs, xs, add, acc, base, bo):
    """popsum16 finishing an int32 output instead of updating dst: for j < 16, (r, c) = at,

        out[r, c + j] = base[bo + j] - 2 ([acc[r, c + j] if add] + sum_k popcount(xs[k] ^ w[offs[k] + j]))

    acc uint32 2-D (read only), out int32 2-D, base int32 1-D: the last word of a conv writes
    its result directly (a = base - 2 popcounts), sparing a pass over the accumulators."""
    for j in range(16):
        total = sum(int(w[o + j] ^ x).bit_count() for o, x in zip(offs, xs))
        prev = int(acc[at[0], at[1] + j]) if add else 0
        out[at[0], at[1] + j] = int(base[bo + j]) - 2 * (prev + total)


def _count_portable(builder, levels, b64):
    """Byte counts (b64) of the bits of all vectors in `levels`, each times its weight: one
    llvm.ctpop per vector, shifted by its weight (bytes stay < 256: no carry out)."""
    ctpop = cgutils.get_or_insert_function(builder.module, ir.FunctionType(b64, [b64]),
                                           "llvm.ctpop.v64i8")
    total = ir.Constant(b64, None)
    for weight, vs in levels.items():
        if not vs:
            continue
        cnt = ir.Constant(b64, None)
        for v in vs:
            cnt = builder.add(cnt, builder.call(ctpop, [builder.bitcast(v, b64)]))
        if weight > 1:
            cnt = builder.shl(cnt, ir.Constant(b64, [weight.bit_length() - 1] * 64))
        total = builder.add(total, cnt)
    return total


def _widen_portable(builder, total, v16):
    """4 byte counts per 32-bit lane -> their sum, with shifts and masks."""
    t = builder.bitcast(total, v16)
    m8 = ir.Constant(v16, [0x00FF00FF] * 16)
    t = builder.add(builder.and_(t, m8),
                    builder.and_(builder.lshr(t, ir.Constant(v16, [8] * 16)), m8))
    return builder.add(builder.and_(t, ir.Constant(v16, [0xFFFF] * 16)),
                       builder.lshr(t, ir.Constant(v16, [16] * 16)))


def _carry_save(builder, terms):
    """Carry-save adders (Harley-Seal; 5 logic ops take 3 vectors of weight k to one of weight k
    and one of 2k) over `terms`, run as soon as three vectors of a weight exist (few vectors
    live at once: 16 AVX2 registers hold them without spilling), until at most two of each
    weight remain. Returns {weight: [vectors]}; 18 terms: 12 adders, 6 vectors left."""
    levels = {}
    for t in terms:
        weight, carry = 1, t
        while carry is not None:
            vs = levels.setdefault(weight, [])
            vs.append(carry)
            carry = None
            if len(vs) == 3:
                a, b, c = vs
                u = builder.xor(a, b)
                levels[weight] = [builder.xor(u, c)]
                carry = builder.or_(builder.and_(a, b), builder.and_(u, c))
                weight *= 2
    return levels


def _popsum_x86(context, builder, sig, args, w_data):
    """popsum16 for x86-64 with AVX2, one 256-bit half (8 lanes) at a time: XORed terms,
    carry-save adders in stream order, then each remaining vector's two nibbles looked up
    (vpshufb) in a table of weight * popcount, so weights cost no shifts, and the byte sums
    widened to 32-bit lanes by two multiply-adds with 1 (vpmaddubsw: byte pairs -> 16 bits,
    vpmaddwd: pairs -> 32 bits) instead of shifts and masks. Returns the 16 lane sums."""
    i8, i16, i32 = ir.IntType(8), ir.IntType(16), ir.IntType(32)
    b32, w16, d8 = ir.VectorType(i8, 32), ir.VectorType(i16, 16), ir.VectorType(i32, 8)
    fn = functools.partial(cgutils.get_or_insert_function, builder.module)
    pshufb = fn(ir.FunctionType(b32, [b32, b32]), "llvm.x86.avx2.pshuf.b")
    maddubs = fn(ir.FunctionType(w16, [b32, b32]), "llvm.x86.avx2.pmadd.ub.sw")
    maddwd = fn(ir.FunctionType(d8, [w16, w16]), "llvm.x86.avx2.pmadd.wd")
    nib, four = ir.Constant(b32, [15] * 32), ir.Constant(w16, [4] * 16)
    xs = []
    for k in range(len(sig.args[4])):
        x = context.cast(builder, builder.extract_value(args[4], k), sig.args[4].dtype,
                         types.uint32)
        x = builder.insert_element(ir.Constant(d8, None), x, ir.Constant(i32, 0))
        xs.append(builder.shuffle_vector(x, x, ir.Constant(d8, [0] * 8)))
    halves = []
    for h in range(2):
        terms = []
        for k in range(len(xs)):
            off = context.cast(builder, builder.extract_value(args[3], k), sig.args[3].dtype,
                               types.intp)
            off = builder.add(off, ir.Constant(off.type, 8 * h))
            ptr = builder.bitcast(builder.gep(w_data, [off]), d8.as_pointer())
            terms.append(builder.xor(builder.load(ptr, align=4), xs[k]))
        total = ir.Constant(b32, None)
        for weight, vs in _carry_save(builder, terms).items():
            lut = ir.Constant(b32, [weight * bin(n).count("1") for n in range(16)] * 2)
            for v in vs:
                v = builder.bitcast(v, b32)
                hi = builder.bitcast(builder.lshr(builder.bitcast(v, w16), four), b32)
                for nibbles in (builder.and_(v, nib), builder.and_(hi, nib)):
                    total = builder.add(total, builder.call(pshufb, [lut, nibbles]))
        pairs = builder.call(maddubs, [total, ir.Constant(b32, [1] * 32)])
        halves.append(builder.call(maddwd, [pairs, ir.Constant(w16, [1] * 16)]))
    return builder.shuffle_vector(*halves, ir.Constant(ir.VectorType(i32, 16), list(range(16))))


def _popsum_codegen(context, builder, sig, args):
    """IR of popsum16 (6 arguments) and popsum16_out (9): the lane sums, then the store."""
    i32, i8 = ir.IntType(32), ir.IntType(8)
    v16, b64 = ir.VectorType(i32, 16), ir.VectorType(i8, 64)
    w_data = context.make_array(sig.args[2])(context, builder, args[2]).data
    if vector_compare_target():                          # x86-64 with AVX2: chosen by target
        t = _popsum_x86(context, builder, sig, args, w_data)
    else:
        lanes0 = ir.Constant(ir.VectorType(i32, 16), [0] * 16)
        terms = []
        for k in range(len(sig.args[4])):
            off = context.cast(builder, builder.extract_value(args[3], k), sig.args[3].dtype,
                               types.intp)
            ptr = builder.bitcast(builder.gep(w_data, [off]), v16.as_pointer())
            x = builder.insert_element(ir.Constant(v16, None),
                                       context.cast(builder, builder.extract_value(args[4], k),
                                                    sig.args[4].dtype, types.uint32),
                                       ir.Constant(i32, 0))
            terms.append(builder.xor(builder.load(ptr, align=4),
                                     builder.shuffle_vector(x, x, lanes0)))
        t = _widen_portable(builder, _count_portable(builder, _carry_save(builder, terms), b64),
                            v16)
    idx = [context.cast(builder, builder.extract_value(args[1], i), sig.args[1].dtype,
                        types.intp) for i in range(2)]

    def lanes(k):                                        # pointer to row at[0], column at[1]
        arr = context.make_array(sig.args[k])(context, builder, args[k])
        ptr = cgutils.get_item_pointer(context, builder, sig.args[k], arr, idx)
        return builder.bitcast(ptr, v16.as_pointer())
    src = 0 if len(args) == 6 else 6
    old = builder.load(lanes(src), align=4)
    t = builder.add(t, builder.select(args[5], old, ir.Constant(v16, None)))
    if len(args) == 9:                                   # out = base[bo:bo+16] - 2 t
        base = context.make_array(sig.args[7])(context, builder, args[7]).data
        bo = context.cast(builder, args[8], sig.args[8], types.intp)
        bptr = builder.bitcast(builder.gep(base, [bo]), v16.as_pointer())
        t = builder.sub(builder.load(bptr, align=4), builder.shl(t, ir.Constant(v16, [1] * 16)))
    builder.store(t, lanes(0), align=4)
    return context.get_dummy_value()


def _popsum_args_ok(dst, at, w, offs, xs, dtype=types.uint32):
    return (isinstance(dst, types.Array) and dst.ndim == 2 and dst.dtype == dtype
            and isinstance(w, types.Array) and w.ndim == 1 and w.layout == "C"
            and w.dtype == types.uint32 and isinstance(offs, types.UniTuple)
            and isinstance(xs, types.UniTuple) and len(offs) == len(xs) <= MAX_POPSUM_TERMS
            and isinstance(at, types.UniTuple) and len(at) == 2)


@intrinsic
def _popsum16(typingctx, dst, at, w, offs, xs, add):
    if not _popsum_args_ok(dst, at, w, offs, xs):
        return None
    return types.none(dst, at, w, offs, xs, types.boolean), _popsum_codegen


@intrinsic
def _popsum16_out(typingctx, out, at, w, offs, xs, add, acc, base, bo):
    if not (_popsum_args_ok(out, at, w, offs, xs, types.int32)
            and _popsum_args_ok(acc, at, w, offs, xs) and isinstance(bo, types.Integer)
            and isinstance(base, types.Array) and base.ndim == 1 and base.layout == "C"
            and base.dtype == types.int32):
        return None
    return types.none(out, at, w, offs, xs, types.boolean, acc, base, bo), _popsum_codegen


@overload(popsum16, inline="always")
def _popsum16_jit(dst, at, w, offs, xs, add):
    return lambda dst, at, w, offs, xs, add: _popsum16(dst, at, w, offs, xs, add)


@overload(popsum16_out, inline="always")
def _popsum16_out_jit(out, at, w, offs, xs, add, acc, base, bo):
    return lambda out, at, w, offs, xs, add, acc, base, bo: _popsum16_out(
        out, at, w, offs, xs, add, acc, base, bo)


# ---------------------------------------------------------------------------------------------
# Compiler hints for the innermost kernels.

def _hot_loop_hints():
    """Compiler hints for the innermost kernels; a no-op in plain Python."""


@intrinsic
def _hints(typingctx):
    def codegen(context, builder, sig, args):
        fn = builder.function
        # LLVM keeps to 256-bit vectors on recent Intel cores unless asked; vpopcntq on 512-bit
        # registers does twice the work per instruction (ignored by targets without them).
        # llvmlite's attribute whitelist lacks this string attribute, hence set.add.
        set.add(fn.attributes, '"prefer-vector-width"="512"')
        # Callers pass non-overlapping arrays (accumulator rows, weights, outputs): marking
        # their data pointers noalias spares the vectoriser a runtime overlap check per call.
        # Numba names an array argument's fields arg.<name>.<i>; field 4 is the data pointer.
        for arg in fn.args:
            if isinstance(arg.type, ir.PointerType) and arg.name.startswith("arg.") \
                    and arg.name.endswith(".4"):
                arg.add_attribute("noalias")
        return context.get_dummy_value()
    return types.none(), codegen


@overload(_hot_loop_hints, inline="always")   # inlined, so the hints land on the caller itself
def _hot_loop_hints_jit():
    return lambda: _hints()
