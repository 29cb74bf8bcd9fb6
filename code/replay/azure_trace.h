// Loads the request lengths and arrival times of the Azure LLM inference traces (the CSV files of
// the Azure Public Dataset), so that a replay can send a real production load. Lengths and times
// only: the traces hold no prompt text, and this loader never invents any.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "replay/trace.h"

namespace servelab {

/// Reads an Azure LLM inference trace, e.g. AzureLLMInferenceTrace_conv.csv or _code.csv of the
/// Azure Public Dataset (https://github.com/Azure/AzurePublicDataset, folder data/; CC-BY 4.0,
/// Patel et al., "Splitwise", ISCA 2024). The project does not ship the trace: download it.
///
/// The format: a header naming the columns TIMESTAMP, ContextTokens and GeneratedTokens (in any
/// order; other columns are ignored), then one row per request with TIMESTAMP as
/// `YYYY-MM-DD HH:MM:SS.fffffff` (UTC; the fraction has 7 digits in the published files, and 0 to
/// 9 are accepted). Rows must be in time order. Line ends may be LF or CRLF; blank lines are
/// skipped.
///
/// @param path the CSV file
/// @param max_requests read only the first this many requests; 0 reads them all
/// @return the requests in file order, arrival times relative to the first request
/// Throws servelab::Error naming the file (and the line, for a bad header or row) if the file
/// cannot be read, a column is missing, a field is not a valid timestamp or count, or the
/// timestamps go back in time.
std::vector<TraceRequest> load_azure_trace(const std::string& path, int64_t max_requests = 0);

}  // namespace servelab
