import Foundation
import ModelFormats
import TensorMath

// Fine-tuning one block (LFTF) or every block's attention/MLP weights (FPFT) with Adam.
//
// Only the trained blocks change, so the residual stream entering the first of them is a
// constant of the run: it is computed once for every training example ("the frozen prefix")
// and cached. Each step then runs blocks L..<N forward saving activations, reads the loss at
// each sequence's last position, and runs backward through the head, the blocks after L
// (activations only, unless they are trained too) and into L's weight gradients.
//
// Determinism: the example order comes from a SplitMix64 stream (ExampleOrderRNG) seeded by `seed`; every
// reduction has a fixed order; so the same model, examples, objective and settings give the
// same weights bit for bit (for a fixed BLAS thread count).

/// Settings of a fine-tune run (all of them go into the patch).
public struct FineTuneSettings: Codable, Sendable, Equatable {
    /// Blocks whose q, k, v, o, gate, up, down are trained (one for LFTF, all for FPFT).
    public var blocks: [Int]
    public var learningRate: Double
    public var epochs: Int
    public var batchSize: Int
    public var seed: UInt64
    public var beta1: Double = 0.9
    public var beta2: Double = 0.999
    public var adamEps: Double = 1e-8
    /// Stop after this many optimizer steps (nil: epochs · ⌈n / batch⌉).
    public var maxSteps: Int?

    public init(blocks: [Int], learningRate: Double = 1e-5, epochs: Int = 2, batchSize: Int = 32,
                seed: UInt64 = 0, maxSteps: Int? = nil) {
        self.blocks = blocks; self.learningRate = learningRate; self.epochs = epochs
        self.batchSize = batchSize; self.seed = seed; self.maxSteps = maxSteps
    }
}

/// What the loop reports after every step. Return false from the callback to stop early.
public struct FineTuneProgress: Sendable {
    public var epoch: Int
    public var step: Int
    public var totalSteps: Int
    /// Mean loss over the step's batch (before the update).
    public var loss: Double
    public var elapsed: Double
    public var eta: Double
}

public enum TrainingError: Error, CustomStringConvertible, Equatable {
    case noBlocks
    case blockOutOfRange(Int, numLayers: Int)
    case noExamples
    case emptyExample(index: Int)
    case badSetting(String)

    public var description: String {
        switch self {
        case .noBlocks: return "no block to train: pass --block N or let locate choose one"
        case .blockOutOfRange(let b, let n): return "block \(b) does not exist: the model has blocks 0..\(n - 1)"
        case .noExamples: return "no training examples: the training split of the data is empty"
        case .emptyExample(let i): return "training example \(i) has no tokens"
        case .badSetting(let s): return "bad fine-tune setting: \(s)"
        }
    }
}

/// SplitMix64 (Steele et al. 2014): a small, well-mixed, fully specified generator (so runs reproduce across platforms).
public struct ExampleOrderRNG: RandomNumberGenerator {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Fisher–Yates with this generator's own bounded draws (not the stdlib's, which may change).
    public mutating func shuffle(_ a: inout [Int]) {
        guard a.count > 1 else { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) {
            let j = Int(next() % UInt64(i + 1))
            a.swapAt(i, j)
        }
    }
}

/// A fine-tune of some blocks of `model`. The trained blocks are installed in the model as
/// overrides for the life of the run (the model then computes with them); `restoreBase()`
/// removes them.
public final class FineTuner {
    public let model: LlamaModel
    public let settings: FineTuneSettings
    public let examples: [[Int]]
    /// The first trained block: the cache holds the residual stream entering it.
    public let firstBlock: Int
    /// The trained copies, in `settings.blocks` order.
    public private(set) var trained: [BlockWeights] = []
    /// (Σ len, C) per example, rows of example i at `cacheOffsets[i]`.
    var cache: [Float] = []
    var cacheOffsets: [Int] = []
    /// Mean loss of every step so far.
    public private(set) var stepLosses: [Double] = []

    public init(model: LlamaModel, examples: [[Int]], settings: FineTuneSettings) throws {
        let n = model.config.numLayers
        guard !settings.blocks.isEmpty else { throw TrainingError.noBlocks }
        for b in settings.blocks where b < 0 || b >= n { throw TrainingError.blockOutOfRange(b, numLayers: n) }
        guard Set(settings.blocks).count == settings.blocks.count else { throw TrainingError.badSetting("a block is listed twice") }
        guard !examples.isEmpty else { throw TrainingError.noExamples }
        for (i, e) in examples.enumerated() where e.isEmpty { throw TrainingError.emptyExample(index: i) }
        guard settings.learningRate > 0, settings.learningRate.isFinite else { throw TrainingError.badSetting("learning rate must be positive") }
        guard settings.epochs >= 1 else { throw TrainingError.badSetting("epochs must be at least 1") }
        guard settings.batchSize >= 1 else { throw TrainingError.badSetting("batch size must be at least 1") }
        self.model = model
        self.settings = settings
        self.examples = examples
        self.firstBlock = settings.blocks.min()!
    }

    // MARK: - Frozen prefix

    /// Runs blocks 0..<firstBlock once over every example and keeps the result.
    /// Call before any change to the model's weights.
    public func cachePrefix() throws {
        let C = model.config.hiddenSize
        var offsets = [Int](), total = 0
        for e in examples { offsets.append(total); total += e.count }
        cache = [Float](repeating: 0, count: total * C)
        cacheOffsets = offsets
        let chunkTokens = max(model.options.maxBatchTokens, 1)
        var start = 0
        try cache.withUnsafeMutableBufferPointer { cb in
            while start < examples.count {
                var end = start, t = 0
                while end < examples.count && (end == start || t + examples[end].count <= chunkTokens) {
                    t += examples[end].count; end += 1
                }
                let batch = PackedBatch(lengths: examples[start..<end].map(\.count))
                let x = cb.baseAddress! + offsets[start] * C
                try model.embed(Array(examples[start..<end].joined()), into: x)
                if firstBlock > 0 { try model.runBlocks(0..<firstBlock, x: x, batch: batch) }
                start = end
            }
        }
    }

    /// Installs trainable copies of the trained blocks in the model.
    public func installTrainableCopies() throws {
        trained = try settings.blocks.map { try model.trainableCopy(of: $0) }
        for w in trained { try model.overrideBlock(w.layer, with: w) }
    }

    /// Removes the trained blocks from the model (the checkpoint's weights are used again).
    public func restoreBase() throws {
        for b in settings.blocks { try model.overrideBlock(b, with: nil) }
    }

    /// Last-token logits (V) of examples `indices` under the model's current weights, from the cache:
    /// body(example, logits).
    public func logits(for indices: [Int], body: (Int, UnsafePointer<Float>) throws -> Void) throws {
        precondition(!cache.isEmpty, "cachePrefix() first")
        let C = model.config.hiddenSize, V = model.config.vocabSize
        let chunkTokens = max(model.options.maxBatchTokens, 1)
        var start = 0
        while start < indices.count {
            var end = start, t = 0
            while end < indices.count && (end == start || t + examples[indices[end]].count <= chunkTokens) {
                t += examples[indices[end]].count; end += 1
            }
            let sel = Array(indices[start..<end])
            let batch = PackedBatch(lengths: sel.map { examples[$0].count })
            var x = gather(sel, batch: batch)
            try x.withUnsafeMutableBufferPointer { xb in
                try model.runBlocks(firstBlock..<model.config.numLayers, x: xb.baseAddress!, batch: batch)
            }
            let logits = x.withUnsafeBufferPointer { model.lastTokenLogits(x: $0.baseAddress!, batch: batch) }
            try logits.withUnsafeBufferPointer { lp in
                for (j, i) in sel.enumerated() { try body(i, lp.baseAddress! + j * V) }
            }
            _ = C
            start = end
        }
    }

    /// x (T, C) for a batch of examples, from the cache.
    func gather(_ sel: [Int], batch: PackedBatch) -> [Float] {
        let C = model.config.hiddenSize
        var x = [Float](repeating: 0, count: batch.totalTokens * C)
        cache.withUnsafeBufferPointer { cb in
            x.withUnsafeMutableBufferPointer { xb in
                for (j, i) in sel.enumerated() {
                    (xb.baseAddress! + batch.offsets[j] * C).update(from: cb.baseAddress! + cacheOffsets[i] * C,
                                                                     count: examples[i].count * C)
                }
            }
        }
        return x
    }

    // MARK: - The loop

    /// The batches of every epoch, in order (deterministic in `settings.seed`).
    public func schedule() -> [(epoch: Int, indices: [Int])] {
        var rng = ExampleOrderRNG(seed: settings.seed)
        var out: [(Int, [Int])] = []
        for e in 0..<settings.epochs {
            var order = Array(examples.indices)
            rng.shuffle(&order)
            var s = 0
            while s < order.count {
                let t = min(s + settings.batchSize, order.count)
                out.append((e, Array(order[s..<t])))
                s = t
            }
        }
        if let m = settings.maxSteps, m < out.count { out = Array(out.prefix(m)) }
        return out
    }

    /// Buffers of one step, sized for the largest batch of a plan.
    final class Workspace {
        let acts: [BlockActivations]
        let scratch: BackwardScratch
        let head: HeadActivations
        let grads: [BlockGradients]
        let gradIndex: [Int: Int]
        var dlogits: [Float], dx: [Float], dnormed: [Float], dlast: [Float]
        let rope: RopeTable

        init(tuner: FineTuner, batches: [[Int]]) {
            let m = tuner.model, cfg = m.config
            let C = cfg.hiddenSize, V = cfg.vocabSize, N = cfg.numLayers
            let ex = tuner.examples
            let maxTokens = batches.map { $0.reduce(0) { $0 + ex[$1].count } }.max() ?? 1
            let maxAtt = batches.map { PackedBatch(lengths: $0.map { ex[$0].count }).attentionScratchCount(nHeads: cfg.numHeads) }.max() ?? 1
            let maxSeqs = batches.map(\.count).max() ?? 1
            let maxLen = batches.map { $0.map { ex[$0].count }.max() ?? 1 }.max() ?? 1
            acts = (tuner.firstBlock..<N).map { _ in BlockActivations(config: cfg, tokenCapacity: maxTokens, attentionCapacity: maxAtt) }
            scratch = BackwardScratch(config: cfg, tokenCapacity: maxTokens)
            head = HeadActivations(config: cfg, capacity: maxSeqs)
            grads = tuner.trained.map { BlockGradients(like: $0) }
            gradIndex = Dictionary(uniqueKeysWithValues: tuner.trained.enumerated().map { ($1.layer, $0) })
            dlogits = [Float](repeating: 0, count: maxSeqs * V)
            dx = [Float](repeating: 0, count: maxTokens * C)
            dnormed = [Float](repeating: 0, count: maxSeqs * C)
            dlast = [Float](repeating: 0, count: maxSeqs * C)
            rope = m.ropeTable(forLength: maxLen)
        }
    }

    /// Mean loss over `indices` under the current weights, and its gradient w.r.t. the trained
    /// blocks' seven weights (returned in `settings.blocks` order; valid until the next call).
    /// The cache and the trainable copies must be in place.
    public func lossAndGradients(_ indices: [Int], objective: LastTokenObjective) throws -> (loss: Double, grads: [BlockGradients]) {
        if cache.isEmpty { try cachePrefix() }
        if trained.isEmpty { try installTrainableCopies() }
        let ws = Workspace(tuner: self, batches: [indices])
        let loss = try step(indices, objective: objective, ws: ws)
        return (loss, ws.grads)
    }

    /// Forward L..<N saving activations, the loss at each last position, backward into ws.grads.
    func step(_ indices: [Int], objective: LastTokenObjective, ws: Workspace) throws -> Double {
        let cfg = model.config
        let C = cfg.hiddenSize, V = cfg.vocabSize, N = cfg.numLayers, L = firstBlock
        let batch = PackedBatch(lengths: indices.map { examples[$0].count })
        let B = indices.count, T = batch.totalTokens
        let eps = Float(cfg.rmsNormEps)
        let head = ws.head
        // forward: blocks L..<N over the cached prefix, saving activations
        var x = gather(indices, batch: batch)
        try x.withUnsafeMutableBufferPointer { xb in
            for l in L..<N { try model.blockForward(layer: l, x: xb.baseAddress!, batch: batch, acts: ws.acts[l - L]) }
            model.outputWeight.withUnsafeBufferPointer { ow in
                headForward(head, hidden: xb.baseAddress!, batch: batch, outputNorm: model.outputNorm,
                            outputWeight: ow.baseAddress!, eps: eps)
            }
        }
        // loss at the last position; dL/dlogits scaled by 1/B (the batch mean)
        var loss = 0.0
        ws.dlogits.withUnsafeMutableBufferPointer { dl in
            let s = 1 / Float(B)
            for (j, i) in indices.enumerated() {
                let d = dl.baseAddress! + j * V
                loss += objective.evaluate(logits: head.logitsRow(j), vocabSize: V, example: i, dlogits: d)
                for v in 0..<V { d[v] *= s }
            }
        }
        loss /= Double(B)
        // backward: head, then blocks N-1 … L (activations only unless trained)
        for g in ws.grads { g.zero() }
        try ws.dx.withUnsafeMutableBufferPointer { dxb in
            let d = dxb.baseAddress!
            d.update(repeating: 0, count: T * C)
            ws.dlogits.withUnsafeBufferPointer { dl in
                ws.dnormed.withUnsafeMutableBufferPointer { dn in
                    ws.dlast.withUnsafeMutableBufferPointer { dla in
                        model.outputWeight.withUnsafeBufferPointer { ow in
                            headBackward(dhidden: d, dlogits: dl.baseAddress!, acts: head, batch: batch,
                                         outputNorm: model.outputNorm, outputWeight: ow.baseAddress!,
                                         scratch: dn.baseAddress!, dlast: dla.baseAddress!)
                        }
                    }
                }
            }
            for l in stride(from: N - 1, through: L, by: -1) {
                let g = ws.gradIndex[l].map { ws.grads[$0] }
                let w = try model.blockWeights(l)
                blockBackward(d, grads: g, acts: ws.acts[l - L], weights: w, config: cfg, rope: ws.rope, scratch: ws.scratch)
            }
        }
        return loss
    }

    /// Trains: cache (if not done), install copies (if not done), then Adam over the schedule.
    /// `plan` replaces `schedule()` (a caller that composes its own batches).
    public func train(objective: LastTokenObjective, plan customPlan: [(epoch: Int, indices: [Int])]? = nil,
                      progress: (FineTuneProgress) -> Bool = { _ in true }) throws {
        if cache.isEmpty { try cachePrefix() }
        if trained.isEmpty { try installTrainableCopies() }
        let plan = customPlan ?? schedule()
        let ws = Workspace(tuner: self, batches: plan.map(\.indices))
        let lr = Float(settings.learningRate)
        var adams: [[Adam]] = trained.map { w in
            [w.q.count, w.k.count, w.v.count, w.o.count, w.gate.count, w.up.count, w.down.count].map {
                Adam(count: $0, lr: lr, beta1: Float(settings.beta1), beta2: Float(settings.beta2), eps: Float(settings.adamEps))
            }
        }
        let started = Date()
        for (stepIndex, st) in plan.enumerated() {
            let loss = try step(st.indices, objective: objective, ws: ws)
            stepLosses.append(loss)
            // Adam on the trained weights, in place: the model computes with them next step
            for (bi, w) in trained.enumerated() {
                let g = ws.grads[bi]
                adams[bi][0].step(&w.q, g.q); adams[bi][1].step(&w.k, g.k)
                adams[bi][2].step(&w.v, g.v); adams[bi][3].step(&w.o, g.o)
                adams[bi][4].step(&w.gate, g.gate); adams[bi][5].step(&w.up, g.up)
                adams[bi][6].step(&w.down, g.down)
            }
            let el = Date().timeIntervalSince(started)
            let eta = el / Double(stepIndex + 1) * Double(plan.count - stepIndex - 1)
            if !progress(FineTuneProgress(epoch: st.epoch, step: stepIndex + 1, totalSteps: plan.count,
                                          loss: loss, elapsed: el, eta: eta)) { break }
        }
    }
}

extension Adam {
    @inline(__always)
    mutating func step(_ params: inout [Float], _ grads: [Float]) {
        params.withUnsafeMutableBufferPointer { p in
            grads.withUnsafeBufferPointer { g in update(p.baseAddress!, grads: g.baseAddress!) }
        }
    }
}

extension LlamaModel {
    /// The RoPE table the engine uses, covering sequences of `length` tokens.
    func ropeTable(forLength length: Int) -> RopeTable {
        ensureRope(length: length)
        return rope
    }
}
