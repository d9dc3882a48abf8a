import Foundation

public enum OpenCheckpointError: Error, CustomStringConvertible, Equatable {
    /// Nothing at that path.
    case notFound(path: String)
    /// A file that does not start with the GGUF magic (and is not a directory).
    case notAModel(path: String, reason: String)

    public var description: String {
        switch self {
        case let .notFound(p): return "\(p): no such file or directory"
        case let .notAModel(p, r): return "\(p): \(r)"
        }
    }
}

/// Opens "a model": a directory is an HF checkpoint (config.json + safetensors); a file
/// must be GGUF (checked by its magic, not its name). Only headers are read.
public func openCheckpoint(_ url: URL) throws -> any Checkpoint {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
        throw OpenCheckpointError.notFound(path: url.path)
    }
    if isDir.boolValue { return try HFCheckpoint(directory: url) }
    guard let h = FileHandle(forReadingAtPath: url.path) else {
        throw OpenCheckpointError.notAModel(path: url.path, reason: "cannot be opened for reading")
    }
    let magic = (try? h.read(upToCount: 4)) ?? nil
    try? h.close()
    guard let magic, Array(magic) == Array("GGUF".utf8) else {
        let hint = url.pathExtension == "safetensors"
            ? "a single .safetensors file is not a model; pass the directory holding it and its config.json"
            : "not a GGUF file (no GGUF magic) and not a model directory"
        throw OpenCheckpointError.notAModel(path: url.path, reason: hint)
    }
    return try GGUFCheckpoint(url: url)
}
