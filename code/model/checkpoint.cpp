#include "model/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <unordered_set>

#include "common/error.h"

namespace servelab {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kSingleFileName = "model.safetensors";
constexpr const char* kIndexFileName = "model.safetensors.index.json";
// How many names an error message lists before it says "..."
constexpr size_t kNamesListed = 5;

std::string read_text_file(const std::string& path) {
  std::ifstream stream(path, std::ios::binary);
  if (!stream) fail(path, ": cannot open for reading");
  std::ostringstream text;
  text << stream.rdbuf();
  if (stream.bad()) fail(path, ": read error");
  return text.str();
}

/// Parses the index, rejecting a tensor listed twice in "weight_map" (nlohmann would keep only the
/// last one, hiding the conflict).
Json parse_index(const std::string& index_path) {
  std::string text = read_text_file(index_path);
  std::string top_level_key;
  std::unordered_set<std::string> weight_map_names;
  std::string duplicate_name;
  auto watch_keys = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (event != Json::parse_event_t::key) return true;
    const auto& key = parsed.get_ref<const std::string&>();
    if (depth == 1) top_level_key = key;
    if (depth == 2 && top_level_key == "weight_map" && duplicate_name.empty() &&
        !weight_map_names.insert(key).second) {
      duplicate_name = key;
    }
    return true;
  };
  Json root;
  try {
    root = Json::parse(text, watch_keys);
  } catch (const Json::exception& error) {
    fail(index_path, ": not valid JSON: ", error.what());
  }
  if (!root.is_object()) fail(index_path, ": must be a JSON object, found ", root.type_name());
  if (!duplicate_name.empty()) {
    fail(index_path, ": tensor '", duplicate_name, "' is listed twice in \"weight_map\"");
  }
  return root;
}

/// Shard names come from a file, so they must not reach outside the model folder: Hugging Face
/// writes plain file names ("model-00001-of-00002.safetensors"), and only those are accepted.
void check_shard_name(const std::string& index_path, const std::string& tensor_name,
                      const std::string& shard_name) {
  if (shard_name.empty() || shard_name == "." || shard_name == ".." ||
      shard_name.find_first_of("/\\") != std::string::npos) {
    fail(index_path, ": \"weight_map\" puts tensor '", tensor_name, "' in shard '", shard_name,
         "'; expected a plain file name inside the model folder (no '/', not '..')");
  }
}

/// "a, b, c, ... (12 in all)"
std::string list_some(const std::vector<std::string>& names) {
  std::string text;
  for (size_t i = 0; i < names.size() && i < kNamesListed; ++i) {
    if (i > 0) text += ", ";
    text += "'" + names[i] + "'";
  }
  if (names.size() > kNamesListed) text += str_cat(", ... (", names.size(), " in all)");
  return text;
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& model_dir) {
  std::error_code ignored;
  if (!fs::is_directory(model_dir, ignored)) {
    fail("model folder '", model_dir, "' does not exist or is not a folder");
  }
  Checkpoint checkpoint;
  checkpoint.model_dir_ = model_dir;
  const std::string single_path = (fs::path(model_dir) / kSingleFileName).string();
  const std::string index_path = (fs::path(model_dir) / kIndexFileName).string();

  if (fs::exists(single_path, ignored)) {
    checkpoint.source_file_ = kSingleFileName;
    checkpoint.files_.push_back(std::make_unique<SafetensorsFile>(single_path));
    checkpoint.add_file_tensors(*checkpoint.files_.back());
    return checkpoint;
  }
  if (!fs::exists(index_path, ignored)) {
    fail("model folder '", model_dir, "' has neither ", kSingleFileName, " nor ", kIndexFileName,
         "; expected the weights in Hugging Face's safetensors layout");
  }

  checkpoint.source_file_ = kIndexFileName;
  Json index = parse_index(index_path);
  auto weight_map = index.find("weight_map");
  if (weight_map == index.end()) {
    fail(index_path, ": has no \"weight_map\" (an object mapping tensor names to shard files)");
  }
  if (!weight_map->is_object()) {
    fail(index_path, ": \"weight_map\" must be an object mapping tensor names to shard files, ",
         "found ", weight_map->type_name());
  }

  // Open each shard once, in the order the index first mentions it, and find each listed tensor in
  // the shard the index names.
  std::map<std::string, const SafetensorsFile*> shard_by_name;
  for (const auto& item : weight_map->items()) {
    const std::string& tensor_name = item.key();
    if (!item.value().is_string()) {
      fail(index_path, ": \"weight_map\" entry for tensor '", tensor_name,
           "' must be a shard file name, found ", item.value().type_name());
    }
    const std::string shard_name = item.value().get<std::string>();
    check_shard_name(index_path, tensor_name, shard_name);
    auto [shard, inserted] = shard_by_name.emplace(shard_name, nullptr);
    if (inserted) {
      const std::string shard_path = (fs::path(model_dir) / shard_name).string();
      if (!fs::is_regular_file(shard_path, ignored)) {
        fail(index_path, ": \"weight_map\" puts tensor '", tensor_name, "' in shard '", shard_name,
             "', but ", shard_path, " does not exist");
      }
      checkpoint.files_.push_back(std::make_unique<SafetensorsFile>(shard_path));
      shard->second = checkpoint.files_.back().get();
    }
    const SafetensorsTensor* tensor = shard->second->find(tensor_name);
    if (tensor == nullptr) {
      fail(index_path, ": \"weight_map\" puts tensor '", tensor_name, "' in ",
           shard->second->path(), ", but that file has no such tensor");
    }
    checkpoint.tensors_.emplace(tensor_name, Location{shard->second, tensor});
  }

  // The other direction: every tensor of every shard must be the one the index points to, or
  // loading would silently pick one copy and ignore the other.
  for (const auto& file : checkpoint.files_) {
    for (const SafetensorsTensor& tensor : file->tensors()) {
      auto listed = checkpoint.tensors_.find(tensor.name);
      if (listed == checkpoint.tensors_.end()) {
        fail(file->path(), ": has tensor '", tensor.name, "', which ", index_path,
             " does not list in its \"weight_map\"");
      }
      if (listed->second.file != file.get()) {
        fail("tensor '", tensor.name, "' is stored in two shards, ", listed->second.file->path(),
             " and ", file->path(), " (", index_path, " names the first)");
      }
    }
  }
  return checkpoint;
}

void Checkpoint::add_file_tensors(const SafetensorsFile& file) {
  for (const SafetensorsTensor& tensor : file.tensors()) {
    tensors_.emplace(tensor.name, Location{&file, &tensor});
  }
}

std::string Checkpoint::description() const {
  return str_cat("checkpoint ", (fs::path(model_dir_) / source_file_).string());
}

std::vector<std::string> Checkpoint::file_paths() const {
  std::vector<std::string> paths;
  for (const auto& file : files_) paths.push_back(file->path());
  return paths;
}

const SafetensorsTensor& Checkpoint::tensor(const std::string& name) const {
  auto found = tensors_.find(name);
  if (found == tensors_.end()) fail(description(), ": has no tensor '", name, "'");
  return *found->second.tensor;
}

bool Checkpoint::contains(const std::string& name) const {
  return tensors_.count(name) > 0;
}

std::vector<std::string> Checkpoint::tensor_names() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& entry : tensors_) names.push_back(entry.first);  // std::map: already sorted
  return names;
}

std::string Checkpoint::file_of(const std::string& name) const {
  auto found = tensors_.find(name);
  if (found == tensors_.end()) fail(description(), ": has no tensor '", name, "'");
  return found->second.file->path();
}

void Checkpoint::check_tensor_names(const std::vector<std::string>& expected,
                                    const std::vector<std::string>& allowed_extra) const {
  const std::set<std::string> expected_names(expected.begin(), expected.end());
  const std::set<std::string> allowed_names(allowed_extra.begin(), allowed_extra.end());
  std::vector<std::string> missing, unexpected;
  for (const std::string& name : expected_names) {
    if (tensors_.count(name) == 0) missing.push_back(name);
  }
  for (const auto& entry : tensors_) {
    if (expected_names.count(entry.first) == 0 && allowed_names.count(entry.first) == 0) {
      unexpected.push_back(entry.first);
    }
  }
  if (missing.empty() && unexpected.empty()) return;
  std::string problems;
  if (!missing.empty()) {
    problems += str_cat(missing.size(), " missing: ", list_some(missing));
  }
  if (!unexpected.empty()) {
    if (!problems.empty()) problems += "; ";
    problems += str_cat(unexpected.size(), " unexpected: ", list_some(unexpected));
  }
  fail(description(), ": the tensors differ from those the model expects: ", problems);
}

}  // namespace servelab
