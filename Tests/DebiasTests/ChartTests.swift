import XCTest
@testable import Debias

final class ChartTests: XCTestCase {
    func run(_ probs: [(String, Double, Double)]) -> EvalRun {
        let prompts = probs.map { EvalPrompt(prompt: "The \($0.0) sighed because", kind: .bias, scale: .word, profession: $0.0) }
            + [EvalPrompt(prompt: "The cook forgot her keys because", kind: .hint, hint: .female, profession: "cook")]
        let p = probs.map { PronounProbabilities(he: $0.1, she: $0.2) } + [PronounProbabilities(he: 0.9, she: 0)]
        return EvalRun(prompts: prompts, probabilities: p, scores: Metrics.scores(prompts, p), neutralLogProbabilities: [:])
    }

    func testPointsAreMeansOverBiasPromptsSortedByBaseBias() {
        // cook: (0.2, 0.4) and (0.4, 0.2) → (0.3, 0.3), bias 0; nurse −0.3; barber +0.5. The hint prompt is ignored.
        let base = run([("cook", 0.2, 0.4), ("nurse", 0.1, 0.4), ("cook", 0.4, 0.2), ("barber", 0.6, 0.1)])
        let pts = Chart.professionPoints(base: base)
        XCTAssertEqual(pts.map(\.profession), ["barber", "cook", "nurse"])
        XCTAssertEqual(pts[1].count, 2)
        XCTAssertEqual(pts[1].baseHe, 0.3, accuracy: 1e-12); XCTAssertEqual(pts[1].baseShe, 0.3, accuracy: 1e-12)
        XCTAssertNil(pts[0].patchedHe)
        let patched = run([("cook", 0.3, 0.3), ("nurse", 0.2, 0.2), ("cook", 0.3, 0.3), ("barber", 0.25, 0.25)])
        let both = Chart.professionPoints(base: base, patched: patched)
        XCTAssertEqual(both.map(\.profession), ["barber", "cook", "nurse"], "order stays the base model's")
        XCTAssertEqual(both[0].patchedHe!, 0.25, accuracy: 1e-12)

        let svg = Chart.svg(points: both, title: "t <&>")
        XCTAssertTrue(svg.hasPrefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg "))
        XCTAssertTrue(svg.hasSuffix("</svg>\n"))
        XCTAssertTrue(svg.contains("t &lt;&amp;&gt;"))
        XCTAssertTrue(svg.contains(">patched</text>"))
        // One he and one she marker per profession and panel.
        XCTAssertEqual(svg.components(separatedBy: "<circle").count - 1, 2 + 2 * 3 * 2)
        let barber = svg.range(of: ">barber</text>")!.lowerBound, nurse = svg.range(of: ">nurse</text>")!.lowerBound
        XCTAssertLessThan(barber, nurse)
        XCTAssertFalse(Chart.svg(points: pts, title: "x").contains(">patched</text>"))
    }
}
