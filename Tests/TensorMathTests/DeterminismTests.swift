import XCTest
@testable import TensorMath
import TestSupport

/// The same inputs give bit-identical outputs whatever TensorMathThreads.count is: each output
/// element is computed by one thread in a fixed order (needed for byte-identical patches).
final class DeterminismTests: XCTestCase {
    func run(threads: Int) -> [[Float]] {
        let saved = TensorMathThreads.count
        TensorMathThreads.count = threads
        defer { TensorMathThreads.count = saved }
        var rng = SeededRNG(seed: 31)
        let lengths = [5, 9, 1, attentionSgemmMinLength + 2] + Array(repeating: 7, count: 120)  // T = 873: large enough for every op to split
        let batch = PackedBatch(lengths: lengths), T = batch.totalTokens
        let nH = 4, nKV = 2, hd = 16, C = nH * hd, F = 96
        let x = rng.uniform(T * C), w = rng.uniform(C), g = rng.uniform(T * F, -4, 4), u = rng.uniform(T * F)
        var q = rng.uniform(T * C), k = rng.uniform(T * nKV * hd)
        let v = rng.uniform(T * nKV * hd), dout = rng.uniform(T * C)
        var n = [Float](repeating: 0, count: T * C), rstd = [Float](repeating: 0, count: T)
        rmsnormForward(&n, &rstd, x, w, T: T, C: C, eps: 1e-5)
        let table = RopeTable(headDim: hd, theta: 1e4, pairing: .halves, maxPositions: 64)
        ropeForward(&q, positions: batch.positions, T: T, nHeads: nH, table: table)
        ropeForward(&k, positions: batch.positions, T: T, nHeads: nKV, table: table)
        var out = [Float](repeating: 0, count: T * C), att = [Float](repeating: 0, count: batch.attentionScratchCount(nHeads: nH))
        attentionForward(&out, &att, q: q, k: k, v: v, batch: batch, nHeads: nH, nKVHeads: nKV, headDim: hd)
        var dq = [Float](repeating: 0, count: q.count), dk = [Float](repeating: 0, count: k.count), dv = dk
        attentionBackward(dq: &dq, dk: &dk, dv: &dv, dout: dout, q: q, k: k, v: v, att: att, batch: batch,
                          nHeads: nH, nKVHeads: nKV, headDim: hd)
        var h = [Float](repeating: 0, count: T * F), dg = h, du = h
        swigluForward(&h, gate: g, up: u, N: T * F)
        swigluBackward(dgate: &dg, dup: &du, dout: h, gate: g, up: u, N: T * F)
        var sm = [Float](repeating: 0, count: T * F), lsm = sm
        softmaxForward(&sm, g, rows: T, cols: F)
        logSoftmaxForward(&lsm, g, rows: T, cols: F)
        return [n, rstd, q, k, out, att, dq, dk, dv, h, dg, du, sm, lsm]
    }

    func testThreadCountDoesNotChangeResults() {
        let one = run(threads: 1), two = run(threads: 2), three = run(threads: 3)
        for i in one.indices {
            XCTAssertEqual(one[i], two[i], "output \(i) differs between 1 and 2 threads")
            XCTAssertEqual(one[i], three[i], "output \(i) differs between 1 and 3 threads")
        }
    }
}

final class ThreadSettingTests: XCTestCase {
    func testSetThreadsReachesBLASAndOps() {
        let savedOps = TensorMathThreads.count, savedBLAS = blasThreadCount
        defer { setTensorMathThreads(savedBLAS); TensorMathThreads.count = savedOps }
        setTensorMathThreads(1)
        XCTAssertEqual(blasThreadCount, 1)
        XCTAssertEqual(TensorMathThreads.count, 1)
        setTensorMathThreads(0)  // clamped, never zero threads
        XCTAssertEqual(TensorMathThreads.count, 1)
    }
}
