import Foundation
import XCTest
@testable import ModelFormats
import TestSupport

/// The tiny model in both formats holds the same weights, and GGUF → HF conversion gives
/// back, byte for byte, the HF directory the generator writes directly.
final class CheckpointSyntheticTests: XCTestCase {
    func testTinyGGUFHoldsTheSameModelWithPermutedQK() throws {
        let g = try openCheckpoint(TinyModel.ggufFile())
        XCTAssertEqual(g.format, .gguf)
        var expected = SyntheticModel.tinyConfig()
        expected.ropeStyle = .adjacentPairs
        expected.rmsNormEps = Double(Float(1e-5))   // GGUF stores it as float32
        XCTAssertEqual(g.config, expected)
        let specs = SyntheticModel.tensorSpecs(g.config)
        XCTAssertEqual(g.tensors.count, specs.count)
        for (i, s) in specs.enumerated() {
            let hf = SyntheticModel.values(seed: TinyModel.seed, index: i, spec: s)
            var v = try g.floats(XCTUnwrap(g.tensorInfo(for: s.role)))
            // Undo llama.cpp's permutation by its definition: GGUF row h·d + 2i + j ← HF row h·d + j·d/2 + i.
            if case .q = s.role { v = unpermute(v, rows: s.shape[0], heads: 4) }
            if case .k = s.role { v = unpermute(v, rows: s.shape[0], heads: 2) }
            XCTAssertEqual(v, hf, "\(s.role)")
        }
        // Q really is permuted in the file (row 1 of HF is row 2 of GGUF).
        let q = try g.floats(XCTUnwrap(g.tensorInfo(for: .q(0))))
        let hq = SyntheticModel.values(seed: TinyModel.seed, index: 1, spec: specs[1])
        XCTAssertEqual(Array(q[(2 * 64)..<(3 * 64)]), Array(hq[64..<128]))
        XCTAssertNotEqual(Array(q[64..<128]), Array(hq[64..<128]))
    }

    func unpermute(_ g: [Float], rows: Int, heads: Int) -> [Float] {
        let cols = g.count / rows, d = rows / heads
        var out = g
        for r in 0..<rows {
            let h = r / d, j = (r % d) / (d / 2), i = r % (d / 2)
            let src = h * d + 2 * i + j
            for c in 0..<cols { out[r * cols + c] = g[src * cols + c] }
        }
        return out
    }

    func testConvertingTheTinyGGUFReproducesTheHFDirectoryByteForByte() throws {
        let direct = try TinyModel.hfDirectory(dtype: .f32)
        let out = try TinyModel.scratchDirectory("conv").appendingPathComponent("m")
        try convertGGUFToHF(try GGUFCheckpoint(url: TinyModel.ggufFile()), to: out, dtype: .f32, maxShardBytes: nil)
        for name in ["model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"] {
            XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent(name)),
                           try Data(contentsOf: direct.appendingPathComponent(name)), name)
        }
        // No temporary directory left beside the output.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out.deletingLastPathComponent().path), ["m"])
    }

    func testConvertToBF16ShardedMatchesBF16Generator() throws {
        let direct = try TinyModel.hfDirectory(dtype: .bf16, sharded: true)
        let out = try TinyModel.scratchDirectory("convbf").appendingPathComponent("m")
        try convertGGUFToHF(try GGUFCheckpoint(url: TinyModel.ggufFile()), to: out, dtype: .bf16, maxShardBytes: 50_000)
        let names = try FileManager.default.contentsOfDirectory(atPath: direct.path).filter { $0.contains("safetensors") }.sorted()
        XCTAssertGreaterThan(names.count, 2)
        for n in names {
            XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent(n)), try Data(contentsOf: direct.appendingPathComponent(n)), n)
        }
    }

    func testConvertRefusesMissingTensorsAndCleansUp() throws {
        // A GGUF without blk.1.*: the architecture says 2 blocks, so convert must refuse.
        let dir = try TinyModel.scratchDirectory("missing")
        let src = try GGUFCheckpoint(url: TinyModel.ggufFile())
        let kept = src.tensors.filter { !$0.name.hasPrefix("blk.1.") }
        let u = dir.appendingPathComponent("cut.gguf")
        let meta = src.file.metadata
        let w = try GGUFStreamWriter(url: u, metadata: meta, tensors: kept.map { try GGUFTensorDescriptor(name: $0.name, dtype: $0.dtype, shape: $0.shape) })
        for t in kept { try w.write(try src.rawBytes(t)) }
        try w.finish()
        let out = dir.appendingPathComponent("out")
        XCTAssertThrowsError(try convertGGUFToHF(try GGUFCheckpoint(url: u), to: out, dtype: .bf16, maxShardBytes: nil)) {
            XCTAssertEqual($0 as? HFConvertError, .missingTensor(name: "blk.1.attn_q.weight"))
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["cut.gguf"])
    }
}
