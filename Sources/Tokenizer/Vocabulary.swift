// What a tokenizer is made of, independent of where it came from (GGUF metadata or HF
// tokenizer.json). Both loaders fill a `VocabularySpec`; `BPETokenizer` is built from it.

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp's llama_token_type).
public enum TokenType: Int32, Sendable {
    case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6

    /// Matched in raw text before pre-tokenization (llama.cpp cache_special_tokens).
    var isSpecial: Bool { self == .control || self == .userDefined || self == .unknown }
}

/// How pieces become tokens.
public enum TokenizerKind: String, Sendable {
    /// GPT-2 style: text → UTF-8 bytes → byte characters; merges ranked by their order
    /// (GGUF tokenizer.ggml.model "gpt2"; HF BPE with a ByteLevel pre-tokenizer).
    case byteLevelBPE
    /// SentencePiece BPE: spaces become '▁', pieces merge by score, unknown characters fall
    /// back to <0xXX> byte tokens (GGUF tokenizer.ggml.model "llama").
    case sentencePiece
}

struct VocabularySpec {
    var kind: TokenizerKind
    var tokens: [String]
    var types: [TokenType]
    /// SentencePiece merge scores, one per token (GGUF "llama" vocabularies).
    var scores: [Float]?
    /// Merges in rank order ("Ġ t" → ("Ġ", "t")): byte-level BPE, and SentencePiece-style
    /// tokenizer.json files (which merge characters by rank instead of by score).
    var merges: [(String, String)]
    var preTokenizer: PreTokenizer
    /// Use a whole pre-token as one token when the vocabulary has it (llama3; HF ignore_merges).
    var ignoreMerges: Bool
    var addBOS: Bool
    var addEOS: Bool
    var bosID: Int32?
    var eosID: Int32?
    var unknownID: Int32?
    /// SentencePiece: prepend a space to text at the start and after a special token.
    var addSpacePrefix: Bool
    /// HF Metaspace prepend_scheme "first": only before text at the very start of the input.
    var prefixFirstOnly: Bool = false
    /// HF Metaspace: no prefix when the text already starts with a space.
    var prefixUnlessLeadingSpace: Bool = false
    /// HF Metaspace split: each '▁'-led word is merged on its own.
    var metaspaceSplit: Bool = false
    /// HF added tokens: strip whitespace to the left / right of the token when matching.
    var lstrip: Set<Int32> = []
    var rstrip: Set<Int32> = []
    /// HF normalizer NFC (Qwen2).
    var normalizeNFC: Bool = false
    /// Where it came from, for messages.
    var source: String
}
