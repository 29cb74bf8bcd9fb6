// kernels::prefill_attention against the CPU reference (cpu::write_paged_kv of the new tokens,
// then cpu::paged_attention per sequence) on random inputs rounded to the dtype first. Outputs and
// every cache slot the test did not fill are poisoned (NaN), so a row the kernel forgot, a row it
// should have left alone, a stray cache write or a read of a slot outside the context all fail.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/paged_attention.h"
#include "common/error.h"
#include "kernels/kernel_test_helpers.h"
#include "kernels/kernels.h"

namespace servelab {
namespace {

using testing::all_close;
using testing::DeviceBuffer;
using testing::random_values;
using testing::round_to;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct SequenceSpec {
  int context_len = 0;  ///< tokens after this step
  int new_tokens = 0;   ///< the last new_tokens of them; the others are a cached prefix
  bool listed = true;   ///< in seq_ids (an unlisted sequence must be left alone)
};

struct PrefillCase {
  std::string name;
  DType dtype = DType::kF32;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_size = 16;
  std::vector<SequenceSpec> sequences;
  bool shuffle_blocks = true;  ///< physical blocks in random order, not 0, 1, 2...
  bool misaligned = false;     ///< every tensor one element past a 16-byte boundary
};

/// What GoogleTest prints for a failing case's parameter.
void PrintTo(const PrefillCase& test_case, std::ostream* os) {
  *os << test_case.name;
}

std::string dtype_label(DType dtype) {
  return dtype == DType::kF32 ? "F32" : dtype == DType::kF16 ? "F16" : "BF16";
}

/// The tensor-core path rounds the softmax weights to the dtype before P·V (as FlashAttention
/// does): one more rounding than the fp32 reference, of at most u·Σ p·|v| with u the dtype's unit
/// roundoff, hence an atol above the element-wise default for F16 and BF16.
double test_atol(DType dtype) {
  return dtype == DType::kF32 ? 1e-5 : dtype == DType::kF16 ? 2e-3 : 2e-2;
}

/// Splits a poisoned output: the elements the reference wrote (to compare), and a count of
/// elements it left poisoned that the kernel wrote anyway.
struct SplitOutput {
  std::vector<float> actual_written, expected_written;
  int64_t written_but_should_not_be = 0;
};
SplitOutput split_poisoned(const std::vector<float>& actual, const std::vector<float>& expected) {
  SplitOutput split;
  for (size_t i = 0; i < expected.size(); ++i) {
    if (std::isnan(expected[i])) {
      if (!std::isnan(actual[i])) ++split.written_but_should_not_be;
    } else {
      split.actual_written.push_back(actual[i]);
      split.expected_written.push_back(expected[i]);
    }
  }
  return split;
}

/// Cache contents must match exactly (a copy of values already rounded to the dtype), NaN where
/// nothing was written.
::testing::AssertionResult cache_equal(const std::vector<float>& actual,
                                       const std::vector<float>& expected, const char* what) {
  int64_t bad = 0;
  std::string first;
  for (size_t i = 0; i < expected.size(); ++i) {
    const bool ok = std::isnan(expected[i]) ? std::isnan(actual[i]) : actual[i] == expected[i];
    if (!ok && bad++ < 5) {
      first += " [" + std::to_string(i) + "] " + std::to_string(actual[i]) + " vs " +
               std::to_string(expected[i]) + ";";
    }
  }
  if (bad > 0) {
    return ::testing::AssertionFailure()
           << what << ": " << bad << " of " << expected.size() << " elements differ:" << first;
  }
  return ::testing::AssertionSuccess();
}

class PrefillAttentionTest : public ::testing::TestWithParam<PrefillCase> {};

TEST_P(PrefillAttentionTest, MatchesCpuReferenceAndWritesNewTokensToCache) {
  SERVELAB_REQUIRE_GPU();
  const PrefillCase& test_case = GetParam();
  const DType dtype = test_case.dtype;
  const int num_seqs = static_cast<int>(test_case.sequences.size());
  const int block_size = test_case.block_size;
  const int64_t query_row = static_cast<int64_t>(test_case.num_heads) * test_case.head_dim;
  const int64_t kv_row = static_cast<int64_t>(test_case.num_kv_heads) * test_case.head_dim;
  std::mt19937_64 rng(std::hash<std::string>{}(test_case.name) + static_cast<int>(dtype));

  // The packed batch.
  std::vector<int32_t> query_start(num_seqs + 1, 0), context_lens(num_seqs), seq_ids;
  int max_query_len = 0, max_context_len = 0, blocks_per_seq = 1;
  for (int s = 0; s < num_seqs; ++s) {
    const SequenceSpec& spec = test_case.sequences[s];
    query_start[s + 1] = query_start[s] + spec.new_tokens;
    context_lens[s] = spec.context_len;
    max_query_len = std::max(max_query_len, spec.new_tokens);
    max_context_len = std::max(max_context_len, spec.context_len);
    blocks_per_seq = std::max(blocks_per_seq, (spec.context_len + block_size - 1) / block_size);
    if (spec.listed) seq_ids.push_back(s);
  }
  std::shuffle(seq_ids.begin(), seq_ids.end(), rng);  // the listing order must not matter
  const int64_t num_tokens = query_start.back();

  // Block tables: each sequence owns the blocks its context needs; table entries past them, and
  // a few blocks nobody owns, point at poisoned spare blocks (a read from one would be NaN).
  const int num_blocks = num_seqs * blocks_per_seq + 3;
  std::vector<int32_t> physical(num_blocks);
  std::iota(physical.begin(), physical.end(), 0);
  if (test_case.shuffle_blocks) std::shuffle(physical.begin(), physical.end(), rng);
  std::vector<int32_t> block_tables(static_cast<size_t>(num_seqs) * blocks_per_seq);
  int next_block = 0;
  for (int s = 0; s < num_seqs; ++s) {
    const int needed = (test_case.sequences[s].context_len + block_size - 1) / block_size;
    for (int b = 0; b < blocks_per_seq; ++b) {
      block_tables[s * blocks_per_seq + b] = b < needed ? physical[next_block++] : physical.back();
    }
  }
  auto slot_of = [&](int s, int position) {
    return block_tables[s * blocks_per_seq + position / block_size] * block_size +
           position % block_size;
  };

  const int64_t cache_elements = static_cast<int64_t>(num_blocks) * block_size * kv_row;
  const uint64_t seed = rng();
  const std::vector<float> queries = round_to(dtype, random_values(num_tokens * query_row, seed));
  const std::vector<float> keys = round_to(dtype, random_values(num_tokens * kv_row, seed + 1));
  const std::vector<float> values = round_to(dtype, random_values(num_tokens * kv_row, seed + 2));

  // The cache before the step: poisoned, except each sequence's cached prefix.
  std::vector<float> key_cache(cache_elements, kNaN), value_cache(cache_elements, kNaN);
  for (int s = 0; s < num_seqs; ++s) {
    const int prefix = test_case.sequences[s].context_len - test_case.sequences[s].new_tokens;
    if (prefix == 0) continue;
    std::vector<int32_t> slots(prefix);
    for (int p = 0; p < prefix; ++p) slots[p] = slot_of(s, p);
    const std::vector<float> prefix_keys =
        round_to(dtype, random_values(prefix * kv_row, seed + 3 + 2 * s));
    const std::vector<float> prefix_values =
        round_to(dtype, random_values(prefix * kv_row, seed + 4 + 2 * s));
    cpu::write_paged_kv(prefix_keys.data(), prefix_values.data(), slots.data(), prefix,
                        test_case.num_kv_heads, test_case.head_dim, key_cache.data(),
                        value_cache.data());
  }

  // The reference: listed sequences' new tokens written, then attention over the cache.
  std::vector<float> expected_key_cache = key_cache, expected_value_cache = value_cache;
  std::vector<float> expected_out(num_tokens * query_row, kNaN);
  const cpu::AttentionHeads cpu_heads{test_case.num_heads, test_case.num_kv_heads,
                                      test_case.head_dim,
                                      1.0f / std::sqrt(static_cast<float>(test_case.head_dim))};
  for (int s : seq_ids) {
    const SequenceSpec& spec = test_case.sequences[s];
    if (spec.new_tokens == 0) continue;
    const int prefix = spec.context_len - spec.new_tokens;
    std::vector<int32_t> slots(spec.new_tokens);
    for (int i = 0; i < spec.new_tokens; ++i) slots[i] = slot_of(s, prefix + i);
    cpu::write_paged_kv(keys.data() + query_start[s] * kv_row,
                        values.data() + query_start[s] * kv_row, slots.data(), spec.new_tokens,
                        test_case.num_kv_heads, test_case.head_dim, expected_key_cache.data(),
                        expected_value_cache.data());
    cpu::PagedSequenceView view;
    view.key_cache = expected_key_cache.data();
    view.value_cache = expected_value_cache.data();
    view.block_table = block_tables.data() + s * blocks_per_seq;
    view.block_size = block_size;
    view.context_len = spec.context_len;
    cpu::paged_attention(queries.data() + query_start[s] * query_row, spec.new_tokens, view,
                         cpu_heads, expected_out.data() + query_start[s] * query_row);
  }

  // The kernel. A misaligned case shifts every float tensor by one element (a NaN in front).
  const int64_t shift = test_case.misaligned ? 1 : 0;
  auto upload = [&](const std::vector<float>& host) {
    std::vector<float> shifted(shift, kNaN);
    shifted.insert(shifted.end(), host.begin(), host.end());
    return DeviceBuffer::from(dtype, shifted);
  };
  auto address = [&](const DeviceBuffer& buffer) -> void* {
    return static_cast<char*>(buffer.data()) + shift * dtype_size(dtype);
  };
  auto download = [&](const DeviceBuffer& buffer) {
    std::vector<float> host = buffer.download();
    host.erase(host.begin(), host.begin() + shift);
    return host;
  };
  DeviceBuffer device_queries = upload(queries);
  DeviceBuffer device_keys = upload(keys);
  DeviceBuffer device_values = upload(values);
  DeviceBuffer device_key_cache = upload(key_cache);
  DeviceBuffer device_value_cache = upload(value_cache);
  DeviceBuffer device_out(dtype, shift + num_tokens * query_row);
  device_out.poison();
  DeviceBuffer device_query_start = DeviceBuffer::from_ints(query_start);
  DeviceBuffer device_context_lens = DeviceBuffer::from_ints(context_lens);
  DeviceBuffer device_seq_ids =
      DeviceBuffer::from_ints(seq_ids.empty() ? std::vector<int32_t>{0} : seq_ids);
  DeviceBuffer device_block_tables = DeviceBuffer::from_ints(block_tables);

  kernels::PackedBatch batch;
  batch.query_start = device_query_start.as<int32_t>();
  batch.context_lens = device_context_lens.as<int32_t>();
  batch.num_seqs = num_seqs;
  batch.num_tokens = num_tokens;
  batch.max_query_len = max_query_len;
  batch.max_context_len = max_context_len;
  kernels::PagedCache cache;
  cache.key_cache = address(device_key_cache);
  cache.value_cache = address(device_value_cache);
  cache.block_tables = device_block_tables.as<int32_t>();
  cache.blocks_per_seq = blocks_per_seq;
  cache.block_size = block_size;
  kernels::HeadShape heads;
  heads.num_heads = test_case.num_heads;
  heads.num_kv_heads = test_case.num_kv_heads;
  heads.head_dim = test_case.head_dim;
  heads.scale = cpu_heads.scale;
  kernels::prefill_attention(dtype, address(device_queries), address(device_keys),
                             address(device_values), batch, device_seq_ids.as<int32_t>(),
                             static_cast<int>(seq_ids.size()), cache, address(device_key_cache),
                             address(device_value_cache), heads, address(device_out), nullptr);

  const SplitOutput out = split_poisoned(download(device_out), expected_out);
  EXPECT_EQ(out.written_but_should_not_be, 0) << "rows of unlisted sequences were written";
  EXPECT_TRUE(all_close(out.actual_written, out.expected_written, test_atol(dtype),
                        testing::default_rtol(dtype)));
  EXPECT_TRUE(cache_equal(download(device_key_cache), expected_key_cache, "key cache"));
  EXPECT_TRUE(cache_equal(download(device_value_cache), expected_value_cache, "value cache"));
}

/// The shapes of interest, each for the given dtype.
std::vector<PrefillCase> cases_for(DType dtype) {
  std::vector<PrefillCase> cases;
  auto add = [&](std::string name, int heads, int kv_heads, int head_dim, int block_size,
                 std::vector<SequenceSpec> sequences) {
    cases.push_back(PrefillCase{std::move(name) + "_" + dtype_label(dtype), dtype, heads, kv_heads,
                                head_dim, block_size, std::move(sequences), true, false});
  };
  add("OneToken", 4, 4, 64, 16, {{1, 1}});
  add("OneNewTokenAfterCachedPrefix", 8, 2, 128, 16, {{50, 1}});
  add("LengthNotAMultipleOfTileOrBlock_Gqa4_Dim128", 8, 2, 128, 16, {{77, 77}});
  add("Gqa1_Dim40", 4, 4, 40, 16, {{93, 93}});
  add("Gqa8_Dim64_Block8", 8, 1, 64, 8, {{100, 100}});
  add("Gqa4_Dim32_Block32", 4, 1, 32, 32, {{70, 70}});
  add("Dim256", 2, 1, 256, 16, {{45, 45}, {100, 30}});
  add("MixedBatchWithCachedPrefixes_Dim128_Block16", 8, 2, 128, 16,
      {{130, 130}, {300, 45}, {17, 1}, {64, 64}, {200, 129}, {33, 0}});
  add("MixedBatchWithCachedPrefixes_Dim64_Block8", 2, 2, 64, 8,
      {{65, 65}, {129, 64}, {5, 5}, {250, 3}});
  add("MixedBatchWithCachedPrefixes_Dim40_Block32_Gqa8", 8, 1, 40, 32,
      {{31, 31}, {97, 60}, {1, 1}, {160, 33}});
  add("ChunkedPrefillAfterLongPrefix_Dim128", 4, 1, 128, 16, {{1000, 150}});
  add("OnlyListedSequencesAreProcessed", 4, 2, 64, 16,
      {{90, 90, true}, {120, 40, false}, {65, 65, true}, {40, 40, false}});
  add("OnlyListedSequencesAreProcessed_Dim40", 4, 2, 40, 16,
      {{90, 90, false}, {120, 40, true}, {65, 65, false}});
  // Pointers off a 16-byte boundary: the launcher must fall back to element-wise copies and to
  // v1 (cp.async and the 16-byte stores of v2 need that alignment).
  cases.push_back(PrefillCase{"MisalignedPointersFallBackToSimt_" + dtype_label(dtype),
                              dtype,
                              4,
                              2,
                              64,
                              16,
                              {{70, 50}, {33, 33}},
                              true,
                              true});
  return cases;
}

std::vector<PrefillCase> all_cases() {
  std::vector<PrefillCase> cases;
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (PrefillCase& test_case : cases_for(dtype)) cases.push_back(std::move(test_case));
  }
  // One long prompt, beyond any tile count a short test reaches. Few heads: the CPU reference is
  // O(T² · heads · head_dim).
  for (DType dtype : {DType::kBF16, DType::kF32}) {
    cases.push_back(PrefillCase{
        "Long4097Tokens_" + dtype_label(dtype), dtype, 2, 1, 64, 16, {{4097, 4097}}, true, false});
  }
  // Identity block tables too (blocks 0, 1, 2... in order).
  cases.push_back(PrefillCase{
      "InOrderBlocks_BF16", DType::kBF16, 4, 2, 128, 16, {{40, 40}, {90, 20}}, false, false});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Shapes, PrefillAttentionTest, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<PrefillCase>& info) {
                           return info.param.name;
                         });

// ---- argument checks: the launcher throws before it touches the device (no GPU needed) --------

/// A well-formed call whose pointers are never dereferenced (each test breaks one thing, and the
/// launcher must throw before launching anything).
struct FakeCall {
  int32_t fake_ints[4] = {};
  float fake_floats[4] = {};
  void* key_cache = &fake_floats[0];
  void* value_cache = &fake_floats[1];
  void* out = &fake_floats[2];
  kernels::PackedBatch batch;
  kernels::PagedCache cache;
  kernels::HeadShape heads;
  const int32_t* seq_ids = &fake_ints[0];
  int num_prefill_seqs = 1;
  DType dtype = DType::kBF16;

  FakeCall() {
    batch.query_start = &fake_ints[1];
    batch.context_lens = &fake_ints[2];
    batch.num_seqs = 1;
    batch.num_tokens = 10;
    batch.max_query_len = 10;
    batch.max_context_len = 10;
    cache.key_cache = key_cache;
    cache.value_cache = value_cache;
    cache.block_tables = &fake_ints[3];
    cache.blocks_per_seq = 1;
    cache.block_size = 16;
    heads.num_heads = 4;
    heads.num_kv_heads = 2;
    heads.head_dim = 64;
    heads.scale = 0.125f;
  }
  void run() const {
    kernels::prefill_attention(dtype, &fake_floats[2], &fake_floats[3], &fake_floats[3], batch,
                               seq_ids, num_prefill_seqs, cache, key_cache, value_cache, heads, out,
                               nullptr);
  }
};

/// The call throws servelab::Error whose message mentions `needle`.
::testing::AssertionResult throws_mentioning(const FakeCall& call, const std::string& needle) {
  try {
    call.run();
  } catch (const Error& error) {
    if (std::string(error.what()).find(needle) != std::string::npos) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure()
           << "message '" << error.what() << "' lacks '" << needle << "'";
  }
  return ::testing::AssertionFailure() << "no servelab::Error thrown";
}

TEST(PrefillAttentionArguments, RejectsIntegerDtype) {
  FakeCall call;
  call.dtype = DType::kI32;
  EXPECT_TRUE(throws_mentioning(call, "dtype I32"));
}

TEST(PrefillAttentionArguments, RejectsHeadDimNotAMultipleOfEight) {
  FakeCall call;
  call.heads.head_dim = 36;
  EXPECT_TRUE(throws_mentioning(call, "head_dim 36"));
  call.heads.head_dim = 264;
  EXPECT_TRUE(throws_mentioning(call, "head_dim 264"));
}

TEST(PrefillAttentionArguments, RejectsQueryHeadsNotAMultipleOfKvHeads) {
  FakeCall call;
  call.heads.num_heads = 6;
  call.heads.num_kv_heads = 4;
  EXPECT_TRUE(throws_mentioning(call, "6 query heads cannot share 4 KV heads"));
}

TEST(PrefillAttentionArguments, RejectsNonPositiveScale) {
  FakeCall call;
  call.heads.scale = 0.0f;
  EXPECT_TRUE(throws_mentioning(call, "scale"));
}

TEST(PrefillAttentionArguments, RejectsMoreListedSequencesThanTheBatchHolds) {
  FakeCall call;
  call.num_prefill_seqs = 2;
  EXPECT_TRUE(throws_mentioning(call, "num_prefill_seqs 2"));
}

TEST(PrefillAttentionArguments, RejectsQueryLengthBoundAboveContextBound) {
  FakeCall call;
  call.batch.max_query_len = 11;
  EXPECT_TRUE(throws_mentioning(call, "max_query_len 11"));
}

TEST(PrefillAttentionArguments, RejectsContextLongerThanTheBlockTableHolds) {
  FakeCall call;
  call.batch.max_context_len = 17;  // one block of 16 tokens
  EXPECT_TRUE(throws_mentioning(call, "max_context_len 17 does not fit"));
}

TEST(PrefillAttentionArguments, RejectsCacheViewThatIsNotTheWrittenCache) {
  FakeCall call;
  call.cache.key_cache = &call.fake_floats[3];
  EXPECT_TRUE(throws_mentioning(call, "writable versions"));
}

TEST(PrefillAttentionArguments, RejectsNullPointers) {
  FakeCall call;
  call.cache.block_tables = nullptr;
  EXPECT_TRUE(throws_mentioning(call, "null pointer"));
}

TEST(PrefillAttentionArguments, NoListedSequenceLaunchesNothing) {
  FakeCall call;
  call.num_prefill_seqs = 0;
  call.seq_ids = nullptr;
  EXPECT_NO_THROW(call.run());
}

}  // namespace
}  // namespace servelab
