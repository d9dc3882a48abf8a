import XCTest
@testable import Tokenizer

/// The hand-written scanners against the patterns run verbatim by Python's `regex`
/// (Fixtures/pretokenizer_goldens.json).
final class PreTokenizerTests: XCTestCase {
    func pieces(_ pre: PreTokenizer, _ text: String) -> [String] {
        let cps = text.unicodeScalars.map(\.value)
        return pre.split(cps).map { r in
            var v = String.UnicodeScalarView()
            for i in r { v.append(Unicode.Scalar(cps[i])!) }
            return String(v)
        }
    }

    func testScannersMatchRegexGoldens() throws {
        try checkGoldens("pretokenizer_goldens", minimum: 50)
    }

    /// 400 seeded random strings over awkward characters (apostrophes, mixed whitespace, NEL,
    /// exotic digits, combining marks, ZWJ emoji).
    func testScannersMatchRegexOnRandomStrings() throws {
        try checkGoldens("pretokenizer_fuzz_goldens", minimum: 400)
    }

    func checkGoldens(_ name: String, minimum: Int) throws {
        let root = try XCTUnwrap(try fixture(name) as? [String: Any])
        let cases = try XCTUnwrap(root["cases"] as? [[String: Any]])
        XCTAssertGreaterThanOrEqual(cases.count, minimum)
        let pres: [(String, PreTokenizer)] = [
            ("gpt2", PreTokenizer(name: "gpt2", steps: [.gpt2])),
            ("llama3", PreTokenizer(name: "llama3", steps: [.llama3(maxDigits: 3)])),
            ("qwen2", PreTokenizer(name: "qwen2", steps: [.llama3(maxDigits: 1)])),
            ("smollm", try PreTokenizer.gguf("smollm")),
        ]
        var failures = 0
        for c in cases {
            let text = try XCTUnwrap(c["text"] as? String)
            for (key, pre) in pres {
                let want = try XCTUnwrap(c[key] as? [String])
                let got = pieces(pre, text)
                if got != want {
                    failures += 1
                    XCTFail("\(key) \(debugQuoted(text)): got \(got.map(debugQuoted)), want \(want.map(debugQuoted))")
                }
            }
        }
        XCTAssertEqual(failures, 0)
    }

    func testHandPickedSplits() throws {
        let smollm = try PreTokenizer.gguf("smollm")
        XCTAssertEqual(pieces(smollm, "x 12345"), ["x", " ", "1", "2", "3", "4", "5"])
        XCTAssertEqual(pieces(smollm, "a  b"), ["a", " ", " b"])
        XCTAssertEqual(pieces(smollm, "he's"), ["he", "'s"])
        let llama3 = try PreTokenizer.gguf("llama-bpe")
        XCTAssertEqual(pieces(llama3, "12345 IT'S"), ["123", "45", " IT", "'S"])
        XCTAssertEqual(pieces(llama3, "x\n\n  y"), ["x", "\n\n", " ", " y"])
        let def = try PreTokenizer.gguf(nil)
        XCTAssertEqual(def.name, "default")
        XCTAssertEqual(pieces(def, "a+1234"), ["a", "+", "123", "4"])
    }

    func testUnknownPreIsAnError() {
        XCTAssertThrowsError(try PreTokenizer.gguf("no-such-pre")) { e in
            XCTAssertEqual(e as? TokenizerError, .unsupportedPreTokenizer("no-such-pre"))
            XCTAssertTrue("\(e)".contains("smollm"), "message lists the supported values: \(e)")
        }
    }

    func testByteEncoderTable() {
        let t = ByteEncoder.byteToScalar
        XCTAssertEqual(Set(t).count, 256)
        XCTAssertEqual(t[0x20], "Ġ")
        XCTAssertEqual(t[0x0A], "Ċ")
        XCTAssertEqual(t[0x41], "A")
        XCTAssertEqual(t[0xAD], "Ń")
        var back: [UInt8] = []
        ByteEncoder.decode(ByteEncoder.encode(0...255), into: &back)
        XCTAssertEqual(back, Array(0...255))
    }
}
