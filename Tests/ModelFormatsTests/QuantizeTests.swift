import XCTest
@testable import ModelFormats

final class QuantizeTests: XCTestCase {
    struct Ref: Decodable { var source: String; var input: [Double]; var outputs: [String: String] }

    func hex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }

    /// Byte-exact against gguf-py's port of ggml's reference quantizers.
    func testMatchesGGUFPy() throws {
        let ref = try JSONDecoder().decode(Ref.self, from: Data(contentsOf: fixtureURL("quantize_reference.json")))
        let x = ref.input.map { Float($0) }
        XCTAssertEqual(x.count, 256)
        for t in [DType.f16, .bf16, .q8_0, .q4_0, .q4_1] {
            let want = try XCTUnwrap(ref.outputs[t.rawValue])
            let got = hex(try quantize(x, to: t))
            if got != want {
                let i = zip(got, want).prefix { $0 == $1 }.count / 2
                XCTFail("\(t.rawValue): first differing byte \(i) (block \(i / t.blockBytes)): got \(got.dropFirst(2 * i).prefix(8)), want \(want.dropFirst(2 * i).prefix(8))")
            }
        }
    }

    func testHalfRounding() {
        XCTAssertEqual(floatToHalf(1), 0x3C00)
        XCTAssertEqual(floatToHalf(1 + 0x1p-11), 0x3C00)              // tie → even (down)
        XCTAssertEqual(floatToHalf(1 + 3 * 0x1p-11), 0x3C02)          // tie → even (up)
        XCTAssertEqual(floatToHalf(1 + 0x1p-11 + 0x1p-20), 0x3C01)    // above the tie
        XCTAssertEqual(floatToHalf(65519), 0x7BFF)
        XCTAssertEqual(floatToHalf(65520), 0x7C00)                    // rounds to inf
        XCTAssertEqual(floatToHalf(0x1p-24), 0x0001)
        XCTAssertEqual(floatToHalf(0x1p-25), 0x0000)                  // tie → 0
        XCTAssertEqual(floatToHalf(3 * 0x1p-25), 0x0002)              // tie → even subnormal
        XCTAssertEqual(floatToHalf(-2), 0xC000)
        XCTAssertEqual(floatToHalf(.nan) & 0x7E00, 0x7E00)
        XCTAssertEqual(floatToHalf(-.infinity), 0xFC00)
        for h in stride(from: 0, through: 0xFFFF, by: 1) where (h & 0x7C00) != 0x7C00 || (h & 0x3FF) == 0 {
            XCTAssertEqual(floatToHalf(halfToFloat(UInt16(h))), UInt16(h))   // every non-NaN half round-trips
        }
    }

    func testBF16RoundToNearestEvenTies() {
        XCTAssertEqual(floatToBF16(1), 0x3F80)
        XCTAssertEqual(floatToBF16(1 + 0x1p-8), 0x3F80)               // tie, even below
        XCTAssertEqual(floatToBF16(1 + 3 * 0x1p-8), 0x3F82)           // tie, even above
        XCTAssertEqual(floatToBF16(1 + 0x1p-8 + 0x1p-20), 0x3F81)
        XCTAssertEqual(floatToBF16(-1 - 0x1p-8), 0xBF80)
        XCTAssertEqual(floatToBF16(.greatestFiniteMagnitude), 0x7F80) // overflows to inf
        XCTAssertEqual(floatToBF16(Float(bitPattern: 0x7F80_0001)), 0x7FC0) // signalling NaN → quiet
        XCTAssertTrue(bf16ToFloat(floatToBF16(.nan)).isNaN)
        XCTAssertEqual(floatToBF16(.infinity), 0x7F80)
    }

    /// Values q·d with d a half-exact scale and one |q| = 127 quantize to exactly q and back.
    func testQ8_0ExactValuesRoundTrip() throws {
        var x: [Float] = []
        for b in 0..<4 {
            let d = Float(b + 1) * 0.125
            x += (0..<32).map { j in Float((j * 37 + b * 11) % 255 - 127) * d }
            x[32 * b + 5] = 127 * d * (b % 2 == 0 ? 1 : -1)
        }
        let q = try quantize(x, to: .q8_0)
        let y = try q.withUnsafeBytes { try dequantize($0, dtype: .q8_0, count: x.count) }
        XCTAssertEqual(y, x)
    }

    /// Error bounds: Q4_1 within d/2 (+ the f16 rounding of d and m), Q4_0 within d/2 (d = amax/8).
    func testBlockQuantErrorBounds() throws {
        var s: UInt64 = 9
        let x: [Float] = (0..<(32 * 64)).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(s >> 40) - (1 << 23)) / Float(1 << 22)
        }
        for t in [DType.q4_0, .q4_1, .q8_0, .f16, .bf16] {
            let q = try quantize(x, to: t)
            let y = try q.withUnsafeBytes { try dequantize($0, dtype: t, count: x.count) }
            for b in 0..<64 {
                let blk = x[(32 * b)..<(32 * b + 32)]
                let amax = blk.map(abs).max()!, range = blk.max()! - blk.min()!
                let bound: Float
                switch t {
                case .q4_0: bound = amax / 8 * 1.01 + amax * 2e-3  // the side opposite the max clamps at +7: error up to d
                case .q4_1: bound = range / 15 / 2 * 1.01 + amax * 2e-3
                case .q8_0: bound = amax / 127 / 2 * 1.01 + amax * 1e-3
                case .f16: bound = amax * 0x1p-11
                default: bound = amax * 0x1p-8
                }
                for j in 0..<32 { XCTAssertLessThanOrEqual(abs(y[32 * b + j] - x[32 * b + j]), bound, "\(t.rawValue) block \(b)") }
            }
            // Re-quantizing the dequantized values is a fixed point for F16/BF16/Q8_0.
            if [.f16, .bf16].contains(t) { XCTAssertEqual(try quantize(y, to: t), q) }
        }
    }

    func testErrors() {
        XCTAssertThrowsError(try quantize([Float](repeating: 1, count: 31), to: .q8_0)) {
            XCTAssertEqual($0 as? QuantError, .countNotBlockMultiple(dtype: .q8_0, count: 31))
        }
        var x = [Float](repeating: 1, count: 32); x[7] = .nan
        XCTAssertThrowsError(try quantize(x, to: .q4_1)) { XCTAssertEqual($0 as? QuantError, .nonFinite(index: 7)) }
        XCTAssertThrowsError(try quantize([Float](repeating: 1, count: 256), to: .q4_K)) {
            XCTAssertEqual($0 as? QuantError, .unsupportedTarget(.q4_K))
        }
        // Subnormal scales must not trap (1/d overflows to inf).
        XCTAssertNoThrow(try quantize([Float](repeating: 1e-39, count: 32), to: .q8_0))
        XCTAssertNoThrow(try quantize([Float](repeating: -1e-39, count: 32), to: .q4_0))
        XCTAssertNoThrow(try quantize((0..<32).map { $0 % 2 == 0 ? Float.greatestFiniteMagnitude : -.greatestFiniteMagnitude }, to: .q4_1))
    }
}
