// Turns chat messages into one prompt string in the form the model was trained on. The form is
// recognised from the `chat_template` in the model's tokenizer_config.json by its markers; there
// is no Jinja engine, so only the common forms (Llama-2, Llama-3, ChatML) and a plain default
// exist.
#pragma once

#include <string>
#include <vector>

namespace servelab {

/// One chat message as the client sent it; role is "system", "user" or "assistant".
struct ChatMessage {
  std::string role;
  std::string content;

  bool operator==(const ChatMessage& other) const {
    return role == other.role && content == other.content;
  }
};

/// The chat formats servelab can render.
enum class ChatTemplateForm {
  kPlain,   ///< built-in default: "System: ...\n\nUser: ...\n\nAssistant:" (no special tokens)
  kLlama2,  ///< "[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] ... </s><s>[INST] ... [/INST]"
  kLlama3,  ///< "<|start_header_id|>user<|end_header_id|>\n\n...<|eot_id|>"
  kChatMl,  ///< "<|im_start|>user\n...<|im_end|>\n" (Qwen, many fine-tunes)
};

/// "plain", "llama-2", "llama-3" or "chatml".
const char* to_string(ChatTemplateForm form);

/// Which form a Jinja chat template source is, by the special tokens it writes:
/// "<|start_header_id|>" -> Llama-3, "<|im_start|>" -> ChatML, "[INST]" -> Llama-2 (also Mistral's
/// templates, rendered in the Llama-2 form), anything else (or empty) -> plain.
ChatTemplateForm detect_chat_template_form(const std::string& template_source);

/// A chat template: its form plus the BOS/EOS strings some forms write between turns.
///
/// The rendered prompt never starts with the BOS token (`<s>`, `<|begin_of_text|>`): the
/// tokenizer adds BOS itself (add_bos_token), and writing it too would give the model two.
class ChatTemplate {
 public:
  explicit ChatTemplate(ChatTemplateForm form = ChatTemplateForm::kPlain,
                        std::string bos_token = "<s>", std::string eos_token = "</s>");

  /// Reads `<model_dir>/tokenizer_config.json`. A missing file, a missing or non-string
  /// `chat_template` or an unrecognised one all give the plain form (has_model_template() says
  /// whether the model had one). A list of named templates uses the one named "default".
  /// Throws servelab::Error if the file exists but is not valid JSON.
  static ChatTemplate from_model_dir(const std::string& model_dir);
  /// The same from the text of a tokenizer_config.json; `source_name` names it in errors.
  static ChatTemplate from_tokenizer_config(const std::string& json_text,
                                            const std::string& source_name);

  ChatTemplateForm form() const { return form_; }
  /// True when the model's config carried a chat_template (recognised or not).
  bool has_model_template() const { return has_model_template_; }

  /// Renders `messages` (roles system/user/assistant, checked by the request parser) and, when
  /// `add_generation_prompt`, the opening of the assistant's turn, so the model writes the reply.
  std::string render(const std::vector<ChatMessage>& messages,
                     bool add_generation_prompt = true) const;

 private:
  std::string render_plain(const std::vector<ChatMessage>& messages,
                           bool add_generation_prompt) const;
  std::string render_llama2(const std::vector<ChatMessage>& messages) const;
  std::string render_llama3(const std::vector<ChatMessage>& messages,
                            bool add_generation_prompt) const;
  std::string render_chatml(const std::vector<ChatMessage>& messages,
                            bool add_generation_prompt) const;

  ChatTemplateForm form_;
  std::string bos_token_;
  std::string eos_token_;
  bool has_model_template_ = false;
};

}  // namespace servelab
