import TensorMath

/// SplitMix64: a seeded generator so every test input is reproducible.
struct SeededRNG: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    mutating func uniform(_ n: Int, _ lo: Float = -1, _ hi: Float = 1) -> [Float] {
        (0..<n).map { _ in Float.random(in: lo..<hi, using: &self) }
    }
}

/// Σ dout·out in Double: the scalar loss of the finite-difference checks.
func weightedSum(_ out: [Float], _ dout: [Float]) -> Double {
    var s = 0.0
    for i in 0..<out.count { s += Double(out[i]) * Double(dout[i]) }
    return s
}

/// Central finite differences of `loss` w.r.t. every element of `x`, against `analytic`.
/// Returns the max relative error |num − ana| / max(|num|, |ana|, floor).
func finiteDifferenceError(_ x: [Float], analytic: [Float], eps: Float, floor: Double = 1e-2,
                           loss: ([Float]) -> Double) -> Double {
    var xs = x
    var worst = 0.0
    for i in 0..<x.count {
        let orig = xs[i]
        let xp = orig + eps, xm = orig - eps
        xs[i] = xp; let lp = loss(xs)
        xs[i] = xm; let lm = loss(xs)
        xs[i] = orig
        let num = (lp - lm) / (Double(xp) - Double(xm))
        let ana = Double(analytic[i])
        let rel = abs(num - ana) / max(abs(num), abs(ana), floor)
        worst = max(worst, rel)
    }
    return worst
}
