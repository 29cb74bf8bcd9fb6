// Element types of tensors (fp32, fp16, bf16) and the conversions between them.
// Conversions are exact where the target can represent the value and round to nearest even
// otherwise, as PyTorch does, so that weights converted here equal weights converted by HF.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace servelab {

/// Floating-point types hold weights and activations; kI32 holds token ids, positions and block
/// tables handed to kernels.
enum class DType { kF32, kF16, kBF16, kI32 };

/// Bytes per element.
size_t dtype_size(DType dtype);
/// The safetensors spelling: "F32", "F16", "BF16", "I32".
std::string dtype_name(DType dtype);

float bf16_to_float(uint16_t bits);
float fp16_to_float(uint16_t bits);
uint16_t float_to_bf16(float value);
uint16_t float_to_fp16(float value);

/// Converts `count` elements of `dtype` at `src` (any alignment) to fp32 at `dst`. Floating-point
/// types only: an I32 source is an error.
void convert_to_f32(DType dtype, const void* src, float* dst, size_t count);

}  // namespace servelab
