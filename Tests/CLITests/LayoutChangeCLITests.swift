import Foundation
import XCTest
import ModelFormats
import TestSupport

/// Crash safety of a dtype-changing patch (a Q4_1 block stored as F16, as `create` writes for a
/// quantized GGUF; forward `float-rans-dequant`, reverse `quant-diff-requant`). Such patches take
/// the whole-file path: the GGUF is rewritten into a temporary file, fsynced and renamed over the
/// original. kill -9 at each of its crash points of apply and revert, and a file-size limit that
/// stops the rewrite, leave the file wholly base or wholly patched.
final class LayoutChangeCLITests: XCTestCase {
    func run(_ args: [String], env: [String: String] = [:], shell: String? = nil) throws -> PatchRun {
        try PatchRun.run(args, env: env, shell: shell)
    }

    /// The tiny Q4_1 GGUF, a copy whose block 1 weights are F16 (fine-tuned), the patch between them.
    func fixture(_ name: String) throws -> (dir: URL, base: URL, tuned: URL, patch: URL) {
        let dir = try TinyModel.scratchDirectory(name)
        let base = dir.appendingPathComponent("base.gguf"), tuned = dir.appendingPathComponent("tuned.gguf")
        try copyModel(try TinyModel.ggufFile(dtype: .q4_1), base)
        let ck = try GGUFCheckpoint(url: base)
        var replacing: [String: GGUFReplacement] = [:]
        for r in TensorRole.trainable(block: 1) {
            let info = try XCTUnwrap(ck.tensorInfo(for: r))
            let v = try ck.floats(info).enumerated().map { $0.element + ($0.offset % 3 == 0 ? 2e-3 : 0) }
            replacing[info.name] = GGUFReplacement(type: try XCTUnwrap(GGMLType(.f16)), bytes: SyntheticModel.encode(v, as: .f16))
        }
        try GGUFFile.rewrite(ck, to: tuned, replacing: replacing)
        let patch = dir.appendingPathComponent("f16.lftfpatch")
        let d = try run(["diff", base.path, tuned.path, "-o", patch.path])
        XCTAssertEqual(d.status, 0, d.stderr)
        let info = try run(["info", patch.path, "--json"])
        let m = try XCTUnwrap((JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as? [String: Any])?["manifest"] as? [String: Any])
        let tensors = try XCTUnwrap(m["tensors"] as? [[String: Any]])
        XCTAssertEqual(tensors.count, 7)
        for t in tensors {
            XCTAssertEqual((t["forward"] as? [String: Any])?["encoding"] as? String, "float-rans-dequant")
            XCTAssertEqual((t["reverse"] as? [String: Any])?["encoding"] as? String, "quant-diff-requant")
        }
        return (dir, base, tuned, patch)
    }

    func testKillNineDuringALayoutChangingApplyOrRevert() throws {
        let f = try fixture("layout-kill")
        let baseSnap = try Data(contentsOf: f.base), tunedSnap = try Data(contentsOf: f.tuned)
        let work = f.dir.appendingPathComponent("work.gguf")
        let tmp = f.dir.appendingPathComponent(".work.gguf.lftfpatch-tmp")
        var outcomes: [String: Int] = [:]
        for revert in [false, true] {
            try copyModel(revert ? f.tuned : f.base, work)
            let cmd = revert ? "revert" : "apply"
            let listed = try run([cmd, work.path, f.patch.path], env: ["LFTF_PATCH_CRASH_LIST": "1"])
            XCTAssertEqual(listed.status, 0, listed.stderr)
            XCTAssertEqual(try Data(contentsOf: work), revert ? baseSnap : tunedSnap, "\(cmd) must be byte-exact")
            let points = listed.stderr.components(separatedBy: "crash point ").count - 1
            XCTAssertGreaterThanOrEqual(points, 3, listed.stderr)     // rewrite: written, synced, renamed
            for k in 1...points {
                try copyModel(revert ? f.tuned : f.base, work)
                let r = try run([cmd, work.path, f.patch.path], env: ["LFTF_PATCH_CRASH_AT": "\(k)"])
                XCTAssertTrue(r.killed, "\(cmd): crash point \(k) was not reached: \(r.stderr)")
                let v = try run(["verify", work.path, f.patch.path, "--json"])
                XCTAssertEqual(v.status, 0, "after a kill at point \(k) of \(cmd): \(v.stdout) \(v.stderr)")
                let s = try Data(contentsOf: work)
                XCTAssertTrue(s == baseSnap || s == tunedSnap, "kill at point \(k) of \(cmd): the file is neither base nor patched")
                outcomes[s == baseSnap ? "base" : "patched", default: 0] += 1
                // The next command finishes the job from whichever whole state it finds.
                let again = try run([s == baseSnap ? "apply" : "revert", work.path, f.patch.path])
                XCTAssertEqual(again.status, 0, again.stderr)
                XCTAssertEqual(try Data(contentsOf: work), s == baseSnap ? tunedSnap : baseSnap)
                XCTAssertFalse(FileManager.default.fileExists(atPath: tmp.path), "a stale temporary was left")
            }
        }
        XCTAssertGreaterThan(outcomes["base", default: 0], 0)
        XCTAssertGreaterThan(outcomes["patched", default: 0], 0)
    }

    func testFileSizeLimitDuringALayoutChangingApplyOrRevertLeavesTheFileWhole() throws {
        let f = try fixture("layout-full")
        let work = f.dir.appendingPathComponent("work.gguf")
        for (cmd, from, to) in [("apply", f.base, f.tuned), ("revert", f.tuned, f.base)] {
            try copyModel(from, work)
            let before = try Data(contentsOf: work)
            // A limit smaller than the rewritten file: the rewrite fails with EFBIG before the rename.
            let limitKiB = before.count / 1024 / 2
            let r = try run([cmd, work.path, f.patch.path], shell: "ulimit -f \(limitKiB); exec \"$0\" \"$@\"")
            XCTAssertEqual(r.status, 2, r.stderr)
            XCTAssertTrue(r.stderr.contains("File too large"), r.stderr)
            XCTAssertEqual(try Data(contentsOf: work), before, "\(cmd): the checkpoint must be intact after: \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: f.dir.appendingPathComponent(".work.gguf.lftfpatch-tmp").path))
            let ok = try run([cmd, work.path, f.patch.path])
            XCTAssertEqual(ok.status, 0, ok.stderr)
            XCTAssertEqual(try Data(contentsOf: work), try Data(contentsOf: to))
        }
    }
}
