// The Azure trace loader on small CSV texts written to temporary files (never the real trace,
// which the project does not ship).
#include "replay/azure_trace.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "common/error.h"
#include "replay/temporary_file.h"

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

}  // namespace
}  // namespace servelab
