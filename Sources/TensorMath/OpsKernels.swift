// Kernels behind the public ops in Ops.swift: RoPE, the row-wise exp, and causal GQA attention.
// All hot loops run on raw pointers; release builds use -Ounchecked, so preconditions here
// document the contract but are not checked at run time.

import Foundation

// MARK: - RoPE

extension RopeTable {
    /// Scaling types the table implements (`nil`, "none" and "default" mean no scaling).
    public static let supportedScalingTypes: Set<String> = ["none", "default", "linear", "llama3"]

    /// True when `init` accepts this `rope_scaling.type` (check this on user input: init traps otherwise).
    public static func supportsScaling(_ type: String?) -> Bool {
        supportedScalingTypes.contains(normalizedScaling(type))
    }

    static func normalizedScaling(_ type: String?) -> String {
        guard let t = type?.lowercased(), !t.isEmpty else { return "none" }
        return t
    }
}

/// Rotates every head of every row by +angle (sign 1) or −angle (sign −1), in place.
func ropeApply(_ x: UnsafeMutablePointer<Float>, positions: UnsafePointer<Int32>,
               T: Int, nHeads: Int, table: RopeTable, sign: Float) {
    let hd = table.headDim, half = hd / 2, stride = nHeads * hd
    let pairing = table.pairing
    table.cos.withUnsafeBufferPointer { cb in
        table.sin.withUnsafeBufferPointer { sb in
            let cosBase = cb.baseAddress!, sinBase = sb.baseAddress!
            parallelRanges(T, minChunk: max(1, 8192 / max(stride, 1))) { rows in
                for t in rows {
                    let p = Int(positions[t])
                    precondition(p >= 0 && p < table.maxPositions, "RoPE position \(p) outside table")
                    let c = cosBase + p * half, s = sinBase + p * half
                    for h in 0..<nHeads {
                        let v = x + t * stride + h * hd
                        switch pairing {
                        case .adjacent:
                            for i in 0..<half {
                                let x0 = v[2 * i], x1 = v[2 * i + 1]
                                let ci = c[i], si = sign * s[i]
                                v[2 * i] = x0 * ci - x1 * si
                                v[2 * i + 1] = x0 * si + x1 * ci
                            }
                        case .halves:
                            let sv = F8(repeating: sign)
                            var i = 0
                            while i + 8 <= half {
                                let x0 = load8(v + i), x1 = load8(v + i + half)
                                let ci = load8(c + i), si = sv * load8(s + i)
                                store8(v + i, x0 * ci - x1 * si)
                                store8(v + i + half, x0 * si + x1 * ci)
                                i += 8
                            }
                            while i < half {
                                let x0 = v[i], x1 = v[i + half]
                                let ci = c[i], si = sign * s[i]
                                v[i] = x0 * ci - x1 * si
                                v[i + half] = x0 * si + x1 * ci
                                i += 1
                            }
                        }
                    }
                }
            }
        }
    }
}

// MARK: - exp over a row

/// o[i] = exp(x[i] − shift), i < n; returns Σ o. o may alias x.
@inline(__always) func expShifted(_ o: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int,
                                  shift: Float) -> Float {
    let sv = F8(repeating: shift)
    var acc = F8(), i = 0
    while i + 8 <= n {
        let e = exp8(load8(x + i) - sv)
        store8(o + i, e)
        acc += e
        i += 8
    }
    var s = acc.sum()
    if i + 4 <= n {  // attention rows are short: one 4-wide step before the scalar tail
        let e = exp4(UnsafeRawPointer(x + i).loadUnaligned(as: F4.self) - F4(repeating: shift))
        UnsafeMutableRawPointer(o + i).storeBytes(of: e, as: F4.self)
        s += e.sum()
        i += 4
    }
    while i < n { let e = exp1(x[i] - shift); o[i] = e; s += e; i += 1 }
    return s
}

// MARK: - attention

/// Sequences at least this long use sgemm for QKᵀ and att @ V; shorter ones use dot/axpy loops
/// (an sgemm call per (sequence, head) costs more than the math when L is tiny).
/// A tuning knob (measured by the benchmark test); set it before any op runs.
nonisolated(unsafe) public var attentionSgemmMinLength = 16

/// Start of each sequence's (nHeads, L, L) block of saved probabilities.
func attentionOffsets(_ batch: PackedBatch, nHeads: Int) -> [Int] {
    var offs = [Int](); offs.reserveCapacity(batch.lengths.count)
    var acc = 0
    for l in batch.lengths { offs.append(acc); acc += nHeads * l * l }
    return offs
}

/// Set-up shared by attention forward and backward: row strides of Q and K/V, query heads per
/// KV head, softmax scale 1/√hd, and where each sequence's saved probabilities start.
func attentionSetup(_ batch: PackedBatch, nHeads: Int, nKVHeads: Int, headDim hd: Int)
    -> (qs: Int, kvs: Int, group: Int, scale: Float, attOff: [Int]) {
    precondition(nKVHeads > 0 && nHeads % nKVHeads == 0, "nHeads \(nHeads) not a multiple of nKVHeads \(nKVHeads)")
    return (nHeads * hd, nKVHeads * hd, nHeads / nKVHeads, 1 / Float(hd).squareRoot(),
            attentionOffsets(batch, nHeads: nHeads))
}

/// Sequences shorter than `attentionSgemmMinLength` (and not empty), which the kernels handle
/// without sgemm; the longest of them; and their total work, which decides whether to go parallel.
func attentionShortSequences(_ batch: PackedBatch, nHeads: Int, headDim hd: Int)
    -> (seqs: [Int], maxLength: Int, work: Int) {
    let lengths = batch.lengths
    let shortSeqs = lengths.indices.filter { lengths[$0] > 0 && lengths[$0] < attentionSgemmMinLength }
    let maxShort = shortSeqs.map { lengths[$0] }.max() ?? 0
    let work = shortSeqs.reduce(0) { $0 + lengths[$1] * lengths[$1] } * nHeads * hd
    return (shortSeqs, maxShort, work)
}

func attentionForwardImpl(_ out: UnsafeMutablePointer<Float>, _ att: UnsafeMutablePointer<Float>?,
                          q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                          batch: PackedBatch, nHeads: Int, nKVHeads: Int, headDim hd: Int) {
    let (qs, kvs, group, scaleF, attOff) = attentionSetup(batch, nHeads: nHeads, nKVHeads: nKVHeads, headDim: hd)
    let lengths = batch.lengths, offsets = batch.offsets

    // Short sequences: one work item per (sequence, head), in parallel.
    let (shortSeqs, maxShort, work) = attentionShortSequences(batch, nHeads: nHeads, headDim: hd)
    parallelRanges(shortSeqs.count * nHeads, minChunk: work > 1 << 16 ? 1 : Int.max / 4) { items in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: max(maxShort, 1)) { buf in
            let p = buf.baseAddress!
            for item in items {
                let s = shortSeqs[item / nHeads], h = item % nHeads, kh = h / group
                let L = lengths[s], o = offsets[s]
                let kb = k + o * kvs + kh * hd, vb = v + o * kvs + kh * hd
                for t in 0..<L {
                    let qrow = q + (o + t) * qs + h * hd
                    let orow = out + (o + t) * qs + h * hd
                    var m = -Float.infinity
                    for j in 0...t {
                        let sc = dot(qrow, kb + j * kvs, hd) * scaleF
                        p[j] = sc
                        m = max(m, sc)
                    }
                    let sum = expShifted(p, p, t + 1, shift: m)
                    scale(p, 1 / sum, t + 1)
                    orow.update(repeating: 0, count: hd)
                    for j in 0...t { axpy(orow, p[j], vb + j * kvs, hd) }
                    if let att {
                        let arow = att + attOff[s] + (h * L + t) * L
                        arow.update(from: p, count: t + 1)
                        (arow + t + 1).update(repeating: 0, count: L - t - 1)
                    }
                }
            }
        }
    }

    // Long sequences: sgemm per (sequence, head), serially (BLAS threads internally).
    let longSeqs = lengths.indices.filter { lengths[$0] >= attentionSgemmMinLength }
    guard let maxLong = longSeqs.map({ lengths[$0] }).max() else { return }
    let scratch: UnsafeMutablePointer<Float>? = att == nil ? .allocate(capacity: maxLong * maxLong) : nil
    defer { scratch?.deallocate() }
    for s in longSeqs {
        let L = lengths[s], o = offsets[s]
        for h in 0..<nHeads {
            let kh = h / group
            let S = att.map { $0 + attOff[s] + h * L * L } ?? scratch!  // (L, L)
            // S (L, L) = scale · Q (L, hd) @ K (L, hd)ᵀ
            sgemm(transB: true, m: L, n: L, k: hd, alpha: scaleF, a: q + o * qs + h * hd, lda: qs,
                  b: k + o * kvs + kh * hd, ldb: kvs, c: S, ldc: L)
            parallelRanges(L, minChunk: 64) { rows in
                for t in rows {
                    let row = S + t * L
                    let sum = expShifted(row, row, t + 1, shift: maxElement(row, t + 1))
                    scale(row, 1 / sum, t + 1)
                    (row + t + 1).update(repeating: 0, count: L - t - 1)
                }
            }
            // out (L, hd) = P (L, L) @ V (L, hd)
            sgemm(m: L, n: hd, k: L, a: S, lda: L, b: v + o * kvs + kh * hd, ldb: kvs,
                  c: out + o * qs + h * hd, ldc: qs)
        }
    }
}

func attentionBackwardImpl(dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>,
                           dv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                           q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                           att: UnsafePointer<Float>, batch: PackedBatch,
                           nHeads: Int, nKVHeads: Int, headDim hd: Int) {
    let (qs, kvs, group, scaleF, attOff) = attentionSetup(batch, nHeads: nHeads, nKVHeads: nKVHeads, headDim: hd)
    let lengths = batch.lengths, offsets = batch.offsets

    // forward: S = scale · Q Kᵀ (causal), P = softmax(S), O = P V
    // dV += Pᵀ dO;  dP = dO Vᵀ;  dS = P ⊙ (dP − rowsum(P ⊙ dP));  dQ += scale · dS K;  dK += scale · dSᵀ Q
    // Work items are (sequence, KV head): the query heads sharing a KV head add into the same dK/dV.
    let (shortSeqs, maxShort, work) = attentionShortSequences(batch, nHeads: nHeads, headDim: hd)
    parallelRanges(shortSeqs.count * nKVHeads, minChunk: work > 1 << 16 ? 1 : Int.max / 4) { items in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: max(maxShort, 1)) { buf in
            let dp = buf.baseAddress!
            for item in items {
                let s = shortSeqs[item / nKVHeads], kh = item % nKVHeads
                let L = lengths[s], o = offsets[s]
                let kb = k + o * kvs + kh * hd, vb = v + o * kvs + kh * hd
                let dkb = dk + o * kvs + kh * hd, dvb = dv + o * kvs + kh * hd
                for h in kh * group ..< (kh + 1) * group {
                    for t in 0..<L {
                        let prow = att + attOff[s] + (h * L + t) * L
                        let dorow = dout + (o + t) * qs + h * hd
                        let qrow = q + (o + t) * qs + h * hd
                        let dqrow = dq + (o + t) * qs + h * hd
                        var sdot: Float = 0
                        for j in 0...t {
                            let d = dot(dorow, vb + j * kvs, hd)
                            dp[j] = d
                            sdot += prow[j] * d
                            axpy(dvb + j * kvs, prow[j], dorow, hd)
                        }
                        for j in 0...t {
                            let ds = prow[j] * (dp[j] - sdot) * scaleF
                            axpy(dqrow, ds, kb + j * kvs, hd)
                            axpy(dkb + j * kvs, ds, qrow, hd)
                        }
                    }
                }
            }
        }
    }

    let longSeqs = lengths.indices.filter { lengths[$0] >= attentionSgemmMinLength }
    guard let maxLong = longSeqs.map({ lengths[$0] }).max() else { return }
    let dS = UnsafeMutablePointer<Float>.allocate(capacity: maxLong * maxLong)
    defer { dS.deallocate() }
    for s in longSeqs {
        let L = lengths[s], o = offsets[s]
        for h in 0..<nHeads {
            let kh = h / group
            let P = att + attOff[s] + h * L * L           // (L, L)
            let dO = dout + o * qs + h * hd, Q = q + o * qs + h * hd
            let K = k + o * kvs + kh * hd, V = v + o * kvs + kh * hd
            // dP (L, L) = dO (L, hd) @ V (L, hd)ᵀ
            sgemm(transB: true, m: L, n: L, k: hd, a: dO, lda: qs, b: V, ldb: kvs, c: dS, ldc: L)
            // dV (L, hd) += Pᵀ (L, L) @ dO (L, hd)
            sgemm(transA: true, m: L, n: hd, k: L, a: P, lda: L, b: dO, ldb: qs, beta: 1,
                  c: dv + o * kvs + kh * hd, ldc: kvs)
            parallelRanges(L, minChunk: 64) { rows in
                for t in rows {
                    let p = P + t * L, d = dS + t * L
                    let sdot = dot(p, d, t + 1)
                    for j in 0...t { d[j] = p[j] * (d[j] - sdot) }
                    (d + t + 1).update(repeating: 0, count: L - t - 1)
                }
            }
            // dQ (L, hd) += scale · dS (L, L) @ K (L, hd)
            sgemm(m: L, n: hd, k: L, alpha: scaleF, a: dS, lda: L, b: K, ldb: kvs, beta: 1,
                  c: dq + o * qs + h * hd, ldc: qs)
            // dK (L, hd) += scale · dSᵀ (L, L) @ Q (L, hd)
            sgemm(transA: true, m: L, n: hd, k: L, alpha: scaleF, a: dS, lda: L, b: Q, ldb: qs, beta: 1,
                  c: dk + o * kvs + kh * hd, ldc: kvs)
        }
    }
}

// MARK: - attention over explicit key spans (shared prefixes)

/// out (n, nHeads · hd): query row i of q (n, nHeads · hd) attends to the key/value rows
/// `keysA[i]` then `keysB[i]` of k and v (rows of nKVHeads · hd), in that order; no other mask.
/// Query head h reads KV head h / (nHeads / nKVHeads); scale 1/√hd. A query whose keys are a
/// sequence's rows 0...t gets exactly what `attentionForward`'s short-sequence kernel computes
/// for row t (same dot, exp, normalisation and accumulation order), so a prompt run with its
/// prefix shared (keysA = the shared prefix rows, keysB = its own rows) matches the plain pass.
public func spanAttentionForward(_ out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>,
                                 k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                                 keysA: [Range<Int>], keysB: [Range<Int>],
                                 nHeads: Int, nKVHeads: Int, headDim hd: Int) {
    precondition(keysA.count == keysB.count, "one pair of key spans per query")
    precondition(nKVHeads > 0 && nHeads % nKVHeads == 0, "nHeads \(nHeads) not a multiple of nKVHeads \(nKVHeads)")
    let n = keysA.count
    let qs = nHeads * hd, kvs = nKVHeads * hd, group = nHeads / nKVHeads
    let scaleF = 1 / Float(hd).squareRoot()
    var maxKeys = 0, work = 0
    for i in 0..<n {
        let c = keysA[i].count + keysB[i].count
        maxKeys = max(maxKeys, c); work += c
    }
    work *= nHeads * hd
    parallelRanges(n * nHeads, minChunk: work > 1 << 16 ? 1 : Int.max / 4) { items in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: max(maxKeys, 1)) { buf in
            let p = buf.baseAddress!
            for item in items {
                let i = item / nHeads, h = item % nHeads
                let kb = k + (h / group) * hd, vb = v + (h / group) * hd
                let qrow = q + i * qs + h * hd, orow = out + i * qs + h * hd
                let spanA = keysA[i], spanB = keysB[i]
                var m = -Float.infinity
                var j = 0
                for r in spanA { let sc = dot(qrow, kb + r * kvs, hd) * scaleF; p[j] = sc; m = max(m, sc); j += 1 }
                for r in spanB { let sc = dot(qrow, kb + r * kvs, hd) * scaleF; p[j] = sc; m = max(m, sc); j += 1 }
                let sum = expShifted(p, p, j, shift: m)
                scale(p, 1 / sum, j)
                orow.update(repeating: 0, count: hd)
                j = 0
                for r in spanA { axpy(orow, p[j], vb + r * kvs, hd); j += 1 }
                for r in spanB { axpy(orow, p[j], vb + r * kvs, hd); j += 1 }
            }
        }
    }
}
