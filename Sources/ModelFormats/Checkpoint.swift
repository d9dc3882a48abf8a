import Foundation

// "A model": an HF directory (config.json, safetensors single or sharded, tokenizer files)
// or a GGUF file. Everything above this module sees checkpoints through this protocol.

public enum CheckpointFormat: String, Codable, Sendable {
    case safetensors, gguf
}

/// Where one tensor's bytes live. Shapes are row-major, outermost dimension first
/// (PyTorch order): a GGUF tensor with ne = [576, 1536] has shape [1536, 576].
public struct TensorInfo: Sendable, Hashable, Codable {
    /// The name as stored in the file (`model.layers.0.self_attn.q_proj.weight` or `blk.0.attn_q.weight`).
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    /// Index into `Checkpoint.files`.
    public var fileIndex: Int
    /// Absolute byte offset of the first byte in that file.
    public var offset: Int
    public var byteCount: Int

    public init(name: String, dtype: DType, shape: [Int], fileIndex: Int, offset: Int, byteCount: Int) {
        self.name = name; self.dtype = dtype; self.shape = shape
        self.fileIndex = fileIndex; self.offset = offset; self.byteCount = byteCount
    }

    public var elementCount: Int { ModelFormats.elementCount(shape) ?? 0 }
}

/// How the Q/K rows of a checkpoint are laid out, and so which RoPE the engine must use.
/// llama.cpp permutes Llama's Q/K rows when it writes GGUF so that RoPE rotates adjacent
/// pairs (x[2i], x[2i+1]); HF checkpoints rotate halves (x[i], x[i + d/2]).
/// Qwen2 GGUF files keep HF's order (llama.cpp's NEOX rope).
public enum RopeStyle: String, Codable, Sendable {
    case adjacentPairs   // GGUF llama/mistral ("NORM")
    case halves          // HF, and GGUF qwen2 ("NEOX")
}

public struct RopeScaling: Codable, Sendable, Equatable {
    /// "linear", "llama3", "dynamic", "yarn" (only linear and llama3 change the frequencies here).
    public var type: String
    public var factor: Double
    public var lowFreqFactor: Double?
    public var highFreqFactor: Double?
    public var originalMaxPositions: Int?
    public init(type: String, factor: Double, lowFreqFactor: Double? = nil, highFreqFactor: Double? = nil, originalMaxPositions: Int? = nil) {
        self.type = type; self.factor = factor; self.lowFreqFactor = lowFreqFactor
        self.highFreqFactor = highFreqFactor; self.originalMaxPositions = originalMaxPositions
    }
}

/// Architecture hyperparameters, from config.json or GGUF metadata.
public struct ModelConfig: Codable, Sendable, Equatable {
    /// "llama", "mistral", "qwen2" (GGUF `general.architecture`, HF `model_type`).
    public var architecture: String
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numLayers: Int
    public var numHeads: Int
    public var numKVHeads: Int
    public var headDim: Int
    public var vocabSize: Int
    public var rmsNormEps: Double
    public var ropeTheta: Double
    public var ropeScaling: RopeScaling?
    public var ropeStyle: RopeStyle
    public var tieWordEmbeddings: Bool
    /// q/k/v projections carry a bias (Qwen2).
    public var attentionBias: Bool
    public var maxPositions: Int

    public init(architecture: String, hiddenSize: Int, intermediateSize: Int, numLayers: Int,
                numHeads: Int, numKVHeads: Int, headDim: Int? = nil, vocabSize: Int,
                rmsNormEps: Double, ropeTheta: Double, ropeScaling: RopeScaling? = nil,
                ropeStyle: RopeStyle, tieWordEmbeddings: Bool, attentionBias: Bool = false,
                maxPositions: Int = 2048) {
        self.architecture = architecture; self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize; self.numLayers = numLayers
        self.numHeads = numHeads; self.numKVHeads = numKVHeads
        self.headDim = headDim ?? hiddenSize / numHeads; self.vocabSize = vocabSize
        self.rmsNormEps = rmsNormEps; self.ropeTheta = ropeTheta; self.ropeScaling = ropeScaling
        self.ropeStyle = ropeStyle; self.tieWordEmbeddings = tieWordEmbeddings
        self.attentionBias = attentionBias; self.maxPositions = maxPositions
    }
}

/// The role a tensor plays, independent of the naming scheme.
public enum TensorRole: Hashable, Sendable, Codable {
    case tokenEmbedding, outputNorm, output
    case attnNorm(Int), ffnNorm(Int)
    case q(Int), k(Int), v(Int), o(Int)
    case qBias(Int), kBias(Int), vBias(Int)
    case gate(Int), up(Int), down(Int)

    /// The seven weights LFTF fine-tunes in block `i`: attention q, k, v, o and MLP gate, up, down.
    public static func trainable(block i: Int) -> [TensorRole] {
        [.q(i), .k(i), .v(i), .o(i), .gate(i), .up(i), .down(i)]
    }

    public var block: Int? {
        switch self {
        case .tokenEmbedding, .outputNorm, .output: return nil
        case .attnNorm(let i), .ffnNorm(let i), .q(let i), .k(let i), .v(let i), .o(let i),
             .qBias(let i), .kBias(let i), .vBias(let i), .gate(let i), .up(let i), .down(let i):
            return i
        }
    }
}

/// A checkpoint opened for reading. Tensor bytes are memory-mapped: nothing is read
/// until asked for, and only the bytes asked for are paged in.
public protocol Checkpoint: AnyObject {
    var format: CheckpointFormat { get }
    /// The file or directory the user named.
    var location: URL { get }
    /// Every file that holds tensor data, in a stable order (`TensorInfo.fileIndex` indexes it).
    var files: [URL] { get }
    /// All tensors, in file order.
    var tensors: [TensorInfo] { get }
    var config: ModelConfig { get }

    func tensorInfo(named name: String) -> TensorInfo?
    /// The file's name for a role (HF or GGUF scheme), whether or not the tensor exists.
    func name(for role: TensorRole) -> String
    /// The mapped bytes of a tensor, valid while the checkpoint is alive.
    func rawBytes(_ tensor: TensorInfo) throws -> UnsafeRawBufferPointer
    /// The tensor dequantized to Float, row-major in `shape` order.
    func floats(_ tensor: TensorInfo) throws -> [Float]
}

public extension Checkpoint {
    func tensorInfo(for role: TensorRole) -> TensorInfo? { tensorInfo(named: name(for: role)) }
}
