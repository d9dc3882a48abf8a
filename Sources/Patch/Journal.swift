// The rollback journal of an in-place apply or revert (Formats/lftfpatch.md, "Journal").
//
//   magic[8] "LFTFJRNL" | version u32 | entry_count u32
//   entries: name_len u16 | name (file name, no '/') | offset u64 | length u64 | sha256[32]
//   region bytes, in entry order (the original bytes of each region)
//   commit: "COMMITTD" | sha256[32] of the header and entries
//
// Order of an in-place write: journal written and fsynced → commit record written and fsynced
// → data files overwritten and fsynced → journal deleted. A journal without a valid commit
// record means the data files were not touched: recovery deletes it. A committed journal means
// they may be half written: recovery puts every region back, fsyncs, then deletes it. Both
// steps can be interrupted and run again.
import Crypto
import Foundation

public enum Journal {
    static let magic: [UInt8] = Array("LFTFJRNL".utf8)
    static let commitMagic: [UInt8] = Array("COMMITTD".utf8)
    static let version: UInt32 = 1

    struct Region {
        var file: String     // a file name in the checkpoint's directory
        var offset: Int
        var length: Int
        var sha256: [UInt8]
    }

    /// Where the journal of a checkpoint lives: inside an HF directory, next to a GGUF file.
    public static func url(for location: URL) -> URL {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: location.path, isDirectory: &isDir), isDir.boolValue {
            return location.appendingPathComponent(".lftfpatch-journal")
        }
        return location.deletingLastPathComponent().appendingPathComponent(location.lastPathComponent + ".lftfpatch-journal")
    }

    static func directory(for location: URL) -> URL {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: location.path, isDirectory: &isDir), isDir.boolValue { return location }
        return location.deletingLastPathComponent()
    }

    static func header(_ regions: [Region]) -> [UInt8] {
        var out = magic
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        put(version); put(UInt32(regions.count))
        for r in regions {
            let n = Array(r.file.utf8)
            put(UInt16(n.count)); out += n
            put(UInt64(r.offset)); put(UInt64(r.length)); out += r.sha256
        }
        return out
    }

    /// Byte offset of each region's data in the journal.
    static func dataOffsets(_ regions: [Region], headerSize: Int) -> [Int] {
        var offs: [Int] = [], o = headerSize
        for r in regions { offs.append(o); o += r.length }
        return offs
    }

    public enum Outcome: Equatable {
        /// No journal: nothing to do.
        case clean
        /// An uncommitted journal was deleted (the checkpoint was never touched).
        case discarded
        /// A committed journal was rolled back: the checkpoint is as before the interrupted command.
        case rolledBack(regions: Int)
    }

    /// Finishes what an interrupted apply/revert left: rolls a committed journal back, deletes an
    /// uncommitted one. The caller holds the checkpoint lock. Call before reading the checkpoint.
    @discardableResult
    public static func recover(location: URL) throws -> Outcome {
        // A GGUF rewrite interrupted before its rename: the original is whole; drop the temporary.
        let tmp = PatchApplier.rewriteTemporary(location)
        if FileIO.exists(tmp) { try FileIO.unlink(tmp) }
        let j = url(for: location)
        let dir = directory(for: location)
        guard FileIO.exists(j) else {
            // A v2 apply killed between linking its patch and creating the journal.
            if FileIO.exists(patchURL(for: location)) { try FileIO.unlink(patchURL(for: location)); try FileIO.syncDirectory(dir) }
            return .clean
        }
        let f = try FileDescriptor(j.path, flags: O_RDONLY)
        let size = try f.size
        if size >= 12, try f.read(count: 8, at: 0) == magic, try f.read(count: 4, at: 8) == [2, 0, 0, 0] {
            // Version 2: sector hashes, rolled back by decoding the patch.
            guard let v2 = try parseV2(try f.read(count: size, at: 0), path: j.path) else {
                try FileIO.unlink(j)
                try FileIO.unlink(patchURL(for: location))
                try FileIO.syncDirectory(dir)
                return .discarded
            }
            try rollBackV2(v2, location: location, journal: j)
            try FileIO.unlink(j)
            try FileIO.unlink(patchURL(for: location))
            try FileIO.syncDirectory(dir)
            return .rolledBack(regions: v2.regions.count)
        }
        guard let (regions, headerSize) = try parseCommitted(f, size: size, path: j.path) else {
            try FileIO.unlink(j)
            try FileIO.unlink(patchURL(for: location))
            try FileIO.syncDirectory(dir)
            return .discarded
        }
        // Committed: put every region back.
        let offs = dataOffsets(regions, headerSize: headerSize)
        var buf = [UInt8](repeating: 0, count: 8 << 20)
        var touched: [String: FileDescriptor] = [:]
        for (r, o) in zip(regions, offs) {
            guard !r.file.isEmpty, !r.file.contains("/"), r.file != ".", r.file != ".." else {
                throw PatchError.corruptJournal(path: j.path, detail: "bad file name \(String(reflecting: r.file))")
            }
            let target: FileDescriptor
            if let t = touched[r.file] { target = t } else {
                target = try FileDescriptor(dir.appendingPathComponent(r.file).path, flags: O_RDWR)
                touched[r.file] = target
            }
            // Check the saved bytes first, then copy.
            var h = SHA256()
            var done = 0
            while done < r.length {
                let n = min(buf.count, r.length - done)
                try buf.withUnsafeMutableBytes { b in
                    let part = UnsafeMutableRawBufferPointer(rebasing: b[0..<n])
                    try f.read(into: part, at: o + done)
                    h.update(bufferPointer: UnsafeRawBufferPointer(part))
                }
                done += n
            }
            guard Array(h.finalize()) == r.sha256 else {
                throw PatchError.corruptJournal(path: j.path, detail: "saved bytes of \(r.file) at \(r.offset) fail their checksum")
            }
            done = 0
            while done < r.length {
                let n = min(buf.count, r.length - done)
                try buf.withUnsafeMutableBytes { b in
                    let part = UnsafeMutableRawBufferPointer(rebasing: b[0..<n])
                    try f.read(into: part, at: o + done)
                    try target.write(UnsafeRawBufferPointer(part), at: r.offset + done)
                }
                done += n
                CrashPoints.hit("recover: restored \(done) bytes of \(r.file)@\(r.offset)")
            }
        }
        for t in touched.values { try t.sync() }
        CrashPoints.hit("recover: data synced")
        try FileIO.unlink(j)
        try FileIO.syncDirectory(dir)
        return .rolledBack(regions: regions.count)
    }

    /// The regions and header size of a committed journal, or nil if it is not committed.
    static func parseCommitted(_ f: FileDescriptor, size: Int, path: String) throws -> ([Region], Int)? {
        guard size >= 16 + 40 else { return nil }
        let head = try f.read(count: 16, at: 0)
        guard Array(head[0..<8]) == magic else {
            throw PatchError.corruptJournal(path: path, detail: "bad magic; delete it only if you know the checkpoint is intact")
        }
        func u(_ b: [UInt8], _ o: Int, _ n: Int) -> UInt64 { b[o..<o + n].reversed().reduce(0) { $0 << 8 | UInt64($1) } }
        guard u(head, 8, 4) == 1 else {
            throw PatchError.corruptJournal(path: path, detail: "journal version \(u(head, 8, 4)) is from a newer lftf-patch; recover with that version")
        }
        let count = Int(u(head, 12, 4))
        var regions: [Region] = []
        var pos = 16
        for _ in 0..<count {
            guard pos + 2 <= size else { return nil }
            let nl = Int(u(try f.read(count: 2, at: pos), 0, 2)); pos += 2
            guard pos + nl + 48 <= size else { return nil }
            let rest = try f.read(count: nl + 48, at: pos); pos += nl + 48
            let name = String(decoding: rest[0..<nl], as: UTF8.self)
            let off = u(rest, nl, 8), len = u(rest, nl + 8, 8)
            guard off < UInt64(Int.max / 2), len < UInt64(Int.max / 2) else { return nil }
            regions.append(Region(file: name, offset: Int(off), length: Int(len), sha256: Array(rest[(nl + 16)..<(nl + 48)])))
        }
        let headerSize = pos
        let total = regions.reduce(headerSize) { $0 + $1.length }
        guard size == total + 40 else { return nil }
        let commit = try f.read(count: 40, at: total)
        guard Array(commit[0..<8]) == commitMagic else { return nil }
        let hdr = try f.read(count: headerSize, at: 0)
        guard Array(SHA256.hash(data: hdr)) == Array(commit[8..<40]) else { return nil }
        return (regions, headerSize)
    }
}

/// An exclusive lock on a checkpoint (flock on its file or directory), held while a command
/// reads or writes it; a crashed holder releases it with its death.
public final class CheckpointLock {
    private let fd: FileDescriptor
    public init(_ location: URL) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: location.path, isDirectory: &isDir) else {
            throw PatchError.io(path: location.path, operation: "cannot open", errno: ENOENT)
        }
        fd = try FileDescriptor(location.path, flags: isDir.boolValue ? (O_RDONLY | O_DIRECTORY) : O_RDONLY)
        try fd.lockExclusive()
    }
}

public enum PatchRecovery {
    /// Finishes or rolls back an interrupted apply/revert on the checkpoint at `location`
    /// (taking its lock). Every command that reads a checkpoint should call this before opening
    /// it; without a journal it costs one `access()`.
    @discardableResult
    public static func recover(_ location: URL) throws -> Journal.Outcome {
        guard FileIO.exists(Journal.url(for: location)) || FileIO.exists(PatchApplier.rewriteTemporary(location))
                || FileIO.exists(Journal.patchURL(for: location)) else { return .clean }
        let lock = try CheckpointLock(location)
        defer { withExtendedLifetime(lock) {} }
        return try Journal.recover(location: location)
    }
}
