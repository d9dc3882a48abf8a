import XCTest
import ModelFormats
import TestSupport
@testable import Patch

/// A patch that stores a Q4_1 block as F16 (what `create` does on a quantized GGUF): apply
/// rewrites the GGUF layout, revert gives the original file back byte for byte.
final class LayoutChangeTests: XCTestCase {
    func testQ4_1BlockStoredAsF16AppliesAndRevertsOnTheSampleGGUF() throws {
        let sample = try requireSampleModel()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("patch-layout-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let base = dir.appendingPathComponent("m.gguf")
        try FileManager.default.copyItem(at: sample, to: base)
        let original = try Data(contentsOf: base)

        let ckpt = try GGUFCheckpoint(url: base)
        let builder = PatchBuilder(base: ckpt)
        var expected: [String: [UInt8]] = [:]
        for r in TensorRole.trainable(block: 3) {
            let info = try XCTUnwrap(ckpt.tensorInfo(for: r))
            XCTAssertEqual(info.dtype, .q4_1)
            let v = try ckpt.floats(info).enumerated().map { $0.element + ($0.offset % 3 == 0 ? 1e-3 : 0) }
            let bytes = SyntheticModel.encode(v, as: .f16)
            expected[info.name] = bytes
            try builder.replace(info.name, dtype: .f16, shape: info.shape, bytes: bytes)
        }
        let patchURL = dir.appendingPathComponent("f16.lftfpatch")
        let m = try builder.write(to: patchURL)
        XCTAssertTrue(m.tensors.allSatisfy { $0.forward.encoding == "float-rans-dequant" && $0.reverse?.encoding == "quant-diff-requant" },
                      "\(m.tensors.map { ($0.forward.encoding, $0.reverse?.encoding ?? "-") })")
        // The reverse stream against the requantized result is smaller than zstd of the base
        // (what writers before quant-diff-requant stored, still read: RequantReverseTests).
        builder.reverseRequant = false
        let old = try builder.build().0
        builder.reverseRequant = true
        let newRev = m.tensors.reduce(0) { $0 + $1.reverse!.compressedSize }
        let oldRev = old.tensors.reduce(0) { $0 + $1.reverse!.compressedSize }
        print("sample block 3, Q4_1 → F16: reverse stream \(newRev) bytes (quant-diff-requant) vs \(oldRev) (zstd)")
        XCTAssertLessThan(newRev, oldRev)
        let patch = try PatchFile(url: patchURL)

        // In memory first (what eval --patch and create's scoring see).
        let overlay = try OverlayCheckpoint(base: ckpt, patch: patch)
        for (n, b) in expected { XCTAssertEqual(Array(try overlay.rawBytes(overlay.tensorInfo(named: n)!)), b) }

        // A copy, then in place, then back.
        let out = dir.appendingPathComponent("out")
        try PatchApplier.applyCopy(patch, to: ckpt, output: out)
        XCTAssertEqual(try Data(contentsOf: base), original)
        let copy = try GGUFCheckpoint(url: out.appendingPathComponent("m.gguf"))
        for (n, b) in expected {
            let t = try XCTUnwrap(copy.tensorInfo(named: n))
            XCTAssertEqual(t.dtype, .f16)
            XCTAssertEqual(Array(try copy.rawBytes(t)), b)
        }
        try PatchApplier.apply(patch, to: GGUFCheckpoint(url: base))
        let applied = try Data(contentsOf: base)
        XCTAssertEqual(applied, try Data(contentsOf: out.appendingPathComponent("m.gguf")))
        XCTAssertEqual(try PatchApplier.verify(patch, GGUFCheckpoint(url: base)).state, .patched)
        XCTAssertThrowsError(try PatchApplier.apply(patch, to: GGUFCheckpoint(url: base))) { XCTAssertEqual($0 as? PatchError, .alreadyApplied) }
        try PatchApplier.revert(patch, from: GGUFCheckpoint(url: base))
        XCTAssertEqual(try Data(contentsOf: base), original, "revert must give the original GGUF back byte for byte")
        XCTAssertFalse(FileIO.exists(PatchApplier.rewriteTemporary(base)))
    }
}
