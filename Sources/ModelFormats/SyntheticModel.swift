import Foundation

// Seeded random-weights models: a tiny Llama for fast tests (HF directory and GGUF, same
// weights), and a 7B-shaped sharded BF16 HF directory for I/O benchmarks, written streaming.

/// SyntheticRNG: SplitMix64 (Steele et al. 2014): a tiny seeded generator; the same seed gives the same
/// model on every machine.
public struct SyntheticRNG: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    public mutating func nextSigned() -> Float { Float(next() >> 40) * 0x1p-23 - 1 }
}

/// One weight of a Llama-family model, in HF (state-dict) order.
public struct ModelTensorSpec: Sendable {
    public var role: TensorRole
    /// PyTorch shape (rows first).
    public var shape: [Int]
}

public enum SyntheticModel {
    /// The tiny test model: llama, 2 blocks, hidden 64, FFN 128, 4 heads (2 KV, head dim 16),
    /// the tiny byte-level vocabulary, tied embeddings.
    public static func tinyConfig(layers: Int = 2) -> ModelConfig {
        ModelConfig(architecture: "llama", hiddenSize: 64, intermediateSize: 128, numLayers: layers, numHeads: 4,
                    numKVHeads: 2, headDim: 16, vocabSize: tinyVocabulary.tokens.count, rmsNormEps: 1e-5,
                    ropeTheta: 10000, ropeStyle: .halves, tieWordEmbeddings: true, maxPositions: 256)
    }

    /// 7B-shaped (Llama-2-7B): 32 blocks, hidden 4096, FFN 11008, 32 heads, vocab 32000.
    public static func sevenBConfig(layers: Int = 32) -> ModelConfig {
        ModelConfig(architecture: "llama", hiddenSize: 4096, intermediateSize: 11008, numLayers: layers, numHeads: 32,
                    numKVHeads: 32, headDim: 128, vocabSize: 32000, rmsNormEps: 1e-5, ropeTheta: 10000,
                    ropeStyle: .halves, tieWordEmbeddings: false, maxPositions: 4096)
    }

    /// Every weight of `config` in HF state-dict order with its PyTorch shape.
    public static func tensorSpecs(_ c: ModelConfig) -> [ModelTensorSpec] {
        let h = c.hiddenSize, q = c.numHeads * c.headDim, kv = c.numKVHeads * c.headDim, f = c.intermediateSize
        var out = [ModelTensorSpec(role: .tokenEmbedding, shape: [c.vocabSize, h])]
        for i in 0..<c.numLayers {
            out.append(.init(role: .q(i), shape: [q, h]))
            if c.attentionBias { out.append(.init(role: .qBias(i), shape: [q])) }
            out.append(.init(role: .k(i), shape: [kv, h]))
            if c.attentionBias { out.append(.init(role: .kBias(i), shape: [kv])) }
            out.append(.init(role: .v(i), shape: [kv, h]))
            if c.attentionBias { out.append(.init(role: .vBias(i), shape: [kv])) }
            out.append(.init(role: .o(i), shape: [h, q]))
            out.append(.init(role: .gate(i), shape: [f, h]))
            out.append(.init(role: .up(i), shape: [f, h]))
            out.append(.init(role: .down(i), shape: [h, f]))
            out.append(.init(role: .attnNorm(i), shape: [h]))
            out.append(.init(role: .ffnNorm(i), shape: [h]))
        }
        out.append(.init(role: .outputNorm, shape: [h]))
        if !c.tieWordEmbeddings { out.append(.init(role: .output, shape: [c.vocabSize, h])) }
        return out
    }

    /// The weights of tensor `index` (HF layout): norms 1 ± 0.1, others ± 1/√fan-in.
    /// Depends only on (seed, index, role, shape), so both formats get the same values.
    public static func values(seed: UInt64, index: Int, spec: ModelTensorSpec) -> [Float] {
        var rng = SyntheticRNG(seed: seed &+ UInt64(index) &* 0x1000_0000_01B3)
        let n = elementCount(spec.shape) ?? 0
        switch spec.role {
        case .attnNorm, .ffnNorm, .outputNorm:
            return (0..<n).map { _ in 1 + 0.1 * rng.nextSigned() }
        default:
            let scale = 1 / Float(spec.shape.last ?? 1).squareRoot()
            return (0..<n).map { _ in scale * rng.nextSigned() }
        }
    }

    /// A tiny byte-level BPE vocabulary: the 256 GPT-2 byte symbols, a few merges, and
    /// three control tokens (<|endoftext|> = 0, <|im_start|> = 1, <|im_end|> = 2).
    public static let tinyVocabulary: GGUFVocabulary = {
        var tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        var types = [3, 3, 3]
        tokens += gpt2ByteSymbols
        types += Array(repeating: 1, count: 256)
        let merges = ["Ġ t", "h e", "Ġt he", "i n", "a n", "e r", "Ġ a", "o n"]
        for m in merges { tokens.append(m.replacingOccurrences(of: " ", with: "")); types.append(1) }
        return GGUFVocabulary(model: "gpt2", pre: "smollm", tokens: tokens, tokenTypes: types, merges: merges,
                              bosTokenId: 1, eosTokenId: 2, addBOS: false)
    }()

    /// The tiny vocabulary plus merges that make " he" and " she" single tokens (`Ġhe`, `Ġshe`),
    /// so that AFGB and UB are defined: the 7B-shaped preset's tokenizer (`create` runs on it).
    public static let pronounVocabulary: GGUFVocabulary = {
        var v = tinyVocabulary
        for m in ["Ġ he", "s he", "Ġ she"] {
            v.merges.append(m); v.tokens.append(m.replacingOccurrences(of: " ", with: "")); v.tokenTypes.append(1)
        }
        return v
    }()

    /// GPT-2's byte → printable-character table (`bytes_to_unicode`), in byte order.
    public static let gpt2ByteSymbols: [String] = {
        var printable = Array(33...126) + Array(161...172) + Array(174...255)
        var cps = printable
        var n = 0
        for b in 0..<256 where !printable.contains(b) {
            printable.append(b); cps.append(256 + n); n += 1
        }
        var table = [String](repeating: "", count: 256)
        for (b, c) in zip(printable, cps) { table[b] = String(Character(Unicode.Scalar(UInt32(c))!)) }
        return table
    }()

    /// Writes the model as an HF directory (config.json, tokenizer files, safetensors in
    /// `dtype`, sharded when `maxShardBytes` is given).
    public static func writeHF(to directory: URL, config c: ModelConfig, seed: UInt64, dtype: DType = .f32,
                               maxShardBytes: Int? = nil, vocabulary: GGUFVocabulary? = tinyVocabulary) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let specs = tensorSpecs(c)
        let st = specs.map { SafetensorsTensorSpec(name: TensorNames.hf($0.role), dtype: dtype, shape: $0.shape) }
        try writeSafetensorsCheckpoint(to: directory, tensors: st, maxShardBytes: maxShardBytes) { spec, w in
            let i = st.firstIndex { $0.name == spec.name }!
            let bytes = encode(values(seed: seed, index: i, spec: specs[i]), as: dtype)
            try bytes.withUnsafeBytes { try w.write(spec.name, $0) }
        }
        try HFConfig(c, bosTokenId: vocabulary?.bosTokenId, eosTokenId: vocabulary?.eosTokenId,
                     torchDtype: dtype == .bf16 ? "bfloat16" : dtype == .f16 ? "float16" : "float32")
            .encoded().write(to: directory.appendingPathComponent("config.json"))
        if let v = vocabulary {
            try Data(try HFTokenizerFiles.tokenizerJSON(v)).write(to: directory.appendingPathComponent("tokenizer.json"))
            try Data(HFTokenizerFiles.tokenizerConfigJSON(v, maxLength: c.maxPositions))
                .write(to: directory.appendingPathComponent("tokenizer_config.json"))
        }
    }

    /// Writes the same model as a llama.cpp-style GGUF (v3): `<arch>.*` hyperparameters, the
    /// vocabulary as `tokenizer.ggml.*`, tensors in `dtype` (F32, F16, BF16, Q8_0, Q4_0, Q4_1)
    /// with Q/K rows permuted as llama.cpp does for Llama (adjacent-pair RoPE). Opening it
    /// gives `ropeStyle == .adjacentPairs`; un-permuting Q/K gives back `values(...)`.
    /// `ropeFreqs` adds llama.cpp's `rope_freqs.weight` (F32, one RoPE divisor per pair, as its
    /// converter writes for llama3 rope scaling) with the given values and stored type.
    public static func writeGGUF(to url: URL, config c: ModelConfig, seed: UInt64, dtype: DType = .f32,
                                 vocabulary v: GGUFVocabulary = tinyVocabulary,
                                 ropeFreqs: [Float]? = nil, ropeFreqsType: DType = .f32) throws {
        let a = c.architecture
        var meta: [GGUFKeyValue] = [
            .init(key: "general.architecture", value: .string(a)),
            .init(key: "general.name", value: .string("synthetic-\(seed)")),
            .init(key: "\(a).block_count", value: .uint32(UInt32(c.numLayers))),
            .init(key: "\(a).context_length", value: .uint32(UInt32(c.maxPositions))),
            .init(key: "\(a).embedding_length", value: .uint32(UInt32(c.hiddenSize))),
            .init(key: "\(a).feed_forward_length", value: .uint32(UInt32(c.intermediateSize))),
            .init(key: "\(a).attention.head_count", value: .uint32(UInt32(c.numHeads))),
            .init(key: "\(a).attention.head_count_kv", value: .uint32(UInt32(c.numKVHeads))),
            .init(key: "\(a).attention.key_length", value: .uint32(UInt32(c.headDim))),
            .init(key: "\(a).attention.value_length", value: .uint32(UInt32(c.headDim))),
            .init(key: "\(a).rope.dimension_count", value: .uint32(UInt32(c.headDim))),
            .init(key: "\(a).rope.freq_base", value: .float32(Float(c.ropeTheta))),
            .init(key: "\(a).attention.layer_norm_rms_epsilon", value: .float32(Float(c.rmsNormEps))),
            .init(key: "\(a).vocab_size", value: .uint32(UInt32(v.tokens.count))),
            .init(key: "tokenizer.ggml.model", value: .string(v.model)),
        ]
        if let p = v.pre { meta.append(.init(key: "tokenizer.ggml.pre", value: .string(p))) }
        meta.append(.init(key: "tokenizer.ggml.tokens", value: .array(.string, v.tokens.map(GGUFValue.string))))
        meta.append(.init(key: "tokenizer.ggml.token_type", value: .array(.int32, v.tokenTypes.map { .int32(Int32($0)) })))
        meta.append(.init(key: "tokenizer.ggml.merges", value: .array(.string, v.merges.map(GGUFValue.string))))
        if let b = v.bosTokenId { meta.append(.init(key: "tokenizer.ggml.bos_token_id", value: .uint32(UInt32(b)))) }
        if let e = v.eosTokenId { meta.append(.init(key: "tokenizer.ggml.eos_token_id", value: .uint32(UInt32(e)))) }
        meta.append(.init(key: "tokenizer.ggml.add_bos_token", value: .bool(v.addBOS)))

        let specs = tensorSpecs(c)
        // llama.cpp order: token_embd, then blocks, then output_norm / output; norms stay F32.
        func storedType(_ s: ModelTensorSpec) -> DType {
            switch s.role {
            case .attnNorm, .ffnNorm, .outputNorm, .qBias, .kBias, .vBias: return .f32
            default: return dtype
            }
        }
        var descs = try specs.map { try GGUFTensorDescriptor(name: TensorNames.gguf($0.role), dtype: storedType($0), shape: $0.shape) }
        if let f = ropeFreqs {
            // llama.cpp writes it before token_embd.weight
            descs.insert(try GGUFTensorDescriptor(name: RopeFrequencies.ggufTensorName, dtype: ropeFreqsType, shape: [f.count]), at: 0)
        }
        let w = try GGUFStreamWriter(url: url, metadata: meta, tensors: descs)
        if let f = ropeFreqs { try w.write(try quantize(f, to: ropeFreqsType)) }
        for (i, s) in specs.enumerated() {
            var v = values(seed: seed, index: i, spec: s)
            if a != "qwen2" {
                switch s.role {
                case .q, .qBias: v = try QKPermutation.hfToGGUF(v, rows: s.shape[0], heads: c.numHeads)
                case .k, .kBias: v = try QKPermutation.hfToGGUF(v, rows: s.shape[0], heads: c.numKVHeads)
                default: break
                }
            }
            try w.write(try quantize(v, to: storedType(s)))
        }
        try w.finish()
    }

    /// Floats → little-endian bytes of a float dtype (F32, F16, BF16).
    public static func encode(_ v: [Float], as dtype: DType) -> [UInt8] {
        switch dtype {
        case .bf16: return v.map(floatToBF16).withUnsafeBytes { Array($0) }
        case .f16: return v.map(floatToHalf).withUnsafeBytes { Array($0) }
        default: return v.withUnsafeBytes { Array($0) }
        }
    }

    /// A 7B-shaped BF16 checkpoint (≈13.5 GB for 32 blocks), sharded at `maxShardBytes`,
    /// written in 16 MiB chunks: memory use stays flat whatever the size. Values are random
    /// BF16 of magnitude 2^-10..2^-3 (not a trained model; for I/O and memory benchmarks),
    /// with `pronounVocabulary` as tokenizer.json / tokenizer_config.json.
    public static func write7BShaped(to directory: URL, layers: Int = 32, seed: UInt64 = 1,
                                     maxShardBytes: Int = 5_000_000_000,
                                     progress: ((Int, Int, String) -> Void)? = nil) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let c = sevenBConfig(layers: layers)
        let specs = tensorSpecs(c)
        let st = specs.map { SafetensorsTensorSpec(name: TensorNames.hf($0.role), dtype: .bf16, shape: $0.shape) }
        var rng = SyntheticRNG(seed: seed)
        let chunkElems = 8 << 20
        var chunk = [UInt16](repeating: 0, count: chunkElems)
        try writeSafetensorsCheckpoint(to: directory, tensors: st, maxShardBytes: maxShardBytes, progress: progress) { spec, w in
            var left = elementCount(spec.shape) ?? 0
            while left > 0 {
                let n = min(left, chunkElems)
                var i = 0
                while i < n {
                    var r = rng.next()
                    for _ in 0..<4 where i < n {
                        let bits = UInt16(truncatingIfNeeded: r)
                        // sign | exponent 117...124 | 7 mantissa bits
                        chunk[i] = (bits & 0x8000) | ((117 + ((bits >> 7) & 7)) << 7) | (bits & 0x7F)
                        r >>= 16; i += 1
                    }
                }
                try chunk.withUnsafeBytes { try w.append(UnsafeRawBufferPointer(rebasing: $0[0..<(2 * n)])) }
                left -= n
            }
        }
        try HFConfig(c, bosTokenId: 1, eosTokenId: 2, torchDtype: "bfloat16").encoded()
            .write(to: directory.appendingPathComponent("config.json"))
        // A small byte-level tokenizer (ids < 270 of the 32,000-row embedding) with " he" and
        // " she" as single tokens: enough for `create` and `eval` to run on this checkpoint.
        let v = pronounVocabulary
        try Data(try HFTokenizerFiles.tokenizerJSON(v)).write(to: directory.appendingPathComponent("tokenizer.json"))
        try Data(HFTokenizerFiles.tokenizerConfigJSON(v, maxLength: c.maxPositions))
            .write(to: directory.appendingPathComponent("tokenizer_config.json"))
    }
}
