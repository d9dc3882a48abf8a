// Building a patch: a base checkpoint plus replacement tensors → a .lftfpatch file.
// Deterministic: the same base, replacements and metadata give a byte-identical file
// (sorted JSON, fixed zstd level, frames compressed independently, no clock reads).
import Crypto
import Foundation
import ModelFormats

/// A tensor's new contents. `dtype` may differ from the base's (e.g. a Q4_1 block stored as
/// Q8_0 or F16 so that a small fine-tune is not rounded away); the shape must not.
public struct TensorReplacement: Sendable {
    public var dtype: DType
    public var shape: [Int]
    public var bytes: [UInt8]
    public init(dtype: DType, shape: [Int], bytes: [UInt8]) { self.dtype = dtype; self.shape = shape; self.bytes = bytes }
}

public final class PatchBuilder {
    public let base: Checkpoint
    public var provenance: Provenance?
    public var scores: PatchScores?
    public var writer = PatchFormat.writer
    public var chunkElements = PatchFormat.defaultChunkElements
    public var zstdLevel: Int32 = DeltaCodec.zstdLevel
    /// The encoding of float tensors that keep their dtype: `float-rans` (default) or the older
    /// `float-diff` (kept so tests can write patches as earlier versions did).
    var floatEncoding: DeltaEncoding = .floatRans
    /// Whether a quantized tensor stored as floats may get a `quant-diff-requant` reverse stream
    /// (default) or only `zstd` of the base (kept so tests can write patches as earlier versions did).
    var reverseRequant = true
    /// Tensors whose bytes equal the base's are left out; their names end up here.
    public private(set) var unchanged: [String] = []
    private var replacements: [String: TensorReplacement] = [:]

    public init(base: Checkpoint, provenance: Provenance? = nil, scores: PatchScores? = nil) {
        self.base = base; self.provenance = provenance; self.scores = scores
    }

    /// Adds (or replaces) the new contents of tensor `name`.
    public func replace(_ name: String, with r: TensorReplacement) throws {
        guard let info = base.tensorInfo(named: name) else {
            throw PatchError.invalidReplacement(tensor: name, detail: "the base checkpoint has no such tensor")
        }
        guard PatchFile.isSafeName(name) else { throw PatchError.unsafeName(name) }
        guard r.shape == info.shape else {
            throw PatchError.invalidReplacement(tensor: name, detail: "shape \(r.shape) differs from the base's \(info.shape)")
        }
        guard let n = ModelFormats.elementCount(r.shape), let bc = r.dtype.byteCount(elements: n), bc == r.bytes.count else {
            throw PatchError.invalidReplacement(tensor: name, detail: "\(r.bytes.count) bytes do not hold \(r.shape) as \(r.dtype.rawValue)")
        }
        replacements[name] = r
    }

    public func replace(_ name: String, dtype: DType, shape: [Int], bytes: [UInt8]) throws {
        try replace(name, with: TensorReplacement(dtype: dtype, shape: shape, bytes: bytes))
    }

    /// Builds and writes the patch (atomically); returns its manifest.
    @discardableResult
    public func write(to url: URL) throws -> PatchManifest {
        let (manifest, data) = try build()
        try PatchFile.write(manifest, data: data, to: url)
        return manifest
    }

    /// The patch's bytes.
    public func serialized() throws -> [UInt8] {
        let (manifest, data) = try build()
        return try PatchFile.serialize(manifest, data: data)
    }

    private struct Job {
        var tensor: Int
        var encoding: DeltaEncoding
        var frame: Int
        var reverse: Bool
    }

    func build() throws -> (PatchManifest, [[UInt8]]) {
        // Tensors in base file order; unchanged ones dropped.
        var todo: [(info: TensorInfo, repl: TensorReplacement)] = []
        unchanged = []
        for info in base.tensors {
            guard let r = replacements[info.name] else { continue }
            let b = try base.rawBytes(info)
            if r.dtype == info.dtype, r.bytes.withUnsafeBytes({ $0.elementsEqual(b) }) { unchanged.append(info.name); continue }
            todo.append((info, r))
        }
        guard !todo.isEmpty else { throw PatchError.emptyPatch }

        // Every candidate encoding of every frame, compressed on all cores.
        var jobs: [Job] = []
        for (ti, t) in todo.enumerated() {
            let n = t.info.elementCount
            let frames = (n + chunkElements - 1) / chunkElements
            let forward = DeltaCodec.candidates(base: t.info.dtype, patched: t.repl.dtype, sameShape: true, float: floatEncoding)
            for e in forward {
                for f in 0..<frames { jobs.append(Job(tensor: ti, encoding: e, frame: f, reverse: false)) }
            }
            // A reverse stream when some forward candidate cannot run backwards (a dtype change).
            if forward.contains(where: { !$0.decodesBackwards }) {
                for e in DeltaCodec.reverseCandidates(base: t.info.dtype, patched: t.repl.dtype, sameShape: true, requant: reverseRequant) {
                    for f in 0..<frames { jobs.append(Job(tensor: ti, encoding: e, frame: f, reverse: true)) }
                }
            }
        }
        var results = [[UInt8]?](repeating: nil, count: jobs.count)
        var failure: Error?
        let lock = NSLock()
        let baseBytes = try todo.map { try base.rawBytes($0.info) }
        let ce = chunkElements, level = zstdLevel
        results.withUnsafeMutableBufferPointer { res in
            DispatchQueue.concurrentPerform(iterations: jobs.count) { j in
                let job = jobs[j]
                let t = todo[job.tensor]
                // Reverse (dtype change): the base bytes, from nothing.
                let dtype = job.reverse ? t.info.dtype : t.repl.dtype
                let first = job.frame * ce
                let count = min(ce, t.info.elementCount - first)
                let lo = dtype.byteCount(elements: first)!, hi = lo + dtype.byteCount(elements: count)!
                let srcLo = t.info.dtype.byteCount(elements: first)!
                do {
                    let frame: [UInt8] = try t.repl.bytes.withUnsafeBytes { patched in
                        let b = baseBytes[job.tensor]
                        if job.reverse {
                            let target = UnsafeRawBufferPointer(rebasing: b[lo..<hi])
                            if job.encoding == .quantDiffRequant {
                                // Source: the patched (float) frame, requantized to the base dtype.
                                let pLo = t.repl.dtype.byteCount(elements: first)!, pHi = pLo + t.repl.dtype.byteCount(elements: count)!
                                return try DeltaCodec.encodeRequant(source: UnsafeRawBufferPointer(rebasing: patched[pLo..<pHi]), sourceType: t.repl.dtype,
                                                                    target: target, dtype: dtype, level: level)
                            }
                            return try DeltaCodec.encode(.zstd, dtype: dtype, source: nil, target: target, level: level)
                        }
                        if job.encoding == .floatRansDequant {
                            let srcHi = srcLo + t.info.dtype.byteCount(elements: count)!
                            return try DeltaCodec.encodeDequant(base: UnsafeRawBufferPointer(rebasing: b[srcLo..<srcHi]), baseType: t.info.dtype,
                                                                target: UnsafeRawBufferPointer(rebasing: patched[lo..<hi]), dtype: dtype)
                        }
                        let src = job.encoding.needsSource ? UnsafeRawBufferPointer(rebasing: b[srcLo..<(srcLo + hi - lo)]) : nil
                        return try DeltaCodec.encode(job.encoding, dtype: dtype, source: src,
                                                     target: UnsafeRawBufferPointer(rebasing: patched[lo..<hi]), level: level)
                    }
                    res[j] = frame
                } catch {
                    lock.lock(); failure = failure ?? error; lock.unlock()
                }
            }
        }
        if let failure { throw failure }

        // Per tensor, the smallest forward encoding (first candidate on ties); lay out the data.
        var data: [[UInt8]] = []
        var offset = 0
        var entries: [PatchedTensor] = []
        for (ti, t) in todo.enumerated() {
            var best: (DeltaEncoding, [Int])?
            var bestSize = Int.max
            for e in DeltaCodec.candidates(base: t.info.dtype, patched: t.repl.dtype, sameShape: true, float: floatEncoding) {
                let idx = jobs.indices.filter { jobs[$0].tensor == ti && jobs[$0].encoding == e && !jobs[$0].reverse }
                let size = idx.reduce(0) { $0 + results[$1]!.count }
                if size < bestSize { bestSize = size; best = (e, idx) }
            }
            let (enc, idx) = best!
            func stream(_ idx: [Int], _ e: DeltaEncoding) -> TensorStream {
                let s = TensorStream(encoding: e.rawValue, chunkElements: chunkElements, offset: offset,
                                     frameSizes: idx.map { results[$0]!.count })
                for i in idx { data.append(results[i]!); offset += results[i]!.count }
                return s
            }
            let fwd = stream(idx, enc)
            var rev: TensorStream?
            if !enc.decodesBackwards {
                // The smallest reverse candidate (first on ties).
                var bestRev: (DeltaEncoding, [Int])?
                var bestRevSize = Int.max
                for e in DeltaCodec.reverseCandidates(base: t.info.dtype, patched: t.repl.dtype, sameShape: true, requant: reverseRequant) {
                    let idx = jobs.indices.filter { jobs[$0].tensor == ti && jobs[$0].encoding == e && jobs[$0].reverse }
                    let size = idx.reduce(0) { $0 + results[$1]!.count }
                    if size < bestRevSize { bestRevSize = size; bestRev = (e, idx) }
                }
                rev = stream(bestRev!.1, bestRev!.0)
            }
            let baseSha = sha256Hex(baseBytes[ti])
            let patchedSha = t.repl.bytes.withUnsafeBytes { sha256Hex($0) }
            entries.append(PatchedTensor(
                name: t.info.name,
                base: TensorState(dtype: t.info.dtype, shape: t.info.shape, sha256: baseSha),
                patched: TensorState(dtype: t.repl.dtype, shape: t.repl.shape, sha256: patchedSha),
                forward: fwd, reverse: rev))
        }

        // Fingerprints of the base and of the result.
        let files = try base.files.map { try FileDescriptor($0.path, flags: O_RDONLY) }
        var baseFP: [Fingerprint.Entry] = [], patchedFP: [Fingerprint.Entry] = []
        for info in base.tensors {
            let e = try Fingerprint.entry(info, in: files)
            baseFP.append(e)
            if let r = replacements[info.name] {
                patchedFP.append(r.bytes.withUnsafeBytes { Fingerprint.entry(name: info.name, dtype: r.dtype, shape: r.shape, bytes: $0) })
            } else {
                patchedFP.append(e)
            }
        }
        let arch = base.config.architecture
        let manifest = PatchManifest(
            formatVersion: Int(PatchFormat.version), requires: [], writer: writer,
            base: CheckpointIdentity(format: base.format, architecture: arch, fingerprint: Fingerprint.compute(baseFP), tensorCount: base.tensors.count),
            patched: CheckpointIdentity(format: base.format, architecture: arch, fingerprint: Fingerprint.compute(patchedFP), tensorCount: base.tensors.count),
            tensors: entries, provenance: provenance, scores: scores)
        return (manifest, data)
    }
}
