import Foundation
import ModelFormats

// The tokenizer of an HF model directory: tokenizer.json (the `tokenizers` library's
// serialization) plus tokenizer_config.json (add_bos_token, bos_token, eos_token).
//
// Supported: model.type "BPE" with
//   a byte-level pre-tokenizer, i.e. pre_tokenizer one of
//     ByteLevel(use_regex: true)                                   → gpt2 pattern
//     Sequence[Digits(individual_digits), ByteLevel(use_regex)]   → SmolLM / StarCoder
//     Sequence[Split(Regex: <llama3 | qwen2 | gpt2 pattern>, Isolated), ByteLevel(use_regex: false)]
//   and normalizer null or NFC; or
//   SentencePiece style (Llama 2, Mistral): normalizer Prepend("▁") + Replace(" ", "▁") and/or
//   pre_tokenizer Metaspace, characters merged by rank with <0xXX> byte fallback.
// Anything else is reported as unsupported, never guessed.

extension BPETokenizer {
    /// Builds the tokenizer from an HF `tokenizer.json` and (optionally) `tokenizer_config.json`.
    public convenience init(tokenizerJSON: URL, tokenizerConfig: URL?) throws {
        try self.init(spec: HFTokenizerJSON.spec(tokenizerJSON: tokenizerJSON, tokenizerConfig: tokenizerConfig))
    }
}

enum HFTokenizerJSON {
    static func readJSON(_ url: URL) throws -> [String: Any] {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw TokenizerError.unreadableFile(path: url.path, reason: error.localizedDescription)
        }
        guard let obj = try? JSONSerialization.jsonObject(with: data), let dict = obj as? [String: Any] else {
            throw TokenizerError.unreadableFile(path: url.path, reason: "not a JSON object")
        }
        return dict
    }

    /// The tokenizer.json regex patterns we have scanners for (as written in the files).
    static let knownPatterns: [String: PreTokenizer.Step] = [
        PreTokenizerFamily.Regex.gpt2: .gpt2,
        PreTokenizerFamily.Regex.gpt2Short: .gpt2,
        PreTokenizerFamily.Regex.llama3: .llama3(maxDigits: 3),
        PreTokenizerFamily.Regex.qwen2: .llama3(maxDigits: 1),
    ]

    struct PreResult {
        var steps: [PreTokenizer.Step] = []
        var byteLevel = false
        var prefixSpace = false
        var names: [String] = []
        /// Metaspace: nil when absent, else (prepend scheme, split).
        var metaspace: (scheme: String, split: Bool)?
    }

    static func preTokenizer(_ obj: Any?, path: String, into r: inout PreResult) throws {
        guard let obj, !(obj is NSNull) else { return }
        guard let d = obj as? [String: Any], let type = d["type"] as? String else {
            throw TokenizerError.badTokenizerJSON(path: path, reason: "pre_tokenizer has no type")
        }
        switch type {
        case "Sequence":
            for p in d["pretokenizers"] as? [Any] ?? [] { try preTokenizer(p, path: path, into: &r) }
        case "ByteLevel":
            r.byteLevel = true
            if (d["add_prefix_space"] as? Bool) == true { r.prefixSpace = true }
            if (d["use_regex"] as? Bool) ?? true { r.steps.append(.gpt2); r.names.append("ByteLevel(regex)") }
            else { r.names.append("ByteLevel") }
        case "Metaspace":
            guard (d["replacement"] as? String ?? "\u{2581}") == "\u{2581}" else {
                throw TokenizerError.unsupportedPreTokenizer("Metaspace(replacement: \(d["replacement"] ?? "?"))")
            }
            var scheme = d["prepend_scheme"] as? String ?? "always"
            if let legacy = d["add_prefix_space"] as? Bool, d["prepend_scheme"] == nil { scheme = legacy ? "always" : "never" }
            r.metaspace = (scheme, d["split"] as? Bool ?? true)
            r.names.append("Metaspace(\(scheme))")
        case "Digits":
            let single = (d["individual_digits"] as? Bool) ?? false
            r.steps.append(single ? .isolateDigits : .digitRuns)
            r.names.append(single ? "Digits(individual)" : "Digits")
        case "Split":
            let pattern = d["pattern"] as? [String: Any]
            let behavior = d["behavior"] as? String ?? ""
            let invert = d["invert"] as? Bool ?? false
            guard let re = pattern?["Regex"] as? String, let step = knownPatterns[re], behavior == "Isolated", !invert else {
                let shown = (pattern?["Regex"] ?? pattern?["String"]).map { "\($0)" } ?? "?"
                throw TokenizerError.unsupportedPreTokenizer("Split(\(shown), \(behavior)\(invert ? ", inverted" : ""))")
            }
            r.steps.append(step)
            r.names.append(step == .gpt2 ? "Split(gpt2)" : step == .llama3(maxDigits: 3) ? "Split(llama3)" : "Split(qwen2)")
        default:
            throw TokenizerError.unsupportedPreTokenizer(type)
        }
    }

    /// "<s>" or {"content": "<s>", ...} (tokenizer_config.json spellings of a token).
    static func tokenText(_ v: Any?) -> String? {
        if let s = v as? String { return s }
        if let d = v as? [String: Any] { return d["content"] as? String }
        return nil
    }

    static func spec(tokenizerJSON url: URL, tokenizerConfig configURL: URL?) throws -> VocabularySpec {
        let path = url.path
        let root = try readJSON(url)
        guard let model = root["model"] as? [String: Any] else {
            throw TokenizerError.badTokenizerJSON(path: path, reason: "no \"model\" object")
        }
        let modelType = model["type"] as? String ?? "BPE"
        guard modelType == "BPE" else { throw TokenizerError.unsupportedModel(modelType) }
        guard let vocab = model["vocab"] as? [String: Any] else {
            throw TokenizerError.badTokenizerJSON(path: path, reason: "model.vocab is not an object")
        }

        var pre = PreResult()
        try preTokenizer(root["pre_tokenizer"], path: path, into: &pre)
        if pre.prefixSpace {
            throw TokenizerError.unsupportedPreTokenizer("ByteLevel(add_prefix_space: true)")
        }

        // Normalizers: none, NFC (Qwen2), or SentencePiece's Prepend("▁") + Replace(" ", "▁").
        var nfc = false
        var prepend = false, replaceSpaces = false
        func normalizer(_ n: Any?) throws {
            guard let n, !(n is NSNull) else { return }
            let d = n as? [String: Any] ?? [:]
            switch d["type"] as? String ?? "?" {
            case "NFC": nfc = true
            case "Sequence": for x in d["normalizers"] as? [Any] ?? [] { try normalizer(x) }
            case "Prepend" where d["prepend"] as? String == "\u{2581}": prepend = true
            case "Replace" where (d["pattern"] as? [String: Any])?["String"] as? String == " " && d["content"] as? String == "\u{2581}":
                replaceSpaces = true
            default:
                throw TokenizerError.badTokenizerJSON(path: path, reason: "unsupported normalizer \(d["type"] ?? "?")")
            }
        }
        try normalizer(root["normalizer"])
        let sentencePiece = pre.metaspace != nil || replaceSpaces
        guard pre.byteLevel || sentencePiece else {
            throw TokenizerError.unsupportedPreTokenizer("tokenizer.json with neither a ByteLevel nor a Metaspace pre-tokenizer")
        }
        if pre.byteLevel && sentencePiece {
            throw TokenizerError.badTokenizerJSON(path: path, reason: "both ByteLevel and Metaspace/▁ normalization; not a layout we know")
        }
        if sentencePiece && !pre.steps.isEmpty {
            throw TokenizerError.unsupportedPreTokenizer(pre.names.joined(separator: " + "))
        }

        // Vocabulary: ids from model.vocab and added_tokens; holes become unused "[PAD<i>]".
        var byID: [Int: String] = [:]
        for (t, v) in vocab {
            guard let id = (v as? NSNumber)?.intValue, id >= 0 else {
                throw TokenizerError.badTokenizerJSON(path: path, reason: "model.vocab[\(t)] is not a token id")
            }
            byID[id] = t
        }
        var addedTypes: [Int: TokenType] = [:]
        var lstrip: Set<Int32> = [], rstrip: Set<Int32> = []
        for a in root["added_tokens"] as? [[String: Any]] ?? [] {
            guard let id = (a["id"] as? NSNumber)?.intValue, id >= 0, let content = a["content"] as? String else {
                throw TokenizerError.badTokenizerJSON(path: path, reason: "added_tokens entry without id/content")
            }
            byID[id] = content
            addedTypes[id] = (a["special"] as? Bool ?? false) ? .control : .userDefined
            if a["lstrip"] as? Bool == true { lstrip.insert(Int32(id)) }
            if a["rstrip"] as? Bool == true { rstrip.insert(Int32(id)) }
        }
        let n = (byID.keys.max() ?? -1) + 1
        guard n > 0, n <= Int(Int32.max) else { throw TokenizerError.badTokenizerJSON(path: path, reason: "empty vocabulary") }
        var tokens = [String](repeating: "", count: n)
        var types = [TokenType](repeating: .normal, count: n)
        for i in 0..<n {
            if let t = byID[i] {
                tokens[i] = t
                types[i] = addedTypes[i] ?? (sentencePiece && BPETokenizer.parseByteToken(t) != nil ? .byte : .normal)
            }
            else { tokens[i] = "[PAD\(i)]"; types[i] = .unused }
        }

        // Merges: "a b" strings (older files) or ["a", "b"] pairs (tokenizers >= 0.20).
        var merges: [(String, String)] = []
        for m in model["merges"] as? [Any] ?? [] {
            if let s = m as? String { merges.append(GGUFTokenizerMetadata.splitMerge(s)) }
            else if let p = m as? [String], p.count == 2 { merges.append((p[0], p[1])) }
            else { throw TokenizerError.badTokenizerJSON(path: path, reason: "model.merges entry \(m) is neither \"a b\" nor [a, b]") }
        }

        // BOS/EOS: tokenizer_config.json first, then the post-processor template.
        let config = try configURL.map(readJSON) ?? [:]
        func id(of text: String?) -> Int32? {
            guard let text else { return nil }
            return tokens.firstIndex(of: text).map(Int32.init)
        }
        var bos = id(of: tokenText(config["bos_token"]))
        let eos = id(of: tokenText(config["eos_token"]))
        let unk = id(of: tokenText(config["unk_token"]) ?? (model["unk_token"] as? String))
        var addBOS = config["add_bos_token"] as? Bool
        if let first = templateFirstSpecial(root["post_processor"]) {
            if addBOS == nil { addBOS = true }
            if bos == nil { bos = id(of: first) }
        }
        let addEOS = config["add_eos_token"] as? Bool ?? false

        if sentencePiece {
            let scheme = pre.metaspace?.scheme ?? (prepend ? "always" : "never")
            return VocabularySpec(
                kind: .sentencePiece, tokens: tokens, types: types, scores: nil, merges: merges,
                preTokenizer: PreTokenizer(name: pre.names.isEmpty ? "sentencepiece" : pre.names.joined(separator: " + "), steps: []),
                ignoreMerges: false,
                addBOS: addBOS ?? false, addEOS: addEOS,
                bosID: bos, eosID: eos, unknownID: unk,
                addSpacePrefix: scheme != "never", prefixFirstOnly: scheme == "first",
                prefixUnlessLeadingSpace: pre.metaspace != nil,
                metaspaceSplit: pre.metaspace?.split ?? false,
                lstrip: lstrip, rstrip: rstrip, normalizeNFC: nfc, source: path)
        }
        return VocabularySpec(
            kind: .byteLevelBPE, tokens: tokens, types: types, scores: nil, merges: merges,
            preTokenizer: PreTokenizer(name: pre.names.joined(separator: " + "), steps: pre.steps),
            ignoreMerges: model["ignore_merges"] as? Bool ?? false,
            addBOS: addBOS ?? false, addEOS: addEOS,
            bosID: bos, eosID: eos, unknownID: unk,
            addSpacePrefix: false, lstrip: lstrip, rstrip: rstrip, normalizeNFC: nfc,
            source: path)
    }

    /// The special token a TemplateProcessing post-processor puts before a single sequence.
    static func templateFirstSpecial(_ obj: Any?) -> String? {
        guard let d = obj as? [String: Any], let type = d["type"] as? String else { return nil }
        if type == "Sequence" {
            for p in d["processors"] as? [Any] ?? [] { if let s = templateFirstSpecial(p) { return s } }
            return nil
        }
        guard type == "TemplateProcessing", let single = d["single"] as? [[String: Any]],
              let first = single.first, let sp = first["SpecialToken"] as? [String: Any] else { return nil }
        return sp["id"] as? String
    }
}
