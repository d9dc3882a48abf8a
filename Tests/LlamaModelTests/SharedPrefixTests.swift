import XCTest
import Foundation
import ModelFormats
import TestSupport
@testable import LlamaModel

/// The shared-prefix forward (`forEachLastToken` with `sharePrefixes`) against the plain pass
/// and the naive reference.
final class SharedPrefixTests: XCTestCase {
    // MARK: grouping

    func testGroupingKeepsEveryPromptOnceWithANonEmptySuffix() {
        let seqs = [[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9], [7], [1, 2, 3, 4], [8, 8]]
        let groups = LlamaModel.prefixGroups(seqs)
        var seen: [Int: [Int]] = [:]
        for g in groups { for m in g.members { XCTAssertFalse(m.suffix.isEmpty); XCTAssertNil(seen[m.index]); seen[m.index] = g.prefix + m.suffix } }
        for (i, s) in seqs.enumerated() { XCTAssertEqual(seen[i], s) }
        // [1,2,3,4] ×2, [1,2,3,5], [1,2,9] share [1,2] (4·2 ≥ 3·3): 2 + 2+2+2+1 = 9 rows for 15.
        let g = groups.first { $0.members.count > 1 }!
        XCTAssertEqual(g.prefix, [1, 2])
        XCTAssertEqual(g.members.map(\.index), [0, 4, 1, 2])
        XCTAssertEqual(groups.reduce(0) { $0 + $1.rows }, 9 + 1 + 2)
    }

    func testGroupingEdgeCases() {
        // One prompt, and prompts with no common prefix: all lone, nothing saved.
        XCTAssertEqual(LlamaModel.prefixGroups([[3, 4, 5]]), [.lone(0, [3, 4, 5])])
        let apart = LlamaModel.prefixGroups([[5, 1], [3, 2, 2], [4]])
        XCTAssertEqual(apart, [.lone(1, [3, 2, 2]), .lone(2, [4]), .lone(0, [5, 1])])
        // Duplicates share all but their last token, which each computes.
        let dup = LlamaModel.prefixGroups([[6, 7, 8], [6, 7, 8], [6, 7, 8]])
        XCTAssertEqual(dup.count, 1)
        XCTAssertEqual(dup[0].prefix, [6, 7])
        XCTAssertEqual(dup[0].rows, 5)
        // One-token prompts never share (the prefix is shorter than every member).
        XCTAssertEqual(LlamaModel.prefixGroups([[9], [9]]).count, 2)
        // A group stops growing at maxRows.
        let many = Array(repeating: [1, 2, 3, 4, 5, 6, 7, 8, 9], count: 10)
        let capped = LlamaModel.prefixGroups(many, maxRows: 12)
        XCTAssertTrue(capped.allSatisfy { $0.rows <= 12 })
        XCTAssertEqual(capped.reduce(0) { $0 + $1.members.count }, 10)
    }

    // MARK: tiny model

    /// Prompts with shared prefixes of several lengths, duplicates, a one-token prompt, prompts
    /// sharing nothing, and prompts of ≥ 16 tokens (the plain pass's sgemm attention).
    let prompts: [[Int]] = {
        let long = Array(1...20)
        return [[5, 17, 3, 60, 2], [5, 17, 3, 61], [5, 17, 9], [5, 17, 3, 60, 2], [9], [66, 0, 33],
                long, long + [21, 22], Array(long.prefix(18)) + [40], [5, 17, 3, 60, 2, 8, 8, 8], [12, 12]]
    }()

    func compare(_ ck: MemoryCheckpoint, options: LlamaModel.Options = .init(), file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try LlamaModel(checkpoint: ck, options: options)
        let plain = try model.lastTokenLogits(prompts: prompts, collectHidden: true, sharePrefixes: false)
        XCTAssertEqual(model.lastRowCounts.computed, prompts.reduce(0) { $0 + $1.count }, file: file, line: line)
        let shared = try model.lastTokenLogits(prompts: prompts, collectHidden: true, sharePrefixes: true)
        XCTAssertLessThan(model.lastRowCounts.computed, model.lastRowCounts.promptTokens, file: file, line: line)
        var dp = 0.0, dh: Float = 0, dRef = 0.0
        for i in prompts.indices {
            let a = NextToken.probabilities(plain.logits(i)), b = NextToken.probabilities(shared.logits(i))
            dp = max(dp, zip(a, b).map { Double(abs($0 - $1)) }.max()!)
            for l in 0...ck.config.numLayers {
                dh = max(dh, zip(plain.hidden(i, layer: l)!, shared.hidden(i, layer: l)!).map { abs($0 - $1) }.max()!)
            }
            dRef = max(dRef, maxDiff(shared.logits(i), naiveForward(ck, prompts[i]).logits))
        }
        print("tiny shared vs plain: max |Δp| \(dp), max |Δhidden| \(dh); shared vs naive max |Δlogit| \(dRef); rows \(model.lastRowCounts.computed) of \(model.lastRowCounts.promptTokens)")
        XCTAssertLessThan(dp, 1e-6, file: file, line: line)
        XCTAssertLessThan(dh, 1e-5, file: file, line: line)
        XCTAssertLessThan(dRef, 2e-4, file: file, line: line)
    }

    func testTinyLlamaSharedEqualsPlain() throws { try compare(tinyCheckpoint(seed: 21, ropeStyle: .adjacentPairs, tied: false)) }
    func testTinyQwen2BiasSharedEqualsPlain() throws {
        try compare(tinyCheckpoint(seed: 22, architecture: "qwen2", ropeStyle: .halves, tied: true, bias: true))
    }
    /// Small batches and chunks (groups split across batches, prompts across chunks), no weight cache.
    func testTinySmallBatchesAndChunks() throws {
        try compare(tinyCheckpoint(seed: 23, ropeStyle: .halves, tied: false),
                    options: .init(weightCacheBytes: 0, maxBatchTokens: 7, groupTokens: 15))
    }

    /// `Options.sharePrefixes` is the default of `forEachLastToken`; body runs in prompt order.
    func testOptionDefaultAndPromptOrder() throws {
        let ck = tinyCheckpoint(seed: 24, ropeStyle: .adjacentPairs, tied: true)
        let off = try LlamaModel(checkpoint: ck, options: .init(sharePrefixes: false))
        var order: [Int] = []
        try off.forEachLastToken(prompts: prompts) { i, _, _ in order.append(i) }
        XCTAssertEqual(order, Array(prompts.indices))
        XCTAssertEqual(off.lastRowCounts.computed, off.lastRowCounts.promptTokens)
        let on = try LlamaModel(checkpoint: ck)
        order = []
        try on.forEachLastToken(prompts: prompts) { i, _, _ in order.append(i) }
        XCTAssertEqual(order, Array(prompts.indices))
        XCTAssertLessThan(on.lastRowCounts.computed, on.lastRowCounts.promptTokens)
    }

    // MARK: sample model

    /// Real prompts (the reference prompts and variants sharing their prefixes) on the sample model.
    /// OpenBLAS sgemm rounds a row differently depending on the batch it is in, so the plain pass
    /// itself moves by ~1e-6 when only the prompt order changes; shared vs plain stays at that floor.
    func testSampleModelSharedEqualsPlain() throws {
        let url = try requireSampleModel()
        let model = try LlamaModel(checkpoint: GGUFCheckpoint(url: url))
        let ref = try JSONDecoder().decode(ReferenceFile.self, from: Data(contentsOf: referenceURL("smollm2-135m-q4_1.json")))
        var seqs = ref.prompts.map(\.token_ids)
        for s in ref.prompts.map(\.token_ids) where s.count > 2 {
            seqs.append(Array(s.dropLast()))
            seqs.append(Array(s.dropLast(2)) + [seqs[0].last!])
            seqs.append(s + [30, 31])
        }
        seqs += [seqs[0], [504], [504, 12996]]
        let plain = try model.lastTokenLogits(prompts: seqs, sharePrefixes: false)
        let reversed = try model.lastTokenLogits(prompts: seqs.reversed(), sharePrefixes: false)
        let shared = try model.lastTokenLogits(prompts: seqs, sharePrefixes: true)
        let rows = model.lastRowCounts
        var dShared = 0.0, dFloor = 0.0
        for i in seqs.indices {
            let p = NextToken.probabilities(plain.logits(i))
            let s = NextToken.probabilities(shared.logits(i))
            let r = NextToken.probabilities(reversed.logits(seqs.count - 1 - i))
            dShared = max(dShared, zip(p, s).map { Double(abs($0 - $1)) }.max()!)
            dFloor = max(dFloor, zip(p, r).map { Double(abs($0 - $1)) }.max()!)
            XCTAssertEqual(NextToken.top(plain.logits(i), k: 5).map(\.id), NextToken.top(shared.logits(i), k: 5).map(\.id))
        }
        print("sample model, \(seqs.count) prompts: shared vs plain max |Δp| \(dShared); plain vs plain in reverse order \(dFloor); rows \(rows.computed) of \(rows.promptTokens)")
        XCTAssertLessThan(rows.computed, rows.promptTokens)
        XCTAssertLessThan(dShared, 1e-5)
    }
}

/// Saving the residual stream entering a block and resuming a model that differs from there on.
final class ResumeTests: XCTestCase {
    func testResumingEqualsTheFullPassOfTheChangedModel() throws {
        let ck = tinyCheckpoint(seed: 31, ropeStyle: .halves, tied: false, layers: 4)
        let opts = LlamaModel.Options(maxBatchTokens: 9, groupTokens: 20)   // several batches and chunks
        let prompts: [[Int]] = [[5, 17, 3, 60, 2], [5, 17, 3, 61], [9], [66, 0, 33], Array(1...18), [5, 17, 3, 60, 2, 8]]
        let base = try LlamaModel(checkpoint: ck, options: opts)
        let plainBase = try base.lastTokenLogits(prompts: prompts)
        var saved = [[Float]](repeating: [], count: prompts.count)
        let snap = try base.forEachLastToken(prompts: prompts, savingInputOf: 2) { i, l in saved[i] = Array(l) }
        XCTAssertEqual(saved.flatMap { $0 }, plainBase.logits)
        XCTAssertEqual(snap.byteCount, base.lastRowCounts.computed * ck.config.hiddenSize * 4)

        // A model whose blocks 2 and 3 differ.
        let changed = try LlamaModel(checkpoint: ck, options: opts)
        for l in [2, 3] {
            let w = try changed.trainableCopy(of: l)
            w.gate = w.gate.map { $0 * 1.5 }
            try changed.overrideBlock(l, with: w)
        }
        let full = try changed.lastTokenLogits(prompts: prompts)
        var resumed = [[Float]](repeating: [], count: prompts.count)
        try changed.forEachLastToken(resuming: snap) { i, l in resumed[i] = Array(l) }
        XCTAssertEqual(resumed.flatMap { $0 }, full.logits)
        XCTAssertNotEqual(full.logits, plainBase.logits)
        XCTAssertThrowsError(try base.forEachLastToken(prompts: prompts, savingInputOf: 4) { _, _ in })
    }
}
