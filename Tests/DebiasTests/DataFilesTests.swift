import XCTest
import TestSupport
@testable import Debias

/// The shipped evaluation data (samples/data) against its schema and the rules in samples/data/README.md.
final class DataFilesTests: XCTestCase {
    let dataDir = repositoryRoot.appendingPathComponent("samples/data")

    func load(_ name: String) throws -> [EvalPrompt] { try Dataset.load(dataDir.appendingPathComponent(name)) }

    func testEmbeddedCopyMatchesTheFilesByteForByte() throws {
        XCTAssertEqual(BuiltInData.files.map(\.name), ["genbias.jsonl", "genhint.jsonl", "neutral.jsonl"])
        for (name, text) in BuiltInData.files {
            let disk = try String(contentsOf: dataDir.appendingPathComponent(name), encoding: .utf8)
            XCTAssertTrue(disk == text, "\(name): Sources/Debias/BuiltInData.swift is out of date; run samples/make-eval-data.py")
        }
        XCTAssertEqual(Dataset.builtIn().count, 2556 + 1704 + 60)
    }

    func testCountsPerSplitAndKind() throws {
        let bias = try load("genbias.jsonl"), hint = try load("genhint.jsonl"), neutral = try load("neutral.jsonl")
        XCTAssertTrue(bias.allSatisfy { $0.kind == .bias && $0.profession != nil && $0.split != nil })
        XCTAssertTrue(hint.allSatisfy { $0.kind == .hint && $0.profession != nil && $0.split != nil })
        XCTAssertTrue(neutral.allSatisfy { $0.kind == .neutral && $0.split != nil })
        func count(_ ps: [EvalPrompt], _ s: Split) -> Int { ps.filter { $0.split == s }.count }
        // 114 / 57 / 113 professions × 9 bias, × 6 hint prompts; neutral 24 / 12 / 24.
        XCTAssertEqual([Split.train, .dev, .test].map { count(bias, $0) }, [1026, 513, 1017])
        XCTAssertEqual([Split.train, .dev, .test].map { count(hint, $0) }, [684, 342, 678])
        XCTAssertEqual([Split.train, .dev, .test].map { count(neutral, $0) }, [24, 12, 24])
        for s in BiasScale.allCases { XCTAssertEqual(bias.filter { $0.scale == s }.count, 284 * 3) }
        XCTAssertEqual(Set(bias.map(\.prompt)).count, bias.count, "duplicate bias prompts")
        XCTAssertEqual(Set(hint.map(\.prompt)).count, hint.count, "duplicate hint prompts")
    }

    func testSplitIsByProfessionAndCoversEveryTemplate() throws {
        let all = try load("genbias.jsonl") + load("genhint.jsonl")
        var splitOf: [String: Split] = [:]
        for p in all {
            let prof = p.profession!
            if let s = splitOf[prof] { XCTAssertEqual(s, p.split, "\(prof) is in two splits") } else { splitOf[prof] = p.split }
            XCTAssertTrue(p.prompt.hasPrefix("The \(prof) "), p.prompt)
            XCTAssertFalse(prof.contains("_"))
        }
        XCTAssertEqual(splitOf.count, 284)
        XCTAssertEqual(Dictionary(grouping: splitOf.values, by: { $0 }).mapValues(\.count), [.train: 114, .dev: 57, .test: 113])
        // Words excluded by the hand filter never appear.
        for w in ["actress", "salesman", "waiter", "nun", "monk", "headmaster", "housewife", "confesses", "soft spoken"] {
            XCTAssertNil(splitOf[w], "\(w) should have been filtered out")
        }
        // Every profession has each of the 9 bias templates once and each hint template with his and her.
        let template = { (p: EvalPrompt) in p.extra.first { $0.key == "template" }!.rawJSON }
        for (prof, ps) in Dictionary(grouping: all, by: { $0.profession! }) {
            let b = ps.filter { $0.kind == .bias }, h = ps.filter { $0.kind == .hint }
            XCTAssertEqual(Set(b.map(template)).count, 9, prof)
            XCTAssertEqual(Set(b.map { "\($0.scale!)" + template($0) }).count, 9)
            XCTAssertEqual(h.count, 6, prof)
            for (t, pair) in Dictionary(grouping: h, by: template) {
                XCTAssertEqual(Set(pair.map(\.hint!)), [.male, .female], "\(prof) \(t)")
                let male = pair.first { $0.hint == .male }!.prompt, female = pair.first { $0.hint == .female }!.prompt
                XCTAssertTrue(male.contains(" his ") && !male.contains(" her "), male)
                XCTAssertEqual(male.replacingOccurrences(of: " his ", with: " her "), female)
            }
        }
        for p in all where p.kind == .bias { XCTAssertTrue(p.prompt.hasSuffix(" because"), p.prompt) }
    }

    func testNeutralPromptsHaveNoPerson() throws {
        let words = ["he", "she", "his", "her", "him", "man", "woman", "person", "people"]
        for p in try load("neutral.jsonl") {
            let tokens = Set(p.prompt.lowercased().split { !$0.isLetter }.map(String.init))
            XCTAssertTrue(tokens.isDisjoint(with: words), p.prompt)
        }
    }
}
