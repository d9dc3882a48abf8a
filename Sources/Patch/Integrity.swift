// `verify MODEL` without a patch: the checkpoint's own integrity. Safetensors and GGUF carry no
// checksums, so this checks what can be checked: every tensor's size agrees with its dtype and
// shape, lies inside its file and overlaps no other; every byte can be read; float tensors hold
// no NaN or infinity. It also prints the fingerprint patches are made against.
import Foundation
import ModelFormats

public struct IntegrityReport: Codable, Sendable {
    public struct FileEntry: Codable, Sendable { public var name: String; public var size: Int }
    public var format: CheckpointFormat
    public var architecture: String
    public var tensorCount: Int
    public var files: [FileEntry]
    public var fingerprint: String
    /// Tensors holding NaN or ±infinity, with the count.
    public var nonFinite: [String: Int]
    /// Everything found wrong; empty = intact.
    public var problems: [String]
    public var ok: Bool { problems.isEmpty }
}

public enum Integrity {
    public static func check(_ ckpt: Checkpoint, progress: ((String) -> Void)? = nil) throws -> IntegrityReport {
        var problems: [String] = []
        let fds = try ckpt.files.map { try FileDescriptor($0.path, flags: O_RDONLY) }
        let sizes = try fds.map { try $0.size }
        var byFile: [Int: [TensorInfo]] = [:]
        for t in ckpt.tensors {
            guard t.fileIndex >= 0, t.fileIndex < fds.count else { problems.append("\(t.name): no file \(t.fileIndex)"); continue }
            if t.dtype.byteCount(elements: t.elementCount) != t.byteCount {
                problems.append("\(t.name): \(t.byteCount) bytes do not hold \(t.shape) as \(t.dtype.rawValue)")
            }
            if t.offset < 0 || t.offset + t.byteCount > sizes[t.fileIndex] {
                problems.append("\(t.name): bytes \(t.offset)..<\(t.offset + t.byteCount) extend past the end of \(ckpt.files[t.fileIndex].lastPathComponent) (\(sizes[t.fileIndex]) bytes)")
            }
            byFile[t.fileIndex, default: []].append(t)
        }
        for (f, ts) in byFile {
            let s = ts.sorted { $0.offset < $1.offset }
            for (a, b) in zip(s, s.dropFirst()) where a.offset + a.byteCount > b.offset {
                problems.append("\(a.name) and \(b.name) overlap in \(ckpt.files[f].lastPathComponent)")
            }
        }
        // Read everything; count non-finite floats.
        var nonFinite: [String: Int] = [:]
        var buf = [UInt8](repeating: 0, count: 8 << 20)
        var done = 0
        let total = ckpt.tensors.reduce(0) { $0 + $1.byteCount }
        var lastReport = Date()
        for t in ckpt.tensors where problems.isEmpty {
            let w = t.dtype.blockBytes
            var pos = 0, bad = 0
            while pos < t.byteCount {
                let n = min(buf.count - buf.count % 4, t.byteCount - pos)
                try buf.withUnsafeMutableBytes { b in
                    let part = UnsafeMutableRawBufferPointer(rebasing: b[0..<n])
                    try fds[t.fileIndex].read(into: part, at: t.offset + pos)
                    switch t.dtype {
                    case .bf16: for i in 0..<(n / w) { let v = part.load(fromByteOffset: 2 * i, as: UInt16.self); if v & 0x7F80 == 0x7F80 { bad += 1 } }
                    case .f16: for i in 0..<(n / w) { let v = part.load(fromByteOffset: 2 * i, as: UInt16.self); if v & 0x7C00 == 0x7C00 { bad += 1 } }
                    case .f32: for i in 0..<(n / w) { let v = part.load(fromByteOffset: 4 * i, as: UInt32.self); if v & 0x7F80_0000 == 0x7F80_0000 { bad += 1 } }
                    default: break
                    }
                }
                pos += n; done += n
                if let progress, Date().timeIntervalSince(lastReport) > 2 {
                    progress("read \(done >> 20) of \(total >> 20) MiB"); lastReport = Date()
                }
            }
            if bad > 0 { nonFinite[t.name] = bad; problems.append("\(t.name): \(bad) NaN or infinite values") }
        }
        return IntegrityReport(format: ckpt.format, architecture: ckpt.config.architecture, tensorCount: ckpt.tensors.count,
                               files: zip(ckpt.files, sizes).map { .init(name: $0.lastPathComponent, size: $1) },
                               fingerprint: try Fingerprint.of(ckpt), nonFinite: nonFinite, problems: problems)
    }
}
