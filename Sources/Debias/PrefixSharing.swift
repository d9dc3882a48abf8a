import Foundation
import LlamaModel
import ModelFormats
import TensorMath

// Next-token logits for many prompts that share prefixes, computing each shared prefix once.
//
// Evaluation prompts come in families: the 15 prompts of a profession all start with
// "The {profession}", and the his/her twins share everything up to the pronoun. In a causal
// model a token's hidden states depend only on the tokens before it, so a prefix common to m
// prompts can go through the blocks once instead of m times: on the shipped data this removes
// about a quarter of the token rows (BENCHMARKS.md).
//
// Layout of a group (prompts with a common prefix of p tokens, each with ≥ 1 token more):
//   rows: [prefix (p)] [suffix of member 0] [suffix of member 1] ...
//   positions: prefix 0..<p, suffix token t of any member p + t
//   attention: a prefix row sees the prefix rows up to itself; a suffix row of member j sees
//              all p prefix rows and member j's suffix rows up to itself.
// Everything else in a block is row-wise, so it runs unchanged on the packed rows; only the
// attention is done here. The engine's own `forEachLastToken` is the reference this is tested
// against (DebiasTests/PrefixSharingTests).

public final class PrefixSharingModel: NextTokenModel {
    public let model: LlamaModel
    /// Rows per pass through a block (bounds scratch memory; ~2k keeps sgemm efficient).
    public var maxBatchRows: Int
    /// Token rows the last call computed, and the rows an unshared forward would have.
    public private(set) var lastRowCount = 0, lastUnsharedRowCount = 0

    public init(_ model: LlamaModel, maxBatchRows: Int = 2048) {
        self.model = model
        self.maxBatchRows = max(1, maxBatchRows)
    }

    public var vocabularySize: Int { model.config.vocabSize }

    /// A group: a common prefix and the members that continue it.
    struct Group {
        var prefix: [Int]
        /// (index into the caller's sequences, the tokens after the prefix (≥ 1)).
        var members: [(index: Int, suffix: [Int])]
        var rows: Int { prefix.count + members.reduce(0) { $0 + $1.suffix.count } }
    }

    /// Sorts the sequences and groups neighbours greedily: a sequence joins the open group when
    /// the rows saved with it (m·p′ for the shorter common prefix p′) are at least those saved
    /// without it ((m − 1)·p). The prefix is always shorter than every member.
    static func groups(_ sequences: [[Int]]) -> [Group] {
        let order = sequences.indices.sorted { sequences[$0].lexicographicallyPrecedes(sequences[$1]) }
        var out: [Group] = []
        var members: [Int] = []
        var p = 0
        func close() {
            guard let first = members.first else { return }
            let prefix = Array(sequences[first].prefix(p))
            out.append(Group(prefix: prefix, members: members.map { ($0, Array(sequences[$0].dropFirst(p))) }))
            members = []
        }
        for i in order {
            let s = sequences[i]
            if let first = members.first {
                let a = sequences[first]
                var l = 0
                while l < p && l < s.count && a[l] == s[l] { l += 1 }
                let pNew = min(l, s.count - 1)
                let m = members.count
                if pNew > 0 && m * pNew >= (m - 1) * p {
                    members.append(i); p = pNew
                    continue
                }
                close()
            }
            members = [i]; p = s.count - 1
        }
        close()
        // A lone member keeps its whole sequence as its "suffix".
        return out.map { g in
            g.members.count == 1 ? Group(prefix: [], members: [(g.members[0].index, sequences[g.members[0].index])]) : g
        }
    }

    public func forEachNextTokenLogits(_ sequences: [[Int]], body: (Int, UnsafeBufferPointer<Float>) throws -> Void) throws {
        let c = model.config
        let C = c.hiddenSize, V = c.vocabSize
        for (i, s) in sequences.enumerated() {
            guard !s.isEmpty else { throw LlamaModelError.emptyPrompt(index: i) }
            for t in s where t < 0 || t >= V { throw LlamaModelError.tokenOutOfRange(id: t, vocabSize: V, prompt: i) }
        }
        let groups = PrefixSharingModel.groups(sequences)
        // Batches of whole groups, ≤ maxBatchRows rows (a larger group runs alone).
        var batches: [[Group]] = []
        var cur: [Group] = [], rows = 0
        for g in groups {
            if !cur.isEmpty && rows + g.rows > maxBatchRows { batches.append(cur); cur = []; rows = 0 }
            cur.append(g); rows += g.rows
        }
        if !cur.isEmpty { batches.append(cur) }
        lastRowCount = groups.reduce(0) { $0 + $1.rows }
        lastUnsharedRowCount = sequences.reduce(0) { $0 + $1.count }

        // Residual streams of every batch, kept while the blocks go by (each block's weights
        // are fetched once). Memory: rows · C floats (~70 MB for the shipped data at C = 576).
        var layouts = batches.map { BatchLayout($0) }
        var xs: [[Float]] = []
        for lay in layouts {
            var x = [Float](repeating: 0, count: lay.rowCount * C)
            try x.withUnsafeMutableBufferPointer { try model.embed(lay.tokens, into: $0.baseAddress!) }
            xs.append(x)
        }
        let maxPos = layouts.map { $0.positions.max() ?? 0 }.max() ?? 0
        let rope = PrefixSharingModel.rope(c, positions: Int(maxPos) + 1)
        var scratch = Scratch(config: c, rows: layouts.map(\.rowCount).max() ?? 0)
        for l in 0..<c.numLayers {
            let w = try model.blockWeights(l)
            for b in layouts.indices {
                xs[b].withUnsafeMutableBufferPointer { block(w, x: $0.baseAddress!, layout: layouts[b], rope: rope, s: &scratch) }
            }
        }
        scratch = Scratch(config: c, rows: 0)
        // Head on each member's last row, batch by batch.
        for b in layouts.indices {
            let lay = layouts[b]
            var last = [Float](repeating: 0, count: lay.lastRows.count * C)
            xs[b].withUnsafeBufferPointer { xb in
                last.withUnsafeMutableBufferPointer { lb in
                    for (j, r) in lay.lastRows.enumerated() { (lb.baseAddress! + j * C).update(from: xb.baseAddress! + r * C, count: C) }
                }
            }
            xs[b] = []
            let logits = model.headLogits(hidden: last, rows: lay.lastRows.count)
            try logits.withUnsafeBufferPointer { lp in
                for (j, i) in lay.memberIndex.enumerated() {
                    try body(i, UnsafeBufferPointer(rebasing: lp[(j * V)..<((j + 1) * V)]))
                }
            }
        }
        layouts = []
    }

    /// Rows, positions and attention spans of one batch of groups.
    struct BatchLayout {
        var tokens: [Int] = []
        var positions: [Int32] = []
        /// For each row: the key rows it attends to, as up to two ranges (prefix, own run).
        var spanA: [Range<Int>] = [], spanB: [Range<Int>] = []
        var lastRows: [Int] = []
        var memberIndex: [Int] = []
        var rowCount: Int { tokens.count }

        init(_ groups: [Group]) {
            for g in groups {
                let p0 = tokens.count, p = g.prefix.count
                for (t, id) in g.prefix.enumerated() {
                    tokens.append(id); positions.append(Int32(t))
                    spanA.append(p0..<(p0 + t + 1)); spanB.append(0..<0)
                }
                for m in g.members {
                    let s0 = tokens.count
                    for (t, id) in m.suffix.enumerated() {
                        tokens.append(id); positions.append(Int32(p + t))
                        spanA.append(p0..<(p0 + p)); spanB.append(s0..<(s0 + t + 1))
                    }
                    lastRows.append(tokens.count - 1)
                    memberIndex.append(m.index)
                }
            }
        }
    }

    struct Scratch {
        var norm, q, k, v, att, h, gate, up, sw, rstd: [Float]
        init(config c: ModelConfig, rows R: Int) {
            let C = c.hiddenSize, QD = c.numHeads * c.headDim, KVD = c.numKVHeads * c.headDim, F = c.intermediateSize
            norm = .init(repeating: 0, count: R * C); q = .init(repeating: 0, count: R * QD)
            k = .init(repeating: 0, count: R * KVD); v = .init(repeating: 0, count: R * KVD)
            att = .init(repeating: 0, count: R * QD); h = .init(repeating: 0, count: R * C)
            gate = .init(repeating: 0, count: R * F); up = .init(repeating: 0, count: R * F)
            sw = .init(repeating: 0, count: R * F); rstd = .init(repeating: 0, count: R)
        }
    }

    static func rope(_ c: ModelConfig, positions: Int) -> RopeTable {
        let s = c.ropeScaling
        return RopeTable(headDim: c.headDim, theta: c.ropeTheta, pairing: c.ropeStyle == .adjacentPairs ? .adjacent : .halves,
                         maxPositions: max(positions, 1), scalingType: s?.type, factor: s?.factor ?? 1,
                         lowFreqFactor: s?.lowFreqFactor ?? 1, highFreqFactor: s?.highFreqFactor ?? 4,
                         originalMaxPositions: s?.originalMaxPositions ?? 8192)
    }

    /// One block over the batch's rows, in place on x (R, C); the same math as
    /// `LlamaModel.blockForward` with the grouped attention above.
    func block(_ w: BlockWeights, x: UnsafeMutablePointer<Float>, layout: BatchLayout, rope: RopeTable, s: inout Scratch) {
        let c = model.config
        let R = layout.rowCount, C = c.hiddenSize, F = c.intermediateSize
        let H = c.numHeads, KH = c.numKVHeads, hd = c.headDim, QD = H * hd, KVD = KH * hd
        let eps = Float(c.rmsNormEps)
        func linear(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ wt: [Float], _ bias: [Float]?, _ OC: Int, _ IC: Int) {
            wt.withUnsafeBufferPointer { sgemm(transB: true, m: R, n: OC, k: IC, a: inp, lda: IC, b: $0.baseAddress!, ldb: IC, c: out, ldc: OC) }
            if let bias { for r in 0..<R { for o in 0..<OC { out[r * OC + o] += bias[o] } } }
        }
        s.norm.withUnsafeMutableBufferPointer { norm in
        s.rstd.withUnsafeMutableBufferPointer { rstd in
        s.q.withUnsafeMutableBufferPointer { q in
        s.k.withUnsafeMutableBufferPointer { k in
        s.v.withUnsafeMutableBufferPointer { v in
        s.att.withUnsafeMutableBufferPointer { att in
        s.h.withUnsafeMutableBufferPointer { h in
        s.gate.withUnsafeMutableBufferPointer { gate in
        s.up.withUnsafeMutableBufferPointer { up in
        s.sw.withUnsafeMutableBufferPointer { sw in
            let n = norm.baseAddress!, qp = q.baseAddress!, kp = k.baseAddress!, vp = v.baseAddress!
            let ap = att.baseAddress!, hp = h.baseAddress!
            // h = x + o(attn(rope(q(n)), rope(k(n)), v(n))), n = attn_norm(x)
            w.attnNorm.withUnsafeBufferPointer { rmsnormForward(n, rstd.baseAddress!, x, $0.baseAddress!, T: R, C: C, eps: eps) }
            linear(qp, n, w.q, w.qBias, QD, C)
            linear(kp, n, w.k, w.kBias, KVD, C)
            linear(vp, n, w.v, w.vBias, KVD, C)
            layout.positions.withUnsafeBufferPointer { pos in
                ropeForward(qp, positions: pos.baseAddress!, T: R, nHeads: H, table: rope)
                ropeForward(kp, positions: pos.baseAddress!, T: R, nHeads: KH, table: rope)
            }
            PrefixSharingModel.attention(out: ap, q: qp, k: kp, v: vp, layout: layout, H: H, KH: KH, hd: hd)
            hp.update(from: x, count: R * C)
            w.o.withUnsafeBufferPointer { sgemm(transB: true, m: R, n: C, k: QD, a: ap, lda: QD, b: $0.baseAddress!, ldb: QD, beta: 1, c: hp, ldc: C) }
            // out = h + down(silu(gate(m)) · up(m)), m = ffn_norm(h)
            w.ffnNorm.withUnsafeBufferPointer { rmsnormForward(n, rstd.baseAddress!, hp, $0.baseAddress!, T: R, C: C, eps: eps) }
            linear(gate.baseAddress!, n, w.gate, nil, F, C)
            linear(up.baseAddress!, n, w.up, nil, F, C)
            swigluForward(sw.baseAddress!, gate: gate.baseAddress!, up: up.baseAddress!, N: R * F)
            x.update(from: hp, count: R * C)
            w.down.withUnsafeBufferPointer { sgemm(transB: true, m: R, n: C, k: F, a: sw.baseAddress!, lda: F, b: $0.baseAddress!, ldb: F, beta: 1, c: x, ldc: C) }
        }}}}}}}}}}
    }

    /// out (R, H·hd): for each row and query head, softmax(q·kᵀ/√hd) over the row's key spans,
    /// times v. Query head h reads KV head h / (H / KH). Rows are split over the threads.
    static func attention(out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                          v: UnsafePointer<Float>, layout: BatchLayout, H: Int, KH: Int, hd: Int) {
        let R = layout.rowCount, QD = H * hd, KVD = KH * hd, group = H / KH
        let scale = 1 / Float(hd).squareRoot()
        let threads = max(1, min(TensorMathThreads.count, R / 64))
        let spanA = layout.spanA, spanB = layout.spanB
        DispatchQueue.concurrentPerform(iterations: threads) { part in
            let lo = R * part / threads, hi = R * (part + 1) / threads
            var scores = [Float](repeating: 0, count: 4096)
            for r in lo..<hi {
                let keys = spanA[r].count + spanB[r].count
                if scores.count < keys { scores = [Float](repeating: 0, count: keys) }
                for hh in 0..<H {
                    let qr = q + r * QD + hh * hd
                    let kvOff = (hh / group) * hd
                    var m = -Float.infinity
                    var j = 0
                    func scoreSpan(_ span: Range<Int>) {
                        for kr in span {
                            let kk = k + kr * KVD + kvOff
                            var d: Float = 0
                            for e in 0..<hd { d += qr[e] * kk[e] }
                            d *= scale
                            scores[j] = d; if d > m { m = d }
                            j += 1
                        }
                    }
                    scoreSpan(spanA[r]); scoreSpan(spanB[r])
                    var sum: Float = 0
                    for i in 0..<keys { let e = expf(scores[i] - m); scores[i] = e; sum += e }
                    let inv = 1 / sum
                    let o = out + r * QD + hh * hd
                    for e in 0..<hd { o[e] = 0 }
                    j = 0
                    func mixSpan(_ span: Range<Int>) {
                        for kr in span {
                            let p = scores[j] * inv
                            let vv = v + kr * KVD + kvOff
                            for e in 0..<hd { o[e] += p * vv[e] }
                            j += 1
                        }
                    }
                    mixSpan(spanA[r]); mixSpan(spanB[r])
                }
            }
        }
    }
}
