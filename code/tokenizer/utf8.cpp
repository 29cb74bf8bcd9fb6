#include "tokenizer/utf8.h"

namespace servelab {

Utf8FirstCharacter utf8_first_character(std::string_view bytes) {
  const auto byte_at = [&](std::size_t i) { return static_cast<unsigned char>(bytes[i]); };
  const unsigned char lead = byte_at(0);
  if (lead < 0x80) return {Utf8Status::kComplete, 1};

  // BEGIN LAB(lab03-utf8)
  // The lead byte fixes the length and the range the second byte must fall in (Unicode 15, table
  // 3-7). The narrow second-byte ranges are what rule out overlong forms (E0, F0), UTF-16
  // surrogates (ED) and code points above U+10FFFF (F4). Bytes after the second are always 80..BF.
  std::size_t length = 0;
  unsigned char second_low = 0x80, second_high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) second_low = 0xA0;
    if (lead == 0xED) second_high = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) second_low = 0x90;
    if (lead == 0xF4) second_high = 0x8F;
  } else {
    return {Utf8Status::kInvalid, 1};  // 80..BF (a continuation byte), C0, C1, F5..FF
  }

  for (std::size_t i = 1; i < length; ++i) {
    if (i >= bytes.size()) return {Utf8Status::kIncomplete, 0};
    const unsigned char low = i == 1 ? second_low : 0x80;
    const unsigned char high = i == 1 ? second_high : 0xBF;
    if (byte_at(i) < low || byte_at(i) > high) return {Utf8Status::kInvalid, 1};
  }
  return {Utf8Status::kComplete, length};
  // END LAB
}

}  // namespace servelab
