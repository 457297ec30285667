// Chat templates of the common model families, recognised from the Jinja text of
// tokenizer_config.json and rendered natively (no Jinja engine): Llama 2 ("[INST]" with
// "<<SYS>>"), Mistral ("[INST]" without a system block), Llama 3 (header tokens) and ChatML
// ("<|im_start|>", Qwen and many others).
#include <string>
#include <vector>

#include "candor/error.h"
#include "candor/tokenizer.h"
#include "tokenizers/tokenizer_internal.h"

namespace candor::tokenizers {
namespace {

bool contains(const std::string& text, const char* what) {
  return text.find(what) != std::string::npos;
}

// Jinja's trim / Python's str.strip(): leading and trailing ASCII whitespace.
std::string trim(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  const size_t begin = s.find_first_not_of(ws);
  if (begin == std::string::npos) return {};
  const size_t end = s.find_last_not_of(ws);
  return s.substr(begin, end - begin + 1);
}

void require_alternation(const std::string& family, const ChatMessage& m, size_t index) {
  const bool user_expected = index % 2 == 0;
  if ((m.role == "user") != user_expected || (m.role != "user" && m.role != "assistant")) {
    throw Error(ErrorCode::kInvalidArgument,
                "the " + family +
                    " chat format needs roles user/assistant/user/... after an "
                    "optional system message; message " +
                    std::to_string(index) + " has role \"" + m.role + "\"",
                "alternate user and assistant turns, starting with the user");
  }
}

}  // namespace

std::string detect_chat_family(const std::string& chat_template,
                               const std::function<bool(const std::string&)>& has_token) {
  if (!chat_template.empty()) {
    if (contains(chat_template, "<|im_start|>")) return "chatml";
    if (contains(chat_template, "<|start_header_id|>")) return "llama3";
    if (contains(chat_template, "<<SYS>>")) return "llama2";
    if (contains(chat_template, "[INST]")) return "mistral";
    return {};
  }
  if (has_token("<|im_start|>") && has_token("<|im_end|>")) return "chatml";
  if (has_token("<|start_header_id|>") && has_token("<|eot_id|>")) return "llama3";
  return {};
}

std::string render_chat(const std::string& family, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt, const std::string& bos,
                        const std::string& eos) {
  if (messages.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "a chat needs at least one message");
  }
  std::string out;
  if (family == "chatml") {
    for (const ChatMessage& m : messages) {
      out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
    }
    if (add_generation_prompt) out += "<|im_start|>assistant\n";
    return out;
  }
  if (family == "llama3") {
    for (size_t i = 0; i < messages.size(); ++i) {
      if (i == 0) out += bos;
      out += "<|start_header_id|>" + messages[i].role + "<|end_header_id|>\n\n" +
             trim(messages[i].content) + "<|eot_id|>";
    }
    if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
    return out;
  }
  if (family == "llama2") {
    size_t first = 0;
    std::string system;
    bool has_system = false;
    if (messages[0].role == "system") {
      system = messages[0].content;
      has_system = true;
      first = 1;
    }
    for (size_t i = first; i < messages.size(); ++i) {
      const ChatMessage& m = messages[i];
      require_alternation(family, m, i - first);
      std::string content = m.content;
      if (i == first && has_system) {
        content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content;
      }
      if (m.role == "user") {
        out += bos + "[INST] " + trim(content) + " [/INST]";
      } else {
        out += " " + trim(content) + " " + eos;
      }
    }
    return out;
  }
  if (family == "mistral") {
    out += bos;
    for (size_t i = 0; i < messages.size(); ++i) {
      const ChatMessage& m = messages[i];
      require_alternation(family, m, i);
      if (m.role == "user") {
        out += "[INST] " + m.content + " [/INST]";
      } else {
        out += m.content + eos;
      }
    }
    return out;
  }
  throw Error(ErrorCode::kUnsupported, "unknown chat format \"" + family + "\"",
              "supported: llama2, mistral, llama3, chatml");
}

}  // namespace candor::tokenizers
