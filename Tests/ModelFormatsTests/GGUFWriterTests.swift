import XCTest
import TestSupport
@testable import ModelFormats

final class GGUFWriterTests: XCTestCase {
    var tmp: URL!
    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("gguf-writer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    /// Compares two files through their mappings (no copies); reports the first differing offset.
    func assertSameBytes(_ a: URL, _ b: URL, file: StaticString = #filePath, line: UInt = #line) throws {
        let ma = try MappedFile(url: a), mb = try MappedFile(url: b)
        XCTAssertEqual(ma.count, mb.count, "sizes differ", file: file, line: line)
        guard ma.count == mb.count, ma.count > 0 else { return }
        if memcmp(ma.bytes.baseAddress!, mb.bytes.baseAddress!, ma.count) != 0 {
            let i = zip(ma.bytes, mb.bytes).prefix { $0 == $1 }.count
            XCTFail("files differ first at byte \(i)", file: file, line: line)
        }
    }

    func open(_ u: URL) throws -> (MappedFile, GGUFFile) {
        let m = try MappedFile(url: u)
        return (m, try GGUFFile(bytes: m.bytes))
    }

    func floats(_ m: MappedFile, _ f: GGUFFile, _ name: String) throws -> [Float] {
        let t = try XCTUnwrap(f.tensors.first { $0.name == name })
        return try dequantize(m.slice(offset: f.dataOffset + Int(t.offset), count: t.byteCount)!, dtype: t.dtype, count: t.elementCount)
    }

    func testSampleModelRoundTripIsByteIdentical() throws {
        let src = try requireSampleModel()
        let ck = try GGUFCheckpoint(url: src)
        let out = tmp.appendingPathComponent("copy.gguf")
        try GGUFFile.rewrite(ck, to: out)
        try assertSameBytes(src, out)
    }

    func testSyntheticRoundTrips() throws {
        for (v, a) in [(UInt32(3), UInt32?.none), (2, 64), (3, 128)] {
            let src = tmp.appendingPathComponent("in-\(v)-\(a ?? 0).gguf")
            try Data(GGUFBytes.valid(version: v, alignment: a)).write(to: src)
            let (m, f) = try open(src)
            let out = tmp.appendingPathComponent("out.gguf")
            try GGUFFile.rewrite(f, from: m.bytes, to: out)
            try assertSameBytes(src, out)
            XCTAssertEqual(try floats(m, f, "b"), (100..<108).map(Float.init))
        }
    }

    func testReplaceTensorTypeAndMetadata() throws {
        let src = tmp.appendingPathComponent("in.gguf")
        try Data(GGUFBytes.valid()).write(to: src)
        let (m, f) = try open(src)
        let newB: [Float] = (0..<8).map { Float($0) * 0.5 - 1 }
        var meta = f.metadata
        meta.append(GGUFKeyValue(key: "lftf.note", value: .array(.array, [.array(.string, [.string("ok")])])))
        let out = tmp.appendingPathComponent("out.gguf")
        try GGUFFile.rewrite(f, from: m.bytes, to: out, metadata: meta,
                             replacing: ["b": GGUFReplacement(type: .f16, bytes: try quantize(newB, to: .f16))])
        let (bm, bf) = try open(out)
        XCTAssertEqual(bf.metadata, meta)
        XCTAssertEqual(bf.tensors[1].type, .f16)
        XCTAssertEqual(try floats(bm, bf, "b"), newB)
        XCTAssertEqual(try floats(bm, bf, "a"), (0..<8).map(Float.init))
        XCTAssertEqual(bf.fileSize % 32, 0)
    }

    func testStreamingWriterFromScratch() throws {
        let out = tmp.appendingPathComponent("new.gguf")
        let x: [Float] = (0..<64).map { Float($0) / 8 }
        let specs = [try GGUFTensorDescriptor(name: "w", dtype: .q8_0, shape: [2, 32]),
                     try GGUFTensorDescriptor(name: "n", dtype: .f32, shape: [3])]
        let w = try GGUFStreamWriter(url: out, metadata: [GGUFKeyValue(key: "general.architecture", value: .string("llama"))], tensors: specs)
        XCTAssertEqual(w.tensors.map(\.offset), [0, 96])
        XCTAssertThrowsError(try w.write([UInt8](repeating: 0, count: 3))) {
            if case .writerMisuse = $0 as! GGUFError {} else { XCTFail("\($0)") }
        }
        try w.write(try quantize(x, to: .q8_0))
        XCTAssertThrowsError(try w.finish())
        try w.write(try quantize([1, 2, 3], to: .f32))
        try w.finish()
        let f = try GGUFFile(url: out)
        XCTAssertEqual(f.tensors.map(\.shape), [[2, 32], [3]])
        XCTAssertEqual(f.tensors.map(\.type), [.q8_0, .f32])
        XCTAssertEqual(f.fileSize, f.dataOffset + 96 + 32)
        XCTAssertThrowsError(try GGUFStreamWriter(url: out, metadata: [], tensors: [specs[0], specs[0]])) {
            XCTAssertEqual($0 as? GGUFError, .duplicateTensorName("w"))
        }
        XCTAssertThrowsError(try GGUFStreamWriter(url: out, metadata: [], tensors: [GGUFTensorDescriptor(name: "x", type: .q4_0, ne: [16])])) {
            XCTAssertEqual($0 as? GGUFError, .rowNotBlockMultiple(tensor: "x", type: "Q4_0", rowLength: 16, blockElements: 32))
        }
        XCTAssertThrowsError(try GGUFStreamWriter(url: out, metadata: [GGUFKeyValue(key: "general.alignment", value: .uint32(24))], tensors: []))
        XCTAssertThrowsError(try GGUFStreamWriter(url: out, metadata: [GGUFKeyValue(key: "a", value: .array(.uint8, [.int8(1)]))], tensors: []))
    }
}
