// Scalar float conversions, bit-exact with ggml (ggml-impl.h) and IEEE/OCP definitions.

/// IEEE half → Float, exact (every half is a float).
@inline(__always)
public func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exp = UInt32(h >> 10) & 0x1f
    let mant = UInt32(h & 0x3ff)
    if exp == 0 {
        // Zero or subnormal: mant × 2^-24.
        let v = Float(mant) * 0x1p-24
        return Float(bitPattern: v.bitPattern | sign)
    }
    if exp == 31 { return Float(bitPattern: sign | 0x7f80_0000 | (mant << 13)) }
    return Float(bitPattern: sign | ((exp + 112) << 23) | (mant << 13))
}

/// Float → IEEE half, round to nearest even; ggml's `ggml_compute_fp32_to_fp16`
/// (NaN becomes 0x7E00 with the sign kept, overflow becomes ±inf).
@inline(__always)
public func floatToHalf(_ f: Float) -> UInt16 {
    let scaleToInf: Float = 0x1.0p+112
    let scaleToZero: Float = 0x1.0p-110
    var base = (abs(f) * scaleToInf) * scaleToZero
    let w = f.bitPattern
    let shl1w = w &+ w
    let sign = w & 0x8000_0000
    var bias = shl1w & 0xFF00_0000
    if bias < 0x7100_0000 { bias = 0x7100_0000 }
    base = Float(bitPattern: (bias >> 1) &+ 0x0780_0000) + base
    let bits = base.bitPattern
    let expBits = (bits >> 13) & 0x0000_7C00
    let mantBits = bits & 0x0000_0FFF
    let nonsign = expBits &+ mantBits
    return UInt16(truncatingIfNeeded: (sign >> 16) | (shl1w > 0xFF00_0000 ? 0x7E00 : nonsign))
}

/// bfloat16 → Float (exact).
@inline(__always)
public func bf16ToFloat(_ b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }

/// Float → bfloat16, round to nearest even; ggml's `ggml_compute_fp32_to_bf16`
/// (NaN is kept NaN and made quiet).
@inline(__always)
public func floatToBF16(_ f: Float) -> UInt16 {
    let u = f.bitPattern
    if (u & 0x7fff_ffff) > 0x7f80_0000 { return UInt16(truncatingIfNeeded: (u >> 16) | 64) }
    return UInt16(truncatingIfNeeded: (u &+ (0x7fff &+ ((u >> 16) & 1))) >> 16)
}

/// OCP FP8 E4M3 ("fn": no infinities; S.1111.111 is NaN; bias 7) → Float.
@inline(__always)
public func f8e4m3ToFloat(_ b: UInt8) -> Float {
    let sign: Float = b & 0x80 != 0 ? -1 : 1
    let exp = Int((b >> 3) & 0xf)
    let mant = Float(b & 0x7)
    if exp == 15 && (b & 0x7) == 7 { return .nan }
    if exp == 0 { return sign * mant * 0x1p-9 }          // subnormal: m/8 × 2^-6
    return sign * (1 + mant / 8) * Float(sign: .plus, exponent: exp - 7, significand: 1)
}

/// OCP FP8 E5M2 (the top byte of an IEEE half) → Float.
@inline(__always)
public func f8e5m2ToFloat(_ b: UInt8) -> Float { halfToFloat(UInt16(b) << 8) }

/// All 65536 halves as floats: a table lookup beats the branches in the hot dequant loops.
let halfTable: [Float] = (0...0xFFFF).map { halfToFloat(UInt16($0)) }
