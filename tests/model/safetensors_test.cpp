// Tests of the safetensors reader on real files written byte by byte: valid files read back
// exactly, and every kind of corruption is an error naming the file and what is wrong.
#include "model/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <limits>

#include "common/error.h"
#include "model/safetensors_writer.h"
#include "test_helpers.h"

namespace servelab {
namespace {

using testing::Bytes;
using testing::SafetensorsEntry;

using testing::ContainsAll;

class SafetensorsFileTest : public ::testing::Test {
 protected:
  /// The message of the servelab::Error that opening `path` throws ("<no error>" if none).
  static std::string open_error(const std::string& path) {
    try {
      SafetensorsFile file(path);
    } catch (const Error& error) {
      return error.what();
    }
    return "<no error>";
  }
  /// Writes a file with this header and data (header length = header size) and opens it.
  std::string raw_error(const std::string& header_json, const Bytes& data) {
    testing::write_safetensors_raw(path_, header_json, data);
    return open_error(path_);
  }

  testing::ScopedTempDir dir_;
  const std::string path_ = dir_.file("weights.safetensors");
};

TEST_F(SafetensorsFileTest, ValidFileRoundTripsNamesDtypesShapesBytesAndMetadata) {
  Bytes embed_bytes(2 * 3 * 2);
  for (size_t i = 0; i < embed_bytes.size(); ++i) embed_bytes[i] = static_cast<unsigned char>(i);
  Bytes norm_bytes = testing::f32_bytes({1.0f, 2.0f});
  testing::write_safetensors(path_,
                             {{"model.embed_tokens.weight", "BF16", {2, 3}, embed_bytes},
                              {"model.norm.weight", "F32", {2}, norm_bytes}},
                             {{"format", "pt"}, {"author", "servelab"}});

  SafetensorsFile file(path_);
  EXPECT_EQ(file.path(), path_);
  ASSERT_EQ(file.tensors().size(), 2u);
  const SafetensorsTensor* embed = file.find("model.embed_tokens.weight");
  ASSERT_NE(embed, nullptr);
  EXPECT_EQ(embed->name, "model.embed_tokens.weight");
  EXPECT_EQ(embed->dtype_name, "BF16");
  EXPECT_EQ(embed->dtype, DType::kBF16);
  EXPECT_EQ(embed->shape, (Shape{2, 3}));
  EXPECT_EQ(embed->begin, 0u);
  EXPECT_EQ(embed->end, 12u);
  ASSERT_NE(embed->data, nullptr);
  EXPECT_EQ(Bytes(embed->data, embed->data + embed->nbytes()), embed_bytes);

  const SafetensorsTensor* norm = file.find("model.norm.weight");
  ASSERT_NE(norm, nullptr);
  EXPECT_EQ(norm->dtype, DType::kF32);
  EXPECT_EQ(norm->shape, (Shape{2}));
  EXPECT_EQ(norm->begin, 12u);
  EXPECT_EQ(norm->end, 20u);
  EXPECT_EQ(Bytes(norm->data, norm->data + norm->nbytes()), norm_bytes);

  std::map<std::string, std::string> expected_metadata = {{"format", "pt"}, {"author", "servelab"}};
  EXPECT_EQ(file.metadata(), expected_metadata);
  EXPECT_EQ(file.find("model.missing.weight"), nullptr);
}

TEST_F(SafetensorsFileTest, TensorsAreSortedByOffsetNotByName) {
  // Written z, a, m: the header (a JSON object) lists them by name, the data in this order.
  testing::write_safetensors(path_, {{"z", "F32", {1}, testing::f32_bytes({1.0f})},
                                     {"a", "F32", {2}, testing::f32_bytes({2.0f, 3.0f})},
                                     {"m", "U8", {3}, Bytes{7, 8, 9}}});
  SafetensorsFile file(path_);
  ASSERT_EQ(file.tensors().size(), 3u);
  EXPECT_EQ(file.tensors()[0].name, "z");
  EXPECT_EQ(file.tensors()[1].name, "a");
  EXPECT_EQ(file.tensors()[2].name, "m");
  EXPECT_EQ(file.tensors()[2].begin, 12u);
}

TEST_F(SafetensorsFileTest, F32F16AndBf16ValuesReadBackExactlyInLittleEndianOrder) {
  // Values exact in all three dtypes, so any mix-up of byte order or dtype shows.
  const std::vector<float> values = {1.0f, -2.5f, 0.375f, 1024.0f, -0.0f, 3.0f};
  testing::write_safetensors(path_, {{"f32", "F32", {2, 3}, testing::f32_bytes(values)},
                                     {"f16", "F16", {6}, testing::f16_bytes(values)},
                                     {"bf16", "BF16", {3, 2}, testing::bf16_bytes(values)}});
  SafetensorsFile file(path_);
  for (const char* name : {"f32", "f16", "bf16"}) {
    const SafetensorsTensor* tensor = file.find(name);
    ASSERT_NE(tensor, nullptr) << name;
    ASSERT_TRUE(tensor->dtype.has_value()) << name;
    std::vector<float> read(values.size());
    convert_to_f32(*tensor->dtype, tensor->data, read.data(), read.size());
    for (size_t i = 0; i < values.size(); ++i) {
      EXPECT_EQ(read[i], values[i]) << name << "[" << i << "]";
      EXPECT_EQ(std::signbit(read[i]), std::signbit(values[i])) << name << "[" << i << "]";
    }
  }
  // 1.0 is 0x3c00 in fp16 and 0x3f80 in bf16; the file stores the low byte first.
  EXPECT_EQ(file.find("f16")->data[0], 0x00);
  EXPECT_EQ(file.find("f16")->data[1], 0x3c);
  EXPECT_EQ(file.find("bf16")->data[0], 0x80);
  EXPECT_EQ(file.find("bf16")->data[1], 0x3f);
}

TEST_F(SafetensorsFileTest, EveryOtherSpecDtypeIsReadWithItsSizeAndNoServelabDType) {
  const std::vector<std::pair<std::string, size_t>> dtypes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"I16", 2},
      {"U16", 2},  {"I32", 4}, {"U32", 4}, {"I64", 8},     {"U64", 8},     {"F64", 8}};
  std::vector<SafetensorsEntry> entries;
  for (const auto& [dtype_name, size] : dtypes) {
    entries.push_back({"t_" + dtype_name, dtype_name, {3}, Bytes(3 * size, 0x5a)});
  }
  testing::write_safetensors(path_, entries);
  SafetensorsFile file(path_);
  for (const auto& [dtype_name, size] : dtypes) {
    const SafetensorsTensor* tensor = file.find("t_" + dtype_name);
    ASSERT_NE(tensor, nullptr) << dtype_name;
    EXPECT_EQ(tensor->dtype_name, dtype_name);
    EXPECT_FALSE(tensor->dtype.has_value()) << dtype_name;
    EXPECT_EQ(tensor->nbytes(), 3 * size) << dtype_name;
    EXPECT_EQ(safetensors_dtype_size(dtype_name), size);
  }
  EXPECT_EQ(safetensors_dtype_size("F33"), std::nullopt);
}

TEST_F(SafetensorsFileTest, ZeroSizeAndScalarTensorsAreAllowed) {
  testing::write_safetensors(path_,
                             {{"empty", "F32", {0}, {}},
                              {"first", "F32", {1}, testing::f32_bytes({5.0f})},
                              {"empty_matrix", "BF16", {2, 0}, {}},
                              {"scalar", "F32", {}, testing::f32_bytes({7.0f})},
                              // A zero extent makes the tensor empty however large the others are.
                              {"empty_huge", "F64", {0, int64_t{1} << 40, int64_t{1} << 40}, {}}});
  SafetensorsFile file(path_);
  ASSERT_EQ(file.tensors().size(), 5u);
  EXPECT_EQ(file.find("empty")->nbytes(), 0u);
  EXPECT_EQ(file.find("empty_matrix")->shape, (Shape{2, 0}));
  EXPECT_EQ(file.find("scalar")->shape, Shape{});
  EXPECT_EQ(file.find("scalar")->begin, 4u);
  float scalar;
  std::memcpy(&scalar, file.find("scalar")->data, 4);
  EXPECT_EQ(scalar, 7.0f);
  EXPECT_EQ(file.find("empty_huge")->nbytes(), 0u);
}

TEST_F(SafetensorsFileTest, EmptyHeaderObjectWithNoDataIsAValidEmptyFile) {
  testing::write_safetensors_raw(path_, "{}", {});
  SafetensorsFile file(path_);
  EXPECT_TRUE(file.tensors().empty());
  EXPECT_TRUE(file.metadata().empty());
}

TEST_F(SafetensorsFileTest, HeaderPaddedWithTrailingSpacesIsAccepted) {
  // Writers may pad the header with spaces so that the data starts aligned; the spec allows it.
  testing::write_safetensors_raw(
      path_,
      R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}})" + std::string(5, ' '),
      {1, 2});
  SafetensorsFile file(path_);
  ASSERT_NE(file.find("a"), nullptr);
  EXPECT_EQ(file.find("a")->data[1], 2);
}

TEST_F(SafetensorsFileTest, UnknownKeysInAnEntryAreIgnored) {
  testing::write_safetensors_raw(
      path_, R"({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1], "comment": [1, 2]}})",
      {9});
  SafetensorsFile file(path_);
  EXPECT_EQ(file.find("a")->data[0], 9);
}

TEST_F(SafetensorsFileTest, MissingFileIsRejectedNamingThePath) {
  std::string missing = dir_.file("no_such.safetensors");
  EXPECT_TRUE(ContainsAll(open_error(missing), {missing, "cannot open"}));
}

TEST_F(SafetensorsFileTest, FileShorterThanTheLengthPrefixIsRejected) {
  for (size_t size : {0, 1, 7}) {
    testing::write_raw_file(path_, std::string(size, '\x01'));
    EXPECT_TRUE(ContainsAll(open_error(path_),
                            {path_, std::to_string(size) + " bytes", "shorter than the 8-byte"}))
        << "size " << size;
  }
}

TEST_F(SafetensorsFileTest, TruncatedFileIsRejectedAtEveryKindOfCutPoint) {
  testing::write_safetensors(path_,
                             {{"a", "F32", {2, 3}, testing::f32_bytes({1, 2, 3, 4, 5, 6})},
                              {"b", "BF16", {4}, testing::bf16_bytes({1, 2, 3, 4})}},
                             {{"format", "pt"}});
  const std::string whole = testing::read_raw_file(path_);
  const size_t header_end =
      8 + testing::safetensors_header_json(
              {{"a", "F32", {2, 3}, Bytes(24)}, {"b", "BF16", {4}, Bytes(8)}}, {{"format", "pt"}})
              .size();
  ASSERT_EQ(whole.size(), header_end + 32);
  struct Cut {
    size_t size;
    std::string expected;
  };
  const std::vector<Cut> cuts = {
      {3, "shorter than the 8-byte"},                   // inside the length prefix
      {8, "runs past the end of the file (size 8)"},    // right after it
      {20, "runs past the end of the file (size 20)"},  // inside the header
      {header_end - 1, "runs past the end"},            // the header's last byte missing
      {header_end, "out of bounds"},                    // no data at all
      {header_end + 10, "out of bounds"},               // inside the first tensor
      {header_end + 24, "'b'"},                         // the second tensor missing
      {whole.size() - 1, "out of bounds"},              // the last byte missing
  };
  for (const Cut& cut : cuts) {
    testing::write_raw_file(path_, whole.substr(0, cut.size));
    EXPECT_TRUE(ContainsAll(open_error(path_), {path_, cut.expected})) << "cut at " << cut.size;
  }
}

TEST_F(SafetensorsFileTest, HeaderLengthPastEndOfFileIsRejectedWithLengthAndFileSize) {
  testing::write_safetensors_raw(path_, "{}", {}, /*header_length=*/1000);
  EXPECT_TRUE(ContainsAll(open_error(path_),
                          {path_, "header length 1000 runs past the end of the file (size 10)"}));
}

TEST_F(SafetensorsFileTest, HugeHeaderLengthIsRejectedWithoutAllocatingIt) {
  // 2^64 - 1 would wrap "8 + N" around; the sanitizers would report a huge allocation.
  testing::write_raw_file(path_,
                          testing::little_endian_u64(std::numeric_limits<uint64_t>::max()) + "{}");
  EXPECT_TRUE(ContainsAll(open_error(path_), {path_, "header length 18446744073709551615",
                                              "runs past the end of the file (size 10)"}));
}

TEST_F(SafetensorsFileTest, HeaderLengthOverTheFormatsCapIsRejectedEvenIfTheFileIsThatLong) {
  const uint64_t length = kSafetensorsMaxHeaderBytes + 1;
  testing::write_raw_file(path_, testing::little_endian_u64(length));
  std::filesystem::resize_file(path_, 8 + length);  // sparse: costs no disk space
  EXPECT_TRUE(ContainsAll(open_error(path_), {path_, "header length 100000001",
                                              "exceeds the safetensors limit of 100000000"}));
}

TEST_F(SafetensorsFileTest, HeaderLengthZeroIsRejected) {
  testing::write_safetensors_raw(path_, "", {1, 2, 3});
  EXPECT_TRUE(ContainsAll(open_error(path_), {path_, "header length is 0"}));
}

TEST_F(SafetensorsFileTest, GarbageJsonIsRejectedNamingTheFile) {
  for (const std::string& garbage : {std::string("{\"a\": {"), std::string("garbage"),
                                     std::string("{} extra"), std::string("\0\0\0\0", 4)}) {
    EXPECT_TRUE(ContainsAll(raw_error(garbage, {}), {path_, "header is not valid JSON"}))
        << garbage;
  }
}

TEST_F(SafetensorsFileTest, HeaderWithInvalidUtf8IsRejectedAsInvalidJson) {
  std::string header = R"({"a)" + std::string("\xff\xfe") +
                       R"(": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}})";
  EXPECT_TRUE(ContainsAll(raw_error(header, {0}), {path_, "header is not valid JSON", "UTF-8"}));
}

TEST_F(SafetensorsFileTest, HeaderThatIsNotAnObjectIsRejected) {
  EXPECT_TRUE(ContainsAll(raw_error("[1, 2]", {}), {path_, "must be a JSON object", "array"}));
}

TEST_F(SafetensorsFileTest, TensorNameWrittenTwiceIsRejected) {
  std::string header = R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},)"
                       R"( "w": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}})";
  EXPECT_TRUE(ContainsAll(raw_error(header, {1, 2}), {path_, "'w' appears twice"}));
}

TEST_F(SafetensorsFileTest, EntryThatIsNotAnObjectIsRejectedNamingTheTensor) {
  EXPECT_TRUE(ContainsAll(raw_error(R"({"layer.weight": [0, 4]})", {}),
                          {path_, "'layer.weight'", "must be an object", "found array"}));
}

TEST_F(SafetensorsFileTest, EntryMissingARequiredFieldIsRejectedNamingTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"w": {"shape": [1], "data_offsets": [0, 1]}})", "\"dtype\""},
      {R"({"w": {"dtype": "U8", "data_offsets": [0, 1]}})", "\"shape\""},
      {R"({"w": {"dtype": "U8", "shape": [1]}})", "\"data_offsets\""},
  };
  for (const auto& [header, field] : cases) {
    EXPECT_TRUE(ContainsAll(raw_error(header, {0}), {path_, "tensor 'w' has no " + field}));
  }
}

TEST_F(SafetensorsFileTest, UnknownDtypeIsRejectedNamingTensorDtypeAndTheKnownOnes) {
  EXPECT_TRUE(ContainsAll(
      raw_error(R"({"w": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}})", Bytes(4)),
      {path_, "tensor 'w'", "dtype \"F33\"", "expected one of BOOL", "BF16"}));
  // Spelling matters: the format's names are upper case.
  EXPECT_TRUE(ContainsAll(
      raw_error(R"({"w": {"dtype": "f32", "shape": [1], "data_offsets": [0, 4]}})", Bytes(4)),
      {path_, "tensor 'w'", "dtype \"f32\""}));
  EXPECT_TRUE(ContainsAll(
      raw_error(R"({"w": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}})", Bytes(4)),
      {path_, "tensor 'w'", "dtype 4"}));
}

TEST_F(SafetensorsFileTest, ShapeThatIsNotAnArrayOfNonNegativeIntegersIsRejected) {
  for (const char* shape :
       {"[-1]", "[2.0]", "[\"2\"]", "3", "[[2]]", "[9223372036854775808]", "[1e30]"}) {
    std::string header =
        R"({"w": {"dtype": "U8", "shape": )" + std::string(shape) + R"(, "data_offsets": [0, 2]}})";
    EXPECT_TRUE(ContainsAll(raw_error(header, {0, 0}),
                            {path_, "tensor 'w'", "expected an array of non-negative integers"}))
        << shape;
  }
}

TEST_F(SafetensorsFileTest, ShapeWhoseByteCountOverflowsIsRejectedNotWrappedAround) {
  // 2^32 * 2^32 * 4 bytes wraps to 0 in 64 bits, which would match data_offsets [0, 0].
  std::string header =
      R"({"huge": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})";
  EXPECT_TRUE(
      ContainsAll(raw_error(header, {}),
                  {path_, "tensor 'huge'", "[4294967296, 4294967296]", "overflows 64 bits"}));
}

TEST_F(SafetensorsFileTest, ShapeAndByteSizeMismatchIsRejectedWithBothSizes) {
  std::string header = R"({"w": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 10]}})";
  EXPECT_TRUE(ContainsAll(raw_error(header, Bytes(10)), {path_, "tensor 'w'", "[2, 3]", "BF16",
                                                         "need 12 bytes", "hold 10 bytes"}));
}

TEST_F(SafetensorsFileTest, OffsetsOutOfBoundsAreRejectedNamingTensorAndBufferSize) {
  std::string header = R"({"w": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]}})";
  EXPECT_TRUE(ContainsAll(raw_error(header, Bytes(6)),
                          {path_, "tensor 'w'", "[0, 8]", "out of bounds", "holds 6 bytes"}));
  // Far past the end, where begin + size would wrap around.
  header = R"({"w": {"dtype": "U8", "shape": [1], )"
           R"("data_offsets": [18446744073709551615, 18446744073709551615]}})";
  EXPECT_TRUE(ContainsAll(raw_error(header, Bytes(1)), {path_, "tensor 'w'", "out of bounds"}));
}

TEST_F(SafetensorsFileTest, OffsetsThatAreNotTwoNonNegativeIntegersAreRejected) {
  for (const char* offsets :
       {"[-4, 0]", "[0, -4]", "[0.0, 4.0]", "[0, 4.5]", "[0]", "[0, 4, 8]", "\"0:4\"", "{}"}) {
    std::string header =
        R"({"w": {"dtype": "U8", "shape": [4], "data_offsets": )" + std::string(offsets) + "}}";
    EXPECT_TRUE(
        ContainsAll(raw_error(header, Bytes(4)),
                    {path_, "tensor 'w'", "expected [begin, end], two non-negative integers"}))
        << offsets;
  }
}

TEST_F(SafetensorsFileTest, OffsetsWithBeginAfterEndAreRejected) {
  std::string header = R"({"w": {"dtype": "U8", "shape": [4], "data_offsets": [4, 0]}})";
  EXPECT_TRUE(ContainsAll(raw_error(header, Bytes(4)),
                          {path_, "tensor 'w'", "[4, 0]", "begin is after its end"}));
}

TEST_F(SafetensorsFileTest, OverlappingOffsetsAreRejectedNamingBothTensors) {
  std::string header = R"({"first": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                       R"( "second": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})";
  EXPECT_TRUE(ContainsAll(raw_error(header, Bytes(12)), {path_, "'first' (bytes [0, 8))",
                                                         "'second' (bytes [4, 12))", "overlap"}));
}

TEST_F(SafetensorsFileTest, TwoTensorsAtTheSameOffsetAreRejectedAsOverlapping) {
  std::string header = R"({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},)"
                       R"( "b": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}})";
  EXPECT_TRUE(ContainsAll(raw_error(header, Bytes(4)), {path_, "'a'", "'b'", "overlap"}));
}

TEST_F(SafetensorsFileTest, ZeroSizeTensorInsideAnotherIsRejectedAsOverlapping) {
  std::string header = R"({"big": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]},)"
                       R"( "empty": {"dtype": "U8", "shape": [0], "data_offsets": [4, 4]}})";
  EXPECT_TRUE(ContainsAll(raw_error(header, Bytes(8)), {path_, "'big'", "'empty'", "overlap"}));
}

TEST_F(SafetensorsFileTest, GapBetweenTensorsIsRejectedNamingTheGapAndItsNeighbours) {
  std::string header = R"({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},)"
                       R"( "b": {"dtype": "U8", "shape": [4], "data_offsets": [8, 12]}})";
  EXPECT_TRUE(ContainsAll(raw_error(header, Bytes(12)),
                          {path_, "gap of 4 unused bytes [4, 8)", "between tensors 'a' and 'b'"}));
}

TEST_F(SafetensorsFileTest, GapBeforeTheFirstTensorIsRejected) {
  std::string header = R"({"a": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}})";
  EXPECT_TRUE(ContainsAll(raw_error(header, Bytes(6)),
                          {path_, "gap of 2 unused bytes [0, 2)", "before the first tensor 'a'"}));
}

TEST_F(SafetensorsFileTest, TrailingBytesAfterTheLastTensorAreRejected) {
  std::string header = R"({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}})";
  EXPECT_TRUE(ContainsAll(raw_error(header, Bytes(7)),
                          {path_, "3 trailing bytes after the last tensor 'a'", "7-byte"}));
  EXPECT_TRUE(ContainsAll(raw_error("{}", Bytes(5)), {path_, "no tensors", "5 trailing bytes"}));
}

TEST_F(SafetensorsFileTest, MetadataThatIsNotAnObjectOfStringsIsRejected) {
  EXPECT_TRUE(ContainsAll(raw_error(R"({"__metadata__": ["pt"]})", {}),
                          {path_, "\"__metadata__\" must be an object of strings", "array"}));
  EXPECT_TRUE(ContainsAll(raw_error(R"({"__metadata__": {"format": "pt", "step": 3}})", {}),
                          {path_, "\"__metadata__\" entry 'step' must be a string", "number"}));
}

TEST(ParseSafetensorsHeaderTest, ParsesAHeaderStringWithoutAFile) {
  SafetensorsHeader header =
      parse_safetensors_header("in-memory",
                               R"({"__metadata__": {"format": "pt"},)"
                               R"( "b": {"dtype": "F16", "shape": [2], "data_offsets": [4, 8]},)"
                               R"( "a": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]}})",
                               8);
  ASSERT_EQ(header.tensors.size(), 2u);
  EXPECT_EQ(header.tensors[0].name, "a");
  EXPECT_EQ(header.tensors[0].dtype, std::nullopt);
  EXPECT_EQ(header.tensors[1].name, "b");
  EXPECT_EQ(header.tensors[1].dtype, DType::kF16);
  EXPECT_EQ(header.tensors[1].data, nullptr);
  EXPECT_EQ(header.metadata.at("format"), "pt");
  try {
    parse_safetensors_header("in-memory", "{", 0);
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_TRUE(ContainsAll(error.what(), {"in-memory", "not valid JSON"}));
  }
}

TEST_F(SafetensorsFileTest, MovedFileKeepsItsDataPointersValid) {
  testing::write_safetensors(path_, {{"a", "U8", {3}, Bytes{4, 5, 6}}});
  SafetensorsFile original(path_);
  const unsigned char* data = original.find("a")->data;
  SafetensorsFile moved(std::move(original));
  ASSERT_NE(moved.find("a"), nullptr);
  EXPECT_EQ(moved.find("a")->data, data);
  EXPECT_EQ(moved.find("a")->data[2], 6);
}

}  // namespace
}  // namespace servelab
