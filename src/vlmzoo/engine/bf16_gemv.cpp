// y = x @ w.T (+ bias) for a few rows of bf16 activations against a bf16 weight, with
// AVX512-BF16 dot products (VDPBF16PS) and fp32 accumulation.
//
// Why: a decode step multiplies one row (or a few) by every weight matrix once. torch's bf16
// matrix-vector kernel runs well below memory bandwidth on small matrices here, and oneDNN's
// linear reorders the weight on every call; this loop streams each weight row once and keeps
// it in L1 while every activation row uses it. Built by engine/bf16_gemv.py on first use.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace {

constexpr int kRows = 4;  // weight rows per block
constexpr int kCols = 4;  // activation rows sharing each weight load: 16 accumulators in registers

// out[c][r] = dot(weight row r, activation row c) for R weight rows (stride ldw) and C
// activation rows (stride K), K columns.
template <int R, int C>
inline void dot_block(const uint16_t* w, int64_t ldw, const uint16_t* x, int64_t K, float (*out)[kRows]) {
  __m512 acc[C][R];
  for (int c = 0; c < C; ++c)
    for (int r = 0; r < R; ++r) acc[c][r] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    __m512bh xv[C];
    for (int c = 0; c < C; ++c) xv[c] = (__m512bh)_mm512_loadu_si512(x + c * K + k);
    for (int r = 0; r < R; ++r) {
      // ask for the next block's rows now: with it the loop reads 14-17 GB/s here, without 10-13
      // (a prefetch never faults, so reaching past the last row is harmless)
      _mm_prefetch(reinterpret_cast<const char*>(w + (r + R) * ldw + k), _MM_HINT_T0);
      const __m512bh wv = (__m512bh)_mm512_loadu_si512(w + r * ldw + k);
      for (int c = 0; c < C; ++c) acc[c][r] = _mm512_dpbf16_ps(acc[c][r], wv, xv[c]);
    }
  }
  if (k < K) {  // the last K % 32 columns, zero-filled by masked loads
    const __mmask32 m = (__mmask32)((1ull << (K - k)) - 1);
    __m512bh xv[C];
    for (int c = 0; c < C; ++c) xv[c] = (__m512bh)_mm512_maskz_loadu_epi16(m, x + c * K + k);
    for (int r = 0; r < R; ++r) {
      const __m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(m, w + r * ldw + k);
      for (int c = 0; c < C; ++c) acc[c][r] = _mm512_dpbf16_ps(acc[c][r], wv, xv[c]);
    }
  }
  for (int c = 0; c < C; ++c)
    for (int r = 0; r < R; ++r) out[c][r] = _mm512_reduce_add_ps(acc[c][r]);
}

// Every activation row against R weight rows, kCols rows at a time (the weight rows stay in L1).
template <int R>
inline void weight_rows(const uint16_t* w, int64_t ldw, const uint16_t* X, int64_t B, int64_t K,
                        float (*out)[kRows]) {
  int64_t b = 0;
  for (; b + kCols <= B; b += kCols) dot_block<R, kCols>(w, ldw, X + b * K, K, out + b);
  for (; b < B; ++b) dot_block<R, 1>(w, ldw, X + b * K, K, out + b);
}

at::Tensor gemv_bf16(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias) {
  TORCH_CHECK(x.scalar_type() == at::kBFloat16 && w.scalar_type() == at::kBFloat16,
              "gemv_bf16: x and w must be bfloat16");
  TORCH_CHECK(w.dim() == 2 && w.stride(1) == 1, "gemv_bf16: w must be 2-D with contiguous rows");
  TORCH_CHECK(x.size(-1) == w.size(1), "gemv_bf16: x has ", x.size(-1), " features, w expects ", w.size(1));
  TORCH_CHECK(!bias || (bias->scalar_type() == at::kBFloat16 && bias->is_contiguous() &&
                        bias->numel() == w.size(0)), "gemv_bf16: bias must be contiguous bfloat16 of size N");
  const int64_t K = w.size(1), N = w.size(0), ldw = w.stride(0);
  const at::Tensor xs = x.reshape({-1, K}).contiguous();
  const int64_t B = xs.size(0);
  at::Tensor y = at::empty({B, N}, x.options());
  const auto* W = reinterpret_cast<const uint16_t*>(w.data_ptr());
  const auto* X = reinterpret_cast<const uint16_t*>(xs.data_ptr());
  const at::BFloat16* bp = bias ? bias->data_ptr<at::BFloat16>() : nullptr;
  at::BFloat16* Y = y.data_ptr<at::BFloat16>();
  const int64_t blocks = (N + kRows - 1) / kRows;
  at::parallel_for(0, blocks, 16, [&](int64_t first, int64_t last) {
    std::vector<float> buffer(B * kRows);
    auto* out = reinterpret_cast<float (*)[kRows]>(buffer.data());
    for (int64_t blk = first; blk < last; ++blk) {
      const int64_t n = blk * kRows, rows = std::min<int64_t>(kRows, N - n);
      const uint16_t* wn = W + n * ldw;
      switch (rows) {
        case 4: weight_rows<4>(wn, ldw, X, B, K, out); break;
        case 3: weight_rows<3>(wn, ldw, X, B, K, out); break;
        case 2: weight_rows<2>(wn, ldw, X, B, K, out); break;
        default: weight_rows<1>(wn, ldw, X, B, K, out); break;
      }
      for (int64_t b = 0; b < B; ++b)
        for (int64_t r = 0; r < rows; ++r)  // bias added in fp32, one rounding to bf16 (as linear)
          Y[b * N + n + r] = at::BFloat16(out[b][r] + (bp ? static_cast<float>(bp[n + r]) : 0.f));
    }
  });
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = N;
  return y.view(shape);
}

}  // namespace

TORCH_LIBRARY(vlmzoo_kernels, m) { m.def("gemv_bf16(Tensor x, Tensor w, Tensor? bias) -> Tensor"); }
TORCH_LIBRARY_IMPL(vlmzoo_kernels, CPU, m) { m.impl("gemv_bf16", &gemv_bf16); }
