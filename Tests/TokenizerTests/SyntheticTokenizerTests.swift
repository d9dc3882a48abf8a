import XCTest
import ModelFormats
@testable import Tokenizer

/// Hand-made GGUF metadata: the SentencePiece path, and every metadata error.
final class SyntheticTokenizerTests: XCTestCase {
    func strings(_ a: [String]) -> GGUFValue { .array(.string, a.map { .string($0) }) }

    /// <unk> <s> </s>, 256 byte tokens (ids 3...258), then pieces with scores.
    func spmMetadata() -> [String: GGUFValue] {
        var toks = ["<unk>", "<s>", "</s>"]
        var types: [Int32] = [2, 3, 3]
        var scores: [Float] = [0, 0, 0]
        for b in 0..<256 { toks.append(String(format: "<0x%02X>", b)); types.append(6); scores.append(0) }
        let pieces: [(String, Float)] = [("▁", -10), ("h", -11), ("e", -12), ("l", -13), ("o", -14),
                                         ("▁h", -1), ("he", -2), ("ll", -3), ("▁he", -4), ("lo", -5),
                                         ("▁hell", -6), ("▁hello", -7)]
        for (p, s) in pieces { toks.append(p); types.append(1); scores.append(s) }
        return ["tokenizer.ggml.model": .string("llama"), "tokenizer.ggml.tokens": strings(toks),
                "tokenizer.ggml.token_type": .array(.int32, types.map { .int32($0) }),
                "tokenizer.ggml.scores": .array(.float32, scores.map { .float32($0) }),
                "tokenizer.ggml.bos_token_id": .uint32(1), "tokenizer.ggml.eos_token_id": .uint32(2)]
    }

    func testSentencePieceMergesByScoreWithByteFallback() throws {
        let tok = try BPETokenizer(ggufMetadata: spmMetadata())
        XCTAssertEqual(tok.kind, .sentencePiece)
        XCTAssertTrue(tok.addsBOS, "SentencePiece models add BOS unless the file says not to")
        let hello = tok.id(forToken: "▁hello")!
        XCTAssertEqual(tok.encode("hello"), [1, hello])
        // 'é' is not in the vocabulary: its UTF-8 bytes C3 A9 become <0xC3> <0xA9>.
        XCTAssertEqual(tok.encode("hé", addBOS: false), [tok.id(forToken: "▁h")!, 3 + 0xC3, 3 + 0xA9])
        XCTAssertEqual(tok.decode(tok.encode("hé")), "<s>hé")
        XCTAssertEqual(tok.decode(tok.encode("hello hé"), skipSpecial: true), "hello hé")
        XCTAssertEqual(tok.tokenString(hello), " hello")
        XCTAssertEqual(tok.id(forToken: " hello"), hello)
        XCTAssertEqual(try tok.singleTokenID(for: "hello"), hello)
    }

    func testMetadataErrors() throws {
        var md = spmMetadata()
        md["tokenizer.ggml.model"] = .string("bert")
        XCTAssertThrowsError(try BPETokenizer(ggufMetadata: md)) { XCTAssertEqual($0 as? TokenizerError, .unsupportedModel("bert")) }

        md = spmMetadata(); md["tokenizer.ggml.tokens"] = nil
        XCTAssertThrowsError(try BPETokenizer(ggufMetadata: md)) {
            XCTAssertEqual($0 as? TokenizerError, .missingMetadata(key: "tokenizer.ggml.tokens"))
        }
        md = spmMetadata(); md["tokenizer.ggml.tokens"] = .uint32(3)
        XCTAssertThrowsError(try BPETokenizer(ggufMetadata: md)) {
            XCTAssertEqual($0 as? TokenizerError, .badMetadata(key: "tokenizer.ggml.tokens", expected: "an array of strings"))
        }
        md = spmMetadata(); md["tokenizer.ggml.bos_token_id"] = .uint32(100_000)
        XCTAssertThrowsError(try BPETokenizer(ggufMetadata: md)) {
            XCTAssertEqual($0 as? TokenizerError, .tokenIDOutOfRange(key: "bos", id: 100_000, vocabSize: 271))
        }
        md = spmMetadata(); md["tokenizer.ggml.token_type"] = .array(.int32, [.int32(1)])
        XCTAssertThrowsError(try BPETokenizer(ggufMetadata: md)) {
            XCTAssertEqual($0 as? TokenizerError, .lengthMismatch(key: "tokenizer.ggml.token_type", count: 1, expected: 271))
        }
        md = spmMetadata(); md["tokenizer.ggml.tokens"] = strings(["a", "b", "a"])
        md["tokenizer.ggml.token_type"] = nil; md["tokenizer.ggml.scores"] = nil
        XCTAssertThrowsError(try BPETokenizer(ggufMetadata: md)) {
            XCTAssertEqual($0 as? TokenizerError, .duplicateToken("a", first: 0, second: 2))
        }
        // gpt2 without merges, and with an unknown pre.
        var bpe: [String: GGUFValue] = ["tokenizer.ggml.model": .string("gpt2"), "tokenizer.ggml.tokens": strings(["a", "b"])]
        XCTAssertThrowsError(try BPETokenizer(ggufMetadata: bpe)) {
            XCTAssertEqual($0 as? TokenizerError, .missingMetadata(key: "tokenizer.ggml.merges"))
        }
        bpe["tokenizer.ggml.merges"] = strings(["a b"])
        bpe["tokenizer.ggml.pre"] = .string("tekken")
        XCTAssertThrowsError(try BPETokenizer(ggufMetadata: bpe)) {
            XCTAssertEqual($0 as? TokenizerError, .unsupportedPreTokenizer("tekken"))
        }
        // add_bos_token true without a BOS id.
        bpe["tokenizer.ggml.pre"] = .string("gpt-2")
        bpe["tokenizer.ggml.add_bos_token"] = .bool(true)
        XCTAssertThrowsError(try BPETokenizer(ggufMetadata: bpe)) { XCTAssertEqual($0 as? TokenizerError, .missingBOS) }
    }

    /// Merges whose result is missing from the vocabulary, and bytes without a token, never crash.
    func testIncompleteByteLevelVocabulary() throws {
        let md: [String: GGUFValue] = ["tokenizer.ggml.model": .string("gpt2"), "tokenizer.ggml.pre": .string("gpt2"),
                                       "tokenizer.ggml.tokens": strings(["a", "b", "c"]),
                                       "tokenizer.ggml.merges": strings(["a b", "ab c"])]
        let tok = try BPETokenizer(ggufMetadata: md)
        XCTAssertEqual(tok.encode("abc"), [0, 1, 2], "llama.cpp falls back to the single-character tokens")
        XCTAssertEqual(tok.encode("a é"), [0], "bytes with no token are dropped, as in llama.cpp")
    }
}
