// The OpenAI request shapes: /v1/completions and /v1/chat/completions bodies parsed and checked
// field by field (errors name the field), and the error object.
#include <limits>

#include "serve/internal.h"

namespace candor::serve {
namespace {

using nlohmann::json;

std::string type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    default:
      return "a number";
  }
}

HttpError wrong_type(const std::string& field, const std::string& want, const json& got) {
  return bad_request("'" + field + "' must be " + want + ", got " + type_name(got), field,
                     "invalid_type");
}

double get_number(const json& body, const std::string& field, double fallback, double lo,
                  double hi) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return fallback;
  if (!it->is_number()) throw wrong_type(field, "a number", *it);
  const double v = it->get<double>();
  if (!(v >= lo && v <= hi))
    throw bad_request("'" + field + "' must be in [" + std::to_string(lo) + ", " +
                          std::to_string(hi) + "], got " + it->dump(),
                      field);
  return v;
}

int64_t get_int(const json& body, const std::string& field, int64_t fallback, int64_t lo,
                int64_t hi) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return fallback;
  if (!it->is_number_integer() &&
      !(it->is_number_float() && it->get<double>() == std::floor(it->get<double>())))
    throw wrong_type(field, "an integer", *it);
  const double d = it->get<double>();
  if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)))
    throw bad_request("'" + field + "' must be in [" + std::to_string(lo) + ", " +
                          std::to_string(hi) + "], got " + it->dump(),
                      field);
  return it->is_number_unsigned() ? static_cast<int64_t>(it->get<uint64_t>()) : it->get<int64_t>();
}

bool get_bool(const json& body, const std::string& field, bool fallback) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw wrong_type(field, "a boolean", *it);
  return it->get<bool>();
}

std::string get_string(const json& body, const std::string& field) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return {};
  if (!it->is_string()) throw wrong_type(field, "a string", *it);
  return it->get<std::string>();
}

}  // namespace

HttpError bad_request(const std::string& message, const std::string& param,
                      const std::string& code) {
  HttpError e;
  e.status = 400;
  e.message = message;
  e.param = param;
  e.code = code;
  return e;
}

json error_json(const HttpError& e) {
  json err = {{"message", e.message}, {"type", e.type}, {"code", e.code}};
  err["param"] = e.param.empty() ? json(nullptr) : json(e.param);
  return {{"error", err}};
}

int64_t code_points(const std::string& bytes) {
  int64_t n = 0;
  for (unsigned char c : bytes) n += (c & 0xC0) != 0x80;
  return n;
}

std::string plain_chat_transcript(const std::vector<ChatMessage>& messages) {
  std::string s;
  for (const ChatMessage& m : messages) {
    std::string role = m.role;
    if (!role.empty())
      role[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(role[0])));
    s += role + ": " + m.content + "\n";
  }
  return s + "Assistant:";
}

json CompletionParams::as_record() const {
  json j = {{"max_tokens", max_tokens},
            {"temperature", temperature},
            {"top_p", top_p},
            {"seed", seed},
            {"stop", stop},
            {"echo", echo},
            {"stream", stream}};
  if (top_k > 0) j["top_k"] = top_k;
  if (logprobs >= 0) j["logprobs"] = logprobs;
  if (!candor.methods.empty()) j["candor_methods"] = candor.methods;
  if (!candor.granularity.empty()) j["candor_granularity"] = candor.granularity;
  if (candor.evaluate) j["candor_evaluate"] = true;
  return j;
}

CompletionParams parse_completion(const json& body, bool chat, int64_t max_tokens_limit) {
  if (!body.is_object())
    throw bad_request("the request body must be a JSON object", "", "invalid_json");
  CompletionParams p;
  p.chat = chat;
  p.model = get_string(body, "model");
  if (chat) {
    auto it = body.find("messages");
    if (it == body.end()) throw bad_request("'messages' is required", "messages", "missing_field");
    if (!it->is_array()) throw wrong_type("messages", "an array of {role, content}", *it);
    if (it->empty()) throw bad_request("'messages' must hold at least one message", "messages");
    for (size_t i = 0; i < it->size(); ++i) {
      const json& m = (*it)[i];
      const std::string f = "messages[" + std::to_string(i) + "]";
      if (!m.is_object()) throw wrong_type(f, "an object {role, content}", m);
      ChatMessage cm;
      cm.role = get_string(m, "role");
      if (cm.role != "system" && cm.role != "user" && cm.role != "assistant" &&
          cm.role != "developer")
        throw bad_request(f + ".role must be system, user or assistant, got '" + cm.role + "'",
                          f + ".role");
      if (cm.role == "developer") cm.role = "system";
      auto c = m.find("content");
      if (c == m.end() || c->is_null()) {
        cm.content = "";
      } else if (c->is_string()) {
        cm.content = c->get<std::string>();
      } else if (c->is_array()) {  // content parts: the text parts joined
        for (const json& part : *c) {
          if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
              !part["text"].is_string())
            throw bad_request(f + ".content parts must be {\"type\": \"text\", \"text\": ...}",
                              f + ".content", "unsupported_content");
          cm.content += part["text"].get<std::string>();
        }
      } else {
        throw wrong_type(f + ".content", "a string", *c);
      }
      p.messages.push_back(cm);
    }
    p.max_tokens = max_tokens_limit;
    const bool has_mct =
        body.contains("max_completion_tokens") && !body["max_completion_tokens"].is_null();
    p.max_tokens = get_int(body, has_mct ? "max_completion_tokens" : "max_tokens", p.max_tokens, 1,
                           std::numeric_limits<int32_t>::max());
    p.chat_logprobs = get_bool(body, "logprobs", false);
    p.logprobs = get_int(body, "top_logprobs", p.chat_logprobs ? 0 : -1, 0, 20);
    if (p.logprobs >= 0 && !p.chat_logprobs)
      throw bad_request("'top_logprobs' needs 'logprobs': true", "top_logprobs");
  } else {
    auto it = body.find("prompt");
    if (it == body.end() || it->is_null()) {
      p.prompt = "";
    } else if (it->is_string()) {
      p.prompt = it->get<std::string>();
    } else if (it->is_array()) {
      if (it->size() == 1 && (*it)[0].is_string()) {
        p.prompt = (*it)[0].get<std::string>();
      } else if (!it->empty() && (*it)[0].is_number_integer()) {
        p.prompt_is_ids = true;
        for (const json& t : *it) {
          if (!t.is_number_integer())
            throw wrong_type("prompt", "a string or an array of token ids", *it);
          p.prompt_token_ids.push_back(t.get<TokenId>());
        }
      } else {
        throw bad_request(
            "'prompt' must be a string, one string in an array, or token ids "
            "(one prompt per request)",
            "prompt", "invalid_type");
      }
    } else {
      throw wrong_type("prompt", "a string", *it);
    }
    p.max_tokens = get_int(body, "max_tokens", 16, 0, std::numeric_limits<int32_t>::max());
    p.logprobs = get_int(body, "logprobs", -1, 0, 20);
    p.echo = get_bool(body, "echo", false);
  }
  if (p.max_tokens > max_tokens_limit)
    throw bad_request("'max_tokens' is " + std::to_string(p.max_tokens) + ", more than the " +
                          std::to_string(max_tokens_limit) + " the policy allows",
                      "max_tokens", "max_tokens_exceeded");
  if (get_int(body, "n", 1, 1, 1) != 1) throw bad_request("only n = 1 is served", "n");
  if (body.contains("best_of") && !body["best_of"].is_null() &&
      get_int(body, "best_of", 1, 1, 1) != 1)
    throw bad_request("only best_of = 1 is served", "best_of");
  p.temperature = get_number(body, "temperature", 1.0, 0.0, 2.0);
  p.top_p = get_number(body, "top_p", 1.0, 0.0, 1.0);
  if (p.top_p <= 0) throw bad_request("'top_p' must be in (0, 1], got 0", "top_p");
  p.top_k = get_int(body, "top_k", 0, 0, 1 << 20);
  if (body.contains("seed") && !body["seed"].is_null()) {
    p.seed = static_cast<uint64_t>(get_int(body, "seed", 0, std::numeric_limits<int64_t>::min(),
                                           std::numeric_limits<int64_t>::max()));
    p.seed_given = true;
  }
  if (auto it = body.find("stop"); it != body.end() && !it->is_null()) {
    if (it->is_string()) {
      p.stop.push_back(it->get<std::string>());
    } else if (it->is_array()) {
      for (const json& s : *it) {
        if (!s.is_string()) throw wrong_type("stop", "a string or an array of strings", *it);
        p.stop.push_back(s.get<std::string>());
      }
    } else {
      throw wrong_type("stop", "a string or an array of strings", *it);
    }
    if (p.stop.size() > 4) throw bad_request("'stop' takes at most 4 sequences", "stop");
    for (const auto& s : p.stop)
      if (s.empty()) throw bad_request("'stop' sequences must not be empty", "stop");
  }
  p.stream = get_bool(body, "stream", false);
  p.user = get_string(body, "user");
  if (auto it = body.find("candor"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) throw wrong_type("candor", "an object", *it);
    const json& c = *it;
    if (auto m = c.find("methods"); m != c.end() && !m->is_null()) {
      if (m->is_string()) {
        p.candor.methods.push_back(m->get<std::string>());
      } else if (m->is_array()) {
        for (const json& s : *m) {
          if (!s.is_string()) throw wrong_type("candor.methods", "an array of method specs", *m);
          p.candor.methods.push_back(s.get<std::string>());
        }
      } else {
        throw wrong_type("candor.methods", "an array of method specs", *m);
      }
    }
    p.candor.granularity = get_string(c, "granularity");
    if (!p.candor.granularity.empty() && p.candor.granularity != "token" &&
        p.candor.granularity != "word" && p.candor.granularity != "sentence")
      throw bad_request("'candor.granularity' must be token, word or sentence, got '" +
                            p.candor.granularity + "'",
                        "candor.granularity");
    p.candor.evaluate = get_bool(c, "evaluate", false);
  }
  return p;
}

}  // namespace candor::serve
