#include "backend/block_transfer_checks.h"

#include <unordered_map>

#include "common/error.h"

namespace servelab {

int64_t check_paged_cache(const PagedKvCache& cache, const char* op, const char* which) {
  if (cache.keys.empty() || cache.keys.size() != cache.values.size()) {
    fail(op, ": the ", which, " cache has ", cache.keys.size(), " key tensors and ",
         cache.values.size(),
         " value tensors; expected one of each per layer (at least one layer)");
  }
  if (cache.num_blocks < 0 || cache.block_size <= 0 || cache.num_kv_heads <= 0 ||
      cache.head_dim <= 0) {
    fail(op, ": the ", which, " cache's sizes are not valid: blocks ", cache.num_blocks,
         ", block size ", cache.block_size, ", kv heads ", cache.num_kv_heads, ", head_dim ",
         cache.head_dim);
  }
  const Shape expected = {cache.num_blocks, cache.block_size, cache.num_kv_heads, cache.head_dim};
  const Tensor& first = cache.keys.front();
  for (size_t layer = 0; layer < cache.keys.size(); ++layer) {
    for (const Tensor* tensor : {&cache.keys[layer], &cache.values[layer]}) {
      const char* kind = tensor == &cache.keys[layer] ? "keys" : "values";
      if (tensor->shape() != expected) {
        fail(op, ": the ", which, " cache's ", kind, " of layer ", layer, " have shape ",
             shape_string(tensor->shape()), ", expected ", shape_string(expected),
             " (blocks, block size, kv heads, head_dim)");
      }
      if (tensor->dtype() != first.dtype()) {
        fail(op, ": the ", which, " cache's ", kind, " of layer ", layer, " are ",
             dtype_name(tensor->dtype()), ", the keys of layer 0 are ", dtype_name(first.dtype()));
      }
      if (tensor->device() != first.device()) {
        fail(op, ": the ", which, " cache's ", kind, " of layer ", layer,
             " live in another memory space than the keys of layer 0");
      }
      if (tensor->data() == nullptr && tensor->numel() > 0) {
        fail(op, ": the ", which, " cache's ", kind, " of layer ", layer, " have no memory");
      }
    }
  }
  return cache.block_size * cache.num_kv_heads * cache.head_dim *
         static_cast<int64_t>(dtype_size(first.dtype()));
}

void check_same_block_kind(const PagedKvCache& source, const PagedKvCache& destination,
                           const char* op) {
  if (source.keys.size() != destination.keys.size()) {
    fail(op, ": the source cache has ", source.keys.size(), " layers, the destination ",
         destination.keys.size());
  }
  if (source.block_size != destination.block_size ||
      source.num_kv_heads != destination.num_kv_heads || source.head_dim != destination.head_dim) {
    fail(op, ": blocks differ: the source's are [", source.block_size, ", ", source.num_kv_heads,
         ", ", source.head_dim, "], the destination's [", destination.block_size, ", ",
         destination.num_kv_heads, ", ", destination.head_dim,
         "] (block size, kv heads, head_dim)");
  }
  const DType from = source.keys.front().dtype(), to = destination.keys.front().dtype();
  if (from != to) {
    fail(op, ": the source cache is ", dtype_name(from), ", the destination ", dtype_name(to),
         "; blocks are copied byte for byte, so both must have one dtype");
  }
}

void check_block_pairs(const Backend::BlockPairs& pairs, int64_t source_blocks,
                       int64_t destination_blocks, bool same_pool, const char* op) {
  std::unordered_map<int32_t, size_t> written;  // destination block -> the pair that writes it
  written.reserve(pairs.size());
  for (size_t i = 0; i < pairs.size(); ++i) {
    const auto [source, destination] = pairs[i];
    if (source < 0 || source >= source_blocks) {
      fail(op, ": pair ", i, " (", source, " -> ", destination, ") reads block ", source,
           ", outside the source pool of ", source_blocks, " blocks");
    }
    if (destination < 0 || destination >= destination_blocks) {
      fail(op, ": pair ", i, " (", source, " -> ", destination, ") writes block ", destination,
           ", outside the destination pool of ", destination_blocks, " blocks");
    }
    const auto [where, inserted] = written.emplace(destination, i);
    if (!inserted) {
      fail(op, ": pairs ", where->second, " and ", i, " both write block ", destination,
           "; a block can receive only one block per call");
    }
  }
  if (!same_pool) return;
  for (size_t i = 0; i < pairs.size(); ++i) {
    const auto found = written.find(pairs[i].first);
    if (found != written.end() && found->second != i) {
      fail(op, ": block ", pairs[i].first, " is written by pair ", found->second,
           " and read by pair ", i,
           " of the same call; copy in two calls to say which comes first");
    }
  }
}

}  // namespace servelab
