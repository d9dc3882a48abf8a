import XCTest
import Foundation
@testable import TensorMath
import TestSupport

// Every backward op against central finite differences of loss = Σ dout · forward(inputs), dout random.
// Gradients start from random non-zero values: backward must ADD (the test subtracts the start).
// Float inputs of size ~1, eps 1e-2: the truncation error is ~1e-4 relative; tolerance 1e-2.

/// Checks `analytic[k]` (the gradient of input k) against finite differences; prints and returns the max errors.
@discardableResult
func checkGradients(_ name: String, inputs: [[Float]], analytic: [[Float]], dout: [Float], eps: Float = 1e-2,
                    tolerance: Double = 1e-2, forward: ([[Float]]) -> [Float],
                    file: StaticString = #filePath, line: UInt = #line) -> [Double] {
    var errors = [Double]()
    for k in inputs.indices {
        let err = finiteDifferenceError(inputs[k], analytic: analytic[k], eps: eps) { xk in
            var ins = inputs
            ins[k] = xk
            return weightedSum(forward(ins), dout)
        }
        errors.append(err)
        print("FD \(name) input \(k): max relative error \(String(format: "%.2e", err))")
        XCTAssertLessThan(err, tolerance, "\(name) gradient of input \(k)", file: file, line: line)
    }
    return errors
}

/// Runs `backward` on gradients that start at random values and returns only what it added.
func added(_ starts: [[Float]], _ backward: (inout [[Float]]) -> Void) -> [[Float]] {
    var g = starts
    backward(&g)
    return zip(g, starts).map { a, s in zip(a, s).map { $0 - $1 } }
}

final class BackwardTests: XCTestCase {
    func testMatmulBackward() {
        var rng = SeededRNG(seed: 21)
        let T = 4, C = 7, OC = 5
        let x = rng.uniform(T * C), w = rng.uniform(OC * C), b = rng.uniform(OC), dout = rng.uniform(T * OC)
        let starts = [rng.uniform(T * C), rng.uniform(OC * C), rng.uniform(OC)]
        let grads = added(starts) { g in
            var (a, b, c) = (g[0], g[1], g[2])
            matmulBackward(dinp: &a, dweight: &b, dbias: &c, dout: dout, inp: x, weight: w, T: T, C: C, OC: OC)
            g = [a, b, c]
        }
        checkGradients("matmul", inputs: [x, w, b], analytic: grads, dout: dout) { ins in
            var out = [Float](repeating: 0, count: T * OC)
            matmulForward(&out, ins[0], ins[1], ins[2], T: T, C: C, OC: OC)
            return out
        }
        // nil gradients are skipped; the others are the same.
        var dinp = starts[0]
        matmulBackward(dinp: &dinp, dweight: nil, dbias: nil, dout: dout, inp: x, weight: w, T: T, C: C, OC: OC)
        assertClose(zip(dinp, starts[0]).map { $0 - $1 }, grads[0], atol: 1e-6)
    }

    func testRmsnormBackward() {
        var rng = SeededRNG(seed: 22)
        let T = 3, C = 13
        let x = rng.uniform(T * C, -2, 2), w = rng.uniform(C, 0.5, 1.5), dout = rng.uniform(T * C)
        func fwd(_ x: [Float], _ w: [Float]) -> (out: [Float], rstd: [Float]) {
            var out = [Float](repeating: 0, count: T * C), rstd = [Float](repeating: 0, count: T)
            rmsnormForward(&out, &rstd, x, w, T: T, C: C, eps: 1e-5)
            return (out, rstd)
        }
        let rstd = fwd(x, w).rstd
        let grads = added([rng.uniform(T * C), rng.uniform(C)]) { g in
            var (a, b) = (g[0], g[1])
            rmsnormBackward(dinp: &a, dweight: &b, dout: dout, inp: x, weight: w, rstd: rstd, T: T, C: C)
            g = [a, b]
        }
        checkGradients("rmsnorm", inputs: [x, w], analytic: grads, dout: dout) { fwd($0[0], $0[1]).out }
        // frozen weight: dweight nil, same dinp
        var dx = [Float](repeating: 0, count: T * C)
        rmsnormBackward(dinp: &dx, dweight: nil, dout: dout, inp: x, weight: w, rstd: rstd, T: T, C: C)
        assertClose(dx, grads[0], atol: 1e-5)
    }

    func testRopeBackwardBothPairingsAndScalings() {
        var rng = SeededRNG(seed: 23)
        let nHeads = 2, hd = 20
        let positions: [Int32] = [0, 1, 2, 9, 3, 0, 1]
        let T = positions.count
        let tables = [
            RopeTable(headDim: hd, theta: 10000, pairing: .adjacent, maxPositions: 12),
            RopeTable(headDim: hd, theta: 10000, pairing: .halves, maxPositions: 12),
            RopeTable(headDim: hd, theta: 500000, pairing: .halves, maxPositions: 12, scalingType: "llama3",
                      factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 16),
            RopeTable(headDim: hd, theta: 10000, pairing: .adjacent, maxPositions: 12, scalingType: "linear", factor: 2),
        ]
        for table in tables {
            let x = rng.uniform(T * nHeads * hd), dout = rng.uniform(T * nHeads * hd)
            var dx = dout
            ropeBackward(&dx, positions: positions, T: T, nHeads: nHeads, table: table)
            checkGradients("rope \(table.pairing)", inputs: [x], analytic: [dx], dout: dout) { ins in
                var y = ins[0]
                ropeForward(&y, positions: positions, T: T, nHeads: nHeads, table: table)
                return y
            }
            // backward undoes forward (a rotation's transpose is its inverse)
            var y = x
            ropeForward(&y, positions: positions, T: T, nHeads: nHeads, table: table)
            ropeBackward(&y, positions: positions, T: T, nHeads: nHeads, table: table)
            assertClose(y, x, atol: 1e-6)
        }
    }

    func checkAttentionBackward(lengths: [Int], nHeads: Int, nKV: Int, hd: Int, seed: UInt64) {
        var rng = SeededRNG(seed: seed)
        let batch = PackedBatch(lengths: lengths), T = batch.totalTokens
        let q = rng.uniform(T * nHeads * hd, -1.5, 1.5), k = rng.uniform(T * nKV * hd, -1.5, 1.5), v = rng.uniform(T * nKV * hd)
        let dout = rng.uniform(T * nHeads * hd)
        func fwd(_ q: [Float], _ k: [Float], _ v: [Float]) -> (out: [Float], att: [Float]) {
            var out = [Float](repeating: 0, count: T * nHeads * hd)
            var att = [Float](repeating: 0, count: batch.attentionScratchCount(nHeads: nHeads))
            attentionForward(&out, &att, q: q, k: k, v: v, batch: batch, nHeads: nHeads, nKVHeads: nKV, headDim: hd)
            return (out, att)
        }
        let att = fwd(q, k, v).att
        let grads = added([rng.uniform(q.count), rng.uniform(k.count), rng.uniform(v.count)]) { g in
            var (a, b, c) = (g[0], g[1], g[2])
            defer { g = [a, b, c] }
            attentionBackward(dq: &a, dk: &b, dv: &c, dout: dout, q: q, k: k, v: v, att: att, batch: batch,
                              nHeads: nHeads, nKVHeads: nKV, headDim: hd)
        }
        checkGradients("attention \(lengths) heads \(nHeads)/\(nKV)", inputs: [q, k, v], analytic: grads, dout: dout) {
            fwd($0[0], $0[1], $0[2]).out
        }
    }

    func testAttentionBackwardShortSequencesGQA() {
        checkAttentionBackward(lengths: [3, 5, 1, 2], nHeads: 4, nKV: 2, hd: 8, seed: 24)
        checkAttentionBackward(lengths: [6], nHeads: 3, nKV: 1, hd: 4, seed: 25)
    }

    func testAttentionBackwardLongSequencesSgemmPath() {
        let L = attentionSgemmMinLength
        checkAttentionBackward(lengths: [4, L + 3], nHeads: 4, nKV: 2, hd: 4, seed: 26)
    }

    func testSwigluBackward() {
        var rng = SeededRNG(seed: 27)
        let n = 37
        let g = rng.uniform(n, -4, 4), u = rng.uniform(n, -2, 2), dout = rng.uniform(n)
        let grads = added([rng.uniform(n), rng.uniform(n)]) { gr in
            var (a, b) = (gr[0], gr[1])
            swigluBackward(dgate: &a, dup: &b, dout: dout, gate: g, up: u, N: n)
            gr = [a, b]
        }
        checkGradients("swiglu", inputs: [g, u], analytic: grads, dout: dout) { ins in
            var out = [Float](repeating: 0, count: n)
            swigluForward(&out, gate: ins[0], up: ins[1], N: n)
            return out
        }
    }

    func testSoftmaxBackward() {
        var rng = SeededRNG(seed: 28)
        let rows = 3, cols = 11
        let x = rng.uniform(rows * cols, -3, 3), dout = rng.uniform(rows * cols)
        var p = [Float](repeating: 0, count: rows * cols)
        softmaxForward(&p, x, rows: rows, cols: cols)
        let grads = added([rng.uniform(rows * cols)]) { g in
            softmaxBackward(dinp: &g[0], dout: dout, probs: p, rows: rows, cols: cols)
        }
        checkGradients("softmax", inputs: [x], analytic: grads, dout: dout) { ins in
            var out = [Float](repeating: 0, count: rows * cols)
            softmaxForward(&out, ins[0], rows: rows, cols: cols)
            return out
        }
    }

    func testLogSoftmaxBackward() {
        var rng = SeededRNG(seed: 29)
        let rows = 3, cols = 19
        let x = rng.uniform(rows * cols, -3, 3), dout = rng.uniform(rows * cols)
        var lp = [Float](repeating: 0, count: rows * cols)
        logSoftmaxForward(&lp, x, rows: rows, cols: cols)
        let grads = added([rng.uniform(rows * cols)]) { g in
            logSoftmaxBackward(dinp: &g[0], dout: dout, logp: lp, rows: rows, cols: cols)
        }
        checkGradients("log-softmax", inputs: [x], analytic: grads, dout: dout) { ins in
            var out = [Float](repeating: 0, count: rows * cols)
            logSoftmaxForward(&out, ins[0], rows: rows, cols: cols)
            return out
        }
    }

    func testAdamTwoSteps() {
        // Expected values: numpy, p -= lr · (m/(1−β1ᵗ)) / (sqrt(v/(1−β2ᵗ)) + eps), lr 0.01, defaults.
        var adam = Adam(count: 3, lr: 0.01)
        var p: [Float] = [1.0, -2.0, 0.5]
        adam.update(&p, grads: [0.1, -0.2, 0.0])
        XCTAssertEqual(adam.step, 1)
        assertClose(p, [0.9900000009999999, -1.9900000005, 0.5], atol: 1e-7)
        adam.update(&p, grads: [0.3, 0.0, -1.0])
        XCTAssertEqual(adam.step, 2)
        assertClose(p, [0.9808221902205589, -1.9832994184325559, 0.5074413681304593], atol: 1e-6)
    }
}
