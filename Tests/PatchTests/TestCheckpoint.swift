// A minimal single-file safetensors checkpoint for the Patch tests, independent of the
// ModelFormats readers: it writes a real safetensors file and serves its tensor table.
import Foundation
import ModelFormats

final class TestCheckpoint: Checkpoint {
    let location: URL
    let tensors: [TensorInfo]
    let config: ModelConfig
    var format: CheckpointFormat { .safetensors }
    var files: [URL] { [location.appendingPathComponent("model.safetensors")] }

    /// Writes `dir/model.safetensors` holding `tensors` (name, dtype, shape, bytes) in order.
    static func write(_ dir: URL, _ tensors: [(String, DType, [Int], [UInt8])]) throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var header: [String: Any] = [:]
        var off = 0
        for (n, d, s, b) in tensors {
            header[n] = ["dtype": d.rawValue, "shape": s, "data_offsets": [off, off + b.count]]
            off += b.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while (json.count + 8) % 8 != 0 { json.append(0x20) }
        var out = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for t in tensors { out.append(contentsOf: t.3) }
        try out.write(to: dir.appendingPathComponent("model.safetensors"))
    }

    /// Opens what `write` wrote (tensor order = data order).
    init(_ dir: URL) throws {
        location = dir
        let d = try Data(contentsOf: dir.appendingPathComponent("model.safetensors"))
        let n = Int(d.prefix(8).withUnsafeBytes { $0.load(as: UInt64.self) })
        let h = try JSONSerialization.jsonObject(with: d[8..<(8 + n)]) as! [String: [String: Any]]
        var ts: [TensorInfo] = []
        for (name, v) in h where name != "__metadata__" {
            let o = v["data_offsets"] as! [Int]
            ts.append(TensorInfo(name: name, dtype: DType(rawValue: v["dtype"] as! String)!, shape: v["shape"] as! [Int],
                                 fileIndex: 0, offset: 8 + n + o[0], byteCount: o[1] - o[0]))
        }
        tensors = ts.sorted { $0.offset < $1.offset }
        config = ModelConfig(architecture: "llama", hiddenSize: 8, intermediateSize: 16, numLayers: 2, numHeads: 2,
                             numKVHeads: 1, vocabSize: 32, rmsNormEps: 1e-5, ropeTheta: 1e4, ropeStyle: .halves,
                             tieWordEmbeddings: true)
        data = d
    }

    private let data: Data

    func tensorInfo(named name: String) -> TensorInfo? { tensors.first { $0.name == name } }
    func name(for role: TensorRole) -> String {
        switch role {
        case .q(let i): return "model.layers.\(i).self_attn.q_proj.weight"
        case .k(let i): return "model.layers.\(i).self_attn.k_proj.weight"
        case .v(let i): return "model.layers.\(i).self_attn.v_proj.weight"
        case .o(let i): return "model.layers.\(i).self_attn.o_proj.weight"
        case .gate(let i): return "model.layers.\(i).mlp.gate_proj.weight"
        case .up(let i): return "model.layers.\(i).mlp.up_proj.weight"
        case .down(let i): return "model.layers.\(i).mlp.down_proj.weight"
        default: return "other"
        }
    }
    func rawBytes(_ t: TensorInfo) throws -> UnsafeRawBufferPointer {
        data.withUnsafeBytes { UnsafeRawBufferPointer(rebasing: $0[t.offset..<(t.offset + t.byteCount)]) }
    }
    func floats(_ t: TensorInfo) throws -> [Float] { [] }
}

/// Deterministic pseudo-random numbers (SplitMix64, ModelFormats' SyntheticRNG) for test data.
struct SplitMix {
    var rng: SyntheticRNG
    init(state: UInt64) { rng = SyntheticRNG(seed: state) }
    mutating func next() -> UInt64 { rng.next() }
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func normal() -> Double {
        let u = max(uniform(), 1e-300), v = uniform()
        return (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
    }
}

func bf16Bits(_ x: Float) -> UInt16 {
    let u = x.bitPattern
    return UInt16(truncatingIfNeeded: (u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16)
}

func bf16Bytes(_ xs: [Float]) -> [UInt8] {
    var out = [UInt8](); out.reserveCapacity(xs.count * 2)
    for x in xs { let b = bf16Bits(x); out.append(UInt8(b & 0xFF)); out.append(UInt8(b >> 8)) }
    return out
}

func bf16Floats(_ b: [UInt8]) -> [Float] {
    stride(from: 0, to: b.count, by: 2).map { Float(bitPattern: UInt32(b[$0]) << 16 | UInt32(b[$0 + 1]) << 24) }
}

/// A BF16 weight matrix (std 0.02) and the same plus noise of `scale` × its std, rounded to BF16.
func bf16Pair(count: Int, scale: Double, seed: UInt64) -> ([UInt8], [UInt8]) {
    var r = SplitMix(state: seed)
    let w = bf16Floats(bf16Bytes((0..<count).map { _ in Float(r.normal() * 0.02) }))
    let p = w.map { $0 + Float(r.normal() * 0.02 * scale) }
    return (bf16Bytes(w), bf16Bytes(p))
}
