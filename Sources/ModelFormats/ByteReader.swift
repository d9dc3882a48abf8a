// A bounds-checked little-endian cursor over bytes. Every read checks the remaining
// length first and throws (never traps) when the input is short.

public struct ByteReaderError: Error, Equatable, CustomStringConvertible {
    /// Offset at which the read started.
    public var offset: Int
    /// Bytes the read needed.
    public var needed: Int
    /// Bytes that were left.
    public var available: Int
    public var description: String {
        "input truncated at offset \(offset): needed \(needed) bytes, only \(available) left"
    }
}

public struct ByteReader {
    public let bytes: UnsafeRawBufferPointer
    public private(set) var offset: Int

    public init(_ bytes: UnsafeRawBufferPointer, offset: Int = 0) {
        self.bytes = bytes
        self.offset = max(0, min(offset, bytes.count))
    }

    public var remaining: Int { bytes.count - offset }
    public var isAtEnd: Bool { offset == bytes.count }

    @inline(__always)
    private func check(_ n: Int) throws {
        guard n >= 0, n <= bytes.count - offset else {
            throw ByteReaderError(offset: offset, needed: n, available: bytes.count - offset)
        }
    }

    /// A little-endian integer.
    public mutating func read<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let n = MemoryLayout<T>.size
        try check(n)
        let v = bytes.baseAddress!.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += n
        return T(littleEndian: v)
    }

    public mutating func readFloat() throws -> Float { Float(bitPattern: try read(UInt32.self)) }
    public mutating func readDouble() throws -> Double { Double(bitPattern: try read(UInt64.self)) }

    /// `n` bytes, as a view into the input.
    public mutating func readBytes(_ n: Int) throws -> UnsafeRawBufferPointer {
        try check(n)
        let r = n == 0 ? UnsafeRawBufferPointer(start: nil, count: 0)
                       : UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)])
        offset += n
        return r
    }

    public mutating func skip(_ n: Int) throws {
        try check(n)
        offset += n
    }
}
