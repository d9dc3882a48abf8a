// The version-2 rollback journal (Formats/lftfpatch.md, "The journal"): instead of a copy of
// every old byte it keeps, per 512-byte sector of each touched region, a 64-bit hash of the
// sector's bytes before the write, plus the patch itself (hard-linked next to the journal).
// A source-based frame decodes element by element from the base or from the patched bytes, so
// recovery can decode each frame with a per-element direction — sectors whose hash still
// matches hold old bytes, the others new ones — and write the old bytes back.
//
//   magic[8] "LFTFJRNL" | version u32 = 2 | entry_count u32
//   operation u8 (0 apply, 1 revert) | reserved[7] = 0
//   patch_sha256[32] | patch_path_len u16 | patch_path
//   entries: file_len u16 | file | offset u64 | length u64 | tensor_len u16 | tensor | sha256[32]
//   sector hashes: per entry, u64 × sectors(offset, length)
//   commit: "COMMITTD" | sha256[32] of everything before it
import Crypto
import Foundation
import ModelFormats

extension Journal {
    static let sectorSize = 512

    struct SectorRegion {
        var file: String        // file name in the checkpoint's directory
        var offset: Int
        var length: Int
        var tensor: String      // tensor name in the patch
        var sha256: [UInt8]     // SHA-256 of the region before the write
        var sectors: [UInt64]   // hash of each sector's part of the region before the write
    }

    /// Sectors (512-byte, aligned to the file's start) that [offset, offset + length) touches.
    static func sectorCount(offset: Int, length: Int) -> Int {
        length == 0 ? 0 : (offset + length - 1) / sectorSize - offset / sectorSize + 1
    }

    /// Where the patch of a v2 journal is kept: next to the journal.
    public static func patchURL(for location: URL) -> URL {
        let j = url(for: location)
        return j.deletingLastPathComponent().appendingPathComponent(j.lastPathComponent + "-patch")
    }

    /// A 64-bit hash of `bytes` (a sector's part of a region): four multiply-rotate lanes over
    /// little-endian 64-bit words, the tail zero-padded, then a SplitMix64 finish with the length.
    /// Not cryptographic: it only tells a sector's old bytes from its new ones after a crash;
    /// the restored tensor's SHA-256 is checked as well.
    @inline(__always) static func sectorHash(_ p: UnsafeRawPointer, _ n: Int) -> UInt64 {
        let k: UInt64 = 0x9E37_79B9_7F4A_7C15
        var h0: UInt64 = 0x243F_6A88_85A3_08D3, h1: UInt64 = 0x1319_8A2E_0370_7344
        var h2: UInt64 = 0xA409_3822_299F_31D0, h3: UInt64 = 0x082E_FA98_EC4E_6C89
        @inline(__always) func mix(_ h: inout UInt64, _ w: UInt64) {
            let x = (h ^ w) &* k
            h = (x << 31) | (x >> 33)
        }
        var i = 0
        while i + 32 <= n {
            mix(&h0, p.loadUnaligned(fromByteOffset: i, as: UInt64.self).littleEndian)
            mix(&h1, p.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self).littleEndian)
            mix(&h2, p.loadUnaligned(fromByteOffset: i + 16, as: UInt64.self).littleEndian)
            mix(&h3, p.loadUnaligned(fromByteOffset: i + 24, as: UInt64.self).littleEndian)
            i += 32
        }
        var lane = 0
        while i < n {
            var w: UInt64 = 0
            let m = min(8, n - i)
            for b in 0..<m { w |= UInt64(p.load(fromByteOffset: i + b, as: UInt8.self)) << UInt64(8 * b) }
            switch lane { case 0: mix(&h0, w); case 1: mix(&h1, w); case 2: mix(&h2, w); default: mix(&h3, w) }
            lane += 1; i += m
        }
        var z = h0 ^ (h1 &* 3) ^ (h2 &* 5) ^ (h3 &* 7) ^ UInt64(n)
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Appends the hashes of the sectors of `bytes`, which sit at `fileOffset` in their file and
    /// are a piece of a region; pieces must start on a sector boundary except the region's first.
    static func appendSectorHashes(_ bytes: UnsafeRawBufferPointer, fileOffset: Int, to out: inout [UInt64]) {
        var i = 0
        while i < bytes.count {
            let sectorEnd = (fileOffset + i) / sectorSize * sectorSize + sectorSize
            let n = min(bytes.count - i, sectorEnd - (fileOffset + i))
            out.append(sectorHash(bytes.baseAddress! + i, n))
            i += n
        }
    }

    static func encodeV2(_ regions: [SectorRegion], revert: Bool, patchSha: [UInt8], patchPath: String) -> [UInt8] {
        var out = magic
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func str(_ s: String) { let b = Array(s.utf8); put(UInt16(b.count)); out += b }
        put(UInt32(2)); put(UInt32(regions.count))
        out.append(revert ? 1 : 0); out += [UInt8](repeating: 0, count: 7)
        out += patchSha
        str(patchPath)
        for r in regions {
            str(r.file); put(UInt64(r.offset)); put(UInt64(r.length)); str(r.tensor); out += r.sha256
        }
        for r in regions {
            out.reserveCapacity(out.count + 8 * r.sectors.count)
            r.sectors.withUnsafeBytes { out += $0 }   // little-endian machines only (Linux x86-64/arm64)
        }
        out += commitMagic
        out += Array(SHA256.hash(data: out))
        return out
    }

    struct V2 {
        var revert: Bool
        var patchSha: [UInt8]
        var patchPath: String
        var regions: [SectorRegion]
    }

    /// Parses a whole v2 journal; nil if it is not (completely) committed.
    static func parseV2(_ b: [UInt8], path: String) throws -> V2? {
        guard b.count >= 8 + 8 + 8 + 32 + 2 + 40 else { return nil }
        let body = b.count - 40
        guard Array(b[body..<(body + 8)]) == commitMagic,
              Array(SHA256.hash(data: b[0..<(body + 8)])) == Array(b[(body + 8)...]) else { return nil }
        var pos = 8
        func u(_ n: Int) throws -> UInt64 {
            guard pos + n <= body else { throw PatchError.corruptJournal(path: path, detail: "entries run past the end") }
            defer { pos += n }
            return b[pos..<pos + n].reversed().reduce(0) { $0 << 8 | UInt64($1) }
        }
        func str() throws -> String {
            let n = Int(try u(2))
            guard pos + n <= body else { throw PatchError.corruptJournal(path: path, detail: "a name runs past the end") }
            defer { pos += n }
            return String(decoding: b[pos..<pos + n], as: UTF8.self)
        }
        func bytes(_ n: Int) throws -> [UInt8] {
            guard pos + n <= body else { throw PatchError.corruptJournal(path: path, detail: "a hash runs past the end") }
            defer { pos += n }
            return Array(b[pos..<pos + n])
        }
        _ = try u(4)
        let count = Int(try u(4))
        let op = try u(1); _ = try u(7)
        guard op <= 1 else { throw PatchError.corruptJournal(path: path, detail: "unknown operation \(op)") }
        let sha = try bytes(32)
        let patchPath = try str()
        var regions: [SectorRegion] = []
        for _ in 0..<count {
            let file = try str()
            let off = try u(8), len = try u(8)
            guard off < UInt64(Int.max / 4), len < UInt64(Int.max / 4) else {
                throw PatchError.corruptJournal(path: path, detail: "region out of range")
            }
            regions.append(SectorRegion(file: file, offset: Int(off), length: Int(len), tensor: try str(), sha256: try bytes(32), sectors: []))
        }
        for i in regions.indices {
            let n = sectorCount(offset: regions[i].offset, length: regions[i].length)
            guard pos + 8 * n <= body else { throw PatchError.corruptJournal(path: path, detail: "sector hashes run past the end") }
            regions[i].sectors = (0..<n).map { k in b[(pos + 8 * k)..<(pos + 8 * k + 8)].reversed().reduce(0) { $0 << 8 | UInt64($1) } }
            pos += 8 * n
        }
        guard pos == body else { throw PatchError.corruptJournal(path: path, detail: "\(body - pos) stray bytes") }
        return V2(revert: op == 1, patchSha: sha, patchPath: patchPath, regions: regions)
    }

    /// Rolls back a committed v2 journal: per region, the sectors whose hash no longer matches
    /// hold new bytes; each frame is decoded with that per-element direction and the old bytes
    /// are written back, checked against the region's SHA-256.
    static func rollBackV2(_ j: V2, location: URL, journal: URL) throws {
        let dir = directory(for: location)
        let purl = patchURL(for: location)
        let patch: PatchFile
        do {
            patch = try PatchFile(url: FileIO.exists(purl) ? purl : URL(fileURLWithPath: j.patchPath))
        } catch {
            throw PatchError.journalNeedsPatch(journal: journal.path, patch: j.patchPath, sha256: hex(j.patchSha), detail: "\(error)")
        }
        guard patch.checksum == hex(j.patchSha) else {
            throw PatchError.journalNeedsPatch(journal: journal.path, patch: j.patchPath, sha256: hex(j.patchSha),
                                               detail: "\(patch.url.path) is a different patch (\(patch.checksum.prefix(16))…)")
        }
        var touched: [String: FileDescriptor] = [:]
        for r in j.regions {
            guard !r.file.isEmpty, !r.file.contains("/"), r.file != ".", r.file != ".." else {
                throw PatchError.corruptJournal(path: journal.path, detail: "bad file name \(String(reflecting: r.file))")
            }
            guard let e = patch.manifest.tensors.first(where: { $0.name == r.tensor }), e.reverse == nil,
                  e.base.byteCount == r.length, e.patched.byteCount == r.length,
                  let enc = DeltaEncoding(rawValue: e.forward.encoding), enc.decodesMixed else {
                throw PatchError.corruptJournal(path: journal.path, detail: "tensor \(r.tensor) does not match the patch")
            }
            let fd: FileDescriptor
            if let t = touched[r.file] { fd = t } else {
                fd = try FileDescriptor(dir.appendingPathComponent(r.file).path, flags: O_RDWR)
                touched[r.file] = fd
            }
            try restoreRegion(r, e, enc, patch, fd, revert: j.revert, journal: journal)
        }
        for t in touched.values { try t.sync() }
        CrashPoints.hit("recover: data synced")
    }

    static func restoreRegion(_ r: SectorRegion, _ e: PatchedTensor, _ enc: DeltaEncoding, _ patch: PatchFile, _ fd: FileDescriptor,
                              revert: Bool, journal: URL) throws {
        let dtype = e.base.dtype
        let w = dtype.blockBytes / dtype.blockElements
        guard !dtype.isQuantized, r.offset % w == 0 else {
            throw PatchError.corruptJournal(path: journal.path, detail: "tensor \(r.tensor) is not element-aligned")
        }
        // Which sectors still hold their old bytes.
        var old = [Bool](repeating: false, count: r.sectors.count)
        var buf = [UInt8](repeating: 0, count: PatchApplier.ioChunk)
        var done = 0, hashes: [UInt64] = []
        hashes.reserveCapacity(r.sectors.count)
        while done < r.length {
            let n = min(buf.count, r.length - done)
            try buf.withUnsafeMutableBytes { b in
                let part = UnsafeMutableRawBufferPointer(rebasing: b[0..<n])
                try fd.read(into: part, at: r.offset + done)
                appendSectorHashes(UnsafeRawBufferPointer(part), fileOffset: r.offset + done, to: &hashes)
            }
            done += n
        }
        for k in old.indices { old[k] = hashes[k] == r.sectors[k] }
        if old.allSatisfy({ $0 }) { return }   // never written (or already restored)
        // Decode frame by frame with each element's direction; write back the old bytes.
        let n = ModelFormats.elementCount(e.base.shape)!
        let firstSector = r.offset / sectorSize
        var h = SHA256()
        for i in 0..<e.forward.frameSizes.count {
            let (frame, first, count) = try patch.frame(e.forward, i, elements: n)
            let lo = first * w, len = count * w
            let cur = try fd.read(count: len, at: r.offset + lo)
            // flag 1: the element holds the patched value.
            var flags = [UInt8](repeating: 0, count: count)
            var anyNew = false
            for k in 0..<count {
                let isOld = old[(r.offset + lo + k * w) / sectorSize - firstSector]
                if !isOld { anyNew = true }
                flags[k] = (isOld == revert) ? 1 : 0
            }
            var out = cur
            if anyNew {
                try frame.withUnsafeBytes { f in try cur.withUnsafeBytes { s in try out.withUnsafeMutableBytes { o in try flags.withUnsafeBufferPointer { fl in
                    try DeltaCodec.decodeMixed(enc, dtype: dtype, frame: f, source: s, patchedFlags: fl.baseAddress!, wantBase: !revert, into: o, tensor: e.name)
                } } } }
            }
            h.update(data: out)
            if anyNew {
                try fd.write(out, at: r.offset + lo)
                CrashPoints.hit("recover: restored frame \(i) of \(r.tensor)")
            }
        }
        guard Array(h.finalize()) == r.sha256 else {
            throw PatchError.corruptJournal(path: journal.path, detail: "tensor \(r.tensor) could not be restored (its bytes match neither side); the checkpoint needs a fresh copy")
        }
    }
}
