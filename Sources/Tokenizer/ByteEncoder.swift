// GPT-2's bytes_to_unicode: byte-level BPE vocabularies store every byte as a printable
// character, so that no token contains whitespace or control characters. Printable Latin-1
// bytes ('!'...'~', '¡'...'¬', '®'...'ÿ') stand for themselves; the other 68 bytes map, in
// byte order, to U+0100, U+0101, ... (so ' ' = 0x20 becomes 'Ġ' U+0120, '\n' becomes 'Ċ').
// A 256-entry array beats a dictionary on the per-byte hot path; the reverse map is a small
// array indexed by scalar value (all targets are below U+0144).

enum ByteEncoder {
    /// byte → the scalar that represents it in the vocabulary.
    static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var n: UInt32 = 0
        for b in 0..<256 {
            if (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b) {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(256 + n)!
                n += 1
            }
        }
        return table
    }()

    /// scalar value → byte, or -1 when the scalar is not one of the 256 byte characters.
    static let scalarToByte: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x144)
        for (b, s) in byteToScalar.enumerated() { table[Int(s.value)] = Int16(b) }
        return table
    }()

    /// The vocabulary spelling of raw UTF-8 bytes.
    static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(byteToScalar[Int(b)]) }
        return String(s)
    }

    /// The raw bytes a byte-level token spells. A scalar outside the table (not produced by
    /// `encode`, so only in a malformed vocabulary) is kept as its own UTF-8.
    static func decode(_ token: String, into out: inout [UInt8]) {
        for u in token.unicodeScalars {
            let v = Int(u.value)
            if v < scalarToByte.count, scalarToByte[v] >= 0 {
                out.append(UInt8(scalarToByte[v]))
            } else {
                out.append(contentsOf: Array(String(u).utf8))
            }
        }
    }
}
