// PagedAttention on the CPU: the readable fp32 version of what kernels/paged_attention.cu and
// kernels/prefill_attention.cu do on the GPU, and the reference their tests compare against.
//
// The paged layout (shared with the kernels): each layer's key cache is
// [num_blocks, block_size, num_kv_heads, head_dim], and so is its value cache. A sequence does not
// own a contiguous stretch of it; it owns a list of blocks, its block table, and its token at
// position p lives in block block_table[p / block_size] at offset p % block_size.
#pragma once

#include <cstdint>

namespace servelab::cpu {

/// Heads of an attention call. num_heads % num_kv_heads == 0: query head h reads KV head
/// h / (num_heads / num_kv_heads) (grouped-query attention).
struct AttentionHeads {
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  float scale = 0.0f;  ///< multiplies q·k; usually 1 / sqrt(head_dim)
};

/// One sequence's view of a layer of the paged cache.
struct PagedSequenceView {
  const float* key_cache = nullptr;      ///< [num_blocks, block_size, num_kv_heads, head_dim]
  const float* value_cache = nullptr;    ///< likewise
  const int32_t* block_table = nullptr;  ///< the sequence's blocks, in order
  int64_t block_size = 16;
  int64_t context_len = 0;  ///< tokens the query attends to: positions [0, context_len)
};

/// Decode attention of one query token over a paged sequence:
///   out[h] = Σ_p softmax_p(scale · q[h] · k[p]) · v[p],  p in [0, context_len)
/// @param query [num_heads, head_dim]   @param out [num_heads * head_dim]
void paged_attention_decode(const float* query, const PagedSequenceView& sequence,
                            const AttentionHeads& heads, float* out);

/// Causal attention of `num_queries` new tokens that sit at positions
/// [context_len - num_queries, context_len) of the sequence (already written to the cache):
/// query i attends to positions [0, context_len - num_queries + i]. Prefill, and decode when
/// num_queries is 1.
/// @param queries [num_queries, num_heads, head_dim]   @param out [num_queries, num_heads *
/// head_dim]
void paged_attention(const float* queries, int64_t num_queries, const PagedSequenceView& sequence,
                     const AttentionHeads& heads, float* out);

/// Writes `num_tokens` keys and values to slots of a paged cache: token t goes to slot
/// slots[t] = block * block_size + offset (a slot < 0 is skipped).
/// @param keys, values [num_tokens, num_kv_heads, head_dim]
void write_paged_kv(const float* keys, const float* values, const int32_t* slots,
                    int64_t num_tokens, int64_t num_kv_heads, int64_t head_dim, float* key_cache,
                    float* value_cache);

}  // namespace servelab::cpu
