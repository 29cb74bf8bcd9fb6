#include "protocol/request.h"

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "protocol/json_fields.h"
#include "protocol/protocol_error.h"

namespace servelab {
namespace {

using nlohmann::json;

// The OpenAI fields servelab knows but cannot honour. Each is accepted only with its neutral value
// (null, false, "", [], {} or the listed default), so a client that sends the SDK's defaults works
// and a client that asks for the feature gets a 400 instead of an answer without it.
bool is_neutral(const std::string& name, const json& value) {
  if (value.is_null()) return true;
  if (value.is_boolean()) return !value.get<bool>();
  if (value.is_string()) {
    return value.get<std::string>().empty() || (name == "tool_choice" && value == "none");
  }
  if (value.is_array() || value.is_object()) {
    if (name == "response_format" && value.is_object() && value.size() == 1 &&
        value.value("type", "") == "text") {
      return true;
    }
    return value.empty();
  }
  if (name == "best_of") return value.is_number() && value.get<double>() == 1.0;
  return false;  // a number: logprobs 0 still asks for logprobs in /v1/completions
}

const std::vector<std::string> kCompletionsRefusedUnlessNeutral = {"logprobs", "echo", "best_of",
                                                                   "logit_bias", "suffix"};
const std::vector<std::string> kChatRefusedUnlessNeutral = {
    "logprobs",    "top_logprobs",    "logit_bias", "tools",
    "tool_choice", "response_format", "functions",  "function_call"};

void refuse_features_in_use(const JsonFields& fields, const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    const json* value = fields.raw(name);
    if (value != nullptr && !is_neutral(name, *value)) {
      throw ProtocolError::invalid_request(
          str_cat("'", name,
                  "' is not supported by this server yet; leave it out or set it to null"),
          name, "unsupported_parameter");
    }
  }
}

// The model field: required by the OpenAI APIs, optional for the native one.
std::string read_model(const JsonFields& fields, const ProtocolLimits& limits, bool required) {
  std::optional<std::string> model = fields.string("model");
  if (!model) {
    if (required) {
      throw ProtocolError::invalid_request(
          str_cat("'model' is required; this server serves '", limits.served_model_name, "'"),
          "model");
    }
    return limits.served_model_name;
  }
  if (*model != limits.served_model_name) {
    throw ProtocolError::model_not_found(*model, limits.served_model_name);
  }
  return *model;
}

void require_nonempty_prompt(const std::string& prompt, const std::string& param) {
  if (prompt.empty()) {
    throw ProtocolError::invalid_request(str_cat("'", param, "' must not be empty"), param);
  }
}

// OpenAI's prompt may be a string, an array of strings, an array of token ids or an array of
// arrays of them. servelab takes one text prompt per request: a string or a list of one string.
std::string read_completion_prompt(const JsonFields& fields) {
  const json* value = fields.raw("prompt");
  if (value == nullptr) {
    throw ProtocolError::invalid_request("'prompt' is required", "prompt");
  }
  if (value->is_string()) return value->get<std::string>();
  if (value->is_array()) {
    if (value->size() == 1 && (*value)[0].is_string()) return (*value)[0].get<std::string>();
    if (!value->empty() && ((*value)[0].is_number() || (*value)[0].is_array())) {
      throw ProtocolError::invalid_request(
          "'prompt' as token ids is not supported by this server; send the prompt as text",
          "prompt");
    }
    throw ProtocolError::invalid_request(
        str_cat("'prompt' must be a string or a list of exactly one string, got a list of ",
                value->size(), " elements; send one request per prompt"),
        "prompt");
  }
  throw ProtocolError::invalid_request(
      str_cat("'prompt' must be a string, got ", json_type_name(*value)), "prompt");
}

std::string read_message_content(const json& content, const std::string& param) {
  if (content.is_string()) return content.get<std::string>();
  if (content.is_array()) {
    // Content parts: only text parts, concatenated (images and audio are not supported).
    std::string text;
    for (size_t i = 0; i < content.size(); ++i) {
      const json& part = content[i];
      const std::string part_param = str_cat(param, "[", i, "]");
      if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
          !part["text"].is_string()) {
        throw ProtocolError::invalid_request(
            str_cat("'", part_param,
                    "' must be a text part {\"type\": \"text\", \"text\": \"...\"}; other content "
                    "types are not supported by this server"),
            part_param);
      }
      text += part["text"].get<std::string>();
    }
    return text;
  }
  throw ProtocolError::invalid_request(
      str_cat("'", param, "' must be a string or an array of text parts, got ",
              json_type_name(content)),
      param);
}

std::vector<ChatMessage> read_messages(const JsonFields& fields) {
  const json* value = fields.raw("messages");
  if (value == nullptr) {
    throw ProtocolError::invalid_request("'messages' is required", "messages");
  }
  if (!value->is_array()) {
    throw ProtocolError::invalid_request(
        str_cat("'messages' must be an array of {\"role\", \"content\"} objects, got ",
                json_type_name(*value)),
        "messages");
  }
  if (value->empty()) {
    throw ProtocolError::invalid_request("'messages' must not be empty", "messages");
  }
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < value->size(); ++i) {
    const std::string prefix = str_cat("messages[", i, "].");
    JsonFields message_fields((*value)[i], prefix, str_cat("'messages[", i, "]'"));
    // "name" is accepted and not used: none of the templates servelab renders writes it.
    message_fields.refuse_unknown({"role", "content", "name"});
    std::optional<std::string> role = message_fields.string("role");
    if (!role) {
      throw ProtocolError::invalid_request(str_cat("'", prefix, "role' is required"),
                                           prefix + "role");
    }
    if (*role != "system" && *role != "user" && *role != "assistant") {
      throw ProtocolError::invalid_request(
          str_cat("'", prefix, "role' is '", *role,
                  "'; this server accepts 'system', 'user' and 'assistant'"),
          prefix + "role");
    }
    message_fields.string("name");  // type check only
    const json* content = message_fields.raw("content");
    if (content == nullptr) {
      throw ProtocolError::invalid_request(str_cat("'", prefix, "content' is required"),
                                           prefix + "content");
    }
    messages.push_back({*role, read_message_content(*content, prefix + "content")});
  }
  return messages;
}

// stream and stream_options, shared by both OpenAI APIs.
void read_openai_stream(const JsonFields& fields, GenerateRequest& request) {
  request.stream = fields.boolean("stream").value_or(false);
  const json* options = fields.raw("stream_options");
  if (options == nullptr) return;
  if (!request.stream) {
    throw ProtocolError::invalid_request("'stream_options' is only allowed when 'stream' is true",
                                         "stream_options");
  }
  JsonFields option_fields(*options, "stream_options.", "'stream_options'");
  option_fields.refuse_unknown({"include_usage"});
  request.include_usage = option_fields.boolean("include_usage").value_or(false);
}

// The sampling fields both OpenAI APIs share, with servelab's extras (top_k, repetition_penalty,
// min_tokens, ignore_eos). OpenAI always samples: do_sample is true, temperature 0 is greedy.
void read_openai_config(const JsonFields& fields, GenerationConfig& config) {
  config.do_sample = true;
  if (auto value = fields.number("temperature")) config.temperature = *value;
  if (auto value = fields.number("top_p")) config.top_p = *value;
  if (auto value = fields.integer("n")) config.num_return_sequences = *value;
  if (auto value = fields.string_or_string_list("stop")) config.stop = *value;
  if (auto value = fields.seed("seed")) config.seed = *value;
  if (auto value = fields.number("presence_penalty")) config.presence_penalty = *value;
  if (auto value = fields.number("frequency_penalty")) config.frequency_penalty = *value;
  if (auto value = fields.integer("top_k")) config.top_k = *value;
  if (auto value = fields.number("repetition_penalty")) config.repetition_penalty = *value;
  if (auto value = fields.integer("min_tokens")) config.min_new_tokens = *value;
  if (auto value = fields.boolean("ignore_eos")) config.ignore_eos = *value;
  fields.string("user");  // accepted for compatibility (abuse tracking at OpenAI); type check only
}

const std::vector<std::string> kOpenAiCommonFields = {"model",
                                                      "max_tokens",
                                                      "temperature",
                                                      "top_p",
                                                      "n",
                                                      "stop",
                                                      "seed",
                                                      "stream",
                                                      "stream_options",
                                                      "presence_penalty",
                                                      "frequency_penalty",
                                                      "top_k",
                                                      "repetition_penalty",
                                                      "min_tokens",
                                                      "ignore_eos",
                                                      "user"};

std::vector<std::string> joined(std::vector<std::string> first,
                                const std::vector<std::string>& second) {
  first.insert(first.end(), second.begin(), second.end());
  return first;
}

GenerateRequest parse_native(const JsonFields& fields, const ProtocolLimits& limits) {
  fields.refuse_unknown({"model", "prompt", "generation_config", "stream"});
  GenerateRequest request;
  request.api = ApiKind::kNative;
  request.model = read_model(fields, limits, /*required=*/false);
  std::optional<std::string> prompt = fields.string("prompt");
  if (!prompt) throw ProtocolError::invalid_request("'prompt' is required", "prompt");
  require_nonempty_prompt(*prompt, "prompt");
  request.prompt = *prompt;
  request.stream = fields.boolean("stream").value_or(false);
  request.include_usage = true;

  const json* config_json = fields.raw("generation_config");
  if (config_json != nullptr) {
    JsonFields config_fields(*config_json, "generation_config.", "'generation_config'");
    config_fields.refuse_unknown(
        {"max_new_tokens", "min_new_tokens", "do_sample", "temperature", "top_k", "top_p",
         "typical_p", "repetition_penalty", "presence_penalty", "frequency_penalty", "num_beams",
         "num_return_sequences", "seed", "stop", "ignore_eos", "length_penalty", "early_stopping"});
    GenerationConfig& config = request.config;
    if (auto value = config_fields.integer("max_new_tokens")) config.max_new_tokens = *value;
    if (auto value = config_fields.integer("min_new_tokens")) config.min_new_tokens = *value;
    if (auto value = config_fields.boolean("do_sample")) config.do_sample = *value;
    if (auto value = config_fields.number("temperature")) config.temperature = *value;
    if (auto value = config_fields.integer("top_k")) config.top_k = *value;
    if (auto value = config_fields.number("top_p")) config.top_p = *value;
    if (auto value = config_fields.number("typical_p")) config.typical_p = *value;
    if (auto value = config_fields.number("repetition_penalty")) {
      config.repetition_penalty = *value;
    }
    if (auto value = config_fields.number("presence_penalty")) config.presence_penalty = *value;
    if (auto value = config_fields.number("frequency_penalty")) config.frequency_penalty = *value;
    if (auto value = config_fields.integer("num_beams")) config.num_beams = *value;
    if (auto value = config_fields.integer("num_return_sequences")) {
      config.num_return_sequences = *value;
    }
    if (auto value = config_fields.seed("seed")) config.seed = *value;
    if (auto value = config_fields.string_list("stop")) config.stop = *value;
    if (auto value = config_fields.boolean("ignore_eos")) config.ignore_eos = *value;
    if (auto value = config_fields.number("length_penalty")) config.length_penalty = *value;
    // early_stopping: true, false or "never" (Hugging Face's three values).
    if (const json* value = config_fields.raw("early_stopping"); value && !value->is_null()) {
      if (value->is_boolean()) {
        config.early_stopping = value->get<bool>() ? "true" : "false";
      } else if (value->is_string()) {
        config.early_stopping = value->get<std::string>();
      } else {
        throw ProtocolError::invalid_request(
            "'generation_config.early_stopping' must be true, false or \"never\", got " +
                value->dump(),
            "generation_config.early_stopping");
      }
    }
  }
  return request;
}

GenerateRequest parse_completions(const JsonFields& fields, const ProtocolLimits& limits) {
  fields.refuse_unknown(
      joined(joined(kOpenAiCommonFields, {"prompt"}), kCompletionsRefusedUnlessNeutral));
  refuse_features_in_use(fields, kCompletionsRefusedUnlessNeutral);
  GenerateRequest request;
  request.api = ApiKind::kCompletions;
  request.model = read_model(fields, limits, /*required=*/true);
  request.prompt = read_completion_prompt(fields);
  require_nonempty_prompt(request.prompt, "prompt");
  read_openai_stream(fields, request);
  read_openai_config(fields, request.config);
  // OpenAI's legacy completions default to 16 tokens, which is also GenerationConfig's default.
  if (auto value = fields.integer("max_tokens")) request.config.max_new_tokens = *value;
  return request;
}

GenerateRequest parse_chat_completions(const JsonFields& fields, const ProtocolLimits& limits,
                                       const ChatTemplate& chat_template) {
  fields.refuse_unknown(joined(joined(kOpenAiCommonFields, {"messages", "max_completion_tokens"}),
                               kChatRefusedUnlessNeutral));
  refuse_features_in_use(fields, kChatRefusedUnlessNeutral);
  GenerateRequest request;
  request.api = ApiKind::kChatCompletions;
  request.model = read_model(fields, limits, /*required=*/true);
  request.messages = read_messages(fields);
  request.prompt = chat_template.render(request.messages, /*add_generation_prompt=*/true);
  read_openai_stream(fields, request);
  read_openai_config(fields, request.config);
  // max_completion_tokens is the newer name of max_tokens; one of them, not both.
  std::optional<int64_t> max_tokens = fields.integer("max_tokens");
  std::optional<int64_t> max_completion_tokens = fields.integer("max_completion_tokens");
  if (max_tokens && max_completion_tokens) {
    throw ProtocolError::invalid_request(
        "Send only one of 'max_tokens' and 'max_completion_tokens' (they mean the same)",
        "max_completion_tokens");
  }
  request.config.max_new_tokens =
      max_tokens.value_or(max_completion_tokens.value_or(limits.default_chat_max_tokens));
  return request;
}

}  // namespace

const char* route_of(ApiKind api) {
  switch (api) {
    case ApiKind::kNative:
      return "/generate";
    case ApiKind::kCompletions:
      return "/v1/completions";
    case ApiKind::kChatCompletions:
      return "/v1/chat/completions";
  }
  return "?";
}

GenerateRequest parse_generate_request(ApiKind api, const std::string& body,
                                       const ProtocolLimits& limits,
                                       const ChatTemplate& chat_template) {
  const json parsed = parse_json_body(body);
  const JsonFields fields(parsed, "", "The request body");
  GenerateRequest request;
  switch (api) {
    case ApiKind::kNative:
      request = parse_native(fields, limits);
      break;
    case ApiKind::kCompletions:
      request = parse_completions(fields, limits);
      break;
    case ApiKind::kChatCompletions:
      request = parse_chat_completions(fields, limits, chat_template);
      break;
  }
  request.config.validate(limits, request.spelling());
  return request;
}

}  // namespace servelab
