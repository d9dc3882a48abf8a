import XCTest
@testable import ModelFormats

/// Dequantization throughput. Not part of the normal suite: runs only with LFTF_BENCH=1
///   LFTF_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter QuantBenchmarkTests
/// Prints a Markdown table (GB/s of source bytes, elements/s), best of 5 runs over 8M elements.
final class QuantBenchmarkTests: XCTestCase {
    func testDequantThroughput() throws {
        guard ProcessInfo.processInfo.environment["LFTF_BENCH"] == "1" else { throw XCTSkip("set LFTF_BENCH=1 to run benchmarks") }
        let n = 8 << 20
        var out = [Float](repeating: 0, count: n)
        var rows: [String] = ["| type | source bytes | GB/s (source) | Gelem/s |", "|---|---:|---:|---:|"]
        let types: [DType] = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K]
        var s: UInt64 = 1
        for t in types {
            let bytes = t.byteCount(elements: n)!
            var src = [UInt8](repeating: 0, count: bytes)
            for i in 0..<bytes { s = s &* 6364136223846793005 &+ 1442695040888963407; src[i] = UInt8(truncatingIfNeeded: s >> 56) }
            // Keep f16 scales finite so timings reflect real data (clear the top exponent bit of every byte pair).
            if t != .f32 { for i in stride(from: 1, to: bytes, by: 2) { src[i] &= 0x3F } }
            var best = Double.infinity
            for _ in 0..<5 {
                let t0 = DispatchTime.now().uptimeNanoseconds
                try src.withUnsafeBytes { sp in try out.withUnsafeMutableBufferPointer { try dequantize(sp, dtype: t, count: n, into: $0.baseAddress!) } }
                best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
            }
            rows.append(String(format: "| %@ | %d | %.2f | %.2f |", t.rawValue, bytes, Double(bytes) / best / 1e9, Double(n) / best / 1e9))
            XCTAssertFalse(out[n - 1].isNaN && t == .q8_0)
        }
        print(rows.joined(separator: "\n"))
    }
}

import TestSupport

extension QuantBenchmarkTests {
    /// Opening the sample GGUF (parse + validate header, 1.7 MB of metadata) and dequantizing all of it.
    func testSampleOpenAndDequantAll() throws {
        guard ProcessInfo.processInfo.environment["LFTF_BENCH"] == "1" else { throw XCTSkip("set LFTF_BENCH=1 to run benchmarks") }
        let url = try requireSampleModel()
        var bestOpen = Double.infinity, bestAll = Double.infinity
        var bytes = 0, elems = 0
        for _ in 0..<5 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let ck = try GGUFCheckpoint(url: url)
            bestOpen = min(bestOpen, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
            let t1 = DispatchTime.now().uptimeNanoseconds
            bytes = 0; elems = 0
            for t in ck.tensors { let v = try ck.floats(t); bytes += t.byteCount; elems += v.count }
            bestAll = min(bestAll, Double(DispatchTime.now().uptimeNanoseconds - t1) / 1e9)
        }
        print(String(format: "sample GGUF: open %.1f ms; dequantize all %d tensors (%d bytes, %d elements) %.0f ms = %.2f GB/s source, %.2f Gelem/s",
                     bestOpen * 1e3, 272, bytes, elems, bestAll * 1e3, Double(bytes) / bestAll / 1e9, Double(elems) / bestAll / 1e9))
    }
}
