import XCTest
import TestSupport
@testable import ModelFormats

/// The real sample model (SmolLM2-135M-Instruct Q4_1) against the brief's facts and gguf-py.
final class GGUFSampleTests: XCTestCase {
    func testConfigAndTensors() throws {
        let ck = try GGUFCheckpoint(url: try requireSampleModel())
        let c = ck.config
        XCTAssertEqual(c.architecture, "llama")
        XCTAssertEqual(c.numLayers, 30)
        XCTAssertEqual(c.hiddenSize, 576)
        XCTAssertEqual(c.numHeads, 9)
        XCTAssertEqual(c.numKVHeads, 3)
        XCTAssertEqual(c.headDim, 64)
        XCTAssertEqual(c.intermediateSize, 1536)
        XCTAssertEqual(c.vocabSize, 49152)
        XCTAssertEqual(c.ropeTheta, 100000)
        XCTAssertEqual(c.rmsNormEps, 1e-5, accuracy: 1e-12)
        XCTAssertEqual(c.ropeStyle, .adjacentPairs)
        XCTAssertTrue(c.tieWordEmbeddings)
        XCTAssertFalse(c.attentionBias)
        XCTAssertNil(c.ropeScaling)
        XCTAssertEqual(ck.tensors.count, 272)
        XCTAssertEqual(ck.file.version, 3)
        XCTAssertEqual(ck.file.dataOffset, 1785664)
        XCTAssertEqual(ck.metadata["tokenizer.ggml.pre"]?.stringValue, "smollm")
        XCTAssertEqual(ck.metadata["tokenizer.ggml.add_bos_token"]?.boolValue, false)
        XCTAssertEqual(ck.metadata["tokenizer.ggml.merges"]?.arrayValue?.count, 48900)
        let emb = try XCTUnwrap(ck.tensorInfo(for: .tokenEmbedding))
        XCTAssertEqual(emb.dtype, .q8_0)
        XCTAssertEqual(emb.shape, [49152, 576])
        XCTAssertEqual(ck.tensorInfo(for: .q(0))?.dtype, .q4_1)
        XCTAssertEqual(ck.tensorInfo(for: .k(0))?.shape, [192, 576])
        XCTAssertEqual(ck.tensorInfo(for: .down(29))?.shape, [576, 1536])
        XCTAssertEqual(ck.tensorInfo(for: .attnNorm(3))?.dtype, .f32)
        XCTAssertNil(ck.tensorInfo(for: .output))
        // Every tensor name maps to a role and back.
        for t in ck.tensors {
            let role = try XCTUnwrap(TensorNames.role(ggufName: t.name), t.name)
            XCTAssertEqual(TensorNames.gguf(role), t.name)
        }
    }

    struct Fixture: Decodable {
        struct T: Decodable { var name: String; var type: String; var shape: [Int]; var indices: [Int]; var values: [Double]; var sum: Double; var sumAbs: Double }
        var source: String
        var tensors: [T]
    }

    func testDequantMatchesGGUFPy() throws {
        let ck = try GGUFCheckpoint(url: try requireSampleModel())
        let fx = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: fixtureURL("gguf_sample_dequant.json")))
        XCTAssertGreaterThanOrEqual(fx.tensors.count, 5)
        for t in fx.tensors {
            let info = try XCTUnwrap(ck.tensorInfo(named: t.name))
            XCTAssertEqual(info.dtype.rawValue, t.type)
            XCTAssertEqual(info.shape, t.shape)
            let v = try ck.floats(info)
            var maxDiff: Double = 0
            for (i, want) in zip(t.indices, t.values) { maxDiff = max(maxDiff, abs(Double(v[i]) - want)) }
            XCTAssertLessThanOrEqual(maxDiff, 1e-7, "\(t.name): max |diff| \(maxDiff) vs gguf-py")
            let sum = v.reduce(0.0) { $0 + Double($1) }, sumAbs = v.reduce(0.0) { $0 + abs(Double($1)) }
            XCTAssertEqual(sum, t.sum, accuracy: 1e-6 * max(1, t.sumAbs), t.name)
            XCTAssertEqual(sumAbs, t.sumAbs, accuracy: 1e-9 * t.sumAbs, t.name)
        }
    }
}
