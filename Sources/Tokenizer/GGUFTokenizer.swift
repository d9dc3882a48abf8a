import ModelFormats

// The tokenizer stored in a GGUF file's metadata (llama.cpp's llama_vocab::impl::load):
//   tokenizer.ggml.model        "gpt2" (byte-level BPE) or "llama" (SentencePiece)
//   tokenizer.ggml.pre          the split pattern family (see PreTokenizer.ggufTable)
//   tokenizer.ggml.tokens       [string], the vocabulary, id = index
//   tokenizer.ggml.token_type   [int32], TokenType per token (default NORMAL)
//   tokenizer.ggml.scores       [float32], SentencePiece merge scores
//   tokenizer.ggml.merges       [string], "a b" in rank order (gpt2 only)
//   tokenizer.ggml.{bos,eos,unknown}_token_id, add_bos_token, add_eos_token, add_space_prefix

extension BPETokenizer {
    /// Builds the tokenizer from GGUF metadata (`GGUFCheckpoint.metadata`).
    public convenience init(ggufMetadata md: [String: GGUFValue]) throws {
        try self.init(spec: GGUFTokenizerMetadata.spec(md))
    }
}

enum GGUFTokenizerMetadata {
    static func string(_ md: [String: GGUFValue], _ key: String) throws -> String? {
        guard let v = md[key] else { return nil }
        guard let s = v.stringValue else { throw TokenizerError.badMetadata(key: key, expected: "a string") }
        return s
    }

    static func bool(_ md: [String: GGUFValue], _ key: String) throws -> Bool? {
        guard let v = md[key] else { return nil }
        guard let b = v.boolValue else { throw TokenizerError.badMetadata(key: key, expected: "a bool") }
        return b
    }

    static func id(_ md: [String: GGUFValue], _ key: String) throws -> Int32? {
        guard let v = md[key] else { return nil }
        guard let i = v.intValue, let id = Int32(exactly: i) else { throw TokenizerError.badMetadata(key: key, expected: "a token id") }
        return id
    }

    static func strings(_ md: [String: GGUFValue], _ key: String) throws -> [String]? {
        guard let v = md[key] else { return nil }
        guard case .array(let t, let items) = v, t == .string || items.isEmpty else {
            throw TokenizerError.badMetadata(key: key, expected: "an array of strings")
        }
        var out: [String] = []
        out.reserveCapacity(items.count)
        for item in items {
            guard case .string(let s) = item else { throw TokenizerError.badMetadata(key: key, expected: "an array of strings") }
            out.append(s)
        }
        return out
    }

    static func spec(_ md: [String: GGUFValue]) throws -> VocabularySpec {
        guard let model = try string(md, "tokenizer.ggml.model") else {
            throw TokenizerError.missingMetadata(key: "tokenizer.ggml.model")
        }
        let kind: TokenizerKind
        switch model {
        case "gpt2": kind = .byteLevelBPE
        case "llama": kind = .sentencePiece
        default: throw TokenizerError.unsupportedModel(model)
        }
        guard let tokens = try strings(md, "tokenizer.ggml.tokens") else {
            throw TokenizerError.missingMetadata(key: "tokenizer.ggml.tokens")
        }
        let n = tokens.count

        var types = [TokenType](repeating: .normal, count: n)
        if let v = md["tokenizer.ggml.token_type"] {
            guard let items = v.arrayValue else { throw TokenizerError.badMetadata(key: "tokenizer.ggml.token_type", expected: "an array of int32") }
            guard items.count >= n else { throw TokenizerError.lengthMismatch(key: "tokenizer.ggml.token_type", count: items.count, expected: n) }
            for i in 0..<n {
                guard let t = items[i].intValue else { throw TokenizerError.badMetadata(key: "tokenizer.ggml.token_type", expected: "an array of int32") }
                types[i] = TokenType(rawValue: Int32(truncatingIfNeeded: t)) ?? .undefined
            }
        }
        // llama.cpp forces these to CONTROL by their text (end-of-turn and fill-in-middle markers).
        for (i, t) in tokens.enumerated() where forcedControl.contains(t) && types[i] != .control {
            types[i] = .control
        }

        var scores: [Float]? = nil
        if let v = md["tokenizer.ggml.scores"] {
            guard let items = v.arrayValue else { throw TokenizerError.badMetadata(key: "tokenizer.ggml.scores", expected: "an array of float32") }
            guard items.count >= n else { throw TokenizerError.lengthMismatch(key: "tokenizer.ggml.scores", count: items.count, expected: n) }
            scores = try items.prefix(n).map {
                guard let d = $0.doubleValue else { throw TokenizerError.badMetadata(key: "tokenizer.ggml.scores", expected: "an array of float32") }
                return Float(d)
            }
        }

        var merges: [(String, String)] = []
        var pre = PreTokenizer(name: "sentencepiece", steps: [])
        var preName = ""
        if kind == .byteLevelBPE {
            guard let lines = try strings(md, "tokenizer.ggml.merges") else {
                throw TokenizerError.missingMetadata(key: "tokenizer.ggml.merges")
            }
            merges = lines.map(splitMerge)
            preName = try string(md, "tokenizer.ggml.pre") ?? ""
            pre = try PreTokenizer.gguf(preName)
        }

        let llama3 = PreTokenizer.llama3Family.contains(preName)
        let defaultAddBOS: Bool = kind == .sentencePiece || llama3 || preName == "tekken" || preName == "chameleon"
        var bos = try id(md, "tokenizer.ggml.bos_token_id")
        var eos = try id(md, "tokenizer.ggml.eos_token_id")
        var unk = try id(md, "tokenizer.ggml.unknown_token_id")
        if kind == .sentencePiece {   // llama.cpp's SentencePiece defaults
            bos = bos ?? (n > 1 ? 1 : nil); eos = eos ?? (n > 2 ? 2 : nil); unk = unk ?? (n > 0 ? 0 : nil)
        }
        return VocabularySpec(
            kind: kind, tokens: tokens, types: types, scores: scores, merges: merges, preTokenizer: pre,
            ignoreMerges: llama3,
            addBOS: try bool(md, "tokenizer.ggml.add_bos_token") ?? defaultAddBOS,
            addEOS: try bool(md, "tokenizer.ggml.add_eos_token") ?? false,
            bosID: bos, eosID: eos, unknownID: unk,
            addSpacePrefix: try bool(md, "tokenizer.ggml.add_space_prefix") ?? (kind == .sentencePiece),
            source: "GGUF metadata")
    }

    /// "Ġ t" → ("Ġ", "t"): split at the first space after the first byte (llama.cpp find(' ', 1)).
    static func splitMerge(_ line: String) -> (String, String) {
        let u = Array(line.utf8)
        guard u.count > 1, let i = u[1...].firstIndex(of: 0x20) else { return ("", "") }
        return (String(decoding: u[..<i], as: UTF8.self), String(decoding: u[(i + 1)...], as: UTF8.self))
    }

    static let forcedControl: Set<String> = [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
        "_<EOT>", "<｜end▁of▁sentence｜>", "<|eom_id|>",
        "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
        "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<|fim_pad|>", "<fim-pad>", "<fim_pad>",
        "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<|file_sep|>",
    ]
}
