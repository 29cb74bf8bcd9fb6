#include "tokenizer/tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.h"

namespace servelab {
namespace {

// Reads an optional boolean field of tokenizer_config.json; absent or null -> nullopt.
std::optional<bool> optional_flag(const nlohmann::json& config, const std::string& field,
                                  const std::string& path) {
  const auto it = config.find(field);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) fail(path, ": '", field, "' must be true or false, got ", it->dump());
  return it->get<bool>();
}

// Byte-fallback pieces are spelled "<0xE2>"; returns the byte, or -1 for any other spelling.
int parse_byte_piece(const std::string& piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
  int value = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = piece[i];
    int digit = -1;
    if (c >= '0' && c <= '9') digit = c - '0';
    if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
    if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

}  // namespace

Tokenizer Tokenizer::load(const std::string& model_dir, const SpecialTokens& special) {
  namespace fs = std::filesystem;
  Tokenizer tokenizer;
  tokenizer.model_path_ = (fs::path(model_dir) / "tokenizer.model").string();
  const std::string& model_path = tokenizer.model_path_;

  std::error_code error;
  if (!fs::is_regular_file(model_path, error)) {
    fail(model_path,
         ": not found, or not a regular file (a model directory needs its sentencepiece "
         "tokenizer.model)");
  }
  auto processor = std::make_shared<sentencepiece::SentencePieceProcessor>();
  const auto status = processor->Load(model_path);
  if (!status.ok()) {
    fail(model_path, ": not a valid sentencepiece model (", status.ToString(), ")");
  }
  const int32_t vocab_size = processor->GetPieceSize();
  if (vocab_size <= 0) fail(model_path, ": the sentencepiece model has no pieces");

  // tokenizer_config.json is optional; Hugging Face's LlamaTokenizer defaults apply without it.
  const std::string config_path = (fs::path(model_dir) / "tokenizer_config.json").string();
  std::optional<bool> add_bos, add_eos;
  if (fs::exists(config_path, error)) {
    std::ifstream in(config_path);
    if (!in) fail(config_path, ": cannot be opened");
    nlohmann::json config;
    try {
      config = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      fail(config_path, ": not valid JSON (", e.what(), ")");
    }
    if (!config.is_object()) fail(config_path, ": expected a JSON object at the top level");
    add_bos = optional_flag(config, "add_bos_token", config_path);
    add_eos = optional_flag(config, "add_eos_token", config_path);
  }

  // Special ids: config.json wins; the sentencepiece model's own <s> and </s> are the fallback.
  const std::string model_config_path = (fs::path(model_dir) / "config.json").string();
  const auto check_config_id = [&](int32_t id, const char* field) {
    if (id < 0 || id >= vocab_size) {
      fail(model_config_path, ": ", field, " ", id, " is outside the vocabulary of ", model_path,
           " (ids 0..", vocab_size - 1, ")");
    }
  };
  if (special.bos_id) {
    check_config_id(*special.bos_id, "bos_token_id");
    tokenizer.bos_id_ = special.bos_id;
  } else if (processor->bos_id() >= 0) {
    tokenizer.bos_id_ = processor->bos_id();
  }
  if (!special.eos_ids.empty()) {
    for (int32_t id : special.eos_ids) check_config_id(id, "eos_token_id");
    tokenizer.eos_ids_ = special.eos_ids;
  } else if (processor->eos_id() >= 0) {
    tokenizer.eos_ids_ = {processor->eos_id()};
  }

  // By default add BOS only when there is one; an explicit request for a missing token is an error.
  if (add_bos.value_or(false) && !tokenizer.bos_id_) {
    fail(config_path, ": add_bos_token is true, but config.json has no bos_token_id and ",
         model_path, " defines no <s> piece");
  }
  if (add_eos.value_or(false) && tokenizer.eos_ids_.empty()) {
    fail(config_path, ": add_eos_token is true, but config.json has no eos_token_id and ",
         model_path, " defines no </s> piece");
  }
  tokenizer.add_bos_ = add_bos.value_or(true) && tokenizer.bos_id_.has_value();
  tokenizer.add_eos_ = add_eos.value_or(false);

  tokenizer.byte_value_by_id_.assign(vocab_size, -1);
  tokenizer.is_control_by_id_.assign(vocab_size, 0);
  for (int32_t id = 0; id < vocab_size; ++id) {
    if (processor->IsByte(id)) {
      tokenizer.byte_value_by_id_[id] =
          static_cast<int16_t>(parse_byte_piece(processor->IdToPiece(id)));
      if (tokenizer.byte_value_by_id_[id] < 0) {
        fail(model_path, ": byte piece ", id, " is spelled '", processor->IdToPiece(id),
             "', expected <0xHH>");
      }
    }
    if (processor->IsControl(id)) tokenizer.is_control_by_id_[id] = 1;
  }
  if (tokenizer.bos_id_) tokenizer.is_control_by_id_[*tokenizer.bos_id_] = 1;
  for (int32_t id : tokenizer.eos_ids_) tokenizer.is_control_by_id_[id] = 1;

  tokenizer.processor_ = std::move(processor);
  return tokenizer;
}

std::vector<int32_t> Tokenizer::encode(const std::string& text) const {
  return encode_with(text, add_bos_, add_eos_);
}

std::vector<int32_t> Tokenizer::encode_plain(const std::string& text) const {
  return encode_with(text, false, false);
}

std::vector<int32_t> Tokenizer::encode_with(const std::string& text, bool add_bos,
                                            bool add_eos) const {
  std::vector<int> pieces;
  const auto status = processor_->Encode(text, &pieces);
  if (!status.ok()) fail(model_path_, ": cannot encode text (", status.ToString(), ")");
  std::vector<int32_t> ids;
  ids.reserve(pieces.size() + 2);
  if (add_bos) ids.push_back(*bos_id_);
  ids.insert(ids.end(), pieces.begin(), pieces.end());
  if (add_eos) ids.push_back(eos_ids_.front());
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  // Dropping control ids first (rather than letting sentencepiece print them as "") matters for
  // byte pieces: sentencepiece ends a run of bytes at any non-byte piece, so <0xE2> </s> <0x82>
  // <0xAC> would decode as three U+FFFD instead of "€". Streaming drops them the same way.
  std::vector<int> kept;
  kept.reserve(ids.size());
  for (int32_t id : ids) {
    check_id(id);
    if (!is_control_by_id_[id]) kept.push_back(id);
  }
  std::string text;
  const auto status = processor_->Decode(kept, &text);
  if (!status.ok()) fail(model_path_, ": cannot decode ids (", status.ToString(), ")");
  return text;
}

bool Tokenizer::is_eos(int32_t id) const {
  return std::find(eos_ids_.begin(), eos_ids_.end(), id) != eos_ids_.end();
}

std::string Tokenizer::piece(int32_t id) const {
  check_id(id);
  return processor_->IdToPiece(id);
}

bool Tokenizer::is_control(int32_t id) const {
  check_id(id);
  return is_control_by_id_[id] != 0;
}

int Tokenizer::byte_value(int32_t id) const {
  check_id(id);
  return byte_value_by_id_[id];
}

void Tokenizer::check_id(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    fail("token id ", id, " is outside the vocabulary of ", model_path_, " (ids 0..",
         vocab_size() - 1, ")");
  }
}

}  // namespace servelab
