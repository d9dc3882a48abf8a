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

    /// Small-data mode: --max-prompts N keeps a seeded, stratified subset of each (split, kind);
    /// the scores say what they were measured on, the manifest records the subset, and the
    /// same inputs and seed give the same bytes.
    func testMaxPromptsSubsetIsRecordedAndDeterministic() throws {
        let (model, data) = try makeModel()
        let dir = model.deletingLastPathComponent()
        let args = ["create", model.path, "--data", data.path, "--max-prompts", "2", "--lr", "1e-2", "--batch", "2",
                    "--hint-per-batch", "1", "--neutral-per-batch", "1", "--seed", "5", "--eval-split", "dev", "--json"]
        var r = try CLIRun.run(args + ["-o", dir.appendingPathComponent("s1.lftfpatch").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("small-data mode (--max-prompts 2, seed 5): train bias 2 of 8, train hint 2 of 8"), r.stderr)
        XCTAssertTrue(r.stderr.contains("(whole run ≈ "), r.stderr)
        // before training: the work ahead, estimated at the rate locating ran at
        XCTAssertTrue(r.stderr.contains("estimate (at the rate of locating): "), r.stderr)
        XCTAssertTrue(r.stderr.contains("; whole run ≈ "), r.stderr)
        let j = try r.json()
        XCTAssertEqual(j["steps"] as? Int, 2)           // 2 epochs × (2 of 8 training bias prompts / batch 2)
        let before = try XCTUnwrap(j["before"] as? [String: Double]), after = try XCTUnwrap(j["after"] as? [String: Double])
        XCTAssertEqual(before["n_bias"], 2); XCTAssertEqual(before["n_hint"], 2)   // 2 of 4 dev bias, 2 of 4 dev hint
        XCTAssertEqual(after["n_bias"], 2)
        let timings = try XCTUnwrap(j["timings"] as? [String: Double])
        for stage in ["open", "score base", "locate", "train", "encode", "score patched", "write"] {
            XCTAssertNotNil(timings[stage], "no time for stage \(stage): \(timings.keys.sorted())")
        }
        // one word-scale and one phrase-scale prompt of each split's bias prompts
        XCTAssertNotNil(before["afgb_word"]); XCTAssertNotNil(before["afgb_phrase"])

        r = try CLIRun.run(["info", dir.appendingPathComponent("s1.lftfpatch").path, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let m = try XCTUnwrap(try r.json()["manifest"] as? [String: Any])
        let prov = try XCTUnwrap(m["provenance"] as? [String: Any])
        XCTAssertEqual((prov["hyperparameters"] as? [String: Any])?["max_prompts"] as? Int, 2)
        let subset = try XCTUnwrap(prov["subset"] as? [String: Any])
        XCTAssertEqual(subset["max_per_split_and_kind"] as? Int, 2)
        let groups = try XCTUnwrap(subset["groups"] as? [String: [String: Any]])
        XCTAssertEqual(groups["train/bias"]?["kept"] as? Int, 2)
        XCTAssertEqual(groups["train/bias"]?["available"] as? Int, 8)
        XCTAssertEqual(groups["train/bias"]?["strata"] as? Int, 2)          // word, phrase
        XCTAssertEqual(groups["dev/neutral"]?["kept"] as? Int, 1)
        XCTAssertEqual((groups["test/hint"]?["sha256"] as? String)?.count, 64)
        let scores = try XCTUnwrap(m["scores"] as? [String: Any])
        XCTAssertEqual(scores["subset"] as? String,
                       "--max-prompts 2 (seed 5): a stratified subset of the dev split, 2 of 4 bias, 2 of 4 hint, 1 of 1 neutral prompts (provenance.subset)")

        // Same inputs and seed: the same bytes. Another seed draws another subset.
        r = try CLIRun.run(args + ["--quiet", "-o", dir.appendingPathComponent("s2.lftfpatch").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try Data(contentsOf: dir.appendingPathComponent("s1.lftfpatch")),
                       try Data(contentsOf: dir.appendingPathComponent("s2.lftfpatch")))
        r = try CLIRun.run(["create", model.path, "--data", data.path, "--max-prompts", "0", "-o", dir.appendingPathComponent("s0.lftfpatch").path])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("--max-prompts must be at least 1"), r.stderr)
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
