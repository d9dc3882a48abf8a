import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Memory-mapped files and a buffered output file.
//
// Checkpoints are opened by mapping them read-only: opening reads no tensor bytes, and
// only the pages a caller touches are ever read. `OutputFile` writes sequentially with
// `writeAll` semantics (partial writes are finished, EINTR retried).

public enum FileIOError: Error, CustomStringConvertible, Equatable {
    /// open(2) failed.
    case cannotOpen(path: String, errno: Int32)
    /// fstat(2) failed.
    case cannotStat(path: String, errno: Int32)
    /// The path is a directory or another non-regular file.
    case notARegularFile(path: String)
    /// mmap(2) failed.
    case cannotMap(path: String, size: Int, errno: Int32)
    /// ftruncate(2) failed (creating a writable mapping).
    case cannotResize(path: String, size: Int, errno: Int32)
    /// write(2) failed.
    case writeFailed(path: String, errno: Int32)
    /// msync/fsync/close failed.
    case syncFailed(path: String, errno: Int32)
    /// A write was attempted after `close()`.
    case closed(path: String)

    public var description: String {
        func e(_ n: Int32) -> String { String(cString: strerror(n)) }
        switch self {
        case .cannotOpen(let p, let n): return "cannot open \(p): \(e(n))"
        case .cannotStat(let p, let n): return "cannot stat \(p): \(e(n))"
        case .notARegularFile(let p): return "\(p) is not a regular file"
        case .cannotMap(let p, let s, let n): return "cannot memory-map \(p) (\(s) bytes): \(e(n))"
        case .cannotResize(let p, let s, let n): return "cannot resize \(p) to \(s) bytes: \(e(n))"
        case .writeFailed(let p, let n): return "cannot write \(p): \(e(n))"
        case .syncFailed(let p, let n): return "cannot flush \(p) to disk: \(e(n))"
        case .closed(let p): return "internal error: write to \(p) after it was closed"
        }
    }
}

/// A whole file mapped into memory. Read-only by default; `MappedFile(creating:size:)`
/// makes a new file of a given size mapped read-write (MAP_SHARED), for writers that fill
/// a file in place. Unmapped on deinit: keep the object alive while using `bytes`.
public final class MappedFile: @unchecked Sendable {
    public let url: URL
    /// The file's bytes. Empty (with a nil base address) for an empty file.
    public let bytes: UnsafeRawBufferPointer
    /// The same bytes, writable, for a file opened with `creating:` (nil otherwise).
    public let mutableBytes: UnsafeMutableRawBufferPointer?
    public var count: Int { bytes.count }

    private let base: UnsafeMutableRawPointer?
    private let length: Int

    /// Maps `url` read-only.
    public init(url: URL) throws {
        self.url = url
        let path = url.path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileIOError.cannotOpen(path: path, errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileIOError.cannotStat(path: path, errno: errno) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw FileIOError.notARegularFile(path: path) }
        let size = Int(st.st_size)
        length = size
        mutableBytes = nil
        if size == 0 {
            base = nil
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else { throw FileIOError.cannotMap(path: path, size: size, errno: errno) }
        base = p
        bytes = UnsafeRawBufferPointer(start: p, count: size)
    }

    /// Creates (or truncates) `url` with `size` zero bytes and maps it read-write.
    public init(creating url: URL, size: Int) throws {
        self.url = url
        let path = url.path
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileIOError.cannotOpen(path: path, errno: errno) }
        defer { close(fd) }
        guard ftruncate(fd, off_t(size)) == 0 else { throw FileIOError.cannotResize(path: path, size: size, errno: errno) }
        length = size
        if size == 0 {
            base = nil
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            mutableBytes = UnsafeMutableRawBufferPointer(start: nil, count: 0)
            return
        }
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let p, p != MAP_FAILED else { throw FileIOError.cannotMap(path: path, size: size, errno: errno) }
        base = p
        bytes = UnsafeRawBufferPointer(start: p, count: size)
        mutableBytes = UnsafeMutableRawBufferPointer(start: p, count: size)
    }

    /// Flushes a writable mapping to disk (no-op for read-only mappings).
    public func sync() throws {
        guard mutableBytes != nil, let base else { return }
        guard msync(base, length, MS_SYNC) == 0 else { throw FileIOError.syncFailed(path: url.path, errno: errno) }
    }

    /// A sub-range of the file, or nil when it does not lie inside the file.
    public func slice(offset: Int, count: Int) -> UnsafeRawBufferPointer? {
        guard offset >= 0, count >= 0, offset <= bytes.count, count <= bytes.count - offset else { return nil }
        if count == 0 { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
    }

    deinit {
        if let base { munmap(base, length) }
    }
}

/// Unmaps the whole pages inside `bytes` from this process (madvise MADV_DONTNEED) after a
/// read-only mapping has been read: the data stays in the page cache and is faulted back in
/// on the next access, but no longer counts in the process's resident set. For a caller that
/// streams a checkpoint larger than it wants to keep mapped (a 7B model's blocks dequantized
/// one by one). Only for read-only mappings (`MappedFile(url:)`), whose pages are never dirty.
public func releaseMappedPages(_ bytes: UnsafeRawBufferPointer) {
    guard let start = bytes.baseAddress, bytes.count > 0 else { return }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let lo = (Int(bitPattern: start) + page - 1) / page * page
    let hi = (Int(bitPattern: start) + bytes.count) / page * page
    guard hi > lo, let p = UnsafeMutableRawPointer(bitPattern: lo) else { return }
    _ = madvise(p, hi - lo, Int32(MADV_DONTNEED))
}

/// A file written front to back through a 1 MiB buffer. Call `close()` to flush; the
/// destructor closes without reporting errors.
public final class OutputFile {
    public let url: URL
    /// Bytes written so far (including buffered ones).
    public private(set) var position: Int = 0
    private var fd: Int32
    private var buffer: [UInt8] = []
    private let bufferLimit = 1 << 20

    /// Creates or truncates `url`.
    public init(url: URL) throws {
        self.url = url
        fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileIOError.cannotOpen(path: url.path, errno: errno) }
        buffer.reserveCapacity(bufferLimit)
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard fd >= 0 else { throw FileIOError.closed(path: url.path) }
        if bytes.count >= bufferLimit {
            try flush()
            try writeAll(bytes)
        } else {
            if buffer.count + bytes.count > bufferLimit { try flush() }
            buffer.append(contentsOf: bytes)
        }
        position += bytes.count
    }

    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Appends `n` zero bytes.
    public func writeZeros(_ n: Int) throws {
        guard n > 0 else { return }
        try write([UInt8](repeating: 0, count: n))
    }

    public func flush() throws {
        guard fd >= 0 else { throw FileIOError.closed(path: url.path) }
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { try writeAll($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Flushes, optionally fsyncs, and closes.
    public func close(sync: Bool = false) throws {
        guard fd >= 0 else { return }
        try flush()
        if sync, fsync(fd) != 0 { throw FileIOError.syncFailed(path: url.path, errno: errno) }
        let r = Glibc.close(fd)
        fd = -1
        if r != 0 { throw FileIOError.syncFailed(path: url.path, errno: errno) }
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        guard var p = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let n = Glibc.write(fd, p, left)
            if n < 0 {
                if errno == EINTR { continue }
                throw FileIOError.writeFailed(path: url.path, errno: errno)
            }
            p += n
            left -= n
        }
    }

    deinit {
        if fd >= 0 { try? flush(); _ = Glibc.close(fd) }
    }
}
