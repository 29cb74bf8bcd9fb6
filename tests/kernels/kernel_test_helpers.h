// Shared by the kernel tests: device buffers that convert to and from fp32 host vectors, poisoned
// outputs (NaN everywhere, so an element a kernel forgot to write fails the comparison), the
// atol + rtol·|ref| comparison, and a clean skip where there is no GPU.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/error.h"

namespace servelab::testing {

/// True when a CUDA device can be used by this process.
inline bool gpu_available() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

/// Skips the test (GTest "SKIPPED", which CTest shows as skipped) where no GPU is present.
#define SERVELAB_REQUIRE_GPU()                                       \
  do {                                                               \
    if (!::servelab::testing::gpu_available()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

inline void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) fail(what, ": ", cudaGetErrorString(status));
}

/// Rounds fp32 values to what `dtype` can hold (what the kernel will actually see).
inline std::vector<float> round_to(DType dtype, std::vector<float> values) {
  for (float& v : values) {
    if (dtype == DType::kBF16) v = bf16_to_float(float_to_bf16(v));
    if (dtype == DType::kF16) v = fp16_to_float(float_to_fp16(v));
  }
  return values;
}

/// A cudaMalloc'd buffer of `count` elements of `dtype`, freed on destruction.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(DType dtype, int64_t count) : dtype_(dtype), count_(count) {
    check_cuda(cudaMalloc(&data_, std::max<size_t>(1, bytes())), "cudaMalloc");
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept { *this = std::move(other); }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(dtype_, other.dtype_);
    std::swap(count_, other.count_);
    return *this;
  }
  ~DeviceBuffer() {
    if (data_ != nullptr) cudaFree(data_);
  }

  /// Uploads fp32 values, converted to the buffer's dtype.
  static DeviceBuffer from(DType dtype, const std::vector<float>& values) {
    DeviceBuffer buffer(dtype, static_cast<int64_t>(values.size()));
    buffer.upload(values);
    return buffer;
  }
  static DeviceBuffer from_ints(const std::vector<int32_t>& values) {
    DeviceBuffer buffer(DType::kI32, static_cast<int64_t>(values.size()));
    check_cuda(cudaMemcpy(buffer.data_, values.data(), buffer.bytes(), cudaMemcpyHostToDevice),
               "upload ints");
    return buffer;
  }
  /// A buffer of pointers (e.g. per-sequence caches), uploaded as 64-bit values.
  static DeviceBuffer from_pointers(const std::vector<void*>& pointers) {
    DeviceBuffer buffer(DType::kI32, 2 * static_cast<int64_t>(pointers.size()));
    check_cuda(cudaMemcpy(buffer.data_, pointers.data(), pointers.size() * sizeof(void*),
                          cudaMemcpyHostToDevice),
               "upload pointers");
    return buffer;
  }

  void upload(const std::vector<float>& values) {
    if (static_cast<int64_t>(values.size()) != count_) fail("upload: size mismatch");
    std::vector<uint8_t> raw(bytes());
    for (int64_t i = 0; i < count_; ++i) {
      if (dtype_ == DType::kF32) {
        std::memcpy(raw.data() + 4 * i, &values[i], 4);
      } else {
        uint16_t bits = dtype_ == DType::kBF16 ? float_to_bf16(values[i]) : float_to_fp16(values[i]);
        std::memcpy(raw.data() + 2 * i, &bits, 2);
      }
    }
    check_cuda(cudaMemcpy(data_, raw.data(), bytes(), cudaMemcpyHostToDevice), "upload");
  }

  /// Fills every byte with 0xFF: a NaN in fp32, fp16 and bf16 alike, -1 as int32.
  void poison() { check_cuda(cudaMemset(data_, 0xFF, bytes()), "poison"); }

  std::vector<float> download() const {
    check_cuda(cudaDeviceSynchronize(), "kernel");
    std::vector<uint8_t> raw(bytes());
    check_cuda(cudaMemcpy(raw.data(), data_, bytes(), cudaMemcpyDeviceToHost), "download");
    std::vector<float> values(static_cast<size_t>(count_));
    convert_to_f32(dtype_, raw.data(), values.data(), values.size());
    return values;
  }
  std::vector<int32_t> download_ints() const {
    check_cuda(cudaDeviceSynchronize(), "kernel");
    std::vector<int32_t> values(static_cast<size_t>(count_));
    check_cuda(cudaMemcpy(values.data(), data_, bytes(), cudaMemcpyDeviceToHost), "download");
    return values;
  }

  void* data() const { return data_; }
  template <typename T>
  T* as() const { return static_cast<T*>(data_); }
  int64_t count() const { return count_; }
  size_t bytes() const { return static_cast<size_t>(count_) * dtype_size(dtype_); }

 private:
  void* data_ = nullptr;
  DType dtype_ = DType::kF32;
  int64_t count_ = 0;
};

/// Normal(0, std) values from a fresh seed per call site (never zeros).
inline std::vector<float> random_values(int64_t count, uint64_t seed, float std = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, std);
  std::vector<float> values(static_cast<size_t>(count));
  for (float& v : values) v = normal(rng);
  return values;
}

/// Every element within atol + rtol·|expected|; a NaN (an unwritten, poisoned element) fails.
/// Reports the first few mismatches and the worst scaled error.
inline ::testing::AssertionResult all_close(const std::vector<float>& actual,
                                            const std::vector<float>& expected, double atol,
                                            double rtol) {
  if (actual.size() != expected.size()) {
    return ::testing::AssertionFailure()
           << "size " << actual.size() << " vs expected " << expected.size();
  }
  int64_t bad = 0;
  double worst = 0.0;
  std::string first;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double tolerance = atol + rtol * std::fabs(expected[i]);
    const double error = std::fabs(static_cast<double>(actual[i]) - expected[i]);
    const bool ok = std::isfinite(actual[i]) && error <= tolerance;
    if (std::isfinite(actual[i])) worst = std::max(worst, error / tolerance);
    if (!ok && bad++ < 5) {
      first += " [" + std::to_string(i) + "] " + std::to_string(actual[i]) + " vs " +
               std::to_string(expected[i]) + ";";
    }
  }
  if (bad > 0) {
    return ::testing::AssertionFailure() << bad << " of " << actual.size()
                                         << " elements differ (atol " << atol << ", rtol " << rtol
                                         << "):" << first << " worst error/tolerance " << worst;
  }
  return ::testing::AssertionSuccess() << "worst error/tolerance " << worst;
}

/// Tolerances for comparing a kernel in `dtype` with the fp32 CPU reference computed on the same
/// (rounded) inputs: the kernel rounds its output once, so the bound is that rounding plus fp32
/// reordering.
inline double default_rtol(DType dtype) {
  return dtype == DType::kF32 ? 1e-4 : dtype == DType::kF16 ? 2e-3 : 1.6e-2;
}
inline double default_atol(DType dtype) {
  return dtype == DType::kF32 ? 1e-5 : dtype == DType::kF16 ? 1e-3 : 1e-2;
}

}  // namespace servelab::testing
