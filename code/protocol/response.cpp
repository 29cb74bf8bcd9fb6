#include "protocol/response.h"

#include <cstdio>

namespace servelab {
namespace {

using nlohmann::json;

json finish_reason_json(std::optional<FinishReason> reason) {
  return reason ? json(to_string(*reason)) : json(nullptr);
}

json null_if_empty(const std::string& text) {
  return text.empty() ? json(nullptr) : json(text);
}

// The fields every OpenAI object starts with.
json openai_object(const ResponseIdentity& identity, const char* object) {
  return json{{"id", identity.id},
              {"object", object},
              {"created", identity.created},
              {"model", identity.model}};
}

json chat_chunk(const ResponseIdentity& identity, int64_t index, json delta,
                std::optional<FinishReason> finish_reason, bool include_usage) {
  json chunk = openai_object(identity, "chat.completion.chunk");
  chunk["choices"] = json::array({json{{"index", index},
                                       {"delta", std::move(delta)},
                                       {"logprobs", nullptr},
                                       {"finish_reason", finish_reason_json(finish_reason)}}});
  if (include_usage) chunk["usage"] = nullptr;
  return chunk;
}

}  // namespace

const char* to_string(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
  }
  return "stop";
}

json usage_json(const Usage& usage) {
  return json{{"prompt_tokens", usage.prompt_tokens},
              {"completion_tokens", usage.completion_tokens},
              {"total_tokens", usage.prompt_tokens + usage.completion_tokens}};
}

std::string make_response_id(bool chat, uint64_t sequence_number) {
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(sequence_number));
  return std::string(chat ? "chatcmpl-" : "cmpl-") + hex;
}

json native_response(const std::vector<CompletionChoice>& choices, const Usage& usage) {
  json choice_list = json::array();
  for (const CompletionChoice& choice : choices) {
    choice_list.push_back(json{{"text", choice.text},
                               {"index", choice.index},
                               {"finish_reason", to_string(choice.finish_reason)}});
  }
  return json{{"choices", std::move(choice_list)}, {"usage", usage_json(usage)}};
}

json completion_response(const ResponseIdentity& identity,
                         const std::vector<CompletionChoice>& choices, const Usage& usage) {
  json response = openai_object(identity, "text_completion");
  response["choices"] = json::array();
  for (const CompletionChoice& choice : choices) {
    response["choices"].push_back(json{{"text", choice.text},
                                       {"index", choice.index},
                                       {"logprobs", nullptr},
                                       {"finish_reason", to_string(choice.finish_reason)}});
  }
  response["usage"] = usage_json(usage);
  return response;
}

json chat_completion_response(const ResponseIdentity& identity,
                              const std::vector<CompletionChoice>& choices, const Usage& usage) {
  json response = openai_object(identity, "chat.completion");
  response["choices"] = json::array();
  for (const CompletionChoice& choice : choices) {
    response["choices"].push_back(
        json{{"index", choice.index},
             {"message", json{{"role", "assistant"}, {"content", choice.text}}},
             {"logprobs", nullptr},
             {"finish_reason", to_string(choice.finish_reason)}});
  }
  response["usage"] = usage_json(usage);
  return response;
}

json native_chunk(int64_t index, const std::string& text,
                  std::optional<FinishReason> finish_reason) {
  return json{
      {"choices", json::array({json{{"text", text},
                                    {"index", index},
                                    {"finish_reason", finish_reason_json(finish_reason)}}})}};
}

json native_usage_chunk(const Usage& usage) {
  return json{{"choices", json::array()}, {"usage", usage_json(usage)}};
}

json completion_chunk(const ResponseIdentity& identity, int64_t index, const std::string& text,
                      std::optional<FinishReason> finish_reason, bool include_usage) {
  json chunk = openai_object(identity, "text_completion");
  chunk["choices"] = json::array({json{{"text", text},
                                       {"index", index},
                                       {"logprobs", nullptr},
                                       {"finish_reason", finish_reason_json(finish_reason)}}});
  if (include_usage) chunk["usage"] = nullptr;
  return chunk;
}

json chat_role_chunk(const ResponseIdentity& identity, int64_t index, bool include_usage) {
  return chat_chunk(identity, index, json{{"role", "assistant"}, {"content", ""}}, std::nullopt,
                    include_usage);
}

json chat_content_chunk(const ResponseIdentity& identity, int64_t index, const std::string& text,
                        bool include_usage) {
  return chat_chunk(identity, index, json{{"content", text}}, std::nullopt, include_usage);
}

json chat_finish_chunk(const ResponseIdentity& identity, int64_t index, FinishReason finish_reason,
                       bool include_usage) {
  return chat_chunk(identity, index, json::object(), finish_reason, include_usage);
}

json usage_chunk(const ResponseIdentity& identity, bool chat, const Usage& usage) {
  json chunk = openai_object(identity, chat ? "chat.completion.chunk" : "text_completion");
  chunk["choices"] = json::array();
  chunk["usage"] = usage_json(usage);
  return chunk;
}

json error_body(const ProtocolError& error) {
  return json{{"error", json{{"message", error.what()},
                             {"type", error.type()},
                             {"param", null_if_empty(error.param())},
                             {"code", null_if_empty(error.code())}}}};
}

json model_list(const std::vector<ModelCard>& models) {
  json data = json::array();
  for (const ModelCard& model : models) {
    data.push_back(json{{"id", model.id},
                        {"object", "model"},
                        {"created", model.created},
                        {"owned_by", model.owned_by}});
  }
  return json{{"object", "list"}, {"data", std::move(data)}};
}

std::string to_json_text(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string sse_event(const json& value) {
  return "data: " + to_json_text(value) + "\n\n";
}

std::string sse_done() {
  return "data: [DONE]\n\n";
}

}  // namespace servelab
