// The CUDA backend: the Backend ops on an NVIDIA GPU, with cuBLAS for the linear layers and
// servelab's kernels (kernels/) for everything else. Weights, KV caches and activations are in
// the compute dtype (F32, F16 or BF16); every kernel accumulates in fp32. It never decides what
// to run: the model's forward is the same code as on the CPU.
//
// Memory: long-lived tensors (weights, KV caches) are plain cudaMalloc allocations freed with
// their last handle; activations come from one arena (DeviceArena) that is recycled at every
// step, so a forward call allocates nothing from the driver once the arena has grown to fit.
//
// Streams: the forward and block copies (copy-on-write) run on the compute stream; swaps between
// the device and pinned host memory run on a swap stream of their own, layer by layer, with one
// event per layer, so that the next forward's attention of layer l waits for layer l's swaps
// only and the other layers' copies overlap with compute.
// Every CUDA and cuBLAS call and every launch is checked; a failure is a servelab::Error naming
// the call and the reason.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "backend/backend.h"

typedef struct CUstream_st* cudaStream_t;
typedef struct CUgraphExec_st* cudaGraphExec_t;
typedef struct CUevent_st* cudaEvent_t;
struct cublasContext;

namespace servelab {

/// How CudaBackend::swap_blocks moves blocks between the device and pinned host memory.
enum class SwapCopy {
  kDefault,  ///< SERVELAB_SWAP_COPY=memcpy|kernel from the environment if set, else kKernel
  kKernel,   ///< one zero-copy kernel per layer reading/writing mapped pinned host memory
  kMemcpy,   ///< one cudaMemcpyAsync per run of consecutive blocks, per layer and keys/values
};

struct CudaBackendOptions {
  DType dtype = DType::kBF16;  ///< compute dtype: weights, activations and KV caches
  int device = 0;              ///< CUDA device ordinal
  /// Record decode steps as CUDA graphs and replay them (one launch per step instead of
  /// hundreds). The environment variable SERVELAB_CUDA_GRAPHS=0 turns it off too.
  bool use_graphs = true;
  /// The swap path (see SwapCopy). The kernel needs the host pool in page-locked memory that the
  /// device can address (allocate_host_pinned's); a call on any other host memory uses memcpy.
  SwapCopy swap_copy = SwapCopy::kDefault;
  /// The swap kernel's grid cap, per keys and per values (0: the kernel's default). A benchmark
  /// knob: more blocks move bytes no faster once the link is full, and take SMs from the forward.
  int swap_kernel_blocks = 0;
};

/// Bump allocation from one cudaMalloc'd region, reset at every step. When a step needs more
/// than the region holds, the extra comes from temporary allocations and the region is resized
/// (once) at the next reset.
class DeviceArena {
 public:
  DeviceArena() = default;
  ~DeviceArena();
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;

  /// 256-byte aligned memory valid until the next reset().
  void* allocate(size_t bytes);
  /// Recycles everything; returns true when the region moved (recorded graphs are then stale).
  /// The caller must have synchronised the work that used the old memory.
  bool reset();
  size_t capacity() const { return capacity_; }

 private:
  char* base_ = nullptr;
  size_t capacity_ = 0;
  size_t offset_ = 0;
  size_t needed_ = 0;  // the most one step asked for
  std::vector<void*> overflow_;
};

class CudaBackend : public Backend {
 public:
  explicit CudaBackend(CudaBackendOptions options = {});
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override { return "cuda"; }
  DType compute_dtype() const override { return options_.dtype; }
  /// "NVIDIA H100 80GB HBM3, compute capability 9.0, 132 SMs, 79.1 GiB"
  std::string device_description() const;

  using Backend::allocate;
  using Backend::embedding;
  using Backend::rope;
  using Backend::scratch;
  using Backend::upload;
  Tensor allocate(const Shape& shape, DType dtype) override;
  Tensor scratch(const Shape& shape, DType dtype) override;
  Tensor upload(const void* host, DType host_dtype, const Shape& shape, DType dtype) override;
  Tensor to_host(const Tensor& tensor) override;
  /// Page-locked host memory (cudaHostAlloc), freed with cudaFreeHost with its last handle.
  Tensor allocate_host_pinned(const Shape& shape, DType dtype) override;
  /// The device's free and total memory (cudaMemGetInfo).
  MemoryInfo memory_info() const override;
  /// Copies blocks inside a device cache with one kernel launch for all layers, on the compute
  /// stream, after every swap issued so far (a copy's source may have just been swapped in).
  void copy_blocks(PagedKvCache& cache, const BlockPairs& pairs) override;
  /// Copies blocks between a device cache and a host one (either way) on the swap stream: it
  /// first waits for the compute stream's work so far (a swap-out reads what the last step
  /// wrote), then per layer copies keys and values and records the layer's event, which the next
  /// attention of that layer waits for. The copy is one zero-copy kernel per layer
  /// (SwapCopy::kKernel, kernels::swap_blocks) or one cudaMemcpyAsync per run of consecutive
  /// blocks (SwapCopy::kMemcpy). Returns before the copies finish; host memory should be pinned.
  void swap_blocks(const PagedKvCache& source, PagedKvCache& destination,
                   const BlockPairs& pairs) override;
  /// The swap path in use (never kDefault: resolved at construction).
  SwapCopy swap_copy() const { return options_.swap_copy; }
  /// Switches the swap path from the next swap_blocks call on (benchmarks compare the two);
  /// kDefault resolves as at construction.
  void set_swap_copy(SwapCopy swap_copy);
  /// Sets CudaBackendOptions::swap_kernel_blocks from the next swap_blocks call on.
  void set_swap_kernel_blocks(int blocks);
  Step prepare_step(const StepLayout& layout) override;
  Tensor run_step(const Step& step, const std::function<Tensor()>& body) override;

  void embedding(const Tensor& table, const Tensor& ids, Tensor& out) override;
  void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) override;
  void add_rms_norm(Tensor& residual, const Tensor& x, const Tensor& weight, float eps,
                    Tensor& out) override;
  void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out) override;
  void rope(Tensor& x, const Tensor& positions, const Tensor& inv_freq) override;
  void rope_queries_and_keys(Tensor& queries, Tensor& keys, const Tensor& positions,
                             const Tensor& inv_freq) override;
  void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) override;
  void add(Tensor& x, const Tensor& y) override;
  void attention(const Tensor& queries, const Tensor& keys, const Tensor& values, const Step& step,
                 int layer, Tensor& out) override;
  void argmax(const Tensor& logits, Tensor& ids) override;

  /// Fills a tensor with normal(0, std) values on the device (benchmarks' random weights).
  void fill_normal(Tensor& tensor, float std, uint64_t seed);
  /// Waits for all work queued on the backend's streams (compute and swap).
  void synchronize() override;
  cudaStream_t stream() const { return stream_; }
  /// Steps replayed from a recorded graph so far (tests check that graphs are used).
  int64_t graph_replays() const { return graph_replays_; }

 private:
  struct GraphEntry;
  // Everything a recorded step bakes in: layout kind, sizes, variant, and the identity of the
  // memory its kernels address directly (the paged pool's tensors; a hash of their addresses).
  using GraphKey =
      std::tuple<bool, int64_t, int64_t, int64_t, int32_t, int32_t, int32_t, size_t, uint64_t>;
  GraphKey graph_key(const StepLayout& layout) const;
  void clear_graphs();
  void check_device_tensor(const Tensor& tensor, const char* what) const;
  /// Makes the compute stream wait for the swaps of `layer` (all layers: -1) not yet waited for.
  void wait_for_swaps(int layer);
  bool swaps_pending() const;
  /// Uploads the pairs for kernels::swap_blocks on the swap stream; returns the device copy.
  const int32_t* upload_swap_pairs(const BlockPairs& pairs);
  /// What a swap kernel reaches a tensor's memory through: the device pointer of device memory
  /// or of mapped page-locked host memory; null for host memory the device cannot address.
  static void* device_accessible(const Tensor& tensor);

  CudaBackendOptions options_;
  cudaStream_t stream_ = nullptr;
  cublasContext* cublas_ = nullptr;
  void* cublas_workspace_ = nullptr;
  DeviceArena arena_;
  // Per-step index arrays: packed into pinned host memory, copied in one transfer into a device
  // buffer whose offsets depend only on the step's sizes (so graphs can be replayed).
  void* staging_ = nullptr;
  void* metadata_ = nullptr;
  size_t metadata_capacity_ = 0;
  std::map<GraphKey, std::unique_ptr<GraphEntry>> graphs_;
  int64_t graph_replays_ = 0;
  // Swaps: their stream, the compute stream's point they start after, and per layer the event
  // recorded after the layer's copies, pending until the compute stream has been made to wait.
  cudaStream_t swap_stream_ = nullptr;
  cudaEvent_t compute_point_ = nullptr;
  std::vector<cudaEvent_t> layer_swapped_;
  std::vector<bool> layer_swap_pending_;
  // copy_blocks' arguments (per-layer cache pointers and the pairs): packed in pinned memory,
  // copied to a device buffer on the compute stream; the event says when the staging is free.
  void* copy_staging_ = nullptr;
  void* copy_arguments_ = nullptr;
  size_t copy_capacity_ = 0;
  cudaEvent_t copy_staging_free_ = nullptr;
  // The swap kernel's pairs: slots of pinned staging + device buffer, each with an event recorded
  // after its upload. A call takes a slot whose upload has finished (the host may refill its
  // staging; the device buffer is safe to overwrite because the next upload runs on the swap
  // stream after every kernel that read it), or adds one, so issuing a swap never blocks.
  struct SwapPairsSlot {
    void* staging = nullptr;
    void* device = nullptr;
    size_t capacity = 0;
    cudaEvent_t uploaded = nullptr;
  };
  std::vector<SwapPairsSlot> swap_pairs_slots_;
  /// Frees every slot (ignoring errors: also called from the destructor); the swap stream must
  /// have finished with them.
  void release_swap_pairs_slots();
};

/// True when a CUDA device is present and usable by this process.
bool cuda_device_available();

}  // namespace servelab
