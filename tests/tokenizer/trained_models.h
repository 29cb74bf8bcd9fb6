// Sentencepiece models trained by the tests themselves (sentencepiece's C++ trainer, a few tens of
// milliseconds each) on tests/tokenizer/data/corpus.txt, so the tokenizer tests need no binary
// fixture and cover both model types and both whitespace conventions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace servelab::testing {

enum class TrainedModelKind {
  /// BPE with sentencepiece's defaults: NFKC normalization, extra whitespace removed, "▁" dummy
  /// prefix. Byte fallback on, 500 pieces, plus a control piece "<|im_end|>".
  kBpe,
  /// Unigram with Llama's conventions: no normalization, whitespace kept as is, digits split, "▁"
  /// dummy prefix. Byte fallback on, 500 pieces, plus a control piece "<|im_end|>".
  kUnigramLlamaStyle,
};

std::string trained_model_name(TrainedModelKind kind);

/// A directory holding `tokenizer.model` of that kind (and nothing else). Trained once per process,
/// in a temporary directory that is removed at exit.
const std::string& trained_model_dir(TrainedModelKind kind);

/// Trains a model with sentencepiece's command-line style `extra_flags` (e.g. "--bos_id=-1") on the
/// test corpus into `<dir>/tokenizer.model`. Fails the calling test's process on a training error.
void train_model(const std::string& dir, const std::string& extra_flags);

/// A new empty directory, removed at exit.
std::string make_temp_dir();

void write_file(const std::string& path, const std::string& contents);
std::string read_file(const std::string& path);

}  // namespace servelab::testing
