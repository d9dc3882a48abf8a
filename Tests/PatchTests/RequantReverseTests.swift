import XCTest
import ModelFormats
import TestSupport
@testable import Patch

/// The `quant-diff-requant` reverse stream: a Q4_0/Q4_1/Q8_0 tensor stored as floats by a patch
/// is rebuilt on revert from the float tensor requantized, plus a quant-diff. Byte-exact reverts
/// on tiny GGUFs of each quant type, corrupt frames refused, and patches with the older `zstd`
/// reverse stream still revert.
final class RequantReverseTests: XCTestCase {
    /// A tiny GGUF in `q`, block 1's trainable tensors fine-tuned as `float` (every third element
    /// nudged, one element NaN and one +inf in the first tensor to exercise the non-finite rule).
    func fixture(_ q: DType, _ float: DType, requant: Bool = true, nonFinite: Bool = false) throws
        -> (dir: URL, base: URL, original: Data, builder: PatchBuilder, expected: [String: [UInt8]]) {
        let dir = try TinyModel.scratchDirectory("requant-\(q.rawValue)-\(float.rawValue)")
        let base = dir.appendingPathComponent("m.gguf")
        try FileManager.default.copyItem(at: try TinyModel.ggufFile(dtype: q), to: base)
        let ckpt = try GGUFCheckpoint(url: base)
        let builder = PatchBuilder(base: ckpt)
        builder.reverseRequant = requant
        builder.chunkElements = 1024          // several frames per tensor
        var expected: [String: [UInt8]] = [:]
        for (k, r) in TensorRole.trainable(block: 1).enumerated() {
            let info = try XCTUnwrap(ckpt.tensorInfo(for: r))
            XCTAssertEqual(info.dtype, q)
            var v = try ckpt.floats(info).enumerated().map { $0.element + ($0.offset % 3 == 0 ? 1e-3 * Float($0.offset % 5) : 0) }
            if nonFinite && k == 0 { v[5] = .nan; v[40] = .infinity; v[77] = -.infinity }
            let bytes = SyntheticModel.encode(v, as: float)
            expected[info.name] = bytes
            try builder.replace(info.name, dtype: float, shape: info.shape, bytes: bytes)
        }
        return (dir, base, try Data(contentsOf: base), builder, expected)
    }

    func roundTrip(_ q: DType, _ float: DType, nonFinite: Bool = false) throws {
        let f = try fixture(q, float, nonFinite: nonFinite)
        let patchURL = f.dir.appendingPathComponent("p.lftfpatch")
        let m = try f.builder.write(to: patchURL)
        XCTAssertTrue(m.tensors.allSatisfy { $0.reverse?.encoding == "quant-diff-requant" },
                      "\(q) → \(float): \(m.tensors.map { $0.reverse?.encoding ?? "-" })")
        // Smaller than zstd of the base, tensor by tensor.
        let old = try fixture(q, float, requant: false)
        let mOld = try old.builder.build().0
        for (a, b) in zip(m.tensors, mOld.tensors) {
            XCTAssertEqual(b.reverse?.encoding, "zstd")
            XCTAssertLessThan(a.reverse!.frameSizes.reduce(0, +), b.reverse!.frameSizes.reduce(0, +), "\(q) \(a.name)")
        }
        let patch = try PatchFile(url: patchURL)
        try PatchApplier.apply(patch, to: GGUFCheckpoint(url: f.base))
        let ck = try GGUFCheckpoint(url: f.base)
        for (n, b) in f.expected { XCTAssertEqual(Array(try ck.rawBytes(ck.tensorInfo(named: n)!)), b) }
        try PatchApplier.revert(patch, from: GGUFCheckpoint(url: f.base))
        XCTAssertEqual(try Data(contentsOf: f.base), f.original, "\(q) → \(float): revert must be byte-exact")
    }

    func testQ4_0FromF16RevertsByteExactly() throws { try roundTrip(.q4_0, .f16) }
    func testQ4_1FromF16RevertsByteExactly() throws { try roundTrip(.q4_1, .f16) }
    func testQ8_0FromF16RevertsByteExactly() throws { try roundTrip(.q8_0, .f16) }
    func testQ4_1FromBF16AndF32RevertByteExactly() throws {
        try roundTrip(.q4_1, .bf16)
        try roundTrip(.q4_1, .f32)
    }
    func testNonFiniteFloatsAreTakenAsZero() throws { try roundTrip(.q4_1, .f16, nonFinite: true) }

    /// Patches written with a `zstd` reverse stream (every writer before quant-diff-requant) still revert.
    func testOldZstdReverseStreamStillReverts() throws {
        let f = try fixture(.q4_1, .f16, requant: false)
        let patchURL = f.dir.appendingPathComponent("old.lftfpatch")
        let m = try f.builder.write(to: patchURL)
        XCTAssertTrue(m.tensors.allSatisfy { $0.forward.encoding == "float-rans-dequant" && $0.reverse?.encoding == "zstd" })
        let patch = try PatchFile(url: patchURL)
        try PatchApplier.apply(patch, to: GGUFCheckpoint(url: f.base))
        XCTAssertNotEqual(try Data(contentsOf: f.base), f.original)
        try PatchApplier.revert(patch, from: GGUFCheckpoint(url: f.base))
        XCTAssertEqual(try Data(contentsOf: f.base), f.original)
    }

    /// Damaged reverse frames (with a valid file checksum): revert fails with a PatchError and
    /// leaves the patched file as it was; the codec itself refuses truncated frames.
    func testCorruptReverseFramesAreRefused() throws {
        let f = try fixture(.q4_1, .f16)
        let (m, data) = try f.builder.build()
        let good = f.dir.appendingPathComponent("good.lftfpatch")
        try PatchFile.write(m, data: data, to: good)
        try PatchApplier.apply(PatchFile(url: good), to: GGUFCheckpoint(url: f.base))
        let patched = try Data(contentsOf: f.base)
        let flat = data.flatMap { $0 }
        let rev = try XCTUnwrap(m.tensors.first?.reverse)
        var rng = SplitMix(state: 42)
        var refused = 0
        for trial in 0..<12 {
            var bad = flat
            let frameSize = rev.frameSizes[trial % rev.frameSizes.count]
            let frameStart = rev.offset + rev.frameSizes.prefix(trial % rev.frameSizes.count).reduce(0, +)
            for _ in 0..<(1 + trial % 4) {
                let at = frameStart + Int(rng.next() % UInt64(frameSize))
                bad[at] ^= UInt8(1 << (rng.next() % 8))
            }
            let url = f.dir.appendingPathComponent("bad\(trial).lftfpatch")
            try PatchFile.write(m, data: [bad], to: url)
            do {
                try PatchApplier.revert(PatchFile(url: url), from: GGUFCheckpoint(url: f.base))
                // A flip the range coder does not read (its last flushed bytes): the exact base.
                XCTAssertEqual(try Data(contentsOf: f.base), f.original, "trial \(trial): a revert that succeeds must be exact")
                try patched.write(to: f.base)
            } catch let e as PatchError {
                XCTAssertEqual(try Data(contentsOf: f.base), patched, "trial \(trial): a refused revert must leave the file patched (\(e))")
                refused += 1
            }
        }
        XCTAssertGreaterThanOrEqual(refused, 9, "most damaged frames must be refused")

        // Truncated frames and frames of garbage, straight into the codec: errors, never crashes.
        let ck = try GGUFCheckpoint(url: f.base)
        let info = try XCTUnwrap(ck.tensorInfo(named: m.tensors[0].name))
        let src = Array(try ck.rawBytes(info)).prefix(2 * 1024)        // frame 0: 1024 F16 elements
        let frame0 = Array(flat[rev.offset..<(rev.offset + rev.frameSizes[0])])
        var out = [UInt8](repeating: 0, count: DType.q4_1.byteCount(elements: 1024)!)
        func decode(_ fr: [UInt8]) throws {
            try fr.withUnsafeBytes { f in try Array(src).withUnsafeBytes { s in try out.withUnsafeMutableBytes { o in
                try DeltaCodec.decodeRequant(frame: f, source: s, sourceType: .f16, into: o, dtype: .q4_1, tensor: "t") } } }
        }
        XCTAssertNoThrow(try decode(frame0))
        for cut in [0, 1, 5, frame0.count / 2, frame0.count - 1] {
            XCTAssertThrowsError(try decode(Array(frame0.prefix(cut))), "cut at \(cut)")
        }
        for _ in 0..<20 {
            let junk = (0..<Int(rng.next() % 300)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            _ = try? decode(junk)   // may decode to something; must not crash
        }
        // A source of the wrong dtype is an error, not a trap.
        XCTAssertThrowsError(try frame0.withUnsafeBytes { f in try Array(src).withUnsafeBytes { s in try out.withUnsafeMutableBytes { o in
            try DeltaCodec.decodeRequant(frame: f, source: s, sourceType: .q8_0, into: o, dtype: .q4_1, tensor: "t") } } })
    }

    /// A reverse stream with `quant-diff-requant` from a source that is not a float dtype is refused when the patch is opened.
    func testManifestRefusesRequantFromNonFloat() throws {
        let f = try fixture(.q4_1, .f16)
        var (m, data) = try f.builder.build()
        m.tensors[0].patched.dtype = .q8_0
        m.tensors[0].patched.shape = m.tensors[0].base.shape
        m.tensors[0].forward.encoding = "zstd"
        let url = f.dir.appendingPathComponent("bad.lftfpatch")
        try PatchFile.write(m, data: data, to: url)
        XCTAssertThrowsError(try PatchFile(url: url)) {
            XCTAssertNotNil($0 as? PatchError, "\($0)")
            XCTAssertTrue("\($0)".contains("quant-diff-requant needs a BF16/F16/F32 source"), "\($0)")
        }
    }
}
