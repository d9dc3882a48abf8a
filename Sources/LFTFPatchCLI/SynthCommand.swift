import ArgumentParser
import Foundation
import ModelFormats

/// `lftf-patch synth -o DIR`: a seeded random-weights model, for tests and benchmarks.
struct SynthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "Write a seeded random-weights model (not a trained model; for tests and benchmarks).",
        discussion: """
        --preset tiny: the 2-block test model (hidden 64) as an HF directory, with tokenizer files.
        --preset 7b: a Llama-2-7B-shaped BF16 HF directory (32 blocks, hidden 4096, about 13.5 GB),
        sharded at --shard-size (default 5GB) and written streaming in 16 MiB chunks, with a small \
        byte-level tokenizer in which " he" and " she" are single tokens (so create and eval run on it).
        """)

    enum Preset: String, ExpressibleByArgument, CaseIterable { case tiny, _7b = "7b" }
    enum OutDType: String, ExpressibleByArgument, CaseIterable { case f32, bf16, f16, q8_0, q4_0, q4_1 }
    enum Format: String, ExpressibleByArgument, CaseIterable { case safetensors, gguf }

    @Option(help: "tiny or 7b.")
    var preset: Preset = .tiny

    @Option(help: "Number of transformer blocks (default: 2 for tiny, 32 for 7b).")
    var layers: Int?

    @Option(help: "Seed: the same seed writes the same bytes.")
    var seed: UInt64 = 1

    @Option(help: "Element type for --preset tiny: f32, bf16, f16 (and q8_0, q4_0, q4_1 for gguf); 7b is always bf16.")
    var dtype: OutDType = .f32

    @Option(help: "safetensors (an HF directory) or gguf (a single file; --preset tiny only).")
    var format: Format = .safetensors

    @Option(name: .customLong("shard-size"), help: "Shard at this size (e.g. 5GB, 64KB).")
    var shardSize: String?

    @Option(name: .shortAndLong, help: "Output directory (must not exist).")
    var output: String

    func validate() throws {
        if let s = shardSize, parseByteSize(s) == nil { throw ValidationError("--shard-size \"\(s)\" is not a size") }
        if let l = layers, l < 1 || l > 512 { throw ValidationError("--layers must be between 1 and 512") }
        if format == .gguf && preset != .tiny { throw ValidationError("--format gguf is only for --preset tiny") }
        if format == .safetensors && ![.f32, .bf16, .f16].contains(dtype) {
            throw ValidationError("--dtype \(dtype.rawValue) is a GGUF quant type; safetensors takes f32, bf16 or f16")
        }
    }

    func run() throws {
        let out = URL(fileURLWithPath: output)
        guard !FileManager.default.fileExists(atPath: out.path) else { throw ConvertError.outputExists(path: out.path) }
        let shard = shardSize.flatMap(parseByteSize)
        switch preset {
        case .tiny:
            let dt = DType(rawValue: dtype.rawValue.uppercased())!
            if format == .gguf {
                try SyntheticModel.writeGGUF(to: out, config: SyntheticModel.tinyConfig(layers: layers ?? 2), seed: seed, dtype: dt)
                break
            }
            try SyntheticModel.writeHF(to: out, config: SyntheticModel.tinyConfig(layers: layers ?? 2), seed: seed,
                                       dtype: dt, maxShardBytes: shard)
        case ._7b:
            try SyntheticModel.write7BShaped(to: out, layers: layers ?? 32, seed: seed, maxShardBytes: shard ?? 5_000_000_000,
                                             progress: { i, n, name in printErr("[\(i)/\(n)] \(name)") })
        }
        printErr("wrote \(out.path)")
    }
}
