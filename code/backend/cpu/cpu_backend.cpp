#include "backend/cpu/cpu_backend.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include <xtensor/xadapt.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>

#include "backend/cpu/paged_attention.h"
#include "common/error.h"

namespace servelab {
namespace {

// An xtensor view over a tensor's fp32 host memory (no copy). Writes through it land in the tensor.
auto as_xtensor(const Tensor& tensor) {
  std::vector<size_t> shape(tensor.shape().begin(), tensor.shape().end());
  return xt::adapt(tensor.f32(), static_cast<size_t>(tensor.numel()), xt::no_ownership(), shape);
}

void require_shape(const Tensor& tensor, const Shape& expected, const char* what) {
  if (tensor.shape() != expected) {
    fail("cpu backend: ", what, " has shape ", shape_string(tensor.shape()), ", expected ",
         shape_string(expected));
  }
}

void require_rank(const Tensor& tensor, int rank, const char* what) {
  if (tensor.ndim() != rank) {
    fail("cpu backend: ", what, " must have ", rank, " dimensions, has shape ",
         shape_string(tensor.shape()));
  }
}

}  // namespace

Tensor CpuBackend::allocate(const Shape& shape, DType dtype) {
  if (dtype != DType::kF32 && dtype != DType::kI32) {
    fail("cpu backend: tensors are F32 or I32, not ", dtype_name(dtype));
  }
  return Tensor::zeros(shape, dtype);
}

Tensor CpuBackend::scratch(const Shape& shape, DType dtype) {
  return allocate(shape, dtype);
}

Tensor CpuBackend::upload(const void* host, DType host_dtype, const Shape& shape, DType dtype) {
  Tensor tensor = allocate(shape, dtype);
  if (dtype == DType::kI32) {
    if (host_dtype != DType::kI32) fail("cpu backend: I32 tensors come from I32 data");
    if (tensor.nbytes() > 0) std::memcpy(tensor.data(), host, tensor.nbytes());  // host may be null
  } else {
    // The CPU computes in fp32: half-precision weights are widened once, here.
    convert_to_f32(host_dtype, host, tensor.f32(), static_cast<size_t>(tensor.numel()));
  }
  return tensor;
}

Tensor CpuBackend::to_host(const Tensor& tensor) {
  return upload(tensor.data(), tensor.dtype(), tensor.shape(), tensor.dtype());
}

Step CpuBackend::prepare_step(const StepLayout& layout) {
  validate_step_layout(layout);
  Step step;
  step.layout = layout;
  // On the CPU the "device" is the host: the tensors are copies of the layout's vectors.
  step.tokens = upload_ints(layout.tokens);
  step.positions = upload_ints(layout.positions);
  step.query_start = upload_ints(layout.query_start);
  step.context_lens = upload_ints(layout.context_lens);
  step.output_rows = upload_ints(layout.output_rows);
  step.block_tables = upload_ints(layout.block_tables);
  step.slot_mapping = upload_ints(layout.slot_mapping);
  return step;
}

void CpuBackend::embedding(const Tensor& table, const Tensor& ids, Tensor& out) {
  require_rank(table, 2, "embedding table");
  const int64_t vocab = table.dim(0);
  if (ids.dtype() != DType::kI32 || ids.ndim() != 1)
    fail("embedding: ids must be a 1-D I32 tensor");
  require_shape(out, {ids.dim(0), table.dim(1)}, "embedding output");
  const auto* tokens = static_cast<const int32_t*>(ids.data());
  auto table_view = as_xtensor(table);
  auto out_view = as_xtensor(out);
  for (int64_t t = 0; t < ids.dim(0); ++t) {
    if (tokens[t] < 0 || tokens[t] >= vocab)
      fail("token id ", tokens[t], " outside [0, ", vocab, ")");
    xt::row(out_view, t) = xt::row(table_view, tokens[t]);
  }
}

void CpuBackend::rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  require_rank(x, 2, "rms_norm input");
  require_shape(weight, {x.dim(1)}, "rms_norm weight");
  require_shape(out, x.shape(), "rms_norm output");
  auto input = as_xtensor(x);
  auto gain = as_xtensor(weight);
  auto output = as_xtensor(out);
  for (size_t row = 0; row < input.shape(0); ++row) {
    // BEGIN LAB(lab01-rms-norm)
    // RMSNorm scales each row to unit root-mean-square, then by a learned gain per channel:
    //   out = x / sqrt(mean(x^2) + eps) * weight
    // Unlike LayerNorm there is no mean subtraction and no bias. The sum is taken in fp32, as
    // Hugging Face does in its (fp32-upcast) LlamaRMSNorm.
    auto x_row = xt::row(input, row);
    float mean_square = xt::mean(x_row * x_row)();
    float inverse_rms = 1.0f / std::sqrt(mean_square + eps);
    xt::row(output, row) = x_row * inverse_rms * gain;
    // END LAB
  }
}

void CpuBackend::linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out) {
  require_rank(x, 2, "linear input");
  require_rank(weight, 2, "linear weight");
  const int64_t rows = x.dim(0), in = x.dim(1), out_features = weight.dim(0);
  require_shape(weight, {out_features, in}, "linear weight");
  require_shape(out, {rows, out_features}, "linear output");
  if (rows == 0) return;
  // out[rows, out] = x[rows, in] · weight[out, in]ᵀ: one GEMM with the weight read transposed,
  // which is how torch.nn.Linear stores it (each output feature's weights are contiguous).
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows),
              static_cast<int>(out_features), static_cast<int>(in), 1.0f, x.f32(),
              static_cast<int>(in), weight.f32(), static_cast<int>(in), 0.0f, out.f32(),
              static_cast<int>(out_features));
  if (bias.defined() && bias.numel() > 0) {
    require_shape(bias, {out_features}, "linear bias");
    auto output = as_xtensor(out);
    output += as_xtensor(bias);  // broadcast over rows
  }
}

void CpuBackend::rope(Tensor& x, const Tensor& position_tensor, const Tensor& inv_freq_tensor) {
  require_rank(x, 3, "rope input");
  const int64_t num_tokens = x.dim(0), num_heads = x.dim(1), head_dim = x.dim(2);
  const int64_t half = head_dim / 2;
  if (position_tensor.dtype() != DType::kI32 || position_tensor.numel() != num_tokens) {
    fail("rope: ", position_tensor.numel(), " positions for ", num_tokens, " tokens");
  }
  if (head_dim % 2 != 0 || inv_freq_tensor.numel() != half) {
    fail("rope: head_dim ", head_dim, " needs ", head_dim / 2, " frequencies, got ",
         inv_freq_tensor.numel());
  }
  const auto* positions = static_cast<const int32_t*>(position_tensor.data());
  const float* inv_freq = inv_freq_tensor.f32();
  float* data = x.f32();
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      // BEGIN LAB(lab01-rope)
      // The pair (x[i], x[i + half]) is a 2-D vector rotated by the angle position * inv_freq[i].
      // The angle is computed in fp32, as Hugging Face does (it multiplies fp32 tensors).
      const float angle = static_cast<float>(positions[t]) * inv_freq[i];
      const float cosine = std::cos(angle), sine = std::sin(angle);
      for (int64_t h = 0; h < num_heads; ++h) {
        float* head = data + (t * num_heads + h) * head_dim;
        const float first = head[i], second = head[i + half];
        // rotate_half(x) = [-x[half:], x[:half]], so out = x * cos + rotate_half(x) * sin:
        head[i] = first * cosine - second * sine;
        head[i + half] = second * cosine + first * sine;
      }
      // END LAB
    }
  }
}

void CpuBackend::silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
  require_shape(up, gate.shape(), "silu_mul up");
  require_shape(out, gate.shape(), "silu_mul output");
  auto g = as_xtensor(gate);
  auto output = as_xtensor(out);
  output = g / (1.0f + xt::exp(-g)) * as_xtensor(up);
}

void CpuBackend::add(Tensor& x, const Tensor& y) {
  require_shape(y, x.shape(), "add operand");
  auto output = as_xtensor(x);
  output += as_xtensor(y);
}

void CpuBackend::write_kv_cache(const Tensor& keys, const Tensor& values, ContiguousKvCache& cache,
                                int layer, int64_t start) {
  if (layer < 0 || layer >= static_cast<int>(cache.keys.size())) fail("kv cache: no layer ", layer);
  Tensor& key_cache = cache.keys[layer];
  Tensor& value_cache = cache.values[layer];
  const int64_t num_tokens = keys.dim(0);
  require_shape(keys, {num_tokens, key_cache.dim(1), key_cache.dim(2)}, "new keys");
  require_shape(values, keys.shape(), "new values");
  if (start < 0 || start + num_tokens > cache.capacity) {
    fail("kv cache: positions [", start, ", ", start + num_tokens, ") exceed its capacity of ",
         cache.capacity);
  }
  std::memcpy(key_cache.rows(start, start + num_tokens).f32(), keys.f32(), keys.nbytes());
  std::memcpy(value_cache.rows(start, start + num_tokens).f32(), values.f32(), values.nbytes());
}

void CpuBackend::attention(const Tensor& queries, const ContiguousKvCache& cache, int layer,
                           int64_t start, Tensor& out) {
  require_rank(queries, 3, "attention queries");
  if (layer < 0 || layer >= static_cast<int>(cache.keys.size())) fail("kv cache: no layer ", layer);
  const int64_t num_tokens = queries.dim(0), num_heads = queries.dim(1), head_dim = queries.dim(2);
  const Tensor& key_cache = cache.keys[layer];
  const Tensor& value_cache = cache.values[layer];
  const int64_t num_kv_heads = key_cache.dim(1);
  if (key_cache.dim(2) != head_dim || num_heads % num_kv_heads != 0) {
    fail("attention: ", num_heads, " query heads of size ", head_dim, " cannot share ",
         num_kv_heads, " KV heads of size ", key_cache.dim(2));
  }
  if (start + num_tokens > cache.capacity) fail("attention: positions exceed the cache capacity");
  require_shape(out, {num_tokens, num_heads * head_dim}, "attention output");
  const int64_t group = num_heads / num_kv_heads;  // query heads per KV head (GQA)
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  auto q = as_xtensor(queries);
  auto k = as_xtensor(key_cache);
  auto v = as_xtensor(value_cache);
  auto o = as_xtensor(out);

  std::vector<float> scores(static_cast<size_t>(start + num_tokens));
  for (int64_t t = 0; t < num_tokens; ++t) {
    const int64_t visible = start + t + 1;  // causal: positions [0, start + t]
    for (int64_t h = 0; h < num_heads; ++h) {
      const int64_t kv_head = h / group;
      auto query = xt::view(q, t, h, xt::all());
      // scores[p] = (q · k[p]) / sqrt(head_dim), then a numerically stable softmax over p.
      float max_score = -std::numeric_limits<float>::infinity();
      for (int64_t p = 0; p < visible; ++p) {
        scores[p] = xt::sum(query * xt::view(k, p, kv_head, xt::all()))() * scale;
        max_score = std::max(max_score, scores[p]);
      }
      float total = 0.0f;
      for (int64_t p = 0; p < visible; ++p) {
        scores[p] = std::exp(scores[p] - max_score);
        total += scores[p];
      }
      // out = Σ_p softmax(scores)[p] · v[p]
      auto result = xt::view(o, t, xt::range(h * head_dim, (h + 1) * head_dim));
      result.fill(0.0f);
      for (int64_t p = 0; p < visible; ++p) {
        result += (scores[p] / total) * xt::view(v, p, kv_head, xt::all());
      }
    }
  }
}

void CpuBackend::attention(const Tensor& queries, const Tensor& keys, const Tensor& values,
                           const Step& step, int layer, Tensor& out) {
  const StepLayout& layout = step.layout;
  require_rank(queries, 3, "attention queries");
  require_rank(keys, 3, "attention keys");
  require_shape(values, keys.shape(), "attention values");
  const int64_t num_heads = queries.dim(1), num_kv_heads = keys.dim(1), head_dim = queries.dim(2);
  require_shape(out, {layout.num_tokens(), num_heads * head_dim}, "attention output");
  for (int64_t s = 0; s < layout.num_seqs(); ++s) {
    const int64_t begin = layout.query_start[s], end = layout.query_start[s + 1];
    const int64_t start = layout.context_lens[s] - (end - begin);  // position of the first new one
    Tensor out_rows = out.rows(begin, end);
    if (layout.paged == nullptr) {
      ContiguousKvCache& cache = *layout.contiguous[s];
      write_kv_cache(keys.rows(begin, end), values.rows(begin, end), cache, layer, start);
      attention(queries.rows(begin, end), cache, layer, start, out_rows);
      continue;
    }
    const PagedKvCache& cache = *layout.paged;
    if (layer < 0 || layer >= static_cast<int>(cache.keys.size()))
      fail("kv cache: no layer ", layer);
    if (cache.num_kv_heads != num_kv_heads || cache.head_dim != head_dim) {
      fail("attention: keys of ", num_kv_heads, " heads x ", head_dim, " do not fit a cache of ",
           cache.num_kv_heads, " x ", cache.head_dim);
    }
    cpu::write_paged_kv(keys.rows(begin, end).f32(), values.rows(begin, end).f32(),
                        layout.slot_mapping.data() + begin, end - begin, num_kv_heads, head_dim,
                        cache.keys[layer].f32(), cache.values[layer].f32());
    cpu::PagedSequenceView sequence;
    sequence.key_cache = cache.keys[layer].f32();
    sequence.value_cache = cache.values[layer].f32();
    sequence.block_table = layout.block_tables.data() + s * layout.blocks_per_seq;
    sequence.block_size = cache.block_size;
    sequence.context_len = layout.context_lens[s];
    cpu::AttentionHeads heads{num_heads, num_kv_heads, head_dim,
                              1.0f / std::sqrt(static_cast<float>(head_dim))};
    cpu::paged_attention(queries.rows(begin, end).f32(), end - begin, sequence, heads,
                         out_rows.f32());
  }
}

void CpuBackend::argmax(const Tensor& logits, Tensor& ids) {
  require_rank(logits, 2, "argmax input");
  if (ids.dtype() != DType::kI32 || ids.numel() != logits.dim(0)) {
    fail("argmax: ids must be I32 with one entry per row");
  }
  const int64_t vocab = logits.dim(1);
  auto* out = static_cast<int32_t*>(ids.data());
  for (int64_t r = 0; r < logits.dim(0); ++r) {
    const float* row = logits.f32() + r * vocab;
    out[r] = static_cast<int32_t>(std::max_element(row, row + vocab) - row);  // first maximum
  }
}

}  // namespace servelab
