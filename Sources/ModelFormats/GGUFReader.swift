import Foundation

// GGUF parsing. Checks run in file order; every read is bounds-checked, every count is
// capped by what the rest of the file could hold, and every problem is a GGUFError case.

/// A parsed GGUF file: header, metadata (in file order), tensor infos, data-section layout.
/// It holds no tensor bytes; `GGUFCheckpoint` maps the file and hands out views.
public struct GGUFFile: Sendable {
    public var version: UInt32
    /// Metadata in file order (the writer keeps this order).
    public var metadata: [GGUFKeyValue]
    public var tensors: [GGUFTensorInfo]
    /// `general.alignment`, or 32.
    public var alignment: Int
    /// Absolute offset of the data section (end of the tensor infos, padded to `alignment`).
    public var dataOffset: Int
    /// Total file size when parsed.
    public var fileSize: Int

    /// Longest string accepted (chat templates are kilobytes; tokens are bytes).
    public static let maxStringLength = 16 << 20
    /// Deepest array nesting accepted.
    public static let maxArrayDepth = 8

    /// Metadata as a dictionary.
    public var metadataByKey: [String: GGUFValue] {
        var d = [String: GGUFValue](minimumCapacity: metadata.count)
        for kv in metadata { d[kv.key] = kv.value }
        return d
    }

    public subscript(key: String) -> GGUFValue? { metadata.first { $0.key == key }?.value }

    /// Parses the file at `url` (memory-mapped; only the header pages are touched).
    public init(url: URL) throws {
        let m = try MappedFile(url: url)
        try self.init(bytes: m.bytes)
    }

    /// Parses a GGUF image. `bytes` is the whole file (tensor ranges are checked against it).
    public init(bytes: UnsafeRawBufferPointer) throws {
        var p = GGUFParser(bytes: bytes)
        self = try p.parse()
    }

    init(version: UInt32, metadata: [GGUFKeyValue], tensors: [GGUFTensorInfo], alignment: Int, dataOffset: Int, fileSize: Int) {
        self.version = version; self.metadata = metadata; self.tensors = tensors
        self.alignment = alignment; self.dataOffset = dataOffset; self.fileSize = fileSize
    }

    /// End of the last tensor's bytes relative to the data section (0 without tensors).
    public var dataEnd: Int { tensors.map { Int($0.offset) + $0.byteCount }.max() ?? 0 }
}

struct GGUFParser {
    var r: ByteReader
    init(bytes: UnsafeRawBufferPointer) { r = ByteReader(bytes) }

    private mutating func read<T: FixedWidthInteger>(_ t: T.Type, _ what: @autoclosure () -> String) throws -> T {
        do { return try r.read(t) } catch let e as ByteReaderError {
            throw GGUFError.truncated(what: what(), offset: e.offset, needed: e.needed, available: e.available)
        }
    }

    private mutating func readString(_ what: @autoclosure () -> String) throws -> String {
        let len = try read(UInt64.self, "length of " + what())
        let limit = min(GGUFFile.maxStringLength, r.remaining)
        guard len <= UInt64(limit) else {
            if len > UInt64(GGUFFile.maxStringLength) {
                throw GGUFError.stringTooLong(what: what(), length: len, max: GGUFFile.maxStringLength)
            }
            throw GGUFError.truncated(what: what(), offset: r.offset, needed: Int(len), available: r.remaining)
        }
        let start = r.offset
        let raw = try r.readBytes(Int(len))
        guard let s = String(validating: raw, as: UTF8.self) else {
            throw GGUFError.invalidUTF8(what: what(), offset: start)
        }
        return s
    }

    /// Minimum bytes one value of `type` occupies (for capping array counts).
    private func minSize(_ type: GGUFValueType) -> Int {
        switch type {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64, .string: return 8
        case .array: return 12
        }
    }

    private mutating func readValue(_ type: GGUFValueType, key: String, depth: Int) throws -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try read(UInt8.self, "value of \(key)"))
        case .int8: return .int8(try read(Int8.self, "value of \(key)"))
        case .uint16: return .uint16(try read(UInt16.self, "value of \(key)"))
        case .int16: return .int16(try read(Int16.self, "value of \(key)"))
        case .uint32: return .uint32(try read(UInt32.self, "value of \(key)"))
        case .int32: return .int32(try read(Int32.self, "value of \(key)"))
        case .uint64: return .uint64(try read(UInt64.self, "value of \(key)"))
        case .int64: return .int64(try read(Int64.self, "value of \(key)"))
        case .float32: return .float32(Float(bitPattern: try read(UInt32.self, "value of \(key)")))
        case .float64: return .float64(Double(bitPattern: try read(UInt64.self, "value of \(key)")))
        case .bool:
            let b = try read(UInt8.self, "value of \(key)")
            guard b <= 1 else { throw GGUFError.badMetadataValue(key: key, expected: "bool 0 or 1, found \(b)") }
            return .bool(b == 1)
        case .string: return .string(try readString("string value of \(key)"))
        case .array:
            guard depth < GGUFFile.maxArrayDepth else { throw GGUFError.nestingTooDeep(key: key, depth: GGUFFile.maxArrayDepth) }
            let rawType = try read(UInt32.self, "array element type of \(key)")
            guard let et = GGUFValueType(rawValue: rawType) else { throw GGUFError.unknownValueType(key: key, raw: rawType) }
            let count = try read(UInt64.self, "array length of \(key)")
            let maxCount = r.remaining / minSize(et)
            guard count <= UInt64(maxCount) else {
                throw GGUFError.absurdCount(what: "array length of \(key)", count: count, max: maxCount)
            }
            var a: [GGUFValue] = []
            a.reserveCapacity(Int(count))
            for _ in 0..<Int(count) { a.append(try readValue(et, key: key, depth: depth + 1)) }
            return .array(et, a)
        }
    }

    mutating func parse() throws -> GGUFFile {
        let size = r.bytes.count
        guard size >= 24 else {
            if size >= 4 {
                let m = Array(r.bytes[0..<4])
                if m != Array("GGUF".utf8) { throw GGUFError.badMagic(found: m) }
            }
            throw GGUFError.fileTooSmall(size: size)
        }
        let magic = try read(UInt32.self, "magic")
        guard magic == ggufMagic else { throw GGUFError.badMagic(found: Array(r.bytes[0..<4])) }
        let version = try read(UInt32.self, "version")
        guard version == 2 || version == 3 else { throw GGUFError.unsupportedVersion(version) }
        let tensorCount = try read(UInt64.self, "tensor count")
        let kvCount = try read(UInt64.self, "metadata count")
        // A kv is at least key length (8) + type (4) + 1 byte; a tensor info at least 8+4+8+4+8.
        let maxKV = r.remaining / 13
        guard kvCount <= UInt64(maxKV) else { throw GGUFError.absurdCount(what: "metadata count", count: kvCount, max: maxKV) }

        var metadata: [GGUFKeyValue] = []
        metadata.reserveCapacity(Int(kvCount))
        var seenKeys = Set<String>()
        var alignment = ggufDefaultAlignment
        for i in 0..<Int(kvCount) {
            let key = try readString("key of metadata entry \(i)")
            guard seenKeys.insert(key).inserted else { throw GGUFError.duplicateKey(key) }
            let rawType = try read(UInt32.self, "value type of \(key)")
            guard let t = GGUFValueType(rawValue: rawType) else { throw GGUFError.unknownValueType(key: key, raw: rawType) }
            let v = try readValue(t, key: key, depth: 0)
            if key == "general.alignment" {
                guard case .uint32(let a) = v else { throw GGUFError.invalidAlignment("has type \(v.type), expected uint32") }
                guard a > 0, a & (a - 1) == 0 else { throw GGUFError.invalidAlignment("is \(a), not a power of two") }
                alignment = Int(a)
            }
            metadata.append(GGUFKeyValue(key: key, value: v))
        }

        let maxTensors = r.remaining / 32
        guard tensorCount <= UInt64(maxTensors) else { throw GGUFError.absurdCount(what: "tensor count", count: tensorCount, max: maxTensors) }
        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(Int(tensorCount))
        var seenNames = Set<String>()
        for i in 0..<Int(tensorCount) {
            let name = try readString("name of tensor \(i)")
            guard seenNames.insert(name).inserted else { throw GGUFError.duplicateTensorName(name) }
            let nDims = try read(UInt32.self, "dimension count of \(name)")
            guard nDims >= 1, nDims <= UInt32(ggufMaxDimensions) else {
                throw GGUFError.invalidDimensionCount(tensor: name, count: nDims)
            }
            var ne: [UInt64] = []
            for d in 0..<Int(nDims) { ne.append(try read(UInt64.self, "dimension \(d) of \(name)")) }
            let rawType = try read(UInt32.self, "type of \(name)")
            let offset = try read(UInt64.self, "data offset of \(name)")
            guard let type = GGMLType(rawValue: rawType) else { throw GGUFError.unknownTensorType(tensor: name, raw: rawType) }
            guard let dtype = type.dtype else { throw GGUFError.unsupportedTensorType(tensor: name, type: type.name) }
            guard ne.allSatisfy({ $0 <= UInt64(Int64.max) }),
                  let n = elementCount(ne.map { Int($0) }) else { throw GGUFError.invalidShape(tensor: name, ne: ne) }
            guard ne[0] % UInt64(dtype.blockElements) == 0 else {
                throw GGUFError.rowNotBlockMultiple(tensor: name, type: type.name, rowLength: ne[0], blockElements: dtype.blockElements)
            }
            guard dtype.byteCount(elements: n) != nil else { throw GGUFError.invalidShape(tensor: name, ne: ne) }
            tensors.append(GGUFTensorInfo(name: name, ne: ne, type: type, offset: offset))
        }

        let headerEnd = r.offset
        let dataOffset = alignUp(headerEnd, alignment)
        guard dataOffset <= size else {
            throw GGUFError.truncated(what: "padding before the data section", offset: headerEnd, needed: dataOffset - headerEnd, available: size - headerEnd)
        }
        let dataSize = size - dataOffset
        for t in tensors {
            guard t.offset % UInt64(alignment) == 0 else {
                throw GGUFError.misalignedTensor(tensor: t.name, offset: t.offset, alignment: alignment)
            }
            guard t.offset <= UInt64(dataSize), t.byteCount <= dataSize - Int(t.offset) else {
                throw GGUFError.tensorOutOfRange(tensor: t.name, offset: t.offset, byteCount: t.byteCount, dataSize: dataSize)
            }
        }
        // Sorted by (offset, file position), so the earlier of two overlapping tensors comes first.
        let order = tensors.indices.filter { tensors[$0].byteCount > 0 }
            .sorted { (tensors[$0].offset, $0) < (tensors[$1].offset, $1) }
        var end = 0, last = -1
        for i in order {
            let t = tensors[i]
            if last >= 0, Int(t.offset) < end { throw GGUFError.overlappingTensors(tensors[last].name, t.name) }
            if Int(t.offset) + t.byteCount > end { end = Int(t.offset) + t.byteCount; last = i }
        }
        return GGUFFile(version: version, metadata: metadata, tensors: tensors, alignment: alignment,
                        dataOffset: dataOffset, fileSize: size)
    }
}
