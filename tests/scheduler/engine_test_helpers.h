// What the engine tests share: collecting a request's output events per choice.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "scheduler/serving.h"

namespace servelab::testing {

/// Everything a request received, per choice.
struct Collected {
  std::map<int, std::string> text;  // the concatenated kText pieces
  std::map<int, std::vector<std::string>> pieces;
  std::map<int, std::string> finish_reason;
  std::map<int, int64_t> completion_tokens;
  std::vector<OutputEvent> errors;
};

/// Receives until every one of `choices` choices finished or an error came (fails after 60 s).
inline Collected collect(OutputChannel& channel, int choices) {
  Collected collected;
  int finished = 0;
  while (finished < choices && collected.errors.empty()) {
    std::optional<OutputEvent> event = channel.receive(std::chrono::milliseconds(60000));
    if (!event) {
      ADD_FAILURE() << "no event within 60 s";
      break;
    }
    switch (event->kind) {
      case OutputEvent::Kind::kText:
        EXPECT_FALSE(event->text.empty()) << "empty text event";
        EXPECT_EQ(collected.finish_reason.count(event->index), 0u) << "text after finish";
        collected.text[event->index] += event->text;
        collected.pieces[event->index].push_back(event->text);
        break;
      case OutputEvent::Kind::kFinished:
        collected.finish_reason[event->index] = event->finish_reason;
        collected.completion_tokens[event->index] = event->completion_tokens;
        ++finished;
        break;
      case OutputEvent::Kind::kError:
        collected.errors.push_back(*event);
        break;
    }
  }
  return collected;
}

}  // namespace servelab::testing
