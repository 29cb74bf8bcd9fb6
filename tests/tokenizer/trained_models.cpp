#include "tokenizer/trained_models.h"

#include <sentencepiece_trainer.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "test_paths.h"

namespace servelab::testing {
namespace {

// Removes the temporary directories when the test process exits.
struct TempDirs {
  std::vector<std::string> paths;
  ~TempDirs() {
    for (const auto& path : paths) {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  }
};
TempDirs& temp_dirs() {
  static TempDirs dirs;
  return dirs;
}

// Flags both kinds share: byte fallback (so any text encodes without <unk>), a small vocabulary
// (most of the 500 pieces are the 256 byte pieces, so pieces stay short and bytes show up often),
// and a control piece of the kind chat models add.
const char* kCommonFlags =
    "--vocab_size=500 --byte_fallback=true --character_coverage=1.0 "
    "--control_symbols=<|im_end|> --minloglevel=2 --num_threads=1";

}  // namespace

std::string trained_model_name(TrainedModelKind kind) {
  return kind == TrainedModelKind::kBpe ? "Bpe" : "UnigramLlamaStyle";
}

void train_model(const std::string& dir, const std::string& extra_flags) {
  const std::string corpus = source_path("tests/tokenizer/data/corpus.txt");
  const std::string prefix = dir + "/tokenizer";
  const auto status = sentencepiece::SentencePieceTrainer::Train(
      "--input=" + corpus + " --model_prefix=" + prefix + " " + kCommonFlags + " " + extra_flags);
  if (!status.ok())
    throw std::runtime_error("training a test tokenizer failed: " + status.ToString());
  std::filesystem::remove(prefix + ".vocab");  // the tokenizer reads only tokenizer.model
}

const std::string& trained_model_dir(TrainedModelKind kind) {
  static std::map<TrainedModelKind, std::string> dirs;
  auto it = dirs.find(kind);
  if (it != dirs.end()) return it->second;
  const std::string dir = make_temp_dir();
  if (kind == TrainedModelKind::kBpe) {
    train_model(dir, "--model_type=bpe");
  } else {
    train_model(dir,
                "--model_type=unigram --normalization_rule_name=identity "
                "--remove_extra_whitespaces=false --split_digits=true "
                "--allow_whitespace_only_pieces=true");
  }
  return dirs.emplace(kind, dir).first->second;
}

std::string make_temp_dir() {
  std::string pattern =
      (std::filesystem::temp_directory_path() / "servelab-tokenizer-test-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("cannot create a temporary directory from " + pattern);
  }
  temp_dirs().paths.push_back(pattern);
  return pattern;
}

void write_file(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary);
  out << contents;
  if (!out) throw std::runtime_error("cannot write " + path);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

}  // namespace servelab::testing
