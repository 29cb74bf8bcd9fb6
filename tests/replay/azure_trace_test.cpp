// The Azure trace loader on small CSV texts written to temporary files, and on the real
// conversation trace when it is next to the checkout (../shared/traces, or $SERVELAB_TRACES_DIR;
// the project does not ship it, so that test skips elsewhere).
#include "replay/azure_trace.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "common/error.h"
#include "replay/synthetic.h"
#include "replay/temporary_file.h"
#include "test_paths.h"

namespace servelab {
namespace {

using testing::TemporaryCsv;

/// The message of the servelab::Error that loading `contents` throws ("" if none).
std::string load_error(const std::string& contents) {
  TemporaryCsv csv(contents);
  try {
    load_azure_trace(csv.path());
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

const char* const kHeader = "TIMESTAMP,ContextTokens,GeneratedTokens\n";

TEST(AzureTrace, ReadsLengthsAndArrivalsRelativeToTheFirstRequest) {
  TemporaryCsv csv(std::string(kHeader) +
                   "2023-11-16 18:15:46.6805900,374,44\n"
                   "2023-11-16 18:15:50.9951690,396,109\n"
                   "2023-11-16 18:15:51.2224670,879,55\n");
  const std::vector<TraceRequest> requests = load_azure_trace(csv.path());
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[0].arrival_seconds, 0.0);
  EXPECT_NEAR(requests[1].arrival_seconds, 4.314579, 1e-9);
  EXPECT_NEAR(requests[2].arrival_seconds, 4.541877, 1e-9);
  EXPECT_EQ(requests[0].prompt_tokens, 374);
  EXPECT_EQ(requests[0].output_tokens, 44);
  EXPECT_EQ(requests[2].prompt_tokens, 879);
  EXPECT_EQ(requests[2].output_tokens, 55);
}

TEST(AzureTrace, KeepsTheTracesHundredNanosecondResolution) {
  TemporaryCsv csv(std::string(kHeader) +
                   "2023-11-16 18:15:46.0000000,1,1\n"
                   "2023-11-16 18:15:46.0000001,1,1\n");
  const std::vector<TraceRequest> requests = load_azure_trace(csv.path());
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_NEAR(requests[1].arrival_seconds, 1e-7, 1e-12);
}

TEST(AzureTrace, CountsTimeAcrossMidnightMonthAndLeapDay) {
  TemporaryCsv csv(std::string(kHeader) +
                   "2024-02-28 23:59:59.5000000,1,1\n"
                   "2024-03-01 00:00:00.2500000,1,1\n");
  const std::vector<TraceRequest> requests = load_azure_trace(csv.path());
  ASSERT_EQ(requests.size(), 2u);
  // 2024 is a leap year: Feb 29 lies between, so one day plus 0.75 s.
  EXPECT_NEAR(requests[1].arrival_seconds, 86400.75, 1e-9);
}

TEST(AzureTrace, AcceptsCrlfLineEndsBlankLinesColumnOrderAndFewerFractionDigits) {
  TemporaryCsv csv(
      "\xEF\xBB\xBF"
      "GeneratedTokens,TIMESTAMP,ContextTokens\r\n"
      "5,2023-11-16 18:15:46,10\r\n"
      "\r\n"
      "7, 2023-11-16 18:15:47.5 ,20\r\n");
  const std::vector<TraceRequest> requests = load_azure_trace(csv.path());
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].prompt_tokens, 10);
  EXPECT_EQ(requests[0].output_tokens, 5);
  EXPECT_EQ(requests[1].prompt_tokens, 20);
  EXPECT_EQ(requests[1].output_tokens, 7);
  EXPECT_NEAR(requests[1].arrival_seconds, 1.5, 1e-9);
}

TEST(AzureTrace, MaxRequestsStopsReadingBeforeLaterRows) {
  // The third row is malformed: stopping after two must not reach it.
  TemporaryCsv csv(std::string(kHeader) +
                   "2023-11-16 18:15:46.0000000,1,2\n"
                   "2023-11-16 18:15:47.0000000,3,4\n"
                   "not a row\n");
  const std::vector<TraceRequest> requests = load_azure_trace(csv.path(), 2);
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[1].prompt_tokens, 3);
  EXPECT_THROW(load_azure_trace(csv.path()), Error);
}

TEST(AzureTrace, HeaderOnlyGivesNoRequests) {
  TemporaryCsv csv(kHeader);
  EXPECT_TRUE(load_azure_trace(csv.path()).empty());
}

TEST(AzureTrace, MissingFileNamesTheFileAndWhereToGetTheTrace) {
  try {
    load_azure_trace("/nonexistent/folder/trace.csv");
    FAIL() << "expected servelab::Error";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("/nonexistent/folder/trace.csv"), std::string::npos) << message;
    EXPECT_NE(message.find("AzurePublicDataset"), std::string::npos) << message;
  }
}

TEST(AzureTrace, EmptyFileIsAnError) {
  EXPECT_NE(load_error("").find("empty"), std::string::npos);
}

TEST(AzureTrace, HeaderWithoutAColumnNamesTheColumnAndLine) {
  const std::string message = load_error("TIMESTAMP,ContextTokens,OutputTokens\n");
  EXPECT_NE(message.find(":1:"), std::string::npos) << message;
  EXPECT_NE(message.find("'GeneratedTokens'"), std::string::npos) << message;
}

TEST(AzureTrace, BadRowsNameTheLineAndTheField) {
  struct Case {
    const char* row;
    const char* expected;
  };
  const Case cases[] = {
      {"2023-11-16 18:15:46.0000000,1\n", "expected 3 comma-separated fields"},
      {"2023-11-16 18:15:46.0000000,1,2,3\n", "expected 3 comma-separated fields"},
      {"2023-11-16T18:15:46.0000000,1,2\n", "TIMESTAMP"},
      {"2023-13-16 18:15:46.0000000,1,2\n", "TIMESTAMP"},
      {"2023-02-29 18:15:46.0000000,1,2\n", "TIMESTAMP"},  // 2023 is not a leap year
      {"2023-11-16 24:00:00.0000000,1,2\n", "TIMESTAMP"},
      {"2023-11-16 18:15:46.,1,2\n", "TIMESTAMP"},
      {"2023-11-16 18:15:46.0000000000,1,2\n", "TIMESTAMP"},  // 10 fraction digits
      {"2023-11-16 18:15:46.0000000,0,2\n", "ContextTokens '0'"},
      {"2023-11-16 18:15:46.0000000,-4,2\n", "ContextTokens '-4'"},
      {"2023-11-16 18:15:46.0000000,12x,2\n", "ContextTokens '12x'"},
      {"2023-11-16 18:15:46.0000000,1,\n", "GeneratedTokens ''"},
      {"2023-11-16 18:15:46.0000000,1,2.5\n", "GeneratedTokens '2.5'"},
      {"2023-11-16 18:15:46.0000000,1,99999999999999999999\n", "GeneratedTokens"},
  };
  for (const Case& bad : cases) {
    // The bad row is line 3, after a good one.
    const std::string message =
        load_error(std::string(kHeader) + "2023-11-16 18:15:45.0000000,1,1\n" + bad.row);
    EXPECT_NE(message.find(":3:"), std::string::npos) << bad.row << " -> " << message;
    EXPECT_NE(message.find(bad.expected), std::string::npos) << bad.row << " -> " << message;
  }
}

TEST(AzureTrace, TimestampsGoingBackInTimeAreAnError) {
  const std::string message = load_error(std::string(kHeader) +
                                         "2023-11-16 18:15:46.0000000,1,1\n"
                                         "2023-11-16 18:15:45.9999999,1,1\n");
  EXPECT_NE(message.find(":3:"), std::string::npos) << message;
  EXPECT_NE(message.find("line 2"), std::string::npos) << message;
}

struct TraceShape {
  double mean_prompt = 0, mean_output = 0, rate = 0, gap_cv = 0;
};

TraceShape shape_of(const std::vector<TraceRequest>& trace) {
  TraceShape shape;
  std::vector<double> gaps;
  for (size_t i = 0; i < trace.size(); ++i) {
    shape.mean_prompt += static_cast<double>(trace[i].prompt_tokens) / trace.size();
    shape.mean_output += static_cast<double>(trace[i].output_tokens) / trace.size();
    if (i > 0) gaps.push_back(trace[i].arrival_seconds - trace[i - 1].arrival_seconds);
  }
  double mean = 0, square = 0;
  for (double gap : gaps) mean += gap / gaps.size();
  for (double gap : gaps) square += (gap - mean) * (gap - mean) / gaps.size();
  shape.rate = 1.0 / mean;
  shape.gap_cv = std::sqrt(square) / mean;
  return shape;
}

TEST(AzureTrace, RealConversationTraceHasTheShapeTheBuiltInTraceCopies) {
  const char* directory = std::getenv("SERVELAB_TRACES_DIR");
  const std::string path =
      (directory ? std::string(directory) : servelab::testing::source_path("../shared/traces")) +
      "/azure_llm_2023_conv.csv";
  if (access(path.c_str(), R_OK) != 0) GTEST_SKIP() << "no " << path << " here";
  const std::vector<TraceRequest> real = load_azure_trace(path);
  ASSERT_EQ(real.size(), 19366u);
  EXPECT_NEAR(real.back().arrival_seconds, 3501.7, 0.1);
  const TraceShape measured = shape_of(real);
  // The numbers azure_conversation_like() and docs/replay.md quote.
  EXPECT_NEAR(measured.mean_prompt, 1155, 1);
  EXPECT_NEAR(measured.mean_output, 211, 1);
  EXPECT_NEAR(measured.rate, 5.53, 0.01);
  EXPECT_NEAR(measured.gap_cv, 1.09, 0.01);
  // The built-in trace at the real rate, on a context that keeps the lengths (2048): its means,
  // rate and burstiness are the real trace's within 5% (20,000 requests: sampling noise is ~1%).
  const TraceShape built_in =
      shape_of(synthesize_trace(azure_conversation_like(20000, 5.53, 2048)));
  EXPECT_NEAR(built_in.mean_prompt / measured.mean_prompt, 1.0, 0.05);
  EXPECT_NEAR(built_in.mean_output / measured.mean_output, 1.0, 0.05);
  EXPECT_NEAR(built_in.rate / measured.rate, 1.0, 0.05);
  EXPECT_NEAR(built_in.gap_cv / measured.gap_cv, 1.0, 0.05);
}

}  // namespace
}  // namespace servelab
