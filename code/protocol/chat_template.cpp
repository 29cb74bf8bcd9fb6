#include "protocol/chat_template.h"

#include <fstream>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace servelab {
namespace {

// Meta's Llama-2 and Llama-3 templates strip each message's content; we do the same so that the
// prompt matches what the model saw in training.
std::string trim(const std::string& text) {
  const char* whitespace = " \t\n\r\f\v";
  const size_t begin = text.find_first_not_of(whitespace);
  if (begin == std::string::npos) return "";
  const size_t end = text.find_last_not_of(whitespace);
  return text.substr(begin, end - begin + 1);
}

bool contains(const std::string& text, const char* marker) {
  return text.find(marker) != std::string::npos;
}

std::string capitalized(const std::string& role) {
  if (role.empty()) return role;
  std::string result = role;
  if (result[0] >= 'a' && result[0] <= 'z') result[0] = static_cast<char>(result[0] - 'a' + 'A');
  return result;
}

// bos_token/eos_token are either strings or Hugging Face AddedToken objects {"content": ...}.
std::string token_text(const nlohmann::json& config, const char* key, const std::string& fallback) {
  auto found = config.find(key);
  if (found == config.end()) return fallback;
  if (found->is_string()) return found->get<std::string>();
  if (found->is_object() && found->contains("content") && (*found)["content"].is_string()) {
    return (*found)["content"].get<std::string>();
  }
  return fallback;
}

}  // namespace

const char* to_string(ChatTemplateForm form) {
  switch (form) {
    case ChatTemplateForm::kPlain:
      return "plain";
    case ChatTemplateForm::kLlama2:
      return "llama-2";
    case ChatTemplateForm::kLlama3:
      return "llama-3";
    case ChatTemplateForm::kChatMl:
      return "chatml";
  }
  return "unknown";
}

ChatTemplateForm detect_chat_template_form(const std::string& template_source) {
  // Most specific first: a Llama-3 template never writes [INST], but some ChatML-based templates
  // mention other formats in comments, so the header markers win.
  if (contains(template_source, "<|start_header_id|>") && contains(template_source, "<|eot_id|>")) {
    return ChatTemplateForm::kLlama3;
  }
  if (contains(template_source, "<|im_start|>") && contains(template_source, "<|im_end|>")) {
    return ChatTemplateForm::kChatMl;
  }
  if (contains(template_source, "[INST]") && contains(template_source, "[/INST]")) {
    return ChatTemplateForm::kLlama2;
  }
  return ChatTemplateForm::kPlain;
}

ChatTemplate::ChatTemplate(ChatTemplateForm form, std::string bos_token, std::string eos_token)
    : form_(form), bos_token_(std::move(bos_token)), eos_token_(std::move(eos_token)) {}

ChatTemplate ChatTemplate::from_model_dir(const std::string& model_dir) {
  const std::string path = model_dir + "/tokenizer_config.json";
  std::ifstream file(path);
  if (!file) return ChatTemplate();  // no config: the plain form
  std::stringstream text;
  text << file.rdbuf();
  return from_tokenizer_config(text.str(), path);
}

ChatTemplate ChatTemplate::from_tokenizer_config(const std::string& json_text,
                                                 const std::string& source_name) {
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::parse_error& error) {
    fail(source_name, ": not valid JSON (", error.what(), ")");
  }
  if (!config.is_object()) fail(source_name, ": expected a JSON object");

  std::string source;
  bool has_template = false;
  auto found = config.find("chat_template");
  if (found != config.end() && found->is_string()) {
    source = found->get<std::string>();
    has_template = true;
  } else if (found != config.end() && found->is_array()) {
    // Newer configs list named templates [{"name": "default", "template": "..."}, ...].
    for (const nlohmann::json& entry : *found) {
      if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
          entry["template"].is_string()) {
        source = entry["template"].get<std::string>();
        has_template = true;
      }
    }
  }
  ChatTemplate chat_template(detect_chat_template_form(source),
                             token_text(config, "bos_token", "<s>"),
                             token_text(config, "eos_token", "</s>"));
  chat_template.has_model_template_ = has_template;
  return chat_template;
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt) const {
  switch (form_) {
    case ChatTemplateForm::kLlama2:
      return render_llama2(messages);  // its prompt always ends ready for the reply: "[/INST]"
    case ChatTemplateForm::kLlama3:
      return render_llama3(messages, add_generation_prompt);
    case ChatTemplateForm::kChatMl:
      return render_chatml(messages, add_generation_prompt);
    case ChatTemplateForm::kPlain:
      break;
  }
  return render_plain(messages, add_generation_prompt);
}

std::string ChatTemplate::render_plain(const std::vector<ChatMessage>& messages,
                                       bool add_generation_prompt) const {
  std::string prompt;
  for (const ChatMessage& message : messages) {
    prompt += capitalized(message.role) + ": " + trim(message.content) + "\n\n";
  }
  if (add_generation_prompt) prompt += "Assistant:";
  return prompt;
}

std::string ChatTemplate::render_llama2(const std::vector<ChatMessage>& messages) const {
  // Meta's format: a system message is folded into the first user turn inside <<SYS>>; every
  // user turn is "[INST] ... [/INST]", every assistant turn " ... </s>", and each later turn
  // starts with BOS. The first BOS is the tokenizer's, so it is not written here.
  std::string prompt;
  std::string pending_system;
  bool first_turn = true;
  for (const ChatMessage& message : messages) {
    if (message.role == "system") {
      pending_system = trim(message.content);
    } else if (message.role == "user") {
      if (!first_turn) prompt += bos_token_;
      prompt += "[INST] ";
      if (!pending_system.empty()) {
        prompt += "<<SYS>>\n" + pending_system + "\n<</SYS>>\n\n";
        pending_system.clear();
      }
      prompt += trim(message.content) + " [/INST]";
      first_turn = false;
    } else {  // assistant
      prompt += " " + trim(message.content) + " " + eos_token_;
      first_turn = false;
    }
  }
  if (!pending_system.empty()) {
    // A system message with no user turn after it still reaches the model, in an empty turn.
    if (!first_turn) prompt += bos_token_;
    prompt += "[INST] <<SYS>>\n" + pending_system + "\n<</SYS>>\n\n [/INST]";
  }
  return prompt;
}

std::string ChatTemplate::render_llama3(const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt) const {
  std::string prompt;
  for (const ChatMessage& message : messages) {
    prompt += "<|start_header_id|>" + message.role + "<|end_header_id|>\n\n" +
              trim(message.content) + "<|eot_id|>";
  }
  if (add_generation_prompt) prompt += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return prompt;
}

std::string ChatTemplate::render_chatml(const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt) const {
  // ChatML keeps content as is (no trimming), as Qwen's template does.
  std::string prompt;
  for (const ChatMessage& message : messages) {
    prompt += "<|im_start|>" + message.role + "\n" + message.content + "<|im_end|>\n";
  }
  if (add_generation_prompt) prompt += "<|im_start|>assistant\n";
  return prompt;
}

}  // namespace servelab
