// A Hugging Face model folder's weights: one model.safetensors file, or the shards listed by
// model.safetensors.index.json, behind one name -> tensor lookup.
// It checks that the files and the index agree; it never interprets the tensors (that is weights).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/safetensors.h"

namespace servelab {

class Checkpoint {
 public:
  /// Opens the safetensors of `model_dir`: `model.safetensors` if it exists (as Hugging Face
  /// transformers prefers it), else the shards named by `model.safetensors.index.json`
  /// ({"metadata": {...}, "weight_map": {tensor name: shard file name}}). Every file is mapped and
  /// validated; the index and the shards must agree exactly (each tensor in exactly one shard, the
  /// one the index names). Throws servelab::Error naming the folder, file and tensor at fault.
  static Checkpoint open(const std::string& model_dir);

  Checkpoint(Checkpoint&&) noexcept = default;
  Checkpoint& operator=(Checkpoint&&) noexcept = default;

  const std::string& model_dir() const { return model_dir_; }
  /// The safetensors files, in the order they were opened (one for a single-file checkpoint).
  std::vector<std::string> file_paths() const;

  /// The tensor called `name`; its data points into a mapping that lives as long as this object.
  /// Throws servelab::Error naming the checkpoint and the tensor if there is none.
  const SafetensorsTensor& tensor(const std::string& name) const;
  bool contains(const std::string& name) const;
  /// All tensor names, sorted.
  std::vector<std::string> tensor_names() const;
  /// The path of the file holding tensor `name`; throws like tensor() if there is none.
  std::string file_of(const std::string& name) const;

  /// Checks the set of tensor names is exactly `expected`, except that names in `allowed_extra` may
  /// be present or not (e.g. "lm_head.weight" with tied embeddings). A missing or an unexpected
  /// tensor is an error listing the first few of each and naming the folder.
  void check_tensor_names(const std::vector<std::string>& expected,
                          const std::vector<std::string>& allowed_extra = {}) const;

 private:
  Checkpoint() = default;
  void add_file_tensors(const SafetensorsFile& file);
  /// "checkpoint DIR (FILE)", the subject of error messages.
  std::string description() const;

  struct Location {
    const SafetensorsFile* file;
    const SafetensorsTensor* tensor;
  };
  std::string model_dir_;
  std::string source_file_;  // model.safetensors or model.safetensors.index.json, for messages
  // Held by pointer so that Location pointers stay valid when the Checkpoint moves.
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Location> tensors_;
};

}  // namespace servelab
