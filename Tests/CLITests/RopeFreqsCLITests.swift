import Foundation
import XCTest
import ModelFormats
import TestSupport

/// `inspect` and `convert` on a GGUF with llama.cpp's rope_freqs.weight (llama3 rope scaling).
final class RopeFreqsCLITests: XCTestCase {
    func llama31StyleGGUF() throws -> URL {
        var c = SyntheticModel.tinyConfig()
        c.ropeTheta = 500000
        let f = RopeFrequencies.llama3Factors(headDim: c.headDim, theta: c.ropeTheta, factor: 8, lowFreqFactor: 1,
                                              highFreqFactor: 4, originalMaxPositions: 8192)
        let url = try cliTempDir("ropefreqs").appendingPathComponent("llama31.gguf")
        try SyntheticModel.writeGGUF(to: url, config: c, seed: 3, ropeFreqs: f.map(Float.init))
        return url
    }

    func testInspectShowsRopeFreqs() throws {
        let url = try llama31StyleGGUF()
        let r = try CLIRun.run(["inspect", url.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("rope freqs    rope_freqs.weight: 8 per-pair divisors, 1…8 = llama3 scaling ×8, low_freq_factor 1, high_freq_factor 4, original context 8192\n"), r.stdout)
        let j = try CLIRun.run(["inspect", "--json", url.path]).json()
        let rf = try XCTUnwrap(j["ropeFrequencies"] as? [String: Any])
        XCTAssertEqual(rf["tensor"] as? String, "rope_freqs.weight")
        XCTAssertEqual((rf["factors"] as? [Double])?.count, 8)
        XCTAssertEqual((rf["llama3"] as? [String: Any])?["factor"] as? Double, 8)
    }

    func testConvertWritesRopeScaling() throws {
        let url = try llama31StyleGGUF()
        let out = try cliTempDir("ropefreqsconv").appendingPathComponent("hf")
        let r = try CLIRun.run(["convert", url.path, "-o", out.path, "--dtype", "f32"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse((r.stdout + r.stderr).contains("skipping GGUF tensor rope_freqs"), r.stdout + r.stderr)
        let cfg = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json"))) as? [String: Any])
        let rs = try XCTUnwrap(cfg["rope_scaling"] as? [String: Any])
        XCTAssertEqual(rs["rope_type"] as? String, "llama3")
        XCTAssertEqual(rs["factor"] as? Double, 8)
        XCTAssertEqual(rs["low_freq_factor"] as? Double, 1)
        XCTAssertEqual(rs["high_freq_factor"] as? Double, 4)
        XCTAssertEqual(rs["original_max_position_embeddings"] as? Int, 8192)
    }
}
