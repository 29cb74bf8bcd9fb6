// Lab 03, part lab03-utf8: utf8_first_character in code/tokenizer/utf8.cpp.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "tokenizer/utf8.h"

namespace servelab {
namespace {

std::string bytes(std::initializer_list<int> values) {
  std::string out;
  for (int v : values) out += static_cast<char>(v);
  return out;
}

// An independent reference: decode the code point the bytes claim, then check that the encoding
// was the shortest one and the code point a Unicode scalar value.
Utf8FirstCharacter reference(const std::string& text) {
  const auto at = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = at(0);
  if (lead < 0x80) return {Utf8Status::kComplete, 1};
  size_t length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 0;
  if (length == 0 || lead >= 0xF8) return {Utf8Status::kInvalid, 1};
  uint32_t code_point = lead & (0x7F >> length);
  size_t available = std::min(length, text.size());
  for (size_t i = 1; i < available; ++i) {
    if ((at(i) & 0xC0) != 0x80) return {Utf8Status::kInvalid, 1};
    code_point = (code_point << 6) | (at(i) & 0x3F);
  }
  // With the bytes seen so far, could any continuation give a valid character?
  auto possible = [&](uint32_t low_bits_min, uint32_t low_bits_max) {
    const size_t missing = length - available;
    uint32_t lowest = (code_point << (6 * missing)) | low_bits_min;
    uint32_t highest = (code_point << (6 * missing)) | low_bits_max;
    const uint32_t minimum = length == 2 ? 0x80 : length == 3 ? 0x800 : 0x10000;
    if (highest < minimum || lowest > 0x10FFFF) return false;
    if (lowest >= 0xD800 && highest <= 0xDFFF) return false;
    return true;
  };
  if (available < length) {
    const size_t missing = length - available;
    const uint32_t all_ones = (1u << (6 * missing)) - 1;
    return possible(0, all_ones) ? Utf8FirstCharacter{Utf8Status::kIncomplete, 0}
                                 : Utf8FirstCharacter{Utf8Status::kInvalid, 1};
  }
  const uint32_t minimum = length == 2 ? 0x80 : length == 3 ? 0x800 : 0x10000;
  if (code_point < minimum || code_point > 0x10FFFF ||
      (code_point >= 0xD800 && code_point <= 0xDFFF)) {
    return {Utf8Status::kInvalid, 1};
  }
  return {Utf8Status::kComplete, length};
}

void expect(const std::string& text, Utf8Status status, size_t length) {
  Utf8FirstCharacter got = utf8_first_character(text);
  EXPECT_EQ(static_cast<int>(got.status), static_cast<int>(status))
      << "bytes of size " << text.size();
  EXPECT_EQ(got.length, length) << "bytes of size " << text.size();
}

TEST(Lab03Utf8, WholeCharactersOfEveryLength) {
  expect("a", Utf8Status::kComplete, 1);
  expect("\xC3\xA9x", Utf8Status::kComplete, 2);          // é
  expect("\xE2\x82\xAC", Utf8Status::kComplete, 3);       // €
  expect("\xF0\x9F\x8D\x9E!", Utf8Status::kComplete, 4);  // 🍞
}

TEST(Lab03Utf8, ACharacterCutShortIsIncompleteNotInvalid) {
  expect("\xC3", Utf8Status::kIncomplete, 0);
  expect("\xE2\x82", Utf8Status::kIncomplete, 0);
  expect("\xF0\x9F", Utf8Status::kIncomplete, 0);
  expect("\xF0\x9F\x8D", Utf8Status::kIncomplete, 0);
}

TEST(Lab03Utf8, BytesThatCanNeverFormACharacterAreInvalidOneByteAtATime) {
  expect(bytes({0x80}), Utf8Status::kInvalid, 1);                    // a lone continuation byte
  expect(bytes({0xC0, 0x80}), Utf8Status::kInvalid, 1);              // overlong NUL
  expect(bytes({0xE0, 0x80, 0x80}), Utf8Status::kInvalid, 1);        // overlong
  expect(bytes({0xED, 0xA0, 0x80}), Utf8Status::kInvalid, 1);        // a UTF-16 surrogate
  expect(bytes({0xF4, 0x90, 0x80, 0x80}), Utf8Status::kInvalid, 1);  // above U+10FFFF
  expect(bytes({0xF5}), Utf8Status::kInvalid, 1);
  expect(bytes({0xC3, 0x41}), Utf8Status::kInvalid, 1);  // the second byte is no continuation
  expect(bytes({0xE0, 0x80}), Utf8Status::kInvalid, 1);  // no third byte can save an overlong start
}

TEST(Lab03Utf8, AgreesWithADecoderOnEveryShortAndManyLongSequences) {
  for (int first = 0; first < 256; ++first) {
    ASSERT_EQ(static_cast<int>(utf8_first_character(bytes({first})).status),
              static_cast<int>(reference(bytes({first})).status))
        << first;
    for (int second = 0; second < 256; ++second) {
      std::string text = bytes({first, second});
      Utf8FirstCharacter got = utf8_first_character(text), want = reference(text);
      ASSERT_EQ(static_cast<int>(got.status), static_cast<int>(want.status))
          << first << " " << second;
      ASSERT_EQ(got.length, want.length) << first << " " << second;
    }
  }
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> lead(0xC0, 0xFF), tail(0x70, 0xC0);
  for (int i = 0; i < 200000; ++i) {
    std::string text = bytes({lead(rng), tail(rng), tail(rng), tail(rng)}).substr(0, 2 + i % 3);
    Utf8FirstCharacter got = utf8_first_character(text), want = reference(text);
    ASSERT_EQ(static_cast<int>(got.status), static_cast<int>(want.status)) << i;
    ASSERT_EQ(got.length, want.length) << i;
  }
}

}  // namespace
}  // namespace servelab
