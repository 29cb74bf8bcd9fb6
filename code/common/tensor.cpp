#include "common/tensor.h"

#include <cstdlib>
#include <cstring>

#include "common/error.h"

namespace servelab {

std::string shape_string(const Shape& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

int64_t shape_numel(const Shape& shape) {
  int64_t count = 1;
  for (int64_t extent : shape) count *= extent;
  return count;
}

Tensor::Tensor(void* data, Shape shape, DType dtype, Device device, std::shared_ptr<void> owner)
    : data_(data),
      shape_(std::move(shape)),
      dtype_(dtype),
      device_(device),
      owner_(std::move(owner)) {
  for (int64_t extent : shape_) {
    if (extent < 0) fail("tensor shape ", shape_string(shape_), " has a negative dimension");
  }
}

Tensor Tensor::zeros(Shape shape, DType dtype) {
  for (int64_t extent : shape) {
    if (extent < 0) fail("tensor shape ", shape_string(shape), " has a negative dimension");
  }
  size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  // 64-byte alignment suits SIMD loads and BLAS; calloc-style zeroing makes bugs reproducible.
  // aligned_alloc needs a multiple of the alignment; an empty tensor still gets one block.
  const size_t allocation = bytes == 0 ? 64 : (bytes + 63) / 64 * 64;
  void* memory = std::aligned_alloc(64, allocation);
  if (memory == nullptr) fail("out of host memory allocating ", bytes, " bytes");
  std::memset(memory, 0, allocation);
  std::shared_ptr<void> owner(memory, [](void* p) { std::free(p); });
  return Tensor(memory, std::move(shape), dtype, Device::kCpu, std::move(owner));
}

int64_t Tensor::dim(int axis) const {
  int rank = ndim();
  int index = axis < 0 ? axis + rank : axis;
  if (index < 0 || index >= rank)
    fail("axis ", axis, " out of range for shape ", shape_string(shape_));
  return shape_[index];
}

float* Tensor::f32() const {
  if (dtype_ != DType::kF32 || device_ != Device::kCpu) {
    fail("expected an fp32 CPU tensor, got ", dtype_name(dtype_), " on ",
         device_ == Device::kCpu ? "CPU" : "CUDA");
  }
  return static_cast<float*>(data_);
}

Tensor Tensor::view(Shape new_shape) const {
  if (shape_numel(new_shape) != numel()) {
    fail("cannot view shape ", shape_string(shape_), " as ", shape_string(new_shape));
  }
  return Tensor(data_, std::move(new_shape), dtype_, device_, owner_);
}

Tensor Tensor::rows(int64_t begin, int64_t end) const {
  if (ndim() == 0 || begin < 0 || end < begin || end > shape_[0]) {
    fail("rows [", begin, ", ", end, ") out of range for shape ", shape_string(shape_));
  }
  Shape new_shape = shape_;
  new_shape[0] = end - begin;
  int64_t row_elements = shape_[0] == 0 ? 0 : numel() / shape_[0];
  auto* base = static_cast<unsigned char*>(data_);
  return Tensor(base + begin * row_elements * static_cast<int64_t>(dtype_size(dtype_)),
                std::move(new_shape), dtype_, device_, owner_);
}

}  // namespace servelab
