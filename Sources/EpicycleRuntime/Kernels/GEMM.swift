import COpenBLAS

// Row-major single-precision matrix product through OpenBLAS:
//   C[M, N] = alpha · op(A)[M, K] · op(B)[K, N] + beta · C
// Leading dimensions default to the packed row length, so sub-matrices (e.g. one group's channels
// inside an NHWC row) are addressed by passing an offset pointer and the full row length.
@inlinable
public func gemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int? = nil,
    b: UnsafePointer<Float>, ldb: Int? = nil,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int? = nil
) {
    if m == 0 || n == 0 { return }
    let lda = lda ?? (transposeA ? m : k)
    let ldb = ldb ?? (transposeB ? k : n)
    let ldc = ldc ?? n
    cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

// The same product by three loops, as the reference the fast paths are tested against.
public func gemmReference(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int? = nil,
    b: UnsafePointer<Float>, ldb: Int? = nil,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int? = nil
) {
    let lda = lda ?? (transposeA ? m : k)
    let ldb = ldb ?? (transposeB ? k : n)
    let ldc = ldc ?? n
    for i in 0..<m {
        for j in 0..<n {
            var sum: Double = 0
            for p in 0..<k {
                let aValue = transposeA ? a[p * lda + i] : a[i * lda + p]
                let bValue = transposeB ? b[j * ldb + p] : b[p * ldb + j]
                sum += Double(aValue) * Double(bValue)
            }
            let previous = beta == 0 ? 0 : beta * c[i * ldc + j]
            c[i * ldc + j] = alpha * Float(sum) + previous
        }
    }
}

/// The BLAS library and the kernel set it chose when it loaded (`OPENBLAS_CORETYPE` overrides it).
public var blasDescription: String {
    let core = String(cString: openblas_get_corename())
    // The configuration string already starts with the library's name ("OpenBLAS 0.3.21 DYNAMIC_ARCH …").
    let config = String(cString: openblas_get_config())
    let library = config.hasPrefix("OpenBLAS") ? config : "OpenBLAS " + config
    return "\(library), kernels \(core), \(openblas_get_num_threads()) threads"
}

/// How many threads OpenBLAS uses for its products.
public var blasThreads: Int { Int(openblas_get_num_threads()) }

/// Sets how many threads OpenBLAS uses for the products that follow.
public func setBLASThreads(_ count: Int) {
    openblas_set_num_threads(Int32(max(1, count)))
}
