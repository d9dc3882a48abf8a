import Foundation
import ModelFormats
import TensorMath

// The forward pass: embedding → blocks → final norm → head, over packed batches.
//
// Entry points, from the lowest level up:
//   blockForward(_:x:batch:acts:)     one block over one packed batch, in place on x (T, C)
//   embed(_:into:)                    token rows of the embedding
//   runBlocks(_:x:batch:)             blocks [from, to) in place (the fine-tune re-runs L..end)
//   lastTokenLogits(x:batch:)         final norm + head on each sequence's last row only
//   forEachLastToken(prompts:...)     many prompts, chunked, shared prefixes computed once,
//                                     with optional hidden states
//   lastTokenLogits(prompts:...)      the same, collected

/// The next-token results of many prompts.
public struct NextTokenOutput: Sendable {
    public let promptCount: Int
    public let vocabSize: Int
    public let hiddenSize: Int
    public let numLayers: Int
    /// (promptCount, vocab) logits after each prompt's last token.
    public var logits: [Float]
    /// (promptCount, numLayers + 1, C) residual stream at the last token: entry i < numLayers
    /// enters block i, entry numLayers leaves the last block (before the final norm). nil unless asked.
    public var hidden: [Float]?

    /// Prompt `prompt`'s logits (vocab), indexed by token id.
    public func logits(_ prompt: Int) -> [Float] {
        Array(logits[prompt * vocabSize ..< (prompt + 1) * vocabSize])
    }
    /// The hidden state entering block `layer` (layer = numLayers: leaving the last block).
    public func hidden(_ prompt: Int, layer: Int) -> [Float]? {
        guard let h = hidden else { return nil }
        let o = (prompt * (numLayers + 1) + layer) * hiddenSize
        return Array(h[o ..< o + hiddenSize])
    }
}

extension LlamaModel {
    // MARK: - One block

    /// Runs block `layer` over `batch`, in place: x (T, C) enters, the block's output leaves.
    /// With `acts`, saves what a backward pass needs (see `BlockActivations`); `acts` must fit
    /// the batch. Uses the override, cached or freshly dequantized weights (see `blockWeights`).
    public func blockForward(layer: Int, x: UnsafeMutablePointer<Float>, batch: PackedBatch,
                             acts: BlockActivations? = nil) throws {
        let w = try blockWeights(layer)
        try blockForward(w, x: x, batch: batch, acts: acts)
    }

    /// Runs the block whose weights are `w` (any block shape-compatible with this model).
    public func blockForward(_ w: BlockWeights, x: UnsafeMutablePointer<Float>, batch: PackedBatch,
                             acts: BlockActivations? = nil) throws {
        let T = batch.totalTokens
        if T == 0 { return }
        let c = config
        let C = c.hiddenSize, F = c.intermediateSize, QD = c.qDim, KVD = c.kvDim
        let a: BlockActivations
        let saveAtt: Bool
        if let acts {
            guard acts.fits(batch), acts.hiddenSize == C, acts.ffnDim == F, acts.qDim == QD, acts.kvDim == KVD else {
                throw LlamaModelError.bufferTooSmall("BlockActivations for \(acts.tokenCapacity) tokens cannot hold a batch of \(T)")
            }
            a = acts
            saveAtt = true
            a.input.update(from: x, count: T * C)
        } else {
            a = scratchActivations(tokens: T)
            saveAtt = false
        }
        a.batch = batch
        ensureRope(length: batch.lengths.max() ?? 0)
        let eps = Float(c.rmsNormEps)
        let positions = batch.positions

        // attention half: h = x + o(attn(rope(q(n)), rope(k(n)), v(n))), n = attn_norm(x)
        w.attnNorm.withUnsafeBufferPointer { rmsnormForward(a.attnNormOut, a.attnNormRstd, x, $0.baseAddress!, T: T, C: C, eps: eps) }
        linear(a.q, a.attnNormOut, w.q, w.qBias, T: T, C: C, OC: QD)
        linear(a.k, a.attnNormOut, w.k, w.kBias, T: T, C: C, OC: KVD)
        linear(a.v, a.attnNormOut, w.v, w.vBias, T: T, C: C, OC: KVD)
        positions.withUnsafeBufferPointer { pos in
            ropeForward(a.q, positions: pos.baseAddress!, T: T, nHeads: c.numHeads, table: rope)
            ropeForward(a.k, positions: pos.baseAddress!, T: T, nHeads: c.numKVHeads, table: rope)
        }
        attentionForward(a.attnOut, saveAtt ? a.att : nil, q: a.q, k: a.k, v: a.v, batch: batch,
                         nHeads: c.numHeads, nKVHeads: c.numKVHeads, headDim: c.headDim)
        a.residualAttn.update(from: x, count: T * C)
        outputProjectionAndMLP(w, a, rows: T, out: x)
    }

    /// The block's tail over `rows` rows, given a.attnOut and the residual already copied into
    /// a.residualAttn: h = residual + attnOut @ Woᵀ (into a.residualAttn), then
    /// out = h + down(silu(gate(m)) · up(m)), m = ffn_norm(h). Saves ffn-norm, gate, up, swiglu in `a`.
    func outputProjectionAndMLP(_ w: BlockWeights, _ a: BlockActivations, rows n: Int,
                                        out: UnsafeMutablePointer<Float>) {
        let c = config
        let C = c.hiddenSize, F = c.intermediateSize, QD = c.qDim
        w.o.withUnsafeBufferPointer {
            sgemm(transB: true, m: n, n: C, k: QD, a: a.attnOut, lda: QD, b: $0.baseAddress!, ldb: QD,
                  beta: 1, c: a.residualAttn, ldc: C)
        }
        w.ffnNorm.withUnsafeBufferPointer { rmsnormForward(a.ffnNormOut, a.ffnNormRstd, a.residualAttn, $0.baseAddress!, T: n, C: C, eps: Float(c.rmsNormEps)) }
        linear(a.gate, a.ffnNormOut, w.gate, nil, T: n, C: C, OC: F)
        linear(a.up, a.ffnNormOut, w.up, nil, T: n, C: C, OC: F)
        swigluForward(a.swiglu, gate: a.gate, up: a.up, N: n * F)
        out.update(from: a.residualAttn, count: n * C)
        w.down.withUnsafeBufferPointer {
            sgemm(transB: true, m: n, n: C, k: F, a: a.swiglu, lda: F, b: $0.baseAddress!, ldb: F,
                  beta: 1, c: out, ldc: C)
        }
    }

    /// out (T, OC) = inp (T, C) @ W (OC, C)ᵀ + bias (OC)
    func linear(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ weight: [Float],
                _ bias: [Float]?, T: Int, C: Int, OC: Int) {
        weight.withUnsafeBufferPointer { wp in
            sgemm(transB: true, m: T, n: OC, k: C, a: inp, lda: C, b: wp.baseAddress!, ldb: C, c: out, ldc: OC)
        }
        if let bias {
            bias.withUnsafeBufferPointer { b in
                for t in 0..<T {
                    let row = out + t * OC
                    for o in 0..<OC { row[o] += b[o] }
                }
            }
        }
    }

    func scratchActivations(tokens: Int) -> BlockActivations {
        if let s = scratch, s.tokenCapacity >= tokens { return s }
        let s = BlockActivations(config: config, tokenCapacity: max(tokens, scratch?.tokenCapacity ?? 0), attentionCapacity: 1)
        scratch = s
        return s
    }

    /// Frees the scratch buffers of earlier passes (they are re-made on demand).
    public func releaseScratch() { scratch = nil }

    // MARK: - Embedding, block ranges, head

    /// x (T, C) = embedding rows of `tokens`. Throws on an id outside the vocabulary.
    public func embed(_ tokens: [Int], into x: UnsafeMutablePointer<Float>) throws {
        let C = config.hiddenSize, V = config.vocabSize
        try tokenEmbedding.withUnsafeBufferPointer { e in
            for (t, id) in tokens.enumerated() {
                guard id >= 0 && id < V else { throw LlamaModelError.tokenOutOfRange(id: id, vocabSize: V, prompt: -1) }
                (x + t * C).update(from: e.baseAddress! + id * C, count: C)
            }
        }
    }

    /// Runs blocks `layers` (e.g. L..<numLayers) over `batch`, in place on x (T, C).
    public func runBlocks(_ layers: Range<Int>, x: UnsafeMutablePointer<Float>, batch: PackedBatch) throws {
        guard layers.lowerBound >= 0, layers.upperBound <= config.numLayers else {
            throw LlamaModelError.layerOutOfRange(layers.upperBound - 1, numLayers: config.numLayers)
        }
        for l in layers { try blockForward(layer: l, x: x, batch: batch) }
    }

    /// logits (nSeq, vocab) = head(final_norm(x at each sequence's last row)), x (T, C).
    public func lastTokenLogits(x: UnsafePointer<Float>, batch: PackedBatch) -> [Float] {
        let rows = batch.lastRows
        let C = config.hiddenSize
        var gathered = [Float](repeating: 0, count: rows.count * C)
        gathered.withUnsafeMutableBufferPointer { g in
            for (i, r) in rows.enumerated() { (g.baseAddress! + i * C).update(from: x + r * C, count: C) }
        }
        return headLogits(hidden: gathered, rows: rows.count)
    }

    /// logits (rows, vocab) = final_norm(h (rows, C)) @ Woutᵀ.
    public func headLogits(hidden h: [Float], rows n: Int) -> [Float] {
        let C = config.hiddenSize, V = config.vocabSize
        var normed = [Float](repeating: 0, count: n * C)
        var rstd = [Float](repeating: 0, count: n)
        var logits = [Float](repeating: 0, count: n * V)
        h.withUnsafeBufferPointer { hp in
            outputNorm.withUnsafeBufferPointer { wn in
                rmsnormForward(&normed, &rstd, hp.baseAddress!, wn.baseAddress!, T: n, C: C, eps: Float(config.rmsNormEps))
            }
        }
        normed.withUnsafeBufferPointer { np in
            outputWeight.withUnsafeBufferPointer { wo in
                logits.withUnsafeMutableBufferPointer { lp in
                    sgemm(transB: true, m: n, n: V, k: C, a: np.baseAddress!, lda: C, b: wo.baseAddress!, ldb: C,
                          c: lp.baseAddress!, ldc: V)
                }
            }
        }
        return logits
    }

    // MARK: - Many prompts

    /// Runs every prompt and calls `body(promptIndex, logits (vocab), hidden ((numLayers+1, C) or nil))`
    /// in prompt order. Prompts are packed into chunks of about `options.groupTokens` tokens whose
    /// residual streams stay in memory while each block's weights are fetched once (dequantized
    /// when not cached), and each chunk runs through a block in batches of about
    /// `options.maxBatchTokens` rows. Only each prompt's last position goes through the head.
    ///
    /// With `sharePrefixes` (default: `options.sharePrefixes`), prompts of a chunk that share a
    /// token prefix compute it once (SharedPrefix.swift); the results equal the plain pass's up to
    /// the rounding noise of batching itself (OpenBLAS rounds a row by the shape of its call;
    /// tests: |Δp| < 1e-6 on tiny models, < 1e-5 on the sample model). `lastRowCounts` says how
    /// many rows were computed.
    public func forEachLastToken(prompts: [[Int]], collectHidden: Bool = false, sharePrefixes: Bool? = nil,
                                 body: (Int, UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>?) throws -> Void) throws {
        try checkPrompts(prompts)
        let share = sharePrefixes ?? options.sharePrefixes
        lastRowCounts = (0, prompts.reduce(0) { $0 + $1.count })
        var start = 0
        while start < prompts.count {
            var end = start, tokens = 0
            while end < prompts.count && (end == start || tokens + prompts[end].count <= options.groupTokens) {
                tokens += prompts[end].count; end += 1
            }
            try runGroup(prompts, range: start..<end, collectHidden: collectHidden, share: share, body: body)
            start = end
        }
    }

    /// All prompts' last-token logits (and hidden states when asked), collected.
    /// Memory: promptCount · vocab floats; for very many prompts use `forEachLastToken`.
    public func lastTokenLogits(prompts: [[Int]], collectHidden: Bool = false, sharePrefixes: Bool? = nil) throws -> NextTokenOutput {
        let V = config.vocabSize, C = config.hiddenSize, L = config.numLayers
        var out = NextTokenOutput(promptCount: prompts.count, vocabSize: V, hiddenSize: C, numLayers: L,
                                  logits: [Float](repeating: 0, count: prompts.count * V),
                                  hidden: collectHidden ? [Float](repeating: 0, count: prompts.count * (L + 1) * C) : nil)
        var logits = out.logits, hidden = out.hidden
        out.logits = []; out.hidden = nil
        try forEachLastToken(prompts: prompts, collectHidden: collectHidden, sharePrefixes: sharePrefixes) { i, lg, h in
            logits.withUnsafeMutableBufferPointer { (dst: inout UnsafeMutableBufferPointer<Float>) in
                (dst.baseAddress! + i * V).update(from: lg.baseAddress!, count: V)
            }
            if let h {
                let n = (L + 1) * C
                hidden!.withUnsafeMutableBufferPointer { (dst: inout UnsafeMutableBufferPointer<Float>) in
                    (dst.baseAddress! + i * n).update(from: h.baseAddress!, count: n)
                }
            }
        }
        out.logits = logits; out.hidden = hidden
        return out
    }

    /// Throws on an empty prompt or a token id outside the vocabulary.
    func checkPrompts(_ prompts: [[Int]]) throws {
        let V = config.vocabSize
        for (i, p) in prompts.enumerated() {
            guard !p.isEmpty else { throw LlamaModelError.emptyPrompt(index: i) }
            for id in p where id < 0 || id >= V { throw LlamaModelError.tokenOutOfRange(id: id, vocabSize: V, prompt: i) }
        }
    }

    /// Prompts per call of the head (bounds the (rows, vocab) logits buffer: 48 MiB at vocab 49,152).
    static let headRows = 256

    /// One chunk: group by shared prefixes (or not), embed, all blocks (batch by batch), head on
    /// each prompt's last row, `body` in prompt order.
    func runGroup(_ prompts: [[Int]], range: Range<Int>, collectHidden: Bool, share: Bool,
                  body: (Int, UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>?) throws -> Void) throws {
        var chunk = try prepareChunk(prompts, range: range, share: share)
        try finishChunk(&chunk, collectHidden: collectHidden, body: body)
    }

    /// Groups, lays out and embeds one chunk of prompts (blocks not run yet).
    func prepareChunk(_ prompts: [[Int]], range: Range<Int>, share: Bool) throws -> ChunkState {
        let C = config.hiddenSize
        let n = range.count
        let local = Array(prompts[range])
        let groups = share ? LlamaModel.prefixGroups(local, maxRows: options.maxBatchTokens)
                           : local.enumerated().map { PrefixGroup.lone($0, $1) }
        // Batches: consecutive groups, ≤ maxBatchTokens rows (a larger group runs alone).
        var layouts: [RowLayout] = []
        var cur: [PrefixGroup] = [], rows = 0
        for g in groups {
            if !cur.isEmpty && rows + g.rows > options.maxBatchTokens { layouts.append(RowLayout(cur)); cur = []; rows = 0 }
            cur.append(g); rows += g.rows
        }
        if !cur.isEmpty { layouts.append(RowLayout(cur)) }
        var bases: [Int] = [], total = 0
        for lay in layouts { bases.append(total); total += lay.rowCount }
        // Row of each prompt's last token in x, by local index.
        var lastRow = [Int](repeating: 0, count: n)
        for (b, lay) in layouts.enumerated() {
            for (m, j) in lay.memberIndex.enumerated() { lastRow[j] = bases[b] + lay.lastRows[m] }
        }
        var x = [Float](repeating: 0, count: total * C)   // (rows, C) residual stream
        try x.withUnsafeMutableBufferPointer { xb in
            for (b, lay) in layouts.enumerated() { try embed(lay.tokens, into: xb.baseAddress! + bases[b] * C) }
        }
        return ChunkState(range: range, layouts: layouts, bases: bases, lastRow: lastRow, x: x)
    }

    /// Runs blocks chunk.nextLayer..<layer (never the model's last block) on the chunk.
    func advance(_ chunk: inout ChunkState, to layer: Int) throws {
        let C = config.hiddenSize
        precondition(layer < config.numLayers && chunk.nextLayer <= layer)
        for l in chunk.nextLayer..<layer {
            let w = try blockWeights(l)
            let layouts = chunk.layouts, bases = chunk.bases
            chunk.x.withUnsafeMutableBufferPointer { xb in
                for (b, lay) in layouts.enumerated() { blockForward(w, x: xb.baseAddress! + bases[b] * C, layout: lay) }
            }
        }
        chunk.nextLayer = layer
    }

    /// The rest of a chunk: its remaining blocks, the last one on the last rows only, the head,
    /// and `body` for each prompt in order.
    func finishChunk(_ chunk: inout ChunkState, collectHidden: Bool,
                     body: (Int, UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>?) throws -> Void) throws {
        let C = config.hiddenSize, L = config.numLayers, V = config.vocabSize
        let n = chunk.range.count
        lastRowCounts.computed += chunk.rowCount
        var hidden = collectHidden ? [Float](repeating: 0, count: n * (L + 1) * C) : []  // (n, L+1, C)
        func collect(_ layer: Int) {
            chunk.x.withUnsafeBufferPointer { xb in
                hidden.withUnsafeMutableBufferPointer { hb in
                    for j in 0..<n {
                        (hb.baseAddress! + (j * (L + 1) + layer) * C).update(from: xb.baseAddress! + chunk.lastRow[j] * C, count: C)
                    }
                }
            }
        }
        for l in chunk.nextLayer..<L {
            if collectHidden { collect(l) }
            if l < L - 1 { try advance(&chunk, to: l + 1) }
        }
        // The last block: only the last rows leave the model, so skip everything but K/V elsewhere.
        var last = [Float](repeating: 0, count: n * C)   // (n, C) leaving the last block, by local index
        let w = try blockWeights(L - 1)
        chunk.x.withUnsafeMutableBufferPointer { xb in
            for (b, lay) in chunk.layouts.enumerated() {
                var out = [Float](repeating: 0, count: lay.lastRows.count * C)
                out.withUnsafeMutableBufferPointer { ob in
                    lastRowsBlockForward(w, x: xb.baseAddress! + chunk.bases[b] * C, layout: lay, out: ob.baseAddress!)
                    last.withUnsafeMutableBufferPointer { lb in
                        for (m, j) in lay.memberIndex.enumerated() {
                            (lb.baseAddress! + j * C).update(from: ob.baseAddress! + m * C, count: C)
                        }
                    }
                }
            }
        }
        chunk.x = []
        if collectHidden {
            hidden.withUnsafeMutableBufferPointer { hb in
                last.withUnsafeBufferPointer { lb in
                    for j in 0..<n { (hb.baseAddress! + (j * (L + 1) + L) * C).update(from: lb.baseAddress! + j * C, count: C) }
                }
            }
        }
        var s = 0
        while s < n {
            let e = min(n, s + LlamaModel.headRows)
            let logits = headLogits(hidden: Array(last[(s * C)..<(e * C)]), rows: e - s)
            try logits.withUnsafeBufferPointer { lp in
                try hidden.withUnsafeBufferPointer { hp in
                    for j in s..<e {
                        let h = collectHidden ? UnsafeBufferPointer(rebasing: hp[(j * (L + 1) * C)..<((j + 1) * (L + 1) * C)]) : nil
                        try body(chunk.range.lowerBound + j, UnsafeBufferPointer(rebasing: lp[((j - s) * V)..<((j - s + 1) * V)]), h)
                    }
                }
            }
            s = e
        }
    }

    // MARK: - Resuming from a saved residual stream (eval --patch)

    /// `forEachLastToken` that also returns every computed row's residual stream entering block
    /// `layer`. A model that differs from this one only in blocks `layer...` (a patched model)
    /// can then answer the same prompts with `forEachLastToken(resuming:)`, skipping blocks
    /// 0..<layer, with exactly the results of running them. Memory: rows · C floats.
    public func forEachLastToken(prompts: [[Int]], savingInputOf layer: Int, sharePrefixes: Bool? = nil,
                                 body: (Int, UnsafeBufferPointer<Float>) throws -> Void) throws -> ResidualSnapshot {
        guard layer >= 0 && layer < config.numLayers else {
            throw LlamaModelError.layerOutOfRange(layer, numLayers: config.numLayers)
        }
        try checkPrompts(prompts)
        let share = sharePrefixes ?? options.sharePrefixes
        lastRowCounts = (0, prompts.reduce(0) { $0 + $1.count })
        var chunks: [ChunkState] = []
        var start = 0
        while start < prompts.count {
            var end = start, tokens = 0
            while end < prompts.count && (end == start || tokens + prompts[end].count <= options.groupTokens) {
                tokens += prompts[end].count; end += 1
            }
            var chunk = try prepareChunk(prompts, range: start..<end, share: share)
            try advance(&chunk, to: min(layer, config.numLayers - 1))
            chunks.append(chunk)   // a copy: x is copied on the next write
            try finishChunk(&chunk, collectHidden: false) { i, logits, _ in try body(i, logits) }
            start = end
        }
        return ResidualSnapshot(prompts: prompts, layer: layer, hiddenSize: config.hiddenSize, chunks: chunks)
    }

    /// Answers `snapshot.prompts` starting at block `snapshot.layer` from the saved residual
    /// streams (see `forEachLastToken(prompts:savingInputOf:)`): blocks before it are not run.
    public func forEachLastToken(resuming snapshot: ResidualSnapshot,
                                 body: (Int, UnsafeBufferPointer<Float>) throws -> Void) throws {
        guard snapshot.hiddenSize == config.hiddenSize, snapshot.layer < config.numLayers else {
            throw LlamaModelError.badConfig("a residual snapshot of hidden size \(snapshot.hiddenSize) at block \(snapshot.layer) does not fit this model")
        }
        lastRowCounts = (0, snapshot.prompts.reduce(0) { $0 + $1.count })
        for saved in snapshot.chunks {
            var chunk = saved
            try finishChunk(&chunk, collectHidden: false) { i, logits, _ in try body(i, logits) }
        }
    }
}

/// One chunk of prompts between blocks: layouts, rows, and the residual stream.
struct ChunkState {
    var range: Range<Int>
    var layouts: [RowLayout]
    var bases: [Int]
    var lastRow: [Int]
    var x: [Float]
    /// The next block to run.
    var nextLayer = 0
    var rowCount: Int { layouts.reduce(0) { $0 + $1.rowCount } }
}

/// Residual streams entering one block for every row of a batch of prompts, to resume from.
public struct ResidualSnapshot {
    /// The prompts, as given.
    public let prompts: [[Int]]
    /// The block whose input is saved.
    public let layer: Int
    public let hiddenSize: Int
    let chunks: [ChunkState]
    /// Bytes of saved residual stream.
    public var byteCount: Int { chunks.reduce(0) { $0 + $1.x.count } * MemoryLayout<Float>.size }
}

// MARK: - Probabilities

public enum NextToken {
    // Concrete (non-generic) on purpose: called across modules on 49k-entry rows for every
    // prompt, an unspecialized generic spends more time in the runtime than in the loop.

    /// softmax(logits), computed in Double for the normalizer.
    public static func probabilities(_ logits: UnsafeBufferPointer<Float>) -> [Float] {
        let logZ = logSumExp(logits)
        return logits.map { Float(Foundation.exp(Double($0) - logZ)) }
    }
    public static func probabilities(_ logits: [Float]) -> [Float] {
        logits.withUnsafeBufferPointer { probabilities($0) }
    }

    /// log Σ exp(logits), max-subtracted, summed in Double (each term by TensorMath's 8-lane
    /// float exp: relative error ≈ 1e-7, and ~8× faster than a libm call per vocabulary entry).
    public static func logSumExp(_ logits: UnsafeBufferPointer<Float>) -> Double {
        guard let p = logits.baseAddress, logits.count > 0 else { return -.infinity }
        let m = maxValue(p, logits.count)
        if !m.isFinite { return Double(m) }
        return Double(m) + Foundation.log(sumExpShifted(p, logits.count, shift: m))
    }
    public static func logSumExp(_ logits: [Float]) -> Double {
        logits.withUnsafeBufferPointer { logSumExp($0) }
    }

    /// The `k` largest logits, highest first (ties: lower id first): (id, logit).
    public static func top(_ logits: UnsafeBufferPointer<Float>, k: Int) -> [(id: Int, logit: Float)] {
        guard k > 0 else { return [] }
        var ids = [Int](), vals = [Float]()
        ids.reserveCapacity(k + 1); vals.reserveCapacity(k + 1)
        for i in 0..<logits.count {
            let l = logits[i]
            if ids.count < k || l > vals[vals.count - 1] {
                var pos = vals.count
                while pos > 0 && vals[pos - 1] < l { pos -= 1 }
                ids.insert(i, at: pos); vals.insert(l, at: pos)
                if ids.count > k { ids.removeLast(); vals.removeLast() }
            }
        }
        return zip(ids, vals).map { (id: $0, logit: $1) }
    }
    public static func top(_ logits: [Float], k: Int) -> [(id: Int, logit: Float)] {
        logits.withUnsafeBufferPointer { top($0, k: k) }
    }
}

// MARK: - Int32 token ids (the tokenizer's type)

extension LlamaModel {
    /// `lastTokenLogits(prompts:collectHidden:)` for Int32 token ids.
    public func lastTokenLogits(prompts: [[Int32]], collectHidden: Bool = false, sharePrefixes: Bool? = nil) throws -> NextTokenOutput {
        try lastTokenLogits(prompts: prompts.map { $0.map(Int.init) }, collectHidden: collectHidden, sharePrefixes: sharePrefixes)
    }

    /// `forEachLastToken(prompts:collectHidden:body:)` for Int32 token ids.
    public func forEachLastToken(prompts: [[Int32]], collectHidden: Bool = false, sharePrefixes: Bool? = nil,
                                 body: (Int, UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>?) throws -> Void) throws {
        try forEachLastToken(prompts: prompts.map { $0.map(Int.init) }, collectHidden: collectHidden,
                             sharePrefixes: sharePrefixes, body: body)
    }
}
