// The delta encodings of the .lftfpatch format (Formats/lftfpatch.md, "Encodings").
// Every encoding works on one chunk of a tensor at a time and is exact: decoding
// forward (from the base bytes) gives the patched bytes, and decoding in reverse (from the
// patched bytes) gives the base bytes, bit for bit.
import Foundation
import ModelFormats

public enum DeltaEncoding: String, Codable, CaseIterable, Sendable {
    /// The target bytes themselves, zstd-compressed; needs no source. Used when dtypes differ.
    case zstd
    /// base XOR patched, bytes of each element grouped by significance, zstd-compressed.
    case xorPlanes = "xor-planes"
    /// BF16/F16/F32: integer difference of the bit patterns, zigzag-coded, range-coded in the
    /// context of the base element's exponent.
    case floatDiff = "float-diff"
    /// Q4_0/Q4_1/Q8_0: f16 block scales as zigzag bit-pattern differences, quants as wrapping
    /// differences, range-coded in the context of whether the block's scales changed.
    case quantDiff = "quant-diff"
    /// BF16/F16/F32: the differences of `float-diff`, coded with static per-frame tables and
    /// interleaved rANS (RansCodec.swift): slightly smaller, ~5× faster to decode.
    case floatRans = "float-rans"
    /// A float tensor stored from a quantized one (Q4_0/Q4_1/Q8_0 → F16/BF16/F32, what `create`
    /// writes for a quantized GGUF): `float-rans` against the base dequantized to the target
    /// dtype. Forward only (a `reverse` stream, `zstd` of the base, is required).
    case floatRansDequant = "float-rans-dequant"
    /// A quantized tensor from a float one (the `reverse` stream of a Q4_0/Q4_1/Q8_0 block
    /// stored as F16/BF16/F32): `quant-diff` against the float source requantized to the target
    /// dtype with ggml's reference quantizer. One direction only (float source → quantized target).
    case quantDiffRequant = "quant-diff-requant"

    /// Whether the encoding derives the target from a source tensor.
    public var needsSource: Bool { self != .zstd }

    /// Whether source and target have different dtypes (the frame decodes one way only).
    public var changesDtype: Bool { self == .floatRansDequant || self == .quantDiffRequant }

    /// Whether a frame can be decoded with a per-element direction (some elements base, some
    /// patched), which the sector journal's recovery needs.
    public var decodesMixed: Bool { self == .floatRans }

    /// Whether the forward frame also decodes the base from the result (same dtype both sides).
    public var decodesBackwards: Bool { needsSource && !changesDtype }
}

/// Float layouts `float-diff` supports: element width in bits, exponent field position and size.
struct FloatLayout {
    let width: Int
    let expShift: UInt32
    let expMask: UInt32
    init?(_ d: DType) {
        switch d {
        case .bf16: width = 16; expShift = 7; expMask = 0xFF
        case .f16: width = 16; expShift = 10; expMask = 0x1F
        case .f32: width = 32; expShift = 23; expMask = 0xFF
        default: return nil
        }
    }
    var contexts: Int { Int(expMask) + 1 }
}

/// Quant blocks `quant-diff` supports: f16 header fields, then quants.
struct QuantLayout {
    let halfs: Int        // f16 fields at the start of each block
    let quantBytes: Int   // bytes of quants after them
    let nibbles: Bool     // 4-bit quants (two per byte) or int8
    init?(_ d: DType) {
        switch d {
        case .q4_0: halfs = 1; quantBytes = 16; nibbles = true
        case .q4_1: halfs = 2; quantBytes = 16; nibbles = true
        case .q8_0: halfs = 1; quantBytes = 32; nibbles = false
        default: return nil
        }
    }
    var blockBytes: Int { halfs * 2 + quantBytes }
}

enum DeltaCodec {
    static let zstdLevel: Int32 = 19

    /// Encodings worth trying for a tensor that keeps `dtype` (smallest wins), or [.zstd] when
    /// the dtype or shape changes.
    static func candidates(base: DType, patched: DType, sameShape: Bool, float: DeltaEncoding = .floatRans) -> [DeltaEncoding] {
        guard base == patched, sameShape else {
            // A quantized block stored as floats: against the dequantized base, if smaller.
            if sameShape, float == .floatRans, QuantLayout(base) != nil, FloatLayout(patched) != nil { return [.zstd, .floatRansDequant] }
            return [.zstd]
        }
        // float-rans/float-diff and quant-diff beat xor-planes by ~2x on every fine-tune measured
        // (BENCHMARKS.md), and compressing xor planes at level 19 costs seconds: those dtypes
        // try their own encoding only. Floats use float-rans: smaller than float-diff on every
        // change measured and ~3× faster to decode; float-diff is still read (older patches).
        if FloatLayout(base) != nil { return [float] }
        if QuantLayout(base) != nil { return [.quantDiff] }
        return [.xorPlanes]
    }

    /// Encodings worth trying for the `reverse` stream (the base from the result) of a tensor
    /// whose forward stream cannot run backwards (smallest wins; `zstd` first on ties).
    static func reverseCandidates(base: DType, patched: DType, sameShape: Bool, requant: Bool = true) -> [DeltaEncoding] {
        if requant, sameShape, QuantLayout(base) != nil, FloatLayout(patched) != nil { return [.zstd, .quantDiffRequant] }
        return [.zstd]
    }

    static func supports(_ e: DeltaEncoding, _ d: DType) -> Bool {
        switch e {
        case .zstd, .xorPlanes: return true
        case .floatDiff, .floatRans, .floatRansDequant: return FloatLayout(d) != nil
        case .quantDiff, .quantDiffRequant: return QuantLayout(d) != nil
        }
    }

    // MARK: Encode

    /// One frame: `target` given `source` (same dtype and length; nil for `.zstd`).
    static func encode(_ e: DeltaEncoding, dtype: DType, source: UnsafeRawBufferPointer?,
                       target: UnsafeRawBufferPointer, level: Int32 = zstdLevel) throws -> [UInt8] {
        switch e {
        case .zstd:
            return try Zstd.compress(target, level: level)
        case .xorPlanes:
            let w = dtype.isQuantized ? 1 : dtype.blockBytes
            var planes = [UInt8](repeating: 0, count: target.count)
            let n = target.count / w
            let s = source!
            planes.withUnsafeMutableBytes { o in
                for i in 0..<n {
                    for k in 0..<w { o[k * n + i] = s[i * w + k] ^ target[i * w + k] }
                }
            }
            return try Zstd.compress(planes, level: level)
        case .floatDiff:
            return encodeFloat(FloatLayout(dtype)!, base: source!, patched: target)
        case .floatRans:
            return encodeFloatRans(FloatLayout(dtype)!, base: source!, patched: target)
        case .floatRansDequant:
            throw PatchError.unsupported("float-rans-dequant frames are encoded with encodeDequant (the source has another dtype)")
        case .quantDiffRequant:
            throw PatchError.unsupported("quant-diff-requant frames are encoded with encodeRequant (the source has another dtype)")
        case .quantDiff:
            return try encodeQuant(QuantLayout(dtype)!, base: source!, patched: target, level: level)
        }
    }

    // MARK: Decode

    /// Decodes one frame into `out` (the chunk's bytes). `source` is the base chunk
    /// (forward) or the patched chunk (`reverse`); unused by `.zstd`.
    static func decode(_ e: DeltaEncoding, dtype: DType, frame: UnsafeRawBufferPointer,
                       source: UnsafeRawBufferPointer?, into out: UnsafeMutableRawBufferPointer,
                       reverse: Bool, tensor: String) throws {
        switch e {
        case .zstd:
            try Zstd.decompress(frame, into: out, expected: out.count, tensor: tensor)
        case .xorPlanes:
            let w = dtype.isQuantized ? 1 : dtype.blockBytes
            let n = out.count / w
            let planes = try Zstd.decompress(frame, expected: out.count, tensor: tensor)
            let s = source!
            planes.withUnsafeBytes { p in
                for i in 0..<n {
                    for k in 0..<w { out[i * w + k] = s[i * w + k] ^ p[k * n + i] }
                }
            }
        case .floatDiff:
            try decodeFloat(FloatLayout(dtype)!, frame: frame, source: source!, into: out, reverse: reverse, tensor: tensor)
        case .floatRans:
            try decodeFloatRans(FloatLayout(dtype)!, frame: frame, source: source!, into: out,
                                direction: UniformDirection(rev: reverse), tensor: tensor)
        case .floatRansDequant:
            throw PatchError.corruptFrame(tensor: tensor, detail: "float-rans-dequant frames are decoded with decodeDequant")
        case .quantDiffRequant:
            throw PatchError.corruptFrame(tensor: tensor, detail: "quant-diff-requant frames are decoded with decodeRequant")
        case .quantDiff:
            try decodeQuant(QuantLayout(dtype)!, frame: frame, source: source!, into: out, reverse: reverse, tensor: tensor)
        }
    }

    /// Decodes one frame whose source elements are some base (`patchedFlags[i] == 0`), some
    /// patched, into the base (`wantBase`) or patched value of every element. Only encodings
    /// with `decodesMixed`.
    static func decodeMixed(_ e: DeltaEncoding, dtype: DType, frame: UnsafeRawBufferPointer, source: UnsafeRawBufferPointer,
                            patchedFlags: UnsafePointer<UInt8>, wantBase: Bool, into out: UnsafeMutableRawBufferPointer,
                            tensor: String) throws {
        guard e == .floatRans, let L = FloatLayout(dtype) else {
            throw PatchError.unsupported("\(e.rawValue) frames cannot be decoded with mixed directions")
        }
        try decodeFloatRans(L, frame: frame, source: source, into: out,
                            direction: MixedDirection(patchedFlags: patchedFlags, wantBase: wantBase), tensor: tensor)
    }

    // MARK: float-diff

    // Per element, in order:
    //   crossing bit   (one model): exponent(patched) != exponent(base)
    //   if crossing:   zigzag(exponent(patched) - exponent(base)) - 1, number context `contexts`
    //   zigzag(patched - base), bit patterns as W-bit integers, number context exponent(base)
    // The crossing record lets the reverse decoder, which holds the patched element, find the
    // base exponent and so the context, before it knows the difference.

    @inline(__always) private static func zigzag(_ d: Int32) -> UInt32 { UInt32(bitPattern: (d << 1) ^ (d >> 31)) }
    @inline(__always) private static func unzigzag(_ z: UInt32) -> Int32 { Int32(bitPattern: z >> 1) ^ -Int32(bitPattern: z & 1) }

    /// Signed W-bit difference a - b of two bit patterns.
    @inline(__always) private static func diff(_ a: UInt32, _ b: UInt32, _ w: Int) -> Int32 {
        w == 16 ? Int32(Int16(truncatingIfNeeded: a &- b)) : Int32(bitPattern: a &- b)
    }

    static func encodeFloat(_ L: FloatLayout, base: UnsafeRawBufferPointer, patched: UnsafeRawBufferPointer) -> [UInt8] {
        aligned(base, L.width / 8) { b in aligned(patched, L.width / 8) { p in
            L.width == 16 ? encodeFloat(L, b, p, UInt16.self) : encodeFloat(L, b, p, UInt32.self)
        } }
    }

    /// `body` on `buf`, or on an aligned copy of it when it does not start at a multiple of `alignment`.
    static func aligned<R>(_ buf: UnsafeRawBufferPointer, _ alignment: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        if buf.count == 0 || Int(bitPattern: buf.baseAddress) % alignment == 0 { return try body(buf) }
        return try Array(buf).withUnsafeBytes { try body($0) }
    }

    private static func encodeFloat<T: FixedWidthInteger & UnsignedInteger>(
        _ L: FloatLayout, _ base: UnsafeRawBufferPointer, _ patched: UnsafeRawBufferPointer, _: T.Type) -> [UInt8] {
        let n = patched.count / MemoryLayout<T>.size
        let count = 1 + (L.contexts + 1) * NumberModel.size
        let m = UnsafeMutablePointer<UInt16>.allocate(capacity: count)
        defer { m.deallocate() }
        m.initialize(repeating: 1024, count: count)
        let crossM = m, expM = m + 1 + L.contexts * NumberModel.size
        var rc = RangeEncoder(reserve: patched.count / 8)
        let bp = base.baseAddress!.assumingMemoryBound(to: T.self)
        let pp = patched.baseAddress!.assumingMemoryBound(to: T.self)
        let shift = L.expShift, mask = L.expMask
        for i in 0..<n {
            let b = T(littleEndian: bp[i]), p = T(littleEndian: pp[i])
            let eb = (UInt32(b) >> shift) & mask, ep = (UInt32(p) >> shift) & mask
            rc.encode(eb != ep, crossM)
            if eb != ep { NumberModel.encode(zigzag(Int32(ep) - Int32(eb)) - 1, expM, &rc) }
            // zigzag of the signed T-bit difference
            let d = p &- b
            let neg = d >> (T.bitWidth - 1)
            let z = (d << 1) ^ (0 &- neg)
            NumberModel.encode(UInt32(z), m + 1 + Int(eb) * NumberModel.size, &rc)
        }
        return rc.finish()
    }

    static func decodeFloat(_ L: FloatLayout, frame: UnsafeRawBufferPointer, source: UnsafeRawBufferPointer,
                            into out: UnsafeMutableRawBufferPointer, reverse: Bool, tensor: String) throws {
        guard out.count == 0 || Int(bitPattern: out.baseAddress) % (L.width / 8) == 0 else {
            var tmp = [UInt8](repeating: 0, count: out.count)
            try tmp.withUnsafeMutableBytes { try decodeFloat(L, frame: frame, source: source, into: $0, reverse: reverse, tensor: tensor) }
            tmp.withUnsafeBytes { out.copyMemory(from: $0) }
            return
        }
        let ok = aligned(source, L.width / 8) { s in
            L.width == 16 ? decodeFloat(L, frame, s, out, reverse, UInt16.self) : decodeFloat(L, frame, s, out, reverse, UInt32.self)
        }
        guard ok else { throw PatchError.corruptFrame(tensor: tensor, detail: "float-diff stream does not decode") }
    }

    private static func decodeFloat<T: FixedWidthInteger & UnsignedInteger>(
        _ L: FloatLayout, _ frame: UnsafeRawBufferPointer, _ source: UnsafeRawBufferPointer,
        _ out: UnsafeMutableRawBufferPointer, _ reverse: Bool, _: T.Type) -> Bool {
        let n = out.count / MemoryLayout<T>.size
        guard var rc = RangeDecoder(frame) else { return false }
        let count = 1 + (L.contexts + 1) * NumberModel.size
        let m = UnsafeMutablePointer<UInt16>.allocate(capacity: count)
        defer { m.deallocate() }
        m.initialize(repeating: 1024, count: count)
        let crossM = m, expM = m + 1 + L.contexts * NumberModel.size
        let sp = source.baseAddress!.assumingMemoryBound(to: T.self)
        let op = out.baseAddress!.assumingMemoryBound(to: T.self)
        let shift = L.expShift, mask = L.expMask, contexts = Int32(L.contexts)
        for i in 0..<n {
            let s = T(littleEndian: sp[i])
            let es = Int32((UInt32(s) >> shift) & mask)
            var dExp: Int32 = 0          // exponent(patched) - exponent(base)
            if rc.decode(crossM) { dExp = unzigzag(NumberModel.decode(expM, &rc) &+ 1) }
            let eb = reverse ? es - dExp : es
            guard eb >= 0, eb < contexts else { return false }
            let z = NumberModel.decode(m + 1 + Int(eb) * NumberModel.size, &rc)
            guard z <= UInt32(T.max) else { return false }
            let zt = T(z)
            let d = (zt >> 1) ^ (0 &- (zt & 1))
            let t = reverse ? s &- d : s &+ d
            // The other element's exponent must be what the crossing record says.
            let et = Int32((UInt32(t) >> shift) & mask)
            guard (reverse ? es - et : et - es) == dExp else { return false }
            op[i] = t.littleEndian
        }
        return rc.finishedExactly
    }

    // MARK: quant-diff

    // Range-coded, per block in order (contexts depend only on decoded differences, so the
    // same frame decodes forward and in reverse):
    //   for each f16 field h:  number zigzag((p - b) mod 2^16 as int16),
    //                          context 0 for h = 0, else 1 + min(previous field's number, 3)
    //   c = 1 if any field changed, else 0
    //   bit: any quant of the block changed (model `flags + c`); if so, for each quant
    //   (Q4: nibbles in storage order, low then high; Q8_0: bytes):
    //       number zz (4- or 8-bit wrapping difference, zigzag-coded),
    //       context 5 + 2c + (previous quant of the block changed ? 1 : 0)

    static let quantContexts = 9

    static func encodeQuant(_ L: QuantLayout, base: UnsafeRawBufferPointer, patched: UnsafeRawBufferPointer, level: Int32) throws -> [UInt8] {
        let nb = patched.count / L.blockBytes
        let count = quantContexts * NumberModel.size + 2
        let m = UnsafeMutablePointer<UInt16>.allocate(capacity: count)
        defer { m.deallocate() }
        m.initialize(repeating: 1024, count: count)
        var rc = RangeEncoder(reserve: patched.count / 16)
        let flags = m + quantContexts * NumberModel.size
        for blk in 0..<nb {
            let off = blk * L.blockBytes
            var c = 0, ctx = 0
            for h in 0..<L.halfs {
                let b = UInt32(base.loadUnaligned(fromByteOffset: off + 2 * h, as: UInt16.self).littleEndian)
                let p = UInt32(patched.loadUnaligned(fromByteOffset: off + 2 * h, as: UInt16.self).littleEndian)
                let z = zigzag(diff(p, b, 16)) & 0xFFFF
                if z != 0 { c = 1 }
                NumberModel.encode(z, m + ctx * NumberModel.size, &rc)
                ctx = 1 + Int(min(z, 3))
            }
            var any = false
            for j in 0..<L.quantBytes where base[off + 2 * L.halfs + j] != patched[off + 2 * L.halfs + j] { any = true; break }
            rc.encode(any, flags + c)
            if !any { continue }
            var prev = 0
            for j in 0..<L.quantBytes {
                let b = base[off + 2 * L.halfs + j], p = patched[off + 2 * L.halfs + j]
                if L.nibbles {
                    let lo = zz4((p & 15) &- (b & 15)), hi = zz4((p >> 4) &- (b >> 4))
                    NumberModel.encode(UInt32(lo), m + (5 + 2 * c + prev) * NumberModel.size, &rc)
                    prev = lo != 0 ? 1 : 0
                    NumberModel.encode(UInt32(hi), m + (5 + 2 * c + prev) * NumberModel.size, &rc)
                    prev = hi != 0 ? 1 : 0
                } else {
                    let z = zz8(p &- b)
                    NumberModel.encode(UInt32(z), m + (5 + 2 * c + prev) * NumberModel.size, &rc)
                    prev = z != 0 ? 1 : 0
                }
            }
        }
        return rc.finish()
    }

    static func decodeQuant(_ L: QuantLayout, frame: UnsafeRawBufferPointer, source: UnsafeRawBufferPointer,
                            into out: UnsafeMutableRawBufferPointer, reverse: Bool, tensor: String) throws {
        let nb = out.count / L.blockBytes
        guard var rc = RangeDecoder(frame) else { throw PatchError.corruptFrame(tensor: tensor, detail: "short range-coded frame") }
        let count = quantContexts * NumberModel.size + 2
        let m = UnsafeMutablePointer<UInt16>.allocate(capacity: count)
        defer { m.deallocate() }
        m.initialize(repeating: 1024, count: count)
        let limit: UInt32 = L.nibbles ? 15 : 255
        var bad = false
        let flags = m + quantContexts * NumberModel.size
        for blk in 0..<nb where !bad {
            let off = blk * L.blockBytes
            var c = 0, ctx = 0
            for h in 0..<L.halfs {
                let src = source.loadUnaligned(fromByteOffset: off + 2 * h, as: UInt16.self).littleEndian
                let z = NumberModel.decode(m + ctx * NumberModel.size, &rc)
                if z > 0xFFFF { bad = true }
                if z != 0 { c = 1 }
                ctx = 1 + Int(min(z, 3))
                let delta = UInt16(truncatingIfNeeded: unzigzag(z))
                let t = reverse ? src &- delta : src &+ delta
                out.storeBytes(of: t.littleEndian, toByteOffset: off + 2 * h, as: UInt16.self)
            }
            let q0 = off + 2 * L.halfs
            if !rc.decode(flags + c) {
                for j in 0..<L.quantBytes { out[q0 + j] = source[q0 + j] }
                continue
            }
            var prev = 0, changed = false
            for j in 0..<L.quantBytes {
                let src = source[q0 + j]
                if L.nibbles {
                    let lo = NumberModel.decode(m + (5 + 2 * c + prev) * NumberModel.size, &rc)
                    prev = lo != 0 ? 1 : 0
                    let hi = NumberModel.decode(m + (5 + 2 * c + prev) * NumberModel.size, &rc)
                    prev = hi != 0 ? 1 : 0
                    if lo > limit || hi > limit { bad = true }
                    if lo | hi != 0 { changed = true }
                    let dl = unzz(UInt8(truncatingIfNeeded: lo)), dh = unzz(UInt8(truncatingIfNeeded: hi))
                    let tl = (reverse ? (src & 15) &- dl : (src & 15) &+ dl) & 15
                    let th = (reverse ? (src >> 4) &- dh : (src >> 4) &+ dh) & 15
                    out[q0 + j] = tl | (th << 4)
                } else {
                    let z = NumberModel.decode(m + (5 + 2 * c + prev) * NumberModel.size, &rc)
                    prev = z != 0 ? 1 : 0
                    if z > limit { bad = true }
                    if z != 0 { changed = true }
                    let dd = unzz(UInt8(truncatingIfNeeded: z))
                    out[q0 + j] = reverse ? src &- dd : src &+ dd
                }
            }
            if !changed { bad = true }   // the flag said some quant changed
        }
        guard !bad, rc.finishedExactly else { throw PatchError.corruptFrame(tensor: tensor, detail: "quant-diff stream does not decode") }
    }

    /// 4-bit wrapping difference (low nibble of `d`) → zigzag 0...15.
    @inline(__always) private static func zz4(_ d: UInt8) -> UInt8 {
        let v = Int8(bitPattern: (d & 15) << 4) >> 4            // sign-extend 4 bits
        return UInt8(bitPattern: (v << 1) ^ (v >> 7)) & 15
    }
    @inline(__always) private static func zz8(_ d: UInt8) -> UInt8 {
        let v = Int8(bitPattern: d)
        return UInt8(bitPattern: (v << 1) ^ (v >> 7))
    }
    /// Inverse of zz4/zz8 as a wrapping difference.
    @inline(__always) private static func unzz(_ z: UInt8) -> UInt8 { (z >> 1) ^ (0 &- (z & 1)) }
}

// MARK: float-rans-dequant

extension DeltaCodec {
    /// The base frame dequantized to the target float dtype, bit for bit as the format says:
    /// Q4_0 d·(q − 8), Q4_1 d·q + m, Q8_0 d·q in float32 (f16 scales widened exactly, one
    /// rounding per operation, no fused multiply-add), then rounded to nearest-even F16/BF16
    /// (F32: as is).
    static func dequantized(_ src: UnsafeRawBufferPointer, from q: DType, to f: DType) throws -> [UInt8] {
        guard let L = QuantLayout(q), FloatLayout(f) != nil else {
            throw PatchError.unsupported("float-rans-dequant from \(q.rawValue) to \(f.rawValue)")
        }
        let nb = src.count / L.blockBytes
        let n = nb * 32
        var out = [UInt8](repeating: 0, count: n * f.blockBytes)
        out.withUnsafeMutableBytes { o in
            for b in 0..<nb {
                let off = b * L.blockBytes
                let d = Float(Float16(bitPattern: src.loadUnaligned(fromByteOffset: off, as: UInt16.self).littleEndian))
                let m = L.halfs == 2 ? Float(Float16(bitPattern: src.loadUnaligned(fromByteOffset: off + 2, as: UInt16.self).littleEndian)) : 0
                let qs = off + 2 * L.halfs
                for j in 0..<32 {
                    let x: Float
                    if L.nibbles {
                        let byte = src[qs + (j & 15)]
                        let v = j < 16 ? byte & 15 : byte >> 4       // ggml: low nibbles are elements 0–15
                        x = q == .q4_1 ? (d * Float(v)) + m : d * Float(Int(v) - 8)
                    } else {
                        x = d * Float(Int8(bitPattern: src[qs + j]))
                    }
                    let i = b * 32 + j
                    switch f {
                    case .f16: o.storeBytes(of: Float16(x).bitPattern.littleEndian, toByteOffset: 2 * i, as: UInt16.self)
                    case .bf16:
                        let u = x.bitPattern
                        let r = x.isNaN ? UInt16(u >> 16) | 0x40 : UInt16((u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16)
                        o.storeBytes(of: r.littleEndian, toByteOffset: 2 * i, as: UInt16.self)
                    default: o.storeBytes(of: x.bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self)
                    }
                }
            }
        }
        return out
    }

    static func encodeDequant(base: UnsafeRawBufferPointer, baseType: DType, target: UnsafeRawBufferPointer, dtype: DType) throws -> [UInt8] {
        let s = try dequantized(base, from: baseType, to: dtype)
        return s.withUnsafeBytes { encodeFloatRans(FloatLayout(dtype)!, base: $0, patched: target) }
    }

    static func decodeDequant(frame: UnsafeRawBufferPointer, base: UnsafeRawBufferPointer, baseType: DType,
                              into out: UnsafeMutableRawBufferPointer, dtype: DType, tensor: String) throws {
        let s = try dequantized(base, from: baseType, to: dtype)
        guard s.count == out.count else { throw PatchError.corruptFrame(tensor: tensor, detail: "source and target sizes differ") }
        try s.withUnsafeBytes {
            try decodeFloatRans(FloatLayout(dtype)!, frame: frame, source: $0, into: out, direction: UniformDirection(rev: false), tensor: tensor)
        }
    }
}

// MARK: quant-diff-requant

extension DeltaCodec {
    /// A float frame (F16/BF16/F32) requantized to Q4_0/Q4_1/Q8_0 as the format says: each
    /// element widened to float32 exactly, NaN and ±inf taken as 0, then ggml's reference
    /// quantizer (ModelFormats `quantize`, byte-exact with gguf-py's port of it).
    static func requantized(_ src: UnsafeRawBufferPointer, from f: DType, to q: DType) throws -> [UInt8] {
        guard FloatLayout(f) != nil, QuantLayout(q) != nil else {
            throw PatchError.unsupported("quant-diff-requant from \(f.rawValue) to \(q.rawValue)")
        }
        let n = src.count / f.blockBytes
        guard n % 32 == 0, n * f.blockBytes == src.count else {
            throw PatchError.unsupported("quant-diff-requant of \(n) elements (not whole 32-element blocks)")
        }
        var x = try ModelFormats.dequantize(src, dtype: f, count: n)
        for i in x.indices where !x[i].isFinite { x[i] = 0 }
        return try ModelFormats.quantize(x, to: q)
    }

    static func encodeRequant(source: UnsafeRawBufferPointer, sourceType: DType, target: UnsafeRawBufferPointer, dtype: DType, level: Int32) throws -> [UInt8] {
        let s = try requantized(source, from: sourceType, to: dtype)
        guard s.count == target.count else { throw PatchError.unsupported("quant-diff-requant: source and target sizes differ") }
        return try s.withUnsafeBytes { try encodeQuant(QuantLayout(dtype)!, base: $0, patched: target, level: level) }
    }

    static func decodeRequant(frame: UnsafeRawBufferPointer, source: UnsafeRawBufferPointer, sourceType: DType,
                              into out: UnsafeMutableRawBufferPointer, dtype: DType, tensor: String) throws {
        let s: [UInt8]
        do { s = try requantized(source, from: sourceType, to: dtype) } catch {
            throw PatchError.corruptFrame(tensor: tensor, detail: "quant-diff-requant source: \(error)")
        }
        guard s.count == out.count else { throw PatchError.corruptFrame(tensor: tensor, detail: "source and target sizes differ") }
        try s.withUnsafeBytes { try decodeQuant(QuantLayout(dtype)!, frame: frame, source: $0, into: out, reverse: false, tensor: tensor) }
    }
}
