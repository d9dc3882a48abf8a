import XCTest
import Foundation
@testable import TensorMath

// Micro benchmark: sgemm on the sample model's shapes, the non-BLAS ops, and a synthetic 30-block
// forward of SmolLM2-135M's shape built only from TensorMath ops (random fp32 weights).
// Skipped unless TENSORMATH_BENCH=1:
//   TENSORMATH_BENCH=1 OPENBLAS_NUM_THREADS=2 swift test -c release -Xswiftc -enable-testing --filter TensorMathBenchmarks

private func seconds(_ body: () -> Void) -> Double {
    let t0 = DispatchTime.now().uptimeNanoseconds
    body()
    return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
}

/// Best of `reps` timings (after one warm-up run).
private func best(_ reps: Int = 5, _ body: () -> Void) -> Double {
    body()
    return (0..<reps).map { _ in seconds(body) }.min()!
}

private func buffer(_ n: Int, _ rng: inout SeededRNG, _ scale: Float = 1) -> UnsafeMutablePointer<Float> {
    let p = UnsafeMutablePointer<Float>.allocate(capacity: n)
    for i in 0..<n { p[i] = Float.random(in: -scale..<scale, using: &rng) }
    return p
}

final class TensorMathBenchmarks: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["TENSORMATH_BENCH"] != nil, "set TENSORMATH_BENCH=1 to run")
    }

    func testBenchmark() {
        var rng = SeededRNG(seed: 99)
        let nSeq = 128, L = 8, T = nSeq * L
        let C = 576, nH = 9, nKV = 3, hd = 64, F = 1536, V = 49152, blocks = 30
        print("TensorMath benchmark: \(nSeq) prompts × \(L) tokens = \(T) rows, threads \(TensorMathThreads.count), OPENBLAS_NUM_THREADS=\(ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"] ?? "unset")")

        // sgemm shapes: out (T, OC) = inp (T, C) @ W (OC, C)ᵀ
        let shapes: [(String, Int, Int, Int)] = [
            ("q/o  576→576", T, C, C), ("k/v  576→192", T, C, nKV * hd), ("gate/up 576→1536", T, C, F),
            ("down 1536→576", T, F, C), ("lm head (last rows) 576→49152", nSeq, C, V),
        ]
        for (name, m, k, n) in shapes {
            let a = buffer(m * k, &rng), w = buffer(n * k, &rng), out = buffer(m * n, &rng)
            let s = best { matmulForward(out, a, w, nil, T: m, C: k, OC: n) }
            print(String(format: "  sgemm %-32@ (%d×%d)·(%d×%d)ᵀ: %7.2f ms  %6.1f GFLOP/s", name as NSString, m, k, n, k, s * 1e3, 2 * Double(m * k * n) / s / 1e9))
            a.deallocate(); w.deallocate(); out.deallocate()
        }

        // non-BLAS ops at block sizes
        let x = buffer(T * C, &rng), y = buffer(T * C, &rng), w = buffer(C, &rng), rstd = buffer(T, &rng)
        let q = buffer(T * nH * hd, &rng), k = buffer(T * nKV * hd, &rng), v = buffer(T * nKV * hd, &rng)
        let att = buffer(PackedBatch(lengths: Array(repeating: L, count: nSeq)).attentionScratchCount(nHeads: nH), &rng)
        let g = buffer(T * F, &rng, 4), u = buffer(T * F, &rng), h = buffer(T * F, &rng)
        let logits = buffer(nSeq * V, &rng, 10), probs = buffer(nSeq * V, &rng)
        let positions = PackedBatch(lengths: Array(repeating: L, count: nSeq)).positions
        let table = RopeTable(headDim: hd, theta: 1e5, pairing: .adjacent, maxPositions: 2048)
        let batch = PackedBatch(lengths: Array(repeating: L, count: nSeq))
        func report(_ name: String, _ s: Double, _ elems: Int) {
            print(String(format: "  %-40@ %8.3f ms  %8.1f M elem/s", name as NSString, s * 1e3, Double(elems) / s / 1e6))
        }
        report("rmsnorm (\(T)×\(C))", best { rmsnormForward(y, rstd, x, w, T: T, C: C, eps: 1e-5) }, T * C)
        report("rope q+k (\(T)×\(nH + nKV)×\(hd))", best {
            ropeForward(q, positions: positions, T: T, nHeads: nH, table: table)
            ropeForward(k, positions: positions, T: T, nHeads: nKV, table: table)
        }, T * (nH + nKV) * hd)
        report("attention \(nSeq)×L\(L), 9/3 heads, save att", best {
            attentionForward(y, att, q: q, k: k, v: v, batch: batch, nHeads: nH, nKVHeads: nKV, headDim: hd)
        }, T * nH * hd)
        report("attention \(nSeq)×L\(L), no att", best {
            attentionForward(y, nil, q: q, k: k, v: v, batch: batch, nHeads: nH, nKVHeads: nKV, headDim: hd)
        }, T * nH * hd)
        let longBatch = PackedBatch(lengths: [512, 512])
        let attLong = buffer(longBatch.attentionScratchCount(nHeads: nH), &rng)
        report("attention 2×L512 (sgemm path)", best(3) {
            attentionForward(y, attLong, q: q, k: k, v: v, batch: longBatch, nHeads: nH, nKVHeads: nKV, headDim: hd)
        }, T * nH * hd)
        // loops vs sgemm per (sequence, head), by sequence length (sets attentionSgemmMinLength)
        let saved = attentionSgemmMinLength
        for len in [4, 8, 12, 16, 24, 32, 64, 128] {
            let b = PackedBatch(lengths: Array(repeating: len, count: T / len))
            attentionSgemmMinLength = Int.max
            let loops = best(3) { attentionForward(y, nil, q: q, k: k, v: v, batch: b, nHeads: nH, nKVHeads: nKV, headDim: hd) }
            attentionSgemmMinLength = 1
            let gemm = best(3) { attentionForward(y, nil, q: q, k: k, v: v, batch: b, nHeads: nH, nKVHeads: nKV, headDim: hd) }
            print(String(format: "  attention %d×L%d: loops %.2f ms, sgemm %.2f ms", T / len, len, loops * 1e3, gemm * 1e3))
        }
        attentionSgemmMinLength = saved
        report("swiglu (\(T)×\(F))", best { swigluForward(h, gate: g, up: u, N: T * F) }, T * F)
        report("residual add (\(T)×\(C))", best { addInPlace(y, x, N: T * C) }, T * C)
        report("softmax (\(nSeq)×\(V))", best { softmaxForward(probs, logits, rows: nSeq, cols: V) }, nSeq * V)
        report("log-softmax (\(nSeq)×\(V))", best { logSoftmaxForward(probs, logits, rows: nSeq, cols: V) }, nSeq * V)
        let dq = buffer(T * nH * hd, &rng), dk = buffer(T * nKV * hd, &rng), dv = buffer(T * nKV * hd, &rng)
        report("attention backward \(nSeq)×L\(L)", best {
            attentionBackward(dq: dq, dk: dk, dv: dv, dout: y, q: q, k: k, v: v, att: att, batch: batch,
                              nHeads: nH, nKVHeads: nKV, headDim: hd)
        }, T * nH * hd)
        report("swiglu backward (\(T)×\(F))", best { swigluBackward(dgate: h, dup: u, dout: g, gate: g, up: u, N: T * F) }, T * F)

        // Synthetic model forward: 30 blocks of SmolLM2-135M's shape, then the LM head on the last rows.
        let wq = buffer(C * C, &rng, 0.05), wk = buffer(nKV * hd * C, &rng, 0.05), wv = buffer(nKV * hd * C, &rng, 0.05)
        let wo = buffer(C * C, &rng, 0.05), wg = buffer(F * C, &rng, 0.05), wu = buffer(F * C, &rng, 0.05)
        let wd = buffer(C * F, &rng, 0.05), emb = buffer(V * C, &rng, 0.05)
        let resid = buffer(T * C, &rng), xn = buffer(T * C, &rng), attOut = buffer(T * C, &rng), last = buffer(nSeq * C, &rng)
        var opTime = [String: Double]()
        func timed(_ name: String, _ body: () -> Void) { opTime[name, default: 0] += seconds(body) }
        let total = seconds {
            for _ in 0..<blocks {
                timed("rmsnorm") { rmsnormForward(xn, rstd, resid, w, T: T, C: C, eps: 1e-5) }
                timed("matmul") {
                    matmulForward(q, xn, wq, nil, T: T, C: C, OC: C)
                    matmulForward(k, xn, wk, nil, T: T, C: C, OC: nKV * hd)
                    matmulForward(v, xn, wv, nil, T: T, C: C, OC: nKV * hd)
                }
                timed("rope") {
                    ropeForward(q, positions: positions, T: T, nHeads: nH, table: table)
                    ropeForward(k, positions: positions, T: T, nHeads: nKV, table: table)
                }
                timed("attention") { attentionForward(attOut, nil, q: q, k: k, v: v, batch: batch, nHeads: nH, nKVHeads: nKV, headDim: hd) }
                timed("matmul") { matmulForward(xn, attOut, wo, nil, T: T, C: C, OC: C) }
                timed("add") { addInPlace(resid, xn, N: T * C) }
                timed("rmsnorm") { rmsnormForward(xn, rstd, resid, w, T: T, C: C, eps: 1e-5) }
                timed("matmul") {
                    matmulForward(g, xn, wg, nil, T: T, C: C, OC: F)
                    matmulForward(u, xn, wu, nil, T: T, C: C, OC: F)
                }
                timed("swiglu") { swigluForward(h, gate: g, up: u, N: T * F) }
                timed("matmul") { matmulForward(xn, h, wd, nil, T: T, C: F, OC: C) }
                timed("add") { addInPlace(resid, xn, N: T * C) }
            }
            timed("lm head") {
                for (i, r) in batch.lastRows.enumerated() { (last + i * C).update(from: resid + r * C, count: C) }
                rmsnormForward(last, rstd, last, w, T: nSeq, C: C, eps: 1e-5)
                matmulForward(logits, last, emb, nil, T: nSeq, C: C, OC: V)
                softmaxForward(probs, logits, rows: nSeq, cols: V)
            }
        }
        print(String(format: "  synthetic SmolLM2-135M forward, %d tokens: %.3f s = %.0f tokens/s", T, total, Double(T) / total))
        for (name, s) in opTime.sorted(by: { $0.value > $1.value }) {
            print(String(format: "    %-10@ %7.1f ms (%4.1f%%)", name as NSString, s * 1e3, 100 * s / total))
        }
    }
}
