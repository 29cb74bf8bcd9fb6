// Tokenizer: loading, encode/decode round trips, BOS/EOS rules, and errors on bad files and ids.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/error.h"
#include "test_helpers.h"
#include "test_paths.h"
#include "tokenizer/trained_models.h"

namespace servelab {
namespace {

using ::servelab::testing::error_message;

using testing::make_temp_dir;
using testing::read_file;
using testing::trained_model_dir;
using testing::TrainedModelKind;
using testing::write_file;

// A directory with a copy of the model of `kind` and, unless empty, this tokenizer_config.json.
std::string model_dir_with_config(TrainedModelKind kind, const std::string& tokenizer_config) {
  const std::string dir = make_temp_dir();
  std::filesystem::copy_file(trained_model_dir(kind) + "/tokenizer.model",
                             dir + "/tokenizer.model");
  if (!tokenizer_config.empty()) write_file(dir + "/tokenizer_config.json", tokenizer_config);
  return dir;
}

int32_t id_of_piece(const Tokenizer& tokenizer, const std::string& piece) {
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) {
    if (tokenizer.piece(id) == piece) return id;
  }
  return -1;
}

int32_t id_of_byte(const Tokenizer& tokenizer, int byte) {
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) {
    if (tokenizer.byte_value(id) == byte) return id;
  }
  return -1;
}

class TokenizerTest : public ::testing::TestWithParam<TrainedModelKind> {
 protected:
  Tokenizer load(const SpecialTokens& special = {}) {
    return Tokenizer::load(trained_model_dir(GetParam()), special);
  }
};

TEST_P(TokenizerTest, RoundTripsTextWithAccentsEmojiAndUnseenCharacters) {
  const Tokenizer tokenizer = load();
  for (const std::string text : {
           "Once upon a time there was a small café.",
           "Zürich, São Paulo and a crème brûlée 😀 🎉",
           "Characters the corpus never saw: Ω≈ 🦀 日本語 ✓",
           "Numbers 1234 and 99 bottles.",
       }) {
    SCOPED_TRACE(text);
    EXPECT_EQ(tokenizer.decode(tokenizer.encode_plain(text)), text);
    EXPECT_EQ(tokenizer.decode(tokenizer.encode(text)), text);  // BOS is dropped by decode
  }
}

TEST_P(TokenizerTest, UnseenCharacterFallsBackToItsUtf8Bytes) {
  const Tokenizer tokenizer = load();
  // "🦀" is not in the corpus, so it has no piece: its four UTF-8 bytes become byte pieces.
  std::vector<int> bytes;
  for (int32_t id : tokenizer.encode_plain("🦀")) {
    if (tokenizer.byte_value(id) >= 0) bytes.push_back(tokenizer.byte_value(id));
  }
  EXPECT_EQ(bytes, (std::vector<int>{0xF0, 0x9F, 0xA6, 0x80}));
}

TEST_P(TokenizerTest, EncodeAddsBosAndNoEosWithoutTokenizerConfig) {
  const Tokenizer tokenizer = load();
  ASSERT_TRUE(tokenizer.bos_id().has_value());
  EXPECT_EQ(tokenizer.piece(*tokenizer.bos_id()), "<s>");
  ASSERT_EQ(tokenizer.eos_ids().size(), 1u);
  EXPECT_EQ(tokenizer.piece(tokenizer.eos_ids()[0]), "</s>");

  const std::vector<int32_t> plain = tokenizer.encode_plain("Once upon a time");
  std::vector<int32_t> expected = {*tokenizer.bos_id()};
  expected.insert(expected.end(), plain.begin(), plain.end());
  EXPECT_EQ(tokenizer.encode("Once upon a time"), expected);
}

TEST_P(TokenizerTest, TokenizerConfigTurnsBosOffAndEosOn) {
  const Tokenizer tokenizer = Tokenizer::load(
      model_dir_with_config(GetParam(), R"({"add_bos_token": false, "add_eos_token": true})"));
  std::vector<int32_t> expected = tokenizer.encode_plain("a quiet street");
  expected.push_back(tokenizer.eos_ids()[0]);
  EXPECT_EQ(tokenizer.encode("a quiet street"), expected);
}

TEST_P(TokenizerTest, NullFlagsInTokenizerConfigMeanTheDefaults) {
  const Tokenizer tokenizer = Tokenizer::load(model_dir_with_config(
      GetParam(), R"({"add_bos_token": null, "add_eos_token": null, "bos_token": "<s>"})"));
  const std::vector<int32_t> ids = tokenizer.encode("street");
  EXPECT_EQ(ids.front(), *tokenizer.bos_id());
  EXPECT_FALSE(tokenizer.is_eos(ids.back()));
}

TEST_P(TokenizerTest, SpecialTokensFromConfigJsonOverrideTheModelsOwn) {
  const Tokenizer plain = load();
  const int32_t im_end = id_of_piece(plain, "<|im_end|>");
  const int32_t the = id_of_piece(plain, "▁the");
  ASSERT_GE(im_end, 0);
  ASSERT_GE(the, 0);

  // An EOS list (config.json "eos_token_id": [im_end, 2]) and a BOS that is an ordinary piece.
  const Tokenizer tokenizer = load(SpecialTokens{the, {im_end, plain.eos_ids()[0]}});
  EXPECT_EQ(tokenizer.bos_id(), the);
  EXPECT_EQ(tokenizer.eos_ids(), (std::vector<int32_t>{im_end, plain.eos_ids()[0]}));
  EXPECT_TRUE(tokenizer.is_eos(im_end));
  EXPECT_TRUE(tokenizer.is_eos(plain.eos_ids()[0]));
  EXPECT_FALSE(tokenizer.is_eos(the));
  EXPECT_EQ(tokenizer.encode("cat").front(), the);
  // Declared special, so decode drops it although it is an ordinary piece.
  EXPECT_TRUE(tokenizer.is_control(the));
  EXPECT_EQ(tokenizer.decode(tokenizer.encode("a cat")), "a cat");
}

TEST_P(TokenizerTest, DecodeDropsBosEosAndControlPieces) {
  const Tokenizer tokenizer = load();
  const int32_t im_end = id_of_piece(tokenizer, "<|im_end|>");
  ASSERT_GE(im_end, 0);
  std::vector<int32_t> ids = {*tokenizer.bos_id()};
  for (int32_t id : tokenizer.encode_plain("the café")) ids.push_back(id);
  ids.push_back(im_end);
  ids.push_back(tokenizer.eos_ids()[0]);
  EXPECT_EQ(tokenizer.decode(ids), "the café");
}

TEST_P(TokenizerTest, ControlPieceBetweenBytesDoesNotSplitTheCharacter) {
  const Tokenizer tokenizer = load();
  const int32_t eos = tokenizer.eos_ids()[0];
  // "€" is E2 82 AC; an EOS in the middle must not turn it into three U+FFFD.
  const std::vector<int32_t> ids = {id_of_byte(tokenizer, 0xE2), eos, id_of_byte(tokenizer, 0x82),
                                    id_of_byte(tokenizer, 0xAC)};
  EXPECT_EQ(tokenizer.decode(ids), "€");
}

TEST_P(TokenizerTest, DecodeOfInvalidBytesGivesReplacementCharacters) {
  const Tokenizer tokenizer = load();
  // A lone continuation byte and a lead byte with no continuation: one U+FFFD each.
  EXPECT_EQ(tokenizer.decode({id_of_byte(tokenizer, 0x80), id_of_byte(tokenizer, 'A'),
                              id_of_byte(tokenizer, 0xE2)}),
            "\xEF\xBF\xBD"
            "A\xEF\xBF\xBD");
}

TEST_P(TokenizerTest, IdsOutsideTheVocabularyAreRejected) {
  const Tokenizer tokenizer = load();
  const int32_t size = tokenizer.vocab_size();
  EXPECT_EQ(size, 500);  // --vocab_size counts <unk>, <s>, </s>, <|im_end|> and the 256 bytes
  EXPECT_NE(error_message([&] {
              tokenizer.decode({5, size});
            }).find("outside the vocabulary"),
            std::string::npos);
  EXPECT_THROW(tokenizer.decode({-1}), Error);
  EXPECT_THROW(tokenizer.piece(size), Error);
  EXPECT_THROW(tokenizer.is_control(-7), Error);
  EXPECT_THROW(tokenizer.byte_value(size + 100), Error);
}

TEST_P(TokenizerTest, PieceAndByteValueShowTheStoredPieces) {
  const Tokenizer tokenizer = load();
  const int32_t e2 = id_of_byte(tokenizer, 0xE2);
  ASSERT_GE(e2, 0);
  EXPECT_EQ(tokenizer.piece(e2), "<0xE2>");
  EXPECT_EQ(tokenizer.byte_value(*tokenizer.bos_id()), -1);
  EXPECT_TRUE(tokenizer.is_control(*tokenizer.bos_id()));
  EXPECT_FALSE(tokenizer.is_control(e2));
  const int32_t the = id_of_piece(tokenizer, "▁the");
  ASSERT_GE(the, 0);
  EXPECT_EQ(tokenizer.decode({the}), "the");  // the first piece's "▁" is dropped
  EXPECT_EQ(tokenizer.decode({the, the}), "the the");
}

INSTANTIATE_TEST_SUITE_P(TrainedModels, TokenizerTest,
                         ::testing::Values(TrainedModelKind::kBpe,
                                           TrainedModelKind::kUnigramLlamaStyle),
                         [](const auto& info) { return testing::trained_model_name(info.param); });

TEST(TokenizerLoad, MissingTokenizerModelIsAnErrorNamingThePath) {
  const std::string dir = make_temp_dir();
  const std::string message = error_message([&] { Tokenizer::load(dir); });
  EXPECT_NE(message.find(dir + "/tokenizer.model"), std::string::npos) << message;
  EXPECT_NE(message.find("not found"), std::string::npos) << message;
}

TEST(TokenizerLoad, CorruptTokenizerModelIsAnErrorNotACrash) {
  const std::string valid =
      read_file(trained_model_dir(TrainedModelKind::kBpe) + "/tokenizer.model");
  std::string garbage;
  for (int i = 0; i < 4096; ++i) garbage.push_back(static_cast<char>((i * 131 + 7) % 256));
  const std::vector<std::string> corrupt = {
      "",  // empty file
      "this is not a sentencepiece model\n", garbage,
      valid.substr(0, valid.size() / 2),  // truncated mid-record
  };
  for (const std::string& contents : corrupt) {
    const std::string dir = make_temp_dir();
    write_file(dir + "/tokenizer.model", contents);
    const std::string message = error_message([&] { Tokenizer::load(dir); });
    EXPECT_NE(message.find(dir + "/tokenizer.model"), std::string::npos) << message;
  }
}

TEST(TokenizerLoad, MalformedTokenizerConfigIsAnErrorNamingTheFile) {
  for (const std::string config : {
           R"({"add_bos_token": true,)",   // cut short
           R"(["add_bos_token"])",         // not an object
           R"({"add_bos_token": "yes"})",  // not a boolean
       }) {
    SCOPED_TRACE(config);
    const std::string dir = model_dir_with_config(TrainedModelKind::kBpe, config);
    const std::string message = error_message([&] { Tokenizer::load(dir); });
    EXPECT_NE(message.find(dir + "/tokenizer_config.json"), std::string::npos) << message;
  }
}

TEST(TokenizerLoad, SpecialIdsOutsideTheVocabularyAreAnError) {
  const std::string dir = trained_model_dir(TrainedModelKind::kBpe);
  std::string message = error_message([&] { Tokenizer::load(dir, SpecialTokens{9999, {}}); });
  EXPECT_NE(message.find("bos_token_id 9999"), std::string::npos) << message;
  message = error_message([&] { Tokenizer::load(dir, SpecialTokens{std::nullopt, {2, -1}}); });
  EXPECT_NE(message.find("eos_token_id -1"), std::string::npos) << message;
}

TEST(TokenizerLoad, ModelWithoutBosAddsNoneUnlessTokenizerConfigAsksForIt) {
  const std::string dir = make_temp_dir();
  testing::train_model(dir, "--model_type=bpe --bos_id=-1");
  const Tokenizer tokenizer = Tokenizer::load(dir);
  EXPECT_FALSE(tokenizer.bos_id().has_value());
  EXPECT_EQ(tokenizer.encode("a cat"), tokenizer.encode_plain("a cat"));

  write_file(dir + "/tokenizer_config.json", R"({"add_bos_token": true})");
  const std::string message = error_message([&] { Tokenizer::load(dir); });
  EXPECT_NE(message.find("add_bos_token"), std::string::npos) << message;
  // config.json can supply the BOS the sentencepiece model lacks.
  EXPECT_EQ(Tokenizer::load(dir, SpecialTokens{0, {}}).encode("a").front(), 0);
}

TEST(TokenizerLoad, FixtureModelRoundTrips) {
  // The Llama-style fixture tokenizer the model tests use (tests/fixtures/make_fixtures.py).
  const Tokenizer tokenizer =
      Tokenizer::load(servelab::testing::fixture_path("llama-mha"), SpecialTokens{1, {2}});
  const std::string text = "The lighthouse keeper counted 112 steps: voilà, Zürich 🦀!";
  const std::vector<int32_t> ids = tokenizer.encode(text);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(tokenizer.decode(ids), text);
}

}  // namespace
}  // namespace servelab
