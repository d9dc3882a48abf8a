import XCTest
import Foundation
import ModelFormats
@testable import Tokenizer
import TestSupport

/// The sample model's own tokenizer (GGUF metadata: gpt2 BPE, pre "smollm", no BOS).
final class SmolLMTokenizerTests: XCTestCase {
    func testSettingsFromMetadata() throws {
        let tok = try SampleTokenizer.tokenizer()
        XCTAssertEqual(tok.vocabSize, 49152)
        XCTAssertEqual(tok.kind, .byteLevelBPE)
        XCTAssertEqual(tok.preTokenizer.name, "smollm")
        XCTAssertEqual(tok.bosID, 1)
        XCTAssertEqual(tok.eosID, 2)
        XCTAssertFalse(tok.addsBOS, "SmolLM2's GGUF sets add_bos_token=false")
    }

    /// llama.cpp's ids for the reference prompts, and the two probe words.
    func testReferenceTokenIDs() throws {
        let tok = try SampleTokenizer.tokenizer()
        let ref = try referenceJSON()
        let prompts = try XCTUnwrap(ref["prompts"] as? [[String: Any]])
        XCTAssertGreaterThan(prompts.count, 0)
        for p in prompts {
            let text = try XCTUnwrap(p["prompt"] as? String)
            let want = try XCTUnwrap(p["token_ids"] as? [Int]).map { Int32($0) }
            XCTAssertEqual(tok.encode(text), want, text)
            let strings = try XCTUnwrap(p["tokens"] as? [String])
            XCTAssertEqual(want.map(tok.tokenString), strings, text)
        }
        let words = try XCTUnwrap(ref["token_ids"] as? [String: Int])
        for (w, id) in words { XCTAssertEqual(try tok.singleTokenID(for: w), Int32(id), w) }
        XCTAssertEqual(try tok.singleTokenID(for: " he"), 384)
        XCTAssertEqual(try tok.singleTokenID(for: " she"), 1041)
    }

    /// Unicode, digits, whitespace runs, code, contractions, special tokens: ids from HF
    /// tokenizers built from the same vocabulary (Fixtures/smollm2_goldens.json).
    func testGoldens() throws {
        let tok = try SampleTokenizer.tokenizer()
        let cases = try smollmGoldens()
        XCTAssertGreaterThan(cases.count, 50)
        for c in cases {
            let got = tok.encode(c.text)
            XCTAssertEqual(got, c.ids, "\(debugQuoted(c.text)): got \(got.map(tok.tokenString)), want \(c.ids.map(tok.tokenString))")
            XCTAssertEqual(tok.decode(got), c.text, "round trip of \(debugQuoted(c.text))")
        }
    }

    /// 400 seeded random strings mixing scripts, whitespace kinds, digits, emoji and special tokens.
    func testRandomStringGoldens() throws {
        let tok = try SampleTokenizer.tokenizer()
        let root = try XCTUnwrap(try fixture("smollm2_fuzz_goldens") as? [String: Any])
        let cases = try XCTUnwrap(root["cases"] as? [[String: Any]])
        XCTAssertEqual(cases.count, 400)
        var failures = 0
        for c in cases {
            let text = try XCTUnwrap(c["text"] as? String)
            let want = try XCTUnwrap(c["ids"] as? [Int]).map { Int32($0) }
            let got = tok.encode(text)
            if got != want {
                failures += 1
                if failures <= 5 { XCTFail("\(debugQuoted(text)): got \(got.map(tok.tokenString)), want \(want.map(tok.tokenString))") }
            }
            XCTAssertEqual(tok.decode(got), text)
        }
        XCTAssertEqual(failures, 0)
    }

    func testSpecialTokens() throws {
        let tok = try SampleTokenizer.tokenizer()
        XCTAssertEqual(tok.encode("<|im_start|>user\nHi<|im_end|>"), [1, 4093, 198, 26843, 2])
        XCTAssertEqual(tok.tokenString(2), "<|im_end|>")
        XCTAssertEqual(tok.decode([1, 4093, 198, 26843, 2], skipSpecial: true), "user\nHi")
        // With parseSpecial off the marker is plain text.
        let plain = tok.encode("<|im_end|>", addBOS: false, parseSpecial: false)
        XCTAssertGreaterThan(plain.count, 1)
        XCTAssertEqual(tok.decode(plain), "<|im_end|>")
        XCTAssertEqual(tok.encode("", addBOS: true), [1])
        XCTAssertEqual(tok.encode(""), [])
    }

    func testLookupsAndErrors() throws {
        let tok = try SampleTokenizer.tokenizer()
        XCTAssertEqual(tok.id(forToken: "Ġhe"), 384)
        XCTAssertEqual(tok.id(forToken: " he"), 384)
        XCTAssertEqual(tok.id(forToken: "<|im_start|>"), 1)
        XCTAssertNil(tok.id(forToken: "no such token at all"))
        XCTAssertEqual(tok.tokenString(384), " he")
        XCTAssertEqual(tok.tokenString(-1), "<invalid id -1>")
        XCTAssertEqual(tok.tokenString(49152), "<invalid id 49152>")
        XCTAssertThrowsError(try tok.singleTokenID(for: " nurse-like")) { e in
            guard case TokenizerError.notSingleToken(let w, let toks, let ids) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(w, " nurse-like")
            XCTAssertEqual(toks.joined(), " nurse-like")
            XCTAssertEqual(ids.count, toks.count)
            XCTAssertTrue("\(e)".contains("\" nurse\""), "\(e)")
        }
        XCTAssertThrowsError(try tok.singleTokenID(for: ""))
        XCTAssertEqual(tok.decode([-5, 99999]), "", "ids outside the vocabulary decode to nothing")
    }

    /// 4000 short prompts, cold cache for the first pass.
    func testSpeed() throws {
        let meta = try sampleMetadata()
        let t0 = Date()
        let tok = try BPETokenizer(ggufMetadata: meta)
        let build = Date().timeIntervalSince(t0)
        let subjects = ["nurse", "mechanic", "doctor", "engineer", "teacher", "pilot", "secretary", "CEO",
                        "librarian", "plumber", "dancer", "carpenter", "surgeon", "receptionist", "firefighter", "baker"]
        let verbs = ["smiled because", "said that", "was late, so", "asked whether", "left early since"]
        var prompts: [String] = []
        for i in 0..<4000 {
            prompts.append("The \(subjects[i % subjects.count]) \(verbs[(i / 16) % verbs.count]) (case \(i))")
        }
        let t1 = Date()
        var total = 0
        for p in prompts { total += tok.encode(p).count }
        let elapsed = Date().timeIntervalSince(t1)
        print("tokenizer: build \(String(format: "%.3f", build)) s; 4000 prompts, \(total) tokens in \(String(format: "%.3f", elapsed)) s")
        XCTAssertGreaterThan(total, 4000 * 8)
        #if !DEBUG
        XCTAssertLessThan(elapsed, 0.5)
        #endif
    }
}

final class LoadTokenizerTests: XCTestCase {
    func testLoadTokenizerForGGUFCheckpoint() throws {
        let ckpt = try GGUFCheckpoint(url: try requireSampleModel())
        let tok = try loadTokenizer(for: ckpt)
        XCTAssertEqual(tok.vocabSize, 49152)
        XCTAssertEqual(tok.encode("The nurse smiled because"), [504, 12996, 18628, 975])
    }

    func testDirectoryWithoutTokenizerJSON() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("empty-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        XCTAssertThrowsError(try loadTokenizer(directory: dir)) { e in
            XCTAssertTrue("\(e)".contains("tokenizer.json"), "\(e)")
        }
    }
}
