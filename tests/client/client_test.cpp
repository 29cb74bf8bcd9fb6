// Unit tests of the client library's SSE parsing.
#include "client/client.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/error.h"

namespace servelab {
namespace {

TEST(FeedSse, EventsSplitAcrossChunksComeOutWhole) {
  std::string buffer;
  std::vector<std::string> events;
  auto collect = [&](const std::string& data) {
    events.push_back(data);
    return true;
  };
  EXPECT_TRUE(feed_sse(buffer, "data: {\"a\"", collect));
  EXPECT_TRUE(events.empty());
  EXPECT_TRUE(feed_sse(buffer, ": 1}\n\ndata: [DO", collect));
  EXPECT_EQ(events, std::vector<std::string>{"{\"a\": 1}"});
  EXPECT_TRUE(feed_sse(buffer, "NE]\n\n: a comment\n\n", collect));
  EXPECT_EQ(events, (std::vector<std::string>{"{\"a\": 1}", "[DONE]"}));
  EXPECT_TRUE(buffer.empty());
}

TEST(FeedSse, ACallbackThatSaysStopStopsAndAUrlMustBeHttp) {
  std::string buffer;
  int calls = 0;
  EXPECT_FALSE(feed_sse(buffer, "data: 1\n\ndata: 2\n\n", [&](const std::string&) {
    ++calls;
    return false;
  }));
  EXPECT_EQ(calls, 1);
  EXPECT_THROW(ServelabClient("localhost:80"), Error);
  EXPECT_NO_THROW(ServelabClient("http://127.0.0.1:1"));
  const ClientAnswer answer = ServelabClient("http://127.0.0.1:1").get("/health");
  EXPECT_EQ(answer.status, -1) << "nothing listens on port 1";
  EXPECT_FALSE(answer.error.empty());
}

}  // namespace
}  // namespace servelab
