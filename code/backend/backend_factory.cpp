#include "backend/backend_factory.h"

#include "backend/cpu/cpu_backend.h"
#include "common/error.h"
#ifdef SERVELAB_HAS_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace servelab {

bool cuda_backend_built() {
#ifdef SERVELAB_HAS_CUDA
  return true;
#else
  return false;
#endif
}

std::string resolve_device(const std::string& device) {
  if (device != "auto") return device;
#ifdef SERVELAB_HAS_CUDA
  if (cuda_device_available()) return "cuda";
#endif
  return "cpu";
}

DType parse_dtype_name(const std::string& name) {
  if (name == "bfloat16" || name == "bf16") return DType::kBF16;
  if (name == "float16" || name == "fp16" || name == "half") return DType::kF16;
  if (name == "float32" || name == "fp32" || name == "float") return DType::kF32;
  fail("unknown dtype '", name, "': use auto, float32, bfloat16 or float16");
}

std::unique_ptr<Backend> make_backend(const BackendChoice& requested) {
  BackendChoice choice = requested;
  choice.device = resolve_device(choice.device);
  if (choice.device == "cpu") {
    if (choice.dtype != "auto" && parse_dtype_name(choice.dtype) != DType::kF32) {
      fail("the CPU backend computes in float32 (the readable reference); --dtype ", choice.dtype,
           " needs --device cuda");
    }
    return std::make_unique<CpuBackend>();
  }
  if (choice.device == "cuda" || choice.device.rfind("cuda:", 0) == 0) {
#ifdef SERVELAB_HAS_CUDA
    CudaBackendOptions options;
    if (choice.device.size() > 5) {
      try {
        options.device = std::stoi(choice.device.substr(5));
      } catch (const std::exception&) {
        fail("bad device '", choice.device, "': expected cuda or cuda:N");
      }
    }
    if (choice.dtype == "auto") {
      // A checkpoint stored in half precision runs in it; fp32 or unknown ones run in bf16,
      // the usual serving precision, unless float32 is asked for.
      const std::string& stored = choice.checkpoint_dtype;
      options.dtype = stored == "float16"   ? DType::kF16
                      : stored == "float32" ? DType::kF32
                                            : DType::kBF16;
    } else {
      options.dtype = parse_dtype_name(choice.dtype);
    }
    return std::make_unique<CudaBackend>(options);
#else
    fail(
        "this servelab was built without CUDA (no nvcc was found at configure time); use "
        "--device cpu, or install the CUDA toolkit and rebuild");
#endif
  }
  fail("unknown device '", choice.device, "': use cpu, cuda, cuda:N or auto");
}

}  // namespace servelab
