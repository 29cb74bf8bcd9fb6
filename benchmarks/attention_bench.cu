// servelab_bench_attention: PagedAttention decode alone, version 1 (one thread block per sequence
// and KV head, kernels::paged_attention_decode) against version 2 (flash-decoding split,
// kernels::paged_attention_decode_split with the automatic partition size), on Llama-3-8B's heads:
// bf16, 32 query heads, 8 KV heads, head_dim 128, blocks of 16 tokens, random keys and values and
// shuffled block tables, every sequence at the same context length.
//
// Time is the median of CUDA-event timings of a CUDA graph of back-to-back launches (so that the
// CPU's launch overhead does not count, as in a decode step that replays a graph), after a
// warm-up. Bytes are what the kernel must move at least: keys and values of every context token,
// the queries and the outputs (block tables are ignored: 4 bytes per 16 tokens). Small shapes
// rotate through several disjoint sets of blocks, enough to span 4x the L2 cache, so that they are
// timed from HBM as in a real decode step (where every layer has its own cache), not from L2.
//
// usage: servelab_bench_attention --json FILE [--quick] [--batch-sizes 1,4,..] [--contexts 512,..]
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench_common.cuh"
#include "common/dtype.h"
#include "kernels/kernels.h"

namespace servelab::bench {
namespace {

constexpr int kNumHeads = 32, kNumKvHeads = 8, kHeadDim = 128, kBlockSize = 16;
constexpr int64_t kBytesPerElement = 2;                                              // bf16
constexpr int64_t kKvBytesPerToken = 2 * kNumKvHeads * kHeadDim * kBytesPerElement;  // K and V

/// A cudaMalloc'd buffer, freed on destruction.
class DeviceMemory {
 public:
  DeviceMemory() = default;
  explicit DeviceMemory(size_t bytes) : bytes_(bytes) {
    BENCH_CUDA_CHECK(cudaMalloc(&data_, std::max<size_t>(bytes, 1)));
  }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  DeviceMemory& operator=(DeviceMemory&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(bytes_, other.bytes_);
    return *this;
  }
  ~DeviceMemory() {
    if (data_ != nullptr) cudaFree(data_);
  }
  template <typename T = void>
  T* get() const {
    return static_cast<T*>(data_);
  }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

struct Timing {
  double microseconds = std::nan("");
  double gbps = std::nan("");
  int inner = 0;
  bool graph = false;       ///< timed as replays of a CUDA graph of `inner` launches
  std::string graph_error;  ///< why capture failed (then timed as plain launches)
  std::string error;
};

struct ShapeResult {
  int64_t batch = 0, context = 0;
  double bytes = 0;
  int sets = 0;
  Timing v1, v2;
  double max_abs_diff_v1_v2 = std::nan("");
  bool outputs_finite = false;
};

/// Downloads a bf16 device buffer as floats.
std::vector<float> download_bf16(const void* device, size_t count) {
  std::vector<uint16_t> bits(count);
  BENCH_CUDA_CHECK(cudaMemcpy(bits.data(), device, count * 2, cudaMemcpyDeviceToHost));
  std::vector<float> values(count);
  for (size_t i = 0; i < count; ++i) values[i] = bf16_to_float(bits[i]);
  return values;
}

/// Times `launch(set)` rotating through `sets` block-table sets. A first plain timing sizes an
/// inner loop of about a millisecond (visiting every set); the loop is captured once into a CUDA
/// graph and the graph's launches are timed, so that small shapes measure the kernels rather than
/// the CPU's launch overhead (a decode step replays such a graph too). Where capture fails, the
/// loop is timed as plain launches, and `graph` says so.
template <typename Launch>
Timing time_kernel(Launch&& launch, int sets, double bytes, int measurements, cudaStream_t stream) {
  Timing timing;
  auto rotate = [&](int i) { launch(i % sets); };
  std::vector<double> first = time_calls(rotate, stream, 3, 3, 1);
  double single_ms = std::max(median(first), 1e-4);
  timing.inner = std::max(sets, static_cast<int>(std::min(std::ceil(1.0 / single_ms), 2000.0)));

  cudaGraph_t graph = nullptr;
  cudaGraphExec_t graph_exec = nullptr;
  try {
    BENCH_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
    try {
      for (int i = 0; i < timing.inner; ++i) rotate(i);
    } catch (...) {
      cudaStreamEndCapture(stream, &graph);  // leave capture mode whatever happened
      throw;
    }
    BENCH_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    BENCH_CUDA_CHECK(cudaGraphInstantiate(&graph_exec, graph, 0));
    timing.graph = true;
  } catch (const std::exception& error) {
    timing.graph_error = error.what();
    if (graph != nullptr) cudaGraphDestroy(graph);
    graph = nullptr;
    cudaGetLastError();  // clear a non-sticky capture error; a sticky one shows below
  }

  std::vector<double> ms;
  if (timing.graph) {
    ms = time_calls([&](int) { BENCH_CUDA_CHECK(cudaGraphLaunch(graph_exec, stream)); }, stream, 1,
                    measurements, 1);
    for (double& value : ms) value /= timing.inner;
    BENCH_CUDA_CHECK(cudaGraphExecDestroy(graph_exec));
    BENCH_CUDA_CHECK(cudaGraphDestroy(graph));
  } else {
    ms = time_calls(rotate, stream, 0, measurements, timing.inner);
  }
  timing.microseconds = median(ms) * 1e3;
  timing.gbps = bytes / (median(ms) * 1e-3) / 1e9;
  return timing;
}

/// What every shape shares: the cache (large enough for the largest shape and for a rotation of
/// 4x L2), the heads, the stream.
struct Setup {
  DeviceMemory key_cache, value_cache;
  int64_t num_blocks = 0;
  double rotation_bytes = 0;
  kernels::HeadShape heads;
  cudaStream_t stream = nullptr;
  int measurements = 15;
};

/// Measures v1 and v2 at one shape; errors of one version are recorded and the other still runs.
void measure_shape(ShapeResult& r, const Setup& setup, std::mt19937& random,
                   std::vector<int32_t>& all_blocks) {
  const int64_t batch = r.batch, context = r.context;
  const int64_t blocks_per_seq = (context + kBlockSize - 1) / kBlockSize;
  const int64_t kv_bytes = batch * context * kKvBytesPerToken;
  const int64_t query_elements = batch * kNumHeads * kHeadDim;
  const int64_t query_bytes = query_elements * kBytesPerElement;
  r.bytes = static_cast<double>(kv_bytes + 2 * query_bytes);  // K, V, queries, outputs
  r.sets = static_cast<int>(std::max(1.0, std::ceil(setup.rotation_bytes / kv_bytes)));
  r.sets = static_cast<int>(std::min<int64_t>(r.sets, setup.num_blocks / (batch * blocks_per_seq)));
  if (r.sets < 1) throw std::runtime_error("the cache is too small for this shape");

  // Disjoint sets of shuffled physical blocks: set s gives every sequence its own random blocks.
  std::shuffle(all_blocks.begin(), all_blocks.end(), random);
  std::vector<int32_t> tables(static_cast<size_t>(r.sets) * batch * blocks_per_seq);
  std::copy(all_blocks.begin(), all_blocks.begin() + tables.size(), tables.begin());
  DeviceMemory block_tables(tables.size() * sizeof(int32_t));
  BENCH_CUDA_CHECK(cudaMemcpy(block_tables.get(), tables.data(), tables.size() * sizeof(int32_t),
                              cudaMemcpyHostToDevice));
  std::vector<int32_t> lengths(batch, static_cast<int32_t>(context));
  DeviceMemory context_lens(batch * sizeof(int32_t));
  BENCH_CUDA_CHECK(cudaMemcpy(context_lens.get(), lengths.data(), batch * sizeof(int32_t),
                              cudaMemcpyHostToDevice));
  DeviceMemory queries(query_bytes), out_v1(query_bytes), out_v2(query_bytes);
  fill_uniform_bf16(queries.get(), query_elements, 200 + batch * 10007 + context, 1.0f,
                    setup.stream);
  BENCH_CUDA_CHECK(cudaMemsetAsync(out_v1.get(), 0xFF, query_bytes, setup.stream));  // NaN poison
  BENCH_CUDA_CHECK(cudaMemsetAsync(out_v2.get(), 0xFF, query_bytes, setup.stream));

  auto cache_for_set = [&](int set) {
    kernels::PagedCache cache;
    cache.key_cache = setup.key_cache.get();
    cache.value_cache = setup.value_cache.get();
    cache.block_tables =
        block_tables.get<int32_t>() + static_cast<int64_t>(set) * batch * blocks_per_seq;
    cache.blocks_per_seq = static_cast<int>(blocks_per_seq);
    cache.block_size = kBlockSize;
    return cache;
  };

  try {
    r.v1 = time_kernel(
        [&](int set) {
          kernels::paged_attention_decode(DType::kBF16, queries.get(), cache_for_set(set),
                                          context_lens.get<int32_t>(), nullptr,
                                          static_cast<int>(batch), static_cast<int>(context),
                                          setup.heads, out_v1.get(), setup.stream);
        },
        r.sets, r.bytes, setup.measurements, setup.stream);
  } catch (const std::exception& error) {
    r.v1.error = error.what();
  }
  try {
    int64_t workspace_bytes = kernels::paged_attention_split_workspace(
        static_cast<int>(batch), static_cast<int>(context), 0, setup.heads);
    DeviceMemory workspace(static_cast<size_t>(workspace_bytes));
    r.v2 = time_kernel(
        [&](int set) {
          kernels::paged_attention_decode_split(
              DType::kBF16, queries.get(), cache_for_set(set), context_lens.get<int32_t>(), nullptr,
              static_cast<int>(batch), static_cast<int>(context), 0, setup.heads, workspace.get(),
              workspace_bytes, out_v2.get(), setup.stream);
        },
        r.sets, r.bytes, setup.measurements, setup.stream);
    BENCH_CUDA_CHECK(cudaStreamSynchronize(setup.stream));  // before the workspace is freed
  } catch (const std::exception& error) {
    r.v2.error = error.what();
  }
  BENCH_CUDA_CHECK(cudaStreamSynchronize(setup.stream));
  if (r.v1.error.empty() && r.v2.error.empty()) {
    // The last launches of both versions used the same set of blocks and the same queries.
    std::vector<float> a = download_bf16(out_v1.get(), query_elements);
    std::vector<float> b = download_bf16(out_v2.get(), query_elements);
    r.outputs_finite = true;
    r.max_abs_diff_v1_v2 = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      if (!std::isfinite(a[i]) || !std::isfinite(b[i])) r.outputs_finite = false;
      r.max_abs_diff_v1_v2 = std::max<double>(r.max_abs_diff_v1_v2, std::fabs(a[i] - b[i]));
    }
  }
}

/// Writes the JSON document; `fatal` (if not empty) says why the run stopped early.
bool write_results(const std::string& path, const Flags& flags, const DeviceFacts& facts,
                   const Setup& setup, const std::vector<ShapeResult>& results,
                   const std::string& fatal) {
  Json json;
  json.begin_object().field("tool", "servelab_bench_attention").field("command", flags.command());
  write_device(json, facts);
  json.begin_object("config")
      .field("dtype", "bf16")
      .field("num_heads", kNumHeads)
      .field("num_kv_heads", kNumKvHeads)
      .field("head_dim", kHeadDim)
      .field("block_size", kBlockSize)
      .field("partition_size_v2", "0 (automatic)")
      .field("rotation_bytes", setup.rotation_bytes)
      .field("bytes_counted", "K and V of every context token + queries + outputs")
      .field("timing",
             "median of CUDA-event timings of a CUDA graph of back-to-back launches, "
             "after warm-up")
      .end_object();
  if (!fatal.empty()) json.field("error", fatal);
  bool all_ok = fatal.empty();
  json.begin_array("results");
  for (const ShapeResult& r : results) {
    json.begin_object()
        .field("batch", r.batch)
        .field("context", r.context)
        .field("bytes", r.bytes)
        .field("sets", r.sets);
    const Timing* versions[2] = {&r.v1, &r.v2};
    const char* names[2] = {"v1", "v2"};
    for (int v = 0; v < 2; ++v) {
      json.begin_object(names[v])
          .field("us", versions[v]->microseconds)
          .field("gbps", versions[v]->gbps)
          .field("inner", versions[v]->inner)
          .field("cuda_graph", versions[v]->graph);
      if (!versions[v]->graph_error.empty()) json.field("graph_error", versions[v]->graph_error);
      if (!versions[v]->error.empty()) {
        json.field("error", versions[v]->error);
        all_ok = false;
      }
      json.end_object();
    }
    json.field("max_abs_diff_v1_v2", r.max_abs_diff_v1_v2)
        .field("outputs_finite", r.outputs_finite)
        .end_object();
  }
  json.end_array().end_object();
  json.save(path);
  std::printf("attention: wrote %s\n", path.c_str());
  return all_ok;
}

int run(const Flags& flags) {
  std::string json_path = flags.value("--json", "");
  if (json_path.empty()) throw std::runtime_error("--json FILE is required");
  bool quick = flags.has("--quick");
  std::vector<int64_t> batches =
      flags.int_list("--batch-sizes", quick ? std::vector<int64_t>{1, 16, 64}
                                            : std::vector<int64_t>{1, 4, 16, 32, 64, 128});
  std::vector<int64_t> contexts =
      flags.int_list("--contexts", quick ? std::vector<int64_t>{1024, 4096}
                                         : std::vector<int64_t>{512, 1024, 2048, 4096, 8192});
  for (int64_t value : batches) {
    if (value < 1) throw std::runtime_error("--batch-sizes: every value must be >= 1");
  }
  for (int64_t value : contexts) {
    if (value < 1) throw std::runtime_error("--contexts: every value must be >= 1");
  }

  DeviceFacts facts = device_facts();
  std::printf("attention: %s; %zu batch sizes x %zu contexts, v1 and v2\n", facts.name.c_str(),
              batches.size(), contexts.size());
  Setup setup;
  setup.measurements = quick ? 10 : 15;
  BENCH_CUDA_CHECK(cudaStreamCreateWithFlags(&setup.stream, cudaStreamNonBlocking));
  setup.rotation_bytes = 4.0 * static_cast<double>(facts.l2_bytes);
  int64_t most_tokens = static_cast<int64_t>(std::ceil(setup.rotation_bytes / kKvBytesPerToken)) +
                        int64_t{kBlockSize} * 8192;
  for (int64_t b : batches) {
    for (int64_t c : contexts)
      most_tokens = std::max(most_tokens, b * ((c + kBlockSize - 1) / kBlockSize) * kBlockSize);
  }
  setup.num_blocks = (most_tokens + kBlockSize - 1) / kBlockSize;
  const int64_t cache_elements = setup.num_blocks * kBlockSize * kNumKvHeads * kHeadDim;
  std::printf("attention: cache of %lld blocks (%.2f GiB for K and V)\n",
              static_cast<long long>(setup.num_blocks), 2.0 * cache_elements * 2 / 1073741824.0);
  setup.key_cache = DeviceMemory(cache_elements * kBytesPerElement);
  setup.value_cache = DeviceMemory(cache_elements * kBytesPerElement);
  fill_uniform_bf16(setup.key_cache.get(), cache_elements, 101, 1.0f, setup.stream);
  fill_uniform_bf16(setup.value_cache.get(), cache_elements, 102, 1.0f, setup.stream);
  setup.heads.num_heads = kNumHeads;
  setup.heads.num_kv_heads = kNumKvHeads;
  setup.heads.head_dim = kHeadDim;
  setup.heads.scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));

  std::mt19937 random(7);
  std::vector<int32_t> all_blocks(setup.num_blocks);
  std::iota(all_blocks.begin(), all_blocks.end(), 0);
  std::vector<ShapeResult> results;
  std::string fatal;
  for (int64_t batch : batches) {
    for (int64_t context : contexts) {
      ShapeResult r;
      r.batch = batch;
      r.context = context;
      try {
        measure_shape(r, setup, random, all_blocks);
      } catch (const std::exception& error) {
        // An allocation failure and the like: recorded, and the run goes on with the next shape.
        if (r.v1.error.empty()) r.v1.error = error.what();
        if (r.v2.error.empty()) r.v2.error = error.what();
      }
      results.push_back(r);
      std::printf(
          "attention: batch %4lld ctx %5lld  v1 %9.1f us %7.1f GB/s  v2 %9.1f us %7.1f GB/s"
          "  (sets %d, |v1-v2| %.3g)\n",
          static_cast<long long>(batch), static_cast<long long>(context), r.v1.microseconds,
          r.v1.gbps, r.v2.microseconds, r.v2.gbps, r.sets, r.max_abs_diff_v1_v2);
      if (!r.v1.error.empty()) std::printf("attention:   v1 error: %s\n", r.v1.error.c_str());
      if (!r.v2.error.empty()) std::printf("attention:   v2 error: %s\n", r.v2.error.c_str());
      std::fflush(stdout);
      // A sticky CUDA error (a fault inside a kernel) ends the run: nothing after it can be
      // trusted. What was measured so far is still written.
      cudaError_t sticky = cudaDeviceSynchronize();
      if (sticky != cudaSuccess) {
        fatal = std::string("CUDA error at batch ") + std::to_string(batch) + ", context " +
                std::to_string(context) + ": " + cudaGetErrorString(sticky);
        std::fprintf(stderr, "attention: %s\n", fatal.c_str());
        break;
      }
    }
    if (!fatal.empty()) break;
  }
  if (fatal.empty()) BENCH_CUDA_CHECK(cudaStreamDestroy(setup.stream));
  return write_results(json_path, flags, facts, setup, results, fatal) ? 0 : 1;
}

}  // namespace
}  // namespace servelab::bench

int main(int argc, char** argv) {
  try {
    servelab::bench::Flags flags(argc, argv);
    if (flags.has("--help") || flags.has("-h")) {
      std::puts(
          "usage: servelab_bench_attention --json FILE [--quick] [--batch-sizes 1,4,16] "
          "[--contexts 512,1024]");
      return 0;
    }
    return servelab::bench::run(flags);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "servelab_bench_attention: %s\n", error.what());
    return 1;
  }
}
