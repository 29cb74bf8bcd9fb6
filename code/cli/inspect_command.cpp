// `servelab inspect`: what a model folder holds, as servelab reads it: the configuration and
// every tensor with its dtype, shape and file. Useful when a checkpoint will not load.
#include <iostream>

#include "cli/arguments.h"
#include "cli/commands.h"
#include "model/checkpoint.h"
#include "model/model_config.h"

namespace servelab::cli {

int run_inspect(const std::vector<std::string>& args) {
  if (asks_for_help(args)) {
    std::cout << "usage: servelab inspect [--model DIR]\n\n"
                 "Prints the model's configuration and its tensors (name, dtype, shape, file).\n";
    return 0;
  }
  Arguments options(args, {"model"}, {});
  const std::string model_dir = options.get("model", default_model_dir());
  ModelConfig config = ModelConfig::load(model_dir);
  std::cout << model_dir << "\n  " << config.summary() << "\n";
  Checkpoint checkpoint = Checkpoint::open(model_dir);
  int64_t parameters = 0;
  for (const std::string& name : checkpoint.tensor_names()) {
    const SafetensorsTensor& tensor = checkpoint.tensor(name);
    parameters += shape_numel(tensor.shape);
    std::cout << "  " << name << "  " << tensor.dtype_name << " " << shape_string(tensor.shape)
              << "\n";
  }
  std::cout << "  " << parameters << " parameters in " << checkpoint.file_paths().size()
            << " file(s)\n";
  return 0;
}

}  // namespace servelab::cli
