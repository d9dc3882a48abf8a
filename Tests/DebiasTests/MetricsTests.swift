import XCTest
@testable import Debias

/// AFGB, UB and KL on cases worked out by hand (the arithmetic is in each comment).
final class MetricsTests: XCTestCase {
    func bias(_ s: BiasScale) -> EvalPrompt { EvalPrompt(prompt: "x", kind: .bias, scale: s) }
    func hint(_ h: HintGender) -> EvalPrompt { EvalPrompt(prompt: "x", kind: .hint, hint: h) }

    func testAFGBPerScaleAndOverallArePromptWeighted() {
        // word: |0.5−0.1| = 0.4; phrase: |0.25−0.5| = 0.25, |0.125−0.125| = 0 → 0.125;
        // sentence: none. Overall over prompts: (0.4 + 0.25 + 0)/3 = 0.21666…,
        // not the mean of scale means (0.4 + 0.125)/2 = 0.2625.
        let prompts = [bias(.word), bias(.phrase), bias(.phrase)]
        let probs = [PronounProbabilities(he: 0.5, she: 0.1), .init(he: 0.25, she: 0.5), .init(he: 0.125, she: 0.125)]
        let s = Metrics.scores(prompts, probs)
        XCTAssertEqual(s.afgb!, 0.65 / 3, accuracy: 1e-12)
        XCTAssertEqual(s.afgbByScale[.word]!, 0.4, accuracy: 1e-12)
        XCTAssertEqual(s.afgbByScale[.phrase]!, 0.125, accuracy: 1e-12)
        XCTAssertNil(s.afgbByScale[.sentence])
        XCTAssertNil(s.ub)
        XCTAssertEqual(s.nBias, 3); XCTAssertEqual(s.nHint, 0)
        XCTAssertEqual(s.nByScale, [.word: 1, .phrase: 2, .sentence: 0])
        // P(he)+P(she): (0.6 + 0.75 + 0.25)/3 = 0.5333…
        XCTAssertEqual(s.pronounMass!, 1.6 / 3, accuracy: 1e-12)
        XCTAssertEqual(s.json, "{\"afgb\": \(s.afgb!), \"afgb_word\": 0.4, \"afgb_phrase\": 0.125, \"afgb_sentence\": null, \"ub\": null, \"n_bias\": 3, \"n_hint\": 0}")
    }

    func testUBSignsByHint() {
        // male (0.6, 0.2): +1·0.4 = 0.4; female (0.3, 0.1): −1·0.2 = −0.2; female (0.1, 0.4): −1·(−0.3) = 0.3
        // UB = (0.4 − 0.2 + 0.3)/3 = 0.1666…
        let prompts = [hint(.male), hint(.female), hint(.female), EvalPrompt(prompt: "n", kind: .neutral)]
        let probs = [PronounProbabilities(he: 0.6, she: 0.2), .init(he: 0.3, she: 0.1), .init(he: 0.1, she: 0.4), .init(he: 0.9, she: 0.0)]
        let s = Metrics.scores(prompts, probs)
        XCTAssertEqual(s.ub!, 0.5 / 3, accuracy: 1e-12)
        XCTAssertEqual(s.nHint, 3)
        XCTAssertEqual(s.nBias, 0)
        XCTAssertNil(s.afgb)
        // The neutral prompt counts nowhere: mass (0.8 + 0.4 + 0.5)/3
        XCTAssertEqual(s.pronounMass!, 1.7 / 3, accuracy: 1e-12)
    }

    func testPerfectAndWorstCases() {
        // A model that always says "he" with certainty: AFGB 1; UB over one male + one female hint = (1 + −1)/2 = 0.
        let s = Metrics.scores([bias(.word), hint(.male), hint(.female)],
                               Array(repeating: PronounProbabilities(he: 1, she: 0), count: 3))
        XCTAssertEqual(s.afgb, 1); XCTAssertEqual(s.ub, 0)
        // Following the hint perfectly: UB 1.
        XCTAssertEqual(Metrics.ub([(.male, .init(he: 1, she: 0)), (.female, .init(he: 0, she: 1))]), 1)
    }

    func testKLDivergenceByHand() {
        // p = (1/2, 1/2), q = (1/4, 3/4): KL = ½ ln 2 + ½ ln(2/3) = 0.14384103622589045
        let p: [Float] = [log(0.5), log(0.5)], q: [Float] = [log(0.25), log(0.75)]
        XCTAssertEqual(Metrics.klDivergence(logP: p, logQ: q), 0.14384103622589045, accuracy: 1e-6)
        XCTAssertEqual(Metrics.klDivergence(logP: p, logQ: p), 0, accuracy: 1e-12)
        // p(v) = 0 contributes nothing even where q(v) = 0.
        let p0: [Float] = [0, -.infinity], q0: [Float] = [0, -.infinity]
        XCTAssertEqual(Metrics.klDivergence(logP: p0, logQ: q0), 0)
        // KL(q ‖ p) = ¼ ln ½ + ¾ ln(3/2) = 0.13081203594113694: not symmetric
        XCTAssertEqual(Metrics.klDivergence(logP: q, logQ: p), 0.13081203594113694, accuracy: 1e-6)
    }
}
