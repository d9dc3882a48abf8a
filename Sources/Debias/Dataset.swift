import Foundation

// Evaluation prompts: the JSONL files of Formats/eval-data.md.
//
// One JSON object per line. Standard keys are decoded and checked; every other key is kept with
// the exact source text of its value, so it can be carried verbatim into the per-prompt output.
// Foundation's JSONSerialization would lose key order and number spelling, and give no line or
// column, hence the small reader below (JSONLine).

// MARK: - Types

public enum PromptKind: String, Sendable, CaseIterable {
    /// GenBiasEval: no gender in the prompt; AFGB.
    case bias
    /// GenHintEval: an explicit gender hint; UB.
    case hint
    /// Text with no person in it; side-effect KL only.
    case neutral
}

public enum BiasScale: String, Sendable, CaseIterable {
    case word, phrase, sentence
}

public enum HintGender: String, Sendable, CaseIterable {
    case male, female
    /// F in UB = mean F·(P(he) − P(she)).
    public var sign: Double { self == .male ? 1 : -1 }
}

public enum Split: String, Sendable, CaseIterable {
    case train, dev, test
}

/// A key the schema does not define, with its value's exact JSON text.
public struct ExtraField: Sendable, Equatable {
    public var key: String
    /// The value as it was written in the file (valid JSON: `"x"`, `1.50`, `[1, 2]`, ...).
    public var rawJSON: String
    public init(key: String, rawJSON: String) { self.key = key; self.rawJSON = rawJSON }
}

public struct EvalPrompt: Sendable, Equatable {
    public var prompt: String
    public var kind: PromptKind
    /// Bias prompts only.
    public var scale: BiasScale?
    /// Hint prompts only.
    public var hint: HintGender?
    public var profession: String?
    public var split: Split?
    /// Other keys, in input order.
    public var extra: [ExtraField]
    /// "file:line", for messages.
    public var origin: String

    public init(prompt: String, kind: PromptKind, scale: BiasScale? = nil, hint: HintGender? = nil,
                profession: String? = nil, split: Split? = nil, extra: [ExtraField] = [], origin: String = "") {
        self.prompt = prompt; self.kind = kind; self.scale = scale; self.hint = hint
        self.profession = profession; self.split = split; self.extra = extra; self.origin = origin
    }
}

// MARK: - Errors

public enum DatasetError: Error, CustomStringConvertible, Equatable {
    /// The file could not be read.
    case unreadable(file: String, reason: String)
    /// The file is not valid UTF-8.
    case notUTF8(file: String)
    /// A line is not well-formed JSON.
    case syntax(file: String, line: Int, column: Int, message: String)
    /// A line is JSON but not an object.
    case notAnObject(file: String, line: Int)
    case duplicateKey(file: String, line: Int, key: String)
    case missingKey(file: String, line: Int, key: String, kind: String?)
    /// A standard key holds something other than a string.
    case notAString(file: String, line: Int, key: String)
    /// A standard key holds a string outside its allowed values.
    case invalidValue(file: String, line: Int, key: String, value: String, allowed: [String])
    /// "scale" on a hint line, "hint" on a bias line, "profession" on a neutral line.
    case keyNotAllowed(file: String, line: Int, key: String, kind: String)
    /// An extra key that the per-prompt output writes itself.
    case reservedKey(file: String, line: Int, key: String)
    case emptyPrompt(file: String, line: Int)
    /// No line with a prompt in the file.
    case noPrompts(file: String)
    /// `--split` selected nothing.
    case noPromptsInSplit(split: String)

    public var description: String {
        switch self {
        case let .unreadable(f, r): return "\(f): cannot read the evaluation data: \(r)"
        case let .notUTF8(f): return "\(f): not UTF-8 text; evaluation data is JSONL (Formats/eval-data.md)"
        case let .syntax(f, l, c, m): return "\(f):\(l):\(c): invalid JSON: \(m)"
        case let .notAnObject(f, l): return "\(f):\(l): each line must be one JSON object {\"prompt\": ..., \"kind\": ...}"
        case let .duplicateKey(f, l, k): return "\(f):\(l): key \"\(k)\" appears twice"
        case let .missingKey(f, l, k, kind):
            if let kind { return "\(f):\(l): \"\(k)\" is required for kind \"\(kind)\"" }
            return "\(f):\(l): \"\(k)\" is required"
        case let .notAString(f, l, k): return "\(f):\(l): \"\(k)\" must be a string"
        case let .invalidValue(f, l, k, v, a):
            return "\(f):\(l): \"\(k)\" is \"\(v)\"; expected one of " + a.map { "\"\($0)\"" }.joined(separator: ", ")
        case let .keyNotAllowed(f, l, k, kind): return "\(f):\(l): \"\(k)\" is not allowed on a \"\(kind)\" line"
        case let .reservedKey(f, l, k):
            return "\(f):\(l): \"\(k)\" is written by the evaluation itself (per-prompt output); rename that field"
        case let .emptyPrompt(f, l): return "\(f):\(l): \"prompt\" is empty"
        case let .noPrompts(f): return "\(f): no prompts in the file"
        case let .noPromptsInSplit(s): return "no prompts with \"split\": \"\(s)\" in the evaluation data"
        }
    }
}

// MARK: - Loading

public enum Dataset {
    /// Output keys of the per-prompt file; an input line may not use them as extra keys.
    public static let reservedKeys: Set<String> = ["p_he", "p_she", "base_p_he", "base_p_she", "kl"]

    /// Parses JSONL text. `name` is used in messages ("genbias.jsonl").
    public static func parse(_ text: String, name: String) throws -> [EvalPrompt] {
        var out: [EvalPrompt] = []
        var lineNumber = 0
        // Split on the byte 0x0A: as Characters, "\r\n" is one grapheme and would not split.
        for rawLine in Array(text.utf8).split(separator: 0x0A, omittingEmptySubsequences: false) {
            lineNumber += 1
            var line = rawLine
            if line.last == 0x0D { line = line.dropLast() }
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            out.append(try parseLine(Array(line), file: name, line: lineNumber))
        }
        if out.isEmpty { throw DatasetError.noPrompts(file: name) }
        return out
    }

    public static func load(_ url: URL) throws -> [EvalPrompt] {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw DatasetError.unreadable(file: url.path, reason: (error as NSError).localizedDescription)
        }
        guard let text = String(data: data, encoding: .utf8) else { throw DatasetError.notUTF8(file: url.path) }
        return try parse(text, name: url.path)
    }

    /// The shipped data (samples/data/*.jsonl, embedded): GenBiasEval, GenHintEval, neutral.
    public static func builtIn() -> [EvalPrompt] {
        BuiltInData.files.flatMap { try! parse($0.text, name: "samples/data/" + $0.name) }
    }

    /// The prompts of one split (all of them when `split` is nil); throws when none is left.
    public static func select(_ prompts: [EvalPrompt], split: Split?) throws -> [EvalPrompt] {
        guard let split else { return prompts }
        let kept = prompts.filter { $0.split == split }
        if kept.isEmpty { throw DatasetError.noPromptsInSplit(split: split.rawValue) }
        return kept
    }

    static func parseLine(_ bytes: [UInt8], file: String, line: Int) throws -> EvalPrompt {
        var reader = JSONLine(bytes: bytes)
        let members: [(key: String, value: JSONLine.Value)]
        do {
            members = try reader.topLevelObject()
        } catch let e as JSONLine.Failure {
            if e.notAnObject { throw DatasetError.notAnObject(file: file, line: line) }
            throw DatasetError.syntax(file: file, line: line, column: e.column, message: e.message)
        }
        var seen = Set<String>()
        var strings: [String: String] = [:]
        var extra: [ExtraField] = []
        let standard: Set<String> = ["prompt", "kind", "scale", "hint", "profession", "split"]
        for (key, value) in members {
            if !seen.insert(key).inserted { throw DatasetError.duplicateKey(file: file, line: line, key: key) }
            if standard.contains(key) {
                guard let s = value.string else { throw DatasetError.notAString(file: file, line: line, key: key) }
                strings[key] = s
            } else if reservedKeys.contains(key) {
                throw DatasetError.reservedKey(file: file, line: line, key: key)
            } else {
                extra.append(ExtraField(key: key, rawJSON: String(decoding: bytes[value.range], as: UTF8.self)))
            }
        }
        func oneOf<T: RawRepresentable & CaseIterable>(_ key: String, _ type: T.Type) throws -> T? where T.RawValue == String {
            guard let s = strings[key] else { return nil }
            guard let v = T(rawValue: s) else {
                throw DatasetError.invalidValue(file: file, line: line, key: key, value: s, allowed: T.allCases.map(\.rawValue))
            }
            return v
        }
        guard let prompt = strings["prompt"] else { throw DatasetError.missingKey(file: file, line: line, key: "prompt", kind: nil) }
        guard let kind = try oneOf("kind", PromptKind.self) else {
            throw DatasetError.missingKey(file: file, line: line, key: "kind", kind: nil)
        }
        if prompt.isEmpty { throw DatasetError.emptyPrompt(file: file, line: line) }
        let scale = try oneOf("scale", BiasScale.self)
        let hint = try oneOf("hint", HintGender.self)
        let split = try oneOf("split", Split.self)
        switch kind {
        case .bias:
            if scale == nil { throw DatasetError.missingKey(file: file, line: line, key: "scale", kind: "bias") }
            if hint != nil { throw DatasetError.keyNotAllowed(file: file, line: line, key: "hint", kind: "bias") }
        case .hint:
            if hint == nil { throw DatasetError.missingKey(file: file, line: line, key: "hint", kind: "hint") }
            if scale != nil { throw DatasetError.keyNotAllowed(file: file, line: line, key: "scale", kind: "hint") }
        case .neutral:
            for k in ["scale", "hint", "profession"] where strings[k] != nil {
                throw DatasetError.keyNotAllowed(file: file, line: line, key: k, kind: "neutral")
            }
        }
        return EvalPrompt(prompt: prompt, kind: kind, scale: scale, hint: hint, profession: strings["profession"],
                          split: split, extra: extra, origin: "\(file):\(line)")
    }
}

// MARK: - A strict JSON reader for one line

/// Reads one JSON object (RFC 8259) from a line, keeping each member value's byte range.
/// Only string values are decoded; other values are validated and kept as source text.
struct JSONLine {
    struct Failure: Error {
        var column: Int
        var message: String
        var notAnObject = false
    }
    struct Value {
        var range: Range<Int>
        var string: String?
    }

    let bytes: [UInt8]
    var i = 0
    var depth = 0
    init(bytes: [UInt8]) { self.bytes = bytes }

    private func fail(_ message: String, at index: Int? = nil) -> Failure {
        Failure(column: (index ?? i) + 1, message: message)
    }
    private var atEnd: Bool { i >= bytes.count }
    private func describe(_ index: Int) -> String {
        index >= bytes.count ? "end of line" : "'\(String(decoding: [bytes[index]], as: UTF8.self))'"
    }

    private mutating func skipSpace() {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x09 || bytes[i] == 0x0D || bytes[i] == 0x0A { i += 1 }
    }

    private mutating func expect(_ c: UInt8, _ what: String) throws {
        skipSpace()
        guard i < bytes.count, bytes[i] == c else { throw fail("expected \(what), found \(describe(i))") }
        i += 1
    }

    mutating func topLevelObject() throws -> [(key: String, value: Value)] {
        skipSpace()
        guard i < bytes.count, bytes[i] == UInt8(ascii: "{") else {
            // Valid JSON that is not an object gets its own message.
            var probe = self
            if (try? probe.value()) != nil { probe.skipSpace(); if probe.atEnd { throw Failure(column: 1, message: "", notAnObject: true) } }
            throw fail("expected '{', found \(describe(i))")
        }
        let members = try object()
        skipSpace()
        if !atEnd { throw fail("unexpected \(describe(i)) after the object (one object per line)") }
        return members
    }

    private mutating func object() throws -> [(key: String, value: Value)] {
        depth += 1
        if depth > 64 { throw fail("nested deeper than 64 levels") }
        defer { depth -= 1 }
        i += 1 // {
        var members: [(key: String, value: Value)] = []
        skipSpace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return members }
        while true {
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a key string, found \(describe(i))") }
            let key = try string()
            try expect(UInt8(ascii: ":"), "':'")
            skipSpace()
            let v = try value()
            members.append((key, v))
            skipSpace()
            guard i < bytes.count else { throw fail("expected ',' or '}', found end of line") }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "}") { i += 1; return members }
            throw fail("expected ',' or '}', found \(describe(i))")
        }
    }

    private mutating func value() throws -> Value {
        skipSpace()
        let start = i
        guard i < bytes.count else { throw fail("expected a value, found end of line") }
        switch bytes[i] {
        case UInt8(ascii: "\""):
            let s = try string()
            return Value(range: start..<i, string: s)
        case UInt8(ascii: "{"):
            _ = try object()
        case UInt8(ascii: "["):
            depth += 1
            if depth > 64 { throw fail("nested deeper than 64 levels") }
            i += 1
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1 } else {
                while true {
                    _ = try value()
                    skipSpace()
                    guard i < bytes.count else { throw fail("expected ',' or ']', found end of line") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "]") { i += 1; break }
                    throw fail("expected ',' or ']', found \(describe(i))")
                }
            }
            depth -= 1
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try number()
        default: throw fail("expected a value, found \(describe(i))")
        }
        return Value(range: start..<i, string: nil)
    }

    private mutating func literal(_ word: String) throws {
        let w = Array(word.utf8)
        guard i + w.count <= bytes.count, Array(bytes[i..<(i + w.count)]) == w else { throw fail("invalid literal (expected \(word))") }
        i += w.count
    }

    private mutating func number() throws {
        let start = i
        func digits() -> Int { let s = i; while i < bytes.count, (0x30...0x39).contains(bytes[i]) { i += 1 }; return i - s }
        if bytes[i] == UInt8(ascii: "-") { i += 1 }
        guard i < bytes.count, (0x30...0x39).contains(bytes[i]) else { throw fail("invalid number", at: start) }
        if bytes[i] == 0x30 { i += 1 } else { _ = digits() }
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            i += 1
            if digits() == 0 { throw fail("invalid number: no digit after '.'", at: start) }
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            if digits() == 0 { throw fail("invalid number: no digit in the exponent", at: start) }
        }
    }

    /// At a '"': decodes the string and moves past the closing quote.
    private mutating func string() throws -> String {
        let open = i
        i += 1
        var out: [UInt8] = []
        while true {
            guard i < bytes.count else { throw fail("unterminated string", at: open) }
            let c = bytes[i]
            if c == UInt8(ascii: "\"") { i += 1; break }
            if c < 0x20 { throw fail("control character in a string (escape it)") }
            if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
            i += 1
            guard i < bytes.count else { throw fail("unterminated escape") }
            let e = bytes[i]; i += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if (0xD800..<0xDC00).contains(scalar) {
                    guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                        throw fail("unpaired surrogate \\u\(String(scalar, radix: 16))")
                    }
                    i += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw fail("invalid low surrogate") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(scalar) {
                    throw fail("unpaired surrogate \\u\(String(scalar, radix: 16))")
                }
                out.append(contentsOf: Array(String(Character(Unicode.Scalar(scalar)!)).utf8))
            default:
                throw fail("invalid escape '\\\(String(decoding: [e], as: UTF8.self))'", at: i - 2)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private mutating func hex4() throws -> UInt32 {
        guard i + 4 <= bytes.count else { throw fail("\\u needs four hex digits") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[i]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw fail("\\u needs four hex digits")
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }
}

// MARK: - Writing JSON

enum JSONText {
    /// A JSON string literal.
    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }

    /// A number that reads back to the same Double (shortest round-trip form); null when not finite.
    static func number(_ x: Double?) -> String {
        guard let x, x.isFinite else { return "null" }
        return "\(x)"
    }
}
