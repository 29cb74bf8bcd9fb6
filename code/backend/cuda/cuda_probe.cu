// servelab_cuda_probe: checks that CUDA code built by this project runs on the machine's GPU.
// It prints the device, runs one kernel on random input and compares with the CPU, and exits 0 on
// success, 77 (CTest's "skipped") when there is no GPU, 1 on a wrong result or a CUDA error.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace {

#define CHECK_CUDA(call)                                                          \
  do {                                                                            \
    cudaError_t status = (call);                                                  \
    if (status != cudaSuccess) {                                                  \
      std::fprintf(stderr, "%s failed: %s\n", #call, cudaGetErrorString(status)); \
      return 1;                                                                   \
    }                                                                             \
  } while (0)

// y[i] = a * x[i] + y[i]
__global__ void saxpy(int n, float a, const float* x, float* y) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: skipped\n");
    return 77;
  }
  cudaDeviceProp properties{};
  CHECK_CUDA(cudaGetDeviceProperties(&properties, 0));
  std::printf("device 0: %s, compute capability %d.%d, %d SMs, %.1f GiB\n", properties.name,
              properties.major, properties.minor, properties.multiProcessorCount,
              properties.totalGlobalMem / 1073741824.0);

  const int n = (1 << 20) + 3;  // not a multiple of the block size
  std::mt19937 rng(0);
  std::normal_distribution<float> normal;
  std::vector<float> x(n), y(n), result(n);
  for (int i = 0; i < n; ++i) x[i] = normal(rng), y[i] = normal(rng);
  float *device_x = nullptr, *device_y = nullptr;
  CHECK_CUDA(cudaMalloc(&device_x, n * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&device_y, n * sizeof(float)));
  CHECK_CUDA(cudaMemcpy(device_x, x.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(device_y, y.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  saxpy<<<(n + 255) / 256, 256>>>(n, 2.5f, device_x, device_y);
  CHECK_CUDA(cudaGetLastError());
  CHECK_CUDA(cudaMemcpy(result.data(), device_y, n * sizeof(float), cudaMemcpyDeviceToHost));
  CHECK_CUDA(cudaFree(device_x));
  CHECK_CUDA(cudaFree(device_y));
  for (int i = 0; i < n; ++i) {
    float expected = 2.5f * x[i] + y[i];
    if (std::fabs(result[i] - expected) > 1e-6f + 1e-6f * std::fabs(expected)) {
      std::printf("mismatch at %d: %g vs %g\n", i, result[i], expected);
      return 1;
    }
  }
  std::printf("saxpy on %d elements matches the CPU\n", n);
  return 0;
}
