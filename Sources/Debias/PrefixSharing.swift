import LlamaModel

// Next-token logits for many prompts with shared prefixes computed once: now the engine's own
// forward (LlamaModel.forEachLastToken, Sources/LlamaModel/SharedPrefix.swift). This wrapper
// keeps the older Debias API; new code can hand a LlamaModel to the Evaluator directly.

public final class PrefixSharingModel: NextTokenModel {
    public let model: LlamaModel
    /// Kept for source compatibility; the engine batches by `model.options.maxBatchTokens`.
    public var maxBatchRows: Int
    /// Token rows the last call computed, and the rows an unshared forward would have.
    public var lastRowCount: Int { model.lastRowCounts.computed }
    public var lastUnsharedRowCount: Int { model.lastRowCounts.promptTokens }

    public init(_ model: LlamaModel, maxBatchRows: Int = 2048) {
        self.model = model
        self.maxBatchRows = max(1, maxBatchRows)
    }

    public var vocabularySize: Int { model.config.vocabSize }

    /// The engine's grouping (`LlamaModel.prefixGroups`).
    static func groups(_ sequences: [[Int]]) -> [PrefixGroup] { LlamaModel.prefixGroups(sequences) }

    public func forEachNextTokenLogits(_ sequences: [[Int]], body: (Int, UnsafeBufferPointer<Float>) throws -> Void) throws {
        try model.forEachLastToken(prompts: sequences, sharePrefixes: true) { i, logits, _ in try body(i, logits) }
    }
}
