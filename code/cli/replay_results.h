// What `servelab replay` and `servelab compare` write for one run: the per-request CSV, the
// server's queues over time, the throughput over time, the JSON summary, and the gnuplot scripts
// that draw them. Files only: it neither sends requests nor computes latencies itself.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "replay/latency_metrics.h"
#include "replay/replay_driver.h"
#include "replay/trace.h"

namespace servelab::cli {

/// A progress bar on stderr (one line, redrawn; into a log, a line every 10 s): requests
/// finished of `total`, sent, and the output-token rate over the last 5 seconds (`output_tokens`
/// is the count so far; < 0 marks the final call, which leaves the rate out).
void print_progress(int64_t total, int64_t sent, int64_t finished, int64_t output_tokens,
                    double seconds);

/// The summary as JSON: counts, throughputs, goodput under `slo`, and mean/median/p90/p99 of
/// TTFT, TPOT, ITL and end-to-end latency (seconds).
nlohmann::json summary_json(const RunSummary& summary, const Slo& slo);

/// Writes DIR/requests.csv (one row per request), DIR/server.csv (the /metrics scrapes),
/// DIR/throughput.csv (output tokens and finished requests per time bin) and DIR/summary.json
/// (`summary_json` merged with `extra`). DIR must exist. Throws servelab::Error when a file
/// cannot be written.
void write_run_results(const std::string& dir, const std::vector<TraceRequest>& trace,
                       const ReplayResult& result, const RunSummary& summary, const Slo& slo,
                       const nlohmann::json& extra);

/// One run's plots: DIR/latency_cdf.svg (TTFT, end-to-end and TPOT CDFs) and DIR/over_time.svg
/// (output throughput, then running/waiting/swapped requests and KV usage, over time).
/// Dashed lines mark the SLOs. Paths in the script are relative to DIR.
std::string run_plot_script(const Slo& slo);

/// Several runs side by side (`dirs[i]` holds run `names[i]`, written by write_run_results):
/// OUT/latency_cdf.svg (the TTFT and TPOT CDFs of every run) and OUT/over_time.svg (each run's
/// throughput and queues, one panel per run, on one time axis).
/// Paths in the script are relative to OUT.
std::string compare_plot_script(const std::vector<std::string>& dirs,
                                const std::vector<std::string>& names, const Slo& slo);

/// Writes `script` to DIR/plots.gnuplot and runs gnuplot on it in DIR when gnuplot is installed;
/// says on stderr what is missing otherwise. The script stays, so the plots can be redrawn
/// elsewhere (`cd DIR && gnuplot plots.gnuplot`). Returns true when the plots were drawn.
bool draw_plots(const std::string& dir, const std::string& script, const std::string& who);

}  // namespace servelab::cli
