// apply, revert and verify against a checkpoint on disk.
//
// In place: every touched tensor is hashed while its bytes are copied into the rollback
// journal; nothing in the checkpoint is written unless every hash matches. Then the journal is
// committed, the tensors are decoded frame by frame (memory: a few frames, not the model) and
// written, the files fsynced and the journal deleted. See Journal.swift for crash recovery.
import Crypto
import Foundation
import ModelFormats

public enum TensorPatchState: String, Codable, Sendable {
    case base, patched, neither
}

public struct TensorVerdict: Codable, Sendable {
    public var name: String
    public var state: TensorPatchState
    /// The tensor's SHA-256 in the checkpoint (nil when the tensor is missing or its layout
    /// matches neither side, so it was not read).
    public var sha256: String?
    public var detail: String?
}

public struct VerifyReport: Codable, Sendable {
    /// base: every touched tensor is the base's; patched: every one is the result's; else neither.
    public var state: TensorPatchState
    public var tensors: [TensorVerdict]
    /// The checkpoint's fingerprint, and which side of the patch it equals (nil: neither).
    public var fingerprint: String
    public var fingerprintMatches: TensorPatchState?
}

public struct ApplyOptions {
    /// Apply although the whole-checkpoint fingerprint differs from the patch's base.
    public var ignoreFingerprint = false
    /// Progress messages for long work (the CLI prints them on stderr).
    public var progress: ((String) -> Void)?
    public init(ignoreFingerprint: Bool = false, progress: ((String) -> Void)? = nil) {
        self.ignoreFingerprint = ignoreFingerprint; self.progress = progress
    }
}

public enum PatchApplier {
    static let ioChunk = 8 << 20

    struct Item {
        var entry: PatchedTensor
        var info: TensorInfo
        var file: URL
    }

    static func items(_ patch: PatchFile, _ ckpt: Checkpoint) throws -> [Item] {
        let m = patch.manifest
        guard ckpt.format == m.base.format else {
            throw PatchError.wrongCheckpoint("the patch is for a \(m.base.format.rawValue) checkpoint, this is \(ckpt.format.rawValue)")
        }
        guard ckpt.config.architecture == m.base.architecture else {
            throw PatchError.wrongCheckpoint("the patch is for architecture \(m.base.architecture), this checkpoint is \(ckpt.config.architecture)")
        }
        return try m.tensors.map { e in
            guard let info = ckpt.tensorInfo(named: e.name) else { throw PatchError.missingTensor(e.name) }
            return Item(entry: e, info: info, file: ckpt.files[info.fileIndex])
        }
    }

    static func layoutMatches(_ info: TensorInfo, _ s: TensorState) -> Bool {
        info.dtype == s.dtype && info.shape == s.shape && info.byteCount == s.byteCount
    }

    /// Runs `body(i)` for each index of `order`, in that order, shared by two threads; the
    /// first error stops the rest and is thrown.
    static func onTwoThreads(_ order: [Int], _ body: (Int) throws -> Void) throws {
        var failure: Error?
        let lock = NSLock()
        var next = 0
        DispatchQueue.concurrentPerform(iterations: min(2, order.count)) { _ in
            while true {
                lock.lock(); let k = next; next += 1; let stop = failure != nil; lock.unlock()
                if k >= order.count || stop { return }
                do { try body(order[k]) } catch { lock.lock(); failure = failure ?? error; lock.unlock() }
            }
        }
        if let failure { throw failure }
    }

    /// SHA-256 of each region, read in pieces on two threads; when `journal` is given each
    /// region's bytes are also written to it at the given offset.
    static func hashRegions(_ items: [Item], journal: (FileDescriptor, [Int])? = nil) throws -> [String?] {
        var out = [String?](repeating: nil, count: items.count)
        let lock = NSLock()
        try onTwoThreads(Array(items.indices)) { i in
            let it = items[i]
            var buf = [UInt8](repeating: 0, count: min(ioChunk, it.info.byteCount))
            let f = try FileDescriptor(it.file.path, flags: O_RDONLY)
            var h = SHA256()
            var done = 0
            while done < it.info.byteCount {
                let n = min(buf.count, it.info.byteCount - done)
                try buf.withUnsafeMutableBytes { b in
                    let part = UnsafeMutableRawBufferPointer(rebasing: b[0..<n])
                    try f.read(into: part, at: it.info.offset + done)
                    h.update(bufferPointer: UnsafeRawBufferPointer(part))
                    if let (j, offs) = journal { try j.write(UnsafeRawBufferPointer(part), at: offs[i] + done) }
                }
                done += n
                if journal != nil { CrashPoints.hit("journal: saved \(done) bytes of \(it.info.name)") }
            }
            let d = hex(h.finalize())
            lock.lock(); out[i] = d; lock.unlock()
        }
        return out
    }

    static func classify(_ it: Item, sha: String?) -> TensorPatchState {
        if layoutMatches(it.info, it.entry.base), sha == it.entry.base.sha256 { return .base }
        if layoutMatches(it.info, it.entry.patched), sha == it.entry.patched.sha256 { return .patched }
        return .neither
    }

    // MARK: verify

    /// Base, patched or neither, per touched tensor. Read-only; takes the lock and finishes an
    /// interrupted apply/revert first.
    public static func verify(_ patch: PatchFile, _ ckpt: Checkpoint) throws -> VerifyReport {
        let lock = try CheckpointLock(ckpt.location)
        defer { withExtendedLifetime(lock) {} }
        try Journal.recover(location: ckpt.location)
        let m = patch.manifest
        var verdicts: [TensorVerdict] = []
        var present: [Item] = []
        for e in m.tensors {
            if let info = ckpt.tensorInfo(named: e.name) {
                present.append(Item(entry: e, info: info, file: ckpt.files[info.fileIndex]))
            } else {
                verdicts.append(TensorVerdict(name: e.name, state: .neither, sha256: nil, detail: "missing from the checkpoint"))
            }
        }
        let shas = try hashRegions(present)
        for (it, sha) in zip(present, shas) {
            let st = classify(it, sha: sha)
            var detail: String?
            if st == .neither {
                if !layoutMatches(it.info, it.entry.base) && !layoutMatches(it.info, it.entry.patched) {
                    detail = "\(it.info.dtype.rawValue) \(it.info.shape), the patch has \(it.entry.base.dtype.rawValue) \(it.entry.base.shape) → \(it.entry.patched.dtype.rawValue) \(it.entry.patched.shape)"
                } else {
                    detail = "SHA-256 matches neither the base nor the patched tensor"
                }
            }
            verdicts.append(TensorVerdict(name: it.info.name, state: st, sha256: sha, detail: detail))
        }
        let order = Dictionary(uniqueKeysWithValues: m.tensors.enumerated().map { ($1.name, $0) })
        verdicts.sort { order[$0.name]! < order[$1.name]! }
        let states = Set(verdicts.map(\.state))
        let overall: TensorPatchState = states.count == 1 ? states.first! : .neither
        let fp = try Fingerprint.of(ckpt)
        let fpm: TensorPatchState? = fp == m.base.fingerprint ? .base : fp == m.patched.fingerprint ? .patched : nil
        return VerifyReport(state: overall, tensors: verdicts, fingerprint: fp, fingerprintMatches: fpm)
    }

    // MARK: apply / revert in place

    /// Applies `patch` to `ckpt` in place.
    public static func apply(_ patch: PatchFile, to ckpt: Checkpoint, options: ApplyOptions = ApplyOptions()) throws {
        try inPlace(patch, ckpt, revert: false, options: options)
    }

    /// Reverts `patch` from `ckpt` in place: byte-exact inverse of apply.
    public static func revert(_ patch: PatchFile, from ckpt: Checkpoint, options: ApplyOptions = ApplyOptions()) throws {
        try inPlace(patch, ckpt, revert: true, options: options)
    }

    /// Throws the error that best names why `states` are not all `source`.
    static func refuse(_ items: [Item], _ states: [TensorPatchState], _ shas: [String?], revert: Bool) throws {
        let source: TensorPatchState = revert ? .patched : .base
        let target: TensorPatchState = revert ? .base : .patched
        if states.allSatisfy({ $0 == source }) { return }
        if states.allSatisfy({ $0 == target }) { throw revert ? PatchError.notApplied : PatchError.alreadyApplied }
        if let i = states.firstIndex(of: .neither), !states.contains(target) {
            let want = revert ? items[i].entry.patched : items[i].entry.base
            if !layoutMatches(items[i].info, want) {
                throw PatchError.baseMismatch(tensor: items[i].info.name, expected: "\(want.dtype.rawValue) \(want.shape)",
                                              actual: "\(items[i].info.dtype.rawValue) \(items[i].info.shape)")
            }
            throw PatchError.baseMismatch(tensor: items[i].info.name, expected: want.sha256, actual: shas[i] ?? "")
        }
        func names(_ s: TensorPatchState) -> [String] { zip(items, states).filter { $0.1 == s }.map { $0.0.info.name } }
        throw PatchError.mixedState(base: names(.base), patched: names(.patched), neither: names(.neither))
    }

    static func inPlace(_ patch: PatchFile, _ ckpt: Checkpoint, revert: Bool, options: ApplyOptions) throws {
        let lock = try CheckpointLock(ckpt.location)
        defer { withExtendedLifetime(lock) {} }
        if case .rolledBack = try Journal.recover(location: ckpt.location) {
            options.progress?("rolled back an interrupted apply/revert")
        }
        let items = try items(patch, ckpt)
        if items.contains(where: changesLayout) {
            return try rewriteLayout(patch, ckpt, items, revert: revert, output: ckpt.location, options: options)
        }
        if usesSectorJournal(items) {
            return try inPlaceWithSectorJournal(patch, ckpt, items, revert: revert, options: options)
        }
        let m = patch.manifest
        let dir = Journal.directory(for: ckpt.location)
        let jurl = Journal.url(for: ckpt.location)
        let regions = items.map { Journal.Region(file: $0.file.lastPathComponent, offset: $0.info.offset, length: $0.info.byteCount,
                                                 sha256: hexBytes(revert ? $0.entry.patched.sha256 : $0.entry.base.sha256)) }
        let header = Journal.header(regions)
        let offs = Journal.dataOffsets(regions, headerSize: header.count)
        let total = offs.last.map { $0 + regions.last!.length } ?? header.count

        // 1. Save the bytes to the journal while checking their hashes.
        options.progress?("checking \(items.count) tensors (\(total >> 20) MiB) and saving them to the journal")
        let jf = try FileDescriptor(jurl.path, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
        var shas: [String?]
        do {
            try jf.write(header, at: 0)
            CrashPoints.hit("journal: header written")
            shas = try hashRegions(items, journal: (jf, offs))
            let states = zip(items, shas).map { classify($0.0, sha: $0.1) }
            try refuse(items, states, shas, revert: revert)
            if !options.ignoreFingerprint {
                let fp = try Fingerprint.of(ckpt)
                let want = revert ? m.patched.fingerprint : m.base.fingerprint
                if fp != want { throw PatchError.fingerprintMismatch(expected: want, actual: fp) }
            }
            // 2. Commit.
            try jf.sync()
            CrashPoints.hit("journal: data synced")
            try jf.write(Journal.commitMagic + Array(SHA256.hash(data: header)), at: total)
            try jf.sync()
            try FileIO.syncDirectory(dir)
            CrashPoints.hit("journal: committed")
        } catch {
            try? FileIO.unlink(jurl)
            throw error
        }

        // 3. Write the tensors.
        options.progress?("\(revert ? "reverting" : "applying") \(items.count) tensors")
        do {
            try writeTensors(patch, items, revert: revert, readFrom: nil)
            CrashPoints.hit("data: written")
            for f in Set(items.map(\.file)) { try FileDescriptor(f.path, flags: O_RDWR).sync() }
            CrashPoints.hit("data: synced")
        } catch {
            // Put the checkpoint back as it was, then report.
            _ = try? Journal.recover(location: ckpt.location)
            throw error
        }
        // 4. Done: drop the journal.
        try FileIO.unlink(jurl)
        try FileIO.syncDirectory(dir)
        CrashPoints.hit("journal: deleted")
    }

    /// Decodes every tensor into its file, frame by frame, two tensors at a time. The source
    /// bytes are read from `readFrom` (item index → file) or, by default, from the file written.
    static func writeTensors(_ patch: PatchFile, _ items: [Item], revert: Bool, readFrom: [URL]? = nil, writeTo: [URL]? = nil) throws {
        try onTwoThreads(Array(items.indices)) { i in
            try writeTensor(patch, items[i], revert: revert,
                            source: readFrom?[i] ?? items[i].file, target: writeTo?[i] ?? items[i].file)
        }
    }

    static func writeTensor(_ patch: PatchFile, _ it: Item, revert: Bool, source: URL, target: URL) throws {
        let src = try FileDescriptor(source.path, flags: O_RDONLY)
        let dst = try FileDescriptor(target.path, flags: O_RDWR)
        try decodeFrames(patch, it.entry, revert: revert,
                         source: { try src.read(count: $1, at: it.info.offset + $0) },
                         sink: { lo, bytes in
                             try dst.write(bytes, at: it.info.offset + lo)
                             CrashPoints.hit("data: wrote \(bytes.count) bytes at \(lo) of \(it.entry.name)")
                         })
    }

    /// Decodes one tensor frame by frame (the patched tensor, or with `revert` the base one):
    /// `source(offset, count)` reads bytes of the other side (only source-based encodings ask),
    /// `sink(offset, bytes)` takes each decoded frame. The SHA-256 of the whole is checked
    /// against the manifest at the end.
    static func decodeFrames(_ patch: PatchFile, _ e: PatchedTensor, revert: Bool,
                             source: (Int, Int) throws -> [UInt8], sink: (Int, [UInt8]) throws -> Void) throws {
        let (from, to) = revert ? (e.patched, e.base) : (e.base, e.patched)
        let stream = revert ? (e.reverse ?? e.forward) : e.forward
        let reverseDecode = revert && e.reverse == nil
        guard let enc = DeltaEncoding(rawValue: stream.encoding) else {
            throw PatchError.unsupportedEncoding(tensor: e.name, encoding: stream.encoding)
        }
        let n = ModelFormats.elementCount(to.shape)!
        var h = SHA256()
        for i in 0..<stream.frameSizes.count {
            let (frame, first, count) = try patch.frame(stream, i, elements: n)
            let tLo = to.dtype.byteCount(elements: first)!, tLen = to.dtype.byteCount(elements: count)!
            let s: [UInt8]? = enc.needsSource ? try source(from.dtype.byteCount(elements: first)!, from.dtype.byteCount(elements: count)!) : nil
            var out = [UInt8](repeating: 0, count: tLen)
            try frame.withUnsafeBytes { f in try out.withUnsafeMutableBytes { o in
                if enc == .floatRansDequant, let s {
                    try s.withUnsafeBytes { try DeltaCodec.decodeDequant(frame: f, base: $0, baseType: from.dtype, into: o, dtype: to.dtype, tensor: e.name) }
                } else if enc == .quantDiffRequant, let s {
                    try s.withUnsafeBytes { try DeltaCodec.decodeRequant(frame: f, source: $0, sourceType: from.dtype, into: o, dtype: to.dtype, tensor: e.name) }
                } else if let s {
                    try s.withUnsafeBytes { try DeltaCodec.decode(enc, dtype: to.dtype, frame: f, source: $0, into: o, reverse: reverseDecode, tensor: e.name) }
                } else {
                    try DeltaCodec.decode(enc, dtype: to.dtype, frame: f, source: nil, into: o, reverse: false, tensor: e.name)
                }
            } }
            h.update(data: out)
            try sink(tLo, out)
        }
        let got = hex(h.finalize())
        guard got == to.sha256 else {
            throw PatchError.corruptFrame(tensor: e.name, detail: "decoded tensor has SHA-256 \(got.prefix(16))…, expected \(to.sha256.prefix(16))…")
        }
    }

    // MARK: apply to a copy

    /// Writes a patched copy of `ckpt` into `directory` (created if missing; existing files
    /// are never overwritten) and leaves `ckpt` untouched.
    public static func applyCopy(_ patch: PatchFile, to ckpt: Checkpoint, output directory: URL,
                                 options: ApplyOptions = ApplyOptions()) throws {
        let lock = try CheckpointLock(ckpt.location)
        defer { withExtendedLifetime(lock) {} }
        try Journal.recover(location: ckpt.location)
        let items = try items(patch, ckpt)
        if items.contains(where: changesLayout) {
            guard ckpt.format == .gguf else { throw unsupportedLayoutChange(items) }
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let target = directory.appendingPathComponent(ckpt.location.lastPathComponent)
            if FileIO.exists(target) { throw PatchError.io(path: target.path, operation: "refusing to overwrite", errno: EEXIST) }
            return try rewriteLayout(patch, ckpt, items, revert: false, output: target, options: options)
        }
        options.progress?("checking \(items.count) tensors")
        let shas = try hashRegions(items)
        try refuse(items, zip(items, shas).map { classify($0.0, sha: $0.1) }, shas, revert: false)
        if !options.ignoreFingerprint {
            let fp = try Fingerprint.of(ckpt)
            if fp != patch.manifest.base.fingerprint { throw PatchError.fingerprintMismatch(expected: patch.manifest.base.fingerprint, actual: fp) }
        }
        // The files to copy: the GGUF file, or every regular file of the HF directory.
        let sources: [URL]
        let srcDir = Journal.directory(for: ckpt.location)
        if srcDir == ckpt.location {
            sources = try FileManager.default.contentsOfDirectory(at: srcDir, includingPropertiesForKeys: [.isRegularFileKey])
                .filter { (try? $0.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true && !$0.lastPathComponent.hasPrefix(".lftfpatch") }
                .sorted { $0.lastPathComponent < $1.lastPathComponent }
        } else {
            sources = [ckpt.location]
        }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for s in sources where FileIO.exists(directory.appendingPathComponent(s.lastPathComponent)) {
            throw PatchError.io(path: directory.appendingPathComponent(s.lastPathComponent).path, operation: "refusing to overwrite", errno: EEXIST)
        }
        let tmp = sources.map { directory.appendingPathComponent(".\($0.lastPathComponent).lftfpatch-tmp") }
        do {
            for (s, t) in zip(sources, tmp) {
                options.progress?("copying \(s.lastPathComponent)")
                try? FileIO.unlink(t)
                try FileIO.copyFile(s, to: t)
            }
            let index = Dictionary(uniqueKeysWithValues: zip(sources.map(\.lastPathComponent), tmp))
            let targets = items.map { index[$0.file.lastPathComponent]! }
            options.progress?("applying \(items.count) tensors")
            try writeTensors(patch, items, revert: false, readFrom: items.map(\.file), writeTo: targets)
            for t in Set(targets) { try FileDescriptor(t.path, flags: O_RDWR).sync() }
            for (s, t) in zip(sources, tmp) { try FileIO.rename(t, directory.appendingPathComponent(s.lastPathComponent)) }
            try FileIO.syncDirectory(directory)
        } catch {
            for t in tmp { try? FileIO.unlink(t) }
            throw error
        }
    }
}

extension PatchApplier {
    static func changesLayout(_ it: Item) -> Bool {
        it.entry.base.dtype != it.entry.patched.dtype || it.entry.base.byteCount != it.entry.patched.byteCount
    }

    static func unsupportedLayoutChange(_ items: [Item]) -> PatchError {
        let it = items.first(where: changesLayout)!
        return .layoutChange("tensor \(it.entry.name) changes dtype (\(it.entry.base.dtype.rawValue) → \(it.entry.patched.dtype.rawValue)); applying a layout-changing patch to a safetensors checkpoint is not supported yet (GGUF is); nothing was written")
    }

    /// Where a GGUF rewrite is built before it is renamed over `target`.
    static func rewriteTemporary(_ target: URL) -> URL {
        target.deletingLastPathComponent().appendingPathComponent(".\(target.lastPathComponent).lftfpatch-tmp")
    }

    /// A patch that changes tensor sizes (e.g. Q4_1 → F16): the GGUF file is rewritten with the
    /// new tensors (offsets shift) into a temporary file next to `output`, fsynced, and renamed
    /// over it: the rename is atomic, so a crash leaves the old file whole (and a stale
    /// temporary that the next command deletes). Memory: the touched tensors, decoded.
    static func rewriteLayout(_ patch: PatchFile, _ ckpt: Checkpoint, _ items: [Item], revert: Bool, output: URL,
                              options: ApplyOptions) throws {
        guard let g = ckpt as? GGUFCheckpoint else { throw unsupportedLayoutChange(items) }
        let m = patch.manifest
        options.progress?("checking \(items.count) tensors")
        let shas = try hashRegions(items)
        try refuse(items, zip(items, shas).map { classify($0.0, sha: $0.1) }, shas, revert: revert)
        if !options.ignoreFingerprint {
            let fp = try Fingerprint.of(ckpt)
            let want = revert ? m.patched.fingerprint : m.base.fingerprint
            if fp != want { throw PatchError.fingerprintMismatch(expected: want, actual: fp) }
        }
        var replacing: [String: GGUFReplacement] = [:]
        for it in items {
            let to = revert ? it.entry.base : it.entry.patched
            guard let type = GGMLType(to.dtype) else { throw PatchError.unsupported("GGUF cannot hold \(to.dtype.rawValue)") }
            replacing[it.entry.name] = GGUFReplacement(type: type, bytes: try decodeInMemory(patch, it, revert: revert))
        }
        options.progress?("rewriting \(output.lastPathComponent) (\(items.count) tensors change size)")
        let tmp = rewriteTemporary(output)
        try? FileIO.unlink(tmp)
        do {
            try GGUFFile.rewrite(g, to: tmp, replacing: replacing)
            CrashPoints.hit("rewrite: written")
            try FileDescriptor(tmp.path, flags: O_RDWR).sync()
            CrashPoints.hit("rewrite: synced")
            try FileIO.rename(tmp, output)
            try FileIO.syncDirectory(output.deletingLastPathComponent())
            CrashPoints.hit("rewrite: renamed")
        } catch {
            try? FileIO.unlink(tmp)
            throw error
        }
    }
}

func hexBytes(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var it = s.utf8.makeIterator()
    func v(_ c: UInt8) -> UInt8 { c >= 97 ? c - 87 : c >= 65 ? c - 55 : c - 48 }
    while let a = it.next(), let b = it.next() { out.append(v(a) << 4 | v(b)) }
    return out
}
