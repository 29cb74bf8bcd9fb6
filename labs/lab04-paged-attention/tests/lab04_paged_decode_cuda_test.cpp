// Lab 04, part lab04-paged-decode-cuda: kernels::paged_attention_decode (version 1) in
// kernels/paged_attention.cu, on the same cases as the CPU part (lab04_paged_decode_cases.h),
// in fp32, fp16 and bf16. Every test skips where there is no CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/dtype.h"
#include "kernels/kernel_test_helpers.h"
#include "kernels/kernels.h"
#include "lab04_paged_decode_cases.h"

namespace servelab::lab04 {
namespace {

using testing::DeviceBuffer;

class Lab04PagedDecodeCuda : public ::testing::TestWithParam<PagedDecodeCase> {};

// The whole batch in one launch, in each dtype. The inputs are rounded to the dtype before the
// reference sees them, so the only differences left are the kernel's fp32 arithmetic and the one
// rounding of its output (default_atol / default_rtol). Output rows that belong to no sequence
// must keep their poison: the kernel writes row seq_rows[s], not row s.
TEST_P(Lab04PagedDecodeCuda, MatchesTheReference) {
  SERVELAB_REQUIRE_GPU();
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    SCOPED_TRACE(dtype_name(dtype));
    PagedDecodeProblem p = make_problem(GetParam());
    p.queries = testing::round_to(dtype, p.queries);
    p.key_cache = testing::round_to(dtype, p.key_cache);
    p.value_cache = testing::round_to(dtype, p.value_cache);
    const std::vector<double> expected = reference_decode(p);

    DeviceBuffer queries = DeviceBuffer::from(dtype, p.queries);
    DeviceBuffer key_cache = DeviceBuffer::from(dtype, p.key_cache);
    DeviceBuffer value_cache = DeviceBuffer::from(dtype, p.value_cache);
    DeviceBuffer block_tables = DeviceBuffer::from_ints(p.block_tables);
    DeviceBuffer context_lens = DeviceBuffer::from_ints(p.context_lens);
    DeviceBuffer query_rows = DeviceBuffer::from_ints(p.query_rows);
    DeviceBuffer out(dtype, p.num_query_rows * p.row_width());
    out.poison();

    kernels::PagedCache cache;
    cache.key_cache = key_cache.data();
    cache.value_cache = value_cache.data();
    cache.block_tables = block_tables.as<int32_t>();
    cache.blocks_per_seq = p.blocks_per_seq;
    cache.block_size = p.block_size;
    const kernels::HeadShape heads{p.num_heads, p.num_kv_heads, p.head_dim, p.scale};
    // Scattered cases pass seq_rows; the others pass null (row s), the common decode batch. The
    // bound on context lengths is what the block tables can hold, not the exact maximum: an
    // engine that replays a CUDA graph sizes launches from such a bound.
    const bool scattered = GetParam().scattered_query_rows;
    kernels::paged_attention_decode(dtype, queries.data(), cache, context_lens.as<int32_t>(),
                                    scattered ? query_rows.as<int32_t>() : nullptr, p.num_seqs,
                                    p.blocks_per_seq * p.block_size, heads, out.data(), nullptr);
    const std::vector<float> actual = out.download();

    const double atol = testing::default_atol(dtype), rtol = testing::default_rtol(dtype);
    std::vector<bool> written(static_cast<size_t>(p.num_query_rows), false);
    for (int s = 0; s < p.num_seqs; ++s) {
      const int row = scattered ? p.query_rows[s] : s;
      written[row] = true;
      EXPECT_TRUE(row_matches(p, s, &actual[row * p.row_width()], expected, atol, rtol));
    }
    for (int row = 0; row < p.num_query_rows; ++row) {
      if (written[row]) continue;
      int overwritten = 0;
      for (int64_t i = 0; i < p.row_width(); ++i)
        overwritten += !std::isnan(actual[row * p.row_width() + i]);
      EXPECT_EQ(overwritten, 0) << "output row " << row << " belongs to no sequence";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, Lab04PagedDecodeCuda, ::testing::ValuesIn(paged_decode_cases()));

}  // namespace
}  // namespace servelab::lab04
