// Element types of tensors (fp32, fp16, bf16) and the conversions between them.
// Conversions are exact where the target can represent the value and round to nearest even
// otherwise, as PyTorch does, so that weights converted here equal weights converted by HF.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace servelab {

enum class DType { kF32, kF16, kBF16 };

/// Bytes per element.
size_t dtype_size(DType dtype);
/// The safetensors spelling: "F32", "F16", "BF16".
std::string dtype_name(DType dtype);

float bf16_to_float(uint16_t bits);
float fp16_to_float(uint16_t bits);
uint16_t float_to_bf16(float value);
uint16_t float_to_fp16(float value);

/// Converts `count` elements of `dtype` at `src` (any alignment) to fp32 at `dst`.
void convert_to_f32(DType dtype, const void* src, float* dst, size_t count);

}  // namespace servelab
