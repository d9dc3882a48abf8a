// Small vector kernels shared by the non-BLAS ops: 8-wide SIMD loads/stores on raw pointers
// (no bounds checks, no Array), a vectorised expf, and a chunked parallel-for.
//
// Why not Foundation's expf: SwiGLU calls exp 1536 times per token per block; a scalar libm call
// per element costs as much as the block's matmuls. The polynomial below (Cephes expf) is within
// ~2 ulp of libm on the range we use and runs 8 lanes at a time.

import Dispatch
import Foundation

typealias F8 = SIMD8<Float>

@inline(__always) func load8(_ p: UnsafePointer<Float>) -> F8 {
    UnsafeRawPointer(p).loadUnaligned(as: F8.self)
}

@inline(__always) func load8(_ p: UnsafeMutablePointer<Float>) -> F8 {
    UnsafeRawPointer(p).loadUnaligned(as: F8.self)
}

@inline(__always) func store8(_ p: UnsafeMutablePointer<Float>, _ v: F8) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: F8.self)
}

/// Σ a[i]·b[i], i < n, with two 8-lane accumulators (fixed summation order: deterministic).
@inline(__always) func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var s0 = F8(), s1 = F8()
    var i = 0
    while i + 16 <= n {
        s0 += load8(a + i) * load8(b + i)
        s1 += load8(a + i + 8) * load8(b + i + 8)
        i += 16
    }
    if i + 8 <= n { s0 += load8(a + i) * load8(b + i); i += 8 }
    var s = (s0 + s1).sum()
    while i < n { s += a[i] * b[i]; i += 1 }
    return s
}

/// y[i] += alpha · x[i], i < n.
@inline(__always) func axpy(_ y: UnsafeMutablePointer<Float>, _ alpha: Float, _ x: UnsafePointer<Float>, _ n: Int) {
    let a = F8(repeating: alpha)
    var i = 0
    while i + 8 <= n { store8(y + i, load8(y + i) + a * load8(x + i)); i += 8 }
    while i < n { y[i] += alpha * x[i]; i += 1 }
}

/// y[i] *= alpha, i < n.
@inline(__always) func scale(_ y: UnsafeMutablePointer<Float>, _ alpha: Float, _ n: Int) {
    let a = F8(repeating: alpha)
    var i = 0
    while i + 8 <= n { store8(y + i, load8(y + i) * a); i += 8 }
    while i < n { y[i] *= alpha; i += 1 }
}

/// max x[i], i < n (n ≥ 1). 4-wide with replacing(with:where:), which lowers to maxps-like code
/// (pointwiseMax on SIMD8 is an out-of-line call).
@inline(__always) func maxElement(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var i = 0
    var m = -Float.infinity
    if n >= 8 {
        var a = UnsafeRawPointer(x).loadUnaligned(as: SIMD4<Float>.self)
        var b = UnsafeRawPointer(x + 4).loadUnaligned(as: SIMD4<Float>.self)
        i = 8
        while i + 8 <= n {
            let c = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD4<Float>.self)
            let d = UnsafeRawPointer(x + i + 4).loadUnaligned(as: SIMD4<Float>.self)
            a = a.replacing(with: c, where: c .> a)
            b = b.replacing(with: d, where: d .> b)
            i += 8
        }
        a = a.replacing(with: b, where: b .> a)
        m = Swift.max(Swift.max(a[0], a[1]), Swift.max(a[2], a[3]))
    }
    while i < n { m = Swift.max(m, x[i]); i += 1 }
    return m
}

typealias F4 = SIMD4<Float>

/// e^x lane by lane (Cephes expf). Inputs below −87.3 give 0; above 88.3 are clamped (≈2.2e38).
/// Written 4-wide with `replacing(with:where:)`: on baseline x86-64 (SSE2) that lowers to
/// cmpps/maxps/and/or with no calls; 8-lane masks lower to lane shuffles and 10x slower code.
@inline(__always) func exp4(_ xIn: F4) -> F4 {
    let lo = F4(repeating: -87.3), hi = F4(repeating: 88.3)
    var x = xIn.replacing(with: lo, where: xIn .< lo).replacing(with: hi, where: xIn .> hi)
    // n = round(x / ln 2) by the 1.5·2^23 trick: t's low mantissa bits hold n (no roundps in SSE2).
    let magic = F4(repeating: 12582912.0)
    let t = x * F4(repeating: 1.44269504088896341) + magic
    let fx = t - magic
    x = x - fx * F4(repeating: 0.693359375) - fx * F4(repeating: -2.12194440e-4)
    let z = x * x
    var y = F4(repeating: 1.9875691500e-4)
    y = y * x + F4(repeating: 1.3981999507e-3)
    y = y * x + F4(repeating: 8.3334519073e-3)
    y = y * x + F4(repeating: 4.1665795894e-2)
    y = y * x + F4(repeating: 1.6666665459e-1)
    y = y * x + F4(repeating: 5.0000001201e-1)
    y = y * z + x + F4(repeating: 1)
    // 2^n: (n + 127) << 23, with n = bits(t) − bits(1.5·2^23)
    let tb = unsafeBitCast(t, to: SIMD4<Int32>.self)
    let pow2 = unsafeBitCast((tb &- 0x4B40_0000 &+ 127) &<< 23, to: F4.self)
    return (y * pow2).replacing(with: 0, where: xIn .< lo)
}

@inline(__always) func exp8(_ x: F8) -> F8 {
    F8(lowHalf: exp4(x.lowHalf), highHalf: exp4(x.highHalf))
}

/// Scalar e^x with the same polynomial as `exp8` (so tails agree with vector lanes).
@inline(__always) func exp1(_ x: Float) -> Float {
    exp4(F4(repeating: x))[0]
}

// MARK: - threads

/// Threads the non-BLAS ops split work over (BLAS has its own: OPENBLAS_NUM_THREADS).
/// Defaults to the active processor count; set it once at start-up, before any op runs.
public enum TensorMathThreads {
    nonisolated(unsafe) public static var count: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)
}

/// Runs body over [0, n) split into contiguous chunks, in parallel when the work is large enough.
/// Each index lands in exactly one chunk, so results do not depend on the thread count as long
/// as body writes only to its own indices.
@inline(__always) func parallelRanges(_ n: Int, minChunk: Int, _ body: (Range<Int>) -> Void) {
    let threads = TensorMathThreads.count
    if threads <= 1 || n < 2 * minChunk {
        if n > 0 { body(0..<n) }
        return
    }
    let chunks = min(threads, n / minChunk)
    DispatchQueue.concurrentPerform(iterations: chunks) { c in
        let lo = n * c / chunks, hi = n * (c + 1) / chunks
        if lo < hi { body(lo..<hi) }
    }
}

// MARK: - log-sum-exp of a logit row (additive API)

/// Σ exp(x[i] − shift), i < n: each term by the 8-lane float exp (≈ 2 ulp), summed in Double.
/// With shift = max x every term is ≤ 1, so the float exp loses nothing that matters for
/// probabilities (relative error ≈ 1e-7 on the sum) and runs ~8× faster than libm's double exp.
public func sumExpShifted(_ x: UnsafePointer<Float>, _ n: Int, shift: Float) -> Double {
    let sv = F8(repeating: shift)
    var acc = SIMD8<Double>()
    var i = 0
    while i + 8 <= n {
        let e = exp8(load8(x + i) - sv)
        acc += SIMD8<Double>(e)
        i += 8
    }
    var s = acc.sum()
    while i < n { s += Double(exp1(x[i] - shift)); i += 1 }
    return s
}

/// max x[i], i < n (n ≥ 1).
public func maxValue(_ x: UnsafePointer<Float>, _ n: Int) -> Float { maxElement(x, n) }
