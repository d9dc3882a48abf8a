import XCTest
@testable import ModelFormats

final class GGUFReaderTests: XCTestCase {
    func testValidFileParses() throws {
        for v: UInt32 in [2, 3] {
            let f = try parseGGUF(GGUFBytes.valid(version: v))
            XCTAssertEqual(f.version, v)
            XCTAssertEqual(f.metadata.map(\.key), ["general.architecture", "test.list"])
            XCTAssertEqual(f["test.list"], .array(.uint32, [.uint32(7), .uint32(8), .uint32(9)]))
            XCTAssertEqual(f.tensors.map(\.name), ["a", "b"])
            XCTAssertEqual(f.tensors[0].shape, [2, 4])
            XCTAssertEqual(f.tensors[1].offset, 32)
            XCTAssertEqual(f.alignment, 32)
            XCTAssertEqual(f.dataOffset % 32, 0)
        }
    }

    func testCustomAlignment() throws {
        let f = try parseGGUF(GGUFBytes.valid(alignment: 64))
        XCTAssertEqual(f.alignment, 64)
        XCTAssertEqual(f.dataOffset % 64, 0)
        XCTAssertEqual(f.tensors[1].offset, 64)
    }

    func assertError(_ bytes: [UInt8], _ check: (GGUFError) -> Bool, file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try parseGGUF(bytes)
            XCTFail("parsed a malformed file", file: file, line: line)
        } catch let e as GGUFError {
            XCTAssertTrue(check(e), "unexpected error: \(e)", file: file, line: line)
            XCTAssertFalse(e.description.isEmpty)
        } catch {
            XCTFail("unexpected error type \(error)", file: file, line: line)
        }
    }

    func testBadMagic() {
        var b = GGUFBytes.valid()
        b[0] = UInt8(ascii: "X")
        assertError(b) { if case .badMagic(let m) = $0 { return m == Array("XGUF".utf8) }; return false }
        assertError(Array("PK\u{3}\u{4}".utf8)) { if case .badMagic = $0 { return true }; return false }
    }

    func testTooSmall() {
        assertError(Array("GGUF".utf8)) { $0 == .fileTooSmall(size: 4) }
        assertError([]) { $0 == .fileTooSmall(size: 0) }
    }

    func testUnsupportedVersion() {
        var b = GGUFBytes.valid()
        b[4] = 1
        assertError(b) { $0 == .unsupportedVersion(1) }
        b[4] = 0; b[7] = 3   // big-endian v3
        assertError(b) { e in e == .unsupportedVersion(0x0300_0000) && e.description.contains("big-endian") }
    }

    func testTruncatedEverywhereIsAnErrorNeverACrash() {
        let b = GGUFBytes.valid()
        let full = try! parseGGUF(b)
        // Every prefix must fail with a specific error (never crash, never parse).
        for n in 0..<b.count where n < full.dataOffset + 64 {
            do { _ = try parseGGUF(Array(b[0..<n])); XCTFail("prefix \(n) parsed") }
            catch let e as GGUFError {
                switch e {
                case .fileTooSmall, .truncated, .tensorOutOfRange, .absurdCount: break
                default: XCTFail("prefix \(n): \(e)")
                }
            } catch { XCTFail("prefix \(n): \(error)") }
        }
        // Cut inside the metadata: a truncation error naming the offset.
        assertError(Array(b[0..<60])) { if case .truncated(_, let o, _, _) = $0 { return o == 56 }; return false }
        // Cut inside the data: tensor b runs past the end.
        assertError(Array(b[0..<(b.count - 4)])) {
            if case .tensorOutOfRange(let t, 32, 32, 60) = $0 { return t == "b" }; return false
        }
    }

    func testAbsurdCounts() {
        var b = GGUFBytes.valid()
        b.replaceSubrange(8..<16, with: withUnsafeBytes(of: UInt64(1) << 60) { Array($0) })
        assertError(b) { if case .absurdCount("tensor count", 1 << 60, _) = $0 { return true }; return false }
        b = GGUFBytes.valid()
        b.replaceSubrange(16..<24, with: withUnsafeBytes(of: UInt64.max) { Array($0) })
        assertError(b) { if case .absurdCount("metadata count", .max, _) = $0 { return true }; return false }
        // A string length of 2^62.
        b = GGUFBytes.valid()
        b.replaceSubrange(24..<32, with: withUnsafeBytes(of: UInt64(1) << 62) { Array($0) })
        assertError(b) { if case .stringTooLong(_, 1 << 62, _) = $0 { return true }; return false }
        // An array length of 2^40 (array count sits after key, type, elem type).
        b = GGUFBytes.valid()
        let arrayCount = 24 + 8 + 20 + 4 + 8 + 5 + 8 + 9 + 4 + 4
        XCTAssertEqual(b[arrayCount], 3)
        b.replaceSubrange(arrayCount..<(arrayCount + 8), with: withUnsafeBytes(of: UInt64(1) << 40) { Array($0) })
        assertError(b) { if case .absurdCount("array length of test.list", 1 << 40, _) = $0 { return true }; return false }
    }

    /// Patches the tensor-info fields of tensor "b" in the valid file.
    func withTensorB(_ edit: (inout GGUFBytes) -> Void, offset: UInt64 = 32, type: GGMLType = .f32, nDims: UInt32 = 1, ne0: UInt64 = 8, name: String = "b") -> [UInt8] {
        var g = GGUFBytes()
        g.u32(ggufMagic); g.u32(3); g.u64(2); g.u64(0)
        g.str("a"); g.u32(2); g.u64(4); g.u64(2); g.u32(GGMLType.f32.rawValue); g.u64(0)
        g.str(name); g.u32(nDims); for _ in 0..<Int(min(nDims, 8)) { g.u64(ne0) }; g.u32(type.rawValue); g.u64(offset)
        edit(&g)
        g.pad(32)
        g.b.append(contentsOf: [UInt8](repeating: 0, count: 64))
        return g.b
    }

    func testTensorOffsetProblems() {
        assertError(withTensorB({ _ in }, offset: 40)) { $0 == .misalignedTensor(tensor: "b", offset: 40, alignment: 32) }
        assertError(withTensorB({ _ in }, offset: 1 << 50)) { if case .tensorOutOfRange("b", 1 << 50, 32, 64) = $0 { return true }; return false }
        assertError(withTensorB({ _ in }, offset: 0)) { $0 == .overlappingTensors("a", "b") || $0 == .overlappingTensors("b", "a") }
        assertError(withTensorB({ _ in }, offset: 64)) { if case .tensorOutOfRange("b", 64, 32, 64) = $0 { return true }; return false }
    }

    func testBadTensorInfos() {
        assertError(withTensorB({ _ in }, name: "a")) { $0 == .duplicateTensorName("a") }
        assertError(withTensorB({ _ in }, nDims: 5)) { $0 == .invalidDimensionCount(tensor: "b", count: 5) }
        assertError(withTensorB({ _ in }, nDims: 0)) { $0 == .invalidDimensionCount(tensor: "b", count: 0) }
        assertError(withTensorB({ _ in }, type: .q8_0)) {
            $0 == .rowNotBlockMultiple(tensor: "b", type: "Q8_0", rowLength: 8, blockElements: 32)
        }
        assertError(withTensorB({ _ in }, type: .iq2_xxs)) { $0 == .unsupportedTensorType(tensor: "b", type: "IQ2_XXS") }
        assertError(withTensorB({ _ in }, nDims: 4, ne0: 1 << 20)) { if case .invalidShape("b", _) = $0 { return true }; return false }
        // Unknown type number 4 (removed Q4_2): patch the type field.
        var b = withTensorB({ _ in }, type: .f32)
        let typeAt = 24 + (8 + 1 + 4 + 16 + 4 + 8) + (8 + 1 + 4 + 8)
        XCTAssertEqual(b[typeAt], 0)
        b[typeAt] = 4
        assertError(b) { $0 == .unknownTensorType(tensor: "b", raw: 4) }
    }

    func testBadMetadata() {
        func file(_ kvs: (inout GGUFBytes) -> Void, count: UInt64) -> [UInt8] {
            var g = GGUFBytes()
            g.u32(ggufMagic); g.u32(3); g.u64(0); g.u64(count)
            kvs(&g)
            g.pad(32)
            return g.b
        }
        assertError(file({ $0.str("k"); $0.u32(13); $0.u32(0) }, count: 1)) { $0 == .unknownValueType(key: "k", raw: 13) }
        assertError(file({ g in for _ in 0..<2 { g.str("k"); g.u32(4); g.u32(1) } }, count: 2)) { $0 == .duplicateKey("k") }
        assertError(file({ $0.str("general.alignment"); $0.u32(4); $0.u32(48) }, count: 1)) {
            if case .invalidAlignment(let s) = $0 { return s.contains("48") }; return false
        }
        assertError(file({ $0.str("general.alignment"); $0.u32(10); $0.u64(32) }, count: 1)) {
            if case .invalidAlignment = $0 { return true }; return false
        }
        assertError(file({ $0.str("k"); $0.u32(8); $0.u64(2); $0.u8(0xC3); $0.u8(0x28) }, count: 1)) {
            if case .invalidUTF8(let w, 45) = $0 { return w.contains("k") }; return false
        }
        assertError(file({ $0.str("k"); $0.u32(7); $0.u8(2) }, count: 1)) { if case .badMetadataValue("k", _) = $0 { return true }; return false }
        // Arrays nested 9 deep.
        assertError(file({ g in g.str("k"); g.u32(9); for _ in 0..<9 { g.u32(9); g.u64(1) }; g.u32(4); g.u64(1); g.u32(0) }, count: 1)) {
            $0 == .nestingTooDeep(key: "k", depth: 8)
        }
    }

    func testNestedArraysAndAllScalarTypes() throws {
        var g = GGUFBytes()
        g.u32(ggufMagic); g.u32(3); g.u64(0); g.u64(2)
        g.str("nested"); g.u32(9); g.u32(9); g.u64(2)
        g.u32(4); g.u64(1); g.u32(5)
        g.u32(8); g.u64(2); g.str("x"); g.str("é")
        g.str("scalars"); g.u32(9); g.u32(12); g.u64(1); g.u64((2.5 as Double).bitPattern)
        g.pad(32)
        let f = try parseGGUF(g.b)
        XCTAssertEqual(f["nested"], .array(.array, [.array(.uint32, [.uint32(5)]), .array(.string, [.string("x"), .string("é")])]))
        XCTAssertEqual(f["scalars"], .array(.float64, [.float64(2.5)]))
    }

    /// 3000 seeded random corruptions (byte flips, overwritten u64s, cuts) of a valid file: each
    /// either parses to a self-consistent file or throws a GGUFError; nothing crashes.
    func testRandomCorruptionsNeverCrash() {
        let base = GGUFBytes.valid()
        var s: UInt64 = 12345
        func rnd(_ n: Int) -> Int { s = s &* 6364136223846793005 &+ 1442695040888963407; return Int((s >> 33) % UInt64(n)) }
        var parsed = 0, failed = 0
        for _ in 0..<3000 {
            var b = base
            switch rnd(3) {
            case 0: for _ in 0..<(1 + rnd(4)) { b[rnd(b.count)] ^= UInt8(1 + rnd(255)) }
            case 1:
                let at = rnd(b.count - 8)
                let v: UInt64 = [0, 1, 31, 33, UInt64.max, 1 << 63, 1 << 32, UInt64(rnd(1 << 20))][rnd(8)]
                b.replaceSubrange(at..<(at + 8), with: withUnsafeBytes(of: v.littleEndian) { Array($0) })
            default: b = Array(b[0..<rnd(b.count)])
            }
            do {
                let f = try parseGGUF(b)
                for t in f.tensors { XCTAssertLessThanOrEqual(f.dataOffset + Int(t.offset) + t.byteCount, b.count) }
                parsed += 1
            } catch is GGUFError { failed += 1 } catch { XCTFail("non-GGUF error \(error)") }
        }
        XCTAssertGreaterThan(failed, 1000)
        XCTAssertEqual(parsed + failed, 3000)
    }
}
