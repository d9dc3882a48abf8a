import Foundation
import XCTest
@testable import ModelFormats
import TestSupport

/// A file written by the reference implementation (pip safetensors 0.8.0, numpy API):
///
///     t = {"b.weight": np.arange(6, dtype=np.float32).reshape(2,3),
///          "a.bias": np.array([1,2,3], dtype=np.int64),
///          "c": np.array([True, False], dtype=bool),
///          "h": np.array([1.5, -2.0], dtype=np.float16)}
///     safetensors.numpy.save_file(t, "ref.safetensors", metadata={"format": "pt", "zeta": "1"})
///
/// 342 bytes, SHA-256 de9c34bca3f5341687d2413b03fa786567d6fa989d0643090db50434caccf155.
/// The reference orders tensors by dtype size, then name; its 280-byte header ends in 3 spaces.
let referenceSafetensorsBase64 = "GAEAAAAAAAB7Il9fbWV0YWRhdGFfXyI6eyJmb3JtYXQiOiJwdCIsInpldGEiOiIxIn0sImEuYmlhcyI6eyJkdHlwZSI6Ikk2NCIsInNoYXBlIjpbM10sImRhdGFfb2Zmc2V0cyI6WzAsMjRdfSwiYi53ZWlnaHQiOnsiZHR5cGUiOiJGMzIiLCJzaGFwZSI6WzIsM10sImRhdGFfb2Zmc2V0cyI6WzI0LDQ4XX0sImgiOnsiZHR5cGUiOiJGMTYiLCJzaGFwZSI6WzJdLCJkYXRhX29mZnNldHMiOls0OCw1Ml19LCJjIjp7ImR0eXBlIjoiQk9PTCIsInNoYXBlIjpbMl0sImRhdGFfb2Zmc2V0cyI6WzUyLDU0XX19ICAgAQAAAAAAAAACAAAAAAAAAAMAAAAAAAAAAAAAAAAAgD8AAABAAABAQAAAgEAAAKBAAD4AwAEA"

func tempDir(_ name: String = #function) throws -> URL {
    try TinyModel.scratchDirectory(name)
}

/// A safetensors file from a header string and data bytes, with the declared size `n`
/// (default: the header's length).
func rawSafetensors(_ header: String, data: [UInt8] = [], declaredSize: UInt64? = nil, headerBytes: [UInt8]? = nil) -> [UInt8] {
    let h = headerBytes ?? Array(header.utf8)
    var n = (declaredSize ?? UInt64(h.count)).littleEndian
    return withUnsafeBytes(of: &n) { Array($0) } + h + data
}

final class SafetensorsTests: XCTestCase {
    func write(_ bytes: [UInt8], _ dir: URL, _ name: String = "x.safetensors") throws -> URL {
        let u = dir.appendingPathComponent(name)
        try Data(bytes).write(to: u)
        return u
    }

    // MARK: Reading and writing match the reference implementation

    func testReadsReferenceFile() throws {
        let dir = try tempDir()
        let u = try write(Array(Data(base64Encoded: referenceSafetensorsBase64)!), dir)
        let f = try SafetensorsFile(url: u)
        XCTAssertEqual(f.headerSize, 280)
        XCTAssertEqual(f.header.metadata, [.init("format", "pt"), .init("zeta", "1")])
        XCTAssertEqual(f.header.entries.map(\.name), ["a.bias", "b.weight", "h", "c"])
        XCTAssertEqual(f.header.entries.map(\.dtype), [.i64, .f32, .f16, .bool])
        XCTAssertEqual(f.header.entries[1].shape, [2, 3])
        let e = f.header.entries
        XCTAssertEqual(try dequantize(f.bytes(of: e[0]), dtype: .i64, count: 3), [1, 2, 3])
        XCTAssertEqual(try dequantize(f.bytes(of: e[1]), dtype: .f32, count: 6), [0, 1, 2, 3, 4, 5])
        XCTAssertEqual(try dequantize(f.bytes(of: e[2]), dtype: .f16, count: 2), [1.5, -2.0])
        XCTAssertEqual(try dequantize(f.bytes(of: e[3]), dtype: .bool, count: 2), [1, 0])
    }

    func testWriterMatchesReferenceBytes() throws {
        // Built from scratch, in the reference's order: our header JSON and padding are its bytes.
        let ref = Array(Data(base64Encoded: referenceSafetensorsBase64)!)
        let dir = try tempDir()
        let header = try SafetensorsHeader(metadata: [.init("format", "pt"), .init("zeta", "1")], tensors: [
            ("a.bias", .i64, [3]), ("b.weight", .f32, [2, 3]), ("h", .f16, [2]), ("c", .bool, [2]),
        ])
        XCTAssertEqual(header.encoded(), Array(ref[8..<(8 + 280)]))
        let u = dir.appendingPathComponent("w.safetensors")
        let w = try SafetensorsWriter(url: u, header: header)
        let data = Array(ref[(8 + 280)...])
        try data.withUnsafeBytes { d in
            try w.write("a.bias", UnsafeRawBufferPointer(rebasing: d[0..<24]))
            try w.write("b.weight", UnsafeRawBufferPointer(rebasing: d[24..<48]))
            // The rest in odd-sized chunks: the streaming path.
            try w.append(UnsafeRawBufferPointer(rebasing: d[48..<51]))
            try w.append(UnsafeRawBufferPointer(rebasing: d[51..<54]))
        }
        try w.finish()
        XCTAssertEqual(Array(try Data(contentsOf: u)), ref)
    }

    func testUnchangedRoundTripKeepsForeignFormatting() throws {
        // Whitespace, key order and padding the reference would not write are kept as read.
        let dir = try tempDir()
        let header = "{ \"b\": {\"shape\": [1], \"dtype\": \"F32\", \"data_offsets\": [4, 8]},\n \"__metadata__\": {\"k\": \"v\"}, \"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]} }     "
        let bytes = rawSafetensors(header, data: [1, 2, 3, 4, 0, 0, 0x80, 0x3f])
        let u = try write(bytes, dir)
        let f = try SafetensorsFile(url: u)
        XCTAssertEqual(f.header.entries.map(\.name), ["b", "a"])
        XCTAssertEqual(f.header.entriesInDataOrder.map(\.name), ["a", "b"])
        let out = dir.appendingPathComponent("out.safetensors")
        try f.write(to: out)
        XCTAssertEqual(Array(try Data(contentsOf: out)), bytes)
        // A changed header is re-encoded canonically: metadata first, 8-byte aligned.
        var h = f.header
        h.metadata = [.init("k", "w")]
        let enc = h.encoded()
        XCTAssertEqual((8 + enc.count) % 8, 0)
        XCTAssertTrue(String(decoding: enc, as: UTF8.self).hasPrefix("{\"__metadata__\":{\"k\":\"w\"},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}"))
    }

    func testAllDTypesAndZeroSizedTensorsRoundTrip() throws {
        let dir = try tempDir()
        let types: [DType] = [.f64, .f32, .f16, .bf16, .f8e4m3, .f8e5m2, .i64, .i32, .i16, .i8, .u64, .u32, .u16, .u8, .bool]
        var specs: [(name: String, dtype: DType, shape: [Int])] = types.map { ("t.\($0.rawValue)", $0, [3, 2]) }
        specs.insert(("empty", .f32, [0, 5]), at: 3)
        specs.append(("scalar", .f32, []))
        let header = try SafetensorsHeader(metadata: nil, tensors: specs)
        let u = dir.appendingPathComponent("all.safetensors")
        let w = try SafetensorsWriter(url: u, header: header)
        var rng = SyntheticRNG(seed: 7)
        for e in header.entriesInDataOrder {
            let b = (0..<e.byteCount).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            try b.withUnsafeBytes { try w.write(e.name, $0) }
        }
        try w.finish()
        let f = try SafetensorsFile(url: u)
        XCTAssertEqual(f.header, header)
        XCTAssertNil(f.header.metadata)
        let out = dir.appendingPathComponent("copy.safetensors")
        try f.write(to: out)
        XCTAssertEqual(try Data(contentsOf: out), try Data(contentsOf: u))
        XCTAssertEqual(f.header.entries.first { $0.name == "scalar" }?.byteCount, 4)
    }

    func testWriterRejectsWrongSizesAndRemovesPartialFile() throws {
        let dir = try tempDir()
        let u = dir.appendingPathComponent("p.safetensors")
        let header = try SafetensorsHeader(metadata: nil, tensors: [("a", .f32, [2])])
        do {
            let w = try SafetensorsWriter(url: u, header: header)
            XCTAssertThrowsError(try [UInt8](repeating: 0, count: 4).withUnsafeBytes { try w.write("a", $0) }) {
                guard case SafetensorsError.writeMismatch = $0 else { return XCTFail("\($0)") }
            }
            XCTAssertThrowsError(try w.finish())
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: u.path), "an unfinished write must not leave a file")
    }

    // MARK: Malformed files: each problem its own error

    func assertError(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line,
                     _ check: (SafetensorsError) -> Bool) throws {
        let dir = try tempDir()
        let u = try write(bytes, dir)
        XCTAssertThrowsError(try SafetensorsFile(url: u), file: file, line: line) { e in
            guard let se = e as? SafetensorsError else { return XCTFail("not a SafetensorsError: \(e)", file: file, line: line) }
            XCTAssertTrue(check(se), "unexpected error: \(se)", file: file, line: line)
            XCTAssertFalse(se.description.isEmpty)
        }
    }

    let f32x2 = "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"

    func testMalformedHeaders() throws {
        let data8 = [UInt8](repeating: 0, count: 8)
        try assertError([1, 2, 3]) { if case .fileTooSmall(_, 3) = $0 { return true }; return false }
        try assertError(rawSafetensors("{", declaredSize: 1)) { if case .headerTooSmall(_, 1) = $0 { return true }; return false }
        try assertError(rawSafetensors("{}", declaredSize: 200_000_000)) {
            if case .headerTooLarge(_, 200_000_000, 100_000_000) = $0 { return true }; return false
        }
        try assertError(rawSafetensors("{}", declaredSize: UInt64.max)) { if case .headerTooLarge = $0 { return true }; return false }
        try assertError(rawSafetensors("{}", declaredSize: 100)) {
            if case .headerPastEndOfFile(_, 100, 10) = $0 { return true }; return false
        }
        try assertError(rawSafetensors("", headerBytes: Array("{\"".utf8) + [0xFF, 0xFE] + Array("\":1}".utf8))) {
            if case .headerNotUTF8 = $0 { return true }; return false
        }
        try assertError(rawSafetensors("{\"a\":")) { if case .headerNotJSON = $0 { return true }; return false }
        try assertError(rawSafetensors("{\"a\":1} x")) { if case .headerNotJSON = $0 { return true }; return false }
        try assertError(rawSafetensors("[1, 2]")) { if case .headerNotObject = $0 { return true }; return false }
        try assertError(rawSafetensors("{\(f32x2),\(f32x2)}", data: data8)) {
            if case .duplicateName(_, "a") = $0 { return true }; return false
        }
        try assertError(rawSafetensors("{\"__metadata__\":{\"k\":1}}")) { if case .invalidMetadata = $0 { return true }; return false }
        try assertError(rawSafetensors("{\"__metadata__\":[]}")) { if case .invalidMetadata = $0 { return true }; return false }
        try assertError(rawSafetensors("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", data: data8)) {
            if case .invalidEntry(_, "a", "missing shape") = $0 { return true }; return false
        }
        try assertError(rawSafetensors("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", data: data8)) {
            if case .invalidEntry(_, "a", _) = $0 { return true }; return false
        }
        try assertError(rawSafetensors("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", data: data8)) {
            if case .invalidEntry(_, "a", _) = $0 { return true }; return false
        }
        try assertError(rawSafetensors("{\"a\":{\"dtype\":\"C64\",\"shape\":[1],\"data_offsets\":[0,8]}}", data: data8)) {
            if case .unknownDType(_, "a", "C64") = $0 { return true }; return false
        }
        try assertError(rawSafetensors("{\"a\":{\"dtype\":\"Q4_0\",\"shape\":[32],\"data_offsets\":[0,18]}}")) {
            if case .unknownDType(_, "a", "Q4_0") = $0 { return true }; return false
        }
        try assertError(rawSafetensors("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", data: data8)) {
            if case .invalidOffsets(_, "a", 8, 0) = $0 { return true }; return false
        }
        try assertError(rawSafetensors("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", data: data8)) {
            if case .sizeOverflow(_, "a", _) = $0 { return true }; return false
        }
        try assertError(rawSafetensors("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", data: data8)) {
            if case .sizeMismatch(_, "a", [3], .f32, 12, 8) = $0 { return true }; return false
        }
    }

    func testMalformedDataLayout() throws {
        let t = { (n: String, b: Int, e: Int) in "\"\(n)\":{\"dtype\":\"U8\",\"shape\":[\(e - b)],\"data_offsets\":[\(b),\(e)]}" }
        let d = [UInt8](repeating: 7, count: 16)
        // gap: b starts at 8 after a ends at 4
        try assertError(rawSafetensors("{\(t("a", 0, 4)),\(t("b", 8, 16))}", data: d)) {
            if case .offsetsNotContiguous(_, "b", 4, 8) = $0 { return true }; return false
        }
        // overlap
        try assertError(rawSafetensors("{\(t("a", 0, 8)),\(t("b", 4, 16))}", data: d)) {
            if case .offsetsNotContiguous(_, "b", 8, 4) = $0 { return true }; return false
        }
        // does not start at 0
        try assertError(rawSafetensors("{\(t("a", 4, 16))}", data: d)) {
            if case .offsetsNotContiguous(_, "a", 0, 4) = $0 { return true }; return false
        }
        // past the end (truncated file)
        try assertError(rawSafetensors("{\(t("a", 0, 32))}", data: d)) {
            if case .dataPastEndOfFile(_, "a", 32, 16) = $0 { return true }; return false
        }
        // trailing bytes after the last tensor
        try assertError(rawSafetensors("{\(t("a", 0, 8))}", data: d)) {
            if case .trailingBytes(_, 8, 16) = $0 { return true }; return false
        }
        // huge offsets do not overflow anything
        try assertError(rawSafetensors("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[9223372036854775806,9223372036854775807]}}", data: d)) {
            if case .offsetsNotContiguous = $0 { return true }; return false
        }
        // offsets beyond Int64 are not integers we accept
        try assertError(rawSafetensors("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,99999999999999999999]}}", data: d)) {
            if case .invalidEntry = $0 { return true }; return false
        }
    }

    func testTruncatedReferenceFileAtEveryLengthThrowsNeverCrashes() throws {
        let ref = Array(Data(base64Encoded: referenceSafetensorsBase64)!)
        let dir = try tempDir()
        for n in 0..<ref.count {
            let u = try write(Array(ref[0..<n]), dir, "t\(n).safetensors")
            XCTAssertThrowsError(try SafetensorsFile(url: u), "length \(n)")
        }
    }

    func testRandomCorruptionThrowsOrParsesNeverCrashes() throws {
        let ref = Array(Data(base64Encoded: referenceSafetensorsBase64)!)
        let dir = try tempDir()
        var rng = SyntheticRNG(seed: 42)
        var failures = 0
        for i in 0..<300 {
            var b = ref
            let k = Int(rng.next() % 288)  // prefix and header only
            b[k] = UInt8(truncatingIfNeeded: rng.next())
            let u = try write(b, dir, "c\(i).safetensors")
            do { _ = try SafetensorsFile(url: u) } catch is SafetensorsError { failures += 1 }
        }
        XCTAssertGreaterThan(failures, 100)
    }

    // MARK: Sharded

    func makeSharded(_ dir: URL) throws -> [URL] {
        let specs = (0..<6).map { SafetensorsTensorSpec(name: "w\($0)", dtype: .bf16, shape: [4, 8]) }  // 64 bytes each
        var rng = SyntheticRNG(seed: 3)
        return try writeSafetensorsCheckpoint(to: dir, tensors: specs, maxShardBytes: 130) { spec, w in
            let b = (0..<spec.byteCount).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            try b.withUnsafeBytes { try w.write(spec.name, $0) }
        }
    }

    func testShardedWriteReadAndByteIdenticalRoundTrip() throws {
        let dir = try tempDir()
        let urls = try makeSharded(dir)
        XCTAssertEqual(urls.map(\.lastPathComponent), ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                                       "model-00003-of-00003.safetensors", "model.safetensors.index.json"])
        let index = String(decoding: try Data(contentsOf: dir.appendingPathComponent(safetensorsIndexFileName)), as: UTF8.self)
        XCTAssertEqual(index, """
        {
          "metadata": {
            "total_size": 384
          },
          "weight_map": {
            "w0": "model-00001-of-00003.safetensors",
            "w1": "model-00001-of-00003.safetensors",
            "w2": "model-00002-of-00003.safetensors",
            "w3": "model-00002-of-00003.safetensors",
            "w4": "model-00003-of-00003.safetensors",
            "w5": "model-00003-of-00003.safetensors"
          }
        }

        """)
        let set = try SafetensorsSet(directory: dir)
        XCTAssertEqual(set.files.map { $0.url.lastPathComponent }, Array(urls.prefix(3).map(\.lastPathComponent)))
        XCTAssertEqual(set.files.map { $0.header.entries.map(\.name) }, [["w0", "w1"], ["w2", "w3"], ["w4", "w5"]])
        let out = try tempDir("out")
        try set.write(to: out)
        for u in urls {
            XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent(u.lastPathComponent)), try Data(contentsOf: u), u.lastPathComponent)
        }
    }

    func assertSetError(_ dir: URL, file: StaticString = #filePath, line: UInt = #line, _ check: (SafetensorsError) -> Bool) {
        XCTAssertThrowsError(try SafetensorsSet(directory: dir), file: file, line: line) { e in
            guard let se = e as? SafetensorsError else { return XCTFail("\(e)", file: file, line: line) }
            XCTAssertTrue(check(se), "unexpected error: \(se)", file: file, line: line)
        }
    }

    func editIndex(_ dir: URL, _ edit: (String) -> String) throws {
        let u = dir.appendingPathComponent(safetensorsIndexFileName)
        try Data(edit(String(decoding: try Data(contentsOf: u), as: UTF8.self)).utf8).write(to: u)
    }

    func testShardedIndexErrors() throws {
        // A shard the index names is missing.
        var dir = try tempDir("missing")
        _ = try makeSharded(dir)
        try FileManager.default.removeItem(at: dir.appendingPathComponent("model-00002-of-00003.safetensors"))
        assertSetError(dir) { if case .shardMissing(_, "model-00002-of-00003.safetensors") = $0 { return true }; return false }

        // The index maps a tensor to a shard that does not hold it.
        dir = try tempDir("wrongshard")
        _ = try makeSharded(dir)
        try editIndex(dir) { $0.replacingOccurrences(of: "\"w2\": \"model-00002", with: "\"w2\": \"model-00001") }
        assertSetError(dir) { if case .tensorInTwoShards("w2", "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors") = $0 { return true }; return false }

        // Listed twice with two files.
        dir = try tempDir("twice")
        _ = try makeSharded(dir)
        try editIndex(dir) { $0.replacingOccurrences(of: "\"w5\": \"model-00003-of-00003.safetensors\"", with: "\"w5\": \"model-00003-of-00003.safetensors\", \"w5\": \"model-00001-of-00003.safetensors\"") }
        assertSetError(dir) { if case .tensorInTwoShards("w5", _, _) = $0 { return true }; return false }

        // A tensor the index lists that no shard has.
        dir = try tempDir("ghost")
        _ = try makeSharded(dir)
        try editIndex(dir) { $0.replacingOccurrences(of: "\"w0\":", with: "\"ghost\": \"model-00001-of-00003.safetensors\", \"w0\":") }
        assertSetError(dir) { if case .tensorMissingFromShard("ghost", "model-00001-of-00003.safetensors") = $0 { return true }; return false }

        // A shard tensor the index does not list.
        dir = try tempDir("unlisted")
        _ = try makeSharded(dir)
        try editIndex(dir) { $0.replacingOccurrences(of: "\"w0\": \"model-00001-of-00003.safetensors\",", with: "") }
        assertSetError(dir) { if case .tensorNotInIndex("w0", "model-00001-of-00003.safetensors") = $0 { return true }; return false }

        // The same tensor in two shard headers.
        dir = try tempDir("dup")
        _ = try makeSharded(dir)
        let s1 = dir.appendingPathComponent("model-00001-of-00003.safetensors")
        var b = Array(try Data(contentsOf: s1))
        let needle = Array("\"w1\"".utf8)
        let at = try XCTUnwrap((0..<(b.count - 4)).first { Array(b[$0..<($0 + 4)]) == needle }) + 2
        b[at] = UInt8(ascii: "2")   // w1 → w2, which shard 2 also holds
        try Data(b).write(to: s1)
        assertSetError(dir) { if case .tensorInTwoShards("w2", "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors") = $0 { return true }; return false }

        // Not JSON; no weight_map; a path that escapes the directory.
        dir = try tempDir("notjson")
        _ = try makeSharded(dir)
        try editIndex(dir) { String($0.dropLast(5)) }
        assertSetError(dir) { if case .indexNotJSON = $0 { return true }; return false }
        try editIndex(dir) { _ in "{\"metadata\": {}}" }
        assertSetError(dir) { if case .indexInvalid = $0 { return true }; return false }
        try editIndex(dir) { _ in "{\"weight_map\": {\"w0\": \"../model-00001-of-00003.safetensors\"}}" }
        assertSetError(dir) { if case .indexInvalid = $0 { return true }; return false }

        // No safetensors at all; several without an index.
        dir = try tempDir("none")
        assertSetError(dir) { if case .noSafetensors = $0 { return true }; return false }
        _ = try makeSharded(dir)
        try FileManager.default.removeItem(at: dir.appendingPathComponent(safetensorsIndexFileName))
        assertSetError(dir) { if case .noSafetensors = $0 { return true }; return false }
    }

    // MARK: JSON

    func testJSONParserEdgeCases() throws {
        XCTAssertEqual(try parseJSON(Array("{\"a\\u00e9\\ud83d\\ude00\":[1,-2,3.5e1,true,null]}".utf8)),
                       .object([("aé😀", .array([.int(1), .int(-2), .double(35), .bool(true), .null]))]))
        for bad in ["{\"a\":01}", "{\"a\" 1}", "[1,]", "{\"\\ud800\":1}", "\"\u{01}\"", "tru", "-", "1.", "1e"] {
            XCTAssertThrowsError(try parseJSON(Array(bad.utf8)), bad)
        }
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        XCTAssertThrowsError(try parseJSON(Array(deep.utf8)))
    }
}
