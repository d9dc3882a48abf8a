import Crypto
import XCTest
import ModelFormats
@testable import Patch

/// A two-block BF16 model with a Q4_1-typed blob, its tuned copy (block 1 changed), and a patch.
final class PatchFixture {
    let dir: URL
    let baseDir: URL, tunedDir: URL, patchURL: URL
    let tensors: [(String, DType, [Int], [UInt8])]
    let tuned: [(String, DType, [Int], [UInt8])]

    init(name: String = #function) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("patchtests-\(getpid())-\(name.filter(\.isLetter))")
        try? FileManager.default.removeItem(at: dir)
        baseDir = dir.appendingPathComponent("base"); tunedDir = dir.appendingPathComponent("tuned")
        patchURL = dir.appendingPathComponent("fix.lftfpatch")
        var r = SplitMix(state: 11)
        var ts: [(String, DType, [Int], [UInt8])] = [("model.embed_tokens.weight", .bf16, [32, 8], bf16Pair(count: 256, scale: 0, seed: 1).0)]
        var tu = ts
        for b in 0..<2 {
            for (i, n) in ["self_attn.q_proj", "self_attn.k_proj", "mlp.up_proj", "mlp.down_proj"].enumerated() {
                let (w, p) = bf16Pair(count: 64 * 96, scale: 1e-3, seed: UInt64(100 * b + i))
                ts.append(("model.layers.\(b).\(n).weight", .bf16, [64, 96], w))
                tu.append(("model.layers.\(b).\(n).weight", .bf16, [64, 96], b == 1 ? p : w))
            }
            // A quantized tensor: random Q4_1 blocks, tuned = a few nibbles and scales nudged.
            var q = (0..<(20 * 64)).map { _ in UInt8(truncatingIfNeeded: r.next()) }
            ts.append(("model.layers.\(b).mlp.gate_proj.weight", .q4_1, [32, 64], q))
            if b == 1 { for k in stride(from: 5, to: q.count, by: 37) { q[k] &+= 1 } }
            tu.append(("model.layers.\(b).mlp.gate_proj.weight", .q4_1, [32, 64], q))
        }
        tensors = ts; tuned = tu
        try TestCheckpoint.write(baseDir, ts)
        try TestCheckpoint.write(tunedDir, tu)
    }

    deinit { try? FileManager.default.removeItem(at: dir) }

    func base() throws -> TestCheckpoint { try TestCheckpoint(baseDir) }

    /// A patch of block 1; `floatsOnly` leaves the Q4_1 tensor out (a patch that uses the sector journal).
    func builder(chunkElements: Int = 1 << 20, floatsOnly: Bool = false) throws -> PatchBuilder {
        let b = PatchBuilder(base: try base(), provenance: Provenance(method: "lftf", locatedBlock: 1, seed: 42))
        b.chunkElements = chunkElements
        for (n, d, s, bytes) in tuned where n.contains("layers.1.") && (!floatsOnly || d == .bf16) {
            try b.replace(n, dtype: d, shape: s, bytes: bytes)
        }
        return b
    }

    /// The checkpoint file with the tuned bytes of block 1's BF16 tensors (what a float-only patch gives).
    func tunedFloatsOnly() throws -> Data {
        var ts = tensors
        for (i, t) in ts.enumerated() where t.0.contains("layers.1.") && t.1 == .bf16 { ts[i] = tuned[i] }
        let d = dir.appendingPathComponent("tunedfloats")
        try TestCheckpoint.write(d, ts)
        return try fileBytes(d)
    }

    func fileBytes(_ d: URL) throws -> Data { try Data(contentsOf: d.appendingPathComponent("model.safetensors")) }
}

final class PatchFileTests: XCTestCase {
    func testBuildIsDeterministicAndReadsBack() throws {
        let f = try PatchFixture()
        let a = try f.builder().serialized(), b = try f.builder().serialized()
        XCTAssertEqual(a, b, "same inputs must give byte-identical patches")
        let m = try f.builder().write(to: f.patchURL)
        let p = try PatchFile(url: f.patchURL)
        XCTAssertEqual(p.manifest, m)
        XCTAssertEqual(p.manifest.tensors.map(\.name), (["self_attn.q_proj", "self_attn.k_proj", "mlp.up_proj", "mlp.down_proj", "mlp.gate_proj"]).map { "model.layers.1.\($0).weight" }.sorted { a, b in
            f.tensors.firstIndex { $0.0 == a }! < f.tensors.firstIndex { $0.0 == b }! })
        XCTAssertEqual(p.manifest.tensors.first { $0.base.dtype == .bf16 }?.forward.encoding, "float-rans")
        XCTAssertEqual(p.manifest.tensors.first { $0.base.dtype == .q4_1 }?.forward.encoding, "quant-diff")
        XCTAssertEqual(p.manifest.provenance?.locatedBlock, 1)
        XCTAssertEqual(p.manifest.base.fingerprint, try Fingerprint.of(f.base()))
        XCTAssertEqual(p.manifest.patched.fingerprint, try Fingerprint.of(TestCheckpoint(f.tunedDir)))
        XCTAssertEqual(p.checksum, hex(SHA256.hash(data: a.dropLast(32))))
    }

    func testUnknownFieldsArePreserved() throws {
        let json = #"{"method":"lftf","future_thing":{"a":[1,2]},"seed":7}"#
        let p = try JSONDecoder().decode(Provenance.self, from: Data(json.utf8))
        XCTAssertEqual(p.seed, 7)
        XCTAssertEqual(p.extra["future_thing"], .object(["a": .array([.number(1), .number(2)])]))
        let e = JSONEncoder(); e.outputFormatting = .sortedKeys
        XCTAssertEqual(String(decoding: try e.encode(p), as: UTF8.self), #"{"future_thing":{"a":[1,2]},"method":"lftf","seed":7}"#)
    }

    func testApplyRevertRoundTripInPlaceAndCopy() throws {
        let f = try PatchFixture()
        try f.builder(chunkElements: 1024).write(to: f.patchURL)   // several frames per tensor
        let p = try PatchFile(url: f.patchURL)
        let base0 = try f.fileBytes(f.baseDir), tuned = try f.fileBytes(f.tunedDir)

        XCTAssertEqual(try PatchApplier.verify(p, f.base()).state, .base)
        try PatchApplier.apply(p, to: f.base())
        XCTAssertEqual(try f.fileBytes(f.baseDir), tuned, "apply must give exactly the tuned checkpoint")
        XCTAssertEqual(try PatchApplier.verify(p, f.base()).state, .patched)
        XCTAssertThrowsError(try PatchApplier.apply(p, to: f.base())) { XCTAssertEqual($0 as? PatchError, .alreadyApplied) }
        try PatchApplier.revert(p, from: f.base())
        XCTAssertEqual(try f.fileBytes(f.baseDir), base0, "revert must give the base back byte for byte")
        XCTAssertThrowsError(try PatchApplier.revert(p, from: f.base())) { XCTAssertEqual($0 as? PatchError, .notApplied) }
        XCTAssertFalse(FileIO.exists(Journal.url(for: f.baseDir)))

        let out = f.dir.appendingPathComponent("out")
        try PatchApplier.applyCopy(p, to: f.base(), output: out)
        XCTAssertEqual(try f.fileBytes(out), tuned)
        XCTAssertEqual(try f.fileBytes(f.baseDir), base0, "--output leaves the base untouched")
        XCTAssertThrowsError(try PatchApplier.applyCopy(p, to: f.base(), output: out), "never overwrites")

        let overlay = try OverlayCheckpoint(base: f.base(), patch: p)
        for (n, _, _, bytes) in f.tuned {
            XCTAssertEqual(Array(try overlay.rawBytes(overlay.tensorInfo(named: n)!)), bytes, n)
        }
    }

    func testWrongBaseNamesTheTensorAndWritesNothing() throws {
        let f = try PatchFixture()
        try f.builder().write(to: f.patchURL)
        let p = try PatchFile(url: f.patchURL)
        var ts = f.tensors
        let i = ts.firstIndex { $0.0 == "model.layers.1.mlp.up_proj.weight" }!
        ts[i].3[100] ^= 1
        try TestCheckpoint.write(f.baseDir, ts)
        let before = try f.fileBytes(f.baseDir)
        XCTAssertThrowsError(try PatchApplier.apply(p, to: f.base())) { e in
            guard case .baseMismatch(let t, _, _) = e as? PatchError else { return XCTFail("\(e)") }
            XCTAssertEqual(t, "model.layers.1.mlp.up_proj.weight")
        }
        XCTAssertEqual(try f.fileBytes(f.baseDir), before)
        XCTAssertFalse(FileIO.exists(Journal.url(for: f.baseDir)))
        XCTAssertEqual(try PatchApplier.verify(p, f.base()).tensors.first { $0.state == .neither }?.name, "model.layers.1.mlp.up_proj.weight")
    }

    func testFingerprintMismatchIsRefusedUnlessIgnored() throws {
        let f = try PatchFixture()
        try f.builder().write(to: f.patchURL)
        let p = try PatchFile(url: f.patchURL)
        var ts = f.tensors
        ts[0].3[0] ^= 0x80     // an untouched tensor differs
        try TestCheckpoint.write(f.baseDir, ts)
        XCTAssertThrowsError(try PatchApplier.apply(p, to: f.base())) { e in
            guard case .fingerprintMismatch = e as? PatchError else { return XCTFail("\(e)") }
        }
        try PatchApplier.apply(p, to: f.base(), options: ApplyOptions(ignoreFingerprint: true))
        XCTAssertEqual(try PatchApplier.verify(p, f.base()).state, .patched)
    }

    // MARK: Damaged patches: each refused with its own error before anything is read.

    func damaged(_ f: PatchFixture, _ edit: (inout [UInt8]) -> Void) throws -> URL {
        var b = [UInt8](try Data(contentsOf: f.patchURL))
        edit(&b)
        let u = f.dir.appendingPathComponent("damaged.lftfpatch")
        try Data(b).write(to: u)
        return u
    }

    /// Re-serializes the patch with an edited manifest (valid checksum).
    func rewritten(_ f: PatchFixture, _ edit: (inout PatchManifest) -> Void, version: UInt32? = nil) throws -> URL {
        let p = try PatchFile(url: f.patchURL)
        var m = p.manifest
        edit(&m)
        let data = try p.file.read(count: p.dataSize, at: p.dataStart)
        var bytes = try PatchFile.serialize(m, data: [data])
        if let version {
            bytes[8] = UInt8(version & 0xFF)
            bytes.removeLast(32)
            bytes += Array(SHA256.hash(data: bytes))
        }
        let u = f.dir.appendingPathComponent("rewritten.lftfpatch")
        try Data(bytes).write(to: u)
        return u
    }

    func testDamagedPatchesAreRefused() throws {
        let f = try PatchFixture()
        try f.builder().write(to: f.patchURL)
        let size = try PatchFile(url: f.patchURL).size

        XCTAssertThrowsError(try PatchFile(url: damaged(f) { $0.removeLast(100) })) {
            XCTAssertEqual($0 as? PatchError, .sizeMismatch(path: f.dir.appendingPathComponent("damaged.lftfpatch").path, expected: size, actual: size - 100))
        }
        for k in [40, size / 2, size - 40, size - 1] {
            XCTAssertThrowsError(try PatchFile(url: damaged(f) { $0[k] ^= 0x10 }), "flipped bit at \(k)") {
                XCTAssertEqual($0 as? PatchError, .checksumMismatch(path: f.dir.appendingPathComponent("damaged.lftfpatch").path))
            }
        }
        XCTAssertThrowsError(try PatchFile(url: damaged(f) { $0[0] = 0x47 })) {
            guard case .notAPatch = $0 as? PatchError else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try PatchFile(url: rewritten(f, { $0.formatVersion = 2 }, version: 2))) {
            XCTAssertEqual($0 as? PatchError, .unsupportedVersion(found: 2, supported: 1))
        }
        XCTAssertThrowsError(try PatchFile(url: rewritten(f, { $0.requires = ["sparse-frames"] }))) {
            XCTAssertEqual($0 as? PatchError, .unsupportedFeature("sparse-frames"))
        }
        for bad in ["../../etc/passwd", "/abs/name", "a/../b", "x\\y", "nul\u{0}name", ""] {
            XCTAssertThrowsError(try PatchFile(url: rewritten(f, { $0.tensors[0].name = bad })), bad) {
                XCTAssertEqual($0 as? PatchError, .unsafeName(bad))
            }
        }
        XCTAssertThrowsError(try PatchFile(url: rewritten(f, { $0.tensors[0].forward.encoding = "wavelet" }))) {
            guard case .unsupportedEncoding(_, "wavelet") = $0 as? PatchError else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try PatchFile(url: rewritten(f, { $0.tensors[0].forward.offset = 1 << 40 }))) {
            guard case .malformedManifest = $0 as? PatchError else { return XCTFail("\($0)") }
        }
    }

    func testCorruptDataWithValidChecksumIsCaughtAndRolledBack() throws {
        // A frame that decodes to the wrong bytes (a writer bug, not bit rot): the tensor hash
        // check after decoding catches it and the journal puts the checkpoint back.
        let f = try PatchFixture()
        try f.builder().write(to: f.patchURL)
        let p0 = try PatchFile(url: f.patchURL)
        let t = p0.manifest.tensors.last!   // the quant-diff tensor, last in the data section
        var data = try p0.file.read(count: p0.dataSize, at: p0.dataStart)
        // Replace its frame with a valid frame that decodes to other bytes.
        let baseBytes = f.tensors.first { $0.0 == t.name }!.3
        var other = f.tuned.first { $0.0 == t.name }!.3
        other[7] ^= 0x11
        let zero = try baseBytes.withUnsafeBytes { s in try other.withUnsafeBytes { o in
            try DeltaCodec.encode(.quantDiff, dtype: .q4_1, source: s, target: o) } }
        data.replaceSubrange(t.forward.offset..<(t.forward.offset + t.forward.frameSizes[0]), with: zero)
        var m = p0.manifest
        m.tensors[m.tensors.count - 1].forward.frameSizes = [zero.count]
        let u = f.dir.appendingPathComponent("bad.lftfpatch")
        try Data(try PatchFile.serialize(m, data: [data])).write(to: u)
        let before = try f.fileBytes(f.baseDir)
        XCTAssertThrowsError(try PatchApplier.apply(PatchFile(url: u), to: f.base())) {
            guard case .corruptFrame = $0 as? PatchError else { return XCTFail("\($0)") }
        }
        XCTAssertEqual(try f.fileBytes(f.baseDir), before)
        XCTAssertFalse(FileIO.exists(Journal.url(for: f.baseDir)))
    }
}
