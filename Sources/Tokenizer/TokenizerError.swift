import Foundation

// Every way building or using a tokenizer can fail, each with a message a user can act on.

public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// A required GGUF metadata key is absent.
    case missingMetadata(key: String)
    /// A GGUF metadata key has the wrong type (e.g. tokens not an array of strings).
    case badMetadata(key: String, expected: String)
    /// `tokenizer.ggml.model` (or tokenizer.json `model.type`) names a tokenizer we do not implement.
    case unsupportedModel(String)
    /// `tokenizer.ggml.pre` (or the tokenizer.json pre_tokenizer) names a split pattern we do not implement.
    case unsupportedPreTokenizer(String)
    /// The same token text appears twice in the vocabulary.
    case duplicateToken(String, first: Int, second: Int)
    /// Parallel arrays (tokens, token types, scores) disagree in length.
    case lengthMismatch(key: String, count: Int, expected: Int)
    /// A special-token id (BOS/EOS/...) is outside the vocabulary.
    case tokenIDOutOfRange(key: String, id: Int, vocabSize: Int)
    /// A tokenizer.json / tokenizer_config.json file could not be read or parsed.
    case unreadableFile(path: String, reason: String)
    /// tokenizer.json lacks something we need, or has it in a shape we do not know.
    case badTokenizerJSON(path: String, reason: String)
    /// `singleTokenID(for:)`: the word is not exactly one token.
    case notSingleToken(word: String, tokens: [String], ids: [Int32])
    /// The model's add_bos setting is true but it has no BOS token.
    case missingBOS
    /// loadTokenizer(for:) got a checkpoint type it does not know.
    case unsupportedCheckpoint(String)

    public var description: String {
        switch self {
        case .missingMetadata(let key):
            return "GGUF metadata has no '\(key)': the file carries no usable tokenizer (re-convert it with a current llama.cpp convert_hf_to_gguf.py)"
        case .badMetadata(let key, let expected):
            return "GGUF metadata '\(key)' is not \(expected)"
        case .unsupportedModel(let m):
            return "unsupported tokenizer model '\(m)': supported are gpt2 (byte-level BPE) and llama (SentencePiece-style BPE)"
        case .unsupportedPreTokenizer(let p):
            return "unsupported pre-tokenizer '\(p)': supported GGUF tokenizer.ggml.pre values are \(PreTokenizer.supportedNames.joined(separator: ", "))"
        case .duplicateToken(let t, let a, let b):
            return "duplicate token in vocabulary: '\(t)' has ids \(a) and \(b)"
        case .lengthMismatch(let key, let count, let expected):
            return "'\(key)' has \(count) entries, expected \(expected) (one per vocabulary token)"
        case .tokenIDOutOfRange(let key, let id, let n):
            return "'\(key)' = \(id) is outside the vocabulary of \(n) tokens"
        case .unreadableFile(let path, let reason):
            return "cannot read \(path): \(reason)"
        case .badTokenizerJSON(let path, let reason):
            return "\(path): \(reason)"
        case .notSingleToken(let word, let tokens, let ids):
            let shown = zip(tokens, ids).map { "\(debugQuoted($0)) (\($1))" }.joined(separator: " + ")
            return "\(debugQuoted(word)) is not a single token: it encodes to \(ids.count) tokens: \(ids.isEmpty ? "(none)" : shown)"
        case .missingBOS:
            return "the model says to add a BOS token but defines none"
        case .unsupportedCheckpoint(let t):
            return "cannot find a tokenizer for checkpoint type \(t)"
        }
    }
}

/// "he" with quotes, escaping control characters so whitespace tokens stay visible.
func debugQuoted(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        default:
            if u.value < 0x20 || u.value == 0x7F { out += String(format: "\\u{%X}", u.value) } else { out.unicodeScalars.append(u) }
        }
    }
    return out + "\""
}
