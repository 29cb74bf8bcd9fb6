// Streaming detokenizer: turns generated token ids, one at a time, into the text pieces a server
// sends to its client. It never emits half of a UTF-8 character, and what it emits adds up to
// exactly what Tokenizer::decode prints for the same ids. It never re-decodes the whole history.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace servelab {

/// Turns a stream of generated token ids into text pieces for streaming.
///
/// Guarantee: concatenating every push() and the final finish() gives
/// decode(context + generated) minus its prefix decode(context), where decode is
/// Tokenizer::decode. So the first generated "▁a" after the prompt "Once upon" yields " a", and
/// with an empty context the first piece loses its "▁" just as decode drops it.
///
/// How (the prefix/read-offset technique of Hugging Face TGI and vLLM): the detokenizer keeps a
/// short window of recent tokens. window[0, read_offset) is the "prefix": tokens already emitted,
/// kept only as context, with prefix_text = decode(prefix). A new token is appended; the text it
/// completes is decode(window) minus prefix_text. Why not simpler: decoding each token alone loses
/// spaces (sentencepiece drops the "▁" of a decode's first piece) and breaks characters split
/// over byte tokens; re-decoding the whole reply at every token is right but quadratic. The
/// prefix gives sentencepiece just the context it needs, and the window stays a handful of
/// tokens, so each push costs the same whether the reply is ten tokens long or ten thousand.
/// docs/model-and-tokenizer/tokenizer.md walks through an example.
///
/// Byte-fallback pieces (<0xF0> <0x9F> <0x98> <0x80> = "😀") can split a character across
/// tokens. While the newest bytes are a well-formed but unfinished character, push() holds them
/// back and returns "". As soon as the bytes cannot become a character (a byte that cannot continue
/// the sequence), they are emitted as U+FFFD, exactly as decode renders them, so bad bytes never
/// stall the stream. finish() emits a tail that never completed, also as U+FFFD.
///
/// BOS, EOS and other control tokens emit nothing. The Tokenizer must outlive this object. Not
/// thread-safe: one detokenizer per sequence.
class IncrementalDetokenizer {
 public:
  /// @param context the prompt's ids (or empty). Only its last few tokens are kept. A prompt that
  ///   ends in the middle of a character (possible only with raw ids) has that unfinished tail
  ///   dropped from the context.
  /// Throws servelab::Error for an id outside the vocabulary.
  IncrementalDetokenizer(const Tokenizer& tokenizer, const std::vector<int32_t>& context);

  /// Feeds one generated id; returns the text that became complete with it (may be "").
  /// Throws servelab::Error for an id outside the vocabulary.
  std::string push(int32_t token);
  /// Ends the stream: returns what is still held back (an unfinished UTF-8 tail becomes U+FFFD, one
  /// per byte, as in decode). Call it once, after the last push().
  std::string finish();
  /// Everything emitted so far.
  const std::string& text() const { return text_; }
  /// Tokens held in the window (prefix plus unread), for tests: once the first piece is out, at
  /// most 8 (a prefix of at most 4 tokens, up to 3 held bytes, and the new token).
  std::size_t window_size() const { return window_.size(); }

 private:
  std::size_t end_of_final_text() const;
  std::string emit_until(std::size_t end);

  const Tokenizer* tokenizer_;
  // window_[0, read_offset_) is the prefix (already emitted, kept as context);
  // window_[read_offset_, size) are tokens read but not yet emitted. The prefix offset of TGI/vLLM
  // is always 0 here because tokens older than the prefix are erased: they are no longer needed.
  std::vector<int32_t> window_;
  std::size_t read_offset_ = 0;
  std::string prefix_text_;  // decode(window_[0, read_offset_))
  std::string text_;
};

}  // namespace servelab
