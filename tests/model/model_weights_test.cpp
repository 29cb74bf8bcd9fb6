// Loading weights checks them against the config: each failure names the file, the tensor and
// what config.json implies. The checkpoints here are the llama-mha fixture, rewritten with one
// thing wrong.
#include "model/model_weights.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "backend/cpu/cpu_backend.h"
#include "common/error.h"
#include "model/llama_model.h"
#include "model/safetensors.h"
#include "safetensors_writer.h"
#include "test_paths.h"

namespace servelab {
namespace {

namespace fs = std::filesystem;

class BrokenCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    directory_ = fs::temp_directory_path() /
                 ("servelab_weights_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(directory_);
    fs::create_directories(directory_);
    fs::copy_file(testing::fixture_path("llama-mha/config.json"), directory_ / "config.json");
    SafetensorsFile original(testing::fixture_path("llama-mha/model.safetensors"));
    for (const SafetensorsTensor& tensor : original.tensors()) {
      entries_.push_back({tensor.name, tensor.dtype_name, tensor.shape,
                          testing::Bytes(tensor.data, tensor.data + (tensor.end - tensor.begin))});
    }
  }
  void TearDown() override { fs::remove_all(directory_); }

  testing::SafetensorsEntry& entry(const std::string& name) {
    for (auto& e : entries_) {
      if (e.name == name) return e;
    }
    throw std::runtime_error("no tensor " + name);
  }
  // Writes the (modified) checkpoint and returns the load error, or "" if it loaded.
  std::string load_error() {
    testing::write_safetensors((directory_ / "model.safetensors").string(), entries_);
    try {
      CpuBackend backend;
      LlamaModel::load(directory_.string(), backend);
    } catch (const Error& error) {
      return error.what();
    }
    return "";
  }

  fs::path directory_;
  std::vector<testing::SafetensorsEntry> entries_;
};

TEST_F(BrokenCheckpoint, UnmodifiedCopyLoads) { EXPECT_EQ(load_error(), ""); }

TEST_F(BrokenCheckpoint, ShapeMismatchNamesTheTensorAndTheConfigShape) {
  auto& norm = entry("model.norm.weight");
  norm.shape = {32, 2};  // same bytes, wrong shape
  std::string message = load_error();
  EXPECT_NE(message.find("model.safetensors: tensor 'model.norm.weight' has shape [32, 2], "
                         "config.json says [64]"),
            std::string::npos)
      << message;
}

TEST_F(BrokenCheckpoint, MissingTensorIsListed) {
  entries_.erase(std::remove_if(entries_.begin(), entries_.end(),
                                [](const auto& e) { return e.name == "model.layers.1.mlp.up_proj.weight"; }),
                 entries_.end());
  std::string message = load_error();
  EXPECT_NE(message.find("model.layers.1.mlp.up_proj.weight"), std::string::npos) << message;
  EXPECT_NE(message.find("missing"), std::string::npos) << message;
}

TEST_F(BrokenCheckpoint, ExtraTensorIsListed) {
  entries_.push_back({"model.layers.7.extra.weight", "F32", {2}, testing::f32_bytes({1.0f, 2.0f})});
  std::string message = load_error();
  EXPECT_NE(message.find("model.layers.7.extra.weight"), std::string::npos) << message;
}

TEST_F(BrokenCheckpoint, IntegerWeightsAreRefusedByDtype) {
  entry("model.norm.weight").dtype_name = "I32";  // 4 bytes per element: sizes still agree
  std::string message = load_error();
  EXPECT_NE(message.find("'model.norm.weight' has dtype I32"), std::string::npos) << message;
}

TEST_F(BrokenCheckpoint, StaleRotaryBufferFromOldCheckpointsIsIgnored) {
  entries_.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", "F32", {8},
                      testing::f32_bytes(std::vector<float>(8, 0.5f))});
  EXPECT_EQ(load_error(), "");
}

TEST(LlamaModel, RejectsTokensOutsideTheVocabularyAndContextOverflow) {
  CpuBackend backend;
  LlamaModel model = LlamaModel::load(testing::fixture_path("llama-mha"), backend);
  ContiguousKvCache cache = model.new_kv_cache(8);
  std::vector<ForwardSequence> batch = {{{1, 512}, &cache}};
  try {
    model.forward(batch);
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("token id 512 is outside the vocabulary"), std::string::npos);
  }
  EXPECT_EQ(cache.length, 0);  // nothing was written
  batch[0].tokens = std::vector<int32_t>(9, 1);
  EXPECT_THROW(model.forward(batch), Error);  // 9 tokens, cache of 8
  try {
    model.new_kv_cache(257);
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("maximum context length of 256"), std::string::npos);
  }
}

}  // namespace
}  // namespace servelab
