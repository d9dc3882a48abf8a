// Quantization from Float, bit-exact with ggml's reference kernels
// (ggml-quants.c quantize_row_q8_0_ref, quantize_row_q4_0_ref, quantize_row_q4_1_ref;
// ggml-impl.h fp32→fp16 and fp32→bf16, both round-to-nearest-even).

/// Types `quantize` can produce.
public let quantizeTargets: [DType] = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1]

/// Quantizes `src` to `dtype` into `dst`, which must hold exactly `dtype.byteCount(elements: src.count)` bytes.
public func quantize(_ src: UnsafeBufferPointer<Float>, to dtype: DType, into dst: UnsafeMutableRawBufferPointer) throws {
    guard quantizeTargets.contains(dtype) else { throw QuantError.unsupportedTarget(dtype) }
    let n = src.count
    guard let need = dtype.byteCount(elements: n) else { throw QuantError.countNotBlockMultiple(dtype: dtype, count: n) }
    guard dst.count == need else { throw QuantError.sourceTooSmall(dtype: dtype, count: n, needed: need, available: dst.count) }
    guard n > 0, let x = src.baseAddress, let y = dst.baseAddress else { return }
    if dtype.isQuantized, let bad = src.firstIndex(where: { !$0.isFinite }) { throw QuantError.nonFinite(index: bad) }
    switch dtype {
    case .f32: y.copyMemory(from: x, byteCount: 4 * n)
    case .f16: for i in 0..<n { y.storeBytes(of: floatToHalf(x[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
    case .bf16: for i in 0..<n { y.storeBytes(of: floatToBF16(x[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
    case .q8_0: quantizeQ8_0(x, y, n / 32)
    case .q4_0: quantizeQ4_0(x, y, n / 32)
    case .q4_1: quantizeQ4_1(x, y, n / 32)
    default: throw QuantError.unsupportedTarget(dtype)
    }
}

/// Quantizes into a new byte array.
public func quantize(_ src: UnsafeBufferPointer<Float>, to dtype: DType) throws -> [UInt8] {
    guard let need = dtype.byteCount(elements: src.count) else { throw QuantError.countNotBlockMultiple(dtype: dtype, count: src.count) }
    var out = [UInt8](repeating: 0, count: need)
    try out.withUnsafeMutableBytes { try quantize(src, to: dtype, into: $0) }
    return out
}

public func quantize(_ src: [Float], to dtype: DType) throws -> [UInt8] {
    try src.withUnsafeBufferPointer { try quantize($0, to: dtype) }
}

@inline(__always) private func putHalf(_ y: UnsafeMutableRawPointer, _ o: Int, _ v: Float) {
    y.storeBytes(of: floatToHalf(v).littleEndian, toByteOffset: o, as: UInt16.self)
}

/// ggml's `MIN(15, (int8_t)t)` for the t ≥ 0 that finite blocks produce; NaN/inf (reachable only
/// when 1/d overflows for subnormal scales, undefined behaviour in C) become 0 or 15, never a trap.
@inline(__always) private func trunc4(_ t: Float) -> UInt8 { t >= 0 ? (t < 15 ? UInt8(t) : 15) : 0 }
/// An already-rounded value as int8, saturating (NaN → 0); finite blocks stay within ±127.
@inline(__always) private func clampInt8(_ r: Float) -> Int8 { r >= -128 ? (r <= 127 ? Int8(r) : 127) : (r.isNaN ? 0 : -128) }

// d = amax / 127; q = roundf(x / d) (half away from zero)
private func quantizeQ8_0(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ nb: Int) {
    for b in 0..<nb {
        let v = x + 32 * b, p = y + 34 * b
        var amax: Float = 0
        for j in 0..<32 { amax = max(amax, abs(v[j])) }
        let d = amax / 127
        let id: Float = d != 0 ? 1 / d : 0
        putHalf(p, 0, d)
        for j in 0..<32 {
            p.storeBytes(of: clampInt8((v[j] * id).rounded(.toNearestOrAwayFromZero)), toByteOffset: 2 + j, as: Int8.self)
        }
    }
}

// The value of largest magnitude (with its sign) maps to -8: d = max / -8;
// q = min(15, trunc(x / d + 8.5)).
private func quantizeQ4_0(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ nb: Int) {
    for b in 0..<nb {
        let v = x + 32 * b, p = y + 18 * b
        var amax: Float = 0, mx: Float = 0
        for j in 0..<32 where amax < abs(v[j]) { amax = abs(v[j]); mx = v[j] }
        let d = mx / -8
        let id: Float = d != 0 ? 1 / d : 0
        putHalf(p, 0, d)
        for j in 0..<16 {
            let q0 = trunc4(v[j] * id + 8.5), q1 = trunc4(v[16 + j] * id + 8.5)
            p.storeBytes(of: q0 | (q1 << 4), toByteOffset: 2 + j, as: UInt8.self)
        }
    }
}

// d = (max - min) / 15, m = min; q = min(15, trunc((x - min) / d + 0.5)).
private func quantizeQ4_1(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ nb: Int) {
    for b in 0..<nb {
        let v = x + 32 * b, p = y + 20 * b
        var lo = Float.greatestFiniteMagnitude, hi = -Float.greatestFiniteMagnitude
        for j in 0..<32 { if v[j] < lo { lo = v[j] }; if v[j] > hi { hi = v[j] } }
        let d = (hi - lo) / 15
        let id: Float = d != 0 ? 1 / d : 0
        putHalf(p, 0, d)
        putHalf(p, 2, lo)
        for j in 0..<16 {
            let q0 = trunc4((v[j] - lo) * id + 0.5), q1 = trunc4((v[16 + j] - lo) * id + 0.5)
            p.storeBytes(of: q0 | (q1 << 4), toByteOffset: 4 + j, as: UInt8.self)
        }
    }
}
