// The bf16 branch of the direct convolution kernels (`precision: bf16`, see `Precision`): the batch
// drivers in Conv2DDirectKernels.swift plan, pack and split the work as for fp32, and per image call
// the AVX512-BF16 kernels of the CBFloat16 target instead of the Swift tiles. Each product rounds its
// operands to bf16 once per image (the padded input or dOutput, as it is copied) and once per call
// (the packed weights), and accumulates in fp32.
//
// `BFloat16Reference` is the Swift reference those kernels are tested against: the fp32 kernels on
// operands rounded to bf16 the way VCVTNEPS2BF16 rounds them, which is what VDPBF16PS multiplies
// (exactly: a bf16 product fits in fp32); only the order of the fp32 sums differs.

#if arch(x86_64)
import CBFloat16
#endif

extension Conv2DGeometry {
    /// Whether `precision: bf16` runs this convolution's forward and weight gradient in bf16: the
    /// direct kernels' geometry with a run of whole 16-value vectors (input channels a multiple of 16).
    public var hasBFloat16Forward: Bool { usesDirectForward && inputChannels % 16 == 0 }

    /// Whether `precision: bf16` runs the input gradient in bf16 (output channels a multiple of 16).
    public var hasBFloat16BackwardInput: Bool { usesDirectBackwardInput && outputChannels % 16 == 0 }
}

extension Precision {
    // Whether kernels asked for `self` take the bf16 path of a product the geometry supports.
    func runsBFloat16(_ supported: Bool) -> Bool { self == .bf16 && supported && Precision.bf16Available }
}

/// Rounding to bf16 as the bf16 kernels do, for tests and reference results.
public enum BFloat16Reference {
    /// `value` rounded to the nearest bf16 (ties to even), a subnormal to a signed zero and a NaN to a
    /// quiet NaN, as VCVTNEPS2BF16 rounds; returned as the fp32 it equals.
    public static func rounded(_ value: Float) -> Float {
        var bits = value.bitPattern
        if bits & 0x7f80_0000 == 0 { return Float(bitPattern: bits & 0x8000_0000) }
        if bits & 0x7fff_ffff > 0x7f80_0000 { return Float(bitPattern: (bits | 0x0040_0000) & 0xffff_0000) }
        bits &+= 0x7fff &+ ((bits >> 16) & 1)
        return Float(bitPattern: bits & 0xffff_0000)
    }

    /// Every value of `values` `rounded`.
    public static func rounded(_ values: [Float]) -> [Float] { values.map(rounded) }
}

// One thread's scratch of a bf16 pass: a padded image in bf16 and the pairs of the weight gradient.
struct HalfScratch {
    var halves: UnsafeMutablePointer<UInt16>
    var pairs: UnsafeMutablePointer<UInt32>

    // Scratch of `counts` per thread for `threads` threads, from the workspace.
    static func perThread(_ counts: (halves: Int, pairs: Int), threads: Int,
                          workspace: Conv2DWorkspace) -> (Int) -> HalfScratch {
        let halves = workspace.directPaddedHalves(count: threads * counts.halves)
        let pairs = workspace.directPairs(count: threads * counts.pairs)
        return { t in HalfScratch(halves: halves + t * counts.halves, pairs: pairs + t * counts.pairs) }
    }

    func advanced(by counts: (halves: Int, pairs: Int)) -> HalfScratch {
        HalfScratch(halves: halves + counts.halves, pairs: pairs + counts.pairs)
    }
}

extension DirectPlan {
    // Words of one image's paired dOutput: ⌈Q/2⌉ pixel pairs a row.
    var pairedOutputCount: Int { P * ((Q + 1) / 2) * K }
}

#if arch(x86_64)

extension DirectPlan {
    var bfloat16: EpicycleBF16Plan {
        EpicycleBF16Plan(C: C, K: K, R: R, S: S, strideHeight: strideHeight, strideWidth: strideWidth, P: P, Q: Q,
                         Hp: Hp, Wp: Wp, outputPixelStep: outputPixelStep, outputRowStep: outputRowStep)
    }
}

// pairs[R, run/2, K] ← packed[R, run, K] in bf16, where run = the plan's S·C.
func packBFloat16Pairs(_ packed: UnsafePointer<Float>, rows: Int, run: Int, columns: Int,
                       into pairs: UnsafeMutablePointer<UInt32>) {
    epicycle_bf16_pack_pairs(packed, pairs, rows, run, columns)
}

// padded ← image as `padImage` places it, rounded to bf16.
func padImageBFloat16(_ image: UnsafePointer<Float>, height: Int, width: Int, channels: Int, top: Int, left: Int,
                      into padded: UnsafeMutablePointer<UInt16>, Hp: Int, Wp: Int) {
    epicycle_bf16_pad_image(image, height, width, channels, top, left, padded, Hp, Wp)
}

// `convolveImage` in bf16: weightPairs from `packBFloat16Pairs`, padded from `padImageBFloat16`.
func convolveImageBFloat16(_ plan: DirectPlan, padded: UnsafePointer<UInt16>, weightPairs: UnsafePointer<UInt32>,
                           bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
                           residual: UnsafePointer<Float>?, accumulate: Bool, relu: Bool) {
    var bf16 = plan.bfloat16
    epicycle_bf16_convolve_image(&bf16, padded, weightPairs, bias, output, residual, accumulate ? 1 : 0, relu ? 1 : 0)
}

// The run-major partial [R, K, S·C] += one image's weight gradient, from its padded bf16 input; uses
// `pairs` for the image's paired input (the plan's paddedCount words) and paired dOutput.
func accumulateImageWeightGradientBFloat16(_ plan: DirectPlan, padded: UnsafePointer<UInt16>,
                                           dOutput: UnsafePointer<Float>, pairs: UnsafeMutablePointer<UInt32>,
                                           partial: UnsafeMutablePointer<Float>) {
    var bf16 = plan.bfloat16
    let pairedOutput = pairs + plan.paddedCount
    epicycle_bf16_pair_columns(padded, plan.Hp, plan.rowStep, plan.pixelStep, pairs)
    epicycle_bf16_pair_output_gradient(dOutput, plan.P, plan.Q, plan.K, pairedOutput)
    epicycle_bf16_accumulate_weight_gradient(&bf16, pairs, pairedOutput, partial)
}

#endif
