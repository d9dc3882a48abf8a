// Tensor names: the role a tensor plays ↔ its HF name ↔ its GGUF (llama.cpp) name,
// and the Q/K row permutation llama.cpp applies when it converts Llama weights to GGUF.
//
//   role            HF                                          GGUF
//   tokenEmbedding  model.embed_tokens.weight                   token_embd.weight
//   outputNorm      model.norm.weight                           output_norm.weight
//   output          lm_head.weight                              output.weight
//   attnNorm(i)     model.layers.i.input_layernorm.weight       blk.i.attn_norm.weight
//   ffnNorm(i)      model.layers.i.post_attention_layernorm.weight  blk.i.ffn_norm.weight
//   q/k/v/o(i)      model.layers.i.self_attn.{q,k,v,o}_proj.weight  blk.i.attn_{q,k,v,output}.weight
//   q/k/vBias(i)    model.layers.i.self_attn.{q,k,v}_proj.bias  blk.i.attn_{q,k,v}.bias
//   gate/up/down(i) model.layers.i.mlp.{gate,up,down}_proj.weight   blk.i.ffn_{gate,up,down}.weight

public enum TensorNames {
    public static func hf(_ role: TensorRole) -> String {
        switch role {
        case .tokenEmbedding: return "model.embed_tokens.weight"
        case .outputNorm: return "model.norm.weight"
        case .output: return "lm_head.weight"
        case .attnNorm(let i): return "model.layers.\(i).input_layernorm.weight"
        case .ffnNorm(let i): return "model.layers.\(i).post_attention_layernorm.weight"
        case .q(let i): return "model.layers.\(i).self_attn.q_proj.weight"
        case .k(let i): return "model.layers.\(i).self_attn.k_proj.weight"
        case .v(let i): return "model.layers.\(i).self_attn.v_proj.weight"
        case .o(let i): return "model.layers.\(i).self_attn.o_proj.weight"
        case .qBias(let i): return "model.layers.\(i).self_attn.q_proj.bias"
        case .kBias(let i): return "model.layers.\(i).self_attn.k_proj.bias"
        case .vBias(let i): return "model.layers.\(i).self_attn.v_proj.bias"
        case .gate(let i): return "model.layers.\(i).mlp.gate_proj.weight"
        case .up(let i): return "model.layers.\(i).mlp.up_proj.weight"
        case .down(let i): return "model.layers.\(i).mlp.down_proj.weight"
        }
    }

    public static func gguf(_ role: TensorRole) -> String {
        switch role {
        case .tokenEmbedding: return "token_embd.weight"
        case .outputNorm: return "output_norm.weight"
        case .output: return "output.weight"
        case .attnNorm(let i): return "blk.\(i).attn_norm.weight"
        case .ffnNorm(let i): return "blk.\(i).ffn_norm.weight"
        case .q(let i): return "blk.\(i).attn_q.weight"
        case .k(let i): return "blk.\(i).attn_k.weight"
        case .v(let i): return "blk.\(i).attn_v.weight"
        case .o(let i): return "blk.\(i).attn_output.weight"
        case .qBias(let i): return "blk.\(i).attn_q.bias"
        case .kBias(let i): return "blk.\(i).attn_k.bias"
        case .vBias(let i): return "blk.\(i).attn_v.bias"
        case .gate(let i): return "blk.\(i).ffn_gate.weight"
        case .up(let i): return "blk.\(i).ffn_up.weight"
        case .down(let i): return "blk.\(i).ffn_down.weight"
        }
    }

    public static func name(_ role: TensorRole, format: CheckpointFormat) -> String {
        format == .gguf ? gguf(role) : hf(role)
    }

    private static let hfBlockSuffixes: [(String, (Int) -> TensorRole)] = [
        ("input_layernorm.weight", TensorRole.attnNorm), ("post_attention_layernorm.weight", TensorRole.ffnNorm),
        ("self_attn.q_proj.weight", TensorRole.q), ("self_attn.k_proj.weight", TensorRole.k),
        ("self_attn.v_proj.weight", TensorRole.v), ("self_attn.o_proj.weight", TensorRole.o),
        ("self_attn.q_proj.bias", TensorRole.qBias), ("self_attn.k_proj.bias", TensorRole.kBias),
        ("self_attn.v_proj.bias", TensorRole.vBias),
        ("mlp.gate_proj.weight", TensorRole.gate), ("mlp.up_proj.weight", TensorRole.up),
        ("mlp.down_proj.weight", TensorRole.down),
    ]
    private static let ggufBlockSuffixes: [(String, (Int) -> TensorRole)] = [
        ("attn_norm.weight", TensorRole.attnNorm), ("ffn_norm.weight", TensorRole.ffnNorm),
        ("attn_q.weight", TensorRole.q), ("attn_k.weight", TensorRole.k),
        ("attn_v.weight", TensorRole.v), ("attn_output.weight", TensorRole.o),
        ("attn_q.bias", TensorRole.qBias), ("attn_k.bias", TensorRole.kBias), ("attn_v.bias", TensorRole.vBias),
        ("ffn_gate.weight", TensorRole.gate), ("ffn_up.weight", TensorRole.up), ("ffn_down.weight", TensorRole.down),
    ]

    /// "<prefix><N>.<suffix>" → role, with N a plain decimal (no sign, no leading zeros).
    private static func parseBlock(_ name: String, prefix: String, _ table: [(String, (Int) -> TensorRole)]) -> TensorRole? {
        guard name.hasPrefix(prefix) else { return nil }
        let rest = name.dropFirst(prefix.count)
        guard let dot = rest.firstIndex(of: "."), dot > rest.startIndex else { return nil }
        let digits = rest[rest.startIndex..<dot]
        guard digits.allSatisfy({ $0.isASCII && $0.isNumber }), digits.count <= 9,
              !(digits.count > 1 && digits.first == "0"), let n = Int(digits) else { return nil }
        let suffix = rest[rest.index(after: dot)...]
        for (s, make) in table where suffix == s { return make(n) }
        return nil
    }

    /// The role of an HF tensor name, or nil for names outside the Llama family's set.
    public static func role(hfName name: String) -> TensorRole? {
        switch name {
        case "model.embed_tokens.weight": return .tokenEmbedding
        case "model.norm.weight": return .outputNorm
        case "lm_head.weight": return .output
        default: return parseBlock(name, prefix: "model.layers.", hfBlockSuffixes)
        }
    }

    /// The role of a GGUF tensor name, or nil.
    public static func role(ggufName name: String) -> TensorRole? {
        switch name {
        case "token_embd.weight": return .tokenEmbedding
        case "output_norm.weight": return .outputNorm
        case "output.weight": return .output
        default: return parseBlock(name, prefix: "blk.", ggufBlockSuffixes)
        }
    }

    /// Either scheme.
    public static func role(name: String) -> TensorRole? { role(hfName: name) ?? role(ggufName: name) }

    public static func hfName(forGGUF name: String) -> String? { role(ggufName: name).map(hf) }
    public static func ggufName(forHF name: String) -> String? { role(hfName: name).map(gguf) }
}

// MARK: - llama.cpp's Q/K row permutation
//
// convert_hf_to_gguf.py (LlamaModel.permute) reorders the rows of q_proj (with n_head) and
// k_proj (with n_kv_head) so that RoPE rotates adjacent pairs:
//     w.reshape(n_head, 2, head_dim/2, cols).swapaxes(1, 2).reshape(rows, cols)
// i.e. GGUF row  h*d + 2*i + j  ←  HF row  h*d + j*(d/2) + i   (d = head_dim, j ∈ {0,1}).
// Rows are moved whole, so this works on any row-contiguous dtype (F32, BF16, quant rows).

public enum RowPermutationError: Error, CustomStringConvertible, Equatable {
    case badGeometry(rows: Int, heads: Int, rowBytes: Int, byteCount: Int)
    public var description: String {
        switch self {
        case .badGeometry(let r, let h, let rb, let n):
            return "cannot permute Q/K rows: \(r) rows of \(rb) bytes (\(n) bytes given) do not split into \(h) heads of an even head size"
        }
    }
}

public enum QKPermutation {
    /// Destination row for source row `row` going HF → GGUF.
    @inline(__always)
    static func ggufRow(ofHF row: Int, headDim d: Int) -> Int {
        let h = row / d, r = row % d
        let j = r / (d / 2), i = r % (d / 2)
        return h * d + 2 * i + j
    }

    private static func apply(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer,
                              rows: Int, heads: Int, toGGUF: Bool) throws {
        guard rows > 0, heads > 0, rows % heads == 0, (rows / heads) % 2 == 0,
              src.count % rows == 0, dst.count == src.count else {
            throw RowPermutationError.badGeometry(rows: rows, heads: heads, rowBytes: rows > 0 ? src.count / rows : 0, byteCount: src.count)
        }
        let rowBytes = src.count / rows, d = rows / heads
        guard rowBytes > 0, let s = src.baseAddress, let t = dst.baseAddress else { return }
        for row in 0..<rows {
            let g = ggufRow(ofHF: row, headDim: d)
            let (from, to) = toGGUF ? (row, g) : (g, row)
            (t + to * rowBytes).copyMemory(from: s + from * rowBytes, byteCount: rowBytes)
        }
    }

    /// HF layout → llama.cpp GGUF layout (`permute(w, heads)`). Use the KV head count for k_proj.
    /// `src` holds `rows` equal rows; `dst` must be the same size (not overlapping).
    public static func hfToGGUF(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer, rows: Int, heads: Int) throws {
        try apply(src, into: dst, rows: rows, heads: heads, toGGUF: true)
    }

    /// llama.cpp GGUF layout → HF layout (the inverse permutation).
    public static func ggufToHF(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer, rows: Int, heads: Int) throws {
        try apply(src, into: dst, rows: rows, heads: heads, toGGUF: false)
    }

    /// Convenience on arrays of any trivial element type (Float, UInt16 for BF16, UInt8 for raw rows).
    public static func hfToGGUF<T>(_ w: [T], rows: Int, heads: Int) throws -> [T] {
        try permuted(w, rows: rows, heads: heads, toGGUF: true)
    }

    public static func ggufToHF<T>(_ w: [T], rows: Int, heads: Int) throws -> [T] {
        try permuted(w, rows: rows, heads: heads, toGGUF: false)
    }

    private static func permuted<T>(_ w: [T], rows: Int, heads: Int, toGGUF: Bool) throws -> [T] {
        guard !w.isEmpty else { return w }
        var out = w
        try w.withUnsafeBytes { s in
            try out.withUnsafeMutableBytes { d in try apply(s, into: d, rows: rows, heads: heads, toGGUF: toGGUF) }
        }
        return out
    }
}
