#include "backend/backend.h"

#include <unistd.h>

#include <cstring>

#include "backend/block_transfer_checks.h"
#include "common/error.h"

namespace servelab {

Tensor Backend::upload_ints(const std::vector<int32_t>& values) {
  return upload(values.data(), DType::kI32, {static_cast<int64_t>(values.size())}, DType::kI32);
}

ContiguousKvCache Backend::allocate_kv_cache(int64_t num_layers, int64_t capacity,
                                             int64_t num_kv_heads, int64_t head_dim) {
  if (num_layers <= 0 || capacity <= 0 || num_kv_heads <= 0 || head_dim <= 0) {
    fail("KV cache sizes must be positive: layers ", num_layers, ", capacity ", capacity,
         ", kv heads ", num_kv_heads, ", head_dim ", head_dim);
  }
  ContiguousKvCache cache;
  cache.capacity = capacity;
  for (int64_t layer = 0; layer < num_layers; ++layer) {
    cache.keys.push_back(allocate({capacity, num_kv_heads, head_dim}));
    cache.values.push_back(allocate({capacity, num_kv_heads, head_dim}));
  }
  return cache;
}

namespace {

/// A paged KV cache whose per-layer tensors come from `allocate(shape)`: device or pinned host.
template <typename Allocate>
PagedKvCache make_paged_kv_cache(const char* what, int64_t num_layers, int64_t num_blocks,
                                 int64_t block_size, int64_t num_kv_heads, int64_t head_dim,
                                 Allocate&& allocate) {
  if (num_layers <= 0 || num_blocks <= 0 || block_size <= 0 || num_kv_heads <= 0 || head_dim <= 0) {
    fail(what, " sizes must be positive: layers ", num_layers, ", blocks ", num_blocks,
         ", block size ", block_size, ", kv heads ", num_kv_heads, ", head_dim ", head_dim);
  }
  PagedKvCache cache;
  cache.num_blocks = num_blocks;
  cache.block_size = block_size;
  cache.num_kv_heads = num_kv_heads;
  cache.head_dim = head_dim;
  const Shape shape = {num_blocks, block_size, num_kv_heads, head_dim};
  for (int64_t layer = 0; layer < num_layers; ++layer) {
    cache.keys.push_back(allocate(shape));
    cache.values.push_back(allocate(shape));
  }
  return cache;
}

}  // namespace

PagedKvCache Backend::allocate_paged_kv_cache(int64_t num_layers, int64_t num_blocks,
                                              int64_t block_size, int64_t num_kv_heads,
                                              int64_t head_dim) {
  return make_paged_kv_cache("paged KV cache", num_layers, num_blocks, block_size, num_kv_heads,
                             head_dim, [&](const Shape& shape) { return allocate(shape); });
}

Tensor Backend::allocate_host_pinned(const Shape& shape, DType dtype) {
  // Plain host memory: a backend whose device is the CPU has no faster kind to offer.
  return Tensor::zeros(shape, dtype);
}

PagedKvCache Backend::allocate_host_paged_kv_cache(int64_t num_layers, int64_t num_blocks,
                                                   int64_t block_size, int64_t num_kv_heads,
                                                   int64_t head_dim, DType dtype) {
  return make_paged_kv_cache(
      "host paged KV cache", num_layers, num_blocks, block_size, num_kv_heads, head_dim,
      [&](const Shape& shape) { return allocate_host_pinned(shape, dtype); });
}

Backend::MemoryInfo Backend::memory_info() const {
  // The CPU's "device memory" is the machine's RAM. Available pages are those free right now
  // (the kernel's MemFree: page cache not counted), a cautious figure for sizing a pool.
  const long page = sysconf(_SC_PAGESIZE);
  const long total_pages = sysconf(_SC_PHYS_PAGES);
  const long free_pages = sysconf(_SC_AVPHYS_PAGES);
  if (page <= 0 || total_pages <= 0 || free_pages < 0) {
    fail("memory_info: sysconf cannot tell this machine's memory size (page size ", page,
         ", pages ", total_pages, ", available ", free_pages, ")");
  }
  MemoryInfo info;
  info.total_bytes = static_cast<int64_t>(total_pages) * page;
  info.free_bytes = static_cast<int64_t>(free_pages) * page;
  return info;
}

namespace {

/// Host block copies need host memory: a cache on a device belongs to that device's backend.
void require_host_cache(const PagedKvCache& cache, const char* op, const char* which) {
  if (cache.keys.front().device() != Device::kCpu) {
    fail(op, ": the ", which,
         " cache is in GPU memory; this backend copies host memory only (use the backend that "
         "allocated the cache)");
  }
}

/// Copies whole blocks, every layer, keys and values, with memcpy, one pair after the other.
void copy_host_blocks(const PagedKvCache& source, PagedKvCache& destination,
                      const Backend::BlockPairs& pairs, int64_t block_bytes) {
  for (size_t layer = 0; layer < source.keys.size(); ++layer) {
    const Tensor* from[2] = {&source.keys[layer], &source.values[layer]};
    Tensor* to[2] = {&destination.keys[layer], &destination.values[layer]};
    for (int kind = 0; kind < 2; ++kind) {
      const auto* source_bytes = static_cast<const char*>(from[kind]->data());
      auto* destination_bytes = static_cast<char*>(to[kind]->data());
      for (const auto& [source_block, destination_block] : pairs) {
        if (source_block == destination_block && &source == &destination) continue;
        std::memcpy(destination_bytes + destination_block * block_bytes,
                    source_bytes + source_block * block_bytes, static_cast<size_t>(block_bytes));
      }
    }
  }
}

}  // namespace

void Backend::copy_blocks(PagedKvCache& cache, const BlockPairs& pairs) {
  const int64_t block_bytes = check_paged_cache(cache, "copy_blocks", "paged");
  require_host_cache(cache, "copy_blocks", "paged");
  check_block_pairs(pairs, cache.num_blocks, cache.num_blocks, /*same_pool=*/true, "copy_blocks");
  copy_host_blocks(cache, cache, pairs, block_bytes);
}

void Backend::swap_blocks(const PagedKvCache& source, PagedKvCache& destination,
                          const BlockPairs& pairs) {
  const int64_t block_bytes = check_paged_cache(source, "swap_blocks", "source");
  check_paged_cache(destination, "swap_blocks", "destination");
  check_same_block_kind(source, destination, "swap_blocks");
  require_host_cache(source, "swap_blocks", "source");
  require_host_cache(destination, "swap_blocks", "destination");
  check_block_pairs(pairs, source.num_blocks, destination.num_blocks, &source == &destination,
                    "swap_blocks");
  copy_host_blocks(source, destination, pairs, block_bytes);
}

void Backend::embedding(const Tensor& table, const std::vector<int32_t>& ids, Tensor& out) {
  const int64_t rows = table.ndim() == 2 ? table.dim(0) : 0;
  for (int32_t id : ids) {
    if (id < 0 || id >= rows) fail("embedding: id ", id, " outside [0, ", rows, ")");
  }
  embedding(table, upload_ints(ids), out);
}

void Backend::rope(Tensor& x, const std::vector<int64_t>& positions,
                   const std::vector<float>& inv_freq) {
  std::vector<int32_t> narrow(positions.begin(), positions.end());
  for (int64_t p : positions) {
    if (p < 0 || p > INT32_MAX) fail("rope: position ", p, " outside [0, 2^31)");
  }
  Tensor frequencies =
      upload(inv_freq.data(), DType::kF32, {static_cast<int64_t>(inv_freq.size())}, DType::kF32);
  rope(x, upload_ints(narrow), frequencies);
}

void Backend::add_rms_norm(Tensor& residual, const Tensor& x, const Tensor& weight, float eps,
                           Tensor& out) {
  add(residual, x);
  rms_norm(residual, weight, eps, out);
}

void validate_step_layout(const StepLayout& layout) {
  const int64_t num_seqs = layout.num_seqs();
  const int64_t num_tokens = layout.num_tokens();
  if (num_seqs <= 0) fail("step: no sequences");
  if (static_cast<int64_t>(layout.positions.size()) != num_tokens) {
    fail("step: ", layout.positions.size(), " positions for ", num_tokens, " tokens");
  }
  if (static_cast<int64_t>(layout.context_lens.size()) != num_seqs) {
    fail("step: ", layout.context_lens.size(), " context lengths for ", num_seqs, " sequences");
  }
  if (layout.query_start.front() != 0 || layout.query_start.back() != num_tokens) {
    fail("step: query_start must run from 0 to the number of tokens (", num_tokens, ")");
  }
  for (int64_t s = 0; s < num_seqs; ++s) {
    const int32_t new_tokens = layout.query_start[s + 1] - layout.query_start[s];
    if (new_tokens <= 0) fail("step: sequence ", s, " has no new tokens");
    if (new_tokens > layout.max_query_len) fail("step: max_query_len is too small");
    if (layout.context_lens[s] < new_tokens) {
      fail("step: sequence ", s, " has ", new_tokens, " new tokens but a context of ",
           layout.context_lens[s]);
    }
    if (layout.context_lens[s] > layout.max_context_len) fail("step: max_context_len too small");
  }
  for (int32_t row : layout.output_rows) {
    if (row < 0 || row >= num_tokens) fail("step: output row ", row, " outside the batch");
  }
  const bool paged = layout.paged != nullptr;
  if (paged == !layout.contiguous.empty()) {
    fail("step: give either one contiguous cache per sequence or a paged cache, not both");
  }
  if (!paged) {
    if (static_cast<int64_t>(layout.contiguous.size()) != num_seqs) {
      fail("step: ", layout.contiguous.size(), " contiguous caches for ", num_seqs, " sequences");
    }
    for (int64_t s = 0; s < num_seqs; ++s) {
      if (layout.contiguous[s] == nullptr) fail("step: sequence ", s, " has no KV cache");
      if (layout.context_lens[s] > layout.contiguous[s]->capacity) {
        fail("step: sequence ", s, " needs ", layout.context_lens[s],
             " positions but its KV cache holds ", layout.contiguous[s]->capacity);
      }
    }
    return;
  }
  const int64_t block_size = layout.paged->block_size;
  if (static_cast<int64_t>(layout.block_tables.size()) != num_seqs * layout.blocks_per_seq) {
    fail("step: block tables hold ", layout.block_tables.size(), " entries, expected ", num_seqs,
         " x ", layout.blocks_per_seq);
  }
  if (static_cast<int64_t>(layout.slot_mapping.size()) != num_tokens) {
    fail("step: ", layout.slot_mapping.size(), " slots for ", num_tokens, " tokens");
  }
  for (int64_t s = 0; s < num_seqs; ++s) {
    const int64_t needed = (layout.context_lens[s] + block_size - 1) / block_size;
    if (needed > layout.blocks_per_seq) {
      fail("step: sequence ", s, " needs ", needed, " blocks, its table has ",
           layout.blocks_per_seq);
    }
    for (int64_t b = 0; b < needed; ++b) {
      const int32_t block = layout.block_tables[s * layout.blocks_per_seq + b];
      if (block < 0 || block >= layout.paged->num_blocks) {
        fail("step: sequence ", s, " names block ", block, " of a pool of ",
             layout.paged->num_blocks);
      }
    }
  }
  for (int64_t t = 0; t < num_tokens; ++t) {
    const int32_t slot = layout.slot_mapping[t];
    if (slot < 0 || slot >= layout.paged->num_blocks * block_size) {
      fail("step: token ", t, " maps to slot ", slot, " outside the pool");
    }
  }
}

}  // namespace servelab
