// The inference server (serve/server.h) in process, over HTTP on loopback: OpenAI-shaped
// completions, chat and streams (greedy text equal to nn::generate's), classification,
// keys (missing, wrong, revoked), rpm and monthly quotas, a corpus of malformed requests
// answered with 4xx JSON errors, metering under many parallel clients (the tokens metered
// equal the tokens in the responses; one row per request), the bounded queue (429 +
// Retry-After), /metrics, and graceful shutdown.
#include <httplib.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "../cli/run_cli.h"
#include "server_fixture.h"
#include "mox/data/datasets/image_file.h"
#include "mox/data/text/text_tokenizer.h"
#include "mox/ops/ops.h"
#include "mox/nn/models/generate.h"
#include "mox/serve/metrics.h"
#include "mox/serve/server.h"
#include "mox/serve/store.h"
#include "mox/train/compress.h"

using namespace mox;
using json = nlohmann::json;
using mox::testing::run_cli;
namespace fs = std::filesystem;

namespace {

std::string g_dir;  // runs made once for the suite

class ServerTest : public ::testing::Test {
 public:
  static void SetUpTestSuite() {
    g_dir = (fs::temp_directory_path() / ("mox_server_test." + std::to_string(::getpid()))).string();
    fs::remove_all(g_dir);
    mox::testing::make_server_runs(g_dir);
  }
  static void TearDownTestSuite() { fs::remove_all(g_dir); }

 protected:
  void SetUp() override { start(); }
  void TearDown() override {
    if (server_) {
      server_->stop();
      server_->wait();
    }
  }
  void start(int64_t max_queue = 256, double timeout_s = 300) {
    if (server_) {
      server_->stop();
      server_->wait();
    }
    serve::ServerOptions o;
    o.models = {g_dir + "/gpt", "fashion=" + g_dir + "/mlp", "topics=" + g_dir + "/gap"};
    o.port = 0;
    o.db_path = g_dir + "/usage-" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + ".sqlite";
    o.quiet = true;
    o.max_queue = max_queue;
    o.request_timeout_s = timeout_s;
    o.max_body_bytes = 1 << 16;
    server_ = std::make_unique<serve::Server>(o);
    server_->start();
    key_ = server_->store().create_key("acme", {}).secret;
  }
  httplib::Client client() {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(60, 0);
    return c;
  }
  httplib::Headers auth(const std::string& key = "") const { return {{"Authorization", "Bearer " + (key.empty() ? key_ : key)}}; }
  // POSTs JSON with the suite's key; returns (status, parsed body or the raw text).
  std::pair<int, json> post(const std::string& path, const std::string& body, const std::string& key = "") {
    auto c = client();
    auto r = c.Post(path.c_str(), auth(key), body, "application/json");
    if (!r) return {0, json()};
    json j = json::parse(r->body, nullptr, false);
    return {r->status, j.is_discarded() ? json(r->body) : j};
  }
  std::string greedy(const std::string& prompt, int64_t max_tokens) {
    auto m = train::load_gpt_run(g_dir + "/gpt");
    auto tok = data::load_text_tokenizer(g_dir + "/gpt/tokenizer");
    nn::GenerateOptions o;
    o.max_new_tokens = max_tokens;
    o.sampling.temperature = 0;
    auto ids = nn::generate(*m, {tok->encode(prompt)}, o, nullptr)[0];
    return tok->decode(ids);
  }

  std::unique_ptr<serve::Server> server_;
  std::string key_;
};

// SSE body -> the JSON events (without [DONE]); *done says whether [DONE] closed it.
std::vector<json> sse_events(const std::string& body, bool* done) {
  std::vector<json> out;
  *done = false;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) end = body.size();
    std::string ev = body.substr(pos, end - pos);
    pos = end + 2;
    if (ev.rfind("data: ", 0) != 0) continue;
    ev = ev.substr(6);
    if (ev == "[DONE]") *done = true;
    else out.push_back(json::parse(ev));
  }
  return out;
}

}  // namespace

TEST_F(ServerTest, CompletionIsTheModelsGreedyTextWithUsage) {
  const std::string prompt = "User: what is 4?\nAssistant:";
  auto [status, j] = post("/v1/completions", json{{"model", "gpt"}, {"prompt", prompt}, {"max_tokens", 12}, {"temperature", 0}}.dump());
  ASSERT_EQ(status, 200) << j.dump();
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["model"], "gpt");
  EXPECT_EQ(j["id"].get<std::string>().rfind("cmpl-", 0), 0u);
  EXPECT_EQ(j["choices"][0]["text"], greedy(prompt, 12));
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["prompt_tokens"], int64_t(prompt.size()));  // a char tokenizer: one token per byte
  EXPECT_EQ(j["usage"]["completion_tokens"], 12);
  EXPECT_EQ(j["usage"]["total_tokens"], int64_t(prompt.size()) + 12);
}

TEST_F(ServerTest, SeedsRepeatAndChoicesDiffer) {
  const json req = {{"model", "gpt"}, {"prompt", "User: what"}, {"max_tokens", 20}, {"temperature", 1.5}, {"seed", 7}, {"n", 3}};
  auto [s1, a] = post("/v1/completions", req.dump());
  auto [s2, b] = post("/v1/completions", req.dump());
  ASSERT_EQ(s1, 200) << a.dump();
  ASSERT_EQ(s2, 200) << b.dump();
  ASSERT_EQ(a["choices"].size(), 3u);
  for (int i = 0; i < 3; i++) {
    EXPECT_EQ(a["choices"][i]["index"], i);
    EXPECT_EQ(a["choices"][i]["text"], b["choices"][i]["text"]);
  }
  EXPECT_NE(a["choices"][0]["text"], a["choices"][1]["text"]);
  EXPECT_EQ(a["usage"]["completion_tokens"], 60);
  EXPECT_EQ(a["usage"]["prompt_tokens"], 10);
}

TEST_F(ServerTest, StreamGivesTheSameTextInChunksThenUsageThenDone) {
  const json base = {{"model", "gpt"}, {"prompt", "User: what is 7?"}, {"max_tokens", 25}, {"temperature", 0.9}, {"seed", 3}};
  auto [s, whole] = post("/v1/completions", base.dump());
  ASSERT_EQ(s, 200);
  json sreq = base;
  sreq["stream"] = true;
  sreq["stream_options"] = {{"include_usage", true}};
  auto c = client();
  auto r = c.Post("/v1/completions", auth(), sreq.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_NE(r->get_header_value("Content-Type").find("text/event-stream"), std::string::npos);
  bool done = false;
  auto events = sse_events(r->body, &done);
  EXPECT_TRUE(done);
  ASSERT_GE(events.size(), 3u);
  std::string text, finish;
  for (size_t i = 0; i + 1 < events.size(); i++) {
    EXPECT_EQ(events[i]["object"], "text_completion");
    EXPECT_EQ(events[i]["id"], events[0]["id"]);
    text += events[i]["choices"][0]["text"].get<std::string>();
    if (!events[i]["choices"][0]["finish_reason"].is_null()) finish = events[i]["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(text, whole["choices"][0]["text"]);
  EXPECT_EQ(finish, "length");
  const json& last = events.back();
  EXPECT_TRUE(last["choices"].empty());
  EXPECT_EQ(last["usage"]["completion_tokens"], 25);
  EXPECT_EQ(last["usage"]["prompt_tokens"], 16);
}

TEST_F(ServerTest, ChatUsesTheTemplateAndStopsBeforeTheNextUserTurn) {
  const json req = {{"model", "gpt"},
                    {"messages", json::array({{{"role", "user"}, {"content", "what is 3?"}}})},
                    {"temperature", 0}};
  auto [s, j] = post("/v1/chat/completions", req.dump());
  ASSERT_EQ(s, 200) << j.dump();
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  const std::string prompt = "User: what is 3?\nAssistant:";
  std::string expected = greedy(prompt, 48 - int64_t(prompt.size()));
  const size_t cut = expected.find("\nUser:");
  if (cut != std::string::npos) expected = expected.substr(0, cut);
  EXPECT_EQ(j["choices"][0]["message"]["content"], expected);
  EXPECT_EQ(j["choices"][0]["finish_reason"], cut != std::string::npos ? "stop" : "length");
  EXPECT_EQ(j["usage"]["prompt_tokens"], int64_t(prompt.size()));
  EXPECT_EQ(j["usage"]["completion_tokens"], int64_t(expected.size()));

  json sreq = req;
  sreq["stream"] = true;
  auto c = client();
  auto r = c.Post("/v1/chat/completions", auth(), sreq.dump(), "application/json");
  ASSERT_TRUE(r);
  bool done = false;
  auto events = sse_events(r->body, &done);
  EXPECT_TRUE(done);
  std::string text;
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(events[0]["choices"][0]["delta"]["role"], "assistant");
  for (const json& e : events)
    if (e["choices"][0]["delta"].contains("content")) text += e["choices"][0]["delta"]["content"].get<std::string>();
  EXPECT_EQ(text, expected);
}

std::string base64(const std::string& bytes) {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | uint32_t(uint8_t(bytes[i + 1])) << 8 | uint8_t(bytes[i + 2]);
    for (int s : {18, 12, 6, 0}) out += k[(v >> s) & 63];
  }
  if (i + 1 == bytes.size()) {
    const uint32_t v = uint32_t(uint8_t(bytes[i])) << 16;
    out += std::string{k[(v >> 18) & 63], k[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == bytes.size()) {
    const uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | uint32_t(uint8_t(bytes[i + 1])) << 8;
    out += std::string{k[(v >> 18) & 63], k[(v >> 12) & 63], k[(v >> 6) & 63], '='};
  }
  return out;
}

// The same image as pixel arrays, as a base64 PNG, and through `mox predict` on the PNG file:
// the same probabilities.
TEST_F(ServerTest, ClassifyAgreesWithMoxPredict) {
  std::vector<float> px(784);
  for (int y = 0; y < 28; y++)
    for (int x = 0; x < 28; x++) px[size_t(y * 28 + x)] = float((y > 4 && y < 24 && x > 6 && x < 22) ? (100 + x * 5) : 0) / 255.0f;
  const std::string png = g_dir + "/item.png";
  data::write_png(png, from_vector(px, {1, 28, 28}));
  json rows = json::array();
  for (int y = 0; y < 28; y++) rows.push_back(std::vector<float>(px.begin() + y * 28, px.begin() + y * 28 + 28));

  auto [s, j] = post("/v1/classify", json{{"model", "fashion"}, {"input", json::array({rows, rows})}}.dump());
  ASSERT_EQ(s, 200) << j.dump();
  ASSERT_EQ(j["data"].size(), 2u);
  EXPECT_EQ(j["usage"]["classifications"], 2);
  auto [s2, k] = post("/v1/classify", json{{"model", "fashion"}, {"image", base64(mox::testing::slurp(png))}, {"top_k", 3}}.dump());
  ASSERT_EQ(s2, 200) << k.dump();
  EXPECT_EQ(k["data"][0]["probabilities"].size(), 3u);
  auto p = run_cli({"predict", "--model", g_dir + "/mlp", png, "--format", "json"});
  ASSERT_EQ(p.code, 0) << p.err;
  const json expected = json::parse(p.out)[0];
  double sum = 0;
  for (auto& [label, pr] : j["data"][0]["probabilities"].items()) {
    sum += pr.get<double>();
    EXPECT_NEAR(pr.get<double>(), expected["probabilities"][label].get<double>(), 1e-6) << label;
  }
  EXPECT_NEAR(sum, 1.0, 1e-4);
  EXPECT_EQ(j["data"][0]["label"], expected["class"]);
  EXPECT_EQ(j["data"][1]["label"], expected["class"]);
  EXPECT_EQ(k["data"][0]["label"], expected["class"]);
  EXPECT_NEAR(k["data"][0]["probability"].get<double>(), expected["probability"].get<double>(), 1e-6);
}

// Text classifiers take strings: the same probabilities as mox predict on the same lines.
TEST_F(ServerTest, ClassifyTextAgreesWithMoxPredict) {
  const std::vector<std::string> lines = {"Computers are useless. They can only give you answers.",
                                          "The senator said the vote would be close."};
  auto [s, j] = post("/v1/classify", json{{"model", "topics"}, {"input", lines}}.dump());
  ASSERT_EQ(s, 200) << j.dump();
  ASSERT_EQ(j["data"].size(), 2u);
  EXPECT_EQ(j["usage"]["classifications"], 2);
  const std::string file = g_dir + "/lines.txt";
  std::ofstream(file) << lines[0] << "\n" << lines[1] << "\n";
  auto p = run_cli({"predict", "--model", g_dir + "/gap", file, "--format", "json"});
  ASSERT_EQ(p.code, 0) << p.err;
  const json expected = json::parse(p.out);
  for (size_t i = 0; i < 2; i++) {
    EXPECT_EQ(j["data"][i]["label"], expected[i]["class"]);
    for (auto& [label, pr] : expected[i]["probabilities"].items())
      EXPECT_NEAR(j["data"][i]["probabilities"][label].get<double>(), pr.get<double>(), 1e-6) << label;
  }
  // One string works too; numbers do not.
  EXPECT_EQ(post("/v1/classify", json{{"model", "topics"}, {"input", lines[0]}}.dump()).first, 200);
  auto [bad, e] = post("/v1/classify", json{{"model", "topics"}, {"input", std::vector<double>{1, 2}}}.dump());
  EXPECT_EQ(bad, 400);
  EXPECT_EQ(e["error"]["param"], "input");
}

TEST_F(ServerTest, KeysAreChecked) {
  auto c = client();
  auto r = c.Post("/v1/completions", json{{"model", "gpt"}, {"prompt", "x"}}.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "missing_api_key");
  auto [s1, j1] = post("/v1/completions", json{{"model", "gpt"}, {"prompt", "x"}}.dump(), "mox-not-a-real-key");
  EXPECT_EQ(s1, 401);
  EXPECT_EQ(j1["error"]["code"], "invalid_api_key");
  const serve::NewKey k = server_->store().create_key("beta", {});
  auto [s2, j2] = post("/v1/completions", json{{"model", "gpt"}, {"prompt", "x"}, {"max_tokens", 2}}.dump(), k.secret);
  EXPECT_EQ(s2, 200) << j2.dump();
  server_->store().revoke_key(k.info.prefix);
  auto [s3, j3] = post("/v1/completions", json{{"model", "gpt"}, {"prompt", "x"}, {"max_tokens", 2}}.dump(), k.secret);
  EXPECT_EQ(s3, 401);
  EXPECT_NE(j3["error"]["message"].get<std::string>().find("revoked"), std::string::npos) << j3.dump();
  auto m = c.Get("/v1/models", auth());
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 200);
  const json models = json::parse(m->body);
  ASSERT_EQ(models["data"].size(), 3u);
  EXPECT_EQ(models["data"][0]["id"], "gpt");
  EXPECT_EQ(models["data"][1]["id"], "fashion");
  EXPECT_EQ(models["data"][1]["mox"]["kind"], "classifier");
  EXPECT_EQ(c.Get("/v1/models")->status, 401);
}

TEST_F(ServerTest, QuotasAndRateLimitsNameTheLimit) {
  serve::KeyLimits lim;
  lim.monthly_tokens = 40;
  const std::string q = server_->store().create_key("small", lim).secret;
  // 5 prompt + 10 completion tokens fit (estimate 15); the next needs 5 + 30 > 40 - 15.
  auto [s1, j1] = post("/v1/completions", json{{"model", "gpt"}, {"prompt", "User:"}, {"max_tokens", 10}}.dump(), q);
  ASSERT_EQ(s1, 200) << j1.dump();
  auto c = client();
  auto r = c.Post("/v1/completions", auth(q), json{{"model", "gpt"}, {"prompt", "User:"}, {"max_tokens", 30}}.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 429);
  const json e = json::parse(r->body);
  EXPECT_EQ(e["error"]["code"], "insufficient_quota");
  EXPECT_NE(e["error"]["message"].get<std::string>().find("monthly_tokens quota of 40"), std::string::npos) << e.dump();
  EXPECT_FALSE(r->get_header_value("Retry-After").empty());
  // A smaller request still fits.
  auto [s3, j3] = post("/v1/completions", json{{"model", "gpt"}, {"prompt", "User:"}, {"max_tokens", 5}}.dump(), q);
  EXPECT_EQ(s3, 200) << j3.dump();

  serve::KeyLimits rl;
  rl.rpm = 2;
  const std::string k = server_->store().create_key("burst", rl).secret;
  EXPECT_EQ(post("/v1/classify", json{{"model", "fashion"}, {"input", std::vector<double>(784, 0.1)}}.dump(), k).first, 200);
  EXPECT_EQ(post("/v1/classify", json{{"model", "fashion"}, {"input", std::vector<double>(784, 0.1)}}.dump(), k).first, 200);
  auto r3 = c.Post("/v1/classify", auth(k), json{{"model", "fashion"}, {"input", std::vector<double>(784, 0.1)}}.dump(), "application/json");
  ASSERT_TRUE(r3);
  EXPECT_EQ(r3->status, 429);
  EXPECT_NE(r3->body.find("rpm limit of 2"), std::string::npos) << r3->body;
  EXPECT_GE(std::stoi(r3->get_header_value("Retry-After")), 1);
}

// A corpus of malformed requests: each gets a JSON error with the right 4xx and names what
// is wrong; the server keeps serving.
TEST_F(ServerTest, MalformedRequestsGetOpenAIErrors) {
  struct Case {
    std::string path, body;
    int status;
    std::string param_or_code;  // expected error.param, else error.code, else "" (any)
  };
  const std::string big(70000, 'x');
  const std::vector<Case> cases = {
      {"/v1/completions", "", 400, ""},
      {"/v1/completions", "{", 400, ""},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"x\",}", 400, ""},
      {"/v1/completions", "[1, 2]", 400, ""},
      {"/v1/completions", "\"just a string\"", 400, ""},
      {"/v1/completions", "null", 400, ""},
      {"/v1/completions", "{\"prompt\": \"x\"}", 400, "model"},
      {"/v1/completions", "{\"model\": 5, \"prompt\": \"x\"}", 400, "model"},
      {"/v1/completions", "{\"model\": \"gpt\"}", 400, "prompt"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": 12}", 400, "prompt"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": []}", 400, "prompt"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": [\"a\", 3]}", 400, "prompt"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": [[1, -2]]}", 400, "prompt"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": [99999]}", 400, "prompt"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"\"}", 400, "prompt"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"x\", \"max_tokens\": \"10\"}", 400, "max_tokens"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"x\", \"max_tokens\": 0}", 400, "max_tokens"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"x\", \"max_tokens\": 1.5}", 400, "max_tokens"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"x\", \"max_tokens\": 100000}", 400, "context_length_exceeded"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"x\", \"temperature\": -1}", 400, "temperature"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"x\", \"temperature\": \"hot\"}", 400, "temperature"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"x\", \"top_p\": 1.5}", 400, "top_p"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"x\", \"n\": 0}", 400, "n"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"x\", \"n\": 1000}", 400, "n"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"x\", \"stop\": 5}", 400, "stop"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"x\", \"stop\": [\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400, "stop"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"x\", \"seed\": \"s\"}", 400, "seed"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"x\", \"stream\": \"yes\"}", 400, "stream"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"x\", \"stream_options\": {\"include_usage\": true}}", 400, "stream_options"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"x\", \"logprobs\": 5}", 400, "logprobs"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"x\", \"best_of\": 3}", 400, "best_of"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"x\", \"frequency_penalty\": 1}", 400, "frequency_penalty"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"x\", \"colour\": \"red\"}", 400, "colour"},
      {"/v1/completions", "{\"model\": \"nope\", \"prompt\": \"x\"}", 404, "model_not_found"},
      {"/v1/completions", "{\"model\": \"fashion\", \"prompt\": \"x\"}", 400, "model"},
      {"/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"" + big + "\"}", 413, "request_too_large"},
      {"/v1/chat/completions", "{\"model\": \"gpt\"}", 400, "messages"},
      {"/v1/chat/completions", "{\"model\": \"gpt\", \"messages\": \"hi\"}", 400, "messages"},
      {"/v1/chat/completions", "{\"model\": \"gpt\", \"messages\": []}", 400, "messages"},
      {"/v1/chat/completions", "{\"model\": \"gpt\", \"messages\": [{\"content\": \"hi\"}]}", 400, "messages[0].role"},
      {"/v1/chat/completions", "{\"model\": \"gpt\", \"messages\": [{\"role\": \"tool\", \"content\": \"hi\"}]}", 400, "messages[0].role"},
      {"/v1/chat/completions", "{\"model\": \"gpt\", \"messages\": [{\"role\": \"user\"}]}", 400, "messages[0].content"},
      {"/v1/chat/completions", "{\"model\": \"gpt\", \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}", 400, "messages[0].content"},
      {"/v1/chat/completions", "{\"model\": \"gpt\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tools\": [{}]}", 400, "tools"},
      {"/v1/chat/completions", "{\"model\": \"gpt\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"prompt\": \"y\"}", 400, "prompt"},
      {"/v1/classify", "{\"model\": \"fashion\"}", 400, "input"},
      {"/v1/classify", "{\"model\": \"fashion\", \"input\": 5}", 400, "input"},
      {"/v1/classify", "{\"model\": \"fashion\", \"input\": \"a shirt\"}", 400, "input"},
      {"/v1/classify", "{\"model\": \"fashion\", \"input\": [1, 2, 3]}", 400, "input"},
      {"/v1/classify", "{\"model\": \"fashion\", \"input\": [[1, 2], [3]]}", 400, "input"},
      {"/v1/classify", "{\"model\": \"fashion\", \"input\": [\"a\", \"b\"]}", 400, "input"},
      {"/v1/classify", "{\"model\": \"fashion\", \"image\": \"!!!not base64\"}", 400, "image"},
      {"/v1/classify", "{\"model\": \"fashion\", \"image\": \"aGVsbG8=\"}", 400, "image"},
      {"/v1/classify", "{\"model\": \"fashion\", \"image\": 7}", 400, "image"},
      {"/v1/classify", "{\"model\": \"fashion\", \"input\": [0.1], \"image\": \"aGVsbG8=\"}", 400, "image"},
      {"/v1/classify", "{\"model\": \"fashion\", \"input\": [0.1], \"top_k\": -1}", 400, "top_k"},
      {"/v1/classify", "{\"model\": \"gpt\", \"input\": \"x\"}", 400, "model"},
      {"/v1/nowhere", "{}", 404, "unknown_url"},
  };
  auto c = client();
  for (const Case& k : cases) {
    auto r = c.Post(k.path.c_str(), auth(), k.body, "application/json");
    ASSERT_TRUE(r) << "no response (crash?) for " << k.path << " " << k.body.substr(0, 80);
    EXPECT_EQ(r->status, k.status) << k.path << " " << k.body.substr(0, 80) << " -> " << r->body;
    const json e = json::parse(r->body, nullptr, false);
    ASSERT_FALSE(e.is_discarded()) << "not JSON: " << r->body;
    ASSERT_TRUE(e.contains("error")) << r->body;
    EXPECT_TRUE(e["error"]["message"].is_string() && !e["error"]["message"].get<std::string>().empty());
    EXPECT_TRUE(e["error"]["type"].is_string());
    if (!k.param_or_code.empty()) {
      const bool named = e["error"]["param"] == k.param_or_code || e["error"]["code"] == k.param_or_code;
      EXPECT_TRUE(named) << k.body.substr(0, 80) << " -> " << r->body;
    }
  }
  // Still serving, and each request with a valid key was metered once (the 404 of an unknown
  // URL and the 413 never reach a handler).
  EXPECT_EQ(post("/v1/completions", json{{"model", "gpt"}, {"prompt", "x"}, {"max_tokens", 3}}.dump()).first, 200);
  EXPECT_EQ(server_->store().row_count(), int64_t(cases.size()) - 2 + 1);
  auto h = c.Get("/healthz");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
}

// Many parallel clients: every token in a response is metered, once, and nothing else.
TEST_F(ServerTest, MeteringUnderConcurrencyMatchesTheResponses) {
  constexpr int kClients = 12, kEach = 4;
  std::atomic<int64_t> tokens{0}, classified{0}, ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kClients; t++)
    threads.emplace_back([&, t] {
      auto c = client();
      for (int i = 0; i < kEach; i++) {
        const int kind = (t + i) % 3;
        if (kind == 0) {
          auto r = c.Post("/v1/completions", auth(),
                          json{{"model", "gpt"}, {"prompt", "User: " + std::to_string(t)}, {"max_tokens", 5 + i}, {"n", 1 + i % 2}}.dump(),
                          "application/json");
          if (r && r->status == 200) {
            tokens += json::parse(r->body)["usage"]["total_tokens"].get<int64_t>();
            ok++;
          }
        } else if (kind == 1) {
          auto r = c.Post("/v1/chat/completions", auth(),
                          json{{"model", "gpt"}, {"messages", json::array({{{"role", "user"}, {"content", "hi " + std::to_string(i)}}})},
                               {"max_tokens", 8}, {"stream", true}, {"stream_options", {{"include_usage", true}}}}.dump(),
                          "application/json");
          if (r && r->status == 200) {
            bool done = false;
            auto ev = sse_events(r->body, &done);
            if (done && !ev.empty() && ev.back().contains("usage") && ev.back()["usage"].is_object()) {
              tokens += ev.back()["usage"]["total_tokens"].get<int64_t>();
              ok++;
            }
          }
        } else {
          auto r = c.Post("/v1/classify", auth(), json{{"model", "fashion"}, {"input", std::vector<double>(784, 0.01 * i)}}.dump(),
                          "application/json");
          if (r && r->status == 200) {
            classified += json::parse(r->body)["usage"]["classifications"].get<int64_t>();
            ok++;
          }
        }
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), kClients * kEach);
  const auto usage = server_->store().usage(serve::month_of(serve::utc_now_iso()), "acme");
  int64_t metered_tokens = 0, metered_classified = 0, requests = 0;
  for (const auto& u : usage) {
    metered_tokens += u.prompt_tokens + u.completion_tokens;
    metered_classified += u.classifications;
    requests += u.requests;
  }
  EXPECT_EQ(metered_tokens, tokens.load());
  EXPECT_EQ(metered_classified, classified.load());
  EXPECT_EQ(requests, kClients * kEach);
  EXPECT_EQ(server_->store().row_count(), kClients * kEach);
  // /metrics agrees.
  auto m = client().Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("mox_requests_total{model=\"fashion\",endpoint=\"/v1/classify\",status=\"200\"}"), std::string::npos);
  EXPECT_NE(m->body.find("mox_request_duration_seconds_bucket{model=\"gpt\",endpoint=\"/v1/completions\",le=\"+Inf\"}"),
            std::string::npos);
  EXPECT_NE(m->body.find("mox_queue_depth{model=\"gpt\"}"), std::string::npos);
  EXPECT_EQ(server_->metrics().requests_total(), kClients * kEach);
}

// Beyond max_queue requests in progress, the next one gets 429 with Retry-After (and is
// metered with no tokens).
TEST_F(ServerTest, FullQueueAnswers429WithRetryAfter) {
  start(/*max_queue=*/1);
  int rejected = 0, served = 0;
  for (int round = 0; round < 5 && rejected == 0; round++) {
    std::vector<std::thread> threads;
    std::mutex mu;
    for (int t = 0; t < 8; t++)
      threads.emplace_back([&] {
        auto c = client();
        auto r = c.Post("/v1/completions", auth(), json{{"model", "gpt"}, {"prompt", "User:"}, {"max_tokens", 40}, {"n", 8}}.dump(),
                        "application/json");
        std::lock_guard<std::mutex> lock(mu);
        if (r && r->status == 429) {
          rejected++;
          EXPECT_EQ(r->get_header_value("Retry-After"), "1");
          EXPECT_EQ(json::parse(r->body)["error"]["code"], "server_overloaded");
        } else if (r && r->status == 200) {
          served++;
        }
      });
    for (auto& th : threads) th.join();
  }
  EXPECT_GT(rejected, 0);
  EXPECT_GT(served, 0);
}

// A second server on a port in use fails to start (no silent port sharing).
TEST_F(ServerTest, APortInUseIsAnError) {
  serve::ServerOptions o;
  o.models = {g_dir + "/gpt"};
  o.port = server_->port();
  o.db_path = g_dir + "/usage-second.sqlite";
  o.quiet = true;
  serve::Server second(o);
  bool threw = false;
  try {
    second.start();
  } catch (const Error& e) {
    threw = true;
    EXPECT_NE(std::string(e.what()).find("cannot listen"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(threw);
}

// A streaming client that goes away: the stream is cancelled and metered once, with status
// 499 and the tokens that were sent; the server goes on serving.
TEST_F(ServerTest, AStreamWhoseClientLeavesIsMeteredAs499) {
  const std::string body = json{{"model", "gpt"}, {"prompt", "User:"}, {"max_tokens", 43}, {"n", 16}, {"stream", true}}.dump();
  const std::string request = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + key_ +
                              "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                              "\r\n\r\n" + body;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(server_->port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::send(fd, request.data(), request.size(), 0), ssize_t(request.size()));
  ::close(fd);  // before reading anything
  std::vector<serve::UsageTotal> usage;
  for (int i = 0; i < 500; i++) {
    usage = server_->store().usage(serve::month_of(serve::utc_now_iso()), "acme");
    if (!usage.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(usage.size(), 1u);
  EXPECT_EQ(usage[0].requests, 1);
  EXPECT_EQ(usage[0].errors, 1);  // status 499
  EXPECT_LT(usage[0].completion_tokens, 16 * 43);
  EXPECT_EQ(server_->store().row_count(), 1);
  EXPECT_EQ(post("/v1/completions", json{{"model", "gpt"}, {"prompt", "x"}, {"max_tokens", 3}}.dump()).first, 200);
}

// A request that takes longer than the time limit is answered 504 (and metered with no
// tokens); its sequences are cancelled.
TEST_F(ServerTest, TimeLimitAnswers504) {
  start(/*max_queue=*/256, /*timeout_s=*/0.002);
  auto [s, j] = post("/v1/completions", json{{"model", "gpt"}, {"prompt", "User:"}, {"max_tokens", 40}, {"n", 16}}.dump());
  EXPECT_EQ(s, 504) << j.dump();
  EXPECT_EQ(j["error"]["code"], "timeout");
  const auto usage = server_->store().usage(serve::month_of(serve::utc_now_iso()), "acme");
  ASSERT_EQ(usage.size(), 1u);
  EXPECT_EQ(usage[0].errors, 1);
  EXPECT_EQ(usage[0].prompt_tokens + usage[0].completion_tokens, 0);
}

// stop() lets a request in flight finish; its usage row is written.
TEST_F(ServerTest, GracefulShutdownFinishesAndMetersInFlightRequests) {
  std::atomic<int> status{0};
  std::thread t([&] {
    auto c = client();
    auto r = c.Post("/v1/completions", auth(), json{{"model", "gpt"}, {"prompt", "User:"}, {"max_tokens", 40}, {"n", 16}}.dump(),
                    "application/json");
    status = r ? r->status : -1;
  });
  // Stop once the request is in the server (admitted, generating).
  for (int i = 0; i < 5000 && server_->metrics().text().find("mox_inflight_requests 1") == std::string::npos; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  server_->stop();
  server_->wait();
  t.join();
  EXPECT_EQ(status.load(), 200);
  EXPECT_EQ(server_->store().row_count(), 1);
  server_.reset();
}

// mox bench-serve on a GPT run (in-process server, batched and not): every answered request
// metered, and its JSON is what mox cost serve reads.
TEST_F(ServerTest, BenchServeMeasuresAndFeedsMoxCost) {
  const std::string out = g_dir + "/bench_serve.json";
  auto r = run_cli({"bench-serve", "--model", g_dir + "/gpt", "--concurrency", "1,4", "--duration", "0.5", "--max-tokens", "8",
                    "--prompt", "User: what", "--compare-unbatched", "--out", out});
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(mox::testing::slurp(out));
  EXPECT_EQ(j["model"], "gpt");
  EXPECT_EQ(j["endpoint"], "/v1/completions");
  ASSERT_EQ(j["results"].size(), 4u);
  for (const json& x : j["results"]) {
    EXPECT_GT(x["requests"].get<int64_t>(), 0) << x.dump();
    EXPECT_EQ(x["errors"], 0);
    EXPECT_EQ(x["failed"], 0);
    EXPECT_EQ(x["unmetered"], 0);
    EXPECT_EQ(x["completion_tokens"].get<int64_t>(), 8 * x["requests"].get<int64_t>());
    EXPECT_EQ(x["prompt_tokens"].get<int64_t>(), 10 * x["requests"].get<int64_t>());
    EXPECT_LE(x["latency_ms"]["p50"].get<double>(), x["latency_ms"]["p99"].get<double>());
  }
  EXPECT_TRUE(j["results"][0]["batching"].get<bool>());
  EXPECT_FALSE(j["results"][3]["batching"].get<bool>());
  std::ofstream(g_dir + "/prices.toml") << "currency = \"USD\"\n[models.gpt]\nprompt_per_1m = 1.0\ncompletion_per_1m = 2.0\n";
  auto c = run_cli({"cost", "serve", "--bench", out, "--prices", g_dir + "/prices.toml", "--requests-per-month", "100000",
                    "--format", "json"});
  ASSERT_EQ(c.code, 0) << c.err;
  const json cost = json::parse(c.out, nullptr, false);
  ASSERT_FALSE(cost.is_discarded()) << c.out;
  EXPECT_NE(c.out.find("break_even"), std::string::npos) << c.out;
}
