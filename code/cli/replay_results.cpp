#include "cli/replay_results.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <iostream>
#include <sstream>

#include "common/error.h"

namespace servelab::cli {
namespace {

nlohmann::json percentiles_json(const Percentiles& p) {
  return {
      {"mean", p.mean}, {"median", p.median}, {"p90", p.p90}, {"p99", p.p99}, {"count", p.count}};
}

std::ofstream open_for_writing(const std::string& path) {
  std::ofstream file(path);
  if (!file) fail("cannot write ", path);
  return file;
}

/// The time bins of throughput.csv: 1 s, or wider so that a long run has at most 300 bins.
double bin_width_for(double duration) {
  return std::max(1.0, std::ceil(duration / 300.0));
}

void write_throughput_csv(const std::string& path, const ReplayResult& result) {
  double end = result.duration_seconds;
  for (const RequestTiming& timing : result.timings) end = std::max(end, timing.finished);
  const double width = bin_width_for(end);
  const size_t bins = static_cast<size_t>(std::floor(end / width)) + 1;
  std::vector<double> tokens(bins, 0.0), finished(bins, 0.0);
  auto bin_of = [&](double t) {
    return std::min(bins - 1, static_cast<size_t>(std::max(0.0, std::floor(t / width))));
  };
  for (const RequestTiming& timing : result.timings) {
    if (!timing.ok) continue;
    finished[bin_of(timing.finished)] += 1;
    // A chunk carries the text of one or more tokens; the stream does not say how many, so the
    // request's tokens are spread evenly over its chunks.
    if (timing.chunk_times.empty()) {
      tokens[bin_of(timing.finished)] += static_cast<double>(timing.output_tokens);
      continue;
    }
    const double per_chunk =
        static_cast<double>(timing.output_tokens) / static_cast<double>(timing.chunk_times.size());
    for (double t : timing.chunk_times) tokens[bin_of(t)] += per_chunk;
  }
  std::ofstream csv = open_for_writing(path);
  csv << "time_s,output_tokens_per_s,finished_requests_per_s\n";
  for (size_t i = 0; i < bins; ++i)
    csv << static_cast<double>(i) * width << ',' << tokens[i] / width << ',' << finished[i] / width
        << '\n';
}

std::string slo_arrow(double seconds, double scale) {
  if (seconds <= 0) return "";
  std::ostringstream text;
  text << "set arrow from " << seconds * scale << ", graph 0 to " << seconds * scale
       << ", graph 1 nohead dashtype 2 lc rgb 'gray40'\n";
  return text.str();
}

// requests.csv's columns (1-based, as gnuplot counts): 6 output_tokens, 7 ok, 8 ttft_s, 9 tpot_s,
// 10 e2e_s. The CDFs count the successful requests (TPOT: those of two tokens or more).
const char* kOkRow = "($7==1)";
const char* kTpotRow = "($7==1 && $6>1)";

/// A gnuplot plot clause drawing the CDF of column expression `x` over the rows where `row` holds:
/// each such row adds 1/n (n counted first with `stats`, into variable `n_name`). Rows left out
/// add 0, so the curve neither breaks nor renormalises. `x` is floored at 1e-4 for log axes.
std::string cdf_setup(const std::string& file, const std::string& row, const std::string& n_name) {
  return "stats '" + file + "' using (" + row + " ? 1 : 0) nooutput\n" + n_name +
         " = STATS_sum > 0 ? STATS_sum : 1\n";
}

std::string cdf_clause(const std::string& file, const std::string& x, const std::string& row,
                       const std::string& n_name, const std::string& title) {
  return "'" + file + "' using (" + x + " > 1e-4 ? " + x + " : 1e-4):(" + row + " ? 1.0/" + n_name +
         " : 0) smooth cumulative title '" + title + "' with lines lw 2";
}

const char* kPreamble =
    "# Drawn by servelab; run `gnuplot plots.gnuplot` in this folder to draw it again.\n"
    "set datafile separator ','\n"
    "set key autotitle columnhead\n"
    "set grid\n";

}  // namespace

void print_progress(int64_t total, int64_t sent, int64_t finished, int64_t output_tokens,
                    double seconds) {
  // On a terminal the bar is redrawn in place; into a log (CI, a remote machine) a line every
  // 10 seconds, and the last one, is enough.
  static const bool terminal = isatty(fileno(stderr)) != 0;
  static double last_line = -1;
  // The current throughput: output tokens over the last 5 seconds of calls (a new run, whose
  // clock starts again, clears them).
  static std::deque<std::pair<double, int64_t>> recent;
  const bool last = output_tokens < 0;
  if (!recent.empty() && seconds < recent.back().first) recent.clear();
  if (!last) {
    recent.emplace_back(seconds, output_tokens);
    while (recent.size() > 1 && seconds - recent.front().first > 5) recent.pop_front();
  }
  if (!terminal) {
    if (!last && last_line >= 0 && seconds - last_line < 10 && seconds >= last_line) return;
    last_line = last ? -1 : seconds;
  }
  const int width = 30;
  const int filled = total > 0 ? static_cast<int>(width * finished / total) : 0;
  std::fprintf(stderr, "%s  [%s%s] %lld/%lld done, %lld sent", terminal ? "\r" : "",
               std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
               static_cast<long long>(finished), static_cast<long long>(total),
               static_cast<long long>(sent));
  if (!last) {
    const double span = seconds - recent.front().first;
    std::fprintf(
        stderr, ", %.0f tokens/s now",
        span > 0 ? static_cast<double>(output_tokens - recent.front().second) / span : 0.0);
  }
  std::fprintf(stderr, ", %.0f s   %s", seconds, terminal ? "" : "\n");
  std::fflush(stderr);
}

nlohmann::json summary_json(const RunSummary& summary, const Slo& slo) {
  nlohmann::json errors = nlohmann::json::object();
  for (const auto& [kind, count] : summary.errors) errors[kind] = count;
  return {{"requests", summary.requests},
          {"succeeded", summary.succeeded},
          {"failed", summary.failed},
          {"errors", errors},
          {"duration_s", summary.duration_seconds},
          {"request_throughput", summary.request_throughput},
          {"output_token_throughput", summary.output_token_throughput},
          {"slo", {{"ttft_s", slo.ttft_seconds}, {"tpot_s", slo.tpot_seconds}}},
          {"goodput", summary.goodput},
          {"met_slo", summary.met_slo},
          {"ttft_s", percentiles_json(summary.ttft)},
          {"tpot_s", percentiles_json(summary.tpot)},
          {"itl_s", percentiles_json(summary.itl)},
          {"e2e_s", percentiles_json(summary.e2e)}};
}

void write_run_results(const std::string& dir, const std::vector<TraceRequest>& trace,
                       const ReplayResult& result, const RunSummary& summary, const Slo& slo,
                       const nlohmann::json& extra) {
  {
    std::ofstream csv = open_for_writing(dir + "/requests.csv");
    csv << "index,arrival_s,sent_s,prompt_tokens,max_tokens,output_tokens,ok,ttft_s,tpot_s,e2e_s,"
           "error\n";
    for (size_t i = 0; i < trace.size() && i < result.timings.size(); ++i) {
      const RequestTiming& timing = result.timings[i];
      const RequestLatency latency = latency_of(timing);
      csv << i << ',' << trace[i].arrival_seconds << ',' << timing.sent << ','
          << trace[i].prompt_tokens << ',' << trace[i].output_tokens << ',' << timing.output_tokens
          << ',' << (timing.ok ? 1 : 0) << ',' << latency.ttft << ',' << latency.tpot << ','
          << latency.e2e << ',' << timing.error << '\n';
    }
  }
  {
    std::ofstream csv = open_for_writing(dir + "/server.csv");
    csv << "time_s,running,waiting,swapped,kv_usage\n";
    for (const ServerSample& s : result.samples)
      csv << s.time << ',' << s.running << ',' << s.waiting << ',' << s.swapped << ',' << s.kv_usage
          << '\n';
  }
  write_throughput_csv(dir + "/throughput.csv", result);
  nlohmann::json json = summary_json(summary, slo);
  json.update(extra);
  open_for_writing(dir + "/summary.json") << json.dump(2) << "\n";
}

std::string run_plot_script(const Slo& slo) {
  std::ostringstream gp;
  gp << kPreamble << cdf_setup("requests.csv", kOkRow, "n_ok")
     << cdf_setup("requests.csv", kTpotRow, "n_tpot")
     << "set terminal svg size 1000,450 dynamic background rgb 'white'\n"
        "set output 'latency_cdf.svg'\n"
        "set multiplot layout 1,2 title 'Latency CDFs (successful requests; dashed: the SLO)'\n"
        "set ylabel 'fraction of requests'\nset yrange [0:1]\nset key bottom right\n"
        "set xlabel 'seconds'\n"
     << slo_arrow(slo.ttft_seconds, 1) << "plot "
     << cdf_clause("requests.csv", "$8", kOkRow, "n_ok", "TTFT") << ", "
     << cdf_clause("requests.csv", "$10", kOkRow, "n_ok", "end-to-end")
     << "\nunset arrow\nset xlabel 'milliseconds'\n"
     << slo_arrow(slo.tpot_seconds, 1000) << "plot "
     << cdf_clause("requests.csv", "$9*1000", kTpotRow, "n_tpot", "TPOT")
     << "\nunset multiplot\nunset arrow\nset yrange [*:*]\n"
        "set terminal svg size 1000,650 dynamic background rgb 'white'\n"
        "set output 'over_time.svg'\n"
        "set multiplot layout 2,1\nset xlabel 'seconds since the start'\n"
        "set ylabel 'output tokens/s'\nset key top right\n"
        "plot 'throughput.csv' using 1:2 title 'output tokens/s' with steps lw 2\n"
        "set ylabel 'requests'\nset y2label 'KV blocks in use (%)'\nset y2range [0:100]\n"
        "set ytics nomirror\nset y2tics\n"
        "plot 'server.csv' using 1:2 title 'running' with lines lw 2, '' using 1:3 title "
        "'waiting' with lines lw 2, '' using 1:4 title 'swapped' with lines lw 2, '' using "
        "1:($5*100) axes x1y2 title 'KV usage' with lines dashtype 2\n"
        "unset multiplot\n";
  return gp.str();
}

std::string compare_plot_script(const std::vector<std::string>& dirs,
                                const std::vector<std::string>& names, const Slo& slo) {
  std::ostringstream gp;
  gp << kPreamble;
  for (size_t i = 0; i < dirs.size(); ++i)
    gp << cdf_setup(dirs[i] + "/requests.csv", kOkRow, "n_ok" + std::to_string(i))
       << cdf_setup(dirs[i] + "/requests.csv", kTpotRow, "n_tpot" + std::to_string(i));
  gp << "set terminal svg size 1000,450 dynamic background rgb 'white'\n"
        "set output 'latency_cdf.svg'\n"
        "set multiplot layout 1,2 title 'Latency CDFs of each server (dashed: the SLO)'\n"
        "set ylabel 'fraction of requests'\nset yrange [0:1]\nset key bottom right\n"
        "set logscale x\nset xlabel 'TTFT (seconds, log scale)'\n"
     << slo_arrow(slo.ttft_seconds, 1) << "plot ";
  for (size_t i = 0; i < dirs.size(); ++i)
    gp << (i ? ", " : "")
       << cdf_clause(dirs[i] + "/requests.csv", "$8", kOkRow, "n_ok" + std::to_string(i), names[i]);
  gp << "\nunset arrow\nset xlabel 'TPOT (milliseconds, log scale)'\n"
     << slo_arrow(slo.tpot_seconds, 1000) << "plot ";
  for (size_t i = 0; i < dirs.size(); ++i)
    gp << (i ? ", " : "")
       << cdf_clause(dirs[i] + "/requests.csv", "$9*1000", kTpotRow, "n_tpot" + std::to_string(i),
                     names[i]);
  gp << "\nunset multiplot\nunset arrow\nunset logscale x\nset yrange [*:*]\n"
     << "set terminal svg size 1100," << 300 * dirs.size() + 80
     << " dynamic background rgb 'white'\n"
        "set output 'over_time.svg'\n"
        "set multiplot layout "
     << dirs.size()
     << ",2 title 'Throughput and server queues over time'\n"
        "set key top right font ',10'\n";
  for (size_t i = 0; i < dirs.size(); ++i) {
    gp << "set xlabel 'seconds since the start'\nunset y2label\nunset y2tics\nset ytics mirror\n"
          "set ylabel 'output tokens/s'\nset title '"
       << names[i] << "'\nplot '" << dirs[i]
       << "/throughput.csv' using 1:2 title 'output tokens/s' with steps lw 2\n"
          "set ylabel 'requests'\nset y2label 'KV in use (%)'\nset y2range [0:100]\n"
          "set ytics nomirror\nset y2tics\nplot '"
       << dirs[i]
       << "/server.csv' using 1:2 title 'running' with lines lw 2, '' using 1:3 title 'waiting' "
          "with lines lw 2, '' using 1:4 title 'swapped' with lines lw 2, '' using 1:($5*100) "
          "axes x1y2 title 'KV usage' with lines dashtype 2\n";
  }
  gp << "unset multiplot\n";
  return gp.str();
}

bool draw_plots(const std::string& dir, const std::string& script, const std::string& who) {
  open_for_writing(dir + "/plots.gnuplot") << script;
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    std::cerr << who << ": gnuplot is not installed, so no plots (apt-get install gnuplot-nox; "
              << "then `cd " << dir << " && gnuplot plots.gnuplot`)\n";
    return false;
  }
  const std::string command = "cd '" + dir + "' && gnuplot plots.gnuplot 2>gnuplot.log";
  if (std::system(command.c_str()) != 0) {
    std::cerr << who << ": gnuplot failed; see " << dir << "/gnuplot.log\n";
    return false;
  }
  std::remove((dir + "/gnuplot.log").c_str());
  return true;
}

}  // namespace servelab::cli
