// servelab_bench_swap: how fast the cache engine moves KV blocks between the GPU and pinned host
// memory (swap-out and swap-in, the cost of preemption by swapping), measured against the
// host link's own ceiling. It measures:
//  - the host link: one large cudaMemcpyAsync host -> device and device -> host between pinned
//    host memory and device memory (the "host-link ceiling": PCIe or NVLink-C2C);
//  - swap-out and swap-in through CacheEngine (CudaBackend::swap_blocks, on the backend's swap
//    stream) by both of its methods: "memcpy" (per layer, keys and values, one cudaMemcpyAsync
//    per run of consecutive blocks) and "kernel" (per layer, one zero-copy kernel that moves
//    every block through the mapped pinned host memory), for block sizes 8, 16, 32, 64 on a
//    Llama-3-8B KV shape (32 layers, 8 KV heads, head_dim 128, bf16), moving --mib MiB per
//    direction as shuffled blocks (one copy per block, layer and keys/values for memcpy: what a
//    block manager's free lists give) and as consecutive blocks (one copy per layer and
//    keys/values: memcpy's best case); swapped-out bytes are checked after each method, the
//    host pool poisoned before each;
//  - block copies inside the GPU pool (copy-on-write, one kernel for all layers), for reference;
//  - the time to swap in the KV of one 2048-token sequence by each method, to compare with
//    recomputing it (a 2048-token prefill, which servelab_bench_model prefill measures).
// Swap timings are host wall-clock from the call to the end of CacheEngine::synchronize(): they
// include issuing every copy, which is the cost the engine thread pays. Medians of --repeats
// timings after one warm-up. Progress goes to stderr; the JSON is rewritten after every block
// size, so a run stopped early keeps what it finished.
//
// usage: servelab_bench_swap --json FILE [--quick] [--mib N] [--block-sizes 8,16,32,64]
//                            [--repeats N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "bench_common.cuh"
#include "cache_engine/cache_engine.h"

namespace servelab::bench {
namespace {

constexpr int64_t kLayers = 32, kKvHeads = 8, kHeadDim = 128;
constexpr int64_t kSequenceTokens = 2048;

KvCacheShape llama3_8b_kv(int64_t block_size) {
  KvCacheShape shape;
  shape.num_layers = kLayers;
  shape.num_kv_heads = kKvHeads;
  shape.head_dim = kHeadDim;
  shape.block_size = block_size;
  shape.dtype = DType::kBF16;
  return shape;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// Milliseconds of `work` (which must leave nothing running), one warm-up then `repeats` timings.
std::vector<double> time_wall(const std::function<void()>& work, int repeats) {
  work();
  std::vector<double> milliseconds;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    work();
    milliseconds.push_back(seconds_since(start) * 1e3);
  }
  return milliseconds;
}

/// The copies CudaBackend::swap_blocks issues per layer and keys/values: runs of pairs whose
/// sources and destinations are both consecutive (the same rule as the backend's).
int64_t count_runs(const std::vector<BlockMove>& moves) {
  int64_t runs = 0;
  for (size_t i = 0; i < moves.size(); ++i) {
    const bool continues = i > 0 && moves[i].source == moves[i - 1].source + 1 &&
                           moves[i].destination == moves[i - 1].destination + 1;
    if (!continues) ++runs;
  }
  return runs;
}

/// `count` moves from a pool of `source_blocks` to one of `destination_blocks`: shuffled (random
/// distinct blocks on both sides) or consecutive (0..count-1 to 0..count-1).
std::vector<BlockMove> make_moves(int64_t count, int64_t source_blocks, int64_t destination_blocks,
                                  bool shuffled, uint32_t seed) {
  std::vector<BlockMove> moves;
  if (!shuffled) {
    for (int64_t i = 0; i < count; ++i) {
      moves.push_back({static_cast<int32_t>(i), static_cast<int32_t>(i)});
    }
    return moves;
  }
  std::mt19937 rng(seed);
  auto permutation = [&](int64_t size) {
    std::vector<int32_t> blocks(static_cast<size_t>(size));
    for (int64_t b = 0; b < size; ++b) blocks[b] = static_cast<int32_t>(b);
    std::shuffle(blocks.begin(), blocks.end(), rng);
    return blocks;
  };
  const std::vector<int32_t> sources = permutation(source_blocks);
  const std::vector<int32_t> destinations = permutation(destination_blocks);
  for (int64_t i = 0; i < count; ++i) moves.push_back({sources[i], destinations[i]});
  return moves;
}

std::vector<BlockMove> reversed(const std::vector<BlockMove>& moves) {
  std::vector<BlockMove> back;
  for (const BlockMove& move : moves) back.push_back({move.destination, move.source});
  return back;
}

struct Timing {
  std::vector<double> milliseconds;
  double ms() const { return median(milliseconds); }
  double gbps(double bytes) const { return bytes / (ms() * 1e-3) / 1e9; }
};

struct LinkResult {
  int64_t bytes = 0;
  Timing host_to_device, device_to_host;
};

struct SwapResult {
  int64_t block_size = 0, block_bytes = 0, blocks = 0, bytes = 0, memcpy_calls = 0,
          kernel_launches = 0;
  std::string pattern, direction, method;
  Timing timing;
};

struct CopyResult {
  int64_t block_size = 0, blocks = 0, bytes_moved = 0;
  Timing timing;
};

struct SequenceResult {
  int64_t block_size = 0, blocks = 0, bytes = 0;
  std::string method;
  Timing timing;
};

/// The swap methods compared, with the names the JSON uses.
const std::vector<std::pair<SwapCopy, std::string>> kMethods = {{SwapCopy::kMemcpy, "memcpy"},
                                                                {SwapCopy::kKernel, "kernel"}};

/// Fills every tensor of the host pool with a byte no GPU block holds in full, so a method that
/// moved nothing fails verify_swap_out (the previous method has already put the right bytes).
void poison_host_pool(CudaBackend& backend, CacheEngine& engine) {
  backend.synchronize();
  for (int64_t layer = 0; layer < kLayers; ++layer) {
    for (Tensor* tensor : {&engine.cpu_cache().keys[layer], &engine.cpu_cache().values[layer]}) {
      std::memset(tensor->data(), 0xA5, tensor->nbytes());
    }
  }
}

struct Results {
  LinkResult link;
  std::vector<SwapResult> swaps;
  std::vector<CopyResult> copies;
  std::vector<SequenceResult> sequences;
  bool verified = true;
  std::vector<std::string> verify_failures;
};

LinkResult measure_link(size_t bytes, int repeats) {
  void* host = nullptr;
  void* device = nullptr;
  BENCH_CUDA_CHECK(cudaHostAlloc(&host, bytes, cudaHostAllocDefault));
  BENCH_CUDA_CHECK(cudaMalloc(&device, bytes));
  cudaStream_t stream;
  BENCH_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  fill_uniform_bf16(device, bytes / 2, 1, 1.0f, stream);
  std::memset(host, 0x3c, bytes);  // touched: no first-use cost inside a timing
  LinkResult result;
  result.bytes = static_cast<int64_t>(bytes);
  result.host_to_device.milliseconds = time_calls(
      [&](int) {
        BENCH_CUDA_CHECK(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, stream));
      },
      stream, 2, repeats);
  result.device_to_host.milliseconds = time_calls(
      [&](int) {
        BENCH_CUDA_CHECK(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, stream));
      },
      stream, 2, repeats);
  BENCH_CUDA_CHECK(cudaStreamSynchronize(stream));
  BENCH_CUDA_CHECK(cudaStreamDestroy(stream));
  BENCH_CUDA_CHECK(cudaFree(device));
  BENCH_CUDA_CHECK(cudaFreeHost(host));
  return result;
}

/// After a swap-out: block `source` of the GPU pool must equal block `destination` of the host
/// pool, in the first, a middle and the last layer, keys and values.
void verify_swap_out(CudaBackend& backend, CacheEngine& engine, const std::vector<BlockMove>& moves,
                     int64_t block_bytes, const std::string& what, Results& results) {
  backend.synchronize();
  std::vector<uint8_t> device_block(static_cast<size_t>(block_bytes));
  const std::vector<size_t> samples = {0, moves.size() / 2, moves.size() - 1};
  for (int64_t layer : {int64_t{0}, kLayers / 2, kLayers - 1}) {
    for (int kind = 0; kind < 2; ++kind) {
      const Tensor& gpu =
          kind == 0 ? engine.gpu_cache().keys[layer] : engine.gpu_cache().values[layer];
      const Tensor& cpu =
          kind == 0 ? engine.cpu_cache().keys[layer] : engine.cpu_cache().values[layer];
      for (size_t i : samples) {
        const BlockMove& move = moves[i];
        BENCH_CUDA_CHECK(cudaMemcpy(
            device_block.data(), static_cast<const char*>(gpu.data()) + move.source * block_bytes,
            static_cast<size_t>(block_bytes), cudaMemcpyDeviceToHost));
        const char* host_block =
            static_cast<const char*>(cpu.data()) + move.destination * block_bytes;
        if (std::memcmp(device_block.data(), host_block, static_cast<size_t>(block_bytes)) != 0) {
          results.verified = false;
          results.verify_failures.push_back(what + ": layer " + std::to_string(layer) +
                                            (kind == 0 ? " keys" : " values") + ", GPU block " +
                                            std::to_string(move.source) + " -> CPU block " +
                                            std::to_string(move.destination));
        }
      }
    }
  }
}

void measure_block_size(CudaBackend& backend, int64_t block_size, int64_t bytes_per_direction,
                        int repeats, Results& results) {
  const KvCacheShape shape = llama3_8b_kv(block_size);
  const int64_t block_bytes = shape.bytes_per_block();  // all layers, keys and values
  const int64_t per_layer_block_bytes = block_bytes / (2 * kLayers);
  const int64_t count = std::max<int64_t>(1, bytes_per_direction / block_bytes);
  // Twice as many blocks as are moved, so shuffled blocks are scattered over the pools (and at
  // least a 2048-token sequence's worth).
  const int64_t pool_blocks =
      std::max<int64_t>(2 * count, (kSequenceTokens + block_size - 1) / block_size);
  std::fprintf(stderr,
               "[swap] block size %lld: %lld blocks of %.2f MiB per direction; pools of %lld "
               "blocks (%.2f GiB each on the GPU and in pinned host memory)\n",
               static_cast<long long>(block_size), static_cast<long long>(count),
               block_bytes / 1048576.0, static_cast<long long>(pool_blocks),
               pool_blocks * block_bytes / 1073741824.0);
  CacheEngine engine(backend, shape, pool_blocks, pool_blocks);
  for (int64_t layer = 0; layer < kLayers; ++layer) {
    for (Tensor* tensor : {&engine.gpu_cache().keys[layer], &engine.gpu_cache().values[layer]}) {
      fill_uniform_bf16(tensor->data(), static_cast<size_t>(tensor->numel()),
                        static_cast<uint64_t>(100 * block_size + layer), 1.0f, backend.stream());
    }
  }
  backend.synchronize();

  for (bool shuffled : {true, false}) {
    const char* pattern = shuffled ? "shuffled" : "consecutive";
    const std::vector<BlockMove> out =
        make_moves(count, pool_blocks, pool_blocks, shuffled, static_cast<uint32_t>(block_size));
    const std::vector<BlockMove> in = reversed(out);
    for (const auto& [method, method_name] : kMethods) {
      backend.set_swap_copy(method);
      poison_host_pool(backend, engine);
      for (const char* direction : {"out", "in"}) {
        const bool is_out = std::string(direction) == "out";
        SwapResult result;
        result.block_size = block_size;
        result.block_bytes = block_bytes;
        result.blocks = count;
        result.bytes = count * block_bytes;
        const bool by_memcpy = method == SwapCopy::kMemcpy;
        result.memcpy_calls = by_memcpy ? count_runs(is_out ? out : in) * 2 * kLayers : 0;
        result.kernel_launches = by_memcpy ? 0 : kLayers;
        result.pattern = pattern;
        result.direction = direction;
        result.method = method_name;
        result.timing.milliseconds = time_wall(
            [&] {
              if (is_out) {
                engine.swap_out(out);
              } else {
                engine.swap_in(in);
              }
              engine.synchronize();
            },
            repeats);
        if (is_out) {
          verify_swap_out(
              backend, engine, out, per_layer_block_bytes,
              "block size " + std::to_string(block_size) + " " + pattern + " by " + method_name,
              results);
        }
        std::fprintf(
            stderr,
            "[swap]   %-11s swap-%-3s by %-6s %8.2f ms  %6.1f GB/s  (%lld cudaMemcpyAsync, "
            "%lld kernel launches)\n",
            pattern, direction, method_name.c_str(), result.timing.ms(),
            result.timing.gbps(static_cast<double>(result.bytes)),
            static_cast<long long>(result.memcpy_calls),
            static_cast<long long>(result.kernel_launches));
        results.swaps.push_back(result);
      }
    }
  }

  // Copy-on-write inside the GPU pool: blocks of one half of a shuffled pool into the other.
  {
    const std::vector<BlockMove> scattered = make_moves(pool_blocks, pool_blocks, pool_blocks, true,
                                                        static_cast<uint32_t>(block_size + 1));
    std::vector<BlockCopy> copies;
    for (int64_t i = 0; i < count; ++i) {
      copies.push_back({scattered[i].source, scattered[count + i].source});
    }
    CopyResult result;
    result.block_size = block_size;
    result.blocks = count;
    result.bytes_moved = 2 * count * block_bytes;  // read + written
    result.timing.milliseconds = time_wall(
        [&] {
          engine.copy(copies);
          engine.synchronize();
        },
        repeats);
    std::fprintf(stderr, "[swap]   GPU block copy        %8.2f ms  %6.1f GB/s (read + write)\n",
                 result.timing.ms(), result.timing.gbps(static_cast<double>(result.bytes_moved)));
    results.copies.push_back(result);
  }

  // One 2048-token sequence coming back in, its blocks scattered as a block manager leaves them.
  for (const auto& [method, method_name] : kMethods) {
    backend.set_swap_copy(method);
    const int64_t blocks = (kSequenceTokens + block_size - 1) / block_size;
    const std::vector<BlockMove> in =
        make_moves(blocks, pool_blocks, pool_blocks, true, static_cast<uint32_t>(block_size + 2));
    SequenceResult result;
    result.block_size = block_size;
    result.blocks = blocks;
    result.bytes = blocks * block_bytes;
    result.method = method_name;
    result.timing.milliseconds = time_wall(
        [&] {
          engine.swap_in(in);
          engine.synchronize();
        },
        repeats);
    std::fprintf(stderr,
                 "[swap]   swap-in of one %lld-token sequence by %-6s: %.2f ms (%.1f GB/s)\n",
                 static_cast<long long>(kSequenceTokens), method_name.c_str(), result.timing.ms(),
                 result.timing.gbps(static_cast<double>(result.bytes)));
    results.sequences.push_back(result);
  }
}

void write_timing(Json& json, const Timing& timing, double bytes) {
  json.field("ms", timing.ms())
      .field("gbps", timing.gbps(bytes))
      .numbers("ms_all", timing.milliseconds);
}

void save(const Results& results, const Flags& flags, const DeviceFacts& facts,
          int64_t bytes_per_direction, const std::string& path) {
  Json json;
  json.begin_object().field("tool", "servelab_bench_swap").field("command", flags.command());
  write_device(json, facts);
  json.begin_object("kv")
      .field("layers", kLayers)
      .field("kv_heads", kKvHeads)
      .field("head_dim", kHeadDim)
      .field("dtype", "bf16")
      .field("bytes_per_token", 2 * kLayers * kKvHeads * kHeadDim * int64_t{2})
      .end_object();
  json.field("bytes_per_direction", bytes_per_direction)
      .field("timing", "host wall clock, call to end of synchronize(); median after one warm-up");
  const double h2d = results.link.host_to_device.gbps(static_cast<double>(results.link.bytes));
  const double d2h = results.link.device_to_host.gbps(static_cast<double>(results.link.bytes));
  json.begin_object("link").field("buffer_bytes", results.link.bytes);
  json.begin_object("host_to_device");
  write_timing(json, results.link.host_to_device, static_cast<double>(results.link.bytes));
  json.end_object().begin_object("device_to_host");
  write_timing(json, results.link.device_to_host, static_cast<double>(results.link.bytes));
  json.end_object().end_object();
  json.begin_array("swap");
  for (const SwapResult& r : results.swaps) {
    const double link = r.direction == "out" ? d2h : h2d;
    json.begin_object()
        .field("block_size", r.block_size)
        .field("block_bytes", r.block_bytes)
        .field("pattern", r.pattern)
        .field("direction", r.direction)
        .field("method", r.method)
        .field("blocks", r.blocks)
        .field("bytes", r.bytes)
        .field("memcpy_calls", r.memcpy_calls)
        .field("kernel_launches", r.kernel_launches);
    write_timing(json, r.timing, static_cast<double>(r.bytes));
    json.field("of_link", r.timing.gbps(static_cast<double>(r.bytes)) / link).end_object();
  }
  json.end_array().begin_array("copy");
  for (const CopyResult& r : results.copies) {
    json.begin_object()
        .field("block_size", r.block_size)
        .field("pattern", "shuffled")
        .field("blocks", r.blocks)
        .field("bytes_moved", r.bytes_moved)
        .field("bytes_counted", "read + written");
    write_timing(json, r.timing, static_cast<double>(r.bytes_moved));
    json.end_object();
  }
  json.end_array().begin_array("sequence_swap_in");
  for (const SequenceResult& r : results.sequences) {
    json.begin_object()
        .field("block_size", r.block_size)
        .field("tokens", kSequenceTokens)
        .field("method", r.method)
        .field("blocks", r.blocks)
        .field("bytes", r.bytes);
    write_timing(json, r.timing, static_cast<double>(r.bytes));
    json.field("of_link", r.timing.gbps(static_cast<double>(r.bytes)) / h2d).end_object();
  }
  json.end_array().field("verified", results.verified).begin_array("verify_failures");
  for (const std::string& failure : results.verify_failures) json.field(nullptr, failure);
  json.end_array().end_object();
  json.save(path);
}

int run(const Flags& flags) {
  const std::string json_path = flags.value("--json", "");
  if (json_path.empty()) throw std::runtime_error("--json FILE is required");
  const bool quick = flags.has("--quick");
  const int repeats = static_cast<int>(std::stol(flags.value("--repeats", quick ? "3" : "5")));
  if (repeats < 1) throw std::runtime_error("--repeats must be at least 1");
  const int64_t mib = std::stoll(flags.value("--mib", quick ? "256" : "1024"));
  if (mib < 1) throw std::runtime_error("--mib must be at least 1");
  const int64_t bytes_per_direction = mib << 20;
  const std::vector<int64_t> block_sizes = flags.int_list(
      "--block-sizes", quick ? std::vector<int64_t>{16, 64} : std::vector<int64_t>{8, 16, 32, 64});

  const DeviceFacts facts = device_facts();
  std::fprintf(stderr,
               "[swap] %s; Llama-3-8B KV: %lld layers, %lld KV heads, head_dim %lld, bf16\n",
               facts.name.c_str(), static_cast<long long>(kLayers),
               static_cast<long long>(kKvHeads), static_cast<long long>(kHeadDim));
  Results results;
  std::fprintf(stderr, "[swap] host link: %lld MiB pinned <-> device...\n",
               static_cast<long long>(mib));
  results.link = measure_link(static_cast<size_t>(bytes_per_direction), std::max(repeats, 10));
  std::fprintf(stderr, "[swap] host link: host -> device %.1f GB/s, device -> host %.1f GB/s\n",
               results.link.host_to_device.gbps(static_cast<double>(results.link.bytes)),
               results.link.device_to_host.gbps(static_cast<double>(results.link.bytes)));
  save(results, flags, facts, bytes_per_direction, json_path);

  CudaBackend backend(CudaBackendOptions{DType::kBF16});
  for (int64_t block_size : block_sizes) {
    if (block_size <= 0) throw std::runtime_error("--block-sizes: sizes must be positive");
    measure_block_size(backend, block_size, bytes_per_direction, repeats, results);
    save(results, flags, facts, bytes_per_direction, json_path);
  }
  if (!results.verified) {
    for (const std::string& failure : results.verify_failures) {
      std::fprintf(stderr, "[swap] WRONG BYTES: %s\n", failure.c_str());
    }
    throw std::runtime_error("swapped-out blocks do not hold the GPU blocks' bytes");
  }
  std::fprintf(stderr, "[swap] wrote %s\n", json_path.c_str());
  return 0;
}

}  // namespace
}  // namespace servelab::bench

int main(int argc, char** argv) {
  try {
    servelab::bench::Flags flags(argc, argv);
    if (flags.has("--help") || flags.has("-h")) {
      std::puts(
          "usage: servelab_bench_swap --json FILE [--quick] [--mib N] [--block-sizes 8,16,32,64] "
          "[--repeats N]");
      return 0;
    }
    return servelab::bench::run(flags);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "servelab_bench_swap: %s\n", error.what());
    return 1;
  }
}
