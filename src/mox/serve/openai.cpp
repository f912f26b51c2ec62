#include "mox/serve/openai.h"

#include <cmath>
#include <set>

namespace mox::serve {

using json = nlohmann::json;

const char* const kChatStop = "\nUser:";

json error_json(const ApiError& e) {
  json err = {{"message", e.what()}, {"type", e.type}};
  err["param"] = e.param.empty() ? json(nullptr) : json(e.param);
  err["code"] = e.code.empty() ? json(nullptr) : json(e.code);
  return {{"error", err}};
}

ApiError bad_request(const std::string& message, const std::string& param, const std::string& code) {
  return ApiError(400, "invalid_request_error", message, param, code);
}

json parse_body(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    // nlohmann's message: "[json.exception.parse_error.101] parse error at line 1, column 5: ..."
    std::string what = e.what();
    const size_t p = what.find("] ");
    throw bad_request("The request body is not valid JSON: " + (p == std::string::npos ? what : what.substr(p + 2)));
  }
  if (!j.is_object()) throw bad_request("The request body must be a JSON object, got " + std::string(j.type_name()));
  return j;
}

namespace {

std::string type_of(const json& v) { return v.type_name(); }

// Accessors that name the parameter in their errors; a null value is "not given".
const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string get_string(const json& body, const char* name, bool required) {
  const json* v = field(body, name);
  if (!v) {
    if (required) throw bad_request("Missing required parameter: '" + std::string(name) + "'.", name);
    return "";
  }
  if (!v->is_string())
    throw bad_request("Invalid type for '" + std::string(name) + "': expected a string, but got " + type_of(*v) + ".", name);
  return v->get<std::string>();
}

double get_number(const json& body, const char* name, double def, double lo, double hi) {
  const json* v = field(body, name);
  if (!v) return def;
  if (!v->is_number())
    throw bad_request("Invalid type for '" + std::string(name) + "': expected a number, but got " + type_of(*v) + ".", name);
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    throw bad_request("Invalid value for '" + std::string(name) + "': " + v->dump() + " is not in [" +
                          json(lo).dump() + ", " + json(hi).dump() + "].",
                      name);
  return x;
}

int64_t get_int(const json& body, const char* name, int64_t def, int64_t lo, int64_t hi) {
  const json* v = field(body, name);
  if (!v) return def;
  if (!v->is_number_integer() && !(v->is_number_float() && std::floor(v->get<double>()) == v->get<double>() &&
                                   std::abs(v->get<double>()) < 9e15))
    throw bad_request("Invalid type for '" + std::string(name) + "': expected an integer, but got " +
                          (v->is_number() ? v->dump() : type_of(*v)) + ".",
                      name);
  const int64_t x = v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX) ? INT64_MAX : v->get<int64_t>();
  if (x < lo || x > hi)
    throw bad_request("Invalid value for '" + std::string(name) + "': " + std::to_string(x) + " is not in [" +
                          std::to_string(lo) + ", " + std::to_string(hi) + "].",
                      name);
  return x;
}

bool get_bool(const json& body, const char* name, bool def) {
  const json* v = field(body, name);
  if (!v) return def;
  if (!v->is_boolean())
    throw bad_request("Invalid type for '" + std::string(name) + "': expected a boolean, but got " + type_of(*v) + ".", name);
  return v->get<bool>();
}

// Parameters of OpenAI's API this server accepts only at their neutral value.
void check_neutral(const json& body) {
  auto neutral_number = [&](const char* name) {
    const json* v = field(body, name);
    if (v && !(v->is_number() && v->get<double>() == 0))
      throw bad_request("'" + std::string(name) + "' is not supported by this server (only 0).", name);
  };
  neutral_number("presence_penalty");
  neutral_number("frequency_penalty");
  for (const char* name : {"logprobs", "echo", "parallel_tool_calls"}) {
    const json* v = field(body, name);
    if (v && !((v->is_boolean() && !v->get<bool>()) || (v->is_number() && v->get<double>() == 0) ||
               (std::string(name) == "parallel_tool_calls" && v->is_boolean())))
      throw bad_request("'" + std::string(name) + "' is not supported by this server.", name);
  }
  for (const char* name : {"top_logprobs", "suffix", "tools", "functions", "function_call"}) {
    const json* v = field(body, name);
    if (v && !(v->is_array() && v->empty()))
      throw bad_request("'" + std::string(name) + "' is not supported by this server.", name);
  }
  if (const json* v = field(body, "logit_bias"); v && !(v->is_object() && v->empty()))
    throw bad_request("'logit_bias' is not supported by this server.", "logit_bias");
  if (const json* v = field(body, "best_of"); v && !(v->is_number_integer() && v->get<int64_t>() == 1))
    throw bad_request("'best_of' is not supported by this server (only 1).", "best_of");
  if (const json* v = field(body, "tool_choice"); v && !(v->is_string() && v->get<std::string>() == "none"))
    throw bad_request("'tool_choice' is not supported by this server.", "tool_choice");
  if (const json* v = field(body, "response_format");
      v && !(v->is_object() && v->value("type", json()).is_string() && (*v)["type"] == "text"))
    throw bad_request("'response_format' is not supported by this server (only {\"type\": \"text\"}).", "response_format");
}

void check_known(const json& body, const std::set<std::string>& known) {
  for (auto it = body.begin(); it != body.end(); ++it)
    if (!known.count(it.key()))
      throw bad_request("Unrecognized request argument supplied: " + it.key(), it.key());
}

std::vector<int32_t> token_array(const json& a, const std::string& param) {
  std::vector<int32_t> ids;
  for (const json& t : a) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > INT32_MAX)
      throw bad_request("Invalid value for '" + param + "': token ids must be non-negative integers, got " + t.dump() + ".",
                        param);
    ids.push_back(int32_t(t.get<int64_t>()));
  }
  return ids;
}

std::vector<Prompt> parse_prompts(const json& body) {
  const json* v = field(body, "prompt");
  if (!v) throw bad_request("Missing required parameter: 'prompt'.", "prompt");
  auto bad = [&] {
    return bad_request("Invalid type for 'prompt': expected a string, an array of strings, an array of token ids or "
                       "an array of token id arrays.",
                       "prompt");
  };
  std::vector<Prompt> out;
  if (v->is_string()) {
    out.push_back({v->get<std::string>(), {}, false});
  } else if (v->is_array()) {
    if (v->empty()) throw bad_request("Invalid value for 'prompt': the array is empty.", "prompt");
    if ((*v)[0].is_number()) {
      out.push_back({"", token_array(*v, "prompt"), true});
    } else {
      for (const json& e : *v) {
        if (e.is_string()) out.push_back({e.get<std::string>(), {}, false});
        else if (e.is_array() && !e.empty()) out.push_back({"", token_array(e, "prompt"), true});
        else throw bad();
      }
    }
  } else {
    throw bad();
  }
  if (out.size() > 64) throw bad_request("Invalid value for 'prompt': at most 64 prompts per request.", "prompt");
  for (const Prompt& p : out)
    if (!p.is_ids && p.text.empty()) throw bad_request("Invalid value for 'prompt': a prompt is empty.", "prompt");
  return out;
}

std::string message_content(const json& m, size_t i) {
  const std::string param = "messages[" + std::to_string(i) + "].content";
  auto it = m.find("content");
  if (it == m.end() || it->is_null()) throw bad_request("Missing required parameter: '" + param + "'.", param);
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    std::string text;
    for (const json& part : *it) {
      if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
        throw bad_request("Invalid value for '" + param + "': only text parts ({\"type\": \"text\", \"text\": ...}) are supported.",
                          param);
      text += part["text"].get<std::string>();
    }
    return text;
  }
  throw bad_request("Invalid type for '" + param + "': expected a string or an array of text parts, but got " +
                        type_of(*it) + ".",
                    param);
}

std::vector<ChatMessage> parse_messages(const json& body) {
  const json* v = field(body, "messages");
  if (!v) throw bad_request("Missing required parameter: 'messages'.", "messages");
  if (!v->is_array()) throw bad_request("Invalid type for 'messages': expected an array, but got " + type_of(*v) + ".", "messages");
  if (v->empty()) throw bad_request("Invalid value for 'messages': the array is empty.", "messages");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < v->size(); i++) {
    const json& m = (*v)[i];
    const std::string param = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) throw bad_request("Invalid type for '" + param + "': expected an object, but got " + type_of(m) + ".", param);
    auto role = m.find("role");
    if (role == m.end() || !role->is_string())
      throw bad_request("Missing required parameter: '" + param + ".role'.", param + ".role");
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";
    if (r != "system" && r != "user" && r != "assistant")
      throw bad_request("Invalid value for '" + param + ".role': '" + r + "' (supported: system, user, assistant).",
                        param + ".role");
    out.push_back({r, message_content(m, i)});
  }
  return out;
}

}  // namespace

CompletionParams parse_completion_request(const json& body, bool chat) {
  static const std::set<std::string> common = {
      "model", "max_tokens", "temperature", "top_p", "n", "stop", "seed", "stream", "stream_options", "user",
      "logprobs", "presence_penalty", "frequency_penalty", "logit_bias", "metadata", "store", "service_tier"};
  static const std::set<std::string> completion_only = {"prompt", "echo", "best_of", "suffix"};
  static const std::set<std::string> chat_only = {"messages", "max_completion_tokens", "top_logprobs", "response_format",
                                                  "tools", "tool_choice", "parallel_tool_calls", "functions",
                                                  "function_call"};
  std::set<std::string> known = common;
  known.insert((chat ? chat_only : completion_only).begin(), (chat ? chat_only : completion_only).end());
  check_known(body, known);

  CompletionParams p;
  p.chat = chat;
  p.model = get_string(body, "model", true);
  if (chat) p.messages = parse_messages(body);
  else p.prompts = parse_prompts(body);
  const char* max_name = chat && field(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  p.max_tokens_given = field(body, max_name) != nullptr;
  p.max_tokens = get_int(body, max_name, 16, 1, 1 << 20);
  p.temperature = get_number(body, "temperature", 1.0, 0.0, 2.0);
  p.top_p = get_number(body, "top_p", 1.0, 0.0, 1.0);
  if (p.top_p == 0) p.temperature = 0;  // the most likely token only
  if (p.top_p == 0) p.top_p = 1.0;
  p.n = get_int(body, "n", 1, 1, 16);
  if (const json* s = field(body, "stop")) {
    if (s->is_string()) {
      p.stop.push_back(s->get<std::string>());
    } else if (s->is_array()) {
      if (s->size() > 4) throw bad_request("Invalid value for 'stop': at most 4 stop sequences.", "stop");
      for (const json& e : *s) {
        if (!e.is_string()) throw bad_request("Invalid type for 'stop': expected strings, but got " + type_of(e) + ".", "stop");
        p.stop.push_back(e.get<std::string>());
      }
    } else {
      throw bad_request("Invalid type for 'stop': expected a string or an array of strings, but got " + type_of(*s) + ".",
                        "stop");
    }
  }
  if (const json* s = field(body, "seed")) {
    if (!s->is_number_integer()) throw bad_request("Invalid type for 'seed': expected an integer, but got " + type_of(*s) + ".", "seed");
    p.seed = s->is_number_unsigned() ? s->get<uint64_t>() : uint64_t(s->get<int64_t>());
  }
  p.stream = get_bool(body, "stream", false);
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) throw bad_request("Invalid type for 'stream_options': expected an object.", "stream_options");
    if (!p.stream) throw bad_request("'stream_options' is only allowed when 'stream' is true.", "stream_options");
    for (auto it = so->begin(); it != so->end(); ++it)
      if (it.key() != "include_usage")
        throw bad_request("Unrecognized request argument supplied: stream_options." + it.key(), "stream_options." + it.key());
    p.include_usage = get_bool(*so, "include_usage", false);
  }
  p.user = get_string(body, "user", false);
  check_neutral(body);
  return p;
}

std::string chat_prompt(const std::vector<ChatMessage>& messages) {
  std::string s;
  for (const ChatMessage& m : messages) {
    const std::string role = m.role == "system" ? "System" : m.role == "user" ? "User" : "Assistant";
    s += role + ": " + m.content + "\n";
  }
  return s + "Assistant:";
}

ClassifyParams parse_classify_request(const json& body) {
  check_known(body, {"model", "input", "image", "top_k", "user"});
  ClassifyParams p;
  p.model = get_string(body, "model", true);
  const json* in = field(body, "input");
  const json* img = field(body, "image");
  if (!in && !img) throw bad_request("Missing required parameter: 'input' (or 'image').", "input");
  if (in && img) throw bad_request("Give either 'input' or 'image', not both.", "image");
  if (in) {
    if (!in->is_string() && !in->is_array())
      throw bad_request("Invalid type for 'input': expected a string, an array of strings or an array of numbers, but got " +
                            type_of(*in) + ".",
                        "input");
    if (in->is_array() && in->empty()) throw bad_request("Invalid value for 'input': the array is empty.", "input");
    p.input = *in;
  }
  if (img) {
    if (img->is_string()) {
      p.images_b64.push_back(img->get<std::string>());
    } else if (img->is_array() && !img->empty()) {
      for (const json& e : *img) {
        if (!e.is_string()) throw bad_request("Invalid type for 'image': expected base64 strings, but got " + type_of(e) + ".", "image");
        p.images_b64.push_back(e.get<std::string>());
      }
    } else {
      throw bad_request("Invalid type for 'image': expected a base64 PNG string or an array of them.", "image");
    }
  }
  p.top_k = get_int(body, "top_k", 0, 0, 1 << 20);
  p.user = get_string(body, "user", false);
  return p;
}

size_t utf8_complete_prefix(const std::string& text) {
  // Look back at most 3 bytes for a lead byte whose sequence runs past the end.
  const size_t n = text.size();
  for (size_t back = 1; back <= 3 && back <= n; back++) {
    const unsigned char c = static_cast<unsigned char>(text[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
    size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    return len > back ? n - back : n;
  }
  return n;
}

}  // namespace mox::serve
