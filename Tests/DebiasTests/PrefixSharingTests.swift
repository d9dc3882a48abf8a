import XCTest
import TestSupport
import ModelFormats
import LlamaModel
@testable import Debias

final class PrefixSharingTests: XCTestCase {
    func testGroupingSharesCommonPrefixesAndKeepsEveryMember() {
        let seqs = [[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9], [7], [1, 2, 3, 4], [8, 8]]
        let groups = PrefixSharingModel.groups(seqs)
        // Every sequence appears once, as prefix + suffix, with a non-empty suffix.
        var seen: [Int: [Int]] = [:]
        for g in groups { for m in g.members { XCTAssertFalse(m.suffix.isEmpty); seen[m.index] = g.prefix + m.suffix } }
        XCTAssertEqual(seen.count, seqs.count)
        for (i, s) in seqs.enumerated() { XCTAssertEqual(seen[i], s) }
        // [1,2,3,4] ×2, [1,2,3,5], [1,2,9] share [1,2] (4·2 ≥ 3·3): 2 + 2+2+2+1 = 9 rows for 15.
        let g = groups.first { $0.members.count > 1 }!
        XCTAssertEqual(g.prefix, [1, 2])
        XCTAssertEqual(g.members.count, 4)
        XCTAssertEqual(groups.reduce(0) { $0 + $1.rows }, 9 + 1 + 2)
    }

    /// The wrapper (the engine's shared-prefix forward) against the engine's plain pass on the sample model.
    func testMatchesTheEngineOnTheSampleModel() throws {
        let url = try requireSampleModel()
        let model = try LlamaModel(checkpoint: try openCheckpoint(url))
        // Shipped prompts of three professions plus neutral ones, as token ids of a fixed toy encoding
        // would not exercise real attention patterns: use real ids from the tokenizer-free reference.
        let ref = try JSONSerialization.jsonObject(with: Data(contentsOf: sharedDirectory.appendingPathComponent("reference/smollm2-135m-q4_1.json"))) as! [String: Any]
        var seqs = (ref["prompts"] as! [[String: Any]]).map { ($0["token_ids"] as! [Int]) }
        // Add variants sharing prefixes of different lengths, and a one-token prompt.
        seqs += [[504, 12996], [504, 12996, 18628], [504], seqs[0] + [30], seqs[1] + [30, 31]]
        var engine = [[Float]](repeating: [], count: seqs.count)
        try model.forEachLastToken(prompts: seqs, sharePrefixes: false) { i, l, _ in engine[i] = Array(l) }
        let shared = PrefixSharingModel(model, maxBatchRows: 16)
        var got = [[Float]](repeating: [], count: seqs.count)
        try shared.forEachNextTokenLogits(seqs) { i, l in XCTAssertTrue(got[i].isEmpty); got[i] = Array(l) }
        XCTAssertLessThan(shared.lastRowCount, shared.lastUnsharedRowCount)
        var maxDiff: Float = 0
        for i in seqs.indices {
            XCTAssertEqual(got[i].count, model.config.vocabSize)
            for (a, b) in zip(got[i], engine[i]) { maxDiff = max(maxDiff, abs(a - b)) }
        }
        print("prefix sharing vs engine: max |Δlogit| = \(maxDiff), rows \(shared.lastRowCount) of \(shared.lastUnsharedRowCount)")
        // OpenBLAS rounds a row differently by batch shape: the plain pass moves ~3e-5 in logits
        // when only the prompt order changes (LlamaModelTests/SharedPrefixTests).
        XCTAssertLessThan(maxDiff, 2e-4)
    }
}
