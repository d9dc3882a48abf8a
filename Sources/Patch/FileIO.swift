// POSIX file access with every error checked: positioned reads and writes that finish
// partial transfers, fsync of files and directories, advisory locks.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

final class FileDescriptor {
    let fd: Int32
    let path: String

    init(_ path: String, flags: Int32, mode: mode_t = 0o644) throws {
        let fd = open(path, flags | O_CLOEXEC, mode)
        guard fd >= 0 else { throw PatchError.io(path: path, operation: "cannot open", errno: errno) }
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    var size: Int {
        get throws {
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw PatchError.io(path: path, operation: "cannot stat", errno: errno) }
            return Int(st.st_size)
        }
    }

    /// Reads exactly `buf.count` bytes at `offset`.
    func read(into buf: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < buf.count {
            let n = pread(fd, buf.baseAddress! + done, buf.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw PatchError.io(path: path, operation: "cannot read", errno: errno)
            }
            if n == 0 { throw PatchError.shortRead(path: path, offset: offset, wanted: buf.count, got: done) }
            done += n
        }
    }

    func read(count: Int, at offset: Int) throws -> [UInt8] {
        var b = [UInt8](repeating: 0, count: count)
        try b.withUnsafeMutableBytes { try read(into: $0, at: offset) }
        return b
    }

    /// Writes all of `buf` at `offset`.
    func write(_ buf: UnsafeRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < buf.count {
            let n = pwrite(fd, buf.baseAddress! + done, buf.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw PatchError.io(path: path, operation: "cannot write", errno: errno)
            }
            done += n
        }
    }

    func write(_ bytes: [UInt8], at offset: Int) throws {
        try bytes.withUnsafeBytes { try write($0, at: offset) }
    }

    func sync() throws {
        guard fsync(fd) == 0 else { throw PatchError.io(path: path, operation: "cannot fsync", errno: errno) }
    }

    /// Exclusive advisory lock, released when the descriptor closes (or the process dies).
    func lockExclusive() throws {
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if errno == EWOULDBLOCK { throw PatchError.locked(path: path) }
            throw PatchError.io(path: path, operation: "cannot lock", errno: errno)
        }
    }
}

enum FileIO {
    /// fsync a directory so that a create, rename or unlink in it is durable.
    static func syncDirectory(_ url: URL) throws {
        let d = try FileDescriptor(url.path, flags: O_RDONLY | O_DIRECTORY)
        try d.sync()
    }

    static func exists(_ url: URL) -> Bool { access(url.path, F_OK) == 0 }

    static func unlink(_ url: URL) throws {
        if Glibc.unlink(url.path) != 0 && errno != ENOENT {
            throw PatchError.io(path: url.path, operation: "cannot delete", errno: errno)
        }
    }

    static func rename(_ from: URL, _ to: URL) throws {
        if Glibc.rename(from.path, to.path) != 0 {
            throw PatchError.io(path: to.path, operation: "cannot rename \(from.lastPathComponent) to", errno: errno)
        }
    }

    /// Copies a whole file in 8 MiB pieces, then fsyncs the copy.
    static func copyFile(_ from: URL, to: URL) throws {
        let src = try FileDescriptor(from.path, flags: O_RDONLY)
        let dst = try FileDescriptor(to.path, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o644)
        let total = try src.size
        var done = 0
        do {
            var buf = [UInt8](repeating: 0, count: 8 << 20)
            while done < total {
                let n = min(buf.count, total - done)
                try buf.withUnsafeMutableBytes { b in
                    let part = UnsafeMutableRawBufferPointer(rebasing: b[0..<n])
                    try src.read(into: part, at: done)
                    try dst.write(UnsafeRawBufferPointer(part), at: done)
                }
                done += n
            }
        }
        try dst.sync()
    }
}

/// Test hook: `LFTF_PATCH_CRASH_AT=N` kills the process with SIGKILL at the N-th crash point
/// (1-based), and `LFTF_PATCH_SLOW_MS=M` sleeps M ms at each one, so tests can interrupt apply,
/// revert and recovery anywhere. `LFTF_PATCH_CRASH_LIST=1` prints each point's name to stderr.
enum CrashPoints {
    nonisolated(unsafe) static var counter = 0
    static let crashAt: Int? = ProcessInfo.processInfo.environment["LFTF_PATCH_CRASH_AT"].flatMap(Int.init)
    static let slowMicros: UInt32 = ProcessInfo.processInfo.environment["LFTF_PATCH_SLOW_MS"].flatMap(UInt32.init).map { $0 * 1000 } ?? 0
    static let list = ProcessInfo.processInfo.environment["LFTF_PATCH_CRASH_LIST"] != nil
    static let lock = NSLock()

    static func hit(_ name: @autoclosure () -> String) {
        guard crashAt != nil || slowMicros > 0 || list else { return }
        lock.lock()
        counter += 1
        let n = counter
        lock.unlock()
        if list { FileHandle.standardError.write("crash point \(n): \(name())\n".data(using: .utf8)!) }
        if slowMicros > 0 { usleep(slowMicros) }
        if n == crashAt { kill(getpid(), SIGKILL) }
    }
}
