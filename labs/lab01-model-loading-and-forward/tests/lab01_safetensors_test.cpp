// Lab 01, part lab01-safetensors: parse_safetensors_header in code/model/safetensors.cpp.
#include <gtest/gtest.h>

#include <string>

#include "common/error.h"
#include "model/safetensors.h"

namespace servelab {
namespace {

std::string error_of(const std::string& header, uint64_t buffer_size) {
  try {
    parse_safetensors_header("lab.safetensors", header, buffer_size);
  } catch (const LabNotImplemented&) {
    throw;  // let an unimplemented lab fail loudly, not look like a rejected header
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

TEST(Lab01Safetensors, ParsesNamesDtypesShapesAndOffsets) {
  std::string header = R"({
    "b": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [16, 28]},
    "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
    "__metadata__": {"format": "pt"}})";
  SafetensorsHeader parsed = parse_safetensors_header("lab.safetensors", header, 28);
  ASSERT_EQ(parsed.tensors.size(), 2u);
  EXPECT_EQ(parsed.tensors[0].name, "a");  // sorted by offset
  EXPECT_EQ(parsed.tensors[0].dtype, DType::kF32);
  EXPECT_EQ(parsed.tensors[0].shape, (Shape{4}));
  EXPECT_EQ(parsed.tensors[0].begin, 0u);
  EXPECT_EQ(parsed.tensors[0].end, 16u);
  EXPECT_EQ(parsed.tensors[1].name, "b");
  EXPECT_EQ(parsed.tensors[1].dtype, DType::kBF16);
  EXPECT_EQ(parsed.tensors[1].dtype_name, "BF16");
  EXPECT_EQ(parsed.tensors[1].shape, (Shape{2, 3}));
  EXPECT_EQ(parsed.metadata.at("format"), "pt");
}

TEST(Lab01Safetensors, ScalarAndEmptyTensorsHaveTheRightSizes) {
  std::string header = R"({
    "scalar": {"dtype": "F16", "shape": [], "data_offsets": [0, 2]},
    "empty": {"dtype": "F32", "shape": [0, 5], "data_offsets": [2, 2]}})";
  SafetensorsHeader parsed = parse_safetensors_header("lab.safetensors", header, 2);
  ASSERT_EQ(parsed.tensors.size(), 2u);
}

TEST(Lab01Safetensors, SizeThatDisagreesWithShapeAndDtypeIsRejected) {
  // [4] F32 needs 16 bytes, the offsets give 12.
  std::string message =
      error_of(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}})", 12);
  EXPECT_NE(message.find("'w'"), std::string::npos) << message;
  EXPECT_NE(message.find("16"), std::string::npos) << message;
}

TEST(Lab01Safetensors, OffsetsPastTheBufferAreRejected) {
  std::string message =
      error_of(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8);
  EXPECT_NE(message.find("out of bounds"), std::string::npos) << message;
}

TEST(Lab01Safetensors, MalformedEntriesAreRejected) {
  EXPECT_NE(error_of(R"({"w": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 1]}})", 1), "");
  EXPECT_NE(error_of(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", 4), "");
  EXPECT_NE(error_of(R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4), "");
  EXPECT_NE(error_of(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}})", 4), "");
  EXPECT_NE(error_of(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", 4), "");
  EXPECT_NE(error_of(R"({"w": [1, 2]})", 4), "");
}

}  // namespace
}  // namespace servelab
