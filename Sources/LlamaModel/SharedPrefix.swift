import ModelFormats
import TensorMath

// Prompts that share a token prefix go through the blocks with the prefix computed once.
//
// In a causal model a token's hidden states depend only on the tokens up to it, so a prefix
// common to m prompts needs its rows computed once, not m times. Evaluation prompts come in
// families (the 15 prompts of a profession start with "The {profession}"), so on the shipped
// GenBias prompts this removes about a fifth of the token rows (BENCHMARKS.md, engine section).
//
// Rows of one batch (a `RowLayout`):
//   [lone prompts, packed as a PackedBatch] [group: prefix (p rows)] [suffix of member 0] ...
//   positions: as in the prompt (prefix 0..<p, suffix token t of any member p + t)
//   attention: a lone row sees its own prompt's rows up to itself (the plain causal kernel);
//              a prefix row sees the prefix rows up to itself; a suffix row of member j sees
//              the p prefix rows, then member j's suffix rows up to itself (`spanAttentionForward`).
// Every other op of a block is row-wise, so it runs unchanged on the packed rows. With sharing
// off every prompt is lone and the pass is the plain packed forward.

/// Prompts with a common token prefix, each continuing it with at least one token.
public struct PrefixGroup: Sendable, Equatable {
    public struct Member: Sendable, Equatable {
        /// Index into the caller's prompts.
        public var index: Int
        /// The prompt's tokens after the prefix (never empty).
        public var suffix: [Int]
    }
    /// The shared tokens (empty for a prompt that shares nothing).
    public var prefix: [Int]
    public var members: [Member]
    /// Token rows the group computes: the prefix once, then every suffix.
    public var rows: Int { prefix.count + members.reduce(0) { $0 + $1.suffix.count } }
    /// A prompt on its own (no shared prefix).
    public static func lone(_ index: Int, _ tokens: [Int]) -> PrefixGroup {
        PrefixGroup(prefix: [], members: [Member(index: index, suffix: tokens)])
    }
}

extension LlamaModel {
    /// Groups `sequences` by shared prefixes: sorts them and lets a sequence join the open group
    /// when the rows saved with it (m·p′ for the new, shorter common prefix p′) are at least those
    /// saved without it ((m − 1)·p) and the group stays within `maxRows` rows. The prefix is
    /// always shorter than every member; a sequence that shares nothing is a lone group.
    /// Every index appears exactly once.
    public static func prefixGroups(_ sequences: [[Int]], maxRows: Int = .max) -> [PrefixGroup] {
        let order = sequences.indices.sorted {
            sequences[$0] == sequences[$1] ? $0 < $1 : sequences[$0].lexicographicallyPrecedes(sequences[$1])
        }
        var out: [PrefixGroup] = []
        var members: [Int] = []
        var p = 0, total = 0   // prefix length; Σ member lengths
        func close() {
            guard let first = members.first else { return }
            if members.count == 1 {
                out.append(.lone(first, sequences[first]))
            } else {
                out.append(PrefixGroup(prefix: Array(sequences[first].prefix(p)),
                                       members: members.map { .init(index: $0, suffix: Array(sequences[$0].dropFirst(p))) }))
            }
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
                let rowsNew = pNew + (total + s.count) - (m + 1) * pNew
                if pNew > 0 && m * pNew >= (m - 1) * p && rowsNew <= maxRows {
                    members.append(i); p = pNew; total += s.count
                    continue
                }
                close()
            }
            members = [i]; p = s.count - 1; total = s.count
        }
        close()
        return out
    }
}

/// Rows, positions and attention spans of one batch of prefix groups (see the top of the file).
struct RowLayout {
    var tokens: [Int] = []
    var positions: [Int32] = []
    /// The lone prompts, packed at rows 0..<lone.totalTokens (plain causal attention).
    var lone = PackedBatch(lengths: [])
    /// For every row: the key rows it attends to, as two ranges (shared prefix, own rows).
    var spanA: [Range<Int>] = [], spanB: [Range<Int>] = []
    /// Per member, in the order of `groups`: the caller's prompt index and its last row.
    var memberIndex: [Int] = [], lastRows: [Int] = []
    var rowCount: Int { tokens.count }
    var maxLength: Int { Int(positions.max() ?? -1) + 1 }

    init(_ groups: [PrefixGroup]) {
        let lone = groups.filter { $0.prefix.isEmpty && $0.members.count == 1 }
        let shared = groups.filter { !($0.prefix.isEmpty && $0.members.count == 1) }
        for g in lone {
            let m = g.members[0], s0 = tokens.count
            for (t, id) in m.suffix.enumerated() {
                tokens.append(id); positions.append(Int32(t))
                spanA.append(s0..<s0); spanB.append(s0..<(s0 + t + 1))
            }
            lastRows.append(tokens.count - 1); memberIndex.append(m.index)
        }
        self.lone = PackedBatch(lengths: lone.map { $0.members[0].suffix.count })
        for g in shared {
            let p0 = tokens.count, p = g.prefix.count
            for (t, id) in g.prefix.enumerated() {
                tokens.append(id); positions.append(Int32(t))
                spanA.append(p0..<(p0 + t + 1)); spanB.append(p0..<p0)
            }
            for m in g.members {
                let s0 = tokens.count
                for (t, id) in m.suffix.enumerated() {
                    tokens.append(id); positions.append(Int32(p + t))
                    spanA.append(p0..<(p0 + p)); spanB.append(s0..<(s0 + t + 1))
                }
                lastRows.append(tokens.count - 1); memberIndex.append(m.index)
            }
        }
    }
}

extension LlamaModel {
    /// One block over a layout's rows, in place on x (R, C): the plain block with the
    /// attention split between the packed lone prompts and the span kernel for shared groups.
    func blockForward(_ w: BlockWeights, x: UnsafeMutablePointer<Float>, layout: RowLayout) {
        let R = layout.rowCount
        if R == 0 { return }
        let c = config
        let C = c.hiddenSize, QD = c.qDim, KVD = c.kvDim
        let a = scratchActivations(tokens: R)
        ensureRope(length: layout.maxLength)
        let eps = Float(c.rmsNormEps)
        w.attnNorm.withUnsafeBufferPointer { rmsnormForward(a.attnNormOut, a.attnNormRstd, x, $0.baseAddress!, T: R, C: C, eps: eps) }
        linear(a.q, a.attnNormOut, w.q, w.qBias, T: R, C: C, OC: QD)
        linear(a.k, a.attnNormOut, w.k, w.kBias, T: R, C: C, OC: KVD)
        linear(a.v, a.attnNormOut, w.v, w.vBias, T: R, C: C, OC: KVD)
        layout.positions.withUnsafeBufferPointer { pos in
            ropeForward(a.q, positions: pos.baseAddress!, T: R, nHeads: c.numHeads, table: rope)
            ropeForward(a.k, positions: pos.baseAddress!, T: R, nHeads: c.numKVHeads, table: rope)
        }
        let L0 = layout.lone.totalTokens
        if L0 > 0 {
            attentionForward(a.attnOut, nil, q: a.q, k: a.k, v: a.v, batch: layout.lone,
                             nHeads: c.numHeads, nKVHeads: c.numKVHeads, headDim: c.headDim)
        }
        if L0 < R {
            spanAttentionForward(a.attnOut + L0 * QD, q: a.q + L0 * QD, k: a.k, v: a.v,
                                 keysA: Array(layout.spanA[L0...]), keysB: Array(layout.spanB[L0...]),
                                 nHeads: c.numHeads, nKVHeads: c.numKVHeads, headDim: c.headDim)
        }
        a.residualAttn.update(from: x, count: R * C)
        outputProjectionAndMLP(w, a, rows: R, out: x)
    }

    /// A block whose output is wanted only at each member's last row (the model's last block
    /// when only next-token logits are asked for): RMSNorm, K and V run on every row (attention
    /// reads them), Q, attention, O and the MLP only on the last rows. out (members, C), in the
    /// layout's member order, receives the block's output there; x (R, C) is not changed.
    func lastRowsBlockForward(_ w: BlockWeights, x: UnsafeMutablePointer<Float>, layout: RowLayout,
                              out: UnsafeMutablePointer<Float>) {
        let R = layout.rowCount, n = layout.lastRows.count
        if R == 0 { return }
        let c = config
        let C = c.hiddenSize, QD = c.qDim, KVD = c.kvDim
        let a = scratchActivations(tokens: R)
        ensureRope(length: layout.maxLength)
        let eps = Float(c.rmsNormEps)
        let rows = layout.lastRows
        // All rows: n = attn_norm(x) (R, C), k, v (R, KVD); RoPE on k.
        w.attnNorm.withUnsafeBufferPointer { rmsnormForward(a.attnNormOut, a.attnNormRstd, x, $0.baseAddress!, T: R, C: C, eps: eps) }
        linear(a.k, a.attnNormOut, w.k, w.kBias, T: R, C: C, OC: KVD)
        linear(a.v, a.attnNormOut, w.v, w.vBias, T: R, C: C, OC: KVD)
        layout.positions.withUnsafeBufferPointer { ropeForward(a.k, positions: $0.baseAddress!, T: R, nHeads: c.numKVHeads, table: rope) }
        // Last rows only, packed (n, ·) at the start of the scratch buffers.
        let nl = a.ffnNormOut                       // (n, C) attn_norm at the last rows
        for (j, r) in rows.enumerated() { (nl + j * C).update(from: a.attnNormOut + r * C, count: C) }
        linear(a.q, nl, w.q, w.qBias, T: n, C: C, OC: QD)
        let lastPositions = rows.map { layout.positions[$0] }
        lastPositions.withUnsafeBufferPointer { ropeForward(a.q, positions: $0.baseAddress!, T: n, nHeads: c.numHeads, table: rope) }
        spanAttentionForward(a.attnOut, q: a.q, k: a.k, v: a.v,
                             keysA: rows.map { layout.spanA[$0] }, keysB: rows.map { layout.spanB[$0] },
                             nHeads: c.numHeads, nKVHeads: c.numKVHeads, headDim: c.headDim)
        // h = x + attnOut @ Woᵀ at the last rows
        for (j, r) in rows.enumerated() { (a.residualAttn + j * C).update(from: x + r * C, count: C) }
        outputProjectionAndMLP(w, a, rows: n, out: out)
    }
}
