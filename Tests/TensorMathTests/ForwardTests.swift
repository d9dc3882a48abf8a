import XCTest
import Foundation
@testable import TensorMath
import TestSupport

// Forward ops against plain Double loops written for the test.

// MARK: - references

func refMatmul(_ inp: [Float], _ w: [Float], _ b: [Float]?, T: Int, C: Int, OC: Int) -> [Float] {
    var out = [Float](repeating: 0, count: T * OC)
    for t in 0..<T { for o in 0..<OC {
        var s = b.map { Double($0[o]) } ?? 0
        for c in 0..<C { s += Double(inp[t * C + c]) * Double(w[o * C + c]) }
        out[t * OC + o] = Float(s)
    } }
    return out
}

func refRmsnorm(_ x: [Float], _ w: [Float], T: Int, C: Int, eps: Double) -> [Float] {
    var out = x
    for t in 0..<T {
        var ss = 0.0
        for c in 0..<C { ss += Double(x[t * C + c]) * Double(x[t * C + c]) }
        let r = 1 / (ss / Double(C) + eps).squareRoot()
        for c in 0..<C { out[t * C + c] = Float(Double(x[t * C + c]) * r * Double(w[c])) }
    }
    return out
}

/// Rotation of each pair by pos · theta^(-2i/d), pairs chosen by `pairing`.
func refRope(_ x: [Float], positions: [Int], nHeads: Int, hd: Int, invFreq: [Double], pairing: RopePairing) -> [Float] {
    var out = x
    for (t, pos) in positions.enumerated() { for h in 0..<nHeads { for i in 0..<hd / 2 {
        let (a, b) = pairing == .adjacent ? (2 * i, 2 * i + 1) : (i, i + hd / 2)
        let base = t * nHeads * hd + h * hd
        let ang = Double(pos) * invFreq[i]
        let x0 = Double(x[base + a]), x1 = Double(x[base + b])
        out[base + a] = Float(x0 * cos(ang) - x1 * sin(ang))
        out[base + b] = Float(x0 * sin(ang) + x1 * cos(ang))
    } } }
    return out
}

/// Causal GQA attention, one (sequence, head) at a time, in Double.
func refAttention(q: [Float], k: [Float], v: [Float], lengths: [Int], nHeads: Int, nKV: Int, hd: Int) -> (out: [Float], att: [Float]) {
    let T = lengths.reduce(0, +)
    var out = [Float](repeating: 0, count: T * nHeads * hd)
    var att = [Float]()
    var o = 0
    for L in lengths {
        for h in 0..<nHeads {
            let kh = h / (nHeads / nKV)
            for t in 0..<L {
                var sc = [Double](repeating: 0, count: L)
                for j in 0...t {
                    var s = 0.0
                    for d in 0..<hd { s += Double(q[(o + t) * nHeads * hd + h * hd + d]) * Double(k[(o + j) * nKV * hd + kh * hd + d]) }
                    sc[j] = s / Double(hd).squareRoot()
                }
                let m = sc[0...t].max()!
                var p = [Double](repeating: 0, count: L)
                for j in 0...t { p[j] = exp(sc[j] - m) }
                let z = p.reduce(0, +)
                for j in 0...t { p[j] /= z }
                for d in 0..<hd {
                    var s = 0.0
                    for j in 0...t { s += p[j] * Double(v[(o + j) * nKV * hd + kh * hd + d]) }
                    out[(o + t) * nHeads * hd + h * hd + d] = Float(s)
                }
                att += p.map(Float.init)
            }
        }
        o += L
    }
    return (out, att)
}

func refSoftmax(_ x: [Float], rows: Int, cols: Int, log takeLog: Bool) -> [Float] {
    var out = x
    for r in 0..<rows {
        let row = x[r * cols ..< (r + 1) * cols].map(Double.init)
        let m = row.max()!
        let z = row.reduce(0) { $0 + exp($1 - m) }
        for c in 0..<cols {
            out[r * cols + c] = Float(takeLog ? row[c] - m - log(z) : exp(row[c] - m) / z)
        }
    }
    return out
}

final class ForwardTests: XCTestCase {
    func testMatmulMatchesLoops() {
        var rng = SeededRNG(seed: 1)
        for (T, C, OC) in [(1, 1, 1), (5, 7, 3), (13, 64, 33)] {
            let x = rng.uniform(T * C), w = rng.uniform(OC * C), b = rng.uniform(OC)
            for bias in [nil, b] {
                var out = [Float](repeating: 0, count: T * OC)
                if let bias { matmulForward(&out, x, w, bias, T: T, C: C, OC: OC) } else { matmulForward(&out, x, w, nil, T: T, C: C, OC: OC) }
                assertClose(out, refMatmul(x, w, bias, T: T, C: C, OC: OC), atol: 1e-5, rtol: 1e-5,
                            "matmul \(T)x\(C)x\(OC) bias \(bias != nil)")
            }
        }
    }

    func testRmsnormMatchesLoops() {
        var rng = SeededRNG(seed: 2)
        for (T, C) in [(1, 3), (4, 576), (3, 37)] {
            let x = rng.uniform(T * C, -3, 3), w = rng.uniform(C, 0.5, 1.5)
            var out = [Float](repeating: 0, count: T * C), rstd = [Float](repeating: 0, count: T)
            rmsnormForward(&out, &rstd, x, w, T: T, C: C, eps: 1e-5)
            assertClose(out, refRmsnorm(x, w, T: T, C: C, eps: 1e-5), atol: 1e-5, rtol: 1e-5, "rmsnorm C=\(C)")
            // rstd saved for backward
            let r0 = 1 / (x[0..<C].reduce(0.0) { $0 + Double($1 * $1) } / Double(C) + 1e-5).squareRoot()
            assertClose(rstd[0], Float(r0), atol: 0, rtol: 1e-5)
        }
    }

    func testRopeFrequenciesAndScaling() {
        // Plain: theta^(-2i/d)
        let plain = RopeTable(headDim: 128, theta: 500000, pairing: .halves, maxPositions: 4)
        XCTAssertEqual(plain.invFreq[10], 0.12868737343265052, accuracy: 1e-15)
        XCTAssertEqual(plain.invFreq[63], 2.455140791131609e-06, accuracy: 1e-18)
        // Linear: divided by factor.
        let lin = RopeTable(headDim: 128, theta: 500000, pairing: .halves, maxPositions: 4, scalingType: "linear", factor: 4)
        XCTAssertEqual(lin.invFreq[10], 0.12868737343265052 / 4, accuracy: 1e-15)
        // Llama 3.1 8B (factor 8, low 1, high 4, original 8192): values from HF's
        // _compute_llama3_parameters re-typed in Python (high band kept, low band /8, index 30 blended).
        let l3 = RopeTable(headDim: 128, theta: 500000, pairing: .halves, maxPositions: 4, scalingType: "llama3",
                           factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192)
        let expected: [(Int, Double)] = [(0, 1.0), (25, 0.005940730375674967), (30, 0.0013718935677611381),
                                         (40, 3.428102195952591e-05), (50, 4.411534674558404e-06),
                                         (63, 3.068925988914511e-07)]
        for (i, e) in expected { XCTAssertEqual(l3.invFreq[i], e, accuracy: e * 1e-12, "llama3 inv_freq[\(i)]") }
        // Table entries are cos/sin(pos · invFreq).
        XCTAssertEqual(l3.cos[3 * 64 + 30], Float(cos(3 * 0.0013718935677611381)), accuracy: 1e-7)
        XCTAssertEqual(l3.sin[3 * 64 + 30], Float(sin(3 * 0.0013718935677611381)), accuracy: 1e-7)
        XCTAssertTrue(RopeTable.supportsScaling(nil))
        XCTAssertTrue(RopeTable.supportsScaling("Llama3"))
        XCTAssertFalse(RopeTable.supportsScaling("yarn"))
    }

    func testRopeBothPairingsMatchLoops() {
        var rng = SeededRNG(seed: 3)
        let nHeads = 3, hd = 20  // hd/2 = 10: exercises the 8-lane body and the tail
        let positions = [0, 1, 2, 7, 0, 5]
        for pairing in [RopePairing.adjacent, .halves] {
            let table = RopeTable(headDim: hd, theta: 10000, pairing: pairing, maxPositions: 16)
            let x = rng.uniform(positions.count * nHeads * hd)
            var xb = x
            let pos = positions.map(Int32.init)
            ropeForward(&xb, positions: pos, T: positions.count, nHeads: nHeads, table: table)
            let ref = refRope(x, positions: positions, nHeads: nHeads, hd: hd, invFreq: table.invFreq, pairing: pairing)
            assertClose(xb, ref, atol: 2e-6, "rope \(pairing)")
            // position 0 is the identity
            assertClose(Array(xb[0..<nHeads * hd]), Array(x[0..<nHeads * hd]), atol: 0)
        }
    }

    func testRopePairingsAgreeUnderPermutation() {
        // HF rotate_half on a vector equals GGUF adjacent-pair RoPE on the vector with its halves interleaved:
        // the reason llama.cpp's converter permutes Q/K rows.
        var rng = SeededRNG(seed: 4)
        let hd = 16, half = 8
        let x = rng.uniform(hd)
        var inter = [Float](repeating: 0, count: hd)
        for i in 0..<half { inter[2 * i] = x[i]; inter[2 * i + 1] = x[i + half] }
        var a = x, b = inter
        ropeForward(&a, positions: [5], T: 1, nHeads: 1, table: RopeTable(headDim: hd, theta: 10000, pairing: .halves, maxPositions: 8))
        ropeForward(&b, positions: [5], T: 1, nHeads: 1, table: RopeTable(headDim: hd, theta: 10000, pairing: .adjacent, maxPositions: 8))
        var back = [Float](repeating: 0, count: hd)
        for i in 0..<half { back[i] = b[2 * i]; back[i + half] = b[2 * i + 1] }
        assertClose(a, back, atol: 1e-6)
    }

    func checkAttention(lengths: [Int], nHeads: Int, nKV: Int, hd: Int, seed: UInt64) {
        var rng = SeededRNG(seed: seed)
        let batch = PackedBatch(lengths: lengths)
        let T = batch.totalTokens
        let q = rng.uniform(T * nHeads * hd, -2, 2), k = rng.uniform(T * nKV * hd, -2, 2), v = rng.uniform(T * nKV * hd)
        let ref = refAttention(q: q, k: k, v: v, lengths: lengths, nHeads: nHeads, nKV: nKV, hd: hd)
        var out = [Float](repeating: 0, count: T * nHeads * hd), att = [Float](repeating: 0, count: batch.attentionScratchCount(nHeads: nHeads))
        attentionForward(&out, &att, q: q, k: k, v: v, batch: batch, nHeads: nHeads, nKVHeads: nKV, headDim: hd)
        assertClose(out, ref.out, atol: 2e-5, "attention out \(lengths)")
        assertClose(att, ref.att, atol: 2e-6, "attention probs \(lengths)")
        // Without saved probabilities the output is the same.
        var out2 = [Float](repeating: 0, count: T * nHeads * hd)
        attentionForward(&out2, nil, q: q, k: k, v: v, batch: batch, nHeads: nHeads, nKVHeads: nKV, headDim: hd)
        assertClose(out2, out, atol: 0)
    }

    func testAttentionShortSequencesGQA() {
        checkAttention(lengths: [1, 5, 3, 8], nHeads: 4, nKV: 2, hd: 12, seed: 5)
        checkAttention(lengths: [7], nHeads: 3, nKV: 1, hd: 64, seed: 6)
        checkAttention(lengths: [2, 6], nHeads: 2, nKV: 2, hd: 8, seed: 7)
    }

    func testAttentionLongSequencesUseSgemmPath() {
        // lengths straddling attentionSgemmMinLength, mixed in one batch
        let L = attentionSgemmMinLength
        checkAttention(lengths: [L + 5, 3, L, L - 1], nHeads: 4, nKV: 2, hd: 16, seed: 8)
    }

    func testAttentionCrossesNoSequenceBoundary() {
        // The first sequence's output must not change when the second sequence changes.
        var rng = SeededRNG(seed: 9)
        let batch = PackedBatch(lengths: [4, 4]), hd = 8
        var q = rng.uniform(8 * hd), k = rng.uniform(8 * hd), v = rng.uniform(8 * hd)
        func run() -> [Float] {
            var out = [Float](repeating: 0, count: 8 * hd)
            attentionForward(&out, nil, q: q, k: k, v: v, batch: batch, nHeads: 1, nKVHeads: 1, headDim: hd)
            return Array(out[0..<4 * hd])
        }
        let before = run()
        for i in 4 * hd ..< 8 * hd { q[i] += 1; k[i] -= 1; v[i] *= 3 }
        assertClose(run(), before, atol: 0)
    }

    func testSwigluMatchesLoops() {
        var rng = SeededRNG(seed: 10)
        let n = 1000 + 3
        var g = rng.uniform(n, -8, 8)
        g[0] = 100; g[1] = -100; g[2] = 0
        let u = rng.uniform(n, -2, 2)
        var out = [Float](repeating: 0, count: n)
        swigluForward(&out, gate: g, up: u, N: n)
        let ref = (0..<n).map { i in Float(Double(g[i]) / (1 + exp(-Double(g[i]))) * Double(u[i])) }
        assertClose(out, ref, atol: 1e-6, rtol: 1e-5, "swiglu")
    }

    func testSoftmaxAndLogSoftmaxMatchLoops() {
        var rng = SeededRNG(seed: 11)
        for (rows, cols) in [(1, 1), (3, 5), (2, 49152)] {
            var x = rng.uniform(rows * cols, -20, 20)
            x[0] = 80  // large values must not overflow
            var p = [Float](repeating: 0, count: rows * cols), lp = p
            softmaxForward(&p, x, rows: rows, cols: cols)
            logSoftmaxForward(&lp, x, rows: rows, cols: cols)
            assertClose(p, refSoftmax(x, rows: rows, cols: cols, log: false), atol: 1e-7, rtol: 1e-5, "softmax \(cols)")
            assertClose(lp, refSoftmax(x, rows: rows, cols: cols, log: true), atol: 2e-5, rtol: 1e-6, "log-softmax \(cols)")
            // in place (out aliases inp)
            var inplace = x
            inplace.withUnsafeMutableBufferPointer { b in logSoftmaxForward(b.baseAddress!, b.baseAddress!, rows: rows, cols: cols) }
            assertClose(inplace, lp, atol: 0, "log-softmax in place")
            var inplace2 = x
            inplace2.withUnsafeMutableBufferPointer { b in softmaxForward(b.baseAddress!, b.baseAddress!, rows: rows, cols: cols) }
            assertClose(inplace2, p, atol: 0, "softmax in place")
        }
    }

    func testVectorExpIsAccurate() {
        var worst: Double = 0
        var x: Float = -87
        while x < 88 {
            let e = Double(exp1(x)), r = exp(Double(x))
            worst = max(worst, abs(e - r) / r)
            x += 0.0137
        }
        XCTAssertLessThan(worst, 5e-7, "exp8 max relative error \(worst)")
        XCTAssertEqual(exp1(-200), 0)
        XCTAssertEqual(exp1(0), 1)
    }
}
