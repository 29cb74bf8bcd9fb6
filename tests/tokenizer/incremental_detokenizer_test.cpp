// IncrementalDetokenizer: streamed text equals the full decode, chunks are always whole UTF-8,
// bytes of a split character are held back (but never forever), and the window stays small.
#include "tokenizer/incremental_detokenizer.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "test_paths.h"
#include "tokenizer/trained_models.h"

namespace servelab {
namespace {

using testing::trained_model_dir;
using testing::TrainedModelKind;

const std::string kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// An independent UTF-8 check (decodes each code point, then checks its range and shortest form),
// so it does not share a bug with the table-driven code under test.
bool is_valid_utf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    const unsigned char lead = byte(i);
    std::size_t length;
    uint32_t code_point;
    if (lead < 0x80) {
      length = 1, code_point = lead;
    } else if ((lead & 0xE0) == 0xC0) {
      length = 2, code_point = lead & 0x1F;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3, code_point = lead & 0x0F;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4, code_point = lead & 0x07;
    } else {
      return false;
    }
    if (i + length > text.size()) return false;
    for (std::size_t k = 1; k < length; ++k) {
      if ((byte(i + k) & 0xC0) != 0x80) return false;
      code_point = (code_point << 6) | (byte(i + k) & 0x3F);
    }
    const uint32_t shortest_minimum[] = {0, 0, 0x80, 0x800, 0x10000};
    if (code_point < shortest_minimum[length]) return false;         // overlong
    if (code_point >= 0xD800 && code_point <= 0xDFFF) return false;  // surrogate
    if (code_point > 0x10FFFF) return false;
    i += length;
  }
  return true;
}

struct Streamed {
  std::vector<std::string> chunks;  // one per push, then finish()
  std::string text;
};

Streamed stream(const Tokenizer& tokenizer, const std::vector<int32_t>& context,
                const std::vector<int32_t>& generated) {
  IncrementalDetokenizer detokenizer(tokenizer, context);
  Streamed result;
  for (int32_t id : generated) result.chunks.push_back(detokenizer.push(id));
  result.chunks.push_back(detokenizer.finish());
  for (const auto& chunk : result.chunks) result.text += chunk;
  EXPECT_EQ(detokenizer.text(), result.text);
  return result;
}

// What the stream must add up to: decode(context + generated) minus decode(context).
std::string expected_text(const Tokenizer& tokenizer, const std::vector<int32_t>& context,
                          const std::vector<int32_t>& generated) {
  std::vector<int32_t> all = context;
  all.insert(all.end(), generated.begin(), generated.end());
  const std::string full = tokenizer.decode(all);
  const std::string prefix = tokenizer.decode(context);
  EXPECT_EQ(full.compare(0, prefix.size(), prefix), 0) << "test bug: context text is not a prefix";
  return full.substr(prefix.size());
}

// True when `context` ends inside a character that `generated` finishes (only possible when an
// encoded text is split at an arbitrary token). That case has its own test: the detokenizer drops
// the half character from the context, so decode(context) is not a prefix of the full text.
bool split_cuts_a_character(const Tokenizer& tokenizer, const std::vector<int32_t>& context,
                            const std::vector<int32_t>& generated) {
  if (context.empty() || generated.empty()) return false;
  const int first = tokenizer.byte_value(generated.front());
  return tokenizer.byte_value(context.back()) >= 0 && first >= 0x80 && first <= 0xBF;
}

std::string describe(const Tokenizer& tokenizer, const std::vector<int32_t>& ids) {
  std::string out;
  for (int32_t id : ids) out += tokenizer.piece(id) + " ";
  return out;
}

class IncrementalDetokenizerTest : public ::testing::TestWithParam<TrainedModelKind> {
 protected:
  void SetUp() override {
    tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::load(trained_model_dir(GetParam())));
    for (int32_t id = 0; id < tokenizer_->vocab_size(); ++id) {
      const int byte = tokenizer_->byte_value(id);
      if (byte >= 0) byte_ids_[byte] = id;
    }
    space_ = piece_id("▁");
  }

  int32_t piece_id(const std::string& piece) const {
    for (int32_t id = 0; id < tokenizer_->vocab_size(); ++id) {
      if (tokenizer_->piece(id) == piece) return id;
    }
    ADD_FAILURE() << "no piece " << piece;
    return 0;
  }

  std::vector<int32_t> byte_tokens(const std::string& text) const {
    std::vector<int32_t> ids;
    for (unsigned char c : text) ids.push_back(byte_ids_[c]);
    return ids;
  }

  // Checks one stream: it equals the full decode, and every chunk is whole UTF-8.
  void check_stream(const std::vector<int32_t>& context, const std::vector<int32_t>& generated) {
    SCOPED_TRACE("context: " + describe(*tokenizer_, context));
    SCOPED_TRACE("generated: " + describe(*tokenizer_, generated));
    const Streamed streamed = stream(*tokenizer_, context, generated);
    ASSERT_EQ(streamed.text, expected_text(*tokenizer_, context, generated));
    for (const auto& chunk : streamed.chunks) ASSERT_TRUE(is_valid_utf8(chunk)) << chunk;
  }

  std::unique_ptr<Tokenizer> tokenizer_;
  int32_t byte_ids_[256] = {};
  int32_t space_ = 0;  // the bare "▁" piece
};

TEST_P(IncrementalDetokenizerTest, StreamingEncodedTextEqualsFullDecodeAtEverySplit) {
  for (const std::string text : {
           "Once upon a time there was a small café at the corner.",
           "Zürich, São Paulo, a crème brûlée 😀 and 🎉 with a ☀.",
           "Unseen: Ω≈ 🦀 日本語, then plain words again.",
       }) {
    const std::vector<int32_t> ids = tokenizer_->encode(text);
    for (std::size_t split = 0; split <= ids.size(); ++split) {
      const std::vector<int32_t> context(ids.begin(), ids.begin() + split);
      const std::vector<int32_t> generated(ids.begin() + split, ids.end());
      if (split_cuts_a_character(*tokenizer_, context, generated)) continue;
      check_stream(context, generated);
      if (split == 0) {
        EXPECT_EQ(stream(*tokenizer_, {}, ids).text, text);
      }
    }
  }
}

TEST_P(IncrementalDetokenizerTest, RandomTokenStreamsEqualFullDecodeInWholeUtf8Chunks) {
  std::mt19937 random(1234);
  const std::vector<std::string> characters = {"é", "ü", "€", "😀", "🦀", "日", "A", " ", "☀"};
  const std::vector<std::string> contexts = {"", "Once upon", "the café", "crab 🦀", " spaced "};
  const auto uniform = [&](int size) { return static_cast<int>(random() % size); };
  for (int round = 0; round < 3000; ++round) {
    std::vector<int32_t> generated;
    const int length = 1 + uniform(30);
    while (static_cast<int>(generated.size()) < length) {
      switch (uniform(6)) {
        case 0:  // any id at all: control, <unk>, byte or ordinary piece
          generated.push_back(uniform(tokenizer_->vocab_size()));
          break;
        case 1: {  // a whole character spelled as byte tokens
          for (int32_t id : byte_tokens(characters[uniform(characters.size())])) {
            generated.push_back(id);
          }
          break;
        }
        case 2:  // any single byte: often a character cut short or a bad byte
          generated.push_back(byte_ids_[uniform(256)]);
          break;
        case 3:  // runs of bare "▁" test the leading-space rule
          for (int k = uniform(4); k >= 0; --k) generated.push_back(space_);
          break;
        default: {  // ordinary text
          for (int32_t id : tokenizer_->encode_plain(round % 2 ? "the lazy dog" : "café au lait")) {
            generated.push_back(id);
          }
        }
      }
    }
    std::vector<int32_t> context = round % 7 == 0
                                       ? std::vector<int32_t>{*tokenizer_->bos_id()}
                                       : tokenizer_->encode(contexts[uniform(contexts.size())]);
    if (round % 5 == 0) {  // a raw-id prompt ending in bare "▁" pieces
      for (int k = uniform(3); k >= 0; --k) context.push_back(space_);
    }
    check_stream(context, generated);
    if (HasFatalFailure()) return;
  }
}

TEST_P(IncrementalDetokenizerTest, EmojiSplitOverByteTokensIsHeldBackUntilComplete) {
  // "😀" is F0 9F 98 80: nothing may come out until the fourth byte.
  const std::vector<int32_t> emoji = byte_tokens("😀");
  EXPECT_EQ(stream(*tokenizer_, tokenizer_->encode("Hello"), emoji).chunks,
            (std::vector<std::string>{"", "", "", "😀", ""}));
  std::vector<int32_t> spaced = {space_};
  spaced.insert(spaced.end(), emoji.begin(), emoji.end());
  EXPECT_EQ(stream(*tokenizer_, tokenizer_->encode("Hello"), spaced).chunks,
            (std::vector<std::string>{" ", "", "", "", "😀", ""}));
}

TEST_P(IncrementalDetokenizerTest, GeneratedPieceAfterPromptKeepsItsLeadingSpace) {
  const int32_t a = piece_id("▁a");
  EXPECT_EQ(stream(*tokenizer_, tokenizer_->encode("Once upon"), {a}).chunks,
            (std::vector<std::string>{" a", ""}));
}

TEST_P(IncrementalDetokenizerTest, FirstPieceWithoutContextLosesItsLeadingSpaceLikeDecode) {
  const int32_t a = piece_id("▁a");
  EXPECT_EQ(tokenizer_->decode({a}), "a");
  EXPECT_EQ(stream(*tokenizer_, {}, {a, a}).chunks, (std::vector<std::string>{"a", " a", ""}));
  // A reply that opens with bare "▁" pieces: as decode prints it (Llama's convention keeps the
  // spaces after the first; sentencepiece's default drops them all).
  const std::vector<int32_t> spaces_then_a = {space_, space_, a};
  EXPECT_EQ(stream(*tokenizer_, {}, spaces_then_a).text, tokenizer_->decode(spaces_then_a));
  // A context of only BOS shows no text, so it counts as no context.
  EXPECT_EQ(stream(*tokenizer_, {*tokenizer_->bos_id()}, {a}).chunks,
            (std::vector<std::string>{"a", ""}));
}

TEST_P(IncrementalDetokenizerTest, BytesThatCannotFormACharacterComeOutAtOnce) {
  const std::string fffd = kReplacement;
  const auto chunks = [&](const std::vector<int32_t>& ids) {
    return stream(*tokenizer_, tokenizer_->encode("ok"), ids).chunks;
  };
  using Chunks = std::vector<std::string>;
  // A lead byte, then a byte that cannot continue it: both come out with that second byte.
  EXPECT_EQ(chunks(byte_tokens("\xE2"
                               "A")),
            (Chunks{"", fffd + "A", ""}));
  // Bytes that can never start a character are not held at all.
  EXPECT_EQ(chunks(byte_tokens("\x80\xC0\xF5\xFF")), (Chunks{fffd, fffd, fffd, fffd, ""}));
  // ED A0 would be a UTF-16 surrogate: invalid as soon as the second byte arrives.
  EXPECT_EQ(chunks(byte_tokens("\xED\xA0")), (Chunks{"", fffd + fffd, ""}));
  // Three bytes of an emoji cut short by an ordinary piece.
  std::vector<int32_t> cut = byte_tokens("\xF0\x9F\x98");
  cut.push_back(piece_id("▁a"));
  EXPECT_EQ(chunks(cut), (Chunks{"", "", "", fffd + fffd + fffd + " a", ""}));
  // A bad lead byte followed by a good character: the good one is not lost.
  EXPECT_EQ(chunks(byte_tokens("\xE2\xE2\x82\xAC")), (Chunks{"", fffd, "", "€", ""}));
}

TEST_P(IncrementalDetokenizerTest, UnfinishedCharacterAtTheEndBecomesReplacementOnFinish) {
  const std::vector<int32_t> ids = byte_tokens("\xE2\x82");  // two of the three bytes of "€"
  const Streamed streamed = stream(*tokenizer_, tokenizer_->encode("price"), ids);
  EXPECT_EQ(streamed.chunks, (std::vector<std::string>{"", "", kReplacement + kReplacement}));
  EXPECT_EQ(streamed.text, expected_text(*tokenizer_, tokenizer_->encode("price"), ids));
}

TEST_P(IncrementalDetokenizerTest, ControlTokensEmitNothingAndDoNotSplitACharacter) {
  const int32_t bos = *tokenizer_->bos_id();
  const int32_t eos = tokenizer_->eos_ids()[0];
  const int32_t im_end = piece_id("<|im_end|>");
  const std::vector<int32_t> euro = byte_tokens("€");
  EXPECT_EQ(stream(*tokenizer_, {}, {bos, euro[0], eos, euro[1], im_end, euro[2], eos}).chunks,
            (std::vector<std::string>{"", "", "", "", "", "€", "", ""}));
}

TEST_P(IncrementalDetokenizerTest, PromptEndingMidCharacterDropsTheUnfinishedTail) {
  // Only raw-id prompts can do this. The half character (E2 82 of "€") stays with the prompt, and
  // generation starts at a character boundary, so the generated AC is a bad byte on its own rather
  // than the end of a "€" whose first bytes the client already saw as prompt.
  std::vector<int32_t> context = tokenizer_->encode("price");
  const std::vector<int32_t> head = byte_tokens("\xE2\x82");
  context.insert(context.end(), head.begin(), head.end());
  std::vector<int32_t> generated = byte_tokens("\xAC");
  generated.push_back(piece_id("▁a"));
  const Streamed streamed = stream(*tokenizer_, context, generated);
  EXPECT_EQ(streamed.chunks, (std::vector<std::string>{kReplacement, " a", ""}));
  EXPECT_EQ(streamed.text, expected_text(*tokenizer_, tokenizer_->encode("price"), generated));
}

TEST_P(IncrementalDetokenizerTest, WindowStaysSmallOverALongStream) {
  // Long runs of bare "▁" and of bytes are the cases that could grow a naive window; an empty
  // context adds the start of a reply, where sentencepiece's leading-space rule is still pending.
  for (const std::string prompt : {"Once upon a time", ""}) {
    SCOPED_TRACE("prompt: " + prompt);
    std::mt19937 random(99);
    const std::vector<int32_t> context =
        prompt.empty() ? std::vector<int32_t>{} : tokenizer_->encode(prompt);
    IncrementalDetokenizer detokenizer(*tokenizer_, context);
    std::vector<int32_t> generated;
    std::size_t largest_window = 0;
    for (int step = 0; step < 20000; ++step) {
      int32_t id;
      const int phase = (step / 500) % 3;
      if (phase == 0) {
        id = space_;
      } else if (phase == 1) {
        id = byte_ids_[random() % 256];
      } else {
        id = static_cast<int32_t>(random() % tokenizer_->vocab_size());
      }
      generated.push_back(id);
      detokenizer.push(id);
      largest_window = std::max(largest_window, detokenizer.window_size());
    }
    detokenizer.finish();
    EXPECT_LE(largest_window, 8u);
    EXPECT_EQ(detokenizer.text(), expected_text(*tokenizer_, context, generated));
  }
}

TEST_P(IncrementalDetokenizerTest, IdsOutsideTheVocabularyAreRejected) {
  IncrementalDetokenizer detokenizer(*tokenizer_, {});
  EXPECT_THROW(detokenizer.push(tokenizer_->vocab_size()), Error);
  EXPECT_THROW(detokenizer.push(-1), Error);
  EXPECT_THROW(IncrementalDetokenizer(*tokenizer_, {1, 100000}), Error);
}

INSTANTIATE_TEST_SUITE_P(TrainedModels, IncrementalDetokenizerTest,
                         ::testing::Values(TrainedModelKind::kBpe,
                                           TrainedModelKind::kUnigramLlamaStyle),
                         [](const auto& info) { return testing::trained_model_name(info.param); });

TEST(IncrementalDetokenizerFixture, StreamsTheFixtureModelLikeDecode) {
  const Tokenizer tokenizer =
      Tokenizer::load(servelab::testing::fixture_path("llama-mha"), SpecialTokens{1, {2}});
  const std::vector<int32_t> ids =
      tokenizer.encode("The keeper wrote: wind from the west, 🦀 crème brûlée, 1 2 3.");
  for (std::size_t split = 0; split <= ids.size(); ++split) {
    const std::vector<int32_t> context(ids.begin(), ids.begin() + split);
    const std::vector<int32_t> generated(ids.begin() + split, ids.end());
    if (split_cuts_a_character(tokenizer, context, generated)) continue;
    EXPECT_EQ(stream(tokenizer, context, generated).text,
              expected_text(tokenizer, context, generated));
  }
}

}  // namespace
}  // namespace servelab
