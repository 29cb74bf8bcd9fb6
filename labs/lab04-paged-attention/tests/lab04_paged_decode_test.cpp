// Lab 04, part lab04-paged-decode: cpu::paged_attention_decode in
// code/backend/cpu/paged_attention.cpp, graded on the shared cases of lab04_paged_decode_cases.h
// (the CUDA part, lab04-paged-decode-cuda, runs the same cases in
// lab04_paged_decode_cuda_test.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/paged_attention.h"
#include "lab04_paged_decode_cases.h"

namespace servelab::lab04 {
namespace {

class Lab04PagedDecode : public ::testing::TestWithParam<PagedDecodeCase> {};

// Every sequence of the case, one call each, against the double-precision reference. fp32
// against double: the only differences are fp32 rounding in the dot products and the sums.
TEST_P(Lab04PagedDecode, MatchesTheReference) {
  const PagedDecodeProblem p = make_problem(GetParam());
  const std::vector<double> expected = reference_decode(p);
  const cpu::AttentionHeads heads{p.num_heads, p.num_kv_heads, p.head_dim, p.scale};
  for (int s = 0; s < p.num_seqs; ++s) {
    cpu::PagedSequenceView sequence;
    sequence.key_cache = p.key_cache.data();
    sequence.value_cache = p.value_cache.data();
    sequence.block_table = &p.block_tables[s * p.blocks_per_seq];
    sequence.block_size = p.block_size;
    sequence.context_len = p.context_lens[s];
    // NaN to start with: an element the function forgets to write fails the comparison.
    std::vector<float> out(static_cast<size_t>(p.row_width()),
                           std::numeric_limits<float>::quiet_NaN());
    cpu::paged_attention_decode(&p.queries[p.query_rows[s] * p.row_width()], sequence, heads,
                                out.data());
    EXPECT_TRUE(row_matches(p, s, out.data(), expected, 1e-5, 1e-4));
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, Lab04PagedDecode, ::testing::ValuesIn(paged_decode_cases()));

}  // namespace
}  // namespace servelab::lab04
