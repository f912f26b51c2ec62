// `mox serve` as a user runs it (a process on a free port, keys made with `mox keys`), talked
// to by the official OpenAI npm client (completions, chat, streams, and its error classes
// for a revoked key, an exhausted quota, an unknown model, bad parameters) and by curl; then
// SIGTERM, a clean exit, and `mox usage` showing exactly the tokens the responses reported.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

#include "../cli/run_cli.h"
#include "server_fixture.h"

using json = nlohmann::json;
using mox::testing::run_cli;
using mox::testing::run_program;
using mox::testing::slurp;
namespace fs = std::filesystem;

namespace {

// `mox serve` in the background; the port is read from its first line on stderr.
struct ServeProcess {
  pid_t pid = -1;
  int port = 0;
  std::string err_path;
  ServeProcess(const std::vector<std::string>& args, const std::string& err) : err_path(err) {
    pid = ::fork();
    if (pid == 0) {
      int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(e, 2);
      std::vector<std::string> copy = args;
      std::vector<char*> argv;
      std::string exe = MOX_CLI_PATH;
      argv.push_back(exe.data());
      for (auto& a : copy) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(exe.c_str(), argv.data());
      ::_exit(127);
    }
    const std::regex re("http://[0-9.]+:([0-9]+)");
    for (int i = 0; i < 600 && port == 0; i++) {
      std::smatch m;
      const std::string text = slurp(err);
      if (std::regex_search(text, m, re)) port = std::stoi(m[1]);
      else std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  // SIGTERM, then the exit code.
  int stop() {
    if (pid <= 0) return -1;
    ::kill(pid, SIGTERM);
    int status = 0;
    ::waitpid(pid, &status, 0);
    pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  ~ServeProcess() {
    if (pid > 0) stop();
  }
};

std::string new_key(const std::string& db, const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"keys", "create", "--db", db, "--format", "json"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto r = run_cli(args);
  EXPECT_EQ(r.code, 0) << r.err;
  return json::parse(r.out)["key"];
}

}  // namespace

TEST(ServeProcess, OpenAIClientAndCurlThenUsageMatches) {
  const std::string node = "/usr/bin/node";
  const std::string module = std::string(MOX_SOURCE_DIR) + "/third_party_data/npm/node_modules/openai";
  const std::string dir = (fs::temp_directory_path() / ("mox_serve_proc." + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  mox::testing::make_server_runs(dir);
  const std::string db = dir + "/usage.sqlite";
  const std::string key = new_key(db, {"--customer", "acme"});
  const std::string revoked = new_key(db, {"--customer", "gone"});
  ASSERT_EQ(run_cli({"keys", "revoke", "--db", db, revoked.substr(0, 12)}).code, 0);
  const std::string small = new_key(db, {"--customer", "small", "--monthly-tokens", "40"});

  ServeProcess serve({"serve", "--model", dir + "/gpt", "--model", "fashion=" + dir + "/mlp", "--port", "0", "--db", db},
                     dir + "/serve.err");
  ASSERT_GT(serve.port, 0) << slurp(dir + "/serve.err");
  const std::string base = "http://127.0.0.1:" + std::to_string(serve.port);
  int64_t acme_tokens = 0;

  // curl: a completion, a classification, and a malformed body.
  auto c = run_program("/usr/bin/curl", {"-s", "-H", "Authorization: Bearer " + key, "-H", "Content-Type: application/json",
                                         "-d", R"({"model": "gpt", "prompt": "User: what is 2?", "max_tokens": 6, "temperature": 0})",
                                         base + "/v1/completions"});
  ASSERT_EQ(c.code, 0) << c.err;
  const json cj = json::parse(c.out);
  EXPECT_EQ(cj["usage"]["completion_tokens"], 6);
  acme_tokens += cj["usage"]["total_tokens"].get<int64_t>();
  auto k = run_program("/usr/bin/curl", {"-s", "-H", "Authorization: Bearer " + key, "-d",
                                         json{{"model", "fashion"}, {"input", std::vector<double>(784, 0.2)}}.dump(),
                                         base + "/v1/classify"});
  ASSERT_EQ(k.code, 0);
  EXPECT_EQ(json::parse(k.out)["usage"]["classifications"], 1);
  auto bad = run_program("/usr/bin/curl", {"-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer " + key,
                                           "-d", "{\"model\": \"gpt\", \"prompt\": ", base + "/v1/completions"});
  EXPECT_EQ(bad.out, "400");

  if (!fs::exists(node) || !fs::exists(module + "/package.json")) {
    serve.stop();
    fs::remove_all(dir);
    GTEST_SKIP() << "node or the npm package openai is missing (scripts/setup-npm installs it)";
  }
  auto r = run_program(node, {std::string(MOX_SOURCE_DIR) + "/tests/server/openai_client.js", module, base + "/v1", key,
                              revoked, small, "gpt"});
  ASSERT_EQ(r.code, 0) << r.err << "\nserver: " << slurp(dir + "/serve.err");
  const json o = json::parse(r.out);
  EXPECT_EQ(o["models"], json::array({"gpt", "fashion"}));
  EXPECT_EQ(o["completion"]["object"], "text_completion");
  EXPECT_EQ(o["completion"]["usage"]["completion_tokens"], 10);
  EXPECT_EQ(o["completion"]["usage"]["prompt_tokens"], 16);
  EXPECT_EQ(o["completionStream"]["text"], o["completion"]["text"]);
  EXPECT_EQ(o["chat"]["role"], "assistant");
  EXPECT_EQ(o["stream"]["text"], o["chat"]["content"]);
  EXPECT_GE(o["stream"]["chunks"].get<int>(), 2);
  EXPECT_EQ(o["stream"]["usage"]["total_tokens"], o["chat"]["usage"]["total_tokens"]);
  acme_tokens += o["completion"]["usage"]["total_tokens"].get<int64_t>() + o["chat"]["usage"]["total_tokens"].get<int64_t>() +
                 o["stream"]["usage"]["total_tokens"].get<int64_t>();
  // The completion stream has no usage chunk (not asked for): its tokens are the same as
  // the plain completion's (greedy).
  acme_tokens += o["completion"]["usage"]["total_tokens"].get<int64_t>();

  EXPECT_EQ(o["revoked"]["status"], 401);
  EXPECT_EQ(o["revoked"]["name"], "AuthenticationError");
  EXPECT_EQ(o["quotaFirst"]["status"], 0) << o.dump();
  EXPECT_EQ(o["quotaSecond"]["status"], 429);
  EXPECT_EQ(o["quotaSecond"]["name"], "RateLimitError");
  EXPECT_NE(o["quotaSecond"]["message"].get<std::string>().find("monthly_tokens"), std::string::npos);
  EXPECT_EQ(o["unknownModel"]["status"], 404);
  EXPECT_EQ(o["unknownModel"]["name"], "NotFoundError");
  EXPECT_EQ(o["badParam"]["status"], 400);
  EXPECT_EQ(o["badParam"]["name"], "BadRequestError");
  EXPECT_EQ(o["badParam"]["param"], "temperature");
  EXPECT_EQ(o["tooLong"]["code"], "context_length_exceeded");

  EXPECT_EQ(serve.stop(), 0) << slurp(dir + "/serve.err");
  EXPECT_NE(slurp(dir + "/serve.err").find("stopped"), std::string::npos);
  auto u = run_cli({"usage", "--db", db, "--customer", "acme", "--format", "json"});
  ASSERT_EQ(u.code, 0) << u.err;
  const json uj = json::parse(u.out);
  int64_t metered = 0, classified = 0;
  for (const json& row : uj["usage"]) {
    metered += row["prompt_tokens"].get<int64_t>() + row["completion_tokens"].get<int64_t>();
    classified += row["classifications"].get<int64_t>();
  }
  EXPECT_EQ(metered, acme_tokens) << u.out;
  EXPECT_EQ(classified, 1);
  fs::remove_all(dir);
}
