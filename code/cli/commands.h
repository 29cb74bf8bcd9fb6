// The subcommands of `servelab`. Each takes the arguments after its name and returns an exit code.
#pragma once

#include <string>
#include <vector>

namespace servelab::cli {

/// The embedded default model's folder (`models/...` in the source tree), unless SERVELAB_MODEL is
/// set.
std::string default_model_dir();

int run_generate(const std::vector<std::string>& args);
int run_inspect(const std::vector<std::string>& args);
int run_serve(const std::vector<std::string>& args);
int run_balance(const std::vector<std::string>& args);
int run_replay(const std::vector<std::string>& args);
int run_compare(const std::vector<std::string>& args);

}  // namespace servelab::cli
