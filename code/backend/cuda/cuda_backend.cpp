#include "backend/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "backend/block_transfer_checks.h"
#include "common/error.h"
#include "kernels/kernels.h"

namespace servelab {
namespace {

#define CUDA_CHECK(call)                                                                           \
  do {                                                                                             \
    cudaError_t status_ = (call);                                                                  \
    if (status_ != cudaSuccess) {                                                                  \
      fail(#call, " failed: ", cudaGetErrorName(status_), " (", cudaGetErrorString(status_), ")"); \
    }                                                                                              \
  } while (0)

#define CUBLAS_CHECK(call)                                                                         \
  do {                                                                                             \
    cublasStatus_t status_ = (call);                                                               \
    if (status_ != CUBLAS_STATUS_SUCCESS) {                                                        \
      fail(#call, " failed: ", cublasGetStatusName(status_), " (", cublasGetStatusString(status_), \
           ")");                                                                                   \
    }                                                                                              \
  } while (0)

constexpr size_t kAlignment = 256;
constexpr size_t kCublasWorkspaceBytes = 32u << 20;
constexpr size_t kStagingBytes = 16u << 20;
// At most this many swap-pair upload slots; past it the swap stream is drained and they restart.
constexpr size_t kMaxSwapPairsSlots = 4;

size_t align_up(size_t value, size_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

cudaDataType_t cuda_type(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return CUDA_R_32F;
    case DType::kF16:
      return CUDA_R_16F;
    case DType::kBF16:
      return CUDA_R_16BF;
    default:
      fail("cuda backend: no cuBLAS type for ", dtype_name(dtype));
  }
}

/// Converts host values to `dtype`'s bytes.
std::vector<uint8_t> to_bytes(const void* host, DType host_dtype, int64_t count, DType dtype) {
  std::vector<uint8_t> bytes(static_cast<size_t>(count) * dtype_size(dtype));
  if (dtype == DType::kI32 || host_dtype == dtype) {
    if (host_dtype != dtype) fail("cuda backend: I32 tensors come from I32 data");
    if (!bytes.empty()) std::memcpy(bytes.data(), host, bytes.size());  // host may be null
    return bytes;
  }
  if (host_dtype == DType::kI32)
    fail("cuda backend: cannot convert I32 data to ", dtype_name(dtype));
  std::vector<float> widened(static_cast<size_t>(count));
  convert_to_f32(host_dtype, host, widened.data(), widened.size());
  for (int64_t i = 0; i < count; ++i) {
    if (dtype == DType::kF32) {
      std::memcpy(bytes.data() + 4 * i, &widened[i], 4);
    } else {
      const uint16_t bits =
          dtype == DType::kBF16 ? float_to_bf16(widened[i]) : float_to_fp16(widened[i]);
      std::memcpy(bytes.data() + 2 * i, &bits, 2);
    }
  }
  return bytes;
}

/// The swap path a backend uses: the option if given, else SERVELAB_SWAP_COPY, else the kernel.
SwapCopy resolve_swap_copy(SwapCopy requested) {
  if (requested != SwapCopy::kDefault) return requested;
  const char* value = std::getenv("SERVELAB_SWAP_COPY");
  if (value == nullptr || *value == '\0') return SwapCopy::kKernel;
  const std::string text(value);
  if (text == "kernel") return SwapCopy::kKernel;
  if (text == "memcpy") return SwapCopy::kMemcpy;
  fail("the environment variable SERVELAB_SWAP_COPY is '", text,
       "'; expected 'memcpy' or 'kernel' (or leave it unset for the kernel)");
}

/// What a step keeps on the device besides the Step's own tensors.
struct CudaStepState {
  // Contiguous layout: per layer, device arrays of the sequences' cache pointers.
  void** key_pointers = nullptr;    // [num_layers * num_seqs]
  void** value_pointers = nullptr;  // [num_layers * num_seqs]
  // Paged layout: which sequences decode (one new token) and which prefill.
  int num_decode = 0;
  int num_prefill = 0;
  bool all_decode = false;
  const int32_t* decode_rows = nullptr;          // [num_decode] query row of each
  const int32_t* decode_context_lens = nullptr;  // [num_decode]
  const int32_t* decode_block_tables = nullptr;  // [num_decode, blocks_per_seq]
  const int32_t* decode_slots = nullptr;         // [num_tokens]: slot, or -1 for prefill tokens
  const int32_t* prefill_seq_ids = nullptr;      // [num_prefill]
  void* split_workspace = nullptr;               // from the arena, at the first attention call
  int64_t split_workspace_bytes = 0;
};

/// Packs the index arrays of a step into one host buffer, each array 256-byte aligned.
class MetadataPacker {
 public:
  size_t add(const void* data, size_t bytes) {
    const size_t offset = align_up(buffer_.size(), kAlignment);
    buffer_.resize(offset + std::max<size_t>(bytes, 4));
    if (bytes > 0) std::memcpy(buffer_.data() + offset, data, bytes);
    return offset;
  }
  size_t add(const std::vector<int32_t>& values) {
    return add(values.data(), values.size() * sizeof(int32_t));
  }
  const std::vector<uint8_t>& buffer() const { return buffer_; }

 private:
  std::vector<uint8_t> buffer_;
};

}  // namespace

bool cuda_device_available() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

// ---- DeviceArena ------------------------------------------------------------------------------

DeviceArena::~DeviceArena() {
  for (void* chunk : overflow_) cudaFree(chunk);
  if (base_ != nullptr) cudaFree(base_);
}

void* DeviceArena::allocate(size_t bytes) {
  bytes = align_up(std::max<size_t>(bytes, 1), kAlignment);
  needed_ = std::max(needed_, offset_ + bytes);
  if (offset_ + bytes <= capacity_) {
    void* result = base_ + offset_;
    offset_ += bytes;
    return result;
  }
  // Past the region: a temporary allocation for this step; the region grows at the next reset.
  offset_ += bytes;
  void* chunk = nullptr;
  CUDA_CHECK(cudaMalloc(&chunk, bytes));
  overflow_.push_back(chunk);
  return chunk;
}

bool DeviceArena::reset() {
  for (void* chunk : overflow_) CUDA_CHECK(cudaFree(chunk));
  overflow_.clear();
  offset_ = 0;
  if (needed_ <= capacity_) return false;
  if (base_ != nullptr) CUDA_CHECK(cudaFree(base_));
  capacity_ = align_up(needed_ + needed_ / 4, 1u << 20);  // a quarter more, whole MiB
  CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&base_), capacity_));
  return true;
}

// ---- CudaBackend ------------------------------------------------------------------------------

struct CudaBackend::GraphEntry {
  cudaGraphExec_t exec = nullptr;
  Tensor result;
  ~GraphEntry() {
    if (exec != nullptr) cudaGraphExecDestroy(exec);
  }
};

CudaBackend::CudaBackend(CudaBackendOptions options) : options_(options) {
  if (options_.dtype == DType::kI32)
    fail("cuda backend: the compute dtype must be F32, F16 or BF16");
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    fail("no CUDA device is available (", cudaGetErrorString(status),
         "); use --device cpu or run on a machine with an NVIDIA GPU");
  }
  if (options_.device < 0 || options_.device >= count) {
    fail("CUDA device ", options_.device, " does not exist (", count, " present)");
  }
  const char* graphs = std::getenv("SERVELAB_CUDA_GRAPHS");
  if (graphs != nullptr && std::string(graphs) == "0") options_.use_graphs = false;
  options_.swap_copy = resolve_swap_copy(options_.swap_copy);  // the environment is read once
  CUDA_CHECK(cudaSetDevice(options_.device));
  // The compute stream gets the device's highest priority: when a swap on the swap stream (the
  // default, lowest priority) and a forward both have thread blocks waiting, the forward's go
  // first.
  int lowest_priority = 0, highest_priority = 0;
  CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&lowest_priority, &highest_priority));
  CUDA_CHECK(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, highest_priority));
  CUBLAS_CHECK(cublasCreate(&cublas_));
  CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
  // An explicit workspace: cuBLAS then never allocates inside a graph capture.
  CUDA_CHECK(cudaMalloc(&cublas_workspace_, kCublasWorkspaceBytes));
  CUBLAS_CHECK(cublasSetWorkspace(cublas_, cublas_workspace_, kCublasWorkspaceBytes));
  // fp32 stays fp32 (no TF32), and half-precision GEMMs reduce in fp32.
  CUBLAS_CHECK(cublasSetMathMode(cublas_, CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION));
  CUDA_CHECK(cudaMallocHost(&staging_, kStagingBytes));
  // Swaps get a stream of their own so that they overlap with the forward; non-blocking, so that
  // nothing on the legacy default stream orders it behind unrelated work.
  CUDA_CHECK(cudaStreamCreateWithFlags(&swap_stream_, cudaStreamNonBlocking));
  CUDA_CHECK(cudaEventCreateWithFlags(&compute_point_, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventCreateWithFlags(&copy_staging_free_, cudaEventDisableTiming));
}

CudaBackend::~CudaBackend() {
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  if (swap_stream_ != nullptr) cudaStreamSynchronize(swap_stream_);
  graphs_.clear();
  for (cudaEvent_t event : layer_swapped_) cudaEventDestroy(event);
  if (compute_point_ != nullptr) cudaEventDestroy(compute_point_);
  if (copy_staging_free_ != nullptr) cudaEventDestroy(copy_staging_free_);
  if (copy_staging_ != nullptr) cudaFreeHost(copy_staging_);
  if (copy_arguments_ != nullptr) cudaFree(copy_arguments_);
  release_swap_pairs_slots();
  if (swap_stream_ != nullptr) cudaStreamDestroy(swap_stream_);
  if (metadata_ != nullptr) cudaFree(metadata_);
  if (staging_ != nullptr) cudaFreeHost(staging_);
  if (cublas_ != nullptr) cublasDestroy(cublas_);
  if (cublas_workspace_ != nullptr) cudaFree(cublas_workspace_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

std::string CudaBackend::device_description() const {
  cudaDeviceProp properties{};
  CUDA_CHECK(cudaGetDeviceProperties(&properties, options_.device));
  return str_cat(properties.name, ", compute capability ", properties.major, ".", properties.minor,
                 ", ", properties.multiProcessorCount, " SMs, ",
                 static_cast<double>(properties.totalGlobalMem) / (1u << 30), " GiB");
}

void CudaBackend::check_device_tensor(const Tensor& tensor, const char* what) const {
  if (tensor.device() != Device::kCuda) fail("cuda backend: ", what, " is not a CUDA tensor");
}

Tensor CudaBackend::allocate(const Shape& shape, DType dtype) {
  const size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  void* data = nullptr;
  CUDA_CHECK(cudaMalloc(&data, std::max<size_t>(bytes, 1)));
  std::shared_ptr<void> owner(data, [](void* pointer) { cudaFree(pointer); });
  CUDA_CHECK(cudaMemsetAsync(data, 0, bytes, stream_));
  return Tensor(data, shape, dtype, Device::kCuda, owner);
}

Tensor CudaBackend::scratch(const Shape& shape, DType dtype) {
  const size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  return Tensor(arena_.allocate(bytes), shape, dtype, Device::kCuda, nullptr);
}

Tensor CudaBackend::upload(const void* host, DType host_dtype, const Shape& shape, DType dtype) {
  std::vector<uint8_t> bytes = to_bytes(host, host_dtype, shape_numel(shape), dtype);
  Tensor tensor = allocate(shape, dtype);
  CUDA_CHECK(
      cudaMemcpyAsync(tensor.data(), bytes.data(), bytes.size(), cudaMemcpyHostToDevice, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));  // `bytes` is about to go away
  return tensor;
}

Tensor CudaBackend::to_host(const Tensor& tensor) {
  check_device_tensor(tensor, "to_host input");
  wait_for_swaps(-1);  // the tensor may be a pool that swaps are writing
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  std::vector<uint8_t> bytes(tensor.nbytes());
  CUDA_CHECK(cudaMemcpy(bytes.data(), tensor.data(), bytes.size(), cudaMemcpyDeviceToHost));
  if (tensor.dtype() == DType::kI32) {
    Tensor host = Tensor::zeros(tensor.shape(), DType::kI32);
    std::memcpy(host.data(), bytes.data(), bytes.size());
    return host;
  }
  Tensor host = Tensor::zeros(tensor.shape(), DType::kF32);
  convert_to_f32(tensor.dtype(), bytes.data(), host.f32(), static_cast<size_t>(tensor.numel()));
  return host;
}

void CudaBackend::synchronize() {
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  CUDA_CHECK(cudaStreamSynchronize(swap_stream_));
  // Every swap has finished: nothing is left for the compute stream to wait for.
  std::fill(layer_swap_pending_.begin(), layer_swap_pending_.end(), false);
}

Tensor CudaBackend::allocate_host_pinned(const Shape& shape, DType dtype) {
  for (int64_t extent : shape) {
    if (extent < 0)
      fail("cuda backend: pinned host tensor shape ", shape_string(shape),
           " has a negative dimension");
  }
  const size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  void* data = nullptr;
  const cudaError_t status = cudaHostAlloc(&data, std::max<size_t>(bytes, 1), cudaHostAllocDefault);
  if (status != cudaSuccess) {
    fail("cuda backend: cannot allocate ", bytes, " bytes of pinned host memory for a ",
         shape_string(shape), " ", dtype_name(dtype), " tensor: cudaHostAlloc failed with ",
         cudaGetErrorName(status), " (", cudaGetErrorString(status),
         "); ask for less swap space (fewer CPU blocks)");
  }
  std::shared_ptr<void> owner(data, [](void* pointer) { cudaFreeHost(pointer); });
  std::memset(data, 0, bytes);
  return Tensor(data, shape, dtype, Device::kCpu, owner);
}

Backend::MemoryInfo CudaBackend::memory_info() const {
  size_t free_bytes = 0, total_bytes = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  MemoryInfo info;
  info.free_bytes = static_cast<int64_t>(free_bytes);
  info.total_bytes = static_cast<int64_t>(total_bytes);
  return info;
}

bool CudaBackend::swaps_pending() const {
  return std::find(layer_swap_pending_.begin(), layer_swap_pending_.end(), true) !=
         layer_swap_pending_.end();
}

void CudaBackend::wait_for_swaps(int layer) {
  for (size_t l = 0; l < layer_swapped_.size(); ++l) {
    if (!layer_swap_pending_[l] || (layer >= 0 && static_cast<int>(l) != layer)) continue;
    // Enqueued, not waited for on the host: the compute stream stalls only if the copies of this
    // layer are still running when it gets here.
    CUDA_CHECK(cudaStreamWaitEvent(stream_, layer_swapped_[l], 0));
    layer_swap_pending_[l] = false;
  }
}

void CudaBackend::copy_blocks(PagedKvCache& cache, const BlockPairs& pairs) {
  const int64_t block_bytes = check_paged_cache(cache, "copy_blocks", "paged");
  check_block_pairs(pairs, cache.num_blocks, cache.num_blocks, /*same_pool=*/true, "copy_blocks");
  if (cache.keys.front().device() != Device::kCuda) {
    // A host pool: swaps into it may still be running on the swap stream.
    CUDA_CHECK(cudaStreamSynchronize(swap_stream_));
    Backend::copy_blocks(cache, pairs);
    return;
  }
  if (pairs.empty()) return;
  if (pairs.size() > static_cast<size_t>(INT_MAX)) {
    fail("copy_blocks: ", pairs.size(), " pairs in one call; at most ", INT_MAX);
  }
  // A copy's source may be a block that was just swapped in, and its destination a block that a
  // swap-out is still reading: the copies start after every swap issued so far.
  wait_for_swaps(-1);

  // The kernel's arguments, one transfer: [keys of each layer][values of each layer] as
  // pointers, then the pairs as int32 (source, destination).
  const size_t num_layers = cache.keys.size();
  const size_t pointer_bytes = 2 * num_layers * sizeof(void*);
  const size_t total_bytes = pointer_bytes + 2 * pairs.size() * sizeof(int32_t);
  if (total_bytes > copy_capacity_) {
    CUDA_CHECK(cudaStreamSynchronize(stream_));  // a copy in flight may still read the old ones
    if (copy_staging_ != nullptr) CUDA_CHECK(cudaFreeHost(copy_staging_));
    if (copy_arguments_ != nullptr) CUDA_CHECK(cudaFree(copy_arguments_));
    copy_staging_ = nullptr;
    copy_arguments_ = nullptr;
    copy_capacity_ = 0;
    const size_t capacity = align_up(total_bytes * 2, 4096);
    CUDA_CHECK(cudaMallocHost(&copy_staging_, capacity));
    CUDA_CHECK(cudaMalloc(&copy_arguments_, capacity));
    copy_capacity_ = capacity;
  } else {
    // The previous call's upload must have read the staging buffer before it is refilled.
    CUDA_CHECK(cudaEventSynchronize(copy_staging_free_));
  }
  auto* staging = static_cast<char*>(copy_staging_);
  for (size_t layer = 0; layer < num_layers; ++layer) {
    void* key_pointer = cache.keys[layer].data();
    void* value_pointer = cache.values[layer].data();
    std::memcpy(staging + layer * sizeof(void*), &key_pointer, sizeof(void*));
    std::memcpy(staging + (num_layers + layer) * sizeof(void*), &value_pointer, sizeof(void*));
  }
  auto* packed_pairs = reinterpret_cast<int32_t*>(staging + pointer_bytes);
  for (size_t i = 0; i < pairs.size(); ++i) {
    packed_pairs[2 * i] = pairs[i].first;
    packed_pairs[2 * i + 1] = pairs[i].second;
  }
  CUDA_CHECK(cudaMemcpyAsync(copy_arguments_, copy_staging_, total_bytes, cudaMemcpyHostToDevice,
                             stream_));
  CUDA_CHECK(cudaEventRecord(copy_staging_free_, stream_));
  auto* arguments = static_cast<char*>(copy_arguments_);
  const DType dtype = cache.keys.front().dtype();
  kernels::copy_blocks(dtype, reinterpret_cast<void* const*>(arguments),
                       reinterpret_cast<void* const*>(arguments + num_layers * sizeof(void*)),
                       static_cast<int>(num_layers),
                       reinterpret_cast<const int32_t*>(arguments + pointer_bytes),
                       static_cast<int>(pairs.size()),
                       block_bytes / static_cast<int64_t>(dtype_size(dtype)), stream_);
}

void CudaBackend::set_swap_kernel_blocks(int blocks) {
  if (blocks < 0) fail("swap_kernel_blocks must be >= 0 (0: the default), got ", blocks);
  options_.swap_kernel_blocks = blocks;
}

void CudaBackend::set_swap_copy(SwapCopy swap_copy) {
  options_.swap_copy = resolve_swap_copy(swap_copy);
}

void* CudaBackend::device_accessible(const Tensor& tensor) {
  if (tensor.device() == Device::kCuda) return tensor.data();
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, tensor.data()) != cudaSuccess) {
    cudaGetLastError();  // not an address CUDA knows: clear the error, the caller uses memcpy
    return nullptr;
  }
  // Page-locked host memory (cudaHostAlloc, cudaMallocHost, cudaHostRegister). With unified
  // addressing (every 64-bit Linux system) it is mapped into the device's address space at the
  // host pointer, whatever its allocation flags; devicePointer is null where it is not. Pageable
  // memory is cudaMemoryTypeUnregistered: the device cannot address it.
  if (attributes.type != cudaMemoryTypeHost) return nullptr;
  return attributes.devicePointer;
}

void CudaBackend::release_swap_pairs_slots() {
  for (SwapPairsSlot& slot : swap_pairs_slots_) {
    if (slot.staging != nullptr) cudaFreeHost(slot.staging);
    if (slot.device != nullptr) cudaFree(slot.device);
    if (slot.uploaded != nullptr) cudaEventDestroy(slot.uploaded);
  }
  swap_pairs_slots_.clear();
}

const int32_t* CudaBackend::upload_swap_pairs(const BlockPairs& pairs) {
  const size_t bytes = 2 * pairs.size() * sizeof(int32_t);
  SwapPairsSlot* slot = nullptr;
  for (SwapPairsSlot& candidate : swap_pairs_slots_) {
    if (candidate.capacity < bytes) continue;
    // Free once its last upload has run: the host may refill the staging buffer, and the next
    // upload into the device buffer is queued on the swap stream after every kernel that read it.
    const cudaError_t status = cudaEventQuery(candidate.uploaded);
    if (status == cudaSuccess) {
      slot = &candidate;
      break;
    }
    if (status != cudaErrorNotReady) {
      fail("cudaEventQuery(swap pairs uploaded) failed: ", cudaGetErrorName(status), " (",
           cudaGetErrorString(status), ")");
    }
  }
  if (slot == nullptr) {
    if (swap_pairs_slots_.size() >= kMaxSwapPairsSlots) {
      // Every slot is busy or too small: drain the swap stream once and start over.
      CUDA_CHECK(cudaStreamSynchronize(swap_stream_));
      release_swap_pairs_slots();
    }
    swap_pairs_slots_.emplace_back();  // owned (and freed) from here on, even if a call throws
    slot = &swap_pairs_slots_.back();
    const size_t capacity = align_up(std::max<size_t>(2 * bytes, 4096), 4096);
    CUDA_CHECK(cudaEventCreateWithFlags(&slot->uploaded, cudaEventDisableTiming));
    CUDA_CHECK(cudaMallocHost(&slot->staging, capacity));
    CUDA_CHECK(cudaMalloc(&slot->device, capacity));
    slot->capacity = capacity;
  }
  auto* packed = static_cast<int32_t*>(slot->staging);
  for (size_t i = 0; i < pairs.size(); ++i) {
    packed[2 * i] = pairs[i].first;
    packed[2 * i + 1] = pairs[i].second;
  }
  CUDA_CHECK(
      cudaMemcpyAsync(slot->device, slot->staging, bytes, cudaMemcpyHostToDevice, swap_stream_));
  CUDA_CHECK(cudaEventRecord(slot->uploaded, swap_stream_));
  return static_cast<const int32_t*>(slot->device);
}

void CudaBackend::swap_blocks(const PagedKvCache& source, PagedKvCache& destination,
                              const BlockPairs& pairs) {
  const int64_t block_bytes = check_paged_cache(source, "swap_blocks", "source");
  check_paged_cache(destination, "swap_blocks", "destination");
  check_same_block_kind(source, destination, "swap_blocks");
  check_block_pairs(pairs, source.num_blocks, destination.num_blocks, &source == &destination,
                    "swap_blocks");
  const bool source_on_device = source.keys.front().device() == Device::kCuda;
  const bool destination_on_device = destination.keys.front().device() == Device::kCuda;
  if (!source_on_device && !destination_on_device) {
    // Host to host: earlier swaps may still be writing either pool.
    CUDA_CHECK(cudaStreamSynchronize(swap_stream_));
    Backend::swap_blocks(source, destination, pairs);
    return;
  }
  if (pairs.empty()) return;
  const size_t num_layers = source.keys.size();

  // The kernel path needs every tensor addressable from the device (per layer: key source,
  // value source, key destination, value destination); host memory that is not page-locked, or
  // more pairs than one launch takes, goes the memcpy way, which works for any host memory.
  bool use_kernel =
      options_.swap_copy == SwapCopy::kKernel && pairs.size() <= static_cast<size_t>(INT_MAX);
  std::vector<void*> accessible;
  if (use_kernel) {
    accessible.reserve(4 * num_layers);
    for (size_t layer = 0; layer < num_layers && use_kernel; ++layer) {
      const Tensor* tensors[4] = {&source.keys[layer], &source.values[layer],
                                  &destination.keys[layer], &destination.values[layer]};
      for (const Tensor* tensor : tensors) {
        void* pointer = device_accessible(*tensor);
        if (pointer == nullptr) use_kernel = false;
        accessible.push_back(pointer);
      }
    }
  }

  // memcpy path: runs of pairs whose sources and destinations are both consecutive move as one
  // copy: one DMA transfer instead of many small ones (each cudaMemcpyAsync costs microseconds).
  struct Run {
    int64_t source, destination, count;
  };
  std::vector<Run> runs;
  const int32_t* device_pairs = nullptr;
  if (use_kernel) {
    // The kernels' pairs go up first, on the swap stream: they touch no KV memory, so they need
    // not wait for the compute stream below, and their slot frees up sooner.
    device_pairs = upload_swap_pairs(pairs);
  } else {
    for (const auto& [source_block, destination_block] : pairs) {
      if (!runs.empty() && runs.back().source + runs.back().count == source_block &&
          runs.back().destination + runs.back().count == destination_block) {
        ++runs.back().count;
      } else {
        runs.push_back({source_block, destination_block, 1});
      }
    }
  }

  // The swap starts after the compute stream's work so far: a swap-out must read what the last
  // step wrote, and a swap-in must not overwrite blocks that step may still read.
  CUDA_CHECK(cudaEventRecord(compute_point_, stream_));
  CUDA_CHECK(cudaStreamWaitEvent(swap_stream_, compute_point_, 0));
  while (layer_swapped_.size() < num_layers) {
    cudaEvent_t event = nullptr;
    CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    layer_swapped_.push_back(event);
    layer_swap_pending_.push_back(false);
  }
  const DType dtype = source.keys.front().dtype();
  const int64_t block_elements = block_bytes / static_cast<int64_t>(dtype_size(dtype));
  for (size_t layer = 0; layer < num_layers; ++layer) {
    if (use_kernel) {
      // One launch moves every pair of this layer, keys and values, through mapped host memory.
      void* const* pointers = accessible.data() + 4 * layer;
      kernels::swap_blocks(dtype, pointers[0], pointers[1], pointers[2], pointers[3], device_pairs,
                           static_cast<int>(pairs.size()), block_elements, swap_stream_,
                           options_.swap_kernel_blocks);
    } else {
      const Tensor* from[2] = {&source.keys[layer], &source.values[layer]};
      Tensor* to[2] = {&destination.keys[layer], &destination.values[layer]};
      for (int kind = 0; kind < 2; ++kind) {
        const auto* source_bytes = static_cast<const char*>(from[kind]->data());
        auto* destination_bytes = static_cast<char*>(to[kind]->data());
        for (const Run& run : runs) {
          // cudaMemcpyDefault: unified addressing tells the direction from the pointers.
          CUDA_CHECK(cudaMemcpyAsync(destination_bytes + run.destination * block_bytes,
                                     source_bytes + run.source * block_bytes,
                                     static_cast<size_t>(run.count * block_bytes),
                                     cudaMemcpyDefault, swap_stream_));
        }
      }
    }
    // Layer l's attention in the next forward waits for this (see attention()); that covers a
    // swap-in (it reads the blocks) and a swap-out alike (it writes new keys and values into
    // blocks a swap-out may have just freed, which must have been read first).
    CUDA_CHECK(cudaEventRecord(layer_swapped_[layer], swap_stream_));
    layer_swap_pending_[layer] = true;
  }
}

void CudaBackend::clear_graphs() {
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  graphs_.clear();
}

Step CudaBackend::prepare_step(const StepLayout& layout) {
  validate_step_layout(layout);
  // The previous step's work must be done before its scratch memory and staging buffer are reused.
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (arena_.reset()) clear_graphs();

  const int64_t num_seqs = layout.num_seqs();
  const int64_t num_tokens = layout.num_tokens();
  auto state = std::make_shared<CudaStepState>();
  MetadataPacker packer;
  size_t key_pointers_at = 0, value_pointers_at = 0;
  const bool paged = layout.paged != nullptr;
  if (!paged) {
    // Per layer, the cache pointers of the sequences, so that one launch covers the batch.
    const size_t num_layers = layout.contiguous.front()->keys.size();
    std::vector<void*> keys, values;
    for (size_t layer = 0; layer < num_layers; ++layer) {
      for (ContiguousKvCache* cache : layout.contiguous) {
        if (cache->keys.size() != num_layers) fail("step: caches with different layer counts");
        check_device_tensor(cache->keys[layer], "KV cache");
        keys.push_back(cache->keys[layer].data());
        values.push_back(cache->values[layer].data());
      }
    }
    key_pointers_at = packer.add(keys.data(), keys.size() * sizeof(void*));
    value_pointers_at = packer.add(values.data(), values.size() * sizeof(void*));
  }
  const size_t tokens_at = packer.add(layout.tokens);
  const size_t positions_at = packer.add(layout.positions);
  const size_t query_start_at = packer.add(layout.query_start);
  const size_t context_lens_at = packer.add(layout.context_lens);
  const size_t output_rows_at = packer.add(layout.output_rows);
  const size_t block_tables_at = packer.add(layout.block_tables);
  const size_t slot_mapping_at = packer.add(layout.slot_mapping);

  // Paged steps: split the sequences into decode (one new token) and prefill (more).
  std::vector<int32_t> decode_rows, decode_context_lens, decode_block_tables, decode_slots,
      prefill_ids;
  if (paged) {
    decode_slots.assign(static_cast<size_t>(num_tokens), -1);
    for (int64_t s = 0; s < num_seqs; ++s) {
      const int32_t begin = layout.query_start[s], end = layout.query_start[s + 1];
      if (end - begin == 1) {
        decode_rows.push_back(begin);
        decode_context_lens.push_back(layout.context_lens[s]);
        decode_block_tables.insert(decode_block_tables.end(),
                                   layout.block_tables.begin() + s * layout.blocks_per_seq,
                                   layout.block_tables.begin() + (s + 1) * layout.blocks_per_seq);
        decode_slots[begin] = layout.slot_mapping[begin];
      } else {
        prefill_ids.push_back(static_cast<int32_t>(s));
      }
    }
    state->num_decode = static_cast<int>(decode_rows.size());
    state->num_prefill = static_cast<int>(prefill_ids.size());
    state->all_decode = state->num_prefill == 0;
  }
  size_t decode_rows_at = 0, decode_lens_at = 0, decode_tables_at = 0, decode_slots_at = 0,
         prefill_ids_at = 0;
  if (paged && !state->all_decode) {
    decode_rows_at = packer.add(decode_rows);
    decode_lens_at = packer.add(decode_context_lens);
    decode_tables_at = packer.add(decode_block_tables);
    decode_slots_at = packer.add(decode_slots);
    prefill_ids_at = packer.add(prefill_ids);
  }

  const std::vector<uint8_t>& packed = packer.buffer();
  if (packed.size() > kStagingBytes) {
    fail("step: ", packed.size(), " bytes of indices exceed the ", kStagingBytes,
         "-byte staging buffer");
  }
  if (packed.size() > metadata_capacity_) {
    // A bigger device buffer moves every address a recorded graph uses.
    clear_graphs();
    if (metadata_ != nullptr) CUDA_CHECK(cudaFree(metadata_));
    metadata_capacity_ = align_up(packed.size() * 2, 1u << 16);
    CUDA_CHECK(cudaMalloc(&metadata_, metadata_capacity_));
  }
  std::memcpy(staging_, packed.data(), packed.size());
  CUDA_CHECK(cudaMemcpyAsync(metadata_, staging_, packed.size(), cudaMemcpyHostToDevice, stream_));

  auto* base = static_cast<char*>(metadata_);
  auto ints = [&](size_t offset, size_t count) {
    return Tensor(base + offset, {static_cast<int64_t>(count)}, DType::kI32, Device::kCuda,
                  nullptr);
  };
  Step step;
  step.layout = layout;
  step.tokens = ints(tokens_at, layout.tokens.size());
  step.positions = ints(positions_at, layout.positions.size());
  step.query_start = ints(query_start_at, layout.query_start.size());
  step.context_lens = ints(context_lens_at, layout.context_lens.size());
  step.output_rows = ints(output_rows_at, layout.output_rows.size());
  step.block_tables = ints(block_tables_at, layout.block_tables.size());
  step.slot_mapping = ints(slot_mapping_at, layout.slot_mapping.size());
  if (!paged) {
    state->key_pointers = reinterpret_cast<void**>(base + key_pointers_at);
    state->value_pointers = reinterpret_cast<void**>(base + value_pointers_at);
  } else if (!state->all_decode) {
    state->decode_rows = reinterpret_cast<const int32_t*>(base + decode_rows_at);
    state->decode_context_lens = reinterpret_cast<const int32_t*>(base + decode_lens_at);
    state->decode_block_tables = reinterpret_cast<const int32_t*>(base + decode_tables_at);
    state->decode_slots = reinterpret_cast<const int32_t*>(base + decode_slots_at);
    state->prefill_seq_ids = reinterpret_cast<const int32_t*>(base + prefill_ids_at);
  }
  step.backend_state = state;
  return step;
}

CudaBackend::GraphKey CudaBackend::graph_key(const StepLayout& layout) const {
  // The paged pool's per-layer tensors are kernel arguments, so a recording is only valid for the
  // pool it was made with: a new pool (even of the same shape) gets its own recording.
  uint64_t pool = 1469598103934665603ull;  // FNV-1a over the addresses
  if (layout.paged != nullptr) {
    for (size_t layer = 0; layer < layout.paged->keys.size(); ++layer) {
      for (const void* address :
           {layout.paged->keys[layer].data(), layout.paged->values[layer].data()}) {
        pool = (pool ^ reinterpret_cast<uintptr_t>(address)) * 1099511628211ull;
      }
    }
  }
  return GraphKey(layout.paged != nullptr, layout.num_seqs(), layout.num_tokens(),
                  static_cast<int64_t>(layout.output_rows.size()), layout.blocks_per_seq,
                  layout.max_context_len, layout.variant,
                  layout.paged != nullptr ? 0 : layout.contiguous.front()->keys.size(), pool);
}

Tensor CudaBackend::run_step(const Step& step, const std::function<Tensor()>& body) {
  // Only decode steps are recorded: their shapes repeat from one step to the next, while
  // prompts come in every length.
  if (!options_.use_graphs || step.layout.max_query_len != 1) return body();
  // While swaps are pending, the step's attention must wait for their per-layer events. A graph
  // cannot wait on an event recorded outside it (capturing the wait fails, and a replay would
  // not wait), so such a step runs directly; the next one is replayed again.
  if (swaps_pending()) return body();
  const GraphKey key = graph_key(step.layout);
  auto found = graphs_.find(key);
  if (found == graphs_.end()) {
    // First sight of this shape: run it directly (cuBLAS picks its kernels, the arena learns the
    // step's size); the next step of the same shape is recorded.
    graphs_.emplace(key, std::make_unique<GraphEntry>());
    return body();
  }
  GraphEntry& entry = *found->second;
  if (entry.exec == nullptr) {
    CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    Tensor result;
    try {
      result = body();
    } catch (...) {
      cudaGraph_t broken = nullptr;
      cudaStreamEndCapture(stream_, &broken);
      if (broken != nullptr) cudaGraphDestroy(broken);
      graphs_.erase(found);
      throw;
    }
    cudaGraph_t graph = nullptr;
    CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    const cudaError_t status = cudaGraphInstantiate(&entry.exec, graph, 0);
    cudaGraphDestroy(graph);
    if (status != cudaSuccess) {
      entry.exec = nullptr;
      fail("cudaGraphInstantiate failed: ", cudaGetErrorString(status));
    }
    entry.result = result;
  }
  CUDA_CHECK(cudaGraphLaunch(entry.exec, stream_));
  ++graph_replays_;
  return entry.result;
}

// ---- ops --------------------------------------------------------------------------------------

namespace {

void require(bool condition, const char* op, const std::string& message) {
  if (!condition) fail("cuda backend: ", op, ": ", message);
}

void require_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  require(a.dtype() == b.dtype(), op,
          str_cat("dtypes differ: ", dtype_name(a.dtype()), " and ", dtype_name(b.dtype())));
}

}  // namespace

void CudaBackend::embedding(const Tensor& table, const Tensor& ids, Tensor& out) {
  require(table.ndim() == 2 && ids.dtype() == DType::kI32 && ids.ndim() == 1, "embedding",
          "needs a [rows, width] table and 1-D I32 ids");
  require(out.shape() == Shape({ids.dim(0), table.dim(1)}), "embedding",
          "output has shape " + shape_string(out.shape()));
  require_same_dtype(table, out, "embedding");
  kernels::embedding(table.dtype(), table.data(), table.dim(0), table.dim(1),
                     static_cast<const int32_t*>(ids.data()), ids.dim(0), out.data(), stream_);
}

void CudaBackend::rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  require(x.ndim() == 2 && weight.numel() == x.dim(1) && out.shape() == x.shape(), "rms_norm",
          "shapes " + shape_string(x.shape()) + ", " + shape_string(weight.shape()));
  require_same_dtype(x, out, "rms_norm");
  require_same_dtype(x, weight, "rms_norm");
  kernels::rms_norm(x.dtype(), x.data(), nullptr, weight.data(), eps, x.dim(0), x.dim(1),
                    out.data(), stream_);
}

void CudaBackend::add_rms_norm(Tensor& residual, const Tensor& x, const Tensor& weight, float eps,
                               Tensor& out) {
  require(x.shape() == residual.shape() && residual.ndim() == 2 && weight.numel() == x.dim(1) &&
              out.shape() == x.shape(),
          "add_rms_norm",
          "shapes " + shape_string(x.shape()) + ", " + shape_string(residual.shape()));
  require_same_dtype(x, residual, "add_rms_norm");
  require_same_dtype(x, out, "add_rms_norm");
  kernels::rms_norm(x.dtype(), x.data(), residual.data(), weight.data(), eps, x.dim(0), x.dim(1),
                    out.data(), stream_);
}

void CudaBackend::linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out) {
  require(x.ndim() == 2 && weight.ndim() == 2 && weight.dim(1) == x.dim(1), "linear",
          "x " + shape_string(x.shape()) + " and weight " + shape_string(weight.shape()));
  const int64_t rows = x.dim(0), in = x.dim(1), out_features = weight.dim(0);
  require(out.shape() == Shape({rows, out_features}), "linear",
          "output has shape " + shape_string(out.shape()));
  require_same_dtype(x, weight, "linear");
  require_same_dtype(x, out, "linear");
  if (rows == 0) return;
  // Row-major out[rows, out] = x[rows, in] · W[out, in]ᵀ is, seen column-major by cuBLAS,
  // outᵀ[out, rows] = W · xᵀ with W read transposed: no copies, the torch.nn.Linear layout.
  // A bias is put in `out` first and the GEMM adds to it (beta = 1): the sum happens in fp32
  // and is rounded once, as torch's addmm does.
  const bool has_bias = bias.defined() && bias.numel() > 0;
  if (has_bias) {
    require(bias.numel() == out_features, "linear", "bias has shape " + shape_string(bias.shape()));
    require_same_dtype(x, bias, "linear");
  }
  // A decode step of a few sequences reads each weight for one or two tokens: a pure stream,
  // which servelab's GEMV kernel reads closer to the memory's speed than cuBLAS does.
  if (kernels::gemv_supported(x.dtype(), rows, in, x.data(), weight.data(), out.data())) {
    kernels::gemv(x.dtype(), x.data(), rows, weight.data(), has_bias ? bias.data() : nullptr,
                  out_features, in, out.data(), stream_);
    return;
  }
  if (has_bias) {
    CUDA_CHECK(cudaMemsetAsync(out.data(), 0, out.nbytes(), stream_));
    kernels::add_bias(x.dtype(), out.data(), bias.data(), rows, out_features, stream_);
  }
  const float alpha = 1.0f, beta = has_bias ? 1.0f : 0.0f;
  const cudaDataType_t type = cuda_type(x.dtype());
  CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out_features),
                            static_cast<int>(rows), static_cast<int>(in), &alpha, weight.data(),
                            type, static_cast<int>(in), x.data(), type, static_cast<int>(in), &beta,
                            out.data(), type, static_cast<int>(out_features), CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
}

void CudaBackend::rope(Tensor& x, const Tensor& positions, const Tensor& inv_freq) {
  Tensor no_keys;
  rope_queries_and_keys(x, no_keys, positions, inv_freq);
}

void CudaBackend::rope_queries_and_keys(Tensor& queries, Tensor& keys, const Tensor& positions,
                                        const Tensor& inv_freq) {
  const bool with_keys = keys.defined() && keys.numel() > 0;
  require(queries.ndim() == 3 && positions.dtype() == DType::kI32 &&
              positions.numel() == queries.dim(0),
          "rope",
          "x " + shape_string(queries.shape()) + " with " + std::to_string(positions.numel()) +
              " positions");
  require(inv_freq.dtype() == DType::kF32 && 2 * inv_freq.numel() == queries.dim(2), "rope",
          "needs head_dim / 2 F32 frequencies");
  if (with_keys) {
    require(keys.ndim() == 3 && keys.dim(0) == queries.dim(0) && keys.dim(2) == queries.dim(2),
            "rope", "keys " + shape_string(keys.shape()) + " do not match the queries");
    require_same_dtype(queries, keys, "rope");
  }
  kernels::rope(queries.dtype(), queries.data(), static_cast<int>(queries.dim(1)),
                with_keys ? keys.data() : nullptr, with_keys ? static_cast<int>(keys.dim(1)) : 0,
                static_cast<int>(queries.dim(2)), static_cast<const int32_t*>(positions.data()),
                static_cast<const float*>(inv_freq.data()), queries.dim(0), stream_);
}

void CudaBackend::silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
  require(up.shape() == gate.shape() && out.shape() == gate.shape(), "silu_mul", "shapes differ");
  require_same_dtype(gate, up, "silu_mul");
  require_same_dtype(gate, out, "silu_mul");
  kernels::silu_mul(gate.dtype(), gate.data(), up.data(), out.data(), gate.numel(), stream_);
}

void CudaBackend::add(Tensor& x, const Tensor& y) {
  require(x.shape() == y.shape(), "add", "shapes differ");
  require_same_dtype(x, y, "add");
  kernels::add(x.dtype(), x.data(), y.data(), x.numel(), stream_);
}

void CudaBackend::attention(const Tensor& queries, const Tensor& keys, const Tensor& values,
                            const Step& step, int layer, Tensor& out) {
  // This layer's keys and values may have just been swapped in, or its blocks freed by a
  // swap-out that must finish reading them before new keys are written: wait for this layer's
  // swaps only, so that the other layers' copies go on while this one computes.
  wait_for_swaps(layer);
  const StepLayout& layout = step.layout;
  auto& state = *static_cast<CudaStepState*>(step.backend_state.get());
  require(queries.ndim() == 3 && keys.ndim() == 3 && values.shape() == keys.shape(), "attention",
          "queries " + shape_string(queries.shape()) + ", keys " + shape_string(keys.shape()));
  require(queries.dim(0) == layout.num_tokens() && keys.dim(0) == layout.num_tokens(), "attention",
          "rows do not match the step's tokens");
  const int64_t num_heads = queries.dim(1), num_kv_heads = keys.dim(1), head_dim = queries.dim(2);
  require(keys.dim(2) == head_dim && num_heads % num_kv_heads == 0, "attention",
          "head shapes do not fit");
  require(out.shape() == Shape({layout.num_tokens(), num_heads * head_dim}), "attention",
          "output has shape " + shape_string(out.shape()));
  const DType dtype = queries.dtype();
  kernels::HeadShape heads;
  heads.num_heads = static_cast<int>(num_heads);
  heads.num_kv_heads = static_cast<int>(num_kv_heads);
  heads.head_dim = static_cast<int>(head_dim);
  heads.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  kernels::PackedBatch batch;
  batch.query_start = static_cast<const int32_t*>(step.query_start.data());
  batch.context_lens = static_cast<const int32_t*>(step.context_lens.data());
  batch.num_seqs = static_cast<int>(layout.num_seqs());
  batch.num_tokens = layout.num_tokens();
  batch.max_query_len = layout.max_query_len;
  batch.max_context_len = layout.max_context_len;

  if (layout.paged == nullptr) {
    const int64_t num_seqs = layout.num_seqs();
    require(layer >= 0 && layer < static_cast<int>(layout.contiguous.front()->keys.size()),
            "attention", "no layer " + std::to_string(layer));
    void* const* key_caches = state.key_pointers + layer * num_seqs;
    void* const* value_caches = state.value_pointers + layer * num_seqs;
    kernels::write_contiguous_kv(dtype, keys.data(), values.data(), key_caches, value_caches, batch,
                                 heads, stream_);
    kernels::naive_attention(dtype, queries.data(), key_caches, value_caches, batch, heads,
                             out.data(), stream_);
    return;
  }

  PagedKvCache& cache = *layout.paged;
  require(layer >= 0 && layer < static_cast<int>(cache.keys.size()), "attention",
          "no layer " + std::to_string(layer));
  require(cache.num_kv_heads == num_kv_heads && cache.head_dim == head_dim, "attention",
          "keys do not fit the paged cache's heads");
  Tensor& key_cache = cache.keys[layer];
  Tensor& value_cache = cache.values[layer];
  require_same_dtype(queries, key_cache, "attention");
  kernels::PagedCache paged;
  paged.key_cache = key_cache.data();
  paged.value_cache = value_cache.data();
  paged.block_tables = static_cast<const int32_t*>(step.block_tables.data());
  paged.blocks_per_seq = layout.blocks_per_seq;
  paged.block_size = static_cast<int>(cache.block_size);

  if (state.num_decode > 0) {
    // Decode sequences: write the one new key/value each, then PagedAttention (split version:
    // it fills the GPU at any batch size, and equals version 1 when one partition suffices).
    const int32_t* slots = state.all_decode ? static_cast<const int32_t*>(step.slot_mapping.data())
                                            : state.decode_slots;
    kernels::write_paged_kv(dtype, keys.data(), values.data(), slots, layout.num_tokens(),
                            key_cache.data(), value_cache.data(), paged.block_size, heads, stream_);
    kernels::PagedCache decode_cache = paged;
    const int32_t* context_lens = batch.context_lens;
    const int32_t* rows = nullptr;
    if (!state.all_decode) {
      decode_cache.block_tables = state.decode_block_tables;
      context_lens = state.decode_context_lens;
      rows = state.decode_rows;
    }
    if (state.split_workspace == nullptr) {
      state.split_workspace_bytes = kernels::paged_attention_split_workspace(
          state.num_decode, layout.max_context_len, 0, heads);
      state.split_workspace = arena_.allocate(static_cast<size_t>(state.split_workspace_bytes));
    }
    kernels::paged_attention_decode_split(dtype, queries.data(), decode_cache, context_lens, rows,
                                          state.num_decode, layout.max_context_len, 0, heads,
                                          state.split_workspace, state.split_workspace_bytes,
                                          out.data(), stream_);
  }
  if (state.num_prefill > 0) {
    kernels::prefill_attention(dtype, queries.data(), keys.data(), values.data(), batch,
                               state.prefill_seq_ids, state.num_prefill, paged, key_cache.data(),
                               value_cache.data(), heads, out.data(), stream_);
  }
}

void CudaBackend::argmax(const Tensor& logits, Tensor& ids) {
  require(logits.ndim() == 2 && ids.dtype() == DType::kI32 && ids.numel() == logits.dim(0),
          "argmax", "needs [rows, vocab] logits and [rows] I32 ids");
  kernels::argmax(logits.dtype(), logits.data(), logits.dim(0), logits.dim(1),
                  static_cast<int32_t*>(ids.data()), stream_);
}

void CudaBackend::fill_normal(Tensor& tensor, float std, uint64_t seed) {
  check_device_tensor(tensor, "fill_normal target");
  kernels::fill_normal(tensor.dtype(), tensor.data(), tensor.numel(), std, seed, stream_);
}

}  // namespace servelab
