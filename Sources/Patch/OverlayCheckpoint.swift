// The base checkpoint with a patch's tensors decoded in memory: for `eval --patch`, and for
// scoring a patch as stored without writing anything. Untouched tensors are the base's own
// mapped bytes.
import Foundation
import ModelFormats

public final class OverlayCheckpoint: Checkpoint {
    public let base: Checkpoint
    public let patch: PatchFile
    public let tensors: [TensorInfo]
    private var decoded: [String: [UInt8]] = [:]
    private let index: [String: Int]

    /// Checks that every touched tensor of `base` is the patch's base (else throws the same
    /// errors as apply), then decodes the patched tensors.
    public init(base: Checkpoint, patch: PatchFile) throws {
        self.base = base
        self.patch = patch
        let items = try PatchApplier.items(patch, base)
        let shas = try PatchApplier.hashRegions(items)
        try PatchApplier.refuse(items, zip(items, shas).map { PatchApplier.classify($0.0, sha: $0.1) }, shas, revert: false)
        for it in items {
            decoded[it.entry.name] = try PatchApplier.decodeInMemory(patch, it)
        }
        var ts = base.tensors
        for i in ts.indices {
            if let e = items.first(where: { $0.entry.name == ts[i].name })?.entry {
                ts[i].dtype = e.patched.dtype
                ts[i].shape = e.patched.shape
                ts[i].byteCount = e.patched.byteCount!
            }
        }
        tensors = ts
        index = Dictionary(uniqueKeysWithValues: ts.enumerated().map { ($1.name, $0) })
    }

    public var format: CheckpointFormat { base.format }
    public var location: URL { base.location }
    public var files: [URL] { base.files }
    public var config: ModelConfig { base.config }
    public func name(for role: TensorRole) -> String { base.name(for: role) }
    public func tensorInfo(named name: String) -> TensorInfo? { index[name].map { tensors[$0] } }
    /// Names of the tensors the patch replaced.
    public var patchedNames: [String] { patch.manifest.tensors.map(\.name) }

    public func rawBytes(_ tensor: TensorInfo) throws -> UnsafeRawBufferPointer {
        guard let d = decoded[tensor.name] else {
            guard let b = base.tensorInfo(named: tensor.name) else { throw PatchError.missingTensor(tensor.name) }
            return try base.rawBytes(b)
        }
        // Stable storage: the dictionary is never mutated after init.
        return d.withUnsafeBytes { UnsafeRawBufferPointer(start: $0.baseAddress, count: $0.count) }
    }

    public func floats(_ tensor: TensorInfo) throws -> [Float] {
        guard decoded[tensor.name] != nil, let t = tensorInfo(named: tensor.name) else {
            guard let b = base.tensorInfo(named: tensor.name) else { throw PatchError.missingTensor(tensor.name) }
            return try base.floats(b)
        }
        return try dequantize(try rawBytes(t), dtype: t.dtype, count: t.elementCount)
    }
}

extension PatchApplier {
    /// The patched bytes of one tensor (or, with `revert`, the base bytes), decoded in memory
    /// from the checkpoint's current bytes of it, and checked against the manifest's SHA-256.
    static func decodeInMemory(_ patch: PatchFile, _ it: Item, revert: Bool = false) throws -> [UInt8] {
        let src = try FileDescriptor(it.file.path, flags: O_RDONLY)
        var out = [UInt8](repeating: 0, count: (revert ? it.entry.base : it.entry.patched).byteCount!)
        try decodeFrames(patch, it.entry, revert: revert,
                         source: { try src.read(count: $1, at: it.info.offset + $0) },
                         sink: { lo, bytes in out.replaceSubrange(lo..<(lo + bytes.count), with: bytes) })
        return out
    }
}
