#include "backend/cpu/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common/error.h"

namespace servelab::cpu {

void paged_attention_decode(const float* query, const PagedSequenceView& sequence,
                            const AttentionHeads& heads, float* out) {
  if (heads.num_kv_heads <= 0 || heads.num_heads % heads.num_kv_heads != 0) {
    fail("paged attention: ", heads.num_heads, " query heads cannot share ", heads.num_kv_heads,
         " KV heads");
  }
  if (sequence.context_len <= 0) fail("paged attention: a query needs at least one token to see");
  if (sequence.block_size <= 0) fail("paged attention: block size must be positive");
  const int64_t group = heads.num_heads / heads.num_kv_heads;
  const int64_t head_dim = heads.head_dim;
  const int64_t token_stride = heads.num_kv_heads * head_dim;  // one token's keys, all KV heads
  std::vector<float> scores(static_cast<size_t>(sequence.context_len));
  for (int64_t h = 0; h < heads.num_heads; ++h) {
    // BEGIN LAB(lab04-paged-decode)
    // Query head h reads KV head h / group. Its key for position p is not at p: the block table
    // says which physical block holds positions [b * block_size, (b + 1) * block_size).
    const float* q = query + h * head_dim;
    const int64_t kv_head = h / group;
    float max_score = -std::numeric_limits<float>::infinity();
    for (int64_t p = 0; p < sequence.context_len; ++p) {
      const int64_t block = sequence.block_table[p / sequence.block_size];
      const int64_t slot = block * sequence.block_size + p % sequence.block_size;
      const float* k = sequence.key_cache + slot * token_stride + kv_head * head_dim;
      float dot = 0.0f;
      for (int64_t d = 0; d < head_dim; ++d) dot += q[d] * k[d];
      scores[p] = dot * heads.scale;
      max_score = std::max(max_score, scores[p]);
    }
    // Softmax with the maximum subtracted first, so that exp never overflows.
    float total = 0.0f;
    for (int64_t p = 0; p < sequence.context_len; ++p) {
      scores[p] = std::exp(scores[p] - max_score);
      total += scores[p];
    }
    float* o = out + h * head_dim;
    std::fill(o, o + head_dim, 0.0f);
    for (int64_t p = 0; p < sequence.context_len; ++p) {
      const int64_t block = sequence.block_table[p / sequence.block_size];
      const int64_t slot = block * sequence.block_size + p % sequence.block_size;
      const float* v = sequence.value_cache + slot * token_stride + kv_head * head_dim;
      const float weight = scores[p] / total;
      for (int64_t d = 0; d < head_dim; ++d) o[d] += weight * v[d];
    }
    // END LAB
  }
}

void paged_attention(const float* queries, int64_t num_queries, const PagedSequenceView& sequence,
                     const AttentionHeads& heads, float* out) {
  if (num_queries <= 0 || num_queries > sequence.context_len) {
    fail("paged attention: ", num_queries, " new tokens in a context of ", sequence.context_len);
  }
  // Causality by truncation: query i is decode attention over the context as it stood when
  // token i was the newest one.
  const int64_t first_position = sequence.context_len - num_queries;
  const int64_t row = heads.num_heads * heads.head_dim;
  for (int64_t i = 0; i < num_queries; ++i) {
    PagedSequenceView visible = sequence;
    visible.context_len = first_position + i + 1;
    paged_attention_decode(queries + i * row, visible, heads, out + i * row);
  }
}

void write_paged_kv(const float* keys, const float* values, const int32_t* slots,
                    int64_t num_tokens, int64_t num_kv_heads, int64_t head_dim, float* key_cache,
                    float* value_cache) {
  const int64_t token_stride = num_kv_heads * head_dim;
  for (int64_t t = 0; t < num_tokens; ++t) {
    if (slots[t] < 0) continue;
    std::memcpy(key_cache + slots[t] * token_stride, keys + t * token_stride,
                sizeof(float) * token_stride);
    std::memcpy(value_cache + slots[t] * token_stride, values + t * token_stride,
                sizeof(float) * token_stride);
  }
}

}  // namespace servelab::cpu
