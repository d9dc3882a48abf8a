import Foundation

/// A GGUF file opened as a `Checkpoint`: the file is memory-mapped, the header parsed and
/// validated, and the architecture read from the `<arch>.*` metadata keys.
public final class GGUFCheckpoint: Checkpoint {
    public let format = CheckpointFormat.gguf
    public let location: URL
    public var files: [URL] { [location] }
    public let file: GGUFFile
    public let mapped: MappedFile
    public let tensors: [TensorInfo]
    public let config: ModelConfig
    /// All metadata by key (the tokenizer reads `tokenizer.ggml.*` from here).
    public let metadata: [String: GGUFValue]
    /// When true, `floats` unmaps a tensor's file pages from the process after dequantizing
    /// it (see `HFCheckpoint.releasePagesAfterRead`). Off by default.
    public var releasePagesAfterRead = false
    private let index: [String: Int]

    public init(url: URL) throws {
        location = url
        mapped = try MappedFile(url: url)
        file = try GGUFFile(bytes: mapped.bytes)
        metadata = file.metadataByKey
        var infos: [TensorInfo] = []
        var index: [String: Int] = [:]
        for t in file.tensors {
            index[t.name] = infos.count
            infos.append(TensorInfo(name: t.name, dtype: t.dtype, shape: t.shape, fileIndex: 0,
                                    offset: file.dataOffset + Int(t.offset), byteCount: t.byteCount))
        }
        tensors = infos
        self.index = index
        config = try GGUFCheckpoint.readConfig(metadata: metadata, hasTensor: { index[$0] != nil })
    }

    public func tensorInfo(named name: String) -> TensorInfo? { index[name].map { tensors[$0] } }
    public func name(for role: TensorRole) -> String { TensorNames.gguf(role) }

    public func rawBytes(_ tensor: TensorInfo) throws -> UnsafeRawBufferPointer {
        guard tensor.fileIndex == 0, let b = mapped.slice(offset: tensor.offset, count: tensor.byteCount) else {
            throw GGUFError.tensorNotFound(tensor.name)
        }
        return b
    }

    public func floats(_ tensor: TensorInfo) throws -> [Float] {
        let raw = try rawBytes(tensor)
        let v = try dequantize(raw, dtype: tensor.dtype, count: tensor.elementCount)
        if releasePagesAfterRead { releaseMappedPages(raw) }
        return v
    }

    /// The raw GGUF tensor-info record (ggml ne order, relative offset) of a tensor.
    public func ggufTensorInfo(named name: String) -> GGUFTensorInfo? { index[name].map { file.tensors[$0] } }

    // MARK: Config from metadata

    static func readConfig(metadata m: [String: GGUFValue], hasTensor: (String) -> Bool) throws -> ModelConfig {
        guard let archValue = m["general.architecture"] else { throw GGUFError.missingMetadata("general.architecture") }
        guard let arch = archValue.stringValue else { throw GGUFError.badMetadataValue(key: "general.architecture", expected: "a string") }
        func int(_ k: String) throws -> Int {
            guard let v = m["\(arch).\(k)"] else { throw GGUFError.missingMetadata("\(arch).\(k)") }
            guard let i = v.intValue, i > 0 else { throw GGUFError.badMetadataValue(key: "\(arch).\(k)", expected: "a positive integer") }
            return i
        }
        func optInt(_ k: String) throws -> Int? { m["\(arch).\(k)"] == nil ? nil : try int(k) }
        func optDouble(_ k: String) throws -> Double? {
            guard let v = m["\(arch).\(k)"] else { return nil }
            guard let d = v.doubleValue, d.isFinite else { throw GGUFError.badMetadataValue(key: "\(arch).\(k)", expected: "a finite number") }
            return d
        }
        let hidden = try int("embedding_length")
        let heads = try int("attention.head_count")
        let kvHeads = try optInt("attention.head_count_kv") ?? heads
        guard heads % kvHeads == 0 else {
            throw GGUFError.badMetadataValue(key: "\(arch).attention.head_count_kv", expected: "a divisor of head_count \(heads)")
        }
        let headDim = try optInt("attention.key_length") ?? hidden / heads
        let vocab: Int
        if let toks = m["tokenizer.ggml.tokens"]?.arrayValue { vocab = toks.count }
        else if let v = try optInt("vocab_size") { vocab = v }
        else { throw GGUFError.missingMetadata("tokenizer.ggml.tokens or \(arch).vocab_size") }
        var scaling: RopeScaling?
        if let t = m["\(arch).rope.scaling.type"]?.stringValue, t != "none" {
            let factor = try optDouble("rope.scaling.factor") ?? 1
            scaling = RopeScaling(type: t, factor: factor,
                                  originalMaxPositions: try optInt("rope.scaling.original_context_length"))
        } else if let f = try optDouble("rope.scale_linear"), f != 1 {
            scaling = RopeScaling(type: "linear", factor: f)
        }
        return ModelConfig(
            architecture: arch, hiddenSize: hidden, intermediateSize: try int("feed_forward_length"),
            numLayers: try int("block_count"), numHeads: heads, numKVHeads: kvHeads, headDim: headDim,
            vocabSize: vocab,
            rmsNormEps: try optDouble("attention.layer_norm_rms_epsilon") ?? 1e-5,
            ropeTheta: try optDouble("rope.freq_base") ?? 10000,
            ropeScaling: scaling,
            ropeStyle: arch == "qwen2" ? .halves : .adjacentPairs,
            tieWordEmbeddings: !hasTensor("output.weight"),
            attentionBias: hasTensor("blk.0.attn_q.bias"),
            maxPositions: try optInt("context_length") ?? 2048)
    }
}
