import Foundation

// Sharded safetensors (transformers' `save_pretrained`):
//
//   model.safetensors.index.json  {"metadata": {"total_size": N},     N = sum of tensor bytes
//                                  "weight_map": {NAME: SHARD, ...}}  every tensor → its file
//   model-00001-of-0000K.safetensors, ...                             ordinary safetensors files
//
// transformers writes the index with `json.dumps(index, indent=2, sort_keys=True) + "\n"`;
// we write the same bytes, and keep an unchanged index's bytes as read.

public let safetensorsIndexFileName = "model.safetensors.index.json"
public let safetensorsSingleFileName = "model.safetensors"

/// A parsed model.safetensors.index.json.
public struct SafetensorsIndex: Equatable {
    /// The whole JSON object, key order as read.
    public private(set) var json: JSONValue
    /// `weight_map` pairs in file order.
    public let weightMap: [(name: String, file: String)]
    private var originalBytes: [UInt8]?

    public static func == (a: SafetensorsIndex, b: SafetensorsIndex) -> Bool { a.json == b.json }

    /// Shard file names, unique, sorted (the stable order `Checkpoint.files` uses).
    public var shardFiles: [String] { Array(Set(weightMap.map(\.file))).sorted() }

    /// An index in transformers' layout; `weightMap` is sorted by tensor name.
    public init(totalSize: Int, weightMap: [(name: String, file: String)]) {
        let sorted = weightMap.sorted { $0.name < $1.name }
        self.weightMap = sorted
        json = .object([
            ("metadata", .object([("total_size", .int(Int64(totalSize)))])),
            ("weight_map", .object(sorted.map { ($0.name, .string($0.file)) })),
        ])
        originalBytes = nil
    }

    public static func parse(_ bytes: [UInt8], path: String) throws -> SafetensorsIndex {
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw SafetensorsError.indexNotJSON(path: path, detail: "not valid UTF-8")
        }
        let json: JSONValue
        do { json = try parseJSON(bytes) } catch let e as JSONParseError {
            throw SafetensorsError.indexNotJSON(path: path, detail: e.description)
        }
        guard json.objectPairs != nil else { throw SafetensorsError.indexInvalid(path: path, reason: "top level is not an object") }
        guard let wm = json["weight_map"]?.objectPairs else {
            throw SafetensorsError.indexInvalid(path: path, reason: "has no \"weight_map\" object")
        }
        var seen: [String: String] = [:]
        var map: [(name: String, file: String)] = []
        for (name, v) in wm {
            guard let file = v.stringValue else {
                throw SafetensorsError.indexInvalid(path: path, reason: "weight_map value for \"\(name)\" is not a file name")
            }
            guard !file.isEmpty, !file.contains("/"), file != ".", file != ".." else {
                throw SafetensorsError.indexInvalid(path: path, reason: "weight_map names \"\(file)\", which is not a plain file name in the model directory")
            }
            if let prev = seen[name] {
                if prev == file { throw SafetensorsError.indexInvalid(path: path, reason: "weight_map lists \"\(name)\" twice") }
                throw SafetensorsError.tensorInTwoShards(name: name, first: prev, second: file)
            }
            seen[name] = file
            map.append((name, file))
        }
        var idx = SafetensorsIndex(json: json, weightMap: map)
        idx.originalBytes = bytes
        return idx
    }

    private init(json: JSONValue, weightMap: [(name: String, file: String)]) {
        self.json = json; self.weightMap = weightMap
    }

    /// The bytes as read when unchanged, else `json.dumps(indent=2)` of the JSON plus "\n".
    public func encoded() -> [UInt8] {
        if let originalBytes { return originalBytes }
        return json.encoded(.pythonIndent2) + [0x0A]
    }
}

// MARK: - A directory of safetensors

/// The safetensors files of an HF model directory, opened (headers only) and cross-checked.
public struct SafetensorsSet {
    /// Shards in stable order: the index's files sorted by name, or the single file.
    public let files: [SafetensorsFile]
    public let index: SafetensorsIndex?

    /// Opens `directory`: with model.safetensors.index.json, every shard it names; otherwise
    /// model.safetensors, or the only *.safetensors file.
    public init(directory: URL) throws {
        let fm = FileManager.default
        let indexURL = directory.appendingPathComponent(safetensorsIndexFileName)
        if fm.fileExists(atPath: indexURL.path) {
            let bytes: [UInt8]
            do { bytes = Array(try Data(contentsOf: indexURL)) } catch {
                throw SafetensorsError.io(path: indexURL.path, reason: error.localizedDescription)
            }
            let index = try SafetensorsIndex.parse(bytes, path: indexURL.path)
            var files: [SafetensorsFile] = []
            for name in index.shardFiles {
                let u = directory.appendingPathComponent(name)
                guard fm.fileExists(atPath: u.path) else { throw SafetensorsError.shardMissing(index: indexURL.path, file: name) }
                files.append(try SafetensorsFile(url: u))
            }
            // Every header tensor is in exactly one shard and the index agrees.
            var holder: [String: String] = [:]
            for f in files {
                let shard = f.url.lastPathComponent
                for e in f.header.entries {
                    if let prev = holder[e.name] { throw SafetensorsError.tensorInTwoShards(name: e.name, first: prev, second: shard) }
                    holder[e.name] = shard
                }
            }
            let mapped = Dictionary(index.weightMap.map { ($0.name, $0.file) }, uniquingKeysWith: { a, _ in a })
            for f in files {
                let shard = f.url.lastPathComponent
                for e in f.header.entries {
                    guard let m = mapped[e.name] else { throw SafetensorsError.tensorNotInIndex(name: e.name, shard: shard) }
                    if m != shard { throw SafetensorsError.tensorInTwoShards(name: e.name, first: m, second: shard) }
                }
            }
            for (name, file) in index.weightMap where holder[name] == nil {
                throw SafetensorsError.tensorMissingFromShard(name: name, shard: file)
            }
            self.files = files
            self.index = index
            return
        }
        let single = directory.appendingPathComponent(safetensorsSingleFileName)
        if fm.fileExists(atPath: single.path) {
            files = [try SafetensorsFile(url: single)]
            index = nil
            return
        }
        let all = ((try? fm.contentsOfDirectory(atPath: directory.path)) ?? []).filter { $0.hasSuffix(".safetensors") }.sorted()
        guard all.count == 1 else {
            throw SafetensorsError.noSafetensors(directory: directory.path, reason: all.isEmpty
                ? "no model.safetensors, no \(safetensorsIndexFileName), and no other .safetensors file"
                : "no \(safetensorsIndexFileName) and several .safetensors files (\(all.joined(separator: ", "))); which is the model?")
        }
        files = [try SafetensorsFile(url: directory.appendingPathComponent(all[0]))]
        index = nil
    }

    /// Writes every file (and the index) into `directory`, byte-identical when unchanged.
    public func write(to directory: URL) throws {
        for f in files { try f.write(to: directory.appendingPathComponent(f.url.lastPathComponent)) }
        if let index {
            let u = directory.appendingPathComponent(safetensorsIndexFileName)
            do { try Data(index.encoded()).write(to: u) } catch {
                throw SafetensorsError.io(path: u.path, reason: error.localizedDescription)
            }
        }
    }
}

// MARK: - Writing a (possibly sharded) checkpoint

/// One tensor to be written: its header fields; the bytes come later from a callback.
public struct SafetensorsTensorSpec: Sendable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public init(name: String, dtype: DType, shape: [Int]) { self.name = name; self.dtype = dtype; self.shape = shape }
    public var byteCount: Int { dtype.byteCount(elements: elementCount(shape) ?? 0) ?? 0 }
}

/// Splits tensors, in order, into shards of at most `maxShardBytes` data bytes (a tensor
/// larger than the limit gets a shard of its own), as transformers does.
public func planSafetensorsShards(_ tensors: [SafetensorsTensorSpec], maxShardBytes: Int?) -> [[SafetensorsTensorSpec]] {
    guard let maxShardBytes else { return [tensors] }
    var shards: [[SafetensorsTensorSpec]] = []
    var current: [SafetensorsTensorSpec] = []
    var size = 0
    for t in tensors {
        if !current.isEmpty, size + t.byteCount > maxShardBytes {
            shards.append(current); current = []; size = 0
        }
        current.append(t); size += t.byteCount
    }
    if !current.isEmpty || shards.isEmpty { shards.append(current) }
    return shards
}

/// Writes `tensors` into `directory` as model.safetensors, or, when they exceed
/// `maxShardBytes`, as model-0000i-of-0000K.safetensors plus the index. Tensors are written
/// one at a time: `produce(spec, writer)` must write exactly that tensor's bytes (with
/// `writer.write` or in chunks with `writer.append`). Returns the files written.
@discardableResult
public func writeSafetensorsCheckpoint(to directory: URL, tensors: [SafetensorsTensorSpec],
                                       metadata: [SafetensorsHeader.MetadataItem]? = [.init("format", "pt")],
                                       maxShardBytes: Int? = nil,
                                       progress: ((Int, Int, String) -> Void)? = nil,
                                       produce: (SafetensorsTensorSpec, SafetensorsWriter) throws -> Void) throws -> [URL] {
    let shards = planSafetensorsShards(tensors, maxShardBytes: maxShardBytes)
    let k = shards.count
    var urls: [URL] = []
    var weightMap: [(name: String, file: String)] = []
    var done = 0
    for (i, shard) in shards.enumerated() {
        let name = k == 1 ? safetensorsSingleFileName : String(format: "model-%05d-of-%05d.safetensors", i + 1, k)
        let url = directory.appendingPathComponent(name)
        let header = try SafetensorsHeader(metadata: metadata, tensors: shard.map { ($0.name, $0.dtype, $0.shape) })
        let w = try SafetensorsWriter(url: url, header: header)
        for t in shard {
            try produce(t, w)
            done += 1
            progress?(done, tensors.count, t.name)
            weightMap.append((t.name, name))
        }
        try w.finish()
        urls.append(url)
    }
    if k > 1 {
        let total = tensors.reduce(0) { $0 + $1.byteCount }
        let u = directory.appendingPathComponent(safetensorsIndexFileName)
        do { try Data(SafetensorsIndex(totalSize: total, weightMap: weightMap).encoded()).write(to: u) } catch {
            throw SafetensorsError.io(path: u.path, reason: error.localizedDescription)
        }
        urls.append(u)
    }
    return urls
}
