// Element types a Llama-family checkpoint uses, in safetensors and in GGUF.
//
// Plain types have one element per "block"; GGUF quantized types pack
// `blockElements` elements into `blockBytes` bytes (ggml's block structs).

public enum DType: String, Codable, CaseIterable, Sendable, Hashable {
    // Floats
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"
    // Integers and bool
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8"
    case u64 = "U64", u32 = "U32", u16 = "U16", u8 = "U8"
    case bool = "BOOL"
    // GGUF quant blocks (ggml type names)
    case q4_0 = "Q4_0", q4_1 = "Q4_1", q5_0 = "Q5_0", q5_1 = "Q5_1", q8_0 = "Q8_0"
    case q2_K = "Q2_K", q3_K = "Q3_K", q4_K = "Q4_K", q5_K = "Q5_K", q6_K = "Q6_K", q8_K = "Q8_K"

    /// Elements per block: 1 for plain types, 32 or 256 for quant blocks.
    public var blockElements: Int {
        switch self {
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0: return 32
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K: return 256
        default: return 1
        }
    }

    /// Bytes per block (ggml's `type_size`).
    public var blockBytes: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .f8e4m3, .f8e5m2, .i8, .u8, .bool: return 1
        case .q4_0: return 2 + 16          // d:f16, qs[16]
        case .q4_1: return 2 + 2 + 16      // d:f16, m:f16, qs[16]
        case .q5_0: return 2 + 4 + 16      // d:f16, qh[4], qs[16]
        case .q5_1: return 2 + 2 + 4 + 16  // d, m, qh[4], qs[16]
        case .q8_0: return 2 + 32          // d:f16, qs[32] int8
        case .q2_K: return 16 + 64 + 2 + 2 // scales[16], qs[64], d, dmin
        case .q3_K: return 32 + 64 + 12 + 2 // hmask[32], qs[64], scales[12], d
        case .q4_K: return 2 + 2 + 12 + 128 // d, dmin, scales[12], qs[128]
        case .q5_K: return 2 + 2 + 12 + 32 + 128 // d, dmin, scales[12], qh[32], qs[128]
        case .q6_K: return 128 + 64 + 16 + 2 // ql[128], qh[64], scales[16] int8, d
        case .q8_K: return 4 + 256 + 32    // d:f32, qs[256], bsums[16] int16
        }
    }

    public var isQuantized: Bool { blockElements > 1 }
    public var isFloat: Bool {
        switch self {
        case .f64, .f32, .f16, .bf16, .f8e4m3, .f8e5m2: return true
        default: return isQuantized
        }
    }

    /// Bytes for `elements` elements, or nil when `elements` is not a whole number of blocks
    /// or the product overflows.
    public func byteCount(elements: Int) -> Int? {
        guard elements >= 0, elements % blockElements == 0 else { return nil }
        let (r, o) = (elements / blockElements).multipliedReportingOverflow(by: blockBytes)
        return o ? nil : r
    }
}

/// Number of elements of a shape, nil on overflow or a negative dimension.
public func elementCount(_ shape: [Int]) -> Int? {
    var n = 1
    for d in shape {
        guard d >= 0 else { return nil }
        let (r, o) = n.multipliedReportingOverflow(by: d)
        if o { return nil }
        n = r
    }
    return n
}
