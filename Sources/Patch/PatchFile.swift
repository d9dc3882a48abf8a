// Reading and writing the .lftfpatch container (Formats/lftfpatch.md):
//
//   magic[8] "LFTFPTCH" | version u32 | reserved u32 | manifest_size u64 | data_size u64
//   manifest (JSON) | data (frames) | sha256[32] of everything before it
//
// A PatchFile is only constructed after the size, the checksum and every manifest field have
// been checked, so nothing downstream can act on a corrupt patch.
import Crypto
import Foundation
import ModelFormats

public enum PatchFormat {
    public static let magic: [UInt8] = Array("LFTFPTCH".utf8)
    /// The format major version this build reads and writes.
    public static let version: UInt32 = 1
    public static let headerSize = 32
    public static let checksumSize = 32
    /// Manifest sizes above this are refused before allocating.
    public static let maxManifestSize = 256 << 20
    /// Features (manifest `requires`) this reader implements.
    public static let knownFeatures: Set<String> = []
    /// Default elements per frame.
    public static let defaultChunkElements = 1 << 20
    public static let writer = "lftf-patch 0.1.0"
}

public final class PatchFile {
    public let url: URL
    public let manifest: PatchManifest
    /// Bytes of the whole file.
    public let size: Int
    /// The file's trailing SHA-256 (lowercase hex): a patch's identity.
    public let checksum: String
    let file: FileDescriptor
    let dataStart: Int
    let dataSize: Int

    public init(url: URL) throws {
        self.url = url
        var clock = PhaseClock()
        defer { clock.lap("patch opened and its SHA-256 checked") }
        let path = url.path
        let file = try FileDescriptor(path, flags: O_RDONLY)
        self.file = file
        let size = try file.size
        self.size = size
        guard size >= PatchFormat.headerSize else {
            if size >= 8, try file.read(count: 8, at: 0) != PatchFormat.magic { throw PatchError.notAPatch(path: path) }
            throw PatchError.sizeMismatch(path: path, expected: PatchFormat.headerSize + PatchFormat.checksumSize, actual: size)
        }
        let h = try file.read(count: PatchFormat.headerSize, at: 0)
        guard Array(h[0..<8]) == PatchFormat.magic else { throw PatchError.notAPatch(path: path) }
        func u32(_ o: Int) -> UInt32 { h[o..<o + 4].reversed().reduce(0) { $0 << 8 | UInt32($1) } }
        func u64(_ o: Int) -> UInt64 { h[o..<o + 8].reversed().reduce(0) { $0 << 8 | UInt64($1) } }
        let version = u32(8)
        guard version != 0 else { throw PatchError.malformedManifest("format version 0") }
        guard version <= PatchFormat.version else {
            throw PatchError.unsupportedVersion(found: version, supported: PatchFormat.version)
        }
        guard u32(12) == 0 else { throw PatchError.unsupportedFeature("reserved header bits \(u32(12))") }
        let m = u64(16), d = u64(24)
        guard m <= UInt64(PatchFormat.maxManifestSize), d <= UInt64(Int.max / 2) else {
            throw PatchError.sizeMismatch(path: path, expected: Int.max, actual: size)
        }
        let expected = PatchFormat.headerSize + Int(m) + Int(d) + PatchFormat.checksumSize
        guard expected == size else { throw PatchError.sizeMismatch(path: path, expected: expected, actual: size) }

        // The checksum over everything before it, streamed.
        var hasher = SHA256()
        var buf = [UInt8](repeating: 0, count: 4 << 20)
        var pos = 0
        let end = size - PatchFormat.checksumSize
        while pos < end {
            let n = min(buf.count, end - pos)
            try buf.withUnsafeMutableBytes { b in
                let part = UnsafeMutableRawBufferPointer(rebasing: b[0..<n])
                try file.read(into: part, at: pos)
                hasher.update(bufferPointer: UnsafeRawBufferPointer(part))
            }
            pos += n
        }
        let stored = try file.read(count: PatchFormat.checksumSize, at: end)
        guard Array(hasher.finalize()) == stored else { throw PatchError.checksumMismatch(path: path) }
        checksum = hex(stored)

        let json = try file.read(count: Int(m), at: PatchFormat.headerSize)
        let manifest: PatchManifest
        do {
            manifest = try JSONDecoder().decode(PatchManifest.self, from: Data(json))
        } catch let e as DecodingError {
            throw PatchError.malformedManifest(Self.describe(e))
        } catch {
            throw PatchError.malformedManifest("\(error)")
        }
        dataStart = PatchFormat.headerSize + Int(m)
        dataSize = Int(d)
        try Self.validate(manifest, version: version, dataSize: dataSize)
        self.manifest = manifest
    }

    private static func describe(_ e: DecodingError) -> String {
        func path(_ c: DecodingError.Context) -> String { c.codingPath.map(\.stringValue).joined(separator: ".") }
        switch e {
        case .keyNotFound(let k, let c): return "missing key '\(k.stringValue)' at '\(path(c))'"
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c):
            return "bad value at '\(path(c))': \(c.debugDescription)"
        @unknown default: return "\(e)"
        }
    }

    /// A tensor name is used only to look tensors up, but it is printed and may end up in
    /// file names of other tools: refuse anything path-like or unprintable.
    public static func isSafeName(_ n: String) -> Bool {
        guard !n.isEmpty, n.utf8.count <= 512, !n.contains(".."), n != "." else { return false }
        for u in n.unicodeScalars where u == "/" || u == "\\" || u.value < 0x20 || u.value == 0x7F { return false }
        return true
    }

    static func validate(_ m: PatchManifest, version: UInt32, dataSize: Int) throws {
        guard m.formatVersion == Int(version) else {
            throw PatchError.malformedManifest("manifest says format_version \(m.formatVersion), header says \(version)")
        }
        for f in m.requires where !PatchFormat.knownFeatures.contains(f) { throw PatchError.unsupportedFeature(f) }
        guard !m.tensors.isEmpty else { throw PatchError.malformedManifest("no tensors") }
        var seen = Set<String>()
        for t in m.tensors {
            guard isSafeName(t.name) else { throw PatchError.unsafeName(t.name) }
            guard seen.insert(t.name).inserted else { throw PatchError.malformedManifest("tensor \(t.name) listed twice") }
            for s in [t.base, t.patched] {
                guard s.byteCount != nil, s.sha256.count == 64, s.sha256.allSatisfy(\.isHexDigit) else {
                    throw PatchError.malformedManifest("tensor \(t.name): bad dtype/shape/sha256")
                }
            }
            try validate(t.forward, target: t.patched, source: t.base, tensor: t.name, dataSize: dataSize)
            if let r = t.reverse {
                try validate(r, target: t.base, source: t.patched, tensor: t.name, dataSize: dataSize)
            } else if !t.forward.isReversible {
                throw PatchError.malformedManifest("tensor \(t.name): no reverse stream, and '\(t.forward.encoding)' cannot be reversed")
            }
        }
    }

    static func validate(_ s: TensorStream, target: TensorState, source: TensorState, tensor: String, dataSize: Int) throws {
        guard let e = DeltaEncoding(rawValue: s.encoding) else {
            throw PatchError.unsupportedEncoding(tensor: tensor, encoding: s.encoding)
        }
        guard DeltaCodec.supports(e, target.dtype) else {
            throw PatchError.malformedManifest("tensor \(tensor): encoding \(s.encoding) cannot hold \(target.dtype.rawValue)")
        }
        if e == .floatRansDequant {
            guard QuantLayout(source.dtype) != nil, source.shape == target.shape, s.chunkElements % 32 == 0 else {
                throw PatchError.malformedManifest("tensor \(tensor): float-rans-dequant needs a Q4_0/Q4_1/Q8_0 base of the same shape")
            }
        } else if e == .quantDiffRequant {
            guard FloatLayout(source.dtype) != nil, source.shape == target.shape, s.chunkElements % 32 == 0 else {
                throw PatchError.malformedManifest("tensor \(tensor): quant-diff-requant needs a BF16/F16/F32 source of the same shape")
            }
        } else if e.needsSource {
            guard source.dtype == target.dtype, source.shape == target.shape else {
                throw PatchError.malformedManifest("tensor \(tensor): \(s.encoding) needs equal dtypes and shapes")
            }
        }
        let n = ModelFormats.elementCount(target.shape) ?? 0
        guard s.chunkElements > 0, s.chunkElements % target.dtype.blockElements == 0 else {
            throw PatchError.malformedManifest("tensor \(tensor): chunk_elements \(s.chunkElements)")
        }
        let frames = (n + s.chunkElements - 1) / s.chunkElements
        guard s.frameSizes.count == frames else {
            throw PatchError.malformedManifest("tensor \(tensor): \(s.frameSizes.count) frames, expected \(frames)")
        }
        var end = s.offset
        guard s.offset >= 0 else { throw PatchError.malformedManifest("tensor \(tensor): negative offset") }
        for f in s.frameSizes {
            guard f > 0 else { throw PatchError.malformedManifest("tensor \(tensor): empty frame") }
            let (r, o) = end.addingReportingOverflow(f)
            guard !o, r <= dataSize else {
                throw PatchError.malformedManifest("tensor \(tensor): frames extend past the data section")
            }
            end = r
        }
    }

    // MARK: Frames

    /// Frame `i` of a stream: (compressed bytes, first element, element count).
    func frame(_ s: TensorStream, _ i: Int, elements n: Int) throws -> (bytes: [UInt8], first: Int, count: Int) {
        var off = s.offset
        for k in 0..<i { off += s.frameSizes[k] }
        let first = i * s.chunkElements
        return (try file.read(count: s.frameSizes[i], at: dataStart + off), first, min(s.chunkElements, n - first))
    }

    // MARK: Writing

    /// Writes a patch atomically: a temporary file next to `url`, fsync, rename.
    static func write(_ manifest: PatchManifest, data: [[UInt8]], to url: URL) throws {
        let bytes = try serialize(manifest, data: data)
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        try? FileIO.unlink(tmp)
        do {
            let f = try FileDescriptor(tmp.path, flags: O_WRONLY | O_CREAT | O_EXCL)
            try f.write(bytes, at: 0)
            try f.sync()
            try FileIO.rename(tmp, url)
        } catch {
            try? FileIO.unlink(tmp)
            throw error
        }
    }

    static func serialize(_ manifest: PatchManifest, data: [[UInt8]]) throws -> [UInt8] {
        let json = try manifest.encoded()
        let dataSize = data.reduce(0) { $0 + $1.count }
        var out = [UInt8]()
        out.reserveCapacity(PatchFormat.headerSize + json.count + dataSize + PatchFormat.checksumSize)
        out += PatchFormat.magic
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        put(UInt32(manifest.formatVersion)); put(UInt32(0)); put(UInt64(json.count)); put(UInt64(dataSize))
        out += json
        for d in data { out += d }
        out += Array(SHA256.hash(data: out))
        return out
    }
}

extension TensorStream {
    /// Decoding in reverse is possible: same dtype and shape on both sides and a source-based encoding.
    var isReversible: Bool { DeltaEncoding(rawValue: encoding)?.decodesBackwards ?? false }
}
