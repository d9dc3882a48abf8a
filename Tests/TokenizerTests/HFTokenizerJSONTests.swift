import XCTest
import Foundation
import ModelFormats
@testable import Tokenizer

/// The tokenizer.json path: the sample model's vocabulary written as an HF tokenizer.json
/// must give the same ids as the GGUF path; small hand-made files cover the other shapes.
final class HFTokenizerJSONTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    func write(_ obj: Any, _ name: String) throws -> URL {
        let url = dir.appendingPathComponent(name)
        try JSONSerialization.data(withJSONObject: obj).write(to: url)
        return url
    }

    /// SmolLM2's tokenizer.json layout (as on the Hub), filled from the GGUF metadata.
    func testSmolLMTokenizerJSONMatchesGGUF() throws {
        let md = try sampleMetadata()
        guard case .array(_, let tokVals) = md["tokenizer.ggml.tokens"]!,
              case .array(_, let typeVals) = md["tokenizer.ggml.token_type"]!,
              case .array(_, let mergeVals) = md["tokenizer.ggml.merges"]! else { return XCTFail("metadata shape") }
        let toks = tokVals.map { $0.stringValue! }
        let types = typeVals.map { $0.intValue! }
        var vocab: [String: Int] = [:]
        var added: [[String: Any]] = []
        for (i, t) in toks.enumerated() {
            vocab[t] = i
            if types[i] == 3 {
                added.append(["id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                              "normalized": false, "special": true])
            }
        }
        // Newer tokenizers write merges as pairs; use that form for half of them.
        let merges: [Any] = mergeVals.enumerated().map { i, v in
            let s = v.stringValue!
            if i % 2 == 0 { return s }
            let p = GGUFTokenizerMetadata.splitMerge(s)
            return [p.0, p.1]
        }
        let json: [String: Any] = [
            "version": "1.0", "truncation": NSNull(), "padding": NSNull(), "added_tokens": added,
            "normalizer": NSNull(),
            "pre_tokenizer": ["type": "Sequence", "pretokenizers": [
                ["type": "Digits", "individual_digits": true],
                ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true]]],
            "post_processor": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true],
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": ["type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
                      "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": merges],
        ]
        let config: [String: Any] = ["bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>",
                                     "model_max_length": 8192, "tokenizer_class": "GPT2Tokenizer"]
        let tok = try BPETokenizer(tokenizerJSON: try write(json, "tokenizer.json"),
                                   tokenizerConfig: try write(config, "tokenizer_config.json"))
        XCTAssertEqual(tok.vocabSize, 49152)
        XCTAssertFalse(tok.addsBOS)
        XCTAssertEqual(tok.bosID, 1)
        XCTAssertEqual(tok.eosID, 2)
        XCTAssertEqual(tok.preTokenizer.steps, [.isolateDigits, .gpt2])
        let gguf = try SampleTokenizer.tokenizer()
        for c in try smollmGoldens() {
            XCTAssertEqual(tok.encode(c.text), c.ids, debugQuoted(c.text))
            XCTAssertEqual(tok.encode(c.text), gguf.encode(c.text))
        }
        XCTAssertEqual(try tok.singleTokenID(for: " he"), 384)
        XCTAssertEqual(try tok.singleTokenID(for: " she"), 1041)
    }

    /// A tiny byte-level vocabulary: ids 0...255 are the byte characters in byte order.
    func tinyVocab() -> [String: Int] {
        var v: [String: Int] = [:]
        for b in 0..<256 { v[String(ByteEncoder.byteToScalar[b])] = b }
        for (i, t) in ["he", "ll", "hell", "hello", "Ġw", "Ġworld"].enumerated() { v[t] = 256 + i }
        return v
    }

    /// Llama 3 layout: Split(llama3 regex) + ByteLevel(no regex), ignore_merges, BOS from the template.
    func testLlama3Layout() throws {
        let llama3 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        func json(ignoreMerges: Bool) -> [String: Any] { [
            "added_tokens": [["id": 262, "content": "<|begin_of_text|>", "special": true]],
            "normalizer": NSNull(),
            "pre_tokenizer": ["type": "Sequence", "pretokenizers": [
                ["type": "Split", "pattern": ["Regex": llama3], "behavior": "Isolated", "invert": false],
                ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false]]],
            "post_processor": ["type": "Sequence", "processors": [
                ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true],
                ["type": "TemplateProcessing", "single": [
                    ["SpecialToken": ["id": "<|begin_of_text|>", "type_id": 0]],
                    ["Sequence": ["id": "A", "type_id": 0]]]]]],
            "model": ["type": "BPE", "ignore_merges": ignoreMerges, "vocab": tinyVocab(),
                      "merges": ["h e", "l l", "he ll", "hell o", "Ġ w"]],
        ] }
        let tok = try BPETokenizer(tokenizerJSON: try write(json(ignoreMerges: true), "tokenizer.json"), tokenizerConfig: nil)
        XCTAssertTrue(tok.addsBOS)
        XCTAssertEqual(tok.bosID, 262)
        XCTAssertEqual(tok.preTokenizer.steps, [.llama3(maxDigits: 3)])
        // "hello" by merges; " world" whole (ignore_merges); "12345" → "123" "45" as bytes.
        XCTAssertEqual(tok.encode("hello world 12345"),
                       [262, 259, 261, 32, 49, 50, 51, 52, 53].map { Int32($0) })
        XCTAssertEqual(tok.decode(tok.encode("hello world 12345")), "<|begin_of_text|>hello world 12345")
        let noIgnore = try BPETokenizer(tokenizerJSON: try write(json(ignoreMerges: false), "t2.json"), tokenizerConfig: nil)
        XCTAssertEqual(noIgnore.encode(" world", addBOS: false), [260, 111, 114, 108, 100])
        // tokenizer_config.json wins over the template.
        let cfg = try write(["add_bos_token": false], "tokenizer_config.json")
        XCTAssertFalse(try BPETokenizer(tokenizerJSON: try write(json(ignoreMerges: true), "t3.json"), tokenizerConfig: cfg).addsBOS)
    }

    func testUnsupportedAndBrokenFiles() throws {
        let whitespace: [String: Any] = ["pre_tokenizer": ["type": "WhitespaceSplit"],
                                         "model": ["type": "BPE", "vocab": tinyVocab(), "merges": []]]
        XCTAssertThrowsError(try BPETokenizer(tokenizerJSON: try write(whitespace, "a.json"), tokenizerConfig: nil)) {
            XCTAssertEqual($0 as? TokenizerError, .unsupportedPreTokenizer("WhitespaceSplit"))
        }
        let oddSplit: [String: Any] = ["pre_tokenizer": ["type": "Split", "pattern": ["Regex": "\\w+"], "behavior": "Isolated"],
                                       "model": ["type": "BPE", "vocab": tinyVocab(), "merges": []]]
        XCTAssertThrowsError(try BPETokenizer(tokenizerJSON: try write(oddSplit, "b.json"), tokenizerConfig: nil)) {
            XCTAssertTrue("\($0)".contains("\\w+"), "\($0)")
        }
        let unigram: [String: Any] = ["model": ["type": "Unigram", "vocab": []]]
        XCTAssertThrowsError(try BPETokenizer(tokenizerJSON: try write(unigram, "c.json"), tokenizerConfig: nil)) {
            XCTAssertEqual($0 as? TokenizerError, .unsupportedModel("Unigram"))
        }
        let missing = dir.appendingPathComponent("nope.json")
        XCTAssertThrowsError(try BPETokenizer(tokenizerJSON: missing, tokenizerConfig: nil)) {
            guard case TokenizerError.unreadableFile(let p, _) = $0 else { return XCTFail("\($0)") }
            XCTAssertEqual(p, missing.path)
        }
        let garbage = dir.appendingPathComponent("garbage.json")
        try Data("{not json".utf8).write(to: garbage)
        XCTAssertThrowsError(try BPETokenizer(tokenizerJSON: garbage, tokenizerConfig: nil))
    }

    /// SentencePiece-style tokenizer.json (Llama 2 / Mistral layouts): ids from HF tokenizers
    /// (Fixtures/spm_goldens.json, generate_spm_goldens.py).
    func testSentencePieceLayouts() throws {
        let root = try XCTUnwrap(try fixture("spm_goldens") as? [String: Any])
        let layouts = try XCTUnwrap(root["layouts"] as? [String: [String: Any]])
        XCTAssertEqual(Set(layouts.keys), ["legacy", "metaspace"])
        for (name, layout) in layouts {
            let file = try XCTUnwrap(layout["file"] as? String)
            let url = try XCTUnwrap(Bundle.module.url(forResource: (file as NSString).deletingPathExtension,
                                                      withExtension: "json", subdirectory: "Fixtures"))
            let tok = try BPETokenizer(tokenizerJSON: url, tokenizerConfig: nil)
            XCTAssertEqual(tok.kind, .sentencePiece)
            let cases = try XCTUnwrap(layout["cases"] as? [[String: Any]])
            XCTAssertGreaterThan(cases.count, 5)
            for c in cases {
                let text = try XCTUnwrap(c["text"] as? String)
                let want = try XCTUnwrap(c["ids"] as? [Int]).map { Int32($0) }
                let got = tok.encode(text, addBOS: false)
                XCTAssertEqual(got, want, "\(name) \(debugQuoted(text)): \(got.map(tok.tokenString)) vs \(want.map(tok.tokenString))")
                if !text.hasPrefix(" ") && !text.contains("<") {
                    XCTAssertEqual(tok.decode(got), text, "\(name) round trip")
                }
            }
        }
    }
}

/// The tokenizer files `lftf-patch convert` writes (ModelFormats.HFTokenizerFiles) load back
/// to the same ids as the GGUF they came from.
final class ConvertedTokenizerFilesTests: XCTestCase {
    func testConvertedFilesRoundTrip() throws {
        let md = try sampleMetadata()
        let vocab = try XCTUnwrap(GGUFVocabulary(metadata: { md[$0] }))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("conv-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data(try HFTokenizerFiles.tokenizerJSON(vocab)).write(to: dir.appendingPathComponent("tokenizer.json"))
        try Data(HFTokenizerFiles.tokenizerConfigJSON(vocab, maxLength: 8192)).write(to: dir.appendingPathComponent("tokenizer_config.json"))
        let tok = try loadTokenizer(directory: dir)
        XCTAssertFalse(tok.addsBOS)
        XCTAssertEqual(tok.bosID, 1)
        XCTAssertEqual(tok.eosID, 2)
        for c in try smollmGoldens() { XCTAssertEqual(tok.encode(c.text), c.ids, debugQuoted(c.text)) }
    }

    /// For every pre-tokenizer family `convert` writes, the tokenizer.json loads back to the ids
    /// the GGUF tokenizer gives with that `tokenizer.ggml.pre` (same vocabulary and merges), on
    /// text where the families split differently: digits, contractions, newlines, punctuation.
    func testEveryWrittenFamilyMatchesItsGGUFTokenizer() throws {
        var md = try sampleMetadata()
        let texts = ["In 2024, 1234567 people said: \"It's   fine!\"\n\n  Really?", "HE'LL pay $3.50... or 12,345.6",
                     "tab\tand\r\nnew lines\n\n\nend", "naïve café 東京 2 + 22 = 24", "x=[1,2,3]; y = f(x)//2 #ok"]
        for (pre, ignoresMerges) in [("gpt2", false), ("llama-bpe", true), ("dbrx", false), ("qwen2", false), ("starcoder", false)] {
            md["tokenizer.ggml.pre"] = .string(pre)
            let gguf = try BPETokenizer(ggufMetadata: md)
            let vocab = try XCTUnwrap(GGUFVocabulary(metadata: { md[$0] }))
            let bytes = try HFTokenizerFiles.tokenizerJSON(vocab)
            XCTAssertEqual(String(decoding: bytes, as: UTF8.self).contains("\"ignore_merges\": true"), ignoresMerges, pre)
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("conv-\(pre)-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            try Data(bytes).write(to: dir.appendingPathComponent("tokenizer.json"))
            let hf = try loadTokenizer(directory: dir)
            for t in texts {
                XCTAssertEqual(hf.encode(t, addBOS: false), gguf.encode(t, addBOS: false), "\(pre): \(debugQuoted(t))")
            }
        }
        // The families differ on these texts, so the comparison above can fail.
        md["tokenizer.ggml.pre"] = .string("gpt2")
        let a = try BPETokenizer(ggufMetadata: md).encode(texts[0], addBOS: false)
        md["tokenizer.ggml.pre"] = .string("qwen2")
        XCTAssertNotEqual(a, try BPETokenizer(ggufMetadata: md).encode(texts[0], addBOS: false))
    }

    /// A pre-tokenizer without an exact tokenizer.json form is refused, not approximated.
    func testUnwritablePreIsRefused() throws {
        var md = try sampleMetadata()
        for pre in ["default", "falcon"] {
            md["tokenizer.ggml.pre"] = .string(pre)
            let vocab = try XCTUnwrap(GGUFVocabulary(metadata: { md[$0] }))
            XCTAssertThrowsError(try HFTokenizerFiles.tokenizerJSON(vocab)) {
                XCTAssertEqual($0 as? HFTokenizerError, .unsupportedPre(pre))
                XCTAssertTrue("\($0)".contains("\"\(pre)\""), "\($0)")
            }
        }
    }
}
