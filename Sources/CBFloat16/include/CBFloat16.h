// bf16 convolution kernels on AVX512-BF16 (VDPBF16PS), for `precision: bf16`.
//
// Why C: Swift has no bf16 type and no way to emit VDPBF16PS or VCVTNEPS2BF16 (its SIMD types lower
// only to the generic LLVM vector operations), while clang's intrinsics do, per function, through
// `target` attributes, so this target builds on any x86-64 and runs only where
// `epicycle_bf16_cpu_supports` says the CPU has the instructions. The Swift reference these kernels
// are tested against is `BFloat16Reference` in EpicycleRuntime: the fp32 direct kernels on
// bf16-rounded operands.
//
// Layouts follow Conv2DDirectKernels.swift: NHWC images, a zero-padded image [Hp, Wp, C] per call, a
// tap row's S·C inputs one contiguous run. A bf16 pair is one 32-bit word, the first value in its low
// half, as VDPBF16PS reads it: lane i of the sum gains a[2i]·b[2i] + a[2i+1]·b[2i+1].
#ifndef EPICYCLE_CBFLOAT16_H
#define EPICYCLE_CBFLOAT16_H

#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__)

/// One image's convolution as Conv2DDirectKernels.swift plans it: a padded input [Hp, Wp, C], weights
/// in tap rows of S·C run positions, output pixel (p, q) at p·outputRowStep + q·outputPixelStep.
typedef struct {
    ptrdiff_t C, K, R, S, strideHeight, strideWidth, P, Q, Hp, Wp, outputPixelStep, outputRowStep;
} EpicycleBF16Plan;

/// 1 when this CPU runs AVX512-F, -BW and -BF16, else 0.
int epicycle_bf16_cpu_supports(void);

/// y[i] = x[i] rounded to bf16: to nearest, ties to even, a subnormal input to zero (as VCVTNEPS2BF16).
void epicycle_bf16_round(const float *x, uint16_t *y, ptrdiff_t count);

/// pairs[r, j/2, k] = (weight[r, j, k], weight[r, j + 1, k]) in bf16, for `rows` blocks of `run` × `columns`
/// floats; `run` is even.
void epicycle_bf16_pack_pairs(const float *weight, uint32_t *pairs, ptrdiff_t rows, ptrdiff_t run, ptrdiff_t columns);

/// padded[Hp, Wp, C] ← image[H, W, C] in bf16, its first pixel at (top, left) (either may be negative,
/// the image may overhang), zeros elsewhere.
void epicycle_bf16_pad_image(const float *image, ptrdiff_t H, ptrdiff_t W, ptrdiff_t C, ptrdiff_t top, ptrdiff_t left,
                             uint16_t *padded, ptrdiff_t Hp, ptrdiff_t Wp);

/// output = the plan's convolution of `padded` with weightPairs[R, S·C/2, K] plus bias[K] (NULL: none);
/// then + output with `accumulate`, + residual (NULL: none, laid out like the output), clamped at 0 with
/// `relu`. Needs K a multiple of 16 and C even.
void epicycle_bf16_convolve_image(const EpicycleBF16Plan *plan, const uint16_t *padded, const uint32_t *weightPairs,
                                  const float *bias, float *output, const float *residual, int accumulate, int relu);

/// pairs[y, x] = (padded[y, x], padded[y, x + shift]) over `rows` rows of `rowCount` values, the second
/// 0 past the row's end: the inputs of two output pixels `shift` values apart, as one word.
void epicycle_bf16_pair_columns(const uint16_t *padded, ptrdiff_t rows, ptrdiff_t rowCount, ptrdiff_t shift,
                                uint32_t *pairs);

/// pairs[p, q/2, k] = (dOutput[p, q, k], dOutput[p, q + 1, k]) in bf16 for even q, the second 0 when
/// q + 1 = Q: a dOutput [P, Q, K] as ⌈Q/2⌉ pixel pairs a row.
void epicycle_bf16_pair_output_gradient(const float *dOutput, ptrdiff_t P, ptrdiff_t Q, ptrdiff_t K, uint32_t *pairs);

/// partial[r, k, j] += Σ over output pixels of padded[p·sh + r, q·sw·C + j] · dOutput[p, q, k], two
/// pixels at a time: pairedInput is `epicycle_bf16_pair_columns` of the padded image with shift sw·C,
/// pairedDOutput `epicycle_bf16_pair_output_gradient` of dOutput. Needs S·C a multiple of 16 and K of 8.
void epicycle_bf16_accumulate_weight_gradient(const EpicycleBF16Plan *plan, const uint32_t *pairedInput,
                                              const uint32_t *pairedDOutput, float *partial);

#endif
#endif
