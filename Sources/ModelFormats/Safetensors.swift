import Foundation

// Safetensors (huggingface/safetensors, docs "Format"):
//
//   u64 LE   N                     header size in bytes
//   u8[N]    header                UTF-8 JSON object, padded at the end with spaces (0x20)
//                                  so that 8 + N is a multiple of 8
//   u8[...]  data                  tensor bytes; every tensor's [begin, end) is relative to
//                                  the first data byte; together they tile the data exactly
//
// header = { "__metadata__"?: {str: str}, NAME: {"dtype": D, "shape": [d0, ...],
//            "data_offsets": [begin, end]}, ... }
//
// Validation runs in file order (prefix, header bytes, JSON, each entry in key order, then
// the tiling of the data area) with overflow-checked arithmetic; the first problem found
// is thrown as its own `SafetensorsError` case.

/// Everything that can be wrong with a safetensors file, a shard index, or a write.
public enum SafetensorsError: Error, CustomStringConvertible, Equatable {
    /// The file is shorter than the 8-byte header-size prefix.
    case fileTooSmall(path: String, size: Int)
    /// The declared header size is below 2 (the smallest JSON object, `{}`).
    case headerTooSmall(path: String, declared: UInt64)
    /// The declared header size is above the 100 MB the reference implementation accepts.
    case headerTooLarge(path: String, declared: UInt64, limit: Int)
    /// 8 + declared header size is past the end of the file (truncated or not safetensors).
    case headerPastEndOfFile(path: String, declared: UInt64, fileSize: Int)
    /// The header bytes are not valid UTF-8.
    case headerNotUTF8(path: String)
    /// The header is not JSON; `detail` says where the parser stopped.
    case headerNotJSON(path: String, detail: String)
    /// The header is JSON but not an object.
    case headerNotObject(path: String)
    /// Two header entries share a name.
    case duplicateName(path: String, name: String)
    /// `__metadata__` is not an object of string values.
    case invalidMetadata(path: String, reason: String)
    /// A tensor entry lacks a field, has one of the wrong type, or has an unknown one.
    case invalidEntry(path: String, name: String, reason: String)
    /// A dtype this implementation does not know (or a GGUF quant type).
    case unknownDType(path: String, name: String, dtype: String)
    /// `data_offsets` has begin > end.
    case invalidOffsets(path: String, name: String, begin: Int, end: Int)
    /// Element count × dtype size overflows.
    case sizeOverflow(path: String, name: String, shape: [Int])
    /// shape × dtype size differs from end − begin.
    case sizeMismatch(path: String, name: String, shape: [Int], dtype: DType, expected: Int, actual: Int)
    /// Tensors do not tile the data area: a gap or an overlap before `name`.
    case offsetsNotContiguous(path: String, name: String, expectedBegin: Int, begin: Int)
    /// A tensor ends past the end of the file's data area.
    case dataPastEndOfFile(path: String, name: String, end: Int, dataSize: Int)
    /// The data area is longer than the tensors declare.
    case trailingBytes(path: String, dataEnd: Int, dataSize: Int)

    /// model.safetensors.index.json is not valid JSON.
    case indexNotJSON(path: String, detail: String)
    /// The index has no `weight_map` object, or a value is not a file name.
    case indexInvalid(path: String, reason: String)
    /// The index names a shard file that does not exist.
    case shardMissing(index: String, file: String)
    /// One tensor name is in two shards (or listed twice in the index with different files).
    case tensorInTwoShards(name: String, first: String, second: String)
    /// The index maps a tensor to a shard whose header does not have it.
    case tensorMissingFromShard(name: String, shard: String)
    /// A shard holds a tensor the index does not list.
    case tensorNotInIndex(name: String, shard: String)
    /// The directory has no model.safetensors, no index, and not exactly one *.safetensors.
    case noSafetensors(directory: String, reason: String)

    /// A write was given bytes that do not match the header it promised.
    case writeMismatch(path: String, reason: String)
    /// An operating-system error reading or writing.
    case io(path: String, reason: String)

    public var description: String {
        switch self {
        case let .fileTooSmall(p, size):
            return "\(p): \(size) bytes is too short for a safetensors file (needs at least the 8-byte header size)"
        case let .headerTooSmall(p, n):
            return "\(p): header size \(n) is too small for a JSON object; not a safetensors file?"
        case let .headerTooLarge(p, n, limit):
            return "\(p): header size \(n) exceeds the \(limit)-byte limit; not a safetensors file or corrupt"
        case let .headerPastEndOfFile(p, n, size):
            return "\(p): header size \(n) runs past the end of the \(size)-byte file; truncated?"
        case let .headerNotUTF8(p):
            return "\(p): header is not valid UTF-8"
        case let .headerNotJSON(p, d):
            return "\(p): header is not valid JSON (\(d))"
        case let .headerNotObject(p):
            return "\(p): header JSON is not an object"
        case let .duplicateName(p, n):
            return "\(p): tensor name \"\(n)\" appears twice in the header"
        case let .invalidMetadata(p, r):
            return "\(p): __metadata__ \(r)"
        case let .invalidEntry(p, n, r):
            return "\(p): tensor \"\(n)\": \(r)"
        case let .unknownDType(p, n, d):
            return "\(p): tensor \"\(n)\" has unknown dtype \"\(d)\" (supported: F64 F32 F16 BF16 F8_E4M3 F8_E5M2 I8..I64 U8..U64 BOOL)"
        case let .invalidOffsets(p, n, b, e):
            return "\(p): tensor \"\(n)\" has data_offsets [\(b), \(e)] with begin after end"
        case let .sizeOverflow(p, n, s):
            return "\(p): tensor \"\(n)\" shape \(s) is too large (size overflows)"
        case let .sizeMismatch(p, n, s, d, exp, act):
            return "\(p): tensor \"\(n)\" shape \(s) \(d.rawValue) needs \(exp) bytes but data_offsets give \(act)"
        case let .offsetsNotContiguous(p, n, exp, b):
            return "\(p): tensor \"\(n)\" begins at data offset \(b), expected \(exp) (\(b < exp ? "overlaps the previous tensor" : "gap after the previous tensor"))"
        case let .dataPastEndOfFile(p, n, e, size):
            return "\(p): tensor \"\(n)\" ends at data offset \(e), past the \(size)-byte data area; truncated?"
        case let .trailingBytes(p, e, size):
            return "\(p): tensors end at data offset \(e) but the data area has \(size) bytes"
        case let .indexNotJSON(p, d):
            return "\(p): not valid JSON (\(d))"
        case let .indexInvalid(p, r):
            return "\(p): \(r)"
        case let .shardMissing(i, f):
            return "\(i) names shard \(f), which does not exist"
        case let .tensorInTwoShards(n, a, b):
            return "tensor \"\(n)\" is in two shards: \(a) and \(b)"
        case let .tensorMissingFromShard(n, s):
            return "the index maps tensor \"\(n)\" to \(s), whose header does not have it"
        case let .tensorNotInIndex(n, s):
            return "\(s) holds tensor \"\(n)\", which the index does not list"
        case let .noSafetensors(d, r):
            return "\(d): \(r)"
        case let .writeMismatch(p, r):
            return "\(p): write does not match its header: \(r)"
        case let .io(p, r):
            return "\(p): \(r)"
        }
    }
}

/// The largest header the reference implementation reads (safetensors `MAX_HEADER_SIZE`).
public let safetensorsMaxHeaderSize = 100_000_000

public extension DType {
    /// The dtypes a safetensors file may hold (everything but GGUF quant blocks).
    var isSafetensorsType: Bool { !isQuantized }
}

// MARK: - Header

/// A parsed safetensors header: `__metadata__` and tensor entries in the header's key order.
public struct SafetensorsHeader: Equatable {
    public struct Entry: Equatable, Sendable {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        /// Byte range relative to the start of the data area.
        public var begin: Int
        public var end: Int
        public var byteCount: Int { end - begin }
        public init(name: String, dtype: DType, shape: [Int], begin: Int, end: Int) {
            self.name = name; self.dtype = dtype; self.shape = shape; self.begin = begin; self.end = end
        }
    }

    public struct MetadataItem: Equatable, Sendable {
        public var key: String
        public var value: String
        public init(_ key: String, _ value: String) { self.key = key; self.value = value }
    }

    /// `__metadata__` pairs in file order, or nil when the header has none.
    public var metadata: [MetadataItem]?
    /// Tensor entries in header key order.
    public var entries: [Entry]

    /// The header bytes exactly as read (JSON + padding) and what they parsed to, so that an
    /// unchanged header is written back byte for byte whatever its whitespace or key order.
    private var original: (bytes: [UInt8], metadata: [MetadataItem]?, entries: [Entry])?

    public static func == (a: SafetensorsHeader, b: SafetensorsHeader) -> Bool {
        a.metadata == b.metadata && a.entries == b.entries
    }

    /// A header laying out `tensors` contiguously in the order given.
    public init(metadata: [MetadataItem]?, tensors: [(name: String, dtype: DType, shape: [Int])]) throws {
        self.metadata = metadata
        var entries: [Entry] = []
        var offset = 0
        var seen = Set<String>()
        for t in tensors {
            guard t.dtype.isSafetensorsType else {
                throw SafetensorsError.unknownDType(path: "<new header>", name: t.name, dtype: t.dtype.rawValue)
            }
            guard seen.insert(t.name).inserted else { throw SafetensorsError.duplicateName(path: "<new header>", name: t.name) }
            guard let n = elementCount(t.shape), let bytes = t.dtype.byteCount(elements: n),
                  case let (end, o) = offset.addingReportingOverflow(bytes), !o else {
                throw SafetensorsError.sizeOverflow(path: "<new header>", name: t.name, shape: t.shape)
            }
            entries.append(Entry(name: t.name, dtype: t.dtype, shape: t.shape, begin: offset, end: end))
            offset = end
        }
        self.entries = entries
    }

    /// Bytes the data area must hold.
    public var dataSize: Int { entries.map(\.end).max() ?? 0 }

    /// Entries in data order (by begin offset, ties by end).
    public var entriesInDataOrder: [Entry] {
        entries.enumerated().sorted { ($0.element.begin, $0.element.end, $0.offset) < ($1.element.begin, $1.element.end, $1.offset) }.map(\.element)
    }

    /// The header bytes to write after the size prefix: the original bytes when nothing
    /// changed, otherwise compact JSON (`__metadata__` first, then entries in order, each
    /// `{"dtype":…,"shape":[…],"data_offsets":[b,e]}` as the reference writer does), padded
    /// with spaces so that 8 + size is a multiple of 8.
    public func encoded() -> [UInt8] {
        if let o = original, o.metadata == metadata, o.entries == entries { return o.bytes }
        var pairs: [(String, JSONValue)] = []
        if let metadata {
            pairs.append(("__metadata__", .object(metadata.map { ($0.key, .string($0.value)) })))
        }
        for e in entries {
            pairs.append((e.name, .object([
                ("dtype", .string(e.dtype.rawValue)),
                ("shape", .array(e.shape.map { .int(Int64($0)) })),
                ("data_offsets", .array([.int(Int64(e.begin)), .int(Int64(e.end))])),
            ])))
        }
        var bytes = JSONValue.object(pairs).encoded(.compact)
        let pad = (8 - bytes.count % 8) % 8
        bytes.append(contentsOf: repeatElement(0x20, count: pad))
        return bytes
    }

    /// Parses and validates a header. `bytes` is the N header bytes; `dataSize` is
    /// file size − 8 − N. `path` only labels errors.
    public static func parse(_ bytes: UnsafeRawBufferPointer, dataSize: Int, path: String) throws -> SafetensorsHeader {
        // 1. UTF-8, 2. JSON, 3. an object.
        guard String(validating: bytes, as: UTF8.self) != nil else { throw SafetensorsError.headerNotUTF8(path: path) }
        let json: JSONValue
        do { json = try parseJSON(bytes) } catch let e as JSONParseError {
            throw SafetensorsError.headerNotJSON(path: path, detail: e.description)
        }
        guard let pairs = json.objectPairs else { throw SafetensorsError.headerNotObject(path: path) }

        // 4. Each key in order: names unique, metadata strings, entries well-formed and sized.
        var seen = Set<String>()
        var metadata: [MetadataItem]? = nil
        var entries: [Entry] = []
        entries.reserveCapacity(pairs.count)
        for (name, value) in pairs {
            guard seen.insert(name).inserted else { throw SafetensorsError.duplicateName(path: path, name: name) }
            if name == "__metadata__" {
                guard let m = value.objectPairs else { throw SafetensorsError.invalidMetadata(path: path, reason: "is not an object") }
                var keys = Set<String>()
                metadata = try m.map { k, v in
                    guard keys.insert(k).inserted else { throw SafetensorsError.invalidMetadata(path: path, reason: "has key \"\(k)\" twice") }
                    guard let s = v.stringValue else { throw SafetensorsError.invalidMetadata(path: path, reason: "value of \"\(k)\" is not a string") }
                    return MetadataItem(k, s)
                }
                continue
            }
            entries.append(try parseEntry(name: name, value: value, path: path))
        }

        // 5. The entries tile [0, dataSize) exactly.
        let header = SafetensorsHeader(metadata: metadata, entries: entries,
                                       original: (Array(bytes), metadata, entries))
        var expected = 0
        for e in header.entriesInDataOrder {
            guard e.begin == expected else {
                throw SafetensorsError.offsetsNotContiguous(path: path, name: e.name, expectedBegin: expected, begin: e.begin)
            }
            guard e.end <= dataSize else {
                throw SafetensorsError.dataPastEndOfFile(path: path, name: e.name, end: e.end, dataSize: dataSize)
            }
            expected = e.end
        }
        guard expected == dataSize else { throw SafetensorsError.trailingBytes(path: path, dataEnd: expected, dataSize: dataSize) }
        return header
    }

    private init(metadata: [MetadataItem]?, entries: [Entry], original: (bytes: [UInt8], metadata: [MetadataItem]?, entries: [Entry])?) {
        self.metadata = metadata; self.entries = entries; self.original = original
    }

    private static func parseEntry(name: String, value: JSONValue, path: String) throws -> Entry {
        func bad(_ r: String) -> SafetensorsError { .invalidEntry(path: path, name: name, reason: r) }
        guard let fields = value.objectPairs else { throw bad("entry is not an object") }
        var dtypeText: String?, shapeJSON: [JSONValue]?, offsetsJSON: [JSONValue]?
        var seenFields = Set<String>()
        for (k, v) in fields {
            guard seenFields.insert(k).inserted else { throw bad("field \"\(k)\" appears twice") }
            switch k {
            case "dtype": guard let s = v.stringValue else { throw bad("dtype is not a string") }; dtypeText = s
            case "shape": guard let a = v.arrayValue else { throw bad("shape is not an array") }; shapeJSON = a
            case "data_offsets": guard let a = v.arrayValue else { throw bad("data_offsets is not an array") }; offsetsJSON = a
            default: throw bad("unknown field \"\(k)\"")
            }
        }
        guard let dtypeText else { throw bad("missing dtype") }
        guard let shapeJSON else { throw bad("missing shape") }
        guard let offsetsJSON else { throw bad("missing data_offsets") }
        guard let dtype = DType(rawValue: dtypeText), dtype.isSafetensorsType else {
            throw SafetensorsError.unknownDType(path: path, name: name, dtype: dtypeText)
        }
        let shape: [Int] = try shapeJSON.map {
            guard let v = $0.intValue, v >= 0, let i = Int(exactly: v) else { throw bad("shape entries must be non-negative integers") }
            return i
        }
        guard offsetsJSON.count == 2 else { throw bad("data_offsets must have two entries") }
        let offs: [Int] = try offsetsJSON.map {
            guard let v = $0.intValue, v >= 0, let i = Int(exactly: v) else { throw bad("data_offsets must be non-negative integers") }
            return i
        }
        let (begin, end) = (offs[0], offs[1])
        guard begin <= end else { throw SafetensorsError.invalidOffsets(path: path, name: name, begin: begin, end: end) }
        guard let n = elementCount(shape), let size = dtype.byteCount(elements: n) else {
            throw SafetensorsError.sizeOverflow(path: path, name: name, shape: shape)
        }
        guard size == end - begin else {
            throw SafetensorsError.sizeMismatch(path: path, name: name, shape: shape, dtype: dtype, expected: size, actual: end - begin)
        }
        return Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
    }
}

// MARK: - One file, memory-mapped

/// One safetensors file, memory-mapped. Opening reads only the header; tensor bytes are
/// paged in when a view of them is touched.
public final class SafetensorsFile {
    public let url: URL
    public let header: SafetensorsHeader
    /// N, the header size after the 8-byte prefix.
    public let headerSize: Int
    public var dataStart: Int { 8 + headerSize }
    private let map: MappedFile

    public init(url: URL) throws {
        self.url = url
        let map = try MappedFile(url: url)
        self.map = map
        let path = url.path
        let b = map.bytes
        guard b.count >= 8 else { throw SafetensorsError.fileTooSmall(path: path, size: b.count) }
        let n = b.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian
        guard n >= 2 else { throw SafetensorsError.headerTooSmall(path: path, declared: n) }
        guard n <= UInt64(safetensorsMaxHeaderSize) else {
            throw SafetensorsError.headerTooLarge(path: path, declared: n, limit: safetensorsMaxHeaderSize)
        }
        guard Int(n) <= b.count - 8 else { throw SafetensorsError.headerPastEndOfFile(path: path, declared: n, fileSize: b.count) }
        headerSize = Int(n)
        header = try SafetensorsHeader.parse(UnsafeRawBufferPointer(rebasing: b[8..<(8 + headerSize)]),
                                             dataSize: b.count - 8 - headerSize, path: path)
    }

    /// The whole mapped file.
    public var fileBytes: UnsafeRawBufferPointer { map.bytes }

    /// The mapped bytes of one entry (validated at open to lie inside the file).
    public func bytes(of e: SafetensorsHeader.Entry) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: map.bytes[(dataStart + e.begin)..<(dataStart + e.end)])
    }

    /// Writes this file's header and tensors to `url` (byte-identical when unchanged).
    public func write(to url: URL) throws {
        let w = try SafetensorsWriter(url: url, header: header)
        for e in header.entriesInDataOrder { try w.write(e.name, bytes(of: e)) }
        try w.finish()
    }
}

// MARK: - Streaming writer

/// Writes a safetensors file front to back: the size prefix and header first, then each
/// tensor's bytes in data order, so a file of any size needs one tensor (or one chunk) in
/// memory. `finish()` checks every promised byte arrived; a writer dropped before
/// `finish()` removes its partial file.
public final class SafetensorsWriter {
    public let url: URL
    public let header: SafetensorsHeader
    private let order: [SafetensorsHeader.Entry]
    private var next = 0          // index into order of the tensor being written
    private var written = 0       // data bytes written so far
    private var fd: Int32
    private var finished = false

    public init(url: URL, header: SafetensorsHeader) throws {
        self.url = url; self.header = header
        order = header.entriesInDataOrder
        // Validate the layout we are about to promise.
        var expected = 0
        for e in order {
            guard e.begin == expected else {
                throw SafetensorsError.offsetsNotContiguous(path: url.path, name: e.name, expectedBegin: expected, begin: e.begin)
            }
            expected = e.end
        }
        fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw SafetensorsError.io(path: url.path, reason: String(cString: strerror(errno))) }
        let h = header.encoded()
        var prefix = UInt64(h.count).littleEndian
        try withUnsafeBytes(of: &prefix) { try writeAll($0) }
        try h.withUnsafeBytes { try writeAll($0) }
    }

    deinit {
        if fd >= 0 { close(fd) }
        if !finished { unlink(url.path) }
    }

    private func writeAll(_ b: UnsafeRawBufferPointer) throws {
        var off = 0
        while off < b.count {
            let n = Foundation.write(fd, b.baseAddress! + off, b.count - off)
            if n < 0 {
                if errno == EINTR { continue }
                throw SafetensorsError.io(path: url.path, reason: String(cString: strerror(errno)))
            }
            off += n
        }
    }

    /// The next tensor in data order, whole.
    public func write(_ name: String, _ bytes: UnsafeRawBufferPointer) throws {
        guard next < order.count, order[next].name == name else {
            throw SafetensorsError.writeMismatch(path: url.path, reason: "expected tensor \(next < order.count ? "\"\(order[next].name)\"" : "none"), got \"\(name)\"")
        }
        guard written == order[next].begin, bytes.count == order[next].byteCount else {
            throw SafetensorsError.writeMismatch(path: url.path, reason: "tensor \"\(name)\" has \(bytes.count) bytes, header says \(order[next].byteCount)")
        }
        if bytes.count > 0 { try writeAll(bytes) }
        written += bytes.count
        next += 1
    }

    /// Raw data bytes in data order, in chunks of any size (for tensors too large to hold).
    public func append(_ bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count <= header.dataSize - written else {
            throw SafetensorsError.writeMismatch(path: url.path, reason: "more data than the header declares (\(header.dataSize) bytes)")
        }
        if bytes.count > 0 { try writeAll(bytes) }
        written += bytes.count
        while next < order.count, order[next].end <= written { next += 1 }
    }

    /// Checks the data is complete and closes the file.
    public func finish() throws {
        guard written == header.dataSize else {
            throw SafetensorsError.writeMismatch(path: url.path, reason: "\(written) of \(header.dataSize) data bytes written")
        }
        guard close(fd) == 0 else {
            fd = -1
            throw SafetensorsError.io(path: url.path, reason: String(cString: strerror(errno)))
        }
        fd = -1
        finished = true
    }
}
