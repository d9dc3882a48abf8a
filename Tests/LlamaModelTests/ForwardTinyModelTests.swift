import Foundation
import XCTest
import ModelFormats
import TensorMath
@testable import LlamaModel

// The engine against a plain, naive reference written here (loops in Double, one prompt at a
// time, no packing, no BLAS), on tiny seeded random models. Only checkpoint reading is shared.

// MARK: - An in-memory checkpoint with GGUF tensor names

final class MemoryCheckpoint: Checkpoint {
    let format = CheckpointFormat.gguf
    let location = URL(fileURLWithPath: "/dev/null")
    let files: [URL] = []
    var tensors: [TensorInfo] = []
    let config: ModelConfig
    var values: [String: [Float]] = [:]

    init(config: ModelConfig) { self.config = config }

    func add(_ name: String, shape: [Int], _ v: [Float]) {
        precondition(shape.reduce(1, *) == v.count)
        tensors.append(TensorInfo(name: name, dtype: .f32, shape: shape, fileIndex: 0, offset: 0, byteCount: v.count * 4))
        values[name] = v
    }
    func tensorInfo(named name: String) -> TensorInfo? { tensors.first { $0.name == name } }
    func name(for role: TensorRole) -> String { TensorNames.gguf(role) }
    func rawBytes(_ tensor: TensorInfo) throws -> UnsafeRawBufferPointer { throw LlamaModelError.missingTensor(tensor.name) }
    func floats(_ tensor: TensorInfo) throws -> [Float] {
        guard let v = values[tensor.name] else { throw LlamaModelError.missingTensor(tensor.name) }
        return v
    }
}

/// SplitMix64 (ModelFormats' SyntheticRNG), so the tiny models are the same on every machine.
struct SeededRandom {
    var rng: SyntheticRNG
    init(state: UInt64) { rng = SyntheticRNG(seed: state) }
    mutating func next() -> UInt64 { rng.next() }
    /// Uniform in [-scale, scale).
    mutating func uniform(_ scale: Float) -> Float { (Float(next() >> 40) / Float(1 << 24) * 2 - 1) * scale }
    mutating func array(_ n: Int, scale: Float, offset: Float = 0) -> [Float] { (0..<n).map { _ in offset + uniform(scale) } }
}

func tinyCheckpoint(seed: UInt64, architecture: String = "llama", ropeStyle: RopeStyle, tied: Bool,
                    bias: Bool = false, scaling: RopeScaling? = nil, layers: Int = 3) -> MemoryCheckpoint {
    let C = 32, H = 4, KV = 2, hd = 8, F = 48, V = 67
    let config = ModelConfig(architecture: architecture, hiddenSize: C, intermediateSize: F, numLayers: layers,
                             numHeads: H, numKVHeads: KV, headDim: hd, vocabSize: V, rmsNormEps: 1e-5,
                             ropeTheta: 10000, ropeScaling: scaling, ropeStyle: ropeStyle, tieWordEmbeddings: tied,
                             attentionBias: bias, maxPositions: 64)
    let ck = MemoryCheckpoint(config: config)
    var r = SeededRandom(state: seed)
    ck.add("token_embd.weight", shape: [V, C], r.array(V * C, scale: 1))
    for i in 0..<layers {
        ck.add("blk.\(i).attn_norm.weight", shape: [C], r.array(C, scale: 0.3, offset: 1))
        ck.add("blk.\(i).attn_q.weight", shape: [H * hd, C], r.array(H * hd * C, scale: 0.4))
        ck.add("blk.\(i).attn_k.weight", shape: [KV * hd, C], r.array(KV * hd * C, scale: 0.4))
        ck.add("blk.\(i).attn_v.weight", shape: [KV * hd, C], r.array(KV * hd * C, scale: 0.3))
        ck.add("blk.\(i).attn_output.weight", shape: [C, H * hd], r.array(C * H * hd, scale: 0.3))
        if bias {
            ck.add("blk.\(i).attn_q.bias", shape: [H * hd], r.array(H * hd, scale: 0.5))
            ck.add("blk.\(i).attn_k.bias", shape: [KV * hd], r.array(KV * hd, scale: 0.5))
            ck.add("blk.\(i).attn_v.bias", shape: [KV * hd], r.array(KV * hd, scale: 0.5))
        }
        ck.add("blk.\(i).ffn_norm.weight", shape: [C], r.array(C, scale: 0.3, offset: 1))
        ck.add("blk.\(i).ffn_gate.weight", shape: [F, C], r.array(F * C, scale: 0.3))
        ck.add("blk.\(i).ffn_up.weight", shape: [F, C], r.array(F * C, scale: 0.3))
        ck.add("blk.\(i).ffn_down.weight", shape: [C, F], r.array(C * F, scale: 0.3))
    }
    ck.add("output_norm.weight", shape: [C], r.array(C, scale: 0.3, offset: 1))
    if !tied { ck.add("output.weight", shape: [V, C], r.array(V * C, scale: 0.5)) }
    return ck
}

// MARK: - The naive reference

/// One prompt through the model, the textbook way. Returns last-token logits and the hidden
/// state at the last token entering every block and leaving the last.
func naiveForward(_ ck: MemoryCheckpoint, _ tokens: [Int], override: (Int, String, [Float])? = nil)
    -> (logits: [Double], hidden: [[Double]]) {
    let c = ck.config
    let C = c.hiddenSize, H = c.numHeads, KV = c.numKVHeads, hd = c.headDim, F = c.intermediateSize
    let T = tokens.count
    func w(_ name: String) -> [Double] {
        if let o = override, name == "blk.\(o.0).\(o.1)" { return o.2.map(Double.init) }
        return ck.values[name]!.map(Double.init)
    }
    func mat(_ x: [Double], _ W: [Double], rows OC: Int, cols IC: Int) -> [Double] {
        (0..<OC).map { o in (0..<IC).reduce(0.0) { $0 + W[o * IC + $1] * x[$1] } }
    }
    func rms(_ x: [Double], _ g: [Double]) -> [Double] {
        let ms = x.reduce(0.0) { $0 + $1 * $1 } / Double(x.count)
        let r = 1 / (ms + c.rmsNormEps).squareRoot()
        return zip(x, g).map { $0 * r * $1 }
    }
    func invFreq(_ i: Int) -> Double {
        var f = 1 / pow(c.ropeTheta, Double(2 * i) / Double(hd))
        if let s = c.ropeScaling, s.type == "linear" { f /= s.factor }
        // llama.cpp's rope_freqs.weight: pair i's frequency divided by factor i
        if let ff = ck.values["rope_freqs.weight"] { f /= Double(ff[i]) }
        return f
    }
    func rope(_ v: [Double], pos: Int) -> [Double] {
        var out = v
        for i in 0..<hd / 2 {
            let a = Double(pos) * invFreq(i)
            let (i0, i1) = c.ropeStyle == .adjacentPairs ? (2 * i, 2 * i + 1) : (i, i + hd / 2)
            out[i0] = v[i0] * cos(a) - v[i1] * sin(a)
            out[i1] = v[i0] * sin(a) + v[i1] * cos(a)
        }
        return out
    }
    let emb = w("token_embd.weight")
    var xs: [[Double]] = tokens.map { Array(emb[$0 * C ..< ($0 + 1) * C]) }
    var hidden: [[Double]] = []
    for l in 0..<c.numLayers {
        hidden.append(xs[T - 1])
        let p = "blk.\(l)."
        var qs: [[[Double]]] = [], ks: [[[Double]]] = [], vs: [[[Double]]] = []
        for t in 0..<T {
            let n = rms(xs[t], w(p + "attn_norm.weight"))
            var q = mat(n, w(p + "attn_q.weight"), rows: H * hd, cols: C)
            var k = mat(n, w(p + "attn_k.weight"), rows: KV * hd, cols: C)
            var v = mat(n, w(p + "attn_v.weight"), rows: KV * hd, cols: C)
            if c.attentionBias {
                q = zip(q, w(p + "attn_q.bias")).map(+); k = zip(k, w(p + "attn_k.bias")).map(+)
                v = zip(v, w(p + "attn_v.bias")).map(+)
            }
            qs.append((0..<H).map { rope(Array(q[$0 * hd ..< ($0 + 1) * hd]), pos: t) })
            ks.append((0..<KV).map { rope(Array(k[$0 * hd ..< ($0 + 1) * hd]), pos: t) })
            vs.append((0..<KV).map { Array(v[$0 * hd ..< ($0 + 1) * hd]) })
        }
        var next = xs
        for t in 0..<T {
            var att = [Double]()
            for h in 0..<H {
                let kvh = h / (H / KV)
                let scores = (0...t).map { s in zip(qs[t][h], ks[s][kvh]).reduce(0.0) { $0 + $1.0 * $1.1 } / Double(hd).squareRoot() }
                let m = scores.max()!
                let e = scores.map { exp($0 - m) }
                let z = e.reduce(0, +)
                att += (0..<hd).map { d in (0...t).reduce(0.0) { $0 + e[$1] / z * vs[$1][kvh][d] } }
            }
            let o = mat(att, w(p + "attn_output.weight"), rows: C, cols: H * hd)
            let hRes = zip(xs[t], o).map(+)
            let m = rms(hRes, w(p + "ffn_norm.weight"))
            let g = mat(m, w(p + "ffn_gate.weight"), rows: F, cols: C)
            let u = mat(m, w(p + "ffn_up.weight"), rows: F, cols: C)
            let s = zip(g, u).map { $0 / (1 + exp(-$0)) * $1 }
            next[t] = zip(hRes, mat(s, w(p + "ffn_down.weight"), rows: C, cols: F)).map(+)
        }
        xs = next
    }
    hidden.append(xs[T - 1])
    let head = ck.values["output.weight"] != nil ? w("output.weight") : emb
    let logits = mat(rms(xs[T - 1], w("output_norm.weight")), head, rows: c.vocabSize, cols: C)
    return (logits, hidden)
}

func maxDiff<A: Collection, B: Collection>(_ a: A, _ b: B) -> Double where A.Element == Float, B.Element == Double {
    zip(a, b).reduce(0.0) { max($0, abs(Double($1.0) - $1.1)) }
}

final class ForwardTinyModelTests: XCTestCase {
    let prompts: [[Int]] = [[5, 17, 3, 60, 2], [9], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [66, 0, 33]]

    func check(_ ck: MemoryCheckpoint, options: LlamaModel.Options = .init(), file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try LlamaModel(checkpoint: ck, options: options)
        let out = try model.lastTokenLogits(prompts: prompts, collectHidden: true)
        var worstLogit = 0.0, worstHidden = 0.0
        for (i, p) in prompts.enumerated() {
            let ref = naiveForward(ck, p)
            worstLogit = max(worstLogit, maxDiff(out.logits(i), ref.logits))
            for l in 0...ck.config.numLayers {
                worstHidden = max(worstHidden, maxDiff(out.hidden(i, layer: l)!, ref.hidden[l]))
            }
        }
        print("tiny \(ck.config.architecture) \(ck.config.ropeStyle) tied=\(ck.config.tieWordEmbeddings): max |Δlogit| \(worstLogit), max |Δhidden| \(worstHidden)")
        XCTAssertLessThan(worstLogit, 2e-4, file: file, line: line)
        XCTAssertLessThan(worstHidden, 2e-4, file: file, line: line)
    }

    func testAdjacentPairsUntied() throws { try check(tinyCheckpoint(seed: 1, ropeStyle: .adjacentPairs, tied: false)) }
    func testHalvesTied() throws { try check(tinyCheckpoint(seed: 2, ropeStyle: .halves, tied: true)) }
    func testQwen2Bias() throws { try check(tinyCheckpoint(seed: 3, architecture: "qwen2", ropeStyle: .halves, tied: false, bias: true)) }
    func testLinearRopeScaling() throws {
        try check(tinyCheckpoint(seed: 4, ropeStyle: .halves, tied: true, scaling: RopeScaling(type: "linear", factor: 4)))
    }

    /// Tiny groups and batches (every prompt its own batch) and no weight cache (every block
    /// dequantized per group) give the same numbers.
    func testChunkingAndStreamingWeights() throws {
        let ck = tinyCheckpoint(seed: 5, ropeStyle: .adjacentPairs, tied: true)
        let opts = LlamaModel.Options(weightCacheBytes: 0, maxBatchTokens: 4, groupTokens: 6)
        let model = try LlamaModel(checkpoint: ck, options: opts)
        XCTAssertEqual(model.cachedBlockCount, 0)
        try check(ck, options: opts)
        let full = try LlamaModel(checkpoint: ck).lastTokenLogits(prompts: prompts)
        let chunked = try model.lastTokenLogits(prompts: prompts)
        XCTAssertLessThan(zip(full.logits, chunked.logits).map { abs($0 - $1) }.max()!, 1e-5)
    }

    /// An overridden block changes the output exactly as the reference with that weight changed,
    /// and changing the override in place is seen by the next pass.
    func testOverrideBlock() throws {
        let ck = tinyCheckpoint(seed: 6, ropeStyle: .adjacentPairs, tied: false)
        let model = try LlamaModel(checkpoint: ck)
        let w = try model.trainableCopy(of: 1)
        var r = SeededRandom(state: 99)
        w.up = w.up.map { $0 + r.uniform(0.2) }
        try model.overrideBlock(1, with: w)
        var out = try model.lastTokenLogits(prompts: prompts)
        for (i, p) in prompts.enumerated() {
            XCTAssertLessThan(maxDiff(out.logits(i), naiveForward(ck, p, override: (1, "ffn_up.weight", w.up)).logits), 2e-4)
        }
        w.q.withUnsafeMutableBufferPointer { q in for j in q.indices { q[j] *= 0.5 } }
        out = try model.lastTokenLogits(prompts: prompts)
        let ref = naiveForward(ck, prompts[0], override: (1, "attn_q.weight", w.q))
        XCTAssertGreaterThan(maxDiff(out.logits(0), ref.logits), 1e-3, "q change must be seen")
        try model.overrideBlock(1, with: nil)
        out = try model.lastTokenLogits(prompts: prompts)
        XCTAssertLessThan(maxDiff(out.logits(0), naiveForward(ck, prompts[0]).logits), 2e-4)
        XCTAssertThrowsError(try model.overrideBlock(0, with: w))   // weights of block 1
    }

    /// Saving activations changes nothing; the saved tensors are consistent with each other;
    /// running blocks [L, end) on cached hidden states reproduces the full pass.
    func testActivationsAndBlockRanges() throws {
        let ck = tinyCheckpoint(seed: 7, ropeStyle: .halves, tied: true, bias: true, layers: 4)
        let model = try LlamaModel(checkpoint: ck)
        let c = ck.config, C = c.hiddenSize
        let batch = PackedBatch(lengths: prompts.map(\.count))
        var x = [Float](repeating: 0, count: batch.totalTokens * C)
        try x.withUnsafeMutableBufferPointer { try model.embed(prompts.flatMap { $0 }, into: $0.baseAddress!) }
        try x.withUnsafeMutableBufferPointer { try model.runBlocks(0..<2, x: $0.baseAddress!, batch: batch) }
        let entering2 = x
        var plain = x, saved = x
        let acts = BlockActivations(config: c, batch: batch)
        try plain.withUnsafeMutableBufferPointer { try model.blockForward(layer: 2, x: $0.baseAddress!, batch: batch) }
        try saved.withUnsafeMutableBufferPointer { try model.blockForward(layer: 2, x: $0.baseAddress!, batch: batch, acts: acts) }
        XCTAssertEqual(plain, saved)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: acts.input, count: x.count)), entering2)
        // Attention rows are probability distributions over earlier positions only.
        var off = 0
        for L in batch.lengths {
            for h in 0..<c.numHeads {
                for i in 0..<L {
                    let row = acts.att + off + (h * L + i) * L
                    let s = (0...i).reduce(Float(0)) { $0 + row[$1] }
                    XCTAssertEqual(s, 1, accuracy: 1e-5)
                    for j in (i + 1)..<max(L, i + 1) { XCTAssertEqual(row[j], 0) }
                }
            }
            off += c.numHeads * L * L
        }
        // swiglu = silu(gate) · up; output = residualAttn + swiglu @ downᵀ (row 0, feature 0).
        let F = c.intermediateSize
        for j in 0..<F {
            let g = acts.gate[j], u = acts.up[j]
            XCTAssertEqual(acts.swiglu[j], g / (1 + exp(-g)) * u, accuracy: 1e-5)
        }
        let down = try model.blockWeights(2).down
        let out0 = acts.residualAttn[0] + (0..<F).reduce(Float(0)) { $0 + acts.swiglu[$1] * down[$1] }
        XCTAssertEqual(saved[0], out0, accuracy: 1e-4)
        // Re-running blocks 2..<4 from the cached entering state gives the full pass's logits.
        try x.withUnsafeMutableBufferPointer { try model.runBlocks(2..<4, x: $0.baseAddress!, batch: batch) }
        let partial = x.withUnsafeBufferPointer { model.lastTokenLogits(x: $0.baseAddress!, batch: batch) }
        let full = try model.lastTokenLogits(prompts: prompts)
        XCTAssertLessThan(zip(partial, full.logits).map { abs($0 - $1) }.max()!, 1e-5)
    }

    func testBadInputs() throws {
        let ck = tinyCheckpoint(seed: 8, ropeStyle: .halves, tied: true)
        let model = try LlamaModel(checkpoint: ck)
        XCTAssertThrowsError(try model.lastTokenLogits(prompts: [[1, 2], []])) {
            XCTAssertEqual($0 as? LlamaModelError, .emptyPrompt(index: 1))
        }
        XCTAssertThrowsError(try model.lastTokenLogits(prompts: [[1, 67]])) {
            XCTAssertEqual($0 as? LlamaModelError, .tokenOutOfRange(id: 67, vocabSize: 67, prompt: 0))
        }
        XCTAssertThrowsError(try model.blockWeights(3))
        ck.values.removeValue(forKey: "blk.2.ffn_up.weight")
        ck.tensors.removeAll { $0.name == "blk.2.ffn_up.weight" }
        XCTAssertThrowsError(try LlamaModel(checkpoint: ck)) {
            XCTAssertEqual($0 as? LlamaModelError, .missingTensor("blk.2.ffn_up.weight"))
        }
    }

    func testTopAndProbabilities() {
        let logits: [Float] = [0.5, 3, -1, 3.5, 2]
        let top = NextToken.top(logits, k: 3)
        XCTAssertEqual(top.map(\.id), [3, 1, 4])
        let p = NextToken.probabilities(logits)
        XCTAssertEqual(p.reduce(0, +), 1, accuracy: 1e-6)
        let z = logits.map { exp(Double($0)) }.reduce(0, +)
        XCTAssertEqual(Double(p[3]), exp(3.5) / z, accuracy: 1e-7)
    }
}

final class ForwardConfigTests: XCTestCase {
    func testUnsupportedRopeScalingIsAnError() {
        let ck = tinyCheckpoint(seed: 9, ropeStyle: .halves, tied: true, scaling: RopeScaling(type: "yarn", factor: 4))
        XCTAssertThrowsError(try LlamaModel(checkpoint: ck)) { e in
            guard case .badConfig(let m)? = e as? LlamaModelError else { return XCTFail("\(e)") }
            XCTAssertTrue(m.contains("yarn"), m)
        }
    }

    func testHeadsMustShareKVHeadsEvenly() {
        let good = tinyCheckpoint(seed: 10, ropeStyle: .halves, tied: true)
        var c = good.config
        c.numKVHeads = 3
        let bad = MemoryCheckpoint(config: c)
        bad.tensors = good.tensors; bad.values = good.values
        XCTAssertThrowsError(try LlamaModel(checkpoint: bad)) { e in
            guard case .badConfig? = e as? LlamaModelError else { return XCTFail("\(e)") }
        }
    }

    func testWrongShapeNamesTheTensor() {
        let ck = tinyCheckpoint(seed: 11, ropeStyle: .halves, tied: true)
        let i = ck.tensors.firstIndex { $0.name == "blk.1.attn_k.weight" }!
        ck.tensors[i].shape = [ck.tensors[i].shape[1], ck.tensors[i].shape[0]]   // transposed
        XCTAssertThrowsError(try LlamaModel(checkpoint: ck)) { e in
            guard case .badShape(let name, _, _)? = e as? LlamaModelError else { return XCTFail("\(e)") }
            XCTAssertEqual(name, "blk.1.attn_k.weight")
        }
    }
}
