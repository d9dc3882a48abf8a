import Foundation
import XCTest
import TestSupport

final class ConvertTests: XCTestCase {
    func testConvertSampleToShardedF32() throws {
        let gguf = try requireSampleModel()
        let parent = try cliTempDir("convert")
        let out = parent.appendingPathComponent("smol-f32")
        var r = try CLIRun.run(["convert", gguf.path, "--to", "safetensors", "--dtype", "f32", "-o", out.path, "--shard-size", "200MB"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("[272/272] model.norm.weight"), String(r.stderr.suffix(300)))
        let names = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
        XCTAssertEqual(names, ["config.json", "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                               "model-00003-of-00003.safetensors", "model.safetensors.index.json",
                               "tokenizer.json", "tokenizer_config.json"])
        // Nothing left behind but the output.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: parent.path), ["smol-f32"])
        r = try CLIRun.run(["inspect", out.path, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try r.json()
        let tensors = try XCTUnwrap(j["tensors"] as? [[String: Any]])
        XCTAssertEqual(tensors.count, 272)
        XCTAssertTrue(tensors.allSatisfy { $0["dtype"] as? String == "F32" })
        XCTAssertEqual((j["totals"] as? [String: Any])?["parameters"] as? Int, 134_515_008)
        let config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json"))) as? [String: Any])
        XCTAssertEqual(config["rms_norm_eps"] as? Double, 1e-5)
        XCTAssertEqual(config["num_key_value_heads"] as? Int, 3)
        XCTAssertEqual(config["tie_word_embeddings"] as? Bool, true)
        XCTAssertEqual(config["torch_dtype"] as? String, "float32")

        // Converting again into the same directory is refused and leaves it untouched.
        r = try CLIRun.run(["convert", gguf.path, "-o", out.path])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("already exists"), r.stderr)
    }

    func testConvertBadInputExitsTwo() throws {
        let dir = try cliTempDir("convbad")
        var r = try CLIRun.run(["convert", dir.path, "-o", dir.appendingPathComponent("o").path])
        XCTAssertEqual(r.status, 2)          // a directory without config.json
        r = try CLIRun.run(["convert", "x.gguf", "-o", "y", "--shard-size", "lots"])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("--shard-size"), r.stderr)
        r = try CLIRun.run(["convert", "x.gguf", "-o", "y", "--dtype", "q4_0"])
        XCTAssertEqual(r.status, 2)
        r = try CLIRun.run(["convert", "x.gguf"])
        XCTAssertEqual(r.status, 2)          // -o missing
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("o").path))
    }
}
