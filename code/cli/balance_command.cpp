// `servelab balance`: the load balancer in front of several servers. It prints where it listens,
// re-reads its config file when the file changes or on SIGHUP, and stops on SIGINT or SIGTERM.
#include <signal.h>

#include <chrono>
#include <iostream>

#include "cli/arguments.h"
#include "cli/commands.h"
#include "client/balancer.h"
#include "common/error.h"

namespace servelab::cli {
namespace {

const char* kBalanceHelp = R"(usage: servelab balance --config FILE [--host H] [--port N]

A load balancer with the servers' API (POST /generate, /v1/completions, /v1/chat/completions;
GET /v1/models, /health, /metrics). Each request goes to a server of its model ("model" in the
body; any when absent) and, with the header X-Servelab-Batching: static|continuous, of that
batching kind. The smallest config file is {"servers": ["http://127.0.0.1:8001", ...]}; see
docs/load-balancer.md for the rest (policy, health_check, retries, server). The file is read
again when it changes, or on SIGHUP. SIGINT or SIGTERM stops it.

options:
  --config FILE   the configuration (required)
  --host H        address to listen on (default: the file's server.host, else 127.0.0.1)
  --port N        port (default: the file's server.port, else 9000; 0 picks a free one)
  --grace S       seconds requests in flight get at shutdown (default: 30)
)";

}  // namespace

int run_balance(const std::vector<std::string>& args) {
  if (asks_for_help(args)) {
    std::cout << kBalanceHelp;
    return 0;
  }
  Arguments options(args, {"config", "host", "port", "grace"}, {});
  const std::string path = options.get("config", "");
  if (path.empty()) fail("--config FILE is required (see servelab balance --help)");
  BalancerConfig config = load_balancer_config(path);
  config.host = options.get("host", config.host);
  config.port = static_cast<int>(options.get_int("port", config.port));
  if (config.port < 0 || config.port > 65535) fail("--port must be in [0, 65535]");
  const double grace_seconds = options.get_double("grace", 30.0);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  Balancer balancer(config, path);
  balancer.start();
  int up = 0;
  for (const ServerStatus& status : balancer.servers()) up += status.up ? 1 : 0;
  std::cout << "servelab balance: listening on http://" << config.host << ":"
            << balancer.bound_port() << " (" << config.servers.size() << " servers, " << up
            << " up, policy " << to_string(config.policy) << ")" << std::endl;
  while (true) {
    int received = 0;
    sigwait(&signals, &received);
    if (received == SIGHUP) {
      balancer.reload();
      continue;
    }
    std::cout << "servelab balance: " << (received == SIGINT ? "SIGINT" : "SIGTERM") << ": stopping"
              << std::endl;
    break;
  }
  balancer.shutdown(std::chrono::milliseconds(static_cast<int64_t>(grace_seconds * 1000)));
  return 0;
}

}  // namespace servelab::cli
