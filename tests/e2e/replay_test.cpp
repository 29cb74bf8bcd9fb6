// `servelab replay` and `servelab compare` end to end: a short synthetic trace replayed by the
// servelab program against real servers on loopback (static, continuous with a pool small enough
// to preempt, and the balancer in front of both), then the files it writes are read back. Every
// request must come back whole: the right count, the requested number of tokens, no errors.
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "e2e/server_process.h"

namespace servelab::e2e {
namespace {

struct CommandResult {
  int status = -1;
  std::string output;
};

CommandResult run_command(const std::string& command) {
  CommandResult result;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t read = 0;
  while ((read = fread(buffer, 1, sizeof buffer, pipe)) > 0) result.output.append(buffer, read);
  const int status = pclose(pipe);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string read_file(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

std::string fresh_dir(const std::string& name) {
  const std::string dir = testing::binary_path("e2e-replay-" + name);
  std::system(("rm -rf '" + dir + "'").c_str());
  return dir;
}

/// requests.csv's rows (header dropped), each split at commas.
std::vector<std::vector<std::string>> csv_rows(const std::string& path) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream lines(read_file(path));
  std::string line;
  std::getline(lines, line);  // header
  while (std::getline(lines, line)) {
    std::vector<std::string> fields;
    std::string field;
    std::istringstream cells(line);
    while (std::getline(cells, field, ',')) fields.push_back(field);
    if (!line.empty() && line.back() == ',') fields.push_back("");
    rows.push_back(fields);
  }
  return rows;
}

/// The trace: 12 requests at 6 per second, prompts of 20 to 60 tokens, answers of 4 to 24.
const char* const kTrace =
    " --format synthetic --requests 12 --rate 6 --prompt-lengths uniform:20:60"
    " --output-lengths uniform:4:24 --seed 7";

/// Checks what `servelab replay` wrote in `dir` for kTrace: 12 rows, every one ok with exactly
/// the tokens it asked for, and a summary that agrees. `server_metrics`: the URL is a server, whose
/// /metrics has the queue series (the balancer's has its own series, not these).
void expect_complete_replay(const std::string& dir, bool server_metrics = true) {
  const auto rows = csv_rows(dir + "/requests.csv");
  ASSERT_EQ(rows.size(), 12u);
  for (const auto& row : rows) {
    ASSERT_GE(row.size(), 11u);
    EXPECT_EQ(row[6], "1") << "request " << row[0] << " failed: " << row[10];
    EXPECT_EQ(row[5], row[4]) << "request " << row[0] << ": output tokens != max tokens";
    EXPECT_GT(std::stod(row[7]), 0.0) << "request " << row[0] << ": no TTFT";
    EXPECT_GE(std::stod(row[9]), std::stod(row[7])) << "request " << row[0];
  }
  const json summary = json::parse(read_file(dir + "/summary.json"));
  EXPECT_EQ(summary["requests"], 12);
  EXPECT_EQ(summary["succeeded"], 12);
  EXPECT_EQ(summary["failed"], 0);
  EXPECT_TRUE(summary["errors"].empty());
  EXPECT_GT(summary["output_token_throughput"].get<double>(), 0.0);
  EXPECT_EQ(summary["ttft_s"]["count"], 12);
  // The server was scraped: at least one sample saw a request running.
  const auto samples = csv_rows(dir + "/server.csv");
  ASSERT_FALSE(samples.empty());
  if (!server_metrics) return;
  bool saw_running = false;
  for (const auto& sample : samples) saw_running = saw_running || std::stod(sample[1]) > 0;
  EXPECT_TRUE(saw_running);
}

std::string replay_command(const std::string& url, const std::string& dir) {
  return testing::binary_path("servelab") + " replay --url " + url + kTrace + " --out " + dir;
}

TEST(ReplayEndToEnd, OpenLoopAgainstTheStaticServerCompletesEveryRequest) {
  ServerProcess server({"--package-max-workload", "4"}, "static");
  const std::string dir = fresh_dir("static");
  const CommandResult result = run_command(replay_command(server.url(), dir));
  ASSERT_EQ(result.status, 0) << result.output;
  expect_complete_replay(dir);
}

TEST(ReplayEndToEnd, OpenLoopAgainstAContinuousServerThatPreemptsCompletesEveryRequest) {
  // 12 blocks of 16 tokens: three or four of these requests at once fill the pool.
  ServerProcess server({"--num-gpu-blocks", "12", "--num-cpu-blocks", "64"}, "continuous");
  const std::string dir = fresh_dir("continuous");
  const CommandResult result = run_command(replay_command(server.url(), dir));
  ASSERT_EQ(result.status, 0) << result.output;
  expect_complete_replay(dir);
}

TEST(ReplayEndToEnd, ClosedLoopThroughTheBalancerCompletesEveryRequest) {
  ServerProcess first({}, "continuous");
  ServerProcess second({}, "continuous");
  const std::string config_path = testing::binary_path("e2e-replay-balancer.json");
  std::ofstream(config_path) << json{{"servers", {first.url(), second.url()}}}.dump();
  ServerProcess balancer(
      ServerProcess::Command{{"balance", "--config", config_path, "--port", "0"}, ""});
  const std::string dir = fresh_dir("balancer");
  const CommandResult result =
      run_command(replay_command(balancer.url(), dir) + " --concurrency 3");
  ASSERT_EQ(result.status, 0) << result.output;
  expect_complete_replay(dir, /*server_metrics=*/false);
}

TEST(ReplayEndToEnd, CompareRunsTheThreeServersOnOneTraceAndWritesItsReport) {
  const std::string dir = fresh_dir("compare");
  const CommandResult result =
      run_command(testing::binary_path("servelab") + " compare --device " + kDevice + kTrace +
                  " --num-gpu-blocks 64 --max-batch 4 --out " + dir);
  ASSERT_EQ(result.status, 0) << result.output;
  // The side-by-side table: one column per server, every request succeeded on each.
  EXPECT_NE(result.output.find("| | static | continuous-swap | continuous-recompute |"),
            std::string::npos)
      << result.output;
  const std::string report = read_file(dir + "/report.md");
  EXPECT_NE(report.find("goodput"), std::string::npos);
  for (const char* server : {"static", "continuous-swap", "continuous-recompute"}) {
    SCOPED_TRACE(server);
    expect_complete_replay(dir + "/" + server);
  }
}

TEST(ReplayEndToEnd, BadOptionsAreClearErrorsNotCrashes) {
  const std::string servelab = testing::binary_path("servelab");
  CommandResult result = run_command(servelab + " replay --format synthetic");
  EXPECT_EQ(result.status, 1);
  EXPECT_NE(result.output.find("--url is required"), std::string::npos) << result.output;
  result = run_command(servelab + " replay --url http://127.0.0.1:1 --format azure");
  EXPECT_EQ(result.status, 1);
  EXPECT_NE(result.output.find("--trace FILE is required"), std::string::npos) << result.output;
  result = run_command(servelab + " compare --servers static,dynamic");
  EXPECT_EQ(result.status, 1);
  EXPECT_NE(result.output.find("'dynamic' is not a server"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace servelab::e2e
