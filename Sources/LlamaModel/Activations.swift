import ModelFormats
import TensorMath

// What one block's forward pass saves for its backward pass (llm.c's ActivationTensors,
// for one block of a Llama-family model over one packed batch).
//
// Sizes, with T = batch.totalTokens, C = hiddenSize, QD = numHeads · headDim,
// KVD = numKVHeads · headDim, F = intermediateSize:
//
//   block(x) = h + down(silu(gate(ffn_norm(h))) · up(ffn_norm(h)))
//   h        = x + o(attention(rope(q(attn_norm(x))), rope(k(attn_norm(x))), v(attn_norm(x))))
//
// Every buffer is row-major, token-major: row t is token t of the packed batch.

/// The activations one `blockForward` saves so that a backward pass can run through the block.
/// Allocated once for a batch shape and reusable for any batch that `fits`.
/// Pointers stay valid for the life of the object; the object owns them.
public final class BlockActivations {
    /// Shape this object was sized for.
    public let hiddenSize: Int, qDim: Int, kvDim: Int, ffnDim: Int, numHeads: Int
    /// Token capacity (rows of every (T, ·) buffer) and attention-probability capacity.
    public let tokenCapacity: Int, attentionCapacity: Int
    /// The batch of the last `blockForward` that wrote here.
    public internal(set) var batch: PackedBatch

    /// (T, C) the residual stream entering the block (block input x).
    public let input: UnsafeMutablePointer<Float>
    /// (T) 1/sqrt(mean(x²) + eps) of the attention RMSNorm.
    public let attnNormRstd: UnsafeMutablePointer<Float>
    /// (T, C) attn_norm(x) = x · rstd · attn_norm.weight, the input of q, k, v.
    public let attnNormOut: UnsafeMutablePointer<Float>
    /// (T, QD) queries: attnNormOut @ Wqᵀ + bq, then RoPE (as fed to attention).
    public let q: UnsafeMutablePointer<Float>
    /// (T, KVD) keys: attnNormOut @ Wkᵀ + bk, then RoPE.
    public let k: UnsafeMutablePointer<Float>
    /// (T, KVD) values: attnNormOut @ Wvᵀ + bv (no RoPE).
    public let v: UnsafeMutablePointer<Float>
    /// (Σ_s numHeads · L_s · L_s) softmax probabilities, sequence by sequence, each (numHeads, L, L)
    /// (row = query position, column = key position; zero above the diagonal).
    public let att: UnsafeMutablePointer<Float>
    /// (T, QD) attention output, heads concatenated: the input of the o projection.
    public let attnOut: UnsafeMutablePointer<Float>
    /// (T, C) h = x + attnOut @ Woᵀ, the residual stream after attention.
    public let residualAttn: UnsafeMutablePointer<Float>
    /// (T) rstd of the FFN RMSNorm.
    public let ffnNormRstd: UnsafeMutablePointer<Float>
    /// (T, C) ffn_norm(h), the input of gate and up.
    public let ffnNormOut: UnsafeMutablePointer<Float>
    /// (T, F) ffnNormOut @ Wgateᵀ (before SiLU).
    public let gate: UnsafeMutablePointer<Float>
    /// (T, F) ffnNormOut @ Wupᵀ.
    public let up: UnsafeMutablePointer<Float>
    /// (T, F) silu(gate) · up: the input of the down projection.
    public let swiglu: UnsafeMutablePointer<Float>
    // The block's output, residualAttn + swiglu @ Wdownᵀ, is written to the caller's x.

    /// Sized for `batch` under `config`.
    public convenience init(config: ModelConfig, batch: PackedBatch) {
        self.init(config: config, tokenCapacity: batch.totalTokens,
                  attentionCapacity: batch.attentionScratchCount(nHeads: config.numHeads))
        self.batch = batch
    }

    /// Sized for up to `tokenCapacity` tokens and `attentionCapacity` attention probabilities.
    public init(config: ModelConfig, tokenCapacity: Int, attentionCapacity: Int) {
        hiddenSize = config.hiddenSize
        qDim = config.numHeads * config.headDim
        kvDim = config.numKVHeads * config.headDim
        ffnDim = config.intermediateSize
        numHeads = config.numHeads
        self.tokenCapacity = max(tokenCapacity, 1)
        self.attentionCapacity = max(attentionCapacity, 1)
        batch = PackedBatch(lengths: [])
        let T = self.tokenCapacity
        func alloc(_ n: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
            p.initialize(repeating: 0, count: max(n, 1))
            return p
        }
        input = alloc(T * hiddenSize)
        attnNormRstd = alloc(T)
        attnNormOut = alloc(T * hiddenSize)
        q = alloc(T * qDim)
        k = alloc(T * kvDim)
        v = alloc(T * kvDim)
        att = alloc(self.attentionCapacity)
        attnOut = alloc(T * qDim)
        residualAttn = alloc(T * hiddenSize)
        ffnNormRstd = alloc(T)
        ffnNormOut = alloc(T * hiddenSize)
        gate = alloc(T * ffnDim)
        up = alloc(T * ffnDim)
        swiglu = alloc(T * ffnDim)
    }

    deinit {
        for p in [input, attnNormRstd, attnNormOut, q, k, v, att, attnOut, residualAttn,
                  ffnNormRstd, ffnNormOut, gate, up, swiglu] {
            p.deallocate()
        }
    }

    /// Whether `batch` fits in this object's buffers.
    public func fits(_ batch: PackedBatch) -> Bool {
        batch.totalTokens <= tokenCapacity && batch.attentionScratchCount(nHeads: numHeads) <= attentionCapacity
    }

    /// Floats held, for memory accounting.
    public var floatCount: Int {
        tokenCapacity * (4 * hiddenSize + 2 + 2 * qDim + 2 * kvDim + 3 * ffnDim) + attentionCapacity
    }
}
