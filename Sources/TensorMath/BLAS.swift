import CBLAS

// The one file that calls cblas.

/// C (M,N) = alpha * A (M,K) @ B(K,N)ᵀ? ... row-major sgemm.
/// `transA`/`transB` say whether A and B are stored transposed.
@inline(__always)
public func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                  alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                  b: UnsafePointer<Float>, ldb: Int,
                  beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Threads OpenBLAS uses for one sgemm (OPENBLAS_NUM_THREADS, or the core count, by default).
public var blasThreadCount: Int { Int(openblas_get_num_threads()) }

/// Sets the threads of both OpenBLAS and the non-BLAS ops (`TensorMathThreads.count`), e.g. from
/// a `--threads` flag. Call it once at start-up, before any op runs.
public func setTensorMathThreads(_ n: Int) {
    let n = max(1, n)
    openblas_set_num_threads(Int32(n))
    TensorMathThreads.count = n
}
