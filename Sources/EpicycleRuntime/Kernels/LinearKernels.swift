// Fully connected (affine) kernels: output = input · weightᵀ + bias, as `torch.nn.functional.linear`.
//
// Legend: N rows (batch), I input features, O output features.
// input [N, I], weight [O, I] (PyTorch layout), bias [O], output [N, O].
//
// The row helpers at the bottom (bias broadcast, column sums, vector updates) are shared with the
// convolution kernels: after im2col a convolution is this same affine map over the column matrix.

/// output[N, O] = input[N, I] · weight[O, I]ᵀ + bias[O].
public func linearForward(
    batch: Int, inputFeatures: Int, outputFeatures: Int,
    input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
    output: UnsafeMutablePointer<Float>
) {
    let (N, I, O) = (batch, inputFeatures, outputFeatures)
    // Writing the bias first lets the product accumulate onto it (beta = 1): one pass over the output.
    if let bias { broadcastRows(bias, rows: N, columns: O, into: output) }
    gemm(transposeA: false, transposeB: true, m: N, n: O, k: I, a: input, b: weight,
         beta: bias == nil ? 0 : 1, c: output)
}

/// dInput[N, I] = dOutput[N, O] · weight[O, I] (overwritten).
public func linearBackwardInput(
    batch: Int, inputFeatures: Int, outputFeatures: Int,
    dOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>, dInput: UnsafeMutablePointer<Float>
) {
    let (N, I, O) = (batch, inputFeatures, outputFeatures)
    if I == 0 { return }
    if O == 0 { dInput.update(repeating: 0, count: N * I); return }
    gemm(transposeA: false, transposeB: false, m: N, n: I, k: O, a: dOutput, b: weight, c: dInput)
}

/// dWeight[O, I] += dOutput[N, O]ᵀ · input[N, I]; dBias[O] += Σ_n dOutput[n, O].
public func linearBackwardWeight(
    batch: Int, inputFeatures: Int, outputFeatures: Int,
    input: UnsafePointer<Float>, dOutput: UnsafePointer<Float>,
    dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?
) {
    let (N, I, O) = (batch, inputFeatures, outputFeatures)
    if N == 0 { return }
    gemm(transposeA: true, transposeB: false, m: O, n: I, k: N, a: dOutput, b: input, beta: 1, c: dWeight)
    if let dBias { addColumnSums(dOutput, rows: N, columns: O, into: dBias) }
}

// MARK: - References

/// `linearForward` by direct loops with Double sums, the reference the fast path is tested against.
public func linearForwardReference(
    batch: Int, inputFeatures: Int, outputFeatures: Int,
    input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
    output: UnsafeMutablePointer<Float>
) {
    let (N, I, O) = (batch, inputFeatures, outputFeatures)
    for n in 0..<N {
        for o in 0..<O {
            var sum = Double(bias?[o] ?? 0)
            for i in 0..<I { sum += Double(input[n * I + i]) * Double(weight[o * I + i]) }
            output[n * O + o] = Float(sum)
        }
    }
}

/// `linearBackwardInput` by direct loops.
public func linearBackwardInputReference(
    batch: Int, inputFeatures: Int, outputFeatures: Int,
    dOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>, dInput: UnsafeMutablePointer<Float>
) {
    let (N, I, O) = (batch, inputFeatures, outputFeatures)
    for n in 0..<N {
        for i in 0..<I {
            var sum: Double = 0
            for o in 0..<O { sum += Double(dOutput[n * O + o]) * Double(weight[o * I + i]) }
            dInput[n * I + i] = Float(sum)
        }
    }
}

/// `linearBackwardWeight` by direct loops (accumulating, like the fast one).
public func linearBackwardWeightReference(
    batch: Int, inputFeatures: Int, outputFeatures: Int,
    input: UnsafePointer<Float>, dOutput: UnsafePointer<Float>,
    dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?
) {
    let (N, I, O) = (batch, inputFeatures, outputFeatures)
    for o in 0..<O {
        for i in 0..<I {
            var sum: Double = 0
            for n in 0..<N { sum += Double(dOutput[n * O + o]) * Double(input[n * I + i]) }
            dWeight[o * I + i] += Float(sum)
        }
        if let dBias {
            var sum: Double = 0
            for n in 0..<N { sum += Double(dOutput[n * O + o]) }
            dBias[o] += Float(sum)
        }
    }
}

// MARK: - Row helpers

// Lane count of the explicit vector loops: 16 floats is one AVX-512 register (two AVX2 ones).
typealias FloatVector = SIMD16<Float>

@inline(__always)
func loadVector(_ pointer: UnsafePointer<Float>) -> FloatVector {
    UnsafeRawPointer(pointer).loadUnaligned(as: FloatVector.self)
}

@inline(__always)
func storeVector(_ value: FloatVector, _ pointer: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(pointer).storeBytes(of: value, as: FloatVector.self)
}

// destination[i] += source[i] for i < count.
@inline(__always)
func addVector(_ source: UnsafePointer<Float>, into destination: UnsafeMutablePointer<Float>, count: Int) {
    var i = 0
    while i + FloatVector.scalarCount <= count {
        storeVector(loadVector(destination + i) + loadVector(source + i), destination + i)
        i += FloatVector.scalarCount
    }
    while i < count { destination[i] += source[i]; i += 1 }
}

// destination[i] += a[i] · b[i] for i < count.
@inline(__always)
func multiplyAddVector(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into destination: UnsafeMutablePointer<Float>, count: Int
) {
    var i = 0
    while i + FloatVector.scalarCount <= count {
        storeVector(loadVector(destination + i).addingProduct(loadVector(a + i), loadVector(b + i)), destination + i)
        i += FloatVector.scalarCount
    }
    while i < count { destination[i] += a[i] * b[i]; i += 1 }
}

// Every row of the [rows, columns] matrix becomes a copy of `row`.
func broadcastRows(_ row: UnsafePointer<Float>, rows: Int, columns: Int, into matrix: UnsafeMutablePointer<Float>) {
    for r in 0..<rows { (matrix + r * columns).update(from: row, count: columns) }
}

// sums[j] += Σ_r matrix[r, j]. Rows are added whole so the inner loop runs along contiguous memory;
// they go through a partial sum per block of rows, so float32 rounding grows with
// (block + rows / block) rather than with the row count (131 072 rows for a ResNet-20 batch).
func addColumnSums(_ matrix: UnsafePointer<Float>, rows: Int, columns: Int, into sums: UnsafeMutablePointer<Float>) {
    let block = 256
    let partial = UnsafeMutablePointer<Float>.allocate(capacity: columns)
    defer { partial.deallocate() }
    var start = 0
    while start < rows {
        partial.update(repeating: 0, count: columns)
        for r in start..<min(start + block, rows) { addVector(matrix + r * columns, into: partial, count: columns) }
        addVector(partial, into: sums, count: columns)
        start += block
    }
}
