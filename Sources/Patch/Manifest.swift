// The manifest: the JSON part of a .lftfpatch file (Formats/lftfpatch.md, "Manifest").
// Unknown keys are kept (`extra`) so a tool that rewrites a manifest loses nothing a newer
// writer put there; readers otherwise ignore them.
import Foundation
import ModelFormats

/// Any JSON value, for fields whose schema belongs to another tool or a future version.
public enum JSONValue: Codable, Equatable, Sendable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }
}

struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { return nil }
}

/// Keys of `decoder`'s object not in `known`, with their values.
func unknownKeys(_ decoder: Decoder, known: Set<String>) throws -> [String: JSONValue] {
    let c = try decoder.container(keyedBy: AnyKey.self)
    var extra: [String: JSONValue] = [:]
    for k in c.allKeys where !known.contains(k.stringValue) {
        extra[k.stringValue] = try c.decode(JSONValue.self, forKey: k)
    }
    return extra
}

func encodeExtra(_ extra: [String: JSONValue], _ encoder: Encoder) throws {
    var c = encoder.container(keyedBy: AnyKey.self)
    for (k, v) in extra { try c.encode(v, forKey: AnyKey(k)) }
}

// MARK: - Provenance and scores (filled by `create`; every field optional)

public struct RankedBlock: Codable, Equatable, Sendable {
    public var block: Int
    /// The block's BMI (method.md): higher = more tied to gender bias.
    public var bmi: Double
    public init(block: Int, bmi: Double) { self.block = block; self.bmi = bmi }
}

public struct DataSource: Codable, Equatable, Sendable {
    public var name: String
    public var sha256: String?
    public var count: Int?
    public init(name: String, sha256: String? = nil, count: Int? = nil) {
        self.name = name; self.sha256 = sha256; self.count = count
    }
}

/// How a patch was made.
public struct Provenance: Codable, Equatable, Sendable {
    /// "lftf", "fpft", "diff", ...
    public var method: String?
    /// The block LFTF located (and fine-tuned).
    public var locatedBlock: Int?
    /// Blocks ordered by BMI, highest first.
    public var bmiRanking: [RankedBlock]?
    /// The training objective's name.
    public var loss: String?
    /// Final value of the training loss.
    public var finalLoss: Double?
    /// Learning rate, steps, batch size, ...
    public var hyperparameters: [String: JSONValue]?
    public var seed: UInt64?
    /// "lftf-patch 0.1.0".
    public var toolVersion: String?
    /// Training and evaluation data.
    public var data: [DataSource]?
    /// ISO 8601; set by the caller (a builder never reads the clock: patches are reproducible).
    public var createdAt: String?
    /// Keys this version does not know, kept as they were.
    public var extra: [String: JSONValue] = [:]

    public init(method: String? = nil, locatedBlock: Int? = nil, bmiRanking: [RankedBlock]? = nil,
                loss: String? = nil, finalLoss: Double? = nil, hyperparameters: [String: JSONValue]? = nil,
                seed: UInt64? = nil, toolVersion: String? = nil, data: [DataSource]? = nil, createdAt: String? = nil) {
        self.method = method; self.locatedBlock = locatedBlock; self.bmiRanking = bmiRanking
        self.loss = loss; self.finalLoss = finalLoss; self.hyperparameters = hyperparameters
        self.seed = seed; self.toolVersion = toolVersion; self.data = data; self.createdAt = createdAt
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case method, locatedBlock = "located_block", bmiRanking = "bmi_ranking", loss
        case finalLoss = "final_loss", hyperparameters, seed, toolVersion = "tool_version", data
        case createdAt = "created_at"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        method = try c.decodeIfPresent(String.self, forKey: .method)
        locatedBlock = try c.decodeIfPresent(Int.self, forKey: .locatedBlock)
        bmiRanking = try c.decodeIfPresent([RankedBlock].self, forKey: .bmiRanking)
        loss = try c.decodeIfPresent(String.self, forKey: .loss)
        finalLoss = try c.decodeIfPresent(Double.self, forKey: .finalLoss)
        hyperparameters = try c.decodeIfPresent([String: JSONValue].self, forKey: .hyperparameters)
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed)
        toolVersion = try c.decodeIfPresent(String.self, forKey: .toolVersion)
        data = try c.decodeIfPresent([DataSource].self, forKey: .data)
        createdAt = try c.decodeIfPresent(String.self, forKey: .createdAt)
        extra = try unknownKeys(decoder, known: Set(CodingKeys.allCases.map(\.rawValue)))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(method, forKey: .method)
        try c.encodeIfPresent(locatedBlock, forKey: .locatedBlock)
        try c.encodeIfPresent(bmiRanking, forKey: .bmiRanking)
        try c.encodeIfPresent(loss, forKey: .loss)
        try c.encodeIfPresent(finalLoss, forKey: .finalLoss)
        try c.encodeIfPresent(hyperparameters, forKey: .hyperparameters)
        try c.encodeIfPresent(seed, forKey: .seed)
        try c.encodeIfPresent(toolVersion, forKey: .toolVersion)
        try c.encodeIfPresent(data, forKey: .data)
        try c.encodeIfPresent(createdAt, forKey: .createdAt)
        try encodeExtra(extra, encoder)
    }
}

/// Metrics measured on the base and on the patched model (names as in method.md,
/// e.g. "afgb", "ub", "perplexity").
public struct PatchScores: Codable, Equatable, Sendable {
    public var before: [String: Double]?
    public var after: [String: Double]?
    public var extra: [String: JSONValue] = [:]

    public init(before: [String: Double]? = nil, after: [String: Double]? = nil) {
        self.before = before; self.after = after
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case before, after }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        before = try c.decodeIfPresent([String: Double].self, forKey: .before)
        after = try c.decodeIfPresent([String: Double].self, forKey: .after)
        extra = try unknownKeys(decoder, known: Set(CodingKeys.allCases.map(\.rawValue)))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(before, forKey: .before)
        try c.encodeIfPresent(after, forKey: .after)
        try encodeExtra(extra, encoder)
    }
}

// MARK: - Identity and tensors

/// Which checkpoint a patch applies to, or results in.
public struct CheckpointIdentity: Codable, Equatable, Sendable {
    public var format: CheckpointFormat
    /// GGUF `general.architecture` / HF `model_type`.
    public var architecture: String
    /// `Fingerprint.of(...)`, lowercase hex.
    public var fingerprint: String
    public var tensorCount: Int

    enum CodingKeys: String, CodingKey { case format, architecture, fingerprint, tensorCount = "tensor_count" }
}

/// A tensor's dtype, shape and SHA-256 on one side of the patch.
public struct TensorState: Codable, Equatable, Sendable {
    public var dtype: DType
    public var shape: [Int]
    public var sha256: String
    /// Bytes of the tensor (derived; nil for an impossible dtype/shape pair).
    public var byteCount: Int? { ModelFormats.elementCount(shape).flatMap { dtype.byteCount(elements: $0) } }
}

/// Compressed frames that decode one tensor, a chunk each.
public struct TensorStream: Codable, Equatable, Sendable {
    public var encoding: String
    /// Elements per frame (the last frame holds the rest).
    public var chunkElements: Int
    /// Start of the first frame, relative to the data section.
    public var offset: Int
    /// Compressed size of each frame, in order; frames are contiguous.
    public var frameSizes: [Int]

    enum CodingKeys: String, CodingKey {
        case encoding, chunkElements = "chunk_elements", offset, frameSizes = "frame_sizes"
    }

    public var compressedSize: Int { frameSizes.reduce(0, +) }
}

public struct PatchedTensor: Codable, Equatable, Sendable {
    public var name: String
    public var base: TensorState
    public var patched: TensorState
    /// Decodes the patched tensor from the base one.
    public var forward: TensorStream
    /// Decodes the base tensor from the patched one; absent when `forward` is reversible
    /// (same dtype and shape, and an encoding that needs a source).
    public var reverse: TensorStream?
}

public struct PatchManifest: Codable, Equatable, Sendable {
    public var formatVersion: Int
    /// Features a reader must implement to use this patch (none in version 1).
    public var requires: [String]
    /// The program that wrote the file, e.g. "lftf-patch 0.1.0".
    public var writer: String
    public var base: CheckpointIdentity
    public var patched: CheckpointIdentity
    public var tensors: [PatchedTensor]
    public var provenance: Provenance?
    public var scores: PatchScores?
    public var extra: [String: JSONValue] = [:]

    enum CodingKeys: String, CodingKey, CaseIterable {
        case formatVersion = "format_version", requires, writer, base, patched, tensors, provenance, scores
    }

    public init(formatVersion: Int, requires: [String], writer: String, base: CheckpointIdentity,
                patched: CheckpointIdentity, tensors: [PatchedTensor], provenance: Provenance?, scores: PatchScores?) {
        self.formatVersion = formatVersion; self.requires = requires; self.writer = writer
        self.base = base; self.patched = patched; self.tensors = tensors
        self.provenance = provenance; self.scores = scores
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        formatVersion = try c.decode(Int.self, forKey: .formatVersion)
        requires = try c.decodeIfPresent([String].self, forKey: .requires) ?? []
        writer = try c.decodeIfPresent(String.self, forKey: .writer) ?? ""
        base = try c.decode(CheckpointIdentity.self, forKey: .base)
        patched = try c.decode(CheckpointIdentity.self, forKey: .patched)
        tensors = try c.decode([PatchedTensor].self, forKey: .tensors)
        provenance = try c.decodeIfPresent(Provenance.self, forKey: .provenance)
        scores = try c.decodeIfPresent(PatchScores.self, forKey: .scores)
        extra = try unknownKeys(decoder, known: Set(CodingKeys.allCases.map(\.rawValue)))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(formatVersion, forKey: .formatVersion)
        try c.encode(requires, forKey: .requires)
        try c.encode(writer, forKey: .writer)
        try c.encode(base, forKey: .base)
        try c.encode(patched, forKey: .patched)
        try c.encode(tensors, forKey: .tensors)
        try c.encodeIfPresent(provenance, forKey: .provenance)
        try c.encodeIfPresent(scores, forKey: .scores)
        try encodeExtra(extra, encoder)
    }

    /// Deterministic JSON: sorted keys, no whitespace.
    func encoded() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try e.encode(self)
    }
}
