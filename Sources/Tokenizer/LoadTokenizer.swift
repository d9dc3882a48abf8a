import Foundation
import ModelFormats

/// The tokenizer that belongs to `checkpoint`: a GGUF file's own metadata, or an HF
/// directory's tokenizer.json (+ tokenizer_config.json when present).
public func loadTokenizer(for checkpoint: any Checkpoint) throws -> BPETokenizer {
    if let gguf = checkpoint as? GGUFCheckpoint {
        return try BPETokenizer(ggufMetadata: gguf.metadata)
    }
    switch checkpoint.format {
    case .gguf:
        throw TokenizerError.unsupportedCheckpoint("\(type(of: checkpoint)) (a GGUF checkpoint without metadata access)")
    case .safetensors:
        return try loadTokenizer(directory: hfDirectory(checkpoint.location))
    }
}

/// The tokenizer of an HF model directory (tokenizer.json required).
public func loadTokenizer(directory: URL) throws -> BPETokenizer {
    let json = directory.appendingPathComponent("tokenizer.json")
    guard FileManager.default.fileExists(atPath: json.path) else {
        throw TokenizerError.unreadableFile(path: json.path,
            reason: "no tokenizer.json in the model directory (tokenizer.model-only directories are not supported; convert with the HF tokenizers library or use the GGUF file)")
    }
    let config = directory.appendingPathComponent("tokenizer_config.json")
    return try BPETokenizer(tokenizerJSON: json,
                            tokenizerConfig: FileManager.default.fileExists(atPath: config.path) ? config : nil)
}

/// The directory for a checkpoint location that may name the directory or a file in it.
private func hfDirectory(_ location: URL) -> URL {
    var isDir: ObjCBool = false
    if FileManager.default.fileExists(atPath: location.path, isDirectory: &isDir), isDir.boolValue { return location }
    return location.deletingLastPathComponent()
}
