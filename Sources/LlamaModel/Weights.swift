import ModelFormats

// One block's weights at fp32, and how they come out of a checkpoint.
//
// Shapes (HF order, row-major, out = inp @ Wᵀ), with C = hiddenSize, QD = numHeads · headDim,
// KVD = numKVHeads · headDim, F = intermediateSize:
//   attnNorm (C), q (QD, C), k (KVD, C), v (KVD, C), o (C, QD),
//   qBias (QD), kBias (KVD), vBias (KVD) — Qwen2 only,
//   ffnNorm (C), gate (F, C), up (F, C), down (C, F).
// GGUF llama files store q and k with rows permuted for adjacent-pair RoPE; the engine uses
// them as stored and picks the RoPE pairing from `ModelConfig.ropeStyle`.

/// One transformer block's weights at fp32. A class so that a fine-tune can change the
/// values in place (`weights.q.withUnsafeMutableBufferPointer { ... }`) and re-run the forward
/// pass after `LlamaModel.overrideBlock(_:with:)`, without copies.
public final class BlockWeights {
    public let layer: Int
    /// (C)
    public var attnNorm: [Float]
    /// (QD, C)
    public var q: [Float]
    /// (KVD, C)
    public var k: [Float]
    /// (KVD, C)
    public var v: [Float]
    /// (C, QD)
    public var o: [Float]
    /// (QD), (KVD), (KVD) when the architecture has q/k/v biases (Qwen2), else nil.
    public var qBias: [Float]?
    public var kBias: [Float]?
    public var vBias: [Float]?
    /// (C)
    public var ffnNorm: [Float]
    /// (F, C)
    public var gate: [Float]
    /// (F, C)
    public var up: [Float]
    /// (C, F)
    public var down: [Float]

    public init(layer: Int, attnNorm: [Float], q: [Float], k: [Float], v: [Float], o: [Float],
                qBias: [Float]? = nil, kBias: [Float]? = nil, vBias: [Float]? = nil,
                ffnNorm: [Float], gate: [Float], up: [Float], down: [Float]) {
        self.layer = layer
        self.attnNorm = attnNorm; self.q = q; self.k = k; self.v = v; self.o = o
        self.qBias = qBias; self.kBias = kBias; self.vBias = vBias
        self.ffnNorm = ffnNorm; self.gate = gate; self.up = up; self.down = down
    }

    /// A deep copy (arrays are values: the copy shares nothing mutable with `self`).
    public func copy() -> BlockWeights {
        BlockWeights(layer: layer, attnNorm: attnNorm, q: q, k: k, v: v, o: o,
                     qBias: qBias, kBias: kBias, vBias: vBias,
                     ffnNorm: ffnNorm, gate: gate, up: up, down: down)
    }

    /// The weight for a role of this block (nil for roles of other blocks or absent biases).
    public func weight(for role: TensorRole) -> [Float]? {
        guard role.block == layer else { return nil }
        switch role {
        case .attnNorm: return attnNorm
        case .ffnNorm: return ffnNorm
        case .q: return q
        case .k: return k
        case .v: return v
        case .o: return o
        case .qBias: return qBias
        case .kBias: return kBias
        case .vBias: return vBias
        case .gate: return gate
        case .up: return up
        case .down: return down
        default: return nil
        }
    }

    /// Replace the weight for a role of this block; the new value must have the old count.
    public func setWeight(_ values: [Float], for role: TensorRole) throws {
        guard role.block == layer, let old = weight(for: role) else {
            throw LlamaModelError.noSuchWeight("\(role) in block \(layer)")
        }
        guard old.count == values.count else {
            throw LlamaModelError.badShape(name: "\(role)", expected: [old.count], found: [values.count])
        }
        switch role {
        case .attnNorm: attnNorm = values
        case .ffnNorm: ffnNorm = values
        case .q: q = values
        case .k: k = values
        case .v: v = values
        case .o: o = values
        case .qBias: qBias = values
        case .kBias: kBias = values
        case .vBias: vBias = values
        case .gate: gate = values
        case .up: up = values
        case .down: down = values
        default: break
        }
    }

    /// Floats held.
    public var floatCount: Int {
        attnNorm.count + q.count + k.count + v.count + o.count + (qBias?.count ?? 0)
            + (kBias?.count ?? 0) + (vBias?.count ?? 0) + ffnNorm.count + gate.count + up.count + down.count
    }
}

// MARK: - Reading from a checkpoint

extension ModelConfig {
    var qDim: Int { numHeads * headDim }
    var kvDim: Int { numKVHeads * headDim }

    /// fp32 floats of one block's weights.
    var blockFloatCount: Int {
        let C = hiddenSize, F = intermediateSize
        return 2 * C + qDim * C + 2 * kvDim * C + C * qDim + 3 * F * C
            + (attentionBias ? qDim + 2 * kvDim : 0)
    }
}

/// Reads a tensor by role and checks its element count against the expected shape.
/// Accepts a shape of the same element count (a 1-D norm may be stored as (1, C)).
func readTensor(_ checkpoint: any Checkpoint, _ role: TensorRole, shape: [Int]) throws -> [Float] {
    let name = checkpoint.name(for: role)
    guard let info = checkpoint.tensorInfo(named: name) else { throw LlamaModelError.missingTensor(name) }
    let expected = shape.reduce(1, *)
    guard info.elementCount == expected, info.shape.count <= 2 || info.shape.reduce(1, *) == expected else {
        throw LlamaModelError.badShape(name: name, expected: shape, found: info.shape)
    }
    // A 2-D weight must be (OC, C), not transposed.
    if shape.count == 2 && info.shape.count == 2 && info.shape != shape {
        throw LlamaModelError.badShape(name: name, expected: shape, found: info.shape)
    }
    let values: [Float]
    do { values = try checkpoint.floats(info) } catch {
        throw LlamaModelError.readFailed(name: name, underlying: "\(error)")
    }
    guard values.count == expected else {
        throw LlamaModelError.badShape(name: name, expected: shape, found: [values.count])
    }
    return values
}

func loadBlockWeights(_ checkpoint: any Checkpoint, layer i: Int) throws -> BlockWeights {
    let c = checkpoint.config
    let C = c.hiddenSize, F = c.intermediateSize, QD = c.qDim, KVD = c.kvDim
    var qb: [Float]?, kb: [Float]?, vb: [Float]?
    if c.attentionBias {
        qb = try readTensor(checkpoint, .qBias(i), shape: [QD])
        kb = try readTensor(checkpoint, .kBias(i), shape: [KVD])
        vb = try readTensor(checkpoint, .vBias(i), shape: [KVD])
    }
    return BlockWeights(
        layer: i,
        attnNorm: try readTensor(checkpoint, .attnNorm(i), shape: [C]),
        q: try readTensor(checkpoint, .q(i), shape: [QD, C]),
        k: try readTensor(checkpoint, .k(i), shape: [KVD, C]),
        v: try readTensor(checkpoint, .v(i), shape: [KVD, C]),
        o: try readTensor(checkpoint, .o(i), shape: [C, QD]),
        qBias: qb, kBias: kb, vBias: vb,
        ffnNorm: try readTensor(checkpoint, .ffnNorm(i), shape: [C]),
        gate: try readTensor(checkpoint, .gate(i), shape: [F, C]),
        up: try readTensor(checkpoint, .up(i), shape: [F, C]),
        down: try readTensor(checkpoint, .down(i), shape: [C, F]))
}
