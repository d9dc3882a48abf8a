import XCTest
@testable import ModelFormats

/// Dequantization on hand-made blocks. Each test packs chosen logical values (scales, mins,
/// quants) into bytes following the block definitions in ggml-common.h (packing is written
/// here, independently of the unpacking code), then checks every output against the formula.
/// Scales are powers of two, so every expected value is exact.
final class QuantDequantizeTests: XCTestCase {
    struct LCG { var s: UInt64; mutating func next(_ n: Int) -> Int { s = s &* 6364136223846793005 &+ 1442695040888963407; return Int((s >> 33) % UInt64(n)) } }

    func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8)] }
    func half(_ f: Float) -> [UInt8] { le16(floatToHalf(f)) }

    func deq(_ bytes: [UInt8], _ t: DType) throws -> [Float] {
        let n = bytes.count / t.blockBytes * t.blockElements
        return try bytes.withUnsafeBytes { try dequantize($0, dtype: t, count: n) }
    }

    func testLiteralBlocks() throws {
        // Q4_0, d = 0.5: qs[0] = 0x9F → y[0] = (15-8)·0.5 = 3.5, y[16] = (9-8)·0.5 = 0.5;
        // qs[j>0] = 0x08 → y[j] = 0, y[j+16] = -4.
        var b: [UInt8] = [0x00, 0x38, 0x9F] + [UInt8](repeating: 0x08, count: 15)
        var y = try deq(b, .q4_0)
        XCTAssertEqual(y[0], 3.5); XCTAssertEqual(y[16], 0.5); XCTAssertEqual(y[1], 0); XCTAssertEqual(y[17], -4)
        // Q4_1, d = 2, m = -1: qs[3] = 0xA5 → y[3] = 5·2-1 = 9, y[19] = 10·2-1 = 19.
        b = [0x00, 0x40, 0x00, 0xBC] + [UInt8](repeating: 0, count: 16); b[4 + 3] = 0xA5
        y = try deq(b, .q4_1)
        XCTAssertEqual(y[3], 9); XCTAssertEqual(y[19], 19); XCTAssertEqual(y[0], -1)
        // Q8_0, d = 0.25: qs = -128, 127 → -32, 31.75.
        b = [0x00, 0x34, 0x80, 0x7F] + [UInt8](repeating: 0, count: 30)
        y = try deq(b, .q8_0)
        XCTAssertEqual(Array(y[0..<3]), [-32, 31.75, 0])
        // Q5_0, d = 1: qh bit 0 and bit 16 set, qs[0] = 0x21 → y[0] = (1|16)-16 = 1, y[16] = (2|16)-16 = 2;
        // y[1] = 0-16 = -16.
        b = [0x00, 0x3C, 0x01, 0x00, 0x01, 0x00, 0x21] + [UInt8](repeating: 0, count: 15)
        y = try deq(b, .q5_0)
        XCTAssertEqual(y[0], 1); XCTAssertEqual(y[16], 2); XCTAssertEqual(y[1], -16); XCTAssertEqual(y[17], -16)
        // Q5_1, d = 0.5, m = 3: qh bit 31 → y[31] = (qs[15]>>4 | 16)·0.5 + 3 with qs[15] = 0xF0 → 31·0.5+3 = 18.5.
        b = [0x00, 0x38, 0x00, 0x42, 0, 0, 0, 0x80] + [UInt8](repeating: 0, count: 16); b[8 + 15] = 0xF0
        y = try deq(b, .q5_1)
        XCTAssertEqual(y[31], 18.5); XCTAssertEqual(y[15], 3)
        // Plain types.
        XCTAssertEqual(try deq(le16(0x3C00) + le16(0xC000) + le16(0x0001) + le16(0x7C00), .f16), [1, -2, 0x1p-24, .infinity])
        XCTAssertEqual(try deq(le16(0x3F80) + le16(0xC0A0), .bf16), [1, -5])
        XCTAssertEqual(try deq([0x38, 0xB8, 0x01, 0x7E, 0x08], .f8e4m3), [1, -1, 0x1p-9, 448, 0x1p-6])
        XCTAssertTrue(try deq([0x7F], .f8e4m3)[0].isNaN)
        XCTAssertEqual(try deq([0x3C, 0xC0, 0x7C], .f8e5m2), [1, -2, .infinity])
    }

    /// Hand-packed K-quant and 32-blocks from random logical values.
    func testPackedBlocksAllTypes() throws {
        var r = LCG(s: 42)
        for _ in 0..<3 {
            try checkQ4_0(&r); try checkQ4_1(&r); try checkQ5_0(&r); try checkQ5_1(&r); try checkQ8_0(&r)
            try checkQ2_K(&r); try checkQ3_K(&r); try checkQ4_K(&r); try checkQ5_K(&r); try checkQ6_K(&r); try checkQ8_K(&r)
        }
    }

    func checkQ4_0(_ r: inout LCG) throws {
        let q = (0..<32).map { _ in r.next(16) }
        var b = half(0.125) + [UInt8](repeating: 0, count: 16)
        for j in 0..<16 { b[2 + j] = UInt8(q[j] | q[j + 16] << 4) }
        XCTAssertEqual(try deq(b, .q4_0), q.map { Float($0 - 8) * 0.125 })
    }

    func checkQ4_1(_ r: inout LCG) throws {
        let q = (0..<32).map { _ in r.next(16) }
        var b = half(0.25) + half(-1.5) + [UInt8](repeating: 0, count: 16)
        for j in 0..<16 { b[4 + j] = UInt8(q[j] | q[j + 16] << 4) }
        XCTAssertEqual(try deq(b, .q4_1), q.map { Float($0) * 0.25 - 1.5 })
    }

    func qh(_ q: [Int]) -> [UInt8] {   // bit j of the u32 = bit 4 of q[j]
        var h: UInt32 = 0
        for j in 0..<32 where q[j] & 16 != 0 { h |= 1 << UInt32(j) }
        return [UInt8(h & 0xff), UInt8((h >> 8) & 0xff), UInt8((h >> 16) & 0xff), UInt8(h >> 24)]
    }

    func checkQ5_0(_ r: inout LCG) throws {
        let q = (0..<32).map { _ in r.next(32) }
        var b = half(0.5) + qh(q) + [UInt8](repeating: 0, count: 16)
        for j in 0..<16 { b[6 + j] = UInt8((q[j] & 15) | (q[j + 16] & 15) << 4) }
        XCTAssertEqual(try deq(b, .q5_0), q.map { Float($0 - 16) * 0.5 })
    }

    func checkQ5_1(_ r: inout LCG) throws {
        let q = (0..<32).map { _ in r.next(32) }
        var b = half(2) + half(0.75) + qh(q) + [UInt8](repeating: 0, count: 16)
        for j in 0..<16 { b[8 + j] = UInt8((q[j] & 15) | (q[j + 16] & 15) << 4) }
        XCTAssertEqual(try deq(b, .q5_1), q.map { Float($0) * 2 + 0.75 })
    }

    func checkQ8_0(_ r: inout LCG) throws {
        let q = (0..<32).map { _ in r.next(256) - 128 }
        let b = half(0.0625) + q.map { UInt8(bitPattern: Int8($0)) }
        XCTAssertEqual(try deq(b, .q8_0), q.map { Float($0) * 0.0625 })
    }

    // Q2_K: weight e = 128n + 32j + 16h + l sits in qs[32n + 16h + l] at bits 2j; sub-block e/16.
    func checkQ2_K(_ r: inout LCG) throws {
        let q = (0..<256).map { _ in r.next(4) }
        let sc = (0..<16).map { _ in r.next(16) }, mn = (0..<16).map { _ in r.next(16) }
        var scales = [UInt8](repeating: 0, count: 16), qs = [UInt8](repeating: 0, count: 64)
        for k in 0..<16 { scales[k] = UInt8(sc[k] | mn[k] << 4) }
        for e in 0..<256 {
            let n = e / 128, j = (e % 128) / 32, h = (e % 32) / 16, l = e % 16
            qs[32 * n + 16 * h + l] |= UInt8(q[e] << (2 * j))
        }
        let d: Float = 0.5, dmin: Float = 0.25
        let b = scales + qs + half(d) + half(dmin)
        XCTAssertEqual(b.count, DType.q2_K.blockBytes)
        XCTAssertEqual(try deq(b, .q2_K), (0..<256).map { e in d * Float(sc[e / 16]) * Float(q[e]) - dmin * Float(mn[e / 16]) })
    }

    // Q3_K: low 2 bits as Q2_K; the high bit of weight e is hmask[16h + l] bit (4n + j), and the
    // weight is low - (bit ? 0 : 4). Scales: 6 bits, stored +32; scale k = 4g + i has its low nibble
    // in byte (g%2)*4 + i (low nibble for g < 2, high for g ≥ 2) and bits 4-5 in byte 8 + i at bits 2g.
    func checkQ3_K(_ r: inout LCG) throws {
        let q = (0..<256).map { _ in r.next(8) - 4 }          // -4...3
        let sc = (0..<16).map { _ in r.next(64) - 32 }        // -32...31
        var hmask = [UInt8](repeating: 0, count: 32), qs = [UInt8](repeating: 0, count: 64), scales = [UInt8](repeating: 0, count: 12)
        for e in 0..<256 {
            let n = e / 128, j = (e % 128) / 32, h = (e % 32) / 16, l = e % 16
            let u = q[e] + 4                                  // 0...7: bit 2 is the hmask bit
            qs[32 * n + 16 * h + l] |= UInt8((u & 3) << (2 * j))
            if u & 4 != 0 { hmask[16 * h + l] |= UInt8(1 << (4 * n + j)) }
        }
        for k in 0..<16 {
            let s = sc[k] + 32, g = k / 4, i = k % 4
            scales[(g % 2) * 4 + i] |= UInt8((s & 15) << (g >= 2 ? 4 : 0))
            scales[8 + i] |= UInt8((s >> 4) << (2 * g))
        }
        let d: Float = 0.125
        let b = hmask + qs + scales + half(d)
        XCTAssertEqual(b.count, DType.q3_K.blockBytes)
        XCTAssertEqual(try deq(b, .q3_K), (0..<256).map { e in d * Float(sc[e / 16]) * Float(q[e]) })
    }

    /// Packs 8 six-bit (scale, min) pairs as get_scale_min_k4 reads them.
    func packK4(_ sc: [Int], _ mn: [Int]) -> [UInt8] {
        var s = [UInt8](repeating: 0, count: 12)
        for j in 0..<4 { s[j] = UInt8(sc[j]); s[j + 4] = UInt8(mn[j]) }
        for j in 4..<8 {
            s[j + 4] = UInt8((sc[j] & 15) | (mn[j] & 15) << 4)
            s[j - 4] |= UInt8((sc[j] >> 4) << 6)
            s[j] |= UInt8((mn[j] >> 4) << 6)
        }
        return s
    }

    // Q4_K: weight e = 64g + 32h + l: nibble h of qs[32g + l], sub-block 2g + h.
    func checkQ4_K(_ r: inout LCG) throws {
        let q = (0..<256).map { _ in r.next(16) }
        let sc = (0..<8).map { _ in r.next(64) }, mn = (0..<8).map { _ in r.next(64) }
        var qs = [UInt8](repeating: 0, count: 128)
        for e in 0..<256 { let g = e / 64, h = (e % 64) / 32, l = e % 32; qs[32 * g + l] |= UInt8(q[e] << (4 * h)) }
        let d: Float = 0.25, dmin: Float = 2
        let b = half(d) + half(dmin) + packK4(sc, mn) + qs
        XCTAssertEqual(b.count, DType.q4_K.blockBytes)
        XCTAssertEqual(try deq(b, .q4_K), (0..<256).map { e in d * Float(sc[e / 32]) * Float(q[e]) - dmin * Float(mn[e / 32]) })
    }

    // Q5_K: as Q4_K, and bit 4 of weight e = 64g + 32h + l is bit (2g + h) of qh[l].
    func checkQ5_K(_ r: inout LCG) throws {
        let q = (0..<256).map { _ in r.next(32) }
        let sc = (0..<8).map { _ in r.next(64) }, mn = (0..<8).map { _ in r.next(64) }
        var qs = [UInt8](repeating: 0, count: 128), qh = [UInt8](repeating: 0, count: 32)
        for e in 0..<256 {
            let g = e / 64, h = (e % 64) / 32, l = e % 32
            qs[32 * g + l] |= UInt8((q[e] & 15) << (4 * h))
            if q[e] & 16 != 0 { qh[l] |= UInt8(1 << (2 * g + h)) }
        }
        let d: Float = 0.5, dmin: Float = 0.125
        let b = half(d) + half(dmin) + packK4(sc, mn) + qh + qs
        XCTAssertEqual(b.count, DType.q5_K.blockBytes)
        XCTAssertEqual(try deq(b, .q5_K), (0..<256).map { e in d * Float(sc[e / 32]) * Float(q[e]) - dmin * Float(mn[e / 32]) })
    }

    // Q6_K: weight e = 128n + 32k + l: low nibble from ql[64n + l + 32(k%2)] (high nibble when k ≥ 2),
    // bits 4-5 from qh[32n + l] at bits 2k; value q - 32; int8 scale sc[e/16].
    func checkQ6_K(_ r: inout LCG) throws {
        let q = (0..<256).map { _ in r.next(64) }
        let sc = (0..<16).map { _ in r.next(256) - 128 }
        var ql = [UInt8](repeating: 0, count: 128), qh = [UInt8](repeating: 0, count: 64)
        for e in 0..<256 {
            let n = e / 128, k = (e % 128) / 32, l = e % 32
            ql[64 * n + l + 32 * (k % 2)] |= UInt8((q[e] & 15) << (k >= 2 ? 4 : 0))
            qh[32 * n + l] |= UInt8((q[e] >> 4) << (2 * k))
        }
        let d: Float = 0.0078125
        let b = ql + qh + sc.map { UInt8(bitPattern: Int8($0)) } + half(d)
        XCTAssertEqual(b.count, DType.q6_K.blockBytes)
        XCTAssertEqual(try deq(b, .q6_K), (0..<256).map { e in d * Float(sc[e / 16]) * Float(q[e] - 32) })
    }

    func checkQ8_K(_ r: inout LCG) throws {
        let q = (0..<256).map { _ in r.next(256) - 128 }
        let d: Float = 0.03125
        let b = withUnsafeBytes(of: d.bitPattern.littleEndian) { Array($0) } + q.map { UInt8(bitPattern: Int8($0)) } + [UInt8](repeating: 0, count: 32)
        XCTAssertEqual(try deq(b, .q8_K), q.map { d * Float($0) })
    }

    func testMultiBlockAndErrors() throws {
        var r = LCG(s: 1)
        // Two Q4_K blocks back to back: the second block's output starts at 256.
        let b = (0..<(2 * 144)).map { _ in UInt8(r.next(256)) }
        let both = try deq(b, .q4_K)
        XCTAssertEqual(Array(both[256...]), try deq(Array(b[144...]), .q4_K))
        XCTAssertThrowsError(try [UInt8](repeating: 0, count: 20).withUnsafeBytes { try dequantize($0, dtype: .q4_1, count: 33) }) {
            XCTAssertEqual($0 as? QuantError, .countNotBlockMultiple(dtype: .q4_1, count: 33))
        }
        XCTAssertThrowsError(try [UInt8](repeating: 0, count: 20).withUnsafeBytes { try dequantize($0, dtype: .q4_1, count: 64) }) {
            XCTAssertEqual($0 as? QuantError, .sourceTooSmall(dtype: .q4_1, count: 64, needed: 40, available: 20))
        }
    }

    struct BlocksRef: Decodable { struct T: Decodable { var bytes: String; var values: [Double] }; var source: String; var types: [String: T] }

    /// Seeded random blocks of every quant type against gguf-py's dequantize (a second, independent
    /// implementation). Float op order can differ from ggml's, so allow 1e-6 relative.
    func testRandomBlocksMatchGGUFPy() throws {
        let ref = try JSONDecoder().decode(BlocksRef.self, from: Data(contentsOf: fixtureURL("dequant_blocks_reference.json")))
        XCTAssertEqual(ref.types.count, 10)
        for (name, t) in ref.types.sorted(by: { $0.key < $1.key }) {
            let dtype = try XCTUnwrap(DType(rawValue: name))
            var bytes: [UInt8] = []
            var it = t.bytes.makeIterator()
            while let a = it.next(), let b = it.next() { bytes.append(UInt8(String([a, b]), radix: 16)!) }
            let got = try deq(bytes, dtype)
            XCTAssertEqual(got.count, t.values.count, name)
            var maxRel = 0.0
            for (g, w) in zip(got, t.values) { maxRel = max(maxRel, abs(Double(g) - w) / max(1e-3, abs(w))) }
            XCTAssertLessThanOrEqual(maxRel, 1e-6, "\(name): max relative diff \(maxRel) vs gguf-py")
        }
    }

    /// The vectorizable F16 path equals the exact scalar conversion on all 65536 halves (bit for bit,
    /// NaN payloads included), and the scalar one matches Swift's Float16 on every non-NaN.
    func testF16AllValues() throws {
        let src = (0...0xFFFF).map { UInt16($0) }
        let fast = try src.withUnsafeBytes { try dequantize($0, dtype: .f16, count: src.count) }
        for h in src {
            XCTAssertEqual(fast[Int(h)].bitPattern, halfToFloat(h).bitPattern, "half 0x\(String(h, radix: 16))")
            #if !(os(macOS) && arch(x86_64))
            let ref = Float(Float16(bitPattern: h))
            if !ref.isNaN { XCTAssertEqual(halfToFloat(h).bitPattern, ref.bitPattern) }
            #endif
        }
    }
}
