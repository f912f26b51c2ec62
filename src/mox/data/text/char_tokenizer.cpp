#include "mox/data/text/char_tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "mox/data/text/bpe.h"
#include "mox/tensor/error.h"

namespace mox::data {

namespace {

namespace fs = std::filesystem;
constexpr uint32_t kInvalid = 0xFFFFFFFFu;


}  // namespace

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

std::vector<uint32_t> utf8_codepoints(std::string_view text) {
  std::vector<uint32_t> out;
  out.reserve(text.size());
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      out.push_back(c);
      i++;
      continue;
    }
    uint32_t cp;
    size_t need;
    if (c >= 0xC2 && c <= 0xDF) { cp = c & 0x1F; need = 1; }
    else if (c >= 0xE0 && c <= 0xEF) { cp = c & 0x0F; need = 2; }
    else if (c >= 0xF0 && c <= 0xF4) { cp = c & 0x07; need = 3; }
    else { out.push_back(kInvalid); i++; continue; }
    bool ok = true;
    for (size_t k = 1; k <= need; k++) {
      if (i + k >= n || (s[i + k] & 0xC0) != 0x80) { ok = false; break; }
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (ok && ((need == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
               (need == 3 && (cp < 0x10000 || cp > 0x10FFFF))))
      ok = false;
    if (!ok) { out.push_back(kInvalid); i++; continue; }
    out.push_back(cp);
    i += need + 1;
  }
  return out;
}

CharTokenizer CharTokenizer::bytes() { return CharTokenizer(); }

CharTokenizer CharTokenizer::train(const std::vector<std::string>& texts) {
  std::set<uint32_t> seen;
  for (const std::string& t : texts)
    for (uint32_t cp : utf8_codepoints(t))
      if (cp != kInvalid) seen.insert(cp);
  CharTokenizer t;
  t.byte_level_ = false;
  t.chars_.assign(seen.begin(), seen.end());
  for (size_t i = 0; i < t.chars_.size(); i++) t.ids_[t.chars_[i]] = int32_t(i + 1);
  return t;
}

CharTokenizer CharTokenizer::load(const std::string& dir) {
  const fs::path path = fs::path(dir) / "tokenizer.json";
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path.string(), "cannot open (missing file?)");
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(f);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(path.string(), std::string("invalid JSON: ") + e.what());
  }
  if (!doc.is_object() || !doc.contains("type") || !doc["type"].is_string())
    throw Error(path.string(), "expected an object with a string \"type\"");
  const std::string type = doc["type"].get<std::string>();
  if (type == "byte") return bytes();
  if (type != "char")
    throw Error(path.string() + ": type", "expected \"byte\" or \"char\", got \"" + type + "\"");
  if (!doc.contains("chars") || !doc["chars"].is_array())
    throw Error(path.string() + ": chars", "expected an array of code points");
  CharTokenizer t;
  t.byte_level_ = false;
  for (const auto& v : doc["chars"]) {
    if (!v.is_number_unsigned() || v.get<uint64_t>() > 0x10FFFF)
      throw Error(path.string() + ": chars", "expected code points in [0, 0x10FFFF], got " + v.dump());
    const uint32_t cp = v.get<uint32_t>();
    if (!t.ids_.emplace(cp, int32_t(t.chars_.size() + 1)).second)
      throw Error(path.string() + ": chars", "code point " + std::to_string(cp) + " appears twice");
    t.chars_.push_back(cp);
  }
  return t;
}

std::vector<int32_t> CharTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out;
  if (byte_level_) {
    out.reserve(text.size());
    for (unsigned char c : text) out.push_back(int32_t(c));
    return out;
  }
  for (uint32_t cp : utf8_codepoints(text)) {
    const auto it = ids_.find(cp);
    out.push_back(it == ids_.end() ? kUnknown : it->second);
  }
  return out;
}

std::string CharTokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  const int64_t v = vocab_size();
  for (int32_t id : ids) {
    MOX_CHECK(id >= 0 && id < v, "decode",
              "token id " + std::to_string(id) + " outside [0, " + std::to_string(v) + ")");
    if (byte_level_) out += char(uint8_t(id));
    else append_utf8(out, id == kUnknown ? 0xFFFD : chars_[size_t(id - 1)]);
  }
  return out;
}

int64_t CharTokenizer::vocab_size() const {
  return byte_level_ ? 256 : int64_t(chars_.size()) + 1;
}

void CharTokenizer::save(const std::string& dir) const {
  fs::create_directories(dir);
  nlohmann::json doc;
  doc["type"] = kind();
  if (!byte_level_) doc["chars"] = chars_;
  const fs::path path = fs::path(dir) / "tokenizer.json";
  std::ofstream f(path, std::ios::binary);
  if (!f) throw Error(path.string(), "cannot write");
  f << doc.dump() << "\n";
}

std::unique_ptr<TextTokenizer> load_text_tokenizer(const std::string& dir) {
  const fs::path d(dir);
  if (fs::exists(d / "encoder.json") || fs::exists(d / "vocab.bpe") ||
      (fs::exists(d / "vocab.json") && fs::exists(d / "merges.txt")))
    return std::make_unique<BpeTokenizer>(BpeTokenizer::load(dir));
  if (fs::exists(d / "tokenizer.json")) return std::make_unique<CharTokenizer>(CharTokenizer::load(dir));
  throw Error(dir, "no tokenizer here (expected encoder.json + vocab.bpe, vocab.json + merges.txt, or tokenizer.json)");
}

}  // namespace mox::data
