import ArgumentParser
import Foundation
import ModelFormats

/// `lftf-patch convert MODEL.gguf --to safetensors --dtype bf16|f32 -o DIR`: a GGUF file
/// becomes an HF directory (config.json, tokenizer files, safetensors).
struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a GGUF model to an HF directory (safetensors, config.json, tokenizer files).",
        discussion: """
        Every tensor is dequantized to F32 and stored as BF16 (round to nearest even) or F32.
        Llama Q/K rows, which llama.cpp permutes when it writes GGUF, are put back in HF order.
        tokenizer.json is built from the GGUF vocabulary and merges (byte-level BPE), with the
        split pattern of its tokenizer.ggml.pre family (smollm, gpt2, llama3, qwen2); a tokenizer
        that has no exact tokenizer.json form (SentencePiece, llama.cpp's "default" or "falcon"
        patterns) is left out with a note rather than written approximately.
        llama.cpp's rope_freqs.weight (Llama 3.1/3.2 rope scaling as per-pair factors) becomes
        rope_scaling llama3 in config.json; factors no llama3 scaling produces are an error.
        The output is written to a temporary directory next to DIR and renamed into place
        when complete, so DIR is never half-written. DIR must not exist.
        """)

    enum Target: String, ExpressibleByArgument, CaseIterable { case safetensors }
    enum OutDType: String, ExpressibleByArgument, CaseIterable { case bf16, f32 }

    @Argument(help: "The GGUF file to convert.")
    var model: String

    @Option(help: "Output format (only safetensors).")
    var to: Target = .safetensors

    @Option(help: "Element type of the written tensors: bf16 or f32.")
    var dtype: OutDType = .bf16

    @Option(name: .shortAndLong, help: "Output directory (must not exist).")
    var output: String

    @Option(name: .customLong("shard-size"), help: "Split into shards of at most this size (e.g. 500MB, 2GB, 1GiB); default one file.")
    var shardSize: String?

    @Flag(name: .shortAndLong, help: "No progress on stderr.")
    var quiet = false

    func validate() throws {
        if let s = shardSize, parseByteSize(s) == nil {
            throw ValidationError("--shard-size \"\(s)\" is not a size (examples: 500MB, 2GB, 1GiB, 1000000)")
        }
    }

    func run() throws {
        let src = URL(fileURLWithPath: model)
        let ckpt = try openRecovered(src.path)
        guard let gguf = ckpt as? GGUFCheckpoint else {
            throw ConvertError.notGGUF(path: src.path)
        }
        let out = URL(fileURLWithPath: output).standardizedFileURL
        guard !FileManager.default.fileExists(atPath: out.path) else { throw ConvertError.outputExists(path: out.path) }
        let maxShard = shardSize.flatMap(parseByteSize)
        let outDType: DType = dtype == .bf16 ? .bf16 : .f32
        try convertGGUFToHF(gguf, to: out, dtype: outDType, maxShardBytes: maxShard,
                            progress: quiet ? nil : { i, n, name in printErr("[\(i)/\(n)] \(name)") },
                            note: { printErr("note: \($0)") })
        if !quiet { printErr("wrote \(out.path)") }
    }
}

enum ConvertError: Error, CustomStringConvertible {
    case notGGUF(path: String)
    case outputExists(path: String)

    var description: String {
        switch self {
        case let .notGGUF(p): return "\(p) is not a GGUF file; convert reads GGUF and writes an HF directory"
        case let .outputExists(p): return "\(p) already exists; choose a new output directory"
        }
    }
}

