import Foundation
import XCTest
import ModelFormats
@testable import LlamaModel

// Throughput of the forward pass on a random model of the sample model's shape
// (SmolLM2-135M: 30 blocks, C 576, 9 heads / 3 KV heads, FFN 1536, vocab 49152).
// Runs only with LFTF_BENCH=1 (numbers for BENCHMARKS.md; not a correctness test).

final class ForwardBenchmarkTests: XCTestCase {
    func testThroughputSampleShape() throws {
        guard ProcessInfo.processInfo.environment["LFTF_BENCH"] == "1" else { throw XCTSkip("set LFTF_BENCH=1") }
        let C = 576, H = 9, KV = 3, hd = 64, F = 1536, V = 49152, layers = 30
        let config = ModelConfig(architecture: "llama", hiddenSize: C, intermediateSize: F, numLayers: layers,
                                 numHeads: H, numKVHeads: KV, headDim: hd, vocabSize: V, rmsNormEps: 1e-5,
                                 ropeTheta: 1e5, ropeStyle: .adjacentPairs, tieWordEmbeddings: true, maxPositions: 2048)
        let ck = MemoryCheckpoint(config: config)
        var r = SeededRandom(state: 1)
        ck.add("token_embd.weight", shape: [V, C], r.array(V * C, scale: 0.1))
        for i in 0..<layers {
            ck.add("blk.\(i).attn_norm.weight", shape: [C], r.array(C, scale: 0.1, offset: 1))
            ck.add("blk.\(i).attn_q.weight", shape: [H * hd, C], r.array(H * hd * C, scale: 0.05))
            ck.add("blk.\(i).attn_k.weight", shape: [KV * hd, C], r.array(KV * hd * C, scale: 0.05))
            ck.add("blk.\(i).attn_v.weight", shape: [KV * hd, C], r.array(KV * hd * C, scale: 0.05))
            ck.add("blk.\(i).attn_output.weight", shape: [C, H * hd], r.array(C * H * hd, scale: 0.05))
            ck.add("blk.\(i).ffn_norm.weight", shape: [C], r.array(C, scale: 0.1, offset: 1))
            ck.add("blk.\(i).ffn_gate.weight", shape: [F, C], r.array(F * C, scale: 0.05))
            ck.add("blk.\(i).ffn_up.weight", shape: [F, C], r.array(F * C, scale: 0.05))
            ck.add("blk.\(i).ffn_down.weight", shape: [C, F], r.array(C * F, scale: 0.05))
        }
        ck.add("output_norm.weight", shape: [C], r.array(C, scale: 0.1, offset: 1))
        let model = try LlamaModel(checkpoint: ck)
        let clock = ContinuousClock()
        for (n, len) in [(32, 8), (16, 64), (900, 7)] {
            let prompts = (0..<n).map { i in (0..<len).map { (i * 131 + $0 * 17) % V } }
            _ = try model.lastTokenLogits(prompts: Array(prompts.prefix(2)))
            let t0 = clock.now
            _ = try model.lastTokenLogits(prompts: prompts)
            let d = clock.now - t0
            let s = Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
            print(String(format: "bench %d prompts x %d tokens: %.3f s, %.0f tokens/s", n, len, s, Double(n * len) / s))
        }
    }
}

/// A big checkpoint (e.g. `lftf-patch synth --preset 7b`) through the engine with a bounded
/// weight cache: LFTF_BENCH_MODEL=DIR LFTF_BENCH_CACHE_GIB=4 (only with LFTF_BENCH=1).
/// Prints the time and the process's peak RSS.
final class ForwardBigModelBenchmarkTests: XCTestCase {
    func testBigModelStreaming() throws {
        let env = ProcessInfo.processInfo.environment
        guard env["LFTF_BENCH"] == "1", let path = env["LFTF_BENCH_MODEL"] else { throw XCTSkip("set LFTF_BENCH=1 LFTF_BENCH_MODEL=DIR") }
        let gib = Double(env["LFTF_BENCH_CACHE_GIB"] ?? "4") ?? 4
        let clock = ContinuousClock()
        let t0 = clock.now
        let model = try LlamaModel(checkpoint: openCheckpoint(URL(fileURLWithPath: path)),
                                   options: .init(weightCacheBytes: Int(gib * Double(1 << 30))))
        let t1 = clock.now
        let V = model.config.vocabSize
        let prompts = (0..<8).map { i in (0..<8).map { (i * 131 + $0 * 17 + 1) % V } }
        let out = try model.lastTokenLogits(prompts: prompts, collectHidden: true)
        let t2 = clock.now
        XCTAssertTrue(out.logits.allSatisfy { $0.isFinite })
        var ru = rusage()
        getrusage(RUSAGE_SELF.rawValue, &ru)
        func s(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }
        print(String(format: "big model %s: %d blocks, %d cached (%.1f GiB budget); load %.1f s, 8x8 tokens forward %.1f s; peak RSS %.2f GiB",
                     (path as NSString).utf8String!, model.config.numLayers, model.cachedBlockCount, gib, s(t1 - t0), s(t2 - t1), Double(ru.ru_maxrss) / 1_048_576))
    }
}
