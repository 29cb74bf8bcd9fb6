#include "protocol/chat_template.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/error.h"
#include "test_paths.h"

namespace servelab {
namespace {

// Abridged from the models' own tokenizer_config.json templates: enough to carry the markers.
const char* kLlama2Source =
    "{% if messages[0]['role'] == 'system' %}...{{ bos_token + '[INST] ' + content.strip() + "
    "' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + "
    "eos_token }}{% endif %}<<SYS>>\\n";
const char* kLlama3Source =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | "
    "trim + '<|eot_id|>' %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
const char* kChatMlSource =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] "
    "+ '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\\n' "
    "}}{% endif %}";

const std::vector<ChatMessage> kConversation = {{"system", "Be kind. "},
                                                {"user", " Hello"},
                                                {"assistant", "Hi there"},
                                                {"user", "Tell a story"}};

std::string config_with_template(const std::string& source) {
  return std::string(R"({"bos_token": "<s>", "eos_token": "</s>", "chat_template": ")") + source +
         "\"}";
}

TEST(ChatTemplate, DetectsEachFormByItsMarkers) {
  EXPECT_EQ(detect_chat_template_form(kLlama2Source), ChatTemplateForm::kLlama2);
  EXPECT_EQ(detect_chat_template_form(kLlama3Source), ChatTemplateForm::kLlama3);
  EXPECT_EQ(detect_chat_template_form(kChatMlSource), ChatTemplateForm::kChatMl);
  EXPECT_EQ(detect_chat_template_form(""), ChatTemplateForm::kPlain);
  EXPECT_EQ(detect_chat_template_form("{{ messages | tojson }}"), ChatTemplateForm::kPlain);
}

TEST(ChatTemplate, FormNames) {
  EXPECT_STREQ(to_string(ChatTemplateForm::kPlain), "plain");
  EXPECT_STREQ(to_string(ChatTemplateForm::kLlama2), "llama-2");
  EXPECT_STREQ(to_string(ChatTemplateForm::kLlama3), "llama-3");
  EXPECT_STREQ(to_string(ChatTemplateForm::kChatMl), "chatml");
}

TEST(ChatTemplate, ReadsTheFormFromTokenizerConfig) {
  ChatTemplate llama3 =
      ChatTemplate::from_tokenizer_config(config_with_template(kLlama3Source), "t");
  EXPECT_EQ(llama3.form(), ChatTemplateForm::kLlama3);
  EXPECT_TRUE(llama3.has_model_template());
  ChatTemplate unknown = ChatTemplate::from_tokenizer_config(config_with_template("{{ x }}"), "t");
  EXPECT_EQ(unknown.form(), ChatTemplateForm::kPlain);
  EXPECT_TRUE(unknown.has_model_template());
}

TEST(ChatTemplate, NamedTemplateListUsesTheDefaultOne) {
  const std::string config =
      std::string(R"({"chat_template": [{"name": "tool_use", "template": ")") + kLlama2Source +
      R"("}, {"name": "default", "template": ")" + kChatMlSource + "\"}]}";
  EXPECT_EQ(ChatTemplate::from_tokenizer_config(config, "t").form(), ChatTemplateForm::kChatMl);
}

TEST(ChatTemplate, EmbeddedModelAndFixturesHaveNoTemplateSoGetPlain) {
  ChatTemplate embedded =
      ChatTemplate::from_model_dir(servelab::testing::fixture_model_dir("embedded"));
  EXPECT_EQ(embedded.form(), ChatTemplateForm::kPlain);
  EXPECT_FALSE(embedded.has_model_template());
  EXPECT_EQ(ChatTemplate::from_model_dir(servelab::testing::fixture_path("llama-mha")).form(),
            ChatTemplateForm::kPlain);
  EXPECT_EQ(ChatTemplate::from_model_dir("/nonexistent/model").form(), ChatTemplateForm::kPlain);
}

TEST(ChatTemplate, InvalidTokenizerConfigIsAnErrorNamingTheFile) {
  try {
    ChatTemplate::from_tokenizer_config("{not json", "models/x/tokenizer_config.json");
    ADD_FAILURE() << "accepted invalid JSON";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("models/x/tokenizer_config.json"), std::string::npos);
  }
}

TEST(ChatTemplate, RendersPlain) {
  EXPECT_EQ(ChatTemplate().render(kConversation),
            "System: Be kind.\n\nUser: Hello\n\nAssistant: Hi there\n\nUser: Tell a story\n\n"
            "Assistant:");
  EXPECT_EQ(ChatTemplate().render({{"user", "Hi"}}, /*add_generation_prompt=*/false),
            "User: Hi\n\n");
}

TEST(ChatTemplate, RendersLlama2WithSystemFoldedIntoFirstTurnAndNoLeadingBos) {
  ChatTemplate llama2(ChatTemplateForm::kLlama2);
  EXPECT_EQ(llama2.render(kConversation),
            "[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\nHello [/INST] Hi there </s><s>[INST] Tell a "
            "story [/INST]");
  EXPECT_EQ(llama2.render({{"user", "Hi"}}), "[INST] Hi [/INST]");
}

TEST(ChatTemplate, Llama2UsesTheConfigsEosAndBos) {
  ChatTemplate llama2 = ChatTemplate::from_tokenizer_config(
      std::string(R"({"bos_token": {"content": "<B>"}, "eos_token": "<E>", "chat_template": ")") +
          kLlama2Source + "\"}",
      "t");
  EXPECT_EQ(llama2.render({{"user", "a"}, {"assistant", "b"}, {"user", "c"}}),
            "[INST] a [/INST] b <E><B>[INST] c [/INST]");
}

TEST(ChatTemplate, RendersLlama3WithGenerationPrompt) {
  ChatTemplate llama3(ChatTemplateForm::kLlama3);
  EXPECT_EQ(llama3.render({{"system", "Be kind."}, {"user", "Hello "}}),
            "<|start_header_id|>system<|end_header_id|>\n\nBe kind.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(llama3.render({{"user", "Hi"}}, false),
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

TEST(ChatTemplate, RendersChatMlKeepingContentAsIs) {
  ChatTemplate chatml(ChatTemplateForm::kChatMl);
  EXPECT_EQ(chatml.render({{"user", " Hi "}, {"assistant", "Yo"}}),
            "<|im_start|>user\n Hi <|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n"
            "<|im_start|>assistant\n");
}

}  // namespace
}  // namespace servelab
