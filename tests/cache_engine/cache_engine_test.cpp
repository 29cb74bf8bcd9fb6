// The cache engine on the CPU backend: swaps and copies move exactly the bytes of the named
// blocks, in every layer, keys and values, and nothing else; a plan runs swap-out, swap-in, copy
// in that order; a plan with one bad index moves nothing; and the GPU pool is sized from a memory
// fraction with the arithmetic the header states. Pools are filled with random values and
// compared byte for byte with a plain model of the moves.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "cache_engine/cache_engine.h"
#include "common/error.h"

namespace servelab {
namespace {

/// A pool's contents on the host: [layer][keys = 0, values = 1] -> floats of all its blocks.
using PoolContents = std::vector<std::vector<std::vector<float>>>;

void fill_random(PagedKvCache& cache, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (size_t layer = 0; layer < cache.keys.size(); ++layer) {
    for (Tensor* tensor : {&cache.keys[layer], &cache.values[layer]}) {
      for (int64_t i = 0; i < tensor->numel(); ++i) tensor->f32()[i] = normal(rng);
    }
  }
}

PoolContents contents(const PagedKvCache& cache) {
  PoolContents pool(cache.keys.size());
  for (size_t layer = 0; layer < cache.keys.size(); ++layer) {
    for (const Tensor* tensor : {&cache.keys[layer], &cache.values[layer]}) {
      pool[layer].emplace_back(tensor->f32(), tensor->f32() + tensor->numel());
    }
  }
  return pool;
}

/// What a move of (source, destination) pairs does, one pair after the other.
void apply(const PoolContents& source, PoolContents& destination,
           const std::vector<std::pair<int32_t, int32_t>>& pairs, int64_t block_elements) {
  for (size_t layer = 0; layer < source.size(); ++layer) {
    for (int kind = 0; kind < 2; ++kind) {
      for (const auto& [from, to] : pairs) {
        std::memcpy(destination[layer][kind].data() + to * block_elements,
                    source[layer][kind].data() + from * block_elements,
                    static_cast<size_t>(block_elements) * sizeof(float));
      }
    }
  }
}

/// Byte-for-byte equality, naming the first differing (layer, keys/values, block).
::testing::AssertionResult same_contents(const PoolContents& actual, const PoolContents& expected,
                                         int64_t block_elements) {
  if (actual.size() != expected.size()) return ::testing::AssertionFailure() << "layer counts";
  for (size_t layer = 0; layer < actual.size(); ++layer) {
    for (int kind = 0; kind < 2; ++kind) {
      const std::vector<float>& a = actual[layer][kind];
      const std::vector<float>& e = expected[layer][kind];
      if (a.size() != e.size()) return ::testing::AssertionFailure() << "sizes";
      for (size_t i = 0; i < a.size(); ++i) {
        if (std::memcmp(&a[i], &e[i], sizeof(float)) != 0) {
          return ::testing::AssertionFailure()
                 << "layer " << layer << (kind == 0 ? " keys" : " values") << ", block "
                 << static_cast<int64_t>(i) / block_elements << ", element "
                 << static_cast<int64_t>(i) % block_elements << ": " << a[i] << " vs expected "
                 << e[i];
        }
      }
    }
  }
  return ::testing::AssertionSuccess();
}

std::vector<std::pair<int32_t, int32_t>> pairs_of(const std::vector<BlockMove>& moves) {
  std::vector<std::pair<int32_t, int32_t>> pairs;
  for (const BlockMove& move : moves) pairs.emplace_back(move.source, move.destination);
  return pairs;
}
std::vector<std::pair<int32_t, int32_t>> pairs_of(const std::vector<BlockCopy>& copies) {
  std::vector<std::pair<int32_t, int32_t>> pairs;
  for (const BlockCopy& copy : copies) pairs.emplace_back(copy.source, copy.destination);
  return pairs;
}

class CacheEngineOnCpu : public ::testing::Test {
 protected:
  static KvCacheShape shape() {
    KvCacheShape s;
    s.num_layers = 3;
    s.num_kv_heads = 2;
    s.head_dim = 4;
    s.block_size = 4;
    s.dtype = DType::kF32;
    return s;
  }
  int64_t block_elements() const {
    return shape().block_size * shape().num_kv_heads * shape().head_dim;
  }
  void SetUp() override {
    fill_random(engine_.gpu_cache(), 1);
    fill_random(engine_.cpu_cache(), 2);
  }
  void expect_unchanged(const PoolContents& gpu, const PoolContents& cpu) {
    EXPECT_TRUE(same_contents(contents(engine_.gpu_cache()), gpu, block_elements()));
    EXPECT_TRUE(same_contents(contents(engine_.cpu_cache()), cpu, block_elements()));
  }

  CpuBackend backend_;
  CacheEngine engine_{backend_, shape(), /*num_gpu_blocks=*/10, /*num_cpu_blocks=*/8};
};

TEST_F(CacheEngineOnCpu, PoolsHaveTheShapeAskedFor) {
  EXPECT_EQ(engine_.gpu_cache().keys.size(), 3u);
  EXPECT_EQ(engine_.gpu_cache().num_blocks, 10);
  EXPECT_EQ(engine_.cpu_cache().num_blocks, 8);
  EXPECT_EQ(engine_.gpu_cache().values[2].shape(), Shape({10, 4, 2, 4}));
  EXPECT_EQ(engine_.cpu_cache().keys[1].shape(), Shape({8, 4, 2, 4}));
  EXPECT_EQ(engine_.cpu_cache().keys[1].dtype(), DType::kF32);
  // 2 (keys, values) x 3 layers x 4 tokens x 2 heads x 4 dims x 4 bytes.
  EXPECT_EQ(shape().bytes_per_block(), 2 * 3 * 4 * 2 * 4 * 4);
}

TEST_F(CacheEngineOnCpu, SwapOutThenInPutsTheExactBytesIntoNewBlocksAndTouchesNothingElse) {
  PoolContents gpu = contents(engine_.gpu_cache());
  PoolContents cpu = contents(engine_.cpu_cache());
  const PoolContents original_gpu = gpu;

  // Out: shuffled blocks, with a run of consecutive ones in the middle.
  const std::vector<BlockMove> out = {{7, 2}, {1, 5}, {2, 6}, {3, 7}};
  engine_.swap_out(out);
  apply(gpu, cpu, pairs_of(out), block_elements());
  expect_unchanged(gpu, cpu);

  // The freed GPU blocks are reused by someone else.
  fill_random(engine_.gpu_cache(), 3);
  gpu = contents(engine_.gpu_cache());

  // In: to other GPU blocks than the ones they came from.
  const std::vector<BlockMove> in = {{2, 0}, {5, 9}, {6, 4}, {7, 8}};
  engine_.swap_in(in);
  apply(cpu, gpu, pairs_of(in), block_elements());
  expect_unchanged(gpu, cpu);

  // Round trip: GPU block 7 went to CPU 2 and came back as GPU 0, and so on.
  PoolContents round_trip = gpu;
  apply(original_gpu, round_trip, {{7, 0}, {1, 9}, {2, 4}, {3, 8}}, block_elements());
  EXPECT_TRUE(same_contents(contents(engine_.gpu_cache()), round_trip, block_elements()));

  const CacheEngineCounters& counters = engine_.counters();
  EXPECT_EQ(counters.blocks_swapped_out, 4);
  EXPECT_EQ(counters.blocks_swapped_in, 4);
  EXPECT_EQ(counters.bytes_swapped_out, 4 * shape().bytes_per_block());
  EXPECT_EQ(counters.bytes_swapped_in, 4 * shape().bytes_per_block());
  EXPECT_EQ(counters.blocks_copied, 0);
}

TEST_F(CacheEngineOnCpu, CopyDuplicatesBlocksInEveryLayerAndNothingElse) {
  PoolContents gpu = contents(engine_.gpu_cache());
  const PoolContents cpu = contents(engine_.cpu_cache());
  const std::vector<BlockCopy> copies = {{0, 5}, {3, 6}, {0, 9}};
  engine_.copy(copies);
  apply(gpu, gpu, pairs_of(copies), block_elements());
  expect_unchanged(gpu, cpu);
  EXPECT_EQ(engine_.counters().blocks_copied, 3);
}

TEST_F(CacheEngineOnCpu, APlanRunsSwapOutThenSwapInThenCopy) {
  const PoolContents original_gpu = contents(engine_.gpu_cache());
  const PoolContents original_cpu = contents(engine_.cpu_cache());
  // GPU block 2 goes out to CPU 0 and is reused at once by CPU 1 coming in, and the copy reads
  // what came in. Any other order leaves other bytes: swap-in first would put CPU 1's block into
  // CPU 0; copy before swap-in would copy GPU 2's old contents.
  CachePlan plan;
  plan.swap_out = {{2, 0}};
  plan.swap_in = {{1, 2}};
  plan.copies = {{2, 5}};
  engine_.execute(plan);

  PoolContents gpu = original_gpu, cpu = original_cpu;
  apply(original_gpu, cpu, {{2, 0}}, block_elements());
  apply(original_cpu, gpu, {{1, 2}, {1, 5}}, block_elements());
  expect_unchanged(gpu, cpu);
  EXPECT_EQ(engine_.counters().blocks_swapped_out, 1);
  EXPECT_EQ(engine_.counters().blocks_swapped_in, 1);
  EXPECT_EQ(engine_.counters().blocks_copied, 1);
}

TEST_F(CacheEngineOnCpu, APlanWithOneBadIndexThrowsAndMovesNothing) {
  const PoolContents gpu = contents(engine_.gpu_cache());
  const PoolContents cpu = contents(engine_.cpu_cache());
  CachePlan good;
  good.swap_out = {{1, 1}, {2, 2}};
  good.swap_in = {{3, 3}};
  good.copies = {{4, 5}};
  struct Case {
    std::string what;
    CachePlan plan;
    std::string message;
  };
  std::vector<Case> cases;
  auto add = [&](std::string what, std::string message, auto change) {
    CachePlan plan = good;
    change(plan);
    cases.push_back({std::move(what), plan, std::move(message)});
  };
  add("copy destination past the GPU pool", "outside the destination pool of 10 blocks",
      [](CachePlan& p) {
        p.copies.push_back({0, 10});
      });
  add("negative swap-in source", "outside the source pool of 8 blocks", [](CachePlan& p) {
    p.swap_in.push_back({-1, 6});
  });
  add("swap-out destination past the CPU pool", "outside the destination pool of 8 blocks",
      [](CachePlan& p) {
        p.swap_out.push_back({0, 8});
      });
  add("swap-out source past the GPU pool", "outside the source pool of 10 blocks",
      [](CachePlan& p) {
        p.swap_out.push_back({12, 6});
      });
  add("two swap-ins into one block", "both write block 3", [](CachePlan& p) {
    p.swap_in.push_back({0, 3});
  });
  add("a copy chain", "written by pair 0 and read by pair 1", [](CachePlan& p) {
    p.copies.push_back({5, 6});
  });
  for (const Case& c : cases) {
    try {
      engine_.execute(c.plan);
      ADD_FAILURE() << c.what << ": accepted";
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find(c.message), std::string::npos)
          << c.what << ": " << error.what();
    }
    expect_unchanged(gpu, cpu);
  }
  const CacheEngineCounters& counters = engine_.counters();
  EXPECT_EQ(counters.blocks_swapped_out + counters.blocks_swapped_in + counters.blocks_copied, 0);
}

TEST_F(CacheEngineOnCpu, AnEmptyPlanMovesNothing) {
  const PoolContents gpu = contents(engine_.gpu_cache());
  const PoolContents cpu = contents(engine_.cpu_cache());
  CachePlan plan;
  EXPECT_TRUE(plan.empty());
  engine_.execute(plan);
  expect_unchanged(gpu, cpu);
}

TEST(CacheEngine, WithoutSwapSpaceEverySwapIsRefused) {
  CpuBackend backend;
  KvCacheShape shape;
  shape.num_layers = 2;
  shape.num_kv_heads = 1;
  shape.head_dim = 8;
  CacheEngine engine(backend, shape, 4, 0);
  EXPECT_EQ(engine.cpu_cache().num_blocks, 0);
  try {
    engine.swap_out({{0, 0}});
    FAIL() << "a swap-out without swap space was accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("pool of 0 blocks"), std::string::npos)
        << error.what();
  }
  engine.swap_out({});  // nothing to move is fine
}

TEST(CacheEngine, AKvDtypeOtherThanTheComputeDtypeIsRefused) {
  CpuBackend backend;
  KvCacheShape shape;
  shape.num_layers = 1;
  shape.num_kv_heads = 1;
  shape.head_dim = 8;
  shape.dtype = DType::kBF16;
  try {
    CacheEngine engine(backend, shape, 4, 4);
    FAIL() << "a BF16 cache on an F32 backend was accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("computes in F32"), std::string::npos) << error.what();
  }
}

TEST(CachePlan, AppendKeepsTheOrderOfBothPlans) {
  CachePlan first, second;
  first.swap_out = {{1, 2}};
  first.copies = {{3, 4}};
  second.swap_out = {{5, 6}};
  second.swap_in = {{7, 8}};
  second.copies = {{9, 10}};
  first.append(second);
  EXPECT_EQ(first.swap_out, (std::vector<BlockMove>{{1, 2}, {5, 6}}));
  EXPECT_EQ(first.swap_in, (std::vector<BlockMove>{{7, 8}}));
  EXPECT_EQ(first.copies, (std::vector<BlockCopy>{{3, 4}, {9, 10}}));
  first.append(first);  // appending a plan to itself doubles it
  EXPECT_EQ(first.swap_out.size(), 4u);
  EXPECT_EQ(first.copies.back(), (BlockCopy{9, 10}));
}

// ---- the backend's block copies ---------------------------------------------------------------

TEST(BackendBlockCopies, CachesOfDifferentKindsOrInGpuMemoryAreRefused) {
  CpuBackend backend;
  PagedKvCache a = backend.allocate_host_paged_kv_cache(2, 4, 4, 2, 8, DType::kF32);
  PagedKvCache fewer_layers = backend.allocate_host_paged_kv_cache(1, 4, 4, 2, 8, DType::kF32);
  PagedKvCache other_heads = backend.allocate_host_paged_kv_cache(2, 4, 4, 1, 8, DType::kF32);
  PagedKvCache other_dtype = backend.allocate_host_paged_kv_cache(2, 4, 4, 2, 8, DType::kBF16);
  auto expect_error = [](auto call, const std::string& message) {
    try {
      call();
      ADD_FAILURE() << "accepted; expected an error containing '" << message << "'";
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find(message), std::string::npos) << error.what();
    }
  };
  expect_error([&] { backend.swap_blocks(a, fewer_layers, {{0, 0}}); }, "layers");
  expect_error([&] { backend.swap_blocks(a, other_heads, {{0, 0}}); }, "blocks differ");
  expect_error([&] { backend.swap_blocks(a, other_dtype, {{0, 0}}); }, "one dtype");
  // A tensor that says it lives on the GPU: the CPU backend must not touch it.
  PagedKvCache on_device = a;
  for (Tensor* tensor :
       {&on_device.keys[0], &on_device.values[0], &on_device.keys[1], &on_device.values[1]}) {
    *tensor = Tensor(tensor->data(), tensor->shape(), tensor->dtype(), Device::kCuda, nullptr);
  }
  expect_error([&] { backend.swap_blocks(on_device, a, {{0, 1}}); }, "GPU memory");
  expect_error([&] { backend.copy_blocks(on_device, {{0, 1}}); }, "GPU memory");
  // A layer whose tensor has the wrong shape.
  PagedKvCache wrong_shape = a;
  wrong_shape.values[1] = Tensor::zeros({4, 4, 2, 7});
  expect_error([&] { backend.copy_blocks(wrong_shape, {{0, 1}}); }, "values of layer 1");
}

TEST(BackendBlockCopies, HostPinnedTensorsAreZeroedHostMemoryOfAnyDtype) {
  CpuBackend backend;
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16, DType::kI32}) {
    Tensor tensor = backend.allocate_host_pinned({3, 5}, dtype);
    EXPECT_EQ(tensor.device(), Device::kCpu);
    EXPECT_EQ(tensor.dtype(), dtype);
    const auto* bytes = static_cast<const unsigned char*>(tensor.data());
    for (size_t i = 0; i < tensor.nbytes(); ++i) ASSERT_EQ(bytes[i], 0) << dtype_name(dtype);
  }
}

TEST(BackendBlockCopies, CpuMemoryInfoIsThisMachinesRam) {
  CpuBackend backend;
  const Backend::MemoryInfo info = backend.memory_info();
  EXPECT_GT(info.total_bytes, int64_t{64} << 20);
  EXPECT_GE(info.free_bytes, 0);
  EXPECT_LE(info.free_bytes, info.total_bytes);
}

// ---- sizing the GPU pool ------------------------------------------------------------------------

/// A backend whose memory is whatever the test says.
class FakeMemoryBackend : public CpuBackend {
 public:
  FakeMemoryBackend(int64_t free_bytes, int64_t total_bytes) {
    info_.free_bytes = free_bytes;
    info_.total_bytes = total_bytes;
  }
  MemoryInfo memory_info() const override { return info_; }

 private:
  MemoryInfo info_;
};

KvCacheShape llama3_8b_kv() {
  KvCacheShape shape;
  shape.num_layers = 32;
  shape.num_kv_heads = 8;
  shape.head_dim = 128;
  shape.block_size = 16;
  shape.dtype = DType::kBF16;
  return shape;
}

constexpr int64_t kGiB = int64_t{1} << 30;

TEST(GpuBlocksForMemoryFraction, FollowsTheHeadersFormula) {
  // 2 x 32 layers x 16 tokens x 8 heads x 128 dims x 2 bytes = 2 MiB per block.
  EXPECT_EQ(llama3_8b_kv().bytes_per_block(), int64_t{2} << 20);
  // 80 GiB device, 20 GiB in use (the weights), 90%, 2 GiB reserve: 72 - 20 - 2 = 50 GiB.
  FakeMemoryBackend backend(60 * kGiB, 80 * kGiB);
  EXPECT_EQ(gpu_blocks_for_memory_fraction(backend, llama3_8b_kv(), 0.9, 2 * kGiB), 50 * 512);
  // A budget that is not a whole number of blocks rounds down.
  EXPECT_EQ(gpu_blocks_for_memory_fraction(backend, llama3_8b_kv(), 0.9, 2 * kGiB + 1),
            50 * 512 - 1);
  // Exactly one block fits.
  FakeMemoryBackend tight(kGiB + (int64_t{2} << 20), kGiB + (int64_t{2} << 20));
  EXPECT_EQ(gpu_blocks_for_memory_fraction(tight, llama3_8b_kv(), 1.0, kGiB), 1);
}

TEST(GpuBlocksForMemoryFraction, NotOneBlockGivesAnErrorThatSaysWhereTheMemoryWent) {
  FakeMemoryBackend backend(60 * kGiB, 80 * kGiB);
  try {
    gpu_blocks_for_memory_fraction(backend, llama3_8b_kv(), 0.2, 0);  // 16 GiB < 20 in use
    FAIL() << "a budget below the memory in use was accepted";
  } catch (const Error& error) {
    const std::string message = error.what();
    for (const char* part : {"not one KV cache block", "20.00 GiB is already in use", "2.00 MiB",
                             "Raise the memory fraction"}) {
      EXPECT_NE(message.find(part), std::string::npos) << part << " in: " << message;
    }
  }
  for (double bad : {0.0, -0.5, 1.5}) {
    EXPECT_THROW(gpu_blocks_for_memory_fraction(backend, llama3_8b_kv(), bad, 0), Error) << bad;
  }
  EXPECT_THROW(gpu_blocks_for_memory_fraction(backend, llama3_8b_kv(), 0.9, -1), Error);
}

}  // namespace
}  // namespace servelab
