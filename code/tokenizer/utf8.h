// UTF-8 rules the streaming detokenizer needs: how long the first character of some bytes is, and
// whether bytes that stop early could still become a character. Pure functions on bytes; they never
// read past the bytes they are given and never allocate.
#pragma once

#include <cstddef>
#include <string_view>

namespace servelab {

/// What the bytes at the start of a string are, read as one UTF-8 character.
enum class Utf8Status {
  kComplete,    ///< a whole, well-formed character of `length` bytes
  kIncomplete,  ///< the bytes stop early but are a well-formed start: more bytes may complete it
  kInvalid,  ///< the first byte can never start a well-formed character with the bytes that follow
};

struct Utf8FirstCharacter {
  Utf8Status status;
  std::size_t
      length;  ///< bytes of the character when kComplete; 1 when kInvalid; 0 when kIncomplete
};

/// Reads the first UTF-8 character of `bytes` (must not be empty) by the Unicode standard's table
/// of well-formed byte sequences (no overlong forms, no surrogates, nothing above U+10FFFF). These
/// are exactly the sequences sentencepiece's decoder accepts; it turns every other byte into U+FFFD
/// one byte at a time, so kInvalid always has length 1.
Utf8FirstCharacter utf8_first_character(std::string_view bytes);

}  // namespace servelab
