// `float-rans`: the float delta of `float-diff` (zigzag of the bit-pattern difference, in the
// context of the base element's exponent) coded with static per-frame frequency tables and four
// interleaved rANS states instead of an adaptive binary range coder. One table lookup and one
// multiply per element instead of ~6 adaptive binary decisions: ~5× faster to decode (16 → 3.1 ns/element), at about
// the same size (Formats/lftfpatch.md, "float-rans"; BENCHMARKS.md).
//
// Frame:
//   u8 1 (frame layout)
//   varint C                         crossings: elements whose exponent changes
//   token stream X (only if C > 0)   2C tokens: gap, exponent step, gap, ...
//   token stream M                   one token per element, context = base exponent
//   varint E, E bytes                extra bits (X's, then M's, in token order, LSB first)
//
// Numbers become tokens: v < 64 → token v; else token 64 + (bitlength(v) − 7) followed by the
// bitlength(v) − 1 bits below the leading one as extra bits.
//
// Token stream:
//   varint U                          contexts with tables
//   U × { varint context (increasing), varint S (alphabet size), S × varint frequency }
//                                     frequencies sum to 4096 (12-bit probabilities)
//   varint W, u32 state[4], u16 word[W]
// Token i is coded by state i mod 4; the encoder runs backwards, so the decoder reads the words
// forwards. Each state starts (encoder) and must end (decoder) at 2^16.
import Foundation
import ModelFormats

enum Rans {
    static let probBits: UInt32 = 12
    static let probScale: UInt32 = 1 << 12
    static let lower: UInt32 = 1 << 16           // states live in [2^16, 2^32)
    static let direct: UInt32 = 64               // numbers below this are their own token
    static let invalidToken: UInt32 = 127

    /// Alphabet size for numbers of at most `bits` bits.
    static func maxTokens(bits: Int) -> Int { Int(direct) + bits - 6 }

    @inline(__always) static func token(_ v: UInt32) -> (token: UInt8, extra: Int) {
        if v < direct { return (UInt8(v), 0) }
        let k = 32 - v.leadingZeroBitCount             // 7...32
        return (UInt8(Int(direct) + k - 7), k - 1)
    }

    /// Frequencies summing to 4096 from counts: every used symbol gets at least 1.
    static func normalize(_ counts: [Int]) -> [UInt32] {
        let total = counts.reduce(0, +)
        var f = counts.map { c -> Int in c == 0 ? 0 : max(1, Int((Double(c) * Double(probScale) / Double(total)).rounded())) }
        var sum = f.reduce(0, +)
        while sum != Int(probScale) {
            if sum > Int(probScale) {
                // Take from the largest symbol that can spare it.
                var best = -1
                for i in f.indices where f[i] > 1 && (best < 0 || f[i] > f[best]) { best = i }
                let take = min(sum - Int(probScale), f[best] - 1)
                f[best] -= take; sum -= take
            } else {
                var best = 0
                for i in f.indices where counts[i] > counts[best] { best = i }
                f[best] += Int(probScale) - sum; sum = Int(probScale)
            }
        }
        return f.map { UInt32($0) }
    }
}

// MARK: - Byte and bit I/O

struct ByteWriter {
    var bytes: [UInt8] = []
    mutating func varint(_ v: Int) {
        var v = UInt64(v)
        while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
}

struct ByteReader {
    let base: UnsafePointer<UInt8>
    let end: Int
    var pos = 0
    init(_ b: UnsafeRawBufferPointer) {
        base = (b.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!).assumingMemoryBound(to: UInt8.self)
        end = b.count
    }
    var remaining: Int { end - pos }
    mutating func u8() -> Int? {
        guard pos < end else { return nil }
        defer { pos += 1 }
        return Int(base[pos])
    }
    mutating func varint(max: Int = Int(Int32.max)) -> Int? {
        var v = 0, shift = 0
        while shift < 35 {
            guard let b = u8() else { return nil }
            v |= (b & 0x7F) << shift
            if b < 0x80 { return v <= max ? v : nil }
            shift += 7
        }
        return nil
    }
    mutating func u32() -> UInt32? {
        guard remaining >= 4 else { return nil }
        defer { pos += 4 }
        return UnsafeRawPointer(base + pos).loadUnaligned(as: UInt32.self).littleEndian
    }
}

struct BitWriter {
    var bytes: [UInt8] = []
    var acc: UInt64 = 0
    var n = 0
    @inline(__always) mutating func put(_ v: UInt32, _ count: Int) {
        guard count > 0 else { return }
        acc |= UInt64(v & UInt32(truncatingIfNeeded: (1 << UInt64(count)) - 1)) << UInt64(n)
        n += count
        while n >= 8 { bytes.append(UInt8(truncatingIfNeeded: acc)); acc >>= 8; n -= 8 }
    }
    mutating func finish() -> [UInt8] {
        if n > 0 { bytes.append(UInt8(truncatingIfNeeded: acc)); acc = 0; n = 0 }
        return bytes
    }
}

struct BitReader {
    let base: UnsafePointer<UInt8>
    let end: Int
    var pos = 0
    var acc: UInt64 = 0
    var n = 0
    var overrun = false
    init(_ p: UnsafePointer<UInt8>, count: Int) { base = p; end = count }
    /// `count` (1...31) bits.
    @inline(__always) mutating func get(_ count: Int) -> UInt32 {
        while n < count {
            if pos < end { acc |= UInt64(base[pos]) << UInt64(n); pos += 1 } else { overrun = true }
            n += 8
        }
        let v = UInt32(truncatingIfNeeded: acc & ((1 << UInt64(count)) - 1))
        acc >>= UInt64(count); n -= count
        return v
    }
    /// Every byte used, and the unused bits of the last one zero.
    var finishedExactly: Bool { !overrun && pos == end && acc == 0 }
}

// MARK: - Token streams

/// Encodes `tokens` (token i in context ctx(i)) as a token stream. Tables only for used contexts.
func ransEncodeTokens(_ tokens: UnsafeBufferPointer<UInt8>, contexts: Int, ctx: (Int) -> Int, into w: inout ByteWriter) {
    let n = tokens.count
    var counts = [[Int]](repeating: [], count: contexts)
    for i in 0..<n {
        let c = ctx(i), t = Int(tokens[i])
        if counts[c].count <= t { counts[c] += [Int](repeating: 0, count: t + 1 - counts[c].count) }
        counts[c][t] += 1
    }
    var freq = [[UInt32]](repeating: [], count: contexts)
    var start = [[UInt32]](repeating: [], count: contexts)
    var used = 0
    for c in 0..<contexts where !counts[c].isEmpty {
        used += 1
        freq[c] = Rans.normalize(counts[c])
        var s: UInt32 = 0
        start[c] = freq[c].map { f in defer { s += f }; return s }
    }
    w.varint(used)
    for c in 0..<contexts where !counts[c].isEmpty {
        w.varint(c); w.varint(freq[c].count)
        // Frequencies; a 0 is followed by the count of further 0s.
        var t = 0
        while t < freq[c].count {
            w.varint(Int(freq[c][t]))
            if freq[c][t] == 0 {
                var r = 0
                while t + 1 + r < freq[c].count && freq[c][t + 1 + r] == 0 { r += 1 }
                w.varint(r); t += r
            }
            t += 1
        }
    }
    // Backwards, state i & 3; words are pushed and then reversed.
    var words: [UInt16] = []
    words.reserveCapacity(n / 8 + 16)
    var x = [UInt32](repeating: Rans.lower, count: 4)
    var i = n - 1
    while i >= 0 {
        let c = ctx(i), t = Int(tokens[i])
        let f = freq[c][t], st = start[c][t]
        var s = x[i & 3]
        let xmax = UInt64((Rans.lower >> Rans.probBits) << 16) * UInt64(f)   // 2^32 when f = 4096
        if UInt64(s) >= xmax { words.append(UInt16(truncatingIfNeeded: s)); s >>= 16 }
        s = ((s / f) << Rans.probBits) + (s % f) + st
        x[i & 3] = s
        i -= 1
    }
    w.varint(words.count)
    for s in x { w.u32(s) }
    w.bytes.reserveCapacity(w.bytes.count + words.count * 2)
    for wd in words.reversed() { w.bytes.append(UInt8(truncatingIfNeeded: wd)); w.bytes.append(UInt8(truncatingIfNeeded: wd >> 8)) }
}

/// A parsed token stream: decode tables (one 4096-entry table per used context; unused contexts
/// point at a table that yields the invalid token) and the rANS words.
final class RansTokenStream {
    /// entry = start (bits 0–11) | freq (12–24) | token (25–31)
    let tables: UnsafeMutablePointer<UInt32>
    let tableOf: UnsafeMutablePointer<UnsafePointer<UInt32>>
    let contexts: Int
    var state = [UInt32](repeating: 0, count: 4)
    /// The words, copied with one 0xFFFF word of padding so the decoder can read one past the
    /// end without a branch.
    private(set) var words: UnsafeMutablePointer<UInt16>
    private(set) var wordCount: Int

    /// Parses a token stream at the reader's position; nil if malformed.
    /// With `differences`, table entries carry, instead of the token, a signed 7-bit code
    /// (bits 25–31): a direct token z (< 64) as its difference unzigzag(z) (−32…31), an escape
    /// token 64 + j as 32 + j, the invalid token as −64 — so the decoder's common case needs
    /// no unzigzag.
    init?(_ r: inout ByteReader, contexts: Int, maxTokens: Int, differences: Bool = false) {
        self.contexts = contexts
        guard let used = r.varint(max: contexts), used >= 1 else { return nil }
        tables = .allocate(capacity: (used + 1) * Int(Rans.probScale))
        tableOf = .allocate(capacity: contexts)
        let invalid = tables + used * Int(Rans.probScale)
        let invalidCode: UInt32 = differences ? 0x40 : Rans.invalidToken    // −64 as 7 bits
        for s in 0..<Int(Rans.probScale) { invalid[s] = invalidCode << 25 | 1 << 12 | UInt32(s) }
        tableOf.initialize(repeating: UnsafePointer(invalid), count: contexts)
        words = .allocate(capacity: 1)
        words[0] = 0xFFFF
        wordCount = 0
        var prev = -1
        for u in 0..<used {
            guard let c = r.varint(max: contexts - 1), c > prev,
                  let s = r.varint(max: maxTokens), s >= 1 else { return nil }
            prev = c
            let tab = tables + u * Int(Rans.probScale)
            var at: UInt32 = 0
            var t = 0
            while t < s {
                guard let f = r.varint(max: Int(Rans.probScale)), at + UInt32(f) <= Rans.probScale else { return nil }
                if f == 0 {
                    guard let zeros = r.varint(max: s - 1 - t) else { return nil }
                    t += zeros + 1
                    continue
                }
                var code = UInt32(t)
                if differences {
                    code = t < Int(Rans.direct) ? UInt32(bitPattern: (Int32(t) >> 1) ^ -(Int32(t) & 1)) & 0x7F : UInt32(t - Int(Rans.direct) + 32)
                }
                let e = code << 25 | UInt32(f) << 12
                for k in at..<(at + UInt32(f)) { tab[Int(k)] = e | at }
                at += UInt32(f)
                t += 1
            }
            guard at == Rans.probScale else { return nil }
            tableOf[c] = UnsafePointer(tab)
        }
        guard let w = r.varint() else { return nil }
        for k in 0..<4 {
            guard let x = r.u32(), x >= Rans.lower else { return nil }
            state[k] = x
        }
        guard r.remaining >= 2 * w else { return nil }
        words.deallocate()
        words = .allocate(capacity: w + 1)
        for k in 0..<w { words[k] = UnsafeRawPointer(r.base + r.pos + 2 * k).loadUnaligned(as: UInt16.self).littleEndian }
        words[w] = 0xFFFF
        wordCount = w
        r.pos += 2 * w
    }

    deinit { tables.deallocate(); tableOf.deallocate(); words.deallocate() }
}

/// Decoding cursor over a token stream: the four states and the word position.
struct RansCursor {
    var x0: UInt32, x1: UInt32, x2: UInt32, x3: UInt32
    let words: UnsafePointer<UInt16>      // wordCount words + one padding word
    let wordCount: Int
    var pos = 0

    init(_ s: RansTokenStream) {
        (x0, x1, x2, x3) = (s.state[0], s.state[1], s.state[2], s.state[3])
        words = UnsafePointer(s.words); wordCount = s.wordCount
    }

    /// One decoding step; the refill is branch-free: past the last word it reads the padding
    /// word and `pos` goes beyond `wordCount`, which `finishedExactly` reports.
    @inline(__always) static func step(_ x: inout UInt32, _ tab: UnsafePointer<UInt32>, _ words: UnsafePointer<UInt16>,
                                       _ wordCount: Int, _ pos: inout Int) -> UInt32 {
        let slot = x & (Rans.probScale - 1)
        let e = tab[Int(slot)]
        let y = ((e >> 12) & 0x1FFF) &* (x >> Rans.probBits) &+ slot &- (e & 0xFFF)
        let need = y < Rans.lower
        let w = UInt32(words[min(pos, wordCount)])
        x = need ? (y << 16 | w) : y
        pos &+= need ? 1 : 0
        return e >> 25
    }

    /// Token `i` (state i & 3) from table `tab`.
    @inline(__always) mutating func decode(_ i: Int, _ tab: UnsafePointer<UInt32>) -> UInt32 {
        var p = pos
        defer { pos = p }
        switch i & 3 {
        case 0: return Self.step(&x0, tab, words, wordCount, &p)
        case 1: return Self.step(&x1, tab, words, wordCount, &p)
        case 2: return Self.step(&x2, tab, words, wordCount, &p)
        default: return Self.step(&x3, tab, words, wordCount, &p)
        }
    }

    /// Tokens i, i+1, i+2, i+3 for i a multiple of 4 (states 0, 1, 2, 3).
    @inline(__always) mutating func decode4(_ t0: UnsafePointer<UInt32>, _ t1: UnsafePointer<UInt32>,
                                            _ t2: UnsafePointer<UInt32>, _ t3: UnsafePointer<UInt32>) -> (UInt32, UInt32, UInt32, UInt32) {
        var p = pos
        defer { pos = p }
        return (Self.step(&x0, t0, words, wordCount, &p), Self.step(&x1, t1, words, wordCount, &p),
                Self.step(&x2, t2, words, wordCount, &p), Self.step(&x3, t3, words, wordCount, &p))
    }

    var finishedExactly: Bool {
        pos == wordCount && x0 == Rans.lower && x1 == Rans.lower && x2 == Rans.lower && x3 == Rans.lower
    }
}

// MARK: - float-rans

/// Which side each element of a frame's source is on. Apply and revert decode every element the
/// same way; journal recovery decodes a frame whose elements are some base, some patched.
protocol RansDirection {
    /// The source element `i` is the patched one (decode it in reverse).
    func reverse(_ i: Int) -> Bool
    /// Uniform decoding outputs the other side; mixed decoding outputs one chosen side.
    func pick<T>(_ source: T, _ other: T, reverse: Bool) -> T
}

struct UniformDirection: RansDirection {
    let rev: Bool
    @inline(__always) func reverse(_ i: Int) -> Bool { rev }
    @inline(__always) func pick<T>(_ source: T, _ other: T, reverse: Bool) -> T { other }
}

/// Per element: `patchedFlags[i] != 0` when element i currently holds the patched value; the
/// output is the base value of every element (`wantBase`) or the patched one.
struct MixedDirection: RansDirection {
    let patchedFlags: UnsafePointer<UInt8>
    let wantBase: Bool
    @inline(__always) func reverse(_ i: Int) -> Bool { patchedFlags[i] != 0 }
    @inline(__always) func pick<T>(_ source: T, _ other: T, reverse: Bool) -> T { reverse == wantBase ? other : source }
}

extension DeltaCodec {
    static func encodeFloatRans(_ L: FloatLayout, base: UnsafeRawBufferPointer, patched: UnsafeRawBufferPointer) -> [UInt8] {
        aligned(base, L.width / 8) { b in aligned(patched, L.width / 8) { p in
            L.width == 16 ? encodeFloatRans(L, b, p, UInt16.self) : encodeFloatRans(L, b, p, UInt32.self)
        } }
    }

    private static func encodeFloatRans<T: FixedWidthInteger & UnsignedInteger>(
        _ L: FloatLayout, _ base: UnsafeRawBufferPointer, _ patched: UnsafeRawBufferPointer, _: T.Type) -> [UInt8] {
        let n = patched.count / MemoryLayout<T>.size
        let bp = base.baseAddress!.assumingMemoryBound(to: T.self)
        let pp = patched.baseAddress!.assumingMemoryBound(to: T.self)
        let shift = L.expShift, mask = L.expMask
        var tokens = [UInt8](repeating: 0, count: n)
        var ctx = [UInt8](repeating: 0, count: n)
        var cross: [UInt8] = []          // gap, step, gap, step ... tokens
        var crossExtra = BitWriter(), extra = BitWriter()
        var last = -1
        for i in 0..<n {
            let b = T(littleEndian: bp[i]), p = T(littleEndian: pp[i])
            let eb = (UInt32(b) >> shift) & mask, ep = (UInt32(p) >> shift) & mask
            if eb != ep {
                let g = Rans.token(UInt32(i - last - 1)); cross.append(g.token); crossExtra.put(UInt32(i - last - 1), g.extra)
                let zs = UInt32(bitPattern: (Int32(ep) - Int32(eb)) << 1 ^ (Int32(ep) - Int32(eb)) >> 31) - 1
                let s = Rans.token(zs); cross.append(s.token); crossExtra.put(zs, s.extra)
                last = i
            }
            let d = p &- b
            let z = UInt32((d << 1) ^ (0 &- (d >> (T.bitWidth - 1))))
            let t = Rans.token(z)
            tokens[i] = t.token; ctx[i] = UInt8(eb); extra.put(z, t.extra)
        }
        var w = ByteWriter()
        w.bytes.reserveCapacity(n / 4)
        w.bytes.append(1)
        w.varint(cross.count / 2)
        if !cross.isEmpty {
            cross.withUnsafeBufferPointer { ransEncodeTokens($0, contexts: 2, ctx: { $0 & 1 }, into: &w) }
        }
        tokens.withUnsafeBufferPointer { tk in ctx.withUnsafeBufferPointer { cx in
            ransEncodeTokens(tk, contexts: L.contexts, ctx: { Int(cx[$0]) }, into: &w)
        } }
        // Extra bits: the crossings', then the elements'; concatenated bit-exactly.
        var all = BitWriter()
        let ce = crossExtra.n, cb = crossExtra.finish()
        for (k, byte) in cb.enumerated() { all.put(UInt32(byte), k == cb.count - 1 && ce > 0 ? ce : 8) }
        let ee = extra.n, eb = extra.finish()
        for (k, byte) in eb.enumerated() { all.put(UInt32(byte), k == eb.count - 1 && ee > 0 ? ee : 8) }
        let bits = all.finish()
        w.varint(bits.count)
        w.bytes += bits
        return w.bytes
    }

    static func decodeFloatRans<D: RansDirection>(_ L: FloatLayout, frame: UnsafeRawBufferPointer, source: UnsafeRawBufferPointer,
                                                into out: UnsafeMutableRawBufferPointer, direction: D, tensor: String) throws {
        let w = L.width / 8
        guard out.count == 0 || Int(bitPattern: out.baseAddress) % w == 0 else {
            var tmp = [UInt8](repeating: 0, count: out.count)
            try tmp.withUnsafeMutableBytes { try decodeFloatRans(L, frame: frame, source: source, into: $0, direction: direction, tensor: tensor) }
            tmp.withUnsafeBytes { out.copyMemory(from: $0) }
            return
        }
        let ok = aligned(source, w) { s in
            switch L.expShift {
            case 7: return decodeFloatRans(frame, s, out, direction, UInt16.self, BF16Exponent.self)
            case 10: return decodeFloatRans(frame, s, out, direction, UInt16.self, F16Exponent.self)
            default: return decodeFloatRans(frame, s, out, direction, UInt32.self, F32Exponent.self)
            }
        }
        guard ok else { throw PatchError.corruptFrame(tensor: tensor, detail: "float-rans stream does not decode") }
    }

    private static func decodeFloatRans<T: FixedWidthInteger & UnsignedInteger, D: RansDirection, E: ExponentField>(
        _ frame: UnsafeRawBufferPointer, _ source: UnsafeRawBufferPointer,
        _ out: UnsafeMutableRawBufferPointer, _ dir: D, _: T.Type, _: E.Type) -> Bool {
        let width = T.bitWidth
        let n = out.count / MemoryLayout<T>.size
        guard source.count >= out.count else { return false }
        var r = ByteReader(frame)
        guard r.u8() == 1, let crossings = r.varint(max: n) else { return false }
        // Crossing positions and exponent steps.
        var crossStream: RansTokenStream?
        if crossings > 0 {
            guard let s = RansTokenStream(&r, contexts: 2, maxTokens: Rans.maxTokens(bits: 32)) else { return false }
            crossStream = s
        }
        guard let main = RansTokenStream(&r, contexts: Int(E.mask) + 1, maxTokens: Rans.maxTokens(bits: width), differences: true),
              let extraBytes = r.varint(), extraBytes == r.remaining else { return false }
        var bits = BitReader(r.base + r.pos, count: extraBytes)
        var crossAt = [Int](), crossStep = [Int32]()
        if let cs = crossStream {
            crossAt.reserveCapacity(crossings); crossStep.reserveCapacity(crossings)
            var c = RansCursor(cs)
            var pos = -1
            for k in 0..<crossings {
                var g = c.decode(2 * k, cs.tableOf[0]), z = c.decode(2 * k + 1, cs.tableOf[1])
                guard Rans.resolve(&g, &bits), Rans.resolve(&z, &bits), z < 0xFFFF else { return false }
                pos += Int(g) + 1
                guard pos < n else { return false }
                let zz = Int32(z + 1)
                crossAt.append(pos); crossStep.append((zz >> 1) ^ -(zz & 1))
            }
            guard c.finishedExactly else { return false }
        }
        let sp = source.baseAddress!.assumingMemoryBound(to: T.self)
        let op = out.baseAddress!.assumingMemoryBound(to: T.self)
        let shift = E.shift, mask = E.mask, contexts = Int32(E.mask) + 1
        let tableOf = main.tableOf
        var c = RansCursor(main)
        var bad: UInt32 = 0              // exponent mismatches, OR-ed
        var i = 0, k = 0
        while i < n {
            let end = k < crossAt.count ? crossAt[k] : n
            // Elements whose exponent does not change: four at a time (one per rANS state) from a
            // multiple of 4 while four remain, one at a time before and after.
            while i < end {
                if i & 3 != 0 || i + 4 > end {
                    let s = T(littleEndian: sp[i])
                    let es = (UInt32(s) >> shift) & mask
                    guard let d = Rans.difference(c.decode(i, tableOf[Int(es)]), &bits, T.self) else { return false }
                    let rev = dir.reverse(i)
                    let t = rev ? s &- d : s &+ d
                    bad |= ((UInt32(t) >> shift) & mask) ^ es
                    op[i] = dir.pick(s, t, reverse: rev).littleEndian
                    i += 1
                    continue
                }
                let s0 = T(littleEndian: sp[i]), s1 = T(littleEndian: sp[i + 1])
                let s2 = T(littleEndian: sp[i + 2]), s3 = T(littleEndian: sp[i + 3])
                let e0 = (UInt32(s0) >> shift) & mask, e1 = (UInt32(s1) >> shift) & mask
                let e2 = (UInt32(s2) >> shift) & mask, e3 = (UInt32(s3) >> shift) & mask
                let (k0, k1, k2, k3) = c.decode4(tableOf[Int(e0)], tableOf[Int(e1)], tableOf[Int(e2)], tableOf[Int(e3)])
                // Codes −32…31 are the differences themselves (sign-extended from bits 25–31).
                let c0 = Int32(bitPattern: k0 << 25) >> 25, c1 = Int32(bitPattern: k1 << 25) >> 25
                let c2 = Int32(bitPattern: k2 << 25) >> 25, c3 = Int32(bitPattern: k3 << 25) >> 25
                var d0 = T(truncatingIfNeeded: c0), d1 = T(truncatingIfNeeded: c1)
                var d2 = T(truncatingIfNeeded: c2), d3 = T(truncatingIfNeeded: c3)
                if (UInt32(bitPattern: c0 &+ 32) | UInt32(bitPattern: c1 &+ 32) | UInt32(bitPattern: c2 &+ 32) | UInt32(bitPattern: c3 &+ 32)) >= 64 {
                    // An escape (extra bits, in element order) or the invalid token.
                    guard let a = Rans.difference(k0, &bits, T.self), let b = Rans.difference(k1, &bits, T.self),
                          let c = Rans.difference(k2, &bits, T.self), let d = Rans.difference(k3, &bits, T.self) else { return false }
                    (d0, d1, d2, d3) = (a, b, c, d)
                }
                let r0 = dir.reverse(i), r1 = dir.reverse(i + 1), r2 = dir.reverse(i + 2), r3 = dir.reverse(i + 3)
                let t0 = r0 ? s0 &- d0 : s0 &+ d0, t1 = r1 ? s1 &- d1 : s1 &+ d1
                let t2 = r2 ? s2 &- d2 : s2 &+ d2, t3 = r3 ? s3 &- d3 : s3 &+ d3
                // Exponents must not change here; checked by comparing the OR of the four
                // exponent differences (one test per four elements).
                bad |= ((UInt32(t0 ^ s0) | UInt32(t1 ^ s1) | UInt32(t2 ^ s2) | UInt32(t3 ^ s3)) >> shift) & mask
                op[i] = dir.pick(s0, t0, reverse: r0).littleEndian
                op[i + 1] = dir.pick(s1, t1, reverse: r1).littleEndian
                op[i + 2] = dir.pick(s2, t2, reverse: r2).littleEndian
                op[i + 3] = dir.pick(s3, t3, reverse: r3).littleEndian
                i += 4
            }
            if i == n { break }
            // A crossing element: its base exponent is the source's, or the source's minus the step.
            let step = crossStep[k]
            k += 1
            let s = T(littleEndian: sp[i])
            let es = Int32((UInt32(s) >> shift) & mask)
            let rev = dir.reverse(i)
            let eb = rev ? es - step : es
            guard eb >= 0, eb < contexts else { return false }
            guard let d = Rans.difference(c.decode(i, tableOf[Int(eb)]), &bits, T.self) else { return false }
            let t = rev ? s &- d : s &+ d
            let et = Int32((UInt32(t) >> shift) & mask)
            guard (rev ? es - et : et - es) == step else { return false }
            op[i] = dir.pick(s, t, reverse: rev).littleEndian
            i += 1
        }
        return bad == 0 && c.finishedExactly && bits.finishedExactly
    }
}

extension Rans {
    /// The difference (p − b as a T-bit pattern) a main-stream table code stands for (the
    /// 7-bit code from `decode`, see `RansTokenStream(differences:)`); nil for the invalid
    /// token or a number wider than T.
    @inline(__always) static func difference<T: FixedWidthInteger & UnsignedInteger>(_ code: UInt32, _ bits: inout BitReader, _: T.Type) -> T? {
        let c = Int32(bitPattern: code << 25) >> 25
        if c >= -32 && c < 32 { return T(truncatingIfNeeded: c) }
        guard c >= 32, c <= 57 else { return nil }
        let k = Int(c) - 32 + 7                        // 7...32
        let z = 1 << UInt32(k - 1) | bits.get(k - 1)
        guard z <= UInt32(T.max) else { return nil }
        let zt = T(truncatingIfNeeded: z)
        return (zt >> 1) ^ (0 &- (zt & 1))
    }

    /// A token → its number (reading extra bits for tokens ≥ 64); false for the invalid token.
    @inline(__always) static func resolve(_ z: inout UInt32, _ bits: inout BitReader) -> Bool {
        if z < direct { return true }
        if z == invalidToken { return false }
        let k = Int(z) - Int(direct) + 7
        z = 1 << UInt32(k - 1) | bits.get(k - 1)
        return true
    }

    /// `source` plus (or, in reverse, minus) the difference whose zigzag code is `z`.
    @inline(__always) static func apply<T: FixedWidthInteger & UnsignedInteger>(_ source: T, _ z: UInt32, _ reverse: Bool) -> T {
        let zt = T(truncatingIfNeeded: z)
        let d = (zt >> 1) ^ (0 &- (zt & 1))
        return reverse ? source &- d : source &+ d
    }
}

/// The exponent field of a float layout as compile-time constants, so the decoder's hot loop
/// is specialized per dtype.
protocol ExponentField { static var shift: UInt32 { get }; static var mask: UInt32 { get } }
enum BF16Exponent: ExponentField { static var shift: UInt32 { 7 }; static var mask: UInt32 { 0xFF } }
enum F16Exponent: ExponentField { static var shift: UInt32 { 10 }; static var mask: UInt32 { 0x1F } }
enum F32Exponent: ExponentField { static var shift: UInt32 { 23 }; static var mask: UInt32 { 0xFF } }
