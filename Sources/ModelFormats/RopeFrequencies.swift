import Foundation

// Per-pair RoPE frequency factors.
//
// llama.cpp's converter (convert_hf_to_gguf.py, LlamaModel) does not store Llama 3.1-style
// rope scaling ("rope_type": "llama3") as metadata: it writes an F32 tensor
// `rope_freqs.weight` of head_dim/2 factors, and ggml_rope_ext divides pair i's frequency
// by factor i:   theta_i(pos) = pos · base^(-2i/d) / factor_i.
// For llama3 scaling the factors are, with wavelen_i = 2π / base^(-2i/d):
//     1                                       if wavelen_i < original_max / high_freq_factor
//     factor                                  if wavelen_i > original_max / low_freq_factor
//     1 / ((1 − s) / factor + s),  s = (original_max / wavelen_i − low) / (high − low)   otherwise
// which is exactly HF's `_compute_llama3_parameters` written as a divisor per pair.
// The engine reads the tensor from GGUF files and computes the same factors from an HF
// config, so both reach RoPE as one per-pair table.

public enum RopeFrequencyError: Error, CustomStringConvertible, Equatable {
    /// `rope_freqs.weight` is not stored as F32.
    case wrongDType(name: String, found: DType)
    /// Its shape is not [head_dim / 2].
    case wrongShape(name: String, expected: [Int], found: [Int])
    /// A factor is NaN, infinite, zero or negative.
    case badFactor(name: String, index: Int, value: Float)
    /// The factors are not those of any llama3 rope scaling, so no HF config can express them.
    case notLlama3(reason: String)

    public var description: String {
        switch self {
        case let .wrongDType(n, d):
            return "tensor '\(n)' (RoPE frequency factors) is \(d.rawValue); llama.cpp writes it as F32 and only F32 is read"
        case let .wrongShape(n, e, f):
            return "tensor '\(n)' (RoPE frequency factors) has shape \(f), expected \(e) (head_dim / 2)"
        case let .badFactor(n, i, v):
            return "tensor '\(n)' (RoPE frequency factors) has factor \(v) at pair \(i); every factor must be finite and > 0"
        case let .notLlama3(r):
            return "the RoPE frequency factors are not a llama3 rope scaling (\(r)); config.json cannot express them"
        }
    }
}

public enum RopeFrequencies {
    /// The GGUF (llama.cpp) tensor name: one F32 factor per rotated pair, not a block weight.
    public static let ggufTensorName = "rope_freqs.weight"

    /// The factors stored in a checkpoint (`rope_freqs.weight`), validated, or nil when the
    /// file has none. HF checkpoints carry their scaling in config.json instead.
    public static func stored(in checkpoint: any Checkpoint) throws -> [Double]? {
        guard checkpoint.format == .gguf, let t = checkpoint.tensorInfo(named: ggufTensorName) else { return nil }
        let half = checkpoint.config.headDim / 2
        guard t.dtype == .f32 else { throw RopeFrequencyError.wrongDType(name: t.name, found: t.dtype) }
        guard t.shape == [half] else { throw RopeFrequencyError.wrongShape(name: t.name, expected: [half], found: t.shape) }
        let v = try checkpoint.floats(t)
        guard v.count == half else { throw RopeFrequencyError.wrongShape(name: t.name, expected: [half], found: [v.count]) }
        for (i, f) in v.enumerated() where !(f.isFinite && f > 0) {
            throw RopeFrequencyError.badFactor(name: t.name, index: i, value: f)
        }
        return v.map(Double.init)
    }

    /// Unscaled inverse frequencies base^(-2i/d), i < d/2.
    public static func baseInverseFrequencies(headDim: Int, theta: Double) -> [Double] {
        (0..<(headDim / 2)).map { i in Foundation.pow(theta, -Double(2 * i) / Double(headDim)) }
    }

    /// The llama3 factors (divisors of each pair's frequency) for these parameters.
    public static func llama3Factors(headDim: Int, theta: Double, factor: Double, lowFreqFactor: Double,
                                     highFreqFactor: Double, originalMaxPositions: Int) -> [Double] {
        let orig = Double(originalMaxPositions)
        let lowWavelen = orig / lowFreqFactor, highWavelen = orig / highFreqFactor
        return baseInverseFrequencies(headDim: headDim, theta: theta).map { f in
            let wavelen = 2 * Double.pi / f
            if wavelen < highWavelen { return 1 }
            if wavelen > lowWavelen { return factor }
            let s = (orig / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor)
            return 1 / ((1 - s) / factor + s)
        }
    }

    /// The llama3 factors of a config's rope scaling (HF defaults for absent fields), or nil
    /// when its scaling is not llama3.
    public static func llama3Factors(_ c: ModelConfig) -> [Double]? {
        guard let s = c.ropeScaling, s.type.lowercased() == "llama3" else { return nil }
        return llama3Factors(headDim: c.headDim, theta: c.ropeTheta, factor: s.factor,
                             lowFreqFactor: s.lowFreqFactor ?? 1, highFreqFactor: s.highFreqFactor ?? 4,
                             originalMaxPositions: s.originalMaxPositions ?? 8192)
    }

    /// llama3 parameters that reproduce `factors` (relative error ≤ 1e-4 on every pair, the
    /// converter computes them from float32 frequencies), for writing config.json.
    /// The factors fix only the ratios of original_max_position_embeddings to the low/high
    /// factors, so `originalMaxPositions` is taken from the file's metadata when it has one,
    /// else 8192 (Llama 3.1/3.2); low/high are then fitted to the blended pairs, or 1 and 4
    /// (Llama 3.1/3.2) when fewer than two pairs are blended. Throws when nothing fits.
    public static func recoverLlama3(factors: [Double], headDim: Int, theta: Double,
                                     originalMaxPositions: Int?) throws -> RopeScaling {
        guard factors.count == headDim / 2, let factor = factors.max(), let minF = factors.min(), factors.count > 0 else {
            throw RopeFrequencyError.notLlama3(reason: "expected \(headDim / 2) factors, found \(factors.count)")
        }
        guard minF > 0, minF >= 1 - 1e-4 || factor <= 1 + 1e-4 else {
            throw RopeFrequencyError.notLlama3(reason: "factors range \(minF)…\(factor); llama3's lie between 1 and its factor")
        }
        let orig = originalMaxPositions ?? 8192
        let inv = baseInverseFrequencies(headDim: headDim, theta: theta)
        // Blended pairs: 1/f = (1 − s)/factor + s solved for s, which is linear in x = orig/wavelen.
        var points: [(x: Double, s: Double)] = []
        if factor > 1 + 1e-4 {
            for (i, f) in factors.enumerated() where f > 1 + 1e-4 && f < factor * (1 - 1e-4) {
                let s = (1 / f - 1 / factor) / (1 - 1 / factor)
                points.append((Double(orig) * inv[i] / (2 * Double.pi), s))
            }
        }
        var candidates: [(Double, Double)] = [(1, 4)]
        if let a = points.first, let b = points.last, b.x != a.x {
            // s = (x − low) / (high − low)
            let slope = (b.s - a.s) / (b.x - a.x)
            if slope > 0 {
                let low = a.x - a.s / slope, high = low + 1 / slope
                candidates.insert((low, high), at: 0)
            }
        }
        // Fitted values within float noise of a short decimal are written as that decimal.
        func tidy(_ x: Double) -> Double {
            let r = (x * 1000).rounded() / 1000
            return abs(r - x) <= 1e-3 * max(1, abs(x)) ? r : x
        }
        for (low, high) in candidates where low > 0 && high > low {
            for (f, l, h) in [(tidy(factor), tidy(low), tidy(high)), (factor, low, high)] {
                let g = llama3Factors(headDim: headDim, theta: theta, factor: f, lowFreqFactor: l,
                                      highFreqFactor: h, originalMaxPositions: orig)
                if zip(g, factors).allSatisfy({ abs($0 - $1) <= 1e-4 * max(1, abs($1)) }) {
                    return RopeScaling(type: "llama3", factor: f, lowFreqFactor: l,
                                       highFreqFactor: h, originalMaxPositions: orig)
                }
            }
        }
        throw RopeFrequencyError.notLlama3(reason: "no factor/low/high with original_max_position_embeddings \(orig) reproduces them")
    }
}
