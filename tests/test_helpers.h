// Small helpers shared by the test suites: random tensors and message assertions.
#pragma once

#include <gtest/gtest.h>

#include <initializer_list>
#include <random>
#include <string>

#include "common/error.h"
#include "common/tensor.h"

namespace servelab::testing {

/// A host fp32 tensor of normal(0, scale) values: tests use random inputs, never zeros.
inline Tensor random_tensor(const Shape& shape, std::mt19937& rng, float scale = 1.0f) {
  Tensor tensor = Tensor::zeros(shape);
  std::normal_distribution<float> normal(0.0f, scale);
  for (int64_t i = 0; i < tensor.numel(); ++i) tensor.f32()[i] = normal(rng);
  return tensor;
}

/// Passes if `message` contains every one of `parts`; the failure shows the whole message.
inline ::testing::AssertionResult ContainsAll(const std::string& message,
                                              std::initializer_list<std::string> parts) {
  for (const std::string& part : parts) {
    if (message.find(part) == std::string::npos) {
      return ::testing::AssertionFailure()
             << "message \"" << message << "\" lacks \"" << part << "\"";
    }
  }
  return ::testing::AssertionSuccess();
}

/// Runs `action` and returns the message of the servelab::Error it throws; a test failure (and "")
/// if it throws none.
template <typename Action>
std::string error_message(Action&& action) {
  try {
    action();
  } catch (const Error& error) {
    return error.what();
  }
  ADD_FAILURE() << "expected a servelab::Error";
  return "";
}

}  // namespace servelab::testing
