#include "mox/data/text/token_file.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>

#include "mox/tensor/error.h"

namespace mox::data {

namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'M', 'O', 'X', 'T', 'O', 'K', '1', '\0'};
constexpr size_t kHeader = 64;

template <typename T> void put(std::string& s, size_t at, T v) { std::memcpy(s.data() + at, &v, sizeof v); }
template <typename T> T get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

void TokenFile::write(const std::string& path, std::span<const int32_t> ids, int64_t vocab_size) {
  MOX_CHECK(vocab_size >= 1, path, "vocab_size must be >= 1");
  const bool wide = vocab_size > 65536;
  const size_t width = wide ? 4 : 2;
  std::string buf(kHeader + ids.size() * width, '\0');
  std::memcpy(buf.data(), kMagic, 8);
  put<uint32_t>(buf, 8, uint32_t(width));
  put<uint64_t>(buf, 16, uint64_t(ids.size()));
  put<uint64_t>(buf, 24, uint64_t(vocab_size));
  for (size_t i = 0; i < ids.size(); i++) {
    const int32_t id = ids[i];
    MOX_CHECK(id >= 0 && id < vocab_size, path,
              "token " + std::to_string(i) + " has id " + std::to_string(id) + " outside [0, " +
                  std::to_string(vocab_size) + ")");
    if (wide) put<int32_t>(buf, kHeader + 4 * i, id);
    else put<uint16_t>(buf, kHeader + 2 * i, uint16_t(id));
  }
  io::write_file_atomic(path, buf);
}

TokenFile TokenFile::open(const std::string& path) {
  TokenFile f;
  f.map_ = io::MappedFile::open(path);
  const uint8_t* p = f.map_->data();
  const size_t n = f.map_->size();
  MOX_CHECK(n >= kHeader && std::memcmp(p, kMagic, 8) == 0, path, "not a mox token file (bad header)");
  const uint32_t width = get<uint32_t>(p + 8);
  MOX_CHECK(width == 2 || width == 4, path, "bad id width " + std::to_string(width));
  f.count_ = int64_t(get<uint64_t>(p + 16));
  f.vocab_ = int64_t(get<uint64_t>(p + 24));
  f.wide_ = width == 4;
  MOX_CHECK(n == kHeader + size_t(f.count_) * width, path,
            "size " + std::to_string(n) + " does not match " + std::to_string(f.count_) + " ids");
  f.ids_ = p + kHeader;
  return f;
}

void TokenFile::copy(int64_t start, int64_t n, int64_t* out) const {
  MOX_CHECK(start >= 0 && n >= 0 && start + n <= count_, path(),
            "window [" + std::to_string(start) + ", " + std::to_string(start + n) + ") is outside " +
                std::to_string(count_) + " tokens");
  if (wide_) {
    const int32_t* s = reinterpret_cast<const int32_t*>(ids_) + start;
    for (int64_t j = 0; j < n; j++) out[j] = s[j];
  } else {
    const uint16_t* s = reinterpret_cast<const uint16_t*>(ids_) + start;
    for (int64_t j = 0; j < n; j++) out[j] = s[j];
  }
}

std::vector<std::string> english_fortune_files(const std::string& dir) {
  static const std::set<std::string> kNotEnglish = {"chinese", "song100", "tang300"};
  MOX_CHECK(fs::is_directory(dir), dir, "fortune folder not found (apt-get install fortunes)");
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.find('.') != std::string::npos || kNotEnglish.count(name) || !e.is_regular_file()) continue;
    out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  MOX_CHECK(!out.empty(), dir, "no fortune files (apt-get install fortunes)");
  return out;
}

CorpusText read_corpus(const CorpusSource& source) {
  CorpusText c;
  if (source.kind == "fortunes") {
    for (const auto& path : english_fortune_files(source.fortune_dir)) {
      const std::string name = fs::path(path).filename().string();
      if (std::find(source.exclude.begin(), source.exclude.end(), name) == source.exclude.end()) c.files.push_back(path);
    }
    for (const auto& name : source.exclude)
      MOX_CHECK(fs::exists(fs::path(source.fortune_dir) / name), source.fortune_dir,
                "exclude names \"" + name + "\", which is not a fortune file here");
    MOX_CHECK(!c.files.empty(), source.fortune_dir, "every fortune file is excluded");
    for (const auto& path : c.files) {
      // As the reference script reads them: split at '\n' (a final newline leaves an empty
      // last piece), drop the lines that are "%" up to whitespace, end each kept line with '\n'.
      const std::string text = io::read_file(path);
      size_t pos = 0;
      while (true) {
        const size_t nl = text.find('\n', pos);
        const std::string_view line(text.data() + pos, (nl == std::string::npos ? text.size() : nl) - pos);
        const size_t a = line.find_first_not_of(" \t\r\v\f"), b = line.find_last_not_of(" \t\r\v\f");
        const bool separator = a != std::string_view::npos && a == b && line[a] == '%';
        if (!separator) {
          c.text += line;
          c.text += '\n';
        }
        if (nl == std::string::npos) break;
        pos = nl + 1;
      }
    }
  } else if (source.kind == "files") {
    MOX_CHECK(!source.files.empty(), "corpus", "source \"files\" needs a non-empty files list");
    for (const auto& f : source.files) {
      if (fs::is_directory(f)) {
        std::vector<std::string> inside;
        for (const auto& e : fs::recursive_directory_iterator(f))
          if (e.is_regular_file()) inside.push_back(e.path().string());
        std::sort(inside.begin(), inside.end());
        MOX_CHECK(!inside.empty(), f, "folder holds no files");
        c.files.insert(c.files.end(), inside.begin(), inside.end());
      } else {
        MOX_CHECK(fs::is_regular_file(f), f, "corpus file not found");
        c.files.push_back(f);
      }
    }
    for (const auto& path : c.files) c.text += io::read_file(path);
  } else {
    throw Error("corpus", "source must be \"fortunes\" or \"files\", got \"" + source.kind + "\"");
  }
  MOX_CHECK(!c.text.empty(), "corpus", "the corpus is empty");
  return c;
}

}  // namespace mox::data
