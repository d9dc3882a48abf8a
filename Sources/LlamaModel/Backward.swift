import ModelFormats
import TensorMath

// The backward pass of a Llama block and of the output head, composed from TensorMath's
// backward ops (llm.c style: each step quotes the forward line it undoes).
//
// Rules, said once:
// - The residual gradient is carried IN PLACE: `dx` (T, C) holds dL/d(block output) on entry
//   and dL/d(block input) on exit. Blocks after the trained one run "activations only"
//   (grads == nil): no weight gradient is formed, only dx moves.
// - Weight gradients are ADDED into `BlockGradients` (+=). The caller zeroes them once per step.
// - Norm weights and biases are frozen: LFTF trains q, k, v, o, gate, up, down only.
//
// Sizes: T = batch.totalTokens, C = hiddenSize, QD = numHeads·headDim, KVD = numKVHeads·headDim,
// F = intermediateSize, B = number of sequences, V = vocabSize.

// MARK: - Gradients of the seven trainable weights

/// dL/dW for the seven trainable weights of one block, HF layout (OC, C) like `BlockWeights`.
public final class BlockGradients {
    public let layer: Int
    /// (QD, C), (KVD, C), (KVD, C), (C, QD)
    public var q: [Float], k: [Float], v: [Float], o: [Float]
    /// (F, C), (F, C), (C, F)
    public var gate: [Float], up: [Float], down: [Float]

    public init(like w: BlockWeights) {
        layer = w.layer
        q = [Float](repeating: 0, count: w.q.count); k = [Float](repeating: 0, count: w.k.count)
        v = [Float](repeating: 0, count: w.v.count); o = [Float](repeating: 0, count: w.o.count)
        gate = [Float](repeating: 0, count: w.gate.count); up = [Float](repeating: 0, count: w.up.count)
        down = [Float](repeating: 0, count: w.down.count)
    }

    /// The one place gradients are zeroed.
    public func zero() {
        for i in q.indices { q[i] = 0 }; for i in k.indices { k[i] = 0 }
        for i in v.indices { v[i] = 0 }; for i in o.indices { o[i] = 0 }
        for i in gate.indices { gate[i] = 0 }; for i in up.indices { up[i] = 0 }
        for i in down.indices { down[i] = 0 }
    }

    /// The gradient for a trainable role of this block (order of `TensorRole.trainable`).
    public func gradient(for role: TensorRole) -> [Float]? {
        guard role.block == layer else { return nil }
        switch role {
        case .q: return q
        case .k: return k
        case .v: return v
        case .o: return o
        case .gate: return gate
        case .up: return up
        case .down: return down
        default: return nil
        }
    }

    /// Frobenius norm of the gradient for a role (Double accumulation).
    public func frobenius(_ role: TensorRole) -> Double {
        guard let g = gradient(for: role) else { return .nan }
        var s = 0.0
        for x in g { s += Double(x) * Double(x) }
        return s.squareRoot()
    }
}

// MARK: - Scratch

/// Temporaries of one block's backward pass, sized for a token capacity; reused across blocks.
public final class BackwardScratch {
    public let tokenCapacity: Int
    let C: Int, QD: Int, KVD: Int, F: Int
    /// (T, C) d(normed input) of either RMSNorm
    let dnorm: UnsafeMutablePointer<Float>
    /// (T, QD) d(attention output); (T, QD) dq; (T, KVD) dk, dv
    let dattn: UnsafeMutablePointer<Float>, dq: UnsafeMutablePointer<Float>
    let dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>
    /// (T, F) d(swiglu), d(gate), d(up)
    let dswiglu: UnsafeMutablePointer<Float>, dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>

    public init(config: ModelConfig, tokenCapacity: Int) {
        let T = max(tokenCapacity, 1)
        self.tokenCapacity = T
        C = config.hiddenSize; QD = config.numHeads * config.headDim
        KVD = config.numKVHeads * config.headDim; F = config.intermediateSize
        func alloc(_ n: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
            p.initialize(repeating: 0, count: max(n, 1)); return p
        }
        dnorm = alloc(T * C); dattn = alloc(T * QD); dq = alloc(T * QD)
        dk = alloc(T * KVD); dv = alloc(T * KVD)
        dswiglu = alloc(T * F); dgate = alloc(T * F); dup = alloc(T * F)
    }

    deinit { for p in [dnorm, dattn, dq, dk, dv, dswiglu, dgate, dup] { p.deallocate() } }
}

// MARK: - Block backward

/// Backward through one block whose forward saved `acts` (the engine's `blockForward`).
/// `dx` (T, C): dL/d(output) in, dL/d(input) out. `grads` nil = activations only.
public func blockBackward(_ dx: UnsafeMutablePointer<Float>, grads: BlockGradients?,
                          acts: BlockActivations, weights w: BlockWeights,
                          config: ModelConfig, rope: RopeTable, scratch s: BackwardScratch) {
    let batch = acts.batch
    let T = batch.totalTokens
    precondition(T <= s.tokenCapacity, "backward scratch too small")
    let C = config.hiddenSize, F = config.intermediateSize
    let QD = config.numHeads * config.headDim, KVD = config.numKVHeads * config.headDim

    // ---- MLP:  out = h + swiglu @ Wdownᵀ,  swiglu = silu(gate) · up,
    //            gate = ffnNorm(h) @ Wgateᵀ, up = ffnNorm(h) @ Wupᵀ
    // d(residualAttn) starts as dout (dx already holds it); the MLP branch adds to it below.
    s.dswiglu.update(repeating: 0, count: T * F)
    w.down.withUnsafeBufferPointer { wd in
        if let g = grads {
            g.down.withUnsafeMutableBufferPointer { gd in
                matmulBackward(dinp: s.dswiglu, dweight: gd.baseAddress!, dbias: nil, dout: dx,
                               inp: acts.swiglu, weight: wd.baseAddress!, T: T, C: F, OC: C)
            }
        } else {
            matmulBackward(dinp: s.dswiglu, dweight: nil, dbias: nil, dout: dx,
                           inp: acts.swiglu, weight: wd.baseAddress!, T: T, C: F, OC: C)
        }
    }
    s.dgate.update(repeating: 0, count: T * F)
    s.dup.update(repeating: 0, count: T * F)
    swigluBackward(dgate: s.dgate, dup: s.dup, dout: s.dswiglu, gate: acts.gate, up: acts.up, N: T * F)
    s.dnorm.update(repeating: 0, count: T * C)
    linearBackward(dinp: s.dnorm, grad: \BlockGradients.gate, grads: grads, dout: s.dgate,
                   inp: acts.ffnNormOut, weight: w.gate, T: T, C: C, OC: F)
    linearBackward(dinp: s.dnorm, grad: \BlockGradients.up, grads: grads, dout: s.dup,
                   inp: acts.ffnNormOut, weight: w.up, T: T, C: C, OC: F)
    // ffnNormOut = rmsnorm(residualAttn) · ffnNorm  →  dx (= d residualAttn) +=
    w.ffnNorm.withUnsafeBufferPointer { nw in
        rmsnormBackward(dinp: dx, dweight: nil, dout: s.dnorm, inp: acts.residualAttn,
                        weight: nw.baseAddress!, rstd: acts.ffnNormRstd, T: T, C: C)
    }

    // ---- Attention:  h = x + attnOut @ Woᵀ
    s.dattn.update(repeating: 0, count: T * QD)
    linearBackward(dinp: s.dattn, grad: \BlockGradients.o, grads: grads, dout: dx,
                   inp: acts.attnOut, weight: w.o, T: T, C: QD, OC: C)
    // attnOut = softmax(q kᵀ / sqrt(hd)) v, causal, GQA
    s.dq.update(repeating: 0, count: T * QD)
    s.dk.update(repeating: 0, count: T * KVD)
    s.dv.update(repeating: 0, count: T * KVD)
    attentionBackward(dq: s.dq, dk: s.dk, dv: s.dv, dout: s.dattn, q: acts.q, k: acts.k, v: acts.v,
                      att: acts.att, batch: batch, nHeads: config.numHeads,
                      nKVHeads: config.numKVHeads, headDim: config.headDim)
    // q = rope(attnNormOut @ Wqᵀ), k = rope(attnNormOut @ Wkᵀ): undo the rotation
    let positions = batch.positions
    positions.withUnsafeBufferPointer { pos in
        ropeBackward(s.dq, positions: pos.baseAddress!, T: T, nHeads: config.numHeads, table: rope)
        ropeBackward(s.dk, positions: pos.baseAddress!, T: T, nHeads: config.numKVHeads, table: rope)
    }
    s.dnorm.update(repeating: 0, count: T * C)
    linearBackward(dinp: s.dnorm, grad: \BlockGradients.q, grads: grads, dout: s.dq,
                   inp: acts.attnNormOut, weight: w.q, T: T, C: C, OC: QD)
    linearBackward(dinp: s.dnorm, grad: \BlockGradients.k, grads: grads, dout: s.dk,
                   inp: acts.attnNormOut, weight: w.k, T: T, C: C, OC: KVD)
    linearBackward(dinp: s.dnorm, grad: \BlockGradients.v, grads: grads, dout: s.dv,
                   inp: acts.attnNormOut, weight: w.v, T: T, C: C, OC: KVD)
    // attnNormOut = rmsnorm(x) · attnNorm  →  dx (= d input) +=
    w.attnNorm.withUnsafeBufferPointer { nw in
        rmsnormBackward(dinp: dx, dweight: nil, dout: s.dnorm, inp: acts.input,
                        weight: nw.baseAddress!, rstd: acts.attnNormRstd, T: T, C: C)
    }
}

/// dinp += dout @ W; grads[keyPath] += doutᵀ @ inp when grads is non-nil.
@inline(__always)
private func linearBackward(dinp: UnsafeMutablePointer<Float>,
                            grad kp: ReferenceWritableKeyPath<BlockGradients, [Float]>,
                            grads: BlockGradients?, dout: UnsafePointer<Float>,
                            inp: UnsafePointer<Float>, weight: [Float], T: Int, C: Int, OC: Int) {
    weight.withUnsafeBufferPointer { wp in
        if let g = grads {
            g[keyPath: kp].withUnsafeMutableBufferPointer { gp in
                matmulBackward(dinp: dinp, dweight: gp.baseAddress!, dbias: nil, dout: dout,
                               inp: inp, weight: wp.baseAddress!, T: T, C: C, OC: OC)
            }
        } else {
            matmulBackward(dinp: dinp, dweight: nil, dbias: nil, dout: dout,
                           inp: inp, weight: wp.baseAddress!, T: T, C: C, OC: OC)
        }
    }
}

// MARK: - Final norm and output head, last position only

/// What the head forward saves: the last row of each sequence, its final-norm rstd and output,
/// and the logits. Sized for up to `capacity` sequences.
public final class HeadActivations {
    public let capacity: Int, hiddenSize: Int, vocabSize: Int
    public internal(set) var count = 0
    /// (B, C) hidden state leaving the last block, at each sequence's last row
    public let hidden: UnsafeMutablePointer<Float>
    /// (B) final RMSNorm rstd
    public let rstd: UnsafeMutablePointer<Float>
    /// (B, C) final RMSNorm output
    public let normed: UnsafeMutablePointer<Float>
    /// (B, V) logits
    public let logits: UnsafeMutablePointer<Float>

    public init(config: ModelConfig, capacity: Int) {
        self.capacity = max(capacity, 1); hiddenSize = config.hiddenSize; vocabSize = config.vocabSize
        hidden = .allocate(capacity: self.capacity * hiddenSize)
        rstd = .allocate(capacity: self.capacity)
        normed = .allocate(capacity: self.capacity * hiddenSize)
        logits = .allocate(capacity: self.capacity * vocabSize)
    }
    deinit { hidden.deallocate(); rstd.deallocate(); normed.deallocate(); logits.deallocate() }

    /// The logits row of sequence b.
    public func logitsRow(_ b: Int) -> UnsafeMutablePointer<Float> { logits + b * vocabSize }
}

/// logits (B, V) = rmsnorm(hidden[lastRows]) · outNorm @ Wᵀ, W (V, C) the output head
/// (the token embedding when tied).
public func headForward(_ acts: HeadActivations, hidden: UnsafePointer<Float>, batch: PackedBatch,
                        outputNorm: [Float], outputWeight: UnsafePointer<Float>, eps: Float) {
    let B = batch.lengths.count, C = acts.hiddenSize, V = acts.vocabSize
    precondition(B <= acts.capacity, "head activations too small")
    for (b, row) in batch.lastRows.enumerated() {
        (acts.hidden + b * C).update(from: hidden + row * C, count: C)
    }
    acts.count = B
    outputNorm.withUnsafeBufferPointer { nw in
        rmsnormForward(acts.normed, acts.rstd, acts.hidden, nw.baseAddress!, T: B, C: C, eps: eps)
    }
    matmulForward(acts.logits, acts.normed, outputWeight, nil, T: B, C: C, OC: V)
}

/// dhidden (T, C) += the gradient reaching each sequence's last row from dlogits (B, V);
/// other rows receive nothing (the loss reads the last position only). `dnormed` is (B, C) scratch.
public func headBackward(dhidden: UnsafeMutablePointer<Float>, dlogits: UnsafePointer<Float>,
                         acts: HeadActivations, batch: PackedBatch, outputNorm: [Float],
                         outputWeight: UnsafePointer<Float>, scratch dnormed: UnsafeMutablePointer<Float>,
                         dlast: UnsafeMutablePointer<Float>) {
    let B = acts.count, C = acts.hiddenSize, V = acts.vocabSize
    // logits = normed @ Wᵀ  (W frozen)
    dnormed.update(repeating: 0, count: B * C)
    matmulBackward(dinp: dnormed, dweight: nil, dbias: nil, dout: dlogits, inp: acts.normed,
                   weight: outputWeight, T: B, C: C, OC: V)
    // normed = rmsnorm(hidden) · outNorm
    dlast.update(repeating: 0, count: B * C)
    outputNorm.withUnsafeBufferPointer { nw in
        rmsnormBackward(dinp: dlast, dweight: nil, dout: dnormed, inp: acts.hidden,
                        weight: nw.baseAddress!, rstd: acts.rstd, T: B, C: C)
    }
    for (b, row) in batch.lastRows.enumerated() {
        let d = dhidden + row * C, s = dlast + b * C
        for c in 0..<C { d[c] += s[c] }
    }
}
