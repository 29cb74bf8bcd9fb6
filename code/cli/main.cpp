// `servelab`: the command-line entry point. Each subcommand parses its options and calls into
// the modules; no model, sampling or serving logic lives here.
#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "common/error.h"

namespace {

const char* kUsage = R"(servelab: an educational LLM serving engine

usage: servelab <command> [options]

commands:
  generate   generate text from a prompt with a Hugging Face Llama-family model
  inspect    print a model folder's configuration and tensors
  serve      serve a model over HTTP (native and OpenAI-compatible APIs)
  balance    a load balancer in front of several servers (same APIs)
  replay     replay a traffic trace against a server and measure its latencies
  compare    static against continuous batching on the same model and trace

Run `servelab <command> --help` for a command's options.
)";

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << kUsage;
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version") {
    std::cout << "servelab " << SERVELAB_VERSION << "\n";
    return 0;
  }
  const std::string command = args[0];
  args.erase(args.begin());
  try {
    if (command == "generate") return servelab::cli::run_generate(args);
    if (command == "inspect") return servelab::cli::run_inspect(args);
    if (command == "serve") return servelab::cli::run_serve(args);
    if (command == "balance") return servelab::cli::run_balance(args);
    if (command == "replay") return servelab::cli::run_replay(args);
    if (command == "compare") return servelab::cli::run_compare(args);
    std::cerr << "servelab: unknown command '" << command << "'\n\n" << kUsage;
    return 2;
  } catch (const servelab::Error& error) {
    std::cerr << "servelab " << command << ": error: " << error.what() << "\n";
    return 1;
  } catch (const std::exception& error) {
    std::cerr << "servelab " << command << ": internal error: " << error.what() << "\n";
    return 3;
  }
}
