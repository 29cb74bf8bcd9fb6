// embedding: out[t] = table[ids[t]], the token-embedding lookup, and in general a gather of rows.
// An id outside [0, rows) gives a row of zeros, so that a bad id can never read outside the table
// (the model validates ids on the host first; this is the last line of defence, not the check).
//
// Design: one thread block per output row. The copy does not care what the bytes mean, so the
// dtype only sets the row's size in bytes; the block copies it in the widest word that the row
// size and both pointers' alignment allow (16 bytes when possible, else 8, 4 or 2). Consecutive
// threads copy consecutive words, so each block's reads and writes are fully coalesced.
//
// Ladder:
//   v1  one thread per element, one 2- or 4-byte load each: simple, but for bf16 eight times more
//       memory instructions than needed, and the id is re-read by every thread.
//   v2  (this) one block per row: the id is read once per block, the row is copied in 16-byte
//       words (uint4: 8 bf16 or 4 fp32 per instruction) when aligned, narrower words otherwise
//       (odd widths, offset pointers), so no alignment assumption is ever wrong.
// measured: not measured separately yet; see
//   benchmarks/results/2026-11-22-h100-80gb-hbm3.md for whole-step numbers
#include <cstdint>

#include "kernels/cuda_utils.cuh"
#include "kernels/kernels.h"
#include "kernels/memory_bound.cuh"

namespace servelab::kernels {
namespace {

/// One block per output row: out[token] = table[ids[token]], or zeros when the id is out of range.
/// @param table [rows, row_words]   @param ids [gridDim.x]   @param out [gridDim.x, row_words]
template <typename Word>
__global__ void embedding_kernel(const Word* __restrict__ table, int64_t rows, int64_t row_words,
                                 const int32_t* __restrict__ ids, Word* __restrict__ out) {
  const int64_t token = blockIdx.x;
  const int32_t id = ids[token];
  Word* out_row = out + token * row_words;
  if (id < 0 || id >= rows) {
    // Word{} is all zero bits: +0.0 in fp32, fp16 and bf16 alike.
    for (int64_t word = threadIdx.x; word < row_words; word += blockDim.x) out_row[word] = Word{};
    return;
  }
  const Word* table_row = table + static_cast<int64_t>(id) * row_words;
  for (int64_t word = threadIdx.x; word < row_words; word += blockDim.x) {
    out_row[word] = table_row[word];
  }
}

template <typename Word>
void launch_embedding(const void* table, int64_t rows, int64_t row_bytes, const int32_t* ids,
                      int64_t count, void* out, cudaStream_t stream) {
  const int64_t row_words = row_bytes / static_cast<int64_t>(sizeof(Word));
  const int threads = warp_multiple(row_words, 256);
  embedding_kernel<Word><<<static_cast<unsigned int>(count), threads, 0, stream>>>(
      static_cast<const Word*>(table), rows, row_words, ids, static_cast<Word*>(out));
  SERVELAB_CHECK_LAUNCH("embedding_kernel");
}

}  // namespace

void embedding(DType dtype, const void* table, int64_t rows, int64_t width, const int32_t* ids,
               int64_t count, void* out, cudaStream_t stream) {
  require_float_dtype(dtype, "embedding");
  require_count(rows, "embedding", "rows");
  require_count(width, "embedding", "width");
  require_count(count, "embedding", "count (ids)", kMaxGridX);
  if (count == 0 || width == 0) return;
  require_pointer(ids, "embedding", "ids");
  require_pointer(out, "embedding", "out");
  if (rows > 0) require_pointer(table, "embedding", "table");

  // The widest word that divides a row and to which both base pointers are aligned: then every
  // row start (a multiple of the row size) is aligned too.
  const int64_t row_bytes = width * static_cast<int64_t>(dtype_size(dtype));
  auto fits = [&](int64_t bytes) {
    return row_bytes % bytes == 0 && is_aligned(table, bytes) && is_aligned(out, bytes);
  };
  if (fits(16)) {
    launch_embedding<uint4>(table, rows, row_bytes, ids, count, out, stream);
  } else if (fits(8)) {
    launch_embedding<uint2>(table, rows, row_bytes, ids, count, out, stream);
  } else if (fits(4)) {
    launch_embedding<uint32_t>(table, rows, row_bytes, ids, count, out, stream);
  } else if (fits(2)) {
    launch_embedding<uint16_t>(table, rows, row_bytes, ids, count, out, stream);
  } else {
    fail("embedding: table or out is not aligned to its ", dtype_name(dtype), " elements");
  }
}

}  // namespace servelab::kernels
