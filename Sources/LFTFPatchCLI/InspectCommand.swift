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
        /// A GGUF's rope_freqs.weight: per-pair RoPE frequency divisors (llama3 scaling).
        struct RopeFreqs: Encodable {
            var tensor: String
            var factors: [Double]?
            /// The llama3 rope scaling that reproduces the factors, when one does.
            var llama3: RopeScaling?
            /// Why the tensor is unusable or not llama3.
            var problem: String?
        }
        var format: String
        var location: String
        var files: [File]
        var config: ModelConfig
        var tensors: [Tensor]
        var totals: Totals
        var ropeFrequencies: RopeFreqs?
    }

    static func ropeFrequencies(_ ckpt: any Checkpoint) -> Report.RopeFreqs? {
        guard ckpt.format == .gguf, ckpt.tensorInfo(named: RopeFrequencies.ggufTensorName) != nil else { return nil }
        var r = Report.RopeFreqs(tensor: RopeFrequencies.ggufTensorName)
        do {
            let f = try RopeFrequencies.stored(in: ckpt) ?? []
            r.factors = f
            let c = ckpt.config
            let orig = (ckpt as? GGUFCheckpoint)?.metadata["\(c.architecture).rope.scaling.original_context_length"]?.intValue
            r.llama3 = try RopeFrequencies.recoverLlama3(factors: f, headDim: c.headDim, theta: c.ropeTheta, originalMaxPositions: orig)
        } catch {
            r.problem = "\(error)"
        }
        return r
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
                                          bytes: tensors.reduce(0) { $0 + $1.bytes }),
                            ropeFrequencies: InspectCommand.ropeFrequencies(ckpt))
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
        if let rf = r.ropeFrequencies {
            out += "rope freqs    \(rf.tensor)"
            if let f = rf.factors, let lo = f.min(), let hi = f.max() {
                out += ": \(f.count) per-pair divisors, \(String(format: "%g", lo))…\(String(format: "%g", hi))"
            }
            if let s = rf.llama3 {
                out += " = llama3 scaling ×\(String(format: "%g", s.factor)), low_freq_factor \(String(format: "%g", s.lowFreqFactor ?? 1)), high_freq_factor \(String(format: "%g", s.highFreqFactor ?? 4)), original context \(s.originalMaxPositions ?? 8192)"
            }
            if let p = rf.problem { out += " (\(p))" }
            out += "\n"
        }
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
