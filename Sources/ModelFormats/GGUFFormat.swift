// GGUF container types (ggml docs/gguf.md), shared by the reader and the writer.
//
//   struct gguf_file {
//     uint32_t magic;            // "GGUF" = 0x46554747 little-endian
//     uint32_t version;          // 2 or 3 here (1 used 32-bit counts and is not read)
//     uint64_t tensor_count;
//     uint64_t metadata_kv_count;
//     gguf_metadata_kv_t kv[metadata_kv_count];    // key: gguf_string, type: u32, value
//     gguf_tensor_info_t info[tensor_count];       // name, n_dims: u32, ne[n_dims]: u64,
//                                                  // type: u32 (ggml_type), offset: u64
//     uint8_t padding[];         // zeros up to a multiple of general.alignment (default 32)
//     uint8_t data[];            // tensor i at data + info[i].offset (aligned)
//   };
//   gguf_string = uint64_t len; char bytes[len] (UTF-8, no terminator)
//   array value = uint32_t elem_type; uint64_t count; elements

public let ggufMagic: UInt32 = 0x4655_4747
public let ggufDefaultAlignment = 32
/// ggml's GGML_MAX_DIMS.
public let ggufMaxDimensions = 4

/// ggml's `enum ggml_type` (values are stored in files; never renumber).
public enum GGMLType: UInt32, Sendable, CaseIterable, Codable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3
    // 4, 5 were Q4_2, Q4_3 (removed)
    case q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
    case iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21, iq2_s = 22, iq4_xs = 23
    case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_m = 29, bf16 = 30
    // 31-33 were Q4_0_4_4, Q4_0_4_8, Q4_0_8_8 (removed)
    case tq1_0 = 34, tq2_0 = 35
    // 36-38 were IQ4_NL_4_4, IQ4_NL_4_8, IQ4_NL_8_8 (removed)
    case mxfp4 = 39

    /// The element type this tool handles, or nil for ggml types it does not (IQ*, TQ*, Q8_1, MXFP4).
    public var dtype: DType? {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        case .f64: return .f64
        case .i8: return .i8
        case .i16: return .i16
        case .i32: return .i32
        case .i64: return .i64
        case .q4_0: return .q4_0
        case .q4_1: return .q4_1
        case .q5_0: return .q5_0
        case .q5_1: return .q5_1
        case .q8_0: return .q8_0
        case .q2_K: return .q2_K
        case .q3_K: return .q3_K
        case .q4_K: return .q4_K
        case .q5_K: return .q5_K
        case .q6_K: return .q6_K
        case .q8_K: return .q8_K
        default: return nil
        }
    }

    /// ggml's name for the type ("Q4_K", "IQ2_XXS").
    public var name: String {
        switch self {
        case .iq2_xxs: return "IQ2_XXS"
        case .iq2_xs: return "IQ2_XS"
        case .iq3_xxs: return "IQ3_XXS"
        case .iq1_s: return "IQ1_S"
        case .iq4_nl: return "IQ4_NL"
        case .iq3_s: return "IQ3_S"
        case .iq2_s: return "IQ2_S"
        case .iq4_xs: return "IQ4_XS"
        case .iq1_m: return "IQ1_M"
        case .tq1_0: return "TQ1_0"
        case .tq2_0: return "TQ2_0"
        case .q8_1: return "Q8_1"
        case .mxfp4: return "MXFP4"
        default: return dtype!.rawValue
        }
    }

    public init?(_ dtype: DType) {
        guard let t = GGMLType.allCases.first(where: { $0.dtype == dtype }) else { return nil }
        self = t
    }
}

public enum GGUFError: Error, CustomStringConvertible, Equatable {
    /// The file is shorter than the fixed 24-byte header.
    case fileTooSmall(size: Int)
    /// The first four bytes are not "GGUF".
    case badMagic(found: [UInt8])
    /// A version other than 2 or 3.
    case unsupportedVersion(UInt32)
    /// A read ran past the end of the file.
    case truncated(what: String, offset: Int, needed: Int, available: Int)
    /// A count that cannot fit in the remaining bytes of the file.
    case absurdCount(what: String, count: UInt64, max: Int)
    /// A string longer than the limit (or than the rest of the file).
    case stringTooLong(what: String, length: UInt64, max: Int)
    /// A string that is not valid UTF-8.
    case invalidUTF8(what: String, offset: Int)
    /// A metadata value type number that gguf does not define.
    case unknownValueType(key: String, raw: UInt32)
    /// Arrays nested deeper than the limit.
    case nestingTooDeep(key: String, depth: Int)
    /// The same metadata key twice.
    case duplicateKey(String)
    /// `general.alignment` is not a u32, or not a power of two.
    case invalidAlignment(String)
    /// A tensor with 0 or more than 4 dimensions.
    case invalidDimensionCount(tensor: String, count: UInt32)
    /// A dimension that is negative as Int64 or whose product overflows.
    case invalidShape(tensor: String, ne: [UInt64])
    /// A ggml type number that does not exist.
    case unknownTensorType(tensor: String, raw: UInt32)
    /// A ggml type this tool does not read (IQ*, TQ*, ...).
    case unsupportedTensorType(tensor: String, type: String)
    /// ne[0] is not a whole number of quant blocks.
    case rowNotBlockMultiple(tensor: String, type: String, rowLength: UInt64, blockElements: Int)
    /// Two tensors with the same name.
    case duplicateTensorName(String)
    /// A tensor offset that is not a multiple of the alignment.
    case misalignedTensor(tensor: String, offset: UInt64, alignment: Int)
    /// A tensor whose bytes do not lie inside the data section.
    case tensorOutOfRange(tensor: String, offset: UInt64, byteCount: Int, dataSize: Int)
    /// Two tensors share bytes.
    case overlappingTensors(String, String)
    /// A metadata key the caller needs is absent.
    case missingMetadata(String)
    /// A metadata key with a value of the wrong type or out of range.
    case badMetadataValue(key: String, expected: String)
    /// A tensor the caller asked for does not exist.
    case tensorNotFound(String)
    /// The writer was given data of the wrong size, in the wrong order, or too few tensors.
    case writerMisuse(String)

    public var description: String {
        switch self {
        case .fileTooSmall(let s):
            return "not a GGUF file: only \(s) bytes (a GGUF header is at least 24)"
        case .badMagic(let f):
            let ascii = String(decoding: f.map { (32...126).contains($0) ? $0 : 46 }, as: UTF8.self)
            return "not a GGUF file: magic is \(f.map { String(format: "%02x", $0) }.joined(separator: " ")) (\"\(ascii)\"), expected \"GGUF\""
        case .unsupportedVersion(let v):
            if v.byteSwapped == 2 || v.byteSwapped == 3 { return "GGUF version \(v) looks like a big-endian file (version \(v.byteSwapped)); only little-endian GGUF is supported" }
            return "unsupported GGUF version \(v); versions 2 and 3 are supported"
        case .truncated(let w, let o, let n, let a):
            return "GGUF file truncated: reading \(w) at offset \(o) needs \(n) bytes, only \(a) left"
        case .absurdCount(let w, let c, let m):
            return "GGUF file corrupt or truncated: \(w) is \(c), more than the \(m) the rest of the file can hold"
        case .stringTooLong(let w, let l, let m):
            return "GGUF file corrupt: \(w) has length \(l), limit \(m)"
        case .invalidUTF8(let w, let o):
            return "GGUF file corrupt: \(w) at offset \(o) is not valid UTF-8"
        case .unknownValueType(let k, let r):
            return "GGUF file corrupt: metadata \(k) has unknown value type \(r)"
        case .nestingTooDeep(let k, let d):
            return "GGUF file corrupt: metadata \(k) nests arrays deeper than \(d)"
        case .duplicateKey(let k):
            return "GGUF file corrupt: metadata key \(k) appears twice"
        case .invalidAlignment(let s):
            return "GGUF file corrupt: general.alignment \(s)"
        case .invalidDimensionCount(let t, let c):
            return "GGUF file corrupt: tensor \(t) has \(c) dimensions (1...\(ggufMaxDimensions) allowed)"
        case .invalidShape(let t, let ne):
            return "GGUF file corrupt: tensor \(t) has shape ne=\(ne), too large"
        case .unknownTensorType(let t, let r):
            return "GGUF file corrupt: tensor \(t) has unknown ggml type \(r)"
        case .unsupportedTensorType(let t, let ty):
            return "tensor \(t) has ggml type \(ty), which lftf-patch does not read (supported: F32, F16, BF16, F64, I8-I64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K-Q6_K, Q8_K)"
        case .rowNotBlockMultiple(let t, let ty, let r, let b):
            return "GGUF file corrupt: tensor \(t) of type \(ty) has rows of \(r) elements, not a multiple of the block size \(b)"
        case .duplicateTensorName(let n):
            return "GGUF file corrupt: tensor \(n) appears twice"
        case .misalignedTensor(let t, let o, let a):
            return "GGUF file corrupt: tensor \(t) has data offset \(o), not a multiple of the alignment \(a)"
        case .tensorOutOfRange(let t, let o, let n, let d):
            return "GGUF file corrupt or truncated: tensor \(t) spans data bytes \(o)..<\(o &+ UInt64(n)) but the data section has \(d) bytes"
        case .overlappingTensors(let a, let b):
            return "GGUF file corrupt: tensors \(a) and \(b) overlap"
        case .missingMetadata(let k):
            return "GGUF metadata key \(k) is missing"
        case .badMetadataValue(let k, let e):
            return "GGUF metadata \(k) has the wrong type or value; expected \(e)"
        case .tensorNotFound(let n):
            return "no tensor named \(n) in the GGUF file"
        case .writerMisuse(let s):
            return "GGUF writer: \(s)"
        }
    }
}

/// One metadata entry, in file order.
public struct GGUFKeyValue: Sendable, Equatable {
    public var key: String
    public var value: GGUFValue
    public init(key: String, value: GGUFValue) { self.key = key; self.value = value }
}

/// One tensor-info record.
public struct GGUFTensorInfo: Sendable, Equatable {
    public var name: String
    /// ggml's ne: innermost (contiguous) dimension first.
    public var ne: [UInt64]
    public var type: GGMLType
    /// Offset relative to the start of the data section.
    public var offset: UInt64

    public init(name: String, ne: [UInt64], type: GGMLType, offset: UInt64) {
        self.name = name; self.ne = ne; self.type = type; self.offset = offset
    }

    /// The element type (readers only accept tensors whose type has one).
    public var dtype: DType { type.dtype! }
    /// Row-major shape, outermost first (ne reversed).
    public var shape: [Int] { ne.reversed().map { Int($0) } }
    public var elementCount: Int { ne.reduce(1) { $0 * Int($1) } }
    public var byteCount: Int { dtype.byteCount(elements: elementCount) ?? 0 }
}

@inline(__always)
func alignUp(_ x: Int, _ a: Int) -> Int { (x + a - 1) / a * a }
