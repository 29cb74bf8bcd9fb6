// Tests of Checkpoint on real model folders: one model.safetensors, or shards with an index, and
// every way the index and the shards can disagree.
#include "model/checkpoint.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <nlohmann/json.hpp>
#include <utility>

#include "common/error.h"
#include "model/safetensors_writer.h"
#include "test_helpers.h"

namespace servelab {
namespace {

using testing::Bytes;
using testing::SafetensorsEntry;

using testing::ContainsAll;

/// The message of the servelab::Error that `action` throws ("<no error>" if none).
template <typename Action>
std::string error_of(Action&& action) {
  try {
    action();
  } catch (const Error& error) {
    return error.what();
  }
  return "<no error>";
}

SafetensorsEntry u8_tensor(const std::string& name, Bytes bytes) {
  Shape shape = {static_cast<int64_t>(bytes.size())};
  return {name, "U8", shape, std::move(bytes)};
}

class CheckpointTest : public ::testing::Test {
 protected:
  std::string file(const std::string& name) const { return dir_.file(name); }

  void write_index(const nlohmann::json& weight_map) const {
    nlohmann::json index = {{"metadata", {{"total_size", 6}}}, {"weight_map", weight_map}};
    testing::write_raw_file(file("model.safetensors.index.json"), index.dump(2));
  }
  /// Two shards: a, b in the first; c in the second; and the index that says so.
  void write_two_shards() const {
    testing::write_safetensors(file("model-00001-of-00002.safetensors"),
                               {u8_tensor("a", {1, 2}), u8_tensor("b", {3})});
    testing::write_safetensors(file("model-00002-of-00002.safetensors"),
                               {u8_tensor("c", {4, 5, 6})});
    write_index({{"a", "model-00001-of-00002.safetensors"},
                 {"b", "model-00001-of-00002.safetensors"},
                 {"c", "model-00002-of-00002.safetensors"}});
  }
  std::string open_error() const {
    return error_of([&] { Checkpoint::open(dir_.path()); });
  }

  testing::ScopedTempDir dir_;
  const std::string index_path_ = dir_.file("model.safetensors.index.json");
};

TEST_F(CheckpointTest, SingleFileCheckpointListsAndFindsItsTensors) {
  testing::write_safetensors(file("model.safetensors"),
                             {u8_tensor("z.weight", {1}), u8_tensor("a.weight", {2, 3})});
  Checkpoint checkpoint = Checkpoint::open(dir_.path());
  EXPECT_EQ(checkpoint.tensor_names(), (std::vector<std::string>{"a.weight", "z.weight"}));
  EXPECT_TRUE(checkpoint.contains("a.weight"));
  EXPECT_FALSE(checkpoint.contains("b.weight"));
  EXPECT_EQ(checkpoint.tensor("a.weight").shape, (Shape{2}));
  EXPECT_EQ(checkpoint.tensor("a.weight").data[1], 3);
  EXPECT_EQ(checkpoint.file_of("z.weight"), file("model.safetensors"));
  EXPECT_EQ(checkpoint.file_paths(), std::vector<std::string>{file("model.safetensors")});
}

TEST_F(CheckpointTest, ShardedCheckpointFindsEachTensorInTheShardTheIndexNames) {
  write_two_shards();
  Checkpoint checkpoint = Checkpoint::open(dir_.path());
  EXPECT_EQ(checkpoint.tensor_names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(checkpoint.file_of("a"), file("model-00001-of-00002.safetensors"));
  EXPECT_EQ(checkpoint.file_of("b"), file("model-00001-of-00002.safetensors"));
  EXPECT_EQ(checkpoint.file_of("c"), file("model-00002-of-00002.safetensors"));
  EXPECT_EQ(checkpoint.tensor("b").data[0], 3);
  EXPECT_EQ(checkpoint.tensor("c").data[2], 6);
  EXPECT_EQ(checkpoint.file_paths().size(), 2u);
}

TEST_F(CheckpointTest, SingleFileIsPreferredOverAnIndexAsTransformersDoes) {
  write_two_shards();
  testing::write_safetensors(file("model.safetensors"), {u8_tensor("only", {7})});
  Checkpoint checkpoint = Checkpoint::open(dir_.path());
  EXPECT_EQ(checkpoint.tensor_names(), std::vector<std::string>{"only"});
}

TEST_F(CheckpointTest, MovedCheckpointKeepsItsTensorsReadable) {
  write_two_shards();
  Checkpoint original = Checkpoint::open(dir_.path());
  Checkpoint moved = std::move(original);
  EXPECT_EQ(moved.tensor("c").data[1], 5);
  Checkpoint assigned = Checkpoint::open(dir_.path());
  assigned = std::move(moved);
  EXPECT_EQ(assigned.tensor("a").data[0], 1);
  EXPECT_EQ(assigned.file_of("c"), file("model-00002-of-00002.safetensors"));
}

TEST_F(CheckpointTest, FolderWithNeitherFileIsRejectedNamingBothNamesLookedFor) {
  testing::write_safetensors(file("pytorch_model.safetensors"), {u8_tensor("a", {1})});
  EXPECT_TRUE(ContainsAll(open_error(), {dir_.path(),
                                         "neither model.safetensors nor "
                                         "model.safetensors.index.json"}));
}

TEST_F(CheckpointTest, MissingFolderIsRejectedNamingIt) {
  std::string missing = file("no_such_model");
  EXPECT_TRUE(
      ContainsAll(error_of([&] { Checkpoint::open(missing); }), {missing, "does not exist"}));
}

TEST_F(CheckpointTest, CorruptSingleFileErrorNamesTheFile) {
  testing::write_raw_file(file("model.safetensors"), "tiny");
  EXPECT_TRUE(ContainsAll(open_error(), {file("model.safetensors"), "shorter than"}));
}

TEST_F(CheckpointTest, MissingShardIsRejectedNamingTheShardAndATensorInIt) {
  write_two_shards();
  std::filesystem::remove(file("model-00002-of-00002.safetensors"));
  EXPECT_TRUE(ContainsAll(open_error(), {index_path_, "tensor 'c'",
                                         "model-00002-of-00002.safetensors", "does not exist"}));
}

TEST_F(CheckpointTest, CorruptShardErrorNamesTheShardFile) {
  write_two_shards();
  testing::write_raw_file(file("model-00002-of-00002.safetensors"),
                          testing::little_endian_u64(500) + "{}");
  EXPECT_TRUE(
      ContainsAll(open_error(), {file("model-00002-of-00002.safetensors"), "runs past the end"}));
}

TEST_F(CheckpointTest, TensorListedInIndexButAbsentFromItsShardIsRejected) {
  write_two_shards();
  write_index({{"a", "model-00001-of-00002.safetensors"},
               {"b", "model-00001-of-00002.safetensors"},
               {"c", "model-00002-of-00002.safetensors"},
               {"ghost", "model-00002-of-00002.safetensors"}});
  EXPECT_TRUE(
      ContainsAll(open_error(), {index_path_, "tensor 'ghost'",
                                 file("model-00002-of-00002.safetensors"), "has no such tensor"}));
}

TEST_F(CheckpointTest, TensorInAShardButNotInTheIndexIsRejected) {
  write_two_shards();
  write_index(
      {{"a", "model-00001-of-00002.safetensors"}, {"c", "model-00002-of-00002.safetensors"}});
  EXPECT_TRUE(ContainsAll(open_error(), {file("model-00001-of-00002.safetensors"), "tensor 'b'",
                                         "does not list", index_path_}));
}

TEST_F(CheckpointTest, SameTensorInTwoShardsIsRejectedNamingBothShards) {
  write_two_shards();
  testing::write_safetensors(file("model-00002-of-00002.safetensors"),
                             {u8_tensor("b", {9}), u8_tensor("c", {4, 5, 6})});
  EXPECT_TRUE(ContainsAll(open_error(),
                          {"tensor 'b'", "two shards", file("model-00001-of-00002.safetensors"),
                           file("model-00002-of-00002.safetensors")}));
}

TEST_F(CheckpointTest, TensorListedTwiceInTheIndexIsRejected) {
  write_two_shards();
  testing::write_raw_file(index_path_, R"({"weight_map": {"a": "model-00001-of-00002.safetensors",)"
                                       R"( "b": "model-00001-of-00002.safetensors",)"
                                       R"( "c": "model-00002-of-00002.safetensors",)"
                                       R"( "a": "model-00002-of-00002.safetensors"}})");
  EXPECT_TRUE(ContainsAll(open_error(), {index_path_, "tensor 'a' is listed twice"}));
}

TEST_F(CheckpointTest, ShardPathLeavingTheModelFolderIsRejected) {
  // A real file outside the folder, so that only the name check can stop it.
  testing::ScopedTempDir elsewhere;
  testing::write_safetensors(elsewhere.file("outside.safetensors"), {u8_tensor("a", {1})});
  const std::string relative_escape =
      "../" + std::filesystem::path(elsewhere.path()).filename().string() + "/outside.safetensors";
  for (const std::string& shard :
       {relative_escape, elsewhere.file("outside.safetensors"), std::string(".."),
        std::string("sub/model.safetensors"), std::string("")}) {
    write_index({{"a", shard}});
    EXPECT_TRUE(ContainsAll(open_error(), {index_path_, "tensor 'a'", "'" + shard + "'",
                                           "plain file name inside the model folder"}))
        << shard;
  }
}

TEST_F(CheckpointTest, InvalidIndexIsRejectedNamingTheIndex) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"weight_map\": ", "not valid JSON"},
      {"[]", "must be a JSON object"},
      {R"({"metadata": {}})", "has no \"weight_map\""},
      {R"({"weight_map": ["a"]})", "\"weight_map\" must be an object"},
      {R"({"weight_map": {"a": 3}})", "entry for tensor 'a' must be a shard file name"},
  };
  for (const auto& [text, expected] : cases) {
    testing::write_raw_file(index_path_, text);
    EXPECT_TRUE(ContainsAll(open_error(), {index_path_, expected})) << text;
  }
}

TEST_F(CheckpointTest, LookingUpAnAbsentTensorNamesTheCheckpointAndTheTensor) {
  write_two_shards();
  Checkpoint checkpoint = Checkpoint::open(dir_.path());
  EXPECT_TRUE(ContainsAll(error_of([&] { checkpoint.tensor("model.norm.weight"); }),
                          {index_path_, "no tensor 'model.norm.weight'"}));
  EXPECT_TRUE(ContainsAll(error_of([&] { checkpoint.file_of("lm_head.weight"); }),
                          {index_path_, "no tensor 'lm_head.weight'"}));
}

TEST_F(CheckpointTest, CheckTensorNamesAcceptsTheExactSetWithOrWithoutAllowedExtras) {
  write_two_shards();
  Checkpoint checkpoint = Checkpoint::open(dir_.path());
  EXPECT_NO_THROW(checkpoint.check_tensor_names({"c", "a", "b"}));
  // "c" may be there (it is) and "d" may be there (it is not).
  EXPECT_NO_THROW(checkpoint.check_tensor_names({"a", "b"}, {"c", "d"}));
}

TEST_F(CheckpointTest, CheckTensorNamesReportsMissingTensors) {
  write_two_shards();
  Checkpoint checkpoint = Checkpoint::open(dir_.path());
  std::string message = error_of([&] {
    checkpoint.check_tensor_names({"a", "b", "c", "lm_head.weight"});
  });
  EXPECT_TRUE(ContainsAll(message, {dir_.path(), "1 missing: 'lm_head.weight'"}));
  EXPECT_EQ(message.find("unexpected"), std::string::npos) << message;
}

TEST_F(CheckpointTest, CheckTensorNamesReportsUnexpectedTensors) {
  write_two_shards();
  Checkpoint checkpoint = Checkpoint::open(dir_.path());
  std::string message = error_of([&] { checkpoint.check_tensor_names({"a"}, {"b"}); });
  EXPECT_TRUE(ContainsAll(message, {dir_.path(), "1 unexpected: 'c'"}));
  EXPECT_EQ(message.find("missing"), std::string::npos) << message;
}

TEST_F(CheckpointTest, CheckTensorNamesListsOnlyTheFirstFewOfMany) {
  testing::write_safetensors(file("model.safetensors"), {u8_tensor("a", {1})});
  Checkpoint checkpoint = Checkpoint::open(dir_.path());
  std::vector<std::string> expected = {"a"};
  for (int layer = 10; layer < 30; ++layer) expected.push_back("layer" + std::to_string(layer));
  std::string message = error_of([&] { checkpoint.check_tensor_names(expected); });
  EXPECT_TRUE(ContainsAll(message, {"20 missing: 'layer10', 'layer11'", "... (20 in all)"}));
  EXPECT_EQ(message.find("layer29"), std::string::npos) << message;
}

}  // namespace
}  // namespace servelab
