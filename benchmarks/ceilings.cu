// servelab_bench_ceilings: what this GPU can do at best, the yardsticks every other benchmark is
// judged against. It measures, with nothing of servelab's own:
//  - copy bandwidth: cudaMemcpyAsync device-to-device of a large buffer, counting the bytes read
//    plus the bytes written (2N per copy of N bytes), and the same through a simple copy kernel;
//  - read bandwidth: a vectorised kernel that only reads (what a decode step mostly does);
//  - bf16 GEMM throughput (cuBLAS, fp32 accumulation) on a square 8192 problem and on the shapes
//    of a Llama-3-8B prefill of 2048 tokens.
// Every number is the median of >= 10 CUDA-event timings after a warm-up, on random data.
//
// usage: servelab_bench_ceilings --json FILE [--quick] [--buffer-mib N] [--repeats N]
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "bench_common.cuh"

namespace servelab::bench {
namespace {

const char* cublas_status_name(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "CUBLAS_STATUS_LICENSE_ERROR";
    default:
      return "unknown cuBLAS status";
  }
}

#define BENCH_CUBLAS_CHECK(call)                                                          \
  do {                                                                                    \
    cublasStatus_t bench_status_ = (call);                                                \
    if (bench_status_ != CUBLAS_STATUS_SUCCESS) {                                         \
      throw std::runtime_error(std::string(#call) +                                       \
                               " failed: " + cublas_status_name(bench_status_) + " at " + \
                               __FILE__ + ":" + std::to_string(__LINE__));                \
    }                                                                                     \
  } while (0)

/// A cudaMalloc'd buffer, freed on destruction.
class DeviceMemory {
 public:
  explicit DeviceMemory(size_t bytes) : bytes_(bytes) {
    BENCH_CUDA_CHECK(cudaMalloc(&data_, bytes));
  }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  ~DeviceMemory() { cudaFree(data_); }
  void* get() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// Each thread keeps four 16-byte loads in flight; the XOR of everything read is stored only when
// it equals a value it practically never has, so the compiler must perform every load but the
// kernel writes (almost) nothing.
__global__ void read_kernel(const uint4* __restrict__ in, size_t count, uint32_t* sink) {
  size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  uint32_t acc = 0;
  for (; i + 3 * stride < count; i += 4 * stride) {
    uint4 a = in[i], b = in[i + stride], c = in[i + 2 * stride], d = in[i + 3 * stride];
    acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^
           d.w;
  }
  for (; i < count; i += stride) {
    uint4 a = in[i];
    acc ^= a.x ^ a.y ^ a.z ^ a.w;
  }
  if (acc == 0x9E3779B9u) *sink = acc;
}

__global__ void copy_kernel(const uint4* __restrict__ in, uint4* __restrict__ out, size_t count) {
  size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + stride < count; i += 2 * stride) {
    uint4 a = in[i], b = in[i + stride];
    out[i] = a;
    out[i + stride] = b;
  }
  for (; i < count; i += stride) out[i] = in[i];
}

struct Bandwidth {
  std::string name;
  double bytes_per_call = 0;
  std::vector<double> milliseconds;
  double gbps() const { return bytes_per_call / (median(milliseconds) * 1e-3) / 1e9; }
};

void write_bandwidth(Json& json, const Bandwidth& result, const char* counted) {
  json.begin_object(result.name.c_str())
      .field("gbps", result.gbps())
      .field("ms", median(result.milliseconds))
      .field("bytes_per_call", result.bytes_per_call)
      .field("bytes_counted", counted)
      .field("repeats", static_cast<int64_t>(result.milliseconds.size()))
      .numbers("ms_all", result.milliseconds)
      .end_object();
}

struct GemmShape {
  const char* name;
  int64_t m, n, k;  // out[m, n] = x[m, k] . W[n, k]^T (tokens m, out features n, in features k)
};

struct GemmResult {
  GemmShape shape;
  std::vector<double> milliseconds;
  double tflops() const {
    return 2.0 * shape.m * shape.n * shape.k / (median(milliseconds) * 1e-3) / 1e12;
  }
};

/// bf16 GEMM as a linear layer computes it: weights [n, k] row-major, activations [m, k]
/// row-major, output [m, n] row-major. In cuBLAS' column-major terms: C^T[n, m] = W[n, k] . x^T,
/// i.e. op(A) = A^T with A = W seen as [k, n] column-major ("TN"), the layout cuBLAS is fastest in.
GemmResult time_gemm(cublasHandle_t handle, const GemmShape& shape, cudaStream_t stream, int warmup,
                     int repeats) {
  DeviceMemory weights(shape.n * shape.k * 2), activations(shape.m * shape.k * 2),
      output(shape.m * shape.n * 2);
  fill_uniform_bf16(weights.get(), shape.n * shape.k, 11, 1.0f, stream);
  fill_uniform_bf16(activations.get(), shape.m * shape.k, 12, 1.0f, stream);
  const float alpha = 1.0f, beta = 0.0f;
  auto launch = [&](int) {
    BENCH_CUBLAS_CHECK(cublasGemmEx(
        handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(shape.n), static_cast<int>(shape.m),
        static_cast<int>(shape.k), &alpha, weights.get(), CUDA_R_16BF, static_cast<int>(shape.k),
        activations.get(), CUDA_R_16BF, static_cast<int>(shape.k), &beta, output.get(), CUDA_R_16BF,
        static_cast<int>(shape.n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  };
  GemmResult result{shape, time_calls(launch, stream, warmup, repeats)};
  BENCH_CUDA_CHECK(cudaStreamSynchronize(stream));
  return result;
}

int run(const Flags& flags) {
  std::string json_path = flags.value("--json", "");
  if (json_path.empty()) throw std::runtime_error("--json FILE is required");
  bool quick = flags.has("--quick");
  int repeats = static_cast<int>(std::stol(flags.value("--repeats", quick ? "10" : "20")));
  if (repeats < 10) throw std::runtime_error("--repeats must be at least 10");
  size_t buffer_bytes =
      static_cast<size_t>(std::stoll(flags.value("--buffer-mib", quick ? "1024" : "2048"))) << 20;

  DeviceFacts facts = device_facts();
  std::printf("ceilings: %s, %d SMs, %.1f GiB, L2 %.0f MiB\n", facts.name.c_str(), facts.sm_count,
              facts.total_memory_bytes / 1073741824.0, facts.l2_bytes / 1048576.0);
  cudaStream_t stream;
  BENCH_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

  // ---- bandwidth ----
  DeviceMemory source(buffer_bytes), destination(buffer_bytes), sink(sizeof(uint32_t));
  size_t vectors = buffer_bytes / sizeof(uint4);
  fill_uniform_bf16(source.get(), buffer_bytes / 2, 1, 1.0f, stream);
  fill_uniform_bf16(destination.get(), buffer_bytes / 2, 2, 1.0f, stream);
  int blocks = facts.sm_count * 4, threads = 512;

  Bandwidth memcpy_result{"memcpy_d2d", 2.0 * buffer_bytes, {}};
  memcpy_result.milliseconds = time_calls(
      [&](int) {
        BENCH_CUDA_CHECK(cudaMemcpyAsync(destination.get(), source.get(), buffer_bytes,
                                         cudaMemcpyDeviceToDevice, stream));
      },
      stream, 3, repeats);
  std::printf("ceilings: memcpy d2d      %8.1f GB/s (read + write)\n", memcpy_result.gbps());

  Bandwidth copy_result{"copy_kernel", 2.0 * buffer_bytes, {}};
  copy_result.milliseconds = time_calls(
      [&](int) {
        copy_kernel<<<blocks, threads, 0, stream>>>(static_cast<const uint4*>(source.get()),
                                                    static_cast<uint4*>(destination.get()),
                                                    vectors);
        BENCH_CUDA_CHECK(cudaGetLastError());
      },
      stream, 3, repeats);
  std::printf("ceilings: copy kernel     %8.1f GB/s (read + write)\n", copy_result.gbps());

  Bandwidth read_result{"read_kernel", static_cast<double>(buffer_bytes), {}};
  read_result.milliseconds = time_calls(
      [&](int) {
        read_kernel<<<blocks, threads, 0, stream>>>(static_cast<const uint4*>(source.get()),
                                                    vectors, static_cast<uint32_t*>(sink.get()));
        BENCH_CUDA_CHECK(cudaGetLastError());
      },
      stream, 3, repeats);
  std::printf("ceilings: read kernel     %8.1f GB/s (read only)\n", read_result.gbps());

  // ---- GEMM ----
  cublasHandle_t handle;
  BENCH_CUBLAS_CHECK(cublasCreate(&handle));
  BENCH_CUBLAS_CHECK(cublasSetStream(handle, stream));
  DeviceMemory workspace(32u << 20);  // what NVIDIA recommends for Hopper
  BENCH_CUBLAS_CHECK(cublasSetWorkspace(handle, workspace.get(), workspace.bytes()));
  std::vector<GemmShape> shapes = {
      {"square-8192", 8192, 8192, 8192},
      {"prefill-2048-mlp-up", 2048, 14336, 4096},
      {"prefill-2048-qkv", 2048, 6144, 4096},
      {"prefill-2048-o", 2048, 4096, 4096},
      {"prefill-2048-mlp-gate-up", 2048, 28672, 4096},
      {"prefill-2048-mlp-down", 2048, 4096, 14336},
  };
  if (quick) shapes.resize(2);
  std::vector<GemmResult> gemms;
  double best_tflops = 0;
  for (const GemmShape& shape : shapes) {
    gemms.push_back(time_gemm(handle, shape, stream, 5, repeats));
    best_tflops = std::max(best_tflops, gemms.back().tflops());
    std::printf("ceilings: gemm %-26s m=%-5lld n=%-5lld k=%-5lld %7.1f TFLOP/s\n", shape.name,
                static_cast<long long>(shape.m), static_cast<long long>(shape.n),
                static_cast<long long>(shape.k), gemms.back().tflops());
  }
  BENCH_CUBLAS_CHECK(cublasDestroy(handle));
  BENCH_CUDA_CHECK(cudaStreamDestroy(stream));

  Json json;
  json.begin_object().field("tool", "servelab_bench_ceilings").field("command", flags.command());
  write_device(json, facts);
  json.field("copy_bandwidth_gbps", memcpy_result.gbps())
      .field("read_bandwidth_gbps", read_result.gbps())
      .field("gemm_tflops", best_tflops);
  json.begin_object("bandwidth").field("buffer_bytes", static_cast<int64_t>(buffer_bytes));
  write_bandwidth(json, memcpy_result, "bytes read + bytes written (2 x buffer)");
  write_bandwidth(json, copy_result, "bytes read + bytes written (2 x buffer)");
  write_bandwidth(json, read_result, "bytes read (1 x buffer)");
  json.end_object();
  json.begin_array("gemm");
  for (const GemmResult& gemm : gemms) {
    json.begin_object()
        .field("name", gemm.shape.name)
        .field("m", gemm.shape.m)
        .field("n", gemm.shape.n)
        .field("k", gemm.shape.k)
        .field("dtype", "bf16")
        .field("accumulate", "fp32")
        .field("layout", "out[m,n] = x[m,k] . W[n,k]^T (cuBLAS TN)")
        .field("flops", 2.0 * gemm.shape.m * gemm.shape.n * gemm.shape.k)
        .field("ms", median(gemm.milliseconds))
        .field("tflops", gemm.tflops())
        .field("repeats", static_cast<int64_t>(gemm.milliseconds.size()))
        .end_object();
  }
  json.end_array().end_object();
  json.save(json_path);
  std::printf("ceilings: wrote %s\n", json_path.c_str());
  return 0;
}

}  // namespace
}  // namespace servelab::bench

int main(int argc, char** argv) {
  try {
    servelab::bench::Flags flags(argc, argv);
    if (flags.has("--help") || flags.has("-h")) {
      std::puts(
          "usage: servelab_bench_ceilings --json FILE [--quick] [--buffer-mib N] [--repeats N]");
      return 0;
    }
    return servelab::bench::run(flags);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "servelab_bench_ceilings: %s\n", error.what());
    return 1;
  }
}
