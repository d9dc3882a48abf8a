import XCTest

/// Largest |a − b| over two equal-length arrays, and where it happened.
public func maxAbsDiff(_ a: [Float], _ b: [Float]) -> (diff: Float, index: Int) {
    var best: Float = 0, at = -1
    for i in 0..<min(a.count, b.count) {
        let d = abs(a[i] - b[i])
        if d > best || d.isNaN { best = d; at = i; if d.isNaN { break } }
    }
    return (best, at)
}

/// Fails unless |actual − expected| ≤ atol + rtol·|expected| everywhere. On failure it prints the
/// max abs difference and the first few mismatching (index, actual, expected) triples.
public func assertClose(_ actual: [Float], _ expected: [Float], atol: Float, rtol: Float = 0,
                        _ message: @autoclosure () -> String = "",
                        file: StaticString = #filePath, line: UInt = #line) {
    guard actual.count == expected.count else {
        XCTFail("\(message()) count \(actual.count) != expected \(expected.count)", file: file, line: line)
        return
    }
    var bad: [(Int, Float, Float)] = [], nBad = 0
    for i in 0..<actual.count {
        let a = actual[i], e = expected[i]
        let ok = abs(a - e) <= atol + rtol * abs(e)
        if !ok {  // NaN fails too
            nBad += 1
            if bad.count < 5 { bad.append((i, a, e)) }
        }
    }
    if nBad > 0 {
        let (d, at) = maxAbsDiff(actual, expected)
        let firsts = bad.map { "[\($0.0)] \($0.1) vs \($0.2)" }.joined(separator: ", ")
        XCTFail("\(message()) \(nBad)/\(actual.count) mismatches (atol \(atol), rtol \(rtol)); max |diff| \(d) at \(at); first: \(firsts)",
                file: file, line: line)
    }
}

/// Scalar form of `assertClose`.
public func assertClose(_ actual: Float, _ expected: Float, atol: Float, rtol: Float = 0,
                        _ message: @autoclosure () -> String = "",
                        file: StaticString = #filePath, line: UInt = #line) {
    assertClose([actual], [expected], atol: atol, rtol: rtol, message(), file: file, line: line)
}
