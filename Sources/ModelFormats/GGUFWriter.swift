import Foundation

// GGUF writing: a streaming writer (header first, then each tensor's bytes in order) and
// `GGUFFile.rewrite`, which copies a parsed file with optional replaced metadata or tensors.
// Layout follows ggml's gguf_write: header, tensor infos, zero padding to the alignment,
// then each tensor's bytes followed by zero padding to the alignment.
// An unchanged file rewritten keeps its metadata order, offsets and padding: byte-identical.

/// A tensor the writer will write.
public struct GGUFTensorDescriptor: Sendable, Equatable {
    public var name: String
    public var type: GGMLType
    /// ggml ne (innermost first).
    public var ne: [UInt64]
    /// Offset in the data section; nil places the tensor at the next aligned position.
    public var offset: UInt64?

    public init(name: String, type: GGMLType, ne: [UInt64], offset: UInt64? = nil) {
        self.name = name; self.type = type; self.ne = ne; self.offset = offset
    }

    /// From a row-major shape (outermost first), as `TensorInfo` has it.
    public init(name: String, dtype: DType, shape: [Int]) throws {
        guard let t = GGMLType(dtype) else { throw GGUFError.unsupportedTensorType(tensor: name, type: dtype.rawValue) }
        guard shape.allSatisfy({ $0 >= 0 }) else { throw GGUFError.invalidShape(tensor: name, ne: []) }
        self.init(name: name, type: t, ne: shape.reversed().map { UInt64($0) })
    }
}

/// Writes a GGUF file front to back: `init` writes the header and tensor infos, then call
/// `write(_:)` once per tensor in the order given, then `finish()`.
public final class GGUFStreamWriter {
    /// The planned tensor infos, with their data-section offsets.
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    /// Absolute offset of the data section.
    public let dataOffset: Int
    public var url: URL { out.url }
    private let out: OutputFile
    private var next = 0

    public init(url: URL, version: UInt32 = 3, metadata: [GGUFKeyValue], tensors specs: [GGUFTensorDescriptor]) throws {
        guard version == 2 || version == 3 else { throw GGUFError.unsupportedVersion(version) }
        var alignment = ggufDefaultAlignment
        var keys = Set<String>()
        for kv in metadata {
            guard keys.insert(kv.key).inserted else { throw GGUFError.duplicateKey(kv.key) }
            if kv.key == "general.alignment" {
                guard case .uint32(let a) = kv.value, a > 0, a & (a - 1) == 0 else {
                    throw GGUFError.invalidAlignment("must be a uint32 power of two, got \(kv.value)")
                }
                alignment = Int(a)
            }
            try GGUFStreamWriter.checkValue(kv.value, key: kv.key, depth: 0)
        }
        // Plan the layout.
        var planned: [GGUFTensorInfo] = []
        var names = Set<String>()
        var end = 0
        for s in specs {
            guard names.insert(s.name).inserted else { throw GGUFError.duplicateTensorName(s.name) }
            guard (1...ggufMaxDimensions).contains(s.ne.count) else { throw GGUFError.invalidDimensionCount(tensor: s.name, count: UInt32(s.ne.count)) }
            guard let dtype = s.type.dtype else { throw GGUFError.unsupportedTensorType(tensor: s.name, type: s.type.name) }
            guard s.ne.allSatisfy({ $0 <= UInt64(Int64.max) }), let n = elementCount(s.ne.map { Int($0) }),
                  let bytes = dtype.byteCount(elements: n) else {
                if s.ne[0] % UInt64(dtype.blockElements) != 0 {
                    throw GGUFError.rowNotBlockMultiple(tensor: s.name, type: s.type.name, rowLength: s.ne[0], blockElements: dtype.blockElements)
                }
                throw GGUFError.invalidShape(tensor: s.name, ne: s.ne)
            }
            guard s.ne[0] % UInt64(dtype.blockElements) == 0 else {
                throw GGUFError.rowNotBlockMultiple(tensor: s.name, type: s.type.name, rowLength: s.ne[0], blockElements: dtype.blockElements)
            }
            let offset: Int
            if let o = s.offset {
                guard o % UInt64(alignment) == 0 else { throw GGUFError.misalignedTensor(tensor: s.name, offset: o, alignment: alignment) }
                guard o >= UInt64(end), o <= UInt64(Int.max / 2) else {
                    throw GGUFError.writerMisuse("tensor \(s.name) at offset \(o) would overlap or precede the previous tensor (ending at \(end)); explicit offsets must increase")
                }
                offset = Int(o)
            } else {
                offset = alignUp(end, alignment)
            }
            end = alignUp(offset + bytes, alignment)
            planned.append(GGUFTensorInfo(name: s.name, ne: s.ne, type: s.type, offset: UInt64(offset)))
        }
        // Header.
        var h: [UInt8] = []
        h.reserveCapacity(1 << 16)
        GGUFEncoder.u32(ggufMagic, &h); GGUFEncoder.u32(version, &h)
        GGUFEncoder.u64(UInt64(planned.count), &h); GGUFEncoder.u64(UInt64(metadata.count), &h)
        for kv in metadata {
            GGUFEncoder.string(kv.key, &h)
            GGUFEncoder.u32(kv.value.type.rawValue, &h)
            GGUFEncoder.value(kv.value, &h)
        }
        for t in planned {
            GGUFEncoder.string(t.name, &h)
            GGUFEncoder.u32(UInt32(t.ne.count), &h)
            for d in t.ne { GGUFEncoder.u64(d, &h) }
            GGUFEncoder.u32(t.type.rawValue, &h)
            GGUFEncoder.u64(t.offset, &h)
        }
        let pad = alignUp(h.count, alignment) - h.count
        h.append(contentsOf: repeatElement(0, count: pad))
        self.tensors = planned
        self.alignment = alignment
        self.dataOffset = h.count
        out = try OutputFile(url: url)
        try out.write(h)
    }

    private static func checkValue(_ v: GGUFValue, key: String, depth: Int) throws {
        guard case .array(let et, let a) = v else { return }
        guard depth < GGUFFile.maxArrayDepth else { throw GGUFError.nestingTooDeep(key: key, depth: GGUFFile.maxArrayDepth) }
        for e in a {
            guard e.type == et else { throw GGUFError.writerMisuse("array \(key) declares \(et) elements but holds a \(e.type)") }
            try checkValue(e, key: key, depth: depth + 1)
        }
    }

    /// The next tensor to write, or nil when all are written.
    public var nextTensor: GGUFTensorInfo? { next < tensors.count ? tensors[next] : nil }

    /// Writes the next tensor's bytes (exactly its byte count) and the padding after it.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard next < tensors.count else { throw GGUFError.writerMisuse("more tensors written than the \(tensors.count) declared") }
        let t = tensors[next]
        guard bytes.count == t.byteCount else {
            throw GGUFError.writerMisuse("tensor \(t.name) needs \(t.byteCount) bytes, got \(bytes.count)")
        }
        let at = dataOffset + Int(t.offset)
        try out.writeZeros(at - out.position)
        try out.write(bytes)
        next += 1
    }

    public func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }

    /// Pads the end (unless `padEnd` is false), flushes and closes. Throws if tensors are missing.
    public func finish(padEnd: Bool = true, sync: Bool = false) throws {
        guard next == tensors.count else {
            throw GGUFError.writerMisuse("only \(next) of \(tensors.count) tensors written; next is \(tensors[next].name)")
        }
        if padEnd { try out.writeZeros(alignUp(out.position, alignment) - out.position) }
        try out.close(sync: sync)
    }
}

/// Little-endian GGUF serialization of header pieces.
enum GGUFEncoder {
    static func u8(_ v: UInt8, _ b: inout [UInt8]) { b.append(v) }
    static func u16(_ v: UInt16, _ b: inout [UInt8]) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
    static func u32(_ v: UInt32, _ b: inout [UInt8]) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
    static func u64(_ v: UInt64, _ b: inout [UInt8]) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
    static func string(_ s: String, _ b: inout [UInt8]) {
        var s = s
        s.withUTF8 { u in u64(UInt64(u.count), &b); b.append(contentsOf: u) }
    }
    static func value(_ v: GGUFValue, _ b: inout [UInt8]) {
        switch v {
        case .uint8(let x): u8(x, &b)
        case .int8(let x): u8(UInt8(bitPattern: x), &b)
        case .uint16(let x): u16(x, &b)
        case .int16(let x): u16(UInt16(bitPattern: x), &b)
        case .uint32(let x): u32(x, &b)
        case .int32(let x): u32(UInt32(bitPattern: x), &b)
        case .uint64(let x): u64(x, &b)
        case .int64(let x): u64(UInt64(bitPattern: x), &b)
        case .float32(let x): u32(x.bitPattern, &b)
        case .float64(let x): u64(x.bitPattern, &b)
        case .bool(let x): u8(x ? 1 : 0, &b)
        case .string(let s): string(s, &b)
        case .array(let et, let a):
            u32(et.rawValue, &b)
            u64(UInt64(a.count), &b)
            for e in a { value(e, &b) }
        }
    }
}

/// New bytes for one tensor in `GGUFFile.rewrite` (same name; the shape may not change, the type may).
public struct GGUFReplacement {
    public var type: GGMLType
    public var bytes: [UInt8]
    public init(type: GGMLType, bytes: [UInt8]) { self.type = type; self.bytes = bytes }
}

public extension GGUFFile {
    /// Writes `source` (an opened GGUF) to `url`, with `metadata` in place of the original
    /// metadata if given, and `replacing` tensors (by name) with new bytes/types. While every
    /// tensor keeps its size the original offsets are kept, so an unchanged file comes out
    /// byte-identical; otherwise tensors are laid out afresh in the original order.
    static func rewrite(_ source: GGUFCheckpoint, to url: URL, metadata: [GGUFKeyValue]? = nil,
                        replacing: [String: GGUFReplacement] = [:]) throws {
        try rewrite(source.file, from: source.mapped.bytes, to: url, metadata: metadata, replacing: replacing)
    }

    /// The same from a parsed file and the whole file's bytes (`bytes` must be the image `file` was parsed from).
    static func rewrite(_ file: GGUFFile, from bytes: UnsafeRawBufferPointer, to url: URL, metadata: [GGUFKeyValue]? = nil,
                        replacing: [String: GGUFReplacement] = [:]) throws {
        guard bytes.count == file.fileSize else { throw GGUFError.writerMisuse("source image has \(bytes.count) bytes, the parsed file \(file.fileSize)") }
        let names = Set(file.tensors.map(\.name))
        for name in replacing.keys where !names.contains(name) { throw GGUFError.tensorNotFound(name) }
        var specs: [GGUFTensorDescriptor] = []
        var sameSizes = true
        for t in file.tensors {
            var d = GGUFTensorDescriptor(name: t.name, type: t.type, ne: t.ne, offset: t.offset)
            if let r = replacing[t.name] {
                d.type = r.type
                guard let dt = r.type.dtype, let n = dt.byteCount(elements: t.elementCount), n == r.bytes.count else {
                    throw GGUFError.writerMisuse("replacement for \(t.name) (\(r.type.name), \(r.bytes.count) bytes) does not match its shape \(t.shape)")
                }
                if n != t.byteCount { sameSizes = false }
            }
            specs.append(d)
        }
        // Offsets are kept only if they are increasing in file order (the writer is sequential).
        let increasing = zip(file.tensors, file.tensors.dropFirst()).allSatisfy { $0.offset < $1.offset }
        if !sameSizes || !increasing { for i in specs.indices { specs[i].offset = nil } }
        let meta = metadata ?? file.metadata
        let w = try GGUFStreamWriter(url: url, version: file.version, metadata: meta, tensors: specs)
        for t in file.tensors {
            if let r = replacing[t.name] { try w.write(r.bytes) }
            else {
                let start = file.dataOffset + Int(t.offset)
                try w.write(UnsafeRawBufferPointer(rebasing: bytes[start..<(start + t.byteCount)]))
            }
        }
        // Keep an unpadded end if the original had one.
        let originalEnd = file.dataOffset + file.dataEnd
        let padEnd = !(metadata == nil && replacing.isEmpty && sameSizes && increasing && file.fileSize == originalEnd
                       && originalEnd % file.alignment != 0)
        try w.finish(padEnd: padEnd)
    }
}
