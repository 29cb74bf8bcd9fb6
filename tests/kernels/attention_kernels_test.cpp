// The attention-path kernels against their CPU references, on random inputs rounded to each dtype
// (F32, F16, BF16) before the reference sees them:
//   - PagedAttention decode v1 and v2 (every partition size) vs cpu::paged_attention_decode, on
//     shuffled block tables whose unowned slots hold NaN, so a read past a context fails;
//   - write_contiguous_kv + naive_attention vs CpuBackend::attention over a ContiguousKvCache;
//   - write_paged_kv vs cpu::write_paged_kv, copy_blocks vs a plain loop (both exact copies);
//   - the launchers' argument checks, which need no GPU.
// Outputs and workspaces are poisoned (NaN) first, so an element a kernel forgets fails. Each
// GPU test loops over the three dtypes itself, which keeps the number of test processes (and
// CUDA context creations under ctest) small.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <ostream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/paged_attention.h"
#include "common/error.h"
#include "common/tensor.h"
#include "kernels/kernel_test_helpers.h"
#include "kernels/kernels.h"

namespace servelab {
namespace {

using testing::all_close;
using testing::DeviceBuffer;

const DType kDtypes[] = {DType::kF32, DType::kF16, DType::kBF16};
const float kNaN = std::numeric_limits<float>::quiet_NaN();

int64_t count_not_nan(const std::vector<float>& values, int64_t begin, int64_t end) {
  int64_t count = 0;
  for (int64_t i = begin; i < end; ++i) count += !std::isnan(values[i]);
  return count;
}

void expect_cuda(cudaError_t status, const char* what) {
  EXPECT_EQ(status, cudaSuccess) << what << ": " << cudaGetErrorString(status);
}

// Overwrites an int32 device buffer of the same length (the lengths of a replayed batch).
void upload_ints(DeviceBuffer& buffer, const std::vector<int32_t>& values) {
  ASSERT_EQ(buffer.count(), static_cast<int64_t>(values.size()));
  expect_cuda(cudaMemcpy(buffer.data(), values.data(), values.size() * sizeof(int32_t),
                         cudaMemcpyHostToDevice),
              "upload ints");
}

// The call throws servelab::Error, and its message names the problem (so that an unrelated
// failure, such as no GPU to launch on, does not pass for the check under test).
template <typename Call>
void expect_error_mentioning(Call&& call, const std::string& words) {
  try {
    call();
    ADD_FAILURE() << "no error; expected one mentioning '" << words << "'";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find(words), std::string::npos)
        << "error '" << error.what() << "' does not mention '" << words << "'";
  }
}

// ---- PagedAttention decode --------------------------------------------------------------------

struct PagedDecodeShape {
  const char* name;
  int head_dim;
  int num_heads;
  int num_kv_heads;
  int block_size;
  std::vector<int32_t> context_lens;  // one per sequence; 0 is an empty context
};

std::ostream& operator<<(std::ostream& out, const PagedDecodeShape& shape) {
  return out << shape.name;
}

// A decode batch made concrete, fp32 host arrays already rounded to the dtype.
struct PagedDecodeProblem {
  int num_seqs = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0, block_size = 0;
  int blocks_per_seq = 0, num_blocks = 0;
  int max_context_len = 0;  // the launch's bound: what a block table row holds, not the maximum
  float scale = 0.0f;
  std::vector<int32_t> context_lens;
  std::vector<int32_t> block_tables;  // [num_seqs, blocks_per_seq]
  std::vector<float> queries;         // [num_seqs, num_heads, head_dim]
  std::vector<float> key_cache;       // [num_blocks, block_size, num_kv_heads, head_dim]
  std::vector<float> value_cache;

  int64_t row_width() const { return int64_t{num_heads} * head_dim; }
  kernels::HeadShape heads() const { return {num_heads, num_kv_heads, head_dim, scale}; }
};

// Blocks are handed out in a shuffled order (a fragmented pool), every table row has a padding
// column, and every slot that no token of the batch owns (tails of last blocks, the two spare
// blocks the padding entries point at) holds NaN: reading one turns the output into NaN.
PagedDecodeProblem make_paged_problem(const PagedDecodeShape& shape, DType dtype, uint64_t seed) {
  PagedDecodeProblem p;
  p.num_seqs = static_cast<int>(shape.context_lens.size());
  p.num_heads = shape.num_heads;
  p.num_kv_heads = shape.num_kv_heads;
  p.head_dim = shape.head_dim;
  p.block_size = shape.block_size;
  p.scale = 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
  p.context_lens = shape.context_lens;
  std::mt19937_64 rng(seed);

  std::vector<int> needed(static_cast<size_t>(p.num_seqs));
  int owned = 0;
  for (int s = 0; s < p.num_seqs; ++s) {
    needed[s] = (p.context_lens[s] + p.block_size - 1) / p.block_size;
    owned += needed[s];
    p.blocks_per_seq = std::max(p.blocks_per_seq, needed[s] + 1);
  }
  p.max_context_len = p.blocks_per_seq * p.block_size;
  p.num_blocks = owned + 2;
  std::vector<int32_t> order(static_cast<size_t>(p.num_blocks));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  p.block_tables.assign(static_cast<size_t>(p.num_seqs) * p.blocks_per_seq, order.back());
  int next = 0;
  for (int s = 0; s < p.num_seqs; ++s) {
    for (int b = 0; b < needed[s]; ++b) p.block_tables[s * p.blocks_per_seq + b] = order[next++];
  }

  const int64_t slot_width = int64_t{p.num_kv_heads} * p.head_dim;
  const int64_t slots = int64_t{p.num_blocks} * p.block_size;
  p.key_cache = testing::round_to(dtype, testing::random_values(slots * slot_width, seed + 1));
  p.value_cache = testing::round_to(dtype, testing::random_values(slots * slot_width, seed + 2));
  // Queries a little larger than keys, so that the softmax has peaks.
  p.queries =
      testing::round_to(dtype, testing::random_values(p.num_seqs * p.row_width(), seed + 3, 1.5f));
  std::vector<bool> used(static_cast<size_t>(slots), false);
  for (int s = 0; s < p.num_seqs; ++s) {
    for (int position = 0; position < p.context_lens[s]; ++position) {
      const int32_t block = p.block_tables[s * p.blocks_per_seq + position / p.block_size];
      used[int64_t{block} * p.block_size + position % p.block_size] = true;
    }
  }
  for (int64_t slot = 0; slot < slots; ++slot) {
    if (used[slot]) continue;
    std::fill_n(p.key_cache.begin() + slot * slot_width, slot_width, kNaN);
    std::fill_n(p.value_cache.begin() + slot * slot_width, slot_width, kNaN);
  }
  return p;
}

// cpu::paged_attention_decode for every sequence; an empty context gives a zero row (the kernels'
// documented answer, where the CPU function refuses).
std::vector<float> reference_decode(const PagedDecodeProblem& p) {
  std::vector<float> out(static_cast<size_t>(p.num_seqs * p.row_width()), 0.0f);
  const cpu::AttentionHeads heads{p.num_heads, p.num_kv_heads, p.head_dim, p.scale};
  for (int s = 0; s < p.num_seqs; ++s) {
    if (p.context_lens[s] == 0) continue;
    cpu::PagedSequenceView view;
    view.key_cache = p.key_cache.data();
    view.value_cache = p.value_cache.data();
    view.block_table = &p.block_tables[s * p.blocks_per_seq];
    view.block_size = p.block_size;
    view.context_len = p.context_lens[s];
    cpu::paged_attention_decode(&p.queries[s * p.row_width()], view, heads,
                                &out[s * p.row_width()]);
  }
  return out;
}

// The problem's tensors on the device.
struct PagedDecodeDevice {
  PagedDecodeDevice(const PagedDecodeProblem& p, DType dtype)
      : queries(DeviceBuffer::from(dtype, p.queries)),
        key_cache(DeviceBuffer::from(dtype, p.key_cache)),
        value_cache(DeviceBuffer::from(dtype, p.value_cache)),
        block_tables(DeviceBuffer::from_ints(p.block_tables)),
        context_lens(DeviceBuffer::from_ints(p.context_lens)) {
    cache.key_cache = key_cache.data();
    cache.value_cache = value_cache.data();
    cache.block_tables = block_tables.as<int32_t>();
    cache.blocks_per_seq = p.blocks_per_seq;
    cache.block_size = p.block_size;
  }
  DeviceBuffer queries, key_cache, value_cache, block_tables, context_lens;
  kernels::PagedCache cache;
};

std::vector<float> run_decode_v1(const PagedDecodeProblem& p, DType dtype,
                                 const PagedDecodeDevice& device) {
  DeviceBuffer out(dtype, p.num_seqs * p.row_width());
  out.poison();
  kernels::paged_attention_decode(dtype, device.queries.data(), device.cache,
                                  device.context_lens.as<int32_t>(), nullptr, p.num_seqs,
                                  p.max_context_len, p.heads(), out.data(), nullptr);
  return out.download();
}

std::vector<float> run_decode_split(const PagedDecodeProblem& p, DType dtype,
                                    const PagedDecodeDevice& device, int partition_size) {
  const int64_t workspace_bytes = kernels::paged_attention_split_workspace(
      p.num_seqs, p.max_context_len, partition_size, p.heads());
  DeviceBuffer workspace(DType::kF32, workspace_bytes / 4);
  workspace.poison();
  DeviceBuffer out(dtype, p.num_seqs * p.row_width());
  out.poison();
  kernels::paged_attention_decode_split(dtype, device.queries.data(), device.cache,
                                        device.context_lens.as<int32_t>(), nullptr, p.num_seqs,
                                        p.max_context_len, partition_size, p.heads(),
                                        workspace.data(), workspace_bytes, out.data(), nullptr);
  return out.download();
}

// Head_dim 64 and 128 (the fast paths) and 32, 40, 96, 256 (the generic one); GQA groups 1, 2, 3,
// 4, 8, 12 and 16 (more than one block's worth of heads); block sizes 8, 16, 32; lengths of 1
// token, exact multiples of the block size, and 4097 (a last block holding one token).
std::vector<PagedDecodeShape> paged_decode_shapes() {
  return {
      {"Mha_Dim64_Block16", 64, 4, 4, 16, {1, 17, 100, 300}},
      {"Mha_Dim128_Block32_FullBlocks", 128, 2, 2, 32, {32, 64, 3}},
      {"Gqa2_Dim32_Block16", 32, 4, 2, 16, {5, 48, 77}},
      {"Gqa3_Dim96_Block16", 96, 6, 2, 16, {50, 200}},
      {"Gqa4_Dim128_Block16_MixedLengths", 128, 8, 2, 16, {33, 1, 513, 250, 16}},
      {"Gqa4_Dim40_Block32_EmbeddedModel", 40, 8, 2, 32, {31, 65, 1, 400}},
      {"Gqa4_Dim256_Block16", 256, 4, 1, 16, {90, 10}},
      {"Gqa4_Dim64_Block16_EmptyContexts", 64, 8, 2, 16, {0, 20, 0}},
      {"Gqa8_Dim128_Block8", 128, 16, 2, 8, {7, 129, 600}},
      {"Gqa12_Dim64_Block8", 64, 12, 1, 8, {45, 9}},
      {"Gqa16_Dim64_Block16", 64, 32, 2, 16, {70, 300}},
      {"Long4097_Gqa4_Dim128_Block16", 128, 8, 2, 16, {4097, 1000}},
      {"Long4097_Gqa8_Dim64_Block32", 64, 8, 1, 32, {4097}},
  };
}

class PagedAttentionDecode : public ::testing::TestWithParam<PagedDecodeShape> {};

TEST_P(PagedAttentionDecode, V1MatchesCpuReference) {
  SERVELAB_REQUIRE_GPU();
  for (DType dtype : kDtypes) {
    SCOPED_TRACE(dtype_name(dtype));
    const PagedDecodeProblem p = make_paged_problem(GetParam(), dtype, 1234);
    const PagedDecodeDevice device(p, dtype);
    EXPECT_TRUE(all_close(run_decode_v1(p, dtype, device), reference_decode(p),
                          testing::default_atol(dtype), testing::default_rtol(dtype)));
  }
}

// Partition sizes: automatic, one block (many partitions: the merge does the work), three blocks
// (a size that divides no context here) and the whole bound (a single partition, which the
// partition kernel finishes without the merge).
TEST_P(PagedAttentionDecode, SplitMatchesCpuReferenceForEveryPartitionSize) {
  SERVELAB_REQUIRE_GPU();
  for (DType dtype : kDtypes) {
    SCOPED_TRACE(dtype_name(dtype));
    const PagedDecodeProblem p = make_paged_problem(GetParam(), dtype, 5678);
    const PagedDecodeDevice device(p, dtype);
    const std::vector<float> expected = reference_decode(p);
    for (int partition_size : {0, p.block_size, 3 * p.block_size, p.max_context_len}) {
      SCOPED_TRACE("partition_size " + std::to_string(partition_size));
      EXPECT_TRUE(all_close(run_decode_split(p, dtype, device, partition_size), expected,
                            testing::default_atol(dtype), testing::default_rtol(dtype)));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, PagedAttentionDecode, ::testing::ValuesIn(paged_decode_shapes()),
                         [](const ::testing::TestParamInfo<PagedDecodeShape>& info) {
                           return std::string(info.param.name);
                         });

// Decode rows sit among the rows of a mixed batch: sequence s reads and writes row seq_rows[s],
// and every other output row keeps its poison.
TEST(PagedAttentionDecodeRows, BothVersionsWriteOnlyTheRowsNamedBySeqRows) {
  SERVELAB_REQUIRE_GPU();
  const PagedDecodeShape shape{"", 128, 8, 2, 16, {40, 300, 7}};
  const std::vector<int32_t> seq_rows = {4, 0, 2};
  const int num_rows = 6;
  for (DType dtype : kDtypes) {
    SCOPED_TRACE(dtype_name(dtype));
    const PagedDecodeProblem p = make_paged_problem(shape, dtype, 99);
    const PagedDecodeDevice device(p, dtype);
    const std::vector<float> expected = reference_decode(p);
    const int64_t width = p.row_width();
    // Row seq_rows[s] holds sequence s's query; the other rows hold unrelated values.
    std::vector<float> queries =
        testing::round_to(dtype, testing::random_values(num_rows * width, 7));
    for (int s = 0; s < p.num_seqs; ++s) {
      std::copy_n(p.queries.begin() + s * width, width, queries.begin() + seq_rows[s] * width);
    }
    const DeviceBuffer device_queries = DeviceBuffer::from(dtype, queries);
    const DeviceBuffer device_rows = DeviceBuffer::from_ints(seq_rows);
    for (bool split : {false, true}) {
      SCOPED_TRACE(split ? "split" : "v1");
      DeviceBuffer out(dtype, num_rows * width);
      out.poison();
      if (split) {
        const int partition_size = 2 * p.block_size;  // several partitions for the long one
        const int64_t bytes = kernels::paged_attention_split_workspace(
            p.num_seqs, p.max_context_len, partition_size, p.heads());
        DeviceBuffer workspace(DType::kF32, bytes / 4);
        workspace.poison();
        kernels::paged_attention_decode_split(
            dtype, device_queries.data(), device.cache, device.context_lens.as<int32_t>(),
            device_rows.as<int32_t>(), p.num_seqs, p.max_context_len, partition_size, p.heads(),
            workspace.data(), bytes, out.data(), nullptr);
        expect_cuda(cudaDeviceSynchronize(), "split decode");  // while workspace is alive
      } else {
        kernels::paged_attention_decode(dtype, device_queries.data(), device.cache,
                                        device.context_lens.as<int32_t>(),
                                        device_rows.as<int32_t>(), p.num_seqs, p.max_context_len,
                                        p.heads(), out.data(), nullptr);
      }
      const std::vector<float> actual = out.download();
      std::vector<bool> written(num_rows, false);
      for (int s = 0; s < p.num_seqs; ++s) {
        written[seq_rows[s]] = true;
        const std::vector<float> row(actual.begin() + seq_rows[s] * width,
                                     actual.begin() + (seq_rows[s] + 1) * width);
        const std::vector<float> want(expected.begin() + s * width,
                                      expected.begin() + (s + 1) * width);
        EXPECT_TRUE(
            all_close(row, want, testing::default_atol(dtype), testing::default_rtol(dtype)))
            << "sequence " << s;
      }
      for (int row = 0; row < num_rows; ++row) {
        if (!written[row]) {
          EXPECT_EQ(count_not_nan(actual, row * width, (row + 1) * width), 0)
              << "row " << row << " belongs to no sequence";
        }
      }
    }
  }
}

// v2 sizes its grid from max_context_len only, so one captured graph serves any lengths up to it:
// replaying it after the lengths change on the device gives the new answer.
TEST(PagedAttentionDecodeGraph, SplitCapturedOnceReplaysWithNewContextLengths) {
  SERVELAB_REQUIRE_GPU();
  const DType dtype = DType::kBF16;
  const PagedDecodeShape shape{"", 128, 8, 2, 16, {400, 100}};
  PagedDecodeProblem p = make_paged_problem(shape, dtype, 31);
  PagedDecodeDevice device(p, dtype);
  const std::vector<int32_t> first_lengths = {300, 17};
  upload_ints(device.context_lens, first_lengths);
  const int64_t bytes =
      kernels::paged_attention_split_workspace(p.num_seqs, p.max_context_len, 0, p.heads());
  DeviceBuffer workspace(DType::kF32, bytes / 4);
  workspace.poison();
  DeviceBuffer out(dtype, p.num_seqs * p.row_width());

  cudaStream_t stream = nullptr;
  expect_cuda(cudaStreamCreate(&stream), "cudaStreamCreate");
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t graph_exec = nullptr;
  expect_cuda(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "begin capture");
  kernels::paged_attention_decode_split(
      dtype, device.queries.data(), device.cache, device.context_lens.as<int32_t>(), nullptr,
      p.num_seqs, p.max_context_len, 0, p.heads(), workspace.data(), bytes, out.data(), stream);
  expect_cuda(cudaStreamEndCapture(stream, &graph), "end capture");
  expect_cuda(cudaGraphInstantiate(&graph_exec, graph, 0), "instantiate");

  const double atol = testing::default_atol(dtype), rtol = testing::default_rtol(dtype);
  for (const std::vector<int32_t>& lengths : {first_lengths, p.context_lens}) {
    SCOPED_TRACE("lengths " + std::to_string(lengths[0]) + ", " + std::to_string(lengths[1]));
    upload_ints(device.context_lens, lengths);
    out.poison();
    expect_cuda(cudaGraphLaunch(graph_exec, stream), "graph launch");
    expect_cuda(cudaStreamSynchronize(stream), "replay");
    PagedDecodeProblem now = p;
    now.context_lens = lengths;
    EXPECT_TRUE(all_close(out.download(), reference_decode(now), atol, rtol));
  }
  cudaGraphExecDestroy(graph_exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

// ---- naive attention over contiguous caches ---------------------------------------------------

struct NaiveShape {
  const char* name;
  int head_dim;
  int num_heads;
  int num_kv_heads;
  std::vector<std::pair<int, int>> sequences;  // (tokens cached before, new tokens)
};

std::ostream& operator<<(std::ostream& out, const NaiveShape& shape) {
  return out << shape.name;
}

std::vector<NaiveShape> naive_shapes() {
  return {
      {"Mha_Dim64_PrefillAndDecode", 64, 4, 4, {{0, 5}, {10, 1}, {0, 1}, {37, 20}}},
      {"Gqa4_Dim128_MixedBatch", 128, 8, 2, {{0, 33}, {100, 1}, {7, 9}}},
      {"Gqa4_Dim40_EmbeddedModel", 40, 8, 2, {{3, 17}, {60, 1}}},
      {"Gqa8_Dim64_SequenceWithoutNewTokens", 64, 8, 1, {{5, 3}, {9, 0}, {0, 12}}},
      {"Long4097_Gqa4_Dim128", 128, 8, 2, {{4090, 7}, {0, 1}}},
  };
}

class NaiveAttention : public ::testing::TestWithParam<NaiveShape> {};

// write_contiguous_kv puts each new token at its position (and nowhere else: the caches' unused
// tails stay NaN), then naive_attention over the caches matches CpuBackend::attention.
TEST_P(NaiveAttention, WriteThenAttendMatchesCpuBackend) {
  SERVELAB_REQUIRE_GPU();
  const NaiveShape& shape = GetParam();
  const int num_seqs = static_cast<int>(shape.sequences.size());
  const int64_t slot_width = int64_t{shape.num_kv_heads} * shape.head_dim;
  const int64_t row_width = int64_t{shape.num_heads} * shape.head_dim;
  std::vector<int32_t> query_start = {0}, context_lens;
  std::vector<int64_t> capacities;
  int max_query_len = 0, max_context_len = 0;
  for (const auto& [cached, fresh] : shape.sequences) {
    query_start.push_back(query_start.back() + fresh);
    context_lens.push_back(cached + fresh);
    capacities.push_back(cached + fresh + 3);
    max_query_len = std::max(max_query_len, fresh);
    max_context_len = std::max(max_context_len, cached + fresh);
  }
  const int64_t num_tokens = query_start.back();
  kernels::PackedBatch batch;
  batch.num_seqs = num_seqs;
  batch.num_tokens = num_tokens;
  batch.max_query_len = max_query_len;
  batch.max_context_len = max_context_len + 5;  // an upper bound, not the maximum
  const kernels::HeadShape heads{shape.num_heads, shape.num_kv_heads, shape.head_dim,
                                 1.0f / std::sqrt(static_cast<float>(shape.head_dim))};
  const DeviceBuffer device_query_start = DeviceBuffer::from_ints(query_start);
  const DeviceBuffer device_context_lens = DeviceBuffer::from_ints(context_lens);
  batch.query_start = device_query_start.as<int32_t>();
  batch.context_lens = device_context_lens.as<int32_t>();

  for (DType dtype : kDtypes) {
    SCOPED_TRACE(dtype_name(dtype));
    uint64_t seed = 100;
    const std::vector<float> keys =
        testing::round_to(dtype, testing::random_values(num_tokens * slot_width, seed++));
    const std::vector<float> values =
        testing::round_to(dtype, testing::random_values(num_tokens * slot_width, seed++));
    const std::vector<float> queries =
        testing::round_to(dtype, testing::random_values(num_tokens * row_width, seed++, 1.5f));

    // Caches: the cached prefix random, the rest NaN until written. expected_* is each cache
    // after the write: prefix, then the new rows.
    std::vector<std::vector<float>> expected_keys, expected_values;
    std::vector<DeviceBuffer> key_caches, value_caches;
    std::vector<void*> key_pointers, value_pointers;
    for (int s = 0; s < num_seqs; ++s) {
      const int cached = shape.sequences[s].first;
      std::vector<float> key_cache(capacities[s] * slot_width, kNaN);
      std::vector<float> value_cache(capacities[s] * slot_width, kNaN);
      const std::vector<float> prefix_keys =
          testing::round_to(dtype, testing::random_values(cached * slot_width, seed++));
      const std::vector<float> prefix_values =
          testing::round_to(dtype, testing::random_values(cached * slot_width, seed++));
      std::copy(prefix_keys.begin(), prefix_keys.end(), key_cache.begin());
      std::copy(prefix_values.begin(), prefix_values.end(), value_cache.begin());
      key_caches.push_back(DeviceBuffer::from(dtype, key_cache));
      value_caches.push_back(DeviceBuffer::from(dtype, value_cache));
      key_pointers.push_back(key_caches.back().data());
      value_pointers.push_back(value_caches.back().data());
      const int64_t first = int64_t{query_start[s]} * slot_width;
      const int64_t last = int64_t{query_start[s + 1]} * slot_width;
      std::copy(keys.begin() + first, keys.begin() + last, key_cache.begin() + cached * slot_width);
      std::copy(values.begin() + first, values.begin() + last,
                value_cache.begin() + cached * slot_width);
      expected_keys.push_back(std::move(key_cache));
      expected_values.push_back(std::move(value_cache));
    }
    const DeviceBuffer key_pointer_array = DeviceBuffer::from_pointers(key_pointers);
    const DeviceBuffer value_pointer_array = DeviceBuffer::from_pointers(value_pointers);
    const DeviceBuffer device_keys = DeviceBuffer::from(dtype, keys);
    const DeviceBuffer device_values = DeviceBuffer::from(dtype, values);
    const DeviceBuffer device_queries = DeviceBuffer::from(dtype, queries);
    DeviceBuffer out(dtype, num_tokens * row_width);
    out.poison();

    kernels::write_contiguous_kv(dtype, device_keys.data(), device_values.data(),
                                 key_pointer_array.as<void*>(), value_pointer_array.as<void*>(),
                                 batch, heads, nullptr);
    kernels::naive_attention(dtype, device_queries.data(), key_pointer_array.as<void*>(),
                             value_pointer_array.as<void*>(), batch, heads, out.data(), nullptr);
    const std::vector<float> actual = out.download();

    std::vector<float> expected(static_cast<size_t>(num_tokens * row_width), kNaN);
    CpuBackend cpu;
    for (int s = 0; s < num_seqs; ++s) {
      SCOPED_TRACE("sequence " + std::to_string(s));
      const auto [cached, fresh] = shape.sequences[s];
      const int64_t used = int64_t{cached + fresh} * slot_width;
      const std::vector<float> key_cache = key_caches[s].download();
      const std::vector<float> value_cache = value_caches[s].download();
      EXPECT_TRUE(all_close(
          std::vector<float>(key_cache.begin(), key_cache.begin() + used),
          std::vector<float>(expected_keys[s].begin(), expected_keys[s].begin() + used), 0.0, 0.0));
      EXPECT_TRUE(all_close(
          std::vector<float>(value_cache.begin(), value_cache.begin() + used),
          std::vector<float>(expected_values[s].begin(), expected_values[s].begin() + used), 0.0,
          0.0));
      EXPECT_EQ(count_not_nan(key_cache, used, key_cache.size()), 0) << "written past the end";
      EXPECT_EQ(count_not_nan(value_cache, used, value_cache.size()), 0);
      if (fresh == 0) continue;

      ContiguousKvCache cache;
      cache.capacity = capacities[s];
      cache.length = cached + fresh;
      cache.keys.push_back(Tensor::zeros({capacities[s], shape.num_kv_heads, shape.head_dim}));
      cache.values.push_back(Tensor::zeros({capacities[s], shape.num_kv_heads, shape.head_dim}));
      std::copy_n(expected_keys[s].begin(), used, cache.keys[0].f32());
      std::copy_n(expected_values[s].begin(), used, cache.values[0].f32());
      Tensor sequence_queries = Tensor::zeros({fresh, shape.num_heads, shape.head_dim});
      std::copy_n(queries.begin() + int64_t{query_start[s]} * row_width, fresh * row_width,
                  sequence_queries.f32());
      Tensor sequence_out = Tensor::zeros({fresh, row_width});
      cpu.attention(sequence_queries, cache, 0, cached, sequence_out);
      std::copy_n(sequence_out.f32(), fresh * row_width,
                  expected.begin() + int64_t{query_start[s]} * row_width);
    }
    EXPECT_TRUE(
        all_close(actual, expected, testing::default_atol(dtype), testing::default_rtol(dtype)));
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, NaiveAttention, ::testing::ValuesIn(naive_shapes()),
                         [](const ::testing::TestParamInfo<NaiveShape>& info) {
                           return std::string(info.param.name);
                         });

TEST(NaiveAttentionLimits, ContextBeyondSharedMemoryIsAnError) {
  SERVELAB_REQUIRE_GPU();
  const DeviceBuffer device_ints = DeviceBuffer::from_ints({0, 1, 1});
  const DeviceBuffer buffer(DType::kF32, 64);
  kernels::PackedBatch batch;
  batch.query_start = device_ints.as<int32_t>();
  batch.context_lens = device_ints.as<int32_t>();
  batch.num_seqs = 1;
  batch.num_tokens = 1;
  batch.max_query_len = 1;
  batch.max_context_len = 1 << 24;  // 64 MiB of scores
  const void* const* caches = reinterpret_cast<const void* const*>(buffer.data());
  expect_error_mentioning(
      [&] {
        kernels::naive_attention(DType::kF32, buffer.data(), caches, caches, batch, {1, 1, 8, 1.0f},
                                 buffer.data(), nullptr);
      },
      "bytes of shared memory");
}

// ---- paged KV-cache writes and block copies ---------------------------------------------------

struct WritePagedShape {
  const char* name;
  int head_dim;
  int num_kv_heads;
  int block_size;
  int num_tokens;
};

std::ostream& operator<<(std::ostream& out, const WritePagedShape& shape) {
  return out << shape.name;
}

class WritePagedKv : public ::testing::TestWithParam<WritePagedShape> {};

// Tokens go to shuffled slots, every fifth one is padding (slot -1); every other slot keeps its
// old (random) contents. A copy is exact.
TEST_P(WritePagedKv, WritesEachTokenToItsSlotAndNothingElse) {
  SERVELAB_REQUIRE_GPU();
  const WritePagedShape& shape = GetParam();
  const int64_t slot_width = int64_t{shape.num_kv_heads} * shape.head_dim;
  const int num_blocks = (shape.num_tokens + shape.block_size - 1) / shape.block_size + 2;
  const int64_t slots = int64_t{num_blocks} * shape.block_size;
  std::vector<int32_t> all_slots(static_cast<size_t>(slots));
  std::iota(all_slots.begin(), all_slots.end(), 0);
  std::mt19937_64 rng(42);
  std::shuffle(all_slots.begin(), all_slots.end(), rng);
  std::vector<int32_t> slot_mapping(all_slots.begin(), all_slots.begin() + shape.num_tokens);
  for (size_t t = 3; t < slot_mapping.size(); t += 5) slot_mapping[t] = -1;
  const DeviceBuffer device_slots = DeviceBuffer::from_ints(slot_mapping);
  const kernels::HeadShape heads{shape.num_kv_heads, shape.num_kv_heads, shape.head_dim, 1.0f};

  for (DType dtype : kDtypes) {
    SCOPED_TRACE(dtype_name(dtype));
    const std::vector<float> keys =
        testing::round_to(dtype, testing::random_values(shape.num_tokens * slot_width, 1));
    const std::vector<float> values =
        testing::round_to(dtype, testing::random_values(shape.num_tokens * slot_width, 2));
    std::vector<float> key_cache =
        testing::round_to(dtype, testing::random_values(slots * slot_width, 3));
    std::vector<float> value_cache =
        testing::round_to(dtype, testing::random_values(slots * slot_width, 4));
    DeviceBuffer device_key_cache = DeviceBuffer::from(dtype, key_cache);
    DeviceBuffer device_value_cache = DeviceBuffer::from(dtype, value_cache);
    const DeviceBuffer device_keys = DeviceBuffer::from(dtype, keys);
    const DeviceBuffer device_values = DeviceBuffer::from(dtype, values);

    kernels::write_paged_kv(dtype, device_keys.data(), device_values.data(),
                            device_slots.as<int32_t>(), shape.num_tokens, device_key_cache.data(),
                            device_value_cache.data(), shape.block_size, heads, nullptr);
    cpu::write_paged_kv(keys.data(), values.data(), slot_mapping.data(), shape.num_tokens,
                        shape.num_kv_heads, shape.head_dim, key_cache.data(), value_cache.data());
    EXPECT_TRUE(all_close(device_key_cache.download(), key_cache, 0.0, 0.0));
    EXPECT_TRUE(all_close(device_value_cache.download(), value_cache, 0.0, 0.0));
  }
}

// Head_dim 3 makes rows of 6 or 12 bytes: the element-wise path instead of 16-byte units.
INSTANTIATE_TEST_SUITE_P(
    Shapes, WritePagedKv,
    ::testing::Values(WritePagedShape{"Dim128_Kv8_Block16", 128, 8, 16, 37},
                      WritePagedShape{"Dim40_Kv2_Block32", 40, 2, 32, 70},
                      WritePagedShape{"Dim64_Kv1_Block8_OneToken", 64, 1, 8, 1},
                      WritePagedShape{"Dim3_Kv1_Block4_ElementPath", 3, 1, 4, 10}),
    [](const ::testing::TestParamInfo<WritePagedShape>& info) {
      return std::string(info.param.name);
    });

class CopyBlocks : public ::testing::TestWithParam<int64_t> {};

// Pairs copy one source to two destinations and chain nothing (a copy's source is never another
// copy's destination, as the block manager guarantees); every layer, keys and values.
TEST_P(CopyBlocks, CopiesEveryPairInEveryLayerAndNothingElse) {
  SERVELAB_REQUIRE_GPU();
  const int64_t block_elements = GetParam();
  const int num_layers = 3, num_blocks = 10;
  const std::vector<int32_t> pairs = {2, 5, 2, 7, 0, 9, 8, 1};
  const DeviceBuffer device_pairs = DeviceBuffer::from_ints(pairs);
  for (DType dtype : kDtypes) {
    SCOPED_TRACE(dtype_name(dtype));
    std::vector<std::vector<float>> expected_keys, expected_values;
    std::vector<DeviceBuffer> key_caches, value_caches;
    std::vector<void*> key_pointers, value_pointers;
    for (int layer = 0; layer < num_layers; ++layer) {
      std::vector<float> keys =
          testing::round_to(dtype, testing::random_values(num_blocks * block_elements, 10 + layer));
      std::vector<float> values =
          testing::round_to(dtype, testing::random_values(num_blocks * block_elements, 20 + layer));
      key_caches.push_back(DeviceBuffer::from(dtype, keys));
      value_caches.push_back(DeviceBuffer::from(dtype, values));
      key_pointers.push_back(key_caches.back().data());
      value_pointers.push_back(value_caches.back().data());
      for (size_t i = 0; i < pairs.size(); i += 2) {
        std::copy_n(keys.begin() + pairs[i] * block_elements, block_elements,
                    keys.begin() + pairs[i + 1] * block_elements);
        std::copy_n(values.begin() + pairs[i] * block_elements, block_elements,
                    values.begin() + pairs[i + 1] * block_elements);
      }
      expected_keys.push_back(std::move(keys));
      expected_values.push_back(std::move(values));
    }
    const DeviceBuffer key_pointer_array = DeviceBuffer::from_pointers(key_pointers);
    const DeviceBuffer value_pointer_array = DeviceBuffer::from_pointers(value_pointers);
    kernels::copy_blocks(dtype, key_pointer_array.as<void*>(), value_pointer_array.as<void*>(),
                         num_layers, device_pairs.as<int32_t>(), static_cast<int>(pairs.size() / 2),
                         block_elements, nullptr);
    for (int layer = 0; layer < num_layers; ++layer) {
      SCOPED_TRACE("layer " + std::to_string(layer));
      EXPECT_TRUE(all_close(key_caches[layer].download(), expected_keys[layer], 0.0, 0.0));
      EXPECT_TRUE(all_close(value_caches[layer].download(), expected_values[layer], 0.0, 0.0));
    }
  }
}

// 16 tokens * 2 KV heads * 64 (16-byte units) and 15 elements (the element-wise path).
INSTANTIATE_TEST_SUITE_P(BlockSizes, CopyBlocks, ::testing::Values(16 * 2 * 64, 15),
                         [](const ::testing::TestParamInfo<int64_t>& info) {
                           return "Elements" + std::to_string(info.param);
                         });

// ---- argument checks (no GPU needed: the launchers check before touching the device) -----------

// Stand-ins for device pointers: never dereferenced, 16-byte aligned, non-null.
alignas(16) char fake_memory[256];
void* const kFake = fake_memory;
const int32_t* const kFakeInts = reinterpret_cast<const int32_t*>(fake_memory);

kernels::PagedCache fake_cache(int blocks_per_seq, int block_size) {
  kernels::PagedCache cache;
  cache.key_cache = kFake;
  cache.value_cache = kFake;
  cache.block_tables = kFakeInts;
  cache.blocks_per_seq = blocks_per_seq;
  cache.block_size = block_size;
  return cache;
}

void decode_v1(const kernels::HeadShape& heads, int max_context_len = 64) {
  kernels::paged_attention_decode(DType::kBF16, kFake, fake_cache(4, 16), kFakeInts, nullptr, 2,
                                  max_context_len, heads, kFake, nullptr);
}

void decode_split(const kernels::HeadShape& heads, int partition_size = 0,
                  int64_t workspace_bytes = int64_t{1} << 40, int max_context_len = 64) {
  kernels::paged_attention_decode_split(DType::kBF16, kFake, fake_cache(4, 16), kFakeInts, nullptr,
                                        2, max_context_len, partition_size, heads, kFake,
                                        workspace_bytes, kFake, nullptr);
}

TEST(AttentionArgumentChecks, DecodeRejectsHeadDimNotAMultipleOf8) {
  expect_error_mentioning([] { decode_v1({8, 2, 36, 1.0f}); }, "head_dim is 36");
  expect_error_mentioning([] { decode_split({8, 2, 36, 1.0f}); }, "head_dim is 36");
}

TEST(AttentionArgumentChecks, DecodeRejectsHeadDimAbove256) {
  expect_error_mentioning([] { decode_v1({8, 2, 264, 1.0f}); }, "head_dim is 264");
  expect_error_mentioning([] { decode_split({8, 2, 264, 1.0f}); }, "head_dim is 264");
}

TEST(AttentionArgumentChecks, DecodeRejectsQueryHeadsNotSharedEvenlyByKvHeads) {
  expect_error_mentioning([] { decode_v1({6, 4, 64, 1.0f}); }, "cannot be shared evenly");
  expect_error_mentioning([] { decode_split({6, 4, 64, 1.0f}); }, "cannot be shared evenly");
}

TEST(AttentionArgumentChecks, DecodeRejectsAContextLongerThanTheBlockTable) {
  // 4 blocks of 16 tokens hold 64 positions.
  expect_error_mentioning([] { decode_v1({8, 2, 64, 1.0f}, 65); }, "does not fit a block table");
  expect_error_mentioning(
      [] {
        decode_split({8, 2, 64, 1.0f}, 0, int64_t{1} << 40, 65);
      },
      "does not fit a block table");
}

TEST(AttentionArgumentChecks, SplitRejectsAPartitionThatIsNotWholeBlocks) {
  expect_error_mentioning(
      [] {
        decode_split({8, 2, 64, 1.0f}, 24);
      },
      "is not a multiple of the block size");
}

TEST(AttentionArgumentChecks, SplitRejectsAWorkspaceSmallerThanItAskedFor) {
  const kernels::HeadShape heads{8, 2, 64, 1.0f};
  const int64_t needed = kernels::paged_attention_split_workspace(2, 64, 16, heads);
  expect_error_mentioning([&] { decode_split(heads, 16, needed - 1); }, "the workspace has");
}

TEST(AttentionArgumentChecks, SplitWorkspaceHoldsEveryPartitionsMaxSumAndOutput) {
  // 2 sequences * 8 heads * ceil(1000 / 256) = 4 partitions * (64 outputs + max + sum) floats.
  EXPECT_EQ(kernels::paged_attention_split_workspace(2, 1000, 256, {8, 2, 64, 1.0f}),
            int64_t{2} * 8 * 4 * (64 + 2) * 4);
  // The automatic size is never below 64 tokens, so it never needs more than 64 would.
  const int64_t automatic = kernels::paged_attention_split_workspace(2, 1000, 0, {8, 2, 64, 1.0f});
  EXPECT_GT(automatic, 0);
  EXPECT_LE(automatic, int64_t{2} * 8 * 16 * (64 + 2) * 4);
}

TEST(AttentionArgumentChecks, NaiveAttentionRejectsQueryHeadsNotSharedEvenlyByKvHeads) {
  kernels::PackedBatch batch;
  batch.query_start = kFakeInts;
  batch.context_lens = kFakeInts;
  batch.num_seqs = 1;
  batch.num_tokens = 1;
  batch.max_query_len = 1;
  batch.max_context_len = 8;
  const void* const* caches = reinterpret_cast<const void* const*>(fake_memory);
  void* const* writable = reinterpret_cast<void* const*>(fake_memory);
  expect_error_mentioning(
      [&] {
        kernels::naive_attention(DType::kF16, kFake, caches, caches, batch, {6, 4, 64, 1.0f}, kFake,
                                 nullptr);
      },
      "cannot be shared evenly");
  expect_error_mentioning(
      [&] {
        kernels::write_contiguous_kv(DType::kF16, kFake, kFake, writable, writable, batch,
                                     {6, 4, 64, 1.0f}, nullptr);
      },
      "cannot be shared evenly");
}

TEST(AttentionArgumentChecks, KvCacheKernelsRejectImpossibleSizes) {
  expect_error_mentioning(
      [] {
        kernels::write_paged_kv(DType::kF16, kFake, kFake, kFakeInts, 4, kFake, kFake, 0,
                                {2, 2, 64, 1.0f}, nullptr);
      },
      "block_size is 0");
  void* const* caches = reinterpret_cast<void* const*>(fake_memory);
  expect_error_mentioning(
      [&] { kernels::copy_blocks(DType::kF16, caches, caches, 2, kFakeInts, 1, 0, nullptr); },
      "block_elements is 0");
  expect_error_mentioning(
      [&] { kernels::copy_blocks(DType::kF16, caches, caches, 2, kFakeInts, -1, 64, nullptr); },
      "num_pairs is -1");
}

TEST(AttentionArgumentChecks, IntegerDtypeIsRejected) {
  expect_error_mentioning(
      [] {
        kernels::paged_attention_decode(DType::kI32, kFake, fake_cache(4, 16), kFakeInts, nullptr,
                                        2, 64, {8, 2, 64, 1.0f}, kFake, nullptr);
      },
      "dtype must be");
  expect_error_mentioning(
      [] {
        kernels::write_paged_kv(DType::kI32, kFake, kFake, kFakeInts, 4, kFake, kFake, 16,
                                {2, 2, 64, 1.0f}, nullptr);
      },
      "dtype must be");
}

}  // namespace
}  // namespace servelab
