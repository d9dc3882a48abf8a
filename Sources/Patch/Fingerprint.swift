// The cheap whole-checkpoint fingerprint (Formats/lftfpatch.md, "Fingerprint"): SHA-256 over
// the sorted tensor table and the first and last 4 KiB of every tensor. It reads about 8 KiB
// per tensor, so a 7B checkpoint is fingerprinted in milliseconds.
import Crypto
import Foundation
import ModelFormats

public enum Fingerprint {
    public static let sampleBytes = 4096

    struct Entry {
        var name: String
        var dtype: DType
        var shape: [Int]
        var byteCount: Int
        /// First min(n, 4096) bytes, then the last min(n, 4096) bytes.
        var head: [UInt8]
        var tail: [UInt8]
    }

    static func compute(_ entries: [Entry]) -> String {
        var h = SHA256()
        h.update(data: Array("lftf-fingerprint/1\n".utf8))
        for e in entries.sorted(by: { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }) {
            let line = "\(e.name)\t\(e.dtype.rawValue)\t\(e.shape.map(String.init).joined(separator: ","))\t\(e.byteCount)\n"
            h.update(data: Array(line.utf8))
            h.update(data: e.head)
            h.update(data: e.tail)
        }
        return hex(h.finalize())
    }

    static func entry(name: String, dtype: DType, shape: [Int], bytes: UnsafeRawBufferPointer) -> Entry {
        let n = bytes.count, s = min(n, sampleBytes)
        return Entry(name: name, dtype: dtype, shape: shape, byteCount: n,
                     head: Array(bytes[0..<s]), tail: Array(bytes[(n - s)..<n]))
    }

    static func entry(_ t: TensorInfo, in files: [FileDescriptor]) throws -> Entry {
        let n = t.byteCount, s = min(n, sampleBytes)
        let f = files[t.fileIndex]
        return Entry(name: t.name, dtype: t.dtype, shape: t.shape, byteCount: n,
                     head: try f.read(count: s, at: t.offset), tail: try f.read(count: s, at: t.offset + n - s))
    }

    /// The fingerprint of a checkpoint as it is on disk now.
    public static func of(_ checkpoint: Checkpoint) throws -> String {
        let files = try checkpoint.files.map { try FileDescriptor($0.path, flags: O_RDONLY) }
        return compute(try checkpoint.tensors.map { try entry($0, in: files) })
    }
}

func hex<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
    return String(decoding: out, as: UTF8.self)
}

func sha256Hex(_ bytes: UnsafeRawBufferPointer) -> String { hex(SHA256.hash(data: bytes)) }
