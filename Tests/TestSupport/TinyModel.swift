import Foundation
import ModelFormats

/// Seeded tiny models written once per test process into a temporary directory
/// (SyntheticModel: llama, 2 blocks, hidden 64, 4 heads / 2 KV heads, byte-level vocab).
public enum TinyModel {
    public static let seed: UInt64 = 1234
    private static let lock = NSLock()
    private nonisolated(unsafe) static var cache: [String: URL] = [:]

    /// Per-process scratch root, removed when the test process exits.
    public static let root: URL = {
        let u = FileManager.default.temporaryDirectory.appendingPathComponent("lftf-tests-\(getpid())")
        try? FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(at: TinyModel.root) }
        return u
    }()

    /// A fresh empty directory under `root`.
    public static func scratchDirectory(_ name: String) throws -> URL {
        let u = root.appendingPathComponent("\(name.filter { $0.isLetter || $0.isNumber })-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
        return u
    }

    /// An HF directory of the tiny model in `dtype`; sharded (3+ shards) when `sharded`.
    public static func hfDirectory(dtype: DType = .f32, sharded: Bool = false) throws -> URL {
        let key = "hf-\(dtype.rawValue)-\(sharded ? "sharded" : "single")"
        lock.lock(); defer { lock.unlock() }
        if let u = cache[key] { return u }
        let u = root.appendingPathComponent(key)
        try? FileManager.default.removeItem(at: u)
        try SyntheticModel.writeHF(to: u, config: SyntheticModel.tinyConfig(), seed: seed, dtype: dtype,
                                   maxShardBytes: sharded ? 50_000 : nil)
        cache[key] = u
        return u
    }

    /// The same tiny model as a GGUF file (Q/K permuted as llama.cpp writes them).
    public static func ggufFile(dtype: DType = .f32) throws -> URL {
        let key = "gguf-\(dtype.rawValue)"
        lock.lock(); defer { lock.unlock() }
        if let u = cache[key] { return u }
        let u = root.appendingPathComponent("tiny-\(dtype.rawValue).gguf")
        try SyntheticModel.writeGGUF(to: u, config: SyntheticModel.tinyConfig(), seed: seed, dtype: dtype)
        cache[key] = u
        return u
    }

    /// The sample GGUF converted to an HF directory (BF16), once per process.
    public static func convertedSample() throws -> URL {
        let gguf = try requireSampleModel()
        lock.lock(); defer { lock.unlock() }
        if let u = cache["sample-bf16"] { return u }
        let u = root.appendingPathComponent("sample-bf16")
        try? FileManager.default.removeItem(at: u)
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        try convertGGUFToHF(try GGUFCheckpoint(url: gguf), to: u, dtype: .bf16, maxShardBytes: nil)
        cache["sample-bf16"] = u
        return u
    }
}
