// Unicode classes the split patterns need: \p{L}, \p{N}, \p{P}, \s (White_Space).
// Taken from the Swift runtime's Unicode tables (general category and White_Space), which
// agree with llama.cpp's unicode-data and with the regex engines HF tokenizers uses for every
// assigned code point they have in common. A 64K table covers the BMP in one load per
// scalar; astral scalars (emoji, rare CJK) are looked up directly.

struct UFlags: OptionSet {
    let rawValue: UInt8
    static let letter      = UFlags(rawValue: 1 << 0)   // \p{L}
    static let number      = UFlags(rawValue: 1 << 1)   // \p{N}
    static let whitespace  = UFlags(rawValue: 1 << 2)   // \s
    static let punctuation = UFlags(rawValue: 1 << 3)   // \p{P}
    /// Set for every real position, so an empty set means "past the end of the piece"
    /// (llama.cpp's OUT_OF_RANGE), which no class matches.
    static let present     = UFlags(rawValue: 1 << 7)
}

enum UnicodeFlags {
    static func compute(_ v: UInt32) -> UFlags {
        guard let s = Unicode.Scalar(v) else { return .present }   // surrogates: never in a String
        var f: UFlags = .present
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            f.insert(.letter)
        case .decimalNumber, .letterNumber, .otherNumber:
            f.insert(.number)
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation:
            f.insert(.punctuation)
        default:
            break
        }
        if s.properties.isWhitespace { f.insert(.whitespace) }
        return f
    }

    static let bmp: [UFlags] = (0..<UInt32(0x10000)).map(compute)

    @inline(__always)
    static func of(_ v: UInt32) -> UFlags {
        v < 0x10000 ? bmp[Int(v)] : compute(v)
    }
}
