import XCTest
@testable import Debias

/// `create --max-prompts N`: the seeded, stratified subset of every (split, kind), on the
/// built-in data (9 bias templates × 114 training professions, 3 hint templates × 2 genders).
final class PromptSubsetTests: XCTestCase {
    func count(_ ps: [EvalPrompt], _ split: Split, _ kind: PromptKind) -> Int {
        ps.filter { $0.split == split && $0.kind == kind }.count
    }

    func testSubsetIsStratifiedExactAndInFileOrder() throws {
        let all = Dataset.builtIn()
        let (sub, groups) = PromptSubset.select(all, maxPerGroup: 90, seed: 7)
        // exactly N per (split, kind) when there are more; small groups whole
        XCTAssertEqual(count(sub, .train, .bias), 90)
        XCTAssertEqual(count(sub, .test, .bias), 90)
        XCTAssertEqual(count(sub, .train, .hint), 90)
        XCTAssertEqual(count(sub, .train, .neutral), 24)
        XCTAssertEqual(count(sub, .dev, .neutral), 12)
        let trainBias = try XCTUnwrap(groups.first { $0.split == "train" && $0.kind == .bias })
        XCTAssertEqual(trainBias, PromptSubset.Group(split: "train", kind: .bias, kept: 90, available: 1026, strata: 9))
        // every bias template keeps its share: 1,026 = 9 × 114, so 10 each
        var perTemplate: [String: Int] = [:]
        for p in sub where p.split == .train && p.kind == .bias { perTemplate[PromptSubset.stratum(of: p), default: 0] += 1 }
        XCTAssertEqual(perTemplate.count, 9)
        XCTAssertTrue(perTemplate.values.allSatisfy { $0 == 10 }, "\(perTemplate)")
        // hint: 3 templates × 2 genders of 114 each → 15 each, so the genders balance
        let hints = sub.filter { $0.split == .train && $0.kind == .hint }
        XCTAssertEqual(hints.filter { $0.hint == .male }.count, 45)
        XCTAssertEqual(hints.filter { $0.hint == .female }.count, 45)
        // professions are drawn, not the first ones of the file
        XCTAssertGreaterThan(Set(sub.filter { $0.split == .train && $0.kind == .bias }.compactMap(\.profession)).count, 50)
        // a subsequence of the input, in the input's order
        var it = all.makeIterator()
        for p in sub {
            var found = false
            while let q = it.next() { if q == p { found = true; break } }
            XCTAssertTrue(found, "subset is not in file order at \(p.origin)")
        }
    }

    func testSubsetIsDeterministicInTheSeedAndUnevenSharesAddUp() {
        let all = Dataset.builtIn()
        let a = PromptSubset.select(all, maxPerGroup: 16, seed: 3).prompts
        let b = PromptSubset.select(all, maxPerGroup: 16, seed: 3).prompts
        let c = PromptSubset.select(all, maxPerGroup: 16, seed: 4).prompts
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c)
        // 16 over 9 equal templates: 7 of them get 2, 2 get 1 (largest remainder, first seen first)
        var perTemplate: [String: Int] = [:]
        for p in a where p.split == .test && p.kind == .bias { perTemplate[PromptSubset.stratum(of: p), default: 0] += 1 }
        XCTAssertEqual(perTemplate.values.reduce(0, +), 16)
        XCTAssertEqual(perTemplate.values.sorted(), [1, 1, 2, 2, 2, 2, 2, 2, 2])
        // The test split's subset does not depend on the training data around it.
        let testOnly = all.filter { $0.split == .test }
        XCTAssertEqual(PromptSubset.select(testOnly, maxPerGroup: 16, seed: 3).prompts, a.filter { $0.split == .test })
        // N larger than every group: everything, unchanged
        XCTAssertEqual(PromptSubset.select(all, maxPerGroup: 5000, seed: 3).prompts, all)
    }
}
