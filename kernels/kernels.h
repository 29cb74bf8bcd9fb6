// servelab's CUDA kernels, as host-callable launchers. This header is plain C++ (no CUDA syntax),
// so the backend and the tests include it from .cpp files; each launcher lives in the .cu file of
// its concept and enqueues on the given stream without synchronising.
//
// Conventions shared by every launcher:
//  - Tensors are raw device pointers, row-major and contiguous; `dtype` says what the floating
//    point ones hold (F32, F16 or BF16). Arithmetic is fp32 inside every kernel; results are
//    rounded once, when stored.
//  - Index tensors (token ids, positions, block tables, lengths) are int32 device arrays.
//  - A launcher checks its arguments (throwing servelab::Error) and the launch itself
//    (cudaGetLastError), so a bad launch fails at its call with the kernel's name.
//  - Paged KV cache layout, per layer: [num_blocks, block_size, num_kv_heads, head_dim] for keys
//    and the same for values. Token position p of a sequence lives in block
//    block_table[p / block_size], at offset p % block_size; its "slot" is
//    block * block_size + offset, i.e. a row of the cache seen as [slots, num_kv_heads, head_dim].
#pragma once

#include <cstdint>

#include "common/dtype.h"

// Forward-declared so that this header does not pull in cuda_runtime.h.
typedef struct CUstream_st* cudaStream_t;

namespace servelab::kernels {

// ---- element-wise and row-wise (embedding.cu, rms_norm.cu, rope.cu, activation.cu) ------------

/// out[t] = table[ids[t]]: the embedding lookup, and in general a gather of rows.
/// Ids outside [0, rows) produce zero rows (the model validates ids on the host first).
/// @param table [rows, width]   @param ids [count]   @param out [count, width]
void embedding(DType dtype, const void* table, int64_t rows, int64_t width, const int32_t* ids,
               int64_t count, void* out, cudaStream_t stream);

/// RMSNorm, optionally fused with the residual add that precedes it:
///   if residual != nullptr:  residual += x;  out = rms_norm(residual) * weight
///   else:                    out = rms_norm(x) * weight
/// The normalised value is rounded to `dtype` before the weight multiplies it, as Hugging Face's
/// LlamaRMSNorm does. `out` may alias `x`.
/// @param x [rows, hidden]   @param residual [rows, hidden] or null   @param weight [hidden]
void rms_norm(DType dtype, const void* x, void* residual, const void* weight, float eps,
              int64_t rows, int64_t hidden, void* out, cudaStream_t stream);

/// Rotary embedding in place, rotate-half layout: dimension i pairs with i + head_dim / 2,
/// rotated by positions[t] * inv_freq[i] (fp32). Linear and llama3 scaling are already folded
/// into inv_freq (model/rope_frequencies.h). Queries and keys in one launch; keys may be null.
/// @param queries [tokens, num_heads, head_dim]   @param keys [tokens, num_kv_heads, head_dim]
/// @param positions [tokens]   @param inv_freq [head_dim / 2], fp32
void rope(DType dtype, void* queries, int num_heads, void* keys, int num_kv_heads, int head_dim,
          const int32_t* positions, const float* inv_freq, int64_t tokens, cudaStream_t stream);

/// out = silu(gate) * up, silu(g) = g / (1 + exp(-g)); out may alias gate.
void silu_mul(DType dtype, const void* gate, const void* up, void* out, int64_t count,
              cudaStream_t stream);

/// x += y, element-wise.
void add(DType dtype, void* x, const void* y, int64_t count, cudaStream_t stream);

/// out[r, c] += bias[c] for every row: the bias of a linear layer after its GEMM.
void add_bias(DType dtype, void* out, const void* bias, int64_t rows, int64_t cols,
              cudaStream_t stream);

/// Converts `count` elements between floating-point types (also F32 -> F32, a copy).
void convert(DType from, const void* in, DType to, void* out, int64_t count, cudaStream_t stream);

// ---- small-batch linear layers (gemv.cu) ------------------------------------------------------

/// The most rows gemv takes: at 4 rows it measured slower than cuBLAS (8.4 vs 6.4 ms per
/// Llama-3-8B step on an H100), so only the batch-1 decode step uses it.
constexpr int64_t kGemvMaxRows = 1;

/// Whether gemv handles this case: F16/BF16, 1..kGemvMaxRows rows, in % 8 == 0, 16-byte aligned.
bool gemv_supported(DType dtype, int64_t rows, int64_t in, const void* x, const void* weight,
                    const void* out);

/// out[r, n] = Σ_k x[r, k] · weight[n, k] + bias[n] (bias may be null), fp32 accumulation, one
/// rounding. @param x [rows, in]   @param weight [features, in]   @param out [rows, features]
void gemv(DType dtype, const void* x, int64_t rows, const void* weight, const void* bias,
          int64_t features, int64_t in, void* out, cudaStream_t stream);

// ---- sampling (argmax.cu) ---------------------------------------------------------------------

/// ids[r] = the index of the largest value of row r (the first one on ties, as torch.argmax).
/// @param logits [rows, vocab]   @param ids [rows]
void argmax(DType dtype, const void* logits, int64_t rows, int64_t vocab, int32_t* ids,
            cudaStream_t stream);

/// Fills a tensor with normal(0, std) values from a counter-based generator (benchmarks' random
/// weights). The same seed gives the same values.
void fill_normal(DType dtype, void* out, int64_t count, float std, uint64_t seed,
                 cudaStream_t stream);

// ---- attention -------------------------------------------------------------------------------

/// What every attention kernel needs to know about heads.
struct HeadShape {
  int num_heads = 0;     ///< query heads
  int num_kv_heads = 0;  ///< key/value heads; num_heads % num_kv_heads == 0 (GQA)
  int head_dim = 0;      ///< 64, 128 (any multiple of 8 up to 256 where a kernel says so)
  float scale = 0.0f;    ///< usually 1 / sqrt(head_dim)
};

/// A batch of sequences whose new tokens are packed together: sequence s owns query rows
/// [query_start[s], query_start[s + 1]) and, after this step, context_lens[s] tokens of cache;
/// its new tokens sit at positions [context_lens[s] - new, context_lens[s]).
struct PackedBatch {
  const int32_t* query_start = nullptr;   ///< [num_seqs + 1], device
  const int32_t* context_lens = nullptr;  ///< [num_seqs], device
  int num_seqs = 0;
  int64_t num_tokens = 0;   ///< query_start[num_seqs]
  int max_query_len = 0;    ///< an upper bound on any sequence's new tokens (host-known)
  int max_context_len = 0;  ///< an upper bound on any context_lens[s] (host-known; sizes grids)
};

// naive_attention.cu -- the static-batching server's attention over contiguous caches.

/// Writes new keys and values into per-sequence contiguous caches: token row t of sequence s goes
/// to position (context_lens[s] - new_s + i) of key_caches[s] / value_caches[s].
/// @param keys, values [num_tokens, num_kv_heads, head_dim]
/// @param key_caches, value_caches [num_seqs] device arrays of pointers, each cache
///        [capacity, num_kv_heads, head_dim]
void write_contiguous_kv(DType dtype, const void* keys, const void* values, void* const* key_caches,
                         void* const* value_caches, const PackedBatch& batch,
                         const HeadShape& heads, cudaStream_t stream);

/// Causal attention of each sequence's new tokens over its contiguous cache (which already holds
/// them): the query at position p sees positions [0, p]. Prefill and decode alike.
/// @param queries [num_tokens, num_heads, head_dim]   @param out [num_tokens, num_heads * head_dim]
void naive_attention(DType dtype, const void* queries, const void* const* key_caches,
                     const void* const* value_caches, const PackedBatch& batch,
                     const HeadShape& heads, void* out, cudaStream_t stream);

// kv_cache.cu -- paged cache writes, block copies and block swaps.

/// Writes token t's key and value into slot slot_mapping[t] of the paged cache (slot < 0: skip,
/// a padding token).
void write_paged_kv(DType dtype, const void* keys, const void* values, const int32_t* slot_mapping,
                    int64_t num_tokens, void* key_cache, void* value_cache, int block_size,
                    const HeadShape& heads, cudaStream_t stream);

/// Copies whole blocks inside each layer's cache: for each pair i, block pairs[2i] is copied to
/// block pairs[2i + 1], in keys and values of every layer (copy-on-write).
/// @param key_caches, value_caches [num_layers] device arrays of pointers to a layer's cache
/// @param pairs [2 * num_pairs], device
void copy_blocks(DType dtype, void* const* key_caches, void* const* value_caches, int num_layers,
                 const int32_t* pairs, int num_pairs, int64_t block_elements, cudaStream_t stream);

/// Copies whole blocks of one layer from one pool to another (swap-out: device -> pinned host;
/// swap-in: pinned host -> device), keys and values, in one launch: for each pair i, block
/// pairs[2i] of the source is copied to block pairs[2i + 1] of the destination. Host memory is
/// read or written by the kernel itself over the host link (zero-copy), so it must be page-locked
/// and mapped: pass the pointer cudaPointerGetAttributes gives as devicePointer (with unified
/// addressing, the host pointer of cudaHostAlloc memory). No pair may read a block another pair
/// writes. Any block size works; blocks of a multiple of 16 bytes move in 16-byte units.
/// @param key_source, value_source [source_blocks, block_size, num_kv_heads, head_dim]
/// @param key_destination, value_destination [destination_blocks, block_size, num_kv_heads,
///        head_dim]; device memory or mapped pinned host memory, any of the four
/// @param pairs [2 * num_pairs] int32, device memory
/// @param max_thread_blocks the grid's cap, for keys and again for values (0: the default,
///        kv_cache.cu's kSwapMaxBlocks): fewer leave more SMs to a forward running beside it
void swap_blocks(DType dtype, const void* key_source, const void* value_source,
                 void* key_destination, void* value_destination, const int32_t* pairs,
                 int num_pairs, int64_t block_elements, cudaStream_t stream,
                 int max_thread_blocks = 0);

// paged_attention.cu -- PagedAttention decode: one new token per sequence.

/// The paged cache and the block tables of a batch.
struct PagedCache {
  const void* key_cache = nullptr;        ///< [num_blocks, block_size, num_kv_heads, head_dim]
  const void* value_cache = nullptr;      ///< likewise
  const int32_t* block_tables = nullptr;  ///< [num_seqs, blocks_per_seq], device
  int blocks_per_seq = 0;                 ///< the row stride of block_tables
  int block_size = 16;
};

/// Decode attention: sequence s's single query (row s of queries, or row seq_rows[s] when
/// seq_rows is given) attends to its context_lens[s] cached tokens. Version 1: one thread block
/// per (sequence, KV head) streams the whole context.
/// @param seq_rows [num_seqs] query row of each sequence, or null for row s
/// @param out [rows, num_heads * head_dim] (row as for the query)
void paged_attention_decode(DType dtype, const void* queries, const PagedCache& cache,
                            const int32_t* context_lens, const int32_t* seq_rows, int num_seqs,
                            int max_context_len, const HeadShape& heads, void* out,
                            cudaStream_t stream);

/// Bytes of fp32 workspace paged_attention_decode_split needs for these sizes.
int64_t paged_attention_split_workspace(int num_seqs, int max_context_len, int partition_size,
                                        const HeadShape& heads);

/// Decode attention, version 2 (flash-decoding style): each sequence's context is cut into
/// partitions of `partition_size` tokens handled by separate thread blocks, whose partial
/// results (max, sum, weighted values) a second kernel reduces. Same contract as version 1;
/// partition_size = 0 picks one from the batch size and context (see the kernel's notes).
void paged_attention_decode_split(DType dtype, const void* queries, const PagedCache& cache,
                                  const int32_t* context_lens, const int32_t* seq_rows,
                                  int num_seqs, int max_context_len, int partition_size,
                                  const HeadShape& heads, void* workspace, int64_t workspace_bytes,
                                  void* out, cudaStream_t stream);

// prefill_attention.cu -- tiled causal prefill over the paged cache.

/// Prefill attention for a variable-length batch: writes each sequence's new keys and values into
/// the paged cache (through its block table), then computes causal attention of its new tokens
/// over everything cached before them and themselves, tile by tile with an online softmax.
/// Sequences listed in seq_ids are processed (others, e.g. decode ones, are left alone); a
/// sequence may already have cached tokens (a prefix): its new tokens are the last ones.
/// @param queries [num_tokens, num_heads, head_dim]   @param keys, values [num_tokens,
///        num_kv_heads, head_dim]   @param seq_ids [num_prefill_seqs], device
/// @param key_cache, value_cache writable versions of cache.key_cache / value_cache
/// @param out [num_tokens, num_heads * head_dim]
void prefill_attention(DType dtype, const void* queries, const void* keys, const void* values,
                       const PackedBatch& batch, const int32_t* seq_ids, int num_prefill_seqs,
                       const PagedCache& cache, void* key_cache, void* value_cache,
                       const HeadShape& heads, void* out, cudaStream_t stream);

}  // namespace servelab::kernels
