// The cache engine on the CUDA backend (label gpu; every test skips where no GPU is present):
//  - swaps between the device pool and pinned host memory, and block copies inside the device
//    pool, put exactly the expected bytes into exactly the named blocks (block sizes 8, 16, 32;
//    BF16 and F32; shuffled blocks with a run of consecutive ones, which one copy moves), and a
//    copy issued while a swap-out still reads its destination waits for it; every case runs on
//    both swap paths (the zero-copy kernel and cudaMemcpyAsync), plus blocks whose bytes are not
//    a multiple of 16 (the kernel's element-unit fallback) and blocks of more than one 16 KiB
//    chunk with a partial last one;
//  - the swap path comes from the option, else from SERVELAB_SWAP_COPY, else is the kernel;
//  - a plan runs swap-out, swap-in, copy in that order on the device too;
//  - a paged forward across a swap: a sequence's blocks are swapped out, reused by another
//    sequence, swapped back in to other blocks (in the plan that swaps the other sequence out),
//    and the next decode steps' logits equal those of a run without swapping. The step right
//    after the swap-in runs directly (its attention waits for per-layer swap events, which a CUDA
//    graph cannot), later ones are replayed from a graph again.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "cache_engine/cache_engine.h"
#include "common/error.h"
#include "kernels/kernel_test_helpers.h"
#include "model/llama_model.h"
#include "test_paths.h"

namespace servelab {
namespace {

using testing::check_cuda;

/// A pool's bytes on the host: [layer][keys = 0, values = 1] -> bytes of all its blocks.
using PoolBytes = std::vector<std::vector<std::vector<uint8_t>>>;
using Pairs = std::vector<std::pair<int32_t, int32_t>>;

/// Random normal values as `dtype`'s bytes (never zeros, so an unwritten block shows).
std::vector<uint8_t> random_bytes(DType dtype, int64_t count, uint64_t seed) {
  const std::vector<float> values = testing::random_values(count, seed);
  std::vector<uint8_t> bytes(static_cast<size_t>(count) * dtype_size(dtype));
  for (int64_t i = 0; i < count; ++i) {
    if (dtype == DType::kF32) {
      std::memcpy(bytes.data() + 4 * i, &values[i], 4);
    } else {
      const uint16_t bits =
          dtype == DType::kBF16 ? float_to_bf16(values[i]) : float_to_fp16(values[i]);
      std::memcpy(bytes.data() + 2 * i, &bits, 2);
    }
  }
  return bytes;
}

/// Fills every tensor of a pool (device or host) with random bytes; returns what it wrote.
PoolBytes fill_random(CudaBackend& backend, PagedKvCache& cache, uint64_t seed) {
  backend.synchronize();  // the pool's zero-fill and earlier copies run on the backend's streams
  PoolBytes pool(cache.keys.size());
  for (size_t layer = 0; layer < cache.keys.size(); ++layer) {
    for (Tensor* tensor : {&cache.keys[layer], &cache.values[layer]}) {
      std::vector<uint8_t> bytes = random_bytes(tensor->dtype(), tensor->numel(), seed++ * 7919);
      if (tensor->device() == Device::kCuda) {
        check_cuda(cudaMemcpy(tensor->data(), bytes.data(), bytes.size(), cudaMemcpyHostToDevice),
                   "fill device pool");
      } else {
        std::memcpy(tensor->data(), bytes.data(), bytes.size());
      }
      pool[layer].push_back(std::move(bytes));
    }
  }
  // cudaMemcpy from pageable memory may return once the bytes are staged, before they reach the
  // device, and the backend's non-blocking streams do not wait for it: without this, a swap could
  // read a block before its test data arrived (seen on an H100 with 60-byte blocks).
  check_cuda(cudaDeviceSynchronize(), "fill device pool");
  return pool;
}

/// What a pool holds once every copy issued so far has finished.
PoolBytes read_pool(CudaBackend& backend, const PagedKvCache& cache) {
  backend.synchronize();
  PoolBytes pool(cache.keys.size());
  for (size_t layer = 0; layer < cache.keys.size(); ++layer) {
    for (const Tensor* tensor : {&cache.keys[layer], &cache.values[layer]}) {
      std::vector<uint8_t> bytes(tensor->nbytes());
      if (tensor->device() == Device::kCuda) {
        check_cuda(cudaMemcpy(bytes.data(), tensor->data(), bytes.size(), cudaMemcpyDeviceToHost),
                   "read device pool");
      } else {
        std::memcpy(bytes.data(), tensor->data(), bytes.size());
      }
      pool[layer].push_back(std::move(bytes));
    }
  }
  return pool;
}

/// The model of a block move: pairs applied one after the other.
void apply(const PoolBytes& source, PoolBytes& destination, const Pairs& pairs,
           int64_t block_bytes) {
  const PoolBytes from = source;  // source may be destination
  for (size_t layer = 0; layer < from.size(); ++layer) {
    for (int kind = 0; kind < 2; ++kind) {
      for (const auto& [s, d] : pairs) {
        std::memcpy(destination[layer][kind].data() + d * block_bytes,
                    from[layer][kind].data() + s * block_bytes, static_cast<size_t>(block_bytes));
      }
    }
  }
}

::testing::AssertionResult same_bytes(const PoolBytes& actual, const PoolBytes& expected,
                                      int64_t block_bytes) {
  for (size_t layer = 0; layer < expected.size(); ++layer) {
    for (int kind = 0; kind < 2; ++kind) {
      const std::vector<uint8_t>& a = actual[layer][kind];
      const std::vector<uint8_t>& e = expected[layer][kind];
      if (a.size() != e.size()) return ::testing::AssertionFailure() << "pool sizes differ";
      for (size_t i = 0; i < a.size(); ++i) {
        if (a[i] != e[i]) {
          return ::testing::AssertionFailure()
                 << "layer " << layer << (kind == 0 ? " keys" : " values") << ", block "
                 << static_cast<int64_t>(i) / block_bytes << ", byte "
                 << static_cast<int64_t>(i) % block_bytes << " differs";
        }
      }
    }
  }
  return ::testing::AssertionSuccess();
}

std::vector<BlockMove> moves(const Pairs& pairs) {
  std::vector<BlockMove> result;
  for (const auto& [s, d] : pairs) result.push_back({s, d});
  return result;
}
std::vector<BlockCopy> copies(const Pairs& pairs) {
  std::vector<BlockCopy> result;
  for (const auto& [s, d] : pairs) result.push_back({s, d});
  return result;
}

const char* swap_copy_name(SwapCopy swap_copy) {
  return swap_copy == SwapCopy::kKernel   ? "kernel"
         : swap_copy == SwapCopy::kMemcpy ? "memcpy"
                                          : "default";
}

struct PoolCase {
  int64_t block_size;
  DType dtype;
  SwapCopy swap_copy;
  int64_t head_dim = 64;
};
void PrintTo(const PoolCase& c, std::ostream* out) {
  *out << "block size " << c.block_size << ", head_dim " << c.head_dim << ", "
       << dtype_name(c.dtype) << ", swap by " << swap_copy_name(c.swap_copy);
}

class DevicePools : public ::testing::TestWithParam<PoolCase> {
 protected:
  KvCacheShape shape() const {
    KvCacheShape s;
    s.num_layers = 4;
    s.num_kv_heads = 2;
    s.head_dim = GetParam().head_dim;
    s.block_size = GetParam().block_size;
    s.dtype = GetParam().dtype;
    return s;
  }
  int64_t block_bytes() const {
    return shape().block_size * shape().num_kv_heads * shape().head_dim *
           static_cast<int64_t>(dtype_size(shape().dtype));
  }
  CudaBackendOptions options() const {
    CudaBackendOptions options;
    options.dtype = GetParam().dtype;
    options.swap_copy = GetParam().swap_copy;
    return options;
  }
};

TEST_P(DevicePools, SwapOutAndBackInToOtherBlocksMovesExactlyTheNamedBlocks) {
  SERVELAB_REQUIRE_GPU();
  CudaBackend gpu(options());
  ASSERT_EQ(gpu.swap_copy(), GetParam().swap_copy);
  CacheEngine engine(gpu, shape(), /*num_gpu_blocks=*/24, /*num_cpu_blocks=*/16);
  ASSERT_EQ(engine.gpu_cache().keys[0].device(), Device::kCuda);
  ASSERT_EQ(engine.cpu_cache().keys[0].device(), Device::kCpu);
  // The kernel path runs only on host memory the device addresses (else it takes memcpy's).
  cudaPointerAttributes attributes{};
  check_cuda(cudaPointerGetAttributes(&attributes, engine.cpu_cache().values[3].data()),
             "cudaPointerGetAttributes");
  ASSERT_EQ(attributes.type, cudaMemoryTypeHost);
  ASSERT_NE(attributes.devicePointer, nullptr) << "pinned host pool not mapped for the kernel";
  PoolBytes device = fill_random(gpu, engine.gpu_cache(), 1);
  PoolBytes host = fill_random(gpu, engine.cpu_cache(), 2);
  const PoolBytes original_device = device;

  // Shuffled blocks, with a run (4, 5, 6 -> 11, 12, 13) that moves as one copy.
  const Pairs out = {{17, 3}, {4, 11}, {5, 12}, {6, 13}, {20, 0}, {1, 9}, {9, 1}, {22, 15}};
  engine.swap_out(moves(out));
  apply(device, host, out, block_bytes());
  // At once, on the compute stream: copies into blocks the swap-out may still be reading.
  const Pairs overwrite = {{0, 17}, {2, 4}, {3, 20}};
  engine.copy(copies(overwrite));
  apply(device, device, overwrite, block_bytes());
  EXPECT_TRUE(same_bytes(read_pool(gpu, engine.cpu_cache()), host, block_bytes()));
  EXPECT_TRUE(same_bytes(read_pool(gpu, engine.gpu_cache()), device, block_bytes()));

  // Back in to other blocks, again shuffled with a run (11, 12, 13 -> 7, 8, 9).
  const Pairs in = {{3, 10}, {11, 7}, {12, 8}, {13, 9}, {0, 23}, {9, 2}, {1, 16}, {15, 5}};
  engine.swap_in(moves(in));
  apply(host, device, in, block_bytes());
  const PoolBytes after = read_pool(gpu, engine.gpu_cache());
  EXPECT_TRUE(same_bytes(after, device, block_bytes()));
  EXPECT_TRUE(same_bytes(read_pool(gpu, engine.cpu_cache()), host, block_bytes()));

  // The round trip in so many words: GPU block 17 went out to CPU 3 and came back as GPU 10.
  PoolBytes round_trip = after;
  apply(original_device, round_trip,
        {{17, 10}, {4, 7}, {5, 8}, {6, 9}, {20, 23}, {1, 2}, {9, 16}, {22, 5}}, block_bytes());
  EXPECT_TRUE(same_bytes(after, round_trip, block_bytes()));
  EXPECT_EQ(engine.counters().blocks_swapped_out, 8);
  EXPECT_EQ(engine.counters().bytes_swapped_in, 8 * shape().bytes_per_block());
}

TEST_P(DevicePools, CopiesDuplicateBlocksInEveryLayerAndNothingElse) {
  SERVELAB_REQUIRE_GPU();
  CudaBackend gpu(options());
  CacheEngine engine(gpu, shape(), 40, 4);
  PoolBytes device = fill_random(gpu, engine.gpu_cache(), 3);
  // A small call, then a larger one (its arguments outgrow the first call's buffers).
  const Pairs few = {{5, 0}, {5, 7}, {12, 3}};
  engine.copy(copies(few));
  apply(device, device, few, block_bytes());
  Pairs many;
  for (int32_t i = 0; i < 16; ++i) many.push_back({20 + (i * 7) % 16, (i * 5 + 3) % 16});
  engine.copy(copies(many));
  apply(device, device, many, block_bytes());
  EXPECT_TRUE(same_bytes(read_pool(gpu, engine.gpu_cache()), device, block_bytes()));
  EXPECT_EQ(engine.counters().blocks_copied, 19);
}

TEST_P(DevicePools, APlanRunsSwapOutThenSwapInThenCopy) {
  SERVELAB_REQUIRE_GPU();
  CudaBackend gpu(options());
  CacheEngine engine(gpu, shape(), 8, 8);
  const PoolBytes device = fill_random(gpu, engine.gpu_cache(), 4);
  const PoolBytes host = fill_random(gpu, engine.cpu_cache(), 5);
  // GPU block 2 goes out and is reused at once by CPU block 1 coming in; the copy reads that.
  CachePlan plan;
  plan.swap_out = {{2, 0}};
  plan.swap_in = {{1, 2}};
  plan.copies = {{2, 5}};
  engine.execute(plan);
  PoolBytes expected_device = device, expected_host = host;
  apply(device, expected_host, {{2, 0}}, block_bytes());
  apply(host, expected_device, {{1, 2}, {1, 5}}, block_bytes());
  EXPECT_TRUE(same_bytes(read_pool(gpu, engine.gpu_cache()), expected_device, block_bytes()));
  EXPECT_TRUE(same_bytes(read_pool(gpu, engine.cpu_cache()), expected_host, block_bytes()));
}

std::vector<PoolCase> pool_cases() {
  std::vector<PoolCase> cases;
  for (SwapCopy swap_copy : {SwapCopy::kKernel, SwapCopy::kMemcpy}) {
    for (DType dtype : {DType::kBF16, DType::kF32}) {
      for (int64_t block_size : {8, 16, 32}) cases.push_back({block_size, dtype, swap_copy});
    }
    // Blocks of 60 and 120 bytes, and 2220 bytes (two chunks of the element-unit fallback):
    // not multiples of 16, so the kernel moves elements.
    cases.push_back({3, DType::kBF16, swap_copy, 5});
    cases.push_back({3, DType::kF32, swap_copy, 5});
    cases.push_back({37, DType::kBF16, swap_copy, 15});
    // 20 KiB blocks: one full 16 KiB chunk of 16-byte units and a partial one.
    cases.push_back({40, DType::kF32, swap_copy, 64});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(BlockSizesDtypesAndSwapPaths, DevicePools,
                         ::testing::ValuesIn(pool_cases()), [](const auto& info) {
                           return "block" + std::to_string(info.param.block_size) + "_headdim" +
                                  std::to_string(info.param.head_dim) + "_" +
                                  dtype_name(info.param.dtype) + "_" +
                                  swap_copy_name(info.param.swap_copy);
                         });

/// Sets an environment variable for one scope, restoring what was there.
class ScopedEnvironment {
 public:
  ScopedEnvironment(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    setenv(name, value, 1);
  }
  ~ScopedEnvironment() {
    if (had_) {
      setenv(name_.c_str(), old_.c_str(), 1);
    } else {
      unsetenv(name_.c_str());
    }
  }

 private:
  std::string name_, old_;
  bool had_ = false;
};

TEST(CudaSwapCopy, TheEnvironmentChoosesTheDefaultPathAndAnExplicitOptionWins) {
  SERVELAB_REQUIRE_GPU();
  {
    ScopedEnvironment environment("SERVELAB_SWAP_COPY", "");
    EXPECT_EQ(CudaBackend().swap_copy(), SwapCopy::kKernel);
  }
  {
    ScopedEnvironment environment("SERVELAB_SWAP_COPY", "memcpy");
    EXPECT_EQ(CudaBackend().swap_copy(), SwapCopy::kMemcpy);
    CudaBackendOptions options;
    options.swap_copy = SwapCopy::kKernel;
    CudaBackend explicit_kernel(options);
    EXPECT_EQ(explicit_kernel.swap_copy(), SwapCopy::kKernel);
    explicit_kernel.set_swap_copy(SwapCopy::kDefault);
    EXPECT_EQ(explicit_kernel.swap_copy(), SwapCopy::kMemcpy);
  }
  {
    ScopedEnvironment environment("SERVELAB_SWAP_COPY", "kernel");
    EXPECT_EQ(CudaBackend().swap_copy(), SwapCopy::kKernel);
  }
  {
    ScopedEnvironment environment("SERVELAB_SWAP_COPY", "dma");
    EXPECT_THROW(CudaBackend(), Error);
  }
}

TEST(CudaHostMemory, PinnedTensorsArePageLockedZeroedHostMemory) {
  SERVELAB_REQUIRE_GPU();
  CudaBackend gpu(CudaBackendOptions{DType::kBF16});
  Tensor tensor = gpu.allocate_host_pinned({3, 1000}, DType::kBF16);
  EXPECT_EQ(tensor.device(), Device::kCpu);
  cudaPointerAttributes attributes{};
  check_cuda(cudaPointerGetAttributes(&attributes, tensor.data()), "cudaPointerGetAttributes");
  EXPECT_EQ(attributes.type, cudaMemoryTypeHost) << "not page-locked (cudaHostAlloc) memory";
  const auto* bytes = static_cast<const uint8_t*>(tensor.data());
  EXPECT_TRUE(std::all_of(bytes, bytes + tensor.nbytes(), [](uint8_t b) { return b == 0; }));
  const Backend::MemoryInfo memory = gpu.memory_info();
  EXPECT_GT(memory.total_bytes, int64_t{1} << 30);
  EXPECT_GT(memory.free_bytes, 0);
  EXPECT_LE(memory.free_bytes, memory.total_bytes);
}

// ---- a paged forward across a swap ------------------------------------------------------------

int32_t argmax(const Tensor& logits) {
  const float* row = logits.f32();
  return static_cast<int32_t>(std::max_element(row, row + logits.numel()) - row);
}

void expect_logits_equal(const Tensor& actual, const Tensor& expected, const std::string& what) {
  ASSERT_EQ(actual.shape(), expected.shape()) << what;
  // The same kernels on the same inputs: equal up to nothing, but a graph replay and a direct
  // run are allowed the last bit. Stale or missing keys and values change logits by far more.
  for (int64_t i = 0; i < actual.numel(); ++i) {
    const float e = expected.f32()[i];
    ASSERT_NEAR(actual.f32()[i], e, 1e-5 * (1 + std::fabs(e))) << what << ", logit " << i;
  }
}

/// One sequence's greedy run, with the tokens of every step, through the engine's GPU pool.
struct Sequence {
  ForwardSequence forward;
  std::vector<int32_t> table;
  std::vector<int32_t> inputs;  // token fed at each decode step (from the run without swapping)
};

struct DtypeCase {
  DType dtype;
  SwapCopy swap_copy;
};
void PrintTo(const DtypeCase& c, std::ostream* out) {
  *out << dtype_name(c.dtype) << ", swap by " << swap_copy_name(c.swap_copy);
}

class SwapForward : public ::testing::TestWithParam<DtypeCase> {};

TEST_P(SwapForward, DecodeAfterSwapOutReuseAndSwapInToOtherBlocksEqualsARunWithoutSwapping) {
  SERVELAB_REQUIRE_GPU();
  const DType dtype = GetParam().dtype;
  CudaBackendOptions options;
  options.dtype = dtype;
  options.swap_copy = GetParam().swap_copy;
  CudaBackend gpu(options);  // CUDA graphs on
  ASSERT_EQ(gpu.swap_copy(), GetParam().swap_copy);
  // Random weights, 3 layers (so layers wait for their own swap events), GQA.
  LlamaModel model = LlamaModel::load(testing::fixture_model_dir("llama-linear-sharded"), gpu);
  const ModelConfig& config = model.config();
  KvCacheShape shape;
  shape.num_layers = config.num_hidden_layers;
  shape.num_kv_heads = config.num_key_value_heads;
  shape.head_dim = config.head_dim;
  shape.block_size = 4;
  shape.dtype = dtype;
  CacheEngine engine(gpu, shape, /*num_gpu_blocks=*/64, /*num_cpu_blocks=*/32);
  PagedKvCache& pool = engine.gpu_cache();

  // Free lists handed out in shuffled orders, as a block manager leaves them.
  std::mt19937 rng(11);
  std::vector<int32_t> free_gpu(64), free_cpu(32);
  for (int32_t b = 0; b < 64; ++b) free_gpu[b] = b;
  for (int32_t b = 0; b < 32; ++b) free_cpu[b] = b;
  std::shuffle(free_gpu.begin(), free_gpu.end(), rng);
  std::shuffle(free_cpu.begin(), free_cpu.end(), rng);
  auto take = [](std::vector<int32_t>& free, int64_t count) {
    std::vector<int32_t> blocks(free.end() - count, free.end());
    free.resize(free.size() - static_cast<size_t>(count));
    return blocks;
  };
  auto blocks_for = [&](int64_t tokens) {
    return (tokens + shape.block_size - 1) / shape.block_size;
  };
  auto random_prompt = [&](int64_t length) {
    std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(config.vocab_size - 1));
    std::vector<int32_t> prompt(static_cast<size_t>(length));
    for (int32_t& id : prompt) id = token(rng);
    return prompt;
  };
  auto start = [&](const std::vector<int32_t>& prompt, std::vector<int32_t> table) {
    Sequence s;
    s.table = std::move(table);
    s.forward.tokens = prompt;
    s.forward.paged_cache = &pool;
    return s;
  };
  // Runs one step of one sequence (prefill or decode) and returns its logits.
  auto step = [&](Sequence& s) {
    s.forward.block_table = &s.table;
    std::vector<ForwardSequence> batch = {s.forward};
    Tensor logits = model.forward(batch);
    s.forward.num_cached += static_cast<int64_t>(s.forward.tokens.size());
    return logits;
  };

  // A: 18 prompt tokens and 8 decode steps; B: 30 and 2. Their contexts stay within 32 tokens,
  // so every decode step has the same recorded shape (8 blocks per sequence).
  const int kStepsA = 8, kStepsB = 2;
  const std::vector<int32_t> prompt_a = random_prompt(18), prompt_b = random_prompt(30);

  // The run without swapping, each sequence alone.
  std::vector<Tensor> reference_a, reference_b;
  std::vector<int32_t> inputs_a, inputs_b;
  {
    Sequence a = start(prompt_a, take(free_gpu, blocks_for(18 + kStepsA)));
    reference_a.push_back(step(a));
    for (int i = 0; i < kStepsA; ++i) {
      inputs_a.push_back(argmax(reference_a.back()));
      a.forward.tokens = {inputs_a.back()};
      reference_a.push_back(step(a));
    }
    Sequence b = start(prompt_b, take(free_gpu, blocks_for(30 + kStepsB)));
    reference_b.push_back(step(b));
    for (int i = 0; i < kStepsB; ++i) {
      inputs_b.push_back(argmax(reference_b.back()));
      b.forward.tokens = {inputs_b.back()};
      reference_b.push_back(step(b));
    }
  }
  ASSERT_GT(gpu.graph_replays(), 0) << "decode steps were never replayed from a CUDA graph";

  // A prefills and decodes 4 steps in its own blocks.
  Sequence a = start(prompt_a, take(free_gpu, blocks_for(18 + kStepsA)));
  expect_logits_equal(step(a), reference_a[0], "A prefill");
  for (int i = 0; i < 4; ++i) {
    a.forward.tokens = {inputs_a[i]};
    expect_logits_equal(step(a), reference_a[i + 1], "A decode step " + std::to_string(i + 1));
  }

  // A is preempted: its blocks go out to the CPU pool...
  const std::vector<int32_t> cpu_a = take(free_cpu, static_cast<int64_t>(a.table.size()));
  CachePlan out_a;
  for (size_t i = 0; i < a.table.size(); ++i) out_a.swap_out.push_back({a.table[i], cpu_a[i]});
  engine.execute(out_a);
  // ...and B takes them over at once (in reverse order, plus one more) and writes every layer's
  // keys and values into them: its attention of layer l waits for A's swap-out of layer l.
  std::vector<int32_t> table_b(a.table.rbegin(), a.table.rend());
  table_b.push_back(take(free_gpu, 1)[0]);
  ASSERT_EQ(static_cast<int64_t>(table_b.size()), blocks_for(30 + kStepsB));
  Sequence b = start(prompt_b, table_b);
  expect_logits_equal(step(b), reference_b[0], "B prefill in A's old blocks");
  b.forward.tokens = {inputs_b[0]};
  expect_logits_equal(step(b), reference_b[1], "B decode step 1");

  // One plan: B goes out, A comes back in to blocks B has just freed (other blocks than A had,
  // and in another order), so the swap-in must wait for B's swap-out of the same block.
  const std::vector<int32_t> cpu_b = take(free_cpu, static_cast<int64_t>(table_b.size()));
  std::vector<int32_t> table_a;
  for (size_t i = 0; i < a.table.size(); ++i) table_a.push_back(table_b[(i + 3) % table_b.size()]);
  for (size_t i = 0; i < a.table.size(); ++i) ASSERT_NE(table_a[i], a.table[i]);
  CachePlan out_b_in_a;
  for (size_t i = 0; i < table_b.size(); ++i) out_b_in_a.swap_out.push_back({table_b[i], cpu_b[i]});
  for (size_t i = 0; i < a.table.size(); ++i) out_b_in_a.swap_in.push_back({cpu_a[i], table_a[i]});
  engine.execute(out_b_in_a);
  a.table = table_a;

  // A's next decode step, with no synchronisation in between: its attention of each layer waits
  // for that layer's swap-in, so the step must run directly, not from the recorded graph.
  const int64_t replays_before = gpu.graph_replays();
  a.forward.tokens = {inputs_a[4]};
  expect_logits_equal(step(a), reference_a[5], "A decode step 5, right after its swap-in");
  EXPECT_EQ(gpu.graph_replays(), replays_before)
      << "a step with swaps pending was replayed from a CUDA graph";
  for (int i = 5; i < kStepsA; ++i) {
    a.forward.tokens = {inputs_a[i]};
    expect_logits_equal(step(a), reference_a[i + 1], "A decode step " + std::to_string(i + 1));
  }
  EXPECT_GT(gpu.graph_replays(), replays_before) << "graphs were not used again after the swap";

  // B comes back in to fresh blocks and decodes its last step.
  CachePlan in_b;
  const std::vector<int32_t> new_table_b = take(free_gpu, static_cast<int64_t>(table_b.size()));
  for (size_t i = 0; i < table_b.size(); ++i) in_b.swap_in.push_back({cpu_b[i], new_table_b[i]});
  engine.execute(in_b);
  b.table = new_table_b;
  b.forward.tokens = {inputs_b[1]};
  expect_logits_equal(step(b), reference_b[2], "B decode step 2, after its swap-in");
  EXPECT_EQ(engine.counters().blocks_swapped_out, 7 + 8);
  EXPECT_EQ(engine.counters().blocks_swapped_in, 7 + 8);
}

INSTANTIATE_TEST_SUITE_P(DtypesAndSwapPaths, SwapForward,
                         ::testing::Values(DtypeCase{DType::kF32, SwapCopy::kKernel},
                                           DtypeCase{DType::kBF16, SwapCopy::kKernel},
                                           DtypeCase{DType::kF32, SwapCopy::kMemcpy},
                                           DtypeCase{DType::kBF16, SwapCopy::kMemcpy}),
                         [](const auto& info) {
                           return std::string(dtype_name(info.param.dtype)) + "_" +
                                  swap_copy_name(info.param.swap_copy);
                         });

}  // namespace
}  // namespace servelab
