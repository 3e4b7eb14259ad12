#if arch(x86_64)
import CBFloat16
#endif
import Foundation

/// The number format of a model's convolution products.
///
/// `bf16` is mixed precision as `torch.autocast("cpu", dtype=torch.bfloat16)` runs a convolution: the
/// inputs and weights of each product are rounded to bfloat16 (8 bits of mantissa) and multiplied
/// with fp32 accumulation, while weights, gradients, optimizer state, batch norm and losses stay fp32.
/// It runs on AVX512-BF16 (`VDPBF16PS`, twice the multiply-adds of an fp32 FMA per instruction); a CPU
/// without it runs fp32, and says so (`Precision.resolved`).
///
/// Products in bf16: the ungrouped convolutions with a multiple of 16 input and output channels (all
/// but the first layer of the CIFAR ResNets, VGGs and WRNs), forward and both gradients, and the linear
/// layers (operands rounded, then OpenBLAS's fp32 product). The first convolution of a 1- or 3-channel
/// image and grouped (depthwise) convolutions stay fp32: a few percent of a ResNet's multiply-adds.
public enum Precision: String, Sendable, CaseIterable, Codable {
    case fp32
    case bf16

    /// Whether this machine runs the bf16 kernels: the CPU has AVX512-BF16 (and AVX512-F, -BW, -VL), and
    /// the test-only `EPICYCLE_FAULT_NO_AVX512_BF16=1` does not pretend otherwise.
    public static let bf16Available: Bool = {
        if ProcessInfo.processInfo.environment["EPICYCLE_FAULT_NO_AVX512_BF16"] == "1" { return false }
        #if arch(x86_64)
        return epicycle_bf16_cpu_supports() != 0
        #else
        return false
        #endif
    }()

    /// The precision `requested` runs at on this machine, with a note to show the user when that is
    /// not what was asked.
    public static func resolved(_ requested: Precision) -> (precision: Precision, note: String?) {
        guard requested == .bf16, !bf16Available else { return (requested, nil) }
        return (.fp32, "precision bf16 needs a CPU with AVX512-BF16 (VDPBF16PS), which this one lacks: running in fp32")
    }
}
