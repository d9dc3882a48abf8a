// In-place apply/revert with the version-2 (sector) journal, for patches whose every stream can
// be decoded with a per-element direction (`float-rans`): nothing but a few MiB of sector
// hashes is written before the model, and the decoded bytes are hashed as they are written.
//
//   1. check: read each touched tensor once (two threads), SHA-256 + 512-byte sector hashes;
//      refuse unless every tensor is the expected source (nothing written yet).
//   2. hard-link (or copy) the patch next to the journal; write the journal with its commit
//      record in one write; fsync it and the directory.
//   3. decode frame by frame (two threads, one tensor each at a time): read the source frame,
//      decode, hash, write, start the write-back (sync_file_range).
//   4. compare the decoded tensors' SHA-256 with the manifest (else roll back and fail); fsync
//      the data files; delete the journal and the patch link; fsync the directory.
import Crypto
import Foundation
import ModelFormats
#if canImport(Glibc)
import Glibc
#endif

extension PatchApplier {
    /// Every touched tensor: same dtype and size on both sides, a stream that decodes with mixed
    /// directions, element-aligned in its file (so no element straddles a sector).
    static func usesSectorJournal(_ items: [Item]) -> Bool {
        items.allSatisfy { it in
            let e = it.entry
            guard e.reverse == nil, let enc = DeltaEncoding(rawValue: e.forward.encoding), enc.decodesMixed,
                  e.base.dtype == e.patched.dtype, !e.base.dtype.isQuantized, e.base.byteCount == e.patched.byteCount else { return false }
            return it.info.offset % e.base.dtype.blockBytes == 0
        }
    }

    /// Runs `body(i)` for every index on two threads, largest `sizes` first; the first error wins.
    static func twoThreads(_ sizes: [Int], _ body: (Int) throws -> Void) throws {
        try PatchApplier.onTwoThreads(sizes.indices.sorted { sizes[$0] > sizes[$1] }, body)
    }

    /// SHA-256 (hex) and sector hashes of each touched region.
    static func checkRegions(_ items: [Item]) throws -> [(sha: String, sectors: [UInt64])] {
        var out = [(sha: String, sectors: [UInt64])](repeating: ("", []), count: items.count)
        let lock = NSLock()
        try twoThreads(items.map(\.info.byteCount)) { i in
            let it = items[i]
            let f = try FileDescriptor(it.file.path, flags: O_RDONLY)
            var h = SHA256()
            var sectors: [UInt64] = []
            sectors.reserveCapacity(Journal.sectorCount(offset: it.info.offset, length: it.info.byteCount))
            let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: ioChunk, alignment: 4096)
            defer { buf.deallocate() }
            var done = 0
            while done < it.info.byteCount {
                let n = min(buf.count, it.info.byteCount - done)
                let part = UnsafeMutableRawBufferPointer(rebasing: buf[0..<n])
                try f.read(into: part, at: it.info.offset + done)
                h.update(bufferPointer: UnsafeRawBufferPointer(part))
                Journal.appendSectorHashes(UnsafeRawBufferPointer(part), fileOffset: it.info.offset + done, to: &sectors)
                done += n
            }
            let d = hex(h.finalize())
            lock.lock(); out[i] = (d, sectors); lock.unlock()
        }
        return out
    }

    static func inPlaceWithSectorJournal(_ patch: PatchFile, _ ckpt: Checkpoint, _ items: [Item], revert: Bool, options: ApplyOptions) throws {
        let m = patch.manifest
        let dir = Journal.directory(for: ckpt.location)
        let jurl = Journal.url(for: ckpt.location), purl = Journal.patchURL(for: ckpt.location)
        let total = items.reduce(0) { $0 + $1.info.byteCount }
        var clock = PhaseClock()

        // 1. Check.
        options.progress?("checking \(items.count) tensors (\(total >> 20) MiB)")
        let checked = try checkRegions(items)
        clock.lap("check (read, SHA-256, sector hashes)")
        let shas: [String?] = checked.map(\.sha)
        try refuse(items, zip(items, shas).map { classify($0.0, sha: $0.1) }, shas, revert: revert)
        if !options.ignoreFingerprint {
            let fp = try Fingerprint.of(ckpt)
            let want = revert ? m.patched.fingerprint : m.base.fingerprint
            if fp != want { throw PatchError.fingerprintMismatch(expected: want, actual: fp) }
        }
        clock.lap("fingerprint")

        // 2. Keep the patch, commit the journal.
        let jsize = try commitSectorJournal(patch, ckpt, items, checked, revert: revert)
        clock.lap("journal (\(jsize >> 10) KiB) written and synced")

        // 3. Decode and write.
        options.progress?("\(revert ? "reverting" : "applying") \(items.count) tensors")
        do {
            try twoThreads(items.map(\.info.byteCount)) { i in try decodeInPlace(patch, items[i], revert: revert) }
            CrashPoints.hit("data: written")
            clock.lap("decode, hash, write")
            for f in Set(items.map(\.file)) { try FileDescriptor(f.path, flags: O_RDWR).sync() }
            CrashPoints.hit("data: synced")
            clock.lap("fsync data")
        } catch {
            _ = try? Journal.recover(location: ckpt.location)
            throw error
        }
        // 4. Done.
        try FileIO.unlink(jurl)
        CrashPoints.hit("journal: deleted")
        try FileIO.unlink(purl)
        try FileIO.syncDirectory(dir)
        CrashPoints.hit("journal: patch deleted")
        clock.lap("journal deleted")
    }

    /// Hard-links (or copies) the patch next to the journal, then writes the v2 journal with its
    /// commit record, fsyncs it and the directory. Returns the journal's size.
    @discardableResult
    static func commitSectorJournal(_ patch: PatchFile, _ ckpt: Checkpoint, _ items: [Item],
                                    _ checked: [(sha: String, sectors: [UInt64])], revert: Bool) throws -> Int {
        let dir = Journal.directory(for: ckpt.location)
        let jurl = Journal.url(for: ckpt.location), purl = Journal.patchURL(for: ckpt.location)
        let regions = zip(items, checked).map { it, c in
            Journal.SectorRegion(file: it.file.lastPathComponent, offset: it.info.offset, length: it.info.byteCount,
                                 tensor: it.entry.name, sha256: hexBytes(c.sha), sectors: c.sectors)
        }
        let journal = Journal.encodeV2(regions, revert: revert, patchSha: hexBytes(patch.checksum),
                                       patchPath: patch.url.standardizedFileURL.path)
        do {
            try? FileIO.unlink(purl)
            if Glibc.link(patch.url.path, purl.path) != 0 {
                try FileIO.copyFile(patch.url, to: purl)   // another file system: copy (and fsync) it
            }
            CrashPoints.hit("journal: patch kept")
            let jf = try FileDescriptor(jurl.path, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
            CrashPoints.hit("journal: created")
            try jf.write(journal, at: 0)
            try jf.sync()
            try FileIO.syncDirectory(dir)
            CrashPoints.hit("journal: committed")
        } catch {
            try? FileIO.unlink(jurl)
            try? FileIO.unlink(purl)
            throw error
        }
        return journal.count
    }

    /// Decodes one tensor over itself, frame by frame, hashing the decoded bytes.
    static func decodeInPlace(_ patch: PatchFile, _ it: Item, revert: Bool) throws {
        let e = it.entry
        let to = revert ? e.base : e.patched
        guard let enc = DeltaEncoding(rawValue: e.forward.encoding) else {
            throw PatchError.unsupportedEncoding(tensor: e.name, encoding: e.forward.encoding)
        }
        let fd = try FileDescriptor(it.file.path, flags: O_RDWR)
        let n = ModelFormats.elementCount(to.shape)!
        let frameBytes = to.dtype.byteCount(elements: e.forward.chunkElements)!
        let src = UnsafeMutableRawBufferPointer.allocate(byteCount: frameBytes, alignment: 4096)
        let dst = UnsafeMutableRawBufferPointer.allocate(byteCount: frameBytes, alignment: 4096)
        defer { src.deallocate(); dst.deallocate() }
        var h = SHA256()
        var offset = e.forward.offset
        for i in 0..<e.forward.frameSizes.count {
            let size = e.forward.frameSizes[i]
            let frame = try patch.file.read(count: size, at: patch.dataStart + offset)
            offset += size
            let first = i * e.forward.chunkElements
            let count = min(e.forward.chunkElements, n - first)
            let lo = to.dtype.byteCount(elements: first)!, len = to.dtype.byteCount(elements: count)!
            let s = UnsafeMutableRawBufferPointer(rebasing: src[0..<len]), o = UnsafeMutableRawBufferPointer(rebasing: dst[0..<len])
            try fd.read(into: s, at: it.info.offset + lo)
            try frame.withUnsafeBytes { f in
                try DeltaCodec.decode(enc, dtype: to.dtype, frame: f, source: UnsafeRawBufferPointer(s), into: o, reverse: revert, tensor: e.name)
            }
            h.update(bufferPointer: UnsafeRawBufferPointer(o))
            try fd.write(UnsafeRawBufferPointer(o), at: it.info.offset + lo)
            startWriteBack(fd, offset: it.info.offset + lo, count: len)
            CrashPoints.hit("data: wrote frame \(i) of \(e.name)")
        }
        let got = hex(h.finalize())
        guard got == to.sha256 else {
            throw PatchError.corruptFrame(tensor: e.name, detail: "decoded tensor has SHA-256 \(got.prefix(16))…, expected \(to.sha256.prefix(16))…")
        }
    }
}

/// sync_file_range(fd, offset, count, SYNC_FILE_RANGE_WRITE): starts writing the range to disk
/// without waiting, so the final fsync finds little left to do. Looked up at run time (Swift's
/// Glibc module does not export it); a no-op where it is missing.
private let syncFileRange: (@convention(c) (Int32, Int64, Int64, UInt32) -> Int32)? = {
    guard let h = dlopen(nil, RTLD_NOW), let f = dlsym(h, "sync_file_range") else { return nil }
    return unsafeBitCast(f, to: (@convention(c) (Int32, Int64, Int64, UInt32) -> Int32).self)
}()

func startWriteBack(_ fd: FileDescriptor, offset: Int, count: Int) {
    _ = syncFileRange?(fd.fd, Int64(offset), Int64(count), 2 /* SYNC_FILE_RANGE_WRITE */)
}

/// `LFTF_PATCH_TIMING=1`: prints the wall time of each phase of an in-place apply on stderr.
struct PhaseClock {
    static let enabled = ProcessInfo.processInfo.environment["LFTF_PATCH_TIMING"] != nil
    var last = DispatchTime.now().uptimeNanoseconds
    mutating func lap(_ what: @autoclosure () -> String) {
        guard Self.enabled else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        FileHandle.standardError.write(("timing: " + String(format: "%7.3f", Double(now - last) / 1e9) + " s  " + what() + "\n").data(using: .utf8)!)
        last = now
    }
}
