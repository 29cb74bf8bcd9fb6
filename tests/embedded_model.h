// A test suite base with the embedded model loaded once for the suite on the CPU backend: its
// tokenizer and model, for the suites that run the engines on real weights.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "model/llama_model.h"
#include "test_paths.h"
#include "tokenizer/tokenizer.h"

namespace servelab::testing {

class EmbeddedModelSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = source_path("models/servelab-stories");
    backend_ = std::make_unique<CpuBackend>();
    model_ = std::make_unique<LlamaModel>(LlamaModel::load(dir, *backend_));
    tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::load(dir));
  }
  static void TearDownTestSuite() {
    tokenizer_.reset();
    model_.reset();
    backend_.reset();
  }

  static inline std::unique_ptr<CpuBackend> backend_;
  static inline std::unique_ptr<LlamaModel> model_;
  static inline std::unique_ptr<Tokenizer> tokenizer_;
};

}  // namespace servelab::testing
