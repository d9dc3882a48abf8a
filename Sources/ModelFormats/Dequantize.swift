// Dequantization to Float for every DType, following ggml's block definitions
// (ggml-common.h) and reference kernels (ggml-quants.c, dequantize_row_*). Each block
// layout is written next to its kernel. The inner loops read raw bytes with unaligned loads
// and the f16 scales through a 65536-entry table.

public enum QuantError: Error, CustomStringConvertible, Equatable {
    /// An element count that is not a whole number of blocks.
    case countNotBlockMultiple(dtype: DType, count: Int)
    /// Fewer source bytes than the element count needs.
    case sourceTooSmall(dtype: DType, count: Int, needed: Int, available: Int)
    /// Quantizing to this type is not implemented.
    case unsupportedTarget(DType)
    /// A NaN or infinity in the input to a block quantizer.
    case nonFinite(index: Int)

    public var description: String {
        switch self {
        case .countNotBlockMultiple(let t, let n):
            return "\(n) elements is not a whole number of \(t.rawValue) blocks (\(t.blockElements) elements each)"
        case .sourceTooSmall(let t, let n, let need, let have):
            return "\(n) \(t.rawValue) elements need \(need) bytes, only \(have) given"
        case .unsupportedTarget(let t):
            return "quantizing to \(t.rawValue) is not supported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)"
        case .nonFinite(let i):
            return "value \(i) is NaN or infinite; it cannot be block-quantized"
        }
    }
}

/// Dequantizes `count` elements of `dtype` from `src` into `dst` (which must hold `count` floats).
public func dequantize(_ src: UnsafeRawBufferPointer, dtype: DType, count: Int, into dst: UnsafeMutablePointer<Float>) throws {
    guard count >= 0, let need = dtype.byteCount(elements: count) else {
        throw QuantError.countNotBlockMultiple(dtype: dtype, count: count)
    }
    guard src.count >= need else {
        throw QuantError.sourceTooSmall(dtype: dtype, count: count, needed: need, available: src.count)
    }
    guard count > 0, let s = src.baseAddress else { return }
    let nb = count / dtype.blockElements
    switch dtype {
    case .f32: dst.update(from: s.assumingMemoryBound(to: Float.self), count: count) // x86 tolerates unaligned
    case .f16: for i in 0..<count { dst[i] = halfToFloatFast(s.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
    case .bf16: for i in 0..<count { dst[i] = bf16ToFloat(s.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
    case .f64: for i in 0..<count { dst[i] = Float(s.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
    case .f8e4m3: for i in 0..<count { dst[i] = f8e4m3ToFloat(s.load(fromByteOffset: i, as: UInt8.self)) }
    case .f8e5m2: for i in 0..<count { dst[i] = f8e5m2ToFloat(s.load(fromByteOffset: i, as: UInt8.self)) }
    case .i64: for i in 0..<count { dst[i] = Float(s.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
    case .i32: for i in 0..<count { dst[i] = Float(s.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
    case .i16: for i in 0..<count { dst[i] = Float(s.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)) }
    case .i8: for i in 0..<count { dst[i] = Float(s.load(fromByteOffset: i, as: Int8.self)) }
    case .u64: for i in 0..<count { dst[i] = Float(s.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)) }
    case .u32: for i in 0..<count { dst[i] = Float(s.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)) }
    case .u16: for i in 0..<count { dst[i] = Float(s.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
    case .u8, .bool: for i in 0..<count { dst[i] = Float(s.load(fromByteOffset: i, as: UInt8.self)) }
    default:
        halfTable.withUnsafeBufferPointer { t in
            let h = t.baseAddress!
            switch dtype {
            case .q4_0: dequantQ4_0(s, dst, nb, h)
            case .q4_1: dequantQ4_1(s, dst, nb, h)
            case .q5_0: q5HighBits.withUnsafeBufferPointer { dequantQ5_0(s, dst, nb, h, $0.baseAddress!) }
            case .q5_1: q5HighBits.withUnsafeBufferPointer { dequantQ5_1(s, dst, nb, h, $0.baseAddress!) }
            case .q8_0: dequantQ8_0(s, dst, nb, h)
            case .q2_K: dequantQ2_K(s, dst, nb, h)
            case .q3_K: dequantQ3_K(s, dst, nb, h)
            case .q4_K: dequantQ4_K(s, dst, nb, h)
            case .q5_K: dequantQ5_K(s, dst, nb, h)
            case .q6_K: dequantQ6_K(s, dst, nb, h)
            case .q8_K: dequantQ8_K(s, dst, nb)
            default: break
            }
        }
    }
}

/// Dequantizes into a new array.
public func dequantize(_ src: UnsafeRawBufferPointer, dtype: DType, count: Int) throws -> [Float] {
    guard count > 0 else {
        try dequantize(src, dtype: dtype, count: count, into: UnsafeMutablePointer<Float>(bitPattern: 16)!)
        return []
    }
    // Uninitialized storage: dequantize writes every element, so no zero-fill pass.
    return try [Float](unsafeUninitializedCapacity: count) { buf, n in
        try dequantize(src, dtype: dtype, count: count, into: buf.baseAddress!)
        n = count
    }
}

/// Branch-free half → float that vectorizes: rebias the exponent with integer adds (twice for
/// inf/NaN), and convert subnormals as mantissa × 2^-24 (no subnormal float arithmetic).
@inline(__always) func halfToFloatFast(_ h: UInt16) -> Float {
    let e = h & 0x7c00
    var bits = (UInt32(h & 0x7fff) &<< 13) &+ 0x3800_0000
    if e == 0x7c00 { bits = bits &+ 0x3800_0000 }
    var f = Float(bitPattern: bits)
    if e == 0 { f = Float(Int32(h & 0x3ff)) * 0x1p-24 }
    return Float(bitPattern: f.bitPattern | (UInt32(h & 0x8000) &<< 16))
}

@inline(__always) private func u8(_ p: UnsafeRawPointer, _ o: Int) -> UInt8 { p.load(fromByteOffset: o, as: UInt8.self) }
@inline(__always) private func f16(_ p: UnsafeRawPointer, _ o: Int, _ t: UnsafePointer<Float>) -> Float {
    t[Int(p.loadUnaligned(fromByteOffset: o, as: UInt16.self))]
}

// block_q4_0 { ggml_half d; uint8_t qs[16]; }  (18 bytes, 32 weights)
//   y[j] = ((qs[j] & 0xF) - 8) * d,  y[j+16] = ((qs[j] >> 4) - 8) * d
private func dequantQ4_0(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ nb: Int, _ t: UnsafePointer<Float>) {
    for b in 0..<nb {
        let p = s + b * 18, o = y + b * 32
        let d = f16(p, 0, t)
        for j in 0..<16 {
            let q = u8(p, 2 + j)
            o[j] = Float(Int32(q & 0xF) - 8) * d
            o[j + 16] = Float(Int32(q >> 4) - 8) * d
        }
    }
}

// block_q4_1 { ggml_half d; ggml_half m; uint8_t qs[16]; }  (20 bytes)
//   y[j] = (qs[j] & 0xF) * d + m,  y[j+16] = (qs[j] >> 4) * d + m
private func dequantQ4_1(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ nb: Int, _ t: UnsafePointer<Float>) {
    for b in 0..<nb {
        let p = s + b * 20, o = y + b * 32
        let d = f16(p, 0, t), m = f16(p, 2, t)
        for j in 0..<16 {
            let q = u8(p, 4 + j)
            o[j] = Float(q & 0xF) * d + m
            o[j + 16] = Float(q >> 4) * d + m
        }
    }
}

/// For each byte value, 8 bytes holding 16 where the corresponding bit is set (bit k → byte k).
/// Spreading qh through this table keeps the Q5 loops free of per-lane variable shifts.
let q5HighBits: [UInt64] = (0..<256).map { (b: Int) -> UInt64 in
    var v: UInt64 = 0
    for k in 0..<8 where (b >> k) & 1 == 1 { v |= UInt64(16) << UInt64(8 * k) }
    return v
}

@inline(__always)
private func withQ5High<R>(_ p: UnsafeRawPointer, _ at: Int, _ tab: UnsafePointer<UInt64>, _ body: (UnsafeRawBufferPointer) -> R) -> R {
    var hb = (tab[Int(u8(p, at))], tab[Int(u8(p, at + 1))], tab[Int(u8(p, at + 2))], tab[Int(u8(p, at + 3))])
    return withUnsafeBytes(of: &hb) { body($0) }
}

// block_q5_0 { ggml_half d; uint8_t qh[4]; uint8_t qs[16]; }  (22 bytes)
//   bit j of qh (u32 little-endian) is the 5th bit of y[j], bit j+16 that of y[j+16]; y = (q5 - 16) * d
private func dequantQ5_0(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ nb: Int, _ t: UnsafePointer<Float>, _ tab: UnsafePointer<UInt64>) {
    for b in 0..<nb {
        let p = s + b * 22, o = y + b * 32
        let d = f16(p, 0, t)
        withQ5High(p, 2, tab) { hb in
            for j in 0..<16 {
                let q = u8(p, 6 + j)
                o[j] = Float(Int32((q & 0xF) | hb[j]) - 16) * d
                o[j + 16] = Float(Int32((q &>> 4) | hb[j + 16]) - 16) * d
            }
        }
    }
}

// block_q5_1 { ggml_half d; ggml_half m; uint8_t qh[4]; uint8_t qs[16]; }  (24 bytes)
//   y = q5 * d + m
private func dequantQ5_1(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ nb: Int, _ t: UnsafePointer<Float>, _ tab: UnsafePointer<UInt64>) {
    for b in 0..<nb {
        let p = s + b * 24, o = y + b * 32
        let d = f16(p, 0, t), m = f16(p, 2, t)
        withQ5High(p, 4, tab) { hb in
            for j in 0..<16 {
                let q = u8(p, 8 + j)
                o[j] = Float((q & 0xF) | hb[j]) * d + m
                o[j + 16] = Float((q &>> 4) | hb[j + 16]) * d + m
            }
        }
    }
}

// block_q8_0 { ggml_half d; int8_t qs[32]; }  (34 bytes): y[j] = qs[j] * d
private func dequantQ8_0(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ nb: Int, _ t: UnsafePointer<Float>) {
    for b in 0..<nb {
        let p = s + b * 34, o = y + b * 32
        let d = f16(p, 0, t)
        for j in 0..<32 { o[j] = Float(p.load(fromByteOffset: 2 + j, as: Int8.self)) * d }
    }
}

// block_q2_K { uint8_t scales[16]; uint8_t qs[64]; ggml_half d; ggml_half dmin; }  (84 bytes, 256 weights)
//   16 sub-blocks of 16; scales[k] = scale (low 4 bits) | min (high 4 bits);
//   each half (128 weights) uses qs[32*n ..< 32*n+32], 2 bits at shift 0,2,4,6.
//   y = d * (sc & 0xF) * q - dmin * (sc >> 4)
private func dequantQ2_K(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ nb: Int, _ t: UnsafePointer<Float>) {
    for b in 0..<nb {
        let p = s + b * 84
        var o = y + b * 256
        let d = f16(p, 80, t), dmin = f16(p, 82, t)
        var isc = 0
        for n in 0..<2 {
            let q = 16 + 32 * n
            var shift: UInt8 = 0
            for _ in 0..<4 {
                for half in 0..<2 {
                    let sc = u8(p, isc); isc += 1
                    let dl = d * Float(sc & 0xF), ml = dmin * Float(sc >> 4)
                    for l in 0..<16 { o[l] = dl * Float((u8(p, q + 16 * half + l) >> shift) & 3) - ml }
                    o += 16
                }
                shift += 2
            }
        }
    }
}

// block_q3_K { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; ggml_half d; }  (110 bytes)
//   16 six-bit scales packed in 12 bytes (low 4 bits in bytes 0-7, high 2 bits in bytes 8-11),
//   stored with +32 bias; a weight is (2 low bits from qs) - (hmask bit set ? 0 : 4).
private func dequantQ3_K(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ nb: Int, _ t: UnsafePointer<Float>) {
    for b in 0..<nb {
        let p = s + b * 110
        let dAll = f16(p, 108, t)
        for n in 0..<2 {
            let q = 32 + 32 * n
            for j in 0..<4 {
                let shift = UInt8(2 * j), m = UInt8(1) &<< UInt8(4 * n + j)
                for half in 0..<2 {
                    // Scale k = 8n + 2j + half, 6 bits: k = 4g + i has its low nibble in byte
                    // (g % 2) * 4 + i (high nibble when g >= 2) and bits 4-5 in byte 8 + i at bit 2g.
                    let k = 8 * n + 2 * j + half, g = k / 4, i = k % 4
                    let lo = (u8(p, 96 + (g % 2) * 4 + i) &>> UInt8(g >= 2 ? 4 : 0)) & 0xF
                    let hi = (u8(p, 104 + i) &>> UInt8(2 * g)) & 3
                    let dl = dAll * Float(Int32(lo | hi &<< 4) - 32)
                    let o = y + b * 256 + 128 * n + 32 * j + 16 * half
                    for l in 0..<16 {
                        let low = Int32((u8(p, q + 16 * half + l) &>> shift) & 3)
                        let high: Int32 = (u8(p, 16 * half + l) & m) != 0 ? 0 : 4
                        o[l] = dl * Float(low - high)
                    }
                }
            }
        }
    }
}

/// ggml's get_scale_min_k4: 8 six-bit (scale, min) pairs packed in 12 bytes.
@inline(__always)
private func scaleMinK4(_ j: Int, _ q: UnsafeRawPointer) -> (UInt8, UInt8) {
    if j < 4 { return (u8(q, j) & 63, u8(q, j + 4) & 63) }
    return ((u8(q, j + 4) & 0xF) | ((u8(q, j - 4) >> 6) << 4),
            (u8(q, j + 4) >> 4) | ((u8(q, j) >> 6) << 4))
}

// block_q4_K { ggml_half d; ggml_half dmin; uint8_t scales[12]; uint8_t qs[128]; }  (144 bytes)
//   8 sub-blocks of 32; each 64 weights share qs[32]: low nibbles first, then high nibbles.
//   y = d * sc * q - dmin * m
private func dequantQ4_K(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ nb: Int, _ t: UnsafePointer<Float>) {
    for b in 0..<nb {
        let p = s + b * 144
        var o = y + b * 256
        let d = f16(p, 0, t), dmin = f16(p, 2, t)
        let sc = p + 4
        for j in 0..<4 {
            let q = 16 + 32 * j
            let (s1, m1) = scaleMinK4(2 * j, sc), (s2, m2) = scaleMinK4(2 * j + 1, sc)
            let d1 = d * Float(s1), mm1 = dmin * Float(m1), d2 = d * Float(s2), mm2 = dmin * Float(m2)
            for l in 0..<32 { o[l] = d1 * Float(u8(p, q + l) & 0xF) - mm1 }
            for l in 0..<32 { o[32 + l] = d2 * Float(u8(p, q + l) >> 4) - mm2 }
            o += 64
        }
    }
}

// block_q5_K { ggml_half d; ggml_half dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; }  (176 bytes)
//   as Q4_K plus a 5th bit: for the j-th group of 64, bit 2j of qh[l] (low nibbles) and bit 2j+1 (high).
private func dequantQ5_K(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ nb: Int, _ t: UnsafePointer<Float>) {
    for b in 0..<nb {
        let p = s + b * 176
        var o = y + b * 256
        let d = f16(p, 0, t), dmin = f16(p, 2, t)
        let sc = p + 4
        var u1: UInt8 = 1, u2: UInt8 = 2
        for j in 0..<4 {
            let q = 48 + 32 * j
            let (s1, m1) = scaleMinK4(2 * j, sc), (s2, m2) = scaleMinK4(2 * j + 1, sc)
            let d1 = d * Float(s1), mm1 = dmin * Float(m1), d2 = d * Float(s2), mm2 = dmin * Float(m2)
            for l in 0..<32 {
                let h: UInt8 = (u8(p, 16 + l) & u1) != 0 ? 16 : 0
                o[l] = d1 * Float((u8(p, q + l) & 0xF) + h) - mm1
            }
            for l in 0..<32 {
                let h: UInt8 = (u8(p, 16 + l) & u2) != 0 ? 16 : 0
                o[32 + l] = d2 * Float((u8(p, q + l) >> 4) + h) - mm2
            }
            o += 64
            u1 <<= 2; u2 <<= 2
        }
    }
}

// block_q6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; ggml_half d; }  (210 bytes)
//   6-bit q = 4 bits from ql | 2 bits from qh, minus 32; 16 sub-blocks of 16 with int8 scales.
private func dequantQ6_K(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ nb: Int, _ t: UnsafePointer<Float>) {
    for b in 0..<nb {
        let p = s + b * 210
        let d = f16(p, 208, t)
        for n in 0..<2 {
            let ql = 64 * n, qh = 128 + 32 * n
            for k in 0..<4 {
                let lshift = UInt8(4 * (k / 2)), hshift = UInt8(2 * k), lo = ql + 32 * (k % 2)
                for half in 0..<2 {
                    // ggml: d * sc[is] * q, evaluated left to right.
                    let dl = d * Float(p.load(fromByteOffset: 192 + 8 * n + 2 * k + half, as: Int8.self))
                    let o = y + b * 256 + 128 * n + 32 * k
                    for l in (16 * half)..<(16 * half + 16) {
                        let q = ((u8(p, lo + l) &>> lshift) & 0xF) | (((u8(p, qh + l) &>> hshift) & 3) &<< 4)
                        o[l] = dl * Float(Int32(q) - 32)
                    }
                }
            }
        }
    }
}

// block_q8_K { float d; int8_t qs[256]; int16_t bsums[16]; }  (292 bytes): y = d * qs
private func dequantQ8_K(_ s: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ nb: Int) {
    for b in 0..<nb {
        let p = s + b * 292, o = y + b * 256
        let d = Float(bitPattern: p.loadUnaligned(fromByteOffset: 0, as: UInt32.self).littleEndian)
        for j in 0..<256 { o[j] = d * Float(p.load(fromByteOffset: 4 + j, as: Int8.self)) }
    }
}
