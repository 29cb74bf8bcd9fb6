// The model's tokenizer: text <-> token ids through the sentencepiece model shipped with the
// weights, with BOS/EOS handled the way the model's config files say. It never does model math,
// and never aborts on a bad file or a bad id: those become servelab::Error.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace servelab {

/// The special token ids from the model's config.json (the model module fills this in). They win
/// over the ids the sentencepiece model itself declares.
struct SpecialTokens {
  /// config.json `bos_token_id`; empty: use the sentencepiece model's `<s>`, if it has one.
  std::optional<int32_t> bos_id;
  /// config.json `eos_token_id` (an int or a list); empty: use the sentencepiece model's `</s>`.
  std::vector<int32_t> eos_ids;
};

/// A loaded sentencepiece tokenizer. Immutable after load(), so one instance may be shared by all
/// threads; copies share the same underlying model.
class Tokenizer {
 public:
  /// Loads `<model_dir>/tokenizer.model` (sentencepiece) and, when present,
  /// `<model_dir>/tokenizer_config.json` (`add_bos_token`, default true; `add_eos_token`, default
  /// false). Throws servelab::Error naming the file when a file is missing, corrupt or inconsistent
  /// (for example a BOS/EOS id outside the vocabulary, or `add_bos_token: true` with no BOS token).
  static Tokenizer load(const std::string& model_dir, const SpecialTokens& special = {});

  /// Text -> ids, with BOS in front and EOS at the end as tokenizer_config.json asks.
  std::vector<int32_t> encode(const std::string& text) const;
  /// Text -> ids without any special token (for pieces of a prompt that is assembled later).
  std::vector<int32_t> encode_plain(const std::string& text) const;
  /// Ids -> text. Drops BOS, EOS and every sentencepiece control token *before* decoding, so they
  /// neither print nor split a character whose bytes surround them. Like sentencepiece, drops the
  /// "▁" (space) that opens the first piece, and turns bytes that are not valid UTF-8 into U+FFFD.
  /// Throws servelab::Error for an id outside [0, vocab_size()).
  std::string decode(const std::vector<int32_t>& ids) const;

  /// Number of pieces in tokenizer.model (ids are 0 .. vocab_size()-1).
  int32_t vocab_size() const { return static_cast<int32_t>(byte_value_by_id_.size()); }
  std::optional<int32_t> bos_id() const { return bos_id_; }
  /// The ids that end generation; the first one is the one encode() appends.
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }
  bool is_eos(int32_t id) const;
  /// The piece as stored in the model, e.g. "▁the", "<0xE2>", "<s>". Throws for a bad id.
  std::string piece(int32_t id) const;

  /// True for the ids decode() drops: BOS, EOS and sentencepiece control pieces. Throws for a bad
  /// id.
  bool is_control(int32_t id) const;
  /// For a byte-fallback piece ("<0xE2>") its byte value, 0..255; otherwise -1. Throws for a bad
  /// id.
  int byte_value(int32_t id) const;

 private:
  Tokenizer() = default;
  void check_id(int32_t id) const;
  std::vector<int32_t> encode_with(const std::string& text, bool add_bos, bool add_eos) const;

  std::shared_ptr<const sentencepiece::SentencePieceProcessor> processor_;
  std::string model_path_;  // for error messages
  std::optional<int32_t> bos_id_;
  std::vector<int32_t> eos_ids_;
  bool add_bos_ = true;
  bool add_eos_ = false;
  // Per-id tables built once at load, so the streaming hot path does no string work.
  std::vector<int16_t> byte_value_by_id_;  // -1 for pieces that are not byte-fallback pieces
  std::vector<uint8_t> is_control_by_id_;  // 1 for ids decode() drops
};

}  // namespace servelab
