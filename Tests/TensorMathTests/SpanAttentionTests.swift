import XCTest
@testable import TensorMath

/// `spanAttentionForward` (the shared-prefix attention) against `attentionForward`.
final class SpanAttentionTests: XCTestCase {
    let H = 4, KH = 2, hd = 8

    /// Causal spans over a packed batch of short sequences give bit for bit what the plain kernel gives.
    func testCausalSpansEqualThePlainKernel() {
        var rng = SeededRNG(seed: 11)
        let batch = PackedBatch(lengths: [5, 1, 9, 3])
        let T = batch.totalTokens, QD = H * hd, KVD = KH * hd
        let q = rng.uniform(T * QD), k = rng.uniform(T * KVD), v = rng.uniform(T * KVD)
        var plain = [Float](repeating: 0, count: T * QD), span = plain
        attentionForward(&plain, nil, q: q, k: k, v: v, batch: batch, nHeads: H, nKVHeads: KH, headDim: hd)
        var a: [Range<Int>] = [], b: [Range<Int>] = []
        for (o, L) in zip(batch.offsets, batch.lengths) { for t in 0..<L { a.append(o..<o); b.append(o..<(o + t + 1)) } }
        spanAttentionForward(&span, q: q, k: k, v: v, keysA: a, keysB: b, nHeads: H, nKVHeads: KH, headDim: hd)
        XCTAssertEqual(plain, span)
    }

    /// Two prompts that share a 4-token prefix, laid out [prefix][suffix 0][suffix 1], attend
    /// exactly as each whole prompt does on its own.
    func testSharedPrefixEqualsEachWholePrompt() {
        var rng = SeededRNG(seed: 12)
        let QD = H * hd, KVD = KH * hd
        let p = 4, s0 = 3, s1 = 2, R = p + s0 + s1
        let q = rng.uniform(R * QD), k = rng.uniform(R * KVD), v = rng.uniform(R * KVD)
        var a: [Range<Int>] = [], b: [Range<Int>] = []
        for t in 0..<p { a.append(0..<(t + 1)); b.append(0..<0) }
        for t in 0..<s0 { a.append(0..<p); b.append(p..<(p + t + 1)) }
        for t in 0..<s1 { a.append(0..<p); b.append((p + s0)..<(p + s0 + t + 1)) }
        var shared = [Float](repeating: 0, count: R * QD)
        spanAttentionForward(&shared, q: q, k: k, v: v, keysA: a, keysB: b, nHeads: H, nKVHeads: KH, headDim: hd)
        // Member j as one sequence: prefix rows then its suffix rows.
        for (start, n) in [(p, s0), (p + s0, s1)] {
            let rows = Array(0..<p) + Array(start..<(start + n))
            func gather(_ x: [Float], _ w: Int) -> [Float] { rows.flatMap { x[($0 * w)..<(($0 + 1) * w)] } }
            var whole = [Float](repeating: 0, count: rows.count * QD)
            attentionForward(&whole, nil, q: gather(q, QD), k: gather(k, KVD), v: gather(v, KVD),
                             batch: PackedBatch(lengths: [rows.count]), nHeads: H, nKVHeads: KH, headDim: hd)
            for (i, r) in rows.enumerated() {
                XCTAssertEqual(Array(whole[(i * QD)..<((i + 1) * QD)]), Array(shared[(r * QD)..<((r + 1) * QD)]), "row \(r)")
            }
        }
    }
}

/// `sumExpShifted` (the log-sum-exp of `NextToken`) against a Double loop.
final class SumExpTests: XCTestCase {
    func testSumExpShiftedMatchesDouble() {
        var rng = SeededRNG(seed: 13)
        for n in [1, 7, 8, 9, 49152] {
            let x = rng.uniform(n, -30, 12)
            let m = x.max()!
            let ref = x.reduce(0.0) { $0 + Foundation.exp(Double($1 - m)) }
            let got = x.withUnsafeBufferPointer { sumExpShifted($0.baseAddress!, n, shift: m) }
            XCTAssertEqual(got, ref, accuracy: ref * 1e-6, "n = \(n)")
            XCTAssertEqual(x.withUnsafeBufferPointer { maxValue($0.baseAddress!, n) }, m)
        }
    }
}
