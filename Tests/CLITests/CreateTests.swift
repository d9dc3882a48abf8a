import Foundation
import XCTest
import ModelFormats
import TestSupport

/// `create` and `locate` end to end on a tiny random model (seconds, no sample model needed):
/// a vocabulary where " he" and " she" are single tokens, a small prompt file with every kind
/// and split, then the patch: written, deterministic, its scores measured as stored.
final class CreateTests: XCTestCase {
    static let prompts: String = {
        var lines: [String] = []
        let profs = ["nurse", "pilot", "chef", "judge", "baker", "clerk", "guard", "coach"]
        let splits = ["train", "train", "train", "train", "dev", "dev", "test", "test"]
        for (p, s) in zip(profs, splits) {
            for (t, scale) in [("sighed", "word"), ("went home early", "phrase")] {
                lines.append(#"{"prompt": "The \#(p) \#(t) because", "kind": "bias", "scale": "\#(scale)", "profession": "\#(p)", "split": "\#(s)"}"#)
            }
            for (g, pro) in [("male", "his"), ("female", "her")] {
                lines.append(#"{"prompt": "The \#(p) lost \#(pro) keys because", "kind": "hint", "hint": "\#(g)", "profession": "\#(p)", "split": "\#(s)"}"#)
            }
        }
        for (i, t) in ["The river flows into the", "Rain fell on the", "Iron rusts in", "A square has four",
                       "The moon orbits the", "Salt dissolves in"].enumerated() {
            lines.append(#"{"prompt": "\#(t)", "kind": "neutral", "split": "\#(["train", "train", "dev", "test", "train", "test"][i])"}"#)
        }
        return lines.joined(separator: "\n") + "\n"
    }()

    /// The tiny model with " he" and " she" as single tokens.
    func makeModel() throws -> (model: URL, data: URL) {
        let dir = try cliTempDir("create")
        var v = SyntheticModel.tinyVocabulary
        for m in ["h e", "Ġ he", "s he", "Ġ she"] { v.merges.append(m); v.tokens.append(m.replacingOccurrences(of: " ", with: "")); v.tokenTypes.append(1) }
        var c = SyntheticModel.tinyConfig(layers: 3)
        c.vocabSize = v.tokens.count
        let model = dir.appendingPathComponent("tiny")
        try SyntheticModel.writeHF(to: model, config: c, seed: 99, dtype: .f32, vocabulary: v)
        let data = dir.appendingPathComponent("prompts.jsonl")
        try Data(Self.prompts.utf8).write(to: data)
        return (model, data)
    }

    func testCreateWritesDeterministicPatchScoredAsStored() throws {
        let (model, data) = try makeModel()
        let out1 = model.deletingLastPathComponent().appendingPathComponent("a.lftfpatch")
        let out2 = model.deletingLastPathComponent().appendingPathComponent("b.lftfpatch")
        let args = ["create", model.path, "--data", data.path, "--lr", "1e-2", "--epochs", "2", "--batch", "2",
                    "--seed", "5", "--eval-split", "dev", "--json"]
        var r = try CLIRun.run(args + ["-o", out1.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        // progress on stderr: stages, epochs, steps, loss, ETA
        XCTAssertTrue(r.stderr.contains("locate (contrast)"), r.stderr)
        XCTAssertTrue(r.stderr.contains("epoch 2/2  step 8/8"), r.stderr)
        XCTAssertTrue(r.stderr.contains("ETA"), r.stderr)
        let j = try r.json()
        XCTAssertEqual(j["method"] as? String, "LFTF")
        XCTAssertEqual(j["loss"] as? String, "balance")
        XCTAssertEqual(j["steps"] as? Int, 8)           // 2 epochs × ⌈8 train bias prompts / 2⌉
        XCTAssertEqual(j["tensors"] as? Int, 7)
        XCTAssertEqual(j["stored_dtypes"] as? [String], ["F32"])
        let ranking = try XCTUnwrap(j["ranking"] as? [Int])
        XCTAssertEqual(ranking.sorted(), [0, 1, 2])
        XCTAssertEqual(j["block"] as? Int, ranking[0])
        let before = try XCTUnwrap(j["before"] as? [String: Double]), after = try XCTUnwrap(j["after"] as? [String: Double])
        XCTAssertEqual(before["n_bias"], 4); XCTAssertEqual(before["n_hint"], 4)
        XCTAssertNotEqual(before["afgb"], after["afgb"], "the patch changes the model")
        XCTAssertGreaterThan(try XCTUnwrap(after["neutral_kl"]), 0)
        XCTAssertGreaterThan(try XCTUnwrap(j["peak_rss_bytes"] as? Int), 0)

        // Same inputs and seed: a byte-identical patch.
        r = try CLIRun.run(args + ["-o", out2.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try Data(contentsOf: out1), try Data(contentsOf: out2))
        // The output is not overwritten without --force.
        r = try CLIRun.run(args + ["-o", out2.path])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("--force"), r.stderr)
        // Another seed, another patch.
        let out3 = model.deletingLastPathComponent().appendingPathComponent("c.lftfpatch")
        r = try CLIRun.run(["create", model.path, "--data", data.path, "--lr", "1e-2", "--batch", "2", "--seed", "6",
                            "--eval-split", "dev", "--quiet", "-o", out3.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertNotEqual(try Data(contentsOf: out1), try Data(contentsOf: out3))
        XCTAssertTrue(r.stdout.contains("AFGB"), r.stdout)
    }

    func testCreatePaperLossFPFTAndBadInput() throws {
        let (model, data) = try makeModel()
        let dir = model.deletingLastPathComponent()
        var r = try CLIRun.run(["create", model.path, "--data", data.path, "--loss", "paper", "--all-blocks", "--lr", "1e-3",
                                "--batch", "4", "--eval-split", "test", "--json", "--quiet", "-o", dir.appendingPathComponent("f.lftfpatch").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try r.json()
        XCTAssertEqual(j["method"] as? String, "FPFT")
        XCTAssertEqual(j["tensors"] as? Int, 21)     // 3 blocks × 7 weights
        XCTAssertEqual(j["steps"] as? Int, 4)        // 2 epochs × 8 bias prompts / 4

        r = try CLIRun.run(["create", model.path, "--data", data.path, "--block", "7", "-o", dir.appendingPathComponent("x.lftfpatch").path])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("block 7 does not exist"), r.stderr)
        r = try CLIRun.run(["create", model.path, "--block", "1", "--all-blocks", "-o", dir.appendingPathComponent("y.lftfpatch").path])
        XCTAssertEqual(r.status, 2)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("x.lftfpatch").path))
    }

    /// A change below the stored dtype's rounding step is detected and refused, not shipped.
    func testChangeThatVanishesOnRoundingIsRefused() throws {
        let (model, data) = try makeModel()
        let out = model.deletingLastPathComponent().appendingPathComponent("v.lftfpatch")
        var r = try CLIRun.run(["create", model.path, "--data", data.path, "--lr", "1e-7", "--batch", "4", "--block", "1",
                                "--stored-dtype", "bf16", "--eval-split", "dev", "-o", out.path])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("vanishes when its tensors are rounded to BF16"), r.stderr)
        XCTAssertTrue(r.stderr.contains("warning: model.layers.1."), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
        // The same run stored as F32 keeps the whole change.
        r = try CLIRun.run(["create", model.path, "--data", data.path, "--lr", "1e-7", "--batch", "4", "--block", "1",
                            "--stored-dtype", "f32", "--eval-split", "dev", "--quiet", "-o", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func testLocateJSONAndChart() throws {
        let (model, data) = try makeModel()
        let svg = model.deletingLastPathComponent().appendingPathComponent("bmi.svg")
        let r = try CLIRun.run(["locate", model.path, "--data", data.path, "--locator", "bmi", "--json", "--chart", svg.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try r.json()
        XCTAssertEqual(j["n_bias"] as? Int, 8)
        let bmi = try XCTUnwrap(j["bmi"] as? [Double])
        XCTAssertEqual(bmi.count, 3)
        XCTAssertEqual(j["top"] as? Int, bmi.indices.max { bmi[$0] < bmi[$1] })
        XCTAssertTrue(bmi.allSatisfy { $0 > 0 && $0 < 2 })
        XCTAssertTrue(try String(contentsOf: svg, encoding: .utf8).hasPrefix("<svg"))
    }
}
