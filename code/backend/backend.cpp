#include "backend/backend.h"

#include "common/error.h"

namespace servelab {

ContiguousKvCache Backend::allocate_kv_cache(int64_t num_layers, int64_t capacity,
                                             int64_t num_kv_heads, int64_t head_dim) {
  if (num_layers <= 0 || capacity <= 0 || num_kv_heads <= 0 || head_dim <= 0) {
    fail("KV cache sizes must be positive: layers ", num_layers, ", capacity ", capacity,
         ", kv heads ", num_kv_heads, ", head_dim ", head_dim);
  }
  ContiguousKvCache cache;
  cache.capacity = capacity;
  std::vector<float> zeros(static_cast<size_t>(capacity * num_kv_heads * head_dim), 0.0f);
  for (int64_t layer = 0; layer < num_layers; ++layer) {
    cache.keys.push_back(upload(zeros.data(), {capacity, num_kv_heads, head_dim}));
    cache.values.push_back(upload(zeros.data(), {capacity, num_kv_heads, head_dim}));
  }
  return cache;
}

}  // namespace servelab
