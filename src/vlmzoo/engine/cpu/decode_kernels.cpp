// Decode-step kernels for bf16 on CPUs with AVX512-BF16, built by engine/cpu/decode_kernels.py.
//
// gemv_bf16: y = x @ w.T (+ bias) for a few rows of activations, with VDPBF16PS dot products and
// fp32 accumulation. A decode step multiplies one row (or a few) by every weight matrix once;
// torch's bf16 matrix-vector kernel runs well below memory bandwidth on small matrices here, and
// oneDNN's linear reorders the weight on every call. This loop streams each weight row once and
// keeps it in L1 while every activation row uses it.
//
// decode_layer_bf16: one whole pre-norm Llama-style layer (RMSNorm, q/k/v, rotary, KV-cache
// write, attention, o, RMSNorm, SwiGLU) for one new token per row. In torch that is about 55
// small ops per layer, whose dispatch cost is as large as the matrix products of a small model;
// here it is one call. The rounding to bf16 follows transformers' layer op by op.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
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


// bf16 is fp32's top half
inline __m512 widen_bf16(__m256i v) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16)); }

// 16 bf16 (the first n of them; the rest read as 0) widened to fp32
inline __m512 load_bf16x16(const uint16_t* p, int64_t n = 16) {
  const __m512i raw = n >= 16 ? _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))
                              : _mm512_maskz_loadu_epi16((__mmask32)((1u << n) - 1), p);
  return widen_bf16(_mm512_castsi512_si256(raw));
}

// round 16 floats to bf16 (to nearest even, as at::BFloat16) and store the first n
inline void store_bf16x16(at::BFloat16* p, __m512 v, int64_t n = 16) {
  const __m256i packed = (__m256i)_mm512_cvtneps_pbh(v);
  if (n >= 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), packed);
  else _mm512_mask_storeu_epi16(p, (__mmask32)((1u << n) - 1), _mm512_castsi256_si512(packed));
}

// exp of 16 floats: 2^n * e^r with |r| <= ln2/2 and a degree-6 Taylor polynomial for e^r
// (relative error about 2e-7, as std::exp to a unit or two in the last place). Arguments are
// clamped to [-104, 88]: below, the result is 0 after scaling (-inf gives 0); above, it stays finite.
inline __m512 exp16(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.f)), _mm512_set1_ps(88.f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145752f), x);  // ln2 in two parts: r stays exact
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860677e-6f), r);
  __m512 p = _mm512_set1_ps(1.f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}

// Partial attention of G query heads sharing one kv head (flash-decoding: the keys are split into
// chunks so that even one row with few kv heads keeps every thread busy; the caller merges them).
// For keys [begin, end): top[g] = max score, sum[g] = sum of e = exp(score - top), acc[g] = sum
// of e * value, all fp32. Each key and value is loaded once for all G heads. `scores` holds
// 4 * (end - begin + 16) floats.
struct Partial {
  float top[4], sum[4];
};

template <int G>
void attend_chunk(const uint16_t* queries, const uint16_t* keys, const uint16_t* values, int64_t begin,
                  int64_t end, int64_t hd, const bool* allowed, float scale, float* scores, Partial& part,
                  float* acc) {
  const int64_t n = end - begin, stride = n + 16;
  float dot[G][kRows];
  float top[G];
  for (int g = 0; g < G; ++g) top[g] = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) {
    if (allowed && !allowed[begin + j]) {
      for (int g = 0; g < G; ++g) scores[g * stride + j] = -std::numeric_limits<float>::infinity();
      continue;
    }
    // the cache streams from memory: ask for the key 8 ahead and its value (read after this loop)
    for (int64_t line = 0; line < hd; line += 32) {
      _mm_prefetch(reinterpret_cast<const char*>(keys + (begin + j + 8) * hd + line), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(values + (begin + j) * hd + line), _MM_HINT_T1);
    }
    dot_block<1, G>(keys + (begin + j) * hd, hd, queries, hd, dot);
    for (int g = 0; g < G; ++g) {
      scores[g * stride + j] = dot[g][0] * scale;
      top[g] = std::max(top[g], scores[g * stride + j]);
    }
  }
  std::fill(acc, acc + G * hd, 0.f);
  if (top[0] == -std::numeric_limits<float>::infinity()) {  // every key here masked: contributes nothing
    for (int g = 0; g < G; ++g) part.top[g] = top[g], part.sum[g] = 0.f;
    return;
  }
  for (int g = 0; g < G; ++g) {
    float* row = scores + g * stride;
    const __m512 top_v = _mm512_set1_ps(top[g]);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; j += 16) {  // the tail's spare lanes are left out
      const __mmask16 live = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1);
      const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(live, row + j), top_v));
      _mm512_mask_storeu_ps(row + j, live, e);
      sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(live, e));
    }
    part.top[g] = top[g], part.sum[g] = _mm512_reduce_add_ps(sum);
  }
  for (int64_t d = 0; d < hd; d += 64) {  // 64 output lanes (4 registers per head) per pass
    const int64_t width = std::min<int64_t>(64, hd - d);
    __m512 sums[G][4];
    for (int g = 0; g < G; ++g)
      for (int c = 0; c < 4; ++c) sums[g][c] = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; ++j) {
      if (allowed && !allowed[begin + j]) continue;
      const uint16_t* v = values + (begin + j) * hd + d;
      for (int c = 0; c < 4 && 16 * c < width; ++c) {
        const __m512 lanes = load_bf16x16(v + 16 * c, width - 16 * c);
        for (int g = 0; g < G; ++g)
          sums[g][c] = _mm512_fmadd_ps(_mm512_set1_ps(scores[g * stride + j]), lanes, sums[g][c]);
      }
    }
    alignas(64) float lanes[64];
    for (int g = 0; g < G; ++g) {
      for (int c = 0; c < 4; ++c) _mm512_store_ps(lanes + 16 * c, sums[g][c]);
      std::copy_n(lanes, width, acc + g * hd + d);
    }
  }
}

void attend_chunk_any(int G, const uint16_t* queries, const uint16_t* keys, const uint16_t* values,
                      int64_t begin, int64_t end, int64_t hd, const bool* allowed, float scale, float* scores,
                      Partial& part, float* acc) {
  switch (G) {
    case 4: attend_chunk<4>(queries, keys, values, begin, end, hd, allowed, scale, scores, part, acc); break;
    case 3: attend_chunk<3>(queries, keys, values, begin, end, hd, allowed, scale, scores, part, acc); break;
    case 2: attend_chunk<2>(queries, keys, values, begin, end, hd, allowed, scale, scores, part, acc); break;
    default: attend_chunk<1>(queries, keys, values, begin, end, hd, allowed, scale, scores, part, acc); break;
  }
}

inline float round_bf16(float v) { return static_cast<float>(at::BFloat16(v)); }

// transformers' LlamaRMSNorm: statistics in fp32, the normalised row rounded to bf16, then
// multiplied by the weight (one more rounding).
void rms_norm_rows(const at::BFloat16* x, const at::BFloat16* w, int64_t B, int64_t D, float eps,
                   at::BFloat16* out) {
  for (int64_t b = 0; b < B; ++b) {
    const at::BFloat16* xr = x + b * D;
    float squares = 0.f;
    for (int64_t i = 0; i < D; ++i) squares += static_cast<float>(xr[i]) * static_cast<float>(xr[i]);
    const float scale = 1.f / std::sqrt(squares / static_cast<float>(D) + eps);
    for (int64_t i = 0; i < D; ++i)
      out[b * D + i] = at::BFloat16(static_cast<float>(w[i]) * round_bf16(static_cast<float>(xr[i]) * scale));
  }
}

// x * cos + rotate_half(x) * sin, each product and the sum rounded to bf16 as torch does.
void rotary(const at::BFloat16* x, const at::BFloat16* cos, const at::BFloat16* sin, int64_t hd,
            at::BFloat16* out) {
  const int64_t half = hd / 2;
  for (int64_t i = 0; i < hd; ++i) {
    const float rotated = i < half ? -static_cast<float>(x[i + half]) : static_cast<float>(x[i - half]);
    out[i] = at::BFloat16(round_bf16(static_cast<float>(x[i]) * static_cast<float>(cos[i])) +
                          round_bf16(rotated * static_cast<float>(sin[i])));
  }
}

void add_rows(const at::BFloat16* a, const at::BFloat16* b, int64_t n, at::BFloat16* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = at::BFloat16(static_cast<float>(a[i]) + static_cast<float>(b[i]));
}

at::Tensor decode_layer_bf16(const at::Tensor& x, const at::Tensor& ln1, const at::Tensor& qkv,
                             const std::optional<at::Tensor>& qkv_bias, const at::Tensor& o,
                             const std::optional<at::Tensor>& o_bias, const at::Tensor& ln2,
                             const at::Tensor& gate_up, const at::Tensor& down, const at::Tensor& kc,
                             const at::Tensor& vc, int64_t length, const at::Tensor& cos, const at::Tensor& sin,
                             const std::optional<at::Tensor>& mask, int64_t heads, int64_t kv_heads, double eps) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && x.scalar_type() == at::kBFloat16,
              "decode_layer_bf16: x must be contiguous bf16 (B, D)");
  const int64_t B = x.size(0), D = x.size(1);
  TORCH_CHECK(kc.dim() == 4 && kc.is_contiguous() && vc.is_contiguous() && kc.sizes() == vc.sizes() &&
              kc.size(0) == B && kc.size(1) == kv_heads, "decode_layer_bf16: caches must be contiguous (B, kv_heads, L, hd)");
  const int64_t hd = kc.size(3), capacity = kc.size(2);
  TORCH_CHECK(length >= 0 && length < capacity, "decode_layer_bf16: cache index ", length, " outside ", capacity);
  TORCH_CHECK(kv_heads > 0 && heads % kv_heads == 0 && hd % 2 == 0, "decode_layer_bf16: bad head counts");
  TORCH_CHECK(qkv.size(0) == (heads + 2 * kv_heads) * hd && o.size(1) == heads * hd,
              "decode_layer_bf16: q/k/v or o weight does not match the head counts");
  TORCH_CHECK(cos.is_contiguous() && sin.is_contiguous() && cos.numel() == B * hd && sin.numel() == B * hd,
              "decode_layer_bf16: cos and sin must be contiguous (B, head_dim)");
  TORCH_CHECK(!mask || (mask->scalar_type() == at::kBool && mask->dim() == 2 && mask->size(0) == B &&
                        mask->size(1) > length && mask->stride(1) == 1),
              "decode_layer_bf16: mask must be bool (B, > length) with contiguous rows");
  const float epsf = static_cast<float>(eps);
  const auto* X = x.data_ptr<at::BFloat16>();

  at::Tensor h = at::empty_like(x);
  rms_norm_rows(X, ln1.data_ptr<at::BFloat16>(), B, D, epsf, h.data_ptr<at::BFloat16>());
  const at::Tensor qkv_out = gemv_bf16(h, qkv, qkv_bias);  // (B, (heads + 2 kv_heads) hd)

  // rotary on q and k; k and v written into the caches at index `length`
  at::Tensor q = at::empty({B, heads, hd}, x.options());
  auto* Q = q.data_ptr<at::BFloat16>();
  auto* KC = kc.data_ptr<at::BFloat16>();
  auto* VC = vc.data_ptr<at::BFloat16>();
  const int64_t width = qkv_out.size(1);
  for (int64_t b = 0; b < B; ++b) {
    const auto* row = qkv_out.data_ptr<at::BFloat16>() + b * width;
    const auto* c = cos.data_ptr<at::BFloat16>() + b * hd;
    const auto* s = sin.data_ptr<at::BFloat16>() + b * hd;
    for (int64_t head = 0; head < heads; ++head) rotary(row + head * hd, c, s, hd, Q + (b * heads + head) * hd);
    for (int64_t g = 0; g < kv_heads; ++g) {
      const int64_t slot = ((b * kv_heads + g) * capacity + length) * hd;
      rotary(row + (heads + g) * hd, c, s, hd, KC + slot);
      std::copy_n(row + (heads + kv_heads + g) * hd, hd, VC + slot);
    }
  }

  // attention of each query head over cache entries 0..length (GQA: kv head = head / group)
  at::Tensor attn = at::empty({B, heads * hd}, x.options());
  auto* A = attn.data_ptr<at::BFloat16>();
  const bool* M = mask ? mask->data_ptr<bool>() : nullptr;
  const int64_t mask_stride = mask ? mask->stride(0) : 0, group = heads / kv_heads;
  const float scale = 1.f / std::sqrt(static_cast<float>(hd));
  // tasks: (row, kv head, block of up to 4 of its query heads, key chunk)
  const int64_t count = length + 1, blocks = (group + 3) / 4, base = B * kv_heads * blocks;
  const int64_t want = 8 * at::get_num_threads();  // enough tasks for an even split over threads
  const int64_t chunks = std::max<int64_t>(1, std::min((want + base - 1) / base, (count + 127) / 128));
  const int64_t chunk = (count + chunks - 1) / chunks, tasks = base * chunks;
  std::vector<Partial> parts(tasks);
  std::vector<float> accs(tasks * 4 * hd);
  at::parallel_for(0, tasks, 1, [&](int64_t first, int64_t last) {
    std::vector<float> scores(4 * (chunk + 16));
    for (int64_t t = first; t < last; ++t) {
      const int64_t piece = t % chunks, blk = t / chunks % blocks, g = t / chunks / blocks % kv_heads;
      const int64_t b = t / chunks / blocks / kv_heads, head = g * group + 4 * blk;
      const int64_t begin = piece * chunk, end = std::min(count, begin + chunk);
      const int64_t cache = (b * kv_heads + g) * capacity * hd;
      attend_chunk_any(static_cast<int>(std::min<int64_t>(4, group - 4 * blk)),
                       reinterpret_cast<const uint16_t*>(Q + (b * heads + head) * hd),
                       reinterpret_cast<const uint16_t*>(KC + cache), reinterpret_cast<const uint16_t*>(VC + cache),
                       begin, std::max(begin, end), hd, M ? M + b * mask_stride : nullptr, scale, scores.data(),
                       parts[t], accs.data() + t * 4 * hd);
    }
  });
  // merge the chunks of each head: rescale each to the overall top score, divide by the total
  std::vector<float> merged(hd);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t head = 0; head < heads; ++head) {
      const int64_t g = head / group, blk = head % group / 4, slot = head % group % 4;
      const int64_t t0 = ((b * kv_heads + g) * blocks + blk) * chunks;
      float top = -std::numeric_limits<float>::infinity(), total = 0.f;
      for (int64_t c = 0; c < chunks; ++c) top = std::max(top, parts[t0 + c].top[slot]);
      std::fill(merged.begin(), merged.end(), 0.f);
      for (int64_t c = 0; c < chunks; ++c) {
        if (parts[t0 + c].sum[slot] == 0.f) continue;
        const float factor = std::exp(parts[t0 + c].top[slot] - top);
        total += parts[t0 + c].sum[slot] * factor;
        const float* acc = accs.data() + ((t0 + c) * 4 + slot) * hd;
        for (int64_t d = 0; d < hd; ++d) merged[d] += acc[d] * factor;
      }
      for (int64_t d = 0; d < hd; ++d) A[(b * heads + head) * hd + d] = at::BFloat16(merged[d] / total);
    }

  const at::Tensor o_out = gemv_bf16(attn, o, o_bias);
  at::Tensor mid = at::empty_like(x);
  add_rows(X, o_out.data_ptr<at::BFloat16>(), B * D, mid.data_ptr<at::BFloat16>());
  rms_norm_rows(mid.data_ptr<at::BFloat16>(), ln2.data_ptr<at::BFloat16>(), B, D, epsf, h.data_ptr<at::BFloat16>());
  const at::Tensor gu = gemv_bf16(h, gate_up, std::nullopt);  // (B, 2 I): gate then up
  const int64_t inter = gu.size(1) / 2;
  at::Tensor act = at::empty({B, inter}, x.options());
  const auto* GU = gu.data_ptr<at::BFloat16>();
  auto* ACT = act.data_ptr<at::BFloat16>();
  for (int64_t b = 0; b < B; ++b)  // silu(gate) rounded to bf16, times up, rounded again (as F.silu * up)
    for (int64_t i = 0; i < inter; i += 16) {
      const int64_t n = std::min<int64_t>(16, inter - i);
      const auto* row = reinterpret_cast<const uint16_t*>(GU + b * 2 * inter);
      const __m512 gate = load_bf16x16(row + i, n), up = load_bf16x16(row + inter + i, n);
      const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), gate));
      const __m512 silu = _mm512_div_ps(gate, _mm512_add_ps(_mm512_set1_ps(1.f), e));
      const __m512 silu_bf16 = widen_bf16((__m256i)_mm512_cvtneps_pbh(silu));
      store_bf16x16(ACT + b * inter + i, _mm512_mul_ps(silu_bf16, up), n);
    }
  const at::Tensor d = gemv_bf16(act, down, std::nullopt);
  at::Tensor out = at::empty_like(x);
  add_rows(mid.data_ptr<at::BFloat16>(), d.data_ptr<at::BFloat16>(), B * D, out.data_ptr<at::BFloat16>());
  return out;
}

}  // namespace

TORCH_LIBRARY(vlmzoo_kernels, m) {
  m.def("gemv_bf16(Tensor x, Tensor w, Tensor? bias) -> Tensor");
  m.def("decode_layer_bf16(Tensor x, Tensor ln1, Tensor qkv, Tensor? qkv_bias, Tensor o, Tensor? o_bias, "
        "Tensor ln2, Tensor gate_up, Tensor down, Tensor(a!) kc, Tensor(b!) vc, int length, Tensor cos, "
        "Tensor sin, Tensor? mask, int heads, int kv_heads, float eps) -> Tensor");
}
TORCH_LIBRARY_IMPL(vlmzoo_kernels, CPU, m) {
  m.impl("gemv_bf16", &gemv_bf16);
  m.impl("decode_layer_bf16", &decode_layer_bf16);
}
