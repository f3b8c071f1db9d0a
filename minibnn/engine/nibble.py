"""The avx2 path's 3x3 conv: popcounts looked up per nibble in tables chosen by the input.

For a fixed input byte x and any weight byte w,

    popcount(x ^ w) = T[x & 15][w & 15] + T[x >> 4][w >> 4],   T[v][n] = popcount(v ^ n),

so with the weights stored as nibbles (one per byte), the two 16-entry tables of one input byte
serve a whole vector of weight nibbles through one byte shuffle each (vpshufb on AVX2), with no
XOR and no bit counting left. A term is one input byte against the matching weight byte of 32
output channels (32 byte lanes of a 256-bit vector): two table loads per term, then two
shuffles and two byte adds per block of 32 output channels. Byte sums stay exact over the 24
terms of one kernel row and one 64-bit word (at most 24 * 8 = 192 < 256) and are widened to
uint32 once per call.

This is the nibble-lookup popcount of Mula, Kurz and Lemire ("Faster population counts using
AVX2 instructions", The Computer Journal, 2018) with one difference: their tables are fixed
(popcount of a nibble) and applied to x ^ w; here the table is picked by the input nibble, so
the XOR is folded into the lookup. Measurements: docs/engine_speed.md.

Weights are laid out by nibble_weights; the row kernel _rows9_nibbles computes the same
accumulators as row9._row9 and row9._row9_bytes. On targets other than x86-64 with AVX2 the
intrinsic compiles to a portable form (XOR with the splatted input nibble, llvm.ctpop on
bytes), so this method is exact on every CPU; it is chosen for the avx2 path only (isa.py).
Imports numpy, numba, llvmlite and the engine's buffers.py and isa.py only.
"""

import functools

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from .buffers import aligned_copy
from .isa import vector_compare_target

__all__ = ["TERMS", "nibble_weights", "nibsum32", "nibble_table"]

TERMS = 24                        # terms per call: 3 taps of a kernel row x 8 bytes of a word
DST, ROW, COLS, WN, WO, X, XOS, XS, ADD = range(9)    # positions of nibsum32's arguments


@njit(cache=True)
def _group_size(left):
    """Blocks of 32 output channels in the next call's group: 8 while 8 remain, then 4, 2, 1
    (one rule for nibble_weights' layout and _rows9_nibbles' walk over it)."""
    return 8 if left >= 8 else 4 if left >= 4 else 2 if left >= 2 else 1


def nibble_table() -> np.ndarray:
    """T uint8 (16, 16), T[v, n] = popcount(v ^ n): the table of input nibble v."""
    v = np.arange(16)
    return np.array([[bin(a ^ b).count("1") for b in v] for a in v], np.uint8)


def nibble_weights(w_words: np.ndarray) -> np.ndarray:
    """Re-lay 3x3 packed weights for _rows9_nibbles: w_words uint64 (M, 3, 3, Cw) -> uint8 1-D.

    Output channels form ceil(M / 32) blocks of 32 (zero padding past M), and the blocks form
    groups of _group_size blocks (8 while 8 remain, then 4, 2, 1). Group by group, for each
    word and kernel row kh, one tile of 24 terms (kw, byte b) x G blocks x (low, high nibbles)
    x 32 lanes:

        tile[k = 8 kw + b, g, 0, j] = byte (8 word + b) of w[32 (g0 + g) + j, kh, kw] & 15
        tile[k, g, 1, j]             = that byte >> 4

    so that nibsum32 finds every weight of a call at constant offsets from the tile's start
    (Cw * 3 * 24 * 64 * g0 + (3 word + kh) * 24 * 64 G, see _rows9_nibbles)."""
    m, kh, kw, cw = w_words.shape
    if (kh, kw) != (3, 3):
        raise ValueError(f"nibble_weights needs 3x3 weights, found {kh}x{kw}")
    n_blocks = -(-m // 32)
    wb = np.zeros((32 * n_blocks, 3, 3, cw, 8), np.uint8)
    wb[:m] = np.ascontiguousarray(w_words).view(np.uint8).reshape(m, 3, 3, cw, 8)
    wb = wb.reshape(n_blocks, 32, 3, 3, cw, 8).transpose(4, 2, 3, 5, 0, 1)  # (word,kh,kw,b,g,j)
    tiles, g0 = [], 0
    while g0 < n_blocks:
        size = _group_size(n_blocks - g0)
        part = wb[:, :, :, :, g0:g0 + size].reshape(cw, 3, TERMS, size, 1, 32)
        tiles.append(np.concatenate([part & 15, part >> 4], axis=4).reshape(-1))
        g0 += size
    return aligned_copy(np.concatenate(tiles))


def nibsum32(dst, row, cols, wn, wo, x, xos, xs, add):
    """For q < P = len(xos), g < G = len(cols) and j < 32, with d = dst[row + q, cols[g] + j]:

        d = [d if add] + sum_{k < 24} popcount(xbyte(q, k) ^ wbyte(k, g, j))
        xbyte(q, k) = byte xos[q] + (k // 8) xs + k % 8 of x's data (any C-contiguous array)
        wbyte(k, g, j) = wn[o + j] | wn[o + 32 + j] << 4,   o = wo + 64 (G k + g)

    P pixels share each weight load and G blocks of 32 output channels each input table; P and
    G are compile-time constants (tuple lengths), P G <= 8. dst uint32 2-D and x C-contiguous,
    wn uint8 1-D from nibble_weights (every entry < 16; the x86, portable and Python forms
    disagree on larger ones). Compiled, the loads are unchecked: the caller keeps every index
    in bounds."""
    xf = x.reshape(-1).view(np.uint8)
    for q, xo in enumerate(xos):
        for g, col in enumerate(cols):
            for j in range(32):
                total = 0
                for k in range(TERMS):
                    o = wo + 64 * (len(cols) * k + g)
                    w = int(wn[o + j]) | int(wn[o + 32 + j]) << 4
                    total += (int(xf[xo + (k // 8) * xs + k % 8]) ^ w).bit_count()
                old = int(dst[row + q, col + j]) if add else 0
                dst[row + q, col + j] = old + total


def _lookup_x86(builder, lo_nib, hi_nib, tables):
    """Byte counts of one term for AVX2: vpshufb of the weight nibbles in the input's tables."""
    b32 = lo_nib.type
    pshufb = cgutils.get_or_insert_function(builder.module, ir.FunctionType(b32, [b32, b32]),
                                            "llvm.x86.avx2.pshuf.b")
    return builder.add(builder.call(pshufb, [tables[0], lo_nib]),
                       builder.call(pshufb, [tables[1], hi_nib]))


def _lookup_portable(builder, lo_nib, hi_nib, nibbles):
    """The same byte counts anywhere: popcount(nibble ^ input nibble) by llvm.ctpop on bytes."""
    b32 = lo_nib.type
    ctpop = cgutils.get_or_insert_function(builder.module, ir.FunctionType(b32, [b32]),
                                           "llvm.ctpop.v32i8")
    return builder.add(builder.call(ctpop, [builder.xor(lo_nib, nibbles[0])]),
                       builder.call(ctpop, [builder.xor(hi_nib, nibbles[1])]))


class _NibsumIR:
    """LLVM IR of one nibsum32 call (arguments as in its signature): the P x G byte
    accumulators live in allocas (registers after mem2reg), one loop iteration per term."""

    def __init__(self, context, builder, sig, args):
        self.builder, i8 = builder, ir.IntType(8)
        self.b32, self.d32 = ir.VectorType(i8, 32), ir.VectorType(ir.IntType(32), 32)
        self.const = functools.partial(ir.Constant, context.get_value_type(types.intp))

        def data(k):
            return context.make_array(sig.args[k])(context, builder, args[k]).data

        def index(value, typ):
            return context.cast(builder, value, typ, types.intp)

        self.wn, self.x = data(WN), builder.bitcast(data(X), ir.PointerType(i8))
        self.wo, self.xs = index(args[WO], sig.args[WO]), index(args[XS], sig.args[XS])
        self.xos = [index(builder.extract_value(args[XOS], q), sig.args[XOS].dtype)
                    for q in range(len(sig.args[XOS]))]
        self.cols = [index(builder.extract_value(args[COLS], g), sig.args[COLS].dtype)
                     for g in range(len(sig.args[COLS]))]
        self.x86 = vector_compare_target()
        if self.x86:
            table = cgutils.global_constant(builder, "minibnn_nibble_table", ir.Constant(
                ir.ArrayType(i8, 256), [int(v) for v in nibble_table().reshape(-1)]))
            table.align = 64
            self.table = builder.bitcast(table, ir.PointerType(i8))
        self.slots = [[cgutils.alloca_once_value(builder, ir.Constant(self.b32, None))
                       for _ in self.cols] for _ in self.xos]

    def key(self, nibble):
        """x86: the 32-byte table of an input nibble (16 bytes, twice); else the nibble x 32."""
        b = self.builder
        if self.x86:
            row = b.load(b.bitcast(b.gep(self.table, [b.shl(nibble, self.const(4))]),
                                   ir.VectorType(ir.IntType(8), 16).as_pointer()), align=16)
            return b.shuffle_vector(row, row, ir.Constant(self.d32, list(range(16)) * 2))
        v = b.insert_element(ir.Constant(self.b32, None), b.trunc(nibble, ir.IntType(8)),
                             ir.Constant(ir.IntType(32), 0))
        return b.shuffle_vector(v, v, ir.Constant(self.d32, [0] * 32))

    def tables(self, q, tap):
        """The keys of pixel q's input byte for term offset `tap`."""
        b = self.builder
        xb = b.zext(b.load(b.gep(self.x, [b.add(self.xos[q], tap)])), self.xs.type)
        return self.key(b.and_(xb, self.const(15))), self.key(b.lshr(xb, self.const(4)))

    def weights(self, g, wk):
        """The low and high nibbles of block g for the term whose tile row starts at wk."""
        b = self.builder
        return [b.load(b.bitcast(b.gep(self.wn, [b.add(wk, self.const(64 * g + 32 * h))]),
                                 self.b32.as_pointer()), align=1) for h in range(2)]

    def accumulate(self, q, g, w, keys):
        """Accumulator (pixel q, block g) += byte counts of weights w in the tables `keys`."""
        b, slot = self.builder, self.slots[q][g]
        count = (_lookup_x86 if self.x86 else _lookup_portable)(b, *w, keys)
        b.store(b.add(b.load(slot), count), slot)

    def term(self, k):
        """Term k: 2 P keys, 2 G weight vectors, P G lookups. Few vectors live at once (AVX2
        has 16 registers): the accumulators, plus either all pixels' keys and one block's
        weights, or all blocks' weights and one pixel's keys."""
        b, c = self.builder, self.const
        tap = b.add(b.mul(self.xs, b.lshr(k, c(3))), b.and_(k, c(7)))
        wk = b.add(self.wo, b.mul(k, c(64 * len(self.cols))))
        n_pix, n_blocks = len(self.xos), len(self.cols)
        if n_pix <= n_blocks:
            keys = [self.tables(q, tap) for q in range(n_pix)]
            for g in range(n_blocks):
                w = self.weights(g, wk)
                for q in range(n_pix):
                    self.accumulate(q, g, w, keys[q])
        else:
            ws = [self.weights(g, wk) for g in range(n_blocks)]
            for q in range(n_pix):
                keys = self.tables(q, tap)
                for g in range(n_blocks):
                    self.accumulate(q, g, ws[g], keys)

    def store(self, context, sig, dst_arg, row, add):
        """dst[row + q, cols[g]:+32] = [old if add] + widened sums."""
        b = self.builder
        dst = context.make_array(sig.args[DST])(context, b, dst_arg)
        row = context.cast(b, row, sig.args[ROW], types.intp)
        for q, slots in enumerate(self.slots):
            for col, slot in zip(self.cols, slots):
                ptr = b.bitcast(cgutils.get_item_pointer(context, b, sig.args[DST], dst,
                                                         [b.add(row, self.const(q)), col]),
                                self.d32.as_pointer())
                old = b.select(add, b.load(ptr, align=4), ir.Constant(self.d32, None))
                b.store(b.add(old, b.zext(b.load(slot), self.d32)), ptr, align=4)


def _codegen(context, builder, sig, args):
    gen = _NibsumIR(context, builder, sig, args)
    # A loop over the terms, not unrolled here: unrolled, LLVM's scheduler hoisted every
    # term's table loads to the top and spilled them.
    with cgutils.for_range(builder, gen.const(TERMS)) as loop:
        gen.term(loop.index)
    gen.store(context, sig, args[DST], args[ROW], args[ADD])
    return context.get_dummy_value()


@intrinsic
def _nibsum32(typingctx, dst, row, cols, wn, wo, x, xos, xs, add):
    if not (isinstance(dst, types.Array) and dst.ndim == 2 and dst.dtype == types.uint32
            and dst.layout == "C" and isinstance(wn, types.Array) and wn.ndim == 1
            and wn.layout == "C" and wn.dtype == types.uint8 and isinstance(x, types.Array)
            and x.layout == "C"
            and isinstance(cols, types.UniTuple) and 1 <= len(cols) <= 8
            and isinstance(xos, types.UniTuple) and 1 <= len(xos) * len(cols) <= 8
            and all(isinstance(t, types.Integer) for t in (row, wo, xs, cols.dtype, xos.dtype))):
        return None
    return types.none(dst, row, cols, wn, wo, x, xos, xs, types.boolean), _codegen


@overload(nibsum32, inline="always")
def _nibsum32_jit(dst, row, cols, wn, wo, x, xos, xs, add):
    return lambda dst, row, cols, wn, wo, x, xos, xs, add: _nibsum32(
        dst, row, cols, wn, wo, x, xos, xs, add)


@njit(cache=True)
def _pixel_offsets(pix, xp, s, r0, r1, oh_total, ow_total):
    """pix[i] = byte offset in xp (N, Hp, Wp, Cw32) of the top-left tap of pixel i of output
    rows r0:r1 (row r = n OH + oh)."""
    hp, wp, cb = xp.shape[1], xp.shape[2], 4 * xp.shape[3]
    for r in range(r0, r1):
        n, oh = r // oh_total, r % oh_total
        for ow in range(ow_total):
            pix[(r - r0) * ow_total + ow] = ((n * hp + oh * s) * wp + ow * s) * cb


@njit(cache=True)
def _group_pass(acc, n_pix, pix, xp, wn, wo, xo, cb, c0, size, add):
    """nibsum32 over pixels 0:n_pix for one weight tile of `size` blocks starting at column c0:
    8 // size pixels per call while they last (each weight load serves them all), then one.
    Pixel i reads x bytes from pix[i] + xo."""
    i = 0
    if size == 8:
        cols8 = (c0, c0 + 32, c0 + 64, c0 + 96, c0 + 128, c0 + 160, c0 + 192, c0 + 224)
        for i in range(n_pix):
            nibsum32(acc, i, cols8, wn, wo, xp, (pix[i] + xo,), cb, add)
    elif size == 4:
        cols4 = (c0, c0 + 32, c0 + 64, c0 + 96)
        while i + 2 <= n_pix:
            nibsum32(acc, i, cols4, wn, wo, xp, (pix[i] + xo, pix[i + 1] + xo), cb, add)
            i += 2
        if i < n_pix:
            nibsum32(acc, i, cols4, wn, wo, xp, (pix[i] + xo,), cb, add)
    elif size == 2:
        while i + 4 <= n_pix:
            nibsum32(acc, i, (c0, c0 + 32), wn, wo, xp, (pix[i] + xo, pix[i + 1] + xo,
                                                         pix[i + 2] + xo, pix[i + 3] + xo), cb,
                     add)
            i += 4
        while i < n_pix:
            nibsum32(acc, i, (c0, c0 + 32), wn, wo, xp, (pix[i] + xo,), cb, add)
            i += 1
    else:
        while i + 8 <= n_pix:
            nibsum32(acc, i, (c0,), wn, wo, xp, (pix[i] + xo, pix[i + 1] + xo, pix[i + 2] + xo,
                                                 pix[i + 3] + xo, pix[i + 4] + xo,
                                                 pix[i + 5] + xo, pix[i + 6] + xo,
                                                 pix[i + 7] + xo), cb, add)
            i += 8
        while i < n_pix:
            nibsum32(acc, i, (c0,), wn, wo, xp, (pix[i] + xo,), cb, add)
            i += 1


@njit(cache=True)
def _rows9_nibbles(acc, pix, xp, s, wn, n_blocks, r0, r1, oh_total, ow_total):
    """A whole 3x3 kernel for output rows r0:r1 (row r = n OH + oh) with nibsum32:

        acc[i, m] = sum_{c, kh, kw < 3} popcount(xp[n, oh s + kh, ow s + kw, c] ^ w[m, kh, kw, c])

    for pixel i = (r - r0) OW + ow and m < 32 n_blocks (overwritten: acc uint32 needs
    >= (r1 - r0) OW rows and >= 32 n_blocks columns, which buffers.acc_width(M) gives). xp
    uint32 (N, Hp, Wp, Cw32) the padded input, wn nibble_weights(w); pix int64
    (>= (r1 - r0) OW) scratch. Groups of
    output channel blocks outside, then words and kernel rows, all pixels of the rows inside:
    one tile's weights (24 terms x up to 8 blocks, 12 KB) stay in L1 while every pixel reads
    them, and the whole weights are read once per call, not once per output row."""
    _pixel_offsets(pix, xp, s, r0, r1, oh_total, ow_total)
    n_pix, cw, wp, cb = (r1 - r0) * ow_total, xp.shape[3] // 2, xp.shape[2], 4 * xp.shape[3]
    g0 = 0
    while g0 < n_blocks:
        left = n_blocks - g0
        size = _group_size(left)
        for word in range(cw):
            for kh in range(3):
                wo = cw * 3 * TERMS * 64 * g0 + (word * 3 + kh) * TERMS * 64 * size
                _group_pass(acc, n_pix, pix, xp, wn, wo, kh * wp * cb + 8 * word, cb, 32 * g0,
                            size, word > 0 or kh > 0)
        g0 += size
