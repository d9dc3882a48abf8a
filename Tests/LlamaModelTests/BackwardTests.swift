import Foundation
import XCTest
import ModelFormats
import TensorMath
@testable import LlamaModel

/// An in-memory F32 checkpoint with seeded random weights (GGUF names), for gradient tests.
final class RandomCheckpoint: Checkpoint {
    let format = CheckpointFormat.gguf
    let location = URL(fileURLWithPath: "/dev/null")
    let files: [URL] = []
    let config: ModelConfig
    var tensors: [TensorInfo] = []
    var data: [String: [Float]] = [:]

    init(config c: ModelConfig, seed: UInt64) {
        config = c
        var rng = ExampleOrderRNG(seed: seed)
        func add(_ role: TensorRole, _ shape: [Int], scale: Float, offset: Float = 0) {
            let n = shape.reduce(1, *)
            let v = (0..<n).map { _ in offset + scale * (Float(rng.next() >> 40) / Float(1 << 24) * 2 - 1) }
            let name = self.name(for: role)
            data[name] = v
            tensors.append(TensorInfo(name: name, dtype: .f32, shape: shape, fileIndex: 0, offset: 0, byteCount: n * 4))
        }
        let C = c.hiddenSize, F = c.intermediateSize, QD = c.numHeads * c.headDim, KVD = c.numKVHeads * c.headDim
        add(.tokenEmbedding, [c.vocabSize, C], scale: 1)
        for i in 0..<c.numLayers {
            add(.attnNorm(i), [C], scale: 0.3, offset: 1)
            add(.q(i), [QD, C], scale: 0.5); add(.k(i), [KVD, C], scale: 0.5)
            add(.v(i), [KVD, C], scale: 0.5); add(.o(i), [C, QD], scale: 0.4)
            add(.ffnNorm(i), [C], scale: 0.3, offset: 1)
            add(.gate(i), [F, C], scale: 0.5); add(.up(i), [F, C], scale: 0.5); add(.down(i), [C, F], scale: 0.4)
        }
        add(.outputNorm, [C], scale: 0.3, offset: 1)
    }

    /// Adds llama.cpp's per-pair RoPE frequency divisors (`rope_freqs.weight`).
    func addRopeFactors(_ f: [Float]) {
        data[RopeFrequencies.ggufTensorName] = f
        tensors.append(TensorInfo(name: RopeFrequencies.ggufTensorName, dtype: .f32, shape: [f.count],
                                  fileIndex: 0, offset: 0, byteCount: f.count * 4))
    }

    func tensorInfo(named name: String) -> TensorInfo? { tensors.first { $0.name == name } }
    func name(for role: TensorRole) -> String { TensorNames.gguf(role) }
    func rawBytes(_ tensor: TensorInfo) throws -> UnsafeRawBufferPointer { fatalError("not used") }
    func floats(_ tensor: TensorInfo) throws -> [Float] { data[tensor.name]! }

    static let tinyConfig = ModelConfig(architecture: "llama", hiddenSize: 16, intermediateSize: 24, numLayers: 3,
                                        numHeads: 4, numKVHeads: 2, vocabSize: 37, rmsNormEps: 1e-5,
                                        ropeTheta: 10000, ropeStyle: .adjacentPairs, tieWordEmbeddings: true,
                                        maxPositions: 64)
}

/// −log softmax(z)[target_i] + 0.5·z[other_i]: exercises the whole vocabulary row.
final class TargetObjective: LastTokenObjective {
    let targets: [Int]
    init(targets: [Int]) { self.targets = targets }
    func evaluate(logits z: UnsafePointer<Float>, vocabSize V: Int, example i: Int, dlogits: UnsafeMutablePointer<Float>?) -> Double {
        var m = -Double.infinity
        for j in 0..<V { m = max(m, Double(z[j])) }
        var s = 0.0
        for j in 0..<V { s += exp(Double(z[j]) - m) }
        let lse = m + log(s)
        let t = targets[i], o = (t + 5) % V
        if let d = dlogits {
            for j in 0..<V { d[j] = Float(exp(Double(z[j]) - lse)) }
            d[t] -= 1; d[o] += 0.5
        }
        return lse - Double(z[t]) + 0.5 * Double(z[o])
    }
}

final class BackwardTests: XCTestCase {
    /// Three sequences of different lengths (attention must not cross them).
    let examples = [[1, 5, 9, 2, 30], [7, 3], [11, 12, 13, 14, 15, 16, 3]]

    func makeTuner(blocks: [Int], ropeFactors: [Float]? = nil) throws -> (LlamaModel, FineTuner) {
        let ckpt = RandomCheckpoint(config: RandomCheckpoint.tinyConfig, seed: 42)
        if let f = ropeFactors { ckpt.addRopeFactors(f) }
        let model = try LlamaModel(checkpoint: ckpt)
        let tuner = try FineTuner(model: model, examples: examples, settings: FineTuneSettings(blocks: blocks))
        try tuner.cachePrefix()
        try tuner.installTrainableCopies()
        return (model, tuner)
    }

    func meanLoss(_ tuner: FineTuner, _ obj: LastTokenObjective) throws -> Double {
        var total = 0.0
        try tuner.logits(for: Array(examples.indices)) { i, z in
            total += obj.evaluate(logits: z, vocabSize: tuner.model.config.vocabSize, example: i, dlogits: nil)
        }
        return total / Double(examples.count)
    }

    /// Every trainable weight of the trained block against central differences; the gradient
    /// reaches it through the later blocks' activation-only backward and the head.
    func checkBlock(_ block: Int, ropeFactors: [Float]? = nil) throws {
        let (model, tuner) = try makeTuner(blocks: [block], ropeFactors: ropeFactors)
        if let f = ropeFactors {
            // the table really is divided per pair (head dim 4: base frequencies 1 and 0.01)
            XCTAssertEqual(model.rope.invFreq[0], 1 / Double(f[0]), accuracy: 1e-12)
            XCTAssertEqual(model.rope.invFreq[1], 0.01 / Double(f[1]), accuracy: 1e-12)
        }
        let obj = TargetObjective(targets: [4, 20, 33])
        let (loss, grads) = try tuner.lossAndGradients(Array(examples.indices), objective: obj)
        XCTAssertEqual(loss, try meanLoss(tuner, obj), accuracy: 1e-5)
        let w = tuner.trained[0], g = grads[0]
        let roles: [(String, ReferenceWritableKeyPath<BlockWeights, [Float]>, [Float])] = [
            ("q", \.q, g.q), ("k", \.k, g.k), ("v", \.v, g.v), ("o", \.o, g.o),
            ("gate", \.gate, g.gate), ("up", \.up, g.up), ("down", \.down, g.down)]
        var rng = ExampleOrderRNG(seed: UInt64(block))
        for (name, kp, grad) in roles {
            var worst = 0.0, pairs: [String] = [], worstPair = ""
            // the 3 largest entries plus 5 random ones
            let top = grad.indices.sorted { abs(grad[$0]) > abs(grad[$1]) }.prefix(3)
            let picks = Array(top) + (0..<5).map { _ in Int(rng.next() % UInt64(grad.count)) }
            for idx in picks {
                let orig = w[keyPath: kp][idx]
                let h: Float = 1e-2
                w[keyPath: kp][idx] = orig + h
                let lp = try meanLoss(tuner, obj)
                w[keyPath: kp][idx] = orig - h
                let lm = try meanLoss(tuner, obj)
                w[keyPath: kp][idx] = orig
                let fd = (lp - lm) / Double(2 * h)
                // fp32 central differences: ~1e-4 absolute noise, O(h²) curvature error
                let err = abs(fd - Double(grad[idx])) / (abs(fd) + 2e-2)
                if err > worst { worst = err; worstPair = "[\(idx)] \(fd) vs \(grad[idx])" }
                if pairs.count < 3 { pairs.append("\(fd) vs \(grad[idx])") }
            }
            XCTAssertLessThan(worst, 2e-2, "block \(block) \(name): max rel diff \(worst) at \(worstPair); first pairs \(pairs)")
        }
    }

    func testBlockGradientsMatchFiniteDifferencesFirstBlock() throws { try checkBlock(0) }
    func testBlockGradientsMatchFiniteDifferencesMiddleBlock() throws { try checkBlock(1) }
    func testBlockGradientsMatchFiniteDifferencesLastBlock() throws { try checkBlock(2) }
    /// The RoPE backward with per-pair frequency factors (rope_freqs.weight).
    func testBlockGradientsMatchFiniteDifferencesWithRopeFactors() throws { try checkBlock(0, ropeFactors: [0.37, 0.05]) }

    /// Training two blocks at once gives each the same gradient as training it alone.
    func testMultiBlockGradientsEqualSingleBlock() throws {
        let obj = TargetObjective(targets: [4, 20, 33])
        let (_, both) = try makeTuner(blocks: [0, 2])
        let (_, gBoth) = try both.lossAndGradients([0, 1, 2], objective: obj)
        let (_, only2) = try makeTuner(blocks: [2])
        let (_, g2) = try only2.lossAndGradients([0, 1, 2], objective: obj)
        XCTAssertEqual(gBoth[1].down, g2[0].down)
        XCTAssertEqual(gBoth[1].q, g2[0].q)
    }
}
