import XCTest
@testable import Debias

/// A model whose logits depend only on the sequence's last token: logits = table[last].
final class TableModel: NextTokenModel {
    let vocabularySize: Int
    let table: [[Float]]
    var calls: [[[Int]]] = []
    init(_ table: [[Float]]) { self.table = table; self.vocabularySize = table[0].count }
    func forEachNextTokenLogits(_ sequences: [[Int]], body: (Int, UnsafeBufferPointer<Float>) throws -> Void) throws {
        calls.append(sequences)
        for (i, s) in sequences.enumerated().reversed() { try table[s.last!].withUnsafeBufferPointer { try body(i, $0) } }
    }
}

final class EvaluatorTests: XCTestCase {
    // Vocabulary of 4; he = 1, she = 2. Logits ln(1, 2, 3, 4) → softmax (0.1, 0.2, 0.3, 0.4).
    let ln: [Float] = [log(1), log(2), log(3), log(4)]
    // ln(4, 3, 2, 1) → (0.4, 0.3, 0.2, 0.1); shifting logits by a constant changes nothing.
    let rev: [Float] = [log(4) + 7, log(3) + 7, log(2) + 7, log(1) + 7]

    /// Words → ids: "a" → 0, "b" → 3, anything else → 2; a prompt is its words.
    func encoder(_ s: String) -> [Int] { s.split(separator: " ").map { $0 == "a" ? 0 : $0 == "b" ? 3 : 2 } }

    func prompts() -> [EvalPrompt] {
        [EvalPrompt(prompt: "x a", kind: .bias, scale: .word, profession: "nurse"),
         EvalPrompt(prompt: "x x x b", kind: .bias, scale: .phrase, profession: "nurse"),
         EvalPrompt(prompt: "a", kind: .hint, hint: .female, profession: "cook"),
         EvalPrompt(prompt: "b b", kind: .neutral, extra: [ExtraField(key: "id", rawJSON: "7.50")])]
    }

    func testProbabilitiesScoresAndPromptOrder() throws {
        let model = TableModel([ln, ln, ln, rev])
        let ev = Evaluator(he: 1, she: 2, batchSize: 2, encode: encoder)
        let ps = prompts()
        let run = try ev.run(model, prompts: ps, tokens: try ev.encodeAll(ps))
        // last token a (0) → ln row: P(he) = 0.2, P(she) = 0.3; last token b (3) → rev row: 0.3, 0.2
        let want: [(Double, Double)] = [(0.2, 0.3), (0.3, 0.2), (0.2, 0.3), (0.3, 0.2)]
        for (p, w) in zip(run.probabilities, want) {
            XCTAssertEqual(p.he, w.0, accuracy: 1e-6); XCTAssertEqual(p.she, w.1, accuracy: 1e-6)
        }
        // AFGB = (0.1 + 0.1)/2; UB = −1·(0.2 − 0.3) = 0.1
        XCTAssertEqual(run.scores.afgb!, 0.1, accuracy: 1e-6)
        XCTAssertEqual(run.scores.ub!, 0.1, accuracy: 1e-6)
        // Batches of 2 in lexicographic token order: [0] "a", [2, 0] "x a" | [2, 2, 2, 3], [3, 3]
        XCTAssertEqual(model.calls, [[[0], [2, 0]], [[2, 2, 2, 3], [3, 3]]])
        // Only the neutral prompt keeps its distribution: log(0.4, 0.3, 0.2, 0.1)
        XCTAssertEqual(Array(run.neutralLogProbabilities.keys), [3])
        for (a, b) in zip(run.neutralLogProbabilities[3]!, [0.4, 0.3, 0.2, 0.1].map { Float(log($0)) }) { XCTAssertEqual(a, b, accuracy: 1e-6) }
    }

    func testComparisonKLAndPerPromptOutput() throws {
        let ev = Evaluator(he: 1, she: 2, encode: encoder)
        let ps = prompts()
        let tokens = try ev.encodeAll(ps)
        let base = try ev.run(TableModel([ln, ln, ln, rev]), prompts: ps, tokens: tokens)
        // Patched: every row uniform. KL((.4,.3,.2,.1) ‖ uniform) = Σ p ln(4p)
        let uniform: [Float] = [0, 0, 0, 0]
        let patched = try ev.run(TableModel([uniform, uniform, uniform, uniform]), prompts: ps, tokens: tokens)
        let c = try EvalComparison(base: base, patched: patched)
        let want = [0.4, 0.3, 0.2, 0.1].reduce(0.0) { $0 + $1 * log(4 * $1) }   // 0.10644…
        XCTAssertEqual(c.meanKL!, want, accuracy: 1e-6)
        XCTAssertEqual(patched.scores.afgb!, 0, accuracy: 1e-9)
        let lines = PerPromptOutput.lines(run: patched, comparison: c).split(separator: "\n")
        XCTAssertEqual(lines.count, 4)
        XCTAssertEqual(String(lines[0]), "{\"prompt\": \"x a\", \"kind\": \"bias\", \"scale\": \"word\", \"profession\": \"nurse\", \"p_he\": 0.25, \"p_she\": 0.25, \"base_p_he\": \(base.probabilities[0].he), \"base_p_she\": \(base.probabilities[0].she)}")
        // The extra field is carried verbatim (7.50 stays 7.50) and the neutral line has its KL.
        XCTAssertTrue(lines[3].hasPrefix("{\"prompt\": \"b b\", \"kind\": \"neutral\", \"id\": 7.50, \"p_he\": 0.25"), String(lines[3]))
        XCTAssertTrue(lines[3].contains("\"kl\": "))
    }

    func testPrefixIsPrependedVerbatim() throws {
        var seen: [String] = []
        let ev = Evaluator(he: 1, she: 2, prefix: "Be fair.\n", encode: { seen.append($0); return [0] })
        _ = try ev.encodeAll([EvalPrompt(prompt: "The cook", kind: .bias, scale: .word)])
        XCTAssertEqual(seen, ["Be fair.\nThe cook"])
    }

    func testBadTokensAndLogitCountsAreErrors() throws {
        let ev = Evaluator(he: 1, she: 9, encode: encoder)
        let ps = [EvalPrompt(prompt: "a", kind: .bias, scale: .word)]
        XCTAssertThrowsError(try ev.run(TableModel([ln, ln, ln, ln]), prompts: ps, tokens: [[0]])) {
            XCTAssertEqual($0 as? EvaluationError, .tokenOutOfRange(token: 9, vocabularySize: 4))
        }
        let empty = Evaluator(he: 1, she: 2, encode: { _ in [] })
        XCTAssertThrowsError(try empty.encodeAll(ps)) { XCTAssertTrue($0 is EvaluationError) }
    }
}
