// A tensor handle: a pointer into storage, a shape, an element type and the memory it lives in.
// It is deliberately thin: backends decide how to compute on it (the CPU backend wraps it in
// xtensor views), and the model code only passes handles around. Tensors are row-major and
// contiguous; views share storage and keep it alive.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/dtype.h"

namespace servelab {

enum class Device { kCpu, kCuda };

using Shape = std::vector<int64_t>;

/// "[2, 3, 4]"
std::string shape_string(const Shape& shape);
/// Product of the dimensions (1 for a scalar shape []).
int64_t shape_numel(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;
  /// Wraps existing memory; `owner` keeps it alive (may be null for borrowed memory).
  Tensor(void* data, Shape shape, DType dtype, Device device, std::shared_ptr<void> owner);

  /// A new, owned, zero-filled host tensor.
  static Tensor zeros(Shape shape, DType dtype = DType::kF32);

  bool defined() const { return data_ != nullptr || numel() == 0; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  /// Size of dimension `axis`; negative counts from the end, as in Python.
  int64_t dim(int axis) const;
  int64_t numel() const { return shape_numel(shape_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }

  void* data() const { return data_; }
  /// The data as fp32 host memory; throws if the tensor is not an fp32 CPU tensor.
  float* f32() const;

  /// The same storage seen with another shape of the same number of elements.
  Tensor view(Shape new_shape) const;
  /// Rows [begin, end) along dimension 0, sharing storage.
  Tensor rows(int64_t begin, int64_t end) const;

 private:
  void* data_ = nullptr;
  Shape shape_;
  DType dtype_ = DType::kF32;
  Device device_ = Device::kCpu;
  std::shared_ptr<void> owner_;
};

}  // namespace servelab
