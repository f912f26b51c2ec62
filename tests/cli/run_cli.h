#pragma once
// Runs the built `mox` executable (MOX_CLI_PATH) with arguments and captures its exit code,
// stdout and stderr separately (fork + exec, no shell, so arguments need no quoting).
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace mox::testing {

struct CliResult {
  int code = -1;
  std::string out, err;
};

inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Runs `exe` (a path) with args; stdin_text, when given, is what it reads on stdin (else it
// inherits ours).
inline CliResult run_program(const std::string& exe_path, const std::vector<std::string>& args,
                             const std::string* stdin_text = nullptr) {
  static int n = 0;
  std::string base = std::filesystem::temp_directory_path().string() + "/mox_cli_test." +
                     std::to_string(::getpid()) + "." + std::to_string(n++);
  std::string out_path = base + ".out", err_path = base + ".err", in_path = base + ".in";
  if (stdin_text) std::ofstream(in_path, std::ios::binary) << *stdin_text;
  pid_t pid = ::fork();
  if (pid == 0) {
    if (stdin_text) ::dup2(::open(in_path.c_str(), O_RDONLY), 0);
    int o = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int e = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(o, 1);
    ::dup2(e, 2);
    std::vector<char*> argv;
    std::string exe = exe_path;
    argv.push_back(exe.data());
    std::vector<std::string> copy = args;
    for (std::string& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(exe.c_str(), argv.data());
    ::_exit(127);
  }
  CliResult r;
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out_path);
  r.err = slurp(err_path);
  std::filesystem::remove(out_path);
  std::filesystem::remove(err_path);
  if (stdin_text) std::filesystem::remove(in_path);
  return r;
}

// The built mox with args.
inline CliResult run_cli(const std::vector<std::string>& args, const std::string* stdin_text = nullptr) {
  return run_program(MOX_CLI_PATH, args, stdin_text);
}

// Writes text to a fresh file in the temp directory and returns its path.
inline std::string write_temp(const std::string& name, const std::string& text) {
  std::string dir = std::filesystem::temp_directory_path().string() + "/mox_cli_test." +
                    std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// Lines of s (without the trailing empty one).
inline std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < s.size()) {
    size_t end = s.find('\n', start);
    if (end == std::string::npos) end = s.size();
    out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace mox::testing
