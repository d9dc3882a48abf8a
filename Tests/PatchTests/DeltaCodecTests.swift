import XCTest
import ModelFormats
@testable import Patch

final class DeltaCodecTests: XCTestCase {
    /// Encodes `target` from `source`, then decodes forward and in reverse; both must be exact.
    func roundTrip(_ e: DeltaEncoding, _ d: DType, _ source: [UInt8], _ target: [UInt8], file: StaticString = #filePath, line: UInt = #line) throws -> Int {
        let frame = try source.withUnsafeBytes { s in try target.withUnsafeBytes { t in
            try DeltaCodec.encode(e, dtype: d, source: e.needsSource ? s : nil, target: t)
        } }
        var fwd = [UInt8](repeating: 0, count: target.count)
        try frame.withUnsafeBytes { f in try source.withUnsafeBytes { s in try fwd.withUnsafeMutableBytes { o in
            try DeltaCodec.decode(e, dtype: d, frame: f, source: s, into: o, reverse: false, tensor: "t")
        } } }
        XCTAssertEqual(fwd, target, "\(e) \(d) forward", file: file, line: line)
        if e.needsSource {
            var rev = [UInt8](repeating: 0, count: source.count)
            try frame.withUnsafeBytes { f in try target.withUnsafeBytes { t in try rev.withUnsafeMutableBytes { o in
                try DeltaCodec.decode(e, dtype: d, frame: f, source: t, into: o, reverse: true, tensor: "t")
            } } }
            XCTAssertEqual(rev, source, "\(e) \(d) reverse", file: file, line: line)
        }
        return frame.count
    }

    func randomBytes(_ n: Int, seed: UInt64) -> [UInt8] {
        var r = SplitMix(state: seed)
        return (0..<n).map { _ in UInt8(truncatingIfNeeded: r.next()) }
    }

    func testEveryEncodingIsExactBothWaysOnArbitraryBits() throws {
        // Arbitrary bit patterns: NaNs, infinities, sign flips, exponent jumps of any size.
        for d in [DType.bf16, .f16, .f32, .q4_0, .q4_1, .q8_0, .i8, .u8] {
            let n = d.byteCount(elements: 4096)!
            let a = randomBytes(n, seed: 1), b = randomBytes(n, seed: 2)
            for e in DeltaEncoding.allCases where DeltaCodec.supports(e, d) {
                _ = try roundTrip(e, d, a, b)
                _ = try roundTrip(e, d, a, a)   // no change at all
            }
        }
    }

    func testFloatDiffOnSmallChanges() throws {
        let (b, p) = bf16Pair(count: 1 << 16, scale: 1e-3, seed: 7)
        let size = try roundTrip(.floatDiff, .bf16, b, p)
        let xor = try roundTrip(.xorPlanes, .bf16, b, p)
        XCTAssertLessThan(size, xor, "float-diff must beat xor-planes on a small BF16 change")
        // Measured: ~5.6% on Gaussian weights (the real sample block: see BENCHMARKS.md).
        XCTAssertLessThan(Double(size) / Double(b.count), 0.07)
    }

    func testCorruptFloatFrameIsRefused() throws {
        let (b, p) = bf16Pair(count: 4096, scale: 1e-2, seed: 3)
        var frame = try b.withUnsafeBytes { s in try p.withUnsafeBytes { t in try DeltaCodec.encode(.floatDiff, dtype: .bf16, source: s, target: t) } }
        frame.removeLast(frame.count / 2)
        var out = [UInt8](repeating: 0, count: p.count)
        XCTAssertThrowsError(try frame.withUnsafeBytes { f in try b.withUnsafeBytes { s in try out.withUnsafeMutableBytes { o in
            try DeltaCodec.decode(.floatDiff, dtype: .bf16, frame: f, source: s, into: o, reverse: false, tensor: "t")
        } } })
    }

    /// Measures the encodings on a real block: LFTF_MEASURE=DTYPE:base.bin:patched.bin
    /// (how BENCHMARKS.md's codec figures were made).
    func testMeasureExternalPair() throws {
        guard let spec = ProcessInfo.processInfo.environment["LFTF_MEASURE"] else { throw XCTSkip("LFTF_MEASURE not set") }
        let parts = spec.split(separator: ":").map(String.init)
        let d = try XCTUnwrap(DType(rawValue: parts[0]))
        let b = [UInt8](try Data(contentsOf: URL(fileURLWithPath: parts[1])))
        let p = [UInt8](try Data(contentsOf: URL(fileURLWithPath: parts[2])))
        for e in DeltaEncoding.allCases where DeltaCodec.supports(e, d) {
            let t0 = Date()
            let f = try b.withUnsafeBytes { s in try p.withUnsafeBytes { t in try DeltaCodec.encode(e, dtype: d, source: s, target: t) } }
            let t1 = Date()
            var out = [UInt8](repeating: 0, count: p.count)
            try f.withUnsafeBytes { fr in try b.withUnsafeBytes { s in try out.withUnsafeMutableBytes { o in
                try DeltaCodec.decode(e, dtype: d, frame: fr, source: s, into: o, reverse: false, tensor: "t") } } }
            let t2 = Date()
            XCTAssertEqual(out, p)
            print("measure \(d.rawValue) \(e.rawValue): \(f.count) of \(p.count) bytes = \(String(format: "%.3f", 100 * Double(f.count) / Double(p.count)))%, encode \(String(format: "%.3f", t1.timeIntervalSince(t0))) s, decode \(String(format: "%.3f", t2.timeIntervalSince(t1))) s")
        }
    }
}
