import Foundation
import XCTest
import TestSupport

/// Runs the built `lftf-patch` (next to the test bundle) and captures its output.
struct CLIRun {
    var status: Int32
    var stdout: String
    var stderr: String

    static var binary: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("lftf-patch")
    }

    static func run(_ args: [String]) throws -> CLIRun {
        let r = try runProcess(binary, args)
        return CLIRun(status: r.status, stdout: r.stdout, stderr: r.stderr)
    }

    func json() throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(stdout.utf8)) as? [String: Any])
    }
}

func cliTempDir(_ name: String) throws -> URL {
    try TinyModel.scratchDirectory(name)
}

final class InspectTests: XCTestCase {
    /// A tiny model written by `lftf-patch synth` (seed 9).
    func synthTiny(_ extra: [String] = []) throws -> URL {
        let dir = try cliTempDir("tiny").appendingPathComponent("m")
        let r = try CLIRun.run(["synth", "-o", dir.path, "--seed", "9"] + extra)
        XCTAssertEqual(r.status, 0, r.stderr)
        return dir
    }

    func testInspectJSONShape() throws {
        let dir = try synthTiny()
        let r = try CLIRun.run(["inspect", dir.path, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try r.json()
        XCTAssertEqual(Set(j.keys), ["format", "location", "files", "config", "tensors", "totals"])
        XCTAssertEqual(j["format"] as? String, "safetensors")
        let config = try XCTUnwrap(j["config"] as? [String: Any])
        XCTAssertEqual(config["hiddenSize"] as? Int, 64)
        XCTAssertEqual(config["numLayers"] as? Int, 2)
        XCTAssertEqual(config["ropeStyle"] as? String, "halves")
        let tensors = try XCTUnwrap(j["tensors"] as? [[String: Any]])
        XCTAssertEqual(tensors.count, 20)
        let embed = tensors[0]
        XCTAssertEqual(embed["name"] as? String, "model.embed_tokens.weight")
        XCTAssertEqual(embed["dtype"] as? String, "F32")
        XCTAssertEqual(embed["shape"] as? [Int], [267, 64])
        XCTAssertEqual(embed["bytes"] as? Int, 267 * 64 * 4)
        XCTAssertNil(embed["sha256"])
        let totals = try XCTUnwrap(j["totals"] as? [String: Any])
        let params = 267 * 64 + 2 * (64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 128 * 64 + 2 * 64) + 64
        XCTAssertEqual(totals["parameters"] as? Int, params)
        XCTAssertEqual(totals["bytes"] as? Int, params * 4)
        XCTAssertEqual(totals["tensors"] as? Int, 20)
        let files = try XCTUnwrap(j["files"] as? [[String: Any]])
        XCTAssertEqual(files.count, 1)
        XCTAssertEqual((files[0]["path"] as? String).map { URL(fileURLWithPath: $0).lastPathComponent }, "model.safetensors")
    }

    func testInspectHashMatchesSha256sumOfTheTensorBytes() throws {
        let dir = try synthTiny(["--dtype", "bf16", "--shard-size", "60KB"])
        let r = try CLIRun.run(["inspect", dir.path, "--json", "--hash"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try r.json()
        let files = try XCTUnwrap(j["files"] as? [[String: Any]]).compactMap { $0["path"] as? String }
        XCTAssertGreaterThan(files.count, 1)
        let tensors = try XCTUnwrap(j["tensors"] as? [[String: Any]])
        for t in [tensors[0], tensors[7], tensors.last!] {
            let file = try Data(contentsOf: URL(fileURLWithPath: files[try XCTUnwrap(t["file"] as? Int)]))
            let off = try XCTUnwrap(t["offset"] as? Int), n = try XCTUnwrap(t["bytes"] as? Int)
            let tmp = try cliTempDir("hash").appendingPathComponent("t.bin")
            try file.subdata(in: off..<(off + n)).write(to: tmp)
            let expected = try runProcess(URL(fileURLWithPath: "/usr/bin/sha256sum"), [tmp.path]).stdout.prefix(64)
            XCTAssertEqual(t["sha256"] as? String, String(expected), t["name"] as? String ?? "")
        }
    }

    func testInspectTextOutput() throws {
        let dir = try synthTiny()
        let r = try CLIRun.run(["inspect", dir.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.hasPrefix("format        safetensors\n"), r.stdout)
        XCTAssertTrue(r.stdout.contains("architecture  llama, 2 blocks, hidden 64, FFN 128"))
        XCTAssertTrue(r.stdout.contains("model.layers.1.mlp.down_proj.weight"))
        XCTAssertTrue(r.stdout.contains("20 tensors, "))
    }

    func testInspectSampleGGUF() throws {
        let gguf = try requireSampleModel()
        let r = try CLIRun.run(["inspect", gguf.path, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try r.json()
        XCTAssertEqual(j["format"] as? String, "gguf")
        let tensors = try XCTUnwrap(j["tensors"] as? [[String: Any]])
        XCTAssertEqual(tensors.count, 272)
        XCTAssertEqual(tensors.first { $0["name"] as? String == "token_embd.weight" }?["dtype"] as? String, "Q8_0")
        XCTAssertEqual(tensors.first { $0["name"] as? String == "blk.0.attn_q.weight" }?["dtype"] as? String, "Q4_1")
    }

    func testExitCodes() throws {
        let dir = try cliTempDir("exit")
        // 2: missing path, not a model, a directory without config.json, an unknown option.
        var r = try CLIRun.run(["inspect", dir.appendingPathComponent("missing").path])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.hasPrefix("error: "), r.stderr)
        XCTAssertTrue(r.stderr.contains("no such file"), r.stderr)
        let junk = dir.appendingPathComponent("junk.gguf")
        try Data("GGUF but not really".utf8).write(to: junk)
        r = try CLIRun.run(["inspect", junk.path])
        XCTAssertEqual(r.status, 2, r.stderr)
        r = try CLIRun.run(["inspect", dir.path])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("config.json"), r.stderr)
        r = try CLIRun.run(["inspect", dir.path, "--bogus"])
        XCTAssertEqual(r.status, 2)
        r = try CLIRun.run(["inspect"])
        XCTAssertEqual(r.status, 2)
        // A corrupt safetensors header: 2 with the specific message.
        let m = try synthTiny()
        let st = m.appendingPathComponent("model.safetensors")
        var b = try Data(contentsOf: st)
        b[3] = 0x7F   // header size ≫ 100 MB
        try b.write(to: st)
        r = try CLIRun.run(["inspect", m.path])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("exceeds the 100000000-byte limit"), r.stderr)
        // 0: help.
        r = try CLIRun.run(["inspect", "--help"])
        XCTAssertEqual(r.status, 0)
        XCTAssertTrue(r.stdout.contains("--hash"))
    }
}
