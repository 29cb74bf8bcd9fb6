// The op interface that the model forward is written against. A backend owns memory on its
// device and computes; it never decides what to compute (that is the model's job) or when
// (the scheduler's). The CPU backend is the readable fp32 reference; the CUDA backend implements
// the same ops with cuBLAS and servelab's kernels, and is tested against the CPU one.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/tensor.h"

namespace servelab {

/// The keys and values of one sequence, stored contiguously: the cache the static-batching server
/// and naive attention use. Position p of layer l lives at keys[l][p]. It reserves `capacity`
/// positions up front, whether the sequence uses them or not.
struct ContiguousKvCache {
  std::vector<Tensor> keys;    ///< per layer: [capacity, num_kv_heads, head_dim], backend device
  std::vector<Tensor> values;  ///< per layer: [capacity, num_kv_heads, head_dim], backend device
  int64_t capacity = 0;        ///< positions the cache can hold
  int64_t length = 0;          ///< positions written so far: [0, length) are valid
};

/// A paged KV cache shared by many sequences: a pool of fixed-size blocks per layer. A sequence
/// owns a list of blocks (its block table); its position p lives in block
/// block_table[p / block_size] at offset p % block_size. Who owns which block is the block
/// manager's business; this is only the memory.
struct PagedKvCache {
  std::vector<Tensor> keys;    ///< per layer: [num_blocks, block_size, num_kv_heads, head_dim]
  std::vector<Tensor> values;  ///< likewise
  int64_t num_blocks = 0;
  int64_t block_size = 16;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
};

/// The layout of one forward call, built on the host by the model: which tokens, at which
/// positions, belong to which sequence, and where the sequences' keys and values live. Sequence
/// s owns packed rows [query_start[s], query_start[s + 1]).
struct StepLayout {
  std::vector<int32_t> tokens;        ///< [num_tokens]
  std::vector<int32_t> positions;     ///< [num_tokens]
  std::vector<int32_t> query_start;   ///< [num_seqs + 1]
  std::vector<int32_t> context_lens;  ///< [num_seqs]: cached plus new tokens after this step
  std::vector<int32_t> output_rows;   ///< rows whose logits are returned, in order
  int32_t max_query_len = 0;
  int32_t max_context_len = 0;  ///< an upper bound on context_lens (kernels size grids by it)
  /// Tells apart forward bodies that differ for the same sizes (logits or argmax), so a backend
  /// that records and replays steps keeps one recording per variant.
  int32_t variant = 0;

  /// Contiguous caches, one per sequence (the static-batching layout), or empty when paged.
  std::vector<ContiguousKvCache*> contiguous;
  /// The paged cache (the continuous-batching layout), or null when contiguous.
  PagedKvCache* paged = nullptr;
  std::vector<int32_t> block_tables;  ///< [num_seqs, blocks_per_seq], rows padded with 0
  int32_t blocks_per_seq = 0;
  std::vector<int32_t> slot_mapping;  ///< [num_tokens]: block * block_size + offset

  int64_t num_seqs() const { return static_cast<int64_t>(query_start.size()) - 1; }
  int64_t num_tokens() const { return static_cast<int64_t>(tokens.size()); }
};

/// A StepLayout made available to one backend's ops: the index arrays as int32 tensors on its
/// device, uploaded once per forward call. Valid until the next prepare_step.
struct Step {
  StepLayout layout;
  Tensor tokens, positions, query_start, context_lens, output_rows;  ///< I32
  Tensor block_tables, slot_mapping;                                 ///< I32, paged only
  std::shared_ptr<void> backend_state;  ///< whatever else the backend keeps for the step
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  /// The type of activations and KV caches: F32 on the CPU; on CUDA the weights' type.
  virtual DType compute_dtype() const = 0;

  // ---- memory -------------------------------------------------------------------------------
  /// A zero-filled tensor on the backend's device that lives as long as its handle.
  virtual Tensor allocate(const Shape& shape, DType dtype) = 0;
  Tensor allocate(const Shape& shape) { return allocate(shape, compute_dtype()); }
  /// Working memory for one forward call (activations): contents unspecified, valid until the
  /// next prepare_step. Cheap: the CUDA backend hands out slices of one arena.
  virtual Tensor scratch(const Shape& shape, DType dtype) = 0;
  Tensor scratch(const Shape& shape) { return scratch(shape, compute_dtype()); }
  /// Copies host data of `host_dtype` to a new tensor of `dtype` on the device, converting
  /// between floating-point types (weights at load time, test inputs).
  virtual Tensor upload(const void* host, DType host_dtype, const Shape& shape, DType dtype) = 0;
  /// fp32 host data to the compute dtype.
  Tensor upload(const float* host, const Shape& shape) {
    return upload(host, DType::kF32, shape, compute_dtype());
  }
  Tensor upload_ints(const std::vector<int32_t>& values);
  /// Copies a tensor of this backend to a new host tensor: F32 for floating-point types, I32 for
  /// I32. Waits for the device's pending work.
  virtual Tensor to_host(const Tensor& tensor) = 0;
  /// A zeroed contiguous KV cache for one sequence.
  ContiguousKvCache allocate_kv_cache(int64_t num_layers, int64_t capacity, int64_t num_kv_heads,
                                      int64_t head_dim);
  /// A zeroed paged KV cache of `num_blocks` blocks per layer.
  PagedKvCache allocate_paged_kv_cache(int64_t num_layers, int64_t num_blocks, int64_t block_size,
                                       int64_t num_kv_heads, int64_t head_dim);
  /// A zero-filled tensor in host memory that this backend's device copies to and from at full
  /// link speed: pinned (page-locked) memory on CUDA, ordinary memory on the CPU. The swap space
  /// of the paged KV cache lives in such tensors.
  virtual Tensor allocate_host_pinned(const Shape& shape, DType dtype);
  /// A paged KV cache like allocate_paged_kv_cache, in allocate_host_pinned memory.
  PagedKvCache allocate_host_paged_kv_cache(int64_t num_layers, int64_t num_blocks,
                                            int64_t block_size, int64_t num_kv_heads,
                                            int64_t head_dim, DType dtype);
  /// Free and total bytes of the device's memory (for sizing the KV pool from a memory fraction).
  struct MemoryInfo {
    int64_t free_bytes = 0;
    int64_t total_bytes = 0;
  };
  virtual MemoryInfo memory_info() const;

  // ---- KV block movement (the cache engine executes the block manager's plans with these) ----
  /// (source block, destination block) pairs. In one call no block may be written twice and, in
  /// one pool, no block may be both written by one pair and read by another (the pairs are copied
  /// as if all at once); such pairs, and indices outside a pool, throw servelab::Error.
  using BlockPairs = std::vector<std::pair<int32_t, int32_t>>;
  /// Copies whole blocks inside one paged cache, every layer, keys and values (copy-on-write).
  /// Ordered with the forward calls: the next step sees the copies.
  virtual void copy_blocks(PagedKvCache& cache, const BlockPairs& pairs);
  /// Copies whole blocks from one paged cache to another of the same shape and dtype, every
  /// layer, keys and values: device to host (swap out) or host to device (swap in). The CUDA
  /// backend copies on a stream of its own, layer by layer, and makes the next forward's
  /// attention of layer l wait only for layer l's copies; the CPU backend copies at once.
  virtual void swap_blocks(const PagedKvCache& source, PagedKvCache& destination,
                           const BlockPairs& pairs);
  /// Waits until every copy issued so far has finished (tests, benchmarks, shutdown).
  virtual void synchronize() {}

  // ---- one forward call ---------------------------------------------------------------------
  /// Uploads a step's layout; starts a new forward call (scratch memory is recycled).
  virtual Step prepare_step(const StepLayout& layout) = 0;
  /// Runs `body` (the forward's ops for `step`) and returns what it returns. A backend may record
  /// the ops once and replay them for later steps of the same shape (CUDA graphs): `body` must
  /// then issue the same ops on the same scratch tensors, reading every varying value from the
  /// step's tensors.
  virtual Tensor run_step(const Step& step, const std::function<Tensor()>& body) {
    (void)step;
    return body();
  }

  // ---- ops ----------------------------------------------------------------------------------
  /// out[t] = table[ids[t]]: the embedding lookup, and in general a gather of rows.
  /// @param table [vocab, hidden]   @param ids [num_tokens], I32   @param out [num_tokens, hidden]
  virtual void embedding(const Tensor& table, const Tensor& ids, Tensor& out) = 0;
  /// The same with host ids (uploaded first); ids must be in [0, rows of table).
  void embedding(const Tensor& table, const std::vector<int32_t>& ids, Tensor& out);

  /// out = x / sqrt(mean(x^2) + eps) * weight, row by row.
  /// @param x [rows, hidden]   @param weight [hidden]   @param out [rows, hidden] (may alias x)
  virtual void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) = 0;

  /// The residual add fused with the RMSNorm after it: residual += x; out = rms_norm(residual).
  /// The default runs add then rms_norm; the CUDA backend fuses them into one kernel.
  virtual void add_rms_norm(Tensor& residual, const Tensor& x, const Tensor& weight, float eps,
                            Tensor& out);

  /// out = x · weightᵀ + bias: the layout of torch.nn.Linear.
  /// @param x [rows, in]   @param weight [out, in]   @param bias [out] or undefined
  /// @param out [rows, out] (must not alias x)
  virtual void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out) = 0;

  /// Rotary position embedding, in place, in Hugging Face's rotate-half layout: dimension i pairs
  /// with i + head_dim/2, rotated by the angle positions[t] * inv_freq[i].
  /// @param x [num_tokens, num_heads, head_dim]   @param positions [num_tokens], I32
  /// @param inv_freq [head_dim / 2], F32 (already scaled: see model/rope_frequencies.h)
  virtual void rope(Tensor& x, const Tensor& positions, const Tensor& inv_freq) = 0;
  /// The same with host positions and frequencies (uploaded first).
  void rope(Tensor& x, const std::vector<int64_t>& positions, const std::vector<float>& inv_freq);
  /// RoPE on a step's queries and keys, which share positions and frequencies. The default
  /// rotates one then the other; the CUDA backend does both in one launch.
  virtual void rope_queries_and_keys(Tensor& queries, Tensor& keys, const Tensor& positions,
                                     const Tensor& inv_freq) {
    rope(queries, positions, inv_freq);
    rope(keys, positions, inv_freq);
  }

  /// out = silu(gate) * up, element-wise; silu(g) = g / (1 + exp(-g)).
  /// @param gate [rows, n]   @param up [rows, n]   @param out [rows, n] (may alias gate)
  virtual void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) = 0;

  /// x += y, element-wise (the residual connections). Shapes must match.
  virtual void add(Tensor& x, const Tensor& y) = 0;

  /// Attention for every sequence of the step: writes the new keys and values into the
  /// sequences' caches (contiguous or paged, as the step says), then computes causal attention
  /// of each new token over its sequence's cache: the query at position p sees positions
  /// [0, p]. Grouped-query attention: query head h reads KV head h / (num_heads / num_kv_heads).
  /// @param queries [num_tokens, num_heads, head_dim]
  /// @param keys, values [num_tokens, num_kv_heads, head_dim]
  /// @param out [num_tokens, num_heads * head_dim]
  virtual void attention(const Tensor& queries, const Tensor& keys, const Tensor& values,
                         const Step& step, int layer, Tensor& out) = 0;

  /// ids[r] = argmax of row r (the first on ties). @param logits [rows, vocab]
  /// @param ids [rows], I32
  virtual void argmax(const Tensor& logits, Tensor& ids) = 0;
};

/// Checks a StepLayout's internal consistency (sizes, ranges, one KV layout); throws
/// servelab::Error naming the first problem.
void validate_step_layout(const StepLayout& layout);

}  // namespace servelab
