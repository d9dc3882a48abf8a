import Foundation
import XCTest
import ModelFormats
import TestSupport
@testable import LlamaModel

// The engine on the sample model (SmolLM2-135M-Instruct Q4_1) against the reference figures in
// ../shared/reference/: smollm2-135m-q4_1.json ("exact": llama.cpp F32 / numpy float64 over the
// dequantized weights) and smollm2-135m-layers.json (PyTorch float64 hidden states).
// Both the GGUF file (adjacent-pair RoPE, GGUF names) and its F32 safetensors conversion
// (HF names, rotate-half RoPE, Q/K rows un-permuted) must match.

struct ReferencePrompt: Decodable {
    struct Top: Decodable { var id: Int; var token: String; var p: Double; var logit: Double }
    struct Exact: Decodable { var p_he: Double; var p_she: Double; var top5: [Top] }
    var prompt: String
    var token_ids: [Int]
    var exact: Exact
}
struct ReferenceFile: Decodable { var prompts: [ReferencePrompt] }
struct LayerReference: Decodable {
    struct Prompt: Decodable { var prompt: String; var token_ids: [Int]; var block_cos_distance: [Double]; var residual_norm_in: [Double] }
    var prompts: [Prompt]
}

/// ../shared next to the checkout (CI), or next to the main checkout when run from a worktree.
func referenceURL(_ name: String) throws -> URL {
    let candidates = [sharedDirectory, repositoryRoot.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared")]
    for d in candidates {
        let u = d.appendingPathComponent("reference").appendingPathComponent(name)
        if FileManager.default.fileExists(atPath: u.path) { return u }
    }
    if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("reference \(name) not found next to the checkout") }
    throw XCTSkip("reference \(name) not found in \(candidates.map(\.path))")
}

/// The built `lftf-patch` binary (next to the test bundle).
func builtBinary() throws -> URL {
    var dirs: [URL] = []
    if let exe = Bundle.main.executableURL { dirs.append(exe.deletingLastPathComponent()) }
    for b in Bundle.allBundles { dirs.append(b.bundleURL.deletingLastPathComponent()) }
    dirs.append(repositoryRoot.appendingPathComponent(".build/release"))
    dirs.append(repositoryRoot.appendingPathComponent(".build/debug"))
    for d in dirs {
        let u = d.appendingPathComponent("lftf-patch")
        if FileManager.default.isExecutableFile(atPath: u.path) { return u }
    }
    throw XCTSkip("lftf-patch binary not built (swift build --build-tests builds it)")
}

/// The sample GGUF converted to an F32 safetensors directory by `lftf-patch convert`, made
/// once per test process in a temporary directory and removed at exit.
enum ConvertedSample {
    static var url: URL?
    static func get() throws -> URL {
        if let u = url { return u }
        let gguf = try requireSampleModel()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lftf-engine-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let out = dir.appendingPathComponent("smollm2-f32")
        let p = Process()
        p.executableURL = try builtBinary()
        p.arguments = ["convert", gguf.path, "--to", "safetensors", "--dtype", "f32", "-o", out.path, "--quiet"]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw XCTSkip("lftf-patch convert failed with status \(p.terminationStatus)")
        }
        atexit { if let u = ConvertedSample.url { try? FileManager.default.removeItem(at: u.deletingLastPathComponent()) } }
        url = out
        return out
    }
}

final class ForwardSampleModelTests: XCTestCase {
    static var ggufModel: LlamaModel?

    func ggufModel() throws -> LlamaModel {
        if let m = Self.ggufModel { return m }
        let m = try LlamaModel(checkpoint: GGUFCheckpoint(url: try requireSampleModel()))
        Self.ggufModel = m
        return m
    }

    func checkAgainstReference(_ model: LlamaModel, label: String) throws {
        let ref = try JSONDecoder().decode(ReferenceFile.self, from: Data(contentsOf: referenceURL("smollm2-135m-q4_1.json")))
        XCTAssertEqual(ref.prompts.count, 8)
        let out = try model.lastTokenLogits(prompts: ref.prompts.map(\.token_ids))
        var maxDP = 0.0, maxDL = 0.0
        for (i, r) in ref.prompts.enumerated() {
            let logits = out.logits(i)
            let logZ = NextToken.logSumExp(logits)
            func p(_ id: Int) -> Double { exp(Double(logits[id]) - logZ) }
            let top = NextToken.top(logits, k: 5)
            XCTAssertEqual(top.map(\.id), r.exact.top5.map(\.id), "\(label) top-5 ids of '\(r.prompt)'")
            for t in r.exact.top5 {
                maxDP = max(maxDP, abs(p(t.id) - t.p))
                maxDL = max(maxDL, abs(Double(logits[t.id]) - t.logit))
            }
            maxDP = max(maxDP, abs(p(384) - r.exact.p_he), abs(p(1041) - r.exact.p_she))
        }
        print("\(label): max |Δp| \(maxDP), max |Δlogit| \(maxDL) over 8 reference prompts")
        XCTAssertLessThan(maxDP, 1e-3, label)
        XCTAssertLessThan(maxDL, 1e-2, label)
    }

    func checkHiddenStates(_ model: LlamaModel, label: String) throws {
        let ref = try JSONDecoder().decode(LayerReference.self, from: Data(contentsOf: referenceURL("smollm2-135m-layers.json")))
        let out = try model.lastTokenLogits(prompts: ref.prompts.map(\.token_ids), collectHidden: true)
        let L = model.config.numLayers
        var maxCos = 0.0, maxNormRel = 0.0
        for (i, r) in ref.prompts.enumerated() {
            XCTAssertEqual(r.residual_norm_in.count, L + 1)
            XCTAssertEqual(r.block_cos_distance.count, L)
            let h = (0...L).map { Array(out.hidden(i, layer: $0)!).map(Double.init) }
            for l in 0...L {
                let n = h[l].reduce(0) { $0 + $1 * $1 }.squareRoot()
                maxNormRel = max(maxNormRel, abs(n - r.residual_norm_in[l]) / r.residual_norm_in[l])
            }
            for l in 0..<L {
                let dot = zip(h[l], h[l + 1]).reduce(0) { $0 + $1.0 * $1.1 }
                let cos = dot / (h[l].reduce(0) { $0 + $1 * $1 }.squareRoot() * h[l + 1].reduce(0) { $0 + $1 * $1 }.squareRoot())
                maxCos = max(maxCos, abs((1 - cos) - r.block_cos_distance[l]))
            }
        }
        print("\(label): max |Δ(1-cos)| \(maxCos), max relative |Δ‖h‖| \(maxNormRel)")
        XCTAssertLessThan(maxCos, 1e-3, label)
        XCTAssertLessThan(maxNormRel, 1e-3, label)
    }

    func testGGUFMatchesReference() throws { try checkAgainstReference(try ggufModel(), label: "GGUF") }
    func testGGUFHiddenStatesMatchReference() throws { try checkHiddenStates(try ggufModel(), label: "GGUF") }

    func testSafetensorsMatchesReference() throws {
        let model = try LlamaModel(checkpoint: openCheckpoint(try ConvertedSample.get()))
        XCTAssertEqual(model.config.ropeStyle, .halves)
        try checkAgainstReference(model, label: "safetensors F32")
        try checkHiddenStates(model, label: "safetensors F32")
    }

    /// Streaming blocks (no cache) and tiny batches give the cached engine's numbers.
    func testStreamingWeightsSameAsCached() throws {
        let ref = try JSONDecoder().decode(ReferenceFile.self, from: Data(contentsOf: referenceURL("smollm2-135m-q4_1.json")))
        let prompts = ref.prompts.map(\.token_ids)
        let cached = try ggufModel().lastTokenLogits(prompts: prompts)
        let streaming = try LlamaModel(checkpoint: GGUFCheckpoint(url: try requireSampleModel()),
                                       options: .init(weightCacheBytes: 20 << 20, maxBatchTokens: 9, groupTokens: 20))
        XCTAssertGreaterThan(streaming.cachedBlockCount, 0)
        XCTAssertLessThan(streaming.cachedBlockCount, 30)
        let s = try streaming.lastTokenLogits(prompts: prompts)
        XCTAssertLessThan(zip(cached.logits, s.logits).map { abs($0 - $1) }.max()!, 1e-4)
    }
}
