import XCTest
import ModelFormats
import TensorMath
@testable import LlamaModel

final class LocateTests: XCTestCase {
    /// BMI from the batched forward equals 1 − cos computed block by block on each prompt alone.
    func testBMIMatchesBlockByBlockComputation() throws {
        let model = try LlamaModel(checkpoint: RandomCheckpoint(config: RandomCheckpoint.tinyConfig, seed: 5))
        let prompts = [[1, 5, 9, 2], [7, 3, 3], [11, 12]]
        let bmi = try model.blockModificationIndex(prompts: prompts)
        let C = model.config.hiddenSize
        var expected = [Double](repeating: 0, count: 3)
        for p in prompts {
            var x = [Float](repeating: 0, count: p.count * C)
            try x.withUnsafeMutableBufferPointer { try model.embed(p, into: $0.baseAddress!) }
            for i in 0..<3 {
                let before = Array(x[(p.count - 1) * C ..< p.count * C])
                try x.withUnsafeMutableBufferPointer { try model.blockForward(layer: i, x: $0.baseAddress!, batch: PackedBatch(lengths: [p.count])) }
                let after = Array(x[(p.count - 1) * C ..< p.count * C])
                var d = 0.0, a = 0.0, b = 0.0
                for c in 0..<C { d += Double(before[c] * after[c]); a += Double(before[c] * before[c]); b += Double(after[c] * after[c]) }
                expected[i] += (1 - d / (a * b).squareRoot()) / Double(prompts.count)
            }
        }
        for i in 0..<3 { XCTAssertEqual(bmi[i], expected[i], accuracy: 1e-5) }
    }

    func testRankingAndContrast() {
        let r = BlockRanking(locator: .contrast, bmi: [0.9, 0.2, 0.15, 0.3], neutralBMI: [0.95, 0.05, 0.1, 0.05],
                             biasPromptCount: 10, neutralPromptCount: 4)
        XCTAssertEqual(r.scores.map { ($0 * 1000).rounded() / 1000 }, [-0.05, 0.15, 0.05, 0.25])
        XCTAssertEqual(r.ranking, [3, 1, 2, 0])
        XCTAssertEqual(r.top, 3)
        let plain = BlockRanking(locator: .bmi, bmi: [0.9, 0.2, 0.2, 0.3], neutralBMI: nil, biasPromptCount: 10, neutralPromptCount: 0)
        XCTAssertEqual(plain.ranking, [0, 3, 1, 2], "ties keep block order")
        let chart = r.barChart(width: 10)
        XCTAssertEqual(chart.split(separator: "\n").count, 4)
        XCTAssertTrue(chart.contains("block 3 │██████████ +0.2500  ← rank 1"), chart)
        let svg = r.svg(title: "t")
        XCTAssertTrue(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>\n"))
        XCTAssertEqual(svg.components(separatedBy: "<rect x=").count - 1, 4)
    }

    func testLocateWithoutPromptsIsAnError() throws {
        let model = try LlamaModel(checkpoint: RandomCheckpoint(config: RandomCheckpoint.tinyConfig, seed: 5))
        XCTAssertThrowsError(try model.locate(biasPrompts: [], neutralPrompts: [[1]], locator: .bmi)) {
            XCTAssertEqual($0 as? LocateError, .noPrompts("bias"))
        }
        XCTAssertThrowsError(try model.locate(biasPrompts: [[1, 2]], neutralPrompts: [], locator: .contrast)) {
            XCTAssertEqual($0 as? LocateError, .noPrompts("neutral"))
        }
    }
}
