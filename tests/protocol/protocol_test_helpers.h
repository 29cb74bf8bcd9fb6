// Helpers shared by the protocol tests: parse a body and check the ProtocolError it earns.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "protocol/protocol_error.h"
#include "protocol/request.h"

namespace servelab::testing {

inline GenerateRequest parse(ApiKind api, const std::string& body,
                             const ProtocolLimits& limits = ProtocolLimits(),
                             const ChatTemplate& chat_template = ChatTemplate()) {
  return parse_generate_request(api, body, limits, chat_template);
}

/// Asserts that parsing `body` throws a ProtocolError with `status`, `param`, and a message that
/// contains `message_part`.
inline void expect_rejected(ApiKind api, const std::string& body, int status,
                            const std::string& param, const std::string& message_part,
                            const ProtocolLimits& limits = ProtocolLimits()) {
  try {
    parse(api, body, limits);
    ADD_FAILURE() << "accepted: " << body;
  } catch (const ProtocolError& error) {
    EXPECT_EQ(error.status(), status) << error.what();
    EXPECT_EQ(error.param(), param) << error.what();
    EXPECT_NE(std::string(error.what()).find(message_part), std::string::npos)
        << "message '" << error.what() << "' lacks '" << message_part << "'";
  }
}

}  // namespace servelab::testing
