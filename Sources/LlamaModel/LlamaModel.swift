import Foundation
import ModelFormats
import TensorMath

// A Llama-family model (Llama 1/2/3, SmolLM, Mistral, Qwen2) over any checkpoint, at fp32.
//
// What is held in memory (fp32):
//   - the token embedding (vocab, C), the final norm (C), and the output head (vocab, C)
//     (shared with the embedding when the head is tied, or absent from the file);
//   - block weights, cached for as many blocks as fit `Options.weightCacheBytes`, in layer
//     order; the rest are dequantized from the memory-mapped checkpoint each time a forward
//     pass reaches them, and dropped after. A 7B BF16 model (26 GB at fp32) therefore runs
//     with ~4 GB of cached blocks plus one block in flight.
//   - overrides: fp32 blocks a fine-tune installed with `overrideBlock(_:with:)`; they win over
//     the checkpoint's weights.
//
// Not implemented, by choice: sliding-window attention (Mistral v0.1's 4,096-token window only
// matters for longer prompts), yarn/longrope scaling (an error at load). A model is not
// thread-safe: one forward pass at a time (the BLAS and TensorMath ops use both cores).

/// Problems building or running the model. Each message names what to fix.
public enum LlamaModelError: Error, CustomStringConvertible, Equatable {
    /// The checkpoint has no tensor of that name.
    case missingTensor(String)
    /// A tensor's shape differs from what the config implies.
    case badShape(name: String, expected: [Int], found: [Int])
    /// Dequantizing or reading a tensor failed.
    case readFailed(name: String, underlying: String)
    /// The config is unusable (zero sizes, heads that do not divide, odd head dim, ...).
    case badConfig(String)
    /// The architecture is not a Llama-family decoder this engine runs.
    case unsupportedArchitecture(String)
    /// A prompt has no tokens.
    case emptyPrompt(index: Int)
    /// A token id outside the vocabulary.
    case tokenOutOfRange(id: Int, vocabSize: Int, prompt: Int)
    /// A block index outside 0..<numLayers.
    case layerOutOfRange(Int, numLayers: Int)
    /// A weight role that this block does not have.
    case noSuchWeight(String)
    /// A buffer handed to the engine is too small for the batch.
    case bufferTooSmall(String)

    public var description: String {
        switch self {
        case .missingTensor(let n):
            return "the checkpoint has no tensor '\(n)', which this architecture needs"
        case .badShape(let n, let e, let f):
            return "tensor '\(n)' has shape \(f), expected \(e) from the model config"
        case .readFailed(let n, let u):
            return "could not read tensor '\(n)': \(u)"
        case .badConfig(let s):
            return "unusable model config: \(s)"
        case .unsupportedArchitecture(let a):
            return "architecture '\(a)' is not supported (supported: llama, mistral, qwen2 and other Llama-family decoders)"
        case .emptyPrompt(let i):
            return "prompt \(i) has no tokens"
        case .tokenOutOfRange(let id, let v, let p):
            return "prompt \(p) has token id \(id), outside the vocabulary of \(v)"
        case .layerOutOfRange(let l, let n):
            return "block \(l) does not exist (the model has blocks 0..<\(n))"
        case .noSuchWeight(let s):
            return "no such weight: \(s)"
        case .bufferTooSmall(let s):
            return "buffer too small: \(s)"
        }
    }
}

public final class LlamaModel {
    /// Engine settings.
    public struct Options: Sendable {
        /// Bytes of fp32 block weights kept between forward passes (default 4 GiB). Blocks past
        /// the budget are dequantized on the fly, once per group of prompts.
        public var weightCacheBytes: Int = 4 << 30
        /// Tokens per packed batch through a block (bounds activation memory; ~2k keeps sgemm
        /// efficient and scratch at tens of MB for small models).
        public var maxBatchTokens: Int = 2048
        /// Tokens whose residual stream is kept at once while blocks stream past them
        /// (each block's weights are fetched once per group).
        public var groupTokens: Int = 65536
        /// Whether `forEachLastToken` computes a token prefix shared by several prompts once
        /// (SharedPrefix.swift); false runs every prompt's rows (the plain pass).
        public var sharePrefixes: Bool = true
        public init(weightCacheBytes: Int = 4 << 30, maxBatchTokens: Int = 2048, groupTokens: Int = 65536,
                    sharePrefixes: Bool = true) {
            self.weightCacheBytes = weightCacheBytes; self.maxBatchTokens = maxBatchTokens
            self.groupTokens = groupTokens; self.sharePrefixes = sharePrefixes
        }
    }

    public let checkpoint: any Checkpoint
    public let config: ModelConfig
    public let options: Options

    /// (vocab, C) token embedding.
    public let tokenEmbedding: [Float]
    /// (C) final RMSNorm weight.
    public let outputNorm: [Float]
    /// (vocab, C) output head (the embedding itself when tied).
    public let outputWeight: [Float]
    /// Whether the output head is the token embedding.
    public let tiedOutput: Bool

    /// Blocks held at fp32 between passes (index = layer; nil = dequantized on demand).
    var cached: [BlockWeights?]
    /// Trainable or edited blocks installed by a caller; they win over `cached`.
    var overrides: [Int: BlockWeights] = [:]
    /// Token rows the last `forEachLastToken` computed through the blocks, and the prompts'
    /// tokens (equal without shared prefixes).
    public internal(set) var lastRowCounts: (computed: Int, promptTokens: Int) = (0, 0)
    /// Scratch for forward passes that save nothing.
    var scratch: BlockActivations?
    var rope: RopeTable
    let ropePairing: RopePairing
    /// Per-pair RoPE frequency divisors: a GGUF's `rope_freqs.weight`, or the factors an HF
    /// config's llama3 rope scaling implies; nil for plain RoPE.
    public let ropeFrequencyFactors: [Double]?

    /// Builds the model from a checkpoint: checks the config and shapes, reads the embedding,
    /// final norm and head, and caches block weights up to `options.weightCacheBytes`.
    public init(checkpoint: any Checkpoint, options: Options = Options()) throws {
        let c = checkpoint.config
        try LlamaModel.validate(c)
        self.checkpoint = checkpoint
        self.config = c
        self.options = options
        let C = c.hiddenSize, V = c.vocabSize
        tokenEmbedding = try readTensor(checkpoint, .tokenEmbedding, shape: [V, C])
        outputNorm = try readTensor(checkpoint, .outputNorm, shape: [C])
        if !c.tieWordEmbeddings, checkpoint.tensorInfo(for: .output) != nil {
            outputWeight = try readTensor(checkpoint, .output, shape: [V, C])
            tiedOutput = false
        } else {
            // Tied, or the file has no head (llama.cpp then uses the embedding too).
            outputWeight = tokenEmbedding
            tiedOutput = true
        }
        ropePairing = c.ropeStyle == .adjacentPairs ? .adjacent : .halves
        ropeFrequencyFactors = try LlamaModel.frequencyFactors(checkpoint)
        rope = LlamaModel.makeRope(c, pairing: ropePairing, positions: max(c.maxPositions, 1),
                                   factors: ropeFrequencyFactors)
        cached = Array(repeating: nil, count: c.numLayers)
        let perBlock = c.blockFloatCount * MemoryLayout<Float>.size
        var used = 0
        for i in 0..<c.numLayers {
            // Check every block's tensors exist with the right shapes, even when not cached.
            try checkBlockShapes(layer: i)
            if used + perBlock <= options.weightCacheBytes {
                cached[i] = try loadBlockWeights(checkpoint, layer: i)
                used += perBlock
            }
        }
    }

    /// Number of blocks cached at fp32.
    public var cachedBlockCount: Int { cached.reduce(0) { $0 + ($1 == nil ? 0 : 1) } }

    static func validate(_ c: ModelConfig) throws {
        let known = ["llama", "mistral", "qwen2", "smollm", "qwen", "llama3"]
        guard known.contains(c.architecture.lowercased()) else {
            throw LlamaModelError.unsupportedArchitecture(c.architecture)
        }
        guard c.hiddenSize > 0, c.intermediateSize > 0, c.numLayers > 0, c.vocabSize > 0 else {
            throw LlamaModelError.badConfig("hidden size, FFN size, block count and vocabulary must be positive")
        }
        guard c.numHeads > 0, c.numKVHeads > 0, c.numHeads % c.numKVHeads == 0 else {
            throw LlamaModelError.badConfig("\(c.numHeads) attention heads cannot share \(c.numKVHeads) KV heads evenly")
        }
        guard c.headDim > 0, c.headDim % 2 == 0 else {
            throw LlamaModelError.badConfig("head dimension \(c.headDim) must be positive and even for RoPE")
        }
        guard c.rmsNormEps > 0, c.ropeTheta > 0 else {
            throw LlamaModelError.badConfig("rms_norm_eps and rope_theta must be positive")
        }
        if let s = c.ropeScaling {
            // "dynamic" (NTK) changes nothing within the trained context; yarn and longrope
            // change frequencies and attention scale in ways this engine does not implement.
            guard s.type.lowercased() == "dynamic" || RopeTable.supportsScaling(s.type) else {
                throw LlamaModelError.badConfig("rope scaling type '\(s.type)' is not supported (supported: linear, llama3, dynamic within the trained context)")
            }
            guard s.factor > 0 else { throw LlamaModelError.badConfig("rope scaling factor \(s.factor) must be positive") }
        }
    }

    /// The per-pair frequency divisors: the GGUF's `rope_freqs.weight` (validated), or the
    /// llama3 factors of the config's rope scaling. Both at once would scale twice: an error.
    static func frequencyFactors(_ checkpoint: any Checkpoint) throws -> [Double]? {
        let c = checkpoint.config
        let stored = try RopeFrequencies.stored(in: checkpoint)
        let llama3 = RopeFrequencies.llama3Factors(c)
        if stored != nil, llama3 != nil {
            throw LlamaModelError.badConfig("the file has both \(RopeFrequencies.ggufTensorName) and llama3 rope scaling metadata; applying both would scale the frequencies twice")
        }
        if let f = llama3, !f.allSatisfy({ $0.isFinite && $0 > 0 }) {
            throw LlamaModelError.badConfig("llama3 rope scaling (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings) gives unusable frequency factors \(f); check that factor > 0 and low_freq_factor < high_freq_factor")
        }
        return stored ?? llama3
    }

    static func makeRope(_ c: ModelConfig, pairing: RopePairing, positions: Int, factors: [Double]?) -> RopeTable {
        // Dynamic NTK scaling leaves the frequencies alone within the trained context (HF
        // rescales only past max_position_embeddings); prompts here are far shorter.
        // llama3 scaling arrives as `factors` (see frequencyFactors), so only linear is left
        // for the table's own scaling; llama.cpp likewise combines freq_scale and freq_factors.
        let s = c.ropeScaling?.type.lowercased() == "linear" ? c.ropeScaling : nil
        return RopeTable(headDim: c.headDim, theta: c.ropeTheta, pairing: pairing, maxPositions: positions,
                         scalingType: s?.type, factor: s?.factor ?? 1, freqFactors: factors)
    }

    /// Makes sure the RoPE table covers sequences of `length` tokens.
    func ensureRope(length: Int) {
        if length > rope.maxPositions {
            rope = LlamaModel.makeRope(config, pairing: ropePairing, positions: max(length, 2 * rope.maxPositions),
                                       factors: ropeFrequencyFactors)
        }
    }

    func checkBlockShapes(layer i: Int) throws {
        let c = config
        let C = c.hiddenSize, F = c.intermediateSize, QD = c.qDim, KVD = c.kvDim
        var want: [(TensorRole, [Int])] = [
            (.attnNorm(i), [C]), (.q(i), [QD, C]), (.k(i), [KVD, C]), (.v(i), [KVD, C]), (.o(i), [C, QD]),
            (.ffnNorm(i), [C]), (.gate(i), [F, C]), (.up(i), [F, C]), (.down(i), [C, F]),
        ]
        if c.attentionBias { want += [(.qBias(i), [QD]), (.kBias(i), [KVD]), (.vBias(i), [KVD])] }
        for (role, shape) in want {
            let name = checkpoint.name(for: role)
            guard let info = checkpoint.tensorInfo(named: name) else { throw LlamaModelError.missingTensor(name) }
            let ok = shape.count == 2 ? info.shape == shape : info.elementCount == shape[0]
            guard ok else { throw LlamaModelError.badShape(name: name, expected: shape, found: info.shape) }
        }
    }

    // MARK: - Block weights and overrides

    /// Block `layer`'s weights as the forward pass uses them: the override if one is installed,
    /// else the cached copy, else freshly dequantized from the checkpoint (not cached).
    /// The returned object is shared with the model when it is cached or an override: do not
    /// change it unless it is your override. For a trainable copy use `trainableCopy(of:)`.
    public func blockWeights(_ layer: Int) throws -> BlockWeights {
        guard layer >= 0 && layer < config.numLayers else {
            throw LlamaModelError.layerOutOfRange(layer, numLayers: config.numLayers)
        }
        if let w = overrides[layer] { return w }
        if let w = cached[layer] { return w }
        return try loadBlockWeights(checkpoint, layer: layer)
    }

    /// A fresh fp32 copy of block `layer`'s current weights, for a fine-tune to own.
    public func trainableCopy(of layer: Int) throws -> BlockWeights {
        let w = try blockWeights(layer)
        return (overrides[layer] != nil || cached[layer] != nil) ? w.copy() : w
    }

    /// Makes every later forward pass use `weights` for block `layer` (nil restores the
    /// checkpoint's). The model keeps a reference: changing `weights` in place changes the model.
    public func overrideBlock(_ layer: Int, with weights: BlockWeights?) throws {
        guard layer >= 0 && layer < config.numLayers else {
            throw LlamaModelError.layerOutOfRange(layer, numLayers: config.numLayers)
        }
        if let w = weights {
            guard w.layer == layer else {
                throw LlamaModelError.badConfig("weights of block \(w.layer) installed as block \(layer)")
            }
            let c = config
            let C = c.hiddenSize, F = c.intermediateSize, QD = c.qDim, KVD = c.kvDim
            let checks: [(String, Int, Int)] = [
                ("attn_norm", w.attnNorm.count, C), ("q", w.q.count, QD * C), ("k", w.k.count, KVD * C),
                ("v", w.v.count, KVD * C), ("o", w.o.count, C * QD), ("ffn_norm", w.ffnNorm.count, C),
                ("gate", w.gate.count, F * C), ("up", w.up.count, F * C), ("down", w.down.count, C * F),
                ("q bias", w.qBias?.count ?? (c.attentionBias ? -1 : 0), c.attentionBias ? QD : 0),
                ("k bias", w.kBias?.count ?? (c.attentionBias ? -1 : 0), c.attentionBias ? KVD : 0),
                ("v bias", w.vBias?.count ?? (c.attentionBias ? -1 : 0), c.attentionBias ? KVD : 0),
            ]
            for (n, got, want) in checks where got != want {
                throw LlamaModelError.badShape(name: "block \(layer) \(n)", expected: [want], found: [got])
            }
        }
        overrides[layer] = weights
    }

    /// The blocks that currently have an override.
    public var overriddenBlocks: [Int] { overrides.keys.sorted() }
}
