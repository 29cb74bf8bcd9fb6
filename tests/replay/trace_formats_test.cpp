// The BurstGPT and Mooncake loaders on small files of our own, good and malformed.
#include <gtest/gtest.h>

#include <string>

#include "common/error.h"
#include "replay/temporary_file.h"
#include "replay/trace.h"

namespace servelab {
namespace {

using testing::TemporaryCsv;

template <typename Load>
std::string error_of(const std::string& contents, Load load) {
  TemporaryCsv file(contents);
  try {
    load(file.path());
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

const char* kBurstGpt =
    "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
    "5,ChatGPT,472,18,490,Conversation log\n"
    "45,ChatGPT,1087,0,1087,Conversation log\n"
    "118,GPT-4,417,276,693,Conversation log\n"
    "118.5,ChatGPT,0,0,0,Conversation log\n"
    "200,GPT-4,1360,104,1464,API log\n";

TEST(BurstGptTrace, ReadsLengthsAndRelativeArrivalsAndSkipsFailedRequests) {
  TemporaryCsv file(kBurstGpt);
  const std::vector<TraceRequest> trace = load_burstgpt_trace(file.path());
  ASSERT_EQ(trace.size(), 4u) << "the row with 0 request tokens is a failed request";
  EXPECT_EQ(trace[0].arrival_seconds, 0);
  EXPECT_EQ(trace[0].prompt_tokens, 472);
  EXPECT_EQ(trace[0].output_tokens, 18);
  EXPECT_EQ(trace[1].output_tokens, 0);
  EXPECT_DOUBLE_EQ(trace[2].arrival_seconds, 113);
  EXPECT_DOUBLE_EQ(trace[3].arrival_seconds, 195);
  EXPECT_EQ(load_burstgpt_trace(file.path(), 0, "GPT-4").size(), 2u);
  EXPECT_EQ(load_burstgpt_trace(file.path(), 2).size(), 2u);
}

TEST(BurstGptTrace, MalformedFilesNameTheFileLineAndField) {
  auto load = [](const std::string& path) { load_burstgpt_trace(path); };
  EXPECT_NE(error_of("Timestamp,Model,Tokens\n", load).find("no column 'Request tokens'"),
            std::string::npos);
  const std::string header = "Timestamp,Model,Request tokens,Response tokens\n";
  EXPECT_NE(error_of(header + "x,ChatGPT,1,2\n", load).find(":2: Timestamp 'x'"),
            std::string::npos);
  EXPECT_NE(error_of(header + "1,ChatGPT,-1,2\n", load).find("Request tokens '-1'"),
            std::string::npos);
  EXPECT_NE(error_of(header + "1,ChatGPT,1\n", load).find("expected 4 comma-separated fields"),
            std::string::npos);
  EXPECT_NE(error_of(header + "5,ChatGPT,1,2\n3,ChatGPT,1,2\n", load).find("time order"),
            std::string::npos);
  EXPECT_NE(error_of("", load).find("empty"), std::string::npos);
  EXPECT_NE(error_of("x", [](const std::string&) { load_burstgpt_trace("/nonexistent/b.csv"); })
                .find("github.com/HPMLL/BurstGPT"),
            std::string::npos);
}

TEST(MooncakeTrace, ReadsMillisecondsLengthsAndHashIds) {
  TemporaryCsv file(
      "{\"timestamp\": 0, \"input_length\": 6955, \"output_length\": 52, \"hash_ids\": [46, 47]}\n"
      "\n"
      "{\"timestamp\": 1500, \"input_length\": 1024, \"output_length\": 3, \"hash_ids\": [46]}\n");
  const std::vector<TraceRequest> trace = load_mooncake_trace(file.path());
  ASSERT_EQ(trace.size(), 2u);
  EXPECT_EQ(trace[0].prompt_tokens, 6955);
  EXPECT_EQ(trace[0].hash_ids, (std::vector<int64_t>{46, 47}));
  EXPECT_DOUBLE_EQ(trace[1].arrival_seconds, 1.5);
  EXPECT_EQ(trace[1].hash_ids, std::vector<int64_t>{46});
}

TEST(MooncakeTrace, MalformedLinesNameTheFileLineAndField) {
  auto load = [](const std::string& path) { load_mooncake_trace(path); };
  EXPECT_NE(
      error_of("{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 1}\nnot json\n", load)
          .find(":2: not a JSON object"),
      std::string::npos);
  EXPECT_NE(error_of("{\"timestamp\": 0, \"output_length\": 1}\n", load).find("'input_length'"),
            std::string::npos);
  EXPECT_NE(error_of("{\"timestamp\": -1, \"input_length\": 5, \"output_length\": 1}\n", load)
                .find("'timestamp'"),
            std::string::npos);
  EXPECT_NE(error_of("{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 1, "
                     "\"hash_ids\": [\"a\"]}\n",
                     load)
                .find("'hash_ids'"),
            std::string::npos);
  EXPECT_NE(error_of("{\"timestamp\": 9, \"input_length\": 5, \"output_length\": 1}\n"
                     "{\"timestamp\": 2, \"input_length\": 5, \"output_length\": 1}\n",
                     load)
                .find("time order"),
            std::string::npos);
}

}  // namespace
}  // namespace servelab
