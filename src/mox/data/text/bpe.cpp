#include "mox/data/text/bpe.h"
#include "mox/data/text/char_tokenizer.h"

#include <algorithm>
#include <array>
#include <climits>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>
#include <unordered_set>

#include "mox/data/text/unicode_tables.h"
#include "mox/tensor/error.h"

namespace mox::data {

namespace unicode {

namespace {
bool in_ranges(const CodeRange* r, size_t n, uint32_t cp) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (r[mid].last < cp) lo = mid + 1;
    else hi = mid;
  }
  return lo < n && r[lo].first <= cp && cp <= r[lo].last;
}
}  // namespace

bool is_letter(uint32_t cp) { return in_ranges(kLetterRanges, kLetterRanges_count, cp); }
bool is_number(uint32_t cp) { return in_ranges(kNumberRanges, kNumberRanges_count, cp); }
bool is_js_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000 || cp == 0xFEFF;
}

}  // namespace unicode

namespace {

namespace fs = std::filesystem;

enum class Cls : uint8_t { Space, Letter, Number, Other };

Cls classify_cp(uint32_t cp) {
  if (unicode::is_js_space(cp)) return Cls::Space;
  if (unicode::is_letter(cp)) return Cls::Letter;
  if (unicode::is_number(cp)) return Cls::Number;
  return Cls::Other;
}

const std::array<Cls, 128>& ascii_classes() {
  static const std::array<Cls, 128> table = [] {
    std::array<Cls, 128> t{};
    for (uint32_t c = 0; c < 128; c++) t[c] = classify_cp(c);
    return t;
  }();
  return table;
}

// The class of the character at s[i] and its length in bytes; an invalid UTF-8 byte is one
// Other character.
inline Cls classify_at(const unsigned char* s, size_t n, size_t i, size_t& len) {
  const unsigned char c = s[i];
  if (c < 0x80) {
    len = 1;
    return ascii_classes()[c];
  }
  uint32_t cp;
  size_t need;
  if (c >= 0xC2 && c <= 0xDF) { cp = c & 0x1F; need = 1; }
  else if (c >= 0xE0 && c <= 0xEF) { cp = c & 0x0F; need = 2; }
  else if (c >= 0xF0 && c <= 0xF4) { cp = c & 0x07; need = 3; }
  else { len = 1; return Cls::Other; }
  for (size_t k = 1; k <= need; k++) {
    if (i + k >= n || (s[i + k] & 0xC0) != 0x80) { len = 1; return Cls::Other; }
    cp = (cp << 6) | (s[i + k] & 0x3F);
  }
  // overlong, surrogate and out-of-range forms are invalid
  if ((need == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
      (need == 3 && (cp < 0x10000 || cp > 0x10FFFF))) {
    len = 1;
    return Cls::Other;
  }
  len = need + 1;
  return classify_cp(cp);
}

// bytes_to_unicode: the byte order of GPT-2's first 256 ids and the byte -> code point map.
struct ByteMap {
  std::array<uint8_t, 256> order{};     // id -> byte
  std::array<uint32_t, 256> to_cp{};    // byte -> code point
  std::map<uint32_t, uint8_t> from_cp;  // code point -> byte
  ByteMap() {
    std::vector<int> bs;
    for (int b = '!'; b <= '~'; b++) bs.push_back(b);
    for (int b = 0xA1; b <= 0xAC; b++) bs.push_back(b);
    for (int b = 0xAE; b <= 0xFF; b++) bs.push_back(b);
    std::vector<uint32_t> cs(bs.begin(), bs.end());
    uint32_t extra = 0;
    for (int b = 0; b < 256; b++)
      if (std::find(bs.begin(), bs.begin() + 188, b) == bs.begin() + 188) {
        bs.push_back(b);
        cs.push_back(256 + extra++);
      }
    for (int i = 0; i < 256; i++) {
      order[size_t(i)] = uint8_t(bs[size_t(i)]);
      to_cp[size_t(bs[size_t(i)])] = cs[size_t(i)];
      from_cp[cs[size_t(i)]] = uint8_t(bs[size_t(i)]);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}


// GPT-2's printable form (UTF-8) of raw bytes.
std::string to_printable(std::string_view bytes) {
  std::string out;
  for (unsigned char b : bytes) append_utf8(out, byte_map().to_cp[b]);
  return out;
}

// Raw bytes of GPT-2's printable form; throws naming `where` for a code point outside the map.
std::string from_printable(std::string_view text, const std::string& where) {
  std::string out;
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t len;
    if (s[i] < 0x80) { cp = s[i]; len = 1; }
    else if ((s[i] & 0xE0) == 0xC0 && i + 1 < n) { cp = ((s[i] & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu); len = 2; }
    else throw Error(where, "symbol \"" + std::string(text) + "\" is not in GPT-2's byte alphabet");
    const auto it = byte_map().from_cp.find(cp);
    if (it == byte_map().from_cp.end())
      throw Error(where, "symbol \"" + std::string(text) + "\" is not in GPT-2's byte alphabet");
    out += char(it->second);
    i += len;
  }
  return out;
}

std::string read_text(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path.string(), "cannot open (missing file?)");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

constexpr size_t kCacheLimit = 1 << 20;

}  // namespace

uint32_t gpt2_byte_to_codepoint(uint8_t byte) { return byte_map().to_cp[byte]; }

std::vector<std::string_view> gpt2_pretokenize(std::string_view text) {
  std::vector<std::string_view> out;
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const size_t start = i;
    if (s[i] == '\'' && i + 1 < n) {  // 's 't 're 've 'm 'll 'd
      const unsigned char c = s[i + 1];
      if (c == 's' || c == 't' || c == 'm' || c == 'd') {
        out.push_back(text.substr(start, 2));
        i += 2;
        continue;
      }
      if (i + 2 < n && (((c == 'r' || c == 'v') && s[i + 2] == 'e') || (c == 'l' && s[i + 2] == 'l'))) {
        out.push_back(text.substr(start, 3));
        i += 3;
        continue;
      }
    }
    size_t len0;
    const Cls c0 = classify_at(s, n, i, len0);
    size_t j = i;
    Cls c = c0;
    if (s[i] == ' ' && i + 1 < n) {  // " ?" before a letter/number/other run
      size_t len1;
      const Cls c1 = classify_at(s, n, i + 1, len1);
      if (c1 != Cls::Space) {
        j = i + 1;
        c = c1;
      }
    }
    if (c != Cls::Space) {
      size_t len;
      while (j < n && classify_at(s, n, j, len) == c) j += len;
      out.push_back(text.substr(start, j - start));
      i = j;
      continue;
    }
    // \s+(?!\S) | \s+
    size_t k = i, last = i, chars = 0, len;
    while (k < n && classify_at(s, n, k, len) == Cls::Space) {
      last = k;
      k += len;
      chars++;
    }
    const size_t end = (k < n && chars >= 2) ? last : k;
    out.push_back(text.substr(start, end - start));
    i = end;
  }
  return out;
}

BpeTokenizer::BpeTokenizer(std::unordered_map<std::string, int32_t> encoder,
                           std::vector<std::pair<std::string, std::string>> merges)
    : merges_(std::move(merges)), cache_(std::make_unique<Cache>()) {
  int32_t max_id = -1;
  for (const auto& [sym, id] : encoder) {
    MOX_CHECK(id >= 0, "encoder", "negative id " + std::to_string(id) + " for \"" + sym + "\"");
    max_id = std::max(max_id, id);
  }
  decoder_.assign(size_t(max_id + 1), std::string());
  std::vector<bool> seen(size_t(max_id + 1), false);
  for (const auto& [sym, id] : encoder) {
    MOX_CHECK(!seen[size_t(id)], "encoder", "id " + std::to_string(id) + " is used twice");
    seen[size_t(id)] = true;
    decoder_[size_t(id)] = sym;
  }
  for (size_t i = 0; i < seen.size(); i++)
    MOX_CHECK(seen[i], "encoder", "id " + std::to_string(i) + " is missing (ids must be 0..N-1)");
  for (int b = 0; b < 256; b++)
    MOX_CHECK(encoder.count(std::string(1, char(b))), "encoder",
              "byte " + std::to_string(b) + " has no id (a byte-level BPE needs all 256)");
  encoder_.insert(encoder.begin(), encoder.end());
  for (size_t r = 0; r < merges_.size(); r++)  // later merges win for equal keys, like JS
    ranks_[merges_[r].first + "," + merges_[r].second] = int32_t(r);
}

BpeTokenizer BpeTokenizer::load(const std::string& dir) {
  // OpenAI's names (encoder.json, vocab.bpe), else Hugging Face's for the same two files
  // (vocab.json, merges.txt).
  const bool hf = !fs::exists(fs::path(dir) / "encoder.json") && fs::exists(fs::path(dir) / "vocab.json");
  const fs::path enc_path = fs::path(dir) / (hf ? "vocab.json" : "encoder.json");
  const fs::path bpe_path = fs::path(dir) / (hf ? "merges.txt" : "vocab.bpe");
  const std::string enc_text = read_text(enc_path);
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(enc_text);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(enc_path.string(), std::string("invalid JSON: ") + e.what());
  }
  if (!doc.is_object()) throw Error(enc_path.string(), "expected an object {symbol: id}");
  std::unordered_map<std::string, int32_t> encoder;
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    if (!it.value().is_number_integer())
      throw Error(enc_path.string(), "id of \"" + it.key() + "\" is not an integer");
    encoder[from_printable(it.key(), enc_path.string())] = it.value().get<int32_t>();
  }
  const std::string bpe_text = read_text(bpe_path);
  std::vector<std::pair<std::string, std::string>> merges;
  std::istringstream lines(bpe_text);
  std::string line;
  size_t lineno = 0;
  while (std::getline(lines, line)) {
    lineno++;
    if (lineno == 1 && line.rfind("#version", 0) == 0) continue;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    std::istringstream fields(line);
    std::string a, b, extra;
    if (!(fields >> a >> b) || (fields >> extra))
      throw Error(bpe_path.string() + ":" + std::to_string(lineno),
                  "expected two symbols separated by a space, got \"" + line + "\"");
    merges.emplace_back(from_printable(a, bpe_path.string()), from_printable(b, bpe_path.string()));
  }
  try {
    return BpeTokenizer(std::move(encoder), std::move(merges));
  } catch (const Error& e) {
    throw Error(enc_path.string(), e.what());
  }
}

int32_t BpeTokenizer::token_id(std::string_view symbol) const {
  const auto it = encoder_.find(symbol);
  return it == encoder_.end() ? -1 : it->second;
}

void BpeTokenizer::bpe(std::string_view piece, std::vector<int32_t>& out) const {
  auto& cache = cache_->map;
  if (const auto it = cache.find(piece); it != cache.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  std::vector<std::string> word;
  word.reserve(piece.size());
  for (char ch : piece) word.emplace_back(1, ch);
  std::string key;
  while (word.size() > 1) {
    int32_t best_rank = INT32_MAX;
    size_t best = 0;
    for (size_t i = 0; i + 1 < word.size(); i++) {
      key.assign(word[i]);
      key += ',';
      key += word[i + 1];
      const auto it = ranks_.find(key);
      if (it != ranks_.end() && it->second <= best_rank) {  // last of equal rank, like JS
        best_rank = it->second;
        best = i;
      }
    }
    if (best_rank == INT32_MAX) break;
    const std::string first = word[best], second = word[best + 1];
    std::vector<std::string> merged;
    merged.reserve(word.size());
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
        merged.push_back(first + second);
        i += 2;
      } else {
        merged.push_back(std::move(word[i]));
        i += 1;
      }
    }
    word = std::move(merged);
  }
  std::vector<int32_t> ids;
  ids.reserve(word.size());
  for (const std::string& sym : word) {
    const auto it = encoder_.find(sym);
    if (it == encoder_.end())
      throw Error("bpe", "merged symbol \"" + to_printable(sym) + "\" of piece \"" +
                             std::string(piece) + "\" is not in the encoder");
    ids.push_back(it->second);
  }
  out.insert(out.end(), ids.begin(), ids.end());
  if (cache.size() >= kCacheLimit) cache.clear();
  cache.emplace(std::string(piece), std::move(ids));
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 1);
  std::lock_guard<std::mutex> lock(cache_->mutex);
  for (std::string_view piece : gpt2_pretokenize(text)) bpe(piece, out);
  return out;
}

std::string BpeTokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  for (int32_t id : ids) {
    MOX_CHECK(id >= 0 && size_t(id) < decoder_.size(), "decode",
              "token id " + std::to_string(id) + " outside [0, " + std::to_string(decoder_.size()) + ")");
    out += decoder_[size_t(id)];
  }
  return out;
}

void BpeTokenizer::save(const std::string& dir) const {
  fs::create_directories(dir);
  nlohmann::ordered_json enc = nlohmann::ordered_json::object();
  for (size_t id = 0; id < decoder_.size(); id++) enc[to_printable(decoder_[id])] = id;
  {
    const fs::path p = fs::path(dir) / "encoder.json";
    std::ofstream f(p, std::ios::binary);
    if (!f) throw Error(p.string(), "cannot write");
    f << enc.dump();
  }
  const fs::path p = fs::path(dir) / "vocab.bpe";
  std::ofstream f(p, std::ios::binary);
  if (!f) throw Error(p.string(), "cannot write");
  f << "#version: 0.2\n";
  for (const auto& [a, b] : merges_) f << to_printable(a) << ' ' << to_printable(b) << '\n';
}

BpeTokenizer train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& options) {
  MOX_CHECK(options.vocab_size >= 257, "vocab_size",
            "must be at least 257 (256 bytes + <|endoftext|>), got " + std::to_string(options.vocab_size));
  std::unordered_map<std::string, int64_t> freq;
  for (const std::string& t : texts)
    for (std::string_view piece : gpt2_pretokenize(t)) freq[std::string(piece)]++;
  std::vector<std::pair<std::string, int64_t>> pieces(freq.begin(), freq.end());
  std::sort(pieces.begin(), pieces.end());

  std::vector<std::string> sym;  // id -> bytes
  std::array<int32_t, 256> byte_id{};
  for (int i = 0; i < 256; i++) {
    const uint8_t b = byte_map().order[size_t(i)];
    sym.emplace_back(1, char(b));
    byte_id[b] = i;
  }
  std::vector<std::vector<int32_t>> words;
  std::vector<int64_t> counts;
  for (const auto& [p, c] : pieces) {
    std::vector<int32_t> w;
    for (unsigned char ch : p) w.push_back(byte_id[ch]);
    words.push_back(std::move(w));
    counts.push_back(c);
  }
  auto pack = [](int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); };
  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<int32_t>> where;
  for (size_t w = 0; w < words.size(); w++)
    for (size_t i = 0; i + 1 < words[w].size(); i++) {
      const uint64_t p = pack(words[w][i], words[w][i + 1]);
      pair_count[p] += counts[w];
      where[p].push_back(int32_t(w));
    }
  auto mergeable = [&](uint64_t p) {
    return sym[p >> 32].find(',') == std::string::npos &&
           sym[p & 0xFFFFFFFFu].find(',') == std::string::npos;
  };
  struct Entry {
    int64_t count;
    uint64_t pair;
  };
  auto worse = [&](const Entry& x, const Entry& y) {  // true when x ranks below y
    if (x.count != y.count) return x.count < y.count;
    const std::string& xa = sym[x.pair >> 32];
    const std::string& ya = sym[y.pair >> 32];
    if (xa != ya) return xa > ya;
    return sym[x.pair & 0xFFFFFFFFu] > sym[y.pair & 0xFFFFFFFFu];
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(worse)> heap(worse);
  for (const auto& [p, c] : pair_count)
    if (mergeable(p)) heap.push({c, p});

  std::vector<std::pair<std::string, std::string>> merges;
  std::unordered_map<std::string, int32_t> sym_id;
  for (size_t i = 0; i < sym.size(); i++) sym_id.emplace(sym[i], int32_t(i));
  std::vector<int64_t> stamp(words.size(), -1);
  while (int64_t(sym.size()) < options.vocab_size - 1 && !heap.empty()) {
    const Entry top = heap.top();
    heap.pop();
    const auto pc = pair_count.find(top.pair);
    if (pc == pair_count.end() || pc->second != top.count || top.count <= 0) continue;
    const int32_t a = int32_t(top.pair >> 32), b = int32_t(top.pair & 0xFFFFFFFFu);
    const std::string joined = sym[size_t(a)] + sym[size_t(b)];
    int32_t id;  // a string reached by another merge order keeps its id
    if (const auto it = sym_id.find(joined); it != sym_id.end()) {
      id = it->second;
    } else {
      id = int32_t(sym.size());
      sym.push_back(joined);
      sym_id.emplace(joined, id);
    }
    merges.emplace_back(sym[size_t(a)], sym[size_t(b)]);
    const int64_t step = int64_t(merges.size());
    std::unordered_set<uint64_t> changed;
    const std::vector<int32_t> affected = where[top.pair];
    for (int32_t w : affected) {
      if (stamp[size_t(w)] == step) continue;
      stamp[size_t(w)] = step;
      std::vector<int32_t>& word = words[size_t(w)];
      const int64_t c = counts[size_t(w)];
      bool has = false;
      for (size_t i = 0; i + 1 < word.size(); i++)
        if (word[i] == a && word[i + 1] == b) has = true;
      if (!has) continue;
      for (size_t i = 0; i + 1 < word.size(); i++) {
        const uint64_t p = pack(word[i], word[i + 1]);
        pair_count[p] -= c;
        changed.insert(p);
      }
      std::vector<int32_t> merged;
      for (size_t i = 0; i < word.size();) {
        if (i + 1 < word.size() && word[i] == a && word[i + 1] == b) {
          merged.push_back(id);
          i += 2;
        } else {
          merged.push_back(word[i++]);
        }
      }
      word = std::move(merged);
      for (size_t i = 0; i + 1 < word.size(); i++) {
        const uint64_t p = pack(word[i], word[i + 1]);
        pair_count[p] += c;
        changed.insert(p);
        where[p].push_back(w);
      }
    }
    for (uint64_t p : changed) {
      const int64_t c = pair_count[p];
      if (c > 0 && mergeable(p)) heap.push({c, p});
    }
  }
  std::unordered_map<std::string, int32_t> encoder;
  for (size_t i = 0; i < sym.size(); i++) encoder.emplace(sym[i], int32_t(i));
  encoder.emplace("<|endoftext|>", int32_t(sym.size()));
  return BpeTokenizer(std::move(encoder), std::move(merges));
}

}  // namespace mox::data
