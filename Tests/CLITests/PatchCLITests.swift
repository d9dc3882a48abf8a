// apply / revert / verify / info / diff, run as the built binary: round trips on the sample
// model (GGUF Q4_1 and its BF16 safetensors conversion), and every failure ending with a clear
// error and an intact checkpoint (wrong base, truncated, flipped bits, path traversal, future
// version, disk full, kill -9 anywhere during apply, revert and recovery).
import Foundation
import XCTest
import TestSupport

/// A run of the binary with extra environment variables.
struct PatchRun {
    var status: Int32
    var killed: Bool
    var stdout: String
    var stderr: String

    static func run(_ args: [String], env: [String: String] = [:], shell: String? = nil) throws -> PatchRun {
        let environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
        let r: ProcessOutput
        if let shell {   // e.g. "ulimit -f 64; exec \"$0\" \"$@\""
            r = try runProcess(URL(fileURLWithPath: "/bin/bash"), ["-c", shell, CLIRun.binary.path] + args, environment: environment)
        } else {
            r = try runProcess(CLIRun.binary, args, environment: environment)
        }
        return PatchRun(status: r.status, killed: r.killed, stdout: r.stdout, stderr: r.stderr)
    }
}

/// The bytes of every file of a checkpoint by name (an HF directory), or under "" (a GGUF file).
func snapshot(_ model: URL) throws -> [String: Data] {
    var isDir: ObjCBool = false
    FileManager.default.fileExists(atPath: model.path, isDirectory: &isDir)
    if !isDir.boolValue { return ["": try Data(contentsOf: model)] }
    var out: [String: Data] = [:]
    for n in try FileManager.default.contentsOfDirectory(atPath: model.path) {
        out[n] = try Data(contentsOf: model.appendingPathComponent(n))
    }
    return out
}

func copyModel(_ from: URL, _ to: URL) throws {
    try? FileManager.default.removeItem(at: to)
    try FileManager.default.copyItem(at: from, to: to)
}

struct InspectedTensor { var name: String; var dtype: String; var file: URL; var offset: Int; var bytes: Int }

/// Tensor locations from `inspect --json`.
func inspectTensors(_ model: URL) throws -> [InspectedTensor] {
    let r = try CLIRun.run(["inspect", model.path, "--json"])
    XCTAssertEqual(r.status, 0, r.stderr)
    let j = try r.json()
    let files = (j["files"] as! [[String: Any]]).map { URL(fileURLWithPath: $0["path"] as! String) }
    return (j["tensors"] as! [[String: Any]]).map {
        InspectedTensor(name: $0["name"] as! String, dtype: $0["dtype"] as! String, file: files[$0["file"] as! Int],
                        offset: $0["offset"] as! Int, bytes: $0["bytes"] as! Int)
    }
}

/// A fine-tune-like edit of the tensors `select` picks: BF16 elements get ±1 ulp on every third
/// element; Q4_1 blocks get their scale's low bit changed on most blocks and a nibble on some.
func tweak(_ model: URL, _ select: (String) -> Bool) throws -> [String] {
    var names: [String] = []
    for t in try inspectTensors(model) where select(t.name) {
        let h = try FileHandle(forUpdating: t.file)
        try h.seek(toOffset: UInt64(t.offset))
        var b = [UInt8](try h.read(upToCount: t.bytes)!)
        switch t.dtype {
        case "BF16", "F16":
            for i in stride(from: 0, to: b.count / 2, by: 3) { b[2 * i] &+= (i % 2 == 0 ? 1 : 255) }
        case "Q4_1":
            for k in 0..<(b.count / 20) where k % 5 < 3 {
                b[20 * k + (k % 2) * 2] &+= 1
                if k % 7 == 0 { b[20 * k + 4 + k % 16] ^= 0x01 }
            }
        default:
            for i in stride(from: 0, to: b.count, by: 17) { b[i] ^= 1 }
        }
        try h.seek(toOffset: UInt64(t.offset))
        try h.write(contentsOf: b)
        try h.close()
        names.append(t.name)
    }
    return names
}

final class PatchCLITests: XCTestCase {
    func run(_ args: [String], env: [String: String] = [:], shell: String? = nil) throws -> PatchRun {
        try PatchRun.run(args, env: env, shell: shell)
    }

    /// diff → apply (in place) == tuned → apply again says applied → revert == base → --output copy == tuned.
    func roundTrip(base: URL, tuned: URL, dir: URL, expectedTensors: Int) throws {
        let patch = dir.appendingPathComponent("fix.lftfpatch")
        let d = try run(["diff", base.path, tuned.path, "-o", patch.path])
        XCTAssertEqual(d.status, 0, d.stderr)
        let info = try run(["info", patch.path, "--json"])
        XCTAssertEqual(info.status, 0, info.stderr)
        let m = try XCTUnwrap((JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as? [String: Any])?["manifest"] as? [String: Any])
        XCTAssertEqual((m["tensors"] as? [Any])?.count, expectedTensors)

        let work = dir.appendingPathComponent("work" + (base.pathExtension.isEmpty ? "" : ".\(base.pathExtension)"))
        try copyModel(base, work)
        let baseSnap = try snapshot(base), tunedSnap = try snapshot(tuned)
        var r = try run(["verify", work.path, patch.path])
        XCTAssertEqual(r.status, 0, r.stderr); XCTAssertTrue(r.stdout.contains("is the patch's base"), r.stdout)
        r = try run(["apply", work.path, patch.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try snapshot(work), tunedSnap, "apply must give exactly the tuned checkpoint")
        r = try run(["apply", work.path, patch.path])
        XCTAssertEqual(r.status, 1); XCTAssertTrue(r.stderr.contains("already applied"), r.stderr)
        r = try run(["verify", work.path, patch.path, "--expect", "patched"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try run(["verify", work.path, patch.path, "--expect", "base"])
        XCTAssertEqual(r.status, 1)
        r = try run(["revert", work.path, patch.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try snapshot(work), baseSnap, "revert must give the base back byte for byte")
        r = try run(["revert", work.path, patch.path])
        XCTAssertEqual(r.status, 1); XCTAssertTrue(r.stderr.contains("not applied"), r.stderr)

        let out = dir.appendingPathComponent("out")
        r = try run(["apply", base.path, patch.path, "--output", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let copied = base.pathExtension.isEmpty ? out : out.appendingPathComponent(base.lastPathComponent)
        XCTAssertEqual(try snapshot(copied), tunedSnap)
        XCTAssertEqual(try snapshot(base), baseSnap, "--output leaves the base untouched")
    }

    func testSampleGGUFRoundTrip() throws {
        let sample = try requireSampleModel()
        let dir = try cliTempDir("patch-gguf")
        let base = dir.appendingPathComponent("base.gguf"), tuned = dir.appendingPathComponent("tuned.gguf")
        try copyModel(sample, base); try copyModel(sample, tuned)
        let names = try tweak(tuned) { $0.hasPrefix("blk.3.") && !$0.contains("norm") }
        XCTAssertEqual(names.count, 7)
        try roundTrip(base: base, tuned: tuned, dir: dir, expectedTensors: 7)
    }

    func testSampleSafetensorsBF16RoundTrip() throws {
        let sample = try requireSampleModel()
        let dir = try cliTempDir("patch-st")
        let base = dir.appendingPathComponent("base"), tuned = dir.appendingPathComponent("tuned")
        let c = try CLIRun.run(["convert", sample.path, "--to", "safetensors", "--dtype", "bf16", "-o", base.path, "--quiet"])
        XCTAssertEqual(c.status, 0, c.stderr)
        try copyModel(base, tuned)
        let names = try tweak(tuned) { $0.hasPrefix("model.layers.3.") && !$0.contains("norm") }
        XCTAssertEqual(names.count, 7)
        try roundTrip(base: base, tuned: tuned, dir: dir, expectedTensors: 7)
    }

    // MARK: Failures: clear error, intact checkpoint

    /// The tiny BF16 model (sharded), a tuned copy (block 1) and the patch between them.
    func tinyFixture(_ name: String) throws -> (dir: URL, base: URL, tuned: URL, patch: URL) {
        let dir = try cliTempDir(name)
        let base = dir.appendingPathComponent("base"), tuned = dir.appendingPathComponent("tuned")
        try copyModel(try TinyModel.hfDirectory(dtype: .bf16, sharded: true), base)
        try copyModel(base, tuned)
        XCTAssertEqual(try tweak(tuned) { $0.hasPrefix("model.layers.1.") && !$0.contains("norm") }.count, 7)
        let patch = dir.appendingPathComponent("fix.lftfpatch")
        let d = try run(["diff", base.path, tuned.path, "-o", patch.path])
        XCTAssertEqual(d.status, 0, d.stderr)
        return (dir, base, tuned, patch)
    }

    /// Writes a copy of the patch with `edit` applied to its bytes; `rehash` recomputes the checksum.
    func editedPatch(_ patch: URL, _ name: String, rehash: Bool = false, _ edit: (inout [UInt8]) -> Void) throws -> URL {
        var b = [UInt8](try Data(contentsOf: patch))
        edit(&b)
        if rehash {
            b.removeLast(32)
            let tmp = patch.deletingLastPathComponent().appendingPathComponent("body.bin")
            try Data(b).write(to: tmp)
            let hex = Array(try runProcess(URL(fileURLWithPath: "/usr/bin/sha256sum"), [tmp.path]).stdout.prefix(64).utf8)
            for i in 0..<32 { b.append(UInt8(String(decoding: hex[(2 * i)..<(2 * i + 2)], as: UTF8.self), radix: 16)!) }
        }
        let u = patch.deletingLastPathComponent().appendingPathComponent(name)
        try Data(b).write(to: u)
        return u
    }

    /// Replaces the manifest JSON (same length) and fixes the checksum.
    func manifestEdited(_ patch: URL, _ name: String, replace: String, with: String) throws -> URL {
        let with = String((with + String(repeating: "x", count: replace.utf8.count)).prefix(replace.utf8.count))
        return try editedPatch(patch, name, rehash: true) { b in
            // Byte search (the frames after the manifest are not UTF-8).
            let needle = Array(replace.utf8)
            guard let at = (0...(b.count - needle.count)).first(where: { b[$0..<($0 + needle.count)].elementsEqual(needle) }) else {
                XCTFail("\(replace) not in the patch"); return
            }
            b.replaceSubrange(at..<(at + needle.count), with: Array(with.utf8))
        }
    }

    func expectRefused(_ args: [String], status: Int32, _ message: String, model: URL, env: [String: String] = [:],
                       shell: String? = nil, file: StaticString = #filePath, line: UInt = #line) throws {
        let before = try snapshot(model)
        let r = try run(args, env: env, shell: shell)
        XCTAssertEqual(r.status, status, "\(args): \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(message), "expected '\(message)' in: \(r.stderr)", file: file, line: line)
        XCTAssertEqual(try snapshot(model), before, "the checkpoint must be intact after: \(r.stderr)", file: file, line: line)
    }

    func testBadPatchesAndWrongBaseLeaveTheCheckpointIntact() throws {
        let f = try tinyFixture("patch-bad")
        let size = try Data(contentsOf: f.patch).count
        // Wrong base: another seed's model has the same tensors, different bytes.
        let other = f.dir.appendingPathComponent("other")
        XCTAssertEqual(try CLIRun.run(["synth", "-o", other.path, "--seed", "77", "--dtype", "bf16"]).status, 0)
        try expectRefused(["apply", other.path, f.patch.path], status: 1, "does not match the patch's base", model: other)
        try expectRefused(["apply", other.path, f.patch.path], status: 1, "model.layers.1.", model: other)
        // Truncated, flipped bits, not a patch.
        let truncated = try editedPatch(f.patch, "t.lftfpatch") { $0.removeLast(size / 3) }
        try expectRefused(["apply", f.base.path, truncated.path], status: 2, "truncated", model: f.base)
        for k in [45, size / 2, size - 33, size - 1] {
            let flipped = try editedPatch(f.patch, "f\(k).lftfpatch") { $0[k] ^= 0x04 }
            try expectRefused(["apply", f.base.path, flipped.path], status: 2, "corrupted", model: f.base)
        }
        try expectRefused(["apply", f.base.path, f.dir.appendingPathComponent("base/config.json").path], status: 2, "not an .lftfpatch", model: f.base)
        // A patch from a future format version (checksum valid).
        let future = try editedPatch(f.patch, "v9.lftfpatch", rehash: true) { $0[8] = 9 }
        try expectRefused(["apply", f.base.path, future.path], status: 2, "newer than this lftf-patch supports", model: f.base)
        try expectRefused(["info", future.path], status: 2, "upgrade lftf-patch", model: f.base)
        // Path traversal in a tensor name (checksum valid).
        let evil = try manifestEdited(f.patch, "evil.lftfpatch", replace: "\"name\":\"model.layers.1.mlp",
                                      with: "\"name\":\"../../../../etc/passwd")
        try expectRefused(["apply", f.base.path, evil.path], status: 2, "unsafe tensor", model: f.base)
        let slash = try manifestEdited(f.patch, "slash.lftfpatch", replace: "\"name\":\"model.layers.1.mlp",
                                       with: "\"name\":\"/tmp/model.layers.1.x")
        try expectRefused(["verify", f.base.path, slash.path], status: 2, "unsafe tensor", model: f.base)
        // An encoding from the future.
        let enc = try manifestEdited(f.patch, "enc.lftfpatch", replace: "\"encoding\":\"float-rans\"", with: "\"encoding\":\"wavelet-99\"")
        try expectRefused(["apply", f.base.path, enc.path], status: 2, "upgrade lftf-patch", model: f.base)
        XCTAssertFalse(FileManager.default.fileExists(atPath: f.base.appendingPathComponent(".lftfpatch-journal").path))
    }

    func testDiffRefusesOtherTensorsUnlessAllowed() throws {
        let f = try tinyFixture("patch-diff")
        XCTAssertEqual(try tweak(f.tuned) { $0 == "model.norm.weight" }.count, 1)
        let p = f.dir.appendingPathComponent("other.lftfpatch")
        var r = try run(["diff", f.base.path, f.tuned.path, "-o", p.path])
        XCTAssertEqual(r.status, 1); XCTAssertTrue(r.stderr.contains("model.norm.weight"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: p.path))
        r = try run(["diff", f.base.path, f.tuned.path, "-o", p.path, "--allow-other"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try run(["diff", f.base.path, f.base.path, "-o", p.path])
        XCTAssertEqual(r.status, 1); XCTAssertTrue(r.stderr.contains("identical"), r.stderr)
    }

    func testDiskFull() throws {
        let f = try tinyFixture("patch-full")
        // A file-size limit smaller than the journal (a few KiB of sector hashes): the journal
        // write fails with EFBIG before any byte of the model is written.
        let limitKiB = 1
        try expectRefused(["apply", f.base.path, f.patch.path], status: 2, "File too large", model: f.base,
                          shell: "ulimit -f \(limitKiB); exec \"$0\" \"$@\"")
        XCTAssertFalse(FileManager.default.fileExists(atPath: f.base.appendingPathComponent(".lftfpatch-journal").path))
        try expectRefused(["apply", f.base.path, f.patch.path, "--output", f.dir.appendingPathComponent("o").path], status: 2,
                          "File too large", model: f.base, shell: "ulimit -f \(limitKiB); exec \"$0\" \"$@\"")
        // A real full file system: a small tmpfs holding the checkpoint with no room for the journal.
        guard getuid() == 0 else { return }
        let mnt = f.dir.appendingPathComponent("tmpfs")
        try FileManager.default.createDirectory(at: mnt, withIntermediateDirectories: true)
        let modelBytes = try snapshot(f.base).values.reduce(0) { $0 + $1.count }
        let size = (modelBytes / 4096 + 8) * 4096
        let mount = Process(); mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=\(size)", "tmpfs", mnt.path]
        try mount.run(); mount.waitUntilExit()
        guard mount.terminationStatus == 0 else { return }   // no mount permission here: the limit above covered it
        defer { let u = Process(); u.executableURL = URL(fileURLWithPath: "/bin/umount"); u.arguments = [mnt.path]; try? u.run(); u.waitUntilExit() }
        let model = mnt.appendingPathComponent("m")
        try copyModel(f.base, model)
        try expectRefused(["apply", model.path, f.patch.path], status: 2, "No space left on device", model: model)
        XCTAssertFalse(FileManager.default.fileExists(atPath: model.appendingPathComponent(".lftfpatch-journal").path))
    }

    /// kill -9 at every kind of point of apply and revert (and of the recovery that follows):
    /// after the next command the checkpoint is wholly base or wholly patched. The fixture is
    /// BF16 with a float-rans patch, so this runs the v2 (sector) journal: patch kept, journal
    /// created, committed, each frame written, synced, journal and patch link deleted, and the
    /// frame-by-frame rollback.
    func testKillNineAnywhereLeavesBaseOrPatched() throws {
        let f = try tinyFixture("patch-kill")
        let baseSnap = try snapshot(f.base), tunedSnap = try snapshot(f.tuned)
        let work = f.dir.appendingPathComponent("work")
        // How many crash points each command passes.
        try copyModel(f.base, work)
        let listed = try run(["apply", work.path, f.patch.path], env: ["LFTF_PATCH_CRASH_LIST": "1"])
        XCTAssertEqual(listed.status, 0, listed.stderr)
        let points = listed.stderr.components(separatedBy: "crash point ").count - 1
        XCTAssertGreaterThan(points, 10, listed.stderr)

        var rng = SystemRandomNumberGenerator()
        var outcomes: [String: Int] = [:]
        for iteration in 0..<20 {
            let revert = iteration % 2 == 1
            try copyModel(revert ? f.tuned : f.base, work)
            let k = iteration < 10 ? 1 + iteration * (points - 1) / 9 : Int.random(in: 1...points, using: &rng)
            let r = try run([revert ? "revert" : "apply", work.path, f.patch.path], env: ["LFTF_PATCH_CRASH_AT": "\(k)"])
            XCTAssertTrue(r.killed, "crash point \(k) was not reached: \(r.stderr)")
            // Sometimes kill the recovery too.
            if iteration % 4 == 3 {
                _ = try run(["verify", work.path, f.patch.path], env: ["LFTF_PATCH_CRASH_AT": "\(1 + iteration % 3)"])
            }
            let v = try run(["verify", work.path, f.patch.path, "--json"])
            XCTAssertEqual(v.status, 0, "after a kill at point \(k) of \(revert ? "revert" : "apply"): \(v.stdout) \(v.stderr)")
            let s = try snapshot(work).filter { !$0.key.hasPrefix(".lftfpatch") }
            XCTAssertTrue(s == baseSnap || s == tunedSnap, "kill at point \(k): the checkpoint is neither base nor patched")
            XCTAssertFalse(FileManager.default.fileExists(atPath: work.appendingPathComponent(".lftfpatch-journal").path))
            XCTAssertFalse(FileManager.default.fileExists(atPath: work.appendingPathComponent(".lftfpatch-journal-patch").path))
            outcomes[s == baseSnap ? "base" : "patched", default: 0] += 1
        }
        // Kills at random moments of a slowed-down apply.
        for _ in 0..<4 {
            try copyModel(f.base, work)
            let p = Process()
            p.executableURL = CLIRun.binary
            p.arguments = ["apply", work.path, f.patch.path, "--quiet"]
            p.environment = ProcessInfo.processInfo.environment.merging(["LFTF_PATCH_SLOW_MS": "3"]) { $1 }
            p.standardOutput = FileHandle.nullDevice; p.standardError = FileHandle.nullDevice
            try p.run()
            usleep(UInt32.random(in: 5_000...60_000, using: &rng))
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            XCTAssertEqual(try run(["verify", work.path, f.patch.path]).status, 0)
            let s = try snapshot(work).filter { !$0.key.hasPrefix(".lftfpatch") }
            XCTAssertTrue(s == baseSnap || s == tunedSnap)
        }
        XCTAssertGreaterThan(outcomes["base", default: 0], 0)
        XCTAssertGreaterThan(outcomes["patched", default: 0], 0)
    }

    func testVerifyWithoutPatchChecksIntegrity() throws {
        let f = try tinyFixture("patch-integrity")
        var r = try run(["verify", f.base.path, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let fp = try XCTUnwrap((JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])?["fingerprint"] as? String)
        let info = try run(["info", f.patch.path, "--json"])
        let m = (try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as! [String: Any])["manifest"] as! [String: Any]
        XCTAssertEqual((m["base"] as! [String: Any])["fingerprint"] as? String, fp)
        // A NaN in a weight is a problem.
        let t = try inspectTensors(f.base).first { $0.name == "model.layers.0.mlp.up_proj.weight" }!
        let h = try FileHandle(forUpdating: t.file)
        try h.seek(toOffset: UInt64(t.offset + 2)); try h.write(contentsOf: Data([0xC0, 0x7F])); try h.close()
        r = try run(["verify", f.base.path])
        XCTAssertEqual(r.status, 1); XCTAssertTrue(r.stdout.contains("NaN"), r.stdout)
    }
}
