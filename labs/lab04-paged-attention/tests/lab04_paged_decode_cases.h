// Lab 04's test cases and the answer they are graded against, shared by the CPU suite
// (Lab04PagedDecode) and the CUDA suite (Lab04PagedDecodeCuda) so that both parts face exactly
// the same shapes. Plain C++: no CUDA here, so the CPU suite builds without a CUDA toolkit.
//
// The reference is written in this file on purpose, in double precision and without calling
// cpu::paged_attention_decode: that function is the CPU part of the lab, so it cannot also be the
// judge. Every case packs several sequences into one paged cache whose blocks are handed out in a
// shuffled order, as a block manager that has been running for a while would hand them out.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <ostream>
#include <random>
#include <string>
#include <vector>

namespace servelab::lab04 {

/// One test case: a batch of sequences decoding one token each over a shared paged cache.
struct PagedDecodeCase {
  const char* name;                   ///< what the case is about; ctest names the test after it
  std::vector<int32_t> context_lens;  ///< one entry per sequence: tokens its query attends to
  int block_size = 16;
  int num_kv_heads = 2;
  int group = 1;  ///< query heads per KV head: 1 is multi-head attention, > 1 is GQA
  int head_dim = 64;
  /// Fill every cache slot that no sequence owns with values that ruin the result if read: NaN
  /// in the unused tail of each sequence's last block, huge values in the blocks nobody owns
  /// (which the padding entries of the block tables point at).
  bool poison_unused = false;
  /// Give the batch more query rows than sequences, in a shuffled order (seq_rows), as when the
  /// decode sequences sit among the rows of a mixed batch.
  bool scattered_query_rows = false;
};

/// How gtest prints a case; ctest then names each test after it
/// ("Shapes/Lab04PagedDecode.MatchesTheReference/LongContext4097").
inline std::ostream& operator<<(std::ostream& out, const PagedDecodeCase& c) {
  return out << c.name;
}

/// The shapes both suites run. Context lengths 1, 17, 100 and 4097 (one token; one block and a
/// bit; several blocks; a long context whose last block holds one token), block sizes 8 and 16,
/// GQA groups 1, 4 and 8, head_dim 40, 64 and 128.
inline const std::vector<PagedDecodeCase>& paged_decode_cases() {
  static const std::vector<PagedDecodeCase> cases = {
      // name, contexts, block_size, kv heads, group, head_dim, poison, scattered rows
      {"OneTokenOfContext", {1}, 16, 2, 4, 64},
      {"OneBlockAndOneToken", {17}, 16, 2, 1, 128},
      {"SmallBlocksAndAWideGroup", {17}, 8, 1, 8, 64},
      {"HundredTokensHeadDim40", {100}, 16, 2, 8, 40},
      {"HundredTokensMultiHeadSmallBlocks", {100}, 8, 4, 1, 128},
      {"ContextsThatFillTheirLastBlock", {16, 32, 8}, 8, 2, 4, 64},
      {"LongContext4097", {4097}, 16, 2, 4, 128},
      {"LongContext4097SmallBlocksHeadDim40", {4097}, 8, 1, 8, 40},
      {"BatchOfDifferentLengths", {100, 1, 17, 4097, 33}, 16, 2, 4, 64, false, true},
      {"NeverReadsSlotsPastTheContext", {17, 100, 5}, 16, 2, 4, 64, true},
      {"NeverReadsSlotsPastTheContextSmallBlocks", {9, 31, 4097}, 8, 1, 8, 128, true, true},
  };
  return cases;
}

/// A case made concrete: fp32 host arrays in the layouts of the lab's functions.
struct PagedDecodeProblem {
  int num_seqs = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_size = 0;
  float scale = 0.0f;
  int num_blocks = 0;
  int blocks_per_seq = 0;             ///< the row stride of block_tables
  int num_query_rows = 0;             ///< rows of `queries` (>= num_seqs)
  std::vector<int32_t> context_lens;  ///< [num_seqs]
  std::vector<int32_t> query_rows;    ///< [num_seqs]: the query row of each sequence
  std::vector<int32_t> block_tables;  ///< [num_seqs, blocks_per_seq], padded with unused blocks
  std::vector<float> queries;         ///< [num_query_rows, num_heads, head_dim]
  std::vector<float> key_cache;       ///< [num_blocks, block_size, num_kv_heads, head_dim]
  std::vector<float> value_cache;     ///< likewise

  int64_t row_width() const { return int64_t{num_heads} * head_dim; }
  int max_context_len() const {
    return *std::max_element(context_lens.begin(), context_lens.end());
  }
};

/// Builds the problem of a case, deterministically (the seed is fixed).
inline PagedDecodeProblem make_problem(const PagedDecodeCase& c) {
  PagedDecodeProblem p;
  p.num_seqs = static_cast<int>(c.context_lens.size());
  p.num_kv_heads = c.num_kv_heads;
  p.num_heads = c.num_kv_heads * c.group;
  p.head_dim = c.head_dim;
  p.block_size = c.block_size;
  p.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  p.context_lens = c.context_lens;
  std::mt19937_64 rng(20230904);

  // Blocks each sequence needs, plus three that nobody owns. Every table row gets at least one
  // padding entry past the blocks its sequence needs; padding points at an unowned block.
  const int spare_blocks = 3;
  int needed_total = 0;
  p.blocks_per_seq = 0;
  for (int32_t length : p.context_lens) {
    const int needed = (length + c.block_size - 1) / c.block_size;
    needed_total += needed;
    p.blocks_per_seq = std::max(p.blocks_per_seq, needed + 1);
  }
  p.num_blocks = needed_total + spare_blocks;
  std::vector<int32_t> physical(static_cast<size_t>(p.num_blocks));
  std::iota(physical.begin(), physical.end(), 0);
  std::shuffle(physical.begin(), physical.end(), rng);  // a fragmented pool: any order at all
  size_t next = 0;
  p.block_tables.assign(static_cast<size_t>(p.num_seqs) * p.blocks_per_seq, 0);
  for (int s = 0; s < p.num_seqs; ++s) {
    const int needed = (p.context_lens[s] + c.block_size - 1) / c.block_size;
    for (int b = 0; b < needed; ++b) p.block_tables[s * p.blocks_per_seq + b] = physical[next++];
  }
  const std::vector<int32_t> unowned(physical.begin() + needed_total, physical.end());
  for (int s = 0; s < p.num_seqs; ++s) {
    const int needed = (p.context_lens[s] + c.block_size - 1) / c.block_size;
    for (int b = needed; b < p.blocks_per_seq; ++b)
      p.block_tables[s * p.blocks_per_seq + b] = unowned[(s + b) % unowned.size()];
  }

  // Query rows: row s for sequence s, or a shuffled choice among twice as many rows.
  p.num_query_rows = c.scattered_query_rows ? 2 * p.num_seqs : p.num_seqs;
  std::vector<int32_t> rows(static_cast<size_t>(p.num_query_rows));
  std::iota(rows.begin(), rows.end(), 0);
  if (c.scattered_query_rows) std::shuffle(rows.begin(), rows.end(), rng);
  p.query_rows.assign(rows.begin(), rows.begin() + p.num_seqs);

  // Random values, never zeros. Queries a little larger than keys so that the softmax has some
  // peaks rather than being almost uniform.
  std::normal_distribution<float> normal(0.0f, 1.0f);
  p.queries.resize(static_cast<size_t>(p.num_query_rows) * p.row_width());
  for (float& x : p.queries) x = 1.5f * normal(rng);
  const int64_t token_width = int64_t{p.num_kv_heads} * p.head_dim;
  const int64_t cache_size = int64_t{p.num_blocks} * p.block_size * token_width;
  p.key_cache.resize(static_cast<size_t>(cache_size));
  p.value_cache.resize(static_cast<size_t>(cache_size));
  for (float& x : p.key_cache) x = normal(rng);
  for (float& x : p.value_cache) x = normal(rng);

  if (c.poison_unused) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    auto fill_slot = [&](int64_t slot, float key, float value) {
      std::fill_n(p.key_cache.begin() + slot * token_width, token_width, key);
      std::fill_n(p.value_cache.begin() + slot * token_width, token_width, value);
    };
    // The tail of each sequence's last block: NaN (0 · NaN is NaN, so even a zero weight shows).
    for (int s = 0; s < p.num_seqs; ++s) {
      const int length = p.context_lens[s];
      const int last = p.block_tables[s * p.blocks_per_seq + (length - 1) / c.block_size];
      for (int offset = (length - 1) % c.block_size + 1; offset < c.block_size; ++offset)
        fill_slot(int64_t{last} * c.block_size + offset, nan, nan);
    }
    // Blocks nobody owns: finite but huge, so a read of them takes over the softmax.
    for (int32_t block : unowned)
      for (int offset = 0; offset < c.block_size; ++offset)
        fill_slot(int64_t{block} * c.block_size + offset, 1000.0f, 1000.0f);
  }
  return p;
}

/// The answer, from the definition, in double precision:
///   out[s, h] = Σ_p softmax_p(scale · q[s, h] · k[s, p, h / group]) · v[s, p, h / group]
/// for p in [0, context_lens[s]), where k[s, p] sits in slot
/// block_tables[s][p / block_size] * block_size + p % block_size.
/// @return [num_seqs, num_heads * head_dim]: sequence s's row (not its query row).
inline std::vector<double> reference_decode(const PagedDecodeProblem& p) {
  const int group = p.num_heads / p.num_kv_heads;
  const int64_t token_width = int64_t{p.num_kv_heads} * p.head_dim;
  std::vector<double> out(static_cast<size_t>(p.num_seqs * p.row_width()), 0.0);
  for (int s = 0; s < p.num_seqs; ++s) {
    const int length = p.context_lens[s];
    // The slot of every position, looked up once.
    std::vector<int64_t> slots(static_cast<size_t>(length));
    for (int position = 0; position < length; ++position) {
      const int32_t block = p.block_tables[s * p.blocks_per_seq + position / p.block_size];
      slots[position] = int64_t{block} * p.block_size + position % p.block_size;
    }
    for (int h = 0; h < p.num_heads; ++h) {
      const float* q = &p.queries[(p.query_rows[s] * int64_t{p.num_heads} + h) * p.head_dim];
      const int64_t kv_offset = int64_t{h / group} * p.head_dim;
      std::vector<double> logits(static_cast<size_t>(length));
      for (int position = 0; position < length; ++position) {
        const float* k = &p.key_cache[slots[position] * token_width + kv_offset];
        double dot = 0.0;
        for (int d = 0; d < p.head_dim; ++d) dot += double{q[d]} * k[d];
        logits[position] = dot * p.scale;
      }
      const double largest = *std::max_element(logits.begin(), logits.end());
      double denominator = 0.0;
      for (double& logit : logits) denominator += (logit = std::exp(logit - largest));
      double* o = &out[s * p.row_width() + int64_t{h} * p.head_dim];
      for (int position = 0; position < length; ++position) {
        const float* v = &p.value_cache[slots[position] * token_width + kv_offset];
        const double weight = logits[position] / denominator;
        for (int d = 0; d < p.head_dim; ++d) o[d] += weight * v[d];
      }
    }
  }
  return out;
}

/// Compares sequence s's output row with the reference, element by element:
/// |actual - expected| <= atol + rtol·|expected|, and never NaN. On failure it says which
/// sequence, head and dimension differ, since that is what points at the bug.
inline ::testing::AssertionResult row_matches(const PagedDecodeProblem& p, int s,
                                              const float* actual,
                                              const std::vector<double>& expected, double atol,
                                              double rtol) {
  int bad = 0;
  std::string detail;
  for (int64_t i = 0; i < p.row_width(); ++i) {
    const double want = expected[s * p.row_width() + i];
    const double error = std::fabs(double{actual[i]} - want);
    if (std::isfinite(actual[i]) && error <= atol + rtol * std::fabs(want)) continue;
    if (bad++ < 4) {
      detail += "\n  head " + std::to_string(i / p.head_dim) + " dim " +
                std::to_string(i % p.head_dim) + ": got " + std::to_string(actual[i]) +
                ", expected " + std::to_string(want);
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "sequence " << s << " (context " << p.context_lens[s] << ", block size " << p.block_size
         << "): " << bad << " of " << p.row_width() << " values differ (atol " << atol << ", rtol "
         << rtol << ")" << detail;
}

}  // namespace servelab::lab04
