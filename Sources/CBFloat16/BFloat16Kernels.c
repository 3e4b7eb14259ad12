// See CBFloat16.h for what each kernel computes and why it is C.
//
// The forward tiles are those of Conv2DDirectKernels.swift with the run taken two positions at a time:
// 8 output pixels × 32 output channels (or 16 pixels × 16 channels where there are only 16) live in
// 16 vector registers; per pair of run positions each pixel's two inputs are one broadcast word and
// each 16 channels' two weights one vector, and VDPBF16PS does 32 multiply-adds where an fp32 FMA does
// 16. The weight-gradient tile is the run-major one (3 vectors of run positions × 8 output channels)
// with pixels taken two at a time: a pair's inputs are interleaved once per image
// (`epicycle_bf16_pair_columns`) and its dOutput values once per image
// (`epicycle_bf16_pair_output_gradient`), so the loop reads them with plain loads and broadcasts.
#include "CBFloat16.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define INLINE static inline __attribute__((always_inline))

int epicycle_bf16_cpu_supports(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
}

// The scalar form of VCVTNEPS2BF16, for the tails of rows: NaNs stay quiet NaNs, subnormals become a
// signed zero, the rest round to nearest with ties to even.
static uint16_t round_scalar(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    if ((bits & 0x7f800000u) == 0) return (uint16_t)((bits >> 16) & 0x8000u);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x0040u);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

// 16 floats → 16 bf16 values, zero-extended into the low halves of 16 words.
INLINE BF16_TARGET __m512i round16_words(const float *x) {
    __m256bh half = _mm512_cvtneps_pbh(_mm512_loadu_ps(x));
    return _mm512_cvtepu16_epi32((__m256i)half);
}

BF16_TARGET void epicycle_bf16_round(const float *x, uint16_t *y, ptrdiff_t count) {
    ptrdiff_t i = 0;
    for (; i + 16 <= count; i += 16) _mm256_storeu_si256((__m256i *)(y + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + i)));
    for (; i < count; i++) y[i] = round_scalar(x[i]);
}

BF16_TARGET void epicycle_bf16_pack_pairs(const float *weight, uint32_t *pairs, ptrdiff_t rows, ptrdiff_t run,
                                          ptrdiff_t columns) {
    for (ptrdiff_t row = 0; row < rows; row++) {
        for (ptrdiff_t j = 0; j < run; j += 2) {
            const float *first = weight + (row * run + j) * columns, *second = first + columns;
            uint32_t *out = pairs + (row * run / 2 + j / 2) * columns;
            ptrdiff_t k = 0;
            for (; k + 16 <= columns; k += 16) {
                __m512i word = _mm512_or_si512(round16_words(first + k), _mm512_slli_epi32(round16_words(second + k), 16));
                _mm512_storeu_si512(out + k, word);
            }
            for (; k < columns; k++) out[k] = (uint32_t)round_scalar(first[k]) | ((uint32_t)round_scalar(second[k]) << 16);
        }
    }
}

BF16_TARGET void epicycle_bf16_pad_image(const float *image, ptrdiff_t H, ptrdiff_t W, ptrdiff_t C, ptrdiff_t top,
                                         ptrdiff_t left, uint16_t *padded, ptrdiff_t Hp, ptrdiff_t Wp) {
    ptrdiff_t rowCount = Wp * C;
    ptrdiff_t first = left > 0 ? left : 0;  // padded columns [first, end) hold image columns
    ptrdiff_t end = left + W < Wp ? left + W : Wp;
    if (end < first) end = first;
    for (ptrdiff_t y = 0; y < Hp; y++) {
        uint16_t *row = padded + y * rowCount;
        ptrdiff_t h = y - top;
        if (h < 0 || h >= H) {
            memset(row, 0, (size_t)rowCount * sizeof *row);
            continue;
        }
        memset(row, 0, (size_t)(first * C) * sizeof *row);
        epicycle_bf16_round(image + (h * W + first - left) * C, row + first * C, (end - first) * C);
        memset(row + end * C, 0, (size_t)((Wp - end) * C) * sizeof *row);
    }
}

// Sums of a tile: NP pixels × NV vectors of 16 output channels.
#define MAX_PIXELS 16
#define MAX_VECTORS 2

// NP output pixels × NV·16 output channels starting at the tile's first pixel `x` (its run start in
// tap row 0), weight pairs `w` at the tile's first channel, output `out` and residual `res` likewise.
// Missing pixels (pixels < NP) read pixel 0's inputs and are not stored.
INLINE BF16_TARGET void forward_tile(const EpicycleBF16Plan *plan, const uint16_t *x, const uint32_t *w, const float *bias,
                                     float *out, const float *res, int accumulate, int relu, int pixels,
                                     const int NP, const int NV) {
    const ptrdiff_t K = plan->K, pairs = plan->S * plan->C / 2, step = plan->strideWidth * plan->C;
    const ptrdiff_t rowStep = plan->Wp * plan->C, o = plan->outputPixelStep;
    __m512 sum[MAX_PIXELS][MAX_VECTORS];
    ptrdiff_t offset[MAX_PIXELS];
    for (int i = 0; i < NP; i++) offset[i] = i < pixels ? i * step : 0;
    for (int v = 0; v < NV; v++) {
        __m512 start = bias ? _mm512_loadu_ps(bias + 16 * v) : _mm512_setzero_ps();
        for (int i = 0; i < NP; i++) sum[i][v] = start;
    }
    for (ptrdiff_t r = 0; r < plan->R; r++) {
        const uint16_t *xr = x + r * rowStep;
        const uint32_t *wj = w + r * pairs * K;
        for (ptrdiff_t j = 0; j < pairs; j++, wj += K) {
            __m512bh weights[MAX_VECTORS];
            for (int v = 0; v < NV; v++) weights[v] = (__m512bh)_mm512_loadu_si512(wj + 16 * v);
            for (int i = 0; i < NP; i++) {
                int32_t word;
                memcpy(&word, xr + offset[i] + 2 * j, sizeof word);
                __m512bh input = (__m512bh)_mm512_set1_epi32(word);
                for (int v = 0; v < NV; v++) sum[i][v] = _mm512_dpbf16_ps(sum[i][v], input, weights[v]);
            }
        }
    }
    for (int i = 0; i < NP; i++) {
        if (i >= pixels) break;
        for (int v = 0; v < NV; v++) {
            ptrdiff_t at = i * o + 16 * v;
            __m512 value = sum[i][v];
            if (accumulate) value = _mm512_add_ps(value, _mm512_loadu_ps(out + at));
            if (res) value = _mm512_add_ps(value, _mm512_loadu_ps(res + at));
            if (relu) value = _mm512_max_ps(value, _mm512_setzero_ps());
            _mm512_storeu_ps(out + at, value);
        }
    }
}

// Non-inlined copies per tile shape, so that each keeps its sums in registers.
static BF16_TARGET void forward_tile_16x1(const EpicycleBF16Plan *plan, const uint16_t *x, const uint32_t *w,
                                          const float *bias, float *out, const float *res, int accumulate, int relu) {
    forward_tile(plan, x, w, bias, out, res, accumulate, relu, 16, 16, 1);
}

static BF16_TARGET void forward_tile_8x2(const EpicycleBF16Plan *plan, const uint16_t *x, const uint32_t *w,
                                         const float *bias, float *out, const float *res, int accumulate, int relu,
                                         int pixels) {
    forward_tile(plan, x, w, bias, out, res, accumulate, relu, pixels, 8, 2);
}

static BF16_TARGET void forward_tile_8x1(const EpicycleBF16Plan *plan, const uint16_t *x, const uint32_t *w,
                                         const float *bias, float *out, const float *res, int accumulate, int relu,
                                         int pixels) {
    forward_tile(plan, x, w, bias, out, res, accumulate, relu, pixels, 8, 1);
}

BF16_TARGET void epicycle_bf16_convolve_image(const EpicycleBF16Plan *plan, const uint16_t *padded,
                                              const uint32_t *weightPairs, const float *bias, float *output,
                                              const float *residual, int accumulate, int relu) {
    const ptrdiff_t K = plan->K, Q = plan->Q, o = plan->outputPixelStep;
    const ptrdiff_t step = plan->strideWidth * plan->C, rowStep = plan->Wp * plan->C;
    for (ptrdiff_t p = 0; p < plan->P; p++) {
        const uint16_t *row = padded + p * plan->strideHeight * rowStep;
        float *out = output + p * plan->outputRowStep;
        const float *res = residual ? residual + p * plan->outputRowStep : NULL;
        ptrdiff_t q = 0;
        for (; K == 16 && q + 16 <= Q; q += 16) {
            forward_tile_16x1(plan, row + q * step, weightPairs, bias, out + q * o, res ? res + q * o : NULL,
                              accumulate, relu);
        }
        while (q < Q) {
            int pixels = Q - q < 8 ? (int)(Q - q) : 8;
            ptrdiff_t k = 0;
            for (; k + 32 <= K; k += 32) {
                ptrdiff_t at = q * o + k;
                forward_tile_8x2(plan, row + q * step, weightPairs + k, bias ? bias + k : NULL, out + at,
                                 res ? res + at : NULL, accumulate, relu, pixels);
            }
            if (k < K) {
                ptrdiff_t at = q * o + k;
                forward_tile_8x1(plan, row + q * step, weightPairs + k, bias ? bias + k : NULL, out + at,
                                 res ? res + at : NULL, accumulate, relu, pixels);
            }
            q += pixels;
        }
    }
}

BF16_TARGET void epicycle_bf16_pair_columns(const uint16_t *padded, ptrdiff_t rows, ptrdiff_t rowCount,
                                            ptrdiff_t shift, uint32_t *pairs) {
    for (ptrdiff_t y = 0; y < rows; y++) {
        const uint16_t *row = padded + y * rowCount;
        uint32_t *out = pairs + y * rowCount;
        ptrdiff_t x = 0;
        for (; x + shift + 16 <= rowCount; x += 16) {
            __m512i first = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(row + x)));
            __m512i second = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(row + x + shift)));
            _mm512_storeu_si512(out + x, _mm512_or_si512(first, _mm512_slli_epi32(second, 16)));
        }
        for (; x < rowCount; x++) out[x] = (uint32_t)row[x] | (x + shift < rowCount ? (uint32_t)row[x + shift] << 16 : 0);
    }
}

BF16_TARGET void epicycle_bf16_pair_output_gradient(const float *dOutput, ptrdiff_t P, ptrdiff_t Q, ptrdiff_t K,
                                                    uint32_t *pairs) {
    const ptrdiff_t pairsPerRow = (Q + 1) / 2;
    for (ptrdiff_t p = 0; p < P; p++) {
        for (ptrdiff_t q = 0; q < Q; q += 2) {
            const float *first = dOutput + (p * Q + q) * K;
            uint32_t *out = pairs + (p * pairsPerRow + q / 2) * K;
            int paired = q + 1 < Q;
            ptrdiff_t k = 0;
            for (; k + 16 <= K; k += 16) {
                __m512i word = round16_words(first + k);
                if (paired) word = _mm512_or_si512(word, _mm512_slli_epi32(round16_words(first + K + k), 16));
                _mm512_storeu_si512(out + k, word);
            }
            for (; k < K; k++) out[k] = (uint32_t)round_scalar(first[k]) | (paired ? (uint32_t)round_scalar(first[K + k]) << 16 : 0);
        }
    }
}

// partial[r, k…k+7, j…j+16·NV) += the tile's sums over the image's pixel pairs; `x` is the paired input
// at tap row r, run position j; `g` the paired dOutput at channel k; `d` the partial at (r, k, j).
INLINE BF16_TARGET void weight_tile(const EpicycleBF16Plan *plan, const uint32_t *x, const uint32_t *g, float *d,
                                    const int NV) {
    const ptrdiff_t K = plan->K, run = plan->S * plan->C, rowStep = plan->Wp * plan->C;
    const ptrdiff_t pairStep = 2 * plan->strideWidth * plan->C, pairsPerRow = (plan->Q + 1) / 2;
    __m512 sum[3][8];
    for (int v = 0; v < NV; v++) for (int i = 0; i < 8; i++) sum[v][i] = _mm512_setzero_ps();
    for (ptrdiff_t p = 0; p < plan->P; p++) {
        const uint32_t *xq = x + p * plan->strideHeight * rowStep;
        const uint32_t *gq = g + p * pairsPerRow * K;
        for (ptrdiff_t pair = 0; pair < pairsPerRow; pair++, xq += pairStep, gq += K) {
            __m512bh inputs[3];
            for (int v = 0; v < NV; v++) inputs[v] = (__m512bh)_mm512_loadu_si512(xq + 16 * v);
            for (int i = 0; i < 8; i++) {
                __m512bh gradient = (__m512bh)_mm512_set1_epi32((int32_t)gq[i]);
                for (int v = 0; v < NV; v++) sum[v][i] = _mm512_dpbf16_ps(sum[v][i], inputs[v], gradient);
            }
        }
    }
    for (int i = 0; i < 8; i++) {
        for (int v = 0; v < NV; v++) {
            float *at = d + i * run + 16 * v;
            _mm512_storeu_ps(at, _mm512_add_ps(_mm512_loadu_ps(at), sum[v][i]));
        }
    }
}

static BF16_TARGET void weight_tile_3(const EpicycleBF16Plan *plan, const uint32_t *x, const uint32_t *g, float *d) {
    weight_tile(plan, x, g, d, 3);
}

static BF16_TARGET void weight_tile_2(const EpicycleBF16Plan *plan, const uint32_t *x, const uint32_t *g, float *d) {
    weight_tile(plan, x, g, d, 2);
}

static BF16_TARGET void weight_tile_1(const EpicycleBF16Plan *plan, const uint32_t *x, const uint32_t *g, float *d) {
    weight_tile(plan, x, g, d, 1);
}

BF16_TARGET void epicycle_bf16_accumulate_weight_gradient(const EpicycleBF16Plan *plan, const uint32_t *pairedInput,
                                                          const uint32_t *pairedDOutput, float *partial) {
    const ptrdiff_t K = plan->K, run = plan->S * plan->C, rowStep = plan->Wp * plan->C;
    for (ptrdiff_t r = 0; r < plan->R; r++) {
        const uint32_t *x = pairedInput + r * rowStep;
        float *d = partial + r * K * run;
        ptrdiff_t j = 0;
        for (; j + 48 <= run; j += 48) {
            for (ptrdiff_t k = 0; k < K; k += 8) weight_tile_3(plan, x + j, pairedDOutput + k, d + k * run + j);
        }
        if (j + 32 <= run) {
            for (ptrdiff_t k = 0; k < K; k += 8) weight_tile_2(plan, x + j, pairedDOutput + k, d + k * run + j);
            j += 32;
        }
        if (j < run) {
            for (ptrdiff_t k = 0; k < K; k += 8) weight_tile_1(plan, x + j, pairedDOutput + k, d + k * run + j);
        }
    }
}

#endif
