// What the CUDA micro-benchmarks share: checked CUDA calls, CUDA-event timing with warm-up and
// medians, random fills, device facts, command-line flags and a small JSON writer (so that the
// benchmarks build with nothing but the CUDA toolkit). Benchmarks only: never used by the engine.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace servelab::bench {

/// Throws std::runtime_error("<call> failed: <name> (<reason>) at file:line").
#define BENCH_CUDA_CHECK(call)                                                          \
  do {                                                                                  \
    cudaError_t bench_status_ = (call);                                                 \
    if (bench_status_ != cudaSuccess) {                                                 \
      std::ostringstream bench_message_;                                                \
      bench_message_ << #call << " failed: " << cudaGetErrorName(bench_status_) << " (" \
                     << cudaGetErrorString(bench_status_) << ") at " << __FILE__ << ":" \
                     << __LINE__;                                                       \
      throw std::runtime_error(bench_message_.str());                                   \
    }                                                                                   \
  } while (0)

// ---- command line ------------------------------------------------------------------------------

/// The flags of a benchmark: `--name value` pairs and `--name` switches.
class Flags {
 public:
  Flags(int argc, char** argv) : arguments_(argv + 1, argv + argc) {
    for (int i = 0; i < argc; ++i) command_ += (i ? " " : "") + std::string(argv[i]);
  }
  bool has(const std::string& name) const {
    return std::find(arguments_.begin(), arguments_.end(), name) != arguments_.end();
  }
  std::string value(const std::string& name, const std::string& fallback) const {
    for (size_t i = 0; i + 1 < arguments_.size(); ++i) {
      if (arguments_[i] == name) return arguments_[i + 1];
    }
    if (has(name)) throw std::runtime_error(name + " needs a value");
    return fallback;
  }
  /// "1,4,16" -> {1, 4, 16}
  std::vector<int64_t> int_list(const std::string& name,
                                const std::vector<int64_t>& fallback) const {
    std::string text = value(name, "");
    if (text.empty()) return fallback;
    std::vector<int64_t> values;
    std::stringstream stream(text);
    std::string item;
    while (std::getline(stream, item, ',')) {
      try {
        values.push_back(std::stoll(item));
      } catch (const std::exception&) {
        throw std::runtime_error(name + ": '" + item + "' is not an integer");
      }
    }
    return values;
  }
  const std::string& command() const { return command_; }

 private:
  std::vector<std::string> arguments_;
  std::string command_;
};

// ---- statistics and timing ----------------------------------------------------------------------

inline double median(std::vector<double> values) {
  if (values.empty()) return std::nan("");
  std::sort(values.begin(), values.end());
  size_t middle = values.size() / 2;
  return values.size() % 2 ? values[middle] : 0.5 * (values[middle - 1] + values[middle]);
}

/// Times `launch` (which enqueues work on `stream`): `warmup` untimed calls, then `measurements`
/// timings of `inner` back-to-back calls each, between two CUDA events. Returns milliseconds per
/// call, one value per measurement.
template <typename Launch>
std::vector<double> time_calls(Launch&& launch, cudaStream_t stream, int warmup, int measurements,
                               int inner = 1) {
  cudaEvent_t start, stop;
  BENCH_CUDA_CHECK(cudaEventCreate(&start));
  BENCH_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < warmup; ++i) launch(i);
  BENCH_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<double> milliseconds;
  for (int m = 0; m < measurements; ++m) {
    BENCH_CUDA_CHECK(cudaEventRecord(start, stream));
    for (int i = 0; i < inner; ++i) launch(i);
    BENCH_CUDA_CHECK(cudaEventRecord(stop, stream));
    BENCH_CUDA_CHECK(cudaEventSynchronize(stop));
    float elapsed = 0.0f;
    BENCH_CUDA_CHECK(cudaEventElapsedTime(&elapsed, start, stop));
    milliseconds.push_back(static_cast<double>(elapsed) / inner);
  }
  BENCH_CUDA_CHECK(cudaEventDestroy(start));
  BENCH_CUDA_CHECK(cudaEventDestroy(stop));
  return milliseconds;
}

// ---- random fills (device) ---------------------------------------------------------------------

__host__ __device__ inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/// out[i] = uniform in [-scale, scale), as bf16; never all zeros.
static __global__ void fill_uniform_bf16_kernel(__nv_bfloat16* out, size_t count, uint64_t seed,
                                                float scale) {
  size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    uint64_t bits = splitmix64(seed ^ (i * 0xD1B54A32D192ED03ull));
    float unit = static_cast<float>(bits >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    out[i] = __float2bfloat16_rn((2.0f * unit - 1.0f) * scale);
  }
}

static inline void fill_uniform_bf16(void* out, size_t count, uint64_t seed, float scale,
                                     cudaStream_t stream) {
  fill_uniform_bf16_kernel<<<1024, 256, 0, stream>>>(static_cast<__nv_bfloat16*>(out), count, seed,
                                                     scale);
  BENCH_CUDA_CHECK(cudaGetLastError());
}

// ---- JSON --------------------------------------------------------------------------------------

/// A minimal streaming JSON writer: objects, arrays, strings, numbers (non-finite -> null).
class Json {
 public:
  Json& begin_object(const char* key = nullptr) { return open(key, '{'); }
  Json& end_object() { return close('}'); }
  Json& begin_array(const char* key = nullptr) { return open(key, '['); }
  Json& end_array() { return close(']'); }
  Json& field(const char* key, const std::string& value) {
    prefix(key);
    quote(value);
    return *this;
  }
  Json& field(const char* key, const char* value) { return field(key, std::string(value)); }
  Json& field(const char* key, double value) {
    prefix(key);
    if (std::isfinite(value)) {
      std::ostringstream number;
      number << std::setprecision(10) << value;
      out_ << number.str();
    } else {
      out_ << "null";
    }
    return *this;
  }
  Json& field(const char* key, int64_t value) {
    prefix(key);
    out_ << value;
    return *this;
  }
  Json& field(const char* key, int value) { return field(key, static_cast<int64_t>(value)); }
  Json& field(const char* key, bool value) {
    prefix(key);
    out_ << (value ? "true" : "false");
    return *this;
  }
  Json& numbers(const char* key, const std::vector<double>& values) {
    begin_array(key);
    for (double v : values) field(nullptr, v);
    return end_array();
  }
  std::string str() const { return out_.str() + "\n"; }

  /// Writes the document to `path` (through a temporary file, so a reader never sees half).
  void save(const std::string& path) const {
    std::string temporary = path + ".tmp";
    {
      std::ofstream file(temporary);
      if (!file) throw std::runtime_error("cannot write " + temporary);
      file << str();
    }
    if (std::rename(temporary.c_str(), path.c_str()) != 0) {
      throw std::runtime_error("cannot rename " + temporary + " to " + path);
    }
  }

 private:
  Json& open(const char* key, char bracket) {
    prefix(key);
    out_ << bracket;
    first_.push_back(true);
    return *this;
  }
  Json& close(char bracket) {
    first_.pop_back();
    out_ << bracket;
    return *this;
  }
  void prefix(const char* key) {
    if (!first_.empty()) {
      if (!first_.back()) out_ << ", ";
      first_.back() = false;
    }
    if (key != nullptr) {
      quote(key);
      out_ << ": ";
    }
  }
  void quote(const std::string& text) {
    out_ << '"';
    for (unsigned char c : text) {
      if (c == '"' || c == '\\') {
        out_ << '\\' << c;
      } else if (c < 0x20) {
        char escaped[8];
        std::snprintf(escaped, sizeof(escaped), "\\u%04x", c);
        out_ << escaped;
      } else {
        out_ << c;
      }
    }
    out_ << '"';
  }

  std::ostringstream out_;
  std::vector<bool> first_;
};

// ---- the device ---------------------------------------------------------------------------------

struct DeviceFacts {
  std::string name;
  int sm_count = 0;
  int compute_major = 0, compute_minor = 0;
  int64_t total_memory_bytes = 0;
  int64_t l2_bytes = 0;
  int memory_clock_khz = 0;
  int memory_bus_bits = 0;
  int driver_version = 0, runtime_version = 0;
  /// 2 (double data rate) x clock x bus width: the datasheet's peak, for context only.
  double theoretical_gbps() const {
    return 2.0 * memory_clock_khz * 1e3 * (memory_bus_bits / 8.0) / 1e9;
  }
};

inline DeviceFacts device_facts(int device = 0) {
  DeviceFacts facts;
  cudaDeviceProp properties{};
  BENCH_CUDA_CHECK(cudaGetDeviceProperties(&properties, device));
  facts.name = properties.name;
  facts.sm_count = properties.multiProcessorCount;
  facts.compute_major = properties.major;
  facts.compute_minor = properties.minor;
  facts.total_memory_bytes = static_cast<int64_t>(properties.totalGlobalMem);
  facts.l2_bytes = properties.l2CacheSize;
  BENCH_CUDA_CHECK(
      cudaDeviceGetAttribute(&facts.memory_clock_khz, cudaDevAttrMemoryClockRate, device));
  BENCH_CUDA_CHECK(
      cudaDeviceGetAttribute(&facts.memory_bus_bits, cudaDevAttrGlobalMemoryBusWidth, device));
  BENCH_CUDA_CHECK(cudaDriverGetVersion(&facts.driver_version));
  BENCH_CUDA_CHECK(cudaRuntimeGetVersion(&facts.runtime_version));
  return facts;
}

inline void write_device(Json& json, const DeviceFacts& facts) {
  json.begin_object("device")
      .field("name", facts.name)
      .field("sm_count", facts.sm_count)
      .field("compute_capability",
             std::to_string(facts.compute_major) + "." + std::to_string(facts.compute_minor))
      .field("total_memory_bytes", facts.total_memory_bytes)
      .field("l2_bytes", facts.l2_bytes)
      .field("memory_clock_khz", facts.memory_clock_khz)
      .field("memory_bus_bits", facts.memory_bus_bits)
      .field("theoretical_gbps", facts.theoretical_gbps())
      .field("cuda_driver_version", facts.driver_version)
      .field("cuda_runtime_version", facts.runtime_version)
      .end_object();
}

}  // namespace servelab::bench
