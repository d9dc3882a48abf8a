import Foundation

// An HF model directory: config.json, safetensors (single or sharded), tokenizer files.

// MARK: - config.json

/// The fields of an HF `config.json` a Llama-family model needs, with transformers'
/// defaults (LlamaConfig) for the ones a file may leave out.
public struct HFConfig: Codable, Equatable, Sendable {
    public var modelType: String
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    /// Defaults to `numAttentionHeads` (no grouped-query attention).
    public var numKeyValueHeads: Int?
    /// Defaults to hidden_size / num_attention_heads.
    public var headDim: Int?
    public var vocabSize: Int
    public var rmsNormEps: Double
    public var ropeTheta: Double
    public var ropeScaling: HFRopeScaling?
    public var tieWordEmbeddings: Bool
    public var maxPositionEmbeddings: Int
    public var attentionBias: Bool
    public var bosTokenId: Int?
    public var eosTokenId: Int?
    public var torchDtype: String?
    public var architectures: [String]?

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type"
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads"
        case headDim = "head_dim"
        case vocabSize = "vocab_size"
        case rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta"
        case ropeScaling = "rope_scaling"
        case tieWordEmbeddings = "tie_word_embeddings"
        case maxPositionEmbeddings = "max_position_embeddings"
        case attentionBias = "attention_bias"
        case bosTokenId = "bos_token_id"
        case eosTokenId = "eos_token_id"
        case torchDtype = "torch_dtype"
        case architectures
    }

    public init(modelType: String, hiddenSize: Int, intermediateSize: Int, numHiddenLayers: Int,
                numAttentionHeads: Int, numKeyValueHeads: Int?, headDim: Int?, vocabSize: Int,
                rmsNormEps: Double, ropeTheta: Double, ropeScaling: HFRopeScaling?, tieWordEmbeddings: Bool,
                maxPositionEmbeddings: Int, attentionBias: Bool, bosTokenId: Int? = nil, eosTokenId: Int? = nil,
                torchDtype: String? = nil, architectures: [String]? = nil) {
        self.modelType = modelType; self.hiddenSize = hiddenSize; self.intermediateSize = intermediateSize
        self.numHiddenLayers = numHiddenLayers; self.numAttentionHeads = numAttentionHeads
        self.numKeyValueHeads = numKeyValueHeads; self.headDim = headDim; self.vocabSize = vocabSize
        self.rmsNormEps = rmsNormEps; self.ropeTheta = ropeTheta; self.ropeScaling = ropeScaling
        self.tieWordEmbeddings = tieWordEmbeddings; self.maxPositionEmbeddings = maxPositionEmbeddings
        self.attentionBias = attentionBias; self.bosTokenId = bosTokenId; self.eosTokenId = eosTokenId
        self.torchDtype = torchDtype; self.architectures = architectures
    }

    public init(from d: Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        modelType = try c.decodeIfPresent(String.self, forKey: .modelType) ?? "llama"
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
        numHiddenLayers = try c.decode(Int.self, forKey: .numHiddenLayers)
        numAttentionHeads = try c.decode(Int.self, forKey: .numAttentionHeads)
        numKeyValueHeads = try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads)
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim)
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? 1e-6
        ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? 10000
        ropeScaling = try c.decodeIfPresent(HFRopeScaling.self, forKey: .ropeScaling)
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 2048
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? (modelType == "qwen2")
        // eos_token_id may be a list in newer configs; keep the first.
        bosTokenId = try? c.decodeIfPresent(Int.self, forKey: .bosTokenId)
        if let e = try? c.decodeIfPresent(Int.self, forKey: .eosTokenId) { eosTokenId = e }
        else { eosTokenId = (try? c.decodeIfPresent([Int].self, forKey: .eosTokenId))??.first }
        torchDtype = try? c.decodeIfPresent(String.self, forKey: .torchDtype)
        architectures = try? c.decodeIfPresent([String].self, forKey: .architectures)
    }

    /// The engine's view of these hyperparameters (HF checkpoints rotate halves).
    public var modelConfig: ModelConfig {
        ModelConfig(architecture: modelType, hiddenSize: hiddenSize, intermediateSize: intermediateSize,
                    numLayers: numHiddenLayers, numHeads: numAttentionHeads,
                    numKVHeads: numKeyValueHeads ?? numAttentionHeads,
                    headDim: headDim ?? hiddenSize / max(numAttentionHeads, 1), vocabSize: vocabSize,
                    rmsNormEps: rmsNormEps, ropeTheta: ropeTheta, ropeScaling: ropeScaling?.ropeScaling,
                    ropeStyle: .halves, tieWordEmbeddings: tieWordEmbeddings, attentionBias: attentionBias,
                    maxPositions: maxPositionEmbeddings)
    }

    /// The config.json transformers would write for `config`.
    public init(_ config: ModelConfig, bosTokenId: Int? = nil, eosTokenId: Int? = nil, torchDtype: String? = nil) {
        let archName: String
        switch config.architecture {
        case "qwen2": archName = "Qwen2ForCausalLM"
        case "mistral": archName = "MistralForCausalLM"
        default: archName = "LlamaForCausalLM"
        }
        self.init(modelType: config.architecture, hiddenSize: config.hiddenSize, intermediateSize: config.intermediateSize,
                  numHiddenLayers: config.numLayers, numAttentionHeads: config.numHeads, numKeyValueHeads: config.numKVHeads,
                  headDim: config.headDim, vocabSize: config.vocabSize, rmsNormEps: config.rmsNormEps,
                  ropeTheta: config.ropeTheta, ropeScaling: config.ropeScaling.map(HFRopeScaling.init),
                  tieWordEmbeddings: config.tieWordEmbeddings, maxPositionEmbeddings: config.maxPositions,
                  attentionBias: config.attentionBias, bosTokenId: bosTokenId, eosTokenId: eosTokenId,
                  torchDtype: torchDtype, architectures: [archName])
    }

    /// Pretty, sorted-key JSON (stable bytes for the same config).
    public func encoded() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try e.encode(self)
    }
}

/// HF `rope_scaling`: `{"rope_type" or "type": ..., "factor": ..., ...}`.
public struct HFRopeScaling: Codable, Equatable, Sendable {
    public var ropeType: String
    public var factor: Double
    public var lowFreqFactor: Double?
    public var highFreqFactor: Double?
    public var originalMaxPositionEmbeddings: Int?

    enum CodingKeys: String, CodingKey {
        case ropeType = "rope_type", type, factor
        case lowFreqFactor = "low_freq_factor", highFreqFactor = "high_freq_factor"
        case originalMaxPositionEmbeddings = "original_max_position_embeddings"
    }

    public init(_ s: RopeScaling) {
        ropeType = s.type; factor = s.factor; lowFreqFactor = s.lowFreqFactor
        highFreqFactor = s.highFreqFactor; originalMaxPositionEmbeddings = s.originalMaxPositions
    }

    public init(from d: Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        ropeType = try c.decodeIfPresent(String.self, forKey: .ropeType) ?? c.decodeIfPresent(String.self, forKey: .type) ?? "linear"
        factor = try c.decodeIfPresent(Double.self, forKey: .factor) ?? 1
        lowFreqFactor = try c.decodeIfPresent(Double.self, forKey: .lowFreqFactor)
        highFreqFactor = try c.decodeIfPresent(Double.self, forKey: .highFreqFactor)
        originalMaxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .originalMaxPositionEmbeddings)
    }

    public func encode(to e: Encoder) throws {
        var c = e.container(keyedBy: CodingKeys.self)
        try c.encode(ropeType, forKey: .ropeType)
        try c.encode(factor, forKey: .factor)
        try c.encodeIfPresent(lowFreqFactor, forKey: .lowFreqFactor)
        try c.encodeIfPresent(highFreqFactor, forKey: .highFreqFactor)
        try c.encodeIfPresent(originalMaxPositionEmbeddings, forKey: .originalMaxPositionEmbeddings)
    }

    var ropeScaling: RopeScaling {
        RopeScaling(type: ropeType, factor: factor, lowFreqFactor: lowFreqFactor, highFreqFactor: highFreqFactor,
                    originalMaxPositions: originalMaxPositionEmbeddings)
    }
}

// MARK: - The checkpoint

public enum HFCheckpointError: Error, CustomStringConvertible, Equatable {
    /// The directory has no config.json.
    case missingConfig(directory: String)
    /// config.json is not JSON or lacks a required field.
    case invalidConfig(path: String, reason: String)
    /// config.json is self-inconsistent (e.g. heads do not divide the hidden size).
    case inconsistentConfig(path: String, reason: String)
    /// The tensor is not in this checkpoint.
    case noSuchTensor(name: String)
    /// A dtype `floats()` cannot convert.
    case unsupportedDType(name: String, dtype: DType)

    public var description: String {
        switch self {
        case let .missingConfig(d): return "\(d): no config.json; an HF model directory needs one"
        case let .invalidConfig(p, r): return "\(p): \(r)"
        case let .inconsistentConfig(p, r): return "\(p): \(r)"
        case let .noSuchTensor(n): return "no tensor named \"\(n)\" in this checkpoint"
        case let .unsupportedDType(n, d): return "tensor \"\(n)\": cannot convert \(d.rawValue) to floats"
        }
    }
}

/// An HF model directory opened for reading: headers parsed, tensor bytes memory-mapped.
public final class HFCheckpoint: Checkpoint {
    public let format = CheckpointFormat.safetensors
    public let location: URL
    public let files: [URL]
    public let tensors: [TensorInfo]
    public let config: ModelConfig
    public let hfConfig: HFConfig
    public let safetensors: SafetensorsSet
    /// tokenizer.json, when present (for the Tokenizer module to load).
    public let tokenizerJSON: URL?
    /// tokenizer_config.json, when present.
    public let tokenizerConfigJSON: URL?
    /// When true, `floats` unmaps a tensor's file pages from the process after dequantizing
    /// it (`releaseMappedPages`): resident memory then counts what was dequantized, not every
    /// page of the checkpoint ever read. Off by default.
    public var releasePagesAfterRead = false
    private let byName: [String: Int]

    public init(directory: URL) throws {
        location = directory
        let fm = FileManager.default
        let configURL = directory.appendingPathComponent("config.json")
        guard fm.fileExists(atPath: configURL.path) else { throw HFCheckpointError.missingConfig(directory: directory.path) }
        let cfg: HFConfig
        do {
            cfg = try JSONDecoder().decode(HFConfig.self, from: Data(contentsOf: configURL))
        } catch let DecodingError.keyNotFound(key, _) {
            throw HFCheckpointError.invalidConfig(path: configURL.path, reason: "missing \"\(key.stringValue)\"")
        } catch let DecodingError.typeMismatch(_, ctx) {
            throw HFCheckpointError.invalidConfig(path: configURL.path, reason: "wrong type for \"\(ctx.codingPath.map(\.stringValue).joined(separator: "."))\"")
        } catch {
            throw HFCheckpointError.invalidConfig(path: configURL.path, reason: "not valid JSON")
        }
        let m = cfg.modelConfig
        guard m.hiddenSize > 0, m.numHeads > 0, m.numKVHeads > 0, m.numLayers >= 0, m.vocabSize > 0, m.headDim > 0,
              m.numHeads % m.numKVHeads == 0 else {
            throw HFCheckpointError.inconsistentConfig(path: configURL.path,
                reason: "needs positive sizes and num_attention_heads (\(m.numHeads)) divisible by num_key_value_heads (\(m.numKVHeads))")
        }
        hfConfig = cfg
        config = m
        safetensors = try SafetensorsSet(directory: directory)
        files = safetensors.files.map(\.url)
        var infos: [TensorInfo] = []
        for (fi, f) in safetensors.files.enumerated() {
            for e in f.header.entriesInDataOrder {
                infos.append(TensorInfo(name: e.name, dtype: e.dtype, shape: e.shape, fileIndex: fi,
                                        offset: f.dataStart + e.begin, byteCount: e.byteCount))
            }
        }
        tensors = infos
        byName = Dictionary(infos.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        let tj = directory.appendingPathComponent("tokenizer.json")
        tokenizerJSON = fm.fileExists(atPath: tj.path) ? tj : nil
        let tc = directory.appendingPathComponent("tokenizer_config.json")
        tokenizerConfigJSON = fm.fileExists(atPath: tc.path) ? tc : nil
    }

    public func tensorInfo(named name: String) -> TensorInfo? { byName[name].map { tensors[$0] } }

    public func name(for role: TensorRole) -> String { TensorNames.hf(role) }

    public func rawBytes(_ t: TensorInfo) throws -> UnsafeRawBufferPointer {
        guard t.fileIndex >= 0, t.fileIndex < safetensors.files.count else { throw HFCheckpointError.noSuchTensor(name: t.name) }
        let f = safetensors.files[t.fileIndex].fileBytes
        guard t.offset >= 0, t.byteCount >= 0, t.offset <= f.count - t.byteCount else { throw HFCheckpointError.noSuchTensor(name: t.name) }
        return UnsafeRawBufferPointer(rebasing: f[t.offset..<(t.offset + t.byteCount)])
    }

    public func floats(_ t: TensorInfo) throws -> [Float] {
        let raw = try rawBytes(t)
        let v = try dequantize(raw, dtype: t.dtype, count: t.elementCount)
        if releasePagesAfterRead { releaseMappedPages(raw) }
        return v
    }
}


// MARK: - GGUF → HF

public enum HFConvertError: Error, CustomStringConvertible, Equatable {
    /// The GGUF lacks a tensor its architecture needs.
    case missingTensor(name: String)
    /// Only F32, F16 and BF16 outputs are written.
    case unsupportedDType(DType)
    /// The finished temporary directory could not be renamed into place.
    case cannotFinish(path: String, reason: String)
    /// The GGUF's `rope_freqs.weight` cannot be written as an HF `rope_scaling`.
    case ropeFrequencies(String)

    public var description: String {
        switch self {
        case let .missingTensor(n): return "the GGUF file has no tensor \(n), which the architecture needs"
        case let .unsupportedDType(d): return "cannot write \(d.rawValue); choose bf16, f16 or f32"
        case let .cannotFinish(p, r): return "cannot move the converted model into \(p): \(r)"
        case let .ropeFrequencies(r): return "cannot convert the RoPE frequency factors (rope_freqs.weight): \(r)"
        }
    }
}

/// GGUF → HF directory: every tensor dequantized and stored as `dtype` (BF16 or F32),
/// llama Q/K rows un-permuted to HF order, config.json and tokenizer files from the metadata.
/// Written into a temporary sibling directory and renamed to `out` when complete.
public func convertGGUFToHF(_ g: GGUFCheckpoint, to out: URL, dtype: DType, maxShardBytes: Int?,
                     progress: ((Int, Int, String) -> Void)? = nil,
                            note: ((String) -> Void)? = nil) throws {
    let c = g.config
    let fm = FileManager.default
    let parent = out.deletingLastPathComponent()
    let tmp = parent.appendingPathComponent(".\(out.lastPathComponent).partial-\(getpid())")
    try? fm.removeItem(at: tmp)
    try fm.createDirectory(at: tmp, withIntermediateDirectories: true)
    var finished = false
    defer { if !finished { try? fm.removeItem(at: tmp) } }

    // Tensors in HF state-dict order; the GGUF must have each (lm_head only when untied).
    let specs = SyntheticModel.tensorSpecs(c)
    var plan: [(spec: ModelTensorSpec, info: TensorInfo)] = []
    for s in specs {
        let name = TensorNames.gguf(s.role)
        guard let t = g.tensorInfo(named: name) else { throw HFConvertError.missingTensor(name: name) }
        plan.append((s, t))
    }
    // llama.cpp stores llama3 rope scaling as per-pair factors (rope_freqs.weight); HF keeps
    // it as config.json's rope_scaling. Recover the parameters, or refuse: dropping the
    // tensor would silently change every position's rotation.
    var ropeScaling = c.ropeScaling
    if let factors = try RopeFrequencies.stored(in: g) {
        if let s = c.ropeScaling {
            throw HFConvertError.ropeFrequencies("the file also has \(s.type) rope scaling metadata; HF's rope_scaling holds only one")
        }
        do {
            let orig = g.metadata["\(c.architecture).rope.scaling.original_context_length"]?.intValue
            let s = try RopeFrequencies.recoverLlama3(factors: factors, headDim: c.headDim, theta: Double(Float(c.ropeTheta)),
                                                      originalMaxPositions: orig)
            ropeScaling = s
            note?("rope_freqs.weight written as rope_scaling llama3 (factor \(s.factor), low_freq_factor \(s.lowFreqFactor ?? 1), high_freq_factor \(s.highFreqFactor ?? 4), original_max_position_embeddings \(s.originalMaxPositions ?? 8192))")
        } catch let e as RopeFrequencyError {
            throw HFConvertError.ropeFrequencies(e.description)
        }
    }
    let used = Set(plan.map(\.info.name) + [RopeFrequencies.ggufTensorName])
    for t in g.tensors where !used.contains(t.name) {
        note?("skipping GGUF tensor \(t.name) (no HF counterpart)")
    }
    let st = plan.map { SafetensorsTensorSpec(name: TensorNames.hf($0.spec.role), dtype: dtype, shape: $0.info.shape) }
    var k = 0
    guard dtype == .bf16 || dtype == .f32 || dtype == .f16 else { throw HFConvertError.unsupportedDType(dtype) }
    try writeSafetensorsCheckpoint(to: tmp, tensors: st, maxShardBytes: maxShardBytes, progress: progress) { spec, w in
        let (s, t) = plan[k]; k += 1
        var v = try g.floats(t)
        if c.ropeStyle == .adjacentPairs {
            // llama.cpp permuted these rows (adjacent-pair RoPE); HF rotates halves.
            switch s.role {
            case .q, .qBias: v = try QKPermutation.ggufToHF(v, rows: t.shape[0], heads: c.numHeads)
            case .k, .kBias: v = try QKPermutation.ggufToHF(v, rows: t.shape[0], heads: c.numKVHeads)
            default: break
            }
        }
        let bytes = SyntheticModel.encode(v, as: dtype)
        try bytes.withUnsafeBytes { try w.write(spec.name, $0) }
    }

    var hfModel = c
    hfModel.ropeStyle = .halves
    hfModel.ropeScaling = ropeScaling
    // GGUF stores these as float32; write the shortest decimal that round-trips (1e-05, not 9.99999974e-06).
    hfModel.rmsNormEps = Double("\(Float(c.rmsNormEps))") ?? c.rmsNormEps
    hfModel.ropeTheta = Double("\(Float(c.ropeTheta))") ?? c.ropeTheta
    let vocab = GGUFVocabulary(metadata: { g.metadata[$0] })
    try HFConfig(hfModel, bosTokenId: vocab?.bosTokenId, eosTokenId: vocab?.eosTokenId,
                 torchDtype: dtype == .bf16 ? "bfloat16" : "float32")
        .encoded().write(to: tmp.appendingPathComponent("config.json"))
    if let vocab {
        // A tokenizer we cannot write exactly is left out (with a note), never written approximately.
        do {
            try Data(try HFTokenizerFiles.tokenizerJSON(vocab)).write(to: tmp.appendingPathComponent("tokenizer.json"))
            try Data(HFTokenizerFiles.tokenizerConfigJSON(vocab, maxLength: c.maxPositions))
                .write(to: tmp.appendingPathComponent("tokenizer_config.json"))
        } catch let e as HFTokenizerError {
            note?("tokenizer files not written: \(e)")
        }
    }
    do { try fm.moveItem(at: tmp, to: out) } catch {
        throw HFConvertError.cannotFinish(path: out.path, reason: error.localizedDescription)
    }
    finished = true
}
