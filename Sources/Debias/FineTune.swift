import Foundation
import LlamaModel

// `create`'s training stage: from evaluation prompts (Formats/eval-data.md) to trained block
// weights. Locate (unless a block is given), build the training examples and batches, record
// what the base model says (for the balance objective's reference terms), train.
//
// Batches. The paper's loss reads bias prompts only: a batch is `batchSize` of them, an epoch
// one pass over them. The balance objective adds, to every batch of `batchSize` bias prompts,
// `hintPerBatch` hint prompts and `neutralPerBatch` neutral prompts, drawn in turn from their
// own shuffled lists (an epoch is still one pass over the bias prompts). The loss is the mean
// over the whole batch of each example's term, so a term's weight is relative to that mix.

/// Everything that decides a training run (stored in the patch).
public struct DebiasTrainingOptions: Codable, Sendable, Equatable {
    public var loss: ObjectiveKind = .balance
    public var weights = ObjectiveWeights()
    public var locator: Locator = .contrast
    /// Train this block instead of the located one (ranking is still computed and stored).
    public var block: Int?
    /// FPFT baseline: train every block's attention and MLP weights.
    public var allBlocks = false
    public var learningRate = 1e-5
    public var epochs = 2
    public var batchSize = 32
    public var seed: UInt64 = 0
    public var hintPerBatch = 16
    public var neutralPerBatch = 8
    /// Use at most this many training bias prompts (a deterministic, seed-independent sample
    /// spread over professions and templates), nil = all.
    public var maxBiasPrompts: Int?
    /// At most this many hint prompts (same rule).
    public var maxHintPrompts: Int?
    /// Locate on at most this many bias prompts (evenly spaced), nil = all.
    public var locatePrompts: Int?

    public init() {}
}

public enum DebiasTrainingError: Error, CustomStringConvertible, Equatable {
    case noTrainingPrompts(kind: String)
    case blockOutOfRange(Int, numLayers: Int)

    public var description: String {
        switch self {
        case .noTrainingPrompts(let k): return "no \(k) prompts in the training split: the data needs \"split\": \"train\" lines of kind \(k)"
        case .blockOutOfRange(let b, let n): return "--block \(b) does not exist: the model has blocks 0..\(n - 1)"
        }
    }
}

/// Progress events of a training run (for the CLI's stderr lines).
public enum DebiasTrainingEvent {
    case stage(String)
    case step(FineTuneProgress)
    /// The work of the stages ahead, as soon as it is known (before locating; after the block
    /// and the batches are known), for an ETA: see `WorkEstimate`.
    case workAhead([WorkEstimate])
}

/// One stage's work in forward-pass units: `tokenBlocks` = Σ tokens × blocks they go through.
/// A forward pass over T tokens of an N-block model is T·N units; a training step over T tokens
/// from block L counts `trainingStepFactor` · T · (N − L) (a forward that saves activations, an
/// activations-only backward of the same FLOPs, the trained block's weight gradients).
public struct WorkEstimate: Sendable, Equatable {
    public var stage: String
    public var tokenBlocks: Double
    /// Measured on the 7B-shaped checkpoint: 2.0–2.4 × the scoring forward's cost per token·block
    /// (BENCHMARKS.md, create).
    public static let trainingStepFactor = 2.3
}

public struct DebiasTrainingResult {
    public var ranking: BlockRanking?
    /// Trained copies, in block order (one for LFTF, every block for FPFT).
    public var trained: [BlockWeights]
    public var stepLosses: [Double]
    public var counts: [String: Int]
    /// Seconds per stage.
    public var timings: [(String, Double)]
}

/// Evenly spaced selection of `k` of `n` indices (deterministic, covers the whole list).
func evenlySpaced(_ n: Int, _ k: Int?) -> [Int] {
    guard let k, k < n else { return Array(0..<n) }
    guard k > 0 else { return [] }
    return (0..<k).map { $0 * n / k }
}

public enum DebiasTraining {
    /// Runs locate + fine-tune on `model` (its trained blocks stay installed as overrides).
    /// `prompts` are the training prompts (any split filtering done by the caller);
    /// `encode` turns text into token ids (BOS per the model).
    public static func run(model: LlamaModel, prompts: [EvalPrompt], encode: (String) throws -> [Int],
                           he: Int, she: Int, options o: DebiasTrainingOptions,
                           events: (DebiasTrainingEvent) -> Bool) throws -> DebiasTrainingResult {
        var timings: [(String, Double)] = []
        var clock = Date()
        func lap(_ name: String) { timings.append((name, Date().timeIntervalSince(clock))); clock = Date() }
        let nL = model.config.numLayers
        if let b = o.block, b < 0 || b >= nL { throw DebiasTrainingError.blockOutOfRange(b, numLayers: nL) }

        let biasAll = prompts.filter { $0.kind == .bias }
        let hintAll = prompts.filter { $0.kind == .hint }
        let neutralAll = prompts.filter { $0.kind == .neutral }
        guard !biasAll.isEmpty else { throw DebiasTrainingError.noTrainingPrompts(kind: "bias") }
        _ = events(.stage("tokenize"))
        let biasTok = try biasAll.map { try encode($0.prompt) }
        let neutralTok = try neutralAll.map { try encode($0.prompt) }
        let hintTok = try hintAll.map { try encode($0.prompt) }
        lap("tokenize")

        // Locate
        var ranking: BlockRanking?
        if o.locator == .contrast && neutralTok.isEmpty { throw DebiasTrainingError.noTrainingPrompts(kind: "neutral") }
        let locIdx = evenlySpaced(biasTok.count, o.locatePrompts)
        let locTokens = locIdx.reduce(0) { $0 + biasTok[$1].count } + (o.locator == .contrast ? neutralTok.reduce(0) { $0 + $1.count } : 0)
        _ = events(.workAhead([WorkEstimate(stage: "locate", tokenBlocks: Double(locTokens * nL))]))
        _ = events(.stage("locate (\(o.locator.rawValue))"))
        ranking = try model.locate(biasPrompts: locIdx.map { biasTok[$0] }, neutralPrompts: neutralTok, locator: o.locator)
        lap("locate")
        let blocks = o.allBlocks ? Array(0..<nL) : [o.block ?? ranking!.top]

        // Examples
        let bIdx = evenlySpaced(biasTok.count, o.maxBiasPrompts)
        var examples: [[Int]] = bIdx.map { biasTok[$0] }
        var roles: [ExampleRole] = Array(repeating: .bias, count: examples.count)
        var hintExamples: [Int] = [], neutralExamples: [Int] = []
        if o.loss == .balance {
            if o.hintPerBatch > 0 {
                guard !hintTok.isEmpty else { throw DebiasTrainingError.noTrainingPrompts(kind: "hint") }
                for i in evenlySpaced(hintTok.count, o.maxHintPrompts) {
                    hintExamples.append(examples.count); examples.append(hintTok[i]); roles.append(.hint)
                }
            }
            if o.neutralPerBatch > 0 {
                guard !neutralTok.isEmpty else { throw DebiasTrainingError.noTrainingPrompts(kind: "neutral") }
                for t in neutralTok { neutralExamples.append(examples.count); examples.append(t); roles.append(.neutral) }
            }
        }
        let biasExamples = Array(0..<bIdx.count)
        let settings = FineTuneSettings(blocks: blocks, learningRate: o.learningRate, epochs: o.epochs,
                                        batchSize: o.batchSize, seed: o.seed)
        let tuner = try FineTuner(model: model, examples: examples, settings: settings)
        let objective = DebiasObjective(kind: o.loss, weights: o.weights, heID: he, sheID: she, roles: roles)

        // The batches
        var rng = ExampleOrderRNG(seed: o.seed)
        var plan: [(epoch: Int, indices: [Int])] = []
        var hintOrder = hintExamples, neutralOrder = neutralExamples
        rng.shuffle(&hintOrder); rng.shuffle(&neutralOrder)
        var hi = 0, ni = 0
        for e in 0..<o.epochs {
            var order = biasExamples
            rng.shuffle(&order)
            var s = 0
            while s < order.count {
                let t = min(s + o.batchSize, order.count)
                var batch = Array(order[s..<t])
                if !hintOrder.isEmpty {
                    for _ in 0..<o.hintPerBatch {
                        if hi == hintOrder.count { hi = 0; rng.shuffle(&hintOrder) }
                        batch.append(hintOrder[hi]); hi += 1
                    }
                }
                if !neutralOrder.isEmpty {
                    for _ in 0..<o.neutralPerBatch {
                        if ni == neutralOrder.count { ni = 0; rng.shuffle(&neutralOrder) }
                        batch.append(neutralOrder[ni]); ni += 1
                    }
                }
                plan.append((e, batch))
                s = t
            }
        }

        // (only the examples the plan visits: hint and neutral lists are cycled, not exhausted)
        var visited = Set<Int>()
        for p in plan { visited.formUnion(p.indices) }
        let needBase = examples.indices.filter { visited.contains($0) && objective.needsBase($0) }
        let L = tuner.firstBlock
        let tokens = { (idx: [Int]) in idx.reduce(0) { $0 + examples[$1].count } }
        _ = events(.workAhead([
            WorkEstimate(stage: "cache prefix", tokenBlocks: Double(tokens(Array(examples.indices)) * L)),
            WorkEstimate(stage: "base references", tokenBlocks: Double(tokens(needBase) * (nL - L))),
            WorkEstimate(stage: "train", tokenBlocks: WorkEstimate.trainingStepFactor * Double(plan.reduce(0) { $0 + tokens($1.indices) } * (nL - L))),
        ]))

        // Frozen prefix, then the base model's references
        _ = events(.stage("cache hidden states entering block \(tuner.firstBlock) (\(examples.count) prompts)"))
        try tuner.cachePrefix()
        lap("cache prefix")
        if !needBase.isEmpty {
            _ = events(.stage("base references (\(needBase.count) prompts)"))
            try tuner.logits(for: needBase) { i, z in objective.setBase(example: i, logits: z, vocabSize: model.config.vocabSize) }
            lap("base references")
        }

        _ = events(.stage("fine-tune blocks \(blocks.count == 1 ? String(blocks[0]) : "0..\(nL - 1)") (\(plan.count) steps)"))
        try tuner.train(objective: objective, plan: plan) { p in events(.step(p)) }
        lap("train")
        return DebiasTrainingResult(ranking: ranking, trained: tuner.trained, stepLosses: tuner.stepLosses,
                                    counts: ["bias": bIdx.count, "hint": hintExamples.count, "neutral": neutralExamples.count,
                                             "steps": plan.count, "locate_bias": locIdx.count,
                                             "locate_neutral": o.locator == .contrast ? neutralTok.count : 0],
                                    timings: timings)
    }
}
