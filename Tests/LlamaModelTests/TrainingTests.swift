import XCTest
import ModelFormats
import TensorMath
@testable import LlamaModel

final class TrainingTests: XCTestCase {
    let examples = [[1, 5, 9, 2, 30], [7, 3], [11, 12, 13, 14, 15, 16, 3], [2, 2, 8], [30, 31, 32, 33]]

    func train(seed: UInt64, lr: Double = 3e-3, blocks: [Int] = [1]) throws -> (FineTuner, [Double]) {
        let model = try LlamaModel(checkpoint: RandomCheckpoint(config: RandomCheckpoint.tinyConfig, seed: 42))
        let tuner = try FineTuner(model: model, examples: examples,
                                  settings: FineTuneSettings(blocks: blocks, learningRate: lr, epochs: 8, batchSize: 2, seed: seed))
        var seen: [FineTuneProgress] = []
        try tuner.train(objective: TargetObjective(targets: [4, 20, 33, 8, 9])) { seen.append($0); return true }
        XCTAssertEqual(seen.count, 8 * 3)
        XCTAssertEqual(seen.last?.step, 24)
        XCTAssertEqual(seen.last?.epoch, 7)
        XCTAssertEqual(seen.last?.eta ?? -1, 0, accuracy: 1e-9)
        return (tuner, tuner.stepLosses)
    }

    /// Adam lowers the loss, touches only the trained block, and reproduces bit for bit.
    func testTrainingLowersLossAndIsDeterministic() throws {
        let obj = TargetObjective(targets: [4, 20, 33, 8, 9])
        let base = try LlamaModel(checkpoint: RandomCheckpoint(config: RandomCheckpoint.tinyConfig, seed: 42))
        let before = try FineTuner(model: base, examples: examples, settings: FineTuneSettings(blocks: [1]))
        let lossBefore = try before.lossAndGradients(Array(examples.indices), objective: obj).loss

        let (t1, _) = try train(seed: 7)
        let lossAfter = try t1.lossAndGradients(Array(examples.indices), objective: obj).loss
        XCTAssertLessThan(lossAfter, lossBefore * 0.8, "loss \(lossBefore) → \(lossAfter)")
        // frozen: other blocks and the norms of block 1 are the checkpoint's
        let w = t1.trained[0], b = try base.blockWeights(1)
        XCTAssertEqual(w.attnNorm, b.attnNorm); XCTAssertEqual(w.ffnNorm, b.ffnNorm)
        XCTAssertNotEqual(w.q, b.q); XCTAssertNotEqual(w.down, b.down)
        XCTAssertEqual(try t1.model.blockWeights(0).q, try base.blockWeights(0).q)

        let (t2, _) = try train(seed: 7)
        XCTAssertEqual(t1.stepLosses, t2.stepLosses)
        for kp in [\BlockWeights.q, \.k, \.v, \.o, \.gate, \.up, \.down] {
            XCTAssertEqual(t1.trained[0][keyPath: kp], t2.trained[0][keyPath: kp])
        }
        let (t3, _) = try train(seed: 8)
        XCTAssertNotEqual(t1.trained[0].q, t3.trained[0].q, "another seed, another order")
    }

    /// The schedule visits every example once per epoch, in batches of the asked size.
    func testScheduleCoversEveryExampleEachEpoch() throws {
        let model = try LlamaModel(checkpoint: RandomCheckpoint(config: RandomCheckpoint.tinyConfig, seed: 1))
        let t = try FineTuner(model: model, examples: examples, settings: FineTuneSettings(blocks: [0], epochs: 3, batchSize: 2, seed: 3))
        let plan = t.schedule()
        XCTAssertEqual(plan.map(\.indices.count), [2, 2, 1, 2, 2, 1, 2, 2, 1])
        for e in 0..<3 {
            XCTAssertEqual(plan.filter { $0.epoch == e }.flatMap(\.indices).sorted(), [0, 1, 2, 3, 4])
        }
        XCTAssertEqual(plan.map(\.indices), t.schedule().map(\.indices))
    }

    func testBadSettingsAreErrors() throws {
        let model = try LlamaModel(checkpoint: RandomCheckpoint(config: RandomCheckpoint.tinyConfig, seed: 1))
        XCTAssertThrowsError(try FineTuner(model: model, examples: examples, settings: FineTuneSettings(blocks: [3]))) {
            XCTAssertEqual($0 as? TrainingError, .blockOutOfRange(3, numLayers: 3))
        }
        XCTAssertThrowsError(try FineTuner(model: model, examples: [], settings: FineTuneSettings(blocks: [0]))) {
            XCTAssertEqual($0 as? TrainingError, .noExamples)
        }
        XCTAssertThrowsError(try FineTuner(model: model, examples: [[1], []], settings: FineTuneSettings(blocks: [0]))) {
            XCTAssertEqual($0 as? TrainingError, .emptyExample(index: 1))
        }
        XCTAssertThrowsError(try FineTuner(model: model, examples: examples, settings: FineTuneSettings(blocks: [0], learningRate: 0)))
    }

    /// FPFT (all blocks) trains: the loss falls and every block moves.
    func testAllBlocksTraining() throws {
        let (t, losses) = try train(seed: 1, blocks: [0, 1, 2])
        XCTAssertLessThan(losses.suffix(3).reduce(0, +), losses.prefix(3).reduce(0, +))
        XCTAssertEqual(t.trained.map(\.layer), [0, 1, 2])
    }
}
