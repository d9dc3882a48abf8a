import Foundation
import XCTest
import ModelFormats
import TensorMath
import TestSupport
@testable import LlamaModel

// llama.cpp's `rope_freqs.weight` (per-pair RoPE frequency divisors, how its converter stores
// Llama 3.1 "llama3" rope scaling) and the same factors computed from an HF config.

/// The factors as llama.cpp's convert_hf_to_gguf.py computes them (LlamaModel): frequencies
/// in float32 as torch does, written here independently of `RopeFrequencies.llama3Factors`.
func converterLlama3Factors(headDim: Int, theta: Float, factor: Double, low: Double, high: Double, orig: Int) -> [Float] {
    (0..<(headDim / 2)).map { i -> Float in
        let freq = Double(1 / Foundation.pow(theta, Float(2 * i) / Float(headDim)))
        let wavelen = 2 * Double.pi / freq
        if wavelen < Double(orig) / high { return 1 }
        if wavelen > Double(orig) / low { return Float(factor) }
        let smooth = (Double(orig) / wavelen - low) / (high - low)
        return Float(1 / ((1 - smooth) / factor + smooth))
    }
}

final class RopeFrequencyTests: XCTestCase {
    let prompts: [[Int]] = [[5, 17, 3, 60, 2], [9], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [66, 0, 33]]

    func logits(_ m: LlamaModel, _ prompts: [[Int]]) throws -> [[Float]] {
        let out = try m.lastTokenLogits(prompts: prompts)
        return prompts.indices.map { Array(out.logits($0)) }
    }

    func maxAbs(_ a: [[Float]], _ b: [[Float]]) -> Double {
        zip(a, b).reduce(0.0) { m, p in zip(p.0, p.1).reduce(m) { max($0, Double(abs($1.0 - $1.1))) } }
    }

    /// Arbitrary factors from the tensor: logits equal the float64 reference RoPE that divides
    /// each pair's frequency, and differ from the same weights without the tensor.
    func testGGUFFactorsMatchReferenceAndChangeLogits() throws {
        for style in [RopeStyle.adjacentPairs, .halves] {
            let scaled = tinyCheckpoint(seed: 21, ropeStyle: style, tied: true)
            scaled.add(RopeFrequencies.ggufTensorName, shape: [4], [0.5, 3, 0.25, 7])
            let plain = tinyCheckpoint(seed: 21, ropeStyle: style, tied: true)
            let model = try LlamaModel(checkpoint: scaled)
            XCTAssertEqual(model.ropeFrequencyFactors, [0.5, 3, 0.25, 7])
            let got = try logits(model, prompts)
            var worst = 0.0
            for (i, p) in prompts.enumerated() { worst = max(worst, maxDiff(got[i], naiveForward(scaled, p).logits)) }
            XCTAssertLessThan(worst, 2e-4, "\(style)")
            let unscaled = try logits(LlamaModel(checkpoint: plain), prompts)
            let change = maxAbs(got, unscaled)
            print("rope_freqs \(style): max |Δlogit| vs reference \(worst), vs unscaled \(change)")
            XCTAssertGreaterThan(change, 0.05, "the factors must change the logits")
        }
    }

    func testMalformedRopeFreqsAreErrors() {
        func model(_ edit: (MemoryCheckpoint) -> Void) -> Error? {
            let ck = tinyCheckpoint(seed: 22, ropeStyle: .adjacentPairs, tied: true, layers: 1)
            edit(ck)
            do { _ = try LlamaModel(checkpoint: ck); return nil } catch { return error }
        }
        let name = RopeFrequencies.ggufTensorName
        XCTAssertEqual(model { $0.add(name, shape: [3], [1, 2, 3]) } as? RopeFrequencyError,
                       .wrongShape(name: name, expected: [4], found: [3]))
        XCTAssertEqual(model { $0.add(name, shape: [2, 2], [1, 2, 3, 4]) } as? RopeFrequencyError,
                       .wrongShape(name: name, expected: [4], found: [2, 2]))
        XCTAssertEqual(model { $0.add(name, shape: [4], [1, 2, 0, 4]) } as? RopeFrequencyError,
                       .badFactor(name: name, index: 2, value: 0))
        XCTAssertEqual(model { $0.add(name, shape: [4], [1, -2, 3, 4]) } as? RopeFrequencyError,
                       .badFactor(name: name, index: 1, value: -2))
        let nan = model { $0.add(name, shape: [4], [1, 2, 3, .nan]) } as? RopeFrequencyError
        if case .badFactor(_, 3, let v)? = nan { XCTAssertTrue(v.isNaN) } else { XCTFail("\(String(describing: nan))") }
        XCTAssertEqual(model { $0.add(name, shape: [4], [1, 2, .infinity, 4]) } as? RopeFrequencyError,
                       .badFactor(name: name, index: 2, value: .infinity))
        let f16 = model { ck in
            ck.add(name, shape: [4], [1, 1, 1, 1])
            ck.tensors[ck.tensors.count - 1].dtype = .f16
        }
        XCTAssertEqual(f16 as? RopeFrequencyError, .wrongDType(name: name, found: .f16))
        XCTAssertTrue("\(f16!)".contains("F32") || "\(f16!)".contains("f32"), "\(f16!)")
        // llama3 metadata and the tensor together would scale twice
        let both: Error? = {
            let ck = tinyCheckpoint(seed: 22, ropeStyle: .adjacentPairs, tied: true,
                                    scaling: RopeScaling(type: "llama3", factor: 8), layers: 1)
            ck.add(name, shape: [4], [1, 2, 3, 4])
            do { _ = try LlamaModel(checkpoint: ck); return nil } catch { return error }
        }()
        guard case .badConfig(let msg)? = both as? LlamaModelError else { return XCTFail("\(String(describing: both))") }
        XCTAssertTrue(msg.contains("twice"), msg)
    }

    // Llama 3.1-like scaling squeezed into the tiny model's range (head dim 16, theta 1e4):
    // wavelengths 6.3, 20, 63 are blended, 199 and longer divided by 8.
    static let llama3 = RopeScaling(type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 16, originalMaxPositions: 64)

    /// The same weights as HF (rope_scaling llama3) and as GGUF with the factors llama.cpp's
    /// converter writes for that scaling: equal logits, different from unscaled.
    func testHFLlama3EqualsGGUFRopeFreqs() throws {
        var c = SyntheticModel.tinyConfig()
        let dir = try TinyModel.scratchDirectory("ropefreqs")
        let hfPlain = try LlamaModel(checkpoint: HFCheckpoint(directory: TinyModel.hfDirectory()))
        c.ropeScaling = Self.llama3
        try SyntheticModel.writeHF(to: dir.appendingPathComponent("hf"), config: c, seed: TinyModel.seed)
        let factors = converterLlama3Factors(headDim: c.headDim, theta: Float(c.ropeTheta), factor: 8, low: 1, high: 16, orig: 64)
        XCTAssertEqual(factors.filter { $0 == 1 }.count, 0)
        XCTAssertEqual(factors.filter { $0 == 8 }.count, 5)
        var ggufConfig = c
        ggufConfig.ropeScaling = nil
        let ggufURL = dir.appendingPathComponent("llama3.gguf")
        try SyntheticModel.writeGGUF(to: ggufURL, config: ggufConfig, seed: TinyModel.seed, ropeFreqs: factors)

        let hf = try LlamaModel(checkpoint: HFCheckpoint(directory: dir.appendingPathComponent("hf")))
        let gguf = try LlamaModel(checkpoint: GGUFCheckpoint(url: ggufURL))
        // one per-pair table: the HF config's factors are the converter's (to float32 rounding)
        let hfFactors = try XCTUnwrap(hf.ropeFrequencyFactors)
        for (a, b) in zip(hfFactors, factors) { XCTAssertEqual(a, Double(b), accuracy: 1e-6 * a) }
        // and the same frequencies TensorMath's own llama3 rule gives
        let l3 = RopeTable(headDim: c.headDim, theta: c.ropeTheta, pairing: .halves, maxPositions: 1,
                           scalingType: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 16, originalMaxPositions: 64)
        for (a, b) in zip(hf.rope.invFreq, l3.invFreq) { XCTAssertEqual(a, b, accuracy: 1e-12 * b) }

        let long = (0..<40).map { ($0 * 7 + 3) % 200 }
        let ps = prompts + [long]
        let a = try logits(hf, ps), b = try logits(gguf, ps), plain = try logits(hfPlain, ps)
        print("llama3 HF vs GGUF rope_freqs: max |Δlogit| \(maxAbs(a, b)); vs unscaled \(maxAbs(a, plain))")
        XCTAssertLessThan(maxAbs(a, b), 1e-4)
        XCTAssertGreaterThan(maxAbs(a, plain), 1e-2)

        // convert: config.json gets rope_scaling llama3 that reproduces the factors, and the
        // converted model gives the same logits
        let out = dir.appendingPathComponent("converted")
        var notes: [String] = []
        try convertGGUFToHF(GGUFCheckpoint(url: ggufURL), to: out, dtype: .f32, maxShardBytes: nil, note: { notes.append($0) })
        XCTAssertFalse(notes.contains { $0.contains("skipping") && $0.contains("rope_freqs") }, "\(notes)")
        XCTAssertTrue(notes.contains { $0.contains("rope_scaling llama3") }, "\(notes)")
        let conv = try HFCheckpoint(directory: out)
        let s = try XCTUnwrap(conv.config.ropeScaling)
        XCTAssertEqual(s.type, "llama3")
        XCTAssertEqual(s.factor, 8)
        // the factors fix only low/high relative to original_max_position_embeddings (8192 assumed)
        XCTAssertEqual(s.originalMaxPositions, 8192)
        XCTAssertEqual(s.lowFreqFactor ?? 0, 128, accuracy: 1e-3)
        XCTAssertEqual(s.highFreqFactor ?? 0, 2048, accuracy: 1e-3)
        let convModel = try LlamaModel(checkpoint: conv)
        for (x, y) in zip(try XCTUnwrap(convModel.ropeFrequencyFactors), factors) { XCTAssertEqual(x, Double(y), accuracy: 1e-5 * x) }
        XCTAssertLessThan(maxAbs(try logits(convModel, ps), b), 1e-4)
    }

    /// Llama 3.1 8B's parameters come back exactly from its 64 factors.
    func testRecoverLlama31Parameters() throws {
        let f = converterLlama3Factors(headDim: 128, theta: 500000, factor: 8, low: 1, high: 4, orig: 8192)
        let s = try RopeFrequencies.recoverLlama3(factors: f.map(Double.init), headDim: 128, theta: 500000, originalMaxPositions: nil)
        XCTAssertEqual(s, RopeScaling(type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192))
        // Llama 3.2 (factor 32)
        let g = converterLlama3Factors(headDim: 64, theta: 500000, factor: 32, low: 1, high: 4, orig: 8192)
        XCTAssertEqual(try RopeFrequencies.recoverLlama3(factors: g.map(Double.init), headDim: 64, theta: 500000, originalMaxPositions: nil),
                       RopeScaling(type: "llama3", factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192))
        // not llama3: the highest frequency scaled, or non-monotone factors
        XCTAssertThrowsError(try RopeFrequencies.recoverLlama3(factors: [0.5, 3, 0.25, 7], headDim: 8, theta: 1e4, originalMaxPositions: nil))
        XCTAssertThrowsError(try RopeFrequencies.recoverLlama3(factors: [1, 3, 1.5, 7], headDim: 8, theta: 1e4, originalMaxPositions: nil))
    }

    /// convert refuses factors no llama3 scaling produces instead of dropping them.
    func testConvertRefusesNonLlama3Factors() throws {
        let dir = try TinyModel.scratchDirectory("ropefreqsbad")
        let url = dir.appendingPathComponent("odd.gguf")
        let c = SyntheticModel.tinyConfig()
        try SyntheticModel.writeGGUF(to: url, config: c, seed: TinyModel.seed,
                                     ropeFreqs: [2, 1, 3, 1, 5, 1, 7, 1])
        let out = dir.appendingPathComponent("out")
        XCTAssertThrowsError(try convertGGUFToHF(GGUFCheckpoint(url: url), to: out, dtype: .f32, maxShardBytes: nil)) { e in
            guard case .ropeFrequencies(let m)? = e as? HFConvertError else { return XCTFail("\(e)") }
            XCTAssertTrue(m.contains("llama3"), m)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
        // but the engine runs it
        XCTAssertEqual(try LlamaModel(checkpoint: GGUFCheckpoint(url: url)).ropeFrequencyFactors, [2, 1, 3, 1, 5, 1, 7, 1])
        // a non-F32 tensor in a real file is refused at load
        let f16 = dir.appendingPathComponent("f16.gguf")
        try SyntheticModel.writeGGUF(to: f16, config: c, seed: TinyModel.seed, ropeFreqs: [Float](repeating: 1, count: 8), ropeFreqsType: .f16)
        XCTAssertThrowsError(try LlamaModel(checkpoint: GGUFCheckpoint(url: f16))) { e in
            XCTAssertEqual(e as? RopeFrequencyError, .wrongDType(name: RopeFrequencies.ggufTensorName, found: .f16))
        }
    }
}
