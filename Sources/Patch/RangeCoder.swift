// An adaptive binary range coder (the LZMA scheme: 11-bit probabilities, shift-5 adaptation,
// carry propagation through a cache byte) and an adaptive coder for unsigned integers built on
// it. The float delta encoding (DeltaCodec.swift) uses it to code each element's difference in
// the context of the element's exponent, which a byte-oriented compressor cannot do.

/// Probabilities of a 0 bit, in units of 1/2048. Every model starts at 1/2.
struct BitModels {
    var p: [UInt16]
    init(count: Int) { p = [UInt16](repeating: 1024, count: count) }
}

struct RangeEncoder {
    private var low: UInt64 = 0
    private var range: UInt32 = 0xFFFF_FFFF
    private var cache: UInt8 = 0
    private var cacheSize = 1
    private(set) var bytes: [UInt8] = []

    init(reserve: Int) { bytes.reserveCapacity(reserve) }

    @inline(__always) private mutating func shiftLow() {
        if low < 0xFF00_0000 || low > 0xFFFF_FFFF {
            let carry = UInt8(truncatingIfNeeded: low >> 32)
            var temp = cache
            repeat {
                bytes.append(temp &+ carry)
                temp = 0xFF
                cacheSize -= 1
            } while cacheSize != 0
            cache = UInt8(truncatingIfNeeded: low >> 24)
        }
        cacheSize += 1
        low = (low & 0x00FF_FFFF) << 8
    }

    @inline(__always) mutating func encode(_ bit: Bool, _ m: UnsafeMutablePointer<UInt16>) {
        let p = UInt32(m.pointee)
        let bound = (range >> 11) &* p
        if !bit {
            range = bound
            m.pointee = UInt16(p &+ ((2048 &- p) >> 5))
        } else {
            low &+= UInt64(bound)
            range &-= bound
            m.pointee = UInt16(p &- (p >> 5))
        }
        while range < (1 << 24) { range <<= 8; shiftLow() }
    }

    /// `count` bits of `value`, most significant first, each with probability 1/2.
    @inline(__always) mutating func encodeDirect(_ value: UInt32, count: Int) {
        var i = count
        while i > 0 {
            i -= 1
            range >>= 1
            if (value >> UInt32(i)) & 1 != 0 { low &+= UInt64(range) }
            while range < (1 << 24) { range <<= 8; shiftLow() }
        }
    }

    mutating func finish() -> [UInt8] {
        for _ in 0..<5 { shiftLow() }
        return bytes
    }
}

struct RangeDecoder {
    private var range: UInt32 = 0xFFFF_FFFF
    private var code: UInt32 = 0
    private let base: UnsafePointer<UInt8>
    private let end: Int
    private var pos = 0
    /// Set when the decoder ran past the end of its input: the frame is corrupt.
    private(set) var overrun = false

    init?(_ buf: UnsafeRawBufferPointer) {
        guard buf.count >= 5, let b = buf.baseAddress, buf[0] == 0 else { return nil }
        base = b.assumingMemoryBound(to: UInt8.self)
        end = buf.count
        pos = 1
        for _ in 0..<4 { code = (code << 8) | UInt32(base[pos]); pos += 1 }
    }

    /// All input consumed, and nothing more.
    var finishedExactly: Bool { !overrun && pos == end }

    @inline(__always) private mutating func next() -> UInt32 {
        if pos < end { let b = base[pos]; pos += 1; return UInt32(b) }
        overrun = true
        return 0
    }

    @inline(__always) mutating func decode(_ m: UnsafeMutablePointer<UInt16>) -> Bool {
        let p = UInt32(m.pointee)
        let bound = (range >> 11) &* p
        let bit: Bool
        if code < bound {
            range = bound
            m.pointee = UInt16(p &+ ((2048 &- p) >> 5))
            bit = false
        } else {
            code &-= bound
            range &-= bound
            m.pointee = UInt16(p &- (p >> 5))
            bit = true
        }
        if range < (1 << 24) { range <<= 8; code = (code << 8) | next() }
        return bit
    }

    @inline(__always) mutating func decodeDirect(count: Int) -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<count {
            range >>= 1
            var bit: UInt32 = 0
            if code >= range { code &-= range; bit = 1 }
            v = (v << 1) | bit
            if range < (1 << 24) { range <<= 8; code = (code << 8) | next() }
        }
        return v
    }
}

/// Adaptive models for one context of unsigned integers up to 32 bits:
/// a zero flag, the bit length in unary, the two bits below the leading one modelled,
/// the rest sent directly.
enum NumberModel {
    static let zero = 0
    static let length = 1            // 31 unary models
    static let mantissa = 32         // 33 lengths × 3 models
    static let size = 32 + 33 * 3

    @inline(__always) static func encode(_ v: UInt32, _ m: UnsafeMutablePointer<UInt16>, _ rc: inout RangeEncoder) {
        if v == 0 { rc.encode(false, m + zero); return }
        rc.encode(true, m + zero)
        let k = 32 - v.leadingZeroBitCount                    // 1...32
        var j = 0
        while j < 31 {
            let more = k - 1 > j
            rc.encode(more, m + length + j)
            if !more { break }
            j += 1
        }
        if k >= 2 {
            let b1 = (v >> UInt32(k - 2)) & 1
            rc.encode(b1 != 0, m + mantissa + k * 3)
            if k >= 3 {
                let b2 = (v >> UInt32(k - 3)) & 1
                rc.encode(b2 != 0, m + mantissa + k * 3 + 1 + Int(b1))
                if k >= 4 { rc.encodeDirect(v & ((1 << UInt32(k - 3)) - 1), count: k - 3) }
            }
        }
    }

    @inline(__always) static func decode(_ m: UnsafeMutablePointer<UInt16>, _ rc: inout RangeDecoder) -> UInt32 {
        if !rc.decode(m + zero) { return 0 }
        var k = 1
        while k < 32, rc.decode(m + length + (k - 1)) { k += 1 }
        var v: UInt32 = 1
        if k >= 2 {
            let b1: UInt32 = rc.decode(m + mantissa + k * 3) ? 1 : 0
            v = (v << 1) | b1
            if k >= 3 {
                let b2: UInt32 = rc.decode(m + mantissa + k * 3 + 1 + Int(b1)) ? 1 : 0
                v = (v << 1) | b2
                if k >= 4 { v = (v << UInt32(k - 3)) | rc.decodeDirect(count: k - 3) }
            }
        }
        return v
    }
}
