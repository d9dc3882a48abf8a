import Foundation

// tokenizer.json and tokenizer_config.json for an HF directory, built from a GGUF vocabulary
// (tokenizer.ggml.* metadata): a byte-level BPE model with vocab + merges, special tokens as
// added_tokens, and the pre-tokenizer llama.cpp's `tokenizer.ggml.pre` names.

/// The tokenizer a GGUF file carries (gguf.md "Tokenizer").
public struct GGUFVocabulary: Sendable, Equatable {
    /// `tokenizer.ggml.model`: "gpt2" is byte-level BPE (the only one written as HF BPE here).
    public var model: String
    /// `tokenizer.ggml.pre`: "smollm", "gpt2", "default", ... (llama.cpp's pre-tokenizer name).
    public var pre: String?
    public var tokens: [String]
    /// `tokenizer.ggml.token_type`: 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte.
    public var tokenTypes: [Int]
    /// "a b" pairs, highest priority first.
    public var merges: [String]
    public var bosTokenId: Int?
    public var eosTokenId: Int?
    public var unknownTokenId: Int?
    public var paddingTokenId: Int?
    public var addBOS: Bool
    public var addEOS: Bool
    public var chatTemplate: String?

    public init(model: String, pre: String?, tokens: [String], tokenTypes: [Int], merges: [String],
                bosTokenId: Int?, eosTokenId: Int?, unknownTokenId: Int? = nil, paddingTokenId: Int? = nil,
                addBOS: Bool, addEOS: Bool = false, chatTemplate: String? = nil) {
        self.model = model; self.pre = pre; self.tokens = tokens; self.tokenTypes = tokenTypes; self.merges = merges
        self.bosTokenId = bosTokenId; self.eosTokenId = eosTokenId; self.unknownTokenId = unknownTokenId
        self.paddingTokenId = paddingTokenId; self.addBOS = addBOS; self.addEOS = addEOS; self.chatTemplate = chatTemplate
    }

    /// Reads `tokenizer.ggml.*` from GGUF metadata; nil when the file has no tokenizer.
    public init?(metadata: (String) -> GGUFValue?) {
        guard let model = metadata("tokenizer.ggml.model")?.stringValue,
              let tokens = metadata("tokenizer.ggml.tokens")?.arrayValue?.compactMap(\.stringValue) else { return nil }
        self.model = model
        pre = metadata("tokenizer.ggml.pre")?.stringValue
        self.tokens = tokens
        let types = metadata("tokenizer.ggml.token_type")?.arrayValue?.compactMap(\.intValue) ?? []
        tokenTypes = types.count == tokens.count ? types : Array(repeating: 1, count: tokens.count)
        merges = metadata("tokenizer.ggml.merges")?.arrayValue?.compactMap(\.stringValue) ?? []
        bosTokenId = metadata("tokenizer.ggml.bos_token_id")?.intValue
        eosTokenId = metadata("tokenizer.ggml.eos_token_id")?.intValue
        unknownTokenId = metadata("tokenizer.ggml.unknown_token_id")?.intValue
        paddingTokenId = metadata("tokenizer.ggml.padding_token_id")?.intValue
        addBOS = metadata("tokenizer.ggml.add_bos_token")?.boolValue ?? false
        addEOS = metadata("tokenizer.ggml.add_eos_token")?.boolValue ?? false
        chatTemplate = metadata("tokenizer.chat_template")?.stringValue
    }

    /// Control (3) and user-defined (4) tokens: HF's added_tokens.
    public var specialTokenIds: [Int] { tokenTypes.indices.filter { tokenTypes[$0] == 3 || tokenTypes[$0] == 4 } }

    func token(_ id: Int?) -> String? { id.flatMap { $0 >= 0 && $0 < tokens.count ? tokens[$0] : nil } }
}

public enum HFTokenizerError: Error, CustomStringConvertible, Equatable {
    /// Only byte-level BPE ("gpt2") vocabularies are converted.
    case unsupportedModel(String)
    /// A `tokenizer.ggml.pre` whose split patterns are not written as tokenizer.json here.
    case unsupportedPre(String)
    public var description: String {
        switch self {
        case .unsupportedPre(let p):
            return "tokenizer.ggml.pre \"\(p)\" has no exact tokenizer.json form here (the smollm, gpt2, llama3 and qwen2 pre-tokenizer families are written)"
        case .unsupportedModel(let m):
            return "tokenizer model \"\(m)\" is not supported for conversion (only byte-level BPE, tokenizer.ggml.model = gpt2)"
        }
    }
}

public enum HFTokenizerFiles {
    /// tokenizer.json (HF `tokenizers` format) for a byte-level BPE vocabulary.
    public static func tokenizerJSON(_ v: GGUFVocabulary) throws -> [UInt8] {
        guard v.model == "gpt2" else { throw HFTokenizerError.unsupportedModel(v.model) }
        let f = JSONValue.bool(false), t = JSONValue.bool(true)
        let added: [JSONValue] = v.specialTokenIds.map { id in
            .object([("id", .int(Int64(id))), ("content", .string(v.tokens[id])), ("single_word", f),
                     ("lstrip", f), ("rstrip", f), ("normalized", f), ("special", .bool(v.tokenTypes[id] == 3))])
        }
        let byteLevel: JSONValue = .object([("type", .string("ByteLevel")), ("add_prefix_space", f),
                                             ("trim_offsets", t), ("use_regex", t)])
        let split: (String) -> JSONValue = { regex in
            .object([("type", .string("Sequence")), ("pretokenizers", .array([
                .object([("type", .string("Split")), ("pattern", .object([("Regex", .string(regex))])),
                         ("behavior", .string("Isolated")), ("invert", f)]),
                .object([("type", .string("ByteLevel")), ("add_prefix_space", f), ("trim_offsets", t), ("use_regex", f)]),
            ]))])
        }
        let preTokenizer: JSONValue
        switch PreTokenizerFamily.named(v.pre) {
        case .smollm?:
            // Digits split one by one before GPT-2's regex (SmolLM2's tokenizer.json).
            preTokenizer = .object([("type", .string("Sequence")), ("pretokenizers", .array([
                .object([("type", .string("Digits")), ("individual_digits", t)]), byteLevel,
            ]))])
        case .gpt2?: preTokenizer = byteLevel
        case .llama3?: preTokenizer = split(PreTokenizerFamily.Regex.llama3)   // Llama 3's tokenizer.json
        case .qwen2?: preTokenizer = split(PreTokenizerFamily.Regex.qwen2)     // Qwen2's tokenizer.json
        case .falcon?, .llamaCppDefault?, nil:
            // llama.cpp's "default" and "falcon" chain regexes no tokenizer.json we read spells
            // the same way; writing GPT-2's pattern instead would tokenize some text differently.
            throw HFTokenizerError.unsupportedPre(v.pre ?? "default")
        }
        let ignoreMerges = PreTokenizerFamily.ignoresMerges.contains(v.pre ?? "")
        let vocab: JSONValue = .object(v.tokens.enumerated().map { ($1, .int(Int64($0))) })
        let json: JSONValue = .object([
            ("version", .string("1.0")),
            ("truncation", .null),
            ("padding", .null),
            ("added_tokens", .array(added)),
            ("normalizer", .null),
            ("pre_tokenizer", preTokenizer),
            ("post_processor", .object([("type", .string("ByteLevel")), ("add_prefix_space", t),
                                        ("trim_offsets", f), ("use_regex", t)])),
            ("decoder", .object([("type", .string("ByteLevel")), ("add_prefix_space", t),
                                 ("trim_offsets", t), ("use_regex", t)])),
            ("model", .object([
                ("type", .string("BPE")), ("dropout", .null), ("unk_token", v.token(v.unknownTokenId).map(JSONValue.string) ?? .null),
                ("continuing_subword_prefix", .null), ("end_of_word_suffix", .null), ("fuse_unk", f),
                ("byte_fallback", f), ("ignore_merges", .bool(ignoreMerges)),
                ("vocab", vocab),
                ("merges", .array(v.merges.map(JSONValue.string))),
            ])),
        ])
        return json.encoded(.pythonIndent2) + [0x0A]
    }

    /// tokenizer_config.json: whether to add BOS/EOS, the special tokens, the chat template.
    public static func tokenizerConfigJSON(_ v: GGUFVocabulary, maxLength: Int) -> [UInt8] {
        var pairs: [(String, JSONValue)] = [
            ("add_bos_token", .bool(v.addBOS)),
            ("add_eos_token", .bool(v.addEOS)),
        ]
        pairs.append(("added_tokens_decoder", .object(v.specialTokenIds.map { id in
            (String(id), .object([("content", .string(v.tokens[id])), ("lstrip", .bool(false)), ("normalized", .bool(false)),
                                  ("rstrip", .bool(false)), ("single_word", .bool(false)), ("special", .bool(v.tokenTypes[id] == 3))]))
        })))
        pairs.append(("additional_special_tokens", .array(v.specialTokenIds.filter { $0 != v.bosTokenId && $0 != v.eosTokenId && $0 != v.unknownTokenId && $0 != v.paddingTokenId }.map { .string(v.tokens[$0]) })))
        pairs.append(("bos_token", v.token(v.bosTokenId).map(JSONValue.string) ?? .null))
        if let c = v.chatTemplate { pairs.append(("chat_template", .string(c))) }
        pairs.append(("clean_up_tokenization_spaces", .bool(false)))
        pairs.append(("eos_token", v.token(v.eosTokenId).map(JSONValue.string) ?? .null))
        pairs.append(("model_max_length", .int(Int64(maxLength))))
        if let p = v.token(v.paddingTokenId) { pairs.append(("pad_token", .string(p))) }
        pairs.append(("tokenizer_class", .string("GPT2Tokenizer")))
        pairs.append(("unk_token", v.token(v.unknownTokenId).map(JSONValue.string) ?? .null))
        return JSONValue.object(pairs).encoded(.pythonIndent2) + [0x0A]
    }
}
