// Forward/backward op pairs for a Llama block, in the spirit of llm.c.
//
// Conventions (say the rule once):
// - Activations are row-major (T, C): T rows = every token of a packed batch, C features.
// - Weights are (OC, C) row-major, as HF stores them: out = inp @ Wᵀ.
// - Forward writes its outputs first, then takes inputs, then sizes; it saves what backward needs.
// - Backward ADDS into its gradients (+=). The caller zeroes them, once.
// - Pointers may not alias unless a function says so.
// - Release builds are -Ounchecked: sizes and positions are the caller's to get right.
// - Results do not depend on the thread count (each output is written by one thread, in order).
//
// SIGNATURES ARE THE CONTRACT between the engine, the backward pass and the tests; change them
// only additively. Kernels live in OpsKernels.swift and Vector.swift; sgemm in BLAS.swift.

import Foundation

/// A packed batch: sequences laid end to end. Token t of sequence s is row `offsets[s] + t`;
/// its RoPE position is t. Attention never crosses sequences.
public struct PackedBatch: Sendable, Equatable {
    public var lengths: [Int]
    public var offsets: [Int]
    public var totalTokens: Int

    public init(lengths: [Int]) {
        self.lengths = lengths
        var o = [Int](); o.reserveCapacity(lengths.count)
        var acc = 0
        for l in lengths { o.append(acc); acc += l }
        self.offsets = o
        self.totalTokens = acc
    }

    /// Row of the last token of each sequence.
    public var lastRows: [Int] { zip(offsets, lengths).map { $0 + $1 - 1 } }
    /// Position (0-based within its sequence) of every row.
    public var positions: [Int32] { lengths.flatMap { (0..<$0).map(Int32.init) } }
    /// Floats needed to save attention probabilities: Σ nHeads · L · L.
    public func attentionScratchCount(nHeads: Int) -> Int { lengths.reduce(0) { $0 + nHeads * $1 * $1 } }
}

// MARK: - matmul

/// out (T, OC) = inp (T, C) @ weight (OC, C)ᵀ + bias (OC)
public func matmulForward(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>,
                          _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
                          T: Int, C: Int, OC: Int) {
    // (T, OC) = bias broadcast, then += inp @ weightᵀ in one sgemm.
    if let bias {
        for t in 0..<T { (out + t * OC).update(from: bias, count: OC) }
    }
    sgemm(transB: true, m: T, n: OC, k: C, a: inp, lda: C, b: weight, ldb: C,
          beta: bias == nil ? 0 : 1, c: out, ldc: OC)
}

/// Undoes `out = inp @ weightᵀ + bias`:
/// dinp (T, C) += dout (T, OC) @ weight (OC, C); dweight (OC, C) += doutᵀ @ inp; dbias (OC) += Σ_t dout.
/// Any gradient may be nil (not wanted: activations-only backward passes nil dweight).
public func matmulBackward(dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
                           dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                           inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                           T: Int, C: Int, OC: Int) {
    // forward: out = inp @ weightᵀ + bias
    if let dinp {  // dinp (T, C) += dout (T, OC) @ weight (OC, C)
        sgemm(m: T, n: C, k: OC, a: dout, lda: OC, b: weight, ldb: C, beta: 1, c: dinp, ldc: C)
    }
    if let dweight {  // dweight (OC, C) += doutᵀ (OC, T) @ inp (T, C)
        sgemm(transA: true, m: OC, n: C, k: T, a: dout, lda: OC, b: inp, ldb: C, beta: 1, c: dweight, ldc: C)
    }
    if let dbias {  // dbias (OC) += Σ_t dout[t]
        for t in 0..<T { axpy(dbias, 1, dout + t * OC, OC) }
    }
}

// MARK: - RMSNorm

/// out (T, C) = inp · rstd · weight, rstd (T) = 1 / sqrt(mean(inp²) + eps) (saved for backward).
/// out may alias inp (each row is read fully before it is written).
public func rmsnormForward(_ out: UnsafeMutablePointer<Float>, _ rstd: UnsafeMutablePointer<Float>,
                           _ inp: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                           T: Int, C: Int, eps: Float) {
    parallelRanges(T, minChunk: max(1, 16384 / max(C, 1))) { rows in
        for t in rows {
            let x = inp + t * C, o = out + t * C
            let r = 1 / (dot(x, x, C) / Float(C) + eps).squareRoot()
            rstd[t] = r
            // (x · rstd) · weight, in that order (as llama.cpp: rms_norm then mul)
            let rv = F8(repeating: r)
            var i = 0
            while i + 8 <= C { store8(o + i, (load8(x + i) * rv) * load8(weight + i)); i += 8 }
            while i < C { o[i] = (x[i] * r) * weight[i]; i += 1 }
        }
    }
}

/// dinp (T, C) += ∂/∂inp; dweight (C) += ∂/∂weight (nil when frozen).
public func rmsnormBackward(dinp: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>?,
                            dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                            weight: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                            T: Int, C: Int) {
    // forward: out_i = x_i · r · w_i, r = (Σ x² / C + eps)^(-1/2), ∂r/∂x_j = −r³ x_j / C
    // dx_j = r · (dout_j w_j − x_j · r² · Σ_i dout_i w_i x_i / C);  dw_i = Σ_t dout_i x_i r
    for t in 0..<T {
        let x = inp + t * C, d = dout + t * C, dx = dinp + t * C
        let r = rstd[t]
        var s0 = F8(), i = 0
        while i + 8 <= C { s0 += load8(d + i) * load8(weight + i) * load8(x + i); i += 8 }
        var s = s0.sum()
        while i < C { s += d[i] * weight[i] * x[i]; i += 1 }
        let c = r * r * s / Float(C)
        let rv = F8(repeating: r), cv = F8(repeating: c)
        i = 0
        while i + 8 <= C {
            store8(dx + i, load8(dx + i) + rv * (load8(d + i) * load8(weight + i) - load8(x + i) * cv))
            i += 8
        }
        while i < C { dx[i] += r * (d[i] * weight[i] - x[i] * c); i += 1 }
        if let dweight { 
            i = 0
            while i + 8 <= C { store8(dweight + i, load8(dweight + i) + load8(d + i) * load8(x + i) * rv); i += 8 }
            while i < C { dweight[i] += d[i] * x[i] * r; i += 1 }
        }
    }
}

// MARK: - RoPE

public enum RopePairing: Sendable {
    /// Rotate (x[2i], x[2i+1]): GGUF llama (llama.cpp NORM mode; Q/K rows were permuted on export).
    case adjacent
    /// Rotate (x[i], x[i + d/2]): HF rotate_half, GGUF qwen2 (NEOX mode).
    case halves
}

/// cos/sin for every (position, frequency) pair, with rope scaling applied to the frequencies.
public struct RopeTable: Sendable {
    public let headDim: Int
    public let pairing: RopePairing
    public let maxPositions: Int
    /// (maxPositions, headDim/2)
    public let cos: [Float]
    public let sin: [Float]
    /// (headDim/2) inverse frequencies after scaling (for tests and diagnostics).
    public let invFreq: [Double]

    /// inverse frequencies: theta^(-2i/d), i < d/2, then scaled: "linear" divides them by
    /// factor; "llama3" follows Llama 3.1's low/high-frequency rule; then pair i's is divided
    /// by `freqFactors[i]` when given (llama.cpp's `rope_freqs` / ggml_rope_ext freq_factors,
    /// which is how the engine applies llama3 scaling: one per-pair table for GGUF and HF).
    public init(headDim: Int, theta: Double, pairing: RopePairing, maxPositions: Int,
                scalingType: String? = nil, factor: Double = 1, lowFreqFactor: Double = 1,
                highFreqFactor: Double = 4, originalMaxPositions: Int = 8192,
                freqFactors: [Double]? = nil) {
        precondition(headDim > 0 && headDim % 2 == 0, "RoPE head dim must be even, got \(headDim)")
        precondition(RopeTable.supportsScaling(scalingType), "unsupported rope scaling \(scalingType ?? "")")
        precondition(freqFactors.map { $0.count == headDim / 2 && $0.allSatisfy { $0.isFinite && $0 > 0 } } ?? true,
                     "RoPE frequency factors must be head_dim/2 finite positive numbers")
        self.headDim = headDim
        self.pairing = pairing
        self.maxPositions = maxPositions
        let half = headDim / 2
        var inv = (0..<half).map { i in Foundation.pow(theta, -Double(2 * i) / Double(headDim)) }
        switch RopeTable.normalizedScaling(scalingType) {
        case "linear":
            inv = inv.map { $0 / factor }
        case "llama3":
            // Llama 3.1: keep high frequencies, divide low ones by factor, blend in between.
            let lowWavelen = Double(originalMaxPositions) / lowFreqFactor
            let highWavelen = Double(originalMaxPositions) / highFreqFactor
            inv = inv.map { f in
                let wavelen = 2 * Double.pi / f
                if wavelen < highWavelen { return f }
                if wavelen > lowWavelen { return f / factor }
                let smooth = (Double(originalMaxPositions) / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor)
                return (1 - smooth) * f / factor + smooth * f
            }
        default:
            break
        }
        if let ff = freqFactors {
            for i in 0..<half { inv[i] /= ff[i] }
        }
        self.invFreq = inv
        var c = [Float](repeating: 0, count: maxPositions * half)
        var s = c
        for p in 0..<maxPositions {
            for i in 0..<half {
                let a = Double(p) * inv[i]
                c[p * half + i] = Float(Foundation.cos(a))
                s[p * half + i] = Float(Foundation.sin(a))
            }
        }
        self.cos = c
        self.sin = s
    }
}

/// In place: rotate every head of x (T, nHeads · headDim) by its row's position.
public func ropeForward(_ x: UnsafeMutablePointer<Float>, positions: UnsafePointer<Int32>,
                        T: Int, nHeads: Int, table: RopeTable) {
    ropeApply(x, positions: positions, T: T, nHeads: nHeads, table: table, sign: 1)
}

/// In place: dx = Rᵀ · dout (rotation by −angle), turning d(rotated) into d(unrotated).
public func ropeBackward(_ dx: UnsafeMutablePointer<Float>, positions: UnsafePointer<Int32>,
                         T: Int, nHeads: Int, table: RopeTable) {
    // forward: (x0, x1) ← (x0 c − x1 s, x0 s + x1 c); its transpose is the rotation by −angle.
    ropeApply(dx, positions: positions, T: T, nHeads: nHeads, table: table, sign: -1)
}

// MARK: - Causal attention with grouped-query heads

/// q (T, nHeads · hd), k and v (T, nKVHeads · hd) → out (T, nHeads · hd).
/// Query head h reads KV head h / (nHeads / nKVHeads). Scale 1/sqrt(hd), causal within each
/// sequence of `batch`. `att` (batch.attentionScratchCount(nHeads)) receives the softmax
/// probabilities, sequence by sequence, each (nHeads, L, L); nil when no backward will run.
public func attentionForward(_ out: UnsafeMutablePointer<Float>, _ att: UnsafeMutablePointer<Float>?,
                             q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                             batch: PackedBatch, nHeads: Int, nKVHeads: Int, headDim: Int) {
    attentionForwardImpl(out, att, q: q, k: k, v: v, batch: batch, nHeads: nHeads, nKVHeads: nKVHeads, headDim: headDim)
}

/// dq, dk, dv += gradients of `attentionForward` given dout and the saved probabilities.
public func attentionBackward(dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>,
                              dv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                              q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                              att: UnsafePointer<Float>, batch: PackedBatch,
                              nHeads: Int, nKVHeads: Int, headDim: Int) {
    attentionBackwardImpl(dq: dq, dk: dk, dv: dv, dout: dout, q: q, k: k, v: v, att: att, batch: batch,
                          nHeads: nHeads, nKVHeads: nKVHeads, headDim: headDim)
}

// MARK: - SwiGLU

/// out (N) = silu(gate) · up, silu(x) = x · σ(x).
public func swigluForward(_ out: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>,
                          up: UnsafePointer<Float>, N: Int) {
    parallelRanges(N, minChunk: 32768) { r in
        let g = gate + r.lowerBound, u = up + r.lowerBound, o = out + r.lowerBound
        let n = r.count
        let one = F8(repeating: 1)
        var i = 0
        while i + 8 <= n {
            let gv = load8(g + i)
            store8(o + i, gv * load8(u + i) / (one + exp8(-gv)))
            i += 8
        }
        while i < n { o[i] = g[i] * u[i] / (1 + exp1(-g[i])); i += 1 }
    }
}

/// dgate, dup (N) += gradients of `swigluForward`.
public func swigluBackward(dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>,
                           dout: UnsafePointer<Float>, gate: UnsafePointer<Float>,
                           up: UnsafePointer<Float>, N: Int) {
    // forward: out = g σ(g) · u;  d/dg [g σ(g)] = σ(g) (1 + g (1 − σ(g)))
    parallelRanges(N, minChunk: 32768) { r in
        let lo = r.lowerBound, n = r.count
        let g = gate + lo, u = up + lo, d = dout + lo, dg = dgate + lo, du = dup + lo
        let one = F8(repeating: 1)
        var i = 0
        while i + 8 <= n {
            let gv = load8(g + i), dv = load8(d + i)
            let sg = one / (one + exp8(-gv))
            store8(du + i, load8(du + i) + dv * gv * sg)
            store8(dg + i, load8(dg + i) + dv * load8(u + i) * sg * (one + gv * (one - sg)))
            i += 8
        }
        while i < n {
            let sg = 1 / (1 + exp1(-g[i]))
            du[i] += d[i] * g[i] * sg
            dg[i] += d[i] * u[i] * sg * (1 + g[i] * (1 - sg))
            i += 1
        }
    }
}

// MARK: - softmax / log-softmax over rows

/// out (rows, cols) = softmax(inp) row by row (max-subtracted). out may alias inp.
public func softmaxForward(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, rows: Int, cols: Int) {
    parallelRanges(rows, minChunk: max(1, 16384 / max(cols, 1))) { rr in
        for r in rr {
            let x = inp + r * cols, o = out + r * cols
            let s = expShifted(o, x, cols, shift: maxElement(x, cols))
            scale(o, 1 / s, cols)
        }
    }
}

/// out = log softmax(inp) row by row. out may alias inp.
public func logSoftmaxForward(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, rows: Int, cols: Int) {
    parallelRanges(rows, minChunk: max(1, 16384 / max(cols, 1))) { rr in
        for r in rr {
            let x = inp + r * cols, o = out + r * cols
            let m = maxElement(x, cols)
            // Σ exp(x − m) without writing: out may alias inp, and we need x afterwards.
            let mv = F8(repeating: m)
            var acc = F8(), i = 0
            while i + 8 <= cols { acc += exp8(load8(x + i) - mv); i += 8 }
            var s = acc.sum()
            while i < cols { s += exp1(x[i] - m); i += 1 }
            let shift = m + Foundation.log(s)
            let sv = F8(repeating: shift)
            i = 0
            while i + 8 <= cols { store8(o + i, load8(x + i) - sv); i += 8 }
            while i < cols { o[i] = x[i] - shift; i += 1 }
        }
    }
}

/// dinp += J_softmaxᵀ dout, given the softmax output `probs`: dinp = p ⊙ (dout − ⟨dout, p⟩).
public func softmaxBackward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                            probs: UnsafePointer<Float>, rows: Int, cols: Int) {
    // forward: p = softmax(x);  dx = p ⊙ (dout − ⟨dout, p⟩)
    for r in 0..<rows {
        let p = probs + r * cols, d = dout + r * cols, dx = dinp + r * cols
        let s = F8(repeating: dot(d, p, cols))
        var i = 0
        while i + 8 <= cols { store8(dx + i, load8(dx + i) + load8(p + i) * (load8(d + i) - s)); i += 8 }
        let ss = s[0]
        while i < cols { dx[i] += p[i] * (d[i] - ss); i += 1 }
    }
}

/// dinp += dout − softmax · Σ dout, given the log-softmax output `logp`.
public func logSoftmaxBackward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                               logp: UnsafePointer<Float>, rows: Int, cols: Int) {
    // forward: y = x − logΣexp(x);  dx = dout − softmax(x) · Σ dout, softmax = exp(y)
    for r in 0..<rows {
        let y = logp + r * cols, d = dout + r * cols, dx = dinp + r * cols
        var acc = F8(), i = 0
        while i + 8 <= cols { acc += load8(d + i); i += 8 }
        var sum = acc.sum()
        while i < cols { sum += d[i]; i += 1 }
        let sv = F8(repeating: sum)
        i = 0
        while i + 8 <= cols { store8(dx + i, load8(dx + i) + load8(d + i) - exp8(load8(y + i)) * sv); i += 8 }
        while i < cols { dx[i] += d[i] - exp1(y[i]) * sum; i += 1 }
    }
}

// MARK: - Adam

/// Adam (Kingma & Ba) with bias correction; one instance per parameter tensor.
public struct Adam: Sendable {
    public var lr: Float
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var eps: Float = 1e-8
    public private(set) var step = 0
    var m: [Float]
    var v: [Float]

    public init(count: Int, lr: Float, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8) {
        self.lr = lr; self.beta1 = beta1; self.beta2 = beta2; self.eps = eps
        m = [Float](repeating: 0, count: count); v = m
    }

    /// params -= lr · m̂ / (sqrt(v̂) + eps)
    public mutating func update(_ params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>) {
        step += 1
        let n = m.count
        if n == 0 { return }
        let b1 = beta1, b2 = beta2
        let c1 = Float(1 / (1 - Foundation.pow(Double(b1), Double(step))))
        let c2 = Float(1 / (1 - Foundation.pow(Double(b2), Double(step))))
        let lr = self.lr, eps = self.eps
        m.withUnsafeMutableBufferPointer { mb in
            v.withUnsafeMutableBufferPointer { vb in
                let mp = mb.baseAddress!, vp = vb.baseAddress!
                for i in 0..<n {
                    let g = grads[i]
                    let mi = b1 * mp[i] + (1 - b1) * g
                    let vi = b2 * vp[i] + (1 - b2) * g * g
                    mp[i] = mi; vp[i] = vi
                    params[i] -= lr * (mi * c1) / ((vi * c2).squareRoot() + eps)
                }
            }
        }
    }
}

// MARK: - residual add (additive API)

/// y (N) += x (N): the residual connection. Its backward is the identity (dx += dy).
public func addInPlace(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, N: Int) {
    parallelRanges(N, minChunk: 65536) { r in axpy(y + r.lowerBound, 1, x + r.lowerBound, r.count) }
}
