// Thin wrappers over libzstd's one-shot API.
import CZstd
import Foundation

enum Zstd {
    /// One zstd frame holding `input` (content size recorded in the frame header).
    static func compress(_ input: UnsafeRawBufferPointer, level: Int32) throws -> [UInt8] {
        let bound = ZSTD_compressBound(input.count)
        var out = [UInt8](repeating: 0, count: bound)
        let cctx = ZSTD_createCCtx()
        defer { ZSTD_freeCCtx(cctx) }
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0)
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1)
        let n = out.withUnsafeMutableBytes { o in
            ZSTD_compress2(cctx, o.baseAddress, o.count, input.baseAddress, input.count)
        }
        if ZSTD_isError(n) != 0 { throw PatchError.zstd(String(cString: ZSTD_getErrorName(n))) }
        out.removeSubrange(n...)
        return out
    }

    static func compress(_ input: [UInt8], level: Int32) throws -> [UInt8] {
        try input.withUnsafeBytes { try compress($0, level: level) }
    }

    /// Decompresses one frame that must hold exactly `expected` bytes into `out`.
    static func decompress(_ frame: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer,
                           expected: Int, tensor: String) throws {
        let size = ZSTD_getFrameContentSize(frame.baseAddress, frame.count)
        guard size != ZSTD_CONTENTSIZE_ERROR, size != ZSTD_CONTENTSIZE_UNKNOWN, size == UInt64(expected),
              out.count >= expected else {
            throw PatchError.corruptFrame(tensor: tensor, detail: "zstd frame does not declare \(expected) bytes")
        }
        let n = ZSTD_decompress(out.baseAddress, expected, frame.baseAddress, frame.count)
        if ZSTD_isError(n) != 0 {
            throw PatchError.corruptFrame(tensor: tensor, detail: String(cString: ZSTD_getErrorName(n)))
        }
        guard n == expected else { throw PatchError.corruptFrame(tensor: tensor, detail: "zstd frame holds \(n) bytes, expected \(expected)") }
    }

    static func decompress(_ frame: UnsafeRawBufferPointer, expected: Int, tensor: String) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: expected)
        try out.withUnsafeMutableBytes { try decompress(frame, into: $0, expected: expected, tensor: tensor) }
        return out
    }
}
