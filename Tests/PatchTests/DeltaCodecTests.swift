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
            for e in DeltaEncoding.allCases where DeltaCodec.supports(e, d) && !e.changesDtype {
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

    func testFloatRansOnSmallChangesBeatsFloatDiff() throws {
        for (scale, seed) in [(1e-3, UInt64(7)), (1e-2, 8), (0.3, 9)] {
            let (b, p) = bf16Pair(count: 1 << 16, scale: scale, seed: seed)
            let rans = try roundTrip(.floatRans, .bf16, b, p)
            let diff = try roundTrip(.floatDiff, .bf16, b, p)
            XCTAssertLessThan(rans, diff + diff / 33, "float-rans must be about as small as float-diff (scale \(scale))")
        }
        // F16 and F32, and single-element frames.
        for d in [DType.f16, .f32] {
            let n = d.byteCount(elements: 4096)!
            var a = randomBytes(n, seed: 5), t = a
            for i in stride(from: 0, to: n, by: 7) { t[i] &+= 1 }
            _ = try roundTrip(.floatRans, d, a, t)
            a = Array(a.prefix(d.blockBytes)); t = Array(t.prefix(d.blockBytes))
            _ = try roundTrip(.floatRans, d, a, t)
        }
    }

    /// Journal recovery decodes a frame whose elements are some base, some patched.
    func testFloatRansDecodesWithMixedDirections() throws {
        let (b, p) = bf16Pair(count: 20_000, scale: 0.05, seed: 21)
        let frame = try b.withUnsafeBytes { s in try p.withUnsafeBytes { t in try DeltaCodec.encode(.floatRans, dtype: .bf16, source: s, target: t) } }
        var r = SplitMix(state: 3)
        for _ in 0..<4 {
            let flags = (0..<20_000).map { _ in UInt8(r.next() & 1) }
            var mixed = b
            for i in 0..<20_000 where flags[i] == 1 { mixed[2 * i] = p[2 * i]; mixed[2 * i + 1] = p[2 * i + 1] }
            for wantBase in [true, false] {
                var out = [UInt8](repeating: 0, count: b.count)
                try frame.withUnsafeBytes { f in try mixed.withUnsafeBytes { s in try out.withUnsafeMutableBytes { o in try flags.withUnsafeBufferPointer { fl in
                    try DeltaCodec.decodeMixed(.floatRans, dtype: .bf16, frame: f, source: s, patchedFlags: fl.baseAddress!, wantBase: wantBase, into: o, tensor: "t")
                } } } }
                XCTAssertEqual(out, wantBase ? b : p)
            }
        }
    }

    /// Damaged float-rans frames: an error, never a crash; truncations and damage to the tables
    /// or the rANS words are always caught by the frame's own checks.
    func testCorruptFloatRansFramesAreRefusedNeverCrash() throws {
        let (b, p) = bf16Pair(count: 8192, scale: 3e-2, seed: 13)
        let frame = try b.withUnsafeBytes { s in try p.withUnsafeBytes { t in try DeltaCodec.encode(.floatRans, dtype: .bf16, source: s, target: t) } }
        func decodes(_ f: [UInt8]) -> Bool {
            var out = [UInt8](repeating: 0, count: p.count)
            do {
                try f.withUnsafeBytes { fr in try b.withUnsafeBytes { s in try out.withUnsafeMutableBytes { o in
                    try DeltaCodec.decode(.floatRans, dtype: .bf16, frame: fr, source: s, into: o, reverse: false, tensor: "t") } } }
                return out == p
            } catch { return false }
        }
        XCTAssertTrue(decodes(frame))
        for cut in [0, 1, 5, frame.count / 3, frame.count - 1] { XCTAssertFalse(decodes(Array(frame.prefix(cut))), "cut \(cut)") }
        XCTAssertFalse(decodes(frame + [0]))
        var r = SplitMix(state: 77)
        var caught = 0
        let trials = 400
        for _ in 0..<trials {
            var f = frame
            for _ in 0..<(1 + Int(r.next() % 3)) { f[Int(r.next() % UInt64(f.count))] ^= UInt8(1 << (r.next() % 8)) }
            if !decodes(f) { caught += 1 }
        }
        // (A flip in the extra-bits section can decode to other values; the tensor's SHA-256 catches that.)
        XCTAssertGreaterThan(caught, trials * 9 / 10)
        // Random bytes as a frame.
        for k in 0..<200 { _ = decodes((0..<(k * 7)).map { _ in UInt8(truncatingIfNeeded: r.next()) }) }
    }

    /// A quantized block stored as floats, coded against the dequantized base: exact, and far
    /// smaller than zstd of the floats when the floats are the base plus a small change.
    func testFloatRansDequantAgainstTheDequantizedBase() throws {
        var r = SplitMix(state: 31)
        for (q, f) in [(DType.q4_1, DType.f16), (.q4_0, .bf16), (.q8_0, .f32)] {
            var base = [UInt8](repeating: 0, count: q.byteCount(elements: 4096)!)
            let L = try XCTUnwrap(QuantLayout(q))
            for b in 0..<(base.count / L.blockBytes) {
                let o = b * L.blockBytes
                base.withUnsafeMutableBytes { $0.storeBytes(of: Float16(Float(r.uniform() * 0.01)).bitPattern, toByteOffset: o, as: UInt16.self) }
                if L.halfs == 2 { base.withUnsafeMutableBytes { $0.storeBytes(of: Float16(Float(r.uniform() * -0.05)).bitPattern, toByteOffset: o + 2, as: UInt16.self) } }
                for j in 0..<L.quantBytes { base[o + 2 * L.halfs + j] = UInt8(truncatingIfNeeded: r.next()) }
            }
            // The reference: ModelFormats' dequantizer, then the float dtype.
            let x = try base.withUnsafeBytes { try dequantize($0, dtype: q, count: 4096) }
            let source = try base.withUnsafeBytes { try DeltaCodec.dequantized($0, from: q, to: f) }
            XCTAssertEqual(source, SyntheticModel.encode(x, as: f), "\(q) → \(f): the dequantized source")
            let tuned = SyntheticModel.encode(x.enumerated().map { $0.element + ($0.offset % 3 == 0 ? 1e-3 : 0) }, as: f)
            let frame = try base.withUnsafeBytes { b in try tuned.withUnsafeBytes { t in try DeltaCodec.encodeDequant(base: b, baseType: q, target: t, dtype: f) } }
            var out = [UInt8](repeating: 0, count: tuned.count)
            try frame.withUnsafeBytes { fr in try base.withUnsafeBytes { b in try out.withUnsafeMutableBytes { o in
                try DeltaCodec.decodeDequant(frame: fr, base: b, baseType: q, into: o, dtype: f, tensor: "t") } } }
            XCTAssertEqual(out, tuned)
            let z = try tuned.withUnsafeBytes { try DeltaCodec.encode(.zstd, dtype: f, source: nil, target: $0) }
            XCTAssertLessThan(frame.count * 3, z.count, "\(q) → \(f): \(frame.count) vs zstd \(z.count)")
        }
    }

    /// Measures the encodings on a real block: LFTF_MEASURE=DTYPE:base.bin:patched.bin
    /// (how BENCHMARKS.md's codec figures were made). Frames of 2^20 elements, as the writer
    /// makes them; LFTF_MEASURE_ONLY=float-rans,float-diff limits the encodings.
    func testMeasureExternalPair() throws {
        guard let spec = ProcessInfo.processInfo.environment["LFTF_MEASURE"] else { throw XCTSkip("LFTF_MEASURE not set") }
        let only = ProcessInfo.processInfo.environment["LFTF_MEASURE_ONLY"].map { Set($0.split(separator: ",").map(String.init)) }
        let parts = spec.split(separator: ":").map(String.init)
        let d = try XCTUnwrap(DType(rawValue: parts[0]))
        let b = [UInt8](try Data(contentsOf: URL(fileURLWithPath: parts[1])))
        let p = [UInt8](try Data(contentsOf: URL(fileURLWithPath: parts[2])))
        let frameBytes = d.byteCount(elements: PatchFormat.defaultChunkElements)!
        let ranges = stride(from: 0, to: p.count, by: frameBytes).map { $0..<min($0 + frameBytes, p.count) }
        for e in DeltaEncoding.allCases where DeltaCodec.supports(e, d) && !e.changesDtype && (only?.contains(e.rawValue) ?? true) {
            let t0 = Date()
            let frames = try ranges.map { r in try b.withUnsafeBytes { s in try p.withUnsafeBytes { t in
                try DeltaCodec.encode(e, dtype: d, source: UnsafeRawBufferPointer(rebasing: s[r]), target: UnsafeRawBufferPointer(rebasing: t[r])) } } }
            let t1 = Date()
            var out = [UInt8](repeating: 0, count: p.count)
            // Decode three times; the least thread CPU time (the machine is shared).
            var best = Double.infinity
            for _ in 0..<3 {
                let c0 = threadCPUSeconds()
                for (f, r) in zip(frames, ranges) {
                    try f.withUnsafeBytes { fr in try b.withUnsafeBytes { s in try out.withUnsafeMutableBytes { o in
                        try DeltaCodec.decode(e, dtype: d, frame: fr, source: UnsafeRawBufferPointer(rebasing: s[r]),
                                              into: UnsafeMutableRawBufferPointer(rebasing: o[r]), reverse: false, tensor: "t") } } }
                }
                best = min(best, threadCPUSeconds() - c0)
            }
            let t2 = Date()
            XCTAssertEqual(out, p)
            if e.needsSource {
                for (f, r) in zip(frames, ranges) {
                    try f.withUnsafeBytes { fr in try p.withUnsafeBytes { s in try out.withUnsafeMutableBytes { o in
                        try DeltaCodec.decode(e, dtype: d, frame: fr, source: UnsafeRawBufferPointer(rebasing: s[r]),
                                              into: UnsafeMutableRawBufferPointer(rebasing: o[r]), reverse: true, tensor: "t") } } }
                }
                XCTAssertEqual(out, b)
            }
            let t3 = Date()
            let size = frames.reduce(0) { $0 + $1.count }
            let ns = 1e9 / Double(p.count / d.blockBytes * d.blockElements)
            print("measure \(d.rawValue) \(e.rawValue): \(size) of \(p.count) bytes = \(String(format: "%.3f", 100 * Double(size) / Double(p.count)))%, encode \(String(format: "%.3f", t1.timeIntervalSince(t0))) s, decode \(String(format: "%.3f", best)) s CPU (\(String(format: "%.2f", best * ns)) ns/element), reverse \(String(format: "%.3f", t3.timeIntervalSince(t2))) s")
        }
        let c0 = threadCPUSeconds()
        _ = p.withUnsafeBytes { sha256Hex($0) }
        print("measure SHA-256: \(String(format: "%.2f", Double(p.count) / (threadCPUSeconds() - c0) / 1e9)) GB/s per CPU second")
    }
}

func threadCPUSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}
