import XCTest
@testable import Debias

/// The debias objectives' gradients against central finite differences on random logits,
/// and their values on hand-computed cases.
final class ObjectiveTests: XCTestCase {
    let V = 11, he = 3, she = 7

    func randomLogits(seed: UInt64) -> [Float] {
        var s = seed
        return (0..<V).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int(s >> 40) % 2000 - 1000) / 250
        }
    }

    func checkGradient(_ obj: DebiasObjective, example: Int, z: [Float], file: StaticString = #filePath, line: UInt = #line) {
        var d = [Float](repeating: 0, count: V)
        _ = z.withUnsafeBufferPointer { obj.evaluate(logits: $0.baseAddress!, vocabSize: V, example: example, dlogits: &d) }
        var maxDiff: Float = 0
        for j in 0..<V {
            var zp = z, zm = z
            let h: Float = 1e-2
            zp[j] += h; zm[j] -= h
            let lp = zp.withUnsafeBufferPointer { obj.evaluate(logits: $0.baseAddress!, vocabSize: V, example: example, dlogits: nil) }
            let lm = zm.withUnsafeBufferPointer { obj.evaluate(logits: $0.baseAddress!, vocabSize: V, example: example, dlogits: nil) }
            let fd = Float((lp - lm) / Double(2 * h))
            maxDiff = max(maxDiff, abs(fd - d[j]) / max(1, abs(fd)))
        }
        XCTAssertLessThan(maxDiff, 2e-3, "max relative difference \(maxDiff)", file: file, line: line)
    }

    func testPaperLossValueAndGradient() {
        let z = randomLogits(seed: 1)
        let obj = DebiasObjective(kind: .paper, heID: he, sheID: she, roles: [.bias, .hint])
        let m = z.max()!, e = z.map { exp(Double($0 - m)) }, s = e.reduce(0, +)
        let expected = (e[he] + e[she]) / s
        let L = z.withUnsafeBufferPointer { obj.evaluate(logits: $0.baseAddress!, vocabSize: V, example: 0, dlogits: nil) }
        XCTAssertEqual(L, expected, accuracy: 1e-8)
        checkGradient(obj, example: 0, z: z)
        // The paper's loss ignores hint prompts.
        XCTAssertEqual(z.withUnsafeBufferPointer { obj.evaluate(logits: $0.baseAddress!, vocabSize: V, example: 1, dlogits: nil) }, 0)
    }

    func testBalanceTermsValueAndGradient() {
        let base = randomLogits(seed: 2), z = randomLogits(seed: 3)
        let obj = DebiasObjective(kind: .balance, weights: ObjectiveWeights(hint: 0.7, neutralKL: 2, sum: 0.5),
                                  heID: he, sheID: she, roles: [.bias, .hint, .neutral])
        for i in 0..<3 { base.withUnsafeBufferPointer { obj.setBase(example: i, logits: $0.baseAddress!, vocabSize: V) } }
        // Bias: r² + 0.5·(log S − log S_base)², by hand.
        let r = Double(z[he] - z[she])
        func logS(_ x: [Float]) -> Double {
            let m = Double(x.max()!), s = x.reduce(0.0) { $0 + exp(Double($1) - m) }
            return log(exp(Double(x[he]) - m) + exp(Double(x[she]) - m)) - log(s)
        }
        let eS = logS(z) - logS(base)
        let Lb = z.withUnsafeBufferPointer { obj.evaluate(logits: $0.baseAddress!, vocabSize: V, example: 0, dlogits: nil) }
        XCTAssertEqual(Lb, r * r + 0.5 * eS * eS, accuracy: 1e-6)
        // Hint: 0.7 · (r − r_base)².
        let rb = Double(base[he] - base[she])
        let Lh = z.withUnsafeBufferPointer { obj.evaluate(logits: $0.baseAddress!, vocabSize: V, example: 1, dlogits: nil) }
        XCTAssertEqual(Lh, 0.7 * (r - rb) * (r - rb), accuracy: 1e-6)
        // Neutral: KL is zero at the base and positive away from it.
        let L0 = base.withUnsafeBufferPointer { obj.evaluate(logits: $0.baseAddress!, vocabSize: V, example: 2, dlogits: nil) }
        XCTAssertEqual(L0, 0, accuracy: 1e-6)
        let Ln = z.withUnsafeBufferPointer { obj.evaluate(logits: $0.baseAddress!, vocabSize: V, example: 2, dlogits: nil) }
        let kl = base.withUnsafeBufferPointer { b in z.withUnsafeBufferPointer { klDivergence(baseLogits: b.baseAddress!, logits: $0.baseAddress!, vocabSize: V) } }
        XCTAssertEqual(Ln, 2 * kl, accuracy: 1e-6)
        XCTAssertGreaterThan(kl, 0.01)
        for i in 0..<3 { checkGradient(obj, example: i, z: z) }
    }
}
