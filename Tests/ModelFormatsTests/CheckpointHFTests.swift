import Foundation
import XCTest
@testable import ModelFormats
import TestSupport

final class CheckpointHFTests: XCTestCase {
    // MARK: Tiny synthetic model

    func testTinyHFDirectoryOpensWithConfigTokenizerAndValues() throws {
        let dir = try TinyModel.hfDirectory()
        let ck = try openCheckpoint(dir)
        XCTAssertEqual(ck.format, .safetensors)
        XCTAssertEqual(ck.config, SyntheticModel.tinyConfig())
        XCTAssertEqual(ck.config.ropeStyle, .halves)
        let specs = SyntheticModel.tensorSpecs(ck.config)
        XCTAssertEqual(ck.tensors.map(\.name), specs.map { TensorNames.hf($0.role) })
        XCTAssertEqual(ck.tensors.count, 1 + 2 * 9 + 1)   // embed, 9 per block, final norm (tied: no lm_head)
        for (i, s) in specs.enumerated() {
            let t = try XCTUnwrap(ck.tensorInfo(for: s.role))
            XCTAssertEqual(t.shape, s.shape)
            XCTAssertEqual(try ck.floats(t), SyntheticModel.values(seed: TinyModel.seed, index: i, spec: s), t.name)
        }
        XCTAssertEqual(ck.name(for: .q(1)), "model.layers.1.self_attn.q_proj.weight")
        let hf = try XCTUnwrap(ck as? HFCheckpoint)
        XCTAssertEqual(hf.tokenizerJSON?.lastPathComponent, "tokenizer.json")
        XCTAssertEqual(hf.tokenizerConfigJSON?.lastPathComponent, "tokenizer_config.json")
        // Fixed seed → fixed values (guards against the generator changing silently).
        let q = try ck.floats(XCTUnwrap(ck.tensorInfo(for: .q(0))))
        XCTAssertEqual(q.count, 64 * 64)
        XCTAssertTrue(q.allSatisfy { abs($0) <= 0.125 })
        XCTAssertNotEqual(q[0], q[1])
    }

    func testBF16AndShardedHoldTheSameValues() throws {
        let single = try openCheckpoint(TinyModel.hfDirectory(dtype: .f32))
        let sharded = try openCheckpoint(TinyModel.hfDirectory(dtype: .bf16, sharded: true))
        XCTAssertGreaterThanOrEqual(sharded.files.count, 3)
        XCTAssertEqual(sharded.files.map(\.lastPathComponent), sharded.files.map(\.lastPathComponent).sorted())
        XCTAssertEqual(sharded.tensors.map(\.name).sorted(), single.tensors.map(\.name).sorted())
        for t in single.tensors {
            let a = try single.floats(t), b = try sharded.floats(XCTUnwrap(sharded.tensorInfo(named: t.name)))
            XCTAssertEqual(b, a.map { bf16ToFloat(floatToBF16($0)) }, t.name)
        }
    }

    func testShardedSyntheticRoundTripIsByteIdentical() throws {
        for (dtype, sharded) in [(DType.f32, false), (.bf16, true)] {
            let dir = try TinyModel.hfDirectory(dtype: dtype, sharded: sharded)
            let ck = try XCTUnwrap(try openCheckpoint(dir) as? HFCheckpoint)
            let out = try tempDir("rt\(sharded)")
            try ck.safetensors.write(to: out)
            let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains("safetensors") }
            XCTAssertEqual(names.count, sharded ? ck.files.count + 1 : 1)
            XCTAssertEqual(ck.files.count > 1, sharded)
            for n in names {
                XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent(n)), try Data(contentsOf: dir.appendingPathComponent(n)), n)
            }
        }
    }

    func testSameSeedSameBytesOtherSeedOtherBytes() throws {
        let a = try tempDir("a"), b = try tempDir("b"), c = try tempDir("c")
        try SyntheticModel.writeHF(to: a, config: SyntheticModel.tinyConfig(), seed: 5)
        try SyntheticModel.writeHF(to: b, config: SyntheticModel.tinyConfig(), seed: 5)
        try SyntheticModel.writeHF(to: c, config: SyntheticModel.tinyConfig(), seed: 6)
        let f = { (u: URL) in try Data(contentsOf: u.appendingPathComponent("model.safetensors")) }
        XCTAssertEqual(try f(a), try f(b))
        XCTAssertNotEqual(try f(a), try f(c))
    }

    // MARK: config.json

    func testHFConfigDefaultsAndVariants() throws {
        let minimal = """
        {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 3, "num_attention_heads": 8,
         "vocab_size": 1000, "eos_token_id": [5, 6],
         "rope_scaling": {"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": 8192}}
        """
        let cfg = try JSONDecoder().decode(HFConfig.self, from: Data(minimal.utf8))
        let m = cfg.modelConfig
        XCTAssertEqual(m.architecture, "llama")
        XCTAssertEqual(m.numKVHeads, 8)
        XCTAssertEqual(m.headDim, 16)
        XCTAssertEqual(m.rmsNormEps, 1e-6)
        XCTAssertEqual(m.ropeTheta, 10000)
        XCTAssertEqual(m.maxPositions, 2048)
        XCTAssertFalse(m.tieWordEmbeddings)
        XCTAssertFalse(m.attentionBias)
        XCTAssertEqual(m.ropeScaling, RopeScaling(type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192))
        XCTAssertEqual(cfg.eosTokenId, 5)
        let qwen = try JSONDecoder().decode(HFConfig.self, from: Data("""
        {"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
         "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 10, "rope_theta": 1000000.0,
         "tie_word_embeddings": true, "head_dim": 32}
        """.utf8))
        XCTAssertTrue(qwen.modelConfig.attentionBias)
        XCTAssertEqual(qwen.modelConfig.headDim, 32)
        XCTAssertEqual(qwen.modelConfig.ropeTheta, 1e6)
        // A config written from a ModelConfig reads back the same.
        let back = try JSONDecoder().decode(HFConfig.self, from: HFConfig(SyntheticModel.tinyConfig()).encoded())
        XCTAssertEqual(back.modelConfig, SyntheticModel.tinyConfig())
    }

    // MARK: openCheckpoint

    func testOpenCheckpointErrors() throws {
        let dir = try tempDir()
        XCTAssertThrowsError(try openCheckpoint(dir.appendingPathComponent("nope"))) {
            XCTAssertEqual($0 as? OpenCheckpointError, .notFound(path: dir.appendingPathComponent("nope").path))
        }
        let junk = dir.appendingPathComponent("junk.bin")
        try Data("not a model at all".utf8).write(to: junk)
        XCTAssertThrowsError(try openCheckpoint(junk)) {
            guard case OpenCheckpointError.notAModel = $0 else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try openCheckpoint(dir)) {
            XCTAssertEqual($0 as? HFCheckpointError, .missingConfig(directory: dir.path))
        }
        try Data("{\"hidden_size\": 64}".utf8).write(to: dir.appendingPathComponent("config.json"))
        XCTAssertThrowsError(try openCheckpoint(dir)) {
            guard case HFCheckpointError.invalidConfig(_, let r) = $0 else { return XCTFail("\($0)") }
            XCTAssertTrue(r.contains("intermediate_size"), r)
        }
        try Data("{\"hidden_size\": 64, \"intermediate_size\": 1, \"num_hidden_layers\": 1, \"num_attention_heads\": 3, \"num_key_value_heads\": 2, \"vocab_size\": 4}".utf8)
            .write(to: dir.appendingPathComponent("config.json"))
        XCTAssertThrowsError(try openCheckpoint(dir)) {
            guard case HFCheckpointError.inconsistentConfig = $0 else { return XCTFail("\($0)") }
        }
        // A .safetensors file alone is not a model: say so.
        let single = try TinyModel.hfDirectory().appendingPathComponent("model.safetensors")
        XCTAssertThrowsError(try openCheckpoint(single)) {
            guard case OpenCheckpointError.notAModel(_, let r) = $0 else { return XCTFail("\($0)") }
            XCTAssertTrue(r.contains("directory"))
        }
    }

    // MARK: The converted sample model

    func testConvertedSampleRoundTripsByteIdentical() throws {
        let dir = try TinyModel.convertedSample()
        let ck = try XCTUnwrap(try openCheckpoint(dir) as? HFCheckpoint)
        XCTAssertEqual(ck.files.map(\.lastPathComponent), ["model.safetensors"])
        let out = try tempDir()
        try ck.safetensors.write(to: out)
        XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("model.safetensors")),
                       try Data(contentsOf: dir.appendingPathComponent("model.safetensors")))
    }

    func testConvertedSampleConfigAndTokenizer() throws {
        let dir = try TinyModel.convertedSample()
        let ck = try XCTUnwrap(try openCheckpoint(dir) as? HFCheckpoint)
        let c = ck.config
        XCTAssertEqual([c.numLayers, c.hiddenSize, c.numHeads, c.numKVHeads, c.headDim, c.intermediateSize, c.vocabSize],
                       [30, 576, 9, 3, 64, 1536, 49152])
        XCTAssertEqual(c.ropeTheta, 100000)
        XCTAssertEqual(c.rmsNormEps, 1e-5)
        XCTAssertTrue(c.tieWordEmbeddings)
        XCTAssertEqual(c.ropeStyle, .halves)
        XCTAssertEqual(ck.tensors.count, 1 + 30 * 9 + 1)
        XCTAssertTrue(ck.tensors.allSatisfy { $0.dtype == .bf16 })
        XCTAssertNil(ck.tensorInfo(for: .output))

        let tok = try parseJSON(Array(Data(contentsOf: XCTUnwrap(ck.tokenizerJSON))))
        XCTAssertEqual(tok["model"]?["type"], .string("BPE"))
        XCTAssertEqual(tok["model"]?["vocab"]?.objectPairs?.count, 49152)
        XCTAssertEqual(tok["model"]?["vocab"]?["<|im_start|>"], .int(1))
        XCTAssertEqual(tok["pre_tokenizer"]?["pretokenizers"]?.arrayValue?.first?["type"], .string("Digits"))
        XCTAssertEqual(tok["pre_tokenizer"]?["pretokenizers"]?.arrayValue?.last?["use_regex"], .bool(true))
        XCTAssertEqual(tok["decoder"]?["type"], .string("ByteLevel"))
        let added = try XCTUnwrap(tok["added_tokens"]?.arrayValue)
        XCTAssertEqual(added.first?["content"], .string("<|endoftext|>"))
        XCTAssertTrue(added.contains { $0["content"] == .string("<|im_end|>") && $0["id"] == .int(2) })
        let g = try GGUFCheckpoint(url: requireSampleModel())
        XCTAssertEqual(tok["model"]?["merges"]?.arrayValue?.count, g.metadata["tokenizer.ggml.merges"]?.arrayValue?.count)
        let tc = try parseJSON(Array(Data(contentsOf: XCTUnwrap(ck.tokenizerConfigJSON))))
        XCTAssertEqual(tc["add_bos_token"], .bool(false))
        XCTAssertEqual(tc["bos_token"], .string("<|im_start|>"))
        XCTAssertEqual(tc["eos_token"], .string("<|im_end|>"))
    }

    /// Every converted tensor equals the GGUF's dequantized values rounded to BF16, with Q/K
    /// rows un-permuted. The permutation here is written from its definition (llama.cpp's
    /// convert_hf_to_gguf.py `permute`: w.reshape(heads, 2, d/2, cols).swapaxes(1, 2)), not
    /// from QKPermutation: GGUF row h·d + 2i + j holds HF row h·d + j·d/2 + i.
    func testConvertedSampleValuesEqualGGUFWithUnpermutedQK() throws {
        let dir = try TinyModel.convertedSample()
        let hf = try openCheckpoint(dir)
        let g = try GGUFCheckpoint(url: requireSampleModel())
        let roles: [TensorRole] = [.tokenEmbedding, .outputNorm, .q(0), .k(0), .v(0), .o(0), .gate(0), .up(0), .down(0),
                                   .attnNorm(0), .ffnNorm(0), .q(29), .k(29), .down(17)]
        for role in roles {
            let gt = try XCTUnwrap(g.tensorInfo(for: role)), ht = try XCTUnwrap(hf.tensorInfo(for: role))
            XCTAssertEqual(gt.shape, ht.shape)
            let gv = try g.floats(gt), hv = try hf.floats(ht)
            let cols = gt.shape.count == 2 ? gt.shape[1] : 1, rows = gt.shape[0]
            var heads = 0
            if case .q = role { heads = 9 }
            if case .k = role { heads = 3 }
            var mismatches = 0
            for r in 0..<rows {
                var src = r
                if heads > 0 {
                    let d = rows / heads, h = r / d, j = (r % d) / (d / 2), i = r % (d / 2)
                    src = h * d + 2 * i + j
                }
                for c in 0..<cols where hv[r * cols + c] != bf16ToFloat(floatToBF16(gv[src * cols + c])) { mismatches += 1 }
            }
            XCTAssertEqual(mismatches, 0, "\(role)")
        }
        // Values recorded with gguf-py 0.x (gguf.quants.dequantize of blk.0.attn_q.weight / attn_k.weight,
        // inverse-permuted with numpy reshape(h, d/2, 2, c).swapaxes(1, 2), rounded to BF16).
        let q = try hf.floats(XCTUnwrap(hf.tensorInfo(for: .q(0))))
        XCTAssertEqual(Array(q[(1 * 576)..<(1 * 576 + 4)]), [-0.1591796875, 0.3984375, -0.0198974609375, -1.2734375])
        XCTAssertEqual(Array(q[(33 * 576)..<(33 * 576 + 4)]), [-0.06298828125, 0.14453125, 0.00634765625, -0.408203125])
        let k = try hf.floats(XCTUnwrap(hf.tensorInfo(for: .k(0))))
        XCTAssertEqual(Array(k[(33 * 576)..<(33 * 576 + 4)]), [-0.09912109375, 0.2294921875, -0.23046875, -0.361328125])
        XCTAssertEqual(Array(k[(191 * 576)..<(191 * 576 + 4)]), [0.015869140625, -0.43359375, 0.015869140625, -0.734375])
    }
}
