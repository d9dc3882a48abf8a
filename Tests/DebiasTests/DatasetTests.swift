import XCTest
@testable import Debias

final class DatasetTests: XCTestCase {
    func testParsesStandardAndExtraFieldsInOrder() throws {
        let text = """
        {"prompt": "The cook sighed because", "kind": "bias", "scale": "word", "profession": "cook", "split": "dev", "id": 1.50, "tags": ["a", {"b": null}], "note": "caf\\u00e9 \\ud83d\\ude00"}

        {"kind":"hint","hint":"female","prompt":"The cook lost her keys because"}\r
        {"prompt": "The river flows into the", "kind": "neutral", "split": "test"}
        """
        let ps = try Dataset.parse(text, name: "mine.jsonl")
        XCTAssertEqual(ps.count, 3)
        XCTAssertEqual(ps[0], EvalPrompt(prompt: "The cook sighed because", kind: .bias, scale: .word, profession: "cook", split: .dev,
                                         extra: [ExtraField(key: "id", rawJSON: "1.50"), ExtraField(key: "tags", rawJSON: "[\"a\", {\"b\": null}]"),
                                                 ExtraField(key: "note", rawJSON: "\"caf\\u00e9 \\ud83d\\ude00\"")],
                                         origin: "mine.jsonl:1"))
        XCTAssertEqual(ps[1].hint, .female); XCTAssertEqual(ps[1].origin, "mine.jsonl:3")
        XCTAssertNil(ps[1].split)
        XCTAssertEqual(ps[2].kind, .neutral)
        XCTAssertEqual(try Dataset.select(ps, split: .test).map(\.prompt), ["The river flows into the"])
        XCTAssertThrowsError(try Dataset.select(ps, split: .train)) { XCTAssertEqual($0 as? DatasetError, .noPromptsInSplit(split: "train")) }
        // Escapes in standard fields are decoded.
        let e = try Dataset.parse(#"{"prompt": "caf\u00e9 \"x\"\n", "kind": "neutral"}"#, name: "e")
        XCTAssertEqual(e[0].prompt, "café \"x\"\n")
    }

    func testErrorsNameFileAndLine() {
        func error(_ text: String) -> DatasetError? {
            do { _ = try Dataset.parse(text, name: "f.jsonl"); return nil } catch { return error as? DatasetError }
        }
        let ok = #"{"prompt": "p", "kind": "neutral"}"#
        XCTAssertEqual(error(ok + "\n" + #"{"prompt": "p", "kind": "bias"}"#), .missingKey(file: "f.jsonl", line: 2, key: "scale", kind: "bias"))
        XCTAssertEqual(error(#"{"prompt": "p", "kind": "hint"}"#), .missingKey(file: "f.jsonl", line: 1, key: "hint", kind: "hint"))
        XCTAssertEqual(error(#"{"kind": "hint"}"#), .missingKey(file: "f.jsonl", line: 1, key: "prompt", kind: nil))
        XCTAssertEqual(error(#"{"prompt": "p", "kind": "hint", "hint": "male", "scale": "word"}"#), .keyNotAllowed(file: "f.jsonl", line: 1, key: "scale", kind: "hint"))
        XCTAssertEqual(error(#"{"prompt": "p", "kind": "bias", "scale": "word", "hint": "male"}"#), .keyNotAllowed(file: "f.jsonl", line: 1, key: "hint", kind: "bias"))
        XCTAssertEqual(error(#"{"prompt": "p", "kind": "neutral", "profession": "cook"}"#), .keyNotAllowed(file: "f.jsonl", line: 1, key: "profession", kind: "neutral"))
        XCTAssertEqual(error(#"{"prompt": "p", "kind": "Bias"}"#), .invalidValue(file: "f.jsonl", line: 1, key: "kind", value: "Bias", allowed: ["bias", "hint", "neutral"]))
        XCTAssertEqual(error(#"{"prompt": "p", "kind": "bias", "scale": "clause"}"#), .invalidValue(file: "f.jsonl", line: 1, key: "scale", value: "clause", allowed: ["word", "phrase", "sentence"]))
        XCTAssertEqual(error(#"{"prompt": "p", "kind": "neutral", "split": "val"}"#), .invalidValue(file: "f.jsonl", line: 1, key: "split", value: "val", allowed: ["train", "dev", "test"]))
        XCTAssertEqual(error(#"{"prompt": 3, "kind": "neutral"}"#), .notAString(file: "f.jsonl", line: 1, key: "prompt"))
        XCTAssertEqual(error(#"{"prompt": "", "kind": "neutral"}"#), .emptyPrompt(file: "f.jsonl", line: 1))
        XCTAssertEqual(error(#"{"prompt": "p", "kind": "neutral", "p_he": 0.5}"#), .reservedKey(file: "f.jsonl", line: 1, key: "p_he"))
        XCTAssertEqual(error(#"{"prompt": "p", "prompt": "q", "kind": "neutral"}"#), .duplicateKey(file: "f.jsonl", line: 1, key: "prompt"))
        XCTAssertEqual(error(#"["prompt"]"#), .notAnObject(file: "f.jsonl", line: 1))
        XCTAssertEqual(error("\n  \n"), .noPrompts(file: "f.jsonl"))
        // Syntax errors carry a column.
        XCTAssertEqual(error(ok + "\n" + ok + "\n" + #"{"prompt": "p" "kind": "neutral"}"#),
                       .syntax(file: "f.jsonl", line: 3, column: 16, message: "expected ',' or '}', found '\"'"))
        for bad in [#"{"prompt": "p", "kind": "neutral"} x"#, #"{"prompt": "p, "kind": "neutral"}"#, #"{"prompt": "p", "kind": "neutral", "x": 01}"#,
                    #"{"prompt": "p", "kind": "neutral", "x": tru}"#, #"{"prompt": "p", "kind": "neutral", "x": [1,]}"#,
                    #"{"prompt": "\q", "kind": "neutral"}"#, #"{"prompt": "\ud800", "kind": "neutral"}"#, #"{"prompt": "p", "kind": "neutral""#,
                    "{\"prompt\": \"a\tb\", \"kind\": \"neutral\"}", #"{"prompt": "p", "kind": "neutral", "x": -}"#, #"{"prompt": "p", "kind": "neutral", "x": 1.}"#] {
            guard case .syntax(_, 1, _, _)? = error(bad) else { return XCTFail("accepted or wrong error for \(bad): \(String(describing: error(bad)))") }
        }
        XCTAssertEqual(DatasetError.missingKey(file: "f.jsonl", line: 2, key: "scale", kind: "bias").description, "f.jsonl:2: \"scale\" is required for kind \"bias\"")
    }

    func testLoadReportsUnreadableAndNonUTF8Files() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("debias-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        XCTAssertThrowsError(try Dataset.load(dir.appendingPathComponent("missing.jsonl"))) {
            guard case .unreadable? = $0 as? DatasetError else { return XCTFail("\($0)") }
        }
        let bin = dir.appendingPathComponent("bin.jsonl")
        try Data([0xFF, 0xFE, 0x7B]).write(to: bin)
        XCTAssertThrowsError(try Dataset.load(bin)) { XCTAssertEqual($0 as? DatasetError, .notUTF8(file: bin.path)) }
    }
}
