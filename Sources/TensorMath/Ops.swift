// Forward/backward op pairs for a Llama block, in the spirit of llm.c.
//
// Conventions (say the rule once):
// - Activations are row-major (T, C): T rows = every token of a packed batch, C features.
// - Weights are (OC, C) row-major, as HF stores them: out = inp @ Wᵀ.
// - Forward writes its outputs first, then takes inputs, then sizes; it saves what backward needs.
// - Backward ADDS into its gradients (+=). The caller zeroes them, once.
// - Pointers may not alias unless a function says so.
//
// SIGNATURES ARE THE CONTRACT between the engine, the backward pass and the tests.
// Bodies marked TODO are being written; keep the signatures stable.

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
    fatalError("TODO(TensorMath)")
}

/// Undoes `out = inp @ weightᵀ + bias`:
/// dinp (T, C) += dout (T, OC) @ weight (OC, C); dweight (OC, C) += doutᵀ @ inp; dbias (OC) += Σ_t dout.
/// Any gradient may be nil (not wanted: activations-only backward passes nil dweight).
public func matmulBackward(dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
                           dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                           inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                           T: Int, C: Int, OC: Int) {
    fatalError("TODO(TensorMath)")
}

// MARK: - RMSNorm

/// out (T, C) = inp · rstd · weight, rstd (T) = 1 / sqrt(mean(inp²) + eps) (saved for backward).
public func rmsnormForward(_ out: UnsafeMutablePointer<Float>, _ rstd: UnsafeMutablePointer<Float>,
                           _ inp: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                           T: Int, C: Int, eps: Float) {
    fatalError("TODO(TensorMath)")
}

/// dinp (T, C) += ∂/∂inp; dweight (C) += ∂/∂weight (nil when frozen).
public func rmsnormBackward(dinp: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>?,
                            dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                            weight: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                            T: Int, C: Int) {
    fatalError("TODO(TensorMath)")
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

    /// inverse frequencies: theta^(-2i/d), i < d/2, then scaled: "linear" divides them by
    /// factor; "llama3" follows Llama 3.1's low/high-frequency rule.
    public init(headDim: Int, theta: Double, pairing: RopePairing, maxPositions: Int,
                scalingType: String? = nil, factor: Double = 1, lowFreqFactor: Double = 1,
                highFreqFactor: Double = 4, originalMaxPositions: Int = 8192) {
        fatalError("TODO(TensorMath)")
    }
}

/// In place: rotate every head of x (T, nHeads · headDim) by its row's position.
public func ropeForward(_ x: UnsafeMutablePointer<Float>, positions: UnsafePointer<Int32>,
                        T: Int, nHeads: Int, table: RopeTable) {
    fatalError("TODO(TensorMath)")
}

/// In place: dx = Rᵀ · dout (rotation by −angle), turning d(rotated) into d(unrotated).
public func ropeBackward(_ dx: UnsafeMutablePointer<Float>, positions: UnsafePointer<Int32>,
                         T: Int, nHeads: Int, table: RopeTable) {
    fatalError("TODO(TensorMath)")
}

// MARK: - Causal attention with grouped-query heads

/// q (T, nHeads · hd), k and v (T, nKVHeads · hd) → out (T, nHeads · hd).
/// Query head h reads KV head h / (nHeads / nKVHeads). Scale 1/sqrt(hd), causal within each
/// sequence of `batch`. `att` (batch.attentionScratchCount(nHeads)) receives the softmax
/// probabilities, sequence by sequence, each (nHeads, L, L); nil when no backward will run.
public func attentionForward(_ out: UnsafeMutablePointer<Float>, _ att: UnsafeMutablePointer<Float>?,
                             q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                             batch: PackedBatch, nHeads: Int, nKVHeads: Int, headDim: Int) {
    fatalError("TODO(TensorMath)")
}

/// dq, dk, dv += gradients of `attentionForward` given dout and the saved probabilities.
public func attentionBackward(dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>,
                              dv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                              q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                              att: UnsafePointer<Float>, batch: PackedBatch,
                              nHeads: Int, nKVHeads: Int, headDim: Int) {
    fatalError("TODO(TensorMath)")
}

// MARK: - SwiGLU

/// out (N) = silu(gate) · up, silu(x) = x · σ(x).
public func swigluForward(_ out: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>,
                          up: UnsafePointer<Float>, N: Int) {
    fatalError("TODO(TensorMath)")
}

/// dgate, dup (N) += gradients of `swigluForward`.
public func swigluBackward(dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>,
                           dout: UnsafePointer<Float>, gate: UnsafePointer<Float>,
                           up: UnsafePointer<Float>, N: Int) {
    fatalError("TODO(TensorMath)")
}

// MARK: - softmax / log-softmax over rows

/// out (rows, cols) = softmax(inp) row by row (max-subtracted). out may alias inp.
public func softmaxForward(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, rows: Int, cols: Int) {
    fatalError("TODO(TensorMath)")
}

/// out = log softmax(inp) row by row. out may alias inp.
public func logSoftmaxForward(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, rows: Int, cols: Int) {
    fatalError("TODO(TensorMath)")
}

/// dinp += J_softmaxᵀ dout, given the softmax output `probs`: dinp = p ⊙ (dout − ⟨dout, p⟩).
public func softmaxBackward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                            probs: UnsafePointer<Float>, rows: Int, cols: Int) {
    fatalError("TODO(TensorMath)")
}

/// dinp += dout − softmax · Σ dout, given the log-softmax output `logp`.
public func logSoftmaxBackward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                               logp: UnsafePointer<Float>, rows: Int, cols: Int) {
    fatalError("TODO(TensorMath)")
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
        fatalError("TODO(TensorMath)")
    }
}
