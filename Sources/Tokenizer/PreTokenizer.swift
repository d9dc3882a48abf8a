// Pre-tokenization: cut text into pieces that BPE then encodes independently.
//
// Each family's split regex is a hand-written scanner over Unicode scalars (no regex engine),
// written to give exactly the pieces the regex gives, as llama.cpp's unicode.cpp does. A
// pre-tokenizer is a sequence of steps; each step re-splits every piece of the previous one,
// and text between matches stays a piece of its own (llama.cpp unicode_regex_split; HF's
// Split with behavior Isolated).
//
// The patterns (from llama.cpp src/llama-vocab.cpp, and the HF tokenizer.json files):
//   gpt2    's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   llama3  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   qwen2   the llama3 pattern with \p{N} (one digit per piece) instead of \p{N}{1,3}

import ModelFormats

public struct PreTokenizer: Sendable, Equatable {
    public enum Step: Sendable, Equatable {
        /// \p{N}: every number character is its own piece (HF Digits(individual_digits: true)).
        case isolateDigits
        /// \p{N}+: runs of number characters are pieces (HF Digits(individual_digits: false)).
        case digitRuns
        /// [\p{P}\$\+<=>\^~\|]+ (llama.cpp's default and falcon).
        case punctuationRuns
        /// [0-9][0-9][0-9] (llama.cpp's default and falcon).
        case asciiDigitTriples
        /// The GPT-2 pattern (HF ByteLevel with use_regex).
        case gpt2
        /// The llama3 pattern with \p{N}{1,maxDigits}; maxDigits 1 is the qwen2 pattern.
        case llama3(maxDigits: Int)
    }

    public var steps: [Step]
    /// The name it was built from (GGUF `tokenizer.ggml.pre` or a description of tokenizer.json).
    public var name: String

    public init(name: String, steps: [Step]) {
        self.name = name; self.steps = steps
    }

    /// The scanner steps of each family (ModelFormats.PreTokenizerFamily names the GGUF
    /// `tokenizer.ggml.pre` values of each).
    static func steps(_ family: PreTokenizerFamily) -> [Step] {
        switch family {
        case .smollm: return [.isolateDigits, .gpt2]
        case .gpt2: return [.gpt2]
        case .llama3: return [.llama3(maxDigits: 3)]
        case .qwen2: return [.llama3(maxDigits: 1)]
        case .falcon: return [.punctuationRuns, .gpt2, .asciiDigitTriples]
        case .llamaCppDefault: return [.punctuationRuns, .gpt2, .digitRuns, .asciiDigitTriples]
        }
    }

    static var llama3Family: Set<String> { PreTokenizerFamily.ignoresMerges }

    public static var supportedNames: [String] { PreTokenizerFamily.supportedNames }

    /// The pre-tokenizer for a GGUF `tokenizer.ggml.pre` value (nil/empty: llama.cpp's "default").
    public static func gguf(_ pre: String?) throws -> PreTokenizer {
        let name = (pre?.isEmpty ?? true) ? "default" : pre!
        guard let family = PreTokenizerFamily.named(name) else { throw TokenizerError.unsupportedPreTokenizer(name) }
        return PreTokenizer(name: name, steps: steps(family))
    }

    // MARK: Splitting

    /// Splits `cps` (Unicode scalar values) into pieces, returned as consecutive end offsets.
    public func split(_ cps: [UInt32]) -> [Range<Int>] {
        var pieces: [Range<Int>] = cps.isEmpty ? [] : [0..<cps.count]
        var next: [Range<Int>] = []
        for step in steps {
            next.removeAll(keepingCapacity: true)
            cps.withUnsafeBufferPointer { buf in
                for r in pieces { PreTokenizer.apply(step, buf, r.lowerBound, r.upperBound, &next) }
            }
            swap(&pieces, &next)
        }
        return pieces
    }

    static func apply(_ step: Step, _ cps: UnsafeBufferPointer<UInt32>, _ lo: Int, _ hi: Int, _ out: inout [Range<Int>]) {
        switch step {
        case .isolateDigits: classRuns(cps, lo, hi, &out, single: true) { $0.contains(.number) }
        case .digitRuns: classRuns(cps, lo, hi, &out, single: false) { $0.contains(.number) }
        case .punctuationRuns:
            classRuns(cps, lo, hi, &out, single: false, scalarTest: { v in
                v == 0x24 || v == 0x2B || v == 0x3C || v == 0x3D || v == 0x3E || v == 0x5E || v == 0x7E || v == 0x7C
            }) { $0.contains(.punctuation) }
        case .asciiDigitTriples: asciiTriples(cps, lo, hi, &out)
        case .gpt2: gpt2(cps, lo, hi, &out)
        case .llama3(let maxDigits): llama3(cps, lo, hi, maxDigits, &out)
        }
    }

    /// Pieces for `[class]` (single) or `[class]+` (runs), with the text between them kept.
    private static func classRuns(_ cps: UnsafeBufferPointer<UInt32>, _ lo: Int, _ hi: Int, _ out: inout [Range<Int>],
                                  single: Bool, scalarTest: (UInt32) -> Bool = { _ in false },
                                  _ test: (UFlags) -> Bool) {
        var start = lo
        var i = lo
        while i < hi {
            let v = cps[i]
            if scalarTest(v) || test(UnicodeFlags.of(v)) {
                if start < i { out.append(start..<i) }
                var j = i + 1
                if !single {
                    while j < hi, scalarTest(cps[j]) || test(UnicodeFlags.of(cps[j])) { j += 1 }
                }
                out.append(i..<j)
                i = j; start = j
            } else {
                i += 1
            }
        }
        if start < hi { out.append(start..<hi) }
    }

    private static func asciiTriples(_ cps: UnsafeBufferPointer<UInt32>, _ lo: Int, _ hi: Int, _ out: inout [Range<Int>]) {
        @inline(__always) func digit(_ v: UInt32) -> Bool { v >= 0x30 && v <= 0x39 }
        var start = lo
        var i = lo
        while i + 3 <= hi {
            if digit(cps[i]) && digit(cps[i + 1]) && digit(cps[i + 2]) {
                if start < i { out.append(start..<i) }
                out.append(i..<(i + 3))
                i += 3; start = i
            } else {
                i += 1
            }
        }
        if start < hi { out.append(start..<hi) }
    }

    @inline(__always) private static func lowerASCII(_ v: UInt32) -> UInt32 {
        (v >= 0x41 && v <= 0x5A) ? v + 0x20 : v
    }

    /// Length of a contraction ('s 't 'm 'd 're 've 'll) at `pos`, or 0.
    @inline(__always)
    private static func contraction(_ cps: UnsafeBufferPointer<UInt32>, _ pos: Int, _ hi: Int, caseInsensitive: Bool) -> Int {
        guard cps[pos] == 0x27, pos + 1 < hi else { return 0 }   // '
        let n = caseInsensitive ? lowerASCII(cps[pos + 1]) : cps[pos + 1]
        if n == 0x73 || n == 0x74 || n == 0x6D || n == 0x64 { return 2 }   // s t m d
        if pos + 2 < hi {
            let nn = caseInsensitive ? lowerASCII(cps[pos + 2]) : cps[pos + 2]
            if (n == 0x72 && nn == 0x65) || (n == 0x76 && nn == 0x65) || (n == 0x6C && nn == 0x6C) { return 3 }  // re ve ll
        }
        return 0
    }

    /// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    static func gpt2(_ cps: UnsafeBufferPointer<UInt32>, _ lo: Int, _ hi: Int, _ out: inout [Range<Int>]) {
        @inline(__always) func flags(_ p: Int) -> UFlags { p < hi ? UnicodeFlags.of(cps[p]) : [] }
        var pos = lo
        var prev = lo
        @inline(__always) func emit(_ end: Int) { if end > prev { out.append(prev..<end) }; prev = end }
        while pos < hi {
            let c = cps[pos]
            let f = flags(pos)
            let k = contraction(cps, pos, hi, caseInsensitive: false)
            if k > 0 { pos += k; emit(pos); continue }
            let space = c == 0x20
            var f2 = space ? flags(pos + 1) : f
            if f2.contains(.letter) {                                   //  ?\p{L}+
                if space { pos += 1 }
                while f2.contains(.letter) { pos += 1; f2 = flags(pos) }
                emit(pos); continue
            }
            if f2.contains(.number) {                                   //  ?\p{N}+
                if space { pos += 1 }
                while f2.contains(.number) { pos += 1; f2 = flags(pos) }
                emit(pos); continue
            }
            if f2.isOther {                                             //  ?[^\s\p{L}\p{N}]+
                if space { pos += 1 }
                while f2.isOther { pos += 1; f2 = flags(pos) }
                emit(pos); continue
            }
            var n = 0
            while flags(pos + n).contains(.whitespace) { n += 1 }
            if n > 1 && pos + n < hi { pos += n - 1; emit(pos); continue }   // \s+(?!\S)
            if n > 0 { pos += n; emit(pos); continue }                       // \s+
            pos += 1; emit(pos)
        }
    }

    /// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    static func llama3(_ cps: UnsafeBufferPointer<UInt32>, _ lo: Int, _ hi: Int, _ maxDigits: Int, _ out: inout [Range<Int>]) {
        @inline(__always) func flags(_ p: Int) -> UFlags { p < hi ? UnicodeFlags.of(cps[p]) : [] }
        @inline(__always) func cpt(_ p: Int) -> UInt32 { p < hi ? cps[p] : 0xFFFF_FFFF }
        var pos = lo
        var prev = lo
        @inline(__always) func emit(_ end: Int) { if end > prev { out.append(prev..<end) }; prev = end }
        while pos < hi {
            let c = cps[pos]
            let f = flags(pos)
            let k = contraction(cps, pos, hi, caseInsensitive: true)
            if k > 0 { pos += k; emit(pos); continue }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !(c == 0x0D || c == 0x0A || f.contains(.number)) {
                if f.contains(.letter) || flags(pos + 1).contains(.letter) {
                    pos += 1
                    while flags(pos).contains(.letter) { pos += 1 }
                    emit(pos); continue
                }
            }
            // \p{N}{1,D}
            if f.contains(.number) {
                var ini = pos
                while flags(pos).contains(.number) {
                    pos += 1
                    if pos - ini >= maxDigits { emit(pos); ini = pos }
                }
                emit(pos); continue
            }
            //  ?[^\s\p{L}\p{N}]+[\r\n]*
            var f2 = c == 0x20 ? flags(pos + 1) : f
            if !(f2.contains(.whitespace) || f2.contains(.letter) || f2.contains(.number)) {
                if c == 0x20 { pos += 1 }
                while f2.isOther { pos += 1; f2 = flags(pos) }
                while cpt(pos) == 0x0D || cpt(pos) == 0x0A { pos += 1 }
                emit(pos); continue
            }
            var n = 0
            var lastNewline = 0
            while flags(pos + n).contains(.whitespace) {
                let c2 = cps[pos + n]
                if c2 == 0x0D || c2 == 0x0A { lastNewline = pos + n + 1 }
                n += 1
            }
            if lastNewline > 0 { pos = lastNewline; emit(pos); continue }     // \s*[\r\n]+
            if n > 1 && pos + n < hi { pos += n - 1; emit(pos); continue }    // \s+(?!\S)
            if n > 0 { pos += n; emit(pos); continue }                        // \s+
            pos += 1; emit(pos)
        }
    }
}

extension UFlags {
    /// [^\s\p{L}\p{N}] at a real position.
    @inline(__always) var isOther: Bool {
        contains(.present) && !contains(.whitespace) && !contains(.letter) && !contains(.number)
    }
}
