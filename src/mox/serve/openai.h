#pragma once
// The OpenAI API's shapes, for the server: request bodies parsed and checked into plain
// structs (an ApiError names the parameter, with the HTTP status and OpenAI's error type),
// and the JSON of responses, stream chunks and errors as OpenAI's clients read them.
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mox::serve {

// An error answered as {"error": {"message", "type", "param", "code"}} with `status`.
struct ApiError : std::runtime_error {
  ApiError(int status, std::string type, std::string message, std::string param = "", std::string code = "")
      : std::runtime_error(message), status(status), type(std::move(type)), param(std::move(param)),
        code(std::move(code)) {}
  int status;
  std::string type;   // "invalid_request_error", "authentication_error", "rate_limit_error", ...
  std::string param;  // the request parameter at fault, or empty
  std::string code;   // "model_not_found", "context_length_exceeded", "invalid_api_key", ...
  double retry_after_s = 0;  // > 0: sent as Retry-After (429, 503)
};
nlohmann::json error_json(const ApiError& e);
// 400 invalid_request_error about `param`.
ApiError bad_request(const std::string& message, const std::string& param = "", const std::string& code = "");

// A prompt: text, or token ids given directly.
struct Prompt {
  std::string text;
  std::vector<int32_t> ids;
  bool is_ids = false;
};

struct ChatMessage {
  std::string role;     // "system", "user", "assistant"
  std::string content;
};

// POST /v1/completions and /v1/chat/completions, after checking.
struct CompletionParams {
  std::string model;
  bool chat = false;
  std::vector<Prompt> prompts;          // completions: one or more; chat: empty
  std::vector<ChatMessage> messages;    // chat
  int64_t max_tokens = 16;              // completions default 16; chat: the room left in the context
  bool max_tokens_given = false;
  double temperature = 1.0;
  double top_p = 1.0;
  int64_t n = 1;
  std::vector<std::string> stop;        // up to 4
  std::optional<uint64_t> seed;
  bool stream = false;
  bool include_usage = false;           // stream_options.include_usage
  std::string user;
};
// Throws ApiError (400) naming the parameter: malformed types, values out of range, unknown
// parameters, features this server does not have (logprobs, echo, tools, penalties, ...).
CompletionParams parse_completion_request(const nlohmann::json& body, bool chat);

// The chat template for mox GPTs: each message as "<Role>: <content>\n" (System, User,
// Assistant), then "Assistant:" for the reply; the reply stops at "\nUser:" (added to the
// stop strings).
std::string chat_prompt(const std::vector<ChatMessage>& messages);
extern const char* const kChatStop;

// POST /v1/classify: {"model", "input": text | [texts] | [numbers] (one table row or image)
// | [[numbers]...] | [[[...]]] (images), "image": base64 PNG | [base64 PNGs], "top_k"}.
struct ClassifyParams {
  std::string model;
  nlohmann::json input;                 // as given (checked against the model later)
  std::vector<std::string> images_b64;  // "image"
  int64_t top_k = 0;                    // 0 = every class
  std::string user;
};
ClassifyParams parse_classify_request(const nlohmann::json& body);

// Parses a request body; malformed JSON or a body that is not an object -> 400.
nlohmann::json parse_body(const std::string& body);

// Text cut to its longest prefix that is whole UTF-8 (a streamed token may end inside a
// character; the rest is sent with the next chunk). Invalid bytes count as whole.
size_t utf8_complete_prefix(const std::string& text);

}  // namespace mox::serve
