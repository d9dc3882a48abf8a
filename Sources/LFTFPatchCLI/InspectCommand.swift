import ArgumentParser
import Crypto
import Foundation
import ModelFormats

/// `lftf-patch inspect MODEL`: what a checkpoint holds, read from its headers.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a checkpoint's format, architecture and tensors (dtype, shape, size).",
        discussion: """
        MODEL is an HF directory (config.json + safetensors, single or sharded) or a .gguf file.
        Only headers are read, unless --hash is given (then every tensor's stored bytes are
        read once and hashed with SHA-256).
        """)

    @Argument(help: "An HF model directory or a .gguf file.")
    var model: String

    @Flag(help: "Also print the SHA-256 of each tensor's stored bytes.")
    var hash = false

    @Flag(help: "Print JSON instead of text.")
    var json = false

    struct Report: Encodable {
        struct File: Encodable { var path: String; var bytes: Int }
        struct Tensor: Encodable {
            var name: String; var dtype: String; var shape: [Int]; var elements: Int
            var bytes: Int; var file: Int; var offset: Int; var sha256: String?
        }
        struct Totals: Encodable { var tensors: Int; var parameters: Int; var bytes: Int }
        var format: String
        var location: String
        var files: [File]
        var config: ModelConfig
        var tensors: [Tensor]
        var totals: Totals
    }

    func run() throws {
        let ckpt = try openRecovered(model)
        var tensors: [Report.Tensor] = []
        for t in ckpt.tensors {
            var digest: String? = nil
            if hash {
                let bytes = try ckpt.rawBytes(t)
                digest = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
            }
            tensors.append(.init(name: t.name, dtype: t.dtype.rawValue, shape: t.shape, elements: t.elementCount,
                                 bytes: t.byteCount, file: t.fileIndex, offset: t.offset, sha256: digest))
        }
        let files = ckpt.files.map { u in
            Report.File(path: u.path, bytes: ((try? FileManager.default.attributesOfItem(atPath: u.path)[.size]) as? NSNumber)?.intValue ?? 0)
        }
        let report = Report(format: ckpt.format.rawValue, location: ckpt.location.path, files: files, config: ckpt.config,
                            tensors: tensors,
                            totals: .init(tensors: tensors.count, parameters: tensors.reduce(0) { $0 + $1.elements },
                                          bytes: tensors.reduce(0) { $0 + $1.bytes }))
        if json { try printJSON(report); return }
        printText(report)
    }

    private func printText(_ r: Report) {
        let c = r.config
        var out = ""
        out += "format        \(r.format)\n"
        out += "location      \(r.location)\n"
        for (i, f) in r.files.enumerated() { out += "file \(i)        \(f.path) (\(humanBytes(f.bytes)))\n" }
        out += "architecture  \(c.architecture), \(c.numLayers) blocks, hidden \(c.hiddenSize), FFN \(c.intermediateSize)\n"
        out += "attention     \(c.numHeads) heads, \(c.numKVHeads) KV heads, head dim \(c.headDim), rope theta \(String(format: "%g", c.ropeTheta)) (\(c.ropeStyle.rawValue))"
        if let s = c.ropeScaling { out += ", scaling \(s.type) ×\(s.factor)" }
        out += "\n"
        out += "vocab         \(c.vocabSize), rms eps \(String(format: "%g", c.rmsNormEps)), tied embeddings \(c.tieWordEmbeddings ? "yes" : "no"), max positions \(c.maxPositions)\n"
        out += "\n"
        let nameWidth = max(4, r.tensors.map(\.name.count).max() ?? 0)
        func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }
        out += pad("name", nameWidth) + "  " + pad("dtype", 7) + "  " + pad("shape", 14) + "  size" + (hash ? "        sha256" : "") + "\n"
        for t in r.tensors {
            out += pad(t.name, nameWidth) + "  " + pad(t.dtype, 7) + "  " + pad("[" + t.shape.map(String.init).joined(separator: ", ") + "]", 14)
            out += "  " + pad(humanBytes(t.bytes), 10)
            if let h = t.sha256 { out += "  " + h }
            out += "\n"
        }
        out += "\n\(r.totals.tensors) tensors, \(r.totals.parameters) parameters, \(humanBytes(r.totals.bytes)) (\(r.totals.bytes) bytes)\n"
        FileHandle.standardOutput.write(Data(out.utf8))
    }
}
