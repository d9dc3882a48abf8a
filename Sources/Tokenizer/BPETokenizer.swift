import Foundation

// Byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM...) and SentencePiece-style BPE (Llama 1/2,
// Mistral), following llama.cpp's llama-vocab.cpp step for step so that token ids agree:
//   1. special tokens (CONTROL / USER_DEFINED / UNKNOWN) are cut out of the raw text first,
//      longest first;
//   2. byte-level: each remaining fragment is pre-tokenized (PreTokenizer), each piece is
//      spelled in byte characters and merged pair by pair, lowest merge rank first (leftmost
//      on ties); sentencepiece: spaces become '▁' and characters merge by highest score;
//   3. BOS first when the model's own setting says so.
// Pieces are cached (piece text → ids), so repeated words cost one dictionary lookup.

public final class BPETokenizer: @unchecked Sendable {
    public let kind: TokenizerKind
    public let vocabSize: Int
    public let bosID: Int32?
    public let eosID: Int32?
    public let unknownID: Int32?
    /// Whether `encode(_:)` puts BOS first (GGUF tokenizer.ggml.add_bos_token, HF add_bos_token).
    public let addsBOS: Bool
    public let addsEOS: Bool
    public let preTokenizer: PreTokenizer
    /// "GGUF metadata" or the tokenizer.json path.
    public let source: String

    let tokens: [String]
    let types: [TokenType]
    let tokenToID: [String: Int32]
    private let scores: [Float]
    private let ignoreMerges: Bool
    private let addSpacePrefix: Bool
    private let prefixFirstOnly: Bool
    private let prefixUnlessLeadingSpace: Bool
    private let metaspaceSplit: Bool
    private let normalizeNFC: Bool

    // Byte-level BPE state. Symbols are vocabulary ids; strings that merges produce but the
    // vocabulary lacks get ids from `vocabSize` up (`extraSymbols`).
    private let byteSymbol: [Int32]                    // byte → symbol id of its byte character
    private let merges: [UInt64: UInt64]               // (left << 32 | right) → (rank << 32 | merged)
    private let extraSymbols: [String]
    private let extraSymbolIDs: [String: Int32]

    // SentencePiece state.
    private let byteTokenID: [Int32]                   // byte → id of <0xXX>, or -1

    // Special tokens, longest first (llama.cpp sorts cache_special_tokens by length).
    private let specials: [(bytes: [UInt8], id: Int32, lstrip: Bool, rstrip: Bool)]
    private let specialFirstByte: [Bool]

    private var cache: [String: [Int32]] = [:]
    private let cacheLock = NSLock()
    private static let cacheLimit = 200_000

    init(spec: VocabularySpec) throws {
        kind = spec.kind
        tokens = spec.tokens
        types = spec.types
        vocabSize = spec.tokens.count
        preTokenizer = spec.preTokenizer
        ignoreMerges = spec.ignoreMerges
        addSpacePrefix = spec.addSpacePrefix
        prefixFirstOnly = spec.prefixFirstOnly
        prefixUnlessLeadingSpace = spec.prefixUnlessLeadingSpace
        metaspaceSplit = spec.metaspaceSplit
        normalizeNFC = spec.normalizeNFC
        source = spec.source
        guard spec.types.count == spec.tokens.count else {
            throw TokenizerError.lengthMismatch(key: "token types", count: spec.types.count, expected: spec.tokens.count)
        }
        if let s = spec.scores, s.count != spec.tokens.count {
            throw TokenizerError.lengthMismatch(key: "scores", count: s.count, expected: spec.tokens.count)
        }
        scores = spec.scores ?? []
        for (key, id) in [("bos", spec.bosID), ("eos", spec.eosID), ("unknown", spec.unknownID)] {
            if let id, id < 0 || Int(id) >= spec.tokens.count {
                throw TokenizerError.tokenIDOutOfRange(key: key, id: Int(id), vocabSize: spec.tokens.count)
            }
        }
        bosID = spec.bosID; eosID = spec.eosID; unknownID = spec.unknownID
        addsBOS = spec.addBOS; addsEOS = spec.addEOS
        if addsBOS && bosID == nil { throw TokenizerError.missingBOS }

        var map = [String: Int32](minimumCapacity: spec.tokens.count)
        for (i, t) in spec.tokens.enumerated() {
            if let first = map.updateValue(Int32(i), forKey: t) {
                throw TokenizerError.duplicateToken(t, first: Int(first), second: i)
            }
        }
        tokenToID = map

        // Byte-level tables.
        var extra: [String] = []
        var extraIDs: [String: Int32] = [:]
        func symbol(_ s: String) -> Int32 {
            if let id = map[s] { return id }
            if let id = extraIDs[s] { return id }
            let id = Int32(spec.tokens.count + extra.count)
            extra.append(s); extraIDs[s] = id
            return id
        }
        var bytes = [Int32](repeating: -1, count: 256)
        var mergeTable: [UInt64: UInt64] = [:]
        if spec.kind == .byteLevelBPE {
            for b in 0..<256 { bytes[b] = symbol(String(ByteEncoder.byteToScalar[b])) }
        }
        if spec.kind == .byteLevelBPE || !spec.merges.isEmpty {
            mergeTable.reserveCapacity(spec.merges.count)
            for (rank, (a, b)) in spec.merges.enumerated() {
                let key = UInt64(UInt32(symbol(a))) << 32 | UInt64(UInt32(symbol(b)))
                if mergeTable[key] == nil {   // first occurrence wins (llama.cpp emplace)
                    mergeTable[key] = UInt64(rank) << 32 | UInt64(UInt32(symbol(a + b)))
                }
            }
        }
        byteSymbol = bytes
        merges = mergeTable
        extraSymbols = extra
        extraSymbolIDs = extraIDs

        var byteTokens = [Int32](repeating: -1, count: 256)
        if spec.kind == .sentencePiece {
            for b in 0..<256 {
                if let id = map[String(format: "<0x%02X>", b)] { byteTokens[b] = id }
                else if b < 0x80, let id = map[String(UnicodeScalar(UInt8(b)))] { byteTokens[b] = id }
            }
        }
        byteTokenID = byteTokens

        var sp: [(bytes: [UInt8], id: Int32, lstrip: Bool, rstrip: Bool)] = []
        var first = [Bool](repeating: false, count: 256)
        for (i, t) in spec.types.enumerated() where t.isSpecial && !spec.tokens[i].isEmpty {
            let id = Int32(i)
            sp.append((Array(spec.tokens[i].utf8), id, spec.lstrip.contains(id), spec.rstrip.contains(id)))
            first[Int(sp.last!.bytes[0])] = true
        }
        // Longest first; ties by id so the order is deterministic.
        sp.sort { $0.bytes.count != $1.bytes.count ? $0.bytes.count > $1.bytes.count : $0.id < $1.id }
        specials = sp
        specialFirstByte = first
    }

    // MARK: Public API

    /// Token ids for `text`, with BOS first (and EOS last) when the model says so.
    /// Special tokens written in the text (e.g. "<|im_start|>") become their ids.
    public func encode(_ text: String) -> [Int32] {
        encode(text, addBOS: addsBOS, parseSpecial: true)
    }

    /// Token ids for `text`. `addBOS` also controls EOS for models that append it.
    /// `parseSpecial: false` treats CONTROL tokens' text as plain text (user-defined
    /// tokens are still matched, as in llama.cpp).
    public func encode(_ text: String, addBOS: Bool, parseSpecial: Bool = true) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(text.utf8.count / 3 + 2)
        if addBOS, let bos = bosID { out.append(bos) }
        let text = normalizeNFC ? text.precomposedStringWithCanonicalMapping : text
        var previousWasSpecial = true
        for (index, fragment) in partition(text, parseSpecial: parseSpecial).enumerated() {
            switch fragment {
            case .token(let id):
                out.append(id)
                previousWasSpecial = true
            case .text(let s):
                switch kind {
                case .byteLevelBPE: encodeByteLevel(s, into: &out)
                case .sentencePiece:
                    let prefix = addSpacePrefix && previousWasSpecial && (!prefixFirstOnly || index == 0)
                        && !(prefixUnlessLeadingSpace && (s.hasPrefix(" ") || s.hasPrefix("\u{2581}")))
                    encodeSentencePiece(s, spacePrefix: prefix, into: &out)
                }
                previousWasSpecial = false
            }
        }
        if addBOS && addsEOS, let eos = eosID { out.append(eos) }
        return out
    }

    /// The text of `ids`. Control tokens (e.g. "<|im_end|>") are written out unless
    /// `skipSpecial`; byte tokens that do not form valid UTF-8 become U+FFFD.
    public func decode(_ ids: [Int32], skipSpecial: Bool = false) -> String {
        var bytes: [UInt8] = []
        // SentencePiece: the space put in front of the text is not part of it (llama.cpp
        // detokenize strips one leading space from the first token after BOS).
        var stripSpace = kind == .sentencePiece && addSpacePrefix
        for (i, id) in ids.enumerated() {
            if i == 0 && id == bosID && stripSpace && skipSpecial { continue }
            let start = bytes.count
            appendPiece(id, skipSpecial: skipSpecial, into: &bytes)
            if stripSpace && id != bosID {
                if bytes.count > start && bytes[start] == 0x20 && tokenType(id) == .normal { bytes.remove(at: start) }
                stripSpace = false
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The display form of one token: " he" for "Ġhe" or "▁he", "<|im_end|>" for a control
    /// token, "\u{FFFD}" for a byte that is only part of a character; "<invalid id N>" when
    /// the id is outside the vocabulary.
    public func tokenString(_ id: Int32) -> String {
        guard id >= 0, Int(id) < vocabSize else { return "<invalid id \(id)>" }
        var bytes: [UInt8] = []
        appendPiece(id, skipSpecial: false, into: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The vocabulary entry spelled as stored ("Ġhe", "▁he", "<|im_end|>") or as display text (" he").
    public func id(forToken token: String) -> Int32? {
        if let id = tokenToID[token] { return id }
        switch kind {
        case .byteLevelBPE: return tokenToID[ByteEncoder.encode(token.utf8)]
        case .sentencePiece: return tokenToID[token.replacingOccurrences(of: " ", with: "\u{2581}")]
        }
    }

    /// The id of `word` when it encodes (without BOS) to exactly one token; otherwise an error
    /// naming the tokens it does encode to.
    public func singleTokenID(for word: String) throws -> Int32 {
        let ids = encode(word, addBOS: false)
        guard ids.count == 1 else {
            throw TokenizerError.notSingleToken(word: word, tokens: ids.map(tokenString), ids: ids)
        }
        return ids[0]
    }

    /// GGUF-style token type of `id` (nil when out of range).
    public func tokenType(_ id: Int32) -> TokenType? {
        id >= 0 && Int(id) < vocabSize ? types[Int(id)] : nil
    }

    // MARK: Special tokens

    enum Fragment: Equatable { case text(String), token(Int32) }

    /// llama.cpp tokenizer_st_partition: for each special token, longest first, split every
    /// remaining text fragment at its occurrences.
    func partition(_ text: String, parseSpecial: Bool) -> [Fragment] {
        if text.isEmpty { return [] }
        let utf8 = Array(text.utf8)
        if specials.isEmpty || !utf8.contains(where: { specialFirstByte[Int($0)] }) { return [.text(text)] }
        enum Part { case text(Range<Int>), token(Int32) }
        var parts: [Part] = [.text(0..<utf8.count)]
        for sp in specials {
            if !parseSpecial && (types[Int(sp.id)] == .control || types[Int(sp.id)] == .unknown) { continue }
            var next: [Part] = []
            next.reserveCapacity(parts.count + 2)
            for part in parts {
                guard case .text(let r) = part else { next.append(part); continue }
                var lo = r.lowerBound
                let hi = r.upperBound
                while let m = find(sp.bytes, in: utf8, from: lo, to: hi) {
                    var leftEnd = m
                    if sp.lstrip { while leftEnd > lo && isASCIISpace(utf8[leftEnd - 1]) { leftEnd -= 1 } }
                    if leftEnd > lo { next.append(.text(lo..<leftEnd)) }
                    next.append(.token(sp.id))
                    lo = m + sp.bytes.count
                    if sp.rstrip { while lo < hi && isASCIISpace(utf8[lo]) { lo += 1 } }
                }
                if lo < hi { next.append(.text(lo..<hi)) }
            }
            parts = next
        }
        return parts.map {
            switch $0 {
            case .token(let id): return .token(id)
            case .text(let r): return .text(String(decoding: utf8[r], as: UTF8.self))
            }
        }
    }

    private func isASCIISpace(_ b: UInt8) -> Bool { b == 0x20 || (b >= 0x09 && b <= 0x0D) }

    private func find(_ needle: [UInt8], in hay: [UInt8], from: Int, to: Int) -> Int? {
        let n = needle.count
        guard n > 0, to - from >= n else { return nil }
        let first = needle[0]
        var i = from
        while i + n <= to {
            if hay[i] == first {
                var j = 1
                while j < n && hay[i + j] == needle[j] { j += 1 }
                if j == n { return i }
            }
            i += 1
        }
        return nil
    }

    // MARK: Byte-level BPE

    private func encodeByteLevel(_ text: String, into out: inout [Int32]) {
        let cps = text.unicodeScalars.map(\.value)
        for r in preTokenizer.split(cps) {
            var view = String.UnicodeScalarView()
            for i in r { view.append(Unicode.Scalar(cps[i])!) }
            let piece = String(view)
            if let hit = cached(piece) { out.append(contentsOf: hit); continue }
            let ids = bpePiece(piece)
            store(piece, ids)
            out.append(contentsOf: ids)
        }
    }

    private func cached(_ key: String) -> [Int32]? {
        cacheLock.lock(); defer { cacheLock.unlock() }
        return cache[key]
    }

    private func store(_ key: String, _ ids: [Int32]) {
        cacheLock.lock(); defer { cacheLock.unlock() }
        if cache.count >= Self.cacheLimit { cache.removeAll(keepingCapacity: true) }
        cache[key] = ids
    }

    /// One pre-token through the merges (llama.cpp llm_tokenizer_bpe_session::tokenize).
    func bpePiece(_ piece: String) -> [Int32] {
        let bytes = Array(piece.utf8)
        if ignoreMerges, let id = tokenToID[ByteEncoder.encode(bytes)] { return [id] }
        var ids = bytes.map { byteSymbol[Int($0)] }
        if ids.count > 1 { mergeSymbols(&ids) }
        var out: [Int32] = []
        out.reserveCapacity(ids.count)
        for id in ids {
            if Int(id) < vocabSize { out.append(id); continue }
            // A string the merges made but the vocabulary lacks: llama.cpp emits the token of
            // each single-byte character of its spelling (and drops the rest).
            for b in extraSymbols[Int(id) - vocabSize].utf8 where b < 0x80 {
                if let t = tokenToID[String(UnicodeScalar(b))] { out.append(t) }
            }
        }
        return out
    }

    /// Applies merges lowest rank first, leftmost first among equal ranks, until none applies.
    private func mergeSymbols(_ ids: inout [Int32]) {
        let n = ids.count
        var next = [Int32](0..<Int32(n)).map { $0 + 1 }
        var prev = [Int32](0..<Int32(n)).map { $0 - 1 }
        next[n - 1] = -1
        var alive = [Bool](repeating: true, count: n)
        var heap = MergeHeap()
        @inline(__always) func consider(_ l: Int32, _ r: Int32) {
            guard l >= 0, r >= 0 else { return }
            let key = UInt64(UInt32(ids[Int(l)])) << 32 | UInt64(UInt32(ids[Int(r)]))
            guard let v = merges[key] else { return }
            heap.push(MergeCandidate(rank: UInt32(v >> 32), left: l, right: r,
                                     leftID: ids[Int(l)], rightID: ids[Int(r)], merged: Int32(truncatingIfNeeded: UInt32(v & 0xFFFF_FFFF))))
        }
        for i in 0..<(n - 1) { consider(Int32(i), Int32(i + 1)) }
        while let c = heap.pop() {
            let l = Int(c.left), r = Int(c.right)
            guard alive[l], alive[r], next[l] == c.right, ids[l] == c.leftID, ids[r] == c.rightID else { continue }
            ids[l] = c.merged
            alive[r] = false
            next[l] = next[r]
            if next[r] >= 0 { prev[Int(next[r])] = c.left }
            consider(prev[l], c.left)
            consider(c.left, next[l])
        }
        var out: [Int32] = []
        var i: Int32 = 0
        while i >= 0 { out.append(ids[Int(i)]); i = next[Int(i)] }
        ids = out
    }

    // MARK: SentencePiece

    private func encodeSentencePiece(_ text: String, spacePrefix: Bool, into out: inout [Int32]) {
        let key = (spacePrefix ? "1" : "0") + text
        if let hit = cached(key) { out.append(contentsOf: hit); return }
        var s = spacePrefix ? " " + text : text
        s = s.replacingOccurrences(of: " ", with: "\u{2581}")
        var ids: [Int32] = []
        if merges.isEmpty {
            ids = spmPiece(s)
        } else if !metaspaceSplit {
            ids = rankedPiece(s)
        } else {
            // Words start at each '▁' (HF Metaspace split, MergedWithNext).
            var word = ""
            for ch in s.unicodeScalars {
                if ch == "\u{2581}" && !word.isEmpty { ids += rankedPiece(word); word = "" }
                word.unicodeScalars.append(ch)
            }
            if !word.isEmpty { ids += rankedPiece(word) }
        }
        store(key, ids)
        out.append(contentsOf: ids)
    }

    /// SentencePiece-style tokenizer.json (HF BPE on characters): merges by rank, then
    /// <0xXX> byte tokens (byte_fallback) or unknown for what the vocabulary lacks.
    private func rankedPiece(_ text: String) -> [Int32] {
        var local: [String] = []
        let firstLocal = vocabSize + extraSymbols.count
        var ids: [Int32] = text.unicodeScalars.map { u in
            let c = String(u)
            if let id = tokenToID[c] ?? extraSymbolIDs[c] { return id }
            local.append(c)
            return Int32(firstLocal + local.count - 1)
        }
        if ids.count > 1 { mergeSymbols(&ids) }
        var out: [Int32] = []
        for id in ids {
            if Int(id) < vocabSize { out.append(id); continue }
            let i = Int(id) - vocabSize
            let str = i < extraSymbols.count ? extraSymbols[i] : local[Int(id) - firstLocal]
            let bytes = Array(str.utf8)
            if bytes.allSatisfy({ byteTokenID[Int($0)] >= 0 }) {
                out.append(contentsOf: bytes.map { byteTokenID[Int($0)] })
            } else if let u = unknownID {
                out.append(u)
            }
        }
        return out
    }

    /// llama.cpp llm_tokenizer_spm_session::tokenize: characters merge by highest score.
    private func spmPiece(_ text: String) -> [Int32] {
        let bytes = Array(text.utf8)
        var starts: [Int] = []
        var lens: [Int] = []
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            let len = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4
            starts.append(i); lens.append(min(len, bytes.count - i)); i += lens.last!
        }
        let n = starts.count
        if n == 0 { return [] }
        var next = (0..<n).map { $0 + 1 }; next[n - 1] = -1
        var prev = (0..<n).map { $0 - 1 }
        var heap = SPMHeap()
        func lookup(_ start: Int, _ len: Int) -> Int32? {
            tokenToID[String(decoding: bytes[start..<(start + len)], as: UTF8.self)]
        }
        func consider(_ l: Int, _ r: Int) {
            guard l >= 0, r >= 0 else { return }
            let size = lens[l] + lens[r]
            guard let id = lookup(starts[l], size) else { return }
            heap.push(SPMCandidate(score: scores.isEmpty ? 0 : scores[Int(id)], left: l, right: r, size: size))
        }
        for j in 1..<max(n, 1) { consider(j - 1, j) }
        while let c = heap.pop() {
            guard lens[c.left] > 0, lens[c.right] > 0, lens[c.left] + lens[c.right] == c.size else { continue }
            lens[c.left] += lens[c.right]
            lens[c.right] = 0
            next[c.left] = next[c.right]
            if next[c.right] >= 0 { prev[next[c.right]] = c.left }
            consider(prev[c.left], c.left)
            consider(c.left, next[c.left])
        }
        var out: [Int32] = []
        var j = 0
        while j >= 0 {
            if lens[j] > 0 {
                if let id = lookup(starts[j], lens[j]) {
                    out.append(id)
                } else {
                    for b in bytes[starts[j]..<(starts[j] + lens[j])] {
                        let t = byteTokenID[Int(b)]
                        if t >= 0 { out.append(t) } else if let u = unknownID { out.append(u) }
                    }
                }
            }
            j = next[j]
        }
        return out
    }

    // MARK: Decoding

    private func appendPiece(_ id: Int32, skipSpecial: Bool, into bytes: inout [UInt8]) {
        guard id >= 0, Int(id) < vocabSize else { return }
        let text = tokens[Int(id)]
        switch types[Int(id)] {
        case .control, .unknown:
            if !skipSpecial { bytes.append(contentsOf: text.utf8) }
        case .userDefined:
            bytes.append(contentsOf: text.utf8)
        case .byte:
            if let b = Self.parseByteToken(text) { bytes.append(b) } else { bytes.append(contentsOf: text.utf8) }
        case .normal, .unused, .undefined:
            switch kind {
            case .byteLevelBPE: ByteEncoder.decode(text, into: &bytes)
            case .sentencePiece: bytes.append(contentsOf: text.replacingOccurrences(of: "\u{2581}", with: " ").utf8)
            }
        }
    }

    /// "<0x0A>" → 0x0A.
    static func parseByteToken(_ t: String) -> UInt8? {
        let u = Array(t.utf8)
        guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return nil }
        return UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16)
    }
}

// MARK: Priority queues

struct MergeCandidate {
    var rank: UInt32
    var left: Int32
    var right: Int32
    var leftID: Int32
    var rightID: Int32
    var merged: Int32
    @inline(__always) func before(_ o: MergeCandidate) -> Bool {
        rank != o.rank ? rank < o.rank : left < o.left
    }
}

struct SPMCandidate {
    var score: Float
    var left: Int
    var right: Int
    var size: Int
    @inline(__always) func before(_ o: SPMCandidate) -> Bool {
        score != o.score ? score > o.score : left < o.left
    }
}

/// An element of a `MinHeap`: `before` is the strict order, earliest first.
protocol HeapOrdered {
    func before(_ o: Self) -> Bool
}

extension MergeCandidate: HeapOrdered {}
extension SPMCandidate: HeapOrdered {}

/// Binary heap that pops the element that comes `before` all others.
struct MinHeap<Element: HeapOrdered> {
    var items: [Element] = []
    mutating func push(_ c: Element) {
        items.append(c)
        var i = items.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if items[i].before(items[p]) { items.swapAt(i, p); i = p } else { break }
        }
    }
    mutating func pop() -> Element? {
        guard !items.isEmpty else { return nil }
        let top = items[0]
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < items.count && items[l].before(items[m]) { m = l }
                if r < items.count && items[r].before(items[m]) { m = r }
                if m == i { break }
                items.swapAt(i, m); i = m
            }
        }
        return top
    }
}

typealias MergeHeap = MinHeap<MergeCandidate>
typealias SPMHeap = MinHeap<SPMCandidate>
