// Picks and builds a backend from a user's choice ("cpu" or "cuda", and a dtype), so that the
// CLI and the servers share one place that knows which backends were built in.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"

namespace servelab {

struct BackendChoice {
  std::string device = "cpu";  ///< "cpu", "cuda" (or "cuda:N"), or "auto" (see resolve_device)
  /// "auto" (the checkpoint's dtype on CUDA, fp32 on the CPU), "float32", "bfloat16", "float16"
  std::string dtype = "auto";
  /// The checkpoint's torch_dtype from config.json ("bfloat16", ...; "" when absent)
  std::string checkpoint_dtype;
};

/// True when this build includes the CUDA backend.
bool cuda_backend_built();

/// "auto" becomes "cuda" when this build has CUDA and a GPU is visible, "cpu" otherwise; any
/// other name is returned unchanged (make_backend checks it).
std::string resolve_device(const std::string& device);

/// The backend for `choice` ("auto" resolved as by resolve_device); throws servelab::Error with
/// what to do instead when it cannot be made (no GPU, a build without CUDA, an unknown name, a
/// dtype the device does not support).
std::unique_ptr<Backend> make_backend(const BackendChoice& choice);

/// "bfloat16" / "bf16" -> kBF16, "float16" / "fp16" / "half" -> kF16, "float32" / "fp32" -> kF32.
DType parse_dtype_name(const std::string& name);

}  // namespace servelab
