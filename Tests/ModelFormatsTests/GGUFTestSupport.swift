import Foundation
@testable import ModelFormats

/// Builds small GGUF images byte by byte (independently of GGUFWriter) for reader tests.
struct GGUFBytes {
    var b: [UInt8] = []
    mutating func u8(_ v: UInt8) { b.append(v) }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
    mutating func f32(_ v: Float) { u32(v.bitPattern) }
    mutating func str(_ s: String) { u64(UInt64(s.utf8.count)); b.append(contentsOf: s.utf8) }
    mutating func pad(_ a: Int) { while b.count % a != 0 { b.append(0) } }

    /// A valid v3 file: 2 metadata keys (a string and an array of u32), and two F32 tensors
    /// "a" (ne [4, 2]) and "b" (ne [8]) with values 0..<8 and 100..<108.
    static func valid(version: UInt32 = 3, alignment: UInt32? = nil) -> [UInt8] {
        var g = GGUFBytes()
        g.u32(ggufMagic); g.u32(version)
        g.u64(2)                                   // tensors
        g.u64(alignment == nil ? 2 : 3)            // kvs
        g.str("general.architecture"); g.u32(GGUFValueType.string.rawValue); g.str("llama")
        g.str("test.list"); g.u32(GGUFValueType.array.rawValue); g.u32(GGUFValueType.uint32.rawValue); g.u64(3)
        g.u32(7); g.u32(8); g.u32(9)
        if let a = alignment { g.str("general.alignment"); g.u32(GGUFValueType.uint32.rawValue); g.u32(a) }
        let al = Int(alignment ?? 32)
        g.str("a"); g.u32(2); g.u64(4); g.u64(2); g.u32(GGMLType.f32.rawValue); g.u64(0)
        g.str("b"); g.u32(1); g.u64(8); g.u32(GGMLType.f32.rawValue); g.u64(UInt64(alignUp(32, al)))
        g.pad(al)
        for i in 0..<8 { g.f32(Float(i)) }
        g.pad(al)
        for i in 0..<8 { g.f32(Float(100 + i)) }
        g.pad(al)
        return g.b
    }
}

func parseGGUF(_ bytes: [UInt8]) throws -> GGUFFile {
    try bytes.withUnsafeBytes { try GGUFFile(bytes: $0) }
}

func fixtureURL(_ name: String) -> URL {
    Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil)!
}
