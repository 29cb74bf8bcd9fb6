// The trace options `servelab replay` and `servelab compare` share: a trace file or a synthetic
// trace, then its transforms and the fit to the model's context (see replay_command.cpp's help).
#pragma once

#include <cstdint>
#include <vector>

#include "cli/arguments.h"
#include "replay/trace.h"

namespace servelab::cli {

/// The option names build_trace reads (to pass to Arguments).
inline const char* const kTraceOptionNames[] = {
    "trace",          "format", "requests", "rate",  "burstiness",  "prompt-lengths",
    "output-lengths", "window", "speedup",  "limit", "length-scale"};

/// The trace the options describe, fitted to a context of `context` tokens. Throws
/// servelab::Error for a bad option or an empty result.
std::vector<TraceRequest> build_trace(const Arguments& options, int64_t context, uint64_t seed);

}  // namespace servelab::cli
